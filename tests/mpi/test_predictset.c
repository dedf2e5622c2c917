/* Set-level prediction at 1, 2 and 3 ranks: a toy model whose prediction of a cell depends on the whole set of the
   group's controls (each control cell plus the mean of the set, plus a per-group offset) is written with
   CsModelWritePredictions, read back, and every predicted row is checked against an independent computation: the
   controls of the set fetched by global row, their mean by CsCSRGroupStats. A gather that lost, reordered or
   duplicated cells, or predicted on the wrong rank, changes the rows. */
#include "testing.h"
#include "../../src/models/modelimpl.h"

/* out[i] = ctrl[i] + mean(ctrl) + 0.25 * (number of atoms). */
static PetscErrorCode PredictSet_Toy(CsModel m, const CsCondition *cond, PetscInt ctx, const CsCSR *ctrl, float *out)
{
  PetscInt G = ctrl->ncols;
  double  *mean;

  PetscFunctionBeginUser;
  PetscCall(PetscCalloc1(G, &mean));
  for (PetscInt i = 0; i < ctrl->nrows; i++)
    for (int64_t k = ctrl->indptr[i]; k < ctrl->indptr[i + 1]; k++) mean[ctrl->indices[k]] += ctrl->data[k];
  for (PetscInt i = 0; i < ctrl->nrows; i++) {
    CsCSRRowToDense(ctrl, i, out + (size_t)i * G);
    for (PetscInt j = 0; j < G; j++) out[(size_t)i * G + j] += (float)(mean[j] / ctrl->nrows + 0.25 * cond->natoms);
  }
  PetscCall(PetscFree(mean));
  PetscFunctionReturn(0);
}

static PetscErrorCode Create_Toy(CsModel m)
{
  PetscFunctionBeginUser;
  m->ops->predictset = PredictSet_Toy;
  PetscFunctionReturn(0);
}

