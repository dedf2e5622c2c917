/* CsDataset: this rank's shard of cells. See include/cellshift/dataset.h. */
#include "dataimpl.h"
#include <cellshift/h5util.h>
#include <cellshift/rng.h>
#include <math.h>

PetscErrorCode CsDatasetCreate(MPI_Comm comm, CsDataset *out)
{
  CsDataset ds;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&ds));
  ds->comm = comm;
  ds->nfiles = 1;
  ds->stream_block = 4096;
  ds->depth_fraction = 1, ds->max_mito = 1;
  ds->stream_prefetch = PETSC_TRUE;
  PetscCall(PetscStrncpy(ds->genes_mode, "intersection", sizeof(ds->genes_mode)));
  *out     = ds;
  PetscFunctionReturn(0);
}

PetscErrorCode CsDatasetSetFile(CsDataset ds, const char path[], const char layer[])
{
  PetscFunctionBeginUser;
  PetscCall(PetscStrncpy(ds->path, path, sizeof(ds->path)));
  PetscCall(PetscStrncpy(ds->layer, layer ? layer : "", sizeof(ds->layer)));
  PetscFunctionReturn(0);
}

PetscErrorCode CsDatasetSetFromOptions(CsDataset ds)
{
  char      limit[64] = "";
  PetscBool set       = PETSC_FALSE, pset = PETSC_FALSE;

  PetscFunctionBeginUser;
  ds->input = PETSC_TRUE;
  PetscOptionsBegin(ds->comm, NULL, "Input data", "CsDataset");
  PetscCall(PetscOptionsString("-data", "AnnData .h5ad file with the cells", "CsDatasetSetFromOptions", ds->path, ds->path,
                               sizeof(ds->path), NULL));
  PetscCall(PetscOptionsString("-data_list", "File listing .h5ad files (one per line) read as one dataset", "CsDatasetSetFromOptions",
                               ds->data_list, ds->data_list, sizeof(ds->data_list), NULL));
  PetscCall(PetscOptionsString("-genes", "Several files: genes in every file (intersection) or in any (union, zeros where missing)",
                               "CsDatasetSetFromOptions", ds->genes_mode, ds->genes_mode, sizeof(ds->genes_mode), NULL));
  PetscCall(PetscOptionsBool("-obs_fill", "Several files: an obs column missing in a file is missing for its cells (else an error)",
                             "CsDatasetSetFromOptions", ds->obs_fill, &ds->obs_fill, NULL));
  PetscCall(PetscOptionsString("-layer", "Read layers/NAME instead of X", "CsDatasetSetFromOptions", ds->layer, ds->layer,
                               sizeof(ds->layer), NULL));
  PetscCall(PetscOptionsBool("-normalize", "X holds raw counts: scale each cell to 1e4 counts and take log1p", "CsDatasetSetFromOptions",
                             ds->normalize, &ds->normalize, NULL));
  PetscCall(PetscOptionsString("-obs_subset", "Keep only cells with obs KEY in the listed values: KEY=v1,v2", "CsDatasetSetFromOptions",
                               ds->subset, ds->subset, sizeof(ds->subset), NULL));
  PetscCall(PetscOptionsString("-quality_weight", "Per-cell sampling weights of the cells sampler: none, qc (QC covariates; needs -normalize) or "
                                                  "obs:COLUMN[=VALUE]", "CsDatasetSetFromOptions", ds->quality, ds->quality, sizeof(ds->quality), NULL));
  PetscCall(PetscOptionsBool("-stream", "Read the rows on demand from the file in blocks (streamed training) instead of holding them",
                             "CsDatasetSetFromOptions", ds->stream, &ds->stream, NULL));
  PetscCall(PetscOptionsString("-memory_limit", "Stream when a rank's shard would exceed this many bytes (suffixes K, M, G, T)",
                               "CsDatasetSetFromOptions", limit, limit, sizeof(limit), &set));
  PetscCall(PetscOptionsInt("-stream_block", "Streaming: rows per block read from the file", "CsDatasetSetFromOptions", ds->stream_block,
                            &ds->stream_block, NULL));
  PetscCall(PetscOptionsReal("-depth_fraction", "Raw counts: keep each read with this probability (binomial downsampling of the depth; 1 = all)",
                             "CsDatasetSetUp", ds->depth_fraction, &ds->depth_fraction, NULL));
  PetscCall(PetscOptionsInt("-depth_seed", "Seed of -depth_fraction", "CsDatasetSetUp", ds->depth_seed, &ds->depth_seed, NULL));
  PetscCall(PetscOptionsReal("-min_counts", "Raw counts: drop cells with fewer counts (QC; 0 = keep all)", "CsDatasetSetUp", ds->min_counts,
                             &ds->min_counts, NULL));
  PetscCall(PetscOptionsReal("-max_mito_fraction", "Raw counts: drop cells with a larger fraction of their counts in MT- genes (QC; 1 = keep all)",
                             "CsDatasetSetUp", ds->max_mito, &ds->max_mito, NULL));
  PetscCall(PetscOptionsBool("-stream_prefetch", "Streaming: read the next window of blocks on a thread while one trains (default: unless the file is in the page cache)",
                             "CsDatasetSetFromOptions", ds->stream_prefetch, &ds->stream_prefetch, &pset));
  if (pset) ds->stream_prefetch_set = PETSC_TRUE;
  PetscOptionsEnd();
  if (set) PetscCall(CsParseBytes(ds->comm, "-memory_limit", limit, &ds->memory_limit));
  CsCheckAll(ds->comm, ds->depth_fraction > 0 && ds->depth_fraction <= 1, "-depth_fraction %g: give a fraction in (0, 1]", (double)ds->depth_fraction);
  CsCheckAll(ds->comm, ds->min_counts >= 0, "-min_counts %g: give a number of counts >= 0", (double)ds->min_counts);
  CsCheckAll(ds->comm, ds->max_mito >= 0 && ds->max_mito <= 1, "-max_mito_fraction %g: give a fraction in [0, 1]", (double)ds->max_mito);
  PetscFunctionReturn(0);
}

