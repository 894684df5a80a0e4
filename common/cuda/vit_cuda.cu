/*
 * vit_cuda.cu: the CUDA backend of vit_forward (see vit_cuda.h and vit.h).
 *
 * Per block, on one stream: LayerNorm (float32 residual in, activation storage out) ->
 * qkv GEMM with fused bias -> scores = Q·K^T/sqrt(hd) for every (image, head) in one
 * pointer-array batched GEMM reading q and k in place from the qkv buffer -> softmax ->
 * P·V written straight into the heads-side-by-side attention buffer -> projection GEMM
 * with fused bias -> residual add (with LayerScale) -> LayerNorm -> fc1 GEMM + bias ->
 * activation -> fc2 GEMM + bias -> residual add. The residual stream is float32 in every
 * precision mode; bf16 mode stores weights and GEMM operands in bfloat16.
 *
 * The score matrices are T x T_pad (T_pad = T rounded up to 8) so that every matrix of
 * the batch starts 16-byte aligned in bf16.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cuda_device.cuh"
#include "cuda_ops.h"
#include "vit_cuda.h"

#define VIT_CUDA_MAGIC 0x56435544u /* marks vit->backend as ours */

enum { T_PATCH_W = 0, T_PATCH_B, T_CLS, T_REG, T_POS, T_PRE_LN_W, T_PRE_LN_B, T_LN1_W, T_LN1_B, T_QKV_W, T_QKV_B,
       T_PROJ_W, T_PROJ_B, T_LS1, T_LS2, T_LN2_W, T_LN2_B, T_FC1_W, T_FC1_B, T_FC2_W, T_FC2_B, T_FINAL_LN_W,
       T_FINAL_LN_B };

typedef struct {
    uint32_t magic;
    Precision prec;      /* requested precision */
    int weights_prec;        /* precision the device weights are in, -1 before upload */
    cudaStream_t stream;     /* compute */
    cudaStream_t copy;       /* device -> host copies of requested hidden states */
    CudaGemm *gemm;
    size_t offset[VIT_N_PARAM_TENSORS]; /* element offset of each tensor (256-byte aligned) */
    float *w32;              /* [n_dev_params] float32 parameters */
    __nv_bfloat16 *w16;      /* [n_dev_params] bf16 copy (bf16 mode only) */
    /* shape-dependent buffers, for batches up to cap_B of H x W */
    int cap_B, H, W, T, T_pad, gh, gw;
    void *buffers;           /* one allocation for everything below */
    float *pos;              /* [cls + gh*gw, D] position table for this grid */
    float *pix;              /* [cap_B, C, H, W] */
    void *patches;           /* [cap_B*np, C*P*P] act storage */
    float *x;                /* [cap_B*T, D] residual stream */
    float *xf;               /* [cap_B*T, D] final LayerNorm output */
    void *h;                 /* [cap_B*T, D] act storage: LayerNorm output / projection output */
    void *qkv;               /* [cap_B*T, 3D] */
    void *att;               /* [cap_B*T, D] attention output, heads side by side */
    void *mlp;               /* [cap_B*T, F] */
    void *scores;            /* [cap_B*NH, T, T_pad] */
    void **ptr;              /* [5, cap_B*NH] device pointer arrays: q, k, v, scores, attention out */
    /* outputs */
    int cap_out;             /* hidden-state slots in dev_out */
    float *dev_out;          /* [cap_out, cap_B*T_out*D] */
    float *staging;          /* pinned [cap_out * cap_B*T_out*D] when out is pageable */
    size_t staging_floats;
    cudaEvent_t *ready;      /* [cap_out] slot i gathered */
} VitCudaState;

static VitCudaState *state_of(const Vit *vit) {
    if (vit->device != DEVICE_CUDA || !vit->backend) return NULL;
    VitCudaState *s = (VitCudaState *)vit->backend;
    if (s->magic != VIT_CUDA_MAGIC) saev_fail("vit: CUDA backend state is corrupt");
    return s;
}

