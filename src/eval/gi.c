/* Genetic interactions of the test doubles (Norman et al. 2019, as GEARS computes them): the shift of a double
   A+B fitted as c1 shift(A) + c2 shift(B) by Theil-Sen without intercept, for the measured and for the predicted
   double, and the GI type read from the fit. See include/cellshift/eval.h.

   Two-coefficient Theil-Sen (sklearn's TheilSenRegressor with fit_intercept=False, n_subsamples = 2, as GEARS
   calls it): every pair of genes (i, k) gives the exact solution of the 2 x 2 system [a_i b_i; a_k b_k] c =
   [y_i; y_k]; the estimate is the spatial (L1) median of those solutions, by Weiszfeld's iteration with the
   Vardi-Zhang step (a solution may coincide with the iterate). Pairs whose system is singular to rounding are
   skipped. More than -gi_max_pairs pairs are subsampled evenly over the pairs in (i, k) order (CsSubsample), where
   sklearn draws them at random. */
#include "evalimpl.h"
#include <float.h>
#include <math.h>

/* ---------------------------------------------------------------------------------------------------------------
   Kernels */

#define CS_GI_SM_ITER 1000
#define CS_GI_SM_RTOL 1e-12

/* One Weiszfeld step with the Vardi-Zhang modification from y [dim] into ynew: points within rounding of y count
   as coincident (eta of them) and are left out of the weighted mean T; ynew = max(0, 1 - eta/r) T + min(1, eta/r) y,
   r = |sum over the others of (x_i - y) / |x_i - y||. */
static void WeiszfeldStep(PetscInt n, PetscInt dim, const double *X, const double *y, double *ynew, double *num, double *dir)
{
  double ny = 0, wsum = 0, eta = 0, r = 0, eps;

  for (PetscInt k = 0; k < dim; k++) ny += y[k] * y[k], num[k] = 0, dir[k] = 0;
  eps = DBL_EPSILON * PetscMax(1.0, sqrt(ny));
  for (PetscInt i = 0; i < n; i++) {
    const double *x = X + (size_t)i * dim;
    double        d = 0;
    for (PetscInt k = 0; k < dim; k++) d += (x[k] - y[k]) * (x[k] - y[k]);
    d = sqrt(d);
    if (d <= eps) {
      eta += 1;
      continue;
    }
    wsum += 1 / d;
    for (PetscInt k = 0; k < dim; k++) num[k] += x[k] / d, dir[k] += (x[k] - y[k]) / d;
  }
  for (PetscInt k = 0; k < dim; k++) r += dir[k] * dir[k];
  r = sqrt(r);
  if (!(wsum > 0) || !(r > 0)) { /* every point coincides with y, or y is where the pulls cancel */
    for (PetscInt k = 0; k < dim; k++) ynew[k] = y[k];
    return;
  }
  for (PetscInt k = 0; k < dim; k++) ynew[k] = PetscMax(0.0, 1 - eta / r) * num[k] / wsum + PetscMin(1.0, eta / r) * y[k];
}

PetscErrorCode CsSpatialMedian(PetscInt n, PetscInt dim, const double *X, double *m)
{
  double *y, *work;

  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < dim; k++) m[k] = NAN;
  if (n < 1) PetscFunctionReturn(0);
  PetscCall(PetscMalloc2(dim, &y, 2 * dim, &work));
  for (PetscInt k = 0; k < dim; k++) m[k] = 0;
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt k = 0; k < dim; k++) m[k] += X[(size_t)i * dim + k];
  for (PetscInt k = 0; k < dim; k++) m[k] /= n;
  for (PetscInt it = 0; it < CS_GI_SM_ITER; it++) {
    double step = 0, norm = 0;
    WeiszfeldStep(n, dim, X, m, y, work, work + dim);
    for (PetscInt k = 0; k < dim; k++) step += (y[k] - m[k]) * (y[k] - m[k]), norm += y[k] * y[k], m[k] = y[k];
    if (sqrt(step) <= CS_GI_SM_RTOL * PetscMax(1.0, sqrt(norm))) break;
  }
  PetscCall(PetscFree2(y, work));
  PetscFunctionReturn(0);
}

/* A 2 x 2 system is taken as singular when its determinant is below this fraction of its terms. */
#define CS_GI_DET_RTOL 1e-12

