/* Gradients of every layer, loss, MLP block and the whole VAE step against centred finite differences, reported
   as PETSc's Tao gradient test does: ||g_fd - g|| / ||g|| in the 2-norm and in the max norm. The scalar being
   differentiated is accumulated in double. Steps for float32 kernels: 1e-2 for single layers (inputs of the
   piecewise-linear activations are kept away from their kink), 1e-3 for whole networks, where a larger step lets
   some pre-activation cross the kink of ReLU/LeakyReLU (measured: errors fall with the step, 2e-3 at 1e-2 to
   2e-4 at 1e-3, while rounding noise grows below ~3e-4). A wrong gradient gives errors of order 1. */
#include "testing.h"
#include <cellshift/nn.h>
#include <cellshift/rng.h>
#include <string.h>

typedef CsTestLossFn LossFn;
typedef CsTestFDVar  FDVar;

static double fd_h = 1e-2;

static void FDCheck(const char *what, LossFn f, void *ctx, const FDVar *v, int nv, double tol)
{
  CsTestFDCheck(what, f, ctx, v, nv, fd_h, tol, NULL, NULL);
}

static void Fill(float *x, size_t n, uint64_t key, double lo, double hi) { CsTestFill(x, n, key, lo, hi); }

/* Inputs bounded away from 0, so that no finite difference straddles the kink of ReLU-like functions. */
static void FillAwayFromZero(float *x, size_t n, uint64_t key)
{
  Fill(x, n, key, -2, 2);
  for (size_t i = 0; i < n; i++)
    if (fabsf(x[i]) < 0.1f) x[i] = x[i] < 0 ? x[i] - 0.1f : x[i] + 0.1f;
}

static double Dot(const float *c, const float *y, size_t n)
{
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)c[i] * y[i];
  return s;
}

static float *Alloc(size_t n)
{
  float *p = (float *)calloc(n ? n : 1, sizeof(float));
  return p;
}

/* ------------------------------------------------------------------------------------------- linear, bias */

typedef struct {
  PetscInt B, Ni, O;
  float   *x, *w, *b, *c, *y;
  CsCSR   *X;
} LinCtx;

static double LinLoss(void *p)
{
  LinCtx *t = (LinCtx *)p;
  if (t->X) cs_linear_sparse_forward(t->y, t->X, t->w, t->b, t->O);
  else cs_linear_forward(t->y, t->x, t->w, t->b, t->B, t->Ni, t->O);
  return Dot(t->c, t->y, (size_t)t->B * t->O);
}

static PetscErrorCode TestLinear(void)
{
  LinCtx t = {5, 7, 6, NULL, NULL, NULL, NULL, NULL, NULL};
  float *dx, *dw, *db, *yref;
  CsCSR  X;

  PetscFunctionBeginUser;
  t.x = Alloc(35), t.w = Alloc(42), t.b = Alloc(6), t.c = Alloc(30), t.y = Alloc(30);
  dx = Alloc(35), dw = Alloc(42), db = Alloc(6), yref = Alloc(30);
  Fill(t.x, 35, 1, -1, 1), Fill(t.w, 42, 2, -1, 1), Fill(t.b, 6, 3, -1, 1), Fill(t.c, 30, 4, -1, 1);
  /* Forward against the definition. */
  cs_linear_forward(t.y, t.x, t.w, t.b, 5, 7, 6);
  for (int i = 0; i < 5; i++)
    for (int o = 0; o < 6; o++) {
      double s = t.b[o];
      for (int k = 0; k < 7; k++) s += (double)t.x[i * 7 + k] * t.w[k * 6 + o];
      CS_EXPECT_CLOSE(t.y[i * 6 + o], s, 1e-5, "linear forward");
    }
  cs_linear_backward(dx, dw, db, t.c, t.x, t.w, 5, 7, 6);
  {
    FDVar v[] = {{"x", t.x, dx, 35}, {"w", t.w, dw, 42}, {"b", t.b, db, 6}};
    FDCheck("linear (x, W, b)", LinLoss, &t, v, 3, 1e-3);
  }
  /* Sparse input: about 40% non-zeros; forward equals the dense layer on the densified rows. */
  PetscCall(PetscMemzero(&X, sizeof(X)));
  X.nrows = 5, X.ncols = 7;
  PetscCall(PetscMalloc3(6, &X.indptr, 35, &X.indices, 35, &X.data));
  X.indptr[0] = 0;
  for (int i = 0; i < 5; i++) {
    X.indptr[i + 1] = X.indptr[i];
    for (int k = 0; k < 7; k++) {
      if (CsRngUniform(1234, CS_STREAM_DATA, 9, (uint64_t)(i * 7 + k)) < 0.6) {
        t.x[i * 7 + k] = 0;
        continue;
      }
      X.indices[X.indptr[i + 1]] = k, X.data[X.indptr[i + 1]] = t.x[i * 7 + k], X.indptr[i + 1]++;
    }
  }
  cs_linear_forward(yref, t.x, t.w, t.b, 5, 7, 6);
  cs_linear_sparse_forward(t.y, &X, t.w, t.b, 6);
  for (int i = 0; i < 30; i++) CS_EXPECT_CLOSE(t.y[i], yref[i], 1e-5, "sparse linear forward = dense forward");
  memset(dw, 0, 42 * sizeof(float)), memset(db, 0, 6 * sizeof(float));
  cs_linear_sparse_backward(dw, db, t.c, &X, 6);
  t.X = &X;
  {
    FDVar v[] = {{"w", t.w, dw, 42}, {"b", t.b, db, 6}};
    FDCheck("sparse linear (W, b)", LinLoss, &t, v, 2, 1e-3);
  }
  PetscCall(PetscFree3(X.indptr, X.indices, X.data));
  free(t.x), free(t.w), free(t.b), free(t.c), free(t.y), free(dx), free(dw), free(db), free(yref);
  PetscFunctionReturn(0);
}

/* The sparse kernels at a width where the vectorised 128-column tiles and the partial tiles both run (and split
   over threads), against the dense layer on the same data. */
