/* The set sampler: each step is a set of (condition, context) groups, each gathered on one rank with set_size of its
   cells and set_controls controls of its context (see sampler.h). */
#include "trainerimpl.h"

typedef struct {
  PetscInt  size, controls, groups; /* -set_size, -set_controls, -set_groups */
  CsPool    ctrl, train, valid;     /* controls by context; cells of the eligible groups by group */
  PetscInt  ntrain, nvalid;         /* eligible groups */
  PetscInt *trainlist, *validlist;  /* [ntrain], [nvalid] in design order */
  PetscInt *classes, *req, *ord, *rows;
} Set;

/* Defaults that follow other settings: controls = set_size, groups = batch_size / set_size. */
static void Defaults(CsSampler s, Set *c)
{
  if (c->controls < 0) c->controls = c->size;
  if (c->groups <= 0) c->groups = PetscMax(1, s->batch / PetscMax(c->size, 1));
}

static PetscErrorCode CsSamplerSetFromOptions_Set(CsSampler s, PetscOptionItems *PetscOptionsObject)
{
  Set *c = (Set *)s->data;

  PetscFunctionBeginUser;
  PetscOptionsHeadBegin(PetscOptionsObject, "Set sampler: groups gathered as sets of cells");
  PetscCall(PetscOptionsInt("-set_size", "Cells of a group per set", "CsSamplerSetFromOptions", c->size, &c->size, NULL));
  Defaults(s, c);
  PetscCall(PetscOptionsInt("-set_controls", "Control cells of the group's context per set (default: -set_size)", "CsSamplerSetFromOptions",
                            c->controls, &c->controls, NULL));
  PetscCall(PetscOptionsInt("-set_groups", "Groups per step (default: -batch_size / -set_size)", "CsSamplerSetFromOptions", c->groups,
                            &c->groups, NULL));
  PetscOptionsHeadEnd();
  CsCheckAll(PetscObjectComm((PetscObject)s), c->size >= 1 && c->controls >= 0 && c->groups >= 1,
             "set sampler: -set_size and -set_groups must be positive and -set_controls non-negative");
  PetscFunctionReturn(0);
}

