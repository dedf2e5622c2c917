/* Parallel .h5ad reader: every rank reads only its own block of cells. See include/cellshift/h5ad.h.

   Failures on one rank (a bad row in its block, a read error) are agreed on collectively at the end of each phase
   (CsAgreeCode), so every rank stops with the same message and no rank waits in a collective. Elements of 1-D
   datasets move through CsIORead1D (gzip chunks inflated on the rank's threads, see h5chunk.c). */
#include <cellshift/h5ad.h>
#include "ioimpl.h"
#include <math.h>

/* Most elements one dense read moves (keeps every MPI-IO request far below 2 GiB). */
#define CS_READ_SLICE ((hsize_t)1 << 26)
/* Listed rows (CsH5adStreamReadList) whose gap to the previous one is at most this are read with it as one range
   through HDF5: a read call costs about as much as reading tens of rows (validation cells scattered through the
   file came one call a row). Only the listed rows are converted (dense) or copied (CSR). */
#define RUN_GAP 32

typedef struct {
  const char *path;     /* file name, for messages */
  char        mat[300]; /* "X" or "layers/NAME" */
  CsIOFile    io;
  hid_t       file;     /* io.file */
  float      *buf;      /* dense rows as read, before the zeros are dropped: kept from read to read (a stream reads a
                           block at a time, and a fresh buffer of megabytes is fresh pages to fault in each time) */
  size_t      bufn;     /* its floats */
  CsH5adRowFn rowfn;    /* a stream's transform of every row read (CsH5adStreamSetRowFn), or NULL */
  void       *rowctx;
} Reader;

static PetscErrorCode Read1D(Reader *r, hid_t d, const char what[], hid_t memtype, size_t esize, hsize_t start, hsize_t count,
                             void *buf)
{
  PetscFunctionBeginUser;
  PetscCall(CsIORead1D(&r->io, d, what, memtype, esize, start, count, buf));
  PetscFunctionReturn(0);
}

static PetscErrorCode Length1D(hid_t d, const char what[], hsize_t *n)
{
  int nd;

  PetscFunctionBeginUser;
  PetscCall(CsH5Shape(d, what, &nd, n, 1));
  PetscCheck(nd == 1, PETSC_COMM_SELF, CS_ERR_INPUT, "%s is not one-dimensional", what);
  PetscFunctionReturn(0);
}

