/* CsSampler: the minibatches a learned model is trained on (a PETSc object, typed like TS).

   A sampler is given the dataset, the design and two masks over the rank's cells (train, valid) and yields, for
   (phase, epoch, step), this rank's part of a GLOBAL batch. The global batch is a pure function of the seed, the
   epoch, the step and the cells' global indices, so it is the same for any number of ranks; only which rank holds
   which rows depends on the rank count. Pools of cells are numbered in global row order (rank order, then local
   order), and every random choice is a counter-based draw (rng.h) keyed by global quantities.

   Types (-<prefix>sampler_type, the prefix is the trainer's):
   - cells   : epoch e visits the training cells in the order of a pointwise permutation keyed by (seed, e)
               (CsPerm, CS_STREAM_SHUFFLE, key e), in global batches of -<prefix>batch_size cells; the last partial
               batch is dropped (one batch of all cells when there are fewer than batch_size). Each rank takes the
               batch's cells it owns, in batch order. Validation: the validation cells in global order.
               With weights (-quality_weight, CsSamplerSetWeights) the training batches are drawn with replacement,
               cell c with probability w_c / sum w: the weights are quantised to integers q_c = round(2^30 w_c / max w)
               (at least 1 where w_c > 0), whose prefix sums over the training cells in global order are exact for
               any rank count; batch position p of epoch e (the same positions and steps per epoch as above) takes
               the cell whose prefix interval holds r mod Q, Q = sum q, r the 64 bits of CsRng4(seed,
               CS_STREAM_WEIGHT, e, p). A cell of weight 0 is never drawn. Validation is not weighted.
   - paired  : the same over the perturbed (non-control) training cells whose context has training controls; each
               cell c of a batch gets a control partner: ordinal floor(u ncontrols) of the training controls of its
               context, u = CsRngUniform(seed, CS_STREAM_PAIR, e + 1, c) (validation: counter 0). The partner's rows
               are fetched onto the cell's rank (CsDatasetFetchRows); Xctrl row i is the partner of X row i.
               With -<prefix>paired_controls (CsSamplerSetPairedControls) the training control cells join the
               training pool (one pool in global row order, as the perturbed cells), each its own partner (GEARS
               trains the network to map a control cell to itself); validation stays perturbed cells only.
   - set     : each step is -<prefix>set_groups groups (default batch_size / set_size) of an epoch's permutation of
               the training groups (perturbed (condition, context) groups with training cells whose context has
               training controls; CsPerm keyed (seed, CS_STREAM_SHUFFLE, e)). Group number q of the step (its position)
               is gathered on rank q % size: -<prefix>set_size of its training cells and -<prefix>set_controls
               training controls of its context. Cells are the first set_size of a permutation of the group's cells
               keyed (seed, CS_STREAM_SET, (e + 1) << 32 | group), drawn without replacement, or with replacement
               (uniform draws with the same key) when the group has fewer cells than set_size (SetUp says how many
               groups do); controls the same in CS_STREAM_PAIR. Validation: every group with validation cells once,
               in design order, counter 0 for e + 1.
   - coupled : each step is one group: a perturbed minibatch of min(batch_size, n) of its n training cells and a
               control minibatch of min(batch_size, m) of the m training controls of its context, each rank holding
               the cells of both it owns (for minibatch optimal-transport coupling). A group has max(1, n /
               batch_size) slots per epoch; epoch e visits the slots in a permutation keyed (seed, CS_STREAM_SHUFFLE, e);
               the v-th slot of a group takes positions [v b, (v + 1) b) of the group's permutation keyed
               (seed, CS_STREAM_SET, (e + 1) << 32 | group), so an epoch draws a group's cells without replacement;
               the controls are the first min(batch_size, m) of a permutation keyed (seed, CS_STREAM_PAIR,
               (e + 1) << 32 | slot). Validation: each group's validation cells in global order, in minibatches
               of batch_size.
   - stream  : block-shuffled epochs over row blocks read on demand (the dataset streamed from its file, or any
               source with blocks): the dataset is nblocks blocks of block_rows consecutive global rows, grouped
               into W = min(-<prefix>stream_window (default 8), nblocks) strata of consecutive blocks (stratum t:
               blocks [t nblocks / W, (t + 1) nblocks / W)); window w of epoch e holds, of every stratum with more
               than w blocks, the w-th block of a permutation of the stratum keyed (seed, CS_STREAM_BLOCKS,
               (e + 1) << 32 | t), so there are as many windows as the largest stratum has blocks, and each spans
               the file evenly (a rank holds its share of every window, not a binomial draw of it). The training
               cells of window w (in stratum order, then global row order) are permuted by a permutation keyed
               (seed, CS_STREAM_SHUFFLE, (e + 1) << 32 | w). The epoch's order is the windows' orders one after the other; global batches of
               batch_size are cut from it as for cells (last partial batch dropped) and each rank takes the cells it
               owns, in batch order. Only the windows a batch touches are held (read), and the next window is
               prefetched while the current one is trained (src.prefetch). Validation: the validation cells in
               global order, their rows read through src.rows. Resident per cell: nothing beyond the masks; per
               block, three counts.

   Micro-batches: CsSamplerGetBatch(..., part, nparts) yields part `part` of the step's global batch split into
   nparts micro-batches (by batch position; set: by group), so that gradients can be accumulated over them.

   Collectives: everything but the getters is collective on the sampler's communicator; CsSamplerGetBatch is called
   by every rank with the same arguments. */
