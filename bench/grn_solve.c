/* The steady-state solve of the grn model, (I - W) X = B for a sparse regulatory W over G genes, with ScaLAPACK
   (CsSparseLUSolve: block-cyclic assembly, pdgetrf, pdgetrs, the solution summed onto every rank) against LAPACK
   dgesv on one rank (the dense G x G matrix formed there). Prints one line of key/value pairs per run (see
   bench/grn_solve.sh).

   Options: -genes 2000 -degree 10 (regulators per target, random) -nrhs 32 (atoms) -block 64 -reps 1 -dense 1
   (also time dgesv on rank 0; the other ranks wait) -seed 1, plus -blas_threads. W's weights are uniform in
   +-0.5/sqrt(degree), so I - W is well conditioned. Memory: G^2 / ranks doubles for ScaLAPACK, G^2 doubles more on
   rank 0 for dgesv (3.2 GB each at 20,000 genes; they are not held at the same time). FLOPs counted: 2/3 G^3 for
   the LU, 2 G^2 nrhs for the solves. */
#include <cellshift/linalg.h>
#include <cellshift/rng.h>

static const char help[] = "Times the grn steady-state solve: ScaLAPACK against LAPACK.\n";

static PetscErrorCode Run(void)
{
  MPI_Comm    comm = PETSC_COMM_WORLD;
  PetscMPIInt rank, size;
  PetscInt    G = 2000, deg = 10, nrhs = 32, nb = 64, reps = 1, seed = 1;
  PetscBool   dense = PETSC_TRUE;
  int64_t    *ptr;
  int32_t    *idx;
  double     *val, *B, *X, *Bd = NULL, flops, best = 1e300, tf = 0, ts = 0, ta = 0, tg = 0, tl = -1, diff = 0;
  CsGrid      grid;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscOptionsBegin(comm, NULL, "grn solve benchmark", "bench");
  PetscCall(PetscOptionsInt("-genes", "Genes G", "", G, &G, NULL));
  PetscCall(PetscOptionsInt("-degree", "Regulators per target", "", deg, &deg, NULL));
  PetscCall(PetscOptionsInt("-nrhs", "Right-hand sides (atoms)", "", nrhs, &nrhs, NULL));
  PetscCall(PetscOptionsInt("-block", "Block of the block-cyclic matrix", "", nb, &nb, NULL));
  PetscCall(PetscOptionsInt("-reps", "Repetitions (the best is reported)", "", reps, &reps, NULL));
  PetscCall(PetscOptionsBool("-dense", "Also time LAPACK dgesv on rank 0", "", dense, &dense, NULL));
  PetscCall(PetscOptionsInt("-seed", "Seed of W", "", seed, &seed, NULL));
  PetscOptionsEnd();

  /* -W (the diagonal 1 is added by the solver) and B: random, identical on every rank. */
  PetscCall(PetscMalloc3(G + 1, &ptr, (size_t)G * deg, &idx, (size_t)G * deg, &val));
  ptr[0] = 0;
  for (PetscInt t = 0; t < G; t++) {
    for (PetscInt k = 0; k < deg; k++) {
      idx[t * deg + k] = (int32_t)(CsRngUniform((uint64_t)seed, CS_STREAM_DATA, (uint64_t)t, (uint64_t)(2 * k)) * (double)G);
      val[t * deg + k] = -(CsRngUniform((uint64_t)seed, CS_STREAM_DATA, (uint64_t)t, (uint64_t)(2 * k + 1)) - 0.5) / sqrt((double)deg);
    }
    ptr[t + 1] = ptr[t] + deg;
  }
  PetscCall(PetscMalloc2((size_t)G * nrhs, &B, (size_t)G * nrhs, &X));
  for (PetscInt i = 0; i < G * nrhs; i++) B[i] = CsRngUniform((uint64_t)seed + 1, CS_STREAM_DATA, (uint64_t)i, 0) - 0.5;

  for (PetscInt r = 0; r < reps; r++) {
    CsLUTimes t;
    double    f[4];
    PetscCall(PetscArraycpy(X, B, (size_t)G * nrhs));
    PetscCallMPI(MPI_Barrier(comm));
    PetscCall(CsSparseLUSolve(comm, G, 1.0, ptr, idx, val, nrhs, X, nb, &t));
    f[0] = t.factor, f[1] = t.solve, f[2] = t.assemble, f[3] = t.gather;
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, f, 4, MPI_DOUBLE, MPI_MAX, comm));
    if (f[0] + f[1] < best) best = f[0] + f[1], tf = f[0], ts = f[1], ta = f[2], tg = f[3];
  }
  if (dense && !rank) {
    double *Ad, t0;
    PetscCall(PetscCalloc1((size_t)G * G, &Ad));
    PetscCall(PetscMalloc1((size_t)G * nrhs, &Bd));
    for (PetscInt i = 0; i < G; i++) {
      Ad[(size_t)i * G + i] += 1;
      for (int64_t k = ptr[i]; k < ptr[i + 1]; k++) Ad[(size_t)idx[k] * G + i] += val[k];
    }
    PetscCall(PetscArraycpy(Bd, B, (size_t)G * nrhs));
    t0 = CsTime();
    PetscCall(CsSolveGeneral(G, Ad, nrhs, Bd));
    tl = CsTime() - t0;
    for (PetscInt i = 0; i < G * nrhs; i++) diff = PetscMax(diff, fabs(Bd[i] - X[i]));
    PetscCall(PetscFree(Ad));
    PetscCall(PetscFree(Bd));
  }
  PetscCall(CsGridCreate(comm, &grid));
  flops = 2.0 / 3.0 * (double)G * G * G + 2.0 * (double)G * G * nrhs;
  PetscCall(PetscPrintf(comm,
                        "genes %" PetscInt_FMT " ranks %d grid %dx%d threads %d block %" PetscInt_FMT " nrhs %" PetscInt_FMT
                        " scalapack_s %.3f factor_s %.3f solve_s %.3f assemble_s %.3f gather_s %.3f scalapack_gflops %.2f"
                        " dgesv_s %.3f dgesv_gflops %.2f max_diff %.2e mem_gb_per_rank %.2f\n",
                        G, (int)size, grid.nprow, grid.npcol, CsBLASGetThreads(), nb, nrhs, tf + ts, tf, ts, ta, tg, flops / (tf + ts) / 1e9, tl,
                        tl > 0 ? flops / tl / 1e9 : 0.0, diff, 8.0 * (double)G * G / grid.size / 1e9));
  PetscCall(CsGridDestroy(&grid));
  PetscCall(PetscFree2(B, X));
  PetscCall(PetscFree3(ptr, idx, val));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  PetscErrorCode ierr = CsInitialize(&argc, &argv, help);
  if (ierr) return CsExitStatus(ierr);
  ierr = Run();
  if (ierr) return CsExitStatus(ierr);
  return CsFinalize() ? 1 : 0;
}