static PetscErrorCode OpenDataset(Reader *r, const char name[], hid_t *d)
{
  PetscBool  e;
  H5O_info_t info;

  PetscFunctionBeginUser;
  PetscCall(CsH5Exists(r->file, name, &e));
  PetscCheck(e, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: missing dataset /%s", r->path, name);
  H5Call(H5Oget_info_by_name2(r->file, name, &info, H5O_INFO_BASIC, H5P_DEFAULT), "%s: cannot query /%s", r->path, name);
  PetscCheck(info.type == H5O_TYPE_DATASET, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: /%s is not a dataset", r->path, name);
  H5Call(*d = H5Dopen2(r->file, name, r->io.dapl), "%s: cannot open /%s", r->path, name);
  PetscFunctionReturn(0);
}

/* "byte strings (|S5)", "values of type bool", ...: what a dataset holds, for messages. */
static void DescribeType(hid_t t, char buf[], size_t len)
{
  char name[64];

  CsH5TypeName(t, name, sizeof(name));
  if (H5Tget_class(t) == H5T_STRING) snprintf(buf, len, "%s strings (%s)", H5Tis_variable_str(t) > 0 ? "variable-length" : "byte", name);
  else snprintf(buf, len, "values of type %s", name);
}

/* The elements of d must be numbers (integers or floats); *wide tells a float type wider than float32, whose values
   may overflow the float32 the matrix is read as. */
static PetscErrorCode NumericType(hid_t d, const char what[], PetscBool *wide)
{
  hid_t       t;
  H5T_class_t cls;
  size_t      size;
  char        desc[96];

  PetscFunctionBeginUser;
  H5Call(t = H5Dget_type(d), "%s: cannot get the type", what);
  H5Call(cls = H5Tget_class(t), "%s: cannot get the type class", what);
  size = H5Tget_size(t);
  DescribeType(t, desc, sizeof(desc));
  PetscCall(CsH5Close(&t, what));
  PetscCheck(cls == H5T_INTEGER || cls == H5T_FLOAT, PETSC_COMM_SELF, CS_ERR_INPUT, "%s holds %s, not numbers", what, desc);
  if (wide) *wide = cls == H5T_FLOAT && size > 4 ? PETSC_TRUE : PETSC_FALSE;
  PetscFunctionReturn(0);
}

/* --------------------------------------------------------------------------------------------------------------
   Row validation: shared by the CSR, CSC and dense paths. Sorts unsorted rows; reports the first bad global row. */
static int CmpIdx(const void *a, const void *b)
{
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

/* A float64 value beyond float32's range, marked by the reader's conversion (wide: the file stores floats wider
   than float32, so the mark cannot be a NaN of the file). */
static PetscBool Overflowed(float v, PetscBool wide)
{
  uint32_t bits;

  memcpy(&bits, &v, sizeof(bits));
  return wide && (bits & 0x7fffffffu) == CS_IO_OVERFLOW_BITS ? PETSC_TRUE : PETSC_FALSE;
}

static PetscErrorCode SortRow(const char what[], PetscInt row, int32_t *idx, float *val, int64_t n)
{
  int32_t (*pairs)[2];

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(n, &pairs));
  for (int64_t k = 0; k < n; k++) {
    pairs[k][0] = idx[k];
    memcpy(&pairs[k][1], &val[k], sizeof(float));
  }
  qsort(pairs, (size_t)n, sizeof(pairs[0]), CmpIdx);
  for (int64_t k = 0; k < n; k++) {
    idx[k] = pairs[k][0];
    memcpy(&val[k], &pairs[k][1], sizeof(float));
  }
  PetscCall(PetscFree(pairs));
  for (int64_t k = 1; k < n; k++)
    PetscCheck(idx[k] != idx[k - 1], PETSC_COMM_SELF, CS_ERR_INPUT, "%s: row %" PetscInt_FMT " has column index %d twice", what, row,
               (int)idx[k]);
  PetscFunctionReturn(0);
}

/* Does a row need the exact checks: an index outside [0, ngenes), a value that is not finite, or indices that do not
   increase? Branch-free, so that the compiler vectorises it: a valid row costs one pass. */
static PetscBool RowSuspect(const int32_t *idx, const float *val, int64_t n, PetscInt ngenes)
{
  unsigned bad = 0;

  for (int64_t k = 0; k < n; k++) {
    uint32_t bits;
    memcpy(&bits, &val[k], sizeof(bits));
    bad |= (uint32_t)idx[k] >= (uint32_t)ngenes; /* a negative index wraps to a large one */
    bad |= (bits & 0x7f800000u) == 0x7f800000u;   /* exponent all ones: Inf or NaN */
  }
  for (int64_t k = 1; k < n; k++) bad |= idx[k] <= idx[k - 1];
  return bad ? PETSC_TRUE : PETSC_FALSE;
}

/* The exact checks of one row, in the order of its entries, then the sort of an unsorted row. */
static PetscErrorCode ValidateRow(const char what[], PetscInt row, PetscInt ngenes, PetscBool wide, int32_t *idx, float *val, int64_t n)
{
  PetscBool sorted = PETSC_TRUE;

  PetscFunctionBeginUser;
  for (int64_t k = 0; k < n; k++) {
    float v = val[k];
    PetscCheck(idx[k] >= 0 && idx[k] < ngenes, PETSC_COMM_SELF, CS_ERR_INPUT,
               "%s: row %" PetscInt_FMT " has column index %d outside [0, %" PetscInt_FMT ")", what, row, (int)idx[k], ngenes);
    if (!isfinite(v)) {
      PetscCheck(!Overflowed(v, wide), PETSC_COMM_SELF, CS_ERR_INPUT,
                 "%s: row %" PetscInt_FMT " has a value at column %d that overflows float32 (a float64 beyond +-3.4e38)", what, row,
                 (int)idx[k]);
      SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s: row %" PetscInt_FMT " has a non-finite value (%s) at column %d", what, row,
              isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf", (int)idx[k]);
    }
    if (k > 0 && idx[k] <= idx[k - 1]) sorted = PETSC_FALSE;
  }
  if (!sorted) PetscCall(SortRow(what, row, idx, val, n));
  PetscFunctionReturn(0);
}

/* Rows [from, from + count) of A; A's row from + i is row rowid[i] of the file (rstart + i without rowid), for the
   messages. */
static PetscErrorCode ValidateRows(const char what[], PetscInt rstart, const PetscInt rowid[], PetscInt from, PetscInt count, PetscInt ngenes,
                                   PetscBool wide, CsCSR *A)
{
  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < count; i++) {
    int64_t a = A->indptr[from + i], n = A->indptr[from + i + 1] - a;
    if (RowSuspect(A->indices + a, A->data + a, n, ngenes))
      PetscCall(ValidateRow(what, rowid ? rowid[i] : rstart + i, ngenes, wide, A->indices + a, A->data + a, n));
  }
  PetscFunctionReturn(0);
}

/* --------------------------------------------------------------------------------------------------------------
   Layout: encoding and shape of the matrix. */
typedef struct {
  char      enc[16]; /* csr, csc, dense */
  PetscInt  n, g;    /* cells, genes as the file declares them */
  PetscBool wide;    /* the values are stored as floats wider than float32 */
} Layout;

/* Cells and genes from a declared shape, checked to fit the reader's index types. */
static PetscErrorCode SetShape(Reader *r, int64_t n, int64_t g, Layout *L)
{
  PetscFunctionBeginUser;
  PetscCheck(n >= 0 && n < PETSC_MAX_INT && g > 0 && g < INT32_MAX, PETSC_COMM_SELF, CS_ERR_INPUT,
             "%s: /%s has shape (%lld, %lld)%s", r->path, r->mat, (long long)n, (long long)g,
             n >= PETSC_MAX_INT || g >= INT32_MAX ? ", beyond what cellshift reads (2^31 cells or genes)" : "");
  L->n = (PetscInt)n, L->g = (PetscInt)g;
  PetscFunctionReturn(0);
}

static PetscErrorCode DenseLayout(Reader *r, Layout *L)
{
  hid_t   d;
  hsize_t dims[2];
  int     nd;
  char    what[400];

  PetscFunctionBeginUser;
  PetscCall(PetscSNPrintf(what, sizeof(what), "%s: dense /%s", r->path, r->mat));
  H5Call(d = H5Dopen2(r->file, r->mat, H5P_DEFAULT), "%s: cannot open /%s", r->path, r->mat);
  PetscCall(CsH5Shape(d, what, &nd, dims, 2));
  PetscCheck(nd == 2, PETSC_COMM_SELF, CS_ERR_INPUT, "%s is not a 2-D array", what);
  PetscCall(NumericType(d, what, &L->wide));
  PetscCall(CsH5Close(&d, what));
  PetscCall(PetscStrncpy(L->enc, "dense", sizeof(L->enc)));
  PetscCall(SetShape(r, dims[0] > (hsize_t)INT64_MAX ? -1 : (int64_t)dims[0], dims[1] > (hsize_t)INT64_MAX ? -1 : (int64_t)dims[1], L));
  PetscFunctionReturn(0);
}

/* The two-integer shape attribute of a sparse group ("h5sparse_shape" before anndata 0.7). */
static PetscErrorCode SparseShape(Reader *r, hid_t grp, int64_t shape[2])
{
  const char *names[2] = {"shape", "h5sparse_shape"}, *sa = NULL;
  char        what[400];

  PetscFunctionBeginUser;
  for (int k = 0; k < 2 && !sa; k++) {
    htri_t e;
    H5Call(e = H5Aexists(grp, names[k]), "%s: cannot query /%s %s", r->path, r->mat, names[k]);
    if (e) sa = names[k];
  }
  PetscCheck(sa, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: /%s has no shape attribute", r->path, r->mat);
  PetscCall(PetscSNPrintf(what, sizeof(what), "%s: /%s", r->path, r->mat));
  PetscCall(CsH5ReadAttrInt64Array(grp, what, sa, 2, shape));
  PetscFunctionReturn(0);
}

static PetscErrorCode SparseLayout(Reader *r, Layout *L)
{
  hid_t     grp, d;
  int64_t   shape[2];
  char      buf[64], name[320], what[400];
  PetscBool found;

  PetscFunctionBeginUser;
  H5Call(grp = H5Gopen2(r->file, r->mat, H5P_DEFAULT), "%s: cannot open /%s", r->path, r->mat);
  PetscCall(CsH5ReadAttrString(grp, "encoding-type", buf, sizeof(buf), &found));
  if (!found) PetscCall(CsH5ReadAttrString(grp, "h5sparse_format", buf, sizeof(buf), &found)); /* anndata < 0.8 */
  if (!strcmp(buf, "csr_matrix") || !strcmp(buf, "csr")) PetscCall(PetscStrncpy(L->enc, "csr", sizeof(L->enc)));
  else if (!strcmp(buf, "csc_matrix") || !strcmp(buf, "csc")) PetscCall(PetscStrncpy(L->enc, "csc", sizeof(L->enc)));
  else SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s: /%s has unknown sparse encoding '%s'", r->path, r->mat, buf);
  PetscCall(SparseShape(r, grp, shape));
  PetscCall(CsH5Close(&grp, r->path));
  PetscCall(SetShape(r, shape[0], shape[1], L));
  /* The element types of the three arrays, before anything is read. */
  for (int k = 0; k < 3; k++) {
    const char *part[3] = {"data", "indices", "indptr"};
    PetscCall(PetscSNPrintf(name, sizeof(name), "%s/%s", r->mat, part[k]));
    PetscCall(PetscSNPrintf(what, sizeof(what), "%s: /%s", r->path, name));
    PetscCall(OpenDataset(r, name, &d));
    PetscCall(NumericType(d, what, k == 0 ? &L->wide : NULL));
    PetscCall(CsH5Close(&d, what));
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode ReadLayout(Reader *r, Layout *L)
{
  PetscBool  e;
  H5O_info_t info;

  PetscFunctionBeginUser;
  PetscCall(CsH5Exists(r->file, r->mat, &e));
  PetscCheck(e, PETSC_COMM_SELF, CS_ERR_INPUT, "%s has no /%s%s", r->path, r->mat, strncmp(r->mat, "layers/", 7) ? "" : " (check -layer)");
  H5Call(H5Oget_info_by_name2(r->file, r->mat, &info, H5O_INFO_BASIC, H5P_DEFAULT), "%s: cannot query /%s", r->path, r->mat);
  if (info.type == H5O_TYPE_DATASET) PetscCall(DenseLayout(r, L));
  else if (info.type == H5O_TYPE_GROUP) PetscCall(SparseLayout(r, L));
  else SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s: /%s is neither a group nor a dataset", r->path, r->mat);
  PetscFunctionReturn(0);
}

/* --------------------------------------------------------------------------------------------------------------
   CSR: rows balanced by non-zeros. */

/* Local: indptr[r0..r1] (inclusive) into *ip (allocated here), checked: length n+1, starts at 0, monotone, ends at
   nnz = len(indices) = len(data). The blocks of neighbouring ranks overlap by one entry, so together they check the
   whole array. */
static PetscErrorCode CSRReadIndptrBlock(Reader *r, PetscInt n, PetscInt r0, PetscInt r1, int64_t **ip, int64_t *nnz)
{
  char    what[400], name[320];
  hid_t   d;
  hsize_t len, nidx, ndat;

  PetscFunctionBeginUser;
  PetscCall(PetscSNPrintf(what, sizeof(what), "%s: /%s/indptr", r->path, r->mat));
  PetscCall(PetscSNPrintf(name, sizeof(name), "%s/indptr", r->mat));
  PetscCall(OpenDataset(r, name, &d));
  PetscCall(Length1D(d, what, &len));
  PetscCheck(len == (hsize_t)n + 1, PETSC_COMM_SELF, CS_ERR_INPUT, "%s has %llu entries, expected %" PetscInt_FMT " (cells + 1)", what,
             (unsigned long long)len, n + 1);
  PetscCall(PetscMalloc1(r1 - r0 + 1, ip));
  PetscCall(Read1D(r, d, what, H5T_NATIVE_INT64, sizeof(int64_t), (hsize_t)n, 1, nnz));
  PetscCall(Read1D(r, d, what, H5T_NATIVE_INT64, sizeof(int64_t), (hsize_t)r0, (hsize_t)(r1 - r0 + 1), *ip));
  PetscCall(CsH5Close(&d, what));
  PetscCall(PetscSNPrintf(name, sizeof(name), "%s/indices", r->mat));
  PetscCall(OpenDataset(r, name, &d));
  PetscCall(Length1D(d, name, &nidx));
  PetscCall(CsH5Close(&d, what));
  PetscCall(PetscSNPrintf(name, sizeof(name), "%s/data", r->mat));
  PetscCall(OpenDataset(r, name, &d));
  PetscCall(Length1D(d, name, &ndat));
  PetscCall(CsH5Close(&d, what));
  PetscCheck(*nnz >= 0 && (hsize_t)*nnz == nidx && nidx == ndat, PETSC_COMM_SELF, CS_ERR_INPUT,
             "%s: indptr ends at %lld but indices has %llu and data %llu entries", what, (long long)*nnz, (unsigned long long)nidx,
             (unsigned long long)ndat);
  PetscCheck(r0 > 0 || (*ip)[0] == 0, PETSC_COMM_SELF, CS_ERR_INPUT, "%s does not start at 0 (row 0)", what);
  for (PetscInt i = r0; i < r1; i++) {
    PetscCheck((*ip)[i - r0 + 1] >= (*ip)[i - r0], PETSC_COMM_SELF, CS_ERR_INPUT, "%s decreases at row %" PetscInt_FMT, what, i);
    PetscCheck((*ip)[i - r0 + 1] <= *nnz, PETSC_COMM_SELF, CS_ERR_INPUT, "%s exceeds the %lld non-zeros at row %" PetscInt_FMT, what,
               (long long)*nnz, i);
  }
  PetscFunctionReturn(0);
}

/* Local: rows [b0, b1) of a checked CSR matrix into A. */
static PetscErrorCode CSRReadRows(Reader *r, PetscInt b0, PetscInt b1, const Layout *L, CsCSR *A)
{
  char    what[400], name[320];
  hid_t   d;
  int64_t off, cnt, cap;

  PetscFunctionBeginUser;
  A->nrows = b1 - b0, A->ncols = L->g;
  PetscCall(PetscMalloc1(A->nrows + 1, &A->indptr));
  PetscCall(PetscSNPrintf(what, sizeof(what), "%s: /%s", r->path, r->mat));
  PetscCall(PetscSNPrintf(name, sizeof(name), "%s/indptr", r->mat));
  PetscCall(OpenDataset(r, name, &d));
  PetscCall(Read1D(r, d, what, H5T_NATIVE_INT64, sizeof(int64_t), (hsize_t)b0, (hsize_t)(A->nrows + 1), A->indptr));
  PetscCall(CsH5Close(&d, what));
  off = A->indptr[0], cnt = A->indptr[A->nrows] - off;
  for (PetscInt i = 0; i <= A->nrows; i++) A->indptr[i] -= off;
  PetscCall(CsCSRReserve(A, cnt + 1, cnt + 1, &cap));
  PetscCall(PetscSNPrintf(name, sizeof(name), "%s/indices", r->mat));
  PetscCall(OpenDataset(r, name, &d));
  PetscCall(Read1D(r, d, what, H5T_NATIVE_INT32, sizeof(int32_t), (hsize_t)off, (hsize_t)cnt, A->indices));
  PetscCall(CsH5Close(&d, what));
  PetscCall(PetscSNPrintf(name, sizeof(name), "%s/data", r->mat));
  PetscCall(OpenDataset(r, name, &d));
  PetscCall(Read1D(r, d, what, H5T_NATIVE_FLOAT, sizeof(float), (hsize_t)off, (hsize_t)cnt, A->data));
  PetscCall(CsH5Close(&d, what));
  PetscCall(ValidateRows(what, b0, NULL, 0, A->nrows, L->g, L->wide, A));
  PetscFunctionReturn(0);
}

/* Local: the non-zeros of rows [b0, b1) (two entries of indptr). */
static PetscErrorCode CSRCountRows(Reader *r, PetscInt b0, PetscInt b1, int64_t *nnz)
{
  char    what[400], name[320];
  hid_t   d;
  int64_t a = 0, b = 0;

  PetscFunctionBeginUser;
  PetscCall(PetscSNPrintf(what, sizeof(what), "%s: /%s/indptr", r->path, r->mat));
  PetscCall(PetscSNPrintf(name, sizeof(name), "%s/indptr", r->mat));
  PetscCall(OpenDataset(r, name, &d));
  PetscCall(Read1D(r, d, what, H5T_NATIVE_INT64, sizeof(int64_t), (hsize_t)b0, 1, &a));
  PetscCall(Read1D(r, d, what, H5T_NATIVE_INT64, sizeof(int64_t), (hsize_t)b1, 1, &b));
  PetscCall(CsH5Close(&d, what));
  *nnz = b - a;
  PetscFunctionReturn(0);
}

/* Collective: boundary k is the first row whose start reaches k/size of the non-zeros; each rank finds the
   boundaries that fall in its block [r0, r1] (ip = its indptr entries) and a MIN-reduction combines them. Empty
   matrices fall back to equal rows. */
static PetscErrorCode CSRBalance(MPI_Comm comm, PetscInt n, PetscInt r0, PetscInt r1, const int64_t *ip, int64_t nnz, PetscInt *bound)
{
  PetscMPIInt size;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_size(comm, &size));
  for (PetscMPIInt k = 0; k <= size; k++) {
    int64_t  t  = nnz * k / size;
    PetscInt lo = 0, hi = r1 - r0;
    bound[k] = n;
    if (k == 0) bound[k] = 0;
    else if (k == size) bound[k] = n;
    else if (!nnz) bound[k] = (PetscInt)((int64_t)n * k / size);
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
  PetscFunctionReturn(0);
}

/* Collective: the nnz-balanced block of this rank; with rows its rows into A, else only their count in A->nrows and
   their non-zeros in *nnzlocal (a streamed read). */
static PetscErrorCode ReadCSR(Reader *r, MPI_Comm comm, const Layout *L, PetscBool rows, PetscInt *rstart, CsCSR *A, int64_t *nnzlocal)
{
  PetscMPIInt    rank, size;
  PetscInt       r0, r1, *bound;
  int64_t       *ip = NULL, nnz = 0;
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  r0 = (PetscInt)((int64_t)L->n * rank / size), r1 = (PetscInt)((int64_t)L->n * (rank + 1) / size);
  ierr = CSRReadIndptrBlock(r, L->n, r0, r1, &ip, &nnz);
  PetscCall(CsAgreeCode(comm, ierr, "invalid sparse matrix"));
  PetscCall(PetscMalloc1(size + 1, &bound));
  PetscCall(CSRBalance(comm, L->n, r0, r1, ip, nnz, bound));
  *rstart = bound[rank];
  if (rows) {
    ierr = CSRReadRows(r, bound[rank], bound[rank + 1], L, A);
    PetscCall(CsAgreeCode(comm, ierr, "invalid sparse matrix"));
    *nnzlocal = A->indptr[A->nrows];
  } else {
    ierr = CSRCountRows(r, bound[rank], bound[rank + 1], nnzlocal);
    PetscCall(CsAgreeCode(comm, ierr, "invalid sparse matrix"));
    A->nrows = bound[rank + 1] - bound[rank], A->ncols = L->g;
  }
  PetscCall(PetscFree(bound));
  PetscCall(PetscFree(ip));
  PetscFunctionReturn(0);
}

/* --------------------------------------------------------------------------------------------------------------
   CSC: each rank streams the whole matrix column by column and keeps the entries of its equal row block. */

/* The column pointers, checked: genes + 1 entries, from 0 to len(indices) = len(data), monotone. */
static PetscErrorCode CSCReadIndptr(Reader *r, const Layout *L, const char what[], int64_t **cp, int64_t *nnz)
{
  char    name[320];
  hid_t   d;
  hsize_t len, nidx, ndat;

  PetscFunctionBeginUser;
  PetscCall(PetscSNPrintf(name, sizeof(name), "%s/indptr", r->mat));
  PetscCall(OpenDataset(r, name, &d));
  PetscCall(Length1D(d, what, &len));
  PetscCheck(len == (hsize_t)L->g + 1, PETSC_COMM_SELF, CS_ERR_INPUT, "%s/indptr has %llu entries, expected %" PetscInt_FMT " (genes + 1)",
             what, (unsigned long long)len, L->g + 1);
  PetscCall(PetscMalloc1(L->g + 1, cp));
  PetscCall(Read1D(r, d, what, H5T_NATIVE_INT64, sizeof(int64_t), 0, len, *cp));
  PetscCall(CsH5Close(&d, what));
  *nnz = (*cp)[L->g];
  PetscCall(PetscSNPrintf(name, sizeof(name), "%s/indices", r->mat));
  PetscCall(OpenDataset(r, name, &d));
  PetscCall(Length1D(d, what, &nidx));
  PetscCall(CsH5Close(&d, what));
  PetscCall(PetscSNPrintf(name, sizeof(name), "%s/data", r->mat));
  PetscCall(OpenDataset(r, name, &d));
  PetscCall(Length1D(d, what, &ndat));
  PetscCall(CsH5Close(&d, what));
  PetscCheck((*cp)[0] == 0 && *nnz >= 0 && (hsize_t)*nnz == nidx && nidx == ndat, PETSC_COMM_SELF, CS_ERR_INPUT,
             "%s/indptr does not span the %llu indices and %llu values", what, (unsigned long long)nidx, (unsigned long long)ndat);
  for (PetscInt j = 0; j < L->g; j++)
    PetscCheck((*cp)[j + 1] >= (*cp)[j], PETSC_COMM_SELF, CS_ERR_INPUT, "%s/indptr decreases at column %" PetscInt_FMT, what, j);
  PetscFunctionReturn(0);
}

static PetscErrorCode ReadCSCLocal(Reader *r, const Layout *L, PetscInt r0, PetscInt r1, CsCSR *A)
{
  char     what[400], name[320];
  hid_t    di, dd;
  int64_t *cp, nnz, kept = 0, chunk = (int64_t)CS_READ_SLICE;
  int32_t *idx;
  float   *val;
  int64_t *count;

  PetscFunctionBeginUser;
  PetscCall(PetscSNPrintf(what, sizeof(what), "%s: /%s", r->path, r->mat));
  PetscCall(CSCReadIndptr(r, L, what, &cp, &nnz));
  PetscCall(PetscSNPrintf(name, sizeof(name), "%s/indices", r->mat));
  PetscCall(OpenDataset(r, name, &di));
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
      PetscCall(Read1D(r, di, what, H5T_NATIVE_INT32, sizeof(int32_t), (hsize_t)off, (hsize_t)n, idx));
      if (pass == 1) PetscCall(Read1D(r, dd, what, H5T_NATIVE_FLOAT, sizeof(float), (hsize_t)off, (hsize_t)n, val));
      for (int64_t k = 0; k < n; k++) {
        int32_t row = idx[k];
        while (cp[j + 1] <= off + k) j++;
        PetscCheck(row >= 0 && row < L->n, PETSC_COMM_SELF, CS_ERR_INPUT,
                   "%s: column %" PetscInt_FMT " has row index %d outside [0, %" PetscInt_FMT ")", what, j, (int)row, L->n);
        if (row < r0 || row >= r1) continue;
        if (pass == 0) count[row - r0]++;
        else {
          int64_t at     = A->indptr[row - r0] + count[row - r0]++;
          A->indices[at] = (int32_t)j;
          A->data[at]    = val[k];
        }
      }
    }
  }
  PetscCall(CsH5Close(&di, what));
  PetscCall(CsH5Close(&dd, what));
  PetscCall(PetscFree(count));
  PetscCall(PetscFree(idx));
  PetscCall(PetscFree(val));
  PetscCall(PetscFree(cp));
  PetscCall(ValidateRows(what, r0, NULL, 0, A->nrows, L->g, L->wide, A));
  PetscFunctionReturn(0);
}

/* --------------------------------------------------------------------------------------------------------------
   Dense: equal row blocks read by hyperslab, zeros dropped. */

/* One dense row x (file row `row`) as row i of A (rows before it appended): zeros dropped, checked, transformed
   while it is in cache. */
static PetscErrorCode DenseRow(Reader *r, const Layout *L, const char what[], const float *x, PetscInt row, CsCSR *A, PetscInt i, int64_t *nnz,
                               int64_t *cap)
{
  int64_t a = *nnz, m;

  PetscFunctionBeginUser;
  PetscCall(CsCSRAppendDense(A, i, 1, x, nnz, cap)); /* sized from the first row's density */
  m = *nnz - a;
  if (RowSuspect(A->indices + a, A->data + a, m, L->g)) PetscCall(ValidateRow(what, row, L->g, L->wide, A->indices + a, A->data + a, m));
  if (r->rowfn) PetscCall(r->rowfn(r->rowctx, row, A->data + a, m));
  PetscFunctionReturn(0);
}

/* Local: rows of [r0, r1) appended to A from its row `at` on (A->indptr allocated for them, *nnz and *cap its
   entries so far): all of them, or only want[0..nwant) (increasing, in [r0, r1)) when want is given. Rows are read
   a range at a time (slices of CS_READ_SLICE elements): all of them, or listed rows with the gaps between them when
   these are small (RUN_GAP rows through HDF5, where a call costs about as much as reading tens of rows; none by
   pread); only the rows kept are converted, checked and transformed (Reader.rowfn), one at a time. */
static PetscErrorCode ReadDenseRows(Reader *r, const Layout *L, PetscInt r0, PetscInt r1, PetscInt nwant, const PetscInt want[], CsCSR *A,
                                    PetscInt at, int64_t *nnz, int64_t *cap)
{
  char     what[400];
  hid_t    d, fs, ms;
  PetscInt rows = (PetscInt)PetscMin(CS_READ_SLICE / (hsize_t)L->g, (hsize_t)PETSC_MAX_INT), k = 0, gap, a = r0;
  size_t   need;
  CsIOSpan span;

  PetscFunctionBeginUser;
  PetscCall(PetscSNPrintf(what, sizeof(what), "%s: /%s", r->path, r->mat));
  if (rows < 1) rows = 1;
  if (rows > r1 - r0) rows = r1 - r0;
  need = (size_t)(rows ? rows : 1) * L->g;
  if (r->bufn < need) {
    PetscCall(PetscFree(r->buf));
    PetscCall(PetscMalloc1(need, &r->buf));
    r->bufn = need;
  }
  H5Call(d = H5Dopen2(r->file, r->mat, r->io.dapl), "%s: cannot open", what);
  H5Call(fs = H5Dget_space(d), "%s: no dataspace", what);
  PetscCall(CsIOPrepareConversion(&r->io, d, what, H5T_NATIVE_FLOAT));
  PetscCall(CsIOContiguousAt(&r->io, d, what, H5T_NATIVE_FLOAT, sizeof(float), &span));
  gap = span.addr != HADDR_UNDEF ? 1 : RUN_GAP;
  while (want ? k < nwant : a < r1) {
    PetscInt  b;
    PetscBool done;
    if (!want) b = PetscMin(a + rows, r1);
    else {
      a = want[k], b = a + 1;
      for (PetscInt j = k + 1; j < nwant && want[j] - b < gap && want[j] + 1 - a <= rows; j++) b = want[j] + 1;
    }
    {
      hsize_t st[2] = {(hsize_t)a, 0}, ct[2] = {(hsize_t)(b - a), (hsize_t)L->g};
      PetscCall(CsIOReadSpan(&r->io, &span, st[0] * ct[1], ct[0] * ct[1], r->buf, &done));
      if (!done) {
        H5Call(ms = H5Screate_simple(2, ct, NULL), "%s: cannot make a dataspace", what);
        H5Call(H5Sselect_hyperslab(fs, H5S_SELECT_SET, st, NULL, ct, NULL), "%s: bad selection", what);
        H5Call(H5Dread(d, H5T_NATIVE_FLOAT, ms, fs, r->io.dxpl, r->buf), "%s: cannot read rows from %" PetscInt_FMT " on (damaged or unreadable data)", what, a);
        PetscCall(CsH5Close(&ms, what));
      }
    }
    if (!want)
      for (PetscInt i = a; i < b; i++) PetscCall(DenseRow(r, L, what, r->buf + (size_t)(i - a) * L->g, i, A, at + i - r0, nnz, cap));
    else
      for (; k < nwant && want[k] < b; k++) PetscCall(DenseRow(r, L, what, r->buf + (size_t)(want[k] - a) * L->g, want[k], A, at + k, nnz, cap));
    a = b;
  }
  PetscCall(CsH5Close(&fs, what));
  PetscCall(CsH5Close(&d, what));
  PetscFunctionReturn(0);
}

static PetscErrorCode ReadDenseLocal(Reader *r, const Layout *L, PetscInt r0, PetscInt r1, CsCSR *A)
{
  int64_t nnz = 0, cap = 0;

  PetscFunctionBeginUser;
  A->nrows = r1 - r0, A->ncols = L->g;
  PetscCall(PetscMalloc1(A->nrows + 1, &A->indptr));
  A->indptr[0] = 0;
  PetscCall(ReadDenseRows(r, L, r0, r1, 0, NULL, A, 0, &nnz, &cap));
  if (!A->indices) { /* no rows */
    PetscCall(PetscMalloc1(1, &A->indices));
    PetscCall(PetscMalloc1(1, &A->data));
  }
  PetscFunctionReturn(0);
}

/* --------------------------------------------------------------------------------------------------------------
   var and obs. */

/* The dataframe index of /group: the dataset named by the group's _index attribute (default "_index"), opened. */
static PetscErrorCode OpenIndex(Reader *r, const char group[], char name[], size_t len, hid_t *d)
{
  hid_t     g;
  PetscBool found, e;
  char      idx[256];

  PetscFunctionBeginUser;
  PetscCall(CsH5Exists(r->file, group, &e));
  PetscCheck(e, PETSC_COMM_SELF, CS_ERR_INPUT, "%s has no /%s", r->path, group);
  H5Call(g = H5Gopen2(r->file, group, H5P_DEFAULT), "%s: cannot open /%s", r->path, group);
  PetscCall(CsH5ReadAttrString(g, "_index", idx, sizeof(idx), &found));
  if (!found || !idx[0]) PetscCall(PetscStrncpy(idx, "_index", sizeof(idx)));
  PetscCall(CsH5Close(&g, r->path));
  PetscCall(PetscSNPrintf(name, len, "%s/%s", group, idx));
  PetscCall(CsH5Exists(r->file, name, &e));
  PetscCheck(e, PETSC_COMM_SELF, CS_ERR_INPUT, "%s has no index /%s (the %s names)", r->path, name, strcmp(group, "obs") ? "gene" : "cell");
  PetscCall(OpenDataset(r, name, d));
  PetscFunctionReturn(0);
}

static PetscErrorCode ReadVar(Reader *r, PetscInt ngenes, char ***genes)
{
  char    name[300], what[600];
  hid_t   d;
  hsize_t n;

  PetscFunctionBeginUser;
  PetscCall(OpenIndex(r, "var", name, sizeof(name), &d));
  PetscCall(PetscSNPrintf(what, sizeof(what), "%s: /%s", r->path, name));
  PetscCall(Length1D(d, what, &n));
  PetscCheck(n == (hsize_t)ngenes, PETSC_COMM_SELF, CS_ERR_INPUT, "%s has %llu genes but the matrix has %" PetscInt_FMT, what,
             (unsigned long long)n, ngenes);
  PetscCall(CsH5ReadStrings(d, what, 0, n, genes));
  PetscCall(CsH5Close(&d, what));
  PetscFunctionReturn(0);
}

/* The cell names must be as many as the cells (anndata refuses a file where they are not). */
static PetscErrorCode CheckObsIndex(Reader *r, PetscInt ncells)
{
  char    name[300], what[600];
  hid_t   d;
  hsize_t n;

  PetscFunctionBeginUser;
  PetscCall(OpenIndex(r, "obs", name, sizeof(name), &d));
  PetscCall(PetscSNPrintf(what, sizeof(what), "%s: /%s", r->path, name));
  PetscCall(Length1D(d, what, &n));
  PetscCheck(n == (hsize_t)ncells, PETSC_COMM_SELF, CS_ERR_INPUT, "%s has %llu cell names but /%s has %" PetscInt_FMT " cells", what,
             (unsigned long long)n, r->mat, ncells);
  PetscCall(CsH5Close(&d, what));
  PetscFunctionReturn(0);
}

/* The obs column names, for the message when a key is missing. */
static PetscErrorCode ObsColumnNames(Reader *r, char buf[], size_t len)
{
  hid_t      g;
  H5G_info_t info;

  PetscFunctionBeginUser;
  buf[0] = 0;
  H5Call(g = H5Gopen2(r->file, "obs", H5P_DEFAULT), "%s: cannot open /obs", r->path);
  H5Call(H5Gget_info(g, &info), "%s: cannot list /obs", r->path);
  for (hsize_t i = 0; i < info.nlinks; i++) {
    char nm[256];
    H5Call(H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, nm, sizeof(nm), H5P_DEFAULT), "%s: cannot list /obs", r->path);
    if (!strcmp(nm, "__categories")) continue;
    if (buf[0]) PetscCall(PetscStrlcat(buf, ", ", len));
    PetscCall(PetscStrlcat(buf, nm, len));
  }
  PetscCall(CsH5Close(&g, r->path));
  PetscFunctionReturn(0);
}

/* Categories must be distinct (pandas refuses duplicates; merging them would change what the codes mean). */
static PetscErrorCode CheckDistinct(const char what[], PetscInt n, char *const *cats)
{
  char **s;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(n + 1, &s));
  for (PetscInt i = 0; i < n; i++) s[i] = cats[i];
  CsStrSort(n, s);
  for (PetscInt i = 1; i < n; i++)
    PetscCheck(strcmp(s[i], s[i - 1]), PETSC_COMM_SELF, CS_ERR_INPUT, "%s lists '%s' twice (categories must be distinct)", what, s[i]);
  PetscCall(PetscFree(s));
  PetscFunctionReturn(0);
}

