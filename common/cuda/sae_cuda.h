/*
 * sae_cuda.h: SAE training on the GPU with saev's semantics (the same as common/sae/sae.h
 * and tests/fixtures/README.md "sae/"): relu + L1 and top-k, AuxK, Matryoshka
 * prefixes, decoder-row normalization, parallel-gradient removal, global-norm clipping,
 * Adam, dead-latent counters.
 *
 * Everything lives on the device and one step is enqueued on the SAE's stream without a
 * host round trip: statistics, the gradient norm and the dead count stay in device
 * memory until sae_cuda_metrics reads them, so the K SAEs of a sweep run back to back,
 * each one's NCCL all-reduce overlapping the next one's compute. The step's order is not
 * here: sae_step.c's sae_step_run calls these primitives through sae_cuda_step_ops, the
 * same order the CPU runs.
 *
 * Top-k never forms a dense code: a radix select per row keeps (latent, value) pairs,
 * the decoder gathers those W_dec rows, and the backward sorts the active (and AuxK)
 * entries by latent (a stable radix sort, so sums run in a fixed order), splits each
 * latent's entries into chunks of 1024, sums each chunk in one block and adds a latent's
 * chunks in chunk order into its W_dec row, W_enc column and b_enc entry: no atomics on
 * gradients, the same bits every run, and a latent hit by every row (AuxK's few dead
 * ones) spread over many blocks.
 *
 * The configuration is sae.h's SaeConfig. Every option runs on the GPU: relu, top-k and
 * batch-top-k (the global k·B-th largest pre-activation found by a radix select whose
 * per-pass histograms are all-reduced over NCCL, then the JumpReLU threshold EMA as in
 * sae_cpu.c), AuxK, fixed or sampled Matryoshka prefixes (drawn on the host by the caller
 * with sae_draw_prefixes, the CPU path's RNG), centred input, normalization and parallel
 * removal switches. What is refused, with the option named: d_model > 4096 (the sparse
 * backward keeps a row in registers) and precision bf16. Precision: fp32 or tf32 GEMMs;
 * parameters, gradients and Adam state are float32.
 *
 * Batch-top-k keeps a variable number of entries per row; the step reads the total back
 * to the host once (a stream sync inside the forward) to size the entry arrays.
 */
#ifndef SAEV_SAE_CUDA_H
#define SAEV_SAE_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "cuda_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

#include "sae/sae.h"
#include "sae/sae_step.h"

typedef struct {
    SaeConfig cfg;
    Precision prec;       // fp32 | tf32
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
    double *stats;            // [SAE_STAT_X_SUM0 + d]
    double *norm_sq;          // [1] squared global gradient norm before clipping
    double *partials;         // [norm_blocks] per-block partial sums for the norm
    float *ones;              // [max_batch] 1.0 (column sums as GEMVs)
    float *h;                 // [B, S] pre-activations (relu: f in place)
    float *df;                // [B, S] relu: dL/df, then dL/dh
    float *x_in;              // [B, d] encoder input when centred
    float *x_hat;             // [B, d] full reconstruction
    float *g_pref;            // [P, B, d] per prefix: Σ_{q>=p} dL/dx̂_q
    int *act_idx;             // [act_cap] active latents, row by row, increasing within a row (top-k: [B, k])
    float *act_val;           // [act_cap]
    float *act_dh;            // [act_cap] dL/dh of each active entry
    size_t act_cap;           // entry capacity (top-k: B·k; batch-top-k grows it)
    size_t n_act;             // active entries of the current step (host copy)
    int *act_start;           // [B + 1] batch-top-k: row b's entries are [act_start[b], act_start[b+1])
    int *act_row;             // [act_cap] batch-top-k: row of each entry
    int *row_count;           // [B + 1] batch-top-k: entries per row (last slot 0, for the scan)
    void *scan_tmp;           // cub scan scratch
    size_t scan_tmp_bytes;
    int *total_host;          // [1] pinned: act_start[n] read back to size the entry arrays
    unsigned long long *bt_hist; // [256] radix histogram of the global select (int64 for NCCL)
    unsigned *bt_key;         // [2] key prefix and mask found so far; [0] ends as the cut's key
    long long *bt_rank;       // [1] rank of the cut among the keys under the prefix
    int *bt_min_bits;         // [1] smallest kept positive value (float bits; positive floats order as ints)
    float *bt_neg_min;        // [1] its negation (all-reduced with max = global min)
    float *threshold;         // [1] JumpReLU threshold (EMA of the smallest kept positive value)
    int *aux_idx;             // [B, k_aux] AuxK latents (-1 pads rows when fewer are dead)
    float *aux_val;           // [B, k_aux]
    float *aux_dh;            // [B, k_aux]
    float *aux_g;             // [B, d] dL_aux / d aux_recon
    int *keys, *keys_sorted;  // [E] latent of each entry (S for padding), E = B·(k + k_aux)
    int *ents, *ents_sorted;  // [E] entry ids
    int *seg_start;           // [S + 1] sorted entries of latent s: [seg_start[s], seg_start[s+1])
    int *chunk_count;         // [S + 1] chunks of LATENT_CHUNK entries per latent (>= 1; last slot 0, for the scan)
    int *chunk_start;         // [S + 1] latent s's chunks: [chunk_start[s], chunk_start[s+1])
    void *chunk_scan_tmp;     // cub scan scratch for chunk_start
    size_t chunk_scan_tmp_bytes;
    float *chunk_part;        // [S + sort_cap / LATENT_CHUNK + 1, 2d + 1] partial sums of latents with several chunks
    float *g_w_enc_t;         // [S, d] W_enc gradient transposed (one row per latent)
    void *sort_tmp;           // cub radix-sort scratch
    size_t sort_tmp_bytes;
    size_t sort_cap;          // entries sort_tmp and keys/ents hold
    const struct Comm *comm;  // the ranks of the step (sae_backend_create sets it)
    int distributed;          // 1: all-reduce gradients, statistics and fired flags over comm's NCCL
} SaeCuda;

