/* Sparse graph propagation for GCN / SGConv layers: out = A X per cell, its backward (A^T dout and the edge-weight
   gradient), K-hop propagation, and the symmetric GCN normalisation. See include/cellshift/nn.h.

   Each output row is a weighted sum of whole neighbour rows of d features: the neighbour rows are gathered and
   summed into a tile of CS_GR_TILE columns held in a local array (registers for d = 64), so that every output
   row is written once. Rows are split over the thread pool in chunks of about equal numbers of non-zeros (gene
   graphs have hubs); every row and every edge gradient is summed by one thread in CSR order, so the result does
   not depend on the number of threads. */
/* GCC's unroll-and-jam turns the gather loop over neighbours into a scalar loop over two neighbours at a time
   (measured about 3x slower than the plain vector loop at d = 64); before the includes, so that it applies everywhere. */
#if defined(__GNUC__) && !defined(__clang__)
  #pragma GCC optimize("no-loop-unroll-and-jam")
#endif
#include "nnimpl.h"
#include <string.h>

#define CS_GR_TILE  64
/* Software prefetch distance, in neighbours: the gathered rows are scattered over the feature matrix. */
#define CS_GR_AHEAD 8
/* Below this many multiply-adds the pool's wake-up costs more than it saves. */
#define CS_GR_PARALLEL_MIN 65536

/* The cache lines of one row of d floats. */
static inline void Prefetch(const float *p, PetscInt d)
{
  for (PetscInt c = 0; c < d; c += 16) __builtin_prefetch(p + c);
}

/* One propagation: out rows [i0, i1) of every cell, from rows of inp, through the CSR pattern (ptr, idx) with
   values val. add: out += instead of out =. */
typedef struct {
  float         *out;
  const float   *inp;
  const int64_t *ptr;
  const int32_t *idx;
  const float   *val;
  PetscInt       nr, nc, B, d;
  PetscBool      add;
  /* edge-weight gradient: dA[k] += sum_b dout[b,i,:] . inp[b,j,:] */
  float         *dA;
  const float   *dout;
} GraphCtx;

/* One output row tile: o[0:w] (= or += with add) sum_k val[k] x[idx[k] d + 0:w]. The full tile has a constant
   width, so its accumulator lives in vector registers; the two widths are spelled out so that each inner loop is
   a plain vector loop. */
#define CS_GR_TILE_BODY(W) \
  do { \
    float acc[CS_GR_TILE]; \
    if (add) \
      for (PetscInt l = 0; l < (W); l++) acc[l] = o[l]; \
    else \
      for (PetscInt l = 0; l < (W); l++) acc[l] = 0.0f; \
    CS_NN_LANES for (int64_t k = k0; k < k1; k++) \
    { \
      const float           a  = val[k]; \
      if (k + CS_GR_AHEAD < kend) Prefetch(x + (size_t)idx[k + CS_GR_AHEAD] * d, (W)); \
      const float *restrict xr = x + (size_t)idx[k] * d; \
      for (PetscInt l = 0; l < (W); l++) acc[l] += a * xr[l]; \
    } \
    for (PetscInt l = 0; l < (W); l++) o[l] = acc[l]; \
  } while (0)

static CS_NN_VEC void GraphRows(const GraphCtx *g, PetscInt i0, PetscInt i1)
{
  const PetscInt          d = g->d, nr = g->nr, nc = g->nc, B = g->B;
  const PetscBool         add = g->add;
  const int32_t *restrict idx = g->idx;
  const float *restrict   val = g->val;
  const int64_t           kend = g->ptr[i1];
  for (PetscInt b = 0; b < B; b++) {
    const float *xb = g->inp + (size_t)b * nc * d;
    float       *ob = g->out + (size_t)b * nr * d;
    for (PetscInt i = i0; i < i1; i++) {
      const int64_t k0 = g->ptr[i], k1 = g->ptr[i + 1];
      for (PetscInt c0 = 0; c0 < d; c0 += CS_GR_TILE) {
        const PetscInt        w = PetscMin(CS_GR_TILE, d - c0);
        float *restrict       o = ob + (size_t)i * d + c0;
        const float *restrict x = xb + c0;
        if (w == CS_GR_TILE) CS_GR_TILE_BODY(CS_GR_TILE);
        else CS_GR_TILE_BODY(w);
      }
    }
  }
}
#undef CS_GR_TILE_BODY

