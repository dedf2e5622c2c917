/* cellshift simulate: a ground-truth single-cell perturbation atlas of any size.

   Model. A gene regulatory network over the network genes (a random scale-free DAG, or the DoRothEA / TRRUST
   topology restricted to the best-connected regulators and their targets), plus a few mitochondrial genes "MT-k"
   outside it. Gene j's expression is the steady state of
       x_j = m_j (a_j(c) + sum_r w_rj H_rj(x_r)),   H = x^n / (K^n + x^n) (activation) or K^n / (K^n + x^n) (repression)
   where a_j(c) is the basal activity (cell types differ in the basal activities of the regulators), and m_j the
   perturbation: 1, the knockdown residual (-sim_knockdown), the activation fold (-sim_activation), for a drug
   1 / (1 + dose / IC50_j) on each of its targets; a double applies both (their interaction comes from the
   network). Solved by Gauss-Seidel fixed-point iteration (exact in one sweep on a DAG; damped on cyclic prior
   networks). The true mean response of (condition, context) is p = x / sum(x) (mito genes hold 5%).

   Cells. Cell i's condition and context are a pure function of i (a keyed permutation of the cells over a balanced
   slot pattern); its library size L_i is lognormal (-sim_depth, -sim_depth_sdlog) or drawn from the total counts of
   a real dataset (-sim_depth_from); counts y_ij ~ NB(mean L_i q_ij, dispersion theta_j), q = p times the cell's batch
   factor, renormalised. A fraction -sim_low_quality of cells is low depth (L / 10), high mito (mito genes x 10) or a
   doublet (mixed with another cell's profile, L x 1.8), flagged in obs "quality". Every draw is Philox keyed by
   (seed, cell, gene, draw): the file is identical for any number of ranks.

   Output. FILE.h5ad: X of counts in CSR (anndata's csr_matrix) or dense float32 rows (-sim_format; auto: CSR when
   under half the entries are non-zero), obs condition,
   cell_type, batch, quality, perturbation_type, dose (strings of categoricals), var index the gene names. Each rank
   generates and writes its own rows in blocks of -sim_block rows (memory per rank: the block, the network and the
   truth table, independent of the cell count); CSR and auto first count the rank's non-zeros in a generating pass
   (the ranks' non-zeros are laid out in rank order), so they generate every row twice.
   Beside it: FILE.truth.h5ad (one row per (condition, cell type), X = p, obs condition and cell_type) and
   FILE.network.tsv (source, target, sign, weight, K). */
#ifndef CELLSHIFT_SIM_H
#define CELLSHIFT_SIM_H

#include <cellshift/sys.h>

typedef struct _n_CsSim *CsSim;

PETSC_EXTERN PetscErrorCode CsSimCreate(MPI_Comm comm, CsSim *s);
/* Collective: every option of the simulator (-cells, -genes, -output, -sim_*) and the priors' options. */
PETSC_EXTERN PetscErrorCode CsSimSetFromOptions(CsSim s);
/* Collective: build the network, the conditions and every steady state (identical on every rank). */
PETSC_EXTERN PetscErrorCode CsSimSetUp(CsSim s);
/* Collective: write the cells, the truth and the network. */
PETSC_EXTERN PetscErrorCode CsSimWrite(CsSim s);
PETSC_EXTERN PetscErrorCode CsSimDestroy(CsSim *s);

#endif
