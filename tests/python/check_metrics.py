#!/usr/bin/python3
"""Recompute every metric of a cellshift evaluation with numpy/scipy/anndata, straight from the definitions in
include/cellshift/eval.h, and compare with the metrics.csv (and the aggregates of metrics.json) cellshift wrote.

Usage: check_metrics.py RUN_DIR --data DATA.h5ad [--layer NAME] [--delimiter +] [--pred NAME=PATH ...]
                        [--eval_max_cells N] [--eval_pca_components K] [--rtol 1e-6] [--atol 1e-9]

RUN_DIR holds split.json, metrics.csv, metrics.json and <model>/predictions.h5ad for every model of metrics.csv
(--pred overrides a model's path). The keys (perturbation, context, dose, control value) are read from split.json,
the subsampling cap and PCA size from metrics.json (its settings only, never its values), or from the options.

Independent of cellshift: the groups come from the labels (own canonicalisation of "A+B" labels), the DE ranking,
subsamples, PCA (numpy.linalg.eigh of the covariance), distances (scipy cdist/pdist) and the rank are all
computed here. Means are exact sums (math.fsum) of the float32 values, as cellshift holds the data in float32.

Tolerance: every continuous metric, energy_distance and mmd_rbf included, must agree to |a - b| <= rtol |b| + atol
(rtol 1e-6, atol 1e-9); de_recall_top20 and rank are counts and must agree to 1e-12; cell counts exactly."""
import argparse
import csv
import json
import math
import os
import sys

import anndata as ad
import numpy as np
import scipy.sparse as sp
from scipy.spatial.distance import cdist, pdist

METRICS = ["rmse", "r2_mean_all", "r2_mean_top100_de", "pearson_delta", "pearson_delta_top20_de", "cosine_logfc",
           "energy_distance", "mmd_rbf", "de_recall_top20", "rank"]
DISCRETE = {"de_recall_top20", "rank"}
EIG_RTOL = 1e-9  # components with variance below this fraction of the first are numerically zero (eval.h)


def canonical(label, dose, control, delim, with_dose):
    """(name, dose label) of a condition: atoms sorted, control atoms dropped, doses '%.10g' aligned with the atoms."""
    def split(s):
        out, cur = [], ""
        for ch in str(s):
            if ch in delim:
                out.append(cur)
                cur = ""
            else:
                cur += ch
        out.append(cur)
        return [p.strip() for p in out if p.strip()]
    parts = split(label)
    doses = split(dose) if with_dose else []
    atoms = []
    for i, p in enumerate(parts):
        if p == control:
            continue
        v = float(doses[0 if len(doses) == 1 else i]) if with_dose else 1.0
        atoms.append((p, v))
    atoms.sort()
    name = delim[0].join(a for a, _ in atoms) if atoms else control
    dlabel = delim[0].join("%.10g" % v for _, v in atoms) if with_dose else ""
    return name, dlabel


def dose_strings(col):
    if col.dtype.kind in "fiu":
        return ["%g" % v for v in col.to_numpy()]
    return [str(v) for v in col.astype(str)]


def dense_rows(X, rows):
    A = X[rows]
    A = A.toarray() if sp.issparse(A) else np.asarray(A)
    return A.astype(np.float32).astype(np.float64)  # cellshift holds expression values in float32


def exact_mean(A):
    n = A.shape[0]
    return np.array([math.fsum(A[:, j]) for j in range(A.shape[1])]) / n


def sample_var(A, m):
    n = A.shape[0]
    return ((A - m) ** 2).sum(axis=0) / (n - 1) if n > 1 else np.zeros(A.shape[1])


def welch_t(m1, v1, n1, m2, v2, n2):
    den = v1 / n1 + v2 / n2
    t = np.zeros_like(m1)
    ok = den > 0
    t[ok] = (m1[ok] - m2[ok]) / np.sqrt(den[ok])
    return t


