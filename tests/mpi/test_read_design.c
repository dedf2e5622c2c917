/* The reader and the design at 1, 2 and 3 ranks against statistics computed independently by anndata/numpy
   (tests/python/expected_stats.py) on the embedded Norman/McFaline file. */
#include "testing.h"
#include <cellshift/design.h>
#include <stdlib.h>

static PetscErrorCode Body(void)
{
  MPI_Comm  comm = PETSC_COMM_WORLD;
  char      data[PETSC_MAX_PATH_LEN], script[PETSC_MAX_PATH_LEN], dir[PETSC_MAX_PATH_LEN], exp[PETSC_MAX_PATH_LEN], cmd[4096];
  PetscMPIInt rank;
  CsDataset ds;
  CsDesign  d;
  FILE     *f;
  double   *gsum, sum = 0, esum = 0;
  int64_t   nnz;
  PetscInt  rstart = 0, ngroups_expected = 0;
  char      line[1024];

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCall(CsTestSourcePath("input/perturbench_devel/devel.h5ad", data));
  PetscCall(CsTestSourcePath("tests/python/expected_stats.py", script));
  PetscCall(CsTestTempDir(comm, dir));
  PetscCall(CsPathJoin(dir, "expected.txt", exp));
  if (!rank) {
    PetscCall(PetscSNPrintf(cmd, sizeof(cmd), "%s %s %s condition cell_type control %s", getenv("CS_PYTHON") ? getenv("CS_PYTHON") : "/usr/bin/python3",
                            script, data, exp));
    PetscCheck(system(cmd) == 0, PETSC_COMM_SELF, PETSC_ERR_LIB, "%s failed", cmd);
  }
  PetscCallMPI(MPI_Barrier(comm));

  PetscCall(CsDatasetCreate(comm, &ds));
  PetscCall(CsDatasetSetFile(ds, data, NULL));
  PetscCall(CsDesignCreate(comm, &d));
  PetscCall(PetscStrncpy(d->context_key, "cell_type", sizeof(d->context_key)));
  PetscCall(CsDesignAddKeys(d, ds));
  PetscCall(CsDatasetSetUp(ds));
  PetscCall(CsDesignSetUp(d, ds));

  /* Row blocks are contiguous and ordered. */
  PetscCallMPI(MPI_Exscan(&ds->nlocal, &rstart, 1, MPIU_INT, MPI_SUM, comm));
  CS_EXPECT(rank == 0 || rstart == ds->rstart, "rstart %" PetscInt_FMT " != prefix sum %" PetscInt_FMT, ds->rstart, rstart);
  nnz = ds->X.indptr[ds->nlocal];
  PetscCall(PetscCalloc1(ds->ngenes, &gsum));
  for (int64_t k = 0; k < nnz; k++) gsum[ds->X.indices[k]] += ds->X.data[k], sum += ds->X.data[k];
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &nnz, 1, MPI_INT64_T, MPI_SUM, comm));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &sum, 1, MPI_DOUBLE, MPI_SUM, comm));
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, gsum, (PetscMPIInt)ds->ngenes, MPI_DOUBLE, MPI_SUM, comm));

  f = fopen(exp, "r");
  PetscCheck(f, PETSC_COMM_SELF, PETSC_ERR_FILE_OPEN, "cannot open %s", exp);
  while (fgets(line, sizeof(line), f)) {
    char   w[256], a[256], b[256];
    double v;
    int    j;
    if (sscanf(line, "cells %lf", &v) == 1) CS_EXPECT(ds->nglobal == (PetscInt)v, "cells %" PetscInt_FMT " vs %g", ds->nglobal, v);
    else if (sscanf(line, "genes %lf", &v) == 1) CS_EXPECT(ds->ngenes == (PetscInt)v, "genes");
    else if (sscanf(line, "nnz %lf", &v) == 1) CS_EXPECT(nnz == (int64_t)v, "nnz %lld vs %g", (long long)nnz, v);
    else if (sscanf(line, "sum %lf", &v) == 1) esum = v;
    else if (sscanf(line, "genesum %d %lf", &j, &v) == 2) CS_EXPECT_CLOSE(gsum[j], v, 1e-9, "gene sum");
    else if (sscanf(line, "firstgene %255s", w) == 1) CS_EXPECT(!strcmp(ds->genes[0], w), "first gene %s vs %s", ds->genes[0], w);
    else if (sscanf(line, "lastgene %255s", w) == 1) CS_EXPECT(!strcmp(ds->genes[ds->ngenes - 1], w), "last gene");
    else if (sscanf(line, "group %255s %255s %lf", a, b, &v) == 3) {
      PetscInt cond, ctx, g;
      ngroups_expected++;
      PetscCall(CsDesignFindCondition(d, a, NULL, &cond));
      ctx = CsDesignFindContext(d, b);
      g   = cond >= 0 && ctx >= 0 ? CsDesignFindGroup(d, cond, ctx) : -1;
      CS_EXPECT(g >= 0, "group %s@%s not found", a, b);
      if (g >= 0) CS_EXPECT(d->groups[g].ncells == (PetscInt)v, "group %s@%s has %" PetscInt_FMT " cells, expected %g", a, b, d->groups[g].ncells, v);
      if (g >= 0) CS_EXPECT(d->groups[g].control == !strcmp(a, "control"), "control flag of %s", a);
      if (g >= 0 && strcmp(a, "control")) CS_EXPECT(d->groups[g].ctrl >= 0 && d->groups[d->groups[g].ctrl].ctx == ctx, "control of %s", a);
    }
  }
  fclose(f);
  CS_EXPECT_CLOSE(sum, esum, 1e-9, "sum of all values");
  CS_EXPECT(d->ngroups == ngroups_expected, "%" PetscInt_FMT " groups, expected %" PetscInt_FMT, d->ngroups, ngroups_expected);
  /* "A+B" and "B+A" name the same condition; a control atom inside a combination is dropped. */
  {
    PetscInt c1, c2, c3;
    PetscCall(CsDesignFindCondition(d, "KLF1+MAP2K6", NULL, &c1));
    PetscCall(CsDesignFindCondition(d, " MAP2K6 + KLF1", NULL, &c2));
    PetscCall(CsDesignFindCondition(d, "MAPK1+control", NULL, &c3));
    CS_EXPECT(c1 >= 0 && c1 == c2, "A+B and B+A differ (%" PetscInt_FMT ", %" PetscInt_FMT ")", c1, c2);
    CS_EXPECT(c3 >= 0 && !strcmp(d->conds[c3].name, "MAPK1"), "MAPK1+control is not MAPK1");
  }
  /* Within-group offsets: every group's local counts sum to its size and offsets are prefix sums. */
  for (PetscInt g = 0; g < d->ngroups; g++) {
    PetscInt n = d->group_nlocal[g], off = 0;
    PetscCallMPI(MPI_Exscan(&n, &off, 1, MPIU_INT, MPI_SUM, comm));
    if (!rank) off = 0;
    CS_EXPECT(off == d->group_rstart[g], "group_rstart of group %" PetscInt_FMT, g);
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &n, 1, MPIU_INT, MPI_SUM, comm));
    CS_EXPECT(n == d->groups[g].ncells, "group_nlocal of group %" PetscInt_FMT, g);
  }
  /* Released labels: the design's columns keep their categories but no codes, and asking for them is an error. */
  {
    CsObsColumn   *pc = NULL;
    PetscErrorCode ierr;
    PetscCall(CsDatasetGetObs(ds, "condition", &pc));
    CS_EXPECT(pc && pc->codes && pc->ncat > 1, "condition column before the release");
    PetscCall(CsDesignReleaseObs(d, ds));
    CS_EXPECT(pc->codes == NULL && pc->values == NULL && pc->ncat > 1, "condition column after the release");
    PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
    ierr = CsDatasetGetObs(ds, "cell_type", &pc);
    PetscCall(PetscPopErrorHandler());
    CS_EXPECT(ierr == PETSC_ERR_ORDER, "CsDatasetGetObs of a released column returned %d", (int)ierr);
    PetscCall(CsDesignReleaseObs(d, ds)); /* twice: nothing more to free */
  }
  PetscCall(PetscFree(gsum));
  PetscCall(CsDesignDestroy(&d));
  PetscCall(CsDatasetDestroy(&ds));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv) { return CsTestMain(argc, argv, Body); }
