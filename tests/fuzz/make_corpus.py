#!/usr/bin/python3
"""Seed corpus of the fuzz targets (tests/fuzz/corpus/): small valid and broken inputs, a few KB each.

Usage: make_corpus.py REPO     (writes the seeds into REPO/tests/fuzz/corpus/{h5ad,split}; the checkpoint seed by
                                the harness itself: CS_FUZZ_MAKE_SEED=FILE fuzz_checkpoint)

h5ad seeds are written with h5py (libver "latest": compact groups keep the files small), laid out as anndata writes
them: 12 cells x 6 genes of the embedded PerturBench devel data, in each encoding and element type the reader takes,
gzip with chunks smaller than the arrays, and copies broken in the ways the reader must name. split seeds are
split.json files for the design of the devel data (contexts = cell_type)."""
import json
import os
import sys

import anndata as ad
import h5py
import numpy as np
import scipy.sparse as sp


def attrs(obj, **kw):
    for k, v in kw.items():
        obj.attrs[k] = v


def write(path, X, conds, types, enc="csr", dtype=np.float32, itype=np.int32, gzip=False, extra=None):
    with h5py.File(path, "w", libver="latest") as f:
        attrs(f, **{"encoding-type": "anndata", "encoding-version": "0.1.0"})
        kw = dict(compression="gzip", chunks=(7,)) if gzip else {}
        if enc == "dense":
            f.create_dataset("X", data=X.toarray().astype(dtype), **({} if not gzip else dict(compression="gzip", chunks=(5, 6))))
            attrs(f["X"], **{"encoding-type": "array", "encoding-version": "0.2.0"})
        else:
            M = X.tocsr() if enc == "csr" else X.tocsc()
            g = f.create_group("X")
            attrs(g, **{"encoding-type": f"{enc}_matrix", "encoding-version": "0.1.0", "shape": np.array(X.shape)})
            g.create_dataset("data", data=M.data.astype(dtype), **kw)
            g.create_dataset("indices", data=M.indices.astype(itype), **kw)
            g.create_dataset("indptr", data=M.indptr.astype(itype), **kw)
        obs = f.create_group("obs")
        attrs(obs, **{"encoding-type": "dataframe", "encoding-version": "0.2.0", "_index": "_index",
                      "column-order": np.array(["condition", "cell_type", "dose"], dtype=object)})
        obs.create_dataset("_index", data=np.array([f"c{i}" for i in range(X.shape[0])], dtype=object), dtype=h5py.string_dtype())
        for name, values in (("condition", conds), ("cell_type", types)):
            cats = sorted(set(values))
            c = obs.create_group(name)
            attrs(c, **{"encoding-type": "categorical", "encoding-version": "0.2.0"})
            c.create_dataset("categories", data=np.array(cats, dtype=object), dtype=h5py.string_dtype())
            c.create_dataset("codes", data=np.array([cats.index(v) for v in values], dtype=np.int8),
                             **(dict(compression="gzip", chunks=(5,)) if gzip else {}))
        obs.create_dataset("dose", data=np.linspace(0, 1, X.shape[0]), **(dict(compression="gzip", chunks=(4,)) if gzip else {}))
        var = f.create_group("var")
        attrs(var, **{"encoding-type": "dataframe", "encoding-version": "0.2.0", "_index": "_index",
                      "column-order": np.array([], dtype=np.float64)})
        var.create_dataset("_index", data=np.array([f"gene{j}" for j in range(X.shape[1])], dtype=object), dtype=h5py.string_dtype())
        if extra:
            extra(f)


