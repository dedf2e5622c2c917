/* cellshift trajectory: entropic OT couplings between successive time points of a time course (Waddington-OT /
   moscot), the cells' interpolated states at chosen times, and the held-out time point task.

   Space: the top -trajectory_pca principal axes (CsPCAFit) of all cells with a time (with -holdout_time: of the
   cells of the other time points only, so that nothing of the held-out cells is seen). Couplings: CsOTSolve between
   the cells at t_k (sources) and at t_{k+1} (targets), uniform weights, squared Euclidean cost scaled by its mean.
   A source cell x at time t in [t_k, t_{k+1}] is at x + s (T(x) - x), s = (t - t_k) / (t_{k+1} - t_k), with T(x)
   its barycentric projection (McCann interpolation of the entropic map); the state is written in gene space as the
   cell's own expression plus the displacement mapped back through the axes (the part outside the PCA space is the
   source cell's own).

   Held-out task: T must lie strictly between two other time points t0 < T < t1; the cells at t0 moved to
   s = (T - t0) / (t1 - t0) are scored against the true cells at T in the PCA space (the fit space above) by energy
   distance (CsEnergyDistance) and W2: the square root of the transport cost <P, C> of a balanced Sinkhorn plan
   (CsOTSolveDense, epsilon -trajectory_w2_epsilon times the mean squared distance; the entropic plan is slightly
   blurred, so this is W2 up to that bias, not debiased). Baseline: the cells of the nearest observed time point
   (t0 when s <= 1/2), scored the same way (the other neighbour's copy is shown too). Both sets are subsampled evenly to -trajectory_eval_max_cells. */
#include "commands.h"
#include <cellshift/h5ad.h>
#include <cellshift/linalg.h>
#include <cellshift/ot.h>
#include <cellshift/json.h>
#include <cellshift/model.h>

#define TRAJ_MAX_SAVE 64

typedef struct {
  char        data[PETSC_MAX_PATH_LEN], key[256], output[PETSC_MAX_PATH_LEN], outdir[PETSC_MAX_PATH_LEN];
  PetscReal   save[TRAJ_MAX_SAVE];
  PetscInt    nsave, pca, eval_max;
  PetscReal   holdout, w2_eps;
  PetscBool   has_holdout, flow; /* -method flow */
  CsOTOptions ot;
  CsTimeFlowOptions fl;
} TrajOptions;

