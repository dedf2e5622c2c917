/* CsOTSolve (sources and targets split unevenly over the ranks, cost stored, streamed in blocks, block-cyclic on
   the BLACS grid, or stored in bfloat16) against
   CsOTSolveDense on one process, and both against the mathematics recomputed in double: the marginals of the plan
   (balanced: a and b; unbalanced: the fixed point of the KL-penalised updates) and the barycentres from the plan.
   Balanced and unbalanced, mean and max cost scale. The failures: an iteration cap too small (the achieved error is
   named), an epsilon too small for the cost scale, a bad tau.
   With -dump DIR (one rank) the inputs and dense plans are written for tests/python/check_ot_pot.py; with -solve DIR
   the problem in DIR/problem.bin (int64 n, m, d; double eps, tau_a, tau_b; int64 scale; float x[n,d], y[m,d];
   uniform weights) is solved densely and the plan written to DIR/plan.bin (tests/python/check_ot_moscot.py). */
#include "testing.h"
#include <cellshift/ot.h>
#include <string.h>

#define D 5

static void Point(float *p, PetscInt i, uint64_t key, double shift)
{
  CsTestFill(p, D, key * 100003 + (uint64_t)i, -1, 1);
  for (int k = 0; k < D; k++) p[k] += (float)(shift * (k == 0) + 0.3 * sin((double)i * (k + 1)));
}

/* Uneven split: rank r of p gets a share proportional to r + 1. */
static void Split(PetscInt n, PetscMPIInt size, PetscMPIInt rank, PetscInt *lo, PetscInt *hi)
{
  PetscInt tot = (PetscInt)size * (size + 1) / 2, acc = 0;
  for (PetscMPIInt r = 0; r < rank; r++) acc += r + 1;
  *lo = n * acc / tot, *hi = n * (acc + rank + 1) / tot;
}

typedef struct {
  PetscInt   n, m;
  float     *x, *y;
  PetscReal *a, *b;
} Problem;

static PetscErrorCode Make(PetscInt n, PetscInt m, PetscBool weights, Problem *P)
{
  PetscFunctionBeginUser;
  P->n = n, P->m = m;
  PetscCall(PetscMalloc4((size_t)n * D, &P->x, (size_t)m * D, &P->y, n, &P->a, m, &P->b));
  for (PetscInt i = 0; i < n; i++) Point(P->x + (size_t)i * D, i, 1, 0);
  for (PetscInt j = 0; j < m; j++) Point(P->y + (size_t)j * D, j, 2, 0.8);
  double sa = 0, sb = 0;
  for (PetscInt i = 0; i < n; i++) P->a[i] = weights ? 1 + (i % 7) : 1, sa += P->a[i];
  for (PetscInt j = 0; j < m; j++) P->b[j] = weights ? 1 + (j % 5) * 0.5 : 1, sb += P->b[j];
  for (PetscInt i = 0; i < n; i++) P->a[i] /= sa;
  for (PetscInt j = 0; j < m; j++) P->b[j] /= sb;
  PetscFunctionReturn(0);
}

static PetscErrorCode Free(Problem *P)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree4(P->x, P->y, P->a, P->b));
  PetscFunctionReturn(0);
}

