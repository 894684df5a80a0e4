/*
 * comm_nccl.cu: the NCCL half of comm.h. One GPU per rank (cudaSetDevice(local rank)),
 * the unique id made on rank 0 and broadcast over MPI.
 */
#include <mpi.h>

#include "check_cuda.h"
extern "C" {
#include "comm.h"
#include "log.h"
}

static ncclComm_t g_nccl = nullptr;

extern "C" void comm_gpu_init(void) {
    if (g_nccl) return; /* idempotent: the ViT and SAE paths may both ask for it */
    int n_dev = 0;
    cudaCheck(cudaGetDeviceCount(&n_dev));
    if (n_dev < 1) saev_fail("no CUDA device on this node");
    cudaCheck(cudaSetDevice(comm_local_rank() % n_dev));
    ncclUniqueId id;
    if (comm_rank() == 0) ncclCheck(ncclGetUniqueId(&id));
    comm_bcast(&id, sizeof id, 0);
    ncclCheck(ncclCommInitRank(&g_nccl, comm_size(), id, comm_rank()));
}

extern "C" void comm_gpu_finalize(void) {
    if (g_nccl) ncclCheck(ncclCommDestroy(g_nccl));
    g_nccl = nullptr;
}

extern "C" void comm_allreduce_device(void *buf, size_t count, CommType type, CommOp op, void *stream) {
    cudaStream_t s = (cudaStream_t)stream;
    ncclDataType_t dt = type == COMM_F32 ? ncclFloat32 : type == COMM_F64 ? ncclFloat64 : ncclInt64;
    if (type == COMM_I64 && op == COMM_MEAN) saev_fail("comm_allreduce_device: mean of int64 is not supported");
    ncclRedOp_t rop = op == COMM_MAX ? ncclMax : op == COMM_MEAN ? ncclAvg : ncclSum;
    if (!g_nccl) saev_fail("comm_allreduce_device before comm_gpu_init");
    ncclCheck(ncclAllReduce(buf, buf, count, dt, rop, g_nccl, s));
}

extern "C" void comm_bcast_device(void *buf, size_t bytes, int root, void *stream) {
    if (!g_nccl) saev_fail("comm_bcast_device before comm_gpu_init");
    ncclCheck(ncclBroadcast(buf, buf, bytes, ncclUint8, root, g_nccl, (cudaStream_t)stream));
}
