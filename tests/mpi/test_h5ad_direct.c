/* The reader's direct chunk path (gzip chunks fetched and inflated on the rank's threads, with libdeflate and with
   ISA-L when built with it: -h5ad_inflate) and its contiguous path (pread at the dataset's offset) against HDF5
   (-h5ad_read_direct false) at 1, 2 and 3 ranks, on 3 threads and 1: the same blocks, byte for byte, and the values
   written; unfiltered chunks are fetched raw by the direct path.

   Files are written here with HDF5, laid out as anndata writes a CSR .h5ad, with small chunks so that the rank
   blocks cut chunks: float32/int32 (inflated in place), float64/int64 little- and big-endian (inflated into scratch
   and converted), shuffle + gzip (HDF5 only), a chunk stored with its filter skipped and a chunk never written (both
   left to HDF5 by the direct path), gzip obs columns (categorical codes, float64 values). Files that must fail do
   so in both paths: a corrupted chunk, and a float64 beyond float32's range. The streamed reader's list read
   (CsH5adStreamReadList, rows in any order) gives the values written, through HDF5 and through pread. */
#include "testing.h"
#include <cellshift/h5ad.h>
#include <cellshift/h5util.h>

#define N     503 /* cells */
#define G     41  /* genes */
#define CHUNK 97  /* elements per chunk of the CSR arrays */

typedef struct {
  const char *name;
  hid_t       data_type, index_type; /* file types of X/data and X/indices (indptr: index_type) */
  PetscBool   shuffle;
  PetscBool   skipped;   /* chunk 3 of X/data stored with its filter skipped */
  PetscBool   unwritten; /* chunk 5 of X/data never written (HDF5 gives the fill value 0) */
  PetscBool   corrupt;   /* chunk 4 of X/data replaced by bytes that do not inflate */
  PetscBool   overflow;  /* one float64 value of 1e300 */
  PetscBool   fails;
  PetscBool   contiguous; /* X's arrays stored contiguously, unfiltered (float32/int32: read by pread; else HDF5 converts) */
  PetscBool   dense;      /* X a contiguous 2-D array of data_type (zeros dropped by the reader) */
  PetscBool   unfiltered; /* X's arrays chunked without a filter (the chunks fetched raw) */
} Variant;

/* Row i has nnz(i) entries at columns (i + 3k) mod G, sorted; some rows are empty. */
static int64_t RowNnz(PetscInt i) { return i % 11 == 4 ? 0 : 1 + (i * 7) % 13; }

static double Value(int64_t k) { return (k % 17 - 8) * 0.3137 + (k % 5) * 1e-9 + (k % 29 == 0 ? 3.0e38 * (k % 2 ? 1 : -1) / 1.01 : 0); }

typedef struct {
  int64_t *indptr;
  int64_t *indices;
  double  *data;
  int64_t  nnz;
} Truth;

static PetscErrorCode MakeTruth(Truth *T)
{
  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(N + 1, &T->indptr));
  T->indptr[0] = 0;
  for (PetscInt i = 0; i < N; i++) T->indptr[i + 1] = T->indptr[i] + RowNnz(i);
  T->nnz = T->indptr[N];
  PetscCall(PetscMalloc2(T->nnz, &T->indices, T->nnz, &T->data));
  for (PetscInt i = 0; i < N; i++) {
    int64_t n = RowNnz(i), a = T->indptr[i];
    PetscInt cols[G], m = 0;
    for (PetscInt j = 0; j < G; j++) cols[j] = 0;
    for (int64_t k = 0; k < n; k++) cols[(i + 3 * k) % G] = 1;
    for (PetscInt j = 0; j < G; j++)
      if (cols[j]) T->indices[a + m++] = j;
  }
  for (int64_t k = 0; k < T->nnz; k++) T->data[k] = Value(k);
  PetscFunctionReturn(0);
}

