/* HDF5 helpers. See include/cellshift/h5util.h. Every HDF5 call is checked; handles are closed on the success path
   (error paths leave them to H5Fclose with H5F_CLOSE_STRONG, or to the end of the process). */
#include <cellshift/h5util.h>
#include <math.h>

hid_t CsH5CreateChecksummed(const char path[])
{
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), f = H5I_INVALID_HID;

  if (fapl < 0) return H5I_INVALID_HID;
  if (H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST) >= 0) f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  H5Pclose(fapl);
  return f;
}

PetscErrorCode CsH5OpenChecksummed(const char path[], const char what[], hid_t *file)
{
  H5F_info2_t info;
  hid_t       fapl;

  PetscFunctionBeginUser;
  /* Strong close: closing the file closes what a refused read left open in it. */
  H5Call(fapl = H5Pcreate(H5P_FILE_ACCESS), "%s: cannot make file access properties", path);
  H5Call(H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG), "%s: cannot set the close degree", path);
  *file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
  PetscCall(CsH5Close(&fapl, path));
  PetscCheck(*file >= 0, PETSC_COMM_SELF, CS_ERR_INPUT, "cannot open %s %s (damaged or not an HDF5 file)", what, path);
  if (H5Fget_info2(*file, &info) < 0 || info.super.version < 2) {
    PetscCall(CsH5Close(file, path));
    SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s is not a %s written by this cellshift: its HDF5 metadata carries no checksums", path, what);
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5Close(hid_t *id, const char what[])
{
  herr_t e;

  PetscFunctionBeginUser;
  if (*id < 0) PetscFunctionReturn(0);
  switch (H5Iget_type(*id)) {
  case H5I_FILE: e = H5Fclose(*id); break;
  case H5I_GROUP: e = H5Gclose(*id); break;
  case H5I_DATATYPE: e = H5Tclose(*id); break;
  case H5I_DATASPACE: e = H5Sclose(*id); break;
  case H5I_DATASET: e = H5Dclose(*id); break;
  case H5I_ATTR: e = H5Aclose(*id); break;
  case H5I_GENPROP_LST: e = H5Pclose(*id); break;
  default: e = -1;
  }
  *id = H5I_INVALID_HID;
  H5Call(e, "%s: cannot close an HDF5 handle", what);
  PetscFunctionReturn(0);
}

void CsH5TypeName(hid_t t, char buf[], size_t len)
{
  H5T_class_t c     = H5Tget_class(t);
  size_t      s     = H5Tget_size(t);
  const char *order = H5Tget_order(t) == H5T_ORDER_BE ? ">" : "";

  if (c == H5T_INTEGER) snprintf(buf, len, "%s%sint%d", order, H5Tget_sign(t) == H5T_SGN_NONE ? "u" : "", (int)(8 * s));
  else if (c == H5T_FLOAT) snprintf(buf, len, "%sfloat%d", order, (int)(8 * s));
  else if (c == H5T_STRING) {
    if (H5Tis_variable_str(t) > 0) snprintf(buf, len, "str");
    else snprintf(buf, len, "|S%zu", s);
  } else if (c == H5T_ENUM) snprintf(buf, len, H5Tget_nmembers(t) == 2 ? "bool" : "enum");
  else if (c == H5T_COMPOUND) snprintf(buf, len, "compound");
  else if (c == H5T_OPAQUE) snprintf(buf, len, "opaque");
  else if (c == H5T_BITFIELD) snprintf(buf, len, "bitfield");
  else if (c == H5T_REFERENCE) snprintf(buf, len, "reference");
  else if (c == H5T_ARRAY) snprintf(buf, len, "array");
  else if (c == H5T_VLEN) snprintf(buf, len, "variable-length sequence");
  else snprintf(buf, len, "HDF5 type class %d", (int)c);
}

PetscErrorCode CsH5Shape(hid_t d, const char what[], int *ndims, hsize_t dims[], int maxdims)
{
  hid_t   s;
  hsize_t all[H5S_MAX_RANK];

  PetscFunctionBeginUser;
  H5Call(s = H5Dget_space(d), "%s: cannot get the dataspace", what);
  H5Call(*ndims = H5Sget_simple_extent_ndims(s), "%s: cannot get the number of dimensions", what);
  H5Call(H5Sget_simple_extent_dims(s, all, NULL), "%s: cannot get the dimensions", what);
  for (int i = 0; i < maxdims; i++) dims[i] = i < *ndims ? all[i] : 0;
  PetscCall(CsH5Close(&s, what));
  PetscFunctionReturn(0);
}

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
        if (e <= 0) PetscFunctionReturn(0); /* an error here means a component on the way is not a group */
      }
      if (!c) break;
      *p = c;
    }
  }
  *exists = PETSC_TRUE;
  PetscFunctionReturn(0);
}

