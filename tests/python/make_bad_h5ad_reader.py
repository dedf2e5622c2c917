#!/usr/bin/python3
"""Make the files of tests/integration/test_bad_h5ad.sh: copies of the good file of make_bad_h5ad.py broken in ways
the .h5ad reader itself must name (obs index length, duplicate categories, damaged or truncated files, float64 values
beyond float32, non-numeric matrix arrays), and one valid file with a barcode-like obs column.

Usage: make_bad_h5ad_reader.py OUTDIR        (writes OUTDIR/*.h5ad and prints one name per line)"""
import os
import sys

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_bad_h5ad import good_matrix, replace, variant  # noqa: E402


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    X, obs, var = good_matrix()
    good = os.path.join(out, "good.h5ad")
    ad.AnnData(X, obs=obs, var=var).write_h5ad(good)
    gz = os.path.join(out, "good_gzip.h5ad")
    ad.AnnData(X, obs=obs, var=var).write_h5ad(gz, compression="gzip")
    dense = os.path.join(out, "good_dense.h5ad")
    ad.AnnData(X.toarray(), obs=obs, var=var).write_h5ad(dense)
    made = []
    ip = X.indptr

    def index_short(f):
        replace(f["obs"], "_index", f["obs/_index"][:-1])

    def index_long(f):
        replace(f["obs"], "_index", np.append(f["obs/_index"][:], b"extra_cell"))

    def no_index(f):
        del f["obs/_index"]

    def duplicate_categories(f):
        replace(f["obs/condition"], "categories", np.array(["control", "A", "B", "C", "A", "B+C"], dtype=object).astype("S"))

    def overflow(f):  # float64 data, one finite value beyond float32 in row 90
        d = f["X/data"][:].astype(np.float64)
        d[ip[90] + 1] = 1e300
        replace(f["X"], "data", d)

    def dense_overflow(f):
        d = f["X"][:].astype(np.float64)
        d[40, 7] = -1e300
        replace(f, "X", d)

    def data_bytes(f):
        replace(f["X"], "data", np.array([b"%.2f" % v for v in f["X/data"][:]], dtype="S4"))

    def data_str(f):
        replace(f["X"], "data", np.array(["%.2f" % v for v in f["X/data"][:]], dtype=object))

    def indices_bool(f):
        replace(f["X"], "indices", f["X/indices"][:] > 3)

    def dense_bytes(f):
        replace(f, "X", f["X"][:].astype("S8"))

    def shape_attr(f):
        f["X"].attrs["shape"] = np.array([120, 30, 1])

    for name, src, edit in [("bad_obs_index_short.h5ad", good, index_short), ("bad_obs_index_long.h5ad", good, index_long),
                            ("bad_obs_no_index.h5ad", good, no_index),
                            ("bad_duplicate_categories.h5ad", good, duplicate_categories),
                            ("bad_float64_overflow.h5ad", good, overflow), ("bad_dense_overflow.h5ad", dense, dense_overflow),
                            ("bad_data_bytes.h5ad", good, data_bytes), ("bad_data_str.h5ad", good, data_str),
                            ("bad_indices_bool.h5ad", good, indices_bool), ("bad_dense_bytes.h5ad", dense, dense_bytes),
                            ("bad_shape_attr.h5ad", good, shape_attr)]:
        variant(out, src, name, edit)
        made.append(name)

    # A gzip chunk of X/data with its compressed bytes garbled in place.
    path = os.path.join(out, "bad_gzip_chunk.h5ad")
    with open(gz, "rb") as f:
        raw = bytearray(f.read())
    with h5py.File(gz, "r") as f:
        info = f["X/data"].id.get_chunk_info(0)
    for k in range(info.byte_offset + 40, info.byte_offset + min(info.size, 400)):
        raw[k] ^= 0x5A
    with open(path, "wb") as f:
        f.write(raw)
    made.append("bad_gzip_chunk.h5ad")

    # Truncated: the first 60% of the file. Damaged: the superblock's addresses overwritten.
    with open(good, "rb") as f:
        raw = f.read()
    with open(os.path.join(out, "bad_truncated.h5ad"), "wb") as f:
        f.write(raw[: len(raw) * 6 // 10])
    damaged = bytearray(raw)
    damaged[24:56] = b"\xff" * 32
    with open(os.path.join(out, "bad_damaged.h5ad"), "wb") as f:
        f.write(damaged)
    made += ["bad_truncated.h5ad", "bad_damaged.h5ad"]

    # Valid: 12,000 cells with a barcode per cell (inspect reports more than 10^4 distinct values, gathering none).
    rng = np.random.default_rng(3)
    n = 12000
    Xb = (rng.random((n, 30)) < 0.2) * rng.gamma(1.0, 1.0, (n, 30)).astype(np.float32)
    Xb[:, 0] = 1.0
    obsb = pd.DataFrame({"condition": pd.Categorical(rng.choice(["control", "A", "B", "A+B"], n)),
                         "cell_type": pd.Categorical(rng.choice(["T1", "T2"], n)),
                         "barcode": [f"AAC{i:08d}-1" for i in range(n)]}, index=[f"c{i}" for i in range(n)])
    a = ad.AnnData(sp.csr_matrix(Xb.astype(np.float32)), obs=obsb, var=var)
    a.write_h5ad(os.path.join(out, "good_barcodes.h5ad"))
    with h5py.File(os.path.join(out, "good_barcodes.h5ad"), "r") as f:  # distinct strings stay a string array
        assert isinstance(f["obs/barcode"], h5py.Dataset), "anndata stored the barcodes as a categorical"
    made.append("good_barcodes.h5ad")
    print("\n".join(made))


if __name__ == "__main__":
    main()
