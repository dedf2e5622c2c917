/* The set-up shared by the commands: data, design, split, output folder, model list. */
#include "commands.h"

static PetscErrorCode OptionsBody(void *ctx, const char tmp[])
{
  PetscViewer v;

  PetscFunctionBeginUser;
  PetscCall(PetscViewerASCIIOpen(PETSC_COMM_SELF, tmp, &v));
  PetscCall(PetscViewerASCIIPrintf(v, "# cellshift %s: the options of this run (reuse with -options_file)\n", CS_VERSION));
  PetscCall(PetscOptionsView(NULL, v));
  PetscCall(PetscViewerDestroy(&v));
  PetscFunctionReturn(0);
}

static PetscErrorCode WriteOptions(MPI_Comm comm, const char dir[])
{
  char path[PETSC_MAX_PATH_LEN];

  PetscFunctionBeginUser;
  PetscCall(CsPathJoin(dir, "options.txt", path));
  PetscCall(CsWriteFileRank0(comm, path, OptionsBody, NULL));
  PetscFunctionReturn(0);
}

PetscErrorCode CsProblemSetFromOptions(CsProblem *p)
{
  PetscInt  nm = 16, nb = 16;
  PetscBool mset = PETSC_FALSE, bset = PETSC_FALSE;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(p, sizeof(*p)));
  PetscCall(PetscStrncpy(p->outdir, "cellshift_out", sizeof(p->outdir)));
  PetscOptionsBegin(PETSC_COMM_WORLD, NULL, "Run", "CsProblemSetFromOptions");
  PetscCall(PetscOptionsString("-output_dir", "Folder of the run's files", "CsProblemSetUp", p->outdir, p->outdir, sizeof(p->outdir), NULL));
  PetscCall(PetscOptionsStringArray("-model", "Models to fit, comma-separated (default linear; see the list of models)", "CsProblemSetUp",
                                    p->models, &nm, &mset));
  PetscCall(PetscOptionsStringArray("-baselines", "Baselines scored next to every model (default control,additive,mean)", "CsProblemSetUp",
                                    p->baselines, &nb, &bset));
  PetscOptionsEnd();
  p->nmodels = mset ? nm : 0, p->nbaselines = bset ? nb : 0;
  if (!mset) PetscCall(PetscStrallocpy("linear", &p->models[p->nmodels++]));
  if (!bset) {
    PetscCall(PetscStrallocpy("control", &p->baselines[p->nbaselines++]));
    PetscCall(PetscStrallocpy("additive", &p->baselines[p->nbaselines++]));
    PetscCall(PetscStrallocpy("mean", &p->baselines[p->nbaselines++]));
  }
  for (PetscInt i = 0; i < p->nbaselines + p->nmodels; i++) {
    char     *spec = i < p->nbaselines ? p->baselines[i] : p->models[i - p->nbaselines];
    char      name[64], type[64], oname[64], otype[64];
    PetscBool dup = PETSC_FALSE;
    PetscCall(CsProblemSpec(spec, name, type));
    for (PetscInt j = 0; j < p->nall && !dup; j++) {
      PetscCall(CsProblemSpec(p->all[j], oname, otype));
      dup = strcmp(oname, name) ? PETSC_FALSE : PETSC_TRUE;
      CsCheckAll(PETSC_COMM_WORLD, !dup || !strcmp(otype, type), "-model: the name '%s' is given to a %s and to a %s model", name, otype,
                 type);
    }
    if (dup) continue;
    p->isbaseline[p->nall] = i < p->nbaselines ? PETSC_TRUE : PETSC_FALSE;
    p->all[p->nall++]      = spec;
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsProblemSetUp(CsProblem *p, PetscBool reuse)
{
  MPI_Comm    comm = PETSC_COMM_WORLD;
  PetscViewer v    = PETSC_VIEWER_STDOUT_WORLD;

  PetscFunctionBeginUser;
  PetscCall(CsProblemSetFromOptions(p));
  PetscCall(CsDatasetCreate(comm, &p->ds));
  PetscCall(CsDatasetSetFromOptions(p->ds));
  PetscCall(CsDesignCreate(comm, &p->design));
  PetscCall(CsDesignSetFromOptions(p->design));
  PetscCall(CsDesignAddKeys(p->design, p->ds));
  PetscCall(CsSplitCreate(comm, &p->split));
  PetscCall(CsSplitSetFromOptions(p->split));
  if (reuse && !p->split->file[0]) PetscCall(CsPathJoin(p->outdir, "split.json", p->split->file));
  {
    /* A resumed run continues on the split of the run it resumes. */
    char resume[PETSC_MAX_PATH_LEN] = "";
    PetscCall(PetscOptionsGetString(NULL, NULL, "-resume", resume, sizeof(resume), NULL));
    if (resume[0] && !p->split->file[0]) PetscCall(CsPathJoin(resume, "split.json", p->split->file));
  }
  if (reuse) {
    PetscBool e;
    PetscCall(CsFileExists(comm, p->split->file, &e));
    CsCheckAll(comm, e, "no split at %s: run `cellshift train` with the same -output_dir first (or give -split_file)", p->split->file);
  }
  PetscCall(CsDatasetSetUp(p->ds));
  PetscCall(CsDesignSetUp(p->design, p->ds));
  PetscCall(CsSplitSetUp(p->split, p->design));
  PetscCall(CsDatasetView(p->ds, v));
  PetscCall(CsDesignView(p->design, v));
  PetscCall(CsSplitView(p->split, p->design, v));
  if (!reuse) {
    char path[PETSC_MAX_PATH_LEN];
    PetscCall(CsMakeDir(comm, p->outdir));
    PetscCall(CsPathJoin(p->outdir, "split.json", path));
    PetscCall(CsSplitSave(p->split, p->design, path));
    PetscCall(WriteOptions(comm, p->outdir));
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsProblemDestroy(CsProblem *p)
{
  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < p->nmodels; i++) PetscCall(PetscFree(p->models[i]));
  for (PetscInt i = 0; i < p->nbaselines; i++) PetscCall(PetscFree(p->baselines[i]));
  PetscCall(CsSplitDestroy(&p->split));
  PetscCall(CsDesignDestroy(&p->design));
  PetscCall(CsDatasetDestroy(&p->ds));
  PetscFunctionReturn(0);
}

PetscErrorCode CsProblemSpec(const char spec[], char name[64], char type[64])
{
  const char *colon = strchr(spec, ':');

  PetscFunctionBeginUser;
  if (!colon) {
    PetscCall(PetscStrncpy(name, spec, 64));
    PetscCall(PetscStrncpy(type, spec, 64));
    PetscFunctionReturn(0);
  }
  CsCheckAll(PETSC_COMM_WORLD, colon > spec && colon[1] && (size_t)(colon - spec) < 64, "-model %s: give NAME:TYPE, e.g. wide:scgen", spec);
  PetscCall(PetscStrncpy(name, spec, (size_t)(colon - spec) + 1));
  PetscCall(PetscStrncpy(type, colon + 1, 64));
  PetscFunctionReturn(0);
}

PetscErrorCode CsProblemModelPath(CsProblem *p, const char spec[], const char file[], char out[])
{
  char dir[PETSC_MAX_PATH_LEN], name[64], type[64];

  PetscFunctionBeginUser;
  PetscCall(CsProblemSpec(spec, name, type));
  PetscCall(CsPathJoin(p->outdir, name, dir));
  PetscCall(CsPathJoin(dir, file, out));
  PetscFunctionReturn(0);
}

PetscErrorCode CsProblemModel(CsProblem *p, const char spec[], CsModel *m)
{
  char name[64], type[64], dir[PETSC_MAX_PATH_LEN];

  PetscFunctionBeginUser;
  PetscCall(CsProblemSpec(spec, name, type));
  PetscCall(CsModelCreate(PETSC_COMM_WORLD, m));
  PetscCall(CsModelSetName(*m, name));
  PetscCall(CsModelSetType(*m, type));
  PetscCall(CsModelSetFromOptions(*m));
  PetscCall(CsModelSetProblem(*m, p->ds, p->design, p->split));
  PetscCall(CsPathJoin(p->outdir, name, dir));
  PetscCall(CsModelSetOutputDir(*m, dir));
  PetscFunctionReturn(0);
}

PetscErrorCode CsProblemFitPredict(CsProblem *p, const char spec[], PetscBool predict, PetscBool *interrupted)
{
  CsModel     m;
  char        dir[PETSC_MAX_PATH_LEN], path[PETSC_MAX_PATH_LEN];
  const char *name;
  double      t0 = CsTime();

  PetscFunctionBeginUser;
  PetscCall(CsProblemModel(p, spec, &m));
  PetscCall(CsModelGetName(m, &name));
  PetscCall(CsPathJoin(p->outdir, name, dir));
  PetscCall(CsMakeDir(PETSC_COMM_WORLD, dir));
  PetscCall(CsModelFit(m));
  PetscCall(CsModelGetInterrupted(m, interrupted));
  if (*interrupted) {
    PetscCall(CsModelDestroy(&m));
    PetscFunctionReturn(0);
  }
  PetscCall(CsProblemModelPath(p, spec, "model.h5", path));
  PetscCall(CsModelSave(m, path));
  if (predict) {
    PetscCall(CsProblemModelPath(p, spec, "predictions.h5ad", path));
    PetscCall(CsModelWritePredictions(m, path));
  }
  PetscCall(PetscPrintf(PETSC_COMM_WORLD, "%s: fitted%s in %.2f s\n", name, predict ? " and predicted" : "", CsTime() - t0));
  PetscCall(CsModelDestroy(&m));
  PetscFunctionReturn(0);
}

PetscErrorCode CsProblemScore(CsProblem *p, PetscBool fit)
{
  CsEvaluator e;
  PetscBool   stop = PETSC_FALSE;

  PetscFunctionBeginUser;
  PetscCall(CsEvaluatorCreate(PETSC_COMM_WORLD, &e));
  PetscCall(CsEvaluatorSetFromOptions(e));
  PetscCall(CsEvaluatorSetUp(e, p->ds, p->design, p->split));
  for (PetscInt i = 0; i < p->nall && !stop; i++) {
    char      path[PETSC_MAX_PATH_LEN];
    PetscBool exists = PETSC_FALSE;
    PetscCall(CsProblemModelPath(p, p->all[i], "predictions.h5ad", path));
    if (!fit) PetscCall(CsFileExists(PETSC_COMM_WORLD, path, &exists));
    CsCheckAll(PETSC_COMM_WORLD, fit || exists || p->isbaseline[i], "no predictions at %s: run `cellshift predict` first", path);
    if (fit || !exists) PetscCall(CsProblemFitPredict(p, p->all[i], PETSC_TRUE, &stop));
    if (!stop) {
      char name[64], type[64];
      PetscCall(CsProblemSpec(p->all[i], name, type));
      PetscCall(CsEvaluatorScore(e, name, path, p->isbaseline[i]));
    }
  }
  if (!stop) { /* a signal stopped a fit after its checkpoint: there is nothing to evaluate yet */
    PetscCall(CsEvaluatorWrite(e, p->outdir));
    PetscCall(CsEvaluatorPrintTable(e, PETSC_VIEWER_STDOUT_WORLD));
  }
  PetscCall(CsEvaluatorDestroy(&e));
  PetscFunctionReturn(0);
}
