/* CsSampler: the object, its type registry, the row source, pools of cells and the batch helpers the types share.
   See include/cellshift/sampler.h. */
#include "trainerimpl.h"

PetscFunctionList CsSamplerList      = NULL;
PetscClassId      CS_SAMPLER_CLASSID = 0;
static PetscBool  cs_sampler_package = PETSC_FALSE;

PetscErrorCode CsSamplerRegister(const char type[], PetscErrorCode (*create)(CsSampler))
{
  PetscFunctionBeginUser;
  PetscCall(PetscFunctionListAdd(&CsSamplerList, type, create));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsSamplerFinalizePackage(void)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFunctionListDestroy(&CsSamplerList));
  cs_sampler_package = PETSC_FALSE;
  PetscFunctionReturn(0);
}

static PetscErrorCode CsSamplerRegisterAll(void)
{
  PetscFunctionBeginUser;
  PetscCall(CsSamplerRegister(CSSAMPLERCELLS, CsSamplerCreate_Cells));
  PetscCall(CsSamplerRegister(CSSAMPLERPAIRED, CsSamplerCreate_Paired));
  PetscCall(CsSamplerRegister(CSSAMPLERSET, CsSamplerCreate_Set));
  PetscCall(CsSamplerRegister(CSSAMPLERCOUPLED, CsSamplerCreate_Coupled));
  PetscCall(CsSamplerRegister(CSSAMPLERSTREAM, CsSamplerCreate_Stream));
  PetscFunctionReturn(0);
}

PetscErrorCode CsSamplerInitializePackage(void)
{
  PetscFunctionBeginUser;
  if (cs_sampler_package) PetscFunctionReturn(0);
  cs_sampler_package = PETSC_TRUE;
  PetscCall(PetscClassIdRegister("CsSampler", &CS_SAMPLER_CLASSID));
  PetscCall(CsSamplerRegisterAll());
  PetscCall(PetscRegisterFinalize(CsSamplerFinalizePackage));
  PetscFunctionReturn(0);
}

/* The default source: the dataset's own rows (ctx is the sampler, whose dataset is set later). In memory they are
   ds->X, blocks included (copies of a block's rows, so that the stream sampler also runs on an in-memory dataset
   and must give the same batches); a streamed dataset reads them (CsDatasetGetRows, CsDatasetStreamRead). */
static PetscErrorCode MemoryRows(void *ctx, PetscInt n, const PetscInt local[], CsCSR *X)
{
  CsSampler s = (CsSampler)ctx;

  PetscFunctionBeginUser;
  PetscCall(CsDatasetReadRows(s->ds, n, local, X));
  PetscFunctionReturn(0);
}

static PetscErrorCode MemoryFetch(void *ctx, PetscInt n, const PetscInt global[], CsCSR *X)
{
  CsSampler s = (CsSampler)ctx;

  PetscFunctionBeginUser;
  PetscCall(CsDatasetCheckResident(s->ds, "fetching rows from other ranks (the paired, set and coupled samplers)"));
  PetscCall(CsDatasetFetchRows(s->ds, n, global, X));
  PetscFunctionReturn(0);
}

static PetscErrorCode DatasetBlocks(void *ctx, PetscInt *nblocks, PetscInt *block_rows)
{
  CsDataset ds = ((CsSampler)ctx)->ds;

  PetscFunctionBeginUser;
  if (ds->streamed) PetscCall(CsDatasetStreamBlocks(ds, nblocks, block_rows));
  else *block_rows = ds->stream_block, *nblocks = (ds->nglobal + ds->stream_block - 1) / ds->stream_block;
  PetscFunctionReturn(0);
}

static PetscErrorCode DatasetRead(void *ctx, PetscInt n, const PetscInt blocks[], CsCSR X[])
{
  CsDataset ds = ((CsSampler)ctx)->ds;

  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < n; k++) PetscCall(CsCSRFree(&X[k]));
  if (ds->streamed) PetscCall(CsDatasetStreamRead(ds, n, blocks, X));
  else
    for (PetscInt k = 0; k < n; k++) {
      PetscInt a = PetscMax(blocks[k] * ds->stream_block, ds->rstart), e = PetscMin((blocks[k] + 1) * ds->stream_block, ds->rstart + ds->nlocal), *rows;
      if (e < a) e = a;
      PetscCall(PetscMalloc1(e - a + 1, &rows));
      for (PetscInt i = a; i < e; i++) rows[i - a] = i - ds->rstart;
      PetscCall(CsCSRSubsetRows(&ds->X, e - a, rows, &X[k]));
      PetscCall(PetscFree(rows));
    }
  PetscFunctionReturn(0);
}

