/* The sweep spec: YAML through libyaml's document API (nodes keep their line for the messages), expanded into
   configurations. See sweep.h. */
#include <cellshift/sweep.h>
#include <cellshift/rng.h>
#include <yaml.h>
#include <math.h>
#include <errno.h>


typedef struct {
  const char   *file;
  yaml_document_t *doc;
} Spec;

static int Line(const yaml_node_t *n) { return (int)n->start_mark.line + 1; }

static const char *Scalar(const yaml_node_t *n) { return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL; }

/* A scalar value, or an input error naming the file and line. */
static PetscErrorCode GetScalar(Spec *s, yaml_node_t *n, const char what[], const char **v)
{
  PetscFunctionBeginUser;
  *v = Scalar(n);
  if (!*v) SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%d: %s must be a single value", s->file, Line(n), what);
  if (strpbrk(*v, " \t\n")) SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%d: %s '%s' holds white space", s->file, Line(n), what, *v);
  PetscFunctionReturn(0);
}

/* An option name as given ("-model" or "model"): without the '-', checked to be one word. */
static PetscErrorCode OptionName(Spec *s, yaml_node_t *n, char **out)
{
  const char *v;

  PetscFunctionBeginUser;
  PetscCall(GetScalar(s, n, "an option name", &v));
  if (*v == '-') v++;
  if (!*v || *v == '-') SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%d: '%s' is no option name", s->file, Line(n), Scalar(n));
  PetscCall(PetscStrallocpy(v, out));
  PetscFunctionReturn(0);
}

static PetscErrorCode Append(PetscInt *n, char ***arr, const char v[])
{
  PetscFunctionBeginUser;
  PetscCall(PetscRealloc(sizeof(char *) * (size_t)(*n + 1), arr));
  PetscCall(PetscStrallocpy(v, &(*arr)[*n]));
  (*n)++;
  PetscFunctionReturn(0);
}

/* An option of the swept ones, once: a name given twice (in grid, or grid and random) is an error. */
static PetscErrorCode AddSwept(Spec *s, CsSweep sw, yaml_node_t *key)
{
  char *name;

  PetscFunctionBeginUser;
  PetscCall(OptionName(s, key, &name));
  for (PetscInt j = 0; j < sw->nopt; j++)
    if (!strcmp(sw->opt[j], name)) {
      PetscCall(PetscFree(name));
      SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%d: option %s is swept twice", s->file, Line(key), Scalar(key));
    }
  PetscCall(PetscRealloc(sizeof(char *) * (size_t)(sw->nopt + 1), &sw->opt));
  sw->opt[sw->nopt++] = name;
  PetscFunctionReturn(0);
}

static PetscErrorCode ReadBase(Spec *s, CsSweep sw, yaml_node_t *map)
{
  PetscFunctionBeginUser;
  if (map->type != YAML_MAPPING_NODE) SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%d: options must map option names to values", s->file, Line(map));
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(s->doc, p->key), *v = yaml_document_get_node(s->doc, p->value);
    const char  *val;
    char        *name, dash[256];
    PetscCall(OptionName(s, k, &name));
    PetscCall(PetscSNPrintf(dash, sizeof(dash), "-%s", name));
    PetscInt ne = 2 * sw->nbase;
    PetscCall(PetscFree(name));
    PetscCall(GetScalar(s, v, dash, &val));
    PetscCall(Append(&ne, &sw->base, dash));
    PetscCall(Append(&ne, &sw->base, val));
    sw->nbase = ne / 2;
  }
  PetscFunctionReturn(0);
}

/* The values of one swept option: a list of scalars (or one scalar). */
static PetscErrorCode ReadList(Spec *s, yaml_node_t *v, const char name[], PetscInt *n, char ***vals)
{
  const char *x;

  PetscFunctionBeginUser;
  *n = 0, *vals = NULL;
  if (v->type == YAML_SCALAR_NODE) {
    PetscCall(GetScalar(s, v, name, &x));
    PetscCall(Append(n, vals, x));
    PetscFunctionReturn(0);
  }
  if (v->type != YAML_SEQUENCE_NODE) SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%d: the values of %s must be a list", s->file, Line(v), name);
  for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
    PetscCall(GetScalar(s, yaml_document_get_node(s->doc, *it), name, &x));
    PetscCall(Append(n, vals, x));
  }
  if (!*n) SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%d: %s lists no value", s->file, Line(v), name);
  PetscFunctionReturn(0);
}

