/* Integration of learned velocity fields dx/dt = v(x, t) from t = 0 to 1 with PETSc TS (src/ode).

   A block of n points of dimension d is one TS state (a sequential Vec of n d entries), so the error control
   acts on the block as a whole: blocks that hold the same points take the same steps wherever they are solved,
   which is what makes predictions independent of the number of ranks when callers cut their points into fixed
   blocks. Defaults: TSRK 5DP (adaptive Dormand-Prince 5(4)), atol = rtol = 1e-5, initial step 0.05, at most
   10000 steps and 10 rejections in a row; every TS and TSAdapt option passes through with the caller's prefix
   (-<prefix>ts_type, -<prefix>ts_rk_type, -<prefix>ts_adapt_type, -<prefix>ts_adapt_dt_min, -<prefix>ts_atol,
   -<prefix>ts_rtol, -<prefix>ts_dt, -<prefix>ts_max_steps, ...), e.g. fixed-step Euler with
   -<prefix>ts_type euler -<prefix>ts_dt 1e-3 (no adaptivity for Euler). The solve is logged as CsODESolve.

   Failures (errors naming `what`, the time reached, the last step size and the counts): a solve that does not
   reach t = 1 (the step size collapsed below the adaptor's minimum, too many rejections in a row, the step
   limit) or a non-finite state. */
#ifndef CELLSHIFT_ODE_H
#define CELLSHIFT_ODE_H

#include <cellshift/sys.h>

/* v[n, d] = the field at the n points x[n, d] and time t (float32: the field is a network). */
typedef PetscErrorCode (*CsODEField)(void *ctx, double t, PetscInt n, const float *x, float *v);

typedef struct {
  PetscInt steps, rejected; /* accepted steps and rejected step attempts */
  double   dt_min, dt_last; /* smallest accepted step and the last one */
} CsODEStats;

/* Collective on comm: create a TS with the defaults and the options prefix and read its options once, so that they
   are known to the option checker and listed by -help (call from the owner's setfromoptions). */
PETSC_EXTERN PetscErrorCode CsODEOptionsRegister(MPI_Comm comm, const char prefix[]);
/* Not collective: integrate the n x d points x (in: t = 0, out: t = 1) through the field. st accumulates (may be
   NULL). */
PETSC_EXTERN PetscErrorCode CsODEIntegrate(const char prefix[], const char what[], PetscInt n, PetscInt d, CsODEField f, void *ctx, float *x,
                                           CsODEStats *st);

PETSC_EXTERN PetscLogEvent CS_EVENT_ODE_SOLVE;

#endif
