/* Streamed datasets: the rows stay in the file and are read on demand (see include/cellshift/dataset.h). The
   reading itself is the io module's (CsH5adStream: the same row readers as the in-memory read); here are the
   decision to stream, the blocks of global rows, and the agreement on errors. */
#include "dataimpl.h"
#include <ctype.h>
#include <math.h>
#if defined(__GLIBC__)
  #include <malloc.h>
#endif

PetscErrorCode CsParseBytes(MPI_Comm comm, const char what[], const char str[], double *bytes)
{
  char  *end;
  double v = strtod(str, &end), m = 1;

  PetscFunctionBeginUser;
  while (*end == ' ') end++;
  switch (toupper((unsigned char)*end)) {
  case 'K': m = 1024.0, end++; break;
  case 'M': m = 1024.0 * 1024, end++; break;
  case 'G': m = 1024.0 * 1024 * 1024, end++; break;
  case 'T': m = 1024.0 * 1024 * 1024 * 1024, end++; break;
  default: break;
  }
  if (toupper((unsigned char)*end) == 'B') end++;
  CsCheckAll(comm, end != str && !*end && isfinite(v) && v > 0, "%s must be a positive number of bytes, optionally with K, M, G or T (got '%s')", what, str);
  *bytes = v * m;
  PetscFunctionReturn(0);
}

static void Human(double b, char buf[32])
{
  const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int         k   = 0;
  while (b >= 1024 && k < 4) b /= 1024, k++;
  snprintf(buf, 32, "%.3g %s", b, u[k]);
}

/* -normalize on rows as they are read (the io module calls it on each row, on the reading thread): the in-memory
   transform (CsDatasetSetUp), row by row, so the values are the same bit for bit. The library sizes are not kept. */
static PetscErrorCode NormalizeRow(void *ctx, PetscInt row, float x[], int64_t m)
{
  CsDataset ds = (CsDataset)ctx;
  double    L;

  PetscFunctionBeginUser;
  PetscCheck(CsNormalizeRow(x, m, &L), PETSC_COMM_SELF, CS_ERR_INPUT, "-normalize: %s%s%s has a negative value in cell %" PetscInt_FMT "; -normalize expects raw counts",
             ds->path, ds->layer[0] ? " layer " : "", ds->layer, row);
  PetscFunctionReturn(0);
}

PetscErrorCode CsDatasetStreamOpen(CsDataset ds, PetscBool *streamed)
{
  CsH5adBlock b;
  int64_t     nnz = 0, v[2];
  double      shard, block;
  char        a[32], c[32];

  PetscFunctionBeginUser;
  *streamed = PETSC_FALSE;
  CsCheckAll(ds->comm, ds->stream_block >= 1, "-stream_block must be a positive number of rows (got %" PetscInt_FMT ")", ds->stream_block);
  CsCheckAll(ds->comm, !ds->data_list[0] && !strchr(ds->path, ','), "streaming (-stream, -memory_limit) reads one file; %s lists several",
             ds->path);
  CsCheckAll(ds->comm, !ds->subset[0], "streaming (-stream, -memory_limit) does not support -obs_subset: write the subset to a file first");
  PetscCall(CsH5adStreamOpen(ds->comm, ds->path, ds->layer, ds->nkeys, ds->keys, ds->required, &b, &nnz, &ds->st));
  v[0] = nnz, v[1] = nnz;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &v[0], 1, MPI_INT64_T, MPI_SUM, ds->comm));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &v[1], 1, MPI_INT64_T, MPI_MAX, ds->comm));
  {
    PetscInt mx = b.nlocal;
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &mx, 1, MPIU_INT, MPI_MAX, ds->comm));
    shard = 8.0 * (double)v[1] + 8.0 * (double)(mx + 1);
  }
  block = 8.0 * (double)PetscMin(ds->stream_block, b.nglobal) * ((double)v[0] / PetscMax(b.nglobal, 1) + 1);
  if (ds->memory_limit > 0) {
    Human(ds->memory_limit, a), Human(block, c);
    if (ds->memory_limit < block) {
      PetscCall(CsH5adBlockFree(&b));
      PetscCall(CsH5adStreamClose(&ds->st));
      CsCheckAll(ds->comm, PETSC_FALSE,
                 "-memory_limit %s is smaller than one streamed block of %s (%" PetscInt_FMT " rows of %s, %.4g non-zeros a row): raise "
                 "-memory_limit or lower -stream_block",
                 a, c, ds->stream_block, ds->path, (double)v[0] / PetscMax(b.nglobal, 1));
    }
  }
  if (!ds->stream && shard <= ds->memory_limit) { /* it fits: read it in memory as without the option */
    PetscCall(CsH5adBlockFree(&b));
    PetscCall(CsH5adStreamClose(&ds->st));
    PetscFunctionReturn(0);
  }
  PetscCall(PetscStrncpy(ds->encoding, b.encoding, sizeof(ds->encoding)));
  ds->nglobal = b.nglobal, ds->ngenes = b.ngenes, ds->rstart = b.rstart, ds->nlocal = b.nlocal;
  ds->genes = b.genes, ds->nobs = b.nobs, ds->obs = b.obs;
  PetscCall(PetscMemzero(&ds->X, sizeof(ds->X))); /* no rows held */
  ds->X.ncols  = ds->ngenes;
  ds->nnz      = v[0];
  ds->streamed = *streamed = PETSC_TRUE;
  if (!ds->stream_prefetch_set) {
    /* The prefetch thread hides reads from disk (10^7 cells read from disk: 128 s an epoch with it, 141 s
       without); rows in the page cache cost only their conversion, which the thread then does in turns with the
       ranks on a node whose cores they use (10^5 cached cells on 2 ranks x 2 cores: 0.73-0.79 of the in-memory
       throughput with it, 0.91 without). */
    double cached = CsFileCachedFraction(ds->path);
    ds->stream_prefetch = cached < 0.9 ? PETSC_TRUE : PETSC_FALSE;
    PetscCall(PetscInfo(NULL, "%s: %.0f%% in the page cache: prefetch %s\n", ds->path, 100 * cached, ds->stream_prefetch ? "on" : "off"));
  }
  if (ds->normalize) PetscCall(CsH5adStreamSetRowFn(ds->st, NormalizeRow, ds));
