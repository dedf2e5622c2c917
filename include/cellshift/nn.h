/* cellshift neural engine: one parameter buffer, layers with explicit forward/backward, losses, Adam, gradient
   reduction, and the blocks the learned models are built from (CsMLP, CsVAE).

   Conventions
   - Float32 everywhere; dense products go through OpenBLAS cblas_sgemm (row-major). Activations are row-major
     [B, C]: one row per cell of this rank's part of the minibatch (B rows), C features.
   - Kernels are plain C in the llm.c style: x_forward(out, cache..., inp, params, dims) and
     x_backward(dinp, dparams, dout, cache..., dims). Backward kernels ACCUMULATE (+=) into every gradient they
     are given; a NULL gradient pointer skips that gradient.
   - Linear weights are stored [in, out] (the transpose of torch.nn.Linear.weight): out = inp W + b. This keeps a
     weight row contiguous for the sparse first layer, and costs nothing for sgemm.
   - Distributed batches: a global minibatch of nglobal rows is split over the ranks of a communicator. Losses
     are normalised by nglobal, so the SUM over ranks of the local gradients is the gradient of the global mean
     loss (the gradient reduction is a sum). BatchNorm in train mode uses the statistics of the global minibatch
     (sums reduced over the communicator), and dropout masks and noise are keyed by the GLOBAL cell index, so 1,
     2 or 3 ranks compute the same thing (to rounding).
   - Random numbers come from the counter-based generator of rng.h; nothing here has RNG state.
   - Threads: sgemm runs on the BLAS threads; the sparse first layer, the reconstruction loss, the VAE noise and
     Adam run on an internal pool of as many threads (CsBLASGetThreads at first use); the per-block elementwise
     passes run on the calling thread (faster there, see src/nn/mlp.c). Workers never call MPI.
   - Vector paths: hot loops are compiled for AVX-512, AVX2 and baseline x86-64 and chosen at load time; Philox,
     Adam and the sparse layer have explicit AVX-512 code. Multiply and add are never fused, so every path rounds
     like the scalar code. */
#ifndef CELLSHIFT_NN_H
#define CELLSHIFT_NN_H

#include <cellshift/csr.h>

/* ================================================= parameters ================================================= */

#define CS_NN_NAME_LEN 64

typedef enum {
  CS_NN_INIT_ZERO  = 0,
  CS_NN_INIT_ONE   = 1,
  CS_NN_INIT_FANIN = 2 /* U(-1/sqrt(fan_in), 1/sqrt(fan_in)): torch.nn.Linear's default for weight and bias */
} CsNNInit;

typedef struct {
  char      name[CS_NN_NAME_LEN]; /* unique; the dataset name in checkpoints */
  PetscInt  rows, cols;           /* shape (cols = 1 for a vector) */
  size_t    offset;               /* in floats, into p/g (trained) or buf (buffer); a multiple of 16 */
  PetscInt  fan_in;
  CsNNInit  init;
  PetscBool buffer;               /* in buf, not trained (BatchNorm running statistics, frozen tensors), saved with the parameters */
  PetscBool frozen;               /* a weight held fixed (CsNNParamsAddFrozen); also a buffer */
} CsNNTensor;

/* All parameters of a model in ONE contiguous buffer p, their gradients in g with the same layout (zeroing is one
   memset, reduction one allreduce), buffers and frozen tensors in buf. Tensors are registered before CsNNParamsSetUp; offsets are
   assigned in registration order, so register in forward order: backward then finishes the gradients from the
   end of g towards its start, which is what the bucketed reduction relies on. */
typedef struct _n_CsNNParams *CsNNParams;
struct _n_CsNNParams {
  MPI_Comm    comm;
  PetscInt    ntensors;
  CsNNTensor *t;     /* [ntensors] */
  size_t      n;     /* floats in p and g (tensors padded to 16 floats, padding stays 0) */
  size_t      nbuf;  /* floats in buf */
  float      *p;     /* [n] parameters (64-byte aligned) */
  float      *g;     /* [n] gradients */
  float      *buf;   /* [nbuf] buffers */
  PetscBool   setup;
};

