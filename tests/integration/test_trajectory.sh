#!/usr/bin/env bash
# cellshift trajectory on a synthetic time course whose truth is known (three clusters, every cell moving along a
# straight line at its cluster's velocity; days 0..3): the states at -save_times are the same at 1, 2 and 3 ranks
# (1e-4: Sinkhorn in float32 with sums split differently over the ranks, after a PCA that agrees to rounding) and
# anndata reads them back with obs source_cell and time; a state at an observed time t_k is the source cell itself,
# one at the last time the barycentric image, which for this translation lies near its cluster's true position;
# the held-out day 1 is recovered by interpolation far better than by the nearest day (energy distance and W2);
# bad input (one time point, unknown key, a save time outside the course, an end point held out) fails with one
# message on every rank and leaves no file.
set -euo pipefail
: "${CELLSHIFT:?}" "${CS_MPIEXEC:?}"
PY=${CS_PYTHON:-/usr/bin/python3}
out=$(mktemp -d "${TMPDIR:-/tmp}/cellshift-traj-XXXXXX")
trap 'rm -rf "$out"' EXIT
"$PY" - "$out/lines.h5ad" <<'PY'
import sys, numpy as np, pandas as pd, anndata as ad
rng = np.random.default_rng(0)
G, C, n = 12, 3, 40
centers = rng.normal(0, 5, (C, G)); vel = rng.normal(0, 1, (C, G))
X, day, cl = [], [], []
for t in (0.0, 1.0, 2.0, 3.0):
    for c in range(C):
        X.append(centers[c] + rng.normal(0, 0.3, (n, G)) + t * vel[c]); day += [t] * n; cl += [c] * n
a = ad.AnnData(np.vstack(X).astype(np.float32),
               obs=pd.DataFrame({"day": day, "cluster": cl, "one": ["a"] * len(day)}, index=[f"c{i}" for i in range(len(day))]))
a.var_names = [f"g{i}" for i in range(G)]
a.write_h5ad(sys.argv[1])
np.save(sys.argv[1] + ".vel.npy", vel)
PY
for n in 1 2 3; do
  $CS_MPIEXEC -n $n "$CELLSHIFT" trajectory -data "$out/lines.h5ad" -time_key day -save_times 0.5,2,2.25,3 \
    -output "$out/states.np$n.h5ad" -trajectory_pca 12 > "$out/np$n.log" 2>&1 || { cat "$out/np$n.log"; exit 1; }
  mkdir -p "$out/hold.np$n"
  $CS_MPIEXEC -n $n "$CELLSHIFT" trajectory -data "$out/lines.h5ad" -time_key day -holdout_time 1 -trajectory_pca 12 \
    -output_dir "$out/hold.np$n" > "$out/hold.np$n.log" 2>&1 || { cat "$out/hold.np$n.log"; exit 1; }
done
for n in 2 3; do # the couplings with the ScaLAPACK block-cyclic cost: the same states as the kernel rows at 1 rank
  $CS_MPIEXEC -n $n "$CELLSHIFT" trajectory -data "$out/lines.h5ad" -time_key day -save_times 0.5,2,2.25,3 \
    -output "$out/states.bc$n.h5ad" -trajectory_pca 12 -trajectory_layout blockcyclic > "$out/bc$n.log" 2>&1 || { cat "$out/bc$n.log"; exit 1; }
done
for n in 1 2 3; do # -method flow: a velocity field over the course (minibatch-OT flow matching), states by PETSc TS
  mkdir -p "$out/flow.np$n"
  $CS_MPIEXEC -n $n "$CELLSHIFT" trajectory -data "$out/lines.h5ad" -time_key day -holdout_time 1 -trajectory_pca 12 -method flow \
    -save_times 0.5,2.5 -output "$out/flow.np$n.h5ad" -output_dir "$out/flow.np$n" > "$out/flow.np$n.log" 2>&1 || { cat "$out/flow.np$n.log"; exit 1; }
done
cat "$out/flow.np1.log"
"$PY" - "$out" <<'PY'
# The flow's batches, couplings and ODE blocks are the same at 1 and 2 ranks; only the order of the gradient sum
# over ranks differs (float32 rounding, amplified a little by 30 epochs of Adam): 1e-3 on states of size ~5, 1e-3
# relative on the scores. The held-out day 1 from day 0 must be far closer than either neighbour's copy (a flow
# that did not learn the motion, v = 0, scores as the nearest day).
import sys, json, numpy as np, anndata as ad
out = sys.argv[1]
a = ad.read_h5ad(f"{out}/flow.np1.h5ad")
assert list(a.obs.columns) == ["source_cell", "time"] and a.n_obs == 240, (a.obs.columns, a.n_obs)
assert np.isfinite(np.asarray(a.X)).all()
m1 = json.load(open(f"{out}/flow.np1/metrics.json"))
assert m1["method"] == "flow", m1
f, nb, ot = m1["flow"], m1["nearest_time_point"], m1["other_neighbour"]
for n in (2, 3):
    b = ad.read_h5ad(f"{out}/flow.np{n}.h5ad")
    assert (a.obs.values == b.obs.values).all(), f"flow: obs differ between 1 and {n} ranks"
    d = np.abs(np.asarray(a.X) - np.asarray(b.X)).max()
    assert d < 1e-3, f"flow: states differ by {d} between 1 and {n} ranks"
    m2 = json.load(open(f"{out}/flow.np{n}/metrics.json"))
    for q in ("energy_distance", "w2"):
        assert np.isfinite(f[q]) and abs(f[q] - m2["flow"][q]) <= 1e-3 * max(1, abs(f[q])), (n, q, f, m2["flow"])
