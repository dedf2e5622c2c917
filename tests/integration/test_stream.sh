#!/usr/bin/env bash
# Streamed training (-stream, -memory_limit) end to end on the embedded Norman data, small scgen:
# - `cellshift run -stream` trains scgen on rows read on demand and evaluates it: the same parameters, bit for bit,
#   as the stream sampler on the in-memory dataset (the same batches from the same rows), and the same metrics;
# - 1, 2 and 3 ranks give the same loss curve (training.csv) to rounding (2 ranks with the prefetch thread, 1 and 3
#   without it: the thread changes when rows are read, not which);
# - a streamed run stopped by SIGUSR1 (prefetching) and resumed (not) ends bit-identical to an uninterrupted one;
# - -memory_limit above the shard reads it in memory (bit-identical to no option), below one block is an error;
# - a file truncated while a streamed run trains: one error naming the file, non-zero exit, no hang;
# - raw counts with -normalize, dense and CSR: the streamed model is the in-memory one bit for bit.
set -euo pipefail
out=$(mktemp -d "${TMPDIR:-/tmp}/cellshift-stream-XXXXXX")
trap 'rm -rf "$out"' EXIT
cd "$CS_SOURCE_DIR"
small=(-options_file_yaml input/norman_combo.yaml -baselines control -model scgen -scgen_hidden 32 -scgen_latent 8 -scgen_batch_size 128
       -scgen_patience 100 -stream_block 700 -scgen_stream_window 2)
fail() { echo "FAIL: $*"; exit 1; }
same() { "$CS_PYTHON" "$CS_SOURCE_DIR/tests/python/same_params.py" "$1" "$2"; }
go() { # go NP NAME CMD ARGS...
  local np=$1 name=$2 cmd=$3; shift 3
  $CS_MPIEXEC -n "$np" "$CELLSHIFT" $cmd "${small[@]}" "$@" -output_dir "$out/$name" > "$out/$name.log" 2>&1 \
    || { tr '\r' '\n' < "$out/$name.log" | tail -30; fail "$name"; }
}

# 1. run -stream = the stream sampler in memory, bit for bit; metrics too
go 2 streamed run -scgen_epochs 2 -stream -stream_prefetch true
grep -q "streamed: rows read on demand" "$out/streamed.log" || fail "-stream did not stream"
go 2 inmem run -scgen_epochs 2 -scgen_sampler_type stream
same "$out/inmem/scgen/model.h5" "$out/streamed/scgen/model.h5"
cmp "$out/inmem/metrics.csv" "$out/streamed/metrics.csv" || fail "streamed metrics differ from the in-memory ones"

echo "stream: ${SECONDS}s"
# 2. the loss curve at 1, 2 and 3 ranks
for n in 1 3; do go $n curve$n train -scgen_epochs 2 -stream -stream_prefetch false; done
cp -r "$out/streamed" "$out/curve2"
"$CS_PYTHON" - "$out" <<'PY'
import sys, numpy as np
out = sys.argv[1]
c = [np.loadtxt(f"{out}/curve{n}/scgen/training.csv", delimiter=",", skiprows=1) for n in (1, 2, 3)]
for n, x in zip((2, 3), c[1:]):
    assert x.shape == c[0].shape, (n, x.shape)
    tr = np.abs(x[:, 1] - c[0][:, 1]) / np.abs(c[0][:, 1]); va = np.abs(x[:, 2] - c[0][:, 2]) / np.abs(c[0][:, 2])
    print(f"stream np{n}: training loss within {tr.max():.1e}, validation loss within {va.max():.1e} of np1")
    assert tr[0] < 1e-5 and va[0] < 1e-4 and tr.max() < 1e-3 and va.max() < 5e-3, "streamed loss curves differ across rank counts"
PY

echo "stream: ${SECONDS}s"
# 3. SIGUSR1 in the middle of a streamed epoch, then -resume
$CS_MPIEXEC -n 2 "$CELLSHIFT" train "${small[@]}" -stream -stream_prefetch true -scgen_epochs 40 -output_dir "$out/sig" > "$out/sig.log" 2>&1 &
pid=$!
for _ in $(seq 300); do grep -q "training on" "$out/sig.log" 2>/dev/null && break; sleep 0.1; done
sleep 0.3
kill -USR1 $pid
status=0; timeout 60 tail --pid=$pid -f /dev/null || true; wait $pid || status=$?
[ $status -eq 0 ] || { tr '\r' '\n' < "$out/sig.log" | tail; fail "SIGUSR1: exit status $status"; }
grep -q "stopped by a signal" "$out/sig.log" || { tr '\r' '\n' < "$out/sig.log" | tail; fail "SIGUSR1 did not stop streamed training"; }
go 2 sig train -stream -stream_prefetch false -scgen_epochs 40 -resume "$out/sig"
go 2 long train -stream -scgen_epochs 40
same "$out/long/scgen/model.h5" "$out/sig/scgen/model.h5"

