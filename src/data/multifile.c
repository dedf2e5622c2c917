/* Several .h5ad files read as one dataset (-data a.h5ad,b.h5ad or -data_list FILE). See include/cellshift/dataset.h.

   Every file is read by the parallel reader on the whole communicator, so each rank first holds a block of every
   file ("interleaved" order: rank 0's block of file 0, of file 1, ..., then rank 1's). Genes are aligned by name
   and obs columns unified while the blocks are local; then the rows move with CsCSRFetchRows so that each rank
   owns a contiguous range of the concatenated order (file 0's cells, then file 1's, ...), as if the files had been
   concatenated into one: the global row numbering does not depend on the number of ranks. The obs values travel
   with them as a second CSR (each value's 8 bytes in two float32 slots: MPI copies them bit for bit). */
#include "dataimpl.h"

/* The paths of -data a,b,c or of -data_list (one per line; blank lines and lines starting with # skipped; a
   relative path is relative to the list's folder). */
static PetscErrorCode ListFiles(CsDataset ds, PetscInt *n, char ***paths)
{
  PetscFunctionBeginUser;
  if (!ds->data_list[0]) {
    PetscCall(CsStrSplit(ds->path, ",", n, paths));
    PetscFunctionReturn(0);
  }
  {
    PetscMPIInt rank;
    char       *text = NULL;
    PetscInt    len  = -1;
    PetscCallMPI(MPI_Comm_rank(ds->comm, &rank));
    if (!rank) {
      FILE *fp = fopen(ds->data_list, "r");
      if (fp) {
        long sz = -1;
        if (!fseek(fp, 0, SEEK_END)) sz = ftell(fp);
        if (sz >= 0 && sz < (1 << 26) && !fseek(fp, 0, SEEK_SET)) {
          PetscCall(PetscMalloc1(sz + 1, &text));
          len       = (PetscInt)fread(text, 1, (size_t)sz, fp);
          text[len] = 0;
        }
        fclose(fp);
      }
    }
    PetscCallMPI(MPI_Bcast(&len, 1, MPIU_INT, 0, ds->comm));
    CsCheckAll(ds->comm, len >= 0, "-data_list %s: cannot read the file", ds->data_list);
    if (rank) PetscCall(PetscMalloc1(len + 1, &text));
    PetscCallMPI(MPI_Bcast(text, (PetscMPIInt)len + 1, MPI_CHAR, 0, ds->comm));
    {
      PetscInt nl;
      char   **lines, dir[PETSC_MAX_PATH_LEN];
      char    *slash;
      PetscCall(PetscStrncpy(dir, ds->data_list, sizeof(dir)));
      slash = strrchr(dir, '/');
      if (slash) slash[1] = 0;
      else dir[0] = 0;
      PetscCall(CsStrSplit(text, "\n", &nl, &lines));
      PetscCall(PetscMalloc1(nl + 1, paths));
      *n = 0;
      for (PetscInt i = 0; i < nl; i++) {
        char full[PETSC_MAX_PATH_LEN];
        PetscCall(CsStrTrim(lines[i]));
        if (!lines[i][0] || lines[i][0] == '#') continue;
        if (lines[i][0] == '/' || !dir[0]) PetscCall(PetscStrncpy(full, lines[i], sizeof(full)));
        else PetscCall(PetscSNPrintf(full, sizeof(full), "%s%s", dir, lines[i]));
        PetscCall(PetscStrallocpy(full, &(*paths)[(*n)++]));
      }
      PetscCall(CsStrArrayDestroy(nl, &lines));
    }
    PetscCall(PetscFree(text));
    CsCheckAll(ds->comm, *n > 0, "-data_list %s lists no files", ds->data_list);
  }
  PetscFunctionReturn(0);
}

/* A var index with a name twice cannot be aligned by name. */
static PetscErrorCode CheckUnique(MPI_Comm comm, const char path[], PetscInt n, char *const *genes)
{
  char **s;
  PetscInt dup = -1;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(n + 1, &s));
  for (PetscInt j = 0; j < n; j++) s[j] = genes[j];
  CsStrSort(n, s);
  for (PetscInt j = 1; j < n && dup < 0; j++)
    if (!strcmp(s[j], s[j - 1])) dup = j;
  CsCheckAll(comm, dup < 0, "%s: gene name '%s' is given twice in var; genes of several files are aligned by name: make the names unique "
                            "(anndata: adata.var_names_make_unique())", path, dup < 0 ? "" : s[dup]);
  PetscCall(PetscFree(s));
  PetscFunctionReturn(0);
}

