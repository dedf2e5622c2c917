#!/usr/bin/python3
"""Recompute every metric of a cellshift evaluation with numpy/scipy/anndata, straight from the definitions in
include/cellshift/eval.h, and compare with the metrics.csv, metrics.json (aggregates over all test groups and per
category, vcc_score, the genetic-interaction summary) and gi.csv that cellshift wrote.

Usage: check_metrics.py RUN_DIR --data DATA.h5ad [--layer NAME] [--delimiter +] [--pred NAME=PATH ...]
                        [--eval_max_cells N] [--eval_pca_components K] [--rtol 1e-6] [--atol 1e-9] [--show 40]

RUN_DIR holds split.json, metrics.csv, metrics.json, gi.csv and <model>/predictions.h5ad for every model of
metrics.csv (--pred overrides a model's path). The keys (perturbation, context, dose, control value) and the roles
are read from split.json, the subsampling cap, PCA size, vcc baseline and GI settings from metrics.json (its settings
only, never its values), or from the options.

Independent of cellshift: the groups come from the labels (own canonicalisation of "A+B" labels), the categories
from the roles, the DE rankings (Welch t; Wilcoxon rank-sum by scipy.stats.mannwhitneyu, Benjamini-Hochberg and
pdex's fold changes written out here), subsamples, PCA (numpy.linalg.eigh of the covariance), distances (scipy
cdist/pdist), the ranks, the Systema reference (the mean of the train perturbation centroids), the Theil-Sen fits
(pairs solved and their spatial median by Weiszfeld's iteration, written out here) and the distance correlations
(the double-centred distance matrices) are all computed here. Means are exact sums (math.fsum) of the float32 values,
as cellshift holds the data in float32.

Tolerance: every continuous metric must agree to |a - b| <= rtol |b| + atol (rtol 1e-6, atol 1e-9); the metrics
that count (de_recall_top20, de_score, the ranks, centroid_accuracy, discrimination_score) to 1e-12, as do the GI
types and the precisions; cell counts and categories exactly."""
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
from scipy.stats import mannwhitneyu

METRICS = ["rmse", "r2_mean_all", "r2_mean_top100_de", "pearson_delta", "pearson_delta_top20_de", "cosine_logfc",
           "energy_distance", "mmd_rbf", "de_recall_top20", "rank_rmse", "rank_cosine_logfc", "mae", "de_score",
           "discrimination_score", "centroid_accuracy", "pearson_delta_pert", "pearson_delta_pert_top20_de"]
DISCRETE = {"de_recall_top20", "de_score", "rank_rmse", "rank_cosine_logfc", "discrimination_score",
            "centroid_accuracy"}
EIG_RTOL = 1e-9  # components with variance below this fraction of the first are numerically zero (eval.h)
FDR = 0.05
FC_CLIP = 20.0
GI_TYPES = ["synergy", "suppression", "neomorphism", "redundancy", "epistasis"]
GI_FIELDS = ["c1", "c2", "magnitude", "dominance", "corr_fit", "dcor", "dcor_singles", "eq_contr"]
GI_K = 10


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
    # 0 also where the means differ by at most 1e-6 max(1, |m|) (CsWelchT: below float32 resolution)
    ok = (den > 0) & (np.abs(m1 - m2) > 1e-6 * np.maximum(1.0, np.maximum(np.abs(m1), np.abs(m2))))
    t[ok] = (m1[ok] - m2[ok]) / np.sqrt(den[ok])
    return t


def rounded_abs(t):
    m, e = np.frexp(np.abs(t))
    return np.ldexp(np.rint(np.ldexp(m, 40)), e - 40)


def top_abs(t, k):
    """Genes by |t| rounded to 40 significant bits (exact frexp/ldexp/rint), descending, ties by gene order."""
    a = rounded_abs(t)
    idx = [j for j in range(len(t)) if t[j] != 0 and not math.isnan(t[j])]
    idx.sort(key=lambda j: (-a[j], j))
    return idx[:k]


