/* Pairwise squared distances (float32 through sgemm, double summed per pair) and the stabilised log-sum-exp over
   rows and columns: the inner kernels of optimal transport and of the evaluator's distribution distances. See
   include/cellshift/nn.h. */
/* Without -ftrapping-math GCC turns the float selects of the vector loops (clamps, maxima, masks of CsNNExpNeg)
   into blends on AVX2 as well; no value changes, and nothing here reads the floating-point exception flags. It comes
   before the includes so that the inline helpers of nnimpl.h are compiled (and inlined) under the same options. */
#if defined(__GNUC__) && !defined(__clang__)
  #pragma GCC optimize("no-trapping-math")
#endif
#include "nnimpl.h"
#include <cblas.h>
#include <string.h>

#define CS_PW_LANES 16
/* Columns per block of the column log-sum-exp (its maxima and sums stay in L1). */
#define CS_PW_COLS 256
#define CS_PW_ROWS 128
/* Below this many entries the pool's wake-up costs more than it saves. */
#define CS_PW_PARALLEL_MIN 65536

/* Row squared norms in double, stored in float. */
static CS_NN_VEC void RowNorms(float *nrm, const float *X, PetscInt n, PetscInt d)
{
  for (PetscInt i = 0; i < n; i++) {
    const float *x = X + (size_t)i * d;
    double       s = 0;
    for (PetscInt c = 0; c < d; c++) s += (double)x[c] * x[c];
    nrm[i] = (float)s;
  }
}

typedef struct {
  float       *D, *out;
  const float *M, *xn, *yn, *f, *g;
  float        s;
  PetscInt     n, m;
  PetscBool    diag;
} PwCtx;

static void Run(CsPoolTask fn, PwCtx *c, size_t work)
{
  if (work < CS_PW_PARALLEL_MIN) fn(c, 0, 1);
  else CsPoolRun(fn, c);
}

static CS_NN_VEC void AddNormsRows(PwCtx *c, size_t i0, size_t i1)
{
  const PetscInt m = c->m;
  for (size_t i = i0; i < i1; i++) {
    float      *row = c->D + i * m;
    const float xi  = c->xn[i];
    for (PetscInt j = 0; j < m; j++) {
      float v = row[j] + xi + c->yn[j];
      row[j]  = v > 0 ? v : 0.0f;
    }
    if (c->diag) row[i] = 0;
  }
}

static void TaskAddNorms(void *ctx, int t, int nt)
{
  PwCtx *c = (PwCtx *)ctx;
  size_t lo, hi;
  CsPoolChunk((size_t)c->n, t, nt, 1, &lo, &hi);
  AddNormsRows(c, lo, hi);
}

void cs_pairwise_sqdist_forward(float *D /*[n,m]*/, const float *X /*[n,d]*/, const float *Y /*[m,d]*/, PetscInt n, PetscInt m, PetscInt d,
                                float *work /*[n+m]*/)
{
  PwCtx c;
  if (n <= 0 || m <= 0) return;
  PetscMemzero(&c, sizeof(c));
  RowNorms(work, X, n, d);
  RowNorms(work + n, Y, m, d);
  if (d > 0) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, m, d, -2.0f, X, d, Y, d, 0.0f, D, m);
  else memset(D, 0, sizeof(float) * (size_t)n * m);
  c.D = D, c.xn = work, c.yn = work + n, c.n = n, c.m = m, c.diag = X == Y && n == m ? PETSC_TRUE : PETSC_FALSE;
  Run(TaskAddNorms, &c, (size_t)n * m);
}

void cs_pairwise_sqdist_backward(float *dX /*[n,d]*/, float *dY /*[m,d]*/, const float *dD /*[n,m]*/, const float *X /*[n,d]*/,
                                 const float *Y /*[m,d]*/, PetscInt n, PetscInt m, PetscInt d, float *work /*[n+m]*/)
{
  if (n <= 0 || m <= 0 || d <= 0) return;
  if (dX) {
    float *r = work;
    for (PetscInt i = 0; i < n; i++) {
      const float *row = dD + (size_t)i * m;
      double       s   = 0;
      for (PetscInt j = 0; j < m; j++) s += row[j];
      r[i] = (float)(2 * s);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, m, -2.0f, dD, m, Y, d, 1.0f, dX, d);
    for (PetscInt i = 0; i < n; i++)
      for (PetscInt c = 0; c < d; c++) dX[(size_t)i * d + c] += r[i] * X[(size_t)i * d + c];
  }
  if (dY) {
    float *s = work + n;
    memset(s, 0, sizeof(float) * (size_t)m);
    CsNNColSumAdd(s, dD, n, m);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, d, n, -2.0f, dD, m, X, d, 1.0f, dY, d);
    for (PetscInt j = 0; j < m; j++)
      for (PetscInt c = 0; c < d; c++) dY[(size_t)j * d + c] += 2 * s[j] * Y[(size_t)j * d + c];
  }
}