static PetscErrorCode TestSparseWide(void)
{
  PetscInt B = 40, In = 70, O = 300;
  float   *x = Alloc((size_t)B * In), *w = Alloc((size_t)In * O), *b = Alloc((size_t)O), *y = Alloc((size_t)B * O), *yd = Alloc((size_t)B * O);
  float   *dy = Alloc((size_t)B * O), *dw = Alloc((size_t)In * O), *dwd = Alloc((size_t)In * O);
  CsCSR    X;
  double   e = 0, r = 0, e2 = 0, r2 = 0;

  PetscFunctionBeginUser;
  Fill(w, (size_t)In * O, 14, -1, 1), Fill(b, (size_t)O, 15, -1, 1), Fill(dy, (size_t)B * O, 16, -1, 1), Fill(dw, (size_t)In * O, 17, -1, 1);
  memcpy(dwd, dw, sizeof(float) * (size_t)In * O);
  PetscCall(PetscMemzero(&X, sizeof(X)));
  X.nrows = B, X.ncols = In;
  PetscCall(PetscMalloc3(B + 1, &X.indptr, B * In, &X.indices, B * In, &X.data));
  X.indptr[0] = 0;
  for (PetscInt i = 0; i < B; i++) {
    X.indptr[i + 1] = X.indptr[i];
    for (PetscInt j = 0; j < In; j++)
      if (CsRngUniform(1234, CS_STREAM_DATA, 18, (uint64_t)(i * In + j)) < 0.2) {
        x[i * In + j]             = (float)CsRngUniform(1234, CS_STREAM_DATA, 19, (uint64_t)(i * In + j));
        X.indices[X.indptr[i + 1]] = (int32_t)j, X.data[X.indptr[i + 1]++] = x[i * In + j];
      }
  }
  cs_linear_sparse_forward(y, &X, w, b, O);
  cs_linear_forward(yd, x, w, b, B, In, O);
  cs_linear_sparse_backward(dw, NULL, dy, &X, O);
  cs_linear_backward(NULL, dwd, NULL, dy, x, w, B, In, O);
  for (size_t i = 0; i < (size_t)B * O; i++) e += (y[i] - yd[i]) * (y[i] - yd[i]), r += (double)yd[i] * yd[i];
  for (size_t i = 0; i < (size_t)In * O; i++) e2 += (dw[i] - dwd[i]) * (dw[i] - dwd[i]), r2 += (double)dwd[i] * dwd[i];
  CS_EXPECT(sqrt(e / r) < 1e-6, "wide sparse forward differs from dense: %g", sqrt(e / r));
  CS_EXPECT(sqrt(e2 / r2) < 1e-6, "wide sparse weight gradient differs from dense: %g", sqrt(e2 / r2));
  PetscCall(PetscFree3(X.indptr, X.indices, X.data));
  free(x), free(w), free(b), free(y), free(yd), free(dy), free(dw), free(dwd);
  PetscFunctionReturn(0);
}

typedef struct {
  PetscInt B, C;
  float   *x, *b, *c, *y;
} BiasCtx;

static double BiasLoss(void *p)
{
  BiasCtx *t = (BiasCtx *)p;
  cs_bias_forward(t->y, t->x, t->b, t->B, t->C);
  return Dot(t->c, t->y, (size_t)t->B * t->C);
}