PETSC_EXTERN PetscErrorCode CsNNParamsCreate(MPI_Comm comm, CsNNParams *P);
/* Register a trained tensor rows x cols; *idx (may be NULL) receives its index. */
PETSC_EXTERN PetscErrorCode CsNNParamsAdd(CsNNParams P, const char name[], PetscInt rows, PetscInt cols, CsNNInit init,
                                          PetscInt fan_in, PetscInt *idx);
/* Register a buffer (not trained, no gradient). */
PETSC_EXTERN PetscErrorCode CsNNParamsAddBuffer(CsNNParams P, const char name[], PetscInt size, CsNNInit init, PetscInt *idx);
/* Register a frozen tensor rows x cols (the base weights of adapter fine-tuning): initialised like a trained tensor,
   saved and loaded with the parameters, but held in buf, outside p and g, so it has no gradient (CsNNParamsGrad is
   NULL), no optimiser moments, and the gradient reduction never sees it. */
PETSC_EXTERN PetscErrorCode CsNNParamsAddFrozen(CsNNParams P, const char name[], PetscInt rows, PetscInt cols, CsNNInit init,
                                                PetscInt fan_in, PetscInt *idx);
/* Allocate p, g, buf (zeroed). */
PETSC_EXTERN PetscErrorCode CsNNParamsSetUp(CsNNParams P);
/* Initialise every tensor from its rule; tensor values are keyed by (seed, name, element), so they do not depend on
   the other tensors or on the number of ranks. */
PETSC_EXTERN PetscErrorCode CsNNParamsInitialize(CsNNParams P, uint64_t seed);
/* Index of the tensor called name, or -1. */
PETSC_EXTERN PetscInt       CsNNParamsFind(CsNNParams P, const char name[]);
/* Data of tensor idx (in p or buf), and its gradient (NULL for a buffer). */
PETSC_EXTERN float         *CsNNParamsData(CsNNParams P, PetscInt idx);
PETSC_EXTERN float         *CsNNParamsGrad(CsNNParams P, PetscInt idx);
PETSC_EXTERN PetscErrorCode CsNNParamsZeroGrad(CsNNParams P);
/* Write every tensor (parameters and buffers) as a float dataset named after it ([rows, cols], or [rows] for a
   vector) into an open group of a serial file (rank 0). */
PETSC_EXTERN PetscErrorCode CsNNParamsSave(CsNNParams P, hid_t group);
/* Read them back (every rank); shapes must match the registered ones. */
PETSC_EXTERN PetscErrorCode CsNNParamsLoad(CsNNParams P, hid_t group, const char what[]);
/* The same for any array laid out like p (optimiser moments): only the trained tensors. */
PETSC_EXTERN PetscErrorCode CsNNParamsSaveLike(CsNNParams P, hid_t group, const float *base);
PETSC_EXTERN PetscErrorCode CsNNParamsLoadLike(CsNNParams P, hid_t group, const char what[], float *base);
PETSC_EXTERN PetscErrorCode CsNNParamsView(CsNNParams P, PetscViewer v);
PETSC_EXTERN PetscErrorCode CsNNParamsDestroy(CsNNParams *P);

/* ============================================== pass context =============================================== */

typedef struct _n_CsNNReducer *CsNNReducer;

/* What a forward/backward pass needs to know about the minibatch it runs on. */
typedef struct {
  MPI_Comm       comm;    /* ranks sharing the global minibatch (synchronised BatchNorm) */
  PetscBool      train;   /* train: batch statistics, dropout, noise; eval: running statistics, no dropout, mean */
  PetscInt       nglobal; /* rows of the global minibatch = sum of the local rows over comm */
  uint64_t       seed;    /* keys of dropout masks and noise */
  uint64_t       step;    /* training step: a fresh mask and noise every step */
  const int64_t *cell;    /* [B] global index of each local row (dropout/noise keys); NULL: rstart + i */
  int64_t        rstart;
  CsNNReducer    reducer; /* optional: backward reports gradients as they become final (bucketed reduction) */
} CsNNPass;

static inline int64_t CsNNPassCell(const CsNNPass *pass, PetscInt i) { return pass->cell ? pass->cell[i] : pass->rstart + i; }

