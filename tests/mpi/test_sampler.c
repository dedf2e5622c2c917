/* The samplers at 1, 2 and 3 ranks on the embedded Norman/McFaline data with PerturBench's combination split. Every
   rank also holds the whole design (group and role of every global cell) and recomputes each global batch from the
   sampler's definition in sampler.h, without pools, fetches or ownership; the distributed batch must match it
   through an order-free fingerprint (a sum of hashes of the global cell ids, reduced over ranks), so the batches are
   the same for any rank count. Also checked: every row holds its cell's expression, ids and sizes agree, micro-batches
   add up to their batch, paired partners are training controls of the cell's context, set batches are whole groups
   with set_size cells and set_controls controls of their context on the rank of their position, coupled batches are
   one group with its context's controls; stream batches follow the block-window definition on an in-memory
   dataset, on the same file streamed and through CsSamplerSetSource, and streamed group statistics match. */
#include "testing.h"
#include <cellshift/sampler.h>
#include <cellshift/split.h>
#include <cellshift/rng.h>

static MPI_Comm    comm;
static PetscMPIInt rank, size;
static CsDataset   ds;
static CsDesign    d;
static uint8_t   *train, *valid;
/* The whole design on every rank. */
static PetscInt   N, *ggroup;
static PetscBool *gtrain, *gvalid;
static uint64_t  *growhash;

static uint64_t Mix(uint64_t x)
{
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

static uint64_t H(int64_t c, uint64_t tag) { return Mix((uint64_t)c * 1000003u + tag); }

static uint64_t RowHash(const CsCSR *X, PetscInt i)
{
  uint64_t h = 0;
  for (int64_t k = X->indptr[i]; k < X->indptr[i + 1]; k++) {
    uint32_t bits;
    memcpy(&bits, &X->data[k], 4);
    h += Mix(((uint64_t)(uint32_t)X->indices[k] << 32) | bits);
  }
  return h;
}

static PetscErrorCode AllgatherInt(const PetscInt *mine, PetscInt *all)
{
  PetscMPIInt *cnt, *off;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc2(size, &cnt, size + 1, &off));
  for (PetscMPIInt r = 0; r < size; r++) cnt[r] = (PetscMPIInt)(ds->rows->range[r + 1] - ds->rows->range[r]), off[r] = (PetscMPIInt)ds->rows->range[r];
  PetscCallMPI(MPI_Allgatherv(mine, (PetscMPIInt)ds->nlocal, MPIU_INT, all, cnt, off, MPIU_INT, comm));
  PetscCall(PetscFree2(cnt, off));
  PetscFunctionReturn(0);
}

static PetscErrorCode Load(void)
{
  char      data[PETSC_MAX_PATH_LEN];
  CsSplit   split;
  PetscInt *tmp, *all;
  uint64_t *rh;

  PetscFunctionBeginUser;
  PetscCall(CsTestSourcePath("input/perturbench_devel/devel.h5ad", data));
  PetscCall(CsDatasetCreate(comm, &ds));
  PetscCall(CsDatasetSetFile(ds, data, NULL));
  PetscCall(CsDesignCreate(comm, &d));
  PetscCall(PetscStrncpy(d->context_key, "cell_type", sizeof(d->context_key)));
  PetscCall(CsDesignAddKeys(d, ds));
  PetscCall(CsDatasetSetUp(ds));
  PetscCall(CsDesignSetUp(d, ds));
  PetscCall(CsSplitCreate(comm, &split));
  PetscCall(PetscStrncpy(split->type, "combo", sizeof(split->type)));
  split->test_fraction = 0.4, split->valid_fraction = 0.2, split->seed = 0;
  PetscCall(CsSplitSetUp(split, d));
  PetscCall(PetscCalloc2(CsMaskBytes(ds->nlocal), &train, CsMaskBytes(ds->nlocal), &valid));
  for (PetscInt i = 0; i < ds->nlocal; i++) {
    PetscInt g = d->cell_group[i];
    if (g >= 0 && split->role[g] == CS_ROLE_TRAIN) CsMaskSet(train, i);
    if (g >= 0 && split->role[g] == CS_ROLE_VALID) CsMaskSet(valid, i);
  }
  N = ds->nglobal;
  PetscCall(PetscMalloc4(N, &ggroup, N, &gtrain, N, &gvalid, N, &growhash));
  PetscCall(PetscMalloc1(N, &all));
  PetscCall(PetscMalloc2(ds->nlocal + 1, &tmp, ds->nlocal + 1, &rh));
  PetscCall(AllgatherInt(d->cell_group, ggroup));
  for (PetscInt i = 0; i < ds->nlocal; i++) tmp[i] = CsMaskGet(train, i) + 2 * CsMaskGet(valid, i);
  PetscCall(AllgatherInt(tmp, all));
  for (PetscInt c = 0; c < N; c++) gtrain[c] = (PetscBool)(all[c] & 1), gvalid[c] = (PetscBool)((all[c] >> 1) & 1);
  for (PetscInt i = 0; i < ds->nlocal; i++) rh[i] = RowHash(&ds->X, i);
  {
    PetscMPIInt *cnt, *off;
    PetscCall(PetscMalloc2(size, &cnt, size + 1, &off));
    for (PetscMPIInt r = 0; r < size; r++) cnt[r] = (PetscMPIInt)(ds->rows->range[r + 1] - ds->rows->range[r]), off[r] = (PetscMPIInt)ds->rows->range[r];
    PetscCallMPI(MPI_Allgatherv(rh, (PetscMPIInt)ds->nlocal, MPI_UINT64_T, growhash, cnt, off, MPI_UINT64_T, comm));
    PetscCall(PetscFree2(cnt, off));
  }
  PetscCall(PetscFree2(tmp, rh));
  PetscCall(PetscFree(all));
  PetscCall(CsSplitDestroy(&split));
  PetscFunctionReturn(0);
}

