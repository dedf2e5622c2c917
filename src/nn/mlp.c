/* CsMLP: linear -> [norm] -> activation -> dropout blocks with fused elementwise passes. See include/cellshift/nn.h. */
#include "nnimpl.h"
#include <cblas.h>
#include <string.h>

const char *const CsNNNorms[] = {"none", "batch", "layer", "CsNNNorm", "CS_NN_NORM_", NULL};

typedef struct {
  PetscInt  nin, nout;
  PetscBool hidden;             /* norm / activation / dropout follow the linear map */
  PetscInt  w, b, gam, bet, rm, rv; /* tensor indices, -1 when absent */
  float    *h;                  /* [maxbatch, out] linear output; overwritten by xhat when normalised */
  float    *fac;                /* [maxbatch, out] act'(y) * dropout factor (hidden blocks) */
  float    *a;                  /* [maxbatch, out] block output (== h for a plain layer) */
  float    *g;                  /* [maxbatch, out] gradient w.r.t. out, then (in place) w.r.t. h */
  float    *mean, *rstd;        /* [max(maxbatch, out)] per column (BatchNorm) or per row (LayerNorm) */
} Layer;

struct _n_CsMLP {
  CsNNParams   P;
  char         name[CS_NN_NAME_LEN];
  CsMLPConfig  cfg;
  PetscInt    *sizes;
  Layer       *L;
  PetscInt     maxbatch, maxc;
  double      *dwork;  /* [2 maxc] */
  float       *fwork;  /* [3 maxc] + [maxc] row of y */
  uint32_t    *words;  /* [maxc rounded up to 64] */
  /* The input of the last forward (kept by reference for the weight gradient of the first layer). */
  const float *x;
  const CsCSR *X;
  PetscInt     B;
};

void CsMLPConfigDefault(CsMLPConfig *cfg)
{
  memset(cfg, 0, sizeof(*cfg));
  cfg->norm        = CS_NN_NORM_BATCH;
  cfg->act         = CS_NN_ACT_LEAKYRELU;
  cfg->bn_momentum = 0.1;
  cfg->norm_eps    = 1e-5;
}

PetscErrorCode CsMLPCreate(CsNNParams P, const char name[], const CsMLPConfig *cfg, CsMLP *mlp)
{
  CsMLP m;
  char  tn[CS_NN_NAME_LEN];

  PetscFunctionBeginUser;
  PetscCheck(cfg->nlayers >= 1, P->comm, PETSC_ERR_ARG_OUTOFRANGE, "MLP %s needs at least one layer", name);
  PetscCheck(cfg->dropout >= 0 && cfg->dropout < 1, P->comm, PETSC_ERR_ARG_OUTOFRANGE, "MLP %s: dropout rate %g is not in [0, 1)",
             name, cfg->dropout);
  PetscCheck(cfg->layer_id0 >= 0 && cfg->layer_id0 + cfg->nlayers <= 256, P->comm, PETSC_ERR_ARG_OUTOFRANGE,
             "MLP %s: dropout layer ids must lie in [0, 256)", name);
  PetscCall(PetscNew(&m));
  m->P   = P;
  m->cfg = *cfg;
  PetscCall(PetscStrncpy(m->name, name, sizeof(m->name)));
  PetscCall(PetscMalloc1(cfg->nlayers + 1, &m->sizes));
  for (PetscInt l = 0; l <= cfg->nlayers; l++) {
    PetscCheck(cfg->sizes[l] > 0 && cfg->sizes[l] <= (1 << 18), P->comm, PETSC_ERR_ARG_OUTOFRANGE,
               "MLP %s: layer size %" PetscInt_FMT " is not in [1, 2^18]", name, cfg->sizes[l]);
    m->sizes[l] = cfg->sizes[l];
    m->maxc     = PetscMax(m->maxc, cfg->sizes[l]);
  }
  m->cfg.sizes = m->sizes;
  PetscCall(PetscCalloc1(cfg->nlayers, &m->L));
  for (PetscInt l = 0; l < cfg->nlayers; l++) {
    Layer *L = &m->L[l];
    L->nin = m->sizes[l], L->nout = m->sizes[l + 1];
    L->hidden = !(cfg->linear_last && l == cfg->nlayers - 1);
    L->gam = L->bet = L->rm = L->rv = -1;
    /* torch.nn.Linear's default initialisation for weight and bias: U(-1/sqrt(in), 1/sqrt(in)). */
    PetscCall(PetscSNPrintf(tn, sizeof(tn), "%s.%" PetscInt_FMT ".weight", name, l));
    PetscCall(CsNNParamsAdd(P, tn, L->nin, L->nout, CS_NN_INIT_FANIN, L->nin, &L->w));
    PetscCall(PetscSNPrintf(tn, sizeof(tn), "%s.%" PetscInt_FMT ".bias", name, l));
    PetscCall(CsNNParamsAdd(P, tn, L->nout, 1, CS_NN_INIT_FANIN, L->nin, &L->b));
    if (L->hidden && cfg->norm != CS_NN_NORM_NONE) {
      PetscCall(PetscSNPrintf(tn, sizeof(tn), "%s.%" PetscInt_FMT ".norm.weight", name, l));
      PetscCall(CsNNParamsAdd(P, tn, L->nout, 1, CS_NN_INIT_ONE, 0, &L->gam));
      PetscCall(PetscSNPrintf(tn, sizeof(tn), "%s.%" PetscInt_FMT ".norm.bias", name, l));
      PetscCall(CsNNParamsAdd(P, tn, L->nout, 1, CS_NN_INIT_ZERO, 0, &L->bet));
    }
    if (L->hidden && cfg->norm == CS_NN_NORM_BATCH) {
      PetscCall(PetscSNPrintf(tn, sizeof(tn), "%s.%" PetscInt_FMT ".norm.running_mean", name, l));
      PetscCall(CsNNParamsAddBuffer(P, tn, L->nout, CS_NN_INIT_ZERO, &L->rm));
      PetscCall(PetscSNPrintf(tn, sizeof(tn), "%s.%" PetscInt_FMT ".norm.running_var", name, l));
      PetscCall(CsNNParamsAddBuffer(P, tn, L->nout, CS_NN_INIT_ONE, &L->rv));
    }
  }
  *mlp = m;
  PetscFunctionReturn(0);
}

