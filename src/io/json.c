/* JSON helpers around Jansson. See include/cellshift/json.h. */
#include <cellshift/json.h>
#include <math.h>

json_t *CsJSONNumber(double v) { return isfinite(v) ? json_real(v) : json_null(); }

PetscErrorCode CsJSONSet(json_t *obj, const char key[], json_t *v)
{
  PetscFunctionBeginUser;
  PetscCheck(v, PETSC_COMM_SELF, PETSC_ERR_MEM, "cannot make the JSON value of '%s' (out of memory, or text that is not UTF-8)", key);
  PetscCheck(!json_object_set_new(obj, key, v), PETSC_COMM_SELF, PETSC_ERR_MEM, "cannot set the JSON member '%s'", key);
  PetscFunctionReturn(0);
}

PetscErrorCode CsJSONAppend(json_t *arr, json_t *v)
{
  PetscFunctionBeginUser;
  PetscCheck(v, PETSC_COMM_SELF, PETSC_ERR_MEM, "cannot make a JSON value (out of memory, or text that is not UTF-8)");
  PetscCheck(!json_array_append_new(arr, v), PETSC_COMM_SELF, PETSC_ERR_MEM, "cannot append to a JSON array");
  PetscFunctionReturn(0);
}

PetscErrorCode CsJSONDump(const json_t *root, FILE *fp)
{
  PetscFunctionBeginUser;
  PetscCheck(!json_dumpf(root, fp, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17)), PETSC_COMM_SELF,
             PETSC_ERR_FILE_WRITE, "cannot write JSON");
  fputc('\n', fp);
  PetscFunctionReturn(0);
}

PetscErrorCode CsJSONLoad(const char path[], json_t **root)
{
  json_error_t err;

  PetscFunctionBeginUser;
  *root = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
  PetscCheck(*root, PETSC_COMM_SELF, CS_ERR_INPUT, "%s: %s (line %d, column %d)", path, err.text, err.line, err.column);
  PetscFunctionReturn(0);
}