/* Categories stored as numbers become their decimal text. */
static PetscErrorCode ReadCategories(Reader *r, hid_t d, const char what[], PetscInt *ncat, char ***cats)
{
  hsize_t     n;
  hid_t       t;
  H5T_class_t cls;

  PetscFunctionBeginUser;
  PetscCall(Length1D(d, what, &n));
  PetscCheck(n < (hsize_t)INT32_MAX, PETSC_COMM_SELF, CS_ERR_INPUT, "%s has %llu categories, more than int32 codes can number", what,
             (unsigned long long)n);
  H5Call(t = H5Dget_type(d), "%s: no type", what);
  H5Call(cls = H5Tget_class(t), "%s: cannot get the type class", what);
  PetscCall(CsH5Close(&t, what));
  if (cls == H5T_STRING) PetscCall(CsH5ReadStrings(d, what, 0, n, cats));
  else {
    double *v;
    PetscCall(NumericType(d, what, NULL));
    PetscCall(PetscMalloc1(n + 1, &v));
    PetscCall(PetscCalloc1(n + 1, cats));
    PetscCall(Read1D(r, d, what, H5T_NATIVE_DOUBLE, sizeof(double), 0, n, v));
    for (hsize_t i = 0; i < n; i++) {
      char s[64];
      PetscCall(PetscSNPrintf(s, sizeof(s), "%.15g", v[i]));
      PetscCall(PetscStrallocpy(s, &(*cats)[i]));
    }
    PetscCall(PetscFree(v));
  }
  *ncat = (PetscInt)n;
  PetscCall(CheckDistinct(what, *ncat, *cats));
  PetscFunctionReturn(0);
}