echo "stream: ${SECONDS}s"
# 4. -memory_limit: above the shard = in memory, bit for bit; below one block = an error on every rank
go 2 fits train -scgen_epochs 1 -memory_limit 2G
go 2 nolimit train -scgen_epochs 1
! grep -q "streamed:" "$out/fits.log" || fail "-memory_limit 2G streamed a small shard"
same "$out/nolimit/scgen/model.h5" "$out/fits/scgen/model.h5"
if $CS_MPIEXEC -n 2 "$CELLSHIFT" train "${small[@]}" -scgen_epochs 1 -memory_limit 10K -output_dir "$out/tiny" > "$out/tiny.log" 2>&1; then
  fail "-memory_limit 10K was accepted"
fi
grep -q "memory_limit 10 KiB is smaller than one streamed block" "$out/tiny.log" || { cat "$out/tiny.log"; fail "no clear -memory_limit error"; }
if $CS_MPIEXEC -n 2 "$CELLSHIFT" train "${small[@]}" -scgen_epochs 1 -memory_limit 2X -output_dir "$out/bad" > "$out/bad.log" 2>&1; then
  fail "-memory_limit 2X was accepted"
fi
grep -q "memory_limit must be a positive number of bytes" "$out/bad.log" || { cat "$out/bad.log"; fail "no clear -memory_limit parse error"; }

echo "stream: ${SECONDS}s"
# 5. the file truncated while training: one error, no hang
cp input/perturbench_devel/devel.h5ad "$out/data.h5ad"
args=("${small[@]}")
for i in "${!args[@]}"; do [ "${args[$i]}" = input/norman_combo.yaml ] && args[$i]=$out/combo.yaml; done
sed "s|^data: .*|data: $out/data.h5ad|" input/norman_combo.yaml > "$out/combo.yaml"
$CS_MPIEXEC -n 2 "$CELLSHIFT" train "${args[@]}" -stream -stream_prefetch true -scgen_epochs 500 -output_dir "$out/cut" > "$out/cut.log" 2>&1 &
pid=$!
for _ in $(seq 300); do grep -q "training on" "$out/cut.log" 2>/dev/null && break; sleep 0.1; done
sleep 0.5
truncate -s 300K "$out/data.h5ad"
status=0; timeout 60 tail --pid=$pid -f /dev/null || { kill $pid; fail "a streamed run hangs on a truncated file"; }
wait $pid || status=$?
[ $status -ne 0 ] || fail "a streamed run on a truncated file exited 0"
grep -q "reading streamed rows of $out/data.h5ad failed" "$out/cut.log" || { tr '\r' '\n' < "$out/cut.log" | tail; fail "no clear error for the truncated file"; }
echo "stream: ${SECONDS}s"
# 6. raw counts, -normalize on the rows as they are read (dense and CSR X, prefetched, validation rows by the list
#    read): the in-memory model bit for bit
for fmt in dense csr; do
  $CS_MPIEXEC -n 2 "$CELLSHIFT" simulate -cells 1500 -genes 120 -sim_format $fmt -output "$out/counts_$fmt.h5ad" > "$out/sim_$fmt.log" 2>&1 \
    || { cat "$out/sim_$fmt.log"; fail "simulate $fmt"; }
  raw=(-data "$out/counts_$fmt.h5ad" -normalize -perturbation_key condition -control_value control -context_key cell_type -split random
       -test_fraction 0.2 -baselines control -model scgen -scgen_hidden 32 -scgen_latent 8 -scgen_batch_size 128 -scgen_epochs 2
       -scgen_valid_cells 0.2 -stream_block 300 -scgen_stream_window 2)
  for m in stream memory; do
    opt=(-stream -stream_prefetch true); [ $m = memory ] && opt=(-scgen_sampler_type stream)
    $CS_MPIEXEC -n 2 "$CELLSHIFT" train "${raw[@]}" "${opt[@]}" -output_dir "$out/raw_${m}_$fmt" > "$out/raw_${m}_$fmt.log" 2>&1 \
      || { tr '\r' '\n' < "$out/raw_${m}_$fmt.log" | tail -20; fail "raw counts, $m, $fmt"; }
  done
  grep -q "streamed: rows read on demand" "$out/raw_stream_$fmt.log" || fail "-stream did not stream the $fmt counts"
  same "$out/raw_memory_$fmt/scgen/model.h5" "$out/raw_stream_$fmt/scgen/model.h5"
done
echo "stream: all checks passed"
