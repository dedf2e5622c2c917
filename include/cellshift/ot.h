/* Entropic optimal transport between two point clouds (src/ot): log-domain stabilised Sinkhorn, balanced or
   unbalanced, on the squared Euclidean cost.

   The problem (moscot / OTT-JAX and POT conventions). Points x_i (i < n) with weights a_i and y_j (j < m) with
   weights b_j; cost C_ij = |x_i - y_j|^2 / c, where c (CsOTInfo.cost_scale) is 1, the mean of |x_i - y_j|^2 over
   all pairs (unweighted, as moscot's cost_scale "mean") or its maximum (as POT's M /= M.max()). Minimise
     <P, C> + eps sum_ij P_ij (log P_ij - 1) + rho_a KL(P 1 | a) + rho_b KL(P^T 1 | b)
   with tau_a = rho_a / (rho_a + eps), tau_b likewise (tau = 1: that marginal is a hard constraint; tau in (0, 1):
   KL penalised, moscot's tau_a/tau_b, POT's sinkhorn_unbalanced(reg = eps, reg_m = rho) with its entropic
   regulariser; for a balanced problem the entropy term equals eps KL(P | a b^T) up to a constant).
   The plan is P_ij = exp((f_i + g_j - C_ij) / eps) for the dual potentials f, g, updated alternately as
     f_i = tau_a eps (log a_i - lse_j((g_j - C_ij) / eps)),   g_j = tau_b eps (log b_j - lse_i((f_i - C_ij) / eps)).
   Convergence: the marginal error  sum_i |(P 1)_i - a_i exp(-(1/tau_a - 1) f_i / eps)| / sum_i a_i  (for tau_a = 1
   the plain L1 error of the row marginal; for tau_a < 1 the distance to the row marginal the penalised optimum
   needs at the current potentials, 0 at the fixed point), measured before each f update (after a g update, so the
   column side is satisfied). epsilon scaling: eps_k = max(eps, eps0 decay^k) with eps0 the mean scaled cost; the
   tolerance is tested at the target eps only.

   Two ways to iterate, the same iterates. Stored (the rank's kernel rows K[nloc, m] fit in CS_OT_STORE_MAX_BYTES):
   stabilised scaling, K_ij = exp((f_i + g_j - C_ij) / eps) with the potentials absorbed and P = diag(u) K diag(v);
   one pass over K per iteration gives K v, the new u and K^T u; u, v are absorbed into f, g (and K rebuilt from
   the cost) when |log u| or |log v| passes 20 or eps changes; the first f_i is min_j C_ij, so no row of K
   underflows. Streamed: the log-domain sweeps lse_j / lse_i on cost blocks of 128 x 1024 recomputed (sgemm) every
   iteration, memory O((n + m) d). Costs, kernels and log-sum-exps in float32 (src/nn/pairwise.c's distance and
   log-sum-exp kernels, OpenBLAS sgemv), potentials and sums in double; reachable tolerances are about 1e-6 and up.

   Failures (PETSc errors that name o->name, the achieved marginal error and the epsilon): the tolerance not met
   within max_iter (unless o->allow_unconverged, then info->converged says so); an epsilon too small for the cost
   scale (largest scaled cost / eps above 1e6: float32 cannot represent the kernel) or a kernel row or column
   that underflows to 0 (a non-finite potential); bad arguments (n, m < 1 on the communicator, d < 0, weights
   not positive and finite, eps <= 0, tau outside (0, 1]). */
#ifndef CELLSHIFT_OT_H
#define CELLSHIFT_OT_H

#include <cellshift/sys.h>

typedef enum { CS_OT_SCALE_NONE, CS_OT_SCALE_MEAN, CS_OT_SCALE_MAX } CsOTCostScale;
/* How the cost is obtained: AUTO stores the rank's kernel rows (nloc x m floats; with kernel_bf16 also their
   bfloat16 copy) when they fit in CS_OT_STORE_MAX_BYTES, else STREAM: recomputed block by block (128 x 1024) on
   every sweep, memory O((n + m) d). BLOCKCYCLIC: the cost and kernel as ScaLAPACK nb x nb block-cyclic double matrices on the BLACS grid of the
   communicator (built by pdgemm as -2 X Y^T plus the norms; n m / ranks entries of each a rank), the row and column
   sums of the iterations reduced over the process rows and columns; the same iterates as STORE. */
typedef enum { CS_OT_MODE_AUTO, CS_OT_MODE_STORE, CS_OT_MODE_STREAM, CS_OT_MODE_BLOCKCYCLIC } CsOTMode;
/* Their option names (PetscOptionsEnum): auto, rows (STORE: kernel rows), stream, blockcyclic. */
PETSC_EXTERN const char *const CsOTModes[];
#define CS_OT_STORE_MAX_BYTES ((size_t)1 << 30)

