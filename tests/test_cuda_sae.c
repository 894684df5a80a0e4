/*
 * test_cuda_sae.c: SAE training on the GPU against saev's own PyTorch steps.
 *
 * References: ../shared/fixtures/sae/<case>/ (saev's nn/modeling.py + nn/objectives.py,
 * 6 steps of d=16, S=64, batch 32): per-step loss, MSE, L0, L1, AuxK loss and gradient
 * norm, and the final parameters. Cases: relu_l1, relu_warmup_cosine (the learning
 * rate of each step is read from the fixture's step_lr), topk_auxk (AuxK with dead
 * latents from step 3 on), matryoshka_topk (prefixes 8, 32, 64). Bounds of issue 9:
 * relative error <= 1e-4 in fp32 and <= 5e-3 in tf32. batch-top-k is not implemented on
 * the GPU (its fixture is not run here). The top-k selection is also checked alone at
 * saev's size and at d_sae 131072, k 256 against a sort on the CPU (the selected sets
 * must be identical; random floats have no ties).
 *
 * Needs a GPU: without one (or without SAEV_CUDA) it prints "skipped: no GPU" and passes.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "testutil.h"
#ifdef SAEV_CUDA
#include "cuda/sae_cuda.h"
#endif

#ifdef SAEV_CUDA
static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = mallocCheck(n + 1);
    ck_assert_int_eq(fread(buf, 1, n, f), n);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static double num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    ck_assert_msg(cJSON_IsNumber(v), "case.json: %s missing", key);
    return v->valuedouble;
}

static double rel_scalar(double a, double ref) { return fabs(a - ref) / (fabs(ref) > 1e-12 ? fabs(ref) : 1.0); }

static void run_case(const char *name, CudaPrecision prec, double tol) {
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/%s", fixture_path("sae"), name);
    snprintf(path, sizeof path, "%s/case.json", dir);
    char *text = read_text(path);
    cJSON *cs = cJSON_Parse(text);
    ck_assert_msg(cs != NULL, "%s: bad JSON", path);
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(cs, "activation");
    const char *kind = cJSON_GetObjectItemCaseSensitive(act, "kind")->valuestring;
    SaeCudaConfig c;
    memset(&c, 0, sizeof c);
    c.d_model = (int)num(cs, "d_model");
    c.d_sae = (int)num(cs, "d_sae");
    c.activation = !strcmp(kind, "relu") ? SAE_CUDA_RELU : SAE_CUDA_TOPK;
    if (c.activation == SAE_CUDA_RELU) c.l1_coeff = (float)num(act, "l1_coeff");
    else {
        c.k = (int)num(act, "k");
        c.k_aux = (int)num(act, "k_aux");
        c.aux_alpha = (float)num(act, "aux_alpha");
    }
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(cs, "matryoshka_prefixes");
    c.n_prefixes = cJSON_GetArraySize(pr);
    for (int i = 0; i < c.n_prefixes; i++) c.prefixes[i] = cJSON_GetArrayItem(pr, i)->valueint;
    c.dead_threshold_tokens = (int64_t)num(cs, "dead_threshold_tokens");
    c.normalize_w_dec = 1;
    c.remove_parallel_grads = 1;
    int B = (int)num(cs, "batch_size"), steps = (int)num(cs, "n_steps"), d = c.d_model, S = c.d_sae;
    double clip = num(cs, "grad_clip");

    SaeCuda sae;
    char err[512];
    ck_assert_msg(sae_cuda_create(&sae, &c, B, prec, err, sizeof err) == 0, "%s", err);
    float *host = mallocCheck(sae.n_params * sizeof(float));
    SafeTensors init, batches, expected;
    snprintf(path, sizeof path, "%s/init.safetensors", dir);
    st_open_or_die(&init, path);
    const char *names[4] = {"W_enc", "b_enc", "W_dec", "b_dec"};
    size_t off[5] = {0, (size_t)d * S, (size_t)d * S + S, (size_t)2 * d * S + S, sae.n_params};
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(st_require(&init, names[i])->numel, (int64_t)(off[i + 1] - off[i]));
        float *t = st_load_f32(&init, names[i], -1, NULL);
        memcpy(host + off[i], t, (off[i + 1] - off[i]) * sizeof(float));
        free(t);
    }
    sae_cuda_set_params(&sae, host);
    snprintf(path, sizeof path, "%s/batches.safetensors", dir);
    st_open_or_die(&batches, path);
    float *acts = st_load_f32(&batches, "activations", 2, NULL);
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    st_open_or_die(&expected, path);
    const char *step_names[6] = {"step_loss", "step_mse", "step_l0", "step_l1", "step_aux", "step_grad_norm"};
    float *ref[6];
    for (int i = 0; i < 6; i++) ref[i] = st_load_f32(&expected, step_names[i], 1, NULL);
    float *lr = st_load_f32(&expected, "step_lr", 1, NULL);
    float *x = cuda_malloc((size_t)B * d * sizeof(float));
    for (int t = 0; t < steps; t++) {
        cuda_upload(x, acts + (size_t)t * B * d, (size_t)B * d * sizeof(float));
        sae_cuda_train_step(&sae, x, B, B, lr[t], clip, NULL, 0);
        SaeCudaMetrics m;
        sae_cuda_metrics(&sae, B, &m);
        double got[6] = {m.loss, m.mse, m.l0, m.l1, m.aux, m.grad_norm};
        for (int i = 0; i < 6; i++) {
            double r = rel_scalar(got[i], ref[i][t]);
            if (!strcmp(step_names[i], "step_aux") && fabs(ref[i][t]) < 1e-12) r = fabs(got[i]); /* no AuxK yet */
            ck_assert_msg(r <= tol, "%s %s step %d %s: %.8g vs %.8g (rel %.2e)", name, cuda_precision_name(prec), t,
                          step_names[i], got[i], ref[i][t], r);
        }
    }
    sae_cuda_get_params(&sae, host);
    for (int i = 0; i < 4; i++) {
        float *t = st_load_f32(&expected, names[i], -1, NULL);
        double r = rel_error(host + off[i], t, off[i + 1] - off[i]);
        printf("cuda sae %-20s %s %-5s rel err %.3e\n", name, cuda_precision_name(prec), names[i], r);
        ck_assert_msg(r <= tol, "%s %s final %s rel err %.3e > %.0e", name, cuda_precision_name(prec), names[i], r, tol);
        free(t);
    }
    cuda_free(x);
    for (int i = 0; i < 6; i++) free(ref[i]);
    free(lr);
    free(acts);
    free(host);
    st_close(&init);
    st_close(&batches);
    st_close(&expected);
    sae_cuda_destroy(&sae);
    cJSON_Delete(cs);
    free(text);
}

