/* `cellshift inspect`: what an .h5ad holds and whether cellshift can read it. See include/cellshift/h5ad.h.

   Two passes. Rank 0 reads the layout with the serial driver (encodings, dtypes, filters, layers, the obs and var
   columns). Then every rank reads its block of X and of the readable obs columns with the parallel reader
   (CsH5adRead), which checks the matrix and the columns as `run` would; the category counts are sums over the
   ranks (a string column with more than MAX_DISTINCT distinct values is reported as such, not gathered). Errors
   are collective, and nothing is printed unless the whole file passed. */
#include <cellshift/h5ad.h>
#include "ioimpl.h"
#include <stdarg.h>
#include <sys/stat.h>

#define TOP_CATEGORIES 20
/* String columns with more distinct values (barcodes, say) are not gathered: "more than MAX_DISTINCT". */
#define MAX_DISTINCT 10000

/* Growing text, filled on rank 0 and printed at the end. */
typedef struct {
  char  *s;
  size_t n, cap;
} Text;

static PetscErrorCode TextPrintf(Text *t, const char fmt[], ...)
{
  va_list ap;
  int     len;

  PetscFunctionBeginUser;
  va_start(ap, fmt);
  len = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (t->n + (size_t)len + 1 > t->cap) {
    size_t cap = PetscMax(2 * t->cap, t->n + (size_t)len + 1024);
    PetscCall(PetscRealloc(cap, &t->s));
    t->cap = cap;
  }
  va_start(ap, fmt);
  vsnprintf(t->s + t->n, (size_t)len + 1, fmt, ap);
  va_end(ap);
  t->n += (size_t)len;
  PetscFunctionReturn(0);
}

/* Line by line, so the viewer's indentation applies and no line length limit is met. */
static PetscErrorCode TextView(const Text *t, PetscViewer v)
{
  PetscFunctionBeginUser;
  for (size_t a = 0; a < t->n;) {
    size_t b = a;
    while (b < t->n && t->s[b] != '\n') b++;
    PetscCall(PetscViewerASCIIPrintf(v, "%.*s\n", (int)(b - a), t->s + a));
    a = b + 1;
  }
  PetscFunctionReturn(0);
}

/* One obs column as found on disk. */
typedef enum { COL_CATEGORICAL, COL_STRING, COL_BOOLEAN, COL_NUMERIC, COL_OTHER } ColKind;
static const char *const ColKinds[] = {"categorical", "string", "boolean", "numeric", "other"};

typedef struct {
  char    name[256];
  ColKind kind;
  char    detail[128]; /* dtype, or the encoding of an unreadable column */
} Column;

/* "float32, 1234 entries, gzip(4) chunked" for one dataset; *compressed is raised when it has a filter. */
static PetscErrorCode DatasetInfo(hid_t loc, const char name[], char dtype[], size_t dlen, hsize_t *n, char storage[],
                                  size_t slen, PetscBool *compressed)
{
  hid_t        d, t, p;
  int          nf, rank;
  hsize_t      dims[H5S_MAX_RANK];
  H5D_layout_t layout;

  PetscFunctionBeginUser;
  H5Call(d = H5Dopen2(loc, name, H5P_DEFAULT), "cannot open dataset %s", name);
  H5Call(t = H5Dget_type(d), "%s: cannot get the type", name);
  CsH5TypeName(t, dtype, dlen);
  PetscCall(CsH5Close(&t, name));
  PetscCall(CsH5Shape(d, name, &rank, dims, H5S_MAX_RANK));
  *n = rank >= 1 ? dims[0] : 1;
  for (int i = 1; i < rank; i++) *n *= dims[i];
  H5Call(p = H5Dget_create_plist(d), "%s: cannot get the creation properties", name);
  H5Call(nf = H5Pget_nfilters(p), "%s: cannot get the filters", name);
  storage[0] = 0;
  for (int i = 0; i < nf; i++) {
    unsigned     flags, cd[8];
    size_t       ncd = 8;
    char         fname[64], one[80];
    H5Z_filter_t id;
    H5Call(id = H5Pget_filter2(p, (unsigned)i, &flags, &ncd, cd, sizeof(fname), fname, NULL), "%s: cannot get filter %d", name, i);
    if (id == H5Z_FILTER_DEFLATE) snprintf(one, sizeof(one), "gzip(%u)", ncd ? cd[0] : 0);
    else if (id == H5Z_FILTER_SHUFFLE) snprintf(one, sizeof(one), "shuffle");
    else if (id == H5Z_FILTER_FLETCHER32) snprintf(one, sizeof(one), "fletcher32");
    else if (id == H5Z_FILTER_SZIP) snprintf(one, sizeof(one), "szip");
    else if (id == 32000) snprintf(one, sizeof(one), "lzf");
    else if (id == 32001) snprintf(one, sizeof(one), "blosc");
    else if (id == 32015) snprintf(one, sizeof(one), "zstd");
    else snprintf(one, sizeof(one), "filter %d", (int)id);
    if (id != H5Z_FILTER_SHUFFLE && id != H5Z_FILTER_FLETCHER32) *compressed = PETSC_TRUE;
    PetscCall(PetscStrlcat(storage, storage[0] ? "+" : "", slen));
    PetscCall(PetscStrlcat(storage, one, slen));
  }
  if (!nf) PetscCall(PetscStrlcat(storage, "not compressed", slen));
  H5Call(layout = H5Pget_layout(p), "%s: cannot get the layout", name);
  PetscCall(PetscStrlcat(storage, layout == H5D_CHUNKED ? ", chunked" : "", slen));
  PetscCall(CsH5Close(&p, name));
  PetscCall(CsH5Close(&d, name));
  PetscFunctionReturn(0);
}

