/* Every option given must be one the command reads. See commands.h.

   Which options exist is learnt from the objects themselves: while recording, "-help" is set and PETSc's help
   printer is redirected, so every options block a command runs lists its options (with their prefixes) into the
   record instead of the terminal. What was given but never read (PetscOptionsLeftGet) is unknown. */
#include "commands.h"
#include <cellshift/h5ad.h>
#include <cellshift/nn.h>
#include <cellshift/priors.h>
#include <stdarg.h>

typedef struct {
  PetscInt n, cap;
  char   **name; /* "-scgen_epochs" */
} NameSet;

static NameSet   cs_known, cs_other;
static NameSet  *cs_record = NULL;
static char      cs_line[4096];
static size_t    cs_line_len = 0;
static PetscBool cs_help_given = PETSC_FALSE;
static PetscErrorCode (*cs_help_printf)(MPI_Comm, const char[], ...) = NULL;

/* Options PETSc reads after the check (at PetscFinalize, or when a viewer or window is made): accepted as they are. */
static const char *const PetscLate[]     = {"options_left", "options_view", "citations", "log_view_reset", "checkstack", NULL};
static const char *const PetscLatePrefix[] = {"viewer_", "draw_", NULL};
/* PETSc's own options a user is likely to mistype, for the suggestions. */
static const char *const PetscCommon[] = {"-help",          "-log_view",    "-info",         "-malloc_debug",       "-malloc_dump",
                                          "-options_file",  "-options_left", "-on_error_abort", "-options_file_yaml", "-log_trace",
                                          "-memory_view",   "-version",      NULL};

static void NameSetAdd(NameSet *s, const char name[], size_t len)
{
  for (PetscInt i = 0; i < s->n; i++)
    if (strlen(s->name[i]) == len && !strncmp(s->name[i], name, len)) return;
  if (s->n == s->cap) {
    s->cap  = s->cap ? 2 * s->cap : 256;
    s->name = (char **)realloc(s->name, sizeof(char *) * (size_t)s->cap);
  }
  s->name[s->n] = strndup(name, len);
  if (s->name[s->n]) s->n++;
}

static void NameSetClear(NameSet *s)
{
  for (PetscInt i = 0; i < s->n; i++) free(s->name[i]);
  free(s->name);
  memset(s, 0, sizeof(*s));
}

static PetscBool NameSetHas(const NameSet *s, const char name[])
{
  for (PetscInt i = 0; i < s->n; i++)
    if (!strcmp(s->name[i], name)) return PETSC_TRUE;
  return PETSC_FALSE;
}

/* A help line of an option starts "  -name" followed by ' ', ':' or '<'. */
static void RecordLine(const char line[])
{
  if (strncmp(line, "  -", 3) || !cs_record) return;
  NameSetAdd(cs_record, line + 2, strcspn(line + 2, " :<\n"));
}

/* Replaces PetscHelpPrintf while recording (on every rank: the options are the same everywhere). */
static PetscErrorCode RecordPrintf(MPI_Comm comm, const char fmt[], ...)
{
  char    buf[4096];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  for (const char *c = buf; *c; c++) {
    if (*c == '\n' || cs_line_len + 1 >= sizeof(cs_line)) {
      cs_line[cs_line_len] = 0;
      RecordLine(cs_line);
      cs_line_len = 0;
      if (*c == '\n') continue;
    }
    cs_line[cs_line_len++] = *c;
  }
  return 0;
}

static PetscErrorCode RecordBegin(NameSet *into)
{
  PetscFunctionBeginUser;
  PetscCall(PetscOptionsHasName(NULL, NULL, "-help", &cs_help_given));
  if (!cs_help_given) PetscCall(PetscOptionsSetValue(NULL, "-help", NULL));
  cs_help_printf = PetscHelpPrintf;
  PetscHelpPrintf = RecordPrintf;
  cs_record = into, cs_line_len = 0;
  PetscFunctionReturn(0);
}

static PetscErrorCode RecordEnd(void)
{
  PetscFunctionBeginUser;
  if (!cs_record) PetscFunctionReturn(0);
  PetscHelpPrintf = cs_help_printf;
  cs_record       = NULL;
  if (!cs_help_given) PetscCall(PetscOptionsClearValue(NULL, "-help"));
  PetscFunctionReturn(0);
}

PetscErrorCode CsOptionsRecordBegin(void)
{
  PetscFunctionBeginUser;
  NameSetClear(&cs_known);
  PetscCall(RecordBegin(&cs_known));
  PetscFunctionReturn(0);
}

PetscErrorCode CsOptionsRecordEnd(void)
{
  PetscFunctionBeginUser;
  PetscCall(RecordEnd());
  PetscFunctionReturn(0);
}

PetscErrorCode CsOptionsQueryLate(MPI_Comm comm)
{
  CsEvaluator e;
  CsNNParams  P;
  CsNNReducer r;
  PetscReal   mb = 256;

  PetscFunctionBeginUser;
  PetscCall(CsSystemSetFromOptions(comm));
  PetscCall(CsH5adWriterOptions(comm, &mb));
  PetscCall(CsH5adReaderOptions(comm));
  PetscCall(CsEvaluatorCreate(comm, &e));
  PetscCall(CsEvaluatorSetFromOptions(e));
  PetscCall(CsEvaluatorDestroy(&e));
  { /* the priors of the models that use them (read at set-up) */
    CsPriors pr;
    PetscCall(CsPriorsCreate(comm, &pr));
    PetscCall(CsPriorsSetFromOptions(pr));
    PetscCall(CsPriorsDestroy(&pr));
  }
  /* the gradient reduction of trained models (its options are read where parameters exist) */
  PetscCall(CsNNParamsCreate(comm, &P));
  PetscCall(CsNNParamsAdd(P, "options", 1, 1, CS_NN_INIT_ZERO, 1, NULL));
  PetscCall(CsNNParamsSetUp(P));
  PetscCall(CsNNReducerCreate(comm, P, &r));
  PetscCall(CsNNReducerSetFromOptions(r));
  PetscCall(CsNNReducerDestroy(&r));
  PetscCall(CsNNParamsDestroy(&P));
  PetscFunctionReturn(0);
}