PetscErrorCode CsTrajectoryOptions(MPI_Comm comm, void *ctx)
{
  TrajOptions *o = (TrajOptions *)ctx, local;

  PetscFunctionBeginUser;
  if (!o) o = &local;
  PetscCall(PetscMemzero(o, sizeof(*o)));
  PetscCall(CsOTOptionsDefaults(&o->ot));
  o->ot.max_iter = 5000;
  o->pca = 30, o->eval_max = 2000, o->w2_eps = 0.01, o->nsave = TRAJ_MAX_SAVE;
  PetscCall(PetscStrncpy(o->outdir, ".", sizeof(o->outdir)));
  o->fl.epochs = 30, o->fl.hidden = 64, o->fl.layers = 2, o->fl.tdim = 16, o->fl.batch = 128, o->fl.lr = 1e-3, o->fl.ot_eps = 0.05, o->fl.seed = 0;
  o->fl.ot_tol = 1e-4, o->fl.ot_max_iter = 5000;
  PetscOptionsBegin(comm, NULL, "Trajectories over a time course", "CsCommandTrajectory");
  PetscCall(PetscOptionsString("-data", "The time course (.h5ad)", "CsCommandTrajectory", o->data, o->data, sizeof(o->data), NULL));
  PetscCall(PetscOptionsString("-time_key", "obs column of the times (numeric, or categorical: numbers, else category order)",
                               "CsCommandTrajectory", o->key, o->key, sizeof(o->key), NULL));
  PetscCall(PetscOptionsRealArray("-save_times", "Times at which the cells' states are written to -output", "CsCommandTrajectory", o->save,
                                  &o->nsave, NULL));
  PetscCall(PetscOptionsString("-output", "The .h5ad of the states at -save_times (obs source_cell, time)", "CsCommandTrajectory", o->output,
                               o->output, sizeof(o->output), NULL));
  PetscCall(PetscOptionsReal("-holdout_time", "Hold this time point out, predict it from its neighbours and score it", "CsCommandTrajectory",
                             o->holdout, &o->holdout, &o->has_holdout));
  PetscCall(PetscOptionsString("-output_dir", "Folder of metrics.json (held-out task)", "CsCommandTrajectory", o->outdir, o->outdir,
                               sizeof(o->outdir), NULL));
  PetscCall(PetscOptionsInt("-trajectory_pca", "Principal axes of the transport space", "CsCommandTrajectory", o->pca, &o->pca, NULL));
  PetscCall(PetscOptionsReal("-trajectory_epsilon", "Entropic regularisation (units of the mean squared distance)", "CsCommandTrajectory",
                             o->ot.epsilon, &o->ot.epsilon, NULL));
  PetscCall(PetscOptionsReal("-trajectory_tau_a", "Source marginal penalty (1: balanced)", "CsCommandTrajectory", o->ot.tau_a, &o->ot.tau_a,
                             NULL));
  PetscCall(PetscOptionsReal("-trajectory_tau_b", "Target marginal penalty (1: balanced)", "CsCommandTrajectory", o->ot.tau_b, &o->ot.tau_b,
                             NULL));
  PetscCall(PetscOptionsReal("-trajectory_tol", "Sinkhorn marginal error tolerance", "CsCommandTrajectory", o->ot.tol, &o->ot.tol, NULL));
  PetscCall(PetscOptionsInt("-trajectory_max_iter", "Sinkhorn iteration cap", "CsCommandTrajectory", o->ot.max_iter, &o->ot.max_iter, NULL));
  {
    PetscEnum ly = (PetscEnum)o->ot.mode;
    PetscCall(PetscOptionsEnum("-trajectory_layout", "Sinkhorn cost layout: auto (kernel rows up to 1 GiB a rank, else stream), rows, stream, blockcyclic (ScaLAPACK)",
                               "CsCommandTrajectory", CsOTModes, ly, &ly, NULL));
    o->ot.mode = (CsOTMode)ly;
  }
  PetscCall(PetscOptionsReal("-trajectory_w2_epsilon", "Epsilon of the scoring Sinkhorn (W2), units of the mean squared distance",
                             "CsCommandTrajectory", o->w2_eps, &o->w2_eps, NULL));
  PetscCall(PetscOptionsInt("-trajectory_eval_max_cells", "Cells of each set used for energy distance and W2", "CsCommandTrajectory",
                            o->eval_max, &o->eval_max, NULL));
  {
    const char *const methods[] = {"ot", "flow", "CsTrajectoryMethod", "", NULL};
    PetscEnum         me = (PetscEnum)o->flow;
    PetscCall(PetscOptionsEnum("-method", "ot: McCann interpolation of the entropic OT couplings; flow: a velocity field v(x, t) over the course by "
                               "minibatch-OT flow matching, integrated with PETSc TS (the held-out task scores both)",
                               "CsCommandTrajectory", methods, me, &me, NULL));
    o->flow = (PetscBool)me;
  }
  PetscCall(PetscOptionsInt("-trajectory_flow_epochs", "Flow: epochs (ceil(source cells / batch) steps each)", "CsCommandTrajectory", o->fl.epochs, &o->fl.epochs, NULL));
  PetscCall(PetscOptionsInt("-trajectory_flow_hidden", "Flow: width of the velocity MLP's layers", "CsCommandTrajectory", o->fl.hidden, &o->fl.hidden, NULL));
  PetscCall(PetscOptionsInt("-trajectory_flow_layers", "Flow: hidden layers of the velocity MLP", "CsCommandTrajectory", o->fl.layers, &o->fl.layers, NULL));
  PetscCall(PetscOptionsInt("-trajectory_flow_time_dim", "Flow: size of the sinusoidal time embedding", "CsCommandTrajectory", o->fl.tdim, &o->fl.tdim, NULL));
  PetscCall(PetscOptionsInt("-trajectory_flow_batch", "Flow: cells of each time point of a minibatch", "CsCommandTrajectory", o->fl.batch, &o->fl.batch, NULL));
  PetscCall(PetscOptionsReal("-trajectory_flow_lr", "Flow: Adam learning rate", "CsCommandTrajectory", o->fl.lr, &o->fl.lr, NULL));
  PetscCall(PetscOptionsReal("-trajectory_flow_ot_epsilon", "Flow: entropic regularisation of the minibatch coupling (relative to the mean cost)",
                             "CsCommandTrajectory", o->fl.ot_eps, &o->fl.ot_eps, NULL));
  PetscCall(PetscOptionsReal("-trajectory_flow_ot_tol", "Flow: marginal error tolerance of the minibatch coupling", "CsCommandTrajectory", o->fl.ot_tol,
                             &o->fl.ot_tol, NULL));
  PetscCall(PetscOptionsInt("-trajectory_flow_ot_max_iter", "Flow: iteration cap of the minibatch coupling", "CsCommandTrajectory", o->fl.ot_max_iter,
                            &o->fl.ot_max_iter, NULL));
  PetscOptionsEnd();
  PetscCall(CsODEOptionsRegister(comm, "trajectory_flow_")); /* -trajectory_flow_ts_*: the integration of the flow */
  PetscFunctionReturn(0);
}

