/* Progress reporting for long steps. Rank 0 prints: a live bar with rate and ETA when a person watches a terminal,
   otherwise (a log file, a Slurm log) one line every -progress_interval seconds (default 10) and a final line.
   -progress bar|lines overrides the choice; auto (the default) decides from the stdout of the MPI launcher
   (mpiexec/mpirun/srun), found among the rank's parent processes, because under mpiexec the ranks write into a
   pseudo-terminal even when mpiexec's own output goes to a file. Collective only in CsProgressCreate; updates are
   cheap and local (pass the global count done, as known on rank 0). */
#ifndef CELLSHIFT_PROGRESS_H
#define CELLSHIFT_PROGRESS_H

#include <cellshift/sys.h>

typedef struct _n_CsProgress *CsProgress;

/* Rank 0: whether progress is drawn as a live bar (decided once per process). */
PETSC_EXTERN PetscBool CsProgressLive(void);
PETSC_EXTERN PetscErrorCode CsProgressCreate(MPI_Comm comm, const char label[], const char unit[], double total, CsProgress *p);
/* `done` units of `total`; `extra` is appended to the line (may be NULL), e.g. "loss 0.123". */
PETSC_EXTERN PetscErrorCode CsProgressUpdate(CsProgress p, double done, const char extra[]);
/* Prints the final line (total time, mean rate) and frees. NULL-safe. */
PETSC_EXTERN PetscErrorCode CsProgressDestroy(CsProgress *p);

#endif
