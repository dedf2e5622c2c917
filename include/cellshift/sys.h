/* cellshift system layer: errors, collective checks, HDF5 error wrapping, log events, BLAS threads, files.

   Error model (every function that can fail returns PetscErrorCode and uses PetscCall):
   - Input problems (bad file, unknown label, malformed CSR, ...) are detected *collectively*: every rank passes
     its local verdict to CsCheckAll(), and if any rank failed, all ranks raise the same error (the message of the
     lowest failing rank, which for row-blocked data is the first bad row). Main then prints that one line on
     rank 0 and every rank exits 1. No rank is left waiting in a collective.
   - Anything else (a rank-local failure: out of memory, an HDF5 I/O fault) is reported by the failing rank and
     the job is aborted with MPI_Abort, so the other ranks cannot hang. */
#ifndef CELLSHIFT_SYS_H
#define CELLSHIFT_SYS_H

#include <petscsys.h>
#include <petscviewer.h>
#include <hdf5.h>
#include <stdint.h>

/* Error code of a collectively agreed input error (see CsCheckAll). */
#define CS_ERR_INPUT PETSC_ERR_USER_INPUT

/* Before a hot loop's function: compiled for AVX-512 and AVX2 as well as the baseline x86-64 the build targets, the
   best picked at load time (ifunc). Floating-point contraction stays off (ISO C mode), so every clone rounds
   exactly like the scalar code. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  #define CS_VEC __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
  #define CS_VEC
#endif

/* Longest message carried by a collective error. */
#define CS_MSG_LEN 1024

/* CsCheckAll(comm, cond, fmt, ...): collective. If `cond` is false on any rank of `comm`, every rank returns
   CS_ERR_INPUT with the formatted message of the lowest rank where it failed. Cost: one small allreduce, and one
   broadcast only on failure. */
#define CsCheckAll(comm, cond, ...) \
  do { \
    char      cs_msg_[CS_MSG_LEN] = ""; \
    PetscBool cs_ok_              = (cond) ? PETSC_TRUE : PETSC_FALSE; \
    if (!cs_ok_) PetscCall(PetscSNPrintf(cs_msg_, sizeof(cs_msg_), __VA_ARGS__)); \
    PetscCall(CsAgree(comm, cs_ok_, cs_msg_)); \
  } while (0)

/* The function behind CsCheckAll: `msg` is used only where ok is false. */
PETSC_EXTERN PetscErrorCode CsAgree(MPI_Comm comm, PetscBool ok, const char msg[]);

/* Collective: turn an error code `ierr` returned on some ranks (0 elsewhere) into a collective input error.
   Used where a rank-local step (a file read, a parse) may fail on some ranks only and the message is known to
   be about the input. `where` prefixes the message. */
PETSC_EXTERN PetscErrorCode CsAgreeCode(MPI_Comm comm, PetscErrorCode ierr, const char msg[]);

/* H5Call(expr, fmt, ...): HDF5 calls return a negative value on failure; turn that into a PETSc error that
   names the file/object through fmt. HDF5's own error stack printing is switched off in CsInitialize. */
#define H5Call(expr, ...) \
  do { \
    if ((expr) < 0) SETERRQ(PETSC_COMM_SELF, PETSC_ERR_FILE_UNEXPECTED, __VA_ARGS__); \
  } while (0)

/* Library start-up and shut-down around PetscInitialize/PetscFinalize: registers log events,
   installs the one-line error handler, switches off HDF5's automatic error printing, sets BLAS threads. */
PETSC_EXTERN PetscErrorCode CsInitialize(int *argc, char ***argv, const char help[]);
PETSC_EXTERN PetscErrorCode CsFinalize(void);

/* After a command failed with `ierr`: collective errors exit cleanly (rank 0 printed the line), other errors
   abort the job. Returns the process exit status to use. Call with the result of the command on every rank. */
PETSC_EXTERN int CsExitStatus(PetscErrorCode ierr);