static void free_shape_buffers(VitCudaState *s) {
    cuda_free(s->buffers);
    s->buffers = NULL;
    s->cap_B = 0;
}

static void free_outputs(VitCudaState *s) {
    cuda_free(s->dev_out);
    cuda_host_free(s->staging);
    for (int i = 0; i < s->cap_out; i++) cudaCheck(cudaEventDestroy(s->ready[i]));
    free(s->ready);
    s->dev_out = NULL;
    s->staging = NULL;
    s->staging_floats = 0;
    s->ready = NULL;
    s->cap_out = 0;
}

static void free_weights(VitCudaState *s) {
    cuda_free(s->w32);
    cuda_free(s->w16);
    s->w32 = NULL;
    s->w16 = NULL;
    s->weights_prec = -1;
}

extern "C" void vit_cuda_release(Vit *vit) {
    VitCudaState *s = state_of(vit);
    if (!s) return;
    cudaCheck(cudaStreamSynchronize(s->stream));
    cudaCheck(cudaStreamSynchronize(s->copy));
    free_shape_buffers(s);
    free_outputs(s);
    free_weights(s);
    cuda_gemm_destroy(s->gemm);
    cudaCheck(cudaStreamDestroy(s->stream));
    cudaCheck(cudaStreamDestroy(s->copy));
    free(s);
    vit->backend = NULL;
}

extern "C" int vit_cuda_available(void) { return cuda_gpu_count() > 0; }

extern "C" int vit_cuda_set_device(Vit *vit, Device device, char *err, size_t errlen) {
    int want_cuda = device == DEVICE_CUDA || (device == DEVICE_AUTO && vit_cuda_available());
    if (device == DEVICE_CUDA && !vit_cuda_available()) {
        snprintf(err, errlen, "device cuda: no usable GPU (cudaGetDeviceCount found none); use device cpu or auto");
        return -1;
    }
    Device target = want_cuda ? DEVICE_CUDA : DEVICE_CPU;
    if (vit->device == target && (target == DEVICE_CPU || vit->backend)) return 0;
    /* leaving a backend: free its state (each release only acts on its own device) */
    vit_cuda_release(vit);
    vit_cpu_release(vit);
    vit->device = target;
    if (target == DEVICE_CUDA) {
        VitCudaState *s = (VitCudaState *)callocCheck(1, sizeof *s);
        s->magic = VIT_CUDA_MAGIC;
        s->prec = PRECISION_FP32;
        s->weights_prec = -1;
        cudaCheck(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));
        cudaCheck(cudaStreamCreateWithFlags(&s->copy, cudaStreamNonBlocking));
        s->gemm = cuda_gemm_create(s->stream);
        vit->backend = s;
    }
    return 0;
}

extern "C" void vit_cuda_set_precision(Vit *vit, Precision prec) {
    VitCudaState *s = state_of(vit);
    if (s) s->prec = prec;
}

extern "C" Precision vit_cuda_precision(const Vit *vit) {
    VitCudaState *s = state_of(vit);
    return s ? s->prec : PRECISION_FP32;
}

extern "C" float *vit_cuda_host_alloc(size_t n_floats) { return (float *)cuda_host_alloc(n_floats * sizeof(float)); }
extern "C" void vit_cuda_host_free(float *p) { cuda_host_free(p); }

/* ---- weights ---- */

