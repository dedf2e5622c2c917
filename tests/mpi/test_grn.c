/* The grn model at 1, 2 and 3 ranks on a synthetic design: cells drawn from a linear network (the prior's
   edges, with cycles) in 2 contexts, atoms of every kind (measured genes seen alone, a measured gene seen alone
   in one context only, a measured gene never seen alone, a TF that is not a measured gene seen alone and one never
   seen alone, an atom the prior does not know), single atoms train and combinations test. The prior is a
   DoRothEA-format file written for the test (a confidence-D edge must be ignored).

   The same model is fitted twice: on all ranks (cells in contiguous blocks) and on each rank alone with every
   cell (PETSC_COMM_SELF, the 1-rank answer), and W, the responses and the predicted means of the test groups
   must agree; a copy loaded from model.h5 must predict the same bits; -grn_damping 0.5 halves W; the default
   -grn_unknown error refuses a test condition holding the unknown atom on every rank, zero and additive differ
   exactly by that atom's mean shift. The math itself is checked against numpy by tests/python/check_grn.py. */
#include "testing.h"
#include <cellshift/model.h>
#include <cellshift/h5util.h>
#include <cellshift/rng.h>
#include <stdlib.h>

#define NG    30
#define NCELL 900
#define NATOM 6
#define NCOND 8
#define NCTX  2

static const char *cond_names[NCOND] = {"DRUG", "DRUG+G4", "G2", "G2+TFY", "G4", "G9+TFX", "TFX", "control"};
static const char *atom_names[NATOM] = {"DRUG", "G2", "G4", "G9", "TFX", "TFY"};
static const char *ctx_names[NCTX]   = {"c0", "c1"};

/* The prior: tf, confidence, target, mor. Cycles G4 -> G5 -> G7 -> G4 and G1 -> G2 -> G3 -> G1. */
static const char *prior_rows[] = {"G4\tA\tG5\t1", "G4\tB\tG6\t-1", "G5\tA\tG7\t1", "G7\tC\tG4\t1", "G1\tA\tG2\t1", "G2\tA\tG3\t-1",
                                   "G3\tB\tG1\t1", "G10\tA\tG11\t1", "G10\tA\tG12\t-1", "G11\tB\tG12\t1", "TFX\tA\tG12\t1", "TFX\tA\tG13\t-1",
                                   "TFX\tB\tG4\t1", "TFY\tA\tG14\t1", "TFY\tC\tG15\t1", "G9\tA\tG16\t-1", "G9\tA\tG17\t1", "TFZ\tA\tNOTAGENE\t1",
                                   "G20\tD\tG21\t1", "G18\tA\tG19\t-1", "G19\tA\tG18\t-1"};
#define NPRIOR ((int)(sizeof(prior_rows) / sizeof(prior_rows[0])))

typedef struct {
  PetscInt ngroups, gcond[NCTX * NCOND], gctx[NCTX * NCOND];
  CsRole   role[NCTX * NCOND];
} Layout;

/* Singles and controls train, except G4 in c1 (valid, so G4 is seen alone in c0 only); combinations test;
   DRUG+G4 exists in c0 only and G9+TFX in c1 only. */
static void MakeLayout(Layout *L)
{
  L->ngroups = 0;
  for (PetscInt c = 0; c < NCTX; c++)
    for (PetscInt k = 0; k < NCOND; k++) {
      const char *n = cond_names[k];
      CsRole      r = strchr(n, '+') ? CS_ROLE_TEST : CS_ROLE_TRAIN;
      if ((c == 1 && !strcmp(n, "DRUG+G4")) || (c == 0 && !strcmp(n, "G9+TFX"))) continue;
      if (c == 1 && !strcmp(n, "G4")) r = CS_ROLE_VALID;
      L->gcond[L->ngroups] = k, L->gctx[L->ngroups] = c, L->role[L->ngroups] = r;
      L->ngroups++;
    }
}

static PetscInt CellGroup(const Layout *L, PetscInt i) { return (PetscInt)(CsRngUniform(11, CS_STREAM_DATA, (uint64_t)i, 0) * (double)L->ngroups); }

