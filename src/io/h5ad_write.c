/* .h5ad writer (predictions, cellshift simulate): a dense or CSR X AnnData file laid out as anndata 0.8 writes it.
   See include/cellshift/h5ad.h.

   Parallel HDF5 1.10 cannot write variable-length strings through MPI-IO, so the file is made in two phases:
   rank 0 writes everything but the values of X with the serial driver (X itself, or CSR X's data, indices and
   indptr, created contiguous, unfiltered and allocated early, so their place in the file is fixed), then all ranks
   reopen the file with the MPI-IO driver and write their rows of X collectively. CSR needs the number of non-zeros
   at creation: every rank gives its own, and its non-zeros go after those of the ranks before it. */
#include <cellshift/h5ad.h>
#include <cellshift/h5util.h>

struct _n_CsH5adWriter {
  MPI_Comm  comm;
  CsOutFile out;
  PetscInt  nrows, ngenes;
  PetscInt  block;   /* most rows one rank writes in one collective call */
  PetscInt  written; /* rows written by this rank so far */
  hid_t     file, X; /* open on every rank (MPI-IO driver) between Create and Commit/Destroy */
  /* CSR X (csr): the datasets X/data, X/indices, X/indptr; this rank's non-zeros start at nzoff + nzdone */
  PetscBool csr;
  hid_t     data, indices, indptr;
  int64_t   nnz, nzlocal, nzoff, nzdone;
};

/* A variable-length UTF-8 string type. */
static PetscErrorCode Utf8Type(hid_t *t)
{
  PetscFunctionBeginUser;
  H5Call(*t = H5Tcopy(H5T_C_S1), "cannot make a string type");
  H5Call(H5Tset_size(*t, H5T_VARIABLE), "cannot make a string type");
  H5Call(H5Tset_cset(*t, H5T_CSET_UTF8), "cannot make a string type");
  PetscFunctionReturn(0);
}

/* The encoding-type / encoding-version pair anndata puts on every element. */
static PetscErrorCode WriteEncoding(hid_t obj, const char type[], const char version[])
{
  PetscFunctionBeginUser;
  PetscCall(CsH5WriteAttrString(obj, "encoding-type", type));
  PetscCall(CsH5WriteAttrString(obj, "encoding-version", version));
  PetscFunctionReturn(0);
}