/* A 1-D chunked dataset of file type ftype from n native elements of mtype, with gzip (and shuffle). */
static PetscErrorCode WriteChunked(hid_t loc, const char name[], hid_t ftype, hid_t mtype, hsize_t n, hsize_t chunk, PetscBool shuffle,
                                   PetscBool gzip, const void *buf)
{
  hid_t dcpl, sp, d;

  PetscFunctionBeginUser;
  H5Call(dcpl = H5Pcreate(H5P_DATASET_CREATE), "dcpl");
  H5Call(H5Pset_chunk(dcpl, 1, &chunk), "chunk");
  if (shuffle) H5Call(H5Pset_shuffle(dcpl), "shuffle");
  if (gzip) H5Call(H5Pset_deflate(dcpl, 4), "deflate");
  H5Call(sp = H5Screate_simple(1, &n, NULL), "space");
  H5Call(d = H5Dcreate2(loc, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT), "create %s", name);
  H5Call(H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), "write %s", name);
  PetscCall(CsH5Close(&d, name));
  PetscCall(CsH5Close(&sp, name));
  PetscCall(CsH5Close(&dcpl, name));
  PetscFunctionReturn(0);
}

/* A 1-D contiguous dataset (no filter) of file type ftype from n native elements of mtype. */
static PetscErrorCode WriteContiguous(hid_t loc, const char name[], hid_t ftype, hid_t mtype, hsize_t n, const void *buf)
{
  hid_t sp, d;

  PetscFunctionBeginUser;
  H5Call(sp = H5Screate_simple(1, &n, NULL), "space");
  H5Call(d = H5Dcreate2(loc, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "create %s", name);
  H5Call(H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), "write %s", name);
  PetscCall(CsH5Close(&d, name));
  PetscCall(CsH5Close(&sp, name));
  PetscFunctionReturn(0);
}

/* X as a contiguous N x G array of the truth's values (zeros elsewhere). */
static PetscErrorCode WriteDense(hid_t f, const Variant *v, const Truth *T)
{
  hid_t   sp, d;
  hsize_t dims[2] = {N, G};
  double *D;

  PetscFunctionBeginUser;
  PetscCall(PetscCalloc1((size_t)N * G, &D));
  for (PetscInt i = 0; i < N; i++)
    for (int64_t k = T->indptr[i]; k < T->indptr[i + 1]; k++) D[(size_t)i * G + T->indices[k]] = T->data[k];
  H5Call(sp = H5Screate_simple(2, dims, NULL), "space");
  H5Call(d = H5Dcreate2(f, "X", v->data_type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "create X");
  H5Call(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, D), "write X");
  PetscCall(CsH5WriteAttrString(d, "encoding-type", "array"));
  PetscCall(CsH5Close(&d, "X"));
  PetscCall(CsH5Close(&sp, "X"));
  PetscCall(PetscFree(D));
  PetscFunctionReturn(0);
}

/* The truth of a dense X: without its zero entries, which the reader drops. */
static void DropZeros(Truth *T)
{
  int64_t m = 0;

  for (PetscInt i = 0; i < N; i++) {
    int64_t a = T->indptr[i];
    T->indptr[i] = m;
    for (int64_t k = a; k < T->indptr[i + 1]; k++)
      if ((float)T->data[k] != 0) T->indices[m] = T->indices[k], T->data[m++] = T->data[k];
  }
  T->indptr[N] = T->nnz = m;
}

