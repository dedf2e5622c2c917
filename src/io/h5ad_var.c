/* One named var column of an .h5ad (a string array or a categorical of strings), read whole: var is one row per
   gene, small next to the matrix. See include/cellshift/h5ad.h. */
#include <cellshift/h5ad.h>
#include <cellshift/h5util.h>

static PetscErrorCode Length(hid_t d, const char what[], hsize_t *n)
{
  hid_t fs;

  PetscFunctionBeginUser;
  H5Call(fs = H5Dget_space(d), "%s: cannot get the dataspace", what);
  PetscCheck(H5Sget_simple_extent_ndims(fs) == 1, PETSC_COMM_SELF, CS_ERR_INPUT, "%s is not one-dimensional", what);
  H5Call(H5Sget_simple_extent_dims(fs, n, NULL), "%s: cannot get the size", what);
  H5Sclose(fs);
  PetscFunctionReturn(0);
}

/* Rank 0's read of var/<key>: *found false when the file has no such column; values[ngenes] otherwise. */
static PetscErrorCode ReadLocal(const char path[], const char key[], PetscInt ngenes, PetscBool *found, char ***values)
{
  hid_t      f, d, t;
  char       name[300], what[PETSC_MAX_PATH_LEN + 320];
  H5O_info_t info;
  hsize_t    n;

  PetscFunctionBeginUser;
  *found = PETSC_FALSE;
  H5Call(f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), "cannot open %s", path);
  PetscCall(PetscSNPrintf(name, sizeof(name), "var/%s", key));
  PetscCall(PetscSNPrintf(what, sizeof(what), "%s: /%s", path, name));
  PetscCall(CsH5Exists(f, name, found));
  if (!*found) {
    H5Fclose(f);
    PetscFunctionReturn(0);
  }
  H5Call(H5Oget_info_by_name2(f, name, &info, H5O_INFO_BASIC, H5P_DEFAULT), "%s: cannot query", what);
  if (info.type == H5O_TYPE_GROUP) { /* categorical: codes into categories */
    char     sub[320];
    char   **cats;
    int32_t *codes;
    hsize_t  ncat;
    PetscCall(PetscSNPrintf(sub, sizeof(sub), "%s/categories", name));
    H5Call(d = H5Dopen2(f, sub, H5P_DEFAULT), "%s: no categories", what);
    PetscCall(Length(d, what, &ncat));
    H5Call(t = H5Dget_type(d), "%s: no type", what);
    PetscCheck(H5Tget_class(t) == H5T_STRING, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: the categories are not strings", what);
    H5Tclose(t);
    PetscCall(CsH5ReadStrings(d, what, 0, ncat, &cats));
    H5Dclose(d);
    PetscCall(PetscSNPrintf(sub, sizeof(sub), "%s/codes", name));
    H5Call(d = H5Dopen2(f, sub, H5P_DEFAULT), "%s: no codes", what);
    PetscCall(Length(d, what, &n));
    PetscCheck(n == (hsize_t)ngenes, PETSC_COMM_SELF, CS_ERR_INPUT, "%s has %llu entries but there are %" PetscInt_FMT " genes", what,
               (unsigned long long)n, ngenes);
    PetscCall(PetscMalloc1(n + 1, &codes));
    H5Call(H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, codes), "%s: cannot read the codes", what);
    H5Dclose(d);
    PetscCall(PetscMalloc1(n + 1, values));
    for (hsize_t i = 0; i < n; i++) {
      PetscCheck(codes[i] >= -1 && codes[i] < (int32_t)ncat, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: gene %llu has code %d of %llu categories",
                 what, (unsigned long long)i, (int)codes[i], (unsigned long long)ncat);
      PetscCall(PetscStrallocpy(codes[i] >= 0 ? cats[codes[i]] : "", &(*values)[i]));
    }
    PetscCall(PetscFree(codes));
    PetscCall(CsStrArrayDestroy((PetscInt)ncat, &cats));
  } else {
    H5Call(d = H5Dopen2(f, name, H5P_DEFAULT), "%s: cannot open", what);
    PetscCall(Length(d, what, &n));
    PetscCheck(n == (hsize_t)ngenes, PETSC_COMM_SELF, CS_ERR_INPUT, "%s has %llu entries but there are %" PetscInt_FMT " genes", what,
               (unsigned long long)n, ngenes);
    H5Call(t = H5Dget_type(d), "%s: no type", what);
    PetscCheck(H5Tget_class(t) == H5T_STRING, PETSC_COMM_SELF, CS_ERR_INPUT, "%s is not a column of strings", what);
    H5Tclose(t);
    PetscCall(CsH5ReadStrings(d, what, 0, n, values));
    H5Dclose(d);
  }
  H5Fclose(f);
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5adReadVarColumn(MPI_Comm comm, const char path[], const char key[], PetscInt ngenes, PetscBool *found, char ***values)
{
  PetscMPIInt    rank;
  PetscErrorCode ierr = 0;
  int            have = 0;

  PetscFunctionBeginUser;
  *values = NULL;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  if (!rank) {
    ierr = ReadLocal(path, key, ngenes, found, values);
    have = !ierr && *found;
  }
  PetscCall(CsAgreeCode(comm, ierr, "cannot read a var column"));
  PetscCallMPI(MPI_Bcast(&have, 1, MPI_INT, 0, comm));
  *found = have ? PETSC_TRUE : PETSC_FALSE;
  if (!have) PetscFunctionReturn(0);
  {
    int64_t len = 0;
    char   *buf, *p;
    if (!rank)
      for (PetscInt i = 0; i < ngenes; i++) len += (int64_t)strlen((*values)[i]) + 1;
    PetscCallMPI(MPI_Bcast(&len, 1, MPI_INT64_T, 0, comm));
    PetscCheck(len < PETSC_MPI_INT_MAX, comm, PETSC_ERR_SUP, "%s: var/%s is too large for one broadcast", path, key);
    PetscCall(PetscMalloc1(len + 1, &buf));
    p = buf;
    if (!rank)
      for (PetscInt i = 0; i < ngenes; i++) {
        size_t l = strlen((*values)[i]) + 1;
        memcpy(p, (*values)[i], l), p += l;
      }
    PetscCallMPI(MPI_Bcast(buf, (PetscMPIInt)len, MPI_CHAR, 0, comm));
    if (rank) {
      PetscCall(PetscMalloc1(ngenes + 1, values));
      for (PetscInt i = 0, off = 0; i < ngenes; i++) {
        PetscCall(PetscStrallocpy(buf + off, &(*values)[i]));
        off += (PetscInt)strlen(buf + off) + 1;
      }
    }
    PetscCall(PetscFree(buf));
  }
  PetscFunctionReturn(0);
}
