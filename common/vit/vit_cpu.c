/*
 * vit_cpu.c: the CPU backend of vit_forward.
 *
 * Projections (patch embedding, q/k/v, attention output, MLP) are OpenBLAS sgemm calls
 * on the whole batch ([B*T, in] x W^T), attention is two sgemm calls per (image, head)
 * reading q, k, v in place from the stacked qkv buffer (no transposes), and everything
 * between the GEMMs is a fused row loop (LayerNorm, bias + activation, residual with
 * LayerScale, softmax) run on a small pthread pool. The elementwise math uses AVX2/FMA
 * where the compiler targets it: exp (Cephes polynomial), erf (Abramowitz-Stegun
 * 7.1.26, |error| < 1.5e-7, the same formula PyTorch vectorises) and tanh via exp, all
 * well inside float32 agreement with transformers.
 *
 * Buffers live in one allocation sized for (B, H, W) and are reused while later batches
 * fit; the position table for the input's patch grid is computed once per grid.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define VIT_AVX2 1
#endif

#include "check.h"
#include "cpu_pool.h"
#include "vit.h"

typedef struct {
    int cap_B, H, W;   /* shape the buffers were made for (batches up to cap_B) */
    int T, gh, gw;     /* internal tokens and patch grid for H x W */
    float *pos;        /* [cls + gh*gw, D] position table for this grid */
    float *memory;     /* one allocation for all buffers below */
    float *patches;    /* [cap_B*gh*gw, C*P*P] im2col of the pixels */
    float *x;          /* [cap_B*T, D] residual stream */
    float *h;          /* [cap_B*T, D] LayerNorm output, projection output */
    float *qkv;        /* [cap_B*T, 3D] q | k | v per token */
    float *att;        /* [cap_B*T, D] attention output, heads side by side */
    float *mlp;        /* [cap_B*T, F] MLP hidden */
    CpuPool *pool;
} CpuState;

/* ---- vectorised math ---- */

#ifdef VIT_AVX2
static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static inline __m256 gelu8(__m256 x) { /* 0.5 x (1 + erf(x / sqrt 2)) */
    __m256 z = _mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f));
    __m256 sign = _mm256_and_ps(z, _mm256_set1_ps(-0.0f));
    __m256 az = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), z);
    __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), az, _mm256_set1_ps(1.0f)));
    __m256 p = _mm256_set1_ps(1.061405429f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
    p = _mm256_mul_ps(p, t);
    __m256 erf = _mm256_fnmadd_ps(p, exp8(_mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), az), az)), _mm256_set1_ps(1.0f));
    erf = _mm256_or_ps(erf, sign);
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), _mm256_add_ps(_mm256_set1_ps(1.0f), erf));
}

static inline __m256 gelu_tanh8(__m256 x) { /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), tanh u = 1 - 2/(e^{2u}+1) */
    __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
    __m256 u = _mm256_mul_ps(_mm256_set1_ps(0.79788456080286536f), _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x3, x));
    u = _mm256_min_ps(_mm256_max_ps(u, _mm256_set1_ps(-10.0f)), _mm256_set1_ps(10.0f));
    __m256 e = exp8(_mm256_add_ps(u, u));
    __m256 th = _mm256_sub_ps(_mm256_set1_ps(1.0f), _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, _mm256_set1_ps(1.0f))));
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), _mm256_add_ps(_mm256_set1_ps(1.0f), th));
}

static inline __m256 quick_gelu8(__m256 x) { /* x * sigmoid(1.702 x) */
    __m256 e = exp8(_mm256_mul_ps(_mm256_set1_ps(-1.702f), x));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}
#endif

static inline float act1(float x, VitAct act) {
    switch (act) {
    case VIT_ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case VIT_ACT_GELU_TANH: return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
    default: return x / (1.0f + expf(-1.702f * x));
    }
}

/* ---- row kernels (run on the pool; each handles rows [begin, end)) ---- */