/* X/data, with the variant's damage: chunks rewritten raw, dropped or garbled through the direct chunk write. */
static PetscErrorCode WriteData(hid_t X, const Variant *v, const Truth *T)
{
  hid_t   dcpl, sp, d;
  hsize_t n = (hsize_t)T->nnz, chunk = CHUNK;
  size_t  fs = H5Tget_size(v->data_type);
  double *vals;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(n, &vals));
  PetscCall(PetscArraycpy(vals, T->data, n));
  if (v->overflow) vals[T->indptr[2 * N / 3] + 1] = 1e300;
  if (v->contiguous) {
    PetscCall(WriteContiguous(X, "data", v->data_type, H5T_NATIVE_DOUBLE, n, vals));
    PetscCall(PetscFree(vals));
    PetscFunctionReturn(0);
  }
  H5Call(dcpl = H5Pcreate(H5P_DATASET_CREATE), "dcpl");
  H5Call(H5Pset_chunk(dcpl, 1, &chunk), "chunk");
  if (v->shuffle) H5Call(H5Pset_shuffle(dcpl), "shuffle");
  if (!v->unfiltered) H5Call(H5Pset_deflate(dcpl, 4), "deflate");
  H5Call(sp = H5Screate_simple(1, &n, NULL), "space");
  H5Call(d = H5Dcreate2(X, "data", v->data_type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT), "create data");
  if (v->unwritten) { /* everything but chunk 5 */
    hsize_t lo[2] = {0, 6 * CHUNK}, cnt[2] = {5 * CHUNK, n - 6 * CHUNK};
    for (int p = 0; p < 2; p++) {
      hid_t ms;
      H5Call(ms = H5Screate_simple(1, &cnt[p], NULL), "space");
      H5Call(H5Sselect_hyperslab(sp, H5S_SELECT_SET, &lo[p], NULL, &cnt[p], NULL), "select");
      H5Call(H5Dwrite(d, H5T_NATIVE_DOUBLE, ms, sp, H5P_DEFAULT, vals + lo[p]), "write data");
      PetscCall(CsH5Close(&ms, "data"));
    }
    for (hsize_t k = 5 * CHUNK; k < 6 * CHUNK; k++) T->data[k] = 0;
  } else H5Call(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, vals), "write data");
  if (v->skipped || v->corrupt) {
    hsize_t off = (v->skipped ? 3 : 4) * CHUNK;
    char   *raw;
    PetscCall(PetscMalloc1(CHUNK * 8, &raw));
    for (size_t b = 0; b < CHUNK * 8; b++) raw[b] = (char)(b * 37 + 11);
    if (v->skipped) { /* the chunk's values in the file type, stored without the filter */
      memcpy(raw, vals + off, CHUNK * sizeof(double));
      H5Call(H5Tconvert(H5T_NATIVE_DOUBLE, v->data_type, CHUNK, raw, NULL, H5P_DEFAULT), "convert");
    }
    H5Call(H5Dwrite_chunk(d, H5P_DEFAULT, v->skipped ? 1u : 0u, &off, CHUNK * fs, raw), "write chunk");
    PetscCall(PetscFree(raw));
  }
  PetscCall(CsH5Close(&d, "data"));
  PetscCall(CsH5Close(&sp, "data"));
  PetscCall(CsH5Close(&dcpl, "data"));
  PetscCall(PetscFree(vals));
  PetscFunctionReturn(0);
}

