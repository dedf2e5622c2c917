/* Writing a model's predictions for every test group as an .h5ad (see CsModelWritePredictions in model.h).

   Row order: test groups in group order, each with one row per selected control cell of its context (in global
   order); then the observed control cells of every context that has a test group. The selection is by global
   within-group index (CsSubsample*), so the file does not depend on the number of ranks. */
#include "modelimpl.h"
#include <cellshift/h5ad.h>
#include <math.h>

/* The local rows of the selected control cells of group cg (in global order), and the position of the first of
   them among the group's selected cells. */
static PetscErrorCode LocalControls(CsDataset ds, CsDesign d, PetscInt cg, PetscInt cap, PetscInt *nsel, PetscInt **rows, PetscInt *first)
{
  PetscInt n = d->groups[cg].ncells;

  PetscFunctionBeginUser;
  *first = CsSubsampleBelow(d->group_rstart[cg], n, cap);
  PetscCall(PetscMalloc1(d->group_nlocal[cg] + 1, rows));
  *nsel = 0;
  for (PetscInt i = 0, w = d->group_rstart[cg]; i < ds->nlocal; i++)
    if (d->cell_group[i] == cg && CsSubsampleIndex(w++, n, cap) >= 0) (*rows)[(*nsel)++] = i;
  PetscFunctionReturn(0);
}

/* The obs columns of the file (codes on rank 0 only; they depend on counts, not on cells). */
typedef struct {
  PetscInt         ncol;
  CsH5adOutColumn  col[4];
  char           **condcats, **dosecats;
  PetscInt         ncondcats, ndosecats;
  int32_t         *codes[4];
} OutObs;

