#!/usr/bin/env bash
# Several .h5ad files as one dataset (-data a,b,c and -data_list): at 1, 2 and 3 ranks a run gives the same metrics
# and predictions as on the single file anndata.concat makes of them (genes by intersection, and -genes union with
# zeros), whatever the gene order and matrix encoding of each file; bad input (a missing file, a file that is not an
# .h5ad, genes that do not intersect, an obs column of another type, a column missing without -obs_fill) is one
# error naming the file.
set -euo pipefail
out=$(mktemp -d "${TMPDIR:-/tmp}/cellshift-multifile-XXXXXX")
trap 'rm -rf "$out"' EXIT
export OPENBLAS_NUM_THREADS=1
$CS_MPIEXEC -n 1 "$CELLSHIFT" simulate -sim_format dense -cells 1800 -genes 120 -sim_singles 6 -sim_doubles 2 -sim_drugs 0 -sim_contexts 2 -sim_seed 3 \
  -output "$out/sim.h5ad" > /dev/null
"$CS_PYTHON" - "$out" <<'PY'
import sys, numpy as np, anndata as ad, scipy.sparse as sp, pandas as pd
out = sys.argv[1]
s = ad.read_h5ad(f"{out}/sim.h5ad")
s.obs = s.obs[["condition", "cell_type", "batch"]]
g = list(s.var_names)
rng = np.random.default_rng(0)
a = s[0:600].copy()
b = s[600:1200, [x for i, x in enumerate(rng.permutation(g)) if i % 12 != 5]].copy()   # other order, 10 genes fewer
c = s[1200:1800, g[7:]].copy()
c.X = sp.csr_matrix(c.X)                                                              # CSR in the third file
b.obs_names = [f"b{i}" for i in range(b.n_obs)]; c.obs_names = [f"c{i}" for i in range(c.n_obs)]
for name, x in (("a", a), ("b", b), ("c", c)):
    x.write_h5ad(f"{out}/{name}.h5ad")
inner = ad.concat([a, b, c], join="inner")
inner = inner[:, [x for x in a.var_names if x in set(inner.var_names)]].copy()
inner.write_h5ad(f"{out}/inner.h5ad")
order = list(a.var_names) + [x for f in (b, c) for x in f.var_names if x not in set(a.var_names)]
order = list(dict.fromkeys(order))
outer = ad.concat([a, b, c], join="outer", fill_value=0)
outer = outer[:, order].copy()
outer.X = np.asarray(outer.X.todense() if sp.issparse(outer.X) else outer.X, dtype=np.float32)
outer.write_h5ad(f"{out}/outer.h5ad")
# bad inputs
open(f"{out}/notes.h5ad", "w").write("not an h5ad\n")
d = a[:50].copy(); d.var_names = [f"X{i}" for i in range(d.n_vars)]; d.write_h5ad(f"{out}/disjoint.h5ad")
e = b[:50].copy(); e.obs["cell_type"] = np.arange(50); e.write_h5ad(f"{out}/numeric.h5ad")
f = c[:50].copy(); f.obs = f.obs.drop(columns=["batch"]); f.write_h5ad(f"{out}/nobatch.h5ad")
open(f"{out}/list.txt", "w").write("# the three parts\na.h5ad\n\nb.h5ad\n" + f"{out}/c.h5ad\n")
PY
common=(-normalize -perturbation_key condition -context_key cell_type -baselines control,additive -model linear -split random)
run() { # name ranks args...
  local name=$1 n=$2; shift 2
  $CS_MPIEXEC -n $n "$CELLSHIFT" run "${common[@]}" "$@" -output_dir "$out/$name" > "$out/$name.log" 2>&1 \
    || { cat "$out/$name.log"; echo "FAIL: run $name"; exit 1; }
}
run ref_inner 1 -data "$out/inner.h5ad"
run ref_outer 1 -data "$out/outer.h5ad"
for n in 1 2 3; do
  run inner$n $n -data "$out/a.h5ad,$out/b.h5ad,$out/c.h5ad"
  run outer$n $n -data "$out/a.h5ad,$out/b.h5ad,$out/c.h5ad" -genes union
