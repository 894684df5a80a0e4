/*
 * cuda_ops.h: the dense building blocks of the GPU paths, callable from C.
 *
 * GEMMs go through cuBLASLt (bias fused as an epilogue where the pointers allow it),
 * falling back to cublasGemmEx plus a bias kernel when cuBLASLt offers no algorithm for
 * a shape or alignment; batched GEMMs with pointer arrays serve attention. The row
 * kernels (LayerNorm with float32 statistics, bias + activation, softmax, residual add)
 * read and write "activation storage": float for fp32/tf32, bfloat16 for bf16; the
 * residual stream and every statistic stay float32.
 *
 * All matrices are row-major, as in the rest of saev-c.
 */
#ifndef SAEV_CUDA_OPS_H
#define SAEV_CUDA_OPS_H

#include <stddef.h>

#include "cuda_util.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { CUDA_ACT_NONE = 0, CUDA_ACT_GELU, CUDA_ACT_GELU_TANH, CUDA_ACT_QUICK_GELU, CUDA_ACT_RELU } CudaAct;

/* ---- GEMM ---- */
typedef struct CudaGemm CudaGemm;
/* A cuBLASLt + cuBLAS handle pair, a 32 MiB workspace and a cache of planned shapes,
 * all working on `stream`. */
CudaGemm *cuda_gemm_create(void *stream);
void cuda_gemm_destroy(CudaGemm *g);
/* C[M,N] = alpha·op(A)·op(B) + beta·C (+ bias[N] added to every row).
 * trans_a = 0: A is [M,K] (row stride lda); 1: A is stored [K,M] and used transposed.
 * trans_b = 0: B is [K,N] (row stride ldb); 1: B is stored [N,K] (a Linear weight).
 * A, B, C and bias are in the storage type of `prec`; bias may be NULL. */
void cuda_gemm(CudaGemm *g, Precision prec, int trans_a, int trans_b, int M, int N, int K, float alpha,
               const void *A, int lda, const void *B, int ldb, float beta, void *C, int ldc, const void *bias);
/* `count` independent products C_i = alpha·op(A_i)·op(B_i) + beta·C_i; A, B, C are device
 * arrays of `count` device pointers sharing shapes and strides. */
void cuda_gemm_batched(CudaGemm *g, Precision prec, int trans_a, int trans_b, int M, int N, int K, float alpha,
                       const void *const *A, int lda, const void *const *B, int ldb, float beta, void *const *C, int ldc,
                       int count);
/* How many cuda_gemm calls took the cublasGemmEx fallback (tests and benchmarks report it). */
long cuda_gemm_fallbacks(const CudaGemm *g);

/* ---- row kernels (all on `stream`) ---- */
/* out[r] = (in[r] - mean) / sqrt(var + eps) · w + b over rows of D; float32 in and
 * statistics, out in `out_prec` storage. in == out is allowed when out_prec is not bf16. */
void cuda_layernorm(const float *in, void *out, Precision out_prec, const float *w, const float *b, size_t rows,
                    int D, float eps, void *stream);
/* y[r, i] = act(y[r, i] + bias[i]) in place; bias (float32, [N]) may be NULL. */
void cuda_bias_act(void *y, Precision prec, const float *bias, size_t rows, int N, CudaAct act, void *stream);
/* Softmax of the first n entries of each row (rows ld apart), in place, float32 arithmetic. */
void cuda_softmax_rows(void *s, Precision prec, size_t rows, int n, int ld, void *stream);
/* x[r, i] += scale[i] · delta[r, i] (scale NULL means 1); x float32, delta in `prec` storage. */
void cuda_residual_add(float *x, const void *delta, Precision prec, const float *scale, size_t rows, int D,
                       void *stream);

#ifdef __cplusplus
}
#endif

#endif
