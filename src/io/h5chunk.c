/* Reading elements of a 1-D dataset. See ioimpl.h.

   HDF5 inflates gzip chunks with zlib on the calling thread, one chunk at a time: for a compressed CSR matrix that
   is 92-97% of a read. For a 1-D dataset whose only filter is deflate, the reader instead fetches the chunks of the
   range as they are stored (H5Dread_chunk; H5Dget_chunk_info_by_coord would give their addresses but searches the
   whole index in HDF5 1.10, quadratic in the chunks) in batches, and inflates them with libdeflate or ISA-L on the
   rank's thread pool (src/core/threads.c), straight into the caller's buffer when a chunk lies inside the range
   and is stored in the memory type. Chunks cut by the range, or stored in another type, are inflated into scratch
   and converted by H5Tconvert with the read's transfer list, so every value is what H5Dread gives. Chunks without
   a filter are fetched the same way, straight into the caller's buffer where they can be, and not inflated;
   contiguous datasets are read with pread (CsIOReadContiguous). A chunk this path cannot take (not allocated,
   stored with its filter skipped, outside the file, not inflating to its size) is read through HDF5, as is every
   dataset with another layout or filter pipeline. */
#include "ioimpl.h"
#include <errno.h>
#include <unistd.h>
#include <libdeflate.h>
#if defined(CS_HAVE_ISAL)
#include <isa-l/igzip_lib.h>
#endif

PetscLogEvent CS_EVENT_CHUNK_FETCH, CS_EVENT_CHUNK_INFLATE;

/* Most elements one H5Dread moves (keeps every MPI-IO request far below 2 GiB). */
#define SLICE ((hsize_t)1 << 26)
/* A batch fetches about this many compressed bytes, and needs at most this much scratch. */
#define BATCH_BYTES ((size_t)32 << 20)
#define SCRATCH_BYTES ((size_t)64 << 20)

PetscErrorCode CsIORegisterEvents(void)
{
  static PetscBool done = PETSC_FALSE;

  PetscFunctionBeginUser;
  if (done) PetscFunctionReturn(0);
  PetscCall(PetscLogEventRegister("CsReadChunkFetch", CS_CLASSID, &CS_EVENT_CHUNK_FETCH));
  PetscCall(PetscLogEventRegister("CsReadInflate", CS_CLASSID, &CS_EVENT_CHUNK_INFLATE));
  done = PETSC_TRUE;
  PetscFunctionReturn(0);
}

/* --------------------------------------------------------------------------------------------------------------
   Through HDF5: hyperslabs of at most SLICE elements. */
static PetscErrorCode ReadHDF5(CsIOFile *f, hid_t d, const char what[], hid_t memtype, size_t esize, hsize_t start, hsize_t count,
                               void *buf)
{
  hid_t fs, ms;

  PetscFunctionBeginUser;
  H5Call(fs = H5Dget_space(d), "%s: cannot get the dataspace", what);
  for (hsize_t off = 0; off < count; off += SLICE) {
    hsize_t n = count - off < SLICE ? count - off : SLICE, s = start + off;
    H5Call(ms = H5Screate_simple(1, &n, NULL), "%s: cannot make a dataspace", what);
    H5Call(H5Sselect_hyperslab(fs, H5S_SELECT_SET, &s, NULL, &n, NULL), "%s: bad selection", what);
    H5Call(H5Dread(d, memtype, ms, fs, f->dxpl, (char *)buf + off * esize), "%s: cannot read elements %llu..%llu (damaged or unreadable data)", what,
           (unsigned long long)s, (unsigned long long)(s + n));
    PetscCall(CsH5Close(&ms, what));
  }
  PetscCall(CsH5Close(&fs, what));
  PetscFunctionReturn(0);
}

/* --------------------------------------------------------------------------------------------------------------
   The direct path. */