static void upload_weights(const Vit *vit, VitCudaState *s) {
    size_t sizes[VIT_N_PARAM_TENSORS], total = 0;
    vit_param_sizes(&vit->cfg, vit->n_pos, sizes);
    const VitParams *w = &vit->params;
    const float *host[VIT_N_PARAM_TENSORS] = {w->patch_w, w->patch_b, w->cls, w->registers, w->pos, w->pre_ln_w, w->pre_ln_b,
                                              w->ln1_w, w->ln1_b, w->qkv_w, w->qkv_b, w->proj_w, w->proj_b, w->ls1, w->ls2,
                                              w->ln2_w, w->ln2_b, w->fc1_w, w->fc1_b, w->fc2_w, w->fc2_b, w->final_ln_w,
                                              w->final_ln_b};
    for (int i = 0; i < VIT_N_PARAM_TENSORS; i++) {
        s->offset[i] = total;
        total += (sizes[i] + 63) / 64 * 64; /* 256-byte boundaries */
    }
    free_weights(s);
    s->w32 = (float *)cuda_malloc(total * sizeof(float));
    cudaCheck(cudaMemsetAsync(s->w32, 0, total * sizeof(float), s->stream));
    for (int i = 0; i < VIT_N_PARAM_TENSORS; i++)
        if (sizes[i] && host[i])
            cudaCheck(cudaMemcpyAsync(s->w32 + s->offset[i], host[i], sizes[i] * sizeof(float), cudaMemcpyHostToDevice,
                                      s->stream));
    if (s->prec == PRECISION_BF16) {
        s->w16 = (__nv_bfloat16 *)cuda_malloc(total * sizeof(__nv_bfloat16));
        cuda_f32_to_bf16(s->w32, s->w16, total, s->stream);
    }
    cudaCheck(cudaStreamSynchronize(s->stream));
    s->weights_prec = s->prec;
}

/* A float32 parameter (LayerNorm, LayerScale, embeddings) at element offset off of tensor t. */
static const float *p32(const VitCudaState *s, int t, size_t off) { return s->w32 + s->offset[t] + off; }
/* A GEMM operand or bias in activation storage. */
static const void *pmat(const VitCudaState *s, int t, size_t off) {
    if (s->prec == PRECISION_BF16) return s->w16 + s->offset[t] + off;
    return s->w32 + s->offset[t] + off;
}

/* ---- kernels ---- */

/* patches[r, (c, ky, kx)] = pixels[b, c, py*P + ky, px*P + kx] for patch r = b*np + py*gw + px */
template <typename T>
__global__ void im2col_kernel(const float *pix, T *patches, int B, int C, int H, int W, int P, int gh, int gw) {
    int K = C * P * P, np = gh * gw;
    size_t total = (size_t)B * np * K;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        size_t r = e / K;
        int kk = (int)(e % K), c = kk / (P * P), ky = (kk / P) % P, kx = kk % P;
        int b = (int)(r / np), p = (int)(r % np), py = p / gw, px = p % gw;
        st_f(patches, e, pix[(((size_t)b * C + c) * H + (size_t)py * P + ky) * W + (size_t)px * P + kx]);
    }
}

/* x[b, t] = CLS + pos[0] | register t | patch embedding + conv bias + pos[cls + p] */
template <typename T>
__global__ void assemble_kernel(float *x, const T *emb, const float *patch_b, const float *cls_tok, const float *reg,
                                const float *pos, int B, int T_int, int cls, int R, int np, int D) {
    size_t total = (size_t)B * T_int * D;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(e % D);
        size_t bt = e / D;
        int b = (int)(bt / T_int), t = (int)(bt % T_int);
        float v;
        if (t < cls) v = cls_tok[i] + pos[i];
        else if (t < cls + R) v = reg[(size_t)(t - cls) * D + i]; /* registers get no position */
        else {
            int p = t - cls - R;
            v = ld_f(emb, ((size_t)b * np + p) * D + i) + patch_b[i] + pos[(size_t)(cls + p) * D + i];
        }
        x[e] = v;
    }
}

/* out[b, t_out] = x[b, t_in]: CLS (if any) then patches, registers skipped */
__global__ void gather_tokens_kernel(const float *x, float *out, int B, int T_int, int T_out, int cls, int R, int D) {
    size_t total = (size_t)B * T_out * D;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(e % D);
        size_t bt = e / D;
        int b = (int)(bt / T_out), t = (int)(bt % T_out);
        int t_in = t < cls ? t : t + R;
        out[e] = x[((size_t)b * T_int + t_in) * D + i];
    }
}

static unsigned grid_for(size_t n) {
    unsigned b = cuda_blocks(n, 256);
    return b > 131072 ? 131072 : b;
}

/* ---- buffers ---- */

