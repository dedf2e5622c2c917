/* The sequence, graph and pairwise kernels of the neural engine (src/nn/seq.c, graph.c, pairwise.c, and SiLU):
   every backward against centred finite differences (CsTestFDCheck: ||g_fd - g|| / ||g|| in the 2-norm and the max
   norm), every forward against a direct double computation, the accumulation contract (+= into every gradient),
   the padding mask of attention, and bit-identical graph propagation against a serial loop in the same order while
   the kernels run on the thread pool.

   With -dump DIR the program only writes the inputs and outputs of attention, GELU/SiLU/LayerNorm/softmax on
   [B,T,C] and the time embedding as raw float32 files into DIR, for tests/python/check_attention_torch.py. */
#include "testing.h"
#include <cellshift/nn.h>
#include <cellshift/rng.h>
#include <string.h>

#define FD_TOL 2e-3

static float *Alloc(size_t n) { return (float *)calloc(n ? n : 1, sizeof(float)); }

static double Dot(const float *c, const float *y, size_t n)
{
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)c[i] * y[i];
  return s;
}

/* max |a - ref| / max(1e-30, max |ref|) */
static double MaxRel(const float *a, const double *ref, size_t n)
{
  double e = 0, r = 0;
  for (size_t i = 0; i < n; i++) e = fmax(e, fabs(a[i] - ref[i])), r = fmax(r, fabs(ref[i]));
  return e / fmax(r, 1e-30);
}

/* Backward kernels accumulate: a gradient array pre-filled with base must end at base + fresh. */
static void ExpectAccumulated(const char *what, const float *acc, const float *base, const float *fresh, size_t n)
{
  double e = 0, s = 0;
  for (size_t i = 0; i < n; i++) e = fmax(e, fabs((double)acc[i] - base[i] - fresh[i])), s = fmax(s, fabs(fresh[i]) + fabs(base[i]));
  CS_EXPECT(e <= 1e-6 * fmax(s, 1), "%s: backward does not accumulate (error %g)", what, e);
}

/* ------------------------------------------------------------------------------------------- softmax, residual */

typedef struct {
  PetscInt N, K;
  float   *x, *c, *y;
} SoftCtx;

static double SoftLoss(void *p)
{
  SoftCtx *t = (SoftCtx *)p;
  cs_softmax_forward(t->y, t->x, t->N, t->K);
  return Dot(t->c, t->y, (size_t)t->N * t->K);
}

static PetscErrorCode TestSoftmax(void)
{
  SoftCtx t  = {6, 37, NULL, NULL, NULL};
  size_t  n  = (size_t)t.N * t.K;
  float  *dx = Alloc(n), *m = Alloc(40), *pm = Alloc(40);
  double *ref;

  PetscFunctionBeginUser;
  t.x = Alloc(n), t.c = Alloc(n), t.y = Alloc(n);
  PetscCall(PetscMalloc1(n, &ref));
  CsTestFill(t.x, n, 100, -3, 3), CsTestFill(t.c, n, 101, -1, 1);
  cs_softmax_forward(t.y, t.x, t.N, t.K);
  for (PetscInt i = 0; i < t.N; i++) {
    double mx = -INFINITY, s = 0;
    for (PetscInt j = 0; j < t.K; j++) mx = fmax(mx, t.x[i * t.K + j]);
    for (PetscInt j = 0; j < t.K; j++) s += exp((double)t.x[i * t.K + j] - mx);
    for (PetscInt j = 0; j < t.K; j++) ref[i * t.K + j] = exp((double)t.x[i * t.K + j] - mx) / s;
  }
  CS_EXPECT(MaxRel(t.y, ref, n) < 1e-6, "softmax forward: relative error %g", MaxRel(t.y, ref, n));
  cs_softmax_backward(dx, t.c, t.y, t.N, t.K);
  {
    CsTestFDVar v[] = {{"x", t.x, dx, n}};
    CsTestFDCheck("softmax [B*T, K]", SoftLoss, &t, v, 1, 1e-2, FD_TOL, NULL, NULL);
  }
  /* Masked entries (-inf) get 0, a fully masked row is 0, large logits do not overflow. */
  for (int j = 0; j < 40; j++) m[j] = j < 5 ? -INFINITY : (float)(80 + j);
  cs_softmax_forward(pm, m, 1, 40);
  {
    double s = 0, ref0 = 0;
    for (int j = 5; j < 40; j++) ref0 += exp(j - 39.0);
    for (int j = 0; j < 40; j++) s += pm[j];
    CS_EXPECT(pm[0] == 0 && pm[4] == 0, "softmax: a masked entry is not 0");
    CS_EXPECT_CLOSE(pm[39], 1 / ref0, 1e-6, "softmax with large logits");
    CS_EXPECT_CLOSE(s, 1, 1e-6, "softmax sums to 1");
  }
  for (int j = 0; j < 40; j++) m[j] = -INFINITY;
  cs_softmax_forward(pm, m, 1, 40);
  CS_EXPECT(pm[0] == 0 && pm[39] == 0, "softmax of a fully masked row is not 0");
  free(t.x), free(t.c), free(t.y), free(dx), free(m), free(pm);
  PetscCall(PetscFree(ref));
  PetscFunctionReturn(0);
}

typedef struct {
  size_t n;
  float *a, *b, *c, *y;
} ResCtx;

static double ResLoss(void *p)
{
  ResCtx *t = (ResCtx *)p;
  cs_residual_forward(t->y, t->a, t->b, t->n);
  return Dot(t->c, t->y, t->n);
}

