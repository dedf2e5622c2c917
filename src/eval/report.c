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
static const char *GroupCategory(CsEvaluator e, PetscInt t) { return e->catname[e->cat[t]]; }

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
static const char *CategoryName(CsEvaluator e, PetscInt c) { return e->catname[c]; }

/* The aggregates of model i over all test groups (cat < 0) or in category cat, with its vcc_score. */
static PetscErrorCode SetAggregates(CsEvaluator e, json_t *obj, PetscInt i, PetscInt cat)
{
  const CsEvalModel *m = &e->models[i];

  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < CS_NMETRICS; k++)
    PetscCall(CsJSONSet(obj, CsMetricNames[k], CsJSONNumber(cat < 0 ? m->agg[k] : m->cagg[(size_t)cat * CS_NMETRICS + k])));
  PetscCall(CsJSONSet(obj, "vcc_score", CsJSONNumber(CsEvalVccScore(e, m, cat))));
  PetscFunctionReturn(0);
}

/* The summary of the genetic-interaction analysis: how many doubles qualify, and the precision at 10 per type. */
static PetscErrorCode GITree(CsEvaluator e, json_t *gi)
{
  json_t *prec, *obj, *ty;

  PetscFunctionBeginUser;
  PetscCall(CsJSONSet(gi, "test_doubles", json_integer(e->ndoubles)));
  PetscCall(CsJSONSet(gi, "qualifying", json_integer(e->ngi)));
  PetscCall(CsJSONSet(gi, "min_mean", json_real(e->gi_min_mean)));
  PetscCall(CsJSONSet(gi, "max_pairs", json_integer(e->gi_max_pairs)));
  PetscCall(CsJSONSet(gi, "precision_at", json_integer(CS_GI_PRECISION_K)));
  PetscCall(CsJSONSet(gi, "precision", prec = json_object()));
  for (PetscInt i = 0; i < e->nmodels; i++) {
    PetscCall(CsJSONSet(prec, e->models[i].name, obj = json_object()));
    for (PetscInt y = 0; y < CS_GI_NTYPES; y++) {
      double pr, rnd;
      CsEvalGIPrecision(e, &e->models[i], (CsGIType)y, CS_GI_PRECISION_K, &pr, &rnd);
      PetscCall(CsJSONSet(obj, CsGITypeNames[y], ty = json_object()));
      PetscCall(CsJSONSet(ty, "precision", CsJSONNumber(pr)));
      PetscCall(CsJSONSet(ty, "random", CsJSONNumber(rnd)));
    }
  }
  PetscFunctionReturn(0);
}

/* metrics[k] = values[k] of one model or group, in metric order. */
static PetscErrorCode SetMetrics(json_t *obj, const double *values)
{
  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < CS_NMETRICS; k++) PetscCall(CsJSONSet(obj, CsMetricNames[k], CsJSONNumber(values[k])));
  PetscFunctionReturn(0);
}

