/* CsDesign: conditions, atoms, contexts and groups. See include/cellshift/design.h. */
#include <cellshift/design.h>
#include <math.h>

PetscErrorCode CsDesignCreate(MPI_Comm comm, CsDesign *out)
{
  CsDesign d;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&d));
  d->comm = comm;
  PetscCall(PetscStrncpy(d->pert_key, "condition", sizeof(d->pert_key)));
  PetscCall(PetscStrncpy(d->control_value, "control", sizeof(d->control_value)));
  PetscCall(PetscStrncpy(d->delimiter, "+", sizeof(d->delimiter)));
  PetscCall(PetscStrncpy(d->guide_delim, "_", sizeof(d->guide_delim)));
  *out = d;
  PetscFunctionReturn(0);
}

PetscErrorCode CsDesignSetFromOptions(CsDesign d)
{
  PetscFunctionBeginUser;
  PetscOptionsBegin(d->comm, NULL, "Experimental design", "CsDesign");
  PetscCall(PetscOptionsString("-perturbation_key", "obs column with the perturbation label", "CsDesignSetFromOptions",
                               d->pert_key, d->pert_key, sizeof(d->pert_key), NULL));
  PetscCall(PetscOptionsString("-control_value", "Label of unperturbed cells", "CsDesignSetFromOptions", d->control_value,
                               d->control_value, sizeof(d->control_value), NULL));
  PetscCall(PetscOptionsString("-context_key", "obs column with the context (cell type, line, patient); empty = one context",
                               "CsDesignSetFromOptions", d->context_key, d->context_key, sizeof(d->context_key), NULL));
  PetscCall(PetscOptionsString("-combo_delimiter", "Separator of the atoms of a combination", "CsDesignSetFromOptions",
                               d->delimiter, d->delimiter, sizeof(d->delimiter), NULL));
  PetscCall(PetscOptionsString("-dose_key", "obs column with the dose (one per atom, same delimiter); empty = no doses",
                               "CsDesignSetFromOptions", d->dose_key, d->dose_key, sizeof(d->dose_key), NULL));
  PetscCall(PetscOptionsString("-perturbation_type_key", "obs column with the perturbation type (CRISPRa, CRISPRi, drug); empty = none",
                               "CsDesignGroupTypes", d->type_key, d->type_key, sizeof(d->type_key), NULL));
  PetscCall(PetscOptionsBool("-perturbation_collapse_guides", "Atoms are guides (KLF1_1, KLF1_2): each becomes its gene (KLF1)",
                             "CsDesignSetFromOptions", d->collapse_guides, &d->collapse_guides, NULL));
  PetscCall(PetscOptionsString("-perturbation_guide_delimiter", "Separator of the guide number in a guide's name", "CsDesignSetFromOptions",
                               d->guide_delim, d->guide_delim, sizeof(d->guide_delim), NULL));
  PetscOptionsEnd();
  CsCheckAll(d->comm, d->delimiter[0], "-combo_delimiter is empty: give the character that joins the atoms of a combination (default +)");
  CsCheckAll(d->comm, d->control_value[0], "-control_value is empty: give the label of the unperturbed cells (default control)");
  CsCheckAll(d->comm, d->pert_key[0], "-perturbation_key is empty: give the obs column with the perturbation labels (default condition)");
  PetscFunctionReturn(0);
}

PetscErrorCode CsDesignAddKeys(CsDesign d, CsDataset ds)
{
  PetscFunctionBeginUser;
  PetscCall(CsDatasetAddObsKey(ds, d->pert_key, PETSC_TRUE));
  if (d->context_key[0]) PetscCall(CsDatasetAddObsKey(ds, d->context_key, PETSC_TRUE));
  if (d->dose_key[0]) PetscCall(CsDatasetAddObsKey(ds, d->dose_key, PETSC_TRUE));
  if (d->type_key[0]) PetscCall(CsDatasetAddObsKey(ds, d->type_key, PETSC_TRUE));
  PetscFunctionReturn(0);
}

/* --------------------------------------------------------------------------------------------------------------
   Parsing a label (and its dose) into the canonical key "name\tdose" used to identify a condition. */
typedef struct {
  char  *atom;
  double dose;
} AtomDose;