/* ================================================== layers ================================================= */

/* Linear: out[B,O] = inp[B,I] W[I,O] + b[O] (b may be NULL). */
PETSC_EXTERN void cs_linear_forward(float *out, const float *inp, const float *w, const float *b, PetscInt B, PetscInt In,
                                    PetscInt O);
/* dinp[B,I] += dout W^T (NULL: skipped), dw[I,O] += inp^T dout, db[O] += column sums of dout (NULL: skipped). */
PETSC_EXTERN void cs_linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                                     PetscInt B, PetscInt In, PetscInt O);
/* Sparse-input linear (first layer on a CSR minibatch X of B rows and I = X->ncols columns), never densified:
   out[B,O] = X W + b; backward dw[I,O] += X^T dout, db += column sums of dout. No dinp (X is data). */
PETSC_EXTERN void cs_linear_sparse_forward(float *out, const CsCSR *X, const float *w, const float *b, PetscInt O);
PETSC_EXTERN void cs_linear_sparse_backward(float *dw, float *db, const float *dout, const CsCSR *X, PetscInt O);

/* Bias: out[B,C] = inp + b[C] (in place allowed). Backward: db += column sums, dinp += dout (NULL: skipped). */
PETSC_EXTERN void cs_bias_forward(float *out, const float *inp, const float *b, PetscInt B, PetscInt C);
PETSC_EXTERN void cs_bias_backward(float *dinp, float *db, const float *dout, PetscInt B, PetscInt C);

/* Elementwise activations (n elements). GELU is the exact erf form (torch.nn.GELU() default); softplus is torch's
   (beta 1, linear above 20); LeakyReLU's slope is 0.01 (torch default). */
typedef enum {
  CS_NN_ACT_NONE      = 0,
  CS_NN_ACT_RELU      = 1,
  CS_NN_ACT_LEAKYRELU = 2,
  CS_NN_ACT_GELU      = 3,
  CS_NN_ACT_SIGMOID   = 4,
  CS_NN_ACT_SOFTPLUS  = 5
} CsNNAct;
PETSC_EXTERN const char *const CsNNActs[];  /* names for PetscOptionsEnum: none, relu, leakyrelu, ... */
#define CS_NN_LEAKY_SLOPE 0.01f
PETSC_EXTERN void cs_activation_forward(CsNNAct act, float *out, const float *inp, size_t n);
/* dinp += dout * act'(inp) */
PETSC_EXTERN void cs_activation_backward(CsNNAct act, float *dinp, const float *dout, const float *inp, size_t n);

/* Inverted dropout with rate p in [0, 1): out = inp * mask, mask = keep / (1 - p) cached for backward. Unit u of
   the row of global cell c keeps iff its 32-bit word r >= p * 2^32, where r is word (u/16) % 4 of
   CsRng4(seed, CS_STREAM_DROPOUT, step, (c << 24) | (layer << 16) | q) with q = (u/64)*16 + u%16 (the 64 units of
   a chunk come from 16 Philox blocks, which the AVX-512 path draws at once). Limits: c < 2^40, layer < 256,
   C <= 2^18. Train mode only (the caller skips dropout in eval). */
PETSC_EXTERN void cs_dropout_forward(float *out, float *mask, const float *inp, PetscInt B, PetscInt C, double p,
                                     const CsNNPass *pass, PetscInt layer);
/* dinp += dout * mask */
PETSC_EXTERN void cs_dropout_backward(float *dinp, const float *dout, const float *mask, size_t n);
/* The 32-bit words of one row (r[u] for u < C; r must hold C rounded up to 64), as defined above. */
PETSC_EXTERN void cs_dropout_words(uint32_t *r, uint64_t seed, uint64_t step, PetscInt layer, int64_t cell, PetscInt C);

/* BatchNorm1d. Train: per-feature mean and biased variance of the GLOBAL minibatch (double sums of x and x^2
   reduced over pass->comm), running_mean/running_var <- (1 - momentum) * running + momentum * batch (unbiased
   variance, as torch), xhat and rstd cached. Eval: the running statistics. work: [4C] doubles. */
