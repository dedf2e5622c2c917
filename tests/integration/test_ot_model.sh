#!/usr/bin/env bash
# The ot model at 1, 2 and 3 ranks on the two demo tasks (combinations; a held-out context): the same predictions
# (1e-5: Sinkhorn in float32 with sums split differently over the ranks, after a PCA that agrees to rounding) and
# the same continuous metrics (1e-4 relative; metrics that rank genes or groups may flip on near-ties and are not
# compared); `cellshift predict` at 3 ranks from the 1-rank model.h5 gives the 1-rank predictions again
# (checkpoint of the maps); a bad option value is refused with its name.
set -euo pipefail
: "${CELLSHIFT:?}" "${CS_MPIEXEC:?}" "${CS_SOURCE_DIR:?}"
PY=${CS_PYTHON:-/usr/bin/python3}
out=$(mktemp -d "${TMPDIR:-/tmp}/cellshift-otmodel-XXXXXX")
trap 'rm -rf "$out"' EXIT
cd "$CS_SOURCE_DIR"
for task in norman_combo gbm_holdout; do
  for n in 1 2 3; do
    $CS_MPIEXEC -n $n "$CELLSHIFT" run -options_file_yaml "input/$task.yaml" -model ot -output_dir "$out/$task.np$n" \
      > "$out/$task.np$n.log" 2>&1 || { cat "$out/$task.np$n.log"; exit 1; }
  done
  cp "$out/$task.np1/ot/predictions.h5ad" "$out/$task.run.h5ad"
  $CS_MPIEXEC -n 3 "$CELLSHIFT" predict -options_file_yaml "input/$task.yaml" -model ot -output_dir "$out/$task.np1" \
    > "$out/$task.predict.log" 2>&1 || { cat "$out/$task.predict.log"; exit 1; }
  "$PY" - "$out" "$task" <<'PY'
import sys, csv, os
import numpy as np
import anndata as ad
out, task = sys.argv[1:3]
def rows(n):
    with open(f"{out}/{task}.np{n}/metrics.csv") as f:
        return [r for r in csv.DictReader(f) if r["model"] == "ot"]
ref, bad = rows(1), 0
assert ref, "no ot metrics"
for n in (2, 3):
    for a, b in zip(ref, rows(n)):
        for k in ("rmse", "r2_mean_all", "r2_mean_top100_de", "pearson_delta", "cosine_logfc", "energy_distance", "mmd_rbf", "mae"):
            x, y = float(a[k]), float(b[k])
            if not abs(x - y) <= 1e-4 * max(1.0, abs(x)):
                print(f"np{n} ot {a['condition']}@{a['context']} {k}: {y} vs {x}"); bad += 1
p1 = ad.read_h5ad(f"{out}/{task}.run.h5ad")
pr = ad.read_h5ad(f"{out}/{task}.np1/ot/predictions.h5ad")
d = np.abs(np.asarray(pr.X) - np.asarray(p1.X)).max()
print(f"{task}: predict at 3 ranks from the 1-rank model.h5 differs from the run by at most {d:.2e}")
if not (pr.shape == p1.shape and d <= 1e-5): bad += 1
for n in (2, 3):
    pn = ad.read_h5ad(f"{out}/{task}.np{n}/ot/predictions.h5ad")
    d = np.abs(np.asarray(pn.X) - np.asarray(p1.X)).max()
    print(f"{task}: ot predictions at np{n} differ from np1 by at most {d:.2e}")
    if not (pn.shape == p1.shape and d <= 1e-5): bad += 1
sys.exit(1 if bad else 0)
PY
done
# bad option values name the option
for opt in "-ot_epsilon 0" "-ot_tau_a 1.5" "-ot_pca 0" "-ot_scale median"; do
  if $CS_MPIEXEC -n 2 "$CELLSHIFT" run -options_file_yaml input/norman_combo.yaml -model ot -output_dir "$out/bad" -overwrite $opt \
      > "$out/bad.log" 2>&1; then echo "accepted $opt"; exit 1; fi
  grep -q -- "${opt%% *}" "$out/bad.log" || { echo "the error for $opt does not name it:"; cat "$out/bad.log"; exit 1; }
done
echo "ot model: ok"