def h5ad_seeds(repo, out):
    a = ad.read_h5ad(os.path.join(repo, "input/perturbench_devel/devel.h5ad"))
    take = np.r_[0:6, a.n_obs - 6:a.n_obs]
    X = sp.csr_matrix(a.X[take][:, :6])
    X = X + sp.csr_matrix(np.eye(12, 6, dtype=np.float32))  # no empty row
    conds = [str(v) for v in a.obs["condition"].values[take]]
    types = [str(v) for v in a.obs["cell_type"].values[take]]
    p = lambda name: os.path.join(out, name)
    write(p("csr.h5ad"), X, conds, types)
    write(p("csr_gzip.h5ad"), X, conds, types, gzip=True)
    write(p("csr_f64_i64_gzip.h5ad"), X, conds, types, dtype=np.float64, itype=np.int64, gzip=True)
    write(p("csr_big_endian_gzip.h5ad"), X, conds, types, dtype=">f8", itype=">i4", gzip=True)
    write(p("csc.h5ad"), X, conds, types, enc="csc")
    write(p("dense.h5ad"), X, conds, types, enc="dense")
    write(p("dense_gzip.h5ad"), X, conds, types, enc="dense", gzip=True)

    def h5sparse(f):
        x = f["X"]
        shape = x.attrs["shape"]
        for k in ("encoding-type", "encoding-version", "shape"):
            del x.attrs[k]
        x.attrs["h5sparse_format"] = "csr"
        x.attrs["h5sparse_shape"] = shape

    def strings_bool(f):  # a string column and an h5py boolean
        f["obs"].create_dataset("batch", data=np.array(["b1", "b2"] * 6, dtype=object), dtype=h5py.string_dtype())
        f["obs"].create_dataset("flag", data=np.arange(12) % 3 == 0)

    def shuffle(f):
        d = f["X/data"][:]
        del f["X/data"]
        f["X"].create_dataset("data", data=d, compression="gzip", shuffle=True, chunks=(7,))

    def index_short(f):
        d = f["obs/_index"][:-1]
        del f["obs/_index"]
        f["obs"].create_dataset("_index", data=d, dtype=h5py.string_dtype())

    def dup_cats(f):
        c = f["obs/cell_type/categories"][:]
        del f["obs/cell_type/categories"]
        f["obs/cell_type"].create_dataset("categories", data=np.r_[c, c[:1]], dtype=h5py.string_dtype())

    def overflow(f):
        d = f["X/data"][:].astype(np.float64)
        d[5] = 1e300
        del f["X/data"]
        f["X"].create_dataset("data", data=d, compression="gzip", chunks=(7,))

    def bytes_data(f):
        d = f["X/data"][:]
        del f["X/data"]
        f["X"].create_dataset("data", data=np.array([b"%.1f" % v for v in d], dtype="S4"))

    def bad_indptr(f):
        ip = f["X/indptr"][:]
        ip[4] = ip[6] + 1
        f["X/indptr"][:] = ip

    def bad_index(f):
        ix = f["X/indices"][:]
        ix[3] = 6
        f["X/indices"][:] = ix

    def bad_code(f):
        c = f["obs/condition/codes"][:]
        c[2] = 40
        f["obs/condition/codes"][:] = c

    for name, edit, kw in [("csr_h5sparse.h5ad", h5sparse, {}), ("csr_strings_bool.h5ad", strings_bool, {}),
                           ("csr_shuffle_gzip.h5ad", shuffle, {}), ("bad_index_short.h5ad", index_short, {}),
                           ("bad_duplicate_categories.h5ad", dup_cats, {}), ("bad_overflow_gzip.h5ad", overflow, {"gzip": True}),
                           ("bad_bytes_data.h5ad", bytes_data, {}), ("bad_indptr.h5ad", bad_indptr, {}),
                           ("bad_index_range.h5ad", bad_index, {}), ("bad_code.h5ad", bad_code, {})]:
        write(p(name), X, conds, types, extra=edit, **kw)
    raw = open(p("csr.h5ad"), "rb").read()
    open(p("bad_truncated.h5ad"), "wb").write(raw[: len(raw) // 2])
    for name in sorted(os.listdir(out)):
        print("h5ad", name, os.path.getsize(p(name)))  # noqa


def split_seeds(repo, out):
    a = ad.read_h5ad(os.path.join(repo, "input/perturbench_devel/devel.h5ad"))
    groups = sorted({(str(c), str(t)) for c, t in zip(a.obs["condition"], a.obs["cell_type"])})
    def role(c, i):
        return "train" if c == "control" or i % 3 else ("test" if i % 2 else "valid")
    good = {"format": "cellshift split", "groups": [{"condition": c, "context": t, "role": role(c, i)} for i, (c, t) in enumerate(groups)]}
    seeds = {"good.json": good}
    bad = json.loads(json.dumps(good))
    bad["groups"][1]["role"] = "holdout"
    seeds["bad_role.json"] = bad
    bad = json.loads(json.dumps(good))
    bad["groups"].append(dict(bad["groups"][1], role="test" if bad["groups"][1]["role"] != "test" else "train"))
    seeds["bad_twice.json"] = bad
    bad = json.loads(json.dumps(good))
    del bad["groups"][2]
    seeds["bad_missing_group.json"] = bad
    bad = json.loads(json.dumps(good))
    bad["groups"][0]["condition"] = "NOPE+X"
    seeds["bad_unknown.json"] = bad
    seeds["bad_no_groups.json"] = {"format": "cellshift split"}
    for name, obj in seeds.items():
        with open(os.path.join(out, name), "w") as f:
            json.dump(obj, f, separators=(",", ":"))
    with open(os.path.join(out, "bad_syntax.json"), "w") as f:
        f.write('{"groups": [{"condition": "control", "context": ')
    for name in sorted(os.listdir(out)):
        print("split", name, os.path.getsize(os.path.join(out, name)))


def main():
    repo = sys.argv[1]
    base = os.path.join(repo, "tests/fuzz/corpus")
    for sub, make in (("h5ad", h5ad_seeds), ("split", split_seeds)):
        d = os.path.join(base, sub)
        os.makedirs(d, exist_ok=True)  # files already there (regressions found by fuzzing) stay
        make(repo, d)


if __name__ == "__main__":
    main()