typedef struct {
  hid_t     ftype;  /* the file's element type (owned) */
  size_t    fsize;  /* bytes of a file element */
  size_t    msize;  /* bytes of a memory element */
  size_t    wide;   /* the larger of the two: what in-place conversion needs per element */
  hsize_t   chunk;  /* elements per chunk */
  size_t    cbytes; /* bytes of an inflated chunk */
  PetscBool same;   /* the file type is the memory type: no conversion */
  PetscBool raw;    /* no filter: a chunk's stored bytes are its elements, fetched straight to where they go */
} Plan;

typedef struct {
  hsize_t   first;   /* the dataset element the chunk starts at */
  hsize_t   size;    /* its compressed bytes */
  char     *src;     /* its compressed bytes, fetched */
  char     *dst;     /* where it inflates: the caller's buffer or scratch */
  PetscBool scratch; /* dst is scratch: converted and copied afterwards */
  PetscBool ok;      /* fetched, and inflated to exactly cbytes */
} Chunk;

/* Is d a 1-D, deflate-only chunked dataset of numbers whose chunks fit the scratch? */
static PetscErrorCode MakePlan(CsIOFile *f, hid_t d, const char what[], hid_t memtype, Plan *p, PetscBool *ok)
{
  hid_t        dcpl;
  H5D_layout_t layout;
  H5T_class_t  cls;
  htri_t       eq;
  int          nd = 0, nf = 0;

  PetscFunctionBeginUser;
  *ok      = PETSC_FALSE;
  p->ftype = H5I_INVALID_HID;
  p->raw   = PETSC_FALSE;
  if (f->inflate == CS_INFLATE_HDF5) PetscFunctionReturn(0);
  H5Call(dcpl = H5Dget_create_plist(d), "%s: cannot get the creation properties", what);
  H5Call(layout = H5Pget_layout(dcpl), "%s: cannot get the layout", what);
  if (layout == H5D_CHUNKED) {
    H5Call(nd = H5Pget_chunk(dcpl, 1, &p->chunk), "%s: cannot get the chunk size", what);
    H5Call(nf = H5Pget_nfilters(dcpl), "%s: cannot get the filters", what);
  }
  p->raw = nd == 1 && nf == 0 ? PETSC_TRUE : PETSC_FALSE;
  *ok    = p->raw;
  if (nd == 1 && nf == 1) {
    unsigned     flags, cd[8];
    size_t       ncd = 8;
    char         name[64];
    H5Z_filter_t id;
    H5Call(id = H5Pget_filter2(dcpl, 0, &flags, &ncd, cd, sizeof(name), name, NULL), "%s: cannot get the filter", what);
    *ok = id == H5Z_FILTER_DEFLATE ? PETSC_TRUE : PETSC_FALSE;
  }
  PetscCall(CsH5Close(&dcpl, what));
  if (!*ok) PetscFunctionReturn(0);
  H5Call(p->ftype = H5Dget_type(d), "%s: cannot get the type", what);
  H5Call(cls = H5Tget_class(p->ftype), "%s: cannot get the type class", what);
  H5Call(eq = H5Tequal(p->ftype, memtype), "%s: cannot compare types", what);
  p->fsize  = H5Tget_size(p->ftype);
  p->msize  = H5Tget_size(memtype);
  p->wide   = PetscMax(p->fsize, p->msize);
  p->same   = eq ? PETSC_TRUE : PETSC_FALSE;
  p->cbytes = (size_t)p->chunk * p->fsize;
  *ok = (cls == H5T_INTEGER || cls == H5T_FLOAT) && p->fsize >= 1 && p->fsize <= 8 && p->msize >= 1 && p->msize <= 8 &&
        p->chunk >= 1 && p->chunk <= SCRATCH_BYTES / p->wide;
  if (!*ok) PetscCall(CsH5Close(&p->ftype, what));
  PetscFunctionReturn(0);
}

/* The compressed size of chunk c, and whether the direct path can take it (not when it is not allocated, or larger
   than deflate makes any chunk: HDF5 will say what is wrong). */
