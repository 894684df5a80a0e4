/*
 * test_sae.c: the SAE training step against references.
 *
 * - fixtures: every case in tests/fixtures/sae, stepped through sae_train_step (the
 *   step the train stage runs) from the case's init with its batches in order: per-step
 *   loss terms, grad norm and lr, and the final weights (and batch-top-k threshold),
 *   within 1e-4 relative to saev's own PyTorch results.
 * - finite differences: for every activation/objective the analytic gradient of the loss
 *   matches central differences of the loss (float32 forward, float64 sums; eps 1e-3;
 *   tolerance 1e-3 relative on a sample of coordinates of each parameter).
 * - schedules: warmup-cosine matches the fixture's step_lr; warmup-constant's closed form.
 */
/* libcheck; common/check.h (saev's error checks) shadows <check.h> on the include path */
#include <check.h>
#include "testutil.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sae/rng.h"
#include "safetensors.h"
#include "sae/sae.h"
#include "sae_fixture.h"
#include "sae/sae_step.h"

static void run_fixture(const char *name) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", fixture_path("sae"));
    snprintf(dir + strlen(dir), sizeof dir - strlen(dir), "/%s", name);
    SaeFixtureResult r;
    sae_fixture_run(dir, &r);
    printf("fixture %-20s loss %.2e mse %.2e l0 %.2e l1 %.2e aux %.2e gnorm %.2e lr %.2e | W_enc %.2e b_enc %.2e W_dec %.2e b_dec %.2e thr %.2e\n",
           name, r.err_loss, r.err_mse, r.err_l0, r.err_l1, r.err_aux, r.err_grad_norm, r.err_lr, r.err_w_enc, r.err_b_enc,
           r.err_w_dec, r.err_b_dec, r.err_threshold);
    ck_assert_double_le(r.err_loss, 1e-4);
    ck_assert_double_le(r.err_mse, 1e-4);
    ck_assert_double_le(r.err_l0, 1e-4);
    ck_assert_double_le(r.err_l1, 1e-4);
    ck_assert_double_le(r.err_aux, 1e-4);
    ck_assert_double_le(r.err_grad_norm, 1e-4);
    ck_assert_double_le(r.err_lr, 1e-4);
    ck_assert_double_le(r.err_w_enc, 1e-4);
    ck_assert_double_le(r.err_b_enc, 1e-4);
    ck_assert_double_le(r.err_w_dec, 1e-4);
    ck_assert_double_le(r.err_b_dec, 1e-4);
    ck_assert_double_le(r.err_threshold, 1e-4);
}

START_TEST(fixture_relu_l1) { run_fixture("relu_l1"); }
END_TEST
START_TEST(fixture_relu_warmup_cosine) { run_fixture("relu_warmup_cosine"); }
END_TEST
START_TEST(fixture_topk_auxk) { run_fixture("topk_auxk"); }
END_TEST
START_TEST(fixture_batchtopk) { run_fixture("batchtopk"); }
END_TEST
START_TEST(fixture_matryoshka_topk) { run_fixture("matryoshka_topk"); }
END_TEST

/* ---- finite differences -------------------------------------------------------------- */

enum { FD_D = 12, FD_S = 40, FD_B = 16 };

static double fd_loss(Sae *sae, const float *x, const int64_t *since0, float thr0, double *stats) {
    memcpy(sae->since_fired, since0, FD_S * sizeof(int64_t));
    sae->threshold = thr0;
    sae_forward_backward(sae, x, FD_B, FD_B, stats);
    double elems = (double)FD_B * FD_D;
    double l = stats[SAE_STAT_MSE] / elems + stats[SAE_STAT_AUX] / elems;
    if (sae->cfg.activation == SAE_RELU) l += sae->cfg.l1_coeff * stats[SAE_STAT_L1] / FD_B;
    return l;
}

