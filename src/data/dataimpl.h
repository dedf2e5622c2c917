/* Private to src/data. */
#ifndef CELLSHIFT_DATAIMPL_H
#define CELLSHIFT_DATAIMPL_H
#include <cellshift/dataset.h>

/* Collective (multifile.c): read the files of -data a,b,c or -data_list into ds as one dataset (ds's X, genes, obs,
   nlocal, encoding, nfiles; the caller sets the layout). */
PETSC_INTERN PetscErrorCode CsDatasetReadFiles(CsDataset ds);
#endif
