/* linear: the linear baseline of Ahlmann-Eltze, Huber & Anders (Nature Methods 2025), which matches or beats deep
   models of perturbation response. There, Y_train (genes x train perturbations: pseudobulk change against the
   control) is fitted as Y ~ G W P^T + b with a gene embedding G (genes x K) and a perturbation embedding P
   (perturbations x K), both from K-dimensional PCA of the training data, b the row means of Y, and the ridge
   solution W = (G^T G + lambda I)^{-1} G^T (Y - b) P (P^T P + lambda I)^{-1}.

   In the paper a perturbation is a knocked-down gene, so P is read off the gene embedding. In cellshift the
   perturbation atoms are mostly not measured genes (drugs, stimuli, guides) and a condition can combine atoms or
   be asked for in a context where it was never seen, so the model is adapted as follows:
   - Y_train: one column per perturbed train group with a control in its context: the group mean minus the mean
     of that context's control cells;
   - G: the top-K principal axes of the expression of all training cells (cells of train groups, controls
     included), from the distributed CsPCAFit (gene x gene covariance as a ScaLAPACK matrix);
   - P, per atom: p_a = G^T delta_a, the projection on those axes of the atom's mean single-atom shift (the shift
     of its single-atom train groups against their controls, averaged over contexts; CsAtomShiftsCompute). An atom
     never seen alone in training has p_a = 0. A group's row of P is the sum of its atoms' embeddings, so
     combinations and unseen contexts get an embedding;
   - b: the row mean of Y_train.
   A condition in a context is predicted as each control cell of that context plus b + G W p_cond, p_cond the sum
   of the condition's atom embeddings. Doses are ignored. Options: -linear_k (K), -linear_ridge (lambda), and the
   layout of the distributed PCA, -linear_pca_block_size, -linear_pca_panel_width, -linear_pca_chunk_rows. */
#include "modelimpl.h"
#include <cellshift/linalg.h>
#include <cellshift/h5util.h>

typedef struct {
  PetscInt  k;      /* -linear_k */
  PetscReal ridge;  /* -linear_ridge */
  CsPCAOptions pca; /* -linear_pca_block_size, ... */
  PetscInt  K, ngenes, natoms, ntrain;
  double   *G;      /* [K x ngenes] row i = principal axis i (G^T of the definition above) */
  double   *W;      /* [K x K] */
  double   *P;      /* [natoms x K] atom embeddings */
  double   *b;      /* [ngenes] */
  double   *mean;   /* [ngenes] mean of the training cells (kept for inspection) */
  double   *var;    /* [K] variance along each axis */
  double   *shift;  /* [ngenes] work */
  double   *pv;     /* [2K] work: p_cond and W p_cond */
} Linear;

static PetscErrorCode LinearFree(Linear *l)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree(l->G));
  PetscCall(PetscFree(l->W));
  PetscCall(PetscFree(l->P));
  PetscCall(PetscFree(l->b));
  PetscCall(PetscFree(l->mean));
  PetscCall(PetscFree(l->var));
  PetscCall(PetscFree(l->shift));
  PetscCall(PetscFree(l->pv));
  PetscFunctionReturn(0);
}

