/* The metrics that compare the test groups of one context with each other: PerturBench's rank (rank_rmse,
   rank_cosine_logfc), Systema's centroid_accuracy and cell-eval's discrimination_score. See
   include/cellshift/eval.h. Each needs, for a group p, a row or a column of an n x n matrix of distances between the
   predictions and the truths of the context's n test groups; the entries are recomputed where needed rather than
   stored, so memory stays O(n G), and the groups are dealt out over the ranks (each value is computed by one rank
   and then shared, so it does not depend on the number of ranks). */
#include "evalimpl.h"
#include <math.h>

double CsEvalRMSE(PetscInt G, const double *a, const double *b)
{
  double s = 0;
  for (PetscInt j = 0; j < G; j++) s += (a[j] - b[j]) * (a[j] - b[j]);
  return G ? sqrt(s / (double)G) : 0.0;
}

double CsEvalLog(double v) { return log2((v > 0 ? v : 0.0) + 0.1); }

static void LogFC(PetscInt G, const double *m, const double *mC, double *out)
{
  for (PetscInt j = 0; j < G; j++) out[j] = CsEvalLog(m[j]) - CsEvalLog(mC[j]);
}

/* Whether gene j is an atom of condition c. */
static PetscBool IsTarget(CsEvaluator e, const CsCondition *c, PetscInt j)
{
  for (PetscInt k = 0; k < c->natoms; k++)
    if (e->atomgene[c->atoms[k]] == j) return PETSC_TRUE;
  return PETSC_FALSE;
}

/* L1 distance between the shifts of truth h and prediction p over the genes that are not an atom of p. */
static double L1Shift(CsEvaluator e, PetscInt p, PetscInt h, const double *mP)
{
  const CsCondition *c  = &e->d->conds[e->d->groups[e->test[p]].cond];
  const double      *mC = e->mC + (size_t)p * e->G, *mT = e->mT + (size_t)h * e->G, *mp = mP + (size_t)p * e->G;
  double             s  = 0;
  for (PetscInt j = 0; j < e->G; j++)
    if (!IsTarget(e, c, j)) s += fabs((mT[j] - mC[j]) - (mp[j] - mC[j]));
  return s;
}

/* #{x < own} + 0.5 #{x == own}, over the others. */
static double Below(double x, double own) { return x < own ? 1.0 : x == own ? 0.5 : 0.0; }

/* The four values of test group p (context of n >= 2 groups): val[0..3] = rank_rmse, rank_cosine_logfc,
   centroid_accuracy, discrimination_score. lP, lT [ntest x G]: logFCs of the predictions and truths. */
static void GroupValues(CsEvaluator e, const CsEvalModel *m, PetscInt p, const double *lP, const double *lT, double *val)
{
  PetscInt      G = e->G, ctx = e->d->groups[e->test[p]].ctx, n = 0;
  const double *mTp = e->mT + (size_t)p * G, *mPp = m->mP + (size_t)p * G;
  double        drow = CsEvalRMSE(G, mPp, mTp), sown = CsCosine(G, lP + (size_t)p * G, lT + (size_t)p * G), lown = L1Shift(e, p, p, m->mP);
  double        rr = 0, rc = 0, far = 0, rl = 0;

  for (PetscInt h = 0; h < e->ntest; h++) {
    if (e->d->groups[e->test[h]].ctx != ctx) continue;
    n++;
    if (h == p) continue;
    rr += Below(CsEvalRMSE(G, m->mP + (size_t)h * G, mTp), drow);                       /* prediction h against truth p */
    rc += Below(-CsCosine(G, lP + (size_t)h * G, lT + (size_t)p * G), -sown);     /* larger similarity ranks first */
    far += CsEvalRMSE(G, mPp, e->mT + (size_t)h * G) > drow ? 1.0 : 0.0;                /* truth h against prediction p */
    rl += Below(L1Shift(e, p, h, m->mP), lown);
  }
  val[0] = rr / n, val[1] = rc / n, val[2] = far / (n - 1), val[3] = 1 - rl / n;
}

PetscErrorCode CsEvalContextMetrics(CsEvaluator e, CsEvalModel *m)
{
  const CsMetric k[4] = {CS_M_RANK_RMSE, CS_M_RANK_COSINE, CS_M_CENTROID_ACC, CS_M_DISCRIMINATION};
  PetscInt       G = e->G, *nctx;
  double        *lP, *lT, *val;

  PetscFunctionBeginUser;
  PetscCall(PetscCalloc1(e->d->nctx + 1, &nctx));
  for (PetscInt t = 0; t < e->ntest; t++) nctx[e->d->groups[e->test[t]].ctx]++;
  PetscCall(PetscMalloc2((size_t)e->ntest * G, &lP, (size_t)e->ntest * G, &lT));
  PetscCall(PetscCalloc1(4 * (size_t)e->ntest, &val));
  for (PetscInt t = 0; t < e->ntest; t++) {
    LogFC(G, m->mP + (size_t)t * G, e->mC + (size_t)t * G, lP + (size_t)t * G);
    LogFC(G, e->mT + (size_t)t * G, e->mC + (size_t)t * G, lT + (size_t)t * G);
  }
  for (PetscInt t = e->rank; t < e->ntest; t += e->size)
    if (nctx[e->d->groups[e->test[t]].ctx] > 1) GroupValues(e, m, t, lP, lT, val + 4 * (size_t)t);
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, val, (PetscMPIInt)(4 * e->ntest), MPI_DOUBLE, MPI_SUM, e->comm));
  /* A context with a single test group has nothing to compare with. */
  for (PetscInt t = 0; t < e->ntest; t++)
    for (PetscInt i = 0; i < 4; i++) m->values[(size_t)t * CS_NMETRICS + k[i]] = nctx[e->d->groups[e->test[t]].ctx] > 1 ? val[4 * t + i] : NAN;
  PetscCall(PetscFree(val));
  PetscCall(PetscFree2(lP, lT));
  PetscCall(PetscFree(nctx));
  PetscFunctionReturn(0);
}
