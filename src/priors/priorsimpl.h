/* Private to src/priors. */
#ifndef CELLSHIFT_PRIORSIMPL_H
#define CELLSHIFT_PRIORSIMPL_H

#include <cellshift/priors.h>
#include <zlib.h>

/* Lines of a plain or gzip-compressed text file (zlib reads both). Lines are numbered from 1; the line is
   returned without its end of line ("\n" or "\r\n") and may be modified in place. */
typedef struct {
  const char *path;
  gzFile      f;
  char       *buf;
  size_t      cap;
  PetscInt    line;
} CsLineReader;
PETSC_INTERN PetscErrorCode CsLineReaderOpen(const char path[], CsLineReader *r);
/* *line = NULL at the end of the file; a read or decompression error is an input error naming the file and line. */
PETSC_INTERN PetscErrorCode CsLineReaderNext(CsLineReader *r, char **line);
PETSC_INTERN PetscErrorCode CsLineReaderClose(CsLineReader *r);
/* Split line in place at tabs into at most maxf fields; returns the number of fields found (may exceed maxf, the
   extra ones are not stored). Fields are not trimmed. */
PETSC_INTERN int CsSplitTabs(char *line, char *f[], int maxf);

/* Edges as read, before merging: symbol pairs with a sign mask (TF priors: 1 activation, 2 repression, 4
   unknown) or a weight (GO). */
typedef struct {
  PetscInt n, cap;
  char   **src, **dst;
  int     *mask;
  double  *w;
} CsEdgeList;
PETSC_INTERN PetscErrorCode CsEdgeListAdd(CsEdgeList *e, const char src[], const char dst[], int mask, double w);
PETSC_INTERN PetscErrorCode CsEdgeListFree(CsEdgeList *e);
/* Nodes, sorted edges and merged pairs of a graph from the list (signs from masks when signed, else the
   largest weight per pair). */
PETSC_INTERN PetscErrorCode CsPriorGraphFromEdges(CsEdgeList *e, PetscBool sign, CsPriorGraph *g);
/* Collective: the graph of rank 0 on every rank. */
PETSC_INTERN PetscErrorCode CsPriorGraphBcast(MPI_Comm comm, CsPriorGraph *g);
/* Collective: strings[n] of rank 0 on every rank (allocated there; n broadcast). */
PETSC_INTERN PetscErrorCode CsStringsBcast(MPI_Comm comm, PetscInt *n, char ***s);

#endif
