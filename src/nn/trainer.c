/* CsTrainer: data-parallel minibatch training with validation, early stopping, checkpoints and signals.
   See include/cellshift/trainer.h. */
#include <cellshift/trainer.h>
#include <cellshift/h5util.h>
#include <cellshift/progress.h>
#include <cellshift/rng.h>
#include <signal.h>

#define CS_MAX_SETS 4

struct _n_CsTrainer {
  MPI_Comm           comm;
  char               prefix[64];
  PetscInt           epochs, batch, patience, checkpoint_every;
  double             valid_cells;
  char               resume[PETSC_MAX_PATH_LEN], ckdir[PETSC_MAX_PATH_LEN], model[64];
  PetscInt           nsets;
  CsNNParams         P[CS_MAX_SETS];
  CsNNOptim          opt[CS_MAX_SETS];
  CsNNReducer        red[CS_MAX_SETS];
  float             *best_p[CS_MAX_SETS], *best_buf[CS_MAX_SETS];
  CsTrainerCallbacks cb;
  CsDataset          ds;
  uint64_t           seed;
  PetscInt           ntrain_local, *trainrows, ntrain, trainoff;
  PetscInt           nvalid_local, *validrows, nvalid, validoff;
  uint64_t           cells;  /* fingerprint of the training and validation cells (resume checks it) */
  /* state (what a checkpoint holds besides the parameters) */
  int64_t  step;       /* optimiser steps taken */
  PetscInt epoch;      /* current epoch */
  PetscInt sstep;      /* steps of the current epoch taken */
  PetscInt bad_epochs; /* epochs since the best validation loss */
  PetscInt best_epoch;
  double   best, epoch_loss; /* best validation loss; sum of this epoch's step losses */
  double  *history;          /* [epochs][2]: mean training loss and validation loss of every epoch run */
  PetscBool stopped;   /* early stopping fired */
};

static volatile sig_atomic_t cs_signal = 0;
static void OnSignal(int sig) { cs_signal = sig; }

PetscErrorCode CsTrainerCreate(MPI_Comm comm, CsTrainer *out)
{
  CsTrainer t;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&t));
  t->comm = comm, t->epochs = 100, t->batch = 128, t->patience = 20, t->valid_cells = 0.1;
  t->best = PETSC_INFINITY;
  *out    = t;
  PetscFunctionReturn(0);
}

PetscErrorCode CsTrainerSetOptionsPrefix(CsTrainer t, const char prefix[])
{
  PetscFunctionBeginUser;
  PetscCall(PetscStrncpy(t->prefix, prefix ? prefix : "", sizeof(t->prefix)));
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
  for (PetscInt k = 0; k < t->nsets; k++) PetscCall(CsNNOptimSetFromOptions(t->opt[k]));
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
  PetscCall(PetscMalloc1(P->n, &t->best_p[k]));
  PetscCall(PetscMalloc1(P->nbuf + 1, &t->best_buf[k]));
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
  PetscFunctionBeginUser;
  *batch = t->batch;
  PetscFunctionReturn(0);
}

PetscErrorCode CsTrainerSetCallbacks(CsTrainer t, const CsTrainerCallbacks *cb)
{
  PetscFunctionBeginUser;
  t->cb = *cb;
  PetscFunctionReturn(0);
}

/* The rank's cells of a global index space [0, n): its offset and count (rank order). */
static PetscErrorCode Number(MPI_Comm comm, PetscInt nlocal, PetscInt *n, PetscInt *off)
{
  PetscMPIInt rank;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Allreduce(&nlocal, n, 1, MPIU_INT, MPI_SUM, comm));
  PetscCallMPI(MPI_Exscan(&nlocal, off, 1, MPIU_INT, MPI_SUM, comm));
  if (!rank) *off = 0;
  PetscFunctionReturn(0);
}

