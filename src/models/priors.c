/* The priors of a model, placed on its dataset's genes and its design's atoms. See src/models/modelimpl.h. */
#include "modelimpl.h"

PetscErrorCode CsModelPriorsCreate(CsModel m, CsPriors *p)
{
  MPI_Comm comm = PetscObjectComm((PetscObject)m);

  PetscFunctionBeginUser;
  PetscCall(CsPriorsCreate(comm, p));
  PetscCall(CsPriorsSetFromOptions(*p));
  PetscCall(CsPriorsSetGenes(*p, m->ds->path[0] && m->ds->nfiles == 1 ? m->ds->path : NULL, m->ds->ngenes, m->ds->genes));
  PetscCall(CsPriorsSetAtoms(*p, m->design->natoms, m->design->atoms));
  PetscFunctionReturn(0);
}
