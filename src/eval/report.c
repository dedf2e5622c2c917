/* Reports of CsEvaluator: metrics.json, metrics.csv and report.md, written by rank 0 under a temporary name and
   renamed into place. */
#include "evalimpl.h"
#include <cellshift/json.h>
#include <math.h>

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

static PetscErrorCode StringArray(PetscInt n, const char *(*item)(CsEvaluator, PetscInt), CsEvaluator e, json_t **arr)
{
  PetscFunctionBeginUser;
  *arr = json_array();
  PetscCheck(*arr, PETSC_COMM_SELF, PETSC_ERR_MEM, "out of memory");
  for (PetscInt i = 0; i < n; i++) PetscCall(CsJSONAppend(*arr, json_string(item(e, i))));
  PetscFunctionReturn(0);
}

static const char *MetricName(CsEvaluator e, PetscInt k) { return CsMetricNames[k]; }
static const char *ModelName(CsEvaluator e, PetscInt i) { return e->models[i].name; }

/* metrics[k] = values[k] of one model or group, in metric order. */
static PetscErrorCode SetMetrics(json_t *obj, const double *values)
{
  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < CS_NMETRICS; k++) PetscCall(CsJSONSet(obj, CsMetricNames[k], CsJSONNumber(values[k])));
  PetscFunctionReturn(0);
}

static PetscErrorCode JSONTree(CsEvaluator e, json_t *root)
{
  json_t *arr, *obj, *aggs, *groups;

  PetscFunctionBeginUser;
  PetscCall(CsJSONSet(root, "cellshift_version", json_string(CS_VERSION)));
  PetscCall(CsJSONSet(root, "data", json_string(e->ds->path)));
  PetscCall(CsJSONSet(root, "split", json_string(e->s->type)));
  PetscCall(CsJSONSet(root, "test_groups", json_integer(e->ntest)));
  PetscCall(CsJSONSet(root, "genes", json_integer(e->G)));
  PetscCall(CsJSONSet(root, "eval_max_cells", json_integer(e->max_cells)));
  PetscCall(CsJSONSet(root, "eval_pca_components", json_integer(e->pca_k)));
  PetscCall(StringArray(CS_NMETRICS, MetricName, e, &arr));
  PetscCall(CsJSONSet(root, "metrics", arr));
  PetscCall(CsJSONSet(root, "higher_is_better", obj = json_object()));
  for (PetscInt k = 0; k < CS_NMETRICS; k++) PetscCall(CsJSONSet(obj, CsMetricNames[k], json_boolean(CsMetricHigherBetter[k])));
  PetscCall(StringArray(e->nmodels, ModelName, e, &arr));
  PetscCall(CsJSONSet(root, "models", arr));
  PetscCall(CsJSONSet(root, "baselines", arr = json_array()));
  for (PetscInt i = 0; i < e->nmodels; i++)
    if (e->models[i].baseline) PetscCall(CsJSONAppend(arr, json_string(e->models[i].name)));
  PetscCall(CsJSONSet(root, "predictions", obj = json_object()));
  for (PetscInt i = 0; i < e->nmodels; i++) PetscCall(CsJSONSet(obj, e->models[i].name, json_string(e->models[i].path)));
  PetscCall(CsJSONSet(root, "aggregates", aggs = json_object()));
  PetscCall(CsJSONSet(root, "groups", groups = json_object()));
  for (PetscInt i = 0; i < e->nmodels; i++) {
    const CsEvalModel *m = &e->models[i];
    PetscCall(CsJSONSet(aggs, m->name, obj = json_object()));
    PetscCall(SetMetrics(obj, m->agg));
    PetscCall(CsJSONSet(groups, m->name, arr = json_array()));
    for (PetscInt t = 0; t < e->ntest; t++) {
      PetscCall(CsJSONAppend(arr, obj = json_object()));
      PetscCall(CsJSONSet(obj, "condition", json_string(GroupCondition(e, t))));
      PetscCall(CsJSONSet(obj, "dose", json_string(GroupDose(e, t))));
      PetscCall(CsJSONSet(obj, "context", json_string(GroupContext(e, t))));
      PetscCall(CsJSONSet(obj, "n_true", json_integer(e->nT[t])));
      PetscCall(CsJSONSet(obj, "n_pred", json_integer(m->npred[t])));
      PetscCall(CsJSONSet(obj, "n_control", json_integer(e->nC[t])));
      PetscCall(SetMetrics(obj, m->values + (size_t)t * CS_NMETRICS));
    }
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode JSONBody(void *ctx, FILE *fp)
{
  json_t        *root = json_object();
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  PetscCheck(root, PETSC_COMM_SELF, PETSC_ERR_MEM, "out of memory");
  ierr = JSONTree((CsEvaluator)ctx, root);
  if (!ierr) ierr = CsJSONDump(root, fp);
  json_decref(root);
  PetscCall(ierr);
  PetscFunctionReturn(0);
}

static PetscErrorCode CSVBody(void *ctx, FILE *fp)
{
  CsEvaluator e = (CsEvaluator)ctx;

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

static PetscErrorCode MarkdownBody(void *ctx, FILE *fp)
{
  CsEvaluator e = (CsEvaluator)ctx;
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
  fprintf(fp, " Rows marked (baseline) are the baselines every model is read against (`control` predicts no change,"
              " `additive` adds the mean shifts of the single perturbations to the controls). A model is worth reading"
              " where it beats them.\n\n");

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
    fprintf(fp, "| %s%s |", e->models[i].name, e->models[i].baseline ? " (baseline)" : "");
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
  PetscCall(CsWriteTextRank0(e->comm, path, JSONBody, e));
  PetscFunctionReturn(0);
}

PetscErrorCode CsEvalWriteCSV(CsEvaluator e, const char path[])
{
  PetscFunctionBeginUser;
  PetscCall(CsWriteTextRank0(e->comm, path, CSVBody, e));
  PetscFunctionReturn(0);
}

PetscErrorCode CsEvalWriteMarkdown(CsEvaluator e, const char path[])
{
  PetscFunctionBeginUser;
  PetscCall(CsWriteTextRank0(e->comm, path, MarkdownBody, e));
  PetscFunctionReturn(0);
}
