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
  uint8_t  *keep;               /* [maxbatch, out] dropout decisions (hidden blocks with dropout) */
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
  int          nt;     /* threads of the pool */
  double      *dwork;  /* [2 maxc] */
  float       *fwork;  /* [3 maxc] + [nt][maxc] rows of y */
  uint32_t    *words;  /* [nt][maxc rounded up to 64] */
  char        *arena;  /* the layers' buffers and the work arrays above, one block */
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

/* One arena per MLP holds every activation, gradient, dropout decision and work buffer (CsNNMalloc: zeroed, through
   PetscMalloc). Take(): the next 64-byte aligned slice of n bytes; with base NULL it only counts. */
static void *Take(char *base, size_t *off, size_t n)
{
  void *p = base ? base + *off : NULL;
  *off += (n + 63) / 64 * 64;
  return p;
}

static void Carve(CsMLP m, char *base, size_t *off)
{
  PetscInt B = m->maxbatch;
  for (PetscInt l = 0; l < m->cfg.nlayers; l++) {
    Layer *L = &m->L[l];
    size_t n = (size_t)B * L->nout;
    L->h     = (float *)Take(base, off, sizeof(float) * n);
    L->g     = (float *)Take(base, off, sizeof(float) * n);
    if (L->hidden) {
      if (m->cfg.dropout > 0) L->keep = (uint8_t *)Take(base, off, n);
      L->a    = (float *)Take(base, off, sizeof(float) * n);
      L->mean = (float *)Take(base, off, sizeof(float) * (size_t)PetscMax(B, L->nout));
      L->rstd = (float *)Take(base, off, sizeof(float) * (size_t)PetscMax(B, L->nout));
    } else L->a = L->h;
  }
  m->dwork = (double *)Take(base, off, sizeof(double) * 2 * (size_t)m->maxc);
  m->fwork = (float *)Take(base, off, sizeof(float) * (3 + (size_t)m->nt) * (size_t)m->maxc);
  m->words = (uint32_t *)Take(base, off, sizeof(uint32_t) * (size_t)((m->maxc + 63) / 64 * 64) * (size_t)m->nt);
}

PetscErrorCode CsMLPSetUp(CsMLP m, PetscInt maxbatch)
{
  size_t bytes = 0;

  PetscFunctionBeginUser;
  PetscCheck(m->P->setup, m->P->comm, PETSC_ERR_ORDER, "MLP %s: set up the parameters before the MLP", m->name);
  PetscCheck(!m->maxbatch, m->P->comm, PETSC_ERR_ORDER, "MLP %s is already set up", m->name);
  PetscCheck(maxbatch > 0, m->P->comm, PETSC_ERR_ARG_OUTOFRANGE, "MLP %s: the batch size must be positive", m->name);
  m->maxbatch = maxbatch;
  m->nt       = CsPoolThreads();
  Carve(m, NULL, &bytes);
  PetscCall(CsNNMalloc(bytes, &m->arena));
  bytes = 0;
  Carve(m, m->arena, &bytes);
  PetscFunctionReturn(0);
}

float *CsMLPGetOutputGrad(CsMLP m) { return m->L[m->cfg.nlayers - 1].g; }

/* The elementwise passes of one block, run on the thread pool (see threads.c). */
typedef struct {
  CsMLP           m;
  Layer          *L;
  const CsNNPass *pass;
  PetscInt        l, B, O;
  const float    *gamma, *beta;
  float          *db;
  PetscBool       drop;
  uint32_t        thr;
  float           scale;
  CsNNActBack     ab;    /* backward through activation and dropout */
  PetscBool       keepg; /* backward sums also store v in g (all but BatchNorm in train mode) */
} BlockCtx;

