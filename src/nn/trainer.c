/* CsTrainer: the training loop (epochs, steps with micro-batches, validation, early stopping, signals). Batches come
   from the sampler (sampler.c), checkpoints are checkpoint.c. See include/cellshift/trainer.h. */
#include "trainerimpl.h"
#include "nnimpl.h"
#include <signal.h>

static volatile sig_atomic_t cs_signal = 0;
static void OnSignal(int sig) { cs_signal = sig; }

PetscErrorCode CsTrainerCreate(MPI_Comm comm, CsTrainer *out)
{
  CsTrainer t;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&t));
  t->comm = comm, t->epochs = 100, t->batch = 128, t->patience = 20, t->valid_cells = 0.1, t->accumulate = 1;
  t->best = PETSC_INFINITY;
  PetscCall(CsSamplerCreate(comm, &t->sampler));
  *out = t;
  PetscFunctionReturn(0);
}

PetscErrorCode CsTrainerSetOptionsPrefix(CsTrainer t, const char prefix[])
{
  PetscFunctionBeginUser;
  PetscCall(PetscStrncpy(t->prefix, prefix ? prefix : "", sizeof(t->prefix)));
  PetscCall(CsSamplerSetOptionsPrefix(t->sampler, prefix));
  PetscFunctionReturn(0);
}

PetscErrorCode CsTrainerSetDefaults(CsTrainer t, PetscInt epochs, PetscInt batch_size, PetscInt patience)
{
  PetscFunctionBeginUser;
  t->epochs = epochs, t->batch = batch_size, t->patience = patience;
  PetscFunctionReturn(0);
}

PetscErrorCode CsTrainerAddOptimizer(CsTrainer t, const char optprefix[], double lr, double weight_decay, PetscInt *set)
{
  char     prefix[128];
  PetscInt k = t->nsets;

  PetscFunctionBeginUser;
  PetscCheck(k < CS_MAX_SETS, t->comm, PETSC_ERR_SUP, "at most %d parameter sets", CS_MAX_SETS);
  PetscCall(CsNNOptimCreate(t->comm, &t->opt[k]));
  t->opt[k]->lr = lr, t->opt[k]->weight_decay = weight_decay;
  PetscCall(PetscSNPrintf(prefix, sizeof(prefix), "%s%s", t->prefix, optprefix ? optprefix : ""));
  PetscCall(CsNNOptimSetOptionsPrefix(t->opt[k], prefix));
  t->nsets++;
  if (set) *set = k;
  PetscFunctionReturn(0);
}

PetscErrorCode CsTrainerSetFromOptions(CsTrainer t)
{
  PetscFunctionBeginUser;
  PetscOptionsBegin(t->comm, t->prefix, "Training", "CsTrainer");
  PetscCall(PetscOptionsInt("-epochs", "Maximum number of epochs", "CsTrainerSetFromOptions", t->epochs, &t->epochs, NULL));
  PetscCall(PetscOptionsInt("-batch_size", "Cells per global minibatch (split over the ranks)", "CsTrainerSetFromOptions", t->batch,
                            &t->batch, NULL));
  PetscCall(PetscOptionsInt("-patience", "Early stopping: epochs without a better validation loss", "CsTrainerSetFromOptions",
                            t->patience, &t->patience, NULL));
  PetscCall(PetscOptionsReal("-valid_cells", "Fraction of training cells held out for validation when the split has no valid group",
                             "CsTrainerSetFromOptions", t->valid_cells, &t->valid_cells, NULL));
  PetscCall(PetscOptionsInt("-accumulate", "Micro-batches per global batch whose gradients add up before one optimiser step",
                            "CsTrainerSetFromOptions", t->accumulate, &t->accumulate, NULL));
  PetscOptionsEnd();
  PetscOptionsBegin(t->comm, NULL, "Checkpoints", "CsTrainer");
  PetscCall(PetscOptionsInt("-checkpoint_every", "Write a checkpoint every N epochs (0 = only on SIGTERM/SIGUSR1)", "CsTrainerSetFromOptions",
                            t->checkpoint_every, &t->checkpoint_every, NULL));
  PetscCall(PetscOptionsString("-resume", "Continue from the checkpoints of this run folder", "CsTrainerSetFromOptions", t->resume,
                               t->resume, sizeof(t->resume), NULL));
  PetscOptionsEnd();
  CsCheckAll(t->comm, t->epochs >= 0 && t->batch >= 2 && t->patience >= 1 && t->valid_cells >= 0 && t->valid_cells < 1,
             "training options out of range: -%sepochs >= 0, -%sbatch_size >= 2, -%spatience >= 1, 0 <= -%svalid_cells < 1", t->prefix,
             t->prefix, t->prefix, t->prefix);
  CsCheckAll(t->comm, t->accumulate >= 1 && t->accumulate <= t->batch, "-%saccumulate must be between 1 and -%sbatch_size (%" PetscInt_FMT ")",
             t->prefix, t->prefix, t->batch);
  PetscCall(CsSamplerSetBatchSize(t->sampler, t->batch));
  PetscCall(CsSamplerSetFromOptions(t->sampler));
  for (PetscInt k = 0; k < t->nsets; k++) PetscCall(CsNNOptimSetFromOptions(t->opt[k]));
  PetscFunctionReturn(0);
}

