/* gears: GEARS (Roohani, Huang & Leskovec, Nat Biotechnol 2023; snap-stanford/GEARS gears/model.py, utils.py), a
   graph network that predicts a perturbation from its place in two gene graphs.

   Graphs (built at set-up, identical on every rank):
   - co-expression, over the dataset's genes: |Pearson| of every gene pair over the training control and
     single-perturbation cells of the predicted contexts (sums over ranks), for every gene its -gears_coexpress_topk + 1 largest (itself
     included, as GEARS's argsort), kept above -gears_coexpress_threshold; message i -> j for j in i's list.
   - GO, over the perturbation genes: the embedded GEARS-style Jaccard graph (-prior_go; `cellshift inspect -priors`
     shows its coverage), edges with Jaccard > -gears_go_threshold, the -gears_go_topk largest per receiving gene.
   Both normalised as PyG's SGConv does (gcn_norm: self-loops of weight 1, D^-1/2 (A + I) D^-1/2 with the
   in-degrees). Only the GO nodes within -gears_go_layers hops of the design's atoms can reach a prediction, so the
   network keeps that neighbourhood (the values of the atoms' rows are those of the whole graph).

   Network (hidden h = -gears_hidden, every MLP is GEARS's Linear-BN-ReLU-Linear-BN):
     base[g]  = MLP_v2(relu(BN(gene_emb[g])) + 0.2 SGConv^L_co(emb_pos)[g])             [G, h], once per step
     pert[a]  = SGConv^L_go(pert_emb)[a]                                                  [atoms, h]
     f[b]     = pert_fuse(sum of pert[a] over the atoms of cell b's condition)            [B, h], 0 for a control cell
     H[b,g]   = recovery_w(relu(BN(base[g] + f[b])))                                      [B, G, h]
     o1[b,g]  = H[b,g] . w1[g] + b1[g]                                                   per-gene readout
     c[b]     = cross_gene(o1[b])                                                         [B, h]
     pred[b,g]= o1[b,g] w2[g,0] + c[b] . w2[g,1:] + b2[g] + x[b,g]                        x: a paired control cell
   (each SGConv layer is propagation then Linear, ReLU between layers; embeddings have max_norm 1 as GEARS's
   nn.Embedding(max_norm=True), applied before every forward). BatchNorm statistics are those of the global batch
   (the B G rows of H, the B rows of f and c); the cell-independent base is computed once per step on its G rows,
   which has GEARS's batch statistics (B identical copies), on every rank alike.

   GEARS models one cell type (its shift does not see the context): it trains on the contexts that have a group to
   predict (valid or test) and leaves the others' groups out, with a count; the co-expression graph is theirs too
   (-gears_all_contexts trains one context-blind shift on every context).

   Atoms never perturbed in training are predicted through their GO neighbours (their embedding row is never
   trained, the rows it aggregates are); an atom the GO graph does not know is an input error naming it.

   Training: the paired sampler (every perturbed training cell with a control cell of its context), loss
   gears/utils.py loss_fct: per perturbation group p of the global batch, (1 / (n_p G_p)) sum over its cells and
   its genes G_p (those with a non-zero mean expression in p's training cells, GEARS's dict_filter) of |pred -
   y|^(2+gamma) + lambda (sign(y - ctrl) - sign(pred - ctrl))^2 (ctrl: the mean training control of the context),
   averaged over the groups; Adam lr 1e-3, weight decay 5e-4, learning rate halved each epoch, 20 epochs, batch 32,
   the best epoch by the validation MSE on the top-20 DE genes of each group with validation cells (a validation
   group, or a training group when the split validates on a fraction of the training cells; Welch t of its cells
   against the training controls of its context), averaged over the validation cells with their paired controls:
   that is the MSE of the mean prediction plus terms that do not depend on the epoch. As GEARS, the training control
   cells are trained too, each paired with itself (the paired sampler's -gears_paired_controls, on by default): a
   control row has no perturbation embedding (H = base), its loss runs over every expressed gene with the
   direction term against the mean control, and its group is one perturbation of the normalisation; pert_fuse
   (and its BatchNorm) sees the perturbed rows of the global batch only. Every gradient entry is clamped to
   [-1, 1] (GEARS's clip_grad_value_; -gears_clip_value).

   Sizes: the co-expression sums are a dense G x G matrix of doubles on every rank (3.2 GB at 2e4 genes; at most
   46340 genes, one reduction); the network's activations are batch x G x hidden floats per rank (about 10 such
   arrays). */
#include "modelimpl.h"
#include <cblas.h>

typedef struct {
  PetscInt  hidden, gene_layers, go_layers, co_topk, go_topk, nde;
  PetscReal co_threshold, go_threshold, gamma, lambda;
  /* sizes */
  PetscInt  G, h, nnode, natoms, batch;
  /* graphs */
  CsCSR         Aco, Ago;
  CsNNTranspose ATco, ATgo;
  PetscInt     *atom_node; /* [natoms] row of the kept GO neighbourhood, -1: not in the GO graph */
  PetscBool    *use;       /* [ngroups] trained: its context is predicted and every atom of its condition is in the GO graph */
  PetscBool    *ctx_used;  /* [nctx] contexts with a group to predict (valid, test) */
  PetscInt      nleft;     /* training groups left out for atoms outside the GO graph */
  PetscInt      nother;    /* perturbed training groups left out for their context */
  PetscInt      co_edges;
  /* data-derived */
  uint8_t *mask;   /* [ncond, G] genes of each training condition (non-zero mean) */
  uint8_t *expressed; /* [G] genes non-zero in a training cell (control or perturbed) of the predicted contexts */
  PetscInt  nexpressed;
  PetscInt *mask_n; /* [ncond] */
  float    *ref;    /* [nctx, G] mean training control of each context */
  PetscInt *de;     /* [ngroups, nde] top DE genes of each validation group, -1 unused */
  /* parameters */
  CsNNParams P;
  CsTrainer  trainer;
  PetscInt   t_gene, t_bng, t_bnb, t_bnrm, t_bnrv, t_pos, *t_cow, *t_cob, t_pert, *t_gow, *t_gob;
  PetscInt   t_pbg, t_pbb, t_pbrm, t_pbrv, t_w1, t_b1, t_w2a, t_w2c, t_b2;
  PetscInt   t_zero[3]; /* tensors whose true gradient is 0 (see Backward) */
  PetscBool  all_contexts; /* -gears_all_contexts */
  PetscBool  same_natoms; /* every cell of the step's global batch has the same number of atoms */
  CsMLP      v2, fuse, recov, cross;
  /* activations */
  float *e1, *xhat1, *rstd1, *e2, *pos, *base, *dbase, *de2; /* [G, h] (pos: [gene_layers + 1, G, h] and its pre-linear) */
  float *coq;                                                  /* [gene_layers, G, h] propagated */
  float *u, *uq, *du, *duq;                                    /* [go_layers + 1, nnode, h], [go_layers, nnode, h] */
  float *s, *ds, *fz;                                          /* [B, h] (s, ds: the perturbed rows first; fz: f per row, 0 for controls) */
  float *Hin, *Hbn, *Hxhat, *Hrstd, *Hrel, *dH, *dH2;          /* [B G, h] */
  float *o1, *do1, *o2, *dpred, *x, *y, *tmp;                  /* [B, G] */
  const float *fout, *rout, *cout;                            /* outputs of the last MLP forwards */
  double *roww, *bnwork;
  PetscInt *cond, *ctx, *count;
  PetscInt *prow;    /* [B] the batch rows with atoms (a control row has no perturbation embedding) */
  PetscInt  np;      /* their number on this rank */
  PetscInt  npglobal; /* and in the global batch */
} Gears;

#define PASS_GENES(gs, tr) {PETSC_COMM_SELF, (tr), (gs)->G, 0, 0, NULL, 0, NULL}

/* ------------------------------------------------------------------------------------------------------------
   Options. */