/* The plan's marginals and barycentres in double from the dense plan. */
static void CheckPlan(const Problem *P, const CsOTOptions *o, const float *plan, const float *bary, const CsOTInfo *info, const char *what)
{
  double erow = 0, ecol = 0, mass = 0;
  for (PetscInt i = 0; i < P->n; i++) {
    double r = 0;
    for (PetscInt j = 0; j < P->m; j++) r += plan[(size_t)i * P->m + j];
    mass += r;
    if (o->tau_a == 1) erow += fabs(r - P->a[i]);
    for (int k = 0; k < D; k++) {
      double s = 0;
      for (PetscInt j = 0; j < P->m; j++) s += plan[(size_t)i * P->m + j] * P->y[(size_t)j * D + k];
      CS_EXPECT(fabs(s / r - bary[(size_t)i * D + k]) < 1e-4, "%s: barycentre %d,%d %g vs plan %g", what, (int)i, k, (double)bary[(size_t)i * D + k], s / r);
    }
  }
  for (PetscInt j = 0; j < P->m; j++) {
    double s = 0;
    for (PetscInt i = 0; i < P->n; i++) s += plan[(size_t)i * P->m + j];
    if (o->tau_b == 1) ecol += fabs(s - P->b[j]);
  }
  CS_EXPECT(info->converged && info->error <= o->tol, "%s: converged %d error %g", what, (int)info->converged, info->error);
  if (o->tau_a == 1) CS_EXPECT(erow <= 1.5 * o->tol + 1e-5, "%s: row marginal error %g (reported %g)", what, erow, info->error);
  if (o->tau_b == 1) CS_EXPECT(ecol <= 1e-4, "%s: column marginal error %g", what, ecol);
  CS_EXPECT(fabs(mass - info->mass) < 1e-4 * mass, "%s: mass %g vs reported %g", what, mass, info->mass);
  if (o->tau_a == 1 && o->tau_b == 1) CS_EXPECT(fabs(mass - 1) < 1e-3, "%s: balanced mass %g", what, mass);
}

/* Unbalanced fixed point: f = tau_a eps (log a - lse_j((g - C)/eps)), recomputed in double from the returned f, g. */
static void CheckFixedPoint(const Problem *P, const CsOTOptions *o, PetscInt lo, PetscInt hi, const PetscReal *f, const PetscReal *gall, double cscale,
                            const char *what)
{
  double worst = 0;
  for (PetscInt i = lo; i < hi; i++) {
    double mx = -INFINITY, s = 0, z[4096];
    for (PetscInt j = 0; j < P->m; j++) {
      double c = 0;
      for (int k = 0; k < D; k++) {
        double e = (double)P->x[(size_t)i * D + k] - P->y[(size_t)j * D + k];
        c += e * e;
      }
      z[j] = (gall[j] - c / cscale) / o->epsilon;
      mx   = PetscMax(mx, z[j]);
    }
    for (PetscInt j = 0; j < P->m; j++) s += exp(z[j] - mx);
    double fi = o->tau_a * o->epsilon * (log(P->a[i]) - mx - log(s));
    worst     = PetscMax(worst, fabs(fi - f[i - lo]));
  }
  CS_EXPECT(worst < 2e-3 * o->epsilon + 10 * o->tol * o->epsilon, "%s: fixed point of f off by %g", what, worst);
}

