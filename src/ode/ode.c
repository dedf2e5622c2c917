/* PETSc TS integration of learned fields. See include/cellshift/ode.h. */
#include <cellshift/ode.h>
#include <petscts.h>
#include <math.h>

PetscLogEvent CS_EVENT_ODE_SOLVE = 0;

typedef struct {
  CsODEField f;
  void      *ctx;
  PetscInt   n, d;
  float     *x, *v;
  double     dt_min;
  const char *what;
  PetscBool   collapsed;
} Field;

static PetscErrorCode RHS(TS ts, PetscReal t, Vec U, Vec F, void *p)
{
  Field             *c = (Field *)p;
  const PetscScalar *u;
  PetscScalar       *f;
  size_t             N = (size_t)c->n * c->d;

  PetscFunctionBeginUser;
  (void)ts;
  PetscCall(VecGetArrayRead(U, &u));
  for (size_t i = 0; i < N; i++) c->x[i] = (float)u[i];
  PetscCall(VecRestoreArrayRead(U, &u));
  PetscCall(c->f(c->ctx, (double)t, c->n, c->x, c->v));
  for (size_t i = 0; i < N; i++)
    PetscCheck(isfinite(c->v[i]) && isfinite(c->x[i]), PETSC_COMM_SELF, CS_ERR_INPUT,
               "%s: the velocity is not finite at t = %g (state %g): the field diverges; retrain the model or check its input", c->what, (double)t,
               (double)c->x[i]);
  PetscCall(VecGetArray(F, &f));
  for (size_t i = 0; i < N; i++) f[i] = c->v[i];
  PetscCall(VecRestoreArray(F, &f));
  PetscFunctionReturn(0);
}

