/* The trainer with a toy model at 1, 2 and 3 ranks: a sparse linear map of the expression onto 4 outputs,
   out = X (F + W) + b, fitted to a fixed random projection of X by squared error, with W and b trained and F a
   frozen tensor (CsNNParamsAddFrozen), as in adapter fine-tuning. No BatchNorm, no dropout. Checked:
   - F stays bit-identical through training while W and b change; F has no gradient and no optimiser moments (the
     optimiser's state has the size of p, and the checkpoint's optim group has no F); F is saved and loaded with the
     parameters, and a run resumed from a checkpoint ends bit-identical to an uninterrupted one;
   - gradient accumulation: -accumulate 2 (two micro-batches of 32 of a batch of 64: every gradient term is scaled by
     an exact power of two and added in the same order) gives bit-identical parameters to one batch, -accumulate 3
     (micro-batches of 21, 21 and 22 rows, combined with weights n_j / 64) the same to rounding;
   - the post-step callback (a non-negative clamp of W) runs after every optimiser step;
   - with one parameter set the step callback gets the set's reducer already begun (pass->reducer, on the last
     micro-batch of a step): the toy hands it its finished gradient (CsNNReducerReady, as the MLP's backward does), and
     with -nn_grad_reduce bucketed that is the only place the reduction starts, so a reducer begun after the step
     would leave the gradient unreduced at 2 and 3 ranks; the result matches the blocking reduction;
   - a diverging run (learning rate inf) stops with an input error on every rank. */
#include "testing.h"
#include <cellshift/trainer.h>
#include <cellshift/rng.h>
#include <cellshift/h5util.h>

#define O 4

static MPI_Comm  comm;
static CsDataset ds;
static CsDesign  d;
static uint8_t *train;
static char      dir[PETSC_MAX_PATH_LEN];

typedef struct {
  CsNNParams P;
  PetscInt   tW, tb, tF, maxb;
  float     *R;                        /* [G, O] the target projection */
  float     *out, *tmp, *tgt, *dout;   /* [maxb, O] */
  PetscBool  clamp;
  int64_t    poststeps, first; /* post-step calls, the step of the first */
  int64_t    reduced;          /* step calls given a reducer */
} Toy;

static void Forward(Toy *m, const CsCSR *X)
{
  size_t n = (size_t)X->nrows * O;
  cs_linear_sparse_forward(m->out, X, CsNNParamsData(m->P, m->tF), CsNNParamsData(m->P, m->tb), O);
  cs_linear_sparse_forward(m->tmp, X, CsNNParamsData(m->P, m->tW), NULL, O);
  for (size_t i = 0; i < n; i++) m->out[i] += m->tmp[i];
  cs_linear_sparse_forward(m->tgt, X, m->R, NULL, O);
}

static PetscErrorCode Step(void *ctx, const CsBatch *b, const CsNNPass *pass, PetscInt *set, double *loss)
{
  Toy *m = (Toy *)ctx;

  PetscFunctionBeginUser;
  PetscCheck(b->n <= m->maxb, PETSC_COMM_SELF, PETSC_ERR_PLIB, "batch of %" PetscInt_FMT " rows", b->n);
  Forward(m, &b->X);
  PetscCall(PetscArrayzero(m->dout, (size_t)b->n * O));
  *loss = cs_mse_loss(m->dout, m->out, m->tgt, b->n, O, pass->nglobal, 1.0);
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, loss, 1, MPI_DOUBLE, MPI_SUM, pass->comm));
  cs_linear_sparse_backward(CsNNParamsGrad(m->P, m->tW), CsNNParamsGrad(m->P, m->tb), m->dout, &b->X, O);
  if (pass->reducer) { /* every gradient is final: hand it all to the reduction */
    size_t lo = PetscMin(m->P->t[m->tW].offset, m->P->t[m->tb].offset);
    PetscCall(CsNNReducerReady(pass->reducer, lo));
    m->reduced++;
  }
  *set = 0;
  PetscFunctionReturn(0);
}

static PetscErrorCode Loss(void *ctx, const CsBatch *b, const CsNNPass *pass, double *loss)
{
  Toy *m = (Toy *)ctx;

  PetscFunctionBeginUser;
  Forward(m, &b->X);
  *loss = cs_mse_loss(NULL, m->out, m->tgt, b->n, O, pass->nglobal, 1.0);
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, loss, 1, MPI_DOUBLE, MPI_SUM, pass->comm));
  PetscFunctionReturn(0);
}

