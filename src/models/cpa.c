/* cpa: the Compositional Perturbation Autoencoder (Lotfollahi et al., Molecular Systems Biology 2023).

   An encoder maps a cell to a basal latent state; the latent of a perturbed cell is
     z = basal + sum over the condition's atoms of f_a(dose_a) E_a + C_context,
   with a learned embedding E_a per atom scaled by a learned dose response f_a, and a learned embedding C_c per
   context. A decoder maps z to a Gaussian mean and variance per gene (variance = softplus + 1e-3, loss the
   Gaussian negative log-likelihood averaged over genes and cells, as CPA's GaussianNLLLoss). Adversarial
   classifiers try to recover the atoms (multi-label, logistic loss averaged over atoms) and the context (softmax
   cross-entropy) from the basal state; training alternates as CPA does: on steps where step % adversary_steps is
   not 0 the adversaries are updated (their own optimiser), otherwise the autoencoder is updated on
   reconstruction - reg_adversary * (adversary losses), pushing perturbation and context out of the basal state.
   -cpa_adversary 0 switches the adversaries off (PerturBench found that often helps). CPA's gradient penalty on
   the adversaries needs second derivatives and is left out.

   Dose response (-cpa_doser): logsigm f(d) = sigmoid(log1p(d) beta + b) - sigmoid(b), sigm f(d) = sigmoid(d beta +
   b) - sigmoid(b), linear f(d) = d; beta starts at 1 and b at 0 per atom. Without -dose_key every dose is 1.
   Prediction: a control cell of the target context is encoded (eval mode), the condition's atom embeddings and
   the context's embedding are added, and the decoder's mean is the predicted expression.

   Defaults are CPA's: latent 128, autoencoder width 128 and depth 3, adversaries width 64 and depth 2,
   reg_adversary 60, adversary_steps 3, Adam with learning rate 4e-3 (autoencoder) and 3e-4 (adversaries), weight
   decay 4e-7, batch 256. Training stops early on the validation reconstruction loss. */
#include "modelimpl.h"
#include <math.h>

typedef struct {
  /* options */
  PetscInt  dim, width, depth, adv_width, adv_depth, adv_steps;
  PetscReal reg_adv;
  PetscBool adversary;
  CsNNDoser doser;
  /* networks: set 0 = autoencoder (encoder, decoder, heads, embeddings, dosers), set 1 = adversaries */
  CsNNParams P, Q;
  CsMLP      enc, dec, adv_atom, adv_ctx;
  PetscInt   tE, tC, tBeta, tBias, tWm, tBm, tWv, tBv, tEncBias;
  CsTrainer  trainer;
  PetscInt   batch, G, A, NC;
  /* work for up to batch rows */
  float     *latent, *dlatent, *x, *mean, *vraw, *dmean, *dvraw;
  float     *mu, *theta, *dmu, *dtheta; /* negative binomial: [batch, genes] */
  PetscBool  nb;                        /* -cpa_loss nb */
} CPA;

/* What a batch's rows were given: their atoms with doses (CSR-like) and context. */
typedef struct {
  PetscInt  n, *rowptr, *atom, *ctx;
  double   *dose;
  float    *hot; /* [n, A] multi-hot atoms (adversary targets) */
} Labels;

static PetscErrorCode LabelsFree(Labels *l)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree(l->rowptr));
  PetscCall(PetscFree(l->atom));
  PetscCall(PetscFree(l->ctx));
  PetscCall(PetscFree(l->dose));
  PetscCall(PetscFree(l->hot));
  PetscFunctionReturn(0);
}