static int CmpReal(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* The time of every local cell (NaN: none) from the obs column. */
static PetscErrorCode CellTimes(MPI_Comm comm, const TrajOptions *o, const CsObsColumn *c, PetscInt n, double *t)
{
  PetscFunctionBeginUser;
  if (c->kind == CS_OBS_NUMERIC) {
    for (PetscInt i = 0; i < n; i++) t[i] = c->values[i];
    PetscFunctionReturn(0);
  }
  CsCheckAll(comm, !c->capped, "-time_key %s: a string column with too many distinct values to be times", o->key);
  {
    double   *cv;
    PetscBool numeric = PETSC_TRUE;
    PetscCall(PetscMalloc1(c->ncat + 1, &cv));
    for (PetscInt k = 0; k < c->ncat; k++) {
      char *end;
      cv[k] = strtod(c->cats[k], &end);
      if (end == c->cats[k] || *end || !isfinite(cv[k])) numeric = PETSC_FALSE;
    }
    if (!numeric)
      for (PetscInt k = 0; k < c->ncat; k++) cv[k] = (double)k; /* an ordered categorical: its category order */
    for (PetscInt i = 0; i < n; i++) t[i] = c->codes[i] < 0 ? NAN : cv[c->codes[i]];
    PetscCall(PetscFree(cv));
  }
  PetscFunctionReturn(0);
}

/* z [n x K] of the local cells selected by sel: (x - mean) V. */
static void Project(const CsCSR *X, const PetscBool *sel, PetscInt K, PetscInt G, const double *mean, const double *comps, float *z,
                    PetscInt *nz)
{
  double mv[512];
  for (PetscInt k = 0; k < K; k++) {
    mv[k] = 0;
    for (PetscInt j = 0; j < G; j++) mv[k] += mean[j] * comps[(size_t)k * G + j];
  }
  *nz = 0;
  for (PetscInt r = 0; r < X->nrows; r++) {
    if (!sel[r]) continue;
    for (PetscInt k = 0; k < K; k++) {
      double a = -mv[k];
      for (int64_t p = X->indptr[r]; p < X->indptr[r + 1]; p++) a += X->data[p] * comps[(size_t)k * G + X->indices[p]];
      z[(size_t)*nz * K + k] = (float)a;
    }
    (*nz)++;
  }
}

/* Gather rows [n x K] of every rank to every rank (rank order); *ng the total. */
static PetscErrorCode GatherRows(MPI_Comm comm, PetscInt n, PetscInt K, const float *z, PetscInt *ng, float **all)
{
  PetscMPIInt size, me = (PetscMPIInt)(n * K), *cnt, *dsp;
  PetscInt    tot = 0;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCall(PetscMalloc2(size, &cnt, size, &dsp));
  PetscCallMPI(MPI_Allgather(&me, 1, MPI_INT, cnt, 1, MPI_INT, comm));
  for (PetscMPIInt r = 0; r < size; r++) dsp[r] = (PetscMPIInt)tot, tot += cnt[r];
  PetscCall(PetscMalloc1(tot + 1, all));
  PetscCallMPI(MPI_Allgatherv(z, me, MPI_FLOAT, *all, cnt, dsp, MPI_FLOAT, comm));
  *ng = tot / PetscMax(K, 1);
  PetscCall(PetscFree2(cnt, dsp));
  PetscFunctionReturn(0);
}

/* Energy distance and W2 of P [np x K] against T [nt x K], both evenly subsampled to max rows. Same on every rank. */
static PetscErrorCode Score(const TrajOptions *o, PetscInt np, const float *P, PetscInt nt, const float *T, PetscInt K, double *energy,
                            double *w2)
{
  PetscInt    sp = PetscMin(np, o->eval_max), st = PetscMin(nt, o->eval_max);
  double     *dp, *dt;
  float      *fp, *ft, *bary;
  CsOTOptions opt;
  CsOTInfo    info;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc4((size_t)sp * K, &dp, (size_t)st * K, &dt, (size_t)sp * K, &fp, (size_t)st * K, &ft));
  PetscCall(PetscMalloc1((size_t)sp * K, &bary));
  for (PetscInt i = 0; i < sp; i++)
    for (PetscInt k = 0; k < K; k++) fp[(size_t)i * K + k] = P[(size_t)(i * np / sp) * K + k], dp[(size_t)i * K + k] = fp[(size_t)i * K + k];
  for (PetscInt i = 0; i < st; i++)
    for (PetscInt k = 0; k < K; k++) ft[(size_t)i * K + k] = T[(size_t)(i * nt / st) * K + k], dt[(size_t)i * K + k] = ft[(size_t)i * K + k];
  PetscCall(CsEnergyDistance(sp, st, K, dp, dt, energy));
  PetscCall(CsOTOptionsDefaults(&opt));
  opt.epsilon = o->w2_eps, opt.max_iter = 20000, opt.name = "trajectory: W2 of the held-out time point";
  PetscCall(CsOTSolveDense(&opt, sp, st, K, fp, ft, NULL, NULL, NULL, bary, &info));
  *w2 = PetscSqrtReal(PetscMax(info.cost * info.cost_scale, 0));
  PetscCall(PetscFree(bary));
  PetscCall(PetscFree4(dp, dt, fp, ft));
  PetscFunctionReturn(0);
}

/* The state of one trajectory command: the local cells, their times and PCA coordinates, the couplings. */
typedef struct {
  MPI_Comm    comm;
  PetscMPIInt size, rank, *cnt, *dsp; /* scratch of size ranks */
  TrajOptions o;
  CsH5adBlock b;
  PetscInt    n, N, G, K, nt; /* local and global cells, genes, axes, fitted time points */
  double     *t, *times;      /* t[n] local times (NaN: none); times[nt] the fitted time points, ascending */
  double     *mean, *comps, *vars;
  float      *z;     /* [cells with a time, K] coordinates */
  PetscInt   *lidx;  /* local row -> row of z (-1: no time) */
  PetscInt    npair, pair0; /* successive pairs; the held-out pair (-1: none) */
  float     **B;     /* per pair: the barycentric projections of its sources [nsrc, K] (NULL: pair not needed) */
  PetscInt  **src, *nsrc; /* per pair: local rows of its sources */
  CsTimeFlow  tf;        /* -method flow */
} Traj;