/* ----------------------------------------------------------------------------------------------------------------- */
/* The definitions of sampler.h over the global arrays. */

typedef struct {
  PetscInt  n;
  PetscInt *c; /* global cells in row order */
} List;

static PetscErrorCode ListOf(PetscBool (*in)(PetscInt c, void *), void *ctx, List *l)
{
  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(N + 1, &l->c));
  l->n = 0;
  for (PetscInt c = 0; c < N; c++)
    if (in(c, ctx)) l->c[l->n++] = c;
  PetscFunctionReturn(0);
}

typedef struct {
  const PetscBool *mask;
  PetscInt         ctx, group;
} Sel;

static PetscBool InMask(PetscInt c, void *x) { return ((Sel *)x)->mask[c]; }
static PetscBool IsControlOf(PetscInt c, void *x)
{
  PetscInt g = ggroup[c];
  return gtrain[c] && g >= 0 && d->groups[g].control && d->groups[g].ctx == ((Sel *)x)->ctx;
}
static PetscBool InGroup(PetscInt c, void *x) { return ((Sel *)x)->mask[c] && ggroup[c] == ((Sel *)x)->group; }

static List *ctrl; /* [nctx] training controls of each context */

static PetscBool Perturbed(PetscInt c, void *x)
{
  PetscInt g = ggroup[c];
  return ((Sel *)x)->mask[c] && g >= 0 && !d->groups[g].control && ctrl[d->groups[g].ctx].n > 0;
}

/* The training pool of -paired_controls: the perturbed cells above and the training controls (validation: as above). */
static PetscBool PairedOrControl(PetscInt c, void *x)
{
  PetscInt g = ggroup[c];
  return Perturbed(c, x) || (((Sel *)x)->mask == gtrain && gtrain[c] && g >= 0 && d->groups[g].control);
}

static PetscInt Draw(PetscInt n, PetscInt take, uint64_t seed, uint32_t stream, uint64_t key, PetscInt i)
{
  CsPerm p;
  if (n < take) return (PetscInt)(CsRngUniform(seed, stream, key, (uint64_t)i) * (double)n);
  CsPermInit(&p, (uint64_t)n, seed, stream, key);
  return (PetscInt)CsPermApply(&p, (uint64_t)i);
}

static uint64_t Key(PetscInt e, PetscInt item) { return ((uint64_t)(e + 1) << 32) | (uint64_t)item; }

/* Eligible groups of the set-like samplers and their cells. */
typedef struct {
  PetscInt n, *g;
  List    *cells; /* [ngroups] */
} Groups;

static PetscErrorCode GroupsOf(const PetscBool *mask, Groups *G)
{
  PetscFunctionBeginUser;
  PetscCall(PetscMalloc2(d->ngroups, &G->g, d->ngroups, &G->cells));
  G->n = 0;
  for (PetscInt g = 0; g < d->ngroups; g++) {
    Sel s = {mask, 0, g};
    PetscCall(ListOf(InGroup, &s, &G->cells[g]));
    if (G->cells[g].n > 0 && !d->groups[g].control && ctrl[d->groups[g].ctx].n > 0) G->g[G->n++] = g;
  }
  PetscFunctionReturn(0);
}

/* ----------------------------------------------------------------------------------------------------------------- */

/* Order-free fingerprints of a batch: of its cells (xs), of its controls (cs), of (cell, partner) pairs (ps). */
typedef struct {
  uint64_t xs, cs, ps;
  PetscInt n, nc;
} Print;

