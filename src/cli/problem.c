/* The set-up shared by the commands: options, run folder, data, design, split, models. */
#include "commands.h"
#include <limits.h>
#include <stdlib.h>

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

PetscErrorCode CsProblemSetFromOptions(CsProblem *p)
{
  PetscInt  nm = 16, nb = 16;
  PetscBool mset = PETSC_FALSE, bset = PETSC_FALSE;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(p, sizeof(*p)));
  p->lock = -1;
  PetscCall(PetscStrncpy(p->outdir, "cellshift_out", sizeof(p->outdir)));
  PetscOptionsBegin(PETSC_COMM_WORLD, NULL, "Run", "CsProblemSetFromOptions");
  PetscCall(PetscOptionsString("-output_dir", "Folder of the run's files", "CsProblemSetUp", p->outdir, p->outdir, sizeof(p->outdir), NULL));
  PetscCall(PetscOptionsStringArray("-model", "Models to fit, comma-separated (default linear; see the list of models)", "CsProblemSetUp",
                                    p->models, &nm, &mset));
  PetscCall(PetscOptionsStringArray("-baselines", "Baselines scored next to every model (default control,additive,mean)", "CsProblemSetUp",
                                    p->baselines, &nb, &bset));
  PetscCall(PetscOptionsBool("-overwrite", "Replace the files of an earlier run in -output_dir (only the files cellshift writes)", "CsRunDirPrepare",
                             p->overwrite, &p->overwrite, NULL));
  PetscCall(PetscOptionsBool("-keep_checkpoint", "Keep <model>/checkpoint.h5 after a successful fit", "CsProblemFitPredict", p->keep_checkpoint,
                             &p->keep_checkpoint, NULL));
  PetscOptionsEnd();
  PetscCall(PetscOptionsGetString(NULL, NULL, "-resume", p->resume, sizeof(p->resume), NULL)); /* declared by the trainer */
  p->nmodels = mset ? nm : 0, p->nbaselines = bset ? nb : 0;
  CsCheckAll(PETSC_COMM_WORLD, !mset || nm > 0, "-model lists no model (models: %s)", CsModelTypeNames());
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

/* Every object of the problem, with its options read (and checked by its SetFromOptions). With external, a name
   whose type is not a cellshift model names predictions made elsewhere (evaluate scores them): it has no object. */
static PetscErrorCode CreateObjects(CsProblem *p, PetscBool external)
{
  MPI_Comm comm = PETSC_COMM_WORLD;

  PetscFunctionBeginUser;
  PetscCall(CsProblemSetFromOptions(p));
  PetscCall(CsDatasetCreate(comm, &p->ds));
  PetscCall(CsDatasetSetFromOptions(p->ds));
  PetscCall(CsDesignCreate(comm, &p->design));
  PetscCall(CsDesignSetFromOptions(p->design));
  PetscCall(CsSplitCreate(comm, &p->split));
  PetscCall(CsSplitSetFromOptions(p->split));
  for (PetscInt k = 0; k < p->nall; k++) {
    char name[64], type[64];
    PetscErrorCode (*create)(CsModel) = NULL;
    PetscCall(CsProblemSpec(p->all[k], name, type));
    PetscCall(CsModelInitializePackage());
    PetscCall(PetscFunctionListFind(CsModelList, type, &create));
    if (!create && external) continue;
    PetscCall(CsModelCreate(comm, &p->model[k]));
    PetscCall(CsModelSetName(p->model[k], name));
    PetscCall(CsModelSetType(p->model[k], type));
    PetscCall(CsModelSetFromOptions(p->model[k]));
  }
  PetscCall(CsOptionsQueryLate(comm));
  PetscFunctionReturn(0);
}

/* The run's model names, for messages. */
static PetscErrorCode ModelNames(CsProblem *p, char buf[], size_t len)
{
  PetscFunctionBeginUser;
  buf[0] = 0;
  for (PetscInt k = 0; k < p->nall; k++) {
    char name[64], type[64];
    PetscCall(CsProblemSpec(p->all[k], name, type));
    CsStrCat(buf, len, k ? ", " : "");
    CsStrCat(buf, len, name);
  }
  PetscFunctionReturn(0);
}