static void SizeChunk(hid_t d, const Plan *p, Chunk *c)
{
  hsize_t size = 0, first = c->first;

  c->ok   = H5Dget_chunk_storage_size(d, &first, &size) >= 0 && size > 0 && (p->raw ? size == p->cbytes : size <= 2 * (hsize_t)p->cbytes + 65536)
              ? PETSC_TRUE : PETSC_FALSE;
  c->size = c->ok ? size : 0;
}

/* Fetch the compressed bytes of the sized chunks of a batch into stage, one after the other (H5Dread_chunk: the
   chunk as stored, no filter); a raw plan's chunks go straight to dst. A chunk stored with its filter skipped (a
   mask bit set) is left to HDF5. */
static void FetchBatch(hid_t d, const Plan *p, Chunk *c, PetscInt n, char *stage)
{
  size_t at = 0;

  for (PetscInt k = 0; k < n; k++) {
    hsize_t  first = c[k].first;
    uint32_t mask  = 0;
    if (!c[k].ok) continue;
    c[k].src = p->raw ? c[k].dst : stage + at;
    c[k].ok  = H5Dread_chunk(d, H5P_DEFAULT, &first, &mask, c[k].src) >= 0 && !mask;
    if (!p->raw) at += (size_t)c[k].size;
  }
}

/* One thread's decompressor: libdeflate's, or ISA-L's state. */
typedef struct {
  struct libdeflate_decompressor *ld;
#if defined(CS_HAVE_ISAL)
  struct inflate_state *isal;
#endif
} Inflater;

typedef struct {
  const Plan *p;
  Chunk      *c;
  Inflater   *dec; /* one per thread */
  CsIOInflate how;
} InflateCtx;

#if defined(CS_HAVE_ISAL)
/* A zlib stream (RFC 1950) inflated by ISA-L to exactly n bytes, or false. The two-byte header is checked as zlib
   checks it (method 8, window at most 32 KiB, no preset dictionary, the header a multiple of 31), so that ISA-L
   accepts what HDF5's filter accepts; the adler32 after the data is verified (ISAL_ZLIB_NO_HDR_VER); the stream must
   end exactly at n bytes of output. */
static PetscBool InflateISAL(struct inflate_state *st, const unsigned char *src, size_t size, char *dst, size_t n)
{
  if (size < 6 || (src[0] & 0x0f) != 8 || (src[0] >> 4) > 7 || (src[1] & 0x20) || ((unsigned)src[0] << 8 | src[1]) % 31) return PETSC_FALSE;
  isal_inflate_init(st);
  st->next_in   = (uint8_t *)src + 2;
  st->avail_in  = (uint32_t)(size - 2);
  st->next_out  = (uint8_t *)dst;
  st->avail_out = (uint32_t)n;
  st->crc_flag  = ISAL_ZLIB_NO_HDR_VER;
  st->hist_bits = 15;
  return isal_inflate(st) == ISAL_DECOMP_OK && st->block_state == ISAL_BLOCK_FINISH && st->total_out == n ? PETSC_TRUE : PETSC_FALSE;
}
#endif

static void InflateOne(void *ctx, int64_t i, int tid)
{
  InflateCtx *x = (InflateCtx *)ctx;
  Chunk      *c = &x->c[i];
  Inflater   *d = &x->dec[tid];

  if (!c->ok || x->p->raw) return;
#if defined(CS_HAVE_ISAL)
  if (x->how == CS_INFLATE_ISAL) {
    c->ok = InflateISAL(d->isal, (const unsigned char *)c->src, (size_t)c->size, c->dst, x->p->cbytes);
    return;
  }
#endif
  c->ok = libdeflate_zlib_decompress(d->ld, c->src, (size_t)c->size, c->dst, x->p->cbytes, NULL) == LIBDEFLATE_SUCCESS ? PETSC_TRUE
                                                                                                                      : PETSC_FALSE;
}

/* Chunks inflated into scratch are converted and copied into place; those the direct path could not take are read
   through HDF5. */