static int CmpAtomDose(const void *a, const void *b)
{
  const AtomDose *x = a, *y = b;
  int             c = strcmp(x->atom, y->atom);
  return c ? c : (x->dose > y->dose) - (x->dose < y->dose);
}

/* Append src to the growing string *s of length *n (capacity *cap). */
static PetscErrorCode Append(char **s, size_t *n, size_t *cap, const char src[])
{
  size_t l = strlen(src);

  PetscFunctionBeginUser;
  if (*n + l + 1 > *cap) {
    *cap = PetscMax(2 * *cap, *n + l + 1);
    PetscCall(PetscRealloc(*cap, s));
  }
  memcpy(*s + *n, src, l + 1);
  *n += l;
  PetscFunctionReturn(0);
}

/* *key (allocated) = canonical name, a tab, canonical dose label ("" without doses). dose may be NULL (no dose) and
   is either one value for all atoms or one per part of the label. Errors are input errors about the label. */
static PetscErrorCode CanonicalKey(CsDesign d, const char label[], const char dose[], char **key)
{
  PetscInt  np = 0, nd = 0, n = 0;
  char    **parts = NULL, **doses = NULL;
  AtomDose *ad;
  size_t    len = 0, cap = 0;

  PetscFunctionBeginUser;
  *key = NULL;
  PetscCall(CsStrSplit(label, d->delimiter, &np, &parts));
  PetscCheck(np > 0, PETSC_COMM_SELF, CS_ERR_INPUT, "empty perturbation label in obs/%s", d->pert_key);
  if (dose) {
    PetscCall(CsStrSplit(dose, d->delimiter, &nd, &doses));
    PetscCheck(nd == 1 || nd == np, PETSC_COMM_SELF, CS_ERR_INPUT, "dose '%s' does not match condition '%s' (one dose, or one per atom)",
               dose, label);
  }
  PetscCall(PetscMalloc1(np, &ad));
  for (PetscInt i = 0; i < np; i++) {
    char  *end = NULL;
    double v   = 1;
    if (!strcmp(parts[i], d->control_value)) continue; /* "KLF1+control" is KLF1 */
    if (d->collapse_guides) PetscCall(CsAtomGeneSymbol(parts[i], PETSC_TRUE, d->guide_delim, parts[i], strlen(parts[i]) + 1));
    if (dose) {
      v = strtod(doses[nd == 1 ? 0 : i], &end);
      PetscCheck(end && !*end && isfinite(v), PETSC_COMM_SELF, CS_ERR_INPUT, "dose '%s' of condition '%s' is not a number", dose, label);
    }
    ad[n].atom = parts[i], ad[n++].dose = v;
  }
  qsort(ad, (size_t)n, sizeof(AtomDose), CmpAtomDose);
  PetscCall(Append(key, &len, &cap, n ? "" : d->control_value));
  for (PetscInt i = 0; i < n; i++) {
    PetscCheck(!i || strcmp(ad[i].atom, ad[i - 1].atom), PETSC_COMM_SELF, CS_ERR_INPUT, "condition '%s' names %s twice", label, ad[i].atom);
    if (i) PetscCall(Append(key, &len, &cap, d->delimiter));
    PetscCall(Append(key, &len, &cap, ad[i].atom));
  }
  PetscCall(Append(key, &len, &cap, "\t"));
  for (PetscInt i = 0; dose && i < n; i++) {
    char num[64];
    PetscCall(PetscSNPrintf(num, sizeof(num), "%s%.10g", i ? d->delimiter : "", ad[i].dose));
    PetscCall(Append(key, &len, &cap, num));
  }
  PetscCall(PetscFree(ad));
  PetscCall(CsStrArrayDestroy(np, &parts));
  PetscCall(CsStrArrayDestroy(nd, &doses));
  PetscFunctionReturn(0);
}

/* The condition name part of a key (allocated copy). */
static PetscErrorCode KeyName(const char key[], char **name)
{
  size_t n = strcspn(key, "\t");

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(n + 1, name));
  memcpy(*name, key, n);
  (*name)[n] = 0;
  PetscFunctionReturn(0);
}

