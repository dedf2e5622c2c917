/* Times CsOTSolve (src/ot) on POT's benchmark problem (bench/sinkhorn.sh runs ../shared/bench/pot_sinkhorn_ref.py
   next to it): x ~ N(0, I), y ~ N(0.5, I) in dimension d, uniform weights, squared Euclidean cost divided by its
   maximum, balanced, epsilon eps, exactly `iters` iterations (no epsilon scaling, tolerance 0). Prints
     cellshift_sinkhorn n N m M d D eps E iters I mode stored|streamed seconds S cost C error R entries_per_s V gbs B
   where entries_per_s counts the n m kernel entries of the two sweeps of each iteration and gbs is that traffic in
   float32 (4 bytes an entry: what a stored kernel would read). Collective: the points are split over the ranks.
   Options: -n 4000 -m (= n) -d 50 -eps 0.05 -iters 200 -stream (recompute the cost block by block) -blockcyclic
   (the ScaLAPACK block-cyclic cost and kernel) -reps 1;
   -bf16: the stored kernel in bfloat16 (CsOTOptions.kernel_bf16; -bf16_refine E its switch to float32, 1e-3, 0
   never: all iterations in bfloat16); with -compare also the same solve in float32
   once, untimed, and a line `bf16_vs_f32 cost_rel C f_max F bary_max B` (relative cost difference, largest potential difference in
   units of eps, largest barycentre coordinate difference over the coordinates' standard deviation, 1 here);
   -tol T solves to the marginal error T instead (at most -iters iterations, an error if not reached). */
#include <cellshift/ot.h>
#include <cellshift/rng.h>

static const char help[] = "Times the distributed Sinkhorn solve.\n";