static PetscErrorCode CsModelSetFromOptions_Gears(CsModel m, PetscOptionItems *PetscOptionsObject)
{
  Gears      *gs   = (Gears *)m->data;
  MPI_Comm    comm = PetscObjectComm((PetscObject)m);
  const char *pre  = CsModelPrefix(m);

  PetscFunctionBeginUser;
  PetscOptionsHeadBegin(PetscOptionsObject, "GEARS: gene graphs and a perturbation GO graph");
  PetscCall(PetscOptionsInt("-hidden", "Width of the embeddings and MLPs", "gears", gs->hidden, &gs->hidden, NULL));
  PetscCall(PetscOptionsInt("-gene_layers", "SGConv layers over the co-expression graph", "gears", gs->gene_layers, &gs->gene_layers, NULL));
  PetscCall(PetscOptionsInt("-go_layers", "SGConv layers over the GO graph", "gears", gs->go_layers, &gs->go_layers, NULL));
  PetscCall(PetscOptionsInt("-coexpress_topk", "Co-expression neighbours kept per gene", "gears", gs->co_topk, &gs->co_topk, NULL));
  PetscCall(PetscOptionsReal("-coexpress_threshold", "Smallest |Pearson| of a co-expression edge", "gears", gs->co_threshold, &gs->co_threshold, NULL));
  PetscCall(PetscOptionsInt("-go_topk", "GO neighbours kept per gene", "gears", gs->go_topk, &gs->go_topk, NULL));
  PetscCall(PetscOptionsReal("-go_threshold", "GO edges need a Jaccard above this", "gears", gs->go_threshold, &gs->go_threshold, NULL));
  PetscCall(PetscOptionsReal("-gamma", "Autofocus loss: power 2 + gamma", "gears", gs->gamma, &gs->gamma, NULL));
  PetscCall(PetscOptionsReal("-direction_lambda", "Weight of the direction-aware loss term", "gears", gs->lambda, &gs->lambda, NULL));
  PetscCall(PetscOptionsBool("-all_contexts", "Train on every context, not only those with groups to predict (one context-blind shift for all)", "gears",
                             gs->all_contexts, &gs->all_contexts, NULL));
  PetscCall(PetscOptionsInt("-valid_de_genes", "Top DE genes of each validation group scored for the best epoch", "gears", gs->nde, &gs->nde, NULL));
  PetscOptionsHeadEnd();
  CsCheckAll(comm, gs->hidden > 0, "-%shidden must be positive (got %" PetscInt_FMT ")", pre, gs->hidden);
  CsCheckAll(comm, gs->gene_layers >= 1 && gs->go_layers >= 1, "-%sgene_layers and -%sgo_layers must be at least 1", pre, pre);
  CsCheckAll(comm, gs->co_topk >= 1 && gs->go_topk >= 1 && gs->nde >= 1, "-%scoexpress_topk, -%sgo_topk and -%svalid_de_genes must be positive", pre, pre,
             pre);
  CsCheckAll(comm, gs->co_threshold >= 0 && gs->co_threshold < 1, "-%scoexpress_threshold must be in [0, 1) (got %g)", pre, (double)gs->co_threshold);
  CsCheckAll(comm, gs->go_threshold >= 0 && gs->go_threshold < 1, "-%sgo_threshold must be in [0, 1) (got %g)", pre, (double)gs->go_threshold);
  CsCheckAll(comm, gs->gamma >= 0 && gs->gamma <= 10 && gs->lambda >= 0, "-%sgamma must be in [0, 10] and -%sdirection_lambda non-negative", pre, pre);
  if (!gs->trainer) {
    PetscInt  set;
    CsNNOptim opt;
    CsSampler smp;
    PetscCall(CsTrainerCreate(comm, &gs->trainer));
    PetscCall(CsTrainerSetOptionsPrefix(gs->trainer, pre));
    PetscCall(CsTrainerSetDefaults(gs->trainer, 20, 32, 20)); /* GEARS keeps the best of all epochs: no early stop */
    PetscCall(CsTrainerAddOptimizer(gs->trainer, NULL, 1e-3, 5e-4, &set));
    PetscCall(CsTrainerGetOptim(gs->trainer, set, &opt));
    opt->decay = CS_NN_DECAY_STEP, opt->gamma = 0.5, opt->step_epochs = 1; /* StepLR(step_size=1, gamma=0.5) per epoch */
    PetscCall(CsTrainerGetSampler(gs->trainer, &smp));
    PetscCall(CsSamplerSetType(smp, CSSAMPLERPAIRED));
    PetscCall(CsSamplerSetPairedControls(smp, PETSC_TRUE)); /* GEARS trains control cells too, each to itself */
    opt->clip_value = 1.0;                                  /* GEARS: clip_grad_value_(clip_value=1.0) every step */
  }
  PetscCall(CsTrainerSetFromOptions(gs->trainer));
  PetscCall(CsModelCheckTrainingOptions(m));
  {
    CsSampler     smp;
    CsSamplerType type;
    PetscBool     paired;
    PetscCall(CsTrainerGetSampler(gs->trainer, &smp));
    PetscCall(CsSamplerGetType(smp, &type));
    PetscCall(PetscStrcmp(type, CSSAMPLERPAIRED, &paired));
    CsCheckAll(comm, paired, "gears adds its predicted shift to a paired control cell, so it trains on the paired sampler: -%ssampler_type %s is not supported", pre,
               type);
  }
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------------------------------------------------
   Graphs. */

typedef struct {
  double   w;
  PetscInt j;
} Nb;
static int NbCmp(const void *a, const void *b)
{
  const Nb *x = (const Nb *)a, *y = (const Nb *)b;
  if (x->w != y->w) return x->w > y->w ? -1 : 1;
  return (x->j > y->j) - (x->j < y->j);
}

/* Training control and single-perturbation cells of the predicted contexts: the cells of the co-expression graph. */
static PetscBool CoexpressCell(CsModel m, PetscInt i)
{
  CsDesign d = m->design;
  PetscInt g = d->cell_group[i];
  if (g < 0 || m->split->role[g] != CS_ROLE_TRAIN || !((Gears *)m->data)->ctx_used[d->groups[g].ctx]) return PETSC_FALSE;
  return (PetscBool)(d->groups[g].control || d->conds[d->groups[g].cond].natoms == 1);
}

static PetscErrorCode CoexpressGraph(CsModel m, Gears *gs)
{
  MPI_Comm  comm = PetscObjectComm((PetscObject)m);
  CsDataset ds   = m->ds;
  PetscInt  G = gs->G, chunk = 64, nr = 0, ne = 0, *src, *dst;
  double   *S, *sum, *D, n = 0;
  float    *w;
  Nb       *nb;

  PetscFunctionBeginUser;
  PetscCall(PetscCalloc3((size_t)G * G, &S, G + 1, &sum, (size_t)chunk * G, &D));
  for (PetscInt i = 0; i <= ds->nlocal; i++) {
    PetscBool last = (PetscBool)(i == ds->nlocal);
    if (!last && CoexpressCell(m, i)) {
      double *row = D + (size_t)nr * G;
      for (PetscInt j = 0; j < G; j++) row[j] = 0;
      for (int64_t e = ds->X.indptr[i]; e < ds->X.indptr[i + 1]; e++) row[ds->X.indices[e]] = ds->X.data[e];
      for (PetscInt j = 0; j < G; j++) sum[j] += row[j];
      nr++, n++;
    }
    if (nr && (nr == chunk || last)) {
      cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)G, (int)nr, 1.0, D, (int)G, 1.0, S, (int)G);
      nr = 0;
    }
  }
  sum[G] = n;
  PetscCheck((size_t)G * G < (size_t)PETSC_MPI_INT_MAX, comm, PETSC_ERR_SUP, "gears: %" PetscInt_FMT " genes are too many for one co-expression reduction", G);
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, S, (PetscMPIInt)(G * G), MPI_DOUBLE, MPI_SUM, comm));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, sum, (PetscMPIInt)(G + 1), MPI_DOUBLE, MPI_SUM, comm));
  n = sum[G];
  CsCheckAll(comm, n >= 3, "gears: the co-expression graph needs training control or single-perturbation cells (found %.0f)", n);
  for (PetscInt i = 0; i < G; i++)
    for (PetscInt j = 0; j < i; j++) S[(size_t)i * G + j] = S[(size_t)j * G + i];
  for (PetscInt i = 0; i < G; i++) D[i] = S[(size_t)i * G + i] - sum[i] * sum[i] / n; /* n var */
  PetscCall(PetscMalloc4((size_t)G * (gs->co_topk + 1), &src, (size_t)G * (gs->co_topk + 1), &dst, (size_t)G * (gs->co_topk + 1), &w, G, &nb));
  for (PetscInt i = 0; i < G; i++) {
    PetscInt k = PetscMin(gs->co_topk + 1, G);
    /* the sums behind r depend on the rank count: rounded, equal correlations tie and the lists do not */
    for (PetscInt j = 0; j < G; j++) {
      double c = S[(size_t)i * G + j] - sum[i] * sum[j] / n, v = D[i] * D[j], r = v > 0 ? c / sqrt(v) : 0;
      nb[j].w = PetscIsInfOrNanReal(r) ? 0 : CsRoundBits(fabs(r), CS_TIE_BITS), nb[j].j = j;
    }
    qsort(nb, (size_t)G, sizeof(Nb), NbCmp);
    for (PetscInt q = 0; q < k; q++) {
      if (!(nb[q].w > gs->co_threshold) || nb[q].j == i) continue; /* the self-loop is the normalisation's I */
      /* i's list sends messages i -> j: row j of A receives from i */
      src[ne] = nb[q].j, dst[ne] = i, w[ne] = (float)nb[q].w, ne++;
    }
  }
  gs->co_edges = ne;
  PetscCall(CsNNGraphNormalize(G, ne, src, dst, w, PETSC_FALSE, &gs->Aco));
  PetscCall(CsNNTransposeCreate(&gs->Aco, &gs->ATco));
  PetscCall(PetscFree4(src, dst, w, nb));
  PetscCall(PetscFree3(S, sum, D));
  PetscFunctionReturn(0);
}

