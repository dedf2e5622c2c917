/* Kernels on [B, T, C] activations: softmax, residual, multi-head self-attention, set pooling, the sinusoidal time
   embedding. See include/cellshift/nn.h. */
/* Without -ftrapping-math GCC turns the float selects of the vector loops (clamps, maxima, masks of CsNNExpNeg)
   into blends on AVX2 as well; no value changes, and nothing here reads the floating-point exception flags. It comes
   before the includes so that the inline helpers of nnimpl.h are compiled (and inlined) under the same options. */
#if defined(__GNUC__) && !defined(__clang__)
  #pragma GCC optimize("no-trapping-math")
#endif
#include "nnimpl.h"
#include <cblas.h>
#include <string.h>

/* Lanes of the explicit partial sums: wide enough for an AVX-512 register, and a fixed order for every clone. */
#define CS_LANES 16

static inline PetscInt SetLen(const PetscInt *len, PetscInt b, PetscInt T)
{
  PetscInt n = len ? len[b] : T;
  return n < 0 ? 0 : n > T ? T : n;
}

/* ------------------------------------------------------------------------------------------------- softmax */

CS_NN_VEC void CsNNSoftmaxRow(float *p, const float *s, PetscInt K)
{
  float    mx[CS_LANES], m = -INFINITY;
  double   acc[CS_LANES], sum = 0;
  PetscInt K0 = K / CS_LANES * CS_LANES;
  float    inv;

  for (int l = 0; l < CS_LANES; l++) mx[l] = -INFINITY, acc[l] = 0;
  for (PetscInt j = 0; j < K0; j += CS_LANES)
    CS_NN_LANES
    for (int l = 0; l < CS_LANES; l++) mx[l] = s[j + l] > mx[l] ? s[j + l] : mx[l];
  for (int l = 0; l < CS_LANES; l++) m = mx[l] > m ? mx[l] : m;
  for (PetscInt j = K0; j < K; j++) m = s[j] > m ? s[j] : m;
  if (m == -INFINITY) { /* every entry masked */
    for (PetscInt j = 0; j < K; j++) p[j] = 0;
    return;
  }
  for (PetscInt j = 0; j < K0; j += CS_LANES)
    CS_NN_LANES
    for (int l = 0; l < CS_LANES; l++) {
      float e  = CsNNExpNeg(s[j + l] - m);
      p[j + l] = e;
      acc[l] += e;
    }
  for (int l = 0; l < CS_LANES; l++) sum += acc[l];
  for (PetscInt j = K0; j < K; j++) {
    p[j] = CsNNExpNeg(s[j] - m);
    sum += p[j];
  }
  inv = (float)(1.0 / sum);
  for (PetscInt j = 0; j < K; j++) p[j] *= inv;
}

/* dx = p (g - p.g) (accumulate: dx += ...), the dot product in double. dx may alias g when not accumulating. */
static CS_NN_VEC void SoftmaxBackRow(float *dx, PetscBool accumulate, const float *g, const float *p, PetscInt K)
{
  double   acc[CS_LANES], dot = 0;
  PetscInt K0 = K / CS_LANES * CS_LANES;
  float    fd;

  for (int l = 0; l < CS_LANES; l++) acc[l] = 0;
  for (PetscInt j = 0; j < K0; j += CS_LANES)
    CS_NN_LANES
    for (int l = 0; l < CS_LANES; l++) acc[l] += (double)p[j + l] * g[j + l];
  for (int l = 0; l < CS_LANES; l++) dot += acc[l];
  for (PetscInt j = K0; j < K; j++) dot += (double)p[j] * g[j];
  fd = (float)dot;
  if (accumulate)
    for (PetscInt j = 0; j < K; j++) dx[j] += p[j] * (g[j] - fd);
  else
    for (PetscInt j = 0; j < K; j++) dx[j] = p[j] * (g[j] - fd);
}

void cs_softmax_forward(float *out /*[N,K]*/, const float *inp /*[N,K]*/, PetscInt N, PetscInt K)
{
  for (PetscInt i = 0; i < N; i++) CsNNSoftmaxRow(out + (size_t)i * K, inp + (size_t)i * K, K);
}

void cs_softmax_backward(float *dinp /*[N,K]*/, const float *dout /*[N,K]*/, const float *out /*[N,K]*/, PetscInt N, PetscInt K)
{
  for (PetscInt i = 0; i < N; i++) SoftmaxBackRow(dinp + (size_t)i * K, PETSC_TRUE, dout + (size_t)i * K, out + (size_t)i * K, K);
}

