#!/usr/bin/env bash
# The linear model end to end on the embedded PerturBench devel data (combination split):
# - `cellshift run -model linear` at 1, 2 and 3 ranks writes the same predictions and parameters;
# - numpy recomputes the model from the data and split.json alone and every predicted cell must match
#   (tests/python/check_linear.py), also for other -linear_k / -linear_ridge / PCA layout on the same split;
# - `cellshift predict` at another rank count loads model.h5 and writes the same predictions again.
set -euo pipefail
data="$CS_SOURCE_DIR/input/perturbench_devel/devel.h5ad"
check="$CS_SOURCE_DIR/tests/python/check_linear.py"
out=$(mktemp -d "${TMPDIR:-/tmp}/cellshift-linear-XXXXXX")
trap 'rm -rf "$out"' EXIT
common=(-data "$data" -context_key cell_type -predict_max_cells 0)

for n in 1 2 3; do
  $CS_MPIEXEC -n $n "$CELLSHIFT" run "${common[@]}" -split combo -model linear -output_dir "$out/np$n" > "$out/np$n.log"
  "$CS_PYTHON" "$check" "$data" "$out/np$n/split.json" "$out/np$n/linear/predictions.h5ad" 10 0.1
done

# Other hyper-parameters, same split; a small block, panel and chunk so that the covariance is assembled in many
# pieces.
$CS_MPIEXEC -n 3 "$CELLSHIFT" run "${common[@]}" -split_file "$out/np1/split.json" -model linear -baselines control \
  -linear_k 4 -linear_ridge 2.5 -linear_pca_block_size 16 -linear_pca_panel_width 48 -linear_pca_chunk_rows 100 \
  -output_dir "$out/k4" > "$out/k4.log"
"$CS_PYTHON" "$check" "$data" "$out/k4/split.json" "$out/k4/linear/predictions.h5ad" 4 2.5

# Reload the 1-rank model at 3 ranks.
cp "$out/np1/linear/predictions.h5ad" "$out/np1-fitted.h5ad"
$CS_MPIEXEC -n 3 "$CELLSHIFT" predict "${common[@]}" -model linear -output_dir "$out/np1" > "$out/predict.log"

"$CS_PYTHON" - "$out" <<'PY'
import sys
import anndata as ad
import h5py
import numpy as np

out = sys.argv[1]
def X(path):
    a = ad.read_h5ad(path)
    return a, (a.X.toarray() if hasattr(a.X, "toarray") else np.asarray(a.X))
ref, R = X(out + "/np1/linear/predictions.h5ad")
for other in ["np2/linear/predictions.h5ad", "np3/linear/predictions.h5ad", "np1-fitted.h5ad"]:
    a, A = X(out + "/" + other)
    assert A.shape == R.shape and (a.obs.astype(str).to_numpy() == ref.obs.astype(str).to_numpy()).all(), other
    d = np.abs(A - R).max()
    print("%s: max |difference| to np1 = %.3g" % (other, d))
    assert d <= 1e-6, other
m = [h5py.File(out + "/np%d/linear/model.h5" % n, "r")["params"] for n in (1, 2, 3)]
for k in ["G", "W", "P", "b"]:
    d = max(np.abs(m[0][k][()] - m[i][k][()]).max() for i in (1, 2))
    print("%s %s: max |difference| across 1, 2, 3 ranks = %.3g" % (k, m[0][k].shape, d))
    assert d <= 1e-9, k
PY
echo "test_linear_numpy: ok"
