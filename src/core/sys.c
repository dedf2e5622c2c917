/* System layer: start-up, the one-line error policy, log events, BLAS threads. See include/cellshift/sys.h. */
#include <cellshift/sys.h>
#include <cellshift/csr.h>
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>
#if defined(__GLIBC__)
  #include <malloc.h>
#endif

PetscLogEvent CS_EVENT_READ, CS_EVENT_WRITE, CS_EVENT_DESIGN, CS_EVENT_SPLIT, CS_EVENT_FIT, CS_EVENT_PREDICT,
  CS_EVENT_EVAL, CS_EVENT_PCA, CS_EVENT_FORWARD, CS_EVENT_BACKWARD, CS_EVENT_REDUCE, CS_EVENT_OPTIM, CS_EVENT_VALID, CS_EVENT_STREAM;
PetscClassId CS_CLASSID;

/* The first error message raised on this rank (PETSc calls the handler again for every frame it unwinds). */
static char     cs_first_error[CS_MSG_LEN + 256];
static PetscBool cs_have_error = PETSC_FALSE;
/* Private communicator for the exit agreement, so it can never match a collective left pending by an error. */
static MPI_Comm cs_exit_comm = MPI_COMM_NULL;
static int             cs_blas_threads      = 1;
static PetscReal       cs_progress_interval = 10;
static CsProgressStyle cs_progress_style    = CS_PROGRESS_AUTO;
const char *const      CsProgressStyles[]   = {"auto", "bar", "lines", "CsProgressStyle", "CS_PROGRESS_", NULL};

/* PETSc's messages about an option value it cannot convert do not say which option it was: find the options that
   hold the value and name them ("-linear_k abc: not an integer"). */
static void NameBadValue(char msg[], size_t len)
{
  static const struct {
    const char *pre, *post, *what;
  } pat[] = {
    {"Input string ", " has no integer value", "not an integer"},
    {"Input string ", " has no numeric value", "not a number"},
    {"Unknown logical value: ", NULL, "neither true nor false"},
  };
  char  value[256] = "", named[CS_MSG_LEN] = "", *all = NULL;
  const char *what = NULL;

  for (size_t k = 0; k < sizeof(pat) / sizeof(pat[0]) && !what; k++) {
    const char *v = strncmp(msg, pat[k].pre, strlen(pat[k].pre)) ? NULL : msg + strlen(pat[k].pre);
    const char *e = v && pat[k].post ? strstr(v, pat[k].post) : v ? v + strlen(v) : NULL;
    if (!v || !e || e == v || (size_t)(e - v) >= sizeof(value)) continue;
    memcpy(value, v, (size_t)(e - v));
    value[e - v] = 0;
    what = pat[k].what;
  }
  if (!what || PetscOptionsGetAll(NULL, &all) || !all) return;
  /* "-name value -name value ...": a value follows its name */
  for (char *tok = strtok(all, " "), *prev = NULL; tok; prev = tok, tok = strtok(NULL, " "))
    if (prev && prev[0] == '-' && !strcmp(tok, value))
      snprintf(named + strlen(named), sizeof(named) - strlen(named), "%s%s %s", named[0] ? ", " : "", prev, value);
  if (named[0]) snprintf(msg, len, "%s: %s", named, what);
  PetscFree(all);
}

static PetscErrorCode CsErrorHandler(MPI_Comm comm, int line, const char *func, const char *file, PetscErrorCode n,
                                     PetscErrorType p, const char *mess, void *ctx)
{
  (void)comm;
  (void)ctx;
  if (p != PETSC_ERROR_INITIAL || cs_have_error) return n;
  cs_have_error = PETSC_TRUE;
  /* Input errors speak for themselves; anything else also says where it was raised. */
  if (n == CS_ERR_INPUT || n == PETSC_ERR_USER || n == PETSC_ERR_FILE_OPEN || n == PETSC_ERR_FILE_READ ||
      n == PETSC_ERR_FILE_UNEXPECTED || n == PETSC_ERR_ARG_WRONG || n == PETSC_ERR_ARG_OUTOFRANGE) {
    snprintf(cs_first_error, sizeof(cs_first_error), "%s", mess ? mess : "unknown error");
    if (n == PETSC_ERR_ARG_WRONG || n == PETSC_ERR_ARG_OUTOFRANGE) NameBadValue(cs_first_error, sizeof(cs_first_error));
  } else {
    const char *text = NULL;
    PetscErrorMessage(n, &text, NULL);
    snprintf(cs_first_error, sizeof(cs_first_error), "%s%s%s [%s() at %s:%d]", text ? text : "error",
             mess && mess[0] ? ": " : "", mess ? mess : "", func, file, line);
  }
  return n;
}