PetscErrorCode CsDatasetAddObsKey(CsDataset ds, const char key[], PetscBool required)
{
  PetscFunctionBeginUser;
  PetscCheck(!ds->setup, ds->comm, PETSC_ERR_ORDER, "add obs keys before CsDatasetSetUp");
  for (PetscInt k = 0; k < ds->nkeys; k++)
    if (!strcmp(ds->keys[k], key)) {
      ds->required[k] = (PetscBool)(ds->required[k] || required);
      PetscFunctionReturn(0);
    }
  PetscCall(PetscRealloc(sizeof(char *) * (ds->nkeys + 1), &ds->keys));
  PetscCall(PetscRealloc(sizeof(PetscBool) * (ds->nkeys + 1), &ds->required));
  PetscCall(PetscStrallocpy(key, &ds->keys[ds->nkeys]));
  ds->required[ds->nkeys++] = required;
  PetscFunctionReturn(0);
}

PetscErrorCode CsDatasetGetObs(CsDataset ds, const char key[], CsObsColumn **col)
{
  CsH5adBlock b = {.nobs = ds->nobs, .obs = ds->obs};

  PetscFunctionBeginUser;
  *col = CsH5adBlockGetObs(&b, key);
  /* a released column has neither codes nor values; a capped string array never had codes */
  PetscCheck(!*col || (*col)->codes || (*col)->values || (*col)->capped, PETSC_COMM_SELF, PETSC_ERR_ORDER,
             "obs column '%s' was released after the design was set up (CsDatasetReleaseObs)", key);
  PetscFunctionReturn(0);
}

PetscErrorCode CsDatasetReleaseObs(CsDataset ds, const char key[])
{
  CsH5adBlock  b = {.nobs = ds->nobs, .obs = ds->obs};
  CsObsColumn *c = CsH5adBlockGetObs(&b, key);

  PetscFunctionBeginUser;
  if (c) PetscCall(PetscFree(c->codes));
  if (c) PetscCall(PetscFree(c->values));
  PetscFunctionReturn(0);
}

/* The ownership of rows after the local count changed: rstart and nglobal follow from it. */
static PetscErrorCode SetRows(CsDataset ds)
{
  PetscFunctionBeginUser;
  PetscCall(PetscLayoutDestroy(&ds->rows));
  PetscCall(PetscLayoutCreateFromSizes(ds->comm, ds->nlocal, PETSC_DECIDE, 1, &ds->rows));
  ds->rstart  = ds->rows->rstart;
  ds->nglobal = ds->rows->N;
  PetscFunctionReturn(0);
}

/* The block the reader returns becomes the dataset's: its arrays are moved, not copied. */
static PetscErrorCode ReadBlock(CsDataset ds)
{
  CsH5adBlock b;
  PetscBool   streamed = PETSC_FALSE;

  PetscFunctionBeginUser;
  if (ds->stream || ds->memory_limit > 0) PetscCall(CsDatasetStreamOpen(ds, &streamed));
  if (streamed) {
    PetscCall(SetRows(ds));
    PetscFunctionReturn(0);
  }
  if (ds->data_list[0] || strchr(ds->path, ',')) { /* several files */
    PetscCall(CsDatasetReadFiles(ds));
    PetscCall(SetRows(ds));
    PetscFunctionReturn(0);
  }
  PetscCall(CsH5adRead(ds->comm, ds->path, ds->layer, ds->nkeys, ds->keys, ds->required, &b));
  PetscCall(PetscStrncpy(ds->encoding, b.encoding, sizeof(ds->encoding)));
  ds->nglobal = b.nglobal, ds->ngenes = b.ngenes, ds->rstart = b.rstart, ds->nlocal = b.nlocal;
  ds->X = b.X, ds->genes = b.genes, ds->nobs = b.nobs, ds->obs = b.obs;
  PetscCall(SetRows(ds));
  PetscFunctionReturn(0);
}

/* Keep only the local rows with keep[i]; global numbering is recomputed (blocks stay contiguous and ordered). */
static PetscErrorCode Compact(CsDataset ds, const PetscBool *keep)
{
  PetscInt n = 0;
  int64_t  nnz = 0;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < ds->nlocal; i++) {
    if (!keep[i]) continue;
    int64_t a = ds->X.indptr[i], b = ds->X.indptr[i + 1];
    memmove(ds->X.indices + nnz, ds->X.indices + a, sizeof(int32_t) * (size_t)(b - a));
    memmove(ds->X.data + nnz, ds->X.data + a, sizeof(float) * (size_t)(b - a));
    ds->X.indptr[n] = nnz;
    nnz += b - a;
    if (ds->libsize) ds->libsize[n] = ds->libsize[i];
    for (PetscInt k = 0; k < ds->nobs; k++) {
      if (ds->obs[k].codes) ds->obs[k].codes[n] = ds->obs[k].codes[i];
      if (ds->obs[k].values) ds->obs[k].values[n] = ds->obs[k].values[i];
    }
    n++;
  }
  ds->X.indptr[n] = nnz;
  ds->X.nrows = ds->nlocal = n;
  PetscCall(SetRows(ds));
  PetscFunctionReturn(0);
}

