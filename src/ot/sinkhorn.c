/* Log-domain Sinkhorn, balanced and unbalanced, with the cost stored or recomputed block by block (see
   include/cellshift/ot.h). The cost blocks and log-sum-exps are src/nn/pairwise.c's kernels. */
#include <cellshift/ot.h>
#include <cellshift/nn.h>
#include <cellshift/linalg.h>
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  #include <immintrin.h>
  #define CS_HAVE_AVX512_PATH 1
#endif

const char *const CsOTModes[] = {"auto", "rows", "stream", "blockcyclic", "CsOTMode", "CS_OT_MODE_", NULL};

PetscLogEvent CS_EVENT_OT_SOLVE, CS_EVENT_OT_SWEEP, CS_EVENT_OT_KERNEL, CS_EVENT_OT_PROJECT;

/* Cost blocks of the streamed sweeps: 128 x 1024 floats (512 KiB) stay in L2 between the sgemm and the
   log-sum-exp. Fixed in global indices, so a point's sums are split the same way at any number of ranks. */
#define RB 128
#define CB 1024
/* Largest scaled cost / eps float32 can carry: beyond, g_j/eps - C_ij/eps cancels to noise. */
#define MAX_COST_OVER_EPS 1e6

static PetscErrorCode RegisterEvents(void)
{
  static PetscBool done = PETSC_FALSE;

  PetscFunctionBeginUser;
  if (done) PetscFunctionReturn(0);
  PetscCall(PetscLogEventRegister("CsOTSinkhorn", CS_CLASSID, &CS_EVENT_OT_SOLVE));
  PetscCall(PetscLogEventRegister("CsOTSweep", CS_CLASSID, &CS_EVENT_OT_SWEEP));
  PetscCall(PetscLogEventRegister("CsOTKernel", CS_CLASSID, &CS_EVENT_OT_KERNEL));
  PetscCall(PetscLogEventRegister("CsOTProject", CS_CLASSID, &CS_EVENT_OT_PROJECT));
  done = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode CsOTOptionsDefaults(CsOTOptions *o)
{
  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(o, sizeof(*o)));
  o->epsilon     = 0.05;
  o->tau_a       = 1;
  o->tau_b       = 1;
  o->tol         = 1e-4;
  o->max_iter    = 1000;
  o->eps_scaling = PETSC_TRUE;
  o->eps_decay   = 0.8;
  o->scale       = CS_OT_SCALE_MEAN;
  o->mode        = CS_OT_MODE_AUTO;
  o->check_every = 1;
  o->kernel_bf16_refine = 1e-3;
  PetscFunctionReturn(0);
}

typedef struct {
  MPI_Comm     comm;
  PetscMPIInt  size, rank;
  PetscInt     n, m, d, nloc, mloc, n0, m0;
  PetscMPIInt *ncnt, *ndsp, *mcnt, *mdsp; /* counts/offsets of points over the ranks */
  const float *X, *Y;                     /* all points (gathered; the caller's arrays on one rank) */
  float       *Xall, *Yall;               /* owned copies, when gathered */
  const float *xl, *yl;                   /* this rank's points */
  float       *Crow;                      /* stored mode: the rank's rows of the kernel (first the distances; with
                                             kernel_bf16 they stay the distances) */
  uint16_t    *Kh;                        /* kernel_bf16: the kernel rows in bfloat16 */
  float       *D, *work, *part;           /* block scratch */
  PetscBool    stream;
} Ctx;

/* acc = log(exp(acc) + exp(v)) */
static inline double LogAdd(double acc, double v)
{
  if (v == -INFINITY) return acc;
  if (acc == -INFINITY) return v;
  return acc > v ? acc + log1p(exp(v - acc)) : v + log1p(exp(acc - v));
}

/* Streamed log-domain sweeps. L_i = log sum_j exp(gs_j + s D_ij) for the rank's rows. */
static void RowLse(Ctx *c, const float *gs, float s, double *L)
{
  for (PetscInt i = 0; i < c->nloc; i++) L[i] = -INFINITY;
  for (PetscInt r0 = 0; r0 < c->nloc; r0 += RB) {
    PetscInt h = PetscMin(RB, c->nloc - r0);
    for (PetscInt c0 = 0; c0 < c->m; c0 += CB) {
      PetscInt w = PetscMin(CB, c->m - c0);
      cs_pairwise_sqdist_forward(c->D, c->xl + (size_t)r0 * c->d, c->Y + (size_t)c0 * c->d, h, w, c->d, c->work);
      cs_logsumexp_rows(c->part, c->D, NULL, gs + c0, s, h, w);
      for (PetscInt i = 0; i < h; i++) L[r0 + i] = LogAdd(L[r0 + i], c->part[i]);
    }
  }
}

/* L_j = log sum_i exp(fs_i + s D_ij) for the rank's columns (row blocks of CB at global multiples). */
static void ColLse(Ctx *c, const float *fs, float s, double *L)
{
  for (PetscInt j = 0; j < c->mloc; j++) L[j] = -INFINITY;
  for (PetscInt c0 = 0; c0 < c->mloc; c0 += RB) {
    PetscInt w = PetscMin(RB, c->mloc - c0);
    for (PetscInt r0 = 0; r0 < c->n; r0 += CB) {
      PetscInt h = PetscMin(CB, c->n - r0);
      cs_pairwise_sqdist_forward(c->D, c->X + (size_t)r0 * c->d, c->yl + (size_t)c0 * c->d, h, w, c->d, c->work);
      cs_logsumexp_cols(c->part, c->D, fs + r0, NULL, s, h, w);
      for (PetscInt j = 0; j < w; j++) L[c0 + j] = LogAdd(L[c0 + j], c->part[j]);
    }
  }
}

/* Largest squared distance between the rank's rows and all columns. */
static double MaxCost(Ctx *c)
{
  double mx = 0;
  if (!c->stream) {
    for (size_t k = 0; k < (size_t)c->nloc * c->m; k++) mx = PetscMax(mx, c->Crow[k]);
    return mx;
  }
  for (PetscInt r0 = 0; r0 < c->nloc; r0 += RB) {
    PetscInt h = PetscMin(RB, c->nloc - r0);
    for (PetscInt c0 = 0; c0 < c->m; c0 += CB) {
      PetscInt w = PetscMin(CB, c->m - c0);
      cs_pairwise_sqdist_forward(c->D, c->xl + (size_t)r0 * c->d, c->Y + (size_t)c0 * c->d, h, w, c->d, c->work);
      for (size_t k = 0; k < (size_t)h * w; k++) mx = PetscMax(mx, c->D[k]);
    }
  }
  return mx;
}

/* Plan rows and barycentres of the rank's sources: P_ij = exp(f_i/eps + gs_j + s D_ij). plan [nloc, m] (one rank
   only), bary [nloc, d]; adds <P, C'> and sum P to cost/mass. */
static PetscErrorCode Project(Ctx *c, const double *f, const float *gs, float s, double eps, double cscale, float *plan, float *bary,
                              double *cost, double *mass)
{
  float  *W, *B = NULL;
  double *rs, *gd;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc3((size_t)RB * CB, &W, RB, &rs, c->m, &gd));
  for (PetscInt j = 0; j < c->m; j++) gd[j] = gs[j];
  if (bary) PetscCall(PetscMalloc1((size_t)RB * c->d, &B));
  for (PetscInt r0 = 0; r0 < c->nloc; r0 += RB) {
    PetscInt h = PetscMin(RB, c->nloc - r0);
    for (PetscInt i = 0; i < h; i++) rs[i] = 0;
    if (B) PetscCall(PetscArrayzero(B, (size_t)h * c->d));
    for (PetscInt c0 = 0; c0 < c->m; c0 += CB) {
      PetscInt     w = PetscMin(CB, c->m - c0), ld;
      const float *Dp;
      if (c->stream) {
        cs_pairwise_sqdist_forward(c->D, c->xl + (size_t)r0 * c->d, c->Y + (size_t)c0 * c->d, h, w, c->d, c->work);
        Dp = c->D, ld = w;
      } else Dp = c->Crow + (size_t)r0 * c->m + c0, ld = c->m;
      for (PetscInt i = 0; i < h; i++) {
        const double fi = f[r0 + i] / eps, ic = 1.0 / cscale;
        const float *Di = Dp + (size_t)i * ld;
        float       *Wi = W + (size_t)i * w;
        double       sr = 0, sc = 0;
        cs_exp_kernel_row(Wi, Di, gd + c0, fi, (double)s, w);
        for (PetscInt j = 0; j < w; j++) sr += Wi[j], sc += (double)Wi[j] * Di[j];
        rs[i] += sr;
        *mass += sr;
        *cost += sc * ic;
        if (plan) PetscCall(PetscArraycpy(plan + (size_t)(r0 + i) * c->m + c0, Wi, w));
      }
      if (B) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, h, c->d, w, 1.0f, W, w, c->Y + (size_t)c0 * c->d, c->d, 1.0f, B, c->d);
    }
    if (B)
      for (PetscInt i = 0; i < h; i++)
        for (PetscInt k = 0; k < c->d; k++) bary[(size_t)(r0 + i) * c->d + k] = rs[i] > 0 ? (float)(B[(size_t)i * c->d + k] / rs[i]) : NAN;
  }
  PetscCall(PetscFree3(W, rs, gd));
  PetscCall(PetscFree(B));
  PetscFunctionReturn(0);
}


