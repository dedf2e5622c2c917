/* AnnData .h5ad input and output on parallel HDF5 (MPI-IO).

   Reading: every rank reads only its own block of rows. For CSR, X/indptr is read twice in O(cells/ranks) pieces:
   once in equal row blocks to place the nnz-balanced boundaries, once for the rank's final block; then its
   slices of indices and data are read by hyperslab. CSC is converted (every rank streams the whole matrix and
   keeps its rows: correct but O(nnz) per rank). Dense X is read by row hyperslab. Filtered (gzip) datasets are
   read independently, as parallel HDF5 requires.

   Gzip-compressed 1-D datasets (the CSR arrays, obs columns) are not inflated by HDF5: the reader fetches their
   chunks itself and inflates them with libdeflate (or ISA-L: -h5ad_inflate isal, when built with it) on the rank's
   thread pool (CsBLASGetThreads threads), giving the same bytes as HDF5's filter; any other filter, unfiltered data
   and any chunk that cannot be read that way go through HDF5. -h5ad_read_direct false sends everything through
   HDF5. A one-rank communicator reads through HDF5's POSIX driver, more ranks through MPI-IO. Log events CsReadChunkFetch and CsReadInflate.

   Validation while reading (input errors, collective, naming file, dataset and first bad row): a file that is
   truncated or damaged is called so; matrix arrays must hold numbers (the type found is named); indptr monotone
   and within nnz, indices in [0, genes) and no duplicates in a row (unsorted rows are sorted), values finite (a
   float64 that overflows float32 is called so), obs index and columns as long as the number of cells, categories
   distinct, codes within the categories.

   Writing: predictions are written as a dense float32 X. Rank 0 first writes the metadata (obs, var, encodings)
   with the serial driver, then all ranks write their rows of X collectively; the file is written under a
   temporary name and renamed when complete. */
#ifndef CELLSHIFT_H5AD_H
#define CELLSHIFT_H5AD_H

#include <cellshift/csr.h>

typedef enum {
  CS_OBS_CATEGORICAL = 0, /* categorical, string array or boolean: codes into cats */
  CS_OBS_NUMERIC     = 1  /* integer or float: values */
} CsObsKind;

/* One obs column of a rank's block. */
typedef struct {
  char      name[256];
  CsObsKind kind;
  PetscInt  ncat;   /* categorical: number of categories, identical on all ranks */
  char    **cats;   /* [ncat] categories: file order for categoricals, sorted unique values for string arrays,
                       "False","True" for booleans */
  PetscInt *codes;  /* [nlocal] category of each local cell, -1 = missing */
  double   *values; /* [nlocal] numeric columns only (NaN = missing); NULL for categorical */
  PetscBool capped; /* a string array with more distinct values than CsH5adReadCapped's cap: ncat 0, no cats or codes */
} CsObsColumn;

/* What the reader returns: this rank's block of rows of one file, as plain arrays (the caller owns them and
   frees them with CsH5adBlockFree). Rows [rstart, rstart + nlocal) of nglobal; genes and categories identical on
   every rank. */
typedef struct {
  char         encoding[16]; /* how the file stores the matrix: "csr", "csc" or "dense" */
  PetscInt     nglobal, ngenes, rstart, nlocal;
  CsCSR        X;            /* [nlocal x ngenes] */
  char       **genes;        /* [ngenes] var index */
  PetscInt     nobs;
  CsObsColumn *obs;          /* [nobs] the requested columns that exist, in request order */
} CsH5adBlock;

/* Collective: read this rank's block of `path` (matrix X, or layers/<layer> when layer is not ""), and the obs
   columns keys[0..nkeys) (a column with required[k] that is missing is an input error; an optional one is left
   out). Applies nothing else. */
PETSC_EXTERN PetscErrorCode CsH5adRead(MPI_Comm comm, const char path[], const char layer[], PetscInt nkeys, char *const keys[],
                                       const PetscBool required[], CsH5adBlock *b);
/* Collective: CsH5adRead, but a string-array column with more than maxdistinct distinct values over all ranks comes
   back capped (see CsObsColumn), so that a barcode-like column gathers at most ranks x maxdistinct strings. */
