/* Read benchmark: the parallel .h5ad reader (CsDatasetSetUp) on -data FILE, with where its time goes.

   Phases (each timed as the slowest rank, after a barrier):
     read     CsDatasetSetUp: everything `run` does to load the cells (balance, read, validate, obs, var)
     raw      the same rank's compressed chunks of X/indices and X/data fetched as they are on disk
              (H5Dread_chunk: file I/O only, no decompression)
     decoded  the same slices read through HDF5's filter pipeline (I/O + decompression + type conversion), with
              the MPI-IO driver and independent reads of at most 2^26 elements, as the reader does
   decoded is what the reader's matrix reads cost through HDF5's own filter (the reader inflates gzip chunks itself,
   on the rank's threads: -h5ad_read_direct). Each phase is reported as its best time over -bench_repeat runs
   (shared machines are noisy).
   Rates: cells/s, and MB/s of uncompressed matrix bytes (indptr + indices + data in their file types) and of file
   bytes (the file's size). -log_view shows the same split as the events CsRead (with CsReadChunkFetch and CsReadInflate), BenchRawChunks,
   BenchDecoded. */
#include <cellshift/dataset.h>
#include <cellshift/h5util.h>
#include <sys/resource.h>
#include <sys/stat.h>

/* The last line names the inflaters of this build: bench/read_h5ad.sh times the 2-rank read with each. */
#if defined(CS_HAVE_ISAL)
  #define BENCH_INFLATERS "libdeflate isal"
#else
  #define BENCH_INFLATERS "libdeflate"
#endif
static const char help[] = "Times the parallel .h5ad reader: bench_read_h5ad -data FILE [-log_view]\n"
                           "inflaters in this build (-h5ad_inflate): " BENCH_INFLATERS "\n";

static PetscLogEvent EV_RAW, EV_DECODED;

/* Bytes of the element type of a dataset. */
static PetscErrorCode ElementSize(hid_t g, const char name[], size_t *s)
{
  hid_t d, t;

  PetscFunctionBeginUser;
  H5Call(d = H5Dopen2(g, name, H5P_DEFAULT), "cannot open %s", name);
  t  = H5Dget_type(d);
  *s = H5Tget_size(t);
  H5Tclose(t), H5Dclose(d);
  PetscFunctionReturn(0);
}

/* Elements [off, off+cnt) of a 1-D dataset: raw chunks (no filters) or decoded into float/int32; adds the bytes
   moved to *bytes. Contiguous datasets have no chunks: raw reads them as they are. */
static PetscErrorCode ReadSlice(hid_t g, const char name[], int64_t off, int64_t cnt, PetscBool raw, double *bytes)
{
  hid_t   d, p, fs, ms, mt;
  hsize_t chunk = 0;
  void   *buf;
  size_t  es = 0;

  PetscFunctionBeginUser;
  if (cnt <= 0) PetscFunctionReturn(0);
  H5Call(d = H5Dopen2(g, name, H5P_DEFAULT), "cannot open %s", name);
  p = H5Dget_create_plist(d);
  if (H5Pget_layout(p) == H5D_CHUNKED) H5Pget_chunk(p, 1, &chunk);
  H5Pclose(p);
  PetscCall(ElementSize(g, name, &es));
  if (raw && chunk) {
    size_t cap = (size_t)chunk * es + 1024;
    PetscCall(PetscMalloc(cap, &buf));
    for (hsize_t c = (hsize_t)off / chunk; c * chunk < (hsize_t)(off + cnt); c++) {
      hsize_t  o = c * chunk, sz;
      uint32_t filters;
      H5Call(H5Dget_chunk_storage_size(d, &o, &sz), "%s: no chunk at %llu", name, (unsigned long long)o);
      if (sz > cap) {
        PetscCall(PetscFree(buf));
        cap = sz;
        PetscCall(PetscMalloc(cap, &buf));
      }
      H5Call(H5Dread_chunk(d, H5P_DEFAULT, &o, &filters, buf), "%s: cannot read chunk at %llu", name, (unsigned long long)o);
      *bytes += (double)sz;
    }
    PetscCall(PetscFree(buf));
  } else {
    const hsize_t slice = (hsize_t)1 << 26; /* as the reader does */
    mt = !strcmp(name, "data") ? H5T_NATIVE_FLOAT : H5T_NATIVE_INT32;
    PetscCall(PetscMalloc((size_t)cnt * 4, &buf));
    fs = H5Dget_space(d);
    for (hsize_t a = 0; a < (hsize_t)cnt; a += slice) {
      hsize_t o = (hsize_t)off + a, n = PetscMin(slice, (hsize_t)cnt - a);
      ms = H5Screate_simple(1, &n, NULL);
      H5Call(H5Sselect_hyperslab(fs, H5S_SELECT_SET, &o, NULL, &n, NULL), "%s: bad selection", name);
      H5Call(H5Dread(d, mt, ms, fs, H5P_DEFAULT, (char *)buf + 4 * a), "%s: cannot read", name);
      H5Sclose(ms);
    }
    H5Sclose(fs);
    PetscCall(PetscFree(buf));
    *bytes += (double)cnt * (double)es;
  }
  H5Dclose(d);
  PetscFunctionReturn(0);
}