/* The matrix at `name` (X or a layer): encoding, shape, dtypes, nnz, storage. */
static PetscErrorCode MatrixInfo(hid_t f, const char name[], Text *t, PetscBool brief)
{
  H5O_info_t info;
  char       enc[64] = "", ver[32] = "", dtype[32], storage[256];
  PetscBool  found, compressed = PETSC_FALSE;
  hsize_t    n;

  PetscFunctionBeginUser;
  H5Call(H5Oget_info_by_name2(f, name, &info, H5O_INFO_BASIC, H5P_DEFAULT), "cannot query /%s", name);
  if (info.type == H5O_TYPE_DATASET) {
    hid_t   d;
    hsize_t dims[2] = {0, 0};
    int     nd;
    H5Call(d = H5Dopen2(f, name, H5P_DEFAULT), "cannot open /%s", name);
    PetscCall(CsH5Shape(d, name, &nd, dims, 2));
    PetscCheck(nd == 2, PETSC_COMM_SELF, CS_ERR_INPUT, "/%s is a dataset but not a 2-D array", name);
    PetscCall(CsH5ReadAttrString(d, "encoding-type", enc, sizeof(enc), &found));
    PetscCall(CsH5Close(&d, name));
    PetscCall(DatasetInfo(f, name, dtype, sizeof(dtype), &n, storage, sizeof(storage), &compressed));
    PetscCall(TextPrintf(t, "%s%s: dense%s%s%s, %llu cells x %llu genes, %s, %s\n", brief ? "  " : "", name,
                         found ? " (encoding-type " : "", found ? enc : "", found ? ")" : "", (unsigned long long)dims[0],
                         (unsigned long long)dims[1], dtype, storage));
    PetscFunctionReturn(0);
  }
  PetscCheck(info.type == H5O_TYPE_GROUP, PETSC_COMM_SELF, CS_ERR_INPUT, "/%s is neither a group nor a dataset", name);
  {
    hid_t       g;
    int64_t     shape[2] = {-1, -1};
    const char *kind, *sa;
    htri_t      has;
    PetscBool   legacy;
    char        dt[3][32], st[3][256];
    hsize_t     len[3];
    const char *part[3] = {"data", "indices", "indptr"};

    H5Call(g = H5Gopen2(f, name, H5P_DEFAULT), "cannot open /%s", name);
    PetscCall(CsH5ReadAttrString(g, "encoding-type", enc, sizeof(enc), &found));
    legacy = !found;
    if (found) PetscCall(CsH5ReadAttrString(g, "encoding-version", ver, sizeof(ver), &found));
    else PetscCall(CsH5ReadAttrString(g, "h5sparse_format", enc, sizeof(enc), &found)); /* anndata < 0.7 */
    kind = !strcmp(enc, "csr_matrix") || !strcmp(enc, "csr")   ? "csr"
           : !strcmp(enc, "csc_matrix") || !strcmp(enc, "csc") ? "csc"
                                                                : NULL;
    PetscCheck(kind, PETSC_COMM_SELF, CS_ERR_INPUT, "/%s is a group with unknown sparse encoding '%s'", name, enc);
    H5Call(has = H5Aexists(g, "shape"), "cannot query /%s shape", name);
    sa = has ? "shape" : "h5sparse_shape";
    H5Call(has = H5Aexists(g, sa), "cannot query /%s %s", name, sa);
    PetscCheck(has, PETSC_COMM_SELF, CS_ERR_INPUT, "/%s has no shape attribute", name);
    {
      char what[300];
      PetscCall(PetscSNPrintf(what, sizeof(what), "/%s", name));
      PetscCall(CsH5ReadAttrInt64Array(g, what, sa, 2, shape));
    }
    for (int k = 0; k < 3; k++) {
      PetscBool e;
      PetscCall(CsH5Exists(g, part[k], &e));
      PetscCheck(e, PETSC_COMM_SELF, CS_ERR_INPUT, "sparse /%s has no %s", name, part[k]);
      PetscCall(DatasetInfo(g, part[k], dt[k], sizeof(dt[k]), &len[k], st[k], sizeof(st[k]), &compressed));
    }
    PetscCall(CsH5Close(&g, name));
    if (brief) {
      PetscCall(TextPrintf(t, "  %s: %s, %lld x %lld, %s, %llu non-zeros, %s\n", name, kind, (long long)shape[0],
                           (long long)shape[1], dt[0], (unsigned long long)len[0], compressed ? "compressed" : "not compressed"));
      PetscFunctionReturn(0);
    }
    PetscCall(TextPrintf(t, "%s: %s (%s %s%s%s), %lld cells x %lld genes\n", name, kind,
                         legacy ? "h5sparse_format" : "encoding-type", enc, ver[0] ? " " : "", ver, (long long)shape[0],
                         (long long)shape[1]));
    PetscCall(TextPrintf(t, "  data %s, indices %s, indptr %s; %llu non-zeros (%.3g%% of the entries)\n", dt[0], dt[1], dt[2],
                         (unsigned long long)len[0],
                         shape[0] > 0 && shape[1] > 0 ? 100.0 * (double)len[0] / ((double)shape[0] * (double)shape[1]) : 0.0));
    PetscCall(TextPrintf(t, "  storage: data %s; indices %s; indptr %s\n", st[0], st[1], st[2]));
  }
  PetscFunctionReturn(0);
}

