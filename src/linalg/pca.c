/* Distributed PCA: the gene x gene covariance as a ScaLAPACK block-cyclic matrix. See include/cellshift/linalg.h.

   The covariance of p genes is p^2 doubles (3.2 GB at 2*10^4 genes), so no rank holds it. It is built in column
   panels of w columns: every rank densifies its selected rows in chunks, centred by the global mean (centring while
   densifying costs nothing extra and avoids the cancellation of subtracting n*mean*mean^T afterwards), and
   accumulates its contribution to the lower part of the panel, X_r[:, c0:]^T X_r[:, c0:c0+w], with dsyrk and dgemm. One
   MPI_Reduce_scatter then sums the panel over ranks and hands each process exactly the tiles it owns in the
   block-cyclic layout. pdsyevr (MRRR) computes the top-k eigenpairs from the lower triangle; the k eigenvector
   columns are summed into a replicated k x p array.

   Process grid: nprow = floor(sqrt(size)) rows and size / nprow columns, row-major (pdsyevr assumes BLACS process
   number = row * npcol + col); ranks that do not fit the grid only contribute data. Eigenvectors come out of
   ScaLAPACK with grid-dependent signs; CsFixSign makes them identical for every number of ranks.

   The grid and the layout are CsGrid and CsBlockCyclic (grid.c). */
#include "linalgimpl.h"
#include <cblas.h>

/* The covariance's layout: a p x p block-cyclic matrix on a grid. */
typedef struct {
  int p, nb, nprow, npcol;
  int myrow, mycol; /* -1 outside the grid */
  int mloc, nloc;   /* local rows and columns */
  int lld;
} Layout;

static inline int G2L(int g, int nb, int np) { return CsBCGlobalToLocal(g, nb, np); }
static inline int L2G(int l, int nb, int np, int me) { return CsBCLocalToGlobal(l, nb, np, me); }

/* The entries of panel columns [c0, c0+w), rows [c0, p), owned by grid process (pr, pc), visited column by column
   in runs of at most nb contiguous rows. S is the panel, column-major with leading dimension p - c0.
   Pack (A == NULL): copy them from S to buf (or only count them if buf is NULL too).
   Unpack (A != NULL): scale them from buf into the local array A (leading dimension lld).
   Packing and unpacking share this one traversal, so the order of the reduced buffer needs no description.
   Returns the number of entries. */
static size_t PanelMove(const Layout *L, int c0, int w, int pr, int pc, const double *S, double *buf, double *A,
                        double scale)
{
  size_t cnt = 0;
  int    m = L->p - c0;

  for (int j = c0; j < c0 + w; j++) {
    if ((j / L->nb) % L->npcol != pc) continue;
    int lj = G2L(j, L->nb, L->npcol);
    for (int ib = c0 / L->nb; ib * L->nb < L->p; ib++) {
      if (ib % L->nprow != pr) continue;
      int i0 = ib * L->nb, len = PetscMin(L->nb, L->p - i0);
      if (A) {
        double *dst = A + (size_t)lj * L->lld + G2L(i0, L->nb, L->nprow);
        for (int t = 0; t < len; t++) dst[t] = scale * buf[cnt + t];
      } else if (buf) memcpy(buf + cnt, S + (size_t)(j - c0) * m + (i0 - c0), sizeof(double) * (size_t)len);
      cnt += (size_t)len;
    }
  }
  return cnt;
}

/* Add this rank's centred contribution to panel S ((p - c0) x w, column-major) from its selected rows, densified
   chunk rows at a time into D (chunk x p, row-major; only columns >= c0 are touched). */
static void PanelContribution(const CsCSR *X, const PetscBool *rows, const double *mean, int c0, int w, int chunk,
                              double *D, double *S)
{
  int    p = (int)X->ncols, m = p - c0, nr = 0;
  double beta = 0;

  for (PetscInt i = 0; i <= X->nrows; i++) {
    PetscBool last = (PetscBool)(i == X->nrows);
    if (!last && (!rows || rows[i])) {
      double *d = D + (size_t)nr * p + c0;
      for (int j = 0; j < m; j++) d[j] = -mean[c0 + j];
      for (int64_t e = X->indptr[i]; e < X->indptr[i + 1]; e++)
        if (X->indices[e] >= c0) d[X->indices[e] - c0] += X->data[e];
      nr++;
    }
    if (nr && (nr == chunk || last)) {
      /* S += D[:, c0:]^T D[:, c0:c0+w]. Column-major, D[:, c0:] is the (m x nr) matrix at D + c0 with ld p: the
         diagonal block with dsyrk (lower half only), the rows below it with dgemm. */
      cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, w, nr, 1.0, D + c0, p, beta, S, m);
      if (m > w) cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, m - w, w, nr, 1.0, D + c0 + w, p, D + c0, p, beta, S + w, m);
      beta = 1, nr = 0;
    }
  }
  if (beta == 0) memset(S, 0, sizeof(double) * (size_t)m * w);
  /* The strict upper half of the diagonal block is not computed (pdsyevr reads the lower triangle): zero it so
     that the reduction carries no stale values. */
  for (int j = 1; j < w; j++) memset(S + (size_t)j * m, 0, sizeof(double) * (size_t)j);
}