/* ------------------------------------------------------------------------------------------------- residual */

CS_NN_VEC void cs_residual_forward(float *out /*[n]*/, const float *inp1 /*[n]*/, const float *inp2 /*[n]*/, size_t n)
{
  for (size_t i = 0; i < n; i++) out[i] = inp1[i] + inp2[i];
}

void cs_residual_backward(float *dinp1 /*[n]*/, float *dinp2 /*[n]*/, const float *dout /*[n]*/, size_t n)
{
  if (dinp1) CsNNAxpy1(dinp1, dout, n);
  if (dinp2) CsNNAxpy1(dinp2, dout, n);
}

/* ------------------------------------------------------------------------------------------------- attention */

/* The per-(b, h) products run as sgemm on strided views: head h of token t is qkv[t, h hs : (h+1) hs] (queries),
   the same + C (keys) and + 2C (values), leading dimension 3C. Only the len[b] valid keys enter the products, so
   the masked columns of att are never computed (they are stored as 0). */
void cs_attention_forward(float *out /*[B,T,C]*/, float *qkv /*[B,T,3C]*/, float *att /*[B,H,T,T]*/, float *y /*[B,T,C]*/,
                          const float *inp /*[B,T,C]*/, const float *wqkv /*[C,3C]*/, const float *bqkv /*[3C]*/,
                          const float *wo /*[C,C]*/, const float *bo /*[C]*/, const PetscInt *len /*[B]*/, PetscInt B, PetscInt T,
                          PetscInt C, PetscInt H)
{
  const PetscInt hs = C / H, C3 = 3 * C;
  const float    scale = (float)(1.0 / sqrt((double)hs));

  if (B <= 0 || T <= 0) return;
  cs_linear_forward(qkv, inp, wqkv, bqkv, B * T, C, C3);
  for (PetscInt b = 0; b < B; b++) {
    const PetscInt Tb = SetLen(len, b, T);
    for (PetscInt h = 0; h < H; h++) {
      const float *q = qkv + (size_t)b * T * C3 + (size_t)h * hs, *k = q + C, *v = q + 2 * C;
      float       *a  = att + ((size_t)b * H + h) * T * T;
      float       *yh = y + (size_t)b * T * C + (size_t)h * hs;
      if (Tb == 0) {
        memset(a, 0, sizeof(float) * (size_t)T * T);
        for (PetscInt t = 0; t < T; t++) memset(yh + (size_t)t * C, 0, sizeof(float) * (size_t)hs);
        continue;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, Tb, hs, scale, q, C3, k, C3, 0.0f, a, T);
      for (PetscInt t = 0; t < T; t++) {
        float *row = a + (size_t)t * T;
        CsNNSoftmaxRow(row, row, Tb);
        if (Tb < T) memset(row + Tb, 0, sizeof(float) * (size_t)(T - Tb));
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, Tb, 1.0f, a, T, v, C3, 0.0f, yh, C);
    }
  }
  cs_linear_forward(out, y, wo, bo, B * T, C, C);
}