/* Fill a CsCondition from its canonical key (atoms looked up in the sorted atom list). */
static PetscErrorCode ConditionFromKey(CsDesign d, const char key[], CsCondition *c)
{
  PetscInt nd = 0;
  char   **doses = NULL, **atoms = NULL;

  PetscFunctionBeginUser;
  PetscCall(KeyName(key, &c->name));
  PetscCall(PetscStrallocpy(key + strlen(c->name) + 1, &c->dose));
  c->natoms = 0;
  if (strcmp(c->name, d->control_value)) PetscCall(CsStrSplit(c->name, d->delimiter, &c->natoms, &atoms));
  if (c->dose[0]) PetscCall(CsStrSplit(c->dose, d->delimiter, &nd, &doses));
  PetscCall(PetscMalloc1(c->natoms + 1, &c->atoms));
  PetscCall(PetscMalloc1(c->natoms + 1, &c->doses));
  for (PetscInt i = 0; i < c->natoms; i++) {
    c->atoms[i] = CsStrBsearch(atoms[i], d->atoms, d->natoms);
    c->doses[i] = nd ? strtod(doses[i], NULL) : 1.0;
  }
  PetscCall(CsStrArrayDestroy(c->natoms, &atoms));
  PetscCall(CsStrArrayDestroy(nd, &doses));
  PetscFunctionReturn(0);
}

/* --------------------------------------------------------------------------------------------------------------
   Set-up. */

/* Local: the canonical key of every distinct (label code, dose) pair on this rank, and each cell's pair. */
typedef struct {
  PetscInt code;
  double   dose; /* dose code (categorical) or value (numeric); 0 without a dose column */
} Pair;

static int CmpPair(const void *a, const void *b)
{
  const Pair *x = a, *y = b;
  if (x->code != y->code) return (x->code > y->code) - (x->code < y->code);
  return (x->dose > y->dose) - (x->dose < y->dose);
}

static double CellDose(const CsObsColumn *dc, PetscInt i) { return !dc ? 0 : dc->codes && !dc->values ? (double)dc->codes[i] : dc->values[i]; }

/* The obs columns the design reads, while the design is being set up. */
typedef struct {
  CsObsColumn *pc, *cc, *dc; /* perturbation, context (or NULL), dose (or NULL) */
  PetscInt     npairs, nkeys;
  Pair        *pairs;        /* [npairs] this rank's distinct (label, dose) pairs, sorted */
  char       **lkeys;        /* [npairs] their canonical keys */
  char       **keys;         /* [nkeys] the union over ranks, sorted: condition k has key keys[k] */
  PetscInt    *ctxOf;        /* [context categories] index into d->contexts, -1 where absent */
} Build;

/* Sort p[0..n) and keep its distinct pairs: the new n. */
static PetscInt UniquePairs(Pair *p, PetscInt n)
{
  PetscInt m = 0;

  if (n < 2) return n; /* also keeps a NULL p out of qsort */
  qsort(p, (size_t)n, sizeof(Pair), CmpPair);
  for (PetscInt i = 0; i < n; i++)
    if (!m || CmpPair(&p[m - 1], &p[i])) p[m++] = p[i];
  return m;
}

#define PAIR_CHUNK 65536 /* cells whose pairs are sorted at once: the set-up holds no per-cell array of them */