/* ------------------------------------------------------------------ stored kernel: stabilised scaling iterations
   The rank's kernel rows K[nloc, m] = exp((f_i + g_j - C_ij) / eps) with the potentials f, g absorbed into it and
   the plan P = diag(u) K diag(v) (Schmitzer's stabilised scaling, POT's sinkhorn_stabilized): the total
   potentials are F = f + eps log u, G = g + eps log v, the same iterates as the log-domain sweeps. One pass over K
   per iteration: row i gives (K v)_i, hence u_i, and adds u_i K_i to K^T u while the row is in L1, so the kernel
   is read once per iteration instead of twice. When |log u| or |log v| passes ABSORB (or eps changes) they are
   absorbed into f, g and K is rebuilt from the cost; the first f_i = min_j C_ij, so that no row of K underflows
   to 0 whatever eps. */
#define ABSORB 20.0
#define KB     16

/* float32 -> bfloat16, rounded to nearest even (the values are finite and positive) */
static inline uint16_t ToBF16(float x)
{
  uint32_t u;
  memcpy(&u, &x, 4);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static inline float FromBF16(uint16_t h)
{
  uint32_t u = (uint32_t)h << 16;
  float    x;
  memcpy(&x, &u, 4);
  return x;
}

/* K = exp((f_i + g_j - C_ij) / eps) from the squared distances; with init, f_i = min_j C_ij first. With a bfloat16
   kernel the float32 distances stay in Crow and only Kh is rewritten. */
static void Rebuild(Ctx *c, double *f, const double *gall, double *ge, double eps, double cscale, PetscBool init)
{
  const PetscInt m = c->m;
  for (PetscInt j = 0; j < m; j++) ge[j] = gall[j] / eps;
  if (!c->Kh) cs_pairwise_sqdist_forward(c->Crow, c->xl, c->Y, c->nloc, m, c->d, c->work);
  for (PetscInt i = 0; i < c->nloc; i++) {
    float *row = c->Crow + (size_t)i * m;
    if (init) {
      float mn = INFINITY;
      for (PetscInt j = 0; j < m; j++) mn = row[j] < mn ? row[j] : mn;
      f[i] = mn / cscale;
    }
    const double fi = f[i] / eps, ie = 1.0 / (eps * cscale);
    for (PetscInt j0 = 0; j0 < m; j0 += CB) { /* pieces of CB columns through the block scratch */
      const PetscInt w = PetscMin(CB, m - j0);
      cs_exp_kernel_row(c->D, row + j0, ge + j0, fi, -ie, w);
      if (c->Kh)
        for (PetscInt j = 0; j < w; j++) c->Kh[(size_t)i * m + j0 + j] = ToBF16(c->D[j]);
      else memcpy(row + j0, c->D, sizeof(float) * (size_t)w);
    }
  }
}

/* The bfloat16 kernel's two products on a block of h rows of length m (the block, 2 h m bytes, stays in L2
   between them): s_k = sum_j K_kj v_j, and w_j += sum_k u_k K_kj. float32 sums in a fixed order, so a row's s
   and the block's contribution to w do not depend on which rank holds the row. */
static void KvBF16Scalar(const uint16_t *K, PetscInt h, PetscInt m, const float *v, float *s)
{
  for (PetscInt k = 0; k < h; k++) {
    const uint16_t *r = K + (size_t)k * m;
    float           a = 0;
    for (PetscInt j = 0; j < m; j++) a += FromBF16(r[j]) * v[j];
    s[k] = a;
  }
}

static void KtuBF16Scalar(const uint16_t *K, PetscInt h, PetscInt m, const float *u, float *w)
{
  for (PetscInt k = 0; k < h; k++) {
    const uint16_t *r = K + (size_t)k * m;
    for (PetscInt j = 0; j < m; j++) w[j] += u[k] * FromBF16(r[j]);
  }
}

#if defined(CS_HAVE_AVX512_PATH)
__attribute__((target("avx512f"))) static inline __m512 LoadBF16(const uint16_t *p)
{
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}

/* four rows at a time (each v vector loaded once for four rows, four independent FMA chains); the scalar tail adds
   the last m mod 16 columns */
__attribute__((target("avx512f"))) static void KvBF16AVX512(const uint16_t *K, PetscInt h, PetscInt m, const float *v, float *s)
{
  const PetscInt m16 = m & ~(PetscInt)15;
  PetscInt       k   = 0;
  for (; k + 4 <= h; k += 4) {
    const uint16_t *r0 = K + (size_t)k * m, *r1 = r0 + m, *r2 = r1 + m, *r3 = r2 + m;
    __m512          a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    PetscInt        j  = 0;
    for (; j < m16; j += 16) {
      const __m512 vj = _mm512_loadu_ps(v + j);
      a0              = _mm512_fmadd_ps(LoadBF16(r0 + j), vj, a0);
      a1              = _mm512_fmadd_ps(LoadBF16(r1 + j), vj, a1);
      a2              = _mm512_fmadd_ps(LoadBF16(r2 + j), vj, a2);
      a3              = _mm512_fmadd_ps(LoadBF16(r3 + j), vj, a3);
    }
    float t0 = _mm512_reduce_add_ps(a0), t1 = _mm512_reduce_add_ps(a1), t2 = _mm512_reduce_add_ps(a2), t3 = _mm512_reduce_add_ps(a3);
    for (; j < m; j++) t0 += FromBF16(r0[j]) * v[j], t1 += FromBF16(r1[j]) * v[j], t2 += FromBF16(r2[j]) * v[j], t3 += FromBF16(r3[j]) * v[j];
    s[k] = t0, s[k + 1] = t1, s[k + 2] = t2, s[k + 3] = t3;
  }
  for (; k < h; k++) {
    const uint16_t *r = K + (size_t)k * m;
    __m512          a = _mm512_setzero_ps();
    PetscInt        j = 0;
    for (; j < m16; j += 16) a = _mm512_fmadd_ps(LoadBF16(r + j), _mm512_loadu_ps(v + j), a);
    float t = _mm512_reduce_add_ps(a);
    for (; j < m; j++) t += FromBF16(r[j]) * v[j];
    s[k] = t;
  }
}

/* w in registers, 64 columns (four independent FMA chains) at a time over the block's rows */
__attribute__((target("avx512f"))) static void KtuBF16AVX512(const uint16_t *K, PetscInt h, PetscInt m, const float *u, float *w)
{
  const PetscInt m64 = m & ~(PetscInt)63, m16 = m & ~(PetscInt)15;
  PetscInt       j   = 0;
  for (; j < m64; j += 64) {
    __m512 a0 = _mm512_loadu_ps(w + j), a1 = _mm512_loadu_ps(w + j + 16), a2 = _mm512_loadu_ps(w + j + 32), a3 = _mm512_loadu_ps(w + j + 48);
    for (PetscInt k = 0; k < h; k++) {
      const __m512    uk = _mm512_set1_ps(u[k]);
      const uint16_t *r  = K + (size_t)k * m + j;
      a0                 = _mm512_fmadd_ps(uk, LoadBF16(r), a0);
      a1                 = _mm512_fmadd_ps(uk, LoadBF16(r + 16), a1);
      a2                 = _mm512_fmadd_ps(uk, LoadBF16(r + 32), a2);
      a3                 = _mm512_fmadd_ps(uk, LoadBF16(r + 48), a3);
    }
    _mm512_storeu_ps(w + j, a0), _mm512_storeu_ps(w + j + 16, a1), _mm512_storeu_ps(w + j + 32, a2), _mm512_storeu_ps(w + j + 48, a3);
  }
  for (; j < m16; j += 16) {
    __m512 a = _mm512_loadu_ps(w + j);
    for (PetscInt k = 0; k < h; k++) a = _mm512_fmadd_ps(_mm512_set1_ps(u[k]), LoadBF16(K + (size_t)k * m + j), a);
    _mm512_storeu_ps(w + j, a);
  }
  for (; j < m; j++) {
    float a = w[j];
    for (PetscInt k = 0; k < h; k++) a += u[k] * FromBF16(K[(size_t)k * m + j]);
    w[j] = a;
  }
}

/* The same with 8 lanes (AVX2 + FMA: x86-64-v3). */
__attribute__((target("avx2,fma"))) static inline __m256 LoadBF16x8(const uint16_t *p)
{
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

__attribute__((target("avx2,fma"))) static inline float Sum8(__m256 a)
{
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  q        = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q        = _mm_add_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}

__attribute__((target("avx2,fma"))) static void KvBF16AVX2(const uint16_t *K, PetscInt h, PetscInt m, const float *v, float *s)
{
  const PetscInt m8 = m & ~(PetscInt)7;
  PetscInt       k  = 0;
  for (; k + 4 <= h; k += 4) {
    const uint16_t *r0 = K + (size_t)k * m, *r1 = r0 + m, *r2 = r1 + m, *r3 = r2 + m;
    __m256          a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    PetscInt        j  = 0;
    for (; j < m8; j += 8) {
      const __m256 vj = _mm256_loadu_ps(v + j);
      a0              = _mm256_fmadd_ps(LoadBF16x8(r0 + j), vj, a0);
      a1              = _mm256_fmadd_ps(LoadBF16x8(r1 + j), vj, a1);
      a2              = _mm256_fmadd_ps(LoadBF16x8(r2 + j), vj, a2);
      a3              = _mm256_fmadd_ps(LoadBF16x8(r3 + j), vj, a3);
    }
    float t0 = Sum8(a0), t1 = Sum8(a1), t2 = Sum8(a2), t3 = Sum8(a3);
    for (; j < m; j++) t0 += FromBF16(r0[j]) * v[j], t1 += FromBF16(r1[j]) * v[j], t2 += FromBF16(r2[j]) * v[j], t3 += FromBF16(r3[j]) * v[j];
    s[k] = t0, s[k + 1] = t1, s[k + 2] = t2, s[k + 3] = t3;
  }
  for (; k < h; k++) {
    const uint16_t *r = K + (size_t)k * m;
    __m256          a = _mm256_setzero_ps();
    PetscInt        j = 0;
    for (; j < m8; j += 8) a = _mm256_fmadd_ps(LoadBF16x8(r + j), _mm256_loadu_ps(v + j), a);
    float t = Sum8(a);
    for (; j < m; j++) t += FromBF16(r[j]) * v[j];
    s[k] = t;
  }
}

/* w in registers, 32 columns (four independent FMA chains) at a time over the block's rows */
__attribute__((target("avx2,fma"))) static void KtuBF16AVX2(const uint16_t *K, PetscInt h, PetscInt m, const float *u, float *w)
{
  const PetscInt m32 = m & ~(PetscInt)31, m8 = m & ~(PetscInt)7;
  PetscInt       j   = 0;
  for (; j < m32; j += 32) {
    __m256 a0 = _mm256_loadu_ps(w + j), a1 = _mm256_loadu_ps(w + j + 8), a2 = _mm256_loadu_ps(w + j + 16), a3 = _mm256_loadu_ps(w + j + 24);
    for (PetscInt k = 0; k < h; k++) {
      const __m256    uk = _mm256_set1_ps(u[k]);
      const uint16_t *r  = K + (size_t)k * m + j;
      a0                 = _mm256_fmadd_ps(uk, LoadBF16x8(r), a0);
      a1                 = _mm256_fmadd_ps(uk, LoadBF16x8(r + 8), a1);
      a2                 = _mm256_fmadd_ps(uk, LoadBF16x8(r + 16), a2);
      a3                 = _mm256_fmadd_ps(uk, LoadBF16x8(r + 24), a3);
    }
    _mm256_storeu_ps(w + j, a0), _mm256_storeu_ps(w + j + 8, a1), _mm256_storeu_ps(w + j + 16, a2), _mm256_storeu_ps(w + j + 24, a3);
  }
  for (; j < m8; j += 8) {
    __m256 a = _mm256_loadu_ps(w + j);
    for (PetscInt k = 0; k < h; k++) a = _mm256_fmadd_ps(_mm256_set1_ps(u[k]), LoadBF16x8(K + (size_t)k * m + j), a);
    _mm256_storeu_ps(w + j, a);
  }
  for (; j < m; j++) {
    float a = w[j];
    for (PetscInt k = 0; k < h; k++) a += u[k] * FromBF16(K[(size_t)k * m + j]);
    w[j] = a;
  }
}
#endif

static void KvBF16(const uint16_t *K, PetscInt h, PetscInt m, const float *v, float *s)
{
#if defined(CS_HAVE_AVX512_PATH)
  if (CsHaveAVX512()) {
    KvBF16AVX512(K, h, m, v, s);
    return;
  }
  if (CsHaveAVX2()) {
    KvBF16AVX2(K, h, m, v, s);
    return;
  }
#endif
  KvBF16Scalar(K, h, m, v, s);
}

static void KtuBF16(const uint16_t *K, PetscInt h, PetscInt m, const float *u, float *w)
{
#if defined(CS_HAVE_AVX512_PATH)
  if (CsHaveAVX512()) {
    KtuBF16AVX512(K, h, m, u, w);
    return;
  }
  if (CsHaveAVX2()) {
    KtuBF16AVX2(K, h, m, u, w);
    return;
  }
#endif
  KtuBF16Scalar(K, h, m, u, w);
}

static PetscErrorCode Gather(Ctx *c, const double *loc, PetscInt nl, const PetscMPIInt *cnt, const PetscMPIInt *dsp, float *all, float *tmp,
                             double scale)
{
  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < nl; i++) tmp[i] = (float)(loc[i] * scale);
  if (c->size == 1) PetscCall(PetscArraycpy(all, tmp, nl));
  else PetscCallMPI(MPI_Allgatherv(tmp, (PetscMPIInt)nl, MPI_FLOAT, all, cnt, dsp, MPI_FLOAT, c->comm));
  PetscFunctionReturn(0);
}


/* The stored-kernel iterations (above): on return f [nloc] and g [mloc] are the total potentials F, G, gs [m] is
   G / eps at the final eps, and *eps, *it, *err, *conv as in the log-domain loop. */
static PetscErrorCode ScalingIterations(Ctx *c, const CsOTOptions *o, const char *name, double cscale, double eps0, double sa,
                                        const double *loga, const double *logbl, double *f, double *g, float *gs, double *epsp,
                                        PetscInt *itp, double *errp, PetscBool *convp)
{
  const PetscInt m = c->m, nl = c->nloc;
  double        *gall, *ge, *logb, *u, *un, eps = eps0, err = INFINITY;
  float         *v, *w;
  PetscInt       it;
  PetscBool      conv = PETSC_FALSE;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc5(m, &gall, m, &ge, m, &logb, nl + 1, &u, nl + 1, &un));
  PetscCall(PetscMalloc2(m, &v, m, &w));
  if (c->size == 1) PetscCall(PetscArraycpy(logb, logbl, m));
  else PetscCallMPI(MPI_Allgatherv(logbl, (PetscMPIInt)c->mloc, MPI_DOUBLE, logb, c->mcnt, c->mdsp, MPI_DOUBLE, c->comm));
  for (PetscInt j = 0; j < m; j++) gall[j] = 0, v[j] = 1;
  for (PetscInt i = 0; i < nl; i++) u[i] = 1;
  PetscCall(PetscLogEventBegin(CS_EVENT_OT_KERNEL, 0, 0, 0, 0));
  Rebuild(c, f, gall, ge, eps, cscale, PETSC_TRUE);
  PetscCall(PetscLogEventEnd(CS_EVENT_OT_KERNEL, 0, 0, 0, 0));
  for (it = 0; it < o->max_iter; it++) {
    const PetscBool check = eps <= o->epsilon && it > 0 && it % o->check_every == 0 ? PETSC_TRUE : PETSC_FALSE;
    const double    ta = o->tau_a, tb = o->tau_b;
    double          e = 0, red[2] = {0, 0}; /* max |log u|, any non-finite */

    PetscCall(PetscLogEventBegin(CS_EVENT_OT_SWEEP, 0, 0, 0, 0));
    PetscCall(PetscArrayzero(w, m));
    /* blocks of KB rows (KB m floats stay in L2 between the two products): s = K_b v, then w += K_b^T u_b */
    for (PetscInt i0 = 0; i0 < nl; i0 += KB) {
      const PetscInt h = PetscMin(KB, nl - i0);
      const float   *Kb = c->Crow + (size_t)i0 * m;
      float          sb[KB], ub[KB];
      if (c->Kh) KvBF16(c->Kh + (size_t)i0 * m, h, m, v, sb);
      else cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)h, (int)m, 1.0f, Kb, (int)m, v, 1, 0.0f, sb, 1);
      for (PetscInt k = 0; k < h; k++) {
        const PetscInt i  = i0 + k;
        const double   si = sb[k];
        if (check) {
          double t = ta == 1 ? exp(loga[i]) : exp(loga[i] - (1.0 / ta - 1.0) * (f[i] / eps + log(u[i])));
          e += fabs(u[i] * si - t);
        }
        const double lu = ta * (loga[i] - log(si)) + (ta - 1) * f[i] / eps;
        if (!(lu > -1e300 && lu < 1e300)) red[1] = 1;
        red[0] = PetscMax(red[0], fabs(lu));
        un[i]  = exp(lu);
        ub[k]  = (float)un[i];
      }
      if (c->Kh) KtuBF16(c->Kh + (size_t)i0 * m, h, m, ub, w);
      else cblas_sgemv(CblasRowMajor, CblasTrans, (int)h, (int)m, 1.0f, Kb, (int)m, ub, 1, 1.0f, w, 1);
    }
    PetscCall(PetscLogEventEnd(CS_EVENT_OT_SWEEP, 0, 0, 0, 0));
    if (check) {
      PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &e, 1, MPI_DOUBLE, MPI_SUM, c->comm));
      err = e / sa;
      PetscCheck(!PetscIsInfOrNanReal(err), c->comm, PETSC_ERR_NOT_CONVERGED,
                 "%s: the Sinkhorn iterations diverged at iteration %" PetscInt_FMT " (epsilon %g too small for the cost scale: the kernel "
                 "underflows); achieved marginal error: not finite", name, it, eps);
      if (c->Kh && o->kernel_bf16_refine > 0 && err <= PetscMax(o->tol, o->kernel_bf16_refine)) {
        /* near the bfloat16 kernel's own floor: absorb u, v and go on with the float32 kernel, so that the
           tolerance is met (and the error measured) on the plan the float32 projection builds */
        for (PetscInt i = 0; i < nl; i++) f[i] += eps * log(u[i]), u[i] = 1;
        for (PetscInt j = 0; j < m; j++) gall[j] += eps * log((double)v[j]), v[j] = 1;
        PetscCall(PetscFree(c->Kh));
        PetscCall(PetscLogEventBegin(CS_EVENT_OT_KERNEL, 0, 0, 0, 0));
        Rebuild(c, f, gall, ge, eps, cscale, PETSC_FALSE);
        PetscCall(PetscLogEventEnd(CS_EVENT_OT_KERNEL, 0, 0, 0, 0));
        continue;
      }
      if (err <= o->tol) {
        conv = PETSC_TRUE;
        break; /* u, v: the plan whose error was measured */
      }
    }
    if (c->size > 1) PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, w, (PetscMPIInt)m, MPI_FLOAT, MPI_SUM, c->comm));
    for (PetscInt j = 0; j < m; j++) {
      const double lv = tb * (logb[j] - log((double)w[j])) + (tb - 1) * gall[j] / eps;
      if (!(lv > -1e300 && lv < 1e300)) red[1] = 1;
      red[0] = PetscMax(red[0], fabs(lv));
      v[j]   = (float)exp(lv);
    }
    PetscCall(PetscArraycpy(u, un, nl));
    if (c->size > 1) PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, red, 2, MPI_DOUBLE, MPI_MAX, c->comm));
    PetscCheck(!red[1], c->comm, PETSC_ERR_NOT_CONVERGED,
               "%s: a Sinkhorn potential became infinite at iteration %" PetscInt_FMT ": epsilon %g is too small for the cost scale "
               "(the kernel of a cell underflows to 0); achieved marginal error %g", name, it, eps, err);
    {
      const double epsn = PetscMax(o->epsilon, eps * o->eps_decay);
      if (epsn != eps || red[0] > ABSORB) { /* absorb u, v into f, g; rebuild the kernel (at the next eps) */
        for (PetscInt i = 0; i < nl; i++) f[i] += eps * log(u[i]), u[i] = 1;
        for (PetscInt j = 0; j < m; j++) gall[j] += eps * log((double)v[j]), v[j] = 1;
        eps = epsn;
        PetscCall(PetscLogEventBegin(CS_EVENT_OT_KERNEL, 0, 0, 0, 0));
        Rebuild(c, f, gall, ge, eps, cscale, PETSC_FALSE);
        PetscCall(PetscLogEventEnd(CS_EVENT_OT_KERNEL, 0, 0, 0, 0));
      }
    }
  }
  for (PetscInt i = 0; i < nl; i++) f[i] += eps * log(u[i]);
  for (PetscInt j = 0; j < m; j++) gall[j] += eps * log((double)v[j]), gs[j] = (float)(gall[j] / eps);
  for (PetscInt j = 0; j < c->mloc; j++) g[j] = gall[c->m0 + j];
  *epsp = eps, *itp = it, *errp = err, *convp = conv;
  PetscCall(PetscFree5(gall, ge, logb, u, un));
  PetscCall(PetscFree2(v, w));
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------ block-cyclic cost (ScaLAPACK)
   The cost C [n, m] is a double nb x nb block-cyclic matrix on the BLACS grid of the communicator (CsGrid),
   built by pdgemm as -2 X Y^T plus the squared norms, and the kernel K_ij = exp((f_i + g_j - C_ij / c) / eps)
   beside it: each rank holds n m / ranks entries of each, none holds the whole cost. The iterations are the
   stabilised scaling ones of the stored path, with the row sums K v reduced over the process row (the ranks
   holding the same rows) and the column sums K^T u over the process column. On return f [nloc], g [mloc] are the
   total potentials of the caller's rows and columns, gs [m] = g / eps at the final eps. */