typedef struct {
    const float *in;  /* [rows, D] */
    float *out;       /* [rows, D] (may alias in) */
    const float *w, *b; /* [D] */
    int D;
    float eps;
} LnJob;

static void layernorm_rows(void *ctx, int64_t begin, int64_t end) {
    const LnJob *j = ctx;
    int D = j->D;
    for (int64_t r = begin; r < end; r++) {
        const float *x = j->in + r * D;
        float *y = j->out + r * D;
        float sum = 0, sq = 0;
        for (int i = 0; i < D; i++) sum += x[i];
        float mean = sum / D;
        for (int i = 0; i < D; i++) {
            float d = x[i] - mean;
            sq += d * d;
        }
        float rstd = 1.0f / sqrtf(sq / D + j->eps);
        for (int i = 0; i < D; i++) y[i] = (x[i] - mean) * rstd * j->w[i] + j->b[i];
    }
}

typedef struct {
    float *buf;        /* [rows, N] */
    const float *bias; /* [N] */
    int N;
    int act;           /* apply the activation after the bias */
    VitAct kind;
} BiasActJob;

static void bias_act_rows(void *ctx, int64_t begin, int64_t end) {
    const BiasActJob *j = ctx;
    int N = j->N;
    for (int64_t r = begin; r < end; r++) {
        float *y = j->buf + r * N;
        int i = 0;
        if (!j->act) {
            for (; i < N; i++) y[i] += j->bias[i];
            continue;
        }
#ifdef VIT_AVX2
        for (; i + 8 <= N; i += 8) {
            __m256 v = _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(j->bias + i));
            v = j->kind == VIT_ACT_GELU ? gelu8(v) : j->kind == VIT_ACT_GELU_TANH ? gelu_tanh8(v) : quick_gelu8(v);
            _mm256_storeu_ps(y + i, v);
        }
#endif
        for (; i < N; i++) y[i] = act1(y[i] + j->bias[i], j->kind);
    }
}

typedef struct {
    float *x;            /* [rows, D] residual, updated in place */
    const float *delta;  /* [rows, D] branch output before bias */
    const float *bias;   /* [D] */
    const float *scale;  /* [D] LayerScale, or NULL */
    int D;
} ResidualJob;

static void residual_rows(void *ctx, int64_t begin, int64_t end) {
    const ResidualJob *j = ctx;
    int D = j->D;
    for (int64_t r = begin; r < end; r++) {
        float *x = j->x + r * D;
        const float *d = j->delta + r * D;
        if (j->scale)
            for (int i = 0; i < D; i++) x[i] += j->scale[i] * (d[i] + j->bias[i]);
        else
            for (int i = 0; i < D; i++) x[i] += d[i] + j->bias[i];
    }
}

static void softmax_rows(float *s, int rows, int n) {
    for (int r = 0; r < rows; r++) {
        float *y = s + (size_t)r * n;
        float mx = y[0];
        for (int i = 1; i < n; i++) mx = y[i] > mx ? y[i] : mx;
        float sum = 0;
        int i = 0;
#ifdef VIT_AVX2
        __m256 vsum = _mm256_setzero_ps(), vmx = _mm256_set1_ps(mx);
        for (; i + 8 <= n; i += 8) {
            __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(y + i), vmx));
            _mm256_storeu_ps(y + i, e);
            vsum = _mm256_add_ps(vsum, e);
        }
        float part[8];
        _mm256_storeu_ps(part, vsum);
        for (int k = 0; k < 8; k++) sum += part[k];
#endif
        for (; i < n; i++) {
            y[i] = expf(y[i] - mx);
            sum += y[i];
        }
        float inv = 1.0f / sum;
        for (i = 0; i < n; i++) y[i] *= inv;
    }
}

typedef struct {
    const float *qkv; /* [B*T, 3D] q | k | v, heads side by side within each */
    float *att;       /* [B*T, D] */
    int T, D, hd, NH;
    float scale;      /* 1/sqrt(hd) */
} AttnJob;