static PetscErrorCode LocalKeys(CsDesign d, Build *b, PetscInt nlocal)
{
  Pair    *p, *u = NULL;
  PetscInt nu = 0, cap = 0;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(PAIR_CHUNK, &p));
  for (PetscInt i0 = 0; i0 < nlocal; i0 += PAIR_CHUNK) {
    PetscInt m = PetscMin(PAIR_CHUNK, nlocal - i0);
    for (PetscInt j = 0; j < m; j++) {
      PetscInt i = i0 + j;
      PetscCheck(b->pc->codes[i] >= 0, PETSC_COMM_SELF, CS_ERR_INPUT, "a cell has no label in obs/%s", d->pert_key);
      PetscCheck(!b->dc || (b->dc->values ? !isnan(b->dc->values[i]) : b->dc->codes[i] >= 0), PETSC_COMM_SELF, CS_ERR_INPUT,
                 "a cell has no dose in obs/%s", d->dose_key);
      p[j].code = b->pc->codes[i], p[j].dose = CellDose(b->dc, i);
    }
    m = UniquePairs(p, m);
    if (nu + m > cap) nu = UniquePairs(u, nu); /* merge before growing: few distinct pairs stay few */
    if (nu + m > cap) {
      cap = PetscMax(2 * cap, nu + m);
      PetscCall(PetscRealloc(sizeof(Pair) * (size_t)cap, &u));
    }
    PetscCall(PetscArraycpy(u + nu, p, m));
    nu += m;
  }
  PetscCall(PetscFree(p));
  b->npairs = UniquePairs(u, nu);
  b->pairs  = u;
  PetscCall(PetscCalloc1(b->npairs + 1, &b->lkeys));
  for (PetscInt k = 0; k < b->npairs; k++) {
    const char *dose = NULL;
    char        dosebuf[64];
    if (b->dc && b->dc->values) {
      PetscCall(PetscSNPrintf(dosebuf, sizeof(dosebuf), "%.10g", u[k].dose));
      dose = dosebuf;
    } else if (b->dc) dose = b->dc->cats[(PetscInt)u[k].dose];
    PetscCall(CanonicalKey(d, b->pc->cats[u[k].code], dose, &b->lkeys[k]));
  }
  PetscFunctionReturn(0);
}

/* The obs columns named by the design's keys, checked. */
static PetscErrorCode GetColumns(CsDesign d, CsDataset ds, Build *b)
{
  PetscFunctionBeginUser;
  PetscCall(CsDatasetGetObs(ds, d->pert_key, &b->pc));
  CsCheckAll(d->comm, b->pc, "%s: obs has no column '%s' (-perturbation_key)", ds->path, d->pert_key);
  CsCheckAll(d->comm, b->pc->kind == CS_OBS_CATEGORICAL, "obs/%s must hold labels (categorical or strings), not numbers", d->pert_key);
  if (d->context_key[0]) {
    PetscCall(CsDatasetGetObs(ds, d->context_key, &b->cc));
    CsCheckAll(d->comm, b->cc && b->cc->kind == CS_OBS_CATEGORICAL, "%s: obs has no label column '%s' (-context_key)", ds->path, d->context_key);
  }
  if (d->dose_key[0]) {
    PetscCall(CsDatasetGetObs(ds, d->dose_key, &b->dc));
    CsCheckAll(d->comm, b->dc, "%s: obs has no column '%s' (-dose_key)", ds->path, d->dose_key);
  }
  PetscFunctionReturn(0);
}

/* Atoms: the union of the atoms of all conditions (the keys are identical on every rank: no communication). */
static PetscErrorCode BuildAtoms(CsDesign d, const Build *b)
{
  char   **all = NULL;
  PetscInt nall = 0;

  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < b->nkeys; k++) {
    char    *name, **at;
    PetscInt na = 0;
    PetscCall(KeyName(b->keys[k], &name));
    if (strcmp(name, d->control_value)) {
      PetscCall(CsStrSplit(name, d->delimiter, &na, &at));
      PetscCall(PetscRealloc(sizeof(char *) * (nall + na + 1), &all));
      for (PetscInt i = 0; i < na; i++) all[nall++] = at[i];
      PetscCall(PetscFree(at));
    }
    PetscCall(PetscFree(name));
  }
  CsStrSort(nall, all);
  PetscCall(PetscMalloc1(nall + 1, &d->atoms));
  d->natoms = 0;
  for (PetscInt i = 0; i < nall; i++)
    if (!d->natoms || strcmp(d->atoms[d->natoms - 1], all[i])) PetscCall(PetscStrallocpy(all[i], &d->atoms[d->natoms++]));
  PetscCall(CsStrArrayDestroy(nall, &all));
  PetscFunctionReturn(0);
}

