/* CsSplit: train / valid / test roles of the groups. See include/cellshift/split.h. */
#include <cellshift/split.h>
#include <cellshift/json.h>
#include <cellshift/rng.h>
#include <math.h>

const char *const CsRoles[] = {"train", "valid", "test", NULL};
static const char *const SplitTypes[] = {"random", "combo", "context", "explicit", "simulation", NULL};
static const char *const Validations[] = {"auto", "cells", "groups", NULL};

PetscErrorCode CsSplitCreate(MPI_Comm comm, CsSplit *out)
{
  CsSplit s;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&s));
  s->comm = comm;
  PetscCall(PetscStrncpy(s->type, "random", sizeof(s->type)));
  PetscCall(PetscStrncpy(s->validation, "auto", sizeof(s->validation)));
  s->test_fraction  = 0.2;
  s->valid_fraction = 0.1;
  s->data_fraction  = 1;
  *out              = s;
  PetscFunctionReturn(0);
}

PetscErrorCode CsSplitSetFromOptions(CsSplit s)
{
  PetscBool set = PETSC_FALSE, tset = PETSC_FALSE;
  PetscInt  t = 0, v = 0;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; SplitTypes[i]; i++)
    if (!strcmp(SplitTypes[i], s->type)) t = i;
  for (PetscInt i = 0; Validations[i]; i++)
    if (!strcmp(Validations[i], s->validation)) v = i;
  PetscOptionsBegin(s->comm, NULL, "Train / valid / test split", "CsSplit");
  PetscCall(PetscOptionsEList("-split", "How groups are held out", "CsSplitSetFromOptions", SplitTypes, 5, SplitTypes[t], &t, &set));
  PetscCall(PetscOptionsInt("-split_seed", "Seed of the random assignment", "CsSplitSetFromOptions", s->seed, &s->seed, NULL));
  PetscCall(PetscOptionsReal("-test_fraction", "Fraction of candidate groups held out for test", "CsSplitSetFromOptions",
                             s->test_fraction, &s->test_fraction, NULL));
  PetscCall(PetscOptionsReal("-valid_fraction", "Fraction of candidate groups held out for validation (-validation groups)",
                             "CsSplitSetFromOptions", s->valid_fraction, &s->valid_fraction, NULL));
  PetscCall(PetscOptionsEList("-validation",
                              "Validate on whole groups, or on a fraction of the training cells (auto: cells for explicit and context splits and "
                              "when fewer than 2 valid groups would be drawn)",
                              "CsSplitSetFromOptions", Validations, 3, Validations[v], &v, NULL));
  PetscCall(PetscOptionsString("-holdout_context", "Context whose perturbed groups are all test (-split context)",
                               "CsSplitSetFromOptions", s->holdout_context, s->holdout_context, sizeof(s->holdout_context), NULL));
  PetscCall(PetscOptionsString("-test_conditions", "Test groups, comma-separated condition[@context] (-split explicit)",
                               "CsSplitSetFromOptions", s->test_conditions, s->test_conditions, sizeof(s->test_conditions), &tset));
  PetscCall(PetscOptionsString("-split_file", "split.json of an earlier run to reuse", "CsSplitSetFromOptions", s->file, s->file,
                               sizeof(s->file), NULL));
  PetscCall(PetscOptionsReal("-data_fraction", "Keep this fraction of the cells of every perturbed train and valid group (seeded by -split_seed)",
                             "CsSplitSubsample", s->data_fraction, &s->data_fraction, NULL));
  PetscCall(PetscOptionsInt("-cells_per_group", "Keep at most this many cells of every perturbed train and valid group (0 = all)",
                            "CsSplitSubsample", s->cells_per_group, &s->cells_per_group, NULL));
  PetscCall(PetscOptionsInt("-max_perturbations", "Train on at most this many perturbed conditions, a seeded subset (0 = all)", "CsSplitSubsample",
                            s->max_perturbations, &s->max_perturbations, NULL));
  PetscOptionsEnd();
  CsCheckAll(s->comm, s->data_fraction > 0 && s->data_fraction <= 1, "-data_fraction %g: give a fraction in (0, 1]", (double)s->data_fraction);
  CsCheckAll(s->comm, s->max_perturbations >= 0, "-max_perturbations %" PetscInt_FMT ": give a number of conditions >= 1 (0 = all)", s->max_perturbations);
  CsCheckAll(s->comm, s->cells_per_group >= 0, "-cells_per_group %" PetscInt_FMT ": give a number of cells >= 1 (0 = all)", s->cells_per_group);
  if (tset) {
    const char *full = NULL;
    PetscCall(PetscOptionsFindPair(NULL, NULL, "-test_conditions", &full, NULL));
    CsCheckAll(s->comm, !full || strlen(full) < sizeof(s->test_conditions),
               "-test_conditions is longer than %zu characters: give the test groups in a -split_file instead", sizeof(s->test_conditions) - 1);
  }
  if (tset && !set) t = 3; /* -test_conditions alone implies an explicit split */
  PetscCall(PetscStrncpy(s->type, SplitTypes[t], sizeof(s->type)));
  PetscCall(PetscStrncpy(s->validation, Validations[v], sizeof(s->validation)));
  CsCheckAll(s->comm, s->test_fraction >= 0 && s->valid_fraction >= 0 && s->test_fraction + s->valid_fraction <= 1,
             "-test_fraction (%g) and -valid_fraction (%g) must be non-negative and sum to at most 1", (double)s->test_fraction,
             (double)s->valid_fraction);
  PetscFunctionReturn(0);
}