/* The distinct times (the same on every rank), the held-out one removed, and the checks on them. */
static PetscErrorCode TimePoints(Traj *tr)
{
  MPI_Comm     comm = tr->comm;
  TrajOptions *o    = &tr->o;
  PetscMPIInt  mine = (PetscMPIInt)tr->n;
  double      *tall, *times;
  PetscInt     N = 0, nt = 0, u = 0;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Allgather(&mine, 1, MPI_INT, tr->cnt, 1, MPI_INT, comm));
  for (PetscMPIInt r = 0; r < tr->size; r++) tr->dsp[r] = (PetscMPIInt)N, N += tr->cnt[r];
  PetscCall(PetscMalloc1(N + 1, &tall));
  PetscCall(PetscMalloc1(N + 1, &times));
  PetscCallMPI(MPI_Allgatherv(tr->t, mine, MPI_DOUBLE, tall, tr->cnt, tr->dsp, MPI_DOUBLE, comm));
  for (PetscInt i = 0; i < N; i++)
    if (!isnan(tall[i])) times[nt++] = tall[i];
  PetscCall(PetscFree(tall));
  qsort(times, (size_t)nt, sizeof(double), CmpReal);
  for (PetscInt i = 0; i < nt; i++)
    if (!u || times[i] != times[u - 1]) times[u++] = times[i];
  nt = u, tr->N = N, tr->times = times;
  CsCheckAll(comm, nt >= 2, "-time_key %s of %s: %" PetscInt_FMT " time point%s; a trajectory needs at least two", o->key, o->data, nt,
             nt == 1 ? "" : "s");
  if (o->has_holdout) {
    PetscInt h = 0;
    while (h < nt && times[h] != o->holdout) h++;
    CsCheckAll(comm, h < nt, "-holdout_time %g: not a time point of -time_key %s (from %g to %g)", o->holdout, o->key, times[0], times[nt - 1]);
    CsCheckAll(comm, h > 0 && h < nt - 1, "-holdout_time %g: the first and last time points (%g, %g) have no neighbour on both sides to interpolate from",
               o->holdout, times[0], times[nt - 1]);
    for (PetscInt i = h; i < nt - 1; i++) times[i] = times[i + 1];
    nt--;
  }
  for (PetscInt j = 0; j < o->nsave; j++)
    CsCheckAll(comm, o->save[j] >= times[0] && o->save[j] <= times[nt - 1], "-save_times %g: outside the observed times (%g to %g)", o->save[j],
               times[0], times[nt - 1]);
  tr->nt = nt;
  PetscFunctionReturn(0);
}

/* The PCA space of the fitted cells (the held-out ones excluded), and every timed cell's coordinates in it. */
static PetscErrorCode FitSpace(Traj *tr)
{
  PetscBool *sel;
  PetscInt   nfit = 0, nz, q = 0, n = tr->n, G = tr->G, K;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(n + 1, &sel));
  for (PetscInt i = 0; i < n; i++) sel[i] = (PetscBool)(!isnan(tr->t[i]) && !(tr->o.has_holdout && tr->t[i] == tr->o.holdout)), nfit += sel[i];
  K = tr->K = PetscMin(tr->o.pca, G);
  PetscCall(PetscMalloc3(G, &tr->mean, (size_t)K * G, &tr->comps, K, &tr->vars));
  PetscCall(CsPCAFit(tr->comm, &tr->b.X, sel, K, NULL, tr->mean, tr->comps, tr->vars));
  PetscCall(PetscPrintf(tr->comm, "trajectory: %" PetscInt_FMT " cells, %" PetscInt_FMT " time points fitted, PCA %" PetscInt_FMT " of %" PetscInt_FMT " genes\n",
                        tr->N, tr->nt, K, G));
  /* all cells with a time, the held-out ones included, in the fit space */
  for (PetscInt i = 0; i < n; i++) sel[i] = (PetscBool)!isnan(tr->t[i]);
  PetscCall(PetscMalloc2((size_t)n * K + 1, &tr->z, n + 1, &tr->lidx));
  Project(&tr->b.X, sel, K, G, tr->mean, tr->comps, tr->z, &nz);
  for (PetscInt i = 0; i < n; i++) tr->lidx[i] = sel[i] ? q++ : -1;
  PetscCall(PetscFree(sel));
  PetscFunctionReturn(0);
}

/* The couplings of the successive pairs that a save time or the held-out time needs: B[k] the barycentric
   projections of the sources of pair k. */
static PetscErrorCode Couple(Traj *tr)
{
  const TrajOptions *o = &tr->o;
  PetscInt           n = tr->n, K = tr->K, npair = tr->nt - 1;
  const double      *times = tr->times;
  float             *zs, *zt;

  PetscFunctionBeginUser;
  tr->npair = npair, tr->pair0 = -1;
  PetscCall(PetscCalloc3(npair, &tr->B, npair, &tr->src, npair, &tr->nsrc));
  if (o->has_holdout) { /* only the pair around the held-out time is needed */
    tr->pair0 = 0;
    while (tr->pair0 < npair - 1 && !(times[tr->pair0] < o->holdout && o->holdout < times[tr->pair0 + 1])) tr->pair0++;
  }
  PetscCall(PetscMalloc2((size_t)n * K + 1, &zs, (size_t)n * K + 1, &zt));
  for (PetscInt k = 0; k < npair; k++) {
    PetscInt    ns = 0, nq = 0;
    CsOTOptions opt = o->ot;
    CsOTInfo    info;
    char        name[256];
    PetscBool   needed = (PetscBool)(k == tr->pair0);
    for (PetscInt j = 0; j < o->nsave; j++)
      if ((o->save[j] >= times[k] && o->save[j] < times[k + 1]) || (k == npair - 1 && o->save[j] == times[k + 1])) needed = PETSC_TRUE;
    if (!needed) continue;
    PetscCall(PetscMalloc2((size_t)n * K + 1, &tr->B[k], n + 1, &tr->src[k]));
    for (PetscInt i = 0; i < n; i++) {
      if (tr->t[i] == times[k]) {
        tr->src[k][ns] = i;
        PetscCall(PetscArraycpy(zs + (size_t)ns++ * K, tr->z + (size_t)tr->lidx[i] * K, K));
      } else if (tr->t[i] == times[k + 1]) PetscCall(PetscArraycpy(zt + (size_t)nq++ * K, tr->z + (size_t)tr->lidx[i] * K, K));
    }
    tr->nsrc[k] = ns;
    if (o->flow && k != tr->pair0) continue; /* the flow moves these sources; the held-out pair is coupled for the comparison */
    PetscCall(PetscSNPrintf(name, sizeof(name), "trajectory: coupling of time %g to %g", times[k], times[k + 1]));
    opt.name = name;
    PetscCall(CsOTSolve(tr->comm, &opt, ns, nq, K, zs, zt, NULL, NULL, tr->B[k], NULL, NULL, &info));
    PetscCall(PetscPrintf(tr->comm, "  %g -> %g: %" PetscInt_FMT " Sinkhorn iterations, marginal error %.2e, transported mass %.4f\n", times[k],
                          times[k + 1], info.iterations, (double)info.error, (double)info.mass));
  }
  PetscCall(PetscFree2(zs, zt));
  PetscFunctionReturn(0);
}

