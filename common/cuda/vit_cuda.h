/*
 * vit_cuda.h: the CUDA backend of vit.h's vit_forward (same contract), with precision
 * modes fp32 / tf32 / bf16 (see cuda_util.h).
 *
 * The lead wires it into common/vit/vit.c with three guarded lines (SAEV_CUDA builds):
 *   vit_set_device: return vit_cuda_set_device(vit, device, err, errlen);
 *   vit_forward:    if (vit->device == DEVICE_CUDA) { vit_cuda_forward(...); return; }
 *   vit_free:       vit_cuda_release(vit);   (before vit_cpu_release)
 *
 * Weights are uploaded on the first forward (and again after a precision change); each
 * parameter tensor starts at a 256-byte boundary on the device. Buffers are sized for the
 * batch shape and reused while later batches fit. Each requested hidden state is gathered
 * on the GPU as soon as its block finishes and copied to host memory on a second stream
 * while the later blocks compute; when `out` is pinned (vit_cuda_host_alloc) the copy
 * lands in it directly, otherwise it goes through a pinned staging buffer.
 */
#ifndef SAEV_VIT_CUDA_H
#define SAEV_VIT_CUDA_H

#include <stddef.h>

#include "cuda_util.h"
#include "vit/vit.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when a GPU can run the model. */
int vit_cuda_available(void);
/* vit_set_device for CUDA builds: AUTO picks CUDA when a GPU is present, CUDA without a GPU
 * is an error; frees the state of the backend being left. 0, or -1 with err. */
int vit_cuda_set_device(Vit *vit, Device device, char *err, size_t errlen);
/* Precision of the CUDA backend (default fp32); no effect on the CPU backend. */
void vit_cuda_set_precision(Vit *vit, Precision prec);
Precision vit_cuda_precision(const Vit *vit);
void vit_cuda_forward(Vit *vit, const float *pixels, int B, int H, int W, const int *hidden, int n, float *out);
/* vit_forward_from on the GPU: uploads x [B, T_int, D] as the residual stream at hidden
 * index h0 and runs the later blocks with the same kernels as vit_cuda_forward. */
void vit_cuda_forward_from(Vit *vit, const float *x, int h0, int B, int H, int W, const int *hidden, int n, float *out);
/* Frees the CUDA state when vit->device is CUDA (safe to call otherwise). */
void vit_cuda_release(Vit *vit);
/* Pinned host memory for `out`, so results arrive without a staging copy. */
float *vit_cuda_host_alloc(size_t n_floats);
void vit_cuda_host_free(float *p);

#ifdef __cplusplus
}
#endif

#endif
