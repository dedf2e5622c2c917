#!/usr/bin/python3
"""Recompute cellshift's grn model with numpy and compare it with a run's model.h5 and predictions.

Usage: check_grn.py DATA.h5ad SPLIT.json PREDICTIONS.h5ad MODEL.h5 [--dorothea F] [--trrust F] [--levels ABC]
                    [--ridge R] [--damping D] [--unknown error|zero|additive] [--type-key KEY] [--tol T]

From the data, split.json and the prior files alone (no cellshift code), following src/models/grn.c:
- the prior: DoRothEA rows of the wanted confidence levels and/or TRRUST rows; one edge per (TF, target); sign
  +1 / -1 / 0 (unknown or contradictory); genes found by exact name, else by a unique case-insensitive match;
- W on the edges between distinct genes: row t = ridge regression (X_R^T X_R / n + ridge I) w = X_R^T x_t / n over
  the training cells not perturbing t, each centred by the mean of its context's training cells; times damping;
- atoms: a gene of the data (input s e_g), else a TF with a signed target among the genes (input beta sigma),
  else unknown; r_a = (I - W)^{-1} rhs_a; s = own shift (the atom's single-atom shift at g), beta = <delta, r>/<r, r>,
  in the context, else averaged over the contexts where it was seen, else the mean of its kind and type (type:
  the --type-key value of its single group in the context, else of a group of the context with it, else of any
  group with it; without --type-key the context), else the mean of its kind, else none;
- predictions of every test group: each control cell of the context + sum_a u_a r_a (+ the unknown atoms' shift
  with --unknown additive). The run must have used -predict_max_cells 0.
Also checks W, the responses and the spectral radius saved in model.h5."""
import argparse
import json

import anndata as ad
import h5py
import numpy as np
import pandas as pd

p = argparse.ArgumentParser()
p.add_argument("data")
p.add_argument("split")
p.add_argument("pred")
p.add_argument("model")
p.add_argument("--dorothea")
p.add_argument("--trrust")
p.add_argument("--levels", default="ABC")
p.add_argument("--ridge", type=float, default=0.1)
p.add_argument("--damping", type=float, default=1.0)
p.add_argument("--unknown", default="error")
p.add_argument("--type-key")
p.add_argument("--tol", type=float, default=1e-5)
o = p.parse_args()

split = json.load(open(o.split))
pkey, ckey, control = split["perturbation_key"], split["context_key"], split["control_value"]
role = {(g["condition"], g["context"]): g["role"] for g in split["groups"]}
a = ad.read_h5ad(o.data)
X = a.X.toarray() if hasattr(a.X, "toarray") else np.asarray(a.X)
X = X.astype(np.float32).astype(np.float64)
genes = list(a.var_names)
G = len(genes)


def atoms_of(label):
    return sorted({q.strip() for q in str(label).split("+") if q.strip() and q.strip() != control})


cond = ["+".join(atoms_of(v)) or control for v in a.obs[pkey].astype(str)]
ctx = a.obs[ckey].astype(str).tolist() if ckey else ["all"] * a.n_obs
keys = list(zip(cond, ctx))
groups = sorted(set(keys))
assert set(groups) == set(role), "split.json does not describe this data"
contexts = sorted(set(ctx))
atoms = sorted({t for (n, _) in groups for t in atoms_of(n)})
A, C = len(atoms), len(contexts)
members = {g: np.array([i for i, k in enumerate(keys) if k == g]) for g in groups}
mean = {g: X[members[g]].mean(axis=0) for g in groups}
ctrl = {c: (control, c) for (n, c) in groups if n == control}

# The prior.
rows = []
if o.dorothea:
    d = pd.read_csv(o.dorothea, sep="\t", dtype=str, keep_default_na=False)
    d = d[d["confidence"].isin(list(o.levels))]
    rows += [(s, t, 1 if float(m) > 0 else 2) for s, t, m in zip(d["tf"], d["target"], d["mor"])]
if o.trrust:
    t = pd.read_csv(o.trrust, sep="\t", header=None, dtype=str, keep_default_na=False)
    rows += [(s, u, {"Activation": 1, "Repression": 2, "Unknown": 4}[m]) for s, u, m in zip(t[0], t[1], t[2])]
bits = {}
for s, t, b in rows:
    bits[(s, t)] = bits.get((s, t), 0) | b
