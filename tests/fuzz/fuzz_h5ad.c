/* Fuzz target: the .h5ad reader. Each input is a file; it is read with the direct chunk path (inflating with
   libdeflate or, when built with it, ISA-L: chosen by the input's size, so each input always takes the same path)
   and, when that path inflated any chunk, again through HDF5's filter (-h5ad_read_direct false): the two must agree
   (both fail, or both give the same bytes). Then it is inspected. The harness is one rank, so the reader opens the
   file with HDF5's POSIX driver (as it does for any one-rank read): the rest of the reader is the code under test. */
#include "fuzz.h"
#include <cellshift/h5ad.h>

static char        path[PETSC_MAX_PATH_LEN];
static PetscViewer devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  const char *opts[] = {"-blas_threads", "2", NULL};
  (void)argc, (void)argv;
  CsFuzzInit(opts);
  snprintf(path, sizeof(path), "%s/input.h5ad", CsFuzzDir());
  if (PetscViewerASCIIOpen(PETSC_COMM_WORLD, "/dev/null", &devnull)) abort();
  if (PetscLogDefaultBegin()) abort(); /* the event counts tell whether the direct path ran */
  return 0;
}

/* Chunks inflated by the direct path so far. */
static PetscLogDouble Inflated(void)
{
  PetscLogEvent      ev;
  PetscEventPerfInfo info;

  if (PetscLogEventGetId("CsReadInflate", &ev)) return 0; /* not registered before the first direct read */
  if (PetscLogEventGetPerfInfo(0, ev, &info)) abort();
  return info.count;
}

static PetscErrorCode Read(PetscBool direct, size_t size, CsH5adBlock *b)
{
  char     *keys[3] = {"condition", "cell_type", "dose"};
  PetscBool req[3]  = {PETSC_TRUE, PETSC_FALSE, PETSC_FALSE};

  if (PetscOptionsSetValue(NULL, "-h5ad_read_direct", direct ? "true" : "false")) abort();
#if defined(CS_HAVE_ISAL)
  if (PetscOptionsSetValue(NULL, "-h5ad_inflate", size % 2 ? "isal" : "libdeflate")) abort();
#else
  (void)size;
#endif
  return CsH5adRead(PETSC_COMM_WORLD, path, "", 3, keys, req, b);
}

static void Same(PetscBool ok, const char *what)
{
  if (!ok) {
    fprintf(stderr, "the direct and HDF5 read paths disagree: %s\n", what);
    abort();
  }
}

static void Compare(const CsH5adBlock *a, const CsH5adBlock *b)
{
  int64_t nnz;

  Same(a->nglobal == b->nglobal && a->ngenes == b->ngenes && a->rstart == b->rstart && a->nlocal == b->nlocal && a->nobs == b->nobs, "shape");
  nnz = a->X.indptr[a->nlocal];
  Same(!memcmp(a->X.indptr, b->X.indptr, sizeof(int64_t) * (size_t)(a->nlocal + 1)), "indptr");
  Same(!memcmp(a->X.indices, b->X.indices, sizeof(int32_t) * (size_t)nnz), "indices");
  Same(!memcmp(a->X.data, b->X.data, sizeof(float) * (size_t)nnz), "data");
  for (PetscInt g = 0; g < a->ngenes; g++) Same(!strcmp(a->genes[g], b->genes[g]), "genes");
  for (PetscInt k = 0; k < a->nobs; k++) {
    const CsObsColumn *x = &a->obs[k], *y = &b->obs[k];
    Same(x->kind == y->kind && x->ncat == y->ncat && !x->codes == !y->codes && !x->values == !y->values, "obs kinds");
    for (PetscInt c = 0; c < x->ncat; c++) Same(!strcmp(x->cats[c], y->cats[c]), "categories");
    if (x->codes) Same(!memcmp(x->codes, y->codes, sizeof(PetscInt) * (size_t)a->nlocal), "codes");
    if (x->values) Same(!memcmp(x->values, y->values, sizeof(double) * (size_t)a->nlocal), "values");
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  CsH5adBlock    a, b;
  PetscErrorCode ea, eb;
  PetscLogDouble before = Inflated();

  CsFuzzWrite(path, data, size);
  ea = Read(PETSC_TRUE, size, &a);
  CsFuzzNoOpenObjects("the direct read");
  if (Inflated() > before) { /* otherwise both paths are the same code */
    eb = Read(PETSC_FALSE, size, &b);
    CsFuzzNoOpenObjects("the HDF5 read");
    Same((ea == 0) == (eb == 0), ea ? "only the direct read failed" : "only the HDF5 read failed");
    if (!ea) Compare(&a, &b);
  } else memset(&b, 0, sizeof(b));
  if (CsH5adBlockFree(&a) || CsH5adBlockFree(&b)) abort();
  (void)CsH5adInspect(PETSC_COMM_WORLD, path, devnull);
  CsFuzzNoOpenObjects("inspect");
  return 0;
}