PetscErrorCode CsTrainerGetParameterCount(CsTrainer t, PetscInt64 *n)
{
  PetscFunctionBeginUser;
  *n = 0;
  for (PetscInt k = 0; k < t->nsets; k++)
    if (t->P[k]) *n += CsNNParamsCount(t->P[k]);
  PetscFunctionReturn(0);
}

PetscErrorCode CsTrainerSetParams(CsTrainer t, PetscInt k, CsNNParams P)
{
  PetscFunctionBeginUser;
  PetscCheck(k >= 0 && k < t->nsets && !t->P[k], t->comm, PETSC_ERR_ARG_OUTOFRANGE, "parameter set %" PetscInt_FMT " is not declared or already set", k);
  t->P[k] = P;
  PetscCall(CsNNOptimSetUp(t->opt[k], P->n));
  PetscCall(CsNNReducerCreate(t->comm, P, &t->red[k]));
  PetscCall(CsNNReducerSetFromOptions(t->red[k]));
  PetscCall(CsNNOptimSetReducer(t->opt[k], t->red[k])); /* used by the sharded reduction, ignored otherwise */
  /* Allocated like the live buffers (CsNNMalloc): CsTrainerSwapBest exchanges them. */
  PetscCall(CsNNMalloc(sizeof(float) * (P->n ? P->n : 16), &t->best_p[k]));
  PetscCall(CsNNMalloc(sizeof(float) * (P->nbuf ? P->nbuf : 16), &t->best_buf[k]));
  PetscFunctionReturn(0);
}

PetscErrorCode CsTrainerGetOptim(CsTrainer t, PetscInt set, CsNNOptim *opt)
{
  PetscFunctionBeginUser;
  *opt = t->opt[set];
  PetscFunctionReturn(0);
}

PetscErrorCode CsTrainerGetBatchSize(CsTrainer t, PetscInt *batch)
{
  PetscInt rows, ctrl;

  PetscFunctionBeginUser;
  PetscCall(CsSamplerGetMaxRows(t->sampler, &rows, &ctrl));
  *batch = PetscMax(rows, ctrl);
  PetscFunctionReturn(0);
}

PetscErrorCode CsTrainerGetSampler(CsTrainer t, CsSampler *s)
{
  PetscFunctionBeginUser;
  *s = t->sampler;
  PetscFunctionReturn(0);
}

PetscErrorCode CsTrainerSetCallbacks(CsTrainer t, const CsTrainerCallbacks *cb)
{
  PetscFunctionBeginUser;
  t->cb = *cb;
  PetscFunctionReturn(0);
}

/* An order-free fingerprint of which cells train and validate: a resumed run must see the same ones. */
static PetscErrorCode CellsFingerprint(CsTrainer t, CsDataset ds)
{
  uint64_t h = 0;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < ds->nlocal; i++) {
    uint32_t r[4];
    if (!CsMaskGet(t->mtrain, i) && !CsMaskGet(t->mvalid, i)) continue;
    CsRng4(0, CS_STREAM_SAMPLE, (uint64_t)(ds->rstart + i), CsMaskGet(t->mtrain, i) ? 2 : 3, r);
    h += ((uint64_t)r[1] << 32) | r[0];
  }
  PetscCallMPI(MPI_Allreduce(&h, &t->cells, 1, MPI_UINT64_T, MPI_SUM, t->comm));
  PetscFunctionReturn(0);
}

