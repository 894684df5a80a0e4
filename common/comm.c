/*
 * comm.c: the MPI half of comm.h (the NCCL half is comm_nccl.cu).
 */
#include "comm.h"

#include <mpi.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "log.h"

static int g_rank = 0, g_size = 1, g_local_rank = 0, g_local_size = 1;
static MPI_Comm g_local = MPI_COMM_NULL;

void comm_init(int *argc, char ***argv) {
    int provided = 0;
    mpiCheck(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    /* Errors come back as codes so mpiCheck can report them with file:line. */
    mpiCheck(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    mpiCheck(MPI_Comm_rank(MPI_COMM_WORLD, &g_rank));
    mpiCheck(MPI_Comm_size(MPI_COMM_WORLD, &g_size));
    mpiCheck(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &g_local));
    mpiCheck(MPI_Comm_rank(g_local, &g_local_rank));
    mpiCheck(MPI_Comm_size(g_local, &g_local_size));
    log_init(g_rank, g_size);
    /* Under Slurm the world must be exactly the tasks Slurm started; a mismatch means
     * the MPI plugin did not wire the ranks together (e.g. srun without --mpi=pmix). */
    const char *ntasks = getenv("SLURM_NTASKS");
    if (ntasks && getenv("SLURM_JOB_ID") && getenv("SLURM_STEP_ID") && atoi(ntasks) != g_size)
        saev_fail("MPI world size %d differs from SLURM_NTASKS=%s: start ranks with `srun --mpi=pmix`", g_size, ntasks);
}

void comm_finalize(void) {
    if (g_local != MPI_COMM_NULL) MPI_Comm_free(&g_local);
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) mpiCheck(MPI_Finalize());
}

int comm_rank(void) { return g_rank; }
int comm_size(void) { return g_size; }
int comm_local_rank(void) { return g_local_rank; }
int comm_local_size(void) { return g_local_size; }
void comm_barrier(void) { mpiCheck(MPI_Barrier(MPI_COMM_WORLD)); }

void comm_bcast(void *buf, size_t bytes, int root) {
    /* MPI counts are int: send in pieces of at most 1 GiB. */
    char *p = buf;
    while (bytes > 0) {
        int n = bytes > (1u << 30) ? (1 << 30) : (int)bytes;
        mpiCheck(MPI_Bcast(p, n, MPI_BYTE, root, MPI_COMM_WORLD));
        p += n;
        bytes -= (size_t)n;
    }
}

void comm_allreduce(void *buf, size_t count, CommType type, CommOp op) {
    if (g_size == 1) return; /* sum, max and mean of one value are the value */
    MPI_Datatype dt = type == COMM_F32 ? MPI_FLOAT : type == COMM_F64 ? MPI_DOUBLE : MPI_INT64_T;
    size_t esize = type == COMM_F32 ? 4 : 8;
    MPI_Op mop = op == COMM_MAX ? MPI_MAX : MPI_SUM;
    char *p = buf;
    size_t left = count;
    while (left > 0) {
        int n = left > (1u << 28) ? (1 << 28) : (int)left;
        mpiCheck(MPI_Allreduce(MPI_IN_PLACE, p, n, dt, mop, MPI_COMM_WORLD));
        p += (size_t)n * esize;
        left -= (size_t)n;
    }
    if (op == COMM_MEAN) {
        if (type == COMM_F32) for (size_t i = 0; i < count; i++) ((float *)buf)[i] /= (float)g_size;
        else if (type == COMM_F64) for (size_t i = 0; i < count; i++) ((double *)buf)[i] /= (double)g_size;
        else for (size_t i = 0; i < count; i++) ((int64_t *)buf)[i] /= g_size;
    }
}

int comm_all_true(int flag) {
    int v = flag ? 1 : 0;
    if (g_size > 1) mpiCheck(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD));
    return v;
}
