/* cellshift evaluate: score each model's predictions.h5ad next to the baselines (fitted here when the run folder
   does not have their predictions yet) and write metrics.json, metrics.csv, report.md and the plots. */
#include "commands.h"

PetscErrorCode CsCommandEvaluate(void)
{
  CsProblem p;

  PetscFunctionBeginUser;
  PetscCall(CsProblemSetUp(&p, PETSC_TRUE, "evaluate"));
  PetscCall(CsProblemScore(&p, PETSC_FALSE));
  PetscCall(CsProblemDestroy(&p));
  PetscFunctionReturn(0);
}
