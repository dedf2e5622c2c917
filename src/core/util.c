/* Files written atomically, folders, and small string helpers. See include/cellshift/sys.h. */
#include <cellshift/sys.h>
#include <ctype.h>
#include <math.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <unistd.h>

PetscErrorCode CsPathJoin(const char dir[], const char name[], char out[])
{
  PetscFunctionBeginUser;
  if (!dir || !dir[0]) PetscCall(PetscSNPrintf(out, PETSC_MAX_PATH_LEN, "%s", name));
  else PetscCall(PetscSNPrintf(out, PETSC_MAX_PATH_LEN, "%s/%s", dir, name));
  PetscFunctionReturn(0);
}

PetscErrorCode CsOutFileBegin(MPI_Comm comm, const char path[], CsOutFile *f)
{
  long pid = (long)getpid();

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Bcast(&pid, 1, MPI_LONG, 0, comm));
  PetscCall(PetscStrncpy(f->final, path, sizeof(f->final)));
  PetscCall(PetscSNPrintf(f->tmp, sizeof(f->tmp), "%s.tmp.%ld", path, pid));
  PetscFunctionReturn(0);
}

PetscErrorCode CsOutFileCommit(MPI_Comm comm, CsOutFile *f)
{
  PetscMPIInt rank;
  int         err = 0;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Barrier(comm));
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  if (!rank && rename(f->tmp, f->final)) err = errno;
  PetscCallMPI(MPI_Bcast(&err, 1, MPI_INT, 0, comm));
  PetscCheck(!err, comm, PETSC_ERR_FILE_WRITE, "cannot rename %s to %s: %s", f->tmp, f->final, strerror(err));
  PetscFunctionReturn(0);
}

PetscErrorCode CsOutFileAbandon(MPI_Comm comm, CsOutFile *f)
{
  PetscMPIInt rank;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  if (!rank && f->tmp[0]) (void)unlink(f->tmp);
  PetscFunctionReturn(0);
}

PetscErrorCode CsWriteFileRank0(MPI_Comm comm, const char path[], CsFileWriter write, void *ctx)
{
  CsOutFile      f;
  PetscMPIInt    rank;
  PetscErrorCode ierr = 0;
  char           msg[CS_MSG_LEN];

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCall(CsOutFileBegin(comm, path, &f));
  if (!rank) ierr = write(ctx, f.tmp);
  if (ierr) PetscCall(CsOutFileAbandon(comm, &f));
  PetscCall(PetscSNPrintf(msg, sizeof(msg), "cannot write %s", path));
  PetscCall(CsAgreeCode(comm, ierr, msg));
  PetscCall(CsOutFileCommit(comm, &f));
  PetscFunctionReturn(0);
}

typedef struct {
  CsTextWriter write;
  void        *ctx;
} TextCtx;

static PetscErrorCode WriteText(void *ctx, const char tmp[])
{
  TextCtx       *t  = (TextCtx *)ctx;
  FILE          *fp = fopen(tmp, "w");
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  PetscCheck(fp, PETSC_COMM_SELF, PETSC_ERR_FILE_OPEN, "%s", strerror(errno));
  ierr = t->write(t->ctx, fp);
  if (!ierr && ferror(fp)) ierr = PETSC_ERR_FILE_WRITE;
  if (fclose(fp) && !ierr) ierr = PETSC_ERR_FILE_WRITE;
  PetscCall(ierr);
  PetscFunctionReturn(0);
}

PetscErrorCode CsWriteTextRank0(MPI_Comm comm, const char path[], CsTextWriter write, void *ctx)
{
  TextCtx t = {write, ctx};

  PetscFunctionBeginUser;
  PetscCall(CsWriteFileRank0(comm, path, WriteText, &t));
  PetscFunctionReturn(0);
}

