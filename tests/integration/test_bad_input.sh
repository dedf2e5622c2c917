#!/bin/bash
# Bad input, end to end, at 1, 2 and 3 ranks.
#
# Malformed files (tests/python/make_bad_h5ad.py) and bad command lines must make `cellshift inspect` and
# `cellshift run` fail cleanly: non-zero exit within 60 s, exactly one "cellshift: error:" line on stderr that names
# the problem (and the file), and no predictions.h5ad / metrics.json (or temporary file) left in the output folder.
# Files that are unusual but valid (unsorted indices, int64/float64, old h5sparse attributes, CSC, dense, gzip) must be accepted and give the
# numbers of the canonical CSR file: the same inspect summary, and the same predictions and metrics from `run`.
set -u
: "${CELLSHIFT:?}" "${CS_MPIEXEC:?}" "${CS_SOURCE_DIR:?}"
PY=${CS_PYTHON:-/usr/bin/python3}
work=$(mktemp -d /tmp/cellshift-badinput-XXXXXX)
data=$work/data
failures=0
RUN=(-context_key cell_type -model additive)

fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

"$PY" "$CS_SOURCE_DIR/tests/python/make_bad_h5ad.py" "$data" > /dev/null || { echo "cannot make the test files"; exit 1; }

# expect_error LABEL NP PATTERN OUTDIR -- COMMAND...: the command fails as described above; PATTERN (grep -E, case
# insensitive) must match the error line.
expect_error() {
  local label=$1 np=$2 pattern=$3 outdir=$4
  shift 5
  local err=$work/log/$label.np$np.err rc lines line
  mkdir -p "$work/log"
  timeout 60 $CS_MPIEXEC -n "$np" "$@" > "$work/log/$label.np$np.out" 2> "$err"
  rc=$?
  if [ $rc -eq 124 ]; then fail "$label (np $np): still running after 60 s"; return; fi
  [ $rc -ne 0 ] || fail "$label (np $np): exit status 0, expected an error"
  lines=$(grep -c '^cellshift: error:' "$err")
  [ "$lines" -eq 1 ] || fail "$label (np $np): $lines 'cellshift: error:' lines on stderr, expected 1: $(head -c 600 "$err")"
  line=$(grep -m1 '^cellshift: error:' "$err")
  echo "$line" | grep -qiE -- "$pattern" || fail "$label (np $np): error line does not match /$pattern/: $line"
  if [ -n "$outdir" ] && [ -d "$outdir" ]; then
    local left
    left=$(find "$outdir" \( -name predictions.h5ad -o -name metrics.json -o -name '*.tmp.*' \) | head -3)
    [ -z "$left" ] || fail "$label (np $np): the failed run left $left"
  fi
}

# The obs part of an inspect report (categories and counts) and its "checked" line.
summary() { sed -n '/^checked on/,/^var:/p' "$1" | sed 's/^checked on [0-9]* ranks\{0,1\}: //'; }

# --- malformed files: both commands refuse them -----------------------------------------------------------------
declare -A PATTERN=(
  [bad_indptr_nonmonotone]='indptr.*decreases at row 71'
  [bad_indptr_beyond_nnz]='indptr.*(2430|exceeds)'
  [bad_index_range]='row 100 .*index 30 outside'
  [bad_index_duplicate]='row 50 .*twice'
  [bad_nan]='row 64 .*non-finite.*NaN'
  [bad_inf]='row 3 .*non-finite.*Inf'
  [bad_no_X]='/X'
  [bad_codes_range]='obs/condition.*code 50'
  [bad_obs_length]='obs/cell_type.*119 entries.*120 cells'
  [bad_not_hdf5]='not an HDF5'
  [bad_empty]='not an HDF5'
)
for name in "${!PATTERN[@]}"; do
  for np in 1 2 3; do
    f=$data/$name.h5ad
    expect_error "inspect-$name" $np "$name.*${PATTERN[$name]}" "" -- "$CELLSHIFT" inspect "$f"
    out=$work/out/$name.np$np
    expect_error "run-$name" $np "$name.*${PATTERN[$name]}" "$out" -- \
      "$CELLSHIFT" run -data "$f" -output_dir "$out" "${RUN[@]}" -test_conditions A+B
  done
done

