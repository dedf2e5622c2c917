/* Counter-based RNG and pointwise permutations. See include/cellshift/rng.h. */
#include <cellshift/rng.h>
#include <Random123/philox.h>
#include <math.h>

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
