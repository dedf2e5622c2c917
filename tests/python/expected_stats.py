#!/usr/bin/python3
"""Independent statistics of an .h5ad for the reader and design tests (anndata + numpy, not cellshift).
Usage: expected_stats.py FILE PERT_KEY CONTEXT_KEY CONTROL OUT
Writes OUT as lines: 'cells N', 'genes G', 'nnz Z', 'sum S', 'genesum j v' for every gene, 'firstgene NAME',
'lastgene NAME', 'group CONDITION CONTEXT COUNT' for every (canonical condition, context) with cells."""
import sys
import numpy as np
import anndata as ad

path, pkey, ckey, control, out = sys.argv[1:6]
a = ad.read_h5ad(path)
X = a.X.tocsr() if hasattr(a.X, "tocsr") else a.X
X = X.astype(np.float32).astype(np.float64)  # cellshift holds values in float32
def canon(label):
    atoms = sorted({p.strip() for p in str(label).split("+") if p.strip() and p.strip() != control})
    return "+".join(atoms) if atoms else control
with open(out, "w") as f:
    f.write("cells %d\ngenes %d\nnnz %d\nsum %.17g\n" % (X.shape[0], X.shape[1], X.nnz if hasattr(X, "nnz") else np.count_nonzero(X), X.sum()))
    gs = np.asarray(X.sum(axis=0)).ravel()
    for j, v in enumerate(gs):
        f.write("genesum %d %.17g\n" % (j, v))
    f.write("firstgene %s\nlastgene %s\n" % (a.var_names[0], a.var_names[-1]))
    cond = [canon(v) for v in a.obs[pkey].astype(str)]
    ctx = a.obs[ckey].astype(str).tolist() if ckey != "-" else ["all"] * a.n_obs
    groups = {}
    for c, x in zip(cond, ctx):
        groups[(c, x)] = groups.get((c, x), 0) + 1
    for (c, x), n in sorted(groups.items()):
        f.write("group %s %s %d\n" % (c, x, n))