/* Conditions: the union over ranks of the canonical keys present; the control must be one of them. */
static PetscErrorCode BuildConditions(CsDesign d, CsDataset ds, Build *b)
{
  PetscErrorCode ierr;
  PetscBool      has = PETSC_FALSE;
  char           vals[512] = "";

  PetscFunctionBeginUser;
  ierr = LocalKeys(d, b, ds->nlocal);
  PetscCall(CsAgreeCode(d->comm, ierr, "cannot parse the conditions"));
  PetscCall(CsStrAllUnion(d->comm, b->npairs, b->lkeys, &b->nkeys, &b->keys));
  PetscCall(BuildAtoms(d, b));
  d->ncond = b->nkeys;
  PetscCall(PetscCalloc1(b->nkeys + 1, &d->conds));
  for (PetscInt k = 0; k < b->nkeys; k++) PetscCall(ConditionFromKey(d, b->keys[k], &d->conds[k]));
  for (PetscInt k = 0; k < b->nkeys; k++) has = (PetscBool)(has || d->conds[k].natoms == 0);
  for (PetscInt k = 0; k < b->nkeys && k < 12; k++) {
    if (k) CsStrCat(vals, sizeof(vals), ", ");
    CsStrCat(vals, sizeof(vals), d->conds[k].name);
  }
  CsCheckAll(d->comm, has, "control value '%s' not found in obs/%s (values: %s%s); set -control_value", d->control_value, d->pert_key, vals,
             b->nkeys > 12 ? ", ..." : "");
  PetscFunctionReturn(0);
}

/* Contexts: the context categories that have cells (a single "all" without a context column). */
static PetscErrorCode BuildContexts(CsDesign d, CsDataset ds, Build *b)
{
  const CsObsColumn *cc = b->cc;
  PetscInt          *present, missing = 0;

  PetscFunctionBeginUser;
  if (!cc) {
    d->nctx = 1;
    PetscCall(PetscMalloc1(1, &d->contexts));
    PetscCall(PetscStrallocpy("all", &d->contexts[0]));
    PetscFunctionReturn(0);
  }
  for (PetscInt i = 0; i < ds->nlocal; i++) missing += cc->codes[i] < 0;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &missing, 1, MPIU_INT, MPI_SUM, d->comm));
  CsCheckAll(d->comm, !missing, "%" PetscInt_FMT " cells have no label in obs/%s (-context_key)", missing, d->context_key);
  PetscCall(PetscCalloc1(cc->ncat + 1, &present));
  for (PetscInt i = 0; i < ds->nlocal; i++) present[cc->codes[i]] = 1;
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, present, (PetscMPIInt)cc->ncat, MPIU_INT, MPI_MAX, d->comm));
  PetscCall(PetscMalloc1(cc->ncat + 1, &d->contexts));
  PetscCall(PetscMalloc1(cc->ncat + 1, &b->ctxOf));
  d->nctx = 0;
  for (PetscInt c = 0; c < cc->ncat; c++)
    if (present[c]) PetscCall(PetscStrallocpy(cc->cats[c], &d->contexts[d->nctx++]));
  CsStrSort(d->nctx, d->contexts);
  for (PetscInt c = 0; c < cc->ncat; c++) b->ctxOf[c] = present[c] ? CsStrBsearch(cc->cats[c], d->contexts, d->nctx) : -1;
  PetscCall(PetscFree(present));
  PetscFunctionReturn(0);
}

/* Each local cell's (context, condition) slot ctx * ncond + cond, and the global number of cells of each slot. */
static PetscErrorCode CellSlots(CsDesign d, CsDataset ds, const Build *b, PetscInt *slot, PetscInt *count)
{
  PetscInt *pairCond;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(b->npairs + 1, &pairCond));
  for (PetscInt k = 0; k < b->npairs; k++) pairCond[k] = CsStrBsearch(b->lkeys[k], b->keys, b->nkeys);
  for (PetscInt i = 0; i < ds->nlocal; i++) {
    Pair        key = {b->pc->codes[i], CellDose(b->dc, i)};
    const Pair *hit = bsearch(&key, b->pairs, (size_t)b->npairs, sizeof(Pair), CmpPair);
    PetscInt    c   = b->cc ? b->ctxOf[b->cc->codes[i]] : 0;
    slot[i]         = c * d->ncond + pairCond[hit - b->pairs];
    count[slot[i]]++;
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, count, (PetscMPIInt)(d->nctx * d->ncond), MPIU_INT, MPI_SUM, d->comm));
  PetscCall(PetscFree(pairCond));
  PetscFunctionReturn(0);
}