void CsPCAOptionsDefault(CsPCAOptions *o)
{
  o->block_size = 64, o->panel_width = 0, o->chunk_rows = 0;
}

PetscErrorCode CsPCAOptionsProcess(PetscOptionItems *PetscOptionsObject, CsPCAOptions *o)
{
  PetscFunctionBeginUser;
  PetscCall(PetscOptionsInt("-pca_block_size", "Block size of the block-cyclic gene x gene covariance", "CsPCAFit",
                            o->block_size, &o->block_size, NULL));
  PetscCall(PetscOptionsInt("-pca_panel_width", "Covariance columns assembled per reduction (0: from a 256 MB budget)",
                            "CsPCAFit", o->panel_width, &o->panel_width, NULL));
  PetscCall(PetscOptionsInt("-pca_chunk_rows", "Cells densified at a time for the covariance (0: from a 64 MB budget)",
                            "CsPCAFit", o->chunk_rows, &o->chunk_rows, NULL));
  PetscCheck(o->block_size >= 1 && o->panel_width >= 0 && o->chunk_rows >= 0, PETSC_COMM_SELF, CS_ERR_INPUT,
             "PCA options: the block size must be positive, the panel width and chunk rows non-negative");
  PetscFunctionReturn(0);
}

/* Global mean of the selected rows and their number (*n >= 2 is an input requirement). */
static PetscErrorCode SelectedMean(MPI_Comm comm, const CsCSR *X, const PetscBool *rows, double *mean, double *n)
{
  PetscInt p = X->ncols;
  double  *sums;

  PetscFunctionBeginUser;
  PetscCall(PetscCalloc1((size_t)p + 1, &sums));
  for (PetscInt i = 0; i < X->nrows; i++) {
    if (rows && !rows[i]) continue;
    for (int64_t e = X->indptr[i]; e < X->indptr[i + 1]; e++) sums[X->indices[e]] += X->data[e];
    sums[p] += 1;
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, sums, (PetscMPIInt)(p + 1), MPI_DOUBLE, MPI_SUM, comm));
  *n = sums[p];
  PetscCheck(*n >= 2, comm, CS_ERR_INPUT, "PCA needs at least 2 cells, %.0f selected", *n);
  for (PetscInt j = 0; j < p; j++) mean[j] = sums[j] / *n;
  PetscCall(PetscFree(sums));
  PetscFunctionReturn(0);
}

/* The covariance sum (x - mean)(x - mean)^T / (n - 1) of the selected rows, lower triangle, into the local part
   A of its block-cyclic layout, panel by panel: every rank adds its rows' contribution to a panel, one
   MPI_Reduce_scatter hands each grid process its tiles. */
static PetscErrorCode AssembleCovariance(const CsGrid *grid, const Layout *L, const CsCSR *X, const PetscBool *rows, const double *mean,
                                         double n, PetscInt width, PetscInt chunk, double *A)
{
  MPI_Comm     comm = grid->comm;
  int          p = L->p;
  PetscMPIInt *counts;
  double      *D, *S, *send, *recv;
  size_t       maxrecv;

  PetscFunctionBeginUser;
  /* This rank's share of a panel: its rows times at most ceil(blocks per panel / npcol) blocks of columns. */
  maxrecv = (size_t)L->mloc * (size_t)((width / L->nb + L->npcol - 1) / L->npcol) * (size_t)L->nb;
  PetscCall(PetscMalloc1(grid->size, &counts));
  PetscCall(PetscMalloc1((size_t)chunk * p, &D));
  PetscCall(PetscMalloc3((size_t)p * width, &S, (size_t)p * width, &send, maxrecv + 1, &recv));
  for (int c0 = 0; c0 < p; c0 += (int)width) {
    int    w = (int)PetscMin(width, p - c0);
    size_t off = 0;
    PanelContribution(X, rows, mean, c0, w, (int)chunk, D, S);
    for (PetscMPIInt r = 0; r < grid->size; r++) {
      size_t c = grid->coord[2 * r] >= 0 ? PanelMove(L, c0, w, grid->coord[2 * r], grid->coord[2 * r + 1], S, send + off, NULL, 0) : 0;
      counts[r] = (PetscMPIInt)c, off += c;
    }
    PetscCallMPI(MPI_Reduce_scatter(send, recv, counts, MPI_DOUBLE, MPI_SUM, comm));
    if (L->myrow >= 0) PanelMove(L, c0, w, L->myrow, L->mycol, NULL, recv, A, 1.0 / (n - 1));
  }
  PetscCall(PetscFree3(S, send, recv));
  PetscCall(PetscFree(D));
  PetscCall(PetscFree(counts));
  PetscFunctionReturn(0);
}