static PetscErrorCode PostStep(TS ts)
{
  Field    *c;
  PetscReal t0, t;

  PetscFunctionBeginUser;
  PetscCall(TSGetApplicationContext(ts, &c));
  PetscCall(TSGetPrevTime(ts, &t0));
  PetscCall(TSGetTime(ts, &t));
  c->dt_min = PetscMin(c->dt_min, (double)(t - t0));
  {
    /* TSAdapt accepts a step at its minimum size whatever the error: that is a collapse, stop there. */
    TSAdapt   adapt;
    PetscReal hmin, hmax, tmax;
    PetscBool none;
    PetscCall(TSGetAdapt(ts, &adapt));
    PetscCall(PetscObjectTypeCompare((PetscObject)adapt, TSADAPTNONE, &none));
    PetscCall(TSAdaptGetStepLimits(adapt, &hmin, &hmax));
    PetscCall(TSGetMaxTime(ts, &tmax));
    if (!none && t < tmax && t - t0 <= hmin * (1 + 1e-10)) {
      c->collapsed = PETSC_TRUE;
      PetscCall(TSSetConvergedReason(ts, TS_DIVERGED_STEP_REJECTED));
    }
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode Defaults(MPI_Comm comm, const char prefix[], TS *out)
{
  TS ts;

  PetscFunctionBeginUser;
  PetscCall(TSCreate(comm, &ts));
  PetscCall(TSSetOptionsPrefix(ts, prefix));
  PetscCall(TSSetProblemType(ts, TS_NONLINEAR));
  PetscCall(TSSetType(ts, TSRK));
  PetscCall(TSRKSetType(ts, TSRK5DP));
  PetscCall(TSSetTime(ts, 0.0));
  PetscCall(TSSetMaxTime(ts, 1.0));
  PetscCall(TSSetTimeStep(ts, 0.05));
  PetscCall(TSSetMaxSteps(ts, 10000));
  PetscCall(TSSetExactFinalTime(ts, TS_EXACTFINALTIME_MATCHSTEP));
  PetscCall(TSSetTolerances(ts, 1e-5, NULL, 1e-5, NULL));
  PetscCall(TSSetMaxStepRejections(ts, 10));
  PetscCall(TSSetErrorIfStepFails(ts, PETSC_FALSE)); /* our message says what failed */
  *out = ts;
  PetscFunctionReturn(0);
}

PetscErrorCode CsODEOptionsRegister(MPI_Comm comm, const char prefix[])
{
  /* Declared here rather than by TSSetFromOptions, whose type lists go straight to stdout while the option checker
     records (they would appear in every log); the values are read by TSSetFromOptions in CsODEIntegrate. */
  static const char *const opts[][2] = {
    {"-ts_type", "TS method (rk, euler, ssp, ...; TSSetType)"},
    {"-ts_rk_type", "Runge-Kutta scheme (5dp, 5bs, 4, 3bs, ...; TSRKSetType)"},
    {"-ts_atol", "Absolute tolerance of the local error (TSSetTolerances)"},
    {"-ts_rtol", "Relative tolerance of the local error (TSSetTolerances)"},
    {"-ts_dt", "Initial (or fixed) step size (TSSetTimeStep)"},
    {"-ts_max_steps", "Most steps per solve (TSSetMaxSteps)"},
    {"-ts_max_reject", "Most rejections in a row (TSSetMaxStepRejections)"},
    {"-ts_adapt_type", "Step-size adaptor (basic, dsp, none, ...; TSAdaptSetType)"},
    {"-ts_adapt_dt_min", "Smallest step size: reaching it is an error (TSAdaptSetStepLimits)"},
    {"-ts_adapt_dt_max", "Largest step size (TSAdaptSetStepLimits)"},
    {"-ts_adapt_safety", "Safety factor of the step-size choice (TSAdaptSetSafety)"},
    {"-ts_adapt_reject_safety", "Extra safety after a rejection (TSAdaptSetSafety)"},
    {"-ts_adapt_clip", "Bounds of the step-size change factor (TSAdaptSetClip)"},
    {"-ts_adapt_scale_solve_failed", "Step factor after a failed solve (TSAdaptSetScaleSolveFailed)"},
    {"-ts_adapt_max_ignore", "Error below which a step is not adapted (TSAdaptSetMaxIgnore)"},
    {"-ts_adapt_monitor", "Print every step-size decision (TSAdaptSetMonitor)"},
    {"-ts_adapt_wnormtype", "Norm of the error (2 or infinity; TSAdaptSetCheckStage)"},
    {"-ts_monitor", "Print every step (TSMonitorSet)"},
    {"-ts_view", "Print the integrator after each solve (TSView)"}};
  char v[256];

  PetscFunctionBeginUser;
  if (!CS_EVENT_ODE_SOLVE) PetscCall(PetscLogEventRegister("CsODESolve", CS_CLASSID, &CS_EVENT_ODE_SOLVE));
  PetscOptionsBegin(comm, prefix, "ODE integration of the velocity field (PETSc TS; defaults rk 5dp, atol = rtol = 1e-5, dt 0.05)", "TS");
  for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) PetscCall(PetscOptionsString(opts[i][0], opts[i][1], "TS", "", v, sizeof(v), NULL));
  PetscOptionsEnd();
  PetscFunctionReturn(0);
}

PetscErrorCode CsODEIntegrate(const char prefix[], const char what[], PetscInt n, PetscInt d, CsODEField f, void *ctx, float *x, CsODEStats *st)
{
  TS                 ts;
  Vec                U;
  Field              c = {f, ctx, n, d, NULL, NULL, PETSC_INFINITY, what, PETSC_FALSE};
  PetscScalar       *u;
  const PetscScalar *uc;
  size_t             N = (size_t)n * d;
  PetscReal          t, dt;
  PetscInt           steps, rej;
  TSConvergedReason  reason;
  PetscBool          finite = PETSC_TRUE;

  PetscFunctionBeginUser;
  if (N == 0) PetscFunctionReturn(0);
  if (!CS_EVENT_ODE_SOLVE) PetscCall(PetscLogEventRegister("CsODESolve", CS_CLASSID, &CS_EVENT_ODE_SOLVE));
  PetscCall(PetscLogEventBegin(CS_EVENT_ODE_SOLVE, 0, 0, 0, 0));
  PetscCall(PetscMalloc2(N, &c.x, N, &c.v));
  PetscCall(VecCreateSeq(PETSC_COMM_SELF, (PetscInt)N, &U));
  PetscCall(VecGetArray(U, &u));
  for (size_t i = 0; i < N; i++) u[i] = x[i];
  PetscCall(VecRestoreArray(U, &u));
  PetscCall(Defaults(PETSC_COMM_SELF, prefix, &ts));
  PetscCall(TSSetApplicationContext(ts, &c));
  PetscCall(TSSetRHSFunction(ts, NULL, RHS, &c));
  PetscCall(TSSetPostStep(ts, PostStep));
  PetscCall(TSSetFromOptions(ts));
  PetscCall(TSSetSolution(ts, U));
  PetscCall(TSSolve(ts, U));
  PetscCall(TSGetConvergedReason(ts, &reason));
  PetscCall(TSGetTime(ts, &t));
  PetscCall(TSGetTimeStep(ts, &dt));
  PetscCall(TSGetStepNumber(ts, &steps));
  PetscCall(TSGetStepRejections(ts, &rej));
  PetscCall(VecGetArrayRead(U, &uc));
  for (size_t i = 0; i < N; i++) {
    if (PetscIsInfOrNanScalar(uc[i])) finite = PETSC_FALSE;
    x[i] = (float)PetscRealPart(uc[i]);
  }
  PetscCall(VecRestoreArrayRead(U, &uc));
  PetscCall(TSDestroy(&ts));
  PetscCall(VecDestroy(&U));
  PetscCall(PetscFree2(c.x, c.v));
  PetscCall(PetscLogEventEnd(CS_EVENT_ODE_SOLVE, 0, 0, 0, 0));
  PetscCheck(reason >= 0 && PetscAbsReal(t - 1) < 1e-9, PETSC_COMM_SELF, CS_ERR_INPUT,
             "%s: the ODE solve stopped at t = %g of 1 (%s%s) after %" PetscInt_FMT " steps (%" PetscInt_FMT
             " rejected), last step size %g: the step size collapsed or the field diverges; loosen -%sts_rtol / -%sts_atol, "
             "raise -%sts_max_steps, or retrain the model",
             what, (double)t, TSConvergedReasons[reason], c.collapsed ? ", the step size fell to the adaptor's minimum" : "", steps, rej, (double)dt, prefix, prefix, prefix);
  PetscCheck(finite, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: the ODE solve produced non-finite states (%" PetscInt_FMT " steps): the field diverges",
             what, steps);
  if (st) {
    st->steps += steps, st->rejected += rej;
    st->dt_min = st->steps == steps ? c.dt_min : PetscMin(st->dt_min, c.dt_min);
    st->dt_last = (double)dt;
  }
  PetscFunctionReturn(0);
}
