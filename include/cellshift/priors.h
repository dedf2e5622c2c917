/* Biological priors: TF -> target regulons (DoRothEA, TRRUST v2), the GO gene graph, GO annotations, and the
   gene-name index that places their gene symbols on a dataset's genes and its perturbation atoms.

   The module works on plain inputs (gene names, atom names, file paths); it comes before src/data in the module
   order, so the step from a CsDataset / CsDesign to these inputs is the caller's (src/models/priors.c for the
   models, src/cli/inspect.c for `cellshift inspect -priors`).

   Files (embedded in input/priors/, see input/priors/README.md; plain or gzip-compressed, read with zlib):
   - TRRUST v2: TSV without header, TF <TAB> target <TAB> mode <TAB> PMIDs, mode Activation / Repression /
     Unknown. A pair on several rows is one edge; its sign is +1 if the rows say Activation (and maybe Unknown),
     -1 if Repression (and maybe Unknown), 0 if only Unknown or both Activation and Repression.
   - DoRothEA: TSV with header naming the columns tf, confidence, target, mor (any order, other columns
     ignored); confidence A-E (only the requested levels are kept), mor +1 / -1 (the sign); repeated pairs merge
     as in TRRUST.
   - GO gene graph: TSV with header source, target, jaccard (the GEARS-style top-20 Jaccard list); jaccard in
     (0, 1] is the weight; a repeated pair keeps the largest weight.
   - GO annotations (gene2go): TSV with header gene_symbol, go_id: gene -> term pairs.
   Every file is read by rank 0 and broadcast (they are a few MB); a missing or malformed file is a collective
   input error naming the file and the line ("trrust.tsv:812: mode 'Activ' is not Activation, Repression or
   Unknown"). Self-loops are kept as read (a model decides whether it uses them). */
#ifndef CELLSHIFT_PRIORS_H
#define CELLSHIFT_PRIORS_H

#include <cellshift/csr.h>

/* ============================================== graphs of symbols ============================================ */
typedef enum { CS_PRIOR_DOROTHEA = 0, CS_PRIOR_TRRUST = 1, CS_PRIOR_GO = 2, CS_PRIOR_NKINDS = 3 } CsPriorKind;
PETSC_EXTERN const char *const CsPriorKinds[]; /* "dorothea", "trrust", "go" (the names options use) */

/* A directed graph over gene symbols, one edge per ordered pair. Identical on every rank after a read. */
typedef struct {
  char      name[64];  /* "dorothea A,B,C", "trrust", "go", or "dorothea A,B,C + trrust" for a union */
  PetscInt  nrows;     /* data lines read (before repeated pairs were merged) */
  PetscInt  nnodes;
  char    **nodes;     /* [nnodes] the symbols of sources and targets, sorted (strcmp), unique */
  PetscInt  nedges;
  PetscInt *src, *dst; /* [nedges] node indices, sorted by (src, dst), no pair twice */
  double   *weight;    /* [nedges] TF -> target: the sign (+1, -1, 0 = unknown or contradictory); GO: Jaccard */
} CsPriorGraph;

/* Collective: read a file on rank 0 and broadcast it. levels: the DoRothEA confidence levels to keep, e.g.
   "ABC" (NULL = "ABC"). */
PETSC_EXTERN PetscErrorCode CsPriorGraphReadTRRUST(MPI_Comm comm, const char path[], CsPriorGraph *g);
PETSC_EXTERN PetscErrorCode CsPriorGraphReadDoRothEA(MPI_Comm comm, const char path[], const char levels[], CsPriorGraph *g);
PETSC_EXTERN PetscErrorCode CsPriorGraphReadGO(MPI_Comm comm, const char path[], CsPriorGraph *g);
/* Not collective: u = the union of the edges of a and b; a pair in both keeps a's weight when b's is the same
   or 0, b's when a's is 0, and 0 when the signs contradict (TF priors); for GO-like weights use the larger.
   useMax selects the second rule. The union's nodes are the ends of its edges. */
