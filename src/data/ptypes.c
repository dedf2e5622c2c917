/* The perturbation type of every group (-perturbation_type_key). See include/cellshift/design.h. */
#include <cellshift/design.h>

PetscErrorCode CsDesignGroupTypes(CsDesign d, CsDataset ds, PetscInt *ntypes, char ***types, PetscInt group_type[])
{
  CsObsColumn *tc = NULL;
  PetscInt     T;
  PetscInt    *count;

  PetscFunctionBeginUser;
  *ntypes = 0, *types = NULL;
  for (PetscInt g = 0; g < d->ngroups; g++) group_type[g] = -1;
  if (!d->type_key[0]) PetscFunctionReturn(0);
  PetscCall(CsDatasetGetObs(ds, d->type_key, &tc));
  CsCheckAll(d->comm, tc && tc->kind == CS_OBS_CATEGORICAL, "%s: obs has no label column '%s' (-perturbation_type_key)", ds->path,
             d->type_key);
  T = tc->ncat;
  /* Counts of every (group, type) over all ranks. */
  PetscCall(PetscCalloc1((size_t)d->ngroups * T + 1, &count));
  for (PetscInt i = 0; i < ds->nlocal; i++) {
    PetscInt g = d->cell_group[i], t = tc->codes[i];
    if (g >= 0 && t >= 0) count[(size_t)g * T + t]++;
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, count, (PetscMPIInt)(d->ngroups * T), MPIU_INT, MPI_SUM, d->comm));
  for (PetscInt g = 0; g < d->ngroups; g++)
    for (PetscInt t = 0; t < T; t++)
      if (count[(size_t)g * T + t] > (group_type[g] >= 0 ? count[(size_t)g * T + group_type[g]] : 0)) group_type[g] = t;
  PetscCall(PetscFree(count));
  *ntypes = T;
  PetscCall(PetscMalloc1(T + 1, types));
  for (PetscInt t = 0; t < T; t++) PetscCall(PetscStrallocpy(tc->cats[t], &(*types)[t]));
  PetscFunctionReturn(0);
}
