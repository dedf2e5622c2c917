#!/bin/bash
# Read benchmark: the parallel .h5ad reader at 1 and 2 ranks against anndata.read_h5ad, on the same file in the
# same run (ratios are what count on a shared machine; each number is the best of REPEAT runs).
#
#   bench/read_h5ad.sh [BUILD_DIR]      (default: build)
#   CS_BENCH_COMPRESSION=none bench/read_h5ad.sh    (the same matrix stored uncompressed)
#
# The file (1,000,000 cells x 2,000 genes, 10% density, gzip or uncompressed, ~1.1 / 1.6 GB) is made once with
# anndata in $CS_BENCH_DIR (default /tmp/cellshift-bench, outside the repository; about 1.5 minutes) and reused.
# Then the machine's memcpy bandwidth (the peer references' peak.c), and how much of it the reader reaches: the
# time one memcpy of the matrix bytes (indptr + indices + data) takes, over the read's time.
# Ends with one run under -log_view: CsRead (the reader), CsReadChunkFetch and CsReadInflate (its direct chunk
# path: chunks fetched, chunks inflated on the rank's threads), BenchRawChunks (the compressed chunks fetched
# without decoding) and BenchDecoded (the same chunks through HDF5's gzip filter) show where the time goes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
bench=$build/bench/bench_read_h5ad
dir=${CS_BENCH_DIR:-/tmp/cellshift-bench}
# The peer references (/work/shared/bench): beside the repository (main) or two levels up (a worktree).
ref=${CS_BENCH_REF:-}
for d in "$here/../../shared/bench" "$here/../../../shared/bench"; do
  [ -z "$ref" ] && [ -f "$d/anndata_read_ref.py" ] && ref=$d/anndata_read_ref.py
done
[ -n "$ref" ] || { echo "no anndata_read_ref.py: set CS_BENCH_REF" >&2; exit 1; }
py=/usr/bin/python3
repeat=${REPEAT:-3}
comp=${CS_BENCH_COMPRESSION:-gzip}
file=$dir/read_1M_2k_$comp.h5ad
mpiexec=${CS_MPIEXEC:-mpiexec --oversubscribe --bind-to none}
export OMPI_MCA_btl_vader_single_copy_mechanism=none
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi

[ -x "$bench" ] || { echo "no $bench: build first (cmake --build $build)" >&2; exit 1; }
mkdir -p "$dir"
if [ ! -f "$file" ]; then
  echo "making $file (about 1.5 minutes)"
  $py "$ref" make "$file.part" 1000000 2000 0.1 "$comp"
  mv "$file.part" "$file"
fi
echo "file: $file ($(du -h "$file" | cut -f1)); $(nproc) cores; best of $repeat"

# anndata: best of $repeat
best_py=""
for i in $(seq "$repeat"); do
  s=$($py "$ref" read "$file" | awk '{print $2}')
  echo "  anndata.read_h5ad run $i: $s s"
  best_py=$(awk -v a="$s" -v b="$best_py" 'BEGIN{print (b == "" || a < b) ? a : b}')
done

declare -A best_c mbs
for np in 1 2; do
  out=$($mpiexec -n $np "$bench" -data "$file" -bench_repeat "$repeat")
  echo "$out" | sed 's/^/  C reader, '"$np"' rank(s): /'
  best_c[$np]=$(echo "$out" | awk '/^ranks/{print $4}')
  mbs[$np]=$(echo "$out" | awk '/^ranks/{for (i = 1; i < NF; i++) if ($i == "uncompressed") print $(i + 1)}')
done

cells=1000000
printf '\n%-28s %10s %12s %16s\n' "reader" "seconds" "cells/s" "vs anndata"
rate() { awk -v s="$1" -v n=$cells 'BEGIN{print n/s}'; }
printf '%-28s %10.2f %12.0f %16s\n' "anndata.read_h5ad (python)" "$best_py" "$(rate "$best_py")" "1.00x"
for np in 1 2; do
  s=${best_c[$np]}
  printf '%-28s %10.2f %12.0f %15.2fx\n' "cellshift, $np rank(s)" "$s" "$(rate "$s")" \
    "$(awk -v a="$best_py" -v s="$s" 'BEGIN{print a/s}')"
done

# memcpy: peak.c copies 256 MB five times and counts read + write bytes, so one copy of B bytes takes 2 B / rate.
peak=$(dirname "$ref")/peak.c
if [ -f "$peak" ] && cc -O2 "$peak" -o "$dir/peak" -lopenblas 2> /dev/null; then
  gbs=$(OPENBLAS_NUM_THREADS=1 "$dir/peak" | awk '/^memcpy/{print $2}')
  echo
  echo "memcpy (1 thread): $gbs GB/s read+write; the read against one memcpy of its matrix bytes:"
  for np in 1 2; do
    awk -v m="${mbs[$np]}" -v g="$gbs" -v np=$np 'BEGIN{printf "  cellshift, %d rank(s): %.0f MB/s of matrix bytes = %.1f%% of memcpy\n", np, m, 100 * 2 * m / (g * 1000)}'
  done
fi

echo
echo "where the time goes (2 ranks, -log_view; max time over ranks):"
$mpiexec -n 2 "$bench" -data "$file" -bench_repeat 1 -log_view |
  grep -E "^(Event|CsRead|CsReadChunkFetch|CsReadInflate|BenchRawChunks|BenchDecoded) |^phases"
