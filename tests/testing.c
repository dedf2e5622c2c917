#include "testing.h"
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
