/* Command dispatch. */
#include "commands.h"

PetscErrorCode CsCommandDispatch(const char cmd[], int argc, char **argv)
{
  PetscFunctionBeginUser;
  (void)argc, (void)argv;
  PetscCheck(!cmd, PETSC_COMM_WORLD, CS_ERR_INPUT, "unknown command '%s'", cmd);
  PetscFunctionReturn(0);
}
