/* Opening an .h5ad for reading on every rank. See ioimpl.h. */
#include "ioimpl.h"
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

/* Values that overflow float32 become a marked NaN instead of an infinity (see CS_IO_OVERFLOW_BITS); everything else
   converts as HDF5 converts it by default. */
static H5T_conv_ret_t ConvException(H5T_conv_except_t e, hid_t src, hid_t dst, void *sbuf, void *dbuf, void *ctx)
{
  const CsIOConv *c = (const CsIOConv *)ctx;
  uint32_t        bits;

  (void)src, (void)dst;
  if (!c->to_float32 || (e != H5T_CONV_EXCEPT_RANGE_HI && e != H5T_CONV_EXCEPT_RANGE_LOW)) return H5T_CONV_UNHANDLED;
  if (c->native_double) {
    double x;
    memcpy(&x, sbuf, sizeof(x));
    if (!isfinite(x)) return H5T_CONV_UNHANDLED; /* the hard conversion reports infinities as range errors */
  }
  bits = CS_IO_OVERFLOW_BITS | (e == H5T_CONV_EXCEPT_RANGE_LOW ? 0x80000000u : 0u);
  memcpy(dbuf, &bits, sizeof(bits));
  return H5T_CONV_HANDLED;
}

/* Little-endian unsigned integer of n bytes. */
static uint64_t LE(const unsigned char *p, int n)
{
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

/* After HDF5 refused a file that has the HDF5 signature: compare its size with the end-of-file address its
   superblock records (format versions 0-3), to tell a truncated file from a damaged one. */
static void Diagnose(const char path[], char msg[], size_t len)
{
  static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  unsigned char              sb[96];
  struct stat                st = {0};
  int                        fd = open(path, O_RDONLY | O_CLOEXEC);
  int64_t                    need = -1;

  if (fd >= 0 && !fstat(fd, &st)) {
    for (int64_t at = 0; at + 8 <= (int64_t)st.st_size && need < 0; at = at ? 2 * at : 512) {
      ssize_t got = pread(fd, sb, sizeof(sb), (off_t)at);
      int     O, pos;
      if (got < 16 || memcmp(sb, sig, 8)) continue;
      if (sb[8] <= 1) O = sb[13], pos = (sb[8] == 0 ? 24 : 28) + 2 * O; /* base, free-space, end-of-file addresses */
      else if (sb[8] <= 3) O = sb[9], pos = 12 + 2 * O;                 /* base, extension, end-of-file addresses */
      else break;
      if ((O != 2 && O != 4 && O != 8) || pos + O > (int)got) break;
      {
        uint64_t base = LE(sb + pos - 2 * O, O), eof = LE(sb + pos, O); /* the end of file is relative to the base */
        need          = base < ((uint64_t)1 << 62) && eof < ((uint64_t)1 << 62) ? (int64_t)(base + eof) : INT64_MAX;
      }
    }
  }
  if (fd >= 0) close(fd);
  if (need == INT64_MAX) /* an address beyond 2^62: the superblock itself is damaged, not the file short */
    snprintf(msg, len, "%s is damaged: its HDF5 superblock gives an impossible end of file", path);
  else if (need > 0 && need > (int64_t)st.st_size)
    snprintf(msg, len, "%s is truncated: it has %lld bytes but its HDF5 superblock says %lld", path, (long long)st.st_size,
             (long long)need);
  else snprintf(msg, len, "%s is damaged: it starts like an HDF5 file but HDF5 cannot open it", path);
}

/* Rank 0: can the file be read, and is it HDF5? */
static void Probe(const char path[], char msg[], size_t len)
{
  struct stat st;

  msg[0] = 0;
  if (stat(path, &st) || !S_ISREG(st.st_mode)) snprintf(msg, len, "cannot open %s: no such file", path);
  else if (access(path, R_OK)) snprintf(msg, len, "cannot open %s: %s", path, strerror(errno));
  else if (H5Fis_hdf5(path) <= 0) snprintf(msg, len, "%s is not an HDF5 (.h5ad) file", path);
}

/* The transfer and access properties every read uses. */
static PetscErrorCode SetProperties(CsIOFile *f, CsIOInflate inflate)
{
  const char *path = f->path;

  PetscFunctionBeginUser;
  H5Call(f->dxpl = H5Pcreate(H5P_DATASET_XFER), "%s: cannot make transfer properties", path);
  H5Call(H5Pset_type_conv_cb(f->dxpl, ConvException, &f->conv), "%s: cannot set the conversion callback", path);
  H5Call(f->dapl = H5Pcreate(H5P_DATASET_ACCESS), "%s: cannot make dataset access properties", path);
  H5Call(H5Pset_chunk_cache(f->dapl, 0, 0, H5D_CHUNK_CACHE_W0_DEFAULT), "%s: cannot set the chunk cache", path);
  f->inflate = inflate;
  if (inflate != CS_INFLATE_HDF5) { /* direct reads allowed: contiguous datasets by pread too */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    f->fd1 = fd >= 0 ? fd + 1 : 0; /* none: every read goes through HDF5 */
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsIOFileOpen(MPI_Comm comm, const char path[], CsIOInflate inflate, CsIOFile *f)
{
  PetscMPIInt rank, size;
  char        msg[CS_MSG_LEN];
  hid_t       fapl;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(f, sizeof(*f)));
  f->path = path;
  f->file = f->dxpl = f->dapl = H5I_INVALID_HID;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  if (!rank) Probe(path, msg, sizeof(msg));
  PetscCallMPI(MPI_Bcast(msg, sizeof(msg), MPI_CHAR, 0, comm));
  PetscCheck(!msg[0], comm, CS_ERR_INPUT, "%s", msg);

  H5Call(fapl = H5Pcreate(H5P_FILE_ACCESS), "%s: cannot make file access properties", path);
  /* One rank needs no MPI-IO: ROMIO allocates (and frees) its 16 MiB collective buffer at every open. */
  PetscCallMPI(MPI_Comm_size(comm, &size));
  if (size > 1) H5Call(H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL), "cannot set MPI-IO access for %s", path);
  else H5Call(H5Pset_fapl_sec2(fapl), "cannot set POSIX access for %s", path);
  H5Call(H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG), "%s: cannot set the close degree", path); /* error paths leave objects open */
  f->file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
  PetscCall(CsH5Close(&fapl, path));
  if (f->file < 0) Diagnose(path, msg, sizeof(msg));
  CsCheckAll(comm, f->file >= 0, "%s", msg);

  PetscCall(SetProperties(f, inflate));
  PetscFunctionReturn(0);
}

