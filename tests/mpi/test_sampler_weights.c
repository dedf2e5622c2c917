/* The weighted cells sampler (-quality_weight) at 1, 2 and 3 ranks on the embedded devel data. Every rank holds the
   weight and training flag of every global cell and recomputes each global batch from sampler.h's definition
   (quantised weights, exact prefix sums in global order, one Philox draw per batch position), without pools or
   ownership; the distributed batch must match it as a multiset (an order-free fingerprint of the global cell ids
   reduced over ranks, and the count), so batches are the same for any rank count. Also: a cell of weight 0 is never
   drawn in 30 epochs; the draw frequencies follow the weights (cells of weight 3 drawn 3 times as often per cell as
   cells of weight 1, within 5%); every row holds its own cell's expression; no weights keeps the uniform sampler. */
#include "testing.h"
#include <cellshift/sampler.h>
#include <cellshift/rng.h>

static MPI_Comm    comm;
static PetscMPIInt rank, size;

static uint64_t Mix(uint64_t x)
{
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/* weight of global cell c: 0, 1, 2 or 3 (a quarter of the cells never drawn) */
static double W(PetscInt c) { return (double)(Mix((uint64_t)c) % 4); }
/* training cells: all but every seventh */
static PetscBool T(PetscInt c) { return c % 7 != 3; }

static PetscErrorCode Body(void)
{
  char       data[PETSC_MAX_PATH_LEN];
  CsDataset  ds;
  CsSampler  s;
  uint8_t   *train;
  double    *w;
  CsBatch    b = {0};
  PetscInt   N, nsteps, ntrain = 0, B = 50;
  uint64_t  *cum, total = 0, seed = 17;
  int64_t   *count, drawn[4] = {0, 0, 0, 0}, cells[4] = {0, 0, 0, 0};

  PetscFunctionBeginUser;
  comm = PETSC_COMM_WORLD;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCall(CsTestSourcePath("input/perturbench_devel/devel.h5ad", data));
  PetscCall(CsDatasetCreate(comm, &ds));
  PetscCall(CsDatasetSetFile(ds, data, NULL));
  PetscCall(CsDatasetSetUp(ds));
  N = ds->nglobal;
  PetscCall(PetscCalloc2(CsMaskBytes(ds->nlocal), &train, ds->nlocal + 1, &w));
  for (PetscInt i = 0; i < ds->nlocal; i++) {
    if (T(ds->rstart + i)) CsMaskSet(train, i);
    w[i] = W(ds->rstart + i);
  }
  /* the definition, over all cells */
  PetscCall(PetscMalloc2(N + 1, &cum, N + 1, &count));
  for (PetscInt c = 0; c < N; c++) {
    uint64_t q = T(c) && W(c) > 0 ? (uint64_t)floor(ldexp(W(c) / 3.0, 30) + 0.5) : 0;
    cum[c] = total, total += q, count[c] = 0;
    if (T(c)) cells[(int)W(c)]++, ntrain++;
  }
  cum[N] = total;

  PetscCall(CsSamplerCreate(comm, &s));
  PetscCall(CsSamplerSetBatchSize(s, B));
  PetscCall(CsSamplerSetData(s, ds, NULL, train, NULL, seed));
  PetscCall(CsSamplerSetWeights(s, w));
  PetscCall(CsSamplerSetUp(s));
  PetscCall(CsSamplerGetSizes(s, CS_SAMPLE_TRAIN, &nsteps, NULL, NULL));
  for (PetscInt e = 0; e < 30; e++)
    for (PetscInt st = 0; st < nsteps; st++) {
      PetscInt nparts = st % 3 == 0 ? 2 : 1;
      for (PetscInt part = 0; part < nparts; part++) {
        PetscInt p0 = st * B, p1 = PetscMin(p0 + B, ntrain), lo, hi;
        uint64_t want = 0, got = 0;
        PetscInt n;
        PetscCall(CsSamplerGetBatch(s, CS_SAMPLE_TRAIN, e, st, part, nparts, &b));
        lo = p0 + (PetscInt)((int64_t)(p1 - p0) * part / nparts), hi = p0 + (PetscInt)((int64_t)(p1 - p0) * (part + 1) / nparts);
        for (PetscInt p = lo; p < hi; p++) {
          uint32_t r[4];
          uint64_t v;
          PetscInt a = 0, z = N - 1;
          CsRng4(seed, CS_STREAM_WEIGHT, (uint64_t)e, (uint64_t)p, r);
          v = ((((uint64_t)r[0] << 32) | r[1]) % total);
          while (a < z) { /* the cell whose interval [cum[c], cum[c + 1]) holds v */
            PetscInt mid = (a + z + 1) / 2;
            if (cum[mid] <= v) a = mid;
            else z = mid - 1;
          }
          while (cum[a + 1] == cum[a]) a++; /* zero-width intervals hold nothing */
          want += Mix((uint64_t)a);
          count[a]++;
        }
        for (PetscInt k = 0; k < b.n; k++) {
          PetscInt l = b.local[k];
          got += Mix((uint64_t)b.cell[k]);
          CS_EXPECT(l >= 0 && ds->rstart + l == b.cell[k], "row %" PetscInt_FMT " is not a local cell", k);
          CS_EXPECT(CsMaskGet(train, l) && w[l] > 0, "cell %lld drawn with weight %g (train %d)", (long long)b.cell[k], w[l], (int)CsMaskGet(train, l));
          CS_EXPECT(b.X.indptr[k + 1] - b.X.indptr[k] == ds->X.indptr[l + 1] - ds->X.indptr[l], "row %" PetscInt_FMT " is not its cell's", k);
        }
        n = b.n;
        PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &got, 1, MPI_UINT64_T, MPI_SUM, comm));
        PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &n, 1, MPIU_INT, MPI_SUM, comm));
        CS_EXPECT(got == want && n == hi - lo && b.nglobal == hi - lo, "epoch %" PetscInt_FMT " step %" PetscInt_FMT " part %" PetscInt_FMT ": not the defined draws",
                  e, st, part);
      }
    }
  for (PetscInt c = 0; c < N; c++) drawn[(int)W(c)] += T(c) ? count[c] : 0;
  CS_EXPECT(drawn[0] == 0, "%lld draws of cells of weight 0", (long long)drawn[0]);
  {
    double r31 = ((double)drawn[3] / cells[3]) / ((double)drawn[1] / cells[1]);
    CS_EXPECT(fabs(r31 / 3 - 1) < 0.05, "cells of weight 3 drawn %.3f times as often as cells of weight 1", r31);
    if (!rank) PetscCall(PetscPrintf(PETSC_COMM_SELF, "weighted draws: %lld, weight 3 / weight 1 per cell %.3f\n", (long long)(drawn[1] + drawn[2] + drawn[3]), r31));
  }
  /* no weights: the uniform permutation again (every training cell once in an epoch's full batches) */
  PetscCall(CsSamplerSetWeights(s, NULL));
  PetscCall(CsSamplerSetUp(s));
  {
    int64_t seen = 0;
    for (PetscInt st = 0; st < nsteps; st++) {
      PetscCall(CsSamplerGetBatch(s, CS_SAMPLE_TRAIN, 0, st, 0, 1, &b));
      seen += b.n;
    }
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &seen, 1, MPI_INT64_T, MPI_SUM, comm));
    CS_EXPECT(seen == (ntrain / B) * B, "uniform epoch: %lld rows, expected %lld", (long long)seen, (long long)((ntrain / B) * B));
  }
  PetscCall(CsBatchFree(&b));
  PetscCall(CsSamplerDestroy(&s));
  PetscCall(PetscFree2(cum, count));
  PetscCall(PetscFree2(train, w));
  PetscCall(CsDatasetDestroy(&ds));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv) { return CsTestMain(argc, argv, Body); }
