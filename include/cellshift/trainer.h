/* CsTrainer: data-parallel minibatch training of a model built on the neural engine (nn.h).

   Minibatches come from a sampler (sampler.h; -<prefix>sampler_type, cells by default): the training cells (cells
   of the split's train groups, or any set the model chooses) in global batches of -<prefix>batch_size cells that
   are the same whatever the number of ranks, so the optimisation is the same (BatchNorm statistics and losses are
   over the global batch, see nn.h). The trainer gets rows only through the sampler.

   A step: the model's step callback runs forward and backward on the rank's part of the batch (gradients into its
   parameter set), the gradient is summed over ranks (CsNNReducer), the optimiser steps, the post-step callback
   runs. Models with several parameter sets (an autoencoder and its adversaries) say per step which set the
   gradient is for. With one set, pass->reducer is that set's reducer, begun before the step callback, so backward
   may hand it finished gradients (CsNNReducerReady); with several, the set is known only after the callback, so
   pass->reducer is NULL and the whole reduction follows the step.

   Gradient accumulation (-<prefix>accumulate K): each global batch is split into K micro-batches (CsSamplerGetBatch
   parts); the step callback runs on each with pass->nglobal = the micro-batch's global rows, and the gradients are
   combined with weights (micro-batch rows / batch rows) before one optimiser step, which is the large batch's
   gradient to rounding for losses that are means over rows. BatchNorm in train mode normalises each micro-batch
   with its own statistics and updates the running statistics once per micro-batch (as accumulation does in
   PyTorch): with BatchNorm the result is not the large batch's. Dropout and noise are keyed by (step, cell), so
   they are the large batch's.

   Divergence: a non-finite loss (training or validation) or gradient norm stops training with an input error on
   every rank, naming the model, epoch and step.

   Each epoch: the mean loss on the validation cells (the valid groups' cells, or -<prefix>valid_cells of the
   training cells drawn by cell index when the split has no valid group), early stopping after
   -<prefix>patience epochs without improvement, the best parameters restored at the end, a progress line.

   Checkpoints (<dir>/checkpoint.h5, written atomically): the model type, the sampler, every parameter set with its
   buffers and optimiser moments, the step, the epoch, the early-stopping state and the best parameters. -checkpoint_every N
   writes one every N epochs; SIGTERM or SIGUSR1 (Slurm's warning before the time limit) makes the run finish its
   step, write one and stop (CsTrainerTrain then reports interrupted). -resume DIR continues from
   DIR/<model>/checkpoint.h5 after checking every field against the run (model type, seed, cells, counters within
   range and consistent with the steps per epoch, finite values); an interrupted and resumed run ends with
   bit-identical parameters to an uninterrupted one on the same ranks. */
#ifndef CELLSHIFT_TRAINER_H
#define CELLSHIFT_TRAINER_H

#include <cellshift/nn.h>
#include <cellshift/sampler.h>

typedef struct {
  void *ctx;
  /* Train mode: forward, loss and backward of the batch; gradients += into the g of parameter set *set (zeroed by
     the trainer before a step, added over the micro-batches of a step with -accumulate; set 0 unless the model has
     several, the same for every micro-batch of a step); *loss = the loss of the global (micro-)batch of
     pass->nglobal rows (the same on every rank). Collective on pass->comm. */
  PetscErrorCode (*step)(void *ctx, const CsBatch *b, const CsNNPass *pass, PetscInt *set, double *loss);
  /* Eval mode loss of the batch: the sum over the global batch normalised by pass->nglobal (the number of
     validation cells), the same on every rank. Collective on pass->comm. */
  PetscErrorCode (*loss)(void *ctx, const CsBatch *b, const CsNNPass *pass, double *loss);
  /* Optional, after each optimiser step of parameter set `set` (step = optimiser steps taken, from 1): e.g. a
     non-negative weight clamp or a moving average of the parameters. The parameters are the same on every rank and
     so must be what this does. NULL: nothing. */
  PetscErrorCode (*poststep)(void *ctx, PetscInt set, int64_t step);
} CsTrainerCallbacks;

