/* Adam / AdamW with clipping and learning-rate schedules on the parameter buffer. See include/cellshift/nn.h. */
#include "nnimpl.h"
#include <cellshift/h5util.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  #include <immintrin.h>
  #define CS_HAVE_AVX512_PATH 1
#endif

const char *const CsNNOptimTypes[] = {"adam", "adamw", "CsNNOptimType", "CS_NN_OPTIM_", NULL};
const char *const CsNNDecays[]     = {"none", "cosine", "step", "CsNNDecay", "CS_NN_DECAY_", NULL};

PetscErrorCode CsNNOptimCreate(MPI_Comm comm, CsNNOptim *opt)
{
  CsNNOptim o;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&o));
  o->comm  = comm;
  o->type  = CS_NN_OPTIM_ADAM;
  o->lr    = 1e-3, o->beta1 = 0.9, o->beta2 = 0.999, o->eps = 1e-8;
  o->decay = CS_NN_DECAY_NONE, o->step_size = 1, o->gamma = 0.1;
  *opt     = o;
  PetscFunctionReturn(0);
}

PetscErrorCode CsNNOptimSetOptionsPrefix(CsNNOptim opt, const char prefix[])
{
  PetscFunctionBeginUser;
  PetscCall(PetscStrncpy(opt->prefix, prefix ? prefix : "", sizeof(opt->prefix)));
  PetscFunctionReturn(0);
}

PetscErrorCode CsNNOptimSetFromOptions(CsNNOptim opt)
{
  PetscFunctionBeginUser;
  PetscOptionsBegin(opt->comm, opt->prefix[0] ? opt->prefix : NULL, "Optimiser (Adam/AdamW, clipping, schedule)", "CsNNOptim");
  PetscCall(PetscOptionsEnum("-optim", "Optimiser", "CsNNOptimSetFromOptions", CsNNOptimTypes, (PetscEnum)opt->type,
                             (PetscEnum *)&opt->type, NULL));
  PetscCall(PetscOptionsReal("-lr", "Peak learning rate", "CsNNOptimSetFromOptions", opt->lr, &opt->lr, NULL));
  PetscCall(PetscOptionsReal("-beta1", "Adam beta1", "CsNNOptimSetFromOptions", opt->beta1, &opt->beta1, NULL));
  PetscCall(PetscOptionsReal("-beta2", "Adam beta2", "CsNNOptimSetFromOptions", opt->beta2, &opt->beta2, NULL));
  PetscCall(PetscOptionsReal("-adam_eps", "Adam epsilon", "CsNNOptimSetFromOptions", opt->eps, &opt->eps, NULL));
  PetscCall(PetscOptionsReal("-weight_decay", "Weight decay (L2 for adam, decoupled for adamw)", "CsNNOptimSetFromOptions",
                             opt->weight_decay, &opt->weight_decay, NULL));
  PetscCall(PetscOptionsReal("-clip_norm", "Clip the gradient to this global 2-norm (0 = off)", "CsNNOptimSetFromOptions",
                             opt->clip, &opt->clip, NULL));
  PetscCall(PetscOptionsReal("-clip_value", "Clamp every gradient entry to [-value, value] (torch clip_grad_value_; 0 = off)", "CsNNOptimSetFromOptions",
                             opt->clip_value, &opt->clip_value, NULL));
  PetscCall(PetscOptionsInt("-lr_warmup", "Linear warm-up steps", "CsNNOptimSetFromOptions", opt->warmup, &opt->warmup, NULL));
  PetscCall(PetscOptionsEnum("-lr_decay", "Learning-rate decay after warm-up", "CsNNOptimSetFromOptions", CsNNDecays,
                             (PetscEnum)opt->decay, (PetscEnum *)&opt->decay, NULL));
  PetscCall(PetscOptionsInt("-lr_decay_steps", "Cosine: step at which the rate reaches lr_min", "CsNNOptimSetFromOptions",
                            opt->decay_steps, &opt->decay_steps, NULL));
  PetscCall(PetscOptionsReal("-lr_min", "Cosine: final learning rate", "CsNNOptimSetFromOptions", opt->lr_min, &opt->lr_min, NULL));
  PetscCall(PetscOptionsInt("-lr_step_size", "Step decay: steps between decays", "CsNNOptimSetFromOptions", opt->step_size,
                            &opt->step_size, NULL));
  PetscCall(PetscOptionsInt("-lr_step_epochs", "Step decay: epochs between decays (overrides -lr_step_size when positive)", "CsNNOptimSetFromOptions",
                            opt->step_epochs, &opt->step_epochs, NULL));
  PetscCall(PetscOptionsReal("-lr_gamma", "Step decay: factor per decay", "CsNNOptimSetFromOptions", opt->gamma, &opt->gamma, NULL));
  PetscOptionsEnd();
  CsCheckAll(opt->comm, opt->lr > 0 && opt->beta1 >= 0 && opt->beta1 < 1 && opt->beta2 >= 0 && opt->beta2 < 1 && opt->eps > 0,
             "-%slr must be positive, -%sbeta1 and -%sbeta2 in [0, 1) and -%sadam_eps positive", opt->prefix, opt->prefix,
             opt->prefix, opt->prefix);
  CsCheckAll(opt->comm, opt->weight_decay >= 0 && opt->clip >= 0 && opt->clip_value >= 0 && opt->warmup >= 0 && opt->step_size > 0 && opt->step_epochs >= 0 && opt->lr_min >= 0,
             "-%sweight_decay, -%sclip_norm, -%sclip_value, -%slr_warmup, -%slr_step_epochs and -%slr_min must be non-negative and -%slr_step_size positive",
             opt->prefix, opt->prefix, opt->prefix, opt->prefix, opt->prefix, opt->prefix, opt->prefix);
  PetscFunctionReturn(0);
}

