/* The linear model on a synthetic design (2 contexts, 6 atoms, single and combined conditions, an atom seen alone
   in one context only, a combination asked for in a context where it was never seen), cells split over the ranks
   in contiguous blocks. Every rank recomputes the model from the whole data with plain dense algebra (covariance
   and its eigenvectors, group means, atom shifts, W by Gauss-Jordan inverses) and checks the saved parameters
   and the predicted means of the test groups; then a loaded copy must predict the same; a -linear_k larger than
   the number of genes must be refused on every rank. */
#include "testing.h"
#include <cellshift/model.h>
#include <cellshift/linalg.h>
#include <cellshift/h5util.h>
#include <cellshift/rng.h>

#define NG     40  /* genes */
#define NCELL  700
#define NATOM  6
#define NCOND  11
#define NCTX   2
#define KDIM   4
#define RIDGE  0.1

static const char *cond_names[NCOND] = {"A", "A+B", "A+C", "B", "C", "C+D", "D", "E", "E+F", "F", "control"};
static const char *atom_names[NATOM] = {"A", "B", "C", "D", "E", "F"};
static const char *ctx_names[NCTX]   = {"c0", "c1"};

typedef struct {
  PetscInt ngroups, gcond[NCTX * NCOND], gctx[NCTX * NCOND];
  CsRole   role[NCTX * NCOND];
} Layout;

/* Groups in (context, condition) order; (c1, F) and (c0, E+F) have no cells. Roles: singles and controls train,
   A+B train, A+C test in c0 and valid in c1, C+D test, E+F test (c1 only), D valid in c1 (so D is seen alone in
   c0 only, like F). */
static void MakeLayout(Layout *L)
{
  L->ngroups = 0;
  for (PetscInt c = 0; c < NCTX; c++)
    for (PetscInt k = 0; k < NCOND; k++) {
      const char *n = cond_names[k];
      if ((c == 1 && !strcmp(n, "F")) || (c == 0 && !strcmp(n, "E+F"))) continue;
      CsRole r = CS_ROLE_TRAIN;
      if (!strcmp(n, "A+C")) r = c == 0 ? CS_ROLE_TEST : CS_ROLE_VALID;
      if (!strcmp(n, "C+D") || !strcmp(n, "E+F")) r = CS_ROLE_TEST;
      if (!strcmp(n, "D") && c == 1) r = CS_ROLE_VALID;
      L->gcond[L->ngroups] = k, L->gctx[L->ngroups] = c, L->role[L->ngroups] = r;
      L->ngroups++;
    }
}

static PetscInt CellGroup(const Layout *L, PetscInt i)
{
  return (PetscInt)(CsRngUniform(4, CS_STREAM_DATA, (uint64_t)i, 0) * (double)L->ngroups);
}

/* Atoms of condition k, from its name. */
static PetscInt CondAtoms(PetscInt k, PetscInt atoms[2])
{
  PetscInt n = 0;
  for (PetscInt a = 0; a < NATOM; a++)
    if (strcmp(cond_names[k], "control") && strchr(cond_names[k], atom_names[a][0])) atoms[n++] = a;
  return n;
}

/* Expression of cell i in group g: context baseline + atom effects + noise, clipped at 0 (so the matrix is
   sparse). */
static float Expr(const Layout *L, PetscInt i, PetscInt j)
{
  PetscInt g = CellGroup(L, i), c = L->gctx[g], atoms[2], n = CondAtoms(L->gcond[g], atoms);
  double   x = 1.0 + sin(0.7 * (double)j + (double)c), z[2];
  for (PetscInt t = 0; t < n; t++) x += 0.9 * cos(0.37 * (double)(j * (atoms[t] + 1))) * (atoms[t] % 2 ? 1 : -1);
  CsRngNormal2(5, CS_STREAM_DATA, (uint64_t)i, (uint64_t)j, z);
  x += 0.5 * z[0];
  return (float)(x > 0 ? x : 0);
}