PetscErrorCode CsTrainerSetData(CsTrainer t, CsDataset ds, CsDesign d, const uint8_t *train, const uint8_t *valid, uint64_t seed)
{
  PetscInt ntrain = 0, nvalid;

  PetscFunctionBeginUser;
  t->seed = seed;
  PetscCall(PetscFree2(t->mtrain, t->mvalid));
  PetscCall(PetscCalloc2(CsMaskBytes(ds->nlocal), &t->mtrain, CsMaskBytes(ds->nlocal), &t->mvalid));
  for (PetscInt i = 0; i < ds->nlocal; i++) {
    /* Without valid cells, a fraction of the training cells is drawn by global cell index (rank-independent). */
    PetscBool tr = CsMaskGet(train, i);
    PetscBool va = valid ? CsMaskGet(valid, i) : tr && CsRngUniform(seed, CS_STREAM_SAMPLE, (uint64_t)(ds->rstart + i), 1) < t->valid_cells;
    if (va) CsMaskSet(t->mvalid, i);
    if (tr && !va) CsMaskSet(t->mtrain, i), ntrain++;
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &ntrain, 1, MPIU_INT, MPI_SUM, t->comm));
  CsCheckAll(t->comm, ntrain >= 2, "training needs at least 2 cells (has %" PetscInt_FMT ")", ntrain);
  PetscCall(CellsFingerprint(t, ds));
  if (ds->streamed) { /* the rows are read on demand: the cells sampler becomes its streamed form */
    CsSamplerType type;
    PetscBool     cells, stream;
    PetscCall(CsSamplerGetType(t->sampler, &type));
    PetscCall(PetscStrcmp(type, CSSAMPLERCELLS, &cells));
    PetscCall(PetscStrcmp(type, CSSAMPLERSTREAM, &stream));
    if (cells) PetscCall(CsSamplerSetType(t->sampler, CSSAMPLERSTREAM));
    else if (!stream) {
      char what[128];
      PetscCall(PetscSNPrintf(what, sizeof(what), "%s's sampler (-%ssampler_type %s)", t->model[0] ? t->model : "the model", t->prefix, type));
      PetscCall(CsDatasetCheckResident(ds, what));
    }
  }
  PetscCall(CsSamplerSetData(t->sampler, ds, d, t->mtrain, t->mvalid, seed));
  PetscCall(CsSamplerSetUp(t->sampler));
  PetscCall(PetscObjectViewFromOptions((PetscObject)t->sampler, NULL, "-sampler_view"));
  PetscCall(CsSamplerGetSizes(t->sampler, CS_SAMPLE_TRAIN, &t->nsteps, &t->ntrain, &t->nrows));
  for (PetscInt k = 0; k < t->nsets; k++) /* an epoch-based step decay in optimiser steps */
    if (t->opt[k]->step_epochs > 0) t->opt[k]->step_size = t->opt[k]->step_epochs * PetscMax(t->nsteps, 1);
  PetscCall(CsSamplerGetSizes(t->sampler, CS_SAMPLE_VALID, NULL, &t->nvalid, &nvalid));
  t->nvalid_rows = nvalid;
  t->data        = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode CsTrainerSetCheckpointDir(CsTrainer t, const char dir[], const char model[], const char type[])
{
  PetscFunctionBeginUser;
  PetscCall(PetscStrncpy(t->ckdir, dir, sizeof(t->ckdir)));
  PetscCall(PetscStrncpy(t->model, model, sizeof(t->model)));
  PetscCall(PetscStrncpy(t->type, type ? type : "", sizeof(t->type)));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Best parameters. */

static PetscErrorCode SaveBest(CsTrainer t)
{
  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < t->nsets; k++) {
    PetscCall(PetscArraycpy(t->best_p[k], t->P[k]->p, t->P[k]->n));
    if (t->P[k]->nbuf) PetscCall(PetscArraycpy(t->best_buf[k], t->P[k]->buf, t->P[k]->nbuf));
  }
  PetscFunctionReturn(0);
}

void CsTrainerSwapBest(CsTrainer t, PetscInt k)
{
  float *p = t->P[k]->p, *b = t->P[k]->buf;

  t->P[k]->p = t->best_p[k], t->P[k]->buf = t->best_buf[k];
  t->best_p[k] = p, t->best_buf[k] = b;
}