static PetscErrorCode DatasetRelease(void *ctx, PetscInt block)
{
  PetscFunctionBeginUser;
  (void)ctx, (void)block; /* the sampler frees the rows it was given */
  PetscFunctionReturn(0);
}

static PetscErrorCode DatasetPrefetch(void *ctx, PetscInt n, const PetscInt blocks[])
{
  CsDataset ds = ((CsSampler)ctx)->ds;

  PetscFunctionBeginUser;
  if (ds->streamed) PetscCall(CsDatasetStreamPrefetch(ds, n, blocks));
  PetscFunctionReturn(0);
}

void CsSamplerDefaultSource(CsSampler s, CsSamplerSource *src)
{
  PetscMemzero(src, sizeof(*src));
  src->ctx = s, src->rows = MemoryRows, src->fetch = MemoryFetch;
  src->blocks = DatasetBlocks, src->read = DatasetRead, src->release = DatasetRelease, src->prefetch = DatasetPrefetch;
}

PetscErrorCode CsSamplerCreate(MPI_Comm comm, CsSampler *out)
{
  CsSampler s;

  PetscFunctionBeginUser;
  PetscValidPointer(out, 2);
  PetscCall(CsSamplerInitializePackage());
  PetscCall(PetscHeaderCreate(s, CS_SAMPLER_CLASSID, "CsSampler", "Minibatch sampler", "CsSampler", comm, CsSamplerDestroy, CsSamplerView));
  PetscCallMPI(MPI_Comm_rank(comm, &s->rank));
  PetscCallMPI(MPI_Comm_size(comm, &s->size));
  s->batch     = 128;
  CsSamplerDefaultSource(s, &s->src);
  *out = s;
  PetscFunctionReturn(0);
}

PetscErrorCode CsSamplerSetType(CsSampler s, CsSamplerType type)
{
  PetscErrorCode (*create)(CsSampler) = NULL;
  PetscBool same;

  PetscFunctionBeginUser;
  PetscValidHeaderSpecific(s, CS_SAMPLER_CLASSID, 1);
  PetscCall(PetscObjectTypeCompare((PetscObject)s, type, &same));
  if (same) PetscFunctionReturn(0);
  PetscCall(PetscFunctionListFind(CsSamplerList, type, &create));
  PetscCheck(create, PetscObjectComm((PetscObject)s), CS_ERR_INPUT, "unknown sampler '%s' (samplers: cells, paired, set, coupled, stream)", type);
  if (s->ops->destroy) PetscCall(s->ops->destroy(s));
  PetscCall(PetscMemzero(s->ops, sizeof(struct _CsSamplerOps)));
  s->data  = NULL;
  s->setup = PETSC_FALSE;
  PetscCall(PetscObjectChangeTypeName((PetscObject)s, type));
  PetscCall(create(s));
  PetscFunctionReturn(0);
}

PetscErrorCode CsSamplerGetType(CsSampler s, CsSamplerType *type)
{
  PetscFunctionBeginUser;
  PetscValidHeaderSpecific(s, CS_SAMPLER_CLASSID, 1);
  *type = ((PetscObject)s)->type_name;
  PetscFunctionReturn(0);
}

PetscErrorCode CsSamplerSetOptionsPrefix(CsSampler s, const char prefix[])
{
  PetscFunctionBeginUser;
  PetscValidHeaderSpecific(s, CS_SAMPLER_CLASSID, 1);
  PetscCall(PetscObjectSetOptionsPrefix((PetscObject)s, prefix));
  PetscFunctionReturn(0);
}

PetscErrorCode CsSamplerSetBatchSize(CsSampler s, PetscInt batch)
{
  PetscFunctionBeginUser;
  PetscValidHeaderSpecific(s, CS_SAMPLER_CLASSID, 1);
  PetscCheck(batch >= 1, PetscObjectComm((PetscObject)s), PETSC_ERR_ARG_OUTOFRANGE, "batch size %" PetscInt_FMT " is not positive", batch);
  s->batch = batch;
  s->setup = PETSC_FALSE;
  PetscFunctionReturn(0);
}

