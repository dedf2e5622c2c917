/* Gradient reduction over ranks: one blocking allreduce, buckets overlapped with backward, or a reduce-scatter
   to per-rank slices that the optimiser updates before an allgather of the parameters. See nn.h. */
#include "nnimpl.h"
#include <string.h>

const char *const CsNNReduceTypes[] = {"blocking", "bucketed", "sharded", "CsNNReduceType", "CS_NN_REDUCE_", NULL};

struct _n_CsNNReducer {
  MPI_Comm       comm;
  PetscMPIInt    size;
  CsNNParams     P;
  CsNNReduceType type;
  size_t         bucket;  /* minimum floats per bucket */
  size_t         started; /* [started, n) has been handed to MPI */
  PetscInt       nreq, maxreq;
  MPI_Request   *req;
  /* sharded: rank k owns [displs[k], displs[k] + counts[k]) of the buffer (16-float aligned) */
  PetscMPIInt    rank;
  PetscMPIInt   *counts, *displs;
  float         *tmp;      /* [counts[rank]] a slice received from another rank */
  PetscBool      attached; /* an optimiser updates the slices (CsNNOptimSetReducer) */
};

PetscErrorCode CsNNReducerCreate(MPI_Comm comm, CsNNParams P, CsNNReducer *r)
{
  PetscFunctionBeginUser;
  PetscCall(PetscNew(r));
  (*r)->comm = comm, (*r)->P = P, (*r)->type = CS_NN_REDUCE_BLOCKING, (*r)->bucket = (size_t)1 << 20;
  PetscCallMPI(MPI_Comm_size(comm, &(*r)->size));
  PetscCallMPI(MPI_Comm_rank(comm, &(*r)->rank));
  PetscFunctionReturn(0);
}

/* Slices of the sharded reduction, made on first use (the parameter buffer is set up by then). */
static PetscErrorCode ShardSetUp(CsNNReducer r)
{
  PetscFunctionBeginUser;
  if (r->counts) PetscFunctionReturn(0);
  PetscCheck(r->P->setup, r->comm, PETSC_ERR_ORDER, "the parameters must be set up before the gradient reduction");
  PetscCheck(r->P->n < (size_t)PETSC_MPI_INT_MAX, r->comm, PETSC_ERR_SUP, "sharded reduction of %zu floats is too large", r->P->n);
  PetscCall(PetscMalloc2(r->size, &r->counts, r->size, &r->displs));
  for (PetscMPIInt k = 0; k < r->size; k++) {
    size_t lo, hi;
    CsPoolChunk(r->P->n, k, r->size, 16, &lo, &hi);
    r->displs[k] = (PetscMPIInt)lo, r->counts[k] = (PetscMPIInt)(hi - lo);
  }
  PetscCall(CsNNMalloc(sizeof(float) * ((size_t)r->counts[r->rank] + 16), &r->tmp));
  PetscFunctionReturn(0);
}

PetscBool CsNNReducerSharded(CsNNReducer r, size_t *lo, size_t *hi, float **gshard)
{
  if (!r || r->size == 1 || r->type != CS_NN_REDUCE_SHARDED || !r->counts) return PETSC_FALSE;
  *lo = (size_t)r->displs[r->rank], *hi = *lo + (size_t)r->counts[r->rank], *gshard = r->P->g + *lo;
  return PETSC_TRUE;
}

MPI_Comm CsNNReducerComm(CsNNReducer r) { return r->comm; }

void CsNNReducerAttach(CsNNReducer r) { r->attached = PETSC_TRUE; }

PetscErrorCode CsNNReducerAllgather(CsNNReducer r, float *x)
{
  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, x, r->counts, r->displs, MPI_FLOAT, r->comm));
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
  PetscCall(PetscOptionsEnum("-nn_grad_reduce",
                             "Gradient reduction: one blocking allreduce, buckets overlapped with backward, or sharded (reduce-scatter, "
                             "each rank updates its slice, allgather of the parameters)",
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

CS_NN_VEC static void AddTo(float *restrict y, const float *restrict x, size_t n)
{
  for (size_t i = 0; i < n; i++) y[i] += x[i];
}

/* The sum over ranks of this rank's slice, in place in P->g; the rest of P->g is zeroed for the next accumulation
   (the optimiser step zeroes the slice). Pairwise exchange: at step k every rank sends its copy of the slice of
   rank + k and adds the copy of its own slice from rank - k; each rank moves (P-1)/P of the buffer, like a ring,
   and on shared memory it measured twice as fast as MPI_Reduce_scatter (Open MPI 4.1). Small slices use
   MPI_Reduce_scatter, whose latency is then what matters. */
static PetscErrorCode ReduceScatter(CsNNReducer r)
{
  float      *g  = r->P->g;
  PetscMPIInt me = r->rank, P = r->size;
  size_t      lo, cnt;

  PetscFunctionBeginUser;
  PetscCall(ShardSetUp(r));
  lo = (size_t)r->displs[me], cnt = (size_t)r->counts[me];
  if (r->P->n / (size_t)P < (1 << 14)) {
    PetscCallMPI(MPI_Reduce_scatter(g, r->tmp, r->counts, MPI_FLOAT, MPI_SUM, r->comm));
    memcpy(g + lo, r->tmp, sizeof(float) * cnt);
  } else {
    for (PetscMPIInt k = 1; k < P; k++) {
      PetscMPIInt dst = (me + k) % P, src = (me - k + P) % P;
      PetscCallMPI(MPI_Sendrecv(g + r->displs[dst], r->counts[dst], MPI_FLOAT, dst, 0, r->tmp, (PetscMPIInt)cnt, MPI_FLOAT, src, 0, r->comm,
                                MPI_STATUS_IGNORE));
      AddTo(g + lo, r->tmp, cnt);
    }
  }
  memset(g, 0, sizeof(float) * lo);
  memset(g + lo + cnt, 0, sizeof(float) * (r->P->n - lo - cnt));
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
  } else if (r->type == CS_NN_REDUCE_SHARDED) {
    /* Without an optimiser that knows, P->g would look like a full gradient and silently be wrong. */
    PetscCheck(r->attached, r->comm, PETSC_ERR_ORDER, "a sharded gradient reduction needs its optimiser attached (CsNNOptimSetReducer)");
    PetscCall(ReduceScatter(r));
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
  PetscCall(PetscFree2((*r)->counts, (*r)->displs));
  PetscCall(CsNNFree(&(*r)->tmp));
  PetscCall(PetscFree(*r));
  PetscFunctionReturn(0);
}
