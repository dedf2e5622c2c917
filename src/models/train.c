/* Training a neural model on its split: the glue between CsModel and CsTrainer shared by the learned models. */
#include "modelimpl.h"
#include <cellshift/rng.h>

PetscErrorCode CsModelTrain(CsModel m, CsTrainer t, const CsTrainerCallbacks *cb)
{
  PetscFunctionBeginUser;
  PetscCall(CsModelTrainGroups(m, t, cb, NULL));
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelTrainGroups(CsModel m, CsTrainer t, const CsTrainerCallbacks *cb, const PetscBool use[])
{
  CsDesign   d = m->design;
  uint8_t   *train, *valid;

  PetscFunctionBeginUser;
  PetscCall(PetscCalloc2(CsMaskBytes(m->ds->nlocal), &train, CsMaskBytes(m->ds->nlocal), &valid));
  for (PetscInt i = 0; i < m->ds->nlocal; i++) {
    PetscInt g = d->cell_group[i];
    if (g >= 0 && m->split->role[g] == CS_ROLE_TRAIN && (!use || use[g])) CsMaskSet(train, i);
    if (g >= 0 && m->split->role[g] == CS_ROLE_VALID && (!use || use[g])) CsMaskSet(valid, i);
  }
  PetscCall(CsTrainerSetCallbacks(t, cb));
  PetscCall(CsTrainerSetData(t, m->ds, d, train, m->split->nvalid ? valid : NULL, (uint64_t)m->seed));
  PetscCall(PetscFree2(train, valid)); /* the trainer keeps its own copies */
  PetscCall(CsTrainerSetCheckpointDir(t, m->dir, CsModelName(m), ((PetscObject)m)->type_name));
  PetscCall(CsTrainerTrain(t, &m->interrupted));
  PetscCall(CsTrainerGetParameterCount(t, &m->nparams));
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelCheckTrainingOptions(CsModel m)
{
  MPI_Comm  comm   = PetscObjectComm((PetscObject)m);
  PetscInt  epochs = 1, every = 0;
  PetscBool set;

  PetscFunctionBeginUser;
  PetscCall(PetscOptionsGetInt(NULL, CsModelPrefix(m), "-epochs", &epochs, &set));
  CsCheckAll(comm, !set || epochs >= 1, "-%sepochs must be at least 1 (got %" PetscInt_FMT "): with no epoch the model would be scored untrained",
             CsModelPrefix(m), epochs);
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-checkpoint_every", &every, &set));
  CsCheckAll(comm, !set || every >= 0, "-checkpoint_every must be 0 (only on a signal) or a positive number of epochs (got %" PetscInt_FMT ")", every);
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelCheckGradient(CsModel m, const CsTrainerCallbacks *cb, const CsBatch *b, const CsNNPass *pass, CsNNParams P, PetscInt set)
{
  MPI_Comm comm = pass->comm;
  size_t   n    = P->n;
  float   *g0, *p0, *d;
  double   an = 0, L[2], h = 1e-4, fd, err;
  PetscInt s;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc3(n, &g0, n, &p0, n, &d));
  PetscCall(PetscArraycpy(g0, P->g, n));
  PetscCall(PetscArraycpy(p0, P->p, n));
  for (size_t i = 0; i < n; i++) {
    d[i] = P->p[i] == 0 && P->g[i] == 0 ? 0.0f : (float)(2 * CsRngUniform((uint64_t)m->seed, CS_STREAM_DATA, 77, i) - 1); /* padding stays */
    an += (double)g0[i] * d[i];
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &an, 1, MPI_DOUBLE, MPI_SUM, comm)); /* the gradient is reduced after the step */
  for (int k = 0; k < 2; k++) {
    for (size_t i = 0; i < n; i++) P->p[i] = (float)(p0[i] + (k ? -h : h) * d[i]);
    PetscCall(cb->step(cb->ctx, b, pass, &s, &L[k]));
  }
  PetscCall(PetscArraycpy(P->p, p0, n));
  PetscCall(PetscArraycpy(P->g, g0, n));
  fd  = (L[0] - L[1]) / (2 * h);
  err = PetscAbsReal(fd - an) / PetscMax(PetscAbsReal(an), 1e-30);
  PetscCall(PetscPrintf(comm, "%s: gradient check of parameter set %" PetscInt_FMT " at step %" PetscInt_FMT ": directional derivative %.6g, finite difference %.6g, relative error %.2e\n",
                        CsModelName(m), set, (PetscInt)pass->step, an, fd, err));
  PetscCall(PetscFree3(g0, p0, d));
  PetscFunctionReturn(0);
}