static PetscErrorCode CreateGroup(hid_t loc, const char name[], const char type[], const char version[], hid_t *g)
{
  PetscFunctionBeginUser;
  H5Call(*g = H5Gcreate2(loc, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "cannot create group %s", name);
  PetscCall(WriteEncoding(*g, type, version));
  PetscFunctionReturn(0);
}

/* An empty mapping (obsm, varm, obsp, varp, layers, uns). */
static PetscErrorCode WriteEmptyDict(hid_t loc, const char name[])
{
  hid_t g;

  PetscFunctionBeginUser;
  PetscCall(CreateGroup(loc, name, "dict", "0.1.0", &g));
  PetscCall(CsH5Close(&g, name));
  PetscFunctionReturn(0);
}

/* A dataframe's column-order: an array of UTF-8 strings, or (no columns) the empty float64 array h5py writes for
   an empty list. */
static PetscErrorCode WriteColumnOrder(hid_t obj, PetscInt n, char *const *names)
{
  hsize_t dim = (hsize_t)n;
  hid_t   t, s, a;
  double  dummy = 0;

  PetscFunctionBeginUser;
  if (n) PetscCall(Utf8Type(&t));
  else H5Call(t = H5Tcopy(H5T_IEEE_F64LE), "column-order: cannot make a type");
  H5Call(s = H5Screate_simple(1, &dim, NULL), "column-order: cannot make a dataspace");
  H5Call(a = H5Acreate2(obj, "column-order", t, s, H5P_DEFAULT, H5P_DEFAULT), "cannot create attribute column-order");
  H5Call(H5Awrite(a, t, n ? (const void *)names : (const void *)&dummy), "cannot write attribute column-order");
  PetscCall(CsH5Close(&a, "column-order"));
  PetscCall(CsH5Close(&s, "column-order"));
  PetscCall(CsH5Close(&t, "column-order"));
  PetscFunctionReturn(0);
}

/* h5py's boolean: an int8 enum {FALSE = 0, TRUE = 1}. */
static PetscErrorCode WriteBoolAttr(hid_t obj, const char attr[], PetscBool v)
{
  int8_t f = 0, t = 1, val = v ? 1 : 0;
  hid_t  e, s, a;

  PetscFunctionBeginUser;
  H5Call(e = H5Tenum_create(H5T_NATIVE_INT8), "%s: cannot make the boolean type", attr);
  H5Call(H5Tenum_insert(e, "FALSE", &f), "%s: cannot make the boolean type", attr);
  H5Call(H5Tenum_insert(e, "TRUE", &t), "%s: cannot make the boolean type", attr);
  H5Call(s = H5Screate(H5S_SCALAR), "%s: cannot make a dataspace", attr);
  H5Call(a = H5Acreate2(obj, attr, e, s, H5P_DEFAULT, H5P_DEFAULT), "cannot create attribute %s", attr);
  H5Call(H5Awrite(a, e, &val), "cannot write attribute %s", attr);
  PetscCall(CsH5Close(&a, attr));
  PetscCall(CsH5Close(&s, attr));
  PetscCall(CsH5Close(&e, attr));
  PetscFunctionReturn(0);
}

/* obs/_index = "0", "1", ..., "n-1", written in blocks so that rank 0 never holds all the names at once. */
static PetscErrorCode WriteObsIndex(hid_t obs, PetscInt n)
{
  const PetscInt B = 1 << 16;
  hsize_t        dim = (hsize_t)n;
  hid_t          t, fs, d;
  char          *buf, **ptr;

  PetscFunctionBeginUser;
  PetscCall(Utf8Type(&t));
  H5Call(fs = H5Screate_simple(1, &dim, NULL), "obs/_index: cannot make a dataspace");
  H5Call(d = H5Dcreate2(obs, "_index", t, fs, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "cannot create obs/_index");
  PetscCall(PetscMalloc2(B * 24, &buf, B, &ptr));
  for (PetscInt start = 0; start < n; start += B) {
    hsize_t off = (hsize_t)start, cnt = (hsize_t)PetscMin(B, n - start);
    hid_t   ms;
    H5Call(ms = H5Screate_simple(1, &cnt, NULL), "obs/_index: cannot make a dataspace");
    for (hsize_t i = 0; i < cnt; i++) {
      ptr[i] = buf + 24 * i;
      snprintf(ptr[i], 24, "%lld", (long long)(off + i));
    }
    H5Call(H5Sselect_hyperslab(fs, H5S_SELECT_SET, &off, NULL, &cnt, NULL), "obs/_index: bad selection");
    H5Call(H5Dwrite(d, t, ms, fs, H5P_DEFAULT, ptr), "cannot write obs/_index");
    PetscCall(CsH5Close(&ms, "obs/_index"));
  }
  PetscCall(PetscFree2(buf, ptr));
  PetscCall(WriteEncoding(d, "string-array", "0.2.0"));
  PetscCall(CsH5Close(&d, "obs/_index"));
  PetscCall(CsH5Close(&fs, "obs/_index"));
  PetscCall(CsH5Close(&t, "obs/_index"));
  PetscFunctionReturn(0);
}

/* A string-array dataset with its encoding. */
static PetscErrorCode WriteStringArray(hid_t loc, const char name[], PetscInt n, char *const *s)
{
  hid_t d;

  PetscFunctionBeginUser;
  PetscCall(CsH5WriteStrings(loc, name, n, s));
  H5Call(d = H5Dopen2(loc, name, H5P_DEFAULT), "cannot open %s", name);
  PetscCall(WriteEncoding(d, "string-array", "0.2.0"));
  PetscCall(CsH5Close(&d, name));
  PetscFunctionReturn(0);
}

/* A pandas categorical: categories (strings) + codes in the smallest integer type pandas would choose. */
static PetscErrorCode WriteCategorical(hid_t obs, const CsH5adOutColumn *c, PetscInt nrows, PetscInt col, CsH5adCodeFill fill, void *ctx)
{
  hsize_t dim = (hsize_t)nrows;
  hid_t   g, s, d, ft;
  int32_t dummy = 0;

  PetscFunctionBeginUser;
  PetscCall(CreateGroup(obs, c->name, "categorical", "0.2.0", &g));
  PetscCall(WriteBoolAttr(g, "ordered", PETSC_FALSE));
  PetscCall(WriteStringArray(g, "categories", c->ncat, c->cats));
  ft = c->ncat < INT8_MAX ? H5T_STD_I8LE : c->ncat < INT16_MAX ? H5T_STD_I16LE : H5T_STD_I32LE;
  H5Call(s = H5Screate_simple(1, &dim, NULL), "obs/%s/codes: cannot make a dataspace", c->name);
  H5Call(d = H5Dcreate2(g, "codes", ft, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "cannot create obs/%s/codes",
         c->name);
  /* HDF5 narrows the int32 codes to the file type (they were checked to fit). */
  if (!c->codes && fill && nrows) {
    const PetscInt B = 1 << 16;
    int32_t       *buf;
    PetscCall(PetscMalloc1(B, &buf));
    for (PetscInt start = 0; start < nrows; start += B) {
      hsize_t off = (hsize_t)start, cnt = (hsize_t)PetscMin(B, nrows - start);
      hid_t   ms;
      PetscCall(fill(ctx, col, start, (PetscInt)cnt, buf));
      for (hsize_t i = 0; i < cnt; i++)
        PetscCheck(buf[i] >= -1 && buf[i] < c->ncat, PETSC_COMM_SELF, CS_ERR_INPUT,
                   "obs column '%s' has code %d at row %" PetscInt_FMT ", outside [-1, %" PetscInt_FMT ")", c->name,
                   (int)buf[i], start + (PetscInt)i, c->ncat);
      H5Call(ms = H5Screate_simple(1, &cnt, NULL), "obs/%s/codes: cannot make a dataspace", c->name);
      H5Call(H5Sselect_hyperslab(s, H5S_SELECT_SET, &off, NULL, &cnt, NULL), "obs/%s/codes: bad selection", c->name);
      H5Call(H5Dwrite(d, H5T_NATIVE_INT32, ms, s, H5P_DEFAULT, buf), "cannot write obs/%s/codes", c->name);
      PetscCall(CsH5Close(&ms, c->name));
    }
    PetscCall(PetscFree(buf));
  } else
    H5Call(H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, nrows ? (const void *)c->codes : &dummy),
           "cannot write obs/%s/codes", c->name);
  PetscCall(WriteEncoding(d, "array", "0.2.0"));
  PetscCall(CsH5Close(&d, c->name));
  PetscCall(CsH5Close(&s, c->name));
  PetscCall(CsH5Close(&g, c->name));
  PetscFunctionReturn(0);
}

/* Rank 0: every column has a usable name, distinct category names and codes in [-1, ncat). */
static PetscErrorCode CheckColumns(PetscInt nrows, PetscInt ncols, const CsH5adOutColumn *cols, PetscBool fill)
{
  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < ncols; k++) {
    const CsH5adOutColumn *c = &cols[k];
    PetscCheck(c->name && c->name[0] && strcmp(c->name, "_index") && !strchr(c->name, '/'), PETSC_COMM_SELF,
               CS_ERR_INPUT, "obs column %" PetscInt_FMT " has an unusable name '%s'", k, c->name ? c->name : "");
    for (PetscInt j = 0; j < k; j++)
      PetscCheck(strcmp(cols[j].name, c->name), PETSC_COMM_SELF, CS_ERR_INPUT, "obs column '%s' is given twice",
                 c->name);
    PetscCheck(c->ncat >= 0 && c->ncat < INT32_MAX && (c->ncat == 0 || c->cats), PETSC_COMM_SELF, CS_ERR_INPUT,
               "obs column '%s' has no categories", c->name);
    PetscCheck(nrows == 0 || c->codes || fill, PETSC_COMM_SELF, CS_ERR_INPUT, "obs column '%s' has no codes on rank 0", c->name);
    for (PetscInt i = 0; c->codes && i < nrows; i++)
      PetscCheck(c->codes[i] >= -1 && c->codes[i] < c->ncat, PETSC_COMM_SELF, CS_ERR_INPUT,
                 "obs column '%s' has code %d at row %" PetscInt_FMT ", outside [-1, %" PetscInt_FMT ")", c->name,
                 (int)c->codes[i], i, c->ncat);
  }
  PetscFunctionReturn(0);
}

/* A contiguous dataset of n elements of type t, allocated now and never filled (the parallel phase writes raw data
   into place). */
static PetscErrorCode CreateFixed(hid_t loc, const char name[], hid_t t, int rank, const hsize_t dims[])
{
  hid_t dcpl, s, d;

  PetscFunctionBeginUser;
  H5Call(dcpl = H5Pcreate(H5P_DATASET_CREATE), "%s: cannot make creation properties", name);
  H5Call(H5Pset_layout(dcpl, H5D_CONTIGUOUS), "%s: cannot set the layout", name);
  H5Call(H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY), "%s: cannot set the allocation time", name);
  H5Call(H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER), "%s: cannot set the fill time", name);
  H5Call(s = H5Screate_simple(rank, dims, NULL), "%s: cannot make a dataspace", name);
  H5Call(d = H5Dcreate2(loc, name, t, s, H5P_DEFAULT, dcpl, H5P_DEFAULT), "cannot create %s", name);
  if (rank == 2) PetscCall(WriteEncoding(d, "array", "0.2.0"));
  PetscCall(CsH5Close(&d, name));
  PetscCall(CsH5Close(&s, name));
  PetscCall(CsH5Close(&dcpl, name));
  PetscFunctionReturn(0);
}