static PetscInt CondAtoms(PetscInt k, PetscInt atoms[2])
{
  PetscInt n = 0;
  char     buf[32], *p, *save = NULL;
  if (!strcmp(cond_names[k], "control")) return 0;
  PetscStrncpy(buf, cond_names[k], sizeof(buf));
  for (p = strtok_r(buf, "+", &save); p; p = strtok_r(NULL, "+", &save))
    for (PetscInt a = 0; a < NATOM; a++)
      if (!strcmp(p, atom_names[a])) atoms[n++] = a;
  return n;
}

/* Cell i: x = (I - W0)^{-1} (base_ctx + input of its atoms + noise), clipped at 0; W0 = 0.4 x the prior's signs on
   the measured edges (fixed-point iterations; rho(W0) < 1). */
static void CellExpression(const Layout *L, PetscInt i, float x[NG])
{
  static const int es[] = {4, 4, 5, 7, 1, 2, 3, 10, 10, 11, 18, 19, 9, 9}, et[] = {5, 6, 7, 4, 2, 3, 1, 11, 12, 12, 19, 18, 16, 17};
  static const double ew[] = {1, -1, 1, 1, 1, -1, 1, 1, -1, 1, -1, -1, -1, 1};
  PetscInt g = CellGroup(L, i), c = L->gctx[g], atoms[2], n = CondAtoms(L->gcond[g], atoms);
  double   b[NG], y[NG], z[2];

  for (PetscInt j = 0; j < NG; j++) {
    CsRngNormal2(12, CS_STREAM_DATA, (uint64_t)i, (uint64_t)j, z);
    b[j] = 2.0 + 0.4 * sin(0.9 * (double)j + (double)c) + 0.5 * z[0];
  }
  for (PetscInt t = 0; t < n; t++) {
    const char *a = atom_names[atoms[t]];
    if (!strcmp(a, "G2")) b[2] -= 1.2;
    if (!strcmp(a, "G4")) b[4] += 1.0 + 0.3 * c;
    if (!strcmp(a, "G9")) b[9] += 1.5;
    if (!strcmp(a, "TFX")) b[12] += 0.8, b[13] -= 0.8, b[4] += 0.8;
    if (!strcmp(a, "TFY")) b[14] += 0.6, b[15] += 0.6;
    if (!strcmp(a, "DRUG"))
      for (PetscInt j = 20; j < NG; j++) b[j] += 0.3 * cos((double)j);
  }
  for (PetscInt j = 0; j < NG; j++) y[j] = b[j];
  for (int it = 0; it < 60; it++) {
    double nx[NG];
    for (PetscInt j = 0; j < NG; j++) nx[j] = b[j];
    for (size_t e = 0; e < sizeof(es) / sizeof(es[0]); e++) nx[et[e]] += 0.4 * ew[e] * y[es[e]];
    for (PetscInt j = 0; j < NG; j++) y[j] = nx[j];
  }
  for (PetscInt j = 0; j < NG; j++) x[j] = (float)(y[j] > 0 ? y[j] : 0);
}

typedef struct {
  CsDataset ds;
  CsDesign  d;
  CsSplit   s;
} Problem;