/* -depth_fraction, -min_counts and -max_mito_fraction work on raw counts: every stored value a non-negative integer. */
static PetscErrorCode CheckCounts(CsDataset ds, const char option[])
{
  PetscInt bad = -1;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < ds->nlocal && bad < 0; i++)
    for (int64_t k = ds->X.indptr[i]; k < ds->X.indptr[i + 1]; k++)
      if (!(ds->X.data[k] >= 0) || ds->X.data[k] != floorf(ds->X.data[k]) || ds->X.data[k] > 4294967295.0f) {
        bad = ds->rstart + i;
        break;
      }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPIU_INT, MPI_MAX, ds->comm));
  CsCheckAll(ds->comm, bad < 0, "%s needs raw counts, but %s%s%s has a value that is not a non-negative integer in cell %" PetscInt_FMT
             " (log-normalised data cannot be downsampled or filtered by depth: give the counts, e.g. -layer counts)",
             option, ds->path, ds->layer[0] ? " layer " : "", ds->layer, bad);
  PetscFunctionReturn(0);
}

/* Binomial(c, p) of every count: each of its c reads is kept with probability p, the draws keyed by (file row,
   gene, read) so that the result is the same for any rank count. Zeros are removed from the rows. */
static PetscErrorCode DownsampleDepth(CsDataset ds)
{
  const double p   = ds->depth_fraction;
  int64_t      nnz = 0;

  PetscFunctionBeginUser;
  PetscCall(CheckCounts(ds, "-depth_fraction"));
  for (PetscInt i = 0; i < ds->nlocal; i++) {
    int64_t a = ds->X.indptr[i], b = ds->X.indptr[i + 1];
    ds->X.indptr[i] = nnz;
    for (int64_t k = a; k < b; k++) {
      uint64_t c = (uint64_t)ds->X.data[k], kept = 0, j = (uint64_t)ds->X.indices[k];
      for (uint64_t r = 0; r < c; r += 4) {
        uint32_t u[4];
        CsRng4((uint64_t)ds->depth_seed, CS_STREAM_DEPTH, (uint64_t)(ds->rstart + i), j << 32 | (r / 4), u);
        for (uint64_t q = 0; q < 4 && r + q < c; q++) kept += (double)u[q] * (1.0 / 4294967296.0) < p;
      }
      if (!kept) continue;
      ds->X.indices[nnz] = ds->X.indices[k];
      ds->X.data[nnz++]  = (float)kept;
    }
  }
  ds->X.indptr[ds->nlocal] = nnz;
  PetscFunctionReturn(0);
}

/* -min_counts, -max_mito_fraction: drop the cells that fail (mitochondrial genes: names starting MT- or mt-). */
static PetscErrorCode FilterQuality(CsDataset ds)
{
  PetscBool *keep, *mito;
  PetscInt   nmito = 0, ndrop = 0, n0 = ds->nglobal;

  PetscFunctionBeginUser;
  PetscCall(CheckCounts(ds, ds->min_counts > 0 ? "-min_counts" : "-max_mito_fraction"));
  PetscCall(PetscCalloc1(ds->ngenes + 1, &mito));
  for (PetscInt j = 0; j < ds->ngenes; j++) nmito += mito[j] = (PetscBool)(!strncmp(ds->genes[j], "MT-", 3) || !strncmp(ds->genes[j], "mt-", 3));
  CsCheckAll(ds->comm, ds->max_mito >= 1 || nmito > 0, "-max_mito_fraction: %s has no mitochondrial gene (no gene name starts with MT- or mt-)", ds->path);
  PetscCall(PetscMalloc1(ds->nlocal + 1, &keep));
  for (PetscInt i = 0; i < ds->nlocal; i++) {
    double tot = 0, mt = 0;
    for (int64_t k = ds->X.indptr[i]; k < ds->X.indptr[i + 1]; k++) {
      tot += ds->X.data[k];
      if (mito[ds->X.indices[k]]) mt += ds->X.data[k];
    }
    keep[i] = (PetscBool)(tot >= ds->min_counts && (ds->max_mito >= 1 || (tot > 0 && mt <= ds->max_mito * tot)));
    ndrop += !keep[i];
  }
  PetscCall(Compact(ds, keep));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &ndrop, 1, MPIU_INT, MPI_SUM, ds->comm));
  CsCheckAll(ds->comm, ds->nglobal > 0, "-min_counts %g / -max_mito_fraction %g keep none of the %" PetscInt_FMT " cells of %s", (double)ds->min_counts,
             (double)ds->max_mito, n0, ds->path);
  PetscCall(PetscInfo(NULL, "QC dropped %" PetscInt_FMT " of %" PetscInt_FMT " cells\n", ndrop, n0));
  PetscCall(PetscFree(keep));
  PetscCall(PetscFree(mito));
  PetscFunctionReturn(0);
}

PetscErrorCode CsDatasetKeepRows(CsDataset ds, const PetscBool keep[])
{
  PetscFunctionBeginUser;
  PetscCheck(ds->setup, ds->comm, PETSC_ERR_ORDER, "CsDatasetKeepRows needs the dataset set up");
  PetscCall(Compact(ds, keep));
  CsCheckAll(ds->comm, ds->nglobal > 0, "%s: no cells are left", ds->path);
  PetscFunctionReturn(0);
}

