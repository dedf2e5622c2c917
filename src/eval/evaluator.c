/* CsEvaluator: scores predictions.h5ad files against the held-out cells. See include/cellshift/eval.h.

   Distribution: cell statistics (sums, then sums of squared deviations) are reduced over ranks. Group sums are
   accumulated in double-double and reduced with a double-double MPI operation, so a mean is the correctly
   rounded mean of its float32 values whatever the number of ranks and the order of the cells: the control
   baseline's predictions (the control cells themselves) then have m(P) - m(C) exactly 0, and its pearson_delta
   and DE genes are exactly 0 and none instead of rounding noise. The subsamples of one test group are gathered
   on one owner rank (groups are dealt out round-robin), which fits the group's PCA space, and later computes
   energy distance and MMD there; the values are then shared, so every rank holds the same numbers. */
#include "evalimpl.h"
#include <cellshift/linalg.h>
#include <cellshift/model.h>
#include <cblas.h>
#include <math.h>

const char *const CsMetricNames[] = {"rmse",
                                     "r2_mean_all",
                                     "r2_mean_top100_de",
                                     "pearson_delta",
                                     "pearson_delta_top20_de",
                                     "cosine_logfc",
                                     "energy_distance",
                                     "mmd_rbf",
                                     "de_recall_top20",
                                     "rank_rmse",
                                     "rank_cosine_logfc",
                                     "mae",
                                     "de_score",
                                     "discrimination_score",
                                     "centroid_accuracy",
                                     "pearson_delta_pert",
                                     "pearson_delta_pert_top20_de",
                                     NULL};
const PetscBool CsMetricHigherBetter[] = {PETSC_FALSE, PETSC_TRUE, PETSC_TRUE,  PETSC_TRUE,  PETSC_TRUE, PETSC_TRUE,
                                          PETSC_FALSE, PETSC_FALSE, PETSC_TRUE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE,
                                          PETSC_TRUE,  PETSC_TRUE,  PETSC_TRUE,  PETSC_TRUE, PETSC_TRUE};

#define CS_EVAL_KIND_KEY "cellshift_kind"

/* ---------------------------------------------------------------------------------------------------------------
   Slots */

/* Rows of a CSR block sorted into slots (a slot is one group of cells: T, C or P of some test group). */
typedef struct {
  PetscInt  nslots;
  PetscInt *slot;  /* [nrows] slot of each local row, -1 = none */
  PetscInt *start; /* [nslots+1] */
  PetscInt *rows;  /* [start[nslots]] local rows of each slot, in local order */
  PetscInt *first; /* [nslots] global position (within its slot) of the slot's first local row */
  PetscInt *total; /* [nslots] global number of rows of the slot */
} SlotRows;

/* Collective: from sr->slot (set by the caller), the local rows of each slot and, over all ranks, each slot's
   size and the within-slot position of this rank's first row (rows are in global order within a slot). */
static PetscErrorCode SlotRowsBuild(MPI_Comm comm, PetscInt nrows, PetscInt nslots, SlotRows *sr)
{
  PetscMPIInt rank;
  PetscInt   *fill, *cnt;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  sr->nslots = nslots;
  PetscCall(PetscCalloc1(nslots + 1, &sr->start));
  for (PetscInt i = 0; i < nrows; i++)
    if (sr->slot[i] >= 0) sr->start[sr->slot[i] + 1]++;
  for (PetscInt s = 0; s < nslots; s++) sr->start[s + 1] += sr->start[s];
  PetscCall(PetscMalloc1(sr->start[nslots] + 1, &sr->rows));
  PetscCall(PetscMalloc2(nslots + 1, &fill, nslots + 1, &cnt));
  PetscCall(PetscArraycpy(fill, sr->start, nslots));
  for (PetscInt i = 0; i < nrows; i++)
    if (sr->slot[i] >= 0) sr->rows[fill[sr->slot[i]]++] = i;
  for (PetscInt s = 0; s < nslots; s++) cnt[s] = sr->start[s + 1] - sr->start[s];
  PetscCall(PetscCalloc1(nslots + 1, &sr->first));
  PetscCall(PetscMalloc1(nslots + 1, &sr->total));
  PetscCallMPI(MPI_Exscan(cnt, sr->first, (PetscMPIInt)nslots, MPIU_INT, MPI_SUM, comm));
  if (!rank) PetscCall(PetscArrayzero(sr->first, nslots));
  PetscCallMPI(MPI_Allreduce(cnt, sr->total, (PetscMPIInt)nslots, MPIU_INT, MPI_SUM, comm));
  PetscCall(PetscFree2(fill, cnt));
  PetscFunctionReturn(0);
}

static PetscErrorCode SlotRowsFree(SlotRows *sr)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree(sr->slot));
  PetscCall(PetscFree(sr->start));
  PetscCall(PetscFree(sr->rows));
  PetscCall(PetscFree(sr->first));
  PetscCall(PetscFree(sr->total));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------------------------------------------------------
   Subsamples */

/* Collective: the subsample (CsSubsample*, at most cap evenly spaced cells) of slot s of the distributed CSR X
   gathered on `root` as dense rows *out [*nout x G] in global order; *out is NULL elsewhere. */
static PetscErrorCode GatherSubsample(PetscLayout layout, PetscMPIInt root, const CsCSR *X, const SlotRows *sr, PetscInt s, PetscInt cap,
                                      PetscInt *nout, float **out)
{
  PetscMPIInt rank;
  PetscInt    G = X->ncols, nsel = 0, *sel;
  CsCSR       rows = {0};

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(layout->comm, &rank));
  PetscCall(PetscMalloc1(sr->start[s + 1] - sr->start[s] + 1, &sel));
  for (PetscInt r = sr->start[s]; r < sr->start[s + 1]; r++)
    if (CsSubsampleIndex(sr->first[s] + (r - sr->start[s]), sr->total[s], cap) >= 0) sel[nsel++] = sr->rows[r];
  PetscCall(CsCSRGatherRows(layout, X, nsel, sel, root, &rows));
  *out  = NULL;
  *nout = 0;
  if (rank == root) {
    PetscCheck(rows.nrows == CsSubsampleSize(sr->total[s], cap), PETSC_COMM_SELF, PETSC_ERR_PLIB,
               "subsample has %" PetscInt_FMT " rows, expected %" PetscInt_FMT, rows.nrows, CsSubsampleSize(sr->total[s], cap));
    *nout = rows.nrows;
    PetscCall(PetscMalloc1((size_t)rows.nrows * G + 1, out));
    for (PetscInt i = 0; i < rows.nrows; i++) CsCSRRowToDense(&rows, i, *out + (size_t)i * G);
  }
  PetscCall(CsCSRFree(&rows));
  PetscCall(PetscFree(sel));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------------------------------------------------------
   PCA space of a test group */

static void Symmetrise(PetscInt n, double *A) /* upper triangle (row-major) copied to the lower */
{
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt j = 0; j < i; j++) A[(size_t)i * n + j] = A[(size_t)j * n + i];
}

