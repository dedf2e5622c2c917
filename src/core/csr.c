/* CSR row blocks. See include/cellshift/csr.h. */
#include <cellshift/csr.h>
#include <pthread.h>

static struct {
  pthread_mutex_t mu;
  int             n;
  int32_t        *indices[CS_CSR_SPARES];
  float          *data[CS_CSR_SPARES];
  int64_t         cap[CS_CSR_SPARES]; /* entries: the non-zeros of the block that had them (a lower bound) */
} spares = {PTHREAD_MUTEX_INITIALIZER, 0, {NULL}, {NULL}, {0}};

PetscErrorCode CsCSRRecycle(CsCSR *A)
{
  int64_t nnz = A->indptr ? A->indptr[A->nrows] : 0;
  int     kept = 0;

  PetscFunctionBeginUser;
  if (A->indices && A->data && A->indptr && A->indptr[0] == 0 && nnz > 0) {
    pthread_mutex_lock(&spares.mu);
    if (spares.n < CS_CSR_SPARES) {
      spares.indices[spares.n] = A->indices, spares.data[spares.n] = A->data, spares.cap[spares.n] = nnz;
      spares.n++, kept = 1;
    }
    pthread_mutex_unlock(&spares.mu);
  }
  if (kept) A->indices = NULL, A->data = NULL;
  PetscCall(CsCSRFree(A));
  PetscFunctionReturn(0);
}

PetscErrorCode CsCSRReserve(CsCSR *A, int64_t need, int64_t want, int64_t *cap)
{
  int best = -1;

  PetscFunctionBeginUser;
  PetscCheck(!A->indices && !A->data, PETSC_COMM_SELF, PETSC_ERR_ARG_WRONGSTATE, "CsCSRReserve: the block has arrays already");
  if (need < 1) need = 1;
  if (want < need) want = need;
  pthread_mutex_lock(&spares.mu);
  for (int k = 0; k < spares.n; k++)
    if (2 * spares.cap[k] >= want && spares.cap[k] <= 2 * want && (best < 0 || spares.cap[k] > spares.cap[best])) best = k;
  if (best >= 0) {
    A->indices = spares.indices[best], A->data = spares.data[best], *cap = spares.cap[best];
    spares.n--;
    spares.indices[best] = spares.indices[spares.n], spares.data[best] = spares.data[spares.n], spares.cap[best] = spares.cap[spares.n];
  }
  pthread_mutex_unlock(&spares.mu);
  if (best >= 0 && *cap < need) { /* grown in place of fresh pages for all of it */
    *cap = need;
    PetscCall(PetscRealloc(sizeof(int32_t) * (size_t)need, &A->indices));
    PetscCall(PetscRealloc(sizeof(float) * (size_t)need, &A->data));
  }
  if (best >= 0) PetscFunctionReturn(0);
  PetscCall(PetscMalloc1(want, &A->indices));
  PetscCall(PetscMalloc1(want, &A->data));
  CsMemPopulate(A->indices, sizeof(int32_t) * (size_t)need), CsMemPopulate(A->data, sizeof(float) * (size_t)need);
  *cap = want;
  PetscFunctionReturn(0);
}

PetscErrorCode CsCSRSparesFree(void)
{
  int32_t *indices[CS_CSR_SPARES];
  float   *data[CS_CSR_SPARES];
  int      n;

  PetscFunctionBeginUser;
  pthread_mutex_lock(&spares.mu);
  n = spares.n, spares.n = 0;
  memcpy(indices, spares.indices, sizeof(indices)), memcpy(data, spares.data, sizeof(data));
  pthread_mutex_unlock(&spares.mu);
  for (int k = 0; k < n; k++) {
    PetscCall(PetscFree(indices[k]));
    PetscCall(PetscFree(data[k]));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsCSRFree(CsCSR *A)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree(A->indptr));
  PetscCall(PetscFree(A->indices));
  PetscCall(PetscFree(A->data));
  A->nrows = 0;
  PetscFunctionReturn(0);
}

CsCSR CsCSRRowView(const CsCSR *A, PetscInt r0, PetscInt n)
{
  CsCSR v = *A;
  v.nrows = n, v.indptr = A->indptr + r0;
  return v;
}

void CsCSRRowToDense(const CsCSR *A, PetscInt i, float *out)
{
  memset(out, 0, sizeof(float) * (size_t)A->ncols);
  for (int64_t k = A->indptr[i]; k < A->indptr[i + 1]; k++) out[A->indices[k]] = A->data[k];
}

PetscErrorCode CsCSRSubsetRows(const CsCSR *A, PetscInt n, const PetscInt rows[], CsCSR *out)
{
  int64_t nnz = 0;

  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < n; k++) nnz += A->indptr[rows[k] + 1] - A->indptr[rows[k]];
  out->nrows = n, out->ncols = A->ncols;
  PetscCall(PetscRealloc(sizeof(int64_t) * (n + 1), &out->indptr));
  if (!out->indices && !out->data) {
    int64_t cap;
    PetscCall(CsCSRReserve(out, nnz + 1, nnz + 1, &cap));
  } else {
    PetscCall(PetscRealloc(sizeof(int32_t) * (nnz + 1), &out->indices));
    PetscCall(PetscRealloc(sizeof(float) * (nnz + 1), &out->data));
  }
  out->indptr[0] = 0;
  for (PetscInt k = 0; k < n; k++) {
    int64_t a = A->indptr[rows[k]], len = A->indptr[rows[k] + 1] - a, at = out->indptr[k];
    memcpy(out->indices + at, A->indices + a, sizeof(int32_t) * (size_t)len);
    memcpy(out->data + at, A->data + a, sizeof(float) * (size_t)len);
    out->indptr[k + 1] = at + len;
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsCSRAppendDense(CsCSR *A, PetscInt i0, PetscInt n, const float *X, int64_t *nnz, int64_t *cap)
{
  const PetscInt g = A->ncols;
  int64_t        z = 0, at = *nnz;

  PetscFunctionBeginUser;
  for (size_t k = 0; k < (size_t)n * (size_t)g; k++) z += X[k] != 0;
  if (at + z + 1 > *cap || !A->indices) { /* + 1: the loop below writes one entry past the last non-zero */
    double  per  = (double)(at + z) / (double)PetscMax(i0 + n, 1); /* non-zeros a row so far */
    int64_t want = (int64_t)(per * 1.05 * (double)A->nrows) + 16;
    want         = PetscMax(at + z + 1, PetscMax(want, *cap + *cap / 4));
    if (!A->indices) PetscCall(CsCSRReserve(A, at + z + 1, want, cap)); /* a spare grows by realloc if it must */
    else {
      *cap = want;
      PetscCall(PetscRealloc(sizeof(int32_t) * (size_t)*cap, &A->indices));
      PetscCall(PetscRealloc(sizeof(float) * (size_t)*cap, &A->data));
    }
  }
  for (PetscInt i = 0; i < n; i++) {
    const float *x = X + (size_t)i * (size_t)g;
    for (PetscInt j = 0; j < g; j++) { /* branch-free: every entry is written, the position moves on a non-zero */
      A->indices[at] = (int32_t)j, A->data[at] = x[j];
      at += x[j] != 0;
    }
    A->indptr[i0 + i + 1] = at;
  }
  *nnz = at;
  PetscFunctionReturn(0);
}