PetscErrorCode CsTheilSen2(PetscInt n, const double *a, const double *b, const double *y, PetscInt max_pairs, double *c1, double *c2)
{
  int64_t  np64 = (int64_t)n * (n - 1) / 2;
  PetscInt np, q = 0, ns = 0;
  double  *sol, med[2];

  PetscFunctionBeginUser;
  *c1 = *c2 = NAN;
  if (n < 2) PetscFunctionReturn(0);
  PetscCheck(np64 <= PETSC_MAX_INT, PETSC_COMM_SELF, PETSC_ERR_SUP, "%" PetscInt_FMT " genes give too many pairs for Theil-Sen", n);
  np = (PetscInt)np64;
  PetscCall(PetscMalloc1(2 * (size_t)CsSubsampleSize(np, max_pairs) + 2, &sol));
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt k = i + 1; k < n; k++, q++) {
      double det, t1, t2;
      if (CsSubsampleIndex(q, np, max_pairs) < 0) continue;
      t1 = a[i] * b[k], t2 = a[k] * b[i], det = t1 - t2;
      if (!(fabs(det) > CS_GI_DET_RTOL * (fabs(t1) + fabs(t2)))) continue;
      sol[2 * ns]     = (y[i] * b[k] - y[k] * b[i]) / det;
      sol[2 * ns + 1] = (a[i] * y[k] - a[k] * y[i]) / det;
      ns++;
    }
  if (ns) {
    PetscCall(CsSpatialMedian(ns, 2, sol, med));
    *c1 = med[0], *c2 = med[1];
  }
  PetscCall(PetscFree(sol));
  PetscFunctionReturn(0);
}

/* Mean distance of point i to every point (row means of the distance matrix, which is symmetric). */
static void RowMeans(PetscInt n, PetscInt p, const double *X, double *mean, double *grand)
{
  *grand = 0;
  for (PetscInt i = 0; i < n; i++) {
    double s = 0;
    for (PetscInt j = 0; j < n; j++) {
      double d = 0;
      for (PetscInt k = 0; k < p; k++) d += (X[(size_t)i * p + k] - X[(size_t)j * p + k]) * (X[(size_t)i * p + k] - X[(size_t)j * p + k]);
      s += sqrt(d);
    }
    mean[i] = s / n, *grand += s;
  }
  *grand /= (double)n * n;
}

static double Dist(PetscInt p, const double *x, const double *y)
{
  double d = 0;
  for (PetscInt k = 0; k < p; k++) d += (x[k] - y[k]) * (x[k] - y[k]);
  return sqrt(d);
}

PetscErrorCode CsDistanceCorrelation(PetscInt n, PetscInt p, const double *X, PetscInt q, const double *Y, double *dcor)
{
  double *ma, *mb, ga, gb, sab = 0, saa = 0, sbb = 0, den;

  PetscFunctionBeginUser;
  *dcor = 0;
  if (n < 2) PetscFunctionReturn(0);
  PetscCall(PetscMalloc2(n, &ma, n, &mb));
  RowMeans(n, p, X, ma, &ga);
  RowMeans(n, q, Y, mb, &gb);
  /* The double-centred matrices entry by entry: O(n^2) time, O(n) memory. */
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt j = 0; j < n; j++) {
      double A = Dist(p, X + (size_t)i * p, X + (size_t)j * p) - ma[i] - ma[j] + ga;
      double B = Dist(q, Y + (size_t)i * q, Y + (size_t)j * q) - mb[i] - mb[j] + gb;
      sab += A * B, saa += A * A, sbb += B * B;
    }
  den = sqrt(saa * sbb);
  if (den > 0 && sab > 0) *dcor = sqrt(sab / den);
  PetscCall(PetscFree2(ma, mb));
  PetscFunctionReturn(0);
}

const char *const CsGITypeNames[] = {"synergy", "suppression", "neomorphism", "redundancy", "epistasis", NULL};

PetscErrorCode CsGIFitShifts(PetscInt n, const double *a, const double *b, const double *y, PetscInt max_pairs, CsGIFit *f)
{
  double *ab, *fit, da, db;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(f, sizeof(*f)));
  f->ngenes = n;
  PetscCall(CsTheilSen2(n, a, b, y, max_pairs, &f->c1, &f->c2));
  PetscCall(PetscMalloc2(2 * (size_t)n + 1, &ab, n + 1, &fit));
  for (PetscInt j = 0; j < n; j++) ab[2 * j] = a[j], ab[2 * j + 1] = b[j], fit[j] = f->c1 * a[j] + f->c2 * b[j];
  f->magnitude = sqrt(f->c1 * f->c1 + f->c2 * f->c2);
  f->dominance = fabs(log10(fabs(f->c1) / fabs(f->c2)));
  f->corr_fit  = isnan(f->c1) ? NAN : CsPearson(n, fit, y);
  PetscCall(CsDistanceCorrelation(n, 2, ab, 1, y, &f->dcor));
  PetscCall(CsDistanceCorrelation(n, 1, a, 1, b, &f->dcor_singles));
  PetscCall(CsDistanceCorrelation(n, 1, a, 1, y, &da));
  PetscCall(CsDistanceCorrelation(n, 1, b, 1, y, &db));
  f->eq_contr = PetscMax(da, db) > 0 ? PetscMin(da, db) / PetscMax(da, db) : NAN;
  f->type[CS_GI_SYNERGY]     = f->magnitude > 1.15 ? PETSC_TRUE : PETSC_FALSE;
  f->type[CS_GI_SUPPRESSION] = f->magnitude < 1 ? PETSC_TRUE : PETSC_FALSE;
  f->type[CS_GI_NEOMORPHISM] = f->corr_fit < 0.88 ? PETSC_TRUE : PETSC_FALSE;
  f->type[CS_GI_REDUNDANCY]  = f->dcor > 0.85 ? PETSC_TRUE : PETSC_FALSE;
  f->type[CS_GI_EPISTASIS]   = f->eq_contr < 0.28 ? PETSC_TRUE : PETSC_FALSE;
  PetscCall(PetscFree2(ab, fit));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------------------------------------------------------
   The analysis of the test doubles */