/* In-place inverse of the n x n matrix A by Gauss-Jordan with partial pivoting. */
static void Invert(PetscInt n, double *A)
{
  double M[2 * KDIM * KDIM * 2];
  for (PetscInt r = 0; r < n; r++)
    for (PetscInt c = 0; c < 2 * n; c++) M[r * 2 * n + c] = c < n ? A[r * n + c] : (c - n == r ? 1 : 0);
  for (PetscInt c = 0; c < n; c++) {
    PetscInt piv = c;
    for (PetscInt r = c + 1; r < n; r++)
      if (fabs(M[r * 2 * n + c]) > fabs(M[piv * 2 * n + c])) piv = r;
    for (PetscInt t = 0; t < 2 * n; t++) {
      double tmp = M[c * 2 * n + t];
      M[c * 2 * n + t] = M[piv * 2 * n + t], M[piv * 2 * n + t] = tmp;
    }
    double d = M[c * 2 * n + c];
    for (PetscInt t = 0; t < 2 * n; t++) M[c * 2 * n + t] /= d;
    for (PetscInt r = 0; r < n; r++) {
      if (r == c) continue;
      double f = M[r * 2 * n + c];
      for (PetscInt t = 0; t < 2 * n; t++) M[r * 2 * n + t] -= f * M[c * 2 * n + t];
    }
  }
  for (PetscInt r = 0; r < n; r++)
    for (PetscInt c = 0; c < n; c++) A[r * n + c] = M[r * 2 * n + n + c];
}

typedef struct {
  double G[KDIM][NG], W[KDIM][KDIM], P[NATOM][KDIM], b[NG];
  double pred[NCTX * NCOND][NG]; /* predicted mean of each test group */
} Reference;