/* Top k eigenpairs of the block-cyclic covariance A (destroyed), summed into the replicated buf: buf[t p + j] =
   component t, buf[k p + t] = its eigenvalue. pdsyevr sizes the workspace it hands to the back-transformation
   (PDORMTR) from the number of wanted eigenpairs and, when that is below the block size, gives it too little:
   PDORMTR then fails and pdsyevr returns info = 0 with untransformed vectors. So at least nb pairs are computed
   (cheap next to the tridiagonal reduction) and the top k are kept; the condition is checked so that a failure
   can never be silent. Z is declared p x p as pdsyevr requires, but only its first mz columns are ever touched,
   so only those are allocated. */
static PetscErrorCode TopEigenpairs(const CsGrid *grid, const Layout *L, double *A, PetscInt k, double *buf)
{
  MPI_Comm comm = grid->comm;
  int      p = L->p, K = (int)k, mz = PetscMax(K, L->nb), zero = 0, one = 1, info = 0, zloc, il, iu, mfound = 0, nzfound = 0;
  int      lwork = -1, liwork = -1, iwq, *iwork;
  double   wq, vl = 0, vu = 0, *Z, *W, *work;
  CsBlockCyclic dA, dZ;

  PetscFunctionBeginUser;
  {
    int    np00  = numroc_(&p, &L->nb, &zero, &zero, &L->nprow), mq00 = numroc_(&mz, &L->nb, &zero, &zero, &L->npcol);
    size_t size1 = (size_t)PetscMax(18 * (size_t)p, (size_t)np00 * mq00 + 2 * (size_t)L->nb * L->nb);
    size_t need  = PetscMax((size_t)L->nb * (L->nb - 1) / 2, (size_t)(np00 + mq00) * L->nb) + (size_t)L->nb * L->nb;
    PetscCheck(size1 >= need, comm, PETSC_ERR_PLIB, "pdsyevr workspace too small for %d x %d with block size %d", p, p, L->nb);
  }
  zloc = L->mycol >= 0 ? numroc_(&mz, &L->nb, &L->mycol, &zero, &L->npcol) : 0;
  PetscCall(CsBlockCyclicInit(grid, p, p, L->nb, &dA));
  PetscCall(CsBlockCyclicInit(grid, p, p, L->nb, &dZ));
  if (L->myrow >= 0) {
    il = p - mz + 1, iu = p;
    PetscCall(PetscCalloc1((size_t)L->lld * PetscMax(zloc, 1), &Z));
    PetscCall(PetscMalloc1(p, &W));
    pdsyevr_("V", "I", "L", &p, A, &one, &one, dA.desc, &vl, &vu, &il, &iu, &mfound, &nzfound, W, Z, &one, &one, dZ.desc, &wq, &lwork,
             &iwq, &liwork, &info, 1, 1, 1);
    if (!info) {
      lwork = (int)wq + 1, liwork = iwq;
      PetscCall(PetscMalloc2(lwork, &work, liwork, &iwork));
      pdsyevr_("V", "I", "L", &p, A, &one, &one, dA.desc, &vl, &vu, &il, &iu, &mfound, &nzfound, W, Z, &one, &one, dZ.desc, work, &lwork,
               iwork, &liwork, &info, 1, 1, 1);
      PetscCall(PetscFree2(work, iwork));
    }
    if (!info && (mfound != mz || nzfound != mz)) info = -1000;
    /* Column gj of Z holds the (gj+1)-th smallest computed eigenpair: the top k are component mz-1-gj < k. */
    for (int lj = 0; !info && lj < zloc; lj++) {
      int t = mz - 1 - L2G(lj, L->nb, L->npcol, L->mycol);
      if (t >= K) continue;
      double *dst = buf + (size_t)t * p;
      for (int li = 0; li < L->mloc; li++) dst[L2G(li, L->nb, L->nprow, L->myrow)] = Z[(size_t)lj * L->lld + li];
    }
    if (!info && L->myrow == 0 && L->mycol == 0)
      for (int t = 0; t < K; t++) buf[(size_t)k * p + t] = W[mz - 1 - t];
    PetscCall(PetscFree(Z));
    PetscCall(PetscFree(W));
  }
  /* info is global on the grid; ranks outside it learn it here, so a failure is raised everywhere. */
  info = abs(info);
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &info, 1, MPI_INT, MPI_MAX, comm));
  PetscCheck(!info, comm, PETSC_ERR_LIB, "pdsyevr failed on the %d x %d covariance (info %d)", p, p, info);
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, buf, (PetscMPIInt)((size_t)k * p + k), MPI_DOUBLE, MPI_SUM, comm));
  PetscFunctionReturn(0);
}

