/* CsDataset: this rank's shard of cells from an AnnData .h5ad file.

   Each rank owns the contiguous block of global rows [rstart, rstart + nlocal) (blocks balanced by non-zeros for
   CSR input, by rows otherwise). The expression matrix of the block is held as CSR float32 with sorted, in-range
   column indices and finite values (checked while read). Gene names and the categories of every loaded obs column
   are identical on all ranks. Nothing here ever holds all cells on one rank.

   Fields are read-only outside src/data and src/io. */
#ifndef CELLSHIFT_DATASET_H
#define CELLSHIFT_DATASET_H

#include <cellshift/h5ad.h>
#include <petscis.h>

typedef struct _n_CsDataset *CsDataset;
struct _n_CsDataset {
  MPI_Comm     comm;
  char         path[PETSC_MAX_PATH_LEN];
  char         layer[256];    /* "" = X, else layers/<layer> */
  char         encoding[16];  /* how the matrix is stored: "csr", "csc" or "dense" */
  char         subset[512];   /* -obs_subset key=v1,v2 applied after reading ("" = none) */
  PetscReal    depth_fraction; /* -depth_fraction p: binomial downsampling of the raw counts (1 = none) */
  PetscInt     depth_seed;     /* -depth_seed */
  PetscReal    min_counts;     /* -min_counts: QC, cells with fewer raw counts are dropped (0 = none) */
  PetscReal    max_mito;       /* -max_mito_fraction: QC, cells with a larger fraction of counts in MT- genes are dropped (1 = none) */
  PetscBool    normalize;     /* -normalize: X held raw counts, now log1p(counts / libsize * 1e4) */
  PetscBool    input;         /* the user's data (set by CsDatasetSetFromOptions): checked as input, see SetUp */
  double      *libsize;       /* [nlocal] total counts of each cell before -normalize (NULL without it) */
  PetscInt     nglobal;       /* cells (after the subset) */
  PetscInt     ngenes;
  PetscInt     rstart, nlocal;/* this rank's global rows */
  PetscLayout  rows;          /* the ownership of rows by ranks (contiguous blocks in rank order) */
  CsCSR        X;             /* local rows, ngenes columns */
  char       **genes;         /* [ngenes] var index (the name given by var's _index attribute) */
  PetscInt     nobs;
  CsObsColumn *obs;           /* [nobs] the columns requested with CsDatasetAddObsKey, in that order */
  PetscInt     nkeys;
  char       **keys;          /* requested keys */
  PetscBool   *required;
  PetscBool    setup;
  /* several files as one dataset (-data a.h5ad,b.h5ad or -data_list FILE): rows in file order, genes aligned by
     name (-genes intersection | union, missing genes are zeros), obs columns unified (-obs_fill: a column missing in
     a file is missing for its cells instead of an error) */
  char         data_list[PETSC_MAX_PATH_LEN];
  char         genes_mode[16];
  PetscBool    obs_fill;
  PetscInt     nfiles;        /* files read (1 for a single -data file) */
};

PETSC_EXTERN PetscErrorCode CsDatasetCreate(MPI_Comm comm, CsDataset *ds);
/* Options: -data FILE (the .h5ad; or FILE1,FILE2,...: several files as one, see data_list above), -data_list FILE
   (one .h5ad per line, relative to the list's folder; # comments), -genes intersection|union, -obs_fill, -layer NAME (read layers/NAME instead of X), -obs_subset key=v1,v2 (keep only
   cells whose obs column `key` is one of the values), -normalize (X holds raw counts: each cell is scaled to 10^4
   total counts and log1p-transformed, the usual log-normalisation every model and metric expects; the totals are
   kept in libsize for count models). */
PETSC_EXTERN PetscErrorCode CsDatasetSetFromOptions(CsDataset ds);
PETSC_EXTERN PetscErrorCode CsDatasetSetFile(CsDataset ds, const char path[], const char layer[]);
/* Ask for an obs column before CsDatasetSetUp. A required column that is missing is an input error; an optional
   one is simply absent after set-up. */
PETSC_EXTERN PetscErrorCode CsDatasetAddObsKey(CsDataset ds, const char key[], PetscBool required);
/* Collective: read this rank's block (idempotent). -data naming a folder and gene names given twice in var are input
   errors (genes are matched by name). The user's data (-data) are also checked for what is suspicious but usable,
   each a warning naming the first offending cell (row of the file, and its name), gene and value: cell names (obs
   index) given twice; negative values where log-normalised expression is expected; non-integer values with
   -normalize, which expects raw counts. */
PETSC_EXTERN PetscErrorCode CsDatasetSetUp(CsDataset ds);
/* The loaded column named key, or NULL. */
PETSC_EXTERN PetscErrorCode CsDatasetGetObs(CsDataset ds, const char key[], CsObsColumn **col);
PETSC_EXTERN PetscErrorCode CsDatasetView(CsDataset ds, PetscViewer v);
/* Collective: rows[0..n) (global row indices, any order, repeats allowed; every rank asks for its own list,
   possibly empty) of the dataset, copied to the asking rank as CSR in request order (out freed by the caller with
   CsCSRFree). The same for any distributed CSR whose ranks own the contiguous blocks of `layout` and hold their
   block in X. Two all-to-all exchanges; memory: the requested rows and the rows others ask of this rank. */
PETSC_EXTERN PetscErrorCode CsDatasetFetchRows(CsDataset ds, PetscInt n, const PetscInt rows[], CsCSR *out);
PETSC_EXTERN PetscErrorCode CsCSRFetchRows(PetscLayout layout, const CsCSR *X, PetscInt n, const PetscInt rows[], CsCSR *out);
/* Collective: exact statistics of the rows of a distributed CSR grouped by slot[i] in [0, nslots) (-1: the row
   belongs to no group): total[s] rows of group s over all ranks (total may be NULL), mean [nslots x ncols] and
   the sample variance var [nslots x ncols] (var may be NULL; 0 for fewer than two rows). The mean is the correctly
   rounded mean of the float32 values (double-double sums), the same for any number of ranks and any row order;
   the variance is the sum of squared deviations from that mean over n - 1. The one definition of a group mean. */
PETSC_EXTERN PetscErrorCode CsCSRGroupStats(MPI_Comm comm, const CsCSR *X, PetscInt nslots, const PetscInt slot[], PetscInt total[],
                                            double *mean, double *var);
/* Collective: the local rows local[0..n) (increasing) of every rank gathered on `root` in global order (rank
   order, then local order) as CSR; *out is empty (0 rows) on the other ranks. Built on CsCSRFetchRows. */
PETSC_EXTERN PetscErrorCode CsCSRGatherRows(PetscLayout layout, const CsCSR *X, PetscInt n, const PetscInt local[], PetscMPIInt root,
                                            CsCSR *out);
/* Collective: keep only the local rows with keep[i] (a set-up dataset); the rows stay in order, each rank keeps
   its own, the global numbering is recomputed. */
PETSC_EXTERN PetscErrorCode CsDatasetKeepRows(CsDataset ds, const PetscBool keep[]);
PETSC_EXTERN PetscErrorCode CsDatasetDestroy(CsDataset *ds);

#endif
