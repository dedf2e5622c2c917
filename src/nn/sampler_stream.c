/* The stream sampler: block-shuffled epochs over row blocks read on demand (see sampler.h).

   Rank-count independence: every quantity that decides a batch is global — the block permutation, the training
   cells per block (cnt), the windows' permutations — so every rank computes the same global batch; a rank only
   needs, for each block, where its own training cells start among the block's (off) and how many it has (my).
   Ownership is a contiguous range of global rows per rank, so the cells of a block are those of the ranks in rank
   order and "ordinal k of block b is mine" is off[b] <= k < off[b] + my[b].

   Memory: the windows a batch touches (usually one, two where a batch straddles a window boundary) and, while it
   touches one, the prefetched next window; per block three counts. */
#include "trainerimpl.h"
#include <cellshift/rng.h>

typedef struct {
  PetscInt   epoch, w;    /* which window (-1: free) */
  PetscInt   nblk;
  PetscInt  *blk;         /* [window] blocks of the window, in window order */
  PetscInt  *bstart;      /* [window + 1] training-cell prefix over the window's blocks */
  CsCSR     *X;           /* [window] this rank's rows of each block */
  PetscInt **trow;        /* [window] this rank's training rows of each block, as rows of X[j] */
} Held;

#define NHELD 4

typedef struct {
  PetscInt  window;                /* blocks held and shuffled together */
  PetscInt  nblocks, block_rows;
  PetscInt *cnt, *off, *my;        /* [nblocks] training cells of each block: all, before this rank, this rank's */
  PetscInt *vcnt, *voff, *vmy;     /* the same for validation cells */
  PetscInt *vpre;                  /* [nblocks + 1] validation prefix in block (global) order */
  PetscInt  ntrain, nvalid;
  /* the epoch whose window order is cached */
  PetscInt  epoch, nwin;
  PetscInt *wpre;                  /* [nwin + 1] training-cell prefix over the epoch's windows */
  Held      held[NHELD];
  PetscInt *tmp;                   /* [batch] */
  PetscInt  prefetched_epoch, prefetched_w;
} Stream;

static PetscInt WindowBlocks(CsSampler s, PetscInt e, PetscInt w, PetscInt blk[]);

static PetscErrorCode HeldFree(CsSampler s, Held *h)
{
  Stream *c = (Stream *)s->data;

  PetscFunctionBeginUser;
  if (h->epoch < 0) PetscFunctionReturn(0);
  for (PetscInt j = 0; j < h->nblk; j++) {
    if (s->src.release) PetscCall(s->src.release(s->src.ctx, h->blk[j]));
    PetscCall(CsCSRRecycle(&h->X[j])); /* the next window's rows reuse the arrays */
    PetscCall(PetscFree(h->trow[j]));
  }
  PetscCall(PetscFree(h->blk));
  PetscCall(PetscFree(h->bstart));
  PetscCall(PetscFree(h->X));
  PetscCall(PetscFree(h->trow));
  h->epoch = h->w = -1, h->nblk = 0;
  (void)c;
  PetscFunctionReturn(0);
}