/* Profiling events (-log_view). */
PETSC_EXTERN PetscLogEvent CS_EVENT_READ, CS_EVENT_WRITE, CS_EVENT_DESIGN, CS_EVENT_SPLIT, CS_EVENT_FIT,
  CS_EVENT_PREDICT, CS_EVENT_EVAL, CS_EVENT_PCA, CS_EVENT_FORWARD, CS_EVENT_BACKWARD, CS_EVENT_REDUCE,
  CS_EVENT_OPTIM, CS_EVENT_VALID, CS_EVENT_STREAM;
PETSC_EXTERN PetscClassId CS_CLASSID;

/* Collective: the system options, read in CsInitialize (again when the options are listed or checked):
   -blas_threads N (BLAS threads per rank; default = cores of the node / ranks on the node, at least 1),
   -progress auto|bar|lines and -progress_interval SECONDS (see progress.h). */
PETSC_EXTERN PetscErrorCode CsSystemSetFromOptions(MPI_Comm comm);
PETSC_EXTERN int            CsBLASGetThreads(void);
/* Not collective: the thread pool of this rank, as many threads as BLAS uses (CsBLASGetThreads at first use,
   at most 64), for kernels that gain from every core between two BLAS calls (nn's elementwise passes, io's
   inflation of chunks). CsPoolRun runs fn(ctx, t, nt) for t in [0, nt), t = 0 on the caller, and returns when all
   are done; nt = CsPoolThreads() (fixed at the first use: callers size per-thread buffers by it). CsPoolFor runs
   fn(ctx, i, t) for every i in [0, n), each i once, taken in turn by whichever of the first maxthreads threads is
   free (for items of uneven cost; t < CsPoolThreads()). CsPoolChunk: the t-th of nt contiguous chunks of
   [0, n), chunk size a multiple of align. Tasks must not call MPI, PETSc or HDF5, and must not call the pool. */
typedef void (*CsPoolTask)(void *ctx, int t, int nt);
typedef void (*CsPoolItem)(void *ctx, int64_t i, int t);
PETSC_EXTERN int  CsPoolThreads(void);
PETSC_EXTERN void CsPoolRun(CsPoolTask fn, void *ctx);
PETSC_EXTERN void CsPoolFor(int64_t n, int maxthreads, CsPoolItem fn, void *ctx);
PETSC_EXTERN void CsPoolChunk(size_t n, int t, int nt, size_t align, size_t *lo, size_t *hi);
typedef enum { CS_PROGRESS_AUTO, CS_PROGRESS_BAR, CS_PROGRESS_LINES } CsProgressStyle;
PETSC_EXTERN const char *const CsProgressStyles[];
PETSC_EXTERN CsProgressStyle   CsProgressGetStyle(void);
/* Seconds between progress lines when no live bar is drawn. */
PETSC_EXTERN double            CsProgressInterval(void);

/* Not collective: rank 0 of comm prints "cellshift: warning: <message>" on stderr (the others print nothing). For
   input that is suspicious but usable; every rank must pass the same message or call it only where rank 0 does. */
PETSC_EXTERN PetscErrorCode CsWarn(MPI_Comm comm, const char fmt[], ...) PETSC_ATTRIBUTE_FORMAT(2, 3);

/* Files. All outputs are written to a temporary name in the same folder and renamed into place when complete,
   so a killed run never leaves a half-written file under its final name. */
typedef struct {
  char final[PETSC_MAX_PATH_LEN];
  char tmp[PETSC_MAX_PATH_LEN];
} CsOutFile;
/* Collective: fill names (tmp = final + ".tmp.<pid of rank 0>"). */
PETSC_EXTERN PetscErrorCode CsOutFileBegin(MPI_Comm comm, const char path[], CsOutFile *f);
/* Collective: rank 0 renames tmp to final (after a barrier, so every rank has closed the file). */
PETSC_EXTERN PetscErrorCode CsOutFileCommit(MPI_Comm comm, CsOutFile *f);
/* Collective: remove the temporary file if it is still there (call on the error path). */
PETSC_EXTERN PetscErrorCode CsOutFileAbandon(MPI_Comm comm, CsOutFile *f);
/* Collective: write `path` atomically from rank 0, the one way cellshift writes a file that one rank produces.
   write(ctx, tmp) runs on rank 0 only (it must not communicate) and writes the temporary file tmp; every rank
   then agrees on its outcome: on success the file is renamed into place, on failure the temporary file is
   removed and every rank returns the same input error, "cannot write <path>: <what write reported>". */
