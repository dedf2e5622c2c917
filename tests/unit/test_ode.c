/* CsODEIntegrate against exact solutions: dx/dt = -a x + b t (a per coordinate), whose solution is
   x(1) = x0 e^{-a} + b (a - 1 + e^{-a}) / a^2. Checks: the default adaptive RK 5DP meets its tolerance; a tighter
   tolerance moves the result by less than the looser tolerance; fixed-step Euler converges to the same answer at
   first order; the step counts are reported; a field that blows up (dx/dt = x^2 from x0 = 2, infinite at t = 1/2)
   is an error that names the problem, not a silent result, and so is a step size that collapses (a tolerance
   the adaptor's minimum step cannot meet). */
#include "testing.h"
#include <cellshift/ode.h>

static const double coef_a[3] = {0.5, 2.0, 5.0}, coef_b = 0.7;

static PetscErrorCode Linear(void *ctx, double t, PetscInt n, const float *x, float *v)
{
  (void)ctx;
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt k = 0; k < 3; k++) v[i * 3 + k] = (float)(-coef_a[k] * x[i * 3 + k] + coef_b * t);
  return 0;
}

static PetscErrorCode Blowup(void *ctx, double t, PetscInt n, const float *x, float *v)
{
  (void)ctx, (void)t;
  for (PetscInt i = 0; i < n; i++) v[i] = x[i] * x[i];
  return 0;
}

static double Err(const float *x, const float *x0, PetscInt n)
{
  double e = 0;
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt k = 0; k < 3; k++) {
      double a = coef_a[k], ex = x0[i * 3 + k] * exp(-a) + coef_b * (a - 1 + exp(-a)) / (a * a);
      e = fmax(e, fabs(x[i * 3 + k] - ex));
    }
  return e;
}

static PetscErrorCode Solve(const char *opts, float *x, const float *x0, PetscInt n, CsODEStats *st)
{
  PetscFunctionBeginUser;
  PetscCall(PetscOptionsClearValue(NULL, "-t_ts_type"));
  PetscCall(PetscOptionsClearValue(NULL, "-t_ts_dt"));
  PetscCall(PetscOptionsClearValue(NULL, "-t_ts_rtol"));
  PetscCall(PetscOptionsClearValue(NULL, "-t_ts_atol"));
  PetscCall(PetscOptionsClearValue(NULL, "-t_ts_max_steps"));
  PetscCall(PetscOptionsClearValue(NULL, "-t_ts_adapt_dt_min"));
  PetscCall(PetscOptionsInsertString(NULL, opts));
  PetscCall(PetscArraycpy(x, x0, n * 3));
  PetscCall(PetscMemzero(st, sizeof(*st)));
  PetscCall(CsODEIntegrate("t_", "test", n, 3, Linear, NULL, x, st));
  PetscFunctionReturn(0);
}

static PetscErrorCode Body(void)
{
  PetscInt       n = 4;
  float          x0[12], x[12], y[12];
  CsODEStats     st, st2;
  PetscErrorCode ierr;
  double         prev = 0;

  PetscFunctionBeginUser;
  CsTestFill(x0, 12, 1, -2, 2);
  PetscCall(CsODEOptionsRegister(PETSC_COMM_SELF, "t_"));
  /* Default RK 5DP, tolerance 1e-5: within a few times the tolerance of the exact solution (float32 states). */
  PetscCall(Solve("", x, x0, n, &st));
  printf("rk5dp 1e-5: error %.3g, %d steps, %d rejected, smallest step %.3g\n", Err(x, x0, n), (int)st.steps, (int)st.rejected, st.dt_min);
  CS_EXPECT(Err(x, x0, n) < 5e-5, "rk5dp error %g", Err(x, x0, n));
  CS_EXPECT(st.steps > 1 && st.dt_min > 0, "steps reported");
  /* Tighter tolerance: moves the result by less than the loose tolerance, and takes more steps. */
  PetscCall(Solve("-t_ts_rtol 1e-3 -t_ts_atol 1e-3", y, x0, n, &st2));
  for (PetscInt i = 0; i < 12; i++) CS_EXPECT(fabs(y[i] - x[i]) < 1e-3 * (1 + fabs(x[i])), "tighter tolerance moved %g", fabs(y[i] - x[i]));
  CS_EXPECT(st2.steps < st.steps, "a looser tolerance takes fewer steps (%d vs %d)", (int)st2.steps, (int)st.steps);
  /* Fixed-step Euler: first order convergence to the same answer. */
  for (int k = 0; k < 3; k++) {
    char   o[128];
    double e;
    int    N = 100 * (1 << (2 * k));
    snprintf(o, sizeof(o), "-t_ts_type euler -t_ts_dt %.17g -t_ts_max_steps %d", 1.0 / N, 2 * N);
    PetscCall(Solve(o, y, x0, n, &st2));
    e = Err(y, x0, n);
    printf("euler %d steps: error %.3g\n", (int)st2.steps, e);
    CS_EXPECT(st2.steps == N, "euler took %d steps, expected %d", (int)st2.steps, N);
    if (k) CS_EXPECT(e < prev / 3 && e > prev / 6, "euler error %g after %g: not first order", e, prev);
    prev = e;
  }
  CS_EXPECT(prev < 1e-3, "euler with 1600 steps within 1e-3 (got %g)", prev);
  /* A step size that cannot shrink enough to meet the tolerance: an error, not a result. */
  PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
  ierr = Solve("-t_ts_rtol 1e-12 -t_ts_atol 1e-12 -t_ts_adapt_dt_min 0.1", y, x0, n, &st2);
  PetscCall(PetscPopErrorHandler());
  CS_EXPECT(ierr == CS_ERR_INPUT, "collapsing step size must be an input error (got %d)", (int)ierr);
  PetscCall(PetscOptionsClearValue(NULL, "-t_ts_adapt_dt_min"));
  /* Blow-up: an error, with a message. */
  {
    float z[2] = {2, 2};
    PetscCall(PetscOptionsClearValue(NULL, "-t_ts_type"));
    PetscCall(PetscOptionsClearValue(NULL, "-t_ts_dt"));
    PetscCall(PetscOptionsClearValue(NULL, "-t_ts_max_steps"));
    PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
    ierr = CsODEIntegrate("t_", "blow-up test", 2, 1, Blowup, NULL, z, NULL);
    PetscCall(PetscPopErrorHandler());
    CS_EXPECT(ierr == CS_ERR_INPUT, "a diverging field must be an input error (got %d)", (int)ierr);
  }
  PetscFunctionReturn(0);
}

int main(int argc, char **argv) { return CsTestMain(argc, argv, Body); }
