#!/usr/bin/env bash
# jobs/run.sbatch under a real single-node Slurm (Debian slurmctld + slurmd + munge, configured in a temporary
# folder, its daemons stopped on exit whatever happens):
# - `srun --mpi=pmix` is available and the template runs cellshift on 2 tasks;
# - a job that receives SIGUSR1 from Slurm mid-training checkpoints and ends COMPLETED (exit 0), without model.h5;
# - resubmitted with -resume in its folder, it ends bit-identical (training.csv and every parameter of model.h5) to
#   an uninterrupted job with the same options;
# - a sweep submitted with `cellshift sweep -slurm` runs as a 3-task array (jobs/sweep.sbatch, each run through
#   srun) and its collection job, submitted with --dependency=afterany on the array, writes collected.csv.
# The signal is sent with `scancel --signal=USR1` (the path Slurm's --signal=USR1@T takes: slurmctld → slurmstepd →
# every task of the step) once training runs: slurmctld checks time limits only every 30 s and --time counts in
# minutes, so a time-limit signal would land anywhere in a 30 s window (before the handler, or after the last
# epoch on a fast machine) and make the test slow and flaky.
# Needs root (slurmd); installs the Debian packages when run as root and they are missing; exit 77 (skip) otherwise.
set -euo pipefail
cd "$CS_SOURCE_DIR"
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
[ "$(id -u)" -eq 0 ] || skip "a single-node Slurm needs root (slurmd); run as root to test jobs/run.sbatch"
pkgs=(slurm-wlm slurmctld slurmd munge)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
    > /dev/null 2>&1 || skip "could not install ${missing[*]} (apt-get failed): the Slurm test needs them"
fi
for b in munged slurmctld slurmd sbatch srun scancel scontrol; do command -v $b > /dev/null || skip "no $b"; done

