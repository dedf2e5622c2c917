#!/usr/bin/env bash
# cellshift simulate: the file anndata reads (also backed), the same CSR X and obs at 1, 2 and 3 ranks (and with a
# block size that splits ranks unevenly), a different seed gives other counts, the truth agrees with the empirical
# pseudobulk of a large simulation within sampling error (and a wrong truth is rejected by the same check),
# `cellshift run` on a simulated file recovers the truth better than the control baseline, and bad options fail
# with one clear message and no file. Dense X (-sim_format dense) holds the same values; auto picks dense for counts
# mostly non-zero and CSR for sparse ones.
set -euo pipefail
out=$(mktemp -d "${TMPDIR:-/tmp}/cellshift-simulate-XXXXXX")
trap 'rm -rf "$out"' EXIT
export OPENBLAS_NUM_THREADS=1
opts=(-cells 2501 -genes 150 -sim_singles 8 -sim_doubles 3 -sim_drugs 2 -sim_doses 0.3,3 -sim_batches 2 -sim_low_quality 0.2
      -sim_contexts 2 -sim_seed 7)
for n in 1 2 3; do
  $CS_MPIEXEC -n $n "$CELLSHIFT" simulate "${opts[@]}" -sim_format csr -sim_block 97 -output "$out/np$n.h5ad" > "$out/np$n.log" 2>&1 \
    || { cat "$out/np$n.log"; echo "FAIL: simulate np$n"; exit 1; }
done
$CS_MPIEXEC -n 2 "$CELLSHIFT" simulate "${opts[@]}" -sim_format csr -sim_block 5000 -output "$out/big_block.h5ad" > /dev/null
$CS_MPIEXEC -n 3 "$CELLSHIFT" simulate "${opts[@]}" -sim_format dense -sim_block 97 -output "$out/dense.h5ad" > /dev/null
$CS_MPIEXEC -n 2 "$CELLSHIFT" simulate "${opts[@]}" -output "$out/auto.h5ad" > "$out/auto.log"
grep -q "dense X (auto" "$out/auto.log" || { cat "$out/auto.log"; echo "FAIL: auto did not choose dense X for counts mostly non-zero"; exit 1; }
$CS_MPIEXEC -n 2 "$CELLSHIFT" simulate -cells 300 -genes 400 -sim_depth 300 -output "$out/sparse.h5ad" > "$out/sparse.log"
grep -q "CSR X with" "$out/sparse.log" || { cat "$out/sparse.log"; echo "FAIL: auto did not choose CSR for sparse counts"; exit 1; }
$CS_MPIEXEC -n 1 "$CELLSHIFT" simulate "${opts[@]/#7/8}" -sim_format csr -output "$out/seed8.h5ad" > /dev/null
"$CS_PYTHON" - "$out" <<'PY'
import sys, h5py, numpy as np, anndata as ad
out = sys.argv[1]
ref = h5py.File(f"{out}/np1.h5ad", "r")
assert dict(ref["X"].attrs)["encoding-type"] == "csr_matrix" and list(ref["X"].attrs["shape"]) == [2501, 150]
def csr(f): return b"".join(f["X"][k][:].tobytes() for k in ("data", "indices", "indptr"))
for name in ("np2", "np3", "big_block", "dense"):
    f = h5py.File(f"{out}/{name}.h5ad", "r")
    if name == "dense":
        r = ref["X"]; D = np.zeros((2501, 150), np.float32)
        for i in range(2501): D[i, r["indices"][r["indptr"][i]:r["indptr"][i + 1]]] = r["data"][r["indptr"][i]:r["indptr"][i + 1]]
        assert f["X"][:].tobytes() == D.tobytes(), "dense X differs from the CSR X"
    else:
        assert csr(f) == csr(ref), f"X of {name} differs from 1 rank"
    for k in ref["obs"]:
        if k == "_index":
            continue
        assert f["obs"][k]["codes"][:].tobytes() == ref["obs"][k]["codes"][:].tobytes(), f"obs {k} codes of {name} differ"
        assert list(f["obs"][k]["categories"][:]) == list(ref["obs"][k]["categories"][:]), f"obs {k} categories of {name} differ"
    assert [x.decode() for x in f["var"]["_index"][:]] == [x.decode() for x in ref["var"]["_index"][:]]
