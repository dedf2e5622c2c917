/* Metric kernels against hand-computed values, scipy values and naive O(n^2) reference loops written here. */
#include "testing.h"
#include <cellshift/eval.h>
#include <cellshift/rng.h>

static double NaiveDist(PetscInt dim, const double *a, const double *b)
{
  double s = 0;
  for (PetscInt d = 0; d < dim; d++) s += (a[d] - b[d]) * (a[d] - b[d]);
  return s;
}

/* Reference energy distance / MMD with plain loops over ordered pairs (i != j within a set). */
static void NaiveEnergyMMD(PetscInt n, PetscInt m, PetscInt dim, const double *X, const double *Y, double s2,
                           double *energy, double *mmd)
{
  double dxy = 0, dxx = 0, dyy = 0, kxy = 0, kxx = 0, kyy = 0;
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt j = 0; j < m; j++) {
      double q = NaiveDist(dim, X + i * dim, Y + j * dim);
      dxy += sqrt(q), kxy += exp(-q / (2 * s2));
    }
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt j = 0; j < n; j++)
      if (i != j) {
        double q = NaiveDist(dim, X + i * dim, X + j * dim);
        dxx += sqrt(q), kxx += exp(-q / (2 * s2));
      }
  for (PetscInt i = 0; i < m; i++)
    for (PetscInt j = 0; j < m; j++)
      if (i != j) {
        double q = NaiveDist(dim, Y + i * dim, Y + j * dim);
        dyy += sqrt(q), kyy += exp(-q / (2 * s2));
      }
  *energy = 2 * dxy / (n * m) - dxx / (n * (n - 1.0)) - dyy / (m * (m - 1.0));
  *mmd    = kxx / (n * (n - 1.0)) + kyy / (m * (m - 1.0)) - 2 * kxy / (n * m);
}

static int CmpDouble(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double NaiveMedianSqDist(PetscInt n, PetscInt dim, const double *Z)
{
  PetscInt np = n * (n - 1) / 2, c = 0;
  double  *d = malloc(sizeof(double) * (size_t)np), med;
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt j = i + 1; j < n; j++) d[c++] = NaiveDist(dim, Z + i * dim, Z + j * dim);
  qsort(d, (size_t)np, sizeof(double), CmpDouble);
  med = np % 2 ? d[np / 2] : 0.5 * (d[np / 2 - 1] + d[np / 2]);
  free(d);
  return med;
}

static PetscErrorCode TestCorrelations(void)
{
  double x[] = {1, 2, 3, 4}, y[] = {1, 3, 2, 4}, z[] = {2, 4, 6, 8}, r[] = {4, 3, 2, 1};
  double c1[] = {0.1, 0.1, 0.1, 0.1}, zero[] = {0, 0, 0, 0};
  double a[] = {3, 4}, b[] = {4, 3}, e1[] = {1, 0}, e11[] = {1, 1};

  PetscFunctionBeginUser;
  /* Deviations (-1.5, -.5, .5, 1.5) and (-1.5, .5, -.5, 1.5): sxy = 4, sxx = syy = 5. */
  CS_EXPECT_CLOSE(CsPearson(4, x, y), 0.8, 1e-15, "pearson hand case");
  CS_EXPECT_CLOSE(CsPearson(4, x, z), 1.0, 1e-15, "pearson of a linear image");
  CS_EXPECT_CLOSE(CsPearson(4, x, r), -1.0, 1e-15, "pearson of a reversed image");
  /* 0.1 is not exact in binary: a two-pass formula would see rounding noise, not a constant. */
  CS_EXPECT(CsPearson(4, x, c1) == 0.0, "pearson with a constant vector must be 0");
  CS_EXPECT(CsPearson(4, c1, x) == 0.0, "pearson with a constant vector must be 0");
  CS_EXPECT(CsPearson(4, zero, zero) == 0.0, "pearson of zero vectors must be 0");
  CS_EXPECT(CsPearson(1, x, y) == 0.0, "pearson of one point must be 0");
  CS_EXPECT_CLOSE(CsCosine(2, a, b), 24.0 / 25.0, 1e-15, "cosine hand case");
  CS_EXPECT_CLOSE(CsCosine(2, e1, e11), 1.0 / sqrt(2.0), 1e-15, "cosine at 45 degrees");
  CS_EXPECT(CsCosine(4, x, zero) == 0.0, "cosine with a zero vector must be 0");
  CS_EXPECT_CLOSE(CsCosine(4, c1, c1), 1.0, 1e-15, "cosine of a constant vector with itself");
  PetscFunctionReturn(0);
}

