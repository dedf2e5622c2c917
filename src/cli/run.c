/* cellshift run: fit every baseline and model, predict the test groups, evaluate, print the table. */
#include "commands.h"

/* Baselines first, then the models; a name given in both lists runs once. */
static PetscBool Seen(CsProblem *p, PetscInt upto, const char name[])
{
  for (PetscInt i = 0; i < upto; i++) {
    const char *other = i < p->nbaselines ? p->baselines[i] : p->models[i - p->nbaselines];
    if (!strcmp(other, name)) return PETSC_TRUE;
  }
  return PETSC_FALSE;
}

PetscErrorCode CsCommandRun(void)
{
  CsProblem   p;
  CsEvaluator e;
  double      t0   = CsTime();
  PetscBool   stop = PETSC_FALSE;

  PetscFunctionBeginUser;
  PetscCall(CsProblemSetUp(&p, PETSC_FALSE));
  PetscCall(CsEvaluatorCreate(PETSC_COMM_WORLD, &e));
  PetscCall(CsEvaluatorSetFromOptions(e));
  PetscCall(CsEvaluatorSetUp(e, p.ds, p.design, p.split));
  for (PetscInt i = 0; i < p.nbaselines + p.nmodels; i++) {
    const char *name = i < p.nbaselines ? p.baselines[i] : p.models[i - p.nbaselines];
    char        path[PETSC_MAX_PATH_LEN];
    if (Seen(&p, i, name)) continue;
    PetscCall(CsProblemFitPredict(&p, name, PETSC_TRUE, &stop));
    if (stop) break;
    PetscCall(CsProblemModelPath(&p, name, "predictions.h5ad", path));
    PetscCall(CsEvaluatorScore(e, name, path));
  }
  if (stop) { /* a signal stopped training after a checkpoint: nothing to evaluate yet */
    PetscCall(CsEvaluatorDestroy(&e));
    PetscCall(CsProblemDestroy(&p));
    PetscFunctionReturn(0);
  }
  PetscCall(CsEvaluatorWrite(e, p.outdir));
  PetscCall(CsEvaluatorPrintTable(e, PETSC_VIEWER_STDOUT_WORLD));
  PetscCall(PetscPrintf(PETSC_COMM_WORLD, "run: %s in %.1f s\n", p.outdir, CsTime() - t0));
  PetscCall(CsEvaluatorDestroy(&e));
  PetscCall(CsProblemDestroy(&p));
  PetscFunctionReturn(0);
}
