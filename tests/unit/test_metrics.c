/* Metric kernels against hand-computed values and against naive O(n^2) reference loops written here. */
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

static PetscErrorCode Body(void)
{
  PetscFunctionBeginUser;
  PetscCall(TestCorrelations());
  PetscCall(TestWelchTop());
  PetscCall(TestDistancesByHand());
  PetscCall(TestDistancesRandom());
  PetscFunctionReturn(0);
}

int main(int argc, char **argv) { return CsTestMain(argc, argv, Body); }