static void fd_check(SaeConfig cfg, const char *label) {
    Sae sae;
    sae_create(&sae, &cfg, FD_B);
    sae_init_kaiming(&sae, 11);
    uint64_t rng = 5;
    for (int s = 0; s < FD_S; s++) sae.p.b_enc[s] = (float)(0.2 * (rng_uniform(&rng) - 0.5));
    for (int i = 0; i < FD_D; i++) sae.p.b_dec[i] = (float)(0.2 * (rng_uniform(&rng) - 0.5));
    float x[FD_B * FD_D];
    for (int e = 0; e < FD_B * FD_D; e++) x[e] = (float)(2.0 * rng_uniform(&rng) - 1.0);
    /* Half the latents long silent, so AuxK has dead latents to work with. */
    int64_t since0[FD_S];
    for (int s = 0; s < FD_S; s++) since0[s] = (s % 2) ? 1000 : 0;
    sae_choose_prefixes(&sae, &rng);
    double *stats = calloc(sae_n_stats(&cfg), sizeof(double));
    fd_loss(&sae, x, since0, 0.0f, stats);
    double l0_base = stats[SAE_STAT_L0];
    float *g = malloc(sae.n_params * sizeof(float));
    memcpy(g, sae.grads, sae.n_params * sizeof(float));
    /* With AuxK, the residual r = x - x̂ is detached (saev), so the loss's total derivative
     * is not the training gradient for parameters that move x̂. The latents that are dead
     * after this step never enter x̂: their W_enc column, b_enc entry and W_dec row reach
     * the loss only through AuxK, so those are the coordinates checked (the main path is
     * checked by the same config with k_aux = 0). */
    int dead[FD_S], n_dead = 0;
    for (int s = 0; s < FD_S; s++)
        if (sae.since_fired[s] >= cfg.dead_threshold_tokens) dead[n_dead++] = s;
    int aux = cfg.k_aux > 0 && cfg.activation != SAE_RELU;
    if (aux) ck_assert_int_gt(n_dead, 0);
    const float eps = 1e-3f;
    double num = 0, den = 0;
    int checked = 0, kinks = 0;
    for (int t = 0; t < (aux ? 3 : 4); t++)
        for (int j = 0; j < 60; j++) {
            size_t i;
            if (!aux) {
                size_t offs[4] = {0, (size_t)FD_D * FD_S, (size_t)FD_D * FD_S + FD_S, (size_t)FD_D * FD_S * 2 + FD_S};
                size_t lens[4] = {(size_t)FD_D * FD_S, FD_S, (size_t)FD_S * FD_D, FD_D};
                i = offs[t] + rng_below(&rng, lens[t]);
            } else {
                int s = dead[rng_below(&rng, n_dead)], r = (int)rng_below(&rng, FD_D);
                i = t == 0 ? (size_t)r * FD_S + s : t == 1 ? (size_t)FD_D * FD_S + s : (size_t)FD_D * FD_S + FD_S + (size_t)s * FD_D + r;
            }
            float keep = sae.params[i];
            double fd[2];
            int crossed = 0; /* a ReLU pre-activation changed sign: L0 moved */
            for (int h = 0; h < 2; h++) {
                float e = h ? eps / 2 : eps;
                sae.params[i] = keep + e;
                double lp = fd_loss(&sae, x, since0, 0.0f, stats);
                crossed |= stats[SAE_STAT_L0] != l0_base;
                sae.params[i] = keep - e;
                double lm = fd_loss(&sae, x, since0, 0.0f, stats);
                crossed |= stats[SAE_STAT_L0] != l0_base;
                sae.params[i] = keep;
                fd[h] = (lp - lm) / (2.0 * (double)e);
            }
            /* A ReLU kink or a top-k swap inside [-eps, eps] makes the two step sizes
             * disagree; such coordinates are not differentiable there and are skipped. */
            if (crossed || fabs(fd[0] - fd[1]) > 2e-3 * fabs(fd[0]) + 5e-5) { kinks++; continue; }
            if (getenv("FD_DEBUG") && fabs(fd[0] - g[i]) > 1e-3 * fabs(fd[0]) + 1e-6) printf("  coord %zu fd %.6e %.6e grad %.6e\n", i, fd[0], fd[1], g[i]);
            num += (fd[0] - g[i]) * (fd[0] - g[i]);
            den += fd[0] * fd[0];
            checked++;
        }
    ck_assert_int_ge(checked, 90); /* enough differentiable coordinates were compared */
    double err = sqrt(num / den);
    printf("finite differences %-30s %d coordinates (%d at kinks skipped), relative error %.2e\n", label, checked, kinks, err);
    ck_assert_double_gt(den, 0);
    ck_assert_double_le(err, 1e-3);
    free(stats);
    free(g);
    sae_destroy(&sae);
}