static PetscErrorCode ApplySubset(CsDataset ds, const char key[], const char values[])
{
  CsObsColumn *col;
  PetscInt     nv;
  char       **vals;
  PetscBool   *want, *keep;

  PetscFunctionBeginUser;
  PetscCall(CsDatasetGetObs(ds, key, &col));
  CsCheckAll(ds->comm, col && col->kind == CS_OBS_CATEGORICAL, "-obs_subset: %s has no categorical obs column '%s'", ds->path, key);
  PetscCall(CsStrSplit(values, ",", &nv, &vals));
  CsCheckAll(ds->comm, nv > 0, "-obs_subset %s= lists no values", key);
  PetscCall(PetscCalloc1(col->ncat + 1, &want));
  for (PetscInt v = 0; v < nv; v++) {
    PetscInt c = -1;
    for (PetscInt j = 0; j < col->ncat && c < 0; j++)
      if (!strcmp(col->cats[j], vals[v])) c = j;
    CsCheckAll(ds->comm, c >= 0, "-obs_subset: obs column '%s' has no value '%s'", key, vals[v]);
    want[c] = PETSC_TRUE;
  }
  PetscCall(PetscMalloc1(ds->nlocal + 1, &keep));
  for (PetscInt i = 0; i < ds->nlocal; i++) keep[i] = col->codes[i] >= 0 && want[col->codes[i]];
  PetscCall(Compact(ds, keep));
  CsCheckAll(ds->comm, ds->nglobal > 0, "-obs_subset %s=%s keeps no cells", key, values);
  PetscCall(PetscFree(keep));
  PetscCall(PetscFree(want));
  PetscCall(CsStrArrayDestroy(nv, &vals));
  PetscFunctionReturn(0);
}

/* --------------------------------------------------------------------------------------------------------------
   Checks of what was read (before -obs_subset: rows are the file's rows). */

/* Collective: *any = some rank found something; msg becomes the message of the lowest such rank (its rows come
   first, so it names the first offending row). */
static PetscErrorCode FirstFound(MPI_Comm comm, PetscBool found, char msg[], PetscBool *any)
{
  PetscMPIInt rank, size, first;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  first = found ? rank : size;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, comm));
  *any = first < size ? PETSC_TRUE : PETSC_FALSE;
  if (*any) PetscCallMPI(MPI_Bcast(msg, CS_MSG_LEN, MPI_CHAR, first, comm));
  PetscFunctionReturn(0);
}

/* Genes are matched by name (model files, predictions, several input files), so a name given twice is an error. */
static PetscErrorCode CheckGeneNames(CsDataset ds)
{
  char   **sorted;
  PetscInt dup = -1;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(ds->ngenes + 1, &sorted));
  for (PetscInt j = 0; j < ds->ngenes; j++) sorted[j] = ds->genes[j];
  CsStrSort(ds->ngenes, sorted);
  for (PetscInt j = 1; j < ds->ngenes && dup < 0; j++)
    if (!strcmp(sorted[j], sorted[j - 1])) dup = j;
  if (dup >= 0) {
    PetscInt a = -1, b = -1;
    for (PetscInt j = 0; j < ds->ngenes; j++)
      if (!strcmp(ds->genes[j], sorted[dup])) {
        if (a < 0) a = j;
        else if (b < 0) b = j;
      }
    CsCheckAll(ds->comm, PETSC_FALSE,
               "%s: gene name '%s' is given twice in var (columns %" PetscInt_FMT " and %" PetscInt_FMT "); genes are matched by name: "
               "make the names unique (anndata: adata.var_names_make_unique())",
               ds->path, sorted[dup], a, b);
  }
  PetscCall(PetscFree(sorted));
  PetscFunctionReturn(0);
}

/* The obs index of the file (cell names), open for reading this rank's names, or d < 0 when the file has none
   cellshift can read. Never an error: the names serve only the checks and messages below. */
typedef struct {
  hid_t f, g, d;
  char  what[PETSC_MAX_PATH_LEN + 300];
} CellNames;

static PetscErrorCode CellNamesOpen(CsDataset ds, CellNames *cn)
{
  char      idx[256];
  PetscBool found = PETSC_FALSE;
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  cn->f = cn->g = cn->d = -1;
  PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
  if ((cn->f = H5Fopen(ds->path, H5F_ACC_RDONLY, H5P_DEFAULT)) >= 0 && (cn->g = H5Gopen2(cn->f, "obs", H5P_DEFAULT)) >= 0) {
    ierr = CsH5ReadAttrString(cn->g, "_index", idx, sizeof(idx), &found);
    if (ierr || !found) PetscCall(PetscStrncpy(idx, "_index", sizeof(idx)));
    if (H5Lexists(cn->g, idx, H5P_DEFAULT) > 0) cn->d = H5Dopen2(cn->g, idx, H5P_DEFAULT);
    PetscCall(PetscSNPrintf(cn->what, sizeof(cn->what), "%s: /obs/%s", ds->path, idx));
  }
  PetscCall(PetscPopErrorHandler());
  PetscFunctionReturn(0);
}

static void CellNamesClose(CellNames *cn)
{
  if (cn->d >= 0) H5Dclose(cn->d);
  if (cn->g >= 0) H5Gclose(cn->g);
  if (cn->f >= 0) H5Fclose(cn->f);
  cn->f = cn->g = cn->d = -1;
}

/* Local rows [i0, i0 + n) of the names, or NULL when they cannot be read. */
static PetscErrorCode CellNamesRead(CsDataset ds, CellNames *cn, PetscInt i0, PetscInt n, char ***names)
{
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  *names = NULL;
  if (cn->d < 0) PetscFunctionReturn(0);
  PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
  ierr = CsH5ReadStrings(cn->d, cn->what, (hsize_t)(ds->rstart + i0), (hsize_t)n, names);
  PetscCall(PetscPopErrorHandler());
  if (ierr) *names = NULL;
  PetscFunctionReturn(0);
}