/* A non-negative clamp of W, as input-convex networks need. */
static PetscErrorCode PostStep(void *ctx, PetscInt set, int64_t step)
{
  Toy     *m = (Toy *)ctx;
  float   *w = CsNNParamsData(m->P, m->tW);
  PetscInt n = m->P->t[m->tW].rows * m->P->t[m->tW].cols;

  PetscFunctionBeginUser;
  if (!m->poststeps) m->first = step;
  PetscCheck(set == 0 && step == m->first + m->poststeps, PETSC_COMM_SELF, PETSC_ERR_PLIB, "post-step of set %" PetscInt_FMT " at step %lld", set, (long long)step);
  m->poststeps++;
  for (PetscInt i = 0; m->clamp && i < n; i++) w[i] = PetscMax(w[i], 0.0f);
  PetscFunctionReturn(0);
}

static PetscErrorCode ToyCreate(Toy *m)
{
  PetscInt G = ds->ngenes;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(m, sizeof(*m)));
  PetscCall(CsNNParamsCreate(comm, &m->P));
  PetscCall(CsNNParamsAdd(m->P, "W", G, O, CS_NN_INIT_FANIN, G, &m->tW));
  PetscCall(CsNNParamsAdd(m->P, "b", O, 1, CS_NN_INIT_FANIN, G, &m->tb));
  PetscCall(CsNNParamsAddFrozen(m->P, "F", G, O, CS_NN_INIT_FANIN, G, &m->tF));
  PetscCall(CsNNParamsSetUp(m->P));
  PetscCall(CsNNParamsInitialize(m->P, 3));
  PetscCall(PetscMalloc1((size_t)G * O, &m->R));
  for (PetscInt i = 0; i < G * O; i++) m->R[i] = (float)(CsRngUniform(5, CS_STREAM_DATA, 1, (uint64_t)i) - 0.5);
  PetscFunctionReturn(0);
}

static PetscErrorCode ToyDestroy(Toy *m)
{
  PetscFunctionBeginUser;
  PetscCall(CsNNParamsDestroy(&m->P));
  PetscCall(PetscFree(m->R));
  PetscCall(PetscFree4(m->out, m->tmp, m->tgt, m->dout));
  PetscFunctionReturn(0);
}

/* Train the toy with the given options (prefix toy_); *ierr is the training's error code. */
static PetscErrorCode Train(Toy *m, const char opts[], const char ckdir[], PetscErrorCode *ierr)
{
  CsTrainer          t;
  CsTrainerCallbacks cb = {m, Step, Loss, PostStep};
  PetscBool          interrupted;

  PetscFunctionBeginUser;
  PetscCall(PetscOptionsInsertString(NULL, opts));
  PetscCall(CsTrainerCreate(comm, &t));
  PetscCall(CsTrainerSetOptionsPrefix(t, "toy_"));
  PetscCall(CsTrainerSetDefaults(t, 2, 64, 100));
  PetscCall(CsTrainerAddOptimizer(t, NULL, 1e-2, 0, NULL));
  PetscCall(CsTrainerSetFromOptions(t));
  PetscCall(CsTrainerGetBatchSize(t, &m->maxb));
  PetscCall(PetscFree4(m->out, m->tmp, m->tgt, m->dout));
  PetscCall(PetscMalloc4((size_t)m->maxb * O, &m->out, (size_t)m->maxb * O, &m->tmp, (size_t)m->maxb * O, &m->tgt, (size_t)m->maxb * O, &m->dout));
  PetscCall(CsTrainerSetParams(t, 0, m->P)); /* reads the reduction's options */
  PetscCall(PetscOptionsClear(NULL));
  PetscCall(CsTrainerSetCallbacks(t, &cb));
  PetscCall(CsTrainerSetData(t, ds, d, train, NULL, 17));
  PetscCall(CsTrainerSetCheckpointDir(t, ckdir, "toy", "toy"));
  m->poststeps = m->reduced = 0;
  PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
  *ierr = CsTrainerTrain(t, &interrupted);
  PetscCall(PetscPopErrorHandler());
  PetscCall(CsTrainerDestroy(&t));
  PetscFunctionReturn(0);
}

/* max |a - b| / max |b| over the trained tensors. */
static double RelDiff(CsNNParams A, CsNNParams Bp)
{
  double e = 0, r = 0;
  for (size_t i = 0; i < A->n; i++) e = PetscMax(e, fabs((double)A->p[i] - Bp->p[i])), r = PetscMax(r, fabs((double)Bp->p[i]));
  return e / r;
}

