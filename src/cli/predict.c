/* cellshift predict: load each model.h5 of the run and write its predictions.h5ad for the run's test groups. */
#include "commands.h"

PetscErrorCode CsCommandPredict(void)
{
  CsProblem p;

  PetscFunctionBeginUser;
  PetscCall(CsProblemSetUp(&p, PETSC_TRUE));
  for (PetscInt i = 0; i < p.nmodels; i++) {
    CsModel m;
    char    path[PETSC_MAX_PATH_LEN];
    PetscCall(CsProblemModel(&p, p.models[i], &m));
    PetscCall(CsProblemModelPath(&p, p.models[i], "model.h5", path));
    PetscCall(CsModelLoad(m, path));
    PetscCall(CsProblemModelPath(&p, p.models[i], "predictions.h5ad", path));
    PetscCall(CsModelWritePredictions(m, path));
    PetscCall(PetscPrintf(PETSC_COMM_WORLD, "%s: wrote %s\n", p.models[i], path));
    PetscCall(CsModelDestroy(&m));
  }
  PetscCall(CsProblemDestroy(&p));
  PetscFunctionReturn(0);
}
