/* Private to src/linalg. */
#ifndef CELLSHIFT_LINALGIMPL_H
#define CELLSHIFT_LINALGIMPL_H

#include <cellshift/linalg.h>

/* Flip v[n] so that its largest-|.| entry (the first one on ties) is positive: eigenvectors are only defined up to
   sign, and LAPACK and ScaLAPACK on different process grids pick different ones. */
PETSC_INTERN void CsFixSign(PetscInt n, double *v);

#endif
