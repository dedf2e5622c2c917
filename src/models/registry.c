/* The model registry: one line per model. A new model is one new file in src/models and one line here. */
#include "modelimpl.h"

PETSC_INTERN PetscErrorCode CsModelCreate_Control(CsModel);
PETSC_INTERN PetscErrorCode CsModelCreate_Additive(CsModel);
PETSC_INTERN PetscErrorCode CsModelCreate_Mean(CsModel);
PETSC_INTERN PetscErrorCode CsModelCreate_Linear(CsModel);
PETSC_INTERN PetscErrorCode CsModelCreate_ScGen(CsModel);
PETSC_INTERN PetscErrorCode CsModelCreate_CPA(CsModel);
PETSC_INTERN PetscErrorCode CsModelCreate_GRN(CsModel);
PETSC_INTERN PetscErrorCode CsModelCreate_OT(CsModel);
PETSC_INTERN PetscErrorCode CsModelCreate_CellOT(CsModel);
PETSC_INTERN PetscErrorCode CsModelCreate_Flow(CsModel);
PETSC_INTERN PetscErrorCode CsModelCreate_Gears(CsModel);

/* Called once by CsModelInitializePackage. */
PetscErrorCode CsModelRegisterAll(void)
{
  PetscFunctionBeginUser;
  PetscCall(CsModelRegister(CSMODELCONTROL, CsModelCreate_Control));
  PetscCall(CsModelRegister(CSMODELADDITIVE, CsModelCreate_Additive));
  PetscCall(CsModelRegister(CSMODELMEAN, CsModelCreate_Mean));
  PetscCall(CsModelRegister(CSMODELLINEAR, CsModelCreate_Linear));
  PetscCall(CsModelRegister(CSMODELSCGEN, CsModelCreate_ScGen));
  PetscCall(CsModelRegister(CSMODELCPA, CsModelCreate_CPA));
  PetscCall(CsModelRegister(CSMODELGRN, CsModelCreate_GRN));
  PetscCall(CsModelRegister(CSMODELOT, CsModelCreate_OT));
  PetscCall(CsModelRegister(CSMODELCELLOT, CsModelCreate_CellOT));
  PetscCall(CsModelRegister(CSMODELFLOW, CsModelCreate_Flow));
  PetscCall(CsModelRegister(CSMODELGEARS, CsModelCreate_Gears));
  PetscFunctionReturn(0);
}
