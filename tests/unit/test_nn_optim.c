/* Adam / AdamW against a hand computation, gradient clipping, learning-rate schedules, options, and a checkpoint
   (parameters, running statistics, Adam moments and step) that resumes bit-identically. */
#include "testing.h"
#include <cellshift/nn.h>
#include <cellshift/rng.h>
#include <string.h>

#define N 37 /* not a multiple of the vector width: the tail path runs too */

static double Grad(int step, int i) { return (CsRngUniform(99, CS_STREAM_DATA, (uint64_t)step, (uint64_t)i) - 0.5) * (1 + i % 5); }

static PetscErrorCode MakeParams(CsNNParams *P)
{
  PetscFunctionBeginUser;
  PetscCall(CsNNParamsCreate(PETSC_COMM_SELF, P));
  PetscCall(CsNNParamsAdd(*P, "w", N, 1, CS_NN_INIT_FANIN, 4, NULL));
  PetscCall(CsNNParamsSetUp(*P));
  PetscCall(CsNNParamsInitialize(*P, 1));
  PetscFunctionReturn(0);
}

/* Adam / AdamW in double, written from the formulas of Kingma & Ba and Loshchilov & Hutter (torch's form of the
   bias correction), as the reference. */
static void RefStep(double *p, double *m, double *v, const double *g0, int t, double lr, double wd, PetscBool adamw, double clip, double cv)
{
  double b1 = 0.9, b2 = 0.999, eps = 1e-8, g[N], norm = 0;
  for (int i = 0; i < N; i++) norm += g0[i] * g0[i];
  norm = sqrt(norm);
  for (int i = 0; i < N; i++) g[i] = clip > 0 && norm > clip ? g0[i] * clip / (norm + 1e-6) : g0[i];
  for (int i = 0; i < N; i++) g[i] = cv > 0 ? fmin(fmax(g[i], -cv), cv) : g[i]; /* torch clip_grad_value_ */
  for (int i = 0; i < N; i++) {
    if (adamw) p[i] *= 1 - lr * wd;
    else g[i] += wd * p[i];
    m[i] = b1 * m[i] + (1 - b1) * g[i];
    v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
    p[i] -= lr / (1 - pow(b1, t)) * m[i] / (sqrt(v[i]) / sqrt(1 - pow(b2, t)) + eps);
  }
}

static PetscErrorCode TestAdam(PetscBool adamw, double wd, double clip, double cv)
{
  CsNNParams P;
  CsNNOptim  opt;
  double     p[N], m[N] = {0}, v[N] = {0}, g[N], err = 0;

  PetscFunctionBeginUser;
  PetscCall(MakeParams(&P));
  PetscCall(CsNNOptimCreate(PETSC_COMM_SELF, &opt));
  opt->type = adamw ? CS_NN_OPTIM_ADAMW : CS_NN_OPTIM_ADAM, opt->lr = 0.01, opt->weight_decay = wd, opt->clip = clip, opt->clip_value = cv;
  PetscCall(CsNNOptimSetUp(opt, P->n));
  for (int i = 0; i < N; i++) p[i] = P->p[i];
  for (int t = 1; t <= 6; t++) {
    double gn = 0;
    for (int i = 0; i < N; i++) g[i] = Grad(t, i) * (t == 4 ? 50 : 1), P->g[i] = (float)g[i], gn += g[i] * g[i];
    PetscCall(CsNNOptimStep(opt, P));
    if (CsBLASGetThreads() == 1) { /* the update pass's sum of squares: CsNNSqDiff's order, bit for bit */
      double acc[8] = {0}, sq = 0;
      size_t n = P->n; /* N padded to the tensor alignment with zeros */
      for (size_t i = 0; i < n; i++) {
        double q = i < N ? (double)(float)g[i] * (float)g[i] : 0;
        if (i < n / 8 * 8) acc[i % 8] += q;
        else sq += q;
      }
      for (int l = 0; l < 8; l++) sq += acc[l];
      CS_EXPECT(opt->last_sumsq == sq, "sum of squares of the gradient %.17g, recomputed %.17g", opt->last_sumsq, sq);
    }
    RefStep(p, m, v, g, t, 0.01, wd, adamw, clip, cv);
    if (clip > 0) CS_EXPECT_CLOSE(opt->last_norm, sqrt(gn), 1e-6, "gradient norm before clipping");
    for (int i = 0; i < N; i++) err = fmax(err, fabs(P->p[i] - p[i]));
    for (int i = 0; i < N; i++) CS_EXPECT(P->g[i] == 0, "the step leaves the gradient zeroed");
  }
  PetscCall(PetscPrintf(PETSC_COMM_SELF, "%s wd %g clip %g clip_value %g: max |p - p_ref| after 6 steps = %.2e\n", adamw ? "adamw" : "adam", wd, clip, cv, err));
  CS_EXPECT(err < 2e-6, "%s (wd %g, clip %g, clip_value %g) differs from the reference by %g", adamw ? "AdamW" : "Adam", wd, clip, cv, err);
  PetscCall(CsNNOptimDestroy(&opt));
  PetscCall(CsNNParamsDestroy(&P));
  PetscFunctionReturn(0);
}