#define BC_NB 64

typedef struct {
  CsGrid        grid;
  CsBlockCyclic C;
  MPI_Comm      rowc, colc; /* the ranks of this rank's process row / column (MPI_COMM_NULL outside the grid) */
  double       *Cl, *Kl;    /* local cost (scaled) and kernel, column-major, leading dimension C.lld */
  PetscInt     *gi, *gj;    /* global indices of the local rows and columns */
} BCtx;

static PetscErrorCode BCBuild(Ctx *c, BCtx *b, double cscale)
{
  CsBlockCyclic Xb, Yb;
  double       *Xl = NULL, *Yl = NULL;
  const int     n = (int)c->n, m = (int)c->m, d = (int)PetscMax(c->d, 1), nb = BC_NB;
  const CsGrid *g = &b->grid;

  PetscFunctionBeginUser;
  PetscCall(CsBlockCyclicInit(g, n, m, nb, &b->C));
  PetscCall(CsBlockCyclicInit(g, n, d, nb, &Xb));
  PetscCall(CsBlockCyclicInit(g, m, d, nb, &Yb));
  PetscCall(PetscCalloc2((size_t)b->C.lld * b->C.nloc + 1, &b->Cl, (size_t)b->C.lld * b->C.nloc + 1, &b->Kl));
  PetscCall(PetscMalloc2(b->C.mloc + 1, &b->gi, b->C.nloc + 1, &b->gj));
  for (int li = 0; li < b->C.mloc; li++) b->gi[li] = CsBCLocalToGlobal(li, nb, g->nprow, g->myrow);
  for (int lj = 0; lj < b->C.nloc; lj++) b->gj[lj] = CsBCLocalToGlobal(lj, nb, g->npcol, g->mycol);
  PetscCall(PetscCalloc2((size_t)Xb.lld * Xb.nloc + 1, &Xl, (size_t)Yb.lld * Yb.nloc + 1, &Yl));
  for (int lk = 0; lk < Xb.nloc && c->d > 0; lk++) {
    const int k = CsBCLocalToGlobal(lk, nb, g->npcol, g->mycol);
    for (int li = 0; li < Xb.mloc; li++) Xl[(size_t)lk * Xb.lld + li] = c->X[(size_t)CsBCLocalToGlobal(li, nb, g->nprow, g->myrow) * c->d + k];
    for (int lj = 0; lj < Yb.mloc; lj++) Yl[(size_t)lk * Yb.lld + lj] = c->Y[(size_t)CsBCLocalToGlobal(lj, nb, g->nprow, g->myrow) * c->d + k];
  }
  if (g->myrow >= 0 && c->d > 0) {
    const int    one = 1;
    const double mtwo = -2.0, zero = 0.0;
    pdgemm_("N", "T", &n, &m, &d, &mtwo, Xl, &one, &one, Xb.desc, Yl, &one, &one, Yb.desc, &zero, b->Cl, &one, &one, b->C.desc, 1, 1);
  }
  PetscCall(PetscFree2(Xl, Yl));
  {
    double *nx, *ny;
    PetscCall(PetscMalloc2(b->C.mloc + 1, &nx, b->C.nloc + 1, &ny));
    for (int li = 0; li < b->C.mloc; li++) {
      double s = 0;
      for (PetscInt k = 0; k < c->d; k++) s += (double)c->X[(size_t)b->gi[li] * c->d + k] * c->X[(size_t)b->gi[li] * c->d + k];
      nx[li] = s;
    }
    for (int lj = 0; lj < b->C.nloc; lj++) {
      double s = 0;
      for (PetscInt k = 0; k < c->d; k++) s += (double)c->Y[(size_t)b->gj[lj] * c->d + k] * c->Y[(size_t)b->gj[lj] * c->d + k];
      ny[lj] = s;
    }
    for (int lj = 0; lj < b->C.nloc; lj++)
      for (int li = 0; li < b->C.mloc; li++) {
        double *e = b->Cl + (size_t)lj * b->C.lld + li;
        *e        = PetscMax(0.0, *e + nx[li] + ny[lj]) / cscale;
      }
    PetscCall(PetscFree2(nx, ny));
  }
  PetscFunctionReturn(0);
}

