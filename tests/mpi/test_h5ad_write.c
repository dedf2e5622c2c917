/* The predictions writer at 1, 2 and 3 ranks: rows split unevenly (rank 0 takes most, ranks beyond 1 none), the
   file read back by python3-anndata (tests/python/check_predictions_anndata.py) against the values, genes and
   categories given here; error paths leave no file behind. */
#include "testing.h"
#include <cellshift/h5ad.h>
#include <dirent.h>
#include <stdlib.h>

#define NROWS  300
#define NGENES 7

static float value(PetscInt i, PetscInt j) { return (float)(0.5 * i - 1.25 * j + (double)((i * j) % 7) / 8.0); }

/* This rank's rows: rank 0 takes the first 173 (all with one rank), rank 1 the rest, other ranks none. */
static void my_rows(PetscInt nrows, PetscInt *row0, PetscInt *n)
{
  int rank, size;
  MPI_Comm_rank(PETSC_COMM_WORLD, &rank);
  MPI_Comm_size(PETSC_COMM_WORLD, &size);
  PetscInt first = size == 1 ? nrows : PetscMin(nrows, 173);
  *row0          = rank == 0 ? 0 : rank == 1 ? first : nrows;
  *n             = rank == 0 ? first : rank == 1 ? nrows - first : 0;
}

typedef struct {
  char    *genes[NGENES];
  char    *cond_cats[3], *type_cats[2], *many_cats[150];
  int32_t  cond[NROWS], type[NROWS], many[NROWS];
  CsH5adOutColumn cols[3];
} Fixture;

static PetscErrorCode FixtureSetUp(Fixture *F)
{
  const char *cond[3] = {"control", "KLF1", "KLF1+MAP2K6"}, *type[2] = {"A", "B"};

  PetscFunctionBeginUser;
  for (PetscInt j = 0; j < NGENES; j++) {
    char buf[32];
    /* one non-ASCII name: UTF-8 must survive */
    if (j == 3) PetscCall(PetscStrallocpy("IFN\xce\xb3", &F->genes[j]));
    else {
      PetscCall(PetscSNPrintf(buf, sizeof(buf), "gene%" PetscInt_FMT, j));
      PetscCall(PetscStrallocpy(buf, &F->genes[j]));
    }
  }
  for (int k = 0; k < 3; k++) F->cond_cats[k] = (char *)cond[k];
  for (int k = 0; k < 2; k++) F->type_cats[k] = (char *)type[k];
  for (int k = 0; k < 150; k++) {
    char buf[16];
    PetscCall(PetscSNPrintf(buf, sizeof(buf), "c%03d", k));
    PetscCall(PetscStrallocpy(buf, &F->many_cats[k]));
  }
  for (int i = 0; i < NROWS; i++) {
    F->cond[i] = i % 3;
    F->type[i] = i == 3 ? -1 : (i / 2) % 2; /* row 3: missing */
    F->many[i] = (i * 7) % 150;              /* 150 categories: stored as int16 codes */
  }
  F->cols[0] = (CsH5adOutColumn){"condition", 3, F->cond_cats, F->cond};
  F->cols[1] = (CsH5adOutColumn){"cell_type", 2, F->type_cats, F->type};
  F->cols[2] = (CsH5adOutColumn){"many", 150, F->many_cats, F->many};
  PetscFunctionReturn(0);
}

static PetscErrorCode FixtureDestroy(Fixture *F)
{
  PetscFunctionBeginUser;
  for (PetscInt j = 0; j < NGENES; j++) PetscCall(PetscFree(F->genes[j]));
  for (int k = 0; k < 150; k++) PetscCall(PetscFree(F->many_cats[k]));
  PetscFunctionReturn(0);
}

static void json_strings(FILE *f, int n, char *const *s)
{
  fprintf(f, "[");
  for (int k = 0; k < n; k++) fprintf(f, "%s\"%s\"", k ? ", " : "", s[k]);
  fprintf(f, "]");
}

static void json_ints(FILE *f, int n, const int32_t *v)
{
  fprintf(f, "[");
  for (int k = 0; k < n; k++) fprintf(f, "%s%d", k ? ", " : "", (int)v[k]);
  fprintf(f, "]");
}

/* Rank 0 writes what the file must hold (from the fixture, not from the file), runs the checker; all ranks get
   its verdict. */
