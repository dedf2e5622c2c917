/* CsPriors: the prior files of a run, their graphs, and their coverage of a dataset's genes and atoms.
   See include/cellshift/priors.h. */
#include "priorsimpl.h"
#include <cellshift/h5ad.h>

#ifndef CS_PRIOR_DIR
  #define CS_PRIOR_DIR "input/priors"
#endif

struct _n_CsPriors {
  MPI_Comm     comm;
  char         dir[PETSC_MAX_PATH_LEN], file[CS_PRIOR_NKINDS][PETSC_MAX_PATH_LEN], levels[8];
  char         symbol_key[256], symbol_used[256], delim[8];
  PetscBool    collapse;
  CsPriorGraph graph[CS_PRIOR_NKINDS];
  PetscBool    have[CS_PRIOR_NKINDS];
  CsPriorGraph uni; /* the last union asked for */
  char         uni_spec[64];
  PetscInt     ngenes;
  CsGeneIndex  idx;
  PetscInt     natoms;
  char       **atoms, **asym; /* [natoms] atom names and their gene symbols */
  PetscInt    *agene;         /* [natoms] gene of the dataset or -1 */
};

/* The var columns tried, in order, when -gene_symbol_key is not given. */
static const char *const symbol_keys[] = {"gene_symbol", "gene_symbols", "gene_name", "gene_names", "feature_name", "symbol"};

PetscErrorCode CsPriorsCreate(MPI_Comm comm, CsPriors *out)
{
  CsPriors p;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&p));
  p->comm = comm;
  PetscCall(PetscStrncpy(p->dir, CS_PRIOR_DIR, sizeof(p->dir)));
  PetscCall(PetscStrncpy(p->levels, "ABC", sizeof(p->levels)));
  PetscCall(PetscStrncpy(p->delim, "_", sizeof(p->delim)));
  *out = p;
  PetscFunctionReturn(0);
}

PetscErrorCode CsPriorsSetFromOptions(CsPriors p)
{
  const char *rel[CS_PRIOR_NKINDS] = {"dorothea_hs/dorothea_hs.tsv.gz", "trrust_v2/trrust_rawdata.human.tsv", "go_gene_graph/go_jaccard_top20.tsv.gz"};
  const char *opt[CS_PRIOR_NKINDS] = {"-prior_dorothea", "-prior_trrust", "-prior_go"};
  const char *help[CS_PRIOR_NKINDS] = {"DoRothEA regulons (tf, confidence, target, mor; TSV or TSV.gz)",
                                       "TRRUST v2 TF -> target table (TF, target, mode, PMIDs)", "GO gene graph (source, target, jaccard)"};

  PetscFunctionBeginUser;
  PetscOptionsBegin(p->comm, NULL, "Biological priors", "CsPriors");
  PetscCall(PetscOptionsString("-prior_dir", "Folder of the embedded priors", "CsPriorsSetFromOptions", p->dir, p->dir, sizeof(p->dir), NULL));
  for (int k = 0; k < CS_PRIOR_NKINDS; k++) {
    char def[PETSC_MAX_PATH_LEN];
    PetscCall(CsPathJoin(p->dir, rel[k], def));
    if (!p->file[k][0]) PetscCall(PetscStrncpy(p->file[k], def, sizeof(p->file[k])));
    PetscCall(PetscOptionsString(opt[k], help[k], "CsPriorsSetFromOptions", p->file[k], p->file[k], sizeof(p->file[k]), NULL));
  }
  PetscCall(PetscOptionsString("-prior_dorothea_levels", "DoRothEA confidence levels kept (letters A-E)", "CsPriorsSetFromOptions", p->levels,
                               p->levels, sizeof(p->levels), NULL));
  PetscCall(PetscOptionsString("-gene_symbol_key", "var column of gene symbols (default: gene_symbol, gene_symbols, gene_name, ... if present; none = none)",
                               "CsPriorsSetGenes", p->symbol_key, p->symbol_key, sizeof(p->symbol_key), NULL));
  PetscCall(PetscOptionsBool("-atom_collapse_guides", "Atoms are guides (KLF1_1): map them to their gene", "CsPriorsSetAtoms", p->collapse,
                             &p->collapse, NULL));
  PetscCall(PetscOptionsString("-atom_guide_delimiter", "Separator of the guide number in a guide's name", "CsPriorsSetAtoms", p->delim, p->delim,
                               sizeof(p->delim), NULL));
  PetscOptionsEnd();
  PetscFunctionReturn(0);
}

