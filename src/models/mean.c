/* mean: each control cell of the target context plus the context's mean shift over all training perturbations of
   the train and valid groups (it has no hyper-parameter to tune on the valid ones; CsContextMeanShifts: every
   perturbed group of the context weighs the same, whatever its atoms). The
   condition is ignored: this is the mean baseline of GEARS and Ahlmann-Eltze et al., and the cell-mean baseline of
   the Virtual Cell Challenge, which every perturbation-specific model has to beat. A context without training
   perturbations gets the average shift of the other contexts. */
#include "modelimpl.h"
#include <cellshift/h5util.h>

typedef struct {
  double *shift; /* [nctx x ngenes] */
} Mean;

static PetscErrorCode CsModelFit_Mean(CsModel m)
{
  Mean *a = (Mean *)m->data;

  PetscFunctionBeginUser;
  PetscCall(PetscFree(a->shift));
  PetscCall(PetscMalloc1((size_t)m->design->nctx * m->ds->ngenes + 1, &a->shift));
  PetscCall(CsContextMeanShifts(m->ds, m->design, m->split, PETSC_TRUE, a->shift, NULL));
  m->nparams = (PetscInt64)m->design->nctx * m->ds->ngenes; /* one shift per gene and context */
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelPredict_Mean(CsModel m, const CsCondition *cond, PetscInt ctx, const CsCSR *ctrl, float *out)
{
  Mean         *a = (Mean *)m->data;
  PetscInt      G = ctrl->ncols;
  const double *s = a->shift + (size_t)ctx * G;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < ctrl->nrows; i++) {
    float *row = out + (size_t)i * G;
    CsCSRRowToDense(ctrl, i, row);
    for (PetscInt j = 0; j < G; j++) row[j] = (float)(row[j] + s[j]);
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelSave_Mean(CsModel m, hid_t g)
{
  hsize_t dims[2] = {(hsize_t)m->design->nctx, (hsize_t)m->ds->ngenes};

  PetscFunctionBeginUser;
  if (g < 0) PetscFunctionReturn(0); /* replicated state: rank 0 writes it */
  PetscCall(CsH5WriteArray(g, "mean_shift", H5T_NATIVE_DOUBLE, 2, dims, ((Mean *)m->data)->shift));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelLoad_Mean(CsModel m, hid_t g)
{
  Mean   *a       = (Mean *)m->data;
  hsize_t dims[2] = {(hsize_t)m->design->nctx, (hsize_t)m->ds->ngenes};

  PetscFunctionBeginUser;
  PetscCall(PetscFree(a->shift));
  PetscCall(PetscMalloc1((size_t)m->design->nctx * m->ds->ngenes + 1, &a->shift));
  PetscCall(CsH5ReadArrayFinite(g, "model.h5", "mean_shift", H5T_NATIVE_DOUBLE, 2, dims, a->shift));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelDestroy_Mean(CsModel m)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree(((Mean *)m->data)->shift));
  PetscCall(PetscFree(m->data));
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelCreate_Mean(CsModel m)
{
  Mean *a;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&a));
  m->data         = a;
  m->ops->fit     = CsModelFit_Mean;
  m->streams      = PETSC_TRUE; /* group means by a streamed pass */
  m->ops->predict = CsModelPredict_Mean;
  m->ops->save    = CsModelSave_Mean;
  m->ops->load    = CsModelLoad_Mean;
  m->ops->destroy = CsModelDestroy_Mean;
  PetscFunctionReturn(0);
}
