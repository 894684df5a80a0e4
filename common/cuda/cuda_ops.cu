/*
 * cuda_ops.cu: cuBLASLt GEMMs with a plan cache and the row kernels (see cuda_ops.h).
 *
 * Row-major to cuBLAS: a row-major matrix is the column-major matrix of its transpose,
 * so C = op(A)·op(B) is computed as C^T = op(B)^T·op(A)^T: cuBLAS's first operand is
 * our B (transposed iff trans_b), its second is our A (transposed iff trans_a), m = N,
 * n = M, and the bias epilogue (one value per cuBLAS row) adds bias[N] to every row of C.
 *
 * cuBLASLt picks algorithms that assume 256-byte aligned operands unless told otherwise;
 * parameter slices (a layer's weights, a Matryoshka block of W_dec) are often less
 * aligned, so every plan records the real alignment of A, B and C and asks only for
 * algorithms that accept it. The bias epilogue is used only for 16-byte aligned biases.
 */
#include <stdint.h>
#include <string.h>

#include <cublasLt.h>

#include "cuda_device.cuh"
#include "cuda_ops.h"

#define GEMM_WORKSPACE (32u << 20)
#define GEMM_PLANS 64

typedef struct {
    int used;
    int prec, op_a, op_b, m, n, k, lda, ldb, ldc, bias;
    unsigned align_a, align_b, align_c;
    int ok; /* 0: cuBLASLt has no algorithm, use the fallback */
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
} GemmPlan;

struct CudaGemm {
    cudaStream_t stream;
    cublasLtHandle_t lt;
    cublasHandle_t blas;
    void *workspace;     /* [GEMM_WORKSPACE bytes] */
    GemmPlan plans[GEMM_PLANS];
    int next_evict;
    long fallbacks;
};

static cudaDataType_t storage_type(Precision p) { return p == PRECISION_BF16 ? CUDA_R_16BF : CUDA_R_32F; }
static cublasComputeType_t compute_type(Precision p) {
    return p == PRECISION_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
}

/* Largest power of two (up to 256) dividing the address. */
static unsigned alignment_of(const void *p) {
    uintptr_t a = (uintptr_t)p;
    unsigned al = 256;
    while (al > 1 && (a % al)) al >>= 1;
    return al;
}

extern "C" CudaGemm *cuda_gemm_create(void *stream) {
    CudaGemm *g = (CudaGemm *)callocCheck(1, sizeof *g);
    g->stream = (cudaStream_t)stream;
    cublasCheck(cublasLtCreate(&g->lt));
    cublasCheck(cublasCreate(&g->blas));
    cublasCheck(cublasSetStream(g->blas, g->stream));
    g->workspace = cuda_malloc(GEMM_WORKSPACE);
    cublasCheck(cublasSetWorkspace(g->blas, g->workspace, GEMM_WORKSPACE));
    return g;
}

static void plan_release(GemmPlan *p) {
    if (!p->used) return;
    cublasCheck(cublasLtMatrixLayoutDestroy(p->la));
    cublasCheck(cublasLtMatrixLayoutDestroy(p->lb));
    cublasCheck(cublasLtMatrixLayoutDestroy(p->lc));
    cublasCheck(cublasLtMatmulDescDestroy(p->desc));
    memset(p, 0, sizeof *p);
}

extern "C" void cuda_gemm_destroy(CudaGemm *g) {
    if (!g) return;
    cudaCheck(cudaStreamSynchronize(g->stream));
    for (int i = 0; i < GEMM_PLANS; i++) plan_release(&g->plans[i]);
    cublasCheck(cublasDestroy(g->blas));
    cublasCheck(cublasLtDestroy(g->lt));
    cuda_free(g->workspace);
    free(g);
}

extern "C" long cuda_gemm_fallbacks(const CudaGemm *g) { return g->fallbacks; }