typedef PetscErrorCode (*CsFileWriter)(void *ctx, const char tmp[]);
PETSC_EXTERN PetscErrorCode CsWriteFileRank0(MPI_Comm comm, const char path[], CsFileWriter write, void *ctx);
/* The same for a text file: write(ctx, fp) prints into the open stream; open, write and close errors fail it. */
typedef PetscErrorCode (*CsTextWriter)(void *ctx, FILE *fp);
PETSC_EXTERN PetscErrorCode CsWriteTextRank0(MPI_Comm comm, const char path[], CsTextWriter write, void *ctx);
/* Collective: create a folder (and parents) on rank 0; error on all ranks if it cannot be made (or a file of
   that name is in the way). */
PETSC_EXTERN PetscErrorCode CsMakeDir(MPI_Comm comm, const char path[]);
/* Collective: what `path` is, as seen by rank 0. */
typedef enum { CS_PATH_NONE, CS_PATH_FILE, CS_PATH_DIR, CS_PATH_OTHER } CsPathKind;
PETSC_EXTERN PetscErrorCode CsPathGetKind(MPI_Comm comm, const char path[], CsPathKind *kind);
/* Collective: an exclusive lock held by this process until CsLockRelease (or its exit), on the file `path`
   (created if needed; fcntl record lock, so it also works on NFS). The holder writes "pid <pid> host <host>" into
   the file. If another process holds it, every rank fails with an input error naming `what`, the holder and the
   file. *fd is the open descriptor on rank 0 (-1 elsewhere). */
PETSC_EXTERN PetscErrorCode CsLockAcquire(MPI_Comm comm, const char path[], const char what[], int *fd);
PETSC_EXTERN PetscErrorCode CsLockRelease(MPI_Comm comm, int *fd);
/* Collective: rank 0 removes the file if it exists (a missing file is not an error). */
PETSC_EXTERN PetscErrorCode CsRemoveFile(MPI_Comm comm, const char path[]);
/* Not collective: the fraction of the file's pages in this node's page cache (mincore of a read-only mapping; 0
   where that cannot be told). */
PETSC_EXTERN double CsFileCachedFraction(const char path[]);
/* Join folder and name into out (size PETSC_MAX_PATH_LEN). */
PETSC_EXTERN PetscErrorCode CsPathJoin(const char dir[], const char name[], char out[]);
/* Collective: does a regular file exist (rank 0 checks, result broadcast)? */
PETSC_EXTERN PetscErrorCode CsFileExists(MPI_Comm comm, const char path[], PetscBool *exists);

/* Numbers. */
/* x rounded to `bits` significant bits (0, Inf and NaN unchanged). Values equal in exact arithmetic but summed in an
   order that depends on the rank count differ by a few ulps; rounded to 40 bits they compare equal, so rankings that
   must not depend on the rank count (top-k DE genes, graph neighbours) break such ties by index. frexp, ldexp and
   rint are exact, so every implementation gets the same values. */
PETSC_EXTERN double CsRoundBits(double x, int bits);
#define CS_TIE_BITS 40

/* Strings. */
/* Edit distance (insertions, deletions, substitutions, transpositions of neighbours) between a and b. */
PETSC_EXTERN PetscInt CsStrDistance(const char a[], const char b[]);
PETSC_EXTERN PetscErrorCode CsStrArrayDestroy(PetscInt n, char ***arr); /* frees each string and the array */
PETSC_EXTERN PetscErrorCode CsStrTrim(char s[]);                       /* trim white space in place */
/* Append src to dst (a buffer of len bytes), truncating (PETSc 3.18's PetscStrlcat writes one byte past the
   buffer when it truncates). */
