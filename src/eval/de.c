/* Differential expression as cell-eval computes it for the Virtual Cell Challenge (pdex): a two-sided Wilcoxon
   rank-sum (Mann-Whitney U) test per gene of a group against the controls of its context, Benjamini-Hochberg over
   the genes of the group, fold changes of expm1 of the log-space means. See include/cellshift/eval.h.

   The test needs the ranks of every cell's value, so each gene's values are brought to one rank: the genes are
   dealt out in contiguous blocks, and every rank sends the nonzero entries of its cells to the genes' owners
   (MPI_Alltoallv), who sort them per (group, gene). Zeros, the bulk of single-cell data, are never sent: each
   (group, gene) knows its number of cells, and the zeros form one tie block. So a rank holds about 1/size of the
   nonzeros of the groups tested, and no rank gathers the cells of a group. */
#include "evalimpl.h"
#include <math.h>

/* ---------------------------------------------------------------------------------------------------------------
   Kernels */

/* Sorted values of one sample: the kneg negative values x[0..kneg), then z zeros, then x[kneg..k). */
typedef struct {
  const float *x;
  PetscInt     k, kneg, z, i;
  PetscBool    zdone;
} Sample;

static void SampleInit(Sample *s, PetscInt n, PetscInt k, const float x[])
{
  s->x = x, s->k = k, s->z = n - k, s->i = 0, s->zdone = s->z > 0 ? PETSC_FALSE : PETSC_TRUE;
  for (s->kneg = 0; s->kneg < k && x[s->kneg] < 0; s->kneg++) {}
}

/* The next value, +inf at the end. */
static double SamplePeek(const Sample *s)
{
  if (s->i == s->kneg && !s->zdone) return 0.0;
  return s->i < s->k ? (double)s->x[s->i] : INFINITY;
}

/* Take every value equal to v (the smallest left); returns how many. */
static PetscInt SampleTake(Sample *s, double v)
{
  PetscInt c = 0;
  if (v == 0) {
    if (s->i == s->kneg && !s->zdone) c = s->z, s->zdone = PETSC_TRUE;
    return c;
  }
  while (s->i < s->k && (double)s->x[s->i] == v) s->i++, c++;
  return c;
}

double CsMannWhitneyP(PetscInt nx, PetscInt kx, const float x[], PetscInt ny, PetscInt ky, const float y[])
{
  Sample X, Y;
  double running = 1, rx = 0, ties = 0, n = (double)nx + (double)ny, u1, u, mu, s, z, p;

  if (nx < 1 || ny < 1) return 1.0;
  SampleInit(&X, nx, kx, x);
  SampleInit(&Y, ny, ky, y);
  for (;;) {
    double   v = PetscMin(SamplePeek(&X), SamplePeek(&Y)), c;
    PetscInt cx, cy;
    if (v == INFINITY) break;
    cx = SampleTake(&X, v), cy = SampleTake(&Y, v), c = (double)(cx + cy);
    rx += cx * (running + 0.5 * (c - 1));
    ties += c * c * c - c;
    running += c;
  }
  u1 = rx - 0.5 * nx * (nx + 1.0);
  u  = PetscMax(u1, (double)nx * ny - u1);
  mu = 0.5 * nx * (double)ny;
  s  = sqrt((double)nx * ny / 12.0 * ((n + 1) - ties / (n * (n - 1))));
  if (!(s > 0)) return 1.0; /* every value ties: nothing to test */
  z = (u - mu - 0.5) / s;
  p = erfc(z / M_SQRT2);
  return p > 1 ? 1.0 : p;
}

typedef struct {
  double   p;
  PetscInt i;
} PIdx;

static int CmpPIdx(const void *a, const void *b)
{
  const PIdx *x = a, *y = b;
  if (x->p != y->p) return x->p < y->p ? -1 : 1;
  return (x->i > y->i) - (x->i < y->i);
}

PetscErrorCode CsBenjaminiHochberg(PetscInt n, const double p[], double q[])
{
  PIdx  *s;
  double run = 1.0;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(n + 1, &s));
  for (PetscInt i = 0; i < n; i++) s[i].p = p[i], s[i].i = i;
  qsort(s, (size_t)n, sizeof(*s), CmpPIdx);
  for (PetscInt r = n - 1; r >= 0; r--) {
    double v = s[r].p * n / (r + 1);
    run      = PetscMin(run, v);
    q[s[r].i] = run;
  }
  PetscCall(PetscFree(s));
  PetscFunctionReturn(0);
}

/* pdex's fold change clip: a zero reference mean gives 20, a zero group mean 1/20. */
#define CS_DE_FC_CLIP 20.0

void CsLog2FoldChange(PetscInt n, const double *mX, const double *mC, double *lfc)
{
  for (PetscInt j = 0; j < n; j++) {
    double x = expm1(mX[j]), c = expm1(mC[j]), fc;
    fc     = c == 0 ? CS_DE_FC_CLIP : x == 0 ? 1.0 / CS_DE_FC_CLIP : x / c;
    lfc[j] = fc > 0 ? log2(fc) : 0.0; /* a negative predicted mean: cell-eval's NaN filled with 0 */
  }
}

