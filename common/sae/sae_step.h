/*
 * sae_step.h: one training step of an SAE (saev's order) and the learning-rate schedules.
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

/* One step on this rank's n_rows rows of x (global_batch rows over all ranks). */
/* The step's metrics from its all-reduced statistics (sae_n_stats float64 sums), shared by
 * the CPU step and the CUDA backend so both report the same quantities. */
void sae_metrics_from_stats(const SaeConfig *c, const double *stats, int64_t global_batch, double grad_norm, float lr,
                            int n_dead, SaeStepMetrics *out);
void sae_train_step(Sae *sae, const float *x, int n_rows, int64_t global_batch, float lr, double grad_clip,
                    uint64_t *prefix_rng, SaeStepMetrics *out);

#endif
