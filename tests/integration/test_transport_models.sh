#!/usr/bin/env bash
# The transport models cellot and flow end to end on the embedded Norman data, small networks:
# - -<model>_check_gradient: the training step's gradient against a directional finite difference (cellot: the
#   first f step and the g step after it, whose gradient goes through T = grad g; flow: the first two steps);
# - a run stopped at an epoch checkpoint and resumed ends bit-identical to an uninterrupted one;
# - 1, 2 and 3 ranks give the same loss curve (to floating-point tolerance) and the same predictions;
# - flow's ODE solves: a tighter tolerance moves the predictions by less than the looser tolerance, fixed-step
#   Euler with many steps gives the same predictions, a step size that collapses is an error on predict, the
#   steps taken and rejected are reported;
# - -log_view shows the ODE, Sinkhorn and transport events; -help lists -flow_ts_* and the options are accepted.
set -euo pipefail
out=$(mktemp -d "${TMPDIR:-/tmp}/cellshift-transport-XXXXXX")
trap 'rm -rf "$out"' EXIT
cd "$CS_SOURCE_DIR"
small=(-options_file_yaml input/norman_combo.yaml -baselines control)
declare -A size=([cellot]="-cellot_hidden 16 -cellot_layers 2 -cellot_pca 10 -cellot_batch_size 64 -cellot_inner_steps 3"
                 [flow]="-flow_hidden 32 -flow_pca 10 -flow_batch_size 64 -flow_time_dim 8 -flow_embed 8")
fail() { echo "FAIL: $*"; exit 1; }
same() { # same MODEL_A MODEL_B: bit-identical parameter arrays of two model files
  "$CS_PYTHON" "$CS_SOURCE_DIR/tests/python/same_params.py" "$1" "$2"
}
run() { # run NP NAME COMMAND ARGS...
  local np=$1 name=$2 cmd=$3; shift 3
  $CS_MPIEXEC -n "$np" "$CELLSHIFT" $cmd "${small[@]}" "$@" -output_dir "$out/$name" > "$out/$name.log" 2>&1 \
    || { cat "$out/$name.log"; fail "$name"; }
}

# 1. gradients against finite differences (2 ranks: the local gradients are reduced for the comparison)
run 2 grad train -model cellot,flow ${size[cellot]} ${size[flow]} -cellot_epochs 1 -flow_epochs 1 -cellot_check_gradient -flow_check_gradient
n=$(grep -c "gradient check" "$out/grad.log") || true
[ "$n" = 4 ] || { cat "$out/grad.log"; fail "expected 4 gradient checks, got $n"; }
grep "gradient check" "$out/grad.log"
grep "gradient check" "$out/grad.log" | awk '{ if ($NF + 0 > 2e-2) bad = 1 } END { exit bad }' || fail "a gradient differs from its finite difference"

for m in cellot flow; do
  # 2. checkpoint and resume
  opts=(-model $m ${size[$m]} -${m}_patience 100)
  run 2 ${m}ref train "${opts[@]}" -${m}_epochs 4
  run 2 ${m}part train "${opts[@]}" -${m}_epochs 2 -checkpoint_every 2 -keep_checkpoint
  run 2 ${m}part train "${opts[@]}" -${m}_epochs 4 -resume "$out/${m}part"
  same "$out/${m}ref/$m/model.h5" "$out/${m}part/$m/model.h5"
  cmp -s <(tail -n +2 "$out/${m}ref/$m/training.csv") <(tail -n +2 "$out/${m}part/$m/training.csv") || fail "$m: resumed loss curve differs"

  # 3. loss curve and predictions at 1, 2, 3 ranks
  for np in 1 2 3; do run $np "$m$np" run "${opts[@]}" -${m}_epochs 3; done
  "$CS_PYTHON" - "$out" $m <<'PY'
