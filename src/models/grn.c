/* grn: regulatory linear response on a TF -> target prior, solved with ScaLAPACK.

   Network. W (genes x genes) is supported on the prior's TF -> target edges between genes of the data
   (-grn_prior dorothea (confidence -prior_dorothea_levels, default A-C), trrust, or dorothea+trrust; self-loops
   dropped). Row t of W is a ridge regression of target t on its regulators R_t over the training cells (cells of
   train groups, controls included), each cell centred by the mean of the training cells of its context:
       (X_R^T X_R / n_t + ridge I) w_t = X_R^T x_t / n_t,
   where a cell whose condition perturbs t itself is left out of t's regression (its level of t is set by the
   intervention, not by its regulators). The sums are normal equations assembled on every rank from its rows and
   summed with one MPI_Allreduce; each target's small system is then solved on every rank. W is scaled by
   -grn_damping (default 1).

   Stability. The predicted shift is the steady state of dx/dt = (W - I) x + u, which exists and attracts when the
   spectral radius rho(W) < 1. rho is the largest spectral radius of W on its strongly connected components (the
   cycles of the network), each from all its eigenvalues (dgeev; power iteration beyond 4000 genes). rho >= 1 is an
   input error that names rho and the damping that would bring it to 0.9; nothing is predicted from an unstable
   network.

   Inputs. An atom is a gene (priors: the atom's symbol, guides collapsed with -atom_collapse_guides):
   - a gene of the data: u = s e_g, s its own shift, the measured change of g in g's single-atom train groups of
     the context (else of the other contexts, averaged), else learned per perturbation type: the mean own shift
     of the measured genes perturbed alone in training with that type;
   - a TF of the prior that is not a measured gene but has targets among the genes: its level is not observed,
     so it enters through its signed prior edges: u = beta sigma (sigma_t = sign of TF -> t); beta is fitted to
     the measured single-atom shift delta as the least-squares scale of the response, beta = <delta, r> / <r, r>
     with r = (I - W)^{-1} sigma; unseen TFs get the mean beta of their perturbation type;
   - anything else is unknown to the prior: with -grn_unknown error (default) a test condition holding such an
     atom is an input error listing them; zero predicts no change from it; additive adds its mean measured
     shift as the additive baseline does (so the network is only used where the prior knows the atom).
   The type of a group is the -perturbation_type_key column (CRISPRa, CRISPRi); without it every context is its
   own type. With one type in the data (the Jurkat screen's CRISPR) an unseen atom's input is the mean over all
   seen atoms of its kind. When a type has no seen atom of the kind, the mean over all types is used; with none at
   all the atom has no input (as an unknown atom).

   Steady state. x_a = (I - W)^{-1} rhs_a for every atom with an input (rhs = e_g or sigma) is one LU of I - W,
   assembled as a ScaLAPACK block-cyclic matrix on all ranks (pdgetrf / pdgetrs, CsSparseLUSolve), so 2*10^4
   genes need 3.2 GB in all, not on one rank. A condition's shift is sum_a u_a x_a (combinations add their inputs,
   and the response is linear); a cell is predicted as its control cell plus the shift. Doses are ignored.
   Options: -grn_prior, -grn_ridge, -grn_damping, -grn_unknown, -grn_block_size, -grn_power_iterations,
   -grn_chunk_rows. */
#include "modelimpl.h"
#include <cellshift/linalg.h>
#include <cellshift/h5util.h>

typedef enum { GRN_UNKNOWN_ERROR, GRN_UNKNOWN_ZERO, GRN_UNKNOWN_ADDITIVE } GrnUnknown;
static const char *const GrnUnknowns[] = {"error", "zero", "additive", "GrnUnknown", "GRN_UNKNOWN_", NULL};

/* How an atom enters the network. */
enum { KIND_GENE = 0, KIND_TF = 1, KIND_NONE = 2 };
/* Where an atom's input scale in a context comes from. */
enum { FROM_CTX = 0, FROM_OTHER = 1, FROM_TYPE = 2, FROM_ALLTYPES = 3, FROM_NONE = 4 };

typedef struct {
  char         prior[64];  /* -grn_prior */
  PetscReal    ridge;      /* -grn_ridge */
  PetscReal    damping;    /* -grn_damping */
  GrnUnknown   unknown;    /* -grn_unknown */
  PetscInt     block;      /* -grn_block_size */
  PetscInt     power_its;  /* -grn_power_iterations */
  PetscInt     chunk;      /* -grn_chunk_rows */
  /* fitted */
  char         prior_name[64];
  PetscInt     ngenes, natoms, nctx, ntargets, ncol;
  int64_t     *wptr; /* [ngenes + 1] W by target rows */
  int32_t     *widx; /* [nnz] regulators */
  double      *wval; /* [nnz] */
  double       rho;
  PetscBool    rho_estimated; /* rho from power iteration (a component of more than 4000 genes) */
  PetscInt     cycle_genes;   /* genes of the largest strongly connected component of W */
  int         *kind; /* [natoms] */
  int         *col;  /* [natoms] column of resp, -1 without */
  double      *resp; /* [ncol x ngenes] (I - W)^{-1} rhs of each atom with an input */
  double      *u;    /* [nctx x natoms] input scale */
  int         *from; /* [nctx x natoms] */
  CsAtomShifts sh;   /* mean measured shifts of the atoms (-grn_unknown additive) */
  PetscBool    have_sh;
  double      *shift; /* [ngenes] work */
} Grn;

static PetscErrorCode GrnFree(Grn *gr)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree(gr->wptr));
  PetscCall(PetscFree(gr->widx));
  PetscCall(PetscFree(gr->wval));
  PetscCall(PetscFree(gr->kind));
  PetscCall(PetscFree(gr->col));
  PetscCall(PetscFree(gr->resp));
  PetscCall(PetscFree(gr->u));
  PetscCall(PetscFree(gr->from));
  PetscCall(PetscFree(gr->shift));
  PetscCall(CsAtomShiftsFree(&gr->sh));
  gr->have_sh = PETSC_FALSE;
  PetscFunctionReturn(0);
}