# --- bad command lines and a file without the perturbation column: run refuses them ------------------------------
good=$data/good.h5ad
for np in 1 2 3; do
  o=$work/out/cli.np$np
  expect_error run-missing-file $np 'nope\.h5ad.*no such file' "$o" -- \
    "$CELLSHIFT" run -data "$data/nope.h5ad" -output_dir "$o" "${RUN[@]}" -test_conditions A+B
  expect_error inspect-missing-file $np 'nope\.h5ad.*no such file' "" -- "$CELLSHIFT" inspect "$data/nope.h5ad"
  expect_error run-no-condition-column $np "bad_no_condition.*'condition'" "$o" -- \
    "$CELLSHIFT" run -data "$data/bad_no_condition.h5ad" -output_dir "$o" "${RUN[@]}" -test_conditions A+B
  expect_error run-control-value $np "control value 'ctrl'" "$o" -- \
    "$CELLSHIFT" run -data "$good" -output_dir "$o" "${RUN[@]}" -test_conditions A+B -control_value ctrl
  expect_error run-perturbation-key $np "no column 'perturbation'" "$o" -- \
    "$CELLSHIFT" run -data "$good" -output_dir "$o" "${RUN[@]}" -test_conditions A+B -perturbation_key perturbation
  expect_error run-test-condition $np "'A\+C' has no cells" "$o" -- \
    "$CELLSHIFT" run -data "$good" -output_dir "$o" "${RUN[@]}" -test_conditions A+B,A+C
  expect_error run-empty-test $np 'empty test set' "$o" -- \
    "$CELLSHIFT" run -data "$good" -output_dir "$o" "${RUN[@]}" -split random -test_fraction 0
  expect_error run-holdout-context $np "unknown context 'T9'" "$o" -- \
    "$CELLSHIFT" run -data "$good" -output_dir "$o" "${RUN[@]}" -split context -holdout_context T9
done

# --- valid variants: accepted, same numbers as the canonical CSR file ---------------------------------------------
# A file without the perturbation column is still a valid file to inspect.
timeout 60 $CS_MPIEXEC -n 2 "$CELLSHIFT" inspect "$data/bad_no_condition.h5ad" > /dev/null 2>&1 ||
  fail "inspect of a file without obs/condition failed"

timeout 60 $CS_MPIEXEC -n 1 "$CELLSHIFT" inspect "$good" > "$work/log/inspect-good.out" 2>&1 || fail "inspect good.h5ad"
summary "$work/log/inspect-good.out" > "$work/log/good.summary"
grep -q '^checked on 1 rank: 120 cells x 30 genes, 2420 non-zeros' "$work/log/inspect-good.out" ||
  fail "inspect good.h5ad: unexpected summary: $(head -c 600 "$work/log/inspect-good.out")"
timeout 60 $CS_MPIEXEC -n 1 "$CELLSHIFT" run -data "$good" -output_dir "$work/out/ref" "${RUN[@]}" -test_conditions A+B \
  > "$work/log/run-good.out" 2>&1 || fail "run on good.h5ad: $(tail -3 "$work/log/run-good.out")"

for name in good good_gzip good_unsorted good_int64_float64 good_h5sparse good_csc good_dense; do
  for np in 1 2 3; do
    f=$data/$name.h5ad
    o=$work/log/inspect-$name.np$np.out
    if timeout 60 $CS_MPIEXEC -n $np "$CELLSHIFT" inspect "$f" > "$o" 2>&1; then
      summary "$o" | sed 's/ (rows rebuilt from the file.s layout)//' | diff -q - "$work/log/good.summary" > /dev/null ||
        fail "inspect $name (np $np) differs from good.h5ad: $(summary "$o" | diff - "$work/log/good.summary" | head -5)"
    else
      fail "inspect $name (np $np) failed: $(grep '^cellshift' "$o")"
    fi
    out=$work/out/$name.np$np
    if timeout 60 $CS_MPIEXEC -n $np "$CELLSHIFT" run -data "$f" -output_dir "$out" "${RUN[@]}" -test_conditions A+B \
      > "$work/log/run-$name.np$np.out" 2>&1; then
      "$PY" - "$work/out/ref" "$out" <<'EOF' || fail "run on $name (np $np): results differ from good.h5ad at 1 rank"
import json, sys, pathlib, numpy as np, anndata as ad
ref, out = map(pathlib.Path, sys.argv[1:])
preds = sorted(p.relative_to(ref) for p in ref.rglob("predictions.h5ad"))
assert preds, "the reference run wrote no predictions"
for p in preds:
    a, b = ad.read_h5ad(ref / p), ad.read_h5ad(out / p)
    assert a.shape == b.shape and (a.obs.astype(str).values == b.obs.astype(str).values).all(), f"{p}: obs differ"
    assert np.allclose(a.X, b.X, rtol=1e-5, atol=1e-6), f"{p}: X differs by {np.abs(a.X - b.X).max()}"
def leaves(x, path=""):
    if isinstance(x, dict):
        for k, v in x.items(): yield from leaves(v, f"{path}/{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x): yield from leaves(v, f"{path}[{i}]")
    else: yield path, x
for m in sorted(p.relative_to(ref) for p in ref.rglob("metrics.json")):
    A, B = dict(leaves(json.load(open(ref / m)))), dict(leaves(json.load(open(out / m))))
    assert A.keys() == B.keys(), f"{m}: different entries"
    for k, v in A.items():
        if isinstance(v, float) and not (np.isnan(v) and np.isnan(B[k])):
            assert np.isclose(v, B[k], rtol=1e-5, atol=1e-7), f"{m}{k}: {v} vs {B[k]}"
EOF
    else
      fail "run on $name (np $np) failed: $(grep '^cellshift' "$work/log/run-$name.np$np.out")"
    fi
  done
done

if [ $failures -eq 0 ]; then
  rm -rf "$work"
  echo "bad input: all checks passed"
else
  echo "$failures check(s) failed; logs in $work/log"
  exit 1
fi