static PetscErrorCode Observe(const CsBatch *b, PetscBool pairs, Print *p)
{
  uint64_t v[3] = {0, 0, 0};
  PetscInt n[2] = {b->n, b->nctrl};

  PetscFunctionBeginUser;
  CS_EXPECT(b->X.nrows == b->n && (b->nctrl == 0 || b->Xctrl.nrows == b->nctrl), "batch rows and CSR rows differ");
  for (PetscInt i = 0; i < b->n; i++) {
    PetscBool own = b->cell[i] >= ds->rstart && b->cell[i] < ds->rstart + ds->nlocal;
    CS_EXPECT(own ? b->local[i] == b->cell[i] - ds->rstart : b->local[i] == -1, "local id of batch row %" PetscInt_FMT, i);
    CS_EXPECT(RowHash(&b->X, i) == growhash[b->cell[i]], "batch row %" PetscInt_FMT " does not hold cell %lld", i, (long long)b->cell[i]);
    v[0] += H(b->cell[i], 1);
    if (pairs) v[2] += H(b->cell[i], (uint64_t)b->ctrl_cell[i] + 7);
  }
  for (PetscInt i = 0; i < b->nctrl; i++) {
    PetscBool own = b->ctrl_cell[i] >= ds->rstart && b->ctrl_cell[i] < ds->rstart + ds->nlocal;
    CS_EXPECT(own ? b->ctrl_local[i] == b->ctrl_cell[i] - ds->rstart : b->ctrl_local[i] == -1, "local id of control row %" PetscInt_FMT, i);
    CS_EXPECT(RowHash(&b->Xctrl, i) == growhash[b->ctrl_cell[i]], "control row %" PetscInt_FMT " does not hold cell %lld", i, (long long)b->ctrl_cell[i]);
    v[1] += H(b->ctrl_cell[i], 2);
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, v, 3, MPI_UINT64_T, MPI_SUM, comm));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, n, 2, MPIU_INT, MPI_SUM, comm));
  CS_EXPECT(n[0] == b->nglobal && n[1] == b->nctrl_global, "rows over the ranks %" PetscInt_FMT "/%" PetscInt_FMT " vs nglobal %" PetscInt_FMT "/%" PetscInt_FMT,
            n[0], n[1], b->nglobal, b->nctrl_global);
  p->xs = v[0], p->cs = v[1], p->ps = v[2], p->n = n[0], p->nc = n[1];
  PetscFunctionReturn(0);
}

/* A batch's parts add up to it. */
static PetscErrorCode CheckParts(CsSampler s, CsSamplePhase ph, PetscInt e, PetscInt step, PetscInt nparts, const Print *whole, PetscBool pairs)
{
  CsBatch  b = {0};
  Print    sum = {0, 0, 0, 0, 0}, p = {0, 0, 0, 0, 0};

  PetscFunctionBeginUser;
  for (PetscInt j = 0; j < nparts; j++) {
    PetscCall(CsSamplerGetBatch(s, ph, e, step, j, nparts, &b));
    PetscCall(Observe(&b, pairs, &p));
    sum.xs += p.xs, sum.cs += p.cs, sum.ps += p.ps, sum.n += p.n, sum.nc += p.nc;
  }
  CS_EXPECT(sum.xs == whole->xs && sum.cs == whole->cs && sum.ps == whole->ps && sum.n == whole->n && sum.nc == whole->nc,
            "%" PetscInt_FMT " micro-batches do not add up to step %" PetscInt_FMT, nparts, step);
  PetscCall(CsBatchFree(&b));
  PetscFunctionReturn(0);
}

static PetscErrorCode MakeSampler(const char type[], PetscInt B, const char opts[], CsSampler *s)
{
  PetscFunctionBeginUser;
  if (opts) PetscCall(PetscOptionsInsertString(NULL, opts));
  PetscCall(CsSamplerCreate(comm, s));
  PetscCall(CsSamplerSetOptionsPrefix(*s, "t_"));
  PetscCall(CsSamplerSetType(*s, type));
  PetscCall(CsSamplerSetBatchSize(*s, B));
  PetscCall(CsSamplerSetFromOptions(*s));
  PetscCall(CsSamplerSetData(*s, ds, d, train, valid, 11));
  PetscCall(CsSamplerSetUp(*s));
  if (opts) PetscCall(PetscOptionsClear(NULL));
  PetscFunctionReturn(0);
}

/* cells and paired: a permutation of a pool of cells (paired: perturbed cells with a control partner; with
   controls, -paired_controls: the training controls too, each its own partner). */
