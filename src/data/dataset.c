/* CsDataset: this rank's shard of cells. See include/cellshift/dataset.h. */
#include <cellshift/dataset.h>

PetscErrorCode CsDatasetCreate(MPI_Comm comm, CsDataset *out)
{
  CsDataset ds;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&ds));
  ds->comm = comm;
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
  PetscFunctionBeginUser;
  PetscOptionsBegin(ds->comm, NULL, "Input data", "CsDataset");
  PetscCall(PetscOptionsString("-data", "AnnData .h5ad file with the cells", "CsDatasetSetFromOptions", ds->path, ds->path,
                               sizeof(ds->path), NULL));
  PetscCall(PetscOptionsString("-layer", "Read layers/NAME instead of X", "CsDatasetSetFromOptions", ds->layer, ds->layer,
                               sizeof(ds->layer), NULL));
  PetscCall(PetscOptionsBool("-normalize", "X holds raw counts: scale each cell to 1e4 counts and take log1p", "CsDatasetSetFromOptions",
                             ds->normalize, &ds->normalize, NULL));
  PetscCall(PetscOptionsString("-obs_subset", "Keep only cells with obs KEY in the listed values: KEY=v1,v2", "CsDatasetSetFromOptions",
                               ds->subset, ds->subset, sizeof(ds->subset), NULL));
  PetscOptionsEnd();
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

  PetscFunctionBeginUser;
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

/* log1p(counts / total * 1e4) per cell; totals kept. Counts must be non-negative. */
static PetscErrorCode Normalize(CsDataset ds)
{
  PetscInt bad = -1;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(ds->nlocal + 1, &ds->libsize));
  for (PetscInt i = 0; i < ds->nlocal; i++) {
    double L = 0;
    for (int64_t k = ds->X.indptr[i]; k < ds->X.indptr[i + 1]; k++) {
      if (ds->X.data[k] < 0 && bad < 0) bad = ds->rstart + i;
      L += ds->X.data[k];
    }
    ds->libsize[i] = L;
    for (int64_t k = ds->X.indptr[i]; L > 0 && k < ds->X.indptr[i + 1]; k++) ds->X.data[k] = (float)log1p(ds->X.data[k] / L * 1e4);
  }
  CsCheckAll(ds->comm, bad < 0, "-normalize: %s%s%s has a negative value in cell %" PetscInt_FMT "; -normalize expects raw counts", ds->path,
             ds->layer[0] ? " layer " : "", ds->layer, bad);
  PetscFunctionReturn(0);
}

PetscErrorCode CsDatasetSetUp(CsDataset ds)
{
  char key[256] = "", *eq;

  PetscFunctionBeginUser;
  if (ds->setup) PetscFunctionReturn(0);
  CsCheckAll(ds->comm, ds->path[0], "no input data: give -data FILE.h5ad");
  if (ds->subset[0]) {
    PetscCall(PetscStrncpy(key, ds->subset, sizeof(key)));
    eq = strchr(key, '=');
    CsCheckAll(ds->comm, eq && eq != key, "-obs_subset must look like KEY=value1,value2 (got '%s')", ds->subset);
    *eq = 0;
    PetscCall(CsDatasetAddObsKey(ds, key, PETSC_TRUE));
  }
  PetscCall(ReadBlock(ds));
  if (key[0]) PetscCall(ApplySubset(ds, key, strchr(ds->subset, '=') + 1));
  if (ds->normalize) PetscCall(Normalize(ds));
  CsCheckAll(ds->comm, ds->nglobal > 0, "%s has no cells", ds->path);
  ds->setup = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode CsDatasetView(CsDataset ds, PetscViewer v)
{
  int64_t nnz = ds->X.indptr ? ds->X.indptr[ds->nlocal] : 0;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &nnz, 1, MPI_INT64_T, MPI_SUM, ds->comm));
  PetscCall(PetscViewerASCIIPrintf(v, "CsDataset %s%s%s: %" PetscInt_FMT " cells x %" PetscInt_FMT " genes, %s, %lld non-zeros%s%s%s\n",
                                   ds->path, ds->layer[0] ? " layer " : "", ds->layer, ds->nglobal, ds->ngenes, ds->encoding,
                                   (long long)nnz, ds->subset[0] ? ", subset " : "", ds->subset,
                                   ds->normalize ? ", counts log-normalised (1e4)" : ""));
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
  PetscCall(PetscFree((*ds)->libsize));
  PetscCall(PetscLayoutDestroy(&(*ds)->rows));
  PetscCall(CsStrArrayDestroy((*ds)->nkeys, &(*ds)->keys));
  PetscCall(PetscFree((*ds)->required));
  PetscCall(PetscFree(*ds));
  PetscFunctionReturn(0);
}