static PetscErrorCode GatherTime(Traj *tr, double tc, float *loc, PetscInt *ng, float **all);

/* -method flow: the field trained on every fitted time point (all cells on every rank, grouped by time). */
static PetscErrorCode FlowTrain(Traj *tr)
{
  PetscInt *count, tot = 0, K = tr->K;
  float    *z, *loc, *all;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc2(tr->nt, &count, (size_t)tr->n * K + 1, &loc));
  PetscCall(PetscMalloc1((size_t)tr->N * K + 1, &z));
  for (PetscInt k = 0; k < tr->nt; k++) {
    PetscCall(GatherTime(tr, tr->times[k], loc, &count[k], &all));
    PetscCall(PetscArraycpy(z + (size_t)tot * K, all, (size_t)count[k] * K));
    tot += count[k];
    PetscCall(PetscFree(all));
  }
  PetscCall(PetscPrintf(tr->comm, "trajectory: flow matching over %" PetscInt_FMT " time points, %" PetscInt_FMT " epochs, MLP %" PetscInt_FMT " x %" PetscInt_FMT ", batch %" PetscInt_FMT ", lr %g\n",
                        tr->nt, tr->o.fl.epochs, tr->o.fl.layers, tr->o.fl.hidden, tr->o.fl.batch, (double)tr->o.fl.lr));
  PetscCall(CsTimeFlowTrain(tr->comm, &tr->o.fl, K, tr->nt, tr->times, count, z, &tr->tf));
  PetscCall(PetscFree(z));
  PetscCall(PetscFree2(count, loc));
  PetscFunctionReturn(0);
}

/* -method flow: the local sources of pair k moved from t_k to time tc, out [nsrc[k], K]. Every source of the pair
   is cut into the same blocks of 64 whatever the number of ranks (block b on rank b mod size), so the TS steps and
   the states do not depend on it; the blocks are summed into every rank (each entry comes from one rank). */
static PetscErrorCode FlowMove(Traj *tr, PetscInt k, double tc, float *out)
{
  PetscInt    K = tr->K, np, before = 0, mine = tr->nsrc[k];
  float      *loc, *all, *res;
  CsODEStats  st = {0};
  char        what[128];

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1((size_t)tr->n * K + 1, &loc));
  PetscCall(GatherTime(tr, tr->times[k], loc, &np, &all));
  PetscCall(PetscCalloc1((size_t)np * K + 1, &res));
  PetscCall(PetscSNPrintf(what, sizeof(what), "trajectory flow: time %g to %g", tr->times[k], tc));
  for (PetscInt b = 0, i0 = 0; i0 < np; b++, i0 += 64) {
    PetscInt nb = PetscMin(64, np - i0);
    if (b % tr->size != tr->rank) continue;
    PetscCall(PetscArraycpy(res + (size_t)i0 * K, all + (size_t)i0 * K, (size_t)nb * K));
    PetscCall(CsTimeFlowIntegrate(tr->tf, "trajectory_flow_", what, tr->times[k], tc, nb, res + (size_t)i0 * K, &st));
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, res, (PetscMPIInt)(np * K), MPI_FLOAT, MPI_SUM, tr->comm));
  PetscCallMPI(MPI_Exscan(&mine, &before, 1, MPIU_INT, MPI_SUM, tr->comm));
  if (!tr->rank) before = 0;
  PetscCall(PetscArraycpy(out, res + (size_t)before * K, (size_t)mine * K));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &st.steps, 1, MPIU_INT, MPI_SUM, tr->comm));
  PetscCall(PetscPrintf(tr->comm, "  flow %g -> %g: %" PetscInt_FMT " cells, %" PetscInt_FMT " ODE steps\n", tr->times[k], tc, np, st.steps));
  PetscCall(PetscFree(res));
  PetscCall(PetscFree(all));
  PetscCall(PetscFree(loc));
  PetscFunctionReturn(0);
}

/* The obs codes of the states (on rank 0): time index j and the source cell's row in the input file; total rows. */
static PetscErrorCode StateCodes(Traj *tr, const PetscInt *jk, PetscInt total, int32_t *tcodes, int32_t *ccodes)
{
  PetscInt off = 0;

  PetscFunctionBeginUser;
  for (PetscInt j = 0; j < tr->o.nsave; j++) {
    PetscInt    k = jk[j], tot = 0;
    PetscMPIInt me = (PetscMPIInt)tr->nsrc[k];
    int32_t    *mine;
    PetscCall(PetscMalloc1(tr->nsrc[k] + 1, &mine));
    for (PetscInt i = 0; i < tr->nsrc[k]; i++) mine[i] = (int32_t)(tr->b.rstart + tr->src[k][i]);
    PetscCallMPI(MPI_Gather(&me, 1, MPI_INT, tr->cnt, 1, MPI_INT, 0, tr->comm));
    if (!tr->rank)
      for (PetscMPIInt r = 0; r < tr->size; r++) tr->dsp[r] = (PetscMPIInt)tot, tot += tr->cnt[r];
    PetscCallMPI(MPI_Gatherv(mine, me, MPI_INT32_T, !tr->rank ? ccodes + off : NULL, tr->cnt, tr->dsp, MPI_INT32_T, 0, tr->comm));
    PetscCallMPI(MPI_Bcast(&tot, 1, MPIU_INT, 0, tr->comm));
    if (!tr->rank)
      for (PetscInt i = 0; i < tot; i++) tcodes[off + i] = (int32_t)j;
    off += tot;
    PetscCall(PetscFree(mine));
  }
  PetscCheck(off == total, PETSC_COMM_SELF, PETSC_ERR_PLIB, "trajectory: %" PetscInt_FMT " states coded, %" PetscInt_FMT " expected", off, total);
  PetscFunctionReturn(0);
}

