/* Reports of CsEvaluator: metrics.json, metrics.csv and report.md, written by rank 0 under a temporary name and
   renamed into place. */
#include "evalimpl.h"
#include <cellshift/json.h>
#include <math.h>

typedef PetscErrorCode (*ReportWriter)(CsEvaluator, FILE *);

static PetscErrorCode WriteFile(CsEvaluator e, const char path[], ReportWriter w)
{
  CsOutFile      f;
  PetscErrorCode ierr = 0;
  char           msg[CS_MSG_LEN];

  PetscFunctionBeginUser;
  PetscCall(CsOutFileBegin(e->comm, path, &f));
  if (!e->rank) {
    FILE *fp = fopen(f.tmp, "w");
    if (!fp) ierr = PETSC_ERR_FILE_OPEN;
    else {
      ierr = w(e, fp);
      if (ferror(fp) && !ierr) ierr = PETSC_ERR_FILE_WRITE;
      if (fclose(fp) && !ierr) ierr = PETSC_ERR_FILE_WRITE;
    }
  }
  if (ierr) PetscCall(CsOutFileAbandon(e->comm, &f));
  PetscCall(PetscSNPrintf(msg, sizeof(msg), "cannot write %s", path));
  PetscCall(CsAgreeCode(e->comm, ierr, msg));
  PetscCall(CsOutFileCommit(e->comm, &f));
  PetscFunctionReturn(0);
}


static void CSVField(FILE *fp, const char *s)
{
  if (!strpbrk(s, ",\"\n\r")) {
    fputs(s, fp);
    return;
  }
  fputc('"', fp);
  for (; *s; s++) {
    if (*s == '"') fputc('"', fp);
    fputc(*s, fp);
  }
  fputc('"', fp);
}

static const char *GroupCondition(CsEvaluator e, PetscInt t) { return e->d->conds[e->d->groups[e->test[t]].cond].name; }
static const char *GroupDose(CsEvaluator e, PetscInt t) { return e->d->conds[e->d->groups[e->test[t]].cond].dose; }
static const char *GroupContext(CsEvaluator e, PetscInt t) { return e->d->contexts[e->d->groups[e->test[t]].ctx]; }

