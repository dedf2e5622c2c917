/* Losses: value (this rank's part of the global mean) and gradient. See include/cellshift/nn.h. */
#include "nnimpl.h"

CS_NN_VEC double CsNNSqDiff(float *restrict dA, PetscBool assign, const float *restrict a, const float *restrict b, size_t n, float g)
{
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, s = 0;
  size_t j = 0, n8 = n / 8 * 8;
  /* One branch-free loop per case, so each vectorises. */
#define CS_SQDIFF_LOOP(DIFF, GRAD) \
  for (; j < n8; j += 8) \
    for (int l = 0; l < 8; l++) { \
      float d = DIFF; \
      acc[l] += (double)d * d; \
      GRAD; \
    }
  if (b && dA && assign) CS_SQDIFF_LOOP(a[j + l] - b[j + l], dA[j + l] = g * d)
  else if (b && dA) CS_SQDIFF_LOOP(a[j + l] - b[j + l], dA[j + l] += g * d)
  else if (b) CS_SQDIFF_LOOP(a[j + l] - b[j + l], (void)0)
  else if (dA && assign) CS_SQDIFF_LOOP(a[j + l], dA[j + l] = g * d)
  else if (dA) CS_SQDIFF_LOOP(a[j + l], dA[j + l] += g * d)
  else CS_SQDIFF_LOOP(a[j + l], (void)0)
#undef CS_SQDIFF_LOOP
  for (; j < n; j++) {
    float d = a[j] - (b ? b[j] : 0.0f);
    s += (double)d * d;
    if (dA) dA[j] = (assign ? 0.0f : dA[j]) + g * d;
  }
  for (int l = 0; l < 8; l++) s += acc[l];
  return s;
}

/* Squared error with the gradient accumulated or (assign) written; rows split over the thread pool. */
typedef struct {
  float       *dpred;
  PetscBool    assign;
  const float *pred, *target;
  const CsCSR *T;
  PetscInt     B, C;
  float        g;
  double       s[64];
} MSECtx;

static void TaskMSE(void *ctx, int t, int nt)
{
  MSECtx *k = (MSECtx *)ctx;
  size_t  lo, hi, C = (size_t)k->C;
  double  s = 0;
  CsPoolChunk((size_t)k->B, t, nt, 1, &lo, &hi);
  for (size_t i = lo; i < hi; i++) {
    const float *p = k->pred + i * C;
    float       *d = k->dpred ? k->dpred + i * C : NULL;
    if (!k->T) {
      s += CsNNSqDiff(d, k->assign, p, k->target + i * C, C, k->g);
      continue;
    }
    /* CSR target: the dense part as if the target were 0, then the correction at the stored entries. */
    s += CsNNSqDiff(d, k->assign, p, NULL, C, k->g);
    for (int64_t e = k->T->indptr[i]; e < k->T->indptr[i + 1]; e++) {
      float v = k->T->data[e], pv = p[k->T->indices[e]], r = pv - v;
      s += (double)r * r - (double)pv * pv;
      if (d) d[k->T->indices[e]] -= k->g * v;
    }
  }
  k->s[t] = s;
}

static double MSE(float *dpred, PetscBool assign, const float *pred, const float *target, const CsCSR *T, PetscInt B, PetscInt C,
                  PetscInt nglobal, double weight)
{
  double sc = weight / (double)nglobal, s = 0;
  MSECtx k  = {dpred, assign, pred, target, T, B, C, (float)(2 * sc), {0}};
  CsPoolRun(TaskMSE, &k);
  for (int t = 0; t < CsPoolThreads(); t++) s += k.s[t];
  return sc * s;
}

double CsNNMSELossAssign(float *dpred, const float *pred, const float *target, const CsCSR *T, PetscInt B, PetscInt C, PetscInt nglobal,
                         double weight)
{
  return MSE(dpred, PETSC_TRUE, pred, T ? NULL : target, T, T ? T->nrows : B, T ? T->ncols : C, nglobal, weight);
}

double cs_mse_loss(float *dpred /*[B,C]*/, const float *pred /*[B,C]*/, const float *target /*[B,C]*/, PetscInt B, PetscInt C,
                   PetscInt nglobal, double weight)
{
  return MSE(dpred, PETSC_FALSE, pred, target, NULL, B, C, nglobal, weight);
}

double cs_mse_loss_csr(float *dpred /*[B,C]*/, const float *pred /*[B,C]*/, const CsCSR *T /*[B,C]*/, PetscInt nglobal, double weight)
{
  return MSE(dpred, PETSC_FALSE, pred, NULL, T, T->nrows, T->ncols, nglobal, weight);
}

double cs_gaussian_nll_loss(float *dmean /*[B,C]*/, float *dvraw /*[B,C]*/, const float *mean /*[B,C]*/, const float *vraw /*[B,C]*/,
                            const float *target /*[B,C]*/, PetscInt B, PetscInt C, double var_floor, PetscInt nglobal, double weight)
{
  double sc = weight / (double)nglobal, s = 0;
  for (size_t i = 0; i < (size_t)B * C; i++) {
    double r = vraw[i], sp = r > 20 ? r : log1p(exp(r)), var = sp + var_floor, e = (double)target[i] - mean[i];
    s += 0.5 * (log(var) + e * e / var);
    if (dmean) dmean[i] += (float)(sc * (-e / var));
    if (dvraw) dvraw[i] += (float)(sc * 0.5 * (1.0 / var - e * e / (var * var)) / (1.0 + exp(-r)));
  }
  return sc * s;
}

