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

/* key = canonical name, a tab, canonical dose label ("" without doses). dose may be NULL (no dose) and is either one
   value for all atoms or one per part of the label. Errors are input errors about the label. */
static PetscErrorCode CanonicalKey(CsDesign d, const char label[], const char dose[], char key[], size_t len)
{
  PetscInt  np = 0, nd = 0, n = 0;
  char    **parts = NULL, **doses = NULL;
  AtomDose *ad;

  PetscFunctionBeginUser;
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
  key[0] = 0;
  if (!n) PetscCall(PetscStrlcat(key, d->control_value, len));
  for (PetscInt i = 0; i < n; i++) {
    PetscCheck(!i || strcmp(ad[i].atom, ad[i - 1].atom), PETSC_COMM_SELF, CS_ERR_INPUT, "condition '%s' names %s twice", label, ad[i].atom);
    if (i) PetscCall(PetscStrlcat(key, d->delimiter, len));
    PetscCall(PetscStrlcat(key, ad[i].atom, len));
  }
  PetscCall(PetscStrlcat(key, "\t", len));
  for (PetscInt i = 0; dose && i < n; i++) {
    char num[64];
    PetscCall(PetscSNPrintf(num, sizeof(num), "%s%.10g", i ? d->delimiter : "", ad[i].dose));
    PetscCall(PetscStrlcat(key, num, len));
  }
  PetscCall(PetscFree(ad));
  PetscCall(CsStrArrayDestroy(np, &parts));
  PetscCall(CsStrArrayDestroy(nd, &doses));
  PetscFunctionReturn(0);
}

/* Fill a CsCondition from its canonical key (atoms looked up in the sorted atom list). */
static PetscErrorCode ConditionFromKey(CsDesign d, const char key[], CsCondition *c)
{
  char     buf[4096], *tab;
  PetscInt nd = 0;
  char   **doses = NULL, **atoms = NULL;

  PetscFunctionBeginUser;
  PetscCall(PetscStrncpy(buf, key, sizeof(buf)));
  tab  = strchr(buf, '\t');
  *tab = 0;
  PetscCall(PetscStrallocpy(buf, &c->name));
  PetscCall(PetscStrallocpy(tab + 1, &c->dose));
  c->natoms = 0;
  if (strcmp(buf, d->control_value)) PetscCall(CsStrSplit(buf, d->delimiter, &c->natoms, &atoms));
  if (tab[1]) PetscCall(CsStrSplit(tab + 1, d->delimiter, &nd, &doses));
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
  PetscInt cell; /* a representative local cell */
} Pair;

static int CmpPair(const void *a, const void *b)
{
  const Pair *x = a, *y = b;
  if (x->code != y->code) return (x->code > y->code) - (x->code < y->code);
  return (x->dose > y->dose) - (x->dose < y->dose);
}

static double CellDose(const CsObsColumn *dc, PetscInt i) { return !dc ? 0 : dc->codes && !dc->values ? (double)dc->codes[i] : dc->values[i]; }

static PetscErrorCode LocalKeys(CsDesign d, const CsObsColumn *pc, const CsObsColumn *dc, PetscInt nlocal, PetscInt *npairs,
                                Pair **pairs, char ***keys)
{
  Pair *p;
  char  key[4096], dosebuf[64];

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(nlocal + 1, &p));
  for (PetscInt i = 0; i < nlocal; i++) {
    PetscCheck(pc->codes[i] >= 0, PETSC_COMM_SELF, CS_ERR_INPUT, "a cell has no label in obs/%s", d->pert_key);
    PetscCheck(!dc || (dc->values ? !isnan(dc->values[i]) : dc->codes[i] >= 0), PETSC_COMM_SELF, CS_ERR_INPUT,
               "a cell has no dose in obs/%s", d->dose_key);
    p[i].code = pc->codes[i], p[i].dose = CellDose(dc, i), p[i].cell = i;
  }
  qsort(p, (size_t)nlocal, sizeof(Pair), CmpPair);
  *npairs = 0;
  for (PetscInt i = 0; i < nlocal; i++)
    if (!*npairs || CmpPair(&p[*npairs - 1], &p[i])) p[(*npairs)++] = p[i];
  PetscCall(PetscMalloc1(*npairs + 1, keys));
  for (PetscInt k = 0; k < *npairs; k++) {
    const char *dose = NULL;
    if (dc && dc->values) {
      PetscCall(PetscSNPrintf(dosebuf, sizeof(dosebuf), "%.10g", p[k].dose));
      dose = dosebuf;
    } else if (dc) dose = dc->cats[(PetscInt)p[k].dose];
    PetscCall(CanonicalKey(d, pc->cats[p[k].code], dose, key, sizeof(key)));
    PetscCall(PetscStrallocpy(key, &(*keys)[k]));
  }
  *pairs = p;
  PetscFunctionReturn(0);
}