static PetscErrorCode TestCells(PetscBool paired, PetscBool controls)
{
  const PetscInt B = 64;
  CsSampler      s;
  CsBatch        b = {0};
  List           pool[2];
  Sel            sel[2] = {{gtrain, 0, 0}, {gvalid, 0, 0}};

  PetscFunctionBeginUser;
  PetscCall(MakeSampler(paired ? CSSAMPLERPAIRED : CSSAMPLERCELLS, B, controls ? "-t_paired_controls" : NULL, &s));
  for (int ph = 0; ph < 2; ph++) PetscCall(ListOf(paired ? (controls ? PairedOrControl : Perturbed) : InMask, &sel[ph], &pool[ph]));
  for (int ph = 0; ph < 2; ph++) {
    PetscInt n = pool[ph].n, nsteps, ncells, nrows, esteps = ph ? (n + B - 1) / B : PetscMax(1, n / B);
    PetscCall(CsSamplerGetSizes(s, (CsSamplePhase)ph, &nsteps, &ncells, &nrows));
    CS_EXPECT(nsteps == esteps && ncells == n, "%s sizes: %" PetscInt_FMT " steps, %" PetscInt_FMT " cells; expected %" PetscInt_FMT ", %" PetscInt_FMT,
              paired ? "paired" : "cells", nsteps, ncells, esteps, n);
    CS_EXPECT(n > 0, "empty pool");
    for (PetscInt e = 0; e < (ph ? 1 : 2); e++)
      for (PetscInt st = 0; st < nsteps; st++) {
        Print    p = {0, 0, 0, 0, 0};
        uint64_t xs = 0, ps = 0;
        CsPerm   perm;
        CsPermInit(&perm, (uint64_t)n, 11, CS_STREAM_SHUFFLE, (uint64_t)e);
        for (PetscInt q = st * B; q < PetscMin(st * B + B, n); q++) {
          PetscInt c = pool[ph].c[ph ? q : (PetscInt)CsPermApply(&perm, (uint64_t)q)];
          xs += H(c, 1);
          if (paired && d->groups[ggroup[c]].control) ps += H(c, (uint64_t)c + 7); /* its own partner */
          else if (paired) {
            List *C = &ctrl[d->groups[ggroup[c]].ctx];
            ps += H(c, (uint64_t)C->c[(PetscInt)(CsRngUniform(11, CS_STREAM_PAIR, ph ? 0 : (uint64_t)e + 1, (uint64_t)c) * C->n)] + 7);
          }
        }
        PetscCall(CsSamplerGetBatch(s, (CsSamplePhase)ph, e, st, 0, 1, &b));
        PetscCall(Observe(&b, paired, &p));
        CS_EXPECT(p.xs == xs && p.ps == ps, "%s: epoch %" PetscInt_FMT " step %" PetscInt_FMT " (%s) is not the batch of the definition",
                  paired ? "paired" : "cells", e, st, ph ? "valid" : "train");
        for (PetscInt i = 0; paired && i < b.n; i++) {
          PetscInt gc = ggroup[b.ctrl_cell[i]];
          CS_EXPECT(gc >= 0 && d->groups[gc].control && gtrain[b.ctrl_cell[i]] && d->groups[gc].ctx == d->groups[ggroup[b.cell[i]]].ctx,
                    "partner of cell %lld is not a training control of its context", (long long)b.cell[i]);
        }
        if (st < 3 && !ph) PetscCall(CheckParts(s, (CsSamplePhase)ph, e, st, 3, &p, paired));
      }
  }
  PetscCall(PetscFree(pool[0].c));
  PetscCall(PetscFree(pool[1].c));
  PetscCall(CsBatchFree(&b));
  PetscCall(CsSamplerDestroy(&s));
  PetscFunctionReturn(0);
}

static PetscErrorCode FreeGroups(Groups *G)
{
  PetscFunctionBeginUser;
  for (PetscInt g = 0; g < d->ngroups; g++) PetscCall(PetscFree(G->cells[g].c));
  PetscCall(PetscFree2(G->g, G->cells));
  PetscFunctionReturn(0);
}

/* set: whole groups on the rank of their position, set_size cells and set_controls controls each. */
static PetscErrorCode TestSet(PetscInt S, PetscInt Sc, PetscInt Gs)
{
  CsSampler s;
  CsBatch   b = {0};
  char      opts[256];
  Groups    G[2];

  PetscFunctionBeginUser;
  PetscCall(PetscSNPrintf(opts, sizeof(opts), "-t_set_size %" PetscInt_FMT " -t_set_controls %" PetscInt_FMT " -t_set_groups %" PetscInt_FMT, S, Sc, Gs));
  PetscCall(MakeSampler(CSSAMPLERSET, 64, opts, &s));
  PetscCall(GroupsOf(gtrain, &G[0]));
  PetscCall(GroupsOf(gvalid, &G[1]));
  for (int ph = 0; ph < 2; ph++) {
    PetscInt ng = G[ph].n, nsteps, esteps = ph ? (ng + Gs - 1) / Gs : PetscMax(1, ng / Gs);
    PetscCall(CsSamplerGetSizes(s, (CsSamplePhase)ph, &nsteps, NULL, NULL));
    CS_EXPECT(nsteps == esteps && ng > 0, "set: %" PetscInt_FMT " steps of %" PetscInt_FMT " groups, expected %" PetscInt_FMT, nsteps, ng, esteps);
    for (PetscInt e = 0; e < (ph ? 1 : 2); e++)
      for (PetscInt st = 0; st < nsteps; st++) {
        PetscInt gs = PetscMin(Gs, ng - st * Gs), ek = ph ? -1 : e;
        uint64_t xs = 0, cs = 0, gsum = 0, ggot = 0;
        Print    p = {0, 0, 0, 0, 0};
        CsPerm   perm;
        CsPermInit(&perm, (uint64_t)ng, 11, CS_STREAM_SHUFFLE, (uint64_t)e);
        PetscCall(CsSamplerGetBatch(s, (CsSamplePhase)ph, e, st, 0, 1, &b));
        for (PetscInt q = 0; q < gs; q++) {
          PetscInt g = G[ph].g[ph ? st * Gs + q : (PetscInt)CsPermApply(&perm, (uint64_t)(st * Gs + q))];
          List    *M = &G[ph].cells[g], *C = &ctrl[d->groups[g].ctx];
          for (PetscInt i = 0; i < S; i++) xs += H(M->c[Draw(M->n, S, 11, CS_STREAM_SET, Key(ek, g), i)], 1);
          for (PetscInt i = 0; i < Sc; i++) cs += H(C->c[Draw(C->n, Sc, 11, CS_STREAM_PAIR, Key(ek, g), i)], 2);
          gsum += H(g, 3);
          if (q % size == rank) { /* this rank holds group q */
            PetscInt k = 0;
            while (k < b.ngroups && b.group[k] != g) k++;
            CS_EXPECT(k < b.ngroups, "set: group %" PetscInt_FMT " of position %" PetscInt_FMT " is not on rank %d", g, q, rank);
          }
        }
        PetscCall(Observe(&b, PETSC_FALSE, &p));
        for (PetscInt k = 0; k < b.ngroups; k++) {
          PetscInt g = b.group[k];
          ggot += H(g, 3);
          CS_EXPECT(b.rowptr[k + 1] - b.rowptr[k] == S && b.ctrlptr[k + 1] - b.ctrlptr[k] == Sc, "set: group %" PetscInt_FMT " has %" PetscInt_FMT " cells and %" PetscInt_FMT " controls",
                    g, b.rowptr[k + 1] - b.rowptr[k], b.ctrlptr[k + 1] - b.ctrlptr[k]);
          for (PetscInt r = b.rowptr[k]; r < b.rowptr[k + 1]; r++) CS_EXPECT(ggroup[b.cell[r]] == g, "set: a cell of another group in group %" PetscInt_FMT, g);
          for (PetscInt r = b.ctrlptr[k]; r < b.ctrlptr[k + 1]; r++) {
            PetscInt gc = ggroup[b.ctrl_cell[r]];
            CS_EXPECT(gc >= 0 && d->groups[gc].control && gtrain[b.ctrl_cell[r]] && d->groups[gc].ctx == d->groups[g].ctx, "set: a control of another context");
          }
        }
        PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &ggot, 1, MPI_UINT64_T, MPI_SUM, comm));
        CS_EXPECT(p.xs == xs && p.cs == cs && ggot == gsum && p.n == gs * S, "set: epoch %" PetscInt_FMT " step %" PetscInt_FMT " (%s) is not the batch of the definition", e, st,
                  ph ? "valid" : "train");
        if (st < 2 && !ph && gs >= 2) PetscCall(CheckParts(s, (CsSamplePhase)ph, e, st, 2, &p, PETSC_FALSE));
      }
  }
  PetscCall(FreeGroups(&G[0]));
  PetscCall(FreeGroups(&G[1]));
  PetscCall(CsBatchFree(&b));
  PetscCall(CsSamplerDestroy(&s));
  PetscFunctionReturn(0);
}

