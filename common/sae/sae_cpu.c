/*
 * sae_cpu.c: the CPU implementation of sae.h.
 *
 * Dense GEMMs go to OpenBLAS (the encoder always; relu's decoder and its backward). The
 * top-k variants never form the dense [B,S] code: each row's active latents are kept as
 * a sparse list (latent, value), the decoder gathers those rows of W_dec, and the
 * backward scatters into W_dec, W_enc and b_enc latent by latent (entries grouped by
 * latent, so no two writers touch the same row). W_enc's sparse gradient is built
 * transposed ([S,d], contiguous per latent) and transposed once at the end.
 *
 * Threads: the passes OpenBLAS does not cover (bias + activation, top-k selection, the
 * sparse decode and scatter, the optimizer) run on a persistent pthread pool
 * (cpu_pool.h) of OPENBLAS_NUM_THREADS threads. Every pass is split so that results
 * do not depend on the thread count or on scheduling: per-row work by rows, per-latent
 * work by latents (each latent's gradient summed by one thread over its entries in a
 * fixed order), column sums over the batch by column ranges (each column summed over
 * rows in row order), and float64 statistics as fixed-size chunk partials added in chunk
 * order.
 */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "comm.h"
#include "rng.h"
#include "sae.h"
#include "cpu_pool.h"

/* ---- the thread pool ------------------------------------------------------------------ */

static CpuPool *sae_pool(void) {
    static CpuPool *pool; /* created on first use by the (single) stepping thread */
    if (!pool) pool = pool_create(openblas_get_num_threads());
    return pool;
}

static void par_for(int64_t n, PoolFn fn, void *ctx) { pool_run(sae_pool(), n, fn, ctx); }

/* Fixed work granules (independent of the thread count, so sums are too). */
#define ROW_CHUNK 32     /* rows per chunk of a per-row pass with float64 partials */
#define COL_CHUNK 256    /* columns per chunk of a column-sum pass over [n, d] */
#define LAT_CHUNK 2048   /* latents per chunk of a column pass over [n, S] (whole pages per row) */
#define ELEM_CHUNK 65536 /* elements per chunk of the gradient norm */

static int64_t n_chunks(int64_t n, int64_t chunk) { return (n + chunk - 1) / chunk; }

void sae_config_default(SaeConfig *c, int d_model, int d_sae) {
    memset(c, 0, sizeof *c);
    c->d_model = d_model;
    c->d_sae = d_sae;
    c->activation = SAE_TOPK;
    c->k = 32;
    c->l1_coeff = 4e-4f;
    c->momentum = 0.1f;
    c->k_aux = 512;
    c->aux_alpha = 0.03125f;
    c->n_prefixes = 1;
    c->prefixes[0] = d_sae;
    c->dead_threshold_tokens = 10000000;
    c->normalize_w_dec = 1;
    c->remove_parallel_grads = 1;
}

const char *sae_config_check(const SaeConfig *c) {
    static char msg[256];
    if (c->d_model < 1 || c->d_sae < 1) return "d_model and d_sae must be positive";
    if (c->activation != SAE_RELU && (c->k < 1 || c->k > c->d_sae)) {
        snprintf(msg, sizeof msg, "k = %d must be in [1, d_sae = %d]", c->k, c->d_sae);
        return msg;
    }
    if (c->n_prefixes < 1 || c->n_prefixes > SAE_MAX_PREFIXES) {
        snprintf(msg, sizeof msg, "the number of Matryoshka prefixes must be in [1, %d]", SAE_MAX_PREFIXES);
        return msg;
    }
    if (c->sample_prefixes) {
        if (c->n_prefixes > c->d_sae) return "more Matryoshka prefixes than latents";
    } else {
        for (int i = 0; i < c->n_prefixes; i++)
            if (c->prefixes[i] < 1 || (i && c->prefixes[i] <= c->prefixes[i - 1])) return "Matryoshka prefixes must be positive and increasing";
        if (c->prefixes[c->n_prefixes - 1] != c->d_sae) {
            snprintf(msg, sizeof msg, "the last Matryoshka prefix (%d) must equal d_sae (%d)", c->prefixes[c->n_prefixes - 1], c->d_sae);
            return msg;
        }
    }
    if (c->k_aux < 0) return "k_aux must be >= 0";
    return NULL;
}

size_t sae_n_stats(const SaeConfig *c) { return SAE_STAT_X_SUM0 + (size_t)c->d_model; }

static void set_views(SaeTensors *t, float *base, int d, int S) {
    t->w_enc = base;
    t->b_enc = t->w_enc + (size_t)d * S;
    t->w_dec = t->b_enc + S;
    t->b_dec = t->w_dec + (size_t)S * d;
}

void sae_create(Sae *sae, const SaeConfig *cfg, int max_batch) {
    memset(sae, 0, sizeof *sae);
    const char *bad = sae_config_check(cfg);
    if (bad) saev_usage_fail("SAE config: %s", bad);
    sae->cfg = *cfg;
    sae->comm = comm_self();
    int d = cfg->d_model, S = cfg->d_sae;
    size_t B = (size_t)max_batch;
    sae->n_params = (size_t)d * S * 2 + S + d;
    /* One allocation for parameters, gradients and Adam moments. */
    float *all = callocCheck(4 * sae->n_params, sizeof(float));
    sae->params = all;
    sae->grads = all + sae->n_params;
    sae->adam_m = all + 2 * sae->n_params;
    sae->adam_v = all + 3 * sae->n_params;
    set_views(&sae->p, sae->params, d, S);
    set_views(&sae->g, sae->grads, d, S);
    sae->since_fired = callocCheck(S, sizeof(int64_t));
    sae->data_scale = 1.0f;
    sae->max_batch = max_batch;
    sae->h = mallocCheck(B * S * sizeof(float));
    if (cfg->activation == SAE_RELU) sae->df = mallocCheck(B * S * sizeof(float));
    sae->x_in = mallocCheck(B * d * sizeof(float));
    sae->x_hat = mallocCheck(B * d * sizeof(float));
    int P = cfg->n_prefixes;
    sae->g_pref = mallocCheck((size_t)P * B * d * sizeof(float));
    sae->tmp_bd = mallocCheck(B * d * sizeof(float));
    sae->act_start = mallocCheck((B + 1) * sizeof(int));
    if (cfg->activation != SAE_RELU) {
        sae->act_cap = B * (size_t)cfg->k;
        sae->act_idx = mallocCheck(sae->act_cap * sizeof(int));
        sae->act_val = mallocCheck(sae->act_cap * sizeof(float));
        sae->act_dh = mallocCheck(sae->act_cap * sizeof(float));
        sae->act_row = mallocCheck(sae->act_cap * sizeof(int));
        int ka = cfg->k_aux < S ? cfg->k_aux : S;
        if (ka > 0) {
            sae->aux_idx = mallocCheck(B * ka * sizeof(int));
            sae->aux_val = mallocCheck(B * ka * sizeof(float));
            sae->aux_dh = mallocCheck(B * ka * sizeof(float));
            sae->aux_g = mallocCheck(B * d * sizeof(float));
        }
        sae->w_enc_t_grad = mallocCheck((size_t)S * d * sizeof(float));
        sae->csc_start = mallocCheck((S + 1) * sizeof(int));
        sae->csc_cap = sae->act_cap + B * (size_t)(ka > 0 ? ka : 0);
        sae->csc_entry = mallocCheck(sae->csc_cap * sizeof(int));
        if (cfg->activation == SAE_BATCH_TOPK) sae->sel_buf = mallocCheck(B * S * sizeof(float));
    }
    sae->fired = mallocCheck(S * sizeof(float));
    sae->latent_block = mallocCheck(S * sizeof(int));
    sae->n_step_prefixes = P;
    memcpy(sae->step_prefixes, cfg->prefixes, sizeof cfg->prefixes);
    sae->step_stats = callocCheck(sae_n_stats(cfg), sizeof(double));
}

