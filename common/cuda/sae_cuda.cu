/*
 * sae_cuda.cu: SAE training on the GPU (see sae_cuda.h for the design).
 *
 * Step (top-k): [x - b_dec] -> h = x_in·W_enc + b_enc (cuBLASLt, bias fused) -> per-row
 * radix select of the k largest h (entries kept in latent order) -> fired flags ->
 * dead counters -> per-row radix select of the k_aux largest h among dead latents (a
 * row's keys read once into shared memory when they fit) ->
 * one block per row decodes (Matryoshka prefixes in order), writes every prefix's
 * gradient, their suffix sums, dL/dh of each active and AuxK entry -> entries sorted
 * by latent (stable) -> one block per chunk of up to 1024 of a latent's entries sums
 * its part of the W_dec row, W_enc column and b_enc; a latent's chunks are added in
 * chunk order -> W_enc gradient transposed into place; b_dec's gradient is a column sum
 * (a GEMV with a ones vector). ReLU uses dense GEMMs throughout, one per prefix block.
 * Batch-top-k: four 8-bit radix passes over the whole [n,S] block of h find the key of the
 * global (k·N)-th largest value (each pass's 256-bin histogram is all-reduced over NCCL, so
 * every rank picks the same bin); the entries >= it are compacted row by row (count,
 * scan, ordered fill), and from there the decode and the sparse backward are top-k's,
 * with per-row entry ranges. The JumpReLU threshold follows sae_cpu.c's EMA.
 * Optimizer: warp-per-row normalization and parallel removal, a two-stage float64 norm,
 * then one fused clip + Adam kernel that reads the norm from device memory.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cub/cub.cuh>

extern "C" {
#include "comm.h" /* a C header without extern "C" guards */
}
#include "cuda_device.cuh"
#include "sae_cuda.h"

#define NORM_BLOCKS 1024

typedef struct {
    int n;
    int p[SAE_MAX_PREFIXES];
} Prefixes;

__device__ __forceinline__ int block_of(const Prefixes &pf, int s) {
    int j = 0;
    while (j < pf.n - 1 && s >= pf.p[j]) j++;
    return j;
}

/* Order-preserving float -> uint32 (larger float, larger key). */
__device__ __forceinline__ unsigned fkey(float f) {
    unsigned u = __float_as_uint(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* Inverse of fkey (bit-exact). */
__device__ __forceinline__ float key_to_float(unsigned k) {
    return __uint_as_float((k & 0x80000000u) ? (k & 0x7FFFFFFFu) : ~k);
}

/* Sum of a double over the block (all threads get it); blockDim.x a multiple of 32. */
__device__ double block_sum_double(double v) {
    __shared__ double part[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int warp = threadIdx.x / 32, lane = threadIdx.x & 31, nw = blockDim.x / 32;
    __syncthreads(); /* part may still be read from a previous call */
    if (lane == 0) part[warp] = v;
    __syncthreads();
    double t = 0;
    for (int w = 0; w < nw; w++) t += part[w];
    return t;
}

/* ---- encoder side ---- */

__global__ void sub_bias_kernel(const float *x, const float *b, float *out, size_t total, int d) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x)
        out[e] = x[e] - b[e % d];
}

/* Σx² and per-column Σx in float64: block (32, 8) covers 32 columns x 256 rows. */
__global__ void x_stats_kernel(const float *x, int n, int d, double *stats) {
    int c = blockIdx.x * 32 + threadIdx.x;
    int r0 = blockIdx.y * 256;
    double s = 0, q = 0;
    if (c < d)
        for (int r = r0 + threadIdx.y; r < n && r < r0 + 256; r += 8) {
            double v = x[(size_t)r * d + c];
            s += v;
            q += v * v;
        }
    __shared__ double ss[8][33], qq[8][33];
    ss[threadIdx.y][threadIdx.x] = s;
    qq[threadIdx.y][threadIdx.x] = q;
    __syncthreads();
    if (threadIdx.y == 0 && c < d) {
        for (int y = 1; y < 8; y++) {
            s += ss[y][threadIdx.x];
            q += qq[y][threadIdx.x];
        }
        atomicAdd(&stats[SAE_STAT_X_SUM0 + c], s);
        atomicAdd(&stats[SAE_STAT_X_SQ], q);
    }
}

/* The k largest entries of each row of h (only where mask != 0 when mask is given; k
 * capped by *k_limit when given), written in increasing latent order; unused slots of
 * the k_max-wide output get latent -1 and value 0. One block of 256 threads per row:
 * four 8-bit radix passes find the k-th largest key exactly, then one ordered pass
 * collects everything above it plus the first ties. Top-k (no mask) also records L0/L1
 * and fired flags. cached = 1 (dynamic shared memory of S keys): the row and the mask are
 * read from global memory once, into keys, and every pass reads those; masked latents get
 * key 0 there and no pass counts them (with a mask, 0 also drops the one NaN whose key it
 * is). cached = 0 (rows wider than shared memory): each pass reads h again. */
__global__ void __launch_bounds__(256) topk_kernel(const float *h, int S, int k_max, const int *k_limit, const float *mask,
                                                   int *out_idx, float *out_val, float *fired, double *stats, int cached) {
    extern __shared__ unsigned row_keys[]; /* [S] when cached */
    typedef cub::BlockScan<int, 256> Scan;
    __shared__ typename Scan::TempStorage scan_tmp;
    __shared__ unsigned hist[256];
    __shared__ unsigned sh_prefix, sh_mask;
    __shared__ int sh_krem, run_gt, run_eq;
    const int tid = threadIdx.x;
    const size_t row = blockIdx.x;
    const float *hr = h + row * S;
    int *oi = out_idx + row * k_max;
    float *ov = out_val + row * k_max;
    int k = k_max;
    if (k_limit && *k_limit < k) k = *k_limit;
    if (k <= 0) {
        for (int t = tid; t < k_max; t += 256) {
            oi[t] = -1;
            ov[t] = 0.0f;
        }
        return;
    }
    if (tid == 0) {
        sh_prefix = 0;
        sh_mask = 0;
        sh_krem = k;
        run_gt = 0;
        run_eq = 0;
    }
    if (cached) {
        for (int s = tid; s < S; s += 256) row_keys[s] = (mask && mask[s] == 0.0f) ? 0u : fkey(hr[s]);
        /* the __syncthreads after the first histogram's reset orders these writes before any read */
    }
    for (int pass = 0; pass < 4; pass++) {
        int shift = 24 - 8 * pass;
        hist[tid] = 0;
        __syncthreads();
        unsigned prefix = sh_prefix, pmask = sh_mask;
        for (int s = tid; s < S; s += 256) {
            unsigned key;
            if (cached) {
                key = row_keys[s];
                if (mask && key == 0u) continue;
            } else {
                if (mask && mask[s] == 0.0f) continue;
                key = fkey(hr[s]);
            }
            if ((key & pmask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
        }
        __syncthreads();
        if (tid == 0) {
            /* the bin holding the krem-th largest among the keys matching the prefix */
            int krem = sh_krem, bin = 255;
            unsigned cum = 0;
            for (; bin > 0; bin--) {
                if (cum + hist[bin] >= (unsigned)krem) break;
                cum += hist[bin];
            }
            sh_krem = krem - (int)cum;
            sh_prefix = prefix | ((unsigned)bin << shift);
            sh_mask = pmask | (255u << shift);
        }
        __syncthreads();
    }
    const unsigned kstar = sh_prefix; /* key of the k-th largest */
    const int krem = sh_krem;         /* how many entries equal to it are taken */
    float l1 = 0.0f, l0 = 0.0f;
    for (int base = 0; base < S; base += 256) {
        int s = base + tid, gt = 0, eq = 0;
        float v = 0.0f;
        if (s < S) {
            unsigned key = 0u;
            int valid;
            if (cached) {
                key = row_keys[s];
                valid = !(mask && key == 0u);
                v = key_to_float(key);
            } else {
                valid = !(mask && mask[s] == 0.0f);
                if (valid) {
                    v = hr[s];
                    key = fkey(v);
                }
            }
            if (valid) {
                gt = key > kstar;
                eq = key == kstar;
            } else {
                v = 0.0f;
            }
        }
        int excl, total;
        Scan(scan_tmp).ExclusiveSum(gt | (eq << 16), excl, total);
        int gt_before = run_gt + (excl & 0xFFFF), eq_before = run_eq + (excl >> 16);
        if (gt || (eq && eq_before < krem)) {
            int pos = gt_before + min(eq_before, krem);
            oi[pos] = s;
            ov[pos] = v;
            if (stats) {
                l1 += fabsf(v);
                if (v != 0.0f) {
                    l0 += 1.0f;
                    fired[s] = 1.0f;
                }
            }
        }
        __syncthreads(); /* everyone has read run_gt/run_eq and scan_tmp */
        if (tid == 0) {
            run_gt += total & 0xFFFF;
            run_eq += total >> 16;
        }
        __syncthreads();
    }
    for (int t = k + tid; t < k_max; t += 256) {
        oi[t] = -1;
        ov[t] = 0.0f;
    }
    if (stats) {
        double L1 = block_sum_double(l1), L0 = block_sum_double(l0);
        if (tid == 0) {
            atomicAdd(&stats[SAE_STAT_L1], L1);
            atomicAdd(&stats[SAE_STAT_L0], L0);
        }
    }
}

/* f = max(h, 0) in place, with L0, L1 and fired flags. */
__global__ void relu_kernel(float *h, size_t total, int S, float *fired, double *stats) {
    float l1 = 0.0f, l0 = 0.0f;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        float v = h[e] > 0.0f ? h[e] : 0.0f;
        h[e] = v;
        if (v > 0.0f) {
            l1 += v;
            l0 += 1.0f;
            fired[e % S] = 1.0f;
        }
    }
    double L1 = block_sum_double(l1), L0 = block_sum_double(l0);
    if (threadIdx.x == 0) {
        atomicAdd(&stats[SAE_STAT_L1], L1);
        atomicAdd(&stats[SAE_STAT_L0], L0);
    }
}

/* since_fired: reset where fired, else + N; dead flags and their count. */
__global__ void dead_update_kernel(const float *fired, int64_t *since, float *dead, int *n_dead, int S, int64_t N,
                                   int64_t threshold) {
    int s = blockIdx.x * blockDim.x + threadIdx.x;
    if (s >= S) return;
    int64_t v = fired[s] > 0.0f ? 0 : since[s] + N;
    since[s] = v;
    int is_dead = v >= threshold;
    dead[s] = is_dead ? 1.0f : 0.0f;
    if (is_dead) atomicAdd(n_dead, 1);
}

/* ---- decoder side ---- */

/* One block per row (top-k): reconstruction by prefix, per-prefix gradients and their
 * suffix sums, dL/dh of the active entries, and AuxK. Shared memory: acc[d]. */
__global__ void decode_topk_kernel(const float *x, const float *w_dec, const float *b_dec, const int *act_idx,
                                   const float *act_val, int k, const int *act_start, const int *aux_idx, const float *aux_val, int ka,
                                   const int *n_dead, float *x_hat, float *G, float *act_dh, float *aux_g, float *aux_dh,
                                   double *stats, int n, int d, Prefixes pf, float coef, float aux_inv, float aux_alpha) {
    extern __shared__ float acc[];
    const int b = blockIdx.x, tid = threadIdx.x, nt = blockDim.x;
    const int warp = tid / 32, lane = tid & 31, nw = nt / 32;
    const size_t Bd = (size_t)n * d;
    const float *xb = x + (size_t)b * d;
    /* top-k: k entries per row; batch-top-k: the row's range of the compacted entries */
    const size_t q0 = act_start ? (size_t)act_start[b] : (size_t)b * k;
    const int na = act_start ? act_start[b + 1] - act_start[b] : k;
    const int *ai = act_idx + q0;
    const float *av = act_val + q0;
    const int P = pf.n;
    for (int i = tid; i < d; i += nt) acc[i] = b_dec[i];
    double mse = 0.0, sq_full = 0.0, aux_sq = 0.0;
    int q = 0;
    for (int j = 0; j < P; j++) {
        for (; q < na && ai[q] < pf.p[j]; q++) {
            const float *w = w_dec + (size_t)ai[q] * d;
            float v = av[q];
            for (int i = tid; i < d; i += nt) acc[i] += v * w[i];
        }
        double se = 0.0;
        float *gj = G + (size_t)j * Bd + (size_t)b * d;
        for (int i = tid; i < d; i += nt) {
            float r = acc[i] - xb[i];
            se += (double)r * r;
            gj[i] = coef * r;
        }
        mse += se / P;
    }
    for (int i = tid; i < d; i += nt) {
        double r = (double)acc[i] - xb[i];
        sq_full += r * r;
        x_hat[(size_t)b * d + i] = acc[i];
    }
    for (int j = P - 2; j >= 0; j--)
        for (int i = tid; i < d; i += nt) G[(size_t)j * Bd + (size_t)b * d + i] += G[(size_t)(j + 1) * Bd + (size_t)b * d + i];
    __syncthreads(); /* G of this row complete for every thread */
    for (int t = warp; t < na; t += nw) {
        int s = ai[t];
        const float *g = G + (size_t)block_of(pf, s) * Bd + (size_t)b * d, *w = w_dec + (size_t)s * d;
        float dot = 0.0f;
        for (int i = lane; i < d; i += 32) dot += g[i] * w[i];
        dot = warp_sum(dot);
        if (lane == 0) act_dh[q0 + t] = dot;
    }
    if (ka > 0) {
        const int nd = *n_dead;
        const int *xi = aux_idx + (size_t)b * ka;
        const float *xv = aux_val + (size_t)b * ka;
        float *e = aux_g + (size_t)b * d;
        for (int i = tid; i < d; i += nt) {
            float ei = 0.0f;
            if (nd > 0) {
                /* aux_recon - r = (b_dec + Σ h_s W_dec[s]) - (x - x̂) */
                ei = b_dec[i] - (xb[i] - acc[i]);
                for (int t = 0; t < ka; t++)
                    if (xi[t] >= 0) ei += xv[t] * w_dec[(size_t)xi[t] * d + i];
                aux_sq += (double)ei * ei;
            }
            e[i] = ei * aux_inv;
        }
        __syncthreads();
        for (int t = warp; t < ka; t += nw) {
            int s = xi[t];
            float dot = 0.0f;
            if (s >= 0)
                for (int i = lane; i < d; i += 32) dot += e[i] * w_dec[(size_t)s * d + i];
            dot = warp_sum(dot);
            if (lane == 0) aux_dh[(size_t)b * ka + t] = dot;
        }
    }
    double M = block_sum_double(mse), Q = block_sum_double(sq_full), A = block_sum_double(aux_sq);
    if (tid == 0) {
        atomicAdd(&stats[SAE_STAT_MSE], M);
        atomicAdd(&stats[SAE_STAT_SQERR_FULL], Q);
        if (ka > 0) atomicAdd(&stats[SAE_STAT_AUX], (double)aux_alpha * A);
    }
}

__global__ void set_rows_kernel(float *y, const float *row, size_t total, int d) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x)
        y[e] = row[e % d];
}