/* CSR X as anndata writes it: group X (csr_matrix 0.1.0, shape) with data float32, indices int32, indptr int64. */
static PetscErrorCode CreateCSR(hid_t f, PetscInt nrows, PetscInt ngenes, int64_t nnz)
{
  hid_t   X, s, a;
  hsize_t two = 2, nz = (hsize_t)nnz, np = (hsize_t)nrows + 1;
  int64_t shape[2] = {nrows, ngenes};

  PetscFunctionBeginUser;
  PetscCall(CreateGroup(f, "X", "csr_matrix", "0.1.0", &X));
  H5Call(s = H5Screate_simple(1, &two, NULL), "X: cannot make a dataspace");
  H5Call(a = H5Acreate2(X, "shape", H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT), "cannot create attribute shape of X");
  H5Call(H5Awrite(a, H5T_NATIVE_INT64, shape), "cannot write attribute shape of X");
  PetscCall(CsH5Close(&a, "X"));
  PetscCall(CsH5Close(&s, "X"));
  PetscCall(CreateFixed(X, "data", H5T_IEEE_F32LE, 1, &nz));
  PetscCall(CreateFixed(X, "indices", H5T_STD_I32LE, 1, &nz));
  PetscCall(CreateFixed(X, "indptr", H5T_STD_I64LE, 1, &np));
  PetscCall(CsH5Close(&X, "X"));
  PetscFunctionReturn(0);
}