static uint64_t Fnv1a(uint64_t h, const char *s)
{
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

/* The group's identity: the split of a group depends on its name ("condition<tab>dose<tab>context") and the
   seed only. */
static uint64_t GroupHash(CsDesign d, PetscInt g)
{
  const CsCondition *c = &d->conds[d->groups[g].cond];
  uint64_t           h = Fnv1a(1469598103934665603ull, c->name);

  h = Fnv1a(Fnv1a(h, "\t"), c->dose);
  return Fnv1a(Fnv1a(h, "\t"), d->contexts[d->groups[g].ctx]);
}

typedef struct {
  double   u;
  PetscInt g;
} Draw;

static int CmpDraw(const void *a, const void *b)
{
  const Draw *x = a, *y = b;
  return x->u < y->u ? -1 : x->u > y->u ? 1 : (x->g > y->g) - (x->g < y->g);
}

/* Whether -validation draws valid groups, given how many the fraction would draw (see split.h). */
static PetscBool ValidByGroups(CsSplit s, PetscInt nvalid)
{
  if (!strcmp(s->validation, "groups")) return PETSC_TRUE;
  if (!strcmp(s->validation, "cells")) return PETSC_FALSE;
  return (PetscBool)((!strcmp(s->type, "random") || !strcmp(s->type, "combo") || !strcmp(s->type, "simulation")) && nvalid >= 2);
}

/* Among the candidate groups, a seeded shuffle decides: the first ntest go to test (if totest), the next nvalid to
   valid (when validation is on groups), the rest stay train. */
static PetscErrorCode Assign(CsSplit s, CsDesign d, const PetscBool *cand, PetscBool totest)
{
  Draw    *dr;
  PetscInt n = 0, ntest, nvalid;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(d->ngroups + 1, &dr));
  for (PetscInt g = 0; g < d->ngroups; g++) {
    if (!cand[g]) continue;
    dr[n].u   = CsRngUniform((uint64_t)s->seed, CS_STREAM_SPLIT, GroupHash(d, g), 0);
    dr[n++].g = g;
  }
  qsort(dr, (size_t)n, sizeof(Draw), CmpDraw);
  ntest  = totest ? (PetscInt)floor(s->test_fraction * n + 0.5) : 0;
  nvalid = (PetscInt)floor(s->valid_fraction * n + 0.5);
  if (totest && ntest == 0 && s->test_fraction > 0 && n > 0) ntest = 1;
  if (ntest + nvalid > n) nvalid = n - ntest;
  s->valid_groups = ValidByGroups(s, nvalid);
  if (!s->valid_groups) nvalid = 0;
  for (PetscInt i = 0; i < n; i++) s->role[dr[i].g] = i < ntest ? CS_ROLE_TEST : i < ntest + nvalid ? CS_ROLE_VALID : CS_ROLE_TRAIN;
  PetscCall(PetscFree(dr));
  PetscFunctionReturn(0);
}

