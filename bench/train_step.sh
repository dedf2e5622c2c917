#!/usr/bin/env bash
# The scGen VAE training step of cellshift against PyTorch, in one run on one machine (ratios in one run are what
# counts on shared machines; absolute times drift).
#
#   bench/train_step.sh [BUILD_DIR]          (default BUILD_DIR: <source>/build, built in Release)
#
# Runs, for each shape GENES:BATCH of SHAPES (default: global batches 512 and 128 at 2,000 genes, and the small-batch
# shapes users train at: 500 genes and 7,000 genes (the Kang protocol) at global batch 32), on the same random data
# shape as the PyTorch reference:
#   - cellshift (bench_train_step): 1 rank x 2 threads, 2 ranks x 1 thread (batch split over the ranks; blocking,
#     bucketed and sharded gradient reduction), and 1 rank x 1 thread at half the batch (the weak-scaling reference);
#   - PyTorch: torch_scgen_ref.py GENES BATCH STEPS THREADS with 1 and 2 threads;
#   - peak.c: OpenBLAS sgemm GFLOP/s with 1 and 2 threads;
#   - the sparse variant (CSR minibatch with 10% non-zeros, sparse first layer) of cellshift, reported apart.
# Every configuration is run ROUNDS times (default 3), interleaved, and the best is kept; the C program itself
# reports the best of its -reps repetitions.
# PyTorch is Debian's python3-torch; when it is missing the script installs it (apt-get, as jobs/setup installs the
# build's packages).
# Environment: SHAPES (e.g. "500:32 7000:32"), ROUNDS, CS_BENCH_REF (folder of torch_scgen_ref.py and peak.c, default ../shared/bench),
# PYTHON (default /usr/bin/python3), MPIEXEC (default mpiexec).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build}
exe=$build/bench/bench_train_step
# The peer references (/work/shared/bench): beside the repository (main) or two levels up (a worktree).
ref=${CS_BENCH_REF:-}
for d in "$top/../shared/bench" "$top/../../shared/bench"; do
  [ -z "$ref" ] && [ -f "$d/torch_scgen_ref.py" ] && ref=$d
done
ref=${ref:-$top/../shared/bench}
py=${PYTHON:-/usr/bin/python3}
mpiexec=${MPIEXEC:-mpiexec}
rounds=${ROUNDS:-3}
shapes=${SHAPES:-2000:512 2000:128 500:32 7000:32}
[ -x "$exe" ] || { echo "train_step.sh: $exe not found (build first: cmake --build $build)" >&2; exit 1; }
[ -f "$ref/torch_scgen_ref.py" ] && [ -f "$ref/peak.c" ] || { echo "train_step.sh: no torch_scgen_ref.py/peak.c in $ref" >&2; exit 1; }
if ! "$py" -c 'import torch' 2> /dev/null; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "train_step.sh: installing python3-torch (the PyTorch peer)"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends python3-torch > /dev/null ||
    { $sudo apt-get update -q > /dev/null && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends python3-torch > /dev/null; } ||
    { echo "train_step.sh: cannot install python3-torch (apt-get install python3-torch)" >&2; exit 1; }
fi
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

# run_c KEY RANKS THREADS BATCH DENSITY [extra options]   (genes: $genes)
run_c() {
  local key=$1 np=$2 nt=$3 b=$4 d=$5; shift 5
  local bind=none out
  [ "$np" -gt 1 ] && bind=core
  out=$(OPENBLAS_NUM_THREADS=$nt "$mpiexec" -n "$np" --bind-to $bind "$exe" -genes $genes -batch "$b" -density "$d" \
        -blas_threads "$nt" -steps 10 -reps 6 "$@" | grep '^cellshift_step')
  keep "$key" "$(echo "$out" | field cells_per_s)" "$out"
}
run_torch() { # run_torch KEY BATCH THREADS
  local steps=$(( $2 >= 512 ? 20 : $2 >= 128 ? 60 : 100 )) out
  out=$(OMP_NUM_THREADS=$3 "$py" "$ref/torch_scgen_ref.py" $genes "$2" $steps "$3")
  keep "$1" "$(echo "$out" | field cells_per_s)"
}

