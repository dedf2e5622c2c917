/* Times the sequence, graph and pairwise kernels of src/nn at the sizes the next model families use, and prints one
   line of key/value pairs per kernel (see bench/kernels.sh, which runs PyTorch's attention next to it):
   - multi-head self-attention forward + backward (all gradients) on x[B,T,C] with H heads;
   - SGConv propagation on a gene graph normalised by CsNNGraphNormalize (n nodes, about `degree` neighbours
     each, plus the self-loop), features [B,n,d]: one hop forward, its backward (dX and, with learned edge
     weights, dA), and K hops forward + backward;
   - the Sinkhorn inner loop: float32 pairwise squared distances (sgemm) and row / column log-sum-exp.

   Options: -attn_batch 32 -attn_tokens 64 -attn_channels 128 -attn_heads 4; -graph_nodes 20000 -graph_degree 20
   -graph_dim 64 -graph_batch 8 -graph_hops 2; -ot_points 4096 -ot_dim 50; -reps 5 (best of); -blas_threads.
   A kernel runs for at least 0.2 s per repetition. */
#include <cellshift/nn.h>
#include <cellshift/rng.h>
#include <cblas.h>
#include <time.h>

static const char help[] = "Times the attention, graph and pairwise kernels.\n";

static void Fill(float *x, size_t n, uint64_t key, double lo, double hi)
{
  for (size_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * CsRngUniform(7, CS_STREAM_DATA, key, i));
}

typedef void (*Kernel)(void *ctx);

