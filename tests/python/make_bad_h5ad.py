#!/usr/bin/python3
"""Make the files of the bad-input tests: a small good .h5ad written by anndata, variants of it that cellshift
must accept (and read to the same numbers), and hand-made malformed copies (h5py) that it must refuse.

Usage: make_bad_h5ad.py OUTDIR        (writes OUTDIR/*.h5ad and prints one name per line)

The good file: 120 cells x 30 genes, log-normalised CSR float32 with int32 indices, obs 'condition'
(control, A, B, C, A+B, B+C; 10 cells each per context) and 'cell_type' (T1, T2), var index gene0..gene29.
Every row has at least 3 non-zeros, so any row can be corrupted. good_long_labels renames the perturbations to
labels of 2,100-5,000 characters (combinations of up to 7,101); warn_* files are usable but suspicious."""
import os
import shutil
import sys
import warnings

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

warnings.filterwarnings("ignore")
CONDS = ["control", "A", "B", "C", "A+B", "B+C"]
TYPES = ["T1", "T2"]
NGENES = 30


def good_matrix():
    rng = np.random.default_rng(7)
    cond, ctype = [], []
    for t in TYPES:
        for c in CONDS:
            cond += [c] * 10
            ctype += [t] * 10
    n = len(cond)
    # Expression: a base level per gene and context, plus an effect per perturbation atom.
    base = rng.gamma(2.0, 1.0, (len(TYPES), NGENES))
    effect = {a: rng.normal(0, 1.0, NGENES) for a in "ABC"}
    X = np.zeros((n, NGENES), dtype=np.float32)
    for i in range(n):
        mu = base[TYPES.index(ctype[i])].copy()
        if cond[i] != "control":
            for a in cond[i].split("+"):
                mu += effect[a]
        counts = rng.poisson(np.clip(mu, 0.05, None))
        keep = rng.choice(NGENES, 3, replace=False)  # at least 3 non-zeros per row
        counts[keep] = np.maximum(counts[keep], 1)
        X[i] = np.log1p(counts).astype(np.float32)
    obs = pd.DataFrame({"condition": pd.Categorical(cond, categories=CONDS),
                        "cell_type": pd.Categorical(ctype, categories=TYPES)},
                       index=[f"cell{i}" for i in range(n)])
    var = pd.DataFrame(index=[f"gene{j}" for j in range(NGENES)])
    return sp.csr_matrix(X), obs, var


def replace(group, name, data):
    """Recreate group[name] with new contents/dtype, keeping its attributes."""
    attrs = dict(group[name].attrs)
    del group[name]
    d = group.create_dataset(name, data=data)
    for k, v in attrs.items():
        d.attrs[k] = v