/* Per-atom and per-(context, atom) arrays; W and resp are allocated where their sizes are known. */
static PetscErrorCode GrnAllocAtoms(Grn *gr, PetscInt ngenes, PetscInt natoms, PetscInt nctx)
{
  PetscFunctionBeginUser;
  gr->ngenes = ngenes, gr->natoms = natoms, gr->nctx = nctx;
  PetscCall(PetscCalloc1(natoms + 1, &gr->kind));
  PetscCall(PetscMalloc1(natoms + 1, &gr->col));
  PetscCall(PetscCalloc1((size_t)nctx * natoms + 1, &gr->u));
  PetscCall(PetscCalloc1((size_t)nctx * natoms + 1, &gr->from));
  PetscCall(PetscCalloc1(ngenes, &gr->shift));
  for (PetscInt a = 0; a < natoms; a++) gr->col[a] = -1;
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelSetFromOptions_GRN(CsModel m, PetscOptionItems *PetscOptionsObject)
{
  Grn     *gr   = (Grn *)m->data;
  MPI_Comm comm = PetscObjectComm((PetscObject)m);

  PetscFunctionBeginUser;
  PetscCall(PetscOptionsString("-prior", "TF -> target prior: dorothea, trrust or dorothea+trrust", "grn", gr->prior, gr->prior, sizeof(gr->prior),
                               NULL));
  PetscCall(PetscOptionsReal("-ridge", "Ridge penalty of each target's regression (per cell)", "grn", gr->ridge, &gr->ridge, NULL));
  PetscCall(PetscOptionsReal("-damping", "Scale of W after the fit (in (0, 1]; brings the spectral radius down)", "grn", gr->damping,
                             &gr->damping, NULL));
  PetscCall(PetscOptionsEnum("-unknown", "Atoms the prior does not know: error, zero (no change) or additive (their mean shift)", "grn",
                             GrnUnknowns, (PetscEnum)gr->unknown, (PetscEnum *)&gr->unknown, NULL));
  PetscCall(PetscOptionsInt("-block_size", "Block of the block-cyclic I - W", "grn", gr->block, &gr->block, NULL));
  PetscCall(PetscOptionsInt("-power_iterations", "Power iterations for the spectral radius of a cycle component of more than 4000 genes", "grn",
                            gr->power_its, &gr->power_its, NULL));
  PetscCall(PetscOptionsInt("-chunk_rows", "Cells densified at a time for the normal equations", "grn", gr->chunk, &gr->chunk, NULL));
  PetscCheck(gr->ridge >= 0, comm, CS_ERR_INPUT, "-grn_ridge must be non-negative, not %g", (double)gr->ridge);
  PetscCheck(gr->damping > 0 && gr->damping <= 1, comm, CS_ERR_INPUT, "-grn_damping must be in (0, 1], not %g", (double)gr->damping);
  PetscCheck(gr->block >= 1 && gr->power_its >= 10 && gr->chunk >= 1, comm, CS_ERR_INPUT,
             "-grn_block_size and -grn_chunk_rows must be positive, -grn_power_iterations at least 10");
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------------------------------------------------
   The network. */

/* The measured genes each condition perturbs: cg[cgptr[c] .. cgptr[c + 1]). */
static PetscErrorCode ConditionGenes(CsDesign d, const PetscInt *agene, PetscInt **cgptr, PetscInt **cg)
{
  PetscInt n = 0;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(d->ncond + 1, cgptr));
  for (PetscInt c = 0; c < d->ncond; c++) n += d->conds[c].natoms;
  PetscCall(PetscMalloc1(n + 1, cg));
  (*cgptr)[0] = 0;
  for (PetscInt c = 0, k = 0; c < d->ncond; c++) {
    for (PetscInt i = 0; i < d->conds[c].natoms; i++)
      if (agene[d->conds[c].atoms[i]] >= 0) (*cg)[k++] = agene[d->conds[c].atoms[i]];
    (*cgptr)[c + 1] = k;
  }
  PetscFunctionReturn(0);
}

/* The normal equations of every target with regulators, summed over ranks into buf: for target t (row of A, its
   regulators R in A's columns, d = |R|) at off[t]: the d x d Gram matrix, the d right-hand sides and the count. */
static PetscErrorCode NormalEquations(CsModel m, const Grn *gr, const CsCSR *A, const int64_t *off, const double *ctxmean, const PetscInt *cgptr,
                                      const PetscInt *cg, double *buf)
{
  CsDataset ds = m->ds;
  CsDesign  d  = m->design;
  PetscInt  G = ds->ngenes, chunk = PetscMax(1, PetscMin(gr->chunk, ds->nlocal)), nr = 0, *rowcond;
  double   *D, *xr;
  int64_t   total = off[G];

  PetscFunctionBeginUser;
  PetscCall(PetscArrayzero(buf, total));
  PetscCall(PetscMalloc3((size_t)chunk * G, &D, chunk, &rowcond, G + 1, &xr));
  for (PetscInt i = 0; i <= ds->nlocal; i++) {
    PetscBool last = (PetscBool)(i == ds->nlocal);
    PetscInt  g    = last ? -1 : d->cell_group[i];
    if (g >= 0 && m->split->role[g] == CS_ROLE_TRAIN) {
      const double *mu  = ctxmean + (size_t)d->groups[g].ctx * G;
      double       *row = D + (size_t)nr * G;
      for (PetscInt j = 0; j < G; j++) row[j] = -mu[j];
      for (int64_t e = ds->X.indptr[i]; e < ds->X.indptr[i + 1]; e++) row[ds->X.indices[e]] += ds->X.data[e];
      rowcond[nr++] = d->groups[g].cond;
    }
    if (!nr || (nr < chunk && !last)) continue;
    for (PetscInt t = 0; t < G; t++) {
      int64_t        r0 = A->indptr[t];
      PetscInt       dt = (PetscInt)(A->indptr[t + 1] - r0);
      const int32_t *R  = A->indices + r0;
      double        *gram = buf + off[t], *rhs = gram + dt * dt, *cnt = rhs + dt;
      if (!dt) continue;
      for (PetscInt r = 0; r < nr; r++) {
        const double *x    = D + (size_t)r * G;
        PetscBool     skip = PETSC_FALSE;
        for (PetscInt k = cgptr[rowcond[r]]; k < cgptr[rowcond[r] + 1]; k++) skip = (PetscBool)(skip || cg[k] == t);
        if (skip) continue; /* t itself is perturbed in this cell */
        for (PetscInt p = 0; p < dt; p++) xr[p] = x[R[p]];
        for (PetscInt p = 0; p < dt; p++) {
          for (PetscInt q = 0; q < dt; q++) gram[p * dt + q] += xr[p] * xr[q];
          rhs[p] += xr[p] * x[t];
        }
        cnt[0] += 1;
      }
    }
    nr = 0;
  }
  PetscCall(PetscFree3(D, rowcond, xr));
  PetscCheck(total < PETSC_MPI_INT_MAX, PetscObjectComm((PetscObject)m), PETSC_ERR_SUP, "grn: %lld normal-equation entries exceed one reduction",
             (long long)total);
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, buf, (PetscMPIInt)total, MPI_DOUBLE, MPI_SUM, PetscObjectComm((PetscObject)m)));
  PetscFunctionReturn(0);
}

