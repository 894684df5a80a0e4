/*
 * test_evaluate.c: `saev evaluate`'s metrics on hand-built SAEs with closed-form answers.
 *
 * The "split" SAE (d = 2, S = 4): W_enc = [I, −I], b_enc = 0, W_dec = [I; −I], so
 * f = (relu(x), relu(−x)) and x̂ = relu(x) − relu(−x) = x exactly. On the four rows
 *   (1, 0), (0, 2), (3, −1), (0, 0)
 * latent 0 (x0 > 0) fires on rows 0 and 2 with values 1, 3; latent 1 on row 1 (2);
 * latent 2 (x0 < 0) never; latent 3 (x1 < 0) on row 2 (1). Hence, by hand:
 *   frequencies 0.5, 0.25, 0, 0.25; mean values 2, 2, none, 1;
 *   L0 = (1 + 1 + 2 + 0)/4 = 1; L1 = (1 + 2 + 4 + 0)/4 = 1.75; MSE = NMSE = 0;
 *   dead 1, almost dead 1, dense 3.
 * Adding b_dec = (0.5, −1) shifts every x̂ by b_dec: Σ‖x − x̂‖² = 4·1.25 = 5,
 * MSE = 5/8, Σ‖x − x̄‖² with x̄ = (1, 0.25) is 6 + 4.75 = 10.75 so NMSE = 5/10.75,
 * Σ‖x‖² = 15 so the uncentred ratio is 1/3.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sae/checkpoint.h"
#include "sae/evaluate.h"
#include "safetensors.h"
#include "testutil.h"

static const float ROWS[4][2] = {{1, 0}, {0, 2}, {3, -1}, {0, 0}};

static void make_split_sae(Sae *sae, SaeActivation act, int k) {
    SaeConfig c;
    sae_config_default(&c, 2, 4);
    c.activation = act;
    c.k = k;
    c.k_aux = 0;
    sae_create(sae, &c, 4);
    memset(sae->params, 0, sae->n_params * sizeof(float));
    for (int i = 0; i < 2; i++) {
        sae->p.w_enc[i * 4 + i] = 1;      /* W_enc [d, S] */
        sae->p.w_enc[i * 4 + 2 + i] = -1;
        sae->p.w_dec[i * 2 + i] = 1;      /* W_dec [S, d] */
        sae->p.w_dec[(2 + i) * 2 + i] = -1;
    }
}

/* The metrics of an SAE on ROWS through the library (sums, then metrics). */
static void eval_rows(Sae *sae, int bins, EvalMetrics *m) {
    EvalSums e;
    eval_sums_init(&e, 2, sae->cfg.d_sae);
    float f[4 * 4], x_hat[4 * 2];
    sae_encode_decode_eval(sae, &ROWS[0][0], 4, f, x_hat);
    eval_sums_add(&e, &ROWS[0][0], f, x_hat, 4);
    eval_metrics_compute(&e, bins, m);
    eval_sums_free(&e);
}

START_TEST(test_split_exact) {
    Sae sae;
    make_split_sae(&sae, SAE_RELU, 0);
    EvalMetrics m;
    eval_rows(&sae, 9, &m);
    ck_assert_int_eq(m.n_tokens, 4);
    ck_assert_double_eq_tol(m.l0, 1.0, 1e-12);
    ck_assert_double_eq_tol(m.l1, 1.75, 1e-12);
    ck_assert_double_eq(m.mse, 0.0);
    ck_assert_double_eq(m.nmse, 0.0);
    ck_assert_double_eq(m.explained_variance, 1.0);
    const double freqs[4] = {0.5, 0.25, 0, 0.25}, means[4] = {2, 2, NAN, 1};
    for (int j = 0; j < 4; j++) {
        ck_assert_double_eq_tol(m.freqs[j], freqs[j], 1e-15);
        if (j == 2) ck_assert(isnan(m.mean_values[j]));
        else ck_assert_double_eq_tol(m.mean_values[j], means[j], 1e-15);
    }
    ck_assert_int_eq(m.n_dead, 1);
    ck_assert_int_eq(m.n_almost_dead, 1);
    ck_assert_int_eq(m.n_dense, 3);
    /* 9 bins on [-9, 0]: log10(0.5) and log10(0.25) fall in [-1, 0) = bin 8, the dead
     * latent's log10(1e-9) = -9 in bin 0. Mean values 2, 2, 1 on [1, 2]: 1 in bin 0, 2 at
     * the right edge in the last bin. */
    const int64_t fh[9] = {1, 0, 0, 0, 0, 0, 0, 0, 3}, mh[9] = {1, 0, 0, 0, 0, 0, 0, 0, 2};
    for (int i = 0; i < 9; i++) {
        ck_assert_int_eq(m.freq_hist[i], fh[i]);
        ck_assert_int_eq(m.mean_hist[i], mh[i]);
    }
    ck_assert_double_eq(m.mean_lo, 1.0);
    ck_assert_double_eq(m.mean_hi, 2.0);
    ck_assert_int_eq(m.n_mean_hist, 3);
    eval_metrics_free(&m);
    sae_destroy(&sae);
}
END_TEST

