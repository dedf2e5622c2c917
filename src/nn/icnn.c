/* The input-convex network of CellOT with its closed-form first and second-order derivatives (include/cellshift/nn.h).
   Products go through the linear kernels (sgemm); the elementwise passes run on the calling thread. */
#include "nnimpl.h"
#include <cblas.h>

static inline PetscInt Units(const CsICNN n, PetscInt l) { return l < n->depth ? n->width : 1; }
static inline float   *Layer(const CsICNN n, float *base, PetscInt l) { return base + (size_t)l * n->maxbatch * n->width; }
static inline float    LRelu(float a) { return a > 0 ? a : CS_ICNN_SLOPE * a; }
static inline float    LReluD(float a) { return a > 0 ? 1.0f : CS_ICNN_SLOPE; }

PetscErrorCode CsICNNCreate(CsNNParams P, const char name[], PetscInt d, PetscInt width, PetscInt depth, CsICNN *out)
{
  CsICNN n;
  char   s[CS_NN_NAME_LEN];

  PetscFunctionBeginUser;
  PetscCheck(d >= 1 && width >= 1 && depth >= 1, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE, "ICNN sizes must be positive");
  PetscCall(PetscNew(&n));
  n->P = P, n->d = d, n->width = width, n->depth = depth, n->U = depth * width + 1;
  PetscCall(PetscMalloc3(depth + 1, &n->tA, depth + 1, &n->tb, depth, &n->tW));
  /* Forward order: A_0, b_0, then per layer W_{l-1}, A_l, b_l. */
  for (PetscInt l = 0; l <= depth; l++) {
    if (l > 0) {
      PetscCall(PetscSNPrintf(s, sizeof(s), "%s.W.%" PetscInt_FMT ".weight", name, l - 1));
      PetscCall(CsNNParamsAdd(P, s, Units(n, l - 1), Units(n, l), CS_NN_INIT_ZERO, Units(n, l - 1), &n->tW[l - 1]));
    }
    PetscCall(PetscSNPrintf(s, sizeof(s), "%s.A.%" PetscInt_FMT ".weight", name, l));
    PetscCall(CsNNParamsAdd(P, s, d, Units(n, l), CS_NN_INIT_ZERO, d, &n->tA[l]));
    PetscCall(PetscSNPrintf(s, sizeof(s), "%s.A.%" PetscInt_FMT ".bias", name, l));
    PetscCall(CsNNParamsAdd(P, s, Units(n, l), 1, CS_NN_INIT_ZERO, d, &n->tb[l]));
  }
  *out = n;
  PetscFunctionReturn(0);
}

PetscErrorCode CsICNNSetUp(CsICNN n, PetscInt maxbatch)
{
  size_t L = (size_t)(n->depth + 1) * maxbatch * n->width;

  PetscFunctionBeginUser;
  n->maxbatch = maxbatch;
  PetscCall(PetscFree4(n->a, n->z, n->ad, n->zd));
  PetscCall(PetscFree3(n->da, n->dz, n->one));
  PetscCall(PetscMalloc4(L, &n->a, L, &n->z, L, &n->ad, L, &n->zd));
  PetscCall(PetscMalloc3((size_t)maxbatch * n->width, &n->da, (size_t)maxbatch * n->width, &n->dz, maxbatch, &n->one));
  for (PetscInt i = 0; i < maxbatch; i++) n->one[i] = 1;
  PetscFunctionReturn(0);
}

void CsICNNInitialize(CsICNN n, uint64_t seed)
{
  for (PetscInt l = 0; l <= n->depth; l++) {
    PetscInt ts[2] = {n->tA[l], l < n->depth ? n->tW[l] : -1};
    for (int k = 0; k < 2; k++) {
      const CsNNTensor *t;
      float            *w;
      if (ts[k] < 0) continue;
      t = &n->P->t[ts[k]], w = CsNNParamsData(n->P, ts[k]);
      for (PetscInt i = 0; i < t->rows * t->cols; i++) w[i] = (float)(0.1 * CsRngUniform(seed, CS_STREAM_INIT, ((uint64_t)1 << 40) | (uint64_t)ts[k], (uint64_t)i));
    }
    for (PetscInt i = 0; i < Units(n, l); i++) CsNNParamsData(n->P, n->tb[l])[i] = 0;
  }
}