PetscErrorCode CsSamplerSetFromOptions(CsSampler s)
{
  char      type[256];
  PetscBool flg;

  PetscFunctionBeginUser;
  PetscValidHeaderSpecific(s, CS_SAMPLER_CLASSID, 1);
  PetscCall(CsSamplerInitializePackage());
  PetscObjectOptionsBegin((PetscObject)s);
  /* A string, not PetscOptionsFList: PETSc prints a list's help straight to stdout, past PetscHelpPrintf, which is
     where the command line check records the options a command knows (CsSamplerSetType refuses unknown types). */
  PetscCall(PetscOptionsString("-sampler_type", "Minibatch sampler: cells, paired (with a control partner), set (groups as sets), coupled "
                                                "(control and perturbed minibatches of one group), stream",
                               "CsSamplerSetType", ((PetscObject)s)->type_name ? ((PetscObject)s)->type_name : CSSAMPLERCELLS, type, sizeof(type),
                               &flg));
  if (flg) PetscCall(CsSamplerSetType(s, type));
  else if (!((PetscObject)s)->type_name) PetscCall(CsSamplerSetType(s, CSSAMPLERCELLS));
  { /* known to every type: the trainer turns cells into stream when the dataset is streamed (the stream type reads it) */
    PetscInt w = 8;
    PetscCall(PetscOptionsInt("-stream_window", "Stream sampler (streamed datasets): row blocks held in memory and shuffled together",
                              "CsSamplerSetFromOptions", w, &w, NULL));
  }
  if (s->ops->setfromoptions) PetscCall(s->ops->setfromoptions(s, PetscOptionsObject));
  PetscCall(PetscObjectProcessOptionsHandlers((PetscObject)s, PetscOptionsObject));
  PetscOptionsEnd();
  s->setup = PETSC_FALSE;
  PetscFunctionReturn(0);
}

PetscErrorCode CsSamplerSetData(CsSampler s, CsDataset ds, CsDesign d, const uint8_t *train, const uint8_t *valid, uint64_t seed)
{
  PetscFunctionBeginUser;
  PetscValidHeaderSpecific(s, CS_SAMPLER_CLASSID, 1);
  s->ds = ds, s->design = d, s->train = train, s->valid = valid, s->seed = seed;
  s->weight = ds ? ds->qweight : NULL;
  s->setup  = PETSC_FALSE;
  PetscFunctionReturn(0);
}

PetscErrorCode CsSamplerSetWeights(CsSampler s, const double *w)
{
  PetscFunctionBeginUser;
  PetscValidHeaderSpecific(s, CS_SAMPLER_CLASSID, 1);
  s->weight = w;
  s->setup  = PETSC_FALSE;
  PetscFunctionReturn(0);
}

PetscErrorCode CsSamplerSetSource(CsSampler s, const CsSamplerSource *src)
{
  PetscFunctionBeginUser;
  PetscValidHeaderSpecific(s, CS_SAMPLER_CLASSID, 1);
  PetscCheck(!s->setup, PetscObjectComm((PetscObject)s), PETSC_ERR_ORDER, "set the row source before CsSamplerSetUp");
  s->src = *src;
  PetscFunctionReturn(0);
}

