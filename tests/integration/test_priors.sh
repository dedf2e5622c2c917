#!/usr/bin/env bash
# Priors end to end:
# - `cellshift inspect FILE -priors` on the embedded Norman/GBM data at 1 and 3 ranks: the coverage numbers of
#   every graph (genes in it, edges between them, atoms in it, as a source, with a target among the genes, the
#   atoms it does not know) recomputed with pandas from the prior files and the data;
# - a file whose var names are Ensembl ids with a categorical var column gene_symbol (some in lower case) and
#   guide-level atoms (KLF1_1, KLF1_2): the genes are found through the symbol column, the guides collapse to
#   their gene with -atom_collapse_guides, and an explicit -gene_symbol_key the file lacks is an error;
# - a malformed prior file: one error line naming the file and the line, at 1 and 2 ranks.
set -euo pipefail
: "${CELLSHIFT:?}" "${CS_MPIEXEC:?}" "${CS_SOURCE_DIR:?}"
PY=${CS_PYTHON:-/usr/bin/python3}
data="$CS_SOURCE_DIR/input/perturbench_devel/devel.h5ad"
priors="$CS_SOURCE_DIR/input/priors"
out=$(mktemp -d "${TMPDIR:-/tmp}/cellshift-priors-XXXXXX")
trap 'rm -rf "$out"' EXIT

for n in 1 3; do
  $CS_MPIEXEC -n $n "$CELLSHIFT" inspect "$data" -priors -context_key cell_type > "$out/inspect$n.txt"
done
cmp <(sed -n '/^priors:/,$p' "$out/inspect1.txt") <(sed -n '/^priors:/,$p' "$out/inspect3.txt")

"$PY" - "$data" "$priors" "$out/inspect1.txt" <<'PY'
import re
import sys

import anndata as ad
import pandas as pd

data, priors, report = sys.argv[1:4]
text = open(report).read()
a = ad.read_h5ad(data)
genes = list(a.var_names)
exact = {g: i for i, g in enumerate(genes)}
lower = {}
for i, g in enumerate(genes):
    lower.setdefault(g.lower(), set()).add(i)


def gene(s):
    if s in exact:
        return exact[s]
    hit = lower.get(s.lower(), set())
    return next(iter(hit)) if len(hit) == 1 else None


atoms = sorted({t for c in a.obs["condition"].astype(str).unique() for t in c.split("+") if t != "control"})
d = pd.read_csv(f"{priors}/dorothea_hs/dorothea_hs.tsv.gz", sep="\t")
d = d[d["confidence"].isin(list("ABC"))].rename(columns={"tf": "src", "target": "dst"})
t = pd.read_csv(f"{priors}/trrust_v2/trrust_rawdata.human.tsv", sep="\t", header=None, names=["src", "dst", "mode", "pmid"])
g = pd.read_csv(f"{priors}/go_gene_graph/go_jaccard_top20.tsv.gz", sep="\t").rename(columns={"source": "src", "target": "dst"})
for name, e in (("dorothea A,B,C", d), ("trrust", t), ("go", g)):
    e = e.drop_duplicates(["src", "dst"])
    nodes = set(e["src"]) | set(e["dst"])
    ingenes = {gene(n) for n in nodes} - {None}
    both = sum(1 for s, u in zip(e["src"], e["dst"]) if gene(s) is not None and gene(u) is not None)
    node_lower = {n.lower(): n for n in nodes}
    node_of = {x: (x if x in nodes else node_lower.get(x.lower())) for x in atoms}
    srcs = set(e["src"])
    with_target = {s for s, u in zip(e["src"], e["dst"]) if gene(u) is not None}
    ain = [x for x in atoms if node_of[x]]
    asrc = [x for x in ain if node_of[x] in srcs]
    atgt = [x for x in ain if node_of[x] in with_target]
    unknown = [x for x in atoms if not node_of[x]]
    block = text[text.index(name + ":"):]
    m = re.search(r"genes of the data in the graph: (\d+) of (\d+) .*edges between them: (\d+)", block)
    got = tuple(int(v) for v in m.groups())
    assert got == (len(ingenes), len(genes), both), (name, got, (len(ingenes), len(genes), both))
    m = re.search(r"atoms in the graph: (\d+) of (\d+) \((\d+) as a source, (\d+) with a target", block)
    got = tuple(int(v) for v in m.groups())
    want = (len(ain), len(atoms), len(asrc), len(atgt))
    assert got == want, (name, got, want)
    if unknown:
        m = re.search(r"atoms it does not know: (.*)", block)
        assert m.group(1).split(", ") == unknown, (name, m.group(1), unknown)
    print(f"{name}: {len(ingenes)} of {len(genes)} genes, {both} edges between them, atoms {want[0]} of {want[1]} "
          f"({want[2]} sources, {want[3]} with a target): as reported")
PY

# Ensembl ids, a symbol column, guides.
"$PY" - "$data" "$out/ensembl.h5ad" <<'PY'
import sys
import warnings

import anndata as ad
import pandas as pd