def top_abs(t, k):
    """Genes by |t| rounded to 40 significant bits (exact frexp/ldexp/rint), descending, ties by gene order."""
    m, e = np.frexp(np.abs(t))
    a = np.ldexp(np.rint(np.ldexp(m, 40)), e - 40)
    idx = [j for j in range(len(t)) if t[j] != 0 and not math.isnan(t[j])]
    idx.sort(key=lambda j: (-a[j], j))
    return idx[:k]


def pearson(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return 0.0
    xc, yc = x - x.mean(), y - y.mean()
    sxx, syy = (xc * xc).sum(), (yc * yc).sum()
    if sxx <= 0 or syy <= 0:
        return 0.0
    return float((xc * yc).sum() / (math.sqrt(sxx) * math.sqrt(syy)))


def cosine(x, y):
    sxx, syy = float((x * x).sum()), float((y * y).sum())
    if sxx <= 0 or syy <= 0:
        return 0.0
    return float((x * y).sum() / (math.sqrt(sxx) * math.sqrt(syy)))


def subsample(n, cap):
    return np.arange(n) if n <= cap else (np.arange(cap) * n) // cap


def sqdist(X, Y=None):
    """Squared distances: all pairs of X and Y, or the distinct pairs of X (condensed)."""
    if X.shape[1] == 0:
        return np.zeros(X.shape[0] * Y.shape[0]) if Y is not None else np.zeros(X.shape[0] * (X.shape[0] - 1) // 2)
    return cdist(X, Y, "sqeuclidean").ravel() if Y is not None else pdist(X, "sqeuclidean")


def energy_mmd(P, T, s2):
    def within(D):
        return D.mean() if D.size else 0.0
    dpt, dpp, dtt = sqdist(P, T), sqdist(P), sqdist(T)
    energy = 2 * np.sqrt(dpt).mean() - within(np.sqrt(dpp)) - within(np.sqrt(dtt))
    k = lambda D: np.exp(-D / (2 * s2))
    mmd = within(k(dpp)) + within(k(dtt)) - 2 * k(dpt).mean()
    return float(energy), float(mmd)


def pca_space(Cs, Ts, kmax):
    """Mean, components (columns) and scores of C u T, from the covariance with numpy.linalg.eigh."""
    Z = np.vstack([Cs, Ts])
    n, G = Z.shape
    mu = Z.mean(axis=0)
    Zc = Z - mu
    kk = min(kmax, n, G)
    k = 0
    V = np.zeros((G, 0))
    if kk > 0 and n >= 2:
        w, U = np.linalg.eigh(Zc.T @ Zc / (n - 1))
        w, U = w[::-1][:kk], U[:, ::-1][:, :kk]
        while k < kk and w[0] > 0 and w[k] > EIG_RTOL * w[0]:
            k += 1
        V = U[:, :k]
    S = Zc @ V
    D = sqdist(S)
    s2 = float(np.median(D)) if D.size else 0.0
    if not s2 > 0:
        s2 = 1.0
    return mu, V, S[len(Cs):], s2


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--data", required=True)
    ap.add_argument("--layer", default="")
    ap.add_argument("--delimiter", default="+")
    ap.add_argument("--pred", action="append", default=[], help="NAME=PATH of a model's predictions.h5ad")
    ap.add_argument("--eval_max_cells", type=int)
    ap.add_argument("--eval_pca_components", type=int)
    ap.add_argument("--rtol", type=float, default=1e-6)
    ap.add_argument("--atol", type=float, default=1e-9)
    args = ap.parse_args()

    split = json.load(open(os.path.join(args.run_dir, "split.json")))
    pkey, ckey, dkey, control = split["perturbation_key"], split["context_key"], split["dose_key"], split["control_value"]
    settings = {}
    mj = os.path.join(args.run_dir, "metrics.json")
    metrics_json = json.load(open(mj)) if os.path.exists(mj) else None
    if metrics_json:
        settings = {k: metrics_json[k] for k in ("eval_max_cells", "eval_pca_components") if k in metrics_json}
    cap = args.eval_max_cells or settings.get("eval_max_cells", 1000)
    kpca = args.eval_pca_components or settings.get("eval_pca_components", 50)
    with_dose = bool(dkey)

    with open(os.path.join(args.run_dir, "metrics.csv"), newline="") as f:
        written = list(csv.DictReader(f))
    models = []
    for r in written:
        if r["model"] not in models:
            models.append(r["model"])
    paths = {m: os.path.join(args.run_dir, m, "predictions.h5ad") for m in models}
    for p in args.pred:
        name, path = p.split("=", 1)
        paths[name] = path

    # The data: groups from the labels.
    a = ad.read_h5ad(args.data)
    X = a.layers[args.layer] if args.layer else a.X
    if sp.issparse(X):  # one index dtype for indptr and indices, which scipy's row indexing needs
        X = sp.csr_matrix((X.data, X.indices.astype(np.int64), X.indptr.astype(np.int64)), shape=X.shape)
    X = X.tocsr() if sp.issparse(X) else np.asarray(X)
    genes = list(a.var_names)
    labels = a.obs[pkey].astype(str).tolist()
    doses = dose_strings(a.obs[dkey]) if with_dose else [""] * a.n_obs
    ctxs = a.obs[ckey].astype(str).tolist() if ckey else ["all"] * a.n_obs
    cache, rows_of = {}, {}
    for i, (l, d, c) in enumerate(zip(labels, doses, ctxs)):
        if (l, d) not in cache:
            cache[(l, d)] = canonical(l, d, control, args.delimiter, with_dose)
        rows_of.setdefault(cache[(l, d)] + (c,), []).append(i)
    tests = [(g["condition"], g["dose"], g["context"]) for g in split["groups"]
             if g["role"] == "test" and g["condition"] != control]
    assert tests, "split.json has no test group"

    # Statistics of T and C, DE genes of T vs C, PCA spaces.
    G = len(genes)
    truth = {}
    for key in tests:
        cond, dose, ctx = key
        Tr, Cr = rows_of[key], rows_of[(control, "", ctx)]
        T, C = dense_rows(X, Tr), dense_rows(X, Cr)
        mT, mC = exact_mean(T), exact_mean(C)
        vT, vC = sample_var(T, mT), sample_var(C, mC)
        de = top_abs(welch_t(mT, vT, len(Tr), mC, vC, len(Cr)), 100)
        mu, V, Tsc, s2 = pca_space(C[subsample(len(Cr), cap)], T[subsample(len(Tr), cap)], kpca)
        truth[key] = dict(nT=len(Tr), nC=len(Cr), mT=mT, mC=mC, vC=vC, de=de, mu=mu, V=V, Tsc=Tsc, s2=s2)

    # Every model: its predicted cells per test group, then every metric.
    expected = {}
    for m in models:
        p = ad.read_h5ad(paths[m])
        assert list(p.var_names) == genes, "%s: genes differ from the data" % paths[m]
        PX = np.asarray(p.X.toarray() if sp.issparse(p.X) else p.X)
        plabels = p.obs[pkey].astype(str).tolist()
        pdoses = dose_strings(p.obs[dkey]) if with_dose else [""] * p.n_obs
        pctx = p.obs[ckey].astype(str).tolist() if ckey else ["all"] * p.n_obs
        kind = p.obs["cellshift_kind"].astype(str).tolist() if "cellshift_kind" in p.obs else None
        prow = {}
        for i in range(p.n_obs):
            if kind is not None and kind[i] == "observed":
                continue
            if kind is None and plabels[i] == control:
                continue
            key = canonical(plabels[i], pdoses[i], control, args.delimiter, with_dose) + (pctx[i],)
            assert key in truth, "%s: row %d (%s) matches no test group" % (paths[m], i, key)
            prow.setdefault(key, []).append(i)
        mP = {}
        for key in tests:
            t = truth[key]
            P = dense_rows(PX, prow[key])
            nP = P.shape[0]
            mP[key] = exact_mean(P)
            vP = sample_var(P, mP[key])
            mTk, mCk, de = t["mT"], t["mC"], t["de"]
            v = {}
            v["rmse"] = math.sqrt(((mP[key] - mTk) ** 2).mean())
            v["r2_mean_all"] = pearson(mP[key], mTk) ** 2
            v["r2_mean_top100_de"] = pearson(mP[key][de], mTk[de]) ** 2
            dP, dT = mP[key] - mCk, mTk - mCk
            v["pearson_delta"] = pearson(dP, dT)
            v["pearson_delta_top20_de"] = pearson(dP[de[:20]], dT[de[:20]])
            lfc = lambda x: np.log2(np.maximum(x, 0) + 0.1)
            v["cosine_logfc"] = cosine(lfc(mP[key]) - lfc(mCk), lfc(mTk) - lfc(mCk))
            Psc = (P[subsample(nP, cap)] - t["mu"]) @ t["V"]
            v["energy_distance"], v["mmd_rbf"] = energy_mmd(Psc, t["Tsc"], t["s2"])
            topP = top_abs(welch_t(mP[key], vP, nP, mCk, t["vC"], t["nC"]), 20)
            v["de_recall_top20"] = len(set(topP) & set(de[:20])) / 20.0
            v["n_pred"] = nP
            expected[(m,) + key] = v
        for key in tests:  # rank within the context
            ctx_tests = [h for h in tests if h[2] == key[2]]
            d = lambda h: math.sqrt(((mP[key] - truth[h]["mT"]) ** 2).mean())
            own = d(key)
            below = sum(1.0 if d(h) < own else 0.5 if d(h) == own else 0.0 for h in ctx_tests if h != key)
            expected[(m,) + key]["rank"] = below / len(ctx_tests) if len(ctx_tests) > 1 else float("nan")

    # Compare.
    failures, worst = [], {k: 0.0 for k in METRICS}
    got = {(r["model"], r["condition"], r["dose"], r["context"]): r for r in written}
    for k in set(got) - set(expected):
        failures.append("metrics.csv has a row for %s that is not a test group" % (k,))
    for k, v in sorted(expected.items()):
        r = got.get(k)
        if r is None:
            failures.append("metrics.csv lacks %s" % (k,))
            continue
        t = truth[k[1:]]
        for name, want in (("n_true", t["nT"]), ("n_control", t["nC"]), ("n_pred", v["n_pred"])):
            if int(r[name]) != want:
                failures.append("%s %s: %s = %s, expected %d" % (k[0], k[1:], name, r[name], want))
        for name in METRICS:
            a_, b_ = float(r[name]), v[name]
            if math.isnan(b_) or math.isnan(a_):
                if not (math.isnan(a_) and math.isnan(b_)):
                    failures.append("%s %s: %s = %s, numpy gives %s" % (k[0], "@".join(k[1:]), name, a_, b_))
                continue
            tol = 1e-12 if name in DISCRETE else args.rtol * abs(b_) + args.atol
            err = abs(a_ - b_)
            worst[name] = max(worst[name], err / max(abs(b_), 1e-300) if b_ else err)
            if not err <= tol:
                failures.append("%s %s: %s = %.12g, numpy gives %.12g (|diff| %.3g > %.3g)" % (k[0], "@".join(k[1:]), name, a_, b_, err, tol))
    if metrics_json:
        for m in models:
            for name in METRICS:
                vals = [expected[(m,) + key][name] for key in tests if not math.isnan(expected[(m,) + key][name])]
                mean = sum(vals) / len(vals) if vals else None
                a_ = metrics_json["aggregates"][m][name]
                if mean is None or a_ is None:
                    if (mean is None) != (a_ is None):
                        failures.append("metrics.json aggregate %s %s = %s, numpy gives %s" % (m, name, a_, mean))
                    continue
                if not abs(a_ - mean) <= args.rtol * abs(mean) + args.atol:
                    failures.append("metrics.json aggregate %s %s = %.12g, numpy gives %.12g" % (m, name, a_, mean))

    print("check_metrics: %d models x %d test groups, cap %d cells, %d components; largest relative differences:"
          % (len(models), len(tests), cap, kpca))
    print("  " + ", ".join("%s %.1e" % (k, worst[k]) for k in METRICS))
    for f in failures[:40]:
        print("FAIL " + f)
    if failures:
        print("check_metrics: %d mismatches" % len(failures))
        return 1
    print("check_metrics: all %d values agree" % (len(expected) * (len(METRICS) + 3)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