/* The best epoch's parameters become the live ones (both copies equal). */
static PetscErrorCode RestoreBest(CsTrainer t)
{
  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < t->nsets; k++) CsTrainerSwapBest(t, k);
  PetscCall(SaveBest(t));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* One step. */

typedef struct {
  const float *g;
  size_t       n;
  double       sq[64];
} SumSqCtx;

static void TaskSumSq(void *ctx, int t, int nt)
{
  SumSqCtx *a = (SumSqCtx *)ctx;
  size_t    lo, hi;
  CsPoolChunk(a->n, t, nt, 16, &lo, &hi);
  a->sq[t] = lo < hi ? CsNNSqDiff(NULL, PETSC_FALSE, a->g + lo, NULL, hi - lo, 0) : 0;
}

/* Sum of squares of the gradient this rank holds (the whole reduced gradient, or its slice when sharded). */
static double GradSumSq(CsNNParams P)
{
  SumSqCtx a;
  double   s = 0;

  a.g = P->g, a.n = P->n;
  CsPoolRun(TaskSumSq, &a);
  for (int t = 0; t < CsPoolThreads(); t++) s += a.sq[t];
  return s;
}

static void ScaleGrad(CsNNParams P, double a)
{
  float f = (float)a;
  for (size_t i = 0; i < P->n; i++) P->g[i] *= f;
}

/* The step's gradient in the g of its parameter set, summed over ranks, from the sampler's batch in
   t->accumulate micro-batches: after micro-batch j, g = sum over i <= j of (n_i / n_j) h_i (h_i the gradient of the
   mean loss of micro-batch i, n_i its rows), so the last scaling by n_last / N gives the large batch's gradient. */
static PetscErrorCode Accumulate(CsTrainer t, PetscInt *set, double *loss)
{
  PetscInt  K = t->accumulate, prev = 0, N = 0;
  PetscBool single = (PetscBool)(t->nsets == 1);
  double    sum = 0, l = 0;

  PetscFunctionBeginUser;
  for (PetscInt j = 0; j < K; j++) {
    CsNNPass pass = {0};
    PetscInt s    = 0;
    PetscCall(CsSamplerGetBatch(t->sampler, CS_SAMPLE_TRAIN, t->epoch, t->sstep, j, K, &t->b));
    PetscCheck(t->b.nglobal > 0, t->comm, CS_ERR_INPUT, "%s: micro-batch %" PetscInt_FMT " of %" PetscInt_FMT " of step %" PetscInt_FMT " is empty (lower -%saccumulate)",
               t->model, j + 1, K, t->sstep + 1, t->prefix);
    pass.comm = t->comm, pass.train = PETSC_TRUE, pass.nglobal = t->b.nglobal, pass.seed = t->seed, pass.step = (uint64_t)t->step;
    pass.cell = t->b.cell;
    /* With one set its reducer is known before backward, which may then start reducing finished gradients. */
    if (single && j == K - 1) {
      pass.reducer = t->red[0];
      PetscCall(CsNNReducerBegin(t->red[0]));
    }
    /* The optimiser step leaves its set's gradient zeroed; the other sets may hold gradients of the last step. */
    if (j == 0)
      for (PetscInt k = 0; k < t->nsets; k++)
        if (t->dirty[k]) PetscCall(CsNNParamsZeroGrad(t->P[k]));
    if (j > 0 && t->b.nglobal != prev) ScaleGrad(t->P[*set], (double)prev / (double)t->b.nglobal);
    PetscCall(t->cb.step(t->cb.ctx, &t->b, &pass, &s, &l));
    PetscCheck(s >= 0 && s < t->nsets, t->comm, PETSC_ERR_PLIB, "step callback chose parameter set %" PetscInt_FMT, s);
    PetscCheck(j == 0 || s == *set, t->comm, PETSC_ERR_PLIB, "step callback chose parameter set %" PetscInt_FMT " and %" PetscInt_FMT " in one step", *set, s);
    *set = s, prev = t->b.nglobal, N += t->b.nglobal, sum += l * (double)t->b.nglobal;
  }
  if (!single) PetscCall(CsNNReducerBegin(t->red[*set]));
  PetscCall(CsNNReducerEnd(t->red[*set]));
  if (K > 1) ScaleGrad(t->P[*set], (double)prev / (double)N);
  *loss = K > 1 ? sum / (double)N : l;
  PetscFunctionReturn(0);
}

