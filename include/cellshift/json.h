/* JSON through Jansson (Debian's libjansson): the few helpers cellshift's own files (split.json, metrics.json)
   need around it. Values are built with Jansson's json_* constructors; these helpers check every step and turn
   failures into PETSc errors. Not collective: the caller's rank does the work. */
#ifndef CELLSHIFT_JSON_H
#define CELLSHIFT_JSON_H

#include <cellshift/sys.h>
#include <jansson.h>

/* A number as a JSON real, or null where it is not finite (JSON has no NaN or Inf). */
PETSC_EXTERN json_t *CsJSONNumber(double v);
/* obj[key] = v, taking the reference to v; an error when v is NULL (a constructor failed: out of memory, or a
   string that is not UTF-8, which `what` names). */
PETSC_EXTERN PetscErrorCode CsJSONSet(json_t *obj, const char key[], json_t *v);
/* Append v to the array arr, taking the reference to v (errors as CsJSONSet). */
PETSC_EXTERN PetscErrorCode CsJSONAppend(json_t *arr, json_t *v);
/* Write root indented by 2, keys in insertion order, then a newline. */
PETSC_EXTERN PetscErrorCode CsJSONDump(const json_t *root, FILE *fp);
/* Parse the file at path; errors are input errors naming the file, line and column. */
PETSC_EXTERN PetscErrorCode CsJSONLoad(const char path[], json_t **root);

#endif
