/* The gene-name index, guide names, and graphs placed on a dataset's genes. See include/cellshift/priors.h. */
#include "priorsimpl.h"
#include <ctype.h>

const char *const CsGeneMatches[] = {"none", "exact", "case-insensitive", "symbol column", "symbol column, case-insensitive",
                                     "CsGeneMatch", "CS_GENE_", NULL};

/* Sorted keys and the gene of each; a key of two genes has gene -1 (ambiguous: matches neither). */
typedef struct {
  PetscInt  m;
  char    **key;
  PetscInt *gene;
} KeyTable;

struct _n_CsGeneIndex {
  PetscInt n;
  KeyTable exact, lower, sym, symlower;
};

typedef struct {
  char    *key;
  PetscInt gene;
} KeyGene;

static int CmpKeyGene(const void *a, const void *b)
{
  const KeyGene *x = a, *y = b;
  int            c = strcmp(x->key, y->key);
  return c ? c : (x->gene > y->gene) - (x->gene < y->gene);
}

static void Lower(char *s)
{
  for (; *s; s++) *s = (char)tolower((unsigned char)*s);
}

/* Table of names[0..n) (NULL or "" entries skipped), lower-cased when lower. */
static PetscErrorCode KeyTableBuild(PetscInt n, char *const names[], PetscBool lower, KeyTable *t)
{
  KeyGene *kg;
  PetscInt m = 0;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(t, sizeof(*t)));
  if (!names) PetscFunctionReturn(0);
  PetscCall(PetscMalloc1(n + 1, &kg));
  for (PetscInt i = 0; i < n; i++) {
    if (!names[i] || !names[i][0]) continue;
    PetscCall(PetscStrallocpy(names[i], &kg[m].key));
    if (lower) Lower(kg[m].key);
    kg[m++].gene = i;
  }
  qsort(kg, (size_t)m, sizeof(KeyGene), CmpKeyGene);
  PetscCall(PetscMalloc1(m + 1, &t->key));
  PetscCall(PetscMalloc1(m + 1, &t->gene));
  for (PetscInt i = 0; i < m; i++) {
    if (t->m && !strcmp(t->key[t->m - 1], kg[i].key)) {
      if (t->gene[t->m - 1] != kg[i].gene) t->gene[t->m - 1] = -1;
      PetscCall(PetscFree(kg[i].key));
      continue;
    }
    t->key[t->m] = kg[i].key, t->gene[t->m++] = kg[i].gene;
  }
  PetscCall(PetscFree(kg));
  PetscFunctionReturn(0);
}

static PetscErrorCode KeyTableFree(KeyTable *t)
{
  PetscFunctionBeginUser;
  PetscCall(CsStrArrayDestroy(t->m, &t->key));
  PetscCall(PetscFree(t->gene));
  PetscFunctionReturn(0);
}

/* gene of key: >= 0 found, -1 ambiguous, -2 absent */
static PetscInt KeyTableFind(const KeyTable *t, const char key[])
{
  PetscInt i = CsStrBsearch(key, t->key, t->m);
  return i < 0 ? -2 : t->gene[i];
}

PetscErrorCode CsGeneIndexCreate(PetscInt ngenes, char *const names[], char *const symbols[], CsGeneIndex *out)
{
  CsGeneIndex idx;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&idx));
  idx->n = ngenes;
  PetscCall(KeyTableBuild(ngenes, names, PETSC_FALSE, &idx->exact));
  PetscCall(KeyTableBuild(ngenes, names, PETSC_TRUE, &idx->lower));
  PetscCall(KeyTableBuild(ngenes, symbols, PETSC_FALSE, &idx->sym));
  PetscCall(KeyTableBuild(ngenes, symbols, PETSC_TRUE, &idx->symlower));
  *out = idx;
  PetscFunctionReturn(0);
}

PetscInt CsGeneIndexFind(CsGeneIndex idx, const char symbol[], CsGeneMatch *how)
{
  const KeyTable *t[4] = {&idx->exact, &idx->lower, &idx->sym, &idx->symlower};
  char            low[256];
  size_t          len = strlen(symbol);

  if (how) *how = CS_GENE_NONE;
  if (!len || len >= sizeof(low)) return -1;
  memcpy(low, symbol, len + 1);
  Lower(low);
  /* An ambiguous key does not fall through to a looser rule: a case-insensitive key shared by two genes is not
     resolved by the symbol column either. */
  for (int k = 0; k < 4; k++) {
    PetscInt g = KeyTableFind(t[k], k % 2 ? low : symbol);
    if (g == -2) continue;
    if (g >= 0 && how) *how = (CsGeneMatch)(CS_GENE_EXACT + k);
    return g;
  }
  return -1;
}

