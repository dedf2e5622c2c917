/* The coupled sampler: each step is one group, a perturbed minibatch of its cells and a control minibatch of its
   context, each rank holding the cells of both it owns (see sampler.h). */
#include "trainerimpl.h"

typedef struct {
  CsPool    ctrl, train, valid;      /* controls by context; cells of the eligible groups by group */
  PetscInt  ntrain, nvalid;          /* eligible groups */
  PetscInt *trainlist, *validlist;   /* in design order */
  PetscInt *trainslot, *validslot;   /* [ngroups + 1] first slot of each listed group */
  PetscInt *tmp, *tmpc;              /* [batch] local rows */
} Coupled;

/* Slots of each group: training max(1, n / B) (an epoch draws each group's cells without replacement), validation
   ceil(n / B) (every validation cell once). */
static PetscErrorCode Slots(PetscInt ng, const PetscInt list[], const CsPool *p, PetscInt B, PetscBool train, PetscInt **slot)
{
  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(ng + 1, slot));
  (*slot)[0] = 0;
  for (PetscInt k = 0; k < ng; k++) {
    PetscInt n = p->total[list[k]];
    (*slot)[k + 1] = (*slot)[k] + (train ? PetscMax(1, n / B) : (n + B - 1) / B);
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode FreeLists(Coupled *c)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree(c->trainlist));
  PetscCall(PetscFree(c->validlist));
  PetscCall(PetscFree(c->trainslot));
  PetscCall(PetscFree(c->validslot));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsSamplerSetUp_Coupled(CsSampler s)
{
  Coupled *c = (Coupled *)s->data;

  PetscFunctionBeginUser;
  PetscCheck(s->design, PetscObjectComm((PetscObject)s), PETSC_ERR_ORDER, "the coupled sampler needs the design (CsSamplerSetData)");
  PetscCall(CsPoolDestroy(&c->ctrl));
  PetscCall(CsPoolDestroy(&c->train));
  PetscCall(CsPoolDestroy(&c->valid));
  PetscCall(FreeLists(c));
  PetscCall(PetscFree2(c->tmp, c->tmpc));
  PetscCall(CsSamplerControlPool(s, &c->ctrl));
  PetscCall(CsSamplerEligibleGroups(s, s->train, &c->ctrl, &c->ntrain, &c->trainlist, &c->train));
  PetscCall(CsSamplerEligibleGroups(s, s->valid, &c->ctrl, &c->nvalid, &c->validlist, &c->valid));
  CsCheckAll(PetscObjectComm((PetscObject)s), c->ntrain > 0, "coupled sampler: no perturbed training group has training controls in its context");
  PetscCall(Slots(c->ntrain, c->trainlist, &c->train, s->batch, PETSC_TRUE, &c->trainslot));
  PetscCall(Slots(c->nvalid, c->validlist, &c->valid, s->batch, PETSC_FALSE, &c->validslot));
  PetscCall(PetscMalloc2(s->batch + 1, &c->tmp, s->batch + 1, &c->tmpc));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsSamplerSizes_Coupled(CsSampler s, CsSamplePhase phase, PetscInt *nsteps, PetscInt *ncells, PetscInt *nrows)
{
  Coupled  *c    = (Coupled *)s->data;
  PetscBool tr   = phase == CS_SAMPLE_TRAIN;
  PetscInt  ng   = tr ? c->ntrain : c->nvalid, *list = tr ? c->trainlist : c->validlist, *slot = tr ? c->trainslot : c->validslot;
  CsPool   *p    = tr ? &c->train : &c->valid;

  PetscFunctionBeginUser;
  *nsteps = slot[ng], *ncells = 0, *nrows = 0;
  for (PetscInt k = 0; k < ng; k++) {
    PetscInt n = p->total[list[k]];
    *ncells += n;
    *nrows += tr ? (slot[k + 1] - slot[k]) * PetscMin(s->batch, n) : n;
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode CsSamplerMaxRows_Coupled(CsSampler s, PetscInt *rows, PetscInt *ctrl)
{
  PetscFunctionBeginUser;
  *rows = *ctrl = s->batch;
  PetscFunctionReturn(0);
}

/* The listed group whose slots hold slot number sigma: the last k with slot[k] <= sigma. */
static PetscInt SlotGroup(const PetscInt slot[], PetscInt ng, PetscInt sigma)
{
  PetscInt k = 0, hi = ng - 1;
  while (k < hi) {
    PetscInt mid = (k + hi + 1) / 2;
    if (slot[mid] <= sigma) k = mid;
    else hi = mid - 1;
  }
  return k;
}

/* This rank's members among positions [lo, hi) of draws from class cls of pool p (perm NULL: global order). */
static PetscInt Owned(const CsPool *p, PetscInt cls, const CsPerm *perm, PetscInt lo, PetscInt hi, PetscInt *out)
{
  PetscInt n = 0;
  for (PetscInt q = lo; q < hi; q++) {
    PetscInt l = CsPoolLocal(p, cls, perm ? (PetscInt)CsPermApply(perm, (uint64_t)q) : q);
    if (l >= 0) out[n++] = l;
  }
  return n;
}

static PetscErrorCode CsSamplerBatch_Coupled(CsSampler s, CsSamplePhase phase, PetscInt epoch, PetscInt step, PetscInt part, PetscInt nparts,
                                             CsBatch *b)
{
  Coupled  *c  = (Coupled *)s->data;
  PetscBool tr = phase == CS_SAMPLE_TRAIN;
  PetscInt  ng = tr ? c->ntrain : c->nvalid, *list = tr ? c->trainlist : c->validlist, *slot = tr ? c->trainslot : c->validslot;
  PetscInt  ekey = tr ? epoch : -1, sigma = step, k, g, ctx, n, m, v, p0, p1, lo, up, n1, n2;
  CsPool   *pool = tr ? &c->train : &c->valid;
  CsPerm    order, cells, ctrl;

  PetscFunctionBeginUser;
  if (tr) {
    CsPermInit(&order, (uint64_t)slot[ng], s->seed, CS_STREAM_SHUFFLE, (uint64_t)epoch);
    sigma = (PetscInt)CsPermApply(&order, (uint64_t)step);
  }
  k = SlotGroup(slot, ng, sigma);
  g = list[k], ctx = s->design->groups[g].ctx, n = pool->total[g], m = c->ctrl.total[ctx], v = sigma - slot[k];
  /* Perturbed minibatch: the v-th block of the group's permutation (validation: of its global order). */
  if (tr) p0 = v * PetscMin(s->batch, n), p1 = p0 + PetscMin(s->batch, n);
  else p0 = v * s->batch, p1 = PetscMin(p0 + s->batch, n);
  CsPermInit(&cells, (uint64_t)n, s->seed, CS_STREAM_SET, CsDrawKey(ekey, g));
  CsSamplerPart(p0, p1, part, nparts, &lo, &up);
  n1 = Owned(pool, g, tr ? &cells : NULL, lo, up, c->tmp);
  PetscCall(CsSamplerRows(s, n1, c->tmp, b));
  b->nglobal = up - lo;
  /* Control minibatch: the first min(B, m) of a permutation of the context's controls keyed by the slot. */
  CsPermInit(&ctrl, (uint64_t)m, s->seed, CS_STREAM_PAIR, CsDrawKey(ekey, sigma));
  CsSamplerPart(0, PetscMin(s->batch, m), part, nparts, &lo, &up);
  n2 = Owned(&c->ctrl, ctx, &ctrl, lo, up, c->tmpc);
  PetscCall(CsSamplerRowsCtrl(s, n2, c->tmpc, b));
  b->nctrl_global = up - lo;
  PetscCall(CsBatchSetGroups(b, 1));
  b->group[0] = g, b->rowptr[1] = n1, b->ctrlptr[1] = n2;
  PetscFunctionReturn(0);
}

static PetscErrorCode CsSamplerDestroy_Coupled(CsSampler s)
{
  Coupled *c = (Coupled *)s->data;

  PetscFunctionBeginUser;
  PetscCall(CsPoolDestroy(&c->ctrl));
  PetscCall(CsPoolDestroy(&c->train));
  PetscCall(CsPoolDestroy(&c->valid));
  PetscCall(FreeLists(c));
  PetscCall(PetscFree2(c->tmp, c->tmpc));
  PetscCall(PetscFree(s->data));
  PetscFunctionReturn(0);
}

PetscErrorCode CsSamplerCreate_Coupled(CsSampler s)
{
  Coupled *c;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&c));
  s->data         = c;
  s->ops->setup   = CsSamplerSetUp_Coupled;
  s->ops->sizes   = CsSamplerSizes_Coupled;
  s->ops->maxrows = CsSamplerMaxRows_Coupled;
  s->ops->batch   = CsSamplerBatch_Coupled;
  s->ops->destroy = CsSamplerDestroy_Coupled;
  PetscFunctionReturn(0);
}