PETSC_EXTERN PetscErrorCode cs_batchnorm_forward(float *out, float *xhat, float *rstd, const float *inp, const float *gamma,
                                                 const float *beta, float *running_mean, float *running_var, PetscInt B,
                                                 PetscInt C, double momentum, double eps, const CsNNPass *pass, double *work);
/* Train: the sums of dout and dout*xhat are reduced over pass->comm (global batch); dgamma/dbeta get the local
   sums (the gradient reduction adds the ranks). Eval: dinp += dout * gamma * rstd. */
PETSC_EXTERN PetscErrorCode cs_batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                                                  const float *xhat, const float *rstd, const float *gamma, PetscInt B,
                                                  PetscInt C, const CsNNPass *pass, double *work);

/* LayerNorm over the C features of each row (biased variance, eps inside the square root, as torch). */
PETSC_EXTERN void cs_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *gamma,
                                       const float *beta, PetscInt B, PetscInt C, double eps);
PETSC_EXTERN void cs_layernorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                                        const float *mean, const float *rstd, const float *gamma, PetscInt B, PetscInt C);

/* Embedding lookup: out[B,D] = table[idx[b], :]; backward scatter-adds dout rows into dtable. */
PETSC_EXTERN void cs_embedding_forward(float *out, const PetscInt *idx, const float *table, PetscInt B, PetscInt D);
PETSC_EXTERN void cs_embedding_backward(float *dtable, const float *dout, const PetscInt *idx, PetscInt B, PetscInt D);

/* Dose-scaled embedding sum (CPA's perturbation embedding): out[r] += sum over k in [rowptr[r], rowptr[r+1]) of
   f_a(dose[k]) E[a], a = atom[k], with a per-atom dose response f_a: logsigm f(d) = s(log1p(d) beta_a + bias_a) -
   s(bias_a), sigm f(d) = s(d beta_a + bias_a) - s(bias_a) (s the logistic function), linear f(d) = d (beta, bias
   unused). Backward: dE, dbeta, dbias += (NULL skips). */
typedef enum { CS_NN_DOSER_LOGSIGM = 0, CS_NN_DOSER_SIGM = 1, CS_NN_DOSER_LINEAR = 2 } CsNNDoser;
PETSC_EXTERN const char *const CsNNDosers[]; /* "logsigm", "sigm", "linear" */
PETSC_EXTERN void cs_dose_embedding_forward(float *out, const PetscInt *rowptr, const PetscInt *atom, const double *dose, const float *E,
                                            const float *beta, const float *bias, CsNNDoser doser, PetscInt B, PetscInt D);
PETSC_EXTERN void cs_dose_embedding_backward(float *dE, float *dbeta, float *dbias, const float *dout, const PetscInt *rowptr,
                                             const PetscInt *atom, const double *dose, const float *E, const float *beta,
                                             const float *bias, CsNNDoser doser, PetscInt B, PetscInt D);

/* Concatenation of k feature blocks: out[B, sum C] = [in_0 | in_1 | ...]; backward din_i += its slice (NULL skips). */
PETSC_EXTERN void cs_concat_forward(float *out, PetscInt k, const float *const in[], const PetscInt C[], PetscInt B);
PETSC_EXTERN void cs_concat_backward(float *const din[], PetscInt k, const float *dout, const PetscInt C[], PetscInt B);

/* ================================================== losses ================================================= */
/* Each returns this rank's part of the loss, (weight / nglobal) * sum over its rows and features of the
   per-element loss, and accumulates the gradient (+=) into the d* arrays that are not NULL. Summed over ranks:
   the global loss and its gradient. */

/* Squared error (pred - target)^2: summed over features, averaged over cells. */
PETSC_EXTERN double cs_mse_loss(float *dpred, const float *pred, const float *target, PetscInt B, PetscInt C,
                                PetscInt nglobal, double weight);
/* The same against a CSR target (B = T->nrows, C = T->ncols), never densified. */
PETSC_EXTERN double cs_mse_loss_csr(float *dpred, const float *pred, const CsCSR *T, PetscInt nglobal, double weight);
/* Gaussian NLL with mean and variance heads, var = softplus(vraw) + var_floor (CPA's choice):
   0.5 * (log var + (target - mean)^2 / var) (no log 2pi constant, as torch.nn.GaussianNLLLoss). */