def rank_abs(t, mask):
    """Every gene of mask by rounded |t|, descending, ties by gene order (zeros included)."""
    a = rounded_abs(t)
    idx = [j for j in range(len(t)) if mask[j] and not math.isnan(t[j])]
    idx.sort(key=lambda j: (-a[j], j))
    return idx


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


# ---- differential expression as cell-eval (pdex) ---------------------------------------------------------------
def wilcoxon_p(X, Y):
    """Two-sided Mann-Whitney U p-value per gene (columns), asymptotic, tie and continuity corrected; 1 where every
    value ties (scipy gives NaN or 1 there)."""
    if X.shape[0] == 0 or Y.shape[0] == 0:
        return np.ones(X.shape[1])
    p = mannwhitneyu(X, Y, axis=0, alternative="two-sided", use_continuity=True, method="asymptotic").pvalue
    return np.where(np.isnan(p), 1.0, np.minimum(p, 1.0))


def bh(p):
    m = len(p)
    o = np.argsort(p, kind="stable")
    q = np.empty(m)
    run = 1.0
    for r in range(m - 1, -1, -1):
        run = min(run, p[o[r]] * m / (r + 1))
        q[o[r]] = run
    return q


def log2fc(mX, mC):
    x, c = np.expm1(mX), np.expm1(mC)
    out = np.zeros(len(mX))
    for j in range(len(mX)):
        fc = FC_CLIP if c[j] == 0 else 1.0 / FC_CLIP if x[j] == 0 else x[j] / c[j]
        out[j] = math.log2(fc) if fc > 0 else 0.0
    return out


def de_set(X, C, mX, mC):
    q = bh(wilcoxon_p(X, C))
    return rank_abs(log2fc(mX, mC), q < FDR)


def de_overlap(tset, pset):
    if not tset:
        return 0.0
    return len(set(pset[:len(tset)]) & set(tset)) / len(tset)


# ---- genetic interactions ------------------------------------------------------------------------------------------
def spatial_median(S):
    """Weiszfeld's iteration with the Vardi-Zhang step, from the mean, until a step is below 1e-12 of the iterate."""
    y = S.mean(axis=0)
    for _ in range(1000):
        eps = np.finfo(float).eps * max(1.0, float(np.sqrt((y * y).sum())))
        d = np.sqrt(((S - y) ** 2).sum(axis=1))
        far = d > eps
        eta = float((~far).sum())
        if not far.any():
            ynew = y
        else:
            w = 1 / d[far]
            r = float(np.sqrt((((S[far] - y) * w[:, None]).sum(axis=0) ** 2).sum()))
            if not r > 0:
                ynew = y
            else:
                T = (S[far] * w[:, None]).sum(axis=0) / w.sum()
                ynew = max(0.0, 1 - eta / r) * T + min(1.0, eta / r) * y
        step = float(np.sqrt(((ynew - y) ** 2).sum()))
        y = ynew
        if step <= 1e-12 * max(1.0, float(np.sqrt((y * y).sum()))):
            break
    return y