static PetscErrorCode CheckCheckpoint(const char ckdir[], const Toy *m)
{
  char        path[PETSC_MAX_PATH_LEN];
  PetscMPIInt rank;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCall(CsPathJoin(ckdir, "checkpoint.h5", path));
  if (!rank) {
    hid_t     f;
    PetscBool e;
    hsize_t   dims[2] = {(hsize_t)ds->ngenes, O};
    float    *F;
    PetscCall(PetscMalloc1((size_t)ds->ngenes * O, &F));
    H5Call(f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), "cannot open %s", path);
    PetscCall(CsH5ReadArray(f, path, "set0/params/F", H5T_NATIVE_FLOAT, 2, dims, F));
    CS_EXPECT(!memcmp(F, CsNNParamsData(m->P, m->tF), sizeof(float) * ds->ngenes * O), "the checkpoint's frozen tensor differs");
    PetscCall(CsH5Exists(f, "set0/optim/m/F", &e));
    CS_EXPECT(!e, "the frozen tensor has optimiser moments in the checkpoint");
    PetscCall(CsH5Exists(f, "set0/optim/m/W", &e));
    CS_EXPECT(e, "the checkpoint has no moments of W");
    H5Call(H5Fclose(f), "cannot close %s", path);
    PetscCall(PetscFree(F));
  }
  PetscFunctionReturn(0);
}

/* F saved with the parameters and loaded into a toy initialised otherwise. */
static PetscErrorCode CheckSaveLoad(const Toy *m)
{
  char        path[PETSC_MAX_PATH_LEN];
  PetscMPIInt rank;
  Toy         other;
  hid_t       f;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCall(CsPathJoin(dir, "params.h5", path));
  if (!rank) {
    H5Call(f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "cannot create %s", path);
    PetscCall(CsNNParamsSave(m->P, f));
    H5Call(H5Fclose(f), "cannot close %s", path);
  }
  PetscCallMPI(MPI_Barrier(comm));
  PetscCall(ToyCreate(&other));
  PetscCall(CsNNParamsInitialize(other.P, 99));
  H5Call(f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), "cannot open %s", path);
  PetscCall(CsNNParamsLoad(other.P, f, path));
  H5Call(H5Fclose(f), "cannot close %s", path);
  CS_EXPECT(!memcmp(other.P->buf, m->P->buf, sizeof(float) * m->P->nbuf) && !memcmp(other.P->p, m->P->p, sizeof(float) * m->P->n),
            "parameters and frozen tensor not restored by save/load");
  PetscCall(ToyDestroy(&other));
  PetscFunctionReturn(0);
}

