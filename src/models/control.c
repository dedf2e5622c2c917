/* control: the no-change baseline. Each control cell of the target context is predicted to stay as it is. */
#include "modelimpl.h"

static PetscErrorCode CsModelPredict_Control(CsModel m, const CsCondition *cond, PetscInt ctx, const CsCSR *ctrl, float *out)
{
  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < ctrl->nrows; i++) CsCSRRowToDense(ctrl, i, out + (size_t)i * (size_t)ctrl->ncols);
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelCreate_Control(CsModel m)
{
  PetscFunctionBeginUser;
  m->ops->predict = CsModelPredict_Control;
  m->streams      = PETSC_TRUE; /* the controls are read like any rows */
  m->nparams      = 0;          /* nothing is fitted */
  PetscFunctionReturn(0);
}