/* Components whose variance is below this fraction of the first are numerically zero: their directions are
   arbitrary (rank-deficient C u T), so projecting predictions on them would give arbitrary distances. */
#define CS_EVAL_EIG_RTOL 1e-9

/* Fit the PCA space of one test group on Z = [C subsample; T subsample] ([(nC + nT) x G], float). Covariance
   (G x G) when there are at least as many cells as genes, else the Gram matrix of the cells (n x n), whose
   eigenvectors u give the components Z_c^T u / sqrt(lambda). */
static PetscErrorCode SpaceFit(PetscInt G, PetscInt nC, PetscInt nT, const float *Cs, const float *Ts, PetscInt kmax,
                               CsEvalSpace *sp)
{
  PetscInt n = nC + nT, kk = PetscMin(kmax, PetscMin(n, G)), k = 0;
  double  *Z, *A, *vals, *vecs, *scores;

  PetscFunctionBeginUser;
  PetscCall(PetscLogEventBegin(CS_EVENT_PCA, 0, 0, 0, 0));
  PetscCall(PetscCalloc1(G + 1, &sp->mean));
  PetscCall(PetscMalloc1((size_t)n * G + 1, &Z));
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt j = 0; j < G; j++) Z[(size_t)i * G + j] = i < nC ? Cs[(size_t)i * G + j] : Ts[(size_t)(i - nC) * G + j];
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt j = 0; j < G; j++) sp->mean[j] += Z[(size_t)i * G + j];
  for (PetscInt j = 0; j < G && n; j++) sp->mean[j] /= (double)n;
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt j = 0; j < G; j++) Z[(size_t)i * G + j] -= sp->mean[j];
  PetscCall(PetscMalloc2(kk + 1, &vals, (size_t)kk * G + 1, &vecs));
  if (kk > 0 && n >= 2) {
    if (G <= n) {
      PetscCall(PetscMalloc1((size_t)G * G, &A));
      cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)G, (int)n, 1.0, Z, (int)G, 0.0, A, (int)G);
      Symmetrise(G, A);
      PetscCall(CsSymEigTop(G, A, kk, vals, vecs));
      PetscCall(PetscFree(A));
    } else {
      double *U;
      PetscCall(PetscMalloc2((size_t)n * n, &A, (size_t)kk * n, &U));
      cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)n, (int)G, 1.0, Z, (int)G, 0.0, A, (int)n);
      Symmetrise(n, A);
      PetscCall(CsSymEigTop(n, A, kk, vals, U));
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)kk, (int)G, (int)n, 1.0, U, (int)n, Z, (int)G, 0.0,
                  vecs, (int)G);
      for (PetscInt i = 0; i < kk; i++) {
        double f = vals[i] > 0 ? 1.0 / sqrt(vals[i]) : 0.0;
        for (PetscInt j = 0; j < G; j++) vecs[(size_t)i * G + j] *= f;
      }
      PetscCall(PetscFree2(A, U));
    }
    while (k < kk && vals[0] > 0 && vals[k] > CS_EVAL_EIG_RTOL * vals[0]) k++;
  }
  sp->k = k;
  PetscCall(PetscMalloc1((size_t)k * G + 1, &sp->V));
  PetscCall(PetscArraycpy(sp->V, vecs, (size_t)k * G));
  PetscCall(PetscFree2(vals, vecs));
  /* Scores of every subsampled cell: the bandwidth comes from C u T, the T scores are kept for scoring. */
  PetscCall(PetscMalloc1((size_t)n * k + 1, &scores));
  if (k > 0) cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)k, (int)G, 1.0, Z, (int)G, sp->V, (int)G, 0.0, scores, (int)k);
  PetscCall(CsMedianSqDist(n, k, scores, &sp->s2));
  if (!(sp->s2 > 0)) sp->s2 = 1.0; /* more than half of the pairs coincide: no scale to take, use 1 */
  sp->nT = nT;
  PetscCall(PetscMalloc1((size_t)nT * k + 1, &sp->T));
  PetscCall(PetscArraycpy(sp->T, scores + (size_t)nC * k, (size_t)nT * k));
  PetscCall(PetscFree(scores));
  PetscCall(PetscFree(Z));
  PetscCall(PetscLogEventEnd(CS_EVENT_PCA, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

static PetscErrorCode SpaceFree(CsEvalSpace *sp)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree(sp->mean));
  PetscCall(PetscFree(sp->V));
  PetscCall(PetscFree(sp->T));
  PetscCall(PetscMemzero(sp, sizeof(*sp)));
  PetscFunctionReturn(0);
}

/* Energy distance and MMD of the predicted subsample Ps [nP x G] against the group's T subsample. The projection
   runs over blocks of rows, so the double copy stays small however many genes there are. */
static PetscErrorCode SpaceScore(PetscInt G, const CsEvalSpace *sp, PetscInt nP, const float *Ps, double *energy,
                                 double *mmd)
{
  const PetscInt B = 64;
  PetscInt       k = sp->k;
  double        *Z, *S;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc2((size_t)B * G + 1, &Z, (size_t)nP * k + 1, &S));
  for (PetscInt i0 = 0; i0 < nP && k > 0; i0 += B) {
    PetscInt nb = PetscMin(B, nP - i0);
    for (PetscInt i = 0; i < nb; i++)
      for (PetscInt j = 0; j < G; j++) Z[(size_t)i * G + j] = (double)Ps[(size_t)(i0 + i) * G + j] - sp->mean[j];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)k, (int)G, 1.0, Z, (int)G, sp->V, (int)G, 0.0,
                S + (size_t)i0 * k, (int)k);
  }
  PetscCall(CsEnergyDistance(nP, sp->nT, k, S, sp->T, energy));
  PetscCall(CsMMDRBF(nP, sp->nT, k, S, sp->T, sp->s2, mmd));
  PetscCall(PetscFree2(Z, S));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------------------------------------------------------
   The object */

PetscErrorCode CsEvaluatorCreate(MPI_Comm comm, CsEvaluator *out)
{
  CsEvaluator e;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&e));
  e->comm      = comm;
  e->max_cells    = 1000;
  e->pca_k        = 50;
  e->gi_min_mean  = 0.1;
  e->gi_max_pairs = 100000;
  PetscCall(PetscStrncpy(e->vcc_baseline, CSMODELMEAN, sizeof(e->vcc_baseline)));
  PetscCallMPI(MPI_Comm_rank(comm, &e->rank));
  PetscCallMPI(MPI_Comm_size(comm, &e->size));
  *out = e;
  PetscFunctionReturn(0);
}