void sae_destroy(Sae *sae) {
    free(sae->params);
    free(sae->since_fired);
    free(sae->h); free(sae->df); free(sae->x_in); free(sae->x_hat); free(sae->g_pref); free(sae->tmp_bd);
    free(sae->act_start); free(sae->act_idx); free(sae->act_val); free(sae->act_dh); free(sae->act_row);
    free(sae->aux_idx); free(sae->aux_val); free(sae->aux_dh); free(sae->aux_g);
    free(sae->w_enc_t_grad); free(sae->csc_start); free(sae->csc_entry); free(sae->sel_buf);
    free(sae->fired); free(sae->latent_block); free(sae->step_stats);
    memset(sae, 0, sizeof *sae);
}

/* ---- initialization ------------------------------------------------------------------ */

/* torch.nn.init.kaiming_uniform_ defaults (a=0): U(-b, b), b = sqrt(6 / fan_in). */
static void kaiming_uniform(float *w, size_t n, int fan_in, uint64_t *rng) {
    double b = sqrt(6.0 / fan_in);
    for (size_t i = 0; i < n; i++) w[i] = (float)((2.0 * rng_uniform(rng) - 1.0) * b);
}

void sae_init_kaiming(Sae *sae, uint64_t seed) {
    int d = sae->cfg.d_model, S = sae->cfg.d_sae;
    uint64_t rng = seed;
    /* saev: W_enc is [d, S] (torch fan_in = S), W_dec is [S, d] (fan_in = d); biases zero. */
    kaiming_uniform(sae->p.w_enc, (size_t)d * S, S, &rng);
    kaiming_uniform(sae->p.w_dec, (size_t)S * d, d, &rng);
    memset(sae->p.b_enc, 0, S * sizeof(float));
    memset(sae->p.b_dec, 0, d * sizeof(float));
    sae_normalize_w_dec(sae);
}

void sae_init_datapoint(Sae *sae, const float *rows, int n_rows, float blend, uint64_t seed) {
    int d = sae->cfg.d_model, S = sae->cfg.d_sae;
    if (n_rows < 1) saev_fail("datapoint init needs at least one data row");
    sae_init_kaiming(sae, seed);
    uint64_t rng = seed ^ 0xD1B54A32D192ED03ULL;
    double *mean = callocCheck(d, sizeof(double));
    for (int b = 0; b < n_rows; b++)
        for (int i = 0; i < d; i++) mean[i] += rows[(size_t)b * d + i];
    for (int i = 0; i < d; i++) sae->p.b_dec[i] = (float)(mean[i] / n_rows);
    for (int s = 0; s < S; s++) {
        const float *x = rows + (size_t)rng_below(&rng, n_rows) * d;
        float *w = sae->p.w_dec + (size_t)s * d;
        double nx = 0, nw = 0;
        for (int i = 0; i < d; i++) {
            double c = x[i] - sae->p.b_dec[i];
            nx += c * c;
            nw += (double)w[i] * w[i];
        }
        nx = nx > 0 ? sqrt(nx) : 1.0;
        nw = nw > 0 ? sqrt(nw) : 1.0;
        for (int i = 0; i < d; i++) w[i] = (float)(blend * (x[i] - sae->p.b_dec[i]) / nx + (1.0 - blend) * w[i] / nw);
    }
    sae_normalize_w_dec(sae);
    /* Tied start: W_enc = W_dec^T. */
    for (int s = 0; s < S; s++)
        for (int i = 0; i < d; i++) sae->p.w_enc[(size_t)i * S + s] = sae->p.w_dec[(size_t)s * d + i];
    free(mean);
}

/* ---- step pieces --------------------------------------------------------------------- */

typedef struct { float *w; const float *g; int d; } RowsCtx;

static void normalize_rows(void *ctx_, int64_t s0, int64_t s1) {
    const RowsCtx *c = ctx_;
    for (int64_t s = s0; s < s1; s++) {
        float *w = c->w + (size_t)s * c->d;
        float nn = 0;
        for (int i = 0; i < c->d; i++) nn += w[i] * w[i];
        float n = sqrtf(nn);
        for (int i = 0; i < c->d; i++) w[i] /= n;
    }
}

void sae_normalize_w_dec(Sae *sae) {
    RowsCtx c = {sae->p.w_dec, NULL, sae->cfg.d_model};
    par_for(sae->cfg.d_sae, normalize_rows, &c);
}

static int cmp_int(const void *a, const void *b) { return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b); }

int sae_draw_prefixes(const SaeConfig *c, uint64_t *rng, int *out) {
    int S = c->d_sae, P = c->n_prefixes;
    if (!c->sample_prefixes || P == 1) {
        memcpy(out, c->prefixes, P * sizeof(int));
        if (c->sample_prefixes) out[0] = S;
        return P;
    }
    /* saev's sampler: lengths 1..S-1 with Pareto(power 0.5, min 1) probabilities,
     * p(l) = cdf(l) - cdf(l-1), cdf(l) = 1 - l^-0.5 (so p(1) = 0); P-1 distinct draws plus
     * S, sorted. Inverse-CDF draw with rejection of repeats. */
    int n = 0;
    while (n < P - 1) {
        double u = rng_uniform(rng);
        /* smallest l >= 2 with cdf(l) - cdf(1) >= u·(cdf(S-1) - cdf(1)) */
        double total = 1.0 - 1.0 / sqrt((double)(S - 1));
        double target = u * total;
        double l = 1.0 / ((1.0 - target) * (1.0 - target));
        int li = (int)ceil(l);
        if (li < 2) li = 2;
        if (li > S - 1) li = S - 1;
        int dup = 0;
        for (int i = 0; i < n; i++) dup |= out[i] == li;
        if (!dup) out[n++] = li;
    }
    out[n++] = S;
    qsort(out, n, sizeof(int), cmp_int);
    return n;
}

void sae_choose_prefixes(Sae *sae, uint64_t *rng) {
    if (!sae->cfg.sample_prefixes || sae->cfg.n_prefixes == 1) memcpy(sae->step_prefixes, sae->cfg.prefixes, sizeof sae->cfg.prefixes);
    sae->n_step_prefixes = sae_draw_prefixes(&sae->cfg, rng, sae->step_prefixes);
}