PetscErrorCode CsMakeDir(MPI_Comm comm, const char path[])
{
  PetscMPIInt rank;
  int         err = 0;
  char        buf[PETSC_MAX_PATH_LEN];

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  if (!rank) {
    PetscCall(PetscStrncpy(buf, path, sizeof(buf)));
    for (char *p = buf + 1; *p && !err; p++) {
      if (*p != '/') continue;
      *p = 0;
      if (mkdir(buf, 0777) && errno != EEXIST) err = errno;
      *p = '/';
    }
    if (!err && mkdir(buf, 0777) && errno != EEXIST) err = errno;
    if (!err) {
      struct stat st;
      if (stat(buf, &st)) err = errno;
      else if (!S_ISDIR(st.st_mode)) err = ENOTDIR;
    }
  }
  PetscCallMPI(MPI_Bcast(&err, 1, MPI_INT, 0, comm));
  PetscCheck(err != ENOTDIR, comm, CS_ERR_INPUT, "cannot create folder %s: a file of that name is in the way", path);
  PetscCheck(!err, comm, CS_ERR_INPUT, "cannot create folder %s: %s", path, strerror(err));
  PetscFunctionReturn(0);
}

double CsFileCachedFraction(const char path[])
{
  long          page = sysconf(_SC_PAGESIZE);
  int           fd   = open(path, O_RDONLY);
  struct stat   st;
  void         *map;
  unsigned char *vec;
  size_t        n, in = 0;

  if (fd < 0) return 0;
  if (fstat(fd, &st) || st.st_size <= 0 || page <= 0) return close(fd), 0;
  map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (map == MAP_FAILED) return 0;
  n   = ((size_t)st.st_size + (size_t)page - 1) / (size_t)page;
  vec = (unsigned char *)malloc(n);
  if (vec && !mincore(map, (size_t)st.st_size, vec))
    for (size_t k = 0; k < n; k++) in += vec[k] & 1;
  free(vec);
  munmap(map, (size_t)st.st_size);
  return (double)in / (double)n;
}

PetscErrorCode CsPathGetKind(MPI_Comm comm, const char path[], CsPathKind *kind)
{
  PetscMPIInt rank;
  int         k = CS_PATH_NONE;
  struct stat st;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  if (!rank && path[0] && !stat(path, &st)) k = S_ISREG(st.st_mode) ? CS_PATH_FILE : S_ISDIR(st.st_mode) ? CS_PATH_DIR : CS_PATH_OTHER;
  PetscCallMPI(MPI_Bcast(&k, 1, MPI_INT, 0, comm));
  *kind = (CsPathKind)k;
  PetscFunctionReturn(0);
}

/* Rank 0: lock the file or say who holds it (errno-style code in *err, the holder's line in who). */
static int LockLocal(const char path[], char who[], size_t len, int *err)
{
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
  char         host[256] = "?", line[320];
  int          fd        = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  ssize_t      n;

  *err = 0;
  if (fd < 0) {
    *err = errno;
    return -1;
  }
  if (fcntl(fd, F_SETLK, &fl)) {
    *err = errno == EACCES ? EAGAIN : errno;
    n    = pread(fd, who, len - 1, 0);
    who[n > 0 ? n : 0] = 0;
    who[strcspn(who, "\n")] = 0;
    close(fd);
    return -1;
  }
  gethostname(host, sizeof(host) - 1);
  snprintf(line, sizeof(line), "pid %ld host %s\n", (long)getpid(), host);
  if (ftruncate(fd, 0) || pwrite(fd, line, strlen(line), 0) < 0) *err = errno;
  return fd;
}

PetscErrorCode CsLockAcquire(MPI_Comm comm, const char path[], const char what[], int *fd)
{
  PetscMPIInt rank;
  int         err = 0;
  char        who[256] = "";

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  *fd = -1;
  if (!rank) *fd = LockLocal(path, who, sizeof(who), &err);
  PetscCallMPI(MPI_Bcast(&err, 1, MPI_INT, 0, comm));
  PetscCallMPI(MPI_Bcast(who, (PetscMPIInt)sizeof(who), MPI_CHAR, 0, comm));
  CsCheckAll(comm, err != EAGAIN, "%s is in use by another cellshift run (%s; lock file %s): wait for it to finish or choose another folder", what,
             who[0] ? who : "holder unknown", path);
  CsCheckAll(comm, !err, "cannot lock %s (%s): %s", what, path, strerror(err));
  PetscFunctionReturn(0);
}