/* -save_times: the sources of each save time's pair moved to x + s (T(x) - x), in gene space, into -output. */
static PetscErrorCode WriteStates(Traj *tr)
{
  const TrajOptions *o = &tr->o;
  PetscInt           total = 0, off = 0, N = tr->N, G = tr->G, K = tr->K, *jk;
  char             **tcats, **ccats;
  int32_t           *tcodes = NULL, *ccodes = NULL;
  CsH5adOutColumn    cols[2];
  CsH5adWriter       w = NULL;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc2(o->nsave, &jk, o->nsave, &tcats));
  for (PetscInt j = 0; j < o->nsave; j++) {
    PetscInt k = 0, g;
    char     s[64];
    while (k < tr->npair - 1 && o->save[j] >= tr->times[k + 1]) k++;
    jk[j] = k, g = tr->nsrc[k];
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &g, 1, MPIU_INT, MPI_SUM, tr->comm));
    total += g;
    PetscCall(PetscSNPrintf(s, sizeof(s), "%g", o->save[j]));
    PetscCall(PetscStrallocpy(s, &tcats[j]));
  }
  if (!tr->rank) PetscCall(PetscMalloc2(total + 1, &tcodes, total + 1, &ccodes));
  PetscCall(PetscMalloc1(N, &ccats));
  for (PetscInt i = 0; i < N; i++) {
    char s[32];
    PetscCall(PetscSNPrintf(s, sizeof(s), "%" PetscInt_FMT, i));
    PetscCall(PetscStrallocpy(s, &ccats[i]));
  }
  PetscCall(StateCodes(tr, jk, total, tcodes, ccodes));
  cols[0].name = "source_cell", cols[0].ncat = N, cols[0].cats = ccats, cols[0].codes = ccodes;
  cols[1].name = "time", cols[1].ncat = o->nsave, cols[1].cats = tcats, cols[1].codes = tcodes;
  PetscCall(CsH5adWriterCreate(tr->comm, o->output, total, G, tr->b.genes, 2, cols, &w));
  for (PetscInt j = 0; j < o->nsave; j++) {
    PetscInt    k = jk[j];
    PetscLayout rows_layout; /* this time point's rows in rank order */
    double      s = (o->save[j] - tr->times[k]) / (tr->times[k + 1] - tr->times[k]);
    float      *rows, *mv = NULL;
    PetscCall(PetscMalloc1((size_t)tr->nsrc[k] * G + 1, &rows));
    if (o->flow) {
      PetscCall(PetscMalloc1((size_t)tr->nsrc[k] * K + 1, &mv));
      PetscCall(FlowMove(tr, k, o->save[j], mv));
    }
    for (PetscInt i = 0; i < tr->nsrc[k]; i++) {
      PetscInt c = tr->src[k][i];
      float   *row = rows + (size_t)i * G;
      double   dz[512];
      CsCSRRowToDense(&tr->b.X, c, row);
      for (PetscInt a = 0; a < K; a++)
        dz[a] = o->flow ? (double)mv[(size_t)i * K + a] - tr->z[(size_t)tr->lidx[c] * K + a]
                        : s * ((double)tr->B[k][(size_t)i * K + a] - tr->z[(size_t)tr->lidx[c] * K + a]);
      for (PetscInt a = 0; a < K; a++)
        for (PetscInt g = 0; g < G; g++) row[g] += (float)(dz[a] * tr->comps[(size_t)a * G + g]);
    }
    PetscCall(PetscLayoutCreateFromSizes(tr->comm, tr->nsrc[k], PETSC_DECIDE, 1, &rows_layout));
    PetscCall(CsH5adWriterWriteRows(w, off + rows_layout->rstart, tr->nsrc[k], rows));
    off += rows_layout->N;
    PetscCall(PetscLayoutDestroy(&rows_layout));
    PetscCall(PetscFree(rows));
    PetscCall(PetscFree(mv));
  }
  PetscCall(CsH5adWriterCommit(&w));
  PetscCall(PetscPrintf(tr->comm, "trajectory: %" PetscInt_FMT " states at %" PetscInt_FMT " times written to %s\n", total, o->nsave, o->output));
  PetscCall(CsStrArrayDestroy(N, &ccats));
  for (PetscInt j = 0; j < o->nsave; j++) PetscCall(PetscFree(tcats[j]));
  PetscCall(PetscFree2(jk, tcats));
  if (!tr->rank) PetscCall(PetscFree2(tcodes, ccodes));
  PetscFunctionReturn(0);
}

/* The held-out task's result, for metrics.json. */
typedef struct {
  const TrajOptions *o;
  double             t0, t1, s, tn, to, e[4], w2[4]; /* interpolation, nearest, other neighbour, flow */
  PetscInt           K, ntrue;
} HeldOutResult;

