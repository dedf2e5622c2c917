/* The parameter buffer: layout, initialisation, checkpoints. See include/cellshift/nn.h. */
#include "nnimpl.h"
#include <cellshift/h5util.h>
#include <string.h>

/* Tensors start on 64-byte boundaries so that rows of vector kernels are aligned. */
#define CS_NN_ALIGN 16

/* The block as PetscMalloc returns it is kept in the word before the aligned address. */
PetscErrorCode CsNNMalloc(size_t bytes, void *p)
{
  char     *base;
  uintptr_t a;

  PetscFunctionBeginUser;
  *(void **)p = NULL;
  PetscCall(PetscMalloc(bytes + 64 + sizeof(void *), &base));
  a = ((uintptr_t)(base + sizeof(void *)) + 63) & ~(uintptr_t)63;
  ((void **)a)[-1] = base;
  memset((void *)a, 0, bytes);
  *(void **)p = (void *)a;
  PetscFunctionReturn(0);
}

PetscErrorCode CsNNFree(void *p)
{
  void *a = *(void **)p, *base;

  PetscFunctionBeginUser;
  if (a) {
    base = ((void **)a)[-1]; /* a local: PetscFree() sets its argument to NULL */
    PetscCall(PetscFree(base));
  }
  *(void **)p = NULL;
  PetscFunctionReturn(0);
}

PetscErrorCode CsNNParamsCreate(MPI_Comm comm, CsNNParams *P)
{
  PetscFunctionBeginUser;
  PetscCall(PetscNew(P));
  (*P)->comm = comm;
  PetscFunctionReturn(0);
}

static PetscErrorCode ParamsAdd(CsNNParams P, const char name[], PetscInt rows, PetscInt cols, CsNNInit init,
                                PetscInt fan_in, PetscBool buffer, PetscBool frozen, PetscInt *idx)
{
  CsNNTensor *t;
  size_t      len;

  PetscFunctionBeginUser;
  PetscCheck(!P->setup, P->comm, PETSC_ERR_ORDER, "tensor %s registered after the parameter buffer was set up", name);
  PetscCheck(rows > 0 && cols > 0, P->comm, PETSC_ERR_ARG_OUTOFRANGE, "tensor %s has an empty shape", name);
  PetscCall(PetscStrlen(name, &len));
  PetscCheck(len > 0 && len < CS_NN_NAME_LEN, P->comm, PETSC_ERR_ARG_WRONG, "tensor name %s is empty or too long", name);
  PetscCheck(CsNNParamsFind(P, name) < 0, P->comm, PETSC_ERR_ARG_WRONG, "tensor %s registered twice", name);
  PetscCheck(init != CS_NN_INIT_FANIN || fan_in > 0, P->comm, PETSC_ERR_ARG_WRONG, "tensor %s needs a positive fan-in", name);
  PetscCall(PetscRealloc(sizeof(CsNNTensor) * (size_t)(P->ntensors + 1), &P->t));
  t = &P->t[P->ntensors];
  PetscCall(PetscMemzero(t, sizeof(*t)));
  PetscCall(PetscStrncpy(t->name, name, sizeof(t->name)));
  t->rows = rows, t->cols = cols, t->init = init, t->fan_in = fan_in, t->buffer = buffer, t->frozen = frozen;
  if (buffer) {
    t->offset = P->nbuf;
    P->nbuf += ((size_t)rows * cols + CS_NN_ALIGN - 1) / CS_NN_ALIGN * CS_NN_ALIGN;
  } else {
    t->offset = P->n;
    P->n += ((size_t)rows * cols + CS_NN_ALIGN - 1) / CS_NN_ALIGN * CS_NN_ALIGN;
  }
  if (idx) *idx = P->ntensors;
  P->ntensors++;
  PetscFunctionReturn(0);
}

