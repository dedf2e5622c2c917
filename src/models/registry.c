/* The model registry: one line per model. A new model is one new file in src/models and one line here. */
#include <cellshift/model.h>

PETSC_EXTERN PetscErrorCode CsModelCreate_Control(CsModel);
PETSC_EXTERN PetscErrorCode CsModelCreate_Additive(CsModel);
PETSC_EXTERN PetscErrorCode CsModelCreate_Linear(CsModel);
PETSC_EXTERN PetscErrorCode CsModelCreate_ScGen(CsModel);
PETSC_EXTERN PetscErrorCode CsModelCreate_CPA(CsModel);

PetscErrorCode CsModelRegisterAll(void)
{
  PetscFunctionBeginUser;
  if (CsModelList) PetscFunctionReturn(0);
  PetscCall(CsModelRegister("control", CsModelCreate_Control));
  PetscCall(CsModelRegister("additive", CsModelCreate_Additive));
  PetscCall(CsModelRegister("linear", CsModelCreate_Linear));
  PetscCall(CsModelRegister("scgen", CsModelCreate_ScGen));
  PetscCall(CsModelRegister("cpa", CsModelCreate_CPA));
  PetscFunctionReturn(0);
}