static PetscErrorCode ReadGrid(Spec *s, CsSweep sw, yaml_node_t *map)
{
  PetscInt  *nv, nconf = 1, first = sw->nopt;
  char    ***vals;

  PetscFunctionBeginUser;
  if (map->type != YAML_MAPPING_NODE) SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%d: grid must map option names to lists of values", s->file, Line(map));
  {
    PetscInt np = (PetscInt)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
    PetscCall(PetscCalloc2(np, &nv, np, &vals));
    for (PetscInt j = 0; j < np; j++) {
      yaml_node_pair_t *p = map->data.mapping.pairs.start + j;
      PetscCall(AddSwept(s, sw, yaml_document_get_node(s->doc, p->key)));
      PetscCall(ReadList(s, yaml_document_get_node(s->doc, p->value), sw->opt[sw->nopt - 1], &nv[j], &vals[j]));
      nconf *= nv[j];
      if (nconf > 1000000) SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%d: the grid has more than 10^6 configurations", s->file, Line(map));
    }
    PetscCall(PetscCalloc1(nconf, &sw->value));
    sw->nconf = nconf;
    for (PetscInt c = 0; c < nconf; c++) {
      PetscInt r = c;
      PetscCall(PetscCalloc1(sw->nopt, &sw->value[c]));
      for (PetscInt j = np - 1; j >= 0; j--) { /* the last option varies fastest */
        PetscCall(PetscStrallocpy(vals[j][r % nv[j]], &sw->value[c][first + j]));
        r /= nv[j];
      }
    }
    for (PetscInt j = 0; j < np; j++) PetscCall(CsStrArrayDestroy(nv[j], &vals[j]));
    PetscCall(PetscFree2(nv, vals));
  }
  PetscFunctionReturn(0);
}

/* A number of a range, integral when written without '.', 'e' or 'n' (nan, inf). */
static PetscErrorCode Number(Spec *s, yaml_node_t *n, const char name[], double *x, PetscBool *integral)
{
  const char *v;
  char       *end;

  PetscFunctionBeginUser;
  PetscCall(GetScalar(s, n, name, &v));
  errno = 0;
  *x    = strtod(v, &end);
  if (*end || end == v || errno || !isfinite(*x)) SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%d: %s: '%s' is not a finite number", s->file, Line(n), name, v);
  *integral = strpbrk(v, ".eEnN") ? PETSC_FALSE : PETSC_TRUE;
  PetscFunctionReturn(0);
}