/* The len strings of attribute a (type t, dataspace s) into names[0..len). */
static PetscErrorCode ReadColumnOrder(hid_t a, hid_t t, hid_t s, hsize_t len, char **names)
{
  hid_t  mt;
  htri_t var;

  PetscFunctionBeginUser;
  H5Call(var = H5Tis_variable_str(t), "cannot query the type of attribute column-order");
  if (var) {
    char     **tmp;
    H5T_cset_t cset;
    H5Call(cset = H5Tget_cset(t), "cannot get the character set of attribute column-order");
    H5Call(mt = H5Tcopy(H5T_C_S1), "cannot make a string type");
    H5Call(H5Tset_size(mt, H5T_VARIABLE), "cannot make a string type");
    H5Call(H5Tset_cset(mt, cset), "cannot make a string type");
    herr_t e;
    PetscCall(PetscCalloc1(len, &tmp));
    e = H5Aread(a, mt, tmp);
    if (e < 0) PetscCall(CsH5Close(&mt, "column-order")); /* a failed read leaves the type pinning the file */
    H5Call(e, "cannot read attribute column-order");
    for (hsize_t i = 0; i < len; i++) PetscCall(PetscStrallocpy(tmp[i] ? tmp[i] : "", &names[i]));
    H5Call(H5Dvlen_reclaim(mt, s, H5P_DEFAULT, tmp), "cannot free attribute column-order");
    PetscCall(PetscFree(tmp));
    PetscCall(CsH5Close(&mt, "column-order"));
  } else {
    size_t w = H5Tget_size(t);
    char  *tmp;
    PetscCheck(w > 0, PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED, "cannot get the size of attribute column-order");
    PetscCall(PetscCalloc1(len * w + 1, &tmp));
    H5Call(H5Aread(a, t, tmp), "cannot read attribute column-order");
    for (hsize_t i = 0; i < len; i++) {
      PetscCall(PetscCalloc1(w + 1, &names[i]));
      memcpy(names[i], tmp + i * w, w);
    }
    PetscCall(PetscFree(tmp));
  }
  PetscFunctionReturn(0);
}