PetscErrorCode CsIOFileOpenLocal(const char path[], CsIOInflate inflate, CsIOFile *f)
{
  char  msg[CS_MSG_LEN];
  hid_t fapl;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(f, sizeof(*f)));
  f->path = path;
  f->file = f->dxpl = f->dapl = H5I_INVALID_HID;
  H5Call(fapl = H5Pcreate(H5P_FILE_ACCESS), "%s: cannot make file access properties", path);
  H5Call(H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG), "%s: cannot set the close degree", path);
  f->file = H5Fopen(path, H5F_ACC_RDONLY, fapl); /* the default (sec2, POSIX) driver */
  PetscCall(CsH5Close(&fapl, path));
  if (f->file < 0) {
    Diagnose(path, msg, sizeof(msg));
    SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s", msg);
  }
  PetscCall(SetProperties(f, inflate));
  PetscFunctionReturn(0);
}

PetscErrorCode CsIOFileClose(CsIOFile *f)
{
  PetscFunctionBeginUser;
  PetscCall(CsH5Close(&f->dxpl, f->path));
  PetscCall(CsH5Close(&f->dapl, f->path));
  PetscCall(CsH5Close(&f->file, f->path)); /* H5F_CLOSE_STRONG: also what an error path left open */
  if (f->fd1) (void)close(f->fd1 - 1);
  f->fd1 = 0;
  PetscFunctionReturn(0);
}