/* -eval_vcc_baseline, when given, names a model the run scores (else every vcc_score would be empty). */
static PetscErrorCode CheckVccBaseline(CsProblem *p, const char command[], const char names[])
{
  char      base[64] = "";
  PetscBool set, found = PETSC_FALSE;

  PetscFunctionBeginUser;
  PetscCall(PetscOptionsGetString(NULL, NULL, "-eval_vcc_baseline", base, sizeof(base), &set));
  if (!set || !strcmp(command, "train") || !strcmp(command, "predict")) PetscFunctionReturn(0);
  for (PetscInt k = 0; k < p->nall && !found; k++) {
    char name[64], type[64];
    PetscCall(CsProblemSpec(p->all[k], name, type));
    found = strcmp(name, base) ? PETSC_FALSE : PETSC_TRUE;
  }
  CsCheckAll(PETSC_COMM_WORLD, found, "-eval_vcc_baseline %s: no such model in this run (models: %s)", base, names);
  PetscFunctionReturn(0);
}

/* Read every option, then refuse the ones nothing read. */
static PetscErrorCode ReadOptions(CsProblem *p, const char command[])
{
  PetscErrorCode ierr;
  char           names[512];

  PetscFunctionBeginUser;
  PetscCall(CsOptionsRecordBegin());
  ierr = CreateObjects(p, (PetscBool)!strcmp(command, "evaluate"));
  PetscCall(CsOptionsRecordEnd());
  PetscCall(ierr);
  PetscCall(ModelNames(p, names, sizeof(names)));
  PetscCall(CsOptionsCheckUsed(PETSC_COMM_WORLD, command, names));
  PetscCall(CheckVccBaseline(p, command, names));
  PetscFunctionReturn(0);
}

/* Collective: are a and b the same existing folder? */
static PetscErrorCode SameFolder(MPI_Comm comm, const char a[], const char b[], PetscBool *same)
{
  PetscMPIInt rank;
  int         s = 0;
  char        ra[PATH_MAX], rb[PATH_MAX];

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  if (!rank) s = realpath(a, ra) && realpath(b, rb) && !strcmp(ra, rb);
  PetscCallMPI(MPI_Bcast(&s, 1, MPI_INT, 0, comm));
  *same = s ? PETSC_TRUE : PETSC_FALSE;
  PetscFunctionReturn(0);
}

/* -resume DIR: a run folder with a checkpoint for every model that trains. */
static PetscErrorCode CheckResume(CsProblem *p)
{
  MPI_Comm   comm = PETSC_COMM_WORLD;
  CsPathKind kind;
  char       path[PETSC_MAX_PATH_LEN];
  PetscBool  exists;

  PetscFunctionBeginUser;
  if (!p->resume[0]) PetscFunctionReturn(0);
  PetscCall(CsPathGetKind(comm, p->resume, &kind));
  CsCheckAll(comm, kind != CS_PATH_NONE, "-resume %s: no such folder (give the -output_dir of the run to continue)", p->resume);
  CsCheckAll(comm, kind == CS_PATH_DIR, "-resume %s is a file: give the folder of the run to continue", p->resume);
  PetscCall(CsPathJoin(p->resume, "split.json", path));
  PetscCall(CsFileExists(comm, path, &exists));
  CsCheckAll(comm, exists || p->split->file[0], "-resume %s is not a cellshift run folder (no split.json)", p->resume);
  for (PetscInt k = 0; k < p->nall; k++) {
    PetscBool   trains;
    const char *name;
    char        sub[PETSC_MAX_PATH_LEN];
    if (!p->model[k]) continue;
    PetscCall(CsModelTrains(p->model[k], &trains));
    if (!trains) continue;
    PetscCall(CsModelGetName(p->model[k], &name));
    PetscCall(CsPathJoin(p->resume, name, sub));
    PetscCall(CsPathJoin(sub, "checkpoint.h5", path));
    PetscCall(CsFileExists(comm, path, &exists));
    CsCheckAll(comm, exists,
               "-resume %s: no checkpoint of model %s (%s); a model whose training finished keeps none (see -keep_checkpoint): "
               "resume only the interrupted models with -model",
               p->resume, name, path);
  }
  PetscFunctionReturn(0);
}

