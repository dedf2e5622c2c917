/* cellshift scaling: power laws L(N) = a N^-alpha + c of a collected table of runs (see include/cellshift/scaling.h). */
#include "commands.h"
#include <cellshift/scaling.h>

/* The options block (ctx: a CsScalingOptions, or NULL for -help). */
PetscErrorCode CsScalingOptionsRead(MPI_Comm comm, void *ctx)
{
  CsScalingOptions *o = (CsScalingOptions *)ctx, local;
  char              ys[1024] = "rmse", simple[1024] = "additive,linear,mean,control";
  PetscInt          seed = 0;

  PetscFunctionBeginUser;
  if (!o) o = &local;
  PetscCall(PetscMemzero(o, sizeof(*o)));
  PetscCall(PetscStrncpy(o->x, "n_train_cells", sizeof(o->x)));
  PetscCall(PetscStrncpy(o->by, "model", sizeof(o->by)));
  PetscCall(PetscStrncpy(o->outdir, ".", sizeof(o->outdir)));
  o->nboot = 1000, o->level = 0.95;
  PetscOptionsBegin(comm, NULL, "Scaling laws of a table of runs", "CsScalingRun");
  PetscCall(PetscOptionsString("-table", "The collected table (CSV with a header: cellshift collect's collected.csv)", "CsScalingRun", o->table, o->table,
                               sizeof(o->table), NULL));
  PetscCall(PetscOptionsString("-x", "Column of N (n_train_cells, params, depth_fraction or any numeric column)", "CsScalingRun", o->x, o->x, sizeof(o->x), NULL));
  PetscCall(PetscOptionsString("-y", "Loss column(s) to fit, comma-separated (lower is better: rmse, energy_distance, ...)", "CsScalingRun", ys, ys,
                               sizeof(ys), NULL));
  PetscCall(PetscOptionsString("-by", "Column whose values are fitted separately", "CsScalingRun", o->by, o->by, sizeof(o->by), NULL));
  PetscCall(PetscOptionsString("-simple", "Values of -by that are simple models (compared with every other one)", "CsScalingRun", simple, simple,
                               sizeof(simple), NULL));
  PetscCall(PetscOptionsInt("-bootstrap", "Bootstrap resamples of the rows", "CsScalingRun", o->nboot, &o->nboot, NULL));
  PetscCall(PetscOptionsInt("-bootstrap_seed", "Seed of the bootstrap resamples", "CsScalingRun", seed, &seed, NULL));
  PetscCall(PetscOptionsReal("-confidence", "Coverage of the percentile intervals", "CsScalingRun", o->level, &o->level, NULL));
  PetscCall(PetscOptionsString("-output_dir", "Folder of scaling.csv, crossover.csv, scaling.md and scaling_<y>.png", "CsScalingRun", o->outdir, o->outdir,
                               sizeof(o->outdir), NULL));
  PetscOptionsEnd();
  o->seed = (uint64_t)seed;
  {
    PetscInt n;
    char   **parts;
    PetscCall(CsStrSplit(ys, ",", &n, &parts));
    CsCheckAll(comm, n >= 1 && n <= 8, "-y %s: give 1 to 8 columns", ys);
    for (PetscInt i = 0; i < n; i++) PetscCall(PetscStrncpy(o->y[i], parts[i], sizeof(o->y[i])));
    o->ny = n;
    PetscCall(CsStrArrayDestroy(n, &parts));
    PetscCall(CsStrSplit(simple, ",", &n, &parts));
    CsCheckAll(comm, n <= 16, "-simple %s: at most 16 models", simple);
    for (PetscInt i = 0; i < n; i++) PetscCall(PetscStrncpy(o->simple[i], parts[i], sizeof(o->simple[i])));
    o->nsimple = n;
    PetscCall(CsStrArrayDestroy(n, &parts));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsCommandScaling(void)
{
  CsScalingOptions o;
  PetscErrorCode   ierr;

  PetscFunctionBeginUser;
  PetscCall(CsOptionsRecordBegin());
  ierr = CsScalingOptionsRead(PETSC_COMM_WORLD, &o);
  if (!ierr) ierr = CsSystemSetFromOptions(PETSC_COMM_WORLD);
  PetscCall(CsOptionsRecordEnd());
  PetscCall(ierr);
  PetscCall(CsOptionsCheckUsed(PETSC_COMM_WORLD, "scaling", "none"));
  CsCheckAll(PETSC_COMM_WORLD, o.table[0], "cellshift scaling needs -table FILE.csv");
  CsCheckAll(PETSC_COMM_WORLD, o.nboot >= 10, "-bootstrap %" PetscInt_FMT ": at least 10 resamples", o.nboot);
  CsCheckAll(PETSC_COMM_WORLD, o.level > 0 && o.level < 1, "-confidence %g must be in (0, 1)", (double)o.level);
  PetscCall(CsScalingRun(PETSC_COMM_WORLD, &o));
  PetscCall(PetscPrintf(PETSC_COMM_WORLD, "scaling: %s/scaling.csv, crossover.csv, scaling.md and the plots written\n", o.outdir));
  PetscFunctionReturn(0);
}