PetscErrorCode CsLockRelease(MPI_Comm comm, int *fd)
{
  PetscFunctionBeginUser;
  if (*fd >= 0) close(*fd);
  *fd = -1;
  PetscFunctionReturn(0);
}

PetscErrorCode CsRemoveFile(MPI_Comm comm, const char path[])
{
  PetscMPIInt rank;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  if (!rank) (void)unlink(path);
  PetscFunctionReturn(0);
}

PetscErrorCode CsFileExists(MPI_Comm comm, const char path[], PetscBool *exists)
{
  PetscMPIInt rank;
  int         e = 0;
  struct stat st;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  if (!rank) e = (stat(path, &st) == 0 && S_ISREG(st.st_mode));
  PetscCallMPI(MPI_Bcast(&e, 1, MPI_INT, 0, comm));
  *exists = e ? PETSC_TRUE : PETSC_FALSE;
  PetscFunctionReturn(0);
}

PetscErrorCode CsStrArrayDestroy(PetscInt n, char ***arr)
{
  PetscFunctionBeginUser;
  if (!*arr) PetscFunctionReturn(0);
  for (PetscInt i = 0; i < n; i++) PetscCall(PetscFree((*arr)[i]));
  PetscCall(PetscFree(*arr));
  PetscFunctionReturn(0);
}

void CsStrCat(char dst[], size_t len, const char src[])
{
  size_t n = strnlen(dst, len);
  if (n + 1 < len) snprintf(dst + n, len - n, "%s", src);
}

PetscErrorCode CsStrTrim(char s[])
{
  size_t n, a = 0;

  PetscFunctionBeginUser;
  n = strlen(s);
  while (n > 0 && isspace((unsigned char)s[n - 1])) s[--n] = 0;
  while (a < n && isspace((unsigned char)s[a])) a++;
  if (a) memmove(s, s + a, n - a + 1);
  PetscFunctionReturn(0);
}

PetscErrorCode CsStrSplit(const char s[], const char delims[], PetscInt *n, char ***parts)
{
  size_t len = strlen(s), cap = 1;
  char  *buf;

  PetscFunctionBeginUser;
  for (size_t i = 0; i < len; i++)
    if (strchr(delims, s[i])) cap++;
  PetscCall(PetscCalloc1(cap, parts));
  *n = 0;
  PetscCall(PetscMalloc1(len + 1, &buf));
  for (size_t start = 0, i = 0; i <= len; i++) {
    if (i < len && !strchr(delims, s[i])) continue;
    memcpy(buf, s + start, i - start);
    buf[i - start] = 0;
    PetscCall(CsStrTrim(buf));
    if (buf[0]) PetscCall(PetscStrallocpy(buf, &(*parts)[(*n)++]));
    start = i + 1;
  }
  PetscCall(PetscFree(buf));
  PetscFunctionReturn(0);
}

