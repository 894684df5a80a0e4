/*
 * mpirun.h: starting saev-worker on N ranks from the launcher.
 *
 * Outside Slurm: `mpirun -np N [--oversubscribe] saev-worker STAGE ARGS...`, adding
 * --oversubscribe when N exceeds the cores and the root-safe Open MPI variables when run
 * as root; OPENBLAS_NUM_THREADS defaults to cores/N so ranks do not fight over cores.
 * Inside a Slurm allocation (SLURM_JOB_ID set): `srun --mpi=pmix saev-worker ...` with
 * the allocation's task count. The workers' exit status is passed through.
 */
#ifndef SAEV_LAUNCHER_MPIRUN_H
#define SAEV_LAUNCHER_MPIRUN_H

/* Path of a program installed beside the running `saev` (e.g. "saev-worker"). */
const char *launcher_sibling(const char *program);
/* Runs the worker stage on `ranks` ranks; argv (argc entries) follow the stage name.
 * Returns the exit status to pass on (0 on success). */
int launch_worker(int ranks, const char *stage, int argc, char **argv);

#endif