/* The number of elements of an attribute. */
static PetscErrorCode AttrPoints(hid_t a, const char attr[], hssize_t *n)
{
  hid_t s;

  PetscFunctionBeginUser;
  H5Call(s = H5Aget_space(a), "cannot get the dataspace of attribute %s", attr);
  H5Call(*n = H5Sget_simple_extent_npoints(s), "cannot get the size of attribute %s", attr);
  PetscCall(CsH5Close(&s, attr));
  PetscFunctionReturn(0);
}

/* A variable-length string type in the character set of t. */
static PetscErrorCode VarStringType(hid_t t, const char what[], hid_t *mt)
{
  H5T_cset_t cset;

  PetscFunctionBeginUser;
  H5Call(cset = H5Tget_cset(t), "%s: cannot get the character set", what);
  H5Call(*mt = H5Tcopy(H5T_C_S1), "%s: cannot make a string type", what);
  H5Call(H5Tset_size(*mt, H5T_VARIABLE), "%s: cannot make a string type", what);
  H5Call(H5Tset_cset(*mt, cset), "%s: cannot make a string type", what);
  PetscFunctionReturn(0);
}

/* The string value of attribute a of type t (a string type, one element). */
static PetscErrorCode ReadAttrString(hid_t a, hid_t t, const char attr[], char buf[], size_t len)
{
  hid_t  mt = H5I_INVALID_HID;
  htri_t var;

  PetscFunctionBeginUser;
  H5Call(var = H5Tis_variable_str(t), "cannot query the type of attribute %s", attr);
  if (var) {
    char *s = NULL;
    herr_t e;
    PetscCall(VarStringType(t, attr, &mt));
    e = H5Aread(a, mt, &s);
    PetscCall(CsH5Close(&mt, attr)); /* on every path: a failed read leaves the type pinning the file */
    H5Call(e, "cannot read attribute %s", attr);
    if (s) {
      PetscCall(PetscStrncpy(buf, s, len));
      H5Call(H5free_memory(s), "cannot free attribute %s", attr);
    }
  } else {
    size_t w = H5Tget_size(t);
    char  *tmp;
    PetscCheck(w > 0, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED, "cannot get the size of attribute %s", attr);
    PetscCall(PetscCalloc1(w + 1, &tmp));
    H5Call(mt = H5Tcopy(t), "cannot copy the type of attribute %s", attr);
    H5Call(H5Aread(a, mt, tmp), "cannot read attribute %s", attr);
    PetscCall(PetscStrncpy(buf, tmp, len));
    PetscCall(PetscFree(tmp));
  }
  PetscCall(CsH5Close(&mt, attr));
  PetscFunctionReturn(0);
}

/* The value of the open attribute a when it is one string (*found), else nothing. Closes what it opens on every
   path: an open handle pins the file. */
static PetscErrorCode AttrValue(hid_t a, const char attr[], const char *fixed, char buf[], size_t len, PetscBool *found)
{
  hid_t          t;
  hssize_t       n;
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  H5Call(t = H5Aget_type(a), "cannot get the type of attribute %s", attr);
  ierr = AttrPoints(a, attr, &n);
  if (!ierr && H5Tget_class(t) == H5T_STRING && n == 1) {
    if (fixed && H5Tis_variable_str(t) != 0) {
      PetscCall(CsH5Close(&t, attr));
      SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s: attribute %s is a variable-length string: not written by cellshift", fixed, attr);
    }
    ierr   = ReadAttrString(a, t, attr, buf, len);
    *found = ierr ? PETSC_FALSE : PETSC_TRUE;
  }
  PetscCall(CsH5Close(&t, attr));
  PetscCall(ierr);
  PetscFunctionReturn(0);
}

