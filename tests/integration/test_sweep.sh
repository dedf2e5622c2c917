#!/usr/bin/env bash
# cellshift sweep and collect, local mode (the subsample options of run: test_subsample.sh):
# - a 2 x 2 grid (data_fraction x data) where the two configurations on a missing file fail: the sweep goes on,
#   exits 0, and collected.csv has the documented header, ok rows with metrics for every model and failed rows
#   without; -task N reruns one configuration; collect -runs DIR/runs writes the same table; a random search draws
#   the same configurations for the same seed, within their ranges; a run that leaves no metrics is failed;
# - spec errors before anything runs: an unknown option (the option checker's message naming it), malformed YAML
#   (one line with file and line), an unknown key; the sweep on 2 ranks is refused.
set -uo pipefail
: "${CELLSHIFT:?}" "${CS_MPIEXEC:?}" "${CS_SOURCE_DIR:?}"
PY=${CS_PYTHON:-/usr/bin/python3}
out=$(mktemp -d "${TMPDIR:-/tmp}/cellshift-sweep-XXXXXX")
trap 'rm -rf "$out"' EXIT
cd "$CS_SOURCE_DIR"
export OPENBLAS_NUM_THREADS=1
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# expect_error LABEL PATTERN COMMAND...: exit 1, one "cellshift: error:" line matching PATTERN, no sweep folder
expect_error() {
  local label=$1 pattern=$2 rc
  shift 2
  timeout 60 "$@" > "$out/$label.out" 2> "$out/$label.err"
  rc=$?
  [ $rc -eq 1 ] || fail "$label: exit $rc, expected 1"
  [ "$(grep -c '^cellshift: error:' "$out/$label.err")" -eq 1 ] || { cat "$out/$label.err"; fail "$label: not one error line"; }
  grep -q "^cellshift: error:.*$pattern" "$out/$label.err" || { cat "$out/$label.err"; fail "$label: error does not match '$pattern'"; }
  [ ! -e "$out/$label" ] || fail "$label: the sweep folder was made"
}

# 1. a local sweep with two failing configurations
cat > "$out/grid.yaml" <<YAML
options:
  options_file_yaml: input/norman_combo.yaml
  model: linear
grid:
  data_fraction: [0.3, 1]
  data: [input/perturbench_devel/devel.h5ad, $out/missing.h5ad]
YAML
timeout 120 "$CELLSHIFT" sweep -spec "$out/grid.yaml" -output_dir "$out/sw" > "$out/sweep.log" 2>&1 || { cat "$out/sweep.log"; fail "the sweep did not exit 0"; }
grep -q "2 of 4 runs ok" "$out/sweep.log" || { cat "$out/sweep.log"; fail "the sweep did not report 2 of 4 runs ok"; }
grep -q "cannot open\|no such file" "$out/sw/runs/0001/log.txt" || fail "the log of a failed run does not say why"
"$PY" - "$out/sw" <<'PYEOF' || fail "collected.csv"
import csv, json, sys, math
d = sys.argv[1]
rows = list(csv.DictReader(open(d + "/collected.csv")))
header = open(d + "/collected.csv").readline().strip().split(",")
metrics = json.load(open(d + "/runs/0000/metrics.json"))["metrics"]
want = ["run", "status", "data_fraction", "data", "model", "n_train_cells", "params"] + metrics
assert header == want, header
st = {r["run"]: r["status"] for r in rows}
assert st == {"0000": "ok", "0001": "failed", "0002": "ok", "0003": "failed"}, st
for r in rows:
    if r["status"] == "failed":
        assert r["model"] == "" and all(r[m] == "" for m in metrics), r
models = {r["run"]: [x["model"] for x in rows if x["run"] == r["run"]] for r in rows if r["status"] == "ok"}
assert models["0000"] == ["control", "additive", "mean", "linear"], models
for r in rows:
    if r["status"] != "ok": continue
    agg = json.load(open(f"{d}/runs/{r['run']}/metrics.json"))["aggregates"][r["model"]]
    for m in metrics:
        v = agg[m]
        assert (r[m] == "" and v is None) or math.isclose(float(r[m]), v, rel_tol=1e-8, abs_tol=1e-12), (r["run"], m, r[m], v)
n = {r["data_fraction"]: int(r["n_train_cells"]) for r in rows if r["status"] == "ok"}
assert n["0.3"] < 0.4 * n["1"], n
# params: the fitted scalars of every model, closed form included (control 0, mean one shift per gene and context,
# additive one per gene for each (context, atom) seen alone, linear G, W, P and b)
import h5py
with h5py.File("input/perturbench_devel/devel.h5ad", "r") as f:
    G = f["var"][f["var"].attrs["_index"]].shape[0]
