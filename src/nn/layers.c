/* Layers with explicit forward and backward. See include/cellshift/nn.h. */
#include "nnimpl.h"
#include <cblas.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  #include <immintrin.h>
  #define CS_HAVE_AVX512_PATH 1
#endif

const char *const CsNNActs[] = {"none", "relu", "leakyrelu", "gelu", "sigmoid", "softplus", "silu", "CsNNAct", "CS_NN_ACT_", NULL};

/* ------------------------------------------------------------------------------------------------- helpers */

CS_NN_VEC void CsNNColSumAddRange(float *restrict db, const float *restrict d, PetscInt B, PetscInt C, PetscInt c0, PetscInt c1)
{
  for (PetscInt i = 0; i < B; i++) {
    const float *row = d + (size_t)i * C;
    for (PetscInt j = c0; j < c1; j++) db[j] += row[j];
  }
}

void CsNNColSumAdd(float *db, const float *d, PetscInt B, PetscInt C) { CsNNColSumAddRange(db, d, B, C, 0, C); }

CS_NN_VEC void CsNNAxpy1(float *restrict y, const float *restrict x, size_t n)
{
  for (size_t i = 0; i < n; i++) y[i] += x[i];
}

/* ------------------------------------------------------------------------------------------------- linear */

/* out = bias rows, then sgemm with beta = 1 (OpenBLAS zeroes C in a separate pass for beta = 0 anyway). */
void cs_linear_forward(float *out /*[B,O]*/, const float *inp /*[B,I]*/, const float *w /*[I,O]*/, const float *b /*[O]*/,
                       PetscInt B, PetscInt In, PetscInt O)
{
  if (B <= 0) return;
  if (b)
    for (PetscInt i = 0; i < B; i++) memcpy(out + (size_t)i * O, b, sizeof(float) * (size_t)O);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, O, In, 1.0f, inp, In, w, O, b ? 1.0f : 0.0f, out, O);
}

void cs_linear_backward(float *dinp /*[B,I]*/, float *dw /*[I,O]*/, float *db /*[O]*/, const float *dout /*[B,O]*/,
                        const float *inp /*[B,I]*/, const float *w /*[I,O]*/, PetscInt B, PetscInt In, PetscInt O)
{
  if (B <= 0) return;
  if (dw) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, In, O, B, 1.0f, inp, In, dout, O, 1.0f, dw, O);
  if (db) CsNNColSumAdd(db, dout, B, O);
  if (dinp) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, In, O, 1.0f, dout, O, w, O, 1.0f, dinp, In);
}

/* Sparse input: the output columns are processed in tiles of CS_SP_TILE, so that the tile of W (In x tile) stays in
   L2 while all rows stream past it, and each non-zero is an axpy of one contiguous weight-row slice into a row
   accumulator held in a local array (which the compiler knows aliases nothing, so the axpy vectorises). Tiles are
   split over the thread pool: each thread owns whole output / weight-gradient columns. */
#define CS_SP_TILE  128
#define CS_SP_AHEAD 6 /* software prefetch distance, in non-zeros */

static void SpFwdTileScalar(float *out, PetscBool add, const CsCSR *X, const float *w, const float *b, PetscInt O, PetscInt o0, PetscInt ot)
{
  float acc[CS_SP_TILE];
  for (PetscInt i = 0; i < X->nrows; i++) {
    if (add && X->indptr[i] == X->indptr[i + 1]) continue;
    for (PetscInt t = 0; t < ot; t++) acc[t] = add ? out[(size_t)i * O + o0 + t] : b ? b[o0 + t] : 0.0f;
    for (int64_t k = X->indptr[i]; k < X->indptr[i + 1]; k++) {
      const float *wr = w + (size_t)X->indices[k] * O + o0;
      const float  v  = X->data[k];
      for (PetscInt t = 0; t < ot; t++) acc[t] += v * wr[t];
    }
    memcpy(out + (size_t)i * O + o0, acc, sizeof(float) * (size_t)ot);
  }
}

static void SpBwdTileScalar(float *dw, const float *dout, const CsCSR *X, PetscInt O, PetscInt o0, PetscInt ot)
{
  for (PetscInt i = 0; i < X->nrows; i++) {
    const float *gr = dout + (size_t)i * O + o0;
    for (int64_t k = X->indptr[i]; k < X->indptr[i + 1]; k++) {
      float      *dwr = dw + (size_t)X->indices[k] * O + o0;
      const float v   = X->data[k];
      for (PetscInt t = 0; t < ot; t++) dwr[t] += v * gr[t];
    }
  }
}

#if defined(CS_HAVE_AVX512_PATH)
/* Full 128-column tiles with the row accumulator (forward) or the row of dout (backward) in 8 registers; the
   compiler does not manage this on its own (it jams two non-zeros and falls back to scalar code). Multiply and add
   stay separate, as in the scalar code. */