/* W from the prior pattern A (by target) and the training cells. */
static PetscErrorCode FitW(CsModel m, Grn *gr, const CsCSR *A, const PetscInt *agene)
{
  MPI_Comm       comm = PetscObjectComm((PetscObject)m);
  CsDataset      ds   = m->ds;
  CsDesign       d    = m->design;
  PetscInt       G = ds->ngenes, *slot, *cgptr, *cg;
  int64_t       *off;
  double        *ctxmean, *buf;
  PetscErrorCode ierr = 0;

  PetscFunctionBeginUser;
  /* The mean of the training cells of every context (the exact group mean of cellshift). */
  PetscCall(PetscMalloc1(ds->nlocal + 1, &slot));
  for (PetscInt i = 0; i < ds->nlocal; i++) {
    PetscInt g = d->cell_group[i];
    slot[i]    = g >= 0 && m->split->role[g] == CS_ROLE_TRAIN ? d->groups[g].ctx : -1;
  }
  PetscCall(PetscMalloc1((size_t)d->nctx * G, &ctxmean));
  PetscCall(CsCSRGroupStats(comm, &ds->X, d->nctx, slot, NULL, ctxmean, NULL));
  PetscCall(PetscFree(slot));

  PetscCall(PetscMalloc1(G + 1, &off));
  off[0] = 0;
  for (PetscInt t = 0; t < G; t++) {
    int64_t dt = A->indptr[t + 1] - A->indptr[t];
    off[t + 1] = off[t] + (dt ? dt * dt + dt + 1 : 0);
  }
  PetscCall(PetscMalloc1(off[G] + 1, &buf));
  PetscCall(ConditionGenes(d, agene, &cgptr, &cg));
  PetscCall(NormalEquations(m, gr, A, off, ctxmean, cgptr, cg, buf));
  PetscCall(PetscFree(cgptr));
  PetscCall(PetscFree(cg));
  PetscCall(PetscFree(ctxmean));

  /* Each target's system, on every rank (they are small and replicated, so every rank fails alike). */
  PetscCall(PetscMalloc1(G + 1, &gr->wptr));
  PetscCall(PetscMalloc1(A->indptr[G] + 1, &gr->widx));
  PetscCall(PetscCalloc1(A->indptr[G] + 1, &gr->wval));
  PetscCall(PetscArraycpy(gr->wptr, A->indptr, G + 1));
  PetscCall(PetscArraycpy(gr->widx, A->indices, A->indptr[G]));
  gr->ntargets = 0;
  PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
  for (PetscInt t = 0; t < G && !ierr; t++) {
    PetscInt dt = (PetscInt)(A->indptr[t + 1] - A->indptr[t]);
    double  *gram = buf + off[t], *rhs = gram + dt * dt, n = dt ? rhs[dt] : 0;
    if (!dt || n < 1) continue;
    for (PetscInt p = 0; p < dt; p++) {
      for (PetscInt q = 0; q < dt; q++) gram[p * dt + q] /= n;
      gram[p * dt + p] += gr->ridge;
      rhs[p] /= n;
    }
    ierr = CsSolveSPD(dt, gram, 1, rhs);
    for (PetscInt p = 0; !ierr && p < dt; p++) gr->wval[A->indptr[t] + p] = gr->damping * rhs[p];
    gr->ntargets++;
  }
  PetscCall(PetscPopErrorHandler());
  CsCheckAll(comm, !ierr, "grn: a target's regulators are collinear over the training cells; use a positive -grn_ridge");
  PetscCall(PetscFree(buf));
  PetscCall(PetscFree(off));
  PetscFunctionReturn(0);
}

/* Strongly connected components of the graph of W (edge t -> r for every W[t, r] != 0 pattern entry), by an
   iterative Tarjan: comp[G], *ncomp. Only a component with a cycle can make rho(W) non-zero. */
static PetscErrorCode Components(PetscInt G, const int64_t *ptr, const int32_t *idx, PetscInt *comp, PetscInt *ncomp)
{
  PetscInt *index, *low, *stack, *call, sp = 0, cp = 0, counter = 0;
  int64_t  *pos;
  PetscBool *on;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc5(G, &index, G, &low, G, &stack, G, &call, G, &pos));
  PetscCall(PetscCalloc1(G, &on));
  for (PetscInt v = 0; v < G; v++) index[v] = -1, comp[v] = -1;
  *ncomp = 0;
  for (PetscInt root = 0; root < G; root++) {
    if (index[root] >= 0) continue;
    call[cp++] = root, pos[root] = ptr[root], index[root] = low[root] = counter++, stack[sp++] = root, on[root] = PETSC_TRUE;
    while (cp) {
      PetscInt v = call[cp - 1];
      if (pos[v] < ptr[v + 1]) {
        PetscInt w = idx[pos[v]++];
        if (index[w] < 0) {
          call[cp++] = w, pos[w] = ptr[w], index[w] = low[w] = counter++, stack[sp++] = w, on[w] = PETSC_TRUE;
        } else if (on[w]) low[v] = PetscMin(low[v], index[w]);
        continue;
      }
      if (low[v] == index[v]) { /* v roots a component: pop it */
        PetscInt w;
        do {
          w = stack[--sp], on[w] = PETSC_FALSE, comp[w] = *ncomp;
        } while (w != v);
        (*ncomp)++;
      }
      cp--;
      if (cp) low[call[cp - 1]] = PetscMin(low[call[cp - 1]], low[v]);
    }
  }
  PetscCall(PetscFree5(index, low, stack, call, pos));
  PetscCall(PetscFree(on));
  PetscFunctionReturn(0);
}