typedef struct {
  int32_t j;
  float   v;
} Entry;
static int CmpEntry(const void *a, const void *b) { return ((const Entry *)a)->j - ((const Entry *)b)->j; }

static char **cs_sort_names; /* the names CmpByName orders indices by (set just before qsort; not re-entrant) */
static int    CmpByName(const void *a, const void *b) { return strcmp(cs_sort_names[*(const PetscInt *)a], cs_sort_names[*(const PetscInt *)b]); }

/* Genes: the first file's order; union appends each later file's new genes in its order; colmap[f][j] the merged
   position of gene j of file f (-1: dropped). */
static PetscErrorCode AlignGenes(MPI_Comm comm, PetscBool uni, PetscInt nf, CsH5adBlock *b, char **paths, PetscInt *ng_, char ***genes_,
                                 PetscInt **colmap)
{
  char   **genes;
  PetscInt ng = 0;

  PetscFunctionBeginUser;
  {
    char    **sorted;
    PetscInt  cap = 0, *order;
    for (PetscInt f = 0; f < nf; f++) cap += b[f].ngenes;
    PetscCall(PetscMalloc1(cap + 1, &genes));
    PetscCall(PetscMalloc1(cap + 1, &sorted));
    for (PetscInt j = 0; j < b[0].ngenes; j++) genes[ng++] = b[0].genes[j];
    for (PetscInt f = 1; f < nf; f++) {
      char   **fs;
      PetscInt keep = 0;
      PetscCall(PetscMalloc1(b[f].ngenes + 1, &fs));
      for (PetscInt j = 0; j < b[f].ngenes; j++) fs[j] = b[f].genes[j];
      CsStrSort(b[f].ngenes, fs);
      for (PetscInt j = 0; j < ng; j++) sorted[j] = genes[j];
      CsStrSort(ng, sorted);
      if (uni) {
        for (PetscInt j = 0; j < b[f].ngenes; j++)
          if (CsStrBsearch(b[f].genes[j], sorted, ng) < 0) genes[ng + keep++] = b[f].genes[j];
        ng += keep;
      } else {
        for (PetscInt j = 0; j < ng; j++)
          if (CsStrBsearch(genes[j], fs, b[f].ngenes) >= 0) genes[keep++] = genes[j];
        CsCheckAll(comm, keep > 0, "%s shares no gene name with %s%s: the files cannot be aligned by gene (-genes union keeps all genes)",
                   paths[f], f > 1 ? "the genes common to the files before it, from " : "", paths[0]);
        ng = keep;
      }
      PetscCall(PetscFree(fs));
    }
    for (PetscInt j = 0; j < ng; j++) PetscCall(PetscStrallocpy(genes[j], &genes[j])); /* own copies */
    /* merged position of every name: the sorted names and, beside them, their positions */
    PetscCall(PetscMalloc1(ng + 1, &order));
    for (PetscInt j = 0; j < ng; j++) order[j] = j;
    cs_sort_names = genes;
    qsort(order, (size_t)ng, sizeof(PetscInt), CmpByName);
    for (PetscInt j = 0; j < ng; j++) sorted[j] = genes[order[j]];
    for (PetscInt f = 0; f < nf; f++) {
      PetscCall(PetscMalloc1(b[f].ngenes + 1, &colmap[f]));
      for (PetscInt j = 0; j < b[f].ngenes; j++) {
        PetscInt q = CsStrBsearch(b[f].genes[j], sorted, ng);
        colmap[f][j] = q >= 0 ? order[q] : -1;
      }
    }
    PetscCall(PetscFree(order));
    PetscCall(PetscFree(sorted));
  }

  *ng_ = ng, *genes_ = genes;
  PetscFunctionReturn(0);
}

/* obs: each requested key, present in every file (or -obs_fill), one kind; categories unified in order of
   appearance. obs[nobs] the merged columns, objkey[c] the key of column c, catmap[key][file][cat] the merged code. */