static void BCKernel(BCtx *b, const double *f, const double *g, double eps)
{
  for (int lj = 0; lj < b->C.nloc; lj++)
    for (int li = 0; li < b->C.mloc; li++) {
      const size_t k = (size_t)lj * b->C.lld + li;
      b->Kl[k]       = exp((f[li] + g[lj] - b->Cl[k]) / eps);
    }
}

/* v = sum over the process row (rows) or column (cols) of the local vector, in place */
static PetscErrorCode BCReduce(MPI_Comm sub, double *v, int len, MPI_Op op)
{
  PetscFunctionBeginUser;
  if (sub != MPI_COMM_NULL && len > 0) PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, v, len, MPI_DOUBLE, op, sub));
  PetscFunctionReturn(0);
}

static PetscErrorCode BlockCyclicIterations(Ctx *c, const CsOTOptions *o, const char *name, double cscale, double eps0, double sa,
                                            const double *loga_l, const double *logb_l, double *f, double *g, float *gs, double *epsp,
                                            PetscInt *itp, double *errp, PetscBool *convp)
{
  BCtx      b;
  double   *loga, *logb, *F, *G, *u, *un, *v, *sr, *sc, *all, eps = eps0, err = INFINITY;
  PetscInt  it;
  PetscBool conv = PETSC_FALSE;
  int       R, Q;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(&b, sizeof(b)));
  PetscCall(CsGridCreate(c->comm, &b.grid));
  PetscCall(PetscLogEventBegin(CS_EVENT_OT_KERNEL, 0, 0, 0, 0));
  PetscCall(BCBuild(c, &b, cscale));
  R = b.C.mloc, Q = b.C.nloc;
  {
    const PetscBool in = b.grid.myrow >= 0 ? PETSC_TRUE : PETSC_FALSE;
    PetscCallMPI(MPI_Comm_split(c->comm, in ? b.grid.myrow : MPI_UNDEFINED, b.grid.mycol, &b.rowc));
    PetscCallMPI(MPI_Comm_split(c->comm, in ? b.grid.mycol : MPI_UNDEFINED, b.grid.myrow, &b.colc));
  }
  /* log weights of all points (O(n + m)), then those of the local rows and columns */
  PetscCall(PetscMalloc1(c->n + c->m, &all));
  if (c->size == 1) {
    PetscCall(PetscArraycpy(all, loga_l, c->n));
    PetscCall(PetscArraycpy(all + c->n, logb_l, c->m));
  } else {
    PetscCallMPI(MPI_Allgatherv(loga_l, (PetscMPIInt)c->nloc, MPI_DOUBLE, all, c->ncnt, c->ndsp, MPI_DOUBLE, c->comm));
    PetscCallMPI(MPI_Allgatherv(logb_l, (PetscMPIInt)c->mloc, MPI_DOUBLE, all + c->n, c->mcnt, c->mdsp, MPI_DOUBLE, c->comm));
  }
  PetscCall(PetscMalloc6(R + 1, &loga, Q + 1, &logb, R + 1, &F, Q + 1, &G, R + 1, &u, R + 1, &un));
  PetscCall(PetscMalloc3(Q + 1, &v, R + 1, &sr, Q + 1, &sc));
  for (int li = 0; li < R; li++) loga[li] = all[b.gi[li]], u[li] = 1;
  for (int lj = 0; lj < Q; lj++) logb[lj] = all[c->n + b.gj[lj]], G[lj] = 0, v[lj] = 1;
  /* f_i = min_j C_ij first (no row of K underflows) */
  for (int li = 0; li < R; li++) F[li] = INFINITY;
  for (int lj = 0; lj < Q; lj++)
    for (int li = 0; li < R; li++) F[li] = PetscMin(F[li], b.Cl[(size_t)lj * b.C.lld + li]);
  PetscCall(BCReduce(b.rowc, F, R, MPI_MIN));
  BCKernel(&b, F, G, eps);
  PetscCall(PetscLogEventEnd(CS_EVENT_OT_KERNEL, 0, 0, 0, 0));
  for (it = 0; it < o->max_iter; it++) {
    const PetscBool check = eps <= o->epsilon && it > 0 && it % o->check_every == 0 ? PETSC_TRUE : PETSC_FALSE;
    const double    ta = o->tau_a, tb = o->tau_b;
    double          e = 0, red[2] = {0, 0};

    PetscCall(PetscLogEventBegin(CS_EVENT_OT_SWEEP, 0, 0, 0, 0));
    for (int li = 0; li < R; li++) sr[li] = 0;
    for (int lj = 0; lj < Q; lj++) {
      const double *col = b.Kl + (size_t)lj * b.C.lld;
      for (int li = 0; li < R; li++) sr[li] += col[li] * v[lj];
    }
    PetscCall(BCReduce(b.rowc, sr, R, MPI_SUM));
    for (int li = 0; li < R; li++) {
      if (check && b.grid.mycol == 0) {
        double t = ta == 1 ? exp(loga[li]) : exp(loga[li] - (1.0 / ta - 1.0) * (F[li] / eps + log(u[li])));
        e += fabs(u[li] * sr[li] - t);
      }
      const double lu = ta * (loga[li] - log(sr[li])) + (ta - 1) * F[li] / eps;
      if (!(lu > -1e300 && lu < 1e300)) red[1] = 1;
      red[0] = PetscMax(red[0], fabs(lu));
      un[li] = exp(lu);
    }
    if (check) {
      PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &e, 1, MPI_DOUBLE, MPI_SUM, c->comm));
      err = e / sa;
      PetscCheck(!PetscIsInfOrNanReal(err), c->comm, PETSC_ERR_NOT_CONVERGED,
                 "%s: the Sinkhorn iterations diverged at iteration %" PetscInt_FMT " (epsilon %g too small for the cost scale: the kernel "
                 "underflows); achieved marginal error: not finite", name, it, eps);
      if (err <= o->tol) {
        conv = PETSC_TRUE;
        PetscCall(PetscLogEventEnd(CS_EVENT_OT_SWEEP, 0, 0, 0, 0));
        break;
      }
    }
    for (int lj = 0; lj < Q; lj++) {
      const double *col = b.Kl + (size_t)lj * b.C.lld;
      double        s   = 0;
      for (int li = 0; li < R; li++) s += col[li] * un[li];
      sc[lj] = s;
    }
    PetscCall(BCReduce(b.colc, sc, Q, MPI_SUM));
    for (int lj = 0; lj < Q; lj++) {
      const double lv = tb * (logb[lj] - log(sc[lj])) + (tb - 1) * G[lj] / eps;
      if (!(lv > -1e300 && lv < 1e300)) red[1] = 1;
      red[0] = PetscMax(red[0], fabs(lv));
      v[lj]  = exp(lv);
    }
    PetscCall(PetscArraycpy(u, un, R));
    PetscCall(PetscLogEventEnd(CS_EVENT_OT_SWEEP, 0, 0, 0, 0));
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, red, 2, MPI_DOUBLE, MPI_MAX, c->comm));
    PetscCheck(!red[1], c->comm, PETSC_ERR_NOT_CONVERGED,
               "%s: a Sinkhorn potential became infinite at iteration %" PetscInt_FMT ": epsilon %g is too small for the cost scale "
               "(the kernel of a cell underflows to 0); achieved marginal error %g", name, it, eps, err);
    {
      const double epsn = PetscMax(o->epsilon, eps * o->eps_decay);
      if (epsn != eps || red[0] > ABSORB) {
        for (int li = 0; li < R; li++) F[li] += eps * log(u[li]), u[li] = 1;
        for (int lj = 0; lj < Q; lj++) G[lj] += eps * log(v[lj]), v[lj] = 1;
        eps = epsn;
        PetscCall(PetscLogEventBegin(CS_EVENT_OT_KERNEL, 0, 0, 0, 0));
        BCKernel(&b, F, G, eps);
        PetscCall(PetscLogEventEnd(CS_EVENT_OT_KERNEL, 0, 0, 0, 0));
      }
    }
  }
  /* the total potentials of all points: each row from process column 0, each column from process row 0 */
  PetscCall(PetscArrayzero(all, c->n + c->m));
  if (b.grid.mycol == 0)
    for (int li = 0; li < R; li++) all[b.gi[li]] = F[li] + eps * log(u[li]);
  if (b.grid.myrow == 0)
    for (int lj = 0; lj < Q; lj++) all[c->n + b.gj[lj]] = G[lj] + eps * log(v[lj]);
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, all, (PetscMPIInt)(c->n + c->m), MPI_DOUBLE, MPI_SUM, c->comm));
  for (PetscInt i = 0; i < c->nloc; i++) f[i] = all[c->n0 + i];
  for (PetscInt j = 0; j < c->mloc; j++) g[j] = all[c->n + c->m0 + j];
  for (PetscInt j = 0; j < c->m; j++) gs[j] = (float)(all[c->n + j] / eps);
  *epsp = eps, *itp = it, *errp = err, *convp = conv;
  PetscCall(PetscFree6(loga, logb, F, G, u, un));
  PetscCall(PetscFree3(v, sr, sc));
  PetscCall(PetscFree(all));
  if (b.rowc != MPI_COMM_NULL) PetscCallMPI(MPI_Comm_free(&b.rowc));
  if (b.colc != MPI_COMM_NULL) PetscCallMPI(MPI_Comm_free(&b.colc));
  PetscCall(PetscFree2(b.Cl, b.Kl));
  PetscCall(PetscFree2(b.gi, b.gj));
  PetscCall(CsGridDestroy(&b.grid));
  PetscFunctionReturn(0);
}