d=$(mktemp -d "${TMPDIR:-/tmp}/cellshift-slurm-XXXXXX")
export SLURM_CONF=$d/slurm.conf
stop() { # every process started with this SLURM_CONF: the daemons, slurmscriptd, slurmstepd and the job's tasks
  local pids p i
  scancel --full --quiet --user=root 2> /dev/null || true
  for f in slurmd slurmctld munged; do [ -s "$d/$f.pid" ] && kill "$(cat "$d/$f.pid")" 2> /dev/null || true; done
  for i in 1 2 3 4 5 6 7 8 9 10; do
    pids=()
    for p in /proc/[0-9]*; do
      p=${p#/proc/}
      [ "$p" != $$ ] && grep -qsz "^SLURM_CONF=$d/slurm.conf\$" "/proc/$p/environ" && pids+=("$p")
    done
    [ ${#pids[@]} -eq 0 ] && break
    if [ $i -lt 10 ]; then kill "${pids[@]}" 2> /dev/null || true; else kill -9 "${pids[@]}" 2> /dev/null || true; fi
    sleep 0.5
  done
  rm -rf "$d"
}
trap stop EXIT
trap 'exit 1' INT TERM HUP # bash runs the EXIT trap on these only when they are trapped

# munge with its own key and socket, Slurm on free ports, state, spool and logs in $d
dd if=/dev/urandom of="$d/munge.key" bs=1024 count=1 status=none
chmod 400 "$d/munge.key"
munged --force --key-file="$d/munge.key" --socket="$d/munge.sock" --pid-file="$d/munged.pid" \
  --log-file="$d/munged.log" --seed-file="$d/munge.seed" || fail "munged did not start"
read -r p1 p2 < <("$CS_PYTHON" -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("", 0))
print(*[x.getsockname()[1] for x in s])')
host=$(hostname -s)
mkdir -p "$d/state" "$d/spool"
cat > "$SLURM_CONF" <<EOF
ClusterName=cellshift
SlurmctldHost=$host
SlurmctldPort=$p1
SlurmdPort=$p2
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$d/munge.sock
CredType=cred/munge
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd.pid
SlurmctldLogFile=$d/slurmctld.log
SlurmdLogFile=$d/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
SchedulerType=sched/builtin
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
NodeName=$host CPUs=2 State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
logs() { for f in "$d"/*.log; do echo "== $f"; tr '\r' '\n' < "$f" | tail -20; done; }
slurmctld -i || { logs; fail "slurmctld did not start"; }
slurmd -N "$host" || { logs; fail "slurmd did not start"; }
for _ in $(seq 60); do sinfo -h -o %t 2> /dev/null | grep -q idle && break; sleep 0.5; done
sinfo -h -o %t | grep -q idle || { logs; fail "the node did not become idle"; }
srun --mpi=list 2>&1 | grep -q pmix || fail "no pmix MPI plugin in srun --mpi=list: $(srun --mpi=list 2>&1)"

# Open MPI refuses root without these (the test's environment only; sbatch exports it to the job)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
epochs=40
scgen() { opts=(-model scgen -baselines control -scgen_hidden 64 -scgen_latent 8 -scgen_batch_size 64 -scgen_epochs $epochs
                -scgen_patience 100000 -progress lines -progress_interval 1); }
scgen
submit() { # submit NAME SBATCH-OPTIONS... -- CELLSHIFT-OPTIONS...: prints the job id
  local name=$1; shift
  local sb=()
  while [ "$1" != -- ]; do sb+=("$1"); shift; done
  shift
  CS_RUN_DIR="$d/$name" CELLSHIFT="$CELLSHIFT" sbatch --parsable --time=5 --signal=USR1@60 --output="$d/$name.%j.out" "${sb[@]}" \
    jobs/run.sbatch input/gbm_holdout.yaml "${opts[@]}" "$@"
}
state() { scontrol -o show job "$1" | sed -n 's/.*JobState=\([A-Z_]*\).*ExitCode=\([0-9:]*\).*/\1 \2/p'; }
finish() { # finish ID: wait (short sleeps, so that a signal to the test stops the daemons at once) until job ID
  # has ended, at most 150 s; succeeds when it is COMPLETED with exit code 0
  local i
  for i in $(seq 750); do case $(state "$1") in COMPLETED*|FAILED*|CANCELLED*|TIMEOUT*|NODE_FAIL*|OUT_OF_MEMORY*) break;; esac; sleep 0.2; done
  [ "$(state "$1")" = "COMPLETED 0:0" ]
}
same() { # same RUN_A RUN_B: bit-identical training.csv and model parameters
  cmp "$1/scgen/training.csv" "$2/scgen/training.csv" || fail "training.csv of $2 differs from $1"
  "$CS_PYTHON" "$CS_SOURCE_DIR/tests/python/same_params.py" "$1/scgen/model.h5" "$2/scgen/model.h5"
}

# 1. the uninterrupted job. The signal below must land in training (before it, SIGUSR1 kills the ranks; after it,
# there is nothing to stop), about 1 s after it starts: on an idle machine 40 epochs take 0.5 s, on a busy one 10 s,
# so the epochs are raised until this job trains for 2 s or more (the signal lands about 0.5 s in).
for attempt in 1 2 3; do
  rm -rf "$d/ref"
  id=$(submit ref --)
  finish "$id" || { logs; cat "$d"/ref.*.out; fail "the uninterrupted job: $(state "$id")"; }
  took=$(sed -n 's/.*scgen: fitted and predicted in \([0-9.]*\) s.*/\1/p' "$d/ref.$id.out")
  more=$("$CS_PYTHON" -c "import math, sys; t = float(sys.argv[1]); print(0 if t >= 2 else math.ceil($epochs * 3 / max(t, 0.05)))" "${took:-0}")
  [ "$more" -eq 0 ] && break
  [ "$more" -gt 4000 ] && more=4000
  echo "training took ${took} s for $epochs epochs: again with $more"
  epochs=$more; scgen
done
[ -f "$d/ref/scgen/model.h5" ] || { cat "$d"/ref.*.out; fail "no model.h5 from the uninterrupted job"; }

# 2. the same job, signalled mid-training through Slurm
id=$(submit part --)
for _ in $(seq 600); do grep -qs "scgen: training on" "$d/part.$id.out" && break; sleep 0.1; done
grep -qs "scgen: training on" "$d/part.$id.out" || { logs; cat "$d/part.$id.out"; fail "job $id did not start training"; }
sleep 0.5 # the ranks install their handler right after printing this
scancel --signal=USR1 "$id"
finish "$id" || { tr '\r' '\n' < "$d/part.$id.out"; fail "signalled job $id: $(state "$id"), expected COMPLETED 0:0"; }
grep -q "stopped by a signal" "$d/part.$id.out" || { tr '\r' '\n' < "$d/part.$id.out"; fail "SIGUSR1 did not stop training"; }
[ -f "$d/part/scgen/checkpoint.h5" ] || fail "the signalled job wrote no checkpoint"
[ ! -e "$d/part/scgen/model.h5" ] || fail "the signalled job wrote model.h5"

# 3. resubmitted with -resume in its folder
id=$(submit part -- -resume "$d/part")
finish "$id" || { cat "$d"/part.*.out; fail "the resumed job: $(state "$id")"; }
[ ! -e "$d/part/scgen/checkpoint.h5" ] || fail "checkpoint.h5 left after the resumed fit completed"
same "$d/ref" "$d/part"

# 4. a sweep as a Slurm array (one configuration per task) and the collection job after it (--dependency=afterany)
cat > "$d/sweep.yaml" <<YAML
options:
  options_file_yaml: input/norman_combo.yaml
  model: linear
  baselines: control
grid:
  data_fraction: [0.2, 0.5, 1]
YAML
sub=$(SBATCH_TIMELIMIT=5 "$CELLSHIFT" sweep -spec "$d/sweep.yaml" -output_dir "$d/sweep" -slurm -sweep_sbatch jobs/sweep.sbatch 2>&1) ||
  { echo "$sub"; fail "cellshift sweep -slurm"; }
aid=$(echo "$sub" | sed -n 's/.*array job \([0-9]*\) .*/\1/p')
cid=$(echo "$sub" | sed -n 's/.*collection job \([0-9]*\) .*/\1/p')
[ -n "$aid" ] && [ -n "$cid" ] || { echo "$sub"; fail "cellshift sweep -slurm did not report the two jobs"; }
scontrol -o show job "$cid" | grep -q "Dependency=afterany:${aid}" || finish "$cid" ||
  { scontrol -o show job "$cid"; fail "the collection job does not depend on array job $aid"; }
finish "$cid" || { echo "$sub"; tail -n 5 "$d"/sweep/slurm/* "$d"/sweep/runs/*/log.txt; fail "the collection job: $(state "$cid")"; }
"$CS_PYTHON" - "$d/sweep" <<'PY' || { tail -n 5 "$d"/sweep/slurm/*; fail "the array's collected.csv"; }
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1] + "/collected.csv")))
assert sorted({(r["run"], r["status"]) for r in rows}) == [("0000", "ok"), ("0001", "ok"), ("0002", "ok")], rows
n = [int(r["n_train_cells"]) for r in rows if r["model"] == "linear"]
assert len(n) == 3 and n[0] < n[1] < n[2], n
PY
echo "slurm tests passed"