/* The name of local row i into out ("" when it cannot be read). */
static PetscErrorCode CellName(CsDataset ds, CellNames *cn, PetscInt i, char out[], size_t len)
{
  char **one;

  PetscFunctionBeginUser;
  out[0] = 0;
  PetscCall(CellNamesRead(ds, cn, i, 1, &one));
  if (one) {
    PetscCall(PetscStrncpy(out, one[0], len));
    PetscCall(CsStrArrayDestroy(1, &one));
  }
  PetscFunctionReturn(0);
}

static uint64_t NameHash(const char *s)
{
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

/* Names hashed this many rows at a time: the strings of a chunk are freed before the next is read, so a rank never
   holds its names, only their hashes (8 bytes a cell, during the check). */
#define NAME_CHUNK 65536

/* The hashes of this rank's cell names, or NULL when a rank cannot read its names (collective). */
static PetscErrorCode CellNameHashes(CsDataset ds, CellNames *cn, uint64_t **hash)
{
  PetscInt have = 1;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(ds->nlocal + 1, hash));
  for (PetscInt i0 = 0; i0 < ds->nlocal && have; i0 += NAME_CHUNK) {
    PetscInt n = PetscMin(NAME_CHUNK, ds->nlocal - i0);
    char   **names;
    PetscCall(CellNamesRead(ds, cn, i0, n, &names));
    if (!names) have = 0;
    else {
      for (PetscInt i = 0; i < n; i++) (*hash)[i0 + i] = NameHash(names[i]);
      PetscCall(CsStrArrayDestroy(n, &names));
    }
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &have, 1, MPIU_INT, MPI_MIN, ds->comm));
  if (!have) PetscCall(PetscFree(*hash));
  PetscFunctionReturn(0);
}

typedef struct {
  uint64_t h;
  int64_t  row;
} HashRow;

static int CmpHashRow(const void *a, const void *b)
{
  const HashRow *x = a, *y = b;
  if (x->h != y->h) return x->h < y->h ? -1 : 1;
  return (x->row > y->row) - (x->row < y->row);
}

/* Which of the rounds of DuplicateRows a hash travels in (its upper bits; its rank is hash % size). */
static inline PetscInt HashRound(uint64_t h, PetscInt rounds) { return (PetscInt)((h >> 40) % (uint64_t)rounds); }

/* Collective: the number of cells whose name's hash another cell has too, and the first such pair of rows (-1 if
   none). Each hash travels to the rank hash % size, in rounds over the hash's upper bits so that no rank sends or
   receives more than about 2^20 of them at once (bounded memory at any number of cells). */
static PetscErrorCode DuplicateRows(CsDataset ds, const uint64_t hash[], PetscInt *ndup, int64_t pair[2])
{
  PetscMPIInt size;
  int        *scount, *rcount, *sdisp, *rdisp;
  HashRow    *send = NULL, *recv = NULL;
  int64_t     best[2] = {INT64_MAX, INT64_MAX}, local = 0;
  PetscInt    mx = ds->nlocal, rounds;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_size(ds->comm, &size));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &mx, 1, MPIU_INT, MPI_MAX, ds->comm));
  rounds = PetscMax(1, (mx + (1 << 20) - 1) >> 20);
  PetscCall(PetscCalloc4(size, &scount, size, &rcount, size + 1, &sdisp, size + 1, &rdisp));
  for (PetscInt q = 0; q < rounds; q++) {
    int nsend = 0, nrecv = 0;
    PetscCall(PetscArrayzero(scount, size));
    for (PetscInt i = 0; i < ds->nlocal; i++)
      if (HashRound(hash[i], rounds) == q) scount[hash[i] % (uint64_t)size]++, nsend++;
    sdisp[0] = 0;
    for (PetscMPIInt p = 0; p < size; p++) sdisp[p + 1] = sdisp[p] + scount[p];
    PetscCall(PetscMalloc1(nsend + 1, &send));
    for (PetscInt i = 0; i < ds->nlocal; i++)
      if (HashRound(hash[i], rounds) == q) send[sdisp[hash[i] % (uint64_t)size]++] = (HashRow){hash[i], (int64_t)(ds->rstart + i)};
    for (PetscMPIInt p = 0; p < size; p++) sdisp[p] -= scount[p];
    PetscCallMPI(MPI_Alltoall(scount, 1, MPI_INT, rcount, 1, MPI_INT, ds->comm));
    rdisp[0] = 0;
    for (PetscMPIInt p = 0; p < size; p++) {
      rdisp[p + 1] = rdisp[p] + rcount[p];
      nrecv += rcount[p];
    }
    for (PetscMPIInt p = 0; p <= size; p++) sdisp[p] *= (int)sizeof(HashRow), rdisp[p] *= (int)sizeof(HashRow);
    for (PetscMPIInt p = 0; p < size; p++) scount[p] *= (int)sizeof(HashRow), rcount[p] *= (int)sizeof(HashRow);
    PetscCall(PetscMalloc1(nrecv + 1, &recv));
    PetscCallMPI(MPI_Alltoallv(send, scount, sdisp, MPI_BYTE, recv, rcount, rdisp, MPI_BYTE, ds->comm));
    PetscCall(PetscFree(send));
    qsort(recv, (size_t)nrecv, sizeof(HashRow), CmpHashRow);
    for (int k = 1; k < nrecv; k++) {
      if (recv[k].h != recv[k - 1].h) continue;
      local += (k == 1 || recv[k - 1].h != recv[k - 2].h) ? 2 : 1;
      if (recv[k - 1].row < best[0] || (recv[k - 1].row == best[0] && recv[k].row < best[1])) best[0] = recv[k - 1].row, best[1] = recv[k].row;
    }
    PetscCall(PetscFree(recv));
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &local, 1, MPI_INT64_T, MPI_SUM, ds->comm));
  {
    int64_t first = best[0];
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT64_T, MPI_MIN, ds->comm));
    if (best[0] != first) best[1] = INT64_MAX;
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &best[1], 1, MPI_INT64_T, MPI_MIN, ds->comm));
    best[0] = first;
  }
  *ndup   = (PetscInt)local;
  pair[0] = best[0] == INT64_MAX ? -1 : best[0], pair[1] = best[1] == INT64_MAX ? -1 : best[1];
  PetscCall(PetscFree4(scount, rcount, sdisp, rdisp));
  PetscFunctionReturn(0);
}