for r in rows:
    if r["status"] != "ok": continue
    p = int(r["params"])
    if r["model"] == "control": assert p == 0, r
    else: assert p > 0 and (r["model"] == "linear" or p % G == 0), (r["model"], p, G)
assert "| 0000 | ok |" in open(d + "/collected.md").read()
PYEOF
# -task: one configuration again (kept when ok unless -overwrite), and collect -runs
timeout 60 "$CELLSHIFT" sweep -spec "$out/grid.yaml" -output_dir "$out/sw" -task 2 -overwrite > "$out/task.log" 2>&1 || { cat "$out/task.log"; fail "-task 2"; }
grep -q "runs/0002 ok" "$out/task.log" || { cat "$out/task.log"; fail "-task 2 did not run configuration 2"; }
timeout 60 "$CELLSHIFT" sweep -spec "$out/grid.yaml" -output_dir "$out/sw" -task 1 > "$out/task1.log" 2>&1
[ $? -eq 1 ] || fail "-task of a failing configuration must exit 1 (the array task fails)"
cp "$out/sw/collected.csv" "$out/first.csv"
timeout 60 "$CELLSHIFT" collect -runs "$out/sw/runs" > "$out/collect.log" 2>&1 || { cat "$out/collect.log"; fail "collect -runs"; }
cmp -s <(cut -d, -f1-7 "$out/first.csv") <(cut -d, -f1-7 "$out/sw/collected.csv") || fail "collect -runs gives another table"

# random search: the same configurations for the same seed, values in their ranges (integers for integer bounds);
# a run that exits 0 without metrics (the launcher `true` starts nothing) is collected as failed
cat > "$out/random.yaml" <<YAML
options: {options_file_yaml: input/norman_combo.yaml, model: linear}
random:
  n: 6
  seed: 7
  options: {linear_ridge: {log_uniform: [1e-3, 10]}, linear_k: {uniform: [2, 20]}, split_seed: [0, 1, 2]}
YAML
for r in r1 r2; do
  timeout 60 "$CELLSHIFT" sweep -spec "$out/random.yaml" -output_dir "$out/$r" -sweep_launcher true > "$out/$r.log" 2>&1 || { cat "$out/$r.log"; fail "random sweep $r"; }
done
"$PY" - "$out" <<'PYEOF' || fail "random search"
import csv, json, sys
o = sys.argv[1]
c1, c2 = (json.load(open(f"{o}/{r}/sweep.json"))["configurations"] for r in ("r1", "r2"))
assert c1 == c2 and len(c1) == 6, (c1, c2)
for c in c1:
    assert 1e-3 <= float(c["linear_ridge"]) <= 10 and c["linear_k"].isdigit() and 2 <= int(c["linear_k"]) <= 20, c
    assert c["split_seed"] in ("0", "1", "2"), c
assert len({c["linear_ridge"] for c in c1}) == 6
assert {r["status"] for r in csv.DictReader(open(f"{o}/r1/collected.csv"))} == {"failed"}
PYEOF

# 2. spec errors, before anything runs
printf 'options:\n  options_file_yaml: input/norman_combo.yaml\ngrid:\n  no_such_opt: [1, 2]\n' > "$out/unknown.yaml"
expect_error unknown "-no_such_opt: no such option" "$CELLSHIFT" sweep -spec "$out/unknown.yaml" -output_dir "$out/unknown"
printf 'options:\n  model: linear\ngrid:\n  data_fraction: [0.5, 1\n  model: [a, b]\n' > "$out/bad.yaml"
expect_error badyaml "bad.yaml:[0-9]*: malformed YAML" "$CELLSHIFT" sweep -spec "$out/bad.yaml" -output_dir "$out/badyaml"
printf 'options:\n  model: linear\ngird:\n  data_fraction: [0.5]\n' > "$out/key.yaml"
expect_error badkey "key.yaml:3: unknown key 'gird'" "$CELLSHIFT" sweep -spec "$out/key.yaml" -output_dir "$out/badkey"
printf 'options:\n  options_file_yaml: input/norman_combo.yaml\ngrid:\n  data_fraction: [0.5, 2]\n' > "$out/range.yaml"
expect_error badvalue "-data_fraction 2.*give a fraction" "$CELLSHIFT" sweep -spec "$out/range.yaml" -output_dir "$out/badvalue"
expect_error ranks "runs as one process" $CS_MPIEXEC -n 2 "$CELLSHIFT" sweep -spec "$out/grid.yaml" -output_dir "$out/ranks"

[ $failures -eq 0 ] && echo "sweep tests passed"
exit $((failures > 0))