static PetscErrorCode MetricsBody(void *ctx, FILE *fp)
{
  const HeldOutResult *h    = (const HeldOutResult *)ctx;
  json_t              *root = json_object(), *m;
  PetscErrorCode       ierr = 0;
  const char          *names[4] = {"ot_interpolation", "nearest_time_point", "other_neighbour", "flow"};
  const double         at[4]    = {NAN, h->tn, h->to, NAN};

  PetscFunctionBeginUser;
  PetscCheck(root, PETSC_COMM_SELF, PETSC_ERR_MEM, "out of memory");
  PetscCall(CsJSONSet(root, "data", json_string(h->o->data)));
  PetscCall(CsJSONSet(root, "time_key", json_string(h->o->key)));
  PetscCall(CsJSONSet(root, "holdout_time", CsJSONNumber(h->o->holdout)));
  PetscCall(CsJSONSet(root, "t0", CsJSONNumber(h->t0)));
  PetscCall(CsJSONSet(root, "t1", CsJSONNumber(h->t1)));
  PetscCall(CsJSONSet(root, "s", CsJSONNumber(h->s)));
  PetscCall(CsJSONSet(root, "pca", json_integer(h->K)));
  PetscCall(CsJSONSet(root, "epsilon", CsJSONNumber(h->o->ot.epsilon)));
  PetscCall(CsJSONSet(root, "tau_a", CsJSONNumber(h->o->ot.tau_a)));
  PetscCall(CsJSONSet(root, "tau_b", CsJSONNumber(h->o->ot.tau_b)));
  PetscCall(CsJSONSet(root, "w2_epsilon", CsJSONNumber(h->o->w2_eps)));
  PetscCall(CsJSONSet(root, "n_true", json_integer(h->ntrue)));
  PetscCall(CsJSONSet(root, "w2", json_string("sqrt(<P, C>) of a balanced Sinkhorn plan, epsilon w2_epsilon times the mean squared distance, in the PCA space")));
  PetscCall(CsJSONSet(root, "method", json_string(h->o->flow ? "flow" : "ot")));
  for (int c = 0; c < (h->o->flow ? 4 : 3); c++) {
    PetscCall(CsJSONSet(root, names[c], m = json_object()));
    if (c == 1 || c == 2) PetscCall(CsJSONSet(m, "time", CsJSONNumber(at[c])));
    PetscCall(CsJSONSet(m, "energy_distance", CsJSONNumber(h->e[c])));
    PetscCall(CsJSONSet(m, "w2", CsJSONNumber(h->w2[c])));
  }
  ierr = CsJSONDump(root, fp);
  json_decref(root);
  PetscCall(ierr);
  PetscFunctionReturn(0);
}

/* Rows [nl, K] of the local cells at time tc, gathered on every rank. */
static PetscErrorCode GatherTime(Traj *tr, double tc, float *loc, PetscInt *ng, float **all)
{
  PetscInt nl = 0, K = tr->K;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < tr->n; i++)
    if (tr->t[i] == tc) PetscCall(PetscArraycpy(loc + (size_t)nl++ * K, tr->z + (size_t)tr->lidx[i] * K, K));
  PetscCall(GatherRows(tr->comm, nl, K, loc, ng, all));
  PetscFunctionReturn(0);
}

/* -holdout_time: the sources of the pair around it moved to s, scored with the copies of both neighbours
   against the true cells; a table, and metrics.json in -output_dir. */
static PetscErrorCode HeldOut(Traj *tr)
{
  const TrajOptions *o = &tr->o;
  PetscInt           k = tr->pair0, K = tr->K, np, ntr, n1;
  HeldOutResult      h;
  float             *P, *Tr, *Nb, *loc;
  char               ln[64], lo[64], path[PETSC_MAX_PATH_LEN];

  PetscFunctionBeginUser;
  h.o = o, h.K = K, h.t0 = tr->times[k], h.t1 = tr->times[k + 1], h.s = (o->holdout - h.t0) / (h.t1 - h.t0);
  h.tn = h.s <= 0.5 ? h.t0 : h.t1, h.to = h.s <= 0.5 ? h.t1 : h.t0; /* the nearest is the baseline (t0 on a tie) */
  PetscCall(PetscMalloc1((size_t)tr->n * K + 1, &loc));
  for (PetscInt i = 0; i < tr->nsrc[k]; i++)
    for (PetscInt a = 0; a < K; a++) {
      float x = tr->z[(size_t)tr->lidx[tr->src[k][i]] * K + a];
      loc[(size_t)i * K + a] = (float)(x + h.s * ((double)tr->B[k][(size_t)i * K + a] - x));
    }
  PetscCall(GatherRows(tr->comm, tr->nsrc[k], K, loc, &np, &P));
  PetscCall(GatherTime(tr, o->holdout, loc, &ntr, &Tr));
  for (PetscInt c = 0; c < 2; c++) {
    PetscCall(GatherTime(tr, c == 0 ? h.tn : h.to, loc, &n1, &Nb));
    PetscCall(Score(o, n1, Nb, ntr, Tr, K, &h.e[1 + c], &h.w2[1 + c]));
    PetscCall(PetscFree(Nb));
  }
  PetscCall(Score(o, np, P, ntr, Tr, K, &h.e[0], &h.w2[0]));
  h.e[3] = h.w2[3] = NAN;
  if (o->flow) { /* the same sources moved by the flow, scored the same way */
    PetscInt nf;
    float   *F;
    PetscCall(FlowMove(tr, k, o->holdout, loc));
    PetscCall(GatherRows(tr->comm, tr->nsrc[k], K, loc, &nf, &F));
    PetscCall(Score(o, nf, F, ntr, Tr, K, &h.e[3], &h.w2[3]));
    PetscCall(PetscFree(F));
  }
  h.ntrue = ntr;
  PetscCall(PetscSNPrintf(ln, sizeof(ln), "nearest time point (%g)", h.tn));
  PetscCall(PetscSNPrintf(lo, sizeof(lo), "other neighbour (%g)", h.to));
  PetscCall(PetscPrintf(tr->comm,
                        "held-out time %g (%" PetscInt_FMT " cells), interpolated from %g (%" PetscInt_FMT " cells) and %g at s = %.4f, PCA %" PetscInt_FMT "\n"
                        "  %-30s %14s %14s\n  %-30s %14.6g %14.6g\n  %-30s %14.6g %14.6g\n  %-30s %14.6g %14.6g\n",
                        o->holdout, ntr, h.t0, np, h.t1, h.s, K, "method", "energy_dist", "W2", "ot_interpolation", h.e[0], h.w2[0], ln, h.e[1],
                        h.w2[1], lo, h.e[2], h.w2[2]));
  if (o->flow) PetscCall(PetscPrintf(tr->comm, "  %-30s %14.6g %14.6g\n", "flow", h.e[3], h.w2[3]));
  PetscCall(PetscSNPrintf(path, sizeof(path), "%s/metrics.json", o->outdir));
  PetscCall(CsWriteTextRank0(tr->comm, path, MetricsBody, &h));
  PetscCall(PetscFree(P));
  PetscCall(PetscFree(Tr));
  PetscCall(PetscFree(loc));
  PetscFunctionReturn(0);
}

