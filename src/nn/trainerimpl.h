/* Private to src/nn: the sampler object and its types, the trainer's state shared by the loop (trainer.c) and the
   checkpoint format (checkpoint.c). */
#ifndef CELLSHIFT_TRAINERIMPL_H
#define CELLSHIFT_TRAINERIMPL_H

#include <petsc/private/petscimpl.h>
#include <cellshift/trainer.h>
#include <cellshift/progress.h>
#include <cellshift/rng.h>

/* ================================================== pools ================================================== */

/* Cells of this rank sorted into classes (contexts or groups), each class numbered globally in row order: the k-th
   member of class c is on the rank whose members of c start at or below k. A pool translates (class, ordinal) into
   global dataset rows without storing other ranks' members: its selection matrix S (one 1 per local member, at the
   member's global row) is distributed like the pool, and fetching rows of S (CsCSRFetchRows) reads off the rows. */
typedef struct {
  PetscInt    nclass;
  PetscInt   *cnt;    /* [nclass] members on this rank */
  PetscInt   *loff;   /* [nclass + 1] start of each class in rows */
  PetscInt   *goff;   /* [nclass] ordinal of this rank's first member of each class */
  PetscInt   *total;  /* [nclass] members on all ranks */
  PetscInt   *rows;   /* [loff[nclass]] local dataset rows, class by class, increasing within a class */
  PetscInt    rstart; /* global row of local dataset row 0 */
  PetscLayout layout; /* the local pools in rank order */
  CsCSR       S;
} CsPool;

/* Collective: the pool of local rows i with cls[i] in [0, nclass) (-1: not a member). */
PETSC_INTERN PetscErrorCode CsPoolCreate(MPI_Comm comm, CsDataset ds, PetscInt nclass, const PetscInt cls[], CsPool *p);
PETSC_INTERN PetscErrorCode CsPoolDestroy(CsPool *p);
/* The local dataset row of ordinal k of class c, or -1 when another rank holds it. Not collective. */
static inline PetscInt CsPoolLocal(const CsPool *p, PetscInt c, PetscInt k)
{
  return k >= p->goff[c] && k < p->goff[c] + p->cnt[c] ? p->rows[p->loff[c] + k - p->goff[c]] : -1;
}
/* Collective: the global dataset rows of n requests (class classes[req[i]], ordinal ord[i]); classes[0..nc) is the
   same list on every rank (NULL: all classes, req[i] is the class). */
PETSC_INTERN PetscErrorCode CsPoolTranslate(CsPool *p, PetscInt nc, const PetscInt classes[], PetscInt n, const PetscInt req[],
                                            const PetscInt ord[], PetscInt rows[]);

/* Ordinal number i of `take` draws among n: without replacement (a permutation keyed by (seed, stream, key)) when
   n >= take, else uniformly with replacement with the same key. */
PETSC_INTERN PetscInt CsDraw(const CsPerm *perm, PetscInt n, PetscInt take, PetscInt i);
/* Set up perm for CsDraw. */
PETSC_INTERN void CsDrawInit(CsPerm *perm, PetscInt n, uint64_t seed, uint32_t stream, uint64_t key);
/* The key of a draw for (epoch, item): (epoch + 1) << 32 | item; validation uses epoch -1. */
static inline uint64_t CsDrawKey(PetscInt epoch, PetscInt item) { return ((uint64_t)(epoch + 1) << 32) | (uint64_t)item; }

/* ================================================= sampler ================================================= */

typedef struct _CsSamplerOps *CsSamplerOps;
struct _CsSamplerOps {
  PetscErrorCode (*setfromoptions)(CsSampler, PetscOptionItems *);
  PetscErrorCode (*setup)(CsSampler);
  PetscErrorCode (*sizes)(CsSampler, CsSamplePhase, PetscInt *nsteps, PetscInt *ncells, PetscInt *nrows);
  PetscErrorCode (*maxrows)(CsSampler, PetscInt *rows, PetscInt *ctrl);
  /* collective: part of nparts of a step into b (the rows through CsSamplerRows / CsSamplerFetch) */
  PetscErrorCode (*batch)(CsSampler, CsSamplePhase, PetscInt epoch, PetscInt step, PetscInt part, PetscInt nparts, CsBatch *b);
  PetscErrorCode (*view)(CsSampler, PetscViewer);
  PetscErrorCode (*destroy)(CsSampler);
};

struct _p_CsSampler {
  PETSCHEADER(struct _CsSamplerOps);
  void            *data;
  CsDataset        ds;
  CsDesign         design;
  const uint8_t   *train, *valid;
  uint64_t         seed;
  PetscInt         batch;
  PetscMPIInt      rank, size;
  CsSamplerSource  src;
  const double    *weight; /* [ds->nlocal] sampling weights of the cells sampler, NULL = uniform */
  PetscBool        paired_controls; /* paired: training controls join the training pool, each its own partner */
  PetscBool        setup;
};

