/* HDF5 helpers. See include/cellshift/h5util.h. */
#include <cellshift/h5util.h>
#include <math.h>

PetscErrorCode CsH5Exists(hid_t loc, const char path[], PetscBool *exists)
{
  char buf[1024];

  PetscFunctionBeginUser;
  *exists = PETSC_FALSE;
  PetscCall(PetscStrncpy(buf, path, sizeof(buf)));
  for (char *p = buf;; p++) {
    if (*p == '/' || *p == 0) {
      char   c = *p;
      htri_t e;
      *p = 0;
      if (buf[0]) {
        e = H5Lexists(loc, buf, H5P_DEFAULT);
        if (e <= 0) PetscFunctionReturn(0);
      }
      if (!c) break;
      *p = c;
    }
  }
  *exists = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5ReadAttrString(hid_t obj, const char attr[], char buf[], size_t len, PetscBool *found)
{
  hid_t  a, t, mt;
  htri_t e;

  PetscFunctionBeginUser;
  buf[0] = 0;
  *found = PETSC_FALSE;
  e      = H5Aexists(obj, attr);
  H5Call(e, "cannot query attribute %s", attr);
  if (!e) PetscFunctionReturn(0);
  H5Call(a = H5Aopen(obj, attr, H5P_DEFAULT), "cannot open attribute %s", attr);
  H5Call(t = H5Aget_type(a), "cannot get the type of attribute %s", attr);
  if (H5Tget_class(t) != H5T_STRING) {
    H5Tclose(t), H5Aclose(a);
    PetscFunctionReturn(0);
  }
  if (H5Tis_variable_str(t) > 0) {
    char *s = NULL;
    mt      = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, H5T_VARIABLE);
    H5Tset_cset(mt, H5Tget_cset(t));
    H5Call(H5Aread(a, mt, &s), "cannot read attribute %s", attr);
    if (s) {
      PetscCall(PetscStrncpy(buf, s, len));
      H5free_memory(s);
    }
  } else {
    size_t n = H5Tget_size(t);
    char  *tmp;
    PetscCall(PetscCalloc1(n + 1, &tmp));
    mt = H5Tcopy(t);
    H5Call(H5Aread(a, mt, tmp), "cannot read attribute %s", attr);
    PetscCall(PetscStrncpy(buf, tmp, len));
    PetscCall(PetscFree(tmp));
  }
  H5Tclose(mt), H5Tclose(t), H5Aclose(a);
  *found = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5WriteAttrString(hid_t obj, const char attr[], const char value[])
{
  hid_t t, s, a;

  PetscFunctionBeginUser;
  t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  s = H5Screate(H5S_SCALAR);
  if (H5Aexists(obj, attr) > 0) H5Adelete(obj, attr);
  H5Call(a = H5Acreate2(obj, attr, t, s, H5P_DEFAULT, H5P_DEFAULT), "cannot create attribute %s", attr);
  H5Call(H5Awrite(a, t, &value), "cannot write attribute %s", attr);
  H5Aclose(a), H5Sclose(s), H5Tclose(t);
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5ReadStrings(hid_t dset, const char what[], hsize_t start, hsize_t count, char ***out)
{
  hid_t   ft, mt, fs, ms;
  hsize_t n, one = count;
  char  **res;

  PetscFunctionBeginUser;
  H5Call(ft = H5Dget_type(dset), "%s: cannot get the type", what);
  PetscCheck(H5Tget_class(ft) == H5T_STRING, PETSC_COMM_SELF, CS_ERR_INPUT, "%s is not a string dataset", what);
  H5Call(fs = H5Dget_space(dset), "%s: cannot get the dataspace", what);
  PetscCheck(H5Sget_simple_extent_ndims(fs) == 1, PETSC_COMM_SELF, CS_ERR_INPUT, "%s is not one-dimensional", what);
  H5Sget_simple_extent_dims(fs, &n, NULL);
  PetscCheck(start + count <= n, PETSC_COMM_SELF, CS_ERR_INPUT, "%s has %llu entries, expected at least %llu", what,
             (unsigned long long)n, (unsigned long long)(start + count));
  PetscCall(PetscCalloc1(count ? count : 1, &res));
  if (count) {
    H5Call(H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &one, NULL), "%s: bad selection", what);
    ms = H5Screate_simple(1, &one, NULL);
    if (H5Tis_variable_str(ft) > 0) {
      char **tmp;
      mt = H5Tcopy(H5T_C_S1);
      H5Tset_size(mt, H5T_VARIABLE);
      H5Tset_cset(mt, H5Tget_cset(ft));
      PetscCall(PetscCalloc1(count, &tmp));
      H5Call(H5Dread(dset, mt, ms, fs, H5P_DEFAULT, tmp), "%s: cannot read strings", what);
      for (hsize_t i = 0; i < count; i++) PetscCall(PetscStrallocpy(tmp[i] ? tmp[i] : "", &res[i]));
      H5Call(H5Dvlen_reclaim(mt, ms, H5P_DEFAULT, tmp), "%s: cannot free strings", what);
      PetscCall(PetscFree(tmp));
    } else {
      size_t w = H5Tget_size(ft);
      char  *tmp;
      mt = H5Tcopy(ft);
      PetscCall(PetscMalloc1(count * w, &tmp));
      H5Call(H5Dread(dset, mt, ms, fs, H5P_DEFAULT, tmp), "%s: cannot read strings", what);
      for (hsize_t i = 0; i < count; i++) {
        PetscCall(PetscCalloc1(w + 1, &res[i]));
        memcpy(res[i], tmp + i * w, w);
      }
      PetscCall(PetscFree(tmp));
    }
    H5Tclose(mt), H5Sclose(ms);
  }
  H5Sclose(fs), H5Tclose(ft);
  *out = res;
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5WriteStrings(hid_t loc, const char name[], PetscInt n, char *const *s)
{
  hid_t   t, sp, d;
  hsize_t dim = (hsize_t)n;

  PetscFunctionBeginUser;
  t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  sp = H5Screate_simple(1, &dim, NULL);
  H5Call(d = H5Dcreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "cannot create %s", name);
  if (n) H5Call(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, s), "cannot write %s", name);
  H5Dclose(d), H5Sclose(sp), H5Tclose(t);
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5WriteArray(hid_t loc, const char name[], hid_t memtype, int rank, const hsize_t dims[], const void *buf)
{
  hid_t sp, d;

  PetscFunctionBeginUser;
  sp = H5Screate_simple(rank, dims, NULL);
  H5Call(d = H5Dcreate2(loc, name, memtype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "cannot create %s", name);
  H5Call(H5Dwrite(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), "cannot write %s", name);
  H5Dclose(d), H5Sclose(sp);
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5ReadArray(hid_t loc, const char what[], const char name[], hid_t memtype, int rank, hsize_t dims[],
                             void *buf)
{
  hid_t     d, sp;
  hsize_t   fd[8];
  PetscBool e;

  PetscFunctionBeginUser;
  PetscCall(CsH5Exists(loc, name, &e));
  PetscCheck(e, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: no dataset %s", what, name);
  H5Call(d = H5Dopen2(loc, name, H5P_DEFAULT), "%s: cannot open %s", what, name);
  sp = H5Dget_space(d);
  PetscCheck(H5Sget_simple_extent_ndims(sp) == rank, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: %s has %d dimensions, expected %d",
             what, name, H5Sget_simple_extent_ndims(sp), rank);
  H5Sget_simple_extent_dims(sp, fd, NULL);
  for (int i = 0; i < rank; i++) {
    PetscCheck(!dims[i] || dims[i] == fd[i], PETSC_COMM_SELF, CS_ERR_INPUT,
               "%s: %s has extent %llu in dimension %d, expected %llu", what, name, (unsigned long long)fd[i], i,
               (unsigned long long)dims[i]);
    dims[i] = fd[i];
  }
  if (buf) H5Call(H5Dread(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), "%s: cannot read %s", what, name);
  H5Sclose(sp), H5Dclose(d);
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5WriteAttrInt64(hid_t obj, const char attr[], int64_t v)
{
  hid_t s, a;

  PetscFunctionBeginUser;
  s = H5Screate(H5S_SCALAR);
  H5Call(a = H5Acreate2(obj, attr, H5T_NATIVE_INT64, s, H5P_DEFAULT, H5P_DEFAULT), "cannot create attribute %s", attr);
  H5Call(H5Awrite(a, H5T_NATIVE_INT64, &v), "cannot write attribute %s", attr);
  H5Aclose(a), H5Sclose(s);
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5ReadAttrInt64(hid_t obj, const char attr[], int64_t *v)
{
  hid_t a;

  PetscFunctionBeginUser;
  PetscCheck(H5Aexists(obj, attr) > 0, PETSC_COMM_SELF, CS_ERR_INPUT, "missing attribute %s", attr);
  H5Call(a = H5Aopen(obj, attr, H5P_DEFAULT), "cannot open attribute %s", attr);
  H5Call(H5Aread(a, H5T_NATIVE_INT64, v), "cannot read attribute %s", attr);
  H5Aclose(a);
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5ReadArrayFinite(hid_t loc, const char what[], const char name[], hid_t memtype, int rank, hsize_t dims[], void *buf)
{
  size_t    n = 1;
  PetscBool f32;

  PetscFunctionBeginUser;
  PetscCall(CsH5ReadArray(loc, what, name, memtype, rank, dims, buf));
  if (!buf) PetscFunctionReturn(0);
  f32 = H5Tequal(memtype, H5T_NATIVE_FLOAT) > 0 ? PETSC_TRUE : PETSC_FALSE;
  for (int i = 0; i < rank; i++) n *= (size_t)dims[i];
  for (size_t i = 0; i < n; i++) {
    double v = f32 ? (double)((const float *)buf)[i] : ((const double *)buf)[i];
    char   num[32];
    if (isfinite(v)) continue;
    snprintf(num, sizeof(num), "%s", isnan(v) ? "nan" : v > 0 ? "inf" : "-inf"); /* PETSc's %g would print "nan." */
    SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s: %s holds a non-finite value (%s at entry %zu): the file is damaged or was written by a fit that diverged",
            what, name, num, i);
  }
  PetscFunctionReturn(0);
}