/* The first Adam step moves every parameter by lr * g / (|g| + eps) ~ lr * sign(g): a hand computation. */
static PetscErrorCode TestAdamFirstStep(void)
{
  CsNNParams P;
  CsNNOptim  opt;
  float      p0[N];

  PetscFunctionBeginUser;
  PetscCall(MakeParams(&P));
  PetscCall(CsNNOptimCreate(PETSC_COMM_SELF, &opt));
  PetscCall(CsNNOptimSetUp(opt, P->n));
  memcpy(p0, P->p, sizeof(p0));
  for (int i = 0; i < N; i++) P->g[i] = (i % 2 ? 1 : -1) * (0.5f + (float)i);
  PetscCall(CsNNOptimStep(opt, P));
  for (int i = 0; i < N; i++) CS_EXPECT_CLOSE(P->p[i], p0[i] - 1e-3 * (i % 2 ? 1 : -1), 1e-7, "first Adam step = lr sign(g)");
  CS_EXPECT(fabsf(opt->m[1] - 0.1f * 1.5f) < 1e-7 && fabsf(opt->v[1] - 0.001f * 2.25f) < 1e-9, "first moments");
  PetscCall(CsNNOptimDestroy(&opt));
  PetscCall(CsNNParamsDestroy(&P));
  PetscFunctionReturn(0);
}

static PetscErrorCode TestSchedules(void)
{
  CsNNOptim o;

  PetscFunctionBeginUser;
  PetscCall(CsNNOptimCreate(PETSC_COMM_SELF, &o));
  o->lr = 0.1, o->warmup = 10;
  CS_EXPECT_CLOSE(CsNNOptimLR(o, 1), 0.01, 1e-15, "warm-up step 1");
  CS_EXPECT_CLOSE(CsNNOptimLR(o, 5), 0.05, 1e-15, "warm-up step 5");
  CS_EXPECT_CLOSE(CsNNOptimLR(o, 10), 0.1, 1e-15, "end of warm-up");
  CS_EXPECT_CLOSE(CsNNOptimLR(o, 500), 0.1, 1e-15, "no decay");
  o->decay = CS_NN_DECAY_COSINE, o->decay_steps = 110, o->lr_min = 0.01;
  CS_EXPECT_CLOSE(CsNNOptimLR(o, 10), 0.1, 1e-15, "cosine start");
  CS_EXPECT_CLOSE(CsNNOptimLR(o, 60), 0.055, 1e-12, "cosine half-way = (lr + lr_min) / 2");
  CS_EXPECT_CLOSE(CsNNOptimLR(o, 35), 0.01 + 0.045 * (1 + sqrt(0.5)), 1e-12, "cosine quarter");
  CS_EXPECT_CLOSE(CsNNOptimLR(o, 110), 0.01, 1e-12, "cosine end");
  CS_EXPECT_CLOSE(CsNNOptimLR(o, 1000), 0.01, 1e-12, "cosine after the end");
  o->decay = CS_NN_DECAY_STEP, o->step_size = 30, o->gamma = 0.5;
  CS_EXPECT_CLOSE(CsNNOptimLR(o, 39), 0.1, 1e-15, "step decay before the first drop");
  CS_EXPECT_CLOSE(CsNNOptimLR(o, 40), 0.05, 1e-15, "step decay, first drop");
  CS_EXPECT_CLOSE(CsNNOptimLR(o, 100), 0.0125, 1e-15, "step decay, third drop");
  PetscCall(CsNNOptimDestroy(&o));
  /* Options with a prefix. */
  PetscCall(PetscOptionsSetValue(NULL, "-t_optim", "adamw"));
  PetscCall(PetscOptionsSetValue(NULL, "-t_lr", "0.02"));
  PetscCall(PetscOptionsSetValue(NULL, "-t_lr_decay", "cosine"));
  PetscCall(PetscOptionsSetValue(NULL, "-t_clip_norm", "2.5"));
  PetscCall(CsNNOptimCreate(PETSC_COMM_SELF, &o));
  PetscCall(CsNNOptimSetOptionsPrefix(o, "t_"));
  PetscCall(CsNNOptimSetFromOptions(o));
  CS_EXPECT(o->type == CS_NN_OPTIM_ADAMW && o->lr == 0.02 && o->decay == CS_NN_DECAY_COSINE && o->clip == 2.5, "optimiser options");
  PetscCall(CsNNOptimDestroy(&o));
  PetscFunctionReturn(0);
}

/* Train a small VAE for 3 steps, checkpoint, train 2 more; a fresh model loaded from the checkpoint must reach the
   very same parameters after the same 2 steps. */
