/* Per-gene layers on [cells, genes, d] activations (GEARS-style networks, where every gene of every cell has an
   embedding): the broadcast of per-gene and per-cell embeddings, the per-gene readout, the row-norm clamp of
   embedding tables, and GEARS's autofocus loss. See include/cellshift/nn.h. Sums run in a fixed order (cells, then
   genes, then features), so results do not depend on threads; products are float, accumulations double. */
#include "nnimpl.h"
#include <math.h>

void cs_gene_broadcast_forward(float *out, const float *base, const float *pe, PetscInt B, PetscInt G, PetscInt d)
{
  for (PetscInt b = 0; b < B; b++)
    for (PetscInt g = 0; g < G; g++) {
      float       *o = out + ((size_t)b * G + g) * d;
      const float *x = base + (size_t)g * d, *p = pe ? pe + (size_t)b * d : NULL;
      if (p)
        for (PetscInt k = 0; k < d; k++) o[k] = x[k] + p[k];
      else
        for (PetscInt k = 0; k < d; k++) o[k] = x[k];
    }
}

void cs_gene_broadcast_backward(float *dbase, float *dpe, const float *dout, PetscInt B, PetscInt G, PetscInt d)
{
  if (dbase)
    for (PetscInt g = 0; g < G; g++) {
      float *db = dbase + (size_t)g * d;
      for (PetscInt k = 0; k < d; k++) {
        double s = 0;
        for (PetscInt b = 0; b < B; b++) s += dout[((size_t)b * G + g) * d + k];
        db[k] += (float)s;
      }
    }
  if (dpe)
    for (PetscInt b = 0; b < B; b++) {
      float *dp = dpe + (size_t)b * d;
      for (PetscInt k = 0; k < d; k++) {
        double s = 0;
        for (PetscInt g = 0; g < G; g++) s += dout[((size_t)b * G + g) * d + k];
        dp[k] += (float)s;
      }
    }
}

void cs_gene_readout_forward(float *out, const float *inp, const float *w, const float *bias, PetscInt B, PetscInt G, PetscInt d)
{
  for (PetscInt b = 0; b < B; b++)
    for (PetscInt g = 0; g < G; g++) {
      const float *x = inp + ((size_t)b * G + g) * d, *wg = w + (size_t)g * d;
      double       s = bias ? bias[g] : 0;
      for (PetscInt k = 0; k < d; k++) s += (double)(x[k] * wg[k]);
      out[(size_t)b * G + g] = (float)s;
    }
}

void cs_gene_readout_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w, PetscInt B,
                              PetscInt G, PetscInt d)
{
  if (dinp)
    for (PetscInt b = 0; b < B; b++)
      for (PetscInt g = 0; g < G; g++) {
        float       *dx = dinp + ((size_t)b * G + g) * d;
        const float *wg = w + (size_t)g * d;
        float        o  = dout[(size_t)b * G + g];
        for (PetscInt k = 0; k < d; k++) dx[k] += o * wg[k];
      }
  for (PetscInt g = 0; g < G; g++) {
    if (dw) {
      float *dwg = dw + (size_t)g * d;
      for (PetscInt k = 0; k < d; k++) {
        double s = 0;
        for (PetscInt b = 0; b < B; b++) s += (double)(dout[(size_t)b * G + g] * inp[((size_t)b * G + g) * d + k]);
        dwg[k] += (float)s;
      }
    }
    if (dbias) {
      double s = 0;
      for (PetscInt b = 0; b < B; b++) s += dout[(size_t)b * G + g];
      dbias[g] += (float)s;
    }
  }
}

void cs_renorm_rows(float *table, PetscInt n, PetscInt d, double max_norm)
{
  for (PetscInt i = 0; i < n; i++) {
    float *r = table + (size_t)i * d;
    double s = 0;
    for (PetscInt k = 0; k < d; k++) s += (double)r[k] * r[k];
    s = sqrt(s);
    if (s > max_norm) {
      float sc = (float)(max_norm / (s + 1e-7));
      for (PetscInt k = 0; k < d; k++) r[k] *= sc;
    }
  }
}

static inline double Sign(double x) { return (double)((x > 0) - (x < 0)); }

double cs_autofocus_loss(float *dpred, const float *pred, const float *target, const float *ref, const uint8_t *mask, const double *roww,
                         PetscInt B, PetscInt C, double gamma, double lambda)
{
  double p = 2 + gamma, total = 0;
  for (PetscInt b = 0; b < B; b++) {
    double s = 0, w = roww[b];
    for (PetscInt j = 0; j < C; j++) {
      size_t i = (size_t)b * C + j;
      double e = (double)pred[i] - target[i], ae = fabs(e);
      if (mask && !mask[i]) continue;
      s += pow(ae, p);
      if (ref) {
        double dd = Sign((double)target[i] - ref[j]) - Sign((double)pred[i] - ref[j]);
        s += lambda * dd * dd; /* piecewise constant: no gradient (as torch.sign) */
      }
      if (dpred) dpred[i] += (float)(w * p * pow(ae, p - 1) * Sign(e));
    }
    total += w * s;
  }
  return total;
}