static PetscErrorCode UnifyObs(CsDataset ds, PetscInt nf, CsH5adBlock *b, char **paths, CsObsColumn *obs, PetscInt *objkey, PetscInt ***catmap,
                               PetscInt *nobs_)
{
  MPI_Comm comm = ds->comm;
  PetscInt nobs = 0;

  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < ds->nkeys; k++) {
    CsObsColumn *first = NULL, *m = &obs[nobs];
    PetscInt     fmiss = -1, ffirst = -1;
    catmap[k] = NULL;
    for (PetscInt f = 0; f < nf; f++) {
      CsObsColumn *c = CsH5adBlockGetObs(&b[f], ds->keys[k]);
      if (!c && fmiss < 0) fmiss = f;
      if (c && !first) first = c, ffirst = f;
    }
    if (!first) {
      CsCheckAll(comm, !ds->required[k], "%s: obs has no column '%s'", paths[0], ds->keys[k]);
      continue;
    }
    CsCheckAll(comm, fmiss < 0 || ds->obs_fill, "obs column '%s' is in %s but not in %s (give -obs_fill to leave it missing for those cells)",
               ds->keys[k], paths[ffirst], paths[fmiss]);
    PetscCall(PetscStrncpy(m->name, ds->keys[k], sizeof(m->name)));
    m->kind = first->kind;
    PetscCall(PetscCalloc1(nf, &catmap[k]));
    for (PetscInt f = 0; f < nf; f++) {
      CsObsColumn *c = CsH5adBlockGetObs(&b[f], ds->keys[k]);
      if (!c) continue;
      CsCheckAll(comm, c->kind == first->kind, "obs column '%s' is %s in %s but %s in %s: the files cannot be joined", ds->keys[k],
                 first->kind == CS_OBS_CATEGORICAL ? "categorical" : "numeric", paths[ffirst],
                 c->kind == CS_OBS_CATEGORICAL ? "categorical" : "numeric", paths[f]);
      m->capped = (PetscBool)(m->capped || c->capped);
    }
    if (m->kind == CS_OBS_CATEGORICAL && !m->capped)
      for (PetscInt f = 0; f < nf; f++) {
        CsObsColumn *c = CsH5adBlockGetObs(&b[f], ds->keys[k]);
        if (!c) continue;
        PetscCall(PetscMalloc1(c->ncat + 1, &catmap[k][f]));
        for (PetscInt q = 0; q < c->ncat; q++) {
          PetscInt hit = -1;
          for (PetscInt p = 0; p < m->ncat && hit < 0; p++)
            if (!strcmp(m->cats[p], c->cats[q])) hit = p;
          if (hit < 0) {
            PetscCall(PetscRealloc(sizeof(char *) * (size_t)(m->ncat + 1), &m->cats));
            PetscCall(PetscStrallocpy(c->cats[q], &m->cats[m->ncat]));
            hit = m->ncat++;
          }
          catmap[k][f][q] = hit;
        }
      }
    objkey[nobs++] = k;
  }

  *nobs_ = nobs;
  PetscFunctionReturn(0);
}

/* The interleaved local block: every file's local rows in file order, genes remapped; obs packed as 2 floats per value
   (a double split in two, so that CsCSRFetchRows moves them with the rows). */
static PetscErrorCode Interleave(CsDataset ds, PetscInt nf, CsH5adBlock *b, PetscInt **colmap, const CsObsColumn *obs, const PetscInt *objkey,
                                 PetscInt ***catmap, PetscInt nobs, PetscInt ng, CsCSR *Xi_, CsCSR *Oi_)
{
  CsCSR    Xi, Oi;
  int64_t  nnz = 0;
  PetscInt nint = 0, at = 0;

  PetscFunctionBeginUser;
  for (PetscInt f = 0; f < nf; f++) nint += b[f].nlocal, nnz += b[f].X.indptr[b[f].nlocal];
  PetscCall(PetscMemzero(&Xi, sizeof(Xi)));
  PetscCall(PetscMemzero(&Oi, sizeof(Oi)));
  Xi.nrows = Oi.nrows = nint, Xi.ncols = ng, Oi.ncols = 2 * nobs;
  PetscCall(PetscMalloc1(nint + 1, &Xi.indptr)); /* three allocations: CsCSRFree frees them one by one */
  PetscCall(PetscMalloc1(nnz + 1, &Xi.indices));
  PetscCall(PetscMalloc1(nnz + 1, &Xi.data));
  PetscCall(PetscMalloc1(nint + 1, &Oi.indptr));
  PetscCall(PetscMalloc1((size_t)2 * nobs * nint + 1, &Oi.indices));
  PetscCall(PetscMalloc1((size_t)2 * nobs * nint + 1, &Oi.data));
  Xi.indptr[0] = Oi.indptr[0] = 0;
  {
    int64_t e = 0, o = 0;
    Entry  *row;
    PetscInt maxg = 1;
    for (PetscInt f = 0; f < nf; f++) maxg = PetscMax(maxg, b[f].ngenes);
    PetscCall(PetscMalloc1(maxg, &row));
    for (PetscInt f = 0; f < nf; f++)
      for (PetscInt i = 0; i < b[f].nlocal; i++, at++) {
        PetscInt n = 0;
        for (int64_t q = b[f].X.indptr[i]; q < b[f].X.indptr[i + 1]; q++) {
          PetscInt j = colmap[f][b[f].X.indices[q]];
          if (j >= 0) row[n].j = (int32_t)j, row[n++].v = b[f].X.data[q];
        }
        qsort(row, (size_t)n, sizeof(Entry), CmpEntry);
        for (PetscInt q = 0; q < n; q++) Xi.indices[e] = row[q].j, Xi.data[e++] = row[q].v;
        Xi.indptr[at + 1] = e;
        for (PetscInt c = 0; c < nobs; c++) {
          PetscInt     k  = objkey[c];
          CsObsColumn *fc = CsH5adBlockGetObs(&b[f], ds->keys[k]);
          double       v;
          float        two[2];
          if (obs[c].kind == CS_OBS_NUMERIC) v = fc ? fc->values[i] : NAN;
          else v = (!fc || obs[c].capped || fc->codes[i] < 0) ? -1 : (double)catmap[k][f][fc->codes[i]];
          memcpy(two, &v, sizeof(v));
          Oi.indices[o] = (int32_t)(2 * c), Oi.data[o++] = two[0];
          Oi.indices[o] = (int32_t)(2 * c + 1), Oi.data[o++] = two[1];
        }
        Oi.indptr[at + 1] = o;
      }
    PetscCall(PetscFree(row));
  }
  *Xi_ = Xi, *Oi_ = Oi;
  PetscFunctionReturn(0);
}