/* The GO graph on the atoms' neighbourhood; an atom it does not know is an input error. */
static PetscErrorCode GOGraph(CsModel m, Gears *gs)
{
  MPI_Comm            comm = PetscObjectComm((PetscObject)m);
  CsDesign            d    = m->design;
  CsPriors            pr;
  const CsPriorGraph *g;
  PetscInt           *node, n, ne = 0, *src, *dst, *keep, *sub, nunk = 0, e0;
  float              *w;
  CsCSR               A;
  char                unknown[1024] = "";
  Nb                 *nb;
  PetscViewer         v = PETSC_VIEWER_STDOUT_(comm);

  PetscFunctionBeginUser;
  PetscCall(CsModelPriorsCreate(m, &pr));
  PetscCall(CsPriorsGetGraph(pr, CS_PRIOR_GO, &g));
  PetscCall(PetscViewerASCIIPrintf(v, "gears: GO graph coverage\n"));
  PetscCall(CsPriorsViewCoverage(pr, g, v));
  PetscCall(PetscMalloc1(d->natoms + 1, &node));
  PetscCall(CsPriorsGetAtomNodes(pr, g, node));
  /* A condition to predict (valid, test) with an atom the graph does not know is an error; a training group with
     one is left out of training (GEARS drops such perturbations from its data). GEARS models one cell type: its
     shift does not see the context, so the groups of contexts with nothing to predict are left out too (their
     shifts, e.g. another cell line's, would only pull the shared shift away from the predicted contexts'). */
  PetscCall(PetscMalloc1(d->ngroups + 1, &gs->use));
  PetscCall(PetscCalloc1(d->nctx + 1, &gs->ctx_used));
  for (PetscInt q = 0; q < d->ngroups; q++)
    if (m->split->role[q] != CS_ROLE_TRAIN) gs->ctx_used[d->groups[q].ctx] = PETSC_TRUE;
  {
    PetscBool any = PETSC_FALSE;
    for (PetscInt k = 0; k < d->nctx; k++) any = (PetscBool)(any || gs->ctx_used[k]);
    for (PetscInt k = 0; k < d->nctx && (!any || gs->all_contexts); k++) gs->ctx_used[k] = PETSC_TRUE; /* nothing to predict (train): every context */
  }
  for (PetscInt q = 0; q < d->ngroups; q++) {
    const CsCondition *c = &d->conds[d->groups[q].cond];
    PetscBool          ok = PETSC_TRUE;
    for (PetscInt k = 0; k < c->natoms; k++) ok = (PetscBool)(ok && node[c->atoms[k]] >= 0);
    gs->use[q] = (PetscBool)(ok && gs->ctx_used[d->groups[q].ctx]);
    if (!gs->ctx_used[d->groups[q].ctx]) {
      if (!d->groups[q].control) gs->nother++;
      continue;
    }
    if (ok) continue;
    if (m->split->role[q] == CS_ROLE_TRAIN) {
      gs->nleft++;
      continue;
    }
    for (PetscInt k = 0; k < c->natoms; k++) {
      const char *a = d->atoms[c->atoms[k]];
      if (node[c->atoms[k]] >= 0 || strstr(unknown, a)) continue;
      if (nunk++ < 20) {
        PetscCall(PetscStrlcat(unknown, nunk > 1 ? ", " : "", sizeof(unknown)));
        PetscCall(PetscStrlcat(unknown, a, sizeof(unknown)));
      }
    }
  }
  if (nunk) {
    PetscCall(PetscFree(node));
    PetscCall(CsPriorsDestroy(&pr));
  }
  CsCheckAll(comm, !nunk,
             "gears: %" PetscInt_FMT " atom%s of the conditions to predict %s not in the GO graph (%s%s), so GEARS cannot embed %s; give a GO graph "
             "that has them (-prior_go) or leave their conditions out of the data",
             nunk, nunk > 1 ? "s" : "", nunk > 1 ? "are" : "is", unknown, nunk > 20 ? ", ..." : "", nunk > 1 ? "them" : "it");
  if (gs->nleft)
    PetscCall(PetscViewerASCIIPrintf(v, "gears: %" PetscInt_FMT " training group%s left out: %s atoms the GO graph does not know\n", gs->nleft,
                                     gs->nleft > 1 ? "s" : "", gs->nleft > 1 ? "their conditions have" : "its condition has"));
  if (gs->nother)
    PetscCall(PetscViewerASCIIPrintf(v, "gears: %" PetscInt_FMT " training group%s of contexts with nothing to predict left out (GEARS models one cell type)\n",
                                     gs->nother, gs->nother > 1 ? "s" : ""));

  /* Edges (row = receiving gene): Jaccard above the threshold, the topk largest per row, self-loops dropped. */
  n = g->nnodes;
  PetscCall(PetscMalloc4(g->nedges + 1, &src, g->nedges + 1, &dst, g->nedges + 1, &w, n + 1, &nb));
  for (PetscInt e = 0; e < g->nedges; e = e0) {
    PetscInt k = 0;
    for (e0 = e; e0 < g->nedges && g->src[e0] == g->src[e]; e0++)
      if (g->dst[e0] != g->src[e0] && g->weight[e0] > gs->go_threshold) nb[k].w = g->weight[e0], nb[k].j = g->dst[e0], k++;
    qsort(nb, (size_t)k, sizeof(Nb), NbCmp);
    for (PetscInt q = 0; q < PetscMin(k, gs->go_topk); q++) src[ne] = g->src[e], dst[ne] = nb[q].j, w[ne] = (float)nb[q].w, ne++;
  }
  PetscCall(CsNNGraphNormalize(n, ne, src, dst, w, PETSC_FALSE, &A));
  PetscCall(PetscFree4(src, dst, w, nb));

  /* The nodes within go_layers hops of an atom (following each row's neighbours), in node order. */
  PetscCall(PetscCalloc2(n + 1, &keep, n + 1, &sub));
  for (PetscInt a = 0; a < d->natoms; a++)
    if (node[a] >= 0) keep[node[a]] = 1;
  for (PetscInt l = 0; l < gs->go_layers; l++)
    for (PetscInt i = 0; i < n; i++)
      if (keep[i] == l + 1)
        for (int64_t k = A.indptr[i]; k < A.indptr[i + 1]; k++)
          if (!keep[A.indices[k]]) keep[A.indices[k]] = l + 2;
  gs->nnode = 0;
  for (PetscInt i = 0; i < n; i++) sub[i] = keep[i] ? gs->nnode++ : -1;
  PetscCall(PetscMemzero(&gs->Ago, sizeof(gs->Ago)));
  gs->Ago.nrows = gs->Ago.ncols = gs->nnode;
  {
    int64_t nnz = 0;
    for (PetscInt i = 0; i < n; i++)
      if (keep[i])
        for (int64_t k = A.indptr[i]; k < A.indptr[i + 1]; k++) nnz += sub[A.indices[k]] >= 0;
    PetscCall(PetscMalloc1(gs->nnode + 1, &gs->Ago.indptr)); /* CsCSRFree frees them one by one */
    PetscCall(PetscMalloc1(nnz + 1, &gs->Ago.indices));
    PetscCall(PetscMalloc1(nnz + 1, &gs->Ago.data));
    gs->Ago.indptr[0] = 0, nnz = 0;
    for (PetscInt i = 0; i < n; i++) {
      if (!keep[i]) continue;
      for (int64_t k = A.indptr[i]; k < A.indptr[i + 1]; k++)
        if (sub[A.indices[k]] >= 0) gs->Ago.indices[nnz] = (int32_t)sub[A.indices[k]], gs->Ago.data[nnz] = A.data[k], nnz++;
      gs->Ago.indptr[sub[i] + 1] = nnz;
    }
  }
  PetscCall(PetscMalloc1(d->natoms + 1, &gs->atom_node));
  for (PetscInt a = 0; a < d->natoms; a++) gs->atom_node[a] = node[a] >= 0 ? sub[node[a]] : -1;
  PetscCall(CsNNTransposeCreate(&gs->Ago, &gs->ATgo));
  /* Atoms to predict that no training group perturbs: their embedding is their GO neighbours' rows, which are
     trained where they are neighbours of trained atoms. */
  {
    PetscBool *trained, *row, *topred;
    PetscInt   nunseen = 0, nreach = 0, m0 = gs->nnode;
    PetscCall(PetscCalloc3(d->natoms + 1, &trained, m0 + 1, &row, d->natoms + 1, &topred));
    for (PetscInt q = 0; q < d->ngroups; q++) {
      const CsCondition *c = &d->conds[d->groups[q].cond];
      for (PetscInt k = 0; k < c->natoms; k++) {
        if (m->split->role[q] == CS_ROLE_TRAIN && gs->use[q]) trained[c->atoms[k]] = PETSC_TRUE;
        if (m->split->role[q] != CS_ROLE_TRAIN) topred[c->atoms[k]] = PETSC_TRUE;
      }
    }
    for (PetscInt a = 0; a < d->natoms; a++)
      if (trained[a])
        for (int64_t k = gs->Ago.indptr[gs->atom_node[a]]; k < gs->Ago.indptr[gs->atom_node[a] + 1]; k++) row[gs->Ago.indices[k]] = PETSC_TRUE;
    for (PetscInt a = 0; a < d->natoms; a++) {
      PetscBool reach = PETSC_FALSE;
      if (!topred[a] || trained[a] || gs->atom_node[a] < 0) continue;
      nunseen++;
      for (int64_t k = gs->Ago.indptr[gs->atom_node[a]]; k < gs->Ago.indptr[gs->atom_node[a] + 1]; k++)
        reach = (PetscBool)(reach || (gs->Ago.indices[k] != gs->atom_node[a] && row[gs->Ago.indices[k]]));
      nreach += reach;
    }
    PetscCall(PetscViewerASCIIPrintf(v,
                                     "gears: %" PetscInt_FMT " atoms of the conditions to predict are never perturbed in training; %" PetscInt_FMT
                                     " of them share GO neighbours with trained atoms (for the others only the GO layers' weights are learned)"
                                     "\n",
                                     nunseen, nreach));
    PetscCall(PetscFree3(trained, row, topred));
  }
  PetscCall(CsCSRFree(&A));
  PetscCall(PetscFree2(keep, sub));
  PetscCall(PetscFree(node));
  PetscCall(CsPriorsDestroy(&pr)); /* owns g */
  PetscFunctionReturn(0);
}