static void ensure_shape(const Vit *vit, VitCudaState *s, int B, int H, int W) {
    if (s->buffers && B <= s->cap_B && H == s->H && W == s->W) return;
    const VitConfig *c = &vit->cfg;
    cudaCheck(cudaStreamSynchronize(s->stream));
    cudaCheck(cudaStreamSynchronize(s->copy));
    free_shape_buffers(s);
    free_outputs(s); /* sized by B and T */
    int gh = vit_grid(c, H), gw = vit_grid(c, W);
    if (gh < 1 || gw < 1)
        saev_fail("%s: a %dx%d input is smaller than one %dx%d patch", vit->source ? vit->source : "vit", H, W,
                  c->patch_size, c->patch_size);
    s->cap_B = B;
    s->H = H;
    s->W = W;
    s->gh = gh;
    s->gw = gw;
    s->T = vit_tokens_internal(c, H, W);
    s->T_pad = (s->T + 7) / 8 * 8;
    size_t D = c->d_model, F = c->d_mlp, T = s->T, np = (size_t)gh * gw, NH = c->n_heads;
    size_t K = (size_t)c->n_channels * c->patch_size * c->patch_size, es = cuda_precision_bytes(s->prec);
    size_t rows = (size_t)B * T, n_pos_rows = vit_has_cls(c) + np;
    /* byte sizes, each rounded to 256 */
#define R256(x) (((x) + 255) / 256 * 256)
    size_t b_pos = R256(n_pos_rows * D * 4), b_pix = R256((size_t)B * c->n_channels * H * W * 4);
    size_t b_patches = R256((size_t)B * np * K * es), b_x = R256(rows * D * 4), b_h = R256(rows * D * es);
    size_t b_qkv = R256(rows * 3 * D * es), b_mlp = R256(rows * F * es);
    size_t b_scores = R256((size_t)B * NH * T * s->T_pad * es), b_ptr = R256(5 * (size_t)B * NH * sizeof(void *));
    size_t total = b_pos + b_pix + b_patches + 2 * b_x + 2 * b_h + b_qkv + b_mlp + b_scores + b_ptr;
#undef R256
    char *p = (char *)cuda_malloc(total);
    s->buffers = p;
    s->pos = (float *)p; p += b_pos;
    s->pix = (float *)p; p += b_pix;
    s->patches = p; p += b_patches;
    s->x = (float *)p; p += b_x;
    s->xf = (float *)p; p += b_x;
    s->h = p; p += b_h;
    s->att = p; p += b_h;
    s->qkv = p; p += b_qkv;
    s->mlp = p; p += b_mlp;
    s->scores = p; p += b_scores;
    s->ptr = (void **)p;

    /* position table for this grid (resampled on the host for dinov2 when needed) */
    float *pos = (float *)mallocCheck(n_pos_rows * D * sizeof(float));
    char err[1024];
    if (vit_position_table(vit, gh, gw, pos, err, sizeof err)) saev_fail("%s", err);
    cuda_upload(s->pos, pos, n_pos_rows * D * sizeof(float), s->stream); /* the forward reads it on s->stream */
    free(pos);

    /* attention pointer arrays, (image, head) major-to-minor */
    size_t nb = (size_t)B * NH, hd = D / NH;
    void **hp = (void **)mallocCheck(5 * nb * sizeof(void *));
    for (size_t b = 0; b < (size_t)B; b++)
        for (size_t hh = 0; hh < NH; hh++) {
            size_t i = b * NH + hh;
            char *q = (char *)s->qkv + (b * T * 3 * D + hh * hd) * es;
            hp[0 * nb + i] = q;
            hp[1 * nb + i] = q + D * es;
            hp[2 * nb + i] = q + 2 * D * es;
            hp[3 * nb + i] = (char *)s->scores + i * T * s->T_pad * es;
            hp[4 * nb + i] = (char *)s->att + (b * T * D + hh * hd) * es;
        }
    cuda_upload(s->ptr, hp, 5 * nb * sizeof(void *), s->stream);
    free(hp);
}

