/* Private helpers of src/nn: vector-dispatch attribute, scalar activation math, and the normalisation /
   activation / dropout pieces shared by the standalone layers and the fused MLP blocks. */
#ifndef CELLSHIFT_NNIMPL_H
#define CELLSHIFT_NNIMPL_H

#include <cellshift/nn.h>
#include <cellshift/rng.h>
#include <math.h>

/* The hot elementwise loops: see CS_VEC (sys.h). */
#define CS_NN_VEC CS_VEC

/* Before a loop over the CS_LANES-style partial sums of a reduction: kept as a loop (not unrolled into scalars),
   so that it becomes one vector operation per step (GCC otherwise unrolls it and cannot vectorise the 16 separate
   scalar reductions). */
#if defined(__GNUC__) && !defined(__clang__)
  #define CS_NN_LANES _Pragma("GCC unroll 1")
#else
  #define CS_NN_LANES
#endif

/* The explicitly vectorised paths (Adam, sparse first layer) test CsHaveAVX512 and CsHaveAVX2 (sys.h). */
#define CsNNHaveAVX512() CsHaveAVX512()
#define CsNNHaveAVX2()   CsHaveAVX2()

/* Activation value and derivative at y. */
static inline float CsNNActEval(CsNNAct a, float y, float *d)
{
  switch (a) {
  case CS_NN_ACT_RELU:
    *d = y > 0 ? 1.0f : 0.0f;
    return y > 0 ? y : 0.0f;
  case CS_NN_ACT_LEAKYRELU:
    *d = y > 0 ? 1.0f : CS_NN_LEAKY_SLOPE;
    return y > 0 ? y : CS_NN_LEAKY_SLOPE * y;
  case CS_NN_ACT_GELU: {
    float cdf = 0.5f * (1.0f + erff(y * (float)M_SQRT1_2));
    *d        = cdf + y * expf(-0.5f * y * y) * (float)(0.5 * M_2_SQRTPI * M_SQRT1_2);
    return y * cdf;
  }
  case CS_NN_ACT_SIGMOID: {
    float s = 1.0f / (1.0f + expf(-y));
    *d      = s * (1.0f - s);
    return s;
  }
  case CS_NN_ACT_SOFTPLUS:
    if (y > 20.0f) {
      *d = 1.0f;
      return y;
    }
    *d = 1.0f / (1.0f + expf(-y));
    return log1pf(expf(y));
  case CS_NN_ACT_SILU: {
    float s = 1.0f / (1.0f + expf(-y)); /* expf overflows to inf below -88: s = 0, value -0, derivative 0 */
    *d      = s * (1.0f + y * (1.0f - s));
    return y * s;
  }
  default:
    *d = 1.0f;
    return y;
  }
}

/* Per-row work of the fused passes: words of the dropout generator and one row of pre-activations. */
typedef struct {
  uint32_t *words; /* [C rounded up to 64] */
  float    *y;     /* [C] */
} CsNNRowWork;

/* Dropout threshold on 32-bit words: keep iff word >= thr. */
static inline uint32_t CsNNDropoutThreshold(double p)
{
  double t = ldexp(p, 32);
  return t >= 4294967295.0 ? 0xFFFFFFFFu : (uint32_t)llround(t);
}

/* nn buffers (params.c): zeroed, 64-byte aligned blocks (whole vectors never straddle cache lines) taken from
   PetscMalloc, so that -malloc_debug and -malloc_dump see them; CsNNFree(&p) releases one and sets p to NULL. */
PetscErrorCode CsNNMalloc(size_t bytes, void *p);
PetscErrorCode CsNNFree(void *p);

/* The elementwise kernels run on the thread pool of src/core/threads.c (CsPoolRun, CsPoolChunk in sys.h). The
   kernels below that take a column range [c0, c1) are split by columns, so each column's sums keep the serial order
   and every thread count gives the same bits. */

/* Sharded reduction (reduce.c): after CsNNReducerEnd, this rank owns [lo, hi) of the buffer and gshard (= P->g + lo)
   holds the reduced gradient of that slice, the rest of P->g is zero; false when the reduction is not sharded (or
   one rank). CsNNReducerAllgather
   completes x (laid out like the parameters) from every rank's slice. */