/* coupled: one group per step, its perturbed minibatch and its context's control minibatch spread by ownership. */
static PetscErrorCode TestCoupled(void)
{
  const PetscInt B = 32;
  CsSampler      s;
  CsBatch        b = {0};
  Groups         G[2];

  PetscFunctionBeginUser;
  PetscCall(MakeSampler(CSSAMPLERCOUPLED, B, NULL, &s));
  PetscCall(GroupsOf(gtrain, &G[0]));
  PetscCall(GroupsOf(gvalid, &G[1]));
  for (int ph = 0; ph < 2; ph++) {
    PetscInt ng = G[ph].n, *slot, nsteps;
    PetscCall(PetscMalloc1(ng + 1, &slot));
    slot[0] = 0;
    for (PetscInt k = 0; k < ng; k++) {
      PetscInt n = G[ph].cells[G[ph].g[k]].n;
      slot[k + 1] = slot[k] + (ph ? (n + B - 1) / B : PetscMax(1, n / B));
    }
    PetscCall(CsSamplerGetSizes(s, (CsSamplePhase)ph, &nsteps, NULL, NULL));
    CS_EXPECT(nsteps == slot[ng], "coupled: %" PetscInt_FMT " steps, expected %" PetscInt_FMT, nsteps, slot[ng]);
    for (PetscInt e = 0; e < (ph ? 1 : 2); e++)
      for (PetscInt st = 0; st < nsteps; st++) {
        PetscInt ek = ph ? -1 : e, sigma = st, k = 0, g, v, n, lo, hi, gmin, gmax;
        uint64_t xs = 0, cs = 0;
        List    *M, *C;
        CsPerm   perm;
        Print    p = {0, 0, 0, 0, 0};
        if (!ph) {
          CsPermInit(&perm, (uint64_t)slot[ng], 11, CS_STREAM_SHUFFLE, (uint64_t)e);
          sigma = (PetscInt)CsPermApply(&perm, (uint64_t)st);
        }
        while (slot[k + 1] <= sigma) k++;
        g = G[ph].g[k], v = sigma - slot[k], M = &G[ph].cells[g], C = &ctrl[d->groups[g].ctx], n = M->n;
        CsPermInit(&perm, (uint64_t)n, 11, CS_STREAM_SET, Key(ek, g));
        lo = ph ? v * B : v * PetscMin(B, n), hi = ph ? PetscMin(lo + B, n) : lo + PetscMin(B, n);
        for (PetscInt q = lo; q < hi; q++) xs += H(M->c[ph ? q : (PetscInt)CsPermApply(&perm, (uint64_t)q)], 1);
        CsPermInit(&perm, (uint64_t)C->n, 11, CS_STREAM_PAIR, Key(ek, sigma));
        for (PetscInt q = 0; q < PetscMin(B, C->n); q++) cs += H(C->c[CsPermApply(&perm, (uint64_t)q)], 2);
        PetscCall(CsSamplerGetBatch(s, (CsSamplePhase)ph, e, st, 0, 1, &b));
        PetscCall(Observe(&b, PETSC_FALSE, &p));
        CS_EXPECT(p.xs == xs && p.cs == cs, "coupled: epoch %" PetscInt_FMT " step %" PetscInt_FMT " (%s) is not the batch of the definition", e, st,
                  ph ? "valid" : "train");
        CS_EXPECT(b.ngroups == 1 && b.rowptr[1] == b.n && b.ctrlptr[1] == b.nctrl, "coupled: a batch is one group");
        gmin = gmax = b.group[0];
        PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &gmin, 1, MPIU_INT, MPI_MIN, comm));
        PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &gmax, 1, MPIU_INT, MPI_MAX, comm));
        CS_EXPECT(gmin == g && gmax == g, "coupled: the ranks hold groups %" PetscInt_FMT "..%" PetscInt_FMT ", expected %" PetscInt_FMT, gmin, gmax, g);
        for (PetscInt r = 0; r < b.n; r++) CS_EXPECT(ggroup[b.cell[r]] == g, "coupled: a cell of another group");
        for (PetscInt r = 0; r < b.nctrl; r++) {
          PetscInt gc = ggroup[b.ctrl_cell[r]];
          CS_EXPECT(gc >= 0 && d->groups[gc].control && gtrain[b.ctrl_cell[r]] && d->groups[gc].ctx == d->groups[g].ctx, "coupled: a control of another context");
        }
        if (st < 2 && !ph) PetscCall(CheckParts(s, (CsSamplePhase)ph, e, st, 2, &p, PETSC_FALSE));
      }
    PetscCall(PetscFree(slot));
  }
  PetscCall(FreeGroups(&G[0]));
  PetscCall(FreeGroups(&G[1]));
  PetscCall(CsBatchFree(&b));
  PetscCall(CsSamplerDestroy(&s));
  PetscFunctionReturn(0);
}

