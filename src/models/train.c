/* Training a neural model on its split: the glue between CsModel and CsTrainer shared by the learned models. */
#include "modelimpl.h"

PetscErrorCode CsModelTrain(CsModel m, CsTrainer t, const CsTrainerCallbacks *cb)
{
  CsDesign   d = m->design;
  PetscBool *train, *valid;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc2(m->ds->nlocal + 1, &train, m->ds->nlocal + 1, &valid));
  for (PetscInt i = 0; i < m->ds->nlocal; i++) {
    PetscInt g = d->cell_group[i];
    train[i]   = g >= 0 && m->split->role[g] == CS_ROLE_TRAIN;
    valid[i]   = g >= 0 && m->split->role[g] == CS_ROLE_VALID;
  }
  PetscCall(CsTrainerSetCallbacks(t, cb));
  PetscCall(CsTrainerSetData(t, m->ds, d, train, m->split->nvalid ? valid : NULL, (uint64_t)m->seed));
  PetscCall(CsTrainerSetCheckpointDir(t, m->dir, CsModelName(m), ((PetscObject)m)->type_name));
  PetscCall(CsTrainerTrain(t, &m->interrupted));
  PetscCall(PetscFree2(train, valid));
  PetscFunctionReturn(0);
}
