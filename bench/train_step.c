/* Times the CsVAE training step (forward, backward, gradient reduction, Adam) of scGen's network on random data
   shaped like ../shared/bench/torch_scgen_ref.py: x uniform in [0, 1), ngenes columns, a global minibatch of
   -batch rows split over the ranks (-density < 1: a CSR minibatch with that fraction of non-zeros, read by the
   sparse first layer). Prints one line of key/value pairs (see bench/train_step.sh).

   Options: -genes 2000 -batch 512 -steps 20 -reps 3 -density 1 -seed 1, plus -blas_threads, -nn_grad_reduce blocking|bucketed|sharded,
   -nn_grad_bucket_mb. The best of -reps repetitions of -steps steps is reported (after 3 warm-up steps): short
   repetitions keep the best one clear of the bursts of other load on a shared machine. The phase times are the
   maxima over ranks of the CS_EVENT_FORWARD/BACKWARD/REDUCE/OPTIM events. */
#include <cellshift/nn.h>
#include <cellshift/rng.h>
#include <cblas.h>

static const char help[] = "Times the scGen VAE training step.\n";

/* Matmul FLOPs of one step for B cells: forward 2 B sum(in out), the weight gradients as much again, the input
   gradients of every layer but the first. */
static double StepFlops(const CsVAEConfig *c, double B)
{
  double H = (double)c->hidden, G = (double)c->ngenes, Z = (double)c->latent, first = G * H, rest = 0;
  rest += (c->nhidden - 1) * H * H + H * 2 * Z; /* encoder after the first layer, heads */
  rest += Z * H + (c->nhidden - 1) * H * H + H * G; /* decoder */
  return 2 * B * (first + rest) * 2 + 2 * B * rest;
}

