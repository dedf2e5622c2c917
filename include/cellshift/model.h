/* CsModel: a perturbation-response predictor behind one plug-in interface (a PETSc object, typed like TS).

   A model is fitted on the train groups of a split (and may use the valid groups for early stopping); it then
   predicts, for a condition in a context, what each given control cell of that context would look like under
   the condition. Every type is a file src/models/<type>.c with static ops and one exported
   CsModelCreate_<Type>(CsModel), registered in src/models/registry.c (CsModelRegisterAll, called by the package
   initialiser) and chosen with CsModelSetType.

   Names and options: a model has a name (default: its type) that is its options prefix ("<name>_") and its folder
   in a run, so one run can hold two configurations of one type (-model scgen,wide:scgen -wide_latent 50).
   -<name>_model_view prints it after fitting.

   Prediction: per cell (the predict op: a block of control cells in, the same number of predicted cells out, any
   rank with any rows), or per group (the predictset op: the whole test group's selected control cells, gathered
   in global order on the group's owner rank, give the group's predictions at once, e.g. a model over sets of
   cells). CsModelWritePredictions uses whichever the type has.

   Collectives: setup, fit, predict, save and load are collective on the model's communicator (predict is called
   by every rank with its own rows, possibly none). */
#ifndef CELLSHIFT_MODEL_H
#define CELLSHIFT_MODEL_H

#include <cellshift/split.h>
#include <cellshift/ode.h>

typedef struct _p_CsModel *CsModel;
typedef const char        *CsModelType;
#define CSMODELCONTROL  "control"
#define CSMODELADDITIVE "additive"
#define CSMODELLINEAR   "linear"
#define CSMODELSCGEN    "scgen"
#define CSMODELCPA      "cpa"
#define CSMODELMEAN     "mean"
#define CSMODELGRN      "grn"
#define CSMODELOT       "ot"
#define CSMODELCELLOT   "cellot"
#define CSMODELFLOW     "flow"
#define CSMODELGEARS    "gears"

PETSC_EXTERN PetscClassId CS_MODEL_CLASSID;

/* Registers the class, its log events and every model type (called by CsModelCreate; idempotent), and a
   finaliser with PetscRegisterFinalize. */
PETSC_EXTERN PetscErrorCode CsModelInitializePackage(void);
PETSC_EXTERN PetscErrorCode CsModelCreate(MPI_Comm comm, CsModel *m);
/* Setting the type a model already has does nothing; another type destroys the old implementation first. */
PETSC_EXTERN PetscErrorCode CsModelSetType(CsModel m, CsModelType type);
PETSC_EXTERN PetscErrorCode CsModelGetType(CsModel m, CsModelType *type);
/* The model's name: its options prefix ("<name>_") and its folder in a run. Default: the type, set by
   CsModelSetType when no name was given. Letters, digits and '_' only. */
PETSC_EXTERN PetscErrorCode CsModelSetName(CsModel m, const char name[]);
PETSC_EXTERN PetscErrorCode CsModelGetName(CsModel m, const char **name);
/* Options: -model_seed, -predict_max_cells (shared by every model), then the type's own, with the model's prefix. */
PETSC_EXTERN PetscErrorCode CsModelSetFromOptions(CsModel m);
/* Attach the data the model is fitted on and predicts for (references are taken, not copies). */
PETSC_EXTERN PetscErrorCode CsModelSetProblem(CsModel m, CsDataset ds, CsDesign d, CsSplit s);
/* The model's folder of the run (checkpoints, loss curve); "" = none. */
PETSC_EXTERN PetscErrorCode CsModelSetOutputDir(CsModel m, const char dir[]);
PETSC_EXTERN PetscErrorCode CsModelSetUp(CsModel m);
PETSC_EXTERN PetscErrorCode CsModelFit(CsModel m);
/* Whether the last fit was stopped by a signal after writing a checkpoint (then the model must not predict). */
PETSC_EXTERN PetscErrorCode CsModelGetInterrupted(CsModel m, PetscBool *interrupted);
/* Per-cell prediction (types with a predict op): ctrl holds n control cells (CSR rows) of context ctx; out
   [n x ngenes] row-major receives their predicted expression under cond. Collective (a rank may have n = 0). */