/* Genes of each training condition (GEARS's dict_filter), the mean training control of each context, and the top
   DE genes of each validation group. */
static PetscErrorCode DataStats(CsModel m, Gears *gs)
{
  CsDesign   d = m->design;
  PetscInt   G = gs->G, *slot, K = gs->nde;
  double    *mean, *var;
  PetscInt  *total;
  Nb        *nb;

  PetscFunctionBeginUser;
  /* Slots: the groups (training and validation cells of every group, training controls). */
  PetscCall(PetscMalloc1(m->ds->nlocal + 1, &slot));
  for (PetscInt i = 0; i < m->ds->nlocal; i++) {
    PetscInt g = d->cell_group[i];
    slot[i]    = g >= 0 && (m->split->role[g] == CS_ROLE_TRAIN || m->split->role[g] == CS_ROLE_VALID) ? g : -1;
  }
  PetscCall(PetscMalloc3((size_t)d->ngroups * G + 1, &mean, (size_t)d->ngroups * G + 1, &var, d->ngroups + 1, &total));
  PetscCall(CsCSRGroupStats(PetscObjectComm((PetscObject)m), &m->ds->X, d->ngroups, slot, total, mean, var));
  PetscCall(PetscFree(slot));

  PetscCall(PetscCalloc2((size_t)d->ncond * G + 1, &gs->mask, d->ncond + 1, &gs->mask_n));
  PetscCall(PetscCalloc1((size_t)d->nctx * G + 1, &gs->ref));
  PetscCall(PetscCalloc1(G + 1, &gs->expressed));
  PetscCall(PetscMalloc1((size_t)d->ngroups * K + 1, &gs->de));
  PetscCall(PetscMalloc1(G + 1, &nb));
  for (PetscInt g = 0; g < d->ngroups; g++) {
    const CsGroup *gr = &d->groups[g];
    const double  *mu = mean + (size_t)g * G;
    for (PetscInt k = 0; k < K; k++) gs->de[g * K + k] = -1;
    if (m->split->role[g] == CS_ROLE_TRAIN && !gr->control && gs->ctx_used[gr->ctx])
      for (PetscInt j = 0; j < G; j++) gs->mask[(size_t)gr->cond * G + j] |= (uint8_t)(mu[j] != 0);
    if (m->split->role[g] == CS_ROLE_TRAIN && gs->ctx_used[gr->ctx])
      for (PetscInt j = 0; j < G; j++) gs->expressed[j] |= (uint8_t)(mu[j] != 0);
    if (m->split->role[g] == CS_ROLE_TRAIN && gr->control)
      for (PetscInt j = 0; j < G; j++) gs->ref[(size_t)gr->ctx * G + j] = (float)mu[j];
  }
  /* A control cell is trained to itself on every gene (GEARS's 'ctrl' keeps all genes), but a gene zero in every
     training cell has its shift fixed at 0 (ForwardCells): no gradient there. */
  for (PetscInt g = 0; g < d->ngroups; g++)
    if (d->groups[g].control) PetscCall(PetscArraycpy(gs->mask + (size_t)d->groups[g].cond * G, gs->expressed, G));
  for (PetscInt c = 0; c < d->ncond; c++)
    for (PetscInt j = 0; j < G; j++) gs->mask_n[c] += gs->mask[(size_t)c * G + j];
  gs->nexpressed = 0;
  for (PetscInt j = 0; j < G; j++) gs->nexpressed += gs->expressed[j];
  for (PetscInt g = 0; g < d->ngroups; g++) {
    const CsGroup *gr = &d->groups[g];
    PetscInt       c  = gr->ctrl;
    /* training groups too: a split without validation groups validates on a fraction of their cells */
    if ((m->split->role[g] != CS_ROLE_VALID && m->split->role[g] != CS_ROLE_TRAIN) || gr->control || c < 0 || total[g] < 1 || total[c] < 1) continue;
    for (PetscInt j = 0; j < G; j++) {
      double se = var[(size_t)g * G + j] / total[g] + var[(size_t)c * G + j] / total[c], t = mean[(size_t)g * G + j] - mean[(size_t)c * G + j];
      nb[j].w = se > 0 ? fabs(t) / sqrt(se) : 0, nb[j].j = j;
    }
    qsort(nb, (size_t)G, sizeof(Nb), NbCmp);
    for (PetscInt k = 0; k < PetscMin(K, G); k++) gs->de[g * K + k] = nb[k].w > 0 ? nb[k].j : -1;
  }
  PetscCall(PetscFree(nb));
  PetscCall(PetscFree3(mean, var, total));
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------------------------------------------------
   Parameters and buffers. */

static PetscErrorCode AddBN(CsNNParams P, const char *name, PetscInt h, PetscInt *g, PetscInt *b, PetscInt *rm, PetscInt *rv)
{
  char tn[CS_NN_NAME_LEN];

  PetscFunctionBeginUser;
  PetscCall(PetscSNPrintf(tn, sizeof(tn), "%s.weight", name));
  PetscCall(CsNNParamsAdd(P, tn, h, 1, CS_NN_INIT_ONE, 0, g));
  PetscCall(PetscSNPrintf(tn, sizeof(tn), "%s.bias", name));
  PetscCall(CsNNParamsAdd(P, tn, h, 1, CS_NN_INIT_ZERO, 0, b));
  PetscCall(PetscSNPrintf(tn, sizeof(tn), "%s.running_mean", name));
  PetscCall(CsNNParamsAddBuffer(P, tn, h, CS_NN_INIT_ZERO, rm));
  PetscCall(PetscSNPrintf(tn, sizeof(tn), "%s.running_var", name));
  PetscCall(CsNNParamsAddBuffer(P, tn, h, CS_NN_INIT_ONE, rv));
  PetscFunctionReturn(0);
}

static PetscErrorCode MLP3(CsNNParams P, const char *name, PetscInt a, PetscInt b, PetscInt c, CsMLP *mlp)
{
  CsMLPConfig cfg;
  PetscInt    sizes[3] = {a, b, c};

  PetscFunctionBeginUser;
  CsMLPConfigDefault(&cfg);
  cfg.nlayers = 2, cfg.sizes = sizes, cfg.norm = CS_NN_NORM_BATCH, cfg.act = CS_NN_ACT_RELU, cfg.last_no_act = PETSC_TRUE;
  PetscCall(CsMLPCreate(P, name, &cfg, mlp));
  PetscFunctionReturn(0);
}

/* Xavier-normal std sqrt(2 / (fan_in + fan_out)) as a uniform of the same variance: U(-a, a), a = 1/sqrt(f). */
static PetscInt XavierFan(double fin, double fout) { return PetscMax(1, (PetscInt)((fin + fout) / 6.0 + 0.5)); }

static PetscErrorCode Alloc(float **p, size_t n)
{
  PetscFunctionBeginUser;
  PetscCall(PetscCalloc1(n + 1, p));
  PetscFunctionReturn(0);
}

static PetscErrorCode RenormEmbeddings(Gears *gs)
{
  PetscFunctionBeginUser;
  cs_renorm_rows(CsNNParamsData(gs->P, gs->t_gene), gs->G, gs->h, 1.0);
  cs_renorm_rows(CsNNParamsData(gs->P, gs->t_pos), gs->G, gs->h, 1.0);
  cs_renorm_rows(CsNNParamsData(gs->P, gs->t_pert), gs->nnode, gs->h, 1.0);
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelSetUp_Gears(CsModel m)
{
  Gears   *gs   = (Gears *)m->data;
  MPI_Comm comm = PetscObjectComm((PetscObject)m);
  PetscInt G, h, B, L;
  char     tn[CS_NN_NAME_LEN];
  size_t   BG;

  PetscFunctionBeginUser;
  PetscCheck(gs->trainer, comm, PETSC_ERR_ORDER, "call CsModelSetFromOptions first");
  PetscCall(CsTrainerGetBatchSize(gs->trainer, &gs->batch));
  G = gs->G = m->ds->ngenes, h = gs->h = gs->hidden, B = gs->batch, BG = (size_t)B * G, gs->natoms = m->design->natoms;
  PetscCall(GOGraph(m, gs));
  PetscCall(CoexpressGraph(m, gs));
  PetscCall(DataStats(m, gs));
  PetscCall(PetscViewerASCIIPrintf(PETSC_VIEWER_STDOUT_(comm),
                                   "gears: co-expression graph %" PetscInt_FMT " genes, %" PetscInt_FMT " edges (|r| > %g, top %" PetscInt_FMT
                                   "); GO neighbourhood of the %" PetscInt_FMT " atoms: %" PetscInt_FMT " genes, %" PetscInt_FMT " edges\n",
                                   G, gs->co_edges, (double)gs->co_threshold, gs->co_topk, gs->natoms, gs->nnode, (PetscInt)gs->Ago.indptr[gs->nnode]));
  if (gs->nexpressed < G)
    PetscCall(PetscViewerASCIIPrintf(PETSC_VIEWER_STDOUT_(comm), "gears: %" PetscInt_FMT " of %" PetscInt_FMT " genes are zero in every training cell of the predicted contexts: their shift is 0\n",
                                     G - gs->nexpressed, G));

  /* Parameters in forward order. */
  PetscCall(CsNNParamsCreate(comm, &gs->P));
  PetscCall(CsNNParamsAdd(gs->P, "gene_emb", G, h, CS_NN_INIT_FANIN, 1, &gs->t_gene));
  PetscCall(AddBN(gs->P, "bn_emb", h, &gs->t_bng, &gs->t_bnb, &gs->t_bnrm, &gs->t_bnrv));
  PetscCall(CsNNParamsAdd(gs->P, "emb_pos", G, h, CS_NN_INIT_FANIN, 1, &gs->t_pos));
  PetscCall(PetscMalloc4(gs->gene_layers, &gs->t_cow, gs->gene_layers, &gs->t_cob, gs->go_layers, &gs->t_gow, gs->go_layers, &gs->t_gob));
  for (PetscInt l = 0; l < gs->gene_layers; l++) {
    PetscCall(PetscSNPrintf(tn, sizeof(tn), "coexpress.%" PetscInt_FMT ".weight", l));
    PetscCall(CsNNParamsAdd(gs->P, tn, h, h, CS_NN_INIT_FANIN, h, &gs->t_cow[l]));
    PetscCall(PetscSNPrintf(tn, sizeof(tn), "coexpress.%" PetscInt_FMT ".bias", l));
    PetscCall(CsNNParamsAdd(gs->P, tn, h, 1, CS_NN_INIT_FANIN, h, &gs->t_cob[l]));
  }
  PetscCall(MLP3(gs->P, "emb_trans_v2", h, h, h, &gs->v2));
  PetscCall(CsNNParamsAdd(gs->P, "pert_emb", gs->nnode, h, CS_NN_INIT_FANIN, 1, &gs->t_pert));
  for (PetscInt l = 0; l < gs->go_layers; l++) {
    PetscCall(PetscSNPrintf(tn, sizeof(tn), "go.%" PetscInt_FMT ".weight", l));
    PetscCall(CsNNParamsAdd(gs->P, tn, h, h, CS_NN_INIT_FANIN, h, &gs->t_gow[l]));
    PetscCall(PetscSNPrintf(tn, sizeof(tn), "go.%" PetscInt_FMT ".bias", l));
    PetscCall(CsNNParamsAdd(gs->P, tn, h, 1, CS_NN_INIT_FANIN, h, &gs->t_gob[l]));
  }
  PetscCall(MLP3(gs->P, "pert_fuse", h, h, h, &gs->fuse));
  PetscCall(AddBN(gs->P, "bn_pert_base", h, &gs->t_pbg, &gs->t_pbb, &gs->t_pbrm, &gs->t_pbrv));
  PetscCall(MLP3(gs->P, "recovery_w", h, 2 * h, h, &gs->recov));
  PetscCall(CsNNParamsAdd(gs->P, "indv_w1", G, h, CS_NN_INIT_FANIN, XavierFan(h, G), &gs->t_w1));
  PetscCall(CsNNParamsAdd(gs->P, "indv_b1", G, 1, CS_NN_INIT_FANIN, XavierFan(1, G), &gs->t_b1));
  PetscCall(MLP3(gs->P, "cross_gene_state", G, h, h, &gs->cross));
  PetscCall(CsNNParamsAdd(gs->P, "indv_w2.self", G, 1, CS_NN_INIT_FANIN, XavierFan((double)G * (h + 1), h + 1), &gs->t_w2a));
  PetscCall(CsNNParamsAdd(gs->P, "indv_w2.cross", h, G, CS_NN_INIT_FANIN, XavierFan((double)G * (h + 1), h + 1), &gs->t_w2c));
  PetscCall(CsNNParamsAdd(gs->P, "indv_b2", G, 1, CS_NN_INIT_FANIN, XavierFan(G, 1), &gs->t_b2));
  PetscCall(CsNNParamsSetUp(gs->P));
  PetscCall(CsNNParamsInitialize(gs->P, (uint64_t)m->seed));
  gs->t_zero[0] = CsNNParamsFind(gs->P, "pert_fuse.1.norm.bias");
  gs->t_zero[1] = CsNNParamsFind(gs->P, "emb_trans_v2.1.norm.bias");
  gs->t_zero[2] = gs->t_cob[gs->gene_layers - 1];
  PetscCheck(gs->t_zero[0] >= 0 && gs->t_zero[1] >= 0, comm, PETSC_ERR_PLIB, "gears: the MLP tensor names changed");
  PetscCall(RenormEmbeddings(gs));
  PetscCall(CsMLPSetUp(gs->v2, G));
  PetscCall(CsMLPSetUp(gs->fuse, B));
  PetscCall(CsMLPSetUp(gs->recov, (PetscInt)BG));
  PetscCall(CsMLPSetUp(gs->cross, B));
  PetscCall(CsTrainerSetParams(gs->trainer, 0, gs->P));

  L = gs->gene_layers;
  PetscCall(Alloc(&gs->e1, (size_t)G * h));
  PetscCall(Alloc(&gs->xhat1, (size_t)G * h));
  PetscCall(Alloc(&gs->rstd1, h));
  PetscCall(Alloc(&gs->e2, (size_t)G * h));
  PetscCall(Alloc(&gs->pos, (size_t)(L + 1) * G * h));
  PetscCall(Alloc(&gs->coq, (size_t)L * G * h));
  PetscCall(Alloc(&gs->base, (size_t)G * h));
  PetscCall(Alloc(&gs->dbase, (size_t)G * h));
  PetscCall(Alloc(&gs->de2, (size_t)(L + 2) * G * h));
  PetscCall(Alloc(&gs->u, (size_t)(gs->go_layers + 1) * gs->nnode * h));
  PetscCall(Alloc(&gs->uq, (size_t)gs->go_layers * gs->nnode * h));
  PetscCall(Alloc(&gs->du, (size_t)gs->nnode * h));
  PetscCall(Alloc(&gs->duq, (size_t)gs->nnode * h));
  PetscCall(Alloc(&gs->s, (size_t)B * h));
  PetscCall(Alloc(&gs->ds, (size_t)B * h));
  PetscCall(Alloc(&gs->fz, (size_t)B * h));
  PetscCall(Alloc(&gs->Hin, BG * h));
  PetscCall(Alloc(&gs->Hbn, BG * h));
  PetscCall(Alloc(&gs->Hxhat, BG * h));
  PetscCall(Alloc(&gs->Hrstd, h));
  PetscCall(Alloc(&gs->Hrel, BG * h));
  PetscCall(Alloc(&gs->dH, BG * h));
  PetscCall(Alloc(&gs->dH2, BG * h));
  PetscCall(Alloc(&gs->o1, BG));
  PetscCall(Alloc(&gs->do1, BG));
  PetscCall(Alloc(&gs->o2, BG));
  PetscCall(Alloc(&gs->dpred, BG));
  PetscCall(Alloc(&gs->x, BG));
  PetscCall(Alloc(&gs->y, BG));
  PetscCall(Alloc(&gs->tmp, BG));
  PetscCall(PetscMalloc2(B + 1, &gs->roww, 8 * (size_t)PetscMax(h, 2 * h) + 8, &gs->bnwork));
  PetscCall(PetscMalloc3(B + 1, &gs->cond, B + 1, &gs->ctx, m->design->ncond + 1, &gs->count));
  PetscCall(PetscMalloc1(B + 1, &gs->prow));
  PetscFunctionReturn(0);
}

/* ------------------------------------------------------------------------------------------------------------
   Forward and backward. */

/* The cell-independent parts: base [G, h] and the propagated perturbation embeddings u_L [nnode, h]. */
static PetscErrorCode ForwardShared(Gears *gs, PetscBool train)
{
  CsNNParams   P = gs->P;
  PetscInt     G = gs->G, h = gs->h, L = gs->gene_layers, n = gs->nnode;
  CsNNPass     pg = PASS_GENES(gs, train);
  const float *out;

  PetscFunctionBeginUser;
  PetscCall(RenormEmbeddings(gs));
  PetscCall(cs_batchnorm_forward(gs->e1, gs->xhat1, gs->rstd1, CsNNParamsData(P, gs->t_gene), CsNNParamsData(P, gs->t_bng), CsNNParamsData(P, gs->t_bnb),
                                 CsNNParamsData(P, gs->t_bnrm), CsNNParamsData(P, gs->t_bnrv), G, h, 0.1, 1e-5, &pg, gs->bnwork));
  cs_activation_forward(CS_NN_ACT_RELU, gs->e2, gs->e1, (size_t)G * h);
  PetscCall(PetscArraycpy(gs->pos, CsNNParamsData(P, gs->t_pos), (size_t)G * h));
  for (PetscInt l = 0; l < L; l++) {
    float *q = gs->coq + (size_t)l * G * h, *next = gs->pos + (size_t)(l + 1) * G * h;
    cs_graph_forward(q, &gs->Aco, gs->pos + (size_t)l * G * h, 1, h);
    cs_linear_forward(next, q, CsNNParamsData(P, gs->t_cow[l]), CsNNParamsData(P, gs->t_cob[l]), G, h, h);
    if (l < L - 1) cs_activation_forward(CS_NN_ACT_RELU, next, next, (size_t)G * h); /* relu in place: backward reads its output */
  }
  for (size_t i = 0; i < (size_t)G * h; i++) gs->base[i] = gs->e2[i] + 0.2f * gs->pos[(size_t)L * G * h + i];
  PetscCall(CsMLPForward(gs->v2, &pg, G, gs->base, NULL, &out));
  PetscCall(PetscArraycpy(gs->base, out, (size_t)G * h)); /* the v2 input is no longer needed: its backward reads only its caches */
  PetscCall(PetscArraycpy(gs->u, CsNNParamsData(P, gs->t_pert), (size_t)n * h));
  for (PetscInt l = 0; l < gs->go_layers; l++) {
    float *q = gs->uq + (size_t)l * n * h, *next = gs->u + (size_t)(l + 1) * n * h;
    cs_graph_forward(q, &gs->Ago, gs->u + (size_t)l * n * h, 1, h);
    cs_linear_forward(next, q, CsNNParamsData(P, gs->t_gow[l]), CsNNParamsData(P, gs->t_gob[l]), n, h, h);
    if (l < gs->go_layers - 1) cs_activation_forward(CS_NN_ACT_RELU, next, next, (size_t)n * h);
  }
  PetscFunctionReturn(0);
}

/* The pass of pert_fuse: the perturbed rows of the global batch (GEARS fuses the perturbed cells' embeddings only). */
static CsNNPass FusePass(const Gears *gs, const CsNNPass *pass)
{
  CsNNPass pp = *pass;
  pp.nglobal = gs->npglobal, pp.cell = NULL, pp.rstart = 0;
  return pp;
}

/* The B local rows (conditions gs->cond) given the shared parts: o2 = the predicted shift [B, G]. pass: the global
   batch of cells (BatchNorm of c); the rows of H are its B G rows. A control row (no atom) gets no perturbation
   embedding: H = base; pert_fuse and its BatchNorm run on the perturbed rows of the global batch. Collective on
   pass->comm (the count of perturbed rows). */
static PetscErrorCode ForwardCells(Gears *gs, const CsNNPass *pass, PetscInt B, const CsDesign d)
{
  CsNNParams   P = gs->P;
  PetscInt     G = gs->G, h = gs->h, n = gs->nnode;
  CsNNPass     ph = *pass, pp;
  const float *uL = gs->u + (size_t)gs->go_layers * n * h;
  size_t       BG = (size_t)B * G;

  PetscFunctionBeginUser;
  ph.nglobal = pass->nglobal * G, ph.cell = NULL, ph.rstart = 0;
  gs->np = 0;
  for (PetscInt b = 0; b < B; b++)
    if (d->conds[gs->cond[b]].natoms > 0) gs->prow[gs->np++] = b;
  gs->npglobal = gs->np;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &gs->npglobal, 1, MPIU_INT, MPI_SUM, pass->comm));
  pp = FusePass(gs, pass);
  PetscCall(PetscArrayzero(gs->s, (size_t)B * h));
  for (PetscInt q = 0; q < gs->np; q++) {
    const CsCondition *c = &d->conds[gs->cond[gs->prow[q]]];
    for (PetscInt k = 0; k < c->natoms; k++) {
      const float *r = uL + (size_t)gs->atom_node[c->atoms[k]] * h;
      for (PetscInt j = 0; j < h; j++) gs->s[(size_t)q * h + j] += r[j];
    }
  }
  PetscCall(PetscArrayzero(gs->fz, (size_t)B * h));
  if (gs->npglobal > 0) { /* the same on every rank */
    PetscCall(CsMLPForward(gs->fuse, &pp, gs->np, gs->s, NULL, &gs->fout));
    for (PetscInt q = 0; q < gs->np; q++) PetscCall(PetscArraycpy(gs->fz + (size_t)gs->prow[q] * h, gs->fout + (size_t)q * h, h));
  }
  cs_gene_broadcast_forward(gs->Hin, gs->base, gs->fz, B, G, h);
  PetscCall(cs_batchnorm_forward(gs->Hbn, gs->Hxhat, gs->Hrstd, gs->Hin, CsNNParamsData(P, gs->t_pbg), CsNNParamsData(P, gs->t_pbb),
                                 CsNNParamsData(P, gs->t_pbrm), CsNNParamsData(P, gs->t_pbrv), (PetscInt)BG, h, 0.1, 1e-5, &ph, gs->bnwork));
  cs_activation_forward(CS_NN_ACT_RELU, gs->Hrel, gs->Hbn, BG * h);
  PetscCall(CsMLPForward(gs->recov, &ph, (PetscInt)BG, gs->Hrel, NULL, &gs->rout));
  cs_gene_readout_forward(gs->o1, gs->rout, CsNNParamsData(P, gs->t_w1), CsNNParamsData(P, gs->t_b1), B, G, h);
  PetscCall(CsMLPForward(gs->cross, pass, B, gs->o1, NULL, &gs->cout));
  cs_linear_forward(gs->tmp, gs->cout, CsNNParamsData(P, gs->t_w2c), NULL, B, h, G);
  cs_gene_readout_forward(gs->o2, gs->o1, CsNNParamsData(P, gs->t_w2a), CsNNParamsData(P, gs->t_b2), B, G, 1);
  for (size_t i = 0; i < BG; i++) gs->o2[i] += gs->tmp[i];
  /* A gene never expressed in a training cell of the predicted contexts is in no condition's loss (GEARS's
     dict_filter keeps the genes of non-zero mean), so the network's output there is whatever the shared weights
     make it; GEARS's data has no such gene (its genes are its one cell line's highly variable genes). Its shift
     is 0 (then its gradient is 0 too: it is in no mask). */
  if (gs->nexpressed < G)
    for (PetscInt b = 0; b < B; b++)
      for (PetscInt j = 0; j < G; j++)
        if (!gs->expressed[j]) gs->o2[(size_t)b * G + j] = 0;
  PetscFunctionReturn(0);
}

