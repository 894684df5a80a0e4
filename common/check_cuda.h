/*
 * check_cuda.h: cudaCheck, cublasCheck and ncclCheck, the CUDA-side twins of check.h.
 * Included only by .cu files and CUDA-enabled C files (SAEV_CUDA defined).
 */
#ifndef SAEV_CHECK_CUDA_H
#define SAEV_CHECK_CUDA_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include "check.h"

#define cudaCheck(call)                                                                      \
    do {                                                                                     \
        cudaError_t e_ = (call);                                                             \
        if (e_ != cudaSuccess)                                                               \
            saev_fail_at(__FILE__, __LINE__, SAEV_EXIT_FAIL, "CUDA error in %s: %s (hint: %s)", #call, \
                         cudaGetErrorString(e_),                                             \
                         e_ == cudaErrorMemoryAllocation ? "lower the batch size" : "check the GPU with nvidia-smi"); \
    } while (0)

#define cublasCheck(call)                                                                    \
    do {                                                                                     \
        cublasStatus_t s_ = (call);                                                          \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                     \
            saev_fail_at(__FILE__, __LINE__, SAEV_EXIT_FAIL, "cuBLAS error in %s: %s (hint: shapes and leading dimensions)", \
                         #call, cublasGetStatusString(s_));                                  \
    } while (0)

#define ncclCheck(call)                                                                      \
    do {                                                                                     \
        ncclResult_t r_ = (call);                                                            \
        if (r_ != ncclSuccess)                                                               \
            saev_fail_at(__FILE__, __LINE__, SAEV_EXIT_FAIL, "NCCL error in %s: %s (hint: NCCL_DEBUG=WARN shows more)", \
                         #call, ncclGetErrorString(r_));                                     \
    } while (0)

#endif
