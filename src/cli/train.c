/* cellshift train: fit the models and save model.h5 (and the run's split.json). */
#include "commands.h"

PetscErrorCode CsCommandTrain(void)
{
  CsProblem p;
  PetscBool stop = PETSC_FALSE;

  PetscFunctionBeginUser;
  PetscCall(CsProblemSetUp(&p, PETSC_FALSE, "train"));
  for (PetscInt i = 0; i < p.nmodels && !stop; i++) PetscCall(CsProblemFitPredict(&p, CsProblemModelIndex(&p, i), PETSC_FALSE, &stop));
  PetscCall(CsProblemDestroy(&p));
  PetscFunctionReturn(0);
}
