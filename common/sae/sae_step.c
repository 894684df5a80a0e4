/*
 * sae_step.c: one optimizer step of an SAE in saev's order, written once (sae_step_run)
 * over a backend's primitives (SaeStepOps), the cpu primitives, and the learning-rate
 * schedules.
 *
 * Order (fixtures README): normalize W_dec rows; forward + backward on this rank's rows;
 * all-reduce the flat gradient and the statistics; remove the parallel component of
 * W_dec's gradient; clip the global norm; Adam at the step's learning rate.
 */
#include <math.h>
#include <string.h>

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

void sae_step_run(const SaeStepOps *ops, Sae *const *host, void *const *dev, int K, SaeStepInput input, void *input_ctx,
                  int n, int64_t N, const float *lr, const double *grad_clip, uint64_t *const *prefix_rng) {
    for (int i = 0; i < K; i++) {
        const SaeConfig *c = &host[i]->cfg;
        sae_choose_prefixes(host[i], prefix_rng[i]);
        if (c->normalize_w_dec) ops->normalize_w_dec(dev[i]);
        ops->forward_backward(dev[i], input(input_ctx, i), n, N, host[i]->step_prefixes, host[i]->n_step_prefixes);
        ops->allreduce_begin(dev[i]);
    }
    for (int i = 0; i < K; i++) {
        ops->allreduce_end(dev[i]);
        if (host[i]->cfg.remove_parallel_grads) ops->remove_parallel_grads(dev[i]);
        ops->grad_norm(dev[i]);
        ops->clip_adam(dev[i], lr[i], grad_clip[i]);
    }
}

/* ---- the cpu primitives: each runs to completion ---- */

static void cpu_normalize_w_dec(void *sae) { sae_normalize_w_dec(sae); }

static void cpu_forward_backward(void *sae_, const float *x, int n, int64_t N, const int *prefixes, int n_prefixes) {
    Sae *sae = sae_;
    /* the prefixes are host->step_prefixes already when the handle is the host Sae */
    memmove(sae->step_prefixes, prefixes, (size_t)n_prefixes * sizeof(int));
    sae->n_step_prefixes = n_prefixes;
    sae_forward_backward(sae, x, n, N, sae->step_stats);
}

static void cpu_allreduce_begin(void *sae_) {
    Sae *sae = sae_;
    /* Data parallelism: one flat gradient buffer, one statistics buffer. */
    comm_allreduce(sae->comm, sae->grads, sae->n_params, COMM_F32, COMM_SUM);
    comm_allreduce(sae->comm, sae->step_stats, sae_n_stats(&sae->cfg), COMM_F64, COMM_SUM);
}

static void cpu_allreduce_end(void *sae) { (void)sae; /* the MPI all-reduce above is blocking */ }
static void cpu_remove_parallel_grads(void *sae) { sae_remove_parallel_grads(sae); }

static void cpu_grad_norm(void *sae_) {
    Sae *sae = sae_;
    sae->step_grad_norm = sae_grad_norm(sae);
}

static void cpu_clip_adam(void *sae_, float lr, double grad_clip) {
    Sae *sae = sae_;
    sae_clip_grads(sae, sae->step_grad_norm, grad_clip);
    sae_adam_step(sae, lr);
}

static void cpu_metrics(void *sae_, int64_t N, float lr, SaeStepMetrics *out) {
    Sae *sae = sae_;
    sae_metrics_from_stats(&sae->cfg, sae->step_stats, N, sae->step_grad_norm, lr, sae_n_dead(sae), out);
}

const SaeStepOps sae_cpu_step_ops = {cpu_normalize_w_dec, cpu_forward_backward, cpu_allreduce_begin, cpu_allreduce_end,
                                     cpu_remove_parallel_grads, cpu_grad_norm, cpu_clip_adam, cpu_metrics};

static const float *single_input(void *x, int i) {
    (void)i;
    return x;
}

void sae_train_step(Sae *sae, const float *x, int n_rows, int64_t global_batch, float lr, double grad_clip,
                    uint64_t *prefix_rng, SaeStepMetrics *out) {
    Sae *one[1] = {sae};
    void *dev[1] = {sae};
    uint64_t *rng[1] = {prefix_rng};
    sae_step_run(&sae_cpu_step_ops, one, dev, 1, single_input, (void *)x, n_rows, global_batch, &lr, &grad_clip, rng);
    cpu_metrics(sae, global_batch, lr, out);
}