PetscErrorCode CsNNOptimSetUp(CsNNOptim opt, size_t n)
{
  PetscFunctionBeginUser;
  if (opt->setup && opt->n == n) PetscFunctionReturn(0);
  PetscCall(CsNNFree(&opt->m));
  PetscCall(CsNNFree(&opt->v));
  opt->n = n;
  PetscCall(CsNNMalloc(sizeof(float) * (n ? n : 16), &opt->m));
  PetscCall(CsNNMalloc(sizeof(float) * (n ? n : 16), &opt->v));
  opt->t     = 0;
  opt->setup = PETSC_TRUE;
  PetscFunctionReturn(0);
}

double CsNNOptimLR(CsNNOptim opt, int64_t t)
{
  double s;
  if (opt->warmup > 0 && t <= opt->warmup) return opt->lr * (double)t / (double)opt->warmup;
  s = (double)(t - opt->warmup);
  switch (opt->decay) {
  case CS_NN_DECAY_COSINE: {
    double S = (double)(opt->decay_steps - opt->warmup);
    if (S <= 0) return opt->lr;
    return opt->lr_min + 0.5 * (opt->lr - opt->lr_min) * (1.0 + cos(M_PI * PetscMin(s, S) / S));
  }
  case CS_NN_DECAY_STEP:
    return opt->lr * pow(opt->gamma, floor(s / (double)opt->step_size));
  default:
    return opt->lr;
  }
}

/* torch.optim.Adam's single-tensor update, operation for operation:
   m = b1 m + (1 - b1) g;  v = b2 v + ((1 - b2) g) g;  (1 - b) rounded from double as torch does;
   p -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps). g is first multiplied by the clipping factor (1 without
   clipping: exact) and, with -clip_value, clamped to [-value, value], so clipping costs no pass of its own over g. In the same single pass over p, g, m and v
   (the step is bound by streaming them) the gradient is zeroed and its sum of squares taken in the order of
   CsNNSqDiff (element i of the chunk into accumulator i mod 8 while i < n - n mod 8, the rest into the tail, then
   the tail plus the accumulators in order), so that the trainer's divergence check needs no pass of its own and
   gets the same bits as CsNNSqDiff over the chunk.
   sqrtf keeps errno semantics in this build, which stops the compiler from vectorising the loop, so the AVX-512
   and AVX2 paths are written with intrinsics (same operations, no FMA: bit-identical to the scalar loop). */
typedef struct {
  float     b1, omb1, b2, omb2, step, bc2s, eps, l2, decay, scale;
  float     cv;   /* clamp of the scaled gradient (clipv) */
  PetscBool clipv;
} AdamCoef;