/* softmax(q k^T * scale) v for (image, head) pairs [begin, end): two sgemm calls reading
 * q, k, v in place (row stride 3D) and writing the head's columns of att (stride D). */
static void attention_heads(void *ctx, int64_t begin, int64_t end) {
    const AttnJob *j = ctx;
    int T = j->T, D = j->D, hd = j->hd;
    float *scores = mallocCheck(sizeof(float) * T * T);
    for (int64_t bh = begin; bh < end; bh++) {
        int b = (int)(bh / j->NH), h = (int)(bh % j->NH);
        const float *q = j->qkv + (size_t)b * T * 3 * D + (size_t)h * hd, *k = q + D, *v = q + 2 * D;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, j->scale, q, 3 * D, k, 3 * D, 0.0f, scores, T);
        softmax_rows(scores, T, T);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, scores, T, v, 3 * D, 0.0f,
                    j->att + (size_t)b * T * D + (size_t)h * hd, D);
    }
    free(scores);
}

typedef struct {
    const float *pixels; /* [B, C, H, W] */
    float *patches;      /* [B*gh*gw, C*P*P] */
    int C, H, W, P, gh, gw;
} Im2colJob;

static void im2col_rows(void *ctx, int64_t begin, int64_t end) {
    const Im2colJob *j = ctx;
    int P = j->P, K = j->C * P * P, np = j->gh * j->gw;
    for (int64_t r = begin; r < end; r++) {
        int b = (int)(r / np), p = (int)(r % np), py = p / j->gw, px = p % j->gw;
        float *dst = j->patches + r * K;
        for (int c = 0; c < j->C; c++)
            for (int ky = 0; ky < P; ky++) {
                const float *src = j->pixels + (((size_t)b * j->C + c) * j->H + (size_t)py * P + ky) * j->W + (size_t)px * P;
                memcpy(dst + (c * P + ky) * P, src, sizeof(float) * P);
            }
    }
}

/* ---- state ---- */

static void state_free(CpuState *s) {
    if (!s) return;
    free(s->memory);
    free(s->pos);
    pool_destroy(s->pool);
    free(s);
}

void vit_cpu_release(Vit *vit) {
    if (vit->device == DEVICE_CPU) state_free(vit->backend);
    vit->backend = NULL;
}

static CpuState *state_for(Vit *vit, int B, int H, int W) {
    CpuState *s = vit->backend;
    if (s && B <= s->cap_B && H == s->H && W == s->W) return s;
    const VitConfig *c = &vit->cfg;
    CpuPool *pool = s ? s->pool : NULL;
    if (s) {
        s->pool = NULL;
        state_free(s);
    }
    s = callocCheck(1, sizeof *s);
    s->pool = pool ? pool : pool_create(openblas_get_num_threads());
    s->cap_B = B;
    s->H = H;
    s->W = W;
    s->gh = vit_grid(c, H);
    s->gw = vit_grid(c, W);
    if (s->gh < 1 || s->gw < 1)
        saev_fail("%s: a %dx%d input is smaller than one %dx%d patch", vit->source ? vit->source : "vit", H, W, c->patch_size, c->patch_size);
    s->T = vit_tokens_internal(c, H, W);
    size_t D = c->d_model, F = c->d_mlp, T = s->T, np = (size_t)s->gh * s->gw, K = (size_t)c->n_channels * c->patch_size * c->patch_size;
    s->pos = mallocCheck(sizeof(float) * (vit_has_cls(c) + np) * D);
    char err[1024];
    if (vit_position_table(vit, s->gh, s->gw, s->pos, err, sizeof err)) saev_fail("%s", err);
    size_t n_patches = B * np * K, n_x = B * T * D, n_qkv = B * T * 3 * D, n_mlp = B * T * F;
    s->memory = mallocCheck(sizeof(float) * (n_patches + 3 * n_x + n_qkv + n_mlp));
    float *p = s->memory;
    s->patches = p; p += n_patches;
    s->x = p; p += n_x;
    s->h = p; p += n_x;
    s->att = p; p += n_x;
    s->qkv = p; p += n_qkv;
    s->mlp = p;
    vit->backend = s;
    return s;
}