PetscErrorCode CsCommandTrajectory(void)
{
  Traj           tr;
  TrajOptions   *o = &tr.o;
  PetscErrorCode ierr;
  PetscReal      mb = 256;
  char          *keys[1];
  PetscBool      req[1] = {PETSC_TRUE};

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(&tr, sizeof(tr)));
  tr.comm = PETSC_COMM_WORLD;
  PetscCallMPI(MPI_Comm_size(tr.comm, &tr.size));
  PetscCallMPI(MPI_Comm_rank(tr.comm, &tr.rank));
  PetscCall(CsOptionsRecordBegin());
  ierr = CsTrajectoryOptions(tr.comm, o);
  if (!ierr) ierr = CsSystemSetFromOptions(tr.comm);
  if (!ierr) ierr = CsH5adWriterOptions(tr.comm, &mb);
  PetscCall(CsOptionsRecordEnd());
  PetscCall(ierr);
  PetscCall(CsOptionsCheckUsed(tr.comm, "trajectory", "none"));
  CsCheckAll(tr.comm, o->data[0] && o->key[0], "usage: cellshift trajectory -data FILE.h5ad -time_key KEY [-save_times t1,t2 -output OUT.h5ad] [-holdout_time T]");
  CsCheckAll(tr.comm, o->nsave == 0 || o->output[0], "-save_times needs -output FILE.h5ad");
  CsCheckAll(tr.comm, o->output[0] || o->has_holdout, "nothing to do: give -save_times with -output, or -holdout_time");
  CsCheckAll(tr.comm, o->pca >= 1 && o->pca <= 512, "-trajectory_pca %" PetscInt_FMT ": must be in [1, 512]", o->pca);
  CsCheckAll(tr.comm, o->eval_max >= 2, "-trajectory_eval_max_cells must be at least 2");
  CsCheckAll(tr.comm, o->fl.epochs >= 1 && o->fl.hidden >= 1 && o->fl.layers >= 1 && o->fl.tdim >= 2 && o->fl.batch >= 2,
             "-trajectory_flow_epochs, _hidden, _layers must be at least 1, _time_dim and _batch at least 2");
  CsCheckAll(tr.comm, o->fl.lr > 0 && o->fl.ot_eps > 0 && isfinite(o->fl.lr) && isfinite(o->fl.ot_eps),
             "-trajectory_flow_lr and -trajectory_flow_ot_epsilon must be positive numbers");
  CsCheckAll(tr.comm, o->fl.ot_tol > 0 && isfinite(o->fl.ot_tol) && o->fl.ot_max_iter >= 1,
             "-trajectory_flow_ot_tol must be a positive number and -trajectory_flow_ot_max_iter at least 1");
  keys[0] = o->key;
  PetscCall(CsH5adRead(tr.comm, o->data, "", 1, keys, req, &tr.b));
  tr.n = tr.b.nlocal, tr.G = tr.b.ngenes;
  PetscCall(PetscMalloc1(tr.n + 1, &tr.t));
  PetscCall(PetscMalloc2(tr.size, &tr.cnt, tr.size, &tr.dsp));
  PetscCall(CellTimes(tr.comm, o, &tr.b.obs[0], tr.n, tr.t));
  PetscCall(TimePoints(&tr));
  PetscCall(FitSpace(&tr));
  if (o->flow) PetscCall(FlowTrain(&tr));
  PetscCall(Couple(&tr));
  if (o->output[0] && o->nsave > 0) PetscCall(WriteStates(&tr));
  if (o->has_holdout) PetscCall(HeldOut(&tr));
  for (PetscInt k = 0; k < tr.npair; k++)
    if (tr.B[k]) PetscCall(PetscFree2(tr.B[k], tr.src[k]));
  PetscCall(PetscFree3(tr.B, tr.src, tr.nsrc));
  PetscCall(CsTimeFlowDestroy(&tr.tf));
  PetscCall(PetscFree2(tr.z, tr.lidx));
  PetscCall(PetscFree3(tr.mean, tr.comps, tr.vars));
  PetscCall(PetscFree(tr.times));
  PetscCall(PetscFree2(tr.cnt, tr.dsp));
  PetscCall(PetscFree(tr.t));
  PetscCall(CsH5adBlockFree(&tr.b));
  PetscFunctionReturn(0);
}