/* rho of the block S[n x n] (column-major, destroyed) by power iteration: the mean growth of log |S^k v| over the
   second half of the iterations (Gelfand's formula; it needs no real dominant eigenvalue, but converges slowly
   when several eigenvalues share the largest modulus). */
static double PowerRadius(PetscInt n, const double *S, PetscInt K, double *v, double *w)
{
  double sum = 0;
  PetscInt nsum = 0;
  for (PetscInt i = 0; i < n; i++) v[i] = (1.0 + 0.5 * sin(1.0 + (double)i)) / sqrt((double)n);
  for (PetscInt k = 0; k < K; k++) {
    double nrm = 0;
    for (PetscInt i = 0; i < n; i++) w[i] = 0;
    for (PetscInt j = 0; j < n; j++)
      for (PetscInt i = 0; i < n; i++) w[i] += S[(size_t)j * n + i] * v[j];
    for (PetscInt i = 0; i < n; i++) nrm += w[i] * w[i];
    nrm = sqrt(nrm);
    if (nrm == 0) return 0;
    for (PetscInt i = 0; i < n; i++) v[i] = w[i] / nrm;
    if (k >= K / 2) sum += log(nrm), nsum++;
  }
  return exp(sum / (double)nsum);
}

/* rho(W) = the largest rho of W restricted to a strongly connected component (the eigenvalues of a matrix are
   those of its diagonal blocks in the components' order). A regulatory network's cycles sit in a small core of
   TFs, so each component's block is dense and its eigenvalues are computed exactly (dgeev); a component of more
   than 4000 genes is estimated by power iteration (-grn_power_iterations). Replicated: every rank gets the same. */
static PetscErrorCode SpectralRadius(Grn *gr)
{
  PetscInt G = gr->ngenes, ncomp, *comp, *size, *local;
  double  *S, *v, *w;

  PetscFunctionBeginUser;
  gr->rho = 0, gr->rho_estimated = PETSC_FALSE;
  PetscCall(PetscMalloc3(G, &comp, G + 1, &size, G, &local));
  PetscCall(Components(G, gr->wptr, gr->widx, comp, &ncomp));
  PetscCall(PetscArrayzero(size, ncomp + 1));
  for (PetscInt t = 0; t < G; t++) local[t] = size[comp[t]]++;
  for (PetscInt c = 0; c < ncomp; c++) {
    PetscInt n = size[c];
    double   rho = 0;
    if (n < 2) continue; /* W has no self-loops: a single gene is no cycle */
    PetscCall(PetscCalloc1((size_t)n * n, &S));
    for (PetscInt t = 0; t < G; t++) {
      if (comp[t] != c) continue;
      for (int64_t e = gr->wptr[t]; e < gr->wptr[t + 1]; e++)
        if (comp[gr->widx[e]] == c) S[(size_t)local[gr->widx[e]] * n + local[t]] += gr->wval[e];
    }
    if (n <= 4000) PetscCall(CsSpectralRadius(n, S, &rho));
    else {
      PetscCall(PetscMalloc2(n, &v, n, &w));
      rho = PowerRadius(n, S, gr->power_its, v, w);
      PetscCall(PetscFree2(v, w));
      gr->rho_estimated = PETSC_TRUE;
    }
    PetscCall(PetscFree(S));
    gr->rho = PetscMax(gr->rho, rho);
    gr->cycle_genes = PetscMax(gr->cycle_genes, n);
  }
  PetscCall(PetscFree3(comp, size, local));
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------------------------------------------------
   Atoms. */

/* The edges of node n in g (sorted by source): [*e0, *e1). */
static void EdgeRange(const CsPriorGraph *g, PetscInt n, PetscInt *e0, PetscInt *e1)
{
  PetscInt lo = 0, hi = g->nedges;
  while (lo < hi) {
    PetscInt mid = lo + (hi - lo) / 2;
    if (g->src[mid] < n) lo = mid + 1;
    else hi = mid;
  }
  *e0 = *e1 = lo;
  while (*e1 < g->nedges && g->src[*e1] == n) (*e1)++;
}

/* Kinds, and the right-hand sides of the steady state (columns of B, n x ncol column-major): e_g for a measured
   gene, the signed targets of a TF (when two nodes map to one gene, the first edge's sign). */
static PetscErrorCode AtomRHS(Grn *gr, const CsPriorGraph *g, const PetscInt *agene, const PetscInt *node, const PetscInt *node_gene, double **B)
{
  PetscInt G = gr->ngenes, A = gr->natoms, e0 = 0, e1 = 0;

  PetscFunctionBeginUser;
  gr->ncol = 0;
  for (PetscInt a = 0; a < A; a++) {
    PetscBool targets = PETSC_FALSE;
    if (agene[a] < 0 && node[a] >= 0) {
      EdgeRange(g, node[a], &e0, &e1);
      for (PetscInt e = e0; e < e1; e++) targets = (PetscBool)(targets || (node_gene[g->dst[e]] >= 0 && g->weight[e] != 0));
    }
    gr->kind[a] = agene[a] >= 0 ? KIND_GENE : targets ? KIND_TF : KIND_NONE;
    if (gr->kind[a] != KIND_NONE) gr->col[a] = (int)gr->ncol++;
  }
  PetscCall(PetscCalloc1((size_t)G * gr->ncol + 1, B));
  for (PetscInt a = 0; a < A; a++) {
    double *b;
    if (gr->kind[a] == KIND_NONE) continue;
    b = *B + (size_t)gr->col[a] * G;
    if (gr->kind[a] == KIND_GENE) {
      b[agene[a]] = 1;
      continue;
    }
    EdgeRange(g, node[a], &e0, &e1);
    for (PetscInt e = e0; e < e1; e++) {
      PetscInt t = node_gene[g->dst[e]];
      if (t >= 0 && b[t] == 0) b[t] = g->weight[e];
    }
  }
  PetscFunctionReturn(0);
}

/* The type of atom a in context c (see the comment at the top): group types, else the context. */
static PetscErrorCode AtomTypes(CsModel m, PetscInt *ntypes, PetscInt *type)
{
  CsDesign d = m->design;
  PetscInt A = d->natoms, C = d->nctx, T, *gtype;
  char   **names = NULL;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(d->ngroups + 1, &gtype));
  PetscCall(CsDesignGroupTypes(d, m->ds, &T, &names, gtype));
  PetscCall(CsStrArrayDestroy(T, &names));
  for (PetscInt c = 0; c < C; c++)
    for (PetscInt a = 0; a < A; a++) {
      PetscInt best = -1, rank = 3; /* 0 single in c, 1 any group in c, 2 any group */
      if (!T) {
        type[c * A + a] = c;
        continue;
      }
      for (PetscInt g = 0; g < d->ngroups && rank > 0; g++) {
        const CsCondition *k = &d->conds[d->groups[g].cond];
        PetscBool          has = PETSC_FALSE;
        PetscInt           r;
        for (PetscInt i = 0; i < k->natoms; i++) has = (PetscBool)(has || k->atoms[i] == a);
        if (!has || gtype[g] < 0) continue;
        r = d->groups[g].ctx != c ? 2 : k->natoms == 1 ? 0 : 1;
        if (r < rank) rank = r, best = gtype[g];
      }
      type[c * A + a] = best;
    }
  *ntypes = T ? T : C;
  PetscCall(PetscFree(gtype));
  PetscFunctionReturn(0);
}

