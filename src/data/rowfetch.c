/* Rows of a distributed CSR matrix fetched by global index onto the ranks that ask for them: the one mechanism by
   which a rank gets cells it does not own (samplers gathering a group on one rank, set-level prediction, the
   evaluator's subsamples). See CsCSRFetchRows in include/cellshift/dataset.h. */
#include <cellshift/dataset.h>

typedef struct {
  PetscInt pos, owner;
  int64_t  row;
} Request;

static int CmpOwner(const void *a, const void *b)
{
  const Request *x = a, *y = b;
  if (x->owner != y->owner) return x->owner < y->owner ? -1 : 1;
  return x->pos < y->pos ? -1 : x->pos > y->pos; /* stable: request order within an owner */
}

/* counts -> displacements, checking that the total fits the int counts of MPI. */
static PetscErrorCode Displs(MPI_Comm comm, PetscMPIInt size, const int64_t *cnt, PetscMPIInt *icnt, PetscMPIInt *idispl, int64_t *total)
{
  PetscFunctionBeginUser;
  *total = 0;
  for (PetscMPIInt p = 0; p < size; p++) {
    PetscCheck(*total + cnt[p] < PETSC_MPI_INT_MAX, comm, PETSC_ERR_SUP, "row fetch too large for one exchange (%lld entries)",
               (long long)(*total + cnt[p]));
    idispl[p] = (PetscMPIInt)*total, icnt[p] = (PetscMPIInt)cnt[p];
    *total += cnt[p];
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsCSRFetchRows(PetscLayout layout, const CsCSR *X, PetscInt n, const PetscInt rows[], CsCSR *out)
{
  MPI_Comm        comm = layout->comm;
  PetscMPIInt     size;
  PetscInt        rstart, rend;
  Request        *req;
  int64_t        *scnt, *rcnt, nsend = 0, nrecv = 0, *sidx, *ridx, *rlen, *slen, nnzback = 0, nnzout = 0;
  PetscMPIInt    *sc, *sd, *rc, *rd;
  int32_t        *cidx, *oidx;
  float          *cval, *oval;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCall(PetscLayoutGetRange(layout, &rstart, &rend));
  PetscCall(PetscMalloc1(n + 1, &req));
  for (PetscInt i = 0; i < n; i++) {
    PetscMPIInt owner;
    PetscCheck(rows[i] >= 0 && rows[i] < layout->N, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE, "row %" PetscInt_FMT " outside [0, %" PetscInt_FMT ")",
               rows[i], layout->N);
    PetscCall(PetscLayoutFindOwner(layout, rows[i], &owner));
    req[i] = (Request){i, owner, rows[i]};
  }
  qsort(req, (size_t)n, sizeof(Request), CmpOwner);
  PetscCall(PetscCalloc2(size, &scnt, size, &rcnt));
  PetscCall(PetscMalloc4(size, &sc, size, &sd, size, &rc, size, &rd));
  for (PetscInt i = 0; i < n; i++) scnt[req[i].owner]++;
  PetscCallMPI(MPI_Alltoall(scnt, 1, MPI_INT64_T, rcnt, 1, MPI_INT64_T, comm));
  PetscCall(Displs(comm, size, scnt, sc, sd, &nsend));
  PetscCall(Displs(comm, size, rcnt, rc, rd, &nrecv));
  /* 1. the requested row numbers go to their owners */
  PetscCall(PetscMalloc2(nsend + 1, &sidx, nrecv + 1, &ridx));
  for (PetscInt i = 0; i < n; i++) sidx[i] = req[i].row;
  PetscCallMPI(MPI_Alltoallv(sidx, sc, sd, MPI_INT64_T, ridx, rc, rd, MPI_INT64_T, comm));
  /* 2. the owners answer with the row lengths, then the entries */
  PetscCall(PetscMalloc2(nrecv + 1, &rlen, nsend + 1, &slen));
  for (int64_t k = 0; k < nrecv; k++) {
    int64_t r = ridx[k] - rstart;
    PetscCheck(r >= 0 && r < rend - rstart, PETSC_COMM_SELF, PETSC_ERR_PLIB, "row %lld is not owned here", (long long)ridx[k]);
    rlen[k] = X->indptr[r + 1] - X->indptr[r];
    nnzback += rlen[k];
  }
  PetscCallMPI(MPI_Alltoallv(rlen, rc, rd, MPI_INT64_T, slen, sc, sd, MPI_INT64_T, comm));
  PetscCall(PetscMalloc2(nnzback + 1, &cidx, nnzback + 1, &cval));
  for (int64_t k = 0, at = 0; k < nrecv; k++) {
    int64_t a = X->indptr[ridx[k] - rstart];
    memcpy(cidx + at, X->indices + a, sizeof(int32_t) * (size_t)rlen[k]);
    memcpy(cval + at, X->data + a, sizeof(float) * (size_t)rlen[k]);
    at += rlen[k];
  }
  {
    int64_t *bcnt, *ocnt, tb, to;
    PetscCall(PetscCalloc2(size, &bcnt, size, &ocnt));
    for (PetscMPIInt p = 0; p < size; p++) {
      for (int64_t k = rd[p]; k < rd[p] + rc[p]; k++) bcnt[p] += rlen[k];
      for (int64_t k = sd[p]; k < sd[p] + sc[p]; k++) ocnt[p] += slen[k];
    }
    PetscCall(Displs(comm, size, bcnt, rc, rd, &tb));
    PetscCall(Displs(comm, size, ocnt, sc, sd, &to));
    nnzout = to;
    PetscCall(PetscMalloc2(nnzout + 1, &oidx, nnzout + 1, &oval));
    PetscCallMPI(MPI_Alltoallv(cidx, rc, rd, MPI_INT32_T, oidx, sc, sd, MPI_INT32_T, comm));
    PetscCallMPI(MPI_Alltoallv(cval, rc, rd, MPI_FLOAT, oval, sc, sd, MPI_FLOAT, comm));
    PetscCall(PetscFree2(bcnt, ocnt));
  }
  /* 3. rows back into request order */
  out->nrows = n, out->ncols = X->ncols;
  PetscCall(PetscMalloc1(n + 1, &out->indptr));
  PetscCall(PetscMalloc1(nnzout + 1, &out->indices));
  PetscCall(PetscMalloc1(nnzout + 1, &out->data));
  out->indptr[0] = 0;
  {
    int64_t *start; /* start of sorted request k's entries in the received arrays */
    PetscCall(PetscMalloc1(n + 1, &start));
    for (PetscInt k = 0, at = 0; k < n; k++) start[k] = at, at += slen[k];
    for (PetscInt k = 0; k < n; k++) out->indptr[req[k].pos + 1] = slen[k];
    for (PetscInt i = 0; i < n; i++) out->indptr[i + 1] += out->indptr[i];
    for (PetscInt k = 0; k < n; k++) {
      int64_t at = out->indptr[req[k].pos];
      memcpy(out->indices + at, oidx + start[k], sizeof(int32_t) * (size_t)slen[k]);
      memcpy(out->data + at, oval + start[k], sizeof(float) * (size_t)slen[k]);
    }
    PetscCall(PetscFree(start));
  }
  PetscCall(PetscFree2(oidx, oval));
  PetscCall(PetscFree2(cidx, cval));
  PetscCall(PetscFree2(rlen, slen));
  PetscCall(PetscFree2(sidx, ridx));
  PetscCall(PetscFree4(sc, sd, rc, rd));
  PetscCall(PetscFree2(scnt, rcnt));
  PetscCall(PetscFree(req));
  PetscFunctionReturn(0);
}

PetscErrorCode CsDatasetFetchRows(CsDataset ds, PetscInt n, const PetscInt rows[], CsCSR *out)
{
  PetscFunctionBeginUser;
  PetscCheck(ds->setup, ds->comm, PETSC_ERR_ORDER, "call CsDatasetSetUp first");
  PetscCall(CsCSRFetchRows(ds->rows, &ds->X, n, rows, out));
  PetscFunctionReturn(0);
}

PetscErrorCode CsCSRGatherRows(PetscLayout layout, const CsCSR *X, PetscInt n, const PetscInt local[], PetscMPIInt root, CsCSR *out)
{
  MPI_Comm     comm = layout->comm;
  PetscMPIInt  rank, size, cnt = (PetscMPIInt)n, *counts = NULL, *displs = NULL;
  PetscInt    *mine, *all = NULL, total = 0;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCall(PetscMalloc1(n + 1, &mine));
  for (PetscInt i = 0; i < n; i++) mine[i] = layout->rstart + local[i];
  if (rank == root) PetscCall(PetscMalloc2(size, &counts, size + 1, &displs));
  PetscCallMPI(MPI_Gather(&cnt, 1, MPI_INT, counts, 1, MPI_INT, root, comm));
  if (rank == root) {
    displs[0] = 0;
    for (PetscMPIInt p = 0; p < size; p++) displs[p + 1] = displs[p] + counts[p];
    total = displs[size];
    PetscCall(PetscMalloc1(total + 1, &all));
  }
  PetscCallMPI(MPI_Gatherv(mine, cnt, MPIU_INT, all, counts, displs, MPIU_INT, root, comm));
  PetscCall(CsCSRFetchRows(layout, X, total, all, out));
  PetscCall(PetscFree(all));
  PetscCall(PetscFree2(counts, displs));
  PetscCall(PetscFree(mine));
  PetscFunctionReturn(0);
}