PetscErrorCode CsTrainerSetData(CsTrainer t, CsDataset ds, const PetscBool *train, const PetscBool *valid, uint64_t seed)
{
  PetscFunctionBeginUser;
  t->ds = ds, t->seed = seed;
  PetscCall(PetscFree(t->trainrows));
  PetscCall(PetscFree(t->validrows));
  PetscCall(PetscMalloc1(ds->nlocal + 1, &t->trainrows));
  PetscCall(PetscMalloc1(ds->nlocal + 1, &t->validrows));
  t->ntrain_local = t->nvalid_local = 0;
  for (PetscInt i = 0; i < ds->nlocal; i++) {
    /* Without valid cells, a fraction of the training cells is drawn by global cell index (rank-independent). */
    PetscBool v = valid ? valid[i]
                        : (PetscBool)(train[i] && CsRngUniform(seed, CS_STREAM_SAMPLE, (uint64_t)(ds->rstart + i), 1) < t->valid_cells);
    if (v) t->validrows[t->nvalid_local++] = i;
    else if (train[i]) t->trainrows[t->ntrain_local++] = i;
  }
  PetscCall(Number(t->comm, t->ntrain_local, &t->ntrain, &t->trainoff));
  PetscCall(Number(t->comm, t->nvalid_local, &t->nvalid, &t->validoff));
  {
    /* An order-free fingerprint of which cells train and validate: a resumed run must see the same ones. */
    uint64_t h = 0;
    for (PetscInt k = 0; k < t->ntrain_local; k++) {
      uint32_t r[4];
      CsRng4(0, CS_STREAM_SAMPLE, (uint64_t)(ds->rstart + t->trainrows[k]), 2, r);
      h += ((uint64_t)r[1] << 32) | r[0];
    }
    for (PetscInt k = 0; k < t->nvalid_local; k++) {
      uint32_t r[4];
      CsRng4(0, CS_STREAM_SAMPLE, (uint64_t)(ds->rstart + t->validrows[k]), 3, r);
      h += ((uint64_t)r[1] << 32) | r[0];
    }
    PetscCallMPI(MPI_Allreduce(&h, &t->cells, 1, MPI_UINT64_T, MPI_SUM, t->comm));
  }
  CsCheckAll(t->comm, t->ntrain >= 2, "training needs at least 2 cells (has %" PetscInt_FMT ")", t->ntrain);
  PetscFunctionReturn(0);
}