/* x as C prints it (PETSc's %g appends a '.' to "inf"). */
static const char *Num(double x, char buf[32])
{
  if (isnan(x)) snprintf(buf, 32, "nan");
  else snprintf(buf, 32, "%g", x);
  return buf;
}

/* Collective: every rank is here (the verdict was reduced). */
static PetscErrorCode Diverged(CsTrainer t, PetscInt set, double loss, double sumsq)
{
  size_t lo, hi;
  float *gs;
  char   a[32], b[32], c[32];

  PetscFunctionBeginUser;
  if (t->opt[set]->clip == 0 && CsNNReducerSharded(t->red[set], &lo, &hi, &gs))
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &sumsq, 1, MPI_DOUBLE, MPI_SUM, t->comm));
  CsCheckAll(t->comm, PETSC_FALSE,
             "%s diverged in epoch %" PetscInt_FMT ", step %" PetscInt_FMT " of %" PetscInt_FMT ": the training loss is %s and the gradient norm %s; "
             "try a lower learning rate (-%slr, now %s)",
             t->model, t->epoch + 1, t->sstep + 1, t->nsteps, Num(loss, a), Num(sqrt(sumsq), b), t->opt[set]->prefix, Num(t->opt[set]->lr, c));
  PetscFunctionReturn(0);
}

/* One optimiser step; *signalled when a rank was signalled before it (a signal reaches the ranks at different times). */
static PetscErrorCode TrainStep(CsTrainer t, PetscBool *signalled)
{
  PetscInt set = 0;
  double   loss = 0, sumsq = 0;
  PetscBool sharded;
  int      flags[2] = {cs_signal != 0, 0};
  char     line[256];

  PetscFunctionBeginUser;
  PetscCall(Accumulate(t, &set, &loss));
  {
    size_t lo, hi;
    float *gs;
    /* Sharded: the sum over the whole (partly zero) buffer; otherwise the optimiser's update pass takes it. */
    sharded = CsNNReducerSharded(t->red[set], &lo, &hi, &gs);
    if (t->opt[set]->clip == 0 && sharded) sumsq = GradSumSq(t->P[set]);
  }
  PetscCall(PetscLogEventBegin(CS_EVENT_OPTIM, 0, 0, 0, 0));
  PetscCall(CsNNOptimStep(t->opt[set], t->P[set]));
  for (PetscInt k = 0; k < t->nsets; k++) t->dirty[k] = k != set;
  PetscCall(PetscLogEventEnd(CS_EVENT_OPTIM, 0, 0, 0, 0));
  if (t->cb.poststep) PetscCall(t->cb.poststep(t->cb.ctx, set, t->step + 1));
  if (t->opt[set]->clip > 0) sumsq = t->opt[set]->last_norm * t->opt[set]->last_norm;
  else if (!sharded) sumsq = t->opt[set]->last_sumsq;
  /* One small reduction per step carries both verdicts. */
  flags[1] = PetscIsInfOrNanReal(loss) || PetscIsInfOrNanReal(sumsq);
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, flags, 2, MPI_INT, MPI_MAX, t->comm));
  if (flags[1]) PetscCall(Diverged(t, set, loss, sumsq));
  t->epoch_loss += loss;
  t->step++;
  PetscCall(PetscSNPrintf(line, sizeof(line), "epoch %" PetscInt_FMT " loss %.4g valid %.4g", t->epoch + 1, t->epoch_loss / (t->sstep + 1), t->valid));
  PetscCall(CsProgressUpdate(t->prog, (double)(t->epoch * t->nsteps + t->sstep + 1) * ((double)t->nrows / t->nsteps), line));
  *signalled = (PetscBool)flags[0];
  PetscFunctionReturn(0);
}

