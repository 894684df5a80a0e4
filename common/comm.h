/*
 * comm.h: the communication layer every distributed stage uses, through an explicit
 * communicator (Comm) that each stage takes as a parameter and passes down.
 *
 * A Comm is a group of ranks: its MPI communicator, this rank's place in it, its place
 * among the ranks on this node (the GPU it drives), and under SAEV_CUDA the NCCL
 * communicator made on first use. comm_world() is the job's world after comm_init; only
 * the worker (worker/main.c, worker/stage_*.c), check.c's abort path (one failing rank
 * ends the job) and fault.c's rank filter mean the world; everything below the worker
 * uses the Comm it was given. comm_self() is this
 * rank alone (rank 0 of 1, no MPI call is ever made on it): a standalone Sae, and tests
 * that call a stage in one process without mpirun, use it.
 *
 * Host buffers go through MPI (CPU ranks). Device buffers go through NCCL (one GPU per
 * rank, picked by the local rank; the NCCL unique id is broadcast over MPI). Both behind
 * the same calls: comm_allreduce on host memory, comm_allreduce_device on device memory
 * (CUDA builds only). On a Comm of one rank every collective returns at once.
 *
 * Failure: any check in check.h calls MPI_Abort on the world when it has more than one
 * rank, so one failing rank ends the whole job with its message instead of leaving the
 * others in a collective. Running without mpirun works (MPI singleton: rank 0 of 1).
 */
#ifndef SAEV_COMM_H
#define SAEV_COMM_H

#include <mpi.h>
#include <stddef.h>

typedef enum { COMM_F32 = 0, COMM_F64, COMM_I64 } CommType;
typedef enum { COMM_SUM = 0, COMM_MAX, COMM_MEAN } CommOp;

typedef struct Comm {
    MPI_Comm mpi;           // the ranks of this communicator (MPI_COMM_WORLD for the world)
    int rank, size;         // this rank's place in mpi
    int local_rank;         // rank among the ranks of this communicator on this node
    int local_size;         // ranks of this communicator on this node
    MPI_Comm local;         // the shared-memory split of mpi (MPI_COMM_NULL for comm_self)
    void **nccl;            // CUDA: slot holding the ncclComm_t once comm_gpu_init made it; a
                            // slot rather than the handle so a const Comm can get it lazily
} Comm;

/* Starts MPI and describes the world; comm_finalize ends both. */
void comm_init(int *argc, char ***argv);
void comm_finalize(void);
/* The job's world (comm_init first). */
const Comm *comm_world(void);
/* This rank alone: no MPI needed. */
const Comm *comm_self(void);

void comm_barrier(const Comm *c);
void comm_bcast(const Comm *c, void *buf, size_t bytes, int root);
/* In place; COMM_MEAN divides the sum by c->size. */
void comm_allreduce(const Comm *c, void *buf, size_t count, CommType type, CommOp op);
/* Logical AND of a flag across the ranks of c (for "did every rank succeed" decisions). */
int comm_all_true(const Comm *c, int flag);

#ifdef SAEV_CUDA
/* Creates c's NCCL communicator once (after comm_init, picking the GPU of the local rank). */
void comm_gpu_init(const Comm *c);
void comm_gpu_finalize(const Comm *c);
/* In place on device memory, enqueued on `stream` (a cudaStream_t). */
void comm_allreduce_device(const Comm *c, void *buf, size_t count, CommType type, CommOp op, void *stream);
void comm_bcast_device(const Comm *c, void *buf, size_t bytes, int root, void *stream);
#endif

#endif
