/* The commands of the cellshift program, one file each, and the set-up they share. */
#ifndef CELLSHIFT_COMMANDS_H
#define CELLSHIFT_COMMANDS_H

#include <cellshift/model.h>
#include <cellshift/eval.h>

/* Run the command named cmd (NULL: print usage, or every option's help with -help). */
PETSC_INTERN PetscErrorCode CsCommandDispatch(const char cmd[], int argc, char **argv);

PETSC_INTERN PetscErrorCode CsCommandRun(void);
PETSC_INTERN PetscErrorCode CsCommandTrain(void);
PETSC_INTERN PetscErrorCode CsCommandPredict(void);
PETSC_INTERN PetscErrorCode CsCommandEvaluate(void);
PETSC_INTERN PetscErrorCode CsCommandInspect(int argc, char **argv);
PETSC_INTERN PetscErrorCode CsCommandSimulate(void);
PETSC_INTERN PetscErrorCode CsCommandTrajectory(void);
PETSC_INTERN PetscErrorCode CsCommandScaling(void);
/* The scaling command's options block (scaling.c); ctx a CsScalingOptions, or NULL (for -help). */
PETSC_INTERN PetscErrorCode CsScalingOptionsRead(MPI_Comm comm, void *ctx);
/* The trajectory command's options block (trajectory.c); ctx its options struct, or NULL (for -help). */
PETSC_INTERN PetscErrorCode CsTrajectoryOptions(MPI_Comm comm, void *ctx);
PETSC_INTERN PetscErrorCode CsCommandSweep(void);
PETSC_INTERN PetscErrorCode CsCommandCollect(void);
/* The options blocks of sweep and collect (sweep.c); ctx NULL and any buffers for -help. */
PETSC_INTERN PetscErrorCode CsSweepOptions(MPI_Comm comm, void *ctx);
PETSC_INTERN PetscErrorCode CsCollectOptions(MPI_Comm comm, char dir[], size_t len, char runs[], size_t rlen);

/* What every command works on: the data, its design, the split, the output folder and the models asked for. */
typedef struct {
  CsDataset ds;
  CsDesign  design;
  CsSplit   split;
  char      outdir[PETSC_MAX_PATH_LEN];
  char      resume[PETSC_MAX_PATH_LEN]; /* -resume DIR ("" = none) */
  PetscBool overwrite;                  /* -overwrite: clear an earlier run's files from outdir */
  PetscBool keep_checkpoint;            /* -keep_checkpoint: keep <model>/checkpoint.h5 after a successful fit */
  int       lock;                       /* the run folder's lock (rank 0), -1 when not held */
  PetscInt  nmodels;
  char     *models[16];    /* -model a,b,c: TYPE or NAME:TYPE each */
  PetscInt  nbaselines;
  char     *baselines[16]; /* -baselines control,additive,mean: scored next to every model */
  PetscInt  nall;
  char     *all[32];       /* baselines then models, each name once (pointers into the two lists) */
  PetscBool isbaseline[32];
  CsModel   model[32];     /* the model of each entry of all[], options applied; NULL for predictions made elsewhere (evaluate) */
} CsProblem;

/* How a command uses its run folder. */
typedef enum {
  CS_RUNDIR_NEW,      /* run, train: a new run; the files of an earlier run are refused (or removed with -overwrite) */
  CS_RUNDIR_CONTINUE, /* run, train with -resume of the same folder: the run continues in its own folder */
  CS_RUNDIR_EXISTING  /* predict, evaluate: work on the files of the run in the folder */
} CsRunDirUse;