START_TEST(test_split_known_mse) {
    Sae sae;
    make_split_sae(&sae, SAE_RELU, 0);
    sae.p.b_dec[0] = 0.5f;
    sae.p.b_dec[1] = -1.0f;
    EvalMetrics m;
    eval_rows(&sae, 10, &m);
    ck_assert_double_eq_tol(m.sum_sq_err, 5.0, 1e-12);
    ck_assert_double_eq_tol(m.mse, 5.0 / 8.0, 1e-12);
    ck_assert_double_eq_tol(m.sst, 10.75, 1e-12);
    ck_assert_double_eq_tol(m.nmse, 5.0 / 10.75, 1e-12);
    ck_assert_double_eq_tol(m.explained_variance, 1.0 - 5.0 / 10.75, 1e-12);
    ck_assert_double_eq_tol(m.nmse_uncentered, 1.0 / 3.0, 1e-12);
    ck_assert_double_eq_tol(m.l0, 1.0, 1e-12); /* the encoder is unchanged (no centring) */
    eval_metrics_free(&m);
    sae_destroy(&sae);
}
END_TEST

/* Top-k keeps a negative pre-activation: d = 1, S = 2, W_enc = [−1, −2], k = 1. On x = 1
 * the kept latent is 0 with f = −1; with W_dec[0] = −1, x̂ = 1. It fires (|f| > 0):
 * L0 = 1, L1 = 1, mean value −1; latent 1 is dead. */
START_TEST(test_topk_negative_fires) {
    SaeConfig c;
    sae_config_default(&c, 1, 2);
    c.activation = SAE_TOPK;
    c.k = 1;
    c.k_aux = 0;
    Sae sae;
    sae_create(&sae, &c, 2);
    memset(sae.params, 0, sae.n_params * sizeof(float));
    sae.p.w_enc[0] = -1;
    sae.p.w_enc[1] = -2;
    sae.p.w_dec[0] = -1;
    sae.p.w_dec[1] = 5;
    const float x[2] = {1, 1};
    float f[4], x_hat[2];
    sae_encode_decode_eval(&sae, x, 2, f, x_hat);
    EvalSums e;
    eval_sums_init(&e, 1, 2);
    eval_sums_add(&e, x, f, x_hat, 2);
    EvalMetrics m;
    eval_metrics_compute(&e, 4, &m);
    ck_assert_double_eq(m.l0, 1.0);
    ck_assert_double_eq(m.l1, 1.0);
    ck_assert_double_eq(m.mse, 0.0);
    ck_assert_double_eq(m.freqs[0], 1.0);
    ck_assert_double_eq(m.mean_values[0], -1.0);
    ck_assert_int_eq(m.n_dead, 1);
    eval_metrics_free(&m);
    eval_sums_free(&e);
    sae_destroy(&sae);
}
END_TEST

/* Batch-top-k evaluates as JumpReLU with the learned threshold: with threshold 1.5 the
 * split SAE keeps only the values 3 (latent 0, row 2) and 2 (latent 1, row 1):
 * L0 = 2/4, L1 = 5/4, frequencies 0.25, 0.25, 0, 0; x̂ loses the dropped 1s:
 * Σ‖x − x̂‖² = 1 (row 0) + 1 (row 2) = 2. */
START_TEST(test_batch_topk_threshold) {
    Sae sae;
    make_split_sae(&sae, SAE_BATCH_TOPK, 1);
    sae.threshold = 1.5f;
    EvalMetrics m;
    eval_rows(&sae, 9, &m);
    ck_assert_double_eq_tol(m.l0, 0.5, 1e-12);
    ck_assert_double_eq_tol(m.l1, 1.25, 1e-12);
    ck_assert_double_eq_tol(m.sum_sq_err, 2.0, 1e-12);
    ck_assert_double_eq(m.freqs[0], 0.25);
    ck_assert_double_eq(m.freqs[1], 0.25);
    ck_assert_int_eq(m.n_dead, 2);
    eval_metrics_free(&m);
    sae_destroy(&sae);
}
END_TEST

static void write_rows(const char *path, const float *rows, int n, int d) {
    StWriter w;
    st_writer_init(&w);
    int64_t shape[2] = {n, d};
    st_writer_add(&w, "activations", ST_F32, 2, shape, rows);
    st_writer_write_or_die(&w, path);
    st_writer_free(&w);
}

static cJSON *read_json(const char *path) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s missing", path);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *j = cJSON_Parse(buf);
    ck_assert_msg(j != NULL, "%s is not JSON", path);
    return j;
}

static double num(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItem(j, key);
    ck_assert_msg(cJSON_IsNumber(v), "no number %s", key);
    return v->valuedouble;
}