static PetscErrorCode ComputeReference(const Layout *L, Reference *R)
{
  static double x[NCELL][NG], C[NG * NG], gmean[NCTX * NCOND][NG];
  double        mean[NG] = {0}, vals[KDIM], vecs[KDIM * NG], delta[NATOM][NG], Y[NCTX * NCOND][NG];
  PetscInt      n = 0, gcount[NCTX * NCOND] = {0}, ctrl[NCTX] = {-1, -1}, cols[NCTX * NCOND], nt = 0;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(R, sizeof(*R)));
  PetscCall(PetscMemzero(gmean, sizeof(gmean)));
  PetscCall(PetscMemzero(C, sizeof(C)));
  for (PetscInt i = 0; i < NCELL; i++)
    for (PetscInt j = 0; j < NG; j++) x[i][j] = Expr(L, i, j);
  /* PCA of the training cells. */
  for (PetscInt i = 0; i < NCELL; i++) {
    if (L->role[CellGroup(L, i)] != CS_ROLE_TRAIN) continue;
    for (PetscInt j = 0; j < NG; j++) mean[j] += x[i][j];
    n++;
  }
  for (PetscInt j = 0; j < NG; j++) mean[j] /= (double)n;
  for (PetscInt i = 0; i < NCELL; i++) {
    if (L->role[CellGroup(L, i)] != CS_ROLE_TRAIN) continue;
    for (PetscInt a = 0; a < NG; a++)
      for (PetscInt b = 0; b < NG; b++) C[a * NG + b] += (x[i][a] - mean[a]) * (x[i][b] - mean[b]) / (double)(n - 1);
  }
  PetscCall(CsSymEigTop(NG, C, KDIM, vals, vecs));
  for (PetscInt t = 0; t < KDIM; t++)
    for (PetscInt j = 0; j < NG; j++) R->G[t][j] = vecs[t * NG + j];
  /* Group means, controls. */
  for (PetscInt i = 0; i < NCELL; i++) {
    PetscInt g = CellGroup(L, i);
    for (PetscInt j = 0; j < NG; j++) gmean[g][j] += x[i][j];
    gcount[g]++;
  }
  for (PetscInt g = 0; g < L->ngroups; g++) {
    for (PetscInt j = 0; j < NG; j++) gmean[g][j] /= (double)gcount[g];
    if (!strcmp(cond_names[L->gcond[g]], "control")) ctrl[L->gctx[g]] = g;
  }
  /* Atom shifts: single-atom train groups, averaged within then over contexts. */
  for (PetscInt a = 0; a < NATOM; a++) {
    PetscInt nctx = 0;
    for (PetscInt j = 0; j < NG; j++) delta[a][j] = 0;
    for (PetscInt g = 0; g < L->ngroups; g++) {
      PetscInt atoms[2];
      if (L->role[g] != CS_ROLE_TRAIN || CondAtoms(L->gcond[g], atoms) != 1 || atoms[0] != a) continue;
      for (PetscInt j = 0; j < NG; j++) delta[a][j] += gmean[g][j] - gmean[ctrl[L->gctx[g]]][j];
      nctx++;
    }
    for (PetscInt j = 0; j < NG; j++) delta[a][j] /= nctx;
    for (PetscInt t = 0; t < KDIM; t++)
      for (PetscInt j = 0; j < NG; j++) R->P[a][t] += R->G[t][j] * delta[a][j];
  }
  /* Y, b, W. */
  for (PetscInt g = 0; g < L->ngroups; g++) {
    if (L->role[g] != CS_ROLE_TRAIN || !strcmp(cond_names[L->gcond[g]], "control")) continue;
    for (PetscInt j = 0; j < NG; j++) Y[nt][j] = gmean[g][j] - gmean[ctrl[L->gctx[g]]][j];
    cols[nt++] = g;
  }
  for (PetscInt c = 0; c < nt; c++)
    for (PetscInt j = 0; j < NG; j++) R->b[j] += Y[c][j] / (double)nt;
  {
    double GG[KDIM * KDIM] = {0}, PP[KDIM * KDIM] = {0}, M[KDIM][KDIM] = {{0}}, T[KDIM][KDIM] = {{0}};
    double Pg[NCTX * NCOND][KDIM] = {{0}};
    for (PetscInt c = 0; c < nt; c++) {
      PetscInt atoms[2], na = CondAtoms(L->gcond[cols[c]], atoms);
      for (PetscInt a = 0; a < na; a++)
        for (PetscInt t = 0; t < KDIM; t++) Pg[c][t] += R->P[atoms[a]][t];
    }
    for (PetscInt t = 0; t < KDIM; t++)
      for (PetscInt u = 0; u < KDIM; u++) {
        for (PetscInt j = 0; j < NG; j++) GG[t * KDIM + u] += R->G[t][j] * R->G[u][j];
        for (PetscInt c = 0; c < nt; c++) PP[t * KDIM + u] += Pg[c][t] * Pg[c][u];
        for (PetscInt c = 0; c < nt; c++)
          for (PetscInt j = 0; j < NG; j++) M[t][u] += R->G[t][j] * (Y[c][j] - R->b[j]) * Pg[c][u];
        GG[t * KDIM + u] += t == u ? RIDGE : 0;
        PP[t * KDIM + u] += t == u ? RIDGE : 0;
      }
    Invert(KDIM, GG);
    Invert(KDIM, PP);
    for (PetscInt t = 0; t < KDIM; t++)
      for (PetscInt u = 0; u < KDIM; u++)
        for (PetscInt v = 0; v < KDIM; v++) T[t][u] += GG[t * KDIM + v] * M[v][u];
    for (PetscInt t = 0; t < KDIM; t++)
      for (PetscInt u = 0; u < KDIM; u++)
        for (PetscInt v = 0; v < KDIM; v++) R->W[t][u] += T[t][v] * PP[v * KDIM + u];
  }
  /* Predicted means of the test groups: control mean of the context + b + G^T W p. */
  for (PetscInt g = 0; g < L->ngroups; g++) {
    PetscInt atoms[2], na = CondAtoms(L->gcond[g], atoms);
    double   p[KDIM] = {0}, v[KDIM] = {0};
    if (L->role[g] != CS_ROLE_TEST) continue;
    for (PetscInt a = 0; a < na; a++)
      for (PetscInt t = 0; t < KDIM; t++) p[t] += R->P[atoms[a]][t];
    for (PetscInt t = 0; t < KDIM; t++)
      for (PetscInt u = 0; u < KDIM; u++) v[t] += R->W[t][u] * p[u];
    for (PetscInt j = 0; j < NG; j++) {
      R->pred[g][j] = gmean[ctrl[L->gctx[g]]][j] + R->b[j];
      for (PetscInt t = 0; t < KDIM; t++) R->pred[g][j] += R->G[t][j] * v[t];
    }
  }
  PetscFunctionReturn(0);
}