/* Labels of n rows: condition cond[r] in context ctx[r], or (same) cond[0] in ctx[0] for every row. */
static PetscErrorCode LabelsSet(CPA *c, PetscInt n, const CsCondition *const *cond, const PetscInt *ctx, PetscBool same, Labels *l)
{
  PetscInt nnz = 0;

  PetscFunctionBeginUser;
  PetscCall(LabelsFree(l));
  l->n = n;
  for (PetscInt r = 0; r < n; r++) nnz += cond[same ? 0 : r]->natoms;
  PetscCall(PetscMalloc1(n + 1, &l->rowptr));
  PetscCall(PetscMalloc1(nnz + 1, &l->atom));
  PetscCall(PetscMalloc1(nnz + 1, &l->dose));
  PetscCall(PetscMalloc1(n + 1, &l->ctx));
  PetscCall(PetscCalloc1((size_t)n * c->A + 1, &l->hot));
  l->rowptr[0] = 0;
  for (PetscInt r = 0; r < n; r++) {
    const CsCondition *cd = cond[same ? 0 : r];
    l->rowptr[r + 1]      = l->rowptr[r] + cd->natoms;
    for (PetscInt k = 0; k < cd->natoms; k++) {
      l->atom[l->rowptr[r] + k] = cd->atoms[k];
      l->dose[l->rowptr[r] + k] = cd->doses[k];
      l->hot[(size_t)r * c->A + cd->atoms[k]] = 1;
    }
    l->ctx[r] = ctx[same ? 0 : r];
  }
  PetscFunctionReturn(0);
}

/* The batch rows' own conditions and contexts (their groups). */
static PetscErrorCode LabelsFromBatch(CsModel m, const CsBatch *b, Labels *l)
{
  CsDesign            d = m->design;
  const CsCondition **cond;
  PetscInt           *ctx;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc2(b->n + 1, &cond, b->n + 1, &ctx));
  for (PetscInt r = 0; r < b->n; r++) {
    const CsGroup *g = &d->groups[d->cell_group[b->local[r]]];
    cond[r] = &d->conds[g->cond], ctx[r] = g->ctx;
  }
  PetscCall(LabelsSet((CPA *)m->data, b->n, cond, ctx, PETSC_FALSE, l));
  PetscCall(PetscFree2(cond, ctx));
  PetscFunctionReturn(0);
}

/* latent = basal + C[ctx] + sum of the dose-scaled atom embeddings. */
static void Compose(CPA *c, const Labels *l, const float *basal, float *latent)
{
  size_t n = (size_t)l->n * c->dim;
  cs_embedding_forward(latent, l->ctx, CsNNParamsData(c->P, c->tC), l->n, c->dim);
  for (size_t i = 0; i < n; i++) latent[i] += basal[i];
  cs_dose_embedding_forward(latent, l->rowptr, l->atom, l->dose, CsNNParamsData(c->P, c->tE), CsNNParamsData(c->P, c->tBeta),
                            CsNNParamsData(c->P, c->tBias), c->doser, l->n, c->dim);
}

static void ComposeBackward(CPA *c, const Labels *l, const float *dlatent)
{
  cs_embedding_backward(CsNNParamsGrad(c->P, c->tC), dlatent, l->ctx, l->n, c->dim);
  cs_dose_embedding_backward(CsNNParamsGrad(c->P, c->tE), CsNNParamsGrad(c->P, c->tBeta), CsNNParamsGrad(c->P, c->tBias), dlatent,
                             l->rowptr, l->atom, l->dose, CsNNParamsData(c->P, c->tE), CsNNParamsData(c->P, c->tBeta),
                             CsNNParamsData(c->P, c->tBias), c->doser, l->n, c->dim);
}

/* The negative binomial's mean and inverse dispersion from the raw heads: softplus + 1e-3, as CPA. */
static void NBParams(PetscInt n, const float *hm, const float *hv, float *mu, float *theta)
{
  cs_activation_forward(CS_NN_ACT_SOFTPLUS, mu, hm, (size_t)n);
  cs_activation_forward(CS_NN_ACT_SOFTPLUS, theta, hv, (size_t)n);
  for (PetscInt i = 0; i < n; i++) mu[i] += 1e-3f, theta[i] += 1e-3f;
}

/* Forward to the decoder's heads; *recon is the global reconstruction loss (Gaussian NLL of the log-normalised
   expression, or negative binomial NLL of the counts, averaged over genes and cells) and, with grads, its gradient
   w.r.t. the raw heads is left in dmean/dvraw. */
