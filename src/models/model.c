/* CsModel: the plug-in base. See include/cellshift/model.h. */
#include "modelimpl.h"
#include <cellshift/h5util.h>

PetscFunctionList CsModelList      = NULL;
PetscClassId      CS_MODEL_CLASSID = 0;
static PetscBool  cs_model_package = PETSC_FALSE;
static char       cs_model_names[1024]; /* "control, additive, ..." for messages */

PetscErrorCode CsModelRegister(const char type[], PetscErrorCode (*create)(CsModel))
{
  PetscFunctionBeginUser;
  PetscCall(PetscFunctionListAdd(&CsModelList, type, create));
  if (cs_model_names[0]) CsStrCat(cs_model_names, sizeof(cs_model_names), ", ");
  CsStrCat(cs_model_names, sizeof(cs_model_names), type);
  PetscFunctionReturn(0);
}

static PetscErrorCode CsModelFinalizePackage(void)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFunctionListDestroy(&CsModelList));
  cs_model_names[0] = 0;
  cs_model_package  = PETSC_FALSE;
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelInitializePackage(void)
{
  PetscFunctionBeginUser;
  if (cs_model_package) PetscFunctionReturn(0);
  cs_model_package = PETSC_TRUE;
  PetscCall(PetscClassIdRegister("CsModel", &CS_MODEL_CLASSID));
  PetscCall(CsModelRegisterAll());
  PetscCall(PetscRegisterFinalize(CsModelFinalizePackage));
  PetscFunctionReturn(0);
}

const char *CsModelTypeNames(void)
{
  if (CsModelInitializePackage()) return "";
  return cs_model_names;
}

PetscErrorCode CsModelCreate(MPI_Comm comm, CsModel *out)
{
  CsModel m;

  PetscFunctionBeginUser;
  PetscValidPointer(out, 2);
  PetscCall(CsModelInitializePackage());
  PetscCall(PetscHeaderCreate(m, CS_MODEL_CLASSID, "CsModel", "Perturbation-response model", "CsModel", comm, CsModelDestroy, CsModelView));
  m->nparams = -1;
  *out       = m;
  PetscFunctionReturn(0);
}