/* Counts of mask's cells per block: all ranks (cnt), ranks below (off), this rank (my). */
static PetscErrorCode BlockCounts(CsSampler s, const uint8_t *mask, PetscInt *cnt, PetscInt *off, PetscInt *my)
{
  Stream  *c  = (Stream *)s->data;
  CsDataset ds = s->ds;
  MPI_Comm comm = PetscObjectComm((PetscObject)s);

  PetscFunctionBeginUser;
  PetscCall(PetscArrayzero(my, c->nblocks));
  for (PetscInt i = 0; mask && i < ds->nlocal; i++)
    if (CsMaskGet(mask, i)) my[(ds->rstart + i) / c->block_rows]++;
  PetscCallMPI(MPI_Allreduce(my, cnt, (PetscMPIInt)c->nblocks, MPIU_INT, MPI_SUM, comm));
  PetscCallMPI(MPI_Exscan(my, off, (PetscMPIInt)c->nblocks, MPIU_INT, MPI_SUM, comm));
  if (!s->rank) PetscCall(PetscArrayzero(off, c->nblocks));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsSamplerSetUp_Stream(CsSampler s)
{
  Stream     *c      = (Stream *)s->data;
  const char *prefix = ((PetscObject)s)->prefix ? ((PetscObject)s)->prefix : "";
  MPI_Comm    comm   = PetscObjectComm((PetscObject)s);
  PetscBool   set;

  PetscFunctionBeginUser;
  CsCheckAll(comm, s->src.blocks && s->src.read && s->src.release,
             "-%ssampler_type stream reads row blocks on demand, and the row source given with CsSamplerSetSource has no blocks", prefix);
  PetscCall(PetscOptionsGetInt(((PetscObject)s)->options, prefix, "-stream_window", &c->window, &set)); /* registered by CsSamplerSetFromOptions */
  CsCheckAll(comm, c->window >= 1, "-%sstream_window must be positive", prefix);
  for (PetscInt k = 0; k < NHELD; k++) PetscCall(HeldFree(s, &c->held[k]));
  PetscCall(PetscFree3(c->cnt, c->off, c->my));
  PetscCall(PetscFree4(c->vcnt, c->voff, c->vmy, c->vpre));
  PetscCall(PetscFree(c->wpre));
  PetscCall(PetscFree(c->tmp));
  PetscCall(s->src.blocks(s->src.ctx, &c->nblocks, &c->block_rows));
  CsCheckAll(comm, c->block_rows >= 1 && (int64_t)c->nblocks * c->block_rows >= s->ds->nglobal,
             "the row source's %" PetscInt_FMT " blocks of %" PetscInt_FMT " rows do not cover the %" PetscInt_FMT " cells", c->nblocks,
             c->block_rows, s->ds->nglobal);
  PetscCall(PetscMalloc3(c->nblocks + 1, &c->cnt, c->nblocks + 1, &c->off, c->nblocks + 1, &c->my));
  PetscCall(PetscMalloc4(c->nblocks + 1, &c->vcnt, c->nblocks + 1, &c->voff, c->nblocks + 1, &c->vmy, c->nblocks + 1, &c->vpre));
  PetscCall(BlockCounts(s, s->train, c->cnt, c->off, c->my));
  PetscCall(BlockCounts(s, s->valid, c->vcnt, c->voff, c->vmy));
  c->ntrain = c->nvalid = 0, c->vpre[0] = 0;
  for (PetscInt b = 0; b < c->nblocks; b++) c->ntrain += c->cnt[b], c->nvalid += c->vcnt[b], c->vpre[b + 1] = c->vpre[b] + c->vcnt[b];
  c->nwin = (c->nblocks + PetscMin(c->window, c->nblocks) - 1) / PetscMin(c->window, c->nblocks); /* the largest stratum */
  PetscCall(PetscMalloc1(c->nwin + 1, &c->wpre));
  PetscCall(PetscMalloc1(s->batch + 1, &c->tmp));
  c->epoch = -1, c->prefetched_epoch = c->prefetched_w = -1;
  PetscFunctionReturn(0);
}

static PetscErrorCode CsSamplerSizes_Stream(CsSampler s, CsSamplePhase phase, PetscInt *nsteps, PetscInt *ncells, PetscInt *nrows)
{
  Stream *c = (Stream *)s->data;

  PetscFunctionBeginUser;
  CsSamplerCellSizes(phase, phase == CS_SAMPLE_TRAIN ? c->ntrain : c->nvalid, s->batch, nsteps, ncells, nrows);
  PetscFunctionReturn(0);
}

/* Blocks of window w of epoch e. The blocks fall into W = min(window, nblocks) strata of consecutive blocks
   (stratum t: blocks [t nblocks / W, (t + 1) nblocks / W)); window w holds, of every stratum with more than w
   blocks, its w-th block in a permutation keyed (seed, CS_STREAM_BLOCKS, (e + 1) << 32 | t). So every window
   spans the whole file evenly: a rank, owning consecutive rows, holds its share of every window (W / size
   blocks when size divides W), which a permutation of all blocks gives only on average (binomially). */
static PetscInt WindowBlocks(CsSampler s, PetscInt e, PetscInt w, PetscInt blk[])
{
  Stream  *c = (Stream *)s->data;
  PetscInt W = PetscMin(c->window, c->nblocks), n = 0;

  for (PetscInt t = 0; t < W; t++) {
    PetscInt lo = (PetscInt)((int64_t)t * c->nblocks / W), hi = (PetscInt)((int64_t)(t + 1) * c->nblocks / W);
    CsPerm   sp;
    if (w >= hi - lo) continue;
    CsPermInit(&sp, (uint64_t)(hi - lo), s->seed, CS_STREAM_BLOCKS, ((uint64_t)(e + 1) << 32) | (uint64_t)t);
    blk[n++] = lo + (PetscInt)CsPermApply(&sp, (uint64_t)w);
  }
  return n;
}

/* The epoch's window prefix (cached). */
static PetscErrorCode EpochWindows(CsSampler s, PetscInt e)
{
  Stream  *c = (Stream *)s->data;
  PetscInt *blk;

  PetscFunctionBeginUser;
  if (c->epoch == e) PetscFunctionReturn(0);
  PetscCall(PetscMalloc1(c->window + 1, &blk));
  c->wpre[0] = 0;
  for (PetscInt w = 0; w < c->nwin; w++) {
    PetscInt n = WindowBlocks(s, e, w, blk), t = 0;
    for (PetscInt j = 0; j < n; j++) t += c->cnt[blk[j]];
    c->wpre[w + 1] = c->wpre[w] + t;
  }
  PetscCall(PetscFree(blk));
  c->epoch = e;
  PetscFunctionReturn(0);
}

/* The window holding epoch position p: the last w with wpre[w] <= p (empty windows are skipped). */
static PetscInt WindowOf(const Stream *c, PetscInt p)
{
  PetscInt lo = 0, hi = c->nwin - 1;
  while (lo < hi) {
    PetscInt mid = (lo + hi + 1) / 2;
    if (c->wpre[mid] <= p) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/* Collective: window w of epoch e held (read if needed). */
static PetscErrorCode Hold(CsSampler s, PetscInt e, PetscInt w, Held **out)
{
  Stream   *c  = (Stream *)s->data;
  CsDataset ds = s->ds;
  Held     *h  = NULL;

  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < NHELD; k++)
    if (c->held[k].epoch == e && c->held[k].w == w) {
      *out = &c->held[k];
      PetscFunctionReturn(0);
    }
  for (PetscInt k = 0; k < NHELD && !h; k++)
    if (c->held[k].epoch < 0) h = &c->held[k];
  PetscCheck(h, PETSC_COMM_SELF, PETSC_ERR_PLIB, "more than %d windows held", NHELD);
  PetscCall(PetscMalloc1(c->window, &h->blk));
  PetscCall(PetscCalloc1(c->window, &h->X));
  PetscCall(PetscCalloc1(c->window, &h->trow));
  PetscCall(PetscMalloc1(c->window + 1, &h->bstart));
  h->nblk = WindowBlocks(s, e, w, h->blk);
  h->epoch = e, h->w = w, h->bstart[0] = 0;
  PetscCall(s->src.read(s->src.ctx, h->nblk, h->blk, h->X));
  for (PetscInt j = 0; j < h->nblk; j++) {
    PetscInt b = h->blk[j], a = PetscMax(b * c->block_rows, ds->rstart) - ds->rstart, n = 0;
    h->bstart[j + 1] = h->bstart[j] + c->cnt[b];
    PetscCheck(h->X[j].nrows >= c->my[b], PETSC_COMM_SELF, PETSC_ERR_PLIB, "block %" PetscInt_FMT " came with %" PetscInt_FMT " rows", b, h->X[j].nrows);
    PetscCall(PetscMalloc1(c->my[b] + 1, &h->trow[j]));
    for (PetscInt i = 0; i < h->X[j].nrows; i++)
      if (CsMaskGet(s->train, a + i)) h->trow[j][n++] = i;
  }
  *out = h;
  PetscFunctionReturn(0);
}

/* Local: start reading the window after window w1 of epoch e (the next epoch's first after the last window). */
static PetscErrorCode Prefetch(CsSampler s, PetscInt e, PetscInt w1)
{
  Stream  *c  = (Stream *)s->data;
  PetscInt ne = e, nw = w1 + 1, m, *blk;

  PetscFunctionBeginUser;
  if (!s->src.prefetch) PetscFunctionReturn(0);
  while (nw < c->nwin && c->wpre[nw + 1] == c->wpre[nw]) nw++; /* windows without training cells are never read */
  if (nw >= c->nwin) ne = e + 1, nw = 0;
  if (ne == c->prefetched_epoch && nw == c->prefetched_w) PetscFunctionReturn(0);
  for (PetscInt k = 0; k < NHELD; k++)
    if (c->held[k].epoch == ne && c->held[k].w == nw) PetscFunctionReturn(0); /* held already */
  PetscCall(PetscMalloc1(c->window, &blk));
  m = WindowBlocks(s, ne, nw, blk);
  PetscCall(s->src.prefetch(s->src.ctx, m, blk));
  PetscCall(PetscFree(blk));
  c->prefetched_epoch = ne, c->prefetched_w = nw;
  PetscFunctionReturn(0);
}

/* Append row r of A to b->X (capacity *cap non-zeros). */
static PetscErrorCode AppendRow(CsBatch *b, const CsCSR *A, PetscInt r, int64_t *cap)
{
  int64_t a = A->indptr[r], len = A->indptr[r + 1] - a, at = b->X.indptr[b->X.nrows];

  PetscFunctionBeginUser;
  if (at + len > *cap) {
    *cap = PetscMax(2 * *cap, at + len) + 1;
    PetscCall(PetscRealloc(sizeof(int32_t) * *cap, &b->X.indices));
    PetscCall(PetscRealloc(sizeof(float) * *cap, &b->X.data));
  }
  PetscCall(PetscArraycpy(b->X.indices + at, A->indices + a, len));
  PetscCall(PetscArraycpy(b->X.data + at, A->data + a, len));
  b->X.indptr[++b->X.nrows] = at + len;
  PetscFunctionReturn(0);
}

static PetscErrorCode TrainBatch(CsSampler s, PetscInt e, PetscInt step, PetscInt part, PetscInt nparts, CsBatch *b)
{
  Stream   *c  = (Stream *)s->data;
  CsDataset ds = s->ds;
  PetscInt  N = c->ntrain, p0 = step * s->batch, p1 = PetscMin(p0 + s->batch, N), lo, hi, w0, w1, n = 0;
  Held     *hw[NHELD];
  int64_t   cap;

  PetscFunctionBeginUser;
  PetscCall(EpochWindows(s, e));
  CsSamplerPart(p0, p1, part, nparts, &lo, &hi);
  /* The windows of the whole step (every part of it), so that micro-batches do not read a window twice. */
  w0 = WindowOf(c, p0), w1 = WindowOf(c, PetscMax(p1 - 1, p0));
  CsCheckAll(PetscObjectComm((PetscObject)s), w1 - w0 + 1 <= NHELD - 1,
             "a batch of %" PetscInt_FMT " cells spans %" PetscInt_FMT " windows of the stream sampler (at most %d): raise -%sstream_window or -stream_block",
             s->batch, w1 - w0 + 1, NHELD - 1, ((PetscObject)s)->prefix ? ((PetscObject)s)->prefix : "");
  for (PetscInt k = 0; k < NHELD; k++) { /* drop the windows this step does not touch */
    Held *h = &c->held[k];
    if (h->epoch >= 0 && !(h->epoch == e && h->w >= w0 && h->w <= w1)) PetscCall(HeldFree(s, h));
  }
  for (PetscInt w = w0; w <= w1; w++) PetscCall(Hold(s, e, w, &hw[w - w0]));
  /* The next window is read ahead once the step lies in one window: a step straddling two windows, with the read
     ahead of a third, held three windows at once, a resident peak one window above the rest of the epoch. The read
     then starts a step later, with a window of steps still to overlap it. */
  if (w0 == w1) PetscCall(Prefetch(s, e, w1));
  /* Position p: window w, ordinal q in it, the window's permutation gives the cell k of the window (block order),
     that is ordinal k of block j; mine when it falls in this rank's share of the block. */
  PetscCall(PetscRealloc(sizeof(int64_t) * (hi - lo + 1), &b->X.indptr));
  PetscCall(PetscRealloc(sizeof(PetscInt) * (hi - lo + 1), &b->local));
  PetscCall(PetscRealloc(sizeof(int64_t) * (hi - lo + 1), &b->cell));
  b->X.nrows = 0, b->X.ncols = ds->ngenes, b->X.indptr[0] = 0;
  cap = 0;
  for (PetscInt p = lo; p < hi; p++) {
    PetscInt w = WindowOf(c, p), q = p - c->wpre[w], C = c->wpre[w + 1] - c->wpre[w], j = 0, k, bk;
    Held    *h = hw[w - w0];
    CsPerm   wp;
    CsPermInit(&wp, (uint64_t)C, s->seed, CS_STREAM_SHUFFLE, ((uint64_t)(e + 1) << 32) | (uint64_t)w);
    k = (PetscInt)CsPermApply(&wp, (uint64_t)q);
    while (h->bstart[j + 1] <= k) j++;
    k -= h->bstart[j], bk = h->blk[j];
    if (k < c->off[bk] || k >= c->off[bk] + c->my[bk]) continue;
    {
      PetscInt r = h->trow[j][k - c->off[bk]], l = PetscMax(bk * c->block_rows, ds->rstart) - ds->rstart + r;
      if (!cap) { /* the first row: size the arrays for a batch of rows like it */
        cap = (int64_t)(hi - lo) * (h->X[j].indptr[r + 1] - h->X[j].indptr[r] + 1) + 16;
        PetscCall(PetscRealloc(sizeof(int32_t) * cap, &b->X.indices));
        PetscCall(PetscRealloc(sizeof(float) * cap, &b->X.data));
      }
      PetscCall(AppendRow(b, &h->X[j], r, &cap));
      b->local[n] = l, b->cell[n] = ds->rstart + l, n++;
    }
  }
  if (!b->X.indices) {
    PetscCall(PetscRealloc(sizeof(int32_t), &b->X.indices));
    PetscCall(PetscRealloc(sizeof(float), &b->X.data));
  }
  b->n = n, b->nglobal = hi - lo;
  PetscFunctionReturn(0);
}

/* Validation: positions [lo, hi) of the validation cells in global order; rows through the source. */
static PetscErrorCode ValidBatch(CsSampler s, PetscInt step, PetscInt part, PetscInt nparts, CsBatch *b)
{
  Stream   *c  = (Stream *)s->data;
  CsDataset ds = s->ds;
  PetscInt  p0 = step * s->batch, p1 = PetscMin(p0 + s->batch, c->nvalid), lo, hi, n = 0, bk = 0, lastbk = -1, lastt = -1;

  PetscFunctionBeginUser;
  CsSamplerPart(p0, p1, part, nparts, &lo, &hi);
  for (PetscInt p = lo; p < hi; p++) {
    PetscInt k;
    while (c->vpre[bk + 1] <= p) bk++;
    k = p - c->vpre[bk];
    if (k < c->voff[bk] || k >= c->voff[bk] + c->vmy[bk]) continue;
    { /* the (k - voff)-th validation row of this rank in block bk: the scan goes on from the row before it when that
         was the previous one found, else from the block's first row */
      PetscInt t = k - c->voff[bk], i = PetscMax(bk * c->block_rows, ds->rstart) - ds->rstart;
      if (bk == lastbk && t == lastt + 1) i = c->tmp[n - 1] + 1, lastt = t, t = 0;
      else lastbk = bk, lastt = t;
      for (; i < ds->nlocal; i++)
        if (CsMaskGet(s->valid, i) && t-- == 0) {
          c->tmp[n++] = i;
          break;
        }
    }
  }
  PetscCall(CsSamplerRows(s, n, c->tmp, b));
  b->nglobal = hi - lo;
  PetscFunctionReturn(0);
}

static PetscErrorCode CsSamplerBatch_Stream(CsSampler s, CsSamplePhase phase, PetscInt epoch, PetscInt step, PetscInt part, PetscInt nparts,
                                            CsBatch *b)
{
  PetscFunctionBeginUser;
  if (phase == CS_SAMPLE_TRAIN) PetscCall(TrainBatch(s, epoch, step, part, nparts, b));
  else PetscCall(ValidBatch(s, step, part, nparts, b));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsSamplerView_Stream(CsSampler s, PetscViewer v)
{
  Stream *c = (Stream *)s->data;

  PetscFunctionBeginUser;
  PetscCall(PetscViewerASCIIPrintf(v, "stream: %" PetscInt_FMT " blocks of %" PetscInt_FMT " rows, windows of %" PetscInt_FMT " blocks%s\n",
                                   c->nblocks, c->block_rows, c->window, s->src.prefetch ? ", next window prefetched" : ""));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsSamplerDestroy_Stream(CsSampler s)
{
  Stream *c = (Stream *)s->data;

  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < NHELD; k++) PetscCall(HeldFree(s, &c->held[k]));
  PetscCall(CsCSRSparesFree());
  PetscCall(PetscFree3(c->cnt, c->off, c->my));
  PetscCall(PetscFree4(c->vcnt, c->voff, c->vmy, c->vpre));
  PetscCall(PetscFree(c->wpre));
  PetscCall(PetscFree(c->tmp));
  PetscCall(PetscFree(s->data));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsSamplerMaxRows_Stream(CsSampler s, PetscInt *rows, PetscInt *ctrl)
{
  PetscFunctionBeginUser;
  *rows = s->batch, *ctrl = 0;
  PetscFunctionReturn(0);
}

PetscErrorCode CsSamplerCreate_Stream(CsSampler s)
{
  Stream *c;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&c));
  c->window = 8;
  for (PetscInt k = 0; k < NHELD; k++) c->held[k].epoch = c->held[k].w = -1;
  s->data                = c;
  s->ops->setup          = CsSamplerSetUp_Stream;
  s->ops->sizes          = CsSamplerSizes_Stream;
  s->ops->maxrows        = CsSamplerMaxRows_Stream;
  s->ops->batch          = CsSamplerBatch_Stream;
  s->ops->view           = CsSamplerView_Stream;
  s->ops->destroy        = CsSamplerDestroy_Stream;
  PetscFunctionReturn(0);
}