typedef struct _n_CsTrainer *CsTrainer;

PETSC_EXTERN PetscErrorCode CsTrainerCreate(MPI_Comm comm, CsTrainer *t);
/* Options: -<prefix>epochs, -<prefix>batch_size, -<prefix>patience, -<prefix>valid_cells, -<prefix>accumulate, the
   sampler's (sampler.h), each optimiser's (nn.h) with its prefix, the gradient reduction's, and -checkpoint_every,
   -resume (no prefix). */
PETSC_EXTERN PetscErrorCode CsTrainerSetOptionsPrefix(CsTrainer t, const char prefix[]);
/* Defaults of the model (before CsTrainerSetFromOptions). */
PETSC_EXTERN PetscErrorCode CsTrainerSetDefaults(CsTrainer t, PetscInt epochs, PetscInt batch_size, PetscInt patience);
/* Declare a parameter set and its optimiser, with the model's default learning rate and weight decay; its options
   carry the trainer's prefix plus `optprefix` (e.g. "adversary_" for a second set). Before SetFromOptions. */
PETSC_EXTERN PetscErrorCode CsTrainerAddOptimizer(CsTrainer t, const char optprefix[], double lr, double weight_decay, PetscInt *set);
PETSC_EXTERN PetscErrorCode CsTrainerSetFromOptions(CsTrainer t);
/* After SetFromOptions: the most rows a batch (X, and Xctrl) can have on one rank, for the model's buffers
   (-<prefix>batch_size for the cells, paired and coupled samplers). */
PETSC_EXTERN PetscErrorCode CsTrainerGetBatchSize(CsTrainer t, PetscInt *batch);
/* The trainer's sampler: a model may set its type before CsTrainerSetFromOptions (the default of
   -<prefix>sampler_type). */
PETSC_EXTERN PetscErrorCode CsTrainerGetSampler(CsTrainer t, CsSampler *s);
/* Attach the parameters of a declared set (after CsNNParamsSetUp). */
PETSC_EXTERN PetscErrorCode CsTrainerSetParams(CsTrainer t, PetscInt set, CsNNParams P);
/* The trained scalars of every attached parameter set (CsNNParamsCount summed: a model and its adversary). */
PETSC_EXTERN PetscErrorCode CsTrainerGetParameterCount(CsTrainer t, PetscInt64 *n);
PETSC_EXTERN PetscErrorCode CsTrainerGetOptim(CsTrainer t, PetscInt set, CsNNOptim *opt);
PETSC_EXTERN PetscErrorCode CsTrainerSetCallbacks(CsTrainer t, const CsTrainerCallbacks *cb);
/* Collective: the cells, train[i] / valid[i] for local dataset row i (NULL valid: a drawn fraction of the training
   cells), and the design (for samplers other than cells; may be NULL). seed keys the batches, dropout and noise.
   The masks (CsMaskGet, sampler.h) are copied: the caller may free them at once. */
PETSC_EXTERN PetscErrorCode CsTrainerSetData(CsTrainer t, CsDataset ds, CsDesign d, const uint8_t *train, const uint8_t *valid,
                                             uint64_t seed);
/* Folder of the model's checkpoint.h5 (the model's folder of the run), the model's name and type (a checkpoint of
   another type is refused). */
PETSC_EXTERN PetscErrorCode CsTrainerSetCheckpointDir(CsTrainer t, const char dir[], const char model[], const char type[]);
/* Collective: train (or continue from -resume). *interrupted is true when a signal stopped it after a checkpoint. */
PETSC_EXTERN PetscErrorCode CsTrainerTrain(CsTrainer t, PetscBool *interrupted);
PETSC_EXTERN PetscErrorCode CsTrainerDestroy(CsTrainer *t);

#endif