#if defined(__GLIBC__)
  /* A streamed epoch allocates and frees a block's rows (megabytes) hundreds of times, on the prefetch thread's
     arena and the main one. glibc raises its mmap threshold to the largest block freed, so the blocks then come
     from the heaps, whose free space fragments over the epoch: the resident peak grew with the number of blocks
     read, that is with the cells. A fixed threshold keeps every block mapped: realloc grows it without copying,
     and freed it goes back to the system (the stream sampler recycles its blocks' arrays, CsCSRRecycle, so that
     the pages are not faulted in again for every block). */
  (void)mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
  Human(shard, a), Human(block, c);
  PetscCall(PetscInfo(NULL, "streaming %s: largest shard %s, blocks of %" PetscInt_FMT " rows (%s)\n", ds->path, a, ds->stream_block, c));
  PetscFunctionReturn(0);
}

PetscErrorCode CsDatasetCheckResident(CsDataset ds, const char what[])
{
  PetscFunctionBeginUser;
  CsCheckAll(ds->comm, !ds->streamed, "%s needs the expression matrix in memory and is not supported in streaming mode (-stream, or "
             "-memory_limit below the shard of %s): leave those out or raise -memory_limit", what, ds->path);
  PetscFunctionReturn(0);
}

PetscErrorCode CsDatasetStreamBlocks(CsDataset ds, PetscInt *nblocks, PetscInt *block_rows)
{
  PetscFunctionBeginUser;
  PetscCheck(ds->streamed, ds->comm, PETSC_ERR_ORDER, "%s is not streamed", ds->path);
  *block_rows = ds->stream_block;
  *nblocks    = (ds->nglobal + ds->stream_block - 1) / ds->stream_block;
  PetscFunctionReturn(0);
}

/* The rank's part [r0, r1) (global rows) of block b. */
static void BlockPart(CsDataset ds, PetscInt b, PetscInt *r0, PetscInt *r1)
{
  PetscInt a = b * ds->stream_block, e = PetscMin(a + ds->stream_block, ds->nglobal);
  *r0 = PetscMax(a, ds->rstart), *r1 = PetscMin(e, ds->rstart + ds->nlocal);
  if (*r1 < *r0) *r1 = *r0;
}