static PetscErrorCode LinearAlloc(Linear *l, PetscInt K, PetscInt ngenes, PetscInt natoms)
{
  PetscFunctionBeginUser;
  PetscCall(LinearFree(l));
  l->K = K, l->ngenes = ngenes, l->natoms = natoms;
  PetscCall(PetscCalloc1((size_t)K * ngenes, &l->G));
  PetscCall(PetscCalloc1((size_t)K * K, &l->W));
  PetscCall(PetscCalloc1((size_t)natoms * K + 1, &l->P));
  PetscCall(PetscCalloc1(ngenes, &l->b));
  PetscCall(PetscCalloc1(ngenes, &l->mean));
  PetscCall(PetscCalloc1(K, &l->var));
  PetscCall(PetscCalloc1(ngenes, &l->shift));
  PetscCall(PetscCalloc1(2 * K, &l->pv));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelSetFromOptions_Linear(CsModel m, PetscOptionItems *PetscOptionsObject)
{
  Linear *l = (Linear *)m->data;

  PetscFunctionBeginUser;
  PetscCall(PetscOptionsInt("-k", "Dimension K of the gene and perturbation embeddings (principal axes)", "linear", l->k,
                            &l->k, NULL));
  PetscCall(PetscOptionsReal("-ridge", "Ridge penalty lambda on both sides of W", "linear", l->ridge, &l->ridge, NULL));
  PetscCall(CsPCAOptionsProcess(PetscOptionsObject, &l->pca));
  PetscCheck(l->k >= 1, PetscObjectComm((PetscObject)m), CS_ERR_INPUT, "-%sk must be at least 1 (got %" PetscInt_FMT ")", CsModelPrefix(m), l->k);
  PetscCheck(!PetscIsInfOrNanReal(l->ridge) && l->ridge >= 0, PetscObjectComm((PetscObject)m), CS_ERR_INPUT,
             "-%sridge must be a finite number >= 0 (got %.6g)", CsModelPrefix(m), (double)l->ridge);
  PetscFunctionReturn(0);
}

/* Sizes that depend on the data, checked before any model is fitted. */
static PetscErrorCode CsModelSetUp_Linear(CsModel m)
{
  Linear *l = (Linear *)m->data;

  PetscFunctionBeginUser;
  CsCheckAll(PetscObjectComm((PetscObject)m), l->k <= m->ds->ngenes, "-%sk %" PetscInt_FMT " exceeds the number of genes (%" PetscInt_FMT ")",
             CsModelPrefix(m), l->k, m->ds->ngenes);
  PetscFunctionReturn(0);
}

/* p[K] = sum of the embeddings of the condition's atoms. */
static void CondEmbedding(const Linear *l, const CsCondition *cond, double *p)
{
  for (PetscInt t = 0; t < l->K; t++) p[t] = 0;
  for (PetscInt i = 0; i < cond->natoms; i++)
    for (PetscInt t = 0; t < l->K; t++) p[t] += l->P[(size_t)cond->atoms[i] * l->K + t];
}

/* A (n x n, destroyed) X = B (n x nrhs, overwritten) with a collective verdict: the matrices are replicated, so
   every rank fails alike, and the message says what to change. */
static PetscErrorCode SolveRidge(MPI_Comm comm, PetscInt n, double *A, PetscInt nrhs, double *B, const char *what)
{
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
  ierr = CsSolveSPD(n, A, nrhs, B);
  PetscCall(PetscPopErrorHandler());
  CsCheckAll(comm, !ierr, "linear: %s + ridge I is singular; use a positive -linear_ridge", what);
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelFit_Linear(CsModel m)
{
  Linear      *l = (Linear *)m->data;
  CsDataset    ds = m->ds;
  CsDesign     d  = m->design;
  CsSplit      s  = m->split;
  PetscInt     ng = ds->ngenes, K = l->k, A = d->natoms, nt = 0, *cols;
  PetscBool   *rows, *want;
  CsAtomShifts sh = {0};
  double      *means, *Yc, *GY, *Pt, *M, *Lm, *R, *Wt;

  PetscFunctionBeginUser;
  PetscCall(LinearAlloc(l, K, ng, A));

  /* G: principal axes of the training cells. */
  PetscCall(PetscMalloc1(ds->nlocal + 1, &rows));
  for (PetscInt i = 0; i < ds->nlocal; i++) {
    PetscInt g = d->cell_group[i];
    rows[i]    = (PetscBool)(g >= 0 && s->role[g] == CS_ROLE_TRAIN);
  }
  PetscCall(CsPCAFit(PetscObjectComm((PetscObject)m), &ds->X, rows, K, &l->pca, l->mean, l->G, l->var));
  PetscCall(PetscFree(rows));

  /* P: each atom's mean single-atom shift projected on the axes. */
  PetscCall(CsAtomShiftsCompute(ds, d, s, PETSC_FALSE, &sh));
  for (PetscInt a = 0; a < A; a++)
    for (PetscInt t = 0; sh.anyseen[a] && t < K; t++) {
      double dot = 0;
      for (PetscInt j = 0; j < ng; j++) dot += l->G[(size_t)t * ng + j] * sh.delta[(size_t)a * ng + j];
      l->P[(size_t)a * K + t] = dot;
    }
  PetscCall(CsAtomShiftsFree(&sh));

  /* Y: perturbed train groups with a control, as shifts against it; b their mean. */
  PetscCall(PetscCalloc1(d->ngroups, &want));
  PetscCall(PetscMalloc1(d->ngroups, &cols));
  for (PetscInt g = 0; g < d->ngroups; g++) {
    const CsGroup *gr = &d->groups[g];
    if (gr->control || gr->ctrl < 0 || s->role[g] != CS_ROLE_TRAIN) continue;
    want[g] = want[gr->ctrl] = PETSC_TRUE;
    cols[nt++] = g;
  }
  PetscCheck(nt > 0, PetscObjectComm((PetscObject)m), CS_ERR_INPUT, "linear: no perturbed train group has a control in its context");
  l->ntrain = nt;
  PetscCall(PetscMalloc1((size_t)d->ngroups * ng, &means));
  PetscCall(CsDesignGroupMeans(d, ds, want, means));
  PetscCall(PetscMalloc1((size_t)nt * ng, &Yc));
  for (PetscInt c = 0; c < nt; c++) {
    const double *mg = means + (size_t)cols[c] * ng, *mc = means + (size_t)d->groups[cols[c]].ctrl * ng;
    for (PetscInt j = 0; j < ng; j++) Yc[(size_t)c * ng + j] = mg[j] - mc[j], l->b[j] += (mg[j] - mc[j]) / (double)nt;
  }
  for (PetscInt c = 0; c < nt; c++)
    for (PetscInt j = 0; j < ng; j++) Yc[(size_t)c * ng + j] -= l->b[j];

  /* W = (G^T G + lambda I)^{-1} [G^T (Y - b) P] (P^T P + lambda I)^{-1}, all K x K once G^T (Y - b) (K x nt) and
     P (nt x K) are formed. */
  PetscCall(PetscCalloc6((size_t)K * nt, &GY, (size_t)nt * K, &Pt, (size_t)K * K, &M, (size_t)K * K, &Lm, (size_t)K * K, &R,
                         (size_t)K * K, &Wt));
  for (PetscInt t = 0; t < K; t++)
    for (PetscInt c = 0; c < nt; c++) {
      double dot = 0;
      for (PetscInt j = 0; j < ng; j++) dot += l->G[(size_t)t * ng + j] * Yc[(size_t)c * ng + j];
      GY[(size_t)t * nt + c] = dot;
    }
  for (PetscInt c = 0; c < nt; c++) CondEmbedding(l, &d->conds[d->groups[cols[c]].cond], Pt + (size_t)c * K);
  for (PetscInt t = 0; t < K; t++)
    for (PetscInt u = 0; u < K; u++) {
      double gg = 0, pp = 0, gp = 0;
      for (PetscInt j = 0; j < ng; j++) gg += l->G[(size_t)t * ng + j] * l->G[(size_t)u * ng + j];
      for (PetscInt c = 0; c < nt; c++) pp += Pt[(size_t)c * K + t] * Pt[(size_t)c * K + u];
      for (PetscInt c = 0; c < nt; c++) gp += GY[(size_t)t * nt + c] * Pt[(size_t)c * K + u];
      Lm[t * K + u] = gg + (t == u ? l->ridge : 0);
      R[t * K + u]  = pp + (t == u ? l->ridge : 0);
      M[t * K + u]  = gp;
    }
  /* Left solve gives X = L^{-1} M; then W^T = R^{-1} X^T (R symmetric). */
  PetscCall(SolveRidge(PetscObjectComm((PetscObject)m), K, Lm, K, M, "G^T G"));
  for (PetscInt t = 0; t < K; t++)
    for (PetscInt u = 0; u < K; u++) Wt[u * K + t] = M[t * K + u];
  PetscCall(SolveRidge(PetscObjectComm((PetscObject)m), K, R, K, Wt, "P^T P"));
  for (PetscInt t = 0; t < K; t++)
    for (PetscInt u = 0; u < K; u++) l->W[t * K + u] = Wt[u * K + t];
  PetscCall(PetscInfo(NULL, "linear: K %" PetscInt_FMT ", %" PetscInt_FMT " train groups, top axis variance %g\n", K, nt,
                      l->var[0]));
  PetscCall(PetscFree6(GY, Pt, M, Lm, R, Wt));
  PetscCall(PetscFree(Yc));
  PetscCall(PetscFree(means));
  PetscCall(PetscFree(cols));
  PetscCall(PetscFree(want));
  m->nparams = (PetscInt64)K * ng + (PetscInt64)K * K + (PetscInt64)A * K + ng; /* G, W, P and b, all fitted on the training cells */
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelPredict_Linear(CsModel m, const CsCondition *cond, PetscInt ctx, const CsCSR *ctrl, float *out)
{
  Linear  *l = (Linear *)m->data;
  PetscInt K = l->K, ng = l->ngenes;
  double  *p = l->pv, *v = l->pv + K;

  PetscFunctionBeginUser;
  PetscCheck(ctrl->ncols == ng, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ, "linear: %" PetscInt_FMT " genes, fitted with %" PetscInt_FMT,
             ctrl->ncols, ng);
  /* shift = b + G W p_cond */
  CondEmbedding(l, cond, p);
  for (PetscInt t = 0; t < K; t++) {
    v[t] = 0;
    for (PetscInt u = 0; u < K; u++) v[t] += l->W[t * K + u] * p[u];
  }
  for (PetscInt j = 0; j < ng; j++) l->shift[j] = l->b[j];
  for (PetscInt t = 0; t < K; t++)
    for (PetscInt j = 0; j < ng; j++) l->shift[j] += l->G[(size_t)t * ng + j] * v[t];
  for (PetscInt i = 0; i < ctrl->nrows; i++) {
    float *row = out + (size_t)i * ng;
    CsCSRRowToDense(ctrl, i, row);
    for (PetscInt j = 0; j < ng; j++) row[j] = (float)(row[j] + l->shift[j]);
  }
  PetscFunctionReturn(0);
}

/* model.h5 params: G [ngenes x K] (the axes as columns, as in the definition), W [K x K], P [natoms x K],
   b [ngenes], pca_mean [ngenes], pca_var [K], ridge [1]; attribute ntrain. */
static PetscErrorCode CsModelSave_Linear(CsModel m, hid_t g)
{
  Linear  *l = (Linear *)m->data;
  PetscInt K = l->K, ng = l->ngenes;
  hsize_t  dG[2] = {(hsize_t)ng, (hsize_t)K}, dW[2] = {(hsize_t)K, (hsize_t)K}, dP[2] = {(hsize_t)l->natoms, (hsize_t)K};
  hsize_t  dg[1] = {(hsize_t)ng}, dk[1] = {(hsize_t)K}, d1[1] = {1};
  double  *Gc, ridge = (double)l->ridge;

  PetscFunctionBeginUser;
  if (g < 0) PetscFunctionReturn(0); /* replicated state: rank 0 writes it */
  PetscCall(PetscMalloc1((size_t)ng * K, &Gc));
  for (PetscInt t = 0; t < K; t++)
    for (PetscInt j = 0; j < ng; j++) Gc[(size_t)j * K + t] = l->G[(size_t)t * ng + j];
  PetscCall(CsH5WriteArray(g, "G", H5T_NATIVE_DOUBLE, 2, dG, Gc));
  PetscCall(PetscFree(Gc));
  PetscCall(CsH5WriteArray(g, "W", H5T_NATIVE_DOUBLE, 2, dW, l->W));
  PetscCall(CsH5WriteArray(g, "P", H5T_NATIVE_DOUBLE, 2, dP, l->P));
  PetscCall(CsH5WriteArray(g, "b", H5T_NATIVE_DOUBLE, 1, dg, l->b));
  PetscCall(CsH5WriteArray(g, "pca_mean", H5T_NATIVE_DOUBLE, 1, dg, l->mean));
  PetscCall(CsH5WriteArray(g, "pca_var", H5T_NATIVE_DOUBLE, 1, dk, l->var));
  PetscCall(CsH5WriteArray(g, "ridge", H5T_NATIVE_DOUBLE, 1, d1, &ridge));
  PetscCall(CsH5WriteAttrInt64(g, "ntrain", l->ntrain));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelLoad_Linear(CsModel m, hid_t g)
{
  Linear  *l  = (Linear *)m->data;
  PetscInt ng = m->ds->ngenes, A = m->design->natoms, K;
  hsize_t  dW[2] = {0, 0}, dG[2], dP[2], dg[1] = {(hsize_t)ng}, dk[1], d1[1] = {1};
  double  *Gc, ridge;
  int64_t  ntrain;

  PetscFunctionBeginUser;
  PetscCall(CsH5ReadArray(g, "model.h5", "W", H5T_NATIVE_DOUBLE, 2, dW, NULL));
  K = (PetscInt)dW[0];
  PetscCheck(K >= 1 && dW[1] == dW[0], PETSC_COMM_SELF, CS_ERR_INPUT, "model: W is not a non-empty square matrix");
  PetscCall(LinearAlloc(l, K, ng, A));
  dG[0] = (hsize_t)ng, dG[1] = (hsize_t)K, dP[0] = (hsize_t)A, dP[1] = (hsize_t)K, dk[0] = (hsize_t)K;
  PetscCall(PetscMalloc1((size_t)ng * K, &Gc));
  PetscCall(CsH5ReadArrayFinite(g, "model.h5", "G", H5T_NATIVE_DOUBLE, 2, dG, Gc));
  for (PetscInt t = 0; t < K; t++)
    for (PetscInt j = 0; j < ng; j++) l->G[(size_t)t * ng + j] = Gc[(size_t)j * K + t];
  PetscCall(PetscFree(Gc));
  PetscCall(CsH5ReadArrayFinite(g, "model.h5", "W", H5T_NATIVE_DOUBLE, 2, dW, l->W));
  PetscCall(CsH5ReadArrayFinite(g, "model.h5", "P", H5T_NATIVE_DOUBLE, 2, dP, l->P));
  PetscCall(CsH5ReadArrayFinite(g, "model.h5", "b", H5T_NATIVE_DOUBLE, 1, dg, l->b));
  PetscCall(CsH5ReadArrayFinite(g, "model.h5", "pca_mean", H5T_NATIVE_DOUBLE, 1, dg, l->mean));
  PetscCall(CsH5ReadArrayFinite(g, "model.h5", "pca_var", H5T_NATIVE_DOUBLE, 1, dk, l->var));
  PetscCall(CsH5ReadArrayFinite(g, "model.h5", "ridge", H5T_NATIVE_DOUBLE, 1, d1, &ridge));
  PetscCall(CsH5ReadAttrInt64(g, "ntrain", &ntrain));
  l->k = K, l->ridge = (PetscReal)ridge, l->ntrain = (PetscInt)ntrain;
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelView_Linear(CsModel m, PetscViewer v)
{
  Linear *l = (Linear *)m->data;

  PetscFunctionBeginUser;
  PetscCall(PetscViewerASCIIPrintf(v, "Y ~ G W P^T + b: K %" PetscInt_FMT ", ridge %g\n", l->k, (double)l->ridge));
  if (l->W) {
    double tot = 0;
    for (PetscInt t = 0; t < l->K; t++) tot += l->var[t];
    PetscCall(PetscViewerASCIIPrintf(v, "fitted on %" PetscInt_FMT " train groups; %" PetscInt_FMT " genes, %" PetscInt_FMT
                                     " atoms; variance of the training cells along the K axes %g (top axis %g)\n",
                                     l->ntrain, l->ngenes, l->natoms, tot, l->var[0]));
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelDestroy_Linear(CsModel m)
{
  PetscFunctionBeginUser;
  PetscCall(LinearFree((Linear *)m->data));
  PetscCall(PetscFree(m->data));
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelCreate_Linear(CsModel m)
{
  Linear *l;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&l));
  l->k                   = 10;
  l->ridge               = 0.1;
  CsPCAOptionsDefault(&l->pca);
  m->data                = l;
  m->ops->setfromoptions = CsModelSetFromOptions_Linear;
  m->ops->setup          = CsModelSetUp_Linear;
  m->ops->fit            = CsModelFit_Linear;
  m->ops->predict        = CsModelPredict_Linear;
  m->ops->save           = CsModelSave_Linear;
  m->ops->load           = CsModelLoad_Linear;
  m->ops->view           = CsModelView_Linear;
  m->ops->destroy        = CsModelDestroy_Linear;
  PetscFunctionReturn(0);
}
