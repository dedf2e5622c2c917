/* CsVAE: scGen's variational autoencoder on CsMLP blocks. See include/cellshift/nn.h. */
#include "nnimpl.h"
#include <string.h>

void CsVAEConfigDefault(CsVAEConfig *cfg)
{
  memset(cfg, 0, sizeof(*cfg));
  cfg->hidden = 800, cfg->nhidden = 2, cfg->latent = 100;
  cfg->dropout = 0.2, cfg->kl_weight = 0.005;
  cfg->bn_momentum = 0.1, cfg->bn_eps = 1e-5;
}

PetscErrorCode CsVAECreate(MPI_Comm comm, const CsVAEConfig *cfg, PetscInt maxbatch, uint64_t seed, CsVAE *vae)
{
  CsVAE       v;
  CsMLPConfig mc;
  PetscInt   *sizes;

  PetscFunctionBeginUser;
  PetscCheck(cfg->ngenes > 0 && cfg->hidden > 0 && cfg->nhidden >= 1 && cfg->latent > 0, comm, PETSC_ERR_ARG_OUTOFRANGE,
             "VAE sizes must be positive (genes %" PetscInt_FMT ", hidden %" PetscInt_FMT " x %" PetscInt_FMT ", latent %" PetscInt_FMT ")",
             cfg->ngenes, cfg->hidden, cfg->nhidden, cfg->latent);
  PetscCall(PetscNew(&v));
  v->cfg      = *cfg;
  v->maxbatch = maxbatch;
  PetscCall(CsNNParamsCreate(comm, &v->P));
  PetscCall(PetscMalloc1(cfg->nhidden + 2, &sizes));
  CsMLPConfigDefault(&mc);
  mc.nlayers     = cfg->nhidden + 1;
  mc.sizes       = sizes;
  mc.dropout     = cfg->dropout;
  mc.linear_last = PETSC_TRUE;
  mc.bn_momentum = cfg->bn_momentum;
  mc.norm_eps    = cfg->bn_eps;
  /* Encoder (with the fused heads as its last layer) first: registration order = forward order. */
  sizes[0] = cfg->ngenes;
  for (PetscInt l = 1; l <= cfg->nhidden; l++) sizes[l] = cfg->hidden;
  sizes[cfg->nhidden + 1] = 2 * cfg->latent;
  mc.sparse_input         = cfg->sparse_input;
  mc.layer_id0            = 0;
  PetscCall(CsMLPCreate(v->P, "enc", &mc, &v->enc));
  sizes[0]                = cfg->latent;
  sizes[cfg->nhidden + 1] = cfg->ngenes;
  mc.sparse_input         = PETSC_FALSE;
  mc.layer_id0            = 128;
  PetscCall(CsMLPCreate(v->P, "dec", &mc, &v->dec));
  PetscCall(PetscFree(sizes));
  PetscCall(CsNNParamsSetUp(v->P));
  PetscCall(CsNNParamsInitialize(v->P, seed));
  PetscCall(CsMLPSetUp(v->enc, maxbatch));
  PetscCall(CsMLPSetUp(v->dec, maxbatch));
  PetscCall(PetscMalloc3((size_t)maxbatch * cfg->latent, &v->z, (size_t)maxbatch * cfg->latent, &v->eps,
                         (size_t)maxbatch * cfg->latent, &v->dz));
  PetscCall(PetscMalloc1((size_t)CsPoolThreads() * 64 * ((cfg->latent + 31) / 32), &v->words));
  *vae = v;
  PetscFunctionReturn(0);
}

/* z = mu + eps exp(logvar / 2), eps keyed by (seed, step, global cell, component): CsRngNormal2's Box-Muller on
   Philox blocks drawn 16 at a time; rows split over the thread pool. */
typedef struct {
  CsVAE           v;
  const CsNNPass *pass;
  PetscInt        B;
  const float    *ml;
} ReparCtx;

static double U53(uint32_t hi, uint32_t lo) { return (double)(((uint64_t)hi << 21) | (lo >> 11)) * 0x1.0p-53; }