void cs_attention_backward(float *dinp /*[B,T,C]*/, float *dwqkv /*[C,3C]*/, float *dbqkv /*[3C]*/, float *dwo /*[C,C]*/,
                           float *dbo /*[C]*/, const float *dout /*[B,T,C]*/, const float *inp /*[B,T,C]*/, const float *qkv /*[B,T,3C]*/,
                           const float *att /*[B,H,T,T]*/, const float *y /*[B,T,C]*/, const float *wqkv /*[C,3C]*/,
                           const float *wo /*[C,C]*/, const PetscInt *len /*[B]*/, PetscInt B, PetscInt T, PetscInt C, PetscInt H,
                           float *work /*[cs_attention_work_size(B,T,C)]*/)
{
  const PetscInt hs = C / H, C3 = 3 * C;
  const float    scale = (float)(1.0 / sqrt((double)hs));
  float         *dy = work, *dqkv = work + (size_t)B * T * C, *datt = dqkv + (size_t)B * T * C3;

  if (B <= 0 || T <= 0) return;
  /* The products below write (beta = 0) every entry of dqkv that can be non-zero, except the key/value rows of the
     padded tokens, which must be 0: clear it once. */
  memset(dy, 0, sizeof(float) * (size_t)B * T * C);
  memset(dqkv, 0, sizeof(float) * (size_t)B * T * C3);
  cs_linear_backward(dy, dwo, dbo, dout, y, wo, B * T, C, C);
  for (PetscInt b = 0; b < B; b++) {
    const PetscInt Tb = SetLen(len, b, T);
    if (Tb == 0) continue; /* y = 0 whatever the inputs */
    for (PetscInt h = 0; h < H; h++) {
      const size_t off = (size_t)b * T * C3 + (size_t)h * hs;
      const float *q = qkv + off, *k = q + C, *v = q + 2 * C;
      float       *dq = dqkv + off, *dk = dq + C, *dv = dq + 2 * C;
      const float *a   = att + ((size_t)b * H + h) * T * T;
      const float *dyh = dy + (size_t)b * T * C + (size_t)h * hs;
      /* dV[Tb,hs] = A^T dY, dA[T,Tb] = dY V^T */
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Tb, hs, T, 1.0f, a, T, dyh, C, 0.0f, dv, C3);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, Tb, hs, 1.0f, dyh, C, v, C3, 0.0f, datt, Tb);
      /* Through the softmax, in place: dS = A (dA - rowdot). */
      for (PetscInt t = 0; t < T; t++) SoftmaxBackRow(datt + (size_t)t * Tb, PETSC_FALSE, datt + (size_t)t * Tb, a + (size_t)t * T, Tb);
      /* S = scale Q K^T: dQ[T,hs] = scale dS K, dK[Tb,hs] = scale dS^T Q */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, Tb, scale, datt, Tb, k, C3, 0.0f, dq, C3);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Tb, hs, T, scale, datt, Tb, q, C3, 0.0f, dk, C3);
    }
  }
  cs_linear_backward(dinp, dwqkv, dbqkv, dqkv, inp, wqkv, B * T, C, C3);
}

/* ------------------------------------------------------------------------------------------------- set pooling */

void cs_set_mean_forward(float *out /*[B,C]*/, const float *inp /*[B,T,C]*/, const PetscInt *len /*[B]*/, PetscInt B, PetscInt T,
                         PetscInt C)
{
  for (PetscInt b = 0; b < B; b++) {
    const PetscInt Tb = SetLen(len, b, T);
    float         *o  = out + (size_t)b * C;
    for (PetscInt c = 0; c < C; c++) {
      double s = 0;
      for (PetscInt t = 0; t < Tb; t++) s += inp[((size_t)b * T + t) * C + c];
      o[c] = Tb ? (float)(s / Tb) : 0.0f;
    }
  }
}

void cs_set_mean_backward(float *dinp /*[B,T,C]*/, const float *dout /*[B,C]*/, const PetscInt *len /*[B]*/, PetscInt B, PetscInt T,
                          PetscInt C)
{
  for (PetscInt b = 0; b < B; b++) {
    const PetscInt Tb = SetLen(len, b, T);
    if (!Tb) continue;
    const float    w  = (float)(1.0 / Tb);
    const float   *g  = dout + (size_t)b * C;
    for (PetscInt t = 0; t < Tb; t++) {
      float *d = dinp + ((size_t)b * T + t) * C;
      for (PetscInt c = 0; c < C; c++) d[c] += w * g[c];
    }
  }
}

/* ------------------------------------------------------------------------------------------------- time embedding */

void cs_time_embedding_forward(float *out /*[B,D]*/, const float *t /*[B]*/, PetscInt B, PetscInt D, double max_period)
{
  const PetscInt half = D / 2;
  const double   lmp  = log(max_period);
  for (PetscInt b = 0; b < B; b++) {
    float *o = out + (size_t)b * D;
    for (PetscInt k = 0; k < half; k++) {
      const double a = (double)t[b] * exp(-lmp * (double)k / (double)half);
      o[k]           = (float)sin(a);
      o[half + k]    = (float)cos(a);
    }
    if (D % 2) o[D - 1] = 0;
  }
}

void cs_time_embedding_backward(float *dt /*[B]*/, const float *dout /*[B,D]*/, const float *t /*[B]*/, PetscInt B, PetscInt D,
                                double max_period)
{
  const PetscInt half = D / 2;
  const double   lmp  = log(max_period);
  if (!dt) return;
  for (PetscInt b = 0; b < B; b++) {
    const float *g = dout + (size_t)b * D;
    double       s = 0;
    for (PetscInt k = 0; k < half; k++) {
      const double f = exp(-lmp * (double)k / (double)half), a = (double)t[b] * f;
      s += f * ((double)g[k] * cos(a) - (double)g[half + k] * sin(a));
    }
    dt[b] += (float)s;
  }
}
