/* Time-course flow matching: one velocity field v(x, t) over the successive time points of a course (the flow
   of cellshift trajectory -method flow). See include/cellshift/model.h. The pieces are the ones of the `flow`
   model (CsMLP with SiLU and a linear head, cs_time_embedding_forward, CsOTSolveDense minibatch couplings with a
   partner drawn from the plan row, cs_mse_loss, Adam, CsODEIntegrate); the batches come from the time points of
   one course instead of a design's groups, so the trainer's samplers do not apply. */
#include "modelimpl.h"
#include <cellshift/ot.h>
#include <cellshift/rng.h>

#define TF_BLOCK 64

struct _n_CsTimeFlow {
  PetscInt    K, tdim, In, maxrows;
  double      t_first, span, scale;
  CsNNParams  P;
  CsMLP       mlp;
  float      *inp, *temb, *tt; /* [maxrows, In], [maxrows, tdim], [maxrows] */
  double      t0, t1;          /* the current integration */
};

/* inp[n, In] = [x / scale | temb(u)] */
static void Input(CsTimeFlow tf, PetscInt n, const float *x, const float *u, PetscBool scaled)
{
  PetscInt K = tf->K, T = tf->tdim, In = tf->In;
  cs_time_embedding_forward(tf->temb, u, n, T, 10000.0);
  for (PetscInt i = 0; i < n; i++) {
    float *r = tf->inp + (size_t)i * In;
    for (PetscInt k = 0; k < K; k++) r[k] = scaled ? x[(size_t)i * K + k] : (float)(x[(size_t)i * K + k] / tf->scale);
    PetscArraycpy(r + K, tf->temb + (size_t)i * T, T);
  }
}

