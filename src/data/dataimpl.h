/* Private to src/data. */
#ifndef CELLSHIFT_DATAIMPL_H
#define CELLSHIFT_DATAIMPL_H
#include <cellshift/dataset.h>

/* Collective (multifile.c): read the files of -data a,b,c or -data_list into ds as one dataset (ds's X, genes, obs,
   nlocal, encoding, nfiles; the caller sets the layout). */
PETSC_INTERN PetscErrorCode CsDatasetReadFiles(CsDataset ds);
/* Collective (quality.c): ds->qweight from ds->quality (see dataset.h), after the rows are final; input errors for
   a bad specification, a missing column, negative or non-finite weights, or weights that are all zero. */
PETSC_INTERN PetscErrorCode CsDatasetQualityWeights(CsDataset ds);
/* Collective (stream.c): with -stream or -memory_limit, open the file for streamed reads and decide; *streamed
   then ds holds everything but X (ds->st reads the rows); otherwise nothing is kept and the caller reads as usual. */
PETSC_INTERN PetscErrorCode CsDatasetStreamOpen(CsDataset ds, PetscBool *streamed);
/* One cell's -normalize transform in place (dataset.c; the in-memory and the streamed rows, one rule): x[k] ->
   log1p(x[k] / L * 1e4) with L the row's total, returned in *total. Returns PETSC_FALSE, leaving x as it was, when
   a value is negative. */
PETSC_INTERN PetscBool CsNormalizeRow(float x[], int64_t n, double *total);
#endif
