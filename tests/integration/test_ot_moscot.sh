#!/usr/bin/env bash
# cellshift's unbalanced Sinkhorn against moscot's own transport map between days 10 and 10.5 of the Schiebinger
# reprogramming subset (uns tmap_10_105, with the eps and tau moscot used): the plans' correlation and largest
# difference (tests/python/check_ot_moscot.py).
set -euo pipefail
: "${CS_MPIEXEC:?}" "${CS_SOURCE_DIR:?}" "${CS_BINARY_DIR:?}"
PY=${CS_PYTHON:-/usr/bin/python3}
data="$CS_SOURCE_DIR/../shared/data/schiebinger2019_reprogramming/moscot_temporal_tests.h5ad"
[ -f "$data" ] || data=/work/shared/data/schiebinger2019_reprogramming/moscot_temporal_tests.h5ad
[ -f "$data" ] || { echo "the moscot reference data is not there: skipped"; exit 77; }
out=$(mktemp -d "${TMPDIR:-/tmp}/cellshift-moscot-XXXXXX")
trap 'rm -rf "$out"' EXIT
"$PY" "$CS_SOURCE_DIR/tests/python/check_ot_moscot.py" prepare "$data" "$out"
$CS_MPIEXEC -n 1 "$CS_BINARY_DIR/tests/test_ot" -solve "$out"
"$PY" "$CS_SOURCE_DIR/tests/python/check_ot_moscot.py" compare "$data" "$out"