/* Rows of the concatenation in file order, split evenly over the ranks: fetched from the interleaved blocks. */
static PetscErrorCode Redistribute(MPI_Comm comm, PetscInt nf, CsH5adBlock *b, CsCSR *Xi, CsCSR *Oi, CsCSR *Xo, CsCSR *Oo,
                                   PetscInt *nlocal)
{
  PetscMPIInt rank, size;
  PetscLayout L;
  PetscInt   *want, N = 0, r0, r1, *offs, *fstart, *fnloc, *prefix;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  /* where each row of the concatenation lives in the interleaved order */
  PetscCall(PetscLayoutCreateFromSizes(comm, Xi->nrows, PETSC_DECIDE, 1, &L));
  PetscCall(PetscMalloc4(nf + 1, &offs, (size_t)nf * size, &fstart, (size_t)nf * size, &fnloc, (size_t)nf * size + 1, &prefix));
  offs[0] = 0;
  for (PetscInt f = 0; f < nf; f++) {
    offs[f + 1] = offs[f] + b[f].nglobal;
    PetscCallMPI(MPI_Allgather(&b[f].rstart, 1, MPIU_INT, fstart + (size_t)f * size, 1, MPIU_INT, comm));
    PetscCallMPI(MPI_Allgather(&b[f].nlocal, 1, MPIU_INT, fnloc + (size_t)f * size, 1, MPIU_INT, comm));
  }
  for (PetscMPIInt r = 0; r < size; r++) { /* prefix[f * size + r]: rows of files before f in rank r's interleaved block */
    PetscInt acc = 0;
    for (PetscInt f = 0; f < nf; f++) prefix[(size_t)f * size + r] = acc, acc += fnloc[(size_t)f * size + r];
  }
  N  = offs[nf];
  r0 = (PetscInt)((int64_t)N * rank / size), r1 = (PetscInt)((int64_t)N * (rank + 1) / size);
  PetscCall(PetscMalloc1(r1 - r0 + 1, &want));
  for (PetscInt g = r0, f = 0; g < r1; g++) {
    PetscInt    i;
    PetscMPIInt r = 0;
    while (g >= offs[f + 1]) f++;
    i = g - offs[f];
    while (r + 1 < size && (fnloc[(size_t)f * size + r] == 0 || i >= fstart[(size_t)f * size + r] + fnloc[(size_t)f * size + r])) r++;
    want[g - r0] = L->range[r] + prefix[(size_t)f * size + r] + (i - fstart[(size_t)f * size + r]);
  }
  PetscCall(CsCSRFetchRows(L, Xi, r1 - r0, want, Xo));
  PetscCall(CsCSRFetchRows(L, Oi, r1 - r0, want, Oo));
  PetscCall(PetscFree(want));
  PetscCall(PetscFree4(offs, fstart, fnloc, prefix));
  PetscCall(PetscLayoutDestroy(&L));
  PetscCall(CsCSRFree(Xi));
  PetscCall(CsCSRFree(Oi));
  *nlocal = r1 - r0;
  PetscFunctionReturn(0);
}

