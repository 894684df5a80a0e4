/*
 * comm_nccl.cu: the NCCL half of comm.h. One GPU per rank (cudaSetDevice(local rank)),
 * the unique id made on the communicator's rank 0 and broadcast over its MPI ranks.
 */
#include <mpi.h>

#include "check_cuda.h"
extern "C" {
#include "comm.h"
#include "log.h"
}

static ncclComm_t nccl_of(const Comm *c, const char *what) {
    if (!*c->nccl) saev_fail("%s before comm_gpu_init", what);
    return (ncclComm_t)*c->nccl;
}

extern "C" void comm_gpu_init(const Comm *c) {
    if (*c->nccl) return; /* idempotent: the ViT and SAE paths may both ask for it */
    int n_dev = 0;
    cudaCheck(cudaGetDeviceCount(&n_dev));
    if (n_dev < 1) saev_fail("no CUDA device on this node");
    cudaCheck(cudaSetDevice(c->local_rank % n_dev));
    ncclUniqueId id;
    if (c->rank == 0) ncclCheck(ncclGetUniqueId(&id));
    comm_bcast(c, &id, sizeof id, 0);
    ncclComm_t nc = nullptr;
    ncclCheck(ncclCommInitRank(&nc, c->size, id, c->rank));
    *c->nccl = nc;
}

extern "C" void comm_gpu_finalize(const Comm *c) {
    if (*c->nccl) ncclCheck(ncclCommDestroy((ncclComm_t)*c->nccl));
    *c->nccl = nullptr;
}

extern "C" void comm_allreduce_device(const Comm *c, void *buf, size_t count, CommType type, CommOp op, void *stream) {
    cudaStream_t s = (cudaStream_t)stream;
    ncclDataType_t dt = type == COMM_F32 ? ncclFloat32 : type == COMM_F64 ? ncclFloat64 : ncclInt64;
    if (type == COMM_I64 && op == COMM_MEAN) saev_fail("comm_allreduce_device: mean of int64 is not supported");
    ncclRedOp_t rop = op == COMM_MAX ? ncclMax : op == COMM_MEAN ? ncclAvg : ncclSum;
    ncclCheck(ncclAllReduce(buf, buf, count, dt, rop, nccl_of(c, "comm_allreduce_device"), s));
}

extern "C" void comm_bcast_device(const Comm *c, void *buf, size_t bytes, int root, void *stream) {
    ncclCheck(ncclBroadcast(buf, buf, bytes, ncclUint8, root, nccl_of(c, "comm_bcast_device"), (cudaStream_t)stream));
}