typedef struct {
  CsDataset ds;
  CsDesign  d;
  CsSplit   s;
} Problem;

/* The rank's block of the synthetic data as dataset, design and split objects. */
static PetscErrorCode MakeProblem(MPI_Comm comm, const Layout *L, Problem *pb)
{
  PetscMPIInt size, rank;
  PetscInt    rstart, rend;
  CsDataset   ds;
  CsDesign    d;
  CsSplit     s;

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
    for (PetscInt j = 0; j < NG; j++) {
      float v = Expr(L, rstart + i, j);
      if (v != 0) ds->X.indices[e] = (int32_t)j, ds->X.data[e++] = v;
    }
    ds->X.indptr[i + 1] = e;
  }
  PetscCall(PetscMalloc1(NG, &ds->genes));
  for (PetscInt j = 0; j < NG; j++) {
    char name[16];
    PetscCall(PetscSNPrintf(name, sizeof(name), "g%" PetscInt_FMT, j));
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
  s->setup = PETSC_TRUE;
  ds->setup = PETSC_TRUE;
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

/* Predicted mean of group g: the model predicts every local control cell of g's context, summed over ranks. */
static PetscErrorCode PredictedMean(CsModel m, const Problem *pb, PetscInt g, double mean[NG], float *out)
{
  CsDataset ds = pb->ds;
  CsDesign  d  = pb->d;
  CsCSR     ctrl = {0};
  PetscInt  n = 0, cg = d->groups[g].ctrl;
  double    cnt;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(ds->nlocal + 1, &ctrl.indptr));
  PetscCall(PetscMalloc1(ds->X.indptr[ds->nlocal] + 1, &ctrl.indices));
  PetscCall(PetscMalloc1(ds->X.indptr[ds->nlocal] + 1, &ctrl.data));
  ctrl.ncols = NG, ctrl.indptr[0] = 0;
  for (PetscInt i = 0; i < ds->nlocal; i++) {
    if (d->cell_group[i] != cg) continue;
    int64_t e = ctrl.indptr[n];
    for (int64_t k = ds->X.indptr[i]; k < ds->X.indptr[i + 1]; k++) ctrl.indices[e] = ds->X.indices[k], ctrl.data[e++] = ds->X.data[k];
    ctrl.indptr[++n] = e;
  }
  ctrl.nrows = n;
  PetscCall(CsModelPredict(m, &d->conds[d->groups[g].cond], d->groups[g].ctx, &ctrl, out));
  for (PetscInt j = 0; j < NG; j++) mean[j] = 0;
  for (PetscInt i = 0; i < n; i++)
    for (PetscInt j = 0; j < NG; j++) mean[j] += out[i * NG + j];
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, mean, NG, MPI_DOUBLE, MPI_SUM, ds->comm));
  cnt = (double)d->groups[cg].ncells;
  for (PetscInt j = 0; j < NG; j++) mean[j] /= cnt;
  PetscCall(CsCSRFree(&ctrl));
  PetscFunctionReturn(0);
}

