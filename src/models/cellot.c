/* cellot: CellOT (Bunne et al., Nature Methods 2023), neural optimal transport with input-convex networks.

   Cells are projected on the top -cellot_pca principal axes of the training cells (CsPCAFit, controls included):
   z = (x - mean) V / s, with s the root mean variance of the K axes (so that the networks see coordinates of
   order 1 whatever the expression scale). Two ICNNs (nn.h: CsICNN, hidden -cellot_hidden x -cellot_layers, 64 x 4, LeakyReLU 0.2) f and g
   solve the dual of the squared-Euclidean transport problem from a context's controls (source) to a perturbed
   group (target): the map is T(z) = grad_z g(z) and, as in CellOT (cellot/models/cellot.py),
     g step:  min_g  mean_source [ f(T(z)) - <z, T(z)> ]
     f step:  min_f  mean_source [ -f(T(z)) ] + mean_target [ f(y) ]
   with -cellot_inner_steps (10) g steps per f step, Adam lr 1e-4 and betas (0.5, 0.9) for both, batch 256. After
   every optimiser step the z-weights W of the network just updated are clamped at 0 (the trainer's post-step
   hook), which keeps f and g convex (CellOT clamps f and penalises g's negative weights; clamping both keeps g
   exactly convex, so T is the gradient of a convex function, i.e. a transport map). The g loss needs the gradient
   of T = grad g with respect to g's parameters: CsICNNTransportBackward gives it in closed form
   (forward-over-reverse), finite-difference checked in tests/unit/test_nn_grad.c.

   CellOT trains one pair (f, g) per perturbation. Here one pair serves every group: each network gets a
   conditioning bias added to every layer's pre-activation, c = sum of the condition's atom rows + the context's
   row of learned tables [atoms x U] and [contexts x U] (U = layers x hidden + 1, zero at start). A bias does not
   touch convexity in z, so every condition keeps a convex potential, combinations get the sum of their atoms'
   rows and a context never perturbed in training keeps its zero row. Batches come from the `coupled` sampler
   (-cellot_sampler_type): one group per step, its perturbed cells as targets and its context's controls as
   sources; the g steps use the batch's controls only.

   -cellot_quadratic (default true) departs from CellOT: each potential is 0.5 |z|^2 + ICNN(z), still convex, with
   the ICNN's output layer started at 0, so training starts from the identity map T(z) = z (the optimal pair when
   nothing changes) instead of the map of a random network; measured on the Norman combination task, the plain
   ICNN (-cellot_quadratic false) starts with cells moved several standard deviations and its minimax game
   drifts within 50 epochs.

   Validation (early stopping): the squared distance between the mean of T(controls) and the mean of the group's
   validation cells in PCA space, averaged over the validation batches (the minimax losses of f and g do not
   measure the fit). Prediction: each control cell x of the target context, z = (x - mean) V / s, is mapped to
   x + s (T(z) - z) V^T, so its part outside the principal subspace is kept. */
#include "modelimpl.h"
#include <cellshift/h5util.h>

typedef struct {
  /* options */
  PetscInt     K, width, depth, inner;
  PetscBool    quad; /* -cellot_quadratic: potentials 0.5 |z|^2 + ICNN(z) */
  PetscBool    check; /* -cellot_check_gradient */
  CsPCAOptions pca;
  /* model */
  CsNNParams   P[2]; /* 0: g, 1: f */
  CsICNN       net[2];
  PetscInt     tAtom[2], tCtx[2];
  CsTrainer    trainer;
  PetscInt     batch, G, A, NC, U;
  CsPCASpace   space;
  /* work */
  float       *zs, *zt, *T, *gh, *dT, *u, *y, *c, *dc;
} CellOT;

static PetscLogEvent CS_EVENT_CELLOT_TRANSPORT;

static const char *NetName(PetscInt k) { return k == 0 ? "g" : "f"; }

/* The conditioning bias of network k for (cond, ctx), broadcast to n rows of c. */
static void CondBias(CellOT *c, PetscInt k, const CsCondition *cond, PetscInt ctx, PetscInt n, float *out)
{
  const float *E = CsNNParamsData(c->P[k], c->tAtom[k]), *C = CsNNParamsData(c->P[k], c->tCtx[k]);
  PetscInt     U = c->U;
  for (PetscInt j = 0; j < U; j++) {
    float s = C[(size_t)ctx * U + j];
    for (PetscInt a = 0; a < cond->natoms; a++) s += E[(size_t)cond->atoms[a] * U + j];
    out[j] = s;
  }
  for (PetscInt r = 1; r < n; r++) PetscArraycpy(out + (size_t)r * U, out, U);
}

