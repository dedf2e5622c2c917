/* CsEvaluator: PerturBench-style scoring of predictions against held-out cells.

   For a test group g = (condition, context): T = its true cells, C = the control cells of the same context (all of
   them), P = the predicted cells for g read from a predictions.h5ad. m(.) = mean over cells (log-normalised
   space), v(.) = sample variance over cells (0 for fewer than 2 cells). DE genes = genes ranked by |Welch t| of
   T vs C (t = 0 where both variances are 0 or the means differ by at most 1e-6 max(1, |m|): see CsWelchT), descending, ties by gene order, genes with t = 0 never DE; |t| is
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
     rank_rmse             PerturBench's rank_helper: within one context of n test groups, for the truth T_p of
                           each test group p, the position of p's own prediction among all n predictions sorted by
                           d(P_g, T_p) = rmse of the means: (#{g != p : d(P_g, T_p) < d(P_p, T_p)} + 0.5 #{ties}) / n
                           (PerturBench shuffles before sorting; this is the expectation over its shuffles). 0 =
                           perfect, about 0.5 = no better than random, (n - 1) / 2n when every prediction is the same
     rank_cosine_logfc     the same with the similarity s(P_g, T_p) = cosine of the logFCs as in cosine_logfc
                           (sorted by decreasing similarity: #{g != p : s(g, p) > s(p, p)} + 0.5 #{ties})
     mae                   mean_genes |m(P) - m(T)|  (cell-eval's pseudobulk MAE)
     de_score              cell-eval's DE overlap (the VCC differential expression score): genes are tested T vs C
                           and P vs C by a two-sided Wilcoxon rank-sum test (CsMannWhitneyP), adjusted by
                           Benjamini-Hochberg over the genes of the group (CsBenjaminiHochberg); the significant genes
                           (q < 0.05) are ranked by |log2 FC| (CsLog2FoldChange); with S_T the k true ones,
                           |top-k of S_P n S_T| / k, and 0 when k = 0. The test is cell-eval's (pdex), not the Welch
                           t of the DE genes above, so the score is the challenge's; BH runs per group where pdex pools
                           every perturbation of a file, so a group's DE genes do not depend on which other groups the
                           split put in test (and they match scanpy's per-group correction)
     discrimination_score  cell-eval's (the VCC perturbation discrimination score): within one context of n test
                           groups, L1 distances d_h = sum_j |(m(T_h) - m(C))_j - (m(P_p) - m(C))_j| over the genes
                           that are not an atom of p (a gene named like an atom: the target gene), r = #{h != p :
                           d_h < d_p} + 0.5 #{ties}; 1 - r / n (1 = perfect)
     centroid_accuracy     Systema's: within one context, #{h != p : |m(P_p) - m(T_h)| > |m(P_p) - m(T_p)|} / (n - 1)
                           (Euclidean; 1 = the prediction is closest to its own truth)
     pearson_delta_pert    Systema's pearson_delta against the perturbed reference R instead of control:
                           pearson(m(P) - R, m(T) - R), R = mean(control) + CsContextMeanShifts of the context (the
                           mean of the train perturbation centroids); pearson_delta_pert_top20_de on the top-20 DE genes
   rank_rmse, rank_cosine_logfc, discrimination_score and centroid_accuracy are NaN (n/a) in a context with a single
   test group. vcc_score (an aggregate, not a per-group metric) is the Virtual Cell Challenge's overall score of
   cell-eval: with u a model's aggregate and b the aggregate of the cell-mean baseline (-eval_vcc_baseline, default
   the model named mean), the mean of max(0, (u - b) / (1 - b)) for de_score and discrimination_score and
   max(0, 1 - u / b) for mae, an undefined term (b = 1, b = 0, NaN) counting 0; NaN when that model is not scored.
   Aggregates are means over the test groups where the metric is defined (NaN where it is nowhere defined), over all
   test groups and per category of the split (CsSplit: seen_single, unseen_single, combo_seen0/1/2, ...).

   energy_distance and mmd_rbf are computed in the space of the first -eval_pca_components (50) principal
   components of C u T (centred at the mean of the C u T subsample, fit on it; components whose variance is at most
   1e-9 of the first are dropped, as their directions are arbitrary), with each of P, T, C subsampled to
   -eval_max_cells (1000) cells evenly spaced in their order (cells floor(k n / cap), k < cap; C then T in the
   fit). Pearson of a constant vector and cosine of a zero vector are 0.

   Genetic interactions (Norman et al. 2019 as GEARS computes them): a test double A+B qualifies when both its
   single-atom conditions (same doses) were measured in its context. On the genes whose control mean is at least
   -gi_min_mean (0.1, log-normalised), with shifts a = m(A) - m(C), b = m(B) - m(C) of the measured singles and
   y = m(T_AB) - m(C) (measured) or m(P_AB) - m(C) (predicted), CsGIFitShifts fits y = c1 a + c2 b and reads the
   interaction; the types are computed for the measured and the predicted fit and written to gi.csv. With at least
   20 qualifying doubles, the precision at 10 of each type (the 10 doubles ranked most of that type by the
   predicted fit, against the measured types) is reported next to a random ranking's expected precision.

   Means are exact: sums of the float32 values are accumulated and reduced in double-double and rounded once, so
   they do not depend on the number of ranks or the order of the cells, and predictions that copy the control cells
   have m(P) - m(C) exactly 0. Each test group's subsamples are gathered (in global order) on one owner rank, which
   fits its PCA space and computes energy distance and MMD; the values are then shared with every rank. So every
   rank holds the same numbers, and 1, 2 and 3 ranks agree: bitwise for everything built on the means, to rounding
   (BLAS/LAPACK threads) for energy_distance and mmd_rbf. The rank tests of de_score need all values of a gene in
   one place: each gene has an owner rank (contiguous blocks of genes), which receives the nonzero values of that
   gene in T, C and P and tests it; the p-values are then shared (see src/eval/de.c). No rank gathers a group's
   cells.

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
  CS_M_RANK_RMSE,
  CS_M_RANK_COSINE,
  CS_M_MAE,
  CS_M_DE_SCORE,
  CS_M_DISCRIMINATION,
  CS_M_CENTROID_ACC,
  CS_M_PEARSON_DELTA_PERT,
  CS_M_PEARSON_DELTA_PERT_TOP20,
  CS_NMETRICS
} CsMetric;
PETSC_EXTERN const char *const CsMetricNames[]; /* "rmse", "r2_mean_all", ... in CsMetric order */
/* Whether larger is better (for the report's arrows and the "best" mark). */
PETSC_EXTERN const PetscBool CsMetricHigherBetter[];

