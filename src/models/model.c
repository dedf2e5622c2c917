/* CsModel: the plug-in base. See include/cellshift/model.h. */
#include <cellshift/model.h>
#include <cellshift/h5util.h>

PetscFunctionList CsModelList = NULL;
static char       cs_model_names[1024]; /* "control, additive, ..." for messages */

PetscErrorCode CsModelRegister(const char name[], PetscErrorCode (*create)(CsModel))
{
  PetscFunctionBeginUser;
  PetscCall(PetscFunctionListAdd(&CsModelList, name, create));
  if (cs_model_names[0]) PetscCall(PetscStrlcat(cs_model_names, ", ", sizeof(cs_model_names)));
  PetscCall(PetscStrlcat(cs_model_names, name, sizeof(cs_model_names)));
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelRegisterDestroy(void)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFunctionListDestroy(&CsModelList));
  cs_model_names[0] = 0;
  PetscFunctionReturn(0);
}

const char *CsModelTypeNames(void) { return cs_model_names; }

PetscErrorCode CsModelCreate(MPI_Comm comm, CsModel *out)
{
  CsModel m;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&m));
  m->comm = comm;
  m->seed = 0;
  *out    = m;
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelSetType(CsModel m, const char type[])
{
  PetscErrorCode (*create)(CsModel) = NULL;

  PetscFunctionBeginUser;
  PetscCall(PetscFunctionListFind(CsModelList, type, &create));
  PetscCheck(create, m->comm, CS_ERR_INPUT, "unknown model '%s' (models: %s)", type, cs_model_names);
  if (m->ops->destroy) PetscCall(m->ops->destroy(m));
  PetscCall(PetscMemzero(m->ops, sizeof(m->ops)));
  m->data  = NULL;
  m->setup = m->fitted = PETSC_FALSE;
  PetscCall(PetscStrncpy(m->type, type, sizeof(m->type)));
  PetscCall(PetscSNPrintf(m->prefix, sizeof(m->prefix), "%s_", type));
  PetscCall(create(m));
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelSetFromOptions(CsModel m)
{
  PetscFunctionBeginUser;
  PetscOptionsBegin(m->comm, NULL, "Model options", "CsModel");
  PetscCall(PetscOptionsInt("-model_seed", "Seed of initialisation, shuffling and noise", "CsModelSetFromOptions",
                            m->seed, &m->seed, NULL));
  PetscCall(PetscOptionsInt("-predict_max_cells", "Control cells transformed per predicted group (0 = all)", "CsModelWritePredictions",
                            m->predict_max_cells, &m->predict_max_cells, NULL));
  PetscOptionsEnd();
  if (m->ops->setfromoptions) {
    PetscOptionsBegin(m->comm, m->prefix, "Options of the model", "CsModel");
    PetscCall(m->ops->setfromoptions(m, PetscOptionsObject));
    PetscOptionsEnd();
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelSetProblem(CsModel m, CsDataset ds, CsDesign d, CsSplit s)
{
  PetscFunctionBeginUser;
  m->ds = ds, m->design = d, m->split = s;
  m->setup = m->fitted = PETSC_FALSE;
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelSetUp(CsModel m)
{
  PetscFunctionBeginUser;
  if (m->setup) PetscFunctionReturn(0);
  PetscCheck(m->type[0], m->comm, PETSC_ERR_ORDER, "call CsModelSetType first");
  PetscCheck(m->ds && m->design && m->split, m->comm, PETSC_ERR_ORDER, "call CsModelSetProblem first");
  if (m->ops->setup) PetscCall(m->ops->setup(m));
  m->setup = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelFit(CsModel m)
{
  PetscFunctionBeginUser;
  PetscCall(CsModelSetUp(m));
  PetscCall(PetscLogEventBegin(CS_EVENT_FIT, 0, 0, 0, 0));
  if (m->ops->fit) PetscCall(m->ops->fit(m));
  PetscCall(PetscLogEventEnd(CS_EVENT_FIT, 0, 0, 0, 0));
  m->fitted = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelPredict(CsModel m, const CsCondition *cond, PetscInt ctx, const CsCSR *ctrl, float *out)
{
  PetscFunctionBeginUser;
  PetscCheck(m->fitted, m->comm, PETSC_ERR_ORDER, "model '%s' is not fitted (fit or load it first)", m->type);
  PetscCall(PetscLogEventBegin(CS_EVENT_PREDICT, 0, 0, 0, 0));
  PetscCall(m->ops->predict(m, cond, ctx, ctrl, out));
  PetscCall(PetscLogEventEnd(CS_EVENT_PREDICT, 0, 0, 0, 0));
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelSave(CsModel m, const char path[])
{
  PetscMPIInt    rank;
  CsOutFile      f;
  PetscErrorCode ierr = 0;

  PetscFunctionBeginUser;
  PetscCheck(m->fitted, m->comm, PETSC_ERR_ORDER, "model '%s' is not fitted", m->type);
  PetscCallMPI(MPI_Comm_rank(m->comm, &rank));
  PetscCall(CsOutFileBegin(m->comm, path, &f));
  PetscCall(PetscLogEventBegin(CS_EVENT_WRITE, 0, 0, 0, 0));
  if (!rank) {
    /* Rank-local work: the outcome is agreed on below so that a failure cannot leave the other ranks waiting. */
    hid_t file = H5Fcreate(f.tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), g = -1;
    if (file < 0) ierr = PETSC_ERR_FILE_OPEN;
    if (!ierr) ierr = CsH5WriteAttrString(file, "cellshift_model", m->type);
    if (!ierr) ierr = CsH5WriteAttrString(file, "cellshift_version", CS_VERSION);
    if (!ierr) ierr = CsH5WriteStrings(file, "atoms", m->design->natoms, m->design->atoms);
    if (!ierr) ierr = CsH5WriteStrings(file, "contexts", m->design->nctx, m->design->contexts);
    if (!ierr) ierr = CsH5WriteStrings(file, "genes", m->ds->ngenes, m->ds->genes);
    if (!ierr && (g = H5Gcreate2(file, "params", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0) ierr = PETSC_ERR_LIB;
    if (!ierr && m->ops->save) ierr = m->ops->save(m, g);
    if (g >= 0) H5Gclose(g);
    if (file >= 0 && H5Fclose(file) < 0 && !ierr) ierr = PETSC_ERR_FILE_WRITE;
  }
  PetscCall(PetscLogEventEnd(CS_EVENT_WRITE, 0, 0, 0, 0));
  if (ierr) PetscCall(CsOutFileAbandon(m->comm, &f));
  PetscCall(CsAgreeCode(m->comm, ierr, "cannot write the model file"));
  PetscCall(CsOutFileCommit(m->comm, &f));
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
  H5Dclose(d);
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
  PetscCheck(!strcmp(type, m->type), PETSC_COMM_SELF, CS_ERR_INPUT, "%s holds a '%s' model, not '%s'", path, type,
             m->type);
  PetscCall(CheckNames(file, path, "atoms", m->design->natoms, m->design->atoms));
  PetscCall(CheckNames(file, path, "contexts", m->design->nctx, m->design->contexts));
  PetscCall(CheckNames(file, path, "genes", m->ds->ngenes, m->ds->genes));
  H5Call(g = H5Gopen2(file, "params", H5P_DEFAULT), "%s: no params group", path);
  if (m->ops->load) PetscCall(m->ops->load(m, g));
  H5Gclose(g);
  H5Fclose(file);
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelLoad(CsModel m, const char path[])
{
  PetscErrorCode ierr;
  PetscBool      exists;

  PetscFunctionBeginUser;
  PetscCall(CsModelSetUp(m));
  PetscCall(CsFileExists(m->comm, path, &exists));
  PetscCheck(exists, m->comm, CS_ERR_INPUT, "model file %s does not exist (train first)", path);
  PetscCall(PetscLogEventBegin(CS_EVENT_READ, 0, 0, 0, 0));
  ierr = LoadLocal(m, path);
  PetscCall(PetscLogEventEnd(CS_EVENT_READ, 0, 0, 0, 0));
  PetscCall(CsAgreeCode(m->comm, ierr, "cannot load the model"));
  m->fitted = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelView(CsModel m, PetscViewer v)
{
  PetscFunctionBeginUser;
  PetscCall(PetscViewerASCIIPrintf(v, "CsModel %s%s\n", m->type, m->fitted ? " (fitted)" : ""));
  if (m->ops->view) {
    PetscCall(PetscViewerASCIIPushTab(v));
    PetscCall(m->ops->view(m, v));
    PetscCall(PetscViewerASCIIPopTab(v));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsModelDestroy(CsModel *m)
{
  PetscFunctionBeginUser;
  if (!*m) PetscFunctionReturn(0);
  if ((*m)->ops->destroy) PetscCall((*m)->ops->destroy(*m));
  PetscCall(PetscFree(*m));
  PetscFunctionReturn(0);
}