static void CondBiasBackward(CellOT *c, PetscInt k, const CsCondition *cond, PetscInt ctx, PetscInt n, const float *dc)
{
  float   *dE = CsNNParamsGrad(c->P[k], c->tAtom[k]), *dC = CsNNParamsGrad(c->P[k], c->tCtx[k]);
  PetscInt U  = c->U;
  for (PetscInt j = 0; j < U; j++) {
    float s = 0;
    for (PetscInt r = 0; r < n; r++) s += dc[(size_t)r * U + j];
    dC[(size_t)ctx * U + j] += s;
    for (PetscInt a = 0; a < cond->natoms; a++) dE[(size_t)cond->atoms[a] * U + j] += s;
  }
}

/* T[n, K] = grad_z g(z | cond, ctx), the ICNN's part of it in c->gh (T = z + gh with -cellot_quadratic, else gh);
   leaves g's caches at z. */
static PetscErrorCode Transport(CellOT *c, const CsCondition *cond, PetscInt ctx, PetscInt n, const float *z, float *T)
{
  PetscFunctionBeginUser;
  PetscCall(PetscLogEventBegin(CS_EVENT_CELLOT_TRANSPORT, 0, 0, 0, 0));
  CondBias(c, 0, cond, ctx, n, c->c);
  PetscCall(CsICNNForward(c->net[0], n, z, c->c, c->y));
  PetscCall(PetscArrayzero(c->gh, (size_t)n * c->K));
  PetscCall(CsICNNBackward(c->net[0], z, NULL, c->gh, NULL, PETSC_FALSE));
  for (size_t i = 0; i < (size_t)n * c->K; i++) T[i] = c->quad ? z[i] + c->gh[i] : c->gh[i];
  PetscCall(PetscLogEventEnd(CS_EVENT_CELLOT_TRANSPORT, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

static void BatchGroup(CsModel m, const CsBatch *b, const CsCondition **cond, PetscInt *ctx)
{
  const CsGroup *g = &m->design->groups[b->group[0]];
  *cond = &m->design->conds[g->cond], *ctx = g->ctx;
}

/* The quadratic part of a potential at a point of K coordinates (0 without -cellot_quadratic). */
#define T_ROW(a, i) ((a) + (size_t)(i) * c->K)
static double Quad(const CellOT *c, const float *z)
{
  double s = 0;
  if (!c->quad) return 0;
  for (PetscInt k = 0; k < c->K; k++) s += 0.5 * (double)z[k] * z[k];
  return s;
}

static PetscErrorCode StepRaw(void *ctx, const CsBatch *b, const CsNNPass *pass, PetscInt *set, double *loss)
{
  CsModel            m = (CsModel)ctx;
  CellOT            *c = (CellOT *)m->data;
  PetscInt           K = c->K, n = b->nctrl, nt = b->n, U = c->U, gx;
  const CsCondition *cond;
  double             l = 0, Nc = (double)b->nctrl_global, Nt = (double)b->nglobal;
  PetscBool          gstep = (PetscBool)((pass->step % (uint64_t)(c->inner + 1)) < (uint64_t)c->inner);

  PetscFunctionBeginUser;
  PetscCheck(b->ngroups == 1, pass->comm, PETSC_ERR_ARG_WRONG, "cellot trains on one group per step: use -%ssampler_type coupled", CsModelPrefix(m));
  BatchGroup(m, b, &cond, &gx);
  PetscCall(PetscLogEventBegin(CS_EVENT_FORWARD, 0, 0, 0, 0));
  CsPCASpaceProject(&c->space, &b->Xctrl, c->zs);
  PetscCall(Transport(c, cond, gx, n, c->zs, c->T));
  CondBias(c, 1, cond, gx, PetscMax(n, nt), c->c + (size_t)c->batch * U); /* f's bias in the second half */
  PetscCall(CsICNNForward(c->net[1], n, c->T, c->c + (size_t)c->batch * U, c->y));
  PetscCall(PetscLogEventEnd(CS_EVENT_FORWARD, 0, 0, 0, 0));
  PetscCall(PetscLogEventBegin(CS_EVENT_BACKWARD, 0, 0, 0, 0));
  if (gstep) {
    /* L_g = mean f(T) - <z, T>; dL/dT = (grad f(T) - z) / Nc, then through T = grad g. */
    for (PetscInt i = 0; i < n; i++) {
      /* With the quadratic, 0.5 |T|^2 - <z, T> = 0.5 |gh|^2 - 0.5 |z|^2, free of the cancellation. */
      double q = 0;
      if (c->quad)
        for (PetscInt k = 0; k < K; k++) q += 0.5 * ((double)c->gh[(size_t)i * K + k] * c->gh[(size_t)i * K + k] - (double)c->zs[(size_t)i * K + k] * c->zs[(size_t)i * K + k]);
      else
        for (PetscInt k = 0; k < K; k++) q -= (double)c->zs[(size_t)i * K + k] * c->T[(size_t)i * K + k];
      l += (c->y[i] + q) / Nc;
      c->u[i] = (float)(1.0 / Nc);
    }
    PetscCall(PetscArrayzero(c->dT, (size_t)n * K));
    PetscCall(CsICNNBackward(c->net[1], c->T, c->u, c->dT, NULL, PETSC_FALSE));
    for (size_t i = 0; i < (size_t)n * K; i++) c->dT[i] += (float)((c->quad ? c->gh[i] : -c->zs[i]) / Nc); /* T - z = gh */
    /* g's caches are still at zs (f has its own). */
    PetscCall(PetscArrayzero(c->dc, (size_t)n * U));
    PetscCall(CsICNNTransportBackward(c->net[0], c->zs, c->dT, c->dc));
    CondBiasBackward(c, 0, cond, gx, n, c->dc);
    *set = 0;
  } else {
    float *cf = c->c + (size_t)c->batch * U;
    /* L_f = -mean_source f(T) + mean_target f(y). */
    for (PetscInt i = 0; i < n; i++) l -= (c->y[i] + Quad(c, T_ROW(c->T, i))) / Nc, c->u[i] = (float)(-1.0 / Nc);
    PetscCall(PetscArrayzero(c->dc, (size_t)PetscMax(n, nt) * U));
    PetscCall(CsICNNBackward(c->net[1], c->T, c->u, NULL, c->dc, PETSC_TRUE));
    CsPCASpaceProject(&c->space, &b->X, c->zt);
    PetscCall(CsICNNForward(c->net[1], nt, c->zt, cf, c->y));
    for (PetscInt i = 0; i < nt; i++) l += (c->y[i] + Quad(c, T_ROW(c->zt, i))) / Nt, c->u[i] = (float)(1.0 / Nt);
    PetscCall(CsICNNBackward(c->net[1], c->zt, c->u, NULL, c->dc, PETSC_TRUE));
    CondBiasBackward(c, 1, cond, gx, PetscMax(n, nt), c->dc);
    *set = 1;
  }
  PetscCall(PetscLogEventEnd(CS_EVENT_BACKWARD, 0, 0, 0, 0));
  PetscCallMPI(MPI_Allreduce(&l, loss, 1, MPI_DOUBLE, MPI_SUM, pass->comm));
  PetscFunctionReturn(0);
}

/* The training step, with -cellot_check_gradient a finite-difference check of its gradient at the first f step and the g step after it (before, f is the plain quadratic and the g gradient is 0). */
static PetscErrorCode Step(void *ctx, const CsBatch *b, const CsNNPass *pass, PetscInt *set, double *loss)
{
  CsModel m = (CsModel)ctx;
  CellOT  *c = (CellOT *)m->data;

  PetscFunctionBeginUser;
  PetscCall(StepRaw(ctx, b, pass, set, loss));
  if (c->check && (pass->step == (uint64_t)c->inner || pass->step == (uint64_t)c->inner + 1)) {
    CsTrainerCallbacks cb = {ctx, StepRaw, NULL, NULL};
    PetscCall(CsModelCheckGradient(m, &cb, b, pass, c->P[*set], *set));
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode PostStep(void *ctx, PetscInt set, int64_t step)
{
  CellOT *c = (CellOT *)((CsModel)ctx)->data;

  PetscFunctionBeginUser;
  (void)step;
  CsICNNClamp(c->net[set]);
  PetscFunctionReturn(0);
}

/* |mean T(controls) - mean targets|^2 of the batch, weighted by its share of the validation cells. */
static PetscErrorCode Loss(void *ctx, const CsBatch *b, const CsNNPass *pass, double *loss)
{
  CsModel            m = (CsModel)ctx;
  CellOT            *c = (CellOT *)m->data;
  PetscInt           K = c->K, gx;
  const CsCondition *cond;
  double            *s;

  PetscFunctionBeginUser;
  *loss = 0;
  if (b->ngroups != 1 || b->nctrl_global == 0 || b->nglobal == 0) PetscFunctionReturn(0);
  BatchGroup(m, b, &cond, &gx);
  PetscCall(PetscCalloc1(2 * K, &s));
  for (PetscInt i0 = 0; i0 < b->nctrl; i0 += c->batch) { /* validation batches are at most batch_size */
    PetscInt n = PetscMin(c->batch, b->nctrl - i0);
    CsCSR    v = CsCSRRowView(&b->Xctrl, i0, n);
    CsPCASpaceProject(&c->space, &v, c->zs);
    PetscCall(Transport(c, cond, gx, n, c->zs, c->T));
    for (PetscInt i = 0; i < n; i++)
      for (PetscInt k = 0; k < K; k++) s[k] += c->T[(size_t)i * K + k];
  }
  for (PetscInt i0 = 0; i0 < b->n; i0 += c->batch) {
    PetscInt n = PetscMin(c->batch, b->n - i0);
    CsCSR    v = CsCSRRowView(&b->X, i0, n);
    CsPCASpaceProject(&c->space, &v, c->zt);
    for (PetscInt i = 0; i < n; i++)
      for (PetscInt k = 0; k < K; k++) s[K + k] += c->zt[(size_t)i * K + k];
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, s, (PetscMPIInt)(2 * K), MPI_DOUBLE, MPI_SUM, pass->comm));
  for (PetscInt k = 0; k < K; k++) {
    double d = s[k] / b->nctrl_global - s[K + k] / b->nglobal;
    *loss += d * d;
  }
  *loss *= (double)b->nglobal / pass->nglobal;
  PetscCall(PetscFree(s));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------------------------------------------------------- */

static PetscErrorCode CsModelSetFromOptions_CellOT(CsModel m, PetscOptionItems *PetscOptionsObject)
{
  CellOT     *c    = (CellOT *)m->data;
  MPI_Comm    comm = PetscObjectComm((PetscObject)m);
  const char *pre  = CsModelPrefix(m);

  PetscFunctionBeginUser;
  PetscOptionsHeadBegin(PetscOptionsObject, "CellOT: neural optimal transport with input-convex networks");
  PetscCall(PetscOptionsInt("-pca", "Principal axes of the training cells the transport is learned in", "cellot", c->K, &c->K, NULL));
  PetscCall(PetscOptionsInt("-hidden", "Width of the ICNN layers", "cellot", c->width, &c->width, NULL));
  PetscCall(PetscOptionsInt("-layers", "Hidden layers of each ICNN", "cellot", c->depth, &c->depth, NULL));
  PetscCall(PetscOptionsInt("-inner_steps", "Steps of g per step of f", "cellot", c->inner, &c->inner, NULL));
  PetscCall(PetscOptionsBool("-quadratic", "Potentials 0.5 |z|^2 + ICNN(z), starting from the identity map (false: CellOT's plain ICNN)", "cellot", c->quad, &c->quad, NULL));
  PetscCall(PetscOptionsBool("-check_gradient", "Finite-difference check of the gradients of the first f step and the g step after it", "cellot", c->check, &c->check, NULL));
  PetscCall(CsPCAOptionsProcess(PetscOptionsObject, &c->pca));
  PetscOptionsHeadEnd();
  CsCheckAll(comm, c->K >= 1 && c->K <= CS_PCA_SPACE_MAX, "-%spca must be between 1 and %d (got %" PetscInt_FMT ")", pre, CS_PCA_SPACE_MAX, c->K);
  CsCheckAll(comm, c->width >= 1, "-%shidden must be at least 1 (got %" PetscInt_FMT ")", pre, c->width);
  CsCheckAll(comm, c->depth >= 1, "-%slayers must be at least 1 (got %" PetscInt_FMT ")", pre, c->depth);
  CsCheckAll(comm, c->inner >= 1, "-%sinner_steps must be at least 1 (got %" PetscInt_FMT ")", pre, c->inner);
  if (!c->trainer) {
    CsSampler s;
    CsNNOptim o;
    PetscCall(CsTrainerCreate(comm, &c->trainer));
    PetscCall(CsTrainerSetOptionsPrefix(c->trainer, pre));
    PetscCall(CsTrainerSetDefaults(c->trainer, 50, 256, 10));
    PetscCall(CsTrainerAddOptimizer(c->trainer, "g_", 1e-4, 0, NULL));
    PetscCall(CsTrainerAddOptimizer(c->trainer, "f_", 1e-4, 0, NULL));
    for (PetscInt k = 0; k < 2; k++) {
      PetscCall(CsTrainerGetOptim(c->trainer, k, &o));
      o->beta1 = 0.5, o->beta2 = 0.9; /* CellOT's optimiser */
    }
    PetscCall(CsTrainerGetSampler(c->trainer, &s));
    PetscCall(CsSamplerSetType(s, CSSAMPLERCOUPLED));
  }
  PetscCall(CsTrainerSetFromOptions(c->trainer));
  PetscCall(CsModelCheckTrainingOptions(m));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelSetUp_CellOT(CsModel m)
{
  CellOT  *c    = (CellOT *)m->data;
  MPI_Comm comm = PetscObjectComm((PetscObject)m);
  PetscInt B, K = c->K;
  char     name[64];

  PetscFunctionBeginUser;
  PetscCheck(c->trainer, comm, PETSC_ERR_ORDER, "call CsModelSetFromOptions first");
  CsCheckAll(comm, K <= m->ds->ngenes, "-%spca %" PetscInt_FMT " exceeds the number of genes (%" PetscInt_FMT ")", CsModelPrefix(m), K, m->ds->ngenes);
  c->G = m->ds->ngenes, c->A = PetscMax(m->design->natoms, 1), c->NC = m->design->nctx, c->U = c->depth * c->width + 1;
  PetscCall(CsTrainerGetBatchSize(c->trainer, &c->batch));
  B = c->batch;
  for (PetscInt k = 0; k < 2; k++) {
    PetscCall(CsNNParamsCreate(comm, &c->P[k]));
    PetscCall(CsICNNCreate(c->P[k], NetName(k), K, c->width, c->depth, &c->net[k]));
    PetscCall(PetscSNPrintf(name, sizeof(name), "%s.atom.embedding", NetName(k)));
    PetscCall(CsNNParamsAdd(c->P[k], name, c->A, c->U, CS_NN_INIT_ZERO, 1, &c->tAtom[k]));
    PetscCall(PetscSNPrintf(name, sizeof(name), "%s.context.embedding", NetName(k)));
    PetscCall(CsNNParamsAdd(c->P[k], name, c->NC, c->U, CS_NN_INIT_ZERO, 1, &c->tCtx[k]));
    PetscCall(CsNNParamsSetUp(c->P[k]));
    PetscCall(CsNNParamsInitialize(c->P[k], (uint64_t)m->seed + (uint64_t)k));
    CsICNNInitialize(c->net[k], (uint64_t)m->seed + (uint64_t)k);
    if (c->quad) { /* the ICNN part starts at 0: T is the identity and f = 0.5 |y|^2 */
      PetscCall(PetscArrayzero(CsNNParamsData(c->P[k], c->net[k]->tA[c->depth]), K));
      PetscCall(PetscArrayzero(CsNNParamsData(c->P[k], c->net[k]->tW[c->depth - 1]), c->width));
    }
    PetscCall(CsICNNSetUp(c->net[k], B));
    PetscCall(CsTrainerSetParams(c->trainer, k, c->P[k]));
  }
  PetscCall(CsPCASpaceInit(&c->space, K, c->G));
  PetscCall(PetscMalloc5((size_t)B * K, &c->zs, (size_t)B * K, &c->zt, (size_t)B * K, &c->T, (size_t)B * K, &c->dT, B, &c->u));
  PetscCall(PetscMalloc4(B, &c->y, (size_t)2 * B * c->U, &c->c, (size_t)B * c->U, &c->dc, (size_t)B * K, &c->gh));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelFit_CellOT(CsModel m)
{
  CsTrainerCallbacks cb = {m, Step, Loss, PostStep};

  PetscFunctionBeginUser;
  PetscCall(CsPCASpaceFit(m, &((CellOT *)m->data)->pca, &((CellOT *)m->data)->space));
  PetscCall(CsModelTrain(m, ((CellOT *)m->data)->trainer, &cb));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelPredict_CellOT(CsModel m, const CsCondition *cond, PetscInt ctx, const CsCSR *ctrl, float *out)
{
  CellOT  *c = (CellOT *)m->data;

  PetscFunctionBeginUser;
  for (PetscInt i0 = 0; i0 < ctrl->nrows; i0 += c->batch) {
    PetscInt n = PetscMin(c->batch, ctrl->nrows - i0);
    CsCSR    v = CsCSRRowView(ctrl, i0, n);
    CsPCASpaceProject(&c->space, &v, c->zs);
    PetscCall(Transport(c, cond, ctx, n, c->zs, c->T));
    CsPCASpaceLift(&c->space, &v, c->zs, c->T, out + (size_t)i0 * c->G);
  }
  PetscFunctionReturn(0);
}

/* model.h5: groups g and f (the networks with their conditioning tables), pca_mean [G], pca_axes [G x K],
   pca_scale [1]. */
static PetscErrorCode CsModelSave_CellOT(CsModel m, hid_t g)
{
  CellOT *c = (CellOT *)m->data;
  hid_t   h;

  PetscFunctionBeginUser;
  if (g < 0) PetscFunctionReturn(0); /* replicated state: rank 0 writes it */
  for (PetscInt k = 0; k < 2; k++) {
    H5Call(h = H5Gcreate2(g, NetName(k), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "cannot create the network group");
    PetscCall(CsNNParamsSave(c->P[k], h));
    H5Call(H5Gclose(h), "cannot close the network group");
  }
  PetscCall(CsPCASpaceSave(&c->space, g));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelLoad_CellOT(CsModel m, hid_t g)
{
  CellOT *c = (CellOT *)m->data;
  hid_t   h;

  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < 2; k++) {
    H5Call(h = H5Gopen2(g, NetName(k), H5P_DEFAULT), "model.h5: no network group (f or g)");
    PetscCall(CsNNParamsLoad(c->P[k], h, "model.h5"));
    H5Call(H5Gclose(h), "model.h5: cannot close the network group");
  }
  PetscCall(CsPCASpaceLoad(&c->space, g));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelView_CellOT(CsModel m, PetscViewer v)
{
  CellOT *c = (CellOT *)m->data;

  PetscFunctionBeginUser;
  PetscCall(PetscViewerASCIIPrintf(v, "ICNN f and g %" PetscInt_FMT " x %" PetscInt_FMT " (LeakyReLU 0.2) on %" PetscInt_FMT
                                      " principal axes, %" PetscInt_FMT " g steps per f step\n",
                                   c->depth, c->width, c->K, c->inner));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelDestroy_CellOT(CsModel m)
{
  CellOT *c = (CellOT *)m->data;

  PetscFunctionBeginUser;
  PetscCall(CsTrainerDestroy(&c->trainer));
  for (PetscInt k = 0; k < 2; k++) {
    PetscCall(CsICNNDestroy(&c->net[k]));
    PetscCall(CsNNParamsDestroy(&c->P[k]));
  }
  PetscCall(CsPCASpaceFree(&c->space));
  PetscCall(PetscFree5(c->zs, c->zt, c->T, c->dT, c->u));
  PetscCall(PetscFree4(c->y, c->c, c->dc, c->gh));
  PetscCall(PetscFree(m->data));
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelCreate_CellOT(CsModel m)
{
  CellOT *c;

  PetscFunctionBeginUser;
  if (!CS_EVENT_CELLOT_TRANSPORT) PetscCall(PetscLogEventRegister("CsCellOTTransport", CS_CLASSID, &CS_EVENT_CELLOT_TRANSPORT));
  PetscCall(PetscNew(&c));
  c->K = 50, c->width = 64, c->depth = 4, c->inner = 10, c->quad = PETSC_TRUE;
  CsPCAOptionsDefault(&c->pca);
  m->data                = c;
  m->trains              = PETSC_TRUE;
  m->ops->setfromoptions = CsModelSetFromOptions_CellOT;
  m->ops->setup          = CsModelSetUp_CellOT;
  m->ops->fit            = CsModelFit_CellOT;
  m->ops->predict        = CsModelPredict_CellOT;
  m->ops->save           = CsModelSave_CellOT;
  m->ops->load           = CsModelLoad_CellOT;
  m->ops->view           = CsModelView_CellOT;
  m->ops->destroy        = CsModelDestroy_CellOT;
  PetscFunctionReturn(0);
}