typedef struct _n_CsEvaluator *CsEvaluator;

PETSC_EXTERN PetscErrorCode CsEvaluatorCreate(MPI_Comm comm, CsEvaluator *e);
/* -eval_max_cells, -eval_pca_components, -eval_vcc_baseline, -gi_min_mean, -gi_max_pairs */
PETSC_EXTERN PetscErrorCode CsEvaluatorSetFromOptions(CsEvaluator e);
/* Collective: statistics of T and C, DE genes and PCA spaces for every test group of the split (idempotent per
   problem; a new problem drops the scores of earlier models). Error: a test group without controls. */
PETSC_EXTERN PetscErrorCode CsEvaluatorSetUp(CsEvaluator e, CsDataset ds, CsDesign d, CsSplit s);
/* Collective: score the predictions in `path` (a predictions.h5ad as written by CsModelWritePredictions; X dense or
   sparse) under the model name `name` (scoring a name again replaces its scores); baseline marks a baseline in
   the reports. Input errors (collective, one
   line): missing or unreadable file, genes that differ from the data's (names and order), a predicted row whose
   labels name no test group, a test group without predicted rows. */
PETSC_EXTERN PetscErrorCode CsEvaluatorScore(CsEvaluator e, const char name[], const char path[], PetscBool baseline);
/* The trained parameter count of scored model `name` (metrics.json "params": {name: n}); n < 0 = not known. */
PETSC_EXTERN PetscErrorCode CsEvaluatorSetParams(CsEvaluator e, const char name[], PetscInt64 n);
/* Collective: metrics.json, metrics.csv, gi.csv, report.md and one shift_<model>.png per scored model in dir. */
PETSC_EXTERN PetscErrorCode CsEvaluatorWrite(CsEvaluator e, const char dir[]);
/* Rank 0 prints the aggregate table (one row per scored model, in scoring order). */
PETSC_EXTERN PetscErrorCode CsEvaluatorPrintTable(CsEvaluator e, PetscViewer v);
PETSC_EXTERN PetscErrorCode CsEvaluatorDestroy(CsEvaluator *e);

