#!/usr/bin/env bash
# -quality_weight end to end on a simulated atlas with 30% low-quality cells (obs quality):
# - scgen trained with weights from the flag (obs:quality=ok) and from QC covariates (qc) gives the same loss curve
#   at 1, 2 and 3 ranks (qc: 1 and 3) (the weighted batches are the same cells for any rank count; tests/mpi/test_sampler_weights
#   checks the draws exactly), and differs from uniform sampling;
# - a weight of zero removes a cell's influence: replacing the expression of the low-quality training cells by
#   other counts leaves the parameters trained with obs:quality=ok bit-identical (and changes the uniform ones);
# - what qc means on this atlas, from its definition recomputed in numpy (the product's weights are exercised by the
#   training runs above, not read back): ok cells weigh 1, low-depth and high-mito cells far less; the simulated
#   doublets (1.8x depth) stay within 3 MADs and keep weight 1, so the flagged cells' mean is below 0.6 of the ok ones';
# - bad input fails with one message: an unknown column, a categorical column without =VALUE, qc without -normalize,
#   a sampler that draws no weighted cells.
set -euo pipefail
: "${CELLSHIFT:?}" "${CS_MPIEXEC:?}"
PY=${CS_PYTHON:-/usr/bin/python3}
out=$(mktemp -d "${TMPDIR:-/tmp}/cellshift-qw-XXXXXX")
trap 'rm -rf "$out"' EXIT
"$CELLSHIFT" simulate -sim_format dense -cells 1200 -genes 120 -sim_low_quality 0.3 -sim_seed 5 -output "$out/sim.h5ad" > "$out/sim.log" 2>&1 || { cat "$out/sim.log"; exit 1; }
common=(-normalize -perturbation_key condition -context_key cell_type -model scgen -baselines control -scgen_hidden 64 -scgen_latent 8
        -scgen_batch_size 64 -scgen_epochs 3 -scgen_patience 100)
run() { # run NP NAME DATA ARGS...
  local np=$1 name=$2 data=$3; shift 3
  $CS_MPIEXEC -n "$np" "$CELLSHIFT" train -data "$data" "${common[@]}" "$@" -output_dir "$out/$name" > "$out/$name.log" 2>&1 \
    || { cat "$out/$name.log"; exit 1; }
}
for n in 1 2 3; do run $n obs$n "$out/sim.h5ad" -quality_weight obs:quality=ok; done
for n in 1 3; do run $n qc$n "$out/sim.h5ad" -quality_weight qc; done
run 2 uni2 "$out/sim.h5ad"
# the low-quality cells of the training groups get another cell's counts (their weight is 0 under obs:quality=ok)
"$PY" - "$out" <<'PY'
import sys, json, numpy as np, anndata as ad
out = sys.argv[1]
a = ad.read_h5ad(f"{out}/sim.h5ad")
split = json.load(open(f"{out}/obs2/split.json"))
train = {(g["condition"], g["context"]) for g in split["groups"] if g["role"] == "train"}
key = list(zip(a.obs["condition"].astype(str), a.obs["cell_type"].astype(str)))
bad = np.array([k in train for k in key]) & (a.obs["quality"].astype(str).values != "ok")
X = np.asarray(a.X).copy()
rng = np.random.default_rng(0)
X[bad] = rng.poisson(3.0, (bad.sum(), X.shape[1])).astype(X.dtype)
a.X = X
a.write_h5ad(f"{out}/garbled.h5ad")
print(f"{bad.sum()} low-quality training cells garbled")
PY
run 2 obs2g "$out/garbled.h5ad" -quality_weight obs:quality=ok
run 2 uni2g "$out/garbled.h5ad"
"$PY" "$CS_SOURCE_DIR/tests/python/same_params.py" "$out/obs2/scgen/model.h5" "$out/obs2g/scgen/model.h5"
if "$PY" "$CS_SOURCE_DIR/tests/python/same_params.py" "$out/uni2/scgen/model.h5" "$out/uni2g/scgen/model.h5" > /dev/null 2>&1; then
  echo "uniform sampling did not see the garbled cells"; exit 1
