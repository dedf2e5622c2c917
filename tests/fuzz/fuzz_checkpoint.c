/* Fuzz target: the checkpoint reader, through the public trainer API as `-resume DIR` uses it. A tiny model (one
   3 x 4 weight and a BatchNorm-like buffer, Adam) trains on 200 cells of the embedded PerturBench devel data; each
   input is DIR/fz/checkpoint.h5, and training resumes from it (a checkpoint that loads runs the remaining epoch).

   CS_FUZZ_MAKE_SEED=FILE: instead of fuzzing, train one of two epochs from scratch and write the checkpoint to FILE
   (the valid seed: it matches this harness's seed and cells). */
#include "fuzz.h"
#include <cellshift/trainer.h>

static char      indir[PETSC_MAX_PATH_LEN], outdir[PETSC_MAX_PATH_LEN], input[PETSC_MAX_PATH_LEN];
static CsDataset ds;
static uint8_t *train;

static PetscErrorCode Step(void *ctx, const CsBatch *b, const CsNNPass *pass, PetscInt *set, double *loss)
{
  (void)ctx, (void)b, (void)pass;
  *set = 0, *loss = 0.5;
  return 0;
}

static PetscErrorCode Loss(void *ctx, const CsBatch *b, const CsNNPass *pass, double *loss)
{
  (void)ctx, (void)b, (void)pass;
  *loss = 0.25;
  return 0;
}

/* One training run, resumed from indir when resume is set; errors are returned, not fatal. */
static PetscErrorCode Run(PetscBool resume)
{
  CsNNParams         P;
  CsTrainer          t;
  PetscInt           set;
  PetscBool          interrupted;
  CsTrainerCallbacks cb = {NULL, Step, Loss};
  PetscErrorCode     ierr;

  PetscFunctionBeginUser;
  if (resume) PetscCall(PetscOptionsSetValue(NULL, "-resume", indir));
  else PetscCall(PetscOptionsClearValue(NULL, "-resume"));
  PetscCall(CsNNParamsCreate(PETSC_COMM_WORLD, &P));
  PetscCall(CsNNParamsAdd(P, "w", 3, 4, CS_NN_INIT_FANIN, 4, NULL));
  PetscCall(CsNNParamsAddBuffer(P, "running_mean", 3, CS_NN_INIT_ZERO, NULL));
  PetscCall(CsNNParamsSetUp(P));
  PetscCall(CsNNParamsInitialize(P, 7));
  PetscCall(CsTrainerCreate(PETSC_COMM_WORLD, &t));
  PetscCall(CsTrainerSetDefaults(t, 2, 64, 5));
  PetscCall(CsTrainerAddOptimizer(t, "", 1e-3, 0.0, &set));
  PetscCall(CsTrainerSetFromOptions(t));
  PetscCall(CsTrainerSetParams(t, set, P));
  PetscCall(CsTrainerSetCallbacks(t, &cb));
  PetscCall(CsTrainerSetData(t, ds, NULL, train, NULL, 11));
  PetscCall(CsTrainerSetCheckpointDir(t, outdir, "fz", "fz"));
  ierr = CsTrainerTrain(t, &interrupted);
  PetscCall(CsTrainerDestroy(&t));
  PetscCall(CsNNParamsDestroy(&P));
  PetscFunctionReturn(ierr);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  const char *src = getenv("CS_SOURCE_DIR"), *seed = getenv("CS_FUZZ_MAKE_SEED");
  char        data[PETSC_MAX_PATH_LEN], sub[PETSC_MAX_PATH_LEN];
  (void)argc, (void)argv;
  CsFuzzInit(NULL);
  snprintf(indir, sizeof(indir), "%s/in", CsFuzzDir());
  snprintf(sub, sizeof(sub), "%s/fz", indir);
  snprintf(input, sizeof(input), "%s/checkpoint.h5", sub);
  snprintf(outdir, sizeof(outdir), "%s/out", CsFuzzDir());
  if (CsMakeDir(PETSC_COMM_WORLD, sub) || CsMakeDir(PETSC_COMM_WORLD, outdir)) abort();
  snprintf(data, sizeof(data), "%s/input/perturbench_devel/devel.h5ad", src ? src : ".");
  if (CsDatasetCreate(PETSC_COMM_WORLD, &ds) || CsDatasetSetFile(ds, data, NULL) || CsDatasetSetUp(ds)) {
    fprintf(stderr, "cannot read %s (set CS_SOURCE_DIR to the repository)\n", data);
    abort();
  }
  if (PetscCalloc1(CsMaskBytes(ds->nlocal), &train)) abort();
  for (PetscInt i = 0; i < PetscMin(ds->nlocal, 200); i++) CsMaskSet(train, i);
  if (seed) { /* one epoch of two, checkpointed */
    char made[PETSC_MAX_PATH_LEN], cmd[3 * PETSC_MAX_PATH_LEN];
    if (PetscOptionsSetValue(NULL, "-checkpoint_every", "1") || PetscOptionsSetValue(NULL, "-epochs", "1") || Run(PETSC_FALSE)) abort();
    snprintf(made, sizeof(made), "%s/checkpoint.h5", outdir);
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", made, seed);
    exit(system(cmd) ? 1 : 0);
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  CsFuzzWrite(input, data, size);
  (void)Run(PETSC_TRUE);
  CsFuzzNoOpenObjects("resuming from the checkpoint");
  return 0;
}
