/* Metric kernels of the evaluator: correlations, Welch t, DE ranking, and the distribution distances (energy
   distance, MMD, median heuristic). See include/cellshift/eval.h for the definitions.

   Pairwise squared distances are computed directly, (x - y)^2 summed over dimensions, not through the Gram
   identity |x|^2 + |y|^2 - 2 x.y: the identity loses all digits for nearby points (a model that predicts one
   profile for every cell has within-set distances that are exactly 0, and sqrt turns the identity's rounding
   noise into 1e-8 |x|). The per-pair kernel is the exact double path of the neural engine's pairwise distances
   (cs_sqdist_row_f64 in src/nn/pairwise.c, shared with optimal transport): the second set is transposed
   (dim x m) and each row of the first set updates a row of m distances, one dimension at a time. */
#include <cellshift/eval.h>
#include <cellshift/nn.h>
#include <math.h>

/* An exactly constant vector has no direction: correlations with it are 0 by definition (and the two-pass
   formula would otherwise turn the rounding of its mean into a spurious +-1). */
static int IsConstant(PetscInt n, const double *x)
{
  for (PetscInt i = 1; i < n; i++)
    if (x[i] != x[0]) return 0;
  return 1;
}

double CsPearson(PetscInt n, const double *x, const double *y)
{
  double mx = 0, my = 0, sxy = 0, sxx = 0, syy = 0;

  if (n < 2 || IsConstant(n, x) || IsConstant(n, y)) return 0.0;
  for (PetscInt i = 0; i < n; i++) mx += x[i], my += y[i];
  mx /= (double)n, my /= (double)n;
  for (PetscInt i = 0; i < n; i++) {
    double a = x[i] - mx, b = y[i] - my;
    sxy += a * b, sxx += a * a, syy += b * b;
  }
  if (sxx <= 0 || syy <= 0) return 0.0;
  return sxy / (sqrt(sxx) * sqrt(syy));
}

double CsCosine(PetscInt n, const double *x, const double *y)
{
  double sxy = 0, sxx = 0, syy = 0;

  for (PetscInt i = 0; i < n; i++) sxy += x[i] * y[i], sxx += x[i] * x[i], syy += y[i] * y[i];
  if (sxx <= 0 || syy <= 0) return 0.0;
  return sxy / (sqrt(sxx) * sqrt(syy));
}

/* The mean difference below which t is 0: predictions are float32 (an ulp of 1.2e-7 near 1), so a difference of a
   few ulps has no sign, while its t can be anything (a gene 0 in every control cell that a model predicts as
   rounding noise around 0 has |t| of order 10, set by the noise). */
#define CS_WELCH_MIN_DIFF 1e-6

void CsWelchT(PetscInt n, const double *m1, const double *v1, double n1, const double *m2, const double *v2,
              double n2, double *t)
{
  for (PetscInt j = 0; j < n; j++) {
    double den = v1[j] / n1 + v2[j] / n2, dm = m1[j] - m2[j];
    double sc  = PetscMax(1.0, PetscMax(PetscAbsReal(m1[j]), PetscAbsReal(m2[j])));
    t[j]       = den > 0 && PetscAbsReal(dm) > CS_WELCH_MIN_DIFF * sc ? dm / sqrt(den) : 0.0;
  }
}

typedef struct {
  double   a;
  PetscInt i;
} AbsIdx;

static int CmpAbsIdx(const void *pa, const void *pb)
{
  const AbsIdx *a = (const AbsIdx *)pa, *b = (const AbsIdx *)pb;
  if (a->a != b->a) return a->a > b->a ? -1 : 1;
  return a->i < b->i ? -1 : (a->i > b->i);
}

/* |t| rounded to CS_TIE_BITS significant bits (CsRoundBits): statistics equal in exact arithmetic are common (a gene
   seen in a single cell of one group only has |t| = 1 exactly, whatever its value) and must tie, the tie going to
   gene order. */
static double RoundedAbs(double t) { return CsRoundBits(fabs(t), CS_TIE_BITS); }