/* Genetic-interaction types, thresholds as in GEARS' analysis of Norman et al. 2019. A double may have several. */
typedef enum {
  CS_GI_SYNERGY,     /* magnitude > 1.15 */
  CS_GI_SUPPRESSION, /* magnitude < 1 */
  CS_GI_NEOMORPHISM, /* corr_fit < 0.88 */
  CS_GI_REDUNDANCY,  /* dcor > 0.85 */
  CS_GI_EPISTASIS,   /* eq_contr < 0.28 */
  CS_GI_NTYPES
} CsGIType;
PETSC_EXTERN const char *const CsGITypeNames[]; /* "synergy", ... in CsGIType order */
typedef struct {
  PetscInt  ngenes;     /* genes the fit ran on */
  double    c1, c2;     /* Theil-Sen coefficients of a and b (NaN when fewer than two genes or no regular pair) */
  double    magnitude;  /* sqrt(c1^2 + c2^2) */
  double    dominance;  /* |log10(|c1| / |c2|)| */
  double    corr_fit;   /* pearson(c1 a + c2 b, y) */
  double    dcor;       /* distance correlation of the rows (a_j, b_j) with y_j */
  double    dcor_singles; /* distance correlation of a with b */
  double    eq_contr;   /* min(dcor(a, y), dcor(b, y)) / max(...) (NaN when both are 0) */
  PetscBool type[CS_GI_NTYPES];
} CsGIFit;

/* Kernels (pure, used by the evaluator and tested on their own). */
/* Pearson correlation; 0 when n < 2 or either vector is exactly constant. */
PETSC_EXTERN double CsPearson(PetscInt n, const double *x, const double *y);
/* Cosine of the angle; 0 when either vector is zero. */
PETSC_EXTERN double CsCosine(PetscInt n, const double *x, const double *y);
/* t[j] = (m1 - m2) / sqrt(v1/n1 + v2/n2), 0 where the denominator is 0 or |m1 - m2| <= 1e-6 max(1, |m1|, |m2|)
   (below what float32 predictions resolve: rounding noise around a gene's 0 would otherwise get any |t|). */
PETSC_EXTERN void CsWelchT(PetscInt n, const double *m1, const double *v1, double n1, const double *m2,
                           const double *v2, double n2, double *t);
/* Indices of the k largest |t| (descending, ties by index), only among t != 0; *found <= k. |t| is compared
   rounded to 40 significant bits (frexp/ldexp/rint), so that values equal up to rounding tie. */