static PetscErrorCode CheckWithAnndata(const char dir[], const char file[], const Fixture *F, PetscInt nrows,
                                       PetscBool *ok)
{
  PetscMPIInt rank;
  int         status = 0;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(PETSC_COMM_WORLD, &rank));
  if (!rank) {
    char        spec[PETSC_MAX_PATH_LEN], script[PETSC_MAX_PATH_LEN], cmd[3 * PETSC_MAX_PATH_LEN];
    const char *py = getenv("CS_PYTHON") ? getenv("CS_PYTHON") : "/usr/bin/python3";
    FILE       *f;

    PetscCall(PetscSNPrintf(spec, sizeof(spec), "%s.spec.json", file));
    f = fopen(spec, "w");
    PetscCheck(f, PETSC_COMM_SELF, PETSC_ERR_FILE_OPEN, "cannot write %s", spec);
    fprintf(f, "{\"n_obs\": %d, \"n_vars\": %d, \"genes\": ", (int)nrows, NGENES);
    json_strings(f, NGENES, F->genes);
    fprintf(f, ", \"obs_columns\": [\"condition\", \"cell_type\", \"many\"], \"obs\": {");
    fprintf(f, "\"condition\": {\"categories\": ");
    json_strings(f, 3, F->cond_cats);
    fprintf(f, ", \"codes\": ");
    json_ints(f, (int)nrows, F->cond);
    fprintf(f, "}, \"cell_type\": {\"categories\": ");
    json_strings(f, 2, F->type_cats);
    fprintf(f, ", \"codes\": ");
    json_ints(f, (int)nrows, F->type);
    fprintf(f, "}, \"many\": {\"categories\": ");
    json_strings(f, 150, F->many_cats);
    fprintf(f, ", \"codes\": ");
    json_ints(f, (int)nrows, F->many);
    fprintf(f, "}}, \"X\": [");
    for (PetscInt i = 0; i < nrows; i++)
      for (PetscInt j = 0; j < NGENES; j++) fprintf(f, "%s%.9g", i || j ? ", " : "", (double)value(i, j));
    fprintf(f, "]}\n");
    fclose(f);
    PetscCall(CsTestSourcePath("tests/python/check_predictions_anndata.py", script));
    PetscCall(PetscSNPrintf(cmd, sizeof(cmd), "%s %s %s %s", py, script, file, spec));
    status = system(cmd);
    (void)dir;
  }
  PetscCallMPI(MPI_Bcast(&status, 1, MPI_INT, 0, PETSC_COMM_WORLD));
  *ok = status == 0 ? PETSC_TRUE : PETSC_FALSE;
  PetscFunctionReturn(0);
}

/* Write nrows rows of the fixture; each rank writes its block in `calls` pieces. */
static PetscErrorCode WriteFile(const char path[], const Fixture *F, PetscInt nrows, PetscInt calls)
{
  CsH5adWriter w;
  PetscInt     row0, n;
  float       *rows;

  PetscFunctionBeginUser;
  my_rows(nrows, &row0, &n);
  PetscCall(PetscMalloc1(PetscMax(n, 1) * NGENES, &rows));
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt j = 0; j < NGENES; j++) rows[i * NGENES + j] = value(row0 + i, j);
  PetscCall(CsH5adWriterCreate(PETSC_COMM_WORLD, path, nrows, NGENES, F->genes, 3, F->cols, &w));
  for (PetscInt c = 0, done = 0; c < calls; c++) {
    PetscInt m = c == calls - 1 ? n - done : n / calls;
    PetscCall(CsH5adWriterWriteRows(w, row0 + done, m, rows + done * NGENES));
    done += m;
  }
  PetscCall(CsH5adWriterCommit(&w));
  CS_EXPECT(!w, "Commit must set the writer to NULL");
  PetscCall(PetscFree(rows));
  PetscFunctionReturn(0);
}

/* Names in dir (rank 0), excluding the checker's spec files. */
static PetscErrorCode CountFiles(const char dir[], const char contains[], int *count)
{
  PetscMPIInt rank;

  PetscFunctionBeginUser;
  *count = 0;
  PetscCallMPI(MPI_Comm_rank(PETSC_COMM_WORLD, &rank));
  if (!rank) {
    DIR           *d = opendir(dir);
    struct dirent *e;
    PetscCheck(d, PETSC_COMM_SELF, PETSC_ERR_FILE_OPEN, "cannot list %s", dir);
    while ((e = readdir(d)))
      if (strstr(e->d_name, contains)) (*count)++;
    closedir(d);
  }
  PetscCallMPI(MPI_Bcast(count, 1, MPI_INT, 0, PETSC_COMM_WORLD));
  PetscFunctionReturn(0);
}