PetscErrorCode CsDEOverlap(PetscInt nt, const PetscInt tset[], PetscInt np, const PetscInt pset[], double *overlap)
{
  PetscInt k = PetscMin(nt, np), hit = 0, lo = PETSC_MAX_INT, hi = -1;
  char    *in;

  PetscFunctionBeginUser;
  *overlap = 0;
  if (!nt) PetscFunctionReturn(0); /* cell-eval: no true DE genes scores 0 */
  for (PetscInt i = 0; i < nt; i++) lo = PetscMin(lo, tset[i]), hi = PetscMax(hi, tset[i]);
  PetscCall(PetscCalloc1(hi - lo + 1, &in));
  for (PetscInt i = 0; i < nt; i++) in[tset[i] - lo] = 1;
  for (PetscInt i = 0; i < k; i++) hit += pset[i] >= lo && pset[i] <= hi && in[pset[i] - lo];
  PetscCall(PetscFree(in));
  *overlap = hit / (double)nt;
  PetscFunctionReturn(0);
}

PetscErrorCode CsDESet(PetscInt n, const double q[], const double lfc[], PetscInt *set, PetscInt *nset)
{
  PetscBool *sig;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(n + 1, &sig));
  for (PetscInt j = 0; j < n; j++) sig[j] = q[j] < CS_DE_FDR ? PETSC_TRUE : PETSC_FALSE;
  PetscCall(CsRankAbs(n, lfc, sig, set, nset));
  PetscCall(PetscFree(sig));
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------------------------------------------------------
   Columns on their owner ranks */

/* First gene of rank r: contiguous blocks, the same split for every set of cells scored. */
static PetscInt GeneStart(PetscInt G, PetscMPIInt r, PetscMPIInt size) { return (PetscInt)((int64_t)G * r / size); }

static PetscMPIInt GeneOwner(PetscInt G, PetscInt j, PetscMPIInt size)
{
  PetscMPIInt r = (PetscMPIInt)(((int64_t)j * size) / PetscMax(G, 1));
  while (r + 1 < size && GeneStart(G, r + 1, size) <= j) r++;
  while (r > 0 && GeneStart(G, r, size) > j) r--;
  return r;
}

typedef struct {
  int64_t key; /* slot * G + gene */
  float   v;
} Entry;

static int CmpEntry(const void *a, const void *b)
{
  const Entry *x = a, *y = b;
  if (x->key != y->key) return x->key < y->key ? -1 : 1;
  return (x->v > y->v) - (x->v < y->v);
}

/* Collective: the nonzero entries of the rows in a slot, sent to the owners of their genes. */
static PetscErrorCode ExchangeEntries(MPI_Comm comm, const CsCSR *X, const PetscInt slot[], PetscInt *nrecv, Entry **recv)
{
  PetscMPIInt size, *scnt, *rcnt, *sdis, *rdis;
  PetscInt    G = X->ncols, nsend = 0;
  int64_t    *skey, *rkey;
  float      *sval, *rval;
  PetscMPIInt *fill;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCall(PetscCalloc5(size, &scnt, size, &rcnt, size + 1, &sdis, size + 1, &rdis, size, &fill));
  for (PetscInt i = 0; i < X->nrows; i++) {
    if (slot[i] < 0) continue;
    for (int64_t k = X->indptr[i]; k < X->indptr[i + 1]; k++)
      if (X->data[k] != 0) scnt[GeneOwner(G, X->indices[k], size)]++, nsend++;
  }
  PetscCallMPI(MPI_Alltoall(scnt, 1, MPI_INT, rcnt, 1, MPI_INT, comm));
  for (PetscMPIInt r = 0; r < size; r++) {
    PetscCheck((int64_t)sdis[r] + scnt[r] <= INT32_MAX && (int64_t)rdis[r] + rcnt[r] <= INT32_MAX, PETSC_COMM_SELF, PETSC_ERR_SUP,
               "more than 2^31 nonzeros to exchange for the rank tests; run on more ranks");
    sdis[r + 1] = sdis[r] + scnt[r], rdis[r + 1] = rdis[r] + rcnt[r];
  }
  PetscCall(PetscMalloc4(nsend + 1, &skey, nsend + 1, &sval, rdis[size] + 1, &rkey, rdis[size] + 1, &rval));
  PetscCall(PetscArraycpy(fill, sdis, size));
  for (PetscInt i = 0; i < X->nrows; i++) {
    if (slot[i] < 0) continue;
    for (int64_t k = X->indptr[i]; k < X->indptr[i + 1]; k++) {
      PetscMPIInt r;
      if (X->data[k] == 0) continue;
      r          = GeneOwner(G, X->indices[k], size);
      skey[fill[r]] = (int64_t)slot[i] * G + X->indices[k];
      sval[fill[r]++] = X->data[k];
    }
  }
  PetscCallMPI(MPI_Alltoallv(skey, scnt, sdis, MPI_INT64_T, rkey, rcnt, rdis, MPI_INT64_T, comm));
  PetscCallMPI(MPI_Alltoallv(sval, scnt, sdis, MPI_FLOAT, rval, rcnt, rdis, MPI_FLOAT, comm));
  *nrecv = rdis[size];
  PetscCall(PetscMalloc1(*nrecv + 1, recv));
  for (PetscInt i = 0; i < *nrecv; i++) (*recv)[i].key = rkey[i], (*recv)[i].v = rval[i];
  PetscCall(PetscFree4(skey, sval, rkey, rval));
  PetscCall(PetscFree5(scnt, rcnt, sdis, rdis, fill));
  PetscFunctionReturn(0);
}