PetscErrorCode CsEvaluatorSetFromOptions(CsEvaluator e)
{
  PetscFunctionBeginUser;
  PetscOptionsBegin(e->comm, NULL, "Evaluation options", "CsEvaluator");
  PetscCall(PetscOptionsInt("-eval_max_cells", "Cells of P, T and C (each, evenly spaced) used for energy distance and MMD",
                            "CsEvaluatorSetFromOptions", e->max_cells, &e->max_cells, NULL));
  PetscCall(PetscOptionsInt("-eval_pca_components", "Principal components of C u T in which energy distance and MMD are computed",
                            "CsEvaluatorSetFromOptions", e->pca_k, &e->pca_k, NULL));
  PetscCall(PetscOptionsString("-eval_vcc_baseline", "Scored model whose aggregates normalise vcc_score (the cell-mean baseline)",
                               "CsEvaluatorSetFromOptions", e->vcc_baseline, e->vcc_baseline, sizeof(e->vcc_baseline), NULL));
  PetscCall(PetscOptionsReal("-gi_min_mean", "Genetic interactions: genes whose control mean (log-normalised) is at least this",
                             "CsEvaluatorSetFromOptions", e->gi_min_mean, &e->gi_min_mean, NULL));
  PetscCall(PetscOptionsInt("-gi_max_pairs", "Genetic interactions: gene pairs of the Theil-Sen fit (evenly subsampled beyond)",
                            "CsEvaluatorSetFromOptions", e->gi_max_pairs, &e->gi_max_pairs, NULL));
  PetscOptionsEnd();
  PetscCheck(e->gi_max_pairs >= 1, e->comm, CS_ERR_INPUT, "-gi_max_pairs must be at least 1 (got %" PetscInt_FMT ")", e->gi_max_pairs);
  PetscCheck(e->max_cells >= 2, e->comm, CS_ERR_INPUT, "-eval_max_cells must be at least 2 (got %" PetscInt_FMT ")", e->max_cells);
  PetscCheck(e->pca_k >= 1, e->comm, CS_ERR_INPUT, "-eval_pca_components must be at least 1 (got %" PetscInt_FMT ")", e->pca_k);
  PetscCheck(!PetscIsInfOrNanReal(e->gi_min_mean), e->comm, CS_ERR_INPUT, "-gi_min_mean must be a finite number (got %.6g)", (double)e->gi_min_mean);
  PetscFunctionReturn(0);
}

static PetscErrorCode ModelFree(CsEvalModel *m)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree(m->values));
  PetscCall(PetscFree(m->npred));
  PetscCall(PetscFree(m->mP));
  PetscCall(PetscFree(m->cagg));
  PetscCall(PetscFree(m->gi));
  PetscFunctionReturn(0);
}

static PetscErrorCode EvaluatorReset(CsEvaluator e)
{
  PetscFunctionBeginUser;
  for (PetscInt t = 0; e->space && t < e->ntest; t++) PetscCall(SpaceFree(&e->space[t]));
  for (PetscInt i = 0; i < e->nmodels; i++) PetscCall(ModelFree(&e->models[i]));
  PetscCall(PetscFree(e->models));
  PetscCall(PetscFree(e->space));
  PetscCall(PetscFree(e->test));
  PetscCall(PetscFree(e->tindex));
  PetscCall(PetscFree2(e->nT, e->nC));
  PetscCall(PetscFree4(e->mT, e->vT, e->mC, e->vC));
  PetscCall(PetscFree2(e->de, e->nde));
  PetscCall(PetscFree(e->cat));
  PetscCall(PetscFree(e->catname));
  PetscCall(PetscFree(e->atomgene));
  PetscCall(PetscFree(e->mRef));
  PetscCall(PetscFree(e->lfcT));
  PetscCall(PetscFree2(e->desT, e->ndesT));
  PetscCall(PetscFree(e->ccol));
  PetscCall(CsEvalColumnsFree(&e->cols));
  PetscCall(CsEvalGIFree(e));
  e->nmodels = e->ntest = e->ncat = 0;
  e->setup   = PETSC_FALSE;
  PetscFunctionReturn(0);
}

/* The test groups in group order, and the check that each has controls to compare with. */
static PetscErrorCode SetUpTestGroups(CsEvaluator e)
{
  CsDesign d     = e->d;
  PetscInt ntest = 0;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(d->ngroups + 1, &e->tindex));
  for (PetscInt g = 0; g < d->ngroups; g++) e->tindex[g] = (e->s->role[g] == CS_ROLE_TEST && !d->groups[g].control) ? ntest++ : -1;
  CsCheckAll(e->comm, ntest > 0, "the split has no test group to evaluate");
  e->ntest = ntest;
  PetscCall(PetscMalloc1(ntest, &e->test));
  for (PetscInt g = 0; g < d->ngroups; g++)
    if (e->tindex[g] >= 0) e->test[e->tindex[g]] = g;
  for (PetscInt t = 0; t < ntest; t++) {
    char name[512];
    PetscCall(CsDesignGroupName(d, e->test[t], name, sizeof(name)));
    CsCheckAll(e->comm, d->groups[e->test[t]].ctrl >= 0, "test group %s has no control cells in its context to compare with", name);
  }
  PetscFunctionReturn(0);
}

/* Slots of the data's cells: test group t is slot t (its T); the control groups of the test groups follow, one
   slot each (cslot[g] for control group g). */
static PetscErrorCode SetUpSlots(CsEvaluator e, PetscInt *cslot, SlotRows *sr)
{
  CsDesign d = e->d;
  PetscInt nslots = e->ntest;

  PetscFunctionBeginUser;
  for (PetscInt g = 0; g < d->ngroups; g++) cslot[g] = -1;
  for (PetscInt t = 0; t < e->ntest; t++) {
    PetscInt c = d->groups[e->test[t]].ctrl;
    if (cslot[c] < 0) cslot[c] = nslots++;
  }
  PetscCall(PetscMemzero(sr, sizeof(*sr)));
  PetscCall(PetscMalloc1(e->ds->nlocal + 1, &sr->slot));
  for (PetscInt i = 0; i < e->ds->nlocal; i++) {
    PetscInt g  = d->cell_group[i];
    sr->slot[i] = g < 0 ? -1 : (e->tindex[g] >= 0 ? e->tindex[g] : cslot[g]);
  }
  PetscCall(SlotRowsBuild(e->comm, e->ds->nlocal, nslots, sr));
  PetscFunctionReturn(0);
}

/* Means and variances of T and C of every test group. */
static PetscErrorCode SetUpStats(CsEvaluator e, const PetscInt *cslot, const SlotRows *sr)
{
  PetscInt G = e->G, ntest = e->ntest;
  double  *mean, *var;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc2((size_t)sr->nslots * G, &mean, (size_t)sr->nslots * G, &var));
  PetscCall(CsDatasetGroupStats(e->ds, sr->nslots, sr->slot, NULL, mean, var));
  PetscCall(PetscMalloc2(ntest, &e->nT, ntest, &e->nC));
  PetscCall(PetscMalloc4((size_t)ntest * G, &e->mT, (size_t)ntest * G, &e->vT, (size_t)ntest * G, &e->mC, (size_t)ntest * G, &e->vC));
  for (PetscInt t = 0; t < ntest; t++) {
    PetscInt c = cslot[e->d->groups[e->test[t]].ctrl];
    e->nT[t] = sr->total[t], e->nC[t] = sr->total[c];
    PetscCall(PetscArraycpy(e->mT + (size_t)t * G, mean + (size_t)t * G, G));
    PetscCall(PetscArraycpy(e->vT + (size_t)t * G, var + (size_t)t * G, G));
    PetscCall(PetscArraycpy(e->mC + (size_t)t * G, mean + (size_t)c * G, G));
    PetscCall(PetscArraycpy(e->vC + (size_t)t * G, var + (size_t)c * G, G));
  }
  PetscCall(PetscFree2(mean, var));
  PetscFunctionReturn(0);
}