PETSC_EXTERN double cs_gaussian_nll_loss(float *dmean, float *dvraw, const float *mean, const float *vraw,
                                         const float *target, PetscInt B, PetscInt C, double var_floor,
                                         PetscInt nglobal, double weight);
/* Negative binomial NLL of counts x with mean mu > 0 and inverse dispersion theta > 0 (scvi's parameterisation,
   eps 1e-8 inside the logarithms): -[lgamma(x+theta) - lgamma(theta) - lgamma(x+1)
   + theta log(theta/(theta+mu)) + x log(mu/(theta+mu))]. Gradients are with respect to mu and theta. */
PETSC_EXTERN double cs_nb_nll_loss(float *dmu, float *dtheta, const float *mu, const float *theta, const float *x,
                                   PetscInt B, PetscInt C, PetscInt nglobal, double weight);
/* E[log1p(s X)] for X ~ NB(mu, theta) (the expected log-normalised value of a count model's gene, s = 1e4 / total):
   summed over the probability mass function (recursion from P(X = 0)) to 1 - 1e-12, second-order expansion above
   mu = 500. log1p(s mu) would overestimate it for sparse genes. */
PETSC_EXTERN double cs_nb_expected_log1p(double mu, double theta, double s);
/* Softmax cross-entropy of logits[B,K] against labels[B] in [0, K) (-1 = row ignored). */
PETSC_EXTERN double cs_softmax_xent_loss(float *dlogits, const float *logits, const PetscInt *labels, PetscInt B,
                                         PetscInt K, PetscInt nglobal, double weight);
/* Binary cross-entropy of logits[B,K] against targets[B,K] in [0, 1] (multi-label classifiers, e.g. which atoms
   a cell received): softplus form, as torch.nn.BCEWithLogitsLoss. Use weight 1/K for its mean over labels. */
PETSC_EXTERN double cs_bce_logits_loss(float *dlogits, const float *logits, const float *targets, PetscInt B, PetscInt K,
                                       PetscInt nglobal, double weight);
/* KL(N(mu, exp(logvar)) || N(0, I)) = -0.5 * sum(1 + logvar - mu^2 - exp(logvar)), with ml[B, 2Z] = [mu | logvar]
   (the layout of the fused encoder heads) and dml its gradient. */
PETSC_EXTERN double cs_kl_normal_loss(float *dml, const float *ml, PetscInt B, PetscInt Z, PetscInt nglobal, double weight);

/* ================================================ optimiser ================================================ */

typedef enum { CS_NN_OPTIM_ADAM = 0, CS_NN_OPTIM_ADAMW = 1 } CsNNOptimType;
typedef enum { CS_NN_DECAY_NONE = 0, CS_NN_DECAY_COSINE = 1, CS_NN_DECAY_STEP = 2 } CsNNDecay;
PETSC_EXTERN const char *const CsNNOptimTypes[];
PETSC_EXTERN const char *const CsNNDecays[];

/* Adam (L2 weight decay added to the gradient, torch.optim.Adam) or AdamW (decoupled: p *= 1 - lr wd), with
   clipping by global gradient norm and a learning-rate schedule, on the whole parameter buffer. Step t = 1, 2, ...:
   lr_t = lr * t / warmup for t <= warmup; after that, with s = t - warmup:
     cosine: lr_min + (lr - lr_min) (1 + cos(pi min(s, S) / S)) / 2,  S = decay_steps - warmup
     step:   lr * gamma^floor(s / step_size)
   The state (m, v, t) is public so that a checkpoint can save it and a resumed run continue bit-identically.
   The gradient must already be reduced (identical on every rank); every rank then applies the same update. */
