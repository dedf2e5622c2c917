/* Training a neural model on its split: the glue between CsModel and CsTrainer shared by the learned models. */
#include "modelimpl.h"

PetscErrorCode CsModelTrain(CsModel m, CsTrainer t, const CsTrainerCallbacks *cb)
{
  PetscFunctionBeginUser;
  PetscCall(CsModelTrainGroups(m, t, cb, NULL));
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelTrainGroups(CsModel m, CsTrainer t, const CsTrainerCallbacks *cb, const PetscBool use[])
{
  CsDesign   d = m->design;
  PetscBool *train, *valid;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc2(m->ds->nlocal + 1, &train, m->ds->nlocal + 1, &valid));
  for (PetscInt i = 0; i < m->ds->nlocal; i++) {
    PetscInt g = d->cell_group[i];
    train[i]   = g >= 0 && m->split->role[g] == CS_ROLE_TRAIN && (!use || use[g]);
    valid[i]   = g >= 0 && m->split->role[g] == CS_ROLE_VALID && (!use || use[g]);
  }
  PetscCall(CsTrainerSetCallbacks(t, cb));
  PetscCall(CsTrainerSetData(t, m->ds, d, train, m->split->nvalid ? valid : NULL, (uint64_t)m->seed));
  PetscCall(CsTrainerSetCheckpointDir(t, m->dir, CsModelName(m), ((PetscObject)m)->type_name));
  PetscCall(CsTrainerTrain(t, &m->interrupted));
  PetscCall(PetscFree2(train, valid));
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
