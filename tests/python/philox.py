"""Random123 Philox4x32-10 in numpy and cellshift's CsRng4 (src/core/rng.c) on top of it, for recomputing the
counter-based draws of cellshift in tests."""
import numpy as np

M0, M1, W0, W1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57), np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
MASK = np.uint64(0xFFFFFFFF)


def philox4x32(c, k):
    """c: 4 arrays of uint64 holding 32-bit words, k: 2 such arrays; returns the 4 output words (uint64 arrays)."""
    c = [np.asarray(x, dtype=np.uint64) & MASK for x in c]
    k = [np.asarray(x, dtype=np.uint64) & MASK for x in k]
    for r in range(10):
        if r:
            k = [(k[0] + W0) & MASK, (k[1] + W1) & MASK]
        p0, p1 = M0 * c[0], M1 * c[2]  # < 2^64: exact in uint64
        hi0, lo0, hi1, lo1 = p0 >> np.uint64(32), p0 & MASK, p1 >> np.uint64(32), p1 & MASK
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0]
    return c


def rng4(seed, stream, a, b):
    """CsRng4(seed, stream, a, b): the four 32-bit words, for arrays a and b (uint64)."""
    seed, stream = np.uint64(seed), np.uint64(stream)
    a, b = np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64)
    k = [seed & MASK, ((seed >> np.uint64(32)) ^ ((stream * np.uint64(0x9E3779B9)) & MASK)) & MASK]
    c = [a & MASK, a >> np.uint64(32), b & MASK, ((b >> np.uint64(32)) ^ ((stream << np.uint64(16)) & MASK)) & MASK]
    return philox4x32(c, k)