static PetscErrorCode ReadRandom(Spec *s, CsSweep sw, yaml_node_t *map)
{
  yaml_node_t *opts = NULL;
  PetscInt     n = -1, seed = 0, first = sw->nopt;

  PetscFunctionBeginUser;
  if (map->type != YAML_MAPPING_NODE) SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%d: random must hold n, seed and options", s->file, Line(map));
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(s->doc, p->key), *v = yaml_document_get_node(s->doc, p->value);
    const char  *key = Scalar(k), *x;
    char        *end;
    if (key && !strcmp(key, "options")) {
      opts = v;
      continue;
    }
    if (!key || (strcmp(key, "n") && strcmp(key, "seed")))
      SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%d: random: unknown key '%s' (n, seed, options)", s->file, Line(k), key ? key : "?");
    PetscCall(GetScalar(s, v, key, &x));
    long l = strtol(x, &end, 10);
    if (*end || end == x || l < 0 || l > 1000000) SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%d: random %s: '%s' is not an integer in [0, 10^6]", s->file, Line(v), key, x);
    if (!strcmp(key, "n")) n = (PetscInt)l;
    else seed = (PetscInt)l;
  }
  if (n < 1) SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%d: random needs n >= 1 (the number of configurations)", s->file, Line(map));
  if (!opts || opts->type != YAML_MAPPING_NODE) SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%d: random needs options: a map of option names to lists or ranges", s->file, Line(map));
  PetscCall(PetscCalloc1(n, &sw->value));
  sw->nconf = n;
  {
    PetscInt np = (PetscInt)(opts->data.mapping.pairs.top - opts->data.mapping.pairs.start);
    for (PetscInt c = 0; c < n; c++) PetscCall(PetscCalloc1(np + 1, &sw->value[c]));
  }
  for (yaml_node_pair_t *p = opts->data.mapping.pairs.start; p < opts->data.mapping.pairs.top; p++) {
    yaml_node_t *v = yaml_document_get_node(s->doc, p->value);
    PetscInt     j = sw->nopt - first;
    const char  *name;
    PetscCall(AddSwept(s, sw, yaml_document_get_node(s->doc, p->key)));
    name = sw->opt[sw->nopt - 1];
    if (v->type == YAML_MAPPING_NODE) { /* {log_uniform: [lo, hi]} or {uniform: [lo, hi]} */
      yaml_node_pair_t *q = v->data.mapping.pairs.start;
      yaml_node_t      *kind = q < v->data.mapping.pairs.top ? yaml_document_get_node(s->doc, q->key) : NULL;
      yaml_node_t      *range = kind ? yaml_document_get_node(s->doc, q->value) : NULL;
      const char       *kn = Scalar(kind);
      double            lo, hi;
      PetscBool         ilo, ihi, logu;
      if (v->data.mapping.pairs.top - q != 1 || !kn || (strcmp(kn, "log_uniform") && strcmp(kn, "uniform")))
        SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%d: %s: give a list, {log_uniform: [LO, HI]} or {uniform: [LO, HI]}", s->file, Line(v), name);
      logu = strcmp(kn, "log_uniform") ? PETSC_FALSE : PETSC_TRUE;
      if (range->type != YAML_SEQUENCE_NODE || range->data.sequence.items.top - range->data.sequence.items.start != 2)
        SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%d: %s: %s needs [LO, HI]", s->file, Line(range), name, kn);
      PetscCall(Number(s, yaml_document_get_node(s->doc, range->data.sequence.items.start[0]), name, &lo, &ilo));
      PetscCall(Number(s, yaml_document_get_node(s->doc, range->data.sequence.items.start[1]), name, &hi, &ihi));
      if (!(lo <= hi) || (logu && !(lo > 0)))
        SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%d: %s: %s range [%g, %g] needs %sLO <= HI", s->file, Line(range), name, kn, lo, hi, logu ? "0 < " : "");
      for (PetscInt c = 0; c < n; c++) {
        double u = CsRngUniform((uint64_t)seed, CS_STREAM_SWEEP, (uint64_t)c, (uint64_t)j), x;
        char   buf[64];
        x = logu ? exp(log(lo) + u * (log(hi) - log(lo))) : lo + u * (hi - lo);
        if (ilo && ihi) PetscCall(PetscSNPrintf(buf, sizeof(buf), "%.0f", PetscMin(hi, PetscMax(lo, round(x)))));
        else PetscCall(PetscSNPrintf(buf, sizeof(buf), "%.6g", x));
        PetscCall(PetscStrallocpy(buf, &sw->value[c][j]));
      }
    } else {
      PetscInt nv;
      char   **vals;
      PetscCall(ReadList(s, v, name, &nv, &vals));
      for (PetscInt c = 0; c < n; c++) {
        PetscInt pick = (PetscInt)(CsRngUniform((uint64_t)seed, CS_STREAM_SWEEP, (uint64_t)c, (uint64_t)j) * (double)nv);
        PetscCall(PetscStrallocpy(vals[PetscMin(pick, nv - 1)], &sw->value[c][j]));
      }
      PetscCall(CsStrArrayDestroy(nv, &vals));
    }
  }
  PetscFunctionReturn(0);
}

