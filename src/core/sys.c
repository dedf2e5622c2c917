/* System layer: start-up, the one-line error policy, log events, BLAS threads. See include/cellshift/sys.h. */
#include <cellshift/sys.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

PetscLogEvent CS_EVENT_READ, CS_EVENT_WRITE, CS_EVENT_DESIGN, CS_EVENT_SPLIT, CS_EVENT_FIT, CS_EVENT_PREDICT,
  CS_EVENT_EVAL, CS_EVENT_PCA, CS_EVENT_FORWARD, CS_EVENT_BACKWARD, CS_EVENT_REDUCE, CS_EVENT_OPTIM, CS_EVENT_VALID;
PetscClassId CS_CLASSID;

/* The first error message raised on this rank (PETSc calls the handler again for every frame it unwinds). */
static char     cs_first_error[CS_MSG_LEN + 256];
static PetscBool cs_have_error = PETSC_FALSE;
/* Private communicator for the exit agreement, so it can never match a collective left pending by an error. */
static MPI_Comm cs_exit_comm = MPI_COMM_NULL;
static int      cs_blas_threads = 1;
static PetscReal cs_progress_interval = 10;

static PetscErrorCode CsErrorHandler(MPI_Comm comm, int line, const char *func, const char *file, PetscErrorCode n,
                                     PetscErrorType p, const char *mess, void *ctx)
{
  (void)comm;
  (void)ctx;
  if (p != PETSC_ERROR_INITIAL || cs_have_error) return n;
  cs_have_error = PETSC_TRUE;
  /* Input errors speak for themselves; anything else also says where it was raised. */
  if (n == CS_ERR_INPUT || n == PETSC_ERR_USER || n == PETSC_ERR_FILE_OPEN || n == PETSC_ERR_FILE_READ ||
      n == PETSC_ERR_FILE_UNEXPECTED || n == PETSC_ERR_ARG_WRONG || n == PETSC_ERR_ARG_OUTOFRANGE)
    snprintf(cs_first_error, sizeof(cs_first_error), "%s", mess ? mess : "unknown error");
  else {
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

  if (cs_exit_comm == MPI_COMM_NULL) { /* failed before MPI was ready */
    if (ierr) fprintf(stderr, "cellshift: error: %s\n", cs_have_error ? cs_first_error : "initialisation failed");
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

PetscErrorCode CsBLASSetThreads(MPI_Comm comm)
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
  PetscCall(PetscOptionsInt("-blas_threads", "BLAS threads per rank (default: the node's cores / ranks on the node)", "CsBLASSetThreads", n,
                            &n, NULL));
  PetscCall(PetscOptionsReal("-progress_interval", "Seconds between progress lines when the output is not a terminal", "CsProgressCreate",
                             cs_progress_interval, &cs_progress_interval, NULL));
  PetscOptionsEnd();
  PetscCheck(n >= 1, comm, CS_ERR_INPUT, "-blas_threads must be at least 1 (got %" PetscInt_FMT ")", n);
  cs_blas_threads = (int)n;
  {
    extern void openblas_set_num_threads(int);
    openblas_set_num_threads(cs_blas_threads);
  }
  PetscFunctionReturn(0);
}

double CsProgressInterval(void) { return cs_progress_interval; }

int CsBLASGetThreads(void) { return cs_blas_threads; }

PetscErrorCode CsInitialize(int *argc, char ***argv, const char help[])
{
  PetscFunctionBeginUser;
  PetscCall(PetscInitialize(argc, argv, NULL, help));
  PetscCall(PetscPushErrorHandler(CsErrorHandler, NULL));
  PetscCallMPI(MPI_Comm_dup(PETSC_COMM_WORLD, &cs_exit_comm));
  H5Call(H5Eset_auto2(H5E_DEFAULT, NULL, NULL), "cannot silence HDF5 error printing");
  PetscCall(PetscClassIdRegister("cellshift", &CS_CLASSID));
  PetscCall(PetscLogEventRegister("CsRead", CS_CLASSID, &CS_EVENT_READ));
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
  PetscCall(CsBLASSetThreads(PETSC_COMM_WORLD));
  PetscFunctionReturn(0);
}

PetscErrorCode CsFinalize(void)
{
  PetscFunctionBeginUser;
  if (cs_exit_comm != MPI_COMM_NULL) PetscCallMPI(MPI_Comm_free(&cs_exit_comm));
  PetscCall(PetscFinalize());
  PetscFunctionReturn(0);
}

int CsHaveAVX512(void)
{
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  static int have = -1;
  if (have < 0) have = __builtin_cpu_supports("avx512f") ? 1 : 0;
  return have;
#else
  return 0;
#endif
}

double CsTime(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