/* DE genes of T vs C. */
static PetscErrorCode SetUpDE(CsEvaluator e)
{
  PetscInt G = e->G;
  double  *tstat;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc2((size_t)e->ntest * CS_EVAL_TOP_DE, &e->de, e->ntest, &e->nde));
  PetscCall(PetscMalloc1(G + 1, &tstat));
  for (PetscInt t = 0; t < e->ntest; t++) {
    size_t o = (size_t)t * G;
    CsWelchT(G, e->mT + o, e->vT + o, (double)e->nT[t], e->mC + o, e->vC + o, (double)e->nC[t], tstat);
    PetscCall(CsTopAbs(G, tstat, CS_EVAL_TOP_DE, e->de + (size_t)t * CS_EVAL_TOP_DE, &e->nde[t]));
  }
  PetscCall(PetscFree(tstat));
  PetscFunctionReturn(0);
}

static int CmpStr(const void *a, const void *b) { return strcmp((const char *)a, (const char *)b); }

/* The split's categories of the test groups (sorted, each once) and the category of each test group. */
static PetscErrorCode SetUpCategories(CsEvaluator e)
{
  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(e->ntest, &e->catname));
  PetscCall(PetscMalloc1(e->ntest, &e->cat));
  for (PetscInt t = 0; t < e->ntest; t++) PetscCall(PetscStrncpy(e->catname[t], e->s->category[e->test[t]], sizeof(e->catname[t])));
  qsort(e->catname, (size_t)e->ntest, sizeof(e->catname[0]), CmpStr);
  e->ncat = 0;
  for (PetscInt t = 0; t < e->ntest; t++) {
    if (e->ncat && !strcmp(e->catname[e->ncat - 1], e->catname[t])) continue;
    if (e->ncat != t) PetscCall(PetscArraycpy(e->catname[e->ncat], e->catname[t], sizeof(e->catname[0])));
    e->ncat++;
  }
  for (PetscInt t = 0; t < e->ntest; t++) {
    const char (*hit)[32] = bsearch(e->s->category[e->test[t]], e->catname, (size_t)e->ncat, sizeof(e->catname[0]), CmpStr);
    e->cat[t] = (PetscInt)(hit - e->catname);
  }
  PetscFunctionReturn(0);
}

/* The gene named like each atom (its target gene), -1 where none. */
static PetscErrorCode SetUpAtomGenes(CsEvaluator e)
{
  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(e->d->natoms + 1, &e->atomgene));
  for (PetscInt a = 0; a < e->d->natoms; a++) {
    e->atomgene[a] = -1;
    for (PetscInt j = 0; j < e->G && e->atomgene[a] < 0; j++)
      if (!strcmp(e->ds->genes[j], e->d->atoms[a])) e->atomgene[a] = j;
  }
  PetscFunctionReturn(0);
}

/* Systema's reference of every test group: its control mean plus the context's mean training shift. */
static PetscErrorCode SetUpReference(CsEvaluator e)
{
  PetscInt G = e->G;
  double  *shift;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1((size_t)e->d->nctx * G + 1, &shift));
  PetscCall(CsContextMeanShifts(e->ds, e->d, e->s, PETSC_FALSE, shift, NULL)); /* the train groups only, as Systema */
  PetscCall(PetscMalloc1((size_t)e->ntest * G, &e->mRef));
  for (PetscInt t = 0; t < e->ntest; t++) {
    const double *sh = shift + (size_t)e->d->groups[e->test[t]].ctx * G, *mC = e->mC + (size_t)t * G;
    for (PetscInt j = 0; j < G; j++) e->mRef[(size_t)t * G + j] = mC[j] + sh[j];
  }
  PetscCall(PetscFree(shift));
  PetscFunctionReturn(0);
}

/* The significant genes of a set X (T or P) of every test group against its controls, by |lfc|: p [ntest x G] from
   the rank tests, mX the means. */
static PetscErrorCode SignificantGenes(CsEvaluator e, const double *p, const double *mX, double *lfc, PetscInt *set, PetscInt *nset)
{
  PetscInt G = e->G;
  double  *q;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(G + 1, &q));
  for (PetscInt t = 0; t < e->ntest; t++) {
    size_t o = (size_t)t * G;
    PetscCall(CsBenjaminiHochberg(G, p + o, q));
    CsLog2FoldChange(G, mX + o, e->mC + o, lfc + o);
    PetscCall(CsDESet(G, q, lfc + o, set + o, &nset[t]));
  }
  PetscCall(PetscFree(q));
  PetscFunctionReturn(0);
}

/* The rank tests of T against C for every test group (de_score's true DE genes); keeps the columns of C. */
static PetscErrorCode SetUpRankTests(CsEvaluator e, const PetscInt *cslot, const SlotRows *sr)
{
  PetscInt G = e->G, *ts;
  double  *p;

  PetscFunctionBeginUser;
  PetscCall(CsEvalColumnsBuild(e->comm, &e->X, sr->slot, sr->nslots, sr->total, &e->cols));
  PetscCall(PetscMalloc1(e->ntest, &e->ccol));
  PetscCall(PetscMalloc1(e->ntest, &ts));
  for (PetscInt t = 0; t < e->ntest; t++) e->ccol[t] = cslot[e->d->groups[e->test[t]].ctrl], ts[t] = t;
  PetscCall(PetscMalloc1((size_t)e->ntest * G, &p));
  PetscCall(CsEvalColumnsTest(e->comm, &e->cols, ts, &e->cols, e->ccol, e->ntest, p));
  PetscCall(PetscMalloc1((size_t)e->ntest * G, &e->lfcT));
  PetscCall(PetscMalloc2((size_t)e->ntest * G, &e->desT, e->ntest, &e->ndesT));
  PetscCall(SignificantGenes(e, p, e->mT, e->lfcT, e->desT, e->ndesT));
  PetscCall(PetscFree(p));
  PetscCall(PetscFree(ts));
  PetscFunctionReturn(0);
}