/* Backward from dpred [B, G] (the gradient of the shift o2) through everything; parameter gradients +=. The
   cell-independent parts get this rank's share of their gradient (their BatchNorm runs on every rank alike, and
   its backward is linear in the output gradient, so the sum over ranks is the gradient of the global batch). */
static PetscErrorCode Backward(Gears *gs, const CsNNPass *pass, PetscInt B, const CsDesign d)
{
  CsNNParams P = gs->P;
  PetscInt   G = gs->G, h = gs->h, n = gs->nnode, L = gs->gene_layers, LG = gs->go_layers;
  CsNNPass   ph = *pass, pg = PASS_GENES(gs, PETSC_TRUE);
  size_t     BG = (size_t)B * G, Gh = (size_t)G * h, nh = (size_t)n * h;
  float     *g, *dpos = gs->de2 + Gh, *dq = gs->de2 + 2 * Gh;

  PetscFunctionBeginUser;
  ph.nglobal = pass->nglobal * G, ph.cell = NULL, ph.rstart = 0;
  /* o2 = o1 w2a + c W2c + b2 */
  PetscCall(PetscArrayzero(gs->do1, BG));
  cs_gene_readout_backward(gs->do1, CsNNParamsGrad(P, gs->t_w2a), CsNNParamsGrad(P, gs->t_b2), gs->dpred, gs->o1, CsNNParamsData(P, gs->t_w2a), B, G, 1);
  g = CsMLPGetOutputGrad(gs->cross);
  PetscCall(PetscArrayzero(g, (size_t)B * h));
  cs_linear_backward(g, CsNNParamsGrad(P, gs->t_w2c), NULL, gs->dpred, gs->cout, CsNNParamsData(P, gs->t_w2c), B, h, G);
  PetscCall(CsMLPBackward(gs->cross, pass, B, gs->do1));
  /* o1 = readout(recovery_w(relu(BN(base + f)))) */
  g = CsMLPGetOutputGrad(gs->recov);
  PetscCall(PetscArrayzero(g, BG * h));
  cs_gene_readout_backward(g, CsNNParamsGrad(P, gs->t_w1), CsNNParamsGrad(P, gs->t_b1), gs->do1, gs->rout, CsNNParamsData(P, gs->t_w1), B, G, h);
  PetscCall(PetscArrayzero(gs->dH, BG * h));
  PetscCall(CsMLPBackward(gs->recov, &ph, (PetscInt)BG, gs->dH));
  PetscCall(PetscArrayzero(gs->dH2, BG * h));
  cs_activation_backward(CS_NN_ACT_RELU, gs->dH2, gs->dH, gs->Hbn, BG * h);
  PetscCall(PetscArrayzero(gs->dH, BG * h));
  PetscCall(cs_batchnorm_backward(gs->dH, CsNNParamsGrad(P, gs->t_pbg), CsNNParamsGrad(P, gs->t_pbb), gs->dH2, gs->Hxhat, gs->Hrstd,
                                  CsNNParamsData(P, gs->t_pbg), (PetscInt)BG, h, &ph, gs->bnwork));
  PetscCall(PetscArrayzero(gs->dbase, Gh));
  PetscCall(PetscArrayzero(gs->fz, (size_t)B * h)); /* d fz */
  cs_gene_broadcast_backward(gs->dbase, gs->fz, gs->dH, B, G, h);
  PetscCall(PetscArrayzero(gs->ds, (size_t)B * h));
  if (gs->npglobal > 0) {
    CsNNPass pp = FusePass(gs, pass);
    g           = CsMLPGetOutputGrad(gs->fuse);
    for (PetscInt q = 0; q < gs->np; q++) PetscCall(PetscArraycpy(g + (size_t)q * h, gs->fz + (size_t)gs->prow[q] * h, h));
    PetscCall(CsMLPBackward(gs->fuse, &pp, gs->np, gs->ds));
  }
  /* s[q] = sum of u_L over the atoms of perturbed row q; u_{l+1} = (A u_l) W + b, relu between */
  PetscCall(PetscArrayzero(gs->du, nh));
  for (PetscInt q = 0; q < gs->np; q++) {
    const CsCondition *c = &d->conds[gs->cond[gs->prow[q]]];
    for (PetscInt k = 0; k < c->natoms; k++) {
      float *r = gs->du + (size_t)gs->atom_node[c->atoms[k]] * h;
      for (PetscInt j = 0; j < h; j++) r[j] += gs->ds[(size_t)q * h + j];
    }
  }
  for (PetscInt l = LG - 1; l >= 0; l--) {
    if (l < LG - 1) { /* the relu of layer l's output, applied in place: its output says where it passed */
      const float *o = gs->u + (size_t)(l + 1) * nh;
      for (size_t i = 0; i < nh; i++) gs->du[i] = o[i] > 0 ? gs->du[i] : 0;
    }
    PetscCall(PetscArrayzero(gs->duq, nh));
    cs_linear_backward(gs->duq, CsNNParamsGrad(P, gs->t_gow[l]), CsNNParamsGrad(P, gs->t_gob[l]), gs->du, gs->uq + (size_t)l * nh,
                       CsNNParamsData(P, gs->t_gow[l]), n, h, h);
    PetscCall(PetscArrayzero(gs->du, nh));
    cs_graph_backward(gs->du, NULL, gs->duq, gs->u + (size_t)l * nh, &gs->Ago, &gs->ATgo, 1, h);
  }
  g = CsNNParamsGrad(P, gs->t_pert);
  for (size_t i = 0; i < nh; i++) g[i] += gs->du[i];
  /* base = v2(relu(BN(gene_emb)) + 0.2 pos_L) */
  g = CsMLPGetOutputGrad(gs->v2);
  PetscCall(PetscArraycpy(g, gs->dbase, Gh));
  PetscCall(PetscArrayzero(gs->de2, Gh));
  PetscCall(CsMLPBackward(gs->v2, &pg, G, gs->de2)); /* de2 = d(e2) = d(v2 input) */
  for (size_t i = 0; i < Gh; i++) dpos[i] = 0.2f * gs->de2[i];
  for (PetscInt l = L - 1; l >= 0; l--) {
    if (l < L - 1) {
      const float *o = gs->pos + (size_t)(l + 1) * Gh;
      for (size_t i = 0; i < Gh; i++) dpos[i] = o[i] > 0 ? dpos[i] : 0;
    }
    PetscCall(PetscArrayzero(dq, Gh));
    cs_linear_backward(dq, CsNNParamsGrad(P, gs->t_cow[l]), CsNNParamsGrad(P, gs->t_cob[l]), dpos, gs->coq + (size_t)l * Gh,
                       CsNNParamsData(P, gs->t_cow[l]), G, h, h);
    PetscCall(PetscArrayzero(dpos, Gh));
    cs_graph_backward(dpos, NULL, dq, gs->pos + (size_t)l * Gh, &gs->Aco, &gs->ATco, 1, h);
  }
  g = CsNNParamsGrad(P, gs->t_pos);
  for (size_t i = 0; i < Gh; i++) g[i] += dpos[i];
  PetscCall(PetscArrayzero(gs->dbase, Gh));
  cs_activation_backward(CS_NN_ACT_RELU, gs->dbase, gs->de2, gs->e1, Gh);
  PetscCall(cs_batchnorm_backward(CsNNParamsGrad(P, gs->t_gene), CsNNParamsGrad(P, gs->t_bng), CsNNParamsGrad(P, gs->t_bnb), gs->dbase, gs->xhat1,
                                  gs->rstd1, CsNNParamsData(P, gs->t_bng), G, h, &pg, gs->bnwork));
  /* Shifts that a BatchNorm downstream cancels exactly have a true gradient of 0; what backward computes for them
     is rounding noise, which Adam would turn into steps of the size of the learning rate (different with the number
     of ranks). They are: a constant added to every H row (the last beta of emb_trans_v2, and that of pert_fuse when
     the global batch has no control row, before bn_pert_base) and the last co-expression bias (a constant added to
     every gene's base, before the first BatchNorm of emb_trans_v2). */
  for (PetscInt k = gs->npglobal < pass->nglobal ? 1 : 0; k < 3; k++) {
    PetscInt t = gs->t_zero[k];
    PetscCall(PetscArrayzero(CsNNParamsGrad(P, t), (size_t)P->t[t].rows * P->t[t].cols));
  }
  /* The same for the last GO bias when every perturbed cell of the global batch has the same number of atoms: then
     it adds the same constant to every row of the pert_fuse input, which that MLP's first BatchNorm cancels. */
  if (gs->same_natoms) PetscCall(PetscArrayzero(CsNNParamsGrad(P, gs->t_gob[LG - 1]), (size_t)h));
  PetscFunctionReturn(0);
}