PetscErrorCode CsDesignSetUp(CsDesign d, CsDataset ds)
{
  CsObsColumn   *pc, *cc = NULL, *dc = NULL;
  PetscInt       npairs = 0, nkeys, *pairCond, *ctxOf = NULL, *count, nctxcat = 1;
  Pair          *pairs = NULL;
  char         **lkeys = NULL, **keys = NULL;
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  if (d->setup) PetscFunctionReturn(0);
  PetscCall(PetscLogEventBegin(CS_EVENT_DESIGN, 0, 0, 0, 0));
  PetscCall(CsDatasetGetObs(ds, d->pert_key, &pc));
  CsCheckAll(d->comm, pc, "%s: obs has no column '%s' (-perturbation_key)", ds->path, d->pert_key);
  CsCheckAll(d->comm, pc->kind == CS_OBS_CATEGORICAL, "obs/%s must hold labels (categorical or strings), not numbers", d->pert_key);
  if (d->context_key[0]) {
    PetscCall(CsDatasetGetObs(ds, d->context_key, &cc));
    CsCheckAll(d->comm, cc && cc->kind == CS_OBS_CATEGORICAL, "%s: obs has no label column '%s' (-context_key)", ds->path, d->context_key);
  }
  if (d->dose_key[0]) {
    PetscCall(CsDatasetGetObs(ds, d->dose_key, &dc));
    CsCheckAll(d->comm, dc, "%s: obs has no column '%s' (-dose_key)", ds->path, d->dose_key);
  }

  /* Conditions: the union over ranks of the canonical keys present. */
  ierr = LocalKeys(d, pc, dc, ds->nlocal, &npairs, &pairs, &lkeys);
  PetscCall(CsAgreeCode(d->comm, ierr, "cannot parse the conditions"));
  PetscCall(CsStrAllUnion(d->comm, npairs, lkeys, &nkeys, &keys));
  {
    /* Atoms: the union of the atoms of all conditions (identical on every rank, no communication needed). */
    char   **all = NULL;
    PetscInt nall = 0;
    for (PetscInt k = 0; k < nkeys; k++) {
      char     buf[4096];
      char   **at;
      PetscInt na = 0;
      PetscCall(PetscStrncpy(buf, keys[k], sizeof(buf)));
      *strchr(buf, '\t') = 0;
      if (!strcmp(buf, d->control_value)) continue;
      PetscCall(CsStrSplit(buf, d->delimiter, &na, &at));
      PetscCall(PetscRealloc(sizeof(char *) * (nall + na + 1), &all));
      for (PetscInt i = 0; i < na; i++) all[nall++] = at[i];
      PetscCall(PetscFree(at));
    }
    CsStrSort(nall, all);
    PetscCall(PetscMalloc1(nall + 1, &d->atoms));
    d->natoms = 0;
    for (PetscInt i = 0; i < nall; i++)
      if (!d->natoms || strcmp(d->atoms[d->natoms - 1], all[i])) PetscCall(PetscStrallocpy(all[i], &d->atoms[d->natoms++]));
    PetscCall(CsStrArrayDestroy(nall, &all));
  }
  d->ncond = nkeys;
  PetscCall(PetscCalloc1(nkeys + 1, &d->conds));
  for (PetscInt k = 0; k < nkeys; k++) PetscCall(ConditionFromKey(d, keys[k], &d->conds[k]));
  {
    PetscBool has = PETSC_FALSE;
    char      vals[512] = "";
    for (PetscInt k = 0; k < nkeys; k++) has = (PetscBool)(has || d->conds[k].natoms == 0);
    for (PetscInt k = 0; k < nkeys && k < 12; k++) {
      if (k) PetscCall(PetscStrlcat(vals, ", ", sizeof(vals)));
      PetscCall(PetscStrlcat(vals, d->conds[k].name, sizeof(vals)));
    }
    CsCheckAll(d->comm, has, "control value '%s' not found in obs/%s (values: %s%s); set -control_value", d->control_value,
               d->pert_key, vals, nkeys > 12 ? ", ..." : "");
  }

  /* Contexts: the context categories that have cells. */
  if (cc) {
    PetscInt *present;
    nctxcat = cc->ncat;
    PetscCall(PetscCalloc1(nctxcat + 1, &present));
    for (PetscInt i = 0; i < ds->nlocal; i++)
      if (cc->codes[i] >= 0) present[cc->codes[i]] = 1;
    {
      PetscInt missing = 0;
      for (PetscInt i = 0; i < ds->nlocal; i++) missing += cc->codes[i] < 0;
      PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, &missing, 1, MPIU_INT, MPI_SUM, d->comm));
      CsCheckAll(d->comm, !missing, "%" PetscInt_FMT " cells have no label in obs/%s (-context_key)", missing, d->context_key);
    }
    PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, present, (PetscMPIInt)nctxcat, MPIU_INT, MPI_MAX, d->comm));
    PetscCall(PetscMalloc1(nctxcat + 1, &d->contexts));
    PetscCall(PetscMalloc1(nctxcat + 1, &ctxOf));
    d->nctx = 0;
    for (PetscInt c = 0; c < nctxcat; c++)
      if (present[c]) PetscCall(PetscStrallocpy(cc->cats[c], &d->contexts[d->nctx++]));
    CsStrSort(d->nctx, d->contexts);
    for (PetscInt c = 0; c < nctxcat; c++) ctxOf[c] = present[c] ? CsStrBsearch(cc->cats[c], d->contexts, d->nctx) : -1;
    PetscCall(PetscFree(present));
  } else {
    d->nctx = 1;
    PetscCall(PetscMalloc1(1, &d->contexts));
    PetscCall(PetscStrallocpy("all", &d->contexts[0]));
  }

  /* Groups: (context, condition) pairs with cells, counted over ranks. */
  PetscCall(PetscMalloc1(npairs + 1, &pairCond));
  for (PetscInt k = 0; k < npairs; k++) pairCond[k] = CsStrBsearch(lkeys[k], keys, nkeys);
  PetscCall(PetscCalloc1((size_t)d->nctx * d->ncond + 1, &count));
  d->nlocal = ds->nlocal;
  PetscCall(PetscMalloc1(ds->nlocal + 1, &d->cell_group));
  for (PetscInt i = 0; i < ds->nlocal; i++) { /* cell -> (ctx, cond) index, later replaced by the group */
    Pair     key = {pc->codes[i], CellDose(dc, i), 0};
    Pair    *hit = bsearch(&key, pairs, (size_t)npairs, sizeof(Pair), CmpPair);
    PetscInt c   = cc ? ctxOf[cc->codes[i]] : 0;
    d->cell_group[i] = c * d->ncond + pairCond[hit - pairs];
    count[d->cell_group[i]]++;
  }
  PetscCallMPI(MPI_Allreduce(MPI_IN_PLACE, count, (PetscMPIInt)(d->nctx * d->ncond), MPIU_INT, MPI_SUM, d->comm));
  {
    PetscInt *slot;
    PetscCall(PetscMalloc1((size_t)d->nctx * d->ncond + 1, &slot));
    d->ngroups = 0;
    for (PetscInt k = 0; k < d->nctx * d->ncond; k++) slot[k] = count[k] ? d->ngroups++ : -1;
    PetscCall(PetscCalloc1(d->ngroups + 1, &d->groups));
    for (PetscInt k = 0; k < d->nctx * d->ncond; k++) {
      if (slot[k] < 0) continue;
      CsGroup *g = &d->groups[slot[k]];
      g->ctx = k / d->ncond, g->cond = k % d->ncond, g->ncells = count[k];
      g->control = d->conds[g->cond].natoms == 0 ? PETSC_TRUE : PETSC_FALSE;
    }
    {
      PetscInt *ctrlOf;
      PetscCall(PetscMalloc1(d->nctx, &ctrlOf));
      for (PetscInt c = 0; c < d->nctx; c++) ctrlOf[c] = -1;
      for (PetscInt g = 0; g < d->ngroups; g++)
        if (d->groups[g].control) ctrlOf[d->groups[g].ctx] = g;
      for (PetscInt g = 0; g < d->ngroups; g++) d->groups[g].ctrl = ctrlOf[d->groups[g].ctx];
      PetscCall(PetscFree(ctrlOf));
    }
    for (PetscInt i = 0; i < ds->nlocal; i++) d->cell_group[i] = slot[d->cell_group[i]];
    PetscCall(PetscFree(slot));
  }
  PetscCall(PetscCalloc1(d->ngroups + 1, &d->group_nlocal));
  PetscCall(PetscCalloc1(d->ngroups + 1, &d->group_rstart));
  for (PetscInt i = 0; i < ds->nlocal; i++) d->group_nlocal[d->cell_group[i]]++;
  PetscCallMPI(MPI_Exscan(d->group_nlocal, d->group_rstart, (PetscMPIInt)d->ngroups, MPIU_INT, MPI_SUM, d->comm));
  {
    PetscMPIInt rank;
    PetscCallMPI(MPI_Comm_rank(d->comm, &rank));
    if (!rank) PetscCall(PetscArrayzero(d->group_rstart, d->ngroups));
  }

  PetscCall(PetscFree(count));
  PetscCall(PetscFree(pairCond));
  PetscCall(PetscFree(ctxOf));
  PetscCall(PetscFree(pairs));
  PetscCall(CsStrArrayDestroy(npairs, &lkeys));
  PetscCall(CsStrArrayDestroy(nkeys, &keys));
  PetscCall(PetscLogEventEnd(CS_EVENT_DESIGN, 0, 0, 0, 0));
  d->setup = PETSC_TRUE;
  PetscFunctionReturn(0);
}

PetscErrorCode CsDesignFindCondition(CsDesign d, const char label[], const char dose[], PetscInt *cond)
{
  char           key[4096];
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  *cond = -1;
  PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL)); /* an unparsable label is simply not found */
  ierr = CanonicalKey(d, label, dose && dose[0] ? dose : NULL, key, sizeof(key));
  PetscCall(PetscPopErrorHandler());
  if (ierr) PetscFunctionReturn(0);
  for (PetscInt k = 0; k < d->ncond; k++) {
    char ck[4096];
    PetscCall(PetscSNPrintf(ck, sizeof(ck), "%s\t%s", d->conds[k].name, d->conds[k].dose));
    if (!strcmp(ck, key)) *cond = k;
  }
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
