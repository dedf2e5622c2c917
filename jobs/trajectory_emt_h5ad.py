"""The TIGON EMT time course (../shared/data/tigon_trajectories/EMT.npy: one array of cells x 3 autoencoder
dimensions per time point) as an .h5ad for `cellshift trajectory`: X the 3 coordinates, obs day in days
(0 d, 8 h, 1 d, 3 d, 7 d). Usage: trajectory_emt_h5ad.py EMT.npy OUT.h5ad"""
import sys
import numpy as np
import pandas as pd
import anndata as ad

arrs = np.load(sys.argv[1], allow_pickle=True)[0]
days = [0.0, 8.0 / 24.0, 1.0, 3.0, 7.0]
X = np.vstack([np.asarray(a, dtype=np.float32) for a in arrs])
day = np.concatenate([[d] * len(a) for d, a in zip(days, arrs)])
a = ad.AnnData(X, obs=pd.DataFrame({"day": day}, index=[f"cell{i}" for i in range(len(day))]))
a.var_names = ["AE1", "AE2", "AE3"]
a.write_h5ad(sys.argv[2])
