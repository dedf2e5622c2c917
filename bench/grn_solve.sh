#!/usr/bin/env bash
# The grn steady-state solve: ScaLAPACK (block-cyclic LU over the ranks) against LAPACK dgesv on one rank, at
# G = 2,000, 5,000 and 20,000 genes, 1 and 2 ranks of 1 BLAS thread each, with the dgemm peak of this machine
# (../shared/bench/peak.c, 1 thread) for scale.
#
#   bench/grn_solve.sh [BUILD_DIR] [GENES...]      (default: <source>/build; 2000 5000 20000)
#
# Memory: 8 G^2 bytes for the ScaLAPACK matrix in all (3.2 GB at 20,000, split over the ranks) and as much again
# on rank 0 for dgesv, held after the ScaLAPACK one is freed. Environment: CS_BENCH_REF (folder of peak.c,
# default ../shared/bench), MPIEXEC (default mpiexec), NRHS (default 32).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build}
shift || true
sizes=${*:-2000 5000 20000}
exe=$build/bench/bench_grn_solve
ref=${CS_BENCH_REF:-$top/../shared/bench}
mpiexec=${MPIEXEC:-mpiexec}
nrhs=${NRHS:-32}
[ -x "$exe" ] || { echo "grn_solve.sh: $exe not found (build first: cmake --build $build)" >&2; exit 1; }
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OPENBLAS_NUM_THREADS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc -O2 "$ref/peak.c" -lopenblas -o "$tmp/peak"
peak=$("$tmp/peak" | awk '/^dgemm/{print $3}')
echo "dgemm peak (1 thread): $peak GFLOP/s"
field() { awk -v k="$1" '{for(i=1;i<NF;i++) if($i==k){print $(i+1); exit}}'; }
printf '%7s %5s %5s %12s %10s %10s %9s %10s %10s %9s %10s %9s\n' genes ranks grid scalapack_s factor_s solve_s GFLOP/s "% peak" dgesv_s GFLOP/s "% peak" max_diff
for G in $sizes; do
  for np in 1 2; do
    dense=1; [ $np -gt 1 ] && dense=0
    l=$($mpiexec --bind-to none -n $np "$exe" -genes "$G" -nrhs "$nrhs" -blas_threads 1 -dense $dense)
    s=$(echo "$l" | field scalapack_gflops); d=$(echo "$l" | field dgesv_gflops)
    printf '%7s %5s %5s %12s %10s %10s %9s %10s %10s %9s %10s %9s\n' "$G" "$np" "$(echo "$l" | field grid)" "$(echo "$l" | field scalapack_s)" \
      "$(echo "$l" | field factor_s)" "$(echo "$l" | field solve_s)" "$s" "$(awk -v a="$s" -v p="$peak" -v n=$np 'BEGIN{printf "%.0f", 100*a/(p*n)}')" \
      "$(echo "$l" | field dgesv_s)" "$d" "$(awk -v a="$d" -v p="$peak" 'BEGIN{printf "%.0f", (a > 0) ? 100 * a / p : 0}')" "$(echo "$l" | field max_diff)"
  done
done
echo "(% peak: of the dgemm peak times the ranks; dgesv runs on one rank; rows at 2 ranks do not repeat dgesv)"
