/* Progress lines. See include/cellshift/progress.h. */
#include <cellshift/progress.h>
#include <unistd.h>

/* Whether the file descriptor fd of process pid is a terminal (its /proc link names a tty device). */
static PetscBool FdIsTerminal(long pid, int fd)
{
  char    link[64], target[256];
  ssize_t n;

  snprintf(link, sizeof(link), "/proc/%ld/fd/%d", pid, fd);
  if ((n = readlink(link, target, sizeof(target) - 1)) <= 0) return PETSC_FALSE;
  target[n] = 0;
  return (PetscBool)(!strncmp(target, "/dev/pts/", 9) || !strncmp(target, "/dev/tty", 8) || !strcmp(target, "/dev/console"));
}

/* The name and parent of process pid from /proc (0 when it cannot be read). */
static long ParentOf(long pid, char name[], size_t len)
{
  char  path[64], buf[512], *close_paren;
  FILE *fp;
  long  ppid = 0;
  size_t n;

  name[0] = 0;
  snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
  if (!(fp = fopen(path, "r"))) return 0;
  n = fread(buf, 1, sizeof(buf) - 1, fp);
  fclose(fp);
  buf[n] = 0;
  /* "pid (comm) state ppid ...": comm may hold spaces and parentheses, the last ')' ends it */
  if (!(close_paren = strrchr(buf, ')')) || !strchr(buf, '(')) return 0;
  snprintf(name, len, "%.*s", (int)(close_paren - strchr(buf, '(') - 1), strchr(buf, '(') + 1);
  if (sscanf(close_paren + 2, "%*c %ld", &ppid) != 1) return 0;
  return ppid;
}

static PetscBool IsName(const char name[], const char *const list[])
{
  for (PetscInt i = 0; list[i]; i++)
    if (!strcmp(name, list[i])) return PETSC_TRUE;
  return PETSC_FALSE;
}

/* Does a person watch this rank's output on a terminal? Under mpiexec the ranks get a pseudo-terminal even when
   mpiexec writes into a file or a Slurm log, so the rank's own stdout proves nothing: the launcher's stdout
   decides. Daemons that forward output to a launcher on another node (orted, prted) hide it: plain lines. */
static PetscBool WatchedTerminal(void)
{
  static const char *const launchers[] = {"mpiexec", "mpirun", "orterun", "prterun", "mpiexec.hydra", "mpiexec.mpich", "srun", NULL};
  static const char *const daemons[]   = {"orted", "prted", "sshd", NULL};
  char                     name[256];
  long                     pid = (long)getpid();

  if (!isatty(STDOUT_FILENO)) return PETSC_FALSE;
  for (int depth = 0; depth < 32 && pid > 1; depth++) {
    long ppid = ParentOf(pid, name, sizeof(name));
    if (depth > 0 && IsName(name, launchers)) return FdIsTerminal(pid, STDOUT_FILENO);
    if (depth > 0 && IsName(name, daemons)) return PETSC_FALSE;
    if (depth > 0 && !strcmp(name, "slurmstepd")) return PETSC_TRUE; /* srun --pty: the task's terminal is the user's */
    pid = ppid;
  }
  return PETSC_TRUE; /* started without a launcher, straight from the terminal */
}

PetscBool CsProgressLive(void)
{
  static int live = -1;

  if (CsProgressGetStyle() != CS_PROGRESS_AUTO) return (PetscBool)(CsProgressGetStyle() == CS_PROGRESS_BAR);
  if (live < 0) live = WatchedTerminal();
  return (PetscBool)live;
}

struct _n_CsProgress {
  PetscMPIInt rank;
  PetscBool   tty;
  char        label[128], unit[32], extra[256];
  double      total, done, t0, last, interval;
};

PetscErrorCode CsProgressCreate(MPI_Comm comm, const char label[], const char unit[], double total, CsProgress *out)
{
  CsProgress p;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&p));
  PetscCallMPI(MPI_Comm_rank(comm, &p->rank));
  p->tty = p->rank ? PETSC_FALSE : CsProgressLive();
  PetscCall(PetscStrncpy(p->label, label, sizeof(p->label)));
  PetscCall(PetscStrncpy(p->unit, unit, sizeof(p->unit)));
  p->total = total, p->t0 = p->last = CsTime(), p->interval = CsProgressInterval();
  *out = p;
  PetscFunctionReturn(0);
}

static void print_line(CsProgress p, PetscBool final)
{
  double el = CsTime() - p->t0, rate = el > 0 ? p->done / el : 0, frac = p->total > 0 ? p->done / p->total : 1;
  double eta = rate > 0 ? (p->total - p->done) / rate : 0;
  char   bar[31];

  if (frac > 1) frac = 1;
  if (p->tty) {
    int n = (int)(frac * 30);
    for (int i = 0; i < 30; i++) bar[i] = i < n ? '#' : '.';
    bar[30] = 0;
    printf("\r%s [%s] %5.1f%% %.3g %s/s %s %6.1fs%s%s", p->label, bar, 100 * frac, rate, p->unit,
           final ? "took" : "eta", final ? el : eta, p->extra[0] ? "  " : "", p->extra);
    if (final) printf("\n");
  } else {
    printf("%s: %.0f/%.0f %s (%.1f%%) %.3g %s/s %s %.1fs%s%s\n", p->label, p->done, p->total, p->unit, 100 * frac,
           rate, p->unit, final ? "took" : "eta", final ? el : eta, p->extra[0] ? "  " : "", p->extra);
  }
  fflush(stdout);
}

PetscErrorCode CsProgressUpdate(CsProgress p, double done, const char extra[])
{
  double now = CsTime();

  PetscFunctionBeginUser;
  p->done = done;
  if (extra) PetscCall(PetscStrncpy(p->extra, extra, sizeof(p->extra)));
  if (p->rank) PetscFunctionReturn(0);
  if (now - p->last >= (p->tty ? 0.2 : p->interval)) {
    p->last = now;
    print_line(p, PETSC_FALSE);
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsProgressDestroy(CsProgress *p)
{
  PetscFunctionBeginUser;
  if (!*p) PetscFunctionReturn(0);
  if (!(*p)->rank) print_line(*p, PETSC_TRUE);
  PetscCall(PetscFree(*p));
  PetscFunctionReturn(0);
}