/* relu decode, prefix j: G_j = coef (x̂_j - x); MSE/P; the last prefix adds the full error. */
__global__ void residual_grad_kernel(const float *x_hat, const float *x, float *Gj, size_t total, float coef, int P,
                                     int last, double *stats) {
    double se = 0.0;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        float r = x_hat[e] - x[e];
        se += (double)r * r;
        Gj[e] = coef * r;
    }
    double S = block_sum_double(se);
    if (threadIdx.x == 0) {
        atomicAdd(&stats[SAE_STAT_MSE], S / P);
        if (last) atomicAdd(&stats[SAE_STAT_SQERR_FULL], S);
    }
}

__global__ void suffix_sum_kernel(float *G, size_t Bd, int P) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < Bd; e += (size_t)gridDim.x * blockDim.x)
        for (int j = P - 2; j >= 0; j--) G[(size_t)j * Bd + e] += G[(size_t)(j + 1) * Bd + e];
}

/* relu: dh = (df + l1/N)·[f > 0] in place. */
__global__ void relu_dh_kernel(float *df, const float *f, size_t total, float l1g) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x)
        df[e] = f[e] > 0.0f ? df[e] + l1g : 0.0f;
}

/* ---- sparse backward ---- */

__global__ void make_keys_kernel(const int *act_idx, size_t n_act, const int *aux_idx, size_t n_aux, int S, int *keys,
                                 int *ents) {
    size_t total = n_act + n_aux;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        int s = e < n_act ? act_idx[e] : aux_idx[e - n_act];
        keys[e] = s >= 0 ? s : S; /* AuxK padding sorts past every latent */
        ents[e] = (int)e;
    }
}

/* seg_start[s] = first sorted entry with latent >= s, for s = 0..S. */
__global__ void seg_start_kernel(const int *keys_sorted, int E, int S, int *seg_start) {
    int s = blockIdx.x * blockDim.x + threadIdx.x;
    if (s > S) return;
    int lo = 0, hi = E;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (keys_sorted[mid] < s) lo = mid + 1;
        else hi = mid;
    }
    seg_start[s] = lo;
}

/* A latent's sorted entries are split into chunks of LATENT_CHUNK: a latent that fires in
 * (or, dead, is picked by AuxK in) many rows is summed by many blocks, not by one block
 * looping over every row. */
#define LATENT_CHUNK 1024

/* chunks of latent s (an empty latent has one, which writes its zero gradient) */
__global__ void chunk_count_kernel(const int *seg_start, int S, int *count) {
    int s = blockIdx.x * blockDim.x + threadIdx.x;
    if (s > S) return;
    int len = s < S ? seg_start[s + 1] - seg_start[s] : 0;
    count[s] = s == S ? 0 : (len == 0 ? 1 : (len + LATENT_CHUNK - 1) / LATENT_CHUNK);
}