static void ensure_outputs(VitCudaState *s, int n, size_t slot_floats, int need_staging) {
    if (n > s->cap_out) {
        cudaCheck(cudaStreamSynchronize(s->copy));
        free_outputs(s);
        s->dev_out = (float *)cuda_malloc((size_t)n * slot_floats * sizeof(float));
        s->ready = (cudaEvent_t *)mallocCheck(n * sizeof(cudaEvent_t));
        for (int i = 0; i < n; i++) cudaCheck(cudaEventCreateWithFlags(&s->ready[i], cudaEventDisableTiming));
        s->cap_out = n;
    }
    if (need_staging && s->staging_floats < (size_t)n * slot_floats) {
        cuda_host_free(s->staging);
        s->staging_floats = (size_t)n * slot_floats;
        s->staging = (float *)cuda_host_alloc(s->staging_floats * sizeof(float));
    }
}

/* ---- forward ---- */

typedef struct {
    const Vit *vit;
    VitCudaState *s;
    const int *hidden;
    int n, B, T_out;
    size_t slot;      /* floats per output slot at cap_B: B*T_out*D */
    size_t out_elems; /* floats of one requested hidden state: B*T_out*D */
    float *dst;       /* host destination base (out, or staging) */
} Emit;

/* Gathers every request for hidden-state index h from src and starts its copy to host. */
static void emit(const Emit *e, int h, const float *src) {
    VitCudaState *s = e->s;
    const VitConfig *c = &e->vit->cfg;
    for (int i = 0; i < e->n; i++) {
        if (e->hidden[i] != h) continue;
        float *slot = s->dev_out + (size_t)i * e->slot;
        gather_tokens_kernel<<<grid_for(e->out_elems), 256, 0, s->stream>>>(src, slot, e->B, s->T, e->T_out, vit_has_cls(c),
                                                                           c->n_registers, c->d_model);
        cudaLaunchCheck();
        cudaCheck(cudaEventRecord(s->ready[i], s->stream));
        cudaCheck(cudaStreamWaitEvent(s->copy, s->ready[i], 0));
        cudaCheck(cudaMemcpyAsync(e->dst + (size_t)i * e->out_elems, slot, e->out_elems * sizeof(float),
                                  cudaMemcpyDeviceToHost, s->copy));
    }
}

/* Everything a forward call needs before it touches the residual stream: weights in the
 * current precision, buffers for the shape, output slots. */
static Emit prepare(Vit *vit, VitCudaState *s, int B, int H, int W, const int *hidden, int n, float *out, int *pinned) {
    const VitConfig *c = &vit->cfg;
    if (s->weights_prec != (int)s->prec) {
        free_shape_buffers(s); /* element sizes depend on the precision */
        free_outputs(s);
        upload_weights(vit, s);
    }
    ensure_shape(vit, s, B, H, W);
    int T_out = vit_has_cls(c) + s->gh * s->gw;
    size_t out_elems = (size_t)B * T_out * c->d_model;
    *pinned = cuda_is_pinned(out);
    ensure_outputs(s, n, (size_t)s->cap_B * T_out * c->d_model, !*pinned);
    Emit em = {vit, s, hidden, n, B, T_out, (size_t)s->cap_B * T_out * c->d_model, out_elems, *pinned ? out : s->staging};
    return em;
}

/* Blocks first..deepest on s->x, the final LayerNorm when asked, then waits for the
 * copies. vit_cuda_forward and vit_cuda_forward_from share it. */
