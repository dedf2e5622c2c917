/* Fuzz target: split.json as -split_file reads it (CsSplitSetUp on the design of the embedded PerturBench devel
   data, contexts = cell_type). Each input is the file's text. */
#include "fuzz.h"
#include <cellshift/split.h>

static char      path[PETSC_MAX_PATH_LEN];
static CsDataset ds;
static CsDesign  design;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  const char *src = getenv("CS_SOURCE_DIR");
  char        data[PETSC_MAX_PATH_LEN];
  (void)argc, (void)argv;
  CsFuzzInit(NULL);
  snprintf(path, sizeof(path), "%s/split.json", CsFuzzDir());
  snprintf(data, sizeof(data), "%s/input/perturbench_devel/devel.h5ad", src ? src : ".");
  if (CsDatasetCreate(PETSC_COMM_WORLD, &ds) || CsDatasetSetFile(ds, data, NULL) || CsDesignCreate(PETSC_COMM_WORLD, &design)) abort();
  if (PetscStrncpy(design->context_key, "cell_type", sizeof(design->context_key))) abort();
  if (CsDesignAddKeys(design, ds) || CsDatasetSetUp(ds) || CsDesignSetUp(design, ds)) {
    fprintf(stderr, "cannot read %s (set CS_SOURCE_DIR to the repository)\n", data);
    abort();
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  CsSplit s;

  CsFuzzWrite(path, data, size);
  if (CsSplitCreate(PETSC_COMM_WORLD, &s) || PetscStrncpy(s->file, path, sizeof(s->file))) abort();
  (void)CsSplitSetUp(s, design);
  if (CsSplitDestroy(&s)) abort();
  return 0;
}
