#!/usr/bin/python3
"""Broken copies of a real cellshift checkpoint, for the checks a resumed run makes on it.

Usage: make_bad_checkpoint.py GOOD.h5 OUT.h5 CASE

Cases: epoch_neg, epoch_big, sstep, step, best_epoch, bad_epochs, history, nan_param, nan_moment, type, vlen_type, no_type, old_format,
       missing (a parameter dataset removed)."""
import shutil
import sys

import h5py
import numpy as np

good, out, case = sys.argv[1:4]
if case == "old_format":  # the same content in HDF5's original format (superblock 0, no metadata checksums)
    with h5py.File(good, "r") as g, h5py.File(out, "w", libver="earliest") as f:
        for k, v in g.attrs.items():
            f.attrs[k] = v
        for k in g:
            g.copy(g[k], f, name=k)
    sys.exit(0)
shutil.copyfile(good, out)
with h5py.File(out, "r+") as f:
    a = f.attrs
    first = sorted(f["set0/params"].keys())[0]
    if case == "epoch_neg":
        a["epoch"] = np.int64(-7)
    elif case == "epoch_big":
        a["epoch"] = np.int64(99)
    elif case == "sstep":
        a["sstep"] = np.int64(1000000)
    elif case == "step":
        a["step"] = np.int64(int(a["step"]) + 1)
    elif case == "best_epoch":
        a["best_epoch"] = np.int64(int(a["epoch"]))
    elif case == "bad_epochs":
        a["bad_epochs"] = np.int64(int(a["epoch"]) + 4)
    elif case == "history":
        h = f["history"][()]
        del f["history"]
        f["history"] = np.vstack([h, h[-1:]])
    elif case in ("nan_param", "nan_moment"):
        d = f[f"set0/params/{first}" if case == "nan_param" else f"set0/optim/v/{first}"]
        x = d[()]
        x.flat[0] = np.nan
        d[...] = x
    elif case == "type":
        a["model_type"] = np.bytes_("cpa")  # fixed-length, as cellshift writes it
    elif case == "vlen_type":
        a["model_type"] = "scgen"  # h5py's default: variable-length, in the global heap
    elif case == "no_type":
        del a["model_type"]
    elif case == "missing":
        del f[f"set0/params/{first}"]
    else:
        sys.exit(f"unknown case {case}")
print(first)