/* Collective: the name of global row `row` (of the file, before the subset), from the rank that holds it. */
static PetscErrorCode RowName(CsDataset ds, CellNames *cn, int64_t row, char out[], size_t len)
{
  PetscMPIInt owner = -1;
  char        buf[256] = "";

  PetscFunctionBeginUser;
  PetscCall(PetscLayoutFindOwner(ds->rows, (PetscInt)row, &owner));
  if (row >= ds->rstart && row < ds->rstart + ds->nlocal) PetscCall(CellName(ds, cn, (PetscInt)(row - ds->rstart), buf, sizeof(buf)));
  PetscCallMPI(MPI_Bcast(buf, (PetscMPIInt)sizeof(buf), MPI_CHAR, owner, ds->comm));
  PetscCall(PetscStrncpy(out, buf, len));
  PetscFunctionReturn(0);
}

/* Cells are never looked up by name (predictions number their rows), so repeated cell names are only a warning:
   they usually mean two files were concatenated without making the names unique. */
static PetscErrorCode CheckCellNames(CsDataset ds, CellNames *cn)
{
  PetscInt  ndup = 0;
  int64_t   pair[2] = {-1, -1};
  char      a[256], b[256];
  uint64_t *hash;

  PetscFunctionBeginUser;
  PetscCall(CellNameHashes(ds, cn, &hash));
  if (!hash) PetscFunctionReturn(0);
  PetscCall(DuplicateRows(ds, hash, &ndup, pair));
  PetscCall(PetscFree(hash));
  if (!ndup || pair[0] < 0) PetscFunctionReturn(0);
  PetscCall(RowName(ds, cn, pair[0], a, sizeof(a)));
  PetscCall(RowName(ds, cn, pair[1], b, sizeof(b)));
  if (strcmp(a, b)) PetscFunctionReturn(0); /* two names with one hash, not one name twice */
  PetscCall(CsWarn(ds->comm, "%s: %" PetscInt_FMT " cells share their name (obs index) with another cell, e.g. rows %lld and %lld are both '%s'; "
                             "cellshift does not use cell names, but this often means a file was concatenated twice",
                   ds->path, ndup, (long long)pair[0], (long long)pair[1], a));
  PetscFunctionReturn(0);
}

/* The expression values: negative values where log-normalised expression is expected, and non-integer values
   where -normalize expects raw counts, are warnings that name the first offending cell, gene and value. */
static PetscErrorCode CheckValues(CsDataset ds, CellNames *cn)
{
  PetscInt  nbad = 0;
  PetscBool found = PETSC_FALSE, any;
  char      msg[CS_MSG_LEN] = "";

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < ds->nlocal; i++)
    for (int64_t k = ds->X.indptr[i]; k < ds->X.indptr[i + 1]; k++) {
      float v   = ds->X.data[k];
      PetscBool bad = ds->normalize ? (PetscBool)(v >= 0 && v != floorf(v)) : (PetscBool)(v < 0);
      if (!bad) continue;
      if (!nbad++) {
        char cell[300], name[256];
        found = PETSC_TRUE;
        PetscCall(CellName(ds, cn, i, name, sizeof(name)));
        if (name[0]) PetscCall(PetscSNPrintf(cell, sizeof(cell), "cell '%s' (row %" PetscInt_FMT ")", name, ds->rstart + i));
        else PetscCall(PetscSNPrintf(cell, sizeof(cell), "the cell of row %" PetscInt_FMT, ds->rstart + i));
        PetscCall(PetscSNPrintf(msg, sizeof(msg), "%s, gene '%s': %.9g", cell, ds->genes[ds->X.indices[k]], (double)v));
      }
    }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &nbad, 1, MPIU_INT, MPI_SUM, ds->comm));
  PetscCall(FirstFound(ds->comm, found, msg, &any));
  if (!any) PetscFunctionReturn(0);
  if (ds->normalize)
    PetscCall(CsWarn(ds->comm, "-normalize expects raw counts, but %s%s%s holds %" PetscInt_FMT " non-integer values (first: %s): the data "
                               "look log-normalised already; then leave out -normalize",
                     ds->path, ds->layer[0] ? " layer " : "", ds->layer, nbad, msg));
  else
    PetscCall(CsWarn(ds->comm, "%s%s%s holds %" PetscInt_FMT " negative values (first: %s), but models and metrics expect log-normalised "
                               "expression (log1p of scaled counts, never negative); scaled or centred data give misleading results",
                     ds->path, ds->layer[0] ? " layer " : "", ds->layer, nbad, msg));
  PetscFunctionReturn(0);
}