/* Digamma for x > 0: recurrence up to 6, then the asymptotic series. */
static double Digamma(double x)
{
  double r = 0, f;
  while (x < 6) r -= 1 / x, x += 1;
  f = 1 / (x * x);
  return r + log(x) - 0.5 / x - f * (1.0 / 12 - f * (1.0 / 120 - f * (1.0 / 252 - f * (1.0 / 240 - f / 132))));
}

double cs_nb_nll_loss(float *dmu /*[B,C]*/, float *dtheta /*[B,C]*/, const float *mu /*[B,C]*/, const float *theta /*[B,C]*/,
                      const float *x /*[B,C]*/, PetscInt B, PetscInt C, PetscInt nglobal, double weight)
{
  const double eps = 1e-8;
  double       sc  = weight / (double)nglobal, s = 0;
  for (size_t i = 0; i < (size_t)B * C; i++) {
    double m = mu[i], th = theta[i], xv = x[i], ltm = log(th + m + eps);
    double res = th * (log(th + eps) - ltm) + xv * (log(m + eps) - ltm) + lgamma(xv + th) - lgamma(th) - lgamma(xv + 1);
    s -= res;
    if (dmu) dmu[i] += (float)(sc * ((th + xv) / (th + m + eps) - xv / (m + eps)));
    if (dtheta)
      dtheta[i] += (float)(-sc * (log(th + eps) - ltm + th / (th + eps) - (th + xv) / (th + m + eps) + Digamma(xv + th) - Digamma(th)));
  }
  return sc * s;
}

double cs_softmax_xent_loss(float *dlogits /*[B,K]*/, const float *logits /*[B,K]*/, const PetscInt *labels /*[B]*/, PetscInt B,
                            PetscInt K, PetscInt nglobal, double weight)
{
  double sc = weight / (double)nglobal, s = 0;
  for (PetscInt i = 0; i < B; i++) {
    const float *z = logits + (size_t)i * K;
    double       mx = z[0], se = 0, lse;
    if (labels[i] < 0) continue;
    for (PetscInt k = 1; k < K; k++) mx = PetscMax(mx, (double)z[k]);
    for (PetscInt k = 0; k < K; k++) se += exp(z[k] - mx);
    lse = mx + log(se);
    s += lse - z[labels[i]];
    if (dlogits)
      for (PetscInt k = 0; k < K; k++) dlogits[(size_t)i * K + k] += (float)(sc * (exp(z[k] - lse) - (k == labels[i] ? 1.0 : 0.0)));
  }
  return sc * s;
}

double cs_bce_logits_loss(float *dlogits /*[B,K]*/, const float *logits /*[B,K]*/, const float *targets /*[B,K]*/, PetscInt B,
                          PetscInt K, PetscInt nglobal, double weight)
{
  double sc = weight / (double)nglobal, s = 0;
  for (size_t i = 0; i < (size_t)B * K; i++) {
    double z = logits[i], y = targets[i];
    s += fmax(z, 0) - z * y + log1p(exp(-fabs(z))); /* stable form of -y log s(z) - (1-y) log(1-s(z)) */
    if (dlogits) dlogits[i] += (float)(sc * (1 / (1 + exp(-z)) - y));
  }
  return sc * s;
}

double cs_kl_normal_loss(float *dml /*[B,2Z]*/, const float *ml /*[B,2Z]*/, PetscInt B, PetscInt Z, PetscInt nglobal, double weight)
{
  double sc = weight / (double)nglobal, s = 0;
  for (PetscInt i = 0; i < B; i++) {
    const float *mu = ml + (size_t)i * 2 * Z, *lv = mu + Z;
    for (PetscInt k = 0; k < Z; k++) {
      double e = exp((double)lv[k]);
      s += -0.5 * (1.0 + lv[k] - (double)mu[k] * mu[k] - e);
      if (dml) {
        dml[(size_t)i * 2 * Z + k] += (float)(sc * mu[k]);
        dml[(size_t)i * 2 * Z + Z + k] += (float)(sc * -0.5 * (1.0 - e));
      }
    }
  }
  return sc * s;
}

double cs_nb_expected_log1p(double mu, double theta, double s)
{
  double var = mu + mu * mu / theta, q = mu / (theta + mu), p, sum = 0, mass = 0;
  if (mu > 500) return log1p(s * mu) - s * s * var / (2 * (1 + s * mu) * (1 + s * mu)); /* second order */
  p = exp(theta * log(theta / (theta + mu)));                                           /* P(X = 0) */
  for (int k = 0; k < 100000 && mass < 1 - 1e-12; k++) {
    sum += p * log1p(s * k), mass += p;
    p *= (k + theta) / (k + 1) * q;
  }
  return sum + (1 - mass) * log1p(s * (mu + 10 * sqrt(var))); /* the far tail, if the loop stopped early */
}