/* y[M, N] = a[M, K] w[N, K]^T (a row-major Linear without bias) */
static void linear(const float *a, const float *w, float *y, int M, int N, int K) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, w, K, 0.0f, y, N);
}

/* Copies the residual stream's kept tokens (CLS, patches; not registers) to out[B, T_out, D]. */
static void copy_tokens(const Vit *vit, const CpuState *s, const float *x, int B, float *out) {
    const VitConfig *c = &vit->cfg;
    int D = c->d_model, cls = vit_has_cls(c), R = c->n_registers, np = s->gh * s->gw, T_out = cls + np;
    for (int b = 0; b < B; b++) {
        const float *src = x + (size_t)b * s->T * D;
        float *dst = out + (size_t)b * T_out * D;
        if (cls) memcpy(dst, src, sizeof(float) * D);
        memcpy(dst + (size_t)cls * D, src + (size_t)(cls + R) * D, sizeof(float) * np * D);
    }
}

/* Blocks first..deepest on the residual stream s->x (hidden index `first` on entry), then
 * the final LayerNorm when asked; copies every requested hidden index >= first + 1 out.
 * vit_cpu_forward and vit_cpu_forward_from share it, so running from block L is the very
 * same arithmetic as the full forward's later blocks (bit for bit). */
static void run_blocks(Vit *vit, CpuState *s, int B, int first, const int *hidden, int n, float *out) {
    const VitConfig *c = &vit->cfg;
    const VitParams *w = &vit->params;
    int D = c->d_model, F = c->d_mlp, T = s->T, np = s->gh * s->gw;
    int cls = vit_has_cls(c), NH = c->n_heads, hd = D / NH;
    int rows = B * T, T_out = cls + np;
    size_t out_stride = (size_t)B * T_out * D;
    float eps = (float)c->ln_eps;
    int deepest = vit_deepest_block(c, hidden, n);
    float scale = 1.0f / sqrtf((float)hd);
    for (int l = first; l <= deepest; l++) {
        /* attention branch */
        LnJob ln1 = {s->x, s->h, w->ln1_w + (size_t)l * D, w->ln1_b + (size_t)l * D, D, eps};
        pool_run(s->pool, rows, layernorm_rows, &ln1);
        linear(s->h, w->qkv_w + (size_t)l * 3 * D * D, s->qkv, rows, 3 * D, D);
        BiasActJob qb = {s->qkv, w->qkv_b + (size_t)l * 3 * D, 3 * D, 0, c->act};
        pool_run(s->pool, rows, bias_act_rows, &qb);
        AttnJob aj = {s->qkv, s->att, T, D, hd, NH, scale};
        if (pool_size(s->pool) > 1) { /* one (image, head) per task, each GEMM on one thread */
            openblas_set_num_threads(1);
            pool_run(s->pool, (int64_t)B * NH, attention_heads, &aj);
            openblas_set_num_threads(pool_size(s->pool));
        } else {
            attention_heads(&aj, 0, (int64_t)B * NH);
        }
        linear(s->att, w->proj_w + (size_t)l * D * D, s->h, rows, D, D);
        ResidualJob r1 = {s->x, s->h, w->proj_b + (size_t)l * D, w->ls1 ? w->ls1 + (size_t)l * D : NULL, D};
        pool_run(s->pool, rows, residual_rows, &r1);
        /* MLP branch */
        LnJob ln2 = {s->x, s->h, w->ln2_w + (size_t)l * D, w->ln2_b + (size_t)l * D, D, eps};
        pool_run(s->pool, rows, layernorm_rows, &ln2);
        linear(s->h, w->fc1_w + (size_t)l * F * D, s->mlp, rows, F, D);
        BiasActJob fa = {s->mlp, w->fc1_b + (size_t)l * F, F, 1, c->act};
        pool_run(s->pool, rows, bias_act_rows, &fa);
        linear(s->mlp, w->fc2_w + (size_t)l * D * F, s->h, rows, D, F);
        ResidualJob r2 = {s->x, s->h, w->fc2_b + (size_t)l * D, w->ls2 ? w->ls2 + (size_t)l * D : NULL, D};
        pool_run(s->pool, rows, residual_rows, &r2);
        for (int i = 0; i < n; i++)
            if (hidden[i] == l + 1) copy_tokens(vit, s, s->x, B, out + i * out_stride);
    }
    for (int i = 0; i < n; i++) {
        if (hidden[i] != VIT_LAST_HIDDEN(c)) continue;
        if (c->family == VIT_CLIP) { /* transformers' CLIP leaves last_hidden_state unnormalised */
            copy_tokens(vit, s, s->x, B, out + i * out_stride);
        } else {
            LnJob fl = {s->x, s->h, w->final_ln_w, w->final_ln_b, D, eps};
            pool_run(s->pool, rows, layernorm_rows, &fl);
            copy_tokens(vit, s, s->h, B, out + i * out_stride);
        }
    }
}