/* The group of the single-atom condition (atom, dose) in context ctx, -1 if it was not measured. */
static PetscInt SingleGroup(CsDesign d, PetscInt atom, double dose, PetscInt ctx)
{
  for (PetscInt c = 0; c < d->ncond; c++) {
    const CsCondition *k = &d->conds[c];
    if (k->natoms == 1 && k->atoms[0] == atom && k->doses[0] == dose) return CsDesignFindGroup(d, c, ctx);
  }
  return -1;
}

/* The genes the fits of test group t run on: control mean at least -gi_min_mean. */
static PetscInt GIGenes(CsEvaluator e, PetscInt t, PetscInt *genes)
{
  const double *mC = e->mC + (size_t)t * e->G;
  PetscInt      n  = 0;
  for (PetscInt j = 0; j < e->G; j++)
    if (mC[j] >= e->gi_min_mean) genes[n++] = j;
  return n;
}

#define CS_GI_PACK 14 /* doubles per packed fit */

static void Pack(const CsGIFit *f, double *v)
{
  v[0] = (double)f->ngenes, v[1] = f->c1, v[2] = f->c2, v[3] = f->magnitude, v[4] = f->dominance, v[5] = f->corr_fit, v[6] = f->dcor;
  v[7] = f->dcor_singles, v[8] = f->eq_contr;
  for (PetscInt y = 0; y < CS_GI_NTYPES; y++) v[9 + y] = f->type[y] ? 1.0 : 0.0;
}

static void Unpack(const double *v, CsGIFit *f)
{
  f->ngenes = (PetscInt)v[0], f->c1 = v[1], f->c2 = v[2], f->magnitude = v[3], f->dominance = v[4], f->corr_fit = v[5], f->dcor = v[6];
  f->dcor_singles = v[7], f->eq_contr = v[8];
  for (PetscInt y = 0; y < CS_GI_NTYPES; y++) f->type[y] = v[9 + y] != 0 ? PETSC_TRUE : PETSC_FALSE;
}

/* Collective: the fits of the qualifying doubles with double means mAB [ntest x G] (T's or P's): double i is fitted
   on rank i mod size, and the fits are shared. */
static PetscErrorCode FitDoubles(CsEvaluator e, const double *mAB, CsGIFit *fits)
{
  PetscInt G = e->G, *genes;
  double  *a, *b, *y, *packed;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc4(G + 1, &genes, G + 1, &a, G + 1, &b, G + 1, &y));
  PetscCall(PetscCalloc1((size_t)e->ngi * CS_GI_PACK + 1, &packed));
  for (PetscInt i = e->rank; i < e->ngi; i += e->size) {
    const CsEvalDouble *dbl = &e->gi[i];
    const double       *mC = e->mC + (size_t)dbl->t * G, *xy = mAB + (size_t)dbl->t * G;
    PetscInt            n  = GIGenes(e, dbl->t, genes);
    CsGIFit             f;
    for (PetscInt k = 0; k < n; k++) {
      PetscInt j = genes[k];
      a[k] = e->giA[(size_t)i * G + j] - mC[j], b[k] = e->giB[(size_t)i * G + j] - mC[j], y[k] = xy[j] - mC[j];
    }
    PetscCall(CsGIFitShifts(n, a, b, y, e->gi_max_pairs, &f));
    Pack(&f, packed + (size_t)i * CS_GI_PACK);
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, packed, (PetscMPIInt)(e->ngi * CS_GI_PACK), MPI_DOUBLE, MPI_SUM, e->comm));
  for (PetscInt i = 0; i < e->ngi; i++) Unpack(packed + (size_t)i * CS_GI_PACK, &fits[i]);
  PetscCall(PetscFree(packed));
  PetscCall(PetscFree4(genes, a, b, y));
  PetscFunctionReturn(0);
}

