/* BLACS process grids and block-cyclic layouts, shared by every ScaLAPACK user (PCA, GRN solves, OT).
   See include/cellshift/linalg.h. */
#include "linalgimpl.h"
#include <math.h>

PetscErrorCode CsGridCreate(MPI_Comm comm, CsGrid *g)
{
  int gr, gc;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(g, sizeof(*g)));
  g->comm = comm;
  PetscCallMPI(MPI_Comm_size(comm, &g->size));
  g->nprow = (int)sqrt((double)g->size);
  while (g->nprow * g->nprow > g->size) g->nprow--;
  while ((g->nprow + 1) * (g->nprow + 1) <= g->size) g->nprow++;
  g->npcol  = g->size / g->nprow;
  g->handle = Csys2blacs_handle(comm);
  g->ctxt   = g->handle;
  Cblacs_gridinit(&g->ctxt, "Row", g->nprow, g->npcol);
  g->myrow = g->mycol = -1;
  if (g->ctxt >= 0) Cblacs_gridinfo(g->ctxt, &gr, &gc, &g->myrow, &g->mycol);
  if (g->myrow < 0 || g->mycol < 0) g->myrow = g->mycol = -1;
  PetscCall(PetscMalloc1(2 * (size_t)g->size, &g->coord));
  {
    int mine[2] = {g->myrow, g->mycol};
    PetscCallMPI(MPI_Allgather(mine, 2, MPI_INT, g->coord, 2, MPI_INT, comm));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsGridDestroy(CsGrid *g)
{
  PetscFunctionBeginUser;
  if (g->myrow >= 0) Cblacs_gridexit(g->ctxt);
  if (g->coord) Cfree_blacs_system_handle(g->handle);
  PetscCall(PetscFree(g->coord));
  PetscCall(PetscMemzero(g, sizeof(*g)));
  PetscFunctionReturn(0);
}

PetscErrorCode CsBlockCyclicInit(const CsGrid *g, int m, int n, int nb, CsBlockCyclic *A)
{
  int zero = 0, info = 0;

  PetscFunctionBeginUser;
  PetscCheck(m >= 0 && n >= 0 && nb >= 1, g->comm, PETSC_ERR_ARG_OUTOFRANGE, "block-cyclic %d x %d with block %d", m, n, nb);
  PetscCall(PetscMemzero(A, sizeof(*A)));
  A->m = m, A->n = n, A->nb = nb;
  A->mloc = g->myrow >= 0 ? numroc_(&m, &nb, &g->myrow, &zero, &g->nprow) : 0;
  A->nloc = g->mycol >= 0 ? numroc_(&n, &nb, &g->mycol, &zero, &g->npcol) : 0;
  A->lld  = PetscMax(1, A->mloc);
  if (g->myrow >= 0) {
    descinit_(A->desc, &m, &n, &nb, &nb, &zero, &zero, &g->ctxt, &A->lld, &info);
    PetscCheck(!info, PETSC_COMM_SELF, PETSC_ERR_LIB, "descinit failed for %d x %d (info %d)", m, n, info);
  }
  PetscFunctionReturn(0);
}
