/* The cells sampler: a per-epoch permutation of the training cells cut into global batches (see sampler.h). */
#include "trainerimpl.h"

typedef struct {
  CsPool    train, valid; /* one class each */
  PetscInt *tmp;          /* [batch] local rows of a batch */
} Cells;

static PetscErrorCode CsSamplerSetUp_Cells(CsSampler s)
{
  Cells    *c = (Cells *)s->data;
  PetscInt *cls;

  PetscFunctionBeginUser;
  PetscCall(CsPoolDestroy(&c->train));
  PetscCall(CsPoolDestroy(&c->valid));
  PetscCall(PetscMalloc1(s->ds->nlocal + 1, &cls));
  for (PetscInt i = 0; i < s->ds->nlocal; i++) cls[i] = s->train[i] ? 0 : -1;
  PetscCall(CsPoolCreate(PetscObjectComm((PetscObject)s), s->ds, 1, cls, &c->train));
  for (PetscInt i = 0; i < s->ds->nlocal; i++) cls[i] = s->valid && s->valid[i] ? 0 : -1;
  PetscCall(CsPoolCreate(PetscObjectComm((PetscObject)s), s->ds, 1, cls, &c->valid));
  PetscCall(PetscFree(cls));
  PetscCall(PetscFree(c->tmp));
  PetscCall(PetscMalloc1(s->batch + 1, &c->tmp));
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
  PetscCall(CsSamplerCellBatch(s, phase == CS_SAMPLE_TRAIN ? &c->train : &c->valid, phase, epoch, step, part, nparts, c->tmp, &n, &nglobal));
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