/* The scale of atom a's input from a measured shift delta[ngenes]. */
static double ScaleFromShift(const Grn *gr, PetscInt a, const PetscInt *agene, const double *delta)
{
  const double *r = gr->resp + (size_t)gr->col[a] * gr->ngenes;
  double        rd = 0, rr = 0;
  if (gr->kind[a] == KIND_GENE) return delta[agene[a]];
  for (PetscInt j = 0; j < gr->ngenes; j++) rd += r[j] * delta[j], rr += r[j] * r[j];
  return rr > 0 ? rd / rr : 0;
}

/* u and from for every (context, atom). */
static PetscErrorCode InputScales(CsModel m, Grn *gr, const PetscInt *agene)
{
  PetscInt      A = gr->natoms, C = gr->nctx, G = gr->ngenes, T = 0, *type;
  double       *sum, *all;
  PetscInt     *cnt, *nall;
  CsAtomShifts *sh = &gr->sh;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1((size_t)C * A + 1, &type));
  PetscCall(AtomTypes(m, &T, type));
  PetscCall(PetscCalloc4(2 * T + 1, &sum, 2 * T + 1, &cnt, 2, &all, 2, &nall));
  /* Seen (context, atom) pairs: their own scale, and the sums of the type means. */
  for (PetscInt c = 0; c < C; c++)
    for (PetscInt a = 0; a < A; a++) {
      PetscInt k = gr->kind[a], t = type[c * A + a];
      if (k == KIND_NONE || !sh->seen[c * A + a]) continue;
      gr->u[c * A + a]    = ScaleFromShift(gr, a, agene, sh->ctxdelta + ((size_t)c * A + a) * G);
      gr->from[c * A + a] = FROM_CTX;
      if (t >= 0) sum[k * T + t] += gr->u[c * A + a], cnt[k * T + t]++;
      all[k] += gr->u[c * A + a], nall[k]++;
    }
  for (PetscInt c = 0; c < C; c++)
    for (PetscInt a = 0; a < A; a++) {
      PetscInt k = gr->kind[a], t = type[c * A + a], i = c * A + a;
      if (k == KIND_NONE) gr->from[i] = FROM_NONE;
      else if (sh->seen[i]) continue;
      else if (sh->anyseen[a]) gr->u[i] = ScaleFromShift(gr, a, agene, sh->delta + (size_t)a * G), gr->from[i] = FROM_OTHER;
      else if (t >= 0 && cnt[k * T + t]) gr->u[i] = sum[k * T + t] / cnt[k * T + t], gr->from[i] = FROM_TYPE;
      else if (nall[k]) gr->u[i] = all[k] / nall[k], gr->from[i] = FROM_ALLTYPES;
      else gr->from[i] = FROM_NONE;
    }
  PetscCall(PetscFree4(sum, cnt, all, nall));
  PetscCall(PetscFree(type));
  PetscFunctionReturn(0);
}

/* "A, B, C" of the atoms flagged. */
static PetscErrorCode AtomNames(CsDesign d, const PetscBool *flag, char buf[], size_t len)
{
  PetscInt n = 0;

  PetscFunctionBeginUser;
  buf[0] = 0;
  for (PetscInt a = 0; a < d->natoms; a++) {
    if (!flag[a]) continue;
    if (n++) PetscCall(PetscStrlcat(buf, ", ", len));
    PetscCall(PetscStrlcat(buf, d->atoms[a], len));
  }
  PetscFunctionReturn(0);
}

