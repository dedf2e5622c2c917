/* cellshift neural engine: one parameter buffer, layers with explicit forward/backward, losses, Adam, gradient
   reduction, and the blocks the learned models are built from (CsMLP, CsVAE).

   Conventions
   - Float32 everywhere; dense products go through OpenBLAS cblas_sgemm (row-major). Activations are row-major
     [B, C]: one row per cell of this rank's part of the minibatch (B rows), C features.
   - Sequences and sets: [B, T, C] row-major (B sets or sequences of T tokens, e.g. cells of a set or genes of a
     cell, C features) is the same memory as B*T rows of C, and every row-wise or elementwise [B, C] kernel
     applies to it with B*T rows: linear, bias, activations, softmax, LayerNorm (over the C features of each
     token). Kernels that mix tokens (attention, set pooling, graph propagation) take B and T (or n) apart. For
     dropout on B*T rows pass->cell (or rstart) keys the B*T rows, one key per token.
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
/* The number of trained scalars: rows x cols of every tensor that is not a buffer (no padding). */
PETSC_EXTERN PetscInt64 CsNNParamsCount(CsNNParams P);
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

/* Elementwise activations (n elements: [B,C] or [B,T,C] alike). GELU is the exact erf form (torch.nn.GELU()
   default); softplus is torch's (beta 1, linear above 20); LeakyReLU's slope is 0.01 (torch default); SiLU is
   x sigmoid(x) (torch.nn.SiLU, the activation of flow-matching velocity fields). New values are appended at
   the end, so option values and checkpoints keep their meaning. */
typedef enum {
  CS_NN_ACT_NONE      = 0,
  CS_NN_ACT_RELU      = 1,
  CS_NN_ACT_LEAKYRELU = 2,
  CS_NN_ACT_GELU      = 3,
  CS_NN_ACT_SIGMOID   = 4,
  CS_NN_ACT_SOFTPLUS  = 5,
  CS_NN_ACT_SILU      = 6  /* x sigmoid(x) (torch.nn.SiLU) */
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

/* LayerNorm over the C features of each row (biased variance, eps inside the square root, as torch). On
   [B,T,C] activations pass B*T rows: torch.nn.LayerNorm(C) on the last dimension; mean/rstd are then [B*T]. */
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
  double        clip_value; /* clamp of every gradient entry after the norm clipping (0 = none) */
  PetscInt      warmup;     /* linear warm-up steps (0 = none) */
  CsNNDecay     decay;
  PetscInt      decay_steps, step_size;
  PetscInt      step_epochs; /* step decay every this many epochs: the trainer sets step_size to it times the steps per epoch (0: step_size) */
  double        lr_min, gamma;
  size_t        n;
  float        *m, *v;      /* [n] first and second moments, laid out like the parameters */
  int64_t       t;          /* steps taken */
  double        last_norm;  /* gradient norm before clipping, at the last step (when clipping is on) */
  double        last_lr;
  double        last_sumsq; /* sum of squares of the gradient (before clipping) of this rank's part at the last step, the
                               threads' CsNNSqDiff over their chunks of it summed in thread order */
  CsNNReducer   reducer;    /* sharded reduction: update only this rank's slice (CsNNOptimSetReducer) */
  PetscBool     partial;    /* m and v are current only on this rank's slice (CsNNOptimGather completes them) */
  PetscBool     setup;
};

PETSC_EXTERN PetscErrorCode CsNNOptimCreate(MPI_Comm comm, CsNNOptim *opt);
PETSC_EXTERN PetscErrorCode CsNNOptimSetOptionsPrefix(CsNNOptim opt, const char prefix[]);
/* -<prefix>optim adam|adamw, -<prefix>lr, -<prefix>beta1, -<prefix>beta2, -<prefix>adam_eps,
   -<prefix>weight_decay, -<prefix>clip_norm, -<prefix>lr_warmup, -<prefix>lr_decay none|cosine|step,
   -<prefix>lr_decay_steps, -<prefix>lr_min, -<prefix>lr_step_size, -<prefix>lr_step_epochs, -<prefix>lr_gamma */
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
  PetscBool       last_no_act; /* the last block keeps its norm (and dropout) but has no activation (GEARS's MLP) */
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