def variant(out, src, name, edit):
    path = os.path.join(out, name)
    shutil.copyfile(src, path)
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    X, obs, var = good_matrix()
    made = []

    def write(name, matrix, **kw):
        ad.AnnData(matrix, obs=obs, var=var).write_h5ad(os.path.join(out, name), **kw)
        made.append(name)

    # Accepted: the canonical CSR file and equivalent encodings of the same numbers.
    write("good.h5ad", X)
    write("good_gzip.h5ad", X, compression="gzip")
    write("good_csc.h5ad", X.tocsc())
    write("good_dense.h5ad", X.toarray())
    good = os.path.join(out, "good.h5ad")
    ip, ix = X.indptr, X.indices

    def unsorted(f):
        ind, dat = f["X/indices"][:], f["X/data"][:]
        for i in range(len(ip) - 1):
            ind[ip[i]:ip[i + 1]] = ind[ip[i]:ip[i + 1]][::-1].copy()
            dat[ip[i]:ip[i + 1]] = dat[ip[i]:ip[i + 1]][::-1].copy()
        f["X/indices"][:] = ind
        f["X/data"][:] = dat

    def wide_types(f):
        replace(f["X"], "indices", f["X/indices"][:].astype(np.int64))
        replace(f["X"], "indptr", f["X/indptr"][:].astype(np.int64))
        replace(f["X"], "data", f["X/data"][:].astype(np.float64))

    def h5sparse(f):  # how anndata < 0.7 marked a sparse X
        x = f["X"]
        shape = x.attrs["shape"]
        for k in ("encoding-type", "encoding-version", "shape"):
            del x.attrs[k]
        x.attrs["h5sparse_format"] = "csr"
        x.attrs["h5sparse_shape"] = shape

    def long_labels(f):  # a label of 5,000 characters and combinations whose atoms add up to more than 4,096
        long = {"A": "A" + "x" * 4999, "B": "B" + "y" * 2099, "C": "C" + "z" * 2099}
        cats = [("+".join(long[a] for a in c.split("+")) if c != "control" else c) for c in CONDS]
        replace(f["obs/condition"], "categories", np.array(cats, dtype=object).astype(h5py.string_dtype()))

    variant(out, good, "good_unsorted.h5ad", unsorted)
    variant(out, good, "good_int64_float64.h5ad", wide_types)
    variant(out, good, "good_h5sparse.h5ad", h5sparse)
    variant(out, good, "good_long_labels.h5ad", long_labels)
    made += ["good_unsorted.h5ad", "good_int64_float64.h5ad", "good_h5sparse.h5ad", "good_long_labels.h5ad"]

    # Accepted with a warning: repeated cell names, negative values where log-normalised data are expected.
    def dup_cells(f):
        idx = f["obs/_index"][:]
        idx[90] = idx[20]  # rows 20 and 90 are both "cell20"
        replace(f["obs"], "_index", idx)

    def negative(f):
        d = f["X/data"][:]
        d[ip[77] + 2] = -0.5
        f["X/data"][:] = d

    variant(out, good, "warn_dup_cells.h5ad", dup_cells)
    variant(out, good, "warn_negative.h5ad", negative)
    made += ["warn_dup_cells.h5ad", "warn_negative.h5ad"]

    # Refused. Bad rows are spread over the matrix so that at 2 and 3 ranks the fault is on a rank other than 0.
    def nonmonotone(f):
        p = f["X/indptr"][:]
        p[71] = p[72] + 1  # row 70 ends after row 71 ends
        f["X/indptr"][:] = p

    def beyond_nnz(f):
        p = f["X/indptr"][:]
        p[-1] = p[-1] + 10
        f["X/indptr"][:] = p

    def index_range(f):
        ind = f["X/indices"][:]
        ind[ip[100]] = NGENES  # first entry of row 100
        f["X/indices"][:] = ind

    def duplicate(f):
        ind = f["X/indices"][:]
        ind[ip[50] + 1] = ind[ip[50]]  # row 50: the same gene twice
        f["X/indices"][:] = ind

    def set_value(row, v):
        def edit(f):
            d = f["X/data"][:]
            d[ip[row] + 1] = v
            f["X/data"][:] = d
        return edit

    def no_X(f):
        del f["X"]

    def no_condition(f):
        del f["obs/condition"]
        f["obs"].attrs["column-order"] = ["cell_type"]

    def codes_range(f):
        c = f["obs/condition/codes"][:]
        c[65] = 50  # 6 categories
        f["obs/condition/codes"][:] = c

    def dup_genes(f):
        idx = f["var/_index"][:]
        idx[17] = idx[5]  # columns 5 and 17 are both "gene5"
        replace(f["var"], "_index", idx)

    def obs_length(f):
        replace(f["obs/cell_type"], "codes", f["obs/cell_type/codes"][:-1])

    for name, edit in [("bad_indptr_nonmonotone.h5ad", nonmonotone), ("bad_indptr_beyond_nnz.h5ad", beyond_nnz),
                       ("bad_index_range.h5ad", index_range), ("bad_index_duplicate.h5ad", duplicate),
                       ("bad_nan.h5ad", set_value(64, np.nan)), ("bad_inf.h5ad", set_value(3, np.inf)),
                       ("bad_no_X.h5ad", no_X), ("bad_no_condition.h5ad", no_condition),
                       ("bad_codes_range.h5ad", codes_range), ("bad_obs_length.h5ad", obs_length),
                       ("bad_dup_genes.h5ad", dup_genes)]:
        variant(out, good, name, edit)
        made.append(name)

    with open(os.path.join(out, "bad_not_hdf5.h5ad"), "w") as f:
        f.write("cell,gene,value\nthis is a CSV file, not HDF5\n")
    open(os.path.join(out, "bad_empty.h5ad"), "w").close()
    made += ["bad_not_hdf5.h5ad", "bad_empty.h5ad"]
    print("\n".join(made))


if __name__ == "__main__":
    main()