static PetscErrorCode WriteMetadataTo(hid_t f, PetscInt nrows, PetscInt ngenes, int64_t nnz, char *const *genes, PetscInt ncols,
                                      const CsH5adOutColumn *cols, CsH5adCodeFill fill, void *ctx)
{
  hid_t   obs, var;
  hsize_t dims[2] = {(hsize_t)nrows, (hsize_t)ngenes};
  char  **names;

  PetscFunctionBeginUser;
  PetscCall(WriteEncoding(f, "anndata", "0.1.0"));

  PetscCall(CreateGroup(f, "obs", "dataframe", "0.2.0", &obs));
  PetscCall(CsH5WriteAttrString(obs, "_index", "_index"));
  PetscCall(PetscMalloc1(ncols + 1, &names));
  for (PetscInt k = 0; k < ncols; k++) names[k] = (char *)cols[k].name;
  PetscCall(WriteColumnOrder(obs, ncols, names));
  PetscCall(PetscFree(names));
  PetscCall(WriteObsIndex(obs, nrows));
  for (PetscInt k = 0; k < ncols; k++) PetscCall(WriteCategorical(obs, &cols[k], nrows, k, fill, ctx));
  PetscCall(CsH5Close(&obs, "obs"));

  PetscCall(CreateGroup(f, "var", "dataframe", "0.2.0", &var));
  PetscCall(CsH5WriteAttrString(var, "_index", "_index"));
  PetscCall(WriteColumnOrder(var, 0, NULL));
  PetscCall(WriteStringArray(var, "_index", ngenes, genes));
  PetscCall(CsH5Close(&var, "var"));

  /* X: contiguous and allocated now, never filled, so the parallel phase only writes raw data into place. */
  if (nnz >= 0) PetscCall(CreateCSR(f, nrows, ngenes, nnz));
  else PetscCall(CreateFixed(f, "X", H5T_IEEE_F32LE, 2, dims));

  PetscCall(WriteEmptyDict(f, "layers"));
  PetscCall(WriteEmptyDict(f, "obsm"));
  PetscCall(WriteEmptyDict(f, "obsp"));
  PetscCall(WriteEmptyDict(f, "uns"));
  PetscCall(WriteEmptyDict(f, "varm"));
  PetscCall(WriteEmptyDict(f, "varp"));
  PetscFunctionReturn(0);
}

