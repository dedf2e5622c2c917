/* Power-law fits L(N) = a N^-alpha + c with Tao (TAOBRGN) and their bootstrap (see include/cellshift/scaling.h). */
#include <cellshift/scaling.h>
#include <cellshift/rng.h>
#include <cellshift/sys.h>
#include <petsctao.h>
#include <math.h>

typedef struct {
  PetscInt      n;
  const double *x, *y; /* scaled abscissae N / N_ref and losses L / L_ref */
} FitCtx;

/* r_i = a x_i^-alpha + c - y_i */
static PetscErrorCode Residual(Tao tao, Vec P, Vec R, void *ptr)
{
  FitCtx            *f = (FitCtx *)ptr;
  const PetscScalar *p;
  PetscScalar       *r;

  PetscFunctionBeginUser;
  PetscCall(VecGetArrayRead(P, &p));
  PetscCall(VecGetArray(R, &r));
  for (PetscInt i = 0; i < f->n; i++) r[i] = p[0] * pow(f->x[i], -p[1]) + p[2] - f->y[i];
  PetscCall(VecRestoreArray(R, &r));
  PetscCall(VecRestoreArrayRead(P, &p));
  PetscFunctionReturn(0);
}

/* J [n x 3] = [x^-alpha, -a ln(x) x^-alpha, 1] */
static PetscErrorCode Jacobian(Tao tao, Vec P, Mat J, Mat Jpre, void *ptr)
{
  FitCtx            *f = (FitCtx *)ptr;
  const PetscScalar *p;
  PetscScalar       *j;

  PetscFunctionBeginUser;
  PetscCall(VecGetArrayRead(P, &p));
  PetscCall(MatDenseGetArrayWrite(J, &j)); /* column major, leading dimension n */
  for (PetscInt i = 0; i < f->n; i++) {
    double t = pow(f->x[i], -p[1]);
    j[i] = t, j[f->n + i] = -p[0] * log(f->x[i]) * t, j[2 * f->n + i] = 1;
  }
  PetscCall(MatDenseRestoreArrayWrite(J, &j));
  PetscCall(VecRestoreArrayRead(P, &p));
  PetscFunctionReturn(0);
}

static PetscInt DistinctX(PetscInt n, const double N[])
{
  PetscInt d = 0;
  for (PetscInt i = 0; i < n; i++) {
    PetscBool seen = PETSC_FALSE;
    for (PetscInt k = 0; k < i && !seen; k++) seen = N[k] == N[i] ? PETSC_TRUE : PETSC_FALSE;
    if (!seen) d++;
  }
  return d;
}

/* Start: c0 = min(y) / 2, then least squares of log(y - c0) = log a - alpha log x. */
static void StartingPoint(const FitCtx *f, double p[3])
{
  double ymin = INFINITY, sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (PetscInt i = 0; i < f->n; i++) ymin = fmin(ymin, f->y[i]);
  p[2] = ymin > 0 ? 0.5 * ymin : 0;
  for (PetscInt i = 0; i < f->n; i++) {
    double u = log(f->x[i]), v = log(fmax(f->y[i] - p[2], 1e-12));
    sx += u, sy += v, sxx += u * u, sxy += u * v;
  }
  {
    double n = (double)f->n, den = n * sxx - sx * sx, slope = den > 0 ? (n * sxy - sx * sy) / den : 0;
    p[1] = PetscMin(PetscMax(-slope, 0.05), 5.0);
    p[0] = exp((sy + p[1] * sx) / n);
  }
}