PETSC_EXTERN PetscErrorCode CsH5adReadCapped(MPI_Comm comm, const char path[], const char layer[], PetscInt nkeys, char *const keys[],
                                             const PetscBool required[], PetscInt maxdistinct, CsH5adBlock *b);
/* Streamed reading: the matrix is not read at once but in ranges of consecutive rows, on demand.
   CsH5adStreamOpen (collective) reads what CsH5adRead does but the matrix rows: b has the layout, genes, obs and this
   rank's block of rows (rstart, nlocal: the same ownership CsH5adRead gives) with an empty X (b->X.nrows = nlocal,
   no arrays); *nnzlocal is the non-zeros of the rank's rows (dense X: nlocal x ngenes, an upper bound). CSR and
   dense X only (CSC cannot be read by rows: an input error). The rows are then read by every rank alone, from a file
   opened with HDF5's POSIX driver, so a read makes no MPI call: CsH5adStreamReadRows now, or
   CsH5adStreamReadBegin/End on a background thread (the prefetch). Rows come back exactly as CsH5adRead gives them
   (validated, sorted; the same errors). HDF5 is not thread-safe here: every call waits for the background read
   first, and code that uses HDF5 while a stream may be reading calls CsH5adStreamWait. */
typedef struct _n_CsH5adStream *CsH5adStream;
PETSC_EXTERN PetscErrorCode CsH5adStreamOpen(MPI_Comm comm, const char path[], const char layer[], PetscInt nkeys, char *const keys[],
                                             const PetscBool required[], CsH5adBlock *b, int64_t *nnzlocal, CsH5adStream *st);
/* Local: transform every row read from now on, after its checks, with fn(ctx, row, x, n) (row: the global row, x:
   its n values, changed in place; an error fails the read). fn runs on the thread that reads (the prefetch thread
   too), so it must not call MPI or HDF5. NULL: none. */
typedef PetscErrorCode (*CsH5adRowFn)(void *ctx, PetscInt row, float x[], int64_t n);
PETSC_EXTERN PetscErrorCode CsH5adStreamSetRowFn(CsH5adStream st, CsH5adRowFn fn, void *ctx);
/* Local: global rows [r0, r1) into A (fresh). */
PETSC_EXTERN PetscErrorCode CsH5adStreamReadRows(CsH5adStream st, PetscInt r0, PetscInt r1, CsCSR *A);
/* Local: global rows rows[0..n) (any order; increasing runs are read together) into A (fresh), row k of A = rows[k]. */
PETSC_EXTERN PetscErrorCode CsH5adStreamReadList(CsH5adStream st, PetscInt n, const PetscInt rows[], CsCSR *A);
/* Local: start reading the ranges [r0[k], r1[k]) on a background thread (a read not claimed yet is dropped). */
PETSC_EXTERN PetscErrorCode CsH5adStreamReadBegin(CsH5adStream st, PetscInt n, const PetscInt r0[], const PetscInt r1[]);
/* Local: wait for the background read; if it read the range [r0, r1) (not claimed before), *found and out (moved
   to the caller) hold it, and if reading it failed, that error is returned here; otherwise *found is false. */
PETSC_EXTERN PetscErrorCode CsH5adStreamClaim(CsH5adStream st, PetscInt r0, PetscInt r1, CsCSR *out, PetscBool *found);
/* Local: wait for the background read, if any (its result is kept for ReadEnd). NULL-safe. */
PETSC_EXTERN PetscErrorCode CsH5adStreamWait(CsH5adStream st);
PETSC_EXTERN PetscErrorCode CsH5adStreamClose(CsH5adStream *st);

/* The column named key of a block, or NULL. */
PETSC_EXTERN CsObsColumn   *CsH5adBlockGetObs(const CsH5adBlock *b, const char key[]);
PETSC_EXTERN PetscErrorCode CsH5adBlockFree(CsH5adBlock *b);

/* Collective: the var column var/<key> (strings, or a categorical of strings) of the file, all ngenes entries on
   every rank (rank 0 reads with the serial driver and broadcasts; "" for a missing categorical value). *found is
   false, and *values NULL, when var has no such column; a column of another length or type is an input error.
   Free with CsStrArrayDestroy(ngenes, values). */
