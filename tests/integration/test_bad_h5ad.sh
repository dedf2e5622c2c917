#!/bin/bash
# Files the .h5ad reader itself must refuse, end to end, at 1, 2 and 3 ranks (tests/python/make_bad_h5ad_reader.py
# makes them). `cellshift inspect FILE` and `cellshift run -data FILE` must each exit with status 1 within 60 s,
# print exactly one "cellshift: error:" line that names the file and matches the case's pattern, and leave no
# predictions.h5ad, metrics.json or temporary file in the output folder.
#
# Catalogue (14 refused files + 1 accepted file; each refused file x 2 commands x 3 rank counts):
#   bad_obs_index_short        obs/_index has 119 names for 120 cells (anndata refuses it)
#   bad_obs_index_long         obs/_index has 121 names for 120 cells
#   bad_obs_no_index           no obs/_index dataset
#   bad_duplicate_categories   obs/condition/categories lists 'A' twice (would be merged silently)
#   bad_float64_overflow       float64 X/data with a finite 1e300 (not "+Inf": it overflows float32)
#   bad_dense_overflow         dense float64 X with -1e300
#   bad_data_bytes             X/data as byte strings |S4 (the type is named)
#   bad_data_str               X/data as variable-length strings
#   bad_indices_bool           X/indices as booleans
#   bad_dense_bytes            dense X as byte strings |S8
#   bad_shape_attr             X's shape attribute has 3 entries
#   bad_gzip_chunk             a gzip chunk of X/data with garbled bytes (both read paths refuse it)
#   bad_truncated              the first 60% of a good file (file size vs the superblock's end of file)
#   bad_damaged                the superblock's addresses overwritten
#   good_barcodes (accepted)   12,000 distinct barcodes: inspect says "more than 10000 distinct values"
set -u
: "${CELLSHIFT:?}" "${CS_MPIEXEC:?}" "${CS_SOURCE_DIR:?}"
PY=${CS_PYTHON:-/usr/bin/python3}
work=$(mktemp -d /tmp/cellshift-badh5ad-XXXXXX)
data=$work/data
failures=0
checks=0
RUN=(-context_key cell_type -model additive -test_conditions A+B)

fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

"$PY" "$CS_SOURCE_DIR/tests/python/make_bad_h5ad_reader.py" "$data" > /dev/null || { echo "cannot make the test files"; exit 1; }

# expect_error LABEL NP PATTERN OUTDIR -- COMMAND...: exit status 1 within 60 s, one error line matching PATTERN
# (grep -E, case insensitive), nothing left under a final name in OUTDIR.
expect_error() {
  local label=$1 np=$2 pattern=$3 outdir=$4 err rc lines line left
  shift 5
  checks=$((checks + 1))
  err=$work/log/$label.np$np.err
  mkdir -p "$work/log"
  timeout 60 $CS_MPIEXEC -n "$np" "$@" > "$work/log/$label.np$np.out" 2> "$err"
  rc=$?
  if [ $rc -eq 124 ]; then fail "$label (np $np): still running after 60 s"; return; fi
  [ $rc -eq 1 ] || fail "$label (np $np): exit status $rc, expected 1: $(head -c 400 "$err")"
  lines=$(grep -c '^cellshift: error:' "$err")
  [ "$lines" -eq 1 ] || fail "$label (np $np): $lines 'cellshift: error:' lines on stderr, expected 1: $(head -c 600 "$err")"
  line=$(grep -m1 '^cellshift: error:' "$err")
  echo "$line" | grep -qiE -- "$pattern" || fail "$label (np $np): error line does not match /$pattern/: $line"
  if [ -n "$outdir" ] && [ -d "$outdir" ]; then
    left=$(find "$outdir" \( -name predictions.h5ad -o -name metrics.json -o -name '*.tmp.*' \) | head -3)
    [ -z "$left" ] || fail "$label (np $np): the failed run left $left"
  fi
}

declare -A PATTERN=(
  [bad_obs_index_short]='obs/_index has 119 cell names but /X has 120 cells'
  [bad_obs_index_long]='obs/_index has 121 cell names but /X has 120 cells'
  [bad_obs_no_index]='no index /obs/_index'
  [bad_duplicate_categories]="obs/condition/categories lists 'A' twice"
  [bad_float64_overflow]='row 90 has a value at column [0-9]+ that overflows float32'
  [bad_dense_overflow]='row 40 has a value at column 7 that overflows float32'
  [bad_data_bytes]='/X/data holds byte strings \(\|S4\), not numbers'
  [bad_data_str]='/X/data holds variable-length strings \(str\), not numbers'
  [bad_indices_bool]='/X/indices holds values of type bool, not numbers'
  [bad_dense_bytes]='/X holds byte strings \(\|S8\), not numbers'
  [bad_shape_attr]='attribute shape is not 2 integers'
  [bad_gzip_chunk]='/X: cannot read elements .*damaged'
  [bad_truncated]='is truncated: it has [0-9]+ bytes but its HDF5 superblock says [0-9]+'
  [bad_damaged]='is damaged'
)
ncases=0
for name in "${!PATTERN[@]}"; do
  ncases=$((ncases + 1))
  [ -f "$data/$name.h5ad" ] || { fail "$name.h5ad was not made"; continue; }
  for np in 1 2 3; do
    f=$data/$name.h5ad
    expect_error "inspect-$name" $np "$name\.h5ad.*${PATTERN[$name]}" "" -- "$CELLSHIFT" inspect "$f"
    out=$work/out/$name.np$np
    expect_error "run-$name" $np "$name\.h5ad.*${PATTERN[$name]}" "$out" -- "$CELLSHIFT" run -data "$f" -output_dir "$out" "${RUN[@]}"
  done
done

# Accepted: a barcode-like string column is not gathered by inspect.
for np in 1 3; do
  checks=$((checks + 1))
  o=$work/log/inspect-barcodes.np$np.out
  if timeout 60 $CS_MPIEXEC -n $np "$CELLSHIFT" inspect "$data/good_barcodes.h5ad" > "$o" 2>&1; then
    grep -qE '^ *barcode +string \(str\), more than 10000 distinct values$' "$o" ||
      fail "inspect good_barcodes (np $np): no 'more than 10000 distinct values' line: $(grep barcode "$o")"
    grep -qE '^ *condition +categorical' "$o" || fail "inspect good_barcodes (np $np): condition is missing"
  else
    fail "inspect good_barcodes (np $np) failed: $(grep '^cellshift' "$o")"
  fi
done

echo "bad h5ad: $ncases refused files, $checks checks"
if [ $failures -eq 0 ]; then
  rm -rf "$work"
  echo "bad h5ad: all checks passed"
else
  echo "bad h5ad: $failures failure(s); logs in $work/log"
  exit 1
fi