/* ------------------------------------------------------------------------------------------------- exact (double) */

void cs_transpose_f64(double *YT /*[d,m]*/, const double *Y /*[m,d]*/, PetscInt m, PetscInt d)
{
  for (PetscInt j = 0; j < m; j++)
    for (PetscInt c = 0; c < d; c++) YT[(size_t)c * m + j] = Y[(size_t)j * d + c];
}

/* Each distance is its own sum in dimension order; vectorised across j, so every clone gives the same bits. */
CS_NN_VEC void cs_sqdist_row_f64(double *restrict acc /*[m-j0]*/, const double *restrict x /*[d]*/, const double *restrict YT /*[d,m]*/,
                                 PetscInt m, PetscInt j0, PetscInt d)
{
  PetscInt w = m - j0;
  for (PetscInt j = 0; j < w; j++) acc[j] = 0;
  for (PetscInt c = 0; c < d; c++) {
    const double  xc = x[c];
    const double *y  = YT + (size_t)c * m + j0;
    for (PetscInt j = 0; j < w; j++) {
      double e = xc - y[j];
      acc[j] += e * e;
    }
  }
}

typedef struct {
  double       *D;
  const double *X, *YT;
  PetscInt      n, m, d;
} F64Ctx;

static void TaskSqDistF64(void *ctx, int t, int nt)
{
  F64Ctx *c = (F64Ctx *)ctx;
  size_t  lo, hi;
  CsPoolChunk((size_t)c->n, t, nt, 1, &lo, &hi);
  for (size_t i = lo; i < hi; i++) cs_sqdist_row_f64(c->D + i * c->m, c->X + i * c->d, c->YT, c->m, 0, c->d);
}

void cs_pairwise_sqdist_f64(double *D /*[n,m]*/, const double *X /*[n,d]*/, const double *Y /*[m,d]*/, PetscInt n, PetscInt m, PetscInt d,
                            double *work /*[m*d]*/)
{
  F64Ctx c = {D, X, work, n, m, d};
  if (n <= 0 || m <= 0) return;
  cs_transpose_f64(work, Y, m, d);
  if ((size_t)n * m * (d ? d : 1) < CS_PW_PARALLEL_MIN) TaskSqDistF64(&c, 0, 1);
  else CsPoolRun(TaskSqDistF64, &c);
}

/* ------------------------------------------------------------------------------------------------- log-sum-exp */

CS_NN_VEC void cs_exp_kernel_row(float *restrict out, const float *restrict D, const double *restrict g, double f, double s, PetscInt m)
{
  for (PetscInt j = 0; j < m; j++) {
    const float z = (float)(f + g[j] + s * (double)D[j]);
    out[j]        = z <= 0.0f ? CsNNExpNeg(z) : 1.0f / CsNNExpNeg(-z);
  }
}

/* out = fi + log sum_j exp(g_j + s M_j) over one row of m. */
static CS_NN_VEC float LseRow(const float *restrict Mi, const float *restrict g, float s, float fi, PetscInt m)
{
  float    mx[CS_PW_LANES], top = -INFINITY;
  double   acc[CS_PW_LANES], sum = 0;
  PetscInt m0 = m / CS_PW_LANES * CS_PW_LANES;

  for (int l = 0; l < CS_PW_LANES; l++) mx[l] = -INFINITY, acc[l] = 0;
  if (g) {
    for (PetscInt j = 0; j < m0; j += CS_PW_LANES)
      CS_NN_LANES
      for (int l = 0; l < CS_PW_LANES; l++) {
        const float z = g[j + l] + s * Mi[j + l];
        mx[l]         = z > mx[l] ? z : mx[l];
      }
  } else {
    for (PetscInt j = 0; j < m0; j += CS_PW_LANES)
      CS_NN_LANES
      for (int l = 0; l < CS_PW_LANES; l++) {
        const float z = s * Mi[j + l];
        mx[l]         = z > mx[l] ? z : mx[l];
      }
  }
  for (int l = 0; l < CS_PW_LANES; l++) top = mx[l] > top ? mx[l] : top;
  for (PetscInt j = m0; j < m; j++) {
    const float z = (g ? g[j] : 0.0f) + s * Mi[j];
    top           = z > top ? z : top;
  }
  if (top == -INFINITY) return -INFINITY;
  if (g) {
    for (PetscInt j = 0; j < m0; j += CS_PW_LANES)
      CS_NN_LANES
      for (int l = 0; l < CS_PW_LANES; l++) acc[l] += CsNNExpNeg((g[j + l] + s * Mi[j + l]) - top);
  } else {
    for (PetscInt j = 0; j < m0; j += CS_PW_LANES)
      CS_NN_LANES
      for (int l = 0; l < CS_PW_LANES; l++) acc[l] += CsNNExpNeg(s * Mi[j + l] - top);
  }
  for (int l = 0; l < CS_PW_LANES; l++) sum += acc[l];
  for (PetscInt j = m0; j < m; j++) sum += CsNNExpNeg(((g ? g[j] : 0.0f) + s * Mi[j]) - top);
  return (float)((double)fi + (double)top + log(sum));
}

