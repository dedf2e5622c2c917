/* Group means and per-atom mean shifts: the statistics the mean-based models are built from.
   See include/cellshift/model.h. */
#include "modelimpl.h"
#include <cellshift/h5util.h>

PetscErrorCode CsAtomShiftsGroups(CsDesign d, CsSplit s, PetscBool withvalid, PetscBool *want)
{
  PetscFunctionBeginUser;
  PetscCall(PetscArrayzero(want, d->ngroups));
  for (PetscInt g = 0; g < d->ngroups; g++) {
    const CsGroup *gr = &d->groups[g];
    PetscBool fit = (PetscBool)(s->role[g] == CS_ROLE_TRAIN || (withvalid && s->role[g] == CS_ROLE_VALID));
    if (gr->control || gr->ctrl < 0 || !fit || d->conds[gr->cond].natoms != 1) continue;
    want[g] = want[gr->ctrl] = PETSC_TRUE;
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode Alloc(CsAtomShifts *sh, PetscInt nctx, PetscInt natoms, PetscInt dim)
{
  PetscFunctionBeginUser;
  PetscCall(CsAtomShiftsFree(sh));
  sh->nctx = nctx, sh->natoms = natoms, sh->dim = dim;
  PetscCall(PetscCalloc1((size_t)nctx * natoms * dim + 1, &sh->ctxdelta));
  PetscCall(PetscCalloc1((size_t)nctx * natoms + 1, &sh->seen));
  PetscCall(PetscCalloc1((size_t)natoms * dim + 1, &sh->delta));
  PetscCall(PetscCalloc1(natoms + 1, &sh->anyseen));
  PetscFunctionReturn(0);
}

PetscErrorCode CsAtomShiftsFromMeans(CsDesign d, CsSplit s, PetscBool withvalid, PetscInt dim, const double *means, CsAtomShifts *sh)
{
  PetscInt   A = d->natoms, C = d->nctx, *count, *nctx;
  PetscBool *want;

  PetscFunctionBeginUser;
  PetscCall(Alloc(sh, C, A, dim));
  PetscCall(PetscCalloc1((size_t)C * A + 1, &count));
  PetscCall(PetscCalloc1(A + 1, &nctx));
  PetscCall(PetscMalloc1(d->ngroups + 1, &want));
  PetscCall(CsAtomShiftsGroups(d, s, withvalid, want));
  for (PetscInt g = 0; g < d->ngroups; g++) {
    const CsGroup *gr = &d->groups[g];
    if (gr->control || !want[g]) continue;
    PetscInt a = d->conds[gr->cond].atoms[0], c = gr->ctx;
    double  *dst = sh->ctxdelta + ((size_t)c * A + a) * dim;
    for (PetscInt j = 0; j < dim; j++) dst[j] += means[(size_t)g * dim + j] - means[(size_t)gr->ctrl * dim + j];
    count[c * A + a]++;
  }
  /* Several groups of one atom in one context (different doses) are averaged; then contexts are averaged. */
  for (PetscInt c = 0; c < C; c++)
    for (PetscInt a = 0; a < A; a++) {
      PetscInt n = count[c * A + a];
      if (!n) continue;
      double *src = sh->ctxdelta + ((size_t)c * A + a) * dim;
      for (PetscInt j = 0; j < dim; j++) src[j] /= n, sh->delta[(size_t)a * dim + j] += src[j];
      sh->seen[c * A + a] = PETSC_TRUE;
      nctx[a]++;
    }
  for (PetscInt a = 0; a < A; a++) {
    sh->anyseen[a] = nctx[a] ? PETSC_TRUE : PETSC_FALSE;
    for (PetscInt j = 0; nctx[a] && j < dim; j++) sh->delta[(size_t)a * dim + j] /= nctx[a];
  }
  PetscCall(PetscFree(want));
  PetscCall(PetscFree(nctx));
  PetscCall(PetscFree(count));
  PetscFunctionReturn(0);
}

PetscErrorCode CsAtomShiftsCompute(CsDataset ds, CsDesign d, CsSplit s, PetscBool withvalid, CsAtomShifts *sh)
{
  PetscBool *want;
  double    *means;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(d->ngroups + 1, &want));
  PetscCall(CsAtomShiftsGroups(d, s, withvalid, want));
  PetscCall(PetscMalloc1((size_t)d->ngroups * ds->ngenes + 1, &means));
  PetscCall(CsDesignGroupMeans(d, ds, want, means));
  PetscCall(CsAtomShiftsFromMeans(d, s, withvalid, ds->ngenes, means, sh));
  PetscCall(PetscFree(means));
  PetscCall(PetscFree(want));
  PetscFunctionReturn(0);
}

void CsAtomShiftsSum(const CsAtomShifts *sh, const CsCondition *cond, PetscInt ctx, double *out)
{
  PetscInt D = sh->dim;
  for (PetscInt j = 0; j < D; j++) out[j] = 0;
  for (PetscInt k = 0; k < cond->natoms; k++) {
    PetscInt      a   = cond->atoms[k];
    const double *src = sh->seen[ctx * sh->natoms + a] ? sh->ctxdelta + ((size_t)ctx * sh->natoms + a) * D
                        : sh->anyseen[a]               ? sh->delta + (size_t)a * D
                                                       : NULL;
    for (PetscInt j = 0; src && j < D; j++) out[j] += src[j];
  }
}

PetscErrorCode CsAtomShiftsSave(const CsAtomShifts *sh, hid_t g)
{
  hsize_t d3[3] = {(hsize_t)sh->nctx, (hsize_t)sh->natoms, (hsize_t)sh->dim};
  hsize_t d2[2] = {(hsize_t)sh->nctx, (hsize_t)sh->natoms}, d2b[2] = {(hsize_t)sh->natoms, (hsize_t)sh->dim};
  hsize_t d1[1] = {(hsize_t)sh->natoms};
  int    *seen, *anyseen;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc2(sh->nctx * sh->natoms + 1, &seen, sh->natoms + 1, &anyseen));
  for (PetscInt i = 0; i < sh->nctx * sh->natoms; i++) seen[i] = sh->seen[i];
  for (PetscInt i = 0; i < sh->natoms; i++) anyseen[i] = sh->anyseen[i];
  PetscCall(CsH5WriteArray(g, "shift_ctxdelta", H5T_NATIVE_DOUBLE, 3, d3, sh->ctxdelta));
  PetscCall(CsH5WriteArray(g, "shift_seen", H5T_NATIVE_INT, 2, d2, seen));
  PetscCall(CsH5WriteArray(g, "shift_delta", H5T_NATIVE_DOUBLE, 2, d2b, sh->delta));
  PetscCall(CsH5WriteArray(g, "shift_anyseen", H5T_NATIVE_INT, 1, d1, anyseen));
  PetscCall(PetscFree2(seen, anyseen));
  PetscFunctionReturn(0);
}

