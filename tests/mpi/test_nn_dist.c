/* A global minibatch split over 1, 2 or 3 ranks must compute what one rank computes on the whole batch:
   synchronised BatchNorm (outputs, running statistics, input and parameter gradients), dropout masks keyed by
   global cell, an MLP block stack, and the whole VAE step (loss, reduced gradients, running statistics) with
   dense and CSR input and both gradient reductions. The reference is the same computation on PETSC_COMM_SELF over
   all rows, done on every rank; the finite-difference test (unit/test_nn_grad) checks that one independently. */
#include "testing.h"
#include <cellshift/nn.h>
#include <cellshift/rng.h>
#include <string.h>

static PetscMPIInt rank, size;

/* Rows [r0, r0 + n) of a global batch of N rows over the ranks (the first N % size ranks get one more). */
static void Block(PetscInt N, PetscInt *r0, PetscInt *n)
{
  *n  = N / size + (rank < N % size);
  *r0 = (N / size) * rank + PetscMin(rank, N % size);
}

static void Fill(float *x, size_t n, uint64_t key, double lo, double hi)
{
  for (size_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * CsRngUniform(4321, CS_STREAM_DATA, key, i));
}

/* ||a - b|| / max(||b||, tiny) over n entries. */
static double RelErr(const float *a, const float *b, size_t n)
{
  double e = 0, r = 0;
  for (size_t i = 0; i < n; i++) e += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), r += (double)b[i] * b[i];
  return sqrt(e) / fmax(sqrt(r), 1e-30);
}

static PetscErrorCode TestBatchNorm(PetscInt N)
{
  PetscInt C = 6, r0, n;
  size_t   nn = (size_t)N * C;
  float   *x = malloc(nn * 4), *dy = malloc(nn * 4), *gamma = malloc(C * 4), *beta = malloc(C * 4);
  float   *y1 = malloc(nn * 4), *xh1 = malloc(nn * 4), *rs1 = malloc(C * 4), *rm1 = malloc(C * 4), *rv1 = malloc(C * 4);
  float   *dx1 = calloc(nn, 4), *dg1 = calloc(C, 4), *db1 = calloc(C, 4);
  float   *y2 = malloc(nn * 4 + 4), *xh2 = malloc(nn * 4 + 4), *rs2 = malloc(C * 4), *rm2 = malloc(C * 4), *rv2 = malloc(C * 4);
  float   *dx2 = calloc(nn + 1, 4), *dg2 = calloc(C, 4), *db2 = calloc(C, 4);
  double   work[24];
  CsNNPass p1, p2;

  PetscFunctionBeginUser;
  Block(N, &r0, &n);
  Fill(x, nn, 1, -1, 3), Fill(dy, nn, 2, -1, 1), Fill(gamma, C, 3, 0.5, 1.5), Fill(beta, C, 4, -1, 1);
  Fill(rm1, C, 5, -1, 1), Fill(rv1, C, 6, 0.5, 2);
  memcpy(rm2, rm1, C * 4), memcpy(rv2, rv1, C * 4);
  PetscCall(PetscMemzero(&p1, sizeof(p1)));
  p1.comm = PETSC_COMM_SELF, p1.train = PETSC_TRUE, p1.nglobal = N;
  p2 = p1, p2.comm = PETSC_COMM_WORLD;
  /* Whole batch on one rank, then this rank's block on all ranks. */
  PetscCall(cs_batchnorm_forward(y1, xh1, rs1, x, gamma, beta, rm1, rv1, N, C, 0.1, 1e-5, &p1, work));
  PetscCall(cs_batchnorm_backward(dx1, dg1, db1, dy, xh1, rs1, gamma, N, C, &p1, work));
  PetscCall(cs_batchnorm_forward(y2, xh2, rs2, x + r0 * C, gamma, beta, rm2, rv2, n, C, 0.1, 1e-5, &p2, work));
  PetscCall(cs_batchnorm_backward(dx2, dg2, db2, dy + r0 * C, xh2, rs2, gamma, n, C, &p2, work));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, dg2, (PetscMPIInt)C, MPI_FLOAT, MPI_SUM, PETSC_COMM_WORLD));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, db2, (PetscMPIInt)C, MPI_FLOAT, MPI_SUM, PETSC_COMM_WORLD));
  if (n) CS_EXPECT(RelErr(y2, y1 + r0 * C, (size_t)n * C) < 1e-6, "BatchNorm output (N %" PetscInt_FMT ")", N);
  if (n) CS_EXPECT(RelErr(dx2, dx1 + r0 * C, (size_t)n * C) < 1e-5, "BatchNorm input gradient (N %" PetscInt_FMT ")", N);
  CS_EXPECT(RelErr(rm2, rm1, C) < 1e-6 && RelErr(rv2, rv1, C) < 1e-6, "BatchNorm running statistics (N %" PetscInt_FMT ")", N);
  CS_EXPECT(RelErr(dg2, dg1, C) < 1e-5 && RelErr(db2, db1, C) < 1e-5, "BatchNorm gamma/beta gradients (N %" PetscInt_FMT ")", N);
  free(x), free(dy), free(gamma), free(beta), free(y1), free(xh1), free(rs1), free(rm1), free(rv1), free(dx1), free(dg1), free(db1);
  free(y2), free(xh2), free(rs2), free(rm2), free(rv2), free(dx2), free(dg2), free(db2);
  PetscFunctionReturn(0);
}

