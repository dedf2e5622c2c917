/* Minimal test harness: checks count failures (printed with file and line); CsTestMain runs a body between
   CsInitialize and CsFinalize and exits non-zero if any check failed on any rank or the body returned an error. */
#ifndef CELLSHIFT_TESTING_H
#define CELLSHIFT_TESTING_H

#include <cellshift/sys.h>
#include <math.h>

extern int cs_test_failures;
void       cs_test_fail(const char *file, int line, const char *fmt, ...);

#define CS_EXPECT(cond, ...) \
  do { \
    if (!(cond)) cs_test_fail(__FILE__, __LINE__, __VA_ARGS__); \
  } while (0)
/* |a - b| <= tol * max(1, |b|) */
#define CS_EXPECT_CLOSE(a, b, tol, what) \
  do { \
    double cs_a_ = (double)(a), cs_b_ = (double)(b); \
    if (!(fabs(cs_a_ - cs_b_) <= (tol) * fmax(1.0, fabs(cs_b_)))) \
      cs_test_fail(__FILE__, __LINE__, "%s: got %.12g, expected %.12g (tol %g)", what, cs_a_, cs_b_, (double)(tol)); \
  } while (0)

int CsTestMain(int argc, char **argv, PetscErrorCode (*body)(void));

/* Finite-difference gradient checks, reported as PETSc's Tao gradient test does: ||g_fd - g|| / ||g|| in the 2-norm
   and in the max norm, with centred differences of step h on each float of each variable (perturbed in place).
   The scalar f(ctx) should be accumulated in double. A check fails when either error is above tol or the analytic
   gradient is zero; *err2 / *errmax (may be NULL) receive the two errors. */
typedef double (*CsTestLossFn)(void *ctx);
typedef struct {
  const char  *name;
  float       *x; /* [n] the variable (perturbed in place) */
  const float *g; /* [n] its analytic gradient */
  size_t       n;
} CsTestFDVar;
void CsTestFDCheck(const char *what, CsTestLossFn f, void *ctx, const CsTestFDVar *v, int nv, double h, double tol, double *err2,
                   double *errmax);
/* x[i] uniform in [lo, hi), keyed by (key, i): test data independent of anything else. */
void CsTestFill(float *x, size_t n, uint64_t key, double lo, double hi);

/* Path of a file under the source tree (CS_SOURCE_DIR from the test environment). */
PetscErrorCode CsTestSourcePath(const char rel[], char out[]);
/* A fresh temporary folder, the same on all ranks. */
PetscErrorCode CsTestTempDir(MPI_Comm comm, char out[]);

#endif