/* One block (256 threads) per chunk c of latent s (chunk_start[s] <= c < chunk_start[s+1]):
 * the chunk's part of the W_dec row, of the W_enc row of the transposed gradient and of
 * the b_enc entry, summed over its entries in sorted (entry id) order. A latent with one
 * chunk writes its gradient; with several, each chunk writes its partial sums to
 * part[c] ([2d + 1]: W_dec part, W_enc part, b_enc part) and latent_reduce_kernel adds
 * them in chunk order, so the sums run in a fixed order. PER = ceil(d / 256) accumulators
 * per thread, in registers. The grid is an upper bound (S + E / LATENT_CHUNK blocks);
 * blocks past the last chunk return. */
template <int PER>
__global__ void __launch_bounds__(256) latent_grad_kernel(const int *ents_sorted, const int *seg_start, const int *chunk_start,
                                                          int S, const int *act_idx,
                                                          const float *act_val, const float *act_dh, int k,
                                                          size_t n_act, const int *act_row, const float *aux_val, const float *aux_dh, int ka,
                                                          const float *G, const float *aux_g, const float *x_in, int n,
                                                          int d, Prefixes pf, float *g_w_dec, float *g_w_enc_t,
                                                          float *g_b_enc, float *part) {
    const int c = blockIdx.x, tid = threadIdx.x;
    if (c >= chunk_start[S]) return;
    /* the latent of chunk c: the last s with chunk_start[s] <= c (every latent has >= 1 chunk) */
    int lo = 0, hi = S - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (chunk_start[mid] <= c) lo = mid;
        else hi = mid - 1;
    }
    const int s = lo, n_chunks = chunk_start[s + 1] - chunk_start[s], j0 = c - chunk_start[s];
    const int p0 = seg_start[s] + j0 * LATENT_CHUNK, p1 = min(p0 + LATENT_CHUNK, seg_start[s + 1]);
    const size_t Bd = (size_t)n * d;
    float gw[PER], gt[PER];
#pragma unroll
    for (int j = 0; j < PER; j++) gw[j] = gt[j] = 0.0f;
    float gb = 0.0f;
    const float *Gblk = G + (size_t)block_of(pf, s) * Bd;
    for (int p = p0; p < p1; p++) {
        size_t id = (size_t)ents_sorted[p];
        int b;
        float v, dh;
        const float *gv;
        if (id < n_act) {
            b = act_row ? act_row[id] : (int)(id / k);
            v = act_val[id];
            dh = act_dh[id];
            gv = Gblk + (size_t)b * d;
        } else {
            size_t t = id - n_act;
            b = (int)(t / ka);
            v = aux_val[t];
            dh = aux_dh[t];
            gv = aux_g + (size_t)b * d;
        }
        const float *xb = x_in + (size_t)b * d;
#pragma unroll
        for (int j = 0; j < PER; j++) {
            int i = tid + j * 256;
            if (i < d) {
                gw[j] += v * gv[i];
                gt[j] += dh * xb[i];
            }
        }
        gb += dh;
    }
    float *w_out = g_w_dec + (size_t)s * d, *t_out = g_w_enc_t + (size_t)s * d, *b_out = g_b_enc + s;
    if (n_chunks > 1) {
        float *pc = part + (size_t)c * (2 * d + 1);
        w_out = pc;
        t_out = pc + d;
        b_out = pc + 2 * d;
    }
#pragma unroll
    for (int j = 0; j < PER; j++) {
        int i = tid + j * 256;
        if (i < d) {
            w_out[i] = gw[j];
            t_out[i] = gt[j];
        }
    }
    if (tid == 0) *b_out = gb;
}

/* One block per latent with several chunks: its gradient is the sum of its chunks' parts,
 * added in chunk order (the same bits every run). */
__global__ void latent_reduce_kernel(const int *chunk_start, int d, const float *part, float *g_w_dec, float *g_w_enc_t,
                                     float *g_b_enc) {
    const int s = blockIdx.x, c0 = chunk_start[s], c1 = chunk_start[s + 1];
    if (c1 - c0 < 2) return;
    const size_t stride = 2 * (size_t)d + 1;
    for (int i = threadIdx.x; i <= 2 * d; i += blockDim.x) {
        float acc = 0.0f;
        for (int c = c0; c < c1; c++) acc += part[(size_t)c * stride + i];
        if (i < d) g_w_dec[(size_t)s * d + i] = acc;
        else if (i < 2 * d) g_w_enc_t[(size_t)s * d + (i - d)] = acc;
        else g_b_enc[s] = acc;
    }
}

/* out[c, r] = in[r, c] for in [R, C], 32x32 tiles. */
__global__ void transpose_kernel(const float *in, float *out, int R, int C) {
    __shared__ float tile[32][33];
    int c = blockIdx.x * 32 + threadIdx.x;
    for (int y = threadIdx.y; y < 32; y += 8) {
        int r = blockIdx.y * 32 + y;
        if (r < R && c < C) tile[y][threadIdx.x] = in[(size_t)r * C + c];
    }
    __syncthreads();
    int r = blockIdx.y * 32 + threadIdx.x;
    for (int y = threadIdx.y; y < 32; y += 8) {
        int cc = blockIdx.x * 32 + y;
        if (r < R && cc < C) out[(size_t)cc * R + r] = tile[threadIdx.x][y];
    }
}

/* ---- optimizer ---- */

__global__ void normalize_rows_kernel(float *w, int rows, int d) {
    int row = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x & 31;
    if (row >= rows) return;
    float *r = w + (size_t)row * d;
    float nn = 0.0f;
    for (int i = lane; i < d; i += 32) nn += r[i] * r[i];
    float norm = sqrtf(warp_sum(nn));
    for (int i = lane; i < d; i += 32) r[i] /= norm;
}

__global__ void remove_parallel_kernel(const float *w, float *g, int rows, int d) {
    int row = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x & 31;
    if (row >= rows) return;
    const float *wr = w + (size_t)row * d;
    float *gr = g + (size_t)row * d;
    float dot = 0.0f;
    for (int i = lane; i < d; i += 32) dot += gr[i] * wr[i];
    dot = warp_sum(dot);
    for (int i = lane; i < d; i += 32) gr[i] -= dot * wr[i];
}

__global__ void sumsq_partial_kernel(const float *g, size_t n, double *partials) {
    double s = 0.0;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
        s += (double)g[e] * g[e];
    double t = block_sum_double(s);
    if (threadIdx.x == 0) partials[blockIdx.x] = t;
}

__global__ void sumsq_final_kernel(const double *partials, int n, double *out) {
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += partials[i];
    double t = block_sum_double(s);
    if (threadIdx.x == 0) *out = t;
}

/* torch clip_grad_norm_ (coef = max / (norm + 1e-6), applied when < 1), then torch Adam. */
__global__ void clip_adam_kernel(float *p, float *g, float *m, float *v, size_t n, const double *norm_sq, double grad_clip,
                                 float step_size, float bc2_sqrt) {
    float coef = 1.0f;
    if (grad_clip > 0) {
        float c = (float)(grad_clip / (sqrt(*norm_sq) + 1e-6));
        if (c < 1.0f) coef = c;
    }
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        float gi = g[e] * coef;
        g[e] = gi;
        float mi = m[e] * b1 + gi * (1.0f - b1);
        float vi = v[e] * b2 + gi * gi * (1.0f - b2);
        m[e] = mi;
        v[e] = vi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        p[e] -= step_size * (mi / denom);
    }
}

/* ---- batch-top-k ---- */

struct MinOp {
    __device__ __forceinline__ float operator()(float a, float b) const { return a < b ? a : b; }
};

/* Start of the global select: no key bits fixed yet; the cut is the want-th largest. */
__global__ void bt_init_kernel(unsigned *key, long long *rank, long long want, int *min_bits) {
    key[0] = 0;
    key[1] = 0;
    *rank = want;
    *min_bits = 0x7F7FFFFF; /* FLT_MAX */
}

/* 256-bin histogram of bits [shift, shift+8) of the keys that match the prefix so far. */
__global__ void bt_hist_kernel(const float *h, size_t total, const unsigned *key, int shift, unsigned long long *hist) {
    __shared__ unsigned sh[256];
    for (int i = threadIdx.x; i < 256; i += blockDim.x) sh[i] = 0;
    __syncthreads();
    const unsigned prefix = key[0], mask = key[1];
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        unsigned k = fkey(h[e]);
        if ((k & mask) == prefix) atomicAdd(&sh[(k >> shift) & 255u], 1u);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < 256; i += blockDim.x)
        if (sh[i]) atomicAdd(&hist[i], (unsigned long long)sh[i]);
}

/* The bin holding the rank-th largest key (the histogram is global, so every rank picks
 * the same one); fixes those 8 bits of the prefix. */
__global__ void bt_pick_kernel(const unsigned long long *hist, unsigned *key, long long *rank, int shift) {
    long long r = *rank, cum = 0;
    int bin = 255;
    for (; bin > 0; bin--) {
        if (cum + (long long)hist[bin] >= r) break;
        cum += (long long)hist[bin];
    }
    *rank = r - cum;
    key[0] |= (unsigned)bin << shift;
    key[1] |= 255u << shift;
}