static PetscErrorCode Explicit(CsSplit s, CsDesign d)
{
  PetscInt n;
  char   **items;

  PetscFunctionBeginUser;
  PetscCall(CsStrSplit(s->test_conditions, ",", &n, &items));
  CsCheckAll(s->comm, n > 0, "-test_conditions lists no condition");
  for (PetscInt i = 0; i < n; i++) {
    char     *at = strrchr(items[i], '@');
    PetscInt  cond, ctx = -1, hits = 0;
    if (at) {
      *at = 0;
      ctx = CsDesignFindContext(d, at + 1);
      CsCheckAll(s->comm, ctx >= 0, "-test_conditions: unknown context '%s'", at + 1);
    }
    PetscCall(CsDesignFindCondition(d, items[i], NULL, &cond));
    CsCheckAll(s->comm, cond >= 0, "-test_conditions: condition '%s' has no cells", items[i]);
    CsCheckAll(s->comm, d->conds[cond].natoms > 0, "-test_conditions: '%s' is the control; control cells are never test groups", items[i]);
    for (PetscInt g = 0; g < d->ngroups; g++)
      if (d->groups[g].cond == cond && (ctx < 0 || d->groups[g].ctx == ctx)) s->role[g] = CS_ROLE_TEST, hits++;
    CsCheckAll(s->comm, hits > 0, "-test_conditions: condition '%s' has no cells in context '%s'", items[i], at ? at + 1 : "");
  }
  PetscCall(CsStrArrayDestroy(n, &items));
  PetscFunctionReturn(0);
}

/* GEARS' simulation split. The atoms with a single-atom group are drawn with the seed (by name, so the draw does not
   depend on the other atoms' order); the first round(test_fraction n) are unseen: their single-atom groups are
   test, the other atoms' are train. A combination is test unless every atom of it is seen alone in training; of
   those, -test_fraction go to test and -valid_fraction to valid as in the combo split. */
static PetscErrorCode Simulation(CsSplit s, CsDesign d)
{
  Draw      *dr;
  PetscBool *single, *seen, *cand;
  PetscInt   n = 0, nunseen;

  PetscFunctionBeginUser;
  PetscCall(PetscCalloc3(d->natoms + 1, &single, d->natoms + 1, &seen, d->ngroups + 1, &cand));
  PetscCall(PetscMalloc1(d->natoms + 1, &dr));
  for (PetscInt g = 0; g < d->ngroups; g++)
    if (d->conds[d->groups[g].cond].natoms == 1) single[d->conds[d->groups[g].cond].atoms[0]] = PETSC_TRUE;
  for (PetscInt a = 0; a < d->natoms; a++) {
    if (!single[a]) continue;
    dr[n].u   = CsRngUniform((uint64_t)s->seed, CS_STREAM_SPLIT, Fnv1a(Fnv1a(1469598103934665603ull, "atom\t"), d->atoms[a]), 1);
    dr[n++].g = a;
  }
  qsort(dr, (size_t)n, sizeof(Draw), CmpDraw);
  nunseen = (PetscInt)floor(s->test_fraction * n + 0.5);
  if (nunseen == 0 && s->test_fraction > 0 && n > 0) nunseen = 1;
  for (PetscInt i = nunseen; i < n; i++) seen[dr[i].g] = PETSC_TRUE;
  for (PetscInt g = 0; g < d->ngroups; g++) {
    const CsCondition *c = &d->conds[d->groups[g].cond];
    PetscInt           k = 0;
    if (!c->natoms) continue;
    for (PetscInt i = 0; i < c->natoms; i++) k += seen[c->atoms[i]] ? 1 : 0;
    if (c->natoms == 1) s->role[g] = k ? CS_ROLE_TRAIN : CS_ROLE_TEST;
    else if (k < c->natoms) s->role[g] = CS_ROLE_TEST;
    else cand[g] = PETSC_TRUE;
  }
  PetscCall(Assign(s, d, cand, PETSC_TRUE));
  PetscCall(PetscFree(dr));
  PetscCall(PetscFree3(single, seen, cand));
  PetscFunctionReturn(0);
}

