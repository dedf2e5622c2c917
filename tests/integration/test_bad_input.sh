#!/bin/bash
# Bad input, end to end, at 1, 2 and 3 ranks.
#
# 1. The catalogue tests/bad_input_cases.txt (its header says what each kind of case must do): malformed files,
#    unknown options, option values out of range, options files that cannot be read, data that are suspicious,
#    splits without a test set, run folders that are locked, hold an earlier run or are not folders. Every case runs
#    at each of its rank counts; the cases run CS_BADINPUT_JOBS at a time (default 4): they are short and mostly wait.
# 2. Files that are unusual but valid (unsorted indices, int64/float64, old h5sparse attributes, CSC, dense, gzip)
#    must be accepted and give the numbers of the canonical CSR file: the same inspect summary, and the same
#    predictions and metrics from `run`.
set -u
: "${CELLSHIFT:?}" "${CS_MPIEXEC:?}" "${CS_SOURCE_DIR:?}"
PY=${CS_PYTHON:-/usr/bin/python3}
JOBS=${CS_BADINPUT_JOBS:-4}
CATALOGUE=${CS_BADINPUT_CATALOGUE:-$CS_SOURCE_DIR/tests/bad_input_cases.txt} # another file: a subset while developing
work=$(mktemp -d /tmp/cellshift-badinput-XXXXXX)
DATA=$work/data
GOOD=$DATA/good.h5ad
RUN="-context_key cell_type -model additive"
t0=$(date +%s)

"$PY" "$CS_SOURCE_DIR/tests/python/make_bad_h5ad.py" "$DATA" > /dev/null || { echo "cannot make the test files"; exit 1; }

# --- set-ups named by the catalogue: setup_NAME CASE OUT (and post_NAME CASE OUT, checked after the run) ----------
# good.h5ad's groups: conditions x cell types.
split_json() { # split_json ROLE_OF_A@T1 [EXTRA_GROUP_JSON]: every group train, A@T1 as given
  local groups="" c t role
  for t in T1 T2; do
    for c in control A B C A+B B+C; do
      role=train
      [ "$c@$t" = A@T1 ] && role=$1
      groups+="${groups:+,}{\"condition\": \"$c\", \"dose\": \"\", \"context\": \"$t\", \"role\": \"$role\"}"
    done
  done
  echo "{\"cellshift_split\": 1, \"groups\": [$groups${2:+,$2}]}"
}
setup_split_no_test() { split_json valid > "$1/split.json"; }
setup_split_run() { mkdir -p "$2" && split_json test > "$2/split.json"; }
setup_split_twice() { split_json train '{"condition": "A", "dose": "", "context": "T1", "role": "test"}' > "$1/split.json"; }
setup_yaml_typo() { printf 'data: %s\ncontext_key: cell_type\nmodel: additive\nspilt: combo\n' "$GOOD" > "$1/typo.yaml"; }
setup_options_typo() { printf -- '-data %s\n-context_key cell_type\n-model additive\n-test_fraktion 0.3\n' "$GOOD" > "$1/typo.txt"; }
setup_yaml_syntax() { printf 'data: %s\nsplit: [combo, random\n  model: additive\n' "$GOOD" > "$1/bad.yaml"; }
setup_resume_folder() { mkdir -p "$1/prev/scgen" && echo '{}' > "$1/prev/split.json"; }
setup_checkpoint_in_out() { mkdir -p "$2/scgen" && echo '{}' > "$2/split.json" && echo x > "$2/scgen/checkpoint.h5"; }
setup_earlier_run() { # an earlier run's files, and two files of the user's that -overwrite must keep
  local f # (not run_case's f, its failures file)
  mkdir -p "$2/linear" "$2/notes"
  for f in options.txt split.json report.md shift_linear.png linear/training.csv; do echo old > "$2/$f"; done
  echo mine > "$2/notes/plan.txt"
  echo mine > "$2/linear/my_notes.txt"
}
post_earlier_run() { grep -qx old "$2/split.json" && [ -f "$2/linear/training.csv" ] || echo "a refused run changed the earlier run's files"; }
setup_overwrite() { setup_earlier_run "$@"; }
post_overwrite() {
  [ -f "$2/notes/plan.txt" ] && [ -f "$2/linear/my_notes.txt" ] || echo "-overwrite removed a file that cellshift did not write"
  [ ! -e "$2/linear/training.csv" ] && [ ! -e "$2/shift_linear.png" ] || echo "-overwrite left the earlier run's linear/training.csv or shift_linear.png"
  ! grep -qx old "$2/split.json" || echo "split.json is the earlier run's"
}
setup_temporary_files() { mkdir -p "$2/additive" && touch "$2/split.json.tmp.4242" "$2/metrics.csv.tmp.77" "$2/additive/model.h5.tmp.4242" "$2/keep.tmp.x"; }
post_temporary_files() { [ -f "$2/keep.tmp.x" ] || echo "a file that is not a cellshift temporary file was removed"; }
setup_hold_lock() { # a process of another run holds the folder's lock
  mkdir -p "$2"
  "$PY" - "$2/.cellshift.lock" <<'EOF' &
import fcntl, os, socket, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.ftruncate(fd, 0)
os.write(fd, f"pid {os.getpid()} host {socket.gethostname()}\n".encode())
time.sleep(90)
EOF
  echo $! > "$1/holder.pid"
  for _ in $(seq 100); do [ -s "$2/.cellshift.lock" ] && break; sleep 0.1; done
}
post_hold_lock() { kill "$(cat "$1/holder.pid")" 2> /dev/null; }