/* stream: the definition of sampler.h recomputed from the global arrays (blocks of R rows, windows of W blocks of
   one block of each stratum, each window's training cells permuted), on an in-memory dataset (the default
   source's blocks), on the same file streamed (rows read on demand, prefetched) and through a source given with
   CsSamplerSetSource that wraps the default one and counts its calls. */
typedef struct {
  CsSamplerSource inner;
  PetscInt        reads, prefetches, rows;
} Counting;

static PetscErrorCode CountRows(void *ctx, PetscInt n, const PetscInt local[], CsCSR *X)
{
  Counting *c = (Counting *)ctx;
  PetscFunctionBeginUser;
  c->rows++;
  PetscCall(c->inner.rows(c->inner.ctx, n, local, X));
  PetscFunctionReturn(0);
}
static PetscErrorCode CountBlocks(void *ctx, PetscInt *nb, PetscInt *R)
{
  Counting *c = (Counting *)ctx;
  PetscFunctionBeginUser;
  PetscCall(c->inner.blocks(c->inner.ctx, nb, R));
  PetscFunctionReturn(0);
}
static PetscErrorCode CountRead(void *ctx, PetscInt n, const PetscInt blk[], CsCSR X[])
{
  Counting *c = (Counting *)ctx;
  PetscFunctionBeginUser;
  c->reads += n;
  PetscCall(c->inner.read(c->inner.ctx, n, blk, X));
  PetscFunctionReturn(0);
}
static PetscErrorCode CountRelease(void *ctx, PetscInt blk)
{
  Counting *c = (Counting *)ctx;
  PetscFunctionBeginUser;
  PetscCall(c->inner.release(c->inner.ctx, blk));
  PetscFunctionReturn(0);
}
static PetscErrorCode CountPrefetch(void *ctx, PetscInt n, const PetscInt blk[])
{
  Counting *c = (Counting *)ctx;
  PetscFunctionBeginUser;
  c->prefetches++;
  PetscCall(c->inner.prefetch(c->inner.ctx, n, blk));
  PetscFunctionReturn(0);
}

/* The epoch order of the definition: ord[0..ntrain) global cells. */
static PetscErrorCode StreamOrder(PetscInt R, PetscInt W, PetscInt e, PetscInt *ord, PetscInt *ntrain)
{
  PetscInt nb = (N + R - 1) / R, S = PetscMin(W, nb), nw = 0, at = 0, *cells;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(N + 1, &cells));
  for (PetscInt t = 0; t < S; t++) nw = PetscMax(nw, (t + 1) * nb / S - t * nb / S);
  for (PetscInt w = 0; w < nw; w++) {
    PetscInt C = 0;
    CsPerm   wp;
    for (PetscInt t = 0; t < S; t++) { /* stratum t's w-th block */
      PetscInt lo = t * nb / S, len = (t + 1) * nb / S - lo, blk;
      CsPerm   sp;
      if (w >= len) continue;
      CsPermInit(&sp, (uint64_t)len, 11, CS_STREAM_BLOCKS, ((uint64_t)(e + 1) << 32) | (uint64_t)t);
      blk = lo + (PetscInt)CsPermApply(&sp, (uint64_t)w);
      for (PetscInt c = blk * R; c < PetscMin(N, (blk + 1) * R); c++)
        if (gtrain[c]) cells[C++] = c;
    }
    CsPermInit(&wp, (uint64_t)C, 11, CS_STREAM_SHUFFLE, ((uint64_t)(e + 1) << 32) | (uint64_t)w);
    for (PetscInt q = 0; q < C; q++) ord[at++] = cells[CsPermApply(&wp, (uint64_t)q)];
  }
  *ntrain = at;
  PetscCall(PetscFree(cells));
  PetscFunctionReturn(0);
}