/* Collective: the run's own options (-output_dir, -model, -baselines, -overwrite, -keep_checkpoint, -resume). */
PETSC_INTERN PetscErrorCode CsProblemSetFromOptions(CsProblem *p);
/* Collective. First every option is read and checked, before any work: the run's, the data's, the design's, the
   split's and every model's (created here), and no option may be unknown (CsOptionsCheckUsed); -resume must name a
   run folder with a checkpoint for each trained model; the run folder is locked and prepared (CsRunDirPrepare).
   Then the data are read, the design and split built, and every model set up on them. With reuse (predict,
   evaluate) the split is read from <outdir>/split.json unless -split_file is given; otherwise it is made and
   saved there, with options.txt. For evaluate, a -model name that is not a cellshift model type names the
   predictions.h5ad of a model run elsewhere (scored, never fitted). */
PETSC_INTERN PetscErrorCode CsProblemSetUp(CsProblem *p, PetscBool reuse, const char command[]);
PETSC_INTERN PetscErrorCode CsProblemDestroy(CsProblem *p);
/* Collective: only the first step of CsProblemSetUp, on the options database in force: every option read and
   checked (an unknown one is an error naming it), the objects created but no file touched. Destroy p after. */
PETSC_INTERN PetscErrorCode CsProblemCheckOptions(CsProblem *p, const char command[]);
/* A model given as TYPE or NAME:TYPE (-model scgen,wide:scgen): its name (the options prefix and the folder of the
   run) and its type; the name defaults to the type. */
PETSC_INTERN PetscErrorCode CsProblemSpec(const char spec[], char name[64], char type[64]);
/* <outdir>/<name of all[k]>/<file> */
PETSC_INTERN PetscErrorCode CsProblemModelPath(CsProblem *p, PetscInt k, const char file[], char out[]);
/* The index in all[] of the i-th -model entry. */
PETSC_INTERN PetscInt CsProblemModelIndex(CsProblem *p, PetscInt i);
/* Fit model all[k], save model.h5 (and write predictions.h5ad with predict). *interrupted: a signal stopped the fit
   after a checkpoint (nothing saved or predicted; the command should stop and exit cleanly). After a complete fit
   <model>/checkpoint.h5 is removed unless -keep_checkpoint. */
PETSC_INTERN PetscErrorCode CsProblemFitPredict(CsProblem *p, PetscInt k, PetscBool predict, PetscBool *interrupted);
/* Collective: score every baseline and model of the problem and write metrics, report and plots. With fit, each
   one is fitted and predicted first (run); otherwise existing predictions are scored and only missing baselines
   are fitted (evaluate). Stops early, without evaluating, when a signal interrupted a fit. */
PETSC_INTERN PetscErrorCode CsProblemScore(CsProblem *p, PetscBool fit);

/* Options checking (options.c). Between RecordBegin and RecordEnd every options block that runs lists its options
   into the record of known options instead of printing help. CsOptionsQueryLate runs the blocks of the objects that
   read their options only late in a command (system, .h5ad writer, evaluator, gradient reduction). Collective:
   CsOptionsCheckUsed fails, with one message, when an option was given that nothing read: each is named with the
   closest known option ("-modle: did you mean -model?"), or as an option of a model the run does not have. */
PETSC_INTERN PetscErrorCode CsOptionsRecordBegin(void);
PETSC_INTERN PetscErrorCode CsOptionsRecordEnd(void);
PETSC_INTERN PetscErrorCode CsOptionsQueryLate(MPI_Comm comm);
PETSC_INTERN PetscErrorCode CsOptionsCheckUsed(MPI_Comm comm, const char command[], const char models[]);

/* Collective (rundir.c): make and lock the run folder (.cellshift.lock: a second run into it fails at once, naming
   the holder), remove the temporary files of interrupted writes, and for a new run refuse a folder holding another
   run's files (options.txt, split.json, metrics.*, gi.csv, report.md, shift_*.png, model folders with model.h5,
   predictions.h5ad, training.csv or checkpoint.h5) unless overwrite, which removes exactly those files. *lock is
   released with CsLockRelease. */
PETSC_INTERN PetscErrorCode CsRunDirPrepare(MPI_Comm comm, const char dir[], CsRunDirUse use, PetscBool overwrite, int *lock);

#endif