/* The conditions and contexts of the batch rows, and the dense targets and controls. */
static PetscErrorCode BatchRows(CsModel m, Gears *gs, const CsBatch *b)
{
  CsDesign d = m->design;
  PetscInt G = gs->G;

  PetscFunctionBeginUser;
  PetscCheck(b->n <= gs->batch && b->nctrl == b->n, PETSC_COMM_SELF, PETSC_ERR_PLIB, "gears: the batch is not paired (%" PetscInt_FMT " rows, %" PetscInt_FMT " controls)", b->n, b->nctrl);
  PetscCall(PetscArrayzero(gs->x, (size_t)b->n * G));
  PetscCall(PetscArrayzero(gs->y, (size_t)b->n * G));
  for (PetscInt i = 0; i < b->n; i++) {
    PetscInt r = b->local[i], g;
    PetscCheck(r >= 0, PETSC_COMM_SELF, PETSC_ERR_PLIB, "gears: a paired batch row is not local");
    g = d->cell_group[r];
    gs->cond[i] = d->groups[g].cond, gs->ctx[i] = d->groups[g].ctx;
    for (int64_t e = b->X.indptr[i]; e < b->X.indptr[i + 1]; e++) gs->y[(size_t)i * G + b->X.indices[e]] = b->X.data[e];
    for (int64_t e = b->Xctrl.indptr[i]; e < b->Xctrl.indptr[i + 1]; e++) gs->x[(size_t)i * G + b->Xctrl.indices[e]] = b->Xctrl.data[e];
  }
  PetscFunctionReturn(0);
}

