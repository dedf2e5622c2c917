/* cellshift inspect FILE: shape, encoding, non-zeros, layers and obs columns of an .h5ad. With -priors [KINDS]
   (dorothea, trrust, go; default all three), the coverage of the priors too: the design is built from the usual
   options (-perturbation_key, -context_key, -perturbation_collapse_guides, ...) and its atoms and the file's genes
   are placed on every graph (CsPriorsView). */
#include "commands.h"
#include <cellshift/h5ad.h>
#include <cellshift/priors.h>

/* The options InspectPriors reads (dataset, design, priors), queried while the command records what it knows. */
static PetscErrorCode InspectPriorsOptions(MPI_Comm comm)
{
  CsDataset ds;
  CsDesign  d;
  CsPriors  p;

  PetscFunctionBeginUser;
  PetscCall(CsDatasetCreate(comm, &ds));
  PetscCall(CsDatasetSetFromOptions(ds));
  PetscCall(CsDesignCreate(comm, &d));
  PetscCall(CsDesignSetFromOptions(d));
  PetscCall(CsPriorsCreate(comm, &p));
  PetscCall(CsPriorsSetFromOptions(p));
  PetscCall(CsPriorsDestroy(&p));
  PetscCall(CsDesignDestroy(&d));
  PetscCall(CsDatasetDestroy(&ds));
  PetscFunctionReturn(0);
}

static PetscErrorCode InspectPriors(const char path[])
{
  MPI_Comm    comm = PETSC_COMM_WORLD;
  CsDataset   ds;
  CsDesign    d;
  CsPriors    p;
  char       *names[CS_PRIOR_NKINDS];
  PetscInt    n = CS_PRIOR_NKINDS;
  CsPriorKind kinds[CS_PRIOR_NKINDS] = {CS_PRIOR_DOROTHEA, CS_PRIOR_TRRUST, CS_PRIOR_GO};
  PetscBool   set;

  PetscFunctionBeginUser;
  PetscCall(PetscOptionsGetStringArray(NULL, NULL, "-priors", names, &n, &set));
  if (set && n > 0) {
    for (PetscInt k = 0; k < n; k++) {
      PetscInt i = 0;
      while (i < CS_PRIOR_NKINDS && strcmp(names[k], CsPriorKinds[i])) i++;
      CsCheckAll(comm, i < CS_PRIOR_NKINDS, "-priors %s: the priors are dorothea, trrust and go", names[k]);
      kinds[k] = (CsPriorKind)i;
      PetscCall(PetscFree(names[k]));
    }
  } else n = CS_PRIOR_NKINDS;
  PetscCall(CsDatasetCreate(comm, &ds));
  PetscCall(CsDatasetSetFromOptions(ds));
  {
    char layer[256];
    PetscCall(PetscStrncpy(layer, ds->layer, sizeof(layer)));
    PetscCall(CsDatasetSetFile(ds, path, layer));
  }
  PetscCall(CsDesignCreate(comm, &d));
  PetscCall(CsDesignSetFromOptions(d));
  PetscCall(CsDesignAddKeys(d, ds));
  PetscCall(CsDatasetSetUp(ds));
  PetscCall(CsDesignSetUp(d, ds));
  PetscCall(CsPriorsCreate(comm, &p));
  PetscCall(CsPriorsSetFromOptions(p));
  PetscCall(CsPriorsSetGenes(p, path, ds->ngenes, ds->genes));
  PetscCall(CsPriorsSetAtoms(p, d->natoms, d->atoms));
  PetscCall(CsPriorsView(p, n, kinds, PETSC_VIEWER_STDOUT_WORLD));
  PetscCall(CsPriorsDestroy(&p));
  PetscCall(CsDesignDestroy(&d));
  PetscCall(CsDatasetDestroy(&ds));
  PetscFunctionReturn(0);
}

PetscErrorCode CsCommandInspect(int argc, char **argv)
{
  char           path[PETSC_MAX_PATH_LEN] = "", kinds[256] = "";
  PetscBool      priors = PETSC_FALSE;
  PetscErrorCode ierr;

  PetscFunctionBeginUser;
  PetscCall(CsOptionsRecordBegin());
  PetscOptionsBegin(PETSC_COMM_WORLD, NULL, "Inspect", "CsCommandInspect");
  ierr = PetscOptionsString("-data", "The .h5ad file (or give it after the command)", "CsCommandInspect", path, path, sizeof(path), NULL);
  if (!ierr)
    ierr = PetscOptionsString("-priors", "Coverage of the priors (dorothea,trrust,go; all if empty)", "CsCommandInspect", kinds, kinds, sizeof(kinds),
                              &priors);
  PetscOptionsEnd();
  if (!ierr) ierr = CsSystemSetFromOptions(PETSC_COMM_WORLD);
  if (!ierr && priors) ierr = InspectPriorsOptions(PETSC_COMM_WORLD);
  PetscCall(CsOptionsRecordEnd());
  PetscCall(ierr);
  PetscCall(CsOptionsCheckUsed(PETSC_COMM_WORLD, "inspect", "none"));
  if (argc > 2 && argv[2][0] != '-') PetscCall(PetscStrncpy(path, argv[2], sizeof(path)));
  CsCheckAll(PETSC_COMM_WORLD, path[0], "usage: cellshift inspect FILE.h5ad [-priors [dorothea,trrust,go]]");
  PetscCall(CsH5adInspect(PETSC_COMM_WORLD, path, PETSC_VIEWER_STDOUT_WORLD));
  if (priors) PetscCall(InspectPriors(path));
  PetscFunctionReturn(0);
}
