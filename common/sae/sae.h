/*
 * sae.h: the sparse autoencoder and its training step, with saev's semantics
 * (tests/fixtures/README.md, "sae/").
 *
 *   h = (x - c·b_dec) W_enc + b_enc          (c = 1 with center_input, else 0)
 *   f = act(h)                               relu | top-k per row | top-k over the batch
 *   x̂_p = f[:, :m_p] W_dec[:m_p] + b_dec     for every Matryoshka prefix m_p (the last is S)
 *   loss = mean_p mean((x̂_p - x)²) + l1_coeff·mean_b Σ|f| (relu) + AuxK (top-k variants)
 *
 * One training step is: normalize W_dec rows, forward + backward (sae_forward_backward),
 * all-reduce the flat gradient, remove the component of each W_dec row's gradient
 * parallel to the row, clip the global norm, Adam. That order is written once, in
 * sae_step.c (sae_step_run), over a table of primitives: the functions below on the cpu,
 * common/cuda/sae_cuda.h's on the GPU.
 *
 * Memory: all parameters live in one allocation (`params`, n_params floats) with the
 * gradient, Adam m and v laid out the same way, so data parallelism all-reduces one flat
 * buffer and a checkpoint is four slices of it. The CPU implementation is sae_cpu.c.
 *
 * Data parallelism: every rank calls sae_forward_backward on its share of the global
 * batch with `global_batch` set to the global row count; the loss normalizers use the
 * global count, so summing the ranks' gradients gives the gradient of the global loss.
 * The two things that need the whole batch inside the step (which latents fired, for the
 * dead counters that gate AuxK, and batch-top-k's global k·B-th largest value) are
 * all-reduced inside sae_forward_backward.
 */
#ifndef SAEV_SAE_H
#define SAEV_SAE_H

#include <stddef.h>
#include <stdint.h>

#define SAE_MAX_PREFIXES 64

typedef enum { SAE_RELU = 0, SAE_TOPK, SAE_BATCH_TOPK } SaeActivation;

/* The activations' names as configs and checkpoints spell them (sae_activation.c). */
#define SAE_ACTIVATION_NAMES "relu|top-k|batch-top-k"
const char *sae_activation_name(SaeActivation a);
/* 0 and *out for a known name; -1 for any other. */
int sae_activation_parse(const char *name, SaeActivation *out);

typedef struct {
    int d_model;                  // d: input width
    int d_sae;                    // S: number of latents
    SaeActivation activation;
    int k;                        // top-k / batch-top-k: active latents per row (on average for batch-top-k)
    float l1_coeff;               // relu: sparsity coefficient
    float momentum;               // batch-top-k: EMA rate of the JumpReLU threshold
    int k_aux;                    // AuxK: latents per row among the dead ones; 0 turns AuxK off
    float aux_alpha;              // AuxK: loss weight
    int n_prefixes;               // Matryoshka prefixes in use (1 = plain SAE)
    int prefixes[SAE_MAX_PREFIXES]; // [n_prefixes] increasing, prefixes[n_prefixes-1] == d_sae
    int sample_prefixes;          // 1: draw n_prefixes-1 prefixes each step (Pareto, as saev) plus S
    int64_t dead_threshold_tokens; // a latent silent for this many tokens is dead
    int normalize_w_dec;          // unit-norm W_dec rows before every step
    int remove_parallel_grads;    // drop each W_dec row gradient's component along the row
    int center_input;             // encoder sees x - b_dec (the preprint's variant)
} SaeConfig;

typedef struct {
    float *w_enc; // [d, S]
    float *b_enc; // [S]
    float *w_dec; // [S, d]
    float *b_dec; // [d]
} SaeTensors;

/* Per-step sums over this rank's rows; the trainer all-reduces them (float64). */
enum { SAE_STAT_MSE = 0, SAE_STAT_L1, SAE_STAT_L0, SAE_STAT_AUX, SAE_STAT_SQERR_FULL, SAE_STAT_X_SQ,
       SAE_STAT_X_SUM0 /* followed by d per-dimension sums of x, for explained variance */ };

struct Comm; /* comm.h */