/* ============================================ sequences and sets =========================================== */
/* Kernels on [B, T, C] activations (src/nn/seq.c): B sets or sequences of T tokens of C features, row-major.
   A set of fewer than T elements is padded: len[b] (NULL: all T) is the number of valid tokens of set b, the
   first len[b] rows; lengths are clamped to [0, T]. All run on the calling thread, products on the BLAS threads. */

/* Softmax over the last dimension of N rows of K (N = B*T for [B,T,K]): out = exp(x - max) / sum, the sum in
   double, the exponential the vectorised polynomial of the log-sum-exp below; in place allowed. -inf entries
   (masks) get 0, and a row of -inf only is 0. Backward: dinp += out (dout - sum_k out_k dout_k), from the
   forward's output. */
PETSC_EXTERN void cs_softmax_forward(float *out, const float *inp, PetscInt N, PetscInt K);
PETSC_EXTERN void cs_softmax_backward(float *dinp, const float *dout, const float *out, PetscInt N, PetscInt K);

/* Residual: out[n] = inp1 + inp2 (out may alias either). Backward: dinp1 += dout, dinp2 += dout (NULL skips). */
PETSC_EXTERN void cs_residual_forward(float *out, const float *inp1, const float *inp2, size_t n);
PETSC_EXTERN void cs_residual_backward(float *dinp1, float *dinp2, const float *dout, size_t n);

/* Multi-head self-attention on inp[B,T,C] with H heads of size hs = C / H (C divisible by H), no causal mask:
     qkv[B,T,3C] = inp wqkv[C,3C] + bqkv[3C]        (columns [0,C) queries, [C,2C) keys, [2C,3C) values;
                                                      head h owns columns [h hs, (h+1) hs) of each)
     att[b,h,t,:] = softmax_j<len[b] (q_t . k_j / sqrt(hs))   (att[B,H,T,T], 0 for the masked keys j >= len[b])
     y[b,t,h hs:(h+1) hs] = sum_j att[b,h,t,j] v_j             (y[B,T,C])
     out[B,T,C] = y wo[C,C] + bo[C]
   Weights are [in, out] like every linear layer here: torch's in_proj_weight is wqkv^T, out_proj.weight is wo^T.
   The key padding mask is torch's key_padding_mask (True for j >= len[b]): padded QUERY rows t >= len[b] are
   computed like the others (they attend to the valid keys), never influence the rows t < len[b], and should get
   zero dout from the caller. A set with len[b] = 0 gets y = 0 (out = bo). bqkv and bo may be NULL (no bias).
   Cache for backward: qkv, att, y. The per-(b, h) products QK^T and AV are sgemm calls on strided views of qkv. */
PETSC_EXTERN void cs_attention_forward(float *out, float *qkv, float *att, float *y, const float *inp, const float *wqkv,
                                       const float *bqkv, const float *wo, const float *bo, const PetscInt *len, PetscInt B,
                                       PetscInt T, PetscInt C, PetscInt H);
/* Floats of work cs_attention_backward needs: dy [B,T,C], dqkv [B,T,3C], one T x T block. */
static inline size_t cs_attention_work_size(PetscInt B, PetscInt T, PetscInt C) { return (size_t)B * T * 4 * C + (size_t)T * T; }
/* dinp[B,T,C], dwqkv[C,3C], dbqkv[3C], dwo[C,C], dbo[C] += (each may be NULL). work: cs_attention_work_size floats. */
PETSC_EXTERN void cs_attention_backward(float *dinp, float *dwqkv, float *dbqkv, float *dwo, float *dbo, const float *dout,
                                        const float *inp, const float *qkv, const float *att, const float *y, const float *wqkv,
                                        const float *wo, const PetscInt *len, PetscInt B, PetscInt T, PetscInt C, PetscInt H,
                                        float *work);

