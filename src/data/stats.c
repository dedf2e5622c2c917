/* Exact group statistics of CSR rows: the one definition of a group mean, shared by the models built on means
   and by the evaluation. See CsCSRGroupStats in include/cellshift/dataset.h.

   Sums of the float32 values are accumulated in double-double and reduced with a double-double MPI operation,
   so a mean is the correctly rounded mean of its values whatever the number of ranks and the order of the rows:
   predictions that copy the control cells then have m(P) - m(C) exactly 0. */
#include <cellshift/design.h>

/* x added to the double-double (hi, lo): hi keeps the rounded running sum, lo gathers the rounding errors. */
static inline void DDAccumulate(double *hi, double *lo, double x)
{
  double s = *hi + x, bb = s - *hi;
  *lo += (*hi - (s - bb)) + (x - bb);
  *hi = s;
}

/* MPI operation on (hi, lo) pairs. */
static void DDReduce(void *in, void *inout, int *len, MPI_Datatype *type)
{
  const double *a = (const double *)in;
  double       *b = (double *)inout;
  (void)type;
  for (int i = 0; i < *len; i++) {
    double s = a[2 * i] + b[2 * i], bb = s - a[2 * i], err = (a[2 * i] - (s - bb)) + (b[2 * i] - bb);
    err += a[2 * i + 1] + b[2 * i + 1];
    b[2 * i]     = s + err;
    b[2 * i + 1] = err - (b[2 * i] - s);
  }
}

static PetscErrorCode DDAllreduce(MPI_Comm comm, double *dd, size_t n)
{
  MPI_Datatype ddtype;
  MPI_Op       ddop;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Type_contiguous(2, MPI_DOUBLE, &ddtype));
  PetscCallMPI(MPI_Type_commit(&ddtype));
  PetscCallMPI(MPI_Op_create(DDReduce, 1, &ddop));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, dd, (PetscMPIInt)n, ddtype, ddop, comm));
  PetscCallMPI(MPI_Op_free(&ddop));
  PetscCallMPI(MPI_Type_free(&ddtype));
  PetscFunctionReturn(0);
}

/* The rows of a group statistic: one CSR (in memory) or a streamed dataset's rows, chunk by chunk. */
typedef struct {
  const CsCSR *X;  /* in memory */
  CsDataset    ds; /* streamed */
  PetscInt     nchunks, chunk;
} Rows;

static PetscErrorCode RowsInit(MPI_Comm comm, const CsCSR *X, CsDataset ds, Rows *R)
{
  PetscFunctionBeginUser;
  R->X = X, R->ds = ds, R->nchunks = 1, R->chunk = X ? X->nrows : 0;
  if (ds) { /* every rank takes as many chunks (each read agrees on errors) */
    R->chunk   = ds->stream_block;
    R->nchunks = (ds->nlocal + R->chunk - 1) / R->chunk;
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &R->nchunks, 1, MPIU_INT, MPI_MAX, comm));
  }
  PetscFunctionReturn(0);
}