static double CpuNow(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* Best wall time per call over reps repetitions of enough calls to fill 0.2 s, and the process CPU time of the
   fastest repetition divided by the threads (on a machine shared with other jobs the wall time includes the time
   the threads waited for a core; the CPU time does not). */
static double cpu_last;
static double Time(Kernel k, void *ctx, PetscInt reps)
{
  double best = 1e300;
  int    n    = 1;
  k(ctx); /* warm-up */
  for (;;) {
    double t = MPI_Wtime();
    for (int i = 0; i < n; i++) k(ctx);
    t = MPI_Wtime() - t;
    if (t > 0.2 || n > (1 << 20)) break;
    n *= 2;
  }
  cpu_last = 1e300;
  for (PetscInt r = 0; r < reps; r++) {
    double t = MPI_Wtime(), c = CpuNow();
    for (int i = 0; i < n; i++) k(ctx);
    t = (MPI_Wtime() - t) / n;
    c = (CpuNow() - c) / n / CsBLASGetThreads();
    best     = t < best ? t : best;
    cpu_last = c < cpu_last ? c : cpu_last;
  }
  return best;
}

/* ------------------------------------------------------------------------------------------------- attention */

typedef struct {
  PetscInt B, T, C, H;
  float   *x, *wqkv, *bqkv, *wo, *bo, *out, *qkv, *att, *y, *dout, *dx, *dwqkv, *dbqkv, *dwo, *dbo, *work;
} Attn;

static void AttnFwd(void *p)
{
  Attn *a = (Attn *)p;
  cs_attention_forward(a->out, a->qkv, a->att, a->y, a->x, a->wqkv, a->bqkv, a->wo, a->bo, NULL, a->B, a->T, a->C, a->H);
}

static void AttnStep(void *p)
{
  Attn *a = (Attn *)p;
  AttnFwd(p);
  cs_attention_backward(a->dx, a->dwqkv, a->dbqkv, a->dwo, a->dbo, a->dout, a->x, a->qkv, a->att, a->y, a->wqkv, a->wo, NULL, a->B, a->T, a->C,
                        a->H, a->work);
}

static PetscErrorCode BenchAttention(PetscInt B, PetscInt T, PetscInt C, PetscInt H, PetscInt reps)
{
  Attn   a;
  size_t btc = (size_t)B * T * C;
  double tf, ts, cs, ffwd, fstep;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(&a, sizeof(a)));
  a.B = B, a.T = T, a.C = C, a.H = H;
  PetscCheck(C % H == 0, PETSC_COMM_WORLD, PETSC_ERR_ARG_OUTOFRANGE, "-attn_channels must be divisible by -attn_heads");
  PetscCall(PetscCalloc5(btc, &a.x, (size_t)C * 3 * C, &a.wqkv, 3 * (size_t)C, &a.bqkv, (size_t)C * C, &a.wo, (size_t)C, &a.bo));
  PetscCall(PetscCalloc5(btc, &a.out, 3 * btc, &a.qkv, (size_t)B * H * T * T, &a.att, btc, &a.y, btc, &a.dout));
  PetscCall(PetscCalloc5(btc, &a.dx, (size_t)C * 3 * C, &a.dwqkv, 3 * (size_t)C, &a.dbqkv, (size_t)C * C, &a.dwo, (size_t)C, &a.dbo));
  PetscCall(PetscCalloc1(cs_attention_work_size(B, T, C), &a.work));
  Fill(a.x, btc, 1, -1, 1), Fill(a.dout, btc, 2, -1, 1), Fill(a.wqkv, (size_t)C * 3 * C, 3, -0.1, 0.1), Fill(a.wo, (size_t)C * C, 4, -0.1, 0.1);
  tf = Time(AttnFwd, &a, reps);
  ts = Time(AttnStep, &a, reps), cs = cpu_last;
  /* projections 2 B T C (3C + C); scores and AV 2 x 2 B T^2 C; backward twice the forward (dW and dX per product) */
  ffwd  = 8.0 * B * T * C * C + 4.0 * B * T * (double)T * C;
  fstep = 3 * ffwd;
  PetscCall(PetscPrintf(PETSC_COMM_WORLD,
                        "cellshift_attention threads %d B %d T %d C %d H %d fwd_ms %.3f fwdbwd_ms %.3f fwd_gflops %.1f fwdbwd_gflops %.1f"
                        " fwdbwd_cpu_ms %.3f\n",
                        CsBLASGetThreads(), (int)B, (int)T, (int)C, (int)H, tf * 1e3, ts * 1e3, ffwd / tf / 1e9, fstep / ts / 1e9, cs * 1e3));
  PetscCall(PetscFree5(a.x, a.wqkv, a.bqkv, a.wo, a.bo));
  PetscCall(PetscFree5(a.out, a.qkv, a.att, a.y, a.dout));
  PetscCall(PetscFree5(a.dx, a.dwqkv, a.dbqkv, a.dwo, a.dbo));
  PetscCall(PetscFree(a.work));
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------------------------------------- graph */

typedef struct {
  CsCSR         A;
  CsNNTranspose AT;
  PetscInt      B, d, K;
  float        *x, *y, *g, *dx, *dA, *hops, *work;
} Graph;

static void GraphFwd(void *p)
{
  Graph *g = (Graph *)p;
  cs_graph_forward(g->y, &g->A, g->x, g->B, g->d);
}
static void GraphBwdX(void *p)
{
  Graph *g = (Graph *)p;
  cs_graph_backward(g->dx, NULL, g->g, g->x, &g->A, &g->AT, g->B, g->d);
}
static void GraphBwdA(void *p)
{
  Graph *g = (Graph *)p;
  cs_graph_backward(NULL, g->dA, g->g, g->x, &g->A, &g->AT, g->B, g->d);
}
static void SGConvStep(void *p)
{
  Graph *g = (Graph *)p;
  cs_sgconv_forward(g->y, g->hops, &g->A, g->x, g->K, g->B, g->d);
  cs_sgconv_backward(g->dx, g->dA, g->g, g->x, g->hops, &g->A, &g->AT, g->K, g->B, g->d, g->work);
}

static PetscErrorCode BenchGraph(PetscInt n, PetscInt degree, PetscInt d, PetscInt B, PetscInt K, PetscInt reps)
{
  Graph     g;
  PetscInt  ne = n * degree / 2, *src, *dst;
  size_t    nx = (size_t)B * n * d, nnz;
  double    tn, tf, tx, ta, ts, f1, cf, cx, ca, cs;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(&g, sizeof(g)));
  g.B = B, g.d = d, g.K = K;
  /* degree/2 random undirected edges per node, symmetrised: about degree neighbours each, and the self-loop. */
  PetscCall(PetscMalloc2(ne, &src, ne, &dst));
  for (PetscInt e = 0; e < ne; e++) {
    src[e] = (PetscInt)(e / (degree / 2));
    dst[e] = (PetscInt)(CsRngUniform(7, CS_STREAM_DATA, 10, (uint64_t)e) * n);
  }
  tn = MPI_Wtime();
  PetscCall(CsNNGraphNormalize(n, ne, src, dst, NULL, PETSC_TRUE, &g.A));
  tn = MPI_Wtime() - tn;
  PetscCall(CsNNTransposeCreate(&g.A, &g.AT));
  nnz = (size_t)g.A.indptr[n];
  PetscCall(PetscFree2(src, dst));
  PetscCall(PetscCalloc5(nx, &g.x, nx, &g.y, nx, &g.g, nx, &g.dx, nnz, &g.dA));
  PetscCall(PetscCalloc2(nx * (size_t)PetscMax(K - 1, 1), &g.hops, 2 * nx, &g.work));
  Fill(g.x, nx, 11, -1, 1), Fill(g.g, nx, 12, -1, 1);
  tf = Time(GraphFwd, &g, reps), cf = cpu_last;
  tx = Time(GraphBwdX, &g, reps), cx = cpu_last;
  ta = Time(GraphBwdA, &g, reps), ca = cpu_last;
  ts = Time(SGConvStep, &g, reps), cs = cpu_last;
  f1 = 2.0 * nnz * d * B; /* one product A X; dX and dA cost as much each */
  PetscCall(PetscPrintf(PETSC_COMM_WORLD,
                        "cellshift_graph threads %d n %d nnz %zu d %d B %d normalize_ms %.1f fwd_ms %.2f bwd_dx_ms %.2f bwd_da_ms %.2f"
                        " fwd_gflops %.2f bwd_dx_gflops %.2f bwd_da_gflops %.2f sgconv_K %d sgconv_fwdbwd_ms %.2f sgconv_gflops %.2f"
                        " cpu_ms fwd %.2f bwd_dx %.2f bwd_da %.2f sgconv %.2f\n",
                        CsBLASGetThreads(), (int)n, nnz, (int)d, (int)B, tn * 1e3, tf * 1e3, tx * 1e3, ta * 1e3, f1 / tf / 1e9, f1 / tx / 1e9,
                        f1 / ta / 1e9, (int)K, ts * 1e3, 3.0 * K * f1 / ts / 1e9, cf * 1e3, cx * 1e3, ca * 1e3, cs * 1e3));
  PetscCall(PetscFree5(g.x, g.y, g.g, g.dx, g.dA));
  PetscCall(PetscFree2(g.hops, g.work));
  PetscCall(CsNNTransposeDestroy(&g.AT));
  PetscCall(CsCSRFree(&g.A));
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------------------------------------- OT */

typedef struct {
  PetscInt n, d;
  float   *X, *Y, *D, *work, *f, *g, *out;
} OT;

static void Dist(void *p)
{
  OT *o = (OT *)p;
  cs_pairwise_sqdist_forward(o->D, o->X, o->Y, o->n, o->n, o->d, o->work);
}
static void LseRows(void *p)
{
  OT *o = (OT *)p;
  cs_logsumexp_rows(o->out, o->D, o->f, o->g, -20.0f, o->n, o->n);
}
static void LseCols(void *p)
{
  OT *o = (OT *)p;
  cs_logsumexp_cols(o->out, o->D, o->f, o->g, -20.0f, o->n, o->n);
}

static PetscErrorCode BenchOT(PetscInt n, PetscInt d, PetscInt reps)
{
  OT     o;
  double td, tr, tc, cd, cr, cc;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(&o, sizeof(o)));
  o.n = n, o.d = d;
  PetscCall(PetscCalloc5((size_t)n * d, &o.X, (size_t)n * d, &o.Y, (size_t)n * n, &o.D, 2 * (size_t)n, &o.work, (size_t)n, &o.out));
  PetscCall(PetscCalloc2((size_t)n, &o.f, (size_t)n, &o.g));
  Fill(o.X, (size_t)n * d, 20, -1, 1), Fill(o.Y, (size_t)n * d, 21, -1, 1), Fill(o.f, (size_t)n, 22, -1, 1), Fill(o.g, (size_t)n, 23, -1, 1);
  td = Time(Dist, &o, reps), cd = cpu_last;
  tr = Time(LseRows, &o, reps), cr = cpu_last;
  tc = Time(LseCols, &o, reps), cc = cpu_last;
  PetscCall(PetscPrintf(PETSC_COMM_WORLD,
                        "cellshift_ot threads %d n %d d %d sqdist_ms %.2f sqdist_gflops %.1f lse_rows_ms %.2f lse_cols_ms %.2f lse_rows_gelem_s %.2f"
                        " lse_cols_gelem_s %.2f cpu_ms sqdist %.2f lse_rows %.2f lse_cols %.2f\n",
                        CsBLASGetThreads(), (int)n, (int)d, td * 1e3, 2.0 * n * n * d / td / 1e9, tr * 1e3, tc * 1e3, (double)n * n / tr / 1e9,
                        (double)n * n / tc / 1e9, cd * 1e3, cr * 1e3, cc * 1e3));
  PetscCall(PetscFree5(o.X, o.Y, o.D, o.work, o.out));
  PetscCall(PetscFree2(o.f, o.g));
  PetscFunctionReturn(0);
}

