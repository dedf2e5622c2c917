/* scgen: scGen (Lotfollahi, Wolf & Theis, Nature Methods 2019): a VAE trained on every train cell, and vector
   arithmetic in its latent space. The shift of an atom is the mean latent of its single-atom train groups minus the
   mean latent of the controls of the same context; a condition's shift is the sum of its atoms' shifts, taken in the
   target context where the atom was seen there and otherwise averaged over the contexts where it was seen, each
   context weighing the same (scGen balances cell types by resampling each to the largest; the equal-weight average
   is that resampling's expectation, computed without randomness). A prediction decodes
   latent(control cell of the target context) + shift; latents are the means of q(z|x).

   Defaults follow scGen: encoder and decoder 800-800 with BatchNorm, LeakyReLU and dropout 0.2, latent 100, KL weight
   0.00005, Adam with learning rate 0.001, batch 32, 100 epochs with early stopping (patience 25) on the validation
   reconstruction error (sum over genes of the squared error of decode(mean latent), averaged over cells). */
#include "modelimpl.h"

typedef struct {
  CsVAEConfig  cfg;
  CsVAE        vae;
  CsTrainer    trainer;
  CsAtomShifts sh;
  PetscInt     batch;
  float       *z, *rec;   /* [batch, latent], [batch, ngenes] work buffers */
  double      *shift;     /* [latent] */
} ScGen;

/* One message per option, naming it and the value given. */
static PetscErrorCode CheckOptions(CsModel m)
{
  ScGen      *s = (ScGen *)m->data;
  MPI_Comm    comm = PetscObjectComm((PetscObject)m);
  const char *pre  = CsModelPrefix(m);

  PetscFunctionBeginUser;
  CsCheckAll(comm, s->cfg.hidden > 0, "-%shidden must be positive (got %" PetscInt_FMT ")", pre, s->cfg.hidden);
  CsCheckAll(comm, s->cfg.nhidden > 0, "-%slayers must be positive (got %" PetscInt_FMT ")", pre, s->cfg.nhidden);
  CsCheckAll(comm, s->cfg.latent > 0, "-%slatent must be positive (got %" PetscInt_FMT ")", pre, s->cfg.latent);
  CsCheckAll(comm, s->cfg.dropout >= 0 && s->cfg.dropout < 1, "-%sdropout must be in [0, 1) (got %.6g)", pre, (double)s->cfg.dropout);
  CsCheckAll(comm, !PetscIsInfOrNanReal(s->cfg.kl_weight) && s->cfg.kl_weight >= 0, "-%skl_weight must be a finite number >= 0 (got %.6g)", pre, (double)s->cfg.kl_weight);
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelSetFromOptions_ScGen(CsModel m, PetscOptionItems *PetscOptionsObject)
{
  ScGen *s = (ScGen *)m->data;

  PetscFunctionBeginUser;
  PetscOptionsHeadBegin(PetscOptionsObject, "scGen: VAE with latent vector arithmetic");
  PetscCall(PetscOptionsInt("-hidden", "Width of the encoder and decoder layers", "scgen", s->cfg.hidden, &s->cfg.hidden, NULL));
  PetscCall(PetscOptionsInt("-layers", "Hidden layers of the encoder and of the decoder", "scgen", s->cfg.nhidden, &s->cfg.nhidden, NULL));
  PetscCall(PetscOptionsInt("-latent", "Latent dimension", "scgen", s->cfg.latent, &s->cfg.latent, NULL));
  PetscCall(PetscOptionsReal("-dropout", "Dropout rate", "scgen", s->cfg.dropout, &s->cfg.dropout, NULL));
  PetscCall(PetscOptionsReal("-kl_weight", "Weight of the KL term", "scgen", s->cfg.kl_weight, &s->cfg.kl_weight, NULL));
  PetscOptionsHeadEnd();
  PetscCall(CheckOptions(m));
  if (!s->trainer) {
    PetscCall(CsTrainerCreate(PetscObjectComm((PetscObject)m), &s->trainer));
    PetscCall(CsTrainerSetOptionsPrefix(s->trainer, CsModelPrefix(m)));
    PetscCall(CsTrainerSetDefaults(s->trainer, 100, 32, 25));
    PetscCall(CsTrainerAddOptimizer(s->trainer, NULL, 1e-3, 0, NULL));
  }
  PetscCall(CsTrainerSetFromOptions(s->trainer));
  PetscCall(CsModelCheckTrainingOptions(m));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelSetUp_ScGen(CsModel m)
{
  ScGen *s = (ScGen *)m->data;

  PetscFunctionBeginUser;
  PetscCheck(s->trainer, PetscObjectComm((PetscObject)m), PETSC_ERR_ORDER, "call CsModelSetFromOptions first");
  PetscCall(CsTrainerGetBatchSize(s->trainer, &s->batch));
  s->cfg.ngenes       = m->ds->ngenes;
  s->cfg.sparse_input = PETSC_TRUE;
  PetscCall(CsVAECreate(PetscObjectComm((PetscObject)m), &s->cfg, s->batch, (uint64_t)m->seed, &s->vae));
  PetscCall(CsTrainerSetParams(s->trainer, 0, s->vae->P));
  PetscCall(PetscMalloc1((size_t)s->batch * s->cfg.latent, &s->z));
  PetscCall(PetscMalloc1((size_t)s->batch * s->cfg.ngenes, &s->rec));
  PetscCall(PetscMalloc1(s->cfg.latent, &s->shift));
  PetscFunctionReturn(0);
}

static PetscErrorCode Step(void *ctx, const CsBatch *b, const CsNNPass *pass, PetscInt *set, double *loss)
{
  ScGen    *s = (ScGen *)ctx;
  CsVAELoss l;

  PetscFunctionBeginUser;
  PetscCall(CsVAETrainStep(s->vae, pass, b->n, NULL, &b->X, &l));
  *set = 0, *loss = l.total;
  PetscFunctionReturn(0);
}

/* Validation: reconstruction error of decode(mean latent), summed over genes, over the global batch. */
static PetscErrorCode Loss(void *ctx, const CsBatch *b, const CsNNPass *pass, double *loss)
{
  ScGen *s = (ScGen *)ctx;

  PetscFunctionBeginUser;
  PetscCall(CsVAEEncode(s->vae, b->n, NULL, &b->X, s->z));
  PetscCall(CsVAEDecode(s->vae, b->n, s->z, s->rec));
  *loss = cs_mse_loss_csr(NULL, s->rec, &b->X, pass->nglobal, 1.0);
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, loss, 1, MPI_DOUBLE, MPI_SUM, pass->comm));
  PetscFunctionReturn(0);
}