static PetscErrorCode TestDropout(void)
{
  PetscInt N = 11, C = 150, r0, n;
  size_t   nn = (size_t)N * C;
  float   *x = malloc(nn * 4), *y1 = malloc(nn * 4), *m1 = malloc(nn * 4), *y2 = malloc(nn * 4), *m2 = malloc(nn * 4);
  int64_t  cells[11];
  CsNNPass p;

  PetscFunctionBeginUser;
  Block(N, &r0, &n);
  for (PetscInt i = 0; i < N; i++) cells[i] = 7 * i + 3; /* global cell ids, not positions */
  Fill(x, nn, 10, -1, 1);
  PetscCall(PetscMemzero(&p, sizeof(p)));
  p.comm = PETSC_COMM_SELF, p.train = PETSC_TRUE, p.nglobal = N, p.seed = 8, p.step = 4, p.cell = cells;
  cs_dropout_forward(y1, m1, x, N, C, 0.25, &p, 3);
  p.cell = cells + r0;
  cs_dropout_forward(y2, m2, x + r0 * C, n, C, 0.25, &p, 3);
  CS_EXPECT(!memcmp(m2, m1 + r0 * C, sizeof(float) * (size_t)n * C) && !memcmp(y2, y1 + r0 * C, sizeof(float) * (size_t)n * C),
            "dropout masks depend on the split");
  free(x), free(y1), free(m1), free(y2), free(m2);
  PetscFunctionReturn(0);
}

