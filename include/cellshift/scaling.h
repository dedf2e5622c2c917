/* Scaling laws: L(N) = a N^(-alpha) + c fitted by bounded nonlinear least squares (PETSc Tao), bootstrap
   confidence intervals, and the `cellshift scaling` analysis of a collected table of runs.

   The fit. Tao's TAOBRGN (bounded regularised Gauss-Newton) on the residuals r_i = a x_i^(-alpha) + c - y_i with the
   analytic Jacobian [x^-alpha, -a ln(x) x^-alpha, 1], bounds a, alpha, c >= 0. Gauss-Newton is the method made for
   small-residual least squares with a cheap exact Jacobian (3 columns); the bounds keep the law a decreasing
   power law with a non-negative floor. The problem is scaled before it is solved: x = N / N_ref (N_ref the geometric
   mean of the N) and y = L / L_ref (L_ref the mean |L|), so that the three unknowns are O(1) for any units; a is
   converted back (a = a' L_ref N_ref^alpha). Start: c0 = 0.5 min L, (log a, -alpha) by linear regression of
   log(L - c0) on log x. Converged means a Tao convergence reason > 0 (gradient tolerances); anything else fails.

   Collectivity: the fits are serial (PETSC_COMM_SELF) and deterministic; callers on several ranks compute the same
   numbers on every rank. */
#ifndef CELLSHIFT_SCALING_H
#define CELLSHIFT_SCALING_H

#include <petscsys.h>
#include <stdint.h>

typedef struct {
  double   a, alpha, c; /* L(N) = a N^-alpha + c, in the units of the data */
  double   rss;         /* residual sum of squares, data units */
  PetscInt iterations;
  int      reason;      /* TaoConvergedReason */
} CsPowerLaw;

/* Fit n points (N_i > 0 and L_i finite). Fewer than 4 distinct N is an input error (three unknowns need more).
   *converged is false when Tao stopped without converging (the fit is then the last iterate); pass NULL to make
   that an error. */
PETSC_EXTERN PetscErrorCode CsPowerLawFit(PetscInt n, const double N[], const double L[], CsPowerLaw *fit, PetscBool *converged);
PETSC_EXTERN double         CsPowerLawEval(const CsPowerLaw *f, double N);

/* The fit and its bootstrap: nboot resamples of the n points with replacement (point k of replicate b is point
   floor(u n), u = CsRngUniform(seed, CS_STREAM_BOOT, b, k)), each refitted; lo/hi are the percentile interval of
   coverage `level` (0.95: the 2.5% and 97.5% quantiles, linear interpolation) of a, alpha, c over the replicates that
   could be fitted. A replicate with fewer than 4 distinct N, or whose fit does not converge, is skipped and
   counted in nskipped; more than half skipped is an input error (the intervals would mean nothing). Errors begin
   with `what` (the group, e.g. "model scgen, rmse against n_train_cells"). */
typedef struct {
  CsPowerLaw fit;
  double     lo[3], hi[3]; /* a, alpha, c */
  PetscInt   nboot, nskipped;
} CsPowerLawCI;
PETSC_EXTERN PetscErrorCode CsPowerLawBootstrap(const char what[], PetscInt n, const double N[], const double L[], PetscInt nboot, uint64_t seed,
                                                double level, CsPowerLawCI *ci);

/* `cellshift scaling`: the analysis of a table of runs (the CSV of `cellshift collect`: a header, then one row per
   run; a column "status" keeps only its rows "ok" (or empty), other rows are skipped).
   For each metric y of ys and each value of the column `by` (rows whose x is a positive number and y a finite
   number), the power law of y against x and its bootstrap; fewer than 4 distinct x in a group, or a fit that fails,
   is an input error naming the group. Outputs in outdir (written by rank 0, atomically):
     scaling.csv   metric, group, points, distinct x, x range, a, alpha, c with their intervals, rss, bootstrap counts
     crossover.csv for every pair (learned group, simple group) and metric: the x ranges, within the observed range
                   of x of the two groups, where the simple group's fitted loss is lower than the learned one's
     scaling.md    the two tables in markdown
     scaling_<y>.png  log-log plot per metric: the points and the fitted curve of every group
   A group is simple when its name is in `simple` (default additive, linear, mean, control); the others are learned. */
typedef struct {
  char     table[PETSC_MAX_PATH_LEN];
  char     outdir[PETSC_MAX_PATH_LEN];
  char     x[128], by[128];
  PetscInt ny;
  char     y[8][128];
  PetscInt nsimple;
  char     simple[16][64];
  PetscInt nboot;
  uint64_t seed;
  double   level;
} CsScalingOptions;
PETSC_EXTERN PetscErrorCode CsScalingRun(MPI_Comm comm, const CsScalingOptions *o);

#endif