/* cfg is checked (sae_config_check, then the GPU limits; the message names the option);
 * 0, or -1 with err. */
int sae_cuda_create(SaeCuda *sae, const SaeConfig *cfg, int max_batch, Precision prec, char *err, size_t errlen);
void sae_cuda_destroy(SaeCuda *sae);
/* Host <-> device parameters in the flat layout ([n_params] floats). Synchronous. */
void sae_cuda_set_params(SaeCuda *sae, const float *host);
void sae_cuda_get_params(SaeCuda *sae, float *host);
/* The whole training state: parameters, Adam m and v ([n_params] each), dead counters
 * ([S]), batch-top-k threshold and Adam step count. Synchronous. */
void sae_cuda_upload_state(SaeCuda *sae, const float *params, const float *adam_m, const float *adam_v,
                           const int64_t *since_fired, float threshold, int64_t adam_t);
void sae_cuda_download_state(SaeCuda *sae, float *params, float *adam_m, float *adam_v, int64_t *since_fired,
                             float *threshold, int64_t *adam_t);

/* Step pieces, enqueued on sae->stream. x: device [n, d]; N: global batch rows. */
void sae_cuda_normalize_w_dec(SaeCuda *sae);
/* prefixes NULL: the configured ones; else the step's (last == d_sae). */
void sae_cuda_forward_backward(SaeCuda *sae, const float *x, int n, int64_t N, const int *prefixes, int n_prefixes);
void sae_cuda_remove_parallel_grads(SaeCuda *sae);
void sae_cuda_grad_norm(SaeCuda *sae);                        /* into sae->norm_sq */
void sae_cuda_clip_adam(SaeCuda *sae, float lr, double grad_clip); /* torch clip_grad_norm_, then Adam */
/* Records `computed` and, with several ranks, all-reduces the gradient and statistics on
 * the comm stream behind it; _end makes sae->stream wait for the result. */
void sae_cuda_allreduce_begin(SaeCuda *sae);
void sae_cuda_allreduce_end(SaeCuda *sae);
/* These primitives as sae_step.h's table (handles are SaeCuda *). */
extern const SaeStepOps sae_cuda_step_ops;
/* Waits for the SAE's stream and turns the device sums into saev's metrics (sae_step.c's
 * definitions); lr is recorded as given. */
void sae_cuda_metrics(SaeCuda *sae, int64_t N, float lr, SaeStepMetrics *out);
/* The per-row top-k selection alone (for tests): idx/val [n, k] device, latents increasing. */
void sae_cuda_topk_rows(const float *h, int n, int S, int k, int *idx, float *val, void *stream);
/* out[i] = x[i]·scale on `stream` (the data scale, the same float product as the CPU path). */
void sae_cuda_scale(const float *x, float *out, size_t n, float scale, void *stream);

/* Batches staged through pinned host memory: the loader writes rows into
 * sae_cuda_stage_host (pinned), sae_cuda_stage_submit copies them to the device on the copy
 * stream and makes the consumers' streams wait for the copy; two slots alternate so the
 * next batch can be loaded and copied while the current step computes. Each slot has its
 * own events: copied (the rows arrived) and, per consumer, released (that consumer's step
 * on the slot is done), so refilling a slot waits for the step two batches back only. */
#define SAE_CUDA_STAGE_CONSUMERS 64
typedef struct {
    int max_rows, d;
    float *host[2];           // [max_rows, d] pinned
    float *dev[2];            // [max_rows, d] device
    void *copy_stream;        // cudaStream_t
    void *copied[2];          // cudaEvent_t: dev[i] holds host[i]'s rows
    void *released[2][SAE_CUDA_STAGE_CONSUMERS]; // cudaEvent_t: consumer c's step on slot i is done with dev[i]
    int slot;                 // slot the next batch goes to
    int current_slot;         // slot of the last submitted batch (-1 before the first)
    int n_rows;               // rows of the last submitted batch
    const float *current;     // device rows of the last submitted batch
} SaeCudaStage;

void sae_cuda_stage_create(SaeCudaStage *st, int max_rows, int d);
void sae_cuda_stage_destroy(SaeCudaStage *st);
/* Pinned buffer for the next batch (waits until its previous copy has finished). */
float *sae_cuda_stage_host(SaeCudaStage *st);
/* Starts the copy of n_rows rows into the next slot; it waits for the consumers' steps on
 * that slot's previous batch (sae_cuda_stage_release), and their streams wait for it. */
void sae_cuda_stage_submit(SaeCudaStage *st, int n_rows, SaeCuda *const *consumers, int K);
/* After the consumers' steps on the current batch were enqueued: marks the slot free once
 * they complete. */
void sae_cuda_stage_release(SaeCudaStage *st, SaeCuda *const *consumers, int K);

#ifdef __cplusplus
}
#endif

#endif