/* u . x over d floats: 16 partial sums over the columns [0, d0) (d0 = d rounded down to 16), combined by halving
   (lanes l and l + 8, then l and l + 4, then l and l + 2, then the last two), then the remaining columns, in that
   order. Written with GCC vector types: as a plain array the compiler spills the partial sums to the stack for
   the halving, and the reloads stall on store forwarding, once per edge. */
typedef float CsV8 __attribute__((vector_size(32)));
typedef float CsV4 __attribute__((vector_size(16)));
static inline float RowDot(const float *u, const float *x, PetscInt d, PetscInt d0)
{
  CsV8  a0 = {0}, a1 = {0}, h8;
  CsV4  h4;
  float r;
  for (PetscInt c = 0; c < d0; c += 16) {
    CsV8 p, q, s, t;
    memcpy(&p, u + c, sizeof(p)), memcpy(&q, x + c, sizeof(q)), memcpy(&s, u + c + 8, sizeof(s)), memcpy(&t, x + c + 8, sizeof(t));
    a0 += p * q;
    a1 += s * t;
  }
  h8 = a0 + a1;
  h4 = __builtin_shufflevector(h8, h8, 0, 1, 2, 3) + __builtin_shufflevector(h8, h8, 4, 5, 6, 7);
  r  = (h4[0] + h4[2]) + (h4[1] + h4[3]);
  for (PetscInt c = d0; c < d; c++) r += u[c] * x[c];
  return r;
}

/* dA[k] += dout[b,i,:] . inp[b,j,:] for b = 0, 1, ... in turn. Cells are the outer loop, as in the propagation, so
   that the rows gathered from one cell's features (n d floats) stay in cache for the whole pass. */
static CS_NN_VEC void EdgeGradRows(const GraphCtx *g, PetscInt i0, PetscInt i1)
{
  const PetscInt          d = g->d, nr = g->nr, nc = g->nc, B = g->B, d0 = d / 16 * 16;
  const int64_t *restrict ptr = g->ptr;
  const int32_t *restrict idx = g->idx;
  float *restrict         dA  = g->dA;
  const int64_t           kend = ptr[i1];
  for (PetscInt b = 0; b < B; b++) {
    const float *xb = g->inp + (size_t)b * nc * d;
    for (PetscInt i = i0; i < i1; i++) {
      const float *u = g->dout + ((size_t)b * nr + i) * d;
      for (int64_t k = ptr[i]; k < ptr[i + 1]; k++) {
        if (k + CS_GR_AHEAD < kend) Prefetch(xb + (size_t)idx[k + CS_GR_AHEAD] * d, d);
        dA[k] += RowDot(u, xb + (size_t)idx[k] * d, d, d0);
      }
    }
  }
}

/* Rows [i0, i1) of thread t: chunks of about nnz / nt non-zeros (plus rows, so that empty rows also spread). */
static void RowRange(const int64_t *ptr, PetscInt nr, int t, int nt, PetscInt *i0, PetscInt *i1)
{
  const int64_t base = ptr[0], tot = ptr[nr] - base + nr;
  PetscInt      r[2];
  for (int e = 0; e < 2; e++) {
    const int64_t target = tot * (t + e) / nt;
    PetscInt      lo = 0, hi = nr; /* smallest i with ptr[i] - base + i >= target */
    while (lo < hi) {
      PetscInt mid = lo + (hi - lo) / 2;
      if (ptr[mid] - base + mid < target) lo = mid + 1;
      else hi = mid;
    }
    r[e] = lo;
  }
  *i0 = t == 0 ? 0 : r[0], *i1 = t == nt - 1 ? nr : r[1];
}