__attribute__((target("avx512f"))) static void SpFwdTileAVX512(float *out, PetscBool add, const CsCSR *X, const float *w, const float *b,
                                                                PetscInt O, PetscInt o0)
{
  for (PetscInt i = 0; i < X->nrows; i++) {
    __m512 a0, a1, a2, a3, a4, a5, a6, a7;
    if (add && X->indptr[i] == X->indptr[i + 1]) continue;
    if (add || b) {
      const float *bb = add ? out + (size_t)i * O + o0 : b + o0;
      a0 = _mm512_loadu_ps(bb), a1 = _mm512_loadu_ps(bb + 16), a2 = _mm512_loadu_ps(bb + 32), a3 = _mm512_loadu_ps(bb + 48);
      a4 = _mm512_loadu_ps(bb + 64), a5 = _mm512_loadu_ps(bb + 80), a6 = _mm512_loadu_ps(bb + 96), a7 = _mm512_loadu_ps(bb + 112);
    } else a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = _mm512_setzero_ps();
    for (int64_t k = X->indptr[i], kend = X->indptr[i + 1]; k < kend; k++) {
      const float *wr = w + (size_t)X->indices[k] * O + o0;
      const __m512 v  = _mm512_set1_ps(X->data[k]);
      if (k + CS_SP_AHEAD < kend) { /* the rows are scattered: fetch a later one while this one is summed */
        const char *nx = (const char *)(w + (size_t)X->indices[k + CS_SP_AHEAD] * O + o0);
        for (int c = 0; c < 8; c++) _mm_prefetch(nx + 64 * c, _MM_HINT_T0);
      }
      a0 = _mm512_add_ps(a0, _mm512_mul_ps(v, _mm512_loadu_ps(wr)));
      a1 = _mm512_add_ps(a1, _mm512_mul_ps(v, _mm512_loadu_ps(wr + 16)));
      a2 = _mm512_add_ps(a2, _mm512_mul_ps(v, _mm512_loadu_ps(wr + 32)));
      a3 = _mm512_add_ps(a3, _mm512_mul_ps(v, _mm512_loadu_ps(wr + 48)));
      a4 = _mm512_add_ps(a4, _mm512_mul_ps(v, _mm512_loadu_ps(wr + 64)));
      a5 = _mm512_add_ps(a5, _mm512_mul_ps(v, _mm512_loadu_ps(wr + 80)));
      a6 = _mm512_add_ps(a6, _mm512_mul_ps(v, _mm512_loadu_ps(wr + 96)));
      a7 = _mm512_add_ps(a7, _mm512_mul_ps(v, _mm512_loadu_ps(wr + 112)));
    }
    float *o = out + (size_t)i * O + o0;
    _mm512_storeu_ps(o, a0), _mm512_storeu_ps(o + 16, a1), _mm512_storeu_ps(o + 32, a2), _mm512_storeu_ps(o + 48, a3);
    _mm512_storeu_ps(o + 64, a4), _mm512_storeu_ps(o + 80, a5), _mm512_storeu_ps(o + 96, a6), _mm512_storeu_ps(o + 112, a7);
  }
}

/* AVX2 has 16 registers: a 128-column tile is two passes over the row's non-zeros of 64 columns each (8 registers
   of accumulator). */
__attribute__((target("avx2"))) static void SpFwdHalfAVX2(float *out, PetscBool add, const CsCSR *X, const float *w, const float *b,
                                                          PetscInt O, PetscInt o0)
{
  for (PetscInt i = 0; i < X->nrows; i++) {
    __m256 a0, a1, a2, a3, a4, a5, a6, a7;
    if (add && X->indptr[i] == X->indptr[i + 1]) continue;
    if (add || b) {
      const float *bb = add ? out + (size_t)i * O + o0 : b + o0;
      a0 = _mm256_loadu_ps(bb), a1 = _mm256_loadu_ps(bb + 8), a2 = _mm256_loadu_ps(bb + 16), a3 = _mm256_loadu_ps(bb + 24);
      a4 = _mm256_loadu_ps(bb + 32), a5 = _mm256_loadu_ps(bb + 40), a6 = _mm256_loadu_ps(bb + 48), a7 = _mm256_loadu_ps(bb + 56);
    } else a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = _mm256_setzero_ps();
    for (int64_t k = X->indptr[i], kend = X->indptr[i + 1]; k < kend; k++) {
      const float *wr = w + (size_t)X->indices[k] * O + o0;
      const __m256 v  = _mm256_set1_ps(X->data[k]);
      if (k + CS_SP_AHEAD < kend) {
        const char *nx = (const char *)(w + (size_t)X->indices[k + CS_SP_AHEAD] * O + o0);
        for (int c = 0; c < 4; c++) _mm_prefetch(nx + 64 * c, _MM_HINT_T0);
      }
      a0 = _mm256_add_ps(a0, _mm256_mul_ps(v, _mm256_loadu_ps(wr)));
      a1 = _mm256_add_ps(a1, _mm256_mul_ps(v, _mm256_loadu_ps(wr + 8)));
      a2 = _mm256_add_ps(a2, _mm256_mul_ps(v, _mm256_loadu_ps(wr + 16)));
      a3 = _mm256_add_ps(a3, _mm256_mul_ps(v, _mm256_loadu_ps(wr + 24)));
      a4 = _mm256_add_ps(a4, _mm256_mul_ps(v, _mm256_loadu_ps(wr + 32)));
      a5 = _mm256_add_ps(a5, _mm256_mul_ps(v, _mm256_loadu_ps(wr + 40)));
      a6 = _mm256_add_ps(a6, _mm256_mul_ps(v, _mm256_loadu_ps(wr + 48)));
      a7 = _mm256_add_ps(a7, _mm256_mul_ps(v, _mm256_loadu_ps(wr + 56)));
    }
    float *o = out + (size_t)i * O + o0;
    _mm256_storeu_ps(o, a0), _mm256_storeu_ps(o + 8, a1), _mm256_storeu_ps(o + 16, a2), _mm256_storeu_ps(o + 24, a3);
    _mm256_storeu_ps(o + 32, a4), _mm256_storeu_ps(o + 40, a5), _mm256_storeu_ps(o + 48, a6), _mm256_storeu_ps(o + 56, a7);
  }
}

