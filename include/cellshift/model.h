/* CsModel: a perturbation-response predictor behind one plug-in interface (like PETSc's TS types).

   A model is fitted on the train groups of a split (and may use the valid groups for early stopping); it then
   predicts, for a condition in a context, what each given control cell of that context would look like under
   the condition. Every model is a file src/models/<name>.c with static ops and one exported
   CsModelCreate_<Name>(CsModel), registered in src/models/registry.c and chosen with -model <name>.
   Model options carry the model's prefix: -<name>_<option>.

   Collectives: setup, fit, predict, save and load are collective on the model's communicator (predict is called
   by every rank with its own rows, possibly none). */
#ifndef CELLSHIFT_MODEL_H
#define CELLSHIFT_MODEL_H

#include <cellshift/split.h>
#include <cellshift/trainer.h>

typedef struct _p_CsModel *CsModel;

typedef struct {
  PetscErrorCode (*setfromoptions)(CsModel, PetscOptionItems *);
  PetscErrorCode (*setup)(CsModel);   /* sizes known (dataset, design, split attached) */
  PetscErrorCode (*fit)(CsModel);
  /* ctrl: n x ngenes control cells (CSR rows) of context ctx; out: n x ngenes predicted, row-major */
  PetscErrorCode (*predict)(CsModel, const CsCondition *cond, PetscInt ctx, const CsCSR *ctrl, float *out);
  PetscErrorCode (*save)(CsModel, hid_t group);  /* rank 0 only, into an open HDF5 group */
  PetscErrorCode (*load)(CsModel, hid_t group);  /* every rank */
  PetscErrorCode (*view)(CsModel, PetscViewer);
  PetscErrorCode (*destroy)(CsModel);
} CsModelOps;

struct _p_CsModel {
  MPI_Comm   comm;
  CsModelOps ops[1];
  char       type[64];
  char       prefix[80];    /* options prefix: "<type>_" */
  void      *data;          /* the implementation's private context */
  CsDataset  ds;
  CsDesign   design;
  CsSplit    split;
  PetscInt   seed;          /* -model_seed: initialisation, shuffling, noise */
  PetscInt   predict_max_cells; /* -predict_max_cells: control cells used per predicted group (0 = all) */
  char       dir[PETSC_MAX_PATH_LEN]; /* the model's folder of the run (checkpoints); "" = none */
  PetscBool  interrupted;   /* fit stopped by a signal after writing a checkpoint: do not predict */
  PetscBool  setup, fitted;
};

PETSC_EXTERN PetscErrorCode CsModelCreate(MPI_Comm comm, CsModel *m);
PETSC_EXTERN PetscErrorCode CsModelSetType(CsModel m, const char type[]);
PETSC_EXTERN PetscErrorCode CsModelSetFromOptions(CsModel m);
/* Attach the data the model is fitted on and predicts for (references are taken, not copies). */
PETSC_EXTERN PetscErrorCode CsModelSetProblem(CsModel m, CsDataset ds, CsDesign d, CsSplit s);
PETSC_EXTERN PetscErrorCode CsModelSetUp(CsModel m);
PETSC_EXTERN PetscErrorCode CsModelFit(CsModel m);
PETSC_EXTERN PetscErrorCode CsModelPredict(CsModel m, const CsCondition *cond, PetscInt ctx, const CsCSR *ctrl, float *out);
/* model.h5: type, options, atoms/contexts it was fitted with, and the implementation's parameters. Written
   atomically by rank 0. Load checks that the design matches (same atoms, contexts and genes). */
PETSC_EXTERN PetscErrorCode CsModelSave(CsModel m, const char path[]);
PETSC_EXTERN PetscErrorCode CsModelLoad(CsModel m, const char path[]);
PETSC_EXTERN PetscErrorCode CsModelView(CsModel m, PetscViewer v);
PETSC_EXTERN PetscErrorCode CsModelDestroy(CsModel *m);