static PetscErrorCode CheckStream(CsDataset data, PetscInt R, PetscInt W, PetscInt B, PetscBool wrap, const char what[])
{
  CsSampler s;
  CsBatch   b = {0};
  PetscInt *ord, n, nsteps, ncells, nv = 0, *vcells;
  Counting  cnt = {{0}, 0, 0, 0};
  char      opts[64];

  PetscFunctionBeginUser;
  PetscCall(PetscSNPrintf(opts, sizeof(opts), "-t_stream_window %" PetscInt_FMT, W));
  PetscCall(PetscOptionsInsertString(NULL, opts));
  data->stream_block = R;
  PetscCall(CsSamplerCreate(comm, &s));
  PetscCall(CsSamplerSetOptionsPrefix(s, "t_"));
  PetscCall(CsSamplerSetType(s, CSSAMPLERSTREAM));
  PetscCall(CsSamplerSetBatchSize(s, B));
  PetscCall(CsSamplerSetFromOptions(s));
  PetscCall(CsSamplerSetData(s, data, d, train, valid, 11));
  if (wrap) {
    CsSamplerSource src = {&cnt, CountRows, NULL, CountBlocks, CountRead, CountRelease, CountPrefetch};
    CsSamplerDefaultSource(s, &cnt.inner);
    PetscCall(CsSamplerSetSource(s, &src));
  }
  PetscCall(CsSamplerSetUp(s));
  PetscCall(PetscOptionsClear(NULL));
  PetscCall(PetscMalloc2(N + 1, &ord, N + 1, &vcells));
  for (PetscInt c = 0; c < N; c++)
    if (gvalid[c]) vcells[nv++] = c;
  for (PetscInt e = 0; e < 2; e++) {
    PetscCall(StreamOrder(R, W, e, ord, &n));
    PetscCall(CsSamplerGetSizes(s, CS_SAMPLE_TRAIN, &nsteps, &ncells, NULL));
    CS_EXPECT(ncells == n && nsteps == PetscMax(1, n / B), "%s: %" PetscInt_FMT " cells in %" PetscInt_FMT " steps, expected %" PetscInt_FMT, what, ncells, nsteps, n);
    for (PetscInt st = 0; st < nsteps; st++) {
      Print    p  = {0, 0, 0, 0, 0};
      uint64_t xs = 0;
      for (PetscInt q = st * B; q < PetscMin(st * B + B, n); q++) xs += H(ord[q], 1);
      PetscCall(CsSamplerGetBatch(s, CS_SAMPLE_TRAIN, e, st, 0, 1, &b));
      PetscCall(Observe(&b, PETSC_FALSE, &p));
      CS_EXPECT(p.xs == xs && p.n == PetscMin(B, n), "%s: epoch %" PetscInt_FMT " step %" PetscInt_FMT " is not the batch of the definition", what, e, st);
      if (st % 5 == 1) PetscCall(CheckParts(s, CS_SAMPLE_TRAIN, e, st, 3, &p, PETSC_FALSE));
    }
  }
  { /* resume in the middle of an epoch: the same batch without the ones before */
    Print    p  = {0, 0, 0, 0, 0};
    uint64_t xs = 0;
    PetscInt st = nsteps / 2;
    PetscCall(StreamOrder(R, W, 5, ord, &n));
    for (PetscInt q = st * B; q < PetscMin(st * B + B, n); q++) xs += H(ord[q], 1);
    PetscCall(CsSamplerGetBatch(s, CS_SAMPLE_TRAIN, 5, st, 0, 1, &b));
    PetscCall(Observe(&b, PETSC_FALSE, &p));
    CS_EXPECT(p.xs == xs, "%s: step %" PetscInt_FMT " of epoch 5 asked first is not the batch of the definition", what, st);
  }
  PetscCall(CsSamplerGetSizes(s, CS_SAMPLE_VALID, &nsteps, &ncells, NULL));
  CS_EXPECT(ncells == nv, "%s: %" PetscInt_FMT " validation cells, expected %" PetscInt_FMT, what, ncells, nv);
  for (PetscInt st = 0; st < nsteps; st++) {
    Print    p  = {0, 0, 0, 0, 0};
    uint64_t xs = 0;
    for (PetscInt q = st * B; q < PetscMin(st * B + B, nv); q++) xs += H(vcells[q], 1);
    PetscCall(CsSamplerGetBatch(s, CS_SAMPLE_VALID, 0, st, 0, 1, &b));
    PetscCall(Observe(&b, PETSC_FALSE, &p));
    CS_EXPECT(p.xs == xs, "%s: validation step %" PetscInt_FMT " is not the cells in global order", what, st);
  }
  if (wrap) {
    PetscInt nb = (N + R - 1) / R;
    CS_EXPECT(cnt.reads >= 2 * nb && cnt.rows > 0 && cnt.prefetches > 0,
              "%s: the source given with CsSamplerSetSource was not used (%" PetscInt_FMT " block reads for %" PetscInt_FMT " blocks, %" PetscInt_FMT " row reads, %" PetscInt_FMT " prefetches)",
              what, cnt.reads, nb, cnt.rows, cnt.prefetches);
  }
  PetscCall(PetscFree2(ord, vcells));
  PetscCall(CsBatchFree(&b));
  PetscCall(CsSamplerDestroy(&s));
  PetscFunctionReturn(0);
}