/* Ensures capacity for `n` active entries (batch-top-k rows vary in width). */
static void act_reserve(Sae *sae, size_t n) {
    if (n <= sae->act_cap) return;
    size_t cap = n + n / 2;
    sae->act_idx = reallocCheck(sae->act_idx, cap * sizeof(int));
    sae->act_val = reallocCheck(sae->act_val, cap * sizeof(float));
    sae->act_dh = reallocCheck(sae->act_dh, cap * sizeof(float));
    sae->act_row = reallocCheck(sae->act_row, cap * sizeof(int));
    sae->act_cap = cap;
}

/* Top-`k` of h[0..S) into idx/val (min-heap on value), then sorted by latent. */
static void row_topk(const float *h, int S, int k, int *idx, float *val, const float *mask_ok) {
    int n = 0;
    for (int s = 0; s < S; s++) {
        if (mask_ok && mask_ok[s] == 0.0f) continue;
        float v = h[s];
        if (n < k) {
            /* sift up */
            int i = n++;
            while (i > 0) {
                int p = (i - 1) / 2;
                if (val[p] <= v) break;
                val[i] = val[p]; idx[i] = idx[p]; i = p;
            }
            val[i] = v; idx[i] = s;
        } else if (v > val[0]) {
            int i = 0;
            for (;;) {
                int l = 2 * i + 1, r = l + 1, m = i;
                float mv = v;
                if (l < k && val[l] < mv) { m = l; mv = val[l]; }
                if (r < k && val[r] < mv) { m = r; }
                if (m == i) break;
                val[i] = val[m]; idx[i] = idx[m]; i = m;
            }
            val[i] = v; idx[i] = s;
        }
    }
    /* insertion sort by latent so Matryoshka blocks are contiguous */
    for (int i = 1; i < n; i++) {
        int ci = idx[i]; float cv = val[i]; int j = i - 1;
        while (j >= 0 && idx[j] > ci) { idx[j + 1] = idx[j]; val[j + 1] = val[j]; j--; }
        idx[j + 1] = ci; val[j + 1] = cv;
    }
}

/* Inverse of the order-preserving map float -> uint32 (negative floats complemented,
 * positive ones with the sign bit set), so bisection on keys is bisection on values. */