PetscErrorCode CsAgree(MPI_Comm comm, PetscBool ok, const char msg[])
{
  PetscMPIInt rank, size, first;
  char        buf[CS_MSG_LEN];

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  first = ok ? size : rank;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, comm));
  if (first == size) PetscFunctionReturn(0);
  if (rank == first) PetscCall(PetscStrncpy(buf, msg, sizeof(buf)));
  PetscCallMPI(MPI_Bcast(buf, (PetscMPIInt)sizeof(buf), MPI_CHAR, first, comm));
  SETERRQ(comm, CS_ERR_INPUT, "%s", buf);
}

PetscErrorCode CsAgreeCode(MPI_Comm comm, PetscErrorCode ierr, const char msg[])
{
  char buf[CS_MSG_LEN];

  PetscFunctionBeginUser;
  /* The local error already recorded its message; carry it instead of the generic one when it is there. */
  if (ierr) snprintf(buf, sizeof(buf), "%s%s%s", msg, cs_have_error ? ": " : "", cs_have_error ? cs_first_error : "");
  if (ierr) cs_have_error = PETSC_FALSE; /* the collective error below becomes this rank's first error */
  PetscCall(CsAgree(comm, ierr ? PETSC_FALSE : PETSC_TRUE, ierr ? buf : ""));
  PetscFunctionReturn(0);
}

