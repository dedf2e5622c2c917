#!/usr/bin/env bash
# bench_sinkhorn (src/ot, stored kernel) against POT's ot.sinkhorn (../shared/bench/pot_sinkhorn_ref.py, float64) in
# the same run, at 4000 x 4000 points in dimension 50, eps 0.05 (cost divided by its maximum), 200 iterations; then
# the streamed (matrix-free) solve at growing n x n until one solve passes STREAM_BUDGET seconds (default 300).
#
#   bench/sinkhorn.sh [BUILD_DIR]        (default BUILD_DIR: <source>/build, built in Release)
#
# Each configuration runs ROUNDS times (default 3, interleaved) and the best is kept. Prints the two lines, then
# `N.NNx POT` (POT seconds / cellshift seconds), the memcpy peak of bench/peak.c (../shared/bench/peak.c) and the
# streamed runs with their rate in kernel entries per second and GB/s (4 bytes an entry). Environment: ROUNDS,
# PYTHON (default /usr/bin/python3), RANKS (default 1; 2 uses both cores), STREAM_SIZES (default
# "10000 20000 40000 100000"; empty: none), STREAM_ITERS (default 10), STREAM_BUDGET.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build}
exe=$build/bench/bench_sinkhorn
py=${PYTHON:-/usr/bin/python3}
rounds=${ROUNDS:-3}
ranks=${RANKS:-1}
ref=$top/../shared/bench/pot_sinkhorn_ref.py
[ -f "$ref" ] || ref=/work/shared/bench/pot_sinkhorn_ref.py
peak=$top/../shared/bench/peak.c
[ -f "$peak" ] || peak=/work/shared/bench/peak.c
[ -x "$exe" ] || { echo "sinkhorn.sh: $exe not found (build first: cmake --build $build)" >&2; exit 1; }
"$py" -c "import ot" 2> /dev/null || { echo "sinkhorn.sh: POT is not installed for $py (apt-get install python3-pot)" >&2; exit 1; }
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OPENBLAS_NUM_THREADS=1
field() { awk -v k="$1" '{for(i=1;i<NF;i++) if($i==k){print $(i+1); exit}}'; }
best_c=""; best_p=""; line_c=""; line_p=""
for r in $(seq "$rounds"); do
  out=$(mpiexec --oversubscribe -n "$ranks" "$exe" -n 4000 -d 50 -eps 0.05 -iters 200)
  t=$(echo "$out" | field seconds)
  if [ -z "$best_c" ] || awk -v a="$t" -v b="$best_c" 'BEGIN{exit !(a<b)}'; then best_c=$t; line_c=$out; fi
  out=$(OPENBLAS_NUM_THREADS=$ranks OMP_NUM_THREADS=$ranks "$py" "$ref" 4000 4000 50 0.05 200)
  t=$(echo "$out" | field seconds)
  if [ -z "$best_p" ] || awk -v a="$t" -v b="$best_p" 'BEGIN{exit !(a<b)}'; then best_p=$t; line_p=$out; fi
done
echo "$line_c"
echo "pot_sinkhorn $line_p"
awk -v c="$best_c" -v p="$best_p" -v r="$ranks" 'BEGIN{printf "sinkhorn 4000 x 4000, d 50, eps 0.05, 200 iterations, %d core(s): cellshift %.3f s, POT %.3f s: %.2fx POT\n", r, c, p, p/c}'
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cellshift-peak-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
if cc -O2 "$peak" -o "$tmp/peak" -lopenblas 2> /dev/null; then "$tmp/peak" | grep memcpy; fi
for n in ${STREAM_SIZES-10000 20000 40000 100000}; do
  start=$(date +%s)
  out=$(mpiexec --oversubscribe -n "$ranks" "$exe" -n "$n" -d 50 -eps 0.05 -iters "${STREAM_ITERS:-10}" -stream) || break
  echo "$out"
  [ $(( $(date +%s) - start )) -gt "${STREAM_BUDGET:-300}" ] && break
done