static PetscErrorCode CheckBlock(CsDataset ds)
{
  CellNames cn;

  PetscFunctionBeginUser;
  PetscCall(CheckGeneNames(ds));
  if (!ds->input) PetscFunctionReturn(0);
  PetscCall(CellNamesOpen(ds, &cn));
  PetscCall(CheckCellNames(ds, &cn));
  if (!ds->streamed) PetscCall(CheckValues(ds, &cn)); /* streamed: the rows are not here (the reader's checks still hold) */
  CellNamesClose(&cn);
  PetscFunctionReturn(0);
}

/* y[i] = (float)log1p(t[i]) for t[i] > 0 (not NaN), bit for bit, mostly without libm: log(1 + t) by a series good
   to a few 1e-12 (relative) decides the float unless the floats of r - d and r + d differ (Ziv's rounding test,
   d = 1e-10 r), and then libm does. The first loop is branch-free with integer tests (a floating-point compare
   would keep it scalar under the default trapping math), so it vectorises. */
CS_VEC static void Log1pFloat(int n, const double t[], float y[])
{
  const double ln2 = 0.693147180559945309417232121458;

  for (int i = 0; i < n; i++) {
    double   u = 1 + t[i], m, e, big, z, z2, p, r, d;
    float    f, lo, hi;
    uint64_t b, mant;
    uint32_t fb, lb, hb, same;
    memcpy(&b, &u, sizeof(b));
    mant = b & 0x000fffffffffffffULL;
    e    = (double)((int32_t)(b >> 52) - 1023);
    big  = (double)(int32_t)(mant > 0x6a09e667f3bcdULL); /* the mantissa beyond sqrt(2)'s: u = (m / 2) 2^(e + 1) */
    b    = mant | 0x3ff0000000000000ULL;                  /* u = m 2^e, m in [1, 2) */
    memcpy(&m, &b, sizeof(m));
    m  = m * (1 - 0.5 * big), e += big; /* m in [0.707, 1.415): |z| <= 0.172 */
    z  = (m - 1) / (m + 1), z2 = z * z;
    p  = 2 * z * (1 + z2 * (1.0 / 3 + z2 * (1.0 / 5 + z2 * (1.0 / 7 + z2 * (1.0 / 9 + z2 * (1.0 / 11 + z2 * (1.0 / 13 + z2 * (1.0 / 15))))))));
    r  = e * ln2 + p + (t[i] - (u - 1)) / u; /* log(u) + the rounding of 1 + t */
    d  = 1e-10 * r;
    f = (float)r, lo = (float)(r - d), hi = (float)(r + d);
    memcpy(&fb, &f, sizeof(fb)), memcpy(&lb, &lo, sizeof(lb)), memcpy(&hb, &hi, sizeof(hb));
    same = (uint32_t)0 - (uint32_t)(lb == hb);   /* all ones when the rounding is decided */
    fb   = (fb & same) | (0xbf800000u & ~same); /* else -1: log1p of t > 0 is positive */
    memcpy(&y[i], &fb, sizeof(fb));
  }
  for (int i = 0; i < n; i++)
    if (y[i] < 0) y[i] = (float)log1p(t[i]);
}

/* Raw counts repeat few small integers within a cell (tens of distinct values over hundreds of genes), so log1p,
   most of the transform's time, is taken once per count from 1 to the row's largest below NORM_MEMO (a table, all
   at once by Log1pFloat): the same double expression of the same operands, so the same float as taking it for every entry
   with libm, which takes the other entries (fractions, larger counts, -0). The total is four partial sums: exact
   for counts, whatever the order. */
#define NORM_MEMO 256
CS_VEC PetscBool CsNormalizeRow(float x[], int64_t n, double *total)
{
  double   s[4] = {0, 0, 0, 0}, L, t[NORM_MEMO];
  float    memo[NORM_MEMO], v;
  uint32_t neg = 0, top = 0;
  int      m;
  int64_t  k = 0;

  for (; k + 4 <= n; k += 4) s[0] += x[k], s[1] += x[k + 1], s[2] += x[k + 2], s[3] += x[k + 3];
  for (; k < n; k++) s[0] += x[k];
  for (k = 0; k < n; k++) { /* on the bits: 0x43800000 is 256.0f (NORM_MEMO), 0xff800000 -Inf */
    uint32_t b;
    memcpy(&b, &x[k], sizeof(b));
    neg |= b > 0x80000000u && b <= 0xff800000u; /* below 0: not -0, not a NaN */
    top = b < 0x43800000u && b > top ? b : top; /* the largest value in [+0, 256): the bits of such floats order them */
  }
  if (neg) return PETSC_FALSE;
  L      = (s[0] + s[1]) + (s[2] + s[3]);
  *total = L;
  if (!(L > 0)) return PETSC_TRUE;
  memcpy(&v, &top, sizeof(v));
  m = (int)v; /* the table: every count up to the largest */
  for (int j = 0; j < m; j++) t[j] = (double)(j + 1) / L * 1e4;
  Log1pFloat(m, t, memo + 1);
  memo[0] = 0;
  for (k = 0; k < n; k++) {
    uint32_t b;
    v = x[k];
    memcpy(&b, &v, sizeof(b));
    if (b < 0x43800000u && (float)(int)v == v) x[k] = memo[(int)v]; /* a count below 256 (+0 included) */
    else x[k] = (float)log1p(v / L * 1e4);
  }
  return PETSC_TRUE;
}