static float key_float(uint32_t k) {
    uint32_t u = (k & 0x80000000u) ? (k & 0x7FFFFFFFu) : ~k;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static int cmp_float_desc(const void *a, const void *b) { float x = *(const float *)a, y = *(const float *)b; return (x < y) - (x > y); }

/* Quickselect with a three-way partition (robust to repeated values): rearranges a so
 * that a[0..m) holds the m largest values. */
static void select_largest(float *a, size_t n, size_t m) {
    size_t lo = 0, hi = n;
    while (hi - lo > 1) {
        float p = a[lo + (hi - lo) / 2];
        size_t lt = lo, i = lo, gt = hi; /* [lo,lt) > p, [lt,i) == p, [gt,hi) < p */
        while (i < gt) {
            float v = a[i];
            if (v > p) { a[i] = a[lt]; a[lt++] = v; i++; }
            else if (v < p) { a[i] = a[--gt]; a[gt] = v; }
            else i++;
        }
        if (m <= lt) hi = lt;
        else if (m <= gt) return;
        else lo = gt;
    }
}

/* The k·N-th largest value of h over the global batch (identical on every rank). Each
 * rank keeps its local top-k·N candidates (a superset of its share of the global top),
 * sorted; the value is found by bisection on the float order with one all-reduced count
 * per probe, so no rank ever needs another rank's values. */
static float batch_topk_cut(Sae *sae, int n_rows, int64_t global_batch) {
    int S = sae->cfg.d_sae;
    size_t n = (size_t)n_rows * S;
    int64_t want = (int64_t)sae->cfg.k * global_batch;
    size_t m = (size_t)want < n ? (size_t)want : n;
    memcpy(sae->sel_buf, sae->h, n * sizeof(float));
    if (m < n) select_largest(sae->sel_buf, n, m);
    qsort(sae->sel_buf, m, sizeof(float), cmp_float_desc);
    if (sae->comm->size == 1) return m > 0 ? sae->sel_buf[m - 1] : FLT_MAX;
    /* count of local candidates >= v */
    uint32_t lo = 0, hi = 0xFFFFFFFFu; /* invariant: count(>= key_float(lo)) >= want > count(> hi) */
    while (lo < hi) {
        uint32_t mid = (uint32_t)(((uint64_t)lo + hi + 1) / 2);
        float v = key_float(mid);
        size_t a = 0, b = m; /* first index with value < v */
        while (a < b) { size_t c = (a + b) / 2; if (sae->sel_buf[c] >= v) a = c + 1; else b = c; }
        int64_t cnt = (int64_t)a;
        comm_allreduce(sae->comm, &cnt, 1, COMM_I64, COMM_SUM);
        if (cnt >= want) lo = mid; else hi = mid - 1;
    }
    return key_float(lo);
}

/* The elementwise passes below select with comparisons (relu, masks); GCC if-converts
 * and vectorizes those only without trapping-math, which changes no result (nothing here
 * reads the floating-point exception flags). */
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")

/* Everything one forward/backward pass needs, shared by its parallel phases. */
typedef struct {
    Sae *sae;
    const float *x, *x_in; // [n, d] data and encoder input
    int n, d, S, P, ka, n_act, n_aux;
    int64_t N;             // rows of the global batch
    size_t Bd;             // n·d
    int64_t row_chunks, d_chunks, s_chunks; // par_for extents over rows, dimensions, latents
    float coef;            // 2 / (N·d·P): d mse / d x̂ per element
    float l1g;             // relu: l1_coeff / N
    float aux_inv;         // AuxK: 2·alpha / (N·d)
    const float *dead;     // [S] AuxK mask (1 = dead)
    double *part;          // [chunks, n_part] float64 partial sums of a phase
    int n_part;
} Fb;

/* 16-lane dot product: vectorizes without -ffast-math (fixed order, lanes then tree). */
static float dot16(const float *a, const float *b, int n) {
    float acc[16] = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) acc[j] += a[i + j] * b[i + j];
    for (int j = 0; i < n; i++, j++) acc[j] += a[i] * b[i];
    for (int w = 8; w > 0; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    return acc[0];
}

/* x statistics by column chunks: per-dimension sums (rows in order) and Σx² partials. */
static void phase_x_stats(void *ctx_, int64_t c0, int64_t c1) {
    Fb *c = ctx_;
    for (int64_t ch = c0; ch < c1; ch++) {
        int i0 = (int)ch * COL_CHUNK, i1 = i0 + COL_CHUNK < c->d ? i0 + COL_CHUNK : c->d;
        double *sum = c->part + (size_t)ch * c->n_part; /* [0] Σx², [1 + i - i0] Σ_b x_bi */
        memset(sum, 0, c->n_part * sizeof(double));
        for (int b = 0; b < c->n; b++) {
            const float *xb = c->x + (size_t)b * c->d;
            for (int i = i0; i < i1; i++) {
                double v = xb[i];
                sum[0] += v * v;
                sum[1 + i - i0] += v;
            }
        }
    }
}

static void phase_center(void *ctx_, int64_t b0, int64_t b1) {
    Fb *c = ctx_;
    const float *bd = c->sae->p.b_dec;
    for (int64_t b = b0; b < b1; b++)
        for (int i = 0; i < c->d; i++) c->sae->x_in[(size_t)b * c->d + i] = c->x[(size_t)b * c->d + i] - bd[i];
}

/* relu, by column chunks: h = max(h + b_enc, 0) in place; which latents fired; L0, L1 partials. */
static void phase_relu(void *ctx_, int64_t c0, int64_t c1) {
    Fb *c = ctx_;
    Sae *sae = c->sae;
    for (int64_t ch = c0; ch < c1; ch++) {
        int s0 = (int)ch * LAT_CHUNK, s1 = s0 + LAT_CHUNK < c->S ? s0 + LAT_CHUNK : c->S, w = s1 - s0;
        float fired[LAT_CHUNK] = {0};
        double l0_sum = 0, l1_sum = 0;
        const float *be = sae->p.b_enc + s0;
        for (int b = 0; b < c->n; b++) {
            float *hb = sae->h + (size_t)b * c->S + s0;
            /* 16 lanes so the loop vectorizes; per-row lane sums then go to float64 */
            float l1[16] = {0}, l0[16] = {0};
            int s = 0;
            for (; s + 16 <= w; s += 16)
                for (int j = 0; j < 16; j++) {
                    float v = hb[s + j] + be[s + j];
                    v = v > 0.0f ? v : 0.0f;
                    hb[s + j] = v;
                    l1[j] += v;
                    l0[j] += v > 0.0f ? 1.0f : 0.0f;
                    fired[s + j] = v > 0.0f ? 1.0f : fired[s + j];
                }
            for (int j = 0; s < w; s++, j++) {
                float v = hb[s] + be[s];
                v = v > 0.0f ? v : 0.0f;
                hb[s] = v;
                l1[j] += v;
                l0[j] += v > 0.0f ? 1.0f : 0.0f;
                fired[s] = v > 0.0f ? 1.0f : fired[s];
            }
            for (int j = 0; j < 16; j++) { l0_sum += l0[j]; l1_sum += l1[j]; }
        }
        memcpy(sae->fired + s0, fired, w * sizeof(float));
        c->part[ch * 2] = l0_sum;
        c->part[ch * 2 + 1] = l1_sum;
    }
}

/* top-k, by rows: add b_enc (h keeps the pre-activation, AuxK reads it) and select. */
static void phase_topk(void *ctx_, int64_t b0, int64_t b1) {
    Fb *c = ctx_;
    Sae *sae = c->sae;
    int k = sae->cfg.k;
    for (int64_t b = b0; b < b1; b++) {
        float *hb = sae->h + (size_t)b * c->S;
        for (int s = 0; s < c->S; s++) hb[s] += sae->p.b_enc[s];
        row_topk(hb, c->S, k, sae->act_idx + (size_t)b * k, sae->act_val + (size_t)b * k, NULL);
    }
}

static void phase_add_b_enc(void *ctx_, int64_t b0, int64_t b1) {
    Fb *c = ctx_;
    for (int64_t b = b0; b < b1; b++) {
        float *hb = c->sae->h + (size_t)b * c->S;
        for (int s = 0; s < c->S; s++) hb[s] += c->sae->p.b_enc[s];
    }
}

/* relu decoder residuals, by row chunks: G_j = coef·(x̂_j - x) (prefix j = part index). */
typedef struct { Fb *fb; int j; } FbJ;
static void phase_dense_resid(void *ctx_, int64_t c0, int64_t c1) {
    FbJ *cj = ctx_;
    Fb *c = cj->fb;
    float *gj = c->sae->g_pref + (size_t)cj->j * c->Bd;
    for (int64_t ch = c0; ch < c1; ch++) {
        size_t e0 = (size_t)ch * ROW_CHUNK * c->d, e1 = e0 + (size_t)ROW_CHUNK * c->d < c->Bd ? e0 + (size_t)ROW_CHUNK * c->d : c->Bd;
        double se = 0;
        for (size_t e = e0; e < e1; e++) {
            float r = c->sae->x_hat[e] - c->x[e];
            se += (double)r * r;
            gj[e] = c->coef * r;
        }
        c->part[ch] += se / c->P;
    }
}

/* Sparse decoder, by row chunks: gather the active W_dec rows prefix by prefix. */
static void phase_sparse_decode(void *ctx_, int64_t c0, int64_t c1) {
    Fb *c = ctx_;
    Sae *sae = c->sae;
    int d = c->d;
    const int *pref = sae->step_prefixes;
    for (int64_t ch = c0; ch < c1; ch++) {
        int b0 = (int)ch * ROW_CHUNK, b1 = b0 + ROW_CHUNK < c->n ? b0 + ROW_CHUNK : c->n;
        double mse = 0;
        for (int b = b0; b < b1; b++) {
            float *acc = sae->x_hat + (size_t)b * d;
            const float *xb = c->x + (size_t)b * d;
            memcpy(acc, sae->p.b_dec, d * sizeof(float));
            int q = sae->act_start[b], qe = sae->act_start[b + 1];
            for (int j = 0; j < c->P; j++) {
                for (; q < qe && sae->act_idx[q] < pref[j]; q++) {
                    const float *w = sae->p.w_dec + (size_t)sae->act_idx[q] * d;
                    float v = sae->act_val[q];
                    for (int i = 0; i < d; i++) acc[i] += v * w[i];
                }
                float *gj = sae->g_pref + (size_t)j * c->Bd + (size_t)b * d;
                double se = 0;
                for (int i = 0; i < d; i++) {
                    float r = acc[i] - xb[i];
                    se += (double)r * r;
                    gj[i] = c->coef * r;
                }
                mse += se / c->P;
            }
        }
        c->part[ch] = mse;
    }
}

/* Matryoshka suffix sums G_j += G_{j+1} and Σ(x̂ - x)² of the full reconstruction, by row chunks. */
static void phase_suffix(void *ctx_, int64_t c0, int64_t c1) {
    Fb *c = ctx_;
    float *G = c->sae->g_pref;
    for (int64_t ch = c0; ch < c1; ch++) {
        size_t e0 = (size_t)ch * ROW_CHUNK * c->d, e1 = e0 + (size_t)ROW_CHUNK * c->d < c->Bd ? e0 + (size_t)ROW_CHUNK * c->d : c->Bd;
        for (int j = c->P - 2; j >= 0; j--) {
            float *gj = G + (size_t)j * c->Bd, *gn = G + (size_t)(j + 1) * c->Bd;
            for (size_t e = e0; e < e1; e++) gj[e] += gn[e];
        }
        double sq = 0;
        for (size_t e = e0; e < e1; e++) {
            double r = (double)c->sae->x_hat[e] - c->x[e];
            sq += r * r;
        }
        c->part[ch] = sq;
    }
}

/* db_dec += Σ_b M[b, :] for a [n, d] matrix M, by column chunks (rows in order). */
typedef struct { Fb *fb; const float *m; } FbM;
static void phase_col_sum_d(void *ctx_, int64_t c0, int64_t c1) {
    FbM *cm = ctx_;
    Fb *c = cm->fb;
    for (int64_t ch = c0; ch < c1; ch++) {
        int i0 = (int)ch * COL_CHUNK, i1 = i0 + COL_CHUNK < c->d ? i0 + COL_CHUNK : c->d;
        float *gb = c->sae->g.b_dec;
        for (int b = 0; b < c->n; b++)
            for (int i = i0; i < i1; i++) gb[i] += cm->m[(size_t)b * c->d + i];
    }
}

/* relu backward, by column chunks: dh = (df + l1_coeff/N)·[f > 0] in place; db_enc = Σ_b dh. */
static void phase_relu_back(void *ctx_, int64_t c0, int64_t c1) {
    Fb *c = ctx_;
    Sae *sae = c->sae;
    for (int64_t ch = c0; ch < c1; ch++) {
        int s0 = (int)ch * LAT_CHUNK, s1 = s0 + LAT_CHUNK < c->S ? s0 + LAT_CHUNK : c->S, w = s1 - s0;
        float gb[LAT_CHUNK] = {0};
        for (int b = 0; b < c->n; b++) {
            float *dfb = sae->df + (size_t)b * c->S + s0;
            const float *fb = sae->h + (size_t)b * c->S + s0;
            for (int s = 0; s < w; s++) { /* branch-free so it vectorizes */
                float g = dfb[s] + c->l1g;
                g = fb[s] > 0.0f ? g : 0.0f;
                dfb[s] = g;
                gb[s] += g;
            }
        }
        memcpy(sae->g.b_enc + s0, gb, w * sizeof(float));
    }
}

/* dL/dh of each active entry: its block's gradient dotted with its W_dec row. */
static void phase_act_dh(void *ctx_, int64_t q0, int64_t q1) {
    Fb *c = ctx_;
    Sae *sae = c->sae;
    for (int64_t q = q0; q < q1; q++) {
        int s = sae->act_idx[q], b = sae->act_row[q];
        const float *gq = sae->g_pref + (size_t)sae->latent_block[s] * c->Bd + (size_t)b * c->d;
        sae->act_dh[q] = dot16(gq, sae->p.w_dec + (size_t)s * c->d, c->d);
    }
}

/* AuxK by row chunks: the dead latents' top pre-activations reconstruct the residual. */
static void phase_aux(void *ctx_, int64_t c0, int64_t c1) {
    Fb *c = ctx_;
    Sae *sae = c->sae;
    int d = c->d, ka = c->ka;
    for (int64_t ch = c0; ch < c1; ch++) {
        int b0 = (int)ch * ROW_CHUNK, b1 = b0 + ROW_CHUNK < c->n ? b0 + ROW_CHUNK : c->n;
        double sq = 0;
        for (int b = b0; b < b1; b++) {
            int *ai = sae->aux_idx + (size_t)b * ka;
            float *av = sae->aux_val + (size_t)b * ka;
            row_topk(sae->h + (size_t)b * c->S, c->S, ka, ai, av, c->dead);
            float *e = sae->aux_g + (size_t)b * d;
            const float *xb = c->x + (size_t)b * d, *xh = sae->x_hat + (size_t)b * d;
            /* aux_recon - r = (b_dec + Σ h_s W_dec[s]) - (x - x̂) */
            for (int i = 0; i < d; i++) e[i] = sae->p.b_dec[i] - (xb[i] - xh[i]);
            for (int t = 0; t < ka; t++) {
                const float *w = sae->p.w_dec + (size_t)ai[t] * d;
                for (int i = 0; i < d; i++) e[i] += av[t] * w[i];
            }
            for (int i = 0; i < d; i++) { sq += (double)e[i] * e[i]; e[i] *= c->aux_inv; }
            for (int t = 0; t < ka; t++) sae->aux_dh[(size_t)b * ka + t] = dot16(e, sae->p.w_dec + (size_t)ai[t] * d, d);
        }
        c->part[ch] = sq;
    }
}

/* Sparse backward by latents: W_dec rows, W_enc^T rows and b_enc, each latent's entries
 * (active, then aux) summed by one thread in their grouped order. */
static void phase_scatter(void *ctx_, int64_t s0, int64_t s1) {
    Fb *c = ctx_;
    Sae *sae = c->sae;
    int d = c->d, n_act = c->n_act;
    const int *cs = sae->csc_start;
    for (int64_t s = s0; s < s1; s++) {
        float *gw = sae->g.w_dec + (size_t)s * d, *gt = sae->w_enc_t_grad + (size_t)s * d;
        memset(gw, 0, d * sizeof(float));
        memset(gt, 0, d * sizeof(float));
        float gb = 0;
        for (int e = cs[s]; e < cs[s + 1]; e++) {
            int id = sae->csc_entry[e], b;
            float v, dh;
            const float *gv;
            if (id < n_act) {
                b = sae->act_row[id]; v = sae->act_val[id]; dh = sae->act_dh[id];
                gv = sae->g_pref + (size_t)sae->latent_block[s] * c->Bd + (size_t)b * d;
            } else {
                int t = id - n_act;
                b = t / c->ka; v = sae->aux_val[t]; dh = sae->aux_dh[t];
                gv = sae->aux_g + (size_t)b * d;
            }
            const float *xb = c->x_in + (size_t)b * d;
            for (int i = 0; i < d; i++) { gw[i] += v * gv[i]; gt[i] += dh * xb[i]; }
            gb += dh;
        }
        sae->g.b_enc[s] = gb;
    }
}

/* W_enc gradient [d, S] from its transpose, 64×64 tiles, by tile rows of W_enc. */
static void phase_transpose(void *ctx_, int64_t t0, int64_t t1) {
    Fb *c = ctx_;
    const float *wt = c->sae->w_enc_t_grad;
    float *we = c->sae->g.w_enc;
    int d = c->d, S = c->S;
    for (int64_t t = t0; t < t1; t++) {
        int i0 = (int)t * 64;
        for (int s0 = 0; s0 < S; s0 += 64)
            for (int s = s0; s < s0 + 64 && s < S; s++)
                for (int i = i0; i < i0 + 64 && i < d; i++) we[(size_t)i * S + s] = wt[(size_t)s * d + i];
    }
}

#pragma GCC pop_options

static double sum_parts(const double *part, int64_t n, int stride) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += part[i * stride];
    return s;
}