static PetscErrorCode ForwardRecon(CsModel m, const CsBatch *b, const CsNNPass *pass, const Labels *l, const float **basal,
                                   const float **h, PetscBool grads, double *recon)
{
  CPA     *c = (CPA *)m->data;
  PetscInt G = c->G, W = c->width, B = b->n;
  size_t   n = (size_t)B * G;

  PetscFunctionBeginUser;
  PetscCall(CsMLPForward(c->enc, pass, B, NULL, &b->X, basal));
  Compose(c, l, *basal, c->latent);
  PetscCall(CsMLPForward(c->dec, pass, B, c->latent, NULL, h));
  cs_linear_forward(c->mean, *h, CsNNParamsData(c->P, c->tWm), CsNNParamsData(c->P, c->tBm), B, W, G);
  cs_linear_forward(c->vraw, *h, CsNNParamsData(c->P, c->tWv), CsNNParamsData(c->P, c->tBv), B, W, G);
  for (PetscInt r = 0; r < B; r++) CsCSRRowToDense(&b->X, r, c->x + (size_t)r * G);
  if (grads) {
    PetscCall(PetscArrayzero(c->dmean, n));
    PetscCall(PetscArrayzero(c->dvraw, n));
  }
  if (!c->nb) *recon = cs_gaussian_nll_loss(grads ? c->dmean : NULL, grads ? c->dvraw : NULL, c->mean, c->vraw, c->x, B, G, 1e-3,
                                            pass->nglobal, 1.0 / G); /* CPA averages over genes too */
  else {
    /* The counts back from the log-normalised values and each cell's total (-normalize). */
    for (PetscInt r = 0; r < B; r++)
      for (PetscInt j = 0; j < G; j++) c->x[(size_t)r * G + j] = (float)(expm1(c->x[(size_t)r * G + j]) * m->ds->libsize[b->local[r]] / 1e4);
    NBParams((PetscInt)n, c->mean, c->vraw, c->mu, c->theta);
    if (grads) {
      PetscCall(PetscArrayzero(c->dmu, n));
      PetscCall(PetscArrayzero(c->dtheta, n));
    }
    *recon = cs_nb_nll_loss(grads ? c->dmu : NULL, grads ? c->dtheta : NULL, c->mu, c->theta, c->x, B, G, pass->nglobal, 1.0 / G);
    if (grads) {
      cs_activation_backward(CS_NN_ACT_SOFTPLUS, c->dmean, c->dmu, c->mean, n);
      cs_activation_backward(CS_NN_ACT_SOFTPLUS, c->dvraw, c->dtheta, c->vraw, n);
    }
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, recon, 1, MPI_DOUBLE, MPI_SUM, pass->comm));
  PetscFunctionReturn(0);
}

/* The adversaries on the basal state: losses weighted by w, their gradients left in the MLPs' output buffers;
   *loss is the unweighted global sum. */
static PetscErrorCode Adversaries(CPA *c, const CsNNPass *pass, PetscInt B, const float *basal, const Labels *l, double w, double *loss)
{
  const float *la, *lc;
  double       v[2];

  PetscFunctionBeginUser;
  PetscCall(CsMLPForward(c->adv_atom, pass, B, basal, NULL, &la));
  PetscCall(CsMLPForward(c->adv_ctx, pass, B, basal, NULL, &lc));
  PetscCall(PetscArrayzero(CsMLPGetOutputGrad(c->adv_atom), (size_t)B * c->A));
  PetscCall(PetscArrayzero(CsMLPGetOutputGrad(c->adv_ctx), (size_t)B * c->NC));
  v[0] = cs_bce_logits_loss(CsMLPGetOutputGrad(c->adv_atom), la, l->hot, B, c->A, pass->nglobal, w / c->A);
  v[1] = cs_softmax_xent_loss(CsMLPGetOutputGrad(c->adv_ctx), lc, l->ctx, B, c->NC, pass->nglobal, w);
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_DOUBLE, MPI_SUM, pass->comm));
  *loss = (v[0] + v[1]) / w;
  PetscFunctionReturn(0);
}

