/* ot: entropic optimal transport maps from control to perturbed cells (the Waddington-OT / moscot view of a
   perturbation as a coupling of cell populations), in a PCA space of the training data.

   Fit. The principal axes (K = -ot_pca, 50) of all cells of the train and valid groups, controls included
   (CsPCAFit: the distributed gene x gene covariance). For every perturbed train or valid group (condition c,
   context k) with controls in k: the entropic OT problem from those control cells to the group's cells in PCA
   coordinates (src/ot, distributed over the ranks as the cells are; squared Euclidean cost scaled by its mean,
   -ot_epsilon, -ot_tau_a/-ot_tau_b, -ot_tol, -ot_max_iter), of which the target cells' coordinates y_j and the
   target potential g_j are kept. That is the entropic map (Pooladian & Niles-Weed 2021)
       T(z) = sum_j w_j(z) y_j,   w_j(z) = softmax_j((g_j - |z - y_j|^2 / c) / eps),
   which is the barycentric projection of the plan on the fitted control cells and extends it to any cell.
   -ot_max_cells caps the cells of each side of a fit (every s-th cell of the group in global order).

   Predict. A control cell x of context k with coordinates z = G (x - mean) becomes x + G^T (z' - z), its
   displacement in PCA space mapped back to genes (the control cell's part outside the PCA space is kept), with
     z' - z = T_{c,k}(z) - z                       when (c, k) was fitted;
            = mean over contexts k' of T_{c,k'}(u) - u,  u = z - m_k + m_k',  when c was fitted in other contexts
                                                    only: each context's map applied to k's own controls, moved by
                                                    the difference of the contexts' control means m (over all their
                                                    control cells) so that the map is used where it was fitted (an
                                                    entropic map sends a far cell into the convex hull of its
                                                    targets: unaligned, it would move k's cells to k''s cells);
                                                    contexts weigh the same;
            = sum over the atoms a of c of D_a(z)   otherwise (combinations, unseen doses), D_a the displacement of
                                                    the single-atom conditions of a (fitted in k if any, else the
                                                    mean over the contexts where they were; several doses are
                                                    averaged); an atom never fitted alone adds nothing.
   The additive rule for combinations is the transport analogue of the additive baseline: each atom's map moves
   the control cell on its own and the displacements add; it cannot express interactions between atoms.
   Doses are not modelled. State (axes, mean, maps) is replicated on every rank. */
#include "modelimpl.h"
#include <cellshift/h5util.h>
#include <cellshift/linalg.h>
#include <cellshift/ot.h>

static const char *const ScaleNames[] = {"none", "mean", "max", "CsOTCostScale", "CS_OT_SCALE_", NULL};

typedef struct {
  PetscInt     k;         /* -ot_pca */
  PetscInt     max_cells; /* -ot_max_cells, 0 = all */
  CsOTOptions  ot;        /* -ot_epsilon, -ot_tau_a, -ot_tau_b, -ot_tol, -ot_max_iter, -ot_scale, -ot_layout */
  CsPCAOptions pca;
  PetscInt     K, ngenes, nmaps, ny;
  double      *mean, *G, *mg; /* [ngenes], [K x ngenes], [K] = G mean */
  PetscInt    *mcond, *mctx, *mstart; /* [nmaps], [nmaps + 1] first target of each map */
  double      *mscale, *meps;       /* [nmaps] cost scale and epsilon of each map */
  float       *Y;                   /* [ny x K] target coordinates of all maps */
  double      *gpot;                /* [ny] target potentials */
  double      *cmean;               /* [nctx x K] mean coordinates of each context's control cells */
  double      *z, *zs, *acc, *w, *dz, *u; /* predict work: [K], [K], [K], [max targets], [ngenes], [K] */
} OT;

static PetscErrorCode OTFree(OT *o)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree3(o->mean, o->G, o->mg));
  PetscCall(PetscFree3(o->mcond, o->mctx, o->mstart));
  PetscCall(PetscFree2(o->mscale, o->meps));
  PetscCall(PetscFree2(o->Y, o->gpot));
  PetscCall(PetscFree5(o->z, o->zs, o->acc, o->w, o->dz));
  PetscCall(PetscFree(o->u));
  PetscCall(PetscFree(o->cmean));
  o->nmaps = o->ny = 0;
  PetscFunctionReturn(0);
}