fi
"$PY" - "$out" <<'PY'
import sys, numpy as np
out = sys.argv[1]
for arm, ranks in (("obs", (1, 2, 3)), ("qc", (1, 3))):
    c = [np.loadtxt(f"{out}/{arm}{n}/scgen/training.csv", delimiter=",", skiprows=1) for n in ranks]
    for n, x in zip(ranks[1:], c[1:]):
        assert x.shape == c[0].shape, (arm, n, x.shape)
        tr = np.abs(x[:, 1] - c[0][:, 1]) / np.abs(c[0][:, 1]); va = np.abs(x[:, 2] - c[0][:, 2]) / np.abs(c[0][:, 2])
        print(f"{arm} np{n}: training loss within {tr.max():.1e}, validation loss within {va.max():.1e} of np1")
        assert tr[0] < 1e-5 and va[0] < 1e-4 and tr.max() < 1e-3 and va.max() < 5e-3, f"{arm}: loss curves differ across rank counts"
u = np.loadtxt(f"{out}/uni2/scgen/training.csv", delimiter=",", skiprows=1)
o = np.loadtxt(f"{out}/obs2/scgen/training.csv", delimiter=",", skiprows=1)
assert np.abs(u[:, 1] - o[:, 1]).max() > 1e-3 * np.abs(u[:, 1]).max(), "weighted and uniform training gave the same curve"
PY
# qc weights, recomputed: robust z of log1p(total), log1p(detected), mito fraction; exp(-sum excess^2 / 2)
"$PY" - "$out/sim.h5ad" <<'PY'
import sys, numpy as np, anndata as ad
a = ad.read_h5ad(sys.argv[1]); X = np.asarray(a.X, dtype=np.float64)
tot = X.sum(1); det = (X > 0).sum(1); mito = X[:, np.char.startswith(np.asarray(a.var_names, dtype=str), "MT-")].sum(1) / tot
def z(v):
    med = np.median(v); mad = np.median(np.abs(v - med))
    return (v - med) / (1.4826 * mad) if mad > 0 else 0 * v
e = np.maximum(0, np.abs(z(np.log1p(tot))) - 3) ** 2 + np.maximum(0, -z(np.log1p(det)) - 3) ** 2 + np.maximum(0, z(mito) - 3) ** 2
w = np.exp(-0.5 * e)
q = a.obs["quality"].astype(str).values
for k in ("ok", "low_depth", "high_mito", "doublet"):
    print(f"qc weight of {k} cells: mean {w[q == k].mean():.3f} ({(q == k).sum()} cells)")
assert w[q == "ok"].mean() > 0.9 and w[q != "ok"].mean() < 0.6 * w[q == "ok"].mean(), "qc does not separate the flagged cells"
PY
fail() {
  local want=$1; shift
  if $CS_MPIEXEC -n 2 "$CELLSHIFT" train -data "$out/sim.h5ad" -perturbation_key condition -context_key cell_type -model scgen \
      -baselines control -scgen_epochs 1 -output_dir "$out/bad" -overwrite "$@" > "$out/bad.log" 2>&1; then echo "expected failure: $*"; exit 1; fi
  grep -q -- "$want" "$out/bad.log" || { echo "want '$want':"; cat "$out/bad.log"; exit 1; }
  [ "$(grep -c 'error' "$out/bad.log")" = 1 ] || { echo "one message expected:"; cat "$out/bad.log"; exit 1; }
}
fail "obs has no column 'nope'" -normalize -quality_weight obs:nope
fail "is categorical: give obs:quality=VALUE" -normalize -quality_weight obs:quality
fail "has no value 'great'" -normalize -quality_weight obs:quality=great
fail "needs the raw counts" -quality_weight qc
fail "none, qc or obs:COLUMN" -normalize -quality_weight best
fail "the paired sampler draws no weighted cells" -normalize -quality_weight qc -scgen_sampler_type paired
echo "quality weights: ok"