PetscErrorCode CsPowerLawFit(PetscInt n, const double N[], const double L[], CsPowerLaw *fit, PetscBool *converged)
{
  double             lx = 0, yref = 0, *x, *y, p0[3];
  FitCtx             f;
  Tao                tao;
  Vec                P, R, lb, ub;
  Mat                J;
  TaoConvergedReason reason;
  PetscInt           its;
  const PetscScalar *p;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < n; i++)
    PetscCheck(N[i] > 0 && isfinite(N[i]) && isfinite(L[i]), PETSC_COMM_SELF, CS_ERR_INPUT, "point %" PetscInt_FMT " (N = %g, L = %g) cannot be fitted: N must be positive and L finite", i, N[i], L[i]);
  {
    PetscInt d = DistinctX(n, N);
    PetscCheck(d >= 4, PETSC_COMM_SELF, CS_ERR_INPUT, "%" PetscInt_FMT " distinct N: the law a N^-alpha + c needs at least 4", d);
  }
  PetscCall(PetscMalloc2(n, &x, n, &y));
  for (PetscInt i = 0; i < n; i++) lx += log(N[i]) / n, yref += fabs(L[i]) / n;
  if (!(yref > 0)) yref = 1;
  for (PetscInt i = 0; i < n; i++) x[i] = N[i] / exp(lx), y[i] = L[i] / yref;
  f = (FitCtx){n, x, y};
  StartingPoint(&f, p0);

  PetscCall(TaoCreate(PETSC_COMM_SELF, &tao));
  PetscCall(TaoSetType(tao, TAOBRGN));
  PetscCall(VecCreateSeq(PETSC_COMM_SELF, 3, &P));
  PetscCall(VecDuplicate(P, &lb));
  PetscCall(VecDuplicate(P, &ub));
  PetscCall(VecCreateSeq(PETSC_COMM_SELF, n, &R));
  PetscCall(MatCreateSeqDense(PETSC_COMM_SELF, n, 3, NULL, &J));
  {
    PetscScalar *a;
    PetscCall(VecGetArray(P, &a));
    a[0] = p0[0], a[1] = p0[1], a[2] = p0[2];
    PetscCall(VecRestoreArray(P, &a));
  }
  PetscCall(VecSet(lb, 0));
  PetscCall(VecSet(ub, PETSC_INFINITY));
  PetscCall(TaoSetSolution(tao, P));
  PetscCall(TaoSetResidualRoutine(tao, R, Residual, &f));
  PetscCall(TaoSetJacobianResidualRoutine(tao, J, J, Jacobian, &f));
  PetscCall(TaoSetVariableBounds(tao, lb, ub));
  /* The scaled data are O(1), so an absolute gradient tolerance of 1e-6 is far below any real table's noise. Near a
     well-determined minimum Gauss-Newton converges quadratically and overshoots it by orders of magnitude; a flat
     law (a -> 0, alpha undetermined) is a valley along which the gradient only decays like 1/iteration, and this
     tolerance is what ends it. */
  PetscCall(TaoSetTolerances(tao, 1e-6, 0, 0));
  PetscCall(TaoSetMaximumIterations(tao, 2000));
  PetscCall(TaoSetMaximumFunctionEvaluations(tao, 5000));
  PetscCall(TaoSolve(tao));
  PetscCall(TaoGetConvergedReason(tao, &reason));
  PetscCall(TaoGetIterationNumber(tao, &its));
  PetscCall(VecGetArrayRead(P, &p));
  fit->alpha      = p[1];
  fit->a          = p[0] * yref * pow(exp(lx), p[1]);
  fit->c          = p[2] * yref;
  fit->iterations = its;
  fit->reason     = (int)reason;
  PetscCall(VecRestoreArrayRead(P, &p));
  fit->rss = 0;
  for (PetscInt i = 0; i < n; i++) {
    double r = CsPowerLawEval(fit, N[i]) - L[i];
    fit->rss += r * r;
  }
  PetscCall(MatDestroy(&J));
  PetscCall(VecDestroy(&R));
  PetscCall(VecDestroy(&ub));
  PetscCall(VecDestroy(&lb));
  PetscCall(VecDestroy(&P));
  PetscCall(TaoDestroy(&tao));
  PetscCall(PetscFree2(x, y));
  if (converged) *converged = reason > 0 && isfinite(fit->a) && isfinite(fit->rss) ? PETSC_TRUE : PETSC_FALSE;
  else
    PetscCheck(reason > 0 && isfinite(fit->a), PETSC_COMM_SELF, CS_ERR_INPUT, "the power-law fit did not converge (Tao: %s after %" PetscInt_FMT " iterations)",
               TaoConvergedReasons[reason], its);
  PetscFunctionReturn(0);
}

double CsPowerLawEval(const CsPowerLaw *f, double N) { return f->a * pow(N, -f->alpha) + f->c; }

static int CmpDouble(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* The q-quantile of sorted v[0..n) by linear interpolation between order statistics (numpy's default). */
static double Quantile(const double *v, PetscInt n, double q)
{
  double   h = q * (double)(n - 1);
  PetscInt k = (PetscInt)floor(h);
  if (k >= n - 1) return v[n - 1];
  return v[k] + (h - (double)k) * (v[k + 1] - v[k]);
}

PetscErrorCode CsPowerLawBootstrap(const char what[], PetscInt n, const double N[], const double L[], PetscInt nboot, uint64_t seed, double level,
                                   CsPowerLawCI *ci)
{
  double   *bn, *bl, *par[3];
  PetscInt  ok = 0, d = DistinctX(n, N);
  PetscBool conv;

  PetscFunctionBeginUser;
  PetscCheck(nboot >= 10, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: -bootstrap %" PetscInt_FMT ": at least 10 resamples", what, nboot);
  PetscCheck(level > 0 && level < 1, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: confidence level %g must be in (0, 1)", what, level);
  PetscCheck(d >= 4, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: %" PetscInt_FMT " distinct N among %" PetscInt_FMT " points; the law a N^-alpha + c needs at least 4", what, d, n);
  PetscCall(CsPowerLawFit(n, N, L, &ci->fit, &conv));
  PetscCheck(conv, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: the power-law fit did not converge (Tao: %s after %" PetscInt_FMT " iterations)", what,
             TaoConvergedReasons[ci->fit.reason], ci->fit.iterations);
  PetscCall(PetscMalloc5(n, &bn, n, &bl, nboot, &par[0], nboot, &par[1], nboot, &par[2]));
  for (PetscInt b = 0; b < nboot; b++) {
    CsPowerLaw f;
    for (PetscInt k = 0; k < n; k++) {
      PetscInt i = (PetscInt)(CsRngUniform(seed, CS_STREAM_BOOT, (uint64_t)b, (uint64_t)k) * (double)n);
      bn[k] = N[i], bl[k] = L[i];
    }
    if (DistinctX(n, bn) < 4) continue;
    PetscCall(CsPowerLawFit(n, bn, bl, &f, &conv));
    if (!conv) continue;
    par[0][ok] = f.a, par[1][ok] = f.alpha, par[2][ok] = f.c, ok++;
  }
  ci->nboot = nboot, ci->nskipped = nboot - ok;
  PetscCheck(2 * ok >= nboot, PETSC_COMM_SELF, CS_ERR_INPUT,
             "%s: only %" PetscInt_FMT " of %" PetscInt_FMT " bootstrap resamples of the rows could be fitted (too few distinct N or no convergence): "
             "no interval; run more replicates per N", what, ok, nboot);
  for (int k = 0; k < 3; k++) {
    qsort(par[k], (size_t)ok, sizeof(double), CmpDouble);
    ci->lo[k] = Quantile(par[k], ok, 0.5 * (1 - level));
    ci->hi[k] = Quantile(par[k], ok, 1 - 0.5 * (1 - level));
  }
  PetscCall(PetscFree5(bn, bl, par[0], par[1], par[2]));
  PetscFunctionReturn(0);
}
