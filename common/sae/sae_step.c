/*
 * sae_step.c: one optimizer step of an SAE in saev's order, written once against the
 * sae.h interface (so the CPU and CUDA implementations share it), plus the learning-rate
 * schedules.
 *
 * Order (fixtures README): normalize W_dec rows; forward + backward on this rank's rows;
 * all-reduce the flat gradient and the statistics; remove the parallel component of
 * W_dec's gradient; clip the global norm; Adam at the step's learning rate.
 */
#include <math.h>
#include <string.h>

#include "check.h"
#include "comm.h"
#include "sae_step.h"

double sae_lr_at(SaeLrSchedule schedule, double lr, int64_t warmup, int64_t total_steps, int64_t step) {
    if (schedule == SAE_LR_CONSTANT) return lr;
    if (warmup > 0 && step < warmup) return lr * (double)step / (double)warmup;
    if (schedule == SAE_LR_WARMUP_CONSTANT) return lr;
    /* warmup-cosine: cosine from lr at the end of warmup to 0 at total_steps */
    int64_t span = total_steps - warmup;
    if (span <= 0) return lr;
    double t = (double)(step - warmup) / (double)span;
    if (t > 1) t = 1;
    return lr * 0.5 * (1.0 + cos(M_PI * t));
}

int sae_parse_lr_schedule(const char *name, SaeLrSchedule *out) {
    if (!strcmp(name, "constant")) *out = SAE_LR_CONSTANT;
    else if (!strcmp(name, "warmup-constant")) *out = SAE_LR_WARMUP_CONSTANT;
    else if (!strcmp(name, "warmup-cosine")) *out = SAE_LR_WARMUP_COSINE;
    else return -1;
    return 0;
}

void sae_metrics_from_stats(const SaeConfig *c, const double *stats, int64_t global_batch, double grad_norm, float lr,
                            int n_dead, SaeStepMetrics *out) {
    int d = c->d_model;
    double N = (double)global_batch, elems = N * d;
    memset(out, 0, sizeof *out);
    out->mse = stats[SAE_STAT_MSE] / elems;
    out->l1 = stats[SAE_STAT_L1] / N;
    out->l0 = stats[SAE_STAT_L0] / N;
    out->aux = stats[SAE_STAT_AUX] / elems;
    out->loss = out->mse + out->aux + (c->activation == SAE_RELU ? c->l1_coeff * out->l1 : 0.0);
    out->nmse_uncentered = stats[SAE_STAT_X_SQ] > 0 ? stats[SAE_STAT_SQERR_FULL] / stats[SAE_STAT_X_SQ] : 0.0;
    /* saev's NMSE (and `saev evaluate`'s): the error over the variance around the batch mean. */
    double var = stats[SAE_STAT_X_SQ];
    for (int i = 0; i < d; i++) var -= stats[SAE_STAT_X_SUM0 + i] * stats[SAE_STAT_X_SUM0 + i] / N;
    out->nmse = var > 0 ? stats[SAE_STAT_SQERR_FULL] / var : 0.0;
    out->explained_variance = 1.0 - out->nmse;
    out->grad_norm = grad_norm;
    out->lr = lr;
    out->dead_frac = (double)n_dead / c->d_sae;
    out->finite = isfinite(out->loss) && isfinite(grad_norm);
}

void sae_train_step(Sae *sae, const float *x, int n_rows, int64_t global_batch, float lr, double grad_clip,
                    uint64_t *prefix_rng, SaeStepMetrics *out) {
    const SaeConfig *c = &sae->cfg;
    int d = c->d_model;
    size_t n_stats = sae_n_stats(c);
    double stats[SAE_STAT_X_SUM0 + 16384];
    if (n_stats > sizeof stats / sizeof stats[0]) saev_fail("d_model %d too large for the step statistics", d);
    if (c->normalize_w_dec) sae_normalize_w_dec(sae);
    sae_choose_prefixes(sae, prefix_rng);
    sae_forward_backward(sae, x, n_rows, global_batch, stats);
    /* Data parallelism: one flat gradient buffer, one statistics buffer. */
    comm_allreduce(sae->grads, sae->n_params, COMM_F32, COMM_SUM);
    comm_allreduce(stats, n_stats, COMM_F64, COMM_SUM);
    if (c->remove_parallel_grads) sae_remove_parallel_grads(sae);
    double norm = sae_grad_norm(sae);
    sae_clip_grads(sae, norm, grad_clip);
    sae_adam_step(sae, lr);

    sae_metrics_from_stats(c, stats, global_batch, norm, lr, sae_n_dead(sae), out);
}