edges = sorted(bits)
sign = {e: (1.0 if (b & 1) and not (b & 2) else -1.0 if (b & 2) and not (b & 1) else 0.0) for e, b in bits.items()}

exact = {g: i for i, g in enumerate(genes)}
low = {}
for i, g in enumerate(genes):
    low.setdefault(g.lower(), set()).add(i)


def gene_of(sym):
    if sym in exact:
        return exact[sym]
    h = low.get(sym.lower(), set())
    return next(iter(h)) if len(h) == 1 else None


nodes = sorted({x for e in edges for x in e})
node_low = {}
for n in nodes:
    node_low.setdefault(n.lower(), []).append(n)


def node_of(sym):
    if sym in bits_nodes:
        return sym
    h = node_low.get(sym.lower(), [])
    return h[0] if len(h) == 1 else None


bits_nodes = set(nodes)
regs = {}  # target gene -> ordered regulator genes (first edge of a gene pair wins)
for (s, t) in edges:
    gs, gt = gene_of(s), gene_of(t)
    if gs is None or gt is None or gs == gt:
        continue
    regs.setdefault(gt, {})
    regs[gt].setdefault(gs, sign[(s, t)])

agene = [gene_of(x) for x in atoms]
train = np.array([role[k] == "train" for k in keys])
ctx_idx = np.array([contexts.index(c) for c in ctx])
ctxmean = np.stack([X[train & (ctx_idx == c)].mean(axis=0) for c in range(C)])
Xc = X - ctxmean[ctx_idx]
perturbs = [set(agene[atoms.index(t)] for t in atoms_of(n) if agene[atoms.index(t)] is not None) for n in cond]

W = np.zeros((G, G))
for t, rr in regs.items():
    R = sorted(rr)
    use = train & np.array([t not in pg for pg in perturbs])
    Z, y = Xc[use][:, R], Xc[use][:, t]
    n = use.sum()
    w = np.linalg.solve(Z.T @ Z / n + o.ridge * np.eye(len(R)), Z.T @ y / n)
    W[t, R] = o.damping * w
rho = np.abs(np.linalg.eigvals(W)).max() if G else 0.0
M = np.linalg.inv(np.eye(G) - W)

# Atom kinds and responses.
kind, resp = [], {}
for k, x in enumerate(atoms):
    if agene[k] is not None:
        kind.append(0)
        resp[k] = M[:, agene[k]]
        continue
    nd = node_of(x)
    sigma = np.zeros(G)
    for (s, t) in edges:
        if s == nd:
            gt = gene_of(t)
            if gt is not None and sigma[gt] == 0:
                sigma[gt] = sign[(s, t)]
    if nd is not None and np.any(sigma != 0):
        kind.append(1)
        resp[k] = M @ sigma
    else:
        kind.append(2)

# Measured shifts of the atoms seen alone in training (as additive computes them).
ctxdelta, seen = {}, {}
for (n, c) in groups:
    at = atoms_of(n)
    if role[(n, c)] != "train" or len(at) != 1 or c not in ctrl:
        continue
    ctxdelta[(contexts.index(c), atoms.index(at[0]))] = mean[(n, c)] - mean[ctrl[c]]
delta = {}
for k in range(A):
    ds = [ctxdelta[(c, k)] for c in range(C) if (c, k) in ctxdelta]
    if ds:
        delta[k] = np.mean(ds, axis=0)


def scale(k, dv):
    if kind[k] == 0:
        return dv[agene[k]]
    r = resp[k]
    return float(r @ dv) / float(r @ r)


# Types.
if o.type_key:
    tcol = a.obs[o.type_key].astype(str).tolist()
    gtype = {}
    for g in groups:
        vals, cnt = np.unique([tcol[i] for i in members[g]], return_counts=True)
        cats = sorted(set(tcol))
        best = max(range(len(vals)), key=lambda i: (cnt[i], -cats.index(vals[i])))
        gtype[g] = vals[best]


def type_of(k, c):
    if not o.type_key:
        return c
    for test in (lambda g: g[1] == contexts[c] and atoms_of(g[0]) == [atoms[k]],
                 lambda g: g[1] == contexts[c] and atoms[k] in atoms_of(g[0]),
                 lambda g: atoms[k] in atoms_of(g[0])):
        for g in sorted(groups, key=lambda g: (g[1], g[0])):  # cellshift's group order: context, condition
            if test(g):
                return gtype[g]
    return None


