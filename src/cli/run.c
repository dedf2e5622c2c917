/* cellshift run: fit every baseline and model, predict the test groups, evaluate, print the table. */
#include "commands.h"

PetscErrorCode CsCommandRun(void)
{
  CsProblem p;
  double    t0 = CsTime();

  PetscFunctionBeginUser;
  PetscCall(CsProblemSetUp(&p, PETSC_FALSE, "run"));
  PetscCall(CsProblemScore(&p, PETSC_TRUE));
  PetscCall(PetscPrintf(PETSC_COMM_WORLD, "run: %s in %.1f s\n", p.outdir, CsTime() - t0));
  PetscCall(CsProblemDestroy(&p));
  PetscFunctionReturn(0);
}