/* Elements [i0, n) of a chunk of n; acc and tail as in CsNNSqDiff. */
static void AdamUpdateScalar(float *p, float *g, float *m, float *v, size_t i0, size_t n, const AdamCoef *c, double acc[8], double *tail)
{
  size_t n8 = n / 8 * 8;
  for (size_t i = i0; i < n; i++) {
    float  g0 = g[i];
    double q  = (double)g0 * g0;
    if (i < n8) acc[i % 8] += q;
    else *tail += q;
    float gc = g0 * c->scale;
    if (c->clipv) gc = gc > c->cv ? c->cv : gc < -c->cv ? -c->cv : gc;
    float pi = p[i] * c->decay, gi = gc + c->l2 * pi;
    float mi = m[i] * c->b1 + c->omb1 * gi;
    float vi = v[i] * c->b2 + c->omb2 * gi * gi;
    m[i]     = mi;
    v[i]     = vi;
    p[i]     = pi - c->step * (mi / (sqrtf(vi) / c->bc2s + c->eps));
    g[i]     = 0;
  }
}

#if defined(CS_HAVE_AVX512_PATH)
__attribute__((target("avx512f"))) static void AdamUpdateAVX512(float *p, float *g, float *m, float *v, size_t n, const AdamCoef *c,
                                                                double acc[8], double *tail)
{
  const __m512 b1 = _mm512_set1_ps(c->b1), omb1 = _mm512_set1_ps(c->omb1), b2 = _mm512_set1_ps(c->b2), omb2 = _mm512_set1_ps(c->omb2);
  const __m512 step = _mm512_set1_ps(c->step), bc2s = _mm512_set1_ps(c->bc2s), eps = _mm512_set1_ps(c->eps);
  const __m512 l2 = _mm512_set1_ps(c->l2), decay = _mm512_set1_ps(c->decay), scale = _mm512_set1_ps(c->scale), zero = _mm512_setzero_ps();
  const __m512 cv = _mm512_set1_ps(c->cv), mcv = _mm512_set1_ps(-c->cv);
  __m512d      sq = _mm512_loadu_pd(acc);
  size_t       i  = 0;
  for (; i + 16 <= n; i += 16) {
    __m512  g0 = _mm512_loadu_ps(g + i);
    __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(g0));
    __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(g0), 1)));
    sq         = _mm512_add_pd(sq, _mm512_mul_pd(lo, lo)); /* elements i .. i + 7 into accumulators 0 .. 7 */
    sq         = _mm512_add_pd(sq, _mm512_mul_pd(hi, hi));
    __m512 pi  = _mm512_mul_ps(_mm512_loadu_ps(p + i), decay);
    __m512 gc  = _mm512_mul_ps(g0, scale);
    if (c->clipv) gc = _mm512_max_ps(_mm512_min_ps(gc, cv), mcv);
    __m512 gi  = _mm512_add_ps(gc, _mm512_mul_ps(l2, pi));
    __m512 mi  = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(m + i), b1), _mm512_mul_ps(omb1, gi));
    __m512 vi  = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(v + i), b2), _mm512_mul_ps(_mm512_mul_ps(omb2, gi), gi));
    __m512 dn  = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), bc2s), eps);
    _mm512_storeu_ps(m + i, mi);
    _mm512_storeu_ps(v + i, vi);
    _mm512_storeu_ps(p + i, _mm512_sub_ps(pi, _mm512_mul_ps(step, _mm512_div_ps(mi, dn))));
    _mm512_storeu_ps(g + i, zero);
  }
  _mm512_storeu_pd(acc, sq);
  AdamUpdateScalar(p, g, m, v, i, n, c, acc, tail);
}