static PetscErrorCode ReadAttr(hid_t obj, const char attr[], const char *fixed, char buf[], size_t len, PetscBool *found)
{
  hid_t          a;
  htri_t         e;
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  buf[0] = 0;
  *found = PETSC_FALSE;
  H5Call(e = H5Aexists(obj, attr), "cannot query attribute %s", attr);
  if (!e) PetscFunctionReturn(0);
  H5Call(a = H5Aopen(obj, attr, H5P_DEFAULT), "cannot open attribute %s", attr);
  ierr = AttrValue(a, attr, fixed, buf, len, found);
  PetscCall(CsH5Close(&a, attr));
  PetscCall(ierr);
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5ReadAttrString(hid_t obj, const char attr[], char buf[], size_t len, PetscBool *found)
{
  PetscFunctionBeginUser;
  PetscCall(ReadAttr(obj, attr, NULL, buf, len, found));
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5ReadAttrFixedString(hid_t obj, const char what[], const char attr[], char buf[], size_t len, PetscBool *found)
{
  PetscFunctionBeginUser;
  PetscCall(ReadAttr(obj, attr, what, buf, len, found));
  PetscFunctionReturn(0);
}

static PetscErrorCode WriteAttrString(hid_t obj, const char attr[], const char value[], PetscBool fixed)
{
  hid_t  t, s, a;
  htri_t e;

  PetscFunctionBeginUser;
  H5Call(t = H5Tcopy(H5T_C_S1), "attribute %s: cannot make a string type", attr);
  H5Call(H5Tset_size(t, fixed ? strlen(value) + 1 : H5T_VARIABLE), "attribute %s: cannot make a string type", attr);
  H5Call(H5Tset_cset(t, H5T_CSET_UTF8), "attribute %s: cannot make a string type", attr);
  H5Call(s = H5Screate(H5S_SCALAR), "attribute %s: cannot make a dataspace", attr);
  H5Call(e = H5Aexists(obj, attr), "cannot query attribute %s", attr);
  if (e) H5Call(H5Adelete(obj, attr), "cannot replace attribute %s", attr);
  H5Call(a = H5Acreate2(obj, attr, t, s, H5P_DEFAULT, H5P_DEFAULT), "cannot create attribute %s", attr);
  H5Call(H5Awrite(a, t, fixed ? (const void *)value : (const void *)&value), "cannot write attribute %s", attr);
  PetscCall(CsH5Close(&a, attr));
  PetscCall(CsH5Close(&s, attr));
  PetscCall(CsH5Close(&t, attr));
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5WriteAttrString(hid_t obj, const char attr[], const char value[])
{
  PetscFunctionBeginUser;
  PetscCall(WriteAttrString(obj, attr, value, PETSC_FALSE));
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5WriteAttrFixedString(hid_t obj, const char attr[], const char value[])
{
  PetscFunctionBeginUser;
  PetscCall(WriteAttrString(obj, attr, value, PETSC_TRUE));
  PetscFunctionReturn(0);
}

/* Variable-length strings: copied out, then HDF5's buffers reclaimed. */
static PetscErrorCode ReadVarStrings(hid_t dset, const char what[], hid_t ft, hid_t ms, hid_t fs, hsize_t count, char **res)
{
  hid_t  mt;
  char **tmp;
  herr_t e;

  PetscFunctionBeginUser;
  PetscCall(VarStringType(ft, what, &mt));
  PetscCall(PetscCalloc1(count, &tmp));
  e = H5Dread(dset, mt, ms, fs, H5P_DEFAULT, tmp);
  if (e < 0) PetscCall(CsH5Close(&mt, what)); /* a failed read leaves the type pinning the file */
  H5Call(e, "%s: cannot read strings", what);
  for (hsize_t i = 0; i < count; i++) PetscCall(PetscStrallocpy(tmp[i] ? tmp[i] : "", &res[i]));
  H5Call(H5Dvlen_reclaim(mt, ms, H5P_DEFAULT, tmp), "%s: cannot free strings", what);
  PetscCall(PetscFree(tmp));
  PetscCall(CsH5Close(&mt, what));
  PetscFunctionReturn(0);
}

/* Fixed-length strings of w bytes each (not necessarily terminated). */
static PetscErrorCode ReadFixedStrings(hid_t dset, const char what[], hid_t ft, hid_t ms, hid_t fs, hsize_t count, char **res)
{
  hid_t  mt;
  size_t w = H5Tget_size(ft);
  char  *tmp;

  PetscFunctionBeginUser;
  PetscCheck(w > 0, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED, "%s: cannot get the string size", what);
  PetscCheck(count <= ((size_t)1 << 40) / w, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: %llu strings of %zu bytes are too many to read",
             what, (unsigned long long)count, w);
  H5Call(mt = H5Tcopy(ft), "%s: cannot copy the string type", what);
  PetscCall(PetscMalloc1(count * w, &tmp));
  H5Call(H5Dread(dset, mt, ms, fs, H5P_DEFAULT, tmp), "%s: cannot read strings", what);
  for (hsize_t i = 0; i < count; i++) {
    PetscCall(PetscCalloc1(w + 1, &res[i]));
    memcpy(res[i], tmp + i * w, w);
  }
  PetscCall(PetscFree(tmp));
  PetscCall(CsH5Close(&mt, what));
  PetscFunctionReturn(0);
}

/* CsH5ReadStrings with the dataset's string type ft (closed by the caller on every path). */
static PetscErrorCode ReadStrings(hid_t dset, hid_t ft, const char what[], hsize_t start, hsize_t count, char **res)
{
  hid_t   fs, ms;
  hsize_t n[1], one = count;
  int     nd;
  htri_t  var;

  PetscFunctionBeginUser;
  PetscCall(CsH5Shape(dset, what, &nd, n, 1));
  PetscCheck(nd == 1, PETSC_COMM_SELF, CS_ERR_INPUT, "%s is not one-dimensional", what);
  PetscCheck(start + count <= n[0], PETSC_COMM_SELF, CS_ERR_INPUT, "%s has %llu entries, expected at least %llu", what,
             (unsigned long long)n[0], (unsigned long long)(start + count));
  if (!count) PetscFunctionReturn(0);
  H5Call(fs = H5Dget_space(dset), "%s: cannot get the dataspace", what);
  H5Call(H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &one, NULL), "%s: bad selection", what);
  H5Call(ms = H5Screate_simple(1, &one, NULL), "%s: cannot make a dataspace", what);
  H5Call(var = H5Tis_variable_str(ft), "%s: cannot query the string type", what);
  if (var) PetscCall(ReadVarStrings(dset, what, ft, ms, fs, count, res));
  else PetscCall(ReadFixedStrings(dset, what, ft, ms, fs, count, res));
  PetscCall(CsH5Close(&ms, what));
  PetscCall(CsH5Close(&fs, what));
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5ReadStrings(hid_t dset, const char what[], hsize_t start, hsize_t count, char ***out)
{
  hid_t          ft;
  char         **res;
  H5T_class_t    cls;
  char           tn[64];
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  H5Call(ft = H5Dget_type(dset), "%s: cannot get the type", what);
  cls = H5Tget_class(ft);
  CsH5TypeName(ft, tn, sizeof(tn));
  if (cls != H5T_STRING) PetscCall(CsH5Close(&ft, what));
  PetscCheck(cls == H5T_STRING, PETSC_COMM_SELF, CS_ERR_INPUT, "%s holds %s, not strings", what, tn);
  PetscCall(PetscCalloc1(count ? count : 1, &res));
  ierr = ReadStrings(dset, ft, what, start, count, res); /* the type is closed on every path: it pins the file */
  PetscCall(CsH5Close(&ft, what));
  if (ierr) PetscCall(CsStrArrayDestroy((PetscInt)count, &res));
  PetscCall(ierr);
  *out = res;
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5WriteStrings(hid_t loc, const char name[], PetscInt n, char *const *s)
{
  hid_t   t, sp, d;
  hsize_t dim = (hsize_t)n;

  PetscFunctionBeginUser;
  H5Call(t = H5Tcopy(H5T_C_S1), "%s: cannot make a string type", name);
  H5Call(H5Tset_size(t, H5T_VARIABLE), "%s: cannot make a string type", name);
  H5Call(H5Tset_cset(t, H5T_CSET_UTF8), "%s: cannot make a string type", name);
  H5Call(sp = H5Screate_simple(1, &dim, NULL), "%s: cannot make a dataspace", name);
  H5Call(d = H5Dcreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "cannot create %s", name);
  if (n) H5Call(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, s), "cannot write %s", name);
  PetscCall(CsH5Close(&d, name));
  PetscCall(CsH5Close(&sp, name));
  PetscCall(CsH5Close(&t, name));
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5WriteArray(hid_t loc, const char name[], hid_t memtype, int rank, const hsize_t dims[], const void *buf)
{
  hid_t sp, d;

  PetscFunctionBeginUser;
  H5Call(sp = H5Screate_simple(rank, dims, NULL), "%s: cannot make a dataspace", name);
  H5Call(d = H5Dcreate2(loc, name, memtype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "cannot create %s", name);
  H5Call(H5Dwrite(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), "cannot write %s", name);
  PetscCall(CsH5Close(&d, name));
  PetscCall(CsH5Close(&sp, name));
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5ReadArray(hid_t loc, const char what[], const char name[], hid_t memtype, int rank, hsize_t dims[],
                             void *buf)
{
  hid_t     d;
  hsize_t   fd[H5S_MAX_RANK];
  int       nd;
  PetscBool e;

  PetscFunctionBeginUser;
  PetscCall(CsH5Exists(loc, name, &e));
  PetscCheck(e, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: no dataset %s", what, name);
  H5Call(d = H5Dopen2(loc, name, H5P_DEFAULT), "%s: cannot open %s", what, name);
  PetscCall(CsH5Shape(d, what, &nd, fd, H5S_MAX_RANK));
  PetscCheck(nd == rank, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: %s has %d dimensions, expected %d", what, name, nd, rank);
  for (int i = 0; i < rank; i++) {
    PetscCheck(!dims[i] || dims[i] == fd[i], PETSC_COMM_SELF, CS_ERR_INPUT,
               "%s: %s has extent %llu in dimension %d, expected %llu", what, name, (unsigned long long)fd[i], i,
               (unsigned long long)dims[i]);
    dims[i] = fd[i];
  }
  if (buf) H5Call(H5Dread(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), "%s: cannot read %s", what, name);
  PetscCall(CsH5Close(&d, what));
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5WriteAttrInt64(hid_t obj, const char attr[], int64_t v)
{
  hid_t s, a;

  PetscFunctionBeginUser;
  H5Call(s = H5Screate(H5S_SCALAR), "attribute %s: cannot make a dataspace", attr);
  H5Call(a = H5Acreate2(obj, attr, H5T_NATIVE_INT64, s, H5P_DEFAULT, H5P_DEFAULT), "cannot create attribute %s", attr);
  H5Call(H5Awrite(a, H5T_NATIVE_INT64, &v), "cannot write attribute %s", attr);
  PetscCall(CsH5Close(&a, attr));
  PetscCall(CsH5Close(&s, attr));
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5ReadAttrInt64Array(hid_t obj, const char what[], const char attr[], int n, int64_t v[])
{
  hid_t       a, t;
  hssize_t    np;
  H5T_class_t cls;

  PetscFunctionBeginUser;
  H5Call(a = H5Aopen(obj, attr, H5P_DEFAULT), "%s: cannot open attribute %s", what, attr);
  H5Call(t = H5Aget_type(a), "%s: cannot get the type of attribute %s", what, attr);
  H5Call(cls = H5Tget_class(t), "%s: cannot get the type class of attribute %s", what, attr);
  PetscCall(CsH5Close(&t, attr));
  PetscCall(AttrPoints(a, attr, &np));
  PetscCheck(np == n && cls == H5T_INTEGER, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: attribute %s is not %d integers", what, attr, n);
  H5Call(H5Aread(a, H5T_NATIVE_INT64, v), "%s: cannot read attribute %s", what, attr);
  PetscCall(CsH5Close(&a, attr));
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5ReadAttrInt64(hid_t obj, const char attr[], int64_t *v)
{
  hid_t       a, t;
  htri_t      e;
  hssize_t    n;
  H5T_class_t cls;

  PetscFunctionBeginUser;
  H5Call(e = H5Aexists(obj, attr), "cannot query attribute %s", attr);
  PetscCheck(e, PETSC_COMM_SELF, CS_ERR_INPUT, "missing attribute %s", attr);
  H5Call(a = H5Aopen(obj, attr, H5P_DEFAULT), "cannot open attribute %s", attr);
  H5Call(t = H5Aget_type(a), "cannot get the type of attribute %s", attr);
  H5Call(cls = H5Tget_class(t), "cannot get the type class of attribute %s", attr);
  PetscCall(CsH5Close(&t, attr));
  PetscCall(AttrPoints(a, attr, &n));
  PetscCheck(n == 1 && (cls == H5T_INTEGER || cls == H5T_FLOAT), PETSC_COMM_SELF, CS_ERR_INPUT, "attribute %s is not a single number",
             attr);
  H5Call(H5Aread(a, H5T_NATIVE_INT64, v), "cannot read attribute %s", attr);
  PetscCall(CsH5Close(&a, attr));
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5ReadArrayFinite(hid_t loc, const char what[], const char name[], hid_t memtype, int rank, hsize_t dims[], void *buf)
{
  size_t    n = 1;
  PetscBool f32;

  PetscFunctionBeginUser;
  PetscCall(CsH5ReadArray(loc, what, name, memtype, rank, dims, buf));
  if (!buf) PetscFunctionReturn(0);
  {
    htri_t eq;
    H5Call(eq = H5Tequal(memtype, H5T_NATIVE_FLOAT), "%s: %s: cannot compare types", what, name);
    f32 = eq > 0 ? PETSC_TRUE : PETSC_FALSE;
  }
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