static PetscErrorCode BuildObs(CsModel m, PetscInt nrows, const PetscBool *evalctx, OutObs *o)
{
  CsDesign       d = m->design;
  CsSplit        s = m->split;
  PetscMPIInt    rank;
  char         **names, **doses;
  PetscInt       nn = 0;
  static char   *kinds[] = {"observed", "predicted"};

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(PetscObjectComm((PetscObject)m), &rank));
  memset(o, 0, sizeof(*o));
  /* Categories: the control value and the test conditions (names and dose labels), sorted unique. */
  PetscCall(PetscMalloc2(d->ngroups + 1, &names, d->ngroups + 1, &doses));
  names[nn] = d->control_value, doses[nn++] = "";
  for (PetscInt g = 0; g < d->ngroups; g++)
    if (s->role[g] == CS_ROLE_TEST) names[nn] = d->conds[d->groups[g].cond].name, doses[nn++] = d->conds[d->groups[g].cond].dose;
  PetscCall(CsStrAllUnion(PETSC_COMM_SELF, nn, names, &o->ncondcats, &o->condcats));
  PetscCall(CsStrAllUnion(PETSC_COMM_SELF, nn, doses, &o->ndosecats, &o->dosecats));
  PetscCall(PetscFree2(names, doses));

  o->col[o->ncol++] = (CsH5adOutColumn){d->pert_key, o->ncondcats, o->condcats, NULL};
  if (d->context_key[0]) o->col[o->ncol++] = (CsH5adOutColumn){d->context_key, d->nctx, d->contexts, NULL};
  if (d->dose_key[0]) o->col[o->ncol++] = (CsH5adOutColumn){d->dose_key, o->ndosecats, o->dosecats, NULL};
  o->col[o->ncol++] = (CsH5adOutColumn){"cellshift_kind", 2, kinds, NULL};
  if (!rank) {
    PetscInt row = 0;
    for (PetscInt c = 0; c < o->ncol; c++) {
      PetscCall(PetscMalloc1(nrows + 1, &o->codes[c]));
      o->col[c].codes = o->codes[c];
    }
    for (PetscInt pass = 0; pass < 2; pass++) /* predicted rows, then observed controls */
      for (PetscInt g = 0; g < d->ngroups; g++) {
        const CsGroup *gr = &d->groups[g];
        PetscInt       n;
        if (pass == 0 && s->role[g] != CS_ROLE_TEST) continue;
        if (pass == 1 && !(gr->control && evalctx[gr->ctx])) continue;
        n = pass == 0 ? CsSubsampleSize(d->groups[gr->ctrl].ncells, m->predict_max_cells) : gr->ncells;
        for (PetscInt k = 0; k < n; k++, row++) {
          PetscInt c = 0;
          o->codes[c++][row] = (int32_t)CsStrBsearch(d->conds[gr->cond].name, o->condcats, o->ncondcats);
          if (d->context_key[0]) o->codes[c++][row] = (int32_t)gr->ctx;
          if (d->dose_key[0]) o->codes[c++][row] = (int32_t)CsStrBsearch(d->conds[gr->cond].dose, o->dosecats, o->ndosecats);
          o->codes[c][row] = pass == 0 ? 1 : 0;
        }
      }
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode FreeObs(OutObs *o)
{
  PetscFunctionBeginUser;
  for (PetscInt c = 0; c < o->ncol; c++) PetscCall(PetscFree(o->codes[c]));
  PetscCall(CsStrArrayDestroy(o->ncondcats, &o->condcats));
  PetscCall(CsStrArrayDestroy(o->ndosecats, &o->dosecats));
  PetscFunctionReturn(0);
}

/* The rows of one block of the file: the predictions of test group g (pass 0) or the observed controls of
   control group g (pass 1). Per-cell models predict from each rank's own controls; a set-level model gets all the
   group's selected controls gathered on the group's owner rank (test index t % ranks), which predicts and writes
   them, so every model writes the same file for any number of ranks. */
static PetscErrorCode WriteBlock(CsModel m, CsH5adWriter w, PetscInt pass, PetscInt g, PetscInt t, PetscInt row0, PetscInt *nrows)
{
  CsDesign       d = m->design;
  CsDataset      ds = m->ds;
  const CsGroup *gr = &d->groups[g];
  MPI_Comm       comm = PetscObjectComm((PetscObject)m);
  PetscMPIInt    rank, size;
  PetscInt       cg = pass == 0 ? gr->ctrl : g, cap = pass == 0 ? m->predict_max_cells : 0, G = ds->ngenes, first = 0, nsel = 0, *rows = NULL;
  CsCSR          sub = {0};
  float         *out;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  *nrows = CsSubsampleSize(d->groups[cg].ncells, cap);
  PetscCall(LocalControls(ds, d, cg, cap, &nsel, &rows, &first));
  if (pass == 0 && m->ops->predictset) {
    PetscMPIInt owner = (PetscMPIInt)(t % size);
    if (!ds->streamed) PetscCall(CsCSRGatherRows(ds->rows, &ds->X, nsel, rows, owner, &sub));
    else { /* the selected rows read, then gathered like a distributed matrix of their own */
      CsCSR       mine = {0};
      PetscLayout lay;
      PetscInt   *idx;
      PetscCall(CsDatasetReadRows(ds, nsel, rows, &mine));
      PetscCall(PetscLayoutCreateFromSizes(comm, nsel, PETSC_DECIDE, 1, &lay));
      PetscCall(PetscMalloc1(nsel + 1, &idx));
      for (PetscInt i = 0; i < nsel; i++) idx[i] = i;
      PetscCall(CsCSRGatherRows(lay, &mine, nsel, idx, owner, &sub));
      PetscCall(PetscFree(idx));
      PetscCall(PetscLayoutDestroy(&lay));
      PetscCall(CsCSRFree(&mine));
    }
    first = 0;
  } else PetscCall(CsDatasetReadRows(ds, nsel, rows, &sub));
  PetscCall(PetscMalloc1((size_t)sub.nrows * G + 1, &out));
  if (pass == 1)
    for (PetscInt i = 0; i < sub.nrows; i++) CsCSRRowToDense(&sub, i, out + (size_t)i * G);
  else if (!m->ops->predictset) PetscCall(CsModelPredict(m, &d->conds[gr->cond], gr->ctx, &sub, out));
  else {
    /* The owner predicts alone: its failure (e.g. an ODE solve that does not converge) must reach every rank, which
       would otherwise wait for it in the next collective. */
    PetscErrorCode ierr = 0;
    char          *specific = NULL;
    if (sub.nrows) {
      PetscCall(PetscLogEventBegin(CS_EVENT_PREDICT, 0, 0, 0, 0));
      PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
      ierr = m->ops->predictset(m, &d->conds[gr->cond], gr->ctx, &sub, out);
      PetscCall(PetscPopErrorHandler());
      PetscCall(PetscLogEventEnd(CS_EVENT_PREDICT, 0, 0, 0, 0));
      if (ierr) PetscCall(PetscErrorMessage(ierr, NULL, &specific));
    }
    CsCheckAll(comm, !ierr, "model '%s' could not predict group %s: %s", CsModelName(m), d->conds[gr->cond].name,
               specific ? specific : "(no message)");
  }
  {
    /* A non-finite prediction is never written: it would poison every metric of the group without a word. */
    size_t n = (size_t)sub.nrows * G, bad = n;
    for (size_t q = 0; q < n && bad == n; q++)
      if (!isfinite(out[q])) bad = q;
    CsCheckAll(comm, bad == n, "model '%s' predicted a non-finite value (%g) for group %s, cell %" PetscInt_FMT ", gene %s: nothing written",
               CsModelName(m), bad < n ? (double)out[bad] : 0.0, d->conds[gr->cond].name, bad < n ? (PetscInt)(bad / G) : 0,
               bad < n ? ds->genes[bad % G] : "");
  }
  PetscCall(PetscLogEventBegin(CS_EVENT_WRITE, 0, 0, 0, 0));
  PetscCall(CsH5adWriterWriteRows(w, row0 + first, sub.nrows, out));
  PetscCall(PetscLogEventEnd(CS_EVENT_WRITE, 0, 0, 0, 0));
  PetscCall(PetscFree(out));
  PetscCall(CsCSRFree(&sub));
  PetscCall(PetscFree(rows));
  PetscFunctionReturn(0);
}

/* Predict and write every row (see the top of this file). */
static PetscErrorCode WriteRows(CsModel m, CsH5adWriter w, const PetscBool *evalctx)
{
  CsDesign d = m->design;
  PetscInt row0 = 0, t = 0;

  PetscFunctionBeginUser;
  for (PetscInt pass = 0; pass < 2; pass++)
    for (PetscInt g = 0; g < d->ngroups; g++) {
      const CsGroup *gr = &d->groups[g];
      PetscInt       n = 0;
      if (pass == 0 && m->split->role[g] != CS_ROLE_TEST) continue;
      if (pass == 1 && !(gr->control && evalctx[gr->ctx])) continue;
      PetscCall(WriteBlock(m, w, pass, g, t, row0, &n));
      row0 += n;
      if (pass == 0) t++;
    }
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelWritePredictions(CsModel m, const char path[])
{
  CsDesign       d = m->design;
  PetscInt       nrows = 0;
  PetscBool     *evalctx;
  OutObs         obs;
  CsH5adWriter   w = NULL;
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  PetscCheck(m->fitted, PetscObjectComm((PetscObject)m), PETSC_ERR_ORDER, "model '%s' is not fitted", CsModelName(m));
  PetscCall(PetscCalloc1(d->nctx, &evalctx));
  for (PetscInt g = 0; g < d->ngroups; g++)
    if (m->split->role[g] == CS_ROLE_TEST) {
      nrows += CsSubsampleSize(d->groups[d->groups[g].ctrl].ncells, m->predict_max_cells);
      evalctx[d->groups[g].ctx] = PETSC_TRUE;
    }
  for (PetscInt g = 0; g < d->ngroups; g++)
    if (d->groups[g].control && evalctx[d->groups[g].ctx]) nrows += d->groups[g].ncells;
  PetscCall(BuildObs(m, nrows, evalctx, &obs));
  PetscCall(CsH5adWriterCreate(PetscObjectComm((PetscObject)m), path, nrows, m->ds->ngenes, m->ds->genes, obs.ncol, obs.col, &w));
  ierr = WriteRows(m, w, evalctx);
  if (ierr) { /* no half-written file may stay behind, not even under its temporary name */
    (void)CsH5adWriterDestroy(&w);
    PetscCall(ierr);
  }
  PetscCall(CsH5adWriterCommit(&w));
  PetscCall(FreeObs(&obs));
  PetscCall(PetscFree(evalctx));
  PetscFunctionReturn(0);
}
