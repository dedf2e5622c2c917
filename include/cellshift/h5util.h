/* Small HDF5 helpers shared by the .h5ad reader/writer, model files and checkpoints. All of them report failures
   as PETSc errors naming the object; `what` (usually the file name) is put in front of the object's name. */
#ifndef CELLSHIFT_H5UTIL_H
#define CELLSHIFT_H5UTIL_H

#include <cellshift/sys.h>

/* Does the link `path` (may contain '/') exist below loc? Checks each component, as H5Lexists requires. */
PETSC_EXTERN PetscErrorCode CsH5Exists(hid_t loc, const char path[], PetscBool *exists);
/* String attribute (variable or fixed length) into buf; *found false (and buf "") when absent. */
PETSC_EXTERN PetscErrorCode CsH5ReadAttrString(hid_t obj, const char attr[], char buf[], size_t len, PetscBool *found);
/* Variable-length UTF-8 string attribute, as anndata writes them. */
PETSC_EXTERN PetscErrorCode CsH5WriteAttrString(hid_t obj, const char attr[], const char value[]);
/* Elements [start, start+count) of a 1-D string dataset (variable or fixed length) as malloc'd C strings
   (free with CsStrArrayDestroy). Independent I/O. */
PETSC_EXTERN PetscErrorCode CsH5ReadStrings(hid_t dset, const char what[], hsize_t start, hsize_t count, char ***out);
/* Write a 1-D variable-length UTF-8 string dataset (serial files only). */
PETSC_EXTERN PetscErrorCode CsH5WriteStrings(hid_t loc, const char name[], PetscInt n, char *const *s);
/* Write a whole array dataset (serial files only). */
PETSC_EXTERN PetscErrorCode CsH5WriteArray(hid_t loc, const char name[], hid_t memtype, int rank, const hsize_t dims[],
                                           const void *buf);
/* Read a whole array dataset whose shape must equal dims[0..rank) (pass dims[i] = 0 to accept any and learn it).
   buf must hold the product of dims elements of memtype, or be NULL to only query the shape. */
PETSC_EXTERN PetscErrorCode CsH5ReadArray(hid_t loc, const char what[], const char name[], hid_t memtype, int rank,
                                          hsize_t dims[], void *buf);
/* The same for float or double arrays whose every value must be finite (model parameters, optimiser state): a
   NaN or Inf is an input error naming the file, the dataset and the entry. */
PETSC_EXTERN PetscErrorCode CsH5ReadArrayFinite(hid_t loc, const char what[], const char name[], hid_t memtype, int rank,
                                                hsize_t dims[], void *buf);
/* Integer/float scalar attributes (serial write; read on any rank). */
PETSC_EXTERN PetscErrorCode CsH5WriteAttrInt64(hid_t obj, const char attr[], int64_t v);
PETSC_EXTERN PetscErrorCode CsH5ReadAttrInt64(hid_t obj, const char attr[], int64_t *v);

#endif
