/* Group means and per-atom mean shifts: the statistics the mean-based baselines are built from.
   See include/cellshift/model.h. */
#include <cellshift/model.h>

PetscErrorCode CsGroupMeans(CsDataset ds, CsDesign d, const PetscBool *want, double *means)
{
  PetscInt  G = ds->ngenes, nw = 0, *slot;
  double   *sums;

  PetscFunctionBeginUser;
  /* Only the wanted groups travel in the reduction: slot[g] is g's row in the packed buffer. */
  PetscCall(PetscMalloc1(d->ngroups, &slot));
  for (PetscInt g = 0; g < d->ngroups; g++) slot[g] = (!want || want[g]) ? nw++ : -1;
  PetscCall(PetscCalloc1((size_t)nw * G + 1, &sums));
  for (PetscInt i = 0; i < ds->nlocal; i++) {
    PetscInt g = d->cell_group[i];
    if (g < 0 || slot[g] < 0) continue;
    double *s = sums + (size_t)slot[g] * G;
    for (int64_t k = ds->X.indptr[i]; k < ds->X.indptr[i + 1]; k++) s[ds->X.indices[k]] += ds->X.data[k];
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, sums, (PetscMPIInt)(nw * G), MPI_DOUBLE, MPI_SUM, ds->comm));
  PetscCall(PetscArrayzero(means, (size_t)d->ngroups * G));
  for (PetscInt g = 0; g < d->ngroups; g++) {
    if (slot[g] < 0 || !d->groups[g].ncells) continue;
    for (PetscInt j = 0; j < G; j++) means[(size_t)g * G + j] = sums[(size_t)slot[g] * G + j] / (double)d->groups[g].ncells;
  }
  PetscCall(PetscFree(sums));
  PetscCall(PetscFree(slot));
  PetscFunctionReturn(0);
}

PetscErrorCode CsAtomShiftsCompute(CsDataset ds, CsDesign d, CsSplit s, CsAtomShifts *sh)
{
  PetscInt   G = ds->ngenes, A = d->natoms, C = d->nctx;
  PetscBool *want;
  PetscInt  *count, *nctx;
  double    *means;

  PetscFunctionBeginUser;
  sh->natoms = A, sh->nctx = C, sh->ngenes = G;
  PetscCall(PetscCalloc1((size_t)C * A * G + 1, &sh->ctxdelta));
  PetscCall(PetscCalloc1((size_t)C * A + 1, &sh->seen));
  PetscCall(PetscCalloc1((size_t)A * G + 1, &sh->delta));
  PetscCall(PetscCalloc1(A + 1, &sh->anyseen));
  PetscCall(PetscCalloc1((size_t)C * A + 1, &count));
  PetscCall(PetscCalloc1(A + 1, &nctx));
  PetscCall(PetscCalloc1(d->ngroups, &want));
  /* A single-atom train group with a control in its context gives that atom's shift in that context. */
  for (PetscInt g = 0; g < d->ngroups; g++) {
    const CsGroup *gr = &d->groups[g];
    if (gr->control || gr->ctrl < 0 || s->role[g] != CS_ROLE_TRAIN || d->conds[gr->cond].natoms != 1) continue;
    want[g] = want[gr->ctrl] = PETSC_TRUE;
  }
  PetscCall(PetscMalloc1((size_t)d->ngroups * G, &means));
  PetscCall(CsGroupMeans(ds, d, want, means));
  for (PetscInt g = 0; g < d->ngroups; g++) {
    const CsGroup *gr = &d->groups[g];
    if (gr->control || !want[g]) continue;
    PetscInt a = d->conds[gr->cond].atoms[0], c = gr->ctx;
    double  *dst = sh->ctxdelta + ((size_t)c * A + a) * G;
    for (PetscInt j = 0; j < G; j++) dst[j] += means[(size_t)g * G + j] - means[(size_t)gr->ctrl * G + j];
    count[c * A + a]++;
  }
  /* Several groups of one atom in one context (different doses) are averaged; then contexts are averaged. */
  for (PetscInt c = 0; c < C; c++)
    for (PetscInt a = 0; a < A; a++) {
      PetscInt n = count[c * A + a];
      if (!n) continue;
      double *src = sh->ctxdelta + ((size_t)c * A + a) * G;
      for (PetscInt j = 0; j < G; j++) src[j] /= n, sh->delta[(size_t)a * G + j] += src[j];
      sh->seen[c * A + a] = PETSC_TRUE;
      nctx[a]++;
    }
  for (PetscInt a = 0; a < A; a++) {
    sh->anyseen[a] = nctx[a] ? PETSC_TRUE : PETSC_FALSE;
    for (PetscInt j = 0; nctx[a] && j < G; j++) sh->delta[(size_t)a * G + j] /= nctx[a];
  }
  PetscCall(PetscFree(means));
  PetscCall(PetscFree(want));
  PetscCall(PetscFree(nctx));
  PetscCall(PetscFree(count));
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