/* A dataframe's column-order attribute (1-D strings; h5py writes an empty float array for no columns). */
static PetscErrorCode ColumnOrder(hid_t g, PetscInt *n, char ***names)
{
  hid_t          a, t, s;
  hsize_t        len = 0;
  htri_t         e;
  PetscErrorCode ierr = 0;

  PetscFunctionBeginUser;
  *n     = 0;
  *names = NULL;
  H5Call(e = H5Aexists(g, "column-order"), "cannot query attribute column-order");
  if (!e) PetscFunctionReturn(0);
  H5Call(a = H5Aopen(g, "column-order", H5P_DEFAULT), "cannot open attribute column-order");
  H5Call(t = H5Aget_type(a), "cannot get the type of attribute column-order");
  H5Call(s = H5Aget_space(a), "cannot get the dataspace of attribute column-order");
  if (H5Tget_class(t) == H5T_STRING && H5Sget_simple_extent_ndims(s) == 1 && H5Sget_simple_extent_dims(s, &len, NULL) < 0)
    len = 0; /* anything else lists no columns */
  PetscCall(PetscCalloc1(len + 1, names));
  if (len) ierr = ReadColumnOrder(a, t, s, len, *names);
  PetscCall(CsH5Close(&s, "column-order")); /* on every path: a string type pins the file */
  PetscCall(CsH5Close(&t, "column-order"));
  PetscCall(CsH5Close(&a, "column-order"));
  if (ierr) PetscCall(CsStrArrayDestroy((PetscInt)len, names));
  PetscCall(ierr);
  *n = (PetscInt)len;
  PetscFunctionReturn(0);
}

/* Names of the links of a group: those in its column-order attribute first, in that order, then the rest. */
static PetscErrorCode GroupNames(hid_t g, PetscInt *n, char ***names)
{
  H5G_info_t info;
  PetscInt   norder;
  char     **order;

  PetscFunctionBeginUser;
  H5Call(H5Gget_info(g, &info), "cannot list a group");
  PetscCall(ColumnOrder(g, &norder, &order));
  PetscCall(PetscCalloc1(info.nlinks + 1, names));
  *n = 0;
  for (PetscInt k = 0; k < norder; k++) {
    PetscBool e;
    PetscCall(CsH5Exists(g, order[k], &e));
    if (e && *n < (PetscInt)info.nlinks) PetscCall(PetscStrallocpy(order[k], &(*names)[(*n)++]));
  }
  for (hsize_t i = 0; i < info.nlinks; i++) {
    char      nm[256];
    PetscBool listed = PETSC_FALSE;
    H5Call(H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, nm, sizeof(nm), H5P_DEFAULT), "cannot list a group");
    for (PetscInt k = 0; k < norder && !listed; k++) listed = strcmp(order[k], nm) ? PETSC_FALSE : PETSC_TRUE;
    if (!listed && *n < (PetscInt)info.nlinks) PetscCall(PetscStrallocpy(nm, &(*names)[(*n)++]));
  }
  PetscCall(CsStrArrayDestroy(norder, &order));
  PetscFunctionReturn(0);
}