/* Mean over the valid tokens of each set: out[b,:] = mean_{t < len[b]} inp[b,t,:] (0 for an empty set), the sum
   in double. Backward: dinp[b,t,:] += dout[b,:] / len[b] for t < len[b]. */
PETSC_EXTERN void cs_set_mean_forward(float *out, const float *inp, const PetscInt *len, PetscInt B, PetscInt T, PetscInt C);
PETSC_EXTERN void cs_set_mean_backward(float *dinp, const float *dout, const PetscInt *len, PetscInt B, PetscInt T, PetscInt C);

/* Sinusoidal time embedding (the time input of diffusion and flow-matching fields): with half = D / 2 and
   frequencies f_k = exp(-log(max_period) k / half), k < half (max_period 10000 as usual):
     out[b, k] = sin(t[b] f_k),  out[b, half + k] = cos(t[b] f_k);  for odd D the last column is 0
   (diffusers' get_timestep_embedding with downscale_freq_shift 0; guided-diffusion puts the cosines first).
   Evaluated in double, stored in float. Backward: dt[b] += sum_k f_k (dout[b,k] cos(t f_k) - dout[b,half+k]
   sin(t f_k)). The time gradient is only needed when t is itself an input that something is differentiated
   with respect to: the time derivative of a learned velocity field (e.g. for an ODE solver's Jacobian), or a
   learned time schedule; flow-matching training with sampled t passes dt = NULL (not computed). */
PETSC_EXTERN void cs_time_embedding_forward(float *out, const float *t, PetscInt B, PetscInt D, double max_period);
PETSC_EXTERN void cs_time_embedding_backward(float *dt, const float *dout, const float *t, PetscInt B, PetscInt D,
                                             double max_period);

/* ============================================= graph propagation =========================================== */
/* Sparse propagation for GCN / SGConv layers over a gene graph (src/nn/graph.c). A is a CsCSR of nr x nc (square
   n x n for a graph: row i lists the neighbours j with their weights A_ij). Features are [B, nc, d] (B cells,
   the same A for every cell; B = 1 for one feature matrix [nc, d]). Work is split over the internal thread pool
   by output rows: every output row and every entry of dA is summed by one thread in a fixed order (neighbours in
   CSR order, cells in order), so results are bit-identical for any number of threads. The cost is the gather of
   neighbour rows (memory bound): keep the features cell-major [B, n, d], so that one cell's n d floats stay in
   cache during the pass (a gene-major [n, B d] layout measured 2-3x slower). Measured at n = 2e4, 20 neighbours
   + self-loop (4.2e5 non-zeros), d = 64, B = 8, one core of an AMD EPYC VM: forward 47 ms, dX 36 ms, dA 56 ms
   (2 threads: 27, 22, 26 ms); B = 32 takes 4 times as long. */

/* The transpose of A, for the backward (A^T dout) without atomics: row j lists the entries (i, k) of column j of
   A (i increasing) with src[k'] = k, the position of the entry in A->data. The backward kernels copy A's current
   values into data first (one gather per call), so learned edge weights may change between calls. Build it once
   per pattern (not collective; an error for a column index outside [0, A->ncols)); one per layer, since the
   backward writes data. */
typedef struct {
  PetscInt nrows, ncols; /* A->ncols, A->nrows */
  int64_t *indptr;       /* [nrows + 1] */
  int32_t *indices;      /* [nnz] row i of A */
  int64_t *src;          /* [nnz] position in A->data (absolute, as A->indptr) */
  float   *data;         /* [nnz] A->data[src[k']], refreshed by the backward kernels */
} CsNNTranspose;
PETSC_EXTERN PetscErrorCode CsNNTransposeCreate(const CsCSR *A, CsNNTranspose *AT);
PETSC_EXTERN PetscErrorCode CsNNTransposeDestroy(CsNNTranspose *AT);