/* BatchNorm statistics, split by columns. */
static void TaskStats(void *c, int t, int nt)
{
  BlockCtx *k = (BlockCtx *)c;
  size_t    lo, hi;
  CsPoolChunk((size_t)k->O, t, nt, 16, &lo, &hi);
  if (lo < hi) CsNNColSums2(k->m->dwork, k->L->h, k->B, k->O, (PetscInt)lo, (PetscInt)hi);
}

/* Normalisation, activation and dropout, split by rows; each thread has its own row buffers. */
static void TaskApply(void *c, int t, int nt)
{
  BlockCtx *k = (BlockCtx *)c;
  CsMLP     m = k->m;
  Layer    *L = k->L;
  PetscInt  O = k->O, nw = (m->maxc + 63) / 64 * 64;
  float    *y = m->fwork + 3 * (size_t)m->maxc + (size_t)t * m->maxc;
  uint32_t *words = m->words + (size_t)t * nw;
  size_t    lo, hi;
  CsPoolChunk((size_t)k->B, t, nt, 1, &lo, &hi);
  for (size_t i = lo; i < hi; i++) {
    float       *h  = L->h + i * O;
    const float *yr = h;
    if (m->cfg.norm == CS_NN_NORM_BATCH) CsNNNormRow(h, y, h, L->mean, L->rstd, 0, 0, k->gamma, k->beta, O), yr = y;
    else if (m->cfg.norm == CS_NN_NORM_LAYER) CsNNNormRow(h, y, h, NULL, NULL, L->mean[i], L->rstd[i], k->gamma, k->beta, O), yr = y;
    if (k->drop)
      CsNNDropoutWordsRange(words, k->pass->seed, k->pass->step, m->cfg.layer_id0 + k->l, CsNNPassCell(k->pass, (PetscInt)i), 0,
                            (O + 63) / 64);
    CsNNActDropRow(L->a + i * O, k->drop ? L->keep + i * O : NULL, yr, k->drop ? words : NULL, k->thr, k->scale, k->ab.act, O);
  }
}

/* Backward sums of the normalisation, split by columns. */
static void TaskBackSums(void *c, int t, int nt)
{
  BlockCtx *k = (BlockCtx *)c;
  size_t    lo, hi;
  CsPoolChunk((size_t)k->O, t, nt, 16, &lo, &hi);
  if (lo < hi) CsNNBackSums(k->m->dwork, k->keepg ? k->L->g : NULL, k->L->g, &k->ab, k->L->h, k->B, k->O, (PetscInt)lo, (PetscInt)hi);
}

/* BatchNorm: d(h) in place of g and the linear bias gradient, split by columns. */
static void TaskBackApply(void *c, int t, int nt)
{
  BlockCtx *k = (BlockCtx *)c;
  Layer    *L = k->L;
  PetscInt  B = k->B, O = k->O;
  size_t    lo, hi;
  CsPoolChunk((size_t)O, t, nt, 16, &lo, &hi);
  if (lo >= hi) return;
  /* In train mode the bias before a BatchNorm cancels in the normalisation: its true gradient is 0, and the column
     sums of dh are only rounding noise, which Adam would turn into steps of the size of the learning rate (and
     which differ with the number of ranks). So it gets no gradient. */
  if (k->pass->train)
    CsNNBatchNormBackApply(L->g, PETSC_FALSE, NULL, L->g, &k->ab, L->h, L->rstd, k->gamma, k->m->dwork, k->pass->nglobal, B, O,
                           (PetscInt)lo, (PetscInt)hi, k->m->fwork);
  else CsNNBatchNormEvalBackApply(L->g, PETSC_FALSE, k->db, L->g, L->rstd, k->gamma, B, O, (PetscInt)lo, (PetscInt)hi);
}

/* Column sums of a plain layer's output gradient into its bias gradient. */
static void TaskColSum(void *c, int t, int nt)
{
  BlockCtx *k = (BlockCtx *)c;
  size_t    lo, hi;
  CsPoolChunk((size_t)k->O, t, nt, 16, &lo, &hi);
  if (lo < hi) CsNNColSumAddRange(k->db, k->L->g, k->B, k->O, (PetscInt)lo, (PetscInt)hi);
}

