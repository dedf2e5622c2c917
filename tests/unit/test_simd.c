/* The explicitly vectorised kernels (sys.h CsSIMD: the sparse first layer's forward and its weight gradient, the Adam
   update with its sum of squares) give the scalar code's bits at every level this CPU has (AVX2, AVX-512), for
   widths that fill whole tiles, halves of tiles and neither, rows with and without non-zeros, with and without bias. */
#include "testing.h"
#include <cellshift/nn.h>
#include <cellshift/rng.h>
#include <string.h>

#define ROWS 61
#define IN   300

static const char *Name(CsSIMDLevel l) { return l == CS_SIMD_AVX512 ? "AVX-512" : l == CS_SIMD_AVX2 ? "AVX2" : "scalar"; }

/* A batch of ROWS x IN with about a third of the entries non-zero, every seventh row empty. */
static PetscErrorCode MakeX(CsCSR *X)
{
  int64_t nnz = 0;

  PetscFunctionBeginUser;
  X->nrows = ROWS, X->ncols = IN;
  PetscCall(PetscMalloc1(ROWS + 1, &X->indptr));
  PetscCall(PetscMalloc1(ROWS * IN, &X->indices));
  PetscCall(PetscMalloc1(ROWS * IN, &X->data));
  X->indptr[0] = 0;
  for (PetscInt i = 0; i < ROWS; i++) {
    for (PetscInt j = 0; j < IN && i % 7 != 3; j++)
      if (CsRngUniform(7, 0, (uint64_t)i, (uint64_t)j) < 0.33) X->indices[nnz] = (int32_t)j, X->data[nnz++] = (float)(CsRngUniform(7, 1, (uint64_t)i, (uint64_t)j) * 4 - 1);
    X->indptr[i + 1] = nnz;
  }
  PetscFunctionReturn(0);
}

/* out = X w + b and dw += X^T dout at one level. */
static void Layer(CsSIMDLevel l, const CsCSR *X, const float *w, const float *b, const float *dout, PetscInt O, float *out, float *dw)
{
  CsSIMDCap(l);
  cs_linear_sparse_forward(out, X, w, b, O);
  cs_linear_sparse_backward(dw, NULL, dout, X, O);
  CsSIMDCap(CS_SIMD_AVX512);
}

static PetscErrorCode TestSparse(CsSIMDLevel top, PetscInt O, PetscBool bias)
{
  CsCSR  X;
  float *w, *b, *dout, *out0, *dw0, *out, *dw;

  PetscFunctionBeginUser;
  PetscCall(MakeX(&X));
  PetscCall(PetscMalloc6(IN * O, &w, O, &b, ROWS * O, &dout, ROWS * O, &out0, IN * O, &dw0, ROWS * O, &out));
  PetscCall(PetscMalloc1(IN * O, &dw));
  for (PetscInt k = 0; k < IN * O; k++) w[k] = (float)(CsRngUniform(8, 0, 0, (uint64_t)k) - 0.5), dw0[k] = (float)(k % 5) * 0.125f;
  for (PetscInt k = 0; k < O; k++) b[k] = (float)(CsRngUniform(8, 1, 0, (uint64_t)k) - 0.5);
  for (PetscInt k = 0; k < ROWS * O; k++) dout[k] = (float)(CsRngUniform(8, 2, 0, (uint64_t)k) - 0.5);
  Layer(CS_SIMD_SCALAR, &X, w, bias ? b : NULL, dout, O, out0, dw0);
  for (CsSIMDLevel l = CS_SIMD_AVX2; l <= top; l++) {
    for (PetscInt k = 0; k < IN * O; k++) dw[k] = (float)(k % 5) * 0.125f;
    Layer(l, &X, w, bias ? b : NULL, dout, O, out, dw);
    CS_EXPECT(!memcmp(out, out0, sizeof(float) * (size_t)(ROWS * O)), "%s sparse forward (width %" PetscInt_FMT ", bias %d) differs from scalar", Name(l), O, (int)bias);
    CS_EXPECT(!memcmp(dw, dw0, sizeof(float) * (size_t)(IN * O)), "%s sparse weight gradient (width %" PetscInt_FMT ") differs from scalar", Name(l), O);
  }
  PetscCall(PetscFree6(w, b, dout, out0, dw0, out));
  PetscCall(PetscFree(dw));
  PetscCall(CsCSRFree(&X));
  PetscFunctionReturn(0);
}