/* out[b] = A inp[b]: out[B,nr,d], inp[B,nc,d]. */
PETSC_EXTERN void cs_graph_forward(float *out, const CsCSR *A, const float *inp, PetscInt B, PetscInt d);
/* dinp[B,nc,d] += A^T dout[b] (NULL skips); dA (laid out like A->data, NULL skips: fixed weights) += the edge
   weight gradient, dA[k] += sum_b dout[b,i,:] . inp[b,j,:] for the entry k = (i, j), i.e. dout inp^T restricted
   to A's pattern (one float dot product per cell added in cell order). AT from CsNNTransposeCreate(A) (needed
   for dinp only). */
PETSC_EXTERN void cs_graph_backward(float *dinp, float *dA, const float *dout, const float *inp, const CsCSR *A, CsNNTranspose *AT,
                                    PetscInt B, PetscInt d);
/* SGConv propagation with K >= 0 hops on a square A: out = A^K inp ([B,n,d]); hops[K-1, B, n, d] caches A^k inp
   for k = 1 .. K-1 (NULL allowed for K <= 1). */
PETSC_EXTERN void cs_sgconv_forward(float *out, float *hops, const CsCSR *A, const float *inp, PetscInt K, PetscInt B, PetscInt d);
/* dinp[B,n,d] += (A^T)^K dout, dA += the sum over the K hops of each hop's edge-weight gradient (either NULL skips).
   work: 2 B n d floats (K >= 2), else unused. */
PETSC_EXTERN void cs_sgconv_backward(float *dinp, float *dA, const float *dout, const float *inp, const float *hops, const CsCSR *A,
                                     CsNNTranspose *AT, PetscInt K, PetscInt B, PetscInt d, float *work);
/* GCN / SGConv normalisation of a graph given as an edge list: A_ij = sum of the weights w[e] (NULL: 1) of the
   edges e with (src[e], dst[e]) = (i, j) (and (j, i) too when symmetrize, for an undirected list given once; a
   self-loop counts once),
   then A + I, degrees d_i = sum_j (A + I)_ij, and *Ahat = D^-1/2 (A + I) D^-1/2 as a CsCSR n x n with sorted
   columns (free with CsCSRFree). It is symmetric when A is (then CsNNTransposeCreate(Ahat) mirrors it). Errors:
   a node index outside [0, n), a non-finite weight, a degree <= 0 (negative weights). Not collective. */
PETSC_EXTERN PetscErrorCode CsNNGraphNormalize(PetscInt n, PetscInt nedges, const PetscInt *src, const PetscInt *dst, const float *w,
                                               PetscBool symmetrize, CsCSR *Ahat);

/* ===================================== per-gene layers (GEARS-style) ====================================== */
/* Kernels on [B, G, d] activations: B cells, G genes, d features per gene (src/nn/genes.c). A network that gives
   every gene of every cell its own embedding (GEARS) computes the cell-independent part once per gene ([G, d]),
   adds each cell's perturbation embedding to every gene, runs row-wise layers (linear, BatchNorm, MLP) on the
   B G rows, and reads one value per gene out with that gene's own weights. Sums in double, in a fixed order. */

/* Broadcast: out[b,g,:] = base[g,:] + pe[b,:] (pe NULL: base only). Backward: dbase[g] += sum_b dout[b,g],
   dpe[b] += sum_g dout[b,g] (NULL skips). */
