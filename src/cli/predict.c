/* cellshift predict: load each model.h5 of the run and write its predictions.h5ad for the run's test groups. */
#include "commands.h"

PetscErrorCode CsCommandPredict(void)
{
  CsProblem p;

  PetscFunctionBeginUser;
  PetscCall(CsProblemSetUp(&p, PETSC_TRUE, "predict"));
  for (PetscInt i = 0; i < p.nmodels; i++) {
    PetscInt k = CsProblemModelIndex(&p, i);
    char     path[PETSC_MAX_PATH_LEN];
    PetscCall(CsProblemModelPath(&p, k, "model.h5", path));
    PetscCall(CsModelLoad(p.model[k], path));
    PetscCall(CsProblemModelPath(&p, k, "predictions.h5ad", path));
    PetscCall(CsModelWritePredictions(p.model[k], path));
    PetscCall(PetscPrintf(PETSC_COMM_WORLD, "%s: wrote %s\n", p.models[i], path));
  }
  PetscCall(CsProblemDestroy(&p));
  PetscFunctionReturn(0);
}