static PetscErrorCode AlignedAlloc(size_t n, float **p)
{
  PetscFunctionBeginUser;
  *p = (float *)aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
  PetscCheck(*p, PETSC_COMM_SELF, PETSC_ERR_MEM, "cannot allocate %zu floats of activations", n);
  memset(*p, 0, n * sizeof(float));
  PetscFunctionReturn(0);
}

PetscErrorCode CsMLPSetUp(CsMLP m, PetscInt maxbatch)
{
  PetscFunctionBeginUser;
  PetscCheck(m->P->setup, m->P->comm, PETSC_ERR_ORDER, "MLP %s: set up the parameters before the MLP", m->name);
  PetscCheck(!m->maxbatch, m->P->comm, PETSC_ERR_ORDER, "MLP %s is already set up", m->name);
  PetscCheck(maxbatch > 0, m->P->comm, PETSC_ERR_ARG_OUTOFRANGE, "MLP %s: the batch size must be positive", m->name);
  m->maxbatch = maxbatch;
  for (PetscInt l = 0; l < m->cfg.nlayers; l++) {
    Layer *L = &m->L[l];
    size_t n = (size_t)maxbatch * L->nout;
    PetscCall(AlignedAlloc(n, &L->h));
    PetscCall(AlignedAlloc(n, &L->g));
    if (L->hidden) {
      PetscCall(AlignedAlloc(n, &L->fac));
      PetscCall(AlignedAlloc(n, &L->a));
      PetscCall(AlignedAlloc((size_t)PetscMax(maxbatch, L->nout), &L->mean));
      PetscCall(AlignedAlloc((size_t)PetscMax(maxbatch, L->nout), &L->rstd));
    } else L->a = L->h;
  }
  PetscCall(PetscMalloc1(2 * (size_t)m->maxc, &m->dwork));
  PetscCall(AlignedAlloc(4 * (size_t)m->maxc, &m->fwork));
  m->words = (uint32_t *)aligned_alloc(64, sizeof(uint32_t) * (size_t)((m->maxc + 63) / 64 * 64));
  PetscCheck(m->words, PETSC_COMM_SELF, PETSC_ERR_MEM, "cannot allocate the dropout words");
  PetscFunctionReturn(0);
}

float *CsMLPGetOutputGrad(CsMLP m) { return m->L[m->cfg.nlayers - 1].g; }

