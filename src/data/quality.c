/* Per-cell quality weights (-quality_weight, see include/cellshift/dataset.h). */
#include "dataimpl.h"
#include <math.h>

#define NBINS 65536

/* The median of v[0..n) over all ranks, to one bin of a NBINS histogram of [min, max] (integer counts, so the same
   for any rank count), taken at the bin's centre. NaN entries are left out. */
static PetscErrorCode RobustCentre(MPI_Comm comm, PetscInt n, const double v[], double *med)
{
  double   mm[2] = {INFINITY, INFINITY}, lo, hi;
  int64_t *h, total = 0, below = 0;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < n; i++)
    if (!isnan(v[i])) mm[0] = fmin(mm[0], v[i]), mm[1] = fmin(mm[1], -v[i]);
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, mm, 2, MPI_DOUBLE, MPI_MIN, comm));
  lo = mm[0], hi = -mm[1];
  if (!(hi > lo)) {
    *med = isfinite(lo) ? lo : 0;
    PetscFunctionReturn(0);
  }
  PetscCall(PetscCalloc1(NBINS, &h));
  for (PetscInt i = 0; i < n; i++)
    if (!isnan(v[i])) h[PetscMin(NBINS - 1, (PetscInt)((v[i] - lo) / (hi - lo) * NBINS))]++;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, h, NBINS, MPI_INT64_T, MPI_SUM, comm));
  for (PetscInt b = 0; b < NBINS; b++) total += h[b];
  for (PetscInt b = 0; b < NBINS; b++) {
    below += h[b];
    if (2 * below >= total) {
      *med = lo + (b + 0.5) * (hi - lo) / NBINS;
      break;
    }
  }
  PetscCall(PetscFree(h));
  PetscFunctionReturn(0);
}

/* Robust z-scores of v in place: (v - median) / (1.4826 MAD); all zeros when the MAD is 0. */
static PetscErrorCode RobustZ(MPI_Comm comm, PetscInt n, double v[])
{
  double med, mad, *d;

  PetscFunctionBeginUser;
  PetscCall(RobustCentre(comm, n, v, &med));
  PetscCall(PetscMalloc1(n + 1, &d));
  for (PetscInt i = 0; i < n; i++) d[i] = fabs(v[i] - med);
  PetscCall(RobustCentre(comm, n, d, &mad));
  for (PetscInt i = 0; i < n; i++) v[i] = mad > 0 ? (v[i] - med) / (1.4826 * mad) : 0;
  PetscCall(PetscFree(d));
  PetscFunctionReturn(0);
}

static PetscErrorCode QCWeights(CsDataset ds, double w[])
{
  PetscInt   n = ds->nlocal, nmito = 0;
  double    *lc, *lg, *mt;
  PetscBool *ismt;

  PetscFunctionBeginUser;
  CsCheckAll(ds->comm, ds->normalize && ds->libsize, "-quality_weight qc needs the raw counts: give -normalize");
  PetscCall(PetscMalloc4(n + 1, &lc, n + 1, &lg, n + 1, &mt, ds->ngenes + 1, &ismt));
  for (PetscInt j = 0; j < ds->ngenes; j++) {
    ismt[j] = !strncmp(ds->genes[j], "MT-", 3) || !strncmp(ds->genes[j], "mt-", 3) ? PETSC_TRUE : PETSC_FALSE;
    nmito += ismt[j];
  }
  for (PetscInt i = 0; i < n; i++) {
    PetscInt det = 0;
    double   m = 0;
    for (int64_t k = ds->X.indptr[i]; k < ds->X.indptr[i + 1]; k++) {
      if (ds->X.data[k] > 0) det++;
      /* X = log1p(count / total * 1e4), so expm1(X) / 1e4 is the gene's fraction of the cell's counts */
      if (ismt[ds->X.indices[k]]) m += expm1((double)ds->X.data[k]) * 1e-4;
    }
    lc[i] = log1p(ds->libsize[i]), lg[i] = log1p((double)det), mt[i] = m;
  }
  PetscCall(RobustZ(ds->comm, n, lc));
  PetscCall(RobustZ(ds->comm, n, lg));
  PetscCall(RobustZ(ds->comm, n, mt));
  for (PetscInt i = 0; i < n; i++) {
    double e1 = fmax(0, fabs(lc[i]) - 3), e2 = fmax(0, -lg[i] - 3), e3 = nmito ? fmax(0, mt[i] - 3) : 0;
    w[i] = exp(-0.5 * (e1 * e1 + e2 * e2 + e3 * e3));
  }
  PetscCall(PetscFree4(lc, lg, mt, ismt));
  PetscFunctionReturn(0);
}

