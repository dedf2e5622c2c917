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
  /* -quality_weight none | qc | obs:COLUMN[=VALUE]: a weight per cell, used by the cells sampler as its drawing
     probability (see sampler.h). qc (needs -normalize: raw counts): from the total counts, the detected genes and the
     mitochondrial fraction (genes named MT-* or mt-*); each covariate's robust z = (v - median) / (1.4826 MAD) over
     all cells (medians from a 65536-bin histogram, so the same for any rank count), bad directions only (total counts
     both ways, genes low, mito high), w = exp(-sum max(0, |z| - 3)^2 / 2): cells within 3 MADs weigh 1. obs:COLUMN:
     a numeric column's values (finite, >= 0); obs:COLUMN=VALUE: 1 where the categorical column is VALUE, else 0
     (the simulator: obs:quality=ok). */
  char         quality[256];
  double      *qweight;       /* [nlocal] after SetUp, NULL for none */
  /* Streamed (-stream, or -memory_limit below the largest rank's shard): X is not held (X.nrows = 0) and the rows are
     read from the file on demand: in blocks of stream_block consecutive global rows (CsDatasetStreamRead, for the
     stream sampler), or any local rows (CsDatasetGetRows); group statistics take a pass over the blocks
     (CsDatasetGroupStats). What stays resident per cell: the design's group (4 bytes), the masks of whoever trains
     (1 bit each), and obs columns other than the design's (4 bytes a code, 8 a numeric value; the design's own are
     released once it is set up, CsDesignReleaseObs): 4.25 bytes a cell for a run that reads no other column,
     against 8 bytes per non-zero (+8 per row) in memory. */
  PetscBool    stream;        /* -stream */
  double       memory_limit;  /* -memory_limit in bytes (0: none) */
  PetscInt     stream_block;  /* -stream_block rows */
  PetscBool    stream_prefetch; /* -stream_prefetch: read the next window on a thread while one trains */
  PetscBool    stream_prefetch_set; /* given (else chosen when streaming starts) */
  PetscBool    streamed;      /* after SetUp: the rows are read on demand */
  int64_t      nnz;           /* after SetUp: global non-zeros (streamed dense X: cells x genes, an upper bound) */
  CsH5adStream st;
};

PETSC_EXTERN PetscErrorCode CsDatasetCreate(MPI_Comm comm, CsDataset *ds);
/* Options: -data FILE (the .h5ad; or FILE1,FILE2,...: several files as one, see data_list above), -data_list FILE
   (one .h5ad per line, relative to the list's folder; # comments), -genes intersection|union, -obs_fill, -layer NAME (read layers/NAME instead of X), -obs_subset key=v1,v2 (keep only
   cells whose obs column `key` is one of the values), -normalize (X holds raw counts: each cell is scaled to 10^4
   total counts and log1p-transformed, the usual log-normalisation every model and metric expects; the totals are
   kept in libsize for count models). */
PETSC_EXTERN PetscErrorCode CsDatasetSetFromOptions(CsDataset ds);
PETSC_EXTERN PetscErrorCode CsDatasetSetFile(CsDataset ds, const char path[], const char layer[]);
/* Streaming options, also in CsDatasetSetFromOptions: -stream (read rows on demand), -memory_limit BYTES (suffixes
   K, M, G, T: powers of 1024; stream when the largest rank's shard, 8 bytes per non-zero and per row, exceeds it; a
   limit below one block, 8 x stream_block x (non-zeros per row + 1) bytes, is an input error), -stream_block ROWS
   (default 4096), -stream_prefetch (default: true unless 90% of the file is in the node's page cache already;
   false reads every window when it is needed). Streaming reads one file, CSR or dense, without -obs_subset (input errors otherwise); -normalize
   transforms rows as they are read (the same values; libsize is not kept). */
/* Parse "2G", "512M", "1e9", "100000K" into bytes (input error naming `what` on anything else). */
PETSC_EXTERN PetscErrorCode CsParseBytes(MPI_Comm comm, const char what[], const char str[], double *bytes);
/* Ask for an obs column before CsDatasetSetUp. A required column that is missing is an input error; an optional
   one is simply absent after set-up. */