static PetscErrorCode TestBias(void)
{
  BiasCtx t = {4, 5, Alloc(20), Alloc(5), Alloc(20), Alloc(20)};
  float  *dx = Alloc(20), *db = Alloc(5);

  PetscFunctionBeginUser;
  Fill(t.x, 20, 11, -1, 1), Fill(t.b, 5, 12, -1, 1), Fill(t.c, 20, 13, -1, 1);
  cs_bias_backward(dx, db, t.c, 4, 5);
  {
    FDVar v[] = {{"x", t.x, dx, 20}, {"b", t.b, db, 5}};
    FDCheck("bias (x, b)", BiasLoss, &t, v, 2, 1e-3);
  }
  free(t.x), free(t.b), free(t.c), free(t.y), free(dx), free(db);
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------------------------------- activations */

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

static PetscErrorCode TestActivations(void)
{
  PetscFunctionBeginUser;
  for (int a = 0; a <= CS_NN_ACT_SOFTPLUS; a++) {
    ActCtx t = {(CsNNAct)a, 64, Alloc(64), Alloc(64), Alloc(64)};
    float *dx = Alloc(64);
    char   what[64];
    FillAwayFromZero(t.x, 64, 20 + (uint64_t)a), Fill(t.c, 64, 30, -1, 1);
    t.x[0] = 25; /* softplus above its threshold */
    cs_activation_backward(t.act, dx, t.c, t.x, 64);
    /* Values against the definitions. */
    cs_activation_forward(t.act, t.y, t.x, 64);
    for (int i = 0; i < 64; i++) {
      double x = t.x[i], ref = a == CS_NN_ACT_RELU ? fmax(x, 0) : a == CS_NN_ACT_LEAKYRELU ? (x > 0 ? x : 0.01 * x)
                             : a == CS_NN_ACT_GELU    ? 0.5 * x * (1 + erf(x / sqrt(2.0)))
                             : a == CS_NN_ACT_SIGMOID ? 1 / (1 + exp(-x))
                             : a == CS_NN_ACT_SOFTPLUS ? (x > 20 ? x : log1p(exp(x)))
                                                       : x;
      CS_EXPECT_CLOSE(t.y[i], ref, 1e-5, CsNNActs[a]);
    }
    {
      FDVar v[] = {{"x", t.x, dx, 64}};
      PetscCall(PetscSNPrintf(what, sizeof(what), "activation %s", CsNNActs[a]));
      FDCheck(what, ActLoss, &t, v, 1, 1e-3);
    }
    free(t.x), free(t.c), free(t.y), free(dx);
  }
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------------------------------- dropout */

static PetscErrorCode TestDropout(void)
{
  PetscInt B = 64, C = 200;
  size_t   n = (size_t)B * C, kept = 0;
  float   *x = Alloc(n), *y = Alloc(n), *mask = Alloc(n), *dx = Alloc(n), *c = Alloc(n);
  int64_t  cell[64];
  CsNNPass pass;
  double   p = 0.2;
  uint32_t words[256];

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(&pass, sizeof(pass)));
  pass.comm = PETSC_COMM_SELF, pass.train = PETSC_TRUE, pass.nglobal = B, pass.seed = 77, pass.step = 5, pass.cell = cell;
  for (PetscInt i = 0; i < B; i++) cell[i] = 1000 + 3 * i;
  Fill(x, n, 40, -1, 1), Fill(c, n, 41, -1, 1);
  cs_dropout_forward(y, mask, x, B, C, p, &pass, 7);
  /* The words against CsRng4 with the documented keying (this checks the AVX-512 generator bit for bit). */
  for (PetscInt i = 0; i < B; i++) {
    cs_dropout_words(words, pass.seed, pass.step, 7, cell[i], C);
    for (PetscInt u = 0; u < C; u++) {
      uint32_t r[4];
      uint64_t q = (uint64_t)(u / 64) * 16 + (uint64_t)(u % 16);
      CsRng4(77, CS_STREAM_DROPOUT, 5, ((uint64_t)cell[i] << 24) | (7ull << 16) | q, r);
      CS_EXPECT(words[u] == r[(u / 16) % 4], "dropout word of cell %" PRId64 " unit %" PetscInt_FMT " differs from CsRng4", cell[i], u);
      CS_EXPECT(mask[(size_t)i * C + u] == (r[(u / 16) % 4] >= (uint32_t)llround(p * 4294967296.0) ? (float)(1 / (1 - p)) : 0.0f),
                "dropout mask value");
    }
  }
  for (size_t i = 0; i < n; i++) {
    kept += mask[i] != 0;
    CS_EXPECT(y[i] == x[i] * mask[i], "dropout output");
  }
  /* Keep fraction within 5 standard deviations of 1 - p. */
  CS_EXPECT(fabs((double)kept / n - (1 - p)) < 5 * sqrt(p * (1 - p) / n), "dropout keeps %zu of %zu", kept, n);
  /* A different step gives a different mask, the same step the same one. */
  {
    float *mask2 = Alloc(n), *y2 = Alloc(n);
    size_t same  = 0;
    cs_dropout_forward(y2, mask2, x, B, C, p, &pass, 7);
    CS_EXPECT(!memcmp(mask, mask2, n * sizeof(float)), "dropout mask is not reproducible");
    pass.step = 6;
    cs_dropout_forward(y2, mask2, x, B, C, p, &pass, 7);
    for (size_t i = 0; i < n; i++) same += mask[i] == mask2[i];
    CS_EXPECT(same < n, "dropout mask did not change with the step");
    free(mask2), free(y2);
  }
  cs_dropout_backward(dx, c, mask, n);
  for (size_t i = 0; i < n; i++) CS_EXPECT(dx[i] == c[i] * mask[i], "dropout backward");
  free(x), free(y), free(mask), free(dx), free(c);
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------------------------------- normalisation */

typedef struct {
  PetscInt  B, C;
  PetscBool layer;
  float    *x, *gamma, *beta, *c, *y, *xhat, *rstd, *rm, *rv, *mean;
  CsNNPass  pass;
  double   *work;
} NormCtx;

static double NormLoss(void *p)
{
  NormCtx *t = (NormCtx *)p;
  if (t->layer) cs_layernorm_forward(t->y, t->mean, t->rstd, t->x, t->gamma, t->beta, t->B, t->C, 1e-5);
  else PetscCallAbort(PETSC_COMM_SELF, cs_batchnorm_forward(t->y, t->xhat, t->rstd, t->x, t->gamma, t->beta, t->rm, t->rv, t->B, t->C,
                                                            0.1, 1e-5, &t->pass, t->work));
  return Dot(t->c, t->y, (size_t)t->B * t->C);
}

static PetscErrorCode TestNorms(void)
{
  PetscInt B = 8, C = 5;
  size_t   n = (size_t)B * C;

  PetscFunctionBeginUser;
  for (int mode = 0; mode < 3; mode++) { /* BatchNorm train, BatchNorm eval, LayerNorm */
    NormCtx t;
    float  *dx = Alloc(n), *dg = Alloc((size_t)C), *dbt = Alloc((size_t)C);
    PetscCall(PetscMemzero(&t, sizeof(t)));
    t.B = B, t.C = C, t.layer = mode == 2;
    t.x = Alloc(n), t.gamma = Alloc((size_t)C), t.beta = Alloc((size_t)C), t.c = Alloc(n), t.y = Alloc(n), t.xhat = Alloc(n);
    t.rstd = Alloc((size_t)B + C), t.rm = Alloc((size_t)C), t.rv = Alloc((size_t)C), t.mean = Alloc((size_t)B);
    t.work = (double *)calloc(4 * (size_t)C, sizeof(double));
    Fill(t.x, n, 50 + (uint64_t)mode, -2, 3), Fill(t.gamma, (size_t)C, 51, 0.5, 1.5), Fill(t.beta, (size_t)C, 52, -1, 1);
    Fill(t.c, n, 53, -1, 1), Fill(t.rm, (size_t)C, 54, -0.5, 0.5), Fill(t.rv, (size_t)C, 55, 0.5, 2);
    t.pass.comm = PETSC_COMM_SELF, t.pass.train = mode == 0, t.pass.nglobal = B;
    if (mode == 0) {
      /* Batch statistics and the running update against a direct two-pass computation. */
      float rm0[5], rv0[5];
      memcpy(rm0, t.rm, sizeof(rm0)), memcpy(rv0, t.rv, sizeof(rv0));
      (void)NormLoss(&t);
      for (PetscInt j = 0; j < C; j++) {
        double m = 0, v = 0;
        for (PetscInt i = 0; i < B; i++) m += t.x[i * C + j];
        m /= B;
        for (PetscInt i = 0; i < B; i++) v += (t.x[i * C + j] - m) * (t.x[i * C + j] - m);
        CS_EXPECT_CLOSE(t.rm[j], 0.9 * rm0[j] + 0.1 * m, 1e-6, "BatchNorm running mean");
        CS_EXPECT_CLOSE(t.rv[j], 0.9 * rv0[j] + 0.1 * v / (B - 1), 1e-6, "BatchNorm running var (unbiased)");
        for (PetscInt i = 0; i < B; i++)
          CS_EXPECT_CLOSE(t.y[i * C + j], t.gamma[j] * (t.x[i * C + j] - m) / sqrt(v / B + 1e-5) + t.beta[j], 1e-5, "BatchNorm output");
      }
    } else (void)NormLoss(&t);
    if (mode == 2) cs_layernorm_backward(dx, dg, dbt, t.c, t.x, t.mean, t.rstd, t.gamma, B, C);
    else PetscCall(cs_batchnorm_backward(dx, dg, dbt, t.c, t.xhat, t.rstd, t.gamma, B, C, &t.pass, t.work));
    {
      FDVar       v[] = {{"x", t.x, dx, n}, {"gamma", t.gamma, dg, (size_t)C}, {"beta", t.beta, dbt, (size_t)C}};
      const char *what[] = {"batchnorm train (x, gamma, beta)", "batchnorm eval (x, gamma, beta)", "layernorm (x, gamma, beta)"};
      FDCheck(what[mode], NormLoss, &t, v, 3, 2e-3);
    }
    free(t.x), free(t.gamma), free(t.beta), free(t.c), free(t.y), free(t.xhat), free(t.rstd), free(t.rm), free(t.rv), free(t.mean);
    free(t.work), free(dx), free(dg), free(dbt);
  }
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------------------------------- embedding, concat */

typedef struct {
  float   *table, *a, *b, *c, *y, *e;
  PetscInt idx[6];
} EmbCtx;

static double EmbLoss(void *p)
{
  EmbCtx         *t    = (EmbCtx *)p;
  const float    *in[] = {t->a, t->e, t->b};
  const PetscInt  C[]  = {3, 4, 2};
  cs_embedding_forward(t->e, t->idx, t->table, 6, 4);
  cs_concat_forward(t->y, 3, in, C, 6);
  return Dot(t->c, t->y, 6 * 9);
}

static PetscErrorCode TestEmbeddingConcat(void)
{
  EmbCtx         t  = {Alloc(20), Alloc(18), Alloc(12), Alloc(54), Alloc(54), Alloc(24), {4, 0, 4, 2, 1, 4}};
  float         *dt = Alloc(20), *da = Alloc(18), *db = Alloc(12), *de = Alloc(24);
  float *const   din[] = {da, de, db};
  const PetscInt C[]   = {3, 4, 2};

  PetscFunctionBeginUser;
  Fill(t.table, 20, 60, -1, 1), Fill(t.a, 18, 61, -1, 1), Fill(t.b, 12, 62, -1, 1), Fill(t.c, 54, 63, -1, 1);
  (void)EmbLoss(&t);
  cs_concat_backward(din, 3, t.c, C, 6);
  cs_embedding_backward(dt, de, t.idx, 6, 4);
  {
    FDVar v[] = {{"table", t.table, dt, 20}, {"a", t.a, da, 18}, {"b", t.b, db, 12}};
    FDCheck("embedding + concat (table, a, b)", EmbLoss, &t, v, 3, 1e-3);
  }
  free(t.table), free(t.a), free(t.b), free(t.c), free(t.y), free(t.e), free(dt), free(da), free(db), free(de);
  PetscFunctionReturn(0);
}

/* Dose-scaled embedding sums: 4 rows with 2, 0, 1 and 3 atoms out of 3, every dose response. */
typedef struct {
  CsNNDoser doser;
  float    *E, *beta, *bias, *c, *y;
} DoseCtx;
static const PetscInt dose_rowptr[] = {0, 2, 2, 3, 6}, dose_atom[] = {0, 2, 1, 2, 0, 1};
static const double   dose_dose[]   = {0.5, 3.0, 1.0, 0.1, 10.0, 2.0};

static double DoseLoss(void *p)
{
  DoseCtx *t = (DoseCtx *)p;
  memset(t->y, 0, sizeof(float) * 4 * 5);
  cs_dose_embedding_forward(t->y, dose_rowptr, dose_atom, dose_dose, t->E, t->beta, t->bias, t->doser, 4, 5);
  return Dot(t->c, t->y, 20);
}

static PetscErrorCode TestDoseEmbedding(void)
{
  PetscFunctionBeginUser;
  for (int doser = 0; doser < 3; doser++) {
    DoseCtx t  = {(CsNNDoser)doser, Alloc(15), Alloc(3), Alloc(3), Alloc(20), Alloc(20)};
    float  *dE = Alloc(15), *db = Alloc(3), *dc = Alloc(3);
    char    name[64];
    Fill(t.E, 15, 80, -1, 1), Fill(t.beta, 3, 81, 0.5, 2), Fill(t.bias, 3, 82, -1, 1), Fill(t.c, 20, 83, -1, 1);
    (void)DoseLoss(&t);
    cs_dose_embedding_backward(dE, db, dc, t.c, dose_rowptr, dose_atom, dose_dose, t.E, t.beta, t.bias, t.doser, 4, 5);
    /* row 2 has one atom: its output is f(1) E[1] by the definition */
    {
      double u = doser == 0 ? log1p(1.0) : 1.0, s = 1 / (1 + exp(-(u * t.beta[1] + t.bias[1]))), s0 = 1 / (1 + exp(-(double)t.bias[1]));
      double f = doser == 2 ? 1.0 : s - s0;
      for (int j = 0; j < 5; j++) CS_EXPECT_CLOSE(t.y[2 * 5 + j], f * t.E[5 + j], 1e-6, "dose embedding value");
      for (int j = 0; j < 5; j++) CS_EXPECT(t.y[5 + j] == 0, "a row without atoms is 0");
    }
    PetscCall(PetscSNPrintf(name, sizeof(name), "dose embedding (%s)", CsNNDosers[doser]));
    {
      FDVar v[] = {{"E", t.E, dE, 15}, {"beta", t.beta, db, 3}, {"bias", t.bias, dc, 3}};
      FDCheck(name, DoseLoss, &t, v, doser == 2 ? 1 : 3, 1e-3);
    }
    free(t.E), free(t.beta), free(t.bias), free(t.c), free(t.y), free(dE), free(db), free(dc);
  }
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------------------------------- losses */

typedef struct {
  int      kind;
  PetscInt B, C;
  float   *a, *b, *t;
  PetscInt labels[6];
  CsCSR   *T;
} LossCtx;

static double LossEval(LossCtx *t, float *da, float *db)
{
  switch (t->kind) {
  case 0:
    return cs_mse_loss(da, t->a, t->t, t->B, t->C, 10, 1.5);
  case 1:
    return cs_mse_loss_csr(da, t->a, t->T, 10, 1.5);
  case 2:
    return cs_gaussian_nll_loss(da, db, t->a, t->b, t->t, t->B, t->C, 1e-3, 10, 1.5);
  case 3:
    return cs_nb_nll_loss(da, db, t->a, t->b, t->t, t->B, t->C, 10, 1.5);
  case 4:
    return cs_softmax_xent_loss(da, t->a, t->labels, t->B, t->C, 10, 1.5);
  case 6:
    return cs_bce_logits_loss(da, t->a, t->t, t->B, t->C, 10, 1.5);
  default:
    return cs_kl_normal_loss(da, t->a, t->B, t->C / 2, 10, 1.5);
  }
}

static double LossOnly(void *p) { return LossEval((LossCtx *)p, NULL, NULL); }

static PetscErrorCode TestLosses(void)
{
  const char *names[] = {"loss mse", "loss mse csr", "loss gaussian nll (mean, var)", "loss nb nll (mu, theta)",
                         "loss softmax xent", "loss kl normal (mu, logvar)", "loss bce with logits"};
  PetscInt    B = 6, C = 8;
  size_t      n = (size_t)B * C;

  PetscFunctionBeginUser;
  for (int kind = 0; kind < 7; kind++) {
    LossCtx t  = {kind, B, C, Alloc(n), Alloc(n), Alloc(n), {3, 0, -1, 7, 7, 2}, NULL};
    float  *da = Alloc(n), *db = Alloc(n);
    CsCSR   T;
    double  val, ref = 0;
    Fill(t.a, n, 70, -1, 1), Fill(t.b, n, 71, -1, 1), Fill(t.t, n, 72, -1, 1);
    if (kind == 3) { /* positive mean and dispersion, integer counts */
      Fill(t.a, n, 73, 0.5, 5), Fill(t.b, n, 74, 0.5, 3);
      for (size_t i = 0; i < n; i++) t.t[i] = floorf(6 * (float)CsRngUniform(1234, CS_STREAM_DATA, 75, i));
    }
    if (kind == 6) { /* multi-hot labels, logits of both signs and some large */
      Fill(t.a, n, 76, -8, 8);
      for (size_t i = 0; i < n; i++) t.t[i] = t.t[i] > 0 ? 1.0f : 0.0f;
    }
    if (kind == 1) {
      PetscCall(PetscMemzero(&T, sizeof(T)));
      T.nrows = B, T.ncols = C;
      PetscCall(PetscMalloc3(B + 1, &T.indptr, n, &T.indices, n, &T.data));
      T.indptr[0] = 0;
      for (PetscInt i = 0; i < B; i++) {
        T.indptr[i + 1] = T.indptr[i];
        for (PetscInt j = 0; j < C; j++) {
          if ((i + j) % 3 == 0) {
            t.t[i * C + j] = 0;
            continue;
          }
          T.indices[T.indptr[i + 1]] = (int32_t)j, T.data[T.indptr[i + 1]++] = t.t[i * C + j];
        }
      }
      t.T = &T;
    }
    val = LossEval(&t, da, kind >= 2 && kind <= 3 ? db : NULL);
    /* Values against the definitions, in double. */
    for (PetscInt i = 0; i < B; i++) {
      if (kind == 4) {
        double mx = -1e300, se = 0;
        if (t.labels[i] < 0) continue;
        for (PetscInt j = 0; j < C; j++) mx = fmax(mx, t.a[i * C + j]);
        for (PetscInt j = 0; j < C; j++) se += exp(t.a[i * C + j] - mx);
        ref += mx + log(se) - t.a[i * C + t.labels[i]];
        continue;
      }
      for (PetscInt j = 0; j < C; j++) {
        double a = t.a[i * C + j], b = t.b[i * C + j], x = t.t[i * C + j];
        if (kind <= 1) ref += (a - x) * (a - x);
        else if (kind == 2) {
          double var = log1p(exp(b)) + 1e-3;
          ref += 0.5 * (log(var) + (x - a) * (x - a) / var);
        } else if (kind == 3) ref -= lgamma(x + b) - lgamma(b) - lgamma(x + 1) + b * log(b / (b + a)) + x * log(a / (b + a));
        else if (kind == 6) ref -= x * log(1 / (1 + exp(-a))) + (1 - x) * log(1 - 1 / (1 + exp(-a)));
        else if (j < C / 2) {
          double lv = t.a[i * C + C / 2 + j];
          ref += -0.5 * (1 + lv - a * a - exp(lv));
        }
      }
    }
    CS_EXPECT_CLOSE(val, 1.5 / 10 * ref, 1e-5, names[kind]);
    {
      FDVar v[] = {{"a", t.a, da, n}, {"b", t.b, db, n}};
      FDCheck(names[kind], LossOnly, &t, v, kind >= 2 && kind <= 3 ? 2 : 1, 1e-3);
    }
    if (kind == 1) PetscCall(PetscFree3(T.indptr, T.indices, T.data));
    free(t.a), free(t.b), free(t.t), free(da), free(db);
  }
  PetscFunctionReturn(0);
}

/* E[log1p(s X)], X ~ NB(mu, theta), against a direct sum of the pmf written with lgamma. */
static PetscErrorCode TestNBExpectedLog(void)
{
  const double cases[][3] = {{0.05, 0.5, 5}, {0.3, 2, 5}, {3, 1, 0.5}, {20, 10, 0.2}, {150, 3, 0.01}, {499, 50, 0.002}, {2000, 20, 0.001}};
  PetscFunctionBeginUser;
  for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
    double mu = cases[c][0], th = cases[c][1], s = cases[c][2], ref = 0, got = cs_nb_expected_log1p(mu, th, s);
    for (int k = 0; k < 200000; k++) {
      double lp = lgamma(k + th) - lgamma(th) - lgamma(k + 1.0) + th * log(th / (th + mu)) + k * log(mu / (th + mu));
      ref += exp(lp) * log1p(s * k);
    }
    CS_EXPECT_CLOSE(got, ref, mu > 500 ? 2e-3 : 1e-9, "NB expected log1p");
    CS_EXPECT(got < log1p(s * mu), "E[log1p(sX)] below log1p(s mu) (Jensen)");
  }
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------------------------------- MLP and VAE */

typedef struct {
  CsMLP       mlp;
  CsNNParams  P;
  CsNNPass    pass;
  PetscInt    B, out;
  const float *x;
  const CsCSR *X;
  float      *c;
} MLPCtx;

static double MLPLoss(void *p)
{
  MLPCtx      *t = (MLPCtx *)p;
  const float *y;
  PetscCallAbort(PETSC_COMM_SELF, CsMLPForward(t->mlp, &t->pass, t->B, t->x, t->X, &y));
  return Dot(t->c, y, (size_t)t->B * t->out);
}

static PetscErrorCode TestMLP(void)
{
  const PetscInt sizes[] = {9, 7, 6, 4};
  PetscInt       B = 10;

  PetscFunctionBeginUser;
  fd_h = 1e-3;
  for (int variant = 0; variant < 6; variant++) { /* BN + leaky + dropout; LN + gelu; none + relu, sparse; BN eval; BN + gelu + dropout; BN + gelu, none last (GEARS) */
    MLPCtx      t;
    CsMLPConfig cfg;
    float      *x = Alloc((size_t)B * 9), *dx = Alloc((size_t)B * 9), *dy;
    const float *y;
    CsCSR       X;
    const char *what[] = {"mlp batchnorm+leakyrelu+dropout", "mlp layernorm+gelu (linear last)", "mlp none+relu sparse input",
                          "mlp batchnorm+softplus eval", "mlp batchnorm+gelu+dropout", "mlp batchnorm+gelu, last block without activation"};
    PetscCall(PetscMemzero(&t, sizeof(t)));
    CsMLPConfigDefault(&cfg);
    cfg.nlayers = 3, cfg.sizes = sizes;
    if (variant == 0) cfg.dropout = 0.3;
    if (variant == 1) cfg.norm = CS_NN_NORM_LAYER, cfg.act = CS_NN_ACT_GELU, cfg.linear_last = PETSC_TRUE;
    if (variant == 2) cfg.norm = CS_NN_NORM_NONE, cfg.act = CS_NN_ACT_RELU, cfg.sparse_input = PETSC_TRUE, cfg.dropout = 0.1;
    if (variant == 3) cfg.act = CS_NN_ACT_SOFTPLUS;
    if (variant == 4) cfg.act = CS_NN_ACT_GELU, cfg.dropout = 0.25;
    if (variant == 5) cfg.act = CS_NN_ACT_GELU, cfg.last_no_act = PETSC_TRUE; /* smooth: FD steps on BatchNorm outputs cross a ReLU kink */
    PetscCall(CsNNParamsCreate(PETSC_COMM_SELF, &t.P));
    PetscCall(CsMLPCreate(t.P, "m", &cfg, &t.mlp));
    PetscCall(CsNNParamsSetUp(t.P));
    PetscCall(CsNNParamsInitialize(t.P, 99));
    /* Non-trivial norm parameters and running statistics. */
    for (PetscInt k = 0; k < t.P->ntensors; k++)
      if (strstr(t.P->t[k].name, "norm")) Fill(CsNNParamsData(t.P, k), (size_t)t.P->t[k].rows, 80 + (uint64_t)k, 0.5, 1.5);
    PetscCall(CsMLPSetUp(t.mlp, B));
    Fill(x, (size_t)B * 9, 81, -2, 2);
    t.pass.comm = PETSC_COMM_SELF, t.pass.train = variant != 3, t.pass.nglobal = B, t.pass.seed = 5, t.pass.step = 3, t.pass.rstart = 40;
    t.B = B, t.out = 4, t.x = x, t.c = Alloc((size_t)B * 4);
    Fill(t.c, (size_t)B * 4, 82, -1, 1);
    if (variant == 2) {
      PetscCall(PetscMemzero(&X, sizeof(X)));
      X.nrows = B, X.ncols = 9;
      PetscCall(PetscMalloc3(B + 1, &X.indptr, B * 9, &X.indices, B * 9, &X.data));
      X.indptr[0] = 0;
      for (PetscInt i = 0; i < B; i++) {
        X.indptr[i + 1] = X.indptr[i];
        for (PetscInt j = 0; j < 9; j++)
          if ((i * 9 + j) % 3) X.indices[X.indptr[i + 1]] = (int32_t)j, X.data[X.indptr[i + 1]++] = x[i * 9 + j];
      }
      t.X = &X, t.x = NULL;
    }
    PetscCall(CsMLPForward(t.mlp, &t.pass, B, t.x, t.X, &y));
    if (variant == 5) { /* the last block is BatchNorm only: negative outputs pass, every column has mean beta */
      PetscInt neg = 0;
      for (PetscInt i = 0; i < B * 4; i++) neg += y[i] < 0;
      CS_EXPECT(neg > 0, "mlp without a last activation keeps negative outputs");
    }
    dy = CsMLPGetOutputGrad(t.mlp);
    for (PetscInt i = 0; i < B * 4; i++) dy[i] = t.c[i];
    PetscCall(CsNNParamsZeroGrad(t.P));
    PetscCall(CsMLPBackward(t.mlp, &t.pass, B, variant == 2 ? NULL : dx));
    {
      FDVar v[2] = {{"params", t.P->p, t.P->g, t.P->n}, {"x", x, dx, (size_t)B * 9}};
      FDCheck(what[variant], MLPLoss, &t, v, variant == 2 ? 1 : 2, 5e-3);

    }
    if (variant == 2) PetscCall(PetscFree3(X.indptr, X.indices, X.data));
    PetscCall(CsMLPDestroy(&t.mlp));
    PetscCall(CsNNParamsDestroy(&t.P));
    free(x), free(dx), free(t.c);
  }
  PetscFunctionReturn(0);
}

typedef struct {
  CsVAE        vae;
  CsNNPass     pass;
  PetscInt     B;
  const float *x;
  const CsCSR *X;
  float       *gsave;
} VAECtx;

static double VAELoss(void *p)
{
  VAECtx   *t = (VAECtx *)p;
  CsVAELoss l;
  PetscCallAbort(PETSC_COMM_SELF, CsVAETrainStep(t->vae, &t->pass, t->B, t->x, t->X, &l));
  return l.total;
}

static PetscErrorCode TestVAE(void)
{
  CsVAEConfig cfg;
  VAECtx      t;
  PetscInt    B = 12, G = 10;
  float      *x = Alloc((size_t)B * G), *g;
  CsVAELoss   l;

  PetscFunctionBeginUser;
  CsVAEConfigDefault(&cfg);
  cfg.ngenes = G, cfg.hidden = 9, cfg.nhidden = 2, cfg.latent = 3, cfg.kl_weight = 0.5;
  PetscCall(PetscMemzero(&t, sizeof(t)));
  PetscCall(CsVAECreate(PETSC_COMM_SELF, &cfg, B, 7, &t.vae));
  Fill(x, (size_t)B * G, 90, 0, 2);
  t.pass.comm = PETSC_COMM_SELF, t.pass.train = PETSC_TRUE, t.pass.nglobal = B, t.pass.seed = 11, t.pass.step = 2;
  t.B = B, t.x = x;
  /* BatchNorm in train mode, dropout 0.2 with the fixed mask of (seed, step), fixed noise: a deterministic loss. */
  PetscCall(CsNNParamsZeroGrad(t.vae->P));
  PetscCall(CsVAETrainStep(t.vae, &t.pass, B, x, NULL, &l));
  CS_EXPECT(l.rec > 0 && l.kl > 0 && fabs(l.total - (l.rec + 0.5 * l.kl)) < 1e-12 * l.total, "VAE loss parts");
  /* The noise is CsRngNormal2 keyed by (seed, step, cell, component), as documented (the generator draws the
     Philox blocks 16 at a time). */
  for (PetscInt i = 0; i < B; i++)
    for (PetscInt k = 0; k < cfg.latent; k++) {
      double z[2];
      CsRngNormal2(11, CS_STREAM_NOISE, 2, ((uint64_t)i << 24) | (uint64_t)(k / 2), z);
      CS_EXPECT(t.vae->eps[i * cfg.latent + k] == (float)z[k % 2], "VAE noise of cell %" PetscInt_FMT " component %" PetscInt_FMT, i, k);
    }
  g = Alloc(t.vae->P->n);
  memcpy(g, t.vae->P->g, sizeof(float) * t.vae->P->n);
  {
    FDVar v[] = {{"params", t.vae->P->p, g, t.vae->P->n}};
    FDCheck("vae step (all parameters)", VAELoss, &t, v, 1, 5e-3);
  }
  free(g), free(x);
  PetscCall(CsVAEDestroy(&t.vae));
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------ per-gene layers (GEARS), autofocus loss */

/* The fused [cells, genes, d] block of GEARS: H = BN(base[g] + pe[b]) over the B G rows, relu, then the per-gene
   readout o[b,g] = relu(H)[b,g,:] . w[g] + bias[g]; the scalar is c . o. */
typedef struct {
  PetscInt B, G, d;
  float   *base, *pe, *gam, *bet, *rm, *rv, *w, *bias, *c, *H, *Hbn, *xhat, *rstd, *R, *o;
  double  *work;
  CsNNPass pass;
} GeneCtx;

static double GeneLoss(void *p)
{
  GeneCtx *t = (GeneCtx *)p;
  size_t   n = (size_t)t->B * t->G * t->d;
  cs_gene_broadcast_forward(t->H, t->base, t->pe, t->B, t->G, t->d);
  PetscCallAbort(PETSC_COMM_SELF, cs_batchnorm_forward(t->Hbn, t->xhat, t->rstd, t->H, t->gam, t->bet, t->rm, t->rv, t->B * t->G, t->d, 0.1, 1e-5,
                                                       &t->pass, t->work));
  cs_activation_forward(CS_NN_ACT_RELU, t->R, t->Hbn, n);
  cs_gene_readout_forward(t->o, t->R, t->w, t->bias, t->B, t->G, t->d);
  return Dot(t->c, t->o, (size_t)t->B * t->G);
}

static PetscErrorCode TestGeneLayers(void)
{
  GeneCtx t;
  size_t  BG = 15, n = 60;
  float  *dbase, *dpe, *dg, *db, *dw, *dbias, *dR, *dHbn, *dH;

  PetscFunctionBeginUser;
  fd_h = 1e-3;
  PetscCall(PetscMemzero(&t, sizeof(t)));
  t.B = 3, t.G = 5, t.d = 4;
  t.base = Alloc(20), t.pe = Alloc(12), t.gam = Alloc(4), t.bet = Alloc(4), t.rm = Alloc(4), t.rv = Alloc(4), t.w = Alloc(20), t.bias = Alloc(5);
  t.c = Alloc(BG), t.H = Alloc(n), t.Hbn = Alloc(n), t.xhat = Alloc(n), t.rstd = Alloc(4), t.R = Alloc(n), t.o = Alloc(BG);
  t.work = (double *)calloc(16, sizeof(double));
  dbase = Alloc(20), dpe = Alloc(12), dg = Alloc(4), db = Alloc(4), dw = Alloc(20), dbias = Alloc(5), dR = Alloc(n), dHbn = Alloc(n), dH = Alloc(n);
  Fill(t.base, 20, 301, -1, 1), Fill(t.pe, 12, 302, -1, 1), Fill(t.gam, 4, 303, 0.5, 1.5), Fill(t.bet, 4, 304, -0.5, 0.5);
  Fill(t.w, 20, 305, -1, 1), Fill(t.bias, 5, 306, -1, 1), Fill(t.c, BG, 307, -1, 1);
  for (int k = 0; k < 4; k++) t.rv[k] = 1;
  t.pass.comm = PETSC_COMM_SELF, t.pass.train = PETSC_TRUE, t.pass.nglobal = (PetscInt)BG;
  (void)GeneLoss(&t);
  /* Forward against the definitions. */
  for (int b = 0; b < 3; b++)
    for (int g = 0; g < 5; g++) {
      double s = t.bias[g];
      for (int k = 0; k < 4; k++) {
        CS_EXPECT_CLOSE(t.H[(b * 5 + g) * 4 + k], t.base[g * 4 + k] + t.pe[b * 4 + k], 1e-6, "gene broadcast forward");
        s += (double)t.R[(b * 5 + g) * 4 + k] * t.w[g * 4 + k];
      }
      CS_EXPECT_CLOSE(t.o[b * 5 + g], s, 1e-5, "per-gene readout forward");
    }
  cs_gene_readout_backward(dR, dw, dbias, t.c, t.R, t.w, 3, 5, 4);
  cs_activation_backward(CS_NN_ACT_RELU, dHbn, dR, t.Hbn, n);
  PetscCall(cs_batchnorm_backward(dH, dg, db, dHbn, t.xhat, t.rstd, t.gam, (PetscInt)BG, 4, &t.pass, t.work));
  cs_gene_broadcast_backward(dbase, dpe, dH, 3, 5, 4);
  {
    FDVar v[] = {{"base", t.base, dbase, 20}, {"pe", t.pe, dpe, 12}, {"gamma", t.gam, dg, 4}, {"beta", t.bet, db, 4}, {"w", t.w, dw, 20}, {"bias", t.bias, dbias, 5}};
    FDCheck("gears cell block: broadcast + batchnorm + relu + per-gene readout", GeneLoss, &t, v, 6, 5e-3);
  }
  /* Row renorm: rows above the norm are scaled to it, the others untouched. */
  {
    float r[6] = {3, 4, 0, 0.3f, 0.4f, 0};
    cs_renorm_rows(r, 2, 3, 1.0);
    CS_EXPECT_CLOSE(sqrt((double)r[0] * r[0] + (double)r[1] * r[1]), 1.0, 1e-6, "renorm: a long row gets norm 1");
    CS_EXPECT(r[3] == 0.3f && r[4] == 0.4f, "renorm: a short row is unchanged");
  }
  free(t.base), free(t.pe), free(t.gam), free(t.bet), free(t.rm), free(t.rv), free(t.w), free(t.bias), free(t.c), free(t.H), free(t.Hbn), free(t.xhat);
  free(t.rstd), free(t.R), free(t.o), free(t.work), free(dbase), free(dpe), free(dg), free(db), free(dw), free(dbias), free(dR), free(dHbn), free(dH);
  PetscFunctionReturn(0);
}

typedef struct {
  float   *pred, *target, *ref;
  uint8_t *mask;
  double   roww[3], gamma, lambda;
} AFCtx;

static double AFLoss(void *p)
{
  AFCtx *t = (AFCtx *)p;
  return cs_autofocus_loss(NULL, t->pred, t->target, t->ref, t->mask, t->roww, 3, 4, t->gamma, t->lambda);
}

static PetscErrorCode TestAutofocus(void)
{
  AFCtx   t;
  float   dp[12] = {0};
  uint8_t mask[12];
  double  want = 0;

  PetscFunctionBeginUser;
  fd_h = 1e-3;
  t.pred = Alloc(12), t.target = Alloc(12), t.ref = Alloc(4), t.mask = mask;
  Fill(t.target, 12, 401, -1, 1), Fill(t.ref, 4, 402, -1, 1);
  for (int i = 0; i < 12; i++) { /* predictions away from the target and from the reference (sign terms constant under FD) */
    t.pred[i] = t.target[i] + (i % 2 ? 0.3f : -0.4f) * (1 + i % 3);
    if (fabsf(t.pred[i] - t.ref[i % 4]) < 0.05f) t.pred[i] += 0.1f;
    mask[i] = (uint8_t)(i % 5 != 0);
  }
  t.roww[0] = 0.5, t.roww[1] = 0.25, t.roww[2] = 1.0 / 3, t.gamma = 2, t.lambda = 0.1;
  for (int b = 0; b < 3; b++)
    for (int j = 0; j < 4; j++) {
      int    i  = b * 4 + j;
      double e  = (double)t.pred[i] - t.target[i];
      double sy = (t.target[i] > t.ref[j]) - (t.target[i] < t.ref[j]), sp = (t.pred[i] > t.ref[j]) - (t.pred[i] < t.ref[j]);
      if (mask[i]) want += t.roww[b] * (e * e * e * e + 0.1 * (sy - sp) * (sy - sp));
    }
  CS_EXPECT_CLOSE(AFLoss(&t), want, 1e-9, "autofocus loss = its definition (power 4, direction term)");
  (void)cs_autofocus_loss(dp, t.pred, t.target, t.ref, t.mask, t.roww, 3, 4, t.gamma, t.lambda);
  {
    FDVar v[] = {{"pred", t.pred, dp, 12}};
    FDCheck("autofocus loss (gamma 2, lambda 0.1, masked genes)", AFLoss, &t, v, 1, 2e-3);
  }
  t.gamma = 0.5; /* a non-integer power: |e|^2.5 */
  memset(dp, 0, sizeof(dp));
  (void)cs_autofocus_loss(dp, t.pred, t.target, NULL, NULL, t.roww, 3, 4, t.gamma, 0);
  t.ref = NULL, t.mask = NULL, t.lambda = 0;
  {
    FDVar v[] = {{"pred", t.pred, dp, 12}};
    FDCheck("autofocus loss (gamma 0.5, all genes)", AFLoss, &t, v, 1, 2e-3);
  }
  free(t.pred), free(t.target);
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------------------------------------- ICNN */

typedef struct {
  CsICNN   net;
  PetscInt B, d;
  float   *x, *c, *cy, *u, *y, *T;
} ICNNCtx;

/* sum_i cy_i g(x_i | c_i) */
static double ICNNLoss(void *p)
{
  ICNNCtx *t = (ICNNCtx *)p;
  PetscCallAbort(PETSC_COMM_SELF, CsICNNForward(t->net, t->B, t->x, t->c, t->y));
  return Dot(t->cy, t->y, (size_t)t->B);
}

/* Phi = sum_i <u_i, grad_x g(x_i | c_i)>, the gradient from CsICNNBackward. */
static double ICNNPhi(void *p)
{
  ICNNCtx *t = (ICNNCtx *)p;
  PetscCallAbort(PETSC_COMM_SELF, CsICNNForward(t->net, t->B, t->x, t->c, t->y));
  memset(t->T, 0, sizeof(float) * (size_t)t->B * t->d);
  PetscCallAbort(PETSC_COMM_SELF, CsICNNBackward(t->net, t->x, NULL, t->T, NULL, PETSC_FALSE));
  return Dot(t->u, t->T, (size_t)t->B * t->d);
}

static PetscErrorCode TestICNN(void)
{
  ICNNCtx    t;
  CsNNParams P;
  PetscInt   B = 7, d = 5, W = 6, depth = 3, U = depth * W + 1;
  float     *dx, *dc, *g;

  PetscFunctionBeginUser;
  fd_h = 1e-3;
  PetscCall(PetscMemzero(&t, sizeof(t)));
  PetscCall(CsNNParamsCreate(PETSC_COMM_SELF, &P));
  PetscCall(CsICNNCreate(P, "g", d, W, depth, &t.net));
  PetscCall(CsNNParamsSetUp(P));
  PetscCall(CsICNNSetUp(t.net, B));
  CsICNNInitialize(t.net, 3);
  for (PetscInt k = 0; k < P->ntensors; k++) {
    const float *w = CsNNParamsData(P, k);
    CS_EXPECT(strstr(P->t[k].name, "bias") ? w[0] == 0 : (w[0] >= 0 && w[0] < 0.1f), "ICNN initialisation of %s", P->t[k].name);
  }
  /* Weights of both signs (the clamp is the trainer's business), so that every path is exercised. */
  Fill(P->p, P->n, 100, -0.6, 0.6);
  for (PetscInt k = 0; k < P->ntensors; k++) /* keep the padding 0 */
    for (size_t i = (size_t)P->t[k].rows * P->t[k].cols; i < ((size_t)P->t[k].rows * P->t[k].cols + 15) / 16 * 16; i++) P->p[P->t[k].offset + i] = 0;
  t.B = B, t.d = d;
  t.x = Alloc((size_t)B * d), t.c = Alloc((size_t)B * U), t.cy = Alloc(B), t.u = Alloc((size_t)B * d), t.y = Alloc(B), t.T = Alloc((size_t)B * d);
  dx = Alloc((size_t)B * d), dc = Alloc((size_t)B * U), g = Alloc(P->n);
  Fill(t.x, (size_t)B * d, 101, -1.5, 1.5), Fill(t.c, (size_t)B * U, 102, -0.5, 0.5), Fill(t.cy, B, 103, -1, 1), Fill(t.u, (size_t)B * d, 104, -1, 1);
  /* First order: parameters, input (the transport map) and conditioning. */
  PetscCall(CsICNNForward(t.net, B, t.x, t.c, t.y));
  PetscCall(CsNNParamsZeroGrad(P));
  PetscCall(CsICNNBackward(t.net, t.x, t.cy, dx, dc, PETSC_TRUE));
  memcpy(g, P->g, sizeof(float) * P->n);
  {
    FDVar v[] = {{"params", P->p, g, P->n}, {"x", t.x, dx, (size_t)B * d}, {"c", t.c, dc, (size_t)B * U}};
    FDCheck("icnn g(x|c)", ICNNLoss, &t, v, 3, 5e-3);
  }
  /* Second order: the gradient of <u, grad_x g> w.r.t. the parameters and c. */
  memset(dc, 0, sizeof(float) * (size_t)B * U);
  PetscCall(CsICNNForward(t.net, B, t.x, t.c, t.y));
  PetscCall(CsNNParamsZeroGrad(P));
  PetscCall(CsICNNTransportBackward(t.net, t.x, t.u, dc));
  memcpy(g, P->g, sizeof(float) * P->n);
  {
    FDVar v[] = {{"params", P->p, g, P->n}, {"c", t.c, dc, (size_t)W}}; /* only layer 0 of c reaches Phi: dc's other entries must be 0 */
    FDCheck("icnn <u, grad_x g> (gradient of the gradient)", ICNNPhi, &t, v, 2, 5e-3);
    for (PetscInt i = 0; i < B; i++)
      for (PetscInt j = W; j < U; j++) CS_EXPECT(dc[(size_t)i * U + j] == 0, "icnn: Phi does not depend on the biases of layers >= 1");
  }
  /* Convexity with non-negative W: g((x1 + x2) / 2) <= (g(x1) + g(x2)) / 2 along random chords. */
  CsICNNClamp(t.net);
  {
    float *x2 = Alloc((size_t)B * d), *xm = Alloc((size_t)B * d), y1[7], y2[7], ym[7];
    Fill(x2, (size_t)B * d, 105, -3, 3);
    for (PetscInt i = 0; i < B * d; i++) xm[i] = 0.5f * (t.x[i] + x2[i]);
    PetscCall(CsICNNForward(t.net, B, t.x, t.c, y1));
    PetscCall(CsICNNForward(t.net, B, x2, t.c, y2));
    PetscCall(CsICNNForward(t.net, B, xm, t.c, ym));
    for (PetscInt i = 0; i < B; i++) CS_EXPECT(ym[i] <= 0.5f * (y1[i] + y2[i]) + 1e-5f, "icnn: convex in x after the clamp (row %" PetscInt_FMT ")", i);
    free(x2), free(xm);
  }
  free(t.x), free(t.c), free(t.cy), free(t.u), free(t.y), free(t.T), free(dx), free(dc), free(g);
  PetscCall(CsICNNDestroy(&t.net));
  PetscCall(CsNNParamsDestroy(&P));
  PetscFunctionReturn(0);
}

static PetscErrorCode Body(void)
{
  PetscFunctionBeginUser;
  PetscCall(TestLinear());
  PetscCall(TestSparseWide());
  PetscCall(TestBias());
  PetscCall(TestActivations());
  PetscCall(TestDropout());
  PetscCall(TestNorms());
  PetscCall(TestEmbeddingConcat());
  PetscCall(TestDoseEmbedding());
  PetscCall(TestLosses());
  PetscCall(TestNBExpectedLog());
  PetscCall(TestMLP());
  PetscCall(TestVAE());
  PetscCall(TestICNN());
  PetscCall(TestGeneLayers());
  PetscCall(TestAutofocus());
  PetscFunctionReturn(0);
}

int main(int argc, char **argv) { return CsTestMain(argc, argv, Body); }