typedef struct {
  CsModel m;
  Gears  *gs;
} Ctx;

static PetscErrorCode Step(void *ctx, const CsBatch *b, const CsNNPass *pass, PetscInt *set, double *loss)
{
  Ctx     *c  = (Ctx *)ctx;
  Gears   *gs = c->gs;
  CsDesign d  = c->m->design;
  PetscInt G = gs->G, B = b->n, np = 0;
  size_t   BG = (size_t)B * G;
  double   l = 0;

  PetscFunctionBeginUser;
  PetscCall(BatchRows(c->m, gs, b));
  PetscCall(ForwardShared(gs, PETSC_TRUE));
  PetscCall(ForwardCells(gs, pass, B, d));
  for (size_t i = 0; i < BG; i++) gs->o2[i] += gs->x[i];
  /* GEARS's normalisation: per perturbation of the global batch, its cells and genes; then over perturbations */
  PetscCall(PetscArrayzero(gs->count, d->ncond));
  for (PetscInt i = 0; i < B; i++) gs->count[gs->cond[i]]++;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, gs->count, (PetscMPIInt)d->ncond, MPIU_INT, MPI_SUM, pass->comm));
  {
    PetscInt lo = PETSC_MAX_INT, hi = -1;
    for (PetscInt k = 0; k < d->ncond; k++)
      if (gs->count[k] > 0) {
        np++;
        if (d->conds[k].natoms > 0) lo = PetscMin(lo, d->conds[k].natoms), hi = PetscMax(hi, d->conds[k].natoms);
      }
    gs->same_natoms = (PetscBool)(lo == hi);
  }
  PetscCall(PetscArrayzero(gs->dpred, BG));
  for (PetscInt i = 0; i < B; i++) {
    PetscInt k = gs->cond[i];
    gs->roww[i] = gs->mask_n[k] ? 1.0 / ((double)gs->count[k] * gs->mask_n[k] * np) : 0;
    l += cs_autofocus_loss(gs->dpred + (size_t)i * G, gs->o2 + (size_t)i * G, gs->y + (size_t)i * G, gs->ref + (size_t)gs->ctx[i] * G,
                           gs->mask + (size_t)k * G, gs->roww + i, 1, G, gs->gamma, gs->lambda);
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &l, 1, MPI_DOUBLE, MPI_SUM, pass->comm));
  PetscCall(Backward(gs, pass, B, d));
  *set = 0, *loss = l;
  PetscFunctionReturn(0);
}

