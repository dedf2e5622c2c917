#!/usr/bin/env bash
# Non-finite numbers never pass silently: a model.h5 with a NaN parameter is refused when loaded (naming the file
# and the dataset), at 1, 2 and 3 ranks, and no predictions file is left behind.
set -euo pipefail
out=$(mktemp -d "${TMPDIR:-/tmp}/cellshift-nonfinite-XXXXXX")
trap 'rm -rf "$out"' EXIT
cd "$CS_SOURCE_DIR"
$CS_MPIEXEC -n 2 "$CELLSHIFT" train -options_file_yaml input/norman_combo.yaml -model linear -output_dir "$out/run" > "$out/train.log" 2>&1 \
  || { cat "$out/train.log"; exit 1; }
"$CS_PYTHON" - "$out/run/linear/model.h5" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r+") as f:
    w = f["params/W"][...]
    w.flat[3] = np.nan
    f["params/W"][...] = w
PY
for n in 1 2 3; do
  set +e
  timeout 120 $CS_MPIEXEC -n $n "$CELLSHIFT" predict -options_file_yaml input/norman_combo.yaml -model linear -output_dir "$out/run" \
    > "$out/predict.$n.log" 2>&1
  rc=$?
  set -e
  [ $rc -eq 1 ] || { echo "np$n: exit $rc, expected 1"; cat "$out/predict.$n.log"; exit 1; }
  grep -q "W holds a non-finite value" "$out/predict.$n.log" || { echo "np$n: message"; cat "$out/predict.$n.log"; exit 1; }
  [ "$(grep -c 'cellshift: error' "$out/predict.$n.log")" -eq 1 ] || { echo "np$n: not one error line"; cat "$out/predict.$n.log"; exit 1; }
  if ls "$out/run/linear/" | grep -q "predictions"; then echo "np$n: a predictions file was left"; ls "$out/run/linear"; exit 1; fi
done
echo "non-finite model parameters: refused at 1, 2, 3 ranks"
