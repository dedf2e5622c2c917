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

#define TRAJ_MAX_SAVE 64

typedef struct {
  char        data[PETSC_MAX_PATH_LEN], key[256], output[PETSC_MAX_PATH_LEN], outdir[PETSC_MAX_PATH_LEN];
  PetscReal   save[TRAJ_MAX_SAVE];
  PetscInt    nsave, pca, eval_max;
  PetscReal   holdout, w2_eps;
  PetscBool   has_holdout;
  CsOTOptions ot;
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
  PetscCall(PetscOptionsReal("-trajectory_w2_epsilon", "Epsilon of the scoring Sinkhorn (W2), units of the mean squared distance",
                             "CsCommandTrajectory", o->w2_eps, &o->w2_eps, NULL));
  PetscCall(PetscOptionsInt("-trajectory_eval_max_cells", "Cells of each set used for energy distance and W2", "CsCommandTrajectory",
                            o->eval_max, &o->eval_max, NULL));
  PetscOptionsEnd();
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

PetscErrorCode CsCommandTrajectory(void)
{
  MPI_Comm       comm = PETSC_COMM_WORLD;
  TrajOptions    o;
  PetscErrorCode ierr;
  PetscReal      mb = 256;
  CsH5adBlock    b;
  char          *keys[1];
  PetscBool      req[1] = {PETSC_TRUE}, *sel;
  double        *t, *tall, *times, *mean, *comps, *vars;
  PetscInt       N = 0, nt = 0, n, G, K, nfit = 0;
  PetscMPIInt    size, rank, mine, *cnt, *dsp;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCall(CsOptionsRecordBegin());
  ierr = CsTrajectoryOptions(comm, &o);
  if (!ierr) ierr = CsSystemSetFromOptions(comm);
  if (!ierr) ierr = CsH5adWriterOptions(comm, &mb);
  PetscCall(CsOptionsRecordEnd());
  PetscCall(ierr);
  PetscCall(CsOptionsCheckUsed(comm, "trajectory", "none"));
  CsCheckAll(comm, o.data[0] && o.key[0], "usage: cellshift trajectory -data FILE.h5ad -time_key KEY [-save_times t1,t2 -output OUT.h5ad] [-holdout_time T]");
  CsCheckAll(comm, o.nsave == 0 || o.output[0], "-save_times needs -output FILE.h5ad");
  CsCheckAll(comm, o.output[0] || o.has_holdout, "nothing to do: give -save_times with -output, or -holdout_time");
  CsCheckAll(comm, o.pca >= 1 && o.pca <= 512, "-trajectory_pca %" PetscInt_FMT ": must be in [1, 512]", o.pca);
  CsCheckAll(comm, o.eval_max >= 2, "-trajectory_eval_max_cells must be at least 2");
  keys[0] = o.key;
  PetscCall(CsH5adRead(comm, o.data, "", 1, keys, req, &b));
  n = b.nlocal, G = b.ngenes;
  PetscCall(PetscMalloc2(n + 1, &t, n + 1, &sel));
  PetscCall(CellTimes(comm, &o, &b.obs[0], n, t));

  /* the distinct times, the same on every rank */
  PetscCall(PetscMalloc2(size, &cnt, size, &dsp));
  mine = (PetscMPIInt)n;
  PetscCallMPI(MPI_Allgather(&mine, 1, MPI_INT, cnt, 1, MPI_INT, comm));
  for (PetscMPIInt r = 0; r < size; r++) dsp[r] = (PetscMPIInt)N, N += cnt[r];
  PetscCall(PetscMalloc2(N + 1, &tall, N + 1, &times));
  PetscCallMPI(MPI_Allgatherv(t, mine, MPI_DOUBLE, tall, cnt, dsp, MPI_DOUBLE, comm));
  for (PetscInt i = 0; i < N; i++)
    if (!isnan(tall[i])) times[nt++] = tall[i];
  qsort(times, (size_t)nt, sizeof(double), CmpReal);
  {
    PetscInt u = 0;
    for (PetscInt i = 0; i < nt; i++)
      if (!u || times[i] != times[u - 1]) times[u++] = times[i];
    nt = u;
  }
  CsCheckAll(comm, nt >= 2, "-time_key %s of %s: %" PetscInt_FMT " time point%s; a trajectory needs at least two", o.key, o.data, nt,
             nt == 1 ? "" : "s");
  if (o.has_holdout) {
    PetscInt h = 0;
    while (h < nt && times[h] != o.holdout) h++;
    CsCheckAll(comm, h < nt, "-holdout_time %g: not a time point of -time_key %s (from %g to %g)", o.holdout, o.key, times[0], times[nt - 1]);
    CsCheckAll(comm, h > 0 && h < nt - 1, "-holdout_time %g: the first and last time points (%g, %g) have no neighbour on both sides to interpolate from",
               o.holdout, times[0], times[nt - 1]);
    for (PetscInt i = h; i < nt - 1; i++) times[i] = times[i + 1];
    nt--;
  }
  for (PetscInt j = 0; j < o.nsave; j++)
    CsCheckAll(comm, o.save[j] >= times[0] && o.save[j] <= times[nt - 1], "-save_times %g: outside the observed times (%g to %g)", o.save[j],
               times[0], times[nt - 1]);

  /* the PCA space of the fitted cells */
  for (PetscInt i = 0; i < n; i++) sel[i] = (PetscBool)(!isnan(t[i]) && !(o.has_holdout && t[i] == o.holdout)), nfit += sel[i];
  K = PetscMin(o.pca, G);
  PetscCall(PetscMalloc3(G, &mean, (size_t)K * G, &comps, K, &vars));
  PetscCall(CsPCAFit(comm, &b.X, sel, K, NULL, mean, comps, vars));
  PetscCall(PetscPrintf(comm, "trajectory: %" PetscInt_FMT " cells, %" PetscInt_FMT " time points fitted, PCA %" PetscInt_FMT " of %" PetscInt_FMT " genes\n", N, nt, K, G));

  {
    float          *z, *zs, *zt, *rows = NULL;
    PetscInt       *lidx, *nsrc, nz;
    PetscInt        npair = nt - 1;
    float         **B;
    PetscInt      **src;
    CsOTInfo        info;
    FILE           *f = NULL;
    PetscBool       hold = o.has_holdout;
    PetscInt        pair0 = -1;

    PetscCall(PetscMalloc4((size_t)n * K + 1, &z, (size_t)n * K + 1, &zs, (size_t)n * K + 1, &zt, n + 1, &lidx));
    PetscCall(PetscCalloc3(npair, &B, npair, &src, npair, &nsrc));
    for (PetscInt i = 0; i < n; i++) sel[i] = (PetscBool)!isnan(t[i]);
    /* all cells with a time, the held-out ones included, in the fit space */
    {
      PetscInt q = 0;
      Project(&b.X, sel, K, G, mean, comps, z, &nz);
      for (PetscInt i = 0; i < n; i++) lidx[i] = sel[i] ? q++ : -1;
    }
    if (hold) { /* only the pair around the held-out time is needed */
      pair0 = 0;
      while (pair0 < npair - 1 && !(times[pair0] < o.holdout && o.holdout < times[pair0 + 1])) pair0++;
    }
    for (PetscInt k = 0; k < npair; k++) {
      PetscInt    ns = 0, nq = 0;
      CsOTOptions opt = o.ot;
      char        name[256];
      PetscBool   needed = (PetscBool)(k == pair0);
      for (PetscInt j = 0; j < o.nsave; j++)
        if ((o.save[j] >= times[k] && o.save[j] < times[k + 1]) || (k == npair - 1 && o.save[j] == times[k + 1])) needed = PETSC_TRUE;
      if (!needed) continue;
      PetscCall(PetscMalloc2((size_t)n * K + 1, &B[k], n + 1, &src[k]));
      for (PetscInt i = 0; i < n; i++) {
        if (t[i] == times[k]) {
          src[k][ns] = i;
          PetscCall(PetscArraycpy(zs + (size_t)ns++ * K, z + (size_t)lidx[i] * K, K));
        }
        else if (t[i] == times[k + 1]) PetscCall(PetscArraycpy(zt + (size_t)nq++ * K, z + (size_t)lidx[i] * K, K));
      }
      nsrc[k] = ns;
      PetscCall(PetscSNPrintf(name, sizeof(name), "trajectory: coupling of time %g to %g", times[k], times[k + 1]));
      opt.name = name;
      PetscCall(CsOTSolve(comm, &opt, ns, nq, K, zs, zt, NULL, NULL, B[k], NULL, NULL, &info));
      PetscCall(PetscPrintf(comm, "  %g -> %g: %" PetscInt_FMT " Sinkhorn iterations, marginal error %.2e, transported mass %.4f\n", times[k],
                            times[k + 1], info.iterations, (double)info.error, (double)info.mass));
    }

    if (o.output[0] && o.nsave > 0) {
      CsH5adWriter    w = NULL;
      PetscInt        total = 0, mycount, off;
      PetscInt       *jk;
      char          **tcats, **ccats = NULL;
      int32_t        *tcodes = NULL, *ccodes = NULL;
      CsH5adOutColumn cols[2];
      PetscInt        rstart = b.rstart;

      PetscCall(PetscMalloc2(o.nsave, &jk, o.nsave, &tcats));
      for (PetscInt j = 0; j < o.nsave; j++) {
        PetscInt k = 0, g;
        char     s[64];
        while (k < npair - 1 && o.save[j] >= times[k + 1]) k++;
        jk[j] = k;
        g     = nsrc[k];
        PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &g, 1, MPIU_INT, MPI_SUM, comm));
        total += g;
        PetscCall(PetscSNPrintf(s, sizeof(s), "%g", o.save[j]));
        PetscCall(PetscStrallocpy(s, &tcats[j]));
      }
      /* codes on rank 0: time index and the source cell's row in the input file */
      if (!rank) PetscCall(PetscMalloc2(total + 1, &tcodes, total + 1, &ccodes));
      PetscCall(PetscMalloc1(N, &ccats));
      for (PetscInt i = 0; i < N; i++) {
        char s[32];
        PetscCall(PetscSNPrintf(s, sizeof(s), "%" PetscInt_FMT, i));
        PetscCall(PetscStrallocpy(s, &ccats[i]));
      }
      off = 0;
      for (PetscInt j = 0; j < o.nsave; j++) {
        PetscInt  k = jk[j], ng;
        int32_t  *mine_g;
        PetscCall(PetscMalloc1(nsrc[k] + 1, &mine_g));
        for (PetscInt i = 0; i < nsrc[k]; i++) mine_g[i] = (int32_t)(rstart + src[k][i]);
        {
          PetscMPIInt me = (PetscMPIInt)nsrc[k];
          PetscInt    tot = 0;
          PetscCallMPI(MPI_Gather(&me, 1, MPI_INT, cnt, 1, MPI_INT, 0, comm));
          if (!rank)
            for (PetscMPIInt r = 0; r < size; r++) dsp[r] = (PetscMPIInt)tot, tot += cnt[r];
          PetscCallMPI(MPI_Gatherv(mine_g, me, MPI_INT32_T, !rank ? ccodes + off : NULL, cnt, dsp, MPI_INT32_T, 0, comm));
          PetscCallMPI(MPI_Bcast(&tot, 1, MPIU_INT, 0, comm));
          ng = tot;
        }
        if (!rank)
          for (PetscInt i = 0; i < ng; i++) tcodes[off + i] = (int32_t)j;
        off += ng;
        PetscCall(PetscFree(mine_g));
      }
      cols[0].name = "source_cell", cols[0].ncat = N, cols[0].cats = ccats, cols[0].codes = ccodes;
      cols[1].name = "time", cols[1].ncat = o.nsave, cols[1].cats = tcats, cols[1].codes = tcodes;
      PetscCall(CsH5adWriterCreate(comm, o.output, total, G, b.genes, 2, cols, &w));
      off = 0;
      for (PetscInt j = 0; j < o.nsave; j++) {
        PetscInt  k = jk[j], before = 0, ng;
        double    s = (o.save[j] - times[k]) / (times[k + 1] - times[k]);
        PetscCall(PetscMalloc1((size_t)nsrc[k] * G + 1, &rows));
        for (PetscInt i = 0; i < nsrc[k]; i++) {
          PetscInt c = src[k][i];
          float   *row = rows + (size_t)i * G;
          double   dz[512];
          CsCSRRowToDense(&b.X, c, row);
          for (PetscInt a = 0; a < K; a++) dz[a] = s * ((double)B[k][(size_t)i * K + a] - z[(size_t)lidx[c] * K + a]);
          for (PetscInt a = 0; a < K; a++)
            for (PetscInt g = 0; g < G; g++) row[g] += (float)(dz[a] * comps[(size_t)a * G + g]);
        }
        mycount = nsrc[k];
        PetscCallMPI(MPI_Exscan(&mycount, &before, 1, MPIU_INT, MPI_SUM, comm));
        if (!rank) before = 0;
        PetscCall(CsH5adWriterWriteRows(w, off + before, nsrc[k], rows));
        ng = nsrc[k];
        PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &ng, 1, MPIU_INT, MPI_SUM, comm));
        off += ng;
        PetscCall(PetscFree(rows));
      }
      PetscCall(CsH5adWriterCommit(&w));
      PetscCall(PetscPrintf(comm, "trajectory: %" PetscInt_FMT " states at %" PetscInt_FMT " times written to %s\n", total, o.nsave, o.output));
      PetscCall(CsStrArrayDestroy(N, &ccats));
      for (PetscInt j = 0; j < o.nsave; j++) PetscCall(PetscFree(tcats[j]));
      PetscCall(PetscFree2(jk, tcats));
      if (!rank) PetscCall(PetscFree2(tcodes, ccodes));
    }

    if (hold) {
      PetscInt k = pair0, np, ntr, n0, n1, nl = 0;
      double   s = (o.holdout - times[k]) / (times[k + 1] - times[k]), e[3], w2[3];
      float   *P, *Tr, *Nb, *loc;
      PetscCall(PetscMalloc1((size_t)n * K + 1, &loc));
      for (PetscInt i = 0; i < nsrc[k]; i++)
        for (PetscInt a = 0; a < K; a++) {
          float x = z[(size_t)lidx[src[k][i]] * K + a];
          loc[(size_t)i * K + a] = (float)(x + s * ((double)B[k][(size_t)i * K + a] - x));
        }
      PetscCall(GatherRows(comm, nsrc[k], K, loc, &np, &P));
      for (PetscInt i = 0; i < n; i++)
        if (t[i] == o.holdout) PetscCall(PetscArraycpy(loc + (size_t)nl++ * K, z + (size_t)lidx[i] * K, K));
      PetscCall(GatherRows(comm, nl, K, loc, &ntr, &Tr));
      /* the copies of both neighbours: the nearest is the baseline (t0 on a tie), the other is shown too */
      for (PetscInt c = 0; c < 2; c++) {
        double tc = (c == 0) == (s <= 0.5) ? times[k] : times[k + 1];
        nl        = 0;
        for (PetscInt i = 0; i < n; i++)
          if (t[i] == tc) PetscCall(PetscArraycpy(loc + (size_t)nl++ * K, z + (size_t)lidx[i] * K, K));
        PetscCall(GatherRows(comm, nl, K, loc, &n1, &Nb));
        PetscCall(Score(&o, n1, Nb, ntr, Tr, K, &e[1 + c], &w2[1 + c]));
        PetscCall(PetscFree(Nb));
      }
      n0 = np;
      PetscCall(Score(&o, np, P, ntr, Tr, K, &e[0], &w2[0]));
      {
        double tn = s <= 0.5 ? times[k] : times[k + 1], to = s <= 0.5 ? times[k + 1] : times[k];
        char   ln[64], lo[64];
        PetscCall(PetscSNPrintf(ln, sizeof(ln), "nearest time point (%g)", tn));
        PetscCall(PetscSNPrintf(lo, sizeof(lo), "other neighbour (%g)", to));
        PetscCall(PetscPrintf(comm,
                              "held-out time %g (%" PetscInt_FMT " cells), interpolated from %g (%" PetscInt_FMT " cells) and %g at s = %.4f, PCA %" PetscInt_FMT "\n"
                              "  %-30s %14s %14s\n  %-30s %14.6g %14.6g\n  %-30s %14.6g %14.6g\n  %-30s %14.6g %14.6g\n",
                              o.holdout, ntr, times[k], n0, times[k + 1], s, K, "method", "energy_dist", "W2", "ot_interpolation", e[0], w2[0], ln,
                              e[1], w2[1], lo, e[2], w2[2]));
        if (!rank) {
          char path[PETSC_MAX_PATH_LEN];
          PetscCall(PetscSNPrintf(path, sizeof(path), "%s/metrics.json", o.outdir));
          f = fopen(path, "w");
        }
        CsCheckAll(comm, rank || f, "cannot write %s/metrics.json", o.outdir);
        if (!rank) {
          fprintf(f,
                  "{\n  \"data\": \"%s\",\n  \"time_key\": \"%s\",\n  \"holdout_time\": %.17g,\n  \"t0\": %.17g,\n  \"t1\": %.17g,\n  \"s\": %.17g,\n"
                  "  \"pca\": %d,\n  \"epsilon\": %.17g,\n  \"tau_a\": %.17g,\n  \"tau_b\": %.17g,\n  \"w2_epsilon\": %.17g,\n  \"n_true\": %d,\n"
                  "  \"w2\": \"sqrt(<P, C>) of a balanced Sinkhorn plan, epsilon w2_epsilon times the mean squared distance, in the PCA space\",\n"
                  "  \"ot_interpolation\": {\"energy_distance\": %.17g, \"w2\": %.17g},\n"
                  "  \"nearest_time_point\": {\"time\": %.17g, \"energy_distance\": %.17g, \"w2\": %.17g},\n"
                  "  \"other_neighbour\": {\"time\": %.17g, \"energy_distance\": %.17g, \"w2\": %.17g}\n}\n",
                  o.data, o.key, o.holdout, times[k], times[k + 1], s, (int)K, (double)o.ot.epsilon, (double)o.ot.tau_a, (double)o.ot.tau_b,
                  (double)o.w2_eps, (int)ntr, e[0], w2[0], tn, e[1], w2[1], to, e[2], w2[2]);
          fclose(f);
        }
      }
      PetscCall(PetscFree(loc));
    }
    for (PetscInt k = 0; k < npair; k++)
      if (B[k]) PetscCall(PetscFree2(B[k], src[k]));
    PetscCall(PetscFree3(B, src, nsrc));
    PetscCall(PetscFree4(z, zs, zt, lidx));
  }
  PetscCall(PetscFree3(mean, comps, vars));
  PetscCall(PetscFree2(tall, times));
  PetscCall(PetscFree2(cnt, dsp));
  PetscCall(PetscFree2(t, sel));
  PetscCall(CsH5adBlockFree(&b));
  PetscFunctionReturn(0);
}
