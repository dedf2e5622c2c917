#!/usr/bin/env bash
# gears end to end on the embedded Norman data (small network):
# - 1, 2 and 3 ranks give the same loss curve (training.csv) and the same predictions to floating-point tolerance;
# - a run stopped at an epoch checkpoint and resumed (-resume) ends bit-identical to an uninterrupted one;
# - `cellshift predict` from model.h5 writes the run's predictions;
# - a condition to predict whose atom the GO graph does not know is one clear error naming the atom, on every rank.
set -euo pipefail
out=$(mktemp -d "${TMPDIR:-/tmp}/cellshift-gears-XXXXXX")
trap 'rm -rf "$out"' EXIT
cd "$CS_SOURCE_DIR"
small=(-options_file_yaml input/norman_combo.yaml -baselines control -model gears -gears_hidden 8 -gears_batch_size 32)
fail() { echo "FAIL: $*"; exit 1; }
run() { # run NP NAME ARGS...
  local np=$1 name=$2; shift 2
  $CS_MPIEXEC -n "$np" "$CELLSHIFT" train "${small[@]}" "$@" -output_dir "$out/$name" > "$out/$name.log" 2>&1 \
    || { cat "$out/$name.log"; fail "$name"; }
}

# 1. loss curve and predictions at 1, 2 and 3 ranks, on every context (-gears_all_contexts): by default gears trains
# on the K562 groups only (the contexts with groups to predict), and the K562 rows, sparse, all sit on rank 0 of the
# blocks balanced by non-zeros, so only the GBM cells put training rows on the other ranks.
# a. One step of 4,000 cells (one global batch): the update is the same at any rank count to rounding
#    (synchronised BatchNorms, pert_fuse over the perturbed rows of the global batch, the control rows, the reduced
#    gradient, the clamp): the validation loss after it agrees to 1e-6, which a wrong reduction would not.
# b. Two epochs of batches of 32: the global batch's gradient is the same to rounding at any rank count, but GEARS's
#    4th-power loss (on GBM cells, whose per-cell loss is 6-16 times K562's), its nine BatchNorms and Adam (which
#    turns the rounding noise of near-zero gradient entries into steps of the size of the learning rate) amplify
#    rounding, the more with the control rows (whose BatchNorm statistics differ from the perturbed rows'): at
#    -gears_lr 1e-4 the validation loss of epoch 2 differs by a few 1e-4 between 1 and 2 ranks, in proportion to
#    the learning rate (1e-6 at 1e-5).
for n in 1 2 3; do
  $CS_MPIEXEC -n $n "$CELLSHIFT" train "${small[@]}" -gears_all_contexts -gears_epochs 1 -gears_batch_size 4000 -gears_lr 1e-4 \
    -output_dir "$out/step$n" > "$out/step$n.log" 2>&1 || { cat "$out/step$n.log"; fail "step$n"; }
  $CS_MPIEXEC -n $n "$CELLSHIFT" run "${small[@]}" -gears_all_contexts -gears_epochs 2 -gears_lr 1e-4 -output_dir "$out/curve$n" > "$out/curve$n.log" 2>&1 \
    || { cat "$out/curve$n.log"; fail "curve$n"; }
