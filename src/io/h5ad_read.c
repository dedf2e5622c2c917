/* Parallel .h5ad reader: every rank reads only its own block of cells. See include/cellshift/h5ad.h.

   Failures on one rank (a bad row in its block, a read error) are agreed on collectively at the end of each phase
   (CsAgreeCode), so every rank stops with the same message and no rank waits in a collective. */
#include <cellshift/h5ad.h>
#include <cellshift/h5util.h>
#include <math.h>
#include <sys/stat.h>

/* Largest number of elements moved by one H5Dread (keeps every MPI-IO request far below 2 GiB). */
#define CS_READ_SLICE ((hsize_t)1 << 26)

typedef struct {
  const char *path;    /* file name, for messages */
  char        mat[300];/* "X" or "layers/NAME" */
  hid_t       file;
} Reader;

/* Read elements [start, start+count) of a 1-D dataset into buf converting to memtype, in slices. */
static PetscErrorCode Read1D(hid_t d, const char what[], hid_t memtype, size_t esize, hsize_t start, hsize_t count, void *buf)
{
  hid_t fs;

  PetscFunctionBeginUser;
  H5Call(fs = H5Dget_space(d), "%s: cannot get the dataspace", what);
  for (hsize_t off = 0; off < count; off += CS_READ_SLICE) {
    hsize_t n = count - off < CS_READ_SLICE ? count - off : CS_READ_SLICE, s = start + off;
    hid_t   ms = H5Screate_simple(1, &n, NULL);
    H5Call(H5Sselect_hyperslab(fs, H5S_SELECT_SET, &s, NULL, &n, NULL), "%s: bad selection", what);
    H5Call(H5Dread(d, memtype, ms, fs, H5P_DEFAULT, (char *)buf + off * esize), "%s: cannot read elements %llu..%llu",
           what, (unsigned long long)s, (unsigned long long)(s + n));
    H5Sclose(ms);
  }
  H5Sclose(fs);
  PetscFunctionReturn(0);
}

static PetscErrorCode Length1D(hid_t d, const char what[], hsize_t *n)
{
  hid_t fs;

  PetscFunctionBeginUser;
  H5Call(fs = H5Dget_space(d), "%s: cannot get the dataspace", what);
  PetscCheck(H5Sget_simple_extent_ndims(fs) == 1, PETSC_COMM_SELF, CS_ERR_INPUT, "%s is not one-dimensional", what);
  H5Sget_simple_extent_dims(fs, n, NULL);
  H5Sclose(fs);
  PetscFunctionReturn(0);
}