static PetscErrorCode JSONBody(CsEvaluator e, FILE *fp)
{
  PetscFunctionBeginUser;
  fprintf(fp, "{\n  \"cellshift_version\": ");
  CsJSONWriteString(fp, CS_VERSION);
  fprintf(fp, ",\n  \"data\": ");
  CsJSONWriteString(fp, e->ds->path);
  fprintf(fp, ",\n  \"split\": ");
  CsJSONWriteString(fp, e->s->type);
  fprintf(fp, ",\n  \"test_groups\": %" PetscInt_FMT ",\n  \"genes\": %" PetscInt_FMT ",\n", e->ntest, e->G);
  fprintf(fp, "  \"eval_max_cells\": %" PetscInt_FMT ",\n  \"eval_pca_components\": %" PetscInt_FMT ",\n", e->max_cells, e->pca_k);
  fprintf(fp, "  \"metrics\": [");
  for (PetscInt k = 0; k < CS_NMETRICS; k++) fprintf(fp, "%s\"%s\"", k ? ", " : "", CsMetricNames[k]);
  fprintf(fp, "],\n  \"higher_is_better\": {");
  for (PetscInt k = 0; k < CS_NMETRICS; k++) fprintf(fp, "%s\"%s\": %s", k ? ", " : "", CsMetricNames[k], CsMetricHigherBetter[k] ? "true" : "false");
  fprintf(fp, "},\n  \"models\": [");
  for (PetscInt i = 0; i < e->nmodels; i++) {
    fprintf(fp, "%s", i ? ", " : "");
    CsJSONWriteString(fp, e->models[i].name);
  }
  fprintf(fp, "],\n  \"predictions\": {");
  for (PetscInt i = 0; i < e->nmodels; i++) {
    fprintf(fp, "%s", i ? ", " : "");
    CsJSONWriteString(fp, e->models[i].name);
    fprintf(fp, ": ");
    CsJSONWriteString(fp, e->models[i].path);
  }
  fprintf(fp, "},\n  \"aggregates\": {");
  for (PetscInt i = 0; i < e->nmodels; i++) {
    fprintf(fp, "%s\n    ", i ? "," : "");
    CsJSONWriteString(fp, e->models[i].name);
    fprintf(fp, ": {");
    for (PetscInt k = 0; k < CS_NMETRICS; k++) {
      fprintf(fp, "%s\"%s\": ", k ? ", " : "", CsMetricNames[k]);
      CsJSONWriteNumber(fp, e->models[i].agg[k]);
    }
    fprintf(fp, "}");
  }
  fprintf(fp, "\n  },\n  \"groups\": {");
  for (PetscInt i = 0; i < e->nmodels; i++) {
    const CsEvalModel *m = &e->models[i];
    fprintf(fp, "%s\n    ", i ? "," : "");
    CsJSONWriteString(fp, m->name);
    fprintf(fp, ": [");
    for (PetscInt t = 0; t < e->ntest; t++) {
      fprintf(fp, "%s\n      {\"condition\": ", t ? "," : "");
      CsJSONWriteString(fp, GroupCondition(e, t));
      fprintf(fp, ", \"dose\": ");
      CsJSONWriteString(fp, GroupDose(e, t));
      fprintf(fp, ", \"context\": ");
      CsJSONWriteString(fp, GroupContext(e, t));
      fprintf(fp, ", \"n_true\": %" PetscInt_FMT ", \"n_pred\": %" PetscInt_FMT ", \"n_control\": %" PetscInt_FMT, e->nT[t],
              m->npred[t], e->nC[t]);
      for (PetscInt k = 0; k < CS_NMETRICS; k++) {
        fprintf(fp, ", \"%s\": ", CsMetricNames[k]);
        CsJSONWriteNumber(fp, m->values[(size_t)t * CS_NMETRICS + k]);
      }
      fprintf(fp, "}");
    }
    fprintf(fp, "\n    ]");
  }
  fprintf(fp, "\n  }\n}\n");
  PetscFunctionReturn(0);
}

static PetscErrorCode CSVBody(CsEvaluator e, FILE *fp)
{
  PetscFunctionBeginUser;
  fprintf(fp, "model,condition,dose,context,n_true,n_pred,n_control");
  for (PetscInt k = 0; k < CS_NMETRICS; k++) fprintf(fp, ",%s", CsMetricNames[k]);
  fprintf(fp, "\n");
  for (PetscInt i = 0; i < e->nmodels; i++)
    for (PetscInt t = 0; t < e->ntest; t++) {
      const CsEvalModel *m = &e->models[i];
      CSVField(fp, m->name);
      fputc(',', fp);
      CSVField(fp, GroupCondition(e, t));
      fputc(',', fp);
      CSVField(fp, GroupDose(e, t));
      fputc(',', fp);
      CSVField(fp, GroupContext(e, t));
      fprintf(fp, ",%" PetscInt_FMT ",%" PetscInt_FMT ",%" PetscInt_FMT, e->nT[t], m->npred[t], e->nC[t]);
      for (PetscInt k = 0; k < CS_NMETRICS; k++) fprintf(fp, ",%.17g", m->values[(size_t)t * CS_NMETRICS + k]);
      fprintf(fp, "\n");
    }
  PetscFunctionReturn(0);
}

static PetscBool IsBaseline(const char *name) { return !strcmp(name, "control") || !strcmp(name, "additive") ? PETSC_TRUE : PETSC_FALSE; }