/* Chunk c: its rows in *A (a view or fresh), its first local row in *i0; *own tells whether to free A. */
static PetscErrorCode RowsGet(Rows *R, PetscInt c, CsCSR *A, PetscInt *i0)
{
  PetscFunctionBeginUser;
  if (!R->ds) {
    *A = *R->X, *i0 = 0;
    PetscFunctionReturn(0);
  }
  {
    PetscInt a = PetscMin(c * R->chunk, R->ds->nlocal), b = PetscMin(a + R->chunk, R->ds->nlocal), *rows;
    PetscCall(PetscMalloc1(b - a + 1, &rows));
    for (PetscInt i = a; i < b; i++) rows[i - a] = i;
    PetscCall(PetscMemzero(A, sizeof(*A)));
    PetscCall(CsDatasetReadRows(R->ds, b - a, rows, A));
    PetscCall(PetscFree(rows));
    *i0 = a;
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode RowsPut(Rows *R, CsCSR *A)
{
  PetscFunctionBeginUser;
  if (R->ds) PetscCall(CsCSRFree(A));
  PetscFunctionReturn(0);
}

static PetscErrorCode GroupStats(MPI_Comm comm, Rows *R, PetscInt nrows, PetscInt G, PetscInt S, const PetscInt slot[], PetscInt total[],
                                 double *mean, double *var)
{
  PetscInt *n;
  size_t    N = (size_t)S * (size_t)G;
  double   *dd, *m2;
  CsCSR     X;
  PetscInt  i0;

  PetscFunctionBeginUser;
  PetscCheck(2 * N < (size_t)PETSC_MPI_INT_MAX, comm, PETSC_ERR_SUP, "too many groups x genes for one reduction");
  PetscCall(PetscCalloc1(S + 1, &n));
  for (PetscInt i = 0; i < nrows; i++)
    if (slot[i] >= 0) n[slot[i]]++;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, n, (PetscMPIInt)S, MPIU_INT, MPI_SUM, comm));
  if (total) PetscCall(PetscArraycpy(total, n, S));
  PetscCall(PetscCalloc1(2 * N + 1, &dd));
  for (PetscInt c = 0; c < R->nchunks; c++) {
    PetscCall(RowsGet(R, c, &X, &i0));
    for (PetscInt i = 0; i < X.nrows; i++) {
      double *a;
      if (slot[i0 + i] < 0) continue;
      a = dd + 2 * (size_t)slot[i0 + i] * G;
      for (int64_t k = X.indptr[i]; k < X.indptr[i + 1]; k++) {
        PetscInt j = X.indices[k];
        DDAccumulate(&a[2 * j], &a[2 * j + 1], (double)X.data[k]);
      }
    }
    PetscCall(RowsPut(R, &X));
  }
  PetscCall(DDAllreduce(comm, dd, N));
  for (PetscInt s = 0; s < S; s++)
    for (PetscInt j = 0; j < G; j++) {
      size_t q = (size_t)s * G + j;
      mean[q]  = n[s] ? (dd[2 * q] + dd[2 * q + 1]) / (double)n[s] : 0.0;
    }
  if (var) {
    /* Second pass: squared deviations of the stored entries from the exact mean and their count; the implicit
       zeros contribute m^2 each. */
    m2 = dd;
    PetscCall(PetscArrayzero(m2, 2 * N));
    for (PetscInt c = 0; c < R->nchunks; c++) {
      PetscCall(RowsGet(R, c, &X, &i0));
      for (PetscInt i = 0; i < X.nrows; i++) {
        double       *a, *cn;
        const double *mu;
        PetscInt      s = slot[i0 + i];
        if (s < 0) continue;
        a = m2 + (size_t)s * G, cn = m2 + N + (size_t)s * G, mu = mean + (size_t)s * G;
        for (int64_t k = X.indptr[i]; k < X.indptr[i + 1]; k++) {
          PetscInt j = X.indices[k];
          double   e = (double)X.data[k] - mu[j];
          a[j] += e * e, cn[j] += 1;
        }
      }
      PetscCall(RowsPut(R, &X));
    }
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, m2, (PetscMPIInt)(2 * N), MPI_DOUBLE, MPI_SUM, comm));
    for (PetscInt s = 0; s < S; s++)
      for (PetscInt j = 0; j < G; j++) {
        size_t q  = (size_t)s * G + j;
        double ns = (double)n[s];
        var[q]    = ns > 1 ? (m2[q] + (ns - m2[N + q]) * mean[q] * mean[q]) / (ns - 1) : 0.0;
      }
  }
  PetscCall(PetscFree(dd));
  PetscCall(PetscFree(n));
  PetscFunctionReturn(0);
}

PetscErrorCode CsCSRGroupStats(MPI_Comm comm, const CsCSR *X, PetscInt S, const PetscInt slot[], PetscInt total[], double *mean, double *var)
{
  Rows R;

  PetscFunctionBeginUser;
  PetscCall(RowsInit(comm, X, NULL, &R));
  PetscCall(GroupStats(comm, &R, X->nrows, X->ncols, S, slot, total, mean, var));
  PetscFunctionReturn(0);
}

PetscErrorCode CsDatasetGroupStats(CsDataset ds, PetscInt S, const PetscInt slot[], PetscInt total[], double *mean, double *var)
{
  Rows R;

  PetscFunctionBeginUser;
  if (!ds->streamed) {
    PetscCall(CsCSRGroupStats(ds->comm, &ds->X, S, slot, total, mean, var));
    PetscFunctionReturn(0);
  }
  PetscCall(RowsInit(ds->comm, NULL, ds, &R));
  PetscCall(GroupStats(ds->comm, &R, ds->nlocal, ds->ngenes, S, slot, total, mean, var));
  PetscFunctionReturn(0);
}

PetscErrorCode CsDesignGroupMeans(CsDesign d, CsDataset ds, const PetscBool *want, double *means)
{
  PetscInt G = ds->ngenes, nw = 0, *slot, *packed;
  double  *m;

  PetscFunctionBeginUser;
  /* Only the wanted groups travel in the reduction: packed[g] is g's row in the packed buffer. */
  PetscCall(PetscMalloc2(d->ngroups + 1, &packed, ds->nlocal + 1, &slot));
  for (PetscInt g = 0; g < d->ngroups; g++) packed[g] = (!want || want[g]) ? nw++ : -1;
  for (PetscInt i = 0; i < ds->nlocal; i++) slot[i] = d->cell_group[i] >= 0 ? packed[d->cell_group[i]] : -1;
  PetscCall(PetscMalloc1((size_t)nw * G + 1, &m));
  PetscCall(CsDatasetGroupStats(ds, nw, slot, NULL, m, NULL));
  PetscCall(PetscArrayzero(means, (size_t)d->ngroups * G));
  for (PetscInt g = 0; g < d->ngroups; g++)
    if (packed[g] >= 0) PetscCall(PetscArraycpy(means + (size_t)g * G, m + (size_t)packed[g] * G, G));
  PetscCall(PetscFree(m));
  PetscCall(PetscFree2(packed, slot));
  PetscFunctionReturn(0);
}