def theil_sen2(a, b, y, max_pairs):
    n = len(a)
    npairs = n * (n - 1) // 2
    keep = None if npairs <= max_pairs else set((np.arange(max_pairs, dtype=np.int64) * npairs) // max_pairs)
    sol, q = [], 0
    for i in range(n):
        for k in range(i + 1, n):
            if keep is None or q in keep:
                t1, t2 = a[i] * b[k], a[k] * b[i]
                det = t1 - t2
                if abs(det) > 1e-12 * (abs(t1) + abs(t2)):
                    sol.append(((y[i] * b[k] - y[k] * b[i]) / det, (a[i] * y[k] - a[k] * y[i]) / det))
            q += 1
    if not sol:
        return float("nan"), float("nan")
    c = spatial_median(np.array(sol))
    return float(c[0]), float(c[1])


def dcor(X, Y):
    X, Y = X.reshape(len(X), -1), Y.reshape(len(Y), -1)
    if len(X) < 2:
        return 0.0
    def centred(Z):
        D = np.sqrt(((Z[:, None, :] - Z[None, :, :]) ** 2).sum(axis=2))
        return D - D.mean(axis=0)[None, :] - D.mean(axis=1)[:, None] + D.mean()
    A, B = centred(X), centred(Y)
    sab, saa, sbb = (A * B).sum(), (A * A).sum(), (B * B).sum()
    den = math.sqrt(saa * sbb)
    return math.sqrt(sab / den) if den > 0 and sab > 0 else 0.0


def gi_fit(a, b, y, max_pairs):
    c1, c2 = theil_sen2(a, b, y, max_pairs)
    f = {"c1": c1, "c2": c2, "genes": len(a)}
    f["magnitude"] = math.sqrt(c1 * c1 + c2 * c2)
    with np.errstate(divide="ignore", invalid="ignore"):
        f["dominance"] = float(abs(np.log10(np.abs(c1) / np.abs(c2))))
    f["corr_fit"] = float("nan") if math.isnan(c1) else pearson(c1 * a + c2 * b, y)
    f["dcor"] = dcor(np.column_stack([a, b]), y)
    f["dcor_singles"] = dcor(a, b)
    da, db = dcor(a, y), dcor(b, y)
    f["eq_contr"] = min(da, db) / max(da, db) if max(da, db) > 0 else float("nan")
    nan_false = lambda c: bool(c)
    f["synergy"] = nan_false(f["magnitude"] > 1.15)
    f["suppression"] = nan_false(f["magnitude"] < 1)
    f["neomorphism"] = nan_false(f["corr_fit"] < 0.88)
    f["redundancy"] = nan_false(f["dcor"] > 0.85)
    f["epistasis"] = nan_false(f["eq_contr"] < 0.28)
    return f


def gi_score(f, y):
    v = {"synergy": f["magnitude"], "suppression": -f["magnitude"], "neomorphism": -f["corr_fit"],
         "redundancy": f["dcor"], "epistasis": -f["eq_contr"]}[y]
    return -math.inf if math.isnan(v) else v


def gi_precision(true_fits, pred_fits, y, k):
    n = len(true_fits)
    if n < 2 * k:
        return None, None
    order = sorted(range(n), key=lambda i: (-gi_score(pred_fits[i], y), i))
    hits = sum(true_fits[i][y] for i in order[:k])
    return hits / k, sum(f[y] for f in true_fits) / n


# ---- comparison -------------------------------------------------------------------------------------------------
class Checker:
    def __init__(self, rtol, atol):
        self.rtol, self.atol, self.failures, self.worst, self.count = rtol, atol, [], {}, 0

    def value(self, what, name, got, want, discrete=False):
        self.count += 1
        got, want = float(got) if got is not None else float("nan"), float(want) if want is not None else float("nan")
        if math.isnan(got) or math.isnan(want) or math.isinf(got) or math.isinf(want):
            if not (got == want or (math.isnan(got) and math.isnan(want))):
                self.failures.append("%s: %s = %s, numpy gives %s" % (what, name, got, want))
            return
        tol = 1e-12 if discrete else self.rtol * abs(want) + self.atol
        err = abs(got - want)
        self.worst[name] = max(self.worst.get(name, 0.0), err / abs(want) if want else err)
        if not err <= tol:
            self.failures.append("%s: %s = %.12g, numpy gives %.12g (|diff| %.3g > %.3g)" % (what, name, got, want, err, tol))

    def exact(self, what, name, got, want):
        self.count += 1
        if got != want:
            self.failures.append("%s: %s = %s, expected %s" % (what, name, got, want))


def context_metrics(tests, truth, mP, delim):
    """rank_rmse, rank_cosine_logfc, centroid_accuracy, discrimination_score of every test group."""
    out = {}
    lfc = lambda m, c: np.log2(np.maximum(m, 0) + 0.1) - np.log2(np.maximum(c, 0) + 0.1)
    rmse = lambda a, b: math.sqrt(((a - b) ** 2).mean())
    below = lambda x, own: 1.0 if x < own else 0.5 if x == own else 0.0
    for p in tests:
        group = [h for h in tests if h[2] == p[2]]
        n = len(group)
        if n < 2:
            out[p] = dict(rank_rmse=float("nan"), rank_cosine_logfc=float("nan"), centroid_accuracy=float("nan"),
                          discrimination_score=float("nan"))
            continue
        mC, mTp, mPp = truth[p]["mC"], truth[p]["mT"], mP[p]
        own = rmse(mPp, mTp)
        sown = cosine(lfc(mPp, mC), lfc(mTp, mC))
        keep = np.array([g not in p[0].split(delim[0]) for g in truth["genes"]])
        l1 = lambda h: float(np.abs((truth[h]["mT"] - mC)[keep] - (mPp - mC)[keep]).sum())
        lown = l1(p)
        others = [h for h in group if h != p]
        out[p] = dict(
            rank_rmse=sum(below(rmse(mP[h], mTp), own) for h in others) / n,
            rank_cosine_logfc=sum(below(-cosine(lfc(mP[h], mC), lfc(mTp, mC)), -sown) for h in others) / n,
            centroid_accuracy=sum(1.0 for h in others if rmse(mPp, truth[h]["mT"]) > own) / (n - 1),
            discrimination_score=1 - sum(below(l1(h), lown) for h in others) / n)
    return out


def categories(split, delim):
    """Every group's category from the roles: an atom is seen when it has a single-atom train group."""
    control = split["control_value"]
    atoms = lambda c: [] if c == control else c.split(delim[0])
    seen = {g["condition"] for g in split["groups"] if g["role"] == "train" and len(atoms(g["condition"])) == 1}
    out = {}
    for g in split["groups"]:
        a = atoms(g["condition"])
        n, k = len(a), sum(x in seen for x in a)
        out[(g["condition"], g["dose"], g["context"])] = ("control" if n == 0 else ("seen_single" if k else "unseen_single") if n == 1
                                                          else "combo_seen%d" % k if n == 2 else "combo%d_seen%d" % (n, k))
    return out


def vcc(u, b):
    def term(x, y, byone):
        if math.isnan(x) or math.isnan(y) or (byone and y == 1) or (not byone and y == 0):
            return 0.0
        return max((x - y) / (1 - y) if byone else 1 - x / y, 0.0)
    return (term(u["de_score"], b["de_score"], True) + term(u["discrimination_score"], b["discrimination_score"], True)
            + term(u["mae"], b["mae"], False)) / 3


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
    ap.add_argument("--show", type=int, default=40, help="mismatches printed")
    args = ap.parse_args()
    chk = Checker(args.rtol, args.atol)

    split = json.load(open(os.path.join(args.run_dir, "split.json")))
    pkey, ckey, dkey, control = split["perturbation_key"], split["context_key"], split["dose_key"], split["control_value"]
    metrics_json = json.load(open(os.path.join(args.run_dir, "metrics.json")))
    cap = args.eval_max_cells or metrics_json.get("eval_max_cells", 1000)
    kpca = args.eval_pca_components or metrics_json.get("eval_pca_components", 50)
    gi_settings = metrics_json["genetic_interactions"]
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
    category = categories(split, args.delimiter)
    for g in split["groups"]:  # a split.json written by cellshift names the categories; a hand-made one may not
        key = (g["condition"], g["dose"], g["context"])
        if "category" in g:
            chk.exact("split.json %s" % (key,), "category", g["category"], category[key])

    group_mean = {}
    def gmean(key):
        if key not in group_mean:
            group_mean[key] = exact_mean(dense_rows(X, rows_of[key]))
        return group_mean[key]

    # Systema's reference: the mean of the train perturbation centroids of the context (else the control plus the
    # average shift of the contexts that have some).
    shift = {}
    for g in split["groups"]:
        key = (g["condition"], g["dose"], g["context"])
        if g["role"] == "train" and g["condition"] != control and (control, "", g["context"]) in rows_of:
            shift.setdefault(g["context"], []).append(gmean(key) - gmean((control, "", g["context"])))
    shift = {c: np.mean(v, axis=0) for c, v in shift.items()}
    fallback = np.mean(list(shift.values()), axis=0) if shift else np.zeros(len(genes))

    # Statistics of T and C, DE genes of T vs C, PCA spaces.
    truth = {"genes": genes}
    for key in tests:
        cond, dose, ctx = key
        Tr, Cr = rows_of[key], rows_of[(control, "", ctx)]
        T, C = dense_rows(X, Tr), dense_rows(X, Cr)
        mT, mC = exact_mean(T), exact_mean(C)
        vT, vC = sample_var(T, mT), sample_var(C, mC)
        de = top_abs(welch_t(mT, vT, len(Tr), mC, vC, len(Cr)), 100)
        mu, V, Tsc, s2 = pca_space(C[subsample(len(Cr), cap)], T[subsample(len(Tr), cap)], kpca)
        ref = mC + shift.get(ctx, fallback)
        truth[key] = dict(nT=len(Tr), nC=len(Cr), mT=mT, mC=mC, vC=vC, C=C, de=de, mu=mu, V=V, Tsc=Tsc, s2=s2, ref=ref,
                          des=de_set(T, C, mT, mC))

    # The qualifying doubles of the genetic-interaction analysis and their measured fits.
    doubles = []
    for key in tests:
        atoms = key[0].split(args.delimiter[0])
        if len(atoms) != 2:
            continue
        dl = key[1].split(args.delimiter[0]) if with_dose else ["", ""]
        singles = [(atoms[i], dl[i], key[2]) for i in range(2)]
        if all(s in rows_of for s in singles):
            doubles.append((key, singles))
    ndoubles = sum(1 for key in tests if len(key[0].split(args.delimiter[0])) == 2)
    def gi_vectors(key, singles, mAB):
        mC = truth[key]["mC"]
        H = mC >= gi_settings["min_mean"]
        return (gmean(singles[0]) - mC)[H], (gmean(singles[1]) - mC)[H], (mAB - mC)[H]
    gi_true = [gi_fit(*gi_vectors(k, s, truth[k]["mT"]), gi_settings["max_pairs"]) for k, s in doubles]
    chk.exact("metrics.json genetic_interactions", "test_doubles", gi_settings["test_doubles"], ndoubles)
    chk.exact("metrics.json genetic_interactions", "qualifying", gi_settings["qualifying"], len(doubles))

    # Every model: its predicted cells per test group, then every metric.
    expected, mPs, gi_pred = {}, {}, {}
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
            mTk, mCk, de, R = t["mT"], t["mC"], t["de"], t["ref"]
            v = {}
            v["rmse"] = math.sqrt(((mP[key] - mTk) ** 2).mean())
            v["mae"] = float(np.abs(mP[key] - mTk).mean())
            v["r2_mean_all"] = pearson(mP[key], mTk) ** 2
            v["r2_mean_top100_de"] = pearson(mP[key][de], mTk[de]) ** 2
            dP, dT = mP[key] - mCk, mTk - mCk
            v["pearson_delta"] = pearson(dP, dT)
            v["pearson_delta_top20_de"] = pearson(dP[de[:20]], dT[de[:20]])
            rP, rT = mP[key] - R, mTk - R
            v["pearson_delta_pert"] = pearson(rP, rT)
            v["pearson_delta_pert_top20_de"] = pearson(rP[de[:20]], rT[de[:20]])
            lfc = lambda x: np.log2(np.maximum(x, 0) + 0.1)
            v["cosine_logfc"] = cosine(lfc(mP[key]) - lfc(mCk), lfc(mTk) - lfc(mCk))
            Psc = (P[subsample(nP, cap)] - t["mu"]) @ t["V"]
            v["energy_distance"], v["mmd_rbf"] = energy_mmd(Psc, t["Tsc"], t["s2"])
            topP = top_abs(welch_t(mP[key], vP, nP, mCk, t["vC"], t["nC"]), 20)
            v["de_recall_top20"] = len(set(topP) & set(de[:20])) / 20.0
            v["de_score"] = de_overlap(t["des"], de_set(P, t["C"], mP[key], mCk))
            v["n_pred"] = nP
            expected[(m,) + key] = v
        for key, vals in context_metrics(tests, truth, mP, args.delimiter).items():
            expected[(m,) + key].update(vals)
        mPs[m] = mP
        gi_pred[m] = [gi_fit(*gi_vectors(k, s, mP[k]), gi_settings["max_pairs"]) for k, s in doubles]

    # metrics.csv: every group of every model.
    got = {(r["model"], r["condition"], r["dose"], r["context"]): r for r in written}
    for k in set(got) - set(expected):
        chk.failures.append("metrics.csv has a row for %s that is not a test group" % (k,))
    for k, v in sorted(expected.items()):
        r = got.get(k)
        if r is None:
            chk.failures.append("metrics.csv lacks %s" % (k,))
            continue
        t = truth[k[1:]]
        what = "%s %s%s@%s" % (k[0], k[1], " dose " + k[2] if k[2] else "", k[3])
        for name, want in (("n_true", t["nT"]), ("n_control", t["nC"]), ("n_pred", v["n_pred"])):
            chk.exact(what, name, int(r[name]), want)
        chk.exact(what, "category", r["category"], category[k[1:]])
        for name in METRICS:
            chk.value(what, name, r[name], v[name], name in DISCRETE)

    # metrics.json: aggregates over all test groups and per category, and vcc_score.
    cats = sorted({category[key] for key in tests})
    chk.exact("metrics.json", "categories", metrics_json["categories"], cats)
    agg = {}
    for m in models:
        for c in [None] + cats:
            sel = [key for key in tests if c is None or category[key] == c]
            agg[(m, c)] = {}
            for name in METRICS:
                vals = [expected[(m,) + key][name] for key in sel if not math.isnan(expected[(m,) + key][name])]
                agg[(m, c)][name] = sum(vals) / len(vals) if vals else float("nan")
    base = metrics_json["vcc_baseline"]
    for m in models:
        for c in [None] + cats:
            written_agg = metrics_json["aggregates"][m] if c is None else metrics_json["category_aggregates"][m][c]
            what = "metrics.json %s %s" % (m, c or "all")
            for name in METRICS:
                chk.value(what, name, written_agg[name], agg[(m, c)][name])
            want = vcc(agg[(m, c)], agg[(base, c)]) if base in models else float("nan")
            chk.value(what, "vcc_score", written_agg["vcc_score"], want)

    # gi.csv: the measured and predicted fits of the qualifying doubles; the precisions in metrics.json.
    with open(os.path.join(args.run_dir, "gi.csv"), newline="") as f:
        gi_rows = {(r["fit"], r["model"], r["condition"], r["dose"], r["context"]): r for r in csv.DictReader(f)}
    want_rows = {("measured", "") + k: fit for (k, _), fit in zip(doubles, gi_true)}
    for m in models:
        want_rows.update({("predicted", m) + k: fit for (k, _), fit in zip(doubles, gi_pred[m])})
    chk.exact("gi.csv", "rows", sorted(gi_rows), sorted(want_rows))
    for k, fit in want_rows.items():
        r = gi_rows.get(k)
        if r is None:
            continue
        what = "gi.csv %s %s %s%s@%s" % (k[0], k[1], k[2], " dose " + k[3] if k[3] else "", k[4])
        chk.exact(what, "genes", int(r["genes"]), fit["genes"])
        for name in GI_FIELDS:
            chk.value(what, name, r[name], fit[name])
        for y in GI_TYPES:
            chk.exact(what, y, int(r[y]), int(fit[y]))
    for m in models:
        for y in GI_TYPES:
            pr, rnd = gi_precision(gi_true, gi_pred[m], y, GI_K)
            w = gi_settings["precision"][m][y]
            chk.value("metrics.json GI precision %s" % m, y, w["precision"], pr, True)
            chk.value("metrics.json GI random %s" % m, y, w["random"], rnd, True)

    print("check_metrics: %d models x %d test groups (%s), cap %d cells, %d components, %d of %d test doubles in the GI "
          "analysis; largest relative differences:" % (len(models), len(tests), ", ".join(cats), cap, kpca, len(doubles), ndoubles))
    print("  " + ", ".join("%s %.1e" % (k, chk.worst[k]) for k in sorted(chk.worst)))
    for f in chk.failures[:args.show]:
        print("FAIL " + f)
    if chk.failures:
        print("check_metrics: %d mismatches" % len(chk.failures))
        return 1
    print("check_metrics: all %d values agree" % chk.count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
