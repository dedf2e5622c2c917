/* flow: conditional optimal-transport flow matching after CellFlow (Klein et al. 2025, theislab/CellFlow).

   Cells live in the scaled PCA space of the training cells (CsPCASpace, -flow_pca axes, 50 by default). A velocity
   field v(x, t | condition, context) is an MLP (CsMLP: -flow_layers hidden layers of -flow_hidden units, SiLU, a
   linear output of K) on the concatenation [x (K), sinusoidal embedding of t (-flow_time_dim, nn.h
   cs_time_embedding_forward), mean of the condition's atom embeddings (-flow_embed), context embedding
   (-flow_embed)]; the embeddings are learned tables.

   Training (the `coupled` sampler: each step one group, a minibatch of its perturbed cells x1 and one of its
   context's controls x0): the step's whole minibatch is gathered on every rank in global cell order (so the
   coupling does not depend on the number of ranks), coupled by balanced entropic OT (src/ot CsOTSolveDense,
   -flow_ot_epsilon relative to the mean cost, -flow_ot_tol; a solve that does not converge is an error naming the
   group), and each control cell c of the rank gets a partner j drawn from its row of the plan and a time t ~ U(0, 1)
   (counter-based draws keyed by the step and the global cell index). The loss is CellFlow's: the squared error
   |v(x_t, t) - (x1_j - x0_c)|^2 summed over the K coordinates and averaged over the control cells, with x_t =
   (1 - t) x0_c + t x1_j on the straight path. Validation uses the same loss with draws keyed by a fixed counter.

   Prediction (per group, predictset: all the group's selected controls in global order on one rank) integrates
   dx/dt = v from t = 0 to 1 for blocks of -flow_block control cells with PETSc TS (include/cellshift/ode.h: RK
   5DP by default, every -flow_ts_* option passes through); a block is the same cells whatever the number of ranks,
   so are its steps. Each group's steps taken and rejected are printed by the rank that predicts it (and summed
   in -flow_model_view). The result is lifted back to genes keeping each control cell's part
   outside the PCA space. Defaults: hidden 512 x 3, time embedding 64, embeddings 64, Adam lr 1e-4, batch 256,
   epsilon 0.05. */
#include "modelimpl.h"
#include <cellshift/ode.h>
#include <cellshift/ot.h>
#include <cellshift/rng.h>

typedef struct {
  /* options */
  PetscInt     K, width, depth, tdim, edim, block;
  PetscReal    ot_eps, ot_tol;
  PetscBool    check; /* -flow_check_gradient */
  CsPCAOptions pca;
  /* model */
  CsPCASpace   space;
  CsNNParams   P;
  CsMLP        mlp;
  PetscInt     tAtom, tCtx;
  CsTrainer    trainer;
  PetscInt     batch, maxrows, G, A, NC, In;
  /* work */
  float       *z0, *z1, *inp, *dinp, *temb, *tt, *target, *all0, *all1, *plan, *emb;
  int64_t     *cell0, *cell1;
  PetscInt    *perm;
  /* prediction statistics (this rank) */
  CsODEStats   st;
  PetscInt     nblocks;
} Flow;

/* The condition part of the input: [mean atom embedding | context embedding] (2 edim). */
static void CondEmbedding(Flow *f, const CsCondition *cond, PetscInt ctx, float *e)
{
  const float *E = CsNNParamsData(f->P, f->tAtom), *C = CsNNParamsData(f->P, f->tCtx);
  PetscInt     D = f->edim;
  for (PetscInt j = 0; j < D; j++) {
    double s = 0;
    for (PetscInt a = 0; a < cond->natoms; a++) s += E[(size_t)cond->atoms[a] * D + j];
    e[j]     = cond->natoms ? (float)(s / cond->natoms) : 0.0f;
    e[D + j] = C[(size_t)ctx * D + j];
  }
}

