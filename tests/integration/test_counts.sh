#!/usr/bin/env bash
# Raw counts: -normalize turns the Zhao counts into log1p(counts / total * 1e4) exactly as numpy does (checked on the
# control baseline's predictions, which are the normalised control cells), and CPA's negative binomial decoder
# (-cpa_nb) trains on the counts at 1 and 2 ranks with the same loss curve and finite metrics.
set -euo pipefail
out=$(mktemp -d "${TMPDIR:-/tmp}/cellshift-counts-XXXXXX")
trap 'rm -rf "$out"' EXIT
data="$CS_SOURCE_DIR/input/zhao2021_gbm_panobinostat/zhao2021_gbm_panobinostat.h5ad"
common=(-data "$data" -normalize -control_value ctrl -context_key patient_id -split context -holdout_context PW034
        -baselines control -cpa_nb -cpa_epochs 3 -cpa_hidden 64 -cpa_latent 32 -cpa_patience 100)
for n in 1 2; do
  $CS_MPIEXEC -n $n "$CELLSHIFT" run "${common[@]}" -model cpa -output_dir "$out/np$n" > "$out/np$n.log" 2>&1 \
    || { cat "$out/np$n.log"; echo "FAIL: run np$n"; exit 1; }
done
"$CS_PYTHON" - "$out" "$data" <<'PY'
import sys, csv, numpy as np, anndata as ad
out, data = sys.argv[1], sys.argv[2]
a = ad.read_h5ad(data)
X = a.X.toarray().astype(np.float32).astype(np.float64)
tot = X.sum(1, keepdims=True)
norm = np.log1p(X / np.where(tot > 0, tot, 1) * 1e4)
ctrl = ((a.obs["condition"].astype(str) == "ctrl") & (a.obs["patient_id"].astype(str) == "PW034")).values
p = ad.read_h5ad(f"{out}/np1/control/predictions.h5ad")
pred = np.asarray(p.X)[(p.obs["cellshift_kind"].astype(str) == "predicted").values]
d = np.abs(pred - norm[ctrl]).max()
print(f"-normalize vs numpy: max difference {d:.2e} over {pred.shape[0]} control cells")
assert pred.shape[0] == ctrl.sum() and d < 1e-5, "normalisation differs from numpy"
c = [np.loadtxt(f"{out}/np{n}/cpa/training.csv", delimiter=",", skiprows=1) for n in (1, 2)]
r = np.abs(c[1][:, 1:] - c[0][:, 1:]) / np.abs(c[0][:, 1:])
print(f"cpa -cpa_nb: loss curves at 1 and 2 ranks within {r.max():.1e}")
assert r[0].max() < 1e-4 and r.max() < 5e-3, "negative binomial loss curve differs across rank counts"
rows = list(csv.DictReader(open(f"{out}/np2/metrics.csv")))
vals = [float(r[k]) for r in rows if r["model"] == "cpa" for k in ("rmse", "pearson_delta", "energy_distance")]
assert vals and all(np.isfinite(vals)), vals
print("test_counts: ok")
PY