PETSC_EXTERN void CsStrCat(char dst[], size_t len, const char src[]);
/* Split `s` at any character of `delims` into trimmed non-empty parts (caller frees with CsStrArrayDestroy). */
PETSC_EXTERN PetscErrorCode CsStrSplit(const char s[], const char delims[], PetscInt *n, char ***parts);
/* Index of `s` in sorted array `arr` of length n (strcmp order), or -1. */
PETSC_EXTERN PetscInt CsStrBsearch(const char *s, char *const *arr, PetscInt n);
/* Collective: the sorted union of the strings given on every rank (duplicates removed); caller frees *out with
   CsStrArrayDestroy(*nout, out). */
PETSC_EXTERN PetscErrorCode CsStrAllUnion(MPI_Comm comm, PetscInt n, char *const *s, PetscInt *nout, char ***out);
/* Sort strings in place (strcmp order). */
PETSC_EXTERN void CsStrSort(PetscInt n, char **arr);

/* The one subsample selector of cellshift (predicted controls, evaluation subsamples): of n items in a fixed
   order, at most cap evenly spaced ones are kept, items floor(k n / cap) for k < cap (all of them when cap <= 0
   or n <= cap). It depends only on positions, never on which rank holds an item. */
PETSC_EXTERN PetscInt  CsSubsampleSize(PetscInt n, PetscInt cap);
/* The position k in the subsample of the item at position pos, or -1 when it is not kept. */
PETSC_EXTERN PetscInt  CsSubsampleIndex(PetscInt pos, PetscInt n, PetscInt cap);
/* How many kept items come before position pos (the subsample row of the first kept item at or after pos). */
PETSC_EXTERN PetscInt  CsSubsampleBelow(PetscInt pos, PetscInt n, PetscInt cap);

/* The instruction sets of the explicitly vectorised kernels (written with intrinsics; every level gives the scalar
   code's bits: no FMA, the same order of operations per element): what the CPU has, at most the cap of
   CsSIMDCap (tests/unit/test_simd runs every level). The CS_VEC clones are chosen by the loader, not capped. */
typedef enum {
  CS_SIMD_SCALAR,
  CS_SIMD_AVX2,  /* AVX2 and FMA (x86-64-v3: AMD Zen 1-3, Intel since Haswell); only the OT kernels use FMA */
  CS_SIMD_AVX512 /* AVX-512F */
} CsSIMDLevel;
PETSC_EXTERN CsSIMDLevel CsSIMD(void);
PETSC_EXTERN void        CsSIMDCap(CsSIMDLevel max);
/* CsSIMD() >= CS_SIMD_AVX512, CS_SIMD_AVX2. */
PETSC_EXTERN int CsHaveAVX512(void);
PETSC_EXTERN int CsHaveAVX2(void);

/* Monotonic wall clock in seconds. */
PETSC_EXTERN double CsTime(void);

/* Not collective: hand the free pages of the heap back to the system (glibc's malloc_trim; nothing elsewhere).
   Large temporaries freed below longer-lived allocations stay resident otherwise: the set-up's sort of the cells'
   labels (48 bytes a cell) then counted in a streamed run's peak memory. Called where set-up ends. */
PETSC_EXTERN void CsReleaseFreeMemory(void);

/* Not collective: map the pages of fresh memory [p, p + bytes) that is about to be written, in one system call
   (Linux 5.14's MADV_POPULATE_WRITE) instead of one page fault per 4 KiB page as the writes reach them; a fault
   costs more than the kernel's zeroing of the page on a virtual machine. Nothing for less than 1 MiB, and
   nothing where the kernel cannot (the writes then fault as before). */
PETSC_EXTERN void CsMemPopulate(void *p, size_t bytes);

#endif