static PetscErrorCode Parts(CsDataset ds, PetscInt n, const PetscInt blocks[], PetscInt **r0, PetscInt **r1)
{
  PetscInt nb = (ds->nglobal + ds->stream_block - 1) / ds->stream_block;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc2(n + 1, r0, n + 1, r1));
  for (PetscInt k = 0; k < n; k++) {
    PetscCheck(blocks[k] >= 0 && blocks[k] < nb, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE, "block %" PetscInt_FMT " of %" PetscInt_FMT,
               blocks[k], nb);
    BlockPart(ds, blocks[k], &(*r0)[k], &(*r1)[k]);
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsDatasetStreamPrefetch(CsDataset ds, PetscInt n, const PetscInt blocks[])
{
  PetscInt *r0, *r1;

  PetscFunctionBeginUser;
  if (!ds->stream_prefetch) PetscFunctionReturn(0);
  PetscCall(Parts(ds, n, blocks, &r0, &r1));
  PetscCall(CsH5adStreamReadBegin(ds->st, n, r0, r1));
  PetscCall(PetscFree2(r0, r1));
  PetscFunctionReturn(0);
}

static PetscErrorCode ReadLocal(CsDataset ds, PetscInt n, const PetscInt blocks[], CsCSR out[])
{
  PetscInt *r0, *r1;
  PetscBool found;

  PetscFunctionBeginUser;
  PetscCall(Parts(ds, n, blocks, &r0, &r1));
  for (PetscInt k = 0; k < n; k++) {
    PetscCall(CsH5adStreamClaim(ds->st, r0[k], r1[k], &out[k], &found));
    if (!found) PetscCall(CsH5adStreamReadRows(ds->st, r0[k], r1[k], &out[k]));
  }
  PetscCall(PetscFree2(r0, r1));
  PetscFunctionReturn(0);
}

PetscErrorCode CsDatasetStreamRead(CsDataset ds, PetscInt n, const PetscInt blocks[], CsCSR out[])
{
  PetscErrorCode ierr;
  char           msg[PETSC_MAX_PATH_LEN + 64];

  PetscFunctionBeginUser;
  PetscCheck(ds->streamed, ds->comm, PETSC_ERR_ORDER, "%s is not streamed", ds->path);
  PetscCall(PetscMemzero(out, sizeof(CsCSR) * n));
  PetscCall(PetscLogEventBegin(CS_EVENT_STREAM, 0, 0, 0, 0));
  ierr = ReadLocal(ds, n, blocks, out);
  PetscCall(PetscLogEventEnd(CS_EVENT_STREAM, 0, 0, 0, 0));
  if (ierr)
    for (PetscInt k = 0; k < n; k++) (void)CsCSRFree(&out[k]);
  PetscCall(PetscSNPrintf(msg, sizeof(msg), "reading streamed rows of %s failed (was it changed or removed while training?)", ds->path));
  PetscCall(CsAgreeCode(ds->comm, ierr, msg));
  PetscFunctionReturn(0);
}

PetscErrorCode CsDatasetStreamWait(CsDataset ds)
{
  PetscFunctionBeginUser;
  if (ds && ds->streamed) PetscCall(CsH5adStreamWait(ds->st));
  PetscFunctionReturn(0);
}

/* Local: rows local[0..n) through the io module's list read. */
static PetscErrorCode GetRowsLocal(CsDataset ds, PetscInt n, const PetscInt local[], CsCSR *out)
{
  PetscInt      *rows;
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(n + 1, &rows));
  for (PetscInt k = 0; k < n; k++) {
    PetscCheck(local[k] >= 0 && local[k] < ds->nlocal, PETSC_COMM_SELF, PETSC_ERR_ARG_OUTOFRANGE, "local row %" PetscInt_FMT " of %" PetscInt_FMT,
               local[k], ds->nlocal);
    rows[k] = ds->rstart + local[k];
  }
  ierr = CsH5adStreamReadList(ds->st, n, rows, out);
  PetscCall(PetscFree(rows));
  PetscCall(ierr);
  PetscFunctionReturn(0);
}

PetscErrorCode CsDatasetGetRows(CsDataset ds, PetscInt n, const PetscInt local[], CsCSR *out)
{
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  if (!ds->streamed) {
    PetscCall(CsCSRSubsetRows(&ds->X, n, local, out));
    PetscFunctionReturn(0);
  }
  PetscCall(CsCSRFree(out));
  ierr = GetRowsLocal(ds, n, local, out);
  if (ierr) (void)CsCSRFree(out);
  PetscCall(ierr);
  PetscFunctionReturn(0);
}

PetscErrorCode CsDatasetReadRows(CsDataset ds, PetscInt n, const PetscInt local[], CsCSR *out)
{
  PetscErrorCode ierr;
  char           msg[PETSC_MAX_PATH_LEN + 64];

  PetscFunctionBeginUser;
  if (!ds->streamed) {
    PetscCall(CsCSRSubsetRows(&ds->X, n, local, out));
    PetscFunctionReturn(0);
  }
  ierr = CsDatasetGetRows(ds, n, local, out);
  PetscCall(PetscSNPrintf(msg, sizeof(msg), "reading streamed rows of %s failed (was it changed or removed?)", ds->path));
  PetscCall(CsAgreeCode(ds->comm, ierr, msg));
  PetscFunctionReturn(0);
}

PetscErrorCode CsDatasetGetMasked(CsDataset ds, const PetscBool keep[], CsCSR *out, PetscBool *borrowed)
{
  PetscInt *rows, n = 0;
  CsCSR     S = {0};

  PetscFunctionBeginUser;
  if (!ds->streamed) {
    *out      = ds->X;
    *borrowed = PETSC_TRUE;
    PetscFunctionReturn(0);
  }
  *borrowed = PETSC_FALSE;
  PetscCall(PetscMalloc1(ds->nlocal + 1, &rows));
  for (PetscInt i = 0; i < ds->nlocal; i++)
    if (keep[i]) rows[n++] = i;
  PetscCall(CsDatasetReadRows(ds, n, rows, &S));
  /* Spread the kept rows over all nlocal rows: the others are empty. */
  PetscCall(PetscMemzero(out, sizeof(*out)));
  out->nrows = ds->nlocal, out->ncols = ds->ngenes, out->indices = S.indices, out->data = S.data;
  PetscCall(PetscMalloc1(ds->nlocal + 1, &out->indptr));
  out->indptr[0] = 0;
  for (PetscInt i = 0, k = 0; i < ds->nlocal; i++) {
    if (k < n && rows[k] == i) out->indptr[i + 1] = S.indptr[k + 1], k++;
    else out->indptr[i + 1] = out->indptr[i];
  }
  PetscCall(PetscFree(S.indptr));
  PetscCall(PetscFree(rows));
  PetscFunctionReturn(0);
}
