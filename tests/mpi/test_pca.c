/* CsPCAFit on a random sparse matrix whose rows are split over the ranks in contiguous blocks, against a
   replicated computation: every rank builds the whole matrix, the two-pass covariance in double and its
   eigenpairs with LAPACK. Several block sizes, panel widths and chunk heights, with and without a row mask
   (including masks that leave some ranks without rows). */
#include "testing.h"
#include <cellshift/linalg.h>
#include <cellshift/rng.h>

#define NROWS 240

/* Entry (i, j) of the global matrix: ~35% non-zero, a rank-2 signal plus noise with column-dependent scale,
   so the leading eigenvalues are well separated. Float, as the dataset stores it. */
static float Entry(PetscInt i, PetscInt j)
{
  if (CsRngUniform(11, CS_STREAM_DATA, (uint64_t)i, (uint64_t)j) > 0.35) return 0;
  double u1 = CsRngUniform(12, CS_STREAM_DATA, (uint64_t)i, 0) - 0.5, u2 = CsRngUniform(12, CS_STREAM_DATA, (uint64_t)i, 1) - 0.5;
  double v1 = sin(0.3 * (double)j), v2 = cos(0.11 * (double)j), z[2];
  CsRngNormal2(13, CS_STREAM_DATA, (uint64_t)i, (uint64_t)j, z);
  return (float)(1.0 + 6 * u1 * v1 + 3 * u2 * v2 + z[0] * (0.3 + 0.01 * (double)(j % 17)));
}

static PetscBool Selected(int mask, PetscInt i)
{
  switch (mask) {
  case 1: return (PetscBool)(i % 3 != 1);
  case 2: return (PetscBool)(i < NROWS / 5); /* only the first rank's block has rows */
  default: return PETSC_TRUE;
  }
}

static PetscErrorCode Case(PetscInt p, PetscInt k, int mask, PetscInt nb, PetscInt width, PetscInt chunk)
{
  MPI_Comm    comm = PETSC_COMM_WORLD;
  PetscMPIInt size, rank;
  PetscInt    rstart, rend, nsel = 0;
  CsCSR       X = {0};
  PetscBool  *rows;
  CsPCAOptions opt;
  double     *mean, *comps, *vars, *rmean, *C, *rvals, *rvecs;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  CsPCAOptionsDefault(&opt);
  if (nb) opt.block_size = nb;
  if (width) opt.panel_width = width;
  if (chunk) opt.chunk_rows = chunk;

  /* This rank's contiguous block of rows, as CSR. */
  rstart = (NROWS * rank) / size, rend = (NROWS * (rank + 1)) / size;
  X.nrows = rend - rstart, X.ncols = p;
  PetscCall(PetscMalloc1(X.nrows + 1, &X.indptr));
  PetscCall(PetscMalloc1((size_t)X.nrows * p + 1, &X.indices));
  PetscCall(PetscMalloc1((size_t)X.nrows * p + 1, &X.data));
  PetscCall(PetscMalloc1(X.nrows + 1, &rows));
  X.indptr[0] = 0;
  for (PetscInt i = rstart; i < rend; i++) {
    int64_t e = X.indptr[i - rstart];
    for (PetscInt j = 0; j < p; j++) {
      float v = Entry(i, j);
      if (v != 0) X.indices[e] = (int32_t)j, X.data[e++] = v;
    }
    X.indptr[i - rstart + 1] = e;
    rows[i - rstart]         = Selected(mask, i);
  }

  PetscCall(PetscMalloc3(p, &mean, k * p, &comps, k, &vars));
  PetscCall(CsPCAFit(comm, &X, mask ? rows : NULL, k, nb || width || chunk ? &opt : NULL, mean, comps, vars));

  /* Replicated reference. */
  PetscCall(PetscCalloc4(p, &rmean, p * p, &C, k, &rvals, k * p, &rvecs));
  for (PetscInt i = 0; i < NROWS; i++) {
    if (!Selected(mask, i)) continue;
    for (PetscInt j = 0; j < p; j++) rmean[j] += Entry(i, j);
    nsel++;
  }
  for (PetscInt j = 0; j < p; j++) rmean[j] /= (double)nsel;
  for (PetscInt i = 0; i < NROWS; i++) {
    double x[512];
    if (!Selected(mask, i)) continue;
    for (PetscInt j = 0; j < p; j++) x[j] = Entry(i, j) - rmean[j];
    for (PetscInt a = 0; a < p; a++)
      for (PetscInt b = 0; b < p; b++) C[a * p + b] += x[a] * x[b] / (double)(nsel - 1);
  }
  PetscCall(CsSymEigTop(p, C, k, rvals, rvecs));

  for (PetscInt j = 0; j < p; j++) CS_EXPECT_CLOSE(mean[j], rmean[j], 1e-12, "mean");
  for (PetscInt t = 0; t < k; t++) {
    CS_EXPECT_CLOSE(vars[t], rvals[t], 1e-10, "variance");
    for (PetscInt j = 0; j < p; j++) CS_EXPECT_CLOSE(comps[t * p + j], rvecs[t * p + j], 1e-8, "component");
  }
  if (!rank) {
    double gap = 1e300;
    for (PetscInt t = 0; t + 1 < k; t++) gap = PetscMin(gap, (rvals[t] - rvals[t + 1]) / rvals[0]);
    PetscCall(PetscPrintf(PETSC_COMM_SELF, "p %" PetscInt_FMT " k %" PetscInt_FMT " mask %d nb %" PetscInt_FMT " width %" PetscInt_FMT " chunk %" PetscInt_FMT ": "
                          "%" PetscInt_FMT " rows, top variance %.4g, smallest relative gap %.3g\n", p, k, mask,
                          opt.block_size, opt.panel_width, opt.chunk_rows, nsel, rvals[0], gap));
  }
  PetscCall(PetscFree4(rmean, C, rvals, rvecs));
  PetscCall(PetscFree3(mean, comps, vars));
  PetscCall(PetscFree(rows));
  PetscCall(CsCSRFree(&X));
  PetscFunctionReturn(0);
}

static PetscErrorCode Body(void)
{
  PetscFunctionBeginUser;
  PetscCall(Case(150, 6, 0, 0, 0, 0));   /* defaults: one panel, p not a multiple of 64 */
  PetscCall(Case(150, 5, 1, 8, 16, 7));  /* many panels and chunks, row mask */
  PetscCall(Case(37, 10, 2, 5, 5, 3));   /* one-block panels; some ranks select no row */
  PetscCall(Case(64, 64, 0, 16, 32, 0)); /* every eigenpair */
  PetscFunctionReturn(0);
}

int main(int argc, char **argv) { return CsTestMain(argc, argv, Body); }