PetscErrorCode CsPCAFit(MPI_Comm comm, const CsCSR *X, const PetscBool *rows, PetscInt k, const CsPCAOptions *opt, double *mean,
                        double *comps, double *vars)
{
  CsPCAOptions defaults;
  CsGrid       grid;
  Layout       L;
  PetscInt     nb, width, chunk;
  int          p = (int)X->ncols;
  double       n = 0, *A, *buf;
  const size_t MB = 1 << 20;

  PetscFunctionBeginUser;
  PetscCall(PetscLogEventBegin(CS_EVENT_PCA, 0, 0, 0, 0));
  if (!opt) CsPCAOptionsDefault(&defaults), opt = &defaults;
  nb = opt->block_size, width = opt->panel_width, chunk = opt->chunk_rows;
  PetscCheck(nb >= 1 && width >= 0 && chunk >= 0, comm, PETSC_ERR_ARG_OUTOFRANGE,
             "PCA: the block size must be positive, the panel width and chunk rows non-negative");
  PetscCheck(k >= 1 && k <= p, comm, PETSC_ERR_ARG_OUTOFRANGE, "PCA: asked for %" PetscInt_FMT " components of %d genes", k, p);
  PetscCall(SelectedMean(comm, X, rows, mean, &n));

  PetscCall(CsGridCreate(comm, &grid));
  {
    CsBlockCyclic bc;
    PetscCall(CsBlockCyclicInit(&grid, p, p, (int)PetscMin(nb, p), &bc));
    L.p = p, L.nb = bc.nb, L.nprow = grid.nprow, L.npcol = grid.npcol, L.myrow = grid.myrow, L.mycol = grid.mycol;
    L.mloc = bc.mloc, L.nloc = bc.nloc, L.lld = bc.lld;
  }
  /* Panel width (a multiple of the block size) and chunk height from the memory budgets. */
  if (!width) width = (PetscInt)((256 * MB) / (2 * sizeof(double) * (size_t)p));
  width = PetscMax(L.nb, (width / L.nb) * L.nb);
  width = PetscMin(width, ((p + L.nb - 1) / L.nb) * L.nb);
  if (!chunk) chunk = (PetscInt)PetscMax(1, (64 * MB) / (sizeof(double) * (size_t)p));
  chunk = PetscMax(1, PetscMin(chunk, X->nrows));
  PetscCheck((size_t)p * width < (size_t)PETSC_MPI_INT_MAX, comm, PETSC_ERR_ARG_OUTOFRANGE,
             "PCA panel of %d x %" PetscInt_FMT " entries is too large for one reduction (lower the pca_panel_width option)", p, width);
  PetscCall(PetscCalloc1((size_t)L.lld * PetscMax(L.nloc, 1), &A));
  PetscCall(AssembleCovariance(&grid, &L, X, rows, mean, n, width, chunk, A));
  PetscCall(PetscCalloc1((size_t)k * p + k, &buf));
  PetscCall(TopEigenpairs(&grid, &L, A, k, buf));
  PetscCall(PetscFree(A));
  PetscCall(CsGridDestroy(&grid));
  for (PetscInt t = 0; t < k; t++) {
    CsFixSign(p, buf + (size_t)t * p);
    vars[t] = buf[(size_t)k * p + t];
  }
  PetscCall(PetscArraycpy(comps, buf, (size_t)k * p));
  PetscCall(PetscFree(buf));
  PetscCall(PetscLogEventEnd(CS_EVENT_PCA, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}
