#!/bin/bash
# Read benchmark: the parallel .h5ad reader at 1 and 2 ranks against anndata.read_h5ad, on the same file in the
# same run (ratios are what count on a shared machine; each number is the best of REPEAT runs).
#
#   bench/read_h5ad.sh [BUILD_DIR]      (default: build)
#   CS_BENCH_COMPRESSION=none bench/read_h5ad.sh    (the same matrix stored uncompressed)
#
# The file (1,000,000 cells x 2,000 genes, 10% density, gzip or uncompressed, ~1.1 / 1.6 GB) is made once with
# anndata in $CS_BENCH_DIR (default /tmp/cellshift-bench, outside the repository; about 1.5 minutes) and reused.
# On a loaded machine the wall times mostly measure the load: each reader's CPU seconds (anndata's user + system
# time, the C reader's summed over ranks and threads) are printed too, with the ratio they give for ranks on idle
# cores. The 2-rank read is also timed with each inflater the build has (-h5ad_inflate libdeflate, isal).
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
best_py="" cpu_py=""
for i in $(seq "$repeat"); do
  out=$(/usr/bin/time -f "cpu %U %S" $py "$ref" read "$file" 2>&1)
  s=$(echo "$out" | awk '/^seconds/{print $2}')
  c=$(echo "$out" | awk '/^cpu /{print $2 + $3}')
  echo "  anndata.read_h5ad run $i: $s s (CPU $c s)"
  best_py=$(awk -v a="$s" -v b="$best_py" 'BEGIN{print (b == "" || a < b) ? a : b}')
  cpu_py=$(awk -v a="$c" -v b="$cpu_py" 'BEGIN{print (b == "" || a < b) ? a : b}')
done

declare -A best_c cpu_c mbs label
runs="1 2"
label[1]="cellshift, 1 rank" label[2]="cellshift, 2 ranks"
# the 2-rank read with each inflater, when the build has ISA-L
help=$($mpiexec -n 1 "$bench" -help 2>/dev/null || true) # -help without -data exits 1: keep its text, not its status
if grep -q "^inflaters in this build.*isal" <<< "$help"; then
  runs="1 2 2:libdeflate 2:isal" label[2]="cellshift, 2 ranks (default)"
fi
for run in $runs; do
  np=${run%%:*} opt=()
  [ "$run" != "$np" ] && opt=(-h5ad_inflate "${run#*:}") label[$run]="cellshift, 2 ranks, ${run#*:}"
  out=$($mpiexec -n $np "$bench" -data "$file" -bench_repeat "$repeat" "${opt[@]}")
  echo "$out" | sed 's/^/  C reader, '"$run"': /'
  best_c[$run]=$(echo "$out" | awk '/^ranks/{print $4}')
  cpu_c[$run]=$(echo "$out" | awk '/^ranks/{for (i = 1; i < NF; i++) if ($i == "CPU") print $(i + 2)}')
  mbs[$run]=$(echo "$out" | awk '/^ranks/{for (i = 1; i < NF; i++) if ($i == "uncompressed") print $(i + 1)}')
done

cells=1000000
printf '\n%-36s %10s %12s %12s %8s %16s\n' "reader" "seconds" "cells/s" "vs anndata" "CPU s" "CPU vs anndata"
rate() { awk -v s="$1" -v n=$cells 'BEGIN{print n/s}'; }
printf '%-36s %10.2f %12.0f %12s %8.2f %16s\n' "anndata.read_h5ad (python)" "$best_py" "$(rate "$best_py")" "1.00x" "$cpu_py" "1.00x"
# CPU vs anndata: anndata's CPU seconds over the C reader's per rank (its wall time on as many idle cores as ranks)
for run in $runs; do
  s=${best_c[$run]} np=${run%%:*}
  printf '%-36s %10.2f %12.0f %11.2fx %8.2f %15.2fx\n' "${label[$run]}" "$s" "$(rate "$s")" \
    "$(awk -v a="$best_py" -v s="$s" 'BEGIN{print a/s}')" "${cpu_c[$run]}" \
    "$(awk -v a="$cpu_py" -v c="${cpu_c[$run]}" -v np="$np" 'BEGIN{print a / (c / np)}')"
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
  echo "  (memcpy is one thread's; at 2 ranks the reader has two cores)"
fi

echo
echo "where the time goes (2 ranks, -log_view; max time over ranks):"
$mpiexec -n 2 "$bench" -data "$file" -bench_repeat 1 -log_view |
  grep -E "^(Event|CsRead|CsReadChunkFetch|CsReadInflate|BenchRawChunks|BenchDecoded) |^phases"