/* A pandas categorical: categories + codes. */
static PetscErrorCode ReadCategorical(Reader *r, const char name[], PetscInt nglobal, PetscInt rstart, PetscInt nlocal, CsObsColumn *col)
{
  char     cname[320], cwhat[700];
  hid_t    d;
  hsize_t  n;
  int32_t *codes;

  PetscFunctionBeginUser;
  col->kind = CS_OBS_CATEGORICAL;
  PetscCall(PetscSNPrintf(cname, sizeof(cname), "%s/categories", name));
  PetscCall(PetscSNPrintf(cwhat, sizeof(cwhat), "%s: /%s", r->path, cname));
  PetscCall(OpenDataset(r, cname, &d));
  PetscCall(ReadCategories(r, d, cwhat, &col->ncat, &col->cats));
  PetscCall(CsH5Close(&d, cwhat));
  PetscCall(PetscSNPrintf(cname, sizeof(cname), "%s/codes", name));
  PetscCall(PetscSNPrintf(cwhat, sizeof(cwhat), "%s: /%s", r->path, cname));
  PetscCall(OpenDataset(r, cname, &d));
  PetscCall(Length1D(d, cwhat, &n));
  PetscCheck(n == (hsize_t)nglobal, PETSC_COMM_SELF, CS_ERR_INPUT, "%s has %llu entries but there are %" PetscInt_FMT " cells", cwhat,
             (unsigned long long)n, nglobal);
  PetscCall(NumericType(d, cwhat, NULL));
  PetscCall(PetscMalloc1(nlocal + 1, &codes));
  PetscCall(PetscMalloc1(nlocal + 1, &col->codes));
  PetscCall(Read1D(r, d, cwhat, H5T_NATIVE_INT32, sizeof(int32_t), (hsize_t)rstart, (hsize_t)nlocal, codes));
  PetscCall(CsH5Close(&d, cwhat));
  for (PetscInt i = 0; i < nlocal; i++) {
    PetscCheck(codes[i] >= -1 && codes[i] < col->ncat, PETSC_COMM_SELF, CS_ERR_INPUT,
               "%s: cell %" PetscInt_FMT " has code %d but there are %" PetscInt_FMT " categories", cwhat, rstart + i, (int)codes[i], col->ncat);
    col->codes[i] = codes[i];
  }
  PetscCall(PetscFree(codes));
  PetscFunctionReturn(0);
}

