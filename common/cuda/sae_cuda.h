/*
 * sae_cuda.h: SAE training on the GPU with saev's semantics (the same as common/sae/sae.h
 * and ../shared/fixtures/README.md "sae/"): relu + L1 and top-k, AuxK, Matryoshka
 * prefixes, decoder-row normalization, parallel-gradient removal, global-norm clipping,
 * Adam, dead-latent counters.
 *
 * Everything lives on the device and one step is enqueued on the SAE's stream without a
 * host round trip: statistics, the gradient norm and the dead count stay in device
 * memory until sae_cuda_metrics reads them, so the K SAEs of a sweep run back to back
 * (sae_cuda_sweep_step), each one's NCCL all-reduce overlapping the next one's compute.
 *
 * Top-k never forms a dense code: a radix select per row keeps (latent, value) pairs,
 * the decoder gathers those W_dec rows, and the backward sorts the active (and AuxK)
 * entries by latent (a stable radix sort, so sums run in a fixed order) and lets one
 * block own each latent's W_dec row, W_enc column and b_enc entry: no atomics on
 * gradients, the same bits every run.
 *
 * SaeCudaConfig carries the fields of sae.h's SaeConfig with the same names and
 * meanings, so the trainer fills it field by field (batch-top-k is not implemented on
 * the GPU yet; sae_cuda_create rejects it). Precision: fp32 or tf32 GEMMs (bf16 is
 * rejected); parameters, gradients and Adam state are float32.
 */
#ifndef SAEV_SAE_CUDA_H
#define SAEV_SAE_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "cuda_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SAE_CUDA_MAX_PREFIXES 64
enum { SAE_CUDA_RELU = 0, SAE_CUDA_TOPK = 1, SAE_CUDA_BATCH_TOPK = 2 }; /* = SaeActivation */

typedef struct {
    int d_model;                          // d
    int d_sae;                            // S
    int activation;                       // SAE_CUDA_RELU | SAE_CUDA_TOPK
    int k;                                // top-k: active latents per row
    float l1_coeff;                       // relu: sparsity coefficient
    int k_aux;                            // AuxK latents per row among the dead (0: off)
    float aux_alpha;                      // AuxK loss weight
    int n_prefixes;                       // Matryoshka prefixes (1 = plain SAE)
    int prefixes[SAE_CUDA_MAX_PREFIXES];  // [n_prefixes] increasing, last == d_sae
    int64_t dead_threshold_tokens;        // silent this many tokens -> dead
    int normalize_w_dec;                  // unit-norm W_dec rows before every step
    int remove_parallel_grads;            // drop W_dec row gradients' component along the row
    int center_input;                     // encoder sees x - b_dec
} SaeCudaConfig;

/* Per-step sums (float64, device), same order as sae.h's SAE_STAT_*. */
enum { SAE_CUDA_STAT_MSE = 0, SAE_CUDA_STAT_L1, SAE_CUDA_STAT_L0, SAE_CUDA_STAT_AUX, SAE_CUDA_STAT_SQERR_FULL,
       SAE_CUDA_STAT_X_SQ, SAE_CUDA_STAT_X_SUM0 };

typedef struct {
    double loss, mse, l1, l0, aux, nmse, explained_variance, grad_norm;
    double dead_frac;
    int finite;
} SaeCudaMetrics;

