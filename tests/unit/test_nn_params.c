/* The parameter buffer: layout (offsets, alignment, buffers apart), initialisation rules and their keying, and a
   save/load round trip through HDF5. */
#include "testing.h"
#include <cellshift/nn.h>
#include <cellshift/h5util.h>
#include <string.h>

static PetscErrorCode TestLayout(void)
{
  CsNNParams P;
  PetscInt   iw, ib, ig, irm;

  PetscFunctionBeginUser;
  PetscCall(CsNNParamsCreate(PETSC_COMM_SELF, &P));
  PetscCall(CsNNParamsAdd(P, "l.weight", 300, 70, CS_NN_INIT_FANIN, 300, &iw));
  PetscCall(CsNNParamsAdd(P, "l.bias", 70, 1, CS_NN_INIT_FANIN, 300, &ib));
  PetscCall(CsNNParamsAddBuffer(P, "bn.running_var", 70, CS_NN_INIT_ONE, &irm));
  PetscCall(CsNNParamsAdd(P, "bn.weight", 70, 1, CS_NN_INIT_ONE, 0, &ig));
  PetscCall(CsNNParamsSetUp(P));
  PetscCall(CsNNParamsInitialize(P, 42));
  /* Trained tensors back to back in registration order, 16-float aligned; the buffer lives apart. */
  CS_EXPECT(P->t[iw].offset == 0 && P->t[ib].offset == 21008 && P->t[ig].offset == 21088 && P->n == 21088 + 80, "layout offsets");
  CS_EXPECT(P->t[irm].buffer && P->t[irm].offset == 0 && P->nbuf == 80, "buffer layout");
  CS_EXPECT(((uintptr_t)P->p & 63) == 0 && ((uintptr_t)P->g & 63) == 0, "64-byte alignment");
  CS_EXPECT(CsNNParamsFind(P, "bn.weight") == ig && CsNNParamsFind(P, "nope") == -1, "find by name");
  CS_EXPECT(CsNNParamsGrad(P, irm) == NULL && CsNNParamsGrad(P, ib) == P->g + 21008, "gradient views");
  /* Initial values: U(-1/sqrt(300), 1/sqrt(300)) with the moments of a uniform; ones; padding zero. */
  {
    const float *w = CsNNParamsData(P, iw);
    double       b = 1 / sqrt(300.0), s = 0, s2 = 0, n = 21000;
    for (int i = 0; i < 21000; i++) {
      CS_EXPECT(fabsf(w[i]) <= b, "weight %d outside the bound", i);
      s += w[i], s2 += (double)w[i] * w[i];
    }
    CS_EXPECT(fabs(s / n) < 5 * b / sqrt(3 * n), "weight mean %g", s / n);
    CS_EXPECT(fabs(s2 / n - b * b / 3) < 0.02 * b * b, "weight variance %g, expected %g", s2 / n, b * b / 3);
    for (int i = 0; i < 70; i++) CS_EXPECT(CsNNParamsData(P, ig)[i] == 1 && CsNNParamsData(P, irm)[i] == 1, "ones");
    for (size_t i = 21000; i < 21008; i++) CS_EXPECT(P->p[i] == 0, "padding");
  }
  /* Values are keyed by (seed, name, element): registration order and other tensors do not matter. */
  {
    CsNNParams Q;
    PetscCall(CsNNParamsCreate(PETSC_COMM_SELF, &Q));
    PetscCall(CsNNParamsAdd(Q, "other", 5, 5, CS_NN_INIT_FANIN, 5, NULL));
    PetscCall(CsNNParamsAdd(Q, "l.bias", 70, 1, CS_NN_INIT_FANIN, 300, NULL));
    PetscCall(CsNNParamsAdd(Q, "l.weight", 300, 70, CS_NN_INIT_FANIN, 300, NULL));
    PetscCall(CsNNParamsSetUp(Q));
    PetscCall(CsNNParamsInitialize(Q, 42));
    CS_EXPECT(!memcmp(CsNNParamsData(Q, 2), CsNNParamsData(P, iw), sizeof(float) * 21000), "initialisation depends on the order");
    PetscCall(CsNNParamsInitialize(Q, 43));
    CS_EXPECT(memcmp(CsNNParamsData(Q, 2), CsNNParamsData(P, iw), sizeof(float) * 21000), "initialisation ignores the seed");
    PetscCall(CsNNParamsDestroy(&Q));
  }
  PetscCall(CsNNParamsDestroy(&P));
  PetscFunctionReturn(0);
}

static PetscErrorCode TestSaveLoad(void)
{
  CsNNParams P, Q;
  char       dir[PETSC_MAX_PATH_LEN], path[PETSC_MAX_PATH_LEN];
  hid_t      f;
  hsize_t    dims[2] = {0, 0};

  PetscFunctionBeginUser;
  PetscCall(CsNNParamsCreate(PETSC_COMM_SELF, &P));
  PetscCall(CsNNParamsCreate(PETSC_COMM_SELF, &Q));
  for (int k = 0; k < 2; k++) {
    CsNNParams R = k ? Q : P;
    PetscCall(CsNNParamsAdd(R, "enc.0.weight", 6, 4, CS_NN_INIT_FANIN, 6, NULL));
    PetscCall(CsNNParamsAdd(R, "enc.0.bias", 4, 1, CS_NN_INIT_FANIN, 6, NULL));
    PetscCall(CsNNParamsAddBuffer(R, "enc.0.norm.running_mean", 4, CS_NN_INIT_ZERO, NULL));
    PetscCall(CsNNParamsSetUp(R));
    PetscCall(CsNNParamsInitialize(R, (uint64_t)(k + 1)));
  }
  for (int i = 0; i < 4; i++) P->buf[i] = 0.5f * (float)i;
  PetscCall(CsTestTempDir(PETSC_COMM_SELF, dir));
  PetscCall(CsPathJoin(dir, "p.h5", path));
  H5Call(f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "cannot create %s", path);
  PetscCall(CsNNParamsSave(P, f));
  H5Call(H5Fclose(f), "close");
  H5Call(f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), "cannot open %s", path);
  /* Datasets are named after the tensors and shaped like them. */
  PetscCall(CsH5ReadArray(f, path, "enc.0.weight", H5T_NATIVE_FLOAT, 2, dims, NULL));
  CS_EXPECT(dims[0] == 6 && dims[1] == 4, "saved shape %llu x %llu", (unsigned long long)dims[0], (unsigned long long)dims[1]);
  PetscCall(CsNNParamsLoad(Q, f, path));
  H5Call(H5Fclose(f), "close");
  CS_EXPECT(!memcmp(P->p, Q->p, sizeof(float) * P->n) && !memcmp(P->buf, Q->buf, sizeof(float) * P->nbuf), "save/load round trip");
  PetscCall(CsNNParamsDestroy(&P));
  PetscCall(CsNNParamsDestroy(&Q));
  PetscFunctionReturn(0);
}

static PetscErrorCode Body(void)
{
  PetscFunctionBeginUser;
  PetscCall(TestLayout());
  PetscCall(TestSaveLoad());
  PetscFunctionReturn(0);
}

int main(int argc, char **argv) { return CsTestMain(argc, argv, Body); }
