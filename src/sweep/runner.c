/* Running the configurations of a sweep: each as a child process in its own folder. See sweep.h.

   A child process rather than the run in this process: a failing configuration (bad value, diverging fit, a
   crash) must not end the sweep, and each run needs PETSc's options database and its objects fresh. The child
   is started with the launcher's words in front (mpiexec -n 2, srun), so a run may use several ranks while the
   sweep itself is one process. */
#include <cellshift/sweep.h>
#include <cellshift/json.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static PetscErrorCode WriteSweepJSON(void *ctx, FILE *fp)
{
  CsSweep sw = (CsSweep)ctx;
  json_t *root = json_object(), *arr, *base, *confs, *c;

  PetscFunctionBeginUser;
  PetscCall(CsJSONSet(root, "cellshift_version", json_string(CS_VERSION)));
  PetscCall(CsJSONSet(root, "spec", json_string(sw->spec)));
  PetscCall(CsJSONSet(root, "launcher", json_string(sw->launcher)));
  PetscCall(CsJSONSet(root, "options", base = json_object()));
  for (PetscInt i = 0; i < sw->nbase; i++) PetscCall(CsJSONSet(base, sw->base[2 * i] + 1, json_string(sw->base[2 * i + 1])));
  PetscCall(CsJSONSet(root, "swept", arr = json_array()));
  for (PetscInt j = 0; j < sw->nopt; j++) PetscCall(CsJSONAppend(arr, json_string(sw->opt[j])));
  PetscCall(CsJSONSet(root, "configurations", confs = json_array()));
  for (PetscInt k = 0; k < sw->nconf; k++) {
    PetscCall(CsJSONAppend(confs, c = json_object()));
    for (PetscInt j = 0; j < sw->nopt; j++) PetscCall(CsJSONSet(c, sw->opt[j], json_string(sw->value[k][j])));
  }
  PetscCall(CsJSONDump(root, fp));
  json_decref(root);
  PetscFunctionReturn(0);
}

PetscErrorCode CsSweepSave(CsSweep sw, const char dir[])
{
  char path[PETSC_MAX_PATH_LEN];

  PetscFunctionBeginUser;
  PetscCall(CsMakeDir(PETSC_COMM_SELF, dir));
  PetscCall(CsPathJoin(dir, "sweep.json", path));
  PetscCall(CsWriteTextRank0(PETSC_COMM_SELF, path, WriteSweepJSON, sw));
  PetscFunctionReturn(0);
}

typedef struct {
  const char *status;
  int         code; /* exit status, or -signal */
  double      seconds;
} Status;

static PetscErrorCode WriteStatus(void *ctx, FILE *fp)
{
  Status *s    = (Status *)ctx;
  json_t *root = json_object();

  PetscFunctionBeginUser;
  PetscCall(CsJSONSet(root, "status", json_string(s->status)));
  PetscCall(CsJSONSet(root, "exit_code", json_integer(s->code)));
  PetscCall(CsJSONSet(root, "seconds", CsJSONNumber(s->seconds)));
  PetscCall(CsJSONDump(root, fp));
  json_decref(root);
  PetscFunctionReturn(0);
}

/* Is status.json in rundir "ok"? */
static PetscBool Done(const char rundir[])
{
  char        path[PETSC_MAX_PATH_LEN];
  json_t     *root;
  json_error_t err;
  PetscBool   ok = PETSC_FALSE;

  if (CsPathJoin(rundir, "status.json", path)) return PETSC_FALSE;
  root = json_load_file(path, 0, &err);
  if (root) {
    const char *st = json_string_value(json_object_get(root, "status"));
    ok             = st && !strcmp(st, "ok") ? PETSC_TRUE : PETSC_FALSE;
    json_decref(root);
  }
  return ok;
}

/* The environment of the child: this process's, without what the MPI library set for this process's own job
   (Open MPI's singleton start sets the PMIX_ variables, OMPI_MCA_ess, _orte_ and _pmix, OMPI_ARGV and
   OMPI_COMMAND; a child that found them would join this job instead of starting its own). Settings a user gives (other OMPI_MCA_*,
   OMPI_ALLOW_RUN_AS_ROOT) pass on. */
