/* Small replicated dense problems with LAPACK. See include/cellshift/linalg.h.

   LAPACK is column-major; a row-major symmetric matrix is its own column-major transpose, so A is passed as is.
   The Fortran prototypes are declared here (gfortran calling convention: trailing hidden lengths of the character
   arguments). */
#include "linalgimpl.h"
#include <math.h>

typedef int cs_blasint; /* LP64 LAPACK */

extern void dsyevr_(const char *jobz, const char *range, const char *uplo, const cs_blasint *n, double *a,
                    const cs_blasint *lda, const double *vl, const double *vu, const cs_blasint *il,
                    const cs_blasint *iu, const double *abstol, cs_blasint *m, double *w, double *z,
                    const cs_blasint *ldz, cs_blasint *isuppz, double *work, const cs_blasint *lwork,
                    cs_blasint *iwork, const cs_blasint *liwork, cs_blasint *info, size_t, size_t, size_t);
extern void dposv_(const char *uplo, const cs_blasint *n, const cs_blasint *nrhs, double *a, const cs_blasint *lda,
                   double *b, const cs_blasint *ldb, cs_blasint *info, size_t);

extern void dgeev_(const char *jobvl, const char *jobvr, const cs_blasint *n, double *a, const cs_blasint *lda, double *wr, double *wi,
                   double *vl, const cs_blasint *ldvl, double *vr, const cs_blasint *ldvr, double *work, const cs_blasint *lwork,
                   cs_blasint *info, size_t, size_t);

PetscErrorCode CsSpectralRadius(PetscInt n, double *A, double *rho)
{
  cs_blasint N = (cs_blasint)n, ld = (cs_blasint)PetscMax(n, 1), one = 1, lwork = -1, info = 0;
  double     wq, *wr, *wi, *work;

  PetscFunctionBeginUser;
  *rho = 0;
  if (!n) PetscFunctionReturn(0);
  dgeev_("N", "N", &N, A, &ld, NULL, NULL, NULL, &one, NULL, &one, &wq, &lwork, &info, 1, 1);
  PetscCheck(!info, PETSC_COMM_SELF, PETSC_ERR_LIB, "dgeev workspace query failed (info %d)", (int)info);
  lwork = (cs_blasint)wq;
  PetscCall(PetscMalloc3(n, &wr, n, &wi, lwork, &work));
  dgeev_("N", "N", &N, A, &ld, wr, wi, NULL, &one, NULL, &one, work, &lwork, &info, 1, 1);
  for (PetscInt i = 0; !info && i < n; i++) *rho = PetscMax(*rho, hypot(wr[i], wi[i]));
  PetscCall(PetscFree3(wr, wi, work));
  PetscCheck(!info, PETSC_COMM_SELF, PETSC_ERR_LIB, "dgeev failed (info %d)", (int)info);
  PetscFunctionReturn(0);
}

void CsFixSign(PetscInt n, double *v)
{
  PetscInt imax = 0;
  for (PetscInt i = 1; i < n; i++)
    if (fabs(v[i]) > fabs(v[imax])) imax = i;
  if (n && v[imax] < 0)
    for (PetscInt i = 0; i < n; i++) v[i] = -v[i];
}

PetscErrorCode CsSymEigTop(PetscInt n, double *A, PetscInt k, double *vals, double *vecs)
{
  cs_blasint N = (cs_blasint)n, il = (cs_blasint)(n - k + 1), iu = (cs_blasint)n, m = 0, info = 0, lwork = -1,
             liwork = -1, iwq, *isuppz, *iwork, ldz = (cs_blasint)PetscMax(n, 1);
  double     vl = 0, vu = 0, abstol = 0, wq, *w, *z, *work;

  PetscFunctionBeginUser;
  PetscCheck(k >= 1 && k <= n, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "CsSymEigTop: asked for %" PetscInt_FMT " eigenpairs of a %" PetscInt_FMT " x %" PetscInt_FMT " matrix", k, n, n);
  dsyevr_("V", "I", "L", &N, A, &N, &vl, &vu, &il, &iu, &abstol, &m, NULL, NULL, &ldz, NULL, &wq, &lwork, &iwq,
          &liwork, &info, 1, 1, 1);
  PetscCheck(!info, PETSC_COMM_SELF, PETSC_ERR_LIB, "dsyevr workspace query failed (info %d)", (int)info);
  lwork = (cs_blasint)wq, liwork = iwq;
  PetscCall(PetscMalloc5(n, &w, (size_t)n * k, &z, 2 * k, &isuppz, lwork, &work, liwork, &iwork));
  dsyevr_("V", "I", "L", &N, A, &N, &vl, &vu, &il, &iu, &abstol, &m, w, z, &ldz, isuppz, work, &lwork, iwork,
          &liwork, &info, 1, 1, 1);
  PetscCheck(!info && m == (cs_blasint)k, PETSC_COMM_SELF, PETSC_ERR_LIB,
             "dsyevr failed (info %d, %d of %" PetscInt_FMT " eigenvalues found)", (int)info, (int)m, k);
  /* dsyevr returns the selected eigenvalues ascending, eigenvector i in column i of z. */
  for (PetscInt i = 0; i < k; i++) {
    vals[i] = w[k - 1 - i];
    PetscCall(PetscArraycpy(vecs + (size_t)i * n, z + (size_t)(k - 1 - i) * n, n));
    CsFixSign(n, vecs + (size_t)i * n);
  }
  PetscCall(PetscFree5(w, z, isuppz, work, iwork));
  PetscFunctionReturn(0);
}

PetscErrorCode CsSolveSPD(PetscInt n, double *A, PetscInt nrhs, double *B)
{
  cs_blasint N = (cs_blasint)n, R = (cs_blasint)nrhs, ld = (cs_blasint)PetscMax(n, 1), info = 0;
  double    *bt;

  PetscFunctionBeginUser;
  if (!n || !nrhs) PetscFunctionReturn(0);
  /* B is row-major n x nrhs: LAPACK needs it column-major, so solve on a transposed copy. */
  PetscCall(PetscMalloc1((size_t)n * nrhs, &bt));
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt j = 0; j < nrhs; j++) bt[(size_t)j * n + i] = B[(size_t)i * nrhs + j];
  dposv_("L", &N, &R, A, &ld, bt, &ld, &info, 1);
  if (!info)
    for (PetscInt i = 0; i < n; i++)
      for (PetscInt j = 0; j < nrhs; j++) B[(size_t)i * nrhs + j] = bt[(size_t)j * n + i];
  PetscCall(PetscFree(bt));
  PetscCheck(info <= 0, PETSC_COMM_SELF, PETSC_ERR_MAT_CH_ZRPVT,
             "CsSolveSPD: the %" PetscInt_FMT " x %" PetscInt_FMT " matrix is not positive definite (leading minor %d)", n, n, (int)info);
  PetscCheck(!info, PETSC_COMM_SELF, PETSC_ERR_LIB, "dposv failed (info %d)", (int)info);
  PetscFunctionReturn(0);
}