__attribute__((target("avx512f"))) static void SpBwdTileAVX512(float *dw, const float *dout, const CsCSR *X, PetscInt O, PetscInt o0)
{
  for (PetscInt i = 0; i < X->nrows; i++) {
    const float *gr = dout + (size_t)i * O + o0;
    __m512 g0 = _mm512_loadu_ps(gr), g1 = _mm512_loadu_ps(gr + 16), g2 = _mm512_loadu_ps(gr + 32), g3 = _mm512_loadu_ps(gr + 48);
    __m512 g4 = _mm512_loadu_ps(gr + 64), g5 = _mm512_loadu_ps(gr + 80), g6 = _mm512_loadu_ps(gr + 96), g7 = _mm512_loadu_ps(gr + 112);
    for (int64_t k = X->indptr[i]; k < X->indptr[i + 1]; k++) {
      float       *d = dw + (size_t)X->indices[k] * O + o0;
      const __m512 v = _mm512_set1_ps(X->data[k]);

      _mm512_storeu_ps(d, _mm512_add_ps(_mm512_loadu_ps(d), _mm512_mul_ps(v, g0)));
      _mm512_storeu_ps(d + 16, _mm512_add_ps(_mm512_loadu_ps(d + 16), _mm512_mul_ps(v, g1)));
      _mm512_storeu_ps(d + 32, _mm512_add_ps(_mm512_loadu_ps(d + 32), _mm512_mul_ps(v, g2)));
      _mm512_storeu_ps(d + 48, _mm512_add_ps(_mm512_loadu_ps(d + 48), _mm512_mul_ps(v, g3)));
      _mm512_storeu_ps(d + 64, _mm512_add_ps(_mm512_loadu_ps(d + 64), _mm512_mul_ps(v, g4)));
      _mm512_storeu_ps(d + 80, _mm512_add_ps(_mm512_loadu_ps(d + 80), _mm512_mul_ps(v, g5)));
      _mm512_storeu_ps(d + 96, _mm512_add_ps(_mm512_loadu_ps(d + 96), _mm512_mul_ps(v, g6)));
      _mm512_storeu_ps(d + 112, _mm512_add_ps(_mm512_loadu_ps(d + 112), _mm512_mul_ps(v, g7)));
    }
  }
}
#endif

/* out[:, o0:o0+ot] = X w[:, o0:o0+ot] + b (add: out += X w). */
static void SpFwdTile(float *out, PetscBool add, const CsCSR *X, const float *w, const float *b, PetscInt O, PetscInt o0, PetscInt ot)
{
#if defined(CS_HAVE_AVX512_PATH)
  if (ot == CS_SP_TILE && CsNNHaveAVX512()) {
    SpFwdTileAVX512(out, add, X, w, b, O, o0);
    return;
  }
  if (ot % 64 == 0 && CsNNHaveAVX2()) {
    for (PetscInt h = 0; h < ot; h += 64) SpFwdHalfAVX2(out, add, X, w, b, O, o0 + h);
    return;
  }
#endif
  SpFwdTileScalar(out, add, X, w, b, O, o0, ot);
}

static void SpBwdTile(float *dw, const float *dout, const CsCSR *X, PetscInt O, PetscInt o0, PetscInt ot)
{
#if defined(CS_HAVE_AVX512_PATH)
  if (ot == CS_SP_TILE && CsNNHaveAVX512()) {
    SpBwdTileAVX512(dw, dout, X, O, o0);
    return;
  }
#endif
  SpBwdTileScalar(dw, dout, X, O, o0, ot);
}

typedef struct {
  float       *out, *dw;
  const float *w, *b, *dout;
  const CsCSR *X;
  PetscInt     O;
  PetscBool    add;
} SpCtx;

static void TaskSpFwd(void *ctx, int t, int nt)
{
  SpCtx *c = (SpCtx *)ctx;
  size_t lo, hi;
  CsPoolChunk((size_t)c->O, t, nt, 16, &lo, &hi);
  for (size_t o0 = lo; o0 < hi; o0 += CS_SP_TILE)
    SpFwdTile(c->out, c->add, c->X, c->w, c->b, c->O, (PetscInt)o0, (PetscInt)PetscMin(CS_SP_TILE, hi - o0));
}

static void TaskSpBwd(void *ctx, int t, int nt)
{
  SpCtx *c = (SpCtx *)ctx;
  size_t lo, hi;
  CsPoolChunk((size_t)c->O, t, nt, 16, &lo, &hi);
  for (size_t o0 = lo; o0 < hi; o0 += CS_SP_TILE) SpBwdTile(c->dw, c->dout, c->X, c->O, (PetscInt)o0, (PetscInt)PetscMin(CS_SP_TILE, hi - o0));
}

void cs_linear_sparse_forward(float *out /*[B,O]*/, const CsCSR *X /*[B,I]*/, const float *w /*[I,O]*/, const float *b /*[O]*/,
                              PetscInt O)
{
  SpCtx c = {out, NULL, w, b, NULL, X, O, PETSC_FALSE};
  CsPoolRun(TaskSpFwd, &c);
}