static PetscErrorCode ChildEnvironment(char ***env)
{
  PetscInt n = 0, k = 0;

  PetscFunctionBeginUser;
  while (environ[n]) n++;
  PetscCall(PetscCalloc1(n + 1, env));
  for (PetscInt i = 0; i < n; i++) {
    const char *e = environ[i];
    PetscBool   mpi = (PetscBool)(!strncmp(e, "PMIX_", 5) || !strncmp(e, "PMI_", 4) || !strncmp(e, "OMPI_COMM_WORLD", 15) ||
                                  !strncmp(e, "OMPI_MCA_orte_", 14) || !strncmp(e, "OMPI_MCA_ess", 12) || !strncmp(e, "OMPI_MCA_pmix", 13) ||
                                  !strncmp(e, "OMPI_UNIVERSE", 13) || !strncmp(e, "OMPI_FIRST_RANKS", 16) || !strncmp(e, "OMPI_APP_CTX", 12) ||
                                  !strncmp(e, "OMPI_FILE_LOCATION", 18) || !strncmp(e, "OMPI_NUM_APP_CTX", 16) ||
                                  !strncmp(e, "OMPI_MCA_initial_wdir", 21) || !strncmp(e, "OMPI_MCA_shmem_RUNTIME", 22) ||
                                  !strncmp(e, "OMPI_MCA_mpi_", 13) || !strncmp(e, "OMPI_ARGV=", 10) || !strncmp(e, "OMPI_COMMAND=", 13) ||
                                  !strncmp(e, "ORTE_SCHIZO_DETECTION=", 22));
    if (!mpi) (*env)[k++] = (char *)e;
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsSweepRunOne(CsSweep sw, const char dir[], PetscInt c, const char exe[], PetscBool skip_done, PetscBool *ok)
{
  char     rundir[PETSC_MAX_PATH_LEN], log[PETSC_MAX_PATH_LEN], path[PETSC_MAX_PATH_LEN];
  int      argc, wstatus = 0, nl = 0;
  char   **args, **launch = NULL, **argv, **env;
  PetscInt nlaunch = 0;
  pid_t    pid;
  Status   st;
  double   t0 = CsTime();

  PetscFunctionBeginUser;
  PetscCheck(c >= 0 && c < sw->nconf, PETSC_COMM_SELF, CS_ERR_INPUT, "-task %" PetscInt_FMT ": the sweep %s has configurations 0 to %" PetscInt_FMT, c,
             sw->spec, sw->nconf - 1);
  PetscCall(CsSweepRunDir(dir, c, rundir));
  if (skip_done && Done(rundir)) {
    PetscCall(PetscPrintf(PETSC_COMM_SELF, "sweep: %s done before, kept\n", rundir));
    *ok = PETSC_TRUE;
    PetscFunctionReturn(0);
  }
  PetscCall(CsMakeDir(PETSC_COMM_SELF, rundir));
  PetscCall(CsPathJoin(rundir, "status.json", path));
  PetscCall(CsRemoveFile(PETSC_COMM_SELF, path));
  PetscCall(CsSweepArgs(sw, c, rundir, &argc, &args));
  if (sw->launcher[0]) PetscCall(CsStrSplit(sw->launcher, " \t", &nlaunch, &launch));
  PetscCall(PetscCalloc1(nlaunch + argc + 4, &argv));
  for (PetscInt i = 0; i < nlaunch; i++) argv[nl++] = launch[i];
  argv[nl++] = (char *)exe;
  argv[nl++] = (char *)"run";
  for (int i = 0; i < argc; i++) argv[nl++] = args[i];
  argv[nl++] = (char *)"-overwrite"; /* the folder is the sweep's: a run repeated replaces its own files */
  PetscCall(ChildEnvironment(&env));
  PetscCall(CsPathJoin(rundir, "log.txt", log));
  PetscCall(PetscPrintf(PETSC_COMM_SELF, "sweep: run %04" PetscInt_FMT " of %" PetscInt_FMT ":", c, sw->nconf));
  for (PetscInt j = 0; j < sw->nopt; j++) PetscCall(PetscPrintf(PETSC_COMM_SELF, " -%s %s", sw->opt[j], sw->value[c][j]));
  PetscCall(PetscPrintf(PETSC_COMM_SELF, "\n"));
  fflush(stdout);
  pid = fork();
  if (pid == 0) { /* the child: output to log.txt, then the run */
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) _exit(126);
    dup2(fd, 1), dup2(fd, 2), close(fd);
    execvpe(argv[0], argv, env);
    fprintf(stderr, "cellshift sweep: cannot start %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  if (pid > 0)
    while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {}
  PetscCall(PetscFree(env));
  PetscCall(PetscFree(argv));
  PetscCall(CsStrArrayDestroy(nlaunch, &launch));
  PetscCall(CsStrArrayDestroy(argc, &args));
  PetscCheck(pid > 0, PETSC_COMM_SELF, PETSC_ERR_SYS, "cannot start a process for %s: %s", rundir, strerror(errno));
  st.code    = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : WIFSIGNALED(wstatus) ? -WTERMSIG(wstatus) : -1;
  st.status  = st.code ? "failed" : "ok";
  st.seconds = CsTime() - t0;
  PetscCall(CsWriteTextRank0(PETSC_COMM_SELF, path, WriteStatus, &st));
  *ok = st.code ? PETSC_FALSE : PETSC_TRUE;
  if (*ok) PetscCall(PetscPrintf(PETSC_COMM_SELF, "sweep: %s ok in %.1f s\n", rundir, st.seconds));
  else PetscCall(PetscPrintf(PETSC_COMM_SELF, "sweep: %s FAILED (exit %d, %s), see %s\n", rundir, st.code, st.code < 0 ? "signal" : "status", log));
  PetscFunctionReturn(0);
}