PetscErrorCode CsNNParamsAdd(CsNNParams P, const char name[], PetscInt rows, PetscInt cols, CsNNInit init, PetscInt fan_in, PetscInt *idx)
{
  PetscFunctionBeginUser;
  PetscCall(ParamsAdd(P, name, rows, cols, init, fan_in, PETSC_FALSE, PETSC_FALSE, idx));
  PetscFunctionReturn(0);
}

PetscErrorCode CsNNParamsAddBuffer(CsNNParams P, const char name[], PetscInt size, CsNNInit init, PetscInt *idx)
{
  PetscFunctionBeginUser;
  PetscCheck(init != CS_NN_INIT_FANIN, P->comm, PETSC_ERR_ARG_WRONG, "buffer %s cannot have a fan-in initialisation", name);
  PetscCall(ParamsAdd(P, name, size, 1, init, 0, PETSC_TRUE, PETSC_FALSE, idx));
  PetscFunctionReturn(0);
}

PetscErrorCode CsNNParamsAddFrozen(CsNNParams P, const char name[], PetscInt rows, PetscInt cols, CsNNInit init, PetscInt fan_in, PetscInt *idx)
{
  PetscFunctionBeginUser;
  PetscCall(ParamsAdd(P, name, rows, cols, init, fan_in, PETSC_TRUE, PETSC_TRUE, idx));
  PetscFunctionReturn(0);
}

PetscInt64 CsNNParamsCount(CsNNParams P)
{
  PetscInt64 n = 0;

  for (PetscInt i = 0; i < P->ntensors; i++)
    if (!P->t[i].buffer) n += (PetscInt64)P->t[i].rows * P->t[i].cols;
  return n;
}

PetscErrorCode CsNNParamsSetUp(CsNNParams P)
{
  PetscFunctionBeginUser;
  if (P->setup) PetscFunctionReturn(0);
  PetscCall(CsNNMalloc(sizeof(float) * (P->n ? P->n : CS_NN_ALIGN), &P->p));
  PetscCall(CsNNMalloc(sizeof(float) * (P->n ? P->n : CS_NN_ALIGN), &P->g));
  PetscCall(CsNNMalloc(sizeof(float) * (P->nbuf ? P->nbuf : CS_NN_ALIGN), &P->buf));
  P->setup = PETSC_TRUE;
  PetscFunctionReturn(0);
}

/* 64-bit FNV-1a of the tensor name: the initialisation key, so a tensor's values do not depend on the others. */
static uint64_t NameHash(const char *s)
{
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

PetscErrorCode CsNNParamsInitialize(CsNNParams P, uint64_t seed)
{
  PetscFunctionBeginUser;
  PetscCheck(P->setup, P->comm, PETSC_ERR_ORDER, "CsNNParamsSetUp() must come before CsNNParamsInitialize()");
  for (PetscInt k = 0; k < P->ntensors; k++) {
    const CsNNTensor *t = &P->t[k];
    float            *x = CsNNParamsData(P, k);
    size_t            n = (size_t)t->rows * t->cols;
    uint64_t          h = NameHash(t->name);
    double            bound = t->init == CS_NN_INIT_FANIN ? 1.0 / sqrt((double)t->fan_in) : 0;
    for (size_t i = 0; i < n; i++) {
      if (t->init == CS_NN_INIT_FANIN) x[i] = (float)(bound * (2.0 * CsRngUniform(seed, CS_STREAM_INIT, h, i) - 1.0));
      else x[i] = t->init == CS_NN_INIT_ONE ? 1.0f : 0.0f;
    }
  }
  PetscFunctionReturn(0);
}

PetscInt CsNNParamsFind(CsNNParams P, const char name[])
{
  for (PetscInt k = 0; k < P->ntensors; k++)
    if (!strcmp(P->t[k].name, name)) return k;
  return -1;
}

float *CsNNParamsData(CsNNParams P, PetscInt idx) { return (P->t[idx].buffer ? P->buf : P->p) + P->t[idx].offset; }

float *CsNNParamsGrad(CsNNParams P, PetscInt idx) { return P->t[idx].buffer ? NULL : P->g + P->t[idx].offset; }

PetscErrorCode CsNNParamsZeroGrad(CsNNParams P)
{
  PetscFunctionBeginUser;
  memset(P->g, 0, sizeof(float) * P->n);
  PetscFunctionReturn(0);
}

static PetscErrorCode WriteTensor(hid_t group, const CsNNTensor *t, const float *x)
{
  hsize_t dims[2] = {(hsize_t)t->rows, (hsize_t)t->cols};

  PetscFunctionBeginUser;
  PetscCall(CsH5WriteArray(group, t->name, H5T_NATIVE_FLOAT, t->cols > 1 ? 2 : 1, dims, x));
  PetscFunctionReturn(0);
}

static PetscErrorCode ReadTensor(hid_t group, const char what[], const CsNNTensor *t, float *x)
{
  hsize_t dims[2] = {(hsize_t)t->rows, (hsize_t)t->cols};

  PetscFunctionBeginUser;
  PetscCall(CsH5ReadArrayFinite(group, what, t->name, H5T_NATIVE_FLOAT, t->cols > 1 ? 2 : 1, dims, x));
  PetscFunctionReturn(0);
}

PetscErrorCode CsNNParamsSave(CsNNParams P, hid_t group)
{
  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < P->ntensors; k++) PetscCall(WriteTensor(group, &P->t[k], CsNNParamsData(P, k)));
  PetscFunctionReturn(0);
}

