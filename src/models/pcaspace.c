/* The scaled principal subspace the transport models (cellot, flow) work in. See modelimpl.h. */
#include "modelimpl.h"
#include <cellshift/h5util.h>

PetscErrorCode CsPCASpaceInit(CsPCASpace *s, PetscInt K, PetscInt G)
{
  PetscFunctionBeginUser;
  PetscCall(CsPCASpaceFree(s));
  s->K = K, s->G = G, s->scale = 1;
  PetscCall(PetscCalloc3(G, &s->mean, (size_t)G * K, &s->V, K, &s->mv));
  PetscFunctionReturn(0);
}

PetscErrorCode CsPCASpaceFree(CsPCASpace *s)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree3(s->mean, s->V, s->mv));
  PetscFunctionReturn(0);
}

static void Finish(CsPCASpace *s)
{
  for (PetscInt k = 0; k < s->K; k++) {
    s->mv[k] = 0;
    for (PetscInt j = 0; j < s->G; j++) s->mv[k] += s->mean[j] * s->V[(size_t)j * s->K + k];
  }
}

PetscErrorCode CsPCASpaceFit(CsModel m, const CsPCAOptions *opt, CsPCASpace *s)
{
  PetscBool *rows;
  double    *comps, *vars;
  PetscInt   K = s->K, G = s->G;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(m->ds->nlocal + 1, &rows));
  for (PetscInt i = 0; i < m->ds->nlocal; i++) {
    PetscInt g = m->design->cell_group[i];
    rows[i]    = (PetscBool)(g >= 0 && m->split->role[g] == CS_ROLE_TRAIN);
  }
  PetscCall(PetscMalloc2((size_t)K * G, &comps, K, &vars));
  PetscCall(CsPCAFit(PetscObjectComm((PetscObject)m), &m->ds->X, rows, K, opt, s->mean, comps, vars));
  s->scale = 0;
  for (PetscInt k = 0; k < K; k++) {
    s->scale += vars[k] / K;
    for (PetscInt j = 0; j < G; j++) s->V[(size_t)j * K + k] = comps[(size_t)k * G + j];
  }
  s->scale = PetscMax(PetscSqrtReal(s->scale), 1e-12);
  Finish(s);
  PetscCall(PetscInfo(NULL, "%s: PCA %" PetscInt_FMT " axes, top variance %g, scale %g\n", CsModelName(m), K, vars[0], s->scale));
  PetscCall(PetscFree2(comps, vars));
  PetscCall(PetscFree(rows));
  PetscFunctionReturn(0);
}

void CsPCASpaceProject(const CsPCASpace *s, const CsCSR *X, float *z)
{
  PetscInt K = s->K;
  double   acc[CS_PCA_SPACE_MAX];
  for (PetscInt r = 0; r < X->nrows; r++) {
    for (PetscInt k = 0; k < K; k++) acc[k] = -s->mv[k];
    for (int64_t p = X->indptr[r]; p < X->indptr[r + 1]; p++) {
      const double *v = s->V + (size_t)X->indices[p] * K;
      double        x = X->data[p];
      for (PetscInt k = 0; k < K; k++) acc[k] += x * v[k];
    }
    for (PetscInt k = 0; k < K; k++) z[(size_t)r * K + k] = (float)(acc[k] / s->scale);
  }
}

void CsPCASpaceLift(const CsPCASpace *s, const CsCSR *X, const float *z0, const float *z1, float *out)
{
  PetscInt K = s->K, G = s->G;
  double   dz[CS_PCA_SPACE_MAX];
  for (PetscInt i = 0; i < X->nrows; i++) {
    float *row = out + (size_t)i * G;
    CsCSRRowToDense(X, i, row);
    for (PetscInt k = 0; k < K; k++) dz[k] = ((double)z1[(size_t)i * K + k] - z0[(size_t)i * K + k]) * s->scale;
    for (PetscInt j = 0; j < G; j++) {
      const double *vj = s->V + (size_t)j * K;
      double        a  = row[j];
      for (PetscInt k = 0; k < K; k++) a += dz[k] * vj[k];
      row[j] = (float)a;
    }
  }
}

PetscErrorCode CsPCASpaceSave(const CsPCASpace *s, hid_t g)
{
  hsize_t dg[1] = {(hsize_t)s->G}, dV[2] = {(hsize_t)s->G, (hsize_t)s->K}, d1[1] = {1};

  PetscFunctionBeginUser;
  PetscCall(CsH5WriteArray(g, "pca_mean", H5T_NATIVE_DOUBLE, 1, dg, s->mean));
  PetscCall(CsH5WriteArray(g, "pca_axes", H5T_NATIVE_DOUBLE, 2, dV, s->V));
  PetscCall(CsH5WriteArray(g, "pca_scale", H5T_NATIVE_DOUBLE, 1, d1, &s->scale));
  PetscFunctionReturn(0);
}

PetscErrorCode CsPCASpaceLoad(CsPCASpace *s, hid_t g)
{
  hsize_t dg[1] = {(hsize_t)s->G}, dV[2] = {(hsize_t)s->G, (hsize_t)s->K}, d1[1] = {1};

  PetscFunctionBeginUser;
  PetscCall(CsH5ReadArrayFinite(g, "model.h5", "pca_mean", H5T_NATIVE_DOUBLE, 1, dg, s->mean));
  PetscCall(CsH5ReadArrayFinite(g, "model.h5", "pca_axes", H5T_NATIVE_DOUBLE, 2, dV, s->V));
  PetscCall(CsH5ReadArrayFinite(g, "model.h5", "pca_scale", H5T_NATIVE_DOUBLE, 1, d1, &s->scale));
  PetscCheck(s->scale > 0, PETSC_COMM_SELF, CS_ERR_INPUT, "model.h5: pca_scale must be positive (got %g)", s->scale);
  Finish(s);
  PetscFunctionReturn(0);
}
