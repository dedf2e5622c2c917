/* The commands of the cellshift program, one file each, and the set-up they share. */
#ifndef CELLSHIFT_COMMANDS_H
#define CELLSHIFT_COMMANDS_H

#include <cellshift/model.h>
#include <cellshift/eval.h>

/* Run the command named cmd (NULL: print usage, or every option's help with -help). */
PetscErrorCode CsCommandDispatch(const char cmd[], int argc, char **argv);

PetscErrorCode CsCommandRun(void);
PetscErrorCode CsCommandTrain(void);
PetscErrorCode CsCommandPredict(void);
PetscErrorCode CsCommandEvaluate(void);
PetscErrorCode CsCommandInspect(int argc, char **argv);

/* What every command works on: the data, its design, the split, the output folder and the models asked for. */
typedef struct {
  CsDataset ds;
  CsDesign  design;
  CsSplit   split;
  char      outdir[PETSC_MAX_PATH_LEN];
  PetscInt  nmodels;
  char     *models[16];    /* -model a,b,c: TYPE or NAME:TYPE each */
  PetscInt  nbaselines;
  char     *baselines[16]; /* -baselines control,additive,mean: scored next to every model */
  PetscInt  nall;
  char     *all[32];       /* baselines then models, each name once (pointers into the two lists) */
  PetscBool isbaseline[32];
} CsProblem;

/* Collective: the run's own options (-output_dir, -model, -baselines). */
PetscErrorCode CsProblemSetFromOptions(CsProblem *p);
/* Collective: options, read the data, build design and split. With reuse, the split is read from
   <outdir>/split.json unless -split_file is given (predict, evaluate); otherwise it is made and saved there. */
PetscErrorCode CsProblemSetUp(CsProblem *p, PetscBool reuse);
PetscErrorCode CsProblemDestroy(CsProblem *p);
/* A model given as TYPE or NAME:TYPE (-model scgen,wide:scgen): its name (the options prefix and the folder of the
   run) and its type; the name defaults to the type. */
PetscErrorCode CsProblemSpec(const char spec[], char name[64], char type[64]);
/* <outdir>/<name>/<file> */
PetscErrorCode CsProblemModelPath(CsProblem *p, const char spec[], const char file[], char out[]);
/* Create the model of a spec on the problem (options applied, not fitted). */
PetscErrorCode CsProblemModel(CsProblem *p, const char spec[], CsModel *m);
/* Fit, save model.h5 and write predictions.h5ad of one model. *interrupted: a signal stopped the fit after a
   checkpoint (nothing saved or predicted; the command should stop and exit cleanly). */
PetscErrorCode CsProblemFitPredict(CsProblem *p, const char spec[], PetscBool predict, PetscBool *interrupted);
/* Collective: score every baseline and model of the problem and write metrics, report and plots. With fit, each
   one is fitted and predicted first (run); otherwise existing predictions are scored and only missing baselines
   are fitted (evaluate). Stops early, without evaluating, when a signal interrupted a fit. */
PetscErrorCode CsProblemScore(CsProblem *p, PetscBool fit);

#endif