/* Groups: the (context, condition) slots with cells, in slot order, each linked to its context's control group. */
static PetscErrorCode BuildGroups(CsDesign d, CsDataset ds, const Build *b)
{
  PetscInt nslots = d->nctx * d->ncond, *count, *group, *ctrlOf;

  PetscFunctionBeginUser;
  PetscCall(PetscCalloc1((size_t)nslots + 1, &count));
  PetscCall(PetscMalloc1((size_t)nslots + 1, &group));
  d->nlocal = ds->nlocal;
  PetscCall(PetscMalloc1(ds->nlocal + 1, &d->cell_group));
  PetscCall(CellSlots(d, ds, b, d->cell_group, count));
  d->ngroups = 0;
  for (PetscInt k = 0; k < nslots; k++) group[k] = count[k] ? d->ngroups++ : -1;
  PetscCall(PetscCalloc1(d->ngroups + 1, &d->groups));
  for (PetscInt k = 0; k < nslots; k++) {
    if (group[k] < 0) continue;
    CsGroup *g = &d->groups[group[k]];
    g->ctx = k / d->ncond, g->cond = k % d->ncond, g->ncells = count[k];
    g->control = d->conds[g->cond].natoms == 0 ? PETSC_TRUE : PETSC_FALSE;
  }
  PetscCall(PetscMalloc1(d->nctx, &ctrlOf));
  for (PetscInt c = 0; c < d->nctx; c++) ctrlOf[c] = -1;
  for (PetscInt g = 0; g < d->ngroups; g++)
    if (d->groups[g].control) ctrlOf[d->groups[g].ctx] = g;
  for (PetscInt g = 0; g < d->ngroups; g++) d->groups[g].ctrl = ctrlOf[d->groups[g].ctx];
  for (PetscInt i = 0; i < ds->nlocal; i++) d->cell_group[i] = group[d->cell_group[i]];
  PetscCall(PetscFree(ctrlOf));
  PetscCall(PetscFree(group));
  PetscCall(PetscFree(count));
  PetscFunctionReturn(0);
}

/* Where each group's local cells sit among all of its cells: counts on this rank and on lower ranks. */
static PetscErrorCode GroupOffsets(CsDesign d)
{
  PetscMPIInt rank;

  PetscFunctionBeginUser;
  PetscCall(PetscCalloc1(d->ngroups + 1, &d->group_nlocal));
  PetscCall(PetscCalloc1(d->ngroups + 1, &d->group_rstart));
  for (PetscInt i = 0; i < d->nlocal; i++) d->group_nlocal[d->cell_group[i]]++;
  PetscCallMPI(MPI_Exscan(d->group_nlocal, d->group_rstart, (PetscMPIInt)d->ngroups, MPIU_INT, MPI_SUM, d->comm));
  PetscCallMPI(MPI_Comm_rank(d->comm, &rank));
  if (!rank) PetscCall(PetscArrayzero(d->group_rstart, d->ngroups));
  PetscFunctionReturn(0);
}

static PetscErrorCode BuildFree(Build *b)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree(b->ctxOf));
  PetscCall(PetscFree(b->pairs));
  PetscCall(CsStrArrayDestroy(b->npairs, &b->lkeys));
  PetscCall(CsStrArrayDestroy(b->nkeys, &b->keys));
  PetscFunctionReturn(0);
}