/* h5py's boolean: a one-byte enum; read as its own type, so any one-byte enum reads. */
static PetscErrorCode ReadBoolean(Reader *r, hid_t d, hid_t t, const char what[], PetscInt rstart, PetscInt nlocal, CsObsColumn *col)
{
  int8_t *b;
  hid_t   mt;

  PetscFunctionBeginUser;
  PetscCheck(H5Tget_size(t) == 1, PETSC_COMM_SELF, CS_ERR_INPUT, "%s holds an enum type cellshift cannot read", what);
  col->kind = CS_OBS_CATEGORICAL;
  col->ncat = 2;
  PetscCall(PetscMalloc1(2, &col->cats));
  PetscCall(PetscStrallocpy("False", &col->cats[0]));
  PetscCall(PetscStrallocpy("True", &col->cats[1]));
  PetscCall(PetscMalloc1(nlocal + 1, &b));
  PetscCall(PetscMalloc1(nlocal + 1, &col->codes));
  H5Call(mt = H5Tcopy(t), "%s: cannot copy the type", what);
  PetscCall(Read1D(r, d, what, mt, sizeof(int8_t), (hsize_t)rstart, (hsize_t)nlocal, b));
  PetscCall(CsH5Close(&mt, what));
  for (PetscInt i = 0; i < nlocal; i++) col->codes[i] = b[i] ? 1 : 0;
  PetscCall(PetscFree(b));
  PetscFunctionReturn(0);
}

