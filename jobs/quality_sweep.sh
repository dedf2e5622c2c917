#!/usr/bin/env bash
# Sample efficiency of quality-weighted training on the simulator: atlases of 4 sizes with 30% low-quality cells
# (low depth, high mito, doublets; obs quality), the same network and seed; scgen (a few epochs) trained on each
# with uniform sampling, with weights from the known flag (-quality_weight obs:quality=ok: low-quality cells never
# drawn) and with weights from the QC covariates (-quality_weight qc); additive and mean as the simple models.
# Each run's held-out evaluation (test groups, rmse of the mean profile against the measured cells) goes into a
# table in the format of cellshift collect's collected.csv, fitted by cellshift scaling.
# Every (size, weighting) is trained with each of SEEDS (-model_seed: initialisation and batch order), so that the
# bootstrap of cellshift scaling, which resamples rows, has more than one row per size. A finished run (its
# metrics.csv present) is not run again.
# Usage: jobs/quality_sweep.sh [OUTDIR]   (env: CELLSHIFT, MPIEXEC ("mpiexec -n 2"), SIZES, SEEDS, EPOCHS)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
CS=${CELLSHIFT:-$top/build/cellshift}
MPI=${MPIEXEC:-}
PY=${CS_PYTHON:-/usr/bin/python3}
out=${1:-quality_sweep}
SIZES=${SIZES:-"1500 3000 6000 12000"}
SEEDS=${SEEDS:-"0 1"}
EPOCHS=${EPOCHS:-10}
mkdir -p "$out"
table="$out/collected.csv"
echo "run,status,cells,quality_weight,model_seed,model,rmse,pearson_delta,energy_distance,n_train_cells" > "$table.tmp"
for seed in $SEEDS; do
for n in $SIZES; do
  [ -f "$out/sim$n.h5ad" ] || $MPI "$CS" simulate -cells "$n" -genes 200 -sim_low_quality 0.3 -sim_seed 11 -output "$out/sim$n.h5ad" > "$out/sim$n.log" 2>&1
  for qw in none obs:quality=ok qc; do
    tag=$(echo "$qw" | tr -c 'a-z0-9\n' '_')
    dir="$out/run_${n}_${tag}"
    [ "$seed" = 0 ] || dir="$out/run_${n}_${tag}_seed$seed"
    status=ok
    [ -f "$dir/metrics.csv" ] || $MPI "$CS" run -data "$out/sim$n.h5ad" -normalize -perturbation_key condition -context_key cell_type -split_seed 3 \
      -model scgen -baselines additive,mean -scgen_epochs "$EPOCHS" -scgen_patience 1000 -scgen_hidden 128 -scgen_latent 20 \
      -scgen_batch_size 64 -quality_weight "$qw" -model_seed "$seed" -output_dir "$dir" -overwrite -progress lines > "$dir.log" 2>&1 || status=failed
    "$PY" - "$dir" "$n" "$qw" "$status" "$seed" >> "$table.tmp" <<'PY'
import sys, csv, json
d, n, qw, status, seed = sys.argv[1:6]
if status != "ok":
    print(f"{d},{status},{n},{qw},{seed},scgen,,,,"); sys.exit()
split = json.load(open(f"{d}/split.json"))
ntrain = sum(g["n_cells"] for g in split["groups"] if g["role"] == "train")
rows = list(csv.DictReader(open(f"{d}/metrics.csv")))
for m in ("scgen", "additive", "mean"):
    r = [q for q in rows if q["model"] == m]
    mean = lambda k: sum(float(q[k]) for q in r) / len(r)
    # the baselines do not sample minibatches: their rows are the same in every arm, keep them once (uniform)
    name = m if m != "scgen" else f"scgen_{'uniform' if qw == 'none' else qw.split('=')[0].replace(':', '_')}"
    if m != "scgen" and qw != "none":
        continue
    print(f"{d},ok,{n},{qw},{seed},{name},{mean('rmse'):.6g},{mean('pearson_delta'):.6g},{mean('energy_distance'):.6g},{ntrain}")
PY
  done
done
done
mv "$table.tmp" "$table"
$MPI "$CS" scaling -table "$table" -x n_train_cells -y rmse,energy_distance -by model -simple additive,mean -output_dir "$out"
cat "$out/scaling.md"