PETSC_EXTERN PetscErrorCode CsTopAbs(PetscInt n, const double *t, PetscInt k, PetscInt *idx, PetscInt *found);
/* Every j with mask[j] (zeros included, NaN never), by |t| descending (rounded as in CsTopAbs), ties by index. */
PETSC_EXTERN PetscErrorCode CsRankAbs(PetscInt n, const double *t, const PetscBool *mask, PetscInt *idx, PetscInt *found);
/* Two-sided p-value of the Wilcoxon rank-sum (Mann-Whitney U) test of X against Y as scipy.stats.mannwhitneyu
   computes it with method="asymptotic" and use_continuity=True (pdex's): U = max(U_x, n_x n_y - U_x) with mid-ranks,
   z = (U - n_x n_y / 2 - 0.5) / s, s^2 = n_x n_y / 12 ((n + 1) - sum(t^3 - t) / (n (n - 1))) over tie blocks of size
   t, p = min(1, erfc(z / sqrt 2)); p = 1 when s = 0 or a sample is empty. X has nx values, of which the kx nonzero
   ones are x[] in ascending order and the others 0 (likewise Y), so zeros cost nothing. */
PETSC_EXTERN double CsMannWhitneyP(PetscInt nx, PetscInt kx, const float x[], PetscInt ny, PetscInt ky, const float y[]);
/* Benjamini-Hochberg adjusted p-values: q_(r) = min over r' >= r of p_(r') n / r', at most 1 (the order statistics
   of p), as scipy.stats.false_discovery_control(p, method="bh"). */
PETSC_EXTERN PetscErrorCode CsBenjaminiHochberg(PetscInt n, const double p[], double q[]);
/* pdex's log2 fold change of log-normalised means: x = expm1(mX), c = expm1(mC), fc = 20 if c = 0, else 1/20 if
   x = 0, else x / c; lfc = log2(fc), and 0 where fc < 0 (a negative predicted mean; cell-eval fills that NaN with 0). */
PETSC_EXTERN void CsLog2FoldChange(PetscInt n, const double *mX, const double *mC, double *lfc);
/* The genes with q < 0.05, ranked by |lfc| descending (CsRankAbs): set [n], *nset of them. */
PETSC_EXTERN PetscErrorCode CsDESet(PetscInt n, const double q[], const double lfc[], PetscInt *set, PetscInt *nset);
/* cell-eval's overlap: |first min(nt, np) of pset n tset| / nt, 0 when nt = 0. */
PETSC_EXTERN PetscErrorCode CsDEOverlap(PetscInt nt, const PetscInt tset[], PetscInt np, const PetscInt pset[], double *overlap);
/* Spatial (L1) median of the rows of X [n x dim]: Weiszfeld's iteration with the Vardi-Zhang step from the mean of
   the rows, until a step is below 1e-12 of the iterate (at most 1000 steps). NaN for n = 0. */
PETSC_EXTERN PetscErrorCode CsSpatialMedian(PetscInt n, PetscInt dim, const double *X, double *m);
/* Theil-Sen fit of y [n] ~ c1 a + c2 b without intercept: the spatial median of the exact solutions of the pairs of
   rows (i < k) whose 2 x 2 system is regular (|det| > 1e-12 (|a_i b_k| + |a_k b_i|)); with more than max_pairs pairs,
   the pairs kept are CsSubsampleIndex(q, npairs, max_pairs) >= 0 of their (i, k) order q. NaN without a pair. */
PETSC_EXTERN PetscErrorCode CsTheilSen2(PetscInt n, const double *a, const double *b, const double *y, PetscInt max_pairs, double *c1,
                                        double *c2);
/* Distance correlation (Szekely, Rizzo and Bakirov, the V-statistic as the dcor package computes it) of the rows of
   X [n x p] and Y [n x q]: sqrt(dCov^2 / sqrt(dVar^2_X dVar^2_Y)), 0 when either variance is 0; O(n^2) time, O(n)
   memory. */
PETSC_EXTERN PetscErrorCode CsDistanceCorrelation(PetscInt n, PetscInt p, const double *X, PetscInt q, const double *Y, double *dcor);
/* The fit of y on a and b ([n] each) and the measures and types of CsGIFit. */
PETSC_EXTERN PetscErrorCode CsGIFitShifts(PetscInt n, const double *a, const double *b, const double *y, PetscInt max_pairs, CsGIFit *fit);
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