/* An obs column stored as a dataset of type t (class cls). */
static PetscErrorCode ReadObsDataset(Reader *r, hid_t d, hid_t t, H5T_class_t cls, const char what[], PetscInt rstart, PetscInt nlocal,
                                     CsObsColumn *col, char ***raw)
{
  char desc[96];

  PetscFunctionBeginUser;
  if (cls == H5T_STRING) {
    col->kind = CS_OBS_CATEGORICAL;
    PetscCall(CsH5ReadStrings(d, what, (hsize_t)rstart, (hsize_t)nlocal, raw));
  } else if (cls == H5T_ENUM) PetscCall(ReadBoolean(r, d, t, what, rstart, nlocal, col));
  else if (cls == H5T_INTEGER || cls == H5T_FLOAT) {
    col->kind = CS_OBS_NUMERIC;
    PetscCall(PetscMalloc1(nlocal + 1, &col->values));
    PetscCall(Read1D(r, d, what, H5T_NATIVE_DOUBLE, sizeof(double), (hsize_t)rstart, (hsize_t)nlocal, col->values));
  } else {
    DescribeType(t, desc, sizeof(desc));
    SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s holds %s, which cellshift cannot read", what, desc);
  }
  PetscFunctionReturn(0);
}

/* Local part of one obs column. String arrays are returned as raw local strings (*raw) to be turned into
   categories collectively. */
static PetscErrorCode ReadObsLocal(Reader *r, const char key[], PetscInt nglobal, PetscInt rstart, PetscInt nlocal, CsObsColumn *col,
                                   char ***raw)
{
  char           name[300], what[600];
  H5O_info_t     info;
  hid_t          d, t;
  hsize_t        n;
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  *raw = NULL;
  PetscCall(PetscStrncpy(col->name, key, sizeof(col->name)));
  PetscCall(PetscSNPrintf(name, sizeof(name), "obs/%s", key));
  PetscCall(PetscSNPrintf(what, sizeof(what), "%s: /%s", r->path, name));
  H5Call(H5Oget_info_by_name2(r->file, name, &info, H5O_INFO_BASIC, H5P_DEFAULT), "%s: cannot query", what);
  if (info.type == H5O_TYPE_GROUP) {
    PetscCall(ReadCategorical(r, name, nglobal, rstart, nlocal, col));
    PetscFunctionReturn(0);
  }
  PetscCall(OpenDataset(r, name, &d));
  PetscCall(Length1D(d, what, &n));
  PetscCheck(n == (hsize_t)nglobal, PETSC_COMM_SELF, CS_ERR_INPUT, "%s has %llu entries but there are %" PetscInt_FMT " cells", what,
             (unsigned long long)n, nglobal);
  H5Call(t = H5Dget_type(d), "%s: no type", what);
  ierr = ReadObsDataset(r, d, t, H5Tget_class(t), what, rstart, nlocal, col, raw);
  PetscCall(CsH5Close(&t, what)); /* on every path: a string type pins the file */
  PetscCall(ierr);
  PetscCall(CsH5Close(&d, what));
  PetscFunctionReturn(0);
}

/* Collective: categories of a string array = the sorted distinct values over all ranks, or none (col->capped) when
   there are more than cap of them. Each rank contributes its distinct values only, so a capped column costs at most
   ranks x cap strings. */
static PetscErrorCode StringsToCategories(MPI_Comm comm, PetscInt nlocal, char **raw, PetscInt cap, CsObsColumn *col)
{
  char    **uniq;
  PetscInt  nu = 0;
  PetscBool over;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(nlocal + 1, &uniq));
  for (PetscInt i = 0; i < nlocal; i++) uniq[i] = raw[i];
  CsStrSort(nlocal, uniq);
  for (PetscInt i = 0; i < nlocal; i++)
    if (!nu || strcmp(uniq[nu - 1], uniq[i])) uniq[nu++] = uniq[i];
  over = nu > cap ? PETSC_TRUE : PETSC_FALSE;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &over, 1, MPIU_BOOL, MPI_LOR, comm));
  if (!over) {
    PetscCall(CsStrAllUnion(comm, nu, uniq, &col->ncat, &col->cats));
    if (col->ncat > cap) PetscCall(CsStrArrayDestroy(col->ncat, &col->cats)); /* the same on every rank */
    over = col->ncat > cap ? PETSC_TRUE : PETSC_FALSE;
  }
  PetscCall(PetscFree(uniq));
  if (over) {
    col->capped = PETSC_TRUE;
    col->ncat   = 0;
    PetscFunctionReturn(0);
  }
  PetscCall(PetscMalloc1(nlocal + 1, &col->codes));
  for (PetscInt i = 0; i < nlocal; i++) col->codes[i] = CsStrBsearch(raw[i], col->cats, col->ncat);
  PetscFunctionReturn(0);
}

/* Collective: the requested obs columns that exist, in request order. */
static PetscErrorCode ReadObs(Reader *r, MPI_Comm comm, PetscInt nkeys, char *const keys[], const PetscBool required[], PetscInt cap,
                              CsH5adBlock *b)
{
  PetscErrorCode ierr;
  char           cols[CS_MSG_LEN];

  PetscFunctionBeginUser;
  PetscCall(PetscCalloc1(nkeys + 1, &b->obs));
  b->nobs = 0;
  for (PetscInt k = 0; k < nkeys; k++) {
    CsObsColumn *col = &b->obs[b->nobs];
    char       **raw = NULL, name[300];
    PetscBool    exists;
    PetscCall(PetscSNPrintf(name, sizeof(name), "obs/%s", keys[k]));
    PetscCall(CsH5Exists(r->file, name, &exists));
    if (!exists) {
      if (required[k]) {
        ierr = ObsColumnNames(r, cols, sizeof(cols));
        PetscCall(CsAgreeCode(comm, ierr, "cannot read obs"));
      }
      CsCheckAll(comm, !required[k], "%s: obs has no column '%s' (columns: %s)", r->path, keys[k], cols);
      continue;
    }
    b->nobs++; /* counted before it is complete, so that CsH5adBlockFree frees what an error left */
    ierr = ReadObsLocal(r, keys[k], b->nglobal, b->rstart, b->nlocal, col, &raw);
    PetscCall(CsAgreeCode(comm, ierr, "cannot read an obs column"));
    if (raw) {
      PetscCall(StringsToCategories(comm, b->nlocal, raw, cap, col));
      PetscCall(CsStrArrayDestroy(b->nlocal, &raw));
    }
  }
  PetscFunctionReturn(0);
}

