/* `cellshift scaling`: power laws of a collected table of runs, their bootstrap intervals, the crossovers of learned
   and simple models, and the log-log plots (see include/cellshift/scaling.h). Every rank parses the table (read by
   rank 0 and broadcast) and fits the same laws; rank 0 writes the files. */
#include <cellshift/scaling.h>
#include <cellshift/plot.h>
#include <cellshift/sys.h>
#include <ctype.h>
#include <math.h>

#define GRID 2001 /* points of the log grid on which the crossovers are searched before bisection */

typedef struct {
  PetscInt ncol, nrow;
  char   **head;  /* [ncol] */
  char   **cell;  /* [nrow x ncol], "" where a row is short */
} Table;

typedef struct {
  char         name[128];
  PetscBool    simple;
  PetscInt     n, ndistinct;
  double      *x, *y;
  double       xmin, xmax;
  CsPowerLawCI ci;
} Group;

typedef struct {
  const CsScalingOptions *o;
  PetscInt                ngroups; /* per metric */
  Group                  *g;       /* [ny x ngroups] */
  PetscInt                metric;  /* the metric being plotted */
} Result;

/* ---------------------------------------------------------------------------------------------------------------- */
/* The table. */

/* One CSV field starting at *p (RFC 4180 quotes: "a,b" and "" inside quotes); *p moves past the field and its comma. */
static PetscErrorCode NextField(const char **p, char **out)
{
  const char *s = *p;
  size_t      cap = 64, n = 0;
  char       *f;

  PetscFunctionBeginUser;
  PetscCall(PetscMalloc1(cap, &f));
  if (*s == '"') {
    for (s++; *s && !(*s == '"' && s[1] != '"'); s++) {
      if (*s == '"') s++;
      if (n + 2 > cap) PetscCall(PetscRealloc(cap *= 2, &f));
      f[n++] = *s;
    }
    if (*s == '"') s++;
    while (*s && *s != ',') s++;
  } else
    for (; *s && *s != ','; s++) {
      if (n + 2 > cap) PetscCall(PetscRealloc(cap *= 2, &f));
      f[n++] = *s;
    }
  f[n] = 0;
  PetscCall(CsStrTrim(f));
  if (*s == ',') s++;
  *p   = s;
  *out = f;
  PetscFunctionReturn(0);
}