static PetscErrorCode MarkdownBody(CsEvaluator e, FILE *fp)
{
  CsDesign d = e->d;
  char     best[CS_NMETRICS][64];
  PetscInt nctx_test = 0;

  PetscFunctionBeginUser;
  for (PetscInt c = 0; c < d->nctx; c++)
    for (PetscInt t = 0; t < e->ntest; t++)
      if (d->groups[e->test[t]].ctx == c) {
        nctx_test++;
        break;
      }
  fprintf(fp, "# cellshift evaluation\n\n");
  fprintf(fp, "Data: `%s`, %" PetscInt_FMT " cells x %" PetscInt_FMT " genes; perturbations from obs `%s` (control `%s`)", e->ds->path,
          e->ds->nglobal, e->G, d->pert_key, d->control_value);
  if (d->context_key[0]) fprintf(fp, ", contexts from obs `%s` (%" PetscInt_FMT ")", d->context_key, d->nctx);
  if (d->dose_key[0]) fprintf(fp, ", doses from obs `%s`", d->dose_key);
  fprintf(fp, ": %" PetscInt_FMT " conditions, %" PetscInt_FMT " groups (condition x context). ", d->ncond, d->ngroups);
  fprintf(fp, "Split `%s`: %" PetscInt_FMT " test groups in %" PetscInt_FMT " context%s, %" PetscInt_FMT " valid, %" PetscInt_FMT
              " train (controls are always train). ",
          e->s->type, e->ntest, nctx_test, nctx_test == 1 ? "" : "s", e->s->nvalid, e->s->ntrain);
  fprintf(fp, "Each test group (condition, context) compares the predicted cells P with its held-out cells T, relative to "
              "the control cells C of the same context; numbers are means over the test groups.");
  for (PetscInt i = 0; i < e->nmodels; i++) {
    if (!strcmp(e->models[i].name, "control")) fprintf(fp, " The `control` baseline predicts no change.");
    if (!strcmp(e->models[i].name, "additive"))
      fprintf(fp, " The `additive` baseline adds the mean shifts of the single perturbations to the controls.");
  }
  fprintf(fp, " A model is worth reading where it beats the baselines.\n\n");

  /* The best value as printed: values equal to 4 decimals are equally good to the reader. */
  for (PetscInt k = 0; k < CS_NMETRICS; k++) {
    double b = CsMetricHigherBetter[k] ? -INFINITY : INFINITY;
    for (PetscInt i = 0; i < e->nmodels; i++) {
      double v = e->models[i].agg[k];
      if (!isnan(v) && (CsMetricHigherBetter[k] ? v > b : v < b)) b = v;
    }
    snprintf(best[k], sizeof(best[k]), "%.4f", b);
  }
  fprintf(fp, "## Results (mean over %" PetscInt_FMT " test groups; best in bold)\n\n| model |", e->ntest);
  for (PetscInt k = 0; k < CS_NMETRICS; k++) fprintf(fp, " %s %s |", CsMetricNames[k], CsMetricHigherBetter[k] ? "↑" : "↓");
  fprintf(fp, "\n|---|");
  for (PetscInt k = 0; k < CS_NMETRICS; k++) fprintf(fp, "---:|");
  fprintf(fp, "\n");
  for (PetscInt i = 0; i < e->nmodels; i++) {
    fprintf(fp, "| %s%s |", e->models[i].name, IsBaseline(e->models[i].name) ? " (baseline)" : "");
    for (PetscInt k = 0; k < CS_NMETRICS; k++) {
      char v[64];
      if (isnan(e->models[i].agg[k])) snprintf(v, sizeof(v), "n/a");
      else snprintf(v, sizeof(v), "%.4f", e->models[i].agg[k]);
      fprintf(fp, e->nmodels > 1 && !strcmp(v, best[k]) ? " **%s** |" : " %s |", v);
    }
    fprintf(fp, "\n");
  }

  fprintf(fp, "\n## pearson_delta per test group\n\n| group | n_true | n_control |");
  for (PetscInt i = 0; i < e->nmodels; i++) fprintf(fp, " %s |", e->models[i].name);
  fprintf(fp, "\n|---|---:|---:|");
  for (PetscInt i = 0; i < e->nmodels; i++) fprintf(fp, "---:|");
  fprintf(fp, "\n");
  for (PetscInt t = 0; t < e->ntest; t++) {
    char name[512];
    PetscCall(CsDesignGroupName(d, e->test[t], name, sizeof(name)));
    fprintf(fp, "| %s | %" PetscInt_FMT " | %" PetscInt_FMT " |", name, e->nT[t], e->nC[t]);
    for (PetscInt i = 0; i < e->nmodels; i++) fprintf(fp, " %.4f |", e->models[i].values[(size_t)t * CS_NMETRICS + CS_M_PEARSON_DELTA]);
    fprintf(fp, "\n");
  }
  fprintf(fp, "\nEvery value of every group and model is in `metrics.csv` and `metrics.json`.\n\n");

  fprintf(fp, "## Definitions\n\n");
  fprintf(fp, "m(.) is the mean over cells of the log-normalised expression; DE genes are the genes ranked by |Welch t| of T "
              "vs C (sample variances), descending, ties by gene order, genes with t = 0 never DE.\n\n");
  fprintf(fp, "- `rmse`: sqrt(mean over genes of (m(P) - m(T))^2).\n");
  fprintf(fp, "- `r2_mean_all`: pearson(m(P), m(T))^2 (scGen's convention); `r2_mean_top100_de`: the same on the top-100 DE genes.\n");
  fprintf(fp, "- `pearson_delta`: pearson(m(P) - m(C), m(T) - m(C)); `pearson_delta_top20_de`: the same on the top-20 DE genes.\n");
  fprintf(fp, "- `cosine_logfc`: cosine(l(m(P)) - l(m(C)), l(m(T)) - l(m(C))), l(v) = log2(max(v, 0) + 0.1).\n");
  fprintf(fp, "- `energy_distance`: 2 E|p - t| - E|p - p'| - E|t - t'|; `mmd_rbf`: unbiased MMD^2 with the RBF kernel whose "
              "bandwidth s^2 is the median squared distance within C u T. Both in the first %" PetscInt_FMT " principal "
              "components of C u T, each of P, T, C subsampled to at most %" PetscInt_FMT " evenly spaced cells.\n",
          e->pca_k, e->max_cells);
  fprintf(fp, "- `de_recall_top20`: |top-20 DE(P vs C) ∩ top-20 DE(T vs C)| / 20.\n");
  fprintf(fp, "- `rank`: within a context, the fraction of the other test groups h whose truth is closer (rmse of means) "
              "to the prediction for g than g's own truth (ties count half), over the number of test groups: 0 is "
              "perfect, about 0.5 is no better than random; n/a (and left out of the means) in a context with a single "
              "test group.\n");
  fprintf(fp, "- Pearson of a constant vector and cosine of a zero vector are 0.\n\n");

  fprintf(fp, "## Predicted vs true shifts\n\n");
  for (PetscInt i = 0; i < e->nmodels; i++) {
    char file[PETSC_MAX_PATH_LEN];
    CsEvalPlotFileName(e->models[i].name, file, sizeof(file));
    fprintf(fp, "![%s](%s)\n\n", e->models[i].name, file);
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsEvalWriteJSON(CsEvaluator e, const char path[])
{
  PetscFunctionBeginUser;
  PetscCall(WriteFile(e, path, JSONBody));
  PetscFunctionReturn(0);
}

PetscErrorCode CsEvalWriteCSV(CsEvaluator e, const char path[])
{
  PetscFunctionBeginUser;
  PetscCall(WriteFile(e, path, CSVBody));
  PetscFunctionReturn(0);
}

PetscErrorCode CsEvalWriteMarkdown(CsEvaluator e, const char path[])
{
  PetscFunctionBeginUser;
  PetscCall(WriteFile(e, path, MarkdownBody));
  PetscFunctionReturn(0);
}
