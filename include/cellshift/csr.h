/* CsCSR: a block of rows in compressed sparse row form, the one sparse matrix type of cellshift (expression
   blocks read from .h5ad files, minibatches, gene graphs). A plain struct: no communicator, no ownership rules
   beyond "whoever filled it frees it with CsCSRFree" (a row view owns nothing). Not collective. */
#ifndef CELLSHIFT_CSR_H
#define CELLSHIFT_CSR_H

#include <cellshift/sys.h>

typedef struct {
  PetscInt nrows, ncols;
  int64_t *indptr;  /* [nrows+1], indptr[0] == 0 (except in a row view, see CsCSRRowView) */
  int32_t *indices; /* [indptr[nrows]] column indices, strictly increasing within a row, in [0, ncols) */
  float   *data;    /* [indptr[nrows]] finite values */
} CsCSR;

PETSC_EXTERN PetscErrorCode CsCSRFree(CsCSR *A);
/* Rows [r0, r0 + n) of A sharing A's arrays: indptr offsets stay absolute (indptr[0] may be > 0), which every row
   loop (indptr[i] .. indptr[i+1]) and the sparse kernels accept. Nothing to free. */
PETSC_EXTERN CsCSR CsCSRRowView(const CsCSR *A, PetscInt r0, PetscInt n);
/* out = rows rows[0..n) of A, copied in that order (out's arrays are reallocated, so a block can be reused; start
   from a zeroed CsCSR, whose arrays are then reserved with CsCSRReserve). */
PETSC_EXTERN PetscErrorCode CsCSRSubsetRows(const CsCSR *A, PetscInt n, const PetscInt rows[], CsCSR *out);
/* Append the non-zeros of n dense rows X (n x A->ncols, row-major) to A as its rows [i0, i0 + n): A->indptr holds
   at least i0 + n + 1 entries and indptr[i0] = *nnz, the non-zeros so far; indices and data hold *cap entries
   (0: none yet, then they are reserved with CsCSRReserve) and grow when needed to what the rows so far extrapolate to over all A->nrows (so rows read in
   slices grow the arrays about once, and a block of one call gets exactly its size). */
PETSC_EXTERN PetscErrorCode CsCSRAppendDense(CsCSR *A, PetscInt i0, PetscInt n, const float *X, int64_t *nnz, int64_t *cap);
/* Spare arrays. A streamed epoch reads and drops a block of rows (megabytes) hundreds of times: freed, its pages
   go back to the system and the next block faults fresh ones in, which costs more than reading the rows (about
   3 us per 4 KiB page on a virtual machine). CsCSRRecycle keeps a dropped block's indices and data (at most
   CS_CSR_SPARES pairs, for every thread: mutex-protected; the rest is freed) and frees indptr; CsCSRReserve gives
   an empty A (no arrays) indices and data of at least need entries: the largest spare pair within a factor 2 of
   want (>= need; a small batch does not take a block's arrays), grown to need by realloc if it is smaller (blocks
   differ by a few rows' worth), else fresh arrays of want entries, their first need entries mapped at once
   (CsMemPopulate); their capacity in *cap; CsCSRSparesFree frees the spares (when the blocks stop:
   the stream sampler's end, CsFinalize). */
#define CS_CSR_SPARES 16
PETSC_EXTERN PetscErrorCode CsCSRRecycle(CsCSR *A);
PETSC_EXTERN PetscErrorCode CsCSRReserve(CsCSR *A, int64_t need, int64_t want, int64_t *cap);
PETSC_EXTERN PetscErrorCode CsCSRSparesFree(void);
/* Dense copy of row i (length ncols, zero-filled first). */
PETSC_EXTERN void CsCSRRowToDense(const CsCSR *A, PetscInt i, float *out);

#endif