static double Slowest(MPI_Comm comm, double t)
{
  MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, comm);
  return t;
}

/* CPU seconds (user + system) of this process, all its threads. */
static double CPUTime(void)
{
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return (double)u.ru_utime.tv_sec + 1e-6 * (double)u.ru_utime.tv_usec + (double)u.ru_stime.tv_sec + 1e-6 * (double)u.ru_stime.tv_usec;
}

/* One repeat: the three phases, each the slowest rank's time (only the read without phases); *cpu = the read's CPU
   seconds summed over ranks and threads (less disturbed by other load than the wall time). */
static PetscErrorCode Once(MPI_Comm comm, PetscBool phases, double t[3], double *cpu, double *rawbytes, CsDataset *out)
{
  CsDataset ds;
  double    t0, c0, decbytes = 0;
  int64_t   nnz, off = 0;
  PetscMPIInt rank;
  hid_t     f, g;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCall(CsDatasetCreate(comm, &ds));
  PetscCall(CsDatasetSetFromOptions(ds));
  PetscCallMPI(MPI_Barrier(comm));
  t0 = CsTime(), c0 = CPUTime();
  PetscCall(CsDatasetSetUp(ds));
  t[0] = Slowest(comm, CsTime() - t0);
  *cpu = CPUTime() - c0;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, cpu, 1, MPI_DOUBLE, MPI_SUM, comm));
  if (!phases) {
    *out = ds;
    PetscFunctionReturn(0);
  }

  /* The raw and decoded phases read this rank's non-zeros straight from X (CSR files only). */
  nnz = ds->X.indptr[ds->nlocal];
  PetscCallMPI(MPI_Exscan(&nnz, &off, 1, MPI_INT64_T, MPI_SUM, comm));
  if (!rank) off = 0;
  f = H5Fopen(ds->path, H5F_ACC_RDONLY, H5P_DEFAULT);
  H5Call(f, "cannot open %s", ds->path);
  H5Call(g = H5Gopen2(f, "X", H5P_DEFAULT), "%s: X is not a sparse group (the phase split needs CSR)", ds->path);
  *rawbytes = 0;
  PetscCallMPI(MPI_Barrier(comm));
  PetscCall(PetscLogEventBegin(EV_RAW, 0, 0, 0, 0));
  t0 = CsTime();
  PetscCall(ReadSlice(g, "indices", off, nnz, PETSC_TRUE, rawbytes));
  PetscCall(ReadSlice(g, "data", off, nnz, PETSC_TRUE, rawbytes));
  t[1] = Slowest(comm, CsTime() - t0);
  PetscCall(PetscLogEventEnd(EV_RAW, 0, 0, 0, 0));
  H5Gclose(g), H5Fclose(f);
  /* decoded: through the MPI-IO driver with independent reads, as the reader does */
  {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Call(H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL), "cannot select MPI-IO");
    f = H5Fopen(ds->path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
  }
  H5Call(f, "cannot open %s with MPI-IO", ds->path);
  H5Call(g = H5Gopen2(f, "X", H5P_DEFAULT), "%s: cannot open X", ds->path);
  PetscCallMPI(MPI_Barrier(comm));
  PetscCall(PetscLogEventBegin(EV_DECODED, 0, 0, 0, 0));
  t0 = CsTime();
  PetscCall(ReadSlice(g, "indices", off, nnz, PETSC_FALSE, &decbytes));
  PetscCall(ReadSlice(g, "data", off, nnz, PETSC_FALSE, &decbytes));
  t[2] = Slowest(comm, CsTime() - t0);
  PetscCall(PetscLogEventEnd(EV_DECODED, 0, 0, 0, 0));
  H5Gclose(g), H5Fclose(f);
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, rawbytes, 1, MPI_DOUBLE, MPI_SUM, comm));
  *out = ds;
  PetscFunctionReturn(0);
}