/* Forward of one hidden block's elementwise part on h[B,O]. */
static PetscErrorCode BlockForward(CsMLP m, Layer *L, PetscInt l, const CsNNPass *pass, PetscInt B)
{
  PetscInt    O = L->nout;
  CsNNNorm    norm = m->cfg.norm;
  PetscBool   drop = pass->train && m->cfg.dropout > 0 ? PETSC_TRUE : PETSC_FALSE;
  uint32_t    thr = drop ? CsNNDropoutThreshold(m->cfg.dropout) : 0;
  float       scale = drop ? (float)(1.0 / (1.0 - m->cfg.dropout)) : 1.0f, *y = m->fwork + 3 * m->maxc;
  float      *gamma = L->gam >= 0 ? CsNNParamsData(m->P, L->gam) : NULL, *beta = L->bet >= 0 ? CsNNParamsData(m->P, L->bet) : NULL;

  PetscFunctionBeginUser;
  if (norm == CS_NN_NORM_BATCH) {
    float *rm = CsNNParamsData(m->P, L->rm), *rv = CsNNParamsData(m->P, L->rv);
    if (pass->train) {
      CsNNColSums2(m->dwork, L->h, B, O);
      PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, m->dwork, (PetscMPIInt)(2 * O), MPI_DOUBLE, MPI_SUM, pass->comm));
      CsNNBatchNormFinish(L->mean, L->rstd, rm, rv, m->dwork, pass->nglobal, O, m->cfg.bn_momentum, m->cfg.norm_eps);
    } else CsNNBatchNormEvalStats(L->mean, L->rstd, rm, rv, O, m->cfg.norm_eps);
  } else if (norm == CS_NN_NORM_LAYER) CsNNRowStats(L->mean, L->rstd, L->h, B, O, m->cfg.norm_eps);
  for (PetscInt i = 0; i < B; i++) {
    float       *h  = L->h + (size_t)i * O;
    const float *yr = h;
    if (norm == CS_NN_NORM_BATCH) CsNNNormRow(h, y, h, L->mean, L->rstd, 0, 0, gamma, beta, O), yr = y;
    else if (norm == CS_NN_NORM_LAYER) CsNNNormRow(h, y, h, NULL, NULL, L->mean[i], L->rstd[i], gamma, beta, O), yr = y;
    if (drop) CsNNDropoutWordsRange(m->words, pass->seed, pass->step, m->cfg.layer_id0 + l, CsNNPassCell(pass, i), 0, (O + 63) / 64);
    CsNNActDropRow(L->a + (size_t)i * O, L->fac + (size_t)i * O, yr, drop ? m->words : NULL, thr, scale, m->cfg.act, O);
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsMLPForward(CsMLP m, const CsNNPass *pass, PetscInt B, const float *x, const CsCSR *X, const float **out)
{
  PetscInt n = m->cfg.nlayers;

  PetscFunctionBeginUser;
  PetscCheck(B >= 0 && B <= m->maxbatch, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "MLP %s: batch of %" PetscInt_FMT " rows exceeds the maximum %" PetscInt_FMT, m->name, B, m->maxbatch);
  PetscCheck(m->cfg.sparse_input ? X != NULL : x != NULL, PETSC_COMM_SELF, PETSC_ERR_ARG_NULL, "MLP %s: the input must be %s",
             m->name, m->cfg.sparse_input ? "a CSR matrix" : "dense");
  PetscCheck(!X || (X->nrows == B && X->ncols == m->sizes[0]), PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ,
             "MLP %s: the CSR input is %" PetscInt_FMT " x %" PetscInt_FMT ", expected %" PetscInt_FMT " x %" PetscInt_FMT, m->name,
             X ? X->nrows : 0, X ? X->ncols : 0, B, m->sizes[0]);
  m->x = x, m->X = X, m->B = B;
  for (PetscInt l = 0; l < n; l++) {
    Layer       *L = &m->L[l];
    const float *w = CsNNParamsData(m->P, L->w), *b = CsNNParamsData(m->P, L->b);
    if (l == 0 && m->cfg.sparse_input) cs_linear_sparse_forward(L->h, X, w, b, L->nout);
    else cs_linear_forward(L->h, l ? m->L[l - 1].a : x, w, b, B, L->nin, L->nout);
    if (L->hidden) PetscCall(BlockForward(m, L, l, pass, B));
  }
  *out = m->L[n - 1].a;
  PetscFunctionReturn(0);
}

CS_NN_VEC static void MulInPlace(float *restrict g, const float *restrict f, size_t n)
{
  for (size_t i = 0; i < n; i++) g[i] *= f[i];
}

/* Backward of one hidden block's elementwise part: L->g holds d(out); on return it holds d(h), and the norm
   parameters and the linear bias have their gradients. */
static PetscErrorCode BlockBackward(CsMLP m, Layer *L, const CsNNPass *pass, PetscInt B)
{
  PetscInt O = L->nout;
  double  *s = m->dwork;
  float   *gamma = L->gam >= 0 ? CsNNParamsData(m->P, L->gam) : NULL, *db = CsNNParamsGrad(m->P, L->b);

  PetscFunctionBeginUser;
  if (m->cfg.norm == CS_NN_NORM_NONE) {
    MulInPlace(L->g, L->fac, (size_t)B * O);
    CsNNColSumAdd(db, L->g, B, O);
    PetscFunctionReturn(0);
  }
  /* g = dout * fac, sums of g (beta) and g xhat (gamma): the local parameter gradients. */
  memset(s, 0, sizeof(double) * 2 * (size_t)O);
  CsNNBackSums(s, L->g, L->g, L->fac, L->h, B, O);
  {
    float *dgam = CsNNParamsGrad(m->P, L->gam), *dbet = CsNNParamsGrad(m->P, L->bet);
    for (PetscInt j = 0; j < O; j++) dbet[j] += (float)s[j], dgam[j] += (float)s[O + j];
  }
  if (m->cfg.norm == CS_NN_NORM_LAYER) CsNNLayerNormBackApply(L->g, PETSC_FALSE, NULL, NULL, db, L->g, L->h, NULL, L->rstd, gamma, B, O);
  else if (pass->train) {
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, s, (PetscMPIInt)(2 * O), MPI_DOUBLE, MPI_SUM, pass->comm));
    CsNNBatchNormBackApply(L->g, PETSC_FALSE, db, L->g, L->h, L->rstd, gamma, s, pass->nglobal, B, O, m->fwork);
  } else CsNNBatchNormEvalBackApply(L->g, PETSC_FALSE, db, L->g, L->rstd, gamma, B, O);
  PetscFunctionReturn(0);
}