static void TaskGraph(void *ctx, int t, int nt)
{
  const GraphCtx *g = (const GraphCtx *)ctx;
  PetscInt        i0, i1;
  RowRange(g->ptr, g->nr, t, nt, &i0, &i1);
  if (i0 >= i1) return;
  if (g->dA) EdgeGradRows(g, i0, i1);
  else GraphRows(g, i0, i1);
}

static void GraphRun(GraphCtx *g)
{
  const double work = (double)(g->ptr[g->nr] - g->ptr[0]) * g->B * g->d;
  if (g->nr <= 0 || g->B <= 0 || g->d <= 0) return;
  if (work < CS_GR_PARALLEL_MIN) TaskGraph(g, 0, 1);
  else CsPoolRun(TaskGraph, g);
}

/* out[B, nr, d] (=, or += with add) = A inp[B, nc, d] */
static void Apply(float *out, PetscBool add, const CsCSR *A, const float *inp, PetscInt B, PetscInt d)
{
  GraphCtx g;
  PetscMemzero(&g, sizeof(g));
  g.out = out, g.inp = inp, g.ptr = A->indptr, g.idx = A->indices, g.val = A->data;
  g.nr = A->nrows, g.nc = A->ncols, g.B = B, g.d = d, g.add = add;
  GraphRun(&g);
}

/* out[B, nc, d] (= or +=) = A^T inp[B, nr, d], with AT's values refreshed by Refresh. */
static void ApplyT(float *out, PetscBool add, const CsNNTranspose *AT, const float *inp, PetscInt B, PetscInt d)
{
  GraphCtx g;
  PetscMemzero(&g, sizeof(g));
  g.out = out, g.inp = inp, g.ptr = AT->indptr, g.idx = AT->indices, g.val = AT->data;
  g.nr = AT->nrows, g.nc = AT->ncols, g.B = B, g.d = d, g.add = add;
  GraphRun(&g);
}

/* The transpose's values from A's current ones: one gather per call, instead of an indirect load per cell. */
static void Refresh(const CsCSR *A, CsNNTranspose *AT)
{
  const int64_t nnz = AT->indptr[AT->nrows];
  for (int64_t k = 0; k < nnz; k++) AT->data[k] = A->data[AT->src[k]];
}

static void EdgeGrad(float *dA, const CsCSR *A, const float *dout, const float *inp, PetscInt B, PetscInt d)
{
  GraphCtx g;
  PetscMemzero(&g, sizeof(g));
  g.dA = dA, g.dout = dout, g.inp = inp, g.ptr = A->indptr, g.idx = A->indices;
  g.nr = A->nrows, g.nc = A->ncols, g.B = B, g.d = d;
  GraphRun(&g);
}

/* ------------------------------------------------------------------------------------------------- kernels */

void cs_graph_forward(float *out /*[B,nr,d]*/, const CsCSR *A /*[nr,nc]*/, const float *inp /*[B,nc,d]*/, PetscInt B, PetscInt d)
{
  Apply(out, PETSC_FALSE, A, inp, B, d);
}

void cs_graph_backward(float *dinp /*[B,nc,d]*/, float *dA /*[nnz]*/, const float *dout /*[B,nr,d]*/, const float *inp /*[B,nc,d]*/,
                       const CsCSR *A /*[nr,nc]*/, CsNNTranspose *AT /*[nc,nr]*/, PetscInt B, PetscInt d)
{
  if (dA) EdgeGrad(dA, A, dout, inp, B, d);
  if (!dinp) return;
  Refresh(A, AT);
  ApplyT(dinp, PETSC_TRUE, AT, dout, B, d);
}

void cs_sgconv_forward(float *out /*[B,n,d]*/, float *hops /*[K-1,B,n,d]*/, const CsCSR *A /*[n,n]*/, const float *inp /*[B,n,d]*/,
                       PetscInt K, PetscInt B, PetscInt d)
{
  const size_t sz = (size_t)B * A->nrows * d;
  const float *x  = inp;
  if (K <= 0) {
    memcpy(out, inp, sizeof(float) * sz);
    return;
  }
  for (PetscInt k = 1; k <= K; k++) {
    float *h = k == K ? out : hops + (size_t)(k - 1) * sz;
    Apply(h, PETSC_FALSE, A, x, B, d);
    x = h;
  }
}