static PetscErrorCode TestMLP(void)
{
  const PetscInt sizes[] = {8, 12, 10, 5};
  PetscInt       N = 14, r0, n;
  CsMLPConfig    cfg;
  CsNNParams     P1, P2;
  CsMLP          m1, m2;
  float         *x = malloc(sizeof(float) * N * 8), *c = malloc(sizeof(float) * N * 5), *dx1 = calloc(N * 8, 4), *dx2 = calloc(N * 8, 4);
  const float   *y1, *y2;
  CsNNPass       p1, p2;

  PetscFunctionBeginUser;
  Block(N, &r0, &n);
  CsMLPConfigDefault(&cfg);
  cfg.nlayers = 3, cfg.sizes = sizes, cfg.dropout = 0.2;
  PetscCall(CsNNParamsCreate(PETSC_COMM_SELF, &P1));
  PetscCall(CsNNParamsCreate(PETSC_COMM_WORLD, &P2));
  PetscCall(CsMLPCreate(P1, "m", &cfg, &m1));
  PetscCall(CsMLPCreate(P2, "m", &cfg, &m2));
  PetscCall(CsNNParamsSetUp(P1));
  PetscCall(CsNNParamsSetUp(P2));
  PetscCall(CsNNParamsInitialize(P1, 3));
  PetscCall(CsNNParamsInitialize(P2, 3));
  PetscCall(CsMLPSetUp(m1, N));
  PetscCall(CsMLPSetUp(m2, N));
  Fill(x, (size_t)N * 8, 20, -2, 2), Fill(c, (size_t)N * 5, 21, -1, 1);
  PetscCall(PetscMemzero(&p1, sizeof(p1)));
  p1.comm = PETSC_COMM_SELF, p1.train = PETSC_TRUE, p1.nglobal = N, p1.seed = 9, p1.step = 1, p1.rstart = 100;
  p2 = p1, p2.comm = PETSC_COMM_WORLD, p2.rstart = 100 + r0;
  PetscCall(CsMLPForward(m1, &p1, N, x, NULL, &y1));
  PetscCall(CsMLPForward(m2, &p2, n, x + r0 * 8, NULL, &y2));
  if (n) CS_EXPECT(RelErr(y2, y1 + r0 * 5, (size_t)n * 5) < 1e-5, "MLP outputs depend on the split (%g)", RelErr(y2, y1 + r0 * 5, (size_t)n * 5));
  memcpy(CsMLPGetOutputGrad(m1), c, sizeof(float) * N * 5);
  memcpy(CsMLPGetOutputGrad(m2), c + r0 * 5, sizeof(float) * n * 5);
  PetscCall(CsMLPBackward(m1, &p1, N, dx1));
  PetscCall(CsMLPBackward(m2, &p2, n, dx2));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, P2->g, (PetscMPIInt)P2->n, MPI_FLOAT, MPI_SUM, PETSC_COMM_WORLD));
  CS_EXPECT(RelErr(P2->g, P1->g, P1->n) < 1e-5, "MLP parameter gradients depend on the split (%g)", RelErr(P2->g, P1->g, P1->n));
  if (n) CS_EXPECT(RelErr(dx2, dx1 + r0 * 8, (size_t)n * 8) < 1e-5, "MLP input gradients depend on the split");
  CS_EXPECT(RelErr(P2->buf, P1->buf, P1->nbuf) < 1e-6, "MLP running statistics depend on the split");
  PetscCall(CsMLPDestroy(&m1));
  PetscCall(CsMLPDestroy(&m2));
  PetscCall(CsNNParamsDestroy(&P1));
  PetscCall(CsNNParamsDestroy(&P2));
  free(x), free(c), free(dx1), free(dx2);
  PetscFunctionReturn(0);
}

