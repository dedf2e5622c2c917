/* Drawing helpers shared by the figures (cairo): tick steps, tick labels and placed text. Not collective: plain
   drawing into a cairo context, used by rank 0 inside a CsFileWriter. */
#ifndef CELLSHIFT_PLOT_H
#define CELLSHIFT_PLOT_H

#include <cairo.h>
#include <stddef.h>
#include <petscsys.h>

/* A tick step of 1, 2 or 5 times a power of ten giving about `want` intervals over span (> 0). */
PETSC_EXTERN double CsPlotNiceStep(double span, int want);
/* The label of tick value v for ticks `step` apart: as many decimals as step needs, -0 printed as 0. */
PETSC_EXTERN void   CsPlotTickLabel(double v, double step, char *buf, size_t len);
/* Show s with its anchor (ax, ay) in [0, 1]^2 of its extents (0, 0: top left; 0.5, 0.5: centre) at (x, y). */
PETSC_EXTERN void   CsPlotText(cairo_t *cr, double x, double y, const char *s, double ax, double ay);
/* s shortened with an ellipsis until it fits in width pixels, into out. */
PETSC_EXTERN void   CsPlotFitText(cairo_t *cr, const char *s, double width, char *out, size_t len);

#endif