/* The passes of one block run on the calling thread. They read arrays of a few MB that the preceding sgemm has
   just written from both cores' caches; measured at batch 512 x 800 with 2 threads, splitting them over the pool
   was slower than one thread (wake-up of the worker, and the BLAS worker spinning on the other core). They keep
   the (ctx, t, nt) form so that a machine where splitting pays can switch to CsPoolRun here. */
static void BlockRun(CsPoolTask fn, void *k) { fn(k, 0, 1); }

static void BlockCtxInit(BlockCtx *k, CsMLP m, Layer *L, PetscInt l, const CsNNPass *pass, PetscInt B)
{
  PetscMemzero(k, sizeof(*k));
  k->m = m, k->L = L, k->l = l, k->pass = pass, k->B = B, k->O = L->nout;
  k->gamma = L->gam >= 0 ? CsNNParamsData(m->P, L->gam) : NULL;
  k->beta  = L->bet >= 0 ? CsNNParamsData(m->P, L->bet) : NULL;
  k->db    = CsNNParamsGrad(m->P, L->b);
  k->drop  = pass->train && m->cfg.dropout > 0 ? PETSC_TRUE : PETSC_FALSE;
  k->thr   = k->drop ? CsNNDropoutThreshold(m->cfg.dropout) : 0;
  k->scale = k->drop ? (float)(1.0 / (1.0 - m->cfg.dropout)) : 1.0f;
  /* Backward: the dropout of the last forward (train mode), the activation at y = gamma xhat + beta, or at the
     linear output h when there is no normalisation. */
  k->ab.act   = m->cfg.last_no_act && l == m->cfg.nlayers - 1 ? CS_NN_ACT_NONE : m->cfg.act;
  k->ab.keep  = k->drop ? L->keep : NULL;
  k->ab.scale = k->scale;
  k->ab.gamma = m->cfg.norm == CS_NN_NORM_NONE ? NULL : k->gamma;
  k->ab.beta  = m->cfg.norm == CS_NN_NORM_NONE ? NULL : k->beta;
  k->keepg    = m->cfg.norm == CS_NN_NORM_BATCH && pass->train ? PETSC_FALSE : PETSC_TRUE;
}

/* Forward of one hidden block's elementwise part on h[B,O]. Before a BatchNorm the linear map was computed
   without its bias, which cancels in the normalisation: it only shifts the batch mean (running statistics) and,
   in eval mode, the running mean it is compared with. */
static PetscErrorCode BlockForward(CsMLP m, Layer *L, PetscInt l, const CsNNPass *pass, PetscInt B)
{
  PetscInt O = L->nout;
  BlockCtx k;

  PetscFunctionBeginUser;
  BlockCtxInit(&k, m, L, l, pass, B);
  if (m->cfg.norm == CS_NN_NORM_BATCH) {
    float *rm = CsNNParamsData(m->P, L->rm), *rv = CsNNParamsData(m->P, L->rv), *b = CsNNParamsData(m->P, L->b);
    if (pass->train) {
      BlockRun(TaskStats, &k);
      PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, m->dwork, (PetscMPIInt)(2 * O), MPI_DOUBLE, MPI_SUM, pass->comm));
      CsNNBatchNormFinish(L->mean, L->rstd, rm, rv, b, m->dwork, pass->nglobal, O, m->cfg.bn_momentum, m->cfg.norm_eps);
    } else CsNNBatchNormEvalStats(L->mean, L->rstd, rm, rv, b, O, m->cfg.norm_eps);
  } else if (m->cfg.norm == CS_NN_NORM_LAYER) CsNNRowStats(L->mean, L->rstd, L->h, B, O, m->cfg.norm_eps);
  BlockRun(TaskApply, &k);
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
    if (L->hidden && m->cfg.norm == CS_NN_NORM_BATCH) b = NULL; /* see BlockForward */
    if (l == 0 && m->cfg.sparse_input) cs_linear_sparse_forward(L->h, X, w, b, L->nout);
    else cs_linear_forward(L->h, l ? m->L[l - 1].a : x, w, b, B, L->nin, L->nout);
    if (L->hidden) PetscCall(BlockForward(m, L, l, pass, B));
  }
  *out = m->L[n - 1].a;
  PetscFunctionReturn(0);
}