PETSC_EXTERN PetscErrorCode CsDatasetAddObsKey(CsDataset ds, const char key[], PetscBool required);
/* Collective: read this rank's block (idempotent). -data naming a folder and gene names given twice in var are input
   errors (genes are matched by name). The user's data (-data) are also checked for what is suspicious but usable,
   each a warning naming the first offending cell (row of the file, and its name), gene and value: cell names (obs
   index) given twice; negative values where log-normalised expression is expected; non-integer values with
   -normalize, which expects raw counts. */
PETSC_EXTERN PetscErrorCode CsDatasetSetUp(CsDataset ds);
/* The loaded column named key, or NULL; an error for a released one. */
PETSC_EXTERN PetscErrorCode CsDatasetGetObs(CsDataset ds, const char key[], CsObsColumn **col);
/* Local: free the per-cell codes and values of the loaded column named key (nothing if absent or released); its
   name and categories stay. For a column whose cells were summarised elsewhere (CsDesignReleaseObs). */
PETSC_EXTERN PetscErrorCode CsDatasetReleaseObs(CsDataset ds, const char key[]);
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
/* Local: the local rows local[0..n) (any order, repeats allowed) as CSR in that order, out reallocated (in memory:
   a copy of them; streamed: read from the file in runs of consecutive rows). */
PETSC_EXTERN PetscErrorCode CsDatasetGetRows(CsDataset ds, PetscInt n, const PetscInt local[], CsCSR *out);
/* Collective: the same, a read error being one input error on every rank. */
PETSC_EXTERN PetscErrorCode CsDatasetReadRows(CsDataset ds, PetscInt n, const PetscInt local[], CsCSR *out);
/* Collective: a CSR with all nlocal rows of which only those with keep[i] hold their values (the others are empty):
   for code that needs a subset of rows (the evaluated groups) by dataset row. In memory it is ds->X itself
   (*borrowed true; do not free); streamed, the kept rows are read and *borrowed is false. */
PETSC_EXTERN PetscErrorCode CsDatasetGetMasked(CsDataset ds, const PetscBool keep[], CsCSR *out, PetscBool *borrowed);
/* Collective: CsCSRGroupStats of the dataset's rows (slot[i] for local row i): over ds->X in memory, over the
   rank's rows read block by block (two passes with var) when streamed; the same numbers either way. */
PETSC_EXTERN PetscErrorCode CsDatasetGroupStats(CsDataset ds, PetscInt nslots, const PetscInt slot[], PetscInt total[], double *mean,
                                                double *var);
/* Streamed datasets: nblocks blocks of block_rows consecutive global rows (the last may be shorter). */
PETSC_EXTERN PetscErrorCode CsDatasetStreamBlocks(CsDataset ds, PetscInt *nblocks, PetscInt *block_rows);
/* Collective: this rank's rows of each block blocks[k] (the intersection of the block with [rstart, rstart +
   nlocal), possibly empty) into out[k], from the prefetch when it read exactly these blocks. A read error (a file
   damaged or removed while training) is one input error on every rank naming the file. */
PETSC_EXTERN PetscErrorCode CsDatasetStreamRead(CsDataset ds, PetscInt n, const PetscInt blocks[], CsCSR out[]);
/* Local: start reading blocks[0..n) in the background (CsDatasetStreamRead claims them). */
PETSC_EXTERN PetscErrorCode CsDatasetStreamPrefetch(CsDataset ds, PetscInt n, const PetscInt blocks[]);
/* Local: wait for a background read (before other HDF5 use: checkpoints). No-op in memory. */
PETSC_EXTERN PetscErrorCode CsDatasetStreamWait(CsDataset ds);
/* Collective: an input error when the dataset is streamed, naming what (a model, a metric) needs it in memory. */
PETSC_EXTERN PetscErrorCode CsDatasetCheckResident(CsDataset ds, const char what[]);
/* Collective: keep only the local rows with keep[i] (a set-up dataset); the rows stay in order, each rank keeps
   its own, the global numbering is recomputed. */
PETSC_EXTERN PetscErrorCode CsDatasetKeepRows(CsDataset ds, const PetscBool keep[]);
PETSC_EXTERN PetscErrorCode CsDatasetDestroy(CsDataset *ds);

#endif
