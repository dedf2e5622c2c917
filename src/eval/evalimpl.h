/* Private state of CsEvaluator, shared by the scoring (evaluator.c), the reports (report.c) and the plots (plot.c). */
#ifndef CELLSHIFT_EVALIMPL_H
#define CELLSHIFT_EVALIMPL_H

#include <cellshift/eval.h>

#define CS_EVAL_TOP_DE 100 /* longest DE list any metric uses (r2_mean_top100_de) */
#define CS_DE_FDR      0.05 /* Benjamini-Hochberg level of de_score's significant genes (cell-eval's) */
#define CS_GI_PRECISION_K 10 /* precision at 10 of the genetic-interaction types (with at least 20 doubles) */

/* The PCA space of one test group (fit on the subsamples of C u T). Held only by the group's owner rank, which
   computes energy distance and MMD for it; the other ranks receive the values. */
typedef struct {
  PetscInt k;     /* components kept */
  double  *mean;  /* [ngenes] mean of the C u T subsample */
  double  *V;     /* [k x ngenes] components (unit rows) */
  PetscInt nT;    /* rows of the T subsample */
  double  *T;     /* [nT x k] scores of the T subsample */
  double   s2;    /* RBF bandwidth: median squared distance over distinct pairs of the C u T subsample */
} CsEvalSpace;

/* The values of every (slot, gene) column of a distributed CSR on the gene's owner rank (de.c): genes are dealt out
   in contiguous blocks [g0, g1) by rank; the nonzero values of slot s and gene g0 + j are
   val[start[s * (g1 - g0) + j] ..  start[s * (g1 - g0) + j + 1]), ascending; n[s] counts the slot's cells, zeros
   included. */
typedef struct {
  PetscInt G, g0, g1, nslots;
  PetscInt *n;
  int64_t  *start;
  float    *val;
} CsEvalColumns;

/* A test double whose two singles were measured in its context (the genetic-interaction analysis). */
typedef struct {
  PetscInt t;    /* test index of the double */
  PetscInt a, b; /* groups of its single-atom conditions (same doses, same context) */
} CsEvalDouble;

typedef struct {
  char     name[256];
  char     path[PETSC_MAX_PATH_LEN];
  PetscBool baseline; /* scored as a baseline (the report marks it) */
  PetscInt64 params;  /* the model's trained parameters (CsEvaluatorSetParams), -1 when not known */
  double  *values; /* [ntest x CS_NMETRICS] */
  double   agg[CS_NMETRICS];
  PetscInt *npred; /* [ntest] predicted cells of each test group */
  double  *mP;     /* [ntest x ngenes] mean of the predicted cells */
  double  *cagg;   /* [ncat x CS_NMETRICS] aggregates per category */
  CsGIFit *gi;     /* [ngi] fits of the predicted doubles */
} CsEvalModel;

struct _n_CsEvaluator {
  MPI_Comm    comm;
  CsCSR       X;          /* during SetUp: the rows of the evaluated groups by dataset row (CsDatasetGetMasked) */
  PetscBool   Xborrowed;  /* X is ds->X */
  PetscMPIInt rank, size;
  PetscInt    max_cells, pca_k;
  CsDataset   ds;
  CsDesign    d;
  CsSplit     s;
  PetscBool   setup;
  PetscInt    G;       /* genes */
  PetscInt    ntest;
  PetscInt   *test;    /* [ntest] group of each test group, in group order */
  PetscInt   *tindex;  /* [ngroups] test index of a group, -1 if it is not a test group */
  PetscInt   *nT, *nC; /* [ntest] cells of T and C */
  double     *mT, *vT; /* [ntest x G] mean and sample variance of T */
  double     *mC, *vC; /* [ntest x G] the same for the control group of the test group's context */
  PetscInt   *de;      /* [ntest x CS_EVAL_TOP_DE] DE genes of T vs C, most significant first */
  PetscInt   *nde;     /* [ntest] length of each DE list */
  CsEvalSpace *space;  /* [ntest], filled only for the groups this rank owns */
  PetscInt   *cat;     /* [ntest] category index of each test group */
  PetscInt    ncat;
  char      (*catname)[32]; /* [ncat] the split's categories of the test groups, sorted */
  PetscInt   *atomgene; /* [natoms] gene of each atom (same name), -1 where none: excluded from discrimination_score */
  double     *mRef;    /* [ntest x G] Systema's reference: the mean of the train perturbation centroids of the context */
  double     *lfcT;    /* [ntest x G] log2 fold change of T vs C (pdex) */
  PetscInt   *desT;    /* [ntest x G] genes with BH q < CS_DE_FDR of T vs C, by |lfcT| descending */
  PetscInt   *ndesT;   /* [ntest] */
  CsEvalColumns cols;  /* columns of the slots of T and C (test index t, then the control slots) */
  PetscInt   *ccol;    /* [ntest] the slot of cols holding the controls of test group t */
  PetscInt    ndoubles; /* test groups with two atoms */
  PetscInt    ngi;
  CsEvalDouble *gi;    /* [ngi] the qualifying doubles */
  double     *giA, *giB; /* [ngi x G] means of their single groups */
  CsGIFit    *gitrue;  /* [ngi] fits of the measured doubles */
  PetscReal   gi_min_mean;
  PetscInt    gi_max_pairs;
  char        vcc_baseline[256]; /* model whose aggregates normalise vcc_score */
  PetscInt    nmodels;
  CsEvalModel *models; /* [nmodels] in scoring order */
};