/* The rank's block of the cells on comm (on PETSC_COMM_SELF: all of them). */
static PetscErrorCode MakeProblem(MPI_Comm comm, const Layout *L, Problem *pb)
{
  PetscMPIInt size, rank;
  PetscInt    rstart, rend;
  CsDataset   ds;
  CsDesign    d;
  CsSplit     s;
  float       x[NG];

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_size(comm, &size));
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  rstart = (NCELL * rank) / size, rend = (NCELL * (rank + 1)) / size;
  PetscCall(PetscNew(&ds));
  ds->comm = comm, ds->nglobal = NCELL, ds->ngenes = NG, ds->rstart = rstart, ds->nlocal = rend - rstart;
  ds->X.nrows = ds->nlocal, ds->X.ncols = NG;
  PetscCall(PetscMalloc1(ds->nlocal + 1, &ds->X.indptr));
  PetscCall(PetscMalloc1((size_t)ds->nlocal * NG + 1, &ds->X.indices));
  PetscCall(PetscMalloc1((size_t)ds->nlocal * NG + 1, &ds->X.data));
  ds->X.indptr[0] = 0;
  for (PetscInt i = 0; i < ds->nlocal; i++) {
    int64_t e = ds->X.indptr[i];
    CellExpression(L, rstart + i, x);
    for (PetscInt j = 0; j < NG; j++)
      if (x[j] != 0) ds->X.indices[e] = (int32_t)j, ds->X.data[e++] = x[j];
    ds->X.indptr[i + 1] = e;
  }
  PetscCall(PetscMalloc1(NG, &ds->genes));
  for (PetscInt j = 0; j < NG; j++) {
    char name[16];
    PetscCall(PetscSNPrintf(name, sizeof(name), "G%" PetscInt_FMT, j));
    PetscCall(PetscStrallocpy(name, &ds->genes[j]));
  }
  PetscCall(PetscNew(&d));
  d->comm = comm, d->natoms = NATOM, d->ncond = NCOND, d->nctx = NCTX, d->ngroups = L->ngroups, d->nlocal = ds->nlocal;
  PetscCall(PetscMalloc1(NATOM, &d->atoms));
  for (PetscInt a = 0; a < NATOM; a++) PetscCall(PetscStrallocpy(atom_names[a], &d->atoms[a]));
  PetscCall(PetscMalloc1(NCTX, &d->contexts));
  for (PetscInt c = 0; c < NCTX; c++) PetscCall(PetscStrallocpy(ctx_names[c], &d->contexts[c]));
  PetscCall(PetscCalloc1(NCOND, &d->conds));
  for (PetscInt k = 0; k < NCOND; k++) {
    PetscInt atoms[2];
    d->conds[k].natoms = CondAtoms(k, atoms);
    PetscCall(PetscStrallocpy(cond_names[k], &d->conds[k].name));
    PetscCall(PetscStrallocpy("", &d->conds[k].dose));
    PetscCall(PetscMalloc2(2, &d->conds[k].atoms, 2, &d->conds[k].doses));
    for (PetscInt a = 0; a < d->conds[k].natoms; a++) d->conds[k].atoms[a] = atoms[a], d->conds[k].doses[a] = 1;
  }
  PetscCall(PetscCalloc1(L->ngroups, &d->groups));
  for (PetscInt g = 0; g < L->ngroups; g++) {
    d->groups[g].cond    = L->gcond[g];
    d->groups[g].ctx     = L->gctx[g];
    d->groups[g].control = (PetscBool)!strcmp(cond_names[L->gcond[g]], "control");
    d->groups[g].ctrl    = -1;
    for (PetscInt h = 0; h < L->ngroups; h++)
      if (L->gctx[h] == L->gctx[g] && !strcmp(cond_names[L->gcond[h]], "control")) d->groups[g].ctrl = h;
  }
  for (PetscInt i = 0; i < NCELL; i++) d->groups[CellGroup(L, i)].ncells++;
  for (PetscInt g = 0; g < L->ngroups; g++) PetscCheck(d->groups[g].ncells > 0, comm, PETSC_ERR_PLIB, "empty group");
  PetscCall(PetscMalloc1(ds->nlocal + 1, &d->cell_group));
  for (PetscInt i = 0; i < ds->nlocal; i++) d->cell_group[i] = CellGroup(L, rstart + i);
  d->setup = PETSC_TRUE;
  PetscCall(PetscNew(&s));
  s->comm = comm, s->ngroups = L->ngroups;
  PetscCall(PetscMalloc1(L->ngroups, &s->role));
  for (PetscInt g = 0; g < L->ngroups; g++) s->role[g] = L->role[g];
  s->setup = PETSC_TRUE, ds->setup = PETSC_TRUE;
  pb->ds = ds, pb->d = d, pb->s = s;
  PetscFunctionReturn(0);
}

