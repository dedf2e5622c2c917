#!/usr/bin/env bash
# The scGen VAE training step of cellshift against PyTorch, in one run on one machine (ratios in one run are what
# counts on shared machines; absolute times drift).
#
#   bench/train_step.sh [BUILD_DIR]          (default BUILD_DIR: <source>/build, built in Release)
#
# Runs, for global batches 512 and 128 at 2,000 genes, on the same random data shape as the PyTorch reference:
#   - cellshift (bench_train_step): 1 rank x 2 threads, 2 ranks x 1 thread (batch split over the ranks; blocking,
#     bucketed and sharded gradient reduction), and 1 rank x 1 thread at half the batch (the weak-scaling reference);
#   - PyTorch: torch_scgen_ref.py GENES BATCH STEPS THREADS with 1 and 2 threads;
#   - peak.c: OpenBLAS sgemm GFLOP/s with 1 and 2 threads;
#   - the sparse variant (CSR minibatch with 10% non-zeros, sparse first layer) of cellshift, reported apart.
# Every configuration is run ROUNDS times (default 3), interleaved, and the best is kept; the C program itself
# reports the best of its -reps repetitions.
# Environment: ROUNDS, CS_BENCH_REF (folder of torch_scgen_ref.py and peak.c, default ../shared/bench),
# PYTHON (default /usr/bin/python3), MPIEXEC (default mpiexec).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build}
exe=$build/bench/bench_train_step
ref=${CS_BENCH_REF:-$top/../shared/bench}
py=${PYTHON:-/usr/bin/python3}
mpiexec=${MPIEXEC:-mpiexec}
rounds=${ROUNDS:-3}
genes=2000
[ -x "$exe" ] || { echo "train_step.sh: $exe not found (build first: cmake --build $build)" >&2; exit 1; }
[ -f "$ref/torch_scgen_ref.py" ] && [ -f "$ref/peak.c" ] || { echo "train_step.sh: no torch_scgen_ref.py/peak.c in $ref" >&2; exit 1; }
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cc -O2 "$ref/peak.c" -lopenblas -o "$tmp/peak"

# best VALUE KEY: keep the larger of the stored and new value under KEY.
declare -A best line
keep() { # keep KEY VALUE [LINE]
  local k=$1 v=$2
  if [ -z "${best[$k]:-}" ] || awk -v a="$v" -v b="${best[$k]}" 'BEGIN{exit !(a>b)}'; then best[$k]=$v; line[$k]=${3:-}; fi
}
field() { awk -v k="$1" '{for(i=1;i<NF;i++) if($i==k){print $(i+1); exit}}'; }

# run_c KEY RANKS THREADS BATCH DENSITY [extra options]
run_c() {
  local key=$1 np=$2 nt=$3 b=$4 d=$5; shift 5
  local bind=none out
  [ "$np" -gt 1 ] && bind=core
  out=$(OPENBLAS_NUM_THREADS=$nt "$mpiexec" -n "$np" --bind-to $bind "$exe" -genes $genes -batch "$b" -density "$d" \
        -blas_threads "$nt" -steps 10 -reps 6 "$@" | grep '^cellshift_step')
  keep "$key" "$(echo "$out" | field cells_per_s)" "$out"
}
run_torch() { # run_torch KEY BATCH THREADS
  local steps=$(( $2 >= 512 ? 20 : 60 )) out
  out=$(OMP_NUM_THREADS=$3 "$py" "$ref/torch_scgen_ref.py" $genes "$2" $steps "$3")
  keep "$1" "$(echo "$out" | field cells_per_s)"
}

for r in $(seq "$rounds"); do
  for t in 1 2; do keep "peak$t" "$(OPENBLAS_NUM_THREADS=$t "$tmp/peak" | awk '/^sgemm/{print $3}')"; done
  for b in 512 128; do
    run_c "c12_$b" 1 2 $b 1
    run_c "c21_$b" 2 1 $b 1
    run_c "c21k_$b" 2 1 $b 1 -nn_grad_reduce bucketed
    run_c "c21s_$b" 2 1 $b 1 -nn_grad_reduce sharded
    run_c "c11_$b" 1 1 $((b / 2)) 1
    run_torch "t1_$b" $b 1
    run_torch "t2_$b" $b 2
    run_c "s12_$b" 1 2 $b 0.1
    run_c "s21_$b" 2 1 $b 0.1
  done