static GemmPlan *plan_get(CudaGemm *g, Precision prec, cublasOperation_t op_a, cublasOperation_t op_b, int m, int n,
                          int k, int lda, int ldb, int ldc, int bias, unsigned al_a, unsigned al_b, unsigned al_c) {
    for (int i = 0; i < GEMM_PLANS; i++) {
        GemmPlan *p = &g->plans[i];
        if (p->used && p->prec == (int)prec && p->op_a == (int)op_a && p->op_b == (int)op_b && p->m == m && p->n == n &&
            p->k == k && p->lda == lda && p->ldb == ldb && p->ldc == ldc && p->bias == bias && p->align_a == al_a &&
            p->align_b == al_b && p->align_c == al_c)
            return p;
    }
    GemmPlan *p = NULL;
    for (int i = 0; i < GEMM_PLANS && !p; i++)
        if (!g->plans[i].used) p = &g->plans[i];
    if (!p) {
        p = &g->plans[g->next_evict];
        g->next_evict = (g->next_evict + 1) % GEMM_PLANS;
        plan_release(p);
    }
    p->used = 1;
    p->prec = prec; p->op_a = op_a; p->op_b = op_b; p->m = m; p->n = n; p->k = k;
    p->lda = lda; p->ldb = ldb; p->ldc = ldc; p->bias = bias;
    p->align_a = al_a; p->align_b = al_b; p->align_c = al_c;
    cudaDataType_t t = storage_type(prec);
    cublasCheck(cublasLtMatmulDescCreate(&p->desc, compute_type(prec), CUDA_R_32F));
    cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a));
    cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b));
    cublasLtEpilogue_t epi = bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    if (bias) {
        cudaDataType_t bt = t; /* bias in the output's storage type */
        cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
    }
    /* Stored shapes (column-major): op N keeps rows x cols = m x k, op T stores k x m. */
    cublasCheck(cublasLtMatrixLayoutCreate(&p->la, t, op_a == CUBLAS_OP_N ? m : k, op_a == CUBLAS_OP_N ? k : m, lda));
    cublasCheck(cublasLtMatrixLayoutCreate(&p->lb, t, op_b == CUBLAS_OP_N ? k : n, op_b == CUBLAS_OP_N ? n : k, ldb));
    cublasCheck(cublasLtMatrixLayoutCreate(&p->lc, t, m, n, ldc));
    cublasLtMatmulPreference_t pref;
    cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = GEMM_WORKSPACE;
    uint32_t a32 = al_a, b32 = al_b, c32 = al_c;
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &a32, sizeof a32));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &b32, sizeof b32));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &c32, sizeof c32));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &c32, sizeof c32));
    cublasLtMatmulHeuristicResult_t res;
    int returned = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(g->lt, p->desc, p->la, p->lb, p->lc, p->lc, pref, 1, &res, &returned);
    cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
    p->ok = st == CUBLAS_STATUS_SUCCESS && returned > 0 && res.state == CUBLAS_STATUS_SUCCESS;
    if (p->ok) p->algo = res.algo;
    return p;
}

__global__ void add_bias_kernel_f32(float *c, const float *bias, int M, int N, int ldc) {
    size_t total = (size_t)M * N;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        size_t r = e / N, j = e % N;
        c[r * ldc + j] += bias[j];
    }
}

__global__ void add_bias_kernel_bf16(__nv_bfloat16 *c, const __nv_bfloat16 *bias, int M, int N, int ldc) {
    size_t total = (size_t)M * N;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        size_t r = e / N, j = e % N;
        c[r * ldc + j] = __float2bfloat16_rn(__bfloat162float(c[r * ldc + j]) + __bfloat162float(bias[j]));
    }
}

extern "C" void cuda_gemm(CudaGemm *g, Precision prec, int trans_a, int trans_b, int M, int N, int K, float alpha,
                          const void *A, int lda, const void *B, int ldb, float beta, void *C, int ldc, const void *bias) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) saev_fail("cuda_gemm: K = %d", K);
    /* cuBLAS's view: first operand = our B, second = our A (see the header comment). */
    cublasOperation_t op1 = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, op2 = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    int use_bias_epilogue = bias && alignment_of(bias) >= 16;
    GemmPlan *p = plan_get(g, prec, op1, op2, N, M, K, ldb, lda, ldc, use_bias_epilogue, alignment_of(B), alignment_of(A),
                           alignment_of(C));
    if (p->ok) {
        if (use_bias_epilogue)
            cublasCheck(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
        cublasCheck(cublasLtMatmul(g->lt, p->desc, &alpha, B, p->la, A, p->lb, &beta, C, p->lc, C, p->lc, &p->algo,
                                   g->workspace, GEMM_WORKSPACE, g->stream));
    } else {
        g->fallbacks++;
        cudaDataType_t t = storage_type(prec);
        cublasCheck(cublasGemmEx(g->blas, op1, op2, N, M, K, &alpha, B, t, ldb, A, t, lda, &beta, C, t, ldc,
                                 compute_type(prec), CUBLAS_GEMM_DEFAULT));
    }
    if (bias && !(p->ok && use_bias_epilogue)) { /* the bias the epilogue did not add */
        unsigned blocks = cuda_blocks((size_t)M * N, 256);
        if (blocks > 65536) blocks = 65536;
        if (prec == PRECISION_BF16)
            add_bias_kernel_bf16<<<blocks, 256, 0, g->stream>>>((__nv_bfloat16 *)C, (const __nv_bfloat16 *)bias, M, N, ldc);
        else
            add_bias_kernel_f32<<<blocks, 256, 0, g->stream>>>((float *)C, (const float *)bias, M, N, ldc);
        cudaLaunchCheck();
    }
}

extern "C" void cuda_gemm_batched(CudaGemm *g, Precision prec, int trans_a, int trans_b, int M, int N, int K, float alpha,
                                  const void *const *A, int lda, const void *const *B, int ldb, float beta, void *const *C,
                                  int ldc, int count) {
    if (count <= 0 || M <= 0 || N <= 0) return;
    cublasOperation_t op1 = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, op2 = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    cudaDataType_t t = storage_type(prec);
    cublasCheck(cublasGemmBatchedEx(g->blas, op1, op2, N, M, K, &alpha, B, t, ldb, A, t, lda, &beta, C, t, ldc, count,
                                    compute_type(prec), CUBLAS_GEMM_DEFAULT));
}