/* Lock the run folder and settle what is already in it. */
static PetscErrorCode PrepareRunDir(CsProblem *p, PetscBool reuse)
{
  MPI_Comm    comm = PETSC_COMM_WORLD;
  CsRunDirUse use  = reuse ? CS_RUNDIR_EXISTING : CS_RUNDIR_NEW;
  PetscBool   same = PETSC_FALSE;

  PetscFunctionBeginUser;
  if (p->resume[0] && !reuse) PetscCall(SameFolder(comm, p->resume, p->outdir, &same));
  CsCheckAll(comm, !(same && p->overwrite), "-overwrite with -resume %s of the same folder would remove the checkpoints to resume from",
             p->resume);
  if (same) use = CS_RUNDIR_CONTINUE;
  PetscCall(CsRunDirPrepare(comm, p->outdir, use, p->overwrite, &p->lock));
  if (reuse && !p->split->file[0]) PetscCall(CsPathJoin(p->outdir, "split.json", p->split->file));
  if (p->resume[0] && !p->split->file[0]) PetscCall(CsPathJoin(p->resume, "split.json", p->split->file)); /* continue on its split */
  if (reuse) {
    PetscBool e;
    PetscCall(CsFileExists(comm, p->split->file, &e));
    CsCheckAll(comm, e, "no split at %s: run `cellshift train` with the same -output_dir first (or give -split_file)", p->split->file);
  }
  PetscFunctionReturn(0);
}

/* -data_fraction, -cells_per_group, -max_perturbations: drop training cells, then build the design again on the
   cells kept; every group left keeps its role (matched by condition, dose and context), the groups of a left-out
   training perturbation are gone. */
static PetscErrorCode SubsampleTraining(CsProblem *p)
{
  MPI_Comm   comm = PETSC_COMM_WORLD;
  PetscBool *keep, any;
  CsRole    *role;
  CsDesign   old  = p->design;
  CsSplit    s;

  PetscFunctionBeginUser;
  PetscCall(CsSplitSubsample(p->split, old, &keep, &any));
  if (!any) PetscFunctionReturn(0);
  PetscCall(CsDatasetKeepRows(p->ds, keep));
  PetscCall(PetscFree(keep));
  PetscCall(CsDesignCreate(comm, &p->design));
  PetscCall(CsDesignSetFromOptions(p->design));
  PetscCall(CsDesignSetUp(p->design, p->ds));
  PetscCall(PetscMalloc1(p->design->ngroups + 1, &role));
  for (PetscInt g = 0; g < p->design->ngroups; g++) {
    const CsGroup     *ng = &p->design->groups[g];
    const CsCondition *nc = &p->design->conds[ng->cond];
    PetscInt           oc = -1, octx = CsDesignFindContext(old, p->design->contexts[ng->ctx]), og;
    PetscCall(CsDesignFindCondition(old, nc->name, nc->dose[0] ? nc->dose : NULL, &oc));
    og = oc >= 0 && octx >= 0 ? CsDesignFindGroup(old, oc, octx) : -1;
    PetscCheck(og >= 0, comm, PETSC_ERR_PLIB, "group %s@%s of the subsampled cells is not a group of the data", nc->name, p->design->contexts[ng->ctx]);
    role[g] = p->split->role[og];
  }
  PetscCall(CsSplitCreate(comm, &s));
  PetscCall(CsSplitSetFromOptions(s));
  PetscCall(CsSplitSetUpRoles(s, p->design, role, p->split->valid_groups));
  PetscCall(PetscFree(role));
  PetscCall(CsSplitDestroy(&p->split));
  PetscCall(CsDesignDestroy(&old));
  p->split = s;
  PetscFunctionReturn(0);
}

