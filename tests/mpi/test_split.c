/* Splits on the embedded Norman/McFaline design at 1, 2 and 3 ranks: the rules of each split type, seeding,
   the split.json round trip, and the input errors. */
#include "testing.h"
#include <cellshift/split.h>
#include <math.h>

static CsDataset ds;
static CsDesign  d;

static PetscErrorCode MakeSplit(const char type[], const char holdout[], const char tests[], PetscInt seed, const char file[],
                                CsSplit *s, PetscErrorCode *ierr)
{
  PetscFunctionBeginUser;
  PetscCall(CsSplitCreate(PETSC_COMM_WORLD, s));
  PetscCall(PetscStrncpy((*s)->type, type, sizeof((*s)->type)));
  PetscCall(PetscStrncpy((*s)->holdout_context, holdout, sizeof((*s)->holdout_context)));
  PetscCall(PetscStrncpy((*s)->test_conditions, tests, sizeof((*s)->test_conditions)));
  PetscCall(PetscStrncpy((*s)->file, file, sizeof((*s)->file)));
  (*s)->seed = seed;
  PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
  *ierr = CsSplitSetUp(*s, d);
  PetscCall(PetscPopErrorHandler());
  PetscFunctionReturn(0);
}

static PetscErrorCode Body(void)
{
  char           data[PETSC_MAX_PATH_LEN], dir[PETSC_MAX_PATH_LEN], path[PETSC_MAX_PATH_LEN];
  CsSplit        s, t;
  PetscErrorCode ierr;
  PetscInt       a172 = -1, u87 = -1, differ = 0;

  PetscFunctionBeginUser;
  PetscCall(CsTestSourcePath("input/perturbench_devel/devel.h5ad", data));
  PetscCall(CsDatasetCreate(PETSC_COMM_WORLD, &ds));
  PetscCall(CsDatasetSetFile(ds, data, NULL));
  PetscCall(CsDesignCreate(PETSC_COMM_WORLD, &d));
  PetscCall(PetscStrncpy(d->context_key, "cell_type", sizeof(d->context_key)));
  PetscCall(CsDesignAddKeys(d, ds));
  PetscCall(CsDatasetSetUp(ds));
  PetscCall(CsDesignSetUp(d, ds));
  a172 = CsDesignFindContext(d, "A172"), u87 = CsDesignFindContext(d, "U87MG");
  CS_EXPECT(a172 >= 0 && u87 >= 0, "contexts A172 and U87MG exist");

  /* combo: singles and controls train; the 15 doubles split: round(0.2 * 15) = 3 test, round(0.1 * 15) = 2 valid. */
  PetscCall(MakeSplit("combo", "", "", 3, "", &s, &ierr));
  CS_EXPECT(!ierr, "combo split failed");
  for (PetscInt g = 0; g < d->ngroups; g++) {
    PetscInt na = d->conds[d->groups[g].cond].natoms;
    if (na < 2) CS_EXPECT(s->role[g] == CS_ROLE_TRAIN, "single/control group %" PetscInt_FMT " not train", g);
  }
  CS_EXPECT(s->ntest == 3 && s->nvalid == 2, "combo: %" PetscInt_FMT " test, %" PetscInt_FMT " valid", s->ntest, s->nvalid);
  /* round trip through split.json */
  PetscCall(CsTestTempDir(PETSC_COMM_WORLD, dir));
  PetscCall(CsPathJoin(dir, "split.json", path));
  PetscCall(CsSplitSave(s, d, path));
  PetscCall(MakeSplit("random", "", "", 99, path, &t, &ierr));
  CS_EXPECT(!ierr, "loading split.json failed");
  for (PetscInt g = 0; g < d->ngroups && !ierr; g++) CS_EXPECT(s->role[g] == t->role[g], "role of group %" PetscInt_FMT " changed", g);
  PetscCall(CsSplitDestroy(&t));
  /* same seed, same split; another seed, another split */
  PetscCall(MakeSplit("combo", "", "", 3, "", &t, &ierr));
  for (PetscInt g = 0; g < d->ngroups; g++) CS_EXPECT(s->role[g] == t->role[g], "seeded split not reproducible");
  PetscCall(CsSplitDestroy(&t));
  for (PetscInt seed = 4; seed < 8; seed++) {
    PetscCall(MakeSplit("combo", "", "", seed, "", &t, &ierr));
    for (PetscInt g = 0; g < d->ngroups; g++) differ += s->role[g] != t->role[g];
    PetscCall(CsSplitDestroy(&t));
  }
  CS_EXPECT(differ > 0, "the seed does not change the combo split");
  PetscCall(CsSplitDestroy(&s));

  /* context: all perturbed U87MG groups test, its control train, no other test group */
  PetscCall(MakeSplit("context", "U87MG", "", 0, "", &s, &ierr));
  CS_EXPECT(!ierr, "context split failed");
  for (PetscInt g = 0; g < d->ngroups; g++) {
    PetscBool held = d->groups[g].ctx == u87 && !d->groups[g].control;
    CS_EXPECT(held == (s->role[g] == CS_ROLE_TEST), "context split role of group %" PetscInt_FMT, g);
  }
  CS_EXPECT(s->ntest == 9, "9 U87MG knockdowns are test (got %" PetscInt_FMT ")", s->ntest);
  /* validation on training cells by default: every other perturbed group trains */
  CS_EXPECT(s->nvalid == 0 && !s->valid_groups, "context split: %" PetscInt_FMT " valid groups by default", s->nvalid);
  PetscCall(CsSplitDestroy(&s));
  /* groups on request: round(0.1 * candidates) of the perturbed groups of the other contexts, the same test groups */
  PetscCall(CsSplitCreate(PETSC_COMM_WORLD, &s));
  PetscCall(PetscStrncpy(s->type, "context", sizeof(s->type)));
  PetscCall(PetscStrncpy(s->holdout_context, "U87MG", sizeof(s->holdout_context)));
  PetscCall(PetscStrncpy(s->validation, "groups", sizeof(s->validation)));
  PetscCall(CsSplitSetUp(s, d));
  {
    PetscInt ncand = 0;
    for (PetscInt g = 0; g < d->ngroups; g++) ncand += d->groups[g].ctx != u87 && !d->groups[g].control;
    CS_EXPECT(s->ntest == 9 && s->nvalid == (PetscInt)floor(0.1 * ncand + 0.5) && s->valid_groups,
              "context split, -validation groups: %" PetscInt_FMT " test, %" PetscInt_FMT " valid of %" PetscInt_FMT, s->ntest, s->nvalid, ncand);
  }
  for (PetscInt g = 0; g < d->ngroups; g++)
    if (s->role[g] == CS_ROLE_VALID) CS_EXPECT(d->groups[g].ctx != u87 && !d->groups[g].control, "valid group %" PetscInt_FMT " is not a knockdown of another line", g);
  PetscCall(CsSplitDestroy(&s));

  /* explicit: a double everywhere it exists, a single in one context, given in another atom order */
  PetscCall(MakeSplit("explicit", "", "MAP2K6+KLF1, MAPK1@A172", 0, "", &s, &ierr));
  CS_EXPECT(!ierr, "explicit split failed");
  {
    PetscInt c1, c2;
    PetscCall(CsDesignFindCondition(d, "KLF1+MAP2K6", NULL, &c1));
    PetscCall(CsDesignFindCondition(d, "MAPK1", NULL, &c2));
    for (PetscInt g = 0; g < d->ngroups; g++) {
      PetscBool want = d->groups[g].cond == c1 || (d->groups[g].cond == c2 && d->groups[g].ctx == a172);
      CS_EXPECT(want == (s->role[g] == CS_ROLE_TEST), "explicit split role of group %" PetscInt_FMT, g);
    }
  }
  CS_EXPECT(s->nvalid == 0, "explicit split: %" PetscInt_FMT " valid groups by default", s->nvalid);
  PetscCall(CsSplitDestroy(&s));

  /* simulation: round(0.2 n) of the atoms with a single-atom group are unseen (all their single groups test, the
     others' train); a combination is test unless all its atoms are seen; categories follow the roles. */
  PetscCall(MakeSplit("simulation", "", "", 5, "", &s, &ierr));
  CS_EXPECT(!ierr, "simulation split failed");
  {
    PetscInt  nsingle = 0, nunseen = 0, nseen2 = 0, nseen2test = 0;
    PetscInt *role;
    PetscCall(PetscMalloc1(d->natoms, &role));
    for (PetscInt a = 0; a < d->natoms; a++) role[a] = -1;
    for (PetscInt g = 0; g < d->ngroups; g++) {
      const CsCondition *c = &d->conds[d->groups[g].cond];
      if (c->natoms != 1) continue;
      CS_EXPECT(role[c->atoms[0]] < 0 || role[c->atoms[0]] == (PetscInt)s->role[g], "atom %s has single groups of two roles",
                d->atoms[c->atoms[0]]);
      CS_EXPECT(s->role[g] != CS_ROLE_VALID, "a single group is valid");
      CS_EXPECT(!strcmp(s->category[g], s->role[g] == CS_ROLE_TEST ? "unseen_single" : "seen_single"), "single category %s", s->category[g]);
      role[c->atoms[0]] = s->role[g];
    }
    for (PetscInt a = 0; a < d->natoms; a++) nsingle += role[a] >= 0, nunseen += role[a] == CS_ROLE_TEST;
    CS_EXPECT(nunseen == (PetscInt)floor(0.2 * nsingle + 0.5), "%" PetscInt_FMT " of %" PetscInt_FMT " atoms unseen", nunseen, nsingle);
    for (PetscInt g = 0; g < d->ngroups; g++) {
      const CsCondition *c = &d->conds[d->groups[g].cond];
      PetscInt           k = 0;
      char               want[32];
      if (d->groups[g].control) {
        CS_EXPECT(s->role[g] == CS_ROLE_TRAIN && !strcmp(s->category[g], "control"), "control group not train/control");
        continue;
      }
      if (c->natoms < 2) continue;
      for (PetscInt i = 0; i < c->natoms; i++) k += role[c->atoms[i]] == CS_ROLE_TRAIN;
      PetscCall(PetscSNPrintf(want, sizeof(want), "combo_seen%" PetscInt_FMT, k));
      CS_EXPECT(!strcmp(s->category[g], want), "combination category %s, expected %s", s->category[g], want);
      if (k < 2) CS_EXPECT(s->role[g] == CS_ROLE_TEST, "a combination with an unseen atom is not test");
      else nseen2++, nseen2test += s->role[g] == CS_ROLE_TEST;
    }
    CS_EXPECT(nseen2test == (PetscInt)floor(0.2 * nseen2 + 0.5) || (nseen2test == 1 && nseen2 > 0 && 0.2 * nseen2 < 0.5),
              "%" PetscInt_FMT " of %" PetscInt_FMT " seen2 combinations test", nseen2test, nseen2);
    /* the categories survive the split.json round trip (they are recomputed from the roles) */
    PetscCall(CsPathJoin(dir, "split_sim.json", path));
    PetscCall(CsSplitSave(s, d, path));
    PetscCall(MakeSplit("random", "", "", 99, path, &t, &ierr));
    for (PetscInt g = 0; g < d->ngroups && !ierr; g++)
      CS_EXPECT(s->role[g] == t->role[g] && !strcmp(s->category[g], t->category[g]), "group %" PetscInt_FMT " changed on reload", g);
    PetscCall(CsSplitDestroy(&t));
    /* another seed, other unseen atoms */
    differ = 0;
    for (PetscInt seed = 6; seed < 10; seed++) {
      PetscCall(MakeSplit("simulation", "", "", seed, "", &t, &ierr));
      for (PetscInt g = 0; g < d->ngroups; g++) differ += s->role[g] != t->role[g];
      PetscCall(CsSplitDestroy(&t));
    }
    CS_EXPECT(differ > 0, "the seed does not change the simulation split");
    PetscCall(PetscFree(role));
  }
  PetscCall(CsSplitDestroy(&s));

  /* random: 20% of the perturbed groups (60 of them) */
  PetscCall(MakeSplit("random", "", "", 1, "", &s, &ierr));
  CS_EXPECT(!ierr && s->ntest == 12 && s->nvalid == 6, "random split sizes %" PetscInt_FMT "/%" PetscInt_FMT, s->ntest, s->nvalid);
  for (PetscInt g = 0; g < d->ngroups; g++)
    if (d->groups[g].control) CS_EXPECT(s->role[g] == CS_ROLE_TRAIN, "control group not train");
  PetscCall(CsSplitDestroy(&s));
  /* -validation cells on a random split: the same test groups, the valid ones train */
  PetscCall(MakeSplit("random", "", "", 1, "", &t, &ierr));
  PetscCall(CsSplitCreate(PETSC_COMM_WORLD, &s));
  PetscCall(PetscStrncpy(s->validation, "cells", sizeof(s->validation)));
  s->seed = 1;
  PetscCall(CsSplitSetUp(s, d));
  CS_EXPECT(s->ntest == 12 && s->nvalid == 0, "random split, -validation cells: %" PetscInt_FMT "/%" PetscInt_FMT, s->ntest, s->nvalid);
  for (PetscInt g = 0; g < d->ngroups; g++)
    CS_EXPECT((s->role[g] == CS_ROLE_TEST) == (t->role[g] == CS_ROLE_TEST), "-validation cells changed test group %" PetscInt_FMT, g);
  PetscCall(CsSplitDestroy(&s));
  PetscCall(CsSplitDestroy(&t));

  /* input errors are collective and typed */
  PetscCall(MakeSplit("context", "HeLa", "", 0, "", &s, &ierr));
  CS_EXPECT(ierr == CS_ERR_INPUT, "unknown holdout context accepted");
  PetscCall(CsSplitDestroy(&s));
  PetscCall(MakeSplit("explicit", "", "NOPE+KLF1", 0, "", &s, &ierr));
  CS_EXPECT(ierr == CS_ERR_INPUT, "condition without cells accepted");
  PetscCall(CsSplitDestroy(&s));
  PetscCall(MakeSplit("explicit", "", "control", 0, "", &s, &ierr));
  CS_EXPECT(ierr == CS_ERR_INPUT, "control as a test group accepted");
  PetscCall(CsSplitDestroy(&s));
  PetscCall(CsSplitCreate(PETSC_COMM_WORLD, &s));
  s->test_fraction = 0;
  PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
  ierr = CsSplitSetUp(s, d);
  PetscCall(PetscPopErrorHandler());
  CS_EXPECT(ierr == CS_ERR_INPUT, "empty test set accepted");
  PetscCall(CsSplitDestroy(&s));

  PetscCall(CsDesignDestroy(&d));
  PetscCall(CsDatasetDestroy(&ds));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv) { return CsTestMain(argc, argv, Body); }
