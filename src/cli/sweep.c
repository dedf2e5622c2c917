/* cellshift sweep: run every configuration of a sweep spec (locally, one after another, or as a Slurm array);
   cellshift collect: gather their metrics into one table. See include/cellshift/sweep.h.

   The sweep is one process: each configuration runs as a child `cellshift run` (started through the spec's
   launcher, e.g. mpiexec -n 2 or srun), so a failing configuration is recorded and the sweep goes on. Every
   configuration is checked before any runs: its options go through the same option checker as `run` (in a
   PETSc options database of its own), so an unknown option or a bad value fails the sweep at once. */
#include "commands.h"
#include <cellshift/sweep.h>
#include <errno.h>
#include <unistd.h>

typedef struct {
  char      spec[PETSC_MAX_PATH_LEN], outdir[PETSC_MAX_PATH_LEN], launcher[1024], sbatch[PETSC_MAX_PATH_LEN], sbatch_args[1024];
  PetscBool local, slurm, overwrite, check;
  PetscInt  task;
} SweepOptions;

PetscErrorCode CsSweepOptions(MPI_Comm comm, void *ctx)
{
  SweepOptions *o = (SweepOptions *)ctx, local;

  PetscFunctionBeginUser;
  if (!o) {
    PetscCall(PetscMemzero(&local, sizeof(local)));
    o = &local;
  }
  PetscOptionsBegin(comm, NULL, "Sweeps", "CsCommandSweep");
  PetscCall(PetscOptionsString("-spec", "The sweep spec (YAML: options, grid or random, launcher)", "CsCommandSweep", o->spec, o->spec, sizeof(o->spec), NULL));
  PetscCall(PetscOptionsString("-output_dir", "Folder of the sweep (runs/NNNN, sweep.json, collected.csv)", "CsCommandSweep", o->outdir, o->outdir,
                               sizeof(o->outdir), NULL));
  PetscCall(PetscOptionsBool("-local", "Run the configurations here, one after another (the default)", "CsCommandSweep", o->local, &o->local, NULL));
  PetscCall(PetscOptionsBool("-slurm", "Submit a Slurm array (one configuration per task) and a collection job after it", "CsCommandSweep", o->slurm,
                             &o->slurm, NULL));
  PetscCall(PetscOptionsInt("-task", "Run only configuration N (a Slurm array task: $SLURM_ARRAY_TASK_ID)", "CsCommandSweep", o->task, &o->task, NULL));
  PetscCall(PetscOptionsString("-sweep_launcher", "How each run is started, e.g. \"mpiexec -n 2\" or \"srun\" (overrides the spec's launcher)",
                               "CsCommandSweep", o->launcher, o->launcher, sizeof(o->launcher), NULL));
  PetscCall(PetscOptionsBool("-overwrite", "Run every configuration again (else the ones whose status is ok are kept)", "CsCommandSweep", o->overwrite,
                             &o->overwrite, NULL));
  PetscCall(PetscOptionsBool("-sweep_check", "Only check the spec and every configuration's options, then stop", "CsCommandSweep", o->check, &o->check,
                             NULL));
  PetscCall(PetscOptionsString("-sweep_sbatch", "-slurm: the array job script (default jobs/sweep.sbatch beside the program's build folder)",
                               "CsCommandSweep", o->sbatch, o->sbatch, sizeof(o->sbatch), NULL));
  PetscCall(PetscOptionsString("-sweep_sbatch_args", "-slurm: more sbatch arguments for both jobs, after a space (\" --partition=debug\"); or sbatch's SBATCH_* variables",
                               "CsCommandSweep", o->sbatch_args, o->sbatch_args, sizeof(o->sbatch_args), NULL));
  PetscOptionsEnd();
  PetscFunctionReturn(0);
}

/* Configuration c's options through run's option checker, in a database of their own. */
static PetscErrorCode CheckConfiguration(CsSweep sw, PetscInt c, const char dir[])
{
  PetscOptions opts;
  int          argc;
  char       **argv, rundir[PETSC_MAX_PATH_LEN];
  CsProblem    p;

  PetscFunctionBeginUser;
  PetscCall(CsSweepRunDir(dir, c, rundir));
  PetscCall(CsSweepArgs(sw, c, rundir, &argc, &argv));
  PetscCall(PetscOptionsCreate(&opts));
  PetscCall(PetscOptionsPush(opts));
  PetscCall(PetscOptionsInsertArgs(opts, argc, argv));
  PetscCall(CsProblemCheckOptions(&p, "run"));
  PetscCall(CsProblemDestroy(&p));
  PetscCall(PetscOptionsPop());
  PetscCall(PetscOptionsDestroy(&opts));
  PetscCall(CsStrArrayDestroy(argc, &argv));
  PetscFunctionReturn(0);
}