static PetscErrorCode Step(void *ctx, const CsBatch *b, const CsNNPass *pass, PetscInt *set, double *loss)
{
  CsModel      m = (CsModel)ctx;
  CPA         *c = (CPA *)m->data;
  PetscInt     B = b->n, G = c->G, W = c->width;
  const float *basal, *h;
  Labels       l = {0};
  PetscBool    advstep = c->adversary && (pass->step % (uint64_t)c->adv_steps) != 0;
  double       recon, adv = 0;

  PetscFunctionBeginUser;
  PetscCall(LabelsFromBatch(m, b, &l));
  PetscCall(PetscLogEventBegin(CS_EVENT_FORWARD, 0, 0, 0, 0));
  PetscCall(ForwardRecon(m, b, pass, &l, &basal, &h, (PetscBool)!advstep, &recon));
  if (c->adversary) PetscCall(Adversaries(c, pass, B, basal, &l, advstep ? 1.0 : -c->reg_adv, &adv));
  PetscCall(PetscLogEventEnd(CS_EVENT_FORWARD, 0, 0, 0, 0));
  PetscCall(PetscLogEventBegin(CS_EVENT_BACKWARD, 0, 0, 0, 0));
  if (advstep) { /* the classifiers learn to read perturbation and context off the basal state */
    PetscCall(CsMLPBackward(c->adv_atom, pass, B, NULL));
    PetscCall(CsMLPBackward(c->adv_ctx, pass, B, NULL));
    *set = 1;
  } else { /* the autoencoder reconstructs while fooling them */
    float *dbasal = CsMLPGetOutputGrad(c->enc), *dh = CsMLPGetOutputGrad(c->dec);
    PetscCall(PetscArrayzero(dh, (size_t)B * W));
    cs_linear_backward(dh, CsNNParamsGrad(c->P, c->tWm), CsNNParamsGrad(c->P, c->tBm), c->dmean, h, CsNNParamsData(c->P, c->tWm), B, W, G);
    cs_linear_backward(dh, CsNNParamsGrad(c->P, c->tWv), CsNNParamsGrad(c->P, c->tBv), c->dvraw, h, CsNNParamsData(c->P, c->tWv), B, W, G);
    PetscCall(PetscArrayzero(c->dlatent, (size_t)B * c->dim));
    PetscCall(CsMLPBackward(c->dec, pass, B, c->dlatent));
    ComposeBackward(c, &l, c->dlatent);
    PetscCall(PetscArraycpy(dbasal, c->dlatent, (size_t)B * c->dim)); /* d latent / d basal = I */
    if (c->adversary) { /* the adversaries' gradient w.r.t. their input, scaled by -reg_adversary */
      PetscCall(CsMLPBackward(c->adv_atom, pass, B, dbasal));
      PetscCall(CsMLPBackward(c->adv_ctx, pass, B, dbasal));
    }
    PetscCall(CsMLPBackward(c->enc, pass, B, NULL));
    PetscCall(PetscArrayzero(CsNNParamsGrad(c->P, c->tEncBias), c->dim)); /* see CsModelSetUp_CPA */
    *set = 0;
  }
  PetscCall(PetscLogEventEnd(CS_EVENT_BACKWARD, 0, 0, 0, 0));
  *loss = recon;
  PetscCall(LabelsFree(&l));
  PetscFunctionReturn(0);
}

