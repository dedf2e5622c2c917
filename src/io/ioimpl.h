/* Private to the io module: a file open for reading and the one way the reader moves elements of a 1-D dataset. */
#ifndef CELLSHIFT_IOIMPL_H
#define CELLSHIFT_IOIMPL_H

#include <cellshift/h5util.h>

/* A float32 NaN that the reader's conversions store where a finite float64 value does not fit in float32, so that
   validation can tell an overflow from an infinity in the file. The sign bit is set for negative values. */
#define CS_IO_OVERFLOW_BITS 0x7fc0f10fu

/* Conversion exceptions of the current read (set before each read: the callback cannot ask HDF5 about types). */
typedef struct {
  PetscBool to_float32;     /* the memory type is float32: overflows get CS_IO_OVERFLOW_BITS */
  PetscBool native_double;  /* the file type is the native double: an infinity reaches the callback too */
} CsIOConv;

/* Who inflates the gzip chunks of a read: HDF5's filter (every read through H5Dread), or the reader itself on the
   rank's threads with libdeflate or ISA-L (built when libisal-dev is found: CS_HAVE_ISAL). */
typedef enum { CS_INFLATE_HDF5, CS_INFLATE_LIBDEFLATE, CS_INFLATE_ISAL } CsIOInflate;

/* A file open on every rank of a communicator for reading. */
typedef struct {
  const char *path;
  hid_t       file;     /* HDF5 (MPI-IO driver; POSIX on a communicator of one rank) */
  hid_t       dxpl;     /* transfer property list of every read, with the conversion callback */
  hid_t       dapl;     /* access property list of every dataset: no chunk cache (every element is read once, and a
                           cached chunk costs a copy from the cache into the caller's buffer) */
  CsIOConv    conv;
  CsIOInflate inflate;  /* CS_INFLATE_HDF5: every read through HDF5; else gzip chunks fetched and inflated here */
  int         fd1;      /* a POSIX descriptor of the file plus one (0: none; CS_INFLATE_HDF5 at open), for contiguous
                           datasets (CsIOReadContiguous) */
} CsIOFile;

/* Collective: open path for reading on every rank of comm. Input errors (missing, not HDF5, damaged or truncated)
   are agreed on and name the file. inflate = CS_INFLATE_HDF5 sends every read through HDF5's own filter pipeline. */
PETSC_INTERN PetscErrorCode CsIOFileOpen(MPI_Comm comm, const char path[], CsIOInflate inflate, CsIOFile *f);
/* Local: open path on this rank alone with HDF5's default (POSIX) driver: its reads make no MPI call, so a thread
   may do them while the main thread communicates (the streamed reader's prefetch). */
PETSC_INTERN PetscErrorCode CsIOFileOpenLocal(const char path[], CsIOInflate inflate, CsIOFile *f);
/* Not collective on error paths: close every object still open in the file, then the file. */
PETSC_INTERN PetscErrorCode CsIOFileClose(CsIOFile *f);

/* Local: elements [start, start + count) of the 1-D dataset d, converted to memtype (esize bytes each) into buf,
   exactly as H5Dread with f->dxpl would give them. `what` names the dataset in messages. */
PETSC_INTERN PetscErrorCode CsIORead1D(CsIOFile *f, hid_t d, const char what[], hid_t memtype, size_t esize, hsize_t start,
                                       hsize_t count, void *buf);

/* Local: elements [start, start + count) of d (any rank, in storage order) into buf when d is stored contiguously in
   the file, unfiltered, in memtype itself: then they are bytes at a known offset, read with pread, past HDF5's
   dataspace selection and MPI-IO (no MPI-IO request per block; at 2 ranks MPI-IO made the read slower than at 1). *done = false where that does not hold or the
   read comes up short; the caller then reads through HDF5, which gives its own message for a damaged file. */
PETSC_INTERN PetscErrorCode CsIOReadContiguous(CsIOFile *f, hid_t d, const char what[], hid_t memtype, size_t esize, hsize_t start,
                                               hsize_t count, void *buf, PetscBool *done);
/* The same in two steps, for many reads of one dataset: CsIOContiguousAt finds where d's elements are (at->addr
   HADDR_UNDEF where they cannot be read so), CsIOReadSpan reads [start, start + count) of them (*done as above). */
typedef struct {
  haddr_t addr;   /* byte offset of element 0 in the file, or HADDR_UNDEF */
  hsize_t stored; /* bytes stored */
  size_t  esize;
} CsIOSpan;
PETSC_INTERN PetscErrorCode CsIOContiguousAt(CsIOFile *f, hid_t d, const char what[], hid_t memtype, size_t esize, CsIOSpan *at);
PETSC_INTERN PetscErrorCode CsIOReadSpan(CsIOFile *f, const CsIOSpan *at, hsize_t start, hsize_t count, void *buf, PetscBool *done);

/* Local: set f->conv for reading d as memtype (CsIORead1D does it itself; other reads with f->dxpl call it first). */
PETSC_INTERN PetscErrorCode CsIOPrepareConversion(CsIOFile *f, hid_t d, const char what[], hid_t memtype);

/* Log events of the direct chunk path (-log_view). */
PETSC_INTERN PetscLogEvent CS_EVENT_CHUNK_FETCH, CS_EVENT_CHUNK_INFLATE;
PETSC_INTERN PetscErrorCode CsIORegisterEvents(void);

#endif