/* Rank 0, serial driver: the whole file except the values of X. Closes the file on every path. */
static PetscErrorCode WriteMetadata(const char tmp[], PetscInt nrows, PetscInt ngenes, int64_t nnz, char *const *genes,
                                    PetscInt ncols, const CsH5adOutColumn *cols, CsH5adCodeFill fill, void *ctx)
{
  hid_t          fapl, f;
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  PetscCall(CheckColumns(nrows, ncols, cols, fill ? PETSC_TRUE : PETSC_FALSE));
  for (PetscInt j = 0; j < ngenes; j++)
    PetscCheck(genes && genes[j], PETSC_COMM_SELF, CS_ERR_INPUT, "gene %" PetscInt_FMT " has no name", j);
  H5Call(fapl = H5Pcreate(H5P_FILE_ACCESS), "%s: cannot make file access properties", tmp);
  H5Call(H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG), "%s: cannot set the close degree", tmp); /* an error half-way leaves objects open: close them too */
  f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  PetscCall(CsH5Close(&fapl, tmp));
  PetscCheck(f >= 0, PETSC_COMM_SELF, CS_ERR_INPUT, "cannot create %s", tmp);
  ierr = WriteMetadataTo(f, nrows, ngenes, nnz, genes, ncols, cols, fill, ctx);
  if (H5Fclose(f) < 0 && !ierr) SETERRQ(PETSC_COMM_SELF, PETSC_ERR_FILE_WRITE, "cannot close %s", tmp);
  PetscCall(ierr);
  PetscFunctionReturn(0);
}

