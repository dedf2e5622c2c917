/* Counter-based RNG and pointwise permutations. See include/cellshift/rng.h. */
#include <cellshift/rng.h>
#include <cellshift/sys.h>
#include <Random123/philox.h>
#include <math.h>
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  #include <immintrin.h>
  #define CS_HAVE_AVX512_PATH 1
#endif

void CsRng4(uint64_t seed, uint32_t stream, uint64_t a, uint64_t b, uint32_t out[4])
{
  philox4x32_key_t k = {{(uint32_t)seed, (uint32_t)(seed >> 32) ^ (stream * 0x9E3779B9u)}};
  philox4x32_ctr_t c = {{(uint32_t)a, (uint32_t)(a >> 32), (uint32_t)b, (uint32_t)(b >> 32) ^ (stream << 16)}};
  philox4x32_ctr_t r = philox4x32(c, k);
  for (int i = 0; i < 4; i++) out[i] = r.v[i];
}

static double u53(uint32_t hi, uint32_t lo) { return (double)(((uint64_t)hi << 21) | (lo >> 11)) * 0x1.0p-53; }

double CsRngUniform(uint64_t seed, uint32_t stream, uint64_t a, uint64_t b)
{
  uint32_t r[4];
  CsRng4(seed, stream, a, b, r);
  return u53(r[0], r[1]);
}

void CsRngNormal2(uint64_t seed, uint32_t stream, uint64_t a, uint64_t b, double z[2])
{
  uint32_t r[4];
  CsRng4(seed, stream, a, b, r);
  /* 1 - u lies in (0, 1], so the logarithm is finite. */
  double u1 = 1.0 - u53(r[0], r[1]), u2 = u53(r[2], r[3]);
  double rad = sqrt(-2.0 * log(u1));
  z[0] = rad * cos(2.0 * M_PI * u2);
  z[1] = rad * sin(2.0 * M_PI * u2);
}

void CsPermInit(CsPerm *p, uint64_t n, uint64_t seed, uint32_t stream, uint64_t key)
{
  uint32_t bits = 2;
  while (bits < 64 && (1ull << bits) < n) bits++;
  if (bits & 1) bits++; /* balanced Feistel halves */
  p->n = n, p->seed = seed, p->stream = stream, p->key = key;
  p->halfbits = bits / 2;
  p->mask = (1ull << p->halfbits) - 1;
}

static uint64_t feistel(const CsPerm *p, uint64_t x)
{
  uint64_t l = x >> p->halfbits, r = x & p->mask;
  for (uint64_t round = 0; round < 4; round++) {
    uint32_t f[4];
    CsRng4(p->seed, p->stream, p->key, (round << 58) ^ r, f);
    uint64_t nl = r, nr = (l ^ (((uint64_t)f[1] << 32) | f[0])) & p->mask;
    l = nl, r = nr;
  }
  return (l << p->halfbits) | r;
}

uint64_t CsPermApply(const CsPerm *p, uint64_t i)
{
  /* Cycle walking: the Feistel map is a bijection of [0, 2^bits); re-apply until the value falls in [0, n).
     The domain is less than 4n, so the expected number of walks is below 4. */
  uint64_t x = feistel(p, i);
  while (x >= p->n) x = feistel(p, x);
  return x;
}

/* Blocks of 16 Philox calls (dropout masks, noise): the AVX-512 path draws 16 at once. */
#define CS_PHILOX_M0 0xD2511F53u
#define CS_PHILOX_M1 0xCD9E8D57u
#define CS_PHILOX_W0 0x9E3779B9u
#define CS_PHILOX_W1 0xBB67AE85u

#if defined(CS_HAVE_AVX512_PATH)

/* 32x32 -> 64-bit products of 16 lanes: even lanes with one vpmuludq, odd lanes with another. */
__attribute__((target("avx512f"))) static inline void mulhilo16(__m512i m, __m512i x, __m512i *hi, __m512i *lo)
{
  __m512i pe = _mm512_mul_epu32(m, x);
  __m512i po = _mm512_mul_epu32(m, _mm512_srli_epi64(x, 32));
  *lo        = _mm512_mask_blend_epi32(0xAAAA, pe, _mm512_slli_epi64(po, 32));
  *hi        = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 32), po);
}

/* Philox4x32-10 on 16 counters at once, bit-identical to CsRng4 (same key and counter derivation). */
__attribute__((target("avx512f"))) static void philox_chunks_avx512(uint32_t *r, uint32_t k0s, uint32_t k1s, uint32_t a0,
                                                                     uint32_t a1, uint32_t blo, uint32_t c3s, PetscInt nchunk)
{
  const __m512i M0 = _mm512_set1_epi32((int)CS_PHILOX_M0), M1 = _mm512_set1_epi32((int)CS_PHILOX_M1);
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (PetscInt k = 0; k < nchunk; k++) {
    __m512i  c0 = _mm512_set1_epi32((int)a0), c1 = _mm512_set1_epi32((int)a1), c3 = _mm512_set1_epi32((int)c3s);
    __m512i  c2 = _mm512_add_epi32(_mm512_set1_epi32((int)(blo + (uint32_t)(k * 16))), lane);
    uint32_t k0 = k0s, k1 = k1s;
    for (int round = 0; round < 10; round++) {
      __m512i h0, l0, h1, l1;
      mulhilo16(M0, c0, &h0, &l0);
      mulhilo16(M1, c2, &h1, &l1);
      __m512i n0 = _mm512_xor_si512(_mm512_xor_si512(h1, c1), _mm512_set1_epi32((int)k0));
      __m512i n2 = _mm512_xor_si512(_mm512_xor_si512(h0, c3), _mm512_set1_epi32((int)k1));
      c0 = n0, c1 = l1, c2 = n2, c3 = l0;
      k0 += CS_PHILOX_W0, k1 += CS_PHILOX_W1;
    }
    _mm512_storeu_si512((void *)(r + 64 * k), c0);
    _mm512_storeu_si512((void *)(r + 64 * k + 16), c1);
    _mm512_storeu_si512((void *)(r + 64 * k + 32), c2);
    _mm512_storeu_si512((void *)(r + 64 * k + 48), c3);
  }
}
#endif

void CsRngBlocks16(uint32_t *r /*[64 nchunk]*/, uint64_t seed, uint32_t stream, uint64_t a, uint64_t base, PetscInt nchunk)
{
#if defined(CS_HAVE_AVX512_PATH)
  if (CsHaveAVX512()) {
    /* The key and counter words exactly as CsRng4 forms them; the block index only touches the low word. */
    philox_chunks_avx512(r, (uint32_t)seed, (uint32_t)(seed >> 32) ^ (stream * 0x9E3779B9u), (uint32_t)a, (uint32_t)(a >> 32),
                         (uint32_t)base, (uint32_t)(base >> 32) ^ (stream << 16), nchunk);
    return;
  }
#endif
  for (PetscInt k = 0; k < nchunk; k++)
    for (PetscInt l = 0; l < 16; l++) {
      uint32_t w[4];
      CsRng4(seed, stream, a, base + (uint64_t)(k * 16 + l), w);
      for (int j = 0; j < 4; j++) r[64 * k + 16 * j + l] = w[j];
    }
}

