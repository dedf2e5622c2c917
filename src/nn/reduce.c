/* Gradient reduction over ranks: one blocking allreduce, or buckets overlapped with backward. See nn.h. */
#include "nnimpl.h"

const char *const CsNNReduceTypes[] = {"blocking", "bucketed", "CsNNReduceType", "CS_NN_REDUCE_", NULL};

struct _n_CsNNReducer {
  MPI_Comm       comm;
  PetscMPIInt    size;
  CsNNParams     P;
  CsNNReduceType type;
  size_t         bucket;  /* minimum floats per bucket */
  size_t         started; /* [started, n) has been handed to MPI */
  PetscInt       nreq, maxreq;
  MPI_Request   *req;
};

PetscErrorCode CsNNReducerCreate(MPI_Comm comm, CsNNParams P, CsNNReducer *r)
{
  PetscFunctionBeginUser;
  PetscCall(PetscNew(r));
  (*r)->comm = comm, (*r)->P = P, (*r)->type = CS_NN_REDUCE_BLOCKING, (*r)->bucket = (size_t)1 << 20;
  PetscCallMPI(MPI_Comm_size(comm, &(*r)->size));
  PetscFunctionReturn(0);
}

PetscErrorCode CsNNReducerSetType(CsNNReducer r, CsNNReduceType type, size_t bucket_floats)
{
  PetscFunctionBeginUser;
  r->type = type;
  if (bucket_floats) r->bucket = bucket_floats;
  PetscFunctionReturn(0);
}

PetscErrorCode CsNNReducerSetFromOptions(CsNNReducer r)
{
  PetscReal mb = (PetscReal)r->bucket * sizeof(float) / (1 << 20);

  PetscFunctionBeginUser;
  PetscOptionsBegin(r->comm, NULL, "Gradient reduction", "CsNNReducer");
  PetscCall(PetscOptionsEnum("-nn_grad_reduce", "Gradient reduction: one blocking allreduce, or buckets overlapped with backward",
                             "CsNNReducerSetFromOptions", CsNNReduceTypes, (PetscEnum)r->type, (PetscEnum *)&r->type, NULL));
  PetscCall(PetscOptionsReal("-nn_grad_bucket_mb", "Bucket size (MiB) of the bucketed reduction", "CsNNReducerSetFromOptions", mb, &mb, NULL));
  PetscOptionsEnd();
  CsCheckAll(r->comm, mb > 0, "-nn_grad_bucket_mb must be positive (got %g)", (double)mb);
  r->bucket = (size_t)(mb * (1 << 20) / sizeof(float));
  if (r->bucket < 1024) r->bucket = 1024;
  PetscFunctionReturn(0);
}

PetscErrorCode CsNNReducerBegin(CsNNReducer r)
{
  PetscFunctionBeginUser;
  r->started = r->P->n;
  r->nreq    = 0;
  PetscFunctionReturn(0);
}

static PetscErrorCode StartBucket(CsNNReducer r, size_t lo, size_t hi)
{
  PetscFunctionBeginUser;
  PetscCheck(hi - lo < (size_t)PETSC_MPI_INT_MAX, PETSC_COMM_SELF, PETSC_ERR_SUP, "gradient bucket of %zu floats is too large", hi - lo);
  if (r->nreq == r->maxreq) {
    r->maxreq = r->maxreq ? 2 * r->maxreq : 16;
    PetscCall(PetscRealloc(sizeof(MPI_Request) * (size_t)r->maxreq, &r->req));
  }
  PetscCallMPI(MPI_Iallreduce(MPI_IN_PLACE, r->P->g + lo, (PetscMPIInt)(hi - lo), MPI_FLOAT, MPI_SUM, r->comm, &r->req[r->nreq++]));
  r->started = lo;
  PetscFunctionReturn(0);
}

PetscErrorCode CsNNReducerReady(CsNNReducer r, size_t lo)
{
  int flag;

  PetscFunctionBeginUser;
  if (!r || r->size == 1 || r->type != CS_NN_REDUCE_BUCKETED) PetscFunctionReturn(0);
  PetscCall(PetscLogEventBegin(CS_EVENT_REDUCE, 0, 0, 0, 0));
  if (lo < r->started && r->started - lo >= r->bucket) PetscCall(StartBucket(r, lo, r->started));
  /* Open MPI progresses non-blocking collectives only inside MPI calls. */
  if (r->nreq) PetscCallMPI(MPI_Testall(r->nreq, r->req, &flag, MPI_STATUSES_IGNORE));
  PetscCall(PetscLogEventEnd(CS_EVENT_REDUCE, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

PetscErrorCode CsNNReducerEnd(CsNNReducer r)
{
  PetscFunctionBeginUser;
  if (r->size == 1) PetscFunctionReturn(0);
  PetscCall(PetscLogEventBegin(CS_EVENT_REDUCE, 0, 0, 0, 0));
  if (r->type == CS_NN_REDUCE_BUCKETED) {
    if (r->started > 0) PetscCall(StartBucket(r, 0, r->started));
    PetscCallMPI(MPI_Waitall(r->nreq, r->req, MPI_STATUSES_IGNORE));
    r->nreq = 0;
  } else {
    for (size_t lo = 0; lo < r->P->n; lo += (size_t)1 << 30) {
      size_t cnt = PetscMin((size_t)1 << 30, r->P->n - lo);
      PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, r->P->g + lo, (PetscMPIInt)cnt, MPI_FLOAT, MPI_SUM, r->comm));
    }
  }
  PetscCall(PetscLogEventEnd(CS_EVENT_REDUCE, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

PetscErrorCode CsNNReducerDestroy(CsNNReducer *r)
{
  PetscFunctionBeginUser;
  if (!*r) PetscFunctionReturn(0);
  PetscCall(PetscFree((*r)->req));
  PetscCall(PetscFree(*r));
  PetscFunctionReturn(0);
}