/* Entries of each row at or above the cut (count[b]); one block per row. */
__global__ void bt_count_kernel(const float *h, int S, const unsigned *key, int *count) {
    const float cut = key_to_float(key[0]);
    const float *hr = h + (size_t)blockIdx.x * S;
    int c = 0;
    for (int s = threadIdx.x; s < S; s += blockDim.x) c += hr[s] >= cut;
    typedef cub::BlockReduce<int, 256> Reduce;
    __shared__ typename Reduce::TempStorage tmp;
    int t = Reduce(tmp).Sum(c);
    if (threadIdx.x == 0) count[blockIdx.x] = t;
}

/* Row b's entries at or above the cut, in latent order, to [start[b], start[b+1]); with
 * L0, L1, fired flags and the smallest kept positive value. One block of 256 per row. */
__global__ void __launch_bounds__(256) bt_fill_kernel(const float *h, int S, const unsigned *key, const int *start,
                                                      int *out_idx, float *out_val, int *out_row, float *fired,
                                                      double *stats, int *min_bits) {
    typedef cub::BlockScan<int, 256> Scan;
    __shared__ typename Scan::TempStorage scan_tmp;
    __shared__ int run;
    const int tid = threadIdx.x, b = blockIdx.x;
    const float cut = key_to_float(key[0]);
    const float *hr = h + (size_t)b * S;
    const int base_pos = start[b];
    if (tid == 0) run = 0;
    __syncthreads();
    float l1 = 0.0f, l0 = 0.0f, mn = 3.402823466e38f;
    for (int base = 0; base < S; base += 256) {
        int s = base + tid, keep = 0;
        float v = 0.0f;
        if (s < S) {
            v = hr[s];
            keep = v >= cut;
        }
        int excl, total;
        Scan(scan_tmp).ExclusiveSum(keep, excl, total);
        if (keep) {
            int pos = base_pos + run + excl;
            out_idx[pos] = s;
            out_val[pos] = v;
            out_row[pos] = b;
            l1 += fabsf(v);
            if (v != 0.0f) {
                l0 += 1.0f;
                fired[s] = 1.0f;
            }
            if (v > 0.0f && v < mn) mn = v;
        }
        __syncthreads();
        if (tid == 0) run += total;
        __syncthreads();
    }
    double L1 = block_sum_double(l1), L0 = block_sum_double(l0);
    typedef cub::BlockReduce<float, 256> MinReduce;
    __shared__ typename MinReduce::TempStorage min_tmp;
    float m = MinReduce(min_tmp).Reduce(mn, MinOp());
    if (tid == 0) {
        atomicAdd(&stats[SAE_STAT_L1], L1);
        atomicAdd(&stats[SAE_STAT_L0], L0);
        atomicMin(min_bits, __float_as_int(m)); /* positive floats order as their bit patterns */
    }
}

__global__ void bt_neg_min_kernel(const int *min_bits, float *neg_min) { *neg_min = -__int_as_float(*min_bits); }

/* threshold <- (1 - momentum)·threshold + momentum·min, when anything positive was kept. */
__global__ void bt_threshold_kernel(const float *neg_min, float *threshold, float momentum) {
    float mn = -*neg_min;
    if (mn < 3.402823466e38f) *threshold = (1.0f - momentum) * *threshold + momentum * mn;
}

__global__ void scale_kernel(const float *x, float *out, size_t n, float scale) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x)
        out[e] = x[e] * scale;
}

/* ---- host side ---- */

static unsigned grid_for(size_t n) {
    unsigned b = cuda_blocks(n, 256);
    return b > 65536 ? 65536 : b;
}

static cudaStream_t stream_of(const SaeCuda *s) { return (cudaStream_t)s->stream; }

/* topk_kernel's dynamic shared memory: the row's S keys when they fit beside its static
 * shared memory under the device's opt-in limit per block (S up to about 56,000 on
 * H100/H200), else 0 (uncached: each pass reads the row again). The limit is raised once
 * per process (one GPU per rank). */
static size_t topk_smem(int S) {
    static long room = -1;
    if (room < 0) {
        int dev = 0, optin = 0;
        cudaCheck(cudaGetDevice(&dev));
        cudaCheck(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
        cudaFuncAttributes fa;
        cudaCheck(cudaFuncGetAttributes(&fa, topk_kernel));
        room = (long)optin - (long)fa.sharedSizeBytes;
        if (room < 0) room = 0;
        cudaCheck(cudaFuncSetAttribute(topk_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)room));
    }
    size_t bytes = (size_t)S * sizeof(unsigned);
    return (long)bytes <= room ? bytes : 0;
}

/* Entry arrays (active + AuxK) and the sort scratch for n_act active entries per step. */
static void reserve_entries(SaeCuda *sae, size_t n_act) {
    size_t B = (size_t)sae->max_batch, nx = B * (size_t)sae->cfg.k_aux;
    if (n_act > sae->act_cap) {
        size_t cap = sae->act_cap ? n_act + n_act / 2 : n_act; /* exact at creation, headroom when growing */
        cuda_free(sae->act_idx);
        cuda_free(sae->act_val);
        cuda_free(sae->act_dh);
        cuda_free(sae->act_row);
        sae->act_idx = (int *)cuda_malloc(cap * sizeof(int));
        sae->act_val = (float *)cuda_malloc(cap * sizeof(float));
        sae->act_dh = (float *)cuda_malloc(cap * sizeof(float));
        if (sae->cfg.activation == SAE_BATCH_TOPK) sae->act_row = (int *)cuda_malloc(cap * sizeof(int));
        sae->act_cap = cap;
    }
    size_t E = sae->act_cap + nx;
    if (E > 2147483647u) /* entry ids and the sort's item count are int (creation bounds B·(S + k_aux)) */
        saev_fail("SAE (CUDA): %zu sparse entries in one step exceed 2^31 - 1; lower the batch size", E);
    if (E > sae->sort_cap) {
        cuda_free(sae->keys);
        cuda_free(sae->keys_sorted);
        cuda_free(sae->ents);
        cuda_free(sae->ents_sorted);
        cuda_free(sae->sort_tmp);
        sae->keys = (int *)cuda_malloc(E * sizeof(int));
        sae->keys_sorted = (int *)cuda_malloc(E * sizeof(int));
        sae->ents = (int *)cuda_malloc(E * sizeof(int));
        sae->ents_sorted = (int *)cuda_malloc(E * sizeof(int));
        size_t bytes = 0;
        cudaCheck(cub::DeviceRadixSort::SortPairs(NULL, bytes, sae->keys, sae->keys_sorted, sae->ents, sae->ents_sorted,
                                                  (int)E, 0, 32, stream_of(sae)));
        sae->sort_tmp_bytes = bytes;
        sae->sort_tmp = cuda_malloc(bytes);
        sae->sort_cap = E;
        /* partial sums of the chunks of latents with several: at most S + E / LATENT_CHUNK chunks */
        cuda_free(sae->chunk_part);
        size_t max_chunks = (size_t)sae->cfg.d_sae + E / LATENT_CHUNK + 1;
        sae->chunk_part = (float *)cuda_malloc(max_chunks * (2 * (size_t)sae->cfg.d_model + 1) * sizeof(float));
    }
}