static PetscErrorCode CheckAll(CsSweep sw, const char dir[])
{
  PetscFunctionBeginUser;
  for (PetscInt c = 0; c < sw->nconf; c++) {
    PetscErrorCode ierr = CheckConfiguration(sw, c, dir);
    if (ierr) {
      PetscCall(PetscFPrintf(PETSC_COMM_SELF, stderr, "cellshift sweep: %s: configuration %04" PetscInt_FMT " is no valid run:", sw->spec, c));
      for (PetscInt j = 0; j < sw->nopt; j++) PetscCall(PetscFPrintf(PETSC_COMM_SELF, stderr, " -%s %s", sw->opt[j], sw->value[c][j]));
      PetscCall(PetscFPrintf(PETSC_COMM_SELF, stderr, "\n"));
      PetscCall(ierr);
    }
  }
  PetscFunctionReturn(0);
}

/* The path of this program (children run the same build). */
static PetscErrorCode SelfPath(char exe[PETSC_MAX_PATH_LEN])
{
  ssize_t n = readlink("/proc/self/exe", exe, PETSC_MAX_PATH_LEN - 1);

  PetscFunctionBeginUser;
  PetscCheck(n > 0, PETSC_COMM_SELF, PETSC_ERR_SYS, "cannot find the path of this program (/proc/self/exe: %s)", strerror(errno));
  exe[n] = 0;
  PetscFunctionReturn(0);
}

/* The words of cmd's output (sbatch --parsable prints "JOBID[;CLUSTER]"). */
static PetscErrorCode Submit(const char cmd[], char jobid[64])
{
  FILE *fp;
  char  line[256] = "";
  int   rc;

  PetscFunctionBeginUser;
  PetscCall(PetscPrintf(PETSC_COMM_SELF, "sweep: %s\n", cmd));
  fflush(stdout);
  fp = popen(cmd, "r");
  PetscCheck(fp, PETSC_COMM_SELF, CS_ERR_INPUT, "cannot run sbatch: %s", strerror(errno));
  if (!fgets(line, sizeof(line), fp)) line[0] = 0;
  rc = pclose(fp);
  line[strcspn(line, ";\n")] = 0;
  PetscCheck(rc == 0 && line[0], PETSC_COMM_SELF, CS_ERR_INPUT, "sbatch failed (exit %d): %s", rc, cmd);
  PetscCall(PetscStrncpy(jobid, line, 64));
  PetscFunctionReturn(0);
}

/* A word for sh, single-quoted. */
static void Quote(char out[], size_t len, const char s[])
{
  size_t k = 0;
  if (k < len - 1) out[k++] = '\'';
  for (const char *c = s; *c && k + 5 < len; c++) {
    if (*c == '\'') {
      memcpy(out + k, "'\\''", 4);
      k += 4;
    } else out[k++] = *c;
  }
  if (k < len - 1) out[k++] = '\'';
  out[k] = 0;
}