static PetscErrorCode SetUpData(CsProblem *p)
{
  PetscViewer v = PETSC_VIEWER_STDOUT_WORLD;

  PetscFunctionBeginUser;
  PetscCall(CsDesignAddKeys(p->design, p->ds));
  PetscCall(CsDatasetSetUp(p->ds));
  PetscCall(CsDesignSetUp(p->design, p->ds));
  PetscCall(CsSplitSetUp(p->split, p->design));
  PetscCall(SubsampleTraining(p));
  PetscCall(CsDesignReleaseObs(p->design, p->ds));
  CsReleaseFreeMemory(); /* the set-up's temporaries (cell names, label sorts) */
  PetscCall(CsDatasetView(p->ds, v));
  PetscCall(CsDesignView(p->design, v));
  PetscCall(CsSplitView(p->split, p->design, v));
  PetscFunctionReturn(0);
}

/* Every model on the data, set up before any is fitted, so that a bad size fails before work is spent. */
static PetscErrorCode SetUpModels(CsProblem *p)
{
  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < p->nall; k++) {
    char dir[PETSC_MAX_PATH_LEN], name[64], type[64];
    if (!p->model[k]) continue;
    PetscCall(CsProblemSpec(p->all[k], name, type));
    PetscCall(CsModelSetProblem(p->model[k], p->ds, p->design, p->split));
    PetscCall(CsPathJoin(p->outdir, name, dir));
    PetscCall(CsModelSetOutputDir(p->model[k], dir));
    PetscCall(CsModelSetUp(p->model[k]));
  }
  PetscFunctionReturn(0);
}

/* split.json and options.txt of a new run. */
static PetscErrorCode WriteRunFiles(CsProblem *p)
{
  char path[PETSC_MAX_PATH_LEN];

  PetscFunctionBeginUser;
  PetscCall(CsPathJoin(p->outdir, "split.json", path));
  PetscCall(CsSplitSave(p->split, p->design, path));
  PetscCall(CsPathJoin(p->outdir, "options.txt", path));
  PetscCall(CsWriteFileRank0(PETSC_COMM_WORLD, path, OptionsBody, NULL));
  PetscFunctionReturn(0);
}

PetscErrorCode CsProblemCheckOptions(CsProblem *p, const char command[])
{
  PetscFunctionBeginUser;
  PetscCall(ReadOptions(p, command));
  PetscFunctionReturn(0);
}

PetscErrorCode CsProblemSetUp(CsProblem *p, PetscBool reuse, const char command[])
{
  PetscFunctionBeginUser;
  PetscCall(ReadOptions(p, command));
  PetscCall(CheckResume(p));
  PetscCall(PrepareRunDir(p, reuse));
  PetscCall(SetUpData(p));
  PetscCall(SetUpModels(p));
  if (!reuse) PetscCall(WriteRunFiles(p));
  PetscFunctionReturn(0);
}

PetscErrorCode CsProblemDestroy(CsProblem *p)
{
  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < p->nall; k++) PetscCall(CsModelDestroy(&p->model[k]));
  for (PetscInt i = 0; i < p->nmodels; i++) PetscCall(PetscFree(p->models[i]));
  for (PetscInt i = 0; i < p->nbaselines; i++) PetscCall(PetscFree(p->baselines[i]));
  PetscCall(CsSplitDestroy(&p->split));
  PetscCall(CsDesignDestroy(&p->design));
  PetscCall(CsDatasetDestroy(&p->ds));
  PetscCall(CsLockRelease(PETSC_COMM_WORLD, &p->lock));
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

PetscErrorCode CsProblemModelPath(CsProblem *p, PetscInt k, const char file[], char out[])
{
  char dir[PETSC_MAX_PATH_LEN], name[64], type[64];

  PetscFunctionBeginUser;
  PetscCall(CsProblemSpec(p->all[k], name, type));
  PetscCall(CsPathJoin(p->outdir, name, dir));
  PetscCall(CsPathJoin(dir, file, out));
  PetscFunctionReturn(0);
}

PetscInt CsProblemModelIndex(CsProblem *p, PetscInt i)
{
  char name[64], type[64], oname[64], otype[64];

  if (CsProblemSpec(p->models[i], name, type)) return -1;
  for (PetscInt k = 0; k < p->nall; k++)
    if (!CsProblemSpec(p->all[k], oname, otype) && !strcmp(name, oname)) return k;
  return -1;
}