typedef struct _n_CsNNOptim *CsNNOptim;
struct _n_CsNNOptim {
  MPI_Comm      comm;
  char          prefix[64];
  CsNNOptimType type;
  double        lr, beta1, beta2, eps, weight_decay;
  double        clip;       /* max global 2-norm of the gradient (0 = no clipping) */
  PetscInt      warmup;     /* linear warm-up steps (0 = none) */
  CsNNDecay     decay;
  PetscInt      decay_steps, step_size;
  double        lr_min, gamma;
  size_t        n;
  float        *m, *v;      /* [n] first and second moments, laid out like the parameters */
  int64_t       t;          /* steps taken */
  double        last_norm;  /* gradient norm before clipping, at the last step (when clipping is on) */
  double        last_lr;
  CsNNReducer   reducer;    /* sharded reduction: update only this rank's slice (CsNNOptimSetReducer) */
  PetscBool     partial;    /* m and v are current only on this rank's slice (CsNNOptimGather completes them) */
  PetscBool     setup;
};

PETSC_EXTERN PetscErrorCode CsNNOptimCreate(MPI_Comm comm, CsNNOptim *opt);
PETSC_EXTERN PetscErrorCode CsNNOptimSetOptionsPrefix(CsNNOptim opt, const char prefix[]);
/* -<prefix>optim adam|adamw, -<prefix>lr, -<prefix>beta1, -<prefix>beta2, -<prefix>adam_eps,
   -<prefix>weight_decay, -<prefix>clip_norm, -<prefix>lr_warmup, -<prefix>lr_decay none|cosine|step,
   -<prefix>lr_decay_steps, -<prefix>lr_min, -<prefix>lr_step_size, -<prefix>lr_gamma */
PETSC_EXTERN PetscErrorCode CsNNOptimSetFromOptions(CsNNOptim opt);
/* Allocate the moments for a parameter buffer of n floats (zeroed, t = 0). */
PETSC_EXTERN PetscErrorCode CsNNOptimSetUp(CsNNOptim opt, size_t n);
/* Learning rate at step t (>= 1). */
PETSC_EXTERN double         CsNNOptimLR(CsNNOptim opt, int64_t t);
/* One step on P->p from P->g. The gradient is consumed: P->g is zero on return (zeroed in the update pass, which
   saves the separate memset before the next accumulation). */
PETSC_EXTERN PetscErrorCode CsNNOptimStep(CsNNOptim opt, CsNNParams P);
/* With a sharded reduction (CS_NN_REDUCE_SHARDED) the step updates only this rank's slice, from the reduced slice
   gradient, and then gathers the parameters (collective); tell the optimiser which reducer it works with. */
PETSC_EXTERN PetscErrorCode CsNNOptimSetReducer(CsNNOptim opt, CsNNReducer r);
/* Collective after sharded steps: completes m and v on every rank (before CsNNOptimSave or reading them). */
PETSC_EXTERN PetscErrorCode CsNNOptimGather(CsNNOptim opt);
/* Moments into groups "m" and "v" of `group` (one dataset per trained tensor) and t as attribute "step". */
PETSC_EXTERN PetscErrorCode CsNNOptimSave(CsNNOptim opt, CsNNParams P, hid_t group);
PETSC_EXTERN PetscErrorCode CsNNOptimLoad(CsNNOptim opt, CsNNParams P, hid_t group, const char what[]);
PETSC_EXTERN PetscErrorCode CsNNOptimView(CsNNOptim opt, PetscViewer v);
PETSC_EXTERN PetscErrorCode CsNNOptimDestroy(CsNNOptim *opt);

/* ============================================ gradient reduction ============================================ */

/* Sums the gradient buffer over the ranks of comm (the losses are normalised by the global batch, so the sum is
   the global mean gradient). blocking: one MPI_Allreduce in CsNNReducerEnd. bucketed: an MPI_Iallreduce per
   bucket of at least bucket_size floats, started from CsNNReducerReady as soon as backward has finished it (the
   pending ones are progressed with MPI_Testall at every Ready), waited in CsNNReducerEnd. sharded: a
   reduce-scatter (pairwise exchange of slices) gives each rank the sum over its slice of the buffer; the
   optimiser, which must be attached with CsNNOptimSetReducer, updates that slice only and gathers the parameters,
   so Adam's work and memory traffic are split over the ranks. Blocking is the default: bucketed measured slower
   on shared-memory ranks; sharded measured faster at 2 ranks but changes the optimiser's contract, so it is
   chosen explicitly (bench/train_step.sh). One rank: nothing to do. */