static PetscErrorCode FinishBatch(CsIOFile *f, hid_t d, const char what[], hid_t memtype, const Plan *p, Chunk *c, PetscInt n,
                                  hsize_t start, hsize_t count, char *buf)
{
  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < n; k++) {
    hsize_t lo = PetscMax(c[k].first, start), hi = PetscMin(c[k].first + p->chunk, start + count);
    char   *to = buf + (lo - start) * p->msize;
    if (!c[k].ok) PetscCall(ReadHDF5(f, d, what, memtype, p->msize, lo, hi - lo, to));
    else if (c[k].scratch) {
      char *s = c[k].dst + (lo - c[k].first) * p->fsize;
      if (!p->same) H5Call(H5Tconvert(p->ftype, memtype, (size_t)(hi - lo), s, NULL, f->dxpl), "%s: cannot convert elements %llu..%llu",
                           what, (unsigned long long)lo, (unsigned long long)hi);
      memcpy(to, s, (size_t)(hi - lo) * p->msize);
    }
  }
  PetscFunctionReturn(0);
}

/* Grow a malloc'd buffer to at least n bytes. */
static PetscErrorCode Reserve(char **b, size_t *cap, size_t n)
{
  PetscFunctionBeginUser;
  if (n <= *cap) PetscFunctionReturn(0);
  PetscCall(PetscFree(*b));
  PetscCall(PetscMalloc(n, b));
  *cap = n;
  PetscFunctionReturn(0);
}

/* The working memory of a direct read: the chunks of a batch, their compressed bytes (stage), the inflated bytes of
   those that need conversion or cutting (scratch), one decompressor per thread of the pool. */
typedef struct {
  Chunk    *c;
  PetscInt  maxn;
  char     *stage, *scratch;
  size_t    scap, xcap;
  Inflater *dec;
  int       nthreads;
} Work;

static PetscErrorCode WorkFree(Work *w)
{
  PetscFunctionBeginUser;
  for (int t = 0; w->dec && t < w->nthreads; t++) {
    if (w->dec[t].ld) libdeflate_free_decompressor(w->dec[t].ld);
#if defined(CS_HAVE_ISAL)
    PetscCall(PetscFree(w->dec[t].isal));
#endif
  }
  PetscCall(PetscFree(w->dec));
  PetscCall(PetscFree(w->stage));
  PetscCall(PetscFree(w->scratch));
  PetscCall(PetscFree(w->c));
  PetscFunctionReturn(0);
}

/* A decompressor for every thread of the pool (false if one cannot be had). */
static PetscErrorCode WorkDecoders(CsIOInflate how, Work *w, PetscBool *ok)
{
  PetscFunctionBeginUser;
  w->nthreads = CsPoolThreads();
  PetscCall(PetscCalloc1(w->nthreads, &w->dec));
  *ok = PETSC_TRUE;
  for (int t = 0; t < w->nthreads && *ok; t++) {
#if defined(CS_HAVE_ISAL)
    if (how == CS_INFLATE_ISAL) {
      PetscCall(PetscMalloc1(1, &w->dec[t].isal));
      continue;
    }
#endif
    *ok = (w->dec[t].ld = libdeflate_alloc_decompressor()) ? PETSC_TRUE : PETSC_FALSE;
  }
  PetscFunctionReturn(0);
}

/* The next batch from chunk *ci on: chunks sized, about BATCH_BYTES compressed and at most SCRATCH_BYTES of scratch;
   the buffers grown to hold it. */
static PetscErrorCode FormBatch(hid_t d, const Plan *p, hsize_t start, hsize_t count, hsize_t *ci, hsize_t c1, Work *w, PetscInt *n)
{
  PetscInt nscratch = 0;
  size_t   fetched = 0;

  PetscFunctionBeginUser;
  *n = 0;
  while (*ci < c1 && *n < w->maxn && fetched < BATCH_BYTES && (size_t)(nscratch + 1) * p->chunk * p->wide <= SCRATCH_BYTES) {
    Chunk  *k  = &w->c[(*n)++];
    hsize_t lo = PetscMax(*ci * p->chunk, start), hi = PetscMin((*ci + 1) * p->chunk, start + count);
    k->first   = *ci * p->chunk;
    k->scratch = !p->same || lo != k->first || hi != k->first + p->chunk;
    if (k->scratch) nscratch++;
    SizeChunk(d, p, k);
    if (!p->raw) fetched += (size_t)k->size;
    else fetched += p->cbytes; /* only to bound the batch: nothing is staged */
    (*ci)++;
  }
  PetscCall(Reserve(&w->stage, &w->scap, p->raw ? 1 : fetched + 1));
  PetscCall(Reserve(&w->scratch, &w->xcap, (size_t)nscratch * p->chunk * p->wide + 1));
  PetscFunctionReturn(0);
}