/* Check the arguments and lay the points out over the ranks: counts, offsets, totals. */
static PetscErrorCode Layout(Ctx *c, const CsOTOptions *o, const char *name)
{
  PetscInt cnt[3], mx[3];

  PetscFunctionBeginUser;
  cnt[0] = c->nloc, cnt[1] = c->mloc, cnt[2] = c->d;
  PetscCallMPI(MPI_Allreduce(cnt, mx, 3, MPIU_INT, MPI_MAX, c->comm));
  {
    PetscInt mn[3];
    PetscCallMPI(MPI_Allreduce(cnt, mn, 3, MPIU_INT, MPI_MIN, c->comm));
    PetscCheck(mn[0] >= 0 && mn[1] >= 0 && mn[2] == mx[2] && c->d >= 0, c->comm, PETSC_ERR_ARG_WRONG,
               "%s: the point counts must be >= 0 and the dimension the same on every rank (got %" PetscInt_FMT " source and %" PetscInt_FMT
               " target points in dimension %" PetscInt_FMT " here)", name, c->nloc, c->mloc, c->d);
  }
  PetscCheck(o->epsilon > 0 && PetscIsNormalReal(o->epsilon), c->comm, PETSC_ERR_ARG_OUTOFRANGE, "%s: epsilon must be > 0 (got %g)", name,
             (double)o->epsilon);
  PetscCheck(o->tau_a > 0 && o->tau_a <= 1 && o->tau_b > 0 && o->tau_b <= 1, c->comm, PETSC_ERR_ARG_OUTOFRANGE,
             "%s: tau_a and tau_b must be in (0, 1] (1: balanced); got %g and %g", name, (double)o->tau_a, (double)o->tau_b);
  PetscCheck(o->tol > 0 && o->max_iter > 0 && o->eps_decay > 0 && o->eps_decay < 1 && o->check_every > 0, c->comm, PETSC_ERR_ARG_OUTOFRANGE,
             "%s: the tolerance and iteration cap must be > 0 and the epsilon decay in (0, 1) (got tol %g, max_iter %" PetscInt_FMT
             ", decay %g)", name, (double)o->tol, o->max_iter, (double)o->eps_decay);
  PetscCall(PetscMalloc4(c->size, &c->ncnt, c->size, &c->ndsp, c->size, &c->mcnt, c->size, &c->mdsp));
  {
    PetscMPIInt two[2] = {(PetscMPIInt)c->nloc, (PetscMPIInt)c->mloc}, *all;
    PetscCall(PetscMalloc1(2 * c->size, &all));
    PetscCallMPI(MPI_Allgather(two, 2, MPI_INT, all, 2, MPI_INT, c->comm));
    c->n = c->m = 0;
    for (PetscMPIInt r = 0; r < c->size; r++) {
      c->ncnt[r] = all[2 * r], c->mcnt[r] = all[2 * r + 1];
      c->ndsp[r] = (PetscMPIInt)c->n, c->mdsp[r] = (PetscMPIInt)c->m;
      if (r == c->rank) c->n0 = c->n, c->m0 = c->m;
      c->n += c->ncnt[r], c->m += c->mcnt[r];
    }
    PetscCall(PetscFree(all));
  }
  PetscCheck(c->n > 0 && c->m > 0, c->comm, PETSC_ERR_ARG_WRONG, "%s: needs at least one source and one target point (got %" PetscInt_FMT " and %" PetscInt_FMT ")",
             name, c->n, c->m);
  PetscFunctionReturn(0);
}