/* The category of every group from the final roles: an atom is seen when it has a single-atom train group in some
   context. "control"; "seen_single" / "unseen_single"; "combo_seen<k>" for two atoms; "combo<n>_seen<k>" for n > 2. */
static PetscErrorCode SetCategories(CsSplit s, CsDesign d)
{
  PetscBool *seen;

  PetscFunctionBeginUser;
  PetscCall(PetscCalloc1(d->natoms + 1, &seen));
  PetscCall(PetscFree(s->category));
  PetscCall(PetscMalloc1(d->ngroups + 1, &s->category));
  for (PetscInt g = 0; g < d->ngroups; g++)
    if (s->role[g] == CS_ROLE_TRAIN && d->conds[d->groups[g].cond].natoms == 1) seen[d->conds[d->groups[g].cond].atoms[0]] = PETSC_TRUE;
  for (PetscInt g = 0; g < d->ngroups; g++) {
    const CsCondition *c = &d->conds[d->groups[g].cond];
    PetscInt           k = 0;
    for (PetscInt i = 0; i < c->natoms; i++) k += seen[c->atoms[i]] ? 1 : 0;
    if (!c->natoms) PetscCall(PetscStrncpy(s->category[g], "control", sizeof(s->category[g])));
    else if (c->natoms == 1) PetscCall(PetscStrncpy(s->category[g], k ? "seen_single" : "unseen_single", sizeof(s->category[g])));
    else if (c->natoms == 2) PetscCall(PetscSNPrintf(s->category[g], sizeof(s->category[g]), "combo_seen%" PetscInt_FMT, k));
    else PetscCall(PetscSNPrintf(s->category[g], sizeof(s->category[g]), "combo%" PetscInt_FMT "_seen%" PetscInt_FMT, c->natoms, k));
  }
  PetscCall(PetscFree(seen));
  PetscFunctionReturn(0);
}