/* ---- sae_forward_backward's steps, in its order ---- */

/* Data statistics for NMSE and explained variance: Σx² and the per-dimension sums. */
static void fb_x_stats(Fb *fb, double *stats) {
    int d = fb->d;
    fb->n_part = 1 + COL_CHUNK;
    par_for(fb->d_chunks, phase_x_stats, fb);
    for (int64_t ch = 0; ch < fb->d_chunks; ch++) {
        const double *p = fb->part + ch * fb->n_part;
        stats[SAE_STAT_X_SQ] += p[0];
        for (int i = (int)ch * COL_CHUNK; i < d && i < (ch + 1) * COL_CHUNK; i++) stats[SAE_STAT_X_SUM0 + i] = p[1 + i - ch * COL_CHUNK];
    }
}

/* Encoder: h = x_in W_enc (+ b_enc, added by the activation pass). */
static void fb_encode(Fb *fb) {
    Sae *sae = fb->sae;
    if (sae->cfg.center_input) {
        par_for(fb->n, phase_center, fb);
        fb->x_in = sae->x_in;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, fb->n, fb->S, fb->d, 1.0f, fb->x_in, fb->d, sae->p.w_enc, fb->S, 0.0f,
                sae->h, fb->S);
}

/* Batch-top-k: the entries at or above the global cut, row by row (act_start [n + 1]),
 * and the JumpReLU threshold's EMA of the smallest kept positive value (global). */