/* Six Adam steps (AdamW with clipping by value on odd n) at one level: parameters, moments and sums of squares. */
static PetscErrorCode Adam(CsSIMDLevel l, PetscInt n, float *p, float *m, float *v, double *sumsq)
{
  CsNNParams P;
  CsNNOptim  opt;

  PetscFunctionBeginUser;
  PetscCall(CsNNParamsCreate(PETSC_COMM_SELF, &P));
  PetscCall(CsNNParamsAdd(P, "w", n, 1, CS_NN_INIT_FANIN, 4, NULL));
  PetscCall(CsNNParamsSetUp(P));
  PetscCall(CsNNParamsInitialize(P, 1));
  PetscCall(CsNNOptimCreate(PETSC_COMM_SELF, &opt));
  opt->lr = 0.01, opt->weight_decay = 0.01;
  if (n % 2) opt->type = CS_NN_OPTIM_ADAMW, opt->clip_value = 0.3;
  PetscCall(CsNNOptimSetUp(opt, P->n));
  CsSIMDCap(l);
  for (int t = 1; t <= 6; t++) {
    for (PetscInt i = 0; i < n; i++) P->g[i] = (float)((CsRngUniform(9, 0, (uint64_t)t, (uint64_t)i) - 0.5) * (1 + i % 5));
    PetscCall(CsNNOptimStep(opt, P));
    sumsq[t - 1] = opt->last_sumsq;
  }
  CsSIMDCap(CS_SIMD_AVX512);
  memcpy(p, P->p, sizeof(float) * (size_t)n), memcpy(m, opt->m, sizeof(float) * (size_t)n), memcpy(v, opt->v, sizeof(float) * (size_t)n);
  PetscCall(CsNNOptimDestroy(&opt));
  PetscCall(CsNNParamsDestroy(&P));
  PetscFunctionReturn(0);
}

static PetscErrorCode TestAdam(CsSIMDLevel top, PetscInt n)
{
  float *p0, *m0, *v0, *p, *m, *v;
  double s0[6], s[6];

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc6(n, &p0, n, &m0, n, &v0, n, &p, n, &m, n, &v));
  PetscCall(Adam(CS_SIMD_SCALAR, n, p0, m0, v0, s0));
  for (CsSIMDLevel l = CS_SIMD_AVX2; l <= top; l++) {
    PetscCall(Adam(l, n, p, m, v, s));
    CS_EXPECT(!memcmp(p, p0, sizeof(float) * (size_t)n) && !memcmp(m, m0, sizeof(float) * (size_t)n) && !memcmp(v, v0, sizeof(float) * (size_t)n),
              "%s Adam step (%" PetscInt_FMT " parameters) differs from scalar", Name(l), n);
    CS_EXPECT(!memcmp(s, s0, sizeof(s)), "%s Adam sum of squares (%" PetscInt_FMT " parameters) differs from scalar", Name(l), n);
  }
  PetscCall(PetscFree6(p0, m0, v0, p, m, v));
  PetscFunctionReturn(0);
}

static PetscErrorCode Run(void)
{
  CsSIMDLevel top = CsSIMD();

  PetscFunctionBeginUser;
  PetscCall(PetscPrintf(PETSC_COMM_WORLD, "this CPU: up to %s; pool threads %d\n", Name(top), CsPoolThreads()));
  if (top == CS_SIMD_SCALAR) PetscCall(PetscPrintf(PETSC_COMM_WORLD, "no vectorised level on this CPU: nothing to compare\n"));
  for (PetscInt O = 16; O <= 320; O += 48) PetscCall(TestSparse(top, O, O % 32 == 0)); /* 16 .. 304: whole tiles, halves and neither */
  PetscCall(TestSparse(top, 256, PETSC_FALSE));
  PetscCall(TestSparse(top, 128, PETSC_TRUE));
  for (PetscInt n = 5; n < 3000; n = 3 * n + 1) PetscCall(TestAdam(top, n));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv) { return CsTestMain(argc, argv, Run); }