PETSC_EXTERN PetscErrorCode CsPriorGraphUnion(const CsPriorGraph *a, const CsPriorGraph *b, PetscBool useMax, CsPriorGraph *u);
/* The node of a symbol (exact match), or -1. */
PETSC_EXTERN PetscInt       CsPriorGraphFindNode(const CsPriorGraph *g, const char symbol[]);
/* Out-degree of every node: deg[nnodes]. */
PETSC_EXTERN void           CsPriorGraphOutDegree(const CsPriorGraph *g, PetscInt deg[]);
PETSC_EXTERN PetscErrorCode CsPriorGraphFree(CsPriorGraph *g);

/* GO annotations: the term set of every gene, as a gene x term CsCSR pattern (data = 1). */
typedef struct {
  PetscInt ngenes, nterms;
  char   **genes;  /* [ngenes] sorted */
  char   **terms;  /* [nterms] sorted */
  CsCSR    member; /* ngenes x nterms, row g = the terms of gene g (sorted) */
} CsGeneSets;
/* Collective: read gene2go_symbol.tsv(.gz) on rank 0 and broadcast. */
PETSC_EXTERN PetscErrorCode CsGeneSetsReadGO(MPI_Comm comm, const char path[], CsGeneSets *s);
/* Not collective: GEARS's GO graph: for every ordered pair of distinct genes, Jaccard = |T(a) n T(b)| / |T(a) u
   T(b)|; pairs with Jaccard > threshold are kept, then the topk largest per source (ties: alphabetical target).
   Only the genes with sources[g] are sources (NULL: all; GEARS restricts them to its perturbation genes), every
   annotated gene is a node. Weights are not rounded (the embedded file holds them to 4 decimals). Time: the sum
   over sources of the sizes of their terms (3.7e8 for all of gene2go); memory: O(genes) besides the graph. */
PETSC_EXTERN PetscErrorCode CsGeneSetsJaccardGraph(const CsGeneSets *s, const PetscBool sources[], double threshold, PetscInt topk, CsPriorGraph *g);
PETSC_EXTERN PetscErrorCode CsGeneSetsFree(CsGeneSets *s);

/* ============================================== gene-name index ============================================= */
/* How a symbol found its gene: exactly in the var index, ignoring case in it, exactly in the symbol column
   (e.g. var gene_symbol when the var names are Ensembl ids), ignoring case there. */
typedef enum { CS_GENE_NONE = 0, CS_GENE_EXACT, CS_GENE_CASE, CS_GENE_SYMBOL, CS_GENE_SYMBOL_CASE } CsGeneMatch;
PETSC_EXTERN const char *const CsGeneMatches[];

typedef struct _n_CsGeneIndex *CsGeneIndex;
/* Not collective: an index over the ngenes names (the var index); symbols NULL or [ngenes] (a var column, "" or
   NULL entries allowed). Copies what it needs. A case-insensitive key shared by two genes matches neither. */
PETSC_EXTERN PetscErrorCode CsGeneIndexCreate(PetscInt ngenes, char *const names[], char *const symbols[], CsGeneIndex *idx);
/* The gene of a symbol (tried in the order of CsGeneMatch), or -1; how may be NULL. */
PETSC_EXTERN PetscInt       CsGeneIndexFind(CsGeneIndex idx, const char symbol[], CsGeneMatch *how);
PETSC_EXTERN PetscInt       CsGeneIndexSize(CsGeneIndex idx);
PETSC_EXTERN PetscErrorCode CsGeneIndexDestroy(CsGeneIndex *idx);

/* The gene an atom names: the atom itself, or with collapse, the atom without a CROP-seq guide suffix: the text
   after the last `delim` when it is all digits ("KLF1_1" -> "KLF1", "HLA-A" and "KLF1" stay). out has len bytes; out may be atom (in place). */
PETSC_EXTERN PetscErrorCode CsAtomGeneSymbol(const char atom[], PetscBool collapse, const char delim[], char out[], size_t len);

/* Not collective: the graph on the genes of idx as a sparse adjacency A (ngenes x ngenes): with by_target
   false, row i lists the targets j of source gene i (A_ij = the edge's weight); with by_target true the
   transpose (row j lists the regulators of gene j). Edges whose ends do not both map to genes are dropped; when
   two symbols map to one gene the first edge (in graph order) wins. Self-loops are kept when keep_self. Free
   with CsCSRFree. node_gene[nnodes] (may be NULL) receives the gene of every node or -1. */
