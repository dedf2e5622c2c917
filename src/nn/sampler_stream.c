/* The stream sampler: the interface of a sampler over a shard that does not fit in memory. Only the interface exists:
   the row source's block operations (CsSamplerSource: blocks, read, release) and the options below; the atlas-scale
   reader provides the source and fills in the batches.

   The intended definition, rank-count independent like the others: the dataset is nblocks global blocks of
   block_rows consecutive rows; epoch e visits the blocks in a permutation keyed (seed, CS_STREAM_SHUFFLE, e), reads
   -<prefix>stream_window of them at a time (read, then release), permutes the training cells of the window with a
   permutation keyed (seed, CS_STREAM_SHUFFLE, (e + 1) << 32 | window) and cuts global batches from that order; each
   rank takes the batch's cells it owns, so nothing but the window is in memory. */
#include "trainerimpl.h"

typedef struct {
  PetscInt window; /* blocks held and shuffled together */
} Stream;

static PetscErrorCode CsSamplerSetFromOptions_Stream(CsSampler s, PetscOptionItems *PetscOptionsObject)
{
  Stream *c = (Stream *)s->data;

  PetscFunctionBeginUser;
  PetscOptionsHeadBegin(PetscOptionsObject, "Stream sampler: row blocks read on demand, shuffled within a window");
  PetscCall(PetscOptionsInt("-stream_window", "Row blocks held in memory and shuffled together", "CsSamplerSetFromOptions", c->window, &c->window, NULL));
  PetscOptionsHeadEnd();
  CsCheckAll(PetscObjectComm((PetscObject)s), c->window >= 1, "-%sstream_window must be positive", ((PetscObject)s)->prefix ? ((PetscObject)s)->prefix : "");
  PetscFunctionReturn(0);
}

static PetscErrorCode CsSamplerSetUp_Stream(CsSampler s)
{
  const char *prefix = ((PetscObject)s)->prefix ? ((PetscObject)s)->prefix : "";

  PetscFunctionBeginUser;
  CsCheckAll(PetscObjectComm((PetscObject)s), s->src.blocks && s->src.read && s->src.release,
             "-%ssampler_type stream reads row blocks on demand from a streamed row source, and the dataset has none yet (it is held in memory): "
             "use -%ssampler_type cells", prefix, prefix);
  SETERRQ(PetscObjectComm((PetscObject)s), PETSC_ERR_SUP, "the stream sampler's batches are not implemented yet");
}

static PetscErrorCode CsSamplerDestroy_Stream(CsSampler s)
{
  PetscFunctionBeginUser;
  PetscCall(PetscFree(s->data));
  PetscFunctionReturn(0);
}

PetscErrorCode CsSamplerCreate_Stream(CsSampler s)
{
  Stream *c;

  PetscFunctionBeginUser;
  PetscCall(PetscNew(&c));
  c->window              = 8;
  s->data                = c;
  s->ops->setfromoptions = CsSamplerSetFromOptions_Stream;
  s->ops->setup          = CsSamplerSetUp_Stream;
  s->ops->destroy        = CsSamplerDestroy_Stream;
  PetscFunctionReturn(0);
}