static SaeConfig fd_cfg(SaeActivation act) {
    SaeConfig c;
    sae_config_default(&c, FD_D, FD_S);
    c.activation = act;
    c.k = 4;
    c.l1_coeff = 0.05f;
    c.k_aux = 0;
    c.dead_threshold_tokens = 100;
    return c;
}

START_TEST(fd_relu_l1) { fd_check(fd_cfg(SAE_RELU), "relu+L1"); }
END_TEST
START_TEST(fd_relu_matryoshka_centered) {
    SaeConfig c = fd_cfg(SAE_RELU);
    c.n_prefixes = 3; c.prefixes[0] = 5; c.prefixes[1] = 17; c.prefixes[2] = FD_S;
    c.center_input = 1;
    fd_check(c, "relu+L1 matryoshka centred");
}
END_TEST
START_TEST(fd_topk) { fd_check(fd_cfg(SAE_TOPK), "top-k"); }
END_TEST
START_TEST(fd_topk_auxk) {
    SaeConfig c = fd_cfg(SAE_TOPK);
    c.k_aux = 6; c.aux_alpha = 0.5f;
    fd_check(c, "top-k+AuxK");
}
END_TEST
START_TEST(fd_topk_matryoshka_auxk_centered) {
    SaeConfig c = fd_cfg(SAE_TOPK);
    c.k_aux = 6; c.aux_alpha = 0.5f; c.center_input = 1;
    c.n_prefixes = 3; c.prefixes[0] = 4; c.prefixes[1] = 20; c.prefixes[2] = FD_S;
    fd_check(c, "top-k+AuxK matryoshka centred");
}
END_TEST
START_TEST(fd_topk_matryoshka_centered) {
    SaeConfig c = fd_cfg(SAE_TOPK);
    c.center_input = 1;
    c.n_prefixes = 2; c.prefixes[0] = 9; c.prefixes[1] = FD_S;
    fd_check(c, "top-k matryoshka centred");
}
END_TEST
START_TEST(fd_batchtopk_auxk) {
    SaeConfig c = fd_cfg(SAE_BATCH_TOPK);
    c.k_aux = 6; c.aux_alpha = 0.5f;
    fd_check(c, "batch-top-k+AuxK");
}
END_TEST
START_TEST(fd_topk_sampled_prefixes) {
    SaeConfig c = fd_cfg(SAE_TOPK);
    c.sample_prefixes = 1; c.n_prefixes = 4;
    fd_check(c, "top-k sampled matryoshka");
}
END_TEST

/* ---- schedules ----------------------------------------------------------------------- */

START_TEST(lr_schedules) {
    /* step_lr of relu_warmup_cosine: lr 0.02, warmup 3, 6 steps. */
    const double want[6] = {0.0, 0.02 / 3, 0.04 / 3, 0.02, 0.015, 0.005};
    for (int t = 0; t < 6; t++) ck_assert_double_eq_tol(sae_lr_at(SAE_LR_WARMUP_COSINE, 0.02, 3, 6, t), want[t], 1e-12);
    ck_assert_double_eq_tol(sae_lr_at(SAE_LR_WARMUP_CONSTANT, 1.0, 4, 100, 1), 0.25, 1e-15);
    ck_assert_double_eq_tol(sae_lr_at(SAE_LR_WARMUP_CONSTANT, 1.0, 4, 100, 50), 1.0, 1e-15);
    ck_assert_double_eq_tol(sae_lr_at(SAE_LR_CONSTANT, 0.5, 4, 100, 0), 0.5, 1e-15);
}
END_TEST

/* ---- evaluation encode/decode ---------------------------------------------------------- */

/* sae_encode_decode_eval against a float64 reference written here from the definitions:
 * f = top-k of x W_enc + b_enc (the rest zero), x̂ = f W_dec + b_dec. With k = 8 of
 * S = 1024 the implementation takes its sparse decode (nnz·32 <= n·S); a relu SAE at
 * initialization (about half the latents active) takes the dense GEMM. Tolerance: float32
 * accumulation over d = 32 inputs and up to S = 1024 latents, 1e-5 relative. */