assert f["w2"] < 0.6 * min(nb["w2"], ot["w2"]) and f["energy_distance"] < 0.3 * min(nb["energy_distance"], ot["energy_distance"]), m1
print("held-out day 1: flow", f, "nearest", nb)
PY
cat "$out/hold.np1.log"
"$PY" - "$out" <<'PY'
import sys, json, numpy as np, anndata as ad
out = sys.argv[1]
src = ad.read_h5ad(f"{out}/lines.h5ad"); vel = np.load(f"{out}/lines.h5ad.vel.npy")
ref = ad.read_h5ad(f"{out}/states.np1.h5ad")
assert list(ref.obs.columns) == ["source_cell", "time"], ref.obs.columns
day = src.obs["day"].values
per = {0.5: 0.0, 2.0: 2.0, 2.25: 2.0, 3.0: 2.0}
assert ref.n_obs == sum((day == t0).sum() for t0 in per.values()), ref.n_obs
for n in (2, 3):
    b = ad.read_h5ad(f"{out}/states.np{n}.h5ad")
    assert (b.obs.values == ref.obs.values).all(), f"np{n}: obs differ"
    d = np.abs(np.asarray(b.X) - np.asarray(ref.X)).max()
    assert d < 1e-4, f"np{n}: states differ by {d}"
    b = ad.read_h5ad(f"{out}/states.bc{n}.h5ad")
    assert (b.obs.values == ref.obs.values).all(), f"block-cyclic np{n}: obs differ"
    d = np.abs(np.asarray(b.X) - np.asarray(ref.X)).max()
    assert d < 1e-4, f"block-cyclic np{n}: states differ by {d}"
    m1 = json.load(open(f"{out}/hold.np1/metrics.json")); mn = json.load(open(f"{out}/hold.np{n}/metrics.json"))
    for k in ("ot_interpolation", "nearest_time_point"):
        for q in ("energy_distance", "w2"):
            assert abs(m1[k][q] - mn[k][q]) <= 1e-4 * max(1, abs(m1[k][q])), (n, k, q, m1[k][q], mn[k][q])
X0 = np.asarray(src.X); X = np.asarray(ref.X)
sc = ref.obs["source_cell"].astype(int).values; tm = ref.obs["time"].astype(float).values
for t, t0 in per.items():
    r = tm == t
    assert (day[sc[r]] == t0).all(), f"time {t}: sources not from day {t0}"
    s = t - t0 if t0 < 2 else t - 2.0
    truth = X0[sc[r]] + s * vel[src.obs["cluster"].values[sc[r]]]
    err = np.sqrt(((X[r] - truth) ** 2).sum(1)).mean()
    # a state is the source cell moved by s times its barycentric displacement; for this translation the displacement
    # is the cluster's velocity up to the spread of the cells (0.3 per gene, ~1 over 12 genes)
    assert err < 0.3 + 1.2 * s, f"time {t}: mean distance to the true position {err}"
    print(f"time {t}: mean distance of the states to the truth {err:.3f} (s = {s})")
r = tm == 2.0
assert np.abs(X[r] - X0[sc[r]]).max() < 1e-4, "at an observed time the state must be the source cell"
m = json.load(open(f"{out}/hold.np1/metrics.json"))
oi, nb = m["ot_interpolation"], m["nearest_time_point"]
assert m["s"] == 0.5 and m["t0"] == 0 and m["t1"] == 2, m
assert oi["w2"] < 0.5 * nb["w2"] and oi["energy_distance"] < 0.3 * nb["energy_distance"], m
print("held-out day 1: interpolation", oi, "nearest", nb)
PY
fail() { # args: expected message, then the options; 2 ranks, non-zero exit, the message, no output file
  local msg=$1; shift
  if $CS_MPIEXEC -n 2 "$CELLSHIFT" trajectory -data "$out/lines.h5ad" "$@" > "$out/bad.log" 2>&1; then
    echo "accepted: $*"; exit 1
  fi
  grep -q -- "$msg" "$out/bad.log" || { echo "no '$msg' for $*:"; cat "$out/bad.log"; exit 1; }
  [ "$(grep -c 'error:' "$out/bad.log")" -le 2 ] || { echo "more than one message per rank for $*"; cat "$out/bad.log"; exit 1; }
  ! ls "$out"/bad.h5ad* > /dev/null 2>&1 || { echo "file left by $*"; exit 1; }
}
fail "1 time point" -time_key one -save_times 0 -output "$out/bad.h5ad"
fail "no column 'nope'" -time_key nope -save_times 1 -output "$out/bad.h5ad"
fail "outside the observed times" -time_key day -save_times 1,5 -output "$out/bad.h5ad"
fail "no neighbour on both sides" -time_key day -holdout_time 3
fail "not a time point" -time_key day -holdout_time 1.5
fail "-trajectory_flow_ot_tol must be a positive number" -time_key day -holdout_time 1 -method flow -trajectory_flow_ot_tol 0
fail "Available options: ot flow" -time_key day -holdout_time 1 -method nope
fail "did you mean -save_times" -time_key day -save_time 1 -output "$out/bad.h5ad"
echo "trajectory: ok"