/* ---- row kernels ---- */

/* One warp per row; three passes over the row (sum, centred squares, write) read it from
 * global memory, the second and third from cache. Every lane writes only the elements it
 * read, after both statistics are known, so in == out is safe. */
template <typename TO>
__global__ void layernorm_kernel(const float *in, TO *out, const float *w, const float *b, size_t rows, int D, float eps) {
    size_t row = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const float *x = in + row * D;
    float s = 0.0f;
    for (int i = lane; i < D; i += 32) s += x[i];
    float mean = warp_sum(s) / D;
    float q = 0.0f;
    for (int i = lane; i < D; i += 32) {
        float d = x[i] - mean;
        q += d * d;
    }
    float rstd = rsqrtf(warp_sum(q) / D + eps);
    TO *y = out + row * D;
    for (int i = lane; i < D; i += 32) st_f(y, i, (x[i] - mean) * rstd * w[i] + b[i]);
}

extern "C" void cuda_layernorm(const float *in, void *out, Precision out_prec, const float *w, const float *b, size_t rows,
                               int D, float eps, void *stream) {
    if (!rows) return;
    unsigned blocks = cuda_blocks(rows * 32, 256);
    if (out_prec == PRECISION_BF16)
        layernorm_kernel<<<blocks, 256, 0, (cudaStream_t)stream>>>(in, (__nv_bfloat16 *)out, w, b, rows, D, eps);
    else
        layernorm_kernel<<<blocks, 256, 0, (cudaStream_t)stream>>>(in, (float *)out, w, b, rows, D, eps);
    cudaLaunchCheck();
}

template <typename T>
__global__ void bias_act_kernel(T *y, const float *bias, size_t total, int N, int act) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        float v = ld_f(y, e);
        if (bias) v += bias[e % N];
        st_f(y, e, act_apply(v, act));
    }
}

extern "C" void cuda_bias_act(void *y, Precision prec, const float *bias, size_t rows, int N, CudaAct act, void *stream) {
    size_t total = rows * (size_t)N;
    if (!total || (!bias && act == CUDA_ACT_NONE)) return;
    unsigned blocks = cuda_blocks(total, 256);
    if (blocks > 131072) blocks = 131072;
    if (prec == PRECISION_BF16)
        bias_act_kernel<<<blocks, 256, 0, (cudaStream_t)stream>>>((__nv_bfloat16 *)y, bias, total, N, (int)act);
    else
        bias_act_kernel<<<blocks, 256, 0, (cudaStream_t)stream>>>((float *)y, bias, total, N, (int)act);
    cudaLaunchCheck();
}

/* One warp per row: max, then Σ exp(x - max), then the normalized values (each lane
 * rewrites only its own entries, after both reductions). */
template <typename T>
__global__ void softmax_kernel(T *s, size_t rows, int n, int ld) {
    size_t row = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x & 31;
    if (row >= rows) return;
    T *y = s + row * ld;
    float mx = -INFINITY;
    for (int i = lane; i < n; i += 32) mx = fmaxf(mx, ld_f(y, i));
    mx = warp_max(mx);
    float sum = 0.0f;
    for (int i = lane; i < n; i += 32) sum += expf(ld_f(y, i) - mx);
    float inv = 1.0f / warp_sum(sum);
    for (int i = lane; i < n; i += 32) st_f(y, i, expf(ld_f(y, i) - mx) * inv);
}

extern "C" void cuda_softmax_rows(void *s, Precision prec, size_t rows, int n, int ld, void *stream) {
    if (!rows) return;
    unsigned blocks = cuda_blocks(rows * 32, 256);
    if (prec == PRECISION_BF16)
        softmax_kernel<<<blocks, 256, 0, (cudaStream_t)stream>>>((__nv_bfloat16 *)s, rows, n, ld);
    else
        softmax_kernel<<<blocks, 256, 0, (cudaStream_t)stream>>>((float *)s, rows, n, ld);
    cudaLaunchCheck();
}

template <typename T>
__global__ void residual_kernel(float *x, const T *delta, const float *scale, size_t total, int D) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        float d = ld_f(delta, e);
        x[e] += scale ? scale[e % D] * d : d;
    }
}

extern "C" void cuda_residual_add(float *x, const void *delta, Precision prec, const float *scale, size_t rows, int D,
                                  void *stream) {
    size_t total = rows * (size_t)D;
    if (!total) return;
    unsigned blocks = cuda_blocks(total, 256);
    if (blocks > 131072) blocks = 131072;
    if (prec == PRECISION_BF16)
        residual_kernel<<<blocks, 256, 0, (cudaStream_t)stream>>>(x, (const __nv_bfloat16 *)delta, scale, total, D);
    else
        residual_kernel<<<blocks, 256, 0, (cudaStream_t)stream>>>(x, (const float *)delta, scale, total, D);
    cudaLaunchCheck();
}
