/* cellshift: predict single-cell perturbation responses. Entry point: dispatches to one command. */
#include "commands.h"

static const char help[] = "cellshift: predict how single cells respond to perturbations.\n"
                           "Usage: cellshift COMMAND [options]   (commands: run, train, predict, evaluate, inspect)\n"
                           "       cellshift -help               lists every option with its default\n\n";

int main(int argc, char **argv)
{
  PetscErrorCode ierr;
  const char    *cmd = argc > 1 && argv[1][0] != '-' ? argv[1] : NULL;

  ierr = CsInitialize(&argc, &argv, help);
  if (!ierr) ierr = CsCommandDispatch(cmd, argc, argv);
  {
    int status = CsExitStatus(ierr);
    if (CsFinalize()) return 1;
    return status;
  }
}