/* PCA spaces, a batch of one group per rank at a time: gather every group of the batch, then fit in parallel. */
static PetscErrorCode SetUpSpaces(CsEvaluator e, const PetscInt *cslot, const SlotRows *sr)
{
  PetscFunctionBeginUser;
  PetscCall(PetscCalloc1(e->ntest, &e->space));
  for (PetscInt b0 = 0; b0 < e->ntest; b0 += e->size) {
    PetscInt nb = PetscMin((PetscInt)e->size, e->ntest - b0), nCs = 0, nTs = 0;
    float   *Cs = NULL, *Ts = NULL;
    for (PetscInt t = b0; t < b0 + nb; t++) {
      PetscMPIInt root = CsEvalOwner(e, t);
      PetscInt    c    = cslot[e->d->groups[e->test[t]].ctrl], n1, n2;
      float      *r1, *r2;
      PetscCall(GatherSubsample(e->ds->rows, root, &e->X, sr, c, e->max_cells, &n1, &r1));
      PetscCall(GatherSubsample(e->ds->rows, root, &e->X, sr, t, e->max_cells, &n2, &r2));
      if (root == e->rank) Cs = r1, Ts = r2, nCs = n1, nTs = n2;
    }
    for (PetscInt t = b0; t < b0 + nb; t++)
      if (CsEvalOwner(e, t) == e->rank) PetscCall(SpaceFit(e->G, nCs, nTs, Cs, Ts, e->pca_k, &e->space[t]));
    PetscCall(PetscFree(Cs));
    PetscCall(PetscFree(Ts));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsEvaluatorSetUp(CsEvaluator e, CsDataset ds, CsDesign d, CsSplit s)
{
  PetscInt *cslot;
  SlotRows  sr;

  PetscFunctionBeginUser;
  if (e->setup && e->ds == ds && e->d == d && e->s == s) PetscFunctionReturn(0);
  PetscCheck(ds->setup && d->setup && s->setup, e->comm, PETSC_ERR_ORDER, "set up the dataset, design and split first");
  PetscCall(EvaluatorReset(e));
  PetscCall(PetscLogEventBegin(CS_EVENT_EVAL, 0, 0, 0, 0));
  e->ds = ds, e->d = d, e->s = s, e->G = ds->ngenes;
  PetscCall(SetUpTestGroups(e));
  PetscCall(PetscMalloc1(d->ngroups + 1, &cslot));
  PetscCall(SetUpSlots(e, cslot, &sr));
  PetscCall(SetUpStats(e, cslot, &sr));
  { /* the rows of the evaluated groups (T and C): ds->X in memory, read once when streamed */
    PetscBool *keep;
    PetscCall(PetscMalloc1(ds->nlocal + 1, &keep));
    for (PetscInt i = 0; i < ds->nlocal; i++) keep[i] = (PetscBool)(sr.slot[i] >= 0);
    PetscCall(CsDatasetGetMasked(ds, keep, &e->X, &e->Xborrowed));
    PetscCall(PetscFree(keep));
  }
  PetscCall(SetUpDE(e));
  PetscCall(SetUpCategories(e));
  PetscCall(SetUpAtomGenes(e));
  PetscCall(SetUpReference(e));
  PetscCall(SetUpRankTests(e, cslot, &sr));
  PetscCall(CsEvalGISetUp(e));
  PetscCall(SetUpSpaces(e, cslot, &sr));
  if (!e->Xborrowed) PetscCall(CsCSRFree(&e->X));
  PetscCall(PetscMemzero(&e->X, sizeof(e->X)));
  PetscCall(SlotRowsFree(&sr));
  PetscCall(PetscFree(cslot));
  PetscCall(PetscLogEventEnd(CS_EVENT_EVAL, 0, 0, 0, 0));
  e->setup = PETSC_TRUE;
  PetscFunctionReturn(0);
}

/* Collective: read a predictions file and check it against the data. */
static PetscErrorCode PredictionsRead(CsEvaluator e, const char path[], CsDataset *out)
{
  CsDesign  d = e->d;
  CsDataset p;
  PetscBool exists;
  char      msg[CS_MSG_LEN] = "";

  PetscFunctionBeginUser;
  PetscCall(CsFileExists(e->comm, path, &exists));
  CsCheckAll(e->comm, exists, "predictions file %s does not exist", path);
  PetscCall(CsDatasetCreate(e->comm, &p));
  PetscCall(CsDatasetSetFile(p, path, ""));
  PetscCall(CsDatasetAddObsKey(p, d->pert_key, PETSC_TRUE));
  if (d->context_key[0]) PetscCall(CsDatasetAddObsKey(p, d->context_key, PETSC_TRUE));
  if (d->dose_key[0]) PetscCall(CsDatasetAddObsKey(p, d->dose_key, PETSC_TRUE));
  PetscCall(CsDatasetAddObsKey(p, CS_EVAL_KIND_KEY, PETSC_FALSE));
  PetscCall(CsDatasetSetUp(p));
  /* Gene names are identical on every rank, so every rank reaches the same verdict. */
  if (p->ngenes != e->G)
    PetscCall(PetscSNPrintf(msg, sizeof(msg), "predictions %s have %" PetscInt_FMT " genes, the data has %" PetscInt_FMT,
                            path, p->ngenes, e->G));
  for (PetscInt j = 0; j < e->G && !msg[0]; j++)
    if (strcmp(p->genes[j], e->ds->genes[j]))
      PetscCall(PetscSNPrintf(msg, sizeof(msg),
                              "predictions %s: gene %" PetscInt_FMT " is '%s' where the data has '%s' (the genes must be the data's, in its order)",
                              path, j, p->genes[j], e->ds->genes[j]));
  if (msg[0]) PetscCall(CsDatasetDestroy(&p));
  PetscCall(CsAgree(e->comm, msg[0] ? PETSC_FALSE : PETSC_TRUE, msg));
  *out = p;
  PetscFunctionReturn(0);
}

/* Test index of every row of the predictions (-1 for the observed control rows). Rows marked cellshift_kind =
   observed are the controls written for reference; without that column, rows labelled with the control value
   are taken as such. Any other row must name a test group of the split. */
static PetscErrorCode PredictionsMap(CsEvaluator e, CsDataset p, const char path[], PetscInt *slot)
{
  CsDesign     d  = e->d;
  CsObsColumn *pc = NULL, *cc = NULL, *dc = NULL, *kc = NULL;
  PetscInt    *condof = NULL, *ctxof = NULL, ndose;
  char         msg[CS_MSG_LEN] = "";

  PetscFunctionBeginUser;
  PetscCall(CsDatasetGetObs(p, d->pert_key, &pc));
  if (d->context_key[0]) PetscCall(CsDatasetGetObs(p, d->context_key, &cc));
  if (d->dose_key[0]) PetscCall(CsDatasetGetObs(p, d->dose_key, &dc));
  PetscCall(CsDatasetGetObs(p, CS_EVAL_KIND_KEY, &kc));
  if (kc && kc->kind != CS_OBS_CATEGORICAL) kc = NULL;
  PetscCheck(pc && pc->kind == CS_OBS_CATEGORICAL, e->comm, CS_ERR_INPUT, "predictions %s: obs column '%s' must hold labels",
             path, d->pert_key);
  /* Labels are resolved once per category (per pair with the dose category), not once per row. */
  ndose = dc && dc->kind == CS_OBS_CATEGORICAL ? dc->ncat : 1;
  PetscCall(PetscMalloc1((size_t)pc->ncat * ndose + 1, &condof));
  for (size_t q = 0; q < (size_t)pc->ncat * ndose; q++) condof[q] = -2;
  if (cc) {
    PetscCheck(cc->kind == CS_OBS_CATEGORICAL, e->comm, CS_ERR_INPUT, "predictions %s: obs column '%s' must hold labels",
               path, d->context_key);
    PetscCall(PetscMalloc1(cc->ncat + 1, &ctxof));
    for (PetscInt c = 0; c < cc->ncat; c++) ctxof[c] = CsDesignFindContext(d, cc->cats[c]);
  }
  for (PetscInt i = 0; i < p->nlocal && !msg[0]; i++) {
    PetscInt    pcode = pc->codes[i], ctx = 0, cond, g, dq = 0;
    const char *ctxname = "", *dose = NULL;
    char        dbuf[64];
    slot[i] = -1;
    if (kc && kc->codes[i] >= 0 && !strcmp(kc->cats[kc->codes[i]], "observed")) continue;
    if (pcode < 0) {
      PetscCall(PetscSNPrintf(msg, sizeof(msg), "predictions %s: row %" PetscInt_FMT " has no '%s' label", path,
                              p->rstart + i, d->pert_key));
      break;
    }
    if (!kc && !strcmp(pc->cats[pcode], d->control_value)) continue;
    if (cc) {
      ctx     = cc->codes[i] >= 0 ? ctxof[cc->codes[i]] : -1;
      ctxname = cc->codes[i] >= 0 ? cc->cats[cc->codes[i]] : "(missing)";
    }
    if (dc && dc->kind == CS_OBS_CATEGORICAL) dq = dc->codes[i] >= 0 ? dc->codes[i] : 0, dose = dc->codes[i] >= 0 ? dc->cats[dc->codes[i]] : "";
    else if (dc) {
      PetscCall(PetscSNPrintf(dbuf, sizeof(dbuf), "%g", dc->values[i]));
      dose = dbuf;
    }
    if (dc && dc->kind != CS_OBS_CATEGORICAL) PetscCall(CsDesignFindCondition(d, pc->cats[pcode], dose, &cond));
    else {
      PetscInt *cq = &condof[(size_t)pcode * ndose + dq];
      if (*cq == -2) PetscCall(CsDesignFindCondition(d, pc->cats[pcode], dose, cq));
      cond = *cq;
    }
    g       = cond >= 0 && ctx >= 0 ? CsDesignFindGroup(d, cond, ctx) : -1;
    slot[i] = g >= 0 ? e->tindex[g] : -1;
    if (slot[i] < 0)
      PetscCall(PetscSNPrintf(msg, sizeof(msg), "predictions %s: row %" PetscInt_FMT " (%s '%s'%s%s%s%s%s) matches no test group of the split",
                              path, p->rstart + i, d->pert_key, pc->cats[pcode], cc ? ", " : "", cc ? d->context_key : "",
                              cc ? " '" : "", ctxname, cc ? "'" : ""));
  }
  PetscCall(PetscFree(condof));
  PetscCall(PetscFree(ctxof));
  PetscCall(CsAgree(e->comm, msg[0] ? PETSC_FALSE : PETSC_TRUE, msg));
  PetscFunctionReturn(0);
}

/* Every metric of test group t built on its own means (all but energy distance, MMD, de_score and the metrics that
   compare the groups of a context). work [4 G + 40]. */
static PetscErrorCode GroupMetrics(CsEvaluator e, PetscInt t, const double *mP, const double *vP, PetscInt nP, double *val,
                                   double *work)
{
  PetscInt      G = e->G, nde = e->nde[t], n20 = PetscMin(nde, 20), top[20], ntop, hit = 0;
  const double *mT = e->mT + (size_t)t * G, *mC = e->mC + (size_t)t * G, *vC = e->vC + (size_t)t * G, *R = e->mRef + (size_t)t * G;
  const PetscInt *de = e->de + (size_t)t * CS_EVAL_TOP_DE;
  double       *a = work, *b = work + G, *c = work + 2 * G, *dd = work + 3 * G;

  PetscFunctionBeginUser;
  val[CS_M_RMSE] = CsEvalRMSE(G, mP, mT);
  {
    double s = 0;
    for (PetscInt j = 0; j < G; j++) s += fabs(mP[j] - mT[j]);
    val[CS_M_MAE] = G ? s / G : 0.0;
  }
  {
    double r = CsPearson(G, mP, mT);
    val[CS_M_R2_ALL] = r * r;
  }
  for (PetscInt i = 0; i < nde; i++) a[i] = mP[de[i]], b[i] = mT[de[i]];
  {
    double r = CsPearson(nde, a, b);
    val[CS_M_R2_TOP100] = r * r;
  }
  for (PetscInt j = 0; j < G; j++) c[j] = mP[j] - mC[j], dd[j] = mT[j] - mC[j];
  val[CS_M_PEARSON_DELTA] = CsPearson(G, c, dd);
  for (PetscInt i = 0; i < n20; i++) a[i] = c[de[i]], b[i] = dd[de[i]];
  val[CS_M_PEARSON_DELTA_TOP20] = CsPearson(n20, a, b);
  for (PetscInt j = 0; j < G; j++) a[j] = CsEvalLog(mP[j]) - CsEvalLog(mC[j]), b[j] = CsEvalLog(mT[j]) - CsEvalLog(mC[j]);
  val[CS_M_COSINE_LOGFC] = CsCosine(G, a, b);
  for (PetscInt j = 0; j < G; j++) c[j] = mP[j] - R[j], dd[j] = mT[j] - R[j];
  val[CS_M_PEARSON_DELTA_PERT] = CsPearson(G, c, dd);
  for (PetscInt i = 0; i < n20; i++) a[i] = c[de[i]], b[i] = dd[de[i]];
  val[CS_M_PEARSON_DELTA_PERT_TOP20] = CsPearson(n20, a, b);
  CsWelchT(G, mP, vP, (double)nP, mC, vC, (double)e->nC[t], a);
  PetscCall(CsTopAbs(G, a, 20, top, &ntop));
  for (PetscInt i = 0; i < ntop; i++)
    for (PetscInt k = 0; k < n20; k++) hit += top[i] == de[k];
  val[CS_M_DE_RECALL20] = hit / 20.0;
  PetscFunctionReturn(0);
}

/* The entry of model `name` (a model scored again under the same name replaces its earlier scores), reset. */
static PetscErrorCode ModelEntry(CsEvaluator e, const char name[], const char path[], PetscBool baseline, CsEvalModel **out)
{
  CsEvalModel *m = NULL;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < e->nmodels; i++)
    if (!strcmp(e->models[i].name, name)) m = &e->models[i];
  if (!m) {
    CsEvalModel *grown;
    PetscCall(PetscCalloc1(e->nmodels + 1, &grown));
    if (e->nmodels) PetscCall(PetscArraycpy(grown, e->models, e->nmodels));
    PetscCall(PetscFree(e->models));
    e->models = grown;
    m         = &e->models[e->nmodels++];
  } else PetscCall(ModelFree(m));
  PetscCall(PetscMemzero(m, sizeof(*m)));
  PetscCall(PetscStrncpy(m->name, name, sizeof(m->name)));
  PetscCall(PetscStrncpy(m->path, path, sizeof(m->path)));
  m->baseline = baseline;
  m->params   = -1;
  PetscCall(PetscCalloc1((size_t)e->ntest * CS_NMETRICS, &m->values));
  PetscCall(PetscMalloc1(e->ntest, &m->npred));
  PetscCall(PetscMalloc1((size_t)e->ntest * e->G, &m->mP));
  PetscCall(PetscCalloc1((size_t)e->ncat * CS_NMETRICS + 1, &m->cagg));
  *out = m;
  PetscFunctionReturn(0);
}

/* Energy distance and MMD of every group, on the owners, a batch of one group per rank at a time: dist[2t],
   dist[2t + 1] on every rank. */
static PetscErrorCode ScoreDistances(CsEvaluator e, CsDataset p, const SlotRows *sr, double *dist)
{
  PetscFunctionBeginUser;
  PetscCall(PetscArrayzero(dist, 2 * (size_t)e->ntest));
  for (PetscInt b0 = 0; b0 < e->ntest; b0 += e->size) {
    PetscInt nb = PetscMin((PetscInt)e->size, e->ntest - b0), nPs = 0, mine = -1;
    float   *Ps = NULL;
    for (PetscInt t = b0; t < b0 + nb; t++) {
      PetscInt n1;
      float   *r1;
      PetscCall(GatherSubsample(p->rows, CsEvalOwner(e, t), &p->X, sr, t, e->max_cells, &n1, &r1));
      if (CsEvalOwner(e, t) == e->rank) Ps = r1, nPs = n1, mine = t;
    }
    if (mine >= 0) PetscCall(SpaceScore(e->G, &e->space[mine], nPs, Ps, &dist[2 * mine], &dist[2 * mine + 1]));
    PetscCall(PetscFree(Ps));
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, dist, (PetscMPIInt)(2 * e->ntest), MPI_DOUBLE, MPI_SUM, e->comm));
  PetscFunctionReturn(0);
}

