/*
 * sae_step.h: one training step of an SAE (saev's order), written once for every backend,
 * and the learning-rate schedules.
 *
 * The order lives in sae_step_run only. A backend supplies its primitives as a table
 * (SaeStepOps: the cpu one is sae_cpu_step_ops here, the cuda one sae_cuda_step_ops in
 * common/cuda/sae_cuda.h), so a new variant or step piece is added in one place and both
 * devices run it. The cpu primitives run to completion when called; the cuda ones
 * enqueue on the SAE's stream and return.
 */
#ifndef SAEV_SAE_STEP_H
#define SAEV_SAE_STEP_H

#include <stdint.h>

#include "sae.h"

typedef enum { SAE_LR_CONSTANT = 0, SAE_LR_WARMUP_CONSTANT, SAE_LR_WARMUP_COSINE } SaeLrSchedule;

typedef struct {
    double loss, mse, l1, l0, aux; // the step's loss terms (global batch means, saev's definitions)
    double nmse;                   // Σ‖x̂-x‖² / Σ‖x-x̄‖² (saev's, centred on the batch mean; float64 sums)
    double nmse_uncentered;        // Σ‖x̂-x‖² / Σ‖x‖²
    double explained_variance;     // 1 - Σ(x̂-x)² / Σ(x-mean)²
    double grad_norm;              // before clipping
    double lr;
    double dead_frac;              // dead latents / S after this step's counters
    int finite;                    // loss and gradient norm finite
} SaeStepMetrics;

/* Learning rate of update `step` (0-based). warmup-*: lr·step/warmup while step < warmup
 * (so the first update runs at 0, as saev's trainer does); warmup-cosine then follows
 * lr·(1 + cos(π·(step - warmup)/(total - warmup)))/2. */
double sae_lr_at(SaeLrSchedule schedule, double lr, int64_t warmup, int64_t total_steps, int64_t step);
int sae_parse_lr_schedule(const char *name, SaeLrSchedule *out); // 0, or -1 if unknown

/* The step's metrics from its all-reduced statistics (sae_n_stats float64 sums), shared by
 * the CPU step and the CUDA backend so both report the same quantities. */
void sae_metrics_from_stats(const SaeConfig *c, const double *stats, int64_t global_batch, double grad_norm, float lr,
                            int n_dead, SaeStepMetrics *out);
/* A backend's step primitives. `sae` is the backend's handle: the Sae itself on cpu, a
 * SaeCuda on cuda. */
typedef struct {
    void (*normalize_w_dec)(void *sae);
    /* forward + backward on x [n, d] with the step's Matryoshka prefixes (last == d_sae):
     * writes the gradient and this rank's statistics; updates the dead counters and the
     * batch-top-k threshold (collectively) */
    void (*forward_backward)(void *sae, const float *x, int n, int64_t N, const int *prefixes, int n_prefixes);
    /* starts the all-reduce of the flat gradient and the statistics over the ranks */
    void (*allreduce_begin)(void *sae);
    /* what follows sees the all-reduced gradient and statistics */
    void (*allreduce_end)(void *sae);
    void (*remove_parallel_grads)(void *sae);
    /* the global gradient norm before clipping, kept by the backend for clip_adam and metrics */
    void (*grad_norm)(void *sae);
    /* torch clip_grad_norm_ with the kept norm, then Adam at lr */
    void (*clip_adam)(void *sae, float lr, double grad_clip);
    /* waits for the step and reports its metrics (sae_metrics_from_stats) */
    void (*metrics)(void *sae, int64_t N, float lr, SaeStepMetrics *out);
} SaeStepOps;

/* The cpu primitives: sae.h's functions on a Sae. */
extern const SaeStepOps sae_cpu_step_ops;

/* The rows SAE i of a sweep steps on ([n, d], already scaled); called just before its
 * forward, so one scratch buffer may serve every member on a backend that runs to
 * completion. */
typedef const float *(*SaeStepInput)(void *ctx, int i);

/* One optimizer step of each of K SAEs on this rank's n rows (N over all ranks), in
 * saev's order: for each SAE, draw its Matryoshka prefixes (prefix_rng[i], into
 * host[i]->step_prefixes), normalize W_dec rows, forward + backward, start the all-reduce
 * of gradient and statistics; then for each SAE, finish its all-reduce, remove the
 * parallel component of W_dec's gradient, take the global norm, clip, Adam at lr[i].
 * Every SAE's all-reduce thus overlaps the next one's forward + backward on a backend
 * that enqueues. host[i]: SAE i's host Sae (configuration, step prefixes; on cpu it is
 * dev[i] itself); dev[i]: its handle for `ops`. */
void sae_step_run(const SaeStepOps *ops, Sae *const *host, void *const *dev, int K, SaeStepInput input, void *input_ctx,
                  int n, int64_t N, const float *lr, const double *grad_clip, uint64_t *const *prefix_rng);

/* One step of one SAE on the cpu: sae_step_run with sae_cpu_step_ops, then its metrics. */
void sae_train_step(Sae *sae, const float *x, int n_rows, int64_t global_batch, float lr, double grad_clip,
                    uint64_t *prefix_rng, SaeStepMetrics *out);

#endif