static PetscErrorCode ObsColumnInfo(hid_t obs, const char name[], Column *c)
{
  H5O_info_t info;

  PetscFunctionBeginUser;
  PetscCall(PetscStrncpy(c->name, name, sizeof(c->name)));
  H5Call(H5Oget_info_by_name2(obs, name, &info, H5O_INFO_BASIC, H5P_DEFAULT), "cannot query /obs/%s", name);
  if (info.type == H5O_TYPE_GROUP) {
    hid_t     g;
    char      enc[64];
    PetscBool found, cats, codes;
    H5Call(g = H5Gopen2(obs, name, H5P_DEFAULT), "cannot open /obs/%s", name);
    PetscCall(CsH5ReadAttrString(g, "encoding-type", enc, sizeof(enc), &found));
    PetscCall(CsH5Exists(g, "categories", &cats));
    PetscCall(CsH5Exists(g, "codes", &codes));
    if (cats && codes && (!found || !strcmp(enc, "categorical"))) {
      hid_t t, d;
      H5Call(d = H5Dopen2(g, "codes", H5P_DEFAULT), "cannot open /obs/%s/codes", name);
      H5Call(t = H5Dget_type(d), "/obs/%s/codes: cannot get the type", name);
      c->kind = COL_CATEGORICAL;
      CsH5TypeName(t, c->detail, sizeof(c->detail));
      PetscCall(CsH5Close(&t, name));
      PetscCall(CsH5Close(&d, name));
    } else {
      c->kind = COL_OTHER;
      PetscCall(PetscSNPrintf(c->detail, sizeof(c->detail), "group with encoding-type '%s'", found ? enc : "none"));
    }
    PetscCall(CsH5Close(&g, name));
  } else if (info.type == H5O_TYPE_DATASET) {
    hid_t       d, t;
    H5T_class_t cls;
    int         nd;
    hsize_t     dims[1];
    H5Call(d = H5Dopen2(obs, name, H5P_DEFAULT), "cannot open /obs/%s", name);
    H5Call(t = H5Dget_type(d), "/obs/%s: cannot get the type", name);
    PetscCall(CsH5Shape(d, name, &nd, dims, 1));
    H5Call(cls = H5Tget_class(t), "/obs/%s: cannot get the type class", name);
    CsH5TypeName(t, c->detail, sizeof(c->detail));
    c->kind = nd != 1 ? COL_OTHER
              : cls == H5T_STRING ? COL_STRING
              : cls == H5T_ENUM ? COL_BOOLEAN
              : cls == H5T_INTEGER || cls == H5T_FLOAT ? COL_NUMERIC
                                                       : COL_OTHER;
    if (nd != 1) PetscCall(PetscStrlcat(c->detail, ", not one-dimensional", sizeof(c->detail)));
    PetscCall(CsH5Close(&t, name));
    PetscCall(CsH5Close(&d, name));
  } else {
    c->kind = COL_OTHER;
    PetscCall(PetscStrncpy(c->detail, "not a group or dataset", sizeof(c->detail)));
  }
  PetscFunctionReturn(0);
}

/* The layers, one line each. */
static PetscErrorCode LayersInfo(hid_t f, Text *head)
{
  PetscBool e;
  PetscInt  n = 0;
  char    **names;
  hid_t     g;

  PetscFunctionBeginUser;
  PetscCall(CsH5Exists(f, "layers", &e));
  if (!e) {
    PetscCall(TextPrintf(head, "layers: 0 (none)\n"));
    PetscFunctionReturn(0);
  }
  H5Call(g = H5Gopen2(f, "layers", H5P_DEFAULT), "cannot open /layers");
  PetscCall(GroupNames(g, &n, &names));
  PetscCall(CsH5Close(&g, "/layers"));
  PetscCall(TextPrintf(head, "layers: %" PetscInt_FMT "%s\n", n, n ? "" : " (none)"));
  for (PetscInt k = 0; k < n; k++) {
    char lname[300];
    PetscCall(PetscSNPrintf(lname, sizeof(lname), "layers/%s", names[k]));
    PetscCall(MatrixInfo(f, lname, head, PETSC_TRUE));
  }
  PetscCall(CsStrArrayDestroy(n, &names));
  PetscFunctionReturn(0);
}

