/* CsDatasetFetchRows at 1, 2 and 3 ranks: every rank asks for its own rows (a different, seeded list with repeats
   and rows of every rank), and each fetched row must equal the row its owner holds: compared through per-row
   checksums that the owners compute and share, plus the row lengths. */
#include "testing.h"
#include <cellshift/dataset.h>
#include <cellshift/rng.h>

static double RowSum(const CsCSR *X, PetscInt i)
{
  double s = 0;
  for (int64_t k = X->indptr[i]; k < X->indptr[i + 1]; k++) s += (double)(X->indices[k] + 1) * X->data[k];
  return s;
}

static PetscErrorCode Body(void)
{
  MPI_Comm    comm = PETSC_COMM_WORLD;
  char        data[PETSC_MAX_PATH_LEN];
  PetscMPIInt rank;
  CsDataset   ds;
  double     *sum;
  int64_t    *len;
  PetscInt   *rows, n;
  CsCSR       got = {0};

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCall(CsTestSourcePath("input/perturbench_devel/devel.h5ad", data));
  PetscCall(CsDatasetCreate(comm, &ds));
  PetscCall(CsDatasetSetFile(ds, data, NULL));
  PetscCall(CsDatasetSetUp(ds));
  PetscCall(PetscCalloc2(ds->nglobal, &sum, ds->nglobal, &len));
  for (PetscInt i = 0; i < ds->nlocal; i++) {
    sum[ds->rstart + i] = RowSum(&ds->X, i);
    len[ds->rstart + i] = ds->X.indptr[i + 1] - ds->X.indptr[i];
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, sum, (PetscMPIInt)ds->nglobal, MPI_DOUBLE, MPI_SUM, comm));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, len, (PetscMPIInt)ds->nglobal, MPI_INT64_T, MPI_SUM, comm));
  n = 500 + 137 * rank; /* ranks ask for different numbers of rows; the last rank of 3 asks for none */
  if (rank == 2) n = 0;
  PetscCall(PetscMalloc1(n + 1, &rows));
  for (PetscInt i = 0; i < n; i++) rows[i] = (PetscInt)(CsRngUniform(7, CS_STREAM_DATA, (uint64_t)rank, (uint64_t)i) * ds->nglobal);
  if (n > 3) rows[1] = rows[0], rows[2] = ds->nglobal - 1, rows[3] = 0; /* a repeat and both ends */
  PetscCall(CsDatasetFetchRows(ds, n, rows, &got));
  CS_EXPECT(got.nrows == n && got.ncols == ds->ngenes, "fetched %" PetscInt_FMT " x %" PetscInt_FMT, got.nrows, got.ncols);
  for (PetscInt i = 0; i < n; i++) {
    CS_EXPECT(got.indptr[i + 1] - got.indptr[i] == len[rows[i]], "row %" PetscInt_FMT ": length %lld, owner has %lld", rows[i],
              (long long)(got.indptr[i + 1] - got.indptr[i]), (long long)len[rows[i]]);
    CS_EXPECT(RowSum(&got, i) == sum[rows[i]], "row %" PetscInt_FMT ": checksum %.17g, owner has %.17g", rows[i], RowSum(&got, i), sum[rows[i]]);
  }
  PetscCall(PetscPrintf(PETSC_COMM_SELF, "rank %d fetched %" PetscInt_FMT " rows, %lld entries\n", rank, n, (long long)got.indptr[n]));
  PetscCall(CsCSRFree(&got));
  PetscCall(PetscFree(rows));
  PetscCall(PetscFree2(sum, len));
  PetscCall(CsDatasetDestroy(&ds));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv) { return CsTestMain(argc, argv, Body); }