void CsICNNClamp(CsICNN n)
{
  for (PetscInt l = 0; l < n->depth; l++) {
    float   *w  = CsNNParamsData(n->P, n->tW[l]);
    PetscInt sz = Units(n, l) * Units(n, l + 1);
    for (PetscInt i = 0; i < sz; i++) w[i] = w[i] > 0 ? w[i] : 0.0f;
  }
}

/* out[B, u] += c[:, off .. off + u) */
static void AddCond(float *out, const float *c, PetscInt B, PetscInt u, PetscInt off, PetscInt U)
{
  if (!c) return;
  for (PetscInt i = 0; i < B; i++)
    for (PetscInt j = 0; j < u; j++) out[(size_t)i * u + j] += c[(size_t)i * U + off + j];
}

static void AddCondGrad(float *dc, const float *da, PetscInt B, PetscInt u, PetscInt off, PetscInt U)
{
  if (!dc) return;
  for (PetscInt i = 0; i < B; i++)
    for (PetscInt j = 0; j < u; j++) dc[(size_t)i * U + off + j] += da[(size_t)i * u + j];
}

PetscErrorCode CsICNNForward(CsICNN n, PetscInt B, const float *x, const float *c, float *y)
{
  CsNNParams P = n->P;
  PetscInt   W = n->width, d = n->d;

  PetscFunctionBeginUser;
  PetscCheck(B <= n->maxbatch, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE, "ICNN batch %" PetscInt_FMT " > %" PetscInt_FMT, B, n->maxbatch);
  n->B = B;
  for (PetscInt l = 0; l <= n->depth; l++) {
    PetscInt u = Units(n, l);
    float   *a = Layer(n, n->a, l);
    cs_linear_forward(a, x, CsNNParamsData(P, n->tA[l]), CsNNParamsData(P, n->tb[l]), B, d, u);
    if (l > 0 && B > 0)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, u, W, 1.0f, Layer(n, n->z, l - 1), W, CsNNParamsData(P, n->tW[l - 1]), u,
                  1.0f, a, u);
    AddCond(a, c, B, u, l * W, n->U);
    if (l < n->depth) {
      float *z = Layer(n, n->z, l);
      for (size_t i = 0; i < (size_t)B * u; i++) {
        float s = LRelu(a[i]);
        z[i]    = l == 0 ? s * s : s;
      }
    }
  }
  PetscCall(PetscArraycpy(y, Layer(n, n->a, n->depth), B));
  PetscFunctionReturn(0);
}