/* The obs columns as found on disk, and the name of the obs index. */
static PetscErrorCode ObsInfo(hid_t f, PetscInt *ncols, Column **cols, char obsindex[], size_t ilen)
{
  PetscBool e, found;
  PetscInt  n;
  char    **names;
  hid_t     g;

  PetscFunctionBeginUser;
  PetscCall(CsH5Exists(f, "obs", &e));
  PetscCheck(e, PETSC_COMM_SELF, CS_ERR_INPUT, "no /obs (the cell annotations)");
  H5Call(g = H5Gopen2(f, "obs", H5P_DEFAULT), "cannot open /obs");
  PetscCall(CsH5ReadAttrString(g, "_index", obsindex, ilen, &found));
  if (!found) PetscCall(PetscStrncpy(obsindex, "_index", ilen));
  PetscCall(GroupNames(g, &n, &names));
  PetscCall(PetscCalloc1(n + 1, cols));
  *ncols = 0;
  for (PetscInt k = 0; k < n; k++) {
    if (!strcmp(names[k], obsindex) || !strcmp(names[k], "__categories")) continue;
    PetscCall(ObsColumnInfo(g, names[k], &(*cols)[(*ncols)++]));
  }
  PetscCall(CsStrArrayDestroy(n, &names));
  PetscCall(CsH5Close(&g, "/obs"));
  PetscFunctionReturn(0);
}

/* var: the number of genes, the first names and the other columns. */
static PetscErrorCode VarInfo(hid_t f, Text *tail)
{
  char      vindex[256], iname[300], dtype[32], storage[256];
  hsize_t   ng, m;
  char    **first = NULL, **names;
  PetscBool compressed = PETSC_FALSE, e, found;
  PetscInt  n;
  hid_t     g, d;

  PetscFunctionBeginUser;
  PetscCall(CsH5Exists(f, "var", &e));
  PetscCheck(e, PETSC_COMM_SELF, CS_ERR_INPUT, "no /var (the gene annotations)");
  H5Call(g = H5Gopen2(f, "var", H5P_DEFAULT), "cannot open /var");
  PetscCall(CsH5ReadAttrString(g, "_index", vindex, sizeof(vindex), &found));
  if (!found) PetscCall(PetscStrncpy(vindex, "_index", sizeof(vindex)));
  PetscCall(CsH5Exists(g, vindex, &e));
  PetscCheck(e, PETSC_COMM_SELF, CS_ERR_INPUT, "/var has no index dataset '%s'", vindex);
  PetscCall(DatasetInfo(g, vindex, dtype, sizeof(dtype), &ng, storage, sizeof(storage), &compressed));
  PetscCall(PetscSNPrintf(iname, sizeof(iname), "/var/%s", vindex));
  m = PetscMin(ng, 5);
  H5Call(d = H5Dopen2(g, vindex, H5P_DEFAULT), "cannot open %s", iname);
  PetscCall(CsH5ReadStrings(d, iname, 0, m, &first));
  PetscCall(CsH5Close(&d, iname));
  PetscCall(TextPrintf(tail, "var: %llu genes, index '%s' (", (unsigned long long)ng, vindex));
  for (hsize_t i = 0; i < m; i++) PetscCall(TextPrintf(tail, "%s%s", i ? ", " : "", first[i]));
  PetscCall(TextPrintf(tail, "%s)\n", ng > m ? ", ..." : ""));
  PetscCall(CsStrArrayDestroy((PetscInt)m, &first));
  PetscCall(GroupNames(g, &n, &names));
  PetscCall(TextPrintf(tail, "  columns:"));
  for (PetscInt k = 0, shown = 0; k < n; k++)
    if (strcmp(names[k], vindex)) PetscCall(TextPrintf(tail, "%s %s", shown++ ? "," : "", names[k]));
  PetscCall(TextPrintf(tail, "%s\n", n <= 1 ? " none" : ""));
  PetscCall(CsStrArrayDestroy(n, &names));
  PetscCall(CsH5Close(&g, "/var"));
  PetscFunctionReturn(0);
}

/* Rank 0: the layout. head = file, X, layers; tail = var; cols = the obs columns. */
static PetscErrorCode ReadLayout(hid_t f, const char path[], Text *head, Text *tail, PetscInt *ncols, Column **cols,
                                 char obsindex[], size_t ilen)
{
  PetscBool   e;
  struct stat st;
  double      b;

  PetscFunctionBeginUser;
  b = stat(path, &st) ? 0.0 : (double)st.st_size;
  PetscCall(TextPrintf(head, "%s: %.1f %s on disk\n", path, b >= 1e9 ? b / 1e9 : b >= 1e6 ? b / 1e6 : b / 1e3,
                       b >= 1e9 ? "GB" : b >= 1e6 ? "MB" : "kB"));
  PetscCall(CsH5Exists(f, "X", &e));
  PetscCheck(e, PETSC_COMM_SELF, CS_ERR_INPUT, "no /X (the expression matrix)");
  PetscCall(MatrixInfo(f, "X", head, PETSC_FALSE));
  PetscCall(LayersInfo(f, head));
  PetscCall(ObsInfo(f, ncols, cols, obsindex, ilen));
  PetscCall(VarInfo(f, tail));
  PetscFunctionReturn(0);
}