/* Groups with fewer cells than a set, contexts with fewer controls: their draws are with replacement. */
static PetscErrorCode ReportReplacement(CsSampler s)
{
  Set     *c = (Set *)s->data;
  PetscInt small = 0, fewctrl = 0;

  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < c->ntrain; k++) small += c->train.total[c->trainlist[k]] < c->size;
  for (PetscInt x = 0; x < c->ctrl.nclass; x++) fewctrl += c->ctrl.total[x] > 0 && c->ctrl.total[x] < c->controls;
  if (small || fewctrl)
    PetscCall(PetscPrintf(PetscObjectComm((PetscObject)s),
                          "set sampler: %" PetscInt_FMT " of %" PetscInt_FMT " training groups have fewer than %" PetscInt_FMT
                          " cells and %" PetscInt_FMT " contexts fewer than %" PetscInt_FMT " controls: their sets are drawn with replacement\n",
                          small, c->ntrain, c->size, fewctrl, c->controls));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsSamplerSetUp_Set(CsSampler s)
{
  Set     *c = (Set *)s->data;
  PetscInt G, n, m;

  PetscFunctionBeginUser;
  Defaults(s, c);
  G = c->groups, n = c->size * ((G + s->size - 1) / s->size), m = c->controls * ((G + s->size - 1) / s->size);
  PetscCheck(s->design, PetscObjectComm((PetscObject)s), PETSC_ERR_ORDER, "the set sampler needs the design (CsSamplerSetData)");
  PetscCall(CsPoolDestroy(&c->ctrl));
  PetscCall(CsPoolDestroy(&c->train));
  PetscCall(CsPoolDestroy(&c->valid));
  PetscCall(PetscFree(c->trainlist));
  PetscCall(PetscFree(c->validlist));
  PetscCall(CsSamplerControlPool(s, &c->ctrl));
  PetscCall(CsSamplerEligibleGroups(s, s->train, &c->ctrl, &c->ntrain, &c->trainlist, &c->train));
  PetscCall(CsSamplerEligibleGroups(s, s->valid, &c->ctrl, &c->nvalid, &c->validlist, &c->valid));
  CsCheckAll(PetscObjectComm((PetscObject)s), c->ntrain > 0, "set sampler: no perturbed training group has training controls in its context");
  PetscCall(ReportReplacement(s));
  PetscCall(PetscFree4(c->classes, c->req, c->ord, c->rows));
  PetscCall(PetscMalloc4(G + 1, &c->classes, PetscMax(n, m) + 1, &c->req, PetscMax(n, m) + 1, &c->ord, PetscMax(n, m) + 1, &c->rows));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsSamplerSizes_Set(CsSampler s, CsSamplePhase phase, PetscInt *nsteps, PetscInt *ncells, PetscInt *nrows)
{
  Set     *c = (Set *)s->data;
  PetscInt G = phase == CS_SAMPLE_TRAIN ? c->ntrain : c->nvalid, *list = phase == CS_SAMPLE_TRAIN ? c->trainlist : c->validlist;
  CsPool  *p = phase == CS_SAMPLE_TRAIN ? &c->train : &c->valid;

  PetscFunctionBeginUser;
  if (phase == CS_SAMPLE_TRAIN) *nsteps = PetscMax(1, G / c->groups), *nrows = *nsteps * PetscMin(G, c->groups) * c->size;
  else *nsteps = (G + c->groups - 1) / c->groups, *nrows = G * c->size;
  *ncells = 0;
  for (PetscInt k = 0; k < G; k++) *ncells += p->total[list[k]];
  PetscFunctionReturn(0);
}

static PetscErrorCode CsSamplerMaxRows_Set(CsSampler s, PetscInt *rows, PetscInt *ctrl)
{
  Set     *c = (Set *)s->data;
  PetscInt per;

  PetscFunctionBeginUser;
  Defaults(s, c);
  per = (c->groups + s->size - 1) / s->size; /* groups a rank can hold in one step */
  *rows = per * c->size, *ctrl = per * c->controls;
  PetscFunctionReturn(0);
}

/* Fetch take draws per group of this rank's groups from pool p (classes: the step's groups, or NULL with the groups'
   contexts), in stream, onto X (ctrl false) or Xctrl. */
static PetscErrorCode Gather(CsSampler s, CsPool *p, PetscBool ctrl, PetscInt nc, const PetscInt classes[], PetscInt nmine, const PetscInt mine[],
                             PetscInt take, PetscInt ekey, uint32_t stream, CsBatch *b)
{
  Set     *c = (Set *)s->data;
  CsDesign d = s->design;
  PetscInt n = 0;

  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < nmine; k++) {
    PetscInt g = classes[mine[k]], cls = ctrl ? d->groups[g].ctx : g, N = p->total[cls];
    CsPerm   perm;
    CsDrawInit(&perm, N, s->seed, stream, CsDrawKey(ekey, g));
    for (PetscInt i = 0; i < take; i++, n++) c->req[n] = ctrl ? cls : mine[k], c->ord[n] = CsDraw(&perm, N, take, i);
  }
  PetscCall(CsPoolTranslate(p, ctrl ? 0 : nc, ctrl ? NULL : classes, n, c->req, c->ord, c->rows));
  PetscCall(CsSamplerFetch(s, ctrl, n, c->rows, b));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsSamplerBatch_Set(CsSampler s, CsSamplePhase phase, PetscInt epoch, PetscInt step, PetscInt part, PetscInt nparts,
                                         CsBatch *b)
{
  Set           *c     = (Set *)s->data;
  const PetscBool train = phase == CS_SAMPLE_TRAIN;
  PetscInt       G = train ? c->ntrain : c->nvalid, *list = train ? c->trainlist : c->validlist, q0 = step * c->groups;
  PetscInt       gs = PetscMin(c->groups, G - q0), lo, hi, nmine = 0, *mine, ekey = train ? epoch : -1;
  CsPerm         perm;

  PetscFunctionBeginUser;
  CsPermInit(&perm, (uint64_t)G, s->seed, CS_STREAM_SHUFFLE, (uint64_t)epoch);
  CsSamplerPart(0, gs, part, nparts, &lo, &hi);
  /* The micro-batch's groups, the same list on every rank; position q goes to rank q % size. */
  for (PetscInt q = lo; q < hi; q++) c->classes[q - lo] = list[train ? (PetscInt)CsPermApply(&perm, (uint64_t)(q0 + q)) : q0 + q];
  PetscCall(PetscMalloc1(hi - lo + 1, &mine));
  for (PetscInt q = lo; q < hi; q++)
    if ((q - lo) % s->size == s->rank) mine[nmine++] = q - lo;
  PetscCall(Gather(s, train ? &c->train : &c->valid, PETSC_FALSE, hi - lo, c->classes, nmine, mine, c->size, ekey, CS_STREAM_SET, b));
  PetscCall(Gather(s, &c->ctrl, PETSC_TRUE, hi - lo, c->classes, nmine, mine, c->controls, ekey, CS_STREAM_PAIR, b));
  PetscCall(CsBatchSetGroups(b, nmine));
  for (PetscInt k = 0; k < nmine; k++) {
    b->group[k]       = c->classes[mine[k]];
    b->rowptr[k + 1]  = (k + 1) * c->size;
    b->ctrlptr[k + 1] = (k + 1) * c->controls;
  }
  b->nglobal = (hi - lo) * c->size, b->nctrl_global = (hi - lo) * c->controls;
  PetscCall(PetscFree(mine));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsSamplerView_Set(CsSampler s, PetscViewer v)
{
  Set *c = (Set *)s->data;

  PetscFunctionBeginUser;
  PetscCall(PetscViewerASCIIPrintf(v, "sets of %" PetscInt_FMT " cells and %" PetscInt_FMT " controls, %" PetscInt_FMT " groups per step\n",
                                   c->size, c->controls, c->groups));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsSamplerDestroy_Set(CsSampler s)
{
  Set *c = (Set *)s->data;

  PetscFunctionBeginUser;
  PetscCall(CsPoolDestroy(&c->ctrl));
  PetscCall(CsPoolDestroy(&c->train));
  PetscCall(CsPoolDestroy(&c->valid));
  PetscCall(PetscFree(c->trainlist));
  PetscCall(PetscFree(c->validlist));
  PetscCall(PetscFree4(c->classes, c->req, c->ord, c->rows));
  PetscCall(PetscFree(s->data));
  PetscFunctionReturn(0);
}

PetscErrorCode CsSamplerCreate_Set(CsSampler s)
{
  Set *c;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&c));
  c->size = 32, c->controls = -1, c->groups = 0;
  s->data                = c;
  s->ops->setfromoptions = CsSamplerSetFromOptions_Set;
  s->ops->setup          = CsSamplerSetUp_Set;
  s->ops->sizes          = CsSamplerSizes_Set;
  s->ops->maxrows        = CsSamplerMaxRows_Set;
  s->ops->batch          = CsSamplerBatch_Set;
  s->ops->view           = CsSamplerView_Set;
  s->ops->destroy        = CsSamplerDestroy_Set;
  PetscFunctionReturn(0);
}
