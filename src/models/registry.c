/* The model registry: one line per model. A new model is one new file in src/models and one line here. */
#include <cellshift/model.h>

PETSC_EXTERN PetscErrorCode CsModelCreate_Control(CsModel);
PETSC_EXTERN PetscErrorCode CsModelCreate_Additive(CsModel);
PETSC_EXTERN PetscErrorCode CsModelCreate_Linear(CsModel);

PetscErrorCode CsModelRegisterAll(void)
{
  PetscFunctionBeginUser;
  if (CsModelList) PetscFunctionReturn(0);
  PetscCall(CsModelRegister("control", CsModelCreate_Control));
  PetscCall(CsModelRegister("additive", CsModelCreate_Additive));
  PetscCall(CsModelRegister("linear", CsModelCreate_Linear));
  PetscFunctionReturn(0);
}
