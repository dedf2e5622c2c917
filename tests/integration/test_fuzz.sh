#!/bin/bash
# Fuzzing in CI: the three libFuzzer harnesses of tests/fuzz (the .h5ad reader, split.json, the checkpoint reader),
# built with clang in build-fuzz/ (jobs/setup --sanitize builds it; this script builds it when it is missing).
#   1. every input of tests/fuzz/corpus/<target>/ (seeds and the regressions of crashes found so far) runs once;
#   2. each target fuzzes for FUZZ_SECONDS (default 35; under 2 minutes) from that corpus.
# Fails on any crash, sanitizer report, disagreement of the two .h5ad read paths, HDF5 object left open, or
# out-of-memory or hang (a timeout or out-of-memory input that, replayed with 25 s and 8 GB, finishes cleanly is
# reported as slow), except where the fault is inside HDF5 itself (the replayed report's first frame is in
# libhdf5: known HDF5 1.10.8 bugs on damaged files, tests/fuzz/README.md), which is reported as a warning. A crash
# that does not reproduce alone (state left by the earlier inputs of its fuzzing job) is judged by the sanitizer
# report the campaign wrote (log_path), by the same first-frame rule. Skipped, with a message, without clang +
# libFuzzer.
set -u
: "${CS_SOURCE_DIR:?}"
src=$CS_SOURCE_DIR
fuzz=${CS_FUZZ_BUILD:-$src/build-fuzz}
seconds=${FUZZ_SECONDS:-35}
targets=(${CS_FUZZ_TARGETS:-h5ad split checkpoint})
work=$(mktemp -d /tmp/cellshift-fuzz-XXXXXX)
failures=0
export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

have_libfuzzer() {
  command -v clang > /dev/null 2>&1 || return 1
  echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' |
    clang -fsanitize=fuzzer -x c - -o "$work/probe" > /dev/null 2>&1
}

built() { for t in "${targets[@]}"; do [ -x "$fuzz/tests/fuzz/fuzz_$t" ] || return 1; done; }

if ! built; then
  if ! have_libfuzzer; then
    echo "SKIP: the fuzz harnesses need clang with libFuzzer (Debian: clang-14 libclang-rt-14-dev), not installed here"
    rm -rf "$work"
    exit 0
  fi
  echo "building the fuzz harnesses in $fuzz"
  { cmake -S "$src" -B "$fuzz" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DCS_FUZZ=ON &&
    cmake --build "$fuzz" -j"$(nproc)" --target fuzz_h5ad fuzz_split fuzz_checkpoint; } > "$work/build.log" 2>&1 ||
    { tail -30 "$work/build.log"; echo "FAIL: cannot build the fuzz harnesses"; exit 1; }
fi

# The first frame of a report (file $1) that is not the sanitizer, libc or libFuzzer.
first_frame() {
  awk '/^ *#[0-9]+ / && !/__interceptor|__asan|__sanitizer|__ubsan|libc\.so|fuzzer::|AlarmCallback|PrintStack/ { print; exit }' "$1"
}

# Is a finding inside HDF5 itself? Replay the input: the first frame of its report is in libhdf5 (HDF5 1.10.8
# trusts damaged heaps and object headers: tests/fuzz/README.md). Sets replayed=1 when the replay failed at all.
in_hdf5() {
  replayed=0
  timeout 60 "$1" -timeout=10 "$2" > "$work/replay.log" 2>&1 || replayed=1
  first_frame "$work/replay.log" | grep -q 'libhdf5'
}

