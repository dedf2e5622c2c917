/* CsSymEigTop on a matrix built with a known spectrum and eigenbasis; CsSolveSPD and CsSolveGeneral against
   their residuals; CsSpectralRadius on matrices of known spectrum (a rotation, a triangular matrix, a similarity
   transform of a complex pair). */
#include "testing.h"
#include <cellshift/linalg.h>
#include <cellshift/rng.h>

/* Random orthogonal n x n matrix Q (column i = Q[.*n + i], row-major) by modified Gram-Schmidt. */
static void RandomOrthogonal(PetscInt n, uint64_t seed, double *Q)
{
  for (PetscInt i = 0; i < n * n; i++) Q[i] = CsRngUniform(seed, CS_STREAM_DATA, (uint64_t)i, 0) - 0.5;
  for (PetscInt c = 0; c < n; c++) {
    for (PetscInt d = 0; d < c; d++) {
      double dot = 0;
      for (PetscInt r = 0; r < n; r++) dot += Q[r * n + c] * Q[r * n + d];
      for (PetscInt r = 0; r < n; r++) Q[r * n + c] -= dot * Q[r * n + d];
    }
    double nrm = 0;
    for (PetscInt r = 0; r < n; r++) nrm += Q[r * n + c] * Q[r * n + c];
    for (PetscInt r = 0; r < n; r++) Q[r * n + c] /= sqrt(nrm);
  }
}

static PetscErrorCode TestEig(PetscInt n, PetscInt k)
{
  double *Q, *lam, *A, *A0, *vals, *vecs;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc6(n * n, &Q, n, &lam, n * n, &A, n * n, &A0, k, &vals, k * n, &vecs));
  RandomOrthogonal(n, 7 + (uint64_t)n, Q);
  /* Spectrum with both signs, in scrambled order: the top k are the algebraically largest. */
  for (PetscInt i = 0; i < n; i++) lam[i] = 0.5 * (double)((i * 7) % n) - 0.2 * (double)n;
  for (PetscInt r = 0; r < n; r++)
    for (PetscInt c = 0; c < n; c++) {
      double s = 0;
      for (PetscInt i = 0; i < n; i++) s += Q[r * n + i] * lam[i] * Q[c * n + i];
      A[r * n + c] = A0[r * n + c] = s;
    }
  PetscCall(CsSymEigTop(n, A, k, vals, vecs));
  for (PetscInt t = 0; t < k; t++) {
    /* Expected: the eigenvalue of rank t (descending) is 0.5*(n-1-t) - 0.2 n; its eigenvector is column i of Q
       with (7 i) mod n = n-1-t. */
    PetscInt i = 0;
    while ((i * 7) % n != n - 1 - t) i++;
    CS_EXPECT_CLOSE(vals[t], lam[i], 1e-12, "eigenvalue");
    double dot = 0, amax = 0, sgn = 0;
    for (PetscInt r = 0; r < n; r++) dot += vecs[t * n + r] * Q[r * n + i];
    CS_EXPECT_CLOSE(fabs(dot), 1.0, 1e-12, "|<v, q>|");
    for (PetscInt r = 0; r < n; r++)
      if (fabs(vecs[t * n + r]) > amax) amax = fabs(vecs[t * n + r]), sgn = vecs[t * n + r];
    CS_EXPECT(sgn > 0, "eigenvector %" PetscInt_FMT ": largest entry %g is not positive", t, sgn);
    for (PetscInt r = 0; r < n; r++) {
      double av = 0;
      for (PetscInt c = 0; c < n; c++) av += A0[r * n + c] * vecs[t * n + c];
      CS_EXPECT_CLOSE(av, vals[t] * vecs[t * n + r], 1e-11, "A v = lambda v");
    }
  }
  PetscCall(PetscFree6(Q, lam, A, A0, vals, vecs));
  PetscFunctionReturn(0);
}