void cs_linear_sparse_backward(float *dw /*[I,O]*/, float *db /*[O]*/, const float *dout /*[B,O]*/, const CsCSR *X /*[B,I]*/,
                               PetscInt O)
{
  /* dW = X^T dout is the forward kernel on the transposed batch: each weight row is then read and written once per
     tile instead of once per non-zero. Without memory for the transpose, scatter row by row. */
  int64_t  nnz = X->indptr[X->nrows] - X->indptr[0];
  CsCSR    T;
  int64_t *ptr = (int64_t *)malloc(sizeof(int64_t) * ((size_t)X->ncols + 2));
  int32_t *idx = (int32_t *)malloc(sizeof(int32_t) * (size_t)(nnz + 1));
  float   *val = (float *)malloc(sizeof(float) * (size_t)(nnz + 1));
  if (ptr && idx && val) {
    memset(ptr, 0, sizeof(int64_t) * ((size_t)X->ncols + 2));
    for (int64_t k = X->indptr[0]; k < X->indptr[X->nrows]; k++) ptr[X->indices[k] + 2]++;
    for (PetscInt j = 0; j < X->ncols; j++) ptr[j + 2] += ptr[j + 1];
    for (PetscInt i = 0; i < X->nrows; i++)
      for (int64_t k = X->indptr[i]; k < X->indptr[i + 1]; k++) {
        int64_t e = ptr[X->indices[k] + 1]++;
        idx[e] = (int32_t)i, val[e] = X->data[k];
      }
    T.nrows = X->ncols, T.ncols = X->nrows, T.indptr = ptr, T.indices = idx, T.data = val;
    SpCtx c = {dw, NULL, dout, NULL, NULL, &T, O, PETSC_TRUE};
    CsPoolRun(TaskSpFwd, &c);
  } else {
    SpCtx c = {NULL, dw, NULL, NULL, dout, X, O, PETSC_FALSE};
    CsPoolRun(TaskSpBwd, &c);
  }
  free(ptr), free(idx), free(val);
  if (db) CsNNColSumAdd(db, dout, X->nrows, O);
}

/* ------------------------------------------------------------------------------------------------- bias */

CS_NN_VEC void cs_bias_forward(float *out /*[B,C]*/, const float *inp /*[B,C]*/, const float *b /*[C]*/, PetscInt B, PetscInt C)
{
  for (PetscInt i = 0; i < B; i++)
    for (PetscInt j = 0; j < C; j++) out[(size_t)i * C + j] = inp[(size_t)i * C + j] + b[j];
}

void cs_bias_backward(float *dinp /*[B,C]*/, float *db /*[C]*/, const float *dout /*[B,C]*/, PetscInt B, PetscInt C)
{
  if (db) CsNNColSumAdd(db, dout, B, C);
  if (dinp) CsNNAxpy1(dinp, dout, (size_t)B * C);
}

/* ------------------------------------------------------------------------------------------------- activations */

/* One fused row of activation and dropout; the common piecewise-linear activations get vectorisable loops, the
   transcendental ones go through CsNNActEval. */
CS_NN_VEC void CsNNActDropRow(float *restrict out, uint8_t *restrict keep, const float *restrict y, const uint32_t *restrict words,
                              uint32_t thr, float scale, CsNNAct act, PetscInt C)
{
  if (act == CS_NN_ACT_LEAKYRELU || act == CS_NN_ACT_RELU || act == CS_NN_ACT_NONE) {
    const float neg = act == CS_NN_ACT_LEAKYRELU ? CS_NN_LEAKY_SLOPE : act == CS_NN_ACT_RELU ? 0.0f : 1.0f;
    if (words)
      for (PetscInt j = 0; j < C; j++) {
        uint8_t k = words[j] >= thr;
        keep[j]   = k;
        out[j]    = y[j] * (y[j] > 0 ? 1.0f : neg) * (k ? scale : 0.0f);
      }
    else
      for (PetscInt j = 0; j < C; j++) out[j] = y[j] * (y[j] > 0 ? 1.0f : neg);
    return;
  }
  for (PetscInt j = 0; j < C; j++) {
    float d, a = CsNNActEval(act, y[j], &d);
    if (words) keep[j] = words[j] >= thr;
    out[j] = words ? a * (keep[j] ? scale : 0.0f) : a;
  }
}

void cs_activation_forward(CsNNAct act, float *out /*[n]*/, const float *inp /*[n]*/, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    float d;
    out[i] = CsNNActEval(act, inp[i], &d);
  }
}

void cs_activation_backward(CsNNAct act, float *dinp /*[n]*/, const float *dout /*[n]*/, const float *inp /*[n]*/, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    float d;
    (void)CsNNActEval(act, inp[i], &d);
    dinp[i] += dout[i] * d;
  }
}

/* ------------------------------------------------------------------------------------------------- dropout */

void CsNNDropoutWordsRange(uint32_t *r /*[64 nchunk]*/, uint64_t seed, uint64_t step, PetscInt layer, int64_t cell, PetscInt chunk0,
                           PetscInt nchunk)
{
  CsRngBlocks16(r, seed, CS_STREAM_DROPOUT, step, ((uint64_t)cell << 24) | ((uint64_t)(layer & 0xFF) << 16) | (uint64_t)(16 * chunk0),
                   nchunk);
}

void cs_dropout_words(uint32_t *r /*[C rounded up to 64]*/, uint64_t seed, uint64_t step, PetscInt layer, int64_t cell, PetscInt C)
{
  CsNNDropoutWordsRange(r, seed, step, layer, cell, 0, (C + 63) / 64);
}