/* The batch's X from local dataset rows (b->local, b->cell filled), through the row source. */
PETSC_INTERN PetscErrorCode CsSamplerRows(CsSampler s, PetscInt n, const PetscInt local[], CsBatch *b);
/* Collective: the batch's X (ctrl false) or Xctrl (ctrl true) from global rows, through the row source; ids filled. */
PETSC_INTERN PetscErrorCode CsSamplerFetch(CsSampler s, PetscBool ctrl, PetscInt n, const PetscInt global[], CsBatch *b);
/* The batch's Xctrl from local dataset rows (coupled). */
PETSC_INTERN PetscErrorCode CsSamplerRowsCtrl(CsSampler s, PetscInt n, const PetscInt local[], CsBatch *b);
/* Group bookkeeping of a batch: ngroups entries (arrays reallocated). */
PETSC_INTERN PetscErrorCode CsBatchSetGroups(CsBatch *b, PetscInt ngroups);
/* Position range [lo, hi) of micro-batch part of nparts of the range [p0, p1). */
static inline void CsSamplerPart(PetscInt p0, PetscInt p1, PetscInt part, PetscInt nparts, PetscInt *lo, PetscInt *hi)
{
  *lo = p0 + (PetscInt)((int64_t)(p1 - p0) * part / nparts);
  *hi = p0 + (PetscInt)((int64_t)(p1 - p0) * (part + 1) / nparts);
}
/* Groups the set-like samplers draw from: perturbed groups with cells in mask whose context has training controls
   (ctrlpool: the training controls by context). *ng groups into list (allocated, design order), counts of the
   mask's cells in each group into the pool cells. */
PETSC_INTERN PetscErrorCode CsSamplerEligibleGroups(CsSampler s, const uint8_t *mask, const CsPool *ctrlpool, PetscInt *ng,
                                                    PetscInt **list, CsPool *cells);
/* Collective: the training controls of each context. */
PETSC_INTERN PetscErrorCode CsSamplerControlPool(CsSampler s, CsPool *p);

/* Steps, cells and rows of a pool of n cells cut into batches of B: training drops the last partial batch, validation
   keeps it (cells and paired samplers). */
PETSC_INTERN void CsSamplerCellSizes(CsSamplePhase phase, PetscInt n, PetscInt B, PetscInt *nsteps, PetscInt *ncells, PetscInt *nrows);
/* The local rows tmp[0..n) of a cells-style batch over a one-class pool: positions of micro-batch part of step's
   positions in the epoch's permutation (training) or in global order (validation), in position order. */
PETSC_INTERN PetscErrorCode CsSamplerCellBatch(CsSampler s, const CsPool *pool, CsSamplePhase phase, PetscInt epoch, PetscInt step,
                                               PetscInt part, PetscInt nparts, PetscInt *tmp, PetscInt *n, PetscInt *nglobal);

PETSC_INTERN PetscErrorCode CsSamplerCreate_Cells(CsSampler);
PETSC_INTERN PetscErrorCode CsSamplerCreate_Paired(CsSampler);
PETSC_INTERN PetscErrorCode CsSamplerCreate_Set(CsSampler);
PETSC_INTERN PetscErrorCode CsSamplerCreate_Coupled(CsSampler);
PETSC_INTERN PetscErrorCode CsSamplerCreate_Stream(CsSampler);

/* ================================================= trainer ================================================= */

#define CS_MAX_SETS 4

struct _n_CsTrainer {
  MPI_Comm           comm;
  char               prefix[64];
  PetscInt           epochs, batch, patience, checkpoint_every, accumulate;
  double             valid_cells;
  char               resume[PETSC_MAX_PATH_LEN], ckdir[PETSC_MAX_PATH_LEN], model[64], type[64];
  PetscInt           nsets;
  CsNNParams         P[CS_MAX_SETS];
  CsNNOptim          opt[CS_MAX_SETS];
  CsNNReducer        red[CS_MAX_SETS];
  float             *best_p[CS_MAX_SETS], *best_buf[CS_MAX_SETS];
  CsTrainerCallbacks cb;
  CsSampler          sampler;
  uint64_t           seed;
  uint64_t           cells;  /* fingerprint of the training and validation cells (resume checks it) */
  uint8_t           *mtrain, *mvalid; /* the sampler's masks (CsMaskGet): training cells, validation cells (drawn or given) */
  PetscInt           ntrain, nvalid;   /* cells of the sampler's pools */
  PetscInt           nsteps, nrows;    /* training steps and rows per epoch */
  PetscInt           nvalid_rows;      /* rows of a validation pass */
  PetscBool          data;   /* CsTrainerSetData was called */
  /* state (what a checkpoint holds besides the parameters) */
  int64_t  step;       /* optimiser steps taken */
  PetscInt epoch;      /* current epoch */
  PetscInt sstep;      /* steps of the current epoch taken */
  PetscInt bad_epochs; /* epochs since the best validation loss */
  PetscInt best_epoch;
  double   best, epoch_loss; /* best validation loss; sum of this epoch's step losses */
  double  *history;          /* [epochs][2]: mean training loss and validation loss of every epoch run */
  PetscBool stopped;         /* early stopping fired */
  /* work of a run */
  CsBatch    b;
  PetscBool  dirty[CS_MAX_SETS]; /* gradients the last step may have left in a set it did not step */
  CsProgress prog;
  double     valid;              /* last validation loss */
};

/* checkpoint.c */
/* Collective: write <ckdir>/checkpoint.h5 (atomically, rank 0). */
PETSC_INTERN PetscErrorCode CsTrainerCheckpointWrite(CsTrainer t);
/* Collective: continue from <resume>/<model>/checkpoint.h5, every field checked against the run. */
PETSC_INTERN PetscErrorCode CsTrainerCheckpointResume(CsTrainer t);
/* The best copy of set k in place of the live parameters and back (save and load work on P->p and P->buf). */
PETSC_INTERN void CsTrainerSwapBest(CsTrainer t, PetscInt k);

#endif