/* Collective: predict every test group of the model's split and write a predictions.h5ad at `path`:
   for each test group in group order, one row per control cell of its context (at most -predict_max_cells of them,
   evenly spaced in global order; 0 = all), then every observed control cell of each context that has a test group.
   obs holds the perturbation key (the condition name; the control value for the observed controls), the context
   key and the dose key when the design has them, and cellshift_kind = predicted / observed. var = the genes. */
PETSC_EXTERN PetscErrorCode CsModelWritePredictions(CsModel m, const char path[]);

/* Collective, for the learned models: train the model's network with t on its split (cells of the train groups,
   validation on the valid groups' cells, or drawn training cells when the split has none), checkpoints in the
   model's run folder; sets m->interrupted when a signal stopped it. */
PETSC_EXTERN PetscErrorCode CsModelTrain(CsModel m, CsTrainer t, const CsTrainerCallbacks *cb);

/* Registry. */
PETSC_EXTERN PetscFunctionList CsModelList;
PETSC_EXTERN PetscErrorCode    CsModelRegister(const char name[], PetscErrorCode (*create)(CsModel));
PETSC_EXTERN PetscErrorCode    CsModelRegisterAll(void);
PETSC_EXTERN PetscErrorCode    CsModelRegisterDestroy(void);
/* "control, additive, ...": the registered names, for messages and -help. */
PETSC_EXTERN const char       *CsModelTypeNames(void);

/* Shared statistics for models built on group means (collective): mean expression of each group, means[g*ngenes +
   j] in double, summed over ranks. Only groups with want[g] true are computed (others left 0); want may be NULL. */
PETSC_EXTERN PetscErrorCode CsGroupMeans(CsDataset ds, CsDesign d, const PetscBool *want, double *means);

/* The shift of every atom in some space of dimension dim (expression for the additive baseline, a latent space
   for scGen's vector arithmetic). From single-atom train groups with a control in their context: ctxdelta
   [nctx][natoms][dim] = mean(group) - mean(control of its context), averaged over groups of the same atom and
   context (doses); seen[ctx * natoms + a] tells where atom a was seen alone; delta [natoms][dim] averages ctxdelta
   over the contexts where the atom was seen, each context weighing the same (scGen's cell-type balancing), with
   anyseen[a]. */
typedef struct {
  PetscInt   natoms, nctx, dim;
  double    *ctxdelta; /* [nctx * natoms * dim] */
  PetscBool *seen;     /* [nctx * natoms] */
  double    *delta;    /* [natoms * dim] */
  PetscBool *anyseen;  /* [natoms] */
} CsAtomShifts;
/* The groups whose means the shifts need (want[ngroups]). */
PETSC_EXTERN PetscErrorCode CsAtomShiftsGroups(CsDesign d, CsSplit s, PetscBool *want);
/* Shifts from per-group mean vectors means[g * dim + k] (only the wanted groups are read). Not collective. */
PETSC_EXTERN PetscErrorCode CsAtomShiftsFromMeans(CsDesign d, CsSplit s, PetscInt dim, const double *means, CsAtomShifts *sh);
/* Collective: the shifts of mean expression (CsGroupMeans + CsAtomShiftsFromMeans). */
PETSC_EXTERN PetscErrorCode CsAtomShiftsCompute(CsDataset ds, CsDesign d, CsSplit s, CsAtomShifts *sh);
/* out[dim] = sum over the condition's atoms of the shift seen in ctx, else the balanced one, else nothing. */
PETSC_EXTERN void CsAtomShiftsSum(const CsAtomShifts *sh, const CsCondition *cond, PetscInt ctx, double *out);
/* Into / from an open HDF5 group of a model file (save: rank 0; load: every rank, sizes checked). */
PETSC_EXTERN PetscErrorCode CsAtomShiftsSave(const CsAtomShifts *sh, hid_t g);
PETSC_EXTERN PetscErrorCode CsAtomShiftsLoad(CsAtomShifts *sh, hid_t g, PetscInt nctx, PetscInt natoms, PetscInt dim);
PETSC_EXTERN PetscErrorCode CsAtomShiftsFree(CsAtomShifts *sh);

#endif
