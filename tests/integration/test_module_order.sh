#!/usr/bin/env bash
# The modules of src/ form a DAG in the order of CS_MODULES (CMakeLists.txt): no include against the order. The
# check is shown to fail on a planted back edge (a copy of the tree where src/core includes model.h).
set -euo pipefail
"$CS_PYTHON" "$CS_SOURCE_DIR/tests/python/check_modules.py" "$CS_SOURCE_DIR"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cellshift-modules-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/src"
cp "$CS_SOURCE_DIR/CMakeLists.txt" "$tmp/"
cp -r "$CS_SOURCE_DIR/include" "$tmp/"
cp -r "$CS_SOURCE_DIR/src/core" "$tmp/src/"
echo '#include <cellshift/model.h>' >> "$tmp/src/core/sys.c"
if "$CS_PYTHON" "$CS_SOURCE_DIR/tests/python/check_modules.py" "$tmp" > "$tmp/out.txt"; then
  echo "the check accepted src/core including model.h"; exit 1
fi
grep -q "includes cellshift/model.h of the later module 'models'" "$tmp/out.txt"
echo "module order: ok"