static PetscErrorCode Body(void)
{
  char           data[PETSC_MAX_PATH_LEN], ck[PETSC_MAX_PATH_LEN], opts[2 * PETSC_MAX_PATH_LEN];
  Toy            ref, acc, part, clamp, bad;
  float         *F0, *W0;
  PetscErrorCode ierr;
  size_t         nF;

  PetscFunctionBeginUser;
  comm = PETSC_COMM_WORLD;
  PetscCall(CsTestSourcePath("input/perturbench_devel/devel.h5ad", data));
  PetscCall(CsTestTempDir(comm, dir));
  PetscCall(CsDatasetCreate(comm, &ds));
  PetscCall(CsDatasetSetFile(ds, data, NULL));
  PetscCall(CsDesignCreate(comm, &d));
  PetscCall(PetscStrncpy(d->context_key, "cell_type", sizeof(d->context_key)));
  PetscCall(CsDesignAddKeys(d, ds));
  PetscCall(CsDatasetSetUp(ds));
  PetscCall(CsDesignSetUp(d, ds));
  PetscCall(PetscCalloc1(CsMaskBytes(ds->nlocal), &train));
  for (PetscInt i = 0; i < ds->nlocal; i++)
    if (d->cell_group[i] >= 0) CsMaskSet(train, i);

  /* Frozen tensor: untouched by training, outside the optimiser, in checkpoints. */
  PetscCall(ToyCreate(&ref));
  nF = (size_t)ds->ngenes * O;
  PetscCall(PetscMalloc2(nF, &F0, nF, &W0));
  PetscCall(PetscArraycpy(F0, CsNNParamsData(ref.P, ref.tF), nF));
  PetscCall(PetscArraycpy(W0, CsNNParamsData(ref.P, ref.tW), nF));
  CS_EXPECT(CsNNParamsGrad(ref.P, ref.tF) == NULL && ref.P->t[ref.tF].frozen, "the frozen tensor has a gradient");
  CS_EXPECT(ref.P->n == (size_t)ds->ngenes * O + 16, "p holds %zu floats: W and b only expected", ref.P->n);
  PetscCall(CsPathJoin(dir, "ref", ck));
  PetscCall(Train(&ref, "-checkpoint_every 1", ck, &ierr));
  CS_EXPECT(!ierr, "training failed (%d)", (int)ierr);
  CS_EXPECT(!memcmp(F0, CsNNParamsData(ref.P, ref.tF), sizeof(float) * nF), "training changed the frozen tensor");
  CS_EXPECT(memcmp(W0, CsNNParamsData(ref.P, ref.tW), sizeof(float) * nF), "training did not change W");
  CS_EXPECT(ref.poststeps > 0, "the post-step callback was not called");
  CS_EXPECT(ref.reduced == ref.poststeps, "%lld of %lld step calls had the reducer", (long long)ref.reduced, (long long)ref.poststeps);
  PetscCall(CheckCheckpoint(ck, &ref));
  PetscCall(CheckSaveLoad(&ref));

  /* Resumed from an epoch-1 checkpoint: the frozen tensor comes back from the file. */
  PetscCall(ToyCreate(&part));
  PetscCall(CsPathJoin(dir, "toy", ck));
  PetscCall(Train(&part, "-toy_epochs 1 -checkpoint_every 1", ck, &ierr));
  CS_EXPECT(!ierr, "training failed (%d)", (int)ierr);
  PetscCall(CsNNParamsInitialize(part.P, 77)); /* forget: everything must come from the checkpoint */
  PetscCall(PetscSNPrintf(opts, sizeof(opts), "-resume %s", dir));
  PetscCall(Train(&part, opts, ck, &ierr));
  CS_EXPECT(!ierr, "resumed training failed (%d)", (int)ierr);
  CS_EXPECT(!memcmp(part.P->p, ref.P->p, sizeof(float) * ref.P->n) && !memcmp(part.P->buf, ref.P->buf, sizeof(float) * ref.P->nbuf),
            "a resumed run differs from an uninterrupted one");
  PetscCall(ToyDestroy(&part));

  /* Accumulation. */
  PetscCall(ToyCreate(&acc));
  PetscCall(Train(&acc, "-toy_accumulate 2", "", &ierr));
  CS_EXPECT(!ierr, "training failed (%d)", (int)ierr);
  CS_EXPECT(!memcmp(acc.P->p, ref.P->p, sizeof(float) * ref.P->n), "-accumulate 2 differs from one batch (rel. %g)", RelDiff(acc.P, ref.P));
  PetscCall(CsNNParamsInitialize(acc.P, 3));
  PetscCall(Train(&acc, "-toy_accumulate 3", "", &ierr));
  CS_EXPECT(!ierr, "training failed (%d)", (int)ierr);
  CS_EXPECT(RelDiff(acc.P, ref.P) < 1e-5, "-accumulate 3 differs from one batch by %g", RelDiff(acc.P, ref.P));
  PetscCall(PetscPrintf(comm, "-accumulate 3 vs one batch: max relative difference %g\n", RelDiff(acc.P, ref.P)));
  PetscCall(ToyDestroy(&acc));

  /* The reducer begun before the step: the bucketed reduction starts only from the toy's CsNNReducerReady. */
  {
    Toy bk;
    PetscCall(ToyCreate(&bk));
    PetscCall(Train(&bk, "-nn_grad_reduce bucketed -nn_grad_bucket_mb 0.001", "", &ierr));
    CS_EXPECT(!ierr, "training failed (%d)", (int)ierr);
    CS_EXPECT(bk.reduced == bk.poststeps && bk.reduced > 0, "%lld of %lld step calls had the reducer", (long long)bk.reduced, (long long)bk.poststeps);
    CS_EXPECT(RelDiff(bk.P, ref.P) < 1e-5, "the bucketed reduction differs from the blocking one by %g", RelDiff(bk.P, ref.P));
    PetscCall(PetscPrintf(comm, "bucketed vs blocking reduction: max relative difference %g\n", RelDiff(bk.P, ref.P)));
    PetscCall(ToyDestroy(&bk));
  }

  /* Post-step clamp. */
  PetscCall(ToyCreate(&clamp));
  clamp.clamp = PETSC_TRUE;
  PetscCall(Train(&clamp, "-toy_epochs 1", "", &ierr));
  CS_EXPECT(!ierr, "training failed (%d)", (int)ierr);
  {
    const float *w   = CsNNParamsData(clamp.P, clamp.tW);
    PetscInt     neg = 0, zero = 0;
    for (size_t i = 0; i < nF; i++) neg += W0[i] < 0, zero += w[i] == 0;
    CS_EXPECT(neg > 0 && zero > 0, "the clamp had nothing to do (%" PetscInt_FMT " negative weights at start, %" PetscInt_FMT " clamped)", neg, zero);
    for (size_t i = 0; i < nF; i++) CS_EXPECT(w[i] >= 0, "W[%zu] = %g after the clamp", i, (double)w[i]);
  }
  PetscCall(ToyDestroy(&clamp));

  /* Divergence. */
  PetscCall(ToyCreate(&bad));
  PetscCall(Train(&bad, "-toy_lr inf", "", &ierr));
  CS_EXPECT(ierr == CS_ERR_INPUT, "a diverging run returned %d, not an input error", (int)ierr);
  PetscCall(ToyDestroy(&bad));

  PetscCall(ToyDestroy(&ref));
  PetscCall(PetscFree2(F0, W0));
  PetscCall(PetscFree(train));
  PetscCall(CsDesignDestroy(&d));
  PetscCall(CsDatasetDestroy(&ds));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv) { return CsTestMain(argc, argv, Body); }