PetscErrorCode CsDesignSetUp(CsDesign d, CsDataset ds)
{
  Build b = {0};

  PetscFunctionBeginUser;
  if (d->setup) PetscFunctionReturn(0);
  PetscCall(PetscLogEventBegin(CS_EVENT_DESIGN, 0, 0, 0, 0));
  PetscCall(GetColumns(d, ds, &b));
  PetscCall(BuildConditions(d, ds, &b));
  PetscCall(BuildContexts(d, ds, &b));
  PetscCall(BuildGroups(d, ds, &b));
  PetscCall(GroupOffsets(d));
  PetscCall(BuildFree(&b));
  PetscCall(PetscLogEventEnd(CS_EVENT_DESIGN, 0, 0, 0, 0));
  d->setup = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode CsDesignReleaseObs(CsDesign d, CsDataset ds)
{
  const char *keys[3] = {d->pert_key, d->context_key, d->dose_key};

  PetscFunctionBeginUser;
  PetscCheck(d->setup, d->comm, PETSC_ERR_ORDER, "CsDesignReleaseObs needs the design set up");
  for (int k = 0; k < 3; k++)
    if (keys[k][0] && strcmp(keys[k], d->type_key)) PetscCall(CsDatasetReleaseObs(ds, keys[k]));
  PetscFunctionReturn(0);
}

PetscErrorCode CsDesignFindCondition(CsDesign d, const char label[], const char dose[], PetscInt *cond)
{
  char          *key = NULL, *name = NULL;
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  *cond = -1;
  PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL)); /* an unparsable label is simply not found */
  ierr = CanonicalKey(d, label, dose && dose[0] ? dose : NULL, &key);
  PetscCall(PetscPopErrorHandler());
  if (ierr) {
    PetscCall(PetscFree(key));
    PetscFunctionReturn(0);
  }
  PetscCall(KeyName(key, &name));
  for (PetscInt k = 0; k < d->ncond; k++)
    if (!strcmp(d->conds[k].name, name) && !strcmp(d->conds[k].dose, key + strlen(name) + 1)) *cond = k;
  PetscCall(PetscFree(name));
  PetscCall(PetscFree(key));
  PetscFunctionReturn(0);
}

PetscInt CsDesignFindContext(CsDesign d, const char name[]) { return CsStrBsearch(name, d->contexts, d->nctx); }

PetscInt CsDesignFindGroup(CsDesign d, PetscInt cond, PetscInt ctx)
{
  for (PetscInt g = 0; g < d->ngroups; g++)
    if (d->groups[g].cond == cond && d->groups[g].ctx == ctx) return g;
  return -1;
}

PetscErrorCode CsDesignGroupName(CsDesign d, PetscInt g, char buf[], size_t len)
{
  const CsCondition *c = &d->conds[d->groups[g].cond];

  PetscFunctionBeginUser;
  PetscCall(PetscSNPrintf(buf, len, "%s%s%s%s%s", c->name, c->dose[0] ? " dose " : "", c->dose, d->context_key[0] ? "@" : "",
                          d->context_key[0] ? d->contexts[d->groups[g].ctx] : ""));
  PetscFunctionReturn(0);
}

PetscErrorCode CsDesignView(CsDesign d, PetscViewer v)
{
  PetscInt nctrl = 0, ncombo = 0;

  PetscFunctionBeginUser;
  for (PetscInt g = 0; g < d->ngroups; g++) {
    nctrl += d->groups[g].control;
    ncombo += d->conds[d->groups[g].cond].natoms > 1;
  }
  PetscCall(PetscViewerASCIIPrintf(v, "CsDesign: %" PetscInt_FMT " conditions of %" PetscInt_FMT " atoms in %" PetscInt_FMT
                                      " contexts, %" PetscInt_FMT " groups (%" PetscInt_FMT " control, %" PetscInt_FMT " combinations)\n",
                                   d->ncond, d->natoms, d->nctx, d->ngroups, nctrl, ncombo));
  PetscFunctionReturn(0);
}

PetscErrorCode CsDesignDestroy(CsDesign *d)
{
  PetscFunctionBeginUser;
  if (!*d) PetscFunctionReturn(0);
  for (PetscInt k = 0; k < (*d)->ncond; k++) {
    CsCondition *c = &(*d)->conds[k];
    PetscCall(PetscFree(c->name));
    PetscCall(PetscFree(c->dose));
    PetscCall(PetscFree(c->atoms));
    PetscCall(PetscFree(c->doses));
  }
  PetscCall(PetscFree((*d)->conds));
  PetscCall(CsStrArrayDestroy((*d)->natoms, &(*d)->atoms));
  PetscCall(CsStrArrayDestroy((*d)->nctx, &(*d)->contexts));
  PetscCall(PetscFree((*d)->groups));
  PetscCall(PetscFree((*d)->cell_group));
  PetscCall(PetscFree((*d)->group_nlocal));
  PetscCall(PetscFree((*d)->group_rstart));
  PetscCall(PetscFree(*d));
  PetscFunctionReturn(0);
}
