/* The paired sampler: batches of perturbed training cells, each with a control partner of its context drawn by
   (seed, epoch, cell) and fetched onto the cell's rank (see sampler.h). */
#include "trainerimpl.h"

typedef struct {
  CsPool    ctrl;         /* training controls by context */
  CsPool    train, valid; /* perturbed cells whose context has training controls (one class) */
  PetscInt *tmp, *ctx, *ord, *rows;
} Paired;

/* The perturbed cells of mask whose context has training controls (with controls: and mask's control cells). */
static PetscErrorCode PerturbedPool(CsSampler s, const uint8_t *mask, const CsPool *ctrl, PetscBool controls, CsPool *p)
{
  CsDesign  d = s->design;
  PetscInt *cls;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(s->ds->nlocal + 1, &cls));
  for (PetscInt i = 0; i < s->ds->nlocal; i++) {
    PetscInt g = d->cell_group[i];
    cls[i]     = mask && CsMaskGet(mask, i) && g >= 0 && (controls || !d->groups[g].control) && ctrl->total[d->groups[g].ctx] > 0 ? 0 : -1;
  }
  PetscCall(CsPoolCreate(PetscObjectComm((PetscObject)s), s->ds, 1, cls, p));
  PetscCall(PetscFree(cls));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsSamplerSetUp_Paired(CsSampler s)
{
  Paired *c = (Paired *)s->data;
  PetscInt B = s->batch;

  PetscFunctionBeginUser;
  PetscCheck(s->design, PetscObjectComm((PetscObject)s), PETSC_ERR_ORDER, "the paired sampler needs the design (CsSamplerSetData)");
  PetscCall(CsPoolDestroy(&c->ctrl));
  PetscCall(CsPoolDestroy(&c->train));
  PetscCall(CsPoolDestroy(&c->valid));
  PetscCall(CsSamplerControlPool(s, &c->ctrl));
  PetscCall(PerturbedPool(s, s->train, &c->ctrl, s->paired_controls, &c->train));
  PetscCall(PerturbedPool(s, s->valid, &c->ctrl, PETSC_FALSE, &c->valid));
  CsCheckAll(PetscObjectComm((PetscObject)s), c->train.total[0] > 0,
             "-%ssampler_type paired: no perturbed training cell has training control cells in its context", ((PetscObject)s)->prefix ? ((PetscObject)s)->prefix : "");
  PetscCall(PetscFree4(c->tmp, c->ctx, c->ord, c->rows));
  PetscCall(PetscMalloc4(B + 1, &c->tmp, B + 1, &c->ctx, B + 1, &c->ord, B + 1, &c->rows));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsSamplerSizes_Paired(CsSampler s, CsSamplePhase phase, PetscInt *nsteps, PetscInt *ncells, PetscInt *nrows)
{
  Paired *c = (Paired *)s->data;

  PetscFunctionBeginUser;
  CsSamplerCellSizes(phase, (phase == CS_SAMPLE_TRAIN ? c->train : c->valid).total[0], s->batch, nsteps, ncells, nrows);
  PetscFunctionReturn(0);
}

static PetscErrorCode CsSamplerMaxRows_Paired(CsSampler s, PetscInt *rows, PetscInt *ctrl)
{
  PetscFunctionBeginUser;
  *rows = *ctrl = s->batch;
  PetscFunctionReturn(0);
}

static PetscErrorCode CsSamplerBatch_Paired(CsSampler s, CsSamplePhase phase, PetscInt epoch, PetscInt step, PetscInt part, PetscInt nparts,
                                            CsBatch *b)
{
  Paired  *c = (Paired *)s->data;
  CsDesign d = s->design;
  PetscInt n, nglobal;
  uint64_t key = phase == CS_SAMPLE_TRAIN ? (uint64_t)epoch + 1 : 0;

  PetscFunctionBeginUser;
  PetscCall(CsSamplerCellBatch(s, phase == CS_SAMPLE_TRAIN ? &c->train : &c->valid, phase, epoch, step, part, nparts, c->tmp, &n, &nglobal));
  PetscCall(CsSamplerRows(s, n, c->tmp, b));
  b->nglobal = nglobal;
  /* The partner depends on the cell, not on the rank holding it: an ordinal among its context's controls. */
  for (PetscInt k = 0; k < n; k++) {
    PetscInt ctx = d->groups[d->cell_group[c->tmp[k]]].ctx;
    c->ctx[k]    = ctx;
    c->ord[k]    = (PetscInt)(CsRngUniform(s->seed, CS_STREAM_PAIR, key, (uint64_t)b->cell[k]) * (double)c->ctrl.total[ctx]);
  }
  PetscCall(CsPoolTranslate(&c->ctrl, 0, NULL, n, c->ctx, c->ord, c->rows));
  for (PetscInt k = 0; k < n; k++) /* a control cell of the training pool (-paired_controls) is its own partner */
    if (d->groups[d->cell_group[c->tmp[k]]].control) c->rows[k] = (PetscInt)b->cell[k];
  PetscCall(CsSamplerFetch(s, PETSC_TRUE, n, c->rows, b));
  b->nctrl_global = nglobal;
  PetscFunctionReturn(0);
}

static PetscErrorCode CsSamplerSetFromOptions_Paired(CsSampler s, PetscOptionItems *PetscOptionsObject)
{
  PetscFunctionBeginUser;
  PetscOptionsHeadBegin(PetscOptionsObject, "Paired sampler");
  PetscCall(PetscOptionsBool("-paired_controls", "Training control cells join the training pool, each paired with itself", "CsSamplerSetPairedControls",
                             s->paired_controls, &s->paired_controls, NULL));
  PetscOptionsHeadEnd();
  PetscFunctionReturn(0);
}

PetscErrorCode CsSamplerSetPairedControls(CsSampler s, PetscBool flg)
{
  PetscFunctionBeginUser;
  PetscValidHeaderSpecific(s, CS_SAMPLER_CLASSID, 1);
  s->paired_controls = flg;
  s->setup           = PETSC_FALSE;
  PetscFunctionReturn(0);
}

static PetscErrorCode CsSamplerDestroy_Paired(CsSampler s)
{
  Paired *c = (Paired *)s->data;

  PetscFunctionBeginUser;
  PetscCall(CsPoolDestroy(&c->ctrl));
  PetscCall(CsPoolDestroy(&c->train));
  PetscCall(CsPoolDestroy(&c->valid));
  PetscCall(PetscFree4(c->tmp, c->ctx, c->ord, c->rows));
  PetscCall(PetscFree(s->data));
  PetscFunctionReturn(0);
}

PetscErrorCode CsSamplerCreate_Paired(CsSampler s)
{
  Paired *c;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&c));
  s->data         = c;
  s->ops->setfromoptions = CsSamplerSetFromOptions_Paired;
  s->ops->setup   = CsSamplerSetUp_Paired;
  s->ops->sizes   = CsSamplerSizes_Paired;
  s->ops->maxrows = CsSamplerMaxRows_Paired;
  s->ops->batch   = CsSamplerBatch_Paired;
  s->ops->destroy = CsSamplerDestroy_Paired;
  PetscFunctionReturn(0);
}