static PetscErrorCode AllocMaps(OT *o, PetscInt nmaps, PetscInt ny)
{
  PetscFunctionBeginUser;
  o->nmaps = nmaps, o->ny = ny;
  PetscCall(PetscMalloc3(nmaps + 1, &o->mcond, nmaps + 1, &o->mctx, nmaps + 1, &o->mstart));
  PetscCall(PetscMalloc2(nmaps + 1, &o->mscale, nmaps + 1, &o->meps));
  PetscCall(PetscMalloc2((size_t)ny * o->K + 1, &o->Y, ny + 1, &o->gpot));
  PetscFunctionReturn(0);
}

static PetscErrorCode AllocWork(OT *o)
{
  PetscInt mx = 1;

  PetscFunctionBeginUser;
  for (PetscInt q = 0; q < o->nmaps; q++) mx = PetscMax(mx, o->mstart[q + 1] - o->mstart[q]);
  PetscCall(PetscMalloc5(o->K, &o->z, o->K, &o->zs, o->K, &o->acc, mx, &o->w, o->ngenes, &o->dz));
  PetscCall(PetscMalloc1(o->K, &o->u));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelSetFromOptions_OT(CsModel m, PetscOptionItems *PetscOptionsObject)
{
  OT         *o    = (OT *)m->data;
  MPI_Comm    comm = PetscObjectComm((PetscObject)m);
  const char *pre  = CsModelPrefix(m);
  PetscEnum   sc   = (PetscEnum)o->ot.scale, ly = (PetscEnum)o->ot.mode;

  PetscFunctionBeginUser;
  PetscOptionsHeadBegin(PetscOptionsObject, "ot: entropic optimal transport maps from control to perturbed cells");
  PetscCall(PetscOptionsInt("-pca", "Dimension of the PCA space the maps are fitted in", "ot", o->k, &o->k, NULL));
  PetscCall(PetscOptionsReal("-epsilon", "Entropic regularisation, relative to the mean cost", "ot", o->ot.epsilon, &o->ot.epsilon, NULL));
  PetscCall(PetscOptionsReal("-tau_a", "Control-side marginal: 1 balanced, in (0, 1) KL-penalised (moscot's tau_a)", "ot", o->ot.tau_a, &o->ot.tau_a, NULL));
  PetscCall(PetscOptionsReal("-tau_b", "Perturbed-side marginal: 1 balanced, in (0, 1) KL-penalised (moscot's tau_b)", "ot", o->ot.tau_b, &o->ot.tau_b, NULL));
  PetscCall(PetscOptionsReal("-tol", "Sinkhorn tolerance on the marginal error", "ot", o->ot.tol, &o->ot.tol, NULL));
  PetscCall(PetscOptionsInt("-max_iter", "Sinkhorn iteration cap", "ot", o->ot.max_iter, &o->ot.max_iter, NULL));
  PetscCall(PetscOptionsEnum("-scale", "Cost scaling", "ot", ScaleNames, sc, &sc, NULL));
  PetscCall(PetscOptionsEnum("-layout", "Sinkhorn cost layout: auto (kernel rows up to 1 GiB a rank, else stream), rows, stream, blockcyclic (ScaLAPACK)",
                             "ot", CsOTModes, ly, &ly, NULL));
  PetscCall(PetscOptionsInt("-max_cells", "Cells per side of each fitted map (0 = all)", "ot", o->max_cells, &o->max_cells, NULL));
  PetscCall(CsPCAOptionsProcess(PetscOptionsObject, &o->pca));
  PetscOptionsHeadEnd();
  o->ot.scale = (CsOTCostScale)sc, o->ot.mode = (CsOTMode)ly;
  CsCheckAll(comm, o->k >= 1, "-%spca must be at least 1 (got %" PetscInt_FMT ")", pre, o->k);
  CsCheckAll(comm, o->ot.epsilon > 0 && !PetscIsInfOrNanReal(o->ot.epsilon), "-%sepsilon must be a finite number > 0 (got %.6g)", pre, (double)o->ot.epsilon);
  CsCheckAll(comm, o->ot.tau_a > 0 && o->ot.tau_a <= 1, "-%stau_a must be in (0, 1] (got %.6g)", pre, (double)o->ot.tau_a);
  CsCheckAll(comm, o->ot.tau_b > 0 && o->ot.tau_b <= 1, "-%stau_b must be in (0, 1] (got %.6g)", pre, (double)o->ot.tau_b);
  CsCheckAll(comm, o->ot.tol > 0 && !PetscIsInfOrNanReal(o->ot.tol), "-%stol must be a finite number > 0 (got %.6g)", pre, (double)o->ot.tol);
  CsCheckAll(comm, o->ot.max_iter >= 1, "-%smax_iter must be at least 1 (got %" PetscInt_FMT ")", pre, o->ot.max_iter);
  CsCheckAll(comm, o->max_cells >= 0 && o->max_cells != 1, "-%smax_cells must be 0 (all) or at least 2 (got %" PetscInt_FMT ")", pre, o->max_cells);
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelSetUp_OT(CsModel m)
{
  OT *o = (OT *)m->data;

  PetscFunctionBeginUser;
  CsCheckAll(PetscObjectComm((PetscObject)m), o->k <= m->ds->ngenes, "-%spca %" PetscInt_FMT " exceeds the number of genes (%" PetscInt_FMT ")",
             CsModelPrefix(m), o->k, m->ds->ngenes);
  PetscFunctionReturn(0);
}

/* z[K] = G (x_i - mean) for CSR row i. */
static void Project(const OT *o, const CsCSR *X, PetscInt i, double *z)
{
  for (PetscInt t = 0; t < o->K; t++) {
    const double *g = o->G + (size_t)t * o->ngenes;
    double        s = 0;
    for (int64_t p = X->indptr[i]; p < X->indptr[i + 1]; p++) s += g[X->indices[p]] * X->data[p];
    z[t] = s - o->mg[t];
  }
}

static PetscBool Fitted(CsModel m, PetscInt g)
{
  const CsGroup *gr   = &m->design->groups[g];
  CsRole         role = (CsRole)m->split->role[g];
  return !gr->control && gr->ctrl >= 0 && (role == CS_ROLE_TRAIN || role == CS_ROLE_VALID) ? PETSC_TRUE : PETSC_FALSE;
}

/* Every s-th cell of a group in global order, s = ceil(ncells / max_cells). */
static PetscBool Kept(const OT *o, const CsGroup *gr, PetscInt within)
{
  PetscInt s = o->max_cells && gr->ncells > o->max_cells ? (gr->ncells + o->max_cells - 1) / o->max_cells : 1;
  return within % s == 0 ? PETSC_TRUE : PETSC_FALSE;
}

static PetscErrorCode CsModelFit_OT(CsModel m)
{
  OT          *o    = (OT *)m->data;
  MPI_Comm     comm = PetscObjectComm((PetscObject)m);
  CsDataset    ds   = m->ds;
  CsDesign     d    = m->design;
  PetscMPIInt  size;
  PetscInt     K = o->k, ng = ds->ngenes, nmaps = 0, ny = 0, *within, *seen;
  PetscBool   *rows;
  float       *Z, *xs, *ys;
  PetscReal   *gl;
  PetscMPIInt *cnt, *dsp;

  PetscFunctionBeginUser;
  PetscCall(OTFree(o));
  PetscCallMPI(MPI_Comm_size(comm, &size));
  o->K = K, o->ngenes = ng;
  PetscCall(PetscMalloc3(ng, &o->mean, (size_t)K * ng, &o->G, K, &o->mg));
  PetscCall(PetscMalloc1(ds->nlocal + 1, &rows));
  for (PetscInt i = 0; i < ds->nlocal; i++) {
    PetscInt g = d->cell_group[i];
    rows[i]    = (PetscBool)(g >= 0 && (m->split->role[g] == CS_ROLE_TRAIN || m->split->role[g] == CS_ROLE_VALID));
  }
  {
    double *var;
    PetscCall(PetscMalloc1(K, &var));
    PetscCall(CsPCAFit(comm, &ds->X, rows, K, &o->pca, o->mean, o->G, var));
    PetscCall(PetscFree(var));
  }
  for (PetscInt t = 0; t < K; t++) {
    o->mg[t] = 0;
    for (PetscInt j = 0; j < ng; j++) o->mg[t] += o->G[(size_t)t * ng + j] * o->mean[j];
  }
  /* coordinates of the local cells, and each one's index within its group (global order) */
  PetscCall(PetscMalloc2((size_t)ds->nlocal * K + 1, &Z, ds->nlocal + 1, &within));
  PetscCall(PetscCalloc1(d->ngroups + 1, &seen));
  {
    double *z;
    PetscCall(PetscMalloc1(K, &z));
    for (PetscInt i = 0; i < ds->nlocal; i++) {
      PetscInt g = d->cell_group[i];
      within[i]  = g >= 0 ? d->group_rstart[g] + seen[g]++ : -1;
      if (g < 0) continue;
      Project(o, &ds->X, i, z);
      for (PetscInt t = 0; t < K; t++) Z[(size_t)i * K + t] = (float)z[t];
    }
    PetscCall(PetscFree(z));
  }
  /* control means of every context */
  PetscCall(PetscCalloc1((size_t)d->nctx * K + 1, &o->cmean));
  for (PetscInt i = 0; i < ds->nlocal; i++) {
    PetscInt g = d->cell_group[i];
    if (g < 0 || !d->groups[g].control) continue;
    for (PetscInt t = 0; t < K; t++) o->cmean[(size_t)d->groups[g].ctx * K + t] += Z[(size_t)i * K + t];
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, o->cmean, (PetscMPIInt)(d->nctx * K), MPI_DOUBLE, MPI_SUM, comm));
  for (PetscInt g = 0; g < d->ngroups; g++)
    if (d->groups[g].control)
      for (PetscInt t = 0; t < K; t++) o->cmean[(size_t)d->groups[g].ctx * K + t] /= d->groups[g].ncells;
  for (PetscInt g = 0; g < d->ngroups; g++)
    if (Fitted(m, g)) {
      nmaps++;
      for (PetscInt w = 0; w < d->groups[g].ncells; w++) ny += Kept(o, &d->groups[g], w);
    }
  PetscCheck(nmaps > 0, comm, CS_ERR_INPUT, "ot: no perturbed train or valid group has control cells in its context");
  PetscCall(AllocMaps(o, nmaps, ny));
  PetscCall(PetscMalloc3((size_t)ds->nlocal * K + 1, &xs, (size_t)ds->nlocal * K + 1, &ys, ds->nlocal + 1, &gl));
  PetscCall(PetscMalloc2(size, &cnt, size, &dsp));
  nmaps = 0, ny = 0;
  for (PetscInt g = 0; g < d->ngroups; g++) {
    const CsGroup *gr = &d->groups[g];
    PetscInt       nx = 0, nyl = 0, nyg;
    CsOTOptions    opt = o->ot;
    CsOTInfo       info;
    char           name[512];
    PetscMPIInt    me;

    if (!Fitted(m, g)) continue;
    for (PetscInt i = 0; i < ds->nlocal; i++) {
      PetscInt cg = d->cell_group[i];
      if (cg == gr->ctrl && Kept(o, &d->groups[cg], within[i])) PetscCall(PetscArraycpy(xs + (size_t)nx++ * K, Z + (size_t)i * K, K));
      else if (cg == g && Kept(o, gr, within[i])) PetscCall(PetscArraycpy(ys + (size_t)nyl++ * K, Z + (size_t)i * K, K));
    }
    PetscCall(PetscSNPrintf(name, sizeof(name), "ot: condition %s in context %s", d->conds[gr->cond].name, d->contexts[gr->ctx]));
    opt.name = name;
    PetscCall(CsOTSolve(comm, &opt, nx, nyl, K, xs, ys, NULL, NULL, NULL, NULL, gl, &info));
    PetscCall(PetscInfo(NULL, "%s: %" PetscInt_FMT " Sinkhorn iterations, marginal error %g\n", name, info.iterations, (double)info.error));
    /* gather the targets and potentials in global order */
    me = (PetscMPIInt)nyl;
    PetscCallMPI(MPI_Allgather(&me, 1, MPI_INT, cnt, 1, MPI_INT, comm));
    nyg = 0;
    for (PetscMPIInt r = 0; r < size; r++) dsp[r] = (PetscMPIInt)nyg, nyg += cnt[r];
    PetscCallMPI(MPI_Allgatherv(gl, me, MPIU_REAL, o->gpot + ny, cnt, dsp, MPIU_REAL, comm));
    for (PetscMPIInt r = 0; r < size; r++) cnt[r] *= (PetscMPIInt)K, dsp[r] *= (PetscMPIInt)K;
    PetscCallMPI(MPI_Allgatherv(ys, me * (PetscMPIInt)K, MPI_FLOAT, o->Y + (size_t)ny * K, cnt, dsp, MPI_FLOAT, comm));
    o->mcond[nmaps] = gr->cond, o->mctx[nmaps] = gr->ctx, o->mstart[nmaps] = ny;
    o->mscale[nmaps] = info.cost_scale, o->meps[nmaps] = opt.epsilon;
    ny += nyg, nmaps++;
  }
  o->mstart[nmaps] = ny;
  PetscCall(PetscInfo(NULL, "ot: %" PetscInt_FMT " maps, %" PetscInt_FMT " target cells, PCA %" PetscInt_FMT "\n", nmaps, ny, K));
  PetscCall(PetscFree2(cnt, dsp));
  PetscCall(PetscFree3(xs, ys, gl));
  PetscCall(PetscFree2(Z, within));
  PetscCall(PetscFree(seen));
  PetscCall(PetscFree(rows));
  PetscCall(AllocWork(o));
  PetscFunctionReturn(0);
}

/* acc += wgt (T_q(u) - u), u = z moved from context ctx to the map's context by their control means */
static void AddDisplacement(OT *o, PetscInt q, const double *z0, PetscInt ctx, double wgt)
{
  double *z = o->u;
  for (PetscInt t = 0; t < o->K; t++) z[t] = z0[t] - o->cmean[(size_t)ctx * o->K + t] + o->cmean[(size_t)o->mctx[q] * o->K + t];
  PetscInt     j0 = o->mstart[q], n = o->mstart[q + 1] - j0, K = o->K;
  const double ie = 1.0 / (o->meps[q] * o->mscale[q]), ig = 1.0 / o->meps[q];
  double       mx = -INFINITY, s = 0;
  for (PetscInt j = 0; j < n; j++) {
    const float *y = o->Y + (size_t)(j0 + j) * K;
    double       c = 0;
    for (PetscInt t = 0; t < K; t++) {
      double e = z[t] - y[t];
      c += e * e;
    }
    o->w[j] = o->gpot[j0 + j] * ig - c * ie;
    mx      = PetscMax(mx, o->w[j]);
  }
  for (PetscInt j = 0; j < n; j++) s += (o->w[j] = exp(o->w[j] - mx));
  for (PetscInt t = 0; t < K; t++) o->zs[t] = 0;
  for (PetscInt j = 0; j < n; j++) {
    const float *y = o->Y + (size_t)(j0 + j) * K;
    for (PetscInt t = 0; t < K; t++) o->zs[t] += o->w[j] * y[t];
  }
  for (PetscInt t = 0; t < K; t++) o->acc[t] += wgt * (o->zs[t] / s - z[t]);
}

/* acc += the mean displacement of the maps of the conditions accepted by match(), preferring context ctx; returns
   whether any map was found. */
static PetscBool AddMean(OT *o, CsDesign d, PetscInt ctx, const double *z, PetscBool (*match)(CsDesign, PetscInt, const void *), const void *arg)
{
  PetscInt nin = 0, nall = 0;
  for (PetscInt q = 0; q < o->nmaps; q++)
    if (match(d, o->mcond[q], arg)) nall++, nin += o->mctx[q] == ctx;
  if (!nall) return PETSC_FALSE;
  if (nin) {
    for (PetscInt q = 0; q < o->nmaps; q++)
      if (o->mctx[q] == ctx && match(d, o->mcond[q], arg)) AddDisplacement(o, q, z, ctx, 1.0 / nin);
    return PETSC_TRUE;
  }
  /* other contexts: each context weighs the same (several doses in one context are averaged first) */
  {
    PetscInt nctx = 0;
    for (PetscInt c = 0; c < d->nctx; c++) {
      PetscInt k = 0;
      for (PetscInt q = 0; q < o->nmaps; q++) k += o->mctx[q] == c && match(d, o->mcond[q], arg);
      nctx += k > 0;
    }
    for (PetscInt c = 0; c < d->nctx; c++) {
      PetscInt k = 0;
      for (PetscInt q = 0; q < o->nmaps; q++) k += o->mctx[q] == c && match(d, o->mcond[q], arg);
      for (PetscInt q = 0; k && q < o->nmaps; q++)
        if (o->mctx[q] == c && match(d, o->mcond[q], arg)) AddDisplacement(o, q, z, ctx, 1.0 / ((double)k * nctx));
    }
  }
  return PETSC_TRUE;
}

static PetscBool SameName(CsDesign d, PetscInt c, const void *arg) { return (PetscBool)(strcmp(d->conds[c].name, (const char *)arg) == 0); }
static PetscBool SingleAtom(CsDesign d, PetscInt c, const void *arg)
{
  return (PetscBool)(d->conds[c].natoms == 1 && d->conds[c].atoms[0] == *(const PetscInt *)arg);
}

static PetscErrorCode CsModelPredict_OT(CsModel m, const CsCondition *cond, PetscInt ctx, const CsCSR *ctrl, float *out)
{
  OT      *o = (OT *)m->data;
  PetscInt K = o->K, ng = o->ngenes;

  PetscFunctionBeginUser;
  PetscCheck(ctrl->ncols == ng, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ, "ot: %" PetscInt_FMT " genes, fitted with %" PetscInt_FMT, ctrl->ncols, ng);
  for (PetscInt i = 0; i < ctrl->nrows; i++) {
    float *row = out + (size_t)i * ng;
    Project(o, ctrl, i, o->z);
    for (PetscInt t = 0; t < K; t++) o->acc[t] = 0;
    /* the condition itself (any dose: the name), else its atoms one by one */
    if (cond->natoms > 0 && !AddMean(o, m->design, ctx, o->z, SameName, cond->name))
      for (PetscInt a = 0; a < cond->natoms; a++) (void)AddMean(o, m->design, ctx, o->z, SingleAtom, &cond->atoms[a]);
    for (PetscInt j = 0; j < ng; j++) o->dz[j] = 0;
    for (PetscInt t = 0; t < K; t++)
      for (PetscInt j = 0; j < ng; j++) o->dz[j] += o->acc[t] * o->G[(size_t)t * ng + j];
    CsCSRRowToDense(ctrl, i, row);
    for (PetscInt j = 0; j < ng; j++) row[j] = (float)(row[j] + o->dz[j]);
  }
  PetscFunctionReturn(0);
}

/* model.h5: pca_mean [ngenes], pca_axes [K x ngenes], map_cond, map_ctx [nmaps], map_start [nmaps + 1],
   map_scale, map_eps [nmaps], map_y [ny x K], map_g [ny], ctrl_mean [ncontexts x K]; attributes nmaps, ny, K. */
static PetscErrorCode CsModelSave_OT(CsModel m, hid_t g)
{
  OT      *o = (OT *)m->data;
  hsize_t  dg[1] = {(hsize_t)o->ngenes}, da[2] = {(hsize_t)o->K, (hsize_t)o->ngenes}, dm[1] = {(hsize_t)o->nmaps};
  hsize_t  dm1[1] = {(hsize_t)o->nmaps + 1}, dy[2] = {(hsize_t)o->ny, (hsize_t)o->K}, dn[1] = {(hsize_t)o->ny};
  int64_t *iv;

  PetscFunctionBeginUser;
  if (g < 0) PetscFunctionReturn(0); /* replicated state: rank 0 writes it */
  PetscCall(CsH5WriteAttrInt64(g, "nmaps", o->nmaps));
  PetscCall(CsH5WriteAttrInt64(g, "ny", o->ny));
  PetscCall(CsH5WriteAttrInt64(g, "K", o->K));
  PetscCall(CsH5WriteArray(g, "pca_mean", H5T_NATIVE_DOUBLE, 1, dg, o->mean));
  PetscCall(CsH5WriteArray(g, "pca_axes", H5T_NATIVE_DOUBLE, 2, da, o->G));
  PetscCall(PetscMalloc1(3 * o->nmaps + 1, &iv));
  for (PetscInt q = 0; q < o->nmaps; q++) iv[q] = o->mcond[q], iv[o->nmaps + q] = o->mctx[q];
  PetscCall(CsH5WriteArray(g, "map_cond", H5T_NATIVE_INT64, 1, dm, iv));
  PetscCall(CsH5WriteArray(g, "map_ctx", H5T_NATIVE_INT64, 1, dm, iv + o->nmaps));
  for (PetscInt q = 0; q <= o->nmaps; q++) iv[q] = o->mstart[q];
  PetscCall(CsH5WriteArray(g, "map_start", H5T_NATIVE_INT64, 1, dm1, iv));
  PetscCall(PetscFree(iv));
  PetscCall(CsH5WriteArray(g, "map_scale", H5T_NATIVE_DOUBLE, 1, dm, o->mscale));
  PetscCall(CsH5WriteArray(g, "map_eps", H5T_NATIVE_DOUBLE, 1, dm, o->meps));
  PetscCall(CsH5WriteArray(g, "map_y", H5T_NATIVE_FLOAT, 2, dy, o->Y));
  PetscCall(CsH5WriteArray(g, "map_g", H5T_NATIVE_DOUBLE, 1, dn, o->gpot));
  {
    hsize_t dc[2] = {(hsize_t)m->design->nctx, (hsize_t)o->K};
    PetscCall(CsH5WriteArray(g, "ctrl_mean", H5T_NATIVE_DOUBLE, 2, dc, o->cmean));
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelLoad_OT(CsModel m, hid_t g)
{
  OT      *o    = (OT *)m->data;
  MPI_Comm comm = PetscObjectComm((PetscObject)m);
  int64_t  nm, ny, K, *iv;
  PetscInt ng   = m->ds->ngenes;

  PetscFunctionBeginUser;
  PetscCall(OTFree(o));
  PetscCall(CsH5ReadAttrInt64(g, "nmaps", &nm));
  PetscCall(CsH5ReadAttrInt64(g, "ny", &ny));
  PetscCall(CsH5ReadAttrInt64(g, "K", &K));
  PetscCheck(nm > 0 && ny > 0 && K > 0 && K <= ng, comm, CS_ERR_INPUT, "model.h5: the ot model's sizes are damaged (nmaps %lld, ny %lld, K %lld)",
             (long long)nm, (long long)ny, (long long)K);
  o->K = (PetscInt)K, o->ngenes = ng;
  {
    hsize_t dg[1] = {(hsize_t)ng}, da[2] = {(hsize_t)K, (hsize_t)ng}, dm[1] = {(hsize_t)nm}, dm1[1] = {(hsize_t)nm + 1};
    hsize_t dy[2] = {(hsize_t)ny, (hsize_t)K}, dn[1] = {(hsize_t)ny};
    PetscCall(PetscMalloc3(ng, &o->mean, (size_t)K * ng, &o->G, K, &o->mg));
    PetscCall(AllocMaps(o, (PetscInt)nm, (PetscInt)ny));
    PetscCall(CsH5ReadArrayFinite(g, "model.h5", "pca_mean", H5T_NATIVE_DOUBLE, 1, dg, o->mean));
    PetscCall(CsH5ReadArrayFinite(g, "model.h5", "pca_axes", H5T_NATIVE_DOUBLE, 2, da, o->G));
    PetscCall(PetscMalloc1(2 * nm + 2, &iv));
    PetscCall(CsH5ReadArray(g, "model.h5", "map_cond", H5T_NATIVE_INT64, 1, dm, iv));
    PetscCall(CsH5ReadArray(g, "model.h5", "map_ctx", H5T_NATIVE_INT64, 1, dm, iv + nm));
    for (PetscInt q = 0; q < nm; q++) {
      PetscCheck(iv[q] >= 0 && iv[q] < m->design->ncond && iv[nm + q] >= 0 && iv[nm + q] < m->design->nctx, comm, CS_ERR_INPUT,
                 "model.h5: map %" PetscInt_FMT " of the ot model names a condition or context the design does not have", q);
      o->mcond[q] = (PetscInt)iv[q], o->mctx[q] = (PetscInt)iv[nm + q];
    }
    PetscCall(CsH5ReadArray(g, "model.h5", "map_start", H5T_NATIVE_INT64, 1, dm1, iv));
    for (PetscInt q = 0; q <= nm; q++) {
      PetscCheck(iv[q] >= 0 && iv[q] <= ny && (q == 0 || iv[q] > iv[q - 1]) && (q < nm || iv[q] == ny) && (q > 0 || iv[0] == 0), comm, CS_ERR_INPUT,
                 "model.h5: the ot model's map offsets are damaged");
      o->mstart[q] = (PetscInt)iv[q];
    }
    PetscCall(PetscFree(iv));
    PetscCall(CsH5ReadArrayFinite(g, "model.h5", "map_scale", H5T_NATIVE_DOUBLE, 1, dm, o->mscale));
    PetscCall(CsH5ReadArrayFinite(g, "model.h5", "map_eps", H5T_NATIVE_DOUBLE, 1, dm, o->meps));
    PetscCall(CsH5ReadArrayFinite(g, "model.h5", "map_y", H5T_NATIVE_FLOAT, 2, dy, o->Y));
    PetscCall(CsH5ReadArrayFinite(g, "model.h5", "map_g", H5T_NATIVE_DOUBLE, 1, dn, o->gpot));
    {
      hsize_t dc[2] = {(hsize_t)m->design->nctx, (hsize_t)K};
      PetscCall(PetscMalloc1((size_t)m->design->nctx * K, &o->cmean));
      PetscCall(CsH5ReadArrayFinite(g, "model.h5", "ctrl_mean", H5T_NATIVE_DOUBLE, 2, dc, o->cmean));
    }
    for (PetscInt q = 0; q < nm; q++)
      PetscCheck(o->mscale[q] > 0 && o->meps[q] > 0, comm, CS_ERR_INPUT, "model.h5: the ot model's map %" PetscInt_FMT " has a scale or epsilon <= 0", q);
  }
  for (PetscInt t = 0; t < o->K; t++) {
    o->mg[t] = 0;
    for (PetscInt j = 0; j < ng; j++) o->mg[t] += o->G[(size_t)t * ng + j] * o->mean[j];
  }
  PetscCall(AllocWork(o));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelView_OT(CsModel m, PetscViewer v)
{
  OT *o = (OT *)m->data;

  PetscFunctionBeginUser;
  PetscCall(PetscViewerASCIIPrintf(v, "entropic OT maps: PCA %" PetscInt_FMT ", epsilon %g, tau_a %g, tau_b %g, %" PetscInt_FMT " maps, %" PetscInt_FMT
                                      " target cells\n",
                                   o->k, (double)o->ot.epsilon, (double)o->ot.tau_a, (double)o->ot.tau_b, o->nmaps, o->ny));
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelDestroy_OT(CsModel m)
{
  PetscFunctionBeginUser;
  PetscCall(OTFree((OT *)m->data));
  PetscCall(PetscFree(m->data));
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelCreate_OT(CsModel m)
{
  OT *o;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&o));
  o->k = 50;
  PetscCall(CsOTOptionsDefaults(&o->ot));
  o->ot.max_iter = 2000;
  CsPCAOptionsDefault(&o->pca);
  m->data                = o;
  m->ops->setfromoptions = CsModelSetFromOptions_OT;
  m->ops->setup          = CsModelSetUp_OT;
  m->ops->fit            = CsModelFit_OT;
  m->ops->predict        = CsModelPredict_OT;
  m->ops->save           = CsModelSave_OT;
  m->ops->load           = CsModelLoad_OT;
  m->ops->view           = CsModelView_OT;
  m->ops->destroy        = CsModelDestroy_OT;
  PetscFunctionReturn(0);
}