PetscInt CsStrBsearch(const char *s, char *const *arr, PetscInt n)
{
  PetscInt lo = 0, hi = n - 1;
  while (lo <= hi) {
    PetscInt mid = lo + (hi - lo) / 2;
    int      c   = strcmp(arr[mid], s);
    if (!c) return mid;
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

double CsRoundBits(double x, int bits)
{
  int e;
  if (x == 0 || !isfinite(x)) return x;
  (void)frexp(x, &e);
  return ldexp(rint(ldexp(x, bits - e)), e - bits);
}

PetscInt CsStrDistance(const char a[], const char b[])
{
  size_t    n = strlen(a), m = strlen(b);
  PetscInt *d = (PetscInt *)malloc(sizeof(PetscInt) * (n + 1) * (m + 1)), r;

  if (!d) return PETSC_MAX_INT;
#define D(i, j) d[(i) * (m + 1) + (j)]
  for (size_t i = 0; i <= n; i++) D(i, 0) = (PetscInt)i;
  for (size_t j = 0; j <= m; j++) D(0, j) = (PetscInt)j;
  for (size_t i = 1; i <= n; i++)
    for (size_t j = 1; j <= m; j++) {
      PetscInt c = D(i - 1, j - 1) + (a[i - 1] != b[j - 1]);
      c          = PetscMin(c, D(i - 1, j) + 1);
      c          = PetscMin(c, D(i, j - 1) + 1);
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) c = PetscMin(c, D(i - 2, j - 2) + 1);
      D(i, j) = c;
    }
  r = D(n, m);
#undef D
  free(d);
  return r;
}

static int cmpstr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
void       CsStrSort(PetscInt n, char **arr) { qsort(arr, (size_t)n, sizeof(char *), cmpstr); }

PetscErrorCode CsStrAllUnion(MPI_Comm comm, PetscInt n, char *const *s, PetscInt *nout, char ***out)
{
  PetscMPIInt size;
  char      **ptr, *buf, *all;
  int         len = 0, total = 0, *lens, *displs;
  PetscInt    ntot = 0;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_size(comm, &size));
  for (PetscInt i = 0; i < n; i++) len += (int)strlen(s[i]) + 1;
  PetscCall(PetscMalloc1(len + 1, &buf));
  for (PetscInt i = 0, at = 0; i < n; i++) {
    size_t l = strlen(s[i]) + 1;
    memcpy(buf + at, s[i], l);
    at += (int)l;
  }
  PetscCall(PetscMalloc2(size, &lens, size, &displs));
  PetscCallMPI(MPI_Allgather(&len, 1, MPI_INT, lens, 1, MPI_INT, comm));
  for (PetscMPIInt p = 0; p < size; p++) displs[p] = total, total += lens[p];
  PetscCall(PetscMalloc1(total + 1, &all));
  PetscCallMPI(MPI_Allgatherv(buf, len, MPI_CHAR, all, lens, displs, MPI_CHAR, comm));
  for (int k = 0; k < total; k++) ntot += all[k] == 0;
  PetscCall(PetscMalloc1(ntot + 1, &ptr));
  for (int k = 0, i = 0; k < total; k += (int)strlen(all + k) + 1) ptr[i++] = all + k;
  CsStrSort(ntot, ptr);
  PetscCall(PetscMalloc1(ntot + 1, out));
  *nout = 0;
  for (PetscInt i = 0; i < ntot; i++)
    if (!*nout || strcmp((*out)[*nout - 1], ptr[i])) PetscCall(PetscStrallocpy(ptr[i], &(*out)[(*nout)++]));
  PetscCall(PetscFree(ptr));
  PetscCall(PetscFree(all));
  PetscCall(PetscFree2(lens, displs));
  PetscCall(PetscFree(buf));
  PetscFunctionReturn(0);
}

PetscInt CsSubsampleSize(PetscInt n, PetscInt cap) { return cap <= 0 || n <= cap ? n : cap; }

PetscInt CsSubsampleBelow(PetscInt pos, PetscInt n, PetscInt cap)
{
  if (cap <= 0 || n <= cap) return pos;
  return (PetscInt)(((int64_t)pos * cap + n - 1) / n); /* ceil(pos cap / n) */
}

PetscInt CsSubsampleIndex(PetscInt pos, PetscInt n, PetscInt cap)
{
  PetscInt k = CsSubsampleBelow(pos, n, cap);
  if (cap <= 0 || n <= cap) return pos;
  return k < cap && (PetscInt)((int64_t)k * n / cap) == pos ? k : -1;
}
