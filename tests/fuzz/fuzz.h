/* Shared by the libFuzzer harnesses of tests/fuzz: cellshift started once per process as a single MPI rank (MPI_Init
   works without mpiexec as a singleton), output silenced, inputs written to a file because every reader takes a
   path. A harness aborts (a finding) only where the program's contract is broken: a crash, a sanitizer report, a
   hang, an HDF5 object left open, or two read paths that disagree. Errors the readers report are the expected
   outcome for most inputs. */
#ifndef CELLSHIFT_FUZZ_H
#define CELLSHIFT_FUZZ_H

#include <cellshift/sys.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Start cellshift (PETSc, MPI, HDF5 error printing off) with the given options, stdout silenced. */
static inline void CsFuzzInit(const char *const options[])
{
  static char  name[] = "cellshift-fuzz";
  static char *args[] = {name, NULL};
  int          argc = 1;
  char       **argv = args;

  setenv("OMPI_MCA_opal_signal", "", 0); /* leave SIGABRT and SIGSEGV to libFuzzer, which saves the input */
  setenv("OMPI_MCA_io", "romio321", 0);   /* OMPIO creates a shared-file-pointer file at every open: slower here */
  if (CsInitialize(&argc, &argv, NULL)) abort();
  for (int i = 0; options && options[i]; i += 2)
    if (PetscOptionsSetValue(NULL, options[i], options[i + 1])) abort();
  if (CsSystemSetFromOptions(PETSC_COMM_WORLD)) abort();
  if (getenv("CS_FUZZ_VERBOSE") && PetscPushErrorHandler(PetscTraceBackErrorHandler, NULL)) abort(); /* triage: print every error */
  PETSC_STDOUT = fopen("/dev/null", "w");
  if (!PETSC_STDOUT) abort();
}

/* A private folder for this process's input files. */
static inline const char *CsFuzzDir(void)
{
  static char dir[64] = "";
  if (!dir[0]) {
    snprintf(dir, sizeof(dir), "%s/cellshift-fuzz-XXXXXX", access("/dev/shm", W_OK) ? "/tmp" : "/dev/shm");
    if (!mkdtemp(dir)) abort();
  }
  return dir;
}

/* Write the input to path (aborting on a write error: that is the harness failing, not the reader). */
static inline void CsFuzzWrite(const char path[], const uint8_t *data, size_t size)
{
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, size, f) != size || fclose(f)) abort();
}

/* No HDF5 file or object may stay open after a reader returned, whatever it returned. */
static inline void CsFuzzNoOpenObjects(const char *what)
{
  ssize_t n = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
  if (n != 0) {
    hid_t ids[16];
    fprintf(stderr, "%s left %zd HDF5 objects open:", what, n);
    n = H5Fget_obj_ids(H5F_OBJ_ALL, H5F_OBJ_ALL, 16, ids);
    for (ssize_t i = 0; i < n; i++) {
      char name[256] = "";
      (void)H5Iget_name(ids[i], name, sizeof(name));
      fprintf(stderr, " [type %d%s] %s", (int)H5Iget_type(ids[i]),
              H5Iget_type(ids[i]) == H5I_DATATYPE ? (H5Tis_variable_str(ids[i]) > 0 ? " vlen string" : " not vlen") : "", name);
    }
    fprintf(stderr, "\n");
    abort();
  }
}

#endif