/* Backward of one hidden block's elementwise part: L->g holds d(out); on return it holds d(h), and the norm
   parameters and the linear bias have their gradients. */
static PetscErrorCode BlockBackward(CsMLP m, Layer *L, PetscInt l, const CsNNPass *pass, PetscInt B)
{
  PetscInt O = L->nout;
  double  *s = m->dwork;
  BlockCtx k;

  PetscFunctionBeginUser;
  BlockCtxInit(&k, m, L, l, pass, B);
  /* v = d(out) act'(y) dropout; sums of v (beta, or the bias without normalisation) and v xhat (gamma): the local
     parameter gradients. */
  BlockRun(TaskBackSums, &k);
  if (m->cfg.norm == CS_NN_NORM_NONE) {
    for (PetscInt j = 0; j < O; j++) k.db[j] += (float)s[j];
    PetscFunctionReturn(0);
  }
  {
    float *dgam = CsNNParamsGrad(m->P, L->gam), *dbet = CsNNParamsGrad(m->P, L->bet);
    for (PetscInt j = 0; j < O; j++) dbet[j] += (float)s[j], dgam[j] += (float)s[O + j];
  }
  if (m->cfg.norm == CS_NN_NORM_LAYER) CsNNLayerNormBackApply(L->g, PETSC_FALSE, NULL, NULL, k.db, L->g, L->h, NULL, L->rstd, k.gamma, B, O);
  else {
    if (pass->train) PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, s, (PetscMPIInt)(2 * O), MPI_DOUBLE, MPI_SUM, pass->comm));
    BlockRun(TaskBackApply, &k);
  }
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
    float       *dw = CsNNParamsGrad(m->P, L->w);
    if (L->hidden) PetscCall(BlockBackward(m, L, l, pass, B));
    else {
      BlockCtx k;
      BlockCtxInit(&k, m, L, l, pass, B);
      BlockRun(TaskColSum, &k);
    }
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

PetscErrorCode CsMLPView(CsMLP m, PetscViewer v)
{
  char   sizes[512] = "";
  size_t len;

  PetscFunctionBeginUser;
  for (PetscInt l = 0; l <= m->cfg.nlayers; l++) {
    PetscCall(PetscStrlen(sizes, &len));
    PetscCall(PetscSNPrintf(sizes + len, sizeof(sizes) - len, "%s%" PetscInt_FMT, l ? " -> " : "", m->sizes[l]));
  }
  PetscCall(PetscViewerASCIIPrintf(v, "MLP %s: %s; blocks: linear, %s norm, %s, dropout %g%s%s\n", m->name, sizes, CsNNNorms[m->cfg.norm],
                                   CsNNActs[m->cfg.act], m->cfg.dropout, m->cfg.linear_last ? "; last layer linear" : "",
                                   m->cfg.sparse_input ? "; sparse input" : ""));
  PetscFunctionReturn(0);
}

PetscErrorCode CsMLPDestroy(CsMLP *mlp)
{
  PetscFunctionBeginUser;
  if (!*mlp) PetscFunctionReturn(0);
  PetscCall(CsNNFree(&(*mlp)->arena));
  PetscCall(PetscFree((*mlp)->L));
  PetscCall(PetscFree((*mlp)->sizes));
  PetscCall(PetscFree(*mlp));
  PetscFunctionReturn(0);
}