u, frm = {}, {}
sums, alls = {}, {0: [], 1: []}
for c in range(C):
    for k in range(A):
        if kind[k] == 2 or (c, k) not in ctxdelta:
            continue
        u[(c, k)], frm[(c, k)] = scale(k, ctxdelta[(c, k)]), "ctx"
        sums.setdefault((kind[k], type_of(k, c)), []).append(u[(c, k)])
        alls[kind[k]].append(u[(c, k)])
for c in range(C):
    for k in range(A):
        if kind[k] == 2:
            frm[(c, k)] = "none"
        elif (c, k) in ctxdelta:
            continue
        elif k in delta:
            u[(c, k)], frm[(c, k)] = scale(k, delta[k]), "other"
        elif (kind[k], type_of(k, c)) in sums:
            u[(c, k)], frm[(c, k)] = np.mean(sums[(kind[k], type_of(k, c))]), "type"
        elif alls[kind[k]]:
            u[(c, k)], frm[(c, k)] = np.mean(alls[kind[k]]), "all"
        else:
            frm[(c, k)] = "none"

# model.h5
f = h5py.File(o.model, "r")["params"]
ip, ix, wv = f["W_indptr"][()], f["W_indices"][()], f["W_values"][()]
Wm = np.zeros((G, G))
for t in range(G):
    Wm[t, ix[ip[t]:ip[t + 1]]] = wv[ip[t]:ip[t + 1]]
errW = np.abs(Wm - W).max() if G else 0
assert errW <= 1e-8 * max(1, np.abs(W).max()), "W differs from numpy by %.3g" % errW
cols = f["column"][()]
assert list(f["kind"][()]) == kind, ("kinds", list(f["kind"][()]), kind)
R = f["response"][()]
errR = max([np.abs(R[cols[k]] - resp[k]).max() for k in resp] + [0])
assert errR <= 1e-7, "responses differ from numpy by %.3g" % errR
rho_c = f["rho"][()][0]
assert abs(rho_c - rho) <= 1e-8 * max(rho, 1e-3), "spectral radius: cellshift %.6g, numpy %.6g" % (rho_c, rho)
uc = f["u"][()]
for (c, k), v in u.items():
    assert abs(uc[c, k] - v) <= 1e-7 * max(1, abs(v)), ("input scale", atoms[k], contexts[c], uc[c, k], v, frm[(c, k)])

# Predictions.
pr = ad.read_h5ad(o.pred)
P = pr.X.toarray() if hasattr(pr.X, "toarray") else np.asarray(pr.X)
kind_col = pr.obs["cellshift_kind"].astype(str).to_numpy()
pcond = pr.obs[pkey].astype(str).to_numpy()
pctx = pr.obs[ckey].astype(str).to_numpy() if ckey else np.array(["all"] * pr.n_obs)
worst, ntest = 0.0, 0
for g in groups:
    if role[g] != "test":
        continue
    ntest += 1
    c = contexts.index(g[1])
    shift = np.zeros(G)
    for x in atoms_of(g[0]):
        k = atoms.index(x)
        if frm[(c, k)] != "none":
            shift += u[(c, k)] * resp[k]
        elif o.unknown == "additive":
            shift += ctxdelta.get((c, k), delta.get(k, np.zeros(G)))
        else:
            assert o.unknown == "zero", "an atom without input in a test group under -grn_unknown error"
    rows_ = np.where((kind_col == "predicted") & (pcond == g[0]) & (pctx == g[1]))[0]
    base = X[members[ctrl[g[1]]]]
    assert len(rows_) == len(base), "%s@%s: %d predicted rows, %d control cells" % (g[0], g[1], len(rows_), len(base))
    err = np.abs(P[rows_] - (base + shift[None, :])).max()
    worst = max(worst, err)
    assert err <= o.tol, "%s@%s: predicted cells differ from numpy by %.3g (> %g)" % (g[0], g[1], err, o.tol)
assert ntest, "no test group"
nk = [kind.count(i) for i in range(3)]
print("grn: %d test groups; W %d edges on %d targets, rho %.4g (numpy %.4g); atoms %d genes, %d TFs, %d unknown; "
      "max |W - numpy| %.2g, |response - numpy| %.2g, |prediction - numpy| %.2g" % (
          ntest, int((W != 0).sum()), len(regs), rho_c, rho, nk[0], nk[1], nk[2], errW, errR, worst))