done
grep -q "GO graph coverage" "$out/curve1.log" || fail "no GO coverage report"
grep -q "training group left out" "$out/curve1.log" || fail "the training group with an atom outside the GO graph is not reported"
"$CS_PYTHON" - "$out" <<'PY'
import sys, numpy as np, anndata as ad
out = sys.argv[1]
s = [np.loadtxt(f"{out}/step{n}/gears/training.csv", delimiter=",", skiprows=1) for n in (1, 2, 3)]
c = [np.loadtxt(f"{out}/curve{n}/gears/training.csv", delimiter=",", skiprows=1) for n in (1, 2, 3)]
p = [np.asarray(ad.read_h5ad(f"{out}/curve{n}/gears/predictions.h5ad").X) for n in (1, 2, 3)]
for n, y, x, q in zip((2, 3), s[1:], c[1:], p[1:]):
    st = abs(y[1] - s[0][1]) / abs(s[0][1]); sv = abs(y[2] - s[0][2]) / abs(s[0][2])
    tr = np.abs(x[:, 1] - c[0][:, 1]) / np.abs(c[0][:, 1]); va = np.abs(x[:, 2] - c[0][:, 2]) / np.abs(c[0][:, 2])
    d = np.abs(q - p[0]).max()
    print(f"gears np{n}: one full-batch step: loss within {st:.1e}, validation within {sv:.1e}; two epochs: training loss within {tr.max():.1e}, "
          f"validation loss within {va.max():.1e}, predictions within {d:.1e} of np1")
    assert st < 1e-6 and sv < 1e-6, "the full-batch step differs across rank counts"
    assert tr.max() < 1e-4 and va.max() < 2e-3, "loss curves differ across rank counts"
    assert d < 3e-3, "predictions differ across rank counts"
PY

# 2. checkpoint, resume, bit-identical parameters
same() {
  "$CS_PYTHON" - "$1" "$2" <<'PY'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r")["params"], h5py.File(sys.argv[2], "r")["params"]
n = 0
for k in a:
    assert np.array_equal(a[k][()], b[k][()]), f"{k} differs"
    n += 1
print(f"{n} arrays bit-identical")
PY
}
run 2 ref -gears_epochs 3
grep -q "27 training groups of contexts with nothing to predict left out" "$out/ref.log" || { cat "$out/ref.log"; fail "the GBM groups are not left out"; }
run 2 part -gears_epochs 2 -checkpoint_every 2 -keep_checkpoint
[ -f "$out/part/gears/checkpoint.h5" ] || fail "no checkpoint after -checkpoint_every"
run 2 part -gears_epochs 3 -resume "$out/part"
same "$out/ref/gears/model.h5" "$out/part/gears/model.h5"
cmp -s <(tail -n +2 "$out/ref/gears/training.csv") <(tail -n +2 "$out/part/gears/training.csv") || fail "resumed loss curve differs"

# 3. predict from model.h5
$CS_MPIEXEC -n 2 "$CELLSHIFT" predict "${small[@]}" -gears_all_contexts -gears_lr 1e-4 -output_dir "$out/curve1" > "$out/predict.log" 2>&1 || { cat "$out/predict.log"; fail "predict"; }
"$CS_PYTHON" - "$out" <<'PY'
import sys, numpy as np, anndata as ad, glob
out = sys.argv[1]
a = np.asarray(ad.read_h5ad(f"{out}/curve2/gears/predictions.h5ad").X)
b = np.asarray(ad.read_h5ad(f"{out}/curve1/gears/predictions.h5ad").X)
d = np.abs(a - b).max(); print("predict (np2, from the np1 model) vs the np2 run:", d); assert d < 1e-3
PY

# 4. an atom of a test condition outside the GO graph
zcat input/priors/go_gene_graph/go_jaccard_top20.tsv.gz | grep -v -w BPGM > "$out/go_no_bpgm.tsv"
for n in 1 3; do
  status=0
  timeout 120 $CS_MPIEXEC -n $n "$CELLSHIFT" run "${small[@]}" -gears_epochs 1 -prior_go "$out/go_no_bpgm.tsv" -output_dir "$out/bad$n" > "$out/bad$n.log" 2>&1 || status=$?
  [ $status -ne 0 ] || fail "an atom outside the GO graph was accepted"
  grep -q "not in the GO graph (BPGM)" "$out/bad$n.log" || { cat "$out/bad$n.log"; fail "the error does not name the atom"; }
  [ ! -e "$out/bad$n/gears/predictions.h5ad" ] || fail "predictions written after the error"
done
echo "gears tests passed"
