/* The cells sampler: a per-epoch permutation of the training cells cut into global batches (see sampler.h). */
#include "trainerimpl.h"

typedef struct {
  CsPool    train, valid; /* one class each */
  PetscInt *tmp;          /* [batch] local rows of a batch */
  /* weighted draws: cum[k] = sum of the quantised weights of the rank's training cells before its k-th one,
     [off, off + cum[cnt]) this rank's part of [0, total) */
  uint64_t *cum, off, total;
} Cells;

#define CS_WEIGHT_BITS 30

/* Quantised weights and their exact prefix sums over the training cells in global order (see sampler.h). */
static PetscErrorCode WeightsSetUp(CsSampler s, Cells *c)
{
  MPI_Comm comm = PetscObjectComm((PetscObject)s);
  PetscInt n    = c->train.cnt[0];
  double   wmax = 0;
  uint64_t loc;

  PetscFunctionBeginUser;
  PetscCall(PetscFree(c->cum));
  if (!s->weight) PetscFunctionReturn(0);
  PetscInt bad = -1;
  for (PetscInt k = 0; k < n; k++) {
    double w = s->weight[c->train.rows[k]];
    if (!(isfinite(w) && w >= 0) && bad < 0) bad = k;
    else wmax = PetscMax(wmax, w);
  }
  CsCheckAll(comm, bad < 0, "sampling weight %g of cell %" PetscInt_FMT " is not finite and >= 0", bad >= 0 ? s->weight[c->train.rows[bad]] : 0.0,
             bad >= 0 ? s->ds->rstart + c->train.rows[bad] : -1);
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &wmax, 1, MPI_DOUBLE, MPI_MAX, comm));
  CsCheckAll(comm, wmax > 0, "every training cell has sampling weight 0");
  PetscCall(PetscMalloc1(n + 1, &c->cum));
  c->cum[0] = 0;
  for (PetscInt k = 0; k < n; k++) {
    double   w = s->weight[c->train.rows[k]];
    uint64_t q = w > 0 ? (uint64_t)PetscMax(1.0, floor(ldexp(w / wmax, CS_WEIGHT_BITS) + 0.5)) : 0;
    c->cum[k + 1] = c->cum[k] + q;
  }
  loc    = c->cum[n];
  c->off = 0;
  PetscCallMPI(MPI_Exscan(&loc, &c->off, 1, MPI_UINT64_T, MPI_SUM, comm));
  if (!s->rank) c->off = 0;
  PetscCallMPI(MPI_Allreduce(&loc, &c->total, 1, MPI_UINT64_T, MPI_SUM, comm));
  PetscFunctionReturn(0);
}

/* The weighted draws of positions [lo, hi) of epoch e that fall on this rank, as local rows in position order. */
static void WeightedBatch(CsSampler s, const Cells *c, PetscInt epoch, PetscInt lo, PetscInt hi, PetscInt *tmp, PetscInt *n)
{
  PetscInt m = c->train.cnt[0];
  *n = 0;
  for (PetscInt p = lo; p < hi; p++) {
    uint32_t r[4];
    uint64_t v;
    CsRng4(s->seed, CS_STREAM_WEIGHT, (uint64_t)epoch, (uint64_t)p, r);
    v = (((uint64_t)r[0] << 32) | r[1]) % c->total;
    if (v < c->off || v >= c->off + c->cum[m]) continue;
    v -= c->off;
    { /* the last k with cum[k] <= v: cell k's interval [cum[k], cum[k + 1]) holds v (zero-width cells never do) */
      PetscInt a = 0, b = m - 1;
      while (a < b) {
        PetscInt mid = (a + b + 1) / 2;
        if (c->cum[mid] <= v) a = mid;
        else b = mid - 1;
      }
      tmp[(*n)++] = c->train.rows[a];
    }
  }
}

static PetscErrorCode CsSamplerSetUp_Cells(CsSampler s)
{
  Cells    *c = (Cells *)s->data;
  PetscInt *cls;

  PetscFunctionBeginUser;
  PetscCall(CsPoolDestroy(&c->train));
  PetscCall(CsPoolDestroy(&c->valid));
  PetscCall(PetscMalloc1(s->ds->nlocal + 1, &cls));
  for (PetscInt i = 0; i < s->ds->nlocal; i++) cls[i] = CsMaskGet(s->train, i) ? 0 : -1;
  PetscCall(CsPoolCreate(PetscObjectComm((PetscObject)s), s->ds, 1, cls, &c->train));
  for (PetscInt i = 0; i < s->ds->nlocal; i++) cls[i] = s->valid && CsMaskGet(s->valid, i) ? 0 : -1;
  PetscCall(CsPoolCreate(PetscObjectComm((PetscObject)s), s->ds, 1, cls, &c->valid));
  PetscCall(PetscFree(cls));
  PetscCall(PetscFree(c->tmp));
  PetscCall(PetscMalloc1(s->batch + 1, &c->tmp));
  PetscCall(WeightsSetUp(s, c));
  PetscFunctionReturn(0);
}