/* -slurm: the array (one task per configuration) and the collection after it, whatever the tasks' outcome. */
static PetscErrorCode SubmitSlurm(SweepOptions *o, CsSweep sw, const char exe[])
{
  char script[PETSC_MAX_PATH_LEN], cmd[8192], qexe[PETSC_MAX_PATH_LEN + 64], qspec[PETSC_MAX_PATH_LEN + 64], qdir[PETSC_MAX_PATH_LEN + 64];
  char qscript[PETSC_MAX_PATH_LEN + 64], qlaunch[1200], logs[PETSC_MAX_PATH_LEN], qlogs[PETSC_MAX_PATH_LEN + 64], array[64], collect[64];
  PetscBool exists;

  PetscFunctionBeginUser;
  if (o->sbatch[0]) PetscCall(PetscStrncpy(script, o->sbatch, sizeof(script)));
  else { /* build/cellshift -> jobs/sweep.sbatch */
    char *slash;
    PetscCall(PetscStrncpy(script, exe, sizeof(script)));
    for (int up = 0; up < 2 && (slash = strrchr(script, '/')); up++) *slash = 0;
    CsStrCat(script, sizeof(script), "/jobs/sweep.sbatch");
  }
  PetscCall(CsFileExists(PETSC_COMM_SELF, script, &exists));
  PetscCheck(exists, PETSC_COMM_SELF, CS_ERR_INPUT, "-slurm: no array job script at %s (give -sweep_sbatch FILE)", script);
  PetscCall(CsPathJoin(o->outdir, "slurm", logs));
  PetscCall(CsMakeDir(PETSC_COMM_SELF, logs));
  Quote(qexe, sizeof(qexe), exe), Quote(qspec, sizeof(qspec), o->spec), Quote(qdir, sizeof(qdir), o->outdir);
  Quote(qscript, sizeof(qscript), script), Quote(qlaunch, sizeof(qlaunch), sw->launcher), Quote(qlogs, sizeof(qlogs), logs);
  PetscCall(PetscSNPrintf(cmd, sizeof(cmd),
                          "CS_EXE=%s CS_SPEC=%s CS_DIR=%s CS_LAUNCHER=%s sbatch --parsable --export=ALL --job-name=cs-sweep --array=0-%" PetscInt_FMT
                          " --output=%s/task-%%a.out %s %s",
                          qexe, qspec, qdir, qlaunch, sw->nconf - 1, qlogs, o->sbatch_args, qscript));
  PetscCall(Submit(cmd, array));
  PetscCall(PetscSNPrintf(cmd, sizeof(cmd),
                          "sbatch --parsable --export=ALL --job-name=cs-collect --dependency=afterany:%s --ntasks=1 --output=%s/collect.out %s "
                          "--wrap=\"%s collect -sweep %s\"",
                          array, qlogs, o->sbatch_args, qexe, qdir));
  PetscCall(Submit(cmd, collect));
  PetscCall(PetscPrintf(PETSC_COMM_SELF, "sweep: array job %s (%" PetscInt_FMT " tasks), collection job %s after it: %s/collected.csv\n", array, sw->nconf,
                        collect, o->outdir));
  PetscFunctionReturn(0);
}

PetscErrorCode CsCommandSweep(void)
{
  MPI_Comm       comm = PETSC_COMM_WORLD;
  SweepOptions   o;
  PetscErrorCode ierr;
  PetscMPIInt    size;
  CsSweep        sw;
  char           exe[PETSC_MAX_PATH_LEN];
  PetscInt       nfail = 0;
  double         t0 = CsTime();

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(&o, sizeof(o)));
  o.task = -1;
  PetscCall(CsOptionsRecordBegin());
  ierr = CsSweepOptions(comm, &o);
  if (!ierr) ierr = CsSystemSetFromOptions(comm);
  PetscCall(CsOptionsRecordEnd());
  PetscCall(ierr);
  PetscCall(CsOptionsCheckUsed(comm, "sweep", "none"));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  CsCheckAll(comm, size == 1,
             "cellshift sweep runs as one process and starts each run itself: give the ranks of a run as the spec's launcher "
             "(launcher: mpiexec -n 2) or -sweep_launcher, not to the sweep (it was started on %d ranks)",
             size);
  CsCheckAll(comm, o.spec[0] && o.outdir[0], "usage: cellshift sweep -spec SWEEP.yaml -output_dir DIR [-local | -slurm | -task N]");
  CsCheckAll(comm, !(o.local && o.slurm), "give -local or -slurm, not both");
  CsCheckAll(comm, !(o.slurm && o.task >= 0), "-task N runs one configuration here: not with -slurm");
  PetscCall(CsSweepLoad(o.spec, &sw));
  if (o.launcher[0]) PetscCall(PetscStrncpy(sw->launcher, o.launcher, sizeof(sw->launcher)));
  CsCheckAll(comm, o.task < sw->nconf, "-task %" PetscInt_FMT ": the sweep %s has configurations 0 to %" PetscInt_FMT, o.task, o.spec, sw->nconf - 1);
  PetscCall(CheckAll(sw, o.outdir));
  PetscCall(PetscPrintf(comm, "sweep: %s: %" PetscInt_FMT " configurations of %" PetscInt_FMT " swept option%s, checked%s%s\n", o.spec, sw->nconf, sw->nopt,
                        sw->nopt == 1 ? "" : "s", sw->launcher[0] ? "; each run through " : "", sw->launcher));
  if (o.check) {
    PetscCall(CsSweepDestroy(&sw));
    PetscFunctionReturn(0);
  }
  PetscCall(SelfPath(exe));
  PetscCall(CsSweepSave(sw, o.outdir)); /* every array task writes the same file (atomically) */
  if (o.slurm) PetscCall(SubmitSlurm(&o, sw, exe));
  else if (o.task >= 0) {
    PetscBool ok;
    PetscCall(CsSweepRunOne(sw, o.outdir, o.task, exe, (PetscBool)!o.overwrite, &ok));
    nfail = !ok;
  } else {
    PetscInt nruns, nok;
    for (PetscInt c = 0; c < sw->nconf; c++) {
      PetscBool ok;
      PetscCall(CsSweepRunOne(sw, o.outdir, c, exe, (PetscBool)!o.overwrite, &ok));
      nfail += !ok;
    }
    PetscCall(CsSweepCollect(comm, o.outdir, &nruns, &nok));
    PetscCall(PetscPrintf(comm, "sweep: %" PetscInt_FMT " of %" PetscInt_FMT " runs ok in %.1f s; %s/collected.csv and collected.md\n", nok, nruns,
                          CsTime() - t0, o.outdir));
  }
  PetscCall(CsSweepDestroy(&sw));
  /* a failed configuration is a result of the sweep, not its failure; only -task reports it (the array task fails) */
  CsCheckAll(comm, !(o.task >= 0 && nfail), "sweep configuration %" PetscInt_FMT " failed (see its log.txt)", o.task);
  PetscFunctionReturn(0);
}