static PetscErrorCode JSONTree(CsEvaluator e, json_t *root)
{
  json_t *arr, *obj, *aggs, *groups, *cats, *gi;

  PetscFunctionBeginUser;
  PetscCall(CsJSONSet(root, "cellshift_version", json_string(CS_VERSION)));
  PetscCall(CsJSONSet(root, "data", json_string(e->ds->path)));
  PetscCall(CsJSONSet(root, "split", json_string(e->s->type)));
  PetscCall(CsJSONSet(root, "test_groups", json_integer(e->ntest)));
  PetscCall(CsJSONSet(root, "genes", json_integer(e->G)));
  { /* the cells the models learn from: perturbed cells of the train and valid groups (controls are inputs) */
    json_int_t ntrain = 0, nctrl = 0;
    for (PetscInt g = 0; g < e->d->ngroups; g++) {
      if (e->s->role[g] == CS_ROLE_TEST) continue;
      if (e->d->groups[g].control) nctrl += e->d->groups[g].ncells;
      else ntrain += e->d->groups[g].ncells;
    }
    PetscCall(CsJSONSet(root, "n_train_cells", json_integer(ntrain)));
    PetscCall(CsJSONSet(root, "n_control_cells", json_integer(nctrl)));
  }
  PetscCall(CsJSONSet(root, "eval_max_cells", json_integer(e->max_cells)));
  PetscCall(CsJSONSet(root, "eval_pca_components", json_integer(e->pca_k)));
  PetscCall(CsJSONSet(root, "vcc_baseline", json_string(e->vcc_baseline)));
  PetscCall(StringArray(CS_NMETRICS, MetricName, e, &arr));
  PetscCall(CsJSONSet(root, "metrics", arr));
  PetscCall(CsJSONSet(root, "higher_is_better", obj = json_object()));
  for (PetscInt k = 0; k < CS_NMETRICS; k++) PetscCall(CsJSONSet(obj, CsMetricNames[k], json_boolean(CsMetricHigherBetter[k])));
  PetscCall(StringArray(e->nmodels, ModelName, e, &arr));
  PetscCall(CsJSONSet(root, "models", arr));
  PetscCall(CsJSONSet(root, "baselines", arr = json_array()));
  for (PetscInt i = 0; i < e->nmodels; i++)
    if (e->models[i].baseline) PetscCall(CsJSONAppend(arr, json_string(e->models[i].name)));
  PetscCall(CsJSONSet(root, "params", obj = json_object())); /* trained parameters, of the models that record them */
  for (PetscInt i = 0; i < e->nmodels; i++)
    if (e->models[i].params >= 0) PetscCall(CsJSONSet(obj, e->models[i].name, json_integer((json_int_t)e->models[i].params)));
  PetscCall(CsJSONSet(root, "predictions", obj = json_object()));
  for (PetscInt i = 0; i < e->nmodels; i++) PetscCall(CsJSONSet(obj, e->models[i].name, json_string(e->models[i].path)));
  PetscCall(StringArray(e->ncat, CategoryName, e, &arr));
  PetscCall(CsJSONSet(root, "categories", arr));
  PetscCall(CsJSONSet(root, "aggregates", aggs = json_object()));
  PetscCall(CsJSONSet(root, "category_aggregates", cats = json_object()));
  PetscCall(CsJSONSet(root, "groups", groups = json_object()));
  for (PetscInt i = 0; i < e->nmodels; i++) {
    const CsEvalModel *m = &e->models[i];
    json_t            *mc;
    PetscCall(CsJSONSet(aggs, m->name, obj = json_object()));
    PetscCall(SetAggregates(e, obj, i, -1));
    PetscCall(CsJSONSet(cats, m->name, mc = json_object()));
    for (PetscInt c = 0; c < e->ncat; c++) {
      PetscCall(CsJSONSet(mc, e->catname[c], obj = json_object()));
      PetscCall(SetAggregates(e, obj, i, c));
    }
    PetscCall(CsJSONSet(groups, m->name, arr = json_array()));
    for (PetscInt t = 0; t < e->ntest; t++) {
      PetscCall(CsJSONAppend(arr, obj = json_object()));
      PetscCall(CsJSONSet(obj, "condition", json_string(GroupCondition(e, t))));
      PetscCall(CsJSONSet(obj, "dose", json_string(GroupDose(e, t))));
      PetscCall(CsJSONSet(obj, "context", json_string(GroupContext(e, t))));
      PetscCall(CsJSONSet(obj, "category", json_string(GroupCategory(e, t))));
      PetscCall(CsJSONSet(obj, "n_true", json_integer(e->nT[t])));
      PetscCall(CsJSONSet(obj, "n_pred", json_integer(m->npred[t])));
      PetscCall(CsJSONSet(obj, "n_control", json_integer(e->nC[t])));
      PetscCall(SetMetrics(obj, m->values + (size_t)t * CS_NMETRICS));
    }
  }
  PetscCall(CsJSONSet(root, "genetic_interactions", gi = json_object()));
  PetscCall(GITree(e, gi));
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
  fprintf(fp, "model,condition,dose,context,category,n_true,n_pred,n_control");
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
      fputc(',', fp);
      CSVField(fp, GroupCategory(e, t));
      fprintf(fp, ",%" PetscInt_FMT ",%" PetscInt_FMT ",%" PetscInt_FMT, e->nT[t], m->npred[t], e->nC[t]);
      for (PetscInt k = 0; k < CS_NMETRICS; k++) fprintf(fp, ",%.17g", m->values[(size_t)t * CS_NMETRICS + k]);
      fprintf(fp, "\n");
    }
  PetscFunctionReturn(0);
}