PetscErrorCode CsPriorsSetGenes(CsPriors p, const char path[], PetscInt ngenes, char *const names[])
{
  char    **symbols = NULL;
  PetscBool found   = PETSC_FALSE;

  PetscFunctionBeginUser;
  PetscCall(CsGeneIndexDestroy(&p->idx));
  p->ngenes         = ngenes;
  p->symbol_used[0] = 0;
  if (path && strcmp(p->symbol_key, "none")) {
    if (p->symbol_key[0]) {
      PetscCall(CsH5adReadVarColumn(p->comm, path, p->symbol_key, ngenes, &found, &symbols));
      CsCheckAll(p->comm, found, "%s: var has no column '%s' (-gene_symbol_key)", path, p->symbol_key);
      PetscCall(PetscStrncpy(p->symbol_used, p->symbol_key, sizeof(p->symbol_used)));
    } else
      for (size_t k = 0; k < PETSC_STATIC_ARRAY_LENGTH(symbol_keys) && !found; k++) {
        PetscCall(CsH5adReadVarColumn(p->comm, path, symbol_keys[k], ngenes, &found, &symbols));
        if (found) PetscCall(PetscStrncpy(p->symbol_used, symbol_keys[k], sizeof(p->symbol_used)));
      }
  }
  if (symbols) { /* the var index itself (anndata may name it gene_symbol) adds nothing */
    PetscBool same = PETSC_TRUE;
    for (PetscInt i = 0; i < ngenes && same; i++) same = (PetscBool)!strcmp(symbols[i], names[i]);
    if (same) {
      PetscCall(CsStrArrayDestroy(ngenes, &symbols));
      p->symbol_used[0] = 0;
    }
  }
  PetscCall(CsGeneIndexCreate(ngenes, names, symbols, &p->idx));
  if (symbols) PetscCall(CsStrArrayDestroy(ngenes, &symbols));
  if (p->natoms) { /* atoms given before the genes: map them again */
    for (PetscInt a = 0; a < p->natoms; a++) p->agene[a] = CsGeneIndexFind(p->idx, p->asym[a], NULL);
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsPriorsSetAtoms(CsPriors p, PetscInt natoms, char *const atoms[])
{
  PetscFunctionBeginUser;
  PetscCall(CsStrArrayDestroy(p->natoms, &p->atoms));
  PetscCall(CsStrArrayDestroy(p->natoms, &p->asym));
  PetscCall(PetscFree(p->agene));
  p->natoms = natoms;
  PetscCall(PetscMalloc1(natoms + 1, &p->atoms));
  PetscCall(PetscMalloc1(natoms + 1, &p->asym));
  PetscCall(PetscMalloc1(natoms + 1, &p->agene));
  for (PetscInt a = 0; a < natoms; a++) {
    char sym[256];
    PetscCall(PetscStrallocpy(atoms[a], &p->atoms[a]));
    PetscCall(CsAtomGeneSymbol(atoms[a], p->collapse, p->delim, sym, sizeof(sym)));
    PetscCall(PetscStrallocpy(sym, &p->asym[a]));
    p->agene[a] = p->idx ? CsGeneIndexFind(p->idx, sym, NULL) : -1;
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsPriorsGetGraph(CsPriors p, CsPriorKind kind, const CsPriorGraph **g)
{
  PetscFunctionBeginUser;
  PetscCheck(kind >= 0 && kind < CS_PRIOR_NKINDS, p->comm, PETSC_ERR_ARG_OUTOFRANGE, "no prior of kind %d", (int)kind);
  if (!p->have[kind]) {
    if (kind == CS_PRIOR_DOROTHEA) PetscCall(CsPriorGraphReadDoRothEA(p->comm, p->file[kind], p->levels, &p->graph[kind]));
    else if (kind == CS_PRIOR_TRRUST) PetscCall(CsPriorGraphReadTRRUST(p->comm, p->file[kind], &p->graph[kind]));
    else PetscCall(CsPriorGraphReadGO(p->comm, p->file[kind], &p->graph[kind]));
    p->have[kind] = PETSC_TRUE;
  }
  *g = &p->graph[kind];
  PetscFunctionReturn(0);
}

PetscErrorCode CsPriorsGetRegulons(CsPriors p, const char spec[], const CsPriorGraph **g)
{
  PetscInt  n = 0;
  char    **parts;
  PetscBool want[2] = {PETSC_FALSE, PETSC_FALSE};

  PetscFunctionBeginUser;
  PetscCall(CsStrSplit(spec, "+,", &n, &parts));
  for (PetscInt i = 0; i < n; i++) {
    PetscBool d = (PetscBool)!strcmp(parts[i], "dorothea"), t = (PetscBool)!strcmp(parts[i], "trrust");
    CsCheckAll(p->comm, d || t, "TF prior '%s': use dorothea, trrust, or dorothea+trrust", spec);
    want[0] = (PetscBool)(want[0] || d), want[1] = (PetscBool)(want[1] || t);
  }
  PetscCall(CsStrArrayDestroy(n, &parts));
  CsCheckAll(p->comm, want[0] || want[1], "TF prior '%s': use dorothea, trrust, or dorothea+trrust", spec);
  if (!(want[0] && want[1])) {
    PetscCall(CsPriorsGetGraph(p, want[0] ? CS_PRIOR_DOROTHEA : CS_PRIOR_TRRUST, g));
    PetscFunctionReturn(0);
  }
  if (!p->uni_spec[0]) {
    const CsPriorGraph *a = NULL, *b = NULL;
    PetscCall(CsPriorsGetGraph(p, CS_PRIOR_DOROTHEA, &a));
    PetscCall(CsPriorsGetGraph(p, CS_PRIOR_TRRUST, &b));
    PetscCall(CsPriorGraphUnion(a, b, PETSC_FALSE, &p->uni));
    PetscCall(PetscStrncpy(p->uni_spec, "dorothea+trrust", sizeof(p->uni_spec)));
  }
  *g = &p->uni;
  PetscFunctionReturn(0);
}

PetscErrorCode CsPriorsGetGeneIndex(CsPriors p, CsGeneIndex *idx)
{
  PetscFunctionBeginUser;
  PetscCheck(p->idx, p->comm, PETSC_ERR_ORDER, "CsPriorsSetGenes first");
  *idx = p->idx;
  PetscFunctionReturn(0);
}

PetscErrorCode CsPriorsGetAtomGenes(CsPriors p, PetscInt *natoms, char *const **symbol, const PetscInt **gene)
{
  PetscFunctionBeginUser;
  if (natoms) *natoms = p->natoms;
  if (symbol) *symbol = p->asym;
  if (gene) *gene = p->agene;
  PetscFunctionReturn(0);
}

PetscErrorCode CsPriorsGetAtomNodes(CsPriors p, const CsPriorGraph *g, PetscInt node[])
{
  CsGeneIndex nodes;

  PetscFunctionBeginUser;
  PetscCall(CsGeneIndexCreate(g->nnodes, g->nodes, NULL, &nodes));
  for (PetscInt a = 0; a < p->natoms; a++) node[a] = CsGeneIndexFind(nodes, p->asym[a], NULL);
  PetscCall(CsGeneIndexDestroy(&nodes));
  PetscFunctionReturn(0);
}

/* "A, B, C" of at most max names of the flagged atoms, then "and N more". */
static PetscErrorCode AtomList(CsPriors p, const PetscBool *flag, char buf[], size_t len)
{
  PetscInt n = 0, shown = 0;

  PetscFunctionBeginUser;
  buf[0] = 0;
  for (PetscInt a = 0; a < p->natoms; a++) {
    if (!flag[a]) continue;
    if (shown < 40) {
      if (shown) PetscCall(PetscStrlcat(buf, ", ", len));
      PetscCall(PetscStrlcat(buf, p->atoms[a], len));
      shown++;
    }
    n++;
  }
  if (n > shown) {
    char more[64];
    PetscCall(PetscSNPrintf(more, sizeof(more), " and %" PetscInt_FMT " more", n - shown));
    PetscCall(PetscStrlcat(buf, more, len));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsPriorsViewCoverage(CsPriors p, const CsPriorGraph *g, PetscViewer v)
{
  PetscInt  *ng, *node, *deg, nsrc = 0, nmatch[5] = {0}, ngenes_in = 0, ne = 0, ain = 0, asrc = 0, atgt = 0;
  PetscBool *ingene, *tgt, *unknown;
  char       list[4096];

  PetscFunctionBeginUser;
  PetscCheck(p->idx, p->comm, PETSC_ERR_ORDER, "CsPriorsSetGenes first");
  PetscCall(PetscMalloc3(g->nnodes + 1, &ng, g->nnodes + 1, &deg, p->natoms + 1, &node));
  PetscCall(PetscCalloc3(p->ngenes + 1, &ingene, g->nnodes + 1, &tgt, p->natoms + 1, &unknown));
  for (PetscInt i = 0; i < g->nnodes; i++) {
    CsGeneMatch how;
    ng[i] = CsGeneIndexFind(p->idx, g->nodes[i], &how);
    nmatch[how]++;
    if (ng[i] >= 0 && !ingene[ng[i]]) ingene[ng[i]] = PETSC_TRUE, ngenes_in++;
  }
  CsPriorGraphOutDegree(g, deg);
  for (PetscInt i = 0; i < g->nnodes; i++) nsrc += deg[i] > 0;
  for (PetscInt e = 0; e < g->nedges; e++) {
    if (ng[g->src[e]] >= 0 && ng[g->dst[e]] >= 0) ne++;
    if (ng[g->dst[e]] >= 0) tgt[g->src[e]] = PETSC_TRUE; /* the source has a target among the data's genes */
  }
  PetscCall(CsPriorsGetAtomNodes(p, g, node));
  for (PetscInt a = 0; a < p->natoms; a++) {
    if (node[a] < 0) {
      unknown[a] = PETSC_TRUE;
      continue;
    }
    ain++;
    asrc += deg[node[a]] > 0;
    atgt += tgt[node[a]] ? 1 : 0;
  }
  PetscCall(PetscViewerASCIIPrintf(v, "%s: %" PetscInt_FMT " edges (%" PetscInt_FMT " lines), %" PetscInt_FMT " nodes, %" PetscInt_FMT " sources\n",
                                   g->name, g->nedges, g->nrows, g->nnodes, nsrc));
  PetscCall(PetscViewerASCIIPushTab(v));
  PetscCall(PetscViewerASCIIPrintf(v,
                                   "genes of the data in the graph: %" PetscInt_FMT " of %" PetscInt_FMT " (nodes matched: %" PetscInt_FMT
                                   " exactly, %" PetscInt_FMT " ignoring case, %" PetscInt_FMT " by the symbol column); edges between them: %" PetscInt_FMT
                                   "\n",
                                   ngenes_in, p->ngenes, nmatch[CS_GENE_EXACT], nmatch[CS_GENE_CASE], nmatch[CS_GENE_SYMBOL] + nmatch[CS_GENE_SYMBOL_CASE], ne));
  if (p->natoms) {
    PetscCall(PetscViewerASCIIPrintf(v,
                                     "atoms in the graph: %" PetscInt_FMT " of %" PetscInt_FMT " (%" PetscInt_FMT " as a source, %" PetscInt_FMT
                                     " with a target among the data's genes)\n",
                                     ain, p->natoms, asrc, atgt));
    PetscCall(AtomList(p, unknown, list, sizeof(list)));
    if (list[0]) PetscCall(PetscViewerASCIIPrintf(v, "atoms it does not know: %s\n", list));
  }
  PetscCall(PetscViewerASCIIPopTab(v));
  PetscCall(PetscFree3(ng, deg, node));
  PetscCall(PetscFree3(ingene, tgt, unknown));
  PetscFunctionReturn(0);
}

PetscErrorCode CsPriorsView(CsPriors p, PetscInt nkinds, const CsPriorKind kinds[], PetscViewer v)
{
  const CsPriorKind all[CS_PRIOR_NKINDS] = {CS_PRIOR_DOROTHEA, CS_PRIOR_TRRUST, CS_PRIOR_GO};
  PetscBool        *unknown;
  PetscInt         *node, measured = 0;
  char              list[4096];

  PetscFunctionBeginUser;
  PetscCheck(p->idx, p->comm, PETSC_ERR_ORDER, "CsPriorsSetGenes first");
  if (!kinds) kinds = all, nkinds = CS_PRIOR_NKINDS;
  for (PetscInt a = 0; a < p->natoms; a++) measured += p->agene[a] >= 0;
  PetscCall(PetscViewerASCIIPrintf(v, "priors: %" PetscInt_FMT " genes (symbol column: %s), %" PetscInt_FMT " atoms%s, %" PetscInt_FMT
                                   " of them genes of the data\n",
                                   p->ngenes, p->symbol_used[0] ? p->symbol_used : "none", p->natoms,
                                   p->collapse ? " (guides collapsed to genes)" : "", measured));
  PetscCall(PetscViewerASCIIPushTab(v));
  PetscCall(PetscMalloc2(p->natoms + 1, &unknown, p->natoms + 1, &node));
  for (PetscInt a = 0; a < p->natoms; a++) unknown[a] = PETSC_TRUE;
  for (PetscInt k = 0; k < nkinds; k++) {
    const CsPriorGraph *g;
    PetscCall(CsPriorsGetGraph(p, kinds[k], &g));
    PetscCall(CsPriorsViewCoverage(p, g, v));
    PetscCall(CsPriorsGetAtomNodes(p, g, node));
    for (PetscInt a = 0; a < p->natoms; a++)
      if (node[a] >= 0) unknown[a] = PETSC_FALSE;
  }
  if (p->natoms) {
    PetscCall(AtomList(p, unknown, list, sizeof(list)));
    PetscCall(PetscViewerASCIIPrintf(v, "atoms no prior knows: %s\n", list[0] ? list : "none"));
  }
  PetscCall(PetscViewerASCIIPopTab(v));
  PetscCall(PetscFree2(unknown, node));
  PetscFunctionReturn(0);
}

PetscErrorCode CsPriorsDestroy(CsPriors *pp)
{
  CsPriors p = *pp;

  PetscFunctionBeginUser;
  if (!p) PetscFunctionReturn(0);
  for (int k = 0; k < CS_PRIOR_NKINDS; k++)
    if (p->have[k]) PetscCall(CsPriorGraphFree(&p->graph[k]));
  if (p->uni_spec[0]) PetscCall(CsPriorGraphFree(&p->uni));
  PetscCall(CsGeneIndexDestroy(&p->idx));
  PetscCall(CsStrArrayDestroy(p->natoms, &p->atoms));
  PetscCall(CsStrArrayDestroy(p->natoms, &p->asym));
  PetscCall(PetscFree(p->agene));
  PetscCall(PetscFree(p));
  *pp = NULL;
  PetscFunctionReturn(0);
}
