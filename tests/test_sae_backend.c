/*
 * test_sae_backend.c: the device-dispatch layer (common/sae/sae_backend.h), cpu side,
 * which runs everywhere.
 *
 * - invariant "thin wrapper": every fixture case in tests/fixtures/sae stepped through
 *   sae_batch_* + sae_sweep_step on the cpu backend gives the same bits (parameters, Adam
 *   state, dead counters, threshold, every metric) as the trainer's former direct calls
 *   (rows scaled by data_scale, then sae_train_step), here with data_scale 0.75 and
 *   sampled Matryoshka prefixes in one sweep member.
 * - a sweep of two SAEs on one batch equals the two SAEs stepped alone.
 * - sae_backend_resolve: names the option it refuses (bf16, tf32 on cpu, an unknown
 *   device, cuda in a build or on a node without it).
 * The cuda side is tested on a GPU by test_cuda_sae.c through the same calls.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sae/sae_backend.h"
/* the fixture helper is a header of static functions; not every test uses all of them */
#pragma GCC diagnostic ignored "-Wunused-function"
#include "sae_fixture.h"
#include "testutil.h"

/* Loads case `name`: config, init weights, rows. */
static void load_case(const char *name, FxCase *fc, float **init, float **rows) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", fixture_path(name));
    fx_case_load(dir, fc);
    int d = fc->sae.d_model, S = fc->sae.d_sae;
    size_t n = (size_t)2 * d * S + S + d;
    *init = mallocCheck(n * sizeof(float));
    char path[1200];
    snprintf(path, sizeof path, "%s/init.safetensors", dir);
    SafeTensors in;
    st_open_or_die(&in, path);
    const char *names[4] = {"W_enc", "b_enc", "W_dec", "b_dec"};
    size_t off = 0;
    for (int i = 0; i < 4; i++) {
        const StTensor *t = st_require(&in, names[i]);
        float *v = st_load_f32(&in, names[i], t->ndim, NULL);
        memcpy(*init + off, v, (size_t)t->numel * sizeof(float));
        off += (size_t)t->numel;
        free(v);
    }
    ck_assert_uint_eq(off, n);
    st_close(&in);
    snprintf(path, sizeof path, "%s/batches.safetensors", dir);
    SafeTensors bt;
    st_open_or_die(&bt, path);
    *rows = st_load_f32(&bt, "activations", 2, NULL);
    st_close(&bt);
}

static void assert_same_state(const Sae *a, const Sae *b) {
    ck_assert(memcmp(a->params, b->params, a->n_params * sizeof(float)) == 0);
    ck_assert(memcmp(a->adam_m, b->adam_m, a->n_params * sizeof(float)) == 0);
    ck_assert(memcmp(a->adam_v, b->adam_v, a->n_params * sizeof(float)) == 0);
    ck_assert(memcmp(a->since_fired, b->since_fired, a->cfg.d_sae * sizeof(int64_t)) == 0);
    ck_assert(a->threshold == b->threshold && a->adam_t == b->adam_t);
}

static void assert_same_metrics(const SaeStepMetrics *a, const SaeStepMetrics *b) {
    ck_assert(memcmp(a, b, sizeof *a) == 0);
}

static const char *CASES[5] = {"sae/relu_l1", "sae/relu_warmup_cosine", "sae/topk_auxk", "sae/matryoshka_topk", "sae/batchtopk"};

/* Case _i stepped directly and through the layer, K = 2: member 0 the case as is, member
 * 1 with data_scale 0.75 and (for the Matryoshka case) 3 sampled prefixes. */