done

# Matmul FLOPs per cell of this network (forward, weight gradients, input gradients but for the first layer).
fpc=$(echo "${line[c12_512]}" | field flops_per_cell)
pk2=${best[peak2]}
echo "OpenBLAS: $(echo "${line[c12_512]}" | sed 's/.*blas //')"
printf 'sgemm peak (peak.c, n=2048): %.0f GFLOP/s with 2 threads, %.0f with 1\n' "$pk2" "${best[peak1]}"
printf 'matmul work: %.2f MFLOP per cell (forward 2B sum(in*out), dW as much, dX for all but the first layer)\n' "$(awk -v f="$fpc" 'BEGIN{print f/1e6}')"
for b in 512 128; do
  echo
  echo "== ${genes} genes, global batch $b (best of $rounds rounds) =="
  printf '%-40s %10s %9s %9s %8s %9s\n' configuration cells/s step_ms GFLOP/s %peak2 reduce
  row() { # row LABEL KEY
    local l=${line[$2]:-} c=${best[$2]}
    if [ -n "$l" ]; then
      awk -v lab="$1" -v c="$c" -v f="$fpc" -v p="$pk2" -v st="$(echo "$l" | field step_ms)" -v rd="$(echo "$l" | field reduce_ms)" \
        'BEGIN{g=c*f/1e9; printf "%-40s %10.0f %9.2f %9.1f %7.1f%% %8.1f%%\n", lab, c, st, g, 100*g/p, 100*rd/st}'
    else
      awk -v lab="$1" -v c="$c" -v f="$fpc" -v p="$pk2" -v b="$b" \
        'BEGIN{g=c*f/1e9; printf "%-40s %10.0f %9.2f %9.1f %7.1f%% %9s\n", lab, c, 1e3*b/c, g, 100*g/p, "-"}'
    fi
  }
  row "cellshift 1 rank x 2 threads" "c12_$b"
  row "cellshift 2 ranks x 1 thread (blocking)" "c21_$b"
  row "cellshift 2 ranks x 1 thread (bucketed)" "c21k_$b"
  row "cellshift 2 ranks x 1 thread (sharded)" "c21s_$b"
  row "cellshift 1 rank x 1 thread, batch $((b / 2))" "c11_$b"
  row "PyTorch 1 thread" "t1_$b"
  row "PyTorch 2 threads" "t2_$b"
  row "cellshift sparse 10%, 1 rank x 2 threads" "s12_$b"
  row "cellshift sparse 10%, 2 ranks x 1 thread" "s21_$b"
  echo "(sparse rows: GFLOP/s counts the dense network's FLOPs, for comparison; reduce = share of the step in the gradient reduction)"
  awk -v a="${best[c12_$b]}" -v b2="${best[c21_$b]}" -v b3="${best[c21k_$b]}" -v b4="${best[c21s_$b]}" -v t1="${best[t1_$b]}" \
      -v t2="${best[t2_$b]}" -v h="${best[c11_$b]}" -v f="$fpc" -v p="$pk2" 'BEGIN{
    c = a; cn = "1 rank x 2 threads"; if (b2 > c) { c = b2; cn = "2 ranks x 1 thread" } if (b3 > c) { c = b3; cn = "2 ranks x 1 thread, bucketed" }
    if (b4 > c) { c = b4; cn = "2 ranks x 1 thread, sharded" }
    t = t1 > t2 ? t1 : t2; tn = t1 > t2 ? "1 thread" : "2 threads";
    printf "best cellshift (%s) / best PyTorch (%s): %.2fx   (target >= 1.5x)\n", cn, tn, c / t;
    printf "best cellshift: %.0f GFLOP/s = %.1f%% of the 2-thread sgemm peak   (target >= 75%%)\n", c * f / 1e9, 100 * c * f / 1e9 / p;
    printf "weak scaling 1 -> 2 ranks (same %d cells per rank): %.1f%% (blocking), %.1f%% (bucketed), %.1f%% (sharded)\n", 0,
           100 * b2 / (2 * h), 100 * b3 / (2 * h), 100 * b4 / (2 * h);
    printf "throughput relative to the blocking reduction at 2 ranks: bucketed %.3f, sharded %.3f\n", b3 / b2, b4 / b2 }' |
    sed "s/same 0 cells/same $((b / 2)) cells/"
done