# The sanitizer reports the campaign of target $1 wrote in folder $2 (one file per crashing fuzzing job). A crash
# whose input reproduces alone is judged by its replay too; this catches the ones that do not. Timeouts and
# out-of-memory reports are left to the replay of their inputs (check_artifacts).
check_reports() {
  local t=$1 dir=$2 r frame inside=0 judged=0
  for r in "$dir"/*; do
    [ -e "$r" ] || continue
    grep -q -E 'libFuzzer: (timeout|out-of-memory)|AlarmCallback|HandleMalloc|MallocHook|RssThread' "$r" && continue
    frame=$(first_frame "$r")
    judged=$((judged + 1))
    if grep -q 'libhdf5' <<< "$frame"; then
      inside=$((inside + 1))
    else
      fail "$t: a sanitizer report of the campaign outside HDF5: $(grep -m1 -E 'ERROR|runtime error' "$r" | cut -c1-120); first frame: ${frame:-none} (report kept in $r)"
    fi
  done
  [ $inside -eq 0 ] || echo "warning: $t: $inside sanitizer report(s) of the campaign with the first frame inside HDF5 1.10.8 (known, not cellshift's)"
  # a crash that did not reproduce must have left a report to be judged by
  [ $unreplayed -eq 0 ] || [ $judged -gt 0 ] ||
    fail "$t: $unreplayed crash input(s) that do not reproduce alone and no sanitizer report of the campaign to judge them (inputs in $work/$t/art)"
}

# Findings of one libFuzzer run in folder $2 (target $1).
check_artifacts() {
  local t=$1 dir=$2 f
  for f in "$dir"/*; do
    [ -e "$f" ] || continue
    # A timeout or out-of-memory of the campaign (5 s, 3 GB) that finishes cleanly with more of both is a slow input
    # (HDF5 walking a damaged file), not a hang or a fault.
    case $(basename "$f") in timeout-* | oom-*)
      if timeout 40 "$fuzz/tests/fuzz/fuzz_$t" -timeout=25 -rss_limit_mb=8000 "$f" > "$work/replay.log" 2>&1; then
        echo "warning: $t: $(basename "$f") is slow, not a fault: $(grep -m1 -o 'in [0-9]* ms' "$work/replay.log")"
        continue
      fi ;;
    esac
    if in_hdf5 "$fuzz/tests/fuzz/fuzz_$t" "$f"; then
      echo "warning: $t: $(basename "$f") is a fault inside HDF5 1.10.8 (known, not cellshift's): $(grep -m1 -E 'ERROR|timeout' "$work/replay.log" | cut -c1-120)"
    elif [ $replayed -eq 0 ]; then
      echo "warning: $t: $(basename "$f") does not reproduce alone (state of earlier inputs): judged by the campaign's sanitizer report"
      unreplayed=$((unreplayed + 1))
    else
      fail "$t: $(basename "$f"): $(grep -m1 -E 'ERROR|runtime error|left [0-9]+ HDF5|disagree|timeout' "$work/replay.log" | cut -c1-160) (input kept in $f)"
    fi
  done
}

for t in "${targets[@]}"; do
  bin=$fuzz/tests/fuzz/fuzz_$t
  corpus=$src/tests/fuzz/corpus/$t
  mkdir -p "$work/$t/art" "$work/$t/corpus" "$work/$t/reports"
  unreplayed=0
  # 1. the corpus, once each (inputs that fault inside HDF5 are kept apart in tests/fuzz/hdf5-bugs, see the README)
  timeout 600 "$bin" -timeout=20 -detect_leaks=0 -artifact_prefix="$work/$t/art/" "$corpus"/* > "$work/$t/replay.log" 2>&1 ||
    fail "$t: replaying the corpus: $(grep -m3 -E 'ERROR|left|disagree|SUMMARY' "$work/$t/replay.log")"
  # 2. fuzzing, crashes and hangs collected rather than fatal so that one finding does not hide the next
  ASAN_OPTIONS=$ASAN_OPTIONS:log_path=$work/$t/reports/asan UBSAN_OPTIONS=$UBSAN_OPTIONS:log_path=$work/$t/reports/ubsan \
    timeout $((seconds + 120)) "$bin" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 -timeout=5 -rss_limit_mb=3000 \
    -max_total_time="$seconds" -detect_leaks=0 -artifact_prefix="$work/$t/art/" "$work/$t/corpus" "$corpus" > "$work/$t/fuzz.log" 2>&1
  execs=$(grep -oE '^#[0-9]+' "$work/$t/fuzz.log" | tail -1 | tr -d '#')
  echo "$t: ${execs:-0} executions in ${seconds} s"
  check_artifacts "$t" "$work/$t/art"
  check_reports "$t" "$work/$t/reports"
done

if [ $failures -eq 0 ]; then
  rm -rf "$work"
  echo "fuzz: all checks passed"
else
  echo "fuzz: $failures finding(s); inputs and logs in $work"
  exit 1
fi