PETSC_EXTERN PetscErrorCode CsModelPredict(CsModel m, const CsCondition *cond, PetscInt ctx, const CsCSR *ctrl, float *out);
/* Whether the type trains a network with CsTrainer: it then writes <dir>/checkpoint.h5 and continues from
   -resume DIR/<name>/checkpoint.h5. */
PETSC_EXTERN PetscErrorCode CsModelTrains(CsModel m, PetscBool *trains);
/* The trained scalars of the model's last fit (the parameter sets its trainer optimised); -1 for a model that
   does not train with the trainer (baselines, closed-form fits) or was loaded rather than fitted. */
PETSC_EXTERN PetscErrorCode CsModelGetParameterCount(CsModel m, PetscInt64 *n);
/* Whether the type predicts a group at once (predictset op) rather than cell by cell. */
PETSC_EXTERN PetscErrorCode CsModelHasPredictSet(CsModel m, PetscBool *set);
/* model.h5: type, name, options, atoms/contexts/genes it was fitted with, and the implementation's parameters.
   Collective: the implementation's save op is called on every rank with the file open on rank 0 only (group < 0
   elsewhere), so a model whose state is spread over the ranks can gather it; the file is written atomically.
   Load: every rank reads, after checking that the design matches (same atoms, contexts and genes). */
PETSC_EXTERN PetscErrorCode CsModelSave(CsModel m, const char path[]);
PETSC_EXTERN PetscErrorCode CsModelLoad(CsModel m, const char path[]);
PETSC_EXTERN PetscErrorCode CsModelView(CsModel m, PetscViewer v);
/* Reference counted (PetscObjectReference): the object goes when the last reference is destroyed. */
PETSC_EXTERN PetscErrorCode CsModelDestroy(CsModel *m);

/* Collective: predict every test group of the model's split and write a predictions.h5ad at `path`:
   for each test group in group order, one row per control cell of its context (at most -predict_max_cells of them,
   evenly spaced in global order: CsSubsample; 0 = all), then every observed control cell of each context that has
   a test group. obs holds the perturbation key (the condition name; the control value for the observed controls),
   the context key and the dose key when the design has them, and cellshift_kind = predicted / observed. var =
   the genes. The file is the same for any number of ranks. */
PETSC_EXTERN PetscErrorCode CsModelWritePredictions(CsModel m, const char path[]);

/* Registry. */
PETSC_EXTERN PetscFunctionList CsModelList;
PETSC_EXTERN PetscErrorCode    CsModelRegister(const char type[], PetscErrorCode (*create)(CsModel));
/* "control, additive, ...": the registered types, for messages and -help. */
PETSC_EXTERN const char       *CsModelTypeNames(void);

/* The shift of every atom in some space of dimension dim (expression for the additive baseline, a latent space
   for scGen's vector arithmetic). From single-atom train groups (with withvalid also the valid groups: a model
   without hyper-parameters has nothing to tune on them) with a control in their context: ctxdelta
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
PETSC_EXTERN PetscErrorCode CsAtomShiftsGroups(CsDesign d, CsSplit s, PetscBool withvalid, PetscBool *want);
/* Shifts from per-group mean vectors means[g * dim + k] (only the wanted groups are read). Not collective. */
PETSC_EXTERN PetscErrorCode CsAtomShiftsFromMeans(CsDesign d, CsSplit s, PetscBool withvalid, PetscInt dim, const double *means, CsAtomShifts *sh);
/* Collective: the shifts of mean expression (CsDesignGroupMeans + CsAtomShiftsFromMeans). */
PETSC_EXTERN PetscErrorCode CsAtomShiftsCompute(CsDataset ds, CsDesign d, CsSplit s, PetscBool withvalid, CsAtomShifts *sh);
/* out[dim] = sum over the condition's atoms of the shift seen in ctx, else the balanced one, else nothing. */
PETSC_EXTERN void CsAtomShiftsSum(const CsAtomShifts *sh, const CsCondition *cond, PetscInt ctx, double *out);
/* Into / from an open HDF5 group of a model file (save: rank 0; load: every rank, sizes checked). */
PETSC_EXTERN PetscErrorCode CsAtomShiftsSave(const CsAtomShifts *sh, hid_t g);
PETSC_EXTERN PetscErrorCode CsAtomShiftsLoad(CsAtomShifts *sh, hid_t g, PetscInt nctx, PetscInt natoms, PetscInt dim);
PETSC_EXTERN PetscErrorCode CsAtomShiftsFree(CsAtomShifts *sh);

