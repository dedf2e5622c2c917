/* Command dispatch and -help. */
#include "commands.h"
#include <cellshift/h5ad.h>
#include <cellshift/sim.h>

/* `cellshift simulate -help`: the simulator's options (and those every command reads). */
static PetscErrorCode PrintSimulateOptions(void)
{
  CsSim     sim;
  PetscReal mb = 256;

  PetscFunctionBeginUser;
  PetscCall(CsSimCreate(PETSC_COMM_WORLD, &sim));
  PetscCall(CsSimSetFromOptions(sim));
  PetscCall(CsSimDestroy(&sim));
  PetscCall(CsSystemSetFromOptions(PETSC_COMM_WORLD));
  PetscCall(CsH5adWriterOptions(PETSC_COMM_WORLD, &mb));
  PetscFunctionReturn(0);
}

/* -help: every object's options block is run once so that PETSc lists each option with its default (the
   simulator's only without a command: they are no options of run, train, predict or evaluate). */
static PetscErrorCode PrintAllOptions(const char cmd[])
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
  if (!cmd) {
    PetscCall(PrintSimulateOptions());
    PetscCall(CsTrajectoryOptions(PETSC_COMM_WORLD, NULL));
    PetscCall(CsScalingOptionsRead(PETSC_COMM_WORLD, NULL));
    PetscCall(CsSweepOptions(PETSC_COMM_WORLD, NULL));
    {
      char dir[8] = "", runs[8] = "";
      PetscCall(CsCollectOptions(PETSC_COMM_WORLD, dir, sizeof(dir), runs, sizeof(runs)));
    }
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
    if (cmd && !strcmp(cmd, "simulate")) PetscCall(PrintSimulateOptions());
    else if (cmd && (!strcmp(cmd, "sweep") || !strcmp(cmd, "collect"))) {
      char dir[8] = "", runs[8] = "";
      if (!strcmp(cmd, "sweep")) PetscCall(CsSweepOptions(PETSC_COMM_WORLD, NULL));
      else PetscCall(CsCollectOptions(PETSC_COMM_WORLD, dir, sizeof(dir), runs, sizeof(runs)));
      PetscCall(CsSystemSetFromOptions(PETSC_COMM_WORLD));
    } else if (cmd && !strcmp(cmd, "trajectory")) {
      PetscReal mb = 256;
      PetscCall(CsTrajectoryOptions(PETSC_COMM_WORLD, NULL));
      PetscCall(CsSystemSetFromOptions(PETSC_COMM_WORLD));
      PetscCall(CsH5adWriterOptions(PETSC_COMM_WORLD, &mb));
    } else if (cmd && !strcmp(cmd, "scaling")) {
      PetscCall(CsScalingOptionsRead(PETSC_COMM_WORLD, NULL));
      PetscCall(CsSystemSetFromOptions(PETSC_COMM_WORLD));
    }
    else PetscCall(PrintAllOptions(cmd));
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
                                            "  trajectory  OT couplings between time points: states at -save_times, or -holdout_time T scored\n"
                                            "  scaling   fit L(N) = a N^-alpha + c per model to a collected table (-table collected.csv -x n_train_cells -y rmse)\n"
                                            "  sweep     run a grid or random search over run's options (-spec S.yaml -output_dir DIR [-local | -slurm | -task N])\n"
                                            "  collect   gather a sweep's metrics into DIR/collected.csv and collected.md (-sweep DIR)\n"
                                            "cellshift -help lists every option.\n"));
    PetscFunctionReturn(0);
  }
  if (!strcmp(cmd, "run")) PetscCall(CsCommandRun());
  else if (!strcmp(cmd, "train")) PetscCall(CsCommandTrain());
  else if (!strcmp(cmd, "predict")) PetscCall(CsCommandPredict());
  else if (!strcmp(cmd, "evaluate")) PetscCall(CsCommandEvaluate());
  else if (!strcmp(cmd, "inspect")) PetscCall(CsCommandInspect(argc, argv));
  else if (!strcmp(cmd, "simulate")) PetscCall(CsCommandSimulate());
  else if (!strcmp(cmd, "trajectory")) PetscCall(CsCommandTrajectory());
  else if (!strcmp(cmd, "scaling")) PetscCall(CsCommandScaling());
  else if (!strcmp(cmd, "sweep")) PetscCall(CsCommandSweep());
  else if (!strcmp(cmd, "collect")) PetscCall(CsCommandCollect());
  else SETERRQ(PETSC_COMM_WORLD, CS_ERR_INPUT, "unknown command '%s' (run, train, predict, evaluate, inspect, simulate, trajectory, sweep, collect, scaling)", cmd);
  PetscFunctionReturn(0);
}