static PetscErrorCode WriteObs(hid_t f)
{
  hid_t    obs, cat;
  char    *names[N], *cats[5] = {"control", "A", "B", "A+B", "C"};
  int8_t   codes[N];
  double   dose[N];

  PetscFunctionBeginUser;
  H5Call(obs = H5Gcreate2(f, "obs", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "obs");
  PetscCall(CsH5WriteAttrString(obs, "_index", "_index"));
  for (PetscInt i = 0; i < N; i++) {
    char buf[16];
    PetscCall(PetscSNPrintf(buf, sizeof(buf), "cell%" PetscInt_FMT, i));
    PetscCall(PetscStrallocpy(buf, &names[i]));
    codes[i] = (int8_t)(i % 7 == 6 ? -1 : i % 5);
    dose[i]  = i % 9 == 0 ? NAN : 0.125 * (i % 13);
  }
  PetscCall(CsH5WriteStrings(obs, "_index", N, names));
  PetscCall(CsH5WriteStrings(obs, "barcode", N, names));
  H5Call(cat = H5Gcreate2(obs, "condition", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "condition");
  PetscCall(CsH5WriteAttrString(cat, "encoding-type", "categorical"));
  PetscCall(CsH5WriteStrings(cat, "categories", 5, cats));
  PetscCall(WriteChunked(cat, "codes", H5T_STD_I8LE, H5T_NATIVE_INT8, N, 31, PETSC_FALSE, PETSC_TRUE, codes));
  PetscCall(CsH5Close(&cat, "condition"));
  PetscCall(WriteChunked(obs, "dose", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, N, 64, PETSC_FALSE, PETSC_TRUE, dose));
  PetscCall(CsH5Close(&obs, "obs"));
  for (PetscInt i = 0; i < N; i++) PetscCall(PetscFree(names[i]));
  PetscFunctionReturn(0);
}

static PetscErrorCode WriteFile(const char path[], const Variant *v, Truth *T)
{
  hid_t   f, X, var, a, s;
  hsize_t two = 2;
  int64_t shape[2] = {N, G};
  char   *genes[G];

  PetscFunctionBeginUser;
  H5Call(f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "create %s", path);
  if (v->dense) PetscCall(WriteDense(f, v, T));
  else {
  H5Call(X = H5Gcreate2(f, "X", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "X");
  PetscCall(CsH5WriteAttrString(X, "encoding-type", "csr_matrix"));
  H5Call(s = H5Screate_simple(1, &two, NULL), "space");
  H5Call(a = H5Acreate2(X, "shape", H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT), "shape");
  H5Call(H5Awrite(a, H5T_NATIVE_INT64, shape), "shape");
  PetscCall(CsH5Close(&a, "shape"));
  PetscCall(CsH5Close(&s, "shape"));
  if (v->contiguous) {
    PetscCall(WriteContiguous(X, "indptr", v->index_type, H5T_NATIVE_INT64, N + 1, T->indptr));
    PetscCall(WriteContiguous(X, "indices", v->index_type, H5T_NATIVE_INT64, (hsize_t)T->nnz, T->indices));
  } else {
    PetscCall(WriteChunked(X, "indptr", v->index_type, H5T_NATIVE_INT64, N + 1, 50, v->shuffle, !v->unfiltered, T->indptr));
    PetscCall(WriteChunked(X, "indices", v->index_type, H5T_NATIVE_INT64, (hsize_t)T->nnz, CHUNK, v->shuffle, !v->unfiltered, T->indices));
  }
  PetscCall(WriteData(X, v, T));
  PetscCall(CsH5Close(&X, "X"));
  }
  PetscCall(WriteObs(f));
  H5Call(var = H5Gcreate2(f, "var", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "var");
  PetscCall(CsH5WriteAttrString(var, "_index", "_index"));
  for (PetscInt j = 0; j < G; j++) {
    char buf[16];
    PetscCall(PetscSNPrintf(buf, sizeof(buf), "gene%" PetscInt_FMT, j));
    PetscCall(PetscStrallocpy(buf, &genes[j]));
  }
  PetscCall(CsH5WriteStrings(var, "_index", G, genes));
  for (PetscInt j = 0; j < G; j++) PetscCall(PetscFree(genes[j]));
  PetscCall(CsH5Close(&var, "var"));
  H5Call(H5Fclose(f), "close %s", path);
  PetscFunctionReturn(0);
}

static PetscLogDouble InflateCount(void)
{
  PetscLogEvent      ev;
  PetscEventPerfInfo info;

  if (PetscLogEventGetId("CsReadInflate", &ev) || PetscLogEventGetPerfInfo(0, ev, &info)) return -1;
  return info.count;
}

static PetscErrorCode Read(const char path[], const char *lib, PetscErrorCode *ierr, CsH5adBlock *b)
{
  char *keys[3] = {"condition", "dose", "barcode"};
  PetscBool req[3] = {PETSC_TRUE, PETSC_TRUE, PETSC_TRUE};

  PetscFunctionBeginUser;
  PetscCall(PetscOptionsSetValue(NULL, "-h5ad_read_direct", lib ? "true" : "false"));
  if (lib) PetscCall(PetscOptionsSetValue(NULL, "-h5ad_inflate", lib)); /* NULL: through HDF5 */
  *ierr = CsH5adRead(PETSC_COMM_WORLD, path, "", 3, keys, req, b);
  PetscFunctionReturn(0);
}

/* The two blocks are the same bytes, and the values are those written (as float32). */
static void Compare(const char *name, const CsH5adBlock *a, const CsH5adBlock *b, const Truth *T)
{
  int64_t nnz = a->X.indptr[a->nlocal];

  CS_EXPECT(a->rstart == b->rstart && a->nlocal == b->nlocal && a->nglobal == N && a->ngenes == G, "%s: blocks differ in shape", name);
  if (a->rstart != b->rstart || a->nlocal != b->nlocal) return;
  CS_EXPECT(!memcmp(a->X.indptr, b->X.indptr, sizeof(int64_t) * (a->nlocal + 1)), "%s: indptr differs", name);
  CS_EXPECT(!memcmp(a->X.indices, b->X.indices, sizeof(int32_t) * nnz), "%s: indices differ", name);
  CS_EXPECT(!memcmp(a->X.data, b->X.data, sizeof(float) * nnz), "%s: data differs", name);
  for (PetscInt i = 0; i < a->nlocal; i++) {
    int64_t off = T->indptr[a->rstart + i];
    for (int64_t k = a->X.indptr[i]; k < a->X.indptr[i + 1]; k++) {
      CS_EXPECT(a->X.indices[k] == T->indices[off + k - a->X.indptr[i]], "%s: row %d index", name, (int)(a->rstart + i));
      CS_EXPECT(a->X.data[k] == (float)T->data[off + k - a->X.indptr[i]], "%s: row %d value %g, expected %g", name, (int)(a->rstart + i),
                (double)a->X.data[k], (double)(float)T->data[off + k - a->X.indptr[i]]);
    }
  }
  CS_EXPECT(a->nobs == 3 && b->nobs == 3, "%s: obs columns", name);
  for (PetscInt c = 0; c < PetscMin(a->nobs, b->nobs); c++) {
    const CsObsColumn *x = &a->obs[c], *y = &b->obs[c];
    CS_EXPECT(x->ncat == y->ncat && x->kind == y->kind, "%s: obs %s differs", name, x->name);
    if (x->codes && y->codes) CS_EXPECT(!memcmp(x->codes, y->codes, sizeof(PetscInt) * a->nlocal), "%s: obs %s codes differ", name, x->name);
    if (x->values && y->values) CS_EXPECT(!memcmp(x->values, y->values, sizeof(double) * a->nlocal), "%s: obs %s values differ", name, x->name);
  }
  for (PetscInt i = 0; i < a->nlocal && a->nobs == 3; i++) {
    PetscInt g = a->rstart + i;
    CS_EXPECT(a->obs[0].codes[i] == (g % 7 == 6 ? -1 : g % 5), "%s: cell %d condition", name, (int)g);
    CS_EXPECT(g % 9 == 0 ? isnan(a->obs[1].values[i]) : a->obs[1].values[i] == 0.125 * (g % 13), "%s: cell %d dose", name, (int)g);
  }
}

/* Listed rows through a stream (CsH5adStreamReadList): a run with small gaps, a large gap, a decreasing stretch, a
   repeated row, the first and the last rows, each the values written; a row outside the file is an error. */
static PetscErrorCode CheckList(const char *name, const char path[], const Truth *T)
{
  char          *keys[3] = {"condition", "dose", "barcode"};
  PetscBool      req[3]  = {PETSC_TRUE, PETSC_TRUE, PETSC_TRUE};
  PetscInt       rows[64], n = 0, bad = N;
  CsH5adBlock    b;
  CsH5adStream   st;
  CsCSR          A = {0};
  int64_t        nnz;
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  rows[n++] = 0;
  for (PetscInt i = 5; i <= 50; i += 3) rows[n++] = i;
  rows[n++] = 400, rows[n++] = 401, rows[n++] = 402, rows[n++] = 300, rows[n++] = 250, rows[n++] = 200, rows[n++] = 200;
  rows[n++] = N - 1, rows[n++] = 77, rows[n++] = 78, rows[n++] = 4; /* row 4 is empty */
  PetscCall(CsH5adStreamOpen(PETSC_COMM_WORLD, path, "", 3, keys, req, &b, &nnz, &st));
  PetscCall(CsH5adBlockFree(&b));
  PetscCall(CsH5adStreamReadList(st, n, rows, &A));
  CS_EXPECT(A.nrows == n && A.ncols == G, "%s: list read gave %d x %d", name, (int)A.nrows, (int)A.ncols);
  for (PetscInt k = 0; k < n; k++) {
    int64_t r = rows[k], m = A.indptr[k + 1] - A.indptr[k];
    CS_EXPECT(m == T->indptr[r + 1] - T->indptr[r], "%s: listed row %d has %d entries, expected %d", name, (int)r, (int)m,
              (int)(T->indptr[r + 1] - T->indptr[r]));
    for (int64_t j = 0; m == T->indptr[r + 1] - T->indptr[r] && j < m; j++)
      CS_EXPECT(A.indices[A.indptr[k] + j] == T->indices[T->indptr[r] + j] && A.data[A.indptr[k] + j] == (float)T->data[T->indptr[r] + j],
                "%s: listed row %d entry %d differs", name, (int)r, (int)j);
  }
  PetscCall(CsCSRFree(&A));
  PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
  ierr = CsH5adStreamReadList(st, 1, &bad, &A);
  PetscCall(PetscPopErrorHandler());
  CS_EXPECT(ierr == PETSC_ERR_ARG_OUTOFRANGE, "%s: a listed row outside the file gave error %d", name, (int)ierr);
  PetscCall(CsCSRFree(&A));
  PetscCall(CsH5adStreamClose(&st));
  PetscFunctionReturn(0);
}

static PetscErrorCode Run(void)
{
  MPI_Comm    comm = PETSC_COMM_WORLD;
  PetscMPIInt rank;
  char        dir[PETSC_MAX_PATH_LEN], path[PETSC_MAX_PATH_LEN];
  Variant     V[] = {
    {"gzip_f32_i32", H5T_IEEE_F32LE, H5T_STD_I32LE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE},
    {"gzip_f64_i64", H5T_IEEE_F64LE, H5T_STD_I64LE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE},
    {"gzip_big_endian", H5T_IEEE_F64BE, H5T_STD_I64BE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE},
    {"shuffle_gzip", H5T_IEEE_F32LE, H5T_STD_I32LE, PETSC_TRUE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE},
    {"chunk_filter_skipped", H5T_IEEE_F32LE, H5T_STD_I32LE, PETSC_FALSE, PETSC_TRUE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE},
    {"chunk_unwritten", H5T_IEEE_F32LE, H5T_STD_I32LE, PETSC_FALSE, PETSC_FALSE, PETSC_TRUE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE},
    {"chunk_corrupt", H5T_IEEE_F32LE, H5T_STD_I32LE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_TRUE, PETSC_FALSE, PETSC_TRUE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE},
    {"float64_overflow", H5T_IEEE_F64LE, H5T_STD_I64LE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_TRUE, PETSC_TRUE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE},
    {"contiguous_f32_i32", H5T_NATIVE_FLOAT, H5T_NATIVE_INT32, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_TRUE, PETSC_FALSE, PETSC_FALSE},
    {"contiguous_f64_i64", H5T_IEEE_F64LE, H5T_STD_I64LE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_TRUE, PETSC_FALSE, PETSC_FALSE},
    {"contiguous_overflow", H5T_IEEE_F64LE, H5T_STD_I64LE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_TRUE, PETSC_TRUE, PETSC_TRUE, PETSC_FALSE, PETSC_FALSE},
    {"dense_f32", H5T_NATIVE_FLOAT, H5T_NATIVE_INT32, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_TRUE, PETSC_FALSE},
    {"dense_f64", H5T_IEEE_F64LE, H5T_NATIVE_INT32, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_TRUE, PETSC_FALSE},
    {"unfiltered_f32_i32", H5T_NATIVE_FLOAT, H5T_NATIVE_INT32, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_TRUE},
    {"unfiltered_f64_i64", H5T_IEEE_F64LE, H5T_STD_I64LE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_TRUE},
    {"unfiltered_unwritten", H5T_NATIVE_FLOAT, H5T_NATIVE_INT32, PETSC_FALSE, PETSC_FALSE, PETSC_TRUE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_FALSE, PETSC_TRUE},
  };
  const char *threads[2] = {"3", "1"}; /* 3 first: the thread pool is made at its first use, with the BLAS threads then */
#if defined(CS_HAVE_ISAL)
  const char *libs[] = {"libdeflate", "isal"};
#else
  const char *libs[] = {"libdeflate"};
#endif

  PetscFunctionBeginUser;
  PetscCall(PetscLogDefaultBegin());
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCall(CsTestTempDir(comm, dir));
  for (size_t v = 0; v < sizeof(V) / sizeof(V[0]); v++) {
    Truth T;
    PetscCall(MakeTruth(&T));
    PetscCall(PetscSNPrintf(path, sizeof(path), "%s/%s.h5ad", dir, V[v].name));
    if (!rank) PetscCall(WriteFile(path, &V[v], &T));
    for (int64_t k = 5 * CHUNK; V[v].unwritten && k < 6 * CHUNK; k++) T.data[k] = 0; /* on every rank: all read row 77 */
    if (V[v].dense) DropZeros(&T);
    PetscCallMPI(MPI_Barrier(comm));
    for (int t = 0; t < 2 * (int)(sizeof(libs) / sizeof(libs[0])); t++) {
      const char    *lib = libs[t / 2];
      CsH5adBlock    a, b;
      PetscErrorCode ea = 0, eb = 0;
      PetscLogDouble before;
      PetscCall(PetscOptionsSetValue(NULL, "-blas_threads", threads[t % 2]));
      PetscCall(CsSystemSetFromOptions(comm));
      before = InflateCount();
      PetscCall(Read(path, lib, &ea, &a));
      /* the direct path ran wherever gzip is the only filter (the obs columns at least) */
      CS_EXPECT(V[v].fails || InflateCount() > before, "%s: the direct path did not run", V[v].name);
      PetscCall(Read(path, NULL, &eb, &b));
      CS_EXPECT((ea != 0) == V[v].fails && (eb != 0) == V[v].fails, "%s (%s, %s threads): direct read %s, HDF5 read %s; expected %s", V[v].name,
                lib, threads[t % 2], ea ? "failed" : "passed", eb ? "failed" : "passed", V[v].fails ? "failures" : "success");
      CS_EXPECT(ea == eb, "%s: error codes %d (direct) and %d (HDF5)", V[v].name, (int)ea, (int)eb);
      if (!ea && !eb) Compare(V[v].name, &a, &b, &T);
      PetscCall(CsH5adBlockFree(&a));
      PetscCall(CsH5adBlockFree(&b));
    }
    for (int direct = 0; !V[v].fails && direct < 2; direct++) { /* HDF5, then pread where contiguous */
      PetscCall(PetscOptionsSetValue(NULL, "-h5ad_read_direct", direct ? "true" : "false"));
      PetscCall(CheckList(V[v].name, path, &T));
    }
    PetscCall(PetscFree(T.indptr));
    PetscCall(PetscFree2(T.indices, T.data));
  }
  PetscCall(PetscOptionsClearValue(NULL, "-h5ad_read_direct"));
  PetscCall(PetscOptionsClearValue(NULL, "-h5ad_inflate"));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv) { return CsTestMain(argc, argv, Run); }