/* The options of every model type under its default name, for the message about an option of a model that is
   not in the run. Their values are not checked here: errors are ignored. */
static PetscErrorCode RecordOtherModels(MPI_Comm comm)
{
  PetscInt n;
  char   **types;

  PetscFunctionBeginUser;
  NameSetClear(&cs_other);
  PetscCall(CsStrSplit(CsModelTypeNames(), ", ", &n, &types));
  PetscCall(RecordBegin(&cs_other));
  PetscCall(PetscPushErrorHandler(PetscReturnErrorHandler, NULL));
  for (PetscInt i = 0; i < n; i++) {
    CsModel m = NULL;
    if (!CsModelCreate(comm, &m) && !CsModelSetType(m, types[i])) (void)CsModelSetFromOptions(m);
    (void)CsModelDestroy(&m);
  }
  PetscCall(PetscPopErrorHandler());
  PetscCall(RecordEnd());
  PetscCall(CsStrArrayDestroy(n, &types));
  PetscFunctionReturn(0);
}

/* Set in PETSC_OPTIONS (the site's or user's defaults for every PETSc program), or read by PETSc later. */
static PetscBool Accepted(const char name[])
{
  const char *env = getenv("PETSC_OPTIONS");

  for (PetscInt i = 0; PetscLate[i]; i++)
    if (!strcmp(name, PetscLate[i])) return PETSC_TRUE;
  for (PetscInt i = 0; PetscLatePrefix[i]; i++)
    if (!strncmp(name, PetscLatePrefix[i], strlen(PetscLatePrefix[i]))) return PETSC_TRUE;
  if (env)
    for (const char *at = strstr(env, name); at; at = strstr(at + 1, name))
      if (at > env && at[-1] == '-' && (at - 1 == env || at[-2] == ' ') && (!at[strlen(name)] || at[strlen(name)] == ' ')) return PETSC_TRUE;
  return PETSC_FALSE;
}

/* The known option closest to `opt` ("-modle" -> "-model"), or NULL when none is close. */
static const char *Closest(const char opt[])
{
  const char *best = NULL;
  PetscInt    bd = PETSC_MAX_INT, len = (PetscInt)strlen(opt) - 1, limit = PetscMax(1, len / 4);

  for (PetscInt i = 0; i < cs_known.n; i++) {
    PetscInt d = CsStrDistance(opt, cs_known.name[i]);
    if (d < bd) bd = d, best = cs_known.name[i];
  }
  for (PetscInt i = 0; PetscCommon[i]; i++) {
    PetscInt d = CsStrDistance(opt, PetscCommon[i]);
    if (d < bd) bd = d, best = PetscCommon[i];
  }
  return bd <= limit ? best : NULL;
}

/* What to tell about one unknown option. */
static void Explain(const char opt[], const char models[], char out[], size_t len)
{
  const char *near = Closest(opt);

  if (NameSetHas(&cs_other, opt)) {
    size_t p = strcspn(opt + 1, "_");
    snprintf(out, len, "%s: an option of a model named %.*s, which this run does not have (models: %s)", opt, (int)p, opt + 1, models);
  } else if (near) snprintf(out, len, "%s: did you mean %s?", opt, near);
  else snprintf(out, len, "%s: no such option", opt);
}

PetscErrorCode CsOptionsCheckUsed(MPI_Comm comm, const char command[], const char models[])
{
  PetscInt  n, nbad = 0;
  char    **names, **values, msg[CS_MSG_LEN] = "", one[512];
  PetscBool hint = PETSC_FALSE;

  PetscFunctionBeginUser;
  PetscCall(PetscOptionsLeftGet(NULL, &n, &names, &values));
  for (PetscInt i = 0; i < n; i++) nbad += !Accepted(names[i]);
  if (nbad) PetscCall(RecordOtherModels(comm));
  for (PetscInt i = 0, k = 0; i < n; i++) {
    char opt[512];
    if (Accepted(names[i])) continue;
    PetscCall(PetscSNPrintf(opt, sizeof(opt), "-%s", names[i]));
    Explain(opt, models, one, sizeof(one));
    hint = (PetscBool)(hint || strstr(one, "no such option"));
    if (strlen(msg) + strlen(one) + 8 < sizeof(msg) - 64) PetscCall(PetscSNPrintf(msg + strlen(msg), sizeof(msg) - strlen(msg), "%s%s", k++ ? "; " : "", one));
    else if (!strstr(msg, "; ...")) CsStrCat(msg, sizeof(msg), "; ...");
  }
  PetscCall(PetscOptionsLeftRestore(NULL, &n, &names, &values));
  NameSetClear(&cs_other);
  CsCheckAll(comm, !nbad, "unknown option%s for `cellshift %s`: %s%s", nbad > 1 ? "s" : "", command, msg,
             hint ? " (cellshift -help lists every option)" : "");
  PetscFunctionReturn(0);
}