static PetscErrorCode MarkdownIntro(CsEvaluator e, FILE *fp)
{
  CsDesign d         = e->d;
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
              " `additive` adds the mean shifts of the single perturbations to the controls, `mean` adds the mean shift of"
              " all training perturbations whatever the condition). A model is worth reading where it beats them.\n\n");
  PetscFunctionReturn(0);
}

/* The aggregate table over all test groups (cat < 0) or over one category; the best value as printed is bold
   (values equal to 4 decimals are equally good to the reader). */
static PetscErrorCode MarkdownTable(CsEvaluator e, FILE *fp, PetscInt cat)
{
  char best[CS_NMETRICS + 1][64];

  PetscFunctionBeginUser;
  for (PetscInt k = 0; k <= CS_NMETRICS; k++) {
    PetscBool hi = k < CS_NMETRICS ? CsMetricHigherBetter[k] : PETSC_TRUE;
    double    b  = hi ? -INFINITY : INFINITY;
    for (PetscInt i = 0; i < e->nmodels; i++) {
      const CsEvalModel *m = &e->models[i];
      double             v = k == CS_NMETRICS ? CsEvalVccScore(e, m, cat) : cat < 0 ? m->agg[k] : m->cagg[(size_t)cat * CS_NMETRICS + k];
      if (!isnan(v) && (hi ? v > b : v < b)) b = v;
    }
    snprintf(best[k], sizeof(best[k]), "%.4f", b);
  }
  fprintf(fp, "| model |");
  for (PetscInt k = 0; k < CS_NMETRICS; k++) fprintf(fp, " %s %s |", CsMetricNames[k], CsMetricHigherBetter[k] ? "↑" : "↓");
  fprintf(fp, " vcc_score ↑ |\n|---|");
  for (PetscInt k = 0; k <= CS_NMETRICS; k++) fprintf(fp, "---:|");
  fprintf(fp, "\n");
  for (PetscInt i = 0; i < e->nmodels; i++) {
    const CsEvalModel *m = &e->models[i];
    fprintf(fp, "| %s%s |", m->name, m->baseline ? " (baseline)" : "");
    for (PetscInt k = 0; k <= CS_NMETRICS; k++) {
      double x = k == CS_NMETRICS ? CsEvalVccScore(e, m, cat) : cat < 0 ? m->agg[k] : m->cagg[(size_t)cat * CS_NMETRICS + k];
      char   v[64];
      if (isnan(x)) snprintf(v, sizeof(v), "n/a");
      else snprintf(v, sizeof(v), "%.4f", x);
      fprintf(fp, e->nmodels > 1 && !strcmp(v, best[k]) ? " **%s** |" : " %s |", v);
    }
    fprintf(fp, "\n");
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode MarkdownResults(CsEvaluator e, FILE *fp)
{
  PetscFunctionBeginUser;
  fprintf(fp, "## Results (mean over %" PetscInt_FMT " test groups; best in bold)\n\n", e->ntest);
  PetscCall(MarkdownTable(e, fp, -1));
  if (e->ncat > 1)
    for (PetscInt c = 0; c < e->ncat; c++) {
      PetscInt n = 0;
      for (PetscInt t = 0; t < e->ntest; t++) n += e->cat[t] == c;
      fprintf(fp, "\n### %s (%" PetscInt_FMT " test group%s)\n\n", e->catname[c], n, n == 1 ? "" : "s");
      PetscCall(MarkdownTable(e, fp, c));
    }
  PetscFunctionReturn(0);
}

static PetscErrorCode MarkdownGroups(CsEvaluator e, FILE *fp)
{
  PetscFunctionBeginUser;
  fprintf(fp, "\n## pearson_delta per test group\n\n| group | category | n_true | n_control |");
  for (PetscInt i = 0; i < e->nmodels; i++) fprintf(fp, " %s |", e->models[i].name);
  fprintf(fp, "\n|---|---|---:|---:|");
  for (PetscInt i = 0; i < e->nmodels; i++) fprintf(fp, "---:|");
  fprintf(fp, "\n");
  for (PetscInt t = 0; t < e->ntest; t++) {
    char name[512];
    PetscCall(CsDesignGroupName(e->d, e->test[t], name, sizeof(name)));
    fprintf(fp, "| %s | %s | %" PetscInt_FMT " | %" PetscInt_FMT " |", name, GroupCategory(e, t), e->nT[t], e->nC[t]);
    for (PetscInt i = 0; i < e->nmodels; i++) fprintf(fp, " %.4f |", e->models[i].values[(size_t)t * CS_NMETRICS + CS_M_PEARSON_DELTA]);
    fprintf(fp, "\n");
  }
  fprintf(fp, "\nEvery value of every group and model is in `metrics.csv` and `metrics.json`.\n\n");
  PetscFunctionReturn(0);
}

/* "synergy, neomorphism" or "none". */
static void TypeList(const CsGIFit *f, char buf[], size_t len)
{
  buf[0] = 0;
  for (PetscInt y = 0; y < CS_GI_NTYPES; y++)
    if (f->type[y]) snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", buf[0] ? ", " : "", CsGITypeNames[y]);
  if (!buf[0]) snprintf(buf, len, "none");
}

static void FitRow(FILE *fp, const char who[], const CsGIFit *f)
{
  char types[128];
  TypeList(f, types, sizeof(types));
  fprintf(fp, "| %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %s |\n", who, f->c1, f->c2, f->magnitude, f->dominance, f->corr_fit,
          f->dcor, f->eq_contr, types);
}

static PetscErrorCode MarkdownGIPrecision(CsEvaluator e, FILE *fp)
{
  PetscFunctionBeginUser;
  if (e->ngi < 2 * CS_GI_PRECISION_K) {
    fprintf(fp, "Precision at %d of the GI types needs at least %d qualifying doubles; this test set has %" PetscInt_FMT ".\n\n",
            CS_GI_PRECISION_K, 2 * CS_GI_PRECISION_K, e->ngi);
    PetscFunctionReturn(0);
  }
  fprintf(fp, "Precision at %d: of the %d doubles each model's predictions rank most of a type, the fraction measured of that type "
              "(random: the fraction of all qualifying doubles of that type).\n\n| model |",
          CS_GI_PRECISION_K, CS_GI_PRECISION_K);
  for (PetscInt y = 0; y < CS_GI_NTYPES; y++) fprintf(fp, " %s |", CsGITypeNames[y]);
  fprintf(fp, "\n|---|");
  for (PetscInt y = 0; y < CS_GI_NTYPES; y++) fprintf(fp, "---:|");
  for (PetscInt i = 0; i <= e->nmodels; i++) {
    fprintf(fp, "\n| %s |", i < e->nmodels ? e->models[i].name : "random");
    for (PetscInt y = 0; y < CS_GI_NTYPES; y++) {
      double pr, rnd;
      CsEvalGIPrecision(e, &e->models[i < e->nmodels ? i : 0], (CsGIType)y, CS_GI_PRECISION_K, &pr, &rnd);
      fprintf(fp, " %.2f |", i < e->nmodels ? pr : rnd);
    }
  }
  fprintf(fp, "\n\n");
  PetscFunctionReturn(0);
}

static PetscErrorCode MarkdownGI(CsEvaluator e, FILE *fp)
{
  PetscFunctionBeginUser;
  fprintf(fp, "## Genetic interactions\n\n");
  fprintf(fp, "%" PetscInt_FMT " test double%s, %" PetscInt_FMT " qualif%s (both singles measured in the context). Shifts from the "
              "control mean on the genes whose control mean is at least %g; the double's shift fitted as c1 shift(A) + c2 shift(B) "
              "by Theil-Sen without intercept, measured and predicted (the singles are the measured ones in both fits). "
              "Types: synergy magnitude > 1.15, suppression magnitude < 1, neomorphism corr_fit < 0.88, redundancy dcor > 0.85, "
              "epistasis eq_contr < 0.28 (an exactly additive double, c1 = c2 = 1, has magnitude 1.41). Every fit is in `gi.csv`.\n\n",
          e->ndoubles, e->ndoubles == 1 ? "" : "s", e->ngi, e->ngi == 1 ? "ies" : "y", (double)e->gi_min_mean);
  for (PetscInt i = 0; i < e->ngi; i++) {
    char name[512];
    PetscCall(CsDesignGroupName(e->d, e->test[e->gi[i].t], name, sizeof(name)));
    fprintf(fp, "### %s (%" PetscInt_FMT " genes)\n\n| fit | c1 | c2 | magnitude | dominance | corr_fit | dcor | eq_contr | types |\n"
                "|---|---:|---:|---:|---:|---:|---:|---:|---|\n",
            name, e->gitrue[i].ngenes);
    FitRow(fp, "measured", &e->gitrue[i]);
    for (PetscInt k = 0; k < e->nmodels; k++) FitRow(fp, e->models[k].name, &e->models[k].gi[i]);
    fprintf(fp, "\n");
  }
  PetscCall(MarkdownGIPrecision(e, fp));
  PetscFunctionReturn(0);
}

static PetscErrorCode MarkdownDefinitions(CsEvaluator e, FILE *fp)
{
  PetscFunctionBeginUser;
  fprintf(fp, "## Definitions\n\n");
  fprintf(fp, "m(.) is the mean over cells of the log-normalised expression; DE genes are the genes ranked by |Welch t| of T "
              "vs C (sample variances), descending, ties by gene order, genes with t = 0 never DE.\n\n");
  fprintf(fp, "- `rmse`: sqrt(mean over genes of (m(P) - m(T))^2); `mae`: mean over genes of |m(P) - m(T)|.\n");
  fprintf(fp, "- `r2_mean_all`: pearson(m(P), m(T))^2 (scGen's convention); `r2_mean_top100_de`: the same on the top-100 DE genes.\n");
  fprintf(fp, "- `pearson_delta`: pearson(m(P) - m(C), m(T) - m(C)); `pearson_delta_top20_de`: the same on the top-20 DE genes.\n");
  fprintf(fp, "- `pearson_delta_pert` (Systema): the same against R, the mean of the training perturbations' centroids of the "
              "context, instead of m(C); `pearson_delta_pert_top20_de` on the top-20 DE genes.\n");
  fprintf(fp, "- `cosine_logfc`: cosine(l(m(P)) - l(m(C)), l(m(T)) - l(m(C))), l(v) = log2(max(v, 0) + 0.1).\n");
  fprintf(fp, "- `energy_distance`: 2 E|p - t| - E|p - p'| - E|t - t'|; `mmd_rbf`: unbiased MMD^2 with the RBF kernel whose "
              "bandwidth s^2 is the median squared distance within C u T. Both in the first %" PetscInt_FMT " principal "
              "components of C u T, each of P, T, C subsampled to at most %" PetscInt_FMT " evenly spaced cells.\n",
          e->pca_k, e->max_cells);
  fprintf(fp, "- `de_recall_top20`: |top-20 DE(P vs C) ∩ top-20 DE(T vs C)| / 20.\n");
  fprintf(fp, "- `rank_rmse` (PerturBench's rank): within a context of n test groups, for the truth of each group p, the "
              "number of other groups' predictions closer to it (rmse of means) than p's own prediction (ties count half), "
              "over n: 0 is perfect, about 0.5 no better than random; `rank_cosine_logfc`: the same with the cosine of the "
              "logFCs as similarity.\n");
  fprintf(fp, "- `centroid_accuracy` (Systema): the fraction of the other test groups of the context whose truth is farther "
              "from p's prediction than p's own truth.\n");
  fprintf(fp, "- `de_score` (VCC, cell-eval): genes tested T vs C and P vs C by a two-sided Wilcoxon rank-sum test, "
              "Benjamini-Hochberg over the group's genes; of the k true genes with q < 0.05, the fraction found among the "
              "top k predicted ones with q < 0.05, both ranked by |log2 fold change| (pdex: expm1 of the means, clipped at 20).\n");
  fprintf(fp, "- `discrimination_score` (VCC, cell-eval): 1 - r/n, r the number of test groups of the context whose true "
              "shift is closer (L1, the target gene left out) to p's predicted shift than p's own.\n");
  fprintf(fp, "- `vcc_score` (VCC): the mean of (u - b)/(1 - b) for de_score and discrimination_score and 1 - u/b for mae, "
              "each clipped at 0, b the aggregate of `%s` (the cell-mean baseline).\n",
          e->vcc_baseline);
  fprintf(fp, "- The ranks, centroid_accuracy and discrimination_score are n/a (and left out of the means) in a context with "
              "a single test group. Pearson of a constant vector and cosine of a zero vector are 0.\n\n");
  PetscFunctionReturn(0);
}

static PetscErrorCode MarkdownPlots(CsEvaluator e, FILE *fp)
{
  PetscFunctionBeginUser;
  fprintf(fp, "## Predicted vs true shifts\n\n");
  for (PetscInt i = 0; i < e->nmodels; i++) {
    char file[PETSC_MAX_PATH_LEN];
    CsEvalPlotFileName(e->models[i].name, file, sizeof(file));
    fprintf(fp, "![%s](%s)\n\n", e->models[i].name, file);
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode MarkdownBody(void *ctx, FILE *fp)
{
  CsEvaluator e = (CsEvaluator)ctx;

  PetscFunctionBeginUser;
  PetscCall(MarkdownIntro(e, fp));
  PetscCall(MarkdownResults(e, fp));
  PetscCall(MarkdownGroups(e, fp));
  if (e->ndoubles) PetscCall(MarkdownGI(e, fp));
  PetscCall(MarkdownDefinitions(e, fp));
  PetscCall(MarkdownPlots(e, fp));
  PetscFunctionReturn(0);
}

/* gi.csv: one row per fit, the measured ones (model empty) then each model's predicted ones. */
static void GIRow(FILE *fp, CsEvaluator e, const char fit[], const char model[], PetscInt i, const CsGIFit *f)
{
  PetscInt t = e->gi[i].t;
  fprintf(fp, "%s,", fit);
  CSVField(fp, model);
  fputc(',', fp);
  CSVField(fp, GroupCondition(e, t));
  fputc(',', fp);
  CSVField(fp, GroupDose(e, t));
  fputc(',', fp);
  CSVField(fp, GroupContext(e, t));
  fprintf(fp, ",%" PetscInt_FMT ",%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g", f->ngenes, f->c1, f->c2, f->magnitude, f->dominance,
          f->corr_fit, f->dcor, f->dcor_singles, f->eq_contr);
  for (PetscInt y = 0; y < CS_GI_NTYPES; y++) fprintf(fp, ",%d", f->type[y] ? 1 : 0);
  fprintf(fp, "\n");
}

static PetscErrorCode GIBody(void *ctx, FILE *fp)
{
  CsEvaluator e = (CsEvaluator)ctx;

  PetscFunctionBeginUser;
  fprintf(fp, "fit,model,condition,dose,context,genes,c1,c2,magnitude,dominance,corr_fit,dcor,dcor_singles,eq_contr");
  for (PetscInt y = 0; y < CS_GI_NTYPES; y++) fprintf(fp, ",%s", CsGITypeNames[y]);
  fprintf(fp, "\n");
  for (PetscInt i = 0; i < e->ngi; i++) GIRow(fp, e, "measured", "", i, &e->gitrue[i]);
  for (PetscInt k = 0; k < e->nmodels; k++)
    for (PetscInt i = 0; i < e->ngi; i++) GIRow(fp, e, "predicted", e->models[k].name, i, &e->models[k].gi[i]);
  PetscFunctionReturn(0);
}

PetscErrorCode CsEvalWriteGI(CsEvaluator e, const char path[])
{
  PetscFunctionBeginUser;
  PetscCall(CsWriteTextRank0(e->comm, path, GIBody, e));
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
