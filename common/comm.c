/*
 * comm.c: the MPI half of comm.h (the NCCL half is comm_nccl.cu): the world and self
 * communicators and the host collectives.
 */
#include "comm.h"

#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "log.h"

static void *g_world_nccl = NULL, *g_self_nccl = NULL;
static int g_initialized = 0;
static Comm g_world = {MPI_COMM_NULL, 0, 1, 0, 1, MPI_COMM_NULL, &g_world_nccl};
static Comm g_self = {MPI_COMM_SELF, 0, 1, 0, 1, MPI_COMM_NULL, &g_self_nccl};

void comm_init(int *argc, char ***argv) {
    int provided = 0;
    mpiCheck(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    /* Errors come back as codes so mpiCheck can report them with file:line. */
    mpiCheck(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    Comm *w = &g_world;
    w->mpi = MPI_COMM_WORLD;
    mpiCheck(MPI_Comm_rank(w->mpi, &w->rank));
    mpiCheck(MPI_Comm_size(w->mpi, &w->size));
    mpiCheck(MPI_Comm_split_type(w->mpi, MPI_COMM_TYPE_SHARED, w->rank, MPI_INFO_NULL, &w->local));
    mpiCheck(MPI_Comm_rank(w->local, &w->local_rank));
    mpiCheck(MPI_Comm_size(w->local, &w->local_size));
    g_initialized = 1;
    log_init(w->rank, w->size);
    /* Under Slurm the world must be exactly the tasks Slurm started; a mismatch means
     * the MPI plugin did not wire the ranks together (e.g. srun without --mpi=pmix). */
    const char *ntasks = getenv("SLURM_NTASKS");
    if (ntasks && getenv("SLURM_JOB_ID") && getenv("SLURM_STEP_ID") && atoi(ntasks) != w->size)
        saev_fail("MPI world size %d differs from SLURM_NTASKS=%s: start ranks with `srun --mpi=pmix`", w->size, ntasks);
}

void comm_finalize(void) {
    if (g_world.local != MPI_COMM_NULL) MPI_Comm_free(&g_world.local);
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) mpiCheck(MPI_Finalize());
}

const Comm *comm_world(void) {
    if (!g_initialized) saev_fail("comm_world before comm_init (a program without MPI uses comm_self)");
    return &g_world;
}

const Comm *comm_self(void) { return &g_self; }

void comm_barrier(const Comm *c) {
    if (c->size > 1) mpiCheck(MPI_Barrier(c->mpi));
}

void comm_bcast(const Comm *c, void *buf, size_t bytes, int root) {
    if (c->size == 1) return; /* the root is the only rank */
    /* MPI counts are int: send in pieces of at most 1 GiB. */
    char *p = buf;
    while (bytes > 0) {
        int n = bytes > (1u << 30) ? (1 << 30) : (int)bytes;
        mpiCheck(MPI_Bcast(p, n, MPI_BYTE, root, c->mpi));
        p += n;
        bytes -= (size_t)n;
    }
}

void comm_allreduce(const Comm *c, void *buf, size_t count, CommType type, CommOp op) {
    if (c->size == 1) return; /* sum, max and mean of one value are the value */
    MPI_Datatype dt = type == COMM_F32 ? MPI_FLOAT : type == COMM_F64 ? MPI_DOUBLE : MPI_INT64_T;
    size_t esize = type == COMM_F32 ? 4 : 8;
    MPI_Op mop = op == COMM_MAX ? MPI_MAX : MPI_SUM;
    char *p = buf;
    size_t left = count;
    while (left > 0) {
        int n = left > (1u << 28) ? (1 << 28) : (int)left;
        mpiCheck(MPI_Allreduce(MPI_IN_PLACE, p, n, dt, mop, c->mpi));
        p += (size_t)n * esize;
        left -= (size_t)n;
    }
    if (op == COMM_MEAN) {
        if (type == COMM_F32) for (size_t i = 0; i < count; i++) ((float *)buf)[i] /= (float)c->size;
        else if (type == COMM_F64) for (size_t i = 0; i < count; i++) ((double *)buf)[i] /= (double)c->size;
        else for (size_t i = 0; i < count; i++) ((int64_t *)buf)[i] /= c->size;
    }
}

int comm_all_true(const Comm *c, int flag) {
    int v = flag ? 1 : 0;
    if (c->size > 1) mpiCheck(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_LAND, c->mpi));
    return v;
}