static PetscErrorCode Case(const Problem *P, CsOTOptions *o, CsOTMode mode, const char *what)
{
  MPI_Comm    comm = PETSC_COMM_WORLD;
  PetscMPIInt size, rank;
  PetscInt    lo, hi, mlo, mhi;
  float      *plan, *bary, *dbary;
  PetscReal  *f, *g, *gall;
  CsOTInfo    dinfo, info;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  Split(P->n, size, rank, &lo, &hi);
  Split(P->m, size, (size - 1 - rank), &mlo, &mhi); /* the targets split the other way round */
  {
    /* rank order must be global order: recompute the target split for this rank's position */
    PetscInt acc = 0, cnt;
    for (PetscMPIInt r = 0; r < rank; r++) {
      PetscInt l, h;
      Split(P->m, size, size - 1 - r, &l, &h);
      acc += h - l;
    }
    cnt = mhi - mlo, mlo = acc, mhi = acc + cnt;
  }
  PetscCall(PetscMalloc6((size_t)P->n * P->m, &plan, (size_t)P->n * D, &dbary, (size_t)(hi - lo) * D + 1, &bary, hi - lo + 1, &f, mhi - mlo + 1, &g, P->m, &gall));
  PetscCall(CsOTSolveDense(o, P->n, P->m, D, P->x, P->y, P->a, P->b, plan, dbary, &dinfo));
  CheckPlan(P, o, plan, dbary, &dinfo, what);
  o->mode = mode;
  PetscCall(CsOTSolve(comm, o, hi - lo, mhi - mlo, D, P->x + (size_t)lo * D, P->y + (size_t)mlo * D, P->a + lo, P->b + mlo, bary, f, g, &info));
  CS_EXPECT(info.converged && info.error <= o->tol, "%s distributed: error %g", what, info.error);
  CS_EXPECT(info.streamed == (mode == CS_OT_MODE_STREAM), "%s: streamed %d", what, (int)info.streamed);
  CS_EXPECT_CLOSE(info.cost_scale, dinfo.cost_scale, 1e-5, "cost scale vs the dense solve");
  CS_EXPECT_CLOSE(info.cost, dinfo.cost, 1e-3, "transport cost vs the dense solve");
  {
    double worst = 0;
    for (PetscInt i = lo; i < hi; i++)
      for (int k = 0; k < D; k++) worst = PetscMax(worst, fabs((double)bary[(size_t)(i - lo) * D + k] - dbary[(size_t)i * D + k]));
    CS_EXPECT(worst < 2e-3, "%s: barycentres at %d ranks differ from the dense solve by %g", what, (int)size, worst);
  }
  {
    PetscMPIInt *cnt, *dsp, me = (PetscMPIInt)(mhi - mlo);
    PetscCall(PetscMalloc2(size, &cnt, size, &dsp));
    PetscCallMPI(MPI_Allgather(&me, 1, MPI_INT, cnt, 1, MPI_INT, comm));
    dsp[0] = 0;
    for (PetscMPIInt r = 1; r < size; r++) dsp[r] = dsp[r - 1] + cnt[r - 1];
    PetscCallMPI(MPI_Allgatherv(g, me, MPIU_REAL, gall, cnt, dsp, MPIU_REAL, comm));
    PetscCall(PetscFree2(cnt, dsp));
  }
  CheckFixedPoint(P, o, lo, hi, f, gall, info.cost_scale, what);
  PetscCall(PetscFree6(plan, dbary, bary, f, g, gall));
  PetscFunctionReturn(0);
}

