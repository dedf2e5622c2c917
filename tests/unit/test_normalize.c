/* -normalize's row transform (CsNormalizeRow) against its definition, written here with libm: the total L of the
   row in double, then every entry (float)log1p(x / L * 1e4). Rows of counts (the table path, whose log1p does not
   call libm for most counts) must give the same floats bit for bit, over a wide range of totals; rows with other
   values (fractions, counts of 256 and more, -0, NaN) and negative rows take the other paths. */
#include "testing.h"
#include "../../src/data/dataimpl.h"
#include <cellshift/rng.h>
#include <math.h>

#define G 700 /* entries of the longest row */

/* The definition; returns false on a negative entry. */
static PetscBool Reference(float x[], int64_t n, double *total)
{
  double L = 0;
  for (int64_t k = 0; k < n; k++) {
    if (x[k] < 0) return PETSC_FALSE;
    L += x[k];
  }
  *total = L;
  if (!(L > 0)) return PETSC_TRUE;
  for (int64_t k = 0; k < n; k++) x[k] = (float)log1p(x[k] / L * 1e4);
  return PETSC_TRUE;
}

static PetscErrorCode Run(void)
{
  float    a[G], b[G];
  PetscInt rows = 0, exact = 0, bad = 0;

  PetscFunctionBeginUser;
  for (int it = 0; it < 40000; it++) {
    int       kind = it % 8, n = (int)(CsRngUniform(2024, 0, (uint64_t)it, G) * G);
    double    scale = exp(CsRngUniform(2024, 0, (uint64_t)it, G + 1) * 8), La = -1, Lb = -1; /* counts from about 1 to 3000 at most */
    PetscBool ra, rb, counts = PETSC_TRUE;
    if (kind == 7) n = it % 3; /* empty and tiny rows */
    for (int k = 0; k < n; k++) {
      double u = CsRngUniform(2024, 0, (uint64_t)it, (uint64_t)k);
      float  v = (float)floor(u * u * u * scale);
      if (kind == 1 && k % 37 == 5) v = 0.25f * (float)(k % 11), counts = PETSC_FALSE; /* fractions */
      if (kind == 2 && k % 41 == 3) v = -0.0f, counts = PETSC_FALSE;
      if (kind == 3 && k == n / 2) v = -2;
      if (kind == 4 && k == n / 3) v = NAN, counts = PETSC_FALSE;
      if (kind == 5 && k % 53 == 1) v = 256 + (float)(k % 300), counts = PETSC_FALSE;
      a[k] = b[k] = v;
    }
    ra = Reference(a, n, &La);
    rb = CsNormalizeRow(b, n, &Lb);
    rows++;
    CS_EXPECT(ra == rb, "row %d (kind %d): negative entry reported %d, expected %d", it, kind, (int)rb, (int)ra);
    if (!ra || !rb) continue;
    CS_EXPECT(La == Lb || (isnan(La) && isnan(Lb)), "row %d (kind %d): total %.17g, expected %.17g", it, kind, Lb, La);
    for (int k = 0; k < n; k++) {
      PetscBool same = !memcmp(&a[k], &b[k], sizeof(float));
      /* counts sum exactly in any order, so their floats are the definition's; fractions may round the total in
         its last bit (the sum is taken in four parts) */
      if (counts || La == Lb) {
        if (!same && bad++ < 5) CS_EXPECT(same, "row %d (kind %d) entry %d: %.9g, expected %.9g", it, kind, k, (double)b[k], (double)a[k]);
        exact += same;
      } else CS_EXPECT(fabsf(a[k] - b[k]) <= 2e-7f * fabsf(a[k]) || (isnan(a[k]) && isnan(b[k])), "row %d entry %d: %.9g vs %.9g", it, k, (double)b[k], (double)a[k]);
    }
  }
  CS_EXPECT(bad == 0, "%" PetscInt_FMT " entries differ from (float)log1p(x / L * 1e4)", bad);
  CS_EXPECT(exact > 1000000, "only %" PetscInt_FMT " entries compared bit for bit", exact);
  PetscCall(PetscPrintf(PETSC_COMM_WORLD, "normalize: %" PetscInt_FMT " rows, %" PetscInt_FMT " entries bit for bit as libm\n", rows, exact));
  PetscFunctionReturn(0);
}

int main(int argc, char **argv) { return CsTestMain(argc, argv, Run); }
