/* CsEvaluator: PerturBench-style scoring of predictions against held-out cells.

   For a test group g = (condition, context): T = its true cells, C = the control cells of the same context (all of
   them), P = the predicted cells for g read from a predictions.h5ad. m(.) = mean over cells (log-normalised
   space), v(.) = sample variance over cells (0 for fewer than 2 cells). DE genes = genes ranked by |Welch t| of
   T vs C (t = 0 where both variances are 0), descending, ties by gene order, genes with t = 0 never DE; |t| is
   compared rounded to 40 significant bits (see CsTopAbs): mathematically equal statistics, common in sparse data
   (every gene seen in one cell of T and none of C has |t| = 1), then tie instead of being ordered by rounding.
   Definitions (identical in tests/python/check_metrics.py):
     rmse                  sqrt(mean_genes (m(P) - m(T))^2)
     r2_mean_all           pearson(m(P), m(T))^2                      (scGen's convention)
     r2_mean_top100_de     the same on the top-100 DE genes
     pearson_delta         pearson(m(P) - m(C), m(T) - m(C))
     pearson_delta_top20_de the same on the top-20 DE genes
     cosine_logfc          cosine(l(m(P)) - l(m(C)), l(m(T)) - l(m(C))), l(v) = log2(max(v, 0) + 0.1)
                           (a predicted mean below 0 is clipped: expression is never negative)
     energy_distance       2 E|p - t| - E|p - p'| - E|t - t'| (Euclidean; within-set means over distinct pairs)
     mmd_rbf               MMD^2, unbiased: mean k(p,p') + mean k(t,t') over distinct pairs - 2 mean k(p,t),
                           k(a,b) = exp(-|a-b|^2 / (2 s^2)), s^2 = median |a-b|^2 over distinct pairs of T u C
                           (s^2 = 1 where that median is 0)
     de_recall_top20       |top-20 DE(P vs C) n top-20 DE(T vs C)| / 20
     rank                  within one context: (#{h != g : d(P_g, T_h) < d(P_g, T_g)} + 0.5 #{ties}) / n_groups,
                           d = rmse of the means, n_groups = test groups of the context; 0 = perfect, about 0.5 =
                           no better than random; NaN (n/a) in a context with a single test group
   Aggregates are means over the test groups where the metric is defined (NaN where it is nowhere defined).
   energy_distance and mmd_rbf are computed in the space of the first -eval_pca_components (50) principal
   components of C u T (centred at the mean of the C u T subsample, fit on it; components whose variance is at most
   1e-9 of the first are dropped, as their directions are arbitrary), with each of P, T, C subsampled to
   -eval_max_cells (1000) cells evenly spaced in their order (cells floor(k n / cap), k < cap; C then T in the
   fit). Pearson of a constant vector and cosine of a zero vector are 0.

   Means are exact: sums of the float32 values are accumulated and reduced in double-double and rounded once, so
   they do not depend on the number of ranks or the order of the cells, and predictions that copy the control cells
   have m(P) - m(C) exactly 0. Each test group's subsamples are gathered (in global order) on one owner rank, which
   fits its PCA space and computes energy distance and MMD; the values are then shared with every rank. So every
   rank holds the same numbers, and 1, 2 and 3 ranks agree: bitwise for everything built on the means, to rounding
   (BLAS/LAPACK threads) for energy_distance and mmd_rbf.

   Predictions: rows whose obs cellshift_kind is "observed" are ignored (CsModelWritePredictions appends the observed
   controls); without that column, rows labelled with the control value are. Every other row is a predicted cell
   of the test group named by its labels (perturbation key, context key, dose key, as in the data). */
#ifndef CELLSHIFT_EVAL_H
#define CELLSHIFT_EVAL_H

#include <cellshift/split.h>

typedef enum {
  CS_M_RMSE,
  CS_M_R2_ALL,
  CS_M_R2_TOP100,
  CS_M_PEARSON_DELTA,
  CS_M_PEARSON_DELTA_TOP20,
  CS_M_COSINE_LOGFC,
  CS_M_ENERGY,
  CS_M_MMD,
  CS_M_DE_RECALL20,
  CS_M_RANK,
  CS_NMETRICS
} CsMetric;
PETSC_EXTERN const char *const CsMetricNames[]; /* "rmse", "r2_mean_all", ... in CsMetric order */
/* Whether larger is better (for the report's arrows and the "best" mark). */
PETSC_EXTERN const PetscBool CsMetricHigherBetter[];