/* The VAE step, dense or CSR input, with a blocking or bucketed reduction. */
static PetscErrorCode TestVAE(PetscBool sparse, CsNNReduceType rtype)
{
  PetscInt    N = 19, G = 30, r0, n;
  CsVAEConfig cfg;
  CsVAE       v1, v2;
  CsNNReducer red;
  CsNNPass    p1, p2;
  CsVAELoss   l1, l2;
  float      *x = calloc((size_t)N * G, sizeof(float));
  CsCSR       X1, X2;

  PetscFunctionBeginUser;
  Block(N, &r0, &n);
  /* About 30% non-zeros, the same values densely and as CSR. */
  PetscCall(PetscMemzero(&X1, sizeof(X1)));
  X1.nrows = N, X1.ncols = G;
  PetscCall(PetscMalloc3(N + 1, &X1.indptr, N * G, &X1.indices, N * G, &X1.data));
  X1.indptr[0] = 0;
  for (PetscInt i = 0; i < N; i++) {
    X1.indptr[i + 1] = X1.indptr[i];
    for (PetscInt j = 0; j < G; j++)
      if (CsRngUniform(4321, CS_STREAM_DATA, 30, (uint64_t)(i * G + j)) < 0.3) {
        x[i * G + j]               = (float)(3 * CsRngUniform(4321, CS_STREAM_DATA, 31, (uint64_t)(i * G + j)));
        X1.indices[X1.indptr[i + 1]] = (int32_t)j, X1.data[X1.indptr[i + 1]++] = x[i * G + j];
      }
  }
  X2 = X1, X2.nrows = n, X2.indptr = X1.indptr + r0; /* a row view with absolute offsets */
  CsVAEConfigDefault(&cfg);
  cfg.ngenes = G, cfg.hidden = 16, cfg.latent = 4, cfg.sparse_input = sparse;
  PetscCall(CsVAECreate(PETSC_COMM_SELF, &cfg, N, 5, &v1));
  PetscCall(CsVAECreate(PETSC_COMM_WORLD, &cfg, PetscMax(n, 1), 5, &v2));
  PetscCall(CsNNReducerCreate(PETSC_COMM_WORLD, v2->P, &red));
  PetscCall(CsNNReducerSetType(red, rtype, 1000)); /* small buckets: several per step */
  PetscCall(PetscMemzero(&p1, sizeof(p1)));
  p1.comm = PETSC_COMM_SELF, p1.train = PETSC_TRUE, p1.nglobal = N, p1.seed = 21, p1.step = 0;
  p2 = p1, p2.comm = PETSC_COMM_WORLD, p2.rstart = r0, p2.reducer = red;
  for (int step = 0; step < 2; step++) {
    PetscCall(CsNNParamsZeroGrad(v1->P));
    PetscCall(CsNNParamsZeroGrad(v2->P));
    PetscCall(CsVAETrainStep(v1, &p1, N, sparse ? NULL : x, sparse ? &X1 : NULL, &l1));
    PetscCall(CsNNReducerBegin(red));
    PetscCall(CsVAETrainStep(v2, &p2, n, sparse ? NULL : x + r0 * G, sparse ? &X2 : NULL, &l2));
    PetscCall(CsNNReducerEnd(red));
    CS_EXPECT_CLOSE(l2.total, l1.total, 1e-6, "VAE loss");
    CS_EXPECT_CLOSE(l2.kl, l1.kl, 1e-6, "VAE KL");
    CS_EXPECT(RelErr(v2->P->g, v1->P->g, v1->P->n) < 1e-5, "VAE reduced gradient (%s input, %s reduction, step %d): rel. error %g",
              sparse ? "CSR" : "dense", CsNNReduceTypes[rtype], step, RelErr(v2->P->g, v1->P->g, v1->P->n));
    CS_EXPECT(RelErr(v2->P->buf, v1->P->buf, v1->P->nbuf) < 1e-6, "VAE running statistics");
    /* The same deterministic update on both, so that the second step starts from moved parameters. */
    for (size_t k = 0; k < v1->P->n; k++) v1->P->p[k] -= 0.05f * v1->P->g[k], v2->P->p[k] -= 0.05f * v1->P->g[k];
    p1.step++, p2.step++;
  }
  /* Eval-mode encode and decode of this rank's rows agree with the whole-batch ones. */
  {
    float *mu1 = malloc(sizeof(float) * N * 4), *mu2 = malloc(sizeof(float) * N * 4 + 4);
    float *r1 = malloc(sizeof(float) * N * G), *r2 = malloc(sizeof(float) * N * G + 4);
    PetscCall(CsVAEEncode(v1, N, sparse ? NULL : x, sparse ? &X1 : NULL, mu1));
    PetscCall(CsVAEEncode(v2, n, sparse ? NULL : x + r0 * G, sparse ? &X2 : NULL, mu2));
    PetscCall(CsVAEDecode(v1, N, mu1, r1));
    PetscCall(CsVAEDecode(v2, n, mu2, r2));
    if (n) CS_EXPECT(RelErr(mu2, mu1 + r0 * 4, (size_t)n * 4) < 1e-5 && RelErr(r2, r1 + r0 * G, (size_t)n * G) < 1e-5, "VAE encode/decode");
    free(mu1), free(mu2), free(r1), free(r2);
  }
  PetscCall(CsNNReducerDestroy(&red));
  PetscCall(CsVAEDestroy(&v1));
  PetscCall(CsVAEDestroy(&v2));
  PetscCall(PetscFree3(X1.indptr, X1.indices, X1.data));
  free(x);
  PetscFunctionReturn(0);
}

/* Adam after a blocking and after a sharded reduction against Adam on the summed gradient on one rank. The
   gradients are small dyadic numbers, so every summation order gives the exact sum and the results must agree
   bit for bit (with clipping, the norm is a sum in another order: then to rounding). */