/* The MLP's own rule (CsNNActDropRow with no activation), kept as a mask of factors for the unfused kernel. */
void cs_dropout_forward(float *out /*[B,C]*/, float *mask /*[B,C]*/, const float *inp /*[B,C]*/, PetscInt B, PetscInt C,
                        double p, const CsNNPass *pass, PetscInt layer)
{
  uint32_t words[1024]; /* 16 chunks of 64 units at a time */
  uint8_t  keep[1024];
  uint32_t thr   = CsNNDropoutThreshold(p);
  float    scale = (float)(1.0 / (1.0 - p));

  for (PetscInt i = 0; i < B; i++)
    for (PetscInt j0 = 0; j0 < C; j0 += 1024) {
      PetscInt n   = PetscMin(1024, C - j0);
      size_t   off = (size_t)i * C + j0;
      CsNNDropoutWordsRange(words, pass->seed, pass->step, layer, CsNNPassCell(pass, i), j0 / 64, (n + 63) / 64);
      CsNNActDropRow(out + off, keep, inp + off, words, thr, scale, CS_NN_ACT_NONE, n);
      for (PetscInt j = 0; j < n; j++) mask[off + j] = keep[j] ? scale : 0.0f;
    }
}

CS_NN_VEC void cs_dropout_backward(float *restrict dinp /*[n]*/, const float *restrict dout /*[n]*/, const float *restrict mask /*[n]*/,
                                   size_t n)
{
  for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * mask[i];
}

/* ------------------------------------------------------------------------------------------------- normalisation */

CS_NN_VEC void CsNNColSums2(double *restrict s /*[2C]*/, const float *restrict h /*[B,C]*/, PetscInt B, PetscInt C, PetscInt c0, PetscInt c1)
{
  double *restrict s2 = s + C;
  for (PetscInt j = c0; j < c1; j++) s[j] = 0, s2[j] = 0;
  for (PetscInt i = 0; i < B; i++) {
    const float *restrict row = h + (size_t)i * C;
    for (PetscInt j = c0; j < c1; j++) {
      double v = row[j];
      s[j] += v;
      s2[j] += v * v;
    }
  }
}

void CsNNBatchNormFinish(float *mean, float *rstd, float *running_mean, float *running_var, const float *shift, const double *s,
                         PetscInt N, PetscInt C, double momentum, double eps)
{
  for (PetscInt j = 0; j < C; j++) {
    double m = s[j] / N, var = s[C + j] / N - m * m;
    if (var < 0) var = 0;
    mean[j] = (float)m;
    rstd[j] = (float)(1.0 / sqrt(var + eps));
    if (running_mean) running_mean[j] = (float)((1 - momentum) * running_mean[j] + momentum * (m + (shift ? shift[j] : 0)));
    if (running_var) running_var[j] = (float)((1 - momentum) * running_var[j] + momentum * (N > 1 ? var * N / (N - 1) : var));
  }
}

void CsNNBatchNormEvalStats(float *mean, float *rstd, const float *running_mean, const float *running_var, const float *shift, PetscInt C,
                            double eps)
{
  for (PetscInt j = 0; j < C; j++) {
    mean[j] = shift ? running_mean[j] - shift[j] : running_mean[j];
    rstd[j] = (float)(1.0 / sqrt((double)running_var[j] + eps));
  }
}

void CsNNRowStats(float *mean /*[B]*/, float *rstd /*[B]*/, const float *h /*[B,C]*/, PetscInt B, PetscInt C, double eps)
{
  for (PetscInt i = 0; i < B; i++) {
    const float *row = h + (size_t)i * C;
    double       s = 0, s2 = 0, m, var;
    for (PetscInt j = 0; j < C; j++) s += row[j];
    m = s / C;
    for (PetscInt j = 0; j < C; j++) s2 += (row[j] - m) * (row[j] - m);
    var     = s2 / C;
    mean[i] = (float)m;
    rstd[i] = (float)(1.0 / sqrt(var + eps));
  }
}

CS_NN_VEC void CsNNNormRow(float *xhat, float *y, const float *h, const float *restrict mcol, const float *restrict rcol,
                           float m, float r, const float *restrict gamma, const float *restrict beta, PetscInt C)
{
  if (mcol) {
    for (PetscInt j = 0; j < C; j++) {
      float xh = (h[j] - mcol[j]) * rcol[j];
      xhat[j]  = xh;
      y[j]     = gamma ? gamma[j] * xh + beta[j] : xh;
    }
  } else {
    for (PetscInt j = 0; j < C; j++) {
      float xh = (h[j] - m) * r;
      xhat[j]  = xh;
      y[j]     = gamma ? gamma[j] * xh + beta[j] : xh;
    }
  }
}

/* The gradient below activation and dropout, v = dout act'(y) s, with y = gamma x + beta (gamma NULL: y = x) and s
   the dropout factor, for the piecewise-linear activations (slope neg below 0); the variants are spelled out so
   that each loop vectorises. */
#define CS_PL_VARIANTS(BODY) \
  do { \
    if (gam && kr) { \
      _Pragma("GCC ivdep") for (PetscInt j = c0; j < c1; j++) { \
        const float v = d[j] * ((gam[j] * xr[j] + bet[j]) > 0 ? 1.0f : neg) * (kr[j] ? scale : 0.0f); \
        BODY; \
      } \
    } else if (gam) { \
      _Pragma("GCC ivdep") for (PetscInt j = c0; j < c1; j++) { \
        const float v = d[j] * ((gam[j] * xr[j] + bet[j]) > 0 ? 1.0f : neg); \
        BODY; \
      } \
    } else if (kr) { \
      _Pragma("GCC ivdep") for (PetscInt j = c0; j < c1; j++) { \
        const float v = d[j] * (xr[j] > 0 ? 1.0f : neg) * (kr[j] ? scale : 0.0f); \
        BODY; \
      } \
    } else { \
      _Pragma("GCC ivdep") for (PetscInt j = c0; j < c1; j++) { \
        const float v = d[j] * (xr[j] > 0 ? 1.0f : neg); \
        BODY; \
      } \
    } \
  } while (0)