/* A string member of a JSON object, or NULL. */
static const char *MemberString(const json_t *obj, const char key[])
{
  const json_t *v = json_object_get(obj, key);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

static PetscErrorCode Load(CsSplit s, CsDesign d)
{
  json_t        *root = NULL, *groups;
  PetscBool     *seen;
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  ierr = CsJSONLoad(s->file, &root); /* every rank reads the small file itself */
  PetscCall(CsAgreeCode(s->comm, ierr, "cannot read -split_file"));
  groups = json_object_get(root, "groups");
  CsCheckAll(s->comm, json_is_array(groups), "%s has no \"groups\" list: not a cellshift split.json", s->file);
  PetscCall(PetscCalloc1(d->ngroups + 1, &seen));
  for (size_t i = 0; i < json_array_size(groups); i++) {
    const json_t *item = json_array_get(groups, i);
    const char   *c = MemberString(item, "condition"), *x = MemberString(item, "context"), *r = MemberString(item, "role");
    PetscInt      cond = -1, ctx, g = -1, role = -1;
    CsCheckAll(s->comm, c && x && r, "%s: group %zu lacks condition, context or role", s->file, i);
    PetscCall(CsDesignFindCondition(d, c, MemberString(item, "dose"), &cond));
    ctx = CsDesignFindContext(d, x);
    if (cond >= 0 && ctx >= 0) g = CsDesignFindGroup(d, cond, ctx);
    CsCheckAll(s->comm, g >= 0, "%s names group %s@%s, which has no cells in this data", s->file, c, x);
    for (PetscInt k = 0; CsRoles[k]; k++)
      if (!strcmp(CsRoles[k], r)) role = k;
    CsCheckAll(s->comm, role >= 0, "%s: unknown role '%s'", s->file, r);
    CsCheckAll(s->comm, !d->groups[g].control || role == CS_ROLE_TRAIN, "%s: control group %s@%s must be train", s->file, c, x);
    CsCheckAll(s->comm, !seen[g] || s->role[g] == (CsRole)role, "%s lists group %s@%s twice, as %s and as %s", s->file, c, x,
               CsRoles[s->role[g]], CsRoles[role]);
    s->role[g] = (CsRole)role;
    seen[g]    = PETSC_TRUE;
  }
  for (PetscInt g = 0; g < d->ngroups; g++) {
    char name[1024];
    PetscCall(CsDesignGroupName(d, g, name, sizeof(name)));
    CsCheckAll(s->comm, seen[g], "%s does not list group %s of this data: it was made for other data or options", s->file, name);
  }
  PetscCall(PetscFree(seen));
  json_decref(root);
  PetscFunctionReturn(0);
}

/* The candidate groups of each kind of split (see split.h); context and explicit splits set their test groups. */
static PetscErrorCode Candidates(CsSplit s, CsDesign d, PetscBool *cand, PetscBool *totest)
{
  PetscInt ncand = 0;

  PetscFunctionBeginUser;
  *totest = PETSC_TRUE;
  if (!strcmp(s->type, "random")) {
    for (PetscInt g = 0; g < d->ngroups; g++) ncand += cand[g] = !d->groups[g].control;
    CsCheckAll(s->comm, ncand > 0, "-split random: the data have no perturbed group to hold out (only control cells)");
  } else if (!strcmp(s->type, "combo")) {
    for (PetscInt g = 0; g < d->ngroups; g++) ncand += cand[g] = d->conds[d->groups[g].cond].natoms >= 2;
    CsCheckAll(s->comm, ncand > 0,
               "-split combo: no condition of the cells kept (after -obs_subset, if given) combines two or more atoms joined by "
               "-combo_delimiter '%s' (%" PetscInt_FMT " conditions, e.g. %s)",
               d->delimiter, d->ncond, d->ncond > 1 ? d->conds[d->conds[0].natoms ? 0 : 1].name : d->conds[0].name);
  } else if (!strcmp(s->type, "context")) {
    PetscInt hc = CsDesignFindContext(d, s->holdout_context), ntest = 0;
    CsCheckAll(s->comm, s->holdout_context[0], "-split context needs -holdout_context NAME");
    CsCheckAll(s->comm, hc >= 0, "-holdout_context: unknown context '%s'", s->holdout_context);
    for (PetscInt g = 0; g < d->ngroups; g++) {
      if (d->groups[g].control) continue;
      if (d->groups[g].ctx == hc) s->role[g] = CS_ROLE_TEST, ntest++;
      else cand[g] = PETSC_TRUE;
    }
    CsCheckAll(s->comm, ntest > 0, "-holdout_context %s has only control cells: there is no perturbed group to predict", s->holdout_context);
    *totest = PETSC_FALSE;
  } else {
    CsCheckAll(s->comm, s->test_conditions[0], "-split explicit needs -test_conditions");
    PetscCall(Explicit(s, d));
    for (PetscInt g = 0; g < d->ngroups; g++) cand[g] = !d->groups[g].control && s->role[g] != CS_ROLE_TEST;
    *totest = PETSC_FALSE;
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode CountRoles(CsSplit s, CsDesign d)
{
  PetscFunctionBeginUser;
  s->ntest = s->nvalid = s->ntrain = 0;
  for (PetscInt g = 0; g < d->ngroups; g++) {
    s->ntest += s->role[g] == CS_ROLE_TEST;
    s->nvalid += s->role[g] == CS_ROLE_VALID;
    s->ntrain += s->role[g] == CS_ROLE_TRAIN;
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsSplitSetUp(CsSplit s, CsDesign d)
{
  PetscBool *cand, totest;

  PetscFunctionBeginUser;
  if (s->setup) PetscFunctionReturn(0);
  PetscCall(PetscLogEventBegin(CS_EVENT_SPLIT, 0, 0, 0, 0));
  s->ngroups = d->ngroups;
  PetscCall(PetscCalloc1(d->ngroups + 1, &s->role));
  PetscCall(PetscCalloc1(d->ngroups + 1, &cand));
  if (s->file[0]) PetscCall(Load(s, d));
  else if (!strcmp(s->type, "simulation")) PetscCall(Simulation(s, d));
  else {
    PetscCall(Candidates(s, d, cand, &totest));
    PetscCall(Assign(s, d, cand, totest));
  }
  PetscCall(SetCategories(s, d));
  PetscCall(CountRoles(s, d));
  if (s->file[0]) s->valid_groups = (PetscBool)(s->nvalid > 0);
  CsCheckAll(s->comm, s->ntest > 0 || !s->file[0], "%s lists no test group (every group is train or valid)", s->file);
  CsCheckAll(s->comm, s->ntest > 0, "-test_fraction %.6g holds out no group of the %s split: give a positive fraction", (double)s->test_fraction, s->type);
  for (PetscInt g = 0; g < d->ngroups; g++) {
    char name[1024];
    if (s->role[g] != CS_ROLE_TEST) continue;
    PetscCall(CsDesignGroupName(d, g, name, sizeof(name)));
    CsCheckAll(s->comm, d->groups[g].ctrl >= 0, "test group %s has no control cells in its context to predict from", name);
  }
  PetscCall(PetscFree(cand));
  PetscCall(PetscLogEventEnd(CS_EVENT_SPLIT, 0, 0, 0, 0));
  s->setup = PETSC_TRUE;
  PetscFunctionReturn(0);
}

typedef struct {
  CsSplit  s;
  CsDesign d;
} SplitCtx;

static PetscErrorCode SplitTree(CsSplit s, CsDesign d, json_t *root)
{
  json_t *groups, *g;

  PetscFunctionBeginUser;
  PetscCall(CsJSONSet(root, "cellshift_split", json_integer(1)));
  PetscCall(CsJSONSet(root, "type", json_string(s->file[0] ? "file" : s->type)));
  PetscCall(CsJSONSet(root, "seed", json_integer(s->seed)));
  PetscCall(CsJSONSet(root, "test_fraction", json_real(s->test_fraction)));
  PetscCall(CsJSONSet(root, "valid_fraction", json_real(s->valid_fraction)));
  PetscCall(CsJSONSet(root, "validation", json_string(s->valid_groups ? "groups" : "cells")));
  PetscCall(CsJSONSet(root, "validation_rule",
                      json_string(s->valid_groups ? "valid groups: the learned models train on the train groups and validate (early stopping) on "
                                                    "the valid groups; control, additive and mean, which have nothing to tune, fit on train and valid"
                                                  : "no valid group: the learned models validate on a seeded fraction (-<model>_valid_cells) of "
                                                    "the cells of the train groups; every other model fits on all train groups")));
  PetscCall(CsJSONSet(root, "holdout_context", json_string(s->holdout_context)));
  PetscCall(CsJSONSet(root, "test_conditions", json_string(s->test_conditions)));
  PetscCall(CsJSONSet(root, "perturbation_key", json_string(d->pert_key)));
  PetscCall(CsJSONSet(root, "context_key", json_string(d->context_key)));
  PetscCall(CsJSONSet(root, "dose_key", json_string(d->dose_key)));
  PetscCall(CsJSONSet(root, "control_value", json_string(d->control_value)));
  PetscCall(CsJSONSet(root, "groups", groups = json_array()));
  for (PetscInt k = 0; k < d->ngroups; k++) {
    const CsCondition *c = &d->conds[d->groups[k].cond];
    PetscCall(CsJSONAppend(groups, g = json_object()));
    PetscCall(CsJSONSet(g, "condition", json_string(c->name)));
    PetscCall(CsJSONSet(g, "dose", json_string(c->dose)));
    PetscCall(CsJSONSet(g, "context", json_string(d->contexts[d->groups[k].ctx])));
    PetscCall(CsJSONSet(g, "natoms", json_integer(c->natoms)));
    PetscCall(CsJSONSet(g, "n_cells", json_integer(d->groups[k].ncells)));
    PetscCall(CsJSONSet(g, "role", json_string(CsRoles[s->role[k]])));
    PetscCall(CsJSONSet(g, "category", json_string(s->category[k])));
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode SplitBody(void *ctx, FILE *fp)
{
  SplitCtx      *c    = (SplitCtx *)ctx;
  json_t        *root = json_object();
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  PetscCheck(root, PETSC_COMM_SELF, PETSC_ERR_MEM, "out of memory");
  ierr = SplitTree(c->s, c->d, root);
  if (!ierr) ierr = CsJSONDump(root, fp);
  json_decref(root);
  PetscCall(ierr);
  PetscFunctionReturn(0);
}

PetscErrorCode CsSplitSave(CsSplit s, CsDesign d, const char path[])
{
  SplitCtx c = {s, d};

  PetscFunctionBeginUser;
  PetscCall(CsWriteTextRank0(s->comm, path, SplitBody, &c));
  PetscFunctionReturn(0);
}

/* "unseen_single 4, combo_seen0 3, ...": the test groups per category, categories in order of first appearance. */
static PetscErrorCode ViewTestCategories(CsSplit s, PetscViewer v)
{
  PetscFunctionBeginUser;
  PetscCall(PetscViewerASCIIPrintf(v, "  test groups by category:"));
  for (PetscInt g = 0; g < s->ngroups; g++) {
    PetscInt n = 0, first = 1;
    if (s->role[g] != CS_ROLE_TEST) continue;
    for (PetscInt h = 0; h < g && first; h++) first = !(s->role[h] == CS_ROLE_TEST && !strcmp(s->category[h], s->category[g]));
    if (!first) continue;
    for (PetscInt h = g; h < s->ngroups; h++) n += s->role[h] == CS_ROLE_TEST && !strcmp(s->category[h], s->category[g]);
    PetscCall(PetscViewerASCIIPrintf(v, " %s %" PetscInt_FMT, s->category[g], n));
  }
  PetscCall(PetscViewerASCIIPrintf(v, "\n"));
  PetscFunctionReturn(0);
}

PetscErrorCode CsSplitView(CsSplit s, CsDesign d, PetscViewer v)
{
  PetscFunctionBeginUser;
  PetscCall(PetscViewerASCIIPrintf(v, "CsSplit %s%s%s: %" PetscInt_FMT " test, %" PetscInt_FMT " valid, %" PetscInt_FMT " train groups; %s\n",
                                   s->file[0] ? "from " : "", s->file[0] ? s->file : s->type,
                                   s->holdout_context[0] && !strcmp(s->type, "context") ? " (holdout)" : "", s->ntest, s->nvalid, s->ntrain,
                                   s->valid_groups ? "validation on the valid groups" : "validation on a fraction of the training cells"));
  if (s->setup) PetscCall(ViewTestCategories(s, v));
  PetscFunctionReturn(0);
}

PetscErrorCode CsSplitSubsample(CsSplit s, CsDesign d, PetscBool **keep, PetscBool *any)
{
  PetscInt  *seen, *nkeep, drop = 0;
  PetscBool *use;

  PetscFunctionBeginUser;
  PetscCheck(s->setup && d->setup, s->comm, PETSC_ERR_ORDER, "CsSplitSubsample needs the split and the design set up");
  *keep = NULL, *any = PETSC_FALSE;
  if (s->data_fraction >= 1 && s->cells_per_group <= 0 && s->max_perturbations <= 0) PetscFunctionReturn(0);
  PetscCall(PetscCalloc2(d->ngroups, &seen, d->ngroups, &nkeep));
  PetscCall(PetscCalloc1(d->ncond + 1, &use));
  { /* -max_perturbations: of the perturbed conditions with a train or valid group, a seeded k (by condition index) */
    PetscInt ncand = 0, *rank;
    CsPerm   perm;
    PetscCall(PetscMalloc1(d->ncond + 1, &rank));
    for (PetscInt c = 0; c < d->ncond; c++) rank[c] = -1;
    for (PetscInt g = 0; g < d->ngroups; g++) {
      PetscInt c = d->groups[g].cond;
      if (!d->groups[g].control && s->role[g] != CS_ROLE_TEST && rank[c] < 0) rank[c] = 0;
    }
    for (PetscInt c = 0; c < d->ncond; c++)
      if (rank[c] == 0) rank[c] = ncand++ + 1; /* 1-based place among the candidates */
    CsPermInit(&perm, (uint64_t)PetscMax(ncand, 1), (uint64_t)s->seed, CS_STREAM_SAMPLE, UINT64_C(1) << 40);
    for (PetscInt c = 0; c < d->ncond; c++)
      use[c] = (PetscBool)(rank[c] < 0 || s->max_perturbations <= 0 || CsPermApply(&perm, (uint64_t)(rank[c] - 1)) < (uint64_t)s->max_perturbations);
    PetscCall(PetscFree(rank));
  }
  PetscCall(PetscMalloc1(d->nlocal + 1, keep));
  for (PetscInt g = 0; g < d->ngroups; g++) {
    PetscInt n = d->groups[g].ncells, k = n;
    if (s->role[g] != CS_ROLE_TEST && !d->groups[g].control) {
      k = (PetscInt)ceil(s->data_fraction * (double)n - 1e-9 * (double)n); /* at least one cell of a group with cells */
      k = PetscMax(PetscMin(k, n), n > 0 ? 1 : 0);
      if (s->cells_per_group > 0) k = PetscMin(k, s->cells_per_group);
      if (!use[d->groups[g].cond]) k = 0; /* a training perturbation left out: the group goes */
    }
    nkeep[g] = k;
  }
  for (PetscInt i = 0; i < d->nlocal; i++) {
    PetscInt g = d->cell_group[i], w;
    CsPerm   perm;
    (*keep)[i] = PETSC_TRUE;
    if (g < 0 || nkeep[g] == d->groups[g].ncells) continue;
    w = d->group_rstart[g] + seen[g]++; /* the cell's place in its group, in file order: the same for any rank count */
    CsPermInit(&perm, (uint64_t)d->groups[g].ncells, (uint64_t)s->seed, CS_STREAM_SAMPLE, (uint64_t)g);
    (*keep)[i] = CsPermApply(&perm, (uint64_t)w) < (uint64_t)nkeep[g] ? PETSC_TRUE : PETSC_FALSE;
    drop += !(*keep)[i];
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &drop, 1, MPIU_INT, MPI_SUM, s->comm));
  *any = drop ? PETSC_TRUE : PETSC_FALSE;
  PetscCall(PetscFree2(seen, nkeep));
  PetscCall(PetscFree(use));
  if (!*any) PetscCall(PetscFree(*keep));
  PetscFunctionReturn(0);
}

PetscErrorCode CsSplitSetUpRoles(CsSplit s, CsDesign d, const CsRole role[], PetscBool valid_groups)
{
  PetscFunctionBeginUser;
  PetscCheck(!s->setup, s->comm, PETSC_ERR_ORDER, "CsSplitSetUpRoles on a split already set up");
  s->ngroups = d->ngroups;
  PetscCall(PetscMalloc1(d->ngroups + 1, &s->role));
  PetscCall(PetscArraycpy(s->role, role, d->ngroups));
  PetscCall(SetCategories(s, d));
  PetscCall(CountRoles(s, d));
  s->valid_groups = (PetscBool)(valid_groups && s->nvalid > 0);
  CsCheckAll(s->comm, s->ntest > 0, "the split has no test group left");
  s->setup = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode CsSplitDestroy(CsSplit *s)
{
  PetscFunctionBeginUser;
  if (!*s) PetscFunctionReturn(0);
  PetscCall(PetscFree((*s)->role));
  PetscCall(PetscFree((*s)->category));
  PetscCall(PetscFree(*s));
  PetscFunctionReturn(0);
}
