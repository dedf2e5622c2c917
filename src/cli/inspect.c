/* cellshift inspect FILE: shape, encoding, non-zeros, layers and obs columns of an .h5ad. */
#include "commands.h"
#include <cellshift/h5ad.h>

PetscErrorCode CsCommandInspect(int argc, char **argv)
{
  char           path[PETSC_MAX_PATH_LEN] = "";
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  PetscCall(CsOptionsRecordBegin());
  PetscOptionsBegin(PETSC_COMM_WORLD, NULL, "Inspect", "CsCommandInspect");
  ierr = PetscOptionsString("-data", "The .h5ad file (or give it after the command)", "CsCommandInspect", path, path, sizeof(path), NULL);
  PetscOptionsEnd();
  if (!ierr) ierr = CsSystemSetFromOptions(PETSC_COMM_WORLD);
  PetscCall(CsOptionsRecordEnd());
  PetscCall(ierr);
  PetscCall(CsOptionsCheckUsed(PETSC_COMM_WORLD, "inspect", "none"));
  if (argc > 2 && argv[2][0] != '-') PetscCall(PetscStrncpy(path, argv[2], sizeof(path)));
  CsCheckAll(PETSC_COMM_WORLD, path[0], "usage: cellshift inspect FILE.h5ad");
  PetscCall(CsH5adInspect(PETSC_COMM_WORLD, path, PETSC_VIEWER_STDOUT_WORLD));
  PetscFunctionReturn(0);
}