static void fb_select_batch_topk(Fb *fb) {
    Sae *sae = fb->sae;
    const SaeConfig *c = &sae->cfg;
    int n = fb->n, S = fb->S;
    const float *h = sae->h;
    int *st = sae->act_start;
    par_for(n, phase_add_b_enc, fb);
    float cut = batch_topk_cut(sae, n, fb->N);
    size_t cnt = 0;
    for (size_t e = 0; e < (size_t)n * S; e++) cnt += h[e] >= cut;
    act_reserve(sae, cnt);
    size_t e = 0;
    for (int b = 0; b < n; b++) {
        const float *hb = h + (size_t)b * S;
        for (int s = 0; s < S; s++)
            if (hb[s] >= cut) { sae->act_idx[e] = s; sae->act_val[e] = hb[s]; e++; }
        st[b + 1] = (int)e;
    }
    float mn = FLT_MAX;
    for (size_t q = 0; q < e; q++)
        if (sae->act_val[q] > 0.0f && sae->act_val[q] < mn) mn = sae->act_val[q];
    float neg = -mn;
    comm_allreduce(sae->comm, &neg, 1, COMM_F32, COMM_MAX);
    mn = -neg;
    if (mn < FLT_MAX) sae->threshold = (1.0f - c->momentum) * sae->threshold + c->momentum * mn;
}

/* Activation, sparsity statistics (L0, L1) and which latents fired on this rank. */
static void fb_select(Fb *fb, double *stats) {
    Sae *sae = fb->sae;
    const SaeConfig *c = &sae->cfg;
    int n = fb->n;
    if (c->activation == SAE_RELU) {
        par_for(fb->s_chunks, phase_relu, fb);
        stats[SAE_STAT_L0] = sum_parts(fb->part, fb->s_chunks, 2);
        stats[SAE_STAT_L1] = sum_parts(fb->part + 1, fb->s_chunks, 2);
        return;
    }
    memset(sae->fired, 0, fb->S * sizeof(float));
    int *st = sae->act_start;
    st[0] = 0;
    if (c->activation == SAE_TOPK) {
        par_for(n, phase_topk, fb);
        for (int b = 0; b < n; b++) st[b + 1] = st[b] + c->k;
    } else {
        fb_select_batch_topk(fb);
    }
    for (int b = 0; b < n; b++)
        for (int q = st[b]; q < st[b + 1]; q++) {
            float v = sae->act_val[q];
            sae->act_row[q] = b;
            stats[SAE_STAT_L1] += fabsf(v);
            if (v != 0.0f) { stats[SAE_STAT_L0] += 1; sae->fired[sae->act_idx[q]] = 1.0f; }
        }
}

/* Dead counters (global): +N tokens, reset where any row of the batch fired. Returns the
 * number of dead latents. */
static int fb_dead_counters(Fb *fb) {
    Sae *sae = fb->sae;
    int S = fb->S, n_dead = 0;
    comm_allreduce(sae->comm, sae->fired, S, COMM_F32, COMM_MAX);
    for (int s = 0; s < S; s++) {
        sae->since_fired[s] = sae->fired[s] > 0 ? 0 : sae->since_fired[s] + fb->N;
        n_dead += sae->since_fired[s] >= sae->cfg.dead_threshold_tokens;
    }
    return n_dead;
}

/* Decoder per Matryoshka prefix and the reconstruction loss; g_pref[j] = coef·(x̂_j - x),
 * then suffix sums so g_pref[j] = Σ_{q>=j} dL/dx̂_q, the gradient that reaches block j's
 * latents. b_dec receives every prefix's gradient (it is in every x̂_p). */
static void fb_decode_loss(Fb *fb, double *stats) {
    Sae *sae = fb->sae;
    int n = fb->n, d = fb->d, S = fb->S;
    const int *pref = sae->step_prefixes;
    if (sae->cfg.activation == SAE_RELU) {
        float *acc = sae->x_hat;
        for (int b = 0; b < n; b++) memcpy(acc + (size_t)b * d, sae->p.b_dec, d * sizeof(float));
        memset(fb->part, 0, fb->row_chunks * sizeof(double));
        for (int j = 0; j < fb->P; j++) {
            int s0 = j ? pref[j - 1] : 0, w = pref[j] - s0;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, w, 1.0f, sae->h + s0, S, sae->p.w_dec + (size_t)s0 * d, d, 1.0f,
                        acc, d);
            FbJ cj = {fb, j};
            par_for(fb->row_chunks, phase_dense_resid, &cj);
        }
    } else {
        par_for(fb->row_chunks, phase_sparse_decode, fb);
    }
    stats[SAE_STAT_MSE] = sum_parts(fb->part, fb->row_chunks, 1);
    par_for(fb->row_chunks, phase_suffix, fb);
    stats[SAE_STAT_SQERR_FULL] = sum_parts(fb->part, fb->row_chunks, 1);
    memset(sae->g.b_dec, 0, d * sizeof(float));
    FbM gm = {fb, sae->g_pref};
    par_for(fb->d_chunks, phase_col_sum_d, &gm);
}

/* relu backward: dW_dec[blk j] = f[:,blk]^T G_j; df[:,blk] = G_j W_dec[blk]^T;
 * dh = (df + l1_coeff/N)·[f > 0]; db_enc = Σ_b dh; dW_enc = x_in^T dh. */
static void fb_backward_dense(Fb *fb) {
    Sae *sae = fb->sae;
    int n = fb->n, d = fb->d, S = fb->S;
    const int *pref = sae->step_prefixes;
    float *h = sae->h, *df = sae->df;
    for (int j = 0; j < fb->P; j++) {
        int s0 = j ? pref[j - 1] : 0, w = pref[j] - s0;
        const float *gj = sae->g_pref + (size_t)j * fb->Bd;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, w, d, n, 1.0f, h + s0, S, gj, d, 0.0f, sae->g.w_dec + (size_t)s0 * d, d);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, w, d, 1.0f, gj, d, sae->p.w_dec + (size_t)s0 * d, d, 0.0f, df + s0, S);
    }
    par_for(fb->s_chunks, phase_relu_back, fb);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, S, n, 1.0f, fb->x_in, d, df, S, 0.0f, sae->g.w_enc, S);
}

