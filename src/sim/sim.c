/* cellshift simulate: see include/cellshift/sim.h. */
#include <cellshift/sim.h>
#include <cellshift/h5ad.h>
#include <cellshift/priors.h>
#include <cellshift/rng.h>

/* Counter space of CS_STREAM_DATA: cells use a = cell index; the network and the tables use a >= A_TABLE. */
#define A_TABLE   (1ull << 62)
#define TAG_CELL  (1ull << 60) /* cell-level draws: b = TAG_CELL + what (gene draws use b < 2^52) */
enum { T_DEPTH, T_BATCH, T_QUAL, T_QTYPE, T_PARTNER };
enum { Q_OK, Q_LOWDEPTH, Q_MITO, Q_DOUBLET, Q_N };
static const char *const QualityNames[] = {"ok", "low_depth", "high_mito", "doublet"};
enum { P_CONTROL, P_KD, P_ACT, P_DOUBLE, P_DRUG, P_N };
static const char *const PTypeNames[] = {"control", "CRISPRi", "CRISPRa", "double", "drug"};

enum { SIM_AUTO, SIM_CSR, SIM_DENSE };
static const char *const SimFormats[] = {"auto", "csr", "dense"};

typedef struct {
  char     label[128]; /* condition label: "control", "KLF1", "KLF1+GATA1", "drug2@0.5" */
  PetscInt pert;       /* index into the perturbation categories (label without dose) */
  PetscInt dose;       /* index into the dose categories */
  PetscInt type;       /* P_* */
  PetscInt n;          /* genes hit */
  PetscInt gene[16];
  double   m[16];      /* multiplier of each */
} Cond;

struct _n_CsSim {
  MPI_Comm    comm;
  PetscMPIInt rank, size;
  /* options */
  PetscInt  ncells, ngenes, nreg, nctx, nsingles, ndoubles, ndrugs, drug_targets, ndoses, nbatches, block;
  PetscReal ctx_sd, knockdown, activation, act_frac, ctrl_frac, depth, depth_sdlog, dispersion, batch_sd, lowq, hill,
            weight, doses[16];
  PetscInt  seed;
  char      output[PETSC_MAX_PATH_LEN], network[64], depth_from[PETSC_MAX_PATH_LEN];
  CsPriors  priors;
  /* network: genes [0, gn) regulated, [gn, ngenes) mito */
  PetscInt  gn, nmito;
  char    **names;
  PetscInt *ptr, *reg; /* regulators of gene j: reg[ptr[j]..ptr[j+1]) */
  double   *w, *K, *alpha, *ctx_alpha, *theta, *bf; /* w, sign in w's sign; ctx_alpha[nctx x gn]; bf[nbatches x ngenes] */
  PetscBool dag;
  PetscInt  format; /* -sim_format: SIM_AUTO, SIM_CSR, SIM_DENSE */
  /* conditions and truth */
  PetscInt  ncond, npert, ndosecat, nctrl_slots, nslots;
  Cond     *cond;
  char    **pertcats, **dosecats, **ctxcats, **batchcats;
  double   *truth; /* [ncond x nctx x ngenes] */
  PetscInt  ndepth;
  double   *depths; /* sorted total counts of -sim_depth_from */
  CsPerm    perm;
};

PetscErrorCode CsSimCreate(MPI_Comm comm, CsSim *out)
{
  CsSim s;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&s));
  s->comm = comm;
  PetscCallMPI(MPI_Comm_rank(comm, &s->rank));
  PetscCallMPI(MPI_Comm_size(comm, &s->size));
  s->ncells = 10000, s->ngenes = 1000, s->nreg = -1, s->nctx = 3, s->nsingles = 20, s->ndoubles = 5, s->ndrugs = 2;
  s->drug_targets = 3, s->ndoses = 2, s->doses[0] = 0.1, s->doses[1] = 1.0, s->nbatches = 1, s->block = 1024;
  s->ctx_sd = 1.0, s->knockdown = 0.1, s->activation = 4.0, s->act_frac = 0.25, s->ctrl_frac = 0.2, s->depth = 5000;
  s->depth_sdlog = 0.4, s->dispersion = 5.0, s->batch_sd = 0.2, s->lowq = 0, s->hill = 2, s->weight = 3, s->seed = 1;
  PetscCall(PetscStrncpy(s->network, "random", sizeof(s->network)));
  PetscCall(CsPriorsCreate(comm, &s->priors));
  *out = s;
  PetscFunctionReturn(0);
}

