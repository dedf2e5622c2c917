/* Readers of the TF -> target and GO graph files. See include/cellshift/priors.h.

   Rank 0 parses the file into an edge list (so that a malformed line stops the read with its line number),
   builds the graph (sorted nodes, sorted edges, repeated pairs merged) and broadcasts it; the verdict is agreed on
   collectively, so a bad file stops every rank with rank 0's message. */
#include "priorsimpl.h"
#include <errno.h>
#include <math.h>

const char *const CsPriorKinds[] = {"dorothea", "trrust", "go", "CsPriorKind", "CS_PRIOR_", NULL};

/* -------------------------------------------------------------------------------------------------------------
   Lines and fields. */
PetscErrorCode CsLineReaderOpen(const char path[], CsLineReader *r)
{
  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(r, sizeof(*r)));
  r->path = path;
  r->f    = gzopen(path, "rb");
  PetscCheck(r->f, PETSC_COMM_SELF, CS_ERR_INPUT, "cannot open %s: %s", path, errno ? strerror(errno) : "gzopen failed");
  r->cap = 1 << 16;
  PetscCall(PetscMalloc1(r->cap, &r->buf));
  PetscFunctionReturn(0);
}

PetscErrorCode CsLineReaderNext(CsLineReader *r, char **line)
{
  size_t len = 0;

  PetscFunctionBeginUser;
  *line = NULL;
  for (;;) { /* a line longer than the buffer is read in pieces into a grown buffer */
    if (!gzgets(r->f, r->buf + len, (int)(r->cap - len))) break;
    len += strlen(r->buf + len);
    if (len && r->buf[len - 1] == '\n') break;
    if (len + 1 < r->cap) break; /* end of file without a final newline */
    PetscCall(PetscRealloc(2 * r->cap, &r->buf));
    r->cap *= 2;
  }
  {
    int         err;
    const char *msg = gzerror(r->f, &err);
    /* Z_BUF_ERROR is zlib's "unexpected end of file": a truncated gzip stream */
    PetscCheck(err == Z_OK, PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%" PetscInt_FMT ": cannot read the file (%s)", r->path, r->line + 1,
               err == Z_BUF_ERROR ? "truncated gzip data" : msg);
  }
  if (!len) PetscFunctionReturn(0);
  r->line++;
  while (len && (r->buf[len - 1] == '\n' || r->buf[len - 1] == '\r')) r->buf[--len] = 0;
  *line = r->buf;
  PetscFunctionReturn(0);
}

PetscErrorCode CsLineReaderClose(CsLineReader *r)
{
  PetscFunctionBeginUser;
  if (r->f) gzclose(r->f);
  PetscCall(PetscFree(r->buf));
  PetscCall(PetscMemzero(r, sizeof(*r)));
  PetscFunctionReturn(0);
}

/* Fields of a line without splitting it. */
static int CountFields(const char *line)
{
  int n = 1;
  for (const char *p = line; *p; p++) n += *p == '\t';
  return n;
}

int CsSplitTabs(char *line, char *f[], int maxf)
{
  int   n = 0;
  char *p = line;
  for (;;) {
    char *tab = strchr(p, '\t');
    if (n < maxf) f[n] = p;
    n++;
    if (!tab) break;
    *tab = 0, p = tab + 1;
  }
  return n;
}

/* -------------------------------------------------------------------------------------------------------------
   Edge lists and graphs. */
PetscErrorCode CsEdgeListAdd(CsEdgeList *e, const char src[], const char dst[], int mask, double w)
{
  PetscFunctionBeginUser;
  if (e->n == e->cap) {
    e->cap = e->cap ? 2 * e->cap : 4096;
    PetscCall(PetscRealloc(sizeof(char *) * (size_t)e->cap, &e->src));
    PetscCall(PetscRealloc(sizeof(char *) * (size_t)e->cap, &e->dst));
    PetscCall(PetscRealloc(sizeof(int) * (size_t)e->cap, &e->mask));
    PetscCall(PetscRealloc(sizeof(double) * (size_t)e->cap, &e->w));
  }
  PetscCall(PetscStrallocpy(src, &e->src[e->n]));
  PetscCall(PetscStrallocpy(dst, &e->dst[e->n]));
  e->mask[e->n] = mask, e->w[e->n] = w;
  e->n++;
  PetscFunctionReturn(0);
}