PETSC_EXTERN PetscErrorCode CsH5adReadVarColumn(MPI_Comm comm, const char path[], const char key[], PetscInt ngenes, PetscBool *found,
                                                char ***values);

/* Collective: print shape, X encoding and dtype, nnz, layers, obs columns with their categories and counts. The
   whole file is read and checked by the parallel reader, as a run would, before anything is printed. */
PETSC_EXTERN PetscErrorCode CsH5adInspect(MPI_Comm comm, const char path[], PetscViewer v);

/* One categorical obs column of an output file. codes[] is the global column, needed on rank 0 only. */
typedef struct {
  const char  *name;
  PetscInt     ncat;
  char *const *cats;
  const int32_t *codes; /* [nrows] on rank 0 */
} CsH5adOutColumn;

typedef struct _n_CsH5adWriter *CsH5adWriter;

/* Collective: start writing `path` with nrows x ngenes dense float32 X, obs index "0".."nrows-1", the given
   categorical obs columns and var index `genes`. */
PETSC_EXTERN PetscErrorCode CsH5adWriterCreate(MPI_Comm comm, const char path[], PetscInt nrows, PetscInt ngenes,
                                               char *const *genes, PetscInt ncols, const CsH5adOutColumn *cols,
                                               CsH5adWriter *w);
/* Codes of column col for rows [row0, row0 + n) into out (rank 0; see CsH5adWriterCreateFill). */
typedef PetscErrorCode (*CsH5adCodeFill)(void *ctx, PetscInt col, PetscInt row0, PetscInt n, int32_t *out);
/* Collective: CsH5adWriterCreate, but the codes of every column whose codes are NULL come from fill, block by block,
   so that rank 0 never holds a whole column of a very large file (cellshift simulate). */
PETSC_EXTERN PetscErrorCode CsH5adWriterCreateFill(MPI_Comm comm, const char path[], PetscInt nrows, PetscInt ngenes,
                                                   char *const *genes, PetscInt ncols, const CsH5adOutColumn *cols,
                                                   CsH5adCodeFill fill, void *ctx, CsH5adWriter *w);
/* Collective: CsH5adWriterCreateFill with X in CSR (anndata's csr_matrix: data float32, indices int32, indptr
   int64), nzlocal non-zeros in this rank's rows; the ranks' rows follow one another in rank order (rank r writes
   rows after rank r - 1's), so that the file does not depend on how the rows are split into calls. */
PETSC_EXTERN PetscErrorCode CsH5adWriterCreateCSRFill(MPI_Comm comm, const char path[], PetscInt nrows, PetscInt ngenes, int64_t nzlocal,
                                                      char *const *genes, PetscInt ncols, const CsH5adOutColumn *cols,
                                                      CsH5adCodeFill fill, void *ctx, CsH5adWriter *w);
/* Collective, CSR writers: each rank writes the rows of A (A->nrows may be 0; A NULL: none) at global rows
   [row0, row0 + A->nrows), consecutive calls of a rank taking consecutive rows and non-zeros. */
PETSC_EXTERN PetscErrorCode CsH5adWriterWriteCSRRows(CsH5adWriter w, PetscInt row0, const CsCSR *A);
/* Collective: each rank writes its `n` rows (row-major, n x ngenes) at global rows [row0, row0+n). n may be 0. */
PETSC_EXTERN PetscErrorCode CsH5adWriterWriteRows(CsH5adWriter w, PetscInt row0, PetscInt n, const float *rows);
/* Collective: close and rename into place. */
PETSC_EXTERN PetscErrorCode CsH5adWriterCommit(CsH5adWriter *w);
/* Collective: the writer's option -h5ad_write_block_mb (default *mb on entry). */
PETSC_EXTERN PetscErrorCode CsH5adWriterOptions(MPI_Comm comm, PetscReal *mb);
/* Collective: reads the reader's options (-h5ad_read_direct, -h5ad_inflate), so the option checker knows them. */
PETSC_EXTERN PetscErrorCode CsH5adReaderOptions(MPI_Comm comm);
/* Collective, NULL-safe: close and delete the temporary file (error paths). */
PETSC_EXTERN PetscErrorCode CsH5adWriterDestroy(CsH5adWriter *w);

#endif
