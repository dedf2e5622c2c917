#include "testing.h"
#include <cellshift/rng.h>
#include <stdarg.h>
#include <stdlib.h>

int cs_test_failures = 0;

void cs_test_fail(const char *file, int line, const char *fmt, ...)
{
  va_list ap;
  int     rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  fprintf(stderr, "[rank %d] FAIL %s:%d: ", rank, file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n");
  cs_test_failures++;
}

int CsTestMain(int argc, char **argv, PetscErrorCode (*body)(void))
{
  PetscErrorCode ierr;
  int            failures;

  ierr = CsInitialize(&argc, &argv, NULL);
  if (ierr) return CsExitStatus(ierr);
  ierr = body();
  if (ierr) return CsExitStatus(ierr);
  MPI_Allreduce(&cs_test_failures, &failures, 1, MPI_INT, MPI_SUM, PETSC_COMM_WORLD);
  if (CsFinalize()) return 1;
  if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
  return failures ? 1 : 0;
}

PetscErrorCode CsTestSourcePath(const char rel[], char out[])
{
  const char *src = getenv("CS_SOURCE_DIR");

  PetscFunctionBeginUser;
  PetscCheck(src, PETSC_COMM_SELF, PETSC_ERR_USER, "CS_SOURCE_DIR is not set (run the tests through ctest)");
  PetscCall(CsPathJoin(src, rel, out));
  PetscFunctionReturn(0);
}

PetscErrorCode CsTestTempDir(MPI_Comm comm, char out[])
{
  PetscMPIInt rank;
  char        tmpl[] = "/tmp/cellshift-test-XXXXXX";

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  if (!rank) PetscCheck(mkdtemp(tmpl), PETSC_COMM_SELF, PETSC_ERR_FILE_OPEN, "mkdtemp failed");
  PetscCallMPI(MPI_Bcast(tmpl, (PetscMPIInt)sizeof(tmpl), MPI_CHAR, 0, comm));
  PetscCall(PetscStrncpy(out, tmpl, PETSC_MAX_PATH_LEN));
  PetscFunctionReturn(0);
}

void CsTestFDCheck(const char *what, CsTestLossFn f, void *ctx, const CsTestFDVar *v, int nv, double h, double tol, double *err2,
                   double *errmax)
{
  double num2 = 0, den2 = 0, numi = 0, deni = 0, r2, ri;
  for (int k = 0; k < nv; k++)
    for (size_t i = 0; i < v[k].n; i++) {
      float  x0 = v[k].x[i], xp = (float)(x0 + h), xm = (float)(x0 - h);
      double lp, lm, fd, e;
      v[k].x[i] = xp;
      lp        = f(ctx);
      v[k].x[i] = xm;
      lm        = f(ctx);
      v[k].x[i] = x0;
      fd        = (lp - lm) / ((double)xp - (double)xm);
      e         = fd - v[k].g[i];
      num2 += e * e, den2 += (double)v[k].g[i] * v[k].g[i];
      numi = fmax(numi, fabs(e)), deni = fmax(deni, fabs(v[k].g[i]));
    }
  r2 = sqrt(num2) / fmax(sqrt(den2), 1e-30), ri = numi / fmax(deni, 1e-30);
  if (err2) *err2 = r2;
  if (errmax) *errmax = ri;
  PetscCallVoid(PetscPrintf(PETSC_COMM_WORLD, "%-34s ||g_fd - g||/||g|| = %.2e (2-norm)  %.2e (max-norm)  ||g|| = %.3e\n", what, r2, ri,
                            sqrt(den2)));
  CS_EXPECT(den2 > 0, "%s: the analytic gradient is zero", what);
  CS_EXPECT(r2 < tol && ri < tol, "%s: gradient error %.3e (2-norm) %.3e (max-norm) above %.1e", what, r2, ri, tol);
}

void CsTestFill(float *x, size_t n, uint64_t key, double lo, double hi)
{
  for (size_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * CsRngUniform(1234, CS_STREAM_DATA, key, i));
}
