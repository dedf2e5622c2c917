#!/usr/bin/python3
"""cellshift's dense Sinkhorn plans (written by test_ot -dump DIR) against POT on the same points.
Cases (as in tests/mpi/test_ot.c Dump): 0 balanced, mean-scaled cost, eps 0.05; 1 unbalanced tau_a = tau_b = 0.9
(POT 0.8 sinkhorn_unbalanced, reg_m = eps tau / (1 - tau): one reg_m for both sides, entropic regulariser); 2 balanced, max-scaled cost, eps 0.01.
Prints the max plan difference (relative to the largest entry) and the correlation; exits 1 beyond the tolerance."""
import sys
import numpy as np
try:
    import ot
except ImportError:
    print("check_ot_pot: POT (python3-pot) is not installed: skipped"); sys.exit(77)

d, n, m, D = sys.argv[1], 200, 150, 5
raw = open(d + "/inputs.bin", "rb").read()
off = 0
x = np.frombuffer(raw, np.float32, n * D, off).reshape(n, D).astype(np.float64); off += 4 * n * D
y = np.frombuffer(raw, np.float32, m * D, off).reshape(m, D).astype(np.float64); off += 4 * m * D
a = np.frombuffer(raw, np.float64, n, off).copy(); off += 8 * n
b = np.frombuffer(raw, np.float64, m, off).copy()
M = ot.dist(x, y)
bad = 0
for case in range(3):
    P = np.fromfile("%s/plan%d.bin" % (d, case), np.float32).reshape(n, m).astype(np.float64)
    if case == 0:
        ref = ot.sinkhorn(a, b, M / M.mean(), 0.05, method="sinkhorn_log", numItermax=100000, stopThr=1e-10)
    elif case == 1:
        eps = 0.05
        ref = ot.unbalanced.sinkhorn_unbalanced(a, b, M / M.mean(), eps, eps * 0.9 / 0.1, method="sinkhorn_stabilized",
                                                numItermax=100000, stopThr=1e-12)
    else:
        ref = ot.sinkhorn(a, b, M / M.max(), 0.01, method="sinkhorn_log", numItermax=100000, stopThr=1e-10)
    diff = np.abs(P - ref).max() / ref.max()
    corr = np.corrcoef(P.ravel(), ref.ravel())[0, 1]
    ok = diff < 2e-2 and corr > 0.9999
    bad += not ok
    print("case %d: max |P - P_pot| / max P_pot = %.2e, correlation %.7f, mass %.6f vs %.6f %s"
          % (case, diff, corr, P.sum(), ref.sum(), "ok" if ok else "FAIL"))
sys.exit(1 if bad else 0)
