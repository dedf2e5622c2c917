/* Dense linear algebra: LAPACK for small replicated problems, ScaLAPACK for gene x gene problems that must not
   be held whole on one rank. */
#ifndef CELLSHIFT_LINALG_H
#define CELLSHIFT_LINALG_H

#include <cellshift/csr.h>

/* Top-k eigenpairs of the symmetric n x n matrix A (row-major, destroyed), eigenvalues descending.
   vecs [k x n] row-major: row i is the eigenvector of vals[i], sign fixed so that its largest-|.| entry is > 0. */
PETSC_EXTERN PetscErrorCode CsSymEigTop(PetscInt n, double *A, PetscInt k, double *vals, double *vecs);

/* Solve A X = B for symmetric positive definite A (n x n, destroyed) and B (n x nrhs row-major, overwritten). */
PETSC_EXTERN PetscErrorCode CsSolveSPD(PetscInt n, double *A, PetscInt nrhs, double *B);

/* How CsPCAFit lays out its work (results do not depend on it). */
typedef struct {
  PetscInt block_size;  /* block of the block-cyclic covariance (64) */
  PetscInt panel_width; /* covariance columns assembled per reduction; 0 = from a 256 MB budget */
  PetscInt chunk_rows;  /* rows densified at a time; 0 = from a 64 MB budget */
} CsPCAOptions;
PETSC_EXTERN void CsPCAOptionsDefault(CsPCAOptions *o);
/* Inside the caller's options block (PetscOptionsBegin/End, whose prefix applies): -pca_block_size,
   -pca_panel_width, -pca_chunk_rows. A model reads them in its setfromoptions, so they appear in -help as
   -<model>_pca_block_size, ... */
PETSC_EXTERN PetscErrorCode CsPCAOptionsProcess(PetscOptionItems *PetscOptionsObject, CsPCAOptions *o);

/* Collective distributed PCA of the rows of the CSR shards selected by rows[] (NULL = all rows):
   mean[ncols] of the selected rows, and the top-k eigenpairs of their covariance
   sum (x - mean)(x - mean)^T / (n - 1). The covariance is assembled panel by panel into a ScaLAPACK block-cyclic
   matrix (no rank ever holds all of it) and diagonalised with pdsyevr. comps [k x ncols] row-major (sign as in
   CsSymEigTop), vars[k] descending. Identical on every rank and, to rounding, for every number of ranks (when
   the k leading eigenvalues are distinct). Needs at least 2 selected rows and 1 <= k <= ncols. opt NULL = defaults.
   Memory per rank: about p^2 / nranks * 8 bytes for the covariance (plus max(k, block) columns of
   eigenvectors), 2 panels of p x width and one chunk of chunk_rows x p doubles. Logged as CS_EVENT_PCA. */
PETSC_EXTERN PetscErrorCode CsPCAFit(MPI_Comm comm, const CsCSR *X, const PetscBool *rows, PetscInt k,
                                     const CsPCAOptions *opt, double *mean, double *comps, double *vars);

#endif