static PetscErrorCode TestResidual(void)
{
  ResCtx t  = {30, Alloc(30), Alloc(30), Alloc(30), Alloc(30)};
  float *da = Alloc(30), *db = Alloc(30);

  PetscFunctionBeginUser;
  CsTestFill(t.a, 30, 110, -1, 1), CsTestFill(t.b, 30, 111, -1, 1), CsTestFill(t.c, 30, 112, -1, 1);
  cs_residual_backward(da, db, t.c, 30);
  {
    CsTestFDVar v[] = {{"a", t.a, da, 30}, {"b", t.b, db, 30}};
    CsTestFDCheck("residual (a, b)", ResLoss, &t, v, 2, 1e-2, FD_TOL, NULL, NULL);
  }
  free(t.a), free(t.b), free(t.c), free(t.y), free(da), free(db);
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------------------------------- attention */

typedef struct {
  PetscInt        B, T, C, H;
  const PetscInt *len;
  float          *x, *wqkv, *bqkv, *wo, *bo, *c;
  float          *out, *qkv, *att, *y;
} AttnCtx;

static PetscErrorCode AttnAlloc(AttnCtx *t, PetscInt B, PetscInt T, PetscInt C, PetscInt H, const PetscInt *len)
{
  size_t btc = (size_t)B * T * C;

  PetscFunctionBeginUser;
  t->B = B, t->T = T, t->C = C, t->H = H, t->len = len;
  t->x = Alloc(btc), t->c = Alloc(btc), t->out = Alloc(btc), t->y = Alloc(btc), t->qkv = Alloc(3 * btc);
  t->att = Alloc((size_t)B * H * T * T);
  t->wqkv = Alloc((size_t)C * 3 * C), t->bqkv = Alloc((size_t)3 * C), t->wo = Alloc((size_t)C * C), t->bo = Alloc((size_t)C);
  CsTestFill(t->x, btc, 120, -1, 1), CsTestFill(t->c, btc, 121, -1, 1);
  CsTestFill(t->wqkv, (size_t)C * 3 * C, 122, -0.6, 0.6), CsTestFill(t->bqkv, (size_t)3 * C, 123, -0.3, 0.3);
  CsTestFill(t->wo, (size_t)C * C, 124, -0.5, 0.5), CsTestFill(t->bo, (size_t)C, 125, -0.3, 0.3);
  PetscFunctionReturn(0);
}

static void AttnFree(AttnCtx *t)
{
  free(t->x), free(t->c), free(t->out), free(t->y), free(t->qkv), free(t->att), free(t->wqkv), free(t->bqkv), free(t->wo), free(t->bo);
}

static void AttnForward(AttnCtx *t)
{
  cs_attention_forward(t->out, t->qkv, t->att, t->y, t->x, t->wqkv, t->bqkv, t->wo, t->bo, t->len, t->B, t->T, t->C, t->H);
}

static double AttnLoss(void *p)
{
  AttnCtx *t = (AttnCtx *)p;
  AttnForward(t);
  return Dot(t->c, t->out, (size_t)t->B * t->T * t->C);
}

/* The definition in double, one (b, h, t) at a time. */
static void AttnReference(const AttnCtx *t, double *out)
{
  PetscInt B = t->B, T = t->T, C = t->C, H = t->H, hs = C / H;
  double  *qkv = (double *)malloc(sizeof(double) * (size_t)T * 3 * C), *y = (double *)malloc(sizeof(double) * (size_t)T * C);
  double  *s   = (double *)malloc(sizeof(double) * (size_t)T);
  for (PetscInt b = 0; b < B; b++) {
    PetscInt Tb = t->len ? t->len[b] : T;
    for (PetscInt i = 0; i < T; i++)
      for (PetscInt o = 0; o < 3 * C; o++) {
        double a = t->bqkv[o];
        for (PetscInt k = 0; k < C; k++) a += (double)t->x[(b * T + i) * C + k] * t->wqkv[k * 3 * C + o];
        qkv[i * 3 * C + o] = a;
      }
    for (PetscInt h = 0; h < H; h++)
      for (PetscInt i = 0; i < T; i++) {
        double mx = -INFINITY, z = 0;
        for (PetscInt j = 0; j < Tb; j++) {
          double d = 0;
          for (PetscInt e = 0; e < hs; e++) d += qkv[i * 3 * C + h * hs + e] * qkv[j * 3 * C + C + h * hs + e];
          s[j] = d / sqrt((double)hs);
          mx   = fmax(mx, s[j]);
        }
        for (PetscInt j = 0; j < Tb; j++) z += exp(s[j] - mx);
        for (PetscInt e = 0; e < hs; e++) {
          double a = 0;
          for (PetscInt j = 0; j < Tb; j++) a += exp(s[j] - mx) / z * qkv[j * 3 * C + 2 * C + h * hs + e];
          y[i * C + h * hs + e] = a;
        }
      }
    for (PetscInt i = 0; i < T; i++)
      for (PetscInt o = 0; o < C; o++) {
        double a = t->bo[o];
        for (PetscInt k = 0; k < C; k++) a += y[i * C + k] * t->wo[k * C + o];
        out[(b * T + i) * C + o] = a;
      }
  }
  free(qkv), free(y), free(s);
}

static PetscErrorCode TestAttention(void)
{
  const PetscInt B = 3, T = 6, C = 8, H = 2, len[] = {6, 4, 1}, len0[] = {6, 0, 3};
  AttnCtx        t;
  size_t         btc = (size_t)B * T * C;
  float         *dx, *dwqkv, *dbqkv, *dwo, *dbo, *work, *base, *acc, *keep;
  double        *ref;

  PetscFunctionBeginUser;
  PetscCall(AttnAlloc(&t, B, T, C, H, len));
  dx = Alloc(btc), dwqkv = Alloc((size_t)C * 3 * C), dbqkv = Alloc((size_t)3 * C), dwo = Alloc((size_t)C * C), dbo = Alloc((size_t)C);
  work = Alloc(cs_attention_work_size(B, T, C)), base = Alloc(btc), acc = Alloc(btc), keep = Alloc(btc);
  PetscCall(PetscMalloc1(btc, &ref));
  /* Forward against the naive definition, with and without the padding mask (and with an empty set). */
  for (int v = 0; v < 3; v++) {
    t.len = v == 0 ? NULL : v == 1 ? len : len0;
    AttnForward(&t);
    AttnReference(&t, ref);
    CS_EXPECT(MaxRel(t.out, ref, btc) < 2e-6, "attention forward (mask variant %d): relative error %g", v, MaxRel(t.out, ref, btc));
    PetscCall(PetscPrintf(PETSC_COMM_WORLD, "attention forward (mask variant %d) vs double reference: max rel error %.2e\n", v,
                          MaxRel(t.out, ref, btc)));
  }
  /* Valid rows do not depend on the padded tokens: change the padded inputs of set 1 (rows 4, 5). */
  t.len = len;
  AttnForward(&t);
  memcpy(keep, t.out, sizeof(float) * btc);
  for (PetscInt i = 4; i < 6; i++)
    for (PetscInt k = 0; k < C; k++) t.x[(1 * T + i) * C + k] += 0.5f;
  AttnForward(&t);
  CS_EXPECT(!memcmp(keep + 1 * T * C, t.out + 1 * T * C, sizeof(float) * 4 * C), "attention: padded tokens changed valid rows");
  for (PetscInt i = 4; i < 6; i++)
    for (PetscInt k = 0; k < C; k++) t.x[(1 * T + i) * C + k] -= 0.5f;
  /* Gradients of every input and parameter, with the mask. */
  AttnForward(&t);
  cs_attention_backward(dx, dwqkv, dbqkv, dwo, dbo, t.c, t.x, t.qkv, t.att, t.y, t.wqkv, t.wo, t.len, B, T, C, H, work);
  {
    CsTestFDVar v[] = {{"x", t.x, dx, btc}};
    CsTestFDCheck("attention, masked (dx)", AttnLoss, &t, v, 1, 1e-2, FD_TOL, NULL, NULL);
  }
  {
    CsTestFDVar v[] = {{"wqkv", t.wqkv, dwqkv, (size_t)C * 3 * C}, {"bqkv", t.bqkv, dbqkv, (size_t)3 * C}};
    CsTestFDCheck("attention, masked (dWqkv, dbqkv)", AttnLoss, &t, v, 2, 1e-2, FD_TOL, NULL, NULL);
  }
  {
    CsTestFDVar v[] = {{"wo", t.wo, dwo, (size_t)C * C}, {"bo", t.bo, dbo, (size_t)C}};
    CsTestFDCheck("attention, masked (dWo, dbo)", AttnLoss, &t, v, 2, 1e-2, FD_TOL, NULL, NULL);
  }
  /* Accumulation: into a pre-filled dx. */
  CsTestFill(base, btc, 126, -1, 1);
  memcpy(acc, base, sizeof(float) * btc);
  AttnForward(&t);
  cs_attention_backward(acc, NULL, NULL, NULL, NULL, t.c, t.x, t.qkv, t.att, t.y, t.wqkv, t.wo, t.len, B, T, C, H, work);
  ExpectAccumulated("attention dx", acc, base, dx, btc);
  /* Without a mask, and with an empty set (its rows get only the output bias; nothing flows into its inputs). */
  for (int v = 0; v < 2; v++) {
    t.len = v == 0 ? NULL : len0;
    memset(dx, 0, sizeof(float) * btc), memset(dwqkv, 0, sizeof(float) * (size_t)C * 3 * C), memset(dbqkv, 0, sizeof(float) * 3 * (size_t)C);
    memset(dwo, 0, sizeof(float) * (size_t)C * C), memset(dbo, 0, sizeof(float) * (size_t)C);
    AttnForward(&t);
    cs_attention_backward(dx, dwqkv, dbqkv, dwo, dbo, t.c, t.x, t.qkv, t.att, t.y, t.wqkv, t.wo, t.len, B, T, C, H, work);
    {
      CsTestFDVar fv[] = {{"x", t.x, dx, btc}, {"wqkv", t.wqkv, dwqkv, (size_t)C * 3 * C}, {"bqkv", t.bqkv, dbqkv, (size_t)3 * C},
                          {"wo", t.wo, dwo, (size_t)C * C},  {"bo", t.bo, dbo, (size_t)C}};
      CsTestFDCheck(v == 0 ? "attention, no mask (all)" : "attention, empty set (all)", AttnLoss, &t, fv, 5, 1e-2, FD_TOL, NULL, NULL);
    }
    if (v == 1)
      for (size_t i = (size_t)T * C; i < 2 * (size_t)T * C; i++) CS_EXPECT(dx[i] == 0, "attention: gradient into an empty set");
  }
  AttnFree(&t);
  free(dx), free(dwqkv), free(dbqkv), free(dwo), free(dbo), free(work), free(base), free(acc), free(keep);
  PetscCall(PetscFree(ref));
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------------------------------- set mean, time embedding */

typedef struct {
  PetscInt        B, T, C;
  const PetscInt *len;
  float          *x, *c, *y;
} PoolCtx;

static double PoolLoss(void *p)
{
  PoolCtx *t = (PoolCtx *)p;
  cs_set_mean_forward(t->y, t->x, t->len, t->B, t->T, t->C);
  return Dot(t->c, t->y, (size_t)t->B * t->C);
}

static PetscErrorCode TestSetMean(void)
{
  const PetscInt len[] = {5, 2, 0};
  PoolCtx        t     = {3, 5, 4, len, Alloc(60), Alloc(12), Alloc(12)};
  float         *dx    = Alloc(60);

  PetscFunctionBeginUser;
  CsTestFill(t.x, 60, 130, -1, 1), CsTestFill(t.c, 12, 131, -1, 1);
  cs_set_mean_forward(t.y, t.x, len, 3, 5, 4);
  CS_EXPECT_CLOSE(t.y[4 + 1], (t.x[20 + 1] + t.x[24 + 1]) / 2.0, 1e-6, "set mean of 2 tokens");
  CS_EXPECT(t.y[8] == 0 && t.y[11] == 0, "set mean of an empty set is not 0");
  cs_set_mean_backward(dx, t.c, len, 3, 5, 4);
  {
    CsTestFDVar v[] = {{"x", t.x, dx, 60}};
    CsTestFDCheck("set mean [B,T,C] (masked)", PoolLoss, &t, v, 1, 1e-2, FD_TOL, NULL, NULL);
  }
  free(t.x), free(t.c), free(t.y), free(dx);
  PetscFunctionReturn(0);
}

typedef struct {
  PetscInt B, D;
  float   *t, *c, *y;
} TimeCtx;

static double TimeLoss(void *p)
{
  TimeCtx *t = (TimeCtx *)p;
  cs_time_embedding_forward(t->y, t->t, t->B, t->D, 10000);
  return Dot(t->c, t->y, (size_t)t->B * t->D);
}

static PetscErrorCode TestTimeEmbedding(void)
{
  TimeCtx t  = {6, 16, Alloc(6), Alloc(96), Alloc(96)};
  float  *dt = Alloc(6), *y7 = Alloc(14), base[6];
  double  ref[96], e = 0;

  PetscFunctionBeginUser;
  CsTestFill(t.t, 6, 140, 0, 1), CsTestFill(t.c, 96, 141, -1, 1);
  t.t[4] = 37.5f, t.t[5] = 0; /* a diffusion-like step, and t = 0 */
  cs_time_embedding_forward(t.y, t.t, 6, 16, 10000);
  for (int b = 0; b < 6; b++)
    for (int k = 0; k < 8; k++) {
      double f = exp(-log(10000.0) * k / 8.0);
      ref[b * 16 + k]     = sin(t.t[b] * f);
      ref[b * 16 + 8 + k] = cos(t.t[b] * f);
    }
  for (int i = 0; i < 96; i++) e = fmax(e, fabs(t.y[i] - ref[i]));
  CS_EXPECT(e < 1e-6, "time embedding forward: error %g", e);
  cs_time_embedding_forward(y7, t.t, 2, 7, 10000);
  CS_EXPECT(y7[6] == 0 && y7[13] == 0 && y7[3] == t.y[8], "time embedding with odd D");
  cs_time_embedding_backward(dt, t.c, t.t, 6, 16, 10000);
  {
    CsTestFDVar v[] = {{"t", t.t, dt, 6}};
    CsTestFDCheck("time embedding (dt)", TimeLoss, &t, v, 1, 1e-3, FD_TOL, NULL, NULL);
  }
  for (int b = 0; b < 6; b++) base[b] = (float)b;
  cs_time_embedding_backward(base, t.c, t.t, 6, 16, 10000);
  for (int b = 0; b < 6; b++) CS_EXPECT_CLOSE(base[b], b + dt[b], 1e-6, "time embedding dt accumulates");
  cs_time_embedding_backward(NULL, t.c, t.t, 6, 16, 10000); /* NULL: nothing to do */
  free(t.t), free(t.c), free(t.y), free(dt), free(y7);
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------------------------------- [B,T,C] activations, LayerNorm */

typedef struct {
  CsNNAct act;
  size_t  n;
  float  *x, *c, *y;
} ActCtx;

static double ActLoss(void *p)
{
  ActCtx *t = (ActCtx *)p;
  cs_activation_forward(t->act, t->y, t->x, t->n);
  return Dot(t->c, t->y, t->n);
}

static PetscErrorCode TestActivationsBTC(void)
{
  const size_t n = 2 * 3 * 16; /* [B=2, T=3, C=16] */

  PetscFunctionBeginUser;
  for (int a = 0; a < 2; a++) {
    ActCtx t  = {a ? CS_NN_ACT_SILU : CS_NN_ACT_GELU, n, Alloc(n), Alloc(n), Alloc(n)};
    float *dx = Alloc(n), ext[4] = {-100, -90, 90, 100}, ey[4];
    double e  = 0;
    CsTestFill(t.x, n, 150 + (uint64_t)a, -4, 4), CsTestFill(t.c, n, 152, -1, 1);
    cs_activation_forward(t.act, t.y, t.x, n);
    for (size_t i = 0; i < n; i++) {
      double x = t.x[i], ref = a ? x / (1 + exp(-x)) : 0.5 * x * (1 + erf(x / sqrt(2.0)));
      e = fmax(e, fabs(t.y[i] - ref));
    }
    CS_EXPECT(e < 2e-6, "%s forward: error %g", CsNNActs[t.act], e);
    cs_activation_backward(t.act, dx, t.c, t.x, n);
    {
      CsTestFDVar v[]     = {{"x", t.x, dx, n}};
      char        what[64];
      PetscCall(PetscSNPrintf(what, sizeof(what), "activation %s [B,T,C]", CsNNActs[t.act]));
      CsTestFDCheck(what, ActLoss, &t, v, 1, 1e-2, FD_TOL, NULL, NULL);
    }
    cs_activation_forward(t.act, ey, ext, 4);
    CS_EXPECT(isfinite(ey[0]) && fabsf(ey[0]) < 1e-30f && ey[3] == 100.0f, "%s at +-100", CsNNActs[t.act]);
    free(t.x), free(t.c), free(t.y), free(dx);
  }
  CS_EXPECT(!strcmp(CsNNActs[CS_NN_ACT_SILU], "silu") && CS_NN_ACT_SOFTPLUS == 5, "activation names and values");
  PetscFunctionReturn(0);
}

typedef struct {
  PetscInt N, C;
  float   *x, *gamma, *beta, *c, *y, *mean, *rstd;
} LNCtx;

static double LNLoss(void *p)
{
  LNCtx *t = (LNCtx *)p;
  cs_layernorm_forward(t->y, t->mean, t->rstd, t->x, t->gamma, t->beta, t->N, t->C, 1e-5);
  return Dot(t->c, t->y, (size_t)t->N * t->C);
}

static PetscErrorCode TestLayerNormBTC(void)
{
  const PetscInt B = 2, T = 3, C = 10, N = B * T;
  LNCtx          t  = {N, C, Alloc(60), Alloc(10), Alloc(10), Alloc(60), Alloc(60), Alloc(6), Alloc(6)};
  float         *dx = Alloc(60), *dg = Alloc(10), *db = Alloc(10);
  double         e  = 0;

  PetscFunctionBeginUser;
  CsTestFill(t.x, 60, 160, -2, 3), CsTestFill(t.gamma, 10, 161, 0.5, 1.5), CsTestFill(t.beta, 10, 162, -1, 1), CsTestFill(t.c, 60, 163, -1, 1);
  cs_layernorm_forward(t.y, t.mean, t.rstd, t.x, t.gamma, t.beta, N, C, 1e-5);
  for (PetscInt r = 0; r < N; r++) { /* token (b, t) = row b T + t, normalised over its C features */
    double m = 0, v = 0;
    for (PetscInt j = 0; j < C; j++) m += t.x[r * C + j];
    m /= C;
    for (PetscInt j = 0; j < C; j++) v += (t.x[r * C + j] - m) * (t.x[r * C + j] - m);
    v /= C;
    for (PetscInt j = 0; j < C; j++) e = fmax(e, fabs(t.y[r * C + j] - ((t.x[r * C + j] - m) / sqrt(v + 1e-5) * t.gamma[j] + t.beta[j])));
  }
  CS_EXPECT(e < 2e-6, "LayerNorm [B,T,C] forward: error %g", e);
  cs_layernorm_backward(dx, dg, db, t.c, t.x, t.mean, t.rstd, t.gamma, N, C);
  {
    CsTestFDVar v[] = {{"x", t.x, dx, 60}, {"gamma", t.gamma, dg, 10}, {"beta", t.beta, db, 10}};
    CsTestFDCheck("layernorm [B,T,C] (x, gamma, beta)", LNLoss, &t, v, 3, 1e-2, FD_TOL, NULL, NULL);
  }
  free(t.x), free(t.gamma), free(t.beta), free(t.c), free(t.y), free(t.mean), free(t.rstd), free(dx), free(dg), free(db);
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------------------------------- graph propagation */

static int CmpInt32(const void *a, const void *b) { return (*(const int32_t *)a > *(const int32_t *)b) - (*(const int32_t *)a < *(const int32_t *)b); }

/* A random CSR pattern of nr x nc: deg uniform column draws per row (sorted, duplicates dropped), values in
   [lo, hi); for nr >= 3 the last row is empty. */
static PetscErrorCode RandomCSR(PetscInt nr, PetscInt nc, PetscInt deg, uint64_t key, double lo, double hi, CsCSR *A)
{
  int64_t nnz = 0;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(A, sizeof(*A)));
  A->nrows = nr, A->ncols = nc;
  PetscCall(PetscMalloc1((size_t)nr + 1, &A->indptr));
  PetscCall(PetscMalloc1((size_t)nr * deg + 1, &A->indices));
  PetscCall(PetscMalloc1((size_t)nr * deg + 1, &A->data));
  A->indptr[0] = 0;
  for (PetscInt i = 0; i < nr; i++) {
    int32_t *row = A->indices + nnz;
    PetscInt cnt = 0;
    if (!(nr >= 3 && i == nr - 1)) {
      for (PetscInt k = 0; k < deg; k++) row[k] = (int32_t)(CsRngUniform(1234, CS_STREAM_DATA, key, (uint64_t)(i * deg + k)) * nc);
      qsort(row, (size_t)deg, sizeof(int32_t), CmpInt32);
      for (PetscInt k = 0; k < deg; k++)
        if (k == 0 || row[k] != row[cnt - 1]) row[cnt++] = row[k];
    }
    for (PetscInt k = 0; k < cnt; k++) A->data[nnz + k] = (float)(lo + (hi - lo) * CsRngUniform(1234, CS_STREAM_DATA, key + 1, (uint64_t)(nnz + k)));
    nnz += cnt;
    A->indptr[i + 1] = nnz;
  }
  PetscFunctionReturn(0);
}

typedef struct {
  const CsCSR *A;
  PetscInt     B, d, K;
  float       *x, *c, *y, *hops;
} GraphLossCtx;

static double GraphLoss(void *p)
{
  GraphLossCtx *t = (GraphLossCtx *)p;
  if (t->K < 0) cs_graph_forward(t->y, t->A, t->x, t->B, t->d);
  else cs_sgconv_forward(t->y, t->hops, t->A, t->x, t->K, t->B, t->d);
  return Dot(t->c, t->y, (size_t)t->B * t->A->nrows * t->d);
}

static PetscErrorCode TestGraph(void)
{
  PetscFunctionBeginUser;
  /* One hop on a rectangular pattern (the transpose is general), then SGConv with 3 hops on a square one; d = 5
     (tail only) and d = 67 (a full 64-column tile and a tail). */
  for (int variant = 0; variant < 4; variant++) {
    const PetscInt sq = variant >= 2, nr = sq ? 11 : 7, nc = 11, B = 2, d = variant % 2 ? 67 : 5, K = sq ? 3 : -1;
    CsCSR          A;
    CsNNTranspose  AT;
    GraphLossCtx   t;
    size_t         nx = (size_t)B * nc * d, ny = (size_t)B * nr * d, nnz;
    float         *dx, *dA, *work, *base, *acc;
    char           what[96];
    double        *ref;

    PetscCall(RandomCSR(nr, nc, 3, 170 + (uint64_t)variant, sq ? -0.6 : -1, sq ? 0.6 : 1, &A));
    nnz = (size_t)A.indptr[nr];
    PetscCall(CsNNTransposeCreate(&A, &AT));
    t.A = &A, t.B = B, t.d = d, t.K = K;
    t.x = Alloc(nx), t.c = Alloc(ny), t.y = Alloc(ny), t.hops = Alloc((size_t)(sq ? K - 1 : 0) * ny);
    dx = Alloc(nx), dA = Alloc(nnz), work = Alloc(2 * nx), base = Alloc(nx), acc = Alloc(nx);
    PetscCall(PetscMalloc1(ny, &ref));
    CsTestFill(t.x, nx, 180, -1, 1), CsTestFill(t.c, ny, 181, -1, 1);
    /* The transpose lists every entry once, at its mirrored place. */
    for (PetscInt j = 0; j < AT.nrows; j++)
      for (int64_t k = AT.indptr[j]; k < AT.indptr[j + 1]; k++)
        CS_EXPECT(A.indices[AT.src[k]] == j && AT.src[k] >= A.indptr[AT.indices[k]] && AT.src[k] < A.indptr[AT.indices[k] + 1],
                  "transpose entry %d of column %d", (int)k, (int)j);
    CS_EXPECT(AT.indptr[AT.nrows] == (int64_t)nnz, "transpose has %d entries, A %d", (int)AT.indptr[AT.nrows], (int)nnz);
    /* Forward against dense products in double. */
    {
      double *h = (double *)malloc(sizeof(double) * nx), *hn = (double *)malloc(sizeof(double) * nx);
      for (size_t i = 0; i < nx; i++) h[i] = t.x[i];
      for (PetscInt hop = 0; hop < (sq ? K : 1); hop++) {
        for (PetscInt b = 0; b < B; b++)
          for (PetscInt i = 0; i < nr; i++)
            for (PetscInt c = 0; c < d; c++) {
              double s = 0;
              for (int64_t k = A.indptr[i]; k < A.indptr[i + 1]; k++) s += A.data[k] * h[((size_t)b * nc + A.indices[k]) * d + c];
              hn[((size_t)b * nr + i) * d + c] = s;
            }
        memcpy(h, hn, sizeof(double) * ny);
      }
      memcpy(ref, h, sizeof(double) * ny);
      free(h), free(hn);
    }
    (void)GraphLoss(&t);
    CS_EXPECT(MaxRel(t.y, ref, ny) < 1e-6, "graph forward variant %d: error %g", variant, MaxRel(t.y, ref, ny));
    if (sq) cs_sgconv_backward(dx, dA, t.c, t.x, t.hops, &A, &AT, K, B, d, work);
    else cs_graph_backward(dx, dA, t.c, t.x, &A, &AT, B, d);
    {
      CsTestFDVar v[] = {{"x", t.x, dx, nx}, {"A", A.data, dA, nnz}};
      PetscCall(PetscSNPrintf(what, sizeof(what), "%s d=%d (dX, dA)", sq ? "SGConv K=3, learned A," : "graph A X, learned A,", (int)d));
      CsTestFDCheck(what, GraphLoss, &t, v, 2, 1e-2, FD_TOL, NULL, NULL);
    }
    /* Accumulation, and dinp alone (NULL dA). */
    CsTestFill(base, nx, 182, -1, 1);
    memcpy(acc, base, sizeof(float) * nx);
    (void)GraphLoss(&t);
    if (sq) cs_sgconv_backward(acc, NULL, t.c, t.x, t.hops, &A, &AT, K, B, d, work);
    else cs_graph_backward(acc, NULL, t.c, t.x, &A, &AT, B, d);
    ExpectAccumulated("graph dinp", acc, base, dx, nx);
    PetscCall(CsNNTransposeDestroy(&AT));
    PetscCall(CsCSRFree(&A));
    free(t.x), free(t.c), free(t.y), free(t.hops), free(dx), free(dA), free(work), free(base), free(acc);
    PetscCall(PetscFree(ref));
  }
  PetscFunctionReturn(0);
}

/* The kernels' summation orders, serially: neighbours in CSR order into an accumulator that starts at 0 (or at the
   old value when accumulating); an edge gradient gets one row dot product per cell, in cell order, each as 16
   float partial sums combined by halving, then the columns beyond a multiple of 16. */
static float SerialDot(const float *u, const float *v, PetscInt d)
{
  float    acc[16] = {0}, r;
  PetscInt d0      = d / 16 * 16;
  for (PetscInt c = 0; c < d0; c += 16)
    for (int l = 0; l < 16; l++) acc[l] += u[c + l] * v[c + l];
  for (int h = 8; h >= 1; h /= 2)
    for (int l = 0; l < h; l++) acc[l] += acc[l + h];
  r = acc[0];
  for (PetscInt c = d0; c < d; c++) r += u[c] * v[c];
  return r;
}

static PetscErrorCode TestGraphThreads(void)
{
  const PetscInt n = 4000, B = 3, d = 64;
  CsCSR          A;
  CsNNTranspose  AT;
  size_t         nx = (size_t)B * n * d, nnz;
  float         *x, *y, *yr, *g, *dx, *dxr, *dA, *dAr;

  PetscFunctionBeginUser;
  PetscCall(RandomCSR(n, n, 12, 190, -0.5, 0.5, &A));
  nnz = (size_t)A.indptr[n];
  PetscCall(CsNNTransposeCreate(&A, &AT));
  x = Alloc(nx), y = Alloc(nx), yr = Alloc(nx), g = Alloc(nx), dx = Alloc(nx), dxr = Alloc(nx), dA = Alloc(nnz), dAr = Alloc(nnz);
  CsTestFill(x, nx, 191, -1, 1), CsTestFill(g, nx, 192, -1, 1), CsTestFill(dx, nx, 193, -1, 1), CsTestFill(dA, nnz, 194, -1, 1);
  memcpy(dxr, dx, sizeof(float) * nx), memcpy(dAr, dA, sizeof(float) * nnz);
  cs_graph_forward(y, &A, x, B, d);
  cs_graph_backward(dx, dA, g, x, &A, &AT, B, d);
  for (PetscInt b = 0; b < B; b++)
    for (PetscInt i = 0; i < n; i++)
      for (PetscInt c = 0; c < d; c++) {
        float s = 0, t = dxr[((size_t)b * n + i) * d + c];
        for (int64_t k = A.indptr[i]; k < A.indptr[i + 1]; k++) s += A.data[k] * x[((size_t)b * n + A.indices[k]) * d + c];
        for (int64_t k = AT.indptr[i]; k < AT.indptr[i + 1]; k++) t += AT.data[k] * g[((size_t)b * n + AT.indices[k]) * d + c];
        yr[((size_t)b * n + i) * d + c] = s, dxr[((size_t)b * n + i) * d + c] = t;
      }
  for (PetscInt i = 0; i < n; i++)
    for (int64_t k = A.indptr[i]; k < A.indptr[i + 1]; k++)
      for (PetscInt b = 0; b < B; b++) dAr[k] += SerialDot(g + ((size_t)b * n + i) * d, x + ((size_t)b * n + A.indices[k]) * d, d);
  PetscCall(PetscPrintf(PETSC_COMM_WORLD, "graph kernels on %d threads (n %d, %d non-zeros, B %d, d %d) vs serial loops: %s\n", CsBLASGetThreads(),
                        (int)n, (int)nnz, (int)B, (int)d,
                        !memcmp(y, yr, sizeof(float) * nx) && !memcmp(dx, dxr, sizeof(float) * nx) && !memcmp(dA, dAr, sizeof(float) * nnz)
                          ? "bit-identical"
                          : "DIFFERENT"));
  CS_EXPECT(!memcmp(y, yr, sizeof(float) * nx), "graph forward differs from the serial loop");
  CS_EXPECT(!memcmp(dx, dxr, sizeof(float) * nx), "graph dinp differs from the serial loop");
  CS_EXPECT(!memcmp(dA, dAr, sizeof(float) * nnz), "graph dA differs from the serial loop");
  PetscCall(CsNNTransposeDestroy(&AT));
  PetscCall(CsCSRFree(&A));
  free(x), free(y), free(yr), free(g), free(dx), free(dxr), free(dA), free(dAr);
  PetscFunctionReturn(0);
}

static PetscErrorCode TestGraphNormalize(void)
{
  /* 6 nodes: a duplicated edge (0,1) listed twice, a self-loop on 3, an isolated node 5, weights. */
  const PetscInt n = 6, src[] = {0, 1, 0, 2, 3, 4, 0}, dst[] = {1, 2, 1, 3, 3, 2, 4};
  const float    w[] = {1.0f, 0.5f, 2.0f, 1.5f, 0.7f, 1.0f, 0.25f};
  double         D[36] = {0}, deg[6] = {0};
  CsCSR          Ah;
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  PetscCall(CsNNGraphNormalize(n, 7, src, dst, w, PETSC_TRUE, &Ah));
  for (int e = 0; e < 7; e++) {
    D[src[e] * 6 + dst[e]] += w[e];
    if (src[e] != dst[e]) D[dst[e] * 6 + src[e]] += w[e];
  }
  for (int i = 0; i < 6; i++) D[i * 6 + i] += 1;
  for (int i = 0; i < 6; i++)
    for (int j = 0; j < 6; j++) deg[i] += D[i * 6 + j];
  for (int i = 0; i < 6; i++) {
    int64_t k = Ah.indptr[i];
    for (int j = 0; j < 6; j++) {
      double ref = D[i * 6 + j] / sqrt(deg[i] * deg[j]);
      if (D[i * 6 + j] == 0) continue;
      CS_EXPECT(k < Ah.indptr[i + 1] && Ah.indices[k] == j, "normalised graph: entry (%d, %d) missing or out of order", i, j);
      if (k < Ah.indptr[i + 1] && Ah.indices[k] == j) {
        CS_EXPECT_CLOSE(Ah.data[k], ref, 1e-6, "normalised graph entry");
        k++;
      }
    }
    CS_EXPECT(k == Ah.indptr[i + 1], "normalised graph row %d has extra entries", i);
  }
  CS_EXPECT(Ah.indptr[6] == 6 + 2 * 5, "normalised graph has %d entries", (int)Ah.indptr[6]);
  PetscCall(CsCSRFree(&Ah));
  /* Directed, unweighted: row sums as degrees. */
  PetscCall(CsNNGraphNormalize(n, 7, src, dst, NULL, PETSC_FALSE, &Ah));
  CS_EXPECT_CLOSE(Ah.data[Ah.indptr[0]], 1.0 / 4.0, 1e-7, "directed normalisation: (0, 0) = 1 / deg(0)");
  CS_EXPECT_CLOSE(Ah.data[Ah.indptr[5]], 1.0, 1e-7, "isolated node: self-loop 1");
  PetscCall(CsCSRFree(&Ah));
  /* Errors: a node out of range, a negative degree. */
  {
    const PetscInt zero[] = {0}, six[] = {6}, one[] = {1};
    const float    neg[]  = {-3.0f};
    PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
    ierr = CsNNGraphNormalize(n, 1, zero, zero, NULL, PETSC_FALSE, &Ah);
    CS_EXPECT(ierr == 0, "a valid self-loop list was refused");
    if (!ierr) PetscCall(CsCSRFree(&Ah));
    ierr = CsNNGraphNormalize(n, 1, six, zero, NULL, PETSC_FALSE, &Ah);
    CS_EXPECT(ierr != 0, "a node index out of range was accepted");
    ierr = CsNNGraphNormalize(n, 1, zero, one, neg, PETSC_TRUE, &Ah);
    CS_EXPECT(ierr != 0, "a non-positive degree was accepted");
    PetscCall(PetscPopErrorHandler());
  }
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------------------------------- pairwise, log-sum-exp */

typedef struct {
  PetscInt n, m, d;
  float   *X, *Y, *c, *D, *work;
} PwCtx;

static double PwLoss(void *p)
{
  PwCtx *t = (PwCtx *)p;
  cs_pairwise_sqdist_forward(t->D, t->X, t->Y, t->n, t->m, t->d, t->work);
  return Dot(t->c, t->D, (size_t)t->n * t->m);
}

static PetscErrorCode TestPairwise(void)
{
  const PetscInt n = 37, m = 29, d = 19;
  PwCtx          t = {n, m, d, Alloc((size_t)n * d), Alloc((size_t)m * d), Alloc((size_t)n * m), Alloc((size_t)n * m), Alloc((size_t)(2 * n + m))};
  float         *dX = Alloc((size_t)n * d), *dY = Alloc((size_t)m * d), *Dself = Alloc((size_t)n * n);
  double        *X64, *Y64, *D64, *w64, emax = 0;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc4((size_t)n * d, &X64, (size_t)m * d, &Y64, (size_t)n * m, &D64, (size_t)m * d, &w64));
  CsTestFill(t.X, (size_t)n * d, 200, -1, 1), CsTestFill(t.Y, (size_t)m * d, 201, -1, 1), CsTestFill(t.c, (size_t)n * m, 202, -1, 1);
  memcpy(t.Y + 3 * d, t.X + 5 * d, sizeof(float) * d); /* a coincident pair: (5, 3) */
  for (size_t i = 0; i < (size_t)n * d; i++) X64[i] = t.X[i];
  for (size_t i = 0; i < (size_t)m * d; i++) Y64[i] = t.Y[i];
  /* Exact path: per-pair sums in dimension order, exactly; coincident points exactly 0. */
  cs_pairwise_sqdist_f64(D64, X64, Y64, n, m, d, w64);
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt j = 0; j < m; j++) {
      double s = 0;
      for (PetscInt c = 0; c < d; c++) s += (X64[i * d + c] - Y64[j * d + c]) * (X64[i * d + c] - Y64[j * d + c]);
      CS_EXPECT(D64[i * m + j] == s, "exact squared distance (%d, %d): %.17g vs %.17g", (int)i, (int)j, D64[i * m + j], s);
    }
  CS_EXPECT(D64[5 * m + 3] == 0, "coincident points are not at distance 0 in the exact path");
  /* Float path: against the exact distances, to ~1e-7 (|x|^2 + |y|^2). */
  cs_pairwise_sqdist_forward(t.D, t.X, t.Y, n, m, d, t.work);
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt j = 0; j < m; j++) {
      double sc = t.work[i] + t.work[n + j];
      emax      = fmax(emax, fabs(t.D[i * m + j] - D64[i * m + j]) / sc);
      CS_EXPECT(t.D[i * m + j] >= 0, "negative squared distance");
    }
  CS_EXPECT(emax < 1e-6, "float pairwise distances: error %g (relative to |x|^2 + |y|^2)", emax);
  PetscCall(PetscPrintf(PETSC_COMM_WORLD, "pairwise sqdist float32 vs exact: max error %.2e relative to |x|^2+|y|^2; coincident pair: %.2e\n",
                        emax, (double)t.D[5 * m + 3]));
  cs_pairwise_sqdist_forward(Dself, t.X, t.X, n, n, d, t.work);
  for (PetscInt i = 0; i < n; i++) CS_EXPECT(Dself[i * n + i] == 0, "diagonal of D(X, X) is not 0");
  /* Gradient, on points without coincidences (the identity is exact there up to rounding). */
  CsTestFill(t.Y + 3 * d, (size_t)d, 203, -1, 1);
  cs_pairwise_sqdist_backward(dX, dY, t.c, t.X, t.Y, n, m, d, t.work);
  {
    CsTestFDVar v[] = {{"X", t.X, dX, (size_t)n * d}, {"Y", t.Y, dY, (size_t)m * d}};
    CsTestFDCheck("pairwise sqdist (dX, dY)", PwLoss, &t, v, 2, 1e-2, FD_TOL, NULL, NULL);
  }
  free(t.X), free(t.Y), free(t.c), free(t.D), free(t.work), free(dX), free(dY), free(Dself);
  PetscCall(PetscFree4(X64, Y64, D64, w64));
  PetscFunctionReturn(0);
}

static PetscErrorCode TestLogSumExp(void)
{
  PetscFunctionBeginUser;
  /* A small case (lanes and tails on one thread) and one large enough for the thread pool. */
  for (int v = 0; v < 2; v++) {
    const PetscInt n = v ? 300 : 41, m = v ? 517 : 300;
    const float    s = -1.0f / 0.05f; /* -1/eps */
    float         *M = Alloc((size_t)n * m), *f = Alloc((size_t)n), *g = Alloc((size_t)m), *r = Alloc((size_t)n), *c = Alloc((size_t)m);
    double         er = 0, ec = 0;
    CsTestFill(M, (size_t)n * m, 210, 0, 2), CsTestFill(f, (size_t)n, 211, -1, 1), CsTestFill(g, (size_t)m, 212, -1, 1);
    f[2] = -INFINITY, g[7] = -INFINITY; /* log of a zero weight */
    for (int pass = 0; pass < 2; pass++) {
      const float *ff = pass ? NULL : f, *gg = pass ? NULL : g;
      cs_logsumexp_rows(r, M, ff, gg, s, n, m);
      cs_logsumexp_cols(c, M, ff, gg, s, n, m);
      for (PetscInt i = 0; i < n; i++) {
        double mx = -INFINITY, sum = 0, z, ref;
        for (PetscInt j = 0; j < m; j++) mx = fmax(mx, (gg ? gg[j] : 0.0) + (double)s * M[i * m + j]);
        for (PetscInt j = 0; j < m; j++) z = (gg ? gg[j] : 0.0) + (double)s * M[i * m + j], sum += z == -INFINITY ? 0 : exp(z - mx);
        ref = (ff ? ff[i] : 0.0) + mx + log(sum);
        if (isinf(ref)) CS_EXPECT(r[i] == (float)ref, "row log-sum-exp %d: %g, expected %g", (int)i, (double)r[i], ref);
        else er = fmax(er, fabs(r[i] - ref) / fmax(1, fabs(ref)));
      }
      for (PetscInt j = 0; j < m; j++) {
        double mx = -INFINITY, sum = 0, z, ref;
        for (PetscInt i = 0; i < n; i++) mx = fmax(mx, (ff ? ff[i] : 0.0) + (double)s * M[i * m + j]);
        for (PetscInt i = 0; i < n; i++) z = (ff ? ff[i] : 0.0) + (double)s * M[i * m + j], sum += z == -INFINITY ? 0 : exp(z - mx);
        ref = (gg ? gg[j] : 0.0) + mx + log(sum);
        if (isinf(ref)) CS_EXPECT(c[j] == (float)ref, "column log-sum-exp %d: %g, expected %g", (int)j, (double)c[j], ref);
        else ec = fmax(ec, fabs(c[j] - ref) / fmax(1, fabs(ref)));
      }
    }
    PetscCall(PetscPrintf(PETSC_COMM_WORLD, "log-sum-exp %dx%d (s = -1/0.05) vs double: rows %.2e, columns %.2e (relative)\n", (int)n, (int)m, er, ec));
    CS_EXPECT(er < 1e-6 && ec < 1e-6, "log-sum-exp errors %g (rows) %g (columns)", er, ec);
    free(M), free(f), free(g), free(r), free(c);
  }
  /* Entirely masked rows/columns and the range of the exponential (arguments down to -100 and -inf). */
  {
    float M[6] = {0, 1, 2, 3, 4, 5}, f[2] = {-INFINITY, 0}, r[2], c[3], M2[4] = {0, 50, 87, 95}, r2;
    cs_logsumexp_rows(r, M, f, NULL, 1, 2, 3);
    cs_logsumexp_cols(c, M, f, NULL, 1, 2, 3);
    CS_EXPECT(r[0] == -INFINITY, "log-sum-exp of a row with f = -inf");
    CS_EXPECT_CLOSE(r[1], log(exp(3.0) + exp(4.0) + exp(5.0)), 1e-6, "log-sum-exp row");
    CS_EXPECT_CLOSE(c[0], 3, 1e-6, "log-sum-exp column with one finite entry");
    cs_logsumexp_rows(&r2, M2, NULL, NULL, -1, 1, 4);
    CS_EXPECT_CLOSE(r2, log(1 + exp(-50.0) + exp(-87.0) + exp(-95.0)), 1e-7, "log-sum-exp with tiny terms");
  }
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------------------------------- dump for torch */

static PetscErrorCode WriteRaw(const char dir[], const char name[], const void *data, size_t bytes)
{
  char  path[PETSC_MAX_PATH_LEN];
  FILE *fp;

  PetscFunctionBeginUser;
  PetscCall(PetscSNPrintf(path, sizeof(path), "%s/%s", dir, name));
  fp = fopen(path, "wb");
  PetscCheck(fp, PETSC_COMM_SELF, PETSC_ERR_FILE_OPEN, "cannot write %s", path);
  PetscCheck(fwrite(data, 1, bytes, fp) == bytes, PETSC_COMM_SELF, PETSC_ERR_FILE_WRITE, "cannot write %s", path);
  PetscCheck(fclose(fp) == 0, PETSC_COMM_SELF, PETSC_ERR_FILE_WRITE, "cannot close %s", path);
  PetscFunctionReturn(0);
}

static PetscErrorCode WriteF32(const char dir[], const char name[], const float *p, size_t n)
{
  char file[PETSC_MAX_PATH_LEN];

  PetscFunctionBeginUser;
  PetscCall(PetscSNPrintf(file, sizeof(file), "%s.f32", name));
  PetscCall(WriteRaw(dir, file, p, sizeof(float) * n));
  PetscFunctionReturn(0);
}
#define WRITE_F32(name, p, n) PetscCall(WriteF32(dir, name, p, (size_t)(n)))

static PetscErrorCode Dump(const char dir[])
{
  const PetscInt B = 4, T = 7, C = 16, H = 4, len[] = {7, 5, 2, 7}, NT = 5, D = 12;
  const size_t   btc = (size_t)B * T * C;
  AttnCtx        t;
  float         *dx, *dwqkv, *dbqkv, *dwo, *dbo, *work, *y, *d1, *gam, *bet, *mean, *rstd, *dg, *db, *tt, *te, *dt, *dte;
  int32_t        len32[4], dims[7] = {(int32_t)B, (int32_t)T, (int32_t)C, (int32_t)H, (int32_t)NT, (int32_t)D, 0};

  PetscFunctionBeginUser;
  for (int b = 0; b < 4; b++) len32[b] = (int32_t)len[b];
  PetscCall(AttnAlloc(&t, B, T, C, H, len));
  CsTestFill(t.x, btc, 220, -2, 2), CsTestFill(t.c, btc, 221, -1, 1);
  dx = Alloc(btc), dwqkv = Alloc((size_t)C * 3 * C), dbqkv = Alloc((size_t)3 * C), dwo = Alloc((size_t)C * C), dbo = Alloc((size_t)C);
  work = Alloc(cs_attention_work_size(B, T, C));
  AttnForward(&t);
  cs_attention_backward(dx, dwqkv, dbqkv, dwo, dbo, t.c, t.x, t.qkv, t.att, t.y, t.wqkv, t.wo, t.len, B, T, C, H, work);
  PetscCall(WriteRaw(dir, "dims.i32", dims, sizeof(dims)));
  PetscCall(WriteRaw(dir, "attn_len.i32", len32, sizeof(len32)));
  WRITE_F32("attn_x", t.x, btc);
  WRITE_F32("attn_wqkv", t.wqkv, C * 3 * C);
  WRITE_F32("attn_bqkv", t.bqkv, 3 * C);
  WRITE_F32("attn_wo", t.wo, C * C);
  WRITE_F32("attn_bo", t.bo, C);
  WRITE_F32("attn_dout", t.c, btc);
  WRITE_F32("attn_out", t.out, btc);
  WRITE_F32("attn_dx", dx, btc);
  WRITE_F32("attn_dwqkv", dwqkv, C * 3 * C);
  WRITE_F32("attn_dbqkv", dbqkv, 3 * C);
  WRITE_F32("attn_dwo", dwo, C * C);
  WRITE_F32("attn_dbo", dbo, C);
  /* Elementwise and row-wise kernels on the same [B,T,C] input and output gradient. */
  y = Alloc(btc), d1 = Alloc(btc);
  WRITE_F32("act_x", t.x, btc);
  WRITE_F32("act_dout", t.c, btc);
  for (int a = 0; a < 2; a++) {
    CsNNAct act = a ? CS_NN_ACT_SILU : CS_NN_ACT_GELU;
    memset(d1, 0, sizeof(float) * btc);
    cs_activation_forward(act, y, t.x, btc);
    cs_activation_backward(act, d1, t.c, t.x, btc);
    WRITE_F32(a ? "silu_y" : "gelu_y", y, btc);
    WRITE_F32(a ? "silu_dx" : "gelu_dx", d1, btc);
  }
  memset(d1, 0, sizeof(float) * btc);
  cs_softmax_forward(y, t.x, B * T, C);
  cs_softmax_backward(d1, t.c, y, B * T, C);
  WRITE_F32("softmax_y", y, btc);
  WRITE_F32("softmax_dx", d1, btc);
  gam = Alloc((size_t)C), bet = Alloc((size_t)C), mean = Alloc((size_t)B * T), rstd = Alloc((size_t)B * T), dg = Alloc((size_t)C), db = Alloc((size_t)C);
  CsTestFill(gam, (size_t)C, 222, 0.5, 1.5), CsTestFill(bet, (size_t)C, 223, -1, 1);
  memset(d1, 0, sizeof(float) * btc);
  cs_layernorm_forward(y, mean, rstd, t.x, gam, bet, B * T, C, 1e-5);
  cs_layernorm_backward(d1, dg, db, t.c, t.x, mean, rstd, gam, B * T, C);
  WRITE_F32("ln_gamma", gam, C);
  WRITE_F32("ln_beta", bet, C);
  WRITE_F32("ln_y", y, btc);
  WRITE_F32("ln_dx", d1, btc);
  WRITE_F32("ln_dgamma", dg, C);
  WRITE_F32("ln_dbeta", db, C);
  /* Time embedding. */
  tt = Alloc((size_t)NT), te = Alloc((size_t)NT * D), dt = Alloc((size_t)NT), dte = Alloc((size_t)NT * D);
  CsTestFill(tt, (size_t)NT, 224, 0, 1), CsTestFill(dte, (size_t)NT * D, 225, -1, 1);
  tt[NT - 1] = 250.0f;
  cs_time_embedding_forward(te, tt, NT, D, 10000);
  cs_time_embedding_backward(dt, dte, tt, NT, D, 10000);
  WRITE_F32("te_t", tt, NT);
  WRITE_F32("te_dout", dte, NT * D);
  WRITE_F32("te_out", te, NT * D);
  WRITE_F32("te_dt", dt, NT);
  AttnFree(&t);
  free(dx), free(dwqkv), free(dbqkv), free(dwo), free(dbo), free(work), free(y), free(d1), free(gam), free(bet), free(mean), free(rstd);
  free(dg), free(db), free(tt), free(te), free(dt), free(dte);
  PetscCall(PetscPrintf(PETSC_COMM_WORLD, "wrote the kernel inputs and outputs into %s\n", dir));
  PetscFunctionReturn(0);
}

static PetscErrorCode Body(void)
{
  char      dir[PETSC_MAX_PATH_LEN];
  PetscBool dump;

  PetscFunctionBeginUser;
  PetscCall(PetscOptionsGetString(NULL, NULL, "-dump", dir, sizeof(dir), &dump));
  if (dump) {
    PetscCall(Dump(dir));
    PetscFunctionReturn(0);
  }
  PetscCall(TestSoftmax());
  PetscCall(TestResidual());
  PetscCall(TestAttention());
  PetscCall(TestSetMean());
  PetscCall(TestTimeEmbedding());
  PetscCall(TestActivationsBTC());
  PetscCall(TestLayerNormBTC());
  PetscCall(TestGraph());
  PetscCall(TestGraphThreads());
  PetscCall(TestGraphNormalize());
  PetscCall(TestPairwise());
  PetscCall(TestLogSumExp());
  PetscFunctionReturn(0);
}

int main(int argc, char **argv) { return CsTestMain(argc, argv, Body); }