/* Collective: the mean shift over the training perturbations of every context (the `mean` baseline, with
   withvalid: it also fits on the valid groups; and without, the reference of Systema's metrics, the mean of the
   perturbation centroids, is mean(control) + shift):
   shift[c * ngenes + j] = mean over the train (and with withvalid valid) groups of context c with at least one atom (any number of atoms, any
   dose, each group weighing the same) of mean(group)_j - mean(control of c)_j. A context without such a group (or
   without controls) gets the average of the other contexts' shifts, each context weighing the same, and 0 when no
   context has one; own[c] (may be NULL) tells which contexts have their own. Means are CsDesignGroupMeans. */
PETSC_EXTERN PetscErrorCode CsContextMeanShifts(CsDataset ds, CsDesign d, CsSplit s, PetscBool withvalid, double *shift, PetscBool *own);

/* ============================================ time-course flow ============================================ */
/* A velocity field v(x, t) over a whole time course (cellshift trajectory -method flow), trained by minibatch-OT
   flow matching between successive time points (src/models/timeflow.c). Cells are given in a PCA space; the field
   works on x / scale (scale: the RMS coordinate of the cells) and u = (t - t_first) / span. Each step picks a pair
   (t_k, t_k+1) and batch cells of each (with replacement), all by counter-based draws keyed by (seed, step, j), so the
   batch is the same whatever the number of ranks; couples them by balanced entropic OT (CsOTSolveDense, epsilon
   relative to the mean cost, computed identically on every rank); each source row j draws a partner from its plan
   row and s ~ U(0, 1); x = (1 - s) x0 + s x1 at u_k + s (u_k+1 - u_k), target (x1 - x0) / (u_k+1 - u_k); MSE over
   the batch. Rows j are split over the ranks (j mod size), the loss is normalised by the global batch and the
   gradient summed over ranks (MPI_Allreduce), Adam steps identically on every rank. The MLP is CsMLP (layers of
   hidden SiLU units, linear output) on [x | sinusoidal embedding of u (tdim)]. */
typedef struct {
  PetscInt  epochs, hidden, layers, tdim, batch; /* an epoch: ceil(source cells of all pairs / batch) steps */
  PetscInt  ot_max_iter;                         /* the minibatch coupling's iteration cap */
  PetscReal lr, ot_eps, ot_tol;                  /* ot_tol: its marginal error tolerance */
  uint64_t  seed;
} CsTimeFlowOptions;
typedef struct _n_CsTimeFlow *CsTimeFlow;
/* Collective: train on nt time points times[nt] (ascending) with count[k] cells each, z [sum count, K] grouped by
   time point in that order, the same on every rank. Prints one loss line per epoch. */
PETSC_EXTERN PetscErrorCode CsTimeFlowTrain(MPI_Comm comm, const CsTimeFlowOptions *o, PetscInt K, PetscInt nt, const double *times,
                                            const PetscInt *count, const float *z, CsTimeFlow *tf);
/* Not collective: move the n x K points x from time t0 to t1 through the field (PETSc TS, src/ode, with the options
   of prefix; blocks of 64 points are one TS state: callers cut fixed blocks for rank-independent steps). */
PETSC_EXTERN PetscErrorCode CsTimeFlowIntegrate(CsTimeFlow tf, const char prefix[], const char what[], double t0, double t1, PetscInt n, float *x,
                                                CsODEStats *st);
PETSC_EXTERN PetscErrorCode CsTimeFlowDestroy(CsTimeFlow *tf);

#endif