PetscBool      CsNNReducerSharded(CsNNReducer r, size_t *lo, size_t *hi, float **gshard);
MPI_Comm       CsNNReducerComm(CsNNReducer r);
void           CsNNReducerAttach(CsNNReducer r); /* an optimiser will update the slices */
PETSC_INTERN PetscErrorCode CsNNReducerAllgather(CsNNReducer r, float *x);

/* Normalisation statistics. BatchNorm: local double sums s[j] of h and s[C + j] of h^2, j in [c0, c1). */
void CsNNColSums2(double *s, const float *h, PetscInt B, PetscInt C, PetscInt c0, PetscInt c1);
/* From globally reduced sums: mean/rstd of the batch, and the running statistics update. shift (NULL = 0): a
   per-column constant left out of the statistics (a linear bias before the normalisation), added to the running mean. */
PETSC_INTERN void CsNNBatchNormFinish(float *mean, float *rstd, float *running_mean, float *running_var, const float *shift, const double *s,
                         PetscInt N, PetscInt C, double momentum, double eps);
/* Eval: mean/rstd from the running statistics (mean = running_mean - shift). */
PETSC_INTERN void CsNNBatchNormEvalStats(float *mean, float *rstd, const float *running_mean, const float *running_var, const float *shift,
                            PetscInt C, double eps);
/* LayerNorm row statistics. */
PETSC_INTERN void CsNNRowStats(float *mean, float *rstd, const float *h, PetscInt B, PetscInt C, double eps);

/* Dropout words of chunks [chunk0, chunk0 + nchunk) of 64 units (see cs_dropout_forward). */
PETSC_INTERN void CsNNDropoutWordsRange(uint32_t *r, uint64_t seed, uint64_t step, PetscInt layer, int64_t cell, PetscInt chunk0,
                           PetscInt nchunk);
/* One row: xhat = (h - m) * r (m, r per column when mcol/rcol are given, else the scalars m, r), y = gamma xhat +
   beta (gamma/beta NULL: y = xhat). xhat may alias h or y (then y wins). */
PETSC_INTERN void CsNNNormRow(float *xhat, float *y, const float *h, const float *mcol, const float *rcol, float m, float r,
                 const float *gamma, const float *beta, PetscInt C);
/* One row: out = act(y) * s with s = scale where words[j] >= thr, else 0, and keep[j] = (words[j] >= thr)
   (words NULL: no dropout, s = 1, keep untouched). */
PETSC_INTERN void CsNNActDropRow(float *out, uint8_t *keep, const float *y, const uint32_t *words, uint32_t thr, float scale, CsNNAct act,
                    PetscInt C);

/* How backward gets below an activation and dropout without a cached factor: the derivative is recomputed from
   y = gamma x + beta (x = xhat of a normalised block; gamma NULL: y = x, the linear output) and the dropout decision
   from keep (NULL: no dropout): v = dout act'(y) (keep ? scale : 0). */
typedef struct {
  CsNNAct        act;
  const uint8_t *keep; /* [B,C] or NULL */
  float          scale;
  const float   *gamma, *beta;
} CsNNActBack;

/* Backward sums over columns [c0, c1): v as above (ab NULL: v = dout), s[j] = sum v, s[C + j] = sum v x; v is also
   stored in g when g is given (g may alias dout). */
PETSC_INTERN void CsNNBackSums(double *s, float *g, const float *dout, const CsNNActBack *ab, const float *x, PetscInt B, PetscInt C,
                  PetscInt c0, PetscInt c1);
/* BatchNorm train backward over columns [c0, c1) with globally reduced sums s over N rows: v recomputed from dout
   (ab NULL: v = dout), d = gamma rstd (v - s0/N - xhat s1/N); dinp = d (accumulate: +=); db += column sums of d
   (NULL: skipped). dinp may alias dout when not accumulating. */