static PetscErrorCode ReadBatches(CsIOFile *f, hid_t d, const char what[], hid_t memtype, const Plan *p, hsize_t start, hsize_t count,
                                  char *buf, Work *w)
{
  hsize_t    ci = start / p->chunk, c1 = (start + count - 1) / p->chunk + 1;
  InflateCtx x  = {p, w->c, w->dec, f->inflate};

  PetscFunctionBeginUser;
  while (ci < c1) {
    PetscInt n;
    PetscCall(PetscLogEventBegin(CS_EVENT_CHUNK_FETCH, 0, 0, 0, 0));
    PetscCall(FormBatch(d, p, start, count, &ci, c1, w, &n));
    for (PetscInt k = 0, s = 0; k < n; k++)
      w->c[k].dst = w->c[k].scratch ? w->scratch + (size_t)(s++) * p->chunk * p->wide : buf + (w->c[k].first - start) * p->msize;
    FetchBatch(d, p, w->c, n, w->stage);
    PetscCall(PetscLogEventEnd(CS_EVENT_CHUNK_FETCH, 0, 0, 0, 0));
    if (!p->raw) {
      PetscCall(PetscLogEventBegin(CS_EVENT_CHUNK_INFLATE, 0, 0, 0, 0));
      CsPoolFor(n, CsBLASGetThreads(), InflateOne, &x); /* -blas_threads now, at most the pool */
      PetscCall(PetscLogEventEnd(CS_EVENT_CHUNK_INFLATE, 0, 0, 0, 0));
    }
    PetscCall(FinishBatch(f, d, what, memtype, p, w->c, n, start, count, buf));
  }
  PetscFunctionReturn(0);
}

/* The working memory is freed on every path (an error is an input error the program may survive, as in inspect). */
static PetscErrorCode ReadDirect(CsIOFile *f, hid_t d, const char what[], hid_t memtype, const Plan *p, hsize_t start, hsize_t count,
                                 char *buf)
{
  Work           w;
  PetscErrorCode ierr = 0;
  PetscBool      dec = PETSC_FALSE;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(&w, sizeof(w)));
  w.maxn = (PetscInt)PetscMin((start + count - 1) / p->chunk + 1 - start / p->chunk, (hsize_t)65536);
  PetscCall(PetscMalloc1(w.maxn, &w.c));
  if (p->raw) dec = PETSC_TRUE;
  else PetscCall(WorkDecoders(f->inflate, &w, &dec));
  if (dec) ierr = ReadBatches(f, d, what, memtype, p, start, count, buf, &w);
  PetscCall(WorkFree(&w));
  PetscCheck(dec, PETSC_COMM_SELF, PETSC_ERR_MEM, "%s: cannot allocate a decompressor", what);
  PetscCall(ierr);
  PetscFunctionReturn(0);
}