static PetscErrorCode SplitLine(const char *line, PetscInt *n, char ***fields)
{
  const char *p = line;
  PetscInt    cap = 16;

  PetscFunctionBeginUser;
  *n = 0;
  PetscCall(PetscMalloc1(cap, fields));
  for (;;) {
    if (*n == cap) PetscCall(PetscRealloc(sizeof(char *) * (cap *= 2), fields));
    PetscCall(NextField(&p, &(*fields)[(*n)++]));
    if (!*p) break;
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode TableParse(const char path[], char *text, Table *t)
{
  char    *save = NULL, *line;
  PetscInt cap = 64;

  PetscFunctionBeginUser;
  PetscCall(PetscMemzero(t, sizeof(*t)));
  PetscCall(PetscMalloc1(cap, &t->cell));
  for (line = strtok_r(text, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save)) {
    PetscInt n;
    char   **f;
    if (!line[strspn(line, " \t")]) continue; /* blank line */
    PetscCall(SplitLine(line, &n, &f));
    if (!t->head) {
      t->head = f, t->ncol = n;
      continue;
    }
    PetscCheck(n <= t->ncol, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: row %" PetscInt_FMT " has %" PetscInt_FMT " fields, the header %" PetscInt_FMT, path,
               t->nrow + 1, n, t->ncol);
    if (t->nrow + 1 > cap / t->ncol) PetscCall(PetscRealloc(sizeof(char *) * (cap = 2 * cap + 2 * t->ncol), &t->cell));
    for (PetscInt k = 0; k < t->ncol; k++) {
      if (k < n) t->cell[t->nrow * t->ncol + k] = f[k];
      else PetscCall(PetscStrallocpy("", &t->cell[t->nrow * t->ncol + k]));
    }
    PetscCall(PetscFree(f));
    t->nrow++;
  }
  PetscCheck(t->head, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: an empty table (no header)", path);
  PetscFunctionReturn(0);
}

static void TableDestroy(Table *t)
{
  for (PetscInt k = 0; k < t->ncol; k++) PetscFree(t->head[k]);
  for (PetscInt k = 0; k < t->nrow * t->ncol; k++) PetscFree(t->cell[k]);
  PetscFree(t->head);
  PetscFree(t->cell);
}

static PetscInt Column(const Table *t, const char name[])
{
  for (PetscInt k = 0; k < t->ncol; k++)
    if (!strcmp(t->head[k], name)) return k;
  return -1;
}

/* Rank 0 reads the file; every rank gets its text (NUL-terminated). */
static PetscErrorCode ReadText(MPI_Comm comm, const char path[], char **text)
{
  PetscMPIInt rank;
  long        len = -1;
  char       *buf = NULL;

  PetscFunctionBeginUser;
  PetscCallMPI(MPI_Comm_rank(comm, &rank));
  if (!rank) {
    FILE *fp = fopen(path, "rb");
    if (fp && !fseek(fp, 0, SEEK_END) && (len = ftell(fp)) >= 0 && !fseek(fp, 0, SEEK_SET)) {
      PetscCall(PetscMalloc1(len + 1, &buf));
      if (fread(buf, 1, (size_t)len, fp) != (size_t)len) len = -1;
      else buf[len] = 0;
    } else len = -1;
    if (fp) fclose(fp);
  }
  PetscCallMPI(MPI_Bcast(&len, 1, MPI_LONG, 0, comm));
  CsCheckAll(comm, len >= 0, "-table %s: cannot read the file", path);
  if (rank) PetscCall(PetscMalloc1(len + 1, &buf));
  PetscCallMPI(MPI_Bcast(buf, (PetscMPIInt)(len + 1), MPI_CHAR, 0, comm));
  *text = buf;
  PetscFunctionReturn(0);
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Fits. */

static PetscBool Number(const char *s, double *v)
{
  char *end;
  if (!s[0]) return PETSC_FALSE;
  *v = strtod(s, &end);
  return !*end && isfinite(*v) ? PETSC_TRUE : PETSC_FALSE;
}

static int CmpStr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static PetscErrorCode FitGroups(const CsScalingOptions *o, const Table *t, Result *r)
{
  PetscInt cx = Column(t, o->x), cb = Column(t, o->by), cs = Column(t, "status"), nnames = 0;
  char   **names;

  PetscFunctionBeginUser;
  PetscCheck(cx >= 0, PETSC_COMM_SELF, CS_ERR_INPUT, "-x %s: %s has no such column", o->x, o->table);
  PetscCheck(cb >= 0, PETSC_COMM_SELF, CS_ERR_INPUT, "-by %s: %s has no such column", o->by, o->table);
  for (PetscInt m = 0; m < o->ny; m++) PetscCheck(Column(t, o->y[m]) >= 0, PETSC_COMM_SELF, CS_ERR_INPUT, "-y %s: %s has no such column", o->y[m], o->table);
  /* the groups: the distinct values of -by, sorted */
  PetscCall(PetscMalloc1(t->nrow + 1, &names));
  for (PetscInt i = 0; i < t->nrow; i++) {
    const char *v = t->cell[i * t->ncol + cb];
    PetscBool   seen = PETSC_FALSE;
    for (PetscInt k = 0; k < nnames && !seen; k++) seen = strcmp(names[k], v) ? PETSC_FALSE : PETSC_TRUE;
    if (!seen && v[0]) names[nnames++] = (char *)v;
  }
  qsort(names, (size_t)nnames, sizeof(char *), CmpStr);
  PetscCheck(nnames > 0, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: no rows with a value of -by %s", o->table, o->by);
  r->ngroups = nnames;
  PetscCall(PetscCalloc1(o->ny * nnames, &r->g));
  for (PetscInt m = 0; m < o->ny; m++) {
    PetscInt cy = Column(t, o->y[m]);
    for (PetscInt k = 0; k < nnames; k++) {
      Group *g = &r->g[m * nnames + k];
      PetscCall(PetscStrncpy(g->name, names[k], sizeof(g->name)));
      for (PetscInt s = 0; s < o->nsimple; s++)
        if (!strcmp(o->simple[s], g->name)) g->simple = PETSC_TRUE;
      PetscCall(PetscMalloc2(t->nrow + 1, &g->x, t->nrow + 1, &g->y));
      g->xmin = INFINITY, g->xmax = -INFINITY;
      for (PetscInt i = 0; i < t->nrow; i++) {
        const char *const *row = (const char *const *)t->cell + i * t->ncol;
        double             xv, yv;
        if (strcmp(row[cb], g->name) || (cs >= 0 && row[cs][0] && strcmp(row[cs], "ok"))) continue;
        if (!Number(row[cx], &xv) || !(xv > 0) || !Number(row[cy], &yv)) continue;
        g->x[g->n] = xv, g->y[g->n] = yv, g->n++;
        g->xmin = fmin(g->xmin, xv), g->xmax = fmax(g->xmax, xv);
      }
      for (PetscInt i = 0; i < g->n; i++) {
        PetscBool seen = PETSC_FALSE;
        for (PetscInt j = 0; j < i && !seen; j++) seen = g->x[j] == g->x[i] ? PETSC_TRUE : PETSC_FALSE;
        if (!seen) g->ndistinct++;
      }
      {
        char what[512];
        PetscCall(PetscSNPrintf(what, sizeof(what), "%s = %s, -y %s against %s", o->by, g->name, o->y[m], o->x));
        PetscCall(CsPowerLawBootstrap(what, g->n, g->x, g->y, o->nboot, o->seed, o->level, &g->ci));
      }
    }
  }
  PetscCall(PetscFree(names));
  PetscFunctionReturn(0);
}

/* The x intervals in [lo, hi] where the simple law is below the learned one: a log grid, then bisection of each sign
   change of d = L_simple - L_learned. iv[2k], iv[2k+1] bound interval k (at most GRID / 2 of them). */
static PetscInt Crossover(const CsPowerLaw *learned, const CsPowerLaw *simple, double lo, double hi, double *iv)
{
  PetscInt n = 0;
  double   l0 = log(lo), l1 = log(hi), prev = 0;
  for (PetscInt k = 0; k < GRID; k++) {
    double u = l0 + (l1 - l0) * k / (GRID - 1), d = CsPowerLawEval(simple, exp(u)) - CsPowerLawEval(learned, exp(u));
    if (k == 0) {
      if (d < 0) iv[n++] = lo;
    } else if ((d < 0) != (prev < 0)) {
      double a = l0 + (l1 - l0) * (k - 1) / (GRID - 1), b = u;
      for (int it = 0; it < 60; it++) {
        double mid = 0.5 * (a + b), dm = CsPowerLawEval(simple, exp(mid)) - CsPowerLawEval(learned, exp(mid));
        if ((dm < 0) == (prev < 0)) a = mid;
        else b = mid;
      }
      iv[n++] = exp(0.5 * (a + b));
    }
    prev = d;
  }
  if (n % 2) iv[n++] = hi;
  return n / 2;
}

/* ---------------------------------------------------------------------------------------------------------------- */
/* Outputs. */

static PetscErrorCode WriteCSV(void *ctx, FILE *fp)
{
  Result                 *r = (Result *)ctx;
  const CsScalingOptions *o = r->o;

  PetscFunctionBeginUser;
  fprintf(fp, "metric,%s,points,distinct_x,x_min,x_max,a,a_lo,a_hi,alpha,alpha_lo,alpha_hi,c,c_lo,c_hi,rss,bootstrap,bootstrap_skipped,simple\n", o->by);
  for (PetscInt m = 0; m < o->ny; m++)
    for (PetscInt k = 0; k < r->ngroups; k++) {
      const Group        *g = &r->g[m * r->ngroups + k];
      const CsPowerLawCI *c = &g->ci;
      fprintf(fp, "%s,%s,%" PetscInt_FMT ",%" PetscInt_FMT ",%.17g,%.17g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%" PetscInt_FMT ",%" PetscInt_FMT ",%d\n",
              o->y[m], g->name, g->n, g->ndistinct, g->xmin, g->xmax, c->fit.a, c->lo[0], c->hi[0], c->fit.alpha, c->lo[1], c->hi[1], c->fit.c, c->lo[2],
              c->hi[2], c->fit.rss, c->nboot, c->nskipped, g->simple ? 1 : 0);
    }
  PetscFunctionReturn(0);
}

/* Calls fn(ctx, metric, learned, simple, lo, hi, nint, iv) for every pair of the table. */
typedef void (*PairFn)(void *ctx, const char *metric, const Group *l, const Group *s, double lo, double hi, PetscInt nint, const double *iv);

static void ForPairs(const Result *r, PairFn fn, void *ctx)
{
  double iv[GRID + 1];
  for (PetscInt m = 0; m < r->o->ny; m++)
    for (PetscInt i = 0; i < r->ngroups; i++) {
      const Group *l = &r->g[m * r->ngroups + i];
      if (l->simple) continue;
      for (PetscInt j = 0; j < r->ngroups; j++) {
        const Group *s  = &r->g[m * r->ngroups + j];
        double       lo = fmax(l->xmin, s->xmin), hi = fmin(l->xmax, s->xmax);
        PetscInt     nint = 0;
        if (!s->simple) continue;
        if (lo < hi) nint = Crossover(&l->ci.fit, &s->ci.fit, lo, hi, iv);
        fn(ctx, r->o->y[m], l, s, lo, hi, lo < hi ? nint : -1, iv);
      }
    }
}

static void PairCSV(void *ctx, const char *metric, const Group *l, const Group *s, double lo, double hi, PetscInt nint, const double *iv)
{
  FILE *fp = (FILE *)ctx;
  if (nint <= 0) fprintf(fp, "%s,%s,%s,%.10g,%.10g,%s,,\n", metric, l->name, s->name, lo, hi, nint < 0 ? "no_common_range" : "never");
  for (PetscInt k = 0; k < nint; k++)
    fprintf(fp, "%s,%s,%s,%.10g,%.10g,%s,%.10g,%.10g\n", metric, l->name, s->name, lo, hi,
            iv[2 * k] <= lo && iv[2 * k + 1] >= hi ? "always" : "partly", iv[2 * k], iv[2 * k + 1]);
}

static PetscErrorCode WriteCrossCSV(void *ctx, FILE *fp)
{
  PetscFunctionBeginUser;
  fprintf(fp, "metric,learned,simple,x_lo,x_hi,simple_better,from,to\n");
  ForPairs((Result *)ctx, PairCSV, fp);
  PetscFunctionReturn(0);
}

static void PairMD(void *ctx, const char *metric, const Group *l, const Group *s, double lo, double hi, PetscInt nint, const double *iv)
{
  FILE *fp = (FILE *)ctx;
  fprintf(fp, "| %s | %s | %s | %.4g – %.4g | ", metric, l->name, s->name, lo, hi);
  if (nint < 0) fprintf(fp, "no common range |\n");
  else if (nint == 0) fprintf(fp, "never |\n");
  else {
    for (PetscInt k = 0; k < nint; k++) fprintf(fp, "%s%.4g – %.4g", k ? ", " : "", iv[2 * k], iv[2 * k + 1]);
    fprintf(fp, " |\n");
  }
}

static PetscErrorCode WriteMD(void *ctx, FILE *fp)
{
  Result                 *r = (Result *)ctx;
  const CsScalingOptions *o = r->o;

  PetscFunctionBeginUser;
  fprintf(fp, "# Scaling laws: L(%s) = a %s^-alpha + c\n\n", o->x, o->x);
  fprintf(fp, "Fitted by bounded Gauss-Newton (PETSc TAOBRGN, a, alpha, c >= 0); intervals: %g%% bootstrap percentiles of %" PetscInt_FMT " resamples of the rows (seed %llu).\n\n",
          100 * o->level, o->nboot, (unsigned long long)o->seed);
  fprintf(fp, "| metric | %s | points | distinct %s | a | alpha | c | rss |\n|---|---|---|---|---|---|---|---|\n", o->by, o->x);
  for (PetscInt m = 0; m < o->ny; m++)
    for (PetscInt k = 0; k < r->ngroups; k++) {
      const Group        *g = &r->g[m * r->ngroups + k];
      const CsPowerLawCI *c = &g->ci;
      fprintf(fp, "| %s | %s%s | %" PetscInt_FMT " | %" PetscInt_FMT " | %.4g [%.4g, %.4g] | %.3f [%.3f, %.3f] | %.4g [%.4g, %.4g] | %.3g |\n", o->y[m], g->name,
              g->simple ? " (simple)" : "", g->n, g->ndistinct, c->fit.a, c->lo[0], c->hi[0], c->fit.alpha, c->lo[1], c->hi[1], c->fit.c, c->lo[2], c->hi[2], c->fit.rss);
    }
  fprintf(fp, "\n## Where a simple model's fitted loss is lower than a learned model's\n\n");
  fprintf(fp, "Within the range of %s both were run at (no extrapolation), from the point fits.\n\n", o->x);
  fprintf(fp, "| metric | learned | simple | common range | simple lower for %s in |\n|---|---|---|---|---|\n", o->x);
  ForPairs(r, PairMD, fp);
  PetscFunctionReturn(0);
}

/* The plot of one metric: log-log axes, the points and fitted curve of every group. */
#define PW 760
#define PH 520
#define PL 78
#define PR 230
#define PT 52
#define PB 56

static void LogTicks(cairo_t *cr, double lo, double hi, PetscBool xaxis, double px, double py, double pw, double ph)
{
  double l0 = log10(lo), l1 = log10(hi);
  /* mantissas of the ticks: 1..9 within a decade, 1, 2, 5 over a few, 1 beyond */
  int    all[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, few[3] = {1, 2, 5}, *ms = l1 - l0 < 1 ? all : few, nm = l1 - l0 < 1 ? 9 : l1 - l0 < 2.5 ? 3 : 1;
  char   buf[64];
  for (int e = (int)floor(l0); e <= (int)ceil(l1); e++)
    for (int q = 0; q < nm; q++) {
      double v = ms[q] * pow(10.0, e), t = (log10(v) - l0) / (l1 - l0);
      if (t < -1e-9 || t > 1 + 1e-9) continue;
      snprintf(buf, sizeof(buf), "%g", v);
      cairo_set_source_rgb(cr, 0.86, 0.86, 0.86);
      if (xaxis) cairo_move_to(cr, px + t * pw, py), cairo_line_to(cr, px + t * pw, py + ph);
      else cairo_move_to(cr, px, py + ph - t * ph), cairo_line_to(cr, px + pw, py + ph - t * ph);
      cairo_stroke(cr);
      cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
      if (xaxis) CsPlotText(cr, px + t * pw, py + ph + 6, buf, 0.5, 0);
      else CsPlotText(cr, px - 6, py + ph - t * ph, buf, 1, 0.5);
    }
}

static PetscErrorCode WritePlot(void *ctx, const char tmp[])
{
  Result                 *r = (Result *)ctx;
  const CsScalingOptions *o = r->o;
  const Group            *G = r->g + r->metric * r->ngroups;
  static const double     col[8][3] = {{0.12, 0.35, 0.70}, {0.85, 0.37, 0.01}, {0.17, 0.63, 0.17}, {0.84, 0.15, 0.16},
                                        {0.58, 0.40, 0.74}, {0.55, 0.34, 0.29}, {0.89, 0.47, 0.76}, {0.50, 0.50, 0.50}};
  double                  xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY, px = PL, py = PT, pw = PW - PL - PR, ph = PH - PT - PB;
  cairo_surface_t        *sf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, PW, PH);
  cairo_t                *cr = cairo_create(sf);
  cairo_status_t          st;
  char                    buf[512], fit[256];

  PetscFunctionBeginUser;
  for (PetscInt k = 0; k < r->ngroups; k++)
    for (PetscInt i = 0; i < G[k].n; i++) {
      xlo = fmin(xlo, G[k].x[i]), xhi = fmax(xhi, G[k].x[i]);
      if (G[k].y[i] > 0) ylo = fmin(ylo, G[k].y[i]), yhi = fmax(yhi, G[k].y[i]);
    }
  if (!(yhi > ylo)) ylo = isfinite(ylo) ? ylo / 2 : 0.1, yhi = isfinite(yhi) ? yhi * 2 : 1;
  xlo /= 1.3, xhi *= 1.3, ylo /= 1.15, yhi *= 1.15;
#define SX(v) (px + (log10(v) - log10(xlo)) / (log10(xhi) - log10(xlo)) * pw)
#define SY(v) (py + ph - (log10(v) - log10(ylo)) / (log10(yhi) - log10(ylo)) * ph)
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_set_source_rgb(cr, 0.97, 0.97, 0.97);
  cairo_rectangle(cr, px, py, pw, ph);
  cairo_fill(cr);
  cairo_set_line_width(cr, 1);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 10);
  LogTicks(cr, xlo, xhi, PETSC_TRUE, px, py, pw, ph);
  LogTicks(cr, ylo, yhi, PETSC_FALSE, px, py, pw, ph);
  cairo_save(cr);
  cairo_rectangle(cr, px, py, pw, ph);
  cairo_clip(cr);
  for (PetscInt k = 0; k < r->ngroups; k++) {
    const double *c = col[k % 8];
    cairo_set_source_rgba(cr, c[0], c[1], c[2], 0.8);
    for (PetscInt i = 0; i < G[k].n; i++) {
      if (!(G[k].y[i] > 0)) continue;
      cairo_new_sub_path(cr);
      cairo_arc(cr, SX(G[k].x[i]), SY(G[k].y[i]), 3.2, 0, 2 * M_PI);
    }
    cairo_fill(cr);
    /* the fit over the group's own range of x */
    cairo_set_line_width(cr, 2);
    if (G[k].simple) {
      double dash[] = {6, 4};
      cairo_set_dash(cr, dash, 2, 0);
    }
    for (int s = 0, first = 1; s <= 200; s++) {
      double v = exp(log(G[k].xmin) + (log(G[k].xmax) - log(G[k].xmin)) * s / 200.0), yv = CsPowerLawEval(&G[k].ci.fit, v);
      if (!(yv > 0)) continue;
      if (first) cairo_move_to(cr, SX(v), SY(yv)), first = 0;
      else cairo_line_to(cr, SX(v), SY(yv));
    }
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
  }
  cairo_restore(cr);
  cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, px, py, pw, ph);
  cairo_stroke(cr);
#undef SX
#undef SY
  /* legend: the group, alpha and its interval */
  for (PetscInt k = 0; k < r->ngroups; k++) {
    const double *c = col[k % 8];
    double        ly = py + 8 + 34 * k;
    cairo_set_source_rgb(cr, c[0], c[1], c[2]);
    cairo_rectangle(cr, px + pw + 14, ly + 2, 12, 12);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_font_size(cr, 11);
    snprintf(buf, sizeof(buf), "%s%s", G[k].name, G[k].simple ? " (simple)" : "");
    CsPlotFitText(cr, buf, PR - 40, fit, sizeof(fit));
    CsPlotText(cr, px + pw + 32, ly, fit, 0, 0);
    cairo_set_font_size(cr, 10);
    snprintf(buf, sizeof(buf), "alpha %.2f [%.2f, %.2f], c %.3g", G[k].ci.fit.alpha, G[k].ci.lo[1], G[k].ci.hi[1], G[k].ci.fit.c);
    CsPlotFitText(cr, buf, PR - 40, fit, sizeof(fit));
    CsPlotText(cr, px + pw + 32, ly + 15, fit, 0, 0);
  }
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
  cairo_set_font_size(cr, 14);
  snprintf(buf, sizeof(buf), "%s against %s: fits %s = a %s^-alpha + c", o->y[r->metric], o->x, o->y[r->metric], o->x);
  CsPlotText(cr, 10, 10, buf, 0, 0);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 11);
  snprintf(buf, sizeof(buf), "log-log axes; %g%% bootstrap intervals; dashed: simple models", 100 * o->level);
  CsPlotText(cr, 10, 30, buf, 0, 0);
  CsPlotText(cr, px + pw / 2, py + ph + 26, o->x, 0.5, 0);
  cairo_save(cr);
  cairo_translate(cr, 16, py + ph / 2);
  cairo_rotate(cr, -M_PI / 2);
  CsPlotText(cr, 0, 0, o->y[r->metric], 0.5, 0.5);
  cairo_restore(cr);
  st = cairo_status(cr);
  if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_write_to_png(sf, tmp);
  cairo_destroy(cr);
  cairo_surface_destroy(sf);
  PetscCheck(st == CAIRO_STATUS_SUCCESS, PETSC_COMM_SELF, PETSC_ERR_FILE_WRITE, "%s", cairo_status_to_string(st));
  PetscFunctionReturn(0);
}

PetscErrorCode CsScalingRun(MPI_Comm comm, const CsScalingOptions *o)
{
  char          *text;
  Table          t;
  Result         r = {o, 0, NULL, 0};
  PetscErrorCode ierr;
  char           path[PETSC_MAX_PATH_LEN];

  PetscFunctionBeginUser;
  CsCheckAll(comm, o->ny >= 1, "-y: no metric given");
  PetscCall(ReadText(comm, o->table, &text));
  /* every rank parses and fits the same table the same way: an input error is raised on all of them alike */
  ierr = TableParse(o->table, text, &t);
  if (!ierr) ierr = FitGroups(o, &t, &r);
  PetscCall(CsAgreeCode(comm, ierr, "cellshift scaling"));
  PetscCall(CsMakeDir(comm, o->outdir));
  PetscCall(CsPathJoin(o->outdir, "scaling.csv", path));
  PetscCall(CsWriteTextRank0(comm, path, WriteCSV, &r));
  PetscCall(CsPathJoin(o->outdir, "crossover.csv", path));
  PetscCall(CsWriteTextRank0(comm, path, WriteCrossCSV, &r));
  PetscCall(CsPathJoin(o->outdir, "scaling.md", path));
  PetscCall(CsWriteTextRank0(comm, path, WriteMD, &r));
  for (r.metric = 0; r.metric < o->ny; r.metric++) {
    char name[256];
    PetscCall(PetscSNPrintf(name, sizeof(name), "scaling_%s.png", o->y[r.metric]));
    for (char *c = name; *c; c++)
      if (!isalnum((unsigned char)*c) && *c != '.' && *c != '_' && *c != '-') *c = '_';
    PetscCall(CsPathJoin(o->outdir, name, path));
    PetscCall(CsWriteFileRank0(comm, path, WritePlot, &r));
  }
  for (PetscInt k = 0; k < o->ny * r.ngroups; k++) PetscCall(PetscFree2(r.g[k].x, r.g[k].y));
  PetscCall(PetscFree(r.g));
  TableDestroy(&t);
  PetscCall(PetscFree(text));
  PetscFunctionReturn(0);
}