/* log1p(counts / total * 1e4) per cell; totals kept. Counts must be non-negative. */
static PetscErrorCode Normalize(CsDataset ds)
{
  PetscInt bad = -1;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(ds->nlocal + 1, &ds->libsize));
  for (PetscInt i = 0; i < ds->nlocal; i++) {
    int64_t a = ds->X.indptr[i];
    if (!CsNormalizeRow(ds->X.data + a, ds->X.indptr[i + 1] - a, &ds->libsize[i]) && bad < 0) bad = ds->rstart + i;
  }
  CsCheckAll(ds->comm, bad < 0, "-normalize: %s%s%s has a negative value in cell %" PetscInt_FMT "; -normalize expects raw counts", ds->path,
             ds->layer[0] ? " layer " : "", ds->layer, bad);
  PetscFunctionReturn(0);
}

PetscErrorCode CsDatasetSetUp(CsDataset ds)
{
  char key[256] = "", *eq;

  CsPathKind kind;

  PetscFunctionBeginUser;
  if (ds->setup) PetscFunctionReturn(0);
  CsCheckAll(ds->comm, ds->path[0] || ds->data_list[0], "no input data: give -data FILE.h5ad");
  CsCheckAll(ds->comm, !(ds->path[0] && ds->data_list[0]), "give -data or -data_list, not both");
  if (!ds->data_list[0] && !strchr(ds->path, ',')) {
    PetscCall(CsPathGetKind(ds->comm, ds->path, &kind));
    CsCheckAll(ds->comm, kind != CS_PATH_DIR, "-data %s is a folder: give the .h5ad file", ds->path);
  } else if (!ds->path[0]) PetscCall(PetscStrncpy(ds->path, ds->data_list, sizeof(ds->path))); /* what messages name */
  if (ds->subset[0]) {
    PetscCall(PetscStrncpy(key, ds->subset, sizeof(key)));
    eq = strchr(key, '=');
    CsCheckAll(ds->comm, eq && eq != key, "-obs_subset must look like KEY=value1,value2 (got '%s')", ds->subset);
    *eq = 0;
    PetscCall(CsDatasetAddObsKey(ds, key, PETSC_TRUE));
  }
  if (!strncmp(ds->quality, "obs:", 4)) {
    char col[256];
    PetscCall(PetscStrncpy(col, ds->quality + 4, sizeof(col)));
    if (strchr(col, '=')) *strchr(col, '=') = 0;
    CsCheckAll(ds->comm, col[0], "-quality_weight %s: name the obs column (obs:COLUMN or obs:COLUMN=VALUE)", ds->quality);
    PetscCall(CsDatasetAddObsKey(ds, col, PETSC_TRUE));
  }
  PetscCall(ReadBlock(ds));
  PetscCall(CheckBlock(ds));
  CsCheckAll(ds->comm, !ds->streamed || (ds->depth_fraction >= 1 && ds->min_counts <= 0 && ds->max_mito >= 1),
             "-depth_fraction, -min_counts and -max_mito_fraction change the rows in memory and are not available for a streamed dataset "
             "(-stream, -memory_limit)");
  if (ds->depth_fraction < 1) PetscCall(DownsampleDepth(ds)); /* on file rows: before any cell is dropped */
  if (key[0]) PetscCall(ApplySubset(ds, key, strchr(ds->subset, '=') + 1));
  if (ds->min_counts > 0 || ds->max_mito < 1) PetscCall(FilterQuality(ds));
  if (ds->normalize && !ds->streamed) PetscCall(Normalize(ds)); /* streamed: rows are normalised as they are read */
  CsCheckAll(ds->comm, ds->nglobal > 0, "%s has no cells", ds->path);
  PetscCall(CsDatasetQualityWeights(ds));
  ds->setup = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode CsDatasetView(CsDataset ds, PetscViewer v)
{
  int64_t nnz = ds->X.indptr ? ds->X.indptr[ds->nlocal] : 0;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &nnz, 1, MPI_INT64_T, MPI_SUM, ds->comm));
  if (ds->streamed) nnz = ds->nnz;
  PetscCall(PetscViewerASCIIPrintf(v, "CsDataset %s%s%s: %" PetscInt_FMT " cells x %" PetscInt_FMT " genes, %s, %lld non-zeros%s%s%s\n",
                                   ds->path, ds->layer[0] ? " layer " : "", ds->layer, ds->nglobal, ds->ngenes, ds->encoding,
                                   (long long)nnz, ds->subset[0] ? ", subset " : "", ds->subset,
                                   ds->normalize ? ", counts log-normalised (1e4)" : ""));
  if (ds->streamed)
    PetscCall(PetscViewerASCIIPrintf(v, "  streamed: rows read on demand in blocks of %" PetscInt_FMT " rows%s\n", ds->stream_block,
                                     !strcmp(ds->encoding, "dense") ? " (dense X: non-zeros counted as cells x genes)" : ""));
  PetscFunctionReturn(0);
}

PetscErrorCode CsDatasetDestroy(CsDataset *ds)
{
  PetscFunctionBeginUser;
  if (!*ds) PetscFunctionReturn(0);
  {
    CsH5adBlock b = {.ngenes = (*ds)->ngenes, .X = (*ds)->X, .genes = (*ds)->genes, .nobs = (*ds)->nobs, .obs = (*ds)->obs};
    PetscCall(CsH5adBlockFree(&b)); /* the arrays moved in from the reader's block */
  }
  PetscCall(CsH5adStreamClose(&(*ds)->st));
  PetscCall(PetscFree((*ds)->libsize));
  PetscCall(PetscFree((*ds)->qweight));
  PetscCall(PetscLayoutDestroy(&(*ds)->rows));
  PetscCall(CsStrArrayDestroy((*ds)->nkeys, &(*ds)->keys));
  PetscCall(PetscFree((*ds)->required));
  PetscCall(PetscFree(*ds));
  PetscFunctionReturn(0);
}