static PetscErrorCode ReadDocument(Spec *s, CsSweep sw)
{
  yaml_node_t *root = yaml_document_get_root_node(s->doc);
  yaml_node_t *grid = NULL, *random = NULL;

  PetscFunctionBeginUser;
  if (!root) SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s: the sweep spec is empty", s->file);
  if (root->type != YAML_MAPPING_NODE) SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%d: the sweep spec must be a map (options, grid or random, launcher)", s->file, Line(root));
  for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(s->doc, p->key), *v = yaml_document_get_node(s->doc, p->value);
    const char  *key = Scalar(k);
    if (key && !strcmp(key, "options")) PetscCall(ReadBase(s, sw, v));
    else if (key && !strcmp(key, "grid")) grid = v;
    else if (key && !strcmp(key, "random")) random = v;
    else if (key && !strcmp(key, "launcher")) {
      const char *l = Scalar(v);
      if (!l) SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%d: launcher must be one line (e.g. mpiexec -n 2)", s->file, Line(v));
      PetscCall(PetscStrncpy(sw->launcher, l, sizeof(sw->launcher)));
    } else SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%d: unknown key '%s' of a sweep spec (options, grid, random, launcher)", s->file, Line(k), key ? key : "?");
  }
  if (grid && random) SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s:%d: give grid or random, not both", s->file, Line(random));
  if (grid) PetscCall(ReadGrid(s, sw, grid));
  else if (random) PetscCall(ReadRandom(s, sw, random));
  else {
    PetscCall(PetscCalloc1(1, &sw->value));
    sw->nconf = 1;
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsSweepLoad(const char spec[], CsSweep *out)
{
  CsSweep         sw;
  FILE           *fp;
  yaml_parser_t   parser;
  yaml_document_t doc;
  Spec            s = {spec, &doc};
  PetscErrorCode  ierr;

  PetscFunctionBeginUser;
  *out = NULL;
  fp   = fopen(spec, "rb");
  if (!fp) SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "-spec %s: cannot open the sweep spec (%s)", spec, strerror(errno));
  if (!yaml_parser_initialize(&parser)) {
    fclose(fp);
    SETERRQ(PETSC_COMM_SELF, PETSC_ERR_MEM, "cannot start the YAML parser");
  }
  yaml_parser_set_input_file(&parser, fp);
  if (!yaml_parser_load(&parser, &doc)) {
    char msg[512];
    PetscCall(PetscSNPrintf(msg, sizeof(msg), "%s:%d: malformed YAML: %s%s%s", spec, (int)parser.problem_mark.line + 1,
                            parser.problem ? parser.problem : "parse error", parser.context ? " " : "", parser.context ? parser.context : ""));
    yaml_parser_delete(&parser);
    fclose(fp);
    SETERRQ(PETSC_COMM_SELF, CS_ERR_INPUT, "%s", msg);
  }
  yaml_parser_delete(&parser);
  fclose(fp);
  PetscCall(PetscNew(&sw));
  PetscCall(PetscStrncpy(sw->spec, spec, sizeof(sw->spec)));
  ierr = ReadDocument(&s, sw);
  yaml_document_delete(&doc);
  if (ierr) {
    PetscCall(CsSweepDestroy(&sw));
    PetscCall(ierr);
  }
  *out = sw;
  PetscFunctionReturn(0);
}

PetscErrorCode CsSweepDestroy(CsSweep *sw)
{
  PetscFunctionBeginUser;
  if (!*sw) PetscFunctionReturn(0);
  for (PetscInt c = 0; c < (*sw)->nconf; c++) {
    if (!(*sw)->value[c]) continue;
    for (PetscInt j = 0; j < (*sw)->nopt; j++) PetscCall(PetscFree((*sw)->value[c][j]));
    PetscCall(PetscFree((*sw)->value[c]));
  }
  PetscCall(PetscFree((*sw)->value));
  PetscCall(CsStrArrayDestroy(2 * (*sw)->nbase, &(*sw)->base));
  PetscCall(CsStrArrayDestroy((*sw)->nopt, &(*sw)->opt));
  PetscCall(PetscFree(*sw));
  PetscFunctionReturn(0);
}

PetscErrorCode CsSweepArgs(CsSweep sw, PetscInt c, const char dir[], int *argc, char ***argv)
{
  PetscInt n = 0;
  char   **a = NULL;

  PetscFunctionBeginUser;
  for (PetscInt i = 0; i < 2 * sw->nbase; i++)
    if (i % 2 == 0 || sw->base[i][0]) PetscCall(Append(&n, &a, sw->base[i]));
  for (PetscInt j = 0; j < sw->nopt; j++) {
    char dash[256];
    PetscCall(PetscSNPrintf(dash, sizeof(dash), "-%s", sw->opt[j]));
    PetscCall(Append(&n, &a, dash));
    if (sw->value[c][j][0]) PetscCall(Append(&n, &a, sw->value[c][j]));
  }
  PetscCall(Append(&n, &a, "-output_dir"));
  PetscCall(Append(&n, &a, dir));
  PetscCall(PetscRealloc(sizeof(char *) * (size_t)(n + 1), &a));
  a[n]  = NULL;
  *argc = (int)n, *argv = a;
  PetscFunctionReturn(0);
}

PetscErrorCode CsSweepRunDir(const char dir[], PetscInt c, char out[PETSC_MAX_PATH_LEN])
{
  char runs[PETSC_MAX_PATH_LEN], name[32];

  PetscFunctionBeginUser;
  PetscCall(CsPathJoin(dir, "runs", runs));
  PetscCall(PetscSNPrintf(name, sizeof(name), "%04" PetscInt_FMT, c));
  PetscCall(CsPathJoin(runs, name, out));
  PetscFunctionReturn(0);
}
