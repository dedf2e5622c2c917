#!/usr/bin/env bash
# The new neural-engine kernels (bench_kernels: attention, SGConv graph propagation, distances and log-sum-exp) at
# 1 and 2 threads, with PyTorch's attention (torch_attention_ref.py, torch.set_num_threads 1 and 2) in the same run.
#
#   bench/kernels.sh [BUILD_DIR]          (default BUILD_DIR: <source>/build, built in Release)
#
# Each configuration runs ROUNDS times (default 3, interleaved) and the best is kept; the programs themselves report
# the best of their repetitions. Environment: ROUNDS, PYTHON (default /usr/bin/python3), extra options for
# bench_kernels in BENCH_ARGS (e.g. "-graph_batch 32"; PyTorch always runs the default attention size).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build}
exe=$build/bench/bench_kernels
py=${PYTHON:-/usr/bin/python3}
rounds=${ROUNDS:-3}
[ -x "$exe" ] || { echo "kernels.sh: $exe not found (build first: cmake --build $build)" >&2; exit 1; }
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
torch=1
"$py" -c "import torch" 2> /dev/null || { torch=0; echo "kernels.sh: no torch in $py: PyTorch rows skipped"; }

declare -A best line
field() { awk -v k="$1" '{for(i=1;i<NF;i++) if($i==k){print $(i+1); exit}}'; }
keep() { # keep KEY LINE FIELD: keep the line with the smallest FIELD
  local v; v=$(echo "$2" | field "$3")
  if [ -z "${best[$1]:-}" ] || awk -v a="$v" -v b="${best[$1]}" 'BEGIN{exit !(a<b)}'; then best[$1]=$v; line[$1]=$2; fi
}
for r in $(seq "$rounds"); do
  for t in 1 2; do
    out=$(OPENBLAS_NUM_THREADS=$t "$exe" -blas_threads $t ${BENCH_ARGS:-})
    keep "attn$t" "$(echo "$out" | grep '^cellshift_attention')" fwdbwd_ms
    keep "graph$t" "$(echo "$out" | grep '^cellshift_graph')" sgconv_fwdbwd_ms
    keep "ot$t" "$(echo "$out" | grep '^cellshift_ot')" lse_rows_ms
    [ $torch = 1 ] && keep "torch$t" "$(OMP_NUM_THREADS=$t "$py" "$top/bench/torch_attention_ref.py" 32 64 128 4 $t)" fwdbwd_ms
  done
done
for t in 1 2; do
  echo "${line[attn$t]}"
  [ $torch = 1 ] && echo "${line[torch$t]}"
done
for t in 1 2; do echo "${line[graph$t]}"; done
for t in 1 2; do echo "${line[ot$t]}"; done
if [ $torch = 1 ]; then
  for t in 1 2; do
    awk -v c="${best[attn$t]}" -v p="${best[torch$t]}" -v t=$t \
      'BEGIN{printf "attention forward+backward, %d thread(s): cellshift %.2f ms, PyTorch %.2f ms, ratio %.2fx\n", t, c, p, p/c}'
  done
fi