static void TaskLseRows(void *ctx, int t, int nt)
{
  PwCtx *c = (PwCtx *)ctx;
  size_t lo, hi;
  CsPoolChunk((size_t)c->n, t, nt, 1, &lo, &hi);
  for (size_t i = lo; i < hi; i++) c->out[i] = LseRow(c->M + i * c->m, c->g, c->s, c->f ? c->f[i] : 0.0f, c->m);
}

/* out[j] = g_j + log sum_i exp(f_i + s M_ij) for the columns [j0, j0 + w), w <= CS_PW_COLS, vectorised across
   the columns. The rows come in blocks of CS_PW_ROWS (w x CS_PW_ROWS floats stay in L2): the block's maxima, the
   running sums rescaled to the new maxima, then the block's exponentials. One pass over M from memory, where two
   plain passes (maxima, then sums) would read it twice. */
static CS_NN_VEC void LseCols(float *restrict out, const float *restrict M, const float *restrict f, const float *restrict g, float s,
                              PetscInt n, PetscInt m, PetscInt j0, PetscInt w)
{
  float  mx[CS_PW_COLS], bm[CS_PW_COLS];
  double acc[CS_PW_COLS];
  for (PetscInt l = 0; l < w; l++) mx[l] = -INFINITY, acc[l] = 0;
  for (PetscInt r0 = 0; r0 < n; r0 += CS_PW_ROWS) {
    const PetscInt r1 = PetscMin(n, r0 + CS_PW_ROWS);
    for (PetscInt l = 0; l < w; l++) bm[l] = mx[l];
    for (PetscInt i = r0; i < r1; i++) {
      const float *row = M + (size_t)i * m + j0;
      const float  fi  = f ? f[i] : 0.0f;
      for (PetscInt l = 0; l < w; l++) {
        const float z = fi + s * row[l];
        bm[l]         = z > bm[l] ? z : bm[l];
      }
    }
    for (PetscInt l = 0; l < w; l++) { /* bm >= mx: scale the sums so far (0 while everything was -inf) */
      const float e = bm[l] == -INFINITY ? 1.0f : CsNNExpNeg(mx[l] - bm[l]);
      acc[l] *= e;
      mx[l] = bm[l];
    }
    for (PetscInt i = r0; i < r1; i++) {
      const float *row = M + (size_t)i * m + j0;
      const float  fi  = f ? f[i] : 0.0f;
      for (PetscInt l = 0; l < w; l++) acc[l] += CsNNExpNeg((fi + s * row[l]) - mx[l]);
    }
  }
  for (PetscInt l = 0; l < w; l++)
    out[j0 + l] = mx[l] == -INFINITY ? -INFINITY : (float)((g ? (double)g[j0 + l] : 0.0) + (double)mx[l] + log(acc[l]));
}

static void TaskLseCols(void *ctx, int t, int nt)
{
  PwCtx         *c  = (PwCtx *)ctx;
  const PetscInt nb = (c->m + CS_PW_COLS - 1) / CS_PW_COLS;
  size_t         lo, hi;
  CsPoolChunk((size_t)nb, t, nt, 1, &lo, &hi);
  for (size_t b = lo; b < hi; b++) {
    PetscInt j0 = (PetscInt)b * CS_PW_COLS;
    LseCols(c->out, c->M, c->f, c->g, c->s, c->n, c->m, j0, PetscMin(CS_PW_COLS, c->m - j0));
  }
}

void cs_logsumexp_rows(float *out /*[n]*/, const float *M /*[n,m]*/, const float *f /*[n]*/, const float *g /*[m]*/, float s, PetscInt n,
                       PetscInt m)
{
  PwCtx c;
  if (n <= 0) return;
  PetscMemzero(&c, sizeof(c));
  c.out = out, c.M = M, c.f = f, c.g = g, c.s = s, c.n = n, c.m = m;
  Run(TaskLseRows, &c, (size_t)n * m);
}

void cs_logsumexp_cols(float *out /*[m]*/, const float *M /*[n,m]*/, const float *f /*[n]*/, const float *g /*[m]*/, float s, PetscInt n,
                       PetscInt m)
{
  PwCtx c;
  if (m <= 0) return;
  PetscMemzero(&c, sizeof(c));
  c.out = out, c.M = M, c.f = f, c.g = g, c.s = s, c.n = n, c.m = m;
  Run(TaskLseCols, &c, (size_t)n * m);
}
