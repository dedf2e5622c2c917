/* cellshift simulate: write a simulated atlas with its ground truth (see include/cellshift/sim.h). */
#include "commands.h"
#include <cellshift/h5ad.h>
#include <cellshift/sim.h>

PetscErrorCode CsCommandSimulate(void)
{
  CsSim          s;
  PetscErrorCode ierr;
  PetscReal      mb = 256;

  PetscFunctionBeginUser;
  PetscCall(CsSimCreate(PETSC_COMM_WORLD, &s));
  PetscCall(CsOptionsRecordBegin());
  ierr = CsSimSetFromOptions(s);
  if (!ierr) ierr = CsSystemSetFromOptions(PETSC_COMM_WORLD);
  if (!ierr) ierr = CsH5adWriterOptions(PETSC_COMM_WORLD, &mb);
  PetscCall(CsOptionsRecordEnd());
  PetscCall(ierr);
  PetscCall(CsOptionsCheckUsed(PETSC_COMM_WORLD, "simulate", "none"));
  PetscCall(CsSimSetUp(s));
  PetscCall(CsSimWrite(s));
  PetscCall(CsSimDestroy(&s));
  PetscFunctionReturn(0);
}