static inline int CsNNActPiecewiseLinear(CsNNAct act, float *neg)
{
  *neg = act == CS_NN_ACT_LEAKYRELU ? CS_NN_LEAKY_SLOPE : act == CS_NN_ACT_RELU ? 0.0f : 1.0f;
  return act == CS_NN_ACT_LEAKYRELU || act == CS_NN_ACT_RELU || act == CS_NN_ACT_NONE;
}

/* v for any activation (scalar). */
static inline float CsNNBackV(const CsNNActBack *ab, const float *d, const float *xr, const uint8_t *kr, PetscInt j)
{
  float dy, y = ab->gamma ? ab->gamma[j] * xr[j] + ab->beta[j] : xr[j];
  (void)CsNNActEval(ab->act, y, &dy);
  return d[j] * dy * (kr ? (kr[j] ? ab->scale : 0.0f) : 1.0f);
}

CS_NN_VEC void CsNNBackSums(double *restrict s /*[2C]*/, float *g /*[B,C]*/, const float *dout /*[B,C]*/, const CsNNActBack *ab,
                            const float *x /*[B,C]*/, PetscInt B, PetscInt C, PetscInt c0, PetscInt c1)
{
  double *restrict s2  = s + C;
  const float     *gam = ab ? ab->gamma : NULL, *bet = ab ? ab->beta : NULL;
  const float      scale = ab ? ab->scale : 1.0f;
  float            neg   = 1.0f;
  int              pl    = ab ? CsNNActPiecewiseLinear(ab->act, &neg) : 1;
  for (PetscInt j = c0; j < c1; j++) s[j] = 0, s2[j] = 0;
  for (PetscInt i = 0; i < B; i++) {
    const float   *d = dout + (size_t)i * C, *xr = x + (size_t)i * C;
    const uint8_t *kr = ab && ab->keep ? ab->keep + (size_t)i * C : NULL;
    float         *gr = g ? g + (size_t)i * C : NULL;
    if (!ab) {
      for (PetscInt j = c0; j < c1; j++) s[j] += d[j], s2[j] += (double)d[j] * xr[j];
    } else if (pl && gr) {
      CS_PL_VARIANTS(gr[j] = v; s[j] += v; s2[j] += (double)v * xr[j]);
    } else if (pl) {
      CS_PL_VARIANTS(s[j] += v; s2[j] += (double)v * xr[j]);
    } else {
      for (PetscInt j = c0; j < c1; j++) {
        float v = CsNNBackV(ab, d, xr, kr, j);
        if (gr) gr[j] = v;
        s[j] += v;
        s2[j] += (double)v * xr[j];
      }
    }
  }
}

CS_NN_VEC void CsNNBatchNormBackApply(float *dinp /*[B,C]*/, PetscBool accumulate, float *restrict db /*[C]*/, const float *dout /*[B,C]*/,
                                      const CsNNActBack *ab, const float *xhat /*[B,C]*/, const float *restrict rstd /*[C]*/,
                                      const float *restrict gamma /*[C]*/, const double *restrict s /*[2C]*/, PetscInt N, PetscInt B,
                                      PetscInt C, PetscInt c0, PetscInt c1, float *restrict abc /*[3C]*/)
{
  /* Per-column constants: dinp = A (v - Bc - xhat Cc). */
  float *restrict A = abc, *restrict Bc = abc + C, *restrict Cc = abc + 2 * C;
  const float    *gam = ab ? ab->gamma : NULL, *bet = ab ? ab->beta : NULL;
  const float     scale = ab ? ab->scale : 1.0f;
  float           neg   = 1.0f;
  int             pl    = ab ? CsNNActPiecewiseLinear(ab->act, &neg) : 1;
  for (PetscInt j = c0; j < c1; j++) {
    A[j]  = gamma[j] * rstd[j];
    Bc[j] = (float)(s[j] / N);
    Cc[j] = (float)(s[C + j] / N);
  }
  for (PetscInt i = 0; i < B; i++) {
    const float   *d = dout + (size_t)i * C, *xr = xhat + (size_t)i * C;
    const uint8_t *kr = ab && ab->keep ? ab->keep + (size_t)i * C : NULL;
    float         *dr = dinp + (size_t)i * C;
    if (!ab && accumulate) {
      for (PetscInt j = c0; j < c1; j++) {
        float r = A[j] * (d[j] - Bc[j] - xr[j] * Cc[j]);
        dr[j] += r;
        if (db) db[j] += r;
      }
    } else if (pl && !accumulate && db) {
      CS_PL_VARIANTS(const float r = A[j] * (v - Bc[j] - xr[j] * Cc[j]); dr[j] = r; db[j] += r);
    } else {
      for (PetscInt j = c0; j < c1; j++) {
        float v = ab ? CsNNBackV(ab, d, xr, kr, j) : d[j], r = A[j] * (v - Bc[j] - xr[j] * Cc[j]);
        dr[j]   = accumulate ? dr[j] + r : r;
        if (db) db[j] += r;
      }
    }
  }
}