static PetscErrorCode Body(void)
{
  MPI_Comm    comm = PETSC_COMM_WORLD;
  char        yaml[PETSC_MAX_PATH_LEN], data[PETSC_MAX_PATH_LEN], dir[PETSC_MAX_PATH_LEN], path[PETSC_MAX_PATH_LEN];
  CsDataset   ds, pr;
  CsDesign    d;
  CsSplit     s;
  CsModel     m;
  PetscBool   set;
  PetscInt    cap = 40, row = 0, checked = 0, G;
  double      maxerr = 0;

  PetscFunctionBeginUser;
  PetscCall(CsTestSourcePath("input/norman_combo.yaml", yaml));
  PetscCall(CsTestSourcePath("input/perturbench_devel/devel.h5ad", data));
  PetscCall(PetscOptionsInsertFileYAML(comm, NULL, yaml, PETSC_TRUE));
  PetscCall(PetscOptionsSetValue(NULL, "-data", data));
  PetscCall(CsDatasetCreate(comm, &ds));
  PetscCall(CsDatasetSetFromOptions(ds));
  PetscCall(CsDesignCreate(comm, &d));
  PetscCall(CsDesignSetFromOptions(d));
  PetscCall(CsDesignAddKeys(d, ds));
  PetscCall(CsSplitCreate(comm, &s));
  PetscCall(CsSplitSetFromOptions(s));
  PetscCall(CsDatasetSetUp(ds));
  PetscCall(CsDesignSetUp(d, ds));
  PetscCall(CsSplitSetUp(s, d));
  G = ds->ngenes;

  PetscCall(CsModelInitializePackage());
  PetscCall(CsModelRegister("settoy", Create_Toy));
  PetscCall(CsModelCreate(comm, &m));
  PetscCall(CsModelSetType(m, "settoy"));
  PetscCall(CsModelHasPredictSet(m, &set));
  CS_EXPECT(set, "the toy model predicts sets");
  PetscCall(CsModelSetProblem(m, ds, d, s));
  m->predict_max_cells = cap; /* fewer than a group's controls: the selection is exercised too */
  PetscCall(CsModelFit(m));
  PetscCall(CsTestTempDir(comm, dir));
  PetscCall(CsPathJoin(dir, "predictions.h5ad", path));
  PetscCall(CsModelWritePredictions(m, path));

  /* Read the file back and recompute every predicted row of every test group. */
  PetscCall(CsDatasetCreate(comm, &pr));
  PetscCall(CsDatasetSetFile(pr, path, ""));
  PetscCall(CsDatasetSetUp(pr));
  for (PetscInt g = 0; g < d->ngroups; g++) {
    PetscInt cg = d->groups[g].ctrl, nsel, *sel, *mine, nmine = 0, *slot, *want;
    double  *mean;
    CsCSR    ctrl = {0}, got = {0};
    if (s->role[g] != CS_ROLE_TEST) continue;
    nsel = CsSubsampleSize(d->groups[cg].ncells, cap);
    /* The global rows of the selected controls, found on their owners and shared. */
    PetscCall(PetscCalloc2(nsel, &sel, ds->nlocal + 1, &slot));
    for (PetscInt i = 0, w = d->group_rstart[cg]; i < ds->nlocal; i++) {
      PetscInt k;
      slot[i] = -1;
      if (d->cell_group[i] != cg) continue;
      if ((k = CsSubsampleIndex(w++, d->groups[cg].ncells, cap)) >= 0) sel[k] = ds->rstart + i, slot[i] = 0;
    }
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, sel, (PetscMPIInt)nsel, MPIU_INT, MPI_SUM, comm));
    PetscCall(PetscMalloc1(G, &mean));
    PetscCall(CsCSRGroupStats(comm, &ds->X, 1, slot, NULL, mean, NULL));
    /* This rank's rows of the predictions file that belong to group g, and the controls they come from. */
    PetscCall(PetscMalloc2(nsel + 1, &mine, nsel + 1, &want));
    for (PetscInt k = 0; k < nsel; k++)
      if (row + k >= pr->rstart && row + k < pr->rstart + pr->nlocal) want[nmine] = sel[k], mine[nmine++] = row + k - pr->rstart;
    PetscCall(CsDatasetFetchRows(ds, nmine, want, &ctrl));
    PetscCall(CsCSRSubsetRows(&pr->X, nmine, mine, &got));
    for (PetscInt r = 0; r < nmine; r++) {
      float *a, *b;
      PetscCall(PetscMalloc2(G, &a, G, &b));
      CsCSRRowToDense(&ctrl, r, a);
      CsCSRRowToDense(&got, r, b);
      for (PetscInt j = 0; j < G; j++) {
        float expect = a[j] + (float)(mean[j] + 0.25 * d->conds[d->groups[g].cond].natoms);
        maxerr       = PetscMax(maxerr, fabs((double)expect - (double)b[j]));
      }
      PetscCall(PetscFree2(a, b));
      checked++;
    }
    PetscCall(CsCSRFree(&ctrl));
    PetscCall(CsCSRFree(&got));
    PetscCall(PetscFree2(mine, want));
    PetscCall(PetscFree(mean));
    PetscCall(PetscFree2(sel, slot));
    row += nsel;
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &checked, 1, MPIU_INT, MPI_SUM, comm));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &maxerr, 1, MPI_DOUBLE, MPI_MAX, comm));
  PetscCall(PetscPrintf(comm, "set-level predictions: %" PetscInt_FMT " rows checked, max |error| %.3g\n", checked, maxerr));
  CS_EXPECT(checked == row && row > 0, "checked %" PetscInt_FMT " of %" PetscInt_FMT " predicted rows", checked, row);
  CS_EXPECT(maxerr < 1e-5, "set-level predictions differ from the recomputation by %.3g", maxerr);
  PetscCall(CsDatasetDestroy(&pr));
  PetscCall(CsModelDestroy(&m));
  PetscCall(CsSplitDestroy(&s));
  PetscCall(CsDesignDestroy(&d));
  PetscCall(CsDatasetDestroy(&ds));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv) { return CsTestMain(argc, argv, Body); }
