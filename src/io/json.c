/* Minimal JSON writer and reader. See include/cellshift/json.h. */
#include <cellshift/json.h>
#include <ctype.h>
#include <math.h>

void CsJSONWriteString(FILE *f, const char s[])
{
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
    else if (*p == '\n') fputs("\\n", f);
    else if (*p == '\t') fputs("\\t", f);
    else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
    else fputc(*p, f);
  }
  fputc('"', f);
}

void CsJSONWriteNumber(FILE *f, double v)
{
  if (isfinite(v)) fprintf(f, "%.17g", v);
  else fputs("null", f);
}

typedef struct {
  const char *s, *path;
  size_t      at, len;
} Parser;

static void Skip(Parser *p)
{
  while (p->at < p->len && isspace((unsigned char)p->s[p->at])) p->at++;
}

static PetscErrorCode ParseValue(Parser *p, CsJSON *v, int depth);

static PetscErrorCode ParseString(Parser *p, char **out)
{
  size_t cap = 16, n = 0;
  char  *buf;

  PetscFunctionBeginUser;
  PetscCheck(p->s[p->at] == '"', PETSC_COMM_SELF, CS_ERR_INPUT, "%s: expected a string at byte %zu", p->path, p->at);
  p->at++;
  PetscCall(PetscMalloc1(cap, &buf));
  while (1) {
    PetscCheck(p->at < p->len, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: unterminated string", p->path);
    char c = p->s[p->at++];
    if (c == '"') break;
    if (c == '\\') {
      PetscCheck(p->at < p->len, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: bad escape at byte %zu", p->path, p->at);
      c = p->s[p->at++];
      switch (c) {
      case 'n': c = '\n'; break;
      case 't': c = '\t'; break;
      case 'r': c = '\r'; break;
      case 'b': c = '\b'; break;
      case 'f': c = '\f'; break;
      case 'u': { /* only the code points the writer produces (below 0x80) */
        unsigned code = 0;
        PetscCheck(p->at + 4 <= p->len && sscanf(p->s + p->at, "%4x", &code) == 1 && code < 0x80, PETSC_COMM_SELF, CS_ERR_INPUT,
                   "%s: unsupported \\u escape at byte %zu", p->path, p->at);
        p->at += 4;
        c = (char)code;
      } break;
      default: break; /* \" \\ \/ */
      }
    }
    if (n + 2 > cap) {
      cap *= 2;
      PetscCall(PetscRealloc(cap, &buf));
    }
    buf[n++] = c;
  }
  buf[n] = 0;
  *out   = buf;
  PetscFunctionReturn(0);
}

static PetscErrorCode ParseValue(Parser *p, CsJSON *v, int depth)
{
  PetscFunctionBeginUser;
  PetscCheck(depth < 64, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: nested too deeply", p->path);
  Skip(p);
  PetscCheck(p->at < p->len, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: unexpected end of file", p->path);
  memset(v, 0, sizeof(*v));
  char c = p->s[p->at];
  if (c == '{' || c == '[') {
    PetscBool obj = c == '{' ? PETSC_TRUE : PETSC_FALSE;
    v->type       = obj ? CS_JSON_OBJECT : CS_JSON_ARRAY;
    p->at++;
    Skip(p);
    if (p->at < p->len && p->s[p->at] == (obj ? '}' : ']')) {
      p->at++;
      PetscFunctionReturn(0);
    }
    while (1) {
      PetscCall(PetscRealloc(sizeof(CsJSON) * (v->n + 1), &v->items));
      if (obj) {
        PetscCall(PetscRealloc(sizeof(char *) * (v->n + 1), &v->keys));
        Skip(p);
        PetscCall(ParseString(p, &v->keys[v->n]));
        Skip(p);
        PetscCheck(p->at < p->len && p->s[p->at] == ':', PETSC_COMM_SELF, CS_ERR_INPUT, "%s: expected ':' at byte %zu", p->path, p->at);
        p->at++;
      }
      PetscCall(ParseValue(p, &v->items[v->n], depth + 1));
      v->n++;
      Skip(p);
      PetscCheck(p->at < p->len, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: unexpected end of file", p->path);
      if (p->s[p->at] == ',') {
        p->at++;
        continue;
      }
      PetscCheck(p->s[p->at] == (obj ? '}' : ']'), PETSC_COMM_SELF, CS_ERR_INPUT, "%s: expected ',' or '%c' at byte %zu", p->path,
                 obj ? '}' : ']', p->at);
      p->at++;
      break;
    }
  } else if (c == '"') {
    v->type = CS_JSON_STRING;
    PetscCall(ParseString(p, &v->string));
  } else if (!strncmp(p->s + p->at, "true", 4) || !strncmp(p->s + p->at, "false", 5)) {
    v->type   = CS_JSON_BOOL;
    v->number = c == 't';
    p->at += c == 't' ? 4 : 5;
  } else if (!strncmp(p->s + p->at, "null", 4)) {
    v->type   = CS_JSON_NULL;
    v->number = NAN;
    p->at += 4;
  } else {
    char *end;
    v->type   = CS_JSON_NUMBER;
    v->number = strtod(p->s + p->at, &end);
    PetscCheck(end != p->s + p->at, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: unexpected character at byte %zu", p->path, p->at);
    p->at = (size_t)(end - p->s);
  }
  PetscFunctionReturn(0);
}

PetscErrorCode CsJSONParseFile(const char path[], CsJSON **root)
{
  FILE  *f = fopen(path, "rb");
  long   len;
  char  *buf;
  Parser p;

  PetscFunctionBeginUser;
  PetscCheck(f, PETSC_COMM_SELF, CS_ERR_INPUT, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  len = ftell(f);
  fseek(f, 0, SEEK_SET);
  PetscCall(PetscMalloc1(len + 1, &buf));
  PetscCheck(fread(buf, 1, (size_t)len, f) == (size_t)len, PETSC_COMM_SELF, CS_ERR_INPUT, "cannot read %s", path);
  fclose(f);
  buf[len] = 0;
  p.s = buf, p.path = path, p.at = 0, p.len = (size_t)len;
  PetscCall(PetscNew(root));
  PetscCall(ParseValue(&p, *root, 0));
  Skip(&p);
  PetscCheck(p.at == p.len, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: trailing characters at byte %zu", path, p.at);
  PetscCall(PetscFree(buf));
  PetscFunctionReturn(0);
}

const CsJSON *CsJSONGet(const CsJSON *obj, const char key[])
{
  if (!obj || obj->type != CS_JSON_OBJECT) return NULL;
  for (PetscInt i = 0; i < obj->n; i++)
    if (!strcmp(obj->keys[i], key)) return &obj->items[i];
  return NULL;
}

static void FreeValue(CsJSON *v)
{
  for (PetscInt i = 0; i < v->n; i++) {
    FreeValue(&v->items[i]);
    if (v->keys) PetscFree(v->keys[i]);
  }
  PetscFree(v->items);
  PetscFree(v->keys);
  PetscFree(v->string);
}

PetscErrorCode CsJSONDestroy(CsJSON **root)
{
  PetscFunctionBeginUser;
  if (!*root) PetscFunctionReturn(0);
  FreeValue(*root);
  PetscCall(PetscFree(*root));
  PetscFunctionReturn(0);
}
