/* Integration of learned velocity fields dx/dt = v(x, t) from t = 0 to 1 with PETSc TS (src/ode).

   A block of n points of dimension d is one TS state (a sequential Vec of n d entries), so the error control
   acts on the block as a whole: blocks that hold the same points take the same steps wherever they are solved,
   which is what makes predictions independent of the number of ranks when callers cut their points into fixed
   blocks. Defaults: TSRK 5DP (adaptive Dormand-Prince 5(4)), atol = rtol = 1e-5, initial step 0.05, at most
   10000 steps and 10 rejections in a row; the TS and TSAdapt options pass through with the caller's prefix
   (TSSetFromOptions at each solve). The ones the option checker knows and -help lists (CsODEOptionsRegister):
   -<prefix>ts_type, _rk_type, _atol, _rtol, _dt, _max_steps, _max_reject, _adapt_type, _adapt_dt_min,
   _adapt_dt_max, _adapt_safety, _adapt_reject_safety, _adapt_clip, _adapt_scale_solve_failed, _adapt_max_ignore,
   _adapt_monitor, _adapt_wnormtype, _monitor, _view. E.g. fixed-step Euler: -<prefix>ts_type euler
   -<prefix>ts_dt 1e-3 (Euler does not adapt). The adaptor accepts a step at its minimum size whatever the
   error; that is taken as a collapse and stops the solve with an error. The solve is logged as CsODESolve.

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

/* Collective on comm: declare the options above with the prefix, so that they are known to the option checker and
   listed by -help (call from the owner's setfromoptions). */
PETSC_EXTERN PetscErrorCode CsODEOptionsRegister(MPI_Comm comm, const char prefix[]);
/* Not collective: integrate the n x d points x (in: t = 0, out: t = 1) through the field. st accumulates (may be
   NULL). */
PETSC_EXTERN PetscErrorCode CsODEIntegrate(const char prefix[], const char what[], PetscInt n, PetscInt d, CsODEField f, void *ctx, float *x,
                                           CsODEStats *st);

PETSC_EXTERN PetscLogEvent CS_EVENT_ODE_SOLVE;

#endif