void vit_cpu_forward(Vit *vit, const float *pixels, int B, int H, int W, const int *hidden, int n, float *out) {
    const VitConfig *c = &vit->cfg;
    const VitParams *w = &vit->params;
    if (B <= 0 || n <= 0) return;
    CpuState *s = state_for(vit, B, H, W);
    int D = c->d_model, P = c->patch_size, C = c->n_channels, T = s->T, np = s->gh * s->gw;
    int cls = vit_has_cls(c), R = c->n_registers, K = C * P * P;
    int rows = B * T, T_out = cls + np;
    size_t out_stride = (size_t)B * T_out * D;
    float eps = (float)c->ln_eps;

    /* patch embedding: im2col + one GEMM, then [CLS, registers, patches] + positions */
    Im2colJob ij = {pixels, s->patches, C, H, W, P, s->gh, s->gw};
    pool_run(s->pool, (int64_t)B * np, im2col_rows, &ij);
    linear(s->patches, w->patch_w, s->h, B * np, D, K);
    for (int b = 0; b < B; b++) {
        float *xb = s->x + (size_t)b * T * D;
        if (cls)
            for (int i = 0; i < D; i++) xb[i] = w->cls[i] + s->pos[i];
        if (R) memcpy(xb + (size_t)cls * D, w->registers, sizeof(float) * R * D); /* registers get no position */
        for (int p = 0; p < np; p++) {
            float *dst = xb + (size_t)(cls + R + p) * D;
            const float *e = s->h + ((size_t)b * np + p) * D, *pos = s->pos + (size_t)(cls + p) * D;
            for (int i = 0; i < D; i++) dst[i] = e[i] + w->patch_b[i] + pos[i];
        }
    }
    if (c->family == VIT_CLIP) {
        LnJob lj = {s->x, s->x, w->pre_ln_w, w->pre_ln_b, D, eps};
        pool_run(s->pool, rows, layernorm_rows, &lj);
    }
    for (int i = 0; i < n; i++)
        if (hidden[i] == 0) copy_tokens(vit, s, s->x, B, out + i * out_stride);
    run_blocks(vit, s, B, 0, hidden, n, out);
}

void vit_cpu_forward_from(Vit *vit, const float *x, int h0, int B, int H, int W, const int *hidden, int n, float *out) {
    const VitConfig *c = &vit->cfg;
    if (B <= 0 || n <= 0) return;
    CpuState *s = state_for(vit, B, H, W);
    int D = c->d_model, T_out = vit_has_cls(c) + s->gh * s->gw;
    size_t out_stride = (size_t)B * T_out * D;
    memcpy(s->x, x, sizeof(float) * (size_t)B * s->T * D);
    for (int i = 0; i < n; i++)
        if (hidden[i] == h0) copy_tokens(vit, s, s->x, B, out + i * out_stride);
    run_blocks(vit, s, B, h0, hidden, n, out);
}
