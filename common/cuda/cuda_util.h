/*
 * cuda_util.h: the small CUDA plumbing every GPU module shares, callable from C.
 *
 * GPU presence (any CUDA error counts as "no GPU": without a driver cudaGetDeviceCount
 * returns error 35), device and pinned host allocations that fail loudly, float32 <->
 * bfloat16 conversion on the device, and what the precision modes (device.h's Precision,
 * named and parsed only there) mean on the GEMM paths:
 *   fp32  float32 storage, float32 arithmetic
 *   tf32  float32 storage, matrix products on the tensor cores in TF32 (10-bit mantissa
 *         inputs, float32 accumulation)
 *   bf16  bfloat16 weights and activations, float32 accumulation and statistics
 * Streams cross this interface as void * (a cudaStream_t) so C callers need no CUDA
 * headers.
 */
#ifndef SAEV_CUDA_UTIL_H
#define SAEV_CUDA_UTIL_H

#include <stddef.h>

#include "device.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of one stored element in this precision (4, or 2 for bf16). */
static inline size_t cuda_precision_bytes(Precision p) { return p == PRECISION_BF16 ? 2 : 4; }

/* Number of usable GPUs; 0 on any CUDA error (no driver, no device). Clears the error. */
int cuda_gpu_count(void);
/* One GPU per rank: makes GPU local_rank mod count this thread's device (no-op without a
 * GPU). Call before the first allocation; under a plain mpirun every rank would else use
 * GPU 0. */
void cuda_use_local_device(int local_rank);
/* Name and memory of device 0 for logs and benchmark tables ("" when none). */
void cuda_device_describe(char *buf, size_t len);

void *cuda_malloc(size_t bytes);        /* device memory; fails with the size on error */
void cuda_free(void *ptr);              /* NULL is fine */
void *cuda_host_alloc(size_t bytes);    /* pinned (page-locked) host memory */
void cuda_host_free(void *ptr);
int cuda_is_pinned(const void *host_ptr); /* 1 when host_ptr lies in pinned memory */

/* Synchronous copies (set-up, checkpoints, tests), ordered on `stream`: the copy runs
 * after the work already enqueued there and before anything enqueued after it, and the
 * call returns when it has finished (so src may be freed or dst read at once). Every
 * stream here is non-blocking, which the legacy default stream of a plain cudaMemcpy does
 * not order against; NULL means that legacy stream (only for code with no stream). */
void cuda_upload(void *dst_dev, const void *src_host, size_t bytes, void *stream);
void cuda_download(void *dst_host, const void *src_dev, size_t bytes, void *stream);
void cuda_sync(void);

void *cuda_stream_create(void);         /* non-blocking stream */
void cuda_stream_destroy(void *stream);
void cuda_stream_sync(void *stream);

/* dst[i] = bf16(src[i]) (round to nearest even) and back, on the device. */
void cuda_f32_to_bf16(const float *src, void *dst, size_t n, void *stream);
void cuda_bf16_to_f32(const void *src, float *dst, size_t n, void *stream);

#ifdef __cplusplus
}
#endif

#endif