PetscErrorCode CsEdgeListFree(CsEdgeList *e)
{
  PetscFunctionBeginUser;
  PetscCall(CsStrArrayDestroy(e->n, &e->src));
  PetscCall(CsStrArrayDestroy(e->n, &e->dst));
  PetscCall(PetscFree(e->mask));
  PetscCall(PetscFree(e->w));
  PetscCall(PetscMemzero(e, sizeof(*e)));
  PetscFunctionReturn(0);
}

typedef struct {
  PetscInt s, t;
  int      mask;
  double   w;
} Edge;

static int CmpEdge(const void *a, const void *b)
{
  const Edge *x = a, *y = b;
  if (x->s != y->s) return x->s < y->s ? -1 : 1;
  return (x->t > y->t) - (x->t < y->t);
}

/* The sign of a merged mask: activation only (maybe with unknown) +1, repression only -1, else 0. */
static double MaskSign(int mask)
{
  int act = mask & 1, rep = mask & 2;
  return act && !rep ? 1.0 : rep && !act ? -1.0 : 0.0;
}

PetscErrorCode CsPriorGraphFromEdges(CsEdgeList *e, PetscBool sign, CsPriorGraph *g)
{
  char   **all;
  PetscInt n = 0;
  Edge    *E;

  PetscFunctionBeginUser;
  g->nrows = e->n;
  PetscCall(PetscMalloc1(2 * e->n + 1, &all));
  for (PetscInt i = 0; i < e->n; i++) all[2 * i] = e->src[i], all[2 * i + 1] = e->dst[i];
  CsStrSort(2 * e->n, all);
  PetscCall(PetscMalloc1(2 * e->n + 1, &g->nodes));
  for (PetscInt i = 0; i < 2 * e->n; i++)
    if (!n || strcmp(g->nodes[n - 1], all[i])) PetscCall(PetscStrallocpy(all[i], &g->nodes[n++]));
  g->nnodes = n;
  PetscCall(PetscFree(all));

  PetscCall(PetscMalloc1(e->n + 1, &E));
  for (PetscInt i = 0; i < e->n; i++) {
    E[i].s = CsStrBsearch(e->src[i], g->nodes, n), E[i].t = CsStrBsearch(e->dst[i], g->nodes, n);
    E[i].mask = e->mask[i], E[i].w = e->w[i];
  }
  qsort(E, (size_t)e->n, sizeof(Edge), CmpEdge);
  PetscCall(PetscMalloc3(e->n + 1, &g->src, e->n + 1, &g->dst, e->n + 1, &g->weight));
  g->nedges = 0;
  for (PetscInt i = 0; i < e->n;) {
    PetscInt j = i;
    int      mask = 0;
    double   w = -INFINITY;
    for (; j < e->n && E[j].s == E[i].s && E[j].t == E[i].t; j++) mask |= E[j].mask, w = PetscMax(w, E[j].w);
    g->src[g->nedges] = E[i].s, g->dst[g->nedges] = E[i].t, g->weight[g->nedges] = sign ? MaskSign(mask) : w;
    g->nedges++;
    i = j;
  }
  PetscCall(PetscFree(E));
  PetscFunctionReturn(0);
}

PetscErrorCode CsStringsBcast(MPI_Comm comm, PetscInt *n, char ***s)
{
  PetscMPIInt rank;
  int64_t     len = 0;
  char       *buf;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Bcast(n, 1, MPIU_INT, 0, comm));
  if (!rank)
    for (PetscInt i = 0; i < *n; i++) len += (int64_t)strlen((*s)[i]) + 1;
  PetscCallMPI(MPI_Bcast(&len, 1, MPI_INT64_T, 0, comm));
  PetscCheck(len < PETSC_MPI_INT_MAX, comm, PETSC_ERR_SUP, "%lld bytes of names are too many for one broadcast", (long long)len);
  PetscCall(PetscMalloc1(len + 1, &buf));
  if (!rank) {
    char *p = buf;
    for (PetscInt i = 0; i < *n; i++) {
      size_t l = strlen((*s)[i]) + 1;
      memcpy(p, (*s)[i], l), p += l;
    }
  }
  PetscCallMPI(MPI_Bcast(buf, (PetscMPIInt)len, MPI_CHAR, 0, comm));
  if (rank) {
    char *p = buf;
    PetscCall(PetscMalloc1(*n + 1, s));
    for (PetscInt i = 0; i < *n; i++) {
      PetscCall(PetscStrallocpy(p, &(*s)[i]));
      p += strlen(p) + 1;
    }
  }
  PetscCall(PetscFree(buf));
  PetscFunctionReturn(0);
}