PetscErrorCode CsTimeFlowTrain(MPI_Comm comm, const CsTimeFlowOptions *o, PetscInt K, PetscInt nt, const double *times, const PetscInt *count,
                               const float *z, CsTimeFlow *out)
{
  CsTimeFlow  tf;
  PetscMPIInt size, rank;
  PetscInt   *sizes, *start, nsrc = 0, M = o->batch, spe, ntot = 0;
  CsMLPConfig cfg;
  CsNNOptim   opt;
  float      *a0, *a1, *plan, *x, *u, *target;
  double      ss = 0;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCheck(nt >= 2 && K >= 1 && M >= 2 && o->epochs >= 0, comm, PETSC_ERR_ARG_OUTOFRANGE, "time flow: %" PetscInt_FMT " time points, %" PetscInt_FMT " axes, batch %" PetscInt_FMT, nt, K, M);
  PetscCall(PetscNew(&tf));
  PetscCall(PetscMalloc1(nt + 1, &start));
  for (PetscInt k = 0; k < nt; k++) {
    PetscCheck(count[k] >= 1, comm, CS_ERR_INPUT, "time flow: time point %g has no cells", times[k]);
    start[k] = ntot, ntot += count[k];
    if (k < nt - 1) nsrc += count[k];
  }
  start[nt] = ntot;
  for (size_t i = 0; i < (size_t)ntot * K; i++) ss += (double)z[i] * z[i];
  tf->K = K, tf->tdim = o->tdim, tf->In = K + o->tdim, tf->maxrows = PetscMax(M, TF_BLOCK);
  tf->t_first = times[0], tf->span = times[nt - 1] - times[0];
  tf->scale = PetscSqrtReal(ss / ((double)ntot * K));
  if (!(tf->scale > 0)) tf->scale = 1;
  PetscCall(PetscCalloc1(o->layers + 2, &sizes));
  sizes[0] = tf->In;
  for (PetscInt l = 1; l <= o->layers; l++) sizes[l] = o->hidden;
  sizes[o->layers + 1] = K;
  CsMLPConfigDefault(&cfg);
  cfg.nlayers = o->layers + 1, cfg.sizes = sizes, cfg.norm = CS_NN_NORM_NONE, cfg.act = CS_NN_ACT_SILU, cfg.dropout = 0, cfg.linear_last = PETSC_TRUE;
  PetscCall(CsNNParamsCreate(comm, &tf->P));
  PetscCall(CsMLPCreate(tf->P, "velocity", &cfg, &tf->mlp));
  PetscCall(PetscFree(sizes));
  PetscCall(CsNNParamsSetUp(tf->P));
  PetscCall(CsNNParamsInitialize(tf->P, o->seed));
  PetscCall(CsMLPSetUp(tf->mlp, tf->maxrows));
  PetscCall(PetscMalloc3((size_t)tf->maxrows * tf->In, &tf->inp, (size_t)tf->maxrows * tf->tdim, &tf->temb, tf->maxrows, &tf->tt));
  PetscCall(CsNNOptimCreate(comm, &opt));
  opt->lr = o->lr;
  PetscCall(CsNNOptimSetUp(opt, tf->P->n));
  PetscCall(PetscMalloc6((size_t)M * K, &a0, (size_t)M * K, &a1, (size_t)M * M, &plan, (size_t)M * K, &x, M, &u, (size_t)M * K, &target));
  spe = (nsrc + M - 1) / M;
  for (PetscInt ep = 0; ep < o->epochs; ep++) {
    double lsum = 0;
    for (PetscInt it = 0; it < spe; it++) {
      uint64_t     step = (uint64_t)(ep * spe + it);
      PetscInt     k    = PetscMin((PetscInt)(CsRngUniform(o->seed, CS_STREAM_SET, step, 0) * (nt - 1)), nt - 2), m0, m1, nl = 0;
      double       du   = (times[k + 1] - times[k]) / tf->span, uk = (times[k] - tf->t_first) / tf->span, l = 0;
      CsOTOptions  oo;
      CsOTInfo     info;
      CsNNPass     pass = {0};
      const float *v;
      m0 = PetscMin(M, count[k]), m1 = PetscMin(M, count[k + 1]);
      for (PetscInt j = 0; j < m0 + m1; j++) { /* draws with replacement, keyed by (step, j): the same batch on every rank */
        PetscInt c = j < m0 ? k : k + 1, r = PetscMin((PetscInt)(CsRngUniform(o->seed, CS_STREAM_SAMPLE, step, (uint64_t)j) * count[c]), count[c] - 1);
        float   *dst = j < m0 ? a0 + (size_t)j * K : a1 + (size_t)(j - m0) * K;
        for (PetscInt q = 0; q < K; q++) dst[q] = (float)(z[(size_t)(start[c] + r) * K + q] / tf->scale);
      }
      PetscCall(CsOTOptionsDefaults(&oo));
      oo.epsilon = o->ot_eps, oo.tol = o->ot_tol, oo.max_iter = o->ot_max_iter, oo.name = "trajectory flow: minibatch coupling";
      PetscCall(CsOTSolveDense(&oo, m0, m1, K, a0, a1, NULL, NULL, plan, NULL, &info));
      for (PetscInt j = rank; j < m0; j += size, nl++) { /* this rank's rows of the batch */
        const float *row = plan + (size_t)j * m1;
        double       sr = 0, w, acc = 0, s;
        PetscInt     p;
        for (PetscInt q = 0; q < m1; q++) sr += row[q];
        w = CsRngUniform(o->seed, CS_STREAM_NOISE, step, (uint64_t)j << 1) * sr;
        for (p = 0; p < m1 - 1; p++) {
          acc += row[p];
          if (w < acc) break;
        }
        s      = CsRngUniform(o->seed, CS_STREAM_NOISE, step, ((uint64_t)j << 1) | 1);
        u[nl]  = (float)(uk + s * du);
        for (PetscInt q = 0; q < K; q++) {
          float x0 = a0[(size_t)j * K + q], x1 = a1[(size_t)p * K + q];
          x[(size_t)nl * K + q]      = (float)((1 - s) * x0 + s * x1);
          target[(size_t)nl * K + q] = (float)((x1 - x0) / du);
        }
      }
      Input(tf, nl, x, u, PETSC_TRUE);
      pass.comm = comm, pass.train = PETSC_TRUE, pass.nglobal = m0, pass.seed = o->seed, pass.step = step;
      PetscCall(CsMLPForward(tf->mlp, &pass, nl, tf->inp, NULL, &v));
      {
        float *dv = CsMLPGetOutputGrad(tf->mlp);
        PetscCall(PetscArrayzero(dv, (size_t)nl * K));
        l = cs_mse_loss(dv, v, target, nl, K, m0, 1.0);
      }
      PetscCall(CsMLPBackward(tf->mlp, &pass, nl, NULL));
      PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, tf->P->g, (PetscMPIInt)tf->P->n, MPI_FLOAT, MPI_SUM, comm));
      PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &l, 1, MPI_DOUBLE, MPI_SUM, comm));
      CsCheckAll(comm, isfinite(l), "trajectory flow: the loss is not finite at epoch %" PetscInt_FMT " step %" PetscInt_FMT "; lower -trajectory_flow_lr", ep, it);
      PetscCall(CsNNOptimStep(opt, tf->P));
      lsum += l;
    }
    if (ep == 0 || ep == o->epochs - 1 || (ep + 1) % 10 == 0)
      PetscCall(PetscPrintf(comm, "  flow epoch %" PetscInt_FMT ": %" PetscInt_FMT " steps, mean flow-matching loss %.6g\n", ep + 1, spe, lsum / spe));
  }
  PetscCall(PetscFree6(a0, a1, plan, x, u, target));
  PetscCall(CsNNOptimDestroy(&opt));
  PetscCall(PetscFree(start));
  *out = tf;
  PetscFunctionReturn(0);
}