typedef struct {
    SaeConfig cfg;
    const struct Comm *comm; // ranks a training step all-reduces over (sae_create: comm_self(), this rank alone)
    size_t n_params;        // d·S + S + S·d + d
    float *params;          // [n_params] one allocation: w_enc | b_enc | w_dec | b_dec
    float *grads;           // [n_params] same layout
    float *adam_m;          // [n_params]
    float *adam_v;          // [n_params]
    SaeTensors p, g;        // views into params / grads
    float threshold;        // batch-top-k JumpReLU threshold (EMA of the smallest kept positive value)
    int64_t adam_t;         // Adam step count
    int64_t *since_fired;   // [S] tokens since the latent last fired
    float data_scale;       // inputs are multiplied by this before the SAE (1 = off)
    int step_prefixes[SAE_MAX_PREFIXES]; // [n_step_prefixes] the prefixes of the current step
    int n_step_prefixes;
    double *step_stats;     // [sae_n_stats] the current step's statistics (local sums, then all-reduced)
    double step_grad_norm;  // the current step's global gradient norm before clipping
    /* Workspace for up to max_batch rows (CPU). */
    int max_batch;
    float *h;               // [B, S] pre-activations; relu: f in place
    float *df;              // [B, S] relu: gradient w.r.t. f, then h
    float *x_in;            // [B, d] encoder input (x - b_dec when centred)
    float *x_hat;           // [B, d] full reconstruction
    float *g_pref;          // [P, B, d] per prefix: Σ_{q≥p} dL/dx̂_q
    float *tmp_bd;          // [B, d]
    int *act_start;         // [B+1] row b's active entries are [act_start[b], act_start[b+1]) (top-k variants)
    int *act_idx;           // [act_cap] latent of each active entry, increasing within a row
    float *act_val;         // [act_cap] its value f = h
    float *act_dh;          // [act_cap] gradient w.r.t. h
    int *act_row;           // [act_cap] its row
    size_t act_cap;         // capacity of the act_* arrays (grows for batch-top-k)
    int *aux_idx;           // [B, k_aux]
    float *aux_val;         // [B, k_aux]
    float *aux_dh;          // [B, k_aux]
    float *aux_g;           // [B, d] dL_aux/d aux_recon
    float *fired;           // [S] 1 where any row fired this step
    float *w_enc_t_grad;    // [S, d] gradient of W_enc transposed (sparse scatter target)
    int *latent_block;      // [S] Matryoshka block of each latent for this step
    int *csc_start;         // [S+1] entries grouped by latent
    int *csc_entry;         // [csc_cap] entry ids (active first, then aux) grouped by latent
    size_t csc_cap;
    float *sel_buf;         // [B·S] batch-top-k: scratch copy for selection
} Sae;

/* Parameter and statistics layout. */
void sae_config_default(SaeConfig *c, int d_model, int d_sae);
/* Checks a config; returns NULL or a message (static storage). */
const char *sae_config_check(const SaeConfig *c);
size_t sae_n_stats(const SaeConfig *c); // SAE_STAT_X_SUM0 + d

/* Allocate parameters, optimizer state and workspace for batches of up to max_batch rows. */
void sae_create(Sae *sae, const SaeConfig *cfg, int max_batch);
void sae_destroy(Sae *sae);

/* Initialization (rank 0 draws, the trainer broadcasts `params`). */
void sae_init_kaiming(Sae *sae, uint64_t seed);
/* Datapoint init: b_dec = mean of the rows; each W_dec row a blend of a random centred
 * data row and a Kaiming row (weight `blend` on the data), unit norm; W_enc = W_dec^T. */
void sae_init_datapoint(Sae *sae, const float *rows, int n_rows, float blend, uint64_t seed);

/* Step pieces (straight-line; the trainer calls them in saev's order). */
void sae_normalize_w_dec(Sae *sae);
/* Draws the step's Matryoshka prefixes (or copies the fixed ones). */
void sae_choose_prefixes(Sae *sae, uint64_t *rng);
/* The same draw for any implementation: writes the step's prefixes into out
 * [SAE_MAX_PREFIXES] and returns their number (the CUDA path draws on the host with it). */
int sae_draw_prefixes(const SaeConfig *c, uint64_t *rng, int *out);
/* Forward + backward on this rank's `n_rows` rows of x [n_rows, d] (already scaled);
 * writes sae->grads (overwritten) and stats[sae_n_stats] (local sums). Updates the dead
 * counters and the batch-top-k threshold (collectively, identical on every rank). */
void sae_forward_backward(Sae *sae, const float *x, int n_rows, int64_t global_batch, double *stats);
void sae_remove_parallel_grads(Sae *sae);
double sae_grad_norm(const Sae *sae);                 // ‖g‖₂ over all parameters (float64 sum)
void sae_clip_grads(Sae *sae, double norm, double max_norm); // torch clip_grad_norm_
void sae_adam_step(Sae *sae, float lr);               // betas 0.9/0.999, eps 1e-8, t += 1

/* Evaluation encode: f for x [n_rows, d]; batch-top-k uses the JumpReLU threshold.
 * Writes the dense f into f_out [n_rows, S] and x̂ into x_hat [n_rows, d]. */
void sae_encode_decode_eval(Sae *sae, const float *x, int n_rows, float *f_out, float *x_hat);
/* Number of dead latents under the current counters. */
int sae_n_dead(const Sae *sae);

#endif
