/* Read benchmark: the parallel .h5ad reader (CsDatasetSetUp) on -data FILE, with where its time goes.

   Phases (each timed as the slowest rank, after a barrier):
     read     CsDatasetSetUp: everything `run` does to load the cells (balance, read, validate, obs, var)
     raw      the same rank's compressed chunks of X/indices and X/data fetched as they are on disk
              (H5Dread_chunk: file I/O only, no decompression)
     decoded  the same slices read through HDF5's filter pipeline (I/O + decompression + type conversion)
   decoded - raw is the decompression cost; read - decoded is balancing, validation, obs and var.
   Rates: cells/s, and MB/s of uncompressed matrix bytes (indptr + indices + data in their file types) and of file
   bytes (the file's size). -log_view shows the same split as the events CsRead, BenchRawChunks, BenchDecoded. */
#include <cellshift/dataset.h>
#include <cellshift/h5util.h>
#include <sys/stat.h>

static const char help[] = "Times the parallel .h5ad reader: bench_read_h5ad -data FILE [-log_view]\n";

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
  size_t  es;

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
    hsize_t o = (hsize_t)off, n = (hsize_t)cnt;
    mt = !strcmp(name, "data") ? H5T_NATIVE_FLOAT : H5T_NATIVE_INT32;
    PetscCall(PetscMalloc((size_t)cnt * 4, &buf));
    fs = H5Dget_space(d);
    ms = H5Screate_simple(1, &n, NULL);
    H5Call(H5Sselect_hyperslab(fs, H5S_SELECT_SET, &o, NULL, &n, NULL), "%s: bad selection", name);
    H5Call(H5Dread(d, mt, ms, fs, H5P_DEFAULT, buf), "%s: cannot read", name);
    H5Sclose(ms), H5Sclose(fs);
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

static PetscErrorCode Bench(void)
{
  MPI_Comm    comm = PETSC_COMM_WORLD;
  PetscMPIInt size, rank;
  CsDataset   ds;
  double      t0, tread, traw, tdec, rawbytes = 0, decbytes = 0, ubytes, fbytes = 0;
  int64_t     nnz, off = 0, gnnz;
  size_t      esd, esi, esp;
  hid_t       f, g;
  struct stat st;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCall(PetscLogEventRegister("BenchRawChunks", CS_CLASSID, &EV_RAW));
  PetscCall(PetscLogEventRegister("BenchDecoded", CS_CLASSID, &EV_DECODED));
  PetscCall(CsDatasetCreate(comm, &ds));
  PetscCall(CsDatasetSetFromOptions(ds));

  PetscCallMPI(MPI_Barrier(comm));
  t0 = CsTime();
  PetscCall(CsDatasetSetUp(ds));
  tread = Slowest(comm, CsTime() - t0);

  nnz = ds->X.indptr[ds->nlocal];
  PetscCallMPI(MPI_Exscan(&nnz, &off, 1, MPI_INT64_T, MPI_SUM, comm));
  if (!rank) off = 0;
  PetscCallMPI(MPI_Allreduce(&nnz, &gnnz, 1, MPI_INT64_T, MPI_SUM, comm));
  if (!rank && !stat(ds->path, &st)) fbytes = (double)st.st_size;

  /* The raw and decoded phases read this rank's non-zeros straight from X (CSR files only). */
  f = H5Fopen(ds->path, H5F_ACC_RDONLY, H5P_DEFAULT);
  H5Call(f, "cannot open %s", ds->path);
  H5Call(g = H5Gopen2(f, "X", H5P_DEFAULT), "%s: X is not a sparse group (the phase split needs CSR)", ds->path);
  PetscCall(ElementSize(g, "data", &esd));
  PetscCall(ElementSize(g, "indices", &esi));
  PetscCall(ElementSize(g, "indptr", &esp));
  ubytes = (double)(ds->nglobal + 1) * (double)esp + (double)gnnz * (double)(esd + esi);

  PetscCallMPI(MPI_Barrier(comm));
  PetscCall(PetscLogEventBegin(EV_RAW, 0, 0, 0, 0));
  t0 = CsTime();
  PetscCall(ReadSlice(g, "indices", off, nnz, PETSC_TRUE, &rawbytes));
  PetscCall(ReadSlice(g, "data", off, nnz, PETSC_TRUE, &rawbytes));
  traw = Slowest(comm, CsTime() - t0);
  PetscCall(PetscLogEventEnd(EV_RAW, 0, 0, 0, 0));

  PetscCallMPI(MPI_Barrier(comm));
  PetscCall(PetscLogEventBegin(EV_DECODED, 0, 0, 0, 0));
  t0 = CsTime();
  PetscCall(ReadSlice(g, "indices", off, nnz, PETSC_FALSE, &decbytes));
  PetscCall(ReadSlice(g, "data", off, nnz, PETSC_FALSE, &decbytes));
  tdec = Slowest(comm, CsTime() - t0);
  PetscCall(PetscLogEventEnd(EV_DECODED, 0, 0, 0, 0));
  H5Gclose(g), H5Fclose(f);

  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &rawbytes, 1, MPI_DOUBLE, MPI_SUM, comm));
  PetscCall(PetscPrintf(comm, "file %s: %" PetscInt_FMT " cells x %" PetscInt_FMT " genes, %lld non-zeros, %s, %.1f MB on disk\n",
                        ds->path, ds->nglobal, ds->ngenes, (long long)gnnz, ds->encoding, fbytes / 1e6));
  PetscCall(PetscPrintf(comm, "ranks %d read %.2f s  cells/s %.0f  MB/s uncompressed %.0f  MB/s file %.0f\n", size, tread,
                        (double)ds->nglobal / tread, ubytes / 1e6 / tread, fbytes / 1e6 / tread));
  PetscCall(PetscPrintf(comm,
                        "phases (slowest rank): raw chunk I/O %.2f s (%.0f MB compressed); I/O + decompression %.2f s; "
                        "decompression ~%.2f s = %.0f%% of the read; balance + validate + obs + var ~%.2f s\n",
                        traw, rawbytes / 1e6, tdec, tdec - traw, 100.0 * (tdec - traw) / tread, tread - tdec));
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