/* dx/ds over s in [0, 1] for the real time t0 + s (t1 - t0), in the scaled space. */
static PetscErrorCode Velocity(void *p, double s, PetscInt n, const float *x, float *v)
{
  CsTimeFlow   tf   = (CsTimeFlow)p;
  CsNNPass     pass = {0};
  const float *out;
  double       f    = (tf->t1 - tf->t0) / tf->span;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < n; i++) tf->tt[i] = (float)((tf->t0 + s * (tf->t1 - tf->t0) - tf->t_first) / tf->span);
  Input(tf, n, x, tf->tt, PETSC_TRUE);
  pass.comm = PETSC_COMM_SELF, pass.train = PETSC_FALSE, pass.nglobal = n;
  PetscCall(CsMLPForward(tf->mlp, &pass, n, tf->inp, NULL, &out));
  for (size_t i = 0; i < (size_t)n * tf->K; i++) v[i] = (float)(f * out[i]);
  PetscFunctionReturn(0);
}

PetscErrorCode CsTimeFlowIntegrate(CsTimeFlow tf, const char prefix[], const char what[], double t0, double t1, PetscInt n, float *x, CsODEStats *st)
{
  PetscInt K = tf->K;

  PetscFunctionBeginUser;
  if (t1 == t0) PetscFunctionReturn(0);
  tf->t0 = t0, tf->t1 = t1;
  for (size_t i = 0; i < (size_t)n * K; i++) x[i] = (float)(x[i] / tf->scale);
  for (PetscInt i0 = 0; i0 < n; i0 += TF_BLOCK) PetscCall(CsODEIntegrate(prefix, what, PetscMin(TF_BLOCK, n - i0), K, Velocity, tf, x + (size_t)i0 * K, st));
  for (size_t i = 0; i < (size_t)n * K; i++) x[i] = (float)(x[i] * tf->scale);
  PetscFunctionReturn(0);
}

PetscErrorCode CsTimeFlowDestroy(CsTimeFlow *tf)
{
  PetscFunctionBeginUser;
  if (!*tf) PetscFunctionReturn(0);
  PetscCall(CsMLPDestroy(&(*tf)->mlp));
  PetscCall(CsNNParamsDestroy(&(*tf)->P));
  PetscCall(PetscFree3((*tf)->inp, (*tf)->temb, (*tf)->tt));
  PetscCall(PetscFree(*tf));
  PetscFunctionReturn(0);
}
