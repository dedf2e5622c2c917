/* General dense solves: LAPACK dgesv for a replicated matrix, ScaLAPACK LU for an n x n matrix too large for one
   rank, given as sparse rows that every rank holds (a regulatory network). See include/cellshift/linalg.h. */
#include "linalgimpl.h"

extern void dgesv_(const int *n, const int *nrhs, double *a, const int *lda, int *ipiv, double *b, const int *ldb, int *info);

PetscErrorCode CsSolveGeneral(PetscInt n, double *A, PetscInt nrhs, double *B)
{
  int  N = (int)n, R = (int)nrhs, ld = (int)PetscMax(n, 1), info = 0, *ipiv;

  PetscFunctionBeginUser;
  if (!n || !nrhs) PetscFunctionReturn(0);
  PetscCall(PetscMalloc1(n, &ipiv));
  dgesv_(&N, &R, A, &ld, ipiv, B, &ld, &info);
  PetscCall(PetscFree(ipiv));
  PetscCheck(info <= 0, PETSC_COMM_SELF, PETSC_ERR_MAT_LU_ZRPVT, "CsSolveGeneral: the %d x %d matrix is singular (zero pivot %d)", N, N, info);
  PetscCheck(!info, PETSC_COMM_SELF, PETSC_ERR_LIB, "dgesv failed (info %d)", info);
  PetscFunctionReturn(0);
}

/* The local part of diag I + S in the block-cyclic layout L (column-major, leading dimension L->lld). */
static void FillLocal(const CsGrid *g, const CsBlockCyclic *L, PetscInt n, double diag, const int64_t indptr[], const int32_t indices[],
                      const double values[], double *A)
{
  int nb = L->nb;
  for (PetscInt i = 0; i < n; i++) {
    if (CsBCOwner((int)i, nb, g->nprow) != g->myrow) continue;
    int li = CsBCGlobalToLocal((int)i, nb, g->nprow);
    if (CsBCOwner((int)i, nb, g->npcol) == g->mycol) A[(size_t)CsBCGlobalToLocal((int)i, nb, g->npcol) * L->lld + li] += diag;
    for (int64_t k = indptr[i]; k < indptr[i + 1]; k++) {
      int j = indices[k];
      if (CsBCOwner(j, nb, g->npcol) != g->mycol) continue;
      A[(size_t)CsBCGlobalToLocal(j, nb, g->npcol) * L->lld + li] += values[k];
    }
  }
}

/* Between the replicated n x nrhs column-major X and its block-cyclic local part Bl: scatter (to_local) or add
   this rank's entries into X (the caller zeroes X and sums over ranks). */
static void MoveRHS(const CsGrid *g, const CsBlockCyclic *L, PetscBool to_local, double *X, double *Bl)
{
  for (int lj = 0; lj < L->nloc; lj++) {
    int j = CsBCLocalToGlobal(lj, L->nb, g->npcol, g->mycol);
    for (int li = 0; li < L->mloc; li++) {
      int     i = CsBCLocalToGlobal(li, L->nb, g->nprow, g->myrow);
      double *x = X + (size_t)j * L->m + i, *b = Bl + (size_t)lj * L->lld + li;
      if (to_local) *b = *x;
      else *x = *b;
    }
  }
}

PetscErrorCode CsSparseLUSolve(MPI_Comm comm, PetscInt n, double diag, const int64_t indptr[], const int32_t indices[], const double values[],
                               PetscInt nrhs, double *B, PetscInt nb, CsLUTimes *times)
{
  CsGrid        grid;
  CsBlockCyclic LA, LB;
  double       *A = NULL, *Bl = NULL, t0 = CsTime(), t1 = t0, t2 = t0, t3 = t0;
  int          *ipiv = NULL, info = 0, one = 1, N = (int)n, R = (int)nrhs;

  PetscFunctionBeginUser;
  PetscCheck(n >= 1 && nrhs >= 0 && nb >= 1, comm, PETSC_ERR_ARG_OUTOFRANGE, "CsSparseLUSolve: n %" PetscInt_FMT ", nrhs %" PetscInt_FMT ", block %" PetscInt_FMT,
             n, nrhs, nb);
  PetscCheck((size_t)n * (size_t)PetscMax(nrhs, 1) < (size_t)PETSC_MPI_INT_MAX, comm, PETSC_ERR_ARG_OUTOFRANGE,
             "CsSparseLUSolve: %" PetscInt_FMT " x %" PetscInt_FMT " right-hand sides are too many for one reduction", n, nrhs);
  if (!nrhs) PetscFunctionReturn(0);
  PetscCall(CsGridCreate(comm, &grid));
  nb = PetscMin(nb, n);
  PetscCall(CsBlockCyclicInit(&grid, N, N, (int)nb, &LA));
  PetscCall(CsBlockCyclicInit(&grid, N, R, (int)nb, &LB));
  if (grid.myrow >= 0) {
    PetscCall(PetscCalloc1((size_t)LA.lld * PetscMax(LA.nloc, 1), &A));
    PetscCall(PetscCalloc1((size_t)LB.lld * PetscMax(LB.nloc, 1), &Bl));
    PetscCall(PetscMalloc1(LA.mloc + LA.nb, &ipiv));
    FillLocal(&grid, &LA, n, diag, indptr, indices, values, A);
    MoveRHS(&grid, &LB, PETSC_TRUE, B, Bl);
    t1 = CsTime();
    pdgetrf_(&N, &N, A, &one, &one, LA.desc, ipiv, &info);
    t2 = CsTime();
    if (!info) pdgetrs_("N", &N, &R, A, &one, &one, LA.desc, ipiv, Bl, &one, &one, LB.desc, &info, 1);
    t3 = CsTime();
  }
  /* info is global on the grid; ranks outside it learn it here, so every rank raises the same error. */
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &info, 1, MPI_INT, MPI_MAX, comm));
  PetscCheck(info <= 0, comm, PETSC_ERR_MAT_LU_ZRPVT, "the %d x %d matrix is singular (pdgetrf: zero pivot %d)", N, N, info);
  PetscCheck(!info, comm, PETSC_ERR_LIB, "pdgetrf/pdgetrs failed (info %d)", info);
  PetscCall(PetscArrayzero(B, (size_t)n * nrhs));
  if (grid.myrow >= 0) MoveRHS(&grid, &LB, PETSC_FALSE, B, Bl);
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, B, (PetscMPIInt)(n * nrhs), MPI_DOUBLE, MPI_SUM, comm));
  PetscCall(PetscFree(A));
  PetscCall(PetscFree(Bl));
  PetscCall(PetscFree(ipiv));
  PetscCall(CsGridDestroy(&grid));
  if (times) times->assemble = t1 - t0, times->factor = t2 - t1, times->solve = t3 - t2, times->gather = CsTime() - t3;
  PetscFunctionReturn(0);
}