void CsSamplerCellSizes(CsSamplePhase phase, PetscInt n, PetscInt B, PetscInt *nsteps, PetscInt *ncells, PetscInt *nrows)
{
  if (phase == CS_SAMPLE_TRAIN) *nsteps = PetscMax(1, n / B), *nrows = *nsteps * PetscMin(B, n);
  else *nsteps = (n + B - 1) / B, *nrows = n;
  *ncells = n;
}

static PetscErrorCode CsSamplerSizes_Cells(CsSampler s, CsSamplePhase phase, PetscInt *nsteps, PetscInt *ncells, PetscInt *nrows)
{
  Cells *c = (Cells *)s->data;

  PetscFunctionBeginUser;
  CsSamplerCellSizes(phase, (phase == CS_SAMPLE_TRAIN ? c->train : c->valid).total[0], s->batch, nsteps, ncells, nrows);
  PetscFunctionReturn(0);
}

PetscErrorCode CsSamplerCellBatch(CsSampler s, const CsPool *pool, CsSamplePhase phase, PetscInt epoch, PetscInt step,
                                               PetscInt part, PetscInt nparts, PetscInt *tmp, PetscInt *n, PetscInt *nglobal)
{
  PetscInt N = pool->total[0], p0 = step * s->batch, p1 = PetscMin(p0 + s->batch, N), lo, hi;
  CsPerm   perm;

  PetscFunctionBeginUser;
  CsPermInit(&perm, (uint64_t)N, s->seed, CS_STREAM_SHUFFLE, (uint64_t)epoch);
  CsSamplerPart(p0, p1, part, nparts, &lo, &hi);
  *n = 0;
  for (PetscInt p = lo; p < hi; p++) {
    PetscInt idx = phase == CS_SAMPLE_TRAIN ? (PetscInt)CsPermApply(&perm, (uint64_t)p) : p, l = CsPoolLocal(pool, 0, idx);
    if (l >= 0) tmp[(*n)++] = l;
  }
  *nglobal = hi - lo;
  PetscFunctionReturn(0);
}

static PetscErrorCode CsSamplerBatch_Cells(CsSampler s, CsSamplePhase phase, PetscInt epoch, PetscInt step, PetscInt part, PetscInt nparts,
                                           CsBatch *b)
{
  Cells   *c = (Cells *)s->data;
  PetscInt n, nglobal;

  PetscFunctionBeginUser;
  if (phase == CS_SAMPLE_TRAIN && c->cum) {
    PetscInt N = c->train.total[0], p0 = step * s->batch, p1 = PetscMin(p0 + s->batch, N), lo, hi;
    CsSamplerPart(p0, p1, part, nparts, &lo, &hi);
    WeightedBatch(s, c, epoch, lo, hi, c->tmp, &n);
    nglobal = hi - lo;
  } else PetscCall(CsSamplerCellBatch(s, phase == CS_SAMPLE_TRAIN ? &c->train : &c->valid, phase, epoch, step, part, nparts, c->tmp, &n, &nglobal));
  PetscCall(CsSamplerRows(s, n, c->tmp, b));
  b->nglobal = nglobal;
  PetscFunctionReturn(0);
}

static PetscErrorCode CsSamplerDestroy_Cells(CsSampler s)
{
  Cells *c = (Cells *)s->data;

  PetscFunctionBeginUser;
  PetscCall(CsPoolDestroy(&c->train));
  PetscCall(CsPoolDestroy(&c->valid));
  PetscCall(PetscFree(c->tmp));
  PetscCall(PetscFree(c->cum));
  PetscCall(PetscFree(s->data));
  PetscFunctionReturn(0);
}

PetscErrorCode CsSamplerCreate_Cells(CsSampler s)
{
  Cells *c;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&c));
  s->data         = c;
  s->ops->setup   = CsSamplerSetUp_Cells;
  s->ops->sizes   = CsSamplerSizes_Cells;
  s->ops->batch   = CsSamplerBatch_Cells;
  s->ops->destroy = CsSamplerDestroy_Cells;
  PetscFunctionReturn(0);
}