#ifndef CELLSHIFT_SAMPLER_H
#define CELLSHIFT_SAMPLER_H

#include <cellshift/design.h>

/* Cell masks: one bit a local cell (a streamed shard keeps its masks for every local row), cell i in when
   CsMaskGet(m, i); CsMaskBytes(n) bytes for n cells, zeroed before CsMaskSet. */
#define CsMaskBytes(n) (((size_t)(n) + 7) / 8 + 1)
static inline PetscBool CsMaskGet(const uint8_t m[], PetscInt i) { return (PetscBool)((m[i >> 3] >> (i & 7)) & 1); }
static inline void      CsMaskSet(uint8_t m[], PetscInt i) { m[i >> 3] |= (uint8_t)(1u << (i & 7)); }

typedef struct _p_CsSampler *CsSampler;
typedef const char         *CsSamplerType;
#define CSSAMPLERCELLS   "cells"
#define CSSAMPLERPAIRED  "paired"
#define CSSAMPLERSET     "set"
#define CSSAMPLERCOUPLED "coupled"
#define CSSAMPLERSTREAM  "stream"

typedef enum { CS_SAMPLE_TRAIN = 0, CS_SAMPLE_VALID = 1 } CsSamplePhase;

/* The rank's part of a global minibatch. A zero-initialised CsBatch is empty; the sampler reallocates its arrays,
   so one batch can be reused for every step (CsBatchFree at the end). */
typedef struct {
  CsCSR     X;        /* [n rows] expression of the cells (CSR, ngenes columns) */
  PetscInt  n;        /* local rows */
  PetscInt  nglobal;  /* rows of the global batch */
  PetscInt *local;    /* [n] dataset row (0 .. ds->nlocal-1) of each batch row, -1 for a row fetched from another rank */
  int64_t  *cell;     /* [n] global cell index of each batch row */
  /* Control cells (paired: the partner of each row, nctrl = n; set, coupled: the controls of the groups' contexts;
     cells: none). */
  CsCSR     Xctrl;
  PetscInt  nctrl, nctrl_global;
  PetscInt *ctrl_local; /* [nctrl] as local, -1 when fetched */
  int64_t  *ctrl_cell;  /* [nctrl] global cell index */
  /* set, coupled: the batch is made of whole groups; rows rowptr[k] .. rowptr[k+1] of X and ctrlptr[k] ..
     ctrlptr[k+1] of Xctrl belong to design group group[k] (set: the groups gathered on this rank, possibly none;
     coupled: the step's one group on every rank). ngroups = 0 for the other types. */
  PetscInt  ngroups;
  PetscInt *group, *rowptr, *ctrlptr;
} CsBatch;

/* Build the rank's CSR rows of an arbitrary set of local dataset rows (for models' own passes, e.g. encoding). Local
   (a streamed dataset reads them: CsDatasetGetRows). */
PETSC_EXTERN PetscErrorCode CsBatchFromRows(CsDataset ds, PetscInt n, const PetscInt *rows, CsBatch *b);
PETSC_EXTERN PetscErrorCode CsBatchFree(CsBatch *b);

/* Where a sampler's rows come from. The default source is the dataset's in-memory shard (rows: a copy of local
   rows; fetch: CsDatasetFetchRows). A streamed shard provides the block operations instead; samplers never read
   ds->X themselves. */
typedef struct {
  void *ctx;
  /* rows local[0..n) of this rank's shard, in that order, into X (reallocated) */
  PetscErrorCode (*rows)(void *ctx, PetscInt n, const PetscInt local[], CsCSR *X);
  /* collective: rows by global index onto the asking rank, into a fresh X */
  PetscErrorCode (*fetch)(void *ctx, PetscInt n, const PetscInt global[], CsCSR *X);
  /* streamed shards: the dataset is nblocks blocks of block_rows consecutive global rows (the last may be shorter);
     read (collective) makes the rows of blocks[0..n) available to their owners (X[k]: this rank's rows of blocks[k],
     fresh), one call for a window so that ranks read their parts side by side; release (collective) drops a block */
  PetscErrorCode (*blocks)(void *ctx, PetscInt *nblocks, PetscInt *block_rows);
  PetscErrorCode (*read)(void *ctx, PetscInt n, const PetscInt blocks[], CsCSR X[]);
  PetscErrorCode (*release)(void *ctx, PetscInt block);
  /* optional, local: start reading blocks[0..n) in the background (read then returns them); NULL: no prefetch */
  PetscErrorCode (*prefetch)(void *ctx, PetscInt n, const PetscInt blocks[]);
} CsSamplerSource;