typedef enum { CS_NN_REDUCE_BLOCKING = 0, CS_NN_REDUCE_BUCKETED = 1, CS_NN_REDUCE_SHARDED = 2 } CsNNReduceType;
PETSC_EXTERN const char *const CsNNReduceTypes[];

PETSC_EXTERN PetscErrorCode CsNNReducerCreate(MPI_Comm comm, CsNNParams P, CsNNReducer *r);
/* -nn_grad_reduce blocking|bucketed|sharded, -nn_grad_bucket_mb (bucket size in MiB, default 4) */
PETSC_EXTERN PetscErrorCode CsNNReducerSetFromOptions(CsNNReducer r);
PETSC_EXTERN PetscErrorCode CsNNReducerSetType(CsNNReducer r, CsNNReduceType type, size_t bucket_floats);
/* Before backward. */
PETSC_EXTERN PetscErrorCode CsNNReducerBegin(CsNNReducer r);
/* Gradients at offsets >= lo are final (backward calls this with decreasing lo). */
PETSC_EXTERN PetscErrorCode CsNNReducerReady(CsNNReducer r, size_t lo);
/* Reduce whatever is left and wait: P->g then holds the global gradient on every rank (sharded: the slice sum is
   held for the optimiser and P->g is zeroed). */
PETSC_EXTERN PetscErrorCode CsNNReducerEnd(CsNNReducer r);
PETSC_EXTERN PetscErrorCode CsNNReducerDestroy(CsNNReducer *r);

/* =================================================== MLP =================================================== */

typedef enum { CS_NN_NORM_NONE = 0, CS_NN_NORM_BATCH = 1, CS_NN_NORM_LAYER = 2 } CsNNNorm;
PETSC_EXTERN const char *const CsNNNorms[];

/* A stack of blocks linear -> [BatchNorm | LayerNorm | none] -> activation -> dropout on sizes[0] -> ... ->
   sizes[nlayers]; with linear_last the last layer is a plain linear layer (an output head). The first layer can
   take a CSR minibatch directly (sparse_input). Tensors "<name>.<l>.weight" [in, out], "<name>.<l>.bias",
   "<name>.<l>.norm.weight", "<name>.<l>.norm.bias", buffers "<name>.<l>.norm.running_mean"/"running_var" are
   registered in P at creation; caches for up to maxbatch rows are allocated by CsMLPSetUp (after
   CsNNParamsSetUp). Elementwise work is fused: forward, a statistics pass (BatchNorm) and one pass for
   normalisation + activation + dropout; backward, two passes, which recompute the activation derivative from xhat
   and read the dropout decisions kept as bytes. Before a BatchNorm the linear bias is left out of the product (it
   cancels; it still enters the running mean and gets its gradient). Dropout layer ids are layer_id0 + l. */
typedef struct _n_CsMLP *CsMLP;
typedef struct {
  PetscInt        nlayers;
  const PetscInt *sizes;       /* [nlayers + 1] */
  CsNNNorm        norm;
  CsNNAct         act;
  double          dropout;     /* rate, 0 = none */
  PetscBool       sparse_input;
  PetscBool       linear_last;
  double          bn_momentum; /* 0.1 as torch */
  double          norm_eps;    /* 1e-5 as torch */
  PetscInt        layer_id0;   /* dropout keys */
} CsMLPConfig;
PETSC_EXTERN void           CsMLPConfigDefault(CsMLPConfig *cfg);
PETSC_EXTERN PetscErrorCode CsMLPCreate(CsNNParams P, const char name[], const CsMLPConfig *cfg, CsMLP *mlp);
PETSC_EXTERN PetscErrorCode CsMLPSetUp(CsMLP mlp, PetscInt maxbatch);
/* Forward B rows of x (dense [B, sizes[0]]) or X (CSR, sparse_input); x or X must stay valid until the backward.
   *out [B, sizes[nlayers]] stays valid until the next forward. */
PETSC_EXTERN PetscErrorCode CsMLPForward(CsMLP mlp, const CsNNPass *pass, PetscInt B, const float *x, const CsCSR *X,
                                         const float **out);