void cs_sgconv_backward(float *dinp /*[B,n,d]*/, float *dA /*[nnz]*/, const float *dout /*[B,n,d]*/, const float *inp /*[B,n,d]*/,
                        const float *hops /*[K-1,B,n,d]*/, const CsCSR *A /*[n,n]*/, CsNNTranspose *AT /*[n,n]*/, PetscInt K,
                        PetscInt B, PetscInt d, float *work /*[2,B,n,d]*/)
{
  const size_t sz = (size_t)B * A->nrows * d;
  const float *g  = dout;
  if (K <= 0) {
    if (dinp) CsNNAxpy1(dinp, dout, sz);
    return;
  }
  if (!dinp && !dA) return;
  if (K > 1 || dinp) Refresh(A, AT);
  /* Hop k maps h_{k-1} to h_k (h_0 = inp, h_K = out); going down, g is the gradient with respect to h_k. */
  for (PetscInt k = K; k >= 1; k--) {
    const float *x = k == 1 ? inp : hops + (size_t)(k - 2) * sz;
    if (dA) EdgeGrad(dA, A, g, x, B, d);
    if (k > 1) {
      float *gn = work + (size_t)((K - k) % 2) * sz;
      ApplyT(gn, PETSC_FALSE, AT, g, B, d);
      g = gn;
    } else if (dinp) ApplyT(dinp, PETSC_TRUE, AT, g, B, d);
  }
}

/* ------------------------------------------------------------------------------------------------- structure */

PetscErrorCode CsNNTransposeCreate(const CsCSR *A, CsNNTranspose *AT)
{
  const int64_t base = A->indptr[0], nnz = A->indptr[A->nrows] - base;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(AT, sizeof(*AT)));
  AT->nrows = A->ncols, AT->ncols = A->nrows;
  PetscCall(PetscCalloc1((size_t)A->ncols + 1, &AT->indptr));
  PetscCall(PetscMalloc1((size_t)nnz + 1, &AT->indices));
  PetscCall(PetscMalloc1((size_t)nnz + 1, &AT->src));
  PetscCall(PetscMalloc1((size_t)nnz + 1, &AT->data));
  for (int64_t k = base; k < base + nnz; k++) {
    PetscCheck(A->indices[k] >= 0 && A->indices[k] < A->ncols, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
               "column index %d of entry %" PetscInt64_FMT " is outside [0, %" PetscInt_FMT ")", (int)A->indices[k], k, A->ncols);
    AT->indptr[A->indices[k] + 1]++;
  }
  for (PetscInt j = 0; j < A->ncols; j++) AT->indptr[j + 1] += AT->indptr[j];
  {
    int64_t *next;
    PetscCall(PetscMalloc1((size_t)A->ncols + 1, &next));
    PetscCall(PetscArraycpy(next, AT->indptr, A->ncols));
    for (PetscInt i = 0; i < A->nrows; i++)
      for (int64_t k = A->indptr[i]; k < A->indptr[i + 1]; k++) {
        int64_t e       = next[A->indices[k]]++;
        AT->indices[e] = (int32_t)i;
        AT->src[e]     = k;
        AT->data[e]    = A->data[k];
      }
    PetscCall(PetscFree(next));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsNNTransposeDestroy(CsNNTranspose *AT)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree(AT->indptr));
  PetscCall(PetscFree(AT->indices));
  PetscCall(PetscFree(AT->src));
  PetscCall(PetscFree(AT->data));
  AT->nrows = AT->ncols = 0;
  PetscFunctionReturn(0);
}

typedef struct {
  int32_t j;
  double  w;
} Entry;

static int CmpEntry(const void *pa, const void *pb)
{
  const Entry *a = (const Entry *)pa, *b = (const Entry *)pb;
  return (a->j > b->j) - (a->j < b->j);
}

