#!/usr/bin/env bash
# cellshift's dense Sinkhorn against POT (python3-pot) on 200 x 150 points in dimension 5 with unequal weights:
# balanced with the cost scaled by its mean (eps 0.05) and by its maximum (eps 0.01), unbalanced with tau 0.9 on both
# sides; the plans' largest difference and correlation (tests/python/check_ot_pot.py). Skipped (77) without POT.
set -euo pipefail
: "${CS_MPIEXEC:?}" "${CS_SOURCE_DIR:?}" "${CS_BINARY_DIR:?}"
PY=${CS_PYTHON:-/usr/bin/python3}
"$PY" -c "import ot" 2> /dev/null || { echo "POT (python3-pot) is not installed: skipped"; exit 77; }
out=$(mktemp -d "${TMPDIR:-/tmp}/cellshift-ot-XXXXXX")
trap 'rm -rf "$out"' EXIT
$CS_MPIEXEC -n 1 "$CS_BINARY_DIR/tests/test_ot" -dump "$out"
"$PY" "$CS_SOURCE_DIR/tests/python/check_ot_pot.py" "$out"
