/* Minimal JSON for cellshift's own files (split.json, metrics.json): a writer that escapes strings, and a reader
   that parses a whole document into a tree. Not a general-purpose library: no streaming, documents are small. */
#ifndef CELLSHIFT_JSON_H
#define CELLSHIFT_JSON_H

#include <cellshift/sys.h>

/* Write s as a JSON string literal (quoted, escaped). */
PETSC_EXTERN void CsJSONWriteString(FILE *f, const char s[]);
/* Write a number; non-finite values become null (JSON has no NaN). */
PETSC_EXTERN void CsJSONWriteNumber(FILE *f, double v);

typedef enum { CS_JSON_NULL, CS_JSON_BOOL, CS_JSON_NUMBER, CS_JSON_STRING, CS_JSON_ARRAY, CS_JSON_OBJECT } CsJSONType;
typedef struct CsJSON_ CsJSON;
struct CsJSON_ {
  CsJSONType type;
  double     number;  /* NUMBER, BOOL (0/1) */
  char      *string;  /* STRING */
  PetscInt   n;       /* ARRAY, OBJECT: number of items */
  char     **keys;    /* OBJECT: [n] */
  CsJSON    *items;   /* ARRAY, OBJECT: [n] */
};

/* Parse the file at path (read on the calling rank only). Errors name the file and the byte offset. */
PETSC_EXTERN PetscErrorCode CsJSONParseFile(const char path[], CsJSON **root);
/* Member of an object (NULL if absent or not an object). */
PETSC_EXTERN const CsJSON *CsJSONGet(const CsJSON *obj, const char key[]);
PETSC_EXTERN PetscErrorCode CsJSONDestroy(CsJSON **root);

#endif
