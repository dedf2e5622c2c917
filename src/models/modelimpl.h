/* Private to src/models: the CsModel object and the glue the learned models share. A model type fills the ops
   table in its CsModelCreate_<Type>; nothing outside src/models sees this struct. */
#ifndef CELLSHIFT_MODELIMPL_H
#define CELLSHIFT_MODELIMPL_H

#include <petsc/private/petscimpl.h>
#include <cellshift/model.h>
#include <cellshift/trainer.h>
#include <cellshift/linalg.h>

typedef struct _CsModelOps *CsModelOps;
struct _CsModelOps {
  PetscErrorCode (*setfromoptions)(CsModel, PetscOptionItems *);
  PetscErrorCode (*setup)(CsModel); /* sizes known (dataset, design, split attached) */
  PetscErrorCode (*fit)(CsModel);
  /* ctrl: n x ngenes control cells (CSR rows) of context ctx; out: n x ngenes predicted, row-major */
  PetscErrorCode (*predict)(CsModel, const CsCondition *cond, PetscInt ctx, const CsCSR *ctrl, float *out);
  /* Set-level: called on the owner rank only (not collective), with every selected control cell of the group in
     global order; out: ctrl->nrows x ngenes. A type has predict or predictset. */
  PetscErrorCode (*predictset)(CsModel, const CsCondition *cond, PetscInt ctx, const CsCSR *ctrl, float *out);
  /* Collective: g is an open HDF5 group on rank 0 and -1 on the other ranks (gather spread state to rank 0). */
  PetscErrorCode (*save)(CsModel, hid_t g);
  PetscErrorCode (*load)(CsModel, hid_t g); /* every rank, g open on every rank */
  PetscErrorCode (*view)(CsModel, PetscViewer);
  PetscErrorCode (*destroy)(CsModel);
};

struct _p_CsModel {
  PETSCHEADER(struct _CsModelOps);
  void     *data; /* the implementation's private context */
  CsDataset ds;
  CsDesign  design;
  CsSplit   split;
  PetscInt  seed;              /* -model_seed: initialisation, shuffling, noise */
  PetscInt  predict_max_cells; /* -predict_max_cells: control cells used per predicted group (0 = all) */
  char      dir[PETSC_MAX_PATH_LEN]; /* the model's folder of the run (checkpoints); "" = none */
  PetscBool named;             /* a name was given (else the type is the name) */
  PetscBool trains;            /* the type trains with CsModelTrain (checkpoints, -resume); set by its create */
  PetscBool streams;           /* the type works on a streamed dataset (rows read on demand); set by its create */
  PetscBool interrupted;       /* fit stopped by a signal after writing a checkpoint: do not predict */
  PetscInt64 nparams;          /* fitted scalars of the last fit (trained or closed form; -1: none recorded) */
  PetscBool setup, fitted;
};

/* The model's name and its options prefix ("<name>_"). */
#define CsModelName(m)   (((PetscObject)(m))->name)
#define CsModelPrefix(m) (((PetscObject)(m))->prefix)

/* Collective, for the learned models: train the model's network with t on its split (cells of the train groups,
   validation on the valid groups' cells, or drawn training cells when the split has none), checkpoints in the
   model's run folder; sets m->interrupted when a signal stopped it. */
PETSC_INTERN PetscErrorCode CsModelTrain(CsModel m, CsTrainer t, const CsTrainerCallbacks *cb);
/* The same on the cells of the groups with use[g] only (a model that cannot use some groups, e.g. whose atoms its
   prior does not know); use NULL = every group. */
PETSC_INTERN PetscErrorCode CsModelTrainGroups(CsModel m, CsTrainer t, const CsTrainerCallbacks *cb, const PetscBool use[]);
/* Collective, for the learned models after CsTrainerSetFromOptions: the training options a fit cannot work with
   (-<name>_epochs 0 would score an untrained network; -checkpoint_every must not be negative). */
PETSC_INTERN PetscErrorCode CsModelCheckTrainingOptions(CsModel m);
/* Collective: a finite-difference check of a training step's gradient (-<name>_check_gradient of the models that
   offer it), after cb->step filled P->g (set `set`, not yet reduced): the directional derivative along a random
   direction d (keyed by the model seed) against (L(p + h d) - L(p - h d)) / 2h with h = 1e-4, from two more calls
   of cb->step on the same batch; parameters and gradients are restored. Prints both and the relative error. */
PETSC_INTERN PetscErrorCode CsModelCheckGradient(CsModel m, const CsTrainerCallbacks *cb, const CsBatch *b, const CsNNPass *pass, CsNNParams P,
                                                 PetscInt set);
PETSC_INTERN PetscErrorCode CsModelRegisterAll(void);
/* Collective: the priors (CsPriorsSetFromOptions: files, symbol column, guide collapsing) on the model's dataset
   genes (with the var symbol column of its file) and its design's atoms. Destroy with CsPriorsDestroy. */
PETSC_INTERN PetscErrorCode CsModelPriorsCreate(CsModel m, CsPriors *p);

/* The scaled principal subspace of the transport models (cellot, flow): z = (x - mean) V / scale, V the top K
   principal axes of the training cells (CsPCAFit, controls included), scale the root mean variance of the K
   axes (so that networks see coordinates of order 1). A prediction maps z0 to z1 and lifts it as
   x + scale (z1 - z0) V^T: the cell's part outside the subspace is kept. */
#define CS_PCA_SPACE_MAX 512 /* most axes */
typedef struct {
  PetscInt K, G;
  double  *mean, *V, *mv; /* [G], [G x K] gene-major (row j: gene j's loadings), [K] = mean V */
  double   scale;
} CsPCASpace;
PETSC_INTERN PetscErrorCode CsPCASpaceInit(CsPCASpace *s, PetscInt K, PetscInt G);
PETSC_INTERN PetscErrorCode CsPCASpaceFree(CsPCASpace *s);
/* Collective: fit on the cells of the model's train groups. */
PETSC_INTERN PetscErrorCode CsPCASpaceFit(CsModel m, const CsPCAOptions *opt, CsPCASpace *s);
/* z[X->nrows, K] of the CSR rows, never densified. */
PETSC_INTERN void           CsPCASpaceProject(const CsPCASpace *s, const CsCSR *X, float *z);
/* out[X->nrows, G] = X + scale (z1 - z0) V^T. */
PETSC_INTERN void           CsPCASpaceLift(const CsPCASpace *s, const CsCSR *X, const float *z0, const float *z1, float *out);
/* model.h5 arrays pca_mean [G], pca_axes [G x K], pca_scale [1] (save: rank 0's group). */
PETSC_INTERN PetscErrorCode CsPCASpaceSave(const CsPCASpace *s, hid_t g);
PETSC_INTERN PetscErrorCode CsPCASpaceLoad(CsPCASpace *s, hid_t g);

#endif