extern "C" int sae_cuda_create(SaeCuda *sae, const SaeConfig *cfg, int max_batch, Precision prec, char *err,
                               size_t errlen) {
    memset(sae, 0, sizeof *sae);
    const SaeConfig *c = cfg;
    const char *bad = sae_config_check(c);
    if (bad) return snprintf(err, errlen, "SAE config: %s", bad), -1;
    if (c->d_model > 16 * 256)
        return snprintf(err, errlen, "SAE (CUDA): d_model %d > 4096 is not supported on the GPU (use device cpu)", c->d_model), -1;
    if (c->activation != SAE_RELU && c->activation != SAE_TOPK && c->activation != SAE_BATCH_TOPK)
        return snprintf(err, errlen, "SAE (CUDA): activation %d is unknown", (int)c->activation), -1;
    if (c->activation == SAE_BATCH_TOPK && !(c->momentum >= 0.0f && c->momentum <= 1.0f))
        return snprintf(err, errlen, "SAE: momentum %g must be in [0, 1]", c->momentum), -1;
    if (prec == PRECISION_BF16)
        return snprintf(err, errlen, "SAE (CUDA): precision bf16 is not implemented for SAE training; use fp32 or tf32"), -1;
    if (max_batch < 1) return snprintf(err, errlen, "SAE: batch must be positive"), -1;
    /* The 32-bit quantities of a step, and only those: the sparse entries (latent keys,
     * entry ids and the radix sort's item count are int), at most B·(k + k_aux) of them for
     * top-k; batch-top-k's per-row entry offsets (act_start) can reach B·S when ties keep
     * every entry, and its entries B·S + B·k_aux. Dense [B, S] buffers use size_t indices
     * and cuBLAS takes B and S as separate ints, so relu has no such limit. */
    if (c->activation == SAE_TOPK && (double)max_batch * ((double)c->k + (c->k_aux < c->d_sae ? c->k_aux : c->d_sae)) > 2147483647.0)
        return snprintf(err, errlen, "SAE (CUDA): batch %d x (k %d + k_aux %d) entries exceed 2^31 - 1; lower the batch size",
                        max_batch, c->k, c->k_aux), -1;
    if (c->activation == SAE_BATCH_TOPK && (double)max_batch * ((double)c->d_sae + (c->k_aux < c->d_sae ? c->k_aux : c->d_sae)) > 2147483647.0)
        return snprintf(err, errlen, "SAE (CUDA): batch-top-k: batch %d x (d_sae %d + k_aux %d) exceeds 2^31 - 1 (entry offsets are "
                        "32-bit); lower the batch size", max_batch, c->d_sae, c->k_aux), -1;
    sae->cfg = *cfg;
    sae->prec = prec;
    sae->max_batch = max_batch;
    int d = c->d_model, S = c->d_sae, P = c->n_prefixes;
    size_t B = (size_t)max_batch;
    int sparse = c->activation != SAE_RELU;
    int ka = sparse ? (c->k_aux < S ? c->k_aux : S) : 0;
    sae->cfg.k_aux = ka;
    sae->stream = cuda_stream_create();
    sae->comm_stream = cuda_stream_create();
    cudaEvent_t e1, e2;
    cudaCheck(cudaEventCreateWithFlags(&e1, cudaEventDisableTiming));
    cudaCheck(cudaEventCreateWithFlags(&e2, cudaEventDisableTiming));
    sae->reduced = e1;
    sae->computed = e2;
    sae->gemm = cuda_gemm_create(sae->stream);
    sae->n_params = (size_t)d * S * 2 + S + d;
    float *all = (float *)cuda_malloc(4 * sae->n_params * sizeof(float));
    /* Set-up writes go on sae->stream, which every later use of these buffers follows
     * (kernels on it; the comm stream and the batch stage wait on its events): a plain
     * cudaMemset runs on the legacy default stream, which non-blocking streams never wait for. */
    cudaStream_t st = stream_of(sae);
    cudaCheck(cudaMemsetAsync(all, 0, 4 * sae->n_params * sizeof(float), st));
    sae->params = all;
    sae->grads = all + sae->n_params;
    sae->adam_m = all + 2 * sae->n_params;
    sae->adam_v = all + 3 * sae->n_params;
    sae->w_enc = sae->params;
    sae->b_enc = sae->w_enc + (size_t)d * S;
    sae->w_dec = sae->b_enc + S;
    sae->b_dec = sae->w_dec + (size_t)S * d;
    sae->g_w_enc = sae->grads;
    sae->g_b_enc = sae->g_w_enc + (size_t)d * S;
    sae->g_w_dec = sae->g_b_enc + S;
    sae->g_b_dec = sae->g_w_dec + (size_t)S * d;
    sae->since_fired = (int64_t *)cuda_malloc(S * sizeof(int64_t));
    cudaCheck(cudaMemsetAsync(sae->since_fired, 0, S * sizeof(int64_t), st));
    sae->fired = (float *)cuda_malloc(S * sizeof(float));
    sae->dead = (float *)cuda_malloc(S * sizeof(float));
    sae->n_dead = (int *)cuda_malloc(sizeof(int));
    cudaCheck(cudaMemsetAsync(sae->n_dead, 0, sizeof(int), st));
    sae->stats = (double *)cuda_malloc((SAE_STAT_X_SUM0 + d) * sizeof(double));
    cudaCheck(cudaMemsetAsync(sae->stats, 0, (SAE_STAT_X_SUM0 + d) * sizeof(double), st));
    sae->norm_sq = (double *)cuda_malloc(sizeof(double));
    cudaCheck(cudaMemsetAsync(sae->norm_sq, 0, sizeof(double), st));
    sae->partials = (double *)cuda_malloc(NORM_BLOCKS * sizeof(double));
    sae->threshold = (float *)cuda_malloc(sizeof(float));
    cudaCheck(cudaMemsetAsync(sae->threshold, 0, sizeof(float), st));
    sae->ones = (float *)cuda_malloc(B * sizeof(float));
    float *ones = (float *)mallocCheck(B * sizeof(float));
    for (size_t i = 0; i < B; i++) ones[i] = 1.0f;
    cuda_upload(sae->ones, ones, B * sizeof(float), st);
    free(ones);
    sae->h = (float *)cuda_malloc(B * S * sizeof(float));
    if (!sparse) sae->df = (float *)cuda_malloc(B * S * sizeof(float));
    if (c->center_input) sae->x_in = (float *)cuda_malloc(B * d * sizeof(float));
    sae->x_hat = (float *)cuda_malloc(B * d * sizeof(float));
    sae->g_pref = (float *)cuda_malloc((size_t)P * B * d * sizeof(float));
    if (sparse) {
        size_t nx = B * (size_t)ka;
        if (ka > 0) {
            sae->aux_idx = (int *)cuda_malloc(nx * sizeof(int));
            sae->aux_val = (float *)cuda_malloc(nx * sizeof(float));
            sae->aux_dh = (float *)cuda_malloc(nx * sizeof(float));
            sae->aux_g = (float *)cuda_malloc(B * d * sizeof(float));
        }
        sae->seg_start = (int *)cuda_malloc((S + 1) * sizeof(int));
        sae->chunk_count = (int *)cuda_malloc((S + 1) * sizeof(int));
        sae->chunk_start = (int *)cuda_malloc((S + 1) * sizeof(int));
        size_t cbytes = 0;
        cudaCheck(cub::DeviceScan::ExclusiveSum(NULL, cbytes, sae->chunk_count, sae->chunk_start, S + 1, st));
        sae->chunk_scan_tmp_bytes = cbytes;
        sae->chunk_scan_tmp = cuda_malloc(cbytes);
        sae->g_w_enc_t = (float *)cuda_malloc((size_t)S * d * sizeof(float));
        /* top-k: exactly B·k entries; batch-top-k: k·B on average, room for twice that first */
        size_t first = B * (size_t)c->k;
        if (c->activation == SAE_BATCH_TOPK) {
            first *= 2;
            if (first > B * (size_t)S) first = B * (size_t)S;
            sae->act_start = (int *)cuda_malloc((B + 1) * sizeof(int));
            sae->row_count = (int *)cuda_malloc((B + 1) * sizeof(int));
            cudaCheck(cudaMemsetAsync(sae->row_count, 0, (B + 1) * sizeof(int), st));
            size_t bytes = 0;
            cudaCheck(cub::DeviceScan::ExclusiveSum(NULL, bytes, sae->row_count, sae->act_start, (int)B + 1, stream_of(sae)));
            sae->scan_tmp_bytes = bytes;
            sae->scan_tmp = cuda_malloc(bytes);
            sae->total_host = (int *)cuda_host_alloc(sizeof(int));
            sae->bt_hist = (unsigned long long *)cuda_malloc(256 * sizeof(unsigned long long));
            sae->bt_key = (unsigned *)cuda_malloc(2 * sizeof(unsigned));
            sae->bt_rank = (long long *)cuda_malloc(sizeof(long long));
            sae->bt_min_bits = (int *)cuda_malloc(sizeof(int));
            sae->bt_neg_min = (float *)cuda_malloc(sizeof(float));
        }
        reserve_entries(sae, first);
    }
    cuda_stream_sync(st); /* creation is synchronous, as its callers assume */
    return 0;
}

extern "C" void sae_cuda_destroy(SaeCuda *sae) {
    if (!sae->stream) return;
    cuda_stream_sync(sae->stream);
    cuda_stream_sync(sae->comm_stream);
    cuda_gemm_destroy(sae->gemm);
    void *bufs[] = {sae->params, sae->since_fired, sae->fired, sae->dead, sae->n_dead, sae->stats, sae->norm_sq,
                    sae->partials, sae->threshold, sae->ones, sae->h, sae->df, sae->x_in, sae->x_hat, sae->g_pref,
                    sae->act_idx, sae->act_val, sae->act_dh, sae->act_start, sae->act_row, sae->row_count, sae->scan_tmp,
                    sae->bt_hist, sae->bt_key, sae->bt_rank, sae->bt_min_bits, sae->bt_neg_min, sae->aux_idx,
                    sae->aux_val, sae->aux_dh, sae->aux_g, sae->keys, sae->keys_sorted, sae->ents, sae->ents_sorted,
                    sae->seg_start, sae->g_w_enc_t, sae->sort_tmp, sae->chunk_count, sae->chunk_start,
                    sae->chunk_scan_tmp, sae->chunk_part};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cuda_free(bufs[i]);
    cuda_host_free(sae->total_host);
    cudaCheck(cudaEventDestroy((cudaEvent_t)sae->reduced));
    cudaCheck(cudaEventDestroy((cudaEvent_t)sae->computed));
    cuda_stream_destroy(sae->stream);
    cuda_stream_destroy(sae->comm_stream);
    memset(sae, 0, sizeof *sae);
}

extern "C" void sae_cuda_set_params(SaeCuda *sae, const float *host) {
    cuda_upload(sae->params, host, sae->n_params * sizeof(float), sae->stream);
}