int main(int argc, char **argv)
{
  PetscInt    n = 4000, m = -1, d = 50, iters = 200, reps = 1;
  PetscReal   eps = 0.05, tol = 0, refine = 1e-3;
  PetscBool   stream = PETSC_FALSE, bc = PETSC_FALSE, bf16 = PETSC_FALSE, compare = PETSC_FALSE;
  PetscMPIInt size, rank;
  CsOTOptions o;
  CsOTInfo    info;
  float      *x, *y, *bary, *bary32;
  PetscReal  *f, *f32;
  double      best = 1e300;

  PetscCall(CsInitialize(&argc, &argv, help));
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-n", &n, NULL));
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-m", &m, NULL));
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-d", &d, NULL));
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-iters", &iters, NULL));
  PetscCall(PetscOptionsGetInt(NULL, NULL, "-reps", &reps, NULL));
  PetscCall(PetscOptionsGetReal(NULL, NULL, "-eps", &eps, NULL));
  PetscCall(PetscOptionsGetReal(NULL, NULL, "-tol", &tol, NULL));
  PetscCall(PetscOptionsGetBool(NULL, NULL, "-stream", &stream, NULL));
  PetscCall(PetscOptionsGetBool(NULL, NULL, "-blockcyclic", &bc, NULL));
  PetscCall(PetscOptionsGetBool(NULL, NULL, "-bf16", &bf16, NULL));
  PetscCall(PetscOptionsGetBool(NULL, NULL, "-compare", &compare, NULL));
  PetscCall(PetscOptionsGetReal(NULL, NULL, "-bf16_refine", &refine, NULL));
  if (m < 0) m = n;
  PetscCallMPI(MPI_Comm_size(PETSC_COMM_WORLD, &size));
  PetscCallMPI(MPI_Comm_rank(PETSC_COMM_WORLD, &rank));
  PetscInt n0 = n * rank / size, n1 = n * (rank + 1) / size, m0 = m * rank / size, m1 = m * (rank + 1) / size;
  PetscCall(PetscMalloc3((size_t)(n1 - n0) * d + 1, &x, (size_t)(m1 - m0) * d + 1, &y, (size_t)(n1 - n0) * d + 1, &bary));
  PetscCall(PetscMalloc3((size_t)(n1 - n0) * d + 1, &bary32, n1 - n0 + 1, &f, n1 - n0 + 1, &f32));
  for (PetscInt i = n0; i < n1; i++)
    for (PetscInt k = 0; k < d; k += 2) {
      double z[2];
      CsRngNormal2(1, CS_STREAM_DATA, (uint64_t)i, (uint64_t)k, z);
      x[(size_t)(i - n0) * d + k] = (float)z[0];
      if (k + 1 < d) x[(size_t)(i - n0) * d + k + 1] = (float)z[1];
    }
  for (PetscInt j = m0; j < m1; j++)
    for (PetscInt k = 0; k < d; k += 2) {
      double z[2];
      CsRngNormal2(2, CS_STREAM_DATA, (uint64_t)j, (uint64_t)k, z);
      y[(size_t)(j - m0) * d + k] = (float)(z[0] + 0.5);
      if (k + 1 < d) y[(size_t)(j - m0) * d + k + 1] = (float)(z[1] + 0.5);
    }
  PetscCall(CsOTOptionsDefaults(&o));
  o.epsilon = eps, o.scale = CS_OT_SCALE_MAX, o.eps_scaling = PETSC_FALSE, o.tol = 1e-300, o.max_iter = iters;
  o.allow_unconverged = PETSC_TRUE; /* POT's stopThr 1e-12 never stops it early either */
  if (tol > 0) o.tol = tol, o.allow_unconverged = PETSC_FALSE;
  o.mode = stream ? CS_OT_MODE_STREAM : bc ? CS_OT_MODE_BLOCKCYCLIC : CS_OT_MODE_STORE;
  o.kernel_bf16 = bf16, o.kernel_bf16_refine = refine;
  for (PetscInt r = 0; r < reps; r++) {
    double t;
    PetscCallMPI(MPI_Barrier(PETSC_COMM_WORLD));
    t = MPI_Wtime();
    PetscCall(CsOTSolve(PETSC_COMM_WORLD, &o, n1 - n0, m1 - m0, d, x, y, NULL, NULL, bary, f, NULL, &info));
    t = MPI_Wtime() - t;
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, PETSC_COMM_WORLD));
    best = PetscMin(best, t);
  }
  {
    double ent = 2.0 * (double)n * m * info.iterations / best;
    PetscCall(PetscPrintf(PETSC_COMM_WORLD,
                          "cellshift_sinkhorn n %" PetscInt_FMT " m %" PetscInt_FMT " d %" PetscInt_FMT " eps %g iters %" PetscInt_FMT
                          " ranks %d mode %s seconds %.3f cost %.6f error %.3g entries_per_s %.3g gbs %.2f\n",
                          n, m, d, (double)eps, info.iterations, size, info.streamed ? "streamed" : bc ? "blockcyclic" : bf16 ? "stored-bf16" : "stored", best, info.cost,
                          info.error, ent, ent * (bf16 && !info.streamed ? 2 : 4) / 1e9));
  }
  if (bf16 && compare && !stream) { /* the accuracy of the bfloat16 kernel against the float32 one */
    CsOTInfo i32;
    double   mx[2] = {0, 0};
    o.kernel_bf16 = PETSC_FALSE;
    PetscCall(CsOTSolve(PETSC_COMM_WORLD, &o, n1 - n0, m1 - m0, d, x, y, NULL, NULL, bary32, f32, NULL, &i32));
    for (PetscInt i = 0; i < n1 - n0; i++) {
      mx[0] = PetscMax(mx[0], PetscAbsReal(f[i] - f32[i]) / eps);
      for (PetscInt k = 0; k < d; k++) mx[1] = PetscMax(mx[1], PetscAbsReal((double)bary[(size_t)i * d + k] - bary32[(size_t)i * d + k]));
    }
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, mx, 2, MPI_DOUBLE, MPI_MAX, PETSC_COMM_WORLD));
    PetscCall(PetscPrintf(PETSC_COMM_WORLD, "bf16_vs_f32 cost_rel %.3g f_max %.3g bary_max %.3g cost_f32 %.6f\n", PetscAbsReal(info.cost - i32.cost) / i32.cost,
                          mx[0], mx[1], i32.cost));
  }
  PetscCall(PetscFree3(x, y, bary));
  PetscCall(PetscFree3(bary32, f, f32));
  PetscCall(CsFinalize());
  return 0;
}
