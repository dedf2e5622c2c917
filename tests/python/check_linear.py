#!/usr/bin/python3
"""Recompute cellshift's linear baseline with numpy and compare it with a run's predictions.

Usage: check_linear.py DATA.h5ad SPLIT.json PREDICTIONS.h5ad K RIDGE [TOL]

From the data and the roles in split.json alone (no cellshift code): G = top-K principal axes of the training
cells (numpy eigh of their covariance), the mean single-atom shift of every atom (train groups, averaged within
and then over contexts) projected on G, Y = shifts of the perturbed train groups against their context's
control mean, b its row mean, W = (G^T G + l I)^-1 G^T (Y - b) P (P^T P + l I)^-1. The predictions must have
been written with -predict_max_cells 0, so that the predicted rows of a test group are the context's control
cells in file order, each plus b + G W p_cond: every predicted row is checked against that."""
import json
import sys

import anndata as ad
import numpy as np

data, split_path, pred_path, K, ridge = sys.argv[1:6]
K, ridge = int(K), float(ridge)
tol = float(sys.argv[6]) if len(sys.argv) > 6 else 1e-5

split = json.load(open(split_path))
pkey, ckey, control = split["perturbation_key"], split["context_key"], split["control_value"]
role = {(g["condition"], g["context"]): g["role"] for g in split["groups"]}

a = ad.read_h5ad(data)
X = a.X.toarray() if hasattr(a.X, "toarray") else np.asarray(a.X)
X = X.astype(np.float32).astype(np.float64)  # cellshift holds the matrix in float32


def atoms_of(label):
    return sorted({p.strip() for p in str(label).split("+") if p.strip() and p.strip() != control})


cond = ["+".join(atoms_of(v)) or control for v in a.obs[pkey].astype(str)]
ctx = a.obs[ckey].astype(str).tolist() if ckey else ["all"] * a.n_obs
keys = list(zip(cond, ctx))
groups = sorted(set(keys))
assert set(groups) == set(role), "split.json does not describe this data"
members = {g: np.array([i for i, k in enumerate(keys) if k == g]) for g in groups}
mean = {g: X[members[g]].mean(axis=0) for g in groups}
ctrl = {c: (control, c) for (n, c) in groups if n == control}

# G: principal axes of the training cells.
train = np.array([role[k] == "train" for k in keys])
Xt = X[train]
C = np.cov(Xt, rowvar=False)
vals, vecs = np.linalg.eigh(C)
G = vecs[:, ::-1][:, :K]  # genes x K, descending variance
print("training cells %d, top variances %s" % (Xt.shape[0], np.array2string(vals[::-1][:K], precision=4)))

# P: per atom, the mean single-atom shift projected on G.
atoms = sorted({t for (n, _) in groups for t in atoms_of(n)})
emb = {}
for t in atoms:
    per_ctx = [mean[(n, c)] - mean[ctrl[c]] for (n, c) in groups
               if role[(n, c)] == "train" and atoms_of(n) == [t] and c in ctrl]
    emb[t] = G.T @ np.mean(per_ctx, axis=0) if per_ctx else np.zeros(K)


def embedding(name):
    return sum((emb[t] for t in atoms_of(name)), np.zeros(K))


# Y, b, W.
cols = [(n, c) for (n, c) in groups if n != control and role[(n, c)] == "train" and c in ctrl]
Y = np.stack([mean[g] - mean[ctrl[g[1]]] for g in cols], axis=1)  # genes x groups
b = Y.mean(axis=1)
Pm = np.stack([embedding(n) for (n, _) in cols])  # groups x K
I = np.eye(K)
W = np.linalg.solve(G.T @ G + ridge * I, G.T @ (Y - b[:, None]) @ Pm) @ np.linalg.inv(Pm.T @ Pm + ridge * I)

# Compare every predicted row.
p = ad.read_h5ad(pred_path)
P = p.X.toarray() if hasattr(p.X, "toarray") else np.asarray(p.X)
kind = p.obs["cellshift_kind"].astype(str).to_numpy()
pcond = p.obs[pkey].astype(str).to_numpy()
pctx = p.obs[ckey].astype(str).to_numpy() if ckey else np.array(["all"] * p.n_obs)
assert list(p.var_names) == list(a.var_names), "genes differ"
worst, ntest = 0.0, 0
for g in groups:
    if role[g] != "test":
        continue
    ntest += 1
    rows = np.where((kind == "predicted") & (pcond == g[0]) & (pctx == g[1]))[0]
    base = X[members[ctrl[g[1]]]]
    assert len(rows) == len(base), "%s@%s: %d predicted rows, %d control cells (use -predict_max_cells 0)" % (
        g[0], g[1], len(rows), len(base))
    expect = base + (b + G @ W @ embedding(g[0]))[None, :]
    err = np.abs(P[rows] - expect).max()
    worst = max(worst, err)
    if err > tol:
        sys.exit("%s@%s: predicted cells differ from numpy by %.3g (> %g)" % (g[0], g[1], err, tol))
if ntest == 0:
    sys.exit("no test group")
print("linear: %d test groups, %d train groups, K %d, ridge %g: max |cellshift - numpy| = %.3g" % (
    ntest, len(cols), K, ridge, worst))