extern "C" void sae_cuda_get_params(SaeCuda *sae, float *host) {
    cuda_download(host, sae->params, sae->n_params * sizeof(float), sae->stream);
}

extern "C" void sae_cuda_upload_state(SaeCuda *sae, const float *params, const float *adam_m, const float *adam_v,
                                      const int64_t *since_fired, float threshold, int64_t adam_t) {
    size_t bytes = sae->n_params * sizeof(float);
    /* the comm stream's last all-reduce read the gradients only, but a state upload is rare:
     * drain it too, and order the copies on sae->stream where every step reads the state */
    cuda_stream_sync(sae->comm_stream);
    cuda_upload(sae->params, params, bytes, sae->stream);
    cuda_upload(sae->adam_m, adam_m, bytes, sae->stream);
    cuda_upload(sae->adam_v, adam_v, bytes, sae->stream);
    cuda_upload(sae->since_fired, since_fired, sae->cfg.d_sae * sizeof(int64_t), sae->stream);
    cuda_upload(sae->threshold, &threshold, sizeof(float), sae->stream);
    sae->adam_t = adam_t;
}

extern "C" void sae_cuda_download_state(SaeCuda *sae, float *params, float *adam_m, float *adam_v, int64_t *since_fired,
                                        float *threshold, int64_t *adam_t) {
    size_t bytes = sae->n_params * sizeof(float);
    cuda_stream_sync(sae->comm_stream);
    cuda_download(params, sae->params, bytes, sae->stream);
    cuda_download(adam_m, sae->adam_m, bytes, sae->stream);
    cuda_download(adam_v, sae->adam_v, bytes, sae->stream);
    cuda_download(since_fired, sae->since_fired, sae->cfg.d_sae * sizeof(int64_t), sae->stream);
    cuda_download(threshold, sae->threshold, sizeof(float), sae->stream);
    *adam_t = sae->adam_t;
}

extern "C" void sae_cuda_normalize_w_dec(SaeCuda *sae) {
    int S = sae->cfg.d_sae;
    normalize_rows_kernel<<<cuda_blocks((size_t)S * 32, 256), 256, 0, stream_of(sae)>>>(sae->w_dec, S, sae->cfg.d_model);
    cudaLaunchCheck();
}

extern "C" void sae_cuda_remove_parallel_grads(SaeCuda *sae) {
    int S = sae->cfg.d_sae;
    remove_parallel_kernel<<<cuda_blocks((size_t)S * 32, 256), 256, 0, stream_of(sae)>>>(sae->w_dec, sae->g_w_dec, S,
                                                                                        sae->cfg.d_model);
    cudaLaunchCheck();
}

extern "C" void sae_cuda_grad_norm(SaeCuda *sae) {
    sumsq_partial_kernel<<<NORM_BLOCKS, 256, 0, stream_of(sae)>>>(sae->grads, sae->n_params, sae->partials);
    cudaLaunchCheck();
    sumsq_final_kernel<<<1, 256, 0, stream_of(sae)>>>(sae->partials, NORM_BLOCKS, sae->norm_sq);
    cudaLaunchCheck();
}

extern "C" void sae_cuda_clip_adam(SaeCuda *sae, float lr, double grad_clip) {
    sae->adam_t++;
    double bc1 = 1.0 - pow(0.9, (double)sae->adam_t), bc2 = 1.0 - pow(0.999, (double)sae->adam_t);
    clip_adam_kernel<<<grid_for(sae->n_params), 256, 0, stream_of(sae)>>>(sae->params, sae->grads, sae->adam_m, sae->adam_v,
                                                                         sae->n_params, sae->norm_sq, grad_clip,
                                                                         (float)(lr / bc1), (float)sqrt(bc2));
    cudaLaunchCheck();
}

/* Batch-top-k activation: the global (k·N)-th largest h by radix select (histograms
 * all-reduced), the entries >= it compacted by row, the threshold EMA. Returns the
 * number of this rank's entries (read back to the host: the one sync of the step). */
static size_t batch_topk_select(SaeCuda *sae, int n, int64_t N) {
    const SaeConfig *c = &sae->cfg;
    cudaStream_t st = stream_of(sae);
    int S = c->d_sae;
    size_t BS = (size_t)n * S;
    long long want = (long long)c->k * N, all = (long long)N * S;
    if (want > all) want = all;
    bt_init_kernel<<<1, 1, 0, st>>>(sae->bt_key, sae->bt_rank, want, sae->bt_min_bits);
    cudaLaunchCheck();
    for (int pass = 0; pass < 4; pass++) {
        int shift = 24 - 8 * pass;
        cudaCheck(cudaMemsetAsync(sae->bt_hist, 0, 256 * sizeof(unsigned long long), st));
        bt_hist_kernel<<<grid_for(BS) < 1024 ? grid_for(BS) : 1024, 256, 0, st>>>(sae->h, BS, sae->bt_key, shift, sae->bt_hist);
        cudaLaunchCheck();
        if (sae->distributed) comm_allreduce_device(sae->comm, sae->bt_hist, 256, COMM_I64, COMM_SUM, sae->stream);
        bt_pick_kernel<<<1, 1, 0, st>>>(sae->bt_hist, sae->bt_key, sae->bt_rank, shift);
        cudaLaunchCheck();
    }
    bt_count_kernel<<<n, 256, 0, st>>>(sae->h, S, sae->bt_key, sae->row_count);
    cudaLaunchCheck();
    cudaCheck(cudaMemsetAsync(sae->row_count + n, 0, sizeof(int), st));
    size_t bytes = sae->scan_tmp_bytes;
    cudaCheck(cub::DeviceScan::ExclusiveSum(sae->scan_tmp, bytes, sae->row_count, sae->act_start, n + 1, st));
    cudaCheck(cudaMemcpyAsync(sae->total_host, sae->act_start + n, sizeof(int), cudaMemcpyDeviceToHost, st));
    cuda_stream_sync(sae->stream);
    size_t total = (size_t)*sae->total_host;
    reserve_entries(sae, total);
    bt_fill_kernel<<<n, 256, 0, st>>>(sae->h, S, sae->bt_key, sae->act_start, sae->act_idx, sae->act_val, sae->act_row,
                                      sae->fired, sae->stats, sae->bt_min_bits);
    cudaLaunchCheck();
    bt_neg_min_kernel<<<1, 1, 0, st>>>(sae->bt_min_bits, sae->bt_neg_min);
    cudaLaunchCheck();
    if (sae->distributed) comm_allreduce_device(sae->comm, sae->bt_neg_min, 1, COMM_F32, COMM_MAX, sae->stream);
    bt_threshold_kernel<<<1, 1, 0, st>>>(sae->bt_neg_min, sae->threshold, c->momentum);
    cudaLaunchCheck();
    return total;
}

