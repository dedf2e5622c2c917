/* Small HDF5 helpers shared by the .h5ad reader/writer, model files and checkpoints. All of them report failures
   as PETSc errors naming the object; `what` (usually the file name) is put in front of the object's name. */
#ifndef CELLSHIFT_H5UTIL_H
#define CELLSHIFT_H5UTIL_H

#include <cellshift/sys.h>

/* Close any HDF5 handle (file, group, dataset, attribute, dataspace, datatype, property list) and set it to
   H5I_INVALID_HID. A handle that is already invalid is left alone, so a function can close what it opened on every
   path. */
PETSC_EXTERN PetscErrorCode CsH5Close(hid_t *id, const char what[]);
/* The files cellshift writes for itself (model.h5, checkpoint.h5) use HDF5's 1.8 format or later, whose superblock
   and object headers carry checksums: a damaged file is then refused by HDF5's checksum before its metadata is
   parsed (HDF5 1.10.8 trusts damaged version-1 object headers and reads out of bounds: tests/fuzz/README.md).
   CsH5CreateChecksummed creates (truncates) such a file, serially, and returns its handle or a negative value, as
   H5Fcreate does. CsH5OpenChecksummed opens one read-only and
   refuses, naming `what` and the file, one whose superblock predates checksums (version < 2). */
PETSC_EXTERN hid_t          CsH5CreateChecksummed(const char path[]);
PETSC_EXTERN PetscErrorCode CsH5OpenChecksummed(const char path[], const char what[], hid_t *file);
/* numpy's name of an HDF5 type, for messages: int8 ... uint64, float16/32/64 (">" in front when big-endian), |S5
   (fixed-length byte strings), str (variable-length strings), bool, enum, compound, ... */
PETSC_EXTERN void CsH5TypeName(hid_t t, char buf[], size_t len);
/* The extent of a dataset: its number of dimensions and (up to maxdims of) its dimensions. */
PETSC_EXTERN PetscErrorCode CsH5Shape(hid_t d, const char what[], int *ndims, hsize_t dims[], int maxdims);

/* Does the link `path` (may contain '/') exist below loc? Checks each component, as H5Lexists requires. */
PETSC_EXTERN PetscErrorCode CsH5Exists(hid_t loc, const char path[], PetscBool *exists);
/* Scalar string attribute (variable or fixed length, or a one-element array of them) into buf, truncated to len;
   *found false (and buf "") when it is absent or not a string. */
PETSC_EXTERN PetscErrorCode CsH5ReadAttrString(hid_t obj, const char attr[], char buf[], size_t len, PetscBool *found);
/* Variable-length UTF-8 string attribute, as anndata writes them. */
PETSC_EXTERN PetscErrorCode CsH5WriteAttrString(hid_t obj, const char attr[], const char value[]);
/* A fixed-length (null-terminated) string attribute, for cellshift's own files: it lives in the checksummed object
   header, not in HDF5's global heap, which carries no checksum (and which HDF5 1.10.8 parses unsafely). */
PETSC_EXTERN PetscErrorCode CsH5WriteAttrFixedString(hid_t obj, const char attr[], const char value[]);
/* Read such an attribute, as CsH5ReadAttrString; a variable-length string is an input error naming `what` (its value
   would be read from the unchecked global heap). */
PETSC_EXTERN PetscErrorCode CsH5ReadAttrFixedString(hid_t obj, const char what[], const char attr[], char buf[], size_t len, PetscBool *found);
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
/* Integer scalar attributes (serial write; read on any rank: a missing attribute, or one that is not a single
   number, is an input error). */
PETSC_EXTERN PetscErrorCode CsH5WriteAttrInt64(hid_t obj, const char attr[], int64_t v);
PETSC_EXTERN PetscErrorCode CsH5ReadAttrInt64(hid_t obj, const char attr[], int64_t *v);
/* An integer attribute of exactly n elements (a sparse matrix's shape); anything else is an input error naming
   `what` (the object) and the attribute. */
PETSC_EXTERN PetscErrorCode CsH5ReadAttrInt64Array(hid_t obj, const char what[], const char attr[], int n, int64_t v[]);

#endif