/* The steps left in the epoch; *interrupted after a signal (the checkpoint is written). */
static PetscErrorCode TrainEpoch(CsTrainer t, PetscBool *interrupted)
{
  PetscFunctionBeginUser;
  for (; t->sstep < t->nsteps; t->sstep++) {
    PetscBool sig = PETSC_FALSE;
    PetscCall(TrainStep(t, &sig));
    if (sig) {
      t->sstep++;
      PetscCall(CsTrainerCheckpointWrite(t));
      *interrupted = PETSC_TRUE;
      PetscFunctionReturn(0);
    }
  }
  t->sstep = 0;
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* End of an epoch. */

static PetscErrorCode ValidLoss(CsTrainer t, double *loss)
{
  CsNNPass pass = {0};
  PetscInt nsteps;

  PetscFunctionBeginUser;
  *loss = 0;
  if (!t->nvalid) PetscFunctionReturn(0);
  PetscCall(PetscLogEventBegin(CS_EVENT_VALID, 0, 0, 0, 0));
  PetscCall(CsSamplerGetSizes(t->sampler, CS_SAMPLE_VALID, &nsteps, NULL, NULL));
  pass.comm = t->comm, pass.train = PETSC_FALSE, pass.seed = t->seed, pass.nglobal = t->nvalid_rows;
  for (PetscInt s = 0; s < nsteps; s++) {
    double l = 0;
    PetscCall(CsSamplerGetBatch(t->sampler, CS_SAMPLE_VALID, 0, s, 0, 1, &t->b));
    pass.cell = t->b.cell;
    PetscCall(t->cb.loss(t->cb.ctx, &t->b, &pass, &l)); /* normalised by the validation rows: the sum over batches is the mean */
    *loss += l;
  }
  PetscCall(PetscLogEventEnd(CS_EVENT_VALID, 0, 0, 0, 0));
  {
    char a[32];
    CsCheckAll(t->comm, !PetscIsInfOrNanReal(*loss), "%s diverged in epoch %" PetscInt_FMT ": the validation loss is %s; try a lower learning rate (-%slr)",
               t->model, t->epoch + 1, Num(*loss, a), t->opt[0]->prefix);
  }
  PetscFunctionReturn(0);
}

/* Validation, the loss curve, early stopping and the periodic checkpoint. */
static PetscErrorCode EndEpoch(CsTrainer t)
{
  PetscFunctionBeginUser;
  PetscCall(ValidLoss(t, &t->valid));
  if (!t->nvalid) t->valid = t->epoch_loss / t->nsteps; /* nothing held out: follow the training loss */
  t->history[2 * t->epoch] = t->epoch_loss / t->nsteps, t->history[2 * t->epoch + 1] = t->valid;
  t->epoch_loss = 0;
  if (t->valid < t->best) {
    t->best = t->valid, t->best_epoch = t->epoch, t->bad_epochs = 0;
    PetscCall(SaveBest(t));
  } else if (++t->bad_epochs >= t->patience) t->stopped = PETSC_TRUE;
  if (t->checkpoint_every > 0 && (t->epoch + 1) % t->checkpoint_every == 0) {
    t->epoch++; /* the checkpoint continues with the next epoch */
    PetscCall(CsTrainerCheckpointWrite(t));
    t->epoch--;
  }
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* The run. */

static PetscErrorCode HistoryBody(void *ctx, FILE *f)
{
  CsTrainer t = (CsTrainer)ctx;

  PetscFunctionBeginUser;
  fprintf(f, "epoch,train_loss,valid_loss\n");
  for (PetscInt e = 0; e < t->epoch; e++) fprintf(f, "%" PetscInt_FMT ",%.10g,%.10g\n", e + 1, t->history[2 * e], t->history[2 * e + 1]);
  PetscFunctionReturn(0);
}

/* <dir>/training.csv: the loss curve (epoch, mean training loss, validation loss). */
static PetscErrorCode WriteHistory(CsTrainer t)
{
  char path[PETSC_MAX_PATH_LEN];

  PetscFunctionBeginUser;
  if (!t->ckdir[0]) PetscFunctionReturn(0);
  PetscCall(CsPathJoin(t->ckdir, "training.csv", path));
  PetscCall(CsWriteTextRank0(t->comm, path, HistoryBody, t));
  PetscFunctionReturn(0);
}

static PetscErrorCode TrainBegin(CsTrainer t)
{
  PetscFunctionBeginUser;
  PetscCheck(t->nsets > 0 && t->cb.step && t->cb.loss && t->data, t->comm, PETSC_ERR_ORDER, "trainer is not set up");
  for (PetscInt k = 0; k < t->nsets; k++) PetscCheck(t->P[k], t->comm, PETSC_ERR_ORDER, "parameter set %" PetscInt_FMT " has no parameters", k);
  PetscCall(PetscFree(t->history));
  PetscCall(PetscCalloc1(2 * (size_t)t->epochs + 2, &t->history));
  for (PetscInt k = 0; k < t->nsets; k++) t->dirty[k] = PETSC_TRUE;
  t->valid = 0;
  PetscCall(SaveBest(t));
  if (t->resume[0]) PetscCall(CsTrainerCheckpointResume(t));
  CsReleaseFreeMemory(); /* what the models' set-up and the fits before this one freed */
  PetscCall(PetscPrintf(t->comm, "%s: training on %" PetscInt_FMT " cells (%" PetscInt_FMT " validation), %" PetscInt_FMT
                                 " steps of %" PetscInt_FMT " cells per epoch, up to %" PetscInt_FMT " epochs\n",
                        t->model, t->ntrain, t->nvalid, t->nsteps, t->nrows / t->nsteps, t->epochs));
  PetscCall(CsProgressCreate(t->comm, t->model, "cells", (double)t->epochs * t->nrows, &t->prog));
  PetscFunctionReturn(0);
}

static PetscErrorCode TrainEnd(CsTrainer t, PetscBool interrupted)
{
  PetscFunctionBeginUser;
  if (t->sampler->ds) PetscCall(CsDatasetStreamWait(t->sampler->ds)); /* a prefetch of a next epoch that will not come */
  PetscCall(CsProgressDestroy(&t->prog));
  if (interrupted) {
    PetscCall(PetscPrintf(t->comm, "%s: stopped by a signal in epoch %" PetscInt_FMT " after step %lld; checkpoint written to %s "
                                   "(continue with -resume and the same -output_dir folder)\n",
                          t->model, t->epoch + 1, (long long)t->step, t->ckdir));
    PetscFunctionReturn(0);
  }
  PetscCall(RestoreBest(t));
  PetscCall(PetscPrintf(t->comm, "%s: %" PetscInt_FMT " epochs%s, best validation loss %.6g at epoch %" PetscInt_FMT "\n", t->model, t->epoch,
                        t->stopped ? " (early stop)" : "", t->best, t->best_epoch + 1));
  PetscCall(WriteHistory(t));
  PetscFunctionReturn(0);
}

static PetscErrorCode TrainLoop(CsTrainer t, PetscBool *interrupted)
{
  PetscFunctionBeginUser;
  for (; t->epoch < t->epochs && !t->stopped; t->epoch++) {
    PetscCall(TrainEpoch(t, interrupted));
    if (*interrupted) break;
    PetscCall(EndEpoch(t));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsTrainerTrain(CsTrainer t, PetscBool *interrupted)
{
  struct sigaction sa, old_term, old_usr1;
  PetscErrorCode   ierr;

  PetscFunctionBeginUser;
  *interrupted = PETSC_FALSE;
  PetscCall(TrainBegin(t));
  /* Slurm warns with SIGUSR1 (--signal), schedulers and users stop with SIGTERM: finish the step, checkpoint. */
  cs_signal = 0;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, &old_term);
  sigaction(SIGUSR1, &sa, &old_usr1);
  ierr = TrainLoop(t, interrupted);
  sigaction(SIGTERM, &old_term, NULL);
  sigaction(SIGUSR1, &old_usr1, NULL);
  PetscCall(ierr);
  PetscCall(TrainEnd(t, *interrupted));
  PetscFunctionReturn(0);
}

PetscErrorCode CsTrainerDestroy(CsTrainer *t)
{
  PetscFunctionBeginUser;
  if (!*t) PetscFunctionReturn(0);
  for (PetscInt k = 0; k < (*t)->nsets; k++) {
    PetscCall(CsNNOptimDestroy(&(*t)->opt[k]));
    PetscCall(CsNNReducerDestroy(&(*t)->red[k]));
    PetscCall(CsNNFree(&(*t)->best_p[k]));
    PetscCall(CsNNFree(&(*t)->best_buf[k]));
  }
  PetscCall(CsSamplerDestroy(&(*t)->sampler));
  PetscCall(CsBatchFree(&(*t)->b));
  PetscCall(CsProgressDestroy(&(*t)->prog));
  PetscCall(PetscFree((*t)->history));
  PetscCall(PetscFree2((*t)->mtrain, (*t)->mvalid));
  PetscCall(PetscFree(*t));
  PetscFunctionReturn(0);
}
