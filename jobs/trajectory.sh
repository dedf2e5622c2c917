#!/usr/bin/env bash
# The held-out time point task (cellshift trajectory -holdout_time) on the Schiebinger 2019 reprogramming subset
# (days 10, 10.5, 11: 10.5 held out) and the TIGON EMT course (every interior time point held out in turn).
# Usage: jobs/trajectory.sh BUILD_DIR OUT_DIR [NRANKS]
set -euo pipefail
B=${1:?build dir}; out=${2:?output dir}; np=${3:-2}
top=$(cd "$(dirname "$0")/.." && pwd)
D=${CS_SHARED_DATA:-$top/../shared/data}
MPI=${CS_MPIEXEC:-mpiexec --oversubscribe}
mkdir -p "$out"
/usr/bin/python3 "$(dirname "$0")/trajectory_emt_h5ad.py" "$D/tigon_trajectories/EMT.npy" "$out/emt.h5ad"
mkdir -p "$out/schiebinger_10.5"
$MPI -n "$np" "$B/cellshift" trajectory -data "$D/schiebinger2019_reprogramming/moscot_temporal_tests.h5ad" -time_key day \
  -holdout_time 10.5 -trajectory_pca 30 -method flow -output_dir "$out/schiebinger_10.5"
for t in 0.3333333333333333 1 3; do
  mkdir -p "$out/emt_$t"
  $MPI -n "$np" "$B/cellshift" trajectory -data "$out/emt.h5ad" -time_key day -holdout_time "$t" -trajectory_pca 3 -method flow \
    -output_dir "$out/emt_$t"
done
