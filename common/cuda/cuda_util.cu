/*
 * cuda_util.cu: GPU presence, allocation, copies, streams and float32 <-> bfloat16
 * conversion (see cuda_util.h).
 */
#include <stdio.h>
#include <string.h>

#include "cuda_device.cuh"
#include "cuda_util.h"

extern "C" int cuda_gpu_count(void) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError(); /* clear it: "no GPU" is an answer here, not a failure */
        return 0;
    }
    return n;
}

extern "C" void cuda_use_local_device(int local_rank) {
    int n = cuda_gpu_count();
    if (n > 0) cudaCheck(cudaSetDevice(local_rank % n));
}

extern "C" void cuda_device_describe(char *buf, size_t len) {
    if (len == 0) return;
    buf[0] = 0;
    if (cuda_gpu_count() < 1) return;
    int dev = 0;
    cudaCheck(cudaGetDevice(&dev));
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, dev));
    snprintf(buf, len, "%s (%.0f GiB, %d SMs, sm_%d%d)", prop.name, prop.totalGlobalMem / 1073741824.0,
             prop.multiProcessorCount, prop.major, prop.minor);
}

extern "C" void *cuda_malloc(size_t bytes) {
    void *p = NULL;
    if (bytes == 0) bytes = 1;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess)
        saev_fail("cudaMalloc of %.1f MiB failed: %s (lower the batch size)", bytes / 1048576.0, cudaGetErrorString(e));
    return p;
}

extern "C" void cuda_free(void *ptr) {
    if (ptr) cudaCheck(cudaFree(ptr));
}

extern "C" void *cuda_host_alloc(size_t bytes) {
    void *p = NULL;
    if (bytes == 0) bytes = 1;
    cudaError_t e = cudaMallocHost(&p, bytes);
    if (e != cudaSuccess)
        saev_fail("cudaMallocHost (pinned) of %.1f MiB failed: %s", bytes / 1048576.0, cudaGetErrorString(e));
    return p;
}

extern "C" void cuda_host_free(void *ptr) {
    if (ptr) cudaCheck(cudaFreeHost(ptr));
}

extern "C" int cuda_is_pinned(const void *host_ptr) {
    cudaPointerAttributes a;
    cudaError_t e = cudaPointerGetAttributes(&a, host_ptr);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return a.type == cudaMemoryTypeHost;
}

extern "C" void cuda_upload(void *dst_dev, const void *src_host, size_t bytes, void *stream) {
    if (!bytes) return;
    cudaCheck(cudaMemcpyAsync(dst_dev, src_host, bytes, cudaMemcpyHostToDevice, (cudaStream_t)stream));
    cudaCheck(cudaStreamSynchronize((cudaStream_t)stream));
}

extern "C" void cuda_download(void *dst_host, const void *src_dev, size_t bytes, void *stream) {
    if (!bytes) return;
    cudaCheck(cudaMemcpyAsync(dst_host, src_dev, bytes, cudaMemcpyDeviceToHost, (cudaStream_t)stream));
    cudaCheck(cudaStreamSynchronize((cudaStream_t)stream));
}

extern "C" void cuda_sync(void) { cudaCheck(cudaDeviceSynchronize()); }

extern "C" void *cuda_stream_create(void) {
    cudaStream_t s;
    cudaCheck(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    return (void *)s;
}

extern "C" void cuda_stream_destroy(void *stream) {
    if (stream) cudaCheck(cudaStreamDestroy((cudaStream_t)stream));
}

extern "C" void cuda_stream_sync(void *stream) { cudaCheck(cudaStreamSynchronize((cudaStream_t)stream)); }

__global__ void f32_to_bf16_kernel(const float *src, __nv_bfloat16 *dst, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}

__global__ void bf16_to_f32_kernel(const __nv_bfloat16 *src, float *dst, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __bfloat162float(src[i]);
}

extern "C" void cuda_f32_to_bf16(const float *src, void *dst, size_t n, void *stream) {
    if (!n) return;
    unsigned blocks = cuda_blocks(n, 256);
    if (blocks > 65536) blocks = 65536;
    f32_to_bf16_kernel<<<blocks, 256, 0, (cudaStream_t)stream>>>(src, (__nv_bfloat16 *)dst, n);
    cudaLaunchCheck();
}

extern "C" void cuda_bf16_to_f32(const void *src, float *dst, size_t n, void *stream) {
    if (!n) return;
    unsigned blocks = cuda_blocks(n, 256);
    if (blocks > 65536) blocks = 65536;
    bf16_to_f32_kernel<<<blocks, 256, 0, (cudaStream_t)stream>>>((const __nv_bfloat16 *)src, dst, n);
    cudaLaunchCheck();
}
