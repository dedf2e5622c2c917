/* Plots of CsEvaluator (cairo): for one model, small multiples of the predicted mean shift m(P) - m(C) against
   the true shift m(T) - m(C) over genes, one panel per test group. Drawn by rank 0 from the means every rank
   holds. */
#include "evalimpl.h"
#include <cellshift/plot.h>
#include <ctype.h>
#include <math.h>

#define CS_PLOT_MAX_PANELS 36
#define PANEL_W            300
#define PANEL_H            290
#define HEADER_H           62
#define MARGIN             10
/* inside a panel: room for the title, the tick labels and the axis labels */
#define PAD_L 58
#define PAD_R 12
#define PAD_T 40
#define PAD_B 46

void CsEvalPlotFileName(const char model[], char file[], size_t len)
{
  snprintf(file, len, "shift_%s.png", model);
  for (char *c = file; *c; c++)
    if (!isalnum((unsigned char)*c) && *c != '.' && *c != '_' && *c != '-') *c = '_';
}

double CsPlotNiceStep(double span, int want)
{
  double raw = span / want, p = pow(10.0, floor(log10(raw))), f = raw / p;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

void CsPlotTickLabel(double v, double step, char *buf, size_t len)
{
  int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
  if (fabs(v) < 1e-12 * step) v = 0;
  snprintf(buf, len, "%.*f", dec, v);
}

void CsPlotText(cairo_t *cr, double x, double y, const char *s, double ax, double ay)
{
  cairo_text_extents_t ext;
  cairo_text_extents(cr, s, &ext);
  cairo_move_to(cr, x - ax * ext.width - ext.x_bearing, y - ay * ext.height - ext.y_bearing);
  cairo_show_text(cr, s);
}

void CsPlotFitText(cairo_t *cr, const char *s, double width, char *out, size_t len)
{
  cairo_text_extents_t ext;
  size_t               n = strlen(s);
  snprintf(out, len, "%s", s);
  cairo_text_extents(cr, out, &ext);
  while (ext.x_advance > width && n > 1) {
    n--;
    snprintf(out, len, "%.*s...", (int)n, s);
    cairo_text_extents(cr, out, &ext);
  }
}

static void Panel(cairo_t *cr, CsEvaluator e, const CsEvalModel *m, PetscInt t, double x0, double y0)
{
  PetscInt        G = e->G;
  const double   *mP = m->mP + (size_t)t * G, *mT = e->mT + (size_t)t * G, *mC = e->mC + (size_t)t * G;
  const PetscInt *de = e->de + (size_t)t * CS_EVAL_TOP_DE;
  PetscInt        n20 = PetscMin(e->nde[t], 20);
  double          lo = 0, hi = 0, step, pw = PANEL_W - PAD_L - PAD_R, ph = PANEL_H - PAD_T - PAD_B, px = x0 + PAD_L, py = y0 + PAD_T;
  char            name[512], title[512], buf[64];

  /* One scale for both axes, so the diagonal is the line of perfect prediction. */
  for (PetscInt j = 0; j < G; j++) {
    double x = mT[j] - mC[j], y = mP[j] - mC[j];
    lo = fmin(lo, fmin(x, y)), hi = fmax(hi, fmax(x, y));
  }
  if (!(hi > lo)) lo = -1, hi = 1;
  {
    double pad = 0.05 * (hi - lo);
    lo -= pad, hi += pad;
  }
#define SX(v) (px + ((v) - lo) / (hi - lo) * pw)
#define SY(v) (py + ph - ((v) - lo) / (hi - lo) * ph)

  cairo_set_source_rgb(cr, 0.97, 0.97, 0.97);
  cairo_rectangle(cr, px, py, pw, ph);
  cairo_fill(cr);
  /* ticks and grid */
  step = CsPlotNiceStep(hi - lo, 4);
  cairo_set_font_size(cr, 10);
  for (double v = ceil(lo / step) * step; v <= hi + 1e-12 * step; v += step) {
    CsPlotTickLabel(v, step, buf, sizeof(buf));
    cairo_set_source_rgb(cr, 0.86, 0.86, 0.86);
    cairo_set_line_width(cr, 1);
    cairo_move_to(cr, SX(v), py), cairo_line_to(cr, SX(v), py + ph);
    cairo_move_to(cr, px, SY(v)), cairo_line_to(cr, px + pw, SY(v));
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_move_to(cr, SX(v), py + ph), cairo_line_to(cr, SX(v), py + ph + 4);
    cairo_move_to(cr, px, SY(v)), cairo_line_to(cr, px - 4, SY(v));
    cairo_stroke(cr);
    CsPlotText(cr, SX(v), py + ph + 7, buf, 0.5, 0);
    CsPlotText(cr, px - 7, SY(v), buf, 1, 0.5);
  }
  /* diagonal y = x */
  cairo_set_source_rgb(cr, 0.45, 0.45, 0.45);
  cairo_set_line_width(cr, 1);
  {
    double dash[] = {4, 3};
    cairo_set_dash(cr, dash, 2, 0);
    cairo_move_to(cr, SX(lo), SY(lo)), cairo_line_to(cr, SX(hi), SY(hi));
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
  }
  /* genes, then the top-20 DE genes on top */
  cairo_set_source_rgba(cr, 0.12, 0.35, 0.70, 0.45);
  for (PetscInt j = 0; j < G; j++) {
    cairo_new_sub_path(cr);
    cairo_arc(cr, SX(mT[j] - mC[j]), SY(mP[j] - mC[j]), 1.8, 0, 2 * M_PI);
  }
  cairo_fill(cr);
  cairo_set_source_rgba(cr, 0.90, 0.40, 0.05, 0.9);
  for (PetscInt i = 0; i < n20; i++) {
    PetscInt j = de[i];
    cairo_new_sub_path(cr);
    cairo_arc(cr, SX(mT[j] - mC[j]), SY(mP[j] - mC[j]), 2.6, 0, 2 * M_PI);
  }
  cairo_fill(cr);
  cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
  cairo_rectangle(cr, px, py, pw, ph);
  cairo_stroke(cr);
#undef SX
#undef SY

  /* title and axis labels */
  (void)CsDesignGroupName(e->d, e->test[t], name, sizeof(name));
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
  cairo_set_font_size(cr, 12);
  CsPlotFitText(cr, name, PANEL_W - 8, title, sizeof(title));
  CsPlotText(cr, x0 + PANEL_W / 2.0, y0 + 4, title, 0.5, 0);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 11);
  snprintf(title, sizeof(title), "pearson_delta = %.3f", m->values[(size_t)t * CS_NMETRICS + CS_M_PEARSON_DELTA]);
  CsPlotText(cr, x0 + PANEL_W / 2.0, y0 + 21, title, 0.5, 0);
  cairo_set_font_size(cr, 10);
  cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
  CsPlotText(cr, px + pw / 2, py + ph + 22, "true shift m(T) - m(C)", 0.5, 0);
  cairo_save(cr);
  cairo_translate(cr, x0 + 10, py + ph / 2);
  cairo_rotate(cr, -M_PI / 2);
  CsPlotText(cr, 0, 0, "predicted shift m(P) - m(C)", 0.5, 0.5);
  cairo_restore(cr);
}