static PetscErrorCode ObsWeights(CsDataset ds, double w[])
{
  char         col[256], *eq;
  CsObsColumn *c;
  PetscInt     bad = -1;

  PetscFunctionBeginUser;
  PetscCall(PetscStrncpy(col, ds->quality + 4, sizeof(col)));
  eq = strchr(col, '=');
  if (eq) *eq++ = 0;
  PetscCall(CsDatasetGetObs(ds, col, &c));
  CsCheckAll(ds->comm, c, "-quality_weight %s: %s has no obs column '%s'", ds->quality, ds->path, col);
  if (c->kind == CS_OBS_NUMERIC) {
    CsCheckAll(ds->comm, !eq, "-quality_weight %s: '%s' is numeric, its values are the weights (give obs:%s)", ds->quality, col, col);
    for (PetscInt i = 0; i < ds->nlocal; i++) {
      w[i] = c->values[i];
      if (!(isfinite(w[i]) && w[i] >= 0) && bad < 0) bad = i;
    }
    CsCheckAll(ds->comm, bad < 0, "-quality_weight %s: cell %" PetscInt_FMT " has the weight %g (weights must be finite and >= 0)", ds->quality,
               ds->rstart + bad, bad >= 0 ? w[bad] : 0.0);
  } else {
    PetscInt code = -1;
    CsCheckAll(ds->comm, eq && *eq, "-quality_weight %s: '%s' is categorical: give obs:%s=VALUE (weight 1 for cells with that value, 0 for the others)",
               ds->quality, col, col);
    for (PetscInt k = 0; k < c->ncat; k++)
      if (!strcmp(c->cats[k], eq)) code = k;
    CsCheckAll(ds->comm, code >= 0, "-quality_weight %s: obs column '%s' has no value '%s'", ds->quality, col, eq);
    for (PetscInt i = 0; i < ds->nlocal; i++) w[i] = c->codes[i] == code ? 1 : 0;
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsDatasetQualityWeights(CsDataset ds)
{
  double sum = 0;

  PetscFunctionBeginUser;
  PetscCall(PetscFree(ds->qweight));
  if (!ds->quality[0] || !strcmp(ds->quality, "none")) PetscFunctionReturn(0);
  CsCheckAll(ds->comm, !strcmp(ds->quality, "qc") || !strncmp(ds->quality, "obs:", 4), "-quality_weight %s: none, qc or obs:COLUMN[=VALUE]", ds->quality);
  CsCheckAll(ds->comm, !ds->streamed || strcmp(ds->quality, "qc"),
             "-quality_weight qc needs the rows in memory and is not available for a streamed dataset (-stream, -memory_limit): use obs:COLUMN");
  PetscCall(PetscMalloc1(ds->nlocal + 1, &ds->qweight));
  if (!strcmp(ds->quality, "qc")) PetscCall(QCWeights(ds, ds->qweight));
  else PetscCall(ObsWeights(ds, ds->qweight));
  for (PetscInt i = 0; i < ds->nlocal; i++) sum += ds->qweight[i];
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &sum, 1, MPI_DOUBLE, MPI_SUM, ds->comm));
  CsCheckAll(ds->comm, sum > 0, "-quality_weight %s: every cell has weight 0", ds->quality);
  PetscFunctionReturn(0);
}