/* de_score of every test group: the rank tests of P against C, then the overlap of the significant genes. */
static PetscErrorCode ScoreDE(CsEvaluator e, CsDataset p, const SlotRows *sr, CsEvalModel *m)
{
  PetscInt      G = e->G, *ts, *set, *nset;
  CsEvalColumns cp;
  double       *pv, *lfc;

  PetscFunctionBeginUser;
  PetscCall(CsEvalColumnsBuild(e->comm, &p->X, sr->slot, e->ntest, sr->total, &cp));
  PetscCall(PetscMalloc1(e->ntest, &ts));
  for (PetscInt t = 0; t < e->ntest; t++) ts[t] = t;
  PetscCall(PetscMalloc4((size_t)e->ntest * G, &pv, (size_t)e->ntest * G, &lfc, (size_t)e->ntest * G, &set, e->ntest, &nset));
  PetscCall(CsEvalColumnsTest(e->comm, &cp, ts, &e->cols, e->ccol, e->ntest, pv));
  PetscCall(SignificantGenes(e, pv, m->mP, lfc, set, nset));
  for (PetscInt t = 0; t < e->ntest; t++)
    PetscCall(CsDEOverlap(e->ndesT[t], e->desT + (size_t)t * G, nset[t], set + (size_t)t * G, &m->values[(size_t)t * CS_NMETRICS + CS_M_DE_SCORE]));
  PetscCall(PetscFree4(pv, lfc, set, nset));
  PetscCall(PetscFree(ts));
  PetscCall(CsEvalColumnsFree(&cp));
  PetscFunctionReturn(0);
}