typedef struct _n_CsEvaluator *CsEvaluator;

PETSC_EXTERN PetscErrorCode CsEvaluatorCreate(MPI_Comm comm, CsEvaluator *e);
/* -eval_max_cells, -eval_pca_components */
PETSC_EXTERN PetscErrorCode CsEvaluatorSetFromOptions(CsEvaluator e);
/* Collective: statistics of T and C, DE genes and PCA spaces for every test group of the split (idempotent per
   problem; a new problem drops the scores of earlier models). Error: a test group without controls. */
PETSC_EXTERN PetscErrorCode CsEvaluatorSetUp(CsEvaluator e, CsDataset ds, CsDesign d, CsSplit s);
/* Collective: score the predictions in `path` (a predictions.h5ad as written by CsModelWritePredictions; X dense or
   sparse) under the model name `name` (scoring a name again replaces its scores). Input errors (collective, one
   line): missing or unreadable file, genes that differ from the data's (names and order), a predicted row whose
   labels name no test group, a test group without predicted rows. */
PETSC_EXTERN PetscErrorCode CsEvaluatorScore(CsEvaluator e, const char name[], const char path[]);
/* Collective: metrics.json, metrics.csv, report.md and one shift_<model>.png per scored model in dir. */
PETSC_EXTERN PetscErrorCode CsEvaluatorWrite(CsEvaluator e, const char dir[]);
/* Rank 0 prints the aggregate table (one row per scored model, in scoring order). */
PETSC_EXTERN PetscErrorCode CsEvaluatorPrintTable(CsEvaluator e, PetscViewer v);
/* Settings, and the table once models are scored. */
PETSC_EXTERN PetscErrorCode CsEvaluatorView(CsEvaluator e, PetscViewer v);
/* Aggregate value of metric for model `name` (for tests and sweeps). */
PETSC_EXTERN PetscErrorCode CsEvaluatorGetAggregate(CsEvaluator e, const char name[], CsMetric m, double *value);
PETSC_EXTERN PetscErrorCode CsEvaluatorDestroy(CsEvaluator *e);

/* Kernels (pure, used by the evaluator and tested on their own). */
/* Pearson correlation; 0 when n < 2 or either vector is exactly constant. */
PETSC_EXTERN double CsPearson(PetscInt n, const double *x, const double *y);
/* Cosine of the angle; 0 when either vector is zero. */
PETSC_EXTERN double CsCosine(PetscInt n, const double *x, const double *y);
/* t[j] = (m1 - m2) / sqrt(v1/n1 + v2/n2), 0 where the denominator is 0. */
PETSC_EXTERN void CsWelchT(PetscInt n, const double *m1, const double *v1, double n1, const double *m2,
                           const double *v2, double n2, double *t);
/* Indices of the k largest |t| (descending, ties by index), only among t != 0; *found <= k. |t| is compared
   rounded to 40 significant bits (frexp/ldexp/rint), so that values equal up to rounding tie. */
PETSC_EXTERN PetscErrorCode CsTopAbs(PetscInt n, const double *t, PetscInt k, PetscInt *idx, PetscInt *found);
/* X [n x dim], Y [m x dim] row-major. Within-set means over distinct pairs are 0 for a set of fewer than 2 rows.
   Squared distances are summed directly per pair (not through |x|^2 + |y|^2 - 2 x.y), so coincident points are
   at distance exactly 0: the exact path of the neural engine's pairwise kernels (cs_sqdist_row_f64, nn.h). */
PETSC_EXTERN PetscErrorCode CsEnergyDistance(PetscInt n, PetscInt m, PetscInt dim, const double *X, const double *Y,
                                             double *energy);
/* s2 > 0. */
PETSC_EXTERN PetscErrorCode CsMMDRBF(PetscInt n, PetscInt m, PetscInt dim, const double *X, const double *Y, double s2,
                                     double *mmd);
/* Median (numpy's: mean of the two middle values for an even count) of the squared distances over distinct pairs
   of the rows of Z [n x dim]; 0 when n < 2. */
PETSC_EXTERN PetscErrorCode CsMedianSqDist(PetscInt n, PetscInt dim, const double *Z, double *s2);

#endif
