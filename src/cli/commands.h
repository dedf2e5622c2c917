/* The commands of the cellshift program, one file each. */
#ifndef CELLSHIFT_COMMANDS_H
#define CELLSHIFT_COMMANDS_H

#include <cellshift/sys.h>

/* Run the command named cmd (NULL: print usage, or every option's help with -help). */
PetscErrorCode CsCommandDispatch(const char cmd[], int argc, char **argv);

#endif