print("X (CSR) and obs identical at 1, 2, 3 ranks and any block size; dense X the same values")
s8 = h5py.File(f"{out}/seed8.h5ad", "r")
assert csr(s8) != csr(ref), "another seed gave the same counts"
a = ad.read_h5ad(f"{out}/np2.h5ad")
assert a.shape == (2501, 150) and a.obs_names[0] == "0"
X = a.X.toarray()
assert (X >= 0).all() and (X == np.round(X)).all(), "counts are not non-negative integers"
for col in ("condition", "perturbation", "dose", "perturbation_type", "cell_type", "batch", "quality"):
    assert str(a.obs[col].dtype) == "category", col
q = a.obs["quality"].astype(str)
frac = (q != "ok").mean()
assert 0.15 < frac < 0.25, f"low-quality fraction {frac}"
tot = X.sum(1)
mito = X[:, a.var_names.str.startswith("MT-")].sum(1) / tot
assert np.median(tot[q == "low_depth"]) < 0.3 * np.median(tot[q == "ok"]), "low-depth cells are not shallow"
assert np.median(mito[q == "high_mito"]) > 3 * np.median(mito[q == "ok"]), "high-mito cells are not flagged by their counts"
assert set(a.obs["perturbation_type"].astype(str)) == {"control", "CRISPRi", "CRISPRa", "double", "drug"} or \
       set(a.obs["perturbation_type"].astype(str)) >= {"control", "double", "drug"}
b = ad.read_h5ad(f"{out}/np2.h5ad", backed="r")
assert np.array_equal(b.X[100:110].toarray(), X[100:110]), "backed mode reads other rows"
t = ad.read_h5ad(f"{out}/np2.truth.h5ad")
assert t.n_obs == a.obs["condition"].nunique() * 2 and np.allclose(np.asarray(t.X).sum(1), 1, atol=1e-5)
net = np.genfromtxt(f"{out}/np2.network.tsv", dtype=str, skip_header=1)
assert net.shape[1] == 5 and set(net[:, 0]) <= set(a.var_names) and set(net[:, 1]) <= set(a.var_names)
print("anndata reads it (backed too); quality flags, truth and network consistent")
PY

# The truth against the pseudobulk of 60000 cells: for every (condition, cell type) and gene, z = (phat - p) / se with
# se from the negative binomial variance (mu + mu^2 / theta, theta the median dispersion: the spread of the per-gene
# dispersions only widens z a little). The same check must reject the truth of another condition.
$CS_MPIEXEC -n 2 "$CELLSHIFT" simulate -cells 60000 -genes 60 -sim_singles 4 -sim_doubles 1 -sim_drugs 1 -sim_doses 1 -sim_contexts 2 \
  -sim_dispersion 1000000 -output "$out/large.h5ad" > /dev/null
"$CS_PYTHON" - "$out" <<'PY'
import sys, numpy as np, anndata as ad
out = sys.argv[1]
a = ad.read_h5ad(f"{out}/large.h5ad"); t = ad.read_h5ad(f"{out}/large.truth.h5ad")
X = np.asarray(a.X, dtype=np.float64); T = np.asarray(t.X, dtype=np.float64)
key = lambda df: (df["condition"].astype(str) + "|" + df["cell_type"].astype(str)).values
ka, kt = key(a.obs), key(t.obs)
def zscores(T):
    zs = []
    for i, k in enumerate(kt):
        Y = X[ka == k]
        L = Y.sum(1)
        phat = Y.sum(0) / L.sum()
        se = np.sqrt(np.outer(L, T[i]).sum(0)) / L.sum()   # Poisson (theta huge): var = mu
        zs.append((phat - T[i]) / se)
    return np.concatenate(zs)