/* The qualifying doubles, in test order. */
static PetscErrorCode FindDoubles(CsEvaluator e)
{
  CsDesign d = e->d;

  PetscFunctionBeginUser;
  e->ndoubles = e->ngi = 0;
  PetscCall(PetscMalloc1(e->ntest + 1, &e->gi));
  for (PetscInt t = 0; t < e->ntest; t++) {
    const CsGroup     *g = &d->groups[e->test[t]];
    const CsCondition *c = &d->conds[g->cond];
    PetscInt           ga, gb;
    if (c->natoms != 2) continue;
    e->ndoubles++;
    ga = SingleGroup(d, c->atoms[0], c->doses[0], g->ctx), gb = SingleGroup(d, c->atoms[1], c->doses[1], g->ctx);
    if (ga < 0 || gb < 0) continue;
    e->gi[e->ngi].t = t, e->gi[e->ngi].a = ga, e->gi[e->ngi].b = gb, e->ngi++;
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsEvalGISetUp(CsEvaluator e)
{
  PetscInt   G = e->G;
  PetscBool *want;
  double    *means;

  PetscFunctionBeginUser;
  PetscCall(FindDoubles(e));
  PetscCall(PetscMalloc2((size_t)e->ngi * G + 1, &e->giA, (size_t)e->ngi * G + 1, &e->giB));
  PetscCall(PetscMalloc1(e->ngi + 1, &e->gitrue));
  if (!e->ngi) PetscFunctionReturn(0);
  PetscCall(PetscCalloc1(e->d->ngroups + 1, &want));
  for (PetscInt i = 0; i < e->ngi; i++) want[e->gi[i].a] = want[e->gi[i].b] = PETSC_TRUE;
  PetscCall(PetscMalloc1((size_t)e->d->ngroups * G + 1, &means));
  PetscCall(CsDesignGroupMeans(e->d, e->ds, want, means));
  for (PetscInt i = 0; i < e->ngi; i++) {
    PetscCall(PetscArraycpy(e->giA + (size_t)i * G, means + (size_t)e->gi[i].a * G, G));
    PetscCall(PetscArraycpy(e->giB + (size_t)i * G, means + (size_t)e->gi[i].b * G, G));
  }
  PetscCall(PetscFree(means));
  PetscCall(PetscFree(want));
  PetscCall(FitDoubles(e, e->mT, e->gitrue));
  PetscFunctionReturn(0);
}

PetscErrorCode CsEvalGIScore(CsEvaluator e, CsEvalModel *m)
{
  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(e->ngi + 1, &m->gi));
  if (e->ngi) PetscCall(FitDoubles(e, m->mP, m->gi));
  PetscFunctionReturn(0);
}

PetscErrorCode CsEvalGIFree(CsEvaluator e)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree(e->gi));
  PetscCall(PetscFree2(e->giA, e->giB));
  PetscCall(PetscFree(e->gitrue));
  e->ngi = e->ndoubles = 0;
  PetscFunctionReturn(0);
}

/* How strongly a fit shows type y, larger = more (NaN last). */
static double TypeScore(const CsGIFit *f, CsGIType y)
{
  double v = y == CS_GI_SYNERGY ? f->magnitude : y == CS_GI_SUPPRESSION ? -f->magnitude : y == CS_GI_NEOMORPHISM ? -f->corr_fit
           : y == CS_GI_REDUNDANCY                                       ? f->dcor
                                                                         : -f->eq_contr;
  return isnan(v) ? -INFINITY : v;
}

void CsEvalGIPrecision(CsEvaluator e, const CsEvalModel *m, CsGIType y, PetscInt k, double *precision, double *random)
{
  PetscInt ntrue = 0, hit = 0;

  *precision = *random = NAN;
  if (e->ngi < 2 * k) return;
  for (PetscInt i = 0; i < e->ngi; i++) ntrue += e->gitrue[i].type[y];
  /* Rank of double i among the predictions: the number of doubles ranked before it (ties by test order). */
  for (PetscInt i = 0; i < e->ngi; i++) {
    double   si = TypeScore(&m->gi[i], y);
    PetscInt before = 0;
    for (PetscInt h = 0; h < e->ngi; h++) {
      double sh = TypeScore(&m->gi[h], y);
      before += sh > si || (sh == si && h < i);
    }
    if (before < k) hit += e->gitrue[i].type[y];
  }
  *precision = hit / (double)k;
  *random    = ntrue / (double)e->ngi;
}