static PetscErrorCode Body(void)
{
  MPI_Comm       comm = PETSC_COMM_WORLD;
  Layout         L;
  Problem        pb = {0};
  static Reference R;
  CsModel        m, m2;
  char           dir[PETSC_MAX_PATH_LEN], path[PETSC_MAX_PATH_LEN];
  float         *out;
  double         mean[NG], mean2[NG];
  PetscErrorCode ierr;
  PetscInt       ntest = 0;

  PetscFunctionBeginUser;
  MakeLayout(&L);
  PetscCall(ComputeReference(&L, &R));
  PetscCall(MakeProblem(comm, &L, &pb));
  PetscCall(PetscMalloc1((size_t)NCELL * NG, &out));

  PetscCall(PetscOptionsSetValue(NULL, "-linear_k", "4"));
  PetscCall(CsModelCreate(comm, &m));
  PetscCall(CsModelSetType(m, "linear"));
  {
    CsModelType type;
    PetscCall(CsModelGetType(m, &type));
    CS_EXPECT(type && !strcmp(type, CSMODELLINEAR), "CsModelGetType gives %s, not linear", type ? type : "(null)");
  }
  PetscCall(CsModelSetFromOptions(m));
  PetscCall(CsModelSetProblem(m, pb.ds, pb.d, pb.s));
  PetscCall(CsModelFit(m));

  /* Saved parameters against the reference (double precision). */
  PetscCall(CsTestTempDir(comm, dir));
  PetscCall(CsPathJoin(dir, "model.h5", path));
  PetscCall(CsModelSave(m, path));
  {
    hid_t   f, g;
    hsize_t dG[2] = {NG, KDIM}, dW[2] = {KDIM, KDIM}, dP[2] = {NATOM, KDIM}, db[1] = {NG};
    double  G[NG * KDIM], W[KDIM * KDIM], P[NATOM * KDIM], b[NG];
    H5Call(f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), "cannot open %s", path);
    H5Call(g = H5Gopen2(f, "params", H5P_DEFAULT), "no params");
    PetscCall(CsH5ReadArray(g, path, "G", H5T_NATIVE_DOUBLE, 2, dG, G));
    PetscCall(CsH5ReadArray(g, path, "W", H5T_NATIVE_DOUBLE, 2, dW, W));
    PetscCall(CsH5ReadArray(g, path, "P", H5T_NATIVE_DOUBLE, 2, dP, P));
    PetscCall(CsH5ReadArray(g, path, "b", H5T_NATIVE_DOUBLE, 1, db, b));
    H5Gclose(g);
    H5Fclose(f);
    for (PetscInt j = 0; j < NG; j++) {
      CS_EXPECT_CLOSE(b[j], R.b[j], 1e-10, "b");
      for (PetscInt t = 0; t < KDIM; t++) CS_EXPECT_CLOSE(G[j * KDIM + t], R.G[t][j], 1e-8, "G");
    }
    for (PetscInt a = 0; a < NATOM; a++)
      for (PetscInt t = 0; t < KDIM; t++) CS_EXPECT_CLOSE(P[a * KDIM + t], R.P[a][t], 1e-8, "P");
    for (PetscInt t = 0; t < KDIM * KDIM; t++) CS_EXPECT_CLOSE(W[t], R.W[t / KDIM][t % KDIM], 1e-8, "W");
  }

  /* Predictions, then the same from a loaded copy. */
  PetscCall(CsModelCreate(comm, &m2));
  PetscCall(CsModelSetType(m2, "linear"));
  PetscCall(CsModelSetProblem(m2, pb.ds, pb.d, pb.s));
  PetscCall(CsModelLoad(m2, path));
  for (PetscInt g = 0; g < L.ngroups; g++) {
    if (L.role[g] != CS_ROLE_TEST) continue;
    PetscCall(PredictedMean(m, &pb, g, mean, out));
    PetscCall(PredictedMean(m2, &pb, g, mean2, out));
    for (PetscInt j = 0; j < NG; j++) {
      CS_EXPECT_CLOSE(mean[j], R.pred[g][j], 1e-6, "predicted mean");
      CS_EXPECT(mean[j] == mean2[j], "loaded model predicts %g, fitted one %g", mean2[j], mean[j]);
    }
    ntest++;
  }
  CS_EXPECT(ntest == 4, "%" PetscInt_FMT " test groups", ntest);
  PetscCall(CsModelView(m, PETSC_VIEWER_STDOUT_(comm)));
  PetscCall(CsModelDestroy(&m2));
  PetscCall(CsModelDestroy(&m));

  /* K larger than the number of genes: the same input error on every rank. */
  PetscCall(PetscOptionsSetValue(NULL, "-linear_k", "41"));
  PetscCall(CsModelCreate(comm, &m));
  PetscCall(CsModelSetType(m, "linear"));
  PetscCall(CsModelSetFromOptions(m));
  PetscCall(CsModelSetProblem(m, pb.ds, pb.d, pb.s));
  PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
  ierr = CsModelFit(m);
  PetscCall(PetscPopErrorHandler());
  CS_EXPECT(ierr == CS_ERR_INPUT, "-linear_k 41 with 40 genes: error %d", (int)ierr);
  PetscCall(CsModelDestroy(&m));
  PetscCall(PetscOptionsClearValue(NULL, "-linear_k"));

  PetscCall(PetscFree(out));
  PetscCall(FreeProblem(&pb));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv) { return CsTestMain(argc, argv, Body); }