typedef struct {
    SaeCudaConfig cfg;
    CudaPrecision prec;       // fp32 | tf32
    void *stream;             // cudaStream_t all work is enqueued on
    void *comm_stream;        // cudaStream_t for the gradient all-reduce
    void *reduced;            // cudaEvent_t: gradient all-reduced
    void *computed;           // cudaEvent_t: forward/backward done
    CudaGemm *gemm;
    int max_batch;            // rows per step this workspace holds
    size_t n_params;          // d·S + S + S·d + d
    float *params;            // [n_params] w_enc [d,S] | b_enc [S] | w_dec [S,d] | b_dec [d]
    float *grads;             // [n_params] same layout
    float *adam_m, *adam_v;   // [n_params]
    float *w_enc, *b_enc, *w_dec, *b_dec;     // views into params
    float *g_w_enc, *g_b_enc, *g_w_dec, *g_b_dec; // views into grads
    int64_t adam_t;           // Adam steps taken (host: the schedule is host-side anyway)
    int64_t *since_fired;     // [S] tokens since each latent last fired
    float *fired;             // [S] 1 where a row fired this step (all-reduced with max)
    float *dead;              // [S] 1 for dead latents after this step's counters
    int *n_dead;              // [1]
    double *stats;            // [SAE_CUDA_STAT_X_SUM0 + d]
    double *norm_sq;          // [1] squared global gradient norm before clipping
    double *partials;         // [norm_blocks] per-block partial sums for the norm
    float *ones;              // [max_batch] 1.0 (column sums as GEMVs)
    float *h;                 // [B, S] pre-activations (relu: f in place)
    float *df;                // [B, S] relu: dL/df, then dL/dh
    float *x_in;              // [B, d] encoder input when centred
    float *x_hat;             // [B, d] full reconstruction
    float *g_pref;            // [P, B, d] per prefix: Σ_{q>=p} dL/dx̂_q
    int *act_idx;             // [B, k] active latents of each row, increasing (top-k)
    float *act_val;           // [B, k]
    float *act_dh;            // [B, k] dL/dh of each active entry
    int *aux_idx;             // [B, k_aux] AuxK latents (-1 pads rows when fewer are dead)
    float *aux_val;           // [B, k_aux]
    float *aux_dh;            // [B, k_aux]
    float *aux_g;             // [B, d] dL_aux / d aux_recon
    int *keys, *keys_sorted;  // [E] latent of each entry (S for padding), E = B·(k + k_aux)
    int *ents, *ents_sorted;  // [E] entry ids
    int *seg_start;           // [S + 1] sorted entries of latent s: [seg_start[s], seg_start[s+1])
    float *g_w_enc_t;         // [S, d] W_enc gradient transposed (one row per latent)
    void *sort_tmp;           // cub radix-sort scratch
    size_t sort_tmp_bytes;
    int distributed;          // 1: all-reduce gradients, statistics and fired flags over NCCL
} SaeCuda;

/* cfg is checked (message names the field); 0, or -1 with err. */
int sae_cuda_create(SaeCuda *sae, const SaeCudaConfig *cfg, int max_batch, CudaPrecision prec, char *err, size_t errlen);
void sae_cuda_destroy(SaeCuda *sae);
/* Host <-> device parameters in the flat layout ([n_params] floats). Synchronous. */
void sae_cuda_set_params(SaeCuda *sae, const float *host);
void sae_cuda_get_params(SaeCuda *sae, float *host);

/* Step pieces, enqueued on sae->stream. x: device [n, d]; N: global batch rows. */
void sae_cuda_normalize_w_dec(SaeCuda *sae);
void sae_cuda_forward_backward(SaeCuda *sae, const float *x, int n, int64_t N, const int *prefixes, int n_prefixes);
void sae_cuda_remove_parallel_grads(SaeCuda *sae);
void sae_cuda_grad_norm(SaeCuda *sae);                        /* into sae->norm_sq */
void sae_cuda_clip_adam(SaeCuda *sae, float lr, double grad_clip); /* torch clip_grad_norm_, then Adam */
/* One whole step (normalize, forward/backward, [all-reduce], parallel removal, norm,
 * clip, Adam). prefixes NULL: the configured ones. */
void sae_cuda_train_step(SaeCuda *sae, const float *x, int n, int64_t N, float lr, double grad_clip, const int *prefixes,
                         int n_prefixes);
/* K SAEs on the same batch, each on its own stream: every forward/backward, each followed by
 * its all-reduce on the comm stream, then every optimizer step. */
void sae_cuda_sweep_step(SaeCuda **saes, int K, const float *x, int n, int64_t N, const float *lr, double grad_clip);
/* Waits for the SAE's stream and turns the device sums into saev's metrics. */
void sae_cuda_metrics(SaeCuda *sae, int64_t N, SaeCudaMetrics *out);
/* The per-row top-k selection alone (for tests): idx/val [n, k] device, latents increasing. */
void sae_cuda_topk_rows(const float *h, int n, int S, int k, int *idx, float *val, void *stream);

#ifdef __cplusplus
}
#endif

#endif
