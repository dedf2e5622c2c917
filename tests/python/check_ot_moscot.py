#!/usr/bin/python3
"""cellshift's Sinkhorn against moscot's own transport map tmap_10_105 (day 10 -> 10.5) stored in
moscot_temporal_tests.h5ad (theislab/moscot tests/data; see ../shared/data/schiebinger2019_reprogramming/SOURCES.md).
moscot's setting, read from the file's uns: a local PCA (uns local_pca = 50 components) of the two days' cells
together, squared Euclidean cost scaled by its mean, uniform marginals, eps = uns eps, tau_a/tau_b = uns tau_a/tau_b.
Usage: check_ot_moscot.py prepare H5AD DIR   -> DIR/problem.bin (read by test_ot -solve DIR)
       check_ot_moscot.py compare H5AD DIR   -> prints the plan correlation and largest difference; exit 1 if off."""
import sys
import warnings

import anndata as ad
import numpy as np
import scipy.sparse as sp

warnings.filterwarnings("ignore")
mode, path, out = sys.argv[1:4]
a = ad.read_h5ad(path)
day = a.obs["day"].values.astype(float)
T = np.asarray(a.uns["tmap_10_105"], dtype=np.float64)
if mode == "prepare":
    X = a.X.toarray() if sp.issparse(a.X) else np.asarray(a.X)
    Z = np.vstack([X[day == 10.0], X[day == 10.5]]).astype(np.float64)
    k = int(a.uns["local_pca"])
    Zc = Z - Z.mean(0)
    _, _, Vt = np.linalg.svd(Zc, full_matrices=False)
    P = (Zc @ Vt[:k].T).astype(np.float32)
    n = int((day == 10.0).sum())
    x, y = P[:n], P[n:]
    assert x.shape[0] == T.shape[0] and y.shape[0] == T.shape[1]
    with open(out + "/problem.bin", "wb") as f:
        np.array([x.shape[0], y.shape[0], k], np.int64).tofile(f)
        np.array([float(a.uns["eps"]), float(a.uns["tau_a"]), float(a.uns["tau_b"])], np.float64).tofile(f)
        np.array([1], np.int64).tofile(f)  # CS_OT_SCALE_MEAN
        x.tofile(f)
        y.tofile(f)
    sys.exit(0)
P = np.fromfile(out + "/plan.bin", np.float32).reshape(T.shape).astype(np.float64)
corr = np.corrcoef(P.ravel(), T.ravel())[0, 1]
diff = np.abs(P - T).max() / T.max()
print("moscot tmap_10_105 (%d x %d, eps %g, tau_a %.4f, tau_b %.4f): plan correlation %.8f, max |P - P_moscot| / max P_moscot "
      "%.2e, mass %.6f vs %.6f" % (T.shape[0], T.shape[1], a.uns["eps"], a.uns["tau_a"], a.uns["tau_b"], corr, diff, P.sum(), T.sum()))
sys.exit(0 if corr > 0.9999 and diff < 1e-2 else 1)