/* Indices j with keep(j), sorted by rounded |t| descending, ties by index; the first min(k, count) go to idx. */
static PetscErrorCode SortAbs(PetscInt n, const double *t, const PetscBool *mask, PetscBool nonzero, PetscInt k, PetscInt *idx,
                              PetscInt *found)
{
  AbsIdx  *c;
  PetscInt nc = 0;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(n + 1, &c));
  for (PetscInt j = 0; j < n; j++) {
    if (isnan(t[j]) || (nonzero && t[j] == 0) || (mask && !mask[j])) continue;
    c[nc].a = RoundedAbs(t[j]), c[nc].i = j, nc++;
  }
  qsort(c, (size_t)nc, sizeof(*c), CmpAbsIdx);
  *found = PetscMin(k, nc);
  for (PetscInt r = 0; r < *found; r++) idx[r] = c[r].i;
  PetscCall(PetscFree(c));
  PetscFunctionReturn(0);
}

PetscErrorCode CsTopAbs(PetscInt n, const double *t, PetscInt k, PetscInt *idx, PetscInt *found)
{
  PetscFunctionBeginUser;
  PetscCall(SortAbs(n, t, NULL, PETSC_TRUE, k, idx, found));
  PetscFunctionReturn(0);
}

PetscErrorCode CsRankAbs(PetscInt n, const double *t, const PetscBool *mask, PetscInt *idx, PetscInt *found)
{
  PetscFunctionBeginUser;
  PetscCall(SortAbs(n, t, mask, PETSC_FALSE, n, idx, found));
  PetscFunctionReturn(0);
}

/* YT [dim x m] = transpose of Y [m x dim]. */
static PetscErrorCode Transpose(PetscInt m, PetscInt dim, const double *Y, double **YT)
{
  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1((size_t)m * dim + 1, YT));
  cs_transpose_f64(*YT, Y, m, dim);
  PetscFunctionReturn(0);
}

typedef enum { PAIR_DIST, PAIR_RBF } PairKind;

/* Sum over pairs of f(|x_i - y_j|^2), f = sqrt (PAIR_DIST) or exp(-./(2 s2)) (PAIR_RBF): over all i, j when
   `within` is false (X [n x dim], Y [m x dim]), over i < j of X when it is true (Y unused). Row sums are added
   separately so the rounding grows with n + m rather than n m. */
static PetscErrorCode PairSum(PetscInt n, PetscInt m, PetscInt dim, const double *X, const double *Y, PetscBool within,
                              PairKind kind, double s2, double *sum)
{
  double *YT, *acc, total = 0, g = kind == PAIR_RBF ? -0.5 / s2 : 0;

  PetscFunctionBeginUser;
  if (within) m = n, Y = X;
  PetscCall(Transpose(m, dim, Y, &YT));
  PetscCall(PetscMalloc1(m + 1, &acc));
  for (PetscInt i = 0; i < n; i++) {
    PetscInt j0 = within ? i + 1 : 0, w = m - j0;
    double   row = 0;
    if (w <= 0) continue;
    cs_sqdist_row_f64(acc, X + (size_t)i * dim, YT, m, j0, dim);
    if (kind == PAIR_DIST)
      for (PetscInt j = 0; j < w; j++) row += sqrt(acc[j]);
    else
      for (PetscInt j = 0; j < w; j++) row += exp(g * acc[j]);
    total += row;
  }
  PetscCall(PetscFree(acc));
  PetscCall(PetscFree(YT));
  *sum = total;
  PetscFunctionReturn(0);
}

/* Mean over distinct pairs (0 without any pair). */
static PetscErrorCode WithinMean(PetscInt n, PetscInt dim, const double *X, PairKind kind, double s2, double *mean)
{
  double s;

  PetscFunctionBeginUser;
  *mean = 0;
  if (n < 2) PetscFunctionReturn(0);
  PetscCall(PairSum(n, n, dim, X, NULL, PETSC_TRUE, kind, s2, &s));
  *mean = 2.0 * s / ((double)n * (double)(n - 1));
  PetscFunctionReturn(0);
}