PetscErrorCode CsNNParamsLoad(CsNNParams P, hid_t group, const char what[])
{
  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < P->ntensors; k++) PetscCall(ReadTensor(group, what, &P->t[k], CsNNParamsData(P, k)));
  PetscFunctionReturn(0);
}

PetscErrorCode CsNNParamsSaveLike(CsNNParams P, hid_t group, const float *base)
{
  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < P->ntensors; k++)
    if (!P->t[k].buffer) PetscCall(WriteTensor(group, &P->t[k], base + P->t[k].offset));
  PetscFunctionReturn(0);
}

PetscErrorCode CsNNParamsLoadLike(CsNNParams P, hid_t group, const char what[], float *base)
{
  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < P->ntensors; k++)
    if (!P->t[k].buffer) PetscCall(ReadTensor(group, what, &P->t[k], base + P->t[k].offset));
  PetscFunctionReturn(0);
}

PetscErrorCode CsNNParamsView(CsNNParams P, PetscViewer v)
{
  PetscFunctionBeginUser;
  PetscCall(PetscViewerASCIIPrintf(v, "parameters: %zu floats trained, %zu in buffers, %" PetscInt_FMT " tensors\n", P->n,
                                   P->nbuf, P->ntensors));
  PetscCall(PetscViewerASCIIPushTab(v));
  for (PetscInt k = 0; k < P->ntensors; k++)
    PetscCall(PetscViewerASCIIPrintf(v, "%-40s %6" PetscInt_FMT " x %-6" PetscInt_FMT " %s\n", P->t[k].name, P->t[k].rows,
                                     P->t[k].cols, P->t[k].frozen ? "(frozen)" : P->t[k].buffer ? "(buffer)" : ""));
  PetscCall(PetscViewerASCIIPopTab(v));
  PetscFunctionReturn(0);
}

PetscErrorCode CsNNParamsDestroy(CsNNParams *P)
{
  PetscFunctionBeginUser;
  if (!*P) PetscFunctionReturn(0);
  PetscCall(CsNNFree(&(*P)->p));
  PetscCall(CsNNFree(&(*P)->g));
  PetscCall(CsNNFree(&(*P)->buf));
  PetscCall(PetscFree((*P)->t));
  PetscCall(PetscFree(*P));
  PetscFunctionReturn(0);
}