static void TaskReparameterise(void *ctx, int t, int nt)
{
  ReparCtx *k = (ReparCtx *)ctx;
  PetscInt  Z = k->v->cfg.latent, npair = (Z + 1) / 2, nchunk = (npair + 15) / 16;
  uint32_t *r = k->v->words + (size_t)t * 64 * nchunk;
  size_t    lo, hi;
  CsPoolChunk((size_t)k->B, t, nt, 1, &lo, &hi);
  for (size_t i = lo; i < hi; i++) {
    uint64_t     cell = (uint64_t)CsNNPassCell(k->pass, (PetscInt)i);
    const float *mu = k->ml + i * 2 * Z, *lv = mu + Z;
    float       *e = k->v->eps + i * Z, *z = k->v->z + i * Z;
    CsRngBlocks16(r, k->pass->seed, CS_STREAM_NOISE, k->pass->step, cell << 24, nchunk);
    for (PetscInt q = 0; q < npair; q++) {
      const uint32_t *w = r + 64 * (q / 16) + q % 16;
      double          u1 = 1.0 - U53(w[0], w[16]), u2 = U53(w[32], w[48]), rad = sqrt(-2.0 * log(u1));
      e[2 * q] = (float)(rad * cos(2.0 * M_PI * u2));
      if (2 * q + 1 < Z) e[2 * q + 1] = (float)(rad * sin(2.0 * M_PI * u2));
    }
    for (PetscInt j = 0; j < Z; j++) z[j] = mu[j] + e[j] * expf(0.5f * lv[j]);
  }
}

PetscErrorCode CsVAETrainStep(CsVAE v, const CsNNPass *pass, PetscInt B, const float *x, const CsCSR *X, CsVAELoss *loss)
{
  PetscInt     Z = v->cfg.latent, G = v->cfg.ngenes;
  const float *ml, *rec;
  float       *dml, *drec;
  double       l[2];

  PetscFunctionBeginUser;
  PetscCheck(pass->train, PETSC_COMM_SELF, PETSC_ERR_ARG_WRONG, "CsVAETrainStep needs a pass in train mode");
  PetscCall(PetscLogEventBegin(CS_EVENT_FORWARD, 0, 0, 0, 0));
  PetscCall(CsMLPForward(v->enc, pass, B, x, X, &ml));
  {
    ReparCtx k = {v, pass, B, ml};
    CsPoolRun(TaskReparameterise, &k);
  }
  PetscCall(CsMLPForward(v->dec, pass, B, v->z, NULL, &rec));
  PetscCall(PetscLogEventEnd(CS_EVENT_FORWARD, 0, 0, 0, 0));

  PetscCall(PetscLogEventBegin(CS_EVENT_BACKWARD, 0, 0, 0, 0));
  drec = CsMLPGetOutputGrad(v->dec);
  dml  = CsMLPGetOutputGrad(v->enc);
  l[0] = CsNNMSELossAssign(drec, rec, x, X, B, G, pass->nglobal, 1.0);
  memset(dml, 0, sizeof(float) * (size_t)B * 2 * Z);
  l[1] = v->cfg.kl_weight > 0 ? cs_kl_normal_loss(dml, ml, B, Z, pass->nglobal, v->cfg.kl_weight) / v->cfg.kl_weight
                              : cs_kl_normal_loss(NULL, ml, B, Z, pass->nglobal, 1.0);
  memset(v->dz, 0, sizeof(float) * (size_t)B * Z);
  PetscCall(CsMLPBackward(v->dec, pass, B, v->dz));
  /* Through the reparameterisation: dmu += dz, dlogvar += dz eps exp(logvar / 2) / 2. */
  for (PetscInt i = 0; i < B; i++) {
    const float *lv = ml + (size_t)i * 2 * Z + Z, *dz = v->dz + (size_t)i * Z, *e = v->eps + (size_t)i * Z;
    float       *dmu = dml + (size_t)i * 2 * Z, *dlv = dmu + Z;
    for (PetscInt k = 0; k < Z; k++) {
      dmu[k] += dz[k];
      dlv[k] += dz[k] * e[k] * 0.5f * expf(0.5f * lv[k]);
    }
  }
  PetscCall(CsMLPBackward(v->enc, pass, B, NULL));
  PetscCall(PetscLogEventEnd(CS_EVENT_BACKWARD, 0, 0, 0, 0));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, l, 2, MPI_DOUBLE, MPI_SUM, pass->comm));
  if (loss) loss->rec = l[0], loss->kl = l[1], loss->total = l[0] + v->cfg.kl_weight * l[1];
  PetscFunctionReturn(0);
}