PetscErrorCode CsPriorGraphBcast(MPI_Comm comm, CsPriorGraph *g)
{
  PetscMPIInt rank;
  PetscInt    sizes[3] = {g->nrows, g->nnodes, g->nedges};

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Bcast(g->name, sizeof(g->name), MPI_CHAR, 0, comm));
  PetscCallMPI(MPI_Bcast(sizes, 3, MPIU_INT, 0, comm));
  g->nrows = sizes[0], g->nedges = sizes[2];
  PetscCall(CsStringsBcast(comm, &g->nnodes, &g->nodes));
  if (rank) PetscCall(PetscMalloc3(g->nedges + 1, &g->src, g->nedges + 1, &g->dst, g->nedges + 1, &g->weight));
  PetscCallMPI(MPI_Bcast(g->src, (PetscMPIInt)g->nedges, MPIU_INT, 0, comm));
  PetscCallMPI(MPI_Bcast(g->dst, (PetscMPIInt)g->nedges, MPIU_INT, 0, comm));
  PetscCallMPI(MPI_Bcast(g->weight, (PetscMPIInt)g->nedges, MPI_DOUBLE, 0, comm));
  PetscFunctionReturn(0);
}

PetscErrorCode CsPriorGraphFree(CsPriorGraph *g)
{
  PetscFunctionBeginUser;
  PetscCall(CsStrArrayDestroy(g->nnodes, &g->nodes));
  PetscCall(PetscFree3(g->src, g->dst, g->weight));
  PetscCall(PetscMemzero(g, sizeof(*g)));
  PetscFunctionReturn(0);
}

PetscInt CsPriorGraphFindNode(const CsPriorGraph *g, const char symbol[]) { return CsStrBsearch(symbol, g->nodes, g->nnodes); }

void CsPriorGraphOutDegree(const CsPriorGraph *g, PetscInt deg[])
{
  for (PetscInt i = 0; i < g->nnodes; i++) deg[i] = 0;
  for (PetscInt e = 0; e < g->nedges; e++) deg[g->src[e]]++;
}

PetscErrorCode CsPriorGraphUnion(const CsPriorGraph *a, const CsPriorGraph *b, PetscBool useMax, CsPriorGraph *u)
{
  CsEdgeList e = {0};

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(u, sizeof(*u)));
  /* Through the edge list: a sign becomes a mask again (0 = unknown, which yields to a known sign). */
  for (int k = 0; k < 2; k++) {
    const CsPriorGraph *g = k ? b : a;
    for (PetscInt i = 0; i < g->nedges; i++) {
      double w    = g->weight[i];
      int    mask = w > 0 ? 1 : w < 0 ? 2 : 4;
      PetscCall(CsEdgeListAdd(&e, g->nodes[g->src[i]], g->nodes[g->dst[i]], mask, w));
    }
  }
  PetscCall(CsPriorGraphFromEdges(&e, useMax ? PETSC_FALSE : PETSC_TRUE, u));
  u->nrows = a->nrows + b->nrows;
  PetscCall(PetscSNPrintf(u->name, sizeof(u->name), "%s + %s", a->name, b->name));
  PetscCall(CsEdgeListFree(&e));
  PetscFunctionReturn(0);
}

/* -------------------------------------------------------------------------------------------------------------
   The three formats. Each parser runs on rank 0 only and fails with an input error naming file:line. */