static PetscErrorCode TestResume(void)
{
  CsVAEConfig cfg;
  CsVAE       a, b;
  CsNNOptim   oa, ob;
  CsNNPass    pass;
  float       x[8 * 12];
  char        dir[PETSC_MAX_PATH_LEN], path[PETSC_MAX_PATH_LEN];
  hid_t       f, g;

  PetscFunctionBeginUser;
  CsVAEConfigDefault(&cfg);
  cfg.ngenes = 12, cfg.hidden = 10, cfg.latent = 3;
  for (int i = 0; i < 8 * 12; i++) x[i] = (float)CsRngUniform(5, CS_STREAM_DATA, 0, (uint64_t)i);
  PetscCall(CsVAECreate(PETSC_COMM_SELF, &cfg, 8, 1, &a));
  PetscCall(CsVAECreate(PETSC_COMM_SELF, &cfg, 8, 2, &b)); /* another seed: everything must come from the file */
  PetscCall(CsVAEView(a, PETSC_VIEWER_STDOUT_SELF));
  PetscCall(CsNNOptimCreate(PETSC_COMM_SELF, &oa));
  PetscCall(CsNNOptimCreate(PETSC_COMM_SELF, &ob));
  oa->clip = ob->clip = 1.0;
  oa->decay = ob->decay = CS_NN_DECAY_COSINE, oa->decay_steps = ob->decay_steps = 10;
  PetscCall(CsNNOptimSetUp(oa, a->P->n));
  PetscCall(PetscMemzero(&pass, sizeof(pass)));
  pass.comm = PETSC_COMM_SELF, pass.train = PETSC_TRUE, pass.nglobal = 8, pass.seed = 3;
  for (int s = 0; s < 5; s++) {
    if (s == 3) { /* checkpoint */
      PetscCall(CsTestTempDir(PETSC_COMM_SELF, dir));
      PetscCall(CsPathJoin(dir, "model.h5", path));
      H5Call(f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "cannot create %s", path);
      H5Call(g = H5Gcreate2(f, "params", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "group");
      PetscCall(CsNNParamsSave(a->P, g));
      H5Call(H5Gclose(g), "close");
      H5Call(g = H5Gcreate2(f, "optim", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "group");
      PetscCall(CsNNOptimSave(oa, a->P, g));
      H5Call(H5Gclose(g), "close");
      H5Call(H5Fclose(f), "close");
    }
    pass.step = (uint64_t)s;
    PetscCall(CsVAETrainStep(a, &pass, 8, x, NULL, NULL));
    PetscCall(CsNNOptimStep(oa, a->P));
  }
  H5Call(f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), "cannot open %s", path);
  H5Call(g = H5Gopen2(f, "params", H5P_DEFAULT), "group");
  PetscCall(CsNNParamsLoad(b->P, g, path));
  H5Call(H5Gclose(g), "close");
  H5Call(g = H5Gopen2(f, "optim", H5P_DEFAULT), "group");
  PetscCall(CsNNOptimLoad(ob, b->P, g, path));
  H5Call(H5Gclose(g), "close");
  H5Call(H5Fclose(f), "close");
  CS_EXPECT(ob->t == 3, "resumed optimiser step %" PRId64, ob->t);
  for (int s = 3; s < 5; s++) {
    pass.step = (uint64_t)s;
    PetscCall(CsVAETrainStep(b, &pass, 8, x, NULL, NULL));
    PetscCall(CsNNOptimStep(ob, b->P));
  }
  CS_EXPECT(!memcmp(a->P->p, b->P->p, sizeof(float) * a->P->n), "resumed parameters are not bit-identical");
  CS_EXPECT(!memcmp(a->P->buf, b->P->buf, sizeof(float) * a->P->nbuf), "resumed running statistics are not bit-identical");
  CS_EXPECT(!memcmp(oa->m, ob->m, sizeof(float) * a->P->n) && !memcmp(oa->v, ob->v, sizeof(float) * a->P->n),
            "resumed Adam moments are not bit-identical");
  PetscCall(CsNNOptimDestroy(&oa));
  PetscCall(CsNNOptimDestroy(&ob));
  PetscCall(CsVAEDestroy(&a));
  PetscCall(CsVAEDestroy(&b));
  PetscFunctionReturn(0);
}

static PetscErrorCode Body(void)
{
  PetscFunctionBeginUser;
  PetscCall(TestAdamFirstStep());
  PetscCall(TestAdam(PETSC_FALSE, 0, 0, 0));
  PetscCall(TestAdam(PETSC_FALSE, 0.1, 0, 0));
  PetscCall(TestAdam(PETSC_TRUE, 0.1, 0, 0));
  PetscCall(TestAdam(PETSC_FALSE, 0, 3.0, 0));
  PetscCall(TestAdam(PETSC_FALSE, 0.1, 0, 0.3));
  PetscCall(TestAdam(PETSC_FALSE, 0, 3.0, 0.3));
  PetscCall(TestSchedules());
  PetscCall(TestResume());
  PetscFunctionReturn(0);
}

int main(int argc, char **argv) { return CsTestMain(argc, argv, Body); }