# --- one case at one rank count: failures are written to CASE/failures ---------------------------------------------
run_case() { # run_case NAME NP SETUP EXPECT PATTERN COMMAND
  local name=$1 np=$2 setup=$3 expect=$4 pattern=$5 command=$6
  local CASE=$work/case/$name.np$np
  local OUT=$CASE/out f=$work/case/$name.np$np/failures rc lines line left existed=0
  mkdir -p "$CASE"
  : > "$f"
  [ "$setup" = - ] || "setup_$setup" "$CASE" "$OUT"
  [ ! -e "$OUT" ] || existed=1
  eval "set -- $command"
  timeout 60 $CS_MPIEXEC -n "$np" "$CELLSHIFT" "$@" < /dev/null > "$CASE/stdout" 2> "$CASE/stderr"
  rc=$?
  {
    if [ $rc -eq 124 ]; then
      echo "still running after 60 s"
    elif [ "$expect" = error ] || [ "$expect" = error0 ]; then
      [ $rc -ne 0 ] || echo "exit status 0, expected an error"
      lines=$(grep -c '^cellshift: error:' "$CASE/stderr")
      [ "$lines" -eq 1 ] || echo "$lines 'cellshift: error:' lines on stderr, expected 1: $(head -c 600 "$CASE/stderr")"
      line=$(grep -m1 '^cellshift: error:' "$CASE/stderr")
      echo "$line" | grep -qiE -- "$pattern" || echo "error line does not match /$pattern/: $line"
      if [ -d "$OUT" ]; then
        left=$(find "$OUT" \( -name predictions.h5ad -o -name metrics.json -o -name model.h5 -o -name '*.tmp.[0-9]*' \) | head -3)
        [ -z "$left" ] || echo "the failed run left $left"
        [ "$expect" = error ] || [ $existed -eq 1 ] || echo "the run made its folder before it failed: $(ls -A "$OUT" | head -5)"
      fi
    else
      [ $rc -eq 0 ] || echo "exit status $rc: $(grep -m1 '^cellshift: error:' "$CASE/stderr")"
      ! grep -q '^cellshift: error:' "$CASE/stderr" || echo "an error line: $(grep -m1 '^cellshift: error:' "$CASE/stderr")"
      if [ "$expect" = warn ]; then
        grep '^cellshift: warning:' "$CASE/stderr" | grep -qiE -- "$pattern" ||
          echo "no warning matches /$pattern/: $(grep '^cellshift: warning:' "$CASE/stderr" | head -c 600)"
      else
        cat "$CASE/stdout" "$CASE/stderr" | grep -qiE -- "$pattern" || echo "the output does not match /$pattern/: $(tail -c 600 "$CASE/stdout")"
        left=$([ -d "$OUT" ] && find "$OUT" -name '*.tmp.[0-9]*' | head -3)
        [ -z "$left" ] || echo "temporary files left: $left"
      fi
    fi
    [ "$setup" = - ] || ! declare -F "post_$setup" > /dev/null || "post_$setup" "$CASE" "$OUT"
  } >> "$f"
}

# Run a command in the background, at most JOBS at a time.
spawn() {
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
  "$@" < /dev/null &
}

