/* Private state of CsEvaluator, shared by the scoring (evaluator.c), the reports (report.c) and the plots (plot.c). */
#ifndef CELLSHIFT_EVALIMPL_H
#define CELLSHIFT_EVALIMPL_H

#include <cellshift/eval.h>

#define CS_EVAL_TOP_DE 100 /* longest DE list any metric uses (r2_mean_top100_de) */

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

typedef struct {
  char     name[256];
  char     path[PETSC_MAX_PATH_LEN];
  PetscBool baseline; /* scored as a baseline (the report marks it) */
  double  *values; /* [ntest x CS_NMETRICS] */
  double   agg[CS_NMETRICS];
  PetscInt *npred; /* [ntest] predicted cells of each test group */
  double  *mP;     /* [ntest x ngenes] mean of the predicted cells */
} CsEvalModel;

struct _n_CsEvaluator {
  MPI_Comm    comm;
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
  PetscInt    nmodels;
  CsEvalModel *models; /* [nmodels] in scoring order */
};

/* Owner rank of test group t (energy distance, MMD and the PCA space are computed there). */
#define CsEvalOwner(e, t) ((PetscMPIInt)((t) % (e)->size))

/* report.c */
PETSC_INTERN PetscErrorCode CsEvalWriteJSON(CsEvaluator e, const char path[]);
PETSC_INTERN PetscErrorCode CsEvalWriteCSV(CsEvaluator e, const char path[]);
PETSC_INTERN PetscErrorCode CsEvalWriteMarkdown(CsEvaluator e, const char path[]);
/* plot.c: the plot of model m, and its file name "shift_<model>.png" (characters unsafe in file names become _) */
PETSC_INTERN PetscErrorCode CsEvalPlotShift(CsEvaluator e, const CsEvalModel *m, const char path[]);
PETSC_INTERN void           CsEvalPlotFileName(const char model[], char file[], size_t len);

#endif