/* The whole path (checkpoint file, data file, data_scale, JSON, SVG): the split SAE with
 * b_dec = (0.5, −1) saved with data_scale 2. The SAE sees 2x, so f doubles (L1 3.5, L0 1),
 * the error is still b_dec per row (MSE 5/8 in the SAE's space, 5/32 in data units),
 * NMSE = 5 / (4·10.75). Rows 1..3 only (first_row 1, max_tokens 2 → rows 1, 2):
 * checked separately below. */
START_TEST(test_run_files) {
    Sae sae;
    make_split_sae(&sae, SAE_RELU, 0);
    sae.p.b_dec[0] = 0.5f;
    sae.p.b_dec[1] = -1.0f;
    sae.data_scale = 2.0f;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/run/m0", scratch_dir());
    char cmd[700];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    ck_assert_int_eq(system(cmd), 0);
    char ckpt[700];
    snprintf(ckpt, sizeof ckpt, "%s/sae.safetensors", dir);
    sae_checkpoint_write(&sae, ckpt, 7);
    write_rows(scratch_file("rows.safetensors"), &ROWS[0][0], 4, 2);

    char run_dir[600];
    snprintf(run_dir, sizeof run_dir, "%s/run", scratch_dir());
    char *list[1] = {run_dir};
    EvaluateConfig c = {0};
    c.sae.n = 1;
    c.sae.s = list;
    c.data = (char *)scratch_file("rows.safetensors");
    c.layer = -2;
    c.batch_size = 3; /* two batches: 3 + 1 rows */
    c.hist_bins = 9;
    evaluate_run(&c, comm_self());

    char path[800];
    snprintf(path, sizeof path, "%s/eval.json", dir);
    cJSON *j = read_json(path);
    ck_assert_double_eq(num(j, "n_tokens"), 4);
    ck_assert_double_eq(num(j, "data_scale"), 2);
    ck_assert_double_eq_tol(num(j, "l0"), 1.0, 1e-12);
    ck_assert_double_eq_tol(num(j, "l1"), 3.5, 1e-12);
    ck_assert_double_eq_tol(num(j, "mse"), 5.0 / 8.0, 1e-12);
    ck_assert_double_eq_tol(num(j, "mse_data_units"), 5.0 / 32.0, 1e-12);
    ck_assert_double_eq_tol(num(j, "nmse"), 5.0 / 43.0, 1e-12);
    ck_assert_double_eq_tol(num(j, "explained_variance"), 1.0 - 5.0 / 43.0, 1e-12);
    ck_assert_double_eq(num(j, "n_dead"), 1);
    ck_assert_double_eq(num(j, "n_dense"), 3);
    const cJSON *mv = cJSON_GetObjectItem(j, "mean_values");
    ck_assert_int_eq(cJSON_GetArraySize(mv), 4);
    ck_assert(cJSON_IsNull(cJSON_GetArrayItem(mv, 2))); /* the dead latent has no mean value */
    ck_assert_double_eq_tol(cJSON_GetArrayItem(mv, 0)->valuedouble, 4.0, 1e-12);
    cJSON_Delete(j);
    snprintf(path, sizeof path, "%s/eval.svg", dir);
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert(sb.st_size > 500);

    /* Rows [1, 3) only, into an explicit out dir: rows (0,2), (3,−1) scaled by 2:
     * L1 = (4 + 8)/2 = 6, L0 = (1 + 2)/2 = 1.5. */
    c.first_row = 1;
    c.max_tokens = 2;
    c.out = (char *)scratch_file("sub");
    evaluate_run(&c, comm_self());
    snprintf(path, sizeof path, "%s/eval.json", c.out);
    j = read_json(path);
    ck_assert_double_eq(num(j, "n_tokens"), 2);
    ck_assert_double_eq(num(j, "first_row"), 1);
    ck_assert_double_eq_tol(num(j, "l1"), 6.0, 1e-12);
    ck_assert_double_eq_tol(num(j, "l0"), 1.5, 1e-12);
    cJSON_Delete(j);
    sae_destroy(&sae);
}
END_TEST

START_TEST(test_svg_escapes_title) {
    Sae sae;
    make_split_sae(&sae, SAE_RELU, 0);
    EvalMetrics m;
    eval_rows(&sae, 5, &m);
    char *svg = eval_svg(&m, "runs/a&b<c>/sae.safetensors");
    ck_assert_ptr_nonnull(strstr(svg, "runs/a&amp;b&lt;c&gt;/sae.safetensors"));
    ck_assert_ptr_null(strstr(svg, "a&b"));
    ck_assert_ptr_nonnull(strstr(svg, "</svg>"));
    free(svg);
    eval_metrics_free(&m);
    sae_destroy(&sae);
}
END_TEST

int main(void) {
    Suite *s = suite_create("evaluate");
    TCase *tc = tcase_create("evaluate");
    tcase_add_test(tc, test_split_exact);
    tcase_add_test(tc, test_split_known_mse);
    tcase_add_test(tc, test_topk_negative_fires);
    tcase_add_test(tc, test_batch_topk_threshold);
    tcase_add_test(tc, test_run_files);
    tcase_add_test(tc, test_svg_escapes_title);
    suite_add_tcase(s, tc);
    return run_suite(s, 1);
}