static PetscErrorCode CheckSymbol(const CsLineReader *r, const char *what, const char *s)
{
  PetscFunctionBeginUser;
  PetscCheck(s[0], PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%" PetscInt_FMT ": empty %s", r->path, r->line, what);
  for (const char *p = s; *p; p++)
    PetscCheck(*p != ' ' && *p != '\t' && *p != '"', PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%" PetscInt_FMT ": %s '%s' is not a gene symbol", r->path,
               r->line, what, s);
  PetscFunctionReturn(0);
}

static PetscErrorCode ParseTRRUST(const char path[], CsEdgeList *e)
{
  CsLineReader r;
  char        *line;

  PetscFunctionBeginUser;
  PetscCall(CsLineReaderOpen(path, &r));
  for (;;) {
    char *f[4];
    int   nf, mask;
    PetscCall(CsLineReaderNext(&r, &line));
    if (!line) break;
    if (!line[0]) continue;
    nf = CsSplitTabs(line, f, 4);
    PetscCheck(nf == 4, PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%" PetscInt_FMT ": %d tab-separated fields, expected 4 (TF, target, mode, PMIDs)",
               path, r.line, nf);
    PetscCall(CheckSymbol(&r, "TF", f[0]));
    PetscCall(CheckSymbol(&r, "target", f[1]));
    if (!strcmp(f[2], "Activation")) mask = 1;
    else if (!strcmp(f[2], "Repression")) mask = 2;
    else if (!strcmp(f[2], "Unknown")) mask = 4;
    else SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%" PetscInt_FMT ": mode '%s' is not Activation, Repression or Unknown", path, r.line, f[2]);
    PetscCall(CsEdgeListAdd(e, f[0], f[1], mask, 0));
  }
  PetscCheck(e->n > 0, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: no edges", path);
  PetscCall(CsLineReaderClose(&r));
  PetscFunctionReturn(0);
}

/* The column of each wanted name in a header line, or an error listing what is missing. */
static PetscErrorCode HeaderColumns(const CsLineReader *r, char *line, PetscInt nwant, const char *want[], int col[])
{
  char *f[64];
  int   nf = CsSplitTabs(line, f, 64);

  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < nwant; k++) {
    col[k] = -1;
    for (int i = 0; i < PetscMin(nf, 64); i++)
      if (!strcmp(f[i], want[k])) col[k] = i;
    PetscCheck(col[k] >= 0, PETSC_COMM_SELF, CS_ERR_INPUT, "%s:1: the header has no column '%s'", r->path, want[k]);
  }
  PetscFunctionReturn(0);
}

/* Fields of a data line by header column; the number of fields must be the header's. */
static PetscErrorCode DataFields(const CsLineReader *r, char *line, int nheader, char *f[64])
{
  int nf = CsSplitTabs(line, f, 64);

  PetscFunctionBeginUser;
  PetscCheck(nf == nheader, PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%" PetscInt_FMT ": %d tab-separated fields, the header has %d", r->path, r->line,
             nf, nheader);
  PetscFunctionReturn(0);
}

static PetscErrorCode ParseDoRothEA(const char path[], const char levels[], CsEdgeList *e)
{
  CsLineReader r;
  char        *line, *f[64];
  const char  *want[4] = {"tf", "confidence", "target", "mor"};
  int          col[4], nh;

  PetscFunctionBeginUser;
  PetscCall(CsLineReaderOpen(path, &r));
  PetscCall(CsLineReaderNext(&r, &line));
  PetscCheck(line, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: empty file", path);
  nh = CountFields(line);
  PetscCall(HeaderColumns(&r, line, 4, want, col));
  for (;;) {
    char  *end;
    double mor;
    PetscCall(CsLineReaderNext(&r, &line));
    if (!line) break;
    if (!line[0]) continue;
    PetscCall(DataFields(&r, line, nh, f));
    PetscCall(CheckSymbol(&r, "tf", f[col[0]]));
    PetscCall(CheckSymbol(&r, "target", f[col[2]]));
    PetscCheck(strlen(f[col[1]]) == 1 && f[col[1]][0] >= 'A' && f[col[1]][0] <= 'E', PETSC_COMM_SELF, CS_ERR_INPUT,
               "%s:%" PetscInt_FMT ": confidence '%s' is not one of A, B, C, D, E", path, r.line, f[col[1]]);
    mor = strtod(f[col[3]], &end);
    PetscCheck(end != f[col[3]] && !*end && (mor == 1 || mor == -1), PETSC_COMM_SELF, CS_ERR_INPUT,
               "%s:%" PetscInt_FMT ": mor '%s' is not 1 or -1", path, r.line, f[col[3]]);
    if (!strchr(levels, f[col[1]][0])) continue;
    PetscCall(CsEdgeListAdd(e, f[col[0]], f[col[2]], mor > 0 ? 1 : 2, 0));
  }
  PetscCheck(e->n > 0, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: no edges of confidence %s", path, levels);
  PetscCall(CsLineReaderClose(&r));
  PetscFunctionReturn(0);
}

static PetscErrorCode ParseGO(const char path[], CsEdgeList *e)
{
  CsLineReader r;
  char        *line, *f[64];
  const char  *want[3] = {"source", "target", "jaccard"};
  int          col[3], nh;

  PetscFunctionBeginUser;
  PetscCall(CsLineReaderOpen(path, &r));
  PetscCall(CsLineReaderNext(&r, &line));
  PetscCheck(line, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: empty file", path);
  nh = CountFields(line);
  PetscCall(HeaderColumns(&r, line, 3, want, col));
  for (;;) {
    char  *end;
    double w;
    PetscCall(CsLineReaderNext(&r, &line));
    if (!line) break;
    if (!line[0]) continue;
    PetscCall(DataFields(&r, line, nh, f));
    PetscCall(CheckSymbol(&r, "source", f[col[0]]));
    PetscCall(CheckSymbol(&r, "target", f[col[1]]));
    w = strtod(f[col[2]], &end);
    PetscCheck(end != f[col[2]] && !*end && w > 0 && w <= 1, PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%" PetscInt_FMT ": jaccard '%s' is not in (0, 1]",
               path, r.line, f[col[2]]);
    PetscCall(CsEdgeListAdd(e, f[col[0]], f[col[1]], 0, w));
  }
  PetscCheck(e->n > 0, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: no edges", path);
  PetscCall(CsLineReaderClose(&r));
  PetscFunctionReturn(0);
}

/* Collective: parse on rank 0 with the parser of kind, agree on the outcome, broadcast. */
static PetscErrorCode ReadGraph(MPI_Comm comm, const char path[], CsPriorKind kind, const char levels[], CsPriorGraph *g)
{
  PetscMPIInt    rank;
  PetscErrorCode ierr = 0;
  CsEdgeList     e    = {0};
  char           what[PETSC_MAX_PATH_LEN + 64];

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(g, sizeof(*g)));
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  if (!rank) {
    ierr = kind == CS_PRIOR_TRRUST ? ParseTRRUST(path, &e) : kind == CS_PRIOR_DOROTHEA ? ParseDoRothEA(path, levels, &e) : ParseGO(path, &e);
    if (!ierr) ierr = CsPriorGraphFromEdges(&e, kind == CS_PRIOR_GO ? PETSC_FALSE : PETSC_TRUE, g);
  }
  PetscCall(PetscSNPrintf(what, sizeof(what), "cannot read the %s prior", CsPriorKinds[kind]));
  PetscCall(CsAgreeCode(comm, ierr, what));
  if (!rank) PetscCall(CsEdgeListFree(&e));
  if (kind == CS_PRIOR_DOROTHEA) {
    char lv[16] = "";
    for (const char *c = levels; *c && strlen(lv) + 2 < sizeof(lv); c++) {
      size_t l = strlen(lv);
      if (l) lv[l++] = ',';
      lv[l] = *c, lv[l + 1] = 0;
    }
    PetscCall(PetscSNPrintf(g->name, sizeof(g->name), "dorothea %s", lv));
  } else PetscCall(PetscStrncpy(g->name, CsPriorKinds[kind], sizeof(g->name)));
  PetscCall(CsPriorGraphBcast(comm, g));
  PetscFunctionReturn(0);
}

PetscErrorCode CsPriorGraphReadTRRUST(MPI_Comm comm, const char path[], CsPriorGraph *g)
{
  PetscFunctionBeginUser;
  PetscCall(ReadGraph(comm, path, CS_PRIOR_TRRUST, NULL, g));
  PetscFunctionReturn(0);
}

PetscErrorCode CsPriorGraphReadDoRothEA(MPI_Comm comm, const char path[], const char levels[], CsPriorGraph *g)
{
  PetscFunctionBeginUser;
  if (!levels || !levels[0]) levels = "ABC";
  for (const char *c = levels; *c; c++)
    CsCheckAll(comm, *c >= 'A' && *c <= 'E', "DoRothEA confidence levels '%s': use letters A to E", levels);
  PetscCall(ReadGraph(comm, path, CS_PRIOR_DOROTHEA, levels, g));
  PetscFunctionReturn(0);
}

PetscErrorCode CsPriorGraphReadGO(MPI_Comm comm, const char path[], CsPriorGraph *g)
{
  PetscFunctionBeginUser;
  PetscCall(ReadGraph(comm, path, CS_PRIOR_GO, NULL, g));
  PetscFunctionReturn(0);
}
