/* Collecting a sweep: every run's metrics.json into one table (CSV for the scaling fit, markdown to read). See
   sweep.h for the columns. */
#include <cellshift/sweep.h>
#include <cellshift/eval.h>
#include <cellshift/json.h>
#include <math.h>

typedef struct {
  char   run[16], status[16];
  char **opt;          /* [nopt] swept values (pointers into sweep.json) */
  char   model[64];
  char   n_train[32], params[32];
  char   value[CS_NMETRICS][32];
} Row;

typedef struct {
  PetscInt     nopt, nrows;
  const char **opt;
  Row         *rows;
} Table;

/* A CSV field: quoted where it holds a comma, a quote or a line break. */
static void Field(FILE *fp, const char s[], PetscBool last)
{
  if (strpbrk(s, ",\"\n\r")) {
    fputc('"', fp);
    for (const char *c = s; *c; c++) {
      if (*c == '"') fputc('"', fp);
      fputc(*c, fp);
    }
    fputc('"', fp);
  } else fputs(s, fp);
  fputc(last ? '\n' : ',', fp);
}

static PetscErrorCode WriteCSV(void *ctx, FILE *fp)
{
  Table *t = (Table *)ctx;

  PetscFunctionBeginUser;
  fputs("run,status,", fp);
  for (PetscInt j = 0; j < t->nopt; j++) Field(fp, t->opt[j], PETSC_FALSE);
  fputs("model,n_train_cells,params", fp);
  for (PetscInt k = 0; k < CS_NMETRICS; k++) fprintf(fp, ",%s", CsMetricNames[k]);
  fputc('\n', fp);
  for (PetscInt r = 0; r < t->nrows; r++) {
    Row *w = &t->rows[r];
    Field(fp, w->run, PETSC_FALSE);
    Field(fp, w->status, PETSC_FALSE);
    for (PetscInt j = 0; j < t->nopt; j++) Field(fp, w->opt[j], PETSC_FALSE);
    Field(fp, w->model, PETSC_FALSE);
    Field(fp, w->n_train, PETSC_FALSE);
    Field(fp, w->params, PETSC_FALSE);
    for (PetscInt k = 0; k < CS_NMETRICS; k++) Field(fp, w->value[k], k == CS_NMETRICS - 1 ? PETSC_TRUE : PETSC_FALSE);
  }
  PetscFunctionReturn(0);
}

static void Cell(FILE *fp, const char s[])
{
  fputs(" ", fp);
  for (const char *c = s; *c; c++) fputs(*c == '|' ? "\\|" : (char[]){*c, 0}, fp);
  fputs(" |", fp);
}

