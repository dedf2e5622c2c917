#!/usr/bin/env bash
# Logs and the run-folder lock, with a short scGen training (the step that shows progress):
# - output redirected to a file (the ranks still get a pseudo-terminal from mpiexec) holds plain progress lines and
#   no carriage return, while the run holds its folder's lock: a second run into the folder fails at once, naming
#   the holder's pid, and the first run ends normally;
# - mpiexec on a terminal (util-linux `script` gives it one) draws the live bar; -progress lines there draws none;
#   -progress bar forces the bar into a file.
set -euo pipefail
out=$(mktemp -d "${TMPDIR:-/tmp}/cellshift-logs-XXXXXX")
trap 'rm -rf "$out"' EXIT
cd "$CS_SOURCE_DIR"
fail() { echo "FAIL: $*"; exit 1; }
train=(train -options_file_yaml input/norman_combo.yaml -baselines control -model scgen -scgen_hidden 32 -scgen_latent 8
       -scgen_batch_size 256 -scgen_patience 100 -progress_interval 0.5)

# 1. a log file, and a second run into the busy folder
$CS_MPIEXEC -n 2 "$CELLSHIFT" "${train[@]}" -scgen_epochs 60 -output_dir "$out/file" > "$out/file.log" 2>&1 &
pid=$!
for _ in $(seq 600); do grep -q "training on" "$out/file.log" 2>/dev/null && break; sleep 0.1; done
start=$(date +%s)
if $CS_MPIEXEC -n 2 "$CELLSHIFT" "${train[@]}" -scgen_epochs 1 -output_dir "$out/file" > "$out/second.log" 2>&1; then
  fail "a second run into a folder in use succeeded"
fi
grep -qE "^cellshift: error: .*/file is in use by another cellshift run \(pid [0-9]+ host" "$out/second.log" ||
  fail "second run: $(grep cellshift: "$out/second.log")"
[ $(( $(date +%s) - start )) -lt 30 ] || fail "the second run took more than 30 s to fail"
wait $pid || fail "the first run failed: $(tail -5 "$out/file.log")"
! grep -q $'\r' "$out/file.log" || fail "a redirected run wrote carriage returns: $(grep -c $'\r' "$out/file.log") lines"
grep -qE "^scgen: [0-9]+/[0-9]+ cells" "$out/file.log" || fail "no progress line in the log: $(head -20 "$out/file.log")"
echo "redirected output: $(grep -cE '^scgen: [0-9]+/' "$out/file.log") progress lines, no carriage return; a second run was refused"

# 2. the live bar only for a terminal
$CS_MPIEXEC -n 2 "$CELLSHIFT" "${train[@]}" -scgen_epochs 1 -progress bar -output_dir "$out/forced" > "$out/forced.log" 2>&1 ||
  fail "-progress bar: $(tail -3 "$out/forced.log")"
grep -q $'\rscgen \[' "$out/forced.log" || fail "-progress bar drew no bar"
if command -v script > /dev/null; then
  script -qec "$CS_MPIEXEC -n 2 $CELLSHIFT ${train[*]} -scgen_epochs 1 -output_dir $out/tty" "$out/tty.log" > /dev/null ||
    fail "run on a terminal: $(tail -3 "$out/tty.log")"
  grep -q $'\rscgen \[' "$out/tty.log" || fail "no live bar on a terminal: $(tail -c 400 "$out/tty.log")"
  script -qec "$CS_MPIEXEC -n 2 $CELLSHIFT ${train[*]} -scgen_epochs 1 -progress lines -output_dir $out/ttylines" "$out/ttylines.log" > /dev/null ||
    fail "run on a terminal with -progress lines: $(tail -3 "$out/ttylines.log")"
  ! grep -q 'scgen \[' "$out/ttylines.log" || fail "-progress lines drew a bar"
  echo "terminal: live bar; -progress lines: plain lines; -progress bar into a file: bar"
else
  echo "no util-linux script: the terminal cases are skipped"
fi
echo "logs tests passed"