static const char *CASES[4] = {"relu_l1", "relu_warmup_cosine", "topk_auxk", "matryoshka_topk"};

START_TEST(test_fixture_fp32) { run_case(CASES[_i], CUDA_FP32, 1e-4); }
END_TEST
START_TEST(test_fixture_tf32) { run_case(CASES[_i], CUDA_TF32, 5e-3); }
END_TEST

static int cmp_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* Per-row top-k against the CPU: the kept set is exactly the entries >= the k-th largest
 * (found by sorting a copy), listed in increasing latent order with their values. */
static void check_topk(int n, int S, int k, uint64_t seed) {
    size_t nS = (size_t)n * S;
    float *h = mallocCheck(nS * sizeof(float)), *row = mallocCheck(S * sizeof(float));
    for (size_t i = 0; i < nS; i++) { /* signed values, both signs in every row */
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        h[i] = (float)(((seed >> 40) / 16777216.0) * 8.0 - 4.0);
    }
    float *dh = cuda_malloc(nS * sizeof(float)), *dv = cuda_malloc((size_t)n * k * sizeof(float));
    int *di = cuda_malloc((size_t)n * k * sizeof(int));
    cuda_upload(dh, h, nS * sizeof(float));
    sae_cuda_topk_rows(dh, n, S, k, di, dv, NULL);
    cuda_sync();
    int *idx = mallocCheck((size_t)n * k * sizeof(int));
    float *val = mallocCheck((size_t)n * k * sizeof(float));
    cuda_download(idx, di, (size_t)n * k * sizeof(int));
    cuda_download(val, dv, (size_t)n * k * sizeof(float));
    for (int b = 0; b < n; b++) {
        const float *hb = h + (size_t)b * S;
        memcpy(row, hb, S * sizeof(float));
        qsort(row, S, sizeof(float), cmp_desc);
        float kth = row[k - 1];
        int t = 0;
        for (int s = 0; s < S; s++)
            if (hb[s] >= kth) {
                ck_assert_msg(t < k, "row %d: more than k entries >= the k-th value", b);
                ck_assert_msg(idx[(size_t)b * k + t] == s, "row %d slot %d: latent %d, expected %d", b, t,
                              idx[(size_t)b * k + t], s);
                ck_assert(val[(size_t)b * k + t] == hb[s]);
                t++;
            }
        ck_assert_int_eq(t, k);
    }
    cuda_free(dh);
    cuda_free(dv);
    cuda_free(di);
    free(h);
    free(row);
    free(idx);
    free(val);
}

START_TEST(test_topk_saev_size) { check_topk(64, 12288, 32, 1); }
END_TEST
START_TEST(test_topk_wide) { check_topk(8, 131072, 256, 2); }
END_TEST
START_TEST(test_topk_small) { check_topk(5, 64, 64, 3); } /* k = S: every entry */
END_TEST
#endif

int main(void) {
#ifndef SAEV_CUDA
    printf("skipped: no GPU (built without SAEV_CUDA)\n");
    return 0;
#else
    if (cuda_gpu_count() < 1) {
        printf("skipped: no GPU\n");
        return 0;
    }
    Suite *s = suite_create("cuda_sae");
    TCase *tc = tcase_create("sae");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_topk_small);
    tcase_add_test(tc, test_topk_saev_size);
    tcase_add_test(tc, test_topk_wide);
    tcase_add_loop_test(tc, test_fixture_fp32, 0, 4);
    tcase_add_loop_test(tc, test_fixture_tf32, 0, 4);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
#endif
}