PetscErrorCode CsNNGraphNormalize(PetscInt n, PetscInt nedges, const PetscInt *src, const PetscInt *dst, const float *w, PetscBool symmetrize,
                                  CsCSR *Ahat)
{
  int64_t *cnt, *pos, ne;
  Entry   *e;
  double  *deg;
  int64_t  nnz = 0;

  PetscFunctionBeginUser;
  PetscCheck(n >= 0 && nedges >= 0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE, "negative graph size");
  for (PetscInt k = 0; k < nedges; k++) {
    PetscCheck(src[k] >= 0 && src[k] < n && dst[k] >= 0 && dst[k] < n, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
               "edge %" PetscInt_FMT " (%" PetscInt_FMT ", %" PetscInt_FMT ") has a node outside [0, %" PetscInt_FMT ")", k, src[k], dst[k], n);
    PetscCheck(!w || isfinite(w[k]), PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE, "edge %" PetscInt_FMT " has a non-finite weight", k);
  }
  /* Entries by row: the edges (both directions when symmetrising; a self-loop once) and the identity. */
  PetscCall(PetscCalloc1((size_t)n + 1, &cnt));
  for (PetscInt k = 0; k < nedges; k++) {
    cnt[src[k] + 1]++;
    if (symmetrize && src[k] != dst[k]) cnt[dst[k] + 1]++;
  }
  for (PetscInt i = 0; i < n; i++) cnt[i + 1] += cnt[i] + 1;
  ne = cnt[n];
  PetscCall(PetscMalloc1((size_t)ne + 1, &e));
  PetscCall(PetscMalloc1((size_t)n + 1, &pos));
  PetscCall(PetscArraycpy(pos, cnt, n));
  for (PetscInt i = 0; i < n; i++) e[pos[i]].j = (int32_t)i, e[pos[i]++].w = 1.0;
  for (PetscInt k = 0; k < nedges; k++) {
    double wk = w ? (double)w[k] : 1.0;
    e[pos[src[k]]].j = (int32_t)dst[k], e[pos[src[k]]++].w = wk;
    if (symmetrize && src[k] != dst[k]) e[pos[dst[k]]].j = (int32_t)src[k], e[pos[dst[k]]++].w = wk;
  }
  /* Sort each row by column, sum duplicates in place, take the degrees. */
  PetscCall(PetscMalloc1((size_t)n + 1, &deg));
  PetscCall(PetscMemzero(Ahat, sizeof(*Ahat)));
  Ahat->nrows = Ahat->ncols = n;
  PetscCall(PetscMalloc1((size_t)n + 1, &Ahat->indptr));
  Ahat->indptr[0] = 0;
  for (PetscInt i = 0; i < n; i++) {
    int64_t lo = cnt[i], hi = cnt[i + 1], out = lo;
    qsort(e + lo, (size_t)(hi - lo), sizeof(Entry), CmpEntry);
    for (int64_t k = lo; k < hi; k++) {
      if (k > lo && e[k].j == e[out - 1].j) e[out - 1].w += e[k].w;
      else e[out++] = e[k];
    }
    deg[i] = 0;
    for (int64_t k = lo; k < out; k++) deg[i] += e[k].w;
    PetscCheck(deg[i] > 0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
               "node %" PetscInt_FMT " has degree %g <= 0 (negative edge weights): D^-1/2 is undefined", i, deg[i]);
    pos[i] = out; /* end of the merged row */
    nnz += out - lo;
    Ahat->indptr[i + 1] = nnz;
  }
  PetscCall(PetscMalloc1((size_t)nnz + 1, &Ahat->indices));
  PetscCall(PetscMalloc1((size_t)nnz + 1, &Ahat->data));
  for (PetscInt i = 0; i < n; i++) {
    int64_t o = Ahat->indptr[i];
    for (int64_t k = cnt[i]; k < pos[i]; k++, o++) {
      Ahat->indices[o] = e[k].j;
      Ahat->data[o]    = (float)(e[k].w / sqrt(deg[i] * deg[e[k].j]));
    }
  }
  PetscCall(PetscFree(cnt));
  PetscCall(PetscFree(pos));
  PetscCall(PetscFree(e));
  PetscCall(PetscFree(deg));
  PetscFunctionReturn(0);
}
