/* CSR row blocks. See include/cellshift/csr.h. */
#include <cellshift/csr.h>

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
  PetscCall(PetscRealloc(sizeof(int32_t) * (nnz + 1), &out->indices));
  PetscCall(PetscRealloc(sizeof(float) * (nnz + 1), &out->data));
  out->indptr[0] = 0;
  for (PetscInt k = 0; k < n; k++) {
    int64_t a = A->indptr[rows[k]], len = A->indptr[rows[k] + 1] - a, at = out->indptr[k];
    memcpy(out->indices + at, A->indices + a, sizeof(int32_t) * (size_t)len);
    memcpy(out->data + at, A->data + a, sizeof(float) * (size_t)len);
    out->indptr[k + 1] = at + len;
  }
  PetscFunctionReturn(0);
}