/* --------------------------------------------------------------------------------------------------------------
   Driver. */

/* Collective: everything but opening and closing the file. */
static PetscErrorCode ReadBlock(Reader *r, MPI_Comm comm, PetscInt nkeys, char *const keys[], const PetscBool required[], PetscInt cap,
                                PetscBool rows, Layout *Lout, int64_t *nnzlocal, CsH5adBlock *b)
{
  PetscMPIInt    rank, size;
  Layout         L;
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCall(PetscMemzero(&L, sizeof(L)));
  ierr = ReadLayout(r, &L);
  PetscCall(CsAgreeCode(comm, ierr, "cannot read the matrix"));
  PetscCall(PetscStrncpy(b->encoding, L.enc, sizeof(b->encoding)));
  b->nglobal = L.n, b->ngenes = L.g;

  ierr = CheckObsIndex(r, L.n);
  PetscCall(CsAgreeCode(comm, ierr, "cannot read the cell names"));

  if (!strcmp(L.enc, "csr")) PetscCall(ReadCSR(r, comm, &L, rows, &b->rstart, &b->X, nnzlocal));
  else {
    PetscInt r0 = (PetscInt)((int64_t)L.n * rank / size), r1 = (PetscInt)((int64_t)L.n * (rank + 1) / size);
    b->rstart = r0;
    if (rows) {
      ierr = !strcmp(L.enc, "csc") ? ReadCSCLocal(r, &L, r0, r1, &b->X) : ReadDenseLocal(r, &L, r0, r1, &b->X);
      PetscCall(CsAgreeCode(comm, ierr, "invalid matrix"));
      *nnzlocal = b->X.indptr[b->X.nrows];
    } else {
      CsCheckAll(comm, !strcmp(L.enc, "dense"), "%s: /%s is stored as CSC, which cannot be read in row blocks: streaming (-stream, -memory_limit) "
                 "needs CSR or dense X (rewrite it, e.g. adata.X = adata.X.tocsr())", r->path, r->mat);
      b->X.nrows = r1 - r0, b->X.ncols = L.g;
      *nnzlocal  = (int64_t)(r1 - r0) * L.g; /* an upper bound: zeros are dropped while reading */
    }
  }
  b->nlocal = b->X.nrows;
  if (Lout) *Lout = L;

  ierr = ReadVar(r, L.g, &b->genes);
  PetscCall(CsAgreeCode(comm, ierr, "cannot read the gene names"));
  PetscCall(ReadObs(r, comm, nkeys, keys, required, cap, b));
  PetscFunctionReturn(0);
}