/* Every rank: reopen the file with the MPI-IO driver and open X. */
static PetscErrorCode OpenParallel(CsH5adWriter w)
{
  hid_t fapl;

  PetscFunctionBeginUser;
  H5Call(fapl = H5Pcreate(H5P_FILE_ACCESS), "%s: cannot make file access properties", w->out.tmp);
  H5Call(H5Pset_fapl_mpio(fapl, w->comm, MPI_INFO_NULL), "cannot select the MPI-IO driver");
  w->file = H5Fopen(w->out.tmp, H5F_ACC_RDWR, fapl);
  PetscCall(CsH5Close(&fapl, w->out.tmp));
  PetscCheck(w->file >= 0, PETSC_COMM_SELF, PETSC_ERR_FILE_OPEN, "cannot reopen %s with MPI-IO", w->out.tmp);
  if (w->csr) {
    H5Call(w->data = H5Dopen2(w->file, "X/data", H5P_DEFAULT), "cannot open X/data in %s", w->out.tmp);
    H5Call(w->indices = H5Dopen2(w->file, "X/indices", H5P_DEFAULT), "cannot open X/indices in %s", w->out.tmp);
    H5Call(w->indptr = H5Dopen2(w->file, "X/indptr", H5P_DEFAULT), "cannot open X/indptr in %s", w->out.tmp);
  } else H5Call(w->X = H5Dopen2(w->file, "X", H5P_DEFAULT), "cannot open X in %s", w->out.tmp);
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5adWriterOptions(MPI_Comm comm, PetscReal *mb)
{
  PetscFunctionBeginUser;
  PetscOptionsBegin(comm, NULL, "Writing .h5ad files", "CsH5adWriterCreate");
  PetscCall(PetscOptionsReal("-h5ad_write_block_mb", "Most MB of X one rank writes in one collective call (keeps MPI-IO requests below 2 GB)",
                             "CsH5adWriterCreate", *mb, mb, NULL));
  PetscOptionsEnd();
  PetscCheck(*mb > 0, comm, CS_ERR_INPUT, "-h5ad_write_block_mb must be positive (got %g)", (double)*mb);
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5adWriterCreate(MPI_Comm comm, const char path[], PetscInt nrows, PetscInt ngenes, char *const *genes,
                                  PetscInt ncols, const CsH5adOutColumn *cols, CsH5adWriter *w)
{
  PetscFunctionBeginUser;
  PetscCall(CsH5adWriterCreateFill(comm, path, nrows, ngenes, genes, ncols, cols, NULL, NULL, w));
  PetscFunctionReturn(0);
}

/* Dense (nzlocal < 0 on every rank) or CSR with nzlocal non-zeros on this rank. */
static PetscErrorCode WriterCreate(MPI_Comm comm, const char path[], PetscInt nrows, PetscInt ngenes, int64_t nzlocal, char *const *genes,
                                   PetscInt ncols, const CsH5adOutColumn *cols, CsH5adCodeFill fill, void *ctx, CsH5adWriter *w)
{
  CsH5adWriter   W;
  PetscMPIInt    rank;
  PetscErrorCode ierr = 0;
  PetscReal      mb   = 256;

  PetscFunctionBeginUser;
  *w = NULL;
  PetscCheck(nrows >= 0 && ngenes >= 0 && ncols >= 0, comm, PETSC_ERR_ARG_OUTOFRANGE, "%s: negative size", path);
  PetscCall(CsH5adWriterOptions(comm, &mb));
  PetscCall(PetscLogEventBegin(CS_EVENT_WRITE, 0, 0, 0, 0));
  PetscCall(PetscNew(&W));
  W->comm   = comm;
  W->nrows  = nrows;
  W->ngenes = ngenes;
  W->file = W->X = W->data = W->indices = W->indptr = H5I_INVALID_HID;
  W->block       = (PetscInt)PetscMax(1.0, mb * 1048576.0 / (4.0 * (double)PetscMax(ngenes, 1)));
  W->csr         = (PetscBool)(nzlocal >= 0);
  W->nnz         = -1;
  if (W->csr) {
    W->nzlocal = nzlocal;
    PetscCallMPI(MPI_Exscan(&W->nzlocal, &W->nzoff, 1, MPI_INT64_T, MPI_SUM, comm));
    PetscCallMPI(MPI_Allreduce(&W->nzlocal, &W->nnz, 1, MPI_INT64_T, MPI_SUM, comm));
    PetscCallMPI(MPI_Comm_rank(comm, &rank));
    if (!rank) W->nzoff = 0; /* MPI_Exscan leaves rank 0's result undefined */
  }
  PetscCall(CsOutFileBegin(comm, path, &W->out));
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  if (!rank) ierr = WriteMetadata(W->out.tmp, nrows, ngenes, W->nnz, genes, ncols, cols, fill, ctx);
  ierr = CsAgreeCode(comm, ierr, path);
  if (!ierr) {
    ierr = OpenParallel(W);
    ierr = CsAgreeCode(comm, ierr, path);
  }
  if (ierr) {
    PetscCall(CsH5adWriterDestroy(&W));
    PetscCall(PetscLogEventEnd(CS_EVENT_WRITE, 0, 0, 0, 0));
    PetscFunctionReturn(ierr);
  }
  *w = W;
  PetscCall(PetscLogEventEnd(CS_EVENT_WRITE, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5adWriterCreateFill(MPI_Comm comm, const char path[], PetscInt nrows, PetscInt ngenes, char *const *genes,
                                      PetscInt ncols, const CsH5adOutColumn *cols, CsH5adCodeFill fill, void *ctx, CsH5adWriter *w)
{
  PetscFunctionBeginUser;
  PetscCall(WriterCreate(comm, path, nrows, ngenes, -1, genes, ncols, cols, fill, ctx, w));
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5adWriterCreateCSRFill(MPI_Comm comm, const char path[], PetscInt nrows, PetscInt ngenes, int64_t nzlocal, char *const *genes,
                                         PetscInt ncols, const CsH5adOutColumn *cols, CsH5adCodeFill fill, void *ctx, CsH5adWriter *w)
{
  PetscFunctionBeginUser;
  PetscCheck(nzlocal >= 0, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE, "%s: negative number of non-zeros", path);
  PetscCall(WriterCreate(comm, path, nrows, ngenes, nzlocal, genes, ncols, cols, fill, ctx, w));
  PetscFunctionReturn(0);
}

/* This rank's rows in pieces of at most w->block rows: `npieces` collective calls, the same count on all ranks,
   ranks with fewer pieces taking part with an empty selection. */
static PetscErrorCode WritePieces(CsH5adWriter w, PetscInt row0, PetscInt n, const float *rows, PetscInt npieces)
{
  hid_t dxpl, fs, ms;
  float dummy = 0;

  PetscFunctionBeginUser;
  H5Call(dxpl = H5Pcreate(H5P_DATASET_XFER), "cannot make transfer properties");
  H5Call(H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE), "cannot select collective I/O");
  H5Call(fs = H5Dget_space(w->X), "cannot get the dataspace of X");
  for (PetscInt p = 0; p < npieces; p++) {
    PetscInt    r0     = p * w->block, cnt = PetscMax(0, PetscMin(w->block, n - r0));
    hsize_t     off[2] = {(hsize_t)(row0 + r0), 0}, dims[2] = {(hsize_t)PetscMax(cnt, 1), (hsize_t)w->ngenes};
    const void *buf    = cnt ? (const void *)(rows + (size_t)r0 * (size_t)w->ngenes) : (const void *)&dummy;

    H5Call(ms = H5Screate_simple(2, dims, NULL), "X: cannot make a dataspace");
    if (cnt) H5Call(H5Sselect_hyperslab(fs, H5S_SELECT_SET, off, NULL, dims, NULL), "X: bad selection");
    else {
      H5Call(H5Sselect_none(fs), "X: bad selection");
      H5Call(H5Sselect_none(ms), "X: bad selection");
    }
    H5Call(H5Dwrite(w->X, H5T_NATIVE_FLOAT, ms, fs, dxpl, buf), "cannot write rows %" PetscInt_FMT "..%" PetscInt_FMT
           " of X", row0 + r0, row0 + r0 + cnt);
    PetscCall(CsH5Close(&ms, "X"));
  }
  PetscCall(CsH5Close(&fs, "X"));
  PetscCall(CsH5Close(&dxpl, "X"));
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5adWriterWriteRows(CsH5adWriter w, PetscInt row0, PetscInt n, const float *rows)
{
  PetscInt       npieces;
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  CsCheckAll(w->comm, !w->csr && row0 >= 0 && n >= 0 && row0 + n <= w->nrows && (n == 0 || rows),
             "%s: rows [%" PetscInt_FMT ", %" PetscInt_FMT ") are outside the %" PetscInt_FMT " rows of X",
             w->out.final, row0, row0 + n, w->nrows);
  if (!w->ngenes) { /* nothing to store */
    w->written += n;
    PetscFunctionReturn(0);
  }
  PetscCall(PetscLogEventBegin(CS_EVENT_WRITE, 0, 0, 0, 0));
  npieces = (n + w->block - 1) / w->block;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &npieces, 1, MPIU_INT, MPI_MAX, w->comm));
  ierr = WritePieces(w, row0, n, rows, npieces);
  PetscCall(CsAgreeCode(w->comm, ierr, w->out.final));
  w->written += n;
  PetscCall(PetscLogEventEnd(CS_EVENT_WRITE, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

/* One collective write of n elements at off of the 1-D dataset d (n = 0: an empty selection). */
static PetscErrorCode Write1(hid_t d, hid_t dxpl, hid_t mt, int64_t off, int64_t n, const void *buf, const char name[])
{
  hid_t   fs, ms;
  hsize_t o = (hsize_t)off, c = (hsize_t)PetscMax(n, 1);
  double  dummy = 0;

  PetscFunctionBeginUser;
  H5Call(fs = H5Dget_space(d), "cannot get the dataspace of %s", name);
  H5Call(ms = H5Screate_simple(1, &c, NULL), "%s: cannot make a dataspace", name);
  if (n) H5Call(H5Sselect_hyperslab(fs, H5S_SELECT_SET, &o, NULL, &c, NULL), "%s: bad selection", name);
  else {
    H5Call(H5Sselect_none(fs), "%s: bad selection", name);
    H5Call(H5Sselect_none(ms), "%s: bad selection", name);
  }
  H5Call(H5Dwrite(d, mt, ms, fs, dxpl, n ? buf : (const void *)&dummy), "cannot write %s", name);
  PetscCall(CsH5Close(&ms, name));
  PetscCall(CsH5Close(&fs, name));
  PetscFunctionReturn(0);
}

/* This rank's CSR rows in pieces of at most w->block rows, npieces collective calls on every rank. */
static PetscErrorCode WriteCSRPieces(CsH5adWriter w, PetscInt row0, const CsCSR *A, PetscInt npieces, int64_t *ptr)
{
  hid_t dxpl;

  PetscFunctionBeginUser;
  H5Call(dxpl = H5Pcreate(H5P_DATASET_XFER), "cannot make transfer properties");
  H5Call(H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE), "cannot select collective I/O");
  for (PetscInt p = 0; p < npieces; p++) {
    PetscInt r0 = p * w->block, cnt = PetscMax(0, PetscMin(w->block, A->nrows - r0));
    int64_t  e0 = cnt ? A->indptr[r0] : 0, ne = cnt ? A->indptr[r0 + cnt] - e0 : 0, base = w->nzoff + w->nzdone;
    PetscBool last = (PetscBool)(cnt && row0 + r0 + cnt == w->nrows); /* the owner of the last row writes indptr[nrows] too */
    for (PetscInt i = 0; i <= cnt; i++) ptr[i] = base + A->indptr[r0 + i] - A->indptr[0];
    PetscCall(Write1(w->data, dxpl, H5T_NATIVE_FLOAT, base + e0 - A->indptr[0], ne, A->data + e0, "X/data"));
    PetscCall(Write1(w->indices, dxpl, H5T_NATIVE_INT32, base + e0 - A->indptr[0], ne, A->indices + e0, "X/indices"));
    PetscCall(Write1(w->indptr, dxpl, H5T_NATIVE_INT64, row0 + r0, cnt ? cnt + last : 0, ptr, "X/indptr"));
  }
  PetscCall(CsH5Close(&dxpl, "X"));
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5adWriterWriteCSRRows(CsH5adWriter w, PetscInt row0, const CsCSR *A)
{
  PetscInt       npieces, n = A ? A->nrows : 0;
  int64_t        nz = n ? A->indptr[n] - A->indptr[0] : 0, *ptr;
  PetscBool      ok;
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  ok = (PetscBool)(w->csr && row0 >= 0 && n >= 0 && row0 + n <= w->nrows && (!n || A->ncols == w->ngenes) && w->nzdone + nz <= w->nzlocal);
  CsCheckAll(w->comm, ok,
             "%s: rows [%" PetscInt_FMT ", %" PetscInt_FMT ") of %" PetscInt_FMT " columns do not fit the CSR X of %" PetscInt_FMT " x %" PetscInt_FMT
             " with %lld non-zeros on this rank",
             w->out.final, row0, row0 + n, n ? A->ncols : w->ngenes, w->nrows, w->ngenes, (long long)w->nzlocal);
  PetscCall(PetscLogEventBegin(CS_EVENT_WRITE, 0, 0, 0, 0));
  npieces = (n + w->block - 1) / w->block;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &npieces, 1, MPIU_INT, MPI_MAX, w->comm));
  PetscCall(PetscMalloc1(PetscMin(n, w->block) + 2, &ptr));
  ierr = WriteCSRPieces(w, row0, A, npieces, ptr);
  PetscCall(PetscFree(ptr));
  PetscCall(CsAgreeCode(w->comm, ierr, w->out.final));
  w->written += n, w->nzdone += nz;
  PetscCall(PetscLogEventEnd(CS_EVENT_WRITE, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5adWriterCommit(CsH5adWriter *w)
{
  CsH5adWriter W = *w;
  PetscInt     total;
  PetscBool    closed;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Allreduce(&W->written, &total, 1, MPIU_INT, MPI_SUM, W->comm));
  if (total != W->nrows) {
    char     path[PETSC_MAX_PATH_LEN];
    PetscInt nrows = W->nrows;
    PetscCall(PetscStrncpy(path, W->out.final, sizeof(path)));
    PetscCall(CsH5adWriterDestroy(w));
    SETERRQ(PETSC_COMM_SELF, PETSC_ERR_ARG_WRONG, "%s: %" PetscInt_FMT " of the %" PetscInt_FMT " rows of X were written",
            path, total, nrows);
  }
  {
    int64_t nzdone;
    PetscCallMPI(MPI_Allreduce(&W->nzdone, &nzdone, 1, MPI_INT64_T, MPI_SUM, W->comm));
    if (W->csr && nzdone != W->nnz) {
      char    path[PETSC_MAX_PATH_LEN];
      int64_t nnz = W->nnz;
      PetscCall(PetscStrncpy(path, W->out.final, sizeof(path)));
      PetscCall(CsH5adWriterDestroy(w));
      SETERRQ(PETSC_COMM_SELF, PETSC_ERR_ARG_WRONG, "%s: %lld of the %lld non-zeros of X were written", path, (long long)nzdone, (long long)nnz);
    }
  }
  closed = PETSC_TRUE;
  {
    hid_t *d[4] = {&W->X, &W->data, &W->indices, &W->indptr};
    for (int k = 0; k < 4; k++)
      if (*d[k] >= 0) closed = H5Dclose(*d[k]) >= 0 ? closed : PETSC_FALSE, *d[k] = H5I_INVALID_HID;
  }
  closed = H5Fclose(W->file) >= 0 ? closed : PETSC_FALSE;
  W->file = H5I_INVALID_HID;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &closed, 1, MPIU_BOOL, MPI_LAND, W->comm));
  if (!closed) {
    char path[PETSC_MAX_PATH_LEN];
    PetscCall(PetscStrncpy(path, W->out.final, sizeof(path)));
    PetscCall(CsH5adWriterDestroy(w));
    SETERRQ(PETSC_COMM_SELF, PETSC_ERR_FILE_WRITE, "cannot close %s", path);
  }
  PetscCall(CsOutFileCommit(W->comm, &W->out));
  PetscCall(PetscFree(*w));
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5adWriterDestroy(CsH5adWriter *w)
{
  PetscFunctionBeginUser;
  if (!*w) PetscFunctionReturn(0);
  /* The error path: the temporary file is removed whatever closing it reports. */
  if ((*w)->X >= 0) (void)H5Dclose((*w)->X);
  if ((*w)->data >= 0) (void)H5Dclose((*w)->data);
  if ((*w)->indices >= 0) (void)H5Dclose((*w)->indices);
  if ((*w)->indptr >= 0) (void)H5Dclose((*w)->indptr);
  if ((*w)->file >= 0) (void)H5Fclose((*w)->file);
  PetscCall(CsOutFileAbandon((*w)->comm, &(*w)->out));
  PetscCall(PetscFree(*w));
  PetscFunctionReturn(0);
}