PetscErrorCode CsSimSetFromOptions(CsSim s)
{
  MPI_Comm  comm = s->comm;
  PetscInt  nd   = 16;
  PetscBool set;


  PetscFunctionBeginUser;
  PetscOptionsBegin(comm, NULL, "Simulation (cellshift simulate)", "CsSim");
  PetscCall(PetscOptionsInt("-cells", "Number of cells", "CsSimSetFromOptions", s->ncells, &s->ncells, NULL));
  PetscCall(PetscOptionsInt("-genes", "Number of genes (network genes plus up to 13 mitochondrial MT-k genes)", "CsSimSetFromOptions", s->ngenes,
                            &s->ngenes, NULL));
  PetscCall(PetscOptionsString("-output", "The .h5ad file to write (FILE.truth.h5ad and FILE.network.tsv beside it)", "CsSimSetFromOptions",
                               s->output, s->output, sizeof(s->output), NULL));
  PetscCall(PetscOptionsInt("-sim_seed", "Seed: the same seed gives the same files for any number of ranks", "CsSimSetFromOptions", s->seed,
                            &s->seed, NULL));
  PetscCall(PetscOptionsString("-sim_network", "Network topology: random (scale-free DAG), dorothea, trrust, dorothea+trrust",
                               "CsSimSetFromOptions", s->network, s->network, sizeof(s->network), NULL));
  PetscCall(PetscOptionsInt("-sim_regulators", "Regulators of the network (-1: genes / 20)", "CsSimSetFromOptions", s->nreg, &s->nreg, NULL));
  PetscCall(PetscOptionsReal("-sim_weight", "Median weight of an edge (basal activities are about 1)", "CsSimSetFromOptions", s->weight,
                             &s->weight, NULL));
  PetscCall(PetscOptionsReal("-sim_hill", "Hill coefficient", "CsSimSetFromOptions", s->hill, &s->hill, NULL));
  PetscCall(PetscOptionsInt("-sim_contexts", "Cell types (obs cell_type)", "CsSimSetFromOptions", s->nctx, &s->nctx, NULL));
  PetscCall(PetscOptionsReal("-sim_context_sd", "Log-sd of the regulators' basal activities between cell types", "CsSimSetFromOptions",
                             s->ctx_sd, &s->ctx_sd, NULL));
  PetscCall(PetscOptionsInt("-sim_singles", "Single-gene perturbations (half regulators, half targets)", "CsSimSetFromOptions", s->nsingles,
                            &s->nsingles, NULL));
  PetscCall(PetscOptionsInt("-sim_doubles", "Double perturbations (pairs of the singles)", "CsSimSetFromOptions", s->ndoubles, &s->ndoubles,
                            NULL));
  PetscCall(PetscOptionsInt("-sim_drugs", "Drug-like perturbations (each inhibits -sim_drug_targets genes)", "CsSimSetFromOptions",
                            s->ndrugs, &s->ndrugs, NULL));
  PetscCall(PetscOptionsInt("-sim_drug_targets", "Genes each drug hits", "CsSimSetFromOptions", s->drug_targets, &s->drug_targets, NULL));
  PetscCall(PetscOptionsRealArray("-sim_doses", "Doses of every drug (in units of the median IC50)", "CsSimSetFromOptions", s->doses, &nd,
                                  &set));
  if (set) s->ndoses = nd;
  PetscCall(PetscOptionsReal("-sim_knockdown", "Residual expression of a knocked-down gene", "CsSimSetFromOptions", s->knockdown,
                             &s->knockdown, NULL));
  PetscCall(PetscOptionsReal("-sim_activation", "Fold of an activated gene", "CsSimSetFromOptions", s->activation, &s->activation, NULL));
  PetscCall(PetscOptionsReal("-sim_activation_fraction", "Fraction of the singles that are activations (CRISPRa)", "CsSimSetFromOptions",
                             s->act_frac, &s->act_frac, NULL));
  PetscCall(PetscOptionsReal("-sim_control_fraction", "Fraction of control cells", "CsSimSetFromOptions", s->ctrl_frac, &s->ctrl_frac,
                             NULL));
  PetscCall(PetscOptionsReal("-sim_depth", "Median library size (lognormal)", "CsSimSetFromOptions", s->depth, &s->depth, NULL));
  PetscCall(PetscOptionsReal("-sim_depth_sdlog", "Log-sd of the library size", "CsSimSetFromOptions", s->depth_sdlog, &s->depth_sdlog,
                             NULL));
  PetscCall(PetscOptionsString("-sim_depth_from", "Draw library sizes from the total counts of the cells of this .h5ad", "CsSimSetFromOptions",
                               s->depth_from, s->depth_from, sizeof(s->depth_from), NULL));
  PetscCall(PetscOptionsReal("-sim_dispersion", "Median negative binomial dispersion theta (variance mu + mu^2/theta)",
                             "CsSimSetFromOptions", s->dispersion, &s->dispersion, NULL));
  PetscCall(PetscOptionsInt("-sim_batches", "Batches (obs batch), each with its own gene factors", "CsSimSetFromOptions", s->nbatches,
                            &s->nbatches, NULL));
  PetscCall(PetscOptionsReal("-sim_batch_sd", "Log-sd of the batch factors", "CsSimSetFromOptions", s->batch_sd, &s->batch_sd, NULL));
  PetscCall(PetscOptionsReal("-sim_low_quality", "Fraction of low-quality cells (low depth, high mito, doublets; obs quality)",
                             "CsSimSetFromOptions", s->lowq, &s->lowq, NULL));
  PetscCall(PetscOptionsInt("-sim_block", "Rows a rank generates and writes at a time", "CsSimSetFromOptions", s->block, &s->block, NULL));
  PetscCall(PetscOptionsEList("-sim_format", "X on disk: csr, dense (float32 rows), auto (csr when under half the entries are non-zero: its 8 bytes "
                              "per non-zero are then fewer than dense's 4 per entry)", "CsSimSetFromOptions", SimFormats, 3, SimFormats[s->format],
                              &s->format, NULL));
  PetscOptionsEnd();
  PetscCall(CsPriorsSetFromOptions(s->priors));
  PetscFunctionReturn(0);
}

/* The options' values (read by CsSimSetFromOptions; checked here, not there, so that -help lists them). */
static PetscErrorCode CheckOptions(CsSim s)
{
  MPI_Comm comm = s->comm;

  PetscFunctionBeginUser;

  CsCheckAll(comm, s->ncells >= 1, "-cells %" PetscInt_FMT ": give at least one cell", s->ncells);
  CsCheckAll(comm, s->ngenes >= 10, "-genes %" PetscInt_FMT ": give at least 10 genes", s->ngenes);
  {
    size_t len = strlen(s->output);
    CsCheckAll(comm, len > 5 && !strcmp(s->output + len - 5, ".h5ad"), "-output '%s': give the .h5ad file to write (-output FILE.h5ad)",
               s->output);
  }
  CsCheckAll(comm, !strcmp(s->network, "random") || !strcmp(s->network, "dorothea") || !strcmp(s->network, "trrust") ||
                     !strcmp(s->network, "dorothea+trrust") || !strcmp(s->network, "trrust+dorothea"),
             "-sim_network %s: the networks are random, dorothea, trrust and dorothea+trrust", s->network);
  CsCheckAll(comm, s->nctx >= 1 && s->nctx <= 1000, "-sim_contexts %" PetscInt_FMT ": give 1 to 1000 cell types", s->nctx);
  CsCheckAll(comm, s->nbatches >= 1 && s->nbatches <= 1000, "-sim_batches %" PetscInt_FMT ": give 1 to 1000 batches", s->nbatches);
  CsCheckAll(comm, s->nsingles >= 0 && s->ndoubles >= 0 && s->ndrugs >= 0, "-sim_singles, -sim_doubles and -sim_drugs cannot be negative");
  CsCheckAll(comm, s->nsingles + s->ndoubles + s->ndrugs > 0, "nothing to perturb: give -sim_singles, -sim_doubles or -sim_drugs");
  CsCheckAll(comm, s->ndoubles <= s->nsingles * (s->nsingles - 1) / 2,
             "-sim_doubles %" PetscInt_FMT ": %" PetscInt_FMT " singles make at most %" PetscInt_FMT " pairs", s->ndoubles, s->nsingles,
             s->nsingles * (s->nsingles - 1) / 2);
  CsCheckAll(comm, s->drug_targets >= 1 && s->drug_targets <= 16, "-sim_drug_targets %" PetscInt_FMT ": give 1 to 16", s->drug_targets);
  CsCheckAll(comm, s->ndrugs == 0 || s->ndoses >= 1, "-sim_doses: give at least one dose for the drugs");
  for (PetscInt k = 0; k < s->ndoses; k++) CsCheckAll(comm, s->doses[k] > 0, "-sim_doses: dose %g is not positive", (double)s->doses[k]);
  CsCheckAll(comm, s->knockdown >= 0 && s->knockdown < 1, "-sim_knockdown %g: the residual expression must be in [0, 1)", (double)s->knockdown);
  CsCheckAll(comm, s->activation > 1, "-sim_activation %g: the fold must exceed 1", (double)s->activation);
  CsCheckAll(comm, s->act_frac >= 0 && s->act_frac <= 1, "-sim_activation_fraction %g must be in [0, 1]", (double)s->act_frac);
  CsCheckAll(comm, s->ctrl_frac > 0 && s->ctrl_frac < 1, "-sim_control_fraction %g must be in (0, 1)", (double)s->ctrl_frac);
  CsCheckAll(comm, s->depth > 0 && s->depth_sdlog >= 0, "-sim_depth must be positive and -sim_depth_sdlog not negative");
  CsCheckAll(comm, s->dispersion > 0, "-sim_dispersion %g must be positive", (double)s->dispersion);
  CsCheckAll(comm, s->lowq >= 0 && s->lowq < 1, "-sim_low_quality %g must be in [0, 1)", (double)s->lowq);
  CsCheckAll(comm, s->hill > 0 && s->weight >= 0 && s->ctx_sd >= 0 && s->batch_sd >= 0,
             "-sim_hill must be positive; -sim_weight, -sim_context_sd and -sim_batch_sd not negative");
  CsCheckAll(comm, s->block >= 1, "-sim_block %" PetscInt_FMT " must be at least 1", s->block);
  CsCheckAll(comm, s->seed >= 0, "-sim_seed %" PetscInt_FMT " cannot be negative", s->seed);
  PetscFunctionReturn(0);
}

