#!/usr/bin/env bash
# The [B,T,C] kernels against PyTorch: test_nn_kernels -dump writes the inputs, outputs and gradients of masked
# multi-head self-attention, GELU, SiLU, softmax, LayerNorm and the time embedding; tests/python/
# check_attention_torch.py recomputes them with torch (float64, autograd) and compares. Skipped (exit 77) when
# Debian's python3-torch is not installed.
set -euo pipefail
exe="$CS_BINARY_DIR/tests/test_nn_kernels"
check="$CS_SOURCE_DIR/tests/python/check_attention_torch.py"
if ! "$CS_PYTHON" -c "import torch" 2> /dev/null; then
  echo "SKIPPED: $CS_PYTHON has no torch (Debian: apt-get install -y python3-torch)"
  exit 77
fi
out=$(mktemp -d "${TMPDIR:-/tmp}/cellshift-torch-XXXXXX")
trap 'rm -rf "$out"' EXIT
$CS_MPIEXEC -n 1 "$exe" -dump "$out"
"$CS_PYTHON" "$check" "$out"