PetscErrorCode CsProblemFitPredict(CsProblem *p, PetscInt k, PetscBool predict, PetscBool *interrupted)
{
  CsModel     m = p->model[k];
  char        dir[PETSC_MAX_PATH_LEN], path[PETSC_MAX_PATH_LEN];
  const char *name;
  double      t0 = CsTime();

  PetscFunctionBeginUser;
  PetscCall(CsModelGetName(m, &name));
  PetscCall(CsPathJoin(p->outdir, name, dir));
  PetscCall(CsMakeDir(PETSC_COMM_WORLD, dir));
  PetscCall(CsModelFit(m));
  PetscCall(CsModelGetInterrupted(m, interrupted));
  if (*interrupted) PetscFunctionReturn(0);
  PetscCall(CsProblemModelPath(p, k, "model.h5", path));
  PetscCall(CsModelSave(m, path));
  if (predict) {
    PetscCall(CsProblemModelPath(p, k, "predictions.h5ad", path));
    PetscCall(CsModelWritePredictions(m, path));
  }
  if (!p->keep_checkpoint) { /* the fit is complete: the model file holds everything a checkpoint would */
    PetscCall(CsProblemModelPath(p, k, "checkpoint.h5", path));
    PetscCall(CsRemoveFile(PETSC_COMM_WORLD, path));
  }
  PetscCall(PetscPrintf(PETSC_COMM_WORLD, "%s: fitted%s in %.2f s\n", name, predict ? " and predicted" : "", CsTime() - t0));
  PetscFunctionReturn(0);
}

PetscErrorCode CsProblemScore(CsProblem *p, PetscBool fit)
{
  CsEvaluator e;
  PetscBool   stop = PETSC_FALSE, *exists;

  PetscFunctionBeginUser;
  PetscCall(PetscCalloc1(p->nall, &exists));
  for (PetscInt k = 0; k < p->nall && !fit; k++) { /* before any baseline is fitted */
    char path[PETSC_MAX_PATH_LEN];
    PetscCall(CsProblemModelPath(p, k, "predictions.h5ad", path));
    PetscCall(CsFileExists(PETSC_COMM_WORLD, path, &exists[k]));
    CsCheckAll(PETSC_COMM_WORLD, exists[k] || p->model[k], "no predictions at %s, and '%s' is not a cellshift model (models: %s)", path,
               p->all[k], CsModelTypeNames());
    CsCheckAll(PETSC_COMM_WORLD, exists[k] || p->isbaseline[k], "no predictions at %s: run `cellshift predict` first", path);
  }
  PetscCall(CsEvaluatorCreate(PETSC_COMM_WORLD, &e));
  PetscCall(CsEvaluatorSetFromOptions(e));
  PetscCall(CsEvaluatorSetUp(e, p->ds, p->design, p->split));
  for (PetscInt k = 0; k < p->nall && !stop; k++) {
    char path[PETSC_MAX_PATH_LEN], name[64], type[64];
    if (!exists[k]) PetscCall(CsProblemFitPredict(p, k, PETSC_TRUE, &stop));
    if (stop) break;
    PetscCall(CsProblemModelPath(p, k, "predictions.h5ad", path));
    PetscCall(CsProblemSpec(p->all[k], name, type));
    PetscCall(CsEvaluatorScore(e, name, path, p->isbaseline[k]));
    if (p->model[k]) {
      PetscInt64 np;
      PetscCall(CsModelGetParameterCount(p->model[k], &np));
      PetscCall(CsEvaluatorSetParams(e, name, np));
    }
  }
  if (!stop) { /* a signal stopped a fit after its checkpoint: there is nothing to evaluate yet */
    PetscCall(CsEvaluatorWrite(e, p->outdir));
    PetscCall(CsEvaluatorPrintTable(e, PETSC_VIEWER_STDOUT_WORLD));
  }
  PetscCall(CsEvaluatorDestroy(&e));
  PetscCall(PetscFree(exists));
  PetscFunctionReturn(0);
}
