#!/usr/bin/env bash
# Training errors, end to end:
# - divergence: `-scgen_lr inf` stops training with one error naming the model, epoch and step and suggesting a lower
#   learning rate, and every rank exits 1 (1 and 2 ranks);
# - checkpoints: a resumed run checks every field of checkpoint.h5 against the run, so broken copies of a real one
#   (tests/python/make_bad_checkpoint.py: counters out of range or inconsistent, a wrong loss curve, non-finite
#   parameters or moments, another or no model type, a missing tensor) and a cpa checkpoint given to scgen fail with
#   one error line that says what is wrong, while the unbroken copy resumes.
set -uo pipefail
: "${CELLSHIFT:?}" "${CS_MPIEXEC:?}" "${CS_SOURCE_DIR:?}"
PY=${CS_PYTHON:-/usr/bin/python3}
out=$(mktemp -d "${TMPDIR:-/tmp}/cellshift-trainerr-XXXXXX")
trap 'rm -rf "$out"' EXIT
cd "$CS_SOURCE_DIR"
small=(-options_file_yaml input/norman_combo.yaml -baselines control)
declare -A size=([scgen]="-scgen_hidden 64 -scgen_latent 8 -scgen_batch_size 64" [cpa]="-cpa_latent 16 -cpa_hidden 32 -cpa_batch_size 128")
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# expect_error LABEL NP PATTERN -- COMMAND...: exit status 1, exactly one "cellshift: error:" line matching PATTERN.
expect_error() {
  local label=$1 np=$2 pattern=$3 rc lines line
  shift 4
  timeout 120 $CS_MPIEXEC -n "$np" "$@" > "$out/$label.out" 2> "$out/$label.err"
  rc=$?
  [ $rc -eq 1 ] || { fail "$label (np $np): exit status $rc, expected 1"; tail -5 "$out/$label.err"; return; }
  lines=$(grep -c '^cellshift: error:' "$out/$label.err")
  [ "$lines" -eq 1 ] || { fail "$label (np $np): $lines error lines, expected 1: $(head -c 600 "$out/$label.err")"; return; }
  line=$(grep -m1 '^cellshift: error:' "$out/$label.err")
  echo "$line" | grep -qE -- "$pattern" || { fail "$label (np $np): error line does not match /$pattern/: $line"; return; }
  echo "ok $label (np $np): $line"
}

# 1. divergence, the command of the issue
for np in 1 2; do
  expect_error "diverge$np" $np "scgen diverged in epoch 1, step [0-9]+ of [0-9]+: the training loss is (nan|inf).*try a lower learning rate \(-scgen_lr" -- \
    "$CELLSHIFT" run -options_file_yaml input/norman_combo.yaml -model scgen -scgen_lr inf -scgen_epochs 1 -output_dir "$out/div$np"
done
[ ! -e "$out/div1/scgen/model.h5" ] || fail "a diverged run wrote model.h5"

# 2. real checkpoints after one epoch
for m in scgen cpa; do
  $CS_MPIEXEC -n 2 "$CELLSHIFT" train "${small[@]}" ${size[$m]} -model $m -${m}_epochs 1 -checkpoint_every 1 -keep_checkpoint -output_dir "$out/good$m" > "$out/good$m.log" 2>&1 \
    || { cat "$out/good$m.log"; echo "FAIL: $m training"; exit 1; }
done
good=$out/goodscgen/scgen/checkpoint.h5
resume() { # resume LABEL NP PATTERN: scgen resumed from $out/LABEL (with the good run's split)
  cp "$out/goodscgen/split.json" "$out/$1/"
  expect_error "$1" "$2" "$3" -- "$CELLSHIFT" train "${small[@]}" ${size[scgen]} -model scgen -scgen_epochs 4 -resume "$out/$1" -output_dir "$out/$1"
}
declare -A want=(
  [epoch_neg]="cannot resume: .*checkpoint.h5 is at epoch -7, outside \[0, 4\] \(-scgen_epochs\)"
  [epoch_big]="checkpoint.h5 is at epoch 99, outside \[0, 4\]"
  [sstep]="checkpoint.h5 is at step 1000000 of epoch 2, outside the [0-9]+ steps of an epoch"
  [step]="checkpoint.h5 has taken [0-9]+ steps, not epoch 1 x [0-9]+ steps per epoch \+ 0"
  [best_epoch]="checkpoint.h5 has best epoch 2, not one of the 1 epochs run"
  [bad_epochs]="checkpoint.h5 counts 5 epochs without improvement in 1 epochs"
  [history]="checkpoint.h5: history has extent 2 in dimension 0, expected 1"
  [nan_param]="checkpoint .*checkpoint.h5 \(set0/params\): [a-z0-9.]+ holds a non-finite value \(nan at entry 0\)"
  [nan_moment]="checkpoint .*checkpoint.h5 \(set0/optim\): [a-z0-9.]+ holds a non-finite value \(nan at entry 0\)"
  [type]="checkpoint.h5 was written by a cpa model, not scgen"
  [no_type]="checkpoint.h5 does not say which model wrote it"
  [old_format]="checkpoint.h5 is not a checkpoint written by this cellshift: its HDF5 metadata carries no checksums"
  [vlen_type]="attribute model_type is a variable-length string: not written by cellshift"
  [missing]="checkpoint .*checkpoint.h5 \(set0/params\): no dataset "
)
for c in "${!want[@]}"; do
  mkdir -p "$out/$c/scgen"
  "$PY" tests/python/make_bad_checkpoint.py "$good" "$out/$c/scgen/checkpoint.h5" "$c" > /dev/null || fail "cannot make case $c"
  resume "$c" 2 "${want[$c]}"
done
mkdir -p "$out/cpaforscgen/scgen"
cp "$out/goodcpa/cpa/checkpoint.h5" "$out/cpaforscgen/scgen/checkpoint.h5"
resume cpaforscgen 2 "cannot resume: .*cpaforscgen/scgen/checkpoint.h5 was written by a cpa model, not scgen"
# the unbroken copy resumes
mkdir -p "$out/fine/scgen" && cp "$good" "$out/fine/scgen/checkpoint.h5" && cp "$out/goodscgen/split.json" "$out/fine/"
$CS_MPIEXEC -n 2 "$CELLSHIFT" train "${small[@]}" ${size[scgen]} -model scgen -scgen_epochs 2 -resume "$out/fine" -output_dir "$out/fine" > "$out/fine.log" 2>&1 \
  || { tail -5 "$out/fine.log"; fail "the unbroken checkpoint does not resume"; }
grep -q "resumed from" "$out/fine.log" || fail "the unbroken checkpoint was not resumed"

[ $failures -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "training error tests passed"
