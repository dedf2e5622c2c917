#!/usr/bin/env bash
# The grn model end to end, recomputed with numpy (tests/python/check_grn.py: W, the responses, the spectral
# radius, the input scales and every predicted cell):
# - a copy of the PerturBench devel data in which 8 HVGs are renamed to perturbed genes (one in another case),
#   so that measured atoms exist, and a DoRothEA-format prior made for it (TFs among the genes with cycles, TFs
#   that are perturbed but not measured, repeated and contradictory rows, confidence D rows that must be
#   ignored, atoms the prior does not know): a random split (unseen singles), at 1, 2 and 3 ranks with the
#   perturbation type column, the same predictions at every rank count; `cellshift predict` at 3 ranks from the
#   1-rank model.h5 gives them again;
# - the combination split with -grn_unknown zero, another ridge, damping and a small ScaLAPACK block, without a
#   type column (contexts are the types);
# - the embedded priors on the original file: -grn_prior dorothea+trrust.
set -euo pipefail
: "${CELLSHIFT:?}" "${CS_MPIEXEC:?}" "${CS_SOURCE_DIR:?}"
PY=${CS_PYTHON:-/usr/bin/python3}
orig="$CS_SOURCE_DIR/input/perturbench_devel/devel.h5ad"
check="$CS_SOURCE_DIR/tests/python/check_grn.py"
priors="$CS_SOURCE_DIR/input/priors"
out=$(mktemp -d "${TMPDIR:-/tmp}/cellshift-grn-XXXXXX")
trap 'rm -rf "$out"' EXIT

"$PY" - "$orig" "$out" <<'PY'
import sys
import warnings

import anndata as ad
import numpy as np

warnings.filterwarnings("ignore")
a = ad.read_h5ad(sys.argv[1])
out = sys.argv[2]
names = list(a.var_names)
measured = ["Klf1", "SET", "MAP2K3", "SGK1", "CBL", "PTPN12", "FOXL2", "MAPK1"]
for i, n in enumerate(measured):
    names[10 * i + 3] = n
a.var_names = names
a.write_h5ad(out + "/data.h5ad")
rng = np.random.default_rng(5)
genes = [g for g in names if g not in measured]
rows = []
tfs = list(rng.choice(genes, 40, replace=False)) + measured[:6]
for tf in tfs:
    for t in rng.choice(names, 8, replace=False):
        rows.append((tf, rng.choice(["A", "B", "C"]), t, int(rng.choice([1, -1]))))
# cycles among TFs, a contradictory pair, a repeated row, D-level rows
for i in range(len(tfs)):
    rows.append((tfs[i], "A", tfs[(i + 1) % len(tfs)], 1))
rows += [(tfs[0], "B", tfs[1], -1), (tfs[2], "A", tfs[3], 1), (tfs[5], "D", tfs[6], 1), (tfs[7], "E", names[0], -1)]
# perturbed TFs that are not measured (their targets are); KLF1 is measured as Klf1; HK2 has only unmeasured targets
for tf in ["CEBPE", "FOXO4", "HOXB9", "TBX3", "ZBTB10", "RUNX1T1", "KMT2A"]:
    for t in rng.choice(genes, 6, replace=False):
        rows.append((tf, "A", t, int(rng.choice([1, -1]))))
rows += [("HK2", "A", "NOTMEASURED1", 1), ("HK2", "B", "NOTMEASURED2", -1)]
with open(out + "/regulons.tsv", "w") as f:
    f.write("tf\tconfidence\ttarget\tmor\n")
    for r in rows:
        f.write("%s\t%s\t%s\t%d\n" % r)
PY

common=(-context_key cell_type -predict_max_cells 0 -baselines control -model grn)
syn=(-data "$out/data.h5ad" -prior_dorothea "$out/regulons.tsv" -grn_unknown additive -perturbation_type_key perturbation_type)
for n in 1 2 3; do
  $CS_MPIEXEC -n $n "$CELLSHIFT" run "${common[@]}" "${syn[@]}" -split random -test_fraction 0.3 -split_seed 3 \
    -output_dir "$out/np$n" > "$out/np$n.log"
  "$PY" "$check" "$out/data.h5ad" "$out/np$n/split.json" "$out/np$n/grn/predictions.h5ad" "$out/np$n/grn/model.h5" \
    --dorothea "$out/regulons.tsv" --unknown additive --type-key perturbation_type
done
grep -q "TFs through their targets" "$out/np1.log"

cp "$out/np1/grn/predictions.h5ad" "$out/np1-fitted.h5ad"
$CS_MPIEXEC -n 3 "$CELLSHIFT" predict "${common[@]}" "${syn[@]}" -output_dir "$out/np1" > "$out/predict.log"
"$PY" - "$out" <<'PY'
import sys

import anndata as ad
import numpy as np

out = sys.argv[1]
X = lambda p: (lambda a: a.X.toarray() if hasattr(a.X, "toarray") else np.asarray(a.X))(ad.read_h5ad(p))
ref = X(out + "/np1-fitted.h5ad")
for other in ["np2/grn/predictions.h5ad", "np3/grn/predictions.h5ad", "np1/grn/predictions.h5ad"]:
    d = np.abs(X(out + "/" + other) - ref).max()
    print("%s: max |difference| to the 1-rank fit = %.3g" % (other, d))
    assert d <= 1e-6, other
PY

$CS_MPIEXEC -n 2 "$CELLSHIFT" run "${common[@]}" -data "$out/data.h5ad" -prior_dorothea "$out/regulons.tsv" -split combo -test_fraction 0.4 \
  -grn_unknown zero -grn_ridge 1.5 -grn_damping 0.7 -grn_block_size 16 -output_dir "$out/combo" > "$out/combo.log"
"$PY" "$check" "$out/data.h5ad" "$out/combo/split.json" "$out/combo/grn/predictions.h5ad" "$out/combo/grn/model.h5" \
  --dorothea "$out/regulons.tsv" --unknown zero --ridge 1.5 --damping 0.7

$CS_MPIEXEC -n 3 "$CELLSHIFT" run "${common[@]}" -data "$orig" -grn_prior dorothea+trrust -grn_unknown additive -split random \
  -test_fraction 0.3 -split_seed 1 -output_dir "$out/union" > "$out/union.log"
"$PY" "$check" "$orig" "$out/union/split.json" "$out/union/grn/predictions.h5ad" "$out/union/grn/model.h5" \
  --dorothea "$priors/dorothea_hs/dorothea_hs.tsv.gz" --trrust "$priors/trrust_v2/trrust_rawdata.human.tsv" --unknown additive
echo "test_grn_numpy: ok"