/* Mean latent of every group the shifts need (collective: local sums reduced). With -quality_weight the means are
   weighted by the cells' quality weights, so that a cell of weight 0 has no influence on the model at all (a group
   whose cells all weigh 0 keeps its unweighted mean). */
static PetscErrorCode LatentShifts(CsModel m)
{
  ScGen     *s = (ScGen *)m->data;
  CsDesign   d = m->design;
  PetscInt   Z = s->cfg.latent, *rows;
  PetscBool *want;
  double    *means, *wsum = NULL;
  const double *qw = m->ds->qweight;
  CsBatch    b = {0};

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(d->ngroups + 1, &want));
  PetscCall(CsAtomShiftsGroups(d, m->split, PETSC_FALSE, want));
  PetscCall(PetscCalloc1((size_t)d->ngroups * Z + 1, &means));
  PetscCall(PetscMalloc1(s->batch, &rows));
  for (PetscInt i0 = 0; i0 < m->ds->nlocal;) {
    PetscInt n = 0;
    for (; i0 < m->ds->nlocal && n < s->batch; i0++)
      if (d->cell_group[i0] >= 0 && want[d->cell_group[i0]]) rows[n++] = i0;
    PetscCall(CsBatchFromRows(m->ds, n, rows, &b));
    PetscCall(CsVAEEncode(s->vae, n, NULL, &b.X, s->z));
    for (PetscInt k = 0; k < n && !qw; k++) {
      double *dst = means + (size_t)d->cell_group[rows[k]] * Z;
      for (PetscInt j = 0; j < Z; j++) dst[j] += s->z[(size_t)k * Z + j];
    }
    if (qw && !wsum) PetscCall(PetscCalloc1((size_t)d->ngroups * (Z + 1) + 1, &wsum));
    for (PetscInt k = 0; k < n && qw; k++) { /* wsum: [ngroups x Z] unweighted sums, then [ngroups] weight sums */
      PetscInt g = d->cell_group[rows[k]];
      double   w = qw[rows[k]], *dst = means + (size_t)g * Z, *raw = wsum + (size_t)g * Z;
      for (PetscInt j = 0; j < Z; j++) dst[j] += w * s->z[(size_t)k * Z + j], raw[j] += s->z[(size_t)k * Z + j];
      wsum[(size_t)d->ngroups * Z + g] += w;
    }
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, means, (PetscMPIInt)(d->ngroups * Z), MPI_DOUBLE, MPI_SUM, PetscObjectComm((PetscObject)m)));
  if (!qw)
    for (PetscInt g = 0; g < d->ngroups; g++)
      for (PetscInt j = 0; want[g] && j < Z; j++) means[(size_t)g * Z + j] /= d->groups[g].ncells;
  else {
    if (!wsum) PetscCall(PetscCalloc1((size_t)d->ngroups * (Z + 1) + 1, &wsum));
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, wsum, (PetscMPIInt)(d->ngroups * (Z + 1)), MPI_DOUBLE, MPI_SUM, PetscObjectComm((PetscObject)m)));
    for (PetscInt g = 0; g < d->ngroups; g++) {
      double W = wsum[(size_t)d->ngroups * Z + g];
      for (PetscInt j = 0; want[g] && j < Z; j++)
        means[(size_t)g * Z + j] = W > 0 ? means[(size_t)g * Z + j] / W : wsum[(size_t)g * Z + j] / d->groups[g].ncells;
    }
    PetscCall(PetscFree(wsum));
  }
  PetscCall(CsAtomShiftsFromMeans(d, m->split, PETSC_FALSE, Z, means, &s->sh));
  PetscCall(CsBatchFree(&b));
  PetscCall(PetscFree(rows));
  PetscCall(PetscFree(means));
  PetscCall(PetscFree(want));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelFit_ScGen(CsModel m)
{
  ScGen             *s  = (ScGen *)m->data;
  CsTrainerCallbacks cb = {s, Step, Loss, NULL};

  PetscFunctionBeginUser;
  PetscCall(CsModelTrain(m, s->trainer, &cb));
  if (!m->interrupted) PetscCall(LatentShifts(m));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelPredict_ScGen(CsModel m, const CsCondition *cond, PetscInt ctx, const CsCSR *ctrl, float *out)
{
  ScGen   *s = (ScGen *)m->data;
  PetscInt Z = s->cfg.latent;
  float   *z;

  PetscFunctionBeginUser;
  CsAtomShiftsSum(&s->sh, cond, ctx, s->shift);
  PetscCall(PetscMalloc1((size_t)ctrl->nrows * Z + 1, &z));
  PetscCall(CsVAEEncode(s->vae, ctrl->nrows, NULL, ctrl, z));
  for (PetscInt k = 0; k < ctrl->nrows; k++)
    for (PetscInt j = 0; j < Z; j++) z[(size_t)k * Z + j] += (float)s->shift[j];
  PetscCall(CsVAEDecode(s->vae, ctrl->nrows, z, out));
  PetscCall(PetscFree(z));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelSave_ScGen(CsModel m, hid_t g)
{
  ScGen *s = (ScGen *)m->data;

  PetscFunctionBeginUser;
  if (g < 0) PetscFunctionReturn(0); /* replicated state: rank 0 writes it */
  PetscCall(CsNNParamsSave(s->vae->P, g));
  PetscCall(CsAtomShiftsSave(&s->sh, g));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelLoad_ScGen(CsModel m, hid_t g)
{
  ScGen *s = (ScGen *)m->data;

  PetscFunctionBeginUser;
  PetscCall(CsNNParamsLoad(s->vae->P, g, "model.h5"));
  PetscCall(CsAtomShiftsLoad(&s->sh, g, m->design->nctx, m->design->natoms, s->cfg.latent));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelView_ScGen(CsModel m, PetscViewer v)
{
  ScGen *s = (ScGen *)m->data;

  PetscFunctionBeginUser;
  PetscCall(PetscViewerASCIIPrintf(v, "VAE %" PetscInt_FMT " genes, %" PetscInt_FMT " x %" PetscInt_FMT " hidden, latent %" PetscInt_FMT
                                      ", dropout %g, KL weight %g\n",
                                   s->cfg.ngenes, s->cfg.nhidden, s->cfg.hidden, s->cfg.latent, s->cfg.dropout, s->cfg.kl_weight));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelDestroy_ScGen(CsModel m)
{
  ScGen *s = (ScGen *)m->data;

  PetscFunctionBeginUser;
  PetscCall(CsVAEDestroy(&s->vae));
  PetscCall(CsTrainerDestroy(&s->trainer));
  PetscCall(CsAtomShiftsFree(&s->sh));
  PetscCall(PetscFree(s->z));
  PetscCall(PetscFree(s->rec));
  PetscCall(PetscFree(s->shift));
  PetscCall(PetscFree(m->data));
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelCreate_ScGen(CsModel m)
{
  ScGen *s;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&s));
  CsVAEConfigDefault(&s->cfg);
  s->cfg.kl_weight       = 0.00005; /* scGen's default */
  m->data                = s;
  m->trains              = PETSC_TRUE;
  m->streams = PETSC_TRUE; /* group means and encodings by streamed passes */
  m->ops->setfromoptions = CsModelSetFromOptions_ScGen;
  m->ops->setup          = CsModelSetUp_ScGen;
  m->ops->fit            = CsModelFit_ScGen;
  m->ops->predict        = CsModelPredict_ScGen;
  m->ops->save           = CsModelSave_ScGen;
  m->ops->load           = CsModelLoad_ScGen;
  m->ops->view           = CsModelView_ScGen;
  m->ops->destroy        = CsModelDestroy_ScGen;
  PetscFunctionReturn(0);
}