z = zscores(T)
print(f"truth vs empirical: mean z^2 {np.mean(z**2):.3f}, max |z| {np.abs(z).max():.2f} over {z.size} (condition, type, gene)")
assert 0.7 < np.mean(z ** 2) < 1.3 and np.abs(z).max() < 6, "the true means disagree with the simulated counts"
zw = zscores(np.roll(T, 2, axis=0))
print(f"a wrong truth: mean z^2 {np.mean(zw**2):.1f}")
assert np.mean(zw ** 2) > 5, "the check cannot tell a wrong truth"
PY

# cellshift run on a simulated file: the learned and baseline models against the truth (mean log1p-normalised
# expression of each test group vs log1p(1e4 p) of the truth, the same transform for every model).
$CS_MPIEXEC -n 1 "$CELLSHIFT" simulate -cells 6000 -genes 200 -sim_singles 12 -sim_doubles 4 -sim_drugs 0 -output "$out/run.h5ad" > /dev/null
$CS_MPIEXEC -n 2 "$CELLSHIFT" run -data "$out/run.h5ad" -normalize -perturbation_key condition -context_key cell_type \
  -baselines control,additive -model linear -output_dir "$out/run" > "$out/run.log" 2>&1 || { cat "$out/run.log"; echo "FAIL: run"; exit 1; }
"$CS_PYTHON" - "$out" <<'PY'
import sys, numpy as np, anndata as ad
out = sys.argv[1]
t = ad.read_h5ad(f"{out}/run.truth.h5ad")
truth = {(c, x): np.log1p(1e4 * np.asarray(t.X[i], dtype=np.float64))
         for i, (c, x) in enumerate(zip(t.obs["condition"].astype(str), t.obs["cell_type"].astype(str)))}
err = {}
for m in ("control", "additive", "linear"):
    p = ad.read_h5ad(f"{out}/run/{m}/predictions.h5ad")
    p = p[p.obs["cellshift_kind"].astype(str) == "predicted"]
    P = np.asarray(p.X, dtype=np.float64)
    g = (p.obs["condition"].astype(str) + "|" + p.obs["cell_type"].astype(str)).values
    e = [np.sqrt(np.mean((P[g == k].mean(0) - truth[tuple(k.split("|"))]) ** 2)) for k in np.unique(g)]
    err[m] = np.mean(e)
print("rmse to the truth:", {k: round(v, 4) for k, v in err.items()})
assert err["additive"] < 0.8 * err["control"] and err["linear"] < err["control"], "models do not recover the truth better than control"
PY

# Bad options: one message, non-zero exit on every rank, no file.
bad() {
  local want=$1; shift
  if $CS_MPIEXEC -n 2 "$CELLSHIFT" simulate "$@" > "$out/bad.log" 2>&1; then echo "FAIL: accepted $*"; exit 1; fi
  grep -q -- "$want" "$out/bad.log" || { cat "$out/bad.log"; echo "FAIL: no '$want' for $*"; exit 1; }
  ls "$out"/bad* | grep -qv bad.log && { echo "FAIL: a file was left by $*"; exit 1; } || true
}
bad "give at least one cell" -cells 0 -output "$out/bad.h5ad"
bad "give the .h5ad file to write" -cells 10 -output "$out/bad.txt"
bad "the networks are random, dorothea" -sim_network foo -output "$out/bad.h5ad"
bad "make at most" -sim_singles 3 -sim_doubles 4 -output "$out/bad.h5ad"
bad "did you mean -sim_doses" -sim_dose 1 -output "$out/bad.h5ad"
bad "must be in \[0, 1)" -sim_knockdown 1.5 -output "$out/bad.h5ad"
bad "Unknown option foo for -sim_format" -sim_format foo -output "$out/bad.h5ad"
echo "test_simulate: ok"