/* Rank 0, serial driver; the file is closed on every path (H5F_CLOSE_STRONG closes what an error left open). */
static PetscErrorCode InspectLayout(const char path[], Text *head, Text *tail, PetscInt *ncols, Column **cols,
                                    char obsindex[], size_t ilen)
{
  hid_t          fapl, f;
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  H5Call(fapl = H5Pcreate(H5P_FILE_ACCESS), "cannot make file access properties");
  H5Call(H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG), "cannot set the close degree");
  f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
  PetscCall(CsH5Close(&fapl, path));
  PetscCheck(f >= 0, PETSC_COMM_SELF, CS_ERR_INPUT, "cannot open it with HDF5");
  ierr = ReadLayout(f, path, head, tail, ncols, cols, obsindex, ilen);
  PetscCall(CsH5Close(&f, path));
  PetscCall(ierr);
  PetscFunctionReturn(0);
}

typedef struct {
  int64_t  n;
  PetscInt c;
} CatCount;

static int CmpCount(const void *a, const void *b)
{
  const CatCount *x = a, *y = b;
  if (x->n != y->n) return x->n < y->n ? 1 : -1;
  return (x->c > y->c) - (x->c < y->c);
}

/* Collective: the line(s) of one obs column, with counts summed over ranks (printed on rank 0). */
static PetscErrorCode ColumnSummary(MPI_Comm comm, const CsH5adBlock *ds, const Column *c, Text *t)
{
  CsObsColumn *col = CsH5adBlockGetObs(ds, c->name);

  PetscFunctionBeginUser;
  if (!col) {
    PetscCall(TextPrintf(t, "  %-24s %s (%s): not read by cellshift\n", c->name, ColKinds[c->kind], c->detail));
    PetscFunctionReturn(0);
  }
  if (col->capped) {
    PetscCall(TextPrintf(t, "  %-24s %s (%s), more than %d distinct values\n", c->name, ColKinds[c->kind], c->detail, MAX_DISTINCT));
    PetscFunctionReturn(0);
  }
  if (col->kind == CS_OBS_NUMERIC) {
    double v[4] = {PETSC_MAX_REAL, PETSC_MAX_REAL, 0, 0}; /* min, -max, sum, missing */
    for (PetscInt i = 0; i < ds->nlocal; i++) {
      double x = col->values[i];
      if (x != x) v[3] += 1;
      else v[0] = PetscMin(v[0], x), v[1] = PetscMin(v[1], -x), v[2] += x;
    }
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_DOUBLE, MPI_MIN, comm));
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, v + 2, 2, MPI_DOUBLE, MPI_SUM, comm));
    if (ds->nglobal > (PetscInt)v[3])
      PetscCall(TextPrintf(t, "  %-24s numeric (%s): min %g, max %g, mean %g%s", c->name, c->detail, v[0], -v[1],
                           v[2] / ((double)ds->nglobal - v[3]), v[3] > 0 ? ", " : "\n"));
    else PetscCall(TextPrintf(t, "  %-24s numeric (%s): ", c->name, c->detail));
    if (v[3] > 0) PetscCall(TextPrintf(t, "%.0f missing\n", v[3]));
  } else {
    int64_t  *cnt;
    CatCount *order;
    PetscInt  shown;
    PetscCall(PetscCalloc1(col->ncat + 1, &cnt)); /* cnt[ncat] = missing */
    for (PetscInt i = 0; i < ds->nlocal; i++) cnt[col->codes[i] >= 0 ? col->codes[i] : col->ncat]++;
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, cnt, (PetscMPIInt)(col->ncat + 1), MPI_INT64_T, MPI_SUM, comm));
    PetscCall(PetscMalloc1(col->ncat + 1, &order));
    for (PetscInt k = 0; k < col->ncat; k++) order[k] = (CatCount){cnt[k], k};
    qsort(order, (size_t)col->ncat, sizeof(CatCount), CmpCount);
    PetscCall(TextPrintf(t, "  %-24s %s (%s), %" PetscInt_FMT " %s\n", c->name, ColKinds[c->kind], c->detail, col->ncat,
                         c->kind == COL_STRING ? (col->ncat == 1 ? "distinct value" : "distinct values")
                                               : (col->ncat == 1 ? "category" : "categories")));
    shown = PetscMin(col->ncat, TOP_CATEGORIES);
    for (PetscInt k = 0; k < shown; k++)
      PetscCall(TextPrintf(t, "      %-30s %lld\n", col->cats[order[k].c], (long long)order[k].n));
    if (col->ncat > shown) PetscCall(TextPrintf(t, "      ... %" PetscInt_FMT " more\n", col->ncat - shown));
    if (cnt[col->ncat]) PetscCall(TextPrintf(t, "      %-30s %lld\n", "(missing)", (long long)cnt[col->ncat]));
    PetscCall(PetscFree(order));
    PetscCall(PetscFree(cnt));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsH5adInspect(MPI_Comm comm, const char path[], PetscViewer v)
{
  PetscMPIInt    rank, size;
  PetscErrorCode ierr  = 0;
  Text           head  = {0}, tail = {0}, obs = {0};
  PetscInt       ncols = 0;
  Column        *cols  = NULL;
  char           obsindex[256] = "";
  CsIOFile       io;
  CsH5adBlock    ds;
  char         **keys;
  PetscBool     *req;
  PetscInt       nkeys = 0;
  int64_t        nnz;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  /* The reader's checks first: a missing, foreign, damaged or truncated file is called so. */
  PetscCall(CsIOFileOpen(comm, path, CS_INFLATE_HDF5, &io));
  PetscCall(CsIOFileClose(&io));

  /* Pass 1: the layout, on rank 0. */
  if (!rank) ierr = InspectLayout(path, &head, &tail, &ncols, &cols, obsindex, sizeof(obsindex));
  PetscCall(CsAgreeCode(comm, ierr, path));
  PetscCallMPI(MPI_Bcast(&ncols, 1, MPIU_INT, 0, comm));
  if (rank) PetscCall(PetscCalloc1(ncols + 1, &cols));
  PetscCallMPI(MPI_Bcast(cols, (PetscMPIInt)(ncols * sizeof(Column)), MPI_BYTE, 0, comm));

  /* Pass 2: every rank reads and checks its block of X and of the readable obs columns. */
  PetscCall(PetscMalloc2(ncols + 1, &keys, ncols + 1, &req));
  for (PetscInt k = 0; k < ncols; k++)
    if (cols[k].kind != COL_OTHER) keys[nkeys] = cols[k].name, req[nkeys++] = PETSC_TRUE;
  PetscCall(CsH5adReadCapped(comm, path, "", nkeys, keys, req, MAX_DISTINCT, &ds));
  PetscCall(PetscFree2(keys, req));
  nnz = ds.X.indptr[ds.nlocal];
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &nnz, 1, MPI_INT64_T, MPI_SUM, comm));
  PetscCall(TextPrintf(&obs,
                       "checked on %d rank%s: %" PetscInt_FMT " cells x %" PetscInt_FMT
                       " genes, %lld non-zeros%s, column indices valid, values finite\n",
                       size, size > 1 ? "s" : "", ds.nglobal, ds.ngenes, (long long)nnz,
                       !strcmp(ds.encoding, "csr") ? "" : " (rows rebuilt from the file's layout)"));
  PetscCall(TextPrintf(&obs, "obs: %" PetscInt_FMT " columns, index '%s'\n", ncols, obsindex));
  for (PetscInt k = 0; k < ncols; k++) PetscCall(ColumnSummary(comm, &ds, &cols[k], &obs));
  PetscCall(CsH5adBlockFree(&ds));

  if (!rank) {
    PetscCall(TextView(&head, v));
    PetscCall(TextView(&obs, v));
    PetscCall(TextView(&tail, v));
  }
  PetscCall(PetscFree(head.s));
  PetscCall(PetscFree(tail.s));
  PetscCall(PetscFree(obs.s));
  PetscCall(PetscFree(cols));
  PetscFunctionReturn(0);
}
