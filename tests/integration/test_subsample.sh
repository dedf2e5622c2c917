#!/usr/bin/env bash
# The training subsets of run (the knobs of data-scaling sweeps), against the full run's split.json:
# - -data_fraction keeps max(1, ceil(f n)) cells of every perturbed train/valid group and every cell of the test
#   and control groups; -cells_per_group caps them; the metrics are the same on 1, 2 and 3 ranks (to 1e-6, as
#   test_run_ranks);
# - -max_perturbations k keeps the train/valid groups of k perturbed conditions only, every other group keeps its
#   role and cells, the same on 1 and 2 ranks;
# - metrics.json's params of scgen is the count of its trained tensors in model.h5 (h5py).
set -uo pipefail
: "${CELLSHIFT:?}" "${CS_MPIEXEC:?}" "${CS_SOURCE_DIR:?}"
PY=${CS_PYTHON:-/usr/bin/python3}
out=$(mktemp -d "${TMPDIR:-/tmp}/cellshift-subsample-XXXXXX")
trap 'rm -rf "$out"' EXIT
cd "$CS_SOURCE_DIR"
export OPENBLAS_NUM_THREADS=1
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# -data_fraction / -cells_per_group against the full split, and on 1, 2, 3 ranks
run() { timeout 120 $CS_MPIEXEC -n "$1" "$CELLSHIFT" run -options_file_yaml input/norman_combo.yaml -model linear -baselines control -output_dir "$out/$2" "${@:3}" > "$out/$2.log" 2>&1 || { tail -3 "$out/$2.log"; fail "run $2"; }; }
run 1 full
for np in 1 2 3; do run $np frac$np -data_fraction 0.3; done
run 2 cap -cells_per_group 20 -data_fraction 0.5 -model scgen -scgen_epochs 1 -scgen_hidden 32 -scgen_latent 4
"$PY" - "$out/cap" <<'PYEOF' || fail "params of scgen in metrics.json"
import json, sys, h5py, numpy as np
d = sys.argv[1]
got = json.load(open(d + "/metrics.json"))["params"]
with h5py.File(d + "/scgen/model.h5") as f:  # trained tensors: not the BatchNorm statistics, not the latent shifts
    want = sum(int(np.prod(o.shape)) for k, o in f["params"].items() if not k.startswith("shift_") and "running_" not in k)
assert got == {"control": 0, "scgen": want}, (got, want)  # control fits nothing
PYEOF
"$PY" - "$out" <<'PYEOF' || fail "-data_fraction / -cells_per_group keep the wrong number of cells"
import json, math, sys
o = sys.argv[1]
def groups(r): return {(g["condition"], g["context"]): g for g in json.load(open(f"{o}/{r}/split.json"))["groups"]}
full = groups("full")
for run, f, cap in (("frac1", 0.3, 0), ("cap", 0.5, 20)):
    sub = groups(run)
    assert sub.keys() == full.keys()
    for k, g in full.items():
        assert sub[k]["role"] == g["role"], k
        n = g["n_cells"]
        if g["role"] == "test" or g["natoms"] == 0: want = n
        else:
            want = max(1, math.ceil(f * n - 1e-9 * n))
            if cap: want = min(want, cap)
        assert sub[k]["n_cells"] == want, (run, k, sub[k]["n_cells"], want)
PYEOF
"$PY" - "$out" <<'PYEOF' || fail "-data_fraction: the metrics differ on 2 or 3 ranks"
import csv, sys
rows = lambda r: list(csv.DictReader(open(f"{sys.argv[1]}/{r}/metrics.csv")))
ref = rows("frac1")
for n in (2, 3):
    for a, b in zip(ref, rows(f"frac{n}"), strict=True):
        for k, x in a.items():
            if k in ("model", "condition", "dose", "context", "category"): assert x == b[k]
            else: assert abs(float(x) - float(b[k])) <= 1e-6 * max(1.0, abs(float(x))), (n, a["model"], a["condition"], k, x, b[k])
PYEOF
cmp -s "$out/full/metrics.csv" "$out/frac1/metrics.csv" && fail "-data_fraction 0.3 changed nothing"

for np in 1 2; do run $np maxp$np -max_perturbations 5; done
"$PY" - "$out" <<'PYEOF' || fail "-max_perturbations"
import csv, json, sys
o = sys.argv[1]
def groups(r): return {(g["condition"], g["context"]): g for g in json.load(open(f"{o}/{r}/split.json"))["groups"]}
full, sub = groups("full"), groups("maxp1")
assert sub.keys() <= full.keys()
kept = {k[0] for k, g in sub.items() if g["role"] != "test" and g["natoms"] > 0}
assert len(kept) == 5, kept
for k, g in full.items():
    if g["role"] == "test" or g["natoms"] == 0 or k[0] in kept:
        assert k in sub and sub[k]["role"] == g["role"] and sub[k]["n_cells"] == g["n_cells"], k
    else: assert k not in sub, k
assert open(f"{o}/maxp1/split.json").read() == open(f"{o}/maxp2/split.json").read()
rows = lambda r: list(csv.DictReader(open(f"{o}/{r}/metrics.csv")))
for a, b in zip(rows("maxp1"), rows("maxp2"), strict=True):
    for k, x in a.items():
        if k in ("model", "condition", "dose", "context", "category"): assert x == b[k]
        else: assert abs(float(x) - float(b[k])) <= 1e-6 * max(1.0, abs(float(x))), (a["model"], a["condition"], k, x, b[k])
PYEOF

[ $failures -eq 0 ] && echo "subsample tests passed"
exit $((failures > 0))
