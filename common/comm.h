/*
 * comm.h: the communication layer every distributed stage uses.
 *
 * Host buffers go through MPI (CPU ranks). Device buffers go through NCCL (one GPU per
 * rank, picked by the local rank from a shared-memory split of the world; the NCCL
 * unique id is broadcast over MPI). Both behind the same calls: comm_allreduce on host
 * memory, comm_allreduce_device on device memory (CUDA builds only).
 *
 * Failure: any check in check.h calls MPI_Abort when size > 1, so one failing rank
 * ends the whole job with its message instead of leaving the others in a collective.
 * Running without mpirun works (MPI singleton: rank 0 of 1).
 */
#ifndef SAEV_COMM_H
#define SAEV_COMM_H

#include <stddef.h>

typedef enum { COMM_F32 = 0, COMM_F64, COMM_I64 } CommType;
typedef enum { COMM_SUM = 0, COMM_MAX, COMM_MEAN } CommOp;

void comm_init(int *argc, char ***argv);
void comm_finalize(void);
int comm_rank(void);
int comm_size(void);
int comm_local_rank(void); /* rank among the ranks on this node */
int comm_local_size(void);
void comm_barrier(void);
void comm_bcast(void *buf, size_t bytes, int root);
/* In place; COMM_MEAN divides the sum by the world size. */
void comm_allreduce(void *buf, size_t count, CommType type, CommOp op);
/* Logical AND of a flag across ranks (for "did every rank succeed" decisions). */
int comm_all_true(int flag);

#ifdef SAEV_CUDA
/* Creates the NCCL communicator (call after comm_init, once the GPU is chosen). */
void comm_gpu_init(void);
void comm_gpu_finalize(void);
/* In place on device memory, enqueued on `stream` (a cudaStream_t). */
void comm_allreduce_device(void *buf, size_t count, CommType type, CommOp op, void *stream);
void comm_bcast_device(void *buf, size_t bytes, int root, void *stream);
#endif

#endif