/* Names are options prefixes and folder names. */
static PetscBool NameIsValid(const char name[])
{
  if (!name[0]) return PETSC_FALSE;
  for (const char *c = name; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_')) return PETSC_FALSE;
  return PETSC_TRUE;
}

static PetscErrorCode SetNameAndPrefix(CsModel m, const char name[])
{
  char prefix[128];

  PetscFunctionBeginUser;
  PetscCheck(NameIsValid(name), PetscObjectComm((PetscObject)m), CS_ERR_INPUT,
             "model name '%s' may hold only letters, digits and '_' (it becomes an options prefix and a folder)", name);
  PetscCall(PetscObjectSetName((PetscObject)m, name));
  PetscCall(PetscSNPrintf(prefix, sizeof(prefix), "%s_", name));
  PetscCall(PetscObjectSetOptionsPrefix((PetscObject)m, prefix));
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelSetType(CsModel m, CsModelType type)
{
  PetscErrorCode (*create)(CsModel) = NULL;
  PetscBool same;

  PetscFunctionBeginUser;
  PetscValidHeaderSpecific(m, CS_MODEL_CLASSID, 1);
  PetscCall(PetscObjectTypeCompare((PetscObject)m, type, &same));
  if (same) PetscFunctionReturn(0);
  PetscCall(PetscFunctionListFind(CsModelList, type, &create));
  PetscCheck(create, PetscObjectComm((PetscObject)m), CS_ERR_INPUT, "unknown model '%s' (models: %s)", type, cs_model_names);
  if (m->ops->destroy) PetscCall(m->ops->destroy(m));
  PetscCall(PetscMemzero(m->ops, sizeof(struct _CsModelOps)));
  m->data  = NULL;
  m->setup = m->fitted = m->trains = PETSC_FALSE;
  PetscCall(PetscObjectChangeTypeName((PetscObject)m, type));
  if (!m->named) PetscCall(SetNameAndPrefix(m, type));
  PetscCall(create(m));
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelGetType(CsModel m, CsModelType *type)
{
  PetscFunctionBeginUser;
  PetscValidHeaderSpecific(m, CS_MODEL_CLASSID, 1);
  *type = ((PetscObject)m)->type_name;
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelSetName(CsModel m, const char name[])
{
  PetscFunctionBeginUser;
  PetscValidHeaderSpecific(m, CS_MODEL_CLASSID, 1);
  PetscCall(SetNameAndPrefix(m, name));
  m->named = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelGetName(CsModel m, const char **name)
{
  PetscFunctionBeginUser;
  PetscValidHeaderSpecific(m, CS_MODEL_CLASSID, 1);
  *name = CsModelName(m);
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelSetFromOptions(CsModel m)
{
  MPI_Comm  comm = PetscObjectComm((PetscObject)m);
  PetscBool view;

  PetscFunctionBeginUser;
  PetscValidHeaderSpecific(m, CS_MODEL_CLASSID, 1);
  PetscCheck(((PetscObject)m)->type_name, comm, PETSC_ERR_ORDER, "call CsModelSetType first");
  PetscOptionsBegin(comm, NULL, "Model options", "CsModel");
  PetscCall(PetscOptionsInt("-model_seed", "Seed of initialisation, shuffling and noise", "CsModelSetFromOptions", m->seed, &m->seed, NULL));
  PetscCall(PetscOptionsInt("-predict_max_cells", "Control cells transformed per predicted group (0 = all)", "CsModelWritePredictions",
                            m->predict_max_cells, &m->predict_max_cells, NULL));
  PetscOptionsEnd();
  PetscCheck(m->predict_max_cells >= 0, comm, CS_ERR_INPUT, "-predict_max_cells must be 0 (all cells) or positive (got %" PetscInt_FMT ")",
             m->predict_max_cells);
  PetscObjectOptionsBegin((PetscObject)m);
  PetscCall(PetscOptionsName("-model_view", "Print the model after fitting ([ascii][:file])", "CsModelView", &view));
  if (m->ops->setfromoptions) PetscCall(m->ops->setfromoptions(m, PetscOptionsObject));
  PetscCall(PetscObjectProcessOptionsHandlers((PetscObject)m, PetscOptionsObject));
  PetscOptionsEnd();
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelSetProblem(CsModel m, CsDataset ds, CsDesign d, CsSplit s)
{
  PetscFunctionBeginUser;
  PetscValidHeaderSpecific(m, CS_MODEL_CLASSID, 1);
  m->ds = ds, m->design = d, m->split = s;
  m->setup = m->fitted = PETSC_FALSE;
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelSetOutputDir(CsModel m, const char dir[])
{
  PetscFunctionBeginUser;
  PetscValidHeaderSpecific(m, CS_MODEL_CLASSID, 1);
  PetscCall(PetscStrncpy(m->dir, dir ? dir : "", sizeof(m->dir)));
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelSetUp(CsModel m)
{
  MPI_Comm comm = PetscObjectComm((PetscObject)m);

  PetscFunctionBeginUser;
  PetscValidHeaderSpecific(m, CS_MODEL_CLASSID, 1);
  if (m->setup) PetscFunctionReturn(0);
  PetscCheck(((PetscObject)m)->type_name, comm, PETSC_ERR_ORDER, "call CsModelSetType first");
  PetscCheck(m->ds && m->design && m->split, comm, PETSC_ERR_ORDER, "call CsModelSetProblem first");
  if (!m->streams) {
    char what[160];
    PetscCall(PetscSNPrintf(what, sizeof(what), "model '%s' (%s)", CsModelName(m), ((PetscObject)m)->type_name));
    PetscCall(CsDatasetCheckResident(m->ds, what));
  }
  if (m->ops->setup) PetscCall(m->ops->setup(m));
  m->setup = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelFit(CsModel m)
{
  PetscFunctionBeginUser;
  PetscCall(CsModelSetUp(m));
  PetscCall(PetscLogEventBegin(CS_EVENT_FIT, 0, 0, 0, 0));
  m->interrupted = PETSC_FALSE;
  if (m->ops->fit) PetscCall(m->ops->fit(m));
  PetscCall(PetscLogEventEnd(CS_EVENT_FIT, 0, 0, 0, 0));
  m->fitted = !m->interrupted;
  if (m->fitted) PetscCall(PetscObjectViewFromOptions((PetscObject)m, NULL, "-model_view"));
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelGetInterrupted(CsModel m, PetscBool *interrupted)
{
  PetscFunctionBeginUser;
  PetscValidHeaderSpecific(m, CS_MODEL_CLASSID, 1);
  *interrupted = m->interrupted;
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelGetParameterCount(CsModel m, PetscInt64 *n)
{
  PetscFunctionBeginUser;
  PetscValidHeaderSpecific(m, CS_MODEL_CLASSID, 1);
  *n = m->nparams;
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelTrains(CsModel m, PetscBool *trains)
{
  PetscFunctionBeginUser;
  PetscValidHeaderSpecific(m, CS_MODEL_CLASSID, 1);
  *trains = m->trains;
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelHasPredictSet(CsModel m, PetscBool *set)
{
  PetscFunctionBeginUser;
  PetscValidHeaderSpecific(m, CS_MODEL_CLASSID, 1);
  *set = m->ops->predictset ? PETSC_TRUE : PETSC_FALSE;
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelPredict(CsModel m, const CsCondition *cond, PetscInt ctx, const CsCSR *ctrl, float *out)
{
  MPI_Comm comm = PetscObjectComm((PetscObject)m);

  PetscFunctionBeginUser;
  PetscValidHeaderSpecific(m, CS_MODEL_CLASSID, 1);
  PetscCheck(m->fitted, comm, PETSC_ERR_ORDER, "model '%s' is not fitted (fit or load it first)", CsModelName(m));
  PetscCheck(m->ops->predict, comm, PETSC_ERR_SUP, "model '%s' predicts whole groups only (use CsModelWritePredictions)", CsModelName(m));
  PetscCall(PetscLogEventBegin(CS_EVENT_PREDICT, 0, 0, 0, 0));
  PetscCall(m->ops->predict(m, cond, ctx, ctrl, out));
  PetscCall(PetscLogEventEnd(CS_EVENT_PREDICT, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

/* Rank 0: the file's header (who wrote it, for which design) and the group of the implementation's state. */
static PetscErrorCode SaveHeader(CsModel m, hid_t file, hid_t *g)
{
  PetscFunctionBeginUser;
  PetscCall(CsH5WriteAttrFixedString(file, "cellshift_model", ((PetscObject)m)->type_name));
  PetscCall(CsH5WriteAttrFixedString(file, "cellshift_name", CsModelName(m)));
  PetscCall(CsH5WriteAttrFixedString(file, "cellshift_version", CS_VERSION));
  PetscCall(CsH5WriteStrings(file, "atoms", m->design->natoms, m->design->atoms));
  PetscCall(CsH5WriteStrings(file, "contexts", m->design->nctx, m->design->contexts));
  PetscCall(CsH5WriteStrings(file, "genes", m->ds->ngenes, m->ds->genes));
  H5Call(*g = H5Gcreate2(file, "params", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "cannot create group params");
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelSave(CsModel m, const char path[])
{
  MPI_Comm       comm = PetscObjectComm((PetscObject)m);
  PetscMPIInt    rank;
  CsOutFile      f;
  PetscErrorCode ierr = 0;
  hid_t          file = -1, g = -1;

  PetscFunctionBeginUser;
  PetscValidHeaderSpecific(m, CS_MODEL_CLASSID, 1);
  PetscCheck(m->fitted, comm, PETSC_ERR_ORDER, "model '%s' is not fitted", CsModelName(m));
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCall(CsOutFileBegin(comm, path, &f));
  PetscCall(PetscLogEventBegin(CS_EVENT_WRITE, 0, 0, 0, 0));
  /* Rank-local work on rank 0, agreed on before the collective part so that no rank is left waiting. */
  if (!rank) {
    if ((file = CsH5CreateChecksummed(f.tmp)) < 0) ierr = PETSC_ERR_FILE_OPEN;
    if (!ierr) ierr = SaveHeader(m, file, &g);
  }
  PetscCall(CsAgreeCode(comm, ierr, "cannot write the model file"));
  if (m->ops->save) ierr = m->ops->save(m, rank ? -1 : g); /* collective: spread state is gathered to rank 0 */
  if (g >= 0 && H5Gclose(g) < 0 && !ierr) ierr = PETSC_ERR_FILE_WRITE;
  if (file >= 0 && H5Fclose(file) < 0 && !ierr) ierr = PETSC_ERR_FILE_WRITE;
  PetscCall(PetscLogEventEnd(CS_EVENT_WRITE, 0, 0, 0, 0));
  if (ierr) PetscCall(CsOutFileAbandon(comm, &f));
  PetscCall(CsAgreeCode(comm, ierr, "cannot write the model file"));
  PetscCall(CsOutFileCommit(comm, &f));
  PetscFunctionReturn(0);
}

/* The model was fitted on a design; predicting with another one would silently mix up atoms or genes. */
static PetscErrorCode CheckNames(hid_t file, const char path[], const char name[], PetscInt n, char *const *expect)
{
  hid_t     d;
  hsize_t   dims[1] = {0};
  char    **got;
  PetscBool same = PETSC_TRUE;

  PetscFunctionBeginUser;
  PetscCall(CsH5ReadArray(file, path, name, H5T_NATIVE_INT, 1, dims, NULL));
  PetscCheck((PetscInt)dims[0] == n, PETSC_COMM_SELF, CS_ERR_INPUT,
             "%s was fitted with %llu %s, the data has %" PetscInt_FMT, path, (unsigned long long)dims[0], name, n);
  H5Call(d = H5Dopen2(file, name, H5P_DEFAULT), "%s: cannot open %s", path, name);
  PetscCall(CsH5ReadStrings(d, path, 0, dims[0], &got));
  H5Call(H5Dclose(d), "%s: cannot close %s", path, name);
  for (PetscInt i = 0; i < n && same; i++) same = strcmp(got[i], expect[i]) ? PETSC_FALSE : PETSC_TRUE;
  PetscCall(CsStrArrayDestroy(n, &got));
  PetscCheck(same, PETSC_COMM_SELF, CS_ERR_INPUT, "%s was fitted with other %s than the data has", path, name);
  PetscFunctionReturn(0);
}

static PetscErrorCode LoadLocal(CsModel m, const char path[])
{
  hid_t     file, g;
  char      type[64];
  PetscBool found;

  PetscFunctionBeginUser;
  H5Call(file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), "cannot open model file %s", path);
  PetscCall(CsH5ReadAttrString(file, "cellshift_model", type, sizeof(type), &found));
  PetscCheck(found, PETSC_COMM_SELF, CS_ERR_INPUT, "%s is not a cellshift model file", path);
  PetscCheck(!strcmp(type, ((PetscObject)m)->type_name), PETSC_COMM_SELF, CS_ERR_INPUT, "%s holds a '%s' model, not '%s'", path, type,
             ((PetscObject)m)->type_name);
  PetscCall(CheckNames(file, path, "atoms", m->design->natoms, m->design->atoms));
  PetscCall(CheckNames(file, path, "contexts", m->design->nctx, m->design->contexts));
  PetscCall(CheckNames(file, path, "genes", m->ds->ngenes, m->ds->genes));
  H5Call(g = H5Gopen2(file, "params", H5P_DEFAULT), "%s: no params group", path);
  if (m->ops->load) PetscCall(m->ops->load(m, g));
  H5Call(H5Gclose(g), "%s: cannot close params", path);
  H5Call(H5Fclose(file), "cannot close %s", path);
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelLoad(CsModel m, const char path[])
{
  MPI_Comm       comm = PetscObjectComm((PetscObject)m);
  PetscErrorCode ierr;
  PetscBool      exists;

  PetscFunctionBeginUser;
  PetscValidHeaderSpecific(m, CS_MODEL_CLASSID, 1);
  PetscCall(CsModelSetUp(m));
  PetscCall(CsFileExists(comm, path, &exists));
  PetscCheck(exists, comm, CS_ERR_INPUT, "model file %s does not exist (train first)", path);
  PetscCall(PetscLogEventBegin(CS_EVENT_READ, 0, 0, 0, 0));
  ierr = LoadLocal(m, path);
  PetscCall(PetscLogEventEnd(CS_EVENT_READ, 0, 0, 0, 0));
  PetscCall(CsAgreeCode(comm, ierr, "cannot load the model"));
  m->fitted = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelView(CsModel m, PetscViewer v)
{
  PetscBool ascii;

  PetscFunctionBeginUser;
  PetscValidHeaderSpecific(m, CS_MODEL_CLASSID, 1);
  if (!v) PetscCall(PetscViewerASCIIGetStdout(PetscObjectComm((PetscObject)m), &v));
  PetscCall(PetscObjectTypeCompare((PetscObject)v, PETSCVIEWERASCII, &ascii));
  if (!ascii) PetscFunctionReturn(0);
  PetscCall(PetscObjectPrintClassNamePrefixType((PetscObject)m, v));
  PetscCall(PetscViewerASCIIPushTab(v));
  PetscCall(PetscViewerASCIIPrintf(v, "%s, seed %" PetscInt_FMT "\n", m->fitted ? "fitted" : "not fitted", m->seed));
  if (m->ops->view) PetscCall(m->ops->view(m, v));
  PetscCall(PetscViewerASCIIPopTab(v));
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelDestroy(CsModel *m)
{
  PetscFunctionBeginUser;
  if (!*m) PetscFunctionReturn(0);
  PetscValidHeaderSpecific(*m, CS_MODEL_CLASSID, 1);
  if (--((PetscObject)(*m))->refct > 0) {
    *m = NULL;
    PetscFunctionReturn(0);
  }
  if ((*m)->ops->destroy) PetscCall((*m)->ops->destroy(*m));
  PetscCall(PetscHeaderDestroy(m));
  PetscFunctionReturn(0);
}
