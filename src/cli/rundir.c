/* The run folder: which files in it are cellshift's, the lock that keeps one run per folder, and what happens
   to the files of an earlier run. See commands.h. */
#include "commands.h"
#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const RunFiles[]   = {"options.txt", "split.json", "metrics.json", "metrics.csv", "gi.csv", "report.md", NULL};
static const char *const ModelFiles[] = {"model.h5", "predictions.h5ad", "training.csv", "checkpoint.h5", NULL};

static PetscBool InList(const char name[], const char *const list[])
{
  for (PetscInt i = 0; list[i]; i++)
    if (!strcmp(name, list[i])) return PETSC_TRUE;
  return PETSC_FALSE;
}

/* shift_<model>.png, the plots of the evaluation. */
static PetscBool IsPlot(const char name[])
{
  size_t n = strlen(name);
  return (PetscBool)(n > 10 && !strncmp(name, "shift_", 6) && !strcmp(name + n - 4, ".png"));
}

static PetscBool IsRunFile(const char name[]) { return (PetscBool)(InList(name, RunFiles) || IsPlot(name)); }

/* <file>.tmp.<pid>: what a write interrupted before its rename leaves (see CsOutFileBegin). */
static PetscBool IsTemporary(const char name[], PetscBool (*own)(const char[]))
{
  const char *t = strstr(name, ".tmp.");
  char        base[PETSC_MAX_PATH_LEN];

  if (!t || !t[5] || (size_t)(t - name) >= sizeof(base)) return PETSC_FALSE;
  for (const char *c = t + 5; *c; c++)
    if (*c < '0' || *c > '9') return PETSC_FALSE;
  memcpy(base, name, (size_t)(t - name));
  base[t - name] = 0;
  return own(base);
}

static PetscBool IsModelFile(const char name[]) { return InList(name, ModelFiles); }

typedef struct {
  char     found[CS_MSG_LEN]; /* the earlier run's files, for the message */
  PetscInt nfound, ntmp;
  int      err;               /* errno of a removal that failed */
  char     failed[PETSC_MAX_PATH_LEN];
} Scan;

static void Note(Scan *s, const char name[], const char suffix[])
{
  if (s->nfound < 6)
    snprintf(s->found + strlen(s->found), sizeof(s->found) - strlen(s->found), "%s%s%s", s->nfound ? ", " : "", name, suffix);
  else if (s->nfound == 6) snprintf(s->found + strlen(s->found), sizeof(s->found) - strlen(s->found), ", ...");
  s->nfound++;
}

static void Remove(Scan *s, const char path[])
{
  if (unlink(path) && errno != ENOENT && !s->err) {
    s->err = errno;
    snprintf(s->failed, sizeof(s->failed), "%s", path);
  }
}

/* Rank 0: the model folder sub of dir (a folder holding any of ModelFiles). Temporary files go; with clear, so do
   the model files, and the folder when nothing else is left in it. */
static PetscBool ScanModelDir(Scan *s, const char sub[], const char name[], PetscBool clear)
{
  DIR           *d = opendir(sub);
  struct dirent *e;
  PetscBool      model = PETSC_FALSE;
  char           path[PETSC_MAX_PATH_LEN];

  if (!d) return PETSC_FALSE;
  while ((e = readdir(d))) {
    PetscBool own = IsModelFile(e->d_name), tmp = IsTemporary(e->d_name, IsModelFile);
    if (!own && !tmp) continue;
    model = (PetscBool)(model || own);
    snprintf(path, sizeof(path), "%s/%s", sub, e->d_name);
    if (tmp) s->ntmp++;
    if (tmp || clear) Remove(s, path);
  }
  closedir(d);
  if (model) Note(s, name, "/");
  if (model && clear) (void)rmdir(sub); /* fails, as it should, when the user keeps other files there */
  return model;
}

/* Rank 0: look through the run folder (see CsRunDirPrepare). */
static void ScanRunDir(Scan *s, const char dir[], PetscBool clear)
{
  DIR           *d = opendir(dir);
  struct dirent *e;
  char           path[PETSC_MAX_PATH_LEN];
  struct stat    st;

  if (!d) return;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    if (lstat(path, &st)) continue;
    if (S_ISDIR(st.st_mode)) {
      (void)ScanModelDir(s, path, e->d_name, clear);
      continue;
    }
    if (IsTemporary(e->d_name, IsRunFile)) {
      s->ntmp++;
      Remove(s, path);
    } else if (IsRunFile(e->d_name)) {
      Note(s, e->d_name, "");
      if (clear) Remove(s, path);
    }
  }
  closedir(d);
}

PetscErrorCode CsRunDirPrepare(MPI_Comm comm, const char dir[], CsRunDirUse use, PetscBool overwrite, int *lock)
{
  CsPathKind  kind;
  PetscMPIInt rank;
  Scan        s = {.nfound = 0};
  char        path[PETSC_MAX_PATH_LEN];

  PetscFunctionBeginUser;
  *lock = -1;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  CsCheckAll(comm, dir[0], "-output_dir is empty: give the folder of the run");
  PetscCall(CsPathGetKind(comm, dir, &kind));
  CsCheckAll(comm, kind == CS_PATH_NONE || kind == CS_PATH_DIR, "-output_dir %s is a file, not a folder", dir);
  CsCheckAll(comm, use != CS_RUNDIR_EXISTING || kind == CS_PATH_DIR, "-output_dir %s: no such folder (run `cellshift train` first)", dir);
  PetscCall(CsMakeDir(comm, dir));
  PetscCall(CsPathJoin(dir, ".cellshift.lock", path));
  PetscCall(CsLockAcquire(comm, path, dir, lock));
  /* Holding the lock, no other run writes here: temporary files are leftovers of interrupted writes. */
  if (!rank) ScanRunDir(&s, dir, (PetscBool)(use == CS_RUNDIR_NEW && overwrite));
  PetscCallMPI(MPI_Bcast(&s, (PetscMPIInt)sizeof(s), MPI_BYTE, 0, comm));
  if (s.ntmp) PetscCall(PetscPrintf(comm, "%s: removed %" PetscInt_FMT " temporary file%s of an interrupted run\n", dir, s.ntmp, s.ntmp > 1 ? "s" : ""));
  CsCheckAll(comm, !s.err, "-overwrite: cannot remove %s: %s", s.failed, strerror(s.err));
  CsCheckAll(comm, use != CS_RUNDIR_NEW || overwrite || !s.nfound,
             "-output_dir %s holds the files of an earlier run (%s): give -overwrite to replace them, or choose another folder", dir, s.found);
  if (use == CS_RUNDIR_NEW && overwrite && s.nfound) PetscCall(PetscPrintf(comm, "%s: -overwrite removed the earlier run's %s\n", dir, s.found));
  PetscFunctionReturn(0);
}
