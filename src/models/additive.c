/* additive: each control cell of the target context plus the sum, over the condition's atoms, of each atom's mean
   shift learned from single-atom train groups: the shift seen in the same context where there is one, else the
   average over the contexts where the atom was seen (scGen's vector arithmetic for an unseen context, and the
   additive model for combinations). An atom never seen alone in training contributes no shift. Doses are ignored. */
#include <cellshift/model.h>
#include <cellshift/h5util.h>

typedef struct {
  CsAtomShifts sh;
  double      *shift; /* [ngenes] work buffer */
} Additive;

static PetscErrorCode CsModelFit_Additive(CsModel m)
{
  Additive *a = (Additive *)m->data;
  PetscInt  unseen = 0;

  PetscFunctionBeginUser;
  PetscCall(CsAtomShiftsFree(&a->sh));
  PetscCall(CsAtomShiftsCompute(m->ds, m->design, m->split, &a->sh));
  for (PetscInt i = 0; i < a->sh.natoms; i++) unseen += a->sh.anyseen[i] ? 0 : 1;
  if (unseen) PetscCall(PetscInfo(NULL, "additive: %" PetscInt_FMT " atoms never seen alone in training\n", unseen));
  PetscFunctionReturn(0);
}

/* The shift added to every control cell: sum over atoms, same-context shift first. */
static void AtomSum(const CsAtomShifts *sh, const CsCondition *cond, PetscInt ctx, double *shift)
{
  PetscInt G = sh->ngenes;
  for (PetscInt j = 0; j < G; j++) shift[j] = 0;
  for (PetscInt k = 0; k < cond->natoms; k++) {
    PetscInt      a   = cond->atoms[k];
    const double *src = sh->seen[ctx * sh->natoms + a] ? sh->ctxdelta + ((size_t)ctx * sh->natoms + a) * G
                        : sh->anyseen[a]               ? sh->delta + (size_t)a * G
                                                       : NULL;
    for (PetscInt j = 0; src && j < G; j++) shift[j] += src[j];
  }
}

static PetscErrorCode CsModelPredict_Additive(CsModel m, const CsCondition *cond, PetscInt ctx, const CsCSR *ctrl, float *out)
{
  Additive *a = (Additive *)m->data;
  PetscInt  G = ctrl->ncols;

  PetscFunctionBeginUser;
  if (!a->shift) PetscCall(PetscMalloc1(G, &a->shift));
  AtomSum(&a->sh, cond, ctx, a->shift);
  for (PetscInt i = 0; i < ctrl->nrows; i++) {
    float *row = out + (size_t)i * G;
    CsCSRRowToDense(ctrl, i, row);
    for (PetscInt j = 0; j < G; j++) row[j] = (float)(row[j] + a->shift[j]);
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelSave_Additive(CsModel m, hid_t g)
{
  Additive    *a = (Additive *)m->data;
  CsAtomShifts *sh = &a->sh;
  hsize_t      d3[3] = {(hsize_t)sh->nctx, (hsize_t)sh->natoms, (hsize_t)sh->ngenes};
  hsize_t      d2[2] = {(hsize_t)sh->nctx, (hsize_t)sh->natoms}, d2b[2] = {(hsize_t)sh->natoms, (hsize_t)sh->ngenes};
  hsize_t      d1[1] = {(hsize_t)sh->natoms};
  int         *seen, *anyseen;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc2(sh->nctx * sh->natoms + 1, &seen, sh->natoms + 1, &anyseen));
  for (PetscInt i = 0; i < sh->nctx * sh->natoms; i++) seen[i] = sh->seen[i];
  for (PetscInt i = 0; i < sh->natoms; i++) anyseen[i] = sh->anyseen[i];
  PetscCall(CsH5WriteArray(g, "ctxdelta", H5T_NATIVE_DOUBLE, 3, d3, sh->ctxdelta));
  PetscCall(CsH5WriteArray(g, "seen", H5T_NATIVE_INT, 2, d2, seen));
  PetscCall(CsH5WriteArray(g, "delta", H5T_NATIVE_DOUBLE, 2, d2b, sh->delta));
  PetscCall(CsH5WriteArray(g, "anyseen", H5T_NATIVE_INT, 1, d1, anyseen));
  PetscCall(PetscFree2(seen, anyseen));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelLoad_Additive(CsModel m, hid_t g)
{
  Additive    *a  = (Additive *)m->data;
  CsAtomShifts *sh = &a->sh;
  PetscInt     C = m->design->nctx, A = m->design->natoms, G = m->ds->ngenes;
  hsize_t      d3[3] = {(hsize_t)C, (hsize_t)A, (hsize_t)G}, d2[2] = {(hsize_t)C, (hsize_t)A};
  hsize_t      d2b[2] = {(hsize_t)A, (hsize_t)G}, d1[1] = {(hsize_t)A};
  int         *seen, *anyseen;

  PetscFunctionBeginUser;
  PetscCall(CsAtomShiftsFree(sh));
  sh->nctx = C, sh->natoms = A, sh->ngenes = G;
  PetscCall(PetscMalloc1((size_t)C * A * G + 1, &sh->ctxdelta));
  PetscCall(PetscMalloc1((size_t)A * G + 1, &sh->delta));
  PetscCall(PetscMalloc1((size_t)C * A + 1, &sh->seen));
  PetscCall(PetscMalloc1(A + 1, &sh->anyseen));
  PetscCall(PetscMalloc2(C * A + 1, &seen, A + 1, &anyseen));
  PetscCall(CsH5ReadArray(g, "model", "ctxdelta", H5T_NATIVE_DOUBLE, 3, d3, sh->ctxdelta));
  PetscCall(CsH5ReadArray(g, "model", "seen", H5T_NATIVE_INT, 2, d2, seen));
  PetscCall(CsH5ReadArray(g, "model", "delta", H5T_NATIVE_DOUBLE, 2, d2b, sh->delta));
  PetscCall(CsH5ReadArray(g, "model", "anyseen", H5T_NATIVE_INT, 1, d1, anyseen));
  for (PetscInt i = 0; i < C * A; i++) sh->seen[i] = seen[i] ? PETSC_TRUE : PETSC_FALSE;
  for (PetscInt i = 0; i < A; i++) sh->anyseen[i] = anyseen[i] ? PETSC_TRUE : PETSC_FALSE;
  PetscCall(PetscFree2(seen, anyseen));
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
  m->data          = a;
  m->ops->fit      = CsModelFit_Additive;
  m->ops->predict  = CsModelPredict_Additive;
  m->ops->save     = CsModelSave_Additive;
  m->ops->load     = CsModelLoad_Additive;
  m->ops->destroy  = CsModelDestroy_Additive;
  PetscFunctionReturn(0);
}