/* Means over the groups t with in(t) where the metric is defined (NaN where it is nowhere defined). */
static void AggregateOver(CsEvaluator e, const CsEvalModel *m, PetscInt cat, double *agg)
{
  for (PetscInt k = 0; k < CS_NMETRICS; k++) {
    double   s = 0;
    PetscInt n = 0;
    for (PetscInt t = 0; t < e->ntest; t++) {
      double v = m->values[(size_t)t * CS_NMETRICS + k];
      if ((cat < 0 || e->cat[t] == cat) && !isnan(v)) s += v, n++;
    }
    agg[k] = n ? s / (double)n : NAN;
  }
}

/* The aggregates over all test groups and per category. */
static void Aggregate(CsEvaluator e, CsEvalModel *m)
{
  AggregateOver(e, m, -1, m->agg);
  for (PetscInt c = 0; c < e->ncat; c++) AggregateOver(e, m, c, m->cagg + (size_t)c * CS_NMETRICS);
}

/* cell-eval's normalisation of one aggregate against the baseline's, clipped at 0; NaN and division by 0 give 0. */
static double VccTerm(double u, double b, PetscBool byone)
{
  double v = byone ? (u - b) / (1 - b) : 1 - u / b;
  return isnan(v) || (byone && b == 1) || (!byone && b == 0) ? 0.0 : PetscMax(v, 0.0);
}

double CsEvalVccScore(CsEvaluator e, const CsEvalModel *m, PetscInt cat)
{
  const CsEvalModel *base = NULL;
  const double      *u, *b;

  for (PetscInt i = 0; i < e->nmodels; i++)
    if (!strcmp(e->models[i].name, e->vcc_baseline)) base = &e->models[i];
  if (!base) return NAN;
  u = cat < 0 ? m->agg : m->cagg + (size_t)cat * CS_NMETRICS;
  b = cat < 0 ? base->agg : base->cagg + (size_t)cat * CS_NMETRICS;
  return (VccTerm(u[CS_M_DE_SCORE], b[CS_M_DE_SCORE], PETSC_TRUE) + VccTerm(u[CS_M_DISCRIMINATION], b[CS_M_DISCRIMINATION], PETSC_TRUE) +
          VccTerm(u[CS_M_MAE], b[CS_M_MAE], PETSC_FALSE)) / 3;
}

PetscErrorCode CsEvaluatorSetParams(CsEvaluator e, const char name[], PetscInt64 n)
{
  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < e->nmodels; i++)
    if (!strcmp(e->models[i].name, name)) e->models[i].params = n;
  PetscFunctionReturn(0);
}

