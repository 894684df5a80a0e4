/*
 * mpirun.h: starting saev-worker on N ranks from the launcher.
 *
 * Outside Slurm: `mpirun -np N [--oversubscribe] [--bind-to none] saev-worker STAGE
 * ARGS...`, adding --oversubscribe when N exceeds the cores, --bind-to none when a rank
 * runs more than one thread (Open MPI would pin it to one core), and the root-safe Open
 * MPI variables when run as root; OPENBLAS_NUM_THREADS defaults to cores/N so ranks do
 * not fight over cores.
 * Inside a Slurm allocation (SLURM_JOB_ID set): `srun --mpi=pmix saev-worker ...` with
 * the allocation's task count. The workers' exit status is passed through.
 */
#ifndef SAEV_LAUNCHER_MPIRUN_H
#define SAEV_LAUNCHER_MPIRUN_H

#include "saev_config.h"

/* The folder holding the running `saev` binary. */
const char *launcher_dir(void);
/* The folder of the project's data files of one kind (sub: "slurm" for the batch-script
 * templates, "web" for the viewer's pages), the first of these that holds `probe`:
 *   $SAEV_SHARE_DIR/<sub>                      (an override, for relocated installs)
 *   <launcher_dir>/../share/saev-c/<sub>       (an installed prefix: bin/ beside share/)
 *   <source tree>/<sub>                        (any build, in the source tree or out of it:
 *                                               the source folder is compiled in)
 * NULL when none does; `tried` (if given) gets the folders looked at, for the message. */
const char *saev_share_dir(const char *sub, const char *probe, char *tried, size_t tried_len);
/* Path of a program installed beside the running `saev` (e.g. "saev-worker"). */
const char *launcher_sibling(const char *program);
/* Runs the worker stage on `ranks` ranks; argv (argc entries) follow the stage name.
 * Returns the exit status to pass on (0 on success). */
int launch_worker(int ranks, const char *stage, int argc, char **argv);

/* For a config-driven stage (`saev STAGE [CONFIG] [--set ...] [--ranks N] [--device D]`):
 * loads and checks the whole config here first, so a bad config fails with status 2
 * before any rank starts or anything is written, then runs the stage on run.ranks ranks
 * with the same arguments (every rank reads the same config). `check`, when given, adds
 * the stage's own checks of the loaded configs (a missing data file, ...) and ends the
 * job with a usage error when they fail. `usage` is printed for --help. Returns the
 * exit status. */
typedef void (*StageCheck)(SaevConfig *configs, int n, const char *config_path);
int launch_config_stage(const char *stage, const char *usage, int config_required, StageCheck check, int argc, char **argv);

#endif