PETSC_EXTERN void cs_gene_broadcast_forward(float *out, const float *base, const float *pe, PetscInt B, PetscInt G, PetscInt d);
PETSC_EXTERN void cs_gene_broadcast_backward(float *dbase, float *dpe, const float *dout, PetscInt B, PetscInt G, PetscInt d);
/* Per-gene readout: out[b,g] = sum_k inp[b,g,k] w[g,k] + bias[g] (bias may be NULL): GEARS's indv_w1 / indv_b1
   (w [G, d]). Backward: dinp[b,g,:] += dout[b,g] w[g,:], dw[g,:] += sum_b dout[b,g] inp[b,g,:], dbias[g] +=
   sum_b dout[b,g] (NULL skips). */
PETSC_EXTERN void cs_gene_readout_forward(float *out, const float *inp, const float *w, const float *bias, PetscInt B, PetscInt G, PetscInt d);
PETSC_EXTERN void cs_gene_readout_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                                           PetscInt B, PetscInt G, PetscInt d);
/* torch.nn.Embedding(max_norm=...): every row of table[n, d] whose 2-norm exceeds max_norm is scaled by
   max_norm / (norm + 1e-7), in place. torch does it to the rows it looks up, before the lookup, without a
   gradient through the scaling; a model that looks up every row calls this before each forward. */
PETSC_EXTERN void cs_renorm_rows(float *table, PetscInt n, PetscInt d, double max_norm);
/* GEARS's loss (gears/utils.py loss_fct), for the rows of this rank: sum_b roww[b] sum_{j: mask[b,j]} [|pred -
   target|^(2 + gamma) + lambda (sign(target - ref_j) - sign(pred - ref_j))^2], where roww[b] carries GEARS's
   normalisation (1 / (cells of b's perturbation in the global batch x its genes x perturbations in the batch)),
   mask [B, C] the genes kept for b's perturbation (NULL: all) and ref [C] the mean control expression (NULL: no
   direction term). The direction term is piecewise constant: it enters the loss but, as in torch (sign has zero
   gradient), not the gradient. dpred[B, C] += roww[b] (2 + gamma) |e|^(1 + gamma) sign(e) (NULL skips). The loss
   of the global batch is the sum over ranks. */
PETSC_EXTERN double cs_autofocus_loss(float *dpred, const float *pred, const float *target, const float *ref, const uint8_t *mask,
                                      const double *roww, PetscInt B, PetscInt C, double gamma, double lambda);

/* ======================================= pairwise distances, log-sum-exp ==================================== */
/* The inner kernels of optimal transport (src/ot: cost matrices, log-domain Sinkhorn) and of the distribution
   distances of src/eval (energy distance, MMD, median heuristic), in src/nn/pairwise.c. Row loops are written
   for the vector units (AVX-512/AVX2 clones, multiply and add never fused, so every clone gives the same bits);
   the exponential of the log-sum-exp is a polynomial (relative error below 1e-7 on [-87.3, 0], 0 below) so that
   it vectorises. Rows (or column blocks) are split over the internal thread pool; each output is computed by one
   thread in a fixed order, so results do not depend on the number of threads. */

/* Float32 squared Euclidean distances D[n,m] between the rows of X[n,d] and Y[m,d] through the Gram identity
   |x|^2 + |y|^2 - 2 x.y (one sgemm; norms summed in double), clamped at 0. Fast, but the identity cancels for
   nearby points (absolute error ~ 1e-7 (|x|^2 + |y|^2)): use it for costs, not where coincident points must be
   at distance exactly 0. When X == Y (the same array, n == m) the diagonal is set to 0. work: [n + m]. */
PETSC_EXTERN void cs_pairwise_sqdist_forward(float *D, const float *X, const float *Y, PetscInt n, PetscInt m, PetscInt d,
                                             float *work);
/* Gradient of sum_ij dD_ij |x_i - y_j|^2 (the exact function; the clamp only removes rounding):
   dX[n,d] += 2 (rowsum(dD)_i x_i - (dD Y)_i), dY[m,d] += 2 (colsum(dD)_j y_j - (dD^T X)_j) (NULL skips). work: [n + m]. */