/* The buffer [B, sizes[nlayers]] for the gradient of the loss w.r.t. the output, filled by the caller before
   CsMLPBackward. It is not zeroed (that would cost a pass): write every entry, or zero it and accumulate. */
PETSC_EXTERN float         *CsMLPGetOutputGrad(CsMLP mlp);
/* Backward of the last forward: parameter gradients += into P->g, dinp[B, sizes[0]] += (NULL: not needed). */
PETSC_EXTERN PetscErrorCode CsMLPBackward(CsMLP mlp, const CsNNPass *pass, PetscInt B, float *dinp);
PETSC_EXTERN PetscErrorCode CsMLPView(CsMLP mlp, PetscViewer v);
PETSC_EXTERN PetscErrorCode CsMLPDestroy(CsMLP *mlp);

/* =================================================== VAE =================================================== */

/* scGen's VAE: encoder MLP ngenes -> hidden x nhidden (BatchNorm, LeakyReLU, dropout), fused mean and
   log-variance heads hidden -> 2 latent ("enc.heads": columns [0, latent) mean, [latent, 2 latent) log-variance),
   z = mu + eps exp(logvar / 2) with eps ~ N(0, 1) from CsRngNormal2(seed, CS_STREAM_NOISE, step,
   (cell << 24) | k/2) (component k % 2), decoder MLP latent -> hidden x nhidden (same blocks) -> ngenes (linear).
   Loss = mean over cells of sum over genes of (rec - x)^2 + kl_weight * mean over cells of KL(q(z|x) || N(0, I)),
   exactly the loss of the PyTorch scGen reference that bench/train_step.sh runs (torch_scgen_ref.py). */
typedef struct {
  PetscInt  ngenes, hidden, nhidden, latent;
  double    dropout, kl_weight;
  PetscBool sparse_input; /* the encoder's first layer reads CSR minibatches */
  double    bn_momentum, bn_eps;
} CsVAEConfig;
PETSC_EXTERN void CsVAEConfigDefault(CsVAEConfig *cfg); /* hidden 800 x 2, latent 100, dropout 0.2, kl 0.005 */

typedef struct _n_CsVAE *CsVAE;
struct _n_CsVAE {
  CsVAEConfig cfg;
  CsNNParams  P;
  CsMLP       enc, dec; /* enc ends with the heads */
  PetscInt    maxbatch;
  float      *z, *eps, *dz; /* [maxbatch, latent] */
  uint32_t   *words;        /* noise generator work */
};
typedef struct {
  double rec, kl, total; /* global (summed over pass->comm) */
} CsVAELoss;

/* Collective on comm: registers, allocates and initialises (seed) the parameters. */
PETSC_EXTERN PetscErrorCode CsVAECreate(MPI_Comm comm, const CsVAEConfig *cfg, PetscInt maxbatch, uint64_t seed, CsVAE *vae);
/* Forward, loss and backward of B <= maxbatch local rows (x dense [B, ngenes] or X CSR): parameter gradients +=
   into vae->P->g. Collective on pass->comm (BatchNorm, loss). With pass->reducer set, call CsNNReducerBegin before
   and CsNNReducerEnd after. Logged as CS_EVENT_FORWARD and CS_EVENT_BACKWARD. */
PETSC_EXTERN PetscErrorCode CsVAETrainStep(CsVAE vae, const CsNNPass *pass, PetscInt B, const float *x, const CsCSR *X,
                                           CsVAELoss *loss);
/* Eval mode (running statistics, no dropout): mu[B, latent] = the mean of q(z|x), any B (chunks of maxbatch).
   Not collective. */
PETSC_EXTERN PetscErrorCode CsVAEEncode(CsVAE vae, PetscInt B, const float *x, const CsCSR *X, float *mu);
/* Eval mode: out[B, ngenes] = decoder(z[B, latent]). Not collective. */
PETSC_EXTERN PetscErrorCode CsVAEDecode(CsVAE vae, PetscInt B, const float *z, float *out);
PETSC_EXTERN PetscErrorCode CsVAEView(CsVAE vae, PetscViewer v);
PETSC_EXTERN PetscErrorCode CsVAEDestroy(CsVAE *vae);

#endif