static PetscErrorCode ExpectError(const Problem *P, const CsOTOptions *o, const char *needle, const char *what)
{
  PetscErrorCode ierr;
  const char    *text;
  char          *msg = NULL;

  PetscFunctionBeginUser;
  PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
  {
    PetscMPIInt rank;
    PetscInt    nl, ml;
    PetscCallMPI(MPI_Comm_rank(PETSC_COMM_WORLD, &rank));
    nl   = rank == 0 ? P->n : 0, ml = rank == 0 ? P->m : 0;
    ierr = CsOTSolve(PETSC_COMM_WORLD, o, nl, ml, D, P->x, P->y, NULL, NULL, NULL, NULL, NULL, NULL);
  }
  PetscCall(PetscPopErrorHandler());
  CS_EXPECT(ierr != 0, "%s: no error", what);
  if (ierr) {
    PetscErrorMessage(ierr, &text, &msg);
    CS_EXPECT(msg && strstr(msg, needle), "%s: message '%s' lacks '%s'", what, msg ? msg : "", needle);
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode Dump(const char *dir)
{
  Problem     P;
  CsOTOptions o;
  float      *plan;
  char        path[PETSC_MAX_PATH_LEN];
  FILE       *fp;

  PetscFunctionBeginUser;
  PetscCall(Make(200, 150, PETSC_TRUE, &P));
  PetscCall(PetscMalloc1((size_t)P.n * P.m, &plan));
  PetscCall(PetscSNPrintf(path, sizeof(path), "%s/inputs.bin", dir));
  fp = fopen(path, "wb");
  PetscCheck(fp, PETSC_COMM_SELF, PETSC_ERR_FILE_OPEN, "cannot write %s", path);
  fwrite(P.x, sizeof(float), (size_t)P.n * D, fp), fwrite(P.y, sizeof(float), (size_t)P.m * D, fp);
  fwrite(P.a, sizeof(double), (size_t)P.n, fp), fwrite(P.b, sizeof(double), (size_t)P.m, fp);
  fclose(fp);
  for (int c = 0; c < 3; c++) {
    PetscCall(CsOTOptionsDefaults(&o));
    o.tol = 1e-6;
    o.max_iter = 20000;
    if (c == 1) o.tau_a = o.tau_b = 0.9; /* rho = eps tau / (1 - tau) */
    if (c == 2) o.scale = CS_OT_SCALE_MAX, o.epsilon = 0.01;
    PetscCall(CsOTSolveDense(&o, P.n, P.m, D, P.x, P.y, P.a, P.b, plan, NULL, NULL));
    PetscCall(PetscSNPrintf(path, sizeof(path), "%s/plan%d.bin", dir, c));
    fp = fopen(path, "wb");
    PetscCheck(fp, PETSC_COMM_SELF, PETSC_ERR_FILE_OPEN, "cannot write %s", path);
    fwrite(plan, sizeof(float), (size_t)P.n * P.m, fp);
    fclose(fp);
  }
  PetscCall(PetscFree(plan));
  PetscCall(Free(&P));
  PetscFunctionReturn(0);
}

static PetscErrorCode SolveFile(const char *dir)
{
  CsOTOptions o;
  int64_t     hdr[3], sc;
  double      par[3];
  float      *x, *y, *plan;
  char        path[PETSC_MAX_PATH_LEN];
  FILE       *fp;
  CsOTInfo    info;

  PetscFunctionBeginUser;
  PetscCall(PetscSNPrintf(path, sizeof(path), "%s/problem.bin", dir));
  fp = fopen(path, "rb");
  PetscCheck(fp, PETSC_COMM_SELF, PETSC_ERR_FILE_OPEN, "cannot read %s", path);
  PetscCheck(fread(hdr, sizeof(int64_t), 3, fp) == 3 && fread(par, sizeof(double), 3, fp) == 3 && fread(&sc, sizeof(int64_t), 1, fp) == 1,
             PETSC_COMM_SELF, PETSC_ERR_FILE_READ, "short %s", path);
  PetscCall(PetscMalloc3((size_t)hdr[0] * hdr[2], &x, (size_t)hdr[1] * hdr[2], &y, (size_t)hdr[0] * hdr[1], &plan));
  PetscCheck(fread(x, sizeof(float), (size_t)(hdr[0] * hdr[2]), fp) == (size_t)(hdr[0] * hdr[2]) &&
               fread(y, sizeof(float), (size_t)(hdr[1] * hdr[2]), fp) == (size_t)(hdr[1] * hdr[2]),
             PETSC_COMM_SELF, PETSC_ERR_FILE_READ, "short %s", path);
  fclose(fp);
  PetscCall(CsOTOptionsDefaults(&o));
  o.epsilon = par[0], o.tau_a = par[1], o.tau_b = par[2], o.scale = (CsOTCostScale)sc, o.tol = 1e-6, o.max_iter = 100000;
  PetscCall(CsOTSolveDense(&o, (PetscInt)hdr[0], (PetscInt)hdr[1], (PetscInt)hdr[2], x, y, NULL, NULL, plan, NULL, &info));
  PetscCall(PetscPrintf(PETSC_COMM_SELF, "solved in %" PetscInt_FMT " iterations, marginal error %g\n", info.iterations, info.error));
  PetscCall(PetscSNPrintf(path, sizeof(path), "%s/plan.bin", dir));
  fp = fopen(path, "wb");
  PetscCheck(fp, PETSC_COMM_SELF, PETSC_ERR_FILE_OPEN, "cannot write %s", path);
  fwrite(plan, sizeof(float), (size_t)(hdr[0] * hdr[1]), fp);
  fclose(fp);
  PetscCall(PetscFree3(x, y, plan));
  PetscFunctionReturn(0);
}

static PetscErrorCode Body(void)
{
  Problem     P, Q;
  CsOTOptions o;
  char        dir[PETSC_MAX_PATH_LEN];
  PetscBool   dump;

  PetscFunctionBeginUser;
  PetscCall(PetscOptionsGetString(NULL, NULL, "-dump", dir, sizeof(dir), &dump));
  if (dump) {
    PetscCall(Dump(dir));
    PetscFunctionReturn(0);
  }
  PetscCall(PetscOptionsGetString(NULL, NULL, "-solve", dir, sizeof(dir), &dump));
  if (dump) {
    PetscCall(SolveFile(dir));
    PetscFunctionReturn(0);
  }
  PetscCall(Make(1300, 1100, PETSC_TRUE, &P)); /* several 128 x 1024 blocks when streamed */
  PetscCall(Make(90, 70, PETSC_FALSE, &Q));
  for (int mode = 0; mode < 2; mode++) {
    CsOTMode md = mode ? CS_OT_MODE_STREAM : CS_OT_MODE_STORE;
    PetscCall(CsOTOptionsDefaults(&o));
    PetscCall(Case(&P, &o, md, mode ? "balanced, streamed" : "balanced, stored"));
    PetscCall(CsOTOptionsDefaults(&o));
    o.tau_a = 0.9, o.tau_b = 0.7;
    PetscCall(Case(&P, &o, md, mode ? "unbalanced, streamed" : "unbalanced, stored"));
    PetscCall(CsOTOptionsDefaults(&o));
    o.scale = CS_OT_SCALE_MAX, o.epsilon = 0.01, o.eps_scaling = PETSC_FALSE, o.max_iter = 5000;
    PetscCall(Case(&Q, &o, md, mode ? "max scale, small, streamed" : "max scale, small, stored"));
  }
  /* the ScaLAPACK block-cyclic cost and kernel: the same checks against the dense solve */
  PetscCall(CsOTOptionsDefaults(&o));
  PetscCall(Case(&P, &o, CS_OT_MODE_BLOCKCYCLIC, "balanced, block-cyclic"));
  PetscCall(CsOTOptionsDefaults(&o));
  o.tau_a = 0.9, o.tau_b = 0.7;
  PetscCall(Case(&P, &o, CS_OT_MODE_BLOCKCYCLIC, "unbalanced, block-cyclic"));
  PetscCall(CsOTOptionsDefaults(&o));
  o.scale = CS_OT_SCALE_MAX, o.epsilon = 0.01, o.eps_scaling = PETSC_FALSE, o.max_iter = 5000;
  PetscCall(Case(&Q, &o, CS_OT_MODE_BLOCKCYCLIC, "max scale, small, block-cyclic"));
  /* the bfloat16 stored kernel: the same checks (the plan is rebuilt in float32 from the potentials) */
  PetscCall(CsOTOptionsDefaults(&o));
  o.kernel_bf16 = PETSC_TRUE;
  PetscCall(Case(&P, &o, CS_OT_MODE_STORE, "balanced, stored bfloat16"));
  PetscCall(CsOTOptionsDefaults(&o));
  o.kernel_bf16 = PETSC_TRUE, o.tau_a = 0.9, o.tau_b = 0.7;
  PetscCall(Case(&P, &o, CS_OT_MODE_STORE, "unbalanced, stored bfloat16"));
  /* failures */
  PetscCall(CsOTOptionsDefaults(&o));
  o.max_iter = 3, o.eps_scaling = PETSC_FALSE, o.tol = 1e-8, o.name = "group X";
  PetscCall(ExpectError(&Q, &o, "group X: Sinkhorn did not reach the marginal error", "iteration cap"));
  PetscCall(ExpectError(&Q, &o, "achieved", "iteration cap names the achieved error"));
  PetscCall(CsOTOptionsDefaults(&o));
  o.epsilon = 1e-9;
  PetscCall(ExpectError(&Q, &o, "too small for the cost scale", "tiny epsilon"));
  PetscCall(CsOTOptionsDefaults(&o));
  o.tau_a = 1.5;
  PetscCall(ExpectError(&Q, &o, "tau_a and tau_b must be in (0, 1]", "bad tau"));
  PetscCall(Free(&P));
  PetscCall(Free(&Q));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv) { return CsTestMain(argc, argv, Body); }