static PetscErrorCode WriteMarkdown(void *ctx, FILE *fp)
{
  Table   *t = (Table *)ctx;
  PetscInt nok = 0, nfail = 0, nmiss = 0;

  PetscFunctionBeginUser;
  for (PetscInt r = 0; r < t->nrows; r++) {
    if (r && !strcmp(t->rows[r].run, t->rows[r - 1].run)) continue; /* one count per run */
    nok += !strcmp(t->rows[r].status, "ok"), nfail += !strcmp(t->rows[r].status, "failed"), nmiss += !strcmp(t->rows[r].status, "missing");
  }
  fprintf(fp, "# Sweep results\n\n%" PetscInt_FMT " runs: %" PetscInt_FMT " ok, %" PetscInt_FMT " failed, %" PetscInt_FMT " missing. "
              "Metrics on the test groups, averaged (metrics.json aggregates); every column is in collected.csv.\n\n",
          nok + nfail + nmiss, nok, nfail, nmiss);
  fputs("| run | status |", fp);
  for (PetscInt j = 0; j < t->nopt; j++) Cell(fp, t->opt[j]);
  fputs(" model | n_train_cells | params |", fp);
  for (PetscInt k = 0; k < CS_NMETRICS; k++) fprintf(fp, " %s |", CsMetricNames[k]);
  fputs("\n|---|---|", fp);
  for (PetscInt j = 0; j < t->nopt + 3 + CS_NMETRICS; j++) fputs("---|", fp);
  fputc('\n', fp);
  for (PetscInt r = 0; r < t->nrows; r++) {
    Row *w = &t->rows[r];
    fputs("|", fp);
    Cell(fp, w->run);
    Cell(fp, w->status);
    for (PetscInt j = 0; j < t->nopt; j++) Cell(fp, w->opt[j]);
    Cell(fp, w->model);
    Cell(fp, w->n_train);
    Cell(fp, w->params);
    for (PetscInt k = 0; k < CS_NMETRICS; k++) {
      double v = w->value[k][0] ? atof(w->value[k]) : NAN;
      char   b[32] = "";
      if (isfinite(v)) snprintf(b, sizeof(b), "%.4f", v);
      Cell(fp, b);
    }
    fputc('\n', fp);
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode AddRow(Table *t, PetscInt *cap, Row **w)
{
  PetscFunctionBeginUser;
  if (t->nrows == *cap) {
    *cap = *cap ? 2 * *cap : 64;
    PetscCall(PetscRealloc(sizeof(Row) * (size_t)*cap, &t->rows));
  }
  *w = &t->rows[t->nrows++];
  PetscCall(PetscMemzero(*w, sizeof(**w)));
  PetscFunctionReturn(0);
}

/* The rows of run c: one per model of its metrics.json, or one without a model. */
static PetscErrorCode CollectRun(const char dir[], PetscInt c, json_t *conf, Table *t, PetscInt *cap, PetscInt *nok)
{
  char         rundir[PETSC_MAX_PATH_LEN], path[PETSC_MAX_PATH_LEN], run[16], status[16] = "missing";
  json_t      *st, *metrics = NULL, *models, *aggs, *params;
  json_error_t err;
  Row         *w = NULL;
  size_t       m, nm;

  PetscFunctionBeginUser;
  PetscCall(CsSweepRunDir(dir, c, rundir));
  PetscCall(PetscSNPrintf(run, sizeof(run), "%04" PetscInt_FMT, c));
  PetscCall(CsPathJoin(rundir, "status.json", path));
  if ((st = json_load_file(path, 0, &err))) {
    const char *s = json_string_value(json_object_get(st, "status"));
    if (s && (!strcmp(s, "ok") || !strcmp(s, "failed"))) PetscCall(PetscStrncpy(status, s, sizeof(status)));
    json_decref(st);
  }
  if (!strcmp(status, "ok")) {
    PetscCall(CsPathJoin(rundir, "metrics.json", path));
    metrics = json_load_file(path, 0, &err);
    if (!metrics) PetscCall(PetscStrncpy(status, "failed", sizeof(status))); /* ended without its metrics */
  }
  models = metrics ? json_object_get(metrics, "models") : NULL;
  aggs   = metrics ? json_object_get(metrics, "aggregates") : NULL;
  params = metrics ? json_object_get(metrics, "params") : NULL;
  *nok += !strcmp(status, "ok");
  nm = json_is_array(models) ? json_array_size(models) : 0;
  for (m = 0; m < (nm ? nm : 1); m++) {
    const char *name = nm ? json_string_value(json_array_get(models, m)) : NULL;
    PetscCall(AddRow(t, cap, &w));
    PetscCall(PetscStrncpy(w->run, run, sizeof(w->run)));
    PetscCall(PetscStrncpy(w->status, status, sizeof(w->status)));
    PetscCall(PetscCalloc1(t->nopt + 1, &w->opt));
    for (PetscInt j = 0; j < t->nopt; j++) {
      const char *v = json_string_value(json_object_get(conf, t->opt[j]));
      w->opt[j]     = (char *)(v ? v : "");
    }
    if (!name) continue;
    PetscCall(PetscStrncpy(w->model, name, sizeof(w->model)));
    {
      json_t *n = json_object_get(metrics, "n_train_cells"), *p = params ? json_object_get(params, name) : NULL;
      if (json_is_integer(n)) PetscCall(PetscSNPrintf(w->n_train, sizeof(w->n_train), "%lld", (long long)json_integer_value(n)));
      if (json_is_integer(p)) PetscCall(PetscSNPrintf(w->params, sizeof(w->params), "%lld", (long long)json_integer_value(p)));
    }
    for (PetscInt k = 0; k < CS_NMETRICS; k++) {
      json_t *v = json_object_get(json_object_get(aggs, name), CsMetricNames[k]);
      if (json_is_number(v) && isfinite(json_number_value(v))) PetscCall(PetscSNPrintf(w->value[k], sizeof(w->value[k]), "%.9g", json_number_value(v)));
    }
  }
  if (metrics) json_decref(metrics);
  PetscFunctionReturn(0);
}

PetscErrorCode CsSweepCollect(MPI_Comm comm, const char dir[], PetscInt *nruns, PetscInt *nok)
{
  char         path[PETSC_MAX_PATH_LEN];
  json_t      *root = NULL, *swept, *confs;
  PetscMPIInt  rank;
  PetscInt     cap = 0, nconf = 0, good = 0;
  Table        t   = {0};
  PetscBool    ok;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  PetscCall(CsPathJoin(dir, "sweep.json", path));
  PetscCall(CsFileExists(comm, path, &ok));
  CsCheckAll(comm, ok, "-sweep %s: no sweep.json (not the -output_dir of a `cellshift sweep`)", dir);
  if (!rank) PetscCall(CsJSONLoad(path, &root));
  swept = root ? json_object_get(root, "swept") : NULL;
  confs = root ? json_object_get(root, "configurations") : NULL;
  CsCheckAll(comm, rank || (json_is_array(swept) && json_is_array(confs)), "%s: no swept options or configurations", path);
  if (!rank) {
    t.nopt = (PetscInt)json_array_size(swept);
    PetscCall(PetscCalloc1(t.nopt + 1, &t.opt));
    for (PetscInt j = 0; j < t.nopt; j++) {
      t.opt[j] = json_string_value(json_array_get(swept, (size_t)j));
      if (!t.opt[j]) t.opt[j] = "?";
    }
    nconf = (PetscInt)json_array_size(confs);
    for (PetscInt c = 0; c < nconf; c++) PetscCall(CollectRun(dir, c, json_array_get(confs, (size_t)c), &t, &cap, &good));
  }
  PetscCall(CsPathJoin(dir, "collected.csv", path));
  PetscCall(CsWriteTextRank0(comm, path, WriteCSV, &t));
  PetscCall(CsPathJoin(dir, "collected.md", path));
  PetscCall(CsWriteTextRank0(comm, path, WriteMarkdown, &t));
  for (PetscInt r = 0; r < t.nrows; r++) PetscCall(PetscFree(t.rows[r].opt));
  PetscCall(PetscFree(t.rows));
  PetscCall(PetscFree(t.opt));
  if (root) json_decref(root);
  PetscCallMPI(MPI_Bcast(&nconf, 1, MPIU_INT, 0, comm));
  PetscCallMPI(MPI_Bcast(&good, 1, MPIU_INT, 0, comm));
  *nruns = nconf, *nok = good;
  PetscFunctionReturn(0);
}