static PetscErrorCode CrossMean(PetscInt n, PetscInt m, PetscInt dim, const double *X, const double *Y, PairKind kind,
                                double s2, double *mean)
{
  double s;

  PetscFunctionBeginUser;
  *mean = 0;
  if (n < 1 || m < 1) PetscFunctionReturn(0);
  PetscCall(PairSum(n, m, dim, X, Y, PETSC_FALSE, kind, s2, &s));
  *mean = s / ((double)n * (double)m);
  PetscFunctionReturn(0);
}

PetscErrorCode CsEnergyDistance(PetscInt n, PetscInt m, PetscInt dim, const double *X, const double *Y, double *e)
{
  double xy, xx, yy;

  PetscFunctionBeginUser;
  PetscCall(CrossMean(n, m, dim, X, Y, PAIR_DIST, 0, &xy));
  PetscCall(WithinMean(n, dim, X, PAIR_DIST, 0, &xx));
  PetscCall(WithinMean(m, dim, Y, PAIR_DIST, 0, &yy));
  *e = 2 * xy - xx - yy;
  PetscFunctionReturn(0);
}

PetscErrorCode CsMMDRBF(PetscInt n, PetscInt m, PetscInt dim, const double *X, const double *Y, double s2, double *mmd)
{
  double xy, xx, yy;

  PetscFunctionBeginUser;
  PetscCheck(s2 > 0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE, "RBF bandwidth s^2 must be positive (got %g)", s2);
  PetscCall(CrossMean(n, m, dim, X, Y, PAIR_RBF, s2, &xy));
  PetscCall(WithinMean(n, dim, X, PAIR_RBF, s2, &xx));
  PetscCall(WithinMean(m, dim, Y, PAIR_RBF, s2, &yy));
  *mmd = xx + yy - 2 * xy;
  PetscFunctionReturn(0);
}

/* k-th smallest of a[0..n) moved to a[k], smaller ones before it, larger ones after (Hoare partitioning with a
   median-of-three pivot: many equal values, common among distances, still split evenly). */
static void Select(double *a, ptrdiff_t n, ptrdiff_t k)
{
  ptrdiff_t lo = 0, hi = n - 1;
  while (hi > lo) {
    ptrdiff_t mid = lo + (hi - lo) / 2, i = lo, j = hi;
    double    p, t;
    if (a[mid] < a[lo]) t = a[mid], a[mid] = a[lo], a[lo] = t;
    if (a[hi] < a[lo]) t = a[hi], a[hi] = a[lo], a[lo] = t;
    if (a[hi] < a[mid]) t = a[hi], a[hi] = a[mid], a[mid] = t;
    p = a[mid];
    while (i <= j) {
      while (a[i] < p) i++;
      while (a[j] > p) j--;
      if (i <= j) t = a[i], a[i] = a[j], a[j] = t, i++, j--;
    }
    /* Now a[lo..j] <= p <= a[i..hi], and everything in between equals p. */
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return;
  }
}

PetscErrorCode CsMedianSqDist(PetscInt n, PetscInt dim, const double *Z, double *s2)
{
  ptrdiff_t np = (ptrdiff_t)n * (n > 0 ? n - 1 : 0) / 2, k = np / 2, c = 0;
  double   *d, *ZT, lower;

  PetscFunctionBeginUser;
  *s2 = 0;
  if (np == 0) PetscFunctionReturn(0);
  PetscCall(PetscMalloc1(np, &d));
  PetscCall(Transpose(n, dim, Z, &ZT));
  for (PetscInt i = 0; i + 1 < n; i++) {
    cs_sqdist_row_f64(d + c, Z + (size_t)i * dim, ZT, n, i + 1, dim);
    c += n - i - 1;
  }
  PetscCall(PetscFree(ZT));
  Select(d, np, k);
  if (np % 2) *s2 = d[k];
  else {
    lower = d[0];
    for (ptrdiff_t i = 1; i < k; i++) lower = d[i] > lower ? d[i] : lower;
    *s2 = (lower + d[k]) / 2;
  }
  PetscCall(PetscFree(d));
  PetscFunctionReturn(0);
}
