/* Counter-based random numbers (Random123 Philox4x32-10).

   Every draw is a pure function of (seed, stream, counter): no state, no sequence. Anything that must not
   depend on the number of ranks (splits, minibatch order, dropout masks, subsamples) is keyed by a global index,
   never by a rank. Streams separate independent uses of one seed (see CS_STREAM_*). */
#ifndef CELLSHIFT_RNG_H
#define CELLSHIFT_RNG_H

#include <petscsys.h>
#include <stdint.h>

enum {
  CS_STREAM_SPLIT   = 1, /* assignment of groups to train/valid/test */
  CS_STREAM_SHUFFLE = 2, /* minibatch order; counter = epoch */
  CS_STREAM_DROPOUT = 3, /* dropout masks */
  CS_STREAM_NOISE   = 4, /* reparameterisation noise */
  CS_STREAM_INIT    = 5, /* parameter initialisation */
  CS_STREAM_SAMPLE  = 6, /* subsampling of cells */
  CS_STREAM_DATA    = 7, /* synthetic data */
  CS_STREAM_PAIR    = 8, /* control partners and control sets of the samplers */
  CS_STREAM_SET     = 9, /* groups and cells of the set and coupled samplers */
  CS_STREAM_BOOT    = 10, /* bootstrap resamples (counter = replicate, row) */
  CS_STREAM_WEIGHT  = 11, /* quality-weighted draws of the cells sampler (counter = epoch, batch position) */
  CS_STREAM_SWEEP   = 12, /* random sweep configurations (src/sweep; counter = draw, option) */
  CS_STREAM_DEPTH   = 13, /* binomial downsampling of counts; a = file row, b = gene << 32 | block of draws */
  CS_STREAM_BLOCKS  = 14  /* the stream sampler's block of each stratum in each window (key (epoch + 1) << 32 | stratum) */
};

/* Four independent 32-bit words for (seed, stream, counter hi, counter lo). */
PETSC_EXTERN void CsRng4(uint64_t seed, uint32_t stream, uint64_t a, uint64_t b, uint32_t out[4]);
/* Uniform in [0, 1) with 53 random bits. */
PETSC_EXTERN double CsRngUniform(uint64_t seed, uint32_t stream, uint64_t a, uint64_t b);
/* Two independent standard normals (Box-Muller on one Philox block). */
PETSC_EXTERN void CsRngNormal2(uint64_t seed, uint32_t stream, uint64_t a, uint64_t b, double z[2]);

/* Philox blocks CsRng4(seed, stream, a, base + q) for q in [0, 16 nchunk), word w of block q stored at
   r[64 (q / 16) + 16 w + q % 16]: the layout the vectorised consumers (dropout, noise) read. AVX-512 computes 16
   blocks at once, bit-identical to CsRng4; base + q must not carry out of the low 32 bits. */
PETSC_EXTERN void CsRngBlocks16(uint32_t *r, uint64_t seed, uint32_t stream, uint64_t a, uint64_t base, PetscInt nchunk);

/* A pseudorandom permutation of [0, n) evaluated pointwise: CsPermApply(p, i) is the i-th element.
   Built from a 4-round Feistel network on the next power of two with cycle walking, keyed by (seed, stream, key).
   O(1) memory, so a rank can find which cells of a global shuffled order it owns without storing the order. */
typedef struct {
  uint64_t n, mask, seed, key;
  uint32_t stream, halfbits;
} CsPerm;
PETSC_EXTERN void     CsPermInit(CsPerm *p, uint64_t n, uint64_t seed, uint32_t stream, uint64_t key);
PETSC_EXTERN uint64_t CsPermApply(const CsPerm *p, uint64_t i);

#endif