PetscErrorCode CsTrainerSetCheckpointDir(CsTrainer t, const char dir[], const char model[])
{
  PetscFunctionBeginUser;
  PetscCall(PetscStrncpy(t->ckdir, dir, sizeof(t->ckdir)));
  PetscCall(PetscStrncpy(t->model, model, sizeof(t->model)));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------------------------------------------------------- */

PetscErrorCode CsBatchFromRows(CsDataset ds, PetscInt n, const PetscInt *rows, CsBatch *b)
{
  int64_t nnz = 0;

  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < n; k++) nnz += ds->X.indptr[rows[k] + 1] - ds->X.indptr[rows[k]];
  b->n = n, b->X.nrows = n, b->X.ncols = ds->ngenes;
  PetscCall(PetscRealloc(sizeof(int64_t) * (n + 1), &b->X.indptr));
  PetscCall(PetscRealloc(sizeof(int32_t) * (nnz + 1), &b->X.indices));
  PetscCall(PetscRealloc(sizeof(float) * (nnz + 1), &b->X.data));
  PetscCall(PetscRealloc(sizeof(PetscInt) * (n + 1), &b->local));
  PetscCall(PetscRealloc(sizeof(int64_t) * (n + 1), &b->cell));
  b->X.indptr[0] = 0;
  for (PetscInt k = 0; k < n; k++) {
    int64_t a = ds->X.indptr[rows[k]], len = ds->X.indptr[rows[k] + 1] - a, at = b->X.indptr[k];
    memcpy(b->X.indices + at, ds->X.indices + a, sizeof(int32_t) * (size_t)len);
    memcpy(b->X.data + at, ds->X.data + a, sizeof(float) * (size_t)len);
    b->X.indptr[k + 1] = at + len;
    b->local[k]        = rows[k];
    b->cell[k]         = ds->rstart + rows[k];
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsBatchFree(CsBatch *b)
{
  PetscFunctionBeginUser;
  PetscCall(CsCSRFree(&b->X));
  PetscCall(PetscFree(b->local));
  PetscCall(PetscFree(b->cell));
  b->n = 0;
  PetscFunctionReturn(0);
}

/* The rank's rows of global batch positions [p0, p1) of epoch `epoch` (perm NULL: identity order). */
static PetscErrorCode GatherBatch(CsTrainer t, const CsPerm *perm, PetscInt p0, PetscInt p1, const PetscInt *rows, PetscInt off,
                                  PetscInt nloc, PetscInt *tmp, CsBatch *b)
{
  PetscInt n = 0;

  PetscFunctionBeginUser;
  for (PetscInt p = p0; p < p1; p++) {
    PetscInt idx = perm ? (PetscInt)CsPermApply(perm, (uint64_t)p) : p;
    if (idx >= off && idx < off + nloc) tmp[n++] = rows[idx - off];
  }
  PetscCall(CsBatchFromRows(t->ds, n, tmp, b));
  b->nglobal = p1 - p0;
  PetscFunctionReturn(0);
}

static PetscErrorCode ValidLoss(CsTrainer t, CsBatch *b, PetscInt *tmp, double *loss)
{
  CsNNPass pass = {0};

  PetscFunctionBeginUser;
  *loss = 0;
  if (!t->nvalid) PetscFunctionReturn(0);
  PetscCall(PetscLogEventBegin(CS_EVENT_VALID, 0, 0, 0, 0));
  pass.comm = t->comm, pass.train = PETSC_FALSE, pass.seed = t->seed, pass.nglobal = t->nvalid;
  for (PetscInt p0 = 0; p0 < t->nvalid; p0 += t->batch) {
    PetscInt p1 = PetscMin(p0 + t->batch, t->nvalid);
    double   l  = 0;
    PetscCall(GatherBatch(t, NULL, p0, p1, t->validrows, t->validoff, t->nvalid_local, tmp, b));
    pass.cell = b->cell;
    PetscCall(t->cb.loss(t->cb.ctx, b, &pass, &l)); /* normalised by nvalid: the sum over batches is the mean */
    *loss += l;
  }
  PetscCall(PetscLogEventEnd(CS_EVENT_VALID, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Checkpoints. */

static PetscErrorCode CheckpointPath(const char dir[], const char model[], char path[])
{
  char sub[PETSC_MAX_PATH_LEN];

  PetscFunctionBeginUser;
  PetscCall(CsPathJoin(dir, model, sub));
  PetscCall(CsPathJoin(sub, "checkpoint.h5", path));
  PetscFunctionReturn(0);
}

static PetscErrorCode SaveBest(CsTrainer t)
{
  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < t->nsets; k++) {
    PetscCall(PetscArraycpy(t->best_p[k], t->P[k]->p, t->P[k]->n));
    if (t->P[k]->nbuf) PetscCall(PetscArraycpy(t->best_buf[k], t->P[k]->buf, t->P[k]->nbuf));
  }
  PetscFunctionReturn(0);
}

/* Write or read the best copy of set k through the parameter save/load of nn.h (it works on P->p and P->buf). */
static PetscErrorCode SwapBest(CsTrainer t, PetscInt k)
{
  float *p = t->P[k]->p, *b = t->P[k]->buf;

  PetscFunctionBeginUser;
  t->P[k]->p = t->best_p[k], t->P[k]->buf = t->best_buf[k];
  t->best_p[k] = p, t->best_buf[k] = b;
  PetscFunctionReturn(0);
}

static PetscErrorCode WriteState(void *ctx, const char path[])
{
  CsTrainer t = (CsTrainer)ctx;
  hid_t f, g, s;
  char  name[32];

  PetscFunctionBeginUser;
  H5Call(f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "cannot create %s", path);
  PetscCall(CsH5WriteAttrString(f, "cellshift_checkpoint", t->model));
  PetscCall(CsH5WriteAttrInt64(f, "step", t->step));
  PetscCall(CsH5WriteAttrInt64(f, "epoch", t->epoch));
  PetscCall(CsH5WriteAttrInt64(f, "sstep", t->sstep));
  PetscCall(CsH5WriteAttrInt64(f, "bad_epochs", t->bad_epochs));
  PetscCall(CsH5WriteAttrInt64(f, "best_epoch", t->best_epoch));
  PetscCall(CsH5WriteAttrInt64(f, "stopped", t->stopped));
  PetscCall(CsH5WriteAttrInt64(f, "seed", (int64_t)t->seed));
  PetscCall(CsH5WriteAttrInt64(f, "cells", (int64_t)t->cells));
  {
    hsize_t one = 2;
    double  v[2] = {t->best, t->epoch_loss};
    PetscCall(CsH5WriteArray(f, "losses", H5T_NATIVE_DOUBLE, 1, &one, v));
  }
  if (t->epoch > 0) {
    hsize_t dims[2] = {(hsize_t)t->epoch, 2};
    PetscCall(CsH5WriteArray(f, "history", H5T_NATIVE_DOUBLE, 2, dims, t->history));
  }
  {
    char *all;
    PetscCall(PetscOptionsGetAll(NULL, &all));
    PetscCall(CsH5WriteAttrString(f, "options", all));
    PetscCall(PetscFree(all));
  }
  for (PetscInt k = 0; k < t->nsets; k++) {
    PetscCall(PetscSNPrintf(name, sizeof(name), "set%" PetscInt_FMT, k));
    H5Call(g = H5Gcreate2(f, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "cannot create %s", name);
    H5Call(s = H5Gcreate2(g, "params", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "cannot create params");
    PetscCall(CsNNParamsSave(t->P[k], s));
    H5Gclose(s);
    H5Call(s = H5Gcreate2(g, "optim", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "cannot create optim");
    PetscCall(CsNNOptimSave(t->opt[k], t->P[k], s));
    H5Gclose(s);
    H5Call(s = H5Gcreate2(g, "best", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "cannot create best");
    PetscCall(SwapBest(t, k));
    PetscCall(CsNNParamsSave(t->P[k], s));
    PetscCall(SwapBest(t, k));
    H5Gclose(s);
    H5Gclose(g);
  }
  H5Call(H5Fclose(f), "cannot close %s", path);
  PetscFunctionReturn(0);
}

static PetscErrorCode Checkpoint(CsTrainer t)
{
  char path[PETSC_MAX_PATH_LEN];

  PetscFunctionBeginUser;
  PetscCall(PetscLogEventBegin(CS_EVENT_WRITE, 0, 0, 0, 0));
  for (PetscInt k = 0; k < t->nsets; k++) PetscCall(CsNNOptimGather(t->opt[k])); /* sharded moments complete on rank 0 */
  PetscCall(CsPathJoin(t->ckdir, "checkpoint.h5", path));
  PetscCall(CsMakeDir(t->comm, t->ckdir));
  PetscCall(CsWriteFileRank0(t->comm, path, WriteState, t));
  PetscCall(PetscLogEventEnd(CS_EVENT_WRITE, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

static PetscErrorCode ReadState(CsTrainer t, const char path[])
{
  hid_t   f, g, s;
  char    name[32];
  int64_t v;
  hsize_t two = 2;
  double  l[2];

  PetscFunctionBeginUser;
  H5Call(f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), "cannot open checkpoint %s", path);
  PetscCall(CsH5ReadAttrInt64(f, "step", &t->step));
  PetscCall(CsH5ReadAttrInt64(f, "epoch", &v));
  t->epoch = (PetscInt)v;
  PetscCall(CsH5ReadAttrInt64(f, "sstep", &v));
  t->sstep = (PetscInt)v;
  PetscCall(CsH5ReadAttrInt64(f, "bad_epochs", &v));
  t->bad_epochs = (PetscInt)v;
  PetscCall(CsH5ReadAttrInt64(f, "best_epoch", &v));
  t->best_epoch = (PetscInt)v;
  PetscCall(CsH5ReadAttrInt64(f, "stopped", &v));
  t->stopped = v ? PETSC_TRUE : PETSC_FALSE;
  PetscCall(CsH5ReadAttrInt64(f, "seed", &v));
  PetscCheck((uint64_t)v == t->seed, PETSC_COMM_SELF, CS_ERR_INPUT, "%s was written with -model_seed %lld, not %llu", path, (long long)v,
             (unsigned long long)t->seed);
  PetscCall(CsH5ReadAttrInt64(f, "cells", &v));
  PetscCheck((uint64_t)v == t->cells, PETSC_COMM_SELF, CS_ERR_INPUT,
             "%s was written for other training or validation cells (other data, split or options)", path);
  PetscCall(CsH5ReadArray(f, path, "losses", H5T_NATIVE_DOUBLE, 1, &two, l));
  t->best = l[0], t->epoch_loss = l[1];
  PetscCheck(t->epoch <= t->epochs, PETSC_COMM_SELF, CS_ERR_INPUT, "%s is at epoch %" PetscInt_FMT ", beyond -epochs %" PetscInt_FMT, path,
             t->epoch, t->epochs);
  if (t->epoch > 0) {
    hsize_t dims[2] = {(hsize_t)t->epoch, 2};
    PetscCall(CsH5ReadArray(f, path, "history", H5T_NATIVE_DOUBLE, 2, dims, t->history));
  }
  for (PetscInt k = 0; k < t->nsets; k++) {
    PetscCall(PetscSNPrintf(name, sizeof(name), "set%" PetscInt_FMT, k));
    H5Call(g = H5Gopen2(f, name, H5P_DEFAULT), "%s: no %s", path, name);
    H5Call(s = H5Gopen2(g, "params", H5P_DEFAULT), "%s: no params", path);
    PetscCall(CsNNParamsLoad(t->P[k], s, path));
    H5Gclose(s);
    H5Call(s = H5Gopen2(g, "optim", H5P_DEFAULT), "%s: no optim", path);
    PetscCall(CsNNOptimLoad(t->opt[k], t->P[k], s, path));
    H5Gclose(s);
    H5Call(s = H5Gopen2(g, "best", H5P_DEFAULT), "%s: no best", path);
    PetscCall(SwapBest(t, k));
    PetscCall(CsNNParamsLoad(t->P[k], s, path));
    PetscCall(SwapBest(t, k));
    H5Gclose(s);
    H5Gclose(g);
  }
  H5Fclose(f);
  PetscFunctionReturn(0);
}

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

static PetscErrorCode Resume(CsTrainer t)
{
  char           path[PETSC_MAX_PATH_LEN];
  PetscBool      exists;
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  PetscCall(CheckpointPath(t->resume, t->model, path));
  PetscCall(CsFileExists(t->comm, path, &exists));
  CsCheckAll(t->comm, exists, "-resume %s: no checkpoint at %s", t->resume, path);
  ierr = ReadState(t, path);
  PetscCall(CsAgreeCode(t->comm, ierr, "cannot resume"));
  PetscCall(PetscPrintf(t->comm, "%s: resumed from %s in epoch %" PetscInt_FMT " after step %lld\n", t->model, path, t->epoch + 1, (long long)t->step));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------------------------------------------------------- */

PetscErrorCode CsTrainerTrain(CsTrainer t, PetscBool *interrupted)
{
  CsBatch          b = {0};
  PetscInt        *tmp, nsteps = PetscMax(1, t->ntrain / t->batch);
  CsProgress       prog;
  struct sigaction sa, old_term, old_usr1;
  char             line[256];
  double           valid = 0;
  PetscBool        dirty[CS_MAX_SETS] = {PETSC_TRUE, PETSC_TRUE, PETSC_TRUE, PETSC_TRUE};

  PetscFunctionBeginUser;
  PetscCheck(t->nsets > 0 && t->cb.step && t->cb.loss && t->ds, t->comm, PETSC_ERR_ORDER, "trainer is not set up");
  for (PetscInt k = 0; k < t->nsets; k++) PetscCheck(t->P[k], t->comm, PETSC_ERR_ORDER, "parameter set %" PetscInt_FMT " has no parameters", k);
  *interrupted = PETSC_FALSE;
  PetscCall(PetscMalloc1(PetscMax(t->batch, 1) + 1, &tmp));
  PetscCall(PetscFree(t->history));
  PetscCall(PetscCalloc1(2 * (size_t)t->epochs + 2, &t->history));
  PetscCall(SaveBest(t));
  if (t->resume[0]) PetscCall(Resume(t));
  /* Slurm warns with SIGUSR1 (--signal), schedulers and users stop with SIGTERM: finish the step, checkpoint. */
  cs_signal = 0;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, &old_term);
  sigaction(SIGUSR1, &sa, &old_usr1);
  PetscCall(PetscPrintf(t->comm, "%s: training on %" PetscInt_FMT " cells (%" PetscInt_FMT " validation), %" PetscInt_FMT
                                 " steps of %" PetscInt_FMT " cells per epoch, up to %" PetscInt_FMT " epochs\n",
                        t->model, t->ntrain, t->nvalid, nsteps, PetscMin(t->batch, t->ntrain), t->epochs));
  PetscCall(CsProgressCreate(t->comm, t->model, "cells", (double)t->epochs * nsteps * PetscMin(t->batch, t->ntrain), &prog));
  for (; t->epoch < t->epochs && !t->stopped; t->epoch++) {
    CsPerm perm;
    CsPermInit(&perm, (uint64_t)t->ntrain, t->seed, CS_STREAM_SHUFFLE, (uint64_t)t->epoch);
    for (; t->sstep < nsteps; t->sstep++) {
      PetscInt p0 = t->sstep * t->batch, p1 = p0 + t->batch, set = 0;
      CsNNPass pass = {0};
      double   loss = 0;
      int      sig  = cs_signal != 0;
      PetscCall(GatherBatch(t, &perm, p0, PetscMin(p1, t->ntrain), t->trainrows, t->trainoff, t->ntrain_local, tmp, &b));
      pass.comm = t->comm, pass.train = PETSC_TRUE, pass.nglobal = b.nglobal, pass.seed = t->seed, pass.step = (uint64_t)t->step;
      pass.cell = b.cell;
      /* The optimiser step leaves its set's gradient zeroed; the other sets may hold gradients of the last step. */
      for (PetscInt k = 0; k < t->nsets; k++)
        if (dirty[k]) PetscCall(CsNNParamsZeroGrad(t->P[k]));
      PetscCall(t->cb.step(t->cb.ctx, &b, &pass, &set, &loss));
      PetscCheck(set >= 0 && set < t->nsets, t->comm, PETSC_ERR_PLIB, "step callback chose parameter set %" PetscInt_FMT, set);
      PetscCall(CsNNReducerBegin(t->red[set]));
      PetscCall(CsNNReducerEnd(t->red[set]));
      PetscCall(PetscLogEventBegin(CS_EVENT_OPTIM, 0, 0, 0, 0));
      PetscCall(CsNNOptimStep(t->opt[set], t->P[set]));
      for (PetscInt k = 0; k < t->nsets; k++) dirty[k] = k != set;
      PetscCall(PetscLogEventEnd(CS_EVENT_OPTIM, 0, 0, 0, 0));
      /* One small reduction per step: was any rank signalled? (a signal reaches the ranks at different times) */
      PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &sig, 1, MPI_INT, MPI_MAX, t->comm));
      t->epoch_loss += loss;
      t->step++;
      PetscCall(PetscSNPrintf(line, sizeof(line), "epoch %" PetscInt_FMT " loss %.4g valid %.4g", t->epoch + 1, t->epoch_loss / (t->sstep + 1),
                              valid));
      PetscCall(CsProgressUpdate(prog, (double)(t->epoch * nsteps + t->sstep + 1) * PetscMin(t->batch, t->ntrain), line));
      if (sig) {
        t->sstep++;
        PetscCall(Checkpoint(t));
        *interrupted = PETSC_TRUE;
        break;
      }
    }
    if (*interrupted) break;
    t->sstep = 0;
    PetscCall(ValidLoss(t, &b, tmp, &valid));
    if (!t->nvalid) valid = t->epoch_loss / nsteps; /* nothing held out: follow the training loss */
    t->history[2 * t->epoch] = t->epoch_loss / nsteps, t->history[2 * t->epoch + 1] = valid;
    t->epoch_loss = 0;
    if (valid < t->best) {
      t->best = valid, t->best_epoch = t->epoch, t->bad_epochs = 0;
      PetscCall(SaveBest(t));
    } else if (++t->bad_epochs >= t->patience) t->stopped = PETSC_TRUE;
    if (t->checkpoint_every > 0 && (t->epoch + 1) % t->checkpoint_every == 0) {
      t->epoch++;
      PetscCall(Checkpoint(t));
      t->epoch--;
    }
  }
  PetscCall(CsProgressDestroy(&prog));
  sigaction(SIGTERM, &old_term, NULL);
  sigaction(SIGUSR1, &old_usr1, NULL);
  if (*interrupted)
    PetscCall(PetscPrintf(t->comm, "%s: stopped by a signal in epoch %" PetscInt_FMT " after step %lld; checkpoint written to %s "
                                   "(continue with -resume and the same -output_dir folder)\n",
                          t->model, t->epoch + 1, (long long)t->step, t->ckdir));
  if (!*interrupted) {
    for (PetscInt k = 0; k < t->nsets; k++) PetscCall(SwapBest(t, k)); /* the best epoch's parameters */
    for (PetscInt k = 0; k < t->nsets; k++) {
      PetscCall(PetscArraycpy(t->best_p[k], t->P[k]->p, t->P[k]->n)); /* keep both copies equal */
      if (t->P[k]->nbuf) PetscCall(PetscArraycpy(t->best_buf[k], t->P[k]->buf, t->P[k]->nbuf));
    }
    PetscCall(PetscPrintf(t->comm, "%s: %" PetscInt_FMT " epochs%s, best validation loss %.6g at epoch %" PetscInt_FMT "\n", t->model,
                          t->epoch, t->stopped ? " (early stop)" : "", t->best, t->best_epoch + 1));
    PetscCall(WriteHistory(t));
  }
  PetscCall(CsBatchFree(&b));
  PetscCall(PetscFree(tmp));
  PetscFunctionReturn(0);
}

PetscErrorCode CsTrainerGetResult(CsTrainer t, double *best_valid, PetscInt *epochs)
{
  PetscFunctionBeginUser;
  if (best_valid) *best_valid = t->best;
  if (epochs) *epochs = t->epoch;
  PetscFunctionReturn(0);
}

PetscErrorCode CsTrainerDestroy(CsTrainer *t)
{
  PetscFunctionBeginUser;
  if (!*t) PetscFunctionReturn(0);
  for (PetscInt k = 0; k < (*t)->nsets; k++) {
    PetscCall(CsNNOptimDestroy(&(*t)->opt[k]));
    PetscCall(CsNNReducerDestroy(&(*t)->red[k]));
    PetscCall(PetscFree((*t)->best_p[k]));
    PetscCall(PetscFree((*t)->best_buf[k]));
  }
  PetscCall(PetscFree((*t)->history));
  PetscCall(PetscFree((*t)->trainrows));
  PetscCall(PetscFree((*t)->validrows));
  PetscCall(PetscFree(*t));
  PetscFunctionReturn(0);
}
