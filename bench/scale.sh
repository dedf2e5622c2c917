#!/bin/bash
# Scale benchmark: the same small scgen trained for one epoch on 10^5, 10^6 (and, with CS_SCALE_CELLS, more)
# simulated cells at 2 ranks, streamed (-stream: rows read from the file in blocks, the next window prefetched on a
# thread) and in memory where the shard fits, in the same run. Prints, per size: the peak resident memory of each
# rank (VmHWM, from /usr/bin/time's maximum RSS of every rank), the training throughput (cells/s of the trainer's
# progress line) streamed and in memory with their ratio, the memory growth against the smallest streamed run, and
# from the largest streamed epoch a projection of the epoch time for 10^8 cells on 64 nodes x 64 cores (the model
# is printed with it: compute scaled by ranks, a ring allreduce of the parameters every step). The streamed runs
# also report the time the trainer waited for rows (CsStreamRead of -log_view, slowest rank), with and without the
# prefetch thread (-stream_prefetch false) on the smallest size.
#
#   bench/scale.sh [BUILD_DIR]     (default: build)
#   CS_SCALE_CELLS="100000 1000000 10000000" CS_SCALE_GENES=500 CS_SCALE_INMEM_MAX=1000000 CS_SCALE_MODEL=small bench/scale.sh
#
# Files are simulated once (`cellshift simulate`, raw counts, dense at these depths, trained with -normalize) into $CS_BENCH_DIR
# (default /tmp/cellshift-bench) and reused; 10^6 x 500 takes a few minutes and 2 GB.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
cs=$build/cellshift
dir=${CS_BENCH_DIR:-/tmp/cellshift-bench}
cells=${CS_SCALE_CELLS:-100000 1000000}
genes=${CS_SCALE_GENES:-500}
inmem_max=${CS_SCALE_INMEM_MAX:-1000000}
np=2
mpiexec=${CS_MPIEXEC:-mpiexec --oversubscribe --bind-to none}
export OPENBLAS_NUM_THREADS=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
[ -x "$cs" ] || { echo "no $cs: build first" >&2; exit 1; }
mkdir -p "$dir"
# CS_SCALE_MODEL=small (default: hidden 128, latent 16, where reading and normalising rows weigh most) or scgen
# (scGen's published size, cellshift's defaults: 800-800, latent 100; about 18x the compute per cell).
size=(-scgen_hidden 128 -scgen_latent 16)
[ "${CS_SCALE_MODEL:-small}" = scgen ] && size=()
model=(-model scgen -baselines control -perturbation_key condition -control_value control -context_key cell_type -normalize
       "${size[@]}" -scgen_batch_size 512 -scgen_epochs 1 -scgen_valid_cells 0.001 -split random -test_fraction 0.2)
out=$(mktemp -d "${TMPDIR:-/tmp}/cellshift-scale-XXXXXX")
trap 'rm -rf "$out"' EXIT
rows=$out/rows.csv
echo "cells,mode,rank,vmhwm_kb,cells_per_s,train_s,params,wait_s" > "$rows"
for n in $cells; do
  f=$dir/sim_${n}_$genes.h5ad
  if [ ! -f "$f" ]; then
    echo "simulating $n cells x $genes genes into $f" >&2
    $mpiexec -n $np "$cs" simulate -cells "$n" -genes "$genes" -output "$f" >&2
  fi
  modes=stream
  [ "$n" -le "$inmem_max" ] && modes="stream memory"
  [ "$n" = "$(echo $cells | awk '{print $1}')" ] && modes="$modes noprefetch" # the prefetch's worth, on the smallest
  for mode in $modes; do
    opt=()
    [ $mode = stream ] && opt=(-stream -stream_block 4096 -scgen_stream_window 8 -log_view)
    [ $mode = noprefetch ] && opt=(-stream -stream_block 4096 -scgen_stream_window 8 -stream_prefetch false -log_view)
    [ $mode = memory ] && opt=(-scgen_sampler_type stream -stream_block 4096 -scgen_stream_window 8) # the same batches
    log=$out/$n.$mode.log
    $mpiexec -n $np /usr/bin/time -f "VmHWM_kB %M" "$cs" train -data "$f" "${model[@]}" "${opt[@]}" -output_dir "$out/$n.$mode" \
      > "$log" 2>&1 || { tr '\r' '\n' < "$log" | tail -20; exit 1; }
    rate=$(tr '\r' '\n' < "$log" | grep -o '[0-9.e+]* cells/s took [0-9.]*s' | tail -1)
    params=$(/usr/bin/python3 -c "import h5py,sys
f=h5py.File(sys.argv[1]); n=[0]
def v(k,o):
    if isinstance(o,h5py.Dataset) and o.dtype.kind=='f' and 'shift' not in k: n[0]+=o.size
f.visititems(v); print(n[0])" "$out/$n.$mode/scgen/model.h5")
    wait=$(awk '$1 == "CsStreamRead" {print $4}' "$log" | head -1) # max over ranks of the time waiting for rows
    r=0
    grep -o 'VmHWM_kB [0-9]*' "$log" | while read -r _ kb; do
      echo "$n,$mode,$r,$kb,$(echo "$rate" | awk '{print $1}'),$(echo "$rate" | sed 's/.*took \([0-9.]*\)s/\1/'),$params,${wait:-}" >> "$rows"
      r=$((r + 1))
    done
    rm -rf "${out:?}/$n.$mode"
  done
done
/usr/bin/python3 "$here/scale_table.py" "$rows" $np
