/* CsDesign: what was done to each cell.

   The perturbation column (-perturbation_key, default "condition") is parsed into conditions: a condition is a
   set of perturbation atoms joined by -combo_delimiter (default "+"); "A+B" and "B+A" are the same condition,
   whose canonical name lists the atoms in sorted order. The control value (-control_value, default "control")
   names unperturbed cells; it is dropped where it appears as an atom of a combination ("KLF1+control" is KLF1).
   With -dose_key, every atom carries a dose (the dose value is split by the same delimiter, one dose per atom in
   the label's order, or one dose for all atoms); conditions with different doses are different conditions.
   The context column (-context_key, optional: cell type, cell line, patient) names where it was done.
   With -perturbation_collapse_guides, atoms are CROP-seq guides named <gene><delimiter><number> ("KLF1_1",
   -perturbation_guide_delimiter, default "_") and every guide becomes its gene, so the guides of one gene are one
   atom. The type column (-perturbation_type_key, optional: CRISPRa / CRISPRi / drug) is read for the models that
   learn per perturbation type (CsDesignGroupTypes).

   A group is one (condition, context) with at least one cell. Groups are numbered in (context, condition name)
   order, identical on every rank and independent of the number of ranks. Each context has at most one control
   group. Fields are read-only outside src/data. */
#ifndef CELLSHIFT_DESIGN_H
#define CELLSHIFT_DESIGN_H

#include <cellshift/dataset.h>
#include <cellshift/priors.h>

typedef struct {
  char     *name;   /* canonical name ("A+B"; the control value for control) */
  char     *dose;   /* canonical dose label aligned with the atoms ("1+0.5"), "" without -dose_key */
  PetscInt  natoms; /* 0 for control */
  PetscInt *atoms;  /* [natoms] indices into design->atoms, increasing */
  double   *doses;  /* [natoms] dose of each atom (1 without -dose_key) */
} CsCondition;

typedef struct {
  PetscInt  cond, ctx;  /* indices into conds and contexts */
  PetscInt  ncells;     /* global number of cells */
  PetscBool control;    /* condition is the control */
  PetscInt  ctrl;       /* the control group of the same context, -1 if the context has none */
} CsGroup;

typedef struct _n_CsDesign *CsDesign;
struct _n_CsDesign {
  MPI_Comm     comm;
  char         pert_key[256], control_value[256], context_key[256], delimiter[16], dose_key[256];
  char         type_key[256], guide_delim[16]; /* -perturbation_type_key, -perturbation_guide_delimiter */
  PetscBool    collapse_guides;               /* -perturbation_collapse_guides */
  PetscInt     natoms;
  char       **atoms;      /* [natoms] sorted atom names (control excluded) */
  PetscInt     ncond;
  CsCondition *conds;      /* [ncond] sorted by (name, dose) */
  PetscInt     nctx;
  char       **contexts;   /* [nctx] sorted; a single context named "all" without -context_key */
  PetscInt     ngroups;
  CsGroup     *groups;     /* [ngroups] in (context, condition) order */
  PetscInt     nlocal;
  PetscInt    *cell_group; /* [nlocal] group of each local cell, -1 where a label is missing */
  PetscInt    *group_rstart; /* [ngroups] number of the group's cells on lower ranks (within-group offset) */
  PetscInt    *group_nlocal; /* [ngroups] number of the group's cells on this rank */
  PetscBool    setup;
};

PETSC_EXTERN PetscErrorCode CsDesignCreate(MPI_Comm comm, CsDesign *d);
/* -perturbation_key, -control_value, -context_key, -combo_delimiter, -dose_key, -perturbation_type_key,
   -perturbation_collapse_guides, -perturbation_guide_delimiter */
PETSC_EXTERN PetscErrorCode CsDesignSetFromOptions(CsDesign d);
/* Before the dataset is set up: ask it for the columns the design needs. */
PETSC_EXTERN PetscErrorCode CsDesignAddKeys(CsDesign d, CsDataset ds);
/* Collective: parse labels and build atoms, conditions, contexts and groups (idempotent). Errors: missing
   column, control value absent, cells with missing labels in the perturbation column. */
PETSC_EXTERN PetscErrorCode CsDesignSetUp(CsDesign d, CsDataset ds);
/* Local, after the last CsDesignSetUp on ds: free the per-cell labels of the columns the design was built from
   (perturbation, context, dose; not the type column, which models read): cell_group holds what they said, and a
   streamed shard then keeps 4 bytes a cell less for each. See CsDatasetReleaseObs. */
PETSC_EXTERN PetscErrorCode CsDesignReleaseObs(CsDesign d, CsDataset ds);
/* Canonical condition index for a label such as "B+A" (dose label may be NULL), or -1 if no such condition. */
PETSC_EXTERN PetscErrorCode CsDesignFindCondition(CsDesign d, const char label[], const char dose[], PetscInt *cond);
PETSC_EXTERN PetscInt CsDesignFindContext(CsDesign d, const char name[]);
/* Group of (cond, ctx) or -1. */
PETSC_EXTERN PetscInt CsDesignFindGroup(CsDesign d, PetscInt cond, PetscInt ctx);
/* "cond@ctx" display name of a group (ctx omitted without a context key); buffer of len bytes. */
PETSC_EXTERN PetscErrorCode CsDesignGroupName(CsDesign d, PetscInt g, char buf[], size_t len);
/* Collective: the mean expression of every group, means[g * ngenes + j] (CsCSRGroupStats: exact, rank-count
   independent). Only groups with want[g] are computed, the others are 0; want may be NULL (all groups). */
PETSC_EXTERN PetscErrorCode CsDesignGroupMeans(CsDesign d, CsDataset ds, const PetscBool *want, double *means);
/* Collective: the perturbation type of every group from the -perturbation_type_key column: types[ntypes] (the
   column's categories, identical on every rank; free with CsStrArrayDestroy) and group_type[ngroups], the most
   frequent type among the group's cells (ties: the first category), -1 for a group with no typed cell. Without
   the key: *ntypes = 0, *types = NULL and every group_type -1. */
PETSC_EXTERN PetscErrorCode CsDesignGroupTypes(CsDesign d, CsDataset ds, PetscInt *ntypes, char ***types, PetscInt group_type[]);
PETSC_EXTERN PetscErrorCode CsDesignView(CsDesign d, PetscViewer v);
PETSC_EXTERN PetscErrorCode CsDesignDestroy(CsDesign *d);

#endif