static inline double U(const CsSim s, uint64_t a, uint64_t b) { return CsRngUniform((uint64_t)s->seed, CS_STREAM_DATA, a, b); }
static inline double Z(const CsSim s, uint64_t a, uint64_t b)
{
  double z[2];
  CsRngNormal2((uint64_t)s->seed, CS_STREAM_DATA, a, b, z);
  return z[0];
}

/* ------------------------------------------------- network ------------------------------------------------- */
/* Random scale-free DAG: regulator j (j < nreg) has up to 2 regulators among the earlier regulators, target j
   1 to 3 among all regulators, chosen with probability proportional to out-degree + 1 (preferential attachment). */
static PetscErrorCode RandomNetwork(CsSim s)
{
  PetscInt gn = s->gn, R = s->nreg, cap = 3 * gn, ne = 0, *deg;
  int      width = 1;

  PetscFunctionBeginUser;
  for (PetscInt v = gn; v >= 10; v /= 10) width++;
  PetscCall(PetscMalloc1(gn, &s->names));
  for (PetscInt j = 0; j < gn; j++) {
    char buf[64];
    PetscCall(PetscSNPrintf(buf, sizeof(buf), "%s%0*d", j < R ? "TF" : "G", width, (int)j));
    PetscCall(PetscStrallocpy(buf, &s->names[j]));
  }
  PetscCall(PetscMalloc3(gn + 1, &s->ptr, cap, &s->reg, cap, &s->w));
  PetscCall(PetscCalloc1(R, &deg));
  s->ptr[0] = 0;
  for (PetscInt j = 0; j < gn; j++) {
    PetscInt pool = j < R ? j : R, want, got = 0;
    double   u    = U(s, A_TABLE + 1, (uint64_t)j);
    want          = j < R ? (u < 0.6 ? 1 : 2) : (u < 0.5 ? 1 : u < 0.85 ? 2 : 3);
    want          = PetscMin(want, pool);
    for (PetscInt t = 0; t < 32 && got < want; t++) {
      double tot = 0, v;
      PetscInt r;
      for (PetscInt q = 0; q < pool; q++) tot += deg[q] + 1;
      v = U(s, A_TABLE + 2, (uint64_t)j * 64 + (uint64_t)t) * tot;
      for (r = 0; r < pool - 1 && v >= deg[r] + 1; r++) v -= deg[r] + 1;
      PetscBool dup = PETSC_FALSE;
      for (PetscInt e = s->ptr[j]; e < ne; e++) dup = dup || s->reg[e] == r;
      if (dup) continue;
      s->reg[ne] = r;
      s->w[ne]   = s->weight * exp(0.5 * Z(s, A_TABLE + 3, (uint64_t)ne)) * (U(s, A_TABLE + 4, (uint64_t)ne) < 0.7 ? 1 : -1);
      deg[r]++, ne++, got++;
    }
    s->ptr[j + 1] = ne;
  }
  PetscCall(PetscFree(deg));
  s->dag = PETSC_TRUE;
  PetscFunctionReturn(0);
}

/* The prior's best-connected regulators (out-degree, then name) and their targets, taken round-robin, until gn
   genes; the prior's edges among them (sign 0 taken as activation; self-loops dropped). */
static PetscErrorCode PriorNetwork(CsSim s)
{
  const CsPriorGraph *g;
  PetscInt           *deg, *order, *sel, nsel = 0, *pos, cap, ne = 0, R;

  PetscFunctionBeginUser;
  PetscCall(CsPriorsGetRegulons(s->priors, s->network, &g));
  CsCheckAll(s->comm, g->nnodes >= s->gn, "-sim_network %s has %" PetscInt_FMT " genes, fewer than the %" PetscInt_FMT " network genes asked for",
             s->network, g->nnodes, s->gn);
  PetscCall(PetscMalloc4(g->nnodes, &deg, g->nnodes, &order, s->gn, &sel, g->nnodes, &pos));
  CsPriorGraphOutDegree(g, deg);
  for (PetscInt i = 0; i < g->nnodes; i++) order[i] = i, pos[i] = -1;
  /* selection sort of the top regulators is enough: R is small */
  R = 0;
  for (PetscInt i = 0; i < g->nnodes; i++) R += deg[i] > 0;
  R = PetscMin(R, s->nreg);
  for (PetscInt k = 0; k < R; k++) {
    PetscInt best = k;
    for (PetscInt i = k + 1; i < g->nnodes; i++)
      if (deg[order[i]] > deg[order[best]]) best = i;
    PetscInt t = order[k];
    order[k] = order[best], order[best] = t;
    pos[order[k]] = nsel, sel[nsel++] = order[k];
  }
  {
    PetscInt *next; /* next edge of each chosen regulator */
    PetscBool any = PETSC_TRUE;
    PetscCall(PetscMalloc1(PetscMax(R, 1), &next));
    for (PetscInt k = 0; k < R; k++) {
      PetscInt e = 0;
      while (e < g->nedges && g->src[e] != sel[k]) e++;
      next[k] = e;
    }
    while (nsel < s->gn && any) {
      any = PETSC_FALSE;
      for (PetscInt k = 0; k < R && nsel < s->gn; k++) {
        while (next[k] < g->nedges && g->src[next[k]] == sel[k] && pos[g->dst[next[k]]] >= 0) next[k]++;
        if (next[k] < g->nedges && g->src[next[k]] == sel[k]) {
          PetscInt d = g->dst[next[k]++];
          pos[d] = nsel, sel[nsel++] = d, any = PETSC_TRUE;
        }
      }
    }
    PetscCall(PetscFree(next));
  }
  for (PetscInt i = 0; i < g->nnodes && nsel < s->gn; i++) /* too few targets: any other genes of the prior */
    if (pos[i] < 0) pos[i] = nsel, sel[nsel++] = i;
  PetscCall(PetscMalloc1(s->gn, &s->names));
  for (PetscInt j = 0; j < s->gn; j++) PetscCall(PetscStrallocpy(g->nodes[sel[j]], &s->names[j]));
  cap = 0;
  for (PetscInt e = 0; e < g->nedges; e++) cap += pos[g->src[e]] >= 0 && pos[g->dst[e]] >= 0 && g->src[e] != g->dst[e];
  PetscCall(PetscMalloc3(s->gn + 1, &s->ptr, PetscMax(cap, 1), &s->reg, PetscMax(cap, 1), &s->w));
  s->ptr[0] = 0;
  s->dag    = PETSC_TRUE;
  for (PetscInt j = 0; j < s->gn; j++) { /* regulators of gene j: O(edges) per gene is fine at these sizes */
    for (PetscInt e = 0; e < g->nedges; e++) {
      if (g->dst[e] != sel[j] || g->src[e] == g->dst[e] || pos[g->src[e]] < 0) continue;
      s->reg[ne] = pos[g->src[e]];
      s->dag     = s->dag && s->reg[ne] < j ? PETSC_TRUE : PETSC_FALSE;
      s->w[ne]   = s->weight * exp(0.5 * Z(s, A_TABLE + 3, (uint64_t)ne)) * (g->weight[e] < 0 ? -1 : 1);
      ne++;
    }
    s->ptr[j + 1] = ne;
  }
  s->nreg = R;
  PetscCall(PetscFree4(deg, order, sel, pos));
  PetscFunctionReturn(0);
}