extern "C" void sae_cuda_forward_backward(SaeCuda *sae, const float *x, int n, int64_t N, const int *prefixes,
                                          int n_prefixes) {
    const SaeConfig *c = &sae->cfg;
    if (n > sae->max_batch) saev_fail("SAE (CUDA): batch of %d rows exceeds the workspace (%d)", n, sae->max_batch);
    cudaStream_t st = stream_of(sae);
    Precision prec = sae->prec;
    int d = c->d_model, S = c->d_sae, k = c->k, ka = c->k_aux;
    Prefixes pf;
    memset(&pf, 0, sizeof pf);
    if (!prefixes) {
        if (c->sample_prefixes && c->n_prefixes > 1)
            saev_fail("SAE (CUDA): sample_prefixes is set, so each step needs its drawn prefixes (sae_draw_prefixes)");
        prefixes = c->prefixes;
        n_prefixes = c->n_prefixes;
    }
    if (n_prefixes < 1 || n_prefixes > SAE_MAX_PREFIXES || prefixes[n_prefixes - 1] != S)
        saev_fail("SAE (CUDA): a step's prefixes must end at d_sae");
    pf.n = n_prefixes;
    memcpy(pf.p, prefixes, n_prefixes * sizeof(int));
    const int P = pf.n;
    size_t Bd = (size_t)n * d, BS = (size_t)n * S;
    size_t n_stats = SAE_STAT_X_SUM0 + (size_t)d;

    cudaCheck(cudaMemsetAsync(sae->stats, 0, n_stats * sizeof(double), st));
    cudaCheck(cudaMemsetAsync(sae->grads, 0, sae->n_params * sizeof(float), st));
    cudaCheck(cudaMemsetAsync(sae->fired, 0, S * sizeof(float), st));
    cudaCheck(cudaMemsetAsync(sae->n_dead, 0, sizeof(int), st));
    if (n < 1) {
        /* a rank without rows still joins the collectives with zero contributions */
        if (sae->distributed) {
            if (c->activation == SAE_BATCH_TOPK) saev_fail("SAE (CUDA): batch-top-k needs rows on every rank");
            comm_allreduce_device(sae->comm, sae->fired, S, COMM_F32, COMM_MAX, sae->stream);
        }
        dead_update_kernel<<<cuda_blocks(S, 256), 256, 0, st>>>(sae->fired, sae->since_fired, sae->dead, sae->n_dead, S, N,
                                                                c->dead_threshold_tokens);
        cudaLaunchCheck();
        return;
    }
    dim3 xs_grid((d + 31) / 32, (n + 255) / 256), xs_block(32, 8);
    x_stats_kernel<<<xs_grid, xs_block, 0, st>>>(x, n, d, sae->stats);
    cudaLaunchCheck();

    /* encoder */
    const float *x_in = x;
    if (c->center_input) {
        sub_bias_kernel<<<grid_for(Bd), 256, 0, st>>>(x, sae->b_dec, sae->x_in, Bd, d);
        cudaLaunchCheck();
        x_in = sae->x_in;
    }
    cuda_gemm(sae->gemm, prec, 0, 0, n, S, d, 1.0f, x_in, d, sae->w_enc, S, 0.0f, sae->h, S, sae->b_enc);

    /* activation, sparsity statistics, fired flags, dead counters */
    int sparse = c->activation != SAE_RELU, batch = c->activation == SAE_BATCH_TOPK;
    const int *act_start = NULL, *act_row = NULL;
    if (c->activation == SAE_TOPK) {
        size_t smem = topk_smem(S);
        topk_kernel<<<n, 256, smem, st>>>(sae->h, S, k, NULL, NULL, sae->act_idx, sae->act_val, sae->fired, sae->stats, smem > 0);
        sae->n_act = (size_t)n * k;
    } else if (batch) {
        sae->n_act = batch_topk_select(sae, n, N);
        act_start = sae->act_start;
        act_row = sae->act_row;
    } else {
        relu_kernel<<<grid_for(BS), 256, 0, st>>>(sae->h, BS, S, sae->fired, sae->stats);
    }
    cudaLaunchCheck();
    if (sae->distributed) comm_allreduce_device(sae->comm, sae->fired, S, COMM_F32, COMM_MAX, sae->stream);
    dead_update_kernel<<<cuda_blocks(S, 256), 256, 0, st>>>(sae->fired, sae->since_fired, sae->dead, sae->n_dead, S, N,
                                                            c->dead_threshold_tokens);
    cudaLaunchCheck();

    float coef = 2.0f / ((float)N * d * P);
    if (sparse) {
        if (ka > 0) {
            size_t smem = topk_smem(S);
            topk_kernel<<<n, 256, smem, st>>>(sae->h, S, ka, sae->n_dead, sae->dead, sae->aux_idx, sae->aux_val, NULL, NULL,
                                              smem > 0);
            cudaLaunchCheck();
        }
        float aux_inv = 2.0f * c->aux_alpha / ((float)N * d);
        decode_topk_kernel<<<n, 256, d * sizeof(float), st>>>(x, sae->w_dec, sae->b_dec, sae->act_idx, sae->act_val, k,
                                                             act_start, sae->aux_idx, sae->aux_val, ka, sae->n_dead,
                                                             sae->x_hat, sae->g_pref, sae->act_dh, sae->aux_g, sae->aux_dh,
                                                             sae->stats, n, d, pf, coef, aux_inv, c->aux_alpha);
        cudaLaunchCheck();
        /* group entries by latent: stable sort, so each latent sums in entry order */
        size_t n_act = sae->n_act, n_aux = (size_t)n * ka, E = n_act + n_aux;
        if (E > 0) {
            make_keys_kernel<<<grid_for(E), 256, 0, st>>>(sae->act_idx, n_act, sae->aux_idx, n_aux, S, sae->keys, sae->ents);
            cudaLaunchCheck();
            int end_bit = 1;
            while ((1LL << end_bit) <= S) end_bit++; /* keys are 0..S */
            size_t bytes = sae->sort_tmp_bytes;
            cudaCheck(cub::DeviceRadixSort::SortPairs(sae->sort_tmp, bytes, sae->keys, sae->keys_sorted, sae->ents,
                                                      sae->ents_sorted, (int)E, 0, end_bit, st));
        }
        seg_start_kernel<<<cuda_blocks((size_t)S + 1, 256), 256, 0, st>>>(sae->keys_sorted, (int)E, S, sae->seg_start);
        cudaLaunchCheck();
        chunk_count_kernel<<<cuda_blocks((size_t)S + 1, 256), 256, 0, st>>>(sae->seg_start, S, sae->chunk_count);
        cudaLaunchCheck();
        size_t cbytes = sae->chunk_scan_tmp_bytes;
        cudaCheck(cub::DeviceScan::ExclusiveSum(sae->chunk_scan_tmp, cbytes, sae->chunk_count, sae->chunk_start, S + 1, st));
        unsigned chunk_grid = (unsigned)((size_t)S + E / LATENT_CHUNK + 1); /* >= chunk_start[S] */
        int per = (d + 255) / 256;
#define LATENT_GRAD(PER)                                                                                              \
    latent_grad_kernel<PER><<<chunk_grid, 256, 0, st>>>(sae->ents_sorted, sae->seg_start, sae->chunk_start, S,        \
                                               sae->act_idx, sae->act_val,                                             \
                                               sae->act_dh, k, n_act, act_row, sae->aux_val, sae->aux_dh, ka,          \
                                               sae->g_pref, sae->aux_g, x_in, n, d, pf, sae->g_w_dec, sae->g_w_enc_t,  \
                                               sae->g_b_enc, sae->chunk_part)
        if (per <= 1) LATENT_GRAD(1);
        else if (per <= 2) LATENT_GRAD(2);
        else if (per <= 4) LATENT_GRAD(4);
        else if (per <= 8) LATENT_GRAD(8);
        else LATENT_GRAD(16);
#undef LATENT_GRAD
        cudaLaunchCheck();
        latent_reduce_kernel<<<S, 256, 0, st>>>(sae->chunk_start, d, sae->chunk_part, sae->g_w_dec, sae->g_w_enc_t, sae->g_b_enc);
        cudaLaunchCheck();
        dim3 tgrid((d + 31) / 32, (S + 31) / 32), tblock(32, 8);
        transpose_kernel<<<tgrid, tblock, 0, st>>>(sae->g_w_enc_t, sae->g_w_enc, S, d);
        cudaLaunchCheck();
        /* b_dec: Σ_b of prefix 0's (suffix-summed) gradient and of the AuxK gradient */
        cuda_gemm(sae->gemm, prec, 1, 0, d, 1, n, 1.0f, sae->g_pref, d, sae->ones, 1, 0.0f, sae->g_b_dec, 1, NULL);
        if (ka > 0) cuda_gemm(sae->gemm, prec, 1, 0, d, 1, n, 1.0f, sae->aux_g, d, sae->ones, 1, 1.0f, sae->g_b_dec, 1, NULL);
    } else {
        set_rows_kernel<<<grid_for(Bd), 256, 0, st>>>(sae->x_hat, sae->b_dec, Bd, d);
        cudaLaunchCheck();
        for (int j = 0; j < P; j++) {
            int s0 = j ? pf.p[j - 1] : 0, w = pf.p[j] - s0;
            cuda_gemm(sae->gemm, prec, 0, 0, n, d, w, 1.0f, sae->h + s0, S, sae->w_dec + (size_t)s0 * d, d, 1.0f, sae->x_hat,
                      d, NULL);
            residual_grad_kernel<<<grid_for(Bd), 256, 0, st>>>(sae->x_hat, x, sae->g_pref + (size_t)j * Bd, Bd, coef, P,
                                                               j == P - 1, sae->stats);
            cudaLaunchCheck();
        }
        if (P > 1) {
            suffix_sum_kernel<<<grid_for(Bd), 256, 0, st>>>(sae->g_pref, Bd, P);
            cudaLaunchCheck();
        }
        cuda_gemm(sae->gemm, prec, 1, 0, d, 1, n, 1.0f, sae->g_pref, d, sae->ones, 1, 0.0f, sae->g_b_dec, 1, NULL);
        for (int j = 0; j < P; j++) {
            int s0 = j ? pf.p[j - 1] : 0, w = pf.p[j] - s0;
            const float *gj = sae->g_pref + (size_t)j * Bd;
            /* dW_dec[blk] = f[:, blk]^T G_j;  df[:, blk] = G_j W_dec[blk]^T */
            cuda_gemm(sae->gemm, prec, 1, 0, w, d, n, 1.0f, sae->h + s0, S, gj, d, 0.0f, sae->g_w_dec + (size_t)s0 * d, d,
                      NULL);
            cuda_gemm(sae->gemm, prec, 0, 1, n, w, d, 1.0f, gj, d, sae->w_dec + (size_t)s0 * d, d, 0.0f, sae->df + s0, S,
                      NULL);
        }
        relu_dh_kernel<<<grid_for(BS), 256, 0, st>>>(sae->df, sae->h, BS, c->l1_coeff / (float)N);
        cudaLaunchCheck();
        cuda_gemm(sae->gemm, prec, 1, 0, S, 1, n, 1.0f, sae->df, S, sae->ones, 1, 0.0f, sae->g_b_enc, 1, NULL);
        cuda_gemm(sae->gemm, prec, 1, 0, d, S, n, 1.0f, x_in, d, sae->df, S, 0.0f, sae->g_w_enc, S, NULL);
    }
    /* centred input: x_in = x - b_dec, so b_dec also gets -W_enc·db_enc */
    if (c->center_input)
        cuda_gemm(sae->gemm, prec, 0, 0, d, 1, S, -1.0f, sae->w_enc, S, sae->g_b_enc, 1, 1.0f, sae->g_b_dec, 1, NULL);
}