for r in $(seq "$rounds"); do
  for t in 1 2; do keep "peak$t" "$(OPENBLAS_NUM_THREADS=$t "$tmp/peak" | awk '/^sgemm/{print $3}')"; done
  for sh in $shapes; do
    genes=${sh%%:*} b=${sh#*:}
    run_c "c12_$sh" 1 2 $b 1
    run_c "c11f_$sh" 1 1 $b 1
    run_c "c21_$sh" 2 1 $b 1
    run_c "c21k_$sh" 2 1 $b 1 -nn_grad_reduce bucketed
    run_c "c21s_$sh" 2 1 $b 1 -nn_grad_reduce sharded
    run_c "c11_$sh" 1 1 $((b / 2)) 1
    run_torch "t1_$sh" $b 1
    run_torch "t2_$sh" $b 2
    run_c "s12_$sh" 1 2 $b 0.1
    run_c "s21_$sh" 2 1 $b 0.1
  done
done

# Matmul FLOPs per cell of this network (forward, weight gradients, input gradients but for the first layer).
pk2=${best[peak2]}
first=${shapes%% *}
echo "OpenBLAS: $(echo "${line[c12_$first]}" | sed 's/.*blas //')"
printf 'sgemm peak (peak.c, n=2048): %.0f GFLOP/s with 2 threads, %.0f with 1\n' "$pk2" "${best[peak1]}"
for sh in $shapes; do
  genes=${sh%%:*} b=${sh#*:}
  fpc=$(echo "${line[c12_$sh]}" | field flops_per_cell)
  # At a small batch the step is bound by streaming the weights and the optimiser state, not by sgemm.
  target=1.5; [ "$b" -le 64 ] && target=2
  echo
  echo "== ${genes} genes, global batch $b (best of $rounds rounds) =="
  printf 'matmul work: %.2f MFLOP per cell (forward 2B sum(in*out), dW as much, dX for all but the first layer)\n' "$(awk -v f="$fpc" 'BEGIN{print f/1e6}')"
  printf '%-40s %10s %9s %9s %8s %9s %9s %9s\n' configuration cells/s step_ms GFLOP/s %peak2 reduce fwd+bwd optim
  row() { # row LABEL KEY
    local l=${line[$2]:-} c=${best[$2]}
    if [ -n "$l" ]; then
      awk -v lab="$1" -v c="$c" -v f="$fpc" -v p="$pk2" -v st="$(echo "$l" | field step_ms)" -v rd="$(echo "$l" | field reduce_ms)" \
        -v fw="$(echo "$l" | field forward_ms)" -v bw="$(echo "$l" | field backward_ms)" -v op="$(echo "$l" | field optim_ms)" \
        'BEGIN{g=c*f/1e9; printf "%-40s %10.0f %9.2f %9.1f %7.1f%% %8.1f%% %9.2f %9.2f\n", lab, c, st, g, 100*g/p, 100*rd/st, fw+bw, op}'
    else
      awk -v lab="$1" -v c="$c" -v f="$fpc" -v p="$pk2" -v b="$b" \
        'BEGIN{g=c*f/1e9; printf "%-40s %10.0f %9.2f %9.1f %7.1f%% %9s\n", lab, c, 1e3*b/c, g, 100*g/p, "-"}'
    fi
  }
  row "cellshift 1 rank x 2 threads" "c12_$sh"
  row "cellshift 1 rank x 1 thread" "c11f_$sh"
  row "cellshift 2 ranks x 1 thread (blocking)" "c21_$sh"
  row "cellshift 2 ranks x 1 thread (bucketed)" "c21k_$sh"
  row "cellshift 2 ranks x 1 thread (sharded)" "c21s_$sh"
  row "cellshift 1 rank x 1 thread, batch $((b / 2))" "c11_$sh"
  row "PyTorch 1 thread" "t1_$sh"
  row "PyTorch 2 threads" "t2_$sh"
  row "cellshift sparse 10%, 1 rank x 2 threads" "s12_$sh"
  row "cellshift sparse 10%, 2 ranks x 1 thread" "s21_$sh"
  echo "(sparse rows: GFLOP/s counts the dense network's FLOPs, for comparison; reduce = share of the step in the gradient reduction;"
  echo " fwd+bwd and optim: ms per step in forward + backward and in the optimiser, max over ranks)"
  awk -v a="${best[c12_$sh]}" -v a1="${best[c11f_$sh]}" -v b2="${best[c21_$sh]}" -v b3="${best[c21k_$sh]}" -v b4="${best[c21s_$sh]}" \
      -v t1="${best[t1_$sh]}" -v t2="${best[t2_$sh]}" -v h="${best[c11_$sh]}" -v f="$fpc" -v p="$pk2" -v tg="$target" 'BEGIN{
    c = a; cn = "1 rank x 2 threads"; if (a1 > c) { c = a1; cn = "1 rank x 1 thread" } if (b2 > c) { c = b2; cn = "2 ranks x 1 thread" }
    if (b3 > c) { c = b3; cn = "2 ranks x 1 thread, bucketed" } if (b4 > c) { c = b4; cn = "2 ranks x 1 thread, sharded" }
    t = t1 > t2 ? t1 : t2; tn = t1 > t2 ? "1 thread" : "2 threads";
    printf "best cellshift (%s) / best PyTorch (%s): %.2fx   (target >= %sx)\n", cn, tn, c / t, tg;
    printf "best cellshift: %.0f GFLOP/s = %.1f%% of the 2-thread sgemm peak\n", c * f / 1e9, 100 * c * f / 1e9 / p;
    printf "weak scaling 1 -> 2 ranks (same %d cells per rank): %.1f%% (blocking), %.1f%% (bucketed), %.1f%% (sharded)\n", 0,
           100 * b2 / (2 * h), 100 * b3 / (2 * h), 100 * b4 / (2 * h);
    printf "throughput relative to the blocking reduction at 2 ranks: bucketed %.3f, sharded %.3f\n", b3 / b2, b4 / b2 }' |
    sed "s/same 0 cells/same $((b / 2)) cells/"
done