PetscErrorCode CsEvalColumnsBuild(MPI_Comm comm, const CsCSR *X, const PetscInt slot[], PetscInt nslots, const PetscInt total[],
                                  CsEvalColumns *c)
{
  PetscMPIInt rank, size;
  PetscInt    nrecv = 0, ng;
  Entry      *e;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCall(PetscMemzero(c, sizeof(*c)));
  c->G = X->ncols, c->nslots = nslots;
  c->g0 = GeneStart(c->G, rank, size), c->g1 = GeneStart(c->G, rank + 1, size), ng = c->g1 - c->g0;
  PetscCall(ExchangeEntries(comm, X, slot, &nrecv, &e));
  qsort(e, (size_t)nrecv, sizeof(*e), CmpEntry);
  PetscCall(PetscMalloc1(nslots + 1, &c->n));
  PetscCall(PetscArraycpy(c->n, total, nslots));
  PetscCall(PetscCalloc1((size_t)nslots * ng + 1, &c->start));
  PetscCall(PetscMalloc1(nrecv + 1, &c->val));
  for (PetscInt i = 0; i < nrecv; i++) {
    PetscInt s = (PetscInt)(e[i].key / c->G), j = (PetscInt)(e[i].key % c->G) - c->g0;
    c->start[(size_t)s * ng + j + 1]++;
    c->val[i] = e[i].v;
  }
  for (size_t k = 0; k < (size_t)nslots * ng; k++) c->start[k + 1] += c->start[k];
  PetscCall(PetscFree(e));
  PetscFunctionReturn(0);
}

PetscErrorCode CsEvalColumnsFree(CsEvalColumns *c)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree(c->n));
  PetscCall(PetscFree(c->start));
  PetscCall(PetscFree(c->val));
  PetscFunctionReturn(0);
}

/* Collective: p[t * G + j] for every pair (xs[t], ys[t]) of slots, X's slots in cx and Y's in cy (both built over
   the same genes and ranks): each owner tests its genes, then the blocks are shared with every rank. */
PetscErrorCode CsEvalColumnsTest(MPI_Comm comm, const CsEvalColumns *cx, const PetscInt xs[], const CsEvalColumns *cy,
                                 const PetscInt ys[], PetscInt npairs, double *p)
{
  PetscMPIInt size, *cnt, *dis;
  PetscInt    G = cx->G, ng = cx->g1 - cx->g0;
  double     *mine, *all;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCall(PetscMalloc1((size_t)npairs * ng + 1, &mine));
  for (PetscInt t = 0; t < npairs; t++)
    for (PetscInt j = 0; j < ng; j++) {
      size_t kx = (size_t)xs[t] * ng + j, ky = (size_t)ys[t] * ng + j;
      mine[(size_t)j * npairs + t] = CsMannWhitneyP(cx->n[xs[t]], (PetscInt)(cx->start[kx + 1] - cx->start[kx]), cx->val + cx->start[kx],
                                                    cy->n[ys[t]], (PetscInt)(cy->start[ky + 1] - cy->start[ky]), cy->val + cy->start[ky]);
    }
  /* Gathered gene-major (each rank's block is contiguous), then transposed to p[t * G + j]. */
  PetscCall(PetscMalloc3(size, &cnt, size + 1, &dis, (size_t)npairs * G + 1, &all));
  dis[0] = 0;
  for (PetscMPIInt r = 0; r < size; r++) {
    int64_t c = (int64_t)(GeneStart(G, r + 1, size) - GeneStart(G, r, size)) * npairs;
    PetscCheck(c <= INT32_MAX && (int64_t)dis[r] + c <= INT32_MAX, PETSC_COMM_SELF, PETSC_ERR_SUP, "too many test groups x genes to share");
    cnt[r] = (PetscMPIInt)c, dis[r + 1] = dis[r] + cnt[r];
  }
  PetscCallMPI(MPI_Allgatherv(mine, (PetscMPIInt)((size_t)npairs * ng), MPI_DOUBLE, all, cnt, dis, MPI_DOUBLE, comm));
  for (PetscInt j = 0; j < G; j++)
    for (PetscInt t = 0; t < npairs; t++) p[(size_t)t * G + j] = all[(size_t)j * npairs + t];
  PetscCall(PetscFree3(cnt, dis, all));
  PetscCall(PetscFree(mine));
  PetscFunctionReturn(0);
}