import sys, numpy as np, anndata as ad
out, m = sys.argv[1], sys.argv[2]
c = [np.loadtxt(f"{out}/{m}{n}/{m}/training.csv", delimiter=",", skiprows=1) for n in (1, 2, 3)]
p = [ad.read_h5ad(f"{out}/{m}{n}/{m}/predictions.h5ad") for n in (1, 2, 3)]
for n, x, q in zip((2, 3), c[1:], p[1:]):
    assert x.shape == c[0].shape, (n, x.shape)
    tr = np.abs(x[:, 1] - c[0][:, 1]) / np.abs(c[0][:, 1]); va = np.abs(x[:, 2] - c[0][:, 2]) / np.abs(c[0][:, 2])
    assert list(q.obs_names) == list(p[0].obs_names), "prediction rows differ"
    dp = np.abs(np.asarray(q.X) - np.asarray(p[0].X)).max()
    print(f"{m} np{n}: training loss within {tr.max():.1e}, validation loss within {va.max():.1e}, predictions within {dp:.1e} of np1")
    assert tr[0] < 1e-4 and va[0] < 1e-4 and tr.max() < 1e-3 and va.max() < 5e-3, "loss curves differ across rank counts"
    assert dp < 1e-3, "predictions differ across rank counts"
PY
done

# 4. flow's integrator on the trained model of the 2-rank run
pred() { # pred NAME TS-OPTIONS...: cellshift predict from flow2's model, predictions kept as NAME.h5ad
  local name=$1; shift
  $CS_MPIEXEC -n 2 "$CELLSHIFT" predict "${small[@]}" -model flow ${size[flow]} "$@" -output_dir "$out/flow2" > "$out/$name.log" 2>&1 \
    || { cat "$out/$name.log"; fail "predict $name"; }
  cp "$out/flow2/flow/predictions.h5ad" "$out/$name.h5ad"
}
pred loose -flow_ts_rtol 1e-4 -flow_ts_atol 1e-4
pred tight -flow_ts_rtol 1e-8 -flow_ts_atol 1e-8
pred euler -flow_ts_type euler -flow_ts_dt 2e-4 -flow_ts_max_steps 10000
grep -q "ODE steps [0-9]* taken, [0-9]* rejected" "$out/tight.log" || fail "flow does not report its ODE steps"
"$CS_PYTHON" - "$out" <<'PY'
import sys, numpy as np, anndata as ad
out = sys.argv[1]
X = {k: np.asarray(ad.read_h5ad(f"{out}/{k}.h5ad").X, dtype=float) for k in ("loose", "tight", "euler")}
scale = max(1.0, np.abs(X["tight"]).max())
d_tol, d_euler = np.abs(X["loose"] - X["tight"]).max(), np.abs(X["euler"] - X["tight"]).max()
print(f"flow: rtol/atol 1e-4 vs 1e-8 moves predictions by {d_tol:.2e} (bound 1e-4 x {scale:.2f}); Euler 5000 steps vs RK 5DP 1e-8: {d_euler:.2e}")
assert d_tol < 1e-4 * scale, "a tighter tolerance moved the predictions by more than the looser tolerance"
assert d_euler < 1e-3 * scale, "fixed-step Euler does not converge to the adaptive solution"
PY
if $CS_MPIEXEC -n 2 "$CELLSHIFT" predict "${small[@]}" -model flow ${size[flow]} -flow_ts_rtol 1e-14 -flow_ts_atol 1e-14 -flow_ts_adapt_dt_min 0.2 \
     -output_dir "$out/flow2" > "$out/collapse.log" 2>&1; then
  cat "$out/collapse.log"; fail "a collapsing step size was accepted"
fi
grep -q "step size fell to the adaptor's minimum" "$out/collapse.log" || { cat "$out/collapse.log"; fail "no clear message for a collapsing step size"; }

# 5. events and help
run 2 logs run -model cellot,flow ${size[cellot]} ${size[flow]} -cellot_epochs 1 -flow_epochs 1 -log_view
for ev in CsODESolve CsOTSinkhorn CsOTSweep CsOTKernel CsCellOTTransport; do grep -q "^$ev " "$out/logs.log" || fail "-log_view lacks $ev"; done
"$CELLSHIFT" -help > "$out/help.txt" 2>&1 || true
for o in -flow_ts_type -flow_ts_rtol -flow_ts_atol -flow_ts_adapt_type -flow_pca -cellot_pca -cellot_inner_steps -ot_layout; do
  grep -q -- "$o " "$out/help.txt" || grep -q -- "$o <" "$out/help.txt" || fail "-help lacks $o"
done
echo "transport model tests passed"