/* Gauss-Seidel on x = m (a + sum w H(x)); on a DAG in gene order one sweep is exact, a second confirms it. */
static PetscErrorCode SteadyState(CsSim s, PetscInt c, const double m[], double x[], const char what[])
{
  const double *a = s->ctx_alpha + (size_t)c * (size_t)s->gn;
  PetscInt      it;
  double        n = s->hill;

  PetscFunctionBeginUser;
  for (PetscInt j = 0; j < s->gn; j++) x[j] = m[j] * a[j];
  for (it = 0; it < 2000; it++) {
    double dmax = 0, damp = it < 100 ? 1.0 : 0.5;
    for (PetscInt j = 0; j < s->gn; j++) {
      double v = a[j];
      for (PetscInt e = s->ptr[j]; e < s->ptr[j + 1]; e++) {
        PetscInt r  = s->reg[e];
        double   xn = pow(x[r], n), kn = pow(s->K[r], n), h = xn / (kn + xn);
        v += fabs(s->w[e]) * (s->w[e] > 0 ? h : 1 - h);
      }
      v *= m[j];
      dmax = PetscMax(dmax, fabs(v - x[j]) / (fabs(x[j]) + 1e-300));
      x[j] += damp * (v - x[j]);
    }
    if (dmax < 1e-13) break;
  }
  PetscCheck(it < 2000, PETSC_COMM_SELF, CS_ERR_INPUT,
             "the network has no stable steady state for %s in cell type %" PetscInt_FMT " (the fixed-point iteration does not converge): "
             "lower -sim_weight or -sim_hill", what, c);
  PetscFunctionReturn(0);
}

/* ------------------------------------------------ conditions ----------------------------------------------- */
static PetscErrorCode AddCategory(PetscInt *n, char ***cats, const char name[], PetscInt *idx)
{
  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < *n; k++)
    if (!strcmp((*cats)[k], name)) {
      *idx = k;
      PetscFunctionReturn(0);
    }
  PetscCall(PetscRealloc(sizeof(char *) * (size_t)(*n + 1), cats));
  PetscCall(PetscStrallocpy(name, &(*cats)[*n]));
  *idx = (*n)++;
  PetscFunctionReturn(0);
}