PETSC_EXTERN void cs_pairwise_sqdist_backward(float *dX, float *dY, const float *dD, const float *X, const float *Y, PetscInt n,
                                              PetscInt m, PetscInt d, float *work);
/* Exact double path: squared distances summed per pair, sum_c (x_c - y_c)^2 in c order, so coincident points are
   exactly 0 (the definition src/eval's energy distance, MMD and median heuristic rely on).
   cs_sqdist_row_f64: acc[j - j0] = |x - y_j|^2 for j in [j0, m), from YT = Y^T [d, m] (cs_transpose_f64), one row
   of m - j0 distances updated one dimension at a time (vectorised over j). cs_pairwise_sqdist_f64: D[n,m] for all
   pairs, work [m d] (the transpose). */
PETSC_EXTERN void cs_transpose_f64(double *YT, const double *Y, PetscInt m, PetscInt d);
PETSC_EXTERN void cs_sqdist_row_f64(double *acc, const double *x, const double *YT, PetscInt m, PetscInt j0, PetscInt d);
PETSC_EXTERN void cs_pairwise_sqdist_f64(double *D, const double *X, const double *Y, PetscInt n, PetscInt m, PetscInt d,
                                         double *work);
/* Stabilised log-sum-exp of z_ij = f_i + g_j + s M_ij over M[n,m] (f[n], g[m] may be NULL = 0; s = -1/eps with a
   cost M = C gives the inner operation of log-domain Sinkhorn, lse_j(f_i + g_j - C_ij / eps)):
     rows: out[i] = log sum_j exp(z_ij)  (out[n]);   cols: out[j] = log sum_i exp(z_ij)  (out[m]).
   The maximum is subtracted first (columns: the running maximum over blocks of 128 rows, the partial sums
   rescaled when it grows, so that M is read once) and the exponentials are summed in double; f_i (rows) or g_j
   (columns) is added after the sum, which is the same value without the rounding of a large potential. -inf
   entries (f or g = log 0) are allowed and give -inf for an all -inf row/column; NaN entries count as -inf.
   Measured (4096 x 4096, one core of an AMD EPYC VM, AVX2): rows 30 ms, columns 45 ms. */
PETSC_EXTERN void cs_logsumexp_rows(float *out, const float *M, const float *f, const float *g, float s, PetscInt n, PetscInt m);
PETSC_EXTERN void cs_logsumexp_cols(float *out, const float *M, const float *f, const float *g, float s, PetscInt n, PetscInt m);

/* One row of an entropic kernel: out[j] = exp(f + g_j + s D_j) (src/ot's stored Sinkhorn kernel and plan rows,
   f = f_i / eps, g = g / eps, s = -1 / (eps c)). The argument is formed in double (the terms are large, up to the
   cost over eps, and cancel) and rounded to float once; the exponential is the polynomial above (x > 0 as
   1 / exp(-x)), relative error about 2e-7; arguments below -87.3 give 0, above 87.3 +inf. */
PETSC_EXTERN void cs_exp_kernel_row(float *out, const float *D, const double *g, double f, double s, PetscInt m);