/* log weights (uniform when a or b is NULL; every weight positive and finite) and the total masses sa, sb. */
static PetscErrorCode Weights(Ctx *c, const char *name, const PetscReal *a, const PetscReal *b, double *loga, double *logb, double *sa_, double *sb_)
{
  double sa = 0, sb = 0, tmp[2];

  PetscFunctionBeginUser;
  {
    PetscInt bad = 0, badall;
    for (PetscInt i = 0; i < c->nloc; i++) {
      double ai = a ? a[i] : 1.0 / c->n;
      if (!(ai > 0 && PetscIsNormalReal(ai))) bad = 1;
      loga[i] = log(ai), sa += ai;
    }
    for (PetscInt j = 0; j < c->mloc; j++) {
      double bj = b ? b[j] : 1.0 / c->m;
      if (!(bj > 0 && PetscIsNormalReal(bj))) bad = 1;
      logb[j] = log(bj), sb += bj;
    }
    PetscCallMPI(MPI_Allreduce(&bad, &badall, 1, MPIU_INT, MPI_MAX, c->comm));
    PetscCheck(!badall, c->comm, PETSC_ERR_ARG_OUTOFRANGE, "%s: every point weight must be positive and finite", name);
    tmp[0] = sa, tmp[1] = sb;
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, tmp, 2, MPI_DOUBLE, MPI_SUM, c->comm));
    sa = tmp[0], sb = tmp[1];
  }

  *sa_ = sa, *sb_ = sb;
  PetscFunctionReturn(0);
}

