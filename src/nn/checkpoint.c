/* The trainer's checkpoint format (<dir>/checkpoint.h5) and the checks a resumed run makes on it. See
   include/cellshift/trainer.h.

   Layout: attributes cellshift_checkpoint (the model's name), model_type, sampler, step, epoch, sstep, bad_epochs,
   best_epoch, stopped, seed, cells, options; datasets losses [2] (best validation loss, this epoch's loss sum) and
   history [epoch, 2]; per parameter set k a group set<k> with params (parameters, buffers and frozen tensors),
   optim (Adam's m and v of the trained tensors, attribute step) and best (the best epoch's parameters). */
#include "trainerimpl.h"
#include <cellshift/h5util.h>

static PetscErrorCode CheckpointPath(const char dir[], const char model[], char path[])
{
  char sub[PETSC_MAX_PATH_LEN];

  PetscFunctionBeginUser;
  PetscCall(CsPathJoin(dir, model, sub));
  PetscCall(CsPathJoin(sub, "checkpoint.h5", path));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Writing. */

static PetscErrorCode WriteCounters(CsTrainer t, hid_t f)
{
  CsSamplerType sampler;
  char         *all;
  hsize_t       two = 2;
  double        v[2] = {t->best, t->epoch_loss};

  PetscFunctionBeginUser;
  PetscCall(CsSamplerGetType(t->sampler, &sampler));
  PetscCall(CsH5WriteAttrFixedString(f, "cellshift_checkpoint", t->model));
  PetscCall(CsH5WriteAttrFixedString(f, "model_type", t->type));
  PetscCall(CsH5WriteAttrFixedString(f, "sampler", sampler));
  PetscCall(CsH5WriteAttrInt64(f, "step", t->step));
  PetscCall(CsH5WriteAttrInt64(f, "epoch", t->epoch));
  PetscCall(CsH5WriteAttrInt64(f, "sstep", t->sstep));
  PetscCall(CsH5WriteAttrInt64(f, "bad_epochs", t->bad_epochs));
  PetscCall(CsH5WriteAttrInt64(f, "best_epoch", t->best_epoch));
  PetscCall(CsH5WriteAttrInt64(f, "stopped", t->stopped));
  PetscCall(CsH5WriteAttrInt64(f, "seed", (int64_t)t->seed));
  PetscCall(CsH5WriteAttrInt64(f, "cells", (int64_t)t->cells));
  PetscCall(CsH5WriteArray(f, "losses", H5T_NATIVE_DOUBLE, 1, &two, v));
  if (t->epoch > 0) {
    hsize_t dims[2] = {(hsize_t)t->epoch, 2};
    PetscCall(CsH5WriteArray(f, "history", H5T_NATIVE_DOUBLE, 2, dims, t->history));
  }
  PetscCall(PetscOptionsGetAll(NULL, &all));
  PetscCall(CsH5WriteAttrFixedString(f, "options", all));
  PetscCall(PetscFree(all));
  PetscFunctionReturn(0);
}

static PetscErrorCode WriteSet(CsTrainer t, hid_t f, PetscInt k)
{
  hid_t g, s;
  char  name[32];

  PetscFunctionBeginUser;
  PetscCall(PetscSNPrintf(name, sizeof(name), "set%" PetscInt_FMT, k));
  H5Call(g = H5Gcreate2(f, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "cannot create %s", name);
  H5Call(s = H5Gcreate2(g, "params", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "cannot create %s/params", name);
  PetscCall(CsNNParamsSave(t->P[k], s));
  H5Call(H5Gclose(s), "cannot close %s/params", name);
  H5Call(s = H5Gcreate2(g, "optim", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "cannot create %s/optim", name);
  PetscCall(CsNNOptimSave(t->opt[k], t->P[k], s));
  H5Call(H5Gclose(s), "cannot close %s/optim", name);
  H5Call(s = H5Gcreate2(g, "best", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "cannot create %s/best", name);
  CsTrainerSwapBest(t, k);
  PetscCall(CsNNParamsSave(t->P[k], s));
  CsTrainerSwapBest(t, k);
  H5Call(H5Gclose(s), "cannot close %s/best", name);
  H5Call(H5Gclose(g), "cannot close %s", name);
  PetscFunctionReturn(0);
}

static PetscErrorCode WriteState(void *ctx, const char path[])
{
  CsTrainer t = (CsTrainer)ctx;
  hid_t     f;

  PetscFunctionBeginUser;
  H5Call(f = CsH5CreateChecksummed(path), "cannot create %s", path);
  PetscCall(WriteCounters(t, f));
  for (PetscInt k = 0; k < t->nsets; k++) PetscCall(WriteSet(t, f, k));
  H5Call(H5Fclose(f), "cannot close %s", path);
  PetscFunctionReturn(0);
}

PetscErrorCode CsTrainerCheckpointWrite(CsTrainer t)
{
  char path[PETSC_MAX_PATH_LEN];

  PetscFunctionBeginUser;
  if (t->sampler->ds) PetscCall(CsDatasetStreamWait(t->sampler->ds)); /* HDF5 is used by one thread at a time */
  PetscCall(PetscLogEventBegin(CS_EVENT_WRITE, 0, 0, 0, 0));
  for (PetscInt k = 0; k < t->nsets; k++) PetscCall(CsNNOptimGather(t->opt[k])); /* sharded moments complete on rank 0 */
  PetscCall(CsPathJoin(t->ckdir, "checkpoint.h5", path));
  PetscCall(CsMakeDir(t->comm, t->ckdir));
  PetscCall(CsWriteFileRank0(t->comm, path, WriteState, t));
  PetscCall(PetscLogEventEnd(CS_EVENT_WRITE, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Reading: nothing of the file is used before it is checked against the run. */

typedef struct {
  int64_t step, epoch, sstep, bad_epochs, best_epoch, stopped, seed, cells;
} Counters;

/* Whose checkpoint it is: a cellshift checkpoint of this model type, written with this sampler, seed and cells. */
static PetscErrorCode CheckOwner(CsTrainer t, hid_t f, const char path[], const Counters *c)
{
  char          buf[256];
  PetscBool     found, same;
  CsSamplerType sampler;

  PetscFunctionBeginUser;
  PetscCall(CsH5ReadAttrFixedString(f, path, "cellshift_checkpoint", buf, sizeof(buf), &found));
  PetscCheck(found, PETSC_COMM_SELF, CS_ERR_INPUT, "%s is not a cellshift checkpoint", path);
  PetscCall(CsH5ReadAttrFixedString(f, path, "model_type", buf, sizeof(buf), &found));
  PetscCheck(found, PETSC_COMM_SELF, CS_ERR_INPUT, "%s does not say which model wrote it (an older cellshift): train again without -resume", path);
  PetscCall(PetscStrcmp(buf, t->type, &same));
  PetscCheck(same, PETSC_COMM_SELF, CS_ERR_INPUT, "%s was written by a %s model, not %s", path, buf, t->type);
  PetscCall(CsH5ReadAttrFixedString(f, path, "sampler", buf, sizeof(buf), &found));
  PetscCall(CsSamplerGetType(t->sampler, &sampler));
  PetscCall(PetscStrcmp(buf, sampler, &same));
  PetscCheck(found && same, PETSC_COMM_SELF, CS_ERR_INPUT, "%s was written with the %s sampler, not %s (-%ssampler_type)", path, found ? buf : "(no)",
             sampler, t->prefix);
  PetscCheck((uint64_t)c->seed == t->seed, PETSC_COMM_SELF, CS_ERR_INPUT, "%s was written with -model_seed %lld, not %llu", path,
             (long long)c->seed, (unsigned long long)t->seed);
  PetscCheck((uint64_t)c->cells == t->cells, PETSC_COMM_SELF, CS_ERR_INPUT,
             "%s was written for other training or validation cells (other data, split or options)", path);
  PetscFunctionReturn(0);
}

static PetscErrorCode ReadCounters(hid_t f, Counters *c)
{
  PetscFunctionBeginUser;
  PetscCall(CsH5ReadAttrInt64(f, "step", &c->step));
  PetscCall(CsH5ReadAttrInt64(f, "epoch", &c->epoch));
  PetscCall(CsH5ReadAttrInt64(f, "sstep", &c->sstep));
  PetscCall(CsH5ReadAttrInt64(f, "bad_epochs", &c->bad_epochs));
  PetscCall(CsH5ReadAttrInt64(f, "best_epoch", &c->best_epoch));
  PetscCall(CsH5ReadAttrInt64(f, "stopped", &c->stopped));
  PetscCall(CsH5ReadAttrInt64(f, "seed", &c->seed));
  PetscCall(CsH5ReadAttrInt64(f, "cells", &c->cells));
  PetscFunctionReturn(0);
}

/* The counters within range and consistent with each other and with this run's steps per epoch. */
static PetscErrorCode CheckCounters(CsTrainer t, const char path[], const Counters *c)
{
  PetscFunctionBeginUser;
  PetscCheck(c->epoch >= 0 && c->epoch <= t->epochs, PETSC_COMM_SELF, CS_ERR_INPUT, "%s is at epoch %lld, outside [0, %" PetscInt_FMT "] (-%sepochs)",
             path, (long long)c->epoch, t->epochs, t->prefix);
  PetscCheck(c->sstep >= 0 && c->sstep <= t->nsteps && (c->epoch < t->epochs || c->sstep == 0), PETSC_COMM_SELF, CS_ERR_INPUT,
             "%s is at step %lld of epoch %lld, outside the %" PetscInt_FMT " steps of an epoch", path, (long long)c->sstep,
             (long long)c->epoch + 1, t->nsteps);
  PetscCheck(c->step == c->epoch * t->nsteps + c->sstep, PETSC_COMM_SELF, CS_ERR_INPUT,
             "%s has taken %lld steps, not epoch %lld x %" PetscInt_FMT " steps per epoch + %lld (written with another -%sbatch_size or sampler?)",
             path, (long long)c->step, (long long)c->epoch, t->nsteps, (long long)c->sstep, t->prefix);
  PetscCheck(c->epoch == 0 ? c->best_epoch == 0 : c->best_epoch >= 0 && c->best_epoch < c->epoch, PETSC_COMM_SELF, CS_ERR_INPUT,
             "%s has best epoch %lld, not one of the %lld epochs run", path, (long long)c->best_epoch + 1, (long long)c->epoch);
  PetscCheck(c->bad_epochs >= 0 && c->bad_epochs <= c->epoch, PETSC_COMM_SELF, CS_ERR_INPUT,
             "%s counts %lld epochs without improvement in %lld epochs", path, (long long)c->bad_epochs, (long long)c->epoch);
  PetscCheck(c->stopped == 0 || c->stopped == 1, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: stopped is %lld, not 0 or 1", path, (long long)c->stopped);
  PetscFunctionReturn(0);
}

/* The losses and the loss curve, finite, the best validation loss that of the best epoch. */
static PetscErrorCode ReadLosses(CsTrainer t, hid_t f, const char path[], const Counters *c)
{
  hsize_t two = 2;
  double  l[2];

  PetscFunctionBeginUser;
  PetscCall(CsH5ReadArray(f, path, "losses", H5T_NATIVE_DOUBLE, 1, &two, l));
  PetscCheck(!PetscIsInfOrNanReal(l[1]) && (c->epoch == 0 || !PetscIsInfOrNanReal(l[0])), PETSC_COMM_SELF, CS_ERR_INPUT,
             "checkpoint %s holds a non-finite value in losses", path);
  if (c->epoch > 0) {
    hsize_t dims[2] = {(hsize_t)c->epoch, 2};
    PetscCall(CsH5ReadArrayFinite(f, path, "history", H5T_NATIVE_DOUBLE, 2, dims, t->history));
    PetscCheck(t->history[2 * c->best_epoch + 1] == l[0], PETSC_COMM_SELF, CS_ERR_INPUT,
               "%s: the best validation loss %g is not that of its best epoch %lld (%g)", path, l[0], (long long)c->best_epoch + 1,
               t->history[2 * c->best_epoch + 1]);
  }
  t->best = l[0], t->epoch_loss = l[1];
  PetscFunctionReturn(0);
}

/* Parameters, moments and best parameters of set k; the loads refuse non-finite values, naming the group. */
static PetscErrorCode ReadSet(CsTrainer t, hid_t f, const char path[], PetscInt k)
{
  hid_t g, s;
  char  name[32], what[PETSC_MAX_PATH_LEN + 64];

  PetscFunctionBeginUser;
  PetscCall(PetscSNPrintf(name, sizeof(name), "set%" PetscInt_FMT, k));
  H5Call(g = H5Gopen2(f, name, H5P_DEFAULT), "%s: no %s", path, name);
  H5Call(s = H5Gopen2(g, "params", H5P_DEFAULT), "%s: no %s/params", path, name);
  PetscCall(PetscSNPrintf(what, sizeof(what), "checkpoint %s (%s/params)", path, name));
  PetscCall(CsNNParamsLoad(t->P[k], s, what));
  H5Call(H5Gclose(s), "%s: cannot close %s/params", path, name);
  H5Call(s = H5Gopen2(g, "optim", H5P_DEFAULT), "%s: no %s/optim", path, name);
  PetscCall(PetscSNPrintf(what, sizeof(what), "checkpoint %s (%s/optim)", path, name));
  PetscCall(CsNNOptimLoad(t->opt[k], t->P[k], s, what));
  H5Call(H5Gclose(s), "%s: cannot close %s/optim", path, name);
  H5Call(s = H5Gopen2(g, "best", H5P_DEFAULT), "%s: no %s/best", path, name);
  PetscCall(PetscSNPrintf(what, sizeof(what), "checkpoint %s (%s/best)", path, name));
  CsTrainerSwapBest(t, k);
  PetscCall(CsNNParamsLoad(t->P[k], s, what));
  CsTrainerSwapBest(t, k);
  H5Call(H5Gclose(s), "%s: cannot close %s/best", path, name);
  H5Call(H5Gclose(g), "%s: cannot close %s", path, name);
  PetscFunctionReturn(0);
}

static PetscErrorCode ReadFile(CsTrainer t, hid_t f, const char path[])
{
  Counters c;
  int64_t  steps = 0;

  PetscFunctionBeginUser;
  PetscCall(ReadCounters(f, &c));
  PetscCall(CheckOwner(t, f, path, &c));
  PetscCall(CheckCounters(t, path, &c));
  PetscCall(ReadLosses(t, f, path, &c));
  t->step = c.step, t->epoch = (PetscInt)c.epoch, t->sstep = (PetscInt)c.sstep, t->bad_epochs = (PetscInt)c.bad_epochs;
  t->best_epoch = (PetscInt)c.best_epoch, t->stopped = c.stopped ? PETSC_TRUE : PETSC_FALSE;
  for (PetscInt k = 0; k < t->nsets; k++) {
    PetscCall(ReadSet(t, f, path, k));
    steps += t->opt[k]->t;
  }
  /* Every step steps one optimiser. */
  PetscCheck(steps == t->step, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: the optimisers took %lld steps, the trainer %lld", path, (long long)steps,
             (long long)t->step);
  PetscFunctionReturn(0);
}

static PetscErrorCode ReadState(CsTrainer t, const char path[])
{
  hid_t          f;
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  PetscCall(CsH5OpenChecksummed(path, "checkpoint", &f));
  ierr = ReadFile(t, f, path);
  H5Call(H5Fclose(f), "cannot close %s", path);
  PetscCall(ierr);
  PetscFunctionReturn(0);
}

PetscErrorCode CsTrainerCheckpointResume(CsTrainer t)
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
