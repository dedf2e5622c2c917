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