static PetscErrorCode Run(void)
{
  MPI_Comm    comm = PETSC_COMM_WORLD;
  PetscMPIInt rank, size;
  PetscInt    G = 2000, Bg = 512, steps = 20, reps = 3, seed = 1, B, rstart;
  PetscReal   density = 1;
  CsVAEConfig cfg;
  CsVAE       vae;
  CsNNOptim   opt;
  CsNNReducer red;
  CsNNPass    pass;
  float      *x = NULL;
  CsCSR       X;
  double      best = 1e300, tf = 0, tb = 0, tr = 0, to = 0, loss0 = 0, loss1 = 0;
  PetscLogEvent ev[4];
  char          rtype[32] = "blocking";

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscOptionsBegin(comm, NULL, "VAE training-step benchmark", "bench");
  PetscCall(PetscOptionsInt("-genes", "Genes", "", G, &G, NULL));
  PetscCall(PetscOptionsInt("-batch", "Global minibatch (split over ranks)", "", Bg, &Bg, NULL));
  PetscCall(PetscOptionsInt("-steps", "Steps per repetition", "", steps, &steps, NULL));
  PetscCall(PetscOptionsInt("-reps", "Repetitions (the best is reported)", "", reps, &reps, NULL));
  PetscCall(PetscOptionsReal("-density", "Fraction of non-zeros (< 1: CSR input)", "", density, &density, NULL));
  PetscCall(PetscOptionsInt("-seed", "Seed", "", seed, &seed, NULL));
  PetscOptionsEnd();
  B      = Bg / size + (rank < Bg % size);
  rstart = (Bg / size) * rank + PetscMin(rank, Bg % size);

  CsVAEConfigDefault(&cfg);
  cfg.ngenes       = G;
  cfg.sparse_input = density < 1 ? PETSC_TRUE : PETSC_FALSE;
  PetscCall(CsVAECreate(comm, &cfg, B, (uint64_t)seed, &vae));
  PetscCall(CsNNOptimCreate(comm, &opt));
  PetscCall(CsNNOptimSetFromOptions(opt));
  PetscCall(CsNNOptimSetUp(opt, vae->P->n));
  PetscCall(CsNNReducerCreate(comm, vae->P, &red));
  PetscCall(CsNNReducerSetFromOptions(red));
  PetscCall(CsNNOptimSetReducer(opt, red));
  PetscCall(PetscOptionsGetString(NULL, NULL, "-nn_grad_reduce", rtype, sizeof(rtype), NULL));

  /* This rank's rows of the global batch, keyed by global row. */
  if (density < 1) {
    PetscCall(PetscMemzero(&X, sizeof(X)));
    X.nrows = B, X.ncols = G;
    PetscCall(PetscMalloc1(B + 1, &X.indptr));
    PetscCall(PetscMalloc2((size_t)(B * G * density * 1.2) + G, &X.indices, (size_t)(B * G * density * 1.2) + G, &X.data));
    X.indptr[0] = 0;
    for (PetscInt i = 0; i < B; i++) {
      X.indptr[i + 1] = X.indptr[i];
      for (PetscInt j = 0; j < G; j++) {
        uint32_t r[4];
        CsRng4((uint64_t)seed, CS_STREAM_DATA, (uint64_t)(rstart + i), (uint64_t)j, r);
        if (r[0] >= density * 4294967296.0) continue;
        if (X.indptr[i + 1] >= (int64_t)(B * G * density * 1.2) + G) break;
        X.indices[X.indptr[i + 1]] = (int32_t)j;
        X.data[X.indptr[i + 1]++]  = (float)(r[1] * 0x1.0p-32);
      }
    }
  } else {
    PetscCall(PetscMalloc1((size_t)B * G, &x));
    for (PetscInt i = 0; i < B; i++)
      for (PetscInt j = 0; j < G; j++) {
        uint32_t r[4];
        CsRng4((uint64_t)seed, CS_STREAM_DATA, (uint64_t)(rstart + i), (uint64_t)j, r);
        x[(size_t)i * G + j] = (float)(r[1] * 0x1.0p-32);
      }
  }

  PetscCall(PetscMemzero(&pass, sizeof(pass)));
  pass.comm = comm, pass.train = PETSC_TRUE, pass.nglobal = Bg, pass.seed = (uint64_t)seed, pass.rstart = rstart;
  pass.reducer = red;
  ev[0] = CS_EVENT_FORWARD, ev[1] = CS_EVENT_BACKWARD, ev[2] = CS_EVENT_REDUCE, ev[3] = CS_EVENT_OPTIM;
  PetscCall(PetscLogDefaultBegin());
  PetscCall(CsNNParamsZeroGrad(vae->P)); /* then every optimiser step leaves the gradient zeroed */
  for (PetscInt r = -1; r < reps; r++) {
    PetscInt n = r < 0 ? 3 : steps; /* r = -1: warm-up */
    double   t, e0[4], e1[4];
    for (int k = 0; k < 4; k++) {
      PetscEventPerfInfo info;
      PetscCall(PetscLogEventGetPerfInfo(0, ev[k], &info));
      e0[k] = info.time;
    }
    PetscCallMPI(MPI_Barrier(comm));
    t = MPI_Wtime();
    for (PetscInt s = 0; s < n; s++) {
      CsVAELoss l;
      PetscCall(CsNNReducerBegin(red));
      PetscCall(CsVAETrainStep(vae, &pass, B, x, density < 1 ? &X : NULL, &l));
      PetscCall(CsNNReducerEnd(red));
      PetscCall(CsNNOptimStep(opt, vae->P));
      pass.step++;
      if (r < 0 && s == 0) loss0 = l.total;
      loss1 = l.total;
    }
    PetscCallMPI(MPI_Barrier(comm));
    t = (MPI_Wtime() - t) / n;
    for (int k = 0; k < 4; k++) {
      PetscEventPerfInfo info;
      PetscCall(PetscLogEventGetPerfInfo(0, ev[k], &info));
      e1[k] = (info.time - e0[k]) / n;
    }
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, e1, 4, MPI_DOUBLE, MPI_MAX, comm));
    if (r >= 0 && t < best) best = t, tf = e1[0], tb = e1[1], tr = e1[2], to = e1[3];
  }
  PetscCall(PetscPrintf(comm,
                        "cellshift_step ranks %d threads %d batch %" PetscInt_FMT " genes %" PetscInt_FMT " density %g reduce %s"
                        " cells_per_s %.0f step_ms %.2f forward_ms %.2f backward_ms %.2f reduce_ms %.2f optim_ms %.2f"
                        " gflops %.1f flops_per_cell %.0f loss_first %.4g loss_last %.4g blas %s (core %s)\n",
                        size, CsBLASGetThreads(), Bg, G, (double)density, size > 1 ? rtype : "none",
                        Bg / best, best * 1e3, tf * 1e3, tb * 1e3, tr * 1e3, to * 1e3, StepFlops(&cfg, Bg) / best / 1e9, StepFlops(&cfg, 1), loss0, loss1,
                        openblas_get_config(), openblas_get_corename()));
  PetscCall(CsNNReducerDestroy(&red));
  PetscCall(CsNNOptimDestroy(&opt));
  PetscCall(CsVAEDestroy(&vae));
  PetscCall(PetscFree(x));
  if (density < 1) {
    PetscCall(PetscFree(X.indptr));
    PetscCall(PetscFree2(X.indices, X.data));
  }
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