static PetscErrorCode TestSolve(PetscInt n, PetscInt nrhs)
{
  double        *M, *A, *A0, *B, *X;
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc5(n * n, &M, n * n, &A, n * n, &A0, n * nrhs, &B, n * nrhs, &X));
  for (PetscInt i = 0; i < n * n; i++) M[i] = CsRngUniform(3, CS_STREAM_DATA, (uint64_t)i, 1) - 0.5;
  for (PetscInt r = 0; r < n; r++)
    for (PetscInt c = 0; c < n; c++) {
      double s = r == c ? 0.1 : 0;
      for (PetscInt i = 0; i < n; i++) s += M[r * n + i] * M[c * n + i];
      A[r * n + c] = A0[r * n + c] = s;
    }
  for (PetscInt i = 0; i < n * nrhs; i++) B[i] = X[i] = CsRngUniform(3, CS_STREAM_DATA, (uint64_t)i, 2) - 0.5;
  PetscCall(CsSolveSPD(n, A, nrhs, X));
  for (PetscInt r = 0; r < n; r++)
    for (PetscInt j = 0; j < nrhs; j++) {
      double s = 0;
      for (PetscInt c = 0; c < n; c++) s += A0[r * n + c] * X[c * nrhs + j];
      CS_EXPECT_CLOSE(s, B[r * nrhs + j], 1e-10, "A X = B");
    }
  /* An indefinite matrix is refused. */
  for (PetscInt i = 0; i < n * n; i++) A[i] = A0[i];
  A[(n - 1) * n + (n - 1)] = -1e3;
  PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
  ierr = CsSolveSPD(n, A, nrhs, X);
  PetscCall(PetscPopErrorHandler());
  CS_EXPECT(ierr == PETSC_ERR_MAT_CH_ZRPVT, "indefinite matrix: error %d", (int)ierr);
  PetscCall(PetscFree5(M, A, A0, B, X));
  PetscFunctionReturn(0);
}

/* A general (non-symmetric) system: the residual of the dgesv solution. */
static PetscErrorCode TestGeneral(PetscInt n, PetscInt nrhs)
{
  double *A, *LU, *B, *X, worst = 0;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc4(n * n, &A, n * n, &LU, n * nrhs, &B, n * nrhs, &X));
  for (PetscInt i = 0; i < n * n; i++) A[i] = CsRngUniform(3, CS_STREAM_DATA, (uint64_t)i, 0) - 0.5 + (i % (n + 1) == 0 ? 2 : 0);
  for (PetscInt i = 0; i < n * nrhs; i++) B[i] = X[i] = CsRngUniform(4, CS_STREAM_DATA, (uint64_t)i, 0);
  PetscCall(PetscArraycpy(LU, A, n * n));
  PetscCall(CsSolveGeneral(n, LU, nrhs, X));
  for (PetscInt r = 0; r < nrhs; r++)
    for (PetscInt i = 0; i < n; i++) {
      double s = 0;
      for (PetscInt j = 0; j < n; j++) s += A[j * n + i] * X[r * n + j]; /* column-major */
      worst = PetscMax(worst, fabs(s - B[r * n + i]));
    }
  CS_EXPECT(worst < 1e-12, "CsSolveGeneral residual %g", worst);
  PetscCall(PetscFree4(A, LU, B, X));
  PetscFunctionReturn(0);
}

static PetscErrorCode TestRadius(void)
{
  double rot[4] = {0.6, 0.8, -0.8, 0.6}, tri[9] = {0.5, 0, 0, 7, -0.9, 0, 3, 2, 0.2}, S[9], rho;
  double T[9] = {1, 2, 0, 0, 1, 1, 1, 0, 3}, Ti[9], D[9] = {0.3, -0.7, 0, 0.7, 0.3, 0, 0, 0, 0.1}, M[9] = {0};

  PetscFunctionBeginUser;
  PetscCall(CsSpectralRadius(2, rot, &rho));
  CS_EXPECT_CLOSE(rho, 1.0, 1e-14, "radius of a rotation");
  PetscCall(CsSpectralRadius(3, tri, &rho));
  CS_EXPECT_CLOSE(rho, 0.9, 1e-14, "radius of a triangular matrix");
  /* T D T^{-1}: eigenvalues 0.3 +- 0.7i and 0.1 (column-major 3 x 3); T^{-1} by solving T X = I. */
  for (int i = 0; i < 9; i++) S[i] = T[i], Ti[i] = (i % 4 == 0);
  PetscCall(CsSolveGeneral(3, S, 3, Ti));
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++)
      for (int k = 0; k < 3; k++)
        for (int l = 0; l < 3; l++) M[j * 3 + i] += T[k * 3 + i] * D[l * 3 + k] * Ti[j * 3 + l];
  PetscCall(CsSpectralRadius(3, M, &rho));
  CS_EXPECT_CLOSE(rho, sqrt(0.3 * 0.3 + 0.7 * 0.7), 1e-12, "radius of a complex pair");
  PetscFunctionReturn(0);
}

static PetscErrorCode Body(void)
{
  PetscFunctionBeginUser;
  PetscCall(TestEig(30, 4));
  PetscCall(TestEig(17, 17));
  PetscCall(TestEig(1, 1));
  PetscCall(TestSolve(12, 3));
  PetscCall(TestSolve(5, 1));
  PetscCall(TestGeneral(40, 3));
  PetscCall(TestRadius());
  PetscFunctionReturn(0);
}

int main(int argc, char **argv) { return CsTestMain(argc, argv, Body); }