PetscErrorCode CsAtomShiftsLoad(CsAtomShifts *sh, hid_t g, PetscInt nctx, PetscInt natoms, PetscInt dim)
{
  hsize_t d3[3] = {(hsize_t)nctx, (hsize_t)natoms, (hsize_t)dim}, d2[2] = {(hsize_t)nctx, (hsize_t)natoms};
  hsize_t d2b[2] = {(hsize_t)natoms, (hsize_t)dim}, d1[1] = {(hsize_t)natoms};
  int    *seen, *anyseen;

  PetscFunctionBeginUser;
  PetscCall(Alloc(sh, nctx, natoms, dim));
  PetscCall(PetscMalloc2(nctx * natoms + 1, &seen, natoms + 1, &anyseen));
  PetscCall(CsH5ReadArrayFinite(g, "model.h5", "shift_ctxdelta", H5T_NATIVE_DOUBLE, 3, d3, sh->ctxdelta));
  PetscCall(CsH5ReadArray(g, "model.h5", "shift_seen", H5T_NATIVE_INT, 2, d2, seen));
  PetscCall(CsH5ReadArrayFinite(g, "model.h5", "shift_delta", H5T_NATIVE_DOUBLE, 2, d2b, sh->delta));
  PetscCall(CsH5ReadArray(g, "model.h5", "shift_anyseen", H5T_NATIVE_INT, 1, d1, anyseen));
  for (PetscInt i = 0; i < nctx * natoms; i++) sh->seen[i] = seen[i] ? PETSC_TRUE : PETSC_FALSE;
  for (PetscInt i = 0; i < natoms; i++) sh->anyseen[i] = anyseen[i] ? PETSC_TRUE : PETSC_FALSE;
  PetscCall(PetscFree2(seen, anyseen));
  PetscFunctionReturn(0);
}

