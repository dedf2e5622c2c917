/* CsSplit: which groups a model may learn from (train), tune on (valid) and is scored on (test).

   -split random   : -test_fraction / -valid_fraction of the perturbed groups, drawn with -split_seed;
   -split combo    : PerturBench's combination task: every single-atom group trains; of the groups with two or
                     more atoms, -test_fraction go to test, -valid_fraction to valid, the rest train;
   -split context  : -holdout_context NAME: that context's perturbed groups are test, its controls stay visible;
                     -valid_fraction of the other perturbed groups are valid;
   -split explicit : -test_conditions "KLF1+MAP2K6,stimulated@CD4T" (condition@context, context optional = all
                     contexts where the condition was measured); -test_conditions alone implies explicit;
   -split simulation: GEARS' simulation split: -test_fraction of the atoms that have a single-atom group are unseen
                     (drawn with -split_seed by name): their single-atom groups are test, the other atoms' train;
                     every combination with an atom not seen alone in training is test; of the combinations whose
                     atoms are all seen, -test_fraction go to test, -valid_fraction to valid, the rest train;
   -split_file F   : read the roles from a split.json written by an earlier run (same data and design).
   Control groups are always train (visible): they are the inputs every prediction starts from, never targets.

   Validation (-validation auto|cells|groups): with cells there are no valid groups: the learned models validate
   on a seeded fraction of the training cells (-<model>_valid_cells, default 0.1), so every non-test group trains;
   with groups, -valid_fraction of the candidate groups are valid groups. auto (the default) is cells for the
   explicit and context splits and wherever -valid_fraction would draw fewer than 2 groups (a group or two held
   out of a handful would take away the very contexts or conditions a baseline averages over), groups otherwise.
   Models without hyper-parameters (control, additive, mean) fit on the train and valid groups; the others train on
   the train groups and tune on the valid ones. The roles and this rule are written to split.json so any model can
   be rerun on the same split.

   Categories (every split type): what training knows of each group's atoms. An atom is seen when it has a
   single-atom train group in some context; a group is "control", "seen_single" or "unseen_single" (one atom),
   "combo_seen<k>" (two atoms, k of them seen: GEARS' combo_seen0/1/2) or "combo<n>_seen<k>" (n > 2 atoms). They are
   a function of the roles (recomputed when a split.json is read) and written to split.json. */
#ifndef CELLSHIFT_SPLIT_H
#define CELLSHIFT_SPLIT_H

#include <cellshift/design.h>

typedef enum { CS_ROLE_TRAIN = 0, CS_ROLE_VALID = 1, CS_ROLE_TEST = 2 } CsRole;
PETSC_EXTERN const char *const CsRoles[];

typedef struct _n_CsSplit *CsSplit;
struct _n_CsSplit {
  MPI_Comm  comm;
  char      type[32], holdout_context[256], test_conditions[4096], file[PETSC_MAX_PATH_LEN];
  char      validation[16]; /* -validation: auto, cells or groups */
  PetscBool valid_groups;   /* after set-up: validation on whole groups (else on training cells) */
  PetscInt  seed;
  PetscReal test_fraction, valid_fraction;
  PetscInt  ngroups;
  CsRole   *role;  /* [ngroups] */
  char    (*category)[32]; /* [ngroups] category of each group (see above) */
  PetscInt  ntest, nvalid, ntrain;
  PetscReal data_fraction;   /* -data_fraction (1 = all) */
  PetscInt  cells_per_group; /* -cells_per_group (0 = all) */
  PetscInt  max_perturbations; /* -max_perturbations (0 = all) */
  PetscBool setup;
};

PETSC_EXTERN PetscErrorCode CsSplitCreate(MPI_Comm comm, CsSplit *s);
PETSC_EXTERN PetscErrorCode CsSplitSetFromOptions(CsSplit s);
/* Collective: assign roles (idempotent). Errors: unknown holdout context or test condition, empty test set (the
   message says why: no candidate group, -test_fraction 0, a split file without test groups). */
PETSC_EXTERN PetscErrorCode CsSplitSetUp(CsSplit s, CsDesign d);
/* Collective: which local cells a smaller training set keeps (-data_fraction f, -cells_per_group n): of every
   perturbed train and valid group of n_g cells, k_g = min(max(1, ceil(f n_g)), n) cells, those whose place in
   the group (file order) a seeded permutation of the group (-split_seed, keyed by the group) maps below k_g; the
   test groups and the controls (the inputs of every prediction and the reference of every metric) keep all
   their cells. -max_perturbations k: of the perturbed conditions with a train or valid group, k drawn by a seeded
   permutation of their condition indices keep their train and valid groups, the others lose them (every cell;
   their test groups stay). The same cells for any rank count. *keep[nlocal] (free with PetscFree) is NULL and *any false when
   nothing is dropped. */
PETSC_EXTERN PetscErrorCode CsSplitSubsample(CsSplit s, CsDesign d, PetscBool **keep, PetscBool *any);
/* Collective: set up s on d with the given roles (of d's groups) instead of drawing them: categories and counts
   follow; valid_groups as the split the roles came from (false where no valid group is left). */
PETSC_EXTERN PetscErrorCode CsSplitSetUpRoles(CsSplit s, CsDesign d, const CsRole role[], PetscBool valid_groups);
/* Collective: write split.json (rank 0, atomically). */
PETSC_EXTERN PetscErrorCode CsSplitSave(CsSplit s, CsDesign d, const char path[]);
PETSC_EXTERN PetscErrorCode CsSplitView(CsSplit s, CsDesign d, PetscViewer v);
PETSC_EXTERN PetscErrorCode CsSplitDestroy(CsSplit *s);

#endif