/* AuxK: the top-ka pre-activations of the dead latents reconstruct the residual; the
 * loss goes to stats, its gradient to aux_g / aux_dh and b_dec. Returns the aux entries. */
static int fb_aux(Fb *fb, int n_dead, double *stats) {
    Sae *sae = fb->sae;
    const SaeConfig *c = &sae->cfg;
    int ka = c->k_aux < n_dead ? c->k_aux : n_dead;
    if (ka <= 0) return 0;
    for (int s = 0; s < fb->S; s++) sae->fired[s] = sae->since_fired[s] >= c->dead_threshold_tokens ? 1.0f : 0.0f;
    fb->ka = ka;
    fb->dead = sae->fired;
    fb->aux_inv = 2.0f * c->aux_alpha / ((float)fb->N * fb->d);
    par_for(fb->row_chunks, phase_aux, fb);
    stats[SAE_STAT_AUX] = c->aux_alpha * sum_parts(fb->part, fb->row_chunks, 1);
    FbM am = {fb, sae->aux_g};
    par_for(fb->d_chunks, phase_col_sum_d, &am);
    return fb->n * ka;
}

/* Groups the entries (active q < n_act, then aux n_act + t) by latent: csc_start [S + 1],
 * csc_entry in that order, so one thread sums each latent's entries. */
static void fb_group_by_latent(Sae *sae, int S, int n_act, int n_aux) {
    int *cs = sae->csc_start;
    memset(cs, 0, (S + 1) * sizeof(int));
    for (int q = 0; q < n_act; q++) cs[sae->act_idx[q] + 1]++;
    for (int t = 0; t < n_aux; t++) cs[sae->aux_idx[t] + 1]++;
    for (int s = 0; s < S; s++) cs[s + 1] += cs[s];
    size_t total = (size_t)n_act + n_aux;
    if (total > sae->csc_cap) {
        sae->csc_cap = total + total / 2;
        sae->csc_entry = reallocCheck(sae->csc_entry, sae->csc_cap * sizeof(int));
    }
    /* cs[s] advances to the end of latent s while filling, then shifts back */
    for (int q = 0; q < n_act; q++) sae->csc_entry[cs[sae->act_idx[q]]++] = q;
    for (int t = 0; t < n_aux; t++) sae->csc_entry[cs[sae->aux_idx[t]]++] = n_act + t;
    for (int s = S; s > 0; s--) cs[s] = cs[s - 1];
    cs[0] = 0;
}

/* Sparse backward (top-k variants): dL/dh of the active entries, AuxK, then per latent
 * W_dec and W_enc rows and b_enc; W_enc's gradient from its transpose. */
static void fb_backward_sparse(Fb *fb, int n_dead, double *stats) {
    Sae *sae = fb->sae;
    int n_act = sae->act_start[fb->n];
    fb->n_act = n_act;
    par_for(n_act, phase_act_dh, fb);
    int n_aux = fb_aux(fb, n_dead, stats);
    fb_group_by_latent(sae, fb->S, n_act, n_aux);
    fb->n_aux = n_aux;
    par_for(fb->S, phase_scatter, fb);
    par_for(n_chunks(fb->d, 64), phase_transpose, fb);
}

void sae_forward_backward(Sae *sae, const float *x, int n, int64_t N, double *stats) {
    const SaeConfig *c = &sae->cfg;
    int d = c->d_model, S = c->d_sae, P = sae->n_step_prefixes;
    const int *pref = sae->step_prefixes;
    if (n > sae->max_batch) saev_fail("batch of %d rows exceeds the SAE workspace (%d)", n, sae->max_batch);
    memset(stats, 0, sae_n_stats(c) * sizeof(double));
    for (int j = 0, s = 0; j < P; j++)
        for (; s < pref[j]; s++) sae->latent_block[s] = j;
    Fb fb = {.sae = sae, .x = x, .x_in = x, .n = n, .d = d, .S = S, .P = P, .N = N, .Bd = (size_t)n * d,
             .coef = 2.0f / ((float)N * d * P), .l1g = c->l1_coeff / (float)N,
             .row_chunks = n_chunks(n, ROW_CHUNK), .d_chunks = n_chunks(d, COL_CHUNK), .s_chunks = n_chunks(S, LAT_CHUNK)};
    /* float64 partials: the largest phase needs d_chunks·(1 + COL_CHUNK) or one per row chunk (or two per S chunk). */
    size_t n_part_max = (size_t)fb.d_chunks * (1 + COL_CHUNK);
    if ((size_t)fb.row_chunks > n_part_max) n_part_max = fb.row_chunks;
    if ((size_t)fb.s_chunks * 2 > n_part_max) n_part_max = fb.s_chunks * 2;
    fb.part = mallocCheck(n_part_max * sizeof(double));

    fb_x_stats(&fb, stats);
    fb_encode(&fb);
    fb_select(&fb, stats);
    int n_dead = fb_dead_counters(&fb);
    fb_decode_loss(&fb, stats);
    if (c->activation == SAE_RELU) fb_backward_dense(&fb);
    else fb_backward_sparse(&fb, n_dead, stats);
    /* Centred input: x_in = x - b_dec, so b_dec also gets -W_enc·db_enc. */
    if (c->center_input)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, d, S, -1.0f, sae->p.w_enc, S, sae->g.b_enc, 1, 1.0f, sae->g.b_dec, 1);
    free(fb.part);
}

static void remove_parallel_rows(void *ctx_, int64_t s0, int64_t s1) {
    const RowsCtx *c = ctx_;
    for (int64_t s = s0; s < s1; s++) {
        const float *w = c->g + (size_t)s * c->d; /* the parameter row */
        float *g = c->w + (size_t)s * c->d;       /* its gradient */
        float dot = 0;
        for (int i = 0; i < c->d; i++) dot += g[i] * w[i];
        for (int i = 0; i < c->d; i++) g[i] -= dot * w[i];
    }
}

void sae_remove_parallel_grads(Sae *sae) {
    RowsCtx c = {sae->g.w_dec, sae->p.w_dec, sae->cfg.d_model};
    par_for(sae->cfg.d_sae, remove_parallel_rows, &c);
}

typedef struct { float *g; size_t n; double *part; float coef; } FlatCtx;

static void sumsq_chunks(void *ctx_, int64_t c0, int64_t c1) {
    FlatCtx *c = ctx_;
    for (int64_t ch = c0; ch < c1; ch++) {
        size_t a = (size_t)ch * ELEM_CHUNK, b = a + ELEM_CHUNK < c->n ? a + ELEM_CHUNK : c->n;
        double lane[8] = {0}; /* 8 float64 lanes so the sum vectorizes */
        size_t i = a;
        for (; i + 8 <= b; i += 8)
            for (int j = 0; j < 8; j++) lane[j] += (double)c->g[i + j] * c->g[i + j];
        for (int j = 0; i < b; i++, j++) lane[j] += (double)c->g[i] * c->g[i];
        c->part[ch] = ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
    }
}