static PetscErrorCode Bench(void)
{
  MPI_Comm    comm = PETSC_COMM_WORLD;
  PetscMPIInt size, rank;
  CsDataset   ds;
  double      best[3] = {1e300, 1e300, 1e300}, bestcpu = 1e300, rawbytes = 0, ubytes, fbytes = 0;
  int64_t     gnnz;
  size_t      esd, esi, esp;
  PetscInt    repeat = 3;
  PetscBool   phases = PETSC_TRUE;
  hid_t       f, g;
  struct stat st;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCall(PetscLogEventRegister("BenchRawChunks", CS_CLASSID, &EV_RAW));
  PetscCall(PetscLogEventRegister("BenchDecoded", CS_CLASSID, &EV_DECODED));
  PetscOptionsBegin(comm, NULL, "Read benchmark", NULL);
  PetscCall(PetscOptionsInt("-bench_repeat", "Repeats (the best time of each phase is reported)", NULL, repeat, &repeat, NULL));
  PetscCall(PetscOptionsBool("-bench_phases", "Also time the raw chunk fetch and HDF5's filter pipeline (false: the read only)", NULL, phases,
                             &phases, NULL));
  PetscOptionsEnd();
  PetscCheck(repeat >= 1, comm, CS_ERR_INPUT, "-bench_repeat must be at least 1");
  for (PetscInt r = 0; r < repeat; r++) {
    double t[3] = {0, 0, 0}, cpu = 0;
    PetscCall(Once(comm, phases, t, &cpu, &rawbytes, &ds));
    if (phases)
      PetscCall(PetscPrintf(comm, "  repeat %" PetscInt_FMT ": read %.2f s (CPU %.2f s), raw chunks %.2f s, I/O + decompression %.2f s\n",
                            r, t[0], cpu, t[1], t[2]));
    else PetscCall(PetscPrintf(comm, "  repeat %" PetscInt_FMT ": read %.2f s (CPU %.2f s)\n", r, t[0], cpu));
    for (int k = 0; k < 3; k++) best[k] = PetscMin(best[k], t[k]);
    bestcpu = PetscMin(bestcpu, cpu);
    if (r < repeat - 1) PetscCall(CsDatasetDestroy(&ds));
  }

  gnnz = ds->X.indptr[ds->nlocal];
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &gnnz, 1, MPI_INT64_T, MPI_SUM, comm));
  if (!rank && !stat(ds->path, &st)) fbytes = (double)st.st_size;
  PetscCallMPI(MPI_Bcast(&fbytes, 1, MPI_DOUBLE, 0, comm));
  f = H5Fopen(ds->path, H5F_ACC_RDONLY, H5P_DEFAULT);
  H5Call(f, "cannot open %s", ds->path);
  H5Call(g = H5Gopen2(f, "X", H5P_DEFAULT), "%s: X is not a sparse group", ds->path);
  PetscCall(ElementSize(g, "data", &esd));
  PetscCall(ElementSize(g, "indices", &esi));
  PetscCall(ElementSize(g, "indptr", &esp));
  H5Gclose(g), H5Fclose(f);
  ubytes = (double)(ds->nglobal + 1) * (double)esp + (double)gnnz * (double)(esd + esi);

  PetscCall(PetscPrintf(comm, "file %s: %" PetscInt_FMT " cells x %" PetscInt_FMT " genes, %lld non-zeros, %s, %.1f MB on disk\n",
                        ds->path, ds->nglobal, ds->ngenes, (long long)gnnz, ds->encoding, fbytes / 1e6));
  PetscCall(PetscPrintf(comm,
                        "ranks %d read %.2f s  cells/s %.0f  MB/s uncompressed %.0f  MB/s file %.0f  CPU s %.2f  (best of %" PetscInt_FMT
                        ")\n",
                        size, best[0], (double)ds->nglobal / best[0], ubytes / 1e6 / best[0], fbytes / 1e6 / best[0], bestcpu, repeat));
  if (phases) PetscCall(PetscPrintf(comm,
                        "phases (slowest rank, best of %" PetscInt_FMT "): raw chunk I/O %.2f s (%.0f MB as stored); the same elements "
                        "through HDF5's filter pipeline (I/O + zlib inflate + conversion) %.2f s = %.1fx the whole read\n",
                        repeat, best[1], rawbytes / 1e6, best[2], best[2] / best[0]));
  PetscCall(CsDatasetDestroy(&ds));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  PetscErrorCode ierr = CsInitialize(&argc, &argv, help);
  if (!ierr) ierr = Bench();
  {
    int status = CsExitStatus(ierr);
    if (CsFinalize()) return 1;
    return status;
  }
}