PetscInt CsGeneIndexSize(CsGeneIndex idx) { return idx->n; }

PetscErrorCode CsGeneIndexDestroy(CsGeneIndex *idx)
{
  PetscFunctionBeginUser;
  if (!*idx) PetscFunctionReturn(0);
  PetscCall(KeyTableFree(&(*idx)->exact));
  PetscCall(KeyTableFree(&(*idx)->lower));
  PetscCall(KeyTableFree(&(*idx)->sym));
  PetscCall(KeyTableFree(&(*idx)->symlower));
  PetscCall(PetscFree(*idx));
  PetscFunctionReturn(0);
}

PetscErrorCode CsAtomGeneSymbol(const char atom[], PetscBool collapse, const char delim[], char out[], size_t len)
{
  PetscFunctionBeginUser;
  if (out != atom) PetscCall(PetscStrncpy(out, atom, len));
  if (collapse && delim && delim[0]) {
    size_t      dl = strlen(delim);
    const char *cut = NULL;
    for (const char *p = strstr(out, delim); p; p = strstr(p + 1, delim)) cut = p;
    if (cut && cut > out && cut[dl]) {
      PetscBool digits = PETSC_TRUE;
      for (const char *q = cut + dl; *q; q++) digits = digits && isdigit((unsigned char)*q);
      if (digits) out[cut - out] = 0;
    }
  }
  PetscFunctionReturn(0);
}

typedef struct {
  PetscInt r, c, e; /* row, column, edge index in the graph */
  float    w;
} Entry;

static int CmpEntry(const void *a, const void *b)
{
  const Entry *x = a, *y = b;
  if (x->r != y->r) return x->r < y->r ? -1 : 1;
  if (x->c != y->c) return x->c < y->c ? -1 : 1;
  return (x->e > y->e) - (x->e < y->e);
}

PetscErrorCode CsPriorGraphOnGenes(const CsPriorGraph *g, CsGeneIndex idx, PetscBool by_target, PetscBool keep_self, CsCSR *A,
                                   PetscInt node_gene[])
{
  PetscInt *ng, n = 0, G = idx->n;
  Entry    *E;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(A, sizeof(*A)));
  PetscCall(PetscMalloc1(g->nnodes + 1, &ng));
  for (PetscInt i = 0; i < g->nnodes; i++) ng[i] = CsGeneIndexFind(idx, g->nodes[i], NULL);
  PetscCall(PetscMalloc1(g->nedges + 1, &E));
  for (PetscInt e = 0; e < g->nedges; e++) {
    PetscInt s = ng[g->src[e]], t = ng[g->dst[e]];
    if (s < 0 || t < 0 || (s == t && !keep_self)) continue;
    E[n].r = by_target ? t : s, E[n].c = by_target ? s : t, E[n].e = e, E[n].w = (float)g->weight[e];
    n++;
  }
  qsort(E, (size_t)n, sizeof(Entry), CmpEntry);
  A->nrows = A->ncols = G;
  PetscCall(PetscCalloc1(G + 1, &A->indptr));
  PetscCall(PetscMalloc1(n + 1, &A->indices));
  PetscCall(PetscMalloc1(n + 1, &A->data));
  {
    int64_t k = 0;
    for (PetscInt i = 0; i < n; i++) {
      if (i && E[i].r == E[i - 1].r && E[i].c == E[i - 1].c) continue; /* first edge in graph order wins */
      A->indices[k] = (int32_t)E[i].c, A->data[k] = E[i].w, k++;
      A->indptr[E[i].r + 1]++;
    }
    for (PetscInt r = 0; r < G; r++) A->indptr[r + 1] += A->indptr[r];
  }
  if (node_gene) PetscCall(PetscArraycpy(node_gene, ng, g->nnodes));
  PetscCall(PetscFree(E));
  PetscCall(PetscFree(ng));
  PetscFunctionReturn(0);
}