PETSC_EXTERN PetscErrorCode CsPriorGraphOnGenes(const CsPriorGraph *g, CsGeneIndex idx, PetscBool by_target, PetscBool keep_self, CsCSR *A,
                                                PetscInt node_gene[]);

/* ========================================= CsPriors: options + coverage ====================================== */
/* The priors a run uses, their files, and their place on one dataset's genes and one design's atoms. Graphs are
   read on first use. Collective on comm where marked. Options (no prefix, shared by every model):
     -prior_dir DIR               folder of the embedded priors (default: the source tree's input/priors)
     -prior_dorothea FILE         default DIR/dorothea_hs/dorothea_hs.tsv.gz
     -prior_dorothea_levels ABC   confidence levels kept
     -prior_trrust FILE           default DIR/trrust_v2/trrust_rawdata.human.tsv
     -prior_go FILE               default DIR/go_gene_graph/go_jaccard_top20.tsv.gz
     -gene_symbol_key KEY         var column of gene symbols (default: the first of gene_symbol, gene_symbols,
                                  gene_name, gene_names, feature_name, symbol that exists; "none" = none)
     -atom_collapse_guides        atoms are guides: strip the suffix after -atom_guide_delimiter (default "_")
*/
typedef struct _n_CsPriors *CsPriors;
PETSC_EXTERN PetscErrorCode CsPriorsCreate(MPI_Comm comm, CsPriors *p);
PETSC_EXTERN PetscErrorCode CsPriorsSetFromOptions(CsPriors p);
/* Collective: the dataset's genes (var index names[ngenes]) and, read through io from the .h5ad at path (may be
   NULL: no symbol column), its symbol column. An explicit -gene_symbol_key that the file lacks is an input error. */
PETSC_EXTERN PetscErrorCode CsPriorsSetGenes(CsPriors p, const char path[], PetscInt ngenes, char *const names[]);
/* Not collective: the atoms (a design's atom names); each is mapped to its gene symbol and gene. */
PETSC_EXTERN PetscErrorCode CsPriorsSetAtoms(CsPriors p, PetscInt natoms, char *const atoms[]);
/* Collective on first use: the graph of a kind (read from its file). */
PETSC_EXTERN PetscErrorCode CsPriorsGetGraph(CsPriors p, CsPriorKind kind, const CsPriorGraph **g);
/* Collective on first use: a TF prior by name: "dorothea", "trrust", or a union "dorothea+trrust" (signs merged as
   in CsPriorGraphUnion). *g stays owned by p. */
PETSC_EXTERN PetscErrorCode CsPriorsGetRegulons(CsPriors p, const char spec[], const CsPriorGraph **g);
PETSC_EXTERN PetscErrorCode CsPriorsGetGeneIndex(CsPriors p, CsGeneIndex *idx);
/* The atoms' gene symbols symbol[natoms] and genes gene[natoms] (-1: not a gene of the dataset). */
PETSC_EXTERN PetscErrorCode CsPriorsGetAtomGenes(CsPriors p, PetscInt *natoms, char *const **symbol, const PetscInt **gene);
/* Not collective: the node of every atom in graph g (its symbol, exactly, else ignoring case), node[natoms], -1
   where g does not know the atom. g need not be one of p's (a model may build its own). */
PETSC_EXTERN PetscErrorCode CsPriorsGetAtomNodes(CsPriors p, const CsPriorGraph *g, PetscInt node[]);
/* Collective: print the coverage of graph g (already obtained from p): nodes, edges and sources; genes of the
   data in it and edges between them; atoms in it (as a source, with a target among the data's genes), and the
   atoms it does not know. Then nothing else is read. */
PETSC_EXTERN PetscErrorCode CsPriorsViewCoverage(CsPriors p, const CsPriorGraph *g, PetscViewer v);
/* Collective: the gene index's summary (matches by kind, symbol column used) and every graph's coverage, then
   the atoms no graph knows. kinds NULL = all three graphs. */
PETSC_EXTERN PetscErrorCode CsPriorsView(CsPriors p, PetscInt nkinds, const CsPriorKind kinds[], PetscViewer v);
PETSC_EXTERN PetscErrorCode CsPriorsDestroy(CsPriors *p);

#endif