static void run_blocks(Vit *vit, VitCudaState *s, const Emit *em, int B, int first, const int *hidden, int n, float *out, int pinned) {
    const VitConfig *c = &vit->cfg;
    Precision prec = s->prec;
    cudaStream_t st = s->stream;
    int D = c->d_model, F = c->d_mlp, T = s->T, NH = c->n_heads, hd = D / NH;
    int rows = B * T, nb = B * NH;
    float eps = (float)c->ln_eps;
    int deepest = vit_deepest_block(c, hidden, n);
    size_t nbp = (size_t)s->cap_B * NH; /* stride of the pointer arrays */
    const void *const *qp = (const void *const *)s->ptr;
    const void *const *kp = (const void *const *)(s->ptr + nbp);
    const void *const *vp = (const void *const *)(s->ptr + 2 * nbp);
    void *const *sp = (void *const *)(s->ptr + 3 * nbp);
    void *const *op = (void *const *)(s->ptr + 4 * nbp);
    CudaAct act = c->act == VIT_ACT_GELU ? CUDA_ACT_GELU : c->act == VIT_ACT_GELU_TANH ? CUDA_ACT_GELU_TANH : CUDA_ACT_QUICK_GELU;
    float scale = 1.0f / sqrtf((float)hd);
    int has_ls = c->family == VIT_DINOV2;
    for (int l = first; l <= deepest; l++) {
        size_t lD = (size_t)l * D;
        /* attention branch */
        cuda_layernorm(s->x, s->h, prec, p32(s, T_LN1_W, lD), p32(s, T_LN1_B, lD), rows, D, eps, st);
        cuda_gemm(s->gemm, prec, 0, 1, rows, 3 * D, D, 1.0f, s->h, D, pmat(s, T_QKV_W, (size_t)l * 3 * D * D), D, 0.0f,
                  s->qkv, 3 * D, pmat(s, T_QKV_B, (size_t)l * 3 * D));
        /* scores[T, T] = scale · q[T, hd] · k[T, hd]^T per (image, head) */
        cuda_gemm_batched(s->gemm, prec, 0, 1, T, T, hd, scale, qp, 3 * D, kp, 3 * D, 0.0f, sp, s->T_pad, nb);
        cuda_softmax_rows(s->scores, prec, (size_t)nb * T, T, s->T_pad, st);
        /* out[T, hd] = probs[T, T] · v[T, hd], written into the heads-side-by-side buffer */
        cuda_gemm_batched(s->gemm, prec, 0, 0, T, hd, T, 1.0f, (const void *const *)sp, s->T_pad, vp, 3 * D, 0.0f, op, D, nb);
        cuda_gemm(s->gemm, prec, 0, 1, rows, D, D, 1.0f, s->att, D, pmat(s, T_PROJ_W, (size_t)l * D * D), D, 0.0f, s->h, D,
                  pmat(s, T_PROJ_B, lD));
        cuda_residual_add(s->x, s->h, prec, has_ls ? p32(s, T_LS1, lD) : NULL, rows, D, st);
        /* MLP branch */
        cuda_layernorm(s->x, s->h, prec, p32(s, T_LN2_W, lD), p32(s, T_LN2_B, lD), rows, D, eps, st);
        cuda_gemm(s->gemm, prec, 0, 1, rows, F, D, 1.0f, s->h, D, pmat(s, T_FC1_W, (size_t)l * F * D), D, 0.0f, s->mlp, F,
                  pmat(s, T_FC1_B, (size_t)l * F));
        cuda_bias_act(s->mlp, prec, NULL, rows, F, act, st);
        cuda_gemm(s->gemm, prec, 0, 1, rows, D, F, 1.0f, s->mlp, F, pmat(s, T_FC2_W, (size_t)l * D * F), F, 0.0f, s->h, D,
                  pmat(s, T_FC2_B, lD));
        cuda_residual_add(s->x, s->h, prec, has_ls ? p32(s, T_LS2, lD) : NULL, rows, D, st);
        emit(em, l + 1, s->x);
    }
    for (int i = 0; i < n; i++)
        if (hidden[i] == VIT_LAST_HIDDEN(c)) {
            if (c->family == VIT_CLIP) { /* transformers' CLIP leaves last_hidden_state unnormalised */
                emit(em, VIT_LAST_HIDDEN(c), s->x);
            } else {
                cuda_layernorm(s->x, s->xf, PRECISION_FP32, p32(s, T_FINAL_LN_W, 0), p32(s, T_FINAL_LN_B, 0), rows, D, eps, st);
                emit(em, VIT_LAST_HIDDEN(c), s->xf);
            }
            break; /* emit serves every request for this index */
        }
    cudaCheck(cudaStreamSynchronize(st));
    cudaCheck(cudaStreamSynchronize(s->copy));
    if (!pinned) memcpy(out, s->staging, (size_t)n * em->out_elems * sizeof(float));
}