/* The atoms of test conditions without an input: an error by default (never a silent zero), else reported. */
static PetscErrorCode CheckTestAtoms(CsModel m, Grn *gr)
{
  MPI_Comm   comm = PetscObjectComm((PetscObject)m);
  CsDesign   d    = m->design;
  PetscBool *none;
  PetscInt   n = 0;
  char       list[CS_MSG_LEN / 2];

  PetscFunctionBeginUser;
  PetscCall(PetscCalloc1(d->natoms + 1, &none));
  for (PetscInt g = 0; g < d->ngroups; g++) {
    const CsCondition *k = &d->conds[d->groups[g].cond];
    if (m->split->role[g] != CS_ROLE_TEST) continue;
    for (PetscInt i = 0; i < k->natoms; i++)
      if (gr->from[d->groups[g].ctx * d->natoms + k->atoms[i]] == FROM_NONE && !none[k->atoms[i]]) none[k->atoms[i]] = PETSC_TRUE, n++;
  }
  PetscCall(AtomNames(d, none, list, sizeof(list)));
  PetscCall(PetscFree(none));
  CsCheckAll(comm, !n || gr->unknown != GRN_UNKNOWN_ERROR,
             "grn: %" PetscInt_FMT " atoms of test conditions have no input from the prior %s (neither a gene of the data nor a TF with "
             "a target among its genes): %s; use another -grn_prior, or -grn_unknown zero or additive",
             n, gr->prior_name, list);
  if (n)
    PetscCall(PetscPrintf(comm, "grn: %" PetscInt_FMT " atoms of test conditions are unknown to the prior (-grn_unknown %s: %s): %s\n", n,
                          GrnUnknowns[gr->unknown], gr->unknown == GRN_UNKNOWN_ZERO ? "no change predicted from them" : "their mean measured shift is added",
                          list));
  PetscFunctionReturn(0);
}