static PetscErrorCode TestWelchTop(void)
{
  double   m1[] = {1, 2, 5, 0}, v1[] = {1, 0, 0, 2}, m2[] = {0, 2, 3, 1}, v2[] = {3, 0, 0, 1}, t[4];
  double   tt[] = {0, -3, 2, 3, -2, 0, 1, NAN};
  PetscInt idx[10], found;

  PetscFunctionBeginUser;
  CsWelchT(4, m1, v1, 4, m2, v2, 3, t);
  CS_EXPECT_CLOSE(t[0], 1.0 / sqrt(0.25 + 1.0), 1e-15, "welch t");
  CS_EXPECT(t[1] == 0.0, "welch t with zero variances and equal means is 0");
  CS_EXPECT(t[2] == 0.0, "welch t with zero variances is 0 even when the means differ");
  CS_EXPECT_CLOSE(t[3], -1.0 / sqrt(0.5 + 1.0 / 3.0), 1e-15, "welch t negative");
  {
    /* rounding noise around 0 (the control is 0 in every cell) is no difference; 2e-6 is one */
    double a[] = {2e-16, 2e-6, 3.0 + 2e-6, 3.0 + 4e-6}, va[] = {3e-32, 1e-12, 1, 1}, b[] = {0, 0, 3, 3}, vb[] = {0, 0, 1, 1}, u[4];
    CsWelchT(4, a, va, 100, b, vb, 50, u);
    CS_EXPECT(u[0] == 0.0 && u[1] != 0.0, "welch t at the noise floor: %g %g", u[0], u[1]);
    CS_EXPECT(u[2] == 0.0 && u[3] != 0.0, "welch t below 1e-6 relative to the means: %g %g", u[2], u[3]);
  }

  PetscCall(CsTopAbs(8, tt, 3, idx, &found));
  CS_EXPECT(found == 3 && idx[0] == 1 && idx[1] == 3 && idx[2] == 2, "top-3 |t| with ties by index: got %d %d %d (%d)",
            (int)idx[0], (int)idx[1], (int)idx[2], (int)found);
  PetscCall(CsTopAbs(8, tt, 10, idx, &found));
  CS_EXPECT(found == 5, "zeros and NaN are never DE: found %d", (int)found);
  CS_EXPECT(idx[0] == 1 && idx[1] == 3 && idx[2] == 2 && idx[3] == 4 && idx[4] == 6, "full DE order");
  PetscCall(CsTopAbs(3, t + 1, 4, idx, &found)); /* {0, 0, -x}: one DE gene */
  CS_EXPECT(found == 1 && idx[0] == 2, "single non-zero t");
  {
    /* |t| = 1 in exact arithmetic, a few ulps apart in floating point: ties, ordered by index. */
    double near[] = {0.5, 1.0000000000000007, -0.9999999999999996, 1.0000000000000004, -1.0, 1.25};
    PetscCall(CsTopAbs(6, near, 6, idx, &found));
    CS_EXPECT(found == 6 && idx[0] == 5 && idx[1] == 1 && idx[2] == 2 && idx[3] == 3 && idx[4] == 4 && idx[5] == 0,
              "values equal up to rounding must tie: got %d %d %d %d %d %d", (int)idx[0], (int)idx[1], (int)idx[2], (int)idx[3],
              (int)idx[4], (int)idx[5]);
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode TestDistancesByHand(void)
{
  double X1[] = {0, 1}, Y1[] = {3}, X2[] = {0, 0, 3, 4}, Y2[] = {0, 0, 0, 1}, e, mmd, s2;
  double P3[] = {0, 1, 3}, P4[] = {0, 1, 3, 7}, same[] = {2, 2, 2, 2, 2};

  PetscFunctionBeginUser;
  /* 1-D: cross mean (3 + 2)/2, within X = 1, within a single point = 0. */
  PetscCall(CsEnergyDistance(2, 1, 1, X1, Y1, &e));
  CS_EXPECT_CLOSE(e, 4.0, 1e-15, "energy distance 1-D hand case");
  /* 2-D: cross distances 0, 1, 5, sqrt(18); within X = 5, within Y = 1. */
  PetscCall(CsEnergyDistance(2, 2, 2, X2, Y2, &e));
  CS_EXPECT_CLOSE(e, (6 + sqrt(18.0)) / 2 - 6, 1e-15, "energy distance 2-D hand case");
  PetscCall(CsEnergyDistance(2, 2, 2, X2, X2, &e));
  CS_EXPECT_CLOSE(e, 2 * 10.0 / 4 - 2 * 5.0, 1e-15, "energy distance of a set with itself");
  PetscCall(CsEnergyDistance(5, 5, 1, same, same, &e));
  CS_EXPECT(e == 0.0, "energy distance of coincident points must be exactly 0 (got %g)", e);

  /* MMD of {0, 1} with itself, s2 = 1/2: kernel k = exp(-1) between the two points; 2k - 2 (2k + 2)/4 = k - 1. */
  PetscCall(CsMMDRBF(2, 2, 1, X1, X1, 0.5, &mmd));
  CS_EXPECT_CLOSE(mmd, exp(-1.0) - 1.0, 1e-15, "MMD of a set with itself");
  PetscCall(CsMMDRBF(2, 1, 1, X1, Y1, 2.0, &mmd));
  CS_EXPECT_CLOSE(mmd, exp(-0.25) - (exp(-9.0 / 4) + exp(-4.0 / 4)), 1e-15, "MMD hand case");
  PetscCall(CsMMDRBF(5, 5, 1, same, same, 1.0, &mmd));
  CS_EXPECT_CLOSE(mmd, 0.0, 1e-15, "MMD of coincident points");

  PetscCall(CsMedianSqDist(3, 1, P3, &s2));
  CS_EXPECT(s2 == 4.0, "median of {1, 9, 4} (got %g)", s2);
  PetscCall(CsMedianSqDist(4, 1, P4, &s2));
  CS_EXPECT(s2 == 12.5, "median of {1, 9, 49, 4, 36, 16} (got %g)", s2);
  PetscCall(CsMedianSqDist(5, 1, same, &s2));
  CS_EXPECT(s2 == 0.0, "median of coincident points");
  PetscCall(CsMedianSqDist(1, 1, same, &s2));
  CS_EXPECT(s2 == 0.0, "median without pairs");
  PetscFunctionReturn(0);
}

static PetscErrorCode TestDistancesRandom(void)
{
  const PetscInt n = 130, m = 97, dim = 9;
  double        *X, *Y, e, mmd, s2, ref_e, ref_mmd;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc2(n * dim, &X, m * dim, &Y));
  for (PetscInt i = 0; i < n * dim; i++) X[i] = 2 * CsRngUniform(7, CS_STREAM_DATA, 0, (uint64_t)i) + 0.3;
  for (PetscInt i = 0; i < m * dim; i++) Y[i] = 3 * CsRngUniform(7, CS_STREAM_DATA, 1, (uint64_t)i);
  /* Repeat a few points so ties occur among the distances. */
  for (PetscInt d = 0; d < dim; d++) X[5 * dim + d] = X[d], Y[3 * dim + d] = X[d];
  PetscCall(CsMedianSqDist(n, dim, X, &s2));
  CS_EXPECT_CLOSE(s2, NaiveMedianSqDist(n, dim, X), 1e-15, "median vs sorting (even count of pairs)");
  PetscCall(CsMedianSqDist(m, dim, Y, &s2));
  CS_EXPECT_CLOSE(s2, NaiveMedianSqDist(m, dim, Y), 1e-15, "median vs sorting (odd count of pairs)");
  PetscCall(CsEnergyDistance(n, m, dim, X, Y, &e));
  PetscCall(CsMMDRBF(n, m, dim, X, Y, s2, &mmd));
  NaiveEnergyMMD(n, m, dim, X, Y, s2, &ref_e, &ref_mmd);
  CS_EXPECT_CLOSE(e, ref_e, 1e-12, "energy distance vs naive loops");
  CS_EXPECT_CLOSE(mmd, ref_mmd, 1e-12, "MMD vs naive loops");
  CS_EXPECT(e > 0.1 && mmd > 0.01, "shifted sets must be apart (energy %g, mmd %g)", e, mmd);
  PetscCall(PetscFree2(X, Y));
  PetscFunctionReturn(0);
}

/* Naive Mann-Whitney: every value materialised, mid-ranks by counting, the same formula. */
static double NaiveMWU(PetscInt nx, const double *x, PetscInt ny, const double *y)
{
  PetscInt n = nx + ny;
  double  *v = malloc(sizeof(double) * (size_t)n), rx = 0, ties = 0, u1, u, s, z;
  for (PetscInt i = 0; i < nx; i++) v[i] = x[i];
  for (PetscInt i = 0; i < ny; i++) v[nx + i] = y[i];
  for (PetscInt i = 0; i < nx; i++) {
    double below = 0, equal = 0;
    for (PetscInt k = 0; k < n; k++) below += v[k] < v[i], equal += v[k] == v[i];
    rx += below + (equal + 1) / 2;
  }
  for (PetscInt i = 0; i < n; i++) { /* each tie block counted once, at its first member */
    double c = 0;
    int    first = 1;
    for (PetscInt k = 0; k < n; k++) c += v[k] == v[i], first = first && !(k < i && v[k] == v[i]);
    if (first) ties += c * c * c - c;
  }
  free(v);
  u1 = rx - nx * (nx + 1.0) / 2, u = fmax(u1, (double)nx * ny - u1);
  s  = sqrt(nx * (double)ny / 12 * ((n + 1) - ties / ((double)n * (n - 1))));
  if (!(s > 0)) return 1.0;
  z = (u - nx * (double)ny / 2 - 0.5) / s;
  return fmin(1.0, erfc(z / sqrt(2.0)));
}

static int CmpFloat(const void *a, const void *b)
{
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* The nonzero values of v[n] sorted into nz, their count returned. */
static PetscInt Nonzeros(PetscInt n, const double *v, float *nz)
{
  PetscInt k = 0;
  for (PetscInt i = 0; i < n; i++)
    if (v[i] != 0) nz[k++] = (float)v[i];
  qsort(nz, (size_t)k, sizeof(float), CmpFloat);
  return k;
}

static PetscErrorCode TestDE(void)
{
  double   x[] = {1, 2, 3}, y[] = {4, 5, 6}, xz[] = {0, 0, 1.5, -1, 2, 2}, yz[] = {0, 0, 0, 2, 3, -1, -1, 0.5};
  float    fx[8], fy[8];
  PetscInt kx, ky;

  PetscFunctionBeginUser;
  /* scipy.stats.mannwhitneyu(..., method="asymptotic").pvalue */
  kx = Nonzeros(3, x, fx), ky = Nonzeros(3, y, fy);
  CS_EXPECT_CLOSE(CsMannWhitneyP(3, kx, fx, 3, ky, fy), 0.08085559837005224, 1e-14, "Mann-Whitney without ties");
  kx = Nonzeros(6, xz, fx), ky = Nonzeros(8, yz, fy);
  CS_EXPECT_CLOSE(CsMannWhitneyP(6, kx, fx, 8, ky, fy), 0.7390116047786738, 1e-14, "Mann-Whitney with zeros, negatives and ties");
  CS_EXPECT(CsMannWhitneyP(4, 0, fx, 4, 0, fy) == 1.0, "all values tie: p = 1");
  CS_EXPECT(CsMannWhitneyP(0, 0, fx, 4, 0, fy) == 1.0, "empty sample: p = 1");
  for (PetscInt r = 0; r < 20; r++) { /* random sparse samples with many ties against the naive loops */
    double a[60], b[45];
    float  fa[60], fb[45];
    for (PetscInt i = 0; i < 60; i++) a[i] = CsRngUniform(3, CS_STREAM_DATA, (uint64_t)r, (uint64_t)i) < 0.6 ? 0 : floor(8 * CsRngUniform(3, CS_STREAM_DATA, 100 + (uint64_t)r, (uint64_t)i)) / 4 - 0.5;
    for (PetscInt i = 0; i < 45; i++) b[i] = CsRngUniform(4, CS_STREAM_DATA, (uint64_t)r, (uint64_t)i) < 0.5 ? 0 : floor(8 * CsRngUniform(4, CS_STREAM_DATA, 100 + (uint64_t)r, (uint64_t)i)) / 4;
    kx = Nonzeros(60, a, fa), ky = Nonzeros(45, b, fb);
    CS_EXPECT_CLOSE(CsMannWhitneyP(60, kx, fa, 45, ky, fb), NaiveMWU(60, a, 45, b), 1e-13, "Mann-Whitney vs naive ranks");
  }
  {
    double p[] = {0.01, 0.04, 0.03, 0.2, 0.04, 0.9}, q[6], want[6];
    /* q_i = min over p_j >= p_i of p_j n / rank(p_j) (n = 6, ranks 1..6 of the sorted p) */
    double sorted[] = {0.01, 0.03, 0.04, 0.04, 0.2, 0.9};
    for (PetscInt i = 0; i < 6; i++) {
      want[i] = 1;
      for (PetscInt r = 0; r < 6; r++)
        if (sorted[r] >= p[i]) want[i] = fmin(want[i], sorted[r] * 6 / (r + 1));
    }
    PetscCall(CsBenjaminiHochberg(6, p, q));
    for (PetscInt i = 0; i < 6; i++) CS_EXPECT_CLOSE(q[i], want[i], 1e-15, "Benjamini-Hochberg");
    CS_EXPECT_CLOSE(q[1], 0.06, 1e-15, "BH of the tied 0.04: 0.04 * 6 / 4");
  }
  {
    double mX[] = {0, 1, 0.5, -0.2, 0}, mC[] = {0, 0, 0.5, 0.3, 0.7}, lfc[5];
    CsLog2FoldChange(5, mX, mC, lfc);
    CS_EXPECT_CLOSE(lfc[0], log2(20.0), 1e-15, "zero reference clips to 20 (pdex)");
    CS_EXPECT_CLOSE(lfc[1], log2(20.0), 1e-15, "zero reference clips to 20");
    CS_EXPECT(lfc[2] == 0, "equal means: log2 FC 0");
    CS_EXPECT(lfc[3] == 0, "a negative predicted mean: 0 as cell-eval fills NaN");
    CS_EXPECT_CLOSE(lfc[4], -log2(20.0), 1e-15, "zero group mean clips to 1/20");
  }
  {
    double    t[] = {0.5, -3, 0, 3, 2.0000000000000004, -2, 7};
    PetscBool mask[] = {PETSC_TRUE, PETSC_TRUE, PETSC_TRUE, PETSC_TRUE, PETSC_TRUE, PETSC_TRUE, PETSC_FALSE};
    PetscInt  idx[7], n, tset[] = {3, 1, 5}, pset[] = {1, 4, 3, 5};
    double    ov;
    PetscCall(CsRankAbs(7, t, mask, idx, &n));
    CS_EXPECT(n == 6 && idx[0] == 1 && idx[1] == 3 && idx[2] == 4 && idx[3] == 5 && idx[4] == 0 && idx[5] == 2,
              "rank by |t| with ties by index, zeros kept, masked out left out");
    PetscCall(CsDEOverlap(3, tset, 4, pset, &ov)); /* first 3 predicted {1, 4, 3}: 2 of the 3 true */
    CS_EXPECT_CLOSE(ov, 2.0 / 3, 1e-15, "overlap of the top-k");
    PetscCall(CsDEOverlap(0, tset, 4, pset, &ov));
    CS_EXPECT(ov == 0, "no true DE genes: 0");
    PetscCall(CsDEOverlap(3, tset, 1, pset, &ov));
    CS_EXPECT_CLOSE(ov, 1.0 / 3, 1e-15, "fewer predicted than true");
  }
  PetscFunctionReturn(0);
}

/* Distance correlation with the n x n matrices written out. */
static double NaiveDcor(PetscInt n, PetscInt p, const double *X, PetscInt q, const double *Y)
{
  double *A = malloc(sizeof(double) * (size_t)(n * n)), *B = malloc(sizeof(double) * (size_t)(n * n)), ra[64], rb[64], ga = 0, gb = 0, sab = 0, saa = 0, sbb = 0;
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt j = 0; j < n; j++) A[i * n + j] = sqrt(NaiveDist(p, X + i * p, X + j * p)), B[i * n + j] = sqrt(NaiveDist(q, Y + i * q, Y + j * q));
  for (PetscInt i = 0; i < n; i++) {
    ra[i] = rb[i] = 0;
    for (PetscInt j = 0; j < n; j++) ra[i] += A[i * n + j] / n, rb[i] += B[i * n + j] / n;
    ga += ra[i] / n, gb += rb[i] / n;
  }
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt j = 0; j < n; j++) {
      double a = A[i * n + j] - ra[i] - ra[j] + ga, b = B[i * n + j] - rb[i] - rb[j] + gb;
      sab += a * b, saa += a * a, sbb += b * b;
    }
  free(A), free(B);
  return sqrt(sab / sqrt(saa * sbb));
}