/* Validation: the squared error on each group's top DE genes, averaged over its genes and the validation cells. */
static PetscErrorCode Loss(void *ctx, const CsBatch *b, const CsNNPass *pass, double *loss)
{
  Ctx     *c  = (Ctx *)ctx;
  Gears   *gs = c->gs;
  CsDesign d  = c->m->design;
  PetscInt G = gs->G, K = gs->nde;
  double   l = 0;

  PetscFunctionBeginUser;
  PetscCall(BatchRows(c->m, gs, b));
  PetscCall(ForwardShared(gs, PETSC_FALSE));
  PetscCall(ForwardCells(gs, pass, b->n, d));
  for (PetscInt i = 0; i < b->n; i++) {
    const PetscInt *de = gs->de + (size_t)d->cell_group[b->local[i]] * K;
    double          s = 0;
    PetscInt        nk = 0;
    for (PetscInt k = 0; k < K && de[k] >= 0; k++, nk++) {
      double e = (double)gs->o2[(size_t)i * G + de[k]] + gs->x[(size_t)i * G + de[k]] - gs->y[(size_t)i * G + de[k]];
      s += e * e;
    }
    if (nk) l += s / nk;
  }
  l /= (double)pass->nglobal;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &l, 1, MPI_DOUBLE, MPI_SUM, pass->comm));
  *loss = l;
  PetscFunctionReturn(0);
}

static PetscErrorCode PostStep(void *ctx, PetscInt set, int64_t step)
{
  PetscFunctionBeginUser;
  (void)set, (void)step;
  PetscCall(RenormEmbeddings(((Ctx *)ctx)->gs));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelFit_Gears(CsModel m)
{
  Gears             *gs = (Gears *)m->data;
  Ctx                c  = {m, gs};
  CsTrainerCallbacks cb = {&c, Step, Loss, PostStep};

  PetscFunctionBeginUser;
  PetscCall(CsModelTrainGroups(m, gs->trainer, &cb, gs->use));
  PetscFunctionReturn(0);
}

/* Eval mode: the shift depends on the condition only; the prediction is each control cell plus it. */
static PetscErrorCode CsModelPredict_Gears(CsModel m, const CsCondition *cond, PetscInt ctx, const CsCSR *ctrl, float *out)
{
  Gears   *gs = (Gears *)m->data;
  PetscInt G = gs->G, k;
  CsNNPass pass = {PETSC_COMM_SELF, PETSC_FALSE, 1, 0, 0, NULL, 0, NULL};

  PetscFunctionBeginUser;
  (void)ctx;
  PetscCheck(ctrl->ncols == G, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ, "gears: %" PetscInt_FMT " genes, fitted with %" PetscInt_FMT, ctrl->ncols, G);
  PetscCall(CsDesignFindCondition(m->design, cond->name, cond->dose[0] ? cond->dose : NULL, &k));
  PetscCheck(k >= 0, PETSC_COMM_SELF, PETSC_ERR_ARG_WRONG, "gears: condition %s is not in the design", cond->name);
  for (PetscInt a = 0; a < cond->natoms; a++)
    PetscCheck(gs->atom_node[cond->atoms[a]] >= 0, PETSC_COMM_SELF, CS_ERR_INPUT, "gears: atom %s of %s is not in the GO graph: GEARS cannot predict it",
               m->design->atoms[cond->atoms[a]], cond->name);
  gs->cond[0] = k;
  PetscCall(ForwardShared(gs, PETSC_FALSE));
  PetscCall(ForwardCells(gs, &pass, 1, m->design));
  for (PetscInt i = 0; i < ctrl->nrows; i++) {
    float *o = out + (size_t)i * G;
    for (PetscInt j = 0; j < G; j++) o[j] = gs->o2[j];
    for (int64_t e = ctrl->indptr[i]; e < ctrl->indptr[i + 1]; e++) o[ctrl->indices[e]] += ctrl->data[e];
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelSave_Gears(CsModel m, hid_t g)
{
  Gears *gs = (Gears *)m->data;

  PetscFunctionBeginUser;
  if (g < 0) PetscFunctionReturn(0);
  PetscCall(CsNNParamsSave(gs->P, g));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelLoad_Gears(CsModel m, hid_t g)
{
  Gears *gs = (Gears *)m->data;

  PetscFunctionBeginUser;
  PetscCall(CsNNParamsLoad(gs->P, g, "model.h5"));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelView_Gears(CsModel m, PetscViewer v)
{
  Gears *gs = (Gears *)m->data;

  PetscFunctionBeginUser;
  PetscCall(PetscViewerASCIIPrintf(v,
                                   "GEARS %" PetscInt_FMT " genes, hidden %" PetscInt_FMT ", %" PetscInt_FMT " co-expression and %" PetscInt_FMT
                                   " GO layers, co-expression graph %" PetscInt_FMT " edges, GO neighbourhood %" PetscInt_FMT
                                   " genes; autofocus gamma %g, direction lambda %g\n",
                                   gs->G, gs->h, gs->gene_layers, gs->go_layers, gs->co_edges, gs->nnode, (double)gs->gamma, (double)gs->lambda));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelDestroy_Gears(CsModel m)
{
  Gears *gs = (Gears *)m->data;

  PetscFunctionBeginUser;
  PetscCall(CsTrainerDestroy(&gs->trainer));
  PetscCall(CsMLPDestroy(&gs->v2));
  PetscCall(CsMLPDestroy(&gs->fuse));
  PetscCall(CsMLPDestroy(&gs->recov));
  PetscCall(CsMLPDestroy(&gs->cross));
  PetscCall(CsNNParamsDestroy(&gs->P));
  PetscCall(CsCSRFree(&gs->Aco));
  PetscCall(CsCSRFree(&gs->Ago));
  PetscCall(CsNNTransposeDestroy(&gs->ATco));
  PetscCall(CsNNTransposeDestroy(&gs->ATgo));
  PetscCall(PetscFree(gs->atom_node));
  PetscCall(PetscFree(gs->use));
  PetscCall(PetscFree(gs->ctx_used));
  PetscCall(PetscFree2(gs->mask, gs->mask_n));
  PetscCall(PetscFree(gs->ref));
  PetscCall(PetscFree(gs->expressed));
  PetscCall(PetscFree(gs->de));
  PetscCall(PetscFree4(gs->t_cow, gs->t_cob, gs->t_gow, gs->t_gob));
  {
    float *f[] = {gs->e1, gs->xhat1, gs->rstd1, gs->e2, gs->pos, gs->coq, gs->base, gs->dbase, gs->de2, gs->u, gs->uq, gs->du, gs->duq, gs->s, gs->ds, gs->fz,
                  gs->Hin, gs->Hbn, gs->Hxhat, gs->Hrstd, gs->Hrel, gs->dH, gs->dH2, gs->o1, gs->do1, gs->o2, gs->dpred, gs->x, gs->y, gs->tmp};
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) PetscCall(PetscFree(f[i]));
  }
  PetscCall(PetscFree2(gs->roww, gs->bnwork));
  PetscCall(PetscFree3(gs->cond, gs->ctx, gs->count));
  PetscCall(PetscFree(gs->prow));
  PetscCall(PetscFree(m->data));
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelCreate_Gears(CsModel m)
{
  Gears *gs;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&gs));
  gs->hidden = 64, gs->gene_layers = 1, gs->go_layers = 1, gs->co_topk = 20, gs->go_topk = 20, gs->nde = 20;
  gs->co_threshold = 0.4, gs->go_threshold = 0.1, gs->gamma = 2, gs->lambda = 0.1;
  m->data                = gs;
  m->trains              = PETSC_TRUE;
  m->ops->setfromoptions = CsModelSetFromOptions_Gears;
  m->ops->setup          = CsModelSetUp_Gears;
  m->ops->fit            = CsModelFit_Gears;
  m->ops->predict        = CsModelPredict_Gears;
  m->ops->save           = CsModelSave_Gears;
  m->ops->load           = CsModelLoad_Gears;
  m->ops->view           = CsModelView_Gears;
  m->ops->destroy        = CsModelDestroy_Gears;
  PetscFunctionReturn(0);
}