/* The same with 8 lanes: elements i .. i + 3 and i + 4 .. i + 7 of g into accumulators 0 .. 3 and 4 .. 7. */
__attribute__((target("avx2"))) static void AdamUpdateAVX2(float *p, float *g, float *m, float *v, size_t n, const AdamCoef *c, double acc[8],
                                                           double *tail)
{
  const __m256 b1 = _mm256_set1_ps(c->b1), omb1 = _mm256_set1_ps(c->omb1), b2 = _mm256_set1_ps(c->b2), omb2 = _mm256_set1_ps(c->omb2);
  const __m256 step = _mm256_set1_ps(c->step), bc2s = _mm256_set1_ps(c->bc2s), eps = _mm256_set1_ps(c->eps);
  const __m256 l2 = _mm256_set1_ps(c->l2), decay = _mm256_set1_ps(c->decay), scale = _mm256_set1_ps(c->scale), zero = _mm256_setzero_ps();
  const __m256 cv = _mm256_set1_ps(c->cv), mcv = _mm256_set1_ps(-c->cv);
  __m256d      sq0 = _mm256_loadu_pd(acc), sq1 = _mm256_loadu_pd(acc + 4);
  size_t       i   = 0;
  for (; i + 8 <= n; i += 8) {
    __m256  g0 = _mm256_loadu_ps(g + i);
    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(g0)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(g0, 1));
    sq0        = _mm256_add_pd(sq0, _mm256_mul_pd(lo, lo));
    sq1        = _mm256_add_pd(sq1, _mm256_mul_pd(hi, hi));
    __m256 pi  = _mm256_mul_ps(_mm256_loadu_ps(p + i), decay);
    __m256 gc  = _mm256_mul_ps(g0, scale);
    if (c->clipv) gc = _mm256_max_ps(_mm256_min_ps(gc, cv), mcv);
    __m256 gi = _mm256_add_ps(gc, _mm256_mul_ps(l2, pi));
    __m256 mi = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(m + i), b1), _mm256_mul_ps(omb1, gi));
    __m256 vi = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(v + i), b2), _mm256_mul_ps(_mm256_mul_ps(omb2, gi), gi));
    __m256 dn = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), bc2s), eps);
    _mm256_storeu_ps(m + i, mi);
    _mm256_storeu_ps(v + i, vi);
    _mm256_storeu_ps(p + i, _mm256_sub_ps(pi, _mm256_mul_ps(step, _mm256_div_ps(mi, dn))));
    _mm256_storeu_ps(g + i, zero);
  }
  _mm256_storeu_pd(acc, sq0), _mm256_storeu_pd(acc + 4, sq1);
  AdamUpdateScalar(p, g, m, v, i, n, c, acc, tail);
}
#endif

typedef struct {
  float          *p, *g, *m, *v;
  size_t          n;
  const AdamCoef *c;
  double          sq[64];    /* per-thread sums of squares of g (clipping) */
  double          gsq[64];   /* the same, taken by the update pass */
  float           scale;
} AdamCtx;

static void TaskAdam(void *ctx, int t, int nt)
{
  AdamCtx *a = (AdamCtx *)ctx;
  size_t   lo, hi;
  double   acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, s = 0;
  CsPoolChunk(a->n, t, nt, 16, &lo, &hi);
  if (lo >= hi) return;
#if defined(CS_HAVE_AVX512_PATH)
  if (CsNNHaveAVX512()) AdamUpdateAVX512(a->p + lo, a->g + lo, a->m + lo, a->v + lo, hi - lo, a->c, acc, &s);
  else if (CsNNHaveAVX2()) AdamUpdateAVX2(a->p + lo, a->g + lo, a->m + lo, a->v + lo, hi - lo, a->c, acc, &s);
  else
#endif
    AdamUpdateScalar(a->p + lo, a->g + lo, a->m + lo, a->v + lo, 0, hi - lo, a->c, acc, &s);
  for (int l = 0; l < 8; l++) s += acc[l];
  a->gsq[t] = s;
}

static void TaskSumSq(void *ctx, int t, int nt)
{
  AdamCtx *a = (AdamCtx *)ctx;
  size_t   lo, hi;
  CsPoolChunk(a->n, t, nt, 16, &lo, &hi);
  a->sq[t] = lo < hi ? CsNNSqDiff(NULL, PETSC_FALSE, a->g + lo, NULL, hi - lo, 0) : 0;
}