CS_NN_VEC void CsNNBatchNormEvalBackApply(float *dinp, PetscBool accumulate, float *restrict db, const float *g,
                                          const float *restrict rstd, const float *restrict gamma, PetscInt B, PetscInt C, PetscInt c0,
                                          PetscInt c1)
{
  for (PetscInt i = 0; i < B; i++) {
    const float *gr = g + (size_t)i * C;
    float       *dr = dinp + (size_t)i * C;
    for (PetscInt j = c0; j < c1; j++) {
      float d = gr[j] * gamma[j] * rstd[j];
      dr[j]   = accumulate ? dr[j] + d : d;
      if (db) db[j] += d;
    }
  }
}

void CsNNLayerNormBackApply(float *dinp, PetscBool accumulate, float *dgamma, float *dbeta, float *db, const float *g,
                            const float *x, const float *mean, const float *rstd, const float *gamma, PetscInt B, PetscInt C)
{
  for (PetscInt i = 0; i < B; i++) {
    const float *gr = g + (size_t)i * C, *xr = x + (size_t)i * C;
    float       *dr = dinp ? dinp + (size_t)i * C : NULL;
    double       s1 = 0, s2 = 0;
#define CS_LN_XHAT(j) (mean ? (xr[j] - mean[i]) * rstd[i] : xr[j])
    for (PetscInt j = 0; j < C; j++) {
      float  xh  = CS_LN_XHAT(j);
      double dxh = (double)gr[j] * (gamma ? gamma[j] : 1.0f);
      s1 += dxh;
      s2 += dxh * xh;
      if (dgamma) dgamma[j] += gr[j] * xh;
      if (dbeta) dbeta[j] += gr[j];
    }
    if (!dr) continue;
    s1 /= C, s2 /= C;
    for (PetscInt j = 0; j < C; j++) {
      float xh = CS_LN_XHAT(j);
      float d  = (float)(rstd[i] * ((double)gr[j] * (gamma ? gamma[j] : 1.0f) - s1 - xh * s2));
      dr[j]    = accumulate ? dr[j] + d : d;
      if (db) db[j] += d;
    }
#undef CS_LN_XHAT
  }
}

PetscErrorCode cs_batchnorm_forward(float *out /*[B,C]*/, float *xhat /*[B,C]*/, float *rstd /*[C]*/, const float *inp /*[B,C]*/,
                                    const float *gamma /*[C]*/, const float *beta /*[C]*/, float *running_mean /*[C]*/,
                                    float *running_var /*[C]*/, PetscInt B, PetscInt C, double momentum, double eps,
                                    const CsNNPass *pass, double *work /*[4C]*/)
{
  float *mean = (float *)(work + 2 * C); /* the last 2C doubles hold C floats of mean */

  PetscFunctionBeginUser;
  if (pass->train) {
    CsNNColSums2(work, inp, B, C, 0, C);
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, work, (PetscMPIInt)(2 * C), MPI_DOUBLE, MPI_SUM, pass->comm));
    CsNNBatchNormFinish(mean, rstd, running_mean, running_var, NULL, work, pass->nglobal, C, momentum, eps);
  } else CsNNBatchNormEvalStats(mean, rstd, running_mean, running_var, NULL, C, eps);
  for (PetscInt i = 0; i < B; i++)
    CsNNNormRow(xhat + (size_t)i * C, out + (size_t)i * C, inp + (size_t)i * C, mean, rstd, 0, 0, gamma, beta, C);
  PetscFunctionReturn(0);
}

PetscErrorCode cs_batchnorm_backward(float *dinp /*[B,C]*/, float *dgamma /*[C]*/, float *dbeta /*[C]*/, const float *dout /*[B,C]*/,
                                     const float *xhat /*[B,C]*/, const float *rstd /*[C]*/, const float *gamma /*[C]*/, PetscInt B,
                                     PetscInt C, const CsNNPass *pass, double *work /*[4C]*/)
{
  PetscFunctionBeginUser;
  CsNNBackSums(work, NULL, dout, NULL, xhat, B, C, 0, C);
  for (PetscInt j = 0; j < C; j++) {
    if (dbeta) dbeta[j] += (float)work[j];
    if (dgamma) dgamma[j] += (float)work[C + j];
  }
  if (!dinp) PetscFunctionReturn(0);
  if (pass->train) {
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, work, (PetscMPIInt)(2 * C), MPI_DOUBLE, MPI_SUM, pass->comm));
    CsNNBatchNormBackApply(dinp, PETSC_TRUE, NULL, dout, NULL, xhat, rstd, gamma, work, pass->nglobal, B, C, 0, C, (float *)(work + 2 * C));
  } else CsNNBatchNormEvalBackApply(dinp, PETSC_TRUE, NULL, dout, rstd, gamma, B, C, 0, C);
  PetscFunctionReturn(0);
}

void cs_layernorm_forward(float *out /*[B,C]*/, float *mean /*[B]*/, float *rstd /*[B]*/, const float *inp /*[B,C]*/,
                          const float *gamma /*[C]*/, const float *beta /*[C]*/, PetscInt B, PetscInt C, double eps)
{
  CsNNRowStats(mean, rstd, inp, B, C, eps);
  /* xhat is not cached (backward recomputes it): let it land in out, which y then overwrites. */
  for (PetscInt i = 0; i < B; i++)
    CsNNNormRow(out + (size_t)i * C, out + (size_t)i * C, inp + (size_t)i * C, NULL, NULL, mean[i], rstd[i], gamma, beta, C);
}

