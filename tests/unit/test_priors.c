/* The priors module:
   - every reader on the embedded files (TRRUST, DoRothEA A-C from the full .tsv.gz and from the plain A-C TSV,
     DoRothEA A-E, the GO graph) against tests/python/priors_edges.py, which recomputes each graph with pandas:
     rows, nodes, and every edge with its merged sign or weight;
   - GEARS's Jaccard graph recomputed from the GO annotations (gene2go) against the embedded top-20 file;
   - the gene-name index (exact, case-insensitive, symbol column, ambiguous keys), guide names, a graph placed
     on genes in both orientations, a union of signed graphs;
   - malformed files: an input error for each (the messages are checked by tests/integration/test_priors.sh). */
#include "testing.h"
#include <cellshift/priors.h>
#include <stdlib.h>

/* Compare g with the edges printed by the pandas recomputation. */
static PetscErrorCode CheckAgainstPython(const CsPriorGraph *g, const char kind[], const char path[], const char levels[])
{
  const char *py = getenv("CS_PYTHON");
  char        script[PETSC_MAX_PATH_LEN], cmd[4 * PETSC_MAX_PATH_LEN], line[4096];
  FILE       *fp;
  long        rows = -1, nodes = -1, edges = -1;
  PetscInt    e = 0, bad = 0;

  PetscFunctionBeginUser;
  PetscCall(CsTestSourcePath("tests/python/priors_edges.py", script));
  PetscCall(PetscSNPrintf(cmd, sizeof(cmd), "%s %s %s %s %s", py ? py : "/usr/bin/python3", script, kind, path, levels ? levels : ""));
  fp = popen(cmd, "r");
  PetscCheck(fp, PETSC_COMM_SELF, PETSC_ERR_SYS, "cannot run %s", cmd);
  CS_EXPECT(fgets(line, sizeof(line), fp) && sscanf(line, "rows %ld nodes %ld edges %ld", &rows, &nodes, &edges) == 3, "%s: no header", cmd);
  CS_EXPECT(rows == g->nrows && nodes == g->nnodes && edges == g->nedges,
            "%s %s: cellshift reads %" PetscInt_FMT " rows, %" PetscInt_FMT " nodes, %" PetscInt_FMT " edges; pandas %ld, %ld, %ld", kind, path,
            g->nrows, g->nnodes, g->nedges, rows, nodes, edges);
  while (fgets(line, sizeof(line), fp)) {
    char  *s = line, *t = strchr(s, '\t'), *w = t ? strchr(t + 1, '\t') : NULL;
    double wv;
    if (!t || !w || e >= g->nedges) {
      bad++;
      break;
    }
    *t++ = 0, *w++ = 0, wv = atof(w);
    if (strcmp(g->nodes[g->src[e]], s) || strcmp(g->nodes[g->dst[e]], t) || fabs(g->weight[e] - wv) > 1e-12) {
      if (bad++ < 5)
        cs_test_fail(__FILE__, __LINE__, "%s edge %" PetscInt_FMT ": cellshift %s -> %s (%g), pandas %s -> %s (%g)", kind, e, g->nodes[g->src[e]],
                     g->nodes[g->dst[e]], g->weight[e], s, t, wv);
    }
    e++;
  }
  CS_EXPECT(pclose(fp) == 0, "%s failed", cmd);
  CS_EXPECT(e == g->nedges && !bad, "%s %s: %" PetscInt_FMT " of %" PetscInt_FMT " edges compared, %" PetscInt_FMT " differ", kind, path, e, g->nedges,
            bad);
  {
    PetscInt npos = 0, nneg = 0, nzero = 0;
    for (PetscInt k = 0; k < g->nedges; k++) npos += g->weight[k] > 0, nneg += g->weight[k] < 0, nzero += g->weight[k] == 0;
    PetscCall(PetscPrintf(PETSC_COMM_SELF, "%s: %" PetscInt_FMT " rows, %" PetscInt_FMT " nodes, %" PetscInt_FMT " edges (+ %" PetscInt_FMT ", - %" PetscInt_FMT
                                           ", 0 %" PetscInt_FMT "): same as pandas\n",
                          g->name, g->nrows, g->nnodes, g->nedges, npos, nneg, nzero));
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode Readers(void)
{
  MPI_Comm     comm = PETSC_COMM_WORLD;
  char         path[PETSC_MAX_PATH_LEN];
  CsPriorGraph g;

  PetscFunctionBeginUser;
  PetscCall(CsTestSourcePath("input/priors/trrust_v2/trrust_rawdata.human.tsv", path));
  PetscCall(CsPriorGraphReadTRRUST(comm, path, &g));
  CS_EXPECT(g.nrows == 9396 && g.nedges == 8427, "TRRUST: %" PetscInt_FMT " rows, %" PetscInt_FMT " pairs", g.nrows, g.nedges);
  PetscCall(CheckAgainstPython(&g, "trrust", path, NULL));
  {
    /* AHR -> CYP1A1 is listed as Activation, Repression and Unknown: contradictory, so 0. */
    PetscInt s = CsPriorGraphFindNode(&g, "AHR"), t = CsPriorGraphFindNode(&g, "CYP1A1"), w = -1;
    for (PetscInt e = 0; e < g.nedges; e++)
      if (g.src[e] == s && g.dst[e] == t) w = e;
    CS_EXPECT(w >= 0 && g.weight[w] == 0, "AHR -> CYP1A1 should be one edge of sign 0");
  }
  PetscCall(CsPriorGraphFree(&g));

  PetscCall(CsTestSourcePath("input/priors/dorothea_hs/dorothea_hs.tsv.gz", path));
  PetscCall(CsPriorGraphReadDoRothEA(comm, path, "ABC", &g));
  CS_EXPECT(g.nedges == 13223, "DoRothEA A-C: %" PetscInt_FMT " edges", g.nedges);
  PetscCall(CheckAgainstPython(&g, "dorothea", path, "ABC"));
  PetscCall(CsPriorGraphFree(&g));
  PetscCall(CsPriorGraphReadDoRothEA(comm, path, "ABCDE", &g));
  CS_EXPECT(g.nrows == 454504, "DoRothEA A-E: %" PetscInt_FMT " rows", g.nrows);
  PetscCall(CheckAgainstPython(&g, "dorothea", path, "ABCDE"));
  PetscCall(CsPriorGraphFree(&g));
  PetscCall(CsTestSourcePath("input/priors/dorothea_hs/dorothea_hs_ABC.tsv", path));
  PetscCall(CsPriorGraphReadDoRothEA(comm, path, NULL, &g));
  PetscCall(CheckAgainstPython(&g, "dorothea", path, "ABC"));
  PetscCall(CsPriorGraphFree(&g));

  PetscCall(CsTestSourcePath("input/priors/go_gene_graph/go_jaccard_top20.tsv.gz", path));
  PetscCall(CsPriorGraphReadGO(comm, path, &g));
  CS_EXPECT(g.nedges == 408405, "GO: %" PetscInt_FMT " edges", g.nedges);
  PetscCall(CheckAgainstPython(&g, "go", path, NULL));

  /* GEARS's recipe from the annotations gives the embedded graph (weights there have 4 decimals). */
  {
    CsGeneSets   s;
    CsPriorGraph j;
    PetscInt     same = 0, wrong = 0, e = 0, k = 0, nsel = 0;
    PetscBool   *src;
    double       t0 = CsTime();
    PetscCall(CsTestSourcePath("input/priors/go_gene_graph/gene2go_symbol.tsv.gz", path));
    PetscCall(CsGeneSetsReadGO(comm, path, &s));
    CS_EXPECT(s.ngenes == 20692 && s.nterms == 18930 && s.member.indptr[s.ngenes] == 298749,
              "gene2go: %" PetscInt_FMT " genes, %" PetscInt_FMT " terms, %lld pairs", s.ngenes, s.nterms, (long long)s.member.indptr[s.ngenes]);
    /* Every 16th gene as a source keeps the test short; the file's edges of the other sources are skipped. */
    PetscCall(PetscMalloc1(s.ngenes, &src));
    for (PetscInt a = 0; a < s.ngenes; a++) src[a] = (PetscBool)(a % 16 == 0);
    PetscCall(CsGeneSetsJaccardGraph(&s, src, 0.1, 20, &j));
    for (PetscInt e2 = 0; e2 < g.nedges; e2++) {
      PetscInt a = CsStrBsearch(g.nodes[g.src[e2]], s.genes, s.ngenes);
      nsel += a >= 0 && src[a];
    }
    /* Both edge lists are sorted by (source, target) symbol: merge them. */
    while (e < g.nedges && k < j.nedges) {
      int c = strcmp(g.nodes[g.src[e]], j.nodes[j.src[k]]);
      if (!c) c = strcmp(g.nodes[g.dst[e]], j.nodes[j.dst[k]]);
      if (!c) {
        if (fabs(g.weight[e] - j.weight[k]) <= 5.01e-5) same++;
        else wrong++;
        e++, k++;
      } else if (c < 0) e++;
      else k++;
    }
    PetscCall(PetscPrintf(PETSC_COMM_SELF, "GO Jaccard graph of every 16th source recomputed in %.1f s: %" PetscInt_FMT " edges; %" PetscInt_FMT
                                           " of the file's %" PetscInt_FMT " edges of those sources found with the same weight, %" PetscInt_FMT " with another\n",
                          CsTime() - t0, j.nedges, same, nsel, wrong));
    CS_EXPECT(!wrong && same == nsel && j.nedges == nsel, "GO Jaccard graph differs from the embedded one");
    PetscCall(PetscFree(src));
    PetscCall(CsPriorGraphFree(&j));
    PetscCall(CsGeneSetsFree(&s));
  }
  PetscCall(CsPriorGraphFree(&g));
  PetscFunctionReturn(0);
}

static PetscErrorCode GeneIndex(void)
{
  char       *names[8]   = {"KLF1", "Gata1", "ENSG01", "ENSG02", "abc", "ABC", "Xyz", "XYZ"};
  char       *symbols[8] = {"", "", "MYC", "sox2", NULL, NULL, "", "SYM"};
  CsGeneIndex idx;
  CsGeneMatch how;
  char        out[64];

  PetscFunctionBeginUser;
  PetscCall(CsGeneIndexCreate(8, names, symbols, &idx));
  CS_EXPECT(CsGeneIndexFind(idx, "KLF1", &how) == 0 && how == CS_GENE_EXACT, "KLF1 exact");
  CS_EXPECT(CsGeneIndexFind(idx, "klf1", &how) == 0 && how == CS_GENE_CASE, "klf1 ignoring case");
  CS_EXPECT(CsGeneIndexFind(idx, "GATA1", &how) == 1 && how == CS_GENE_CASE, "GATA1 -> Gata1");
  CS_EXPECT(CsGeneIndexFind(idx, "MYC", &how) == 2 && how == CS_GENE_SYMBOL, "MYC by the symbol column");
  CS_EXPECT(CsGeneIndexFind(idx, "SOX2", &how) == 3 && how == CS_GENE_SYMBOL_CASE, "SOX2 by the symbol column ignoring case");
  CS_EXPECT(CsGeneIndexFind(idx, "ensg01", &how) == 2 && how == CS_GENE_CASE, "ensg01");
  CS_EXPECT(CsGeneIndexFind(idx, "ABC", &how) == 5 && how == CS_GENE_EXACT, "ABC exact beats the ambiguous case-insensitive key");
  CS_EXPECT(CsGeneIndexFind(idx, "Abc", &how) == -1 && how == CS_GENE_NONE, "Abc is ambiguous (abc, ABC)");
  /* "xyz" is ambiguous among the names; the symbol column must not resolve it to another gene. */
  CS_EXPECT(CsGeneIndexFind(idx, "SYM", &how) == 7 && how == CS_GENE_SYMBOL, "SYM");
  CS_EXPECT(CsGeneIndexFind(idx, "xyz", &how) == -1, "xyz is ambiguous");
  CS_EXPECT(CsGeneIndexFind(idx, "TP53", &how) == -1 && how == CS_GENE_NONE, "TP53 is no gene here");
  CS_EXPECT(CsGeneIndexFind(idx, "", &how) == -1, "empty symbol");
  CS_EXPECT(CsGeneIndexSize(idx) == 8, "size");

  PetscCall(CsAtomGeneSymbol("KLF1_1", PETSC_TRUE, "_", out, sizeof(out)));
  CS_EXPECT(!strcmp(out, "KLF1"), "KLF1_1 -> %s", out);
  PetscCall(CsAtomGeneSymbol("KLF1_12", PETSC_FALSE, "_", out, sizeof(out)));
  CS_EXPECT(!strcmp(out, "KLF1_12"), "no collapse: %s", out);
  PetscCall(CsAtomGeneSymbol("HLA-A", PETSC_TRUE, "_", out, sizeof(out)));
  CS_EXPECT(!strcmp(out, "HLA-A"), "HLA-A -> %s", out);
  PetscCall(CsAtomGeneSymbol("NFKB1_2b", PETSC_TRUE, "_", out, sizeof(out)));
  CS_EXPECT(!strcmp(out, "NFKB1_2b"), "a suffix that is not a number stays: %s", out);
  PetscCall(CsAtomGeneSymbol("A_B_2", PETSC_TRUE, "_", out, sizeof(out)));
  CS_EXPECT(!strcmp(out, "A_B"), "only the last suffix goes: %s", out);
  PetscCall(CsAtomGeneSymbol("_3", PETSC_TRUE, "_", out, sizeof(out)));
  CS_EXPECT(!strcmp(out, "_3"), "nothing before the suffix: %s", out);
  PetscCall(CsAtomGeneSymbol("ZAP70-1", PETSC_TRUE, "-", out, sizeof(out)));
  CS_EXPECT(!strcmp(out, "ZAP70"), "another delimiter: %s", out);

  /* A small signed graph on genes: TF -> targets, an edge to an unmeasured gene, a self-loop, two symbols of one
     gene (klf1 and KLF1 both map to gene 0). */
  {
    CsPriorGraph g = {0}, h = {0}, u;
    CsCSR        A;
    PetscInt     node_gene[6];
    g.nnodes = 6, g.nedges = 6;
    {
      char *nodes[6] = {"GATA1", "KLF1", "MYC", "NOPE", "Xyz", "klf1"};
      PetscInt src[6] = {0, 0, 1, 1, 2, 5}, dst[6] = {1, 3, 1, 2, 0, 2};
      double   w[6] = {1, -1, 1, -1, 1, 1};
      PetscCall(PetscMalloc1(6, &g.nodes));
      for (int i = 0; i < 6; i++) PetscCall(PetscStrallocpy(nodes[i], &g.nodes[i]));
      PetscCall(PetscMalloc3(6, &g.src, 6, &g.dst, 6, &g.weight));
      for (int i = 0; i < 6; i++) g.src[i] = src[i], g.dst[i] = dst[i], g.weight[i] = w[i];
    }
    PetscCall(CsPriorGraphOnGenes(&g, idx, PETSC_FALSE, PETSC_FALSE, &A, node_gene));
    /* genes: GATA1 -> 1, KLF1 -> 0, MYC -> 2, NOPE -> -1, Xyz -> 6, klf1 -> 0 (case-insensitive) */
    CS_EXPECT(node_gene[0] == 1 && node_gene[1] == 0 && node_gene[2] == 2 && node_gene[3] == -1 && node_gene[4] == 6 && node_gene[5] == 0,
              "node genes %d %d %d %d %d %d", (int)node_gene[0], (int)node_gene[1], (int)node_gene[2], (int)node_gene[3], (int)node_gene[4],
              (int)node_gene[5]);
    /* by source: KLF1 (0) -> MYC (2) with -1 first (klf1 -> MYC +1 comes later and loses); GATA1 (1) -> KLF1 (0) +1;
       MYC (2) -> GATA1 (1) +1; the self-loop KLF1 -> KLF1 and the edge to NOPE are dropped. */
    CS_EXPECT(A.nrows == 8 && A.indptr[8] == 3, "%" PetscInt_FMT " rows, %lld entries", A.nrows, (long long)A.indptr[8]);
    CS_EXPECT(A.indptr[1] == 1 && A.indices[0] == 2 && A.data[0] == -1, "KLF1 -> MYC -1");
    CS_EXPECT(A.indptr[2] == 2 && A.indices[1] == 0 && A.data[1] == 1, "GATA1 -> KLF1");
    CS_EXPECT(A.indptr[3] == 3 && A.indices[2] == 1 && A.data[2] == 1, "MYC -> GATA1");
    PetscCall(CsCSRFree(&A));
    PetscCall(CsPriorGraphOnGenes(&g, idx, PETSC_TRUE, PETSC_TRUE, &A, NULL));
    /* by target with self-loops: row KLF1 lists GATA1 and KLF1 itself; row MYC lists KLF1 (-1); row GATA1 lists MYC */
    CS_EXPECT(A.indptr[8] == 4 && A.indptr[1] == 2 && A.indices[0] == 0 && A.indices[1] == 1, "regulators of KLF1");
    CS_EXPECT(A.indptr[2] - A.indptr[1] == 1 && A.indices[A.indptr[1]] == 2, "regulators of GATA1");
    CS_EXPECT(A.indptr[3] - A.indptr[2] == 1 && A.indices[A.indptr[2]] == 0 && A.data[A.indptr[2]] == -1, "regulators of MYC");
    PetscCall(CsCSRFree(&A));

    /* Union of signed graphs: same sign kept, unknown (0) yields, contradiction gives 0. */
    h.nnodes = 3, h.nedges = 3;
    {
      char    *nodes[3] = {"GATA1", "KLF1", "NEW"};
      PetscInt src[3] = {0, 0, 1}, dst[3] = {1, 2, 0};
      double   w[3] = {-1, 0, 1};
      PetscCall(PetscMalloc1(3, &h.nodes));
      for (int i = 0; i < 3; i++) PetscCall(PetscStrallocpy(nodes[i], &h.nodes[i]));
      PetscCall(PetscMalloc3(3, &h.src, 3, &h.dst, 3, &h.weight));
      for (int i = 0; i < 3; i++) h.src[i] = src[i], h.dst[i] = dst[i], h.weight[i] = w[i];
    }
    PetscCall(CsPriorGraphUnion(&g, &h, PETSC_FALSE, &u));
    /* the union's nodes are the ends of its edges: Xyz, without an edge, is not one */
    CS_EXPECT(u.nnodes == 6 && u.nedges == 8, "union: %" PetscInt_FMT " nodes, %" PetscInt_FMT " edges", u.nnodes, u.nedges);
    for (PetscInt e = 0; e < u.nedges; e++) {
      const char *s = u.nodes[u.src[e]], *t = u.nodes[u.dst[e]];
      if (!strcmp(s, "GATA1") && !strcmp(t, "KLF1")) CS_EXPECT(u.weight[e] == 0, "GATA1 -> KLF1: +1 and -1 give 0, not %g", u.weight[e]);
      if (!strcmp(s, "GATA1") && !strcmp(t, "NOPE")) CS_EXPECT(u.weight[e] == -1, "GATA1 -> NOPE stays -1");
      if (!strcmp(s, "KLF1") && !strcmp(t, "GATA1")) CS_EXPECT(u.weight[e] == 1, "KLF1 -> GATA1 from the second graph");
    }
    PetscCall(CsPriorGraphFree(&u));
    PetscCall(CsPriorGraphFree(&h));
    PetscCall(CsPriorGraphFree(&g));
  }
  PetscCall(CsGeneIndexDestroy(&idx));
  PetscFunctionReturn(0);
}

/* A file with `text` (NULL: no file), read by `kind`: must be an input error. */
static PetscErrorCode ExpectBad(const char dir[], const char name[], const char text[], CsPriorKind kind)
{
  char           path[PETSC_MAX_PATH_LEN];
  FILE          *fp;
  CsPriorGraph   g;
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  PetscCall(CsPathJoin(dir, name, path));
  if (text) { /* NULL: a file that does not exist */
    fp = fopen(path, "w");
    PetscCheck(fp, PETSC_COMM_SELF, PETSC_ERR_FILE_OPEN, "cannot write %s", path);
    fputs(text, fp);
    fclose(fp);
  }
  PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
  ierr = kind == CS_PRIOR_TRRUST ? CsPriorGraphReadTRRUST(PETSC_COMM_WORLD, path, &g)
       : kind == CS_PRIOR_DOROTHEA ? CsPriorGraphReadDoRothEA(PETSC_COMM_WORLD, path, "ABC", &g)
                                   : CsPriorGraphReadGO(PETSC_COMM_WORLD, path, &g);
  PetscCall(PetscPopErrorHandler());
  CS_EXPECT(ierr == CS_ERR_INPUT, "%s: error %d, expected an input error", name, (int)ierr);
  PetscFunctionReturn(0);
}

static PetscErrorCode Malformed(void)
{
  char dir[PETSC_MAX_PATH_LEN];

  PetscFunctionBeginUser;
  PetscCall(CsTestTempDir(PETSC_COMM_WORLD, dir));
  PetscCall(ExpectBad(dir, "mode.tsv", "A\tB\tActivation\t1\nA\tC\tActiv\t2\n", CS_PRIOR_TRRUST));
  PetscCall(ExpectBad(dir, "fields.tsv", "A\tB\tActivation\t1\nA\tC\tRepression\n", CS_PRIOR_TRRUST));
  PetscCall(ExpectBad(dir, "empty.tsv", "", CS_PRIOR_TRRUST));
  PetscCall(ExpectBad(dir, "nofile.tsv", NULL, CS_PRIOR_TRRUST));
  PetscCall(ExpectBad(dir, "header.tsv", "tf\tconfidence\ttarget\n", CS_PRIOR_DOROTHEA));
  PetscCall(ExpectBad(dir, "mor.tsv", "tf\tconfidence\ttarget\tmor\nA\tA\tB\t1\nA\tB\tC\t2\n", CS_PRIOR_DOROTHEA));
  PetscCall(ExpectBad(dir, "level.tsv", "tf\tconfidence\ttarget\tmor\nA\tF\tB\t1\n", CS_PRIOR_DOROTHEA));
  PetscCall(ExpectBad(dir, "jaccard.tsv", "source\ttarget\tjaccard\nA\tB\t0.5\nA\tC\tNaN\n", CS_PRIOR_GO));
  PetscCall(ExpectBad(dir, "space.tsv", "source\ttarget\tjaccard\nA B\tB\t0.5\n", CS_PRIOR_GO));
  PetscCall(ExpectBad(dir, "gzip.tsv.gz", "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\x4b\x4c", CS_PRIOR_GO));
  {
    char cmd[2 * PETSC_MAX_PATH_LEN];
    PetscCall(PetscSNPrintf(cmd, sizeof(cmd), "rm -rf %s", dir));
    CS_EXPECT(system(cmd) == 0, "cannot remove %s", dir);
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode Body(void)
{
  PetscFunctionBeginUser;
  PetscCall(GeneIndex());
  PetscCall(Malformed());
  PetscCall(Readers());
  PetscFunctionReturn(0);
}

int main(int argc, char **argv) { return CsTestMain(argc, argv, Body); }
