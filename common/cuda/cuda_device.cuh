/*
 * cuda_device.cuh: device-side helpers shared by the .cu files: loads and stores that
 * convert between float and the activation storage type, warp reductions, the GELU
 * variants, and a launch check.
 */
#ifndef SAEV_CUDA_DEVICE_CUH
#define SAEV_CUDA_DEVICE_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "check_cuda.h"

/* After every launch: a bad configuration is reported where it happened. */
#define cudaLaunchCheck() cudaCheck(cudaGetLastError())

static inline unsigned cuda_blocks(size_t n, unsigned threads) {
    size_t b = (n + threads - 1) / threads;
    return (unsigned)(b > 0x7FFFFFFFu ? 0x7FFFFFFFu : (b ? b : 1));
}

__device__ __forceinline__ float ld_f(const float *p, size_t i) { return p[i]; }
__device__ __forceinline__ float ld_f(const __nv_bfloat16 *p, size_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ void st_f(float *p, size_t i, float v) { p[i] = v; }
__device__ __forceinline__ void st_f(__nv_bfloat16 *p, size_t i, float v) { p[i] = __float2bfloat16_rn(v); }

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* act codes are CudaAct values */
__device__ __forceinline__ float act_apply(float x, int act) {
    switch (act) {
    case 1: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));                             /* exact GELU */
    case 2: return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x))); /* tanh GELU */
    case 3: return x / (1.0f + expf(-1.702f * x));                                                /* quick_gelu */
    case 4: return x > 0.0f ? x : 0.0f;                                                           /* relu */
    default: return x;
    }
}

#endif