PetscErrorCode CsVAEEncode(CsVAE v, PetscInt B, const float *x, const CsCSR *X, float *mu)
{
  PetscInt Z = v->cfg.latent, G = v->cfg.ngenes;
  CsNNPass pass;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(&pass, sizeof(pass)));
  pass.comm = PETSC_COMM_SELF;
  for (PetscInt r0 = 0; r0 < B; r0 += v->maxbatch) {
    PetscInt     n = PetscMin(v->maxbatch, B - r0);
    CsCSR        view;
    const float *ml;
    if (X) view = CsCSRRowView(X, r0, n);
    pass.nglobal = n;
    PetscCall(CsMLPForward(v->enc, &pass, n, X ? NULL : x + (size_t)r0 * G, X ? &view : NULL, &ml));
    for (PetscInt i = 0; i < n; i++) memcpy(mu + (size_t)(r0 + i) * Z, ml + (size_t)i * 2 * Z, sizeof(float) * (size_t)Z);
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsVAEDecode(CsVAE v, PetscInt B, const float *z, float *out)
{
  PetscInt Z = v->cfg.latent, G = v->cfg.ngenes;
  CsNNPass pass;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(&pass, sizeof(pass)));
  pass.comm = PETSC_COMM_SELF;
  for (PetscInt r0 = 0; r0 < B; r0 += v->maxbatch) {
    PetscInt     n = PetscMin(v->maxbatch, B - r0);
    const float *rec;
    pass.nglobal = n;
    PetscCall(CsMLPForward(v->dec, &pass, n, z + (size_t)r0 * Z, NULL, &rec));
    memcpy(out + (size_t)r0 * G, rec, sizeof(float) * (size_t)n * G);
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsVAEView(CsVAE v, PetscViewer viewer)
{
  PetscFunctionBeginUser;
  PetscCall(PetscViewerASCIIPrintf(viewer, "VAE: %" PetscInt_FMT " genes, hidden %" PetscInt_FMT " x %" PetscInt_FMT ", latent %" PetscInt_FMT
                                           ", dropout %g, KL weight %g, batches of up to %" PetscInt_FMT " rows\n",
                                   v->cfg.ngenes, v->cfg.hidden, v->cfg.nhidden, v->cfg.latent, v->cfg.dropout, v->cfg.kl_weight, v->maxbatch));
  PetscCall(PetscViewerASCIIPushTab(viewer));
  PetscCall(CsMLPView(v->enc, viewer));
  PetscCall(CsMLPView(v->dec, viewer));
  PetscCall(CsNNParamsView(v->P, viewer));
  PetscCall(PetscViewerASCIIPopTab(viewer));
  PetscFunctionReturn(0);
}

PetscErrorCode CsVAEDestroy(CsVAE *vae)
{
  PetscFunctionBeginUser;
  if (!*vae) PetscFunctionReturn(0);
  PetscCall(CsMLPDestroy(&(*vae)->enc));
  PetscCall(CsMLPDestroy(&(*vae)->dec));
  PetscCall(CsNNParamsDestroy(&(*vae)->P));
  PetscCall(PetscFree3((*vae)->z, (*vae)->eps, (*vae)->dz));
  PetscCall(PetscFree((*vae)->words));
  PetscCall(PetscFree(*vae));
  PetscFunctionReturn(0);
}