static PetscErrorCode OpenDataset(Reader *r, const char name[], hid_t *d)
{
  PetscBool e;

  PetscFunctionBeginUser;
  PetscCall(CsH5Exists(r->file, name, &e));
  PetscCheck(e, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: missing dataset /%s", r->path, name);
  H5Call(*d = H5Dopen2(r->file, name, H5P_DEFAULT), "%s: cannot open /%s", r->path, name);
  PetscFunctionReturn(0);
}

/* --------------------------------------------------------------------------------------------------------------
   Row validation: shared by the CSR, CSC and dense paths. Sorts unsorted rows; reports the first bad global row. */
static int CmpIdx(const void *a, const void *b)
{
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

static PetscErrorCode ValidateRows(const char what[], PetscInt rstart, PetscInt ngenes, CsCSR *A)
{
  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < A->nrows; i++) {
    int64_t   a = A->indptr[i], b = A->indptr[i + 1];
    PetscBool sorted = PETSC_TRUE;
    for (int64_t k = a; k < b; k++) {
      PetscCheck(A->indices[k] >= 0 && A->indices[k] < ngenes, PETSC_COMM_SELF, CS_ERR_INPUT,
                 "%s: row %" PetscInt_FMT " has column index %d outside [0, %" PetscInt_FMT ")", what, rstart + i,
                 (int)A->indices[k], ngenes);
      PetscCheck(isfinite(A->data[k]), PETSC_COMM_SELF, CS_ERR_INPUT, "%s: row %" PetscInt_FMT " has a non-finite value (%s) at column %d",
                 what, rstart + i, isnan(A->data[k]) ? "NaN" : A->data[k] > 0 ? "+Inf" : "-Inf", (int)A->indices[k]);
      if (k > a && A->indices[k] <= A->indices[k - 1]) sorted = PETSC_FALSE;
    }
    if (!sorted) { /* sort (index, value) pairs of the row, then look for duplicates */
      int64_t n = b - a;
      int32_t (*pairs)[2];
      PetscCall(PetscMalloc1(n, &pairs));
      for (int64_t k = 0; k < n; k++) {
        pairs[k][0] = A->indices[a + k];
        memcpy(&pairs[k][1], &A->data[a + k], sizeof(float));
      }
      qsort(pairs, (size_t)n, sizeof(pairs[0]), CmpIdx);
      for (int64_t k = 0; k < n; k++) {
        A->indices[a + k] = pairs[k][0];
        memcpy(&A->data[a + k], &pairs[k][1], sizeof(float));
      }
      PetscCall(PetscFree(pairs));
      for (int64_t k = a + 1; k < b; k++)
        PetscCheck(A->indices[k] != A->indices[k - 1], PETSC_COMM_SELF, CS_ERR_INPUT,
                   "%s: row %" PetscInt_FMT " has column index %d twice", what, rstart + i, (int)A->indices[k]);
    }
  }
  PetscFunctionReturn(0);
}

/* --------------------------------------------------------------------------------------------------------------
   Layout: encoding and shape of the matrix. */
typedef struct {
  char     enc[16]; /* csr, csc, dense */
  PetscInt n, g;    /* cells, genes as the file declares them */
} Layout;

static PetscErrorCode ReadLayout(Reader *r, Layout *L)
{
  PetscBool  e, found;
  H5O_info_t info;
  char       buf[64];

  PetscFunctionBeginUser;
  PetscCall(CsH5Exists(r->file, r->mat, &e));
  PetscCheck(e, PETSC_COMM_SELF, CS_ERR_INPUT, "%s has no /%s%s", r->path, r->mat,
             strncmp(r->mat, "layers/", 7) ? "" : " (check -layer)");
  H5Call(H5Oget_info_by_name2(r->file, r->mat, &info, H5O_INFO_BASIC, H5P_DEFAULT), "%s: cannot query /%s", r->path, r->mat);
  if (info.type == H5O_TYPE_DATASET) {
    hid_t   d = H5Dopen2(r->file, r->mat, H5P_DEFAULT), s;
    hsize_t dims[2];
    H5Call(d, "%s: cannot open /%s", r->path, r->mat);
    s = H5Dget_space(d);
    PetscCheck(H5Sget_simple_extent_ndims(s) == 2, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: dense /%s is not a 2-D array", r->path, r->mat);
    H5Sget_simple_extent_dims(s, dims, NULL);
    H5Sclose(s), H5Dclose(d);
    PetscCall(PetscStrncpy(L->enc, "dense", sizeof(L->enc)));
    L->n = (PetscInt)dims[0], L->g = (PetscInt)dims[1];
    PetscFunctionReturn(0);
  }
  PetscCheck(info.type == H5O_TYPE_GROUP, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: /%s is neither a group nor a dataset", r->path, r->mat);
  {
    hid_t   grp = H5Gopen2(r->file, r->mat, H5P_DEFAULT), a;
    int64_t shape[2];
    H5Call(grp, "%s: cannot open /%s", r->path, r->mat);
    PetscCall(CsH5ReadAttrString(grp, "encoding-type", buf, sizeof(buf), &found));
    if (!found) PetscCall(CsH5ReadAttrString(grp, "h5sparse_format", buf, sizeof(buf), &found)); /* anndata < 0.8 */
    if (!strcmp(buf, "csr_matrix") || !strcmp(buf, "csr")) PetscCall(PetscStrncpy(L->enc, "csr", sizeof(L->enc)));
    else if (!strcmp(buf, "csc_matrix") || !strcmp(buf, "csc")) PetscCall(PetscStrncpy(L->enc, "csc", sizeof(L->enc)));
    else SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s: /%s has unknown sparse encoding '%s'", r->path, r->mat, buf);
    const char *sa = H5Aexists(grp, "shape") > 0 ? "shape" : "h5sparse_shape";
    PetscCheck(H5Aexists(grp, sa) > 0, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: /%s has no shape attribute", r->path, r->mat);
    H5Call(a = H5Aopen(grp, sa, H5P_DEFAULT), "%s: cannot open /%s shape", r->path, r->mat);
    H5Call(H5Aread(a, H5T_NATIVE_INT64, shape), "%s: cannot read /%s shape", r->path, r->mat);
    H5Aclose(a), H5Gclose(grp);
    L->n = (PetscInt)shape[0], L->g = (PetscInt)shape[1];
  }
  PetscFunctionReturn(0);
}

/* --------------------------------------------------------------------------------------------------------------
   CSR: rows balanced by non-zeros. */

/* Local: indptr[r0..r1] (inclusive), checked: length n+1, starts at 0, monotone, ends at nnz = len(indices) =
   len(data). The blocks of neighbouring ranks overlap by one entry, so together they check the whole array. */
static PetscErrorCode CSRReadIndptrBlock(Reader *r, PetscInt n, PetscInt r0, PetscInt r1, int64_t *ip, int64_t *nnz)
{
  char    what[400], name[320];
  hid_t   d;
  hsize_t len, nidx, ndat;

  PetscFunctionBeginUser;
  PetscCall(PetscSNPrintf(what, sizeof(what), "%s: /%s/indptr", r->path, r->mat));
  PetscCall(PetscSNPrintf(name, sizeof(name), "%s/indptr", r->mat));
  PetscCall(OpenDataset(r, name, &d));
  PetscCall(Length1D(d, what, &len));
  PetscCheck(len == (hsize_t)n + 1, PETSC_COMM_SELF, CS_ERR_INPUT, "%s has %llu entries, expected %" PetscInt_FMT " (cells + 1)",
             what, (unsigned long long)len, n + 1);
  PetscCall(Read1D(d, what, H5T_NATIVE_INT64, sizeof(int64_t), (hsize_t)n, 1, nnz));
  PetscCall(Read1D(d, what, H5T_NATIVE_INT64, sizeof(int64_t), (hsize_t)r0, (hsize_t)(r1 - r0 + 1), ip));
  H5Dclose(d);
  PetscCall(PetscSNPrintf(name, sizeof(name), "%s/indices", r->mat));
  PetscCall(OpenDataset(r, name, &d));
  PetscCall(Length1D(d, name, &nidx));
  H5Dclose(d);
  PetscCall(PetscSNPrintf(name, sizeof(name), "%s/data", r->mat));
  PetscCall(OpenDataset(r, name, &d));
  PetscCall(Length1D(d, name, &ndat));
  H5Dclose(d);
  PetscCheck((hsize_t)*nnz == nidx && nidx == ndat, PETSC_COMM_SELF, CS_ERR_INPUT,
             "%s: indptr ends at %lld but indices has %llu and data %llu entries", what, (long long)*nnz,
             (unsigned long long)nidx, (unsigned long long)ndat);
  PetscCheck(r0 > 0 || ip[0] == 0, PETSC_COMM_SELF, CS_ERR_INPUT, "%s does not start at 0 (row 0)", what);
  for (PetscInt i = r0; i < r1; i++) {
    PetscCheck(ip[i - r0 + 1] >= ip[i - r0], PETSC_COMM_SELF, CS_ERR_INPUT, "%s decreases at row %" PetscInt_FMT, what, i);
    PetscCheck(ip[i - r0 + 1] <= *nnz, PETSC_COMM_SELF, CS_ERR_INPUT, "%s exceeds the %lld non-zeros at row %" PetscInt_FMT,
               what, (long long)*nnz, i);
  }
  PetscFunctionReturn(0);
}

/* Local: rows [b0, b1) of a checked CSR matrix into A. */
static PetscErrorCode CSRReadRows(Reader *r, PetscInt b0, PetscInt b1, PetscInt ngenes, CsCSR *A)
{
  char    what[400], name[320];
  hid_t   d;
  int64_t off, cnt;

  PetscFunctionBeginUser;
  A->nrows = b1 - b0, A->ncols = ngenes;
  PetscCall(PetscMalloc1(A->nrows + 1, &A->indptr));
  PetscCall(PetscSNPrintf(what, sizeof(what), "%s: /%s", r->path, r->mat));
  PetscCall(PetscSNPrintf(name, sizeof(name), "%s/indptr", r->mat));
  PetscCall(OpenDataset(r, name, &d));
  PetscCall(Read1D(d, what, H5T_NATIVE_INT64, sizeof(int64_t), (hsize_t)b0, (hsize_t)(A->nrows + 1), A->indptr));
  H5Dclose(d);
  off = A->indptr[0], cnt = A->indptr[A->nrows] - off;
  for (PetscInt i = 0; i <= A->nrows; i++) A->indptr[i] -= off;
  PetscCall(PetscMalloc1(cnt + 1, &A->indices));
  PetscCall(PetscMalloc1(cnt + 1, &A->data));
  PetscCall(PetscSNPrintf(name, sizeof(name), "%s/indices", r->mat));
  PetscCall(OpenDataset(r, name, &d));
  PetscCall(Read1D(d, what, H5T_NATIVE_INT32, sizeof(int32_t), (hsize_t)off, (hsize_t)cnt, A->indices));
  H5Dclose(d);
  PetscCall(PetscSNPrintf(name, sizeof(name), "%s/data", r->mat));
  PetscCall(OpenDataset(r, name, &d));
  PetscCall(Read1D(d, what, H5T_NATIVE_FLOAT, sizeof(float), (hsize_t)off, (hsize_t)cnt, A->data));
  H5Dclose(d);
  PetscCall(ValidateRows(what, b0, ngenes, A));
  PetscFunctionReturn(0);
}

static PetscErrorCode ReadCSR(Reader *r, MPI_Comm comm, const Layout *L, PetscInt *rstart, CsCSR *A)
{
  PetscMPIInt    rank, size;
  PetscInt       r0, r1, *bound;
  int64_t       *ip, nnz = 0;
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  r0 = (PetscInt)((int64_t)L->n * rank / size), r1 = (PetscInt)((int64_t)L->n * (rank + 1) / size);
  PetscCall(PetscMalloc1(r1 - r0 + 1, &ip));
  ierr = CSRReadIndptrBlock(r, L->n, r0, r1, ip, &nnz);
  PetscCall(CsAgreeCode(comm, ierr, "invalid sparse matrix"));
  /* Boundary k is the first row whose start reaches k/size of the non-zeros; each rank finds the boundaries
     that fall in its block and a MIN-reduction combines them. Empty matrices fall back to equal rows. */
  PetscCall(PetscMalloc1(size + 1, &bound));
  for (PetscMPIInt k = 0; k <= size; k++) {
    int64_t  t  = nnz * k / size;
    PetscInt lo = 0, hi = r1 - r0;
    bound[k] = L->n;
    if (k == 0) bound[k] = 0;
    else if (k == size) bound[k] = L->n;
    else if (!nnz) bound[k] = (PetscInt)((int64_t)L->n * k / size);
    else if (t >= ip[0] && t <= ip[r1 - r0]) {
      while (lo < hi) { /* first local i with ip[i] >= t */
        PetscInt mid = (lo + hi) / 2;
        if (ip[mid] >= t) hi = mid;
        else lo = mid + 1;
      }
      bound[k] = r0 + lo;
    }
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, bound, size + 1, MPIU_INT, MPI_MIN, comm));
  *rstart = bound[rank];
  ierr    = CSRReadRows(r, bound[rank], bound[rank + 1], L->g, A);
  PetscCall(CsAgreeCode(comm, ierr, "invalid sparse matrix"));
  PetscCall(PetscFree(bound));
  PetscCall(PetscFree(ip));
  PetscFunctionReturn(0);
}

/* --------------------------------------------------------------------------------------------------------------
   CSC: each rank streams the whole matrix column by column and keeps the entries of its equal row block. */
static PetscErrorCode ReadCSCLocal(Reader *r, const Layout *L, PetscInt r0, PetscInt r1, CsCSR *A)
{
  char     what[400], name[320];
  hid_t    di, dd, dp;
  hsize_t  len, nidx;
  int64_t *cp, nnz, kept = 0, chunk = (int64_t)CS_READ_SLICE;
  int32_t *idx;
  float   *val;
  int64_t *count;

  PetscFunctionBeginUser;
  PetscCall(PetscSNPrintf(what, sizeof(what), "%s: /%s", r->path, r->mat));
  PetscCall(PetscSNPrintf(name, sizeof(name), "%s/indptr", r->mat));
  PetscCall(OpenDataset(r, name, &dp));
  PetscCall(Length1D(dp, what, &len));
  PetscCheck(len == (hsize_t)L->g + 1, PETSC_COMM_SELF, CS_ERR_INPUT, "%s/indptr has %llu entries, expected %" PetscInt_FMT " (genes + 1)",
             what, (unsigned long long)len, L->g + 1);
  PetscCall(PetscMalloc1(L->g + 1, &cp));
  PetscCall(Read1D(dp, what, H5T_NATIVE_INT64, sizeof(int64_t), 0, len, cp));
  H5Dclose(dp);
  nnz = cp[L->g];
  PetscCall(PetscSNPrintf(name, sizeof(name), "%s/indices", r->mat));
  PetscCall(OpenDataset(r, name, &di));
  PetscCall(Length1D(di, what, &nidx));
  PetscCheck(cp[0] == 0 && (hsize_t)nnz == nidx, PETSC_COMM_SELF, CS_ERR_INPUT, "%s/indptr does not span the %llu indices", what,
             (unsigned long long)nidx);
  for (PetscInt j = 0; j < L->g; j++)
    PetscCheck(cp[j + 1] >= cp[j], PETSC_COMM_SELF, CS_ERR_INPUT, "%s/indptr decreases at column %" PetscInt_FMT, what, j);
  PetscCall(PetscSNPrintf(name, sizeof(name), "%s/data", r->mat));
  PetscCall(OpenDataset(r, name, &dd));
  if (chunk > nnz) chunk = nnz;
  PetscCall(PetscMalloc1(chunk + 1, &idx));
  PetscCall(PetscMalloc1(chunk + 1, &val));
  PetscCall(PetscCalloc1(r1 - r0 + 1, &count));
  /* Two passes over the stream: count the entries of each local row, then place them (columns ascend, so rows
     come out sorted). */
  A->nrows = r1 - r0, A->ncols = L->g;
  PetscCall(PetscMalloc1(A->nrows + 1, &A->indptr));
  for (int pass = 0; pass < 2; pass++) {
    PetscInt j = 0;
    if (pass == 1) {
      A->indptr[0] = 0;
      for (PetscInt i = 0; i < A->nrows; i++) A->indptr[i + 1] = A->indptr[i] + count[i], count[i] = 0;
      kept = A->indptr[A->nrows];
      PetscCall(PetscMalloc1(kept + 1, &A->indices));
      PetscCall(PetscMalloc1(kept + 1, &A->data));
    }
    for (int64_t off = 0; off < nnz; off += chunk) {
      int64_t n = nnz - off < chunk ? nnz - off : chunk;
      PetscCall(Read1D(di, what, H5T_NATIVE_INT32, sizeof(int32_t), (hsize_t)off, (hsize_t)n, idx));
      if (pass == 1) PetscCall(Read1D(dd, what, H5T_NATIVE_FLOAT, sizeof(float), (hsize_t)off, (hsize_t)n, val));
      for (int64_t k = 0; k < n; k++) {
        int32_t row = idx[k];
        while (cp[j + 1] <= off + k) j++;
        PetscCheck(row >= 0 && row < L->n, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: column %" PetscInt_FMT " has row index %d outside [0, %" PetscInt_FMT ")",
                   what, j, (int)row, L->n);
        if (row < r0 || row >= r1) continue;
        if (pass == 0) count[row - r0]++;
        else {
          int64_t at       = A->indptr[row - r0] + count[row - r0]++;
          A->indices[at]   = (int32_t)j;
          A->data[at]      = val[k];
        }
      }
    }
  }
  H5Dclose(di), H5Dclose(dd);
  PetscCall(PetscFree(count));
  PetscCall(PetscFree(idx));
  PetscCall(PetscFree(val));
  PetscCall(PetscFree(cp));
  PetscCall(ValidateRows(what, r0, L->g, A));
  PetscFunctionReturn(0);
}

/* --------------------------------------------------------------------------------------------------------------
   Dense: equal row blocks read by hyperslab, zeros dropped. */
static PetscErrorCode ReadDenseLocal(Reader *r, const Layout *L, PetscInt r0, PetscInt r1, CsCSR *A)
{
  char     what[400];
  hid_t    d, fs, ms;
  PetscInt rows = (PetscInt)(CS_READ_SLICE / (hsize_t)(L->g ? L->g : 1));
  float   *buf;
  int64_t  nnz = 0, cap;

  PetscFunctionBeginUser;
  PetscCall(PetscSNPrintf(what, sizeof(what), "%s: /%s", r->path, r->mat));
  if (rows < 1) rows = 1;
  if (rows > r1 - r0) rows = r1 - r0;
  A->nrows = r1 - r0, A->ncols = L->g;
  PetscCall(PetscMalloc1(A->nrows + 1, &A->indptr));
  cap = (int64_t)A->nrows * L->g / 4 + 16;
  PetscCall(PetscMalloc1(cap, &A->indices));
  PetscCall(PetscMalloc1(cap, &A->data));
  PetscCall(PetscMalloc1((size_t)(rows ? rows : 1) * L->g, &buf));
  H5Call(d = H5Dopen2(r->file, r->mat, H5P_DEFAULT), "%s: cannot open", what);
  H5Call(fs = H5Dget_space(d), "%s: no dataspace", what);
  A->indptr[0] = 0;
  for (PetscInt i0 = r0; i0 < r1; i0 += rows) {
    PetscInt n     = r1 - i0 < rows ? r1 - i0 : rows;
    hsize_t  st[2] = {(hsize_t)i0, 0}, ct[2] = {(hsize_t)n, (hsize_t)L->g};
    ms             = H5Screate_simple(2, ct, NULL);
    H5Call(H5Sselect_hyperslab(fs, H5S_SELECT_SET, st, NULL, ct, NULL), "%s: bad selection", what);
    H5Call(H5Dread(d, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, buf), "%s: cannot read rows %" PetscInt_FMT "..", what, i0);
    H5Sclose(ms);
    for (PetscInt i = 0; i < n; i++) {
      for (PetscInt j = 0; j < L->g; j++) {
        float v = buf[(size_t)i * L->g + j];
        if (v == 0) continue;
        if (nnz == cap) {
          cap = 2 * cap;
          PetscCall(PetscRealloc(sizeof(int32_t) * cap, &A->indices));
          PetscCall(PetscRealloc(sizeof(float) * cap, &A->data));
        }
        A->indices[nnz] = (int32_t)j, A->data[nnz++] = v;
      }
      A->indptr[i0 - r0 + i + 1] = nnz;
    }
  }
  H5Sclose(fs), H5Dclose(d);
  PetscCall(PetscFree(buf));
  PetscCall(ValidateRows(what, r0, L->g, A));
  PetscFunctionReturn(0);
}

/* --------------------------------------------------------------------------------------------------------------
   var and obs. */

/* The dataframe index: the dataset named by the group's _index attribute (default "_index"). */
static PetscErrorCode IndexName(Reader *r, const char group[], char name[], size_t len)
{
  hid_t     g;
  PetscBool found;

  PetscFunctionBeginUser;
  H5Call(g = H5Gopen2(r->file, group, H5P_DEFAULT), "%s: cannot open /%s", r->path, group);
  PetscCall(CsH5ReadAttrString(g, "_index", name, len, &found));
  if (!found) PetscCall(PetscStrncpy(name, "_index", len));
  H5Gclose(g);
  PetscFunctionReturn(0);
}

static PetscErrorCode ReadVar(Reader *r, PetscInt ngenes, char ***genes)
{
  char    idx[256], name[300], what[600];
  hid_t   d;
  hsize_t n;

  PetscFunctionBeginUser;
  PetscCall(IndexName(r, "var", idx, sizeof(idx)));
  PetscCall(PetscSNPrintf(name, sizeof(name), "var/%s", idx));
  PetscCall(PetscSNPrintf(what, sizeof(what), "%s: /%s", r->path, name));
  PetscCall(OpenDataset(r, name, &d));
  PetscCall(Length1D(d, what, &n));
  PetscCheck(n == (hsize_t)ngenes, PETSC_COMM_SELF, CS_ERR_INPUT, "%s has %llu genes but the matrix has %" PetscInt_FMT, what,
             (unsigned long long)n, ngenes);
  PetscCall(CsH5ReadStrings(d, what, 0, n, genes));
  H5Dclose(d);
  PetscFunctionReturn(0);
}

/* The obs column names, for the message when a key is missing. */
static PetscErrorCode ObsColumnNames(Reader *r, char buf[], size_t len)
{
  hid_t   g;
  hsize_t n = 0;

  PetscFunctionBeginUser;
  buf[0] = 0;
  H5Call(g = H5Gopen2(r->file, "obs", H5P_DEFAULT), "%s: cannot open /obs", r->path);
  {
    H5G_info_t info;
    H5Call(H5Gget_info(g, &info), "%s: cannot list /obs", r->path);
    n = info.nlinks;
  }
  for (hsize_t i = 0; i < n; i++) {
    char nm[256];
    if (H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, nm, sizeof(nm), H5P_DEFAULT) < 0) continue;
    if (!strcmp(nm, "__categories")) continue;
    if (buf[0]) PetscCall(PetscStrlcat(buf, ", ", len));
    PetscCall(PetscStrlcat(buf, nm, len));
  }
  H5Gclose(g);
  PetscFunctionReturn(0);
}

/* Categories stored as numbers become their decimal text. */
static PetscErrorCode ReadCategories(hid_t d, const char what[], PetscInt *ncat, char ***cats)
{
  hsize_t n;
  hid_t   t;

  PetscFunctionBeginUser;
  PetscCall(Length1D(d, what, &n));
  H5Call(t = H5Dget_type(d), "%s: no type", what);
  if (H5Tget_class(t) == H5T_STRING) PetscCall(CsH5ReadStrings(d, what, 0, n, cats));
  else {
    double *v;
    PetscCall(PetscMalloc1(n + 1, &v));
    PetscCall(PetscCalloc1(n + 1, cats));
    PetscCall(Read1D(d, what, H5T_NATIVE_DOUBLE, sizeof(double), 0, n, v));
    for (hsize_t i = 0; i < n; i++) {
      char s[64];
      PetscCall(PetscSNPrintf(s, sizeof(s), "%.15g", v[i]));
      PetscCall(PetscStrallocpy(s, &(*cats)[i]));
    }
    PetscCall(PetscFree(v));
  }
  H5Tclose(t);
  *ncat = (PetscInt)n;
  PetscFunctionReturn(0);
}

/* Local part of one obs column. String arrays are returned as raw local strings (*raw) to be turned into
   categories collectively. */
static PetscErrorCode ReadObsLocal(Reader *r, const char key[], PetscInt nglobal, PetscInt rstart, PetscInt nlocal,
                                   CsObsColumn *col, char ***raw)
{
  char       name[300], what[600];
  H5O_info_t info;

  PetscFunctionBeginUser;
  *raw = NULL;
  PetscCall(PetscStrncpy(col->name, key, sizeof(col->name)));
  PetscCall(PetscSNPrintf(name, sizeof(name), "obs/%s", key));
  PetscCall(PetscSNPrintf(what, sizeof(what), "%s: /%s", r->path, name));
  H5Call(H5Oget_info_by_name2(r->file, name, &info, H5O_INFO_BASIC, H5P_DEFAULT), "%s: cannot query", what);
  if (info.type == H5O_TYPE_GROUP) { /* categorical: codes + categories */
    char    cname[320], cwhat[700];
    hid_t   d;
    hsize_t n;
    int32_t *codes;
    col->kind = CS_OBS_CATEGORICAL;
    PetscCall(PetscSNPrintf(cname, sizeof(cname), "%s/categories", name));
    PetscCall(PetscSNPrintf(cwhat, sizeof(cwhat), "%s: /%s", r->path, cname));
    PetscCall(OpenDataset(r, cname, &d));
    PetscCall(ReadCategories(d, cwhat, &col->ncat, &col->cats));
    H5Dclose(d);
    PetscCall(PetscSNPrintf(cname, sizeof(cname), "%s/codes", name));
    PetscCall(PetscSNPrintf(cwhat, sizeof(cwhat), "%s: /%s", r->path, cname));
    PetscCall(OpenDataset(r, cname, &d));
    PetscCall(Length1D(d, cwhat, &n));
    PetscCheck(n == (hsize_t)nglobal, PETSC_COMM_SELF, CS_ERR_INPUT, "%s has %llu entries but there are %" PetscInt_FMT " cells",
               cwhat, (unsigned long long)n, nglobal);
    PetscCall(PetscMalloc1(nlocal + 1, &codes));
    PetscCall(PetscMalloc1(nlocal + 1, &col->codes));
    PetscCall(Read1D(d, cwhat, H5T_NATIVE_INT32, sizeof(int32_t), (hsize_t)rstart, (hsize_t)nlocal, codes));
    H5Dclose(d);
    for (PetscInt i = 0; i < nlocal; i++) {
      PetscCheck(codes[i] >= -1 && codes[i] < col->ncat, PETSC_COMM_SELF, CS_ERR_INPUT,
                 "%s: cell %" PetscInt_FMT " has code %d but there are %" PetscInt_FMT " categories", cwhat, rstart + i,
                 (int)codes[i], col->ncat);
      col->codes[i] = codes[i];
    }
    PetscCall(PetscFree(codes));
  } else {
    hid_t       d, t;
    hsize_t     n;
    H5T_class_t cls;
    PetscCall(OpenDataset(r, name, &d));
    PetscCall(Length1D(d, what, &n));
    PetscCheck(n == (hsize_t)nglobal, PETSC_COMM_SELF, CS_ERR_INPUT, "%s has %llu entries but there are %" PetscInt_FMT " cells",
               what, (unsigned long long)n, nglobal);
    H5Call(t = H5Dget_type(d), "%s: no type", what);
    cls = H5Tget_class(t);
    if (cls == H5T_STRING) {
      col->kind = CS_OBS_CATEGORICAL;
      PetscCall(CsH5ReadStrings(d, what, (hsize_t)rstart, (hsize_t)nlocal, raw));
    } else if (cls == H5T_ENUM) { /* h5py booleans */
      int8_t *b;
      col->kind = CS_OBS_CATEGORICAL;
      col->ncat = 2;
      PetscCall(PetscMalloc1(2, &col->cats));
      PetscCall(PetscStrallocpy("False", &col->cats[0]));
      PetscCall(PetscStrallocpy("True", &col->cats[1]));
      PetscCall(PetscMalloc1(nlocal + 1, &b));
      PetscCall(PetscMalloc1(nlocal + 1, &col->codes));
      {
        hid_t mt = H5Tcopy(t);
        PetscCall(Read1D(d, what, mt, sizeof(int8_t), (hsize_t)rstart, (hsize_t)nlocal, b));
        H5Tclose(mt);
      }
      for (PetscInt i = 0; i < nlocal; i++) col->codes[i] = b[i] ? 1 : 0;
      PetscCall(PetscFree(b));
    } else if (cls == H5T_INTEGER || cls == H5T_FLOAT) {
      col->kind = CS_OBS_NUMERIC;
      PetscCall(PetscMalloc1(nlocal + 1, &col->values));
      PetscCall(Read1D(d, what, H5T_NATIVE_DOUBLE, sizeof(double), (hsize_t)rstart, (hsize_t)nlocal, col->values));
    } else SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s has a type cellshift cannot read", what);
    H5Tclose(t), H5Dclose(d);
  }
  PetscFunctionReturn(0);
}

/* Collective: categories of a string array = the sorted unique values over all ranks. */
static PetscErrorCode StringsToCategories(MPI_Comm comm, PetscInt nlocal, char **raw, CsObsColumn *col)
{
  PetscFunctionBeginUser;
  PetscCall(CsStrAllUnion(comm, nlocal, raw, &col->ncat, &col->cats));
  PetscCall(PetscMalloc1(nlocal + 1, &col->codes));
  for (PetscInt i = 0; i < nlocal; i++) col->codes[i] = CsStrBsearch(raw[i], col->cats, col->ncat);
  PetscFunctionReturn(0);
}

/* --------------------------------------------------------------------------------------------------------------
   Driver. */
static PetscErrorCode OpenFile(MPI_Comm comm, const char path[], hid_t *file)
{
  PetscMPIInt rank;
  int         state = 0; /* 0 ok, 1 missing, 2 not HDF5 */
  struct stat st;
  hid_t       fapl;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  if (!rank) {
    if (stat(path, &st) || !S_ISREG(st.st_mode)) state = 1;
    else if (H5Fis_hdf5(path) <= 0) state = 2;
  }
  PetscCallMPI(MPI_Bcast(&state, 1, MPI_INT, 0, comm));
  PetscCheck(state != 1, comm, CS_ERR_INPUT, "cannot open %s: no such file", path);
  PetscCheck(state != 2, comm, CS_ERR_INPUT, "%s is not an HDF5 (.h5ad) file", path);
  fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Call(H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL), "cannot set MPI-IO access for %s", path);
  *file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
  H5Pclose(fapl);
  CsCheckAll(comm, *file >= 0, "cannot open %s with parallel HDF5", path);
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5adRead(MPI_Comm comm, const char path[], const char layer[], PetscInt nkeys, char *const keys[],
                          const PetscBool required[], CsH5adBlock *b)
{
  PetscMPIInt    rank, size;
  Reader         r;
  Layout         L;
  PetscErrorCode ierr;
  char           cols[CS_MSG_LEN];

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(b, sizeof(*b)));
  PetscCall(PetscLogEventBegin(CS_EVENT_READ, 0, 0, 0, 0));
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  r.path = path;
  if (layer && layer[0]) PetscCall(PetscSNPrintf(r.mat, sizeof(r.mat), "layers/%s", layer));
  else PetscCall(PetscStrncpy(r.mat, "X", sizeof(r.mat)));
  PetscCall(OpenFile(comm, path, &r.file));

  ierr = ReadLayout(&r, &L);
  PetscCall(CsAgreeCode(comm, ierr, "cannot read the matrix"));
  CsCheckAll(comm, L.n >= 0 && L.g > 0, "%s: /%s has shape (%" PetscInt_FMT ", %" PetscInt_FMT ")", r.path, r.mat, L.n, L.g);
  PetscCall(PetscStrncpy(b->encoding, L.enc, sizeof(b->encoding)));
  b->nglobal = L.n, b->ngenes = L.g;

  if (!strcmp(L.enc, "csr")) PetscCall(ReadCSR(&r, comm, &L, &b->rstart, &b->X));
  else {
    PetscInt r0 = (PetscInt)((int64_t)L.n * rank / size), r1 = (PetscInt)((int64_t)L.n * (rank + 1) / size);
    b->rstart = r0;
    ierr      = !strcmp(L.enc, "csc") ? ReadCSCLocal(&r, &L, r0, r1, &b->X) : ReadDenseLocal(&r, &L, r0, r1, &b->X);
    PetscCall(CsAgreeCode(comm, ierr, "invalid matrix"));
  }
  b->nlocal = b->X.nrows;

  ierr = ReadVar(&r, L.g, &b->genes);
  PetscCall(CsAgreeCode(comm, ierr, "cannot read the gene names"));

  PetscCall(PetscCalloc1(nkeys + 1, &b->obs));
  b->nobs = 0;
  for (PetscInt k = 0; k < nkeys; k++) {
    CsObsColumn *col = &b->obs[b->nobs];
    char       **raw = NULL, name[300];
    PetscBool    exists;
    PetscCall(PetscSNPrintf(name, sizeof(name), "obs/%s", keys[k]));
    PetscCall(CsH5Exists(r.file, name, &exists));
    if (!exists) {
      if (required[k]) {
        ierr = ObsColumnNames(&r, cols, sizeof(cols));
        PetscCall(CsAgreeCode(comm, ierr, "cannot read obs"));
      }
      CsCheckAll(comm, !required[k], "%s: obs has no column '%s' (columns: %s)", r.path, keys[k], cols);
      continue;
    }
    ierr = ReadObsLocal(&r, keys[k], b->nglobal, b->rstart, b->nlocal, col, &raw);
    PetscCall(CsAgreeCode(comm, ierr, "cannot read an obs column"));
    if (raw) {
      PetscCall(StringsToCategories(comm, b->nlocal, raw, col));
      PetscCall(CsStrArrayDestroy(b->nlocal, &raw));
    }
    b->nobs++;
  }
  H5Fclose(r.file);
  PetscCall(PetscLogEventEnd(CS_EVENT_READ, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

CsObsColumn *CsH5adBlockGetObs(const CsH5adBlock *b, const char key[])
{
  for (PetscInt k = 0; k < b->nobs; k++)
    if (!strcmp(b->obs[k].name, key)) return &b->obs[k];
  return NULL;
}

PetscErrorCode CsH5adBlockFree(CsH5adBlock *b)
{
  PetscFunctionBeginUser;
  PetscCall(CsCSRFree(&b->X));
  PetscCall(CsStrArrayDestroy(b->ngenes, &b->genes));
  for (PetscInt k = 0; k < b->nobs; k++) {
    CsObsColumn *c = &b->obs[k];
    PetscCall(CsStrArrayDestroy(c->ncat, &c->cats));
    PetscCall(PetscFree(c->codes));
    PetscCall(PetscFree(c->values));
  }
  PetscCall(PetscFree(b->obs));
  PetscCall(PetscMemzero(b, sizeof(*b)));
  PetscFunctionReturn(0);
}