/* Draw the figure into a PNG file; returns a cairo status. */
static cairo_status_t Draw(CsEvaluator e, const CsEvalModel *m, const char file[])
{
  PetscInt         n = PetscMin(e->ntest, CS_PLOT_MAX_PANELS), cols = (PetscInt)ceil(sqrt((double)n)), rows = (n + cols - 1) / cols;
  int              W = (int)(2 * MARGIN + cols * PANEL_W), H = (int)(HEADER_H + MARGIN + rows * PANEL_H);
  cairo_surface_t *sf;
  cairo_t         *cr;
  cairo_status_t   st;
  char             buf[768];

  if (W < 560) W = 560;
  sf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
  cr = cairo_create(sf);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
  cairo_set_font_size(cr, 15);
  snprintf(buf, sizeof(buf), "%s: predicted vs true mean shift per gene (%" PetscInt_FMT " genes)", m->name, e->G);
  CsPlotText(cr, MARGIN, 10, buf, 0, 0);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 12);
  if (e->ntest > n)
    snprintf(buf, sizeof(buf), "first %" PetscInt_FMT " of %" PetscInt_FMT " test groups shown; orange: top-20 DE genes of T vs C; dashed: y = x",
             n, e->ntest);
  else snprintf(buf, sizeof(buf), "%" PetscInt_FMT " test group%s; orange: top-20 DE genes of T vs C; dashed: y = x", e->ntest, e->ntest == 1 ? "" : "s");
  CsPlotText(cr, MARGIN, 34, buf, 0, 0);
  for (PetscInt t = 0; t < n; t++) Panel(cr, e, m, t, MARGIN + (t % cols) * PANEL_W, HEADER_H + (t / cols) * PANEL_H);
  st = cairo_status(cr);
  if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_write_to_png(sf, file);
  cairo_destroy(cr);
  cairo_surface_destroy(sf);
  return st;
}

typedef struct {
  CsEvaluator        e;
  const CsEvalModel *m;
} PlotCtx;

static PetscErrorCode WritePlot(void *ctx, const char tmp[])
{
  PlotCtx       *p  = (PlotCtx *)ctx;
  cairo_status_t st = Draw(p->e, p->m, tmp);

  PetscFunctionBeginUser;
  PetscCheck(st == CAIRO_STATUS_SUCCESS, PETSC_COMM_SELF, PETSC_ERR_FILE_WRITE, "%s", cairo_status_to_string(st));
  PetscFunctionReturn(0);
}

PetscErrorCode CsEvalPlotShift(CsEvaluator e, const CsEvalModel *m, const char path[])
{
  PlotCtx p = {e, m};

  PetscFunctionBeginUser;
  PetscCall(CsWriteFileRank0(e->comm, path, WritePlot, &p));
  PetscFunctionReturn(0);
}