PetscErrorCode CsEvaluatorScore(CsEvaluator e, const char name[], const char path[], PetscBool baseline)
{
  PetscInt     G = e->G, ntest = e->ntest, missing = -1;
  CsDataset    p = NULL;
  SlotRows     sr;
  CsEvalModel *m = NULL;
  double      *vP, *dist, *work;

  PetscFunctionBeginUser;
  PetscCheck(e->setup, e->comm, PETSC_ERR_ORDER, "call CsEvaluatorSetUp before CsEvaluatorScore");
  PetscCall(PetscLogEventBegin(CS_EVENT_EVAL, 0, 0, 0, 0));
  PetscCall(PredictionsRead(e, path, &p));
  PetscCall(PetscMemzero(&sr, sizeof(sr)));
  PetscCall(PetscMalloc1(p->nlocal + 1, &sr.slot));
  PetscCall(PredictionsMap(e, p, path, sr.slot));
  PetscCall(SlotRowsBuild(e->comm, p->nlocal, ntest, &sr));
  for (PetscInt t = 0; t < ntest && missing < 0; t++)
    if (!sr.total[t]) missing = t;
  if (missing >= 0) {
    char gname[512];
    PetscCall(CsDesignGroupName(e->d, e->test[missing], gname, sizeof(gname)));
    PetscCall(SlotRowsFree(&sr));
    PetscCall(CsDatasetDestroy(&p));
    CsCheckAll(e->comm, PETSC_FALSE, "predictions %s have no predicted cells for test group %s", path, gname);
  }
  PetscCall(ModelEntry(e, name, path, baseline, &m));
  PetscCall(PetscArraycpy(m->npred, sr.total, ntest));
  PetscCall(PetscMalloc3((size_t)ntest * G, &vP, 2 * (size_t)ntest, &dist, 4 * (size_t)G + 4 * CS_EVAL_TOP_DE, &work));
  PetscCall(CsCSRGroupStats(e->comm, &p->X, ntest, sr.slot, NULL, m->mP, vP));
  PetscCall(ScoreDistances(e, p, &sr, dist));
  for (PetscInt t = 0; t < ntest; t++) {
    double *val = m->values + (size_t)t * CS_NMETRICS;
    PetscCall(GroupMetrics(e, t, m->mP + (size_t)t * G, vP + (size_t)t * G, m->npred[t], val, work));
    val[CS_M_ENERGY] = dist[2 * t];
    val[CS_M_MMD]    = dist[2 * t + 1];
  }
  PetscCall(ScoreDE(e, p, &sr, m));
  PetscCall(CsEvalContextMetrics(e, m));
  PetscCall(CsEvalGIScore(e, m));
  Aggregate(e, m);
  PetscCall(PetscFree3(vP, dist, work));
  PetscCall(SlotRowsFree(&sr));
  PetscCall(CsDatasetDestroy(&p));
  PetscCall(PetscLogEventEnd(CS_EVENT_EVAL, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

/* Compact column headers of the terminal table, in CsMetric order, then vcc_score. */
static const char *const ShortNames[] = {"rmse",    "r2",       "r2_de100", "pdelta", "pdelta_de20", "cos_lfc",  "energy",
                                         "mmd",     "de_rec20", "rank_rmse", "rank_cos", "mae",        "de_score", "pds",
                                         "cent_acc", "pd_pert", "pd_pert20", "vcc"};

/* One row of the table: the aggregates of model i over all test groups (cat < 0) or in category cat. */
static PetscErrorCode PrintRow(CsEvaluator e, PetscViewer v, const char label[], size_t w, PetscInt i, PetscInt cat)
{
  const CsEvalModel *m   = &e->models[i];
  const double      *agg = cat < 0 ? m->agg : m->cagg + (size_t)cat * CS_NMETRICS;

  PetscFunctionBeginUser;
  PetscCall(PetscViewerASCIIPrintf(v, "%-*s", (int)w, label));
  for (PetscInt k = 0; k <= CS_NMETRICS; k++) {
    int    wk = (int)PetscMax(8, strlen(ShortNames[k]));
    double x  = k < CS_NMETRICS ? agg[k] : CsEvalVccScore(e, m, cat);
    if (isnan(x)) PetscCall(PetscViewerASCIIPrintf(v, " %*s", wk, "n/a"));
    else PetscCall(PetscViewerASCIIPrintf(v, " %*.4f", wk, x));
  }
  PetscCall(PetscViewerASCIIPrintf(v, "\n"));
  PetscFunctionReturn(0);
}

static PetscErrorCode PrintHeader(PetscViewer v, const char first[], size_t w)
{
  PetscFunctionBeginUser;
  PetscCall(PetscViewerASCIIPrintf(v, "%-*s", (int)w, first));
  for (PetscInt k = 0; k <= CS_NMETRICS; k++) PetscCall(PetscViewerASCIIPrintf(v, " %*s", (int)PetscMax(8, strlen(ShortNames[k])), ShortNames[k]));
  PetscCall(PetscViewerASCIIPrintf(v, "\n"));
  PetscFunctionReturn(0);
}

PetscErrorCode CsEvaluatorPrintTable(CsEvaluator e, PetscViewer v)
{
  size_t w = 5, wc = 5;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < e->nmodels; i++) w = PetscMax(w, strlen(e->models[i].name));
  PetscCall(PrintHeader(v, "model", w));
  for (PetscInt i = 0; i < e->nmodels; i++) PetscCall(PrintRow(e, v, e->models[i].name, w, i, -1));
  PetscCall(PetscViewerASCIIPrintf(v, "(means over %" PetscInt_FMT " test groups; lower is better for rmse, energy, mmd, the ranks and mae, higher for the others;"
                                      " the ranks, pds and cent_acc need two test groups in a context; vcc against %s)\n",
                                   e->ntest, e->vcc_baseline));
  if (e->ncat < 2) PetscFunctionReturn(0);
  for (PetscInt c = 0; c < e->ncat; c++) wc = PetscMax(wc, strlen(e->catname[c]) + 1 + w);
  PetscCall(PetscViewerASCIIPrintf(v, "\nper category:\n"));
  PetscCall(PrintHeader(v, "category/model", wc));
  for (PetscInt c = 0; c < e->ncat; c++)
    for (PetscInt i = 0; i < e->nmodels; i++) {
      char label[512];
      PetscCall(PetscSNPrintf(label, sizeof(label), "%s/%s", e->catname[c], e->models[i].name));
      PetscCall(PrintRow(e, v, label, wc, i, c));
    }
  PetscFunctionReturn(0);
}

PetscErrorCode CsEvaluatorWrite(CsEvaluator e, const char dir[])
{
  char path[PETSC_MAX_PATH_LEN];

  PetscFunctionBeginUser;
  PetscCheck(e->setup, e->comm, PETSC_ERR_ORDER, "call CsEvaluatorSetUp and CsEvaluatorScore before CsEvaluatorWrite");
  PetscCall(CsMakeDir(e->comm, dir));
  PetscCall(PetscLogEventBegin(CS_EVENT_WRITE, 0, 0, 0, 0));
  PetscCall(CsPathJoin(dir, "metrics.json", path));
  PetscCall(CsEvalWriteJSON(e, path));
  PetscCall(CsPathJoin(dir, "metrics.csv", path));
  PetscCall(CsEvalWriteCSV(e, path));
  PetscCall(CsPathJoin(dir, "gi.csv", path));
  PetscCall(CsEvalWriteGI(e, path));
  PetscCall(CsPathJoin(dir, "report.md", path));
  PetscCall(CsEvalWriteMarkdown(e, path));
  for (PetscInt i = 0; i < e->nmodels; i++) {
    char file[PETSC_MAX_PATH_LEN];
    CsEvalPlotFileName(e->models[i].name, file, sizeof(file));
    PetscCall(CsPathJoin(dir, file, path));
    PetscCall(CsEvalPlotShift(e, &e->models[i], path));
  }
  PetscCall(PetscLogEventEnd(CS_EVENT_WRITE, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

PetscErrorCode CsEvaluatorDestroy(CsEvaluator *e)
{
  PetscFunctionBeginUser;
  if (!*e) PetscFunctionReturn(0);
  PetscCall(EvaluatorReset(*e));
  PetscCall(PetscFree(*e));
  PetscFunctionReturn(0);
}