/* The all-reduce of the step's gradient and statistics runs on the comm stream, so the
 * next SAE of a sweep computes on its own stream meanwhile. Ordering: `computed` is
 * recorded on sae->stream after the forward/backward wrote grads and stats, and the comm
 * stream waits for it before NCCL reads them; `reduced` is recorded on the comm stream
 * after NCCL wrote them, and sae_cuda_allreduce_end makes sae->stream wait for it before
 * the optimizer reads them. On one rank there is nothing to reduce. */
extern "C" void sae_cuda_allreduce_begin(SaeCuda *sae) {
    cudaCheck(cudaEventRecord((cudaEvent_t)sae->computed, stream_of(sae)));
    if (!sae->distributed) return;
    size_t n_stats = SAE_STAT_X_SUM0 + (size_t)sae->cfg.d_model;
    cudaCheck(cudaStreamWaitEvent((cudaStream_t)sae->comm_stream, (cudaEvent_t)sae->computed, 0));
    comm_allreduce_device(sae->comm, sae->grads, sae->n_params, COMM_F32, COMM_SUM, sae->comm_stream);
    comm_allreduce_device(sae->comm, sae->stats, n_stats, COMM_F64, COMM_SUM, sae->comm_stream);
    cudaCheck(cudaEventRecord((cudaEvent_t)sae->reduced, (cudaStream_t)sae->comm_stream));
}

extern "C" void sae_cuda_allreduce_end(SaeCuda *sae) {
    if (sae->distributed) cudaCheck(cudaStreamWaitEvent(stream_of(sae), (cudaEvent_t)sae->reduced, 0));
}

extern "C" void sae_cuda_metrics(SaeCuda *sae, int64_t N, float lr, SaeStepMetrics *out) {
    const SaeConfig *c = &sae->cfg;
    size_t n_stats = SAE_STAT_X_SUM0 + (size_t)c->d_model;
    double *stats = (double *)mallocCheck(n_stats * sizeof(double)), norm_sq = 0;
    int n_dead = 0;
    /* on sae->stream: after the step's optimizer (which follows the all-reduce's event) */
    cuda_download(stats, sae->stats, n_stats * sizeof(double), sae->stream);
    cuda_download(&norm_sq, sae->norm_sq, sizeof(double), sae->stream);
    cuda_download(&n_dead, sae->n_dead, sizeof(int), sae->stream);
    sae_metrics_from_stats(c, stats, N, sqrt(norm_sq), lr, n_dead, out);
    free(stats);
}

extern "C" void sae_cuda_topk_rows(const float *h, int n, int S, int k, int *idx, float *val, void *stream) {
    if (n < 1) return;
    size_t smem = topk_smem(S);
    topk_kernel<<<n, 256, smem, (cudaStream_t)stream>>>(h, S, k, NULL, NULL, idx, val, NULL, NULL, smem > 0);
    cudaLaunchCheck();
}

extern "C" void sae_cuda_scale(const float *x, float *out, size_t n, float scale, void *stream) {
    if (n == 0) return;
    scale_kernel<<<grid_for(n), 256, 0, (cudaStream_t)stream>>>(x, out, n, scale);
    cudaLaunchCheck();
}

/* ---- the step primitives of sae_step.h (sae_step_run holds the order) ---- */

static void ops_normalize(void *s) { sae_cuda_normalize_w_dec((SaeCuda *)s); }
static void ops_forward_backward(void *s, const float *x, int n, int64_t N, const int *prefixes, int n_prefixes) {
    sae_cuda_forward_backward((SaeCuda *)s, x, n, N, prefixes, n_prefixes);
}
static void ops_allreduce_begin(void *s) { sae_cuda_allreduce_begin((SaeCuda *)s); }
static void ops_allreduce_end(void *s) { sae_cuda_allreduce_end((SaeCuda *)s); }
static void ops_remove_parallel(void *s) { sae_cuda_remove_parallel_grads((SaeCuda *)s); }
static void ops_grad_norm(void *s) { sae_cuda_grad_norm((SaeCuda *)s); }
static void ops_clip_adam(void *s, float lr, double grad_clip) { sae_cuda_clip_adam((SaeCuda *)s, lr, grad_clip); }
static void ops_metrics(void *s, int64_t N, float lr, SaeStepMetrics *out) { sae_cuda_metrics((SaeCuda *)s, N, lr, out); }

extern "C" const SaeStepOps sae_cuda_step_ops = {ops_normalize,       ops_forward_backward, ops_allreduce_begin,
                                                 ops_allreduce_end,   ops_remove_parallel,  ops_grad_norm,
                                                 ops_clip_adam,       ops_metrics};

/* ---- batch staging ---- */

extern "C" void sae_cuda_stage_create(SaeCudaStage *st, int max_rows, int d) {
    memset(st, 0, sizeof *st);
    st->max_rows = max_rows;
    st->d = d;
    size_t bytes = (size_t)max_rows * d * sizeof(float);
    st->copy_stream = cuda_stream_create();
    for (int i = 0; i < 2; i++) {
        st->host[i] = (float *)cuda_host_alloc(bytes);
        st->dev[i] = (float *)cuda_malloc(bytes);
        cudaEvent_t e;
        cudaCheck(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
        cudaCheck(cudaEventRecord(e, (cudaStream_t)st->copy_stream)); /* "done" before the first copy */
        st->copied[i] = e;
        /* never recorded until a step reads the slot: waiting on an unrecorded event is a no-op */
        for (int c = 0; c < SAE_CUDA_STAGE_CONSUMERS; c++) {
            cudaCheck(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
            st->released[i][c] = e;
        }
    }
    st->current_slot = -1;
}

extern "C" void sae_cuda_stage_destroy(SaeCudaStage *st) {
    if (!st->copy_stream) return;
    cuda_stream_sync(st->copy_stream);
    for (int i = 0; i < 2; i++) {
        cuda_host_free(st->host[i]);
        cuda_free(st->dev[i]);
        cudaCheck(cudaEventDestroy((cudaEvent_t)st->copied[i]));
        for (int c = 0; c < SAE_CUDA_STAGE_CONSUMERS; c++) cudaCheck(cudaEventDestroy((cudaEvent_t)st->released[i][c]));
    }
    cuda_stream_destroy(st->copy_stream);
    memset(st, 0, sizeof *st);
}

extern "C" float *sae_cuda_stage_host(SaeCudaStage *st) {
    cudaCheck(cudaEventSynchronize((cudaEvent_t)st->copied[st->slot])); /* its last copy has left the buffer */
    return st->host[st->slot];
}

extern "C" void sae_cuda_stage_submit(SaeCudaStage *st, int n_rows, SaeCuda *const *consumers, int K) {
    if (n_rows < 0 || n_rows > st->max_rows) saev_fail("batch stage: %d rows, room for %d", n_rows, st->max_rows);
    if (K > SAE_CUDA_STAGE_CONSUMERS) saev_fail("batch stage: %d consumers, at most %d", K, SAE_CUDA_STAGE_CONSUMERS);
    cudaStream_t cs = (cudaStream_t)st->copy_stream;
    int i = st->slot;
    /* dev[i] was last read by the step two batches ago (the previous batch is in the other
     * slot): wait for that step only, through the slot's own events, so this copy overlaps
     * the step on the previous batch. */
    for (int c = 0; c < K; c++) cudaCheck(cudaStreamWaitEvent(cs, (cudaEvent_t)st->released[i][c], 0));
    cudaCheck(cudaMemcpyAsync(st->dev[i], st->host[i], (size_t)n_rows * st->d * sizeof(float), cudaMemcpyHostToDevice, cs));
    cudaCheck(cudaEventRecord((cudaEvent_t)st->copied[i], cs));
    /* each consumer's next step reads the rows only after they arrived */
    for (int c = 0; c < K; c++) cudaCheck(cudaStreamWaitEvent(stream_of(consumers[c]), (cudaEvent_t)st->copied[i], 0));
    st->current = st->dev[i];
    st->current_slot = i;
    st->n_rows = n_rows;
    st->slot = 1 - i;
}

extern "C" void sae_cuda_stage_release(SaeCudaStage *st, SaeCuda *const *consumers, int K) {
    if (st->current_slot < 0) saev_fail("batch stage: release without a submitted batch");
    if (K > SAE_CUDA_STAGE_CONSUMERS) saev_fail("batch stage: %d consumers, at most %d", K, SAE_CUDA_STAGE_CONSUMERS);
    /* recorded behind each consumer's whole step (its forward/backward read the rows, or
     * the scaled copy made from them on the same stream) */
    for (int c = 0; c < K; c++)
        cudaCheck(cudaEventRecord((cudaEvent_t)st->released[st->current_slot][c], stream_of(consumers[c])));
}
