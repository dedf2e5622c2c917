#!/usr/bin/env bash
# -depth_fraction (binomial downsampling of raw counts) and the QC filter -min_counts, against numpy: the Zhao counts
# downsampled with the same counter-based draws (tests/python/philox.py recomputes CsRng4), filtered, log-normalised,
# must equal the control baseline's predictions (the normalised control cells of the held-out patient) at 1, 2 and 3
# ranks; the depth lowers the counts by about the fraction; -depth_fraction on log-normalised data and
# -max_mito_fraction on data without MT- genes are one clear error.
set -uo pipefail
: "${CELLSHIFT:?}" "${CS_MPIEXEC:?}" "${CS_SOURCE_DIR:?}"
PY=${CS_PYTHON:-/usr/bin/python3}
out=$(mktemp -d "${TMPDIR:-/tmp}/cellshift-depth-XXXXXX")
trap 'rm -rf "$out"' EXIT
cd "$CS_SOURCE_DIR"
export OPENBLAS_NUM_THREADS=1
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
data=input/zhao2021_gbm_panobinostat/zhao2021_gbm_panobinostat.h5ad
common=(-data "$data" -normalize -control_value ctrl -context_key patient_id -split context -holdout_context PW034 -baselines control
        -model additive -depth_fraction 0.3 -depth_seed 5 -min_counts 300)
for n in 1 2 3; do
  timeout 120 $CS_MPIEXEC -n $n "$CELLSHIFT" run "${common[@]}" -output_dir "$out/np$n" > "$out/np$n.log" 2>&1 || { tail -3 "$out/np$n.log"; fail "run np$n"; }
done
PYTHONPATH="$CS_SOURCE_DIR/tests/python" "$PY" - "$out" "$data" <<'PYEOF' || fail "-depth_fraction / -min_counts differ from numpy"
import sys, numpy as np, anndata as ad
from philox import rng4
out, data = sys.argv[1], sys.argv[2]
a = ad.read_h5ad(data)
X = a.X.tocsr().astype(np.float64)
rows = np.repeat(np.arange(X.shape[0], dtype=np.uint64), np.diff(X.indptr))
genes, counts = X.indices.astype(np.uint64), X.data.astype(np.int64)
kept = np.zeros_like(counts)
for blk in range(int((counts.max() + 3) // 4)):  # draw block blk holds reads 4 blk .. 4 blk + 3 of every count
    live = counts > 4 * blk
    w = rng4(5, 13, rows[live], (genes[live] << np.uint64(32)) | np.uint64(blk))
    for q in range(4):
        take = (4 * blk + q < counts[live]) & (w[q].astype(np.float64) / 4294967296.0 < 0.3)
        kept[np.flatnonzero(live)[take]] += 1
D = X.copy(); D.data = kept.astype(np.float64)
tot = np.asarray(D.sum(1)).ravel()
ratio = tot.sum() / X.sum()
assert abs(ratio - 0.3) < 0.01, ratio
norm = np.log1p(D.toarray() / np.where(tot > 0, tot, 1)[:, None] * 1e4)
keep = tot >= 300
ctrl = keep & (a.obs["condition"].astype(str) == "ctrl").values & (a.obs["patient_id"].astype(str) == "PW034").values
preds = []
for n in (1, 2, 3):
    p = ad.read_h5ad(f"{out}/np{n}/control/predictions.h5ad")
    preds.append(np.asarray(p.X)[(p.obs["cellshift_kind"].astype(str) == "predicted").values])
d = np.abs(preds[0] - norm[ctrl]).max() if preds[0].shape[0] == ctrl.sum() else np.inf
print(f"depth 0.3: {ratio:.4f} of the counts kept; {keep.sum()} of {len(keep)} cells pass -min_counts 300; "
      f"max difference to numpy {d:.2e} over {ctrl.sum()} control cells")
assert d < 1e-5, (preds[0].shape, ctrl.sum(), d)
assert all(np.array_equal(preds[0], q) for q in preds[1:]), "the predictions differ across rank counts"
PYEOF
# errors
expect_error() { # LABEL PATTERN ARGS...: exit 1 with one error line matching PATTERN
  local label=$1 pattern=$2 rc; shift 2
  timeout 60 "$CELLSHIFT" run "$@" -output_dir "$out/$label" > "$out/$label.out" 2> "$out/$label.err"; rc=$?
  [ $rc -eq 1 ] && [ "$(grep -c '^cellshift: error:' "$out/$label.err")" -eq 1 ] && grep -q "^cellshift: error:.*$pattern" "$out/$label.err" ||
    { cat "$out/$label.err"; fail "$label: exit $rc, expected one error matching '$pattern'"; }
}
expect_error lognorm "-depth_fraction needs raw counts" -options_file_yaml input/norman_combo.yaml -depth_fraction 0.5
expect_error nomito "-max_mito_fraction: .* has no mitochondrial gene" "${common[@]:0:11}" -max_mito_fraction 0.2
expect_error badfrac "-depth_fraction 0.*give a fraction" -options_file_yaml input/norman_combo.yaml -depth_fraction 0
[ $failures -eq 0 ] && echo "depth tests passed"
exit $((failures > 0))