/* inp[n, In] = [x | temb(t) | e] */
static void Input(Flow *f, PetscInt n, const float *x, const float *t, const float *e)
{
  PetscInt K = f->K, T = f->tdim, In = f->In;
  cs_time_embedding_forward(f->temb, t, n, T, 10000.0);
  for (PetscInt i = 0; i < n; i++) {
    float *r = f->inp + (size_t)i * In;
    PetscArraycpy(r, x + (size_t)i * K, K);
    PetscArraycpy(r + K, f->temb + (size_t)i * T, T);
    PetscArraycpy(r + K + T, e, 2 * f->edim);
  }
}

/* Sort a gathered minibatch by global cell index: perm[k] = position of the k-th smallest. */
static int64_t *cs_sort_keys;
static int      CompareCells(const void *a, const void *b)
{
  int64_t x = cs_sort_keys[*(const PetscInt *)a], y = cs_sort_keys[*(const PetscInt *)b];
  return x < y ? -1 : x > y;
}

/* Gather n local rows z[n, K] with their global cells onto every rank, sorted by cell: all[N, K], cells[N]. */
static PetscErrorCode GatherSorted(Flow *f, MPI_Comm comm, PetscInt n, const int64_t *cell, const float *z, PetscInt *N, int64_t *cells, float *all)
{
  PetscMPIInt size, *cnt, *off, *cntz, *offz, nn = (PetscMPIInt)n;
  PetscInt    K = f->K, tot = 0;
  float      *tmpz;
  int64_t    *tmpc;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCall(PetscMalloc4(size, &cnt, size, &off, size, &cntz, size, &offz));
  PetscCallMPI(MPI_Allgather(&nn, 1, MPI_INT, cnt, 1, MPI_INT, comm));
  for (PetscMPIInt r = 0; r < size; r++) off[r] = (PetscMPIInt)tot, cntz[r] = cnt[r] * (PetscMPIInt)K, offz[r] = (PetscMPIInt)(tot * K), tot += cnt[r];
  PetscCheck(tot <= f->maxrows, comm, PETSC_ERR_PLIB, "flow: minibatch of %" PetscInt_FMT " rows > %" PetscInt_FMT, tot, f->maxrows);
  PetscCall(PetscMalloc2(tot * K + 1, &tmpz, tot + 1, &tmpc));
  PetscCallMPI(MPI_Allgatherv(cell, nn, MPI_INT64_T, tmpc, cnt, off, MPI_INT64_T, comm));
  PetscCallMPI(MPI_Allgatherv(z, nn * (PetscMPIInt)K, MPI_FLOAT, tmpz, cntz, offz, MPI_FLOAT, comm));
  for (PetscInt k = 0; k < tot; k++) f->perm[k] = k;
  cs_sort_keys = tmpc;
  qsort(f->perm, (size_t)tot, sizeof(PetscInt), CompareCells);
  for (PetscInt k = 0; k < tot; k++) {
    cells[k] = tmpc[f->perm[k]];
    PetscCall(PetscArraycpy(all + (size_t)k * K, tmpz + (size_t)f->perm[k] * K, K));
  }
  *N = tot;
  PetscCall(PetscFree2(tmpz, tmpc));
  PetscCall(PetscFree4(cnt, off, cntz, offz));
  PetscFunctionReturn(0);
}