warnings.filterwarnings("ignore")
a = ad.read_h5ad(sys.argv[1])
a = a[a.obs["cell_type"] == "k562"].copy()
sym = list(a.var_names)
sym = [s.lower() if i % 3 == 0 else s for i, s in enumerate(sym)]  # every third symbol in lower case
a.var = pd.DataFrame({"gene_symbol": pd.Categorical(sym)}, index=[f"ENSG{i:011d}" for i in range(a.n_vars)])
# guide-level labels: every atom becomes GENE_1 or GENE_2 by cell parity
cond = a.obs["condition"].astype(str).tolist()
a.obs["guide"] = [c if c == "control" else "+".join(f"{x}_{1 + i % 2}" for x in c.split("+")) for i, c in enumerate(cond)]
a.write_h5ad(sys.argv[2])
PY
$CS_MPIEXEC -n 2 "$CELLSHIFT" inspect "$out/ensembl.h5ad" -priors dorothea,go -perturbation_key guide > "$out/guides.txt"
$CS_MPIEXEC -n 2 "$CELLSHIFT" inspect "$out/ensembl.h5ad" -priors dorothea,go -perturbation_key guide -atom_collapse_guides > "$out/genes.txt"
grep -q "symbol column: gene_symbol" "$out/genes.txt"
# The symbol column finds the same genes as the symbols themselves did in the original file (k562 cells only).
$CS_MPIEXEC -n 1 "$CELLSHIFT" inspect "$data" -priors dorothea,go -obs_subset cell_type=k562 > "$out/orig.txt"
for what in "genes of the data in the graph" ; do
  a=$(grep "$what" "$out/orig.txt" | sed 's/(nodes matched.*;//'); b=$(grep "$what" "$out/genes.txt" | sed 's/(nodes matched.*;//')
  [ "$a" = "$b" ] || { echo "FAIL: by symbol column: '$b', by var names: '$a'"; exit 1; }
done
grep "genes of the data" "$out/genes.txt" | grep -q "0 exactly, 0 ignoring case" || { echo "FAIL: Ensembl ids matched symbols"; exit 1; }
# Guides: without collapsing the prior knows none of them; with -atom_collapse_guides every guide finds its gene
# (two guides per gene: twice the atoms of the original file); with -perturbation_collapse_guides the guides of a
# gene are one atom, so the atoms are those of the original file.
$CS_MPIEXEC -n 2 "$CELLSHIFT" inspect "$out/ensembl.h5ad" -priors dorothea,go -perturbation_key guide -perturbation_collapse_guides > "$out/design.txt"
grep -q "atoms in the graph: 0 of" "$out/guides.txt" || { echo "FAIL: guide names found in a prior"; cat "$out/guides.txt"; exit 1; }
"$PY" - "$out/orig.txt" "$out/genes.txt" "$out/design.txt" <<'PY'
import re
import sys

def counts(path):
    return [tuple(int(v) for v in m) for m in re.findall(r"atoms in the graph: (\d+) of (\d+) \((\d+) as a source, (\d+) with", open(path).read())]

orig, guides, design = (counts(p) for p in sys.argv[1:4])
assert design == orig, (design, orig)
assert guides == [tuple(2 * v for v in c) for c in orig], (guides, orig)
print("guides collapsed: atoms as the original file's (design) and twice them (atom map):", orig)
PY
grep -q "guides collapsed to genes" "$out/genes.txt"
if $CS_MPIEXEC -n 2 "$CELLSHIFT" inspect "$out/ensembl.h5ad" -priors go -perturbation_key guide -gene_symbol_key nosuch > /dev/null 2> "$out/err.txt"; then
  echo "FAIL: a missing -gene_symbol_key was accepted"; exit 1
fi
grep -q "^cellshift: error: .*var has no column 'nosuch'" "$out/err.txt" || { echo "FAIL: $(cat "$out/err.txt")"; exit 1; }

# Malformed prior files.
printf 'A\tB\tActivation\t1\nA\tC\tActiv\t2\n' > "$out/bad.tsv"
printf 'tf\tconfidence\ttarget\tmor\nA\tA\tB\t1\nA\tC\n' > "$out/short.tsv"
for n in 1 2; do
  if $CS_MPIEXEC -n $n "$CELLSHIFT" inspect "$data" -priors trrust -prior_trrust "$out/bad.tsv" > /dev/null 2> "$out/err.txt"; then
    echo "FAIL: a bad TRRUST file was accepted"; exit 1
  fi
  [ "$(grep -c '^cellshift: error:' "$out/err.txt")" = 1 ] || { echo "FAIL: $(cat "$out/err.txt")"; exit 1; }
  grep -q "bad.tsv:2: mode 'Activ' is not Activation, Repression or Unknown" "$out/err.txt" || { echo "FAIL: $(cat "$out/err.txt")"; exit 1; }
  if $CS_MPIEXEC -n $n "$CELLSHIFT" inspect "$data" -priors dorothea -prior_dorothea "$out/short.tsv" > /dev/null 2> "$out/err.txt"; then
    echo "FAIL: a bad DoRothEA file was accepted"; exit 1
  fi
  grep -q "short.tsv:3: 2 tab-separated fields, the header has 4" "$out/err.txt" || { echo "FAIL: $(cat "$out/err.txt")"; exit 1; }
  if $CS_MPIEXEC -n $n "$CELLSHIFT" inspect "$data" -priors go -prior_go "$out/none.tsv.gz" > /dev/null 2> "$out/err.txt"; then
    echo "FAIL: a missing GO file was accepted"; exit 1
  fi
  grep -q "cannot open .*none.tsv.gz" "$out/err.txt" || { echo "FAIL: $(cat "$out/err.txt")"; exit 1; }
done
echo "test_priors: ok"