PetscErrorCode CsMLPBackward(CsMLP m, const CsNNPass *pass, PetscInt B, float *dinp)
{
  PetscFunctionBeginUser;
  PetscCheck(B == m->B, PETSC_COMM_SELF, PETSC_ERR_ORDER, "MLP %s: backward of %" PetscInt_FMT " rows after a forward of %" PetscInt_FMT,
             m->name, B, m->B);
  for (PetscInt l = m->cfg.nlayers - 1; l >= 0; l--) {
    Layer       *L  = &m->L[l];
    const float *in = l ? m->L[l - 1].a : m->x, *w = CsNNParamsData(m->P, L->w);
    float       *dw = CsNNParamsGrad(m->P, L->w), *db = CsNNParamsGrad(m->P, L->b);
    if (L->hidden) PetscCall(BlockBackward(m, L, pass, B));
    else CsNNColSumAdd(db, L->g, B, L->nout);
    if (B > 0) {
      if (l == 0 && m->cfg.sparse_input) cs_linear_sparse_backward(dw, NULL, L->g, m->X, L->nout);
      else cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, L->nin, L->nout, B, 1.0f, in, L->nin, L->g, L->nout, 1.0f, dw, L->nout);
    }
    PetscCall(CsNNReducerReady(pass->reducer, m->P->t[L->w].offset));
    /* The input gradient of an inner layer is written (beta 0), the caller's is accumulated. */
    if (B > 0 && l > 0)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, L->nin, L->nout, 1.0f, L->g, L->nout, w, L->nout, 0.0f, m->L[l - 1].g, L->nin);
    else if (B > 0 && dinp && !(m->cfg.sparse_input))
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, L->nin, L->nout, 1.0f, L->g, L->nout, w, L->nout, 1.0f, dinp, L->nin);
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsMLPDestroy(CsMLP *mlp)
{
  PetscFunctionBeginUser;
  if (!*mlp) PetscFunctionReturn(0);
  for (PetscInt l = 0; l < (*mlp)->cfg.nlayers; l++) {
    Layer *L = &(*mlp)->L[l];
    free(L->h);
    free(L->g);
    if (L->hidden) {
      free(L->fac);
      free(L->a);
      free(L->mean);
      free(L->rstd);
    }
  }
  free((*mlp)->fwork);
  free((*mlp)->words);
  PetscCall(PetscFree((*mlp)->dwork));
  PetscCall(PetscFree((*mlp)->L));
  PetscCall(PetscFree((*mlp)->sizes));
  PetscCall(PetscFree(*mlp));
  PetscFunctionReturn(0);
}
