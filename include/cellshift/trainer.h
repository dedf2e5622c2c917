/* CsTrainer: data-parallel minibatch training of a model built on the neural engine (nn.h).

   Minibatches: the training cells (cells of the split's train groups, or any set the model chooses) are numbered
   globally in rank order; epoch e visits them in the order of a pointwise permutation keyed by (seed, e) (CsPerm),
   in global batches of -<prefix>batch_size cells. Each rank takes the cells of the batch it owns, so a batch is the
   same set of cells whatever the number of ranks, and the optimisation is the same (BatchNorm statistics and
   losses are over the global batch, see nn.h).

   A step: the model's step callback runs forward and backward on the rank's part of the batch (gradients into
   its parameter set), the gradient is summed over ranks (CsNNReducer), the optimiser steps. Models with several
   parameter sets (an autoencoder and its adversaries) say per step which set the gradient is for.

   Each epoch: the mean loss on the validation cells (the valid groups' cells, or -<prefix>valid_cells of the
   training cells drawn by cell index when the split has no valid group), early stopping after
   -<prefix>patience epochs without improvement, the best parameters restored at the end, a progress line.

   Checkpoints (<dir>/checkpoint.h5, written atomically): every parameter set with its buffers and optimiser
   moments, the step, the epoch, the early-stopping state and the best parameters. -checkpoint_every N writes one
   every N epochs; SIGTERM or SIGUSR1 (Slurm's warning before the time limit) makes the run finish its step, write
   one and stop (CsTrainerTrain then reports interrupted). -resume DIR continues from DIR/<model>/checkpoint.h5;
   an interrupted and resumed run ends with bit-identical parameters to an uninterrupted one on the same ranks. */
#ifndef CELLSHIFT_TRAINER_H
#define CELLSHIFT_TRAINER_H

#include <cellshift/nn.h>
#include <cellshift/split.h>

/* The rank's part of a global minibatch. */
typedef struct {
  CsCSR     X;        /* [n rows] expression of the cells (CSR, ngenes columns) */
  PetscInt  n;        /* local rows */
  PetscInt  nglobal;  /* rows of the global batch */
  PetscInt *local;    /* [n] dataset row (0 .. ds->nlocal-1) of each batch row */
  int64_t  *cell;     /* [n] global cell index of each batch row */
} CsBatch;

typedef struct {
  void *ctx;
  /* Train mode: forward, loss and backward of the batch; gradients += into the g of parameter set *set (zeroed by
     the trainer before the call; set 0 unless the model has several); *loss = the loss of the global batch (the
     same on every rank). Collective on pass->comm. */
  PetscErrorCode (*step)(void *ctx, const CsBatch *b, const CsNNPass *pass, PetscInt *set, double *loss);
  /* Eval mode loss of the batch: the sum over the global batch normalised by pass->nglobal (the number of
     validation cells), the same on every rank. Collective on pass->comm. */
  PetscErrorCode (*loss)(void *ctx, const CsBatch *b, const CsNNPass *pass, double *loss);
} CsTrainerCallbacks;

typedef struct _n_CsTrainer *CsTrainer;

PETSC_EXTERN PetscErrorCode CsTrainerCreate(MPI_Comm comm, CsTrainer *t);
/* Options: -<prefix>epochs, -<prefix>batch_size, -<prefix>patience, -<prefix>valid_cells, each optimiser's (nn.h)
   with its prefix, the gradient reduction's, and -checkpoint_every, -resume (no prefix). */
PETSC_EXTERN PetscErrorCode CsTrainerSetOptionsPrefix(CsTrainer t, const char prefix[]);
/* Defaults of the model (before CsTrainerSetFromOptions). */
PETSC_EXTERN PetscErrorCode CsTrainerSetDefaults(CsTrainer t, PetscInt epochs, PetscInt batch_size, PetscInt patience);
/* Declare a parameter set and its optimiser, with the model's default learning rate and weight decay; its options
   carry the trainer's prefix plus `optprefix` (e.g. "adversary_" for a second set). Before SetFromOptions. */
PETSC_EXTERN PetscErrorCode CsTrainerAddOptimizer(CsTrainer t, const char optprefix[], double lr, double weight_decay, PetscInt *set);
PETSC_EXTERN PetscErrorCode CsTrainerSetFromOptions(CsTrainer t);
PETSC_EXTERN PetscErrorCode CsTrainerGetBatchSize(CsTrainer t, PetscInt *batch);
/* Attach the parameters of a declared set (after CsNNParamsSetUp). */
PETSC_EXTERN PetscErrorCode CsTrainerSetParams(CsTrainer t, PetscInt set, CsNNParams P);
PETSC_EXTERN PetscErrorCode CsTrainerGetOptim(CsTrainer t, PetscInt set, CsNNOptim *opt);
PETSC_EXTERN PetscErrorCode CsTrainerSetCallbacks(CsTrainer t, const CsTrainerCallbacks *cb);
/* The cells: train[i] / valid[i] for local dataset row i (NULL valid: valid groups of the split, else a drawn
   fraction of the training cells). seed keys the shuffle, dropout and noise. */
PETSC_EXTERN PetscErrorCode CsTrainerSetData(CsTrainer t, CsDataset ds, const PetscBool *train, const PetscBool *valid, uint64_t seed);
/* Folder of the model's checkpoint.h5 (the model's folder of the run). */
PETSC_EXTERN PetscErrorCode CsTrainerSetCheckpointDir(CsTrainer t, const char dir[], const char model[]);
/* Collective: train (or continue from -resume). *interrupted is true when a signal stopped it after a checkpoint. */
PETSC_EXTERN PetscErrorCode CsTrainerTrain(CsTrainer t, PetscBool *interrupted);
/* Mean validation loss of the best epoch and the number of epochs run. */
PETSC_EXTERN PetscErrorCode CsTrainerGetResult(CsTrainer t, double *best_valid, PetscInt *epochs);
PETSC_EXTERN PetscErrorCode CsTrainerDestroy(CsTrainer *t);

/* Build the rank's CSR rows of an arbitrary set of local dataset rows (for models' own passes, e.g. encoding). */
PETSC_EXTERN PetscErrorCode CsBatchFromRows(CsDataset ds, PetscInt n, const PetscInt *rows, CsBatch *b);
PETSC_EXTERN PetscErrorCode CsBatchFree(CsBatch *b);

#endif
