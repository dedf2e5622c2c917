/* Command dispatch and -help. */
#include "commands.h"
#include <cellshift/sim.h>

/* -help: every object's options block is run once so that PETSc lists each option with its default. */
static PetscErrorCode PrintAllOptions(void)
{
  CsDataset   ds;
  CsDesign    d;
  CsSplit     s;
  PetscInt    n;
  char      **names;

  PetscFunctionBeginUser;
  {
    CsProblem p;
    PetscCall(CsProblemSetFromOptions(&p));
    for (PetscInt i = 0; i < p.nmodels; i++) PetscCall(PetscFree(p.models[i]));
    for (PetscInt i = 0; i < p.nbaselines; i++) PetscCall(PetscFree(p.baselines[i]));
  }
  PetscCall(CsDatasetCreate(PETSC_COMM_WORLD, &ds));
  PetscCall(CsDatasetSetFromOptions(ds));
  PetscCall(CsDesignCreate(PETSC_COMM_WORLD, &d));
  PetscCall(CsDesignSetFromOptions(d));
  PetscCall(CsSplitCreate(PETSC_COMM_WORLD, &s));
  PetscCall(CsSplitSetFromOptions(s));
  PetscCall(CsStrSplit(CsModelTypeNames(), ", ", &n, &names));
  for (PetscInt i = 0; i < n; i++) {
    CsModel m;
    PetscCall(CsModelCreate(PETSC_COMM_WORLD, &m));
    PetscCall(CsModelSetType(m, names[i]));
    PetscCall(CsModelSetFromOptions(m));
    PetscCall(CsModelDestroy(&m));
  }
  PetscCall(CsStrArrayDestroy(n, &names));
  {
    CsSim sim;
    PetscCall(CsSimCreate(PETSC_COMM_WORLD, &sim));
    PetscCall(CsSimSetFromOptions(sim));
    PetscCall(CsSimDestroy(&sim));
  }
  PetscCall(CsOptionsQueryLate(PETSC_COMM_WORLD));
  PetscCall(CsSplitDestroy(&s));
  PetscCall(CsDesignDestroy(&d));
  PetscCall(CsDatasetDestroy(&ds));
  PetscFunctionReturn(0);
}

PetscErrorCode CsCommandDispatch(const char cmd[], int argc, char **argv)
{
  PetscBool help = PETSC_FALSE;

  PetscFunctionBeginUser;
  PetscCall(PetscOptionsHasName(NULL, NULL, "-help", &help));
  if (help) {
    PetscCall(PetscPrintf(PETSC_COMM_WORLD, "Models: %s\n", CsModelTypeNames()));
    PetscCall(PrintAllOptions());
    PetscFunctionReturn(0);
  }
  if (!cmd) {
    PetscCall(PetscPrintf(PETSC_COMM_WORLD, "Usage: cellshift COMMAND [options]\n"
                                            "  run       fit the models and baselines, predict the test groups, evaluate\n"
                                            "  train     fit and save the models (model.h5, split.json)\n"
                                            "  predict   load the models and write predictions.h5ad\n"
                                            "  evaluate  score predictions.h5ad files next to the baselines\n"
                                            "  inspect FILE  describe an .h5ad file (-priors: the coverage of the priors)\n"
                                            "  simulate  write a simulated atlas with its ground truth (-cells N -genes G -output FILE.h5ad)\n"
                                            "cellshift -help lists every option.\n"));
    PetscFunctionReturn(0);
  }
  if (!strcmp(cmd, "run")) PetscCall(CsCommandRun());
  else if (!strcmp(cmd, "train")) PetscCall(CsCommandTrain());
  else if (!strcmp(cmd, "predict")) PetscCall(CsCommandPredict());
  else if (!strcmp(cmd, "evaluate")) PetscCall(CsCommandEvaluate());
  else if (!strcmp(cmd, "inspect")) PetscCall(CsCommandInspect(argc, argv));
  else if (!strcmp(cmd, "simulate")) PetscCall(CsCommandSimulate());
  else SETERRQ(PETSC_COMM_WORLD, CS_ERR_INPUT, "unknown command '%s' (run, train, predict, evaluate, inspect, simulate)", cmd);
  PetscFunctionReturn(0);
}