PETSC_INTERN void CsNNBatchNormBackApply(float *dinp, PetscBool accumulate, float *db, const float *dout, const CsNNActBack *ab,
                            const float *xhat, const float *rstd, const float *gamma, const double *s, PetscInt N, PetscInt B,
                            PetscInt C, PetscInt c0, PetscInt c1, float *abc /*[3C] work*/);
/* Eval-mode BatchNorm backward: d = g gamma rstd. */
PETSC_INTERN void CsNNBatchNormEvalBackApply(float *dinp, PetscBool accumulate, float *db, const float *g, const float *rstd,
                                const float *gamma, PetscInt B, PetscInt C, PetscInt c0, PetscInt c1);
/* LayerNorm backward per row from x = xhat (mean NULL) or x = the input with its row mean/rstd; dinp (NULL: only
   dgamma, dbeta), dgamma, dbeta += (NULL: skipped), db += column sums of d. */
PETSC_INTERN void CsNNLayerNormBackApply(float *dinp, PetscBool accumulate, float *dgamma, float *dbeta, float *db, const float *g,
                            const float *x, const float *mean, const float *rstd, const float *gamma, PetscInt B, PetscInt C);
/* db[C] += column sums of d[B,C] (over columns [c0, c1) for the range version). */
PETSC_INTERN void CsNNColSumAdd(float *db, const float *d, PetscInt B, PetscInt C);
PETSC_INTERN void CsNNColSumAddRange(float *db, const float *d, PetscInt B, PetscInt C, PetscInt c0, PetscInt c1);
/* Sum over n of (a - b)^2 (b NULL: a^2) in double with 8 accumulators (vectorisable, the same order in every
   clone); dA += g (a - b) (assign: dA = g (a - b)) when dA is given. */
PETSC_INTERN double CsNNSqDiff(float *dA, PetscBool assign, const float *a, const float *b, size_t n, float g);
/* cs_mse_loss (target dense) or cs_mse_loss_csr (T given) writing the gradient instead of accumulating it. */
PETSC_INTERN double CsNNMSELossAssign(float *dpred, const float *pred, const float *target, const CsCSR *T, PetscInt B, PetscInt C, PetscInt nglobal,
                         double weight);
/* y[n] += x[n] */
void CsNNAxpy1(float *y, const float *x, size_t n);

/* exp(x) for x <= 0 (arguments of softmax and log-sum-exp after the maximum is subtracted), written so that loops
   over it vectorise: x = n ln2 + r with |r| <= ln2/2 (n rounded by adding 1.5 2^23, whose low mantissa bits then
   hold n: no float-to-int conversion), r in two parts, Cephes' degree-6 polynomial for exp(r), and 2^n put into
   the exponent bits, 0 when n < -126. Relative error below 1e-7 on [-87.3, 0] (8.3e-8 measured on a grid of 2e7
   points); 0 (not a subnormal) below and for -inf; x > 0 is taken as 0. Files that call it in vector loops are
   compiled without -ftrapping-math (a pragma before their first include, so that this function is inlined under
   the same options): only then does GCC turn the selects into blends for AVX2. */
static inline float CsNNExpNeg(float x)
{
  union {
    int32_t i;
    float   f;
  } u, v;
  float   n, r, p;
  int32_t e;
  x   = x < -100.0f ? -100.0f : x;
  x   = x > 0.0f ? 0.0f : x;
  u.f = x * 1.44269504088896341f + 12582912.0f;
  n   = u.f - 12582912.0f;
  r   = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  p   = 1.9875691500e-4f;
  p   = p * r + 1.3981999507e-3f;
  p   = p * r + 8.3334519073e-3f;
  p   = p * r + 4.1665795894e-2f;
  p   = p * r + 1.6666665459e-1f;
  p   = p * r + 5.0000001201e-1f;
  p   = p * r * r + r + 1.0f;
  e   = u.i - 0x4B400000 + 127; /* n + 127 */
  v.i = e > 0 ? e << 23 : 0;
  return p * v.f;
}

/* One softmax row in place or not: p[K] = exp(s - max) / sum (sum in double). */
PETSC_INTERN void CsNNSoftmaxRow(float *p, const float *s, PetscInt K);

#endif