# --- 1. the catalogue ----------------------------------------------------------------------------------------------
ncases=0
nruns=0
while IFS= read -r line <&3; do
  case $line in '' | '#'*) continue ;; esac
  # fields are separated by " | " (a pattern may hold '|' without spaces around it)
  field=()
  for _ in 1 2 3 4 5; do
    field+=("${line%% | *}")
    line=${line#* | }
  done
  field+=("$line")
  name=$(echo ${field[0]}) ranks=$(echo ${field[1]}) setup=$(echo ${field[2]}) expect=$(echo ${field[3]})
  pattern=$(echo "${field[4]}" | sed 's/^ *//; s/ *$//') command=$(echo "${field[5]}" | sed 's/^ *//; s/ *$//')
  ncases=$((ncases + 1))
  for np in $ranks; do
    spawn run_case "$name" "$np" "$setup" "$expect" "$pattern" "$command"
    nruns=$((nruns + 1))
  done
done 3< "$CATALOGUE"

# --- 2. valid variants: accepted, same numbers as the canonical CSR file --------------------------------------------
# The obs part of an inspect report (categories and counts) and its "checked" line.
summary() { sed -n '/^checked on/,/^var:/p' "$1" | sed 's/^checked on [0-9]* ranks\{0,1\}: //'; }
mkdir -p "$work/log" "$work/variant"
variant() { # variant NAME NP: inspect and run, compared with good.h5ad at 1 rank
  local name=$1 np=$2 f=$DATA/$1.h5ad o=$work/log/inspect-$1.np$2.out out=$work/out/$1.np$2 r=$work/variant/$1.np$2
  {
    if timeout 60 $CS_MPIEXEC -n "$np" "$CELLSHIFT" inspect "$f" > "$o" 2>&1; then
      summary "$o" | sed 's/ (rows rebuilt from the file.s layout)//' | diff -q - "$work/log/good.summary" > /dev/null ||
        echo "inspect $name (np $np) differs from good.h5ad: $(summary "$o" | diff - "$work/log/good.summary" | head -5)"
    else
      echo "inspect $name (np $np) failed: $(grep '^cellshift' "$o")"
    fi
    if timeout 60 $CS_MPIEXEC -n "$np" "$CELLSHIFT" run -data "$f" -output_dir "$out" $RUN -test_conditions A+B \
      > "$work/log/run-$name.np$np.out" 2>&1; then
      "$PY" - "$work/out/ref" "$out" <<'EOF' || echo "run on $name (np $np): results differ from good.h5ad at 1 rank"
import json, sys, pathlib, numpy as np, anndata as ad
ref, out = map(pathlib.Path, sys.argv[1:])
preds = sorted(p.relative_to(ref) for p in ref.rglob("predictions.h5ad"))
assert preds, "the reference run wrote no predictions"
for p in preds:
    a, b = ad.read_h5ad(ref / p), ad.read_h5ad(out / p)
    assert a.shape == b.shape and (a.obs.astype(str).values == b.obs.astype(str).values).all(), f"{p}: obs differ"
    assert np.allclose(a.X, b.X, rtol=1e-5, atol=1e-6), f"{p}: X differs by {np.abs(a.X - b.X).max()}"
def leaves(x, path=""):
    if isinstance(x, dict):
        for k, v in x.items(): yield from leaves(v, f"{path}/{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x): yield from leaves(v, f"{path}[{i}]")
    else: yield path, x
for m in sorted(p.relative_to(ref) for p in ref.rglob("metrics.json")):
    A, B = dict(leaves(json.load(open(ref / m)))), dict(leaves(json.load(open(out / m))))
    assert A.keys() == B.keys(), f"{m}: different entries"
    for k, v in A.items():
        if isinstance(v, float) and not (np.isnan(v) and np.isnan(B[k])):
            assert np.isclose(v, B[k], rtol=1e-5, atol=1e-7), f"{m}{k}: {v} vs {B[k]}"
EOF
    else
      echo "run on $name (np $np) failed: $(grep '^cellshift' "$work/log/run-$name.np$np.out")"
    fi
  } > "$r" 2>&1
}
variant_fail=0
# A file without the perturbation column is still a valid file to inspect.
timeout 60 $CS_MPIEXEC -n 2 "$CELLSHIFT" inspect "$DATA/bad_no_condition.h5ad" > /dev/null 2>&1 ||
  { echo "FAIL: inspect of a file without obs/condition failed"; variant_fail=$((variant_fail + 1)); }
timeout 60 $CS_MPIEXEC -n 1 "$CELLSHIFT" inspect "$GOOD" > "$work/log/inspect-good.out" 2>&1 || echo "inspect good.h5ad failed" > "$work/variant/ref"
summary "$work/log/inspect-good.out" > "$work/log/good.summary"
grep -q '^checked on 1 rank: 120 cells x 30 genes, 2420 non-zeros' "$work/log/inspect-good.out" ||
  echo "inspect good.h5ad: unexpected summary: $(head -c 600 "$work/log/inspect-good.out")" >> "$work/variant/ref"
timeout 60 $CS_MPIEXEC -n 1 "$CELLSHIFT" run -data "$GOOD" -output_dir "$work/out/ref" $RUN -test_conditions A+B \
  > "$work/log/run-good.out" 2>&1 || echo "run on good.h5ad: $(tail -3 "$work/log/run-good.out")" >> "$work/variant/ref"
for name in good good_gzip good_unsorted good_int64_float64 good_h5sparse good_csc good_dense; do
  for np in 1 2 3; do spawn variant $name $np; done
done
wait

# --- 3. every option -help lists is known to the check ---------------------------------------------------------------
# The check learns the known options from the objects' own registrations, as -help does: every cellshift option that
# `run -help` lists for all model types, given with its default value, must pass the check, so the run fails only
# later, on the missing data file. The model types come from the program (the message about an unknown model).
all_options() {
  local types help=$work/log/help.txt args=() name value n=0 out=$work/log/all-options.out
  types=$(timeout 60 $CS_MPIEXEC -n 1 "$CELLSHIFT" run -data "$GOOD" -model __none__ -output_dir "$work/none" 2>&1 |
          sed -n "s/.*unknown model '__none__' (models: \(.*\)).*/\1/p" | tr -d ' ')
  case ",$types," in *,mean,*) ;; *) echo "the model types ($types) do not include mean"; return ;; esac
  timeout 60 $CS_MPIEXEC -n 1 "$CELLSHIFT" run -help -model "$types" > "$help" 2>&1
  while read -r name value; do
    case $name in -output_dir | -model | -baselines | -data | -help) continue ;; esac
    case $value in '' | string1,*) continue ;; FLAG) args+=("$name") ;; *) args+=("$name" "$value") ;; esac
    n=$((n + 1))
  done < <(grep -E '^  -' "$help" | grep -v '(Petsc' |
           sed -E 's/^  (-[a-z0-9_]+)(: | )<(now )?([^ :>]*)( : formerly [^>]*| : [^>]*)?>.*/\1 \4/; t; s/^  (-[a-z0-9_]+).*/\1 FLAG/')
  [ $n -ge 90 ] || echo "run -help lists only $n options with a value for the models $types"
  for o in -gi_min_mean -eval_vcc_baseline -mean_model_view -cpa_hidden -cpa_layers -validation -split; do
    printf '%s\n' "${args[@]}" | grep -qx -- "$o" || echo "run -help does not list $o"
  done
  timeout 60 $CS_MPIEXEC -n 2 "$CELLSHIFT" run -data "$work/nope.h5ad" -model "$types" "${args[@]}" -split simulation \
    -output_dir "$work/all-options" > "$out" 2>&1
  grep -q '^cellshift: error: .*nope\.h5ad.*no such file' "$out" ||
    echo "the $n options -help lists, with their defaults, are not all accepted: $(grep -m1 '^cellshift: error:' "$out" | head -c 600)"
}
all_options > "$work/variant/all-options" 2>&1

# --- report ---------------------------------------------------------------------------------------------------------
failures=$variant_fail
for f in "$work"/case/*/failures "$work"/variant/*; do
  [ -s "$f" ] || continue
  sed "s|^|FAIL: $(basename "$(dirname "$f")")/$(basename "$f"): |" "$f" | sed "s|/failures: |: |"
  failures=$((failures + $(wc -l < "$f")))
done
echo "bad input: $ncases catalogue cases ($nruns runs at 1-3 ranks) and 7 valid variants at 3 rank counts in $(( $(date +%s) - t0 )) s"
if [ $failures -eq 0 ]; then
  rm -rf "$work"
  echo "bad input: all checks passed"
else
  echo "$failures check(s) failed; logs in $work"
  exit 1
fi