static PetscErrorCode Run(void)
{
  PetscInt  aB = 32, aT = 64, aC = 128, aH = 4, gn = 20000, gdeg = 20, gd = 64, gB = 8, gK = 2, on = 4096, od = 50, reps = 5;
  PetscBool attn = PETSC_TRUE, graph = PETSC_TRUE, ot = PETSC_TRUE;

  PetscFunctionBeginUser;
  PetscOptionsBegin(PETSC_COMM_WORLD, NULL, "Kernel benchmark", "bench");
  PetscCall(PetscOptionsBool("-attn", "Time attention", "", attn, &attn, NULL));
  PetscCall(PetscOptionsInt("-attn_batch", "Sets", "", aB, &aB, NULL));
  PetscCall(PetscOptionsInt("-attn_tokens", "Tokens per set", "", aT, &aT, NULL));
  PetscCall(PetscOptionsInt("-attn_channels", "Channels", "", aC, &aC, NULL));
  PetscCall(PetscOptionsInt("-attn_heads", "Heads", "", aH, &aH, NULL));
  PetscCall(PetscOptionsBool("-graph", "Time graph propagation", "", graph, &graph, NULL));
  PetscCall(PetscOptionsInt("-graph_nodes", "Nodes (genes)", "", gn, &gn, NULL));
  PetscCall(PetscOptionsInt("-graph_degree", "Neighbours per node", "", gdeg, &gdeg, NULL));
  PetscCall(PetscOptionsInt("-graph_dim", "Features per node", "", gd, &gd, NULL));
  PetscCall(PetscOptionsInt("-graph_batch", "Cells", "", gB, &gB, NULL));
  PetscCall(PetscOptionsInt("-graph_hops", "SGConv hops", "", gK, &gK, NULL));
  PetscCall(PetscOptionsBool("-ot", "Time distances and log-sum-exp", "", ot, &ot, NULL));
  PetscCall(PetscOptionsInt("-ot_points", "Points per side", "", on, &on, NULL));
  PetscCall(PetscOptionsInt("-ot_dim", "Dimension", "", od, &od, NULL));
  PetscCall(PetscOptionsInt("-reps", "Repetitions (the best is reported)", "", reps, &reps, NULL));
  PetscOptionsEnd();
  if (attn) PetscCall(BenchAttention(aB, aT, aC, aH, reps));
  if (graph) PetscCall(BenchGraph(gn, gdeg, gd, gB, gK, reps));
  if (ot) PetscCall(BenchOT(on, od, reps));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv)
{
  PetscErrorCode ierr = CsInitialize(&argc, &argv, help);
  if (ierr) return CsExitStatus(ierr);
  ierr = Run();
  if (ierr) return CsExitStatus(ierr);
  return CsFinalize() ? 1 : 0;
}