/* The default source of s: the rows of s's dataset, in memory or streamed (CsDatasetGetRows, CsDatasetStreamRead,
   CsDatasetStreamPrefetch; blocks of ds->stream_block rows either way), with ctx = s. A replacement source may wrap
   it. */
PETSC_EXTERN void CsSamplerDefaultSource(CsSampler s, CsSamplerSource *src);

PETSC_EXTERN PetscClassId CS_SAMPLER_CLASSID;

/* Registers the class and the types above (called by CsSamplerCreate; idempotent). */
PETSC_EXTERN PetscErrorCode CsSamplerInitializePackage(void);
PETSC_EXTERN PetscErrorCode CsSamplerRegister(const char type[], PetscErrorCode (*create)(CsSampler));
PETSC_EXTERN PetscErrorCode CsSamplerCreate(MPI_Comm comm, CsSampler *s);
/* The same type again does nothing; another type destroys the old implementation first. Default: cells. */
PETSC_EXTERN PetscErrorCode CsSamplerSetType(CsSampler s, CsSamplerType type);
PETSC_EXTERN PetscErrorCode CsSamplerGetType(CsSampler s, CsSamplerType *type);
PETSC_EXTERN PetscErrorCode CsSamplerSetOptionsPrefix(CsSampler s, const char prefix[]);
/* Cells per global batch (the trainer's -<prefix>batch_size). */
PETSC_EXTERN PetscErrorCode CsSamplerSetBatchSize(CsSampler s, PetscInt batch);
/* -<prefix>sampler_type, and the type's options (set: -<prefix>set_size, -<prefix>set_controls, -<prefix>set_groups). */
PETSC_EXTERN PetscErrorCode CsSamplerSetFromOptions(CsSampler s);
/* The cells: the masks train / valid (CsMaskGet) of the local dataset rows (valid may be NULL: nothing to validate
   on), seed of every draw. d may be NULL for the cells type. References are taken, not copies. */
PETSC_EXTERN PetscErrorCode CsSamplerSetData(CsSampler s, CsDataset ds, CsDesign d, const uint8_t *train, const uint8_t *valid,
                                             uint64_t seed);
/* Sampling weights [ds->nlocal] of the local rows (>= 0; NULL: uniform), a reference. CsSamplerSetData takes the
   dataset's -quality_weight weights (ds->qweight); this replaces them. Only the cells type accepts weights: SetUp of
   another type with weights is an input error. */
PETSC_EXTERN PetscErrorCode CsSamplerSetWeights(CsSampler s, const double *w);
/* Paired sampler: training controls in the training pool, each its own partner (the default of
   -<prefix>paired_controls; false unless set). Before SetFromOptions. */
PETSC_EXTERN PetscErrorCode CsSamplerSetPairedControls(CsSampler s, PetscBool flg);
/* Replace the in-memory row source (before SetUp). */
PETSC_EXTERN PetscErrorCode CsSamplerSetSource(CsSampler s, const CsSamplerSource *src);
/* Collective, idempotent: the pools of cells and groups; input errors (no perturbed cell with a control, ...). */
PETSC_EXTERN PetscErrorCode CsSamplerSetUp(CsSampler s);
/* After SetUp: steps per epoch, cells in the phase's pool, rows per epoch (the sum of the global batch rows). */
PETSC_EXTERN PetscErrorCode CsSamplerGetSizes(CsSampler s, CsSamplePhase phase, PetscInt *nsteps, PetscInt *ncells, PetscInt *nrows);
/* After SetFromOptions: upper bounds of the rows of X and of Xctrl of any batch on one rank. */
PETSC_EXTERN PetscErrorCode CsSamplerGetMaxRows(CsSampler s, PetscInt *rows, PetscInt *ctrl);
/* Collective: part `part` of nparts of step `step` of epoch `epoch` (validation: epoch is ignored). */
PETSC_EXTERN PetscErrorCode CsSamplerGetBatch(CsSampler s, CsSamplePhase phase, PetscInt epoch, PetscInt step, PetscInt part,
                                              PetscInt nparts, CsBatch *b);
PETSC_EXTERN PetscErrorCode CsSamplerView(CsSampler s, PetscViewer v);
PETSC_EXTERN PetscErrorCode CsSamplerDestroy(CsSampler *s);

#endif