static PetscErrorCode TestGI(void)
{
  const PetscInt n = 40;
  double         a[40], b[40], y[40], c1, c2, d, m[2], xy[80];
  CsGIFit        f;

  PetscFunctionBeginUser;
  {
    double square[] = {0, 0, 2, 0, 0, 2, 2, 2, 1, 1}, line[] = {-1, 0, 0, 0, 1, 0, 5, 0, 0.5, 0};
    PetscCall(CsSpatialMedian(5, 2, square, m));
    CS_EXPECT_CLOSE(m[0], 1, 1e-12, "spatial median of a square and its centre");
    CS_EXPECT_CLOSE(m[1], 1, 1e-12, "spatial median of a square and its centre");
    PetscCall(CsSpatialMedian(5, 2, line, m)); /* on a line: the middle point (the iterate reaches a data point) */
    CS_EXPECT_CLOSE(m[0], 0.5, 1e-9, "spatial median of collinear points");
    CS_EXPECT(fabs(m[1]) < 1e-15, "spatial median of collinear points stays on the line");
  }
  for (PetscInt j = 0; j < n; j++) {
    a[j] = sin(1.3 * j + 0.2), b[j] = cos(0.7 * j * j + 1);
    y[j] = 2 * a[j] - 0.5 * b[j] + (j % 5 == 3 ? 4 * sin(5.0 * j) : 0); /* one gene in five is an outlier */
  }
  PetscCall(CsTheilSen2(n, a, b, y, 100000, &c1, &c2));
  CS_EXPECT_CLOSE(c1, 2, 1e-9, "Theil-Sen ignores 20% outliers (c1)");
  CS_EXPECT_CLOSE(c2, -0.5, 1e-9, "Theil-Sen ignores 20% outliers (c2)");
  PetscCall(CsTheilSen2(n, a, b, y, 100, &c1, &c2)); /* 780 pairs subsampled to 100 */
  CS_EXPECT(fabs(c1 - 2) < 0.05 && fabs(c2 + 0.5) < 0.05, "Theil-Sen on subsampled pairs (%g, %g)", c1, c2);
  PetscCall(CsTheilSen2(1, a, b, y, 10, &c1, &c2));
  CS_EXPECT(isnan(c1) && isnan(c2), "Theil-Sen without a pair is NaN");

  PetscCall(CsDistanceCorrelation(n, 1, a, 1, a, &d));
  CS_EXPECT_CLOSE(d, 1, 1e-12, "dcor of a vector with itself");
  for (PetscInt j = 0; j < n; j++) y[j] = 3 - 2 * a[j], xy[2 * j] = a[j], xy[2 * j + 1] = b[j];
  PetscCall(CsDistanceCorrelation(n, 1, a, 1, y, &d));
  CS_EXPECT_CLOSE(d, 1, 1e-12, "dcor with an affine image");
  for (PetscInt j = 0; j < n; j++) y[j] = a[j] * a[j];
  PetscCall(CsDistanceCorrelation(n, 2, xy, 1, y, &d));
  CS_EXPECT_CLOSE(d, NaiveDcor(n, 2, xy, 1, y), 1e-12, "dcor of 2-D rows vs the matrices");
  PetscCall(CsDistanceCorrelation(n, 1, a, 1, b, &d));
  CS_EXPECT_CLOSE(d, NaiveDcor(n, 1, a, 1, b), 1e-12, "dcor vs the matrices");

  for (PetscInt j = 0; j < n; j++) y[j] = a[j] + b[j];
  PetscCall(CsGIFitShifts(n, a, b, y, 100000, &f));
  CS_EXPECT_CLOSE(f.c1, 1, 1e-9, "additive double: c1 = 1");
  CS_EXPECT_CLOSE(f.c2, 1, 1e-9, "additive double: c2 = 1");
  CS_EXPECT_CLOSE(f.magnitude, sqrt(2.0), 1e-9, "additive double: magnitude sqrt 2");
  CS_EXPECT(f.dominance < 1e-8 && f.corr_fit > 1 - 1e-12 && f.ngenes == n, "additive double: no dominance, exact fit");
  CS_EXPECT(f.type[CS_GI_SYNERGY] && !f.type[CS_GI_SUPPRESSION] && !f.type[CS_GI_NEOMORPHISM], "additive double types");
  for (PetscInt j = 0; j < n; j++) y[j] = 0.3 * a[j];
  PetscCall(CsGIFitShifts(n, a, b, y, 100000, &f));
  CS_EXPECT(f.type[CS_GI_SUPPRESSION] && f.dominance > 5 && f.type[CS_GI_EPISTASIS], "a double that follows one single, weakly");
  PetscFunctionReturn(0);
}

static PetscErrorCode Body(void)
{
  PetscFunctionBeginUser;
  PetscCall(TestCorrelations());
  PetscCall(TestWelchTop());
  PetscCall(TestDistancesByHand());
  PetscCall(TestDistancesRandom());
  PetscCall(TestDE());
  PetscCall(TestGI());
  PetscFunctionReturn(0);
}

int main(int argc, char **argv) { return CsTestMain(argc, argv, Body); }