PetscErrorCode CsCollectOptions(MPI_Comm comm, char dir[], size_t len, char runs[], size_t rlen)
{
  PetscFunctionBeginUser;
  PetscOptionsBegin(comm, NULL, "Collecting a sweep", "CsCommandCollect");
  PetscCall(PetscOptionsString("-sweep", "Folder of the sweep (the -output_dir of cellshift sweep)", "CsCommandCollect", dir, dir, len, NULL));
  PetscCall(PetscOptionsString("-runs", "Its runs folder (DIR/runs), instead of -sweep DIR", "CsCommandCollect", runs, runs, rlen, NULL));
  PetscOptionsEnd();
  PetscFunctionReturn(0);
}

PetscErrorCode CsCommandCollect(void)
{
  MPI_Comm       comm = PETSC_COMM_WORLD;
  char           dir[PETSC_MAX_PATH_LEN] = "", runs[PETSC_MAX_PATH_LEN] = "";
  PetscInt       nruns, nok;
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  PetscCall(CsOptionsRecordBegin());
  ierr = CsCollectOptions(comm, dir, sizeof(dir), runs, sizeof(runs));
  if (!ierr) ierr = CsSystemSetFromOptions(comm);
  PetscCall(CsOptionsRecordEnd());
  PetscCall(ierr);
  PetscCall(CsOptionsCheckUsed(comm, "collect", "none"));
  CsCheckAll(comm, !(dir[0] && runs[0]), "give -sweep DIR or -runs DIR/runs, not both");
  CsCheckAll(comm, dir[0] || runs[0], "usage: cellshift collect -sweep DIR (the -output_dir of cellshift sweep)");
  if (runs[0]) { /* DIR/runs -> DIR */
    size_t n = strlen(runs);
    while (n > 1 && runs[n - 1] == '/') runs[--n] = 0;
    CsCheckAll(comm, n >= 4 && !strcmp(runs + n - 4, "runs") && (n == 4 || runs[n - 5] == '/'), "-runs %s: give the runs folder of a sweep (DIR/runs)", runs);
    PetscCall(PetscStrncpy(dir, n == 4 ? "." : runs, sizeof(dir)));
    if (n > 4) dir[n - 5] = 0;
    if (!dir[0]) PetscCall(PetscStrncpy(dir, "/", sizeof(dir)));
  }
  PetscCall(CsSweepCollect(comm, dir, &nruns, &nok));
  PetscCall(PetscPrintf(comm, "collect: %" PetscInt_FMT " runs, %" PetscInt_FMT " ok: %s/collected.csv and collected.md\n", nruns, nok, dir));
  PetscFunctionReturn(0);
}