PetscErrorCode CsNNOptimStep(CsNNOptim opt, CsNNParams P)
{
  double lr, bc1, bc2;

  PetscFunctionBeginUser;
  PetscCheck(opt->setup && opt->n == P->n, PETSC_COMM_SELF, PETSC_ERR_ORDER, "the optimiser is not set up for this parameter buffer");
  PetscCall(PetscLogEventBegin(CS_EVENT_OPTIM, 0, 0, 0, 0));
  opt->t++;
  lr = opt->last_lr = CsNNOptimLR(opt, opt->t);
  {
    AdamCoef c;
    AdamCtx  a;
    size_t   lo = 0, hi = P->n;
    float   *gs = P->g;
    /* Sharded: this rank updates its slice from the reduced slice gradient, then the parameters are gathered. */
    PetscBool sharded = CsNNReducerSharded(opt->reducer, &lo, &hi, &gs);
    PetscCall(PetscMemzero(&a, sizeof(a)));
    a.p = P->p + lo, a.g = gs, a.m = opt->m + lo, a.v = opt->v + lo, a.n = hi - lo, a.c = &c;
    c.scale = 1.0f;
    c.clipv = (PetscBool)(opt->clip_value > 0), c.cv = (float)opt->clip_value;
    if (opt->clip > 0) {
      /* torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1. */
      double norm = 0;
      CsPoolRun(TaskSumSq, &a);
      for (int t = 0; t < CsPoolThreads(); t++) norm += a.sq[t];
      if (sharded) PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &norm, 1, MPI_DOUBLE, MPI_SUM, CsNNReducerComm(opt->reducer)));
      opt->last_norm = norm = sqrt(norm);
      if (opt->clip / (norm + 1e-6) < 1) c.scale = (float)(opt->clip / (norm + 1e-6));
    }
    bc1 = 1 - pow(opt->beta1, (double)opt->t);
    bc2 = 1 - pow(opt->beta2, (double)opt->t);
    c.b1 = (float)opt->beta1, c.omb1 = (float)(1 - opt->beta1), c.b2 = (float)opt->beta2, c.omb2 = (float)(1 - opt->beta2);
    c.step = (float)(lr / bc1), c.bc2s = (float)sqrt(bc2), c.eps = (float)opt->eps;
    c.l2    = opt->type == CS_NN_OPTIM_ADAM ? (float)opt->weight_decay : 0.0f;
    c.decay = opt->type == CS_NN_OPTIM_ADAMW ? (float)(1 - lr * opt->weight_decay) : 1.0f;
    CsPoolRun(TaskAdam, &a);
    opt->last_sumsq = 0;
    for (int t = 0; t < CsPoolThreads(); t++) opt->last_sumsq += a.gsq[t];
    if (sharded) {
      PetscCall(CsNNReducerAllgather(opt->reducer, P->p));
      opt->partial = PETSC_TRUE;
    }
  }
  PetscCall(PetscLogEventEnd(CS_EVENT_OPTIM, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

PetscErrorCode CsNNOptimSetReducer(CsNNOptim opt, CsNNReducer r)
{
  PetscFunctionBeginUser;
  opt->reducer = r;
  if (r) CsNNReducerAttach(r);
  PetscFunctionReturn(0);
}

PetscErrorCode CsNNOptimGather(CsNNOptim opt)
{
  PetscFunctionBeginUser;
  if (opt->partial) {
    PetscCall(CsNNReducerAllgather(opt->reducer, opt->m));
    PetscCall(CsNNReducerAllgather(opt->reducer, opt->v));
    opt->partial = PETSC_FALSE;
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsNNOptimSave(CsNNOptim opt, CsNNParams P, hid_t group)
{
  hid_t g;

  PetscFunctionBeginUser;
  PetscCheck(!opt->partial, PETSC_COMM_SELF, PETSC_ERR_ORDER, "sharded optimiser state: call CsNNOptimGather() on every rank before saving it");
  PetscCall(CsH5WriteAttrInt64(group, "step", opt->t));
  H5Call(g = H5Gcreate2(group, "m", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "cannot create the optimiser group m");
  PetscCall(CsNNParamsSaveLike(P, g, opt->m));
  H5Call(H5Gclose(g), "cannot close the optimiser group m");
  H5Call(g = H5Gcreate2(group, "v", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "cannot create the optimiser group v");
  PetscCall(CsNNParamsSaveLike(P, g, opt->v));
  H5Call(H5Gclose(g), "cannot close the optimiser group v");
  PetscFunctionReturn(0);
}

PetscErrorCode CsNNOptimLoad(CsNNOptim opt, CsNNParams P, hid_t group, const char what[])
{
  hid_t   g;
  int64_t t;

  PetscFunctionBeginUser;
  PetscCall(CsNNOptimSetUp(opt, P->n));
  PetscCall(CsH5ReadAttrInt64(group, "step", &t));
  H5Call(g = H5Gopen2(group, "m", H5P_DEFAULT), "%s: no optimiser group m", what);
  PetscCall(CsNNParamsLoadLike(P, g, what, opt->m));
  H5Call(H5Gclose(g), "%s: cannot close the optimiser group m", what);
  H5Call(g = H5Gopen2(group, "v", H5P_DEFAULT), "%s: no optimiser group v", what);
  PetscCall(CsNNParamsLoadLike(P, g, what, opt->v));
  H5Call(H5Gclose(g), "%s: cannot close the optimiser group v", what);
  opt->t       = t;
  opt->partial = PETSC_FALSE;
  PetscFunctionReturn(0);
}

PetscErrorCode CsNNOptimDestroy(CsNNOptim *opt)
{
  PetscFunctionBeginUser;
  if (!*opt) PetscFunctionReturn(0);
  PetscCall(CsNNFree(&(*opt)->m));
  PetscCall(CsNNFree(&(*opt)->v));
  PetscCall(PetscFree(*opt));
  PetscFunctionReturn(0);
}