double sae_grad_norm(const Sae *sae) {
    int64_t nc = n_chunks((int64_t)sae->n_params, ELEM_CHUNK);
    FlatCtx c = {sae->grads, sae->n_params, mallocCheck(nc * sizeof(double)), 0};
    par_for(nc, sumsq_chunks, &c);
    double s = 0;
    for (int64_t ch = 0; ch < nc; ch++) s += c.part[ch];
    free(c.part);
    return sqrt(s);
}

static void scale_range(void *ctx_, int64_t a, int64_t b) {
    FlatCtx *c = ctx_;
    for (int64_t i = a; i < b; i++) c->g[i] *= c->coef;
}

void sae_clip_grads(Sae *sae, double norm, double max_norm) {
    if (max_norm <= 0) return;
    float coef = (float)(max_norm / (norm + 1e-6));
    if (coef >= 1.0f) return;
    FlatCtx c = {sae->grads, sae->n_params, NULL, coef};
    par_for((int64_t)sae->n_params, scale_range, &c);
}

typedef struct { float *p, *g, *m, *v; float step_size, bc2_sqrt; } AdamCtx;

static void adam_range(void *ctx_, int64_t a, int64_t b) {
    const AdamCtx *c = ctx_;
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    float *p = c->p, *g = c->g, *m = c->m, *v = c->v;
    for (int64_t i = a; i < b; i++) {
        m[i] = m[i] * b1 + g[i] * (1.0f - b1);
        v[i] = v[i] * b2 + g[i] * g[i] * (1.0f - b2);
        float denom = sqrtf(v[i]) / c->bc2_sqrt + eps;
        p[i] -= c->step_size * (m[i] / denom);
    }
}

void sae_adam_step(Sae *sae, float lr) {
    const float b1 = 0.9f, b2 = 0.999f;
    sae->adam_t++;
    /* torch.optim.Adam (single-tensor path): step_size = lr / bc1, denom = sqrt(v)/sqrt(bc2) + eps. */
    double bc1 = 1.0 - pow(b1, (double)sae->adam_t), bc2 = 1.0 - pow(b2, (double)sae->adam_t);
    AdamCtx c = {sae->params, sae->grads, sae->adam_m, sae->adam_v, (float)(lr / bc1), (float)sqrt(bc2)};
    par_for((int64_t)sae->n_params, adam_range, &c);
}

int sae_n_dead(const Sae *sae) {
    int n = 0;
    for (int s = 0; s < sae->cfg.d_sae; s++) n += sae->since_fired[s] >= sae->cfg.dead_threshold_tokens;
    return n;
}

/* Evaluation, one row per task. eval_activate applies the activation (relu, JumpReLU or
 * top-k) in place on the pre-activations and counts the non-zeros; eval_decode_sparse
 * sums x̂ = b_dec + Σ_j f_j W_dec[j] over a row's non-zero latents, nnz·d work per row
 * instead of the dense S·d, which is what makes top-k evaluation cheap. Dense codes
 * (relu early in training) go through one GEMM instead, since reading W_dec row by row
 * for half the latents of every token would be memory-bound. Rows are independent, so
 * the result does not depend on the thread count. */
typedef struct {
    const Sae *sae;
    float *f;        // [n, S] pre-activations in, activations out
    float *x_hat;    // [n, d]
    int64_t *nnz;    // [n] non-zeros per row
} EvalRowsCtx;

static void eval_activate(void *vctx, int64_t b0, int64_t b1) {
    const EvalRowsCtx *ctx = vctx;
    const SaeConfig *c = &ctx->sae->cfg;
    int S = c->d_sae, k = c->k;
    int *idx = c->activation == SAE_TOPK ? mallocCheck((size_t)k * sizeof(int)) : NULL;
    float *val = c->activation == SAE_TOPK ? mallocCheck((size_t)k * sizeof(float)) : NULL;
    for (int64_t b = b0; b < b1; b++) {
        float *fb = ctx->f + (size_t)b * S;
        if (c->activation == SAE_RELU) {
            for (int j = 0; j < S; j++) fb[j] = fb[j] > 0 ? fb[j] : 0;
        } else if (c->activation == SAE_BATCH_TOPK) {
            float th = ctx->sae->threshold; /* JumpReLU with the learned threshold */
            for (int j = 0; j < S; j++) fb[j] = fb[j] > th ? fb[j] : 0;
        } else {
            row_topk(fb, S, k, idx, val, NULL);
            memset(fb, 0, (size_t)S * sizeof(float));
            for (int t = 0; t < k; t++) fb[idx[t]] = val[t];
        }
        int64_t nz = 0;
        for (int j = 0; j < S; j++) nz += fb[j] != 0.0f;
        ctx->nnz[b] = nz;
    }
    free(idx);
    free(val);
}

static void eval_decode_sparse(void *vctx, int64_t b0, int64_t b1) {
    const EvalRowsCtx *ctx = vctx;
    int d = ctx->sae->cfg.d_model, S = ctx->sae->cfg.d_sae;
    for (int64_t b = b0; b < b1; b++) {
        const float *fb = ctx->f + (size_t)b * S;
        float *xb = ctx->x_hat + (size_t)b * d;
        memcpy(xb, ctx->sae->p.b_dec, (size_t)d * sizeof(float));
        for (int j = 0; j < S; j++) {
            if (fb[j] == 0.0f) continue;
            const float *w = ctx->sae->p.w_dec + (size_t)j * d;
            float v = fb[j];
            for (int i = 0; i < d; i++) xb[i] += v * w[i];
        }
    }
}

void sae_encode_decode_eval(Sae *sae, const float *x, int n, float *f, float *x_hat) {
    const SaeConfig *c = &sae->cfg;
    int d = c->d_model, S = c->d_sae;
    const float *x_in = x;
    float *xc = NULL;
    if (c->center_input) {
        xc = mallocCheck((size_t)n * d * sizeof(float));
        for (int b = 0; b < n; b++)
            for (int i = 0; i < d; i++) xc[(size_t)b * d + i] = x[(size_t)b * d + i] - sae->p.b_dec[i];
        x_in = xc;
    }
    for (int b = 0; b < n; b++) memcpy(f + (size_t)b * S, sae->p.b_enc, S * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, S, d, 1.0f, x_in, d, sae->p.w_enc, S, 1.0f, f, S);
    EvalRowsCtx ctx = {sae, f, x_hat, mallocCheck((size_t)(n > 0 ? n : 1) * sizeof(int64_t))};
    par_for(n, eval_activate, &ctx);
    int64_t nnz = 0;
    for (int b = 0; b < n; b++) nnz += ctx.nnz[b];
    if (nnz * 32 <= (int64_t)n * S) {
        par_for(n, eval_decode_sparse, &ctx);
    } else {
        for (int b = 0; b < n; b++) memcpy(x_hat + (size_t)b * d, sae->p.b_dec, d * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, S, 1.0f, f, S, sae->p.w_dec, d, 1.0f, x_hat, d);
    }
    free(ctx.nnz);
    free(xc);
}
