/* cellshift evaluate: score each model's predictions.h5ad next to the baselines (fitted here when the run folder
   does not have their predictions yet) and write metrics.json, metrics.csv, report.md and the plots. */
#include "commands.h"

PetscErrorCode CsCommandEvaluate(void)
{
  CsProblem   p;
  CsEvaluator e;
  PetscBool   stop = PETSC_FALSE;

  PetscFunctionBeginUser;
  PetscCall(CsProblemSetUp(&p, PETSC_TRUE));
  PetscCall(CsEvaluatorCreate(PETSC_COMM_WORLD, &e));
  PetscCall(CsEvaluatorSetFromOptions(e));
  PetscCall(CsEvaluatorSetUp(e, p.ds, p.design, p.split));
  for (PetscInt i = 0; i < p.nbaselines + p.nmodels; i++) {
    const char *name = i < p.nbaselines ? p.baselines[i] : p.models[i - p.nbaselines];
    char        path[PETSC_MAX_PATH_LEN];
    PetscBool   exists, dup = PETSC_FALSE;
    for (PetscInt j = 0; j < i && i >= p.nbaselines; j++)
      dup = (PetscBool)(dup || !strcmp(name, j < p.nbaselines ? p.baselines[j] : p.models[j - p.nbaselines]));
    if (dup) continue;
    PetscCall(CsProblemModelPath(&p, name, "predictions.h5ad", path));
    PetscCall(CsFileExists(PETSC_COMM_WORLD, path, &exists));
    if (!exists && i < p.nbaselines) PetscCall(CsProblemFitPredict(&p, name, PETSC_TRUE, &stop));
    CsCheckAll(PETSC_COMM_WORLD, exists || i < p.nbaselines, "no predictions at %s: run `cellshift predict` first", path);
    PetscCall(CsEvaluatorScore(e, name, path));
  }
  PetscCall(CsEvaluatorWrite(e, p.outdir));
  PetscCall(CsEvaluatorPrintTable(e, PETSC_VIEWER_STDOUT_WORLD));
  PetscCall(CsEvaluatorDestroy(&e));
  PetscCall(CsProblemDestroy(&p));
  PetscFunctionReturn(0);
}
