/* GO annotations (gene -> term sets) and GEARS's Jaccard gene graph. See include/cellshift/priors.h. */
#include "priorsimpl.h"

static int CmpInt32(const void *a, const void *b)
{
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

static PetscErrorCode ParseGeneSets(const char path[], CsGeneSets *s)
{
  CsLineReader r;
  char        *line, *f[64];
  int          cg = -1, ct = -1, nh;
  PetscInt     n = 0, cap = 0;
  char       **gs = NULL, **ts = NULL;

  PetscFunctionBeginUser;
  PetscCall(CsLineReaderOpen(path, &r));
  PetscCall(CsLineReaderNext(&r, &line));
  PetscCheck(line, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: empty file", path);
  nh = CsSplitTabs(line, f, 64);
  for (int i = 0; i < PetscMin(nh, 64); i++) {
    if (!strcmp(f[i], "gene_symbol")) cg = i;
    if (!strcmp(f[i], "go_id")) ct = i;
  }
  PetscCheck(cg >= 0 && ct >= 0, PETSC_COMM_SELF, CS_ERR_INPUT, "%s:1: the header needs the columns gene_symbol and go_id", path);
  for (;;) {
    PetscCall(CsLineReaderNext(&r, &line));
    if (!line) break;
    if (!line[0]) continue;
    PetscCheck(CsSplitTabs(line, f, 64) == nh, PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%" PetscInt_FMT ": not %d tab-separated fields", path, r.line,
               nh);
    PetscCheck(f[cg][0] && f[ct][0], PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%" PetscInt_FMT ": empty gene symbol or GO id", path, r.line);
    if (n == cap) {
      cap = cap ? 2 * cap : 1 << 16;
      PetscCall(PetscRealloc(sizeof(char *) * (size_t)cap, &gs));
      PetscCall(PetscRealloc(sizeof(char *) * (size_t)cap, &ts));
    }
    PetscCall(PetscStrallocpy(f[cg], &gs[n]));
    PetscCall(PetscStrallocpy(f[ct], &ts[n]));
    n++;
  }
  PetscCall(CsLineReaderClose(&r));
  PetscCheck(n > 0, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: no annotations", path);

  /* Sorted unique genes and terms, then the membership pattern row by row. */
  {
    char   **sg, **st;
    PetscInt *cnt, *pos;
    int32_t  *tmp;
    PetscCall(PetscMalloc2(n, &sg, n, &st));
    PetscCall(PetscArraycpy(sg, gs, n));
    PetscCall(PetscArraycpy(st, ts, n));
    CsStrSort(n, sg), CsStrSort(n, st);
    PetscCall(PetscMalloc1(n, &s->genes));
    PetscCall(PetscMalloc1(n, &s->terms));
    for (PetscInt i = 0; i < n; i++) {
      if (!s->ngenes || strcmp(s->genes[s->ngenes - 1], sg[i])) PetscCall(PetscStrallocpy(sg[i], &s->genes[s->ngenes++]));
      if (!s->nterms || strcmp(s->terms[s->nterms - 1], st[i])) PetscCall(PetscStrallocpy(st[i], &s->terms[s->nterms++]));
    }
    PetscCall(PetscFree2(sg, st));
    PetscCall(PetscCalloc1(s->ngenes + 1, &cnt));
    PetscCall(PetscMalloc2(n, &pos, n, &tmp));
    for (PetscInt i = 0; i < n; i++) pos[i] = CsStrBsearch(gs[i], s->genes, s->ngenes), cnt[pos[i] + 1]++;
    for (PetscInt g = 0; g < s->ngenes; g++) cnt[g + 1] += cnt[g];
    for (PetscInt i = 0; i < n; i++) tmp[cnt[pos[i]]++] = (int32_t)CsStrBsearch(ts[i], s->terms, s->nterms);
    for (PetscInt g = s->ngenes; g > 0; g--) cnt[g] = cnt[g - 1];
    cnt[0] = 0;
    s->member.nrows = s->ngenes, s->member.ncols = s->nterms;
    PetscCall(PetscMalloc1(s->ngenes + 1, &s->member.indptr));
    PetscCall(PetscMalloc1(n, &s->member.indices));
    s->member.indptr[0] = 0;
    for (PetscInt g = 0; g < s->ngenes; g++) { /* sort each row, drop repeated pairs */
      int32_t *row = tmp + cnt[g];
      PetscInt len = cnt[g + 1] - cnt[g];
      int64_t  e   = s->member.indptr[g];
      qsort(row, (size_t)len, sizeof(int32_t), CmpInt32);
      for (PetscInt k = 0; k < len; k++)
        if (!k || row[k] != row[k - 1]) s->member.indices[e++] = row[k];
      s->member.indptr[g + 1] = e;
    }
    PetscCall(PetscFree2(pos, tmp));
    PetscCall(PetscFree(cnt));
  }
  PetscCall(PetscMalloc1(s->member.indptr[s->ngenes] + 1, &s->member.data));
  for (int64_t e = 0; e < s->member.indptr[s->ngenes]; e++) s->member.data[e] = 1;
  PetscCall(CsStrArrayDestroy(n, &gs));
  PetscCall(CsStrArrayDestroy(n, &ts));
  PetscFunctionReturn(0);
}

PetscErrorCode CsGeneSetsReadGO(MPI_Comm comm, const char path[], CsGeneSets *s)
{
  PetscMPIInt    rank;
  PetscErrorCode ierr = 0;
  int64_t        nnz  = 0;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(s, sizeof(*s)));
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  if (!rank) ierr = ParseGeneSets(path, s);
  PetscCall(CsAgreeCode(comm, ierr, "cannot read the GO annotations"));
  PetscCall(CsStringsBcast(comm, &s->ngenes, &s->genes));
  PetscCall(CsStringsBcast(comm, &s->nterms, &s->terms));
  if (!rank) nnz = s->member.indptr[s->ngenes];
  PetscCallMPI(MPI_Bcast(&nnz, 1, MPI_INT64_T, 0, comm));
  s->member.nrows = s->ngenes, s->member.ncols = s->nterms;
  if (rank) {
    PetscCall(PetscMalloc1(s->ngenes + 1, &s->member.indptr));
    PetscCall(PetscMalloc1(nnz + 1, &s->member.indices));
    PetscCall(PetscMalloc1(nnz + 1, &s->member.data));
  }
  PetscCallMPI(MPI_Bcast(s->member.indptr, (PetscMPIInt)(s->ngenes + 1), MPI_INT64_T, 0, comm));
  PetscCallMPI(MPI_Bcast(s->member.indices, (PetscMPIInt)nnz, MPI_INT32_T, 0, comm));
  PetscCallMPI(MPI_Bcast(s->member.data, (PetscMPIInt)nnz, MPI_FLOAT, 0, comm));
  PetscFunctionReturn(0);
}

PetscErrorCode CsGeneSetsFree(CsGeneSets *s)
{
  PetscFunctionBeginUser;
  PetscCall(CsStrArrayDestroy(s->ngenes, &s->genes));
  PetscCall(CsStrArrayDestroy(s->nterms, &s->terms));
  PetscCall(CsCSRFree(&s->member));
  PetscCall(PetscMemzero(s, sizeof(*s)));
  PetscFunctionReturn(0);
}

typedef struct {
  double   j;
  PetscInt b;
} Cand;

/* Larger Jaccard first; on ties the alphabetically first target (genes are sorted, so the smaller index). */
static int CmpCand(const void *x, const void *y)
{
  const Cand *a = x, *b = y;
  if (a->j != b->j) return a->j > b->j ? -1 : 1;
  return (a->b > b->b) - (a->b < b->b);
}

PetscErrorCode CsGeneSetsJaccardGraph(const CsGeneSets *s, const PetscBool sources[], double threshold, PetscInt topk, CsPriorGraph *g)
{
  PetscInt  G = s->ngenes, T = s->nterms, ntouch, cap = 0;
  int64_t  *tptr;
  int32_t  *tgenes;
  PetscInt *cnt, *touched;
  Cand     *cand;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(g, sizeof(*g)));
  PetscCheck(topk >= 1, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE, "GO graph: top-k must be at least 1");
  /* term -> genes (the transpose of the membership pattern) */
  PetscCall(PetscCalloc1(T + 1, &tptr));
  PetscCall(PetscMalloc1(s->member.indptr[G] + 1, &tgenes));
  for (int64_t e = 0; e < s->member.indptr[G]; e++) tptr[s->member.indices[e] + 1]++;
  for (PetscInt t = 0; t < T; t++) tptr[t + 1] += tptr[t];
  {
    int64_t *fill;
    PetscCall(PetscMalloc1(T + 1, &fill));
    PetscCall(PetscArraycpy(fill, tptr, T + 1));
    for (PetscInt a = 0; a < G; a++)
      for (int64_t e = s->member.indptr[a]; e < s->member.indptr[a + 1]; e++) tgenes[fill[s->member.indices[e]]++] = (int32_t)a;
    PetscCall(PetscFree(fill));
  }
  PetscCall(PetscCalloc1(G + 1, &cnt));
  PetscCall(PetscMalloc2(G + 1, &touched, G + 1, &cand));
  PetscCall(PetscStrncpy(g->name, "go", sizeof(g->name)));
  for (PetscInt a = 0; a < G; a++) {
    PetscInt na = (PetscInt)(s->member.indptr[a + 1] - s->member.indptr[a]), nc = 0;
    ntouch      = 0;
    if (sources && !sources[a]) continue;
    for (int64_t e = s->member.indptr[a]; e < s->member.indptr[a + 1]; e++) {
      PetscInt t = s->member.indices[e];
      for (int64_t k = tptr[t]; k < tptr[t + 1]; k++) {
        PetscInt b = tgenes[k];
        if (b == a) continue;
        if (!cnt[b]++) touched[ntouch++] = b;
      }
    }
    for (PetscInt i = 0; i < ntouch; i++) {
      PetscInt b = touched[i], nb = (PetscInt)(s->member.indptr[b + 1] - s->member.indptr[b]);
      double   j = (double)cnt[b] / (double)(na + nb - cnt[b]);
      if (j > threshold) cand[nc].j = j, cand[nc].b = b, nc++;
      cnt[b] = 0;
    }
    qsort(cand, (size_t)nc, sizeof(Cand), CmpCand);
    nc = PetscMin(nc, topk);
    if (g->nedges + nc > cap) {
      cap = PetscMax(2 * cap, g->nedges + nc + 1024);
      PetscCall(PetscRealloc(sizeof(PetscInt) * (size_t)cap, &g->src));
      PetscCall(PetscRealloc(sizeof(PetscInt) * (size_t)cap, &g->dst));
      PetscCall(PetscRealloc(sizeof(double) * (size_t)cap, &g->weight));
    }
    /* edges sorted by target within the source, as every graph is */
    for (PetscInt i = 0; i < nc; i++)
      for (PetscInt k = i + 1; k < nc; k++)
        if (cand[k].b < cand[i].b) {
          Cand tmp = cand[i];
          cand[i] = cand[k], cand[k] = tmp;
        }
    for (PetscInt i = 0; i < nc; i++) g->src[g->nedges] = a, g->dst[g->nedges] = cand[i].b, g->weight[g->nedges++] = cand[i].j;
  }
  PetscCall(PetscFree(tptr));
  PetscCall(PetscFree(tgenes));
  PetscCall(PetscFree(cnt));
  PetscCall(PetscFree2(touched, cand));
  /* The nodes are the annotated genes (a gene without a neighbour stays a node). Arrays in PetscMalloc3 layout
     would not match the reallocated ones, so copy them into it. */
  {
    PetscInt *src = g->src, *dst = g->dst;
    double   *w   = g->weight;
    PetscCall(PetscMalloc3(g->nedges + 1, &g->src, g->nedges + 1, &g->dst, g->nedges + 1, &g->weight));
    PetscCall(PetscArraycpy(g->src, src, g->nedges));
    PetscCall(PetscArraycpy(g->dst, dst, g->nedges));
    PetscCall(PetscArraycpy(g->weight, w, g->nedges));
    PetscCall(PetscFree(src));
    PetscCall(PetscFree(dst));
    PetscCall(PetscFree(w));
  }
  g->nnodes = G;
  PetscCall(PetscMalloc1(G + 1, &g->nodes));
  for (PetscInt a = 0; a < G; a++) PetscCall(PetscStrallocpy(s->genes[a], &g->nodes[a]));
  g->nrows = g->nedges;
  PetscFunctionReturn(0);
}