/* Collective: -h5ad_read_direct and -h5ad_inflate. */
static PetscErrorCode ReadOptions(MPI_Comm comm, CsIOInflate *inflate)
{
  static const char *const libs[] = {"libdeflate", "isal"};
  PetscBool                direct = PETSC_TRUE;
  PetscInt                 lib    = 0; /* libdeflate: 10-15% faster than ISA-L 2.30 on the gzip chunks anndata writes (bench/read_h5ad.sh) */

  PetscFunctionBeginUser;
  PetscOptionsBegin(comm, NULL, "Reading .h5ad files", "CsH5adRead");
  PetscCall(PetscOptionsBool("-h5ad_read_direct", "Inflate gzip chunks on the rank's threads and read contiguous datasets with pread (false: all through HDF5)", "CsH5adRead",
                             direct, &direct, NULL));
  PetscCall(PetscOptionsEList("-h5ad_inflate", "Library that inflates the chunks (isal: ISA-L, when built with libisal-dev)", "CsH5adRead", libs, 2,
                              libs[lib], &lib, NULL));
  PetscOptionsEnd();
#if !defined(CS_HAVE_ISAL)
  PetscCheck(lib != 1, comm, CS_ERR_INPUT, "-h5ad_inflate isal: this build has no ISA-L (install libisal-dev and rebuild)");
#endif
  *inflate = !direct ? CS_INFLATE_HDF5 : lib ? CS_INFLATE_ISAL : CS_INFLATE_LIBDEFLATE;
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5adReaderOptions(MPI_Comm comm)
{
  CsIOInflate inflate;

  PetscFunctionBeginUser;
  PetscCall(ReadOptions(comm, &inflate));
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5adReadCapped(MPI_Comm comm, const char path[], const char layer[], PetscInt nkeys, char *const keys[],
                                const PetscBool required[], PetscInt maxdistinct, CsH5adBlock *b)
{
  Reader         r;
  CsIOInflate    inflate = CS_INFLATE_HDF5;
  int64_t        nnz     = 0;
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(b, sizeof(*b)));
  PetscCall(ReadOptions(comm, &inflate));
  PetscCall(PetscLogEventBegin(CS_EVENT_READ, 0, 0, 0, 0));
  PetscCall(PetscMemzero(&r, sizeof(r)));
  r.path = path;
  if (layer && layer[0]) PetscCall(PetscSNPrintf(r.mat, sizeof(r.mat), "layers/%s", layer));
  else PetscCall(PetscStrncpy(r.mat, "X", sizeof(r.mat)));
  PetscCall(CsIOFileOpen(comm, path, inflate, &r.io));
  r.file = r.io.file;
  /* Every error of ReadBlock is agreed on by all ranks, so all of them close the file (a collective) here. */
  ierr = ReadBlock(&r, comm, nkeys, keys, required, maxdistinct, PETSC_TRUE, NULL, &nnz, b);
  if (ierr) (void)CsH5adBlockFree(b);
  PetscCall(CsIOFileClose(&r.io));
  PetscCall(PetscFree(r.buf));
  PetscCall(ierr);
  PetscCall(PetscLogEventEnd(CS_EVENT_READ, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5adRead(MPI_Comm comm, const char path[], const char layer[], PetscInt nkeys, char *const keys[],
                          const PetscBool required[], CsH5adBlock *b)
{
  PetscFunctionBeginUser;
  PetscCall(CsH5adReadCapped(comm, path, layer, nkeys, keys, required, PETSC_MAX_INT, b));
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

/* --------------------------------------------------------------------------------------------------------------
   Streamed reads: the layout, var and obs as CsH5adRead gives them, the matrix rows later, range by range, through
   the same row readers (CSRReadRows, ReadDenseLocal) on a file each rank opens alone with the POSIX driver. Such a
   read makes no MPI call, so a background thread can do it while the main thread trains and communicates; HDF5 is
   not thread-safe in this build, so at most one thread is inside HDF5 at a time: every call below first waits for
   the background read, and CsH5adStreamWait lets other HDF5 users (checkpoints) do the same. */
#include <pthread.h>

struct _n_CsH5adStream {
  char      path[PETSC_MAX_PATH_LEN];
  Reader    r;
  Layout    L;
  /* the background read: ranges [r0[k], r1[k]) into out[k] */
  pthread_t      th;
  PetscBool      busy, done;
  PetscInt       n, *r0, *r1, nread; /* ranges [0, nread) were read; range nread failed with err when err */
  CsCSR         *out;
  PetscBool     *claimed;
  PetscErrorCode err;
};

static PetscErrorCode StreamRead(CsH5adStream st, PetscInt r0, PetscInt r1, CsCSR *A)
{
  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(A, sizeof(*A)));
  PetscCheck(r0 >= 0 && r0 <= r1 && r1 <= st->L.n, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE,
             "rows [%" PetscInt_FMT ", %" PetscInt_FMT ") outside the %" PetscInt_FMT " cells of %s", r0, r1, st->L.n, st->path);
  if (r0 == r1) { /* an empty range: no read */
    A->ncols = st->L.g;
    PetscCall(PetscCalloc1(1, &A->indptr));
    PetscFunctionReturn(0);
  }
  if (!strcmp(st->L.enc, "csr")) {
    PetscCall(CSRReadRows(&st->r, r0, r1, &st->L, A));
    for (PetscInt i = 0; st->r.rowfn && i < A->nrows; i++)
      PetscCall(st->r.rowfn(st->r.rowctx, r0 + i, A->data + A->indptr[i], A->indptr[i + 1] - A->indptr[i]));
  } else PetscCall(ReadDenseLocal(&st->r, &st->L, r0, r1, A));
  PetscFunctionReturn(0);
}


static PetscErrorCode StreamReadList(CsH5adStream st, PetscInt n, const PetscInt rows[], CsCSR *A)
{
  int64_t nnz = 0, cap = 0;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(A, sizeof(*A)));
  A->nrows = n, A->ncols = st->L.g;
  PetscCall(PetscMalloc1(n + 1, &A->indptr));
  A->indptr[0] = 0;
  for (PetscInt i = 0; i < n;) {
    PetscInt j = i + 1;
    PetscCheck(rows[i] >= 0 && rows[i] < st->L.n, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE, "row %" PetscInt_FMT " outside the %" PetscInt_FMT " cells of %s",
               rows[i], st->L.n, st->path);
    if (strcmp(st->L.enc, "csr")) { /* an increasing stretch at once: ReadDenseRows reads it in runs */
      while (j < n && rows[j] > rows[j - 1] && rows[j] < st->L.n) j++;
      PetscCall(ReadDenseRows(&st->r, &st->L, rows[i], rows[j - 1] + 1, j - i, rows + i, A, i, &nnz, &cap));
    } else {
      CsCSR R = {0};
      while (j < n && rows[j] > rows[j - 1] && rows[j] - rows[j - 1] <= RUN_GAP && rows[j] < st->L.n) j++;
      PetscCall(CSRReadRows(&st->r, rows[i], rows[j - 1] + 1, &st->L, &R));
      for (PetscInt k = i; k < j; k++) {
        int64_t a = R.indptr[rows[k] - rows[i]], m = R.indptr[rows[k] - rows[i] + 1] - a;
        if (nnz + m > cap) {
          cap = PetscMax(2 * cap, nnz + m * (j - k)) + 1;
          PetscCall(PetscRealloc(sizeof(int32_t) * cap, &A->indices));
          PetscCall(PetscRealloc(sizeof(float) * cap, &A->data));
        }
        PetscCall(PetscArraycpy(A->indices + nnz, R.indices + a, m));
        PetscCall(PetscArraycpy(A->data + nnz, R.data + a, m));
        if (st->r.rowfn) PetscCall(st->r.rowfn(st->r.rowctx, rows[k], A->data + nnz, m));
        nnz += m;
        A->indptr[k + 1] = nnz;
      }
      PetscCall(CsCSRRecycle(&R));
    }
    i = j;
  }
  if (!A->indices) {
    PetscCall(PetscMalloc1(1, &A->indices));
    PetscCall(PetscMalloc1(1, &A->data));
  }
  PetscFunctionReturn(0);
}

static void *StreamMain(void *arg)
{
  CsH5adStream st = (CsH5adStream)arg;

  st->err = 0, st->nread = 0;
  for (PetscInt k = 0; k < st->n && !st->err; k++) {
    st->err = StreamRead(st, st->r0[k], st->r1[k], &st->out[k]);
    if (!st->err) st->nread++;
  }
  return NULL;
}

PetscErrorCode CsH5adStreamOpen(MPI_Comm comm, const char path[], const char layer[], PetscInt nkeys, char *const keys[],
                                const PetscBool required[], CsH5adBlock *b, int64_t *nnzlocal, CsH5adStream *out)
{
  CsH5adStream   st;
  Reader         r;
  CsIOInflate    inflate = CS_INFLATE_HDF5;
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(b, sizeof(*b)));
  PetscCall(PetscNew(&st));
  PetscCall(PetscStrncpy(st->path, path, sizeof(st->path)));
  PetscCall(ReadOptions(comm, &inflate));
  PetscCall(PetscMemzero(&r, sizeof(r)));
  r.path = st->path;
  if (layer && layer[0]) PetscCall(PetscSNPrintf(r.mat, sizeof(r.mat), "layers/%s", layer));
  else PetscCall(PetscStrncpy(r.mat, "X", sizeof(r.mat)));
  ierr = CsIOFileOpen(comm, path, inflate, &r.io);
  if (ierr) PetscCall(PetscFree(st));
  PetscCall(ierr);
  r.file = r.io.file;
  ierr   = ReadBlock(&r, comm, nkeys, keys, required, PETSC_MAX_INT, PETSC_FALSE, &st->L, nnzlocal, b);
  if (ierr) (void)CsH5adBlockFree(b);
  PetscCall(CsIOFileClose(&r.io));
  PetscCall(PetscFree(r.buf));
  r.bufn = 0;
  if (ierr) PetscCall(PetscFree(st));
  PetscCall(ierr);
  /* The rows' file: opened by every rank alone. No chunk inflation on the reader's own threads (its log events are
     not for a background thread): HDF5's filter inflates gzip chunks; contiguous X is read by pread unless
     -h5ad_read_direct false. */
  st->r     = r;
  st->r.path = st->path;
  ierr      = CsIOFileOpenLocal(st->path, inflate, &st->r.io);
  PetscCall(CsAgreeCode(comm, ierr, "cannot open the streamed file"));
  st->r.io.inflate = CS_INFLATE_HDF5;
  st->r.file = st->r.io.file;
  *out       = st;
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5adStreamWait(CsH5adStream st)
{
  PetscFunctionBeginUser;
  if (st && st->busy) {
    pthread_join(st->th, NULL);
    st->busy = PETSC_FALSE, st->done = PETSC_TRUE;
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5adStreamReadRows(CsH5adStream st, PetscInt r0, PetscInt r1, CsCSR *A)
{
  PetscFunctionBeginUser;
  PetscCall(CsH5adStreamWait(st));
  PetscCall(StreamRead(st, r0, r1, A));
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5adStreamSetRowFn(CsH5adStream st, CsH5adRowFn fn, void *ctx)
{
  PetscFunctionBeginUser;
  PetscCall(CsH5adStreamWait(st));
  st->r.rowfn = fn, st->r.rowctx = ctx;
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5adStreamReadList(CsH5adStream st, PetscInt n, const PetscInt rows[], CsCSR *A)
{
  PetscFunctionBeginUser;
  PetscCall(CsH5adStreamWait(st));
  PetscCall(StreamReadList(st, n, rows, A));
  PetscFunctionReturn(0);
}

static PetscErrorCode StreamDrop(CsH5adStream st)
{
  PetscFunctionBeginUser;
  for (PetscInt k = 0; st->out && k < st->n; k++) PetscCall(CsCSRFree(&st->out[k]));
  PetscCall(PetscFree4(st->r0, st->r1, st->out, st->claimed));
  st->n = st->nread = 0, st->done = PETSC_FALSE, st->err = 0;
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5adStreamReadBegin(CsH5adStream st, PetscInt n, const PetscInt r0[], const PetscInt r1[])
{
  PetscFunctionBeginUser;
  PetscCall(CsH5adStreamWait(st));
  PetscCall(StreamDrop(st)); /* an unclaimed earlier read */
  st->n = n;
  PetscCall(PetscCalloc4(n + 1, &st->r0, n + 1, &st->r1, n + 1, &st->out, n + 1, &st->claimed));
  PetscCall(PetscArraycpy(st->r0, r0, n));
  PetscCall(PetscArraycpy(st->r1, r1, n));
  st->err = 0;
  if (pthread_create(&st->th, NULL, StreamMain, st)) StreamMain(st); /* no thread: read now */
  else st->busy = PETSC_TRUE;
  if (!st->busy) st->done = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5adStreamClaim(CsH5adStream st, PetscInt r0, PetscInt r1, CsCSR *out, PetscBool *found)
{
  PetscFunctionBeginUser;
  PetscCall(CsH5adStreamWait(st));
  *found = PETSC_FALSE;
  for (PetscInt k = 0; st->done && k < st->n; k++) {
    if (st->r0[k] != r0 || st->r1[k] != r1 || st->claimed[k]) continue;
    if (k == st->nread && st->err) {
      PetscErrorCode err = st->err;
      PetscCall(StreamDrop(st));
      PetscCall(err); /* the thread's message was recorded by the error handler */
    }
    if (k >= st->nread) break; /* not read (an earlier range failed): read it now */
    *out = st->out[k], st->claimed[k] = PETSC_TRUE, *found = PETSC_TRUE;
    PetscCall(PetscMemzero(&st->out[k], sizeof(CsCSR)));
    break;
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5adStreamClose(CsH5adStream *st)
{
  PetscFunctionBeginUser;
  if (!*st) PetscFunctionReturn(0);
  PetscCall(CsH5adStreamWait(*st));
  PetscCall(StreamDrop(*st));
  PetscCall(CsIOFileClose(&(*st)->r.io));
  PetscCall(PetscFree((*st)->r.buf));
  PetscCall(PetscFree(*st));
  PetscFunctionReturn(0);
}