static PetscErrorCode TestStream(void)
{
  CsDataset      st;
  char           data[PETSC_MAX_PATH_LEN];
  CsSampler      s;
  PetscErrorCode ierr;
  CsSamplerSource none = {NULL, NULL, NULL, NULL, NULL, NULL, NULL};

  PetscFunctionBeginUser;
  /* A source without blocks is refused. */
  PetscCall(CsSamplerCreate(comm, &s));
  PetscCall(CsSamplerSetType(s, CSSAMPLERSTREAM));
  PetscCall(CsSamplerSetData(s, ds, d, train, valid, 11));
  PetscCall(CsSamplerSetSource(s, &none));
  PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
  ierr = CsSamplerSetUp(s);
  PetscCall(PetscPopErrorHandler());
  CS_EXPECT(ierr == CS_ERR_INPUT, "the stream sampler accepted a source without blocks (error %d)", (int)ierr);
  PetscCall(CsSamplerDestroy(&s));
  /* In memory (the default source's blocks), then the same file streamed, through the default source and a wrapper. */
  PetscCall(CheckStream(ds, 300, 3, 64, PETSC_FALSE, "in memory"));
  PetscCall(CheckStream(ds, 1000, 1, 50, PETSC_FALSE, "in memory, one block a window"));
  PetscCall(CsTestSourcePath("input/perturbench_devel/devel.h5ad", data));
  PetscCall(CsDatasetCreate(comm, &st));
  PetscCall(CsDatasetSetFile(st, data, NULL));
  PetscCall(CsDesignAddKeys(d, st));
  st->stream = PETSC_TRUE, st->stream_block = 300, st->stream_prefetch = st->stream_prefetch_set = PETSC_TRUE;
  PetscCall(CsDatasetSetUp(st));
  CS_EXPECT(st->streamed && st->X.nrows == 0, "-stream read the rows");
  CS_EXPECT(st->rstart == ds->rstart && st->nlocal == ds->nlocal, "streamed ownership differs from the in-memory read");
  PetscCall(CheckStream(st, 300, 3, 64, PETSC_FALSE, "streamed, prefetched"));
  st->stream_prefetch = PETSC_FALSE;
  PetscCall(CheckStream(st, 256, 2, 100, PETSC_TRUE, "streamed through CsSamplerSetSource, not prefetched"));
  st->stream_prefetch = PETSC_TRUE;
  { /* group statistics by a pass over the blocks: the same numbers as in memory */
    PetscInt G = ds->ngenes, S = d->ngroups, *slot;
    double  *m1, *v1, *m2, *v2;
    PetscCall(PetscMalloc5(ds->nlocal + 1, &slot, (size_t)S * G, &m1, (size_t)S * G, &v1, (size_t)S * G, &m2, (size_t)S * G, &v2));
    for (PetscInt i = 0; i < ds->nlocal; i++) slot[i] = d->cell_group[i];
    st->stream_block = 97;
    PetscCall(CsDatasetGroupStats(ds, S, slot, NULL, m1, v1));
    PetscCall(CsDatasetGroupStats(st, S, slot, NULL, m2, v2));
    for (size_t q = 0; q < (size_t)S * G; q++) CS_EXPECT(m1[q] == m2[q] && PetscAbsReal(v1[q] - v2[q]) <= 1e-12 * (1 + PetscAbsReal(v1[q])), "streamed group statistics differ at %zu", q);
    PetscCall(PetscFree5(slot, m1, v1, m2, v2));
  }
  PetscCall(CsDatasetDestroy(&st));
  PetscFunctionReturn(0);
}

static PetscErrorCode Body(void)
{
  PetscFunctionBeginUser;
  comm = PETSC_COMM_WORLD;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCall(Load());
  PetscCall(PetscMalloc1(d->nctx, &ctrl));
  for (PetscInt x = 0; x < d->nctx; x++) {
    Sel s = {NULL, x, 0};
    PetscCall(ListOf(IsControlOf, &s, &ctrl[x]));
  }
  PetscCall(TestCells(PETSC_FALSE, PETSC_FALSE));
  PetscCall(TestCells(PETSC_TRUE, PETSC_FALSE));
  PetscCall(TestCells(PETSC_TRUE, PETSC_TRUE));
  PetscCall(TestSet(48, 50, 3));  /* groups with fewer than 48 cells are drawn with replacement */
  PetscCall(TestSet(8, 150, 5));  /* contexts have 100 controls: drawn with replacement */
  PetscCall(TestCoupled());
  PetscCall(TestStream());
  for (PetscInt x = 0; x < d->nctx; x++) PetscCall(PetscFree(ctrl[x].c));
  PetscCall(PetscFree(ctrl));
  PetscCall(PetscFree4(ggroup, gtrain, gvalid, growhash));
  PetscCall(PetscFree2(train, valid));
  PetscCall(CsDesignDestroy(&d));
  PetscCall(CsDatasetDestroy(&ds));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv) { return CsTestMain(argc, argv, Body); }
