#!/usr/bin/python3
"""same_params.py A.h5 B.h5: every array under params/ of two cellshift model files is bit-identical.

Exits 1 naming the first array that differs (with its largest difference); prints how many arrays were compared."""
import sys

import h5py
import numpy as np


def walk(x, y, path=""):
    n = 0
    for k in x:
        if isinstance(x[k], h5py.Group):
            n += walk(x[k], y[k], path + k + "/")
        else:
            u, v = x[k][()], y[k][()]
            if not np.array_equal(u, v):
                diff = np.abs(u.astype(float) - v.astype(float)).max() if u.shape == v.shape else "shapes differ"
                sys.exit(f"{path}{k} differs (max {diff})")
            n += 1
    return n


with h5py.File(sys.argv[1], "r") as a, h5py.File(sys.argv[2], "r") as b:
    n = walk(a["params"], b["params"])
if n == 0:
    sys.exit("no parameters")
print(f"{n} parameter arrays bit-identical")
