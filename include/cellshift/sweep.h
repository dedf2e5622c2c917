/* CsSweep: a grid or seeded random search over the options of `cellshift run`, one run folder per configuration,
   and the collection of every run's metrics into one table.

   The spec (YAML):
     options:            # fixed options of every run, as NAME: VALUE (the leading '-' optional; VALUE "" = a flag)
       options_file_yaml: input/norman_combo.yaml
       scgen_epochs: 5
     grid:               # cartesian product, the last option varying fastest; a scalar is a one-value list
       data_fraction: [0.25, 0.5, 1]
       model: [additive, linear, scgen]
     random:             # or: n configurations drawn with seed (counter-based: draw i of option j depends on
       n: 8              # (seed, i, j) only), each option a list (uniform choice) or a range
       seed: 0           # {log_uniform: [LO, HI]} or {uniform: [LO, HI]} (integers when both bounds are)
       options: {scgen_lr: {log_uniform: [1e-4, 1e-2]}, scgen_hidden: [128, 256]}
     launcher: mpiexec -n 2   # optional: how each run is started (default: the run on one process)
   grid and random exclude each other; neither gives one configuration of the fixed options. A swept option
   overrides a fixed one of the same name (it comes later on the run's command line).

   Layout of the sweep folder DIR: DIR/sweep.json (the spec expanded: swept option names, every configuration),
   DIR/runs/NNNN/ (configuration NNNN, from 0000: the run's own files, log.txt with its output, status.json with
   "ok" or "failed" and the exit code), DIR/collected.csv and DIR/collected.md (CsSweepCollect). */
#ifndef CELLSHIFT_SWEEP_H
#define CELLSHIFT_SWEEP_H

#include <cellshift/sys.h>

typedef struct _n_CsSweep *CsSweep;
struct _n_CsSweep {
  char      spec[PETSC_MAX_PATH_LEN];
  char      launcher[1024]; /* "" = the run as one process */
  PetscInt  nbase;
  char    **base;  /* [2 nbase]: option name (with '-') and value ("" for a flag) of every fixed option */
  PetscInt  nopt;
  char    **opt;   /* [nopt] swept option names, without '-' */
  PetscInt  nconf;
  char   ***value; /* [nconf][nopt] the value of each swept option in each configuration */
};

/* Read and expand the spec. Errors (input errors, one line): a file that cannot be read; malformed YAML
   ("FILE:LINE: what the parser found"); a spec whose shape is wrong (an unknown top-level key, a value that is
   not a scalar where one is needed, an empty list, a bad range, grid with random), naming the file and line. */
PETSC_EXTERN PetscErrorCode CsSweepLoad(const char spec[], CsSweep *sw);
PETSC_EXTERN PetscErrorCode CsSweepDestroy(CsSweep *sw);
/* The command-line arguments of `run` for configuration c, without the program and the command: the fixed
   options then the swept ones, then -output_dir dir. *argv is NULL-terminated; free with CsStrArrayDestroy(*argc). */
PETSC_EXTERN PetscErrorCode CsSweepArgs(CsSweep sw, PetscInt c, const char dir[], int *argc, char ***argv);
/* DIR/runs/NNNN of configuration c. */
PETSC_EXTERN PetscErrorCode CsSweepRunDir(const char dir[], PetscInt c, char out[PETSC_MAX_PATH_LEN]);
/* Write DIR/sweep.json (atomically). */
PETSC_EXTERN PetscErrorCode CsSweepSave(CsSweep sw, const char dir[]);
/* Run configuration c as a child process (the launcher's words, then exe run ARGS), its output in log.txt of its
   folder, and record status.json. A failing run is recorded, not an error: *ok says how it ended. With skip_done,
   a configuration whose status.json says ok is not run again. Not collective: one process drives the sweep. */
PETSC_EXTERN PetscErrorCode CsSweepRunOne(CsSweep sw, const char dir[], PetscInt c, const char exe[], PetscBool skip_done, PetscBool *ok);

/* Gather DIR/runs/NNNN into DIR/collected.csv and DIR/collected.md (rank 0 writes, atomically). One row per
   configuration and model (one row with an empty model for a run that failed or has not run). Columns, in this
   order (the header the scaling fit reads):
     run, status, <each swept option, named without '-'>, model, n_train_cells, params, <every metric of
     metrics.json in its order>
   status is ok, failed or missing; n_train_cells the perturbed training cells of the run (metrics.json); params
   the model's trained parameters from metrics.json's "params" (the models trained by CsModelTrain; empty for the
   baselines and closed-form fits); a metric that is not finite, or a run without metrics, leaves its cells empty. *nruns, *nok: configurations and successful ones. */
PETSC_EXTERN PetscErrorCode CsSweepCollect(MPI_Comm comm, const char dir[], PetscInt *nruns, PetscInt *nok);

#endif
