#!/usr/bin/env bash
# Every metric of the evaluation recomputed independently with numpy/scipy (tests/python/check_metrics.py):
#  1. synthetic data (two contexts, doses, labels written as "Y+X", an all-zero and a constant gene) with
#     predictions made here: exact copies of the controls, the truth itself, one collapsed profile, negative values
#     without a cellshift_kind column, and more predicted cells than the subsampling cap. Scored by
#     `cellshift evaluate` (which also fits the additive baseline) with subsampling and both PCA routes
#     (covariance and Gram) active, at 1, 2 and 3 ranks, which must agree (bitwise but for
#     the BLAS-computed energy distance and MMD);
#     The check is shown to fail when a metric is broken: every per-group metric, a category, vcc_score and a GI
#     fit and type are altered in a copy of the written files, and each alteration must be reported;
#  2. the embedded PerturBench devel data through `cellshift run -split combo` and `-split simulation` (categories
#     unseen_single, combo_seen0/1/2) at 2 ranks (the baselines and the default model), and a held-out patient;
#  3. 28 doubles of 8 measured singles (synthetic), so that the genetic-interaction precision at 10 is computed;
#  4. input errors (one line, exit 1, no hang): predictions with other genes, a test group without predictions,
#     a row that names no test group, a file that is not HDF5.
set -euo pipefail
: "${CELLSHIFT:?}" "${CS_MPIEXEC:?}" "${CS_SOURCE_DIR:?}"
PY=${CS_PYTHON:-/usr/bin/python3}
CHECK="$CS_SOURCE_DIR/tests/python/check_metrics.py"
tmp=$(mktemp -d /tmp/cellshift-metrics-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export PYTHONWARNINGS=ignore

# ---- 1. synthetic data and hand-made predictions -------------------------------------------------------------
"$PY" - "$tmp/syn" <<'EOF'
import json, os, sys
import numpy as np, pandas as pd, anndata as ad, scipy.sparse as sp
out = sys.argv[1]
os.makedirs(out)
rng = np.random.default_rng(11)
G = 60
genes = ["g%02d" % j for j in range(G)]
# (label as written, dose, context, cells); "Y+X" and "X+Y" are one condition, dose 2 makes another one.
design = [("control", "1", "A", 90), ("X", "1", "A", 50), ("Y", "1", "A", 50), ("Z", "1", "A", 40),
          ("X+Y", "1", "A", 40), ("Y+X", "1", "A", 30), ("X+Y", "2", "A", 45), ("Y+Z", "1", "A", 12),
          ("X+Z", "1", "A", 45), ("control", "1", "B", 60), ("X", "1", "B", 40), ("Y", "1", "B", 30),
          ("X+Y", "1", "B", 35), ("Y+Z", "1", "B", 55)]
effect = {a: rng.normal(0, 0.6, G) * (rng.random(G) < 0.3) for a in "XYZ"}
base = {c: rng.gamma(1.0, 0.8, G) for c in "AB"}
rows, labels, doses, ctxs = [], [], [], []
for label, dose, ctx, n in design:
    mu = base[ctx].copy()
    for atom in label.split("+"):
        if atom != "control":
            mu += float(dose) * effect[atom]
    x = np.maximum(mu + rng.normal(0, 0.7, (n, G)), 0) * (rng.random((n, G)) < 0.7)
    x = np.log1p(x)
    rows.append(x)
    labels += [label] * n; doses += [dose] * n; ctxs += [ctx] * n
X = np.vstack(rows)
X[:, 7] = 0.0   # a gene never expressed: t = 0, never DE
X[:, 8] = 0.5   # a gene expressed identically everywhere: zero variances, t = 0
perm = rng.permutation(len(X))  # cells of a group are interleaved across the file (and the ranks)
X, labels, doses, ctxs = X[perm], [labels[i] for i in perm], [doses[i] for i in perm], [ctxs[i] for i in perm]
obs = pd.DataFrame({"condition": pd.Categorical(labels), "dose": pd.Categorical(doses), "cell_type": pd.Categorical(ctxs)},
                   index=["c%d" % i for i in range(len(X))])
ad.AnnData(X=sp.csr_matrix(X), obs=obs, var=pd.DataFrame(index=genes)).write_h5ad(os.path.join(out, "data.h5ad"))

def canon(label, dose):
    atoms = sorted(a for a in label.split("+") if a != "control")
    return ("+".join(atoms), "+".join("%.10g" % float(dose) for _ in atoms)) if atoms else ("control", "")
groups = {}
for l, d, c in zip(labels, doses, ctxs):
    k = canon(l, d) + (c,)
    groups[k] = groups.get(k, 0) + 1
test = {("X+Y", "1+1", "A"), ("X+Y", "2+2", "A"), ("Y+Z", "1+1", "A"), ("X+Y", "1+1", "B"), ("Y+Z", "1+1", "B")}
valid = {("X+Z", "1+1", "A")}
run = os.path.join(out, "run")
os.makedirs(run)
json.dump({"cellshift_split": 1, "type": "explicit", "perturbation_key": "condition", "context_key": "cell_type",
           "dose_key": "dose", "control_value": "control",
           "groups": [{"condition": c, "dose": d, "context": x, "n_cells": n,
                       "role": "test" if (c, d, x) in test else "valid" if (c, d, x) in valid else "train"}
                      for (c, d, x), n in sorted(groups.items())]}, open(os.path.join(run, "split.json"), "w"), indent=1)

Xf = X.astype(np.float32)
can = [canon(l, d) + (c,) for l, d, c in zip(labels, doses, ctxs)]
rows_of = lambda key: [i for i, k in enumerate(can) if k == key]
tests = sorted(test, key=lambda k: (k[2], k[0], k[1]))
allctrl = Xf[[i for i, k in enumerate(can) if k[0] == "control"]].mean(0)

def write(name, blocks, kind=True, path=None, var=genes):
    P = np.vstack([b[0] for b in blocks]).astype(np.float32)
    obs = pd.DataFrame({"condition": pd.Categorical(sum([[b[1]] * len(b[0]) for b in blocks], [])),
                        "cell_type": pd.Categorical(sum([[b[2]] * len(b[0]) for b in blocks], [])),
                        "dose": pd.Categorical(sum([[b[3]] * len(b[0]) for b in blocks], []))},
                       index=[str(i) for i in range(len(P))])
    if kind:
        obs["cellshift_kind"] = pd.Categorical(sum([[b[4]] * len(b[0]) for b in blocks], []))
    path = path or os.path.join(run, name, "predictions.h5ad")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ad.AnnData(X=P, obs=obs, var=pd.DataFrame(index=var)).write_h5ad(path)

def blocks(pred, drop=None, extra=None):
    out = []
    for key in tests:
        if key == drop:
            continue
        C, T = Xf[rows_of(("control", "", key[2]))], Xf[rows_of(key)]
        out.append((pred(C, T), key[0], key[2], key[1], "predicted"))
    if extra:
        out.append(extra)
    for c in ("A", "B"):
        out.append((Xf[rows_of(("control", "", c))], "control", c, "", "observed"))
    return out

noise = np.random.default_rng(3)
write("control", blocks(lambda C, T: C))
write("truth", blocks(lambda C, T: T))
write("collapsed", blocks(lambda C, T: np.tile(allctrl, (len(C), 1))))
write("shifted", blocks(lambda C, T: T - 0.5), kind=False)
write("noisy", blocks(lambda C, T: np.repeat(C, 2, axis=0) + (T.mean(0) - C.mean(0)) + noise.normal(0, 0.3, (2 * len(C), G))))
# Broken predictions for the error checks.
bad = os.path.join(out, "bad")
write("genes", blocks(lambda C, T: T), path=os.path.join(bad, "genes", "predictions.h5ad"), var=genes[:3] + [genes[4], genes[3]] + genes[5:])
write("missing", blocks(lambda C, T: T, drop=tests[1]), path=os.path.join(bad, "missing", "predictions.h5ad"))
write("unknown", blocks(lambda C, T: T, extra=(Xf[:2], "W+X", "A", "1+1", "predicted")), path=os.path.join(bad, "unknown", "predictions.h5ad"))
os.makedirs(os.path.join(bad, "nothdf5"))
open(os.path.join(bad, "nothdf5", "predictions.h5ad"), "w").write("not an HDF5 file\n")
EOF

syn="$tmp/syn"
opts=(-data "$syn/data.h5ad" -context_key cell_type -dose_key dose -eval_max_cells 40 -eval_pca_components 5
      -model truth,collapsed,shifted,noisy)
for np in 1 2 3; do
  mkdir -p "$syn/np$np"
  cp -r "$syn/run/." "$syn/np$np/"
  $CS_MPIEXEC -n $np "$CELLSHIFT" evaluate "${opts[@]}" -output_dir "$syn/np$np" > "$syn/np$np.log" 2>&1 ||
    { cat "$syn/np$np.log"; echo "FAIL: cellshift evaluate at $np ranks"; exit 1; }
done
cat "$syn/np2.log"
# Means are exact sums, so everything built on them is bitwise identical at any number of ranks; energy distance
# and MMD go through BLAS and LAPACK, whose rounding depends on their thread count (cores / ranks).
"$PY" - "$syn" <<'EOF'
import csv, sys
load = lambda n: {tuple(r[k] for k in ("model", "condition", "dose", "context")): r
                  for r in csv.DictReader(open("%s/np%d/metrics.csv" % (sys.argv[1], n)))}
ref = load(2)
for n in (1, 3):
    other = load(n)
    assert other.keys() == ref.keys(), "different rows at %d ranks" % n
    for k, r in ref.items():
        for m, v in r.items():
            w = other[k][m]
            if m in ("energy_distance", "mmd_rbf"):
                assert abs(float(v) - float(w)) <= 1e-12 * abs(float(v)), (n, k, m, v, w)
            else:
                assert v == w, (n, k, m, v, w)
gi = [open("%s/np%d/gi.csv" % (sys.argv[1], n)).read() for n in (1, 2, 3)]
assert gi[0] == gi[1] == gi[2], "gi.csv differs between 1, 2 and 3 ranks"
print("1, 2 and 3 ranks agree (bitwise; energy_distance and mmd_rbf to 1e-12; gi.csv bitwise)")
EOF
for f in report.md gi.csv shift_control.png shift_additive.png shift_mean.png shift_truth.png shift_collapsed.png shift_shifted.png shift_noisy.png; do
  [ -s "$syn/np2/$f" ] || { echo "FAIL: $f was not written"; exit 1; }
done
ls "$syn/np2" | grep -q '\.tmp\.' && { echo "FAIL: temporary files left behind"; exit 1; }
"$PY" "$CHECK" "$syn/np2" --data "$syn/data.h5ad"

# Known values: the truth scores perfectly; copies of the controls have exactly no shift (pearson_delta and
# de_recall_top20 exactly 0: the means are exact, so m(P) - m(C) is exactly 0, not rounding noise); a prediction
# that is the same for every group of a context (control, collapsed) ranks (n - 1) / 2n.
"$PY" - "$syn/np2/metrics.csv" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
n = {c: len({r["condition"] + r["dose"] for r in rows if r["context"] == c}) for c in {r["context"] for r in rows}}
for r in rows:
    v = {k: float(r[k]) for k in r if k not in ("model", "condition", "dose", "context", "category")}
    if r["model"] == "truth":
        assert v["rmse"] == 0 and v["mae"] == 0 and abs(v["pearson_delta"] - 1) < 1e-12 and v["de_recall_top20"] == 1, r
        assert v["rank_rmse"] == 0 and v["rank_cosine_logfc"] == 0 and v["centroid_accuracy"] == 1, r
        assert v["discrimination_score"] == 1 and v["de_score"] in (0, 1) and abs(v["pearson_delta_pert"] - 1) < 1e-12, r
    if r["model"] == "control":
        assert v["pearson_delta"] == 0 and v["de_recall_top20"] == 0 and v["cosine_logfc"] == 0 and v["de_score"] == 0, r
    if r["model"] in ("control", "collapsed"):
        k = n[r["context"]]
        assert abs(v["rank_rmse"] - (k - 1) / (2 * k)) < 1e-12 and abs(v["rank_cosine_logfc"] - (k - 1) / (2 * k)) < 1e-12, r
print("known values: ok")
EOF

# A broken metric must fail the check: each of these alterations of the written files must be reported.
mut="$tmp/mutated"
cp -r "$syn/np2" "$mut"
"$PY" - "$mut" <<'EOF'
import csv, json, sys
d = sys.argv[1]
rows = list(csv.DictReader(open(d + "/metrics.csv")))
fields = list(rows[0])
names = json.load(open(d + "/metrics.json"))["metrics"]
counts = ("de_score", "de_recall_top20", "discrimination_score", "centroid_accuracy", "rank_rmse", "rank_cosine_logfc")
for i, k in enumerate(names):  # one row per metric, altered by 1e-3 (the counting ones by a quarter)
    r = rows[(7 * i) % len(rows)]
    r[k] = repr(float(r[k]) + (0.25 if k in counts else 1e-3))
rows[1]["category"] = "combo_seen9"
with open(d + "/metrics.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
m = json.load(open(d + "/metrics.json"))
m["aggregates"]["noisy"]["vcc_score"] = 0.5
json.dump(m, open(d + "/metrics.json", "w"))
gi = list(csv.DictReader(open(d + "/gi.csv")))
gi[0]["magnitude"] = repr(float(gi[0]["magnitude"]) * 1.01)
gi[-1]["synergy"] = str(1 - int(gi[-1]["synergy"]))
with open(d + "/gi.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(gi[0]))
    w.writeheader()
    w.writerows(gi)
EOF
if "$PY" "$CHECK" "$mut" --data "$syn/data.h5ad" --show 100000 > "$mut.out"; then
  cat "$mut.out"; echo "FAIL: the check accepted altered metrics"; exit 1
fi
for k in $("$PY" -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["metrics"]))' "$mut/metrics.json") category vcc_score magnitude synergy; do
  grep -q "^FAIL .*: $k = " "$mut.out" || { cat "$mut.out"; echo "FAIL: an altered $k was not reported"; exit 1; }
done
echo "altered metrics are reported: $(grep -c '^FAIL' "$mut.out") mismatches"

# ---- 2. the embedded PerturBench devel data through the whole pipeline ---------------------------------------
$CS_MPIEXEC -n 2 "$CELLSHIFT" run -data "$CS_SOURCE_DIR/input/perturbench_devel/devel.h5ad" -context_key cell_type \
  -split combo -output_dir "$tmp/devel" > "$tmp/devel.log" 2>&1 || { cat "$tmp/devel.log"; echo "FAIL: cellshift run"; exit 1; }
cat "$tmp/devel.log"
"$PY" "$CHECK" "$tmp/devel" --data "$CS_SOURCE_DIR/input/perturbench_devel/devel.h5ad"
# GEARS' simulation split: unseen singles and combo_seen0/1/2, aggregated per category.
$CS_MPIEXEC -n 2 "$CELLSHIFT" run -options_file_yaml "$CS_SOURCE_DIR/input/norman_simulation.yaml" \
  -data "$CS_SOURCE_DIR/input/perturbench_devel/devel.h5ad" -output_dir "$tmp/sim" > "$tmp/sim.log" 2>&1 ||
  { cat "$tmp/sim.log"; echo "FAIL: simulation run"; exit 1; }
grep -q "^unseen_single/mean " "$tmp/sim.log" || { cat "$tmp/sim.log"; echo "FAIL: no per-category table"; exit 1; }
"$PY" "$CHECK" "$tmp/sim" --data "$CS_SOURCE_DIR/input/perturbench_devel/devel.h5ad"
# A held-out patient: one test group in its context, so rank is not defined (n/a, null in metrics.json).
zhao="$CS_SOURCE_DIR/input/zhao2021_gbm_panobinostat/zhao2021_gbm_panobinostat.h5ad"
$CS_MPIEXEC -n 3 "$CELLSHIFT" run -data "$zhao" -layer logcounts -control_value ctrl -context_key patient_id -split context \
  -holdout_context PW034 -model additive -output_dir "$tmp/zhao" > "$tmp/zhao.log" 2>&1 || { cat "$tmp/zhao.log"; echo "FAIL: zhao run"; exit 1; }
grep -q "n/a" "$tmp/zhao.log" || { cat "$tmp/zhao.log"; echo "FAIL: rank of a lone test group is not n/a"; exit 1; }
"$PY" "$CHECK" "$tmp/zhao" --data "$zhao" --layer logcounts

# ---- 3. many doubles: the genetic-interaction precision at 10 ---------------------------------------------------
"$PY" - "$tmp/gi" <<'EOF'
import itertools, json, os, sys
import numpy as np, pandas as pd, anndata as ad, scipy.sparse as sp
out = sys.argv[1]
os.makedirs(out + "/run")
rng = np.random.default_rng(5)
G, atoms = 40, "ABCDEFGH"
genes = ["h%02d" % j for j in range(G)]
base = rng.gamma(3.0, 0.6, G)
eff = {a: rng.normal(0, 0.5, G) * (rng.random(G) < 0.5) for a in atoms}
pairs = list(itertools.combinations(atoms, 2))
# The doubles interact in different ways: additive, synergistic, suppressive, one-sided, or with a new profile.
kind = {p: ["add", "syn", "sup", "epi", "neo"][i % 5] for i, p in enumerate(pairs)}
neo = {p: rng.normal(0, 0.8, G) for p in pairs}
def mu(label):
    if label == "control":
        return base
    a = label.split("+")
    if len(a) == 1:
        return base + eff[a[0]]
    s = eff[a[0]] + eff[a[1]]
    p = tuple(a)
    return base + {"add": s, "syn": 2.5 * s, "sup": 0.3 * s, "epi": eff[a[0]], "neo": s + neo[p]}[kind[p]]
labels = ["control"] + list(atoms) + ["+".join(p) for p in pairs]
rows, lab = [], []
for l in labels:
    n = 60 if l == "control" else 14
    x = np.maximum(mu(l) + rng.normal(0, 0.4, (n, G)), 0) * (rng.random((n, G)) < 0.85)
    rows.append(np.log1p(x)); lab += [l] * n
X = np.vstack(rows).astype(np.float32)
obs = pd.DataFrame({"condition": pd.Categorical(lab)}, index=["c%d" % i for i in range(len(X))])
ad.AnnData(X=sp.csr_matrix(X), obs=obs, var=pd.DataFrame(index=genes)).write_h5ad(out + "/data.h5ad")
groups = [{"condition": l, "dose": "", "context": "all", "n_cells": lab.count(l), "natoms": 0 if l == "control" else l.count("+") + 1,
           "role": "test" if "+" in l else "train"} for l in sorted(labels)]
json.dump({"cellshift_split": 1, "type": "explicit", "perturbation_key": "condition", "context_key": "", "dose_key": "",
           "control_value": "control", "groups": groups}, open(out + "/run/split.json", "w"))
lab = np.array(lab)
C = X[lab == "control"]
def write(name, pred):
    blocks, plab = [], []
    for p in pairs:
        l = "+".join(p)
        blocks.append(pred(l)); plab += [l] * len(blocks[-1])
    blocks.append(C); kinds = ["predicted"] * len(plab) + ["observed"] * len(C); plab += ["control"] * len(C)
    os.makedirs(out + "/run/" + name)
    ad.AnnData(X=np.vstack(blocks).astype(np.float32),
               obs=pd.DataFrame({"condition": pd.Categorical(plab), "cellshift_kind": pd.Categorical(kinds)},
                                index=[str(i) for i in range(len(plab))]),
               var=pd.DataFrame(index=genes)).write_h5ad(out + "/run/" + name + "/predictions.h5ad")
write("truth", lambda l: X[lab == l])
write("noisy", lambda l: X[lab == l][:10] + rng.normal(0, 0.3, (10, G)).astype(np.float32))
EOF
$CS_MPIEXEC -n 3 "$CELLSHIFT" evaluate -data "$tmp/gi/data.h5ad" -model truth,noisy -output_dir "$tmp/gi/run" > "$tmp/gi.log" 2>&1 ||
  { cat "$tmp/gi.log"; echo "FAIL: evaluate on 28 doubles"; exit 1; }
grep -A9 "^Precision at 10" "$tmp/gi/run/report.md"
# The measured fits ranked by themselves: the 10 first are of the type as far as there are 10 of it.
"$PY" - "$tmp/gi/run/metrics.json" <<'EOF'
import json, sys
gi = json.load(open(sys.argv[1]))["genetic_interactions"]
assert gi["qualifying"] == 28 and gi["test_doubles"] == 28, gi
for y, v in gi["precision"]["truth"].items():
    assert abs(v["precision"] - min(10, round(v["random"] * 28)) / 10) < 1e-12, (y, v)
print("GI precision of the measured doubles: ok")
EOF
"$PY" "$CHECK" "$tmp/gi/run" --data "$tmp/gi/data.h5ad"

# ---- 4. input errors ---------------------------------------------------------------------------------------
expect_error() { # name, expected text
  local dir="$tmp/err_$1"
  mkdir -p "$dir/$1"
  cp "$syn/run/split.json" "$dir/"
  cp -r "$syn/run/control" "$dir/"
  cp "$syn/bad/$1/predictions.h5ad" "$dir/$1/"
  if timeout 120 $CS_MPIEXEC -n 2 "$CELLSHIFT" evaluate -data "$syn/data.h5ad" -context_key cell_type -dose_key dose \
       -baselines control -model "$1" -output_dir "$dir" > "$dir.out" 2> "$dir.err"; then
    echo "FAIL: predictions '$1' were accepted"; exit 1
  fi
  grep -q "$2" "$dir.err" || { cat "$dir.err"; echo "FAIL: predictions '$1': expected an error about '$2'"; exit 1; }
  [ "$(grep -c 'cellshift: error' "$dir.err")" -eq 1 ] || { cat "$dir.err"; echo "FAIL: predictions '$1': expected one error line"; exit 1; }
  echo "error as expected: $(cat "$dir.err")"
}
expect_error genes "gene 3 is 'g04' where the data has 'g03'"
expect_error missing "no predicted cells for test group X+Y dose 2+2@A"
expect_error unknown "matches no test group"
expect_error nothdf5 "predictions.h5ad"
echo "test_metrics_numpy: ok"