static PetscInt FindCell(const int64_t *cells, PetscInt N, int64_t c)
{
  PetscInt lo = 0, hi = N - 1;
  while (lo <= hi) {
    PetscInt mid = (lo + hi) / 2;
    if (cells[mid] == c) return mid;
    if (cells[mid] < c) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/* Flow-matching loss of a coupled batch; with grads, backward into P->g. key: the draws' counter. */
static PetscErrorCode FMLoss(CsModel m, const CsBatch *b, MPI_Comm comm, uint64_t key, PetscBool grads, double *loss)
{
  Flow              *f = (Flow *)m->data;
  PetscInt           K = f->K, n = b->nctrl, N0, N1, In = f->In;
  const CsGroup     *gr   = &m->design->groups[b->group[0]];
  const CsCondition *cond = &m->design->conds[gr->cond];
  CsOTOptions        o;
  CsOTInfo           info;
  CsNNPass           pass = {0};
  const float       *v;
  char               name[256];
  double             l;

  PetscFunctionBeginUser;
  CsPCASpaceProject(&f->space, &b->Xctrl, f->z0);
  CsPCASpaceProject(&f->space, &b->X, f->z1);
  PetscCall(GatherSorted(f, comm, b->nctrl, b->ctrl_cell, f->z0, &N0, f->cell0, f->all0));
  PetscCall(GatherSorted(f, comm, b->n, b->cell, f->z1, &N1, f->cell1, f->all1));
  PetscCall(CsDesignGroupName(m->design, b->group[0], name, sizeof(name)));
  PetscCall(CsOTOptionsDefaults(&o));
  o.epsilon = f->ot_eps, o.tol = f->ot_tol, o.name = name;
  PetscCall(CsOTSolveDense(&o, N0, N1, K, f->all0, f->all1, NULL, NULL, f->plan, NULL, &info));
  /* Partners and times of this rank's controls. */
  for (PetscInt i = 0; i < n; i++) {
    int64_t      c = b->ctrl_cell[i];
    PetscInt     p = FindCell(f->cell0, N0, c), j = 0;
    const float *row = f->plan + (size_t)p * N1;
    double       s = 0, u, acc = 0;
    for (PetscInt q = 0; q < N1; q++) s += row[q];
    u = CsRngUniform((uint64_t)m->seed, CS_STREAM_NOISE, key, (uint64_t)c << 1) * s;
    for (j = 0; j < N1 - 1; j++) {
      acc += row[j];
      if (u < acc) break;
    }
    f->tt[i] = (float)CsRngUniform((uint64_t)m->seed, CS_STREAM_NOISE, key, ((uint64_t)c << 1) | 1);
    for (PetscInt k = 0; k < K; k++) {
      float x0 = f->z0[(size_t)i * K + k], x1 = f->all1[(size_t)j * K + k], t = f->tt[i];
      f->z1[(size_t)i * K + k]     = (1 - t) * x0 + t * x1; /* x_t (z1 is free now) */
      f->target[(size_t)i * K + k] = x1 - x0;
    }
  }
  CondEmbedding(f, cond, gr->ctx, f->emb);
  Input(f, n, f->z1, f->tt, f->emb);
  pass.comm = comm, pass.train = grads, pass.nglobal = b->nctrl_global, pass.cell = b->ctrl_cell, pass.seed = (uint64_t)m->seed;
  PetscCall(CsMLPForward(f->mlp, &pass, n, f->inp, NULL, &v));
  if (grads) {
    float *dv = CsMLPGetOutputGrad(f->mlp);
    PetscCall(PetscArrayzero(dv, (size_t)n * K));
    l = cs_mse_loss(dv, v, f->target, n, K, b->nctrl_global, 1.0);
    PetscCall(PetscArrayzero(f->dinp, (size_t)n * In));
    PetscCall(CsMLPBackward(f->mlp, &pass, n, f->dinp));
    {
      float   *dE = CsNNParamsGrad(f->P, f->tAtom), *dC = CsNNParamsGrad(f->P, f->tCtx);
      PetscInt D = f->edim, o0 = K + f->tdim;
      for (PetscInt j = 0; j < D; j++) {
        double sa = 0, sc = 0;
        for (PetscInt i = 0; i < n; i++) sa += f->dinp[(size_t)i * In + o0 + j], sc += f->dinp[(size_t)i * In + o0 + D + j];
        for (PetscInt a = 0; a < cond->natoms; a++) dE[(size_t)cond->atoms[a] * D + j] += (float)(sa / cond->natoms);
        dC[(size_t)gr->ctx * D + j] += (float)sc;
      }
    }
  } else l = cs_mse_loss(NULL, v, f->target, n, K, b->nctrl_global, 1.0);
  PetscCallMPI(MPI_Allreduce(&l, loss, 1, MPI_DOUBLE, MPI_SUM, comm));
  PetscFunctionReturn(0);
}

static PetscErrorCode StepRaw(void *ctx, const CsBatch *b, const CsNNPass *pass, PetscInt *set, double *loss)
{
  CsModel m = (CsModel)ctx;

  PetscFunctionBeginUser;
  PetscCheck(b->ngroups == 1, pass->comm, PETSC_ERR_ARG_WRONG, "flow trains on one group per step: use -%ssampler_type coupled", CsModelPrefix(m));
  PetscCall(PetscLogEventBegin(CS_EVENT_FORWARD, 0, 0, 0, 0));
  PetscCall(FMLoss(m, b, pass->comm, pass->step, PETSC_TRUE, loss));
  PetscCall(PetscLogEventEnd(CS_EVENT_FORWARD, 0, 0, 0, 0));
  *set = 0;
  PetscFunctionReturn(0);
}

/* The training step, with -flow_check_gradient a finite-difference check of its gradient on the first steps. */
static PetscErrorCode Step(void *ctx, const CsBatch *b, const CsNNPass *pass, PetscInt *set, double *loss)
{
  CsModel m = (CsModel)ctx;
  Flow  *f = (Flow *)m->data;

  PetscFunctionBeginUser;
  PetscCall(StepRaw(ctx, b, pass, set, loss));
  if (f->check && (pass->step < 2)) {
    CsTrainerCallbacks cb = {ctx, StepRaw, NULL, NULL};
    PetscCall(CsModelCheckGradient(m, &cb, b, pass, f->P, *set));
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode Loss(void *ctx, const CsBatch *b, const CsNNPass *pass, double *loss)
{
  CsModel m = (CsModel)ctx;

  PetscFunctionBeginUser;
  *loss = 0;
  if (b->ngroups != 1 || !b->nctrl_global || !b->nglobal) PetscFunctionReturn(0);
  PetscCall(FMLoss(m, b, pass->comm, UINT64_MAX, PETSC_FALSE, loss));
  *loss *= (double)b->nglobal / pass->nglobal; /* the batch's share of the validation cells */
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------------------------------------------------------- */

typedef struct {
  Flow  *f;
  float *e;
} FieldCtx;

static PetscErrorCode Velocity(void *p, double t, PetscInt n, const float *x, float *v)
{
  FieldCtx    *c = (FieldCtx *)p;
  Flow        *f = c->f;
  CsNNPass     pass = {0};
  const float *out;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < n; i++) f->tt[i] = (float)t;
  Input(f, n, x, f->tt, c->e);
  pass.comm = PETSC_COMM_SELF, pass.train = PETSC_FALSE, pass.nglobal = n;
  PetscCall(CsMLPForward(f->mlp, &pass, n, f->inp, NULL, &out));
  PetscCall(PetscArraycpy(v, out, (size_t)n * f->K));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelPredictSet_Flow(CsModel m, const CsCondition *cond, PetscInt ctx, const CsCSR *ctrl, float *out)
{
  Flow      *f = (Flow *)m->data;
  FieldCtx   fc;
  CsODEStats st = {0};
  char       what[512];

  PetscFunctionBeginUser;
  fc.f = f, fc.e = f->emb;
  CondEmbedding(f, cond, ctx, f->emb);
  for (PetscInt i0 = 0; i0 < ctrl->nrows; i0 += f->block) {
    PetscInt n = PetscMin(f->block, ctrl->nrows - i0);
    CsCSR    v = CsCSRRowView(ctrl, i0, n);
    PetscCall(PetscSNPrintf(what, sizeof(what), "%s: %s in context %s, control cells %" PetscInt_FMT " to %" PetscInt_FMT, CsModelName(m), cond->name,
                            m->design->contexts[ctx], i0, i0 + n - 1));
    CsPCASpaceProject(&f->space, &v, f->z0);
    PetscCall(PetscArraycpy(f->z1, f->z0, (size_t)n * f->K));
    PetscCall(CsODEIntegrate(CsModelPrefix(m), what, n, f->K, Velocity, &fc, f->z1, &st));
    CsPCASpaceLift(&f->space, &v, f->z0, f->z1, out + (size_t)i0 * f->G);
    f->nblocks++;
  }
  PetscCall(PetscPrintf(PETSC_COMM_SELF, "%s: %s in %s: %" PetscInt_FMT " cells in %" PetscInt_FMT " blocks, ODE steps %" PetscInt_FMT " taken, %" PetscInt_FMT
                        " rejected, smallest step %.3g\n",
                        CsModelName(m), cond->name, m->design->contexts[ctx], ctrl->nrows, (ctrl->nrows + f->block - 1) / f->block, st.steps, st.rejected,
                        st.dt_min));
  f->st.dt_min = f->st.steps ? PetscMin(f->st.dt_min, st.dt_min) : st.dt_min;
  f->st.steps += st.steps, f->st.rejected += st.rejected;
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------------------------------------------------------- */

static PetscErrorCode CsModelSetFromOptions_Flow(CsModel m, PetscOptionItems *PetscOptionsObject)
{
  Flow       *f    = (Flow *)m->data;
  MPI_Comm    comm = PetscObjectComm((PetscObject)m);
  const char *pre  = CsModelPrefix(m);

  PetscFunctionBeginUser;
  PetscOptionsHeadBegin(PetscOptionsObject, "flow: conditional optimal-transport flow matching");
  PetscCall(PetscOptionsInt("-pca", "Principal axes of the training cells the flow runs in", "flow", f->K, &f->K, NULL));
  PetscCall(PetscOptionsInt("-hidden", "Width of the velocity MLP's layers", "flow", f->width, &f->width, NULL));
  PetscCall(PetscOptionsInt("-layers", "Hidden layers of the velocity MLP", "flow", f->depth, &f->depth, NULL));
  PetscCall(PetscOptionsInt("-time_dim", "Size of the sinusoidal time embedding", "flow", f->tdim, &f->tdim, NULL));
  PetscCall(PetscOptionsInt("-embed", "Size of the atom and of the context embeddings", "flow", f->edim, &f->edim, NULL));
  PetscCall(PetscOptionsInt("-block", "Control cells integrated together (one TS state)", "flow", f->block, &f->block, NULL));
  PetscCall(PetscOptionsReal("-ot_epsilon", "Entropic regularisation of the minibatch coupling (relative to the mean cost)", "flow", f->ot_eps,
                             &f->ot_eps, NULL));
  PetscCall(PetscOptionsReal("-ot_tol", "Marginal error tolerance of the minibatch Sinkhorn", "flow", f->ot_tol, &f->ot_tol, NULL));
  PetscCall(PetscOptionsBool("-check_gradient", "Finite-difference check of the gradient of the first two steps", "flow", f->check, &f->check, NULL));
  PetscCall(CsPCAOptionsProcess(PetscOptionsObject, &f->pca));
  PetscOptionsHeadEnd();
  CsCheckAll(comm, f->K >= 1 && f->K <= CS_PCA_SPACE_MAX, "-%spca must be between 1 and %d (got %" PetscInt_FMT ")", pre, CS_PCA_SPACE_MAX, f->K);
  CsCheckAll(comm, f->width >= 1 && f->depth >= 1, "-%shidden and -%slayers must be at least 1 (got %" PetscInt_FMT ", %" PetscInt_FMT ")", pre, pre,
             f->width, f->depth);
  CsCheckAll(comm, f->tdim >= 2 && f->edim >= 1, "-%stime_dim must be at least 2 and -%sembed at least 1 (got %" PetscInt_FMT ", %" PetscInt_FMT ")",
             pre, pre, f->tdim, f->edim);
  CsCheckAll(comm, f->block >= 1, "-%sblock must be at least 1 (got %" PetscInt_FMT ")", pre, f->block);
  CsCheckAll(comm, f->ot_eps > 0 && !PetscIsInfOrNanReal(f->ot_eps), "-%sot_epsilon must be a positive number (got %g)", pre, (double)f->ot_eps);
  CsCheckAll(comm, f->ot_tol > 0 && !PetscIsInfOrNanReal(f->ot_tol), "-%sot_tol must be a positive number (got %g)", pre, (double)f->ot_tol);
  PetscCall(CsODEOptionsRegister(comm, pre)); /* -flow_ts_*: known to the option checker and in -help */
  if (!f->trainer) {
    CsSampler s;
    PetscCall(CsTrainerCreate(comm, &f->trainer));
    PetscCall(CsTrainerSetOptionsPrefix(f->trainer, pre));
    PetscCall(CsTrainerSetDefaults(f->trainer, 100, 256, 20));
    PetscCall(CsTrainerAddOptimizer(f->trainer, NULL, 1e-4, 0, NULL));
    PetscCall(CsTrainerGetSampler(f->trainer, &s));
    PetscCall(CsSamplerSetType(s, CSSAMPLERCOUPLED));
  }
  PetscCall(CsTrainerSetFromOptions(f->trainer));
  PetscCall(CsModelCheckTrainingOptions(m));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelSetUp_Flow(CsModel m)
{
  Flow       *f    = (Flow *)m->data;
  MPI_Comm    comm = PetscObjectComm((PetscObject)m);
  PetscInt    K = f->K, B, R, *sizes;
  CsMLPConfig cfg;
  PetscMPIInt size;

  PetscFunctionBeginUser;
  PetscCheck(f->trainer, comm, PETSC_ERR_ORDER, "call CsModelSetFromOptions first");
  CsCheckAll(comm, K <= m->ds->ngenes, "-%spca %" PetscInt_FMT " exceeds the number of genes (%" PetscInt_FMT ")", CsModelPrefix(m), K, m->ds->ngenes);
  f->G = m->ds->ngenes, f->A = PetscMax(m->design->natoms, 1), f->NC = m->design->nctx, f->In = K + f->tdim + 2 * f->edim;
  PetscCall(CsTrainerGetBatchSize(f->trainer, &f->batch));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  B          = PetscMax(f->batch, f->block);
  f->maxrows = f->batch * size; /* a gathered minibatch: at most batch_size global rows (validation: per rank) */
  R          = PetscMax(f->maxrows, B);
  PetscCall(PetscCalloc1(f->depth + 2, &sizes));
  sizes[0] = f->In;
  for (PetscInt l = 1; l <= f->depth; l++) sizes[l] = f->width;
  sizes[f->depth + 1] = K;
  CsMLPConfigDefault(&cfg);
  cfg.nlayers = f->depth + 1, cfg.sizes = sizes, cfg.norm = CS_NN_NORM_NONE, cfg.act = CS_NN_ACT_SILU, cfg.dropout = 0, cfg.linear_last = PETSC_TRUE;
  PetscCall(CsNNParamsCreate(comm, &f->P));
  PetscCall(CsNNParamsAdd(f->P, "atom.embedding", f->A, f->edim, CS_NN_INIT_FANIN, 1, &f->tAtom));
  PetscCall(CsNNParamsAdd(f->P, "context.embedding", f->NC, f->edim, CS_NN_INIT_FANIN, 1, &f->tCtx));
  PetscCall(CsMLPCreate(f->P, "velocity", &cfg, &f->mlp));
  PetscCall(PetscFree(sizes));
  PetscCall(CsNNParamsSetUp(f->P));
  PetscCall(CsNNParamsInitialize(f->P, (uint64_t)m->seed));
  PetscCall(CsMLPSetUp(f->mlp, B));
  PetscCall(CsTrainerSetParams(f->trainer, 0, f->P));
  PetscCall(CsPCASpaceInit(&f->space, K, f->G));
  PetscCall(PetscMalloc6((size_t)R * K, &f->z0, (size_t)R * K, &f->z1, (size_t)B * f->In, &f->inp, (size_t)B * f->In, &f->dinp, (size_t)B * f->tdim,
                         &f->temb, R, &f->tt));
  PetscCall(PetscMalloc5((size_t)R * K, &f->target, (size_t)R * K, &f->all0, (size_t)R * K, &f->all1, (size_t)R * R, &f->plan, 2 * f->edim, &f->emb));
  PetscCall(PetscMalloc3(R, &f->cell0, R, &f->cell1, R, &f->perm));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelFit_Flow(CsModel m)
{
  Flow              *f  = (Flow *)m->data;
  CsTrainerCallbacks cb = {m, Step, Loss, NULL};

  PetscFunctionBeginUser;
  PetscCall(CsPCASpaceFit(m, &f->pca, &f->space));
  PetscCall(CsModelTrain(m, f->trainer, &cb));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelSave_Flow(CsModel m, hid_t g)
{
  Flow *f = (Flow *)m->data;

  PetscFunctionBeginUser;
  if (g < 0) PetscFunctionReturn(0); /* replicated state: rank 0 writes it */
  PetscCall(CsNNParamsSave(f->P, g));
  PetscCall(CsPCASpaceSave(&f->space, g));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelLoad_Flow(CsModel m, hid_t g)
{
  Flow *f = (Flow *)m->data;

  PetscFunctionBeginUser;
  PetscCall(CsNNParamsLoad(f->P, g, "model.h5"));
  PetscCall(CsPCASpaceLoad(&f->space, g));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelView_Flow(CsModel m, PetscViewer v)
{
  Flow    *f = (Flow *)m->data;
  PetscInt tot[3] = {f->st.steps, f->st.rejected, f->nblocks};

  PetscFunctionBeginUser;
  PetscCall(PetscViewerASCIIPrintf(v, "velocity MLP %" PetscInt_FMT " x %" PetscInt_FMT " (SiLU) on %" PetscInt_FMT " principal axes, time embedding %" PetscInt_FMT
                                      ", embeddings %" PetscInt_FMT ", minibatch OT epsilon %g, blocks of %" PetscInt_FMT " cells\n",
                                   f->depth, f->width, f->K, f->tdim, f->edim, (double)f->ot_eps, f->block));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, tot, 3, MPIU_INT, MPI_SUM, PetscObjectComm((PetscObject)m)));
  if (tot[2]) PetscCall(PetscViewerASCIIPrintf(v, "ODE solves: %" PetscInt_FMT " blocks, %" PetscInt_FMT " steps taken, %" PetscInt_FMT " rejected\n", tot[2], tot[0], tot[1]));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelDestroy_Flow(CsModel m)
{
  Flow *f = (Flow *)m->data;

  PetscFunctionBeginUser;
  PetscCall(CsTrainerDestroy(&f->trainer));
  PetscCall(CsMLPDestroy(&f->mlp));
  PetscCall(CsNNParamsDestroy(&f->P));
  PetscCall(CsPCASpaceFree(&f->space));
  PetscCall(PetscFree6(f->z0, f->z1, f->inp, f->dinp, f->temb, f->tt));
  PetscCall(PetscFree5(f->target, f->all0, f->all1, f->plan, f->emb));
  PetscCall(PetscFree3(f->cell0, f->cell1, f->perm));
  PetscCall(PetscFree(m->data));
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelCreate_Flow(CsModel m)
{
  Flow *f;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&f));
  f->K = 50, f->width = 512, f->depth = 3, f->tdim = 64, f->edim = 64, f->block = 64, f->ot_eps = 0.05, f->ot_tol = 1e-4;
  CsPCAOptionsDefault(&f->pca);
  m->data                = f;
  m->trains              = PETSC_TRUE;
  m->ops->setfromoptions = CsModelSetFromOptions_Flow;
  m->ops->setup          = CsModelSetUp_Flow;
  m->ops->fit            = CsModelFit_Flow;
  m->ops->predictset     = CsModelPredictSet_Flow;
  m->ops->save           = CsModelSave_Flow;
  m->ops->load           = CsModelLoad_Flow;
  m->ops->view           = CsModelView_Flow;
  m->ops->destroy        = CsModelDestroy_Flow;
  PetscFunctionReturn(0);
}