PetscErrorCode CsAtomShiftsFree(CsAtomShifts *sh)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree(sh->ctxdelta));
  PetscCall(PetscFree(sh->seen));
  PetscCall(PetscFree(sh->delta));
  PetscCall(PetscFree(sh->anyseen));
  PetscFunctionReturn(0);
}

/* The groups the context mean shifts are taken from: perturbed train (and with withvalid valid) groups with
   controls in their context. */
static PetscBool MeanShiftGroup(CsDesign d, CsSplit s, PetscBool withvalid, PetscInt g)
{
  const CsGroup *gr = &d->groups[g];
  return !gr->control && gr->ctrl >= 0 && (s->role[g] == CS_ROLE_TRAIN || (withvalid && s->role[g] == CS_ROLE_VALID)) ? PETSC_TRUE : PETSC_FALSE;
}

PetscErrorCode CsContextMeanShifts(CsDataset ds, CsDesign d, CsSplit s, PetscBool withvalid, double *shift, PetscBool *own)
{
  PetscInt   G = ds->ngenes, C = d->nctx, nown = 0, *count;
  PetscBool *want;
  double    *means, *avg;

  PetscFunctionBeginUser;
  PetscCall(PetscCalloc1(d->ngroups + 1, &want));
  for (PetscInt g = 0; g < d->ngroups; g++)
    if (MeanShiftGroup(d, s, withvalid, g)) want[g] = want[d->groups[g].ctrl] = PETSC_TRUE;
  PetscCall(PetscMalloc1((size_t)d->ngroups * G + 1, &means));
  PetscCall(CsDesignGroupMeans(d, ds, want, means));
  PetscCall(PetscCalloc1(C + 1, &count));
  PetscCall(PetscCalloc1(G + 1, &avg));
  PetscCall(PetscArrayzero(shift, (size_t)C * G));
  for (PetscInt g = 0; g < d->ngroups; g++) {
    const CsGroup *gr = &d->groups[g];
    double        *dst = shift + (size_t)gr->ctx * G;
    if (!MeanShiftGroup(d, s, withvalid, g)) continue;
    for (PetscInt j = 0; j < G; j++) dst[j] += means[(size_t)g * G + j] - means[(size_t)gr->ctrl * G + j];
    count[gr->ctx]++;
  }
  for (PetscInt c = 0; c < C; c++) {
    if (!count[c]) continue;
    for (PetscInt j = 0; j < G; j++) shift[(size_t)c * G + j] /= count[c], avg[j] += shift[(size_t)c * G + j];
    nown++;
  }
  for (PetscInt c = 0; c < C; c++) {
    if (own) own[c] = count[c] ? PETSC_TRUE : PETSC_FALSE;
    for (PetscInt j = 0; j < G && !count[c] && nown; j++) shift[(size_t)c * G + j] = avg[j] / nown;
  }
  PetscCall(PetscFree(avg));
  PetscCall(PetscFree(count));
  PetscCall(PetscFree(means));
  PetscCall(PetscFree(want));
  PetscFunctionReturn(0);
}