PetscErrorCode CsIOContiguousAt(CsIOFile *f, hid_t d, const char what[], hid_t memtype, size_t esize, CsIOSpan *at)
{
  hid_t        dcpl, ft;
  H5D_layout_t layout;
  int          next;
  htri_t       same;

  PetscFunctionBeginUser;
  at->addr = HADDR_UNDEF, at->stored = 0, at->esize = esize;
  if (!f->fd1) PetscFunctionReturn(0);
  H5Call(dcpl = H5Dget_create_plist(d), "%s: cannot get the creation properties", what);
  layout = H5Pget_layout(dcpl);
  next   = H5Pget_external_count(dcpl);
  PetscCall(CsH5Close(&dcpl, what));
  if (layout != H5D_CONTIGUOUS || next != 0) PetscFunctionReturn(0);
  H5Call(ft = H5Dget_type(d), "%s: cannot get the type", what);
  same = H5Tequal(ft, memtype);
  PetscCall(CsH5Close(&ft, what));
  if (same <= 0 || H5Tget_size(memtype) != esize) PetscFunctionReturn(0);
  at->addr   = H5Dget_offset(d); /* absolute: the userblock included */
  at->stored = H5Dget_storage_size(d);
  PetscFunctionReturn(0);
}

PetscErrorCode CsIOReadSpan(CsIOFile *f, const CsIOSpan *at, hsize_t start, hsize_t count, void *buf, PetscBool *done)
{
  size_t want = (size_t)count * at->esize, got = 0;

  PetscFunctionBeginUser;
  *done = PETSC_FALSE;
  if (at->addr == HADDR_UNDEF || at->stored < (start + count) * at->esize) PetscFunctionReturn(0);
  while (got < want) {
    ssize_t n = pread(f->fd1 - 1, (char *)buf + got, want - got, (off_t)(at->addr + start * at->esize + got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) PetscFunctionReturn(0); /* short: HDF5 reads it and names the damage */
    got += (size_t)n;
  }
  *done = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode CsIOReadContiguous(CsIOFile *f, hid_t d, const char what[], hid_t memtype, size_t esize, hsize_t start, hsize_t count,
                                  void *buf, PetscBool *done)
{
  CsIOSpan at;

  PetscFunctionBeginUser;
  PetscCall(CsIOContiguousAt(f, d, what, memtype, esize, &at));
  PetscCall(CsIOReadSpan(f, &at, start, count, buf, done));
  PetscFunctionReturn(0);
}

PetscErrorCode CsIOPrepareConversion(CsIOFile *f, hid_t d, const char what[], hid_t memtype)
{
  hid_t  ft;
  htri_t f32, dbl;

  PetscFunctionBeginUser;
  H5Call(ft = H5Dget_type(d), "%s: cannot get the type", what);
  dbl = H5Tequal(ft, H5T_NATIVE_DOUBLE);
  PetscCall(CsH5Close(&ft, what));
  H5Call(dbl, "%s: cannot compare types", what);
  H5Call(f32 = H5Tequal(memtype, H5T_NATIVE_FLOAT), "%s: cannot compare types", what);
  f->conv.to_float32    = f32 ? PETSC_TRUE : PETSC_FALSE;
  f->conv.native_double = dbl ? PETSC_TRUE : PETSC_FALSE;
  PetscFunctionReturn(0);
}

PetscErrorCode CsIORead1D(CsIOFile *f, hid_t d, const char what[], hid_t memtype, size_t esize, hsize_t start, hsize_t count,
                          void *buf)
{
  Plan      p;
  PetscBool direct;

  PetscFunctionBeginUser;
  if (!count) PetscFunctionReturn(0);
  PetscCall(CsIOReadContiguous(f, d, what, memtype, esize, start, count, buf, &direct));
  if (direct) PetscFunctionReturn(0);
  PetscCall(CsIORegisterEvents());
  PetscCall(CsIOPrepareConversion(f, d, what, memtype));
  PetscCall(MakePlan(f, d, what, memtype, &p, &direct));
  if (direct) {
    PetscCheck(p.msize == esize, PETSC_COMM_SELF, PETSC_ERR_ARG_WRONG, "%s: memory type of %zu bytes, expected %zu", what, p.msize, esize);
    PetscErrorCode ierr = ReadDirect(f, d, what, memtype, &p, start, count, (char *)buf);
    PetscCall(CsH5Close(&p.ftype, what)); /* on every path */
    PetscCall(ierr);
  } else PetscCall(ReadHDF5(f, d, what, memtype, esize, start, count, buf));
  PetscFunctionReturn(0);
}