static PetscErrorCode TestShardedAdam(double clip, PetscInt big)
{
  CsNNParams  P[3];
  CsNNOptim   O[3];
  CsNNReducer R[2];

  PetscFunctionBeginUser;
  for (int k = 0; k < 3; k++) {
    PetscCall(CsNNParamsCreate(k < 2 ? PETSC_COMM_WORLD : PETSC_COMM_SELF, &P[k]));
    PetscCall(CsNNParamsAdd(P[k], "a", 37, 3, CS_NN_INIT_FANIN, 37, NULL));
    PetscCall(CsNNParamsAdd(P[k], "b", 50, 1, CS_NN_INIT_FANIN, 37, NULL));
    PetscCall(CsNNParamsAdd(P[k], "c", 9, 1, CS_NN_INIT_ONE, 0, NULL));
    if (big) PetscCall(CsNNParamsAdd(P[k], "d", big, 1, CS_NN_INIT_FANIN, 100, NULL)); /* slices large enough for the pairwise exchange */
    PetscCall(CsNNParamsSetUp(P[k]));
    PetscCall(CsNNParamsInitialize(P[k], 4));
    PetscCall(CsNNOptimCreate(P[k]->comm, &O[k]));
    O[k]->clip = clip, O[k]->lr = 0.01;
    PetscCall(CsNNOptimSetUp(O[k], P[k]->n));
    if (k < 2) {
      PetscCall(CsNNReducerCreate(PETSC_COMM_WORLD, P[k], &R[k]));
      PetscCall(CsNNReducerSetType(R[k], k ? CS_NN_REDUCE_SHARDED : CS_NN_REDUCE_BLOCKING, 0));
      PetscCall(CsNNOptimSetReducer(O[k], R[k]));
    }
  }
  for (int step = 1; step <= 3; step++) {
    for (size_t i = 0; i < P[0]->n; i++) {
      float u = (float)((int)((i * (size_t)step) % 7) - 3) / 8;
      P[0]->g[i] = P[1]->g[i] = (float)(rank + 1) * u;
      P[2]->g[i]              = (float)(size * (size + 1) / 2) * u;
    }
    for (int k = 0; k < 2; k++) {
      PetscCall(CsNNReducerBegin(R[k]));
      PetscCall(CsNNReducerEnd(R[k]));
    }
    for (int k = 0; k < 3; k++) PetscCall(CsNNOptimStep(O[k], P[k]));
    for (int k = 0; k < 2; k++) {
      if (clip == 0) CS_EXPECT(!memcmp(P[k]->p, P[2]->p, sizeof(float) * P[2]->n), "%s Adam differs from one rank", k ? "sharded" : "blocking");
      else CS_EXPECT(RelErr(P[k]->p, P[2]->p, P[2]->n) < 1e-6, "%s Adam with clipping differs from one rank", k ? "sharded" : "blocking");
      for (size_t i = 0; i < P[k]->n; i++) CS_EXPECT(P[k]->g[i] == 0, "gradient not zeroed after the step");
    }
  }
  PetscCall(CsNNOptimGather(O[1]));
  CS_EXPECT(RelErr(O[1]->m, O[2]->m, P[2]->n) < 1e-6 && RelErr(O[1]->v, O[2]->v, P[2]->n) < 1e-6, "gathered sharded Adam state");
  if (clip > 0) CS_EXPECT_CLOSE(O[1]->last_norm, O[2]->last_norm, 1e-12, "sharded gradient norm");
  for (int k = 0; k < 3; k++) {
    if (k < 2) PetscCall(CsNNReducerDestroy(&R[k]));
    PetscCall(CsNNOptimDestroy(&O[k]));
    PetscCall(CsNNParamsDestroy(&P[k]));
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode Body(void)
{
  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(PETSC_COMM_WORLD, &rank));
  PetscCallMPI(MPI_Comm_size(PETSC_COMM_WORLD, &size));
  PetscCall(TestBatchNorm(13));
  PetscCall(TestBatchNorm(2)); /* at 3 ranks one rank has no rows but still takes part in the reductions */
  PetscCall(TestDropout());
  PetscCall(TestMLP());
  PetscCall(TestVAE(PETSC_FALSE, CS_NN_REDUCE_BLOCKING));
  PetscCall(TestVAE(PETSC_TRUE, CS_NN_REDUCE_BUCKETED));
  PetscCall(TestVAE(PETSC_FALSE, CS_NN_REDUCE_BUCKETED));
  PetscCall(TestShardedAdam(0, 0));
  PetscCall(TestShardedAdam(0.5, 0));
  PetscCall(TestShardedAdam(0, 70000));
  PetscCall(TestShardedAdam(0.5, 70000));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv) { return CsTestMain(argc, argv, Body); }