/* All points on every rank (the caller's arrays on one rank). */
static PetscErrorCode GatherPoints(Ctx *c, const float *x, const float *y)
{
  PetscFunctionBeginUser;
  if (c->size == 1) c->X = x, c->Y = y;
  else {
    PetscMPIInt *cd, *dd;
    PetscCall(PetscMalloc2((size_t)c->n * c->d, &c->Xall, (size_t)c->m * c->d, &c->Yall));
    PetscCall(PetscMalloc2(c->size, &cd, c->size, &dd));
    for (PetscMPIInt r = 0; r < c->size; r++) cd[r] = (PetscMPIInt)(c->ncnt[r] * c->d), dd[r] = (PetscMPIInt)(c->ndsp[r] * c->d);
    PetscCallMPI(MPI_Allgatherv(x, (PetscMPIInt)(c->nloc * c->d), MPI_FLOAT, c->Xall, cd, dd, MPI_FLOAT, c->comm));
    for (PetscMPIInt r = 0; r < c->size; r++) cd[r] = (PetscMPIInt)(c->mcnt[r] * c->d), dd[r] = (PetscMPIInt)(c->mdsp[r] * c->d);
    PetscCallMPI(MPI_Allgatherv(y, (PetscMPIInt)(c->mloc * c->d), MPI_FLOAT, c->Yall, cd, dd, MPI_FLOAT, c->comm));
    PetscCall(PetscFree2(cd, dd));
    c->X = c->Xall, c->Y = c->Yall;
  }

  PetscFunctionReturn(0);
}

/* The cost scale (the mean in closed form, mean|x|^2 + mean|y|^2 - 2 xbar.ybar; the maximum by a sweep), the
   underflow check, and the first epsilon of the scaling. */
static PetscErrorCode CostScale(Ctx *c, const CsOTOptions *o, const char *name, const float *x, const float *y, double *cscale_, double *eps0)
{
  double cscale = 1, maxc;

  PetscFunctionBeginUser;
  {
    double *mom;
    PetscCall(PetscCalloc1(2 * c->d + 2, &mom));
    for (PetscInt i = 0; i < c->nloc; i++)
      for (PetscInt k = 0; k < c->d; k++) {
        double v = x[(size_t)i * c->d + k];
        mom[k] += v, mom[2 * c->d] += v * v;
      }
    for (PetscInt j = 0; j < c->mloc; j++)
      for (PetscInt k = 0; k < c->d; k++) {
        double v = y[(size_t)j * c->d + k];
        mom[c->d + k] += v, mom[2 * c->d + 1] += v * v;
      }
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, mom, 2 * (int)c->d + 2, MPI_DOUBLE, MPI_SUM, c->comm));
    double mean = mom[2 * c->d] / c->n + mom[2 * c->d + 1] / c->m;
    for (PetscInt k = 0; k < c->d; k++) mean -= 2 * (mom[k] / c->n) * (mom[c->d + k] / c->m);
    mean = PetscMax(mean, 0);
    PetscCall(PetscFree(mom));
    maxc = MaxCost(c);
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &maxc, 1, MPI_DOUBLE, MPI_MAX, c->comm));
    if (o->scale == CS_OT_SCALE_MEAN) cscale = mean;
    else if (o->scale == CS_OT_SCALE_MAX) cscale = maxc;
    PetscCheck(cscale > 0, c->comm, PETSC_ERR_ARG_WRONG, "%s: all points coincide, so the cost cannot be scaled by its %s", name,
               o->scale == CS_OT_SCALE_MEAN ? "mean" : "maximum");
    PetscCheck(maxc / cscale / o->epsilon <= MAX_COST_OVER_EPS, c->comm, PETSC_ERR_ARG_OUTOFRANGE,
               "%s: epsilon %g is too small for the cost scale: the largest scaled cost is %g, %g times epsilon, and the kernel "
               "exp(-C/eps) underflows float32 arithmetic (achieved marginal error: none, not started); raise epsilon or normalise the cost",
               name, (double)o->epsilon, maxc / cscale, maxc / cscale / o->epsilon);
    *eps0 = o->eps_scaling ? PetscMax(o->epsilon, mean / cscale) : o->epsilon;
  }

  *cscale_ = cscale;
  PetscFunctionReturn(0);
}

/* Streamed mode: log-domain Sinkhorn sweeps over cost blocks recomputed every iteration (f, g the potentials, fs, gs
   their gathered scaled copies; on return eps, the iteration count, the achieved error and convergence). */
static PetscErrorCode StreamedIterations(Ctx *c, const CsOTOptions *o, const char *name, double cscale, double sa, const double *loga,
                                         const double *logb, double *f, double *g, float *fs, float *gs, float *ftmp, float *gtmp, double *L,
                                         double *Lc, double *eps_, PetscInt *it_, double *err_, PetscBool *conv_)
{
  double    eps = *eps_, err = INFINITY;
  PetscInt  it;
  PetscBool conv = PETSC_FALSE;

  PetscFunctionBeginUser;
  for (it = 0; it < o->max_iter; it++) {
    const float s     = (float)(-1.0 / (eps * cscale));
    PetscBool   final = eps <= o->epsilon ? PETSC_TRUE : PETSC_FALSE;
    PetscInt    bad   = 0;

    PetscCall(PetscLogEventBegin(CS_EVENT_OT_SWEEP, 0, 0, 0, 0));
    RowLse(c, gs, s, L);
    PetscCall(PetscLogEventEnd(CS_EVENT_OT_SWEEP, 0, 0, 0, 0));
    if (final && it > 0 && (it % o->check_every == 0)) {
      double e = 0;
      for (PetscInt i = 0; i < c->nloc; i++) {
        double r = exp(f[i] / eps + L[i]), t = exp(loga[i] - (1.0 / o->tau_a - 1.0) * f[i] / eps);
        e += fabs(r - t);
      }
      PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &e, 1, MPI_DOUBLE, MPI_SUM, c->comm));
      err = e / sa;
      PetscCheck(!PetscIsInfOrNanReal(err), c->comm, PETSC_ERR_NOT_CONVERGED,
                 "%s: the Sinkhorn iterations diverged at iteration %" PetscInt_FMT " (epsilon %g too small for the cost scale: the kernel "
                 "underflows); achieved marginal error: not finite", name, it, eps);
      if (err <= o->tol) {
        conv = PETSC_TRUE;
        break;
      }
    }
    for (PetscInt i = 0; i < c->nloc; i++) {
      f[i] = o->tau_a * eps * (loga[i] - L[i]);
      if (!PetscIsNormalReal(f[i]) && f[i] != 0) bad = 1;
    }
    PetscCall(Gather(c, f, c->nloc, c->ncnt, c->ndsp, fs, ftmp, 1.0 / eps));
    PetscCall(PetscLogEventBegin(CS_EVENT_OT_SWEEP, 0, 0, 0, 0));
    ColLse(c, fs, s, Lc);
    PetscCall(PetscLogEventEnd(CS_EVENT_OT_SWEEP, 0, 0, 0, 0));
    /* epsilon scaling: the potentials of one eps start the next (smaller) one */
    {
      double epsn = PetscMax(o->epsilon, eps * o->eps_decay);
      for (PetscInt j = 0; j < c->mloc; j++) {
        g[j] = o->tau_b * eps * (logb[j] - Lc[j]);
        if (!PetscIsNormalReal(g[j]) && g[j] != 0) bad = 1;
      }
      PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPIU_INT, MPI_MAX, c->comm));
      PetscCheck(!bad, c->comm, PETSC_ERR_NOT_CONVERGED,
                 "%s: a Sinkhorn potential became infinite at iteration %" PetscInt_FMT ": epsilon %g is too small for the cost scale "
                 "(the kernel of a cell underflows to 0); achieved marginal error %g", name, it, eps, err);
      eps = epsn;
    }
    PetscCall(Gather(c, g, c->mloc, c->mcnt, c->mdsp, gs, gtmp, 1.0 / eps));
  }
  *eps_ = eps, *it_ = it, *err_ = err, *conv_ = conv;
  PetscFunctionReturn(0);
}