static PetscErrorCode Loss(void *ctx, const CsBatch *b, const CsNNPass *pass, double *loss)
{
  CsModel      m = (CsModel)ctx;
  const float *basal, *h;
  Labels       l = {0};

  PetscFunctionBeginUser;
  PetscCall(LabelsFromBatch(m, b, &l));
  PetscCall(ForwardRecon(m, b, pass, &l, &basal, &h, PETSC_FALSE, loss));
  PetscCall(LabelsFree(&l));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------------------------------------------------------- */

/* One message per option, naming it and the value given. */
static PetscErrorCode CheckOptions(CsModel m)
{
  CPA        *c    = (CPA *)m->data;
  MPI_Comm    comm = PetscObjectComm((PetscObject)m);
  const char *pre  = CsModelPrefix(m);
  const struct {
    const char *name;
    PetscInt    v, min;
  } sizes[] = {{"latent", c->dim, 1},           {"hidden", c->width, 1},           {"layers", c->depth, 1},
               {"adversary_hidden", c->adv_width, 1}, {"adversary_layers", c->adv_depth, 1}, {"adversary_steps", c->adv_steps, 1}};

  PetscFunctionBeginUser;
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
    CsCheckAll(comm, sizes[i].v >= sizes[i].min, "-%s%s must be at least %" PetscInt_FMT " (got %" PetscInt_FMT ")", pre, sizes[i].name, sizes[i].min,
               sizes[i].v);
  CsCheckAll(comm, !PetscIsInfOrNanReal(c->reg_adv) && c->reg_adv >= 0, "-%sreg_adversary must be a finite number >= 0 (got %.6g)", pre,
             (double)c->reg_adv);
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelSetFromOptions_CPA(CsModel m, PetscOptionItems *PetscOptionsObject)
{
  CPA     *c = (CPA *)m->data;
  PetscInt doser = c->doser;

  PetscFunctionBeginUser;
  PetscOptionsHeadBegin(PetscOptionsObject, "CPA: compositional perturbation autoencoder");
  PetscCall(PetscOptionsInt("-latent", "Latent dimension", "cpa", c->dim, &c->dim, NULL));
  /* The same names as every model's for the same concept (-scgen_hidden, -scgen_layers). */
  PetscCall(PetscOptionsInt("-hidden", "Width of the encoder and decoder layers", "cpa", c->width, &c->width, NULL));
  PetscCall(PetscOptionsInt("-layers", "Hidden layers of the encoder and of the decoder", "cpa", c->depth, &c->depth, NULL));
  PetscCall(PetscOptionsBool("-adversary", "Train the adversarial classifiers on the basal state", "cpa", c->adversary, &c->adversary, NULL));
  PetscCall(PetscOptionsInt("-adversary_hidden", "Width of the adversaries' layers", "cpa", c->adv_width, &c->adv_width, NULL));
  PetscCall(PetscOptionsInt("-adversary_layers", "Hidden layers of the adversaries", "cpa", c->adv_depth, &c->adv_depth, NULL));
  PetscCall(PetscOptionsInt("-adversary_steps", "Steps per cycle: one autoencoder step, the others adversary steps", "cpa",
                            c->adv_steps, &c->adv_steps, NULL));
  PetscCall(PetscOptionsReal("-reg_adversary", "Weight of the adversary losses in the autoencoder's loss", "cpa", c->reg_adv,
                             &c->reg_adv, NULL));
  PetscCall(PetscOptionsBool("-nb", "Negative binomial likelihood of the counts instead of a Gaussian (needs -normalize on raw counts)", "cpa",
                             c->nb, &c->nb, NULL));
  PetscCall(PetscOptionsEList("-doser", "Dose-response curve of the atom embeddings", "cpa", CsNNDosers, 3, CsNNDosers[doser], &doser, NULL));
  PetscOptionsHeadEnd();
  c->doser = (CsNNDoser)doser;
  PetscCall(CheckOptions(m));
  if (!c->trainer) {
    PetscCall(CsTrainerCreate(PetscObjectComm((PetscObject)m), &c->trainer));
    PetscCall(CsTrainerSetOptionsPrefix(c->trainer, CsModelPrefix(m)));
    PetscCall(CsTrainerSetDefaults(c->trainer, 200, 256, 20));
    PetscCall(CsTrainerAddOptimizer(c->trainer, NULL, 4e-3, 4e-7, NULL));              /* CPA's autoencoder_lr, _wd */
    PetscCall(CsTrainerAddOptimizer(c->trainer, "adversary_", 3e-4, 4e-7, NULL));      /* adversary_lr, _wd */
  }
  PetscCall(CsTrainerSetFromOptions(c->trainer));
  PetscCall(CsModelCheckTrainingOptions(m));
  PetscFunctionReturn(0);
}

static PetscErrorCode MakeMLP(CsNNParams P, const char name[], PetscInt in, PetscInt width, PetscInt depth, PetscInt out,
                              PetscBool sparse, PetscBool linear_last, CsMLP *mlp)
{
  PetscInt   *sizes, n = depth + (linear_last ? 1 : 0);
  CsMLPConfig cfg;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(n + 1, &sizes));
  sizes[0] = in;
  for (PetscInt l = 1; l <= depth; l++) sizes[l] = width;
  if (linear_last) sizes[n] = out;
  CsMLPConfigDefault(&cfg);
  cfg.nlayers = n, cfg.sizes = sizes, cfg.norm = CS_NN_NORM_BATCH, cfg.act = CS_NN_ACT_RELU, cfg.dropout = 0;
  cfg.sparse_input = sparse, cfg.linear_last = linear_last;
  PetscCall(CsMLPCreate(P, name, &cfg, mlp));
  PetscCall(PetscFree(sizes));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelSetUp_CPA(CsModel m)
{
  CPA     *c = (CPA *)m->data;
  PetscInt B;

  PetscFunctionBeginUser;
  CsCheckAll(PetscObjectComm((PetscObject)m), !c->nb || m->ds->libsize, "-cpa_nb models counts: give the raw counts in X (or -layer) with -normalize");
  c->G = m->ds->ngenes, c->A = PetscMax(m->design->natoms, 1), c->NC = m->design->nctx;
  PetscCheck(c->trainer, PetscObjectComm((PetscObject)m), PETSC_ERR_ORDER, "call CsModelSetFromOptions first");
  PetscCall(CsTrainerGetBatchSize(c->trainer, &c->batch));
  B = c->batch;

  PetscCall(CsNNParamsCreate(PetscObjectComm((PetscObject)m), &c->P));
  PetscCall(MakeMLP(c->P, "encoder", c->G, c->width, c->depth, c->dim, PETSC_TRUE, PETSC_TRUE, &c->enc));
  PetscCall(MakeMLP(c->P, "decoder", c->dim, c->width, c->depth, 0, PETSC_FALSE, PETSC_FALSE, &c->dec));
  PetscCall(CsNNParamsAdd(c->P, "head.mean.weight", c->width, c->G, CS_NN_INIT_FANIN, c->width, &c->tWm));
  PetscCall(CsNNParamsAdd(c->P, "head.mean.bias", c->G, 1, CS_NN_INIT_FANIN, c->width, &c->tBm));
  PetscCall(CsNNParamsAdd(c->P, "head.var.weight", c->width, c->G, CS_NN_INIT_FANIN, c->width, &c->tWv));
  PetscCall(CsNNParamsAdd(c->P, "head.var.bias", c->G, 1, CS_NN_INIT_FANIN, c->width, &c->tBv));
  PetscCall(CsNNParamsAdd(c->P, "atom.embedding", c->A, c->dim, CS_NN_INIT_FANIN, 1, &c->tE));
  PetscCall(CsNNParamsAdd(c->P, "context.embedding", c->NC, c->dim, CS_NN_INIT_FANIN, 1, &c->tC));
  PetscCall(CsNNParamsAdd(c->P, "doser.beta", c->A, 1, CS_NN_INIT_ONE, 1, &c->tBeta));
  PetscCall(CsNNParamsAdd(c->P, "doser.bias", c->A, 1, CS_NN_INIT_ZERO, 1, &c->tBias));
  PetscCall(CsNNParamsSetUp(c->P));
  PetscCall(CsNNParamsInitialize(c->P, (uint64_t)m->seed));
  {
    /* The basal state's bias is held at 0: every consumer of the basal state (the decoder, the adversaries) starts
       with BatchNorm, so a shift common to the batch is invisible in training and its gradient is rounding noise,
       which Adam would turn into a random walk of learning-rate steps (differing with the number of ranks). */
    char name[64];
    PetscCall(PetscSNPrintf(name, sizeof(name), "encoder.%" PetscInt_FMT ".bias", c->depth));
    c->tEncBias = CsNNParamsFind(c->P, name);
    PetscCheck(c->tEncBias >= 0, PetscObjectComm((PetscObject)m), PETSC_ERR_PLIB, "cpa: no tensor %s", name);
    PetscCall(PetscArrayzero(CsNNParamsData(c->P, c->tEncBias), c->dim));
  }
  PetscCall(CsMLPSetUp(c->enc, B));
  PetscCall(CsMLPSetUp(c->dec, B));

  PetscCall(CsNNParamsCreate(PetscObjectComm((PetscObject)m), &c->Q));
  PetscCall(MakeMLP(c->Q, "adversary.atoms", c->dim, c->adv_width, c->adv_depth, c->A, PETSC_FALSE, PETSC_TRUE, &c->adv_atom));
  PetscCall(MakeMLP(c->Q, "adversary.context", c->dim, c->adv_width, c->adv_depth, c->NC, PETSC_FALSE, PETSC_TRUE, &c->adv_ctx));
  PetscCall(CsNNParamsSetUp(c->Q));
  PetscCall(CsNNParamsInitialize(c->Q, (uint64_t)m->seed + 1));
  PetscCall(CsMLPSetUp(c->adv_atom, B));
  PetscCall(CsMLPSetUp(c->adv_ctx, B));
  PetscCall(CsTrainerSetParams(c->trainer, 0, c->P));
  PetscCall(CsTrainerSetParams(c->trainer, 1, c->Q));

  PetscCall(PetscMalloc1((size_t)B * c->dim, &c->latent));
  PetscCall(PetscMalloc1((size_t)B * c->dim, &c->dlatent));
  PetscCall(PetscMalloc1((size_t)B * c->G, &c->x));
  PetscCall(PetscMalloc1((size_t)B * c->G, &c->mean));
  PetscCall(PetscMalloc1((size_t)B * c->G, &c->vraw));
  PetscCall(PetscMalloc1((size_t)B * c->G, &c->dmean));
  PetscCall(PetscMalloc1((size_t)B * c->G, &c->dvraw));
  if (c->nb) {
    PetscCall(PetscMalloc1((size_t)B * c->G, &c->mu));
    PetscCall(PetscMalloc1((size_t)B * c->G, &c->theta));
    PetscCall(PetscMalloc1((size_t)B * c->G, &c->dmu));
    PetscCall(PetscMalloc1((size_t)B * c->G, &c->dtheta));
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelFit_CPA(CsModel m)
{
  CsTrainerCallbacks cb = {m, Step, Loss, NULL};

  PetscFunctionBeginUser;
  PetscCall(CsModelTrain(m, ((CPA *)m->data)->trainer, &cb));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelPredict_CPA(CsModel m, const CsCondition *cond, PetscInt ctx, const CsCSR *ctrl, float *out)
{
  CPA     *c    = (CPA *)m->data;
  CsNNPass pass = {0};
  Labels   l    = {0};

  PetscFunctionBeginUser;
  pass.comm = PETSC_COMM_SELF, pass.train = PETSC_FALSE; /* eval mode: running statistics, nothing collective */
  for (PetscInt i0 = 0; i0 < ctrl->nrows; i0 += c->batch) {
    PetscInt     n    = PetscMin(c->batch, ctrl->nrows - i0);
    CsCSR        view = CsCSRRowView(ctrl, i0, n);
    const float *basal, *h;
    pass.nglobal = n;
    PetscCall(LabelsSet(c, n, &cond, &ctx, PETSC_TRUE, &l));
    PetscCall(CsMLPForward(c->enc, &pass, n, NULL, &view, &basal));
    Compose(c, &l, basal, c->latent);
    PetscCall(CsMLPForward(c->dec, &pass, n, c->latent, NULL, &h));
    cs_linear_forward(out + (size_t)i0 * c->G, h, CsNNParamsData(c->P, c->tWm), CsNNParamsData(c->P, c->tBm), n, c->width, c->G);
    if (c->nb) {
      float *o = out + (size_t)i0 * c->G;
      cs_linear_forward(c->vraw, h, CsNNParamsData(c->P, c->tWv), CsNNParamsData(c->P, c->tBv), n, c->width, c->G);
      NBParams(n * c->G, o, c->vraw, c->mu, c->theta);
      for (PetscInt r = 0; r < n; r++) {
        double tot = 0;
        for (PetscInt j = 0; j < c->G; j++) tot += c->mu[(size_t)r * c->G + j];
        for (PetscInt j = 0; j < c->G; j++) o[(size_t)r * c->G + j] = (float)cs_nb_expected_log1p(c->mu[(size_t)r * c->G + j], c->theta[(size_t)r * c->G + j], 1e4 / tot);
      }
    }
  }
  PetscCall(LabelsFree(&l));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelSave_CPA(CsModel m, hid_t g)
{
  CPA  *c = (CPA *)m->data;
  hid_t a, q;

  PetscFunctionBeginUser;
  if (g < 0) PetscFunctionReturn(0); /* replicated state: rank 0 writes it */
  H5Call(a = H5Gcreate2(g, "autoencoder", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "cannot create autoencoder");
  PetscCall(CsNNParamsSave(c->P, a));
  H5Call(H5Gclose(a), "cannot close autoencoder");
  H5Call(q = H5Gcreate2(g, "adversaries", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "cannot create adversaries");
  PetscCall(CsNNParamsSave(c->Q, q));
  H5Call(H5Gclose(q), "cannot close adversaries");
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelLoad_CPA(CsModel m, hid_t g)
{
  CPA  *c = (CPA *)m->data;
  hid_t a;

  PetscFunctionBeginUser;
  H5Call(a = H5Gopen2(g, "autoencoder", H5P_DEFAULT), "model.h5: no autoencoder");
  PetscCall(CsNNParamsLoad(c->P, a, "model.h5"));
  H5Call(H5Gclose(a), "model.h5: cannot close autoencoder");
  H5Call(a = H5Gopen2(g, "adversaries", H5P_DEFAULT), "model.h5: no adversaries");
  PetscCall(CsNNParamsLoad(c->Q, a, "model.h5"));
  H5Call(H5Gclose(a), "model.h5: cannot close adversaries");
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelView_CPA(CsModel m, PetscViewer v)
{
  CPA *c = (CPA *)m->data;

  PetscFunctionBeginUser;
  PetscCall(PetscViewerASCIIPrintf(v, "latent %" PetscInt_FMT ", autoencoder %" PetscInt_FMT " x %" PetscInt_FMT ", %s decoder, doser %s, adversaries %s\n",
                                   c->dim, c->depth, c->width, c->nb ? "negative binomial" : "Gaussian", CsNNDosers[c->doser],
                                   c->adversary ? "on" : "off"));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelDestroy_CPA(CsModel m)
{
  CPA *c = (CPA *)m->data;

  PetscFunctionBeginUser;
  PetscCall(CsTrainerDestroy(&c->trainer));
  PetscCall(CsMLPDestroy(&c->enc));
  PetscCall(CsMLPDestroy(&c->dec));
  PetscCall(CsMLPDestroy(&c->adv_atom));
  PetscCall(CsMLPDestroy(&c->adv_ctx));
  PetscCall(CsNNParamsDestroy(&c->P));
  PetscCall(CsNNParamsDestroy(&c->Q));
  PetscCall(PetscFree(c->latent));
  PetscCall(PetscFree(c->dlatent));
  PetscCall(PetscFree(c->x));
  PetscCall(PetscFree(c->mean));
  PetscCall(PetscFree(c->vraw));
  PetscCall(PetscFree(c->dmean));
  PetscCall(PetscFree(c->dvraw));
  PetscCall(PetscFree(c->mu));
  PetscCall(PetscFree(c->theta));
  PetscCall(PetscFree(c->dmu));
  PetscCall(PetscFree(c->dtheta));
  PetscCall(PetscFree(m->data));
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelCreate_CPA(CsModel m)
{
  CPA *c;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&c));
  c->dim = 128, c->width = 128, c->depth = 3, c->adv_width = 64, c->adv_depth = 2, c->adv_steps = 3;
  c->reg_adv = 60;
  c->adversary = PETSC_TRUE, c->doser = CS_NN_DOSER_LOGSIGM;
  m->data                = c;
  m->trains              = PETSC_TRUE;
  m->ops->setfromoptions = CsModelSetFromOptions_CPA;
  m->ops->setup          = CsModelSetUp_CPA;
  m->ops->fit            = CsModelFit_CPA;
  m->ops->predict        = CsModelPredict_CPA;
  m->ops->save           = CsModelSave_CPA;
  m->ops->load           = CsModelLoad_CPA;
  m->ops->view           = CsModelView_CPA;
  m->ops->destroy        = CsModelDestroy_CPA;
  PetscFunctionReturn(0);
}