static PetscErrorCode Body(void)
{
  char           dir[PETSC_MAX_PATH_LEN], path[PETSC_MAX_PATH_LEN];
  Fixture        F;
  PetscBool      ok;
  PetscErrorCode ierr;
  CsH5adWriter   w = NULL;
  int            count;
  PetscInt       row0, n;
  float          row[NGENES] = {0};

  PetscFunctionBeginUser;
  PetscCall(CsTestTempDir(PETSC_COMM_WORLD, dir));
  PetscCall(FixtureSetUp(&F));

  /* 1. one collective call per rank */
  PetscCall(CsPathJoin(dir, "one.h5ad", path));
  PetscCall(WriteFile(path, &F, NROWS, 1));
  PetscCall(CheckWithAnndata(dir, path, &F, NROWS, &ok));
  CS_EXPECT(ok, "anndata check of %s failed", path);

  /* 2. several calls per rank, and pieces of one row (so ranks make different numbers of H5Dwrite calls) */
  PetscCall(PetscOptionsSetValue(NULL, "-h5ad_write_block_mb", "0.00001"));
  PetscCall(CsPathJoin(dir, "pieces.h5ad", path));
  PetscCall(WriteFile(path, &F, NROWS, 3));
  PetscCall(PetscOptionsClearValue(NULL, "-h5ad_write_block_mb"));
  PetscCall(CheckWithAnndata(dir, path, &F, NROWS, &ok));
  CS_EXPECT(ok, "anndata check of %s failed", path);

  /* 3. no rows at all */
  PetscCall(CsPathJoin(dir, "empty.h5ad", path));
  PetscCall(WriteFile(path, &F, 0, 1));
  PetscCall(CheckWithAnndata(dir, path, &F, 0, &ok));
  CS_EXPECT(ok, "anndata check of %s failed", path);

  PetscCall(CountFiles(dir, ".tmp.", &count));
  CS_EXPECT(count == 0, "%d temporary files left after successful writes", count);

  /* Error paths: every rank gets the error, no file is left under any name. */
  F.cond[10] = 3; /* outside the 3 categories */
  PetscCall(CsPathJoin(dir, "badcodes.h5ad", path));
  ierr = CsH5adWriterCreate(PETSC_COMM_WORLD, path, NROWS, NGENES, F.genes, 3, F.cols, &w);
  CS_EXPECT(ierr == CS_ERR_INPUT && !w, "code out of range: got error %d", (int)ierr);
  F.cond[10] = 10 % 3;

  PetscCall(CsPathJoin(dir, "no/such/folder/x.h5ad", path));
  ierr = CsH5adWriterCreate(PETSC_COMM_WORLD, path, NROWS, NGENES, F.genes, 3, F.cols, &w);
  CS_EXPECT(ierr == CS_ERR_INPUT && !w, "missing folder: got error %d", (int)ierr);

  PetscCall(CsPathJoin(dir, "badrows.h5ad", path));
  PetscCall(CsH5adWriterCreate(PETSC_COMM_WORLD, path, NROWS, NGENES, F.genes, 3, F.cols, &w));
  my_rows(NROWS, &row0, &n);
  ierr = CsH5adWriterWriteRows(w, n ? NROWS : 0, n ? 1 : 0, row); /* ranks with rows write past the end */
  CS_EXPECT(ierr == CS_ERR_INPUT, "rows past the end: got error %d", (int)ierr);
  PetscCall(CsH5adWriterDestroy(&w));
  CS_EXPECT(!w, "Destroy must set the writer to NULL");
  PetscCall(CsH5adWriterDestroy(&w)); /* NULL-safe */

  PetscCall(CsPathJoin(dir, "short.h5ad", path));
  PetscCall(CsH5adWriterCreate(PETSC_COMM_WORLD, path, NROWS, NGENES, F.genes, 3, F.cols, &w));
  PetscCall(CsH5adWriterWriteRows(w, 0, 0, NULL)); /* no rank writes anything */
  ierr = CsH5adWriterCommit(&w);
  CS_EXPECT(ierr != 0 && !w, "commit with missing rows: got error %d", (int)ierr);

  PetscCall(CountFiles(dir, "bad", &count));
  CS_EXPECT(count == 0, "%d files left by the failed writes of badcodes/badrows", count);
  PetscCall(CountFiles(dir, "short", &count));
  CS_EXPECT(count == 0, "%d files left by the failed commit", count);
  PetscCall(CountFiles(dir, ".tmp.", &count));
  CS_EXPECT(count == 0, "%d temporary files left", count);

  PetscCall(FixtureDestroy(&F));
  if (!cs_test_failures) {
    PetscMPIInt rank;
    PetscCallMPI(MPI_Comm_rank(PETSC_COMM_WORLD, &rank));
    PetscCallMPI(MPI_Barrier(PETSC_COMM_WORLD));
    if (!rank) {
      char cmd[PETSC_MAX_PATH_LEN + 16];
      PetscCall(PetscSNPrintf(cmd, sizeof(cmd), "rm -rf %s", dir));
      if (system(cmd)) PetscCall(PetscPrintf(PETSC_COMM_SELF, "could not remove %s\n", dir));
    }
  }
  PetscFunctionReturn(0);
}

int main(int argc, char **argv) { return CsTestMain(argc, argv, Body); }
