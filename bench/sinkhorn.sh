#!/usr/bin/env bash
# bench_sinkhorn (src/ot, stored kernel) against POT's ot.sinkhorn (float64, scaling form: not log-domain) in the
# same run, at 4000 x 4000 points in dimension 50, eps 0.05 (cost divided by its maximum); then the streamed
# (matrix-free) solve at growing n x n until one solve passes STREAM_BUDGET seconds (default 300).
#
#   bench/sinkhorn.sh [BUILD_DIR]        (default BUILD_DIR: <source>/build, built in Release)
#
# What POT does in ../shared/bench/pot_sinkhorn_ref.py: ot.dist, M /= M.max(), exp(-M/eps) and ot.sinkhorn with
# numItermax 200, stopThr 1e-12, its column-marginal L2 error checked every 10th iteration; on this problem the
# error is 3e-17 at the check after 11 iterations, so it stops there (it never runs 200). Two comparisons, each
# timing everything from the points to the solution (distances, maximum, kernel, iterations, projection):
#   same iterations:  bench/pot_sinkhorn_iters.py (the same problem, stopThr -1: exactly 200 iterations) against
#                     cellshift at exactly 200 iterations (float32 kernel, no epsilon scaling);
#                     and the same with the bfloat16 kernel throughout (-bf16 -bf16_refine 0), its effect on
#                     the solution next to float32 in the line bf16_vs_f32;
#   to convergence:   the reference as it is against cellshift solving to the L1 marginal error 1e-6 (the float32
#                     floor; POT's 1e-12 in float64 is not reachable in float32).
# With BF16_CASE=1, the bfloat16 kernel (CsOTOptions.kernel_bf16) against float32 on a solve with many iterations
# (eps 0.002, tolerance 1e-5) with its effect on cost, potentials and barycentres (bf16_vs_f32; minutes).
# Each configuration runs ROUNDS times (default 3, interleaved) and the best is kept. Prints the lines, each ratio
# as `N.NNx POT` (POT seconds / cellshift seconds), the memcpy peak of bench/peak.c (../shared/bench/peak.c) and
# the streamed runs with their rate in kernel entries per second and GB/s (4 bytes an entry; 2 for bfloat16).
# Environment: ROUNDS, PYTHON (default /usr/bin/python3), RANKS (default 1; 2 uses both cores), STREAM_SIZES
# (default "10000 20000 40000 100000"; empty: none), STREAM_ITERS (default 10), STREAM_BUDGET.
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
iters_py=$top/bench/pot_sinkhorn_iters.py
best() { # best NAME SECONDS LINE: keep the fastest line of each configuration
  local k=$1 t=$2
  if [ -z "${B[$k]:-}" ] || awk -v a="$t" -v b="${B[$k]}" 'BEGIN{exit !(a<b)}'; then B[$k]=$t; L[$k]=$3; fi
}
declare -A B L
run=(mpiexec --oversubscribe -n "$ranks" "$exe" -n 4000 -d 50 -eps 0.05)
for r in $(seq "$rounds"); do
  out=$(/usr/bin/time -f "cpu_user_s %U" "${run[@]}" -iters 200 2>&1); best c200 "$(echo "$out" | field seconds)" "$out"
  out=$(OPENBLAS_NUM_THREADS=$ranks OMP_NUM_THREADS=$ranks /usr/bin/time -f "cpu_user_s %U" "$py" "$iters_py" 4000 4000 50 0.05 200 2>&1); best p200 "$(echo "$out" | field seconds)" "$out"
  out=$(/usr/bin/time -f "cpu_user_s %U" "${run[@]}" -iters 200 -bf16 -bf16_refine 0 2>&1); best c200h "$(echo "$out" | field seconds)" "$out"
  out=$("${run[@]}" -iters 200 -tol 1e-6); best cconv "$(echo "$out" | field seconds)" "$out"
  out=$(OPENBLAS_NUM_THREADS=$ranks OMP_NUM_THREADS=$ranks "$py" "$ref" 4000 4000 50 0.05 200); best pref "$(echo "$out" | field seconds)" "$out"
done
echo "${L[c200]}"
echo "${L[c200h]}"
echo "pot_sinkhorn_iters ${L[p200]}"
echo "${L[cconv]}"
echo "pot_sinkhorn_ref ${L[pref]} iterations 11"
awk -v c="${B[c200]}" -v p="${B[p200]}" -v r="$ranks" 'BEGIN{printf "sinkhorn 4000 x 4000, d 50, eps 0.05, 200 iterations each, %d core(s): cellshift %.3f s, POT %.3f s: %.2fx POT\n", r, c, p, p/c}'
awk -v c="${B[c200h]}" -v p="${B[p200]}" -v r="$ranks" 'BEGIN{printf "sinkhorn 4000 x 4000, d 50, eps 0.05, 200 iterations each, bfloat16 kernel, %d core(s): cellshift %.3f s, POT %.3f s: %.2fx POT\n", r, c, p, p/c}'
"${run[@]}" -iters 200 -bf16 -bf16_refine 0 -compare | grep bf16_vs_f32
ci=$(echo "${L[cconv]}" | field iters)
awk -v c="${B[cconv]}" -v p="${B[pref]}" -v r="$ranks" -v i="$ci" 'BEGIN{printf "sinkhorn 4000 x 4000, d 50, eps 0.05, to convergence (cellshift %d iterations to L1 error 1e-6, POT 11 to L2 error 1e-12), %d core(s): cellshift %.3f s, POT %.3f s: %.2fx POT\n", i, r, c, p, p/c}'
if [ -n "${BF16_CASE:-}" ]; then
  for k in "" "-bf16 -compare"; do /usr/bin/time -f "cpu_user_s %U" "${run[@]}" -eps 0.002 -tol 1e-5 -iters 5000 $k; done
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cellshift-peak-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
if cc -O2 "$peak" -o "$tmp/peak" -lopenblas 2> /dev/null; then "$tmp/peak" | grep memcpy; fi
for n in ${STREAM_SIZES-10000 20000 40000 100000}; do
  start=$(date +%s)
  out=$(mpiexec --oversubscribe -n "$ranks" "$exe" -n "$n" -d 50 -eps 0.05 -iters "${STREAM_ITERS:-10}" -stream) || break
  echo "$out"
  [ $(( $(date +%s) - start )) -gt "${STREAM_BUDGET:-300}" ] && break
done