START_TEST(test_layer_equals_direct) {
    FxCase fc;
    float *init, *rows;
    load_case(CASES[_i], &fc, &init, &rows);
    int d = fc.sae.d_model, B = (int)fc.batch_size, T = (int)fc.n_steps;
    SaeConfig cfg[2] = {fc.sae, fc.sae};
    if (!strcmp(CASES[_i], "sae/matryoshka_topk")) {
        cfg[1].sample_prefixes = 1;
        cfg[1].n_prefixes = 3;
    }
    Sae direct[2];
    SaeBackend be[2];
    SaeBackend *bes[2] = {&be[0], &be[1]};
    SaeBackendSpec spec;
    ck_assert_ptr_null(sae_backend_resolve("cpu", "fp32", &spec));
    char err[256];
    for (int m = 0; m < 2; m++) {
        sae_create(&direct[m], &cfg[m], B);
        ck_assert_msg(sae_backend_create(&be[m], &cfg[m], B, &spec, comm_self(), err, sizeof err) == 0, "%s", err);
        memcpy(direct[m].params, init, direct[m].n_params * sizeof(float));
        memcpy(sae_backend_host(&be[m])->params, init, direct[m].n_params * sizeof(float));
        sae_backend_push(&be[m]);
    }
    direct[1].data_scale = be[1].host.data_scale = 0.75f;
    SaeBatch batch;
    sae_batch_init(&batch, DEVICE_CPU, B, d);
    float *xs = mallocCheck((size_t)B * d * sizeof(float));
    uint64_t rd[2] = {3, 4}, rl[2] = {3, 4}, *rlp[2] = {&rl[0], &rl[1]};
    for (int s = 0; s < T; s++) {
        const float *x = rows + (size_t)s * B * d;
        float lr[2];
        double clip[2] = {fc.grad_clip, fc.grad_clip};
        SaeStepMetrics md[2], ml[2];
        for (int m = 0; m < 2; m++) {
            lr[m] = (float)sae_lr_at(fc.schedule, fc.lr, fc.warmup, fc.n_steps, s);
            /* the trainer's former code */
            const float *xi = x;
            if (direct[m].data_scale != 1.0f) {
                for (size_t e = 0; e < (size_t)B * d; e++) xs[e] = x[e] * direct[m].data_scale;
                xi = xs;
            }
            sae_train_step(&direct[m], xi, B, B, lr[m], clip[m], &rd[m], &md[m]);
        }
        memcpy(sae_batch_rows(&batch), x, (size_t)B * d * sizeof(float));
        sae_batch_submit(&batch, B, bes, 2);
        sae_sweep_step(bes, 2, &batch, B, lr, clip, rlp, ml);
        for (int m = 0; m < 2; m++) assert_same_metrics(&md[m], &ml[m]);
    }
    for (int m = 0; m < 2; m++) {
        sae_backend_pull(&be[m]);
        assert_same_state(&direct[m], sae_backend_host(&be[m]));
        ck_assert(rd[m] == rl[m]);
        sae_destroy(&direct[m]);
        sae_backend_destroy(&be[m]);
    }
    sae_batch_free(&batch);
    free(xs);
    free(init);
    free(rows);
}
END_TEST

/* Refusals name the option. */
START_TEST(test_resolve_messages) {
    SaeBackendSpec s;
    const char *m;
    m = sae_backend_resolve("cpu", "bf16", &s);
    ck_assert_ptr_nonnull(m);
    ck_assert_msg(strstr(m, "bf16") != NULL, "%s", m);
    m = sae_backend_resolve("cpu", "tf32", &s);
    ck_assert_ptr_nonnull(m);
    ck_assert_msg(strstr(m, "tf32") && strstr(m, "cuda"), "%s", m);
    m = sae_backend_resolve("gpu", "fp32", &s);
    ck_assert_ptr_nonnull(m);
    ck_assert_msg(strstr(m, "\"gpu\""), "%s", m);
    m = sae_backend_resolve("fp16", "fp32", &s);
    ck_assert_ptr_nonnull(m);
    m = sae_backend_resolve("cpu", "half", &s);
    ck_assert_ptr_nonnull(m);
    ck_assert_msg(strstr(m, "\"half\""), "%s", m);
    ck_assert_ptr_null(sae_backend_resolve("cpu", "fp32", &s));
    ck_assert_int_eq(s.device, DEVICE_CPU);
    m = sae_backend_resolve("cuda", "fp32", &s);
#ifndef SAEV_CUDA
    ck_assert_ptr_nonnull(m);
    ck_assert_msg(strstr(m, "device cuda") != NULL, "%s", m);
    ck_assert_ptr_null(sae_backend_resolve("auto", "tf32", &s)); /* falls back to cpu fp32 with a warning */
    ck_assert_int_eq(s.device, DEVICE_CPU);
    ck_assert_int_eq(s.precision, PRECISION_FP32);
#else
    if (m) ck_assert_msg(strstr(m, "device cuda") != NULL, "%s", m); /* no GPU on this node */
    else ck_assert_int_eq(s.device, DEVICE_CUDA);
#endif
    /* a bad SAE config is refused by create with the config's message */
    SaeConfig c;
    sae_config_default(&c, 8, 16);
    c.k = 17;
    SaeBackend be;
    char err[256];
    ck_assert_ptr_null(sae_backend_resolve("cpu", "fp32", &s));
    ck_assert_int_eq(sae_backend_create(&be, &c, 4, &s, comm_self(), err, sizeof err), -1);
    ck_assert_msg(strstr(err, "k = 17") != NULL, "%s", err);
}
END_TEST

int main(void) {
    Suite *s = suite_create("sae_backend");
    TCase *tc = tcase_create("cpu");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_layer_equals_direct, 0, 5);
    tcase_add_test(tc, test_resolve_messages);
    suite_add_tcase(s, tc);
    return run_suite(s, 1);
}