int CsExitStatus(PetscErrorCode ierr)
{
  int         failed = ierr ? 1 : 0, anyfailed = 0, done = 0, rank = 0, lowest;
  MPI_Request req;
  double      t0 = CsTime();

  if (cs_exit_comm == MPI_COMM_NULL) { /* failed while starting: rank 0 read the options files */
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (ierr && !rank) fprintf(stderr, "cellshift: error: %s\n", cs_have_error ? cs_first_error : "initialisation failed");
    return ierr ? 1 : 0;
  }
  MPI_Comm_rank(cs_exit_comm, &rank);
  MPI_Iallreduce(&failed, &anyfailed, 1, MPI_INT, MPI_MAX, cs_exit_comm, &req);
  /* A rank that failed waits a few seconds for the others; if they are stuck in a collective it aborts the job. */
  while (!done) {
    MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    if (!done && failed && CsTime() - t0 > 5.0) {
      fprintf(stderr, "cellshift: error: %s (rank %d; aborting the other ranks)\n",
              cs_have_error ? cs_first_error : "failed", rank);
      fflush(stderr);
      MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (!done) usleep(1000);
  }
  if (!anyfailed) return 0;
  lowest = failed ? rank : INT32_MAX;
  MPI_Allreduce(MPI_IN_PLACE, &lowest, 1, MPI_INT, MPI_MIN, cs_exit_comm);
  if (rank == lowest) {
    fprintf(stderr, "cellshift: error: %s\n", cs_have_error ? cs_first_error : "failed");
    fflush(stderr);
  }
  return 1;
}

PetscErrorCode CsSystemSetFromOptions(MPI_Comm comm)
{
  MPI_Comm  node;
  int       nlocal, online = (int)sysconf(_SC_NPROCESSORS_ONLN), affinity = online;
  PetscInt  n = 0;
  cpu_set_t mask;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  PetscCallMPI(MPI_Comm_size(node, &nlocal));
  PetscCallMPI(MPI_Comm_free(&node));
  if (sched_getaffinity(0, sizeof(mask), &mask) == 0) affinity = CPU_COUNT(&mask);
  /* A launcher that bound the rank to fewer cores than the node has decided for us; otherwise share the node. */
  n = affinity < online ? affinity : online / nlocal;
  if (n < 1) n = 1;
  PetscOptionsBegin(comm, NULL, "System", "CsInitialize");
  PetscCall(PetscOptionsInt("-blas_threads", "BLAS threads per rank (default: the node's cores / ranks on the node)", "CsSystemSetFromOptions", n,
                            &n, NULL));
  PetscCall(PetscOptionsEnum("-progress", "Progress of long steps: a live bar, plain lines, or auto (the bar only when a person watches a terminal)",
                             "CsProgressCreate", CsProgressStyles, (PetscEnum)cs_progress_style, (PetscEnum *)&cs_progress_style, NULL));
  PetscCall(PetscOptionsReal("-progress_interval", "Seconds between progress lines when no live bar is drawn", "CsProgressCreate",
                             cs_progress_interval, &cs_progress_interval, NULL));
  PetscOptionsEnd();
  PetscCheck(n >= 1, comm, CS_ERR_INPUT, "-blas_threads must be at least 1 (got %" PetscInt_FMT ")", n);
  PetscCheck(cs_progress_interval > 0, comm, CS_ERR_INPUT, "-progress_interval must be a positive number of seconds (got %.6g)",
             (double)cs_progress_interval);
  cs_blas_threads = (int)n;
  {
    extern void openblas_set_num_threads(int);
    openblas_set_num_threads(cs_blas_threads);
  }
  PetscFunctionReturn(0);
}

CsProgressStyle CsProgressGetStyle(void) { return cs_progress_style; }

double CsProgressInterval(void) { return cs_progress_interval; }

int CsBLASGetThreads(void) { return cs_blas_threads; }

/* Why the YAML file `path` does not parse, with its line ("" when it parses). */
static void YAMLProblem(const char path[], char msg[], size_t len)
{
  FILE         *fp = fopen(path, "rb");
  yaml_parser_t parser;
  yaml_event_t  ev;
  int           done = 0;

  msg[0] = 0;
  if (!fp || !yaml_parser_initialize(&parser)) {
    if (fp) fclose(fp);
    return;
  }
  yaml_parser_set_input_file(&parser, fp);
  while (!done) {
    if (!yaml_parser_parse(&parser, &ev)) {
      snprintf(msg, len, "line %zu, column %zu: %s%s%s", parser.problem_mark.line + 1, parser.problem_mark.column + 1,
               parser.problem ? parser.problem : "syntax error", parser.context ? " " : "", parser.context ? parser.context : "");
      break;
    }
    done = ev.type == YAML_STREAM_END_EVENT;
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&parser);
  fclose(fp);
}

/* An options file that cannot be used: the message names the option and the file (and the line for YAML). */
static PetscBool OptionsFileProblem(const char opt[], const char path[], char msg[], size_t len)
{
  struct stat st;
  FILE       *fp;
  char        yaml[512];

  if (stat(path, &st)) {
    snprintf(msg, len, "%s %s: %s", opt, path, strerror(errno));
    return PETSC_TRUE;
  }
  if (S_ISDIR(st.st_mode)) {
    snprintf(msg, len, "%s %s is a folder, not an options file", opt, path);
    return PETSC_TRUE;
  }
  if (!(fp = fopen(path, "r"))) {
    snprintf(msg, len, "%s %s: %s", opt, path, strerror(errno));
    return PETSC_TRUE;
  }
  fclose(fp);
  if (strcmp(opt, "-options_file_yaml")) return PETSC_FALSE;
  YAMLProblem(path, yaml, sizeof(yaml));
  if (yaml[0]) snprintf(msg, len, "%s %s: not valid YAML: %s", opt, path, yaml);
  return yaml[0] ? PETSC_TRUE : PETSC_FALSE;
}

/* PetscInitialize failed (in practice: reading the options files). PETSc's own report is many lines; keep its
   message, or better, say which file is at fault. */
static void InitError(int argc, char **argv, PetscErrorCode ierr)
{
  const char *text     = NULL;
  char       *specific = NULL;

  PetscErrorMessage(ierr, &text, &specific);
  snprintf(cs_first_error, sizeof(cs_first_error), "%s", specific && specific[0] ? specific : text ? text : "cannot start");
  for (int i = 1; i + 1 < argc; i++) {
    if (strcmp(argv[i], "-options_file") && strcmp(argv[i], "-options_file_yaml")) continue;
    if (OptionsFileProblem(argv[i], argv[i + 1], cs_first_error, sizeof(cs_first_error))) break;
  }
  cs_have_error = PETSC_TRUE;
}

PetscErrorCode CsInitialize(int *argc, char ***argv, const char help[])
{
  PetscErrorCode ierr;

#if defined(__GLIBC__)
  /* Blocks of rows come and go all through a streamed run, each a few MiB of a slightly different size. glibc by
     default gives every thread its own arena (the prefetch thread's rows, freed by the trainer, stayed in it), and
     raises its mmap threshold to the largest block freed, after which such blocks live in the heap and leave holes
     that the next, slightly larger block does not fit: the resident size of a streamed run crept up window by
     window (10^7 cells on 2 ranks, the first 40 s of training: 300-325 MiB a rank with glibc's defaults, 208 with
     these). One arena, set before MPI starts its threads (the threads that allocate do so once a block: no
     contention); a fixed threshold, blocks of 1 MiB or more mapped and unmapped whole, set after PetscInitialize
     (before it, it did not hold). */
  (void)mallopt(M_ARENA_MAX, 1);
#endif
  PetscErrorPrintf = PetscErrorPrintfNone;
  ierr             = PetscInitialize(argc, argv, NULL, help);
  PetscErrorPrintf = PetscErrorPrintfDefault;
  if (ierr) {
    InitError(*argc, *argv, ierr);
    return ierr;
  }
  PetscFunctionBeginUser;
#if defined(__GLIBC__)
  (void)mallopt(M_MMAP_MAX, 65536); /* glibc's default: the process had mmap of blocks switched off by then */
  (void)mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
  PetscCall(PetscPushErrorHandler(CsErrorHandler, NULL));
  PetscCallMPI(MPI_Comm_dup(PETSC_COMM_WORLD, &cs_exit_comm));
  H5Call(H5Eset_auto2(H5E_DEFAULT, NULL, NULL), "cannot silence HDF5 error printing");
  PetscCall(PetscClassIdRegister("cellshift", &CS_CLASSID));
  PetscCall(PetscLogEventRegister("CsRead", CS_CLASSID, &CS_EVENT_READ));
  PetscCall(PetscLogEventRegister("CsStreamRead", CS_CLASSID, &CS_EVENT_STREAM)); /* the trainer waiting for streamed rows */
  PetscCall(PetscLogEventRegister("CsWrite", CS_CLASSID, &CS_EVENT_WRITE));
  PetscCall(PetscLogEventRegister("CsDesign", CS_CLASSID, &CS_EVENT_DESIGN));
  PetscCall(PetscLogEventRegister("CsSplit", CS_CLASSID, &CS_EVENT_SPLIT));
  PetscCall(PetscLogEventRegister("CsModelFit", CS_CLASSID, &CS_EVENT_FIT));
  PetscCall(PetscLogEventRegister("CsModelPredict", CS_CLASSID, &CS_EVENT_PREDICT));
  PetscCall(PetscLogEventRegister("CsEvaluate", CS_CLASSID, &CS_EVENT_EVAL));
  PetscCall(PetscLogEventRegister("CsPCA", CS_CLASSID, &CS_EVENT_PCA));
  PetscCall(PetscLogEventRegister("CsNNForward", CS_CLASSID, &CS_EVENT_FORWARD));
  PetscCall(PetscLogEventRegister("CsNNBackward", CS_CLASSID, &CS_EVENT_BACKWARD));
  PetscCall(PetscLogEventRegister("CsNNGradReduce", CS_CLASSID, &CS_EVENT_REDUCE));
  PetscCall(PetscLogEventRegister("CsNNOptimStep", CS_CLASSID, &CS_EVENT_OPTIM));
  PetscCall(PetscLogEventRegister("CsNNValidate", CS_CLASSID, &CS_EVENT_VALID));
  PetscCall(CsSystemSetFromOptions(PETSC_COMM_WORLD));
  PetscFunctionReturn(0);
}

PetscErrorCode CsFinalize(void)
{
  if (!PetscInitializeCalled) return 0; /* start-up failed: nothing to finalise, and the other ranks may wait */
  PetscFunctionBeginUser;
  if (cs_exit_comm != MPI_COMM_NULL) PetscCallMPI(MPI_Comm_free(&cs_exit_comm));
  PetscCall(PetscPopErrorHandler());
  PetscCall(CsCSRSparesFree());
  PetscCall(PetscFinalize());
  PetscFunctionReturn(0);
}

PetscErrorCode CsWarn(MPI_Comm comm, const char fmt[], ...)
{
  char        msg[CS_MSG_LEN];
  va_list     ap;
  PetscMPIInt rank;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  if (rank) PetscFunctionReturn(0);
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  fflush(stdout);
  fprintf(stderr, "cellshift: warning: %s\n", msg);
  fflush(stderr);
  PetscFunctionReturn(0);
}

static CsSIMDLevel simd_cap = CS_SIMD_AVX512;

CsSIMDLevel CsSIMD(void)
{
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  static int have = -1;
  if (have < 0)
    have = __builtin_cpu_supports("avx512f")                                  ? CS_SIMD_AVX512
         : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? CS_SIMD_AVX2
                                                                             : CS_SIMD_SCALAR;
  return (CsSIMDLevel)PetscMin(have, (int)simd_cap);
#else
  return CS_SIMD_SCALAR;
#endif
}

void CsSIMDCap(CsSIMDLevel max) { simd_cap = max; }
int  CsHaveAVX512(void) { return CsSIMD() >= CS_SIMD_AVX512; }
int  CsHaveAVX2(void) { return CsSIMD() >= CS_SIMD_AVX2; }

void CsReleaseFreeMemory(void)
{
#if defined(__GLIBC__)
  (void)malloc_trim(0);
#endif
}

void CsMemPopulate(void *p, size_t bytes)
{
#if defined(__linux__)
  #if !defined(MADV_POPULATE_WRITE)
    #define MADV_POPULATE_WRITE 23
  #endif
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), lo = ((uintptr_t)p + page - 1) & ~(page - 1), hi = ((uintptr_t)p + bytes) & ~(page - 1);

  if (bytes >= ((size_t)1 << 20) && hi > lo) (void)madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE);
#else
  (void)p, (void)bytes;
#endif
}

double CsTime(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