extern "C" void vit_cuda_forward(Vit *vit, const float *pixels, int B, int H, int W, const int *hidden, int n, float *out) {
    VitCudaState *s = state_of(vit);
    if (!s) saev_fail("vit_cuda_forward: the model is not on the CUDA device (call vit_set_device first)");
    if (B <= 0 || n <= 0) return;
    const VitConfig *c = &vit->cfg;
    int pinned;
    Emit em = prepare(vit, s, B, H, W, hidden, n, out, &pinned);
    Precision prec = s->prec;
    cudaStream_t st = s->stream;
    int D = c->d_model, P = c->patch_size, C = c->n_channels, T = s->T, np = s->gh * s->gw;
    int cls = vit_has_cls(c), R = c->n_registers, K = C * P * P;
    int rows = B * T;
    float eps = (float)c->ln_eps;

    /* the copy stream must not still be reading last call's staging (it is synchronized at
     * the end of every call, so this is free) */
    cudaCheck(cudaMemcpyAsync(s->pix, pixels, (size_t)B * C * H * W * sizeof(float), cudaMemcpyHostToDevice, st));
    size_t n_patch = (size_t)B * np * K;
    if (prec == PRECISION_BF16)
        im2col_kernel<<<grid_for(n_patch), 256, 0, st>>>(s->pix, (__nv_bfloat16 *)s->patches, B, C, H, W, P, s->gh, s->gw);
    else
        im2col_kernel<<<grid_for(n_patch), 256, 0, st>>>(s->pix, (float *)s->patches, B, C, H, W, P, s->gh, s->gw);
    cudaLaunchCheck();
    cuda_gemm(s->gemm, prec, 0, 1, B * np, D, K, 1.0f, s->patches, K, pmat(s, T_PATCH_W, 0), K, 0.0f, s->h, D, NULL);
    size_t n_x = (size_t)rows * D;
    if (prec == PRECISION_BF16)
        assemble_kernel<<<grid_for(n_x), 256, 0, st>>>(s->x, (const __nv_bfloat16 *)s->h, p32(s, T_PATCH_B, 0),
                                                       p32(s, T_CLS, 0), p32(s, T_REG, 0), s->pos, B, T, cls, R, np, D);
    else
        assemble_kernel<<<grid_for(n_x), 256, 0, st>>>(s->x, (const float *)s->h, p32(s, T_PATCH_B, 0), p32(s, T_CLS, 0),
                                                       p32(s, T_REG, 0), s->pos, B, T, cls, R, np, D);
    cudaLaunchCheck();
    if (c->family == VIT_CLIP)
        cuda_layernorm(s->x, s->x, PRECISION_FP32, p32(s, T_PRE_LN_W, 0), p32(s, T_PRE_LN_B, 0), rows, D, eps, st);
    emit(&em, 0, s->x);
    run_blocks(vit, s, &em, B, 0, hidden, n, out, pinned);
}

extern "C" void vit_cuda_forward_from(Vit *vit, const float *x, int h0, int B, int H, int W, const int *hidden, int n, float *out) {
    VitCudaState *s = state_of(vit);
    if (!s) saev_fail("vit_cuda_forward_from: the model is not on the CUDA device (call vit_set_device first)");
    if (B <= 0 || n <= 0) return;
    int pinned;
    Emit em = prepare(vit, s, B, H, W, hidden, n, out, &pinned);
    cudaCheck(cudaMemcpyAsync(s->x, x, (size_t)B * s->T * vit->cfg.d_model * sizeof(float), cudaMemcpyHostToDevice, s->stream));
    emit(&em, h0, s->x);
    run_blocks(vit, s, &em, B, h0, hidden, n, out, pinned);
}
