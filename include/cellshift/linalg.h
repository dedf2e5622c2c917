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

/* Solve A X = B for a general n x n A (column-major, overwritten by its LU factors) and B (n x nrhs column-major,
   overwritten by X) with LAPACK dgesv. Not collective. Error: exactly singular (the zero pivot is named). */
PETSC_EXTERN PetscErrorCode CsSolveGeneral(PetscInt n, double *A, PetscInt nrhs, double *B);

/* The spectral radius max |lambda_i| of a general n x n A (column-major, destroyed) from all its eigenvalues
   (LAPACK dgeev, O(n^3)). Not collective. */
PETSC_EXTERN PetscErrorCode CsSpectralRadius(PetscInt n, double *A, double *rho);

/* ============================================ ScaLAPACK / BLACS ============================================
   Debian ships no BLACS/ScaLAPACK header, so the prototypes cellshift uses are declared here (LP64 integers,
   gfortran hidden lengths for character arguments); add a prototype here, never in a .c file. */
extern int  Csys2blacs_handle(MPI_Comm comm);
extern void Cfree_blacs_system_handle(int handle);
extern void Cblacs_gridinit(int *ctxt, const char *order, int nprow, int npcol);
extern void Cblacs_gridinfo(int ctxt, int *nprow, int *npcol, int *myrow, int *mycol);
extern void Cblacs_gridexit(int ctxt);
extern int  numroc_(const int *n, const int *nb, const int *iproc, const int *isrcproc, const int *nprocs);
extern void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb, const int *irsrc, const int *icsrc,
                      const int *ictxt, const int *lld, int *info);
extern void pdsyevr_(const char *jobz, const char *range, const char *uplo, const int *n, double *a, const int *ia, const int *ja,
                     const int *desca, const double *vl, const double *vu, const int *il, const int *iu, int *m, int *nz, double *w,
                     double *z, const int *iz, const int *jz, const int *descz, double *work, const int *lwork, int *iwork,
                     const int *liwork, int *info, size_t, size_t, size_t);
extern void pdgesv_(const int *n, const int *nrhs, double *a, const int *ia, const int *ja, const int *desca, int *ipiv, double *b,
                    const int *ib, const int *jb, const int *descb, int *info);
extern void pdgetrf_(const int *m, const int *n, double *a, const int *ia, const int *ja, const int *desca, int *ipiv, int *info);
extern void pdgetrs_(const char *trans, const int *n, const int *nrhs, const double *a, const int *ia, const int *ja,
                     const int *desca, const int *ipiv, double *b, const int *ib, const int *jb, const int *descb, int *info, size_t);
extern void pdgemm_(const char *transa, const char *transb, const int *m, const int *n, const int *k, const double *alpha,
                    const double *a, const int *ia, const int *ja, const int *desca, const double *b, const int *ib, const int *jb,
                    const int *descb, const double *beta, double *c, const int *ic, const int *jc, const int *descc, size_t, size_t);

/* A BLACS process grid over the ranks of comm: nprow = floor(sqrt(size)) rows and size / nprow columns, row-major
   (BLACS process number = row * npcol + col, as pdsyevr assumes); ranks that do not fit the grid have myrow =
   mycol = -1 and hold no part of a matrix. coord[2 r], coord[2 r + 1] is rank r's place (-1 outside). */
typedef struct {
  MPI_Comm    comm;
  PetscMPIInt size;
  int         handle, ctxt;
  int         nprow, npcol, myrow, mycol;
  int        *coord; /* [2 size] */
} CsGrid;
/* Collective on comm. */
PETSC_EXTERN PetscErrorCode CsGridCreate(MPI_Comm comm, CsGrid *grid);
PETSC_EXTERN PetscErrorCode CsGridDestroy(CsGrid *grid);

/* A block-cyclic m x n matrix with nb x nb blocks on a grid, first block on process (0, 0): this rank holds mloc x
   nloc entries, column-major with leading dimension lld (ScaLAPACK's layout); desc is its descriptor (only valid
   on ranks in the grid). */
typedef struct {
  int m, n, nb;
  int mloc, nloc, lld;
  int desc[9];
} CsBlockCyclic;
PETSC_EXTERN PetscErrorCode CsBlockCyclicInit(const CsGrid *grid, int m, int n, int nb, CsBlockCyclic *A);
/* Local index of global index g along a dimension distributed over np processes in blocks of nb, and back. */
static inline int CsBCGlobalToLocal(int g, int nb, int np) { return (g / (nb * np)) * nb + g % nb; }
static inline int CsBCLocalToGlobal(int l, int nb, int np, int me) { return ((l / nb) * np + me) * nb + l % nb; }
/* The process row (or column) that holds global index g. */
static inline int CsBCOwner(int g, int nb, int np) { return (g / nb) % np; }

/* Seconds spent by CsSparseLUSolve on this rank in each phase. */
typedef struct {
  double assemble, factor, solve, gather;
} CsLUTimes;
/* Collective: X = (diag I + S)^{-1} B for a general n x n sparse S that every rank holds whole (rows indptr[n + 1],
   column indices[], values[]; repeated entries add), B [n x nrhs] column-major and identical on every rank,
   overwritten by X on every rank. diag I + S is assembled as a dense nb x nb block-cyclic matrix on the CsGrid of
   comm (each rank fills only the entries it owns), factored by pdgetrf (LU with partial pivoting) and solved by
   pdgetrs; X is summed onto every rank. For a matrix whose dense form does not fit one node (n = 2*10^4 is 3.2
   GB) while the sparse form is small. Memory per rank: n^2 / ranks doubles (plus one block row), 2 n nrhs.
   Results agree across rank counts to rounding (pivoting is the same, summation order is not). Errors: a
   singular matrix (collective). times may be NULL. */
PETSC_EXTERN PetscErrorCode CsSparseLUSolve(MPI_Comm comm, PetscInt n, double diag, const int64_t indptr[], const int32_t indices[],
                                            const double values[], PetscInt nrhs, double *B, PetscInt nb, CsLUTimes *times);

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