done
run list2 2 -data_list "$out/list.txt"
"$CS_PYTHON" - "$out" <<'PY'
import sys, csv, numpy as np, anndata as ad
out = sys.argv[1]
def num(v):
    try: return float(v)
    except ValueError: return None
def metrics(d):
    rows = list(csv.DictReader(open(f"{out}/{d}/metrics.csv")))
    key = lambda r: tuple(v for v in r.values() if num(v) is None)   # the text fields name the row
    return {(key(r), k): num(v) for r in rows for k, v in r.items() if num(v) is not None and v != "nan"}
def same(ref, d):
    m0, m1 = metrics(ref), metrics(d)
    assert m0.keys() == m1.keys(), f"{d}: other metrics than {ref}"
    worst = max(abs(m0[k] - m1[k]) for k in m0)
    assert worst < 1e-5, f"{d}: metrics differ from {ref} by {worst}"
    for m in ("control", "additive", "linear"):
        p0, p1 = ad.read_h5ad(f"{out}/{ref}/{m}/predictions.h5ad"), ad.read_h5ad(f"{out}/{d}/{m}/predictions.h5ad")
        assert list(p0.var_names) == list(p1.var_names), f"{d}/{m}: other genes"
        assert np.abs(np.asarray(p0.X) - np.asarray(p1.X)).max() < 1e-5, f"{d}/{m}: other predictions"
for n in (1, 2, 3):
    same("ref_inner", f"inner{n}"); same("ref_outer", f"outer{n}")
same("ref_inner", "list2")
try:  # the comparison can fail: the union's genes are not the intersection's
    same("ref_inner", "outer2"); raise SystemExit("FAIL: the check does not tell the union from the intersection")
except AssertionError:
    pass
g = ad.read_h5ad(f"{out}/outer2/control/predictions.h5ad")
print(f"several files = the concatenated file at 1, 2, 3 ranks (inner: {ad.read_h5ad(f'{out}/inner2/control/predictions.h5ad').n_vars} genes, union: {g.n_vars})")
PY
bad() { # message, then the -data value
  local want=$1; shift
  if $CS_MPIEXEC -n 2 "$CELLSHIFT" run "${common[@]}" "$@" -output_dir "$out/bad" > "$out/bad.log" 2>&1; then echo "FAIL: accepted $*"; exit 1; fi
  grep -q -- "$want" "$out/bad.log" || { cat "$out/bad.log"; echo "FAIL: no '$want' for $*"; exit 1; }
}
bad "$out/missing.h5ad (file 2 of 2) does not exist" -data "$out/a.h5ad,$out/missing.h5ad"
bad "$out/notes.h5ad" -data "$out/a.h5ad,$out/notes.h5ad"
bad "$out/disjoint.h5ad shares no gene name with $out/a.h5ad" -data "$out/a.h5ad,$out/disjoint.h5ad"
bad "obs column 'cell_type' is categorical in $out/a.h5ad but numeric in $out/numeric.h5ad" -data "$out/a.h5ad,$out/numeric.h5ad"
bad "-genes sideways: give intersection" -data "$out/a.h5ad,$out/b.h5ad" -genes sideways
bad "give -data or -data_list, not both" -data "$out/a.h5ad" -data_list "$out/list.txt"
# a column missing in one file: an error naming it, unless -obs_fill
common+=(-obs_subset batch=batch0)
bad "obs column 'batch' is in $out/a.h5ad but not in $out/nobatch.h5ad" -data "$out/a.h5ad,$out/nobatch.h5ad"
run fill 2 -data "$out/a.h5ad,$out/nobatch.h5ad" -obs_fill
echo "test_multifile: ok"