static PetscErrorCode FreeProblem(Problem *pb)
{
  PetscFunctionBeginUser;
  PetscCall(CsCSRFree(&pb->ds->X));
  PetscCall(CsStrArrayDestroy(NG, &pb->ds->genes));
  PetscCall(PetscFree(pb->ds));
  PetscCall(CsStrArrayDestroy(NATOM, &pb->d->atoms));
  PetscCall(CsStrArrayDestroy(NCTX, &pb->d->contexts));
  for (PetscInt k = 0; k < NCOND; k++) {
    PetscCall(PetscFree(pb->d->conds[k].name));
    PetscCall(PetscFree(pb->d->conds[k].dose));
    PetscCall(PetscFree2(pb->d->conds[k].atoms, pb->d->conds[k].doses));
  }
  PetscCall(PetscFree(pb->d->conds));
  PetscCall(PetscFree(pb->d->groups));
  PetscCall(PetscFree(pb->d->cell_group));
  PetscCall(PetscFree(pb->d));
  PetscCall(PetscFree(pb->s->role));
  PetscCall(PetscFree(pb->s));
  PetscFunctionReturn(0);
}

/* Mean prediction of group g over the context's control cells of all ranks of the problem. */
static PetscErrorCode PredictedMean(CsModel m, const Problem *pb, PetscInt g, double mean[NG])
{
  CsDataset ds = pb->ds;
  CsDesign  d  = pb->d;
  PetscInt  cg = d->groups[g].ctrl, n = 0, *rows;
  CsCSR     ctrl = {0};
  float    *out;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(ds->nlocal + 1, &rows));
  for (PetscInt i = 0; i < ds->nlocal; i++)
    if (d->cell_group[i] == cg) rows[n++] = i;
  PetscCall(CsCSRSubsetRows(&ds->X, n, rows, &ctrl));
  PetscCall(PetscMalloc1((size_t)n * NG + 1, &out));
  PetscCall(CsModelPredict(m, &d->conds[d->groups[g].cond], d->groups[g].ctx, &ctrl, out));
  for (PetscInt j = 0; j < NG; j++) mean[j] = 0;
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt j = 0; j < NG; j++) mean[j] += out[(size_t)i * NG + j];
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, mean, NG, MPI_DOUBLE, MPI_SUM, ds->comm));
  for (PetscInt j = 0; j < NG; j++) mean[j] /= (double)d->groups[cg].ncells;
  PetscCall(PetscFree(out));
  PetscCall(PetscFree(rows));
  PetscCall(CsCSRFree(&ctrl));
  PetscFunctionReturn(0);
}

static PetscErrorCode Fit(MPI_Comm comm, const Problem *pb, CsModel *m)
{
  PetscFunctionBeginUser;
  PetscCall(CsModelCreate(comm, m));
  PetscCall(CsModelSetType(*m, "grn"));
  PetscCall(CsModelSetFromOptions(*m));
  PetscCall(CsModelSetProblem(*m, pb->ds, pb->d, pb->s));
  PetscCall(CsModelFit(*m));
  PetscFunctionReturn(0);
}

/* W values and the responses of a saved model. */
static PetscErrorCode ReadParams(const char path[], double *W, PetscInt *nnz, double *R, PetscInt *nresp)
{
  hid_t   f, g;
  hsize_t dn[1] = {0}, dr[2] = {0, NG};

  PetscFunctionBeginUser;
  H5Call(f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), "cannot open %s", path);
  H5Call(g = H5Gopen2(f, "params", H5P_DEFAULT), "no params");
  PetscCall(CsH5ReadArray(g, path, "W_values", H5T_NATIVE_DOUBLE, 1, dn, NULL));
  PetscCall(CsH5ReadArray(g, path, "W_values", H5T_NATIVE_DOUBLE, 1, dn, W));
  PetscCall(CsH5ReadArray(g, path, "response", H5T_NATIVE_DOUBLE, 2, dr, NULL));
  PetscCall(CsH5ReadArray(g, path, "response", H5T_NATIVE_DOUBLE, 2, dr, R));
  *nnz = (PetscInt)dn[0], *nresp = (PetscInt)dr[0];
  H5Gclose(g);
  H5Fclose(f);
  PetscFunctionReturn(0);
}