PetscErrorCode CsDatasetReadFiles(CsDataset ds)
{
  MPI_Comm     comm = ds->comm;
  PetscInt     nf, ng = 0, nobs = 0;
  char       **paths, **genes = NULL;
  CsH5adBlock *b;
  PetscInt   **colmap;
  PetscBool   *optional, uni;
  CsObsColumn *obs;
  PetscInt  ***catmap; /* [key][file][cat] merged code */
  PetscInt    *objkey; /* merged column -> key */

  PetscFunctionBeginUser;
  CsCheckAll(comm, !strcmp(ds->genes_mode, "intersection") || !strcmp(ds->genes_mode, "union"),
             "-genes %s: give intersection (genes in every file) or union (missing genes are zeros)", ds->genes_mode);
  uni = strcmp(ds->genes_mode, "union") ? PETSC_FALSE : PETSC_TRUE;
  PetscCall(ListFiles(ds, &nf, &paths));
  for (PetscInt f = 0; f < nf; f++) {
    CsPathKind kind;
    CsCheckAll(comm, paths[f][0], "-data: file %" PetscInt_FMT " of the list is empty", f + 1);
    PetscCall(CsPathGetKind(comm, paths[f], &kind));
    CsCheckAll(comm, kind != CS_PATH_DIR, "-data %s is a folder: give the .h5ad file", paths[f]);
    CsCheckAll(comm, kind != CS_PATH_NONE, "-data: %s (file %" PetscInt_FMT " of %" PetscInt_FMT ") does not exist", paths[f], f + 1, nf);
  }
  PetscCall(PetscMalloc4(nf, &b, nf, &colmap, ds->nkeys + 1, &optional, ds->nkeys + 1, &catmap));
  PetscCall(PetscMemzero(b, sizeof(*b) * (size_t)nf));
  for (PetscInt k = 0; k < ds->nkeys; k++) optional[k] = PETSC_FALSE;
  for (PetscInt f = 0; f < nf; f++) {
    PetscCall(CsH5adRead(comm, paths[f], ds->layer, ds->nkeys, ds->keys, optional, &b[f]));
    PetscCall(CheckUnique(comm, paths[f], b[f].ngenes, b[f].genes));
  }

  PetscCall(AlignGenes(comm, uni, nf, b, paths, &ng, &genes, colmap));
  PetscCall(PetscCalloc1(ds->nkeys + 1, &obs));
  PetscCall(PetscCalloc1(ds->nkeys + 1, &objkey));
  PetscCall(UnifyObs(ds, nf, b, paths, obs, objkey, catmap, &nobs));
  {
    CsCSR Xi, Oi, Xo, Oo;
    PetscCall(Interleave(ds, nf, b, colmap, obs, objkey, catmap, nobs, ng, &Xi, &Oi));
    PetscCall(Redistribute(comm, nf, b, &Xi, &Oi, &Xo, &Oo, &ds->nlocal));
    Xo.ncols = ng;

    /* the dataset takes the rows, genes and columns */
    ds->ngenes = ng, ds->X = Xo, ds->genes = genes;
    for (PetscInt c = 0; c < nobs; c++) {
      CsObsColumn *m = &obs[c];
      if (m->kind == CS_OBS_NUMERIC) PetscCall(PetscMalloc1(ds->nlocal + 1, &m->values));
      else if (!m->capped) PetscCall(PetscMalloc1(ds->nlocal + 1, &m->codes));
      for (PetscInt i = 0; i < ds->nlocal; i++) {
        double v;
        float  two[2] = {Oo.data[Oo.indptr[i] + 2 * c], Oo.data[Oo.indptr[i] + 2 * c + 1]};
        memcpy(&v, two, sizeof(v));
        if (m->values) m->values[i] = v;
        else if (m->codes) m->codes[i] = (PetscInt)v;
      }
    }
    PetscCall(CsCSRFree(&Oo));
    ds->nobs = nobs, ds->obs = obs;
  }
  PetscCall(PetscStrncpy(ds->encoding, b[0].encoding, sizeof(ds->encoding)));
  ds->nfiles = nf;
  if (nf == 1) PetscCall(PetscStrncpy(ds->path, paths[0], sizeof(ds->path))); /* a list of one file is that file */
  for (PetscInt k = 0; k < ds->nkeys; k++) {
    for (PetscInt f = 0; catmap[k] && f < nf; f++) PetscCall(PetscFree(catmap[k][f]));
    PetscCall(PetscFree(catmap[k]));
  }
  for (PetscInt f = 0; f < nf; f++) {
    PetscCall(PetscFree(colmap[f]));
    PetscCall(CsH5adBlockFree(&b[f]));
  }
  PetscCall(PetscFree(objkey));
  PetscCall(PetscFree4(b, colmap, optional, catmap));
  PetscCall(CsStrArrayDestroy(nf, &paths));
  PetscFunctionReturn(0);
}