void cs_layernorm_backward(float *dinp /*[B,C]*/, float *dgamma /*[C]*/, float *dbeta /*[C]*/, const float *dout /*[B,C]*/,
                           const float *inp /*[B,C]*/, const float *mean /*[B]*/, const float *rstd /*[B]*/,
                           const float *gamma /*[C]*/, PetscInt B, PetscInt C)
{
  /* xhat is recomputed from the input and the cached row statistics. */
  CsNNLayerNormBackApply(dinp, PETSC_TRUE, dgamma, dbeta, NULL, dout, inp, mean, rstd, gamma, B, C);
}

/* ------------------------------------------------------------------------------------------------- embedding, concat */

void cs_embedding_forward(float *out /*[B,D]*/, const PetscInt *idx /*[B]*/, const float *table /*[V,D]*/, PetscInt B, PetscInt D)
{
  for (PetscInt i = 0; i < B; i++) memcpy(out + (size_t)i * D, table + (size_t)idx[i] * D, sizeof(float) * (size_t)D);
}

void cs_embedding_backward(float *dtable /*[V,D]*/, const float *dout /*[B,D]*/, const PetscInt *idx /*[B]*/, PetscInt B, PetscInt D)
{
  for (PetscInt i = 0; i < B; i++) CsNNAxpy1(dtable + (size_t)idx[i] * D, dout + (size_t)i * D, (size_t)D);
}

const char *const CsNNDosers[] = {"logsigm", "sigm", "linear", NULL};

/* f(d) and its derivatives with respect to beta and bias. */
static double DoseResponse(CsNNDoser doser, double d, double beta, double bias, double *dbeta, double *dbias)
{
  double u, s, s0;
  if (doser == CS_NN_DOSER_LINEAR) {
    *dbeta = *dbias = 0;
    return d;
  }
  u      = doser == CS_NN_DOSER_LOGSIGM ? log1p(d) : d;
  s      = 1 / (1 + exp(-(u * beta + bias)));
  s0     = 1 / (1 + exp(-bias));
  *dbeta = s * (1 - s) * u;
  *dbias = s * (1 - s) - s0 * (1 - s0);
  return s - s0;
}

void cs_dose_embedding_forward(float *out /*[B,D]*/, const PetscInt *rowptr /*[B+1]*/, const PetscInt *atom /*[nnz]*/,
                               const double *dose /*[nnz]*/, const float *E /*[A,D]*/, const float *beta /*[A]*/,
                               const float *bias /*[A]*/, CsNNDoser doser, PetscInt B, PetscInt D)
{
  for (PetscInt r = 0; r < B; r++)
    for (PetscInt k = rowptr[r]; k < rowptr[r + 1]; k++) {
      PetscInt a = atom[k];
      double   db, dc;
      float    f = (float)DoseResponse(doser, dose[k], beta ? beta[a] : 1, bias ? bias[a] : 0, &db, &dc);
      for (PetscInt j = 0; j < D; j++) out[(size_t)r * D + j] += f * E[(size_t)a * D + j];
    }
}

void cs_dose_embedding_backward(float *dE /*[A,D]*/, float *dbeta /*[A]*/, float *dbias /*[A]*/, const float *dout /*[B,D]*/,
                                const PetscInt *rowptr /*[B+1]*/, const PetscInt *atom /*[nnz]*/, const double *dose /*[nnz]*/,
                                const float *E /*[A,D]*/, const float *beta /*[A]*/, const float *bias /*[A]*/, CsNNDoser doser,
                                PetscInt B, PetscInt D)
{
  for (PetscInt r = 0; r < B; r++)
    for (PetscInt k = rowptr[r]; k < rowptr[r + 1]; k++) {
      PetscInt     a = atom[k];
      double       db, dc, df = 0, f = DoseResponse(doser, dose[k], beta ? beta[a] : 1, bias ? bias[a] : 0, &db, &dc);
      const float *g = dout + (size_t)r * D;
      for (PetscInt j = 0; j < D; j++) {
        if (dE) dE[(size_t)a * D + j] += (float)f * g[j];
        df += (double)E[(size_t)a * D + j] * g[j];
      }
      if (dbeta) dbeta[a] += (float)(df * db);
      if (dbias) dbias[a] += (float)(df * dc);
    }
}

void cs_concat_forward(float *out /*[B, sum C]*/, PetscInt k, const float *const in[] /*k x [B, C_i]*/, const PetscInt C[] /*[k]*/,
                       PetscInt B)
{
  PetscInt tot = 0;
  for (PetscInt b = 0; b < k; b++) tot += C[b];
  for (PetscInt i = 0; i < B; i++) {
    float *row = out + (size_t)i * tot;
    for (PetscInt b = 0; b < k; b++) {
      memcpy(row, in[b] + (size_t)i * C[b], sizeof(float) * (size_t)C[b]);
      row += C[b];
    }
  }
}

void cs_concat_backward(float *const din[] /*k x [B, C_i]*/, PetscInt k, const float *dout /*[B, sum C]*/, const PetscInt C[] /*[k]*/,
                        PetscInt B)
{
  PetscInt tot = 0;
  for (PetscInt b = 0; b < k; b++) tot += C[b];
  for (PetscInt i = 0; i < B; i++) {
    const float *row = dout + (size_t)i * tot;
    for (PetscInt b = 0; b < k; b++) {
      if (din[b]) CsNNAxpy1(din[b] + (size_t)i * C[b], row, (size_t)C[b]);
      row += C[b];
    }
  }
}