static PetscErrorCode Summary(CsModel m, Grn *gr, PetscViewer v)
{
  PetscInt nk[3] = {0, 0, 0}, nf[5] = {0, 0, 0, 0, 0};

  PetscFunctionBeginUser;
  for (PetscInt a = 0; a < gr->natoms; a++) nk[gr->kind[a]]++;
  for (PetscInt i = 0; i < gr->nctx * gr->natoms; i++) nf[gr->from[i]]++;
  PetscCall(PetscViewerASCIIPrintf(v,
                                   "grn: prior %s, W: %lld edges on %" PetscInt_FMT " targets of %" PetscInt_FMT " genes, ridge %g, damping %g, "
                                   "spectral radius %.4g (%s; largest cycle component %" PetscInt_FMT " genes)\n",
                                   gr->prior_name, (long long)gr->wptr[gr->ngenes], gr->ntargets, gr->ngenes, (double)gr->ridge, (double)gr->damping,
                                   gr->rho, gr->rho_estimated ? "power iteration" : "exact", gr->cycle_genes));
  PetscCall(PetscViewerASCIIPrintf(v,
                                   "grn: atoms: %" PetscInt_FMT " measured genes, %" PetscInt_FMT " TFs through their targets, %" PetscInt_FMT
                                   " unknown; inputs (context x atom): %" PetscInt_FMT " measured there, %" PetscInt_FMT " in other contexts, %" PetscInt_FMT
                                   " from the type mean, %" PetscInt_FMT " from the mean over types, %" PetscInt_FMT " none\n",
                                   nk[0], nk[1], nk[2], nf[0], nf[1], nf[2], nf[3], nf[4]));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelFit_GRN(CsModel m)
{
  Grn                *gr   = (Grn *)m->data;
  MPI_Comm            comm = PetscObjectComm((PetscObject)m);
  CsDataset           ds   = m->ds;
  CsDesign            d    = m->design;
  PetscInt            G = ds->ngenes, *node, *node_gene;
  const PetscInt     *agene;
  CsPriors            pr;
  CsGeneIndex         idx;
  const CsPriorGraph *g;
  CsCSR               A;
  double             *B, *negw;
  PetscViewer         v = PETSC_VIEWER_STDOUT_(comm);

  PetscFunctionBeginUser;
  PetscCall(GrnFree(gr));
  PetscCall(GrnAllocAtoms(gr, G, d->natoms, d->nctx));
  PetscCall(CsModelPriorsCreate(m, &pr));
  PetscCall(CsPriorsGetRegulons(pr, gr->prior, &g));
  PetscCall(PetscStrncpy(gr->prior_name, g->name, sizeof(gr->prior_name)));
  PetscCall(CsPriorsViewCoverage(pr, g, v));
  PetscCall(CsPriorsGetGeneIndex(pr, &idx));
  PetscCall(CsPriorsGetAtomGenes(pr, NULL, NULL, &agene));
  PetscCall(PetscMalloc2(g->nnodes + 1, &node_gene, d->natoms + 1, &node));
  PetscCall(CsPriorGraphOnGenes(g, idx, PETSC_TRUE, PETSC_FALSE, &A, node_gene));
  PetscCall(CsPriorsGetAtomNodes(pr, g, node));

  PetscCall(FitW(m, gr, &A, agene));
  PetscCall(CsCSRFree(&A));
  PetscCall(SpectralRadius(gr));
  CsCheckAll(comm, gr->rho < 1,
             "grn: the fitted network is not stable: spectral radius of W %.4g >= 1 (prior %s, ridge %g, damping %g), so dx/dt = (W - I) x + u "
             "has no attracting steady state; use -grn_damping %.3g (rho 0.9) or a larger -grn_ridge",
             gr->rho, gr->prior_name, (double)gr->ridge, (double)gr->damping, (double)gr->damping * 0.9 / gr->rho);

  /* Steady-state responses of every atom's right-hand side: one LU of I - W. */
  PetscCall(AtomRHS(gr, g, agene, node, node_gene, &B));
  PetscCall(PetscMalloc1(gr->wptr[G] + 1, &negw));
  for (int64_t e = 0; e < gr->wptr[G]; e++) negw[e] = -gr->wval[e];
  if (gr->ncol) PetscCall(CsSparseLUSolve(comm, G, 1.0, gr->wptr, gr->widx, negw, gr->ncol, B, gr->block, NULL));
  PetscCall(PetscFree(negw));
  gr->resp = B;

  PetscCall(CsAtomShiftsCompute(ds, d, m->split, PETSC_FALSE, &gr->sh));
  gr->have_sh = PETSC_TRUE;
  PetscCall(InputScales(m, gr, agene));
  PetscCall(Summary(m, gr, v));
  PetscCall(CheckTestAtoms(m, gr));
  if (gr->unknown != GRN_UNKNOWN_ADDITIVE) {
    PetscCall(CsAtomShiftsFree(&gr->sh));
    gr->have_sh = PETSC_FALSE;
  }
  PetscCall(PetscFree2(node_gene, node));
  PetscCall(CsPriorsDestroy(&pr));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelPredict_GRN(CsModel m, const CsCondition *cond, PetscInt ctx, const CsCSR *ctrl, float *out)
{
  Grn     *gr = (Grn *)m->data;
  PetscInt G = gr->ngenes, A = gr->natoms;

  PetscFunctionBeginUser;
  PetscCheck(ctrl->ncols == G, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ, "grn: %" PetscInt_FMT " genes, fitted with %" PetscInt_FMT, ctrl->ncols, G);
  PetscCall(PetscArrayzero(gr->shift, G));
  for (PetscInt i = 0; i < cond->natoms; i++) {
    PetscInt a = cond->atoms[i], f = gr->from[ctx * A + a];
    if (f != FROM_NONE) {
      const double *r = gr->resp + (size_t)gr->col[a] * G;
      double        s = gr->u[ctx * A + a];
      for (PetscInt j = 0; j < G; j++) gr->shift[j] += s * r[j];
      continue;
    }
    PetscCheck(gr->unknown != GRN_UNKNOWN_ERROR, PETSC_COMM_SELF, CS_ERR_INPUT,
               "grn: atom '%s' has no input from the prior %s (use -grn_unknown zero or additive)", m->design->atoms[a], gr->prior_name);
    if (gr->unknown == GRN_UNKNOWN_ADDITIVE) {
      const double *src = gr->sh.seen[ctx * A + a] ? gr->sh.ctxdelta + ((size_t)ctx * A + a) * G : gr->sh.anyseen[a] ? gr->sh.delta + (size_t)a * G : NULL;
      for (PetscInt j = 0; src && j < G; j++) gr->shift[j] += src[j];
    }
  }
  for (PetscInt i = 0; i < ctrl->nrows; i++) {
    float *row = out + (size_t)i * G;
    CsCSRRowToDense(ctrl, i, row);
    for (PetscInt j = 0; j < G; j++) row[j] = (float)(row[j] + gr->shift[j]);
  }
  PetscFunctionReturn(0);
}

/* model.h5 params: W_indptr [ngenes + 1], W_indices [nnz], W_values [nnz] (W by target rows), rho [1], ridge [1],
   damping [1], kind [natoms] (0 measured gene, 1 TF through its targets, 2 unknown), column [natoms] (-1: none),
   response [ncol x ngenes] ((I - W)^{-1} rhs of each atom with an input), u and from [nctx x natoms]; with
   -grn_unknown additive the atom shifts (shift_*). Attributes: prior, unknown, ntargets, cycle_genes, rho_estimated. */
static PetscErrorCode CsModelSave_GRN(CsModel m, hid_t g)
{
  Grn     *gr = (Grn *)m->data;
  PetscInt G = gr->ngenes, A = gr->natoms, C = gr->nctx;
  hsize_t  dp[1] = {(hsize_t)G + 1}, dn[1] = {(hsize_t)gr->wptr[G]}, d1[1] = {1}, da[1] = {(hsize_t)A}, dr[2] = {(hsize_t)gr->ncol, (hsize_t)G};
  hsize_t  dca[2] = {(hsize_t)C, (hsize_t)A};
  double   ridge = (double)gr->ridge, damping = (double)gr->damping;

  PetscFunctionBeginUser;
  if (g < 0) PetscFunctionReturn(0); /* replicated state: rank 0 writes it */
  PetscCall(CsH5WriteArray(g, "W_indptr", H5T_NATIVE_INT64, 1, dp, gr->wptr));
  PetscCall(CsH5WriteArray(g, "W_indices", H5T_NATIVE_INT32, 1, dn, gr->widx));
  PetscCall(CsH5WriteArray(g, "W_values", H5T_NATIVE_DOUBLE, 1, dn, gr->wval));
  PetscCall(CsH5WriteArray(g, "rho", H5T_NATIVE_DOUBLE, 1, d1, &gr->rho));
  PetscCall(CsH5WriteArray(g, "ridge", H5T_NATIVE_DOUBLE, 1, d1, &ridge));
  PetscCall(CsH5WriteArray(g, "damping", H5T_NATIVE_DOUBLE, 1, d1, &damping));
  PetscCall(CsH5WriteArray(g, "kind", H5T_NATIVE_INT, 1, da, gr->kind));
  PetscCall(CsH5WriteArray(g, "column", H5T_NATIVE_INT, 1, da, gr->col));
  PetscCall(CsH5WriteArray(g, "response", H5T_NATIVE_DOUBLE, 2, dr, gr->resp));
  PetscCall(CsH5WriteArray(g, "u", H5T_NATIVE_DOUBLE, 2, dca, gr->u));
  PetscCall(CsH5WriteArray(g, "from", H5T_NATIVE_INT, 2, dca, gr->from));
  if (gr->have_sh) PetscCall(CsAtomShiftsSave(&gr->sh, g));
  PetscCall(CsH5WriteAttrString(g, "prior", gr->prior_name));
  PetscCall(CsH5WriteAttrInt64(g, "unknown", (int64_t)gr->unknown));
  PetscCall(CsH5WriteAttrInt64(g, "ntargets", gr->ntargets));
  PetscCall(CsH5WriteAttrInt64(g, "cycle_genes", gr->cycle_genes));
  PetscCall(CsH5WriteAttrInt64(g, "rho_estimated", gr->rho_estimated));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelLoad_GRN(CsModel m, hid_t g)
{
  Grn      *gr = (Grn *)m->data;
  PetscInt  G = m->ds->ngenes, A = m->design->natoms, C = m->design->nctx;
  hsize_t   dp[1] = {(hsize_t)G + 1}, dn[1] = {0}, d1[1] = {1}, da[1] = {(hsize_t)A}, dr[2] = {0, (hsize_t)G}, dca[2] = {(hsize_t)C, (hsize_t)A};
  double    ridge, damping;
  int64_t   unknown, ntargets, cycle, estimated;
  PetscBool found;

  PetscFunctionBeginUser;
  PetscCall(GrnFree(gr));
  PetscCall(GrnAllocAtoms(gr, G, A, C));
  PetscCall(PetscMalloc1(G + 1, &gr->wptr));
  PetscCall(CsH5ReadArray(g, "model", "W_indptr", H5T_NATIVE_INT64, 1, dp, gr->wptr));
  PetscCall(CsH5ReadArray(g, "model", "W_values", H5T_NATIVE_DOUBLE, 1, dn, NULL));
  PetscCheck((int64_t)dn[0] == gr->wptr[G], PETSC_COMM_SELF, CS_ERR_INPUT, "model: W has %llu values, its rows %lld", (unsigned long long)dn[0],
             (long long)gr->wptr[G]);
  PetscCall(PetscMalloc1(dn[0] + 1, &gr->widx));
  PetscCall(PetscMalloc1(dn[0] + 1, &gr->wval));
  if (dn[0]) {
    PetscCall(CsH5ReadArray(g, "model", "W_indices", H5T_NATIVE_INT32, 1, dn, gr->widx));
    PetscCall(CsH5ReadArrayFinite(g, "model", "W_values", H5T_NATIVE_DOUBLE, 1, dn, gr->wval));
  }
  PetscCall(CsH5ReadArrayFinite(g, "model", "rho", H5T_NATIVE_DOUBLE, 1, d1, &gr->rho));
  PetscCall(CsH5ReadArrayFinite(g, "model", "ridge", H5T_NATIVE_DOUBLE, 1, d1, &ridge));
  PetscCall(CsH5ReadArrayFinite(g, "model", "damping", H5T_NATIVE_DOUBLE, 1, d1, &damping));
  PetscCall(CsH5ReadArray(g, "model", "kind", H5T_NATIVE_INT, 1, da, gr->kind));
  PetscCall(CsH5ReadArray(g, "model", "column", H5T_NATIVE_INT, 1, da, gr->col));
  PetscCall(CsH5ReadArray(g, "model", "response", H5T_NATIVE_DOUBLE, 2, dr, NULL));
  gr->ncol = (PetscInt)dr[0];
  PetscCall(PetscMalloc1((size_t)gr->ncol * G + 1, &gr->resp));
  if (gr->ncol) PetscCall(CsH5ReadArrayFinite(g, "model", "response", H5T_NATIVE_DOUBLE, 2, dr, gr->resp));
  PetscCall(CsH5ReadArrayFinite(g, "model", "u", H5T_NATIVE_DOUBLE, 2, dca, gr->u));
  PetscCall(CsH5ReadArray(g, "model", "from", H5T_NATIVE_INT, 2, dca, gr->from));
  for (PetscInt a = 0; a < A; a++)
    PetscCheck(gr->kind[a] >= 0 && gr->kind[a] <= KIND_NONE && gr->col[a] >= -1 && gr->col[a] < gr->ncol, PETSC_COMM_SELF, CS_ERR_INPUT,
               "model: atom %" PetscInt_FMT " has kind %d and column %d of %" PetscInt_FMT, a, gr->kind[a], gr->col[a], gr->ncol);
  for (PetscInt i = 0; i < C * A; i++)
    PetscCheck(gr->from[i] >= FROM_CTX && gr->from[i] <= FROM_NONE && (gr->from[i] == FROM_NONE || gr->col[i % A] >= 0), PETSC_COMM_SELF, CS_ERR_INPUT,
               "model: the input of (context %" PetscInt_FMT ", atom %" PetscInt_FMT ") is inconsistent", i / A, i % A);
  PetscCall(CsH5ReadAttrString(g, "prior", gr->prior_name, sizeof(gr->prior_name), &found));
  PetscCall(CsH5ReadAttrInt64(g, "unknown", &unknown));
  PetscCall(CsH5ReadAttrInt64(g, "ntargets", &ntargets));
  PetscCall(CsH5ReadAttrInt64(g, "cycle_genes", &cycle));
  PetscCall(CsH5ReadAttrInt64(g, "rho_estimated", &estimated));
  gr->cycle_genes = (PetscInt)cycle, gr->rho_estimated = estimated ? PETSC_TRUE : PETSC_FALSE;
  PetscCheck(unknown >= GRN_UNKNOWN_ERROR && unknown <= GRN_UNKNOWN_ADDITIVE, PETSC_COMM_SELF, CS_ERR_INPUT, "model: unknown-atom policy %lld",
             (long long)unknown);
  gr->unknown = (GrnUnknown)unknown, gr->ntargets = (PetscInt)ntargets, gr->ridge = (PetscReal)ridge, gr->damping = (PetscReal)damping;
  if (gr->unknown == GRN_UNKNOWN_ADDITIVE) {
    PetscCall(CsAtomShiftsLoad(&gr->sh, g, C, A, G));
    gr->have_sh = PETSC_TRUE;
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelView_GRN(CsModel m, PetscViewer v)
{
  Grn *gr = (Grn *)m->data;

  PetscFunctionBeginUser;
  if (gr->wptr) PetscCall(Summary(m, gr, v));
  else PetscCall(PetscViewerASCIIPrintf(v, "grn: prior %s, ridge %g, damping %g (not fitted)\n", gr->prior, (double)gr->ridge, (double)gr->damping));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelDestroy_GRN(CsModel m)
{
  PetscFunctionBeginUser;
  PetscCall(GrnFree((Grn *)m->data));
  PetscCall(PetscFree(m->data));
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelCreate_GRN(CsModel m)
{
  Grn *gr;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&gr));
  PetscCall(PetscStrncpy(gr->prior, "dorothea", sizeof(gr->prior)));
  gr->ridge              = 0.1;
  gr->damping            = 1;
  gr->unknown            = GRN_UNKNOWN_ERROR;
  gr->block              = 64;
  gr->power_its          = 200;
  gr->chunk              = 256;
  m->data                = gr;
  m->ops->setfromoptions = CsModelSetFromOptions_GRN;
  m->ops->fit            = CsModelFit_GRN;
  m->ops->predict        = CsModelPredict_GRN;
  m->ops->save           = CsModelSave_GRN;
  m->ops->load           = CsModelLoad_GRN;
  m->ops->view           = CsModelView_GRN;
  m->ops->destroy        = CsModelDestroy_GRN;
  PetscFunctionReturn(0);
}