/* Owner rank of test group t (energy distance, MMD and the PCA space are computed there). */
#define CsEvalOwner(e, t) ((PetscMPIInt)((t) % (e)->size))

/* de.c: collective; the columns of the slotted rows of X (slot[i] in [0, nslots) or -1; total[s] = cells of slot s) */
PETSC_INTERN PetscErrorCode CsEvalColumnsBuild(MPI_Comm comm, const CsCSR *X, const PetscInt slot[], PetscInt nslots,
                                               const PetscInt total[], CsEvalColumns *c);
PETSC_INTERN PetscErrorCode CsEvalColumnsFree(CsEvalColumns *c);
/* de.c: collective; p[t * G + j] = CsMannWhitneyP of slot xs[t] of cx against slot ys[t] of cy, on every rank */
PETSC_INTERN PetscErrorCode CsEvalColumnsTest(MPI_Comm comm, const CsEvalColumns *cx, const PetscInt xs[], const CsEvalColumns *cy,
                                              const PetscInt ys[], PetscInt npairs, double *p);
/* compare.c: the rmse of two mean profiles [G]; PerturBench's l(v) = log2(max(v, 0) + 0.1) of cosine_logfc */
PETSC_INTERN double CsEvalRMSE(PetscInt G, const double *a, const double *b);
PETSC_INTERN double CsEvalLog(double v);
/* compare.c: rank_rmse, rank_cosine_logfc, centroid_accuracy, discrimination_score of model m (collective) */
PETSC_INTERN PetscErrorCode CsEvalContextMetrics(CsEvaluator e, CsEvalModel *m);
/* gi.c: collective; the qualifying doubles and the fits of the measured ones (set-up), the fits of a model's */
PETSC_INTERN PetscErrorCode CsEvalGISetUp(CsEvaluator e);
PETSC_INTERN PetscErrorCode CsEvalGIScore(CsEvaluator e, CsEvalModel *m);
PETSC_INTERN PetscErrorCode CsEvalGIFree(CsEvaluator e);
/* gi.c: precision at k of the predicted ranking of type y against the measured types, and the random baseline (the
   fraction of doubles of that type); NaN when fewer than 2 k doubles qualify */
PETSC_INTERN void CsEvalGIPrecision(CsEvaluator e, const CsEvalModel *m, CsGIType y, PetscInt k, double *precision, double *random);
/* evaluator.c: vcc_score of model m overall (cat < 0) or in category cat; NaN without the baseline model */
PETSC_INTERN double CsEvalVccScore(CsEvaluator e, const CsEvalModel *m, PetscInt cat);

/* report.c */
PETSC_INTERN PetscErrorCode CsEvalWriteJSON(CsEvaluator e, const char path[]);
PETSC_INTERN PetscErrorCode CsEvalWriteCSV(CsEvaluator e, const char path[]);
PETSC_INTERN PetscErrorCode CsEvalWriteMarkdown(CsEvaluator e, const char path[]);
PETSC_INTERN PetscErrorCode CsEvalWriteGI(CsEvaluator e, const char path[]);
/* plot.c: the plot of model m, and its file name "shift_<model>.png" (characters unsafe in file names become _) */
PETSC_INTERN PetscErrorCode CsEvalPlotShift(CsEvaluator e, const CsEvalModel *m, const char path[]);
PETSC_INTERN void           CsEvalPlotFileName(const char model[], char file[], size_t len);

#endif