PetscErrorCode CsICNNBackward(CsICNN n, const float *x, const float *dy, float *dx, float *dc, PetscBool params)
{
  CsNNParams P = n->P;
  PetscInt   W = n->width, d = n->d, B = n->B;
  float     *da = n->da, *dz = n->dz;

  PetscFunctionBeginUser;
  PetscCall(PetscArraycpy(da, dy ? dy : n->one, B));
  for (PetscInt l = n->depth; l >= 0; l--) {
    PetscInt u = Units(n, l);
    cs_linear_backward(dx, params ? CsNNParamsGrad(P, n->tA[l]) : NULL, params ? CsNNParamsGrad(P, n->tb[l]) : NULL, da, x,
                       CsNNParamsData(P, n->tA[l]), B, d, u);
    AddCondGrad(dc, da, B, u, l * W, n->U);
    if (l == 0) break;
    PetscCall(PetscArrayzero(dz, (size_t)B * W));
    cs_linear_backward(dz, params ? CsNNParamsGrad(P, n->tW[l - 1]) : NULL, NULL, da, Layer(n, n->z, l - 1), CsNNParamsData(P, n->tW[l - 1]),
                       B, W, u);
    {
      const float *a = Layer(n, n->a, l - 1);
      for (size_t i = 0; i < (size_t)B * W; i++) da[i] = dz[i] * (l - 1 == 0 ? 2.0f * LRelu(a[i]) * LReluD(a[i]) : LReluD(a[i]));
    }
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsICNNTransportBackward(CsICNN n, const float *x, const float *u, float *dc)
{
  CsNNParams P = n->P;
  PetscInt   W = n->width, d = n->d, B = n->B;
  float     *dad = n->da, *dzd = n->dz;

  PetscFunctionBeginUser;
  /* Tangent forward along u. */
  for (PetscInt l = 0; l <= n->depth; l++) {
    PetscInt     ul = Units(n, l);
    float       *ad = Layer(n, n->ad, l);
    const float *a  = Layer(n, n->a, l);
    cs_linear_forward(ad, u, CsNNParamsData(P, n->tA[l]), NULL, B, d, ul);
    if (l > 0 && B > 0)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, ul, W, 1.0f, Layer(n, n->zd, l - 1), W, CsNNParamsData(P, n->tW[l - 1]), ul,
                  1.0f, ad, ul);
    if (l < n->depth) {
      float *zd = Layer(n, n->zd, l);
      for (size_t i = 0; i < (size_t)B * ul; i++) zd[i] = (l == 0 ? 2.0f * LRelu(a[i]) * LReluD(a[i]) : LReluD(a[i])) * ad[i];
    }
  }
  /* Reverse through the tangent: Phi = sum_i adot_depth[i]. */
  PetscCall(PetscArraycpy(dad, n->one, B));
  for (PetscInt l = n->depth; l >= 1; l--) {
    PetscInt     ul = Units(n, l);
    const float *a  = Layer(n, n->a, l - 1), *ad = Layer(n, n->ad, l - 1);
    cs_linear_backward(NULL, CsNNParamsGrad(P, n->tA[l]), NULL, dad, u, CsNNParamsData(P, n->tA[l]), B, d, ul);
    PetscCall(PetscArrayzero(dzd, (size_t)B * W));
    cs_linear_backward(dzd, CsNNParamsGrad(P, n->tW[l - 1]), NULL, dad, Layer(n, n->zd, l - 1), CsNNParamsData(P, n->tW[l - 1]), B, W, ul);
    if (l - 1 > 0) {
      for (size_t i = 0; i < (size_t)B * W; i++) dad[i] = LReluD(a[i]) * dzd[i];
    } else {
      /* zdot_0 = 2 s(a_0) s'(a_0) adot_0: to adot_0 (dad) and to the primal a_0 (reuse dzd as da_0). */
      for (size_t i = 0; i < (size_t)B * W; i++) {
        float sd = LReluD(a[i]), g = dzd[i];
        dad[i]   = 2.0f * LRelu(a[i]) * sd * g;
        dzd[i]   = 2.0f * sd * sd * ad[i] * g;
      }
    }
  }
  /* Layer 0: adot_0 = u A_0, a_0 = x A_0 + b_0 + c_0. */
  cs_linear_backward(NULL, CsNNParamsGrad(P, n->tA[0]), NULL, dad, u, CsNNParamsData(P, n->tA[0]), B, d, W);
  cs_linear_backward(NULL, CsNNParamsGrad(P, n->tA[0]), CsNNParamsGrad(P, n->tb[0]), dzd, x, CsNNParamsData(P, n->tA[0]), B, d, W);
  AddCondGrad(dc, dzd, B, W, 0, n->U);
  PetscFunctionReturn(0);
}

PetscErrorCode CsICNNDestroy(CsICNN *pn)
{
  CsICNN n = *pn;

  PetscFunctionBeginUser;
  if (!n) PetscFunctionReturn(0);
  PetscCall(PetscFree3(n->tA, n->tb, n->tW));
  PetscCall(PetscFree4(n->a, n->z, n->ad, n->zd));
  PetscCall(PetscFree3(n->da, n->dz, n->one));
  PetscCall(PetscFree(n));
  *pn = NULL;
  PetscFunctionReturn(0);
}