PetscErrorCode CsSamplerSetUp(CsSampler s)
{
  PetscFunctionBeginUser;
  PetscValidHeaderSpecific(s, CS_SAMPLER_CLASSID, 1);
  if (s->setup) PetscFunctionReturn(0);
  if (!((PetscObject)s)->type_name) PetscCall(CsSamplerSetType(s, CSSAMPLERCELLS));
  PetscCheck(s->ds && s->train, PetscObjectComm((PetscObject)s), PETSC_ERR_ORDER, "call CsSamplerSetData first");
  {
    PetscBool cells;
    PetscCall(PetscObjectTypeCompare((PetscObject)s, CSSAMPLERCELLS, &cells));
    CsCheckAll(PetscObjectComm((PetscObject)s), !s->weight || cells, "-quality_weight: the %s sampler draws no weighted cells (only the cells sampler does)",
               ((PetscObject)s)->type_name);
  }
  if (s->ops->setup) PetscCall(s->ops->setup(s));
  s->setup = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode CsSamplerGetSizes(CsSampler s, CsSamplePhase phase, PetscInt *nsteps, PetscInt *ncells, PetscInt *nrows)
{
  PetscInt a = 0, b = 0, c = 0;

  PetscFunctionBeginUser;
  PetscValidHeaderSpecific(s, CS_SAMPLER_CLASSID, 1);
  PetscCheck(s->setup, PetscObjectComm((PetscObject)s), PETSC_ERR_ORDER, "call CsSamplerSetUp first");
  PetscCall(s->ops->sizes(s, phase, &a, &b, &c));
  if (nsteps) *nsteps = a;
  if (ncells) *ncells = b;
  if (nrows) *nrows = c;
  PetscFunctionReturn(0);
}

PetscErrorCode CsSamplerGetMaxRows(CsSampler s, PetscInt *rows, PetscInt *ctrl)
{
  PetscInt a = s->batch, b = 0;

  PetscFunctionBeginUser;
  PetscValidHeaderSpecific(s, CS_SAMPLER_CLASSID, 1);
  if (s->ops->maxrows) PetscCall(s->ops->maxrows(s, &a, &b));
  if (rows) *rows = a;
  if (ctrl) *ctrl = b;
  PetscFunctionReturn(0);
}

PetscErrorCode CsSamplerGetBatch(CsSampler s, CsSamplePhase phase, PetscInt epoch, PetscInt step, PetscInt part, PetscInt nparts, CsBatch *b)
{
  PetscInt nsteps;

  PetscFunctionBeginUser;
  PetscValidHeaderSpecific(s, CS_SAMPLER_CLASSID, 1);
  PetscCall(CsSamplerGetSizes(s, phase, &nsteps, NULL, NULL));
  PetscCheck(step >= 0 && step < nsteps && nparts >= 1 && part >= 0 && part < nparts && epoch >= 0, PetscObjectComm((PetscObject)s),
             PETSC_ERR_ARG_OUTOFRANGE, "no batch %" PetscInt_FMT " of %" PetscInt_FMT " of step %" PetscInt_FMT " of %" PetscInt_FMT " in epoch %" PetscInt_FMT,
             part, nparts, step, nsteps, epoch);
  b->n = b->nglobal = b->nctrl = b->nctrl_global = b->ngroups = 0;
  PetscCall(s->ops->batch(s, phase, epoch, step, part, nparts, b));
  PetscFunctionReturn(0);
}

PetscErrorCode CsSamplerView(CsSampler s, PetscViewer v)
{
  PetscBool ascii;

  PetscFunctionBeginUser;
  PetscValidHeaderSpecific(s, CS_SAMPLER_CLASSID, 1);
  if (!v) PetscCall(PetscViewerASCIIGetStdout(PetscObjectComm((PetscObject)s), &v));
  PetscCall(PetscObjectTypeCompare((PetscObject)v, PETSCVIEWERASCII, &ascii));
  if (!ascii) PetscFunctionReturn(0);
  PetscCall(PetscObjectPrintClassNamePrefixType((PetscObject)s, v));
  PetscCall(PetscViewerASCIIPushTab(v));
  PetscCall(PetscViewerASCIIPrintf(v, "batch size %" PetscInt_FMT ", seed %llu\n", s->batch, (unsigned long long)s->seed));
  if (s->setup) {
    PetscInt n, c, r;
    PetscCall(CsSamplerGetSizes(s, CS_SAMPLE_TRAIN, &n, &c, &r));
    PetscCall(PetscViewerASCIIPrintf(v, "training: %" PetscInt_FMT " cells, %" PetscInt_FMT " steps and %" PetscInt_FMT " rows per epoch\n", c, n, r));
    PetscCall(CsSamplerGetSizes(s, CS_SAMPLE_VALID, &n, &c, &r));
    PetscCall(PetscViewerASCIIPrintf(v, "validation: %" PetscInt_FMT " cells, %" PetscInt_FMT " steps of %" PetscInt_FMT " rows\n", c, n, r));
  }
  if (s->ops->view) PetscCall(s->ops->view(s, v));
  PetscCall(PetscViewerASCIIPopTab(v));
  PetscFunctionReturn(0);
}

PetscErrorCode CsSamplerDestroy(CsSampler *s)
{
  PetscFunctionBeginUser;
  if (!*s) PetscFunctionReturn(0);
  PetscValidHeaderSpecific(*s, CS_SAMPLER_CLASSID, 1);
  if (--((PetscObject)(*s))->refct > 0) {
    *s = NULL;
    PetscFunctionReturn(0);
  }
  if ((*s)->ops->destroy) PetscCall((*s)->ops->destroy(*s));
  PetscCall(PetscHeaderDestroy(s));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Batches. */

static PetscErrorCode SetIds(CsDataset ds, PetscInt n, const PetscInt local[], const PetscInt global[], PetscInt **lout, int64_t **cout)
{
  PetscFunctionBeginUser;
  PetscCall(PetscRealloc(sizeof(PetscInt) * (n + 1), lout));
  PetscCall(PetscRealloc(sizeof(int64_t) * (n + 1), cout));
  for (PetscInt k = 0; k < n; k++) {
    if (local) (*lout)[k] = local[k], (*cout)[k] = ds->rstart + local[k];
    else (*lout)[k] = global[k] >= ds->rstart && global[k] < ds->rstart + ds->nlocal ? global[k] - ds->rstart : -1, (*cout)[k] = global[k];
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsBatchFromRows(CsDataset ds, PetscInt n, const PetscInt *rows, CsBatch *b)
{
  PetscFunctionBeginUser;
  PetscCall(CsDatasetGetRows(ds, n, rows, &b->X));
  PetscCall(SetIds(ds, n, rows, NULL, &b->local, &b->cell));
  b->n = n;
  PetscFunctionReturn(0);
}

PetscErrorCode CsBatchFree(CsBatch *b)
{
  PetscFunctionBeginUser;
  PetscCall(CsCSRFree(&b->X));
  PetscCall(CsCSRFree(&b->Xctrl));
  PetscCall(PetscFree(b->local));
  PetscCall(PetscFree(b->cell));
  PetscCall(PetscFree(b->ctrl_local));
  PetscCall(PetscFree(b->ctrl_cell));
  PetscCall(PetscFree(b->group));
  PetscCall(PetscFree(b->rowptr));
  PetscCall(PetscFree(b->ctrlptr));
  PetscCall(PetscMemzero(b, sizeof(*b)));
  PetscFunctionReturn(0);
}

PetscErrorCode CsSamplerRows(CsSampler s, PetscInt n, const PetscInt local[], CsBatch *b)
{
  PetscFunctionBeginUser;
  PetscCheck(s->src.rows, PETSC_COMM_SELF, PETSC_ERR_SUP, "the row source has no local rows");
  PetscCall(s->src.rows(s->src.ctx, n, local, &b->X));
  PetscCall(SetIds(s->ds, n, local, NULL, &b->local, &b->cell));
  b->n = n;
  PetscFunctionReturn(0);
}

PetscErrorCode CsSamplerRowsCtrl(CsSampler s, PetscInt n, const PetscInt local[], CsBatch *b)
{
  PetscFunctionBeginUser;
  PetscCheck(s->src.rows, PETSC_COMM_SELF, PETSC_ERR_SUP, "the row source has no local rows");
  PetscCall(s->src.rows(s->src.ctx, n, local, &b->Xctrl));
  PetscCall(SetIds(s->ds, n, local, NULL, &b->ctrl_local, &b->ctrl_cell));
  b->nctrl = n;
  PetscFunctionReturn(0);
}

PetscErrorCode CsSamplerFetch(CsSampler s, PetscBool ctrl, PetscInt n, const PetscInt global[], CsBatch *b)
{
  CsCSR *X = ctrl ? &b->Xctrl : &b->X;

  PetscFunctionBeginUser;
  PetscCheck(s->src.fetch, PETSC_COMM_SELF, PETSC_ERR_SUP, "the row source cannot fetch rows");
  PetscCall(CsCSRFree(X));
  PetscCall(s->src.fetch(s->src.ctx, n, global, X));
  if (ctrl) {
    PetscCall(SetIds(s->ds, n, NULL, global, &b->ctrl_local, &b->ctrl_cell));
    b->nctrl = n;
  } else {
    PetscCall(SetIds(s->ds, n, NULL, global, &b->local, &b->cell));
    b->n = n;
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsBatchSetGroups(CsBatch *b, PetscInt ngroups)
{
  PetscFunctionBeginUser;
  PetscCall(PetscRealloc(sizeof(PetscInt) * (ngroups + 1), &b->group));
  PetscCall(PetscRealloc(sizeof(PetscInt) * (ngroups + 1), &b->rowptr));
  PetscCall(PetscRealloc(sizeof(PetscInt) * (ngroups + 1), &b->ctrlptr));
  b->ngroups = ngroups;
  b->rowptr[0] = b->ctrlptr[0] = 0;
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Pools and draws. */

PetscErrorCode CsPoolCreate(MPI_Comm comm, CsDataset ds, PetscInt nclass, const PetscInt cls[], CsPool *p)
{
  PetscMPIInt rank;
  PetscInt   *at, n;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCall(PetscMemzero(p, sizeof(*p)));
  p->nclass = nclass, p->rstart = ds->rstart;
  PetscCall(PetscCalloc4(nclass + 1, &p->cnt, nclass + 1, &p->loff, nclass + 1, &p->goff, nclass + 1, &p->total));
  PetscCall(PetscMalloc1(nclass + 1, &at));
  for (PetscInt i = 0; i < ds->nlocal; i++)
    if (cls[i] >= 0) p->cnt[cls[i]]++;
  for (PetscInt c = 0; c < nclass; c++) p->loff[c + 1] = p->loff[c] + p->cnt[c], at[c] = p->loff[c];
  n = p->loff[nclass];
  PetscCall(PetscMalloc1(n + 1, &p->rows));
  for (PetscInt i = 0; i < ds->nlocal; i++)
    if (cls[i] >= 0) p->rows[at[cls[i]]++] = i;
  PetscCallMPI(MPI_Exscan(p->cnt, p->goff, (PetscMPIInt)nclass, MPIU_INT, MPI_SUM, comm));
  if (!rank) PetscCall(PetscArrayzero(p->goff, nclass));
  PetscCallMPI(MPI_Allreduce(p->cnt, p->total, (PetscMPIInt)nclass, MPIU_INT, MPI_SUM, comm));
  PetscCall(PetscLayoutCreateFromSizes(comm, n, PETSC_DECIDE, 1, &p->layout));
  p->S.nrows = n, p->S.ncols = ds->nglobal;
  PetscCall(PetscMalloc1(n + 1, &p->S.indptr));
  PetscCall(PetscMalloc1(n + 1, &p->S.indices));
  PetscCall(PetscMalloc1(n + 1, &p->S.data));
  p->S.indptr[0] = 0;
  for (PetscInt k = 0; k < n; k++) p->S.indptr[k + 1] = k + 1, p->S.indices[k] = (int32_t)(ds->rstart + p->rows[k]), p->S.data[k] = 1;
  PetscCall(PetscFree(at));
  PetscFunctionReturn(0);
}

PetscErrorCode CsPoolDestroy(CsPool *p)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree4(p->cnt, p->loff, p->goff, p->total));
  PetscCall(PetscFree(p->rows));
  PetscCall(PetscLayoutDestroy(&p->layout));
  PetscCall(CsCSRFree(&p->S));
  PetscCall(PetscMemzero(p, sizeof(*p)));
  PetscFunctionReturn(0);
}

/* The rank holding ordinal k of class j: the last rank whose members start at or below k (pre[r * nc + j]: members
   of class j on the ranks below r). */
static PetscMPIInt Owner(const PetscInt pre[], PetscMPIInt size, PetscInt nc, PetscInt j, PetscInt k)
{
  PetscMPIInt lo = 0, hi = size - 1;
  while (lo < hi) {
    PetscMPIInt mid = (lo + hi + 1) / 2;
    if (pre[(size_t)mid * nc + j] <= k) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

PetscErrorCode CsPoolTranslate(CsPool *p, PetscInt nc, const PetscInt classes[], PetscInt n, const PetscInt req[], const PetscInt ord[],
                               PetscInt rows[])
{
  MPI_Comm    comm = p->layout->comm;
  PetscMPIInt size;
  PetscInt   *mine, *all, *pre, *idx;
  CsCSR       sel = {0};

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_size(comm, &size));
  if (!classes) nc = p->nclass;
  /* Every rank's count and local start of each class: where ordinal k of a class lives in the pool layout. */
  PetscCall(PetscMalloc4(2 * nc + 1, &mine, 2 * (size_t)size * nc + 1, &all, (size_t)(size + 1) * nc + 1, &pre, n + 1, &idx));
  for (PetscInt j = 0; j < nc; j++) {
    PetscInt c = classes ? classes[j] : j;
    mine[2 * j] = p->cnt[c], mine[2 * j + 1] = p->loff[c];
  }
  PetscCallMPI(MPI_Allgather(mine, (PetscMPIInt)(2 * nc), MPIU_INT, all, (PetscMPIInt)(2 * nc), MPIU_INT, comm));
  for (PetscInt j = 0; j < nc; j++) {
    pre[j] = 0;
    for (PetscMPIInt r = 0; r < size; r++) pre[(size_t)(r + 1) * nc + j] = pre[(size_t)r * nc + j] + all[2 * ((size_t)r * nc + j)];
  }
  for (PetscInt i = 0; i < n; i++) {
    PetscInt    j = req[i], k = ord[i];
    PetscMPIInt r;
    PetscCheck(j >= 0 && j < nc && k >= 0 && k < pre[(size_t)size * nc + j], PETSC_COMM_SELF, PETSC_ERR_PLIB,
               "pool request %" PetscInt_FMT " of class %" PetscInt_FMT " out of range", k, j);
    r      = Owner(pre, size, nc, j, k);
    idx[i] = p->layout->range[r] + all[2 * ((size_t)r * nc + j) + 1] + (k - pre[(size_t)r * nc + j]);
  }
  PetscCall(CsCSRFetchRows(p->layout, &p->S, n, idx, &sel));
  for (PetscInt i = 0; i < n; i++) rows[i] = sel.indices[sel.indptr[i]];
  PetscCall(CsCSRFree(&sel));
  PetscCall(PetscFree4(mine, all, pre, idx));
  PetscFunctionReturn(0);
}

void CsDrawInit(CsPerm *perm, PetscInt n, uint64_t seed, uint32_t stream, uint64_t key) { CsPermInit(perm, (uint64_t)n, seed, stream, key); }

PetscInt CsDraw(const CsPerm *perm, PetscInt n, PetscInt take, PetscInt i)
{
  if (n >= take) return (PetscInt)CsPermApply(perm, (uint64_t)i);
  return (PetscInt)(CsRngUniform(perm->seed, perm->stream, perm->key, (uint64_t)i) * (double)n);
}

PetscErrorCode CsSamplerControlPool(CsSampler s, CsPool *p)
{
  CsDesign  d = s->design;
  PetscInt *cls;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(s->ds->nlocal + 1, &cls));
  for (PetscInt i = 0; i < s->ds->nlocal; i++) {
    PetscInt g = d->cell_group[i];
    cls[i]     = CsMaskGet(s->train, i) && g >= 0 && d->groups[g].control ? d->groups[g].ctx : -1;
  }
  PetscCall(CsPoolCreate(PetscObjectComm((PetscObject)s), s->ds, d->nctx, cls, p));
  PetscCall(PetscFree(cls));
  PetscFunctionReturn(0);
}

PetscErrorCode CsSamplerEligibleGroups(CsSampler s, const uint8_t *mask, const CsPool *ctrlpool, PetscInt *ng, PetscInt **list, CsPool *cells)
{
  CsDesign  d = s->design;
  PetscInt *cls;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(s->ds->nlocal + 1, &cls));
  for (PetscInt i = 0; i < s->ds->nlocal; i++) {
    PetscInt g = d->cell_group[i];
    cls[i]     = mask && CsMaskGet(mask, i) && g >= 0 && !d->groups[g].control && ctrlpool->total[d->groups[g].ctx] > 0 ? g : -1;
  }
  PetscCall(CsPoolCreate(PetscObjectComm((PetscObject)s), s->ds, d->ngroups, cls, cells));
  PetscCall(PetscFree(cls));
  PetscCall(PetscMalloc1(d->ngroups + 1, list));
  *ng = 0;
  for (PetscInt g = 0; g < d->ngroups; g++)
    if (cells->total[g] > 0) (*list)[(*ng)++] = g;
  PetscFunctionReturn(0);
}