typedef struct {
  PetscReal     epsilon;           /* entropic regularisation, in units of the scaled cost (default 0.05) */
  PetscReal     tau_a, tau_b;      /* marginal penalties as above (default 1, 1: balanced) */
  PetscReal     tol;               /* marginal error tolerance (default 1e-4) */
  PetscInt      max_iter;          /* iteration cap, epsilon-scaling iterations included (default 1000) */
  PetscBool     eps_scaling;       /* default PETSC_TRUE */
  PetscReal     eps_decay;         /* factor per iteration of the epsilon schedule (default 0.8) */
  CsOTCostScale scale;             /* default CS_OT_SCALE_MEAN */
  CsOTMode      mode;              /* default CS_OT_MODE_AUTO */
  PetscBool     kernel_bf16;       /* stored mode: iterate on a bfloat16 copy of the kernel (2 bytes an entry read per
                                      iteration instead of 4) until the marginal error is below
                                      max(tol, kernel_bf16_refine), then on the float32 kernel: rounding entries to 8
                                      bits moves the plan's marginals by about 3e-4, so the tolerance is met and
                                      reported on the float32 plan. Holds the float32 distances and the bfloat16
                                      kernel (6 bytes an entry). Default false */
  PetscReal     kernel_bf16_refine; /* default 1e-3; 0: never switch (the error is then measured on the bfloat16
                                       kernel and the float32 plan's marginals stay about 3e-4 off) */
  PetscBool     allow_unconverged; /* return the last iterate instead of an error (default PETSC_FALSE) */
  PetscInt      check_every;       /* measure the marginal error every this many iterations (default 1) */
  const char   *name;              /* what is solved, for error messages (e.g. the group); NULL: "the transport problem" */
} CsOTOptions;

typedef struct {
  PetscInt  iterations; /* iterations done (epsilon scaling included) */
  PetscReal error;      /* the achieved marginal error (above) */
  PetscReal cost_scale; /* c, the factor the squared distances were divided by */
  PetscReal cost;       /* <P, C> in scaled cost units (computed only with a plan or barycentric output) */
  PetscReal mass;       /* sum_ij P_ij (1 when balanced with sum a = 1; computed with a plan or barycentre) */
  PetscBool converged;
  PetscBool streamed;   /* the cost was recomputed block by block */
} CsOTInfo;

/* Defaults above. Not collective. */
PETSC_EXTERN PetscErrorCode CsOTOptionsDefaults(CsOTOptions *o);

/* Small dense solve on one process (for minibatch OT: flow matching couplings), not collective.
   x [n, d], y [m, d] row-major; a [n], b [m] the weights (NULL: uniform 1/n, 1/m). Outputs, each may be NULL:
   plan [n, m] row-major, P_ij; bary [n, d] the barycentric projection sum_j P_ij y_j / sum_j P_ij; info.
   The kernel is stored (n m floats). */
PETSC_EXTERN PetscErrorCode CsOTSolveDense(const CsOTOptions *o, PetscInt n, PetscInt m, PetscInt d, const float *x, const float *y,
                                           const PetscReal *a, const PetscReal *b, float *plan, float *bary, CsOTInfo *info);

/* Distributed solve, collective on comm. Each rank passes its own source rows x [nloc, d] and target rows
   y [mloc, d] (global order: rank 0's rows first), their weights a [nloc], b [mloc] (NULL on every rank:
   uniform 1/n, 1/m over the global counts); d the same on all ranks. The cost is never whole on one rank: a rank
   holds all points (O((n + m) d)) and its kernel rows [nloc, m] (stored mode) or none (streamed). Outputs (each
   NULL or not on all ranks): bary [nloc, d] of the rank's sources; f [nloc], g [mloc]
   the potentials in scaled cost units; info (the same on all ranks). Results do not depend on the number of
   ranks beyond float rounding (streamed: column and row blocks are fixed in global indices; stored: K^T u is
   summed over the ranks' rows). */
PETSC_EXTERN PetscErrorCode CsOTSolve(MPI_Comm comm, const CsOTOptions *o, PetscInt nloc, PetscInt mloc, PetscInt d, const float *x,
                                      const float *y, const PetscReal *a, const PetscReal *b, float *bary, PetscReal *f,
                                      PetscReal *g, CsOTInfo *info);

/* -log_view events: CsOTSinkhorn (a whole solve), CsOTSweep (one a Sinkhorn iteration's pass: the fused kernel pass
   when stored, each of the row and column log-sum-exp sweeps when streamed), CsOTKernel (stored: building the
   kernel from the distances, first and after each absorption), CsOTProject (plan and barycentric projection).
   Registered on the first solve. */
PETSC_EXTERN PetscLogEvent CS_EVENT_OT_SOLVE, CS_EVENT_OT_SWEEP, CS_EVENT_OT_KERNEL, CS_EVENT_OT_PROJECT;

#endif