static void check_eval(SaeActivation act) {
    enum { D = 32, S = 1024, N = 40, K = 8 };
    SaeConfig cfg;
    sae_config_default(&cfg, D, S);
    cfg.activation = act;
    cfg.k = K;
    Sae sae;
    sae_create(&sae, &cfg, N);
    sae_init_kaiming(&sae, 5);
    for (int i = 0; i < S; i++) sae.p.b_enc[i] = 0.01f * (float)((i * 7) % 13 - 6);
    for (int i = 0; i < D; i++) sae.p.b_dec[i] = 0.1f * (float)(i % 5);
    float *x = malloc(sizeof(float) * N * D), *f = malloc(sizeof(float) * N * S), *xh = malloc(sizeof(float) * N * D);
    for (int e = 0; e < N * D; e++) x[e] = (float)sin(0.37 * e) + 0.2f;
    sae_encode_decode_eval(&sae, x, N, f, xh);
    double *h = malloc(sizeof(double) * S), err = 0, ref_norm = 0;
    for (int b = 0; b < N; b++) {
        for (int j = 0; j < S; j++) {
            h[j] = sae.p.b_enc[j];
            for (int i = 0; i < D; i++) h[j] += (double)x[b * D + i] * sae.p.w_enc[(size_t)i * S + j];
        }
        if (act == SAE_TOPK) { /* keep the K largest (no ties in this data) */
            for (int j = 0; j < S; j++) {
                int above = 0;
                for (int m = 0; m < S; m++) above += h[m] > h[j];
                if (above >= K) h[j] = 0;
            }
        } else {
            for (int j = 0; j < S; j++) h[j] = h[j] > 0 ? h[j] : 0;
        }
        for (int j = 0; j < S; j++) ck_assert_msg(fabs(f[(size_t)b * S + j] - h[j]) <= 1e-4 * (1 + fabs(h[j])), "f[%d,%d]", b, j);
        for (int i = 0; i < D; i++) {
            double r = sae.p.b_dec[i];
            for (int j = 0; j < S; j++) r += h[j] * sae.p.w_dec[(size_t)j * D + i];
            err += (xh[b * D + i] - r) * (xh[b * D + i] - r);
            ref_norm += r * r;
        }
    }
    ck_assert_msg(sqrt(err / ref_norm) < 1e-5, "x_hat relative error %g", sqrt(err / ref_norm));
    free(x); free(f); free(xh); free(h);
    sae_destroy(&sae);
}

START_TEST(eval_topk_sparse_decode) { check_eval(SAE_TOPK); }
END_TEST
START_TEST(eval_relu_dense_decode) { check_eval(SAE_RELU); }
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("sae");
    TCase *tf = tcase_create("fixtures");
    tcase_add_test(tf, fixture_relu_l1);
    tcase_add_test(tf, fixture_relu_warmup_cosine);
    tcase_add_test(tf, fixture_topk_auxk);
    tcase_add_test(tf, fixture_batchtopk);
    tcase_add_test(tf, fixture_matryoshka_topk);
    suite_add_tcase(s, tf);
    TCase *tg = tcase_create("finite_differences");
    tcase_add_test(tg, fd_relu_l1);
    tcase_add_test(tg, fd_relu_matryoshka_centered);
    tcase_add_test(tg, fd_topk);
    tcase_add_test(tg, fd_topk_auxk);
    tcase_add_test(tg, fd_topk_matryoshka_auxk_centered);
    tcase_add_test(tg, fd_topk_matryoshka_centered);
    tcase_add_test(tg, fd_batchtopk_auxk);
    tcase_add_test(tg, fd_topk_sampled_prefixes);
    suite_add_tcase(s, tg);
    TCase *te = tcase_create("evaluation");
    tcase_add_test(te, eval_topk_sparse_decode);
    tcase_add_test(te, eval_relu_dense_decode);
    suite_add_tcase(s, te);
    TCase *tl = tcase_create("schedules");
    tcase_add_test(tl, lr_schedules);
    suite_add_tcase(s, tl);
    return s;
}

int main(void) {
    return run_suite(suite(), 1);
}