static PetscErrorCode Body(void)
{
  MPI_Comm       comm = PETSC_COMM_WORLD;
  Layout         L;
  Problem        pw = {0}, ps = {0};
  CsModel        mw, ms, ml;
  char           dir[PETSC_MAX_PATH_LEN], prior[PETSC_MAX_PATH_LEN], pathw[PETSC_MAX_PATH_LEN], paths[PETSC_MAX_PATH_LEN];
  PetscMPIInt    rank;
  double         Ww[64], Ws[64], Rw[8 * NG], Rs[8 * NG], a[NG], b[NG], c[NG];
  PetscInt       nw, ns, rw, rs, ntest = 0;
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  MakeLayout(&L);
  PetscCall(CsTestTempDir(comm, dir));
  PetscCall(CsPathJoin(dir, "regulons.tsv", prior));
  if (!rank) {
    FILE *fp = fopen(prior, "w");
    PetscCheck(fp, PETSC_COMM_SELF, PETSC_ERR_FILE_OPEN, "cannot write %s", prior);
    fprintf(fp, "tf\tconfidence\ttarget\tmor\n");
    for (int r = 0; r < NPRIOR; r++) fprintf(fp, "%s\n", prior_rows[r]);
    fclose(fp);
  }
  PetscCallMPI(MPI_Barrier(comm));
  PetscCall(PetscOptionsSetValue(NULL, "-prior_dorothea", prior));
  PetscCall(MakeProblem(comm, &L, &pw));
  PetscCall(MakeProblem(PETSC_COMM_SELF, &L, &ps));

  /* The default refuses the unknown atom DRUG of the test condition DRUG+G4, on every rank. */
  PetscCall(CsModelCreate(comm, &mw));
  PetscCall(CsModelSetType(mw, "grn"));
  PetscCall(CsModelSetFromOptions(mw));
  PetscCall(CsModelSetProblem(mw, pw.ds, pw.d, pw.s));
  PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
  ierr = CsModelFit(mw);
  PetscCall(PetscPopErrorHandler());
  CS_EXPECT(ierr == CS_ERR_INPUT, "an unknown atom in a test condition: error %d, expected an input error", (int)ierr);
  PetscCall(CsModelDestroy(&mw));

  PetscCall(PetscOptionsSetValue(NULL, "-grn_unknown", "additive"));
  PetscCall(Fit(comm, &pw, &mw));
  PetscCall(Fit(PETSC_COMM_SELF, &ps, &ms));
  PetscCall(CsPathJoin(dir, "world.h5", pathw));
  PetscCall(CsModelSave(mw, pathw));
  {
    char name[64];
    PetscCall(PetscSNPrintf(name, sizeof(name), "self%d.h5", (int)rank));
    PetscCall(CsPathJoin(dir, name, paths));
  }
  PetscCall(CsModelSave(ms, paths));
  PetscCall(ReadParams(pathw, Ww, &nw, Rw, &rw));
  PetscCall(ReadParams(paths, Ws, &ns, Rs, &rs));
  /* W on the measured prior edges without self-loops and without the confidence-D edge; responses of 5 atoms
     (G2, G4, G9 measured; TFX, TFY through their targets; DRUG is unknown). */
  CS_EXPECT(nw == 14 && ns == nw, "W has %" PetscInt_FMT " edges (one rank alone: %" PetscInt_FMT "), expected 14", nw, ns);
  CS_EXPECT(rw == 5 && rs == 5, "%" PetscInt_FMT " responses, expected 5", rw);
  for (PetscInt e = 0; e < PetscMin(nw, ns); e++) CS_EXPECT_CLOSE(Ww[e], Ws[e], 1e-10, "W at N ranks vs 1 rank");
  for (PetscInt e = 0; e < PetscMin(rw, rs) * NG; e++) CS_EXPECT_CLOSE(Rw[e], Rs[e], 1e-10, "response at N ranks vs 1 rank");
  {
    double wmax = 0;
    for (PetscInt e = 0; e < nw; e++) wmax = PetscMax(wmax, fabs(Ww[e]));
    CS_EXPECT(wmax > 0.1, "W is nearly 0 (max |w| %g): the regressions found nothing", wmax);
  }

  PetscCall(CsModelCreate(comm, &ml));
  PetscCall(CsModelSetType(ml, "grn"));
  PetscCall(CsModelSetProblem(ml, pw.ds, pw.d, pw.s));
  PetscCall(CsModelLoad(ml, pathw));
  for (PetscInt g = 0; g < L.ngroups; g++) {
    if (L.role[g] != CS_ROLE_TEST) continue;
    PetscCall(PredictedMean(mw, &pw, g, a));
    PetscCall(PredictedMean(ms, &ps, g, b));
    PetscCall(PredictedMean(ml, &pw, g, c));
    for (PetscInt j = 0; j < NG; j++) {
      CS_EXPECT_CLOSE(a[j], b[j], 1e-6, "predicted mean at N ranks vs 1 rank");
      CS_EXPECT(a[j] == c[j], "loaded model predicts %g, fitted one %g", c[j], a[j]);
    }
    ntest++;
  }
  CS_EXPECT(ntest == 4, "%" PetscInt_FMT " test groups", ntest);
  PetscCall(CsModelView(mw, PETSC_VIEWER_STDOUT_(comm)));

  /* zero against additive: in DRUG+G4 (c0) they differ by DRUG's mean measured shift. */
  {
    CsModel  mz;
    PetscInt g = 1; /* (c0, DRUG+G4) */
    PetscCall(PetscOptionsSetValue(NULL, "-grn_unknown", "zero"));
    PetscCall(Fit(comm, &pw, &mz));
    PetscCall(PredictedMean(mz, &pw, g, b));
    PetscCall(PredictedMean(mw, &pw, g, a));
    {
      /* DRUG's mean shift in c0: its group (index 0) against the control group of c0. */
      double   sum[2][NG] = {{0}}, n[2] = {0, 0}, diff = 0, size = 0;
      PetscInt gc = pw.d->groups[0].ctrl;
      for (PetscInt i = 0; i < pw.ds->nlocal; i++) {
        PetscInt k = pw.d->cell_group[i] == 0 ? 0 : pw.d->cell_group[i] == gc ? 1 : -1;
        if (k < 0) continue;
        for (int64_t e = pw.ds->X.indptr[i]; e < pw.ds->X.indptr[i + 1]; e++) sum[k][pw.ds->X.indices[e]] += pw.ds->X.data[e];
        n[k]++;
      }
      PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, sum, 2 * NG, MPI_DOUBLE, MPI_SUM, comm));
      PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, n, 2, MPI_DOUBLE, MPI_SUM, comm));
      for (PetscInt j = 0; j < NG; j++) {
        double shift = sum[0][j] / n[0] - sum[1][j] / n[1];
        diff         = PetscMax(diff, fabs(a[j] - b[j] - shift));
        size         = PetscMax(size, fabs(shift));
      }
      CS_EXPECT(diff < 1e-5 && size > 0.1, "additive - zero should be DRUG's mean shift (largest %g): off by %g", size, diff);
    }
    PetscCall(CsModelDestroy(&mz));
  }
  /* damping 0.5: W halves. */
  {
    CsModel  md;
    double   Wd[64], Rd[8 * NG];
    PetscInt nd, rd;
    PetscCall(PetscOptionsSetValue(NULL, "-grn_unknown", "additive"));
    PetscCall(PetscOptionsSetValue(NULL, "-grn_damping", "0.5"));
    PetscCall(Fit(comm, &pw, &md));
    PetscCall(CsModelSave(md, pathw));
    PetscCall(ReadParams(pathw, Wd, &nd, Rd, &rd));
    for (PetscInt e = 0; e < PetscMin(nd, nw); e++) CS_EXPECT_CLOSE(Wd[e], 0.5 * Ww[e], 1e-12, "damped W");
    PetscCall(CsModelDestroy(&md));
    PetscCall(PetscOptionsClearValue(NULL, "-grn_damping"));
  }
  PetscCall(PetscOptionsClearValue(NULL, "-grn_unknown"));
  PetscCall(PetscOptionsClearValue(NULL, "-prior_dorothea"));
  PetscCall(CsModelDestroy(&ml));
  PetscCall(CsModelDestroy(&ms));
  PetscCall(CsModelDestroy(&mw));
  PetscCall(FreeProblem(&ps));
  PetscCall(FreeProblem(&pw));
  PetscCallMPI(MPI_Barrier(comm));
  if (!rank) {
    char cmd[2 * PETSC_MAX_PATH_LEN];
    PetscCall(PetscSNPrintf(cmd, sizeof(cmd), "rm -rf %s", dir));
    CS_EXPECT(system(cmd) == 0, "cannot remove %s", dir);
  }
  PetscFunctionReturn(0);
}

int main(int argc, char **argv) { return CsTestMain(argc, argv, Body); }
