/* Progress lines. See include/cellshift/progress.h. */
#include <cellshift/progress.h>
#include <unistd.h>

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
  p->tty = isatty(STDOUT_FILENO) ? PETSC_TRUE : PETSC_FALSE;
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
