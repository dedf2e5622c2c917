/* additive: each control cell of the target context plus the sum, over the condition's atoms, of each atom's mean
   shift learned from single-atom train and valid groups (it has no hyper-parameter to tune on the valid ones): the shift seen in the same context where there is one, else the
   average over the contexts where the atom was seen (scGen's vector arithmetic for an unseen context, and the
   additive model for combinations). An atom never seen alone in training contributes no shift. Doses are ignored. */
#include "modelimpl.h"

typedef struct {
  CsAtomShifts sh;
  double      *shift; /* [ngenes] work buffer */
} Additive;

static PetscErrorCode CsModelFit_Additive(CsModel m)
{
  Additive *a = (Additive *)m->data;
  PetscInt  unseen = 0;

  PetscFunctionBeginUser;
  PetscCall(CsAtomShiftsCompute(m->ds, m->design, m->split, PETSC_TRUE, &a->sh));
  for (PetscInt i = 0; i < a->sh.natoms; i++) unseen += a->sh.anyseen[i] ? 0 : 1;
  m->nparams = 0; /* one shift per gene for every (context, atom) seen alone; the cross-context averages derive from them */
  for (PetscInt i = 0; i < a->sh.nctx * a->sh.natoms; i++) m->nparams += a->sh.seen[i] ? a->sh.dim : 0;
  if (unseen) PetscCall(PetscInfo(NULL, "additive: %" PetscInt_FMT " atoms never seen alone in training\n", unseen));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelPredict_Additive(CsModel m, const CsCondition *cond, PetscInt ctx, const CsCSR *ctrl, float *out)
{
  Additive *a = (Additive *)m->data;
  PetscInt  G = ctrl->ncols;

  PetscFunctionBeginUser;
  if (!a->shift) PetscCall(PetscMalloc1(G, &a->shift));
  CsAtomShiftsSum(&a->sh, cond, ctx, a->shift);
  for (PetscInt i = 0; i < ctrl->nrows; i++) {
    float *row = out + (size_t)i * G;
    CsCSRRowToDense(ctrl, i, row);
    for (PetscInt j = 0; j < G; j++) row[j] = (float)(row[j] + a->shift[j]);
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelSave_Additive(CsModel m, hid_t g)
{
  PetscFunctionBeginUser;
  if (g < 0) PetscFunctionReturn(0); /* replicated state: rank 0 writes it */
  PetscCall(CsAtomShiftsSave(&((Additive *)m->data)->sh, g));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelLoad_Additive(CsModel m, hid_t g)
{
  PetscFunctionBeginUser;
  PetscCall(CsAtomShiftsLoad(&((Additive *)m->data)->sh, g, m->design->nctx, m->design->natoms, m->ds->ngenes));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelDestroy_Additive(CsModel m)
{
  Additive *a = (Additive *)m->data;

  PetscFunctionBeginUser;
  PetscCall(CsAtomShiftsFree(&a->sh));
  PetscCall(PetscFree(a->shift));
  PetscCall(PetscFree(m->data));
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelCreate_Additive(CsModel m)
{
  Additive *a;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&a));
  m->data         = a;
  m->ops->fit     = CsModelFit_Additive;
  m->streams = PETSC_TRUE; /* group means and encodings by streamed passes */
  m->ops->predict = CsModelPredict_Additive;
  m->ops->save    = CsModelSave_Additive;
  m->ops->load    = CsModelLoad_Additive;
  m->ops->destroy = CsModelDestroy_Additive;
  PetscFunctionReturn(0);
}