static PetscErrorCode Solve(MPI_Comm comm, const CsOTOptions *o, PetscInt nloc, PetscInt mloc, PetscInt d, const float *x, const float *y,
                            const PetscReal *a, const PetscReal *b, float *plan, float *bary, PetscReal *fout, PetscReal *gout, CsOTInfo *info)
{
  Ctx         c;
  const char *name = o->name ? o->name : "the transport problem";
  double      sa = 0, sb = 0, cscale = 1, eps, eps0 = 0, err = INFINITY;
  double     *f, *g, *loga, *logb, *L, *Lc;
  float      *fs, *gs, *ftmp, *gtmp;
  PetscInt    it = 0;
  PetscBool   conv = PETSC_FALSE;
  CsOTInfo    inf;

  PetscFunctionBeginUser;
  PetscCall(RegisterEvents());
  PetscCall(PetscMemzero(&c, sizeof(c)));
  PetscCall(PetscMemzero(&inf, sizeof(inf)));
  c.comm = comm, c.nloc = nloc, c.mloc = mloc, c.d = d, c.xl = x, c.yl = y;
  PetscCallMPI(MPI_Comm_size(comm, &c.size));
  PetscCallMPI(MPI_Comm_rank(comm, &c.rank));
  PetscCall(Layout(&c, o, name));
  PetscCall(PetscLogEventBegin(CS_EVENT_OT_SOLVE, 0, 0, 0, 0));

  PetscCall(PetscMalloc4(nloc, &f, mloc, &g, nloc, &loga, mloc, &logb));
  PetscCall(Weights(&c, name, a, b, loga, logb, &sa, &sb));

  PetscCall(GatherPoints(&c, x, y));

  /* stored or streamed */
  {
    size_t    bytes = (o->kernel_bf16 ? 6 : 4) * (size_t)nloc * c.m;
    PetscBool st    = o->mode == CS_OT_MODE_STREAM || o->mode == CS_OT_MODE_BLOCKCYCLIC || (o->mode == CS_OT_MODE_AUTO && bytes > CS_OT_STORE_MAX_BYTES);
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &st, 1, MPIU_BOOL, MPI_LOR, comm));
    c.stream = st;
  }
  PetscCall(PetscMalloc1(c.n + c.m + 2 * (RB + CB), &c.work)); /* sqdist_forward: rows + columns */
  PetscCall(PetscMalloc1(PetscMax(PetscMax(nloc, mloc), RB + CB), &c.part));
  if (c.stream) PetscCall(PetscMalloc1((size_t)RB * CB, &c.D));
  else { /* the rank's kernel rows */
    PetscCall(PetscMalloc1((size_t)nloc * c.m + 1, &c.Crow));
    if (o->kernel_bf16) PetscCall(PetscMalloc1((size_t)nloc * c.m + 1, &c.Kh));
    PetscCall(PetscMalloc1((size_t)RB * CB, &c.D)); /* the projection recomputes the cost */
    cs_pairwise_sqdist_forward(c.Crow, x, c.Y, nloc, c.m, d, c.work);
  }

  PetscCall(CostScale(&c, o, name, x, y, &cscale, &eps0));

  /* iterations */
  PetscCall(PetscMalloc6(c.n, &fs, c.m, &gs, nloc, &ftmp, mloc, &gtmp, nloc, &L, mloc, &Lc));
  for (PetscInt i = 0; i < nloc; i++) f[i] = 0;
  for (PetscInt j = 0; j < mloc; j++) g[j] = 0;
  for (PetscInt j = 0; j < c.m; j++) gs[j] = 0;
  for (PetscInt i = 0; i < c.n; i++) fs[i] = 0;
  eps = eps0;
  if (o->mode == CS_OT_MODE_BLOCKCYCLIC) PetscCall(BlockCyclicIterations(&c, o, name, cscale, eps0, sa, loga, logb, f, g, gs, &eps, &it, &err, &conv));
  else if (!c.stream) PetscCall(ScalingIterations(&c, o, name, cscale, eps0, sa, loga, logb, f, g, gs, &eps, &it, &err, &conv));
  else PetscCall(StreamedIterations(&c, o, name, cscale, sa, loga, logb, f, g, fs, gs, ftmp, gtmp, L, Lc, &eps, &it, &err, &conv));
  if (!conv && !o->allow_unconverged) {
    PetscCall(PetscLogEventEnd(CS_EVENT_OT_SOLVE, 0, 0, 0, 0));
    SETERRQ(comm, PETSC_ERR_NOT_CONVERGED,
            "%s: Sinkhorn did not reach the marginal error %g within %" PetscInt_FMT " iterations (achieved %g at epsilon %g, tau_a %g, "
            "tau_b %g); raise the iteration cap or epsilon, or loosen the tolerance",
            name, (double)o->tol, o->max_iter, err, eps, (double)o->tau_a, (double)o->tau_b);
  }
  /* gs holds g/eps at the final eps (the loop breaks after a row sweep) */
  inf.iterations = it, inf.error = err, inf.cost_scale = cscale, inf.converged = conv;
  inf.streamed = c.stream && o->mode != CS_OT_MODE_BLOCKCYCLIC ? PETSC_TRUE : PETSC_FALSE;
  c.stream = PETSC_TRUE; /* the projection recomputes the cost block by block in both modes */
  if (plan || bary) {
    double cm[2] = {0, 0};
    PetscCall(PetscLogEventBegin(CS_EVENT_OT_PROJECT, 0, 0, 0, 0));
    PetscCall(Project(&c, f, gs, (float)(-1.0 / (eps * cscale)), eps, cscale, plan, bary, &cm[0], &cm[1]));
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, cm, 2, MPI_DOUBLE, MPI_SUM, comm));
    inf.cost = cm[0], inf.mass = cm[1];
    PetscCall(PetscLogEventEnd(CS_EVENT_OT_PROJECT, 0, 0, 0, 0));
  }
  if (fout) for (PetscInt i = 0; i < nloc; i++) fout[i] = f[i];
  if (gout) for (PetscInt j = 0; j < mloc; j++) gout[j] = g[j];
  if (info) *info = inf;
  PetscCall(PetscLogEventEnd(CS_EVENT_OT_SOLVE, 0, 0, 0, 0));

  PetscCall(PetscFree6(fs, gs, ftmp, gtmp, L, Lc));
  PetscCall(PetscFree4(f, g, loga, logb));
  PetscCall(PetscFree4(c.ncnt, c.ndsp, c.mcnt, c.mdsp));
  PetscCall(PetscFree(c.Crow));
  PetscCall(PetscFree(c.Kh));
  PetscCall(PetscFree(c.D));
  PetscCall(PetscFree(c.work));
  PetscCall(PetscFree(c.part));
  PetscCall(PetscFree2(c.Xall, c.Yall));
  PetscFunctionReturn(0);
}

PetscErrorCode CsOTSolveDense(const CsOTOptions *o, PetscInt n, PetscInt m, PetscInt d, const float *x, const float *y, const PetscReal *a,
                              const PetscReal *b, float *plan, float *bary, CsOTInfo *info)
{
  CsOTOptions oo = *o;

  PetscFunctionBeginUser;
  oo.mode = CS_OT_MODE_STORE;
  PetscCall(Solve(PETSC_COMM_SELF, &oo, n, m, d, x, y, a, b, plan, bary, NULL, NULL, info));
  PetscFunctionReturn(0);
}

PetscErrorCode CsOTSolve(MPI_Comm comm, const CsOTOptions *o, PetscInt nloc, PetscInt mloc, PetscInt d, const float *x, const float *y,
                         const PetscReal *a, const PetscReal *b, float *bary, PetscReal *f, PetscReal *g, CsOTInfo *info)
{
  PetscFunctionBeginUser;
  PetscCall(Solve(comm, o, nloc, mloc, d, x, y, a, b, NULL, bary, f, g, info));
  PetscFunctionReturn(0);
}