/* ========================================= input-convex network (ICNN) ====================================== */
/* CellOT's ICNN (Makkuva et al. 2020, bunnech/cellot networks/icnns.py) on x[B, d], with `depth` hidden layers of
   `width` units, LeakyReLU slope 0.2 (s below), and an optional per-row bias input c[B, U], U = depth width + 1
   (the concatenated per-layer biases: a conditioning that enters every layer additively keeps g convex in x):
     a_0 = x A_0 + b_0 + c_0,                      z_0 = s(a_0)^2
     a_l = z_{l-1} W_{l-1} + x A_l + b_l + c_l,    z_l = s(a_l)          (1 <= l < depth)
     g(x) = a_depth = z_{depth-1} W_{depth-1} + x A_depth + b_depth + c_depth   (one unit)
   g is convex in x while every W_l >= 0 (CsICNNClamp, after each optimiser step). Tensors "<name>.A.<l>.weight"
   [d, u_l], "<name>.A.<l>.bias" [u_l] (l = 0 .. depth), "<name>.W.<l>.weight" [u_l, u_{l+1}] (l < depth), u_l =
   width except u_depth = 1. CsICNNInitialize sets the weights U(0, 0.1) and the biases 0 (CellOT's
   kernel_init_fxn uniform b 0.1).

   Derivatives, all closed-form (no tape), each after CsICNNForward at the same x and c:
   - CsICNNBackward: reverse mode of g with per-row seeds dy[B]: dx += dy_i grad_x g(x_i) (the transport map
     T(x) = grad_x g(x) with dy = 1), dc +=, and the parameter gradients += into P->g (params true).
   - CsICNNTransportBackward: the gradient of Phi = sum_i <u_i, grad_x g(x_i)> (u[B, d] given, e.g. dLoss/dT)
     with respect to the parameters (+= into P->g) and to c (dc +=). Phi is the directional derivative of g along
     u, so it is computed forward-over-reverse: the tangent of the forward pass along u (adot_0 = u A_0, zdot_0 =
     2 s(a_0) s'(a_0) adot_0, adot_l = zdot_{l-1} W_{l-1} + u A_l, zdot_l = s'(a_l) adot_l, Phi_i = adot_depth)
     followed by reverse mode through the (primal, tangent) pair. s is piecewise linear (s'' = 0 away from 0), so
     the primal a_l of l >= 1 receive no gradient and only a_0 does, through z_0's square: d zdot_0 / d a_0 =
     2 s'(a_0)^2 adot_0. tests/unit/test_nn_grad.c checks both against finite differences of the forward and of
     Phi (which uses CsICNNBackward). */
typedef struct _n_CsICNN *CsICNN;
struct _n_CsICNN {
  CsNNParams P;
  PetscInt   d, width, depth, U;
  PetscInt  *tA, *tb, *tW; /* tensor indices [depth + 1], [depth + 1], [depth] */
  PetscInt   maxbatch, B;
  float     *a, *z, *ad, *zd; /* [depth + 1, maxbatch, width] pre-activations, activations, their tangents */
  float     *da, *dz, *one;   /* work [maxbatch, width] x 2, [maxbatch] ones */
};
#define CS_ICNN_SLOPE 0.2f
PETSC_EXTERN PetscErrorCode CsICNNCreate(CsNNParams P, const char name[], PetscInt d, PetscInt width, PetscInt depth, CsICNN *net);
PETSC_EXTERN PetscErrorCode CsICNNSetUp(CsICNN net, PetscInt maxbatch); /* after CsNNParamsSetUp */
PETSC_EXTERN void           CsICNNInitialize(CsICNN net, uint64_t seed);
PETSC_EXTERN void           CsICNNClamp(CsICNN net); /* W_l <- max(W_l, 0) */
/* y[B] = g(x[B, d] | c[B, U]) (c may be NULL), B <= maxbatch; caches for the backward kernels. */
PETSC_EXTERN PetscErrorCode CsICNNForward(CsICNN net, PetscInt B, const float *x, const float *c, float *y);
/* dy[B] (NULL: all ones); dx[B, d] +=, dc[B, U] += (NULL skip); params: parameter gradients += into P->g. */
PETSC_EXTERN PetscErrorCode CsICNNBackward(CsICNN net, const float *x, const float *dy, float *dx, float *dc, PetscBool params);
/* x as given to the forward, u[B, d]: parameter gradients of Phi += into P->g, dc[B, U] += (NULL skip). */
PETSC_EXTERN PetscErrorCode CsICNNTransportBackward(CsICNN net, const float *x, const float *u, float *dc);
PETSC_EXTERN PetscErrorCode CsICNNDestroy(CsICNN *net);

#endif
