#!/usr/bin/python3
"""Check a dense-X .h5ad written by cellshift with Debian's python3-anndata (0.8) and h5py.

Usage: check_predictions_anndata.py FILE [SPEC.json]

Always checked: anndata.read_h5ad reads FILE; X is a dense float32 array; obs index is "0".."n-1"; every obs
column is a pandas categorical; the on-disk encodings are those anndata 0.8 writes (root "anndata", X "array",
obs/var "dataframe", categoricals with an 'ordered' attribute, empty dict groups).
SPEC (optional) may give: "n_obs", "n_vars", "genes" (list, in order), "genes_from" (another .h5ad whose var
names must be the same, in order), "obs": {name: {"categories": [...], "codes": [...] (-1 = missing)}},
"X": [[row], ...] (compared exactly as float32), "obs_columns" (exact list, in order).
Prints "ok" and exits 0, or prints what differs and exits 1."""
import json
import sys
import warnings

import anndata as ad
import h5py
import numpy as np
import pandas as pd

warnings.filterwarnings("ignore")
problems = []


def expect(cond, msg):
    if not cond:
        problems.append(msg)


def attr(obj, name):
    v = obj.attrs.get(name)
    return v.decode() if isinstance(v, bytes) else v


def main():
    path = sys.argv[1]
    spec = json.load(open(sys.argv[2], encoding="utf-8")) if len(sys.argv) > 2 else {}
    a = ad.read_h5ad(path)

    expect(isinstance(a.X, np.ndarray), f"X is {type(a.X).__name__}, expected a dense numpy array")
    expect(a.X.dtype == np.float32, f"X has dtype {a.X.dtype}, expected float32")
    expect(list(a.obs_names) == [str(i) for i in range(a.n_obs)], "obs index is not '0'..'n-1'")
    for c in a.obs.columns:
        expect(isinstance(a.obs[c].dtype, pd.CategoricalDtype), f"obs column {c} is {a.obs[c].dtype}, expected category")

    with h5py.File(path, "r") as f:
        expect(attr(f, "encoding-type") == "anndata" and attr(f, "encoding-version") == "0.1.0", "root encoding")
        expect(isinstance(f["X"], h5py.Dataset) and attr(f["X"], "encoding-type") == "array", "X encoding")
        for g in ("obs", "var"):
            expect(attr(f[g], "encoding-type") == "dataframe" and attr(f[g], "_index") == "_index", f"{g} encoding")
            expect(attr(f[g]["_index"], "encoding-type") == "string-array", f"{g}/_index encoding")
        for c in a.obs.columns:
            grp = f["obs"][c]
            expect(attr(grp, "encoding-type") == "categorical" and "ordered" in grp.attrs and not grp.attrs["ordered"],
                   f"obs/{c} is not an unordered categorical")
            expect(attr(grp["categories"], "encoding-type") == "string-array", f"obs/{c}/categories encoding")
            expect(attr(grp["codes"], "encoding-type") == "array", f"obs/{c}/codes encoding")
        for g in ("layers", "obsm", "obsp", "uns", "varm", "varp"):
            expect(g in f and attr(f[g], "encoding-type") == "dict" and len(f[g]) == 0, f"{g} is not an empty dict")

    if "n_obs" in spec:
        expect(a.n_obs == spec["n_obs"], f"n_obs {a.n_obs}, expected {spec['n_obs']}")
    if "n_vars" in spec:
        expect(a.n_vars == spec["n_vars"], f"n_vars {a.n_vars}, expected {spec['n_vars']}")
    if "genes" in spec:
        expect(list(a.var_names) == spec["genes"], f"genes {list(a.var_names)[:5]}..., expected {spec['genes'][:5]}...")
    if "genes_from" in spec:
        ref = ad.read_h5ad(spec["genes_from"], backed="r")
        expect(list(a.var_names) == list(ref.var_names), "genes differ from those of " + spec["genes_from"])
    if "obs_columns" in spec:
        expect(list(a.obs.columns) == spec["obs_columns"], f"obs columns {list(a.obs.columns)}, expected {spec['obs_columns']}")
    for name, col in spec.get("obs", {}).items():
        if name not in a.obs.columns:
            problems.append(f"obs column {name} is missing")
            continue
        s = a.obs[name]
        if "categories" in col:
            expect(list(s.cat.categories) == col["categories"], f"obs/{name} categories {list(s.cat.categories)[:5]}...")
        if "codes" in col:
            got = s.cat.codes.to_numpy()
            bad = np.flatnonzero(got != np.asarray(col["codes"]))
            expect(len(got) == len(col["codes"]) and bad.size == 0,
                   f"obs/{name} codes differ (first at row {bad[0] if bad.size else '?'})")
    if "X" in spec:
        want = np.asarray(spec["X"], dtype=np.float32).reshape(a.n_obs, a.n_vars)
        bad = np.argwhere(a.X != want)
        expect(bad.size == 0, f"X differs at {len(bad)} entries, first {tuple(bad[0]) if len(bad) else ''}: "
                              f"{a.X[tuple(bad[0])] if len(bad) else ''} vs {want[tuple(bad[0])] if len(bad) else ''}")

    if problems:
        print(path + ": " + "; ".join(problems))
        sys.exit(1)
    print("ok", a.shape)


if __name__ == "__main__":
    main()