static PetscErrorCode BuildConditions(CsSim s)
{
  PetscInt *regs, *tgts, nr = 0, nt = 0, *single, one;
  CsPerm    pr, pt;

  PetscFunctionBeginUser;
  s->ncond = 1 + s->nsingles + s->ndoubles + s->ndrugs * s->ndoses;
  PetscCall(PetscCalloc1(s->ncond, &s->cond));
  PetscCall(PetscMalloc3(s->gn, &regs, s->gn, &tgts, s->nsingles + 1, &single));
  for (PetscInt j = 0; j < s->gn; j++) {
    PetscBool isreg = PETSC_FALSE;
    for (PetscInt e = 0; e < s->ptr[s->gn] && !isreg; e++) isreg = s->reg[e] == j;
    if (isreg) regs[nr++] = j;
    else tgts[nt++] = j;
  }
  CsCheckAll(s->comm, s->nsingles <= s->gn, "-sim_singles %" PetscInt_FMT " exceeds the %" PetscInt_FMT " network genes", s->nsingles, s->gn);
  CsCheckAll(s->comm, s->drug_targets <= s->gn, "-sim_drug_targets %" PetscInt_FMT " exceeds the %" PetscInt_FMT " network genes",
             s->drug_targets, s->gn);
  CsPermInit(&pr, (uint64_t)PetscMax(nr, 1), (uint64_t)s->seed, CS_STREAM_DATA, 11);
  CsPermInit(&pt, (uint64_t)PetscMax(nt, 1), (uint64_t)s->seed, CS_STREAM_DATA, 12);
  PetscCall(AddCategory(&s->ndosecat, &s->dosecats, "1", &one));
  PetscCall(PetscStrncpy(s->cond[0].label, "control", sizeof(s->cond[0].label)));
  PetscCall(AddCategory(&s->npert, &s->pertcats, "control", &s->cond[0].pert));
  s->cond[0].dose = one, s->cond[0].type = P_CONTROL;
  /* singles: alternately a regulator and a target while both last */
  for (PetscInt k = 0, ir = 0, it = 0; k < s->nsingles; k++) {
    Cond    *c   = &s->cond[1 + k];
    PetscBool reg = (k % 2 == 0 && ir < nr) || it >= nt;
    PetscInt  g   = reg ? regs[CsPermApply(&pr, (uint64_t)ir++)] : tgts[CsPermApply(&pt, (uint64_t)it++)];
    PetscBool act = U(s, A_TABLE + 5, (uint64_t)k) < s->act_frac;
    single[k] = g;
    c->n = 1, c->gene[0] = g, c->m[0] = act ? s->activation : s->knockdown, c->type = act ? P_ACT : P_KD, c->dose = one;
    PetscCall(PetscStrncpy(c->label, s->names[g], sizeof(c->label)));
    PetscCall(AddCategory(&s->npert, &s->pertcats, c->label, &c->pert));
  }
  /* doubles: distinct pairs of singles */
  for (PetscInt k = 0, t = 0; k < s->ndoubles; t++) {
    PetscInt a = (PetscInt)(U(s, A_TABLE + 6, 2 * (uint64_t)t) * (double)s->nsingles);
    PetscInt b = (PetscInt)(U(s, A_TABLE + 6, 2 * (uint64_t)t + 1) * (double)s->nsingles);
    PetscBool dup = a == b;
    Cond    *c   = &s->cond[1 + s->nsingles + k];
    if (a > b) { PetscInt tmp = a; a = b, b = tmp; }
    for (PetscInt q = 0; q < k && !dup; q++) {
      const Cond *o = &s->cond[1 + s->nsingles + q];
      dup = o->gene[0] == single[a] && o->gene[1] == single[b];
    }
    if (t > 100000 + 100 * s->ndoubles) { /* pathological: take the first free pair in order */
      for (a = 0; a < s->nsingles && dup; a++)
        for (b = a + 1; b < s->nsingles && dup; b++) {
          dup = PETSC_FALSE;
          for (PetscInt q = 0; q < k && !dup; q++) dup = s->cond[1 + s->nsingles + q].gene[0] == single[a] && s->cond[1 + s->nsingles + q].gene[1] == single[b];
          if (!dup) break;
        }
    }
    if (dup) continue;
    c->n = 2, c->gene[0] = single[a], c->gene[1] = single[b], c->type = P_DOUBLE, c->dose = one;
    c->m[0] = s->cond[1 + a].m[0], c->m[1] = s->cond[1 + b].m[0];
    { /* atoms in alphabetical order, as cellshift writes a combination */
      const char *x = s->names[single[a]], *y = s->names[single[b]];
      if (strcmp(x, y) > 0) { const char *t2 = x; x = y, y = t2; }
      PetscCall(PetscSNPrintf(c->label, sizeof(c->label), "%s+%s", x, y));
    }
    PetscCall(AddCategory(&s->npert, &s->pertcats, c->label, &c->pert));
    k++;
  }
  /* drugs: each inhibits drug_targets genes (regulators first) with its own IC50s, at every dose */
  for (PetscInt d = 0; d < s->ndrugs; d++) {
    PetscInt tg[16], pert;
    double   ic50[16];
    char     name[64];
    for (PetscInt q = 0, t = 0; q < s->drug_targets; t++) {
      PetscBool fromreg = nr > 0 && (q % 2 == 0 || nt == 0);
      PetscInt  g = fromreg ? regs[(PetscInt)(U(s, A_TABLE + 7, (uint64_t)(d * 4096 + t)) * nr)] : tgts[(PetscInt)(U(s, A_TABLE + 7, (uint64_t)(d * 4096 + t)) * nt)];
      PetscBool dup = PETSC_FALSE;
      for (PetscInt r = 0; r < q; r++) dup = dup || tg[r] == g;
      if (dup && t < 4000) continue;
      if (dup) { /* fewer distinct genes than asked: the first free one */
        for (g = 0; g < s->gn; g++) {
          dup = PETSC_FALSE;
          for (PetscInt r = 0; r < q; r++) dup = dup || tg[r] == g;
          if (!dup) break;
        }
      }
      tg[q]   = g;
      ic50[q] = exp(0.5 * Z(s, A_TABLE + 8, (uint64_t)(d * 16 + q)));
      q++;
    }
    PetscCall(PetscSNPrintf(name, sizeof(name), "drug%" PetscInt_FMT, d + 1));
    PetscCall(AddCategory(&s->npert, &s->pertcats, name, &pert));
    for (PetscInt k = 0; k < s->ndoses; k++) {
      Cond *c = &s->cond[1 + s->nsingles + s->ndoubles + d * s->ndoses + k];
      char  dose[32];
      PetscCall(PetscSNPrintf(dose, sizeof(dose), "%g", (double)s->doses[k]));
      PetscCall(PetscSNPrintf(c->label, sizeof(c->label), "%s@%s", name, dose));
      PetscCall(AddCategory(&s->ndosecat, &s->dosecats, dose, &c->dose));
      c->pert = pert, c->type = P_DRUG, c->n = s->drug_targets;
      for (PetscInt q = 0; q < c->n; q++) c->gene[q] = tg[q], c->m[q] = 1.0 / (1.0 + s->doses[k] / ic50[q]);
    }
  }
  PetscCall(PetscFree3(regs, tgts, single));
  /* labels must be distinct: a drug dose printed alike would merge two conditions */
  for (PetscInt i = 0; i < s->ncond; i++)
    for (PetscInt j = 0; j < i; j++)
      CsCheckAll(s->comm, strcmp(s->cond[i].label, s->cond[j].label), "two conditions are both called %s (give distinct -sim_doses)",
                 s->cond[i].label);
  /* slots: control takes ctrl_frac of the cells */
  {
    PetscInt np   = s->ncond - 1;
    s->nctrl_slots = PetscMax(1, (PetscInt)floor(s->ctrl_frac * np / (1 - s->ctrl_frac) + 0.5));
    s->nslots      = s->nctrl_slots + np;
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsSimSetUp(CsSim s)
{
  PetscErrorCode ierr = 0;
  double        *m, *x;

  PetscFunctionBeginUser;
  PetscCall(CheckOptions(s));
  s->nmito = PetscMin(13, s->ngenes / 50);
  s->gn    = s->ngenes - s->nmito;
  if (s->nreg < 0) s->nreg = PetscMax(2, s->gn / 20);
  CsCheckAll(s->comm, s->nreg >= 1 && s->nreg < s->gn, "-sim_regulators %" PetscInt_FMT " must be in [1, %" PetscInt_FMT ")", s->nreg, s->gn);
  if (!strcmp(s->network, "random")) PetscCall(RandomNetwork(s));
  else PetscCall(PriorNetwork(s));
  PetscCall(PetscRealloc(sizeof(char *) * (size_t)s->ngenes, &s->names));
  for (PetscInt k = 0; k < s->nmito; k++) {
    char buf[32];
    PetscCall(PetscSNPrintf(buf, sizeof(buf), "MT-%" PetscInt_FMT, k + 1));
    PetscCall(PetscStrallocpy(buf, &s->names[s->gn + k]));
  }
  for (PetscInt j = 0; j < s->gn; j++) /* a network gene named like a mito gene would make the names ambiguous */
    CsCheckAll(s->comm, strncmp(s->names[j], "MT-", 3) || s->nmito == 0, "network gene %s clashes with the simulated mitochondrial genes",
               s->names[j]);
  /* basal activities, half-saturation constants, dispersions, batch factors */
  PetscCall(PetscMalloc5(s->gn, &s->alpha, s->gn, &s->K, (size_t)s->nctx * (size_t)s->gn, &s->ctx_alpha, s->ngenes, &s->theta,
                         (size_t)s->nbatches * (size_t)s->ngenes, &s->bf));
  for (PetscInt j = 0; j < s->gn; j++) s->alpha[j] = exp(1.2 * Z(s, A_TABLE + 9, (uint64_t)j));
  for (PetscInt j = 0; j < s->gn; j++) {
    double in = 0;
    for (PetscInt e = s->ptr[j]; e < s->ptr[j + 1]; e++) in += fabs(s->w[e]);
    s->K[j] = s->alpha[j] + 0.5 * in; /* about the middle of the gene's range */
  }
  for (PetscInt c = 0; c < s->nctx; c++)
    for (PetscInt j = 0; j < s->gn; j++) {
      PetscBool isreg = j < s->nreg && !strcmp(s->network, "random");
      if (strcmp(s->network, "random")) isreg = j < s->nreg; /* prior networks list the regulators first too */
      s->ctx_alpha[(size_t)c * s->gn + j] = s->alpha[j] * (isreg ? exp(s->ctx_sd * Z(s, A_TABLE + 10, (uint64_t)c * (uint64_t)s->gn + (uint64_t)j)) : 1.0);
    }
  for (PetscInt j = 0; j < s->ngenes; j++) s->theta[j] = s->dispersion * exp(0.5 * Z(s, A_TABLE + 11, (uint64_t)j));
  for (PetscInt b = 0; b < s->nbatches; b++)
    for (PetscInt j = 0; j < s->ngenes; j++)
      s->bf[(size_t)b * s->ngenes + j] = s->nbatches > 1 ? exp(s->batch_sd * Z(s, A_TABLE + 12, (uint64_t)b * (uint64_t)s->ngenes + (uint64_t)j)) : 1.0;
  PetscCall(BuildConditions(s));
  /* categories of the context and batch columns */
  PetscCall(PetscMalloc2(s->nctx, &s->ctxcats, s->nbatches, &s->batchcats));
  for (PetscInt c = 0; c < s->nctx; c++) {
    char buf[32];
    PetscCall(PetscSNPrintf(buf, sizeof(buf), "type%" PetscInt_FMT, c));
    PetscCall(PetscStrallocpy(buf, &s->ctxcats[c]));
  }
  for (PetscInt b = 0; b < s->nbatches; b++) {
    char buf[32];
    PetscCall(PetscSNPrintf(buf, sizeof(buf), "batch%" PetscInt_FMT, b));
    PetscCall(PetscStrallocpy(buf, &s->batchcats[b]));
  }
  /* the truth: every (condition, context) steady state, as fractions (mito genes 5% of the total) */
  PetscCall(PetscMalloc1((size_t)s->ncond * (size_t)s->nctx * (size_t)s->ngenes, &s->truth));
  PetscCall(PetscMalloc2(s->gn, &m, s->gn, &x));
  for (PetscInt k = 0; k < s->ncond && !ierr; k++) {
    for (PetscInt j = 0; j < s->gn; j++) m[j] = 1;
    for (PetscInt q = 0; q < s->cond[k].n; q++) m[s->cond[k].gene[q]] *= s->cond[k].m[q];
    for (PetscInt c = 0; c < s->nctx && !ierr; c++) {
      double *p = s->truth + ((size_t)k * s->nctx + c) * s->ngenes, tot = 0;
      ierr      = SteadyState(s, c, m, x, s->cond[k].label);
      if (ierr) break;
      for (PetscInt j = 0; j < s->gn; j++) tot += x[j];
      for (PetscInt j = 0; j < s->gn; j++) p[j] = s->nmito ? 0.95 * x[j] / tot : x[j] / tot;
      for (PetscInt j = s->gn; j < s->ngenes; j++) p[j] = 0.05 / s->nmito;
    }
  }
  PetscCall(PetscFree2(m, x));
  PetscCall(CsAgreeCode(s->comm, ierr, "cellshift simulate"));
  CsPermInit(&s->perm, (uint64_t)s->ncells, (uint64_t)s->seed, CS_STREAM_DATA, 13);
  /* library sizes of a real dataset */
  if (s->depth_from[0]) {
    CsH5adBlock b;
    double     *loc;
    PetscMPIInt *cnt, *disp, nl;
    PetscCall(CsH5adRead(s->comm, s->depth_from, "", 0, NULL, NULL, &b));
    PetscCall(PetscMalloc1(PetscMax(b.nlocal, 1), &loc));
    for (PetscInt i = 0; i < b.nlocal; i++) {
      loc[i] = 0;
      for (int64_t e = b.X.indptr[i]; e < b.X.indptr[i + 1]; e++) loc[i] += b.X.data[e];
    }
    PetscCall(PetscMalloc2(s->size, &cnt, s->size, &disp));
    nl = (PetscMPIInt)b.nlocal;
    PetscCallMPI(MPI_Allgather(&nl, 1, MPI_INT, cnt, 1, MPI_INT, s->comm));
    s->ndepth = 0;
    for (PetscMPIInt r = 0; r < s->size; r++) disp[r] = (PetscMPIInt)s->ndepth, s->ndepth += cnt[r];
    PetscCall(PetscMalloc1(PetscMax(s->ndepth, 1), &s->depths));
    PetscCallMPI(MPI_Allgatherv(loc, nl, MPI_DOUBLE, s->depths, cnt, disp, MPI_DOUBLE, s->comm));
    PetscCall(PetscFree2(cnt, disp));
    PetscCall(PetscFree(loc));
    PetscCall(CsH5adBlockFree(&b));
    PetscCall(PetscSortReal(s->ndepth, s->depths));
    CsCheckAll(s->comm, s->ndepth > 0 && s->depths[s->ndepth - 1] > 0, "-sim_depth_from %s: the file has no cells with counts",
               s->depth_from);
  }
  PetscFunctionReturn(0);
}

/* ------------------------------------------------- cells --------------------------------------------------- */
typedef struct {
  PetscInt cond, ctx, batch, quality, partner_cond, partner_ctx;
} Meta;

static void CellMeta(const CsSim s, PetscInt i, Meta *mt)
{
  uint64_t k    = CsPermApply(&s->perm, (uint64_t)i);
  PetscInt slot = (PetscInt)(k % (uint64_t)s->nslots);
  mt->cond      = slot < s->nctrl_slots ? 0 : 1 + slot - s->nctrl_slots;
  mt->ctx       = (PetscInt)((k / (uint64_t)s->nslots) % (uint64_t)s->nctx);
  mt->batch     = s->nbatches > 1 ? PetscMin(s->nbatches - 1, (PetscInt)(U(s, (uint64_t)i, TAG_CELL + T_BATCH) * s->nbatches)) : 0;
  mt->quality   = Q_OK;
  mt->partner_cond = mt->partner_ctx = 0;
  if (s->lowq > 0 && U(s, (uint64_t)i, TAG_CELL + T_QUAL) < s->lowq) mt->quality = 1 + PetscMin(2, (PetscInt)(3 * U(s, (uint64_t)i, TAG_CELL + T_QTYPE)));
  if (mt->quality == Q_DOUBLET) {
    PetscInt j = PetscMin(s->ncells - 1, (PetscInt)(U(s, (uint64_t)i, TAG_CELL + T_PARTNER) * s->ncells));
    uint64_t kj = CsPermApply(&s->perm, (uint64_t)j);
    PetscInt sj = (PetscInt)(kj % (uint64_t)s->nslots);
    mt->partner_cond = sj < s->nctrl_slots ? 0 : 1 + sj - s->nctrl_slots;
    mt->partner_ctx  = (PetscInt)((kj / (uint64_t)s->nslots) % (uint64_t)s->nctx);
  }
}

/* Uniforms of one (cell, gene): Philox blocks b = gene << 20 | k, two doubles per block. */
typedef struct {
  uint64_t seed, a, b;
  uint32_t w[4];
  int      used;
} Draws;

static inline double Next(Draws *d)
{
  if (d->used >= 4) {
    CsRng4(d->seed, CS_STREAM_DATA, d->a, d->b++, d->w);
    d->used = 0;
  }
  uint64_t hi = d->w[d->used], lo = d->w[d->used + 1];
  d->used += 2;
  return (double)(((hi << 32) | lo) >> 11) * 0x1.0p-53;
}

static double Gamma1(Draws *d, double shape) /* Gamma(shape, 1): Marsaglia-Tsang */
{
  double boost = 1;
  if (shape < 1) {
    boost = pow(1 - Next(d), 1.0 / shape);
    shape += 1;
  }
  const double dd = shape - 1.0 / 3.0, c = 1.0 / sqrt(9 * dd);
  for (int t = 0; t < 1000; t++) {
    double u1 = 1 - Next(d), u2 = Next(d), z = sqrt(-2 * log(u1)) * cos(2 * PETSC_PI * u2), v = 1 + c * z, u;
    if (v <= 0) continue;
    v = v * v * v;
    u = 1 - Next(d);
    if (log(u) < 0.5 * z * z + dd - dd * v + dd * log(v)) return boost * dd * v;
  }
  return boost * shape;
}

static double Poisson(Draws *d, double lam) /* inversion below 12, PTRS (Hormann 1993) above */
{
  if (lam <= 0) return 0;
  if (lam < 12) {
    double u = Next(d), p = exp(-lam), F = p;
    int    k = 0;
    while (u > F && k < 1000) {
      k++;
      p *= lam / k;
      F += p;
    }
    return k;
  }
  const double slam = sqrt(lam), loglam = log(lam), b = 0.931 + 2.53 * slam, a = -0.059 + 0.02483 * b;
  const double invalpha = 1.1239 + 1.1328 / (b - 3.4), vr = 0.9277 - 3.6224 / (b - 2);
  for (int t = 0; t < 1000; t++) {
    double u = Next(d) - 0.5, v = Next(d), us = 0.5 - fabs(u), k = floor((2 * a / us + b) * u + lam + 0.43);
    if (us >= 0.07 && v <= vr) return k;
    if (k < 0 || (us < 0.013 && v > us)) continue;
    if (log(v) + log(invalpha) - log(a / (us * us) + b) <= -lam + k * loglam - lgamma(k + 1)) return k;
  }
  return floor(lam);
}

/* Rows [row0, row0 + n) of X. q is scratch [ngenes]. */
static void GenerateRows(const CsSim s, PetscInt row0, PetscInt n, float *X, double *q)
{
  const PetscInt G = s->ngenes;
  for (PetscInt r = 0; r < n; r++) {
    PetscInt      i = row0 + r;
    Meta          mt;
    const double *p, *bf;
    double        L, tot = 0, z[2];
    float        *row = X + (size_t)r * (size_t)G;

    CellMeta(s, i, &mt);
    p  = s->truth + ((size_t)mt.cond * s->nctx + mt.ctx) * G;
    bf = s->bf + (size_t)mt.batch * G;
    CsRngNormal2((uint64_t)s->seed, CS_STREAM_DATA, (uint64_t)i, TAG_CELL + T_DEPTH, z);
    if (s->ndepth) L = s->depths[PetscMin(s->ndepth - 1, (PetscInt)(0.5 * (1 + erf(z[0] / sqrt(2.0))) * s->ndepth))];
    else L = s->depth * exp(s->depth_sdlog * z[0]);
    for (PetscInt j = 0; j < G; j++) q[j] = p[j];
    if (mt.quality == Q_LOWDEPTH) L *= 0.1;
    else if (mt.quality == Q_MITO)
      for (PetscInt j = s->gn; j < G; j++) q[j] *= 10;
    else if (mt.quality == Q_DOUBLET) {
      const double *p2 = s->truth + ((size_t)mt.partner_cond * s->nctx + mt.partner_ctx) * G;
      for (PetscInt j = 0; j < G; j++) q[j] = 0.5 * (q[j] + p2[j]);
      L *= 1.8;
    }
    for (PetscInt j = 0; j < G; j++) tot += (q[j] *= bf[j]);
    for (PetscInt j = 0; j < G; j++) {
      Draws  d  = {(uint64_t)s->seed, (uint64_t)i, (uint64_t)j << 20, {0, 0, 0, 0}, 4};
      double mu = L * q[j] / tot, th = s->theta[j];
      row[j]    = (float)Poisson(&d, mu * Gamma1(&d, th) / th);
    }
  }
}

/* ------------------------------------------------- output -------------------------------------------------- */
static PetscErrorCode FillColumn(void *ctx, PetscInt col, PetscInt row0, PetscInt n, int32_t *out)
{
  CsSim s = (CsSim)ctx;

  PetscFunctionBeginUser;
  for (PetscInt r = 0; r < n; r++) {
    Meta mt;
    CellMeta(s, row0 + r, &mt);
    switch (col) {
    case 0: out[r] = (int32_t)mt.cond; break;
    case 1: out[r] = (int32_t)s->cond[mt.cond].pert; break;
    case 2: out[r] = (int32_t)s->cond[mt.cond].dose; break;
    case 3: out[r] = (int32_t)s->cond[mt.cond].type; break;
    case 4: out[r] = (int32_t)mt.ctx; break;
    case 5: out[r] = (int32_t)mt.batch; break;
    default: out[r] = (int32_t)mt.quality; break;
    }
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode WriteNetwork(void *ctx, FILE *fp)
{
  CsSim s = (CsSim)ctx;

  PetscFunctionBeginUser;
  PetscCheck(fprintf(fp, "source\ttarget\tsign\tweight\tK\n") > 0, PETSC_COMM_SELF, PETSC_ERR_FILE_WRITE, "write failed");
  for (PetscInt j = 0; j < s->gn; j++)
    for (PetscInt e = s->ptr[j]; e < s->ptr[j + 1]; e++)
      PetscCheck(fprintf(fp, "%s\t%s\t%d\t%.17g\t%.17g\n", s->names[s->reg[e]], s->names[j], s->w[e] > 0 ? 1 : -1, fabs(s->w[e]),
                         s->K[s->reg[e]]) > 0,
                 PETSC_COMM_SELF, PETSC_ERR_FILE_WRITE, "write failed");
  PetscFunctionReturn(0);
}

/* FILE.h5ad -> FILE.<suffix> */
static PetscErrorCode Beside(const char path[], const char suffix[], char out[])
{
  size_t len = strlen(path) - 5;

  PetscFunctionBeginUser;
  PetscCheck(len + strlen(suffix) + 2 < PETSC_MAX_PATH_LEN, PETSC_COMM_SELF, CS_ERR_INPUT, "path too long: %s", path);
  memcpy(out, path, len);
  out[len] = '.';
  strcpy(out + len + 1, suffix);
  PetscFunctionReturn(0);
}

static PetscErrorCode WriteTruth(CsSim s, const char path[])
{
  PetscInt       nt = s->ncond * s->nctx;
  int32_t       *cc, *cx, *cp, *cd;
  char         **condcats;
  float         *rows = NULL;
  CsH5adWriter   w;
  CsH5adOutColumn cols[4];

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc5(nt, &cc, nt, &cx, nt, &cp, nt, &cd, s->ncond, &condcats));
  for (PetscInt k = 0; k < s->ncond; k++) condcats[k] = s->cond[k].label;
  for (PetscInt k = 0; k < s->ncond; k++)
    for (PetscInt c = 0; c < s->nctx; c++)
      cc[k * s->nctx + c] = (int32_t)k, cx[k * s->nctx + c] = (int32_t)c, cp[k * s->nctx + c] = (int32_t)s->cond[k].pert,
                       cd[k * s->nctx + c] = (int32_t)s->cond[k].dose;
  cols[0] = (CsH5adOutColumn){"condition", s->ncond, condcats, cc};
  cols[1] = (CsH5adOutColumn){"perturbation", s->npert, s->pertcats, cp};
  cols[2] = (CsH5adOutColumn){"dose", s->ndosecat, s->dosecats, cd};
  cols[3] = (CsH5adOutColumn){"cell_type", s->nctx, s->ctxcats, cx};
  PetscCall(CsH5adWriterCreate(s->comm, path, nt, s->ngenes, s->names, 4, cols, &w));
  if (!s->rank) {
    PetscCall(PetscMalloc1((size_t)nt * (size_t)s->ngenes, &rows));
    for (size_t e = 0; e < (size_t)nt * (size_t)s->ngenes; e++) rows[e] = (float)s->truth[e];
  }
  PetscCall(CsH5adWriterWriteRows(w, 0, s->rank ? 0 : nt, rows));
  PetscCall(CsH5adWriterCommit(&w));
  PetscCall(PetscFree(rows));
  PetscCall(PetscFree5(cc, cx, cp, cd, condcats));
  PetscFunctionReturn(0);
}

PetscErrorCode CsSimWrite(CsSim s)
{
  CsH5adOutColumn cols[7];
  char          **condcats, **ptypecats, **qualcats, path[PETSC_MAX_PATH_LEN];
  CsH5adWriter    w;
  PetscInt        r0 = (PetscInt)((int64_t)s->ncells * s->rank / s->size), r1 = (PetscInt)((int64_t)s->ncells * (s->rank + 1) / s->size);
  PetscInt        nb = (r1 - r0 + s->block - 1) / s->block;
  float          *X;
  double         *q, t0 = CsTime(), tgen = 0, twrite = 0, tcount = 0;
  CsCSR           A   = {0};
  int64_t         cap = 0, nzlocal = 0;
  PetscBool       dense = (PetscBool)(s->format == SIM_DENSE);

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc3(s->ncond, &condcats, P_N, &ptypecats, Q_N, &qualcats));
  for (PetscInt k = 0; k < s->ncond; k++) condcats[k] = s->cond[k].label;
  for (PetscInt k = 0; k < P_N; k++) ptypecats[k] = (char *)PTypeNames[k];
  for (PetscInt k = 0; k < Q_N; k++) qualcats[k] = (char *)QualityNames[k];
  cols[0] = (CsH5adOutColumn){"condition", s->ncond, condcats, NULL};
  cols[1] = (CsH5adOutColumn){"perturbation", s->npert, s->pertcats, NULL};
  cols[2] = (CsH5adOutColumn){"dose", s->ndosecat, s->dosecats, NULL};
  cols[3] = (CsH5adOutColumn){"perturbation_type", P_N, ptypecats, NULL};
  cols[4] = (CsH5adOutColumn){"cell_type", s->nctx, s->ctxcats, NULL};
  cols[5] = (CsH5adOutColumn){"batch", s->nbatches, s->batchcats, NULL};
  cols[6] = (CsH5adOutColumn){"quality", Q_N, qualcats, NULL};
  PetscCall(PetscMalloc2((size_t)s->block * (size_t)s->ngenes, &X, s->ngenes, &q));
  PetscCall(PetscMalloc1((size_t)s->block + 1, &A.indptr)); /* every block has at most s->block rows */
  if (s->format != SIM_DENSE) {
    /* CSR needs each rank's number of non-zeros before its rows are written (they follow the earlier ranks'): a
       first pass generates the rows and counts them (the draws are keyed by cell and gene, so the second pass
       generates the same rows). */
    for (PetscInt start = r0; start < r1; start += s->block) {
      PetscInt n = PetscMin(s->block, r1 - start);
      GenerateRows(s, start, n, X, q);
      for (size_t i = 0; i < (size_t)n * s->ngenes; i++) nzlocal += X[i] != 0;
    }
    tcount = CsTime() - t0;
    if (s->format == SIM_AUTO) {
      double nz = (double)nzlocal;
      PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &nz, 1, MPI_DOUBLE, MPI_SUM, s->comm));
      dense = (PetscBool)(nz >= 0.5 * (double)s->ncells * (double)s->ngenes);
    }
  }
  if (dense) PetscCall(CsH5adWriterCreateFill(s->comm, s->output, s->ncells, s->ngenes, s->names, 7, cols, FillColumn, s, &w));
  else PetscCall(CsH5adWriterCreateCSRFill(s->comm, s->output, s->ncells, s->ngenes, nzlocal, s->names, 7, cols, FillColumn, s, &w));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &nb, 1, MPIU_INT, MPI_MAX, s->comm));
  for (PetscInt b = 0; b < nb; b++) {
    PetscInt       start = r0 + b * s->block, n = PetscMax(0, PetscMin(s->block, r1 - start));
    double         t1    = CsTime();
    PetscErrorCode ierr  = 0;
    GenerateRows(s, start, n, X, q);
    if (!dense) {
      int64_t nz = 0;
      A.nrows = n, A.ncols = s->ngenes, A.indptr[0] = 0;
      ierr    = CsCSRAppendDense(&A, 0, n, X, &nz, &cap);
    }
    tgen += CsTime() - t1;
    t1   = CsTime();
    if (!ierr) ierr = dense ? CsH5adWriterWriteRows(w, n ? start : 0, n, X) : CsH5adWriterWriteCSRRows(w, n ? start : 0, &A);
    twrite += CsTime() - t1;
    if (ierr) {
      PetscCall(PetscFree2(X, q));
      PetscCall(CsCSRFree(&A));
      PetscCall(CsH5adWriterDestroy(&w));
      PetscCall(ierr);
    }
  }
  PetscCall(CsCSRFree(&A));
  PetscCall(PetscFree2(X, q));
  PetscCall(CsH5adWriterCommit(&w));
  PetscCall(PetscFree3(condcats, ptypecats, qualcats));
  PetscCall(Beside(s->output, "truth.h5ad", path));
  PetscCall(WriteTruth(s, path));
  PetscCall(Beside(s->output, "network.tsv", path));
  PetscCall(CsWriteTextRank0(s->comm, path, WriteNetwork, s));
  {
    double t[3] = {tgen, twrite, tcount}, nz = (double)nzlocal;
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, t, 3, MPI_DOUBLE, MPI_MAX, s->comm));
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &nz, 1, MPI_DOUBLE, MPI_SUM, s->comm));
    if (dense)
      PetscCall(PetscPrintf(s->comm,
                            "simulated %" PetscInt_FMT " cells x %" PetscInt_FMT " genes (%" PetscInt_FMT " conditions x %" PetscInt_FMT
                            " cell types, %" PetscInt_FMT " edges) into %s, dense X%s, in %.2f s (%sgeneration %.2f s, writing X %.2f s, slowest rank)\n",
                            s->ncells, s->ngenes, s->ncond, s->nctx, s->ptr[s->gn], s->output, s->format == SIM_AUTO ? " (auto: most entries are non-zero)" : "",
                            CsTime() - t0, s->format == SIM_AUTO ? "counting pass, " : "", t[0] + t[2], t[1]));
    else
      PetscCall(PetscPrintf(s->comm,
                            "simulated %" PetscInt_FMT " cells x %" PetscInt_FMT " genes (%" PetscInt_FMT " conditions x %" PetscInt_FMT
                            " cell types, %" PetscInt_FMT " edges) into %s, CSR X with %.0f non-zeros (%.1f%%), in %.2f s (counting pass %.2f s, "
                            "generation %.2f s, writing X %.2f s, slowest rank)\n",
                            s->ncells, s->ngenes, s->ncond, s->nctx, s->ptr[s->gn], s->output, nz, 100.0 * nz / ((double)s->ncells * s->ngenes),
                            CsTime() - t0, t[2], t[0], t[1]));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsSimDestroy(CsSim *sp)
{
  CsSim s = *sp;

  PetscFunctionBeginUser;
  if (!s) PetscFunctionReturn(0);
  if (s->names) PetscCall(CsStrArrayDestroy(s->names ? (s->nmito + s->gn) : 0, &s->names));
  PetscCall(PetscFree3(s->ptr, s->reg, s->w));
  PetscCall(PetscFree5(s->alpha, s->K, s->ctx_alpha, s->theta, s->bf));
  PetscCall(PetscFree(s->cond));
  if (s->pertcats) PetscCall(CsStrArrayDestroy(s->npert, &s->pertcats));
  if (s->dosecats) PetscCall(CsStrArrayDestroy(s->ndosecat, &s->dosecats));
  for (PetscInt c = 0; s->ctxcats && c < s->nctx; c++) PetscCall(PetscFree(s->ctxcats[c]));
  for (PetscInt b = 0; s->batchcats && b < s->nbatches; b++) PetscCall(PetscFree(s->batchcats[b]));
  PetscCall(PetscFree2(s->ctxcats, s->batchcats));
  PetscCall(PetscFree(s->truth));
  PetscCall(PetscFree(s->depths));
  PetscCall(CsPriorsDestroy(&s->priors));
  PetscCall(PetscFree(*sp));
  PetscFunctionReturn(0);
}
