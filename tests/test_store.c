/*
 * test_store.c: the activation store from one process (sec2 driver): write closed-form
 * activations, read them back through the reader API, check dtypes, ranges across file
 * boundaries, token sub-ranges, labels, skip reasons, and the identity check on reopen.
 * Multi-rank writing, resume after kill -9, h5py and saev interop are in test_store.sh.
 *
 * Expected values come from the closed form act(i,l,t,k) below (the same as
 * worker/stage_store_selftest.c): exact in float32 and float16 (multiples of 1/64 with
 * |x| <= 500/64 need at most 9 significant bits), and within bfloat16's rounding
 * (relative 2^-8: 8 significant bits, round to nearest = half an ulp) in bfloat16.
 */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "testutil.h"

static float act(int64_t i, int64_t l, int64_t t, int64_t k) {
    return (float)(((131 * i + 31 * l + 7 * t + 3 * k) % 1001) - 500) / 64.0f;
}

enum { N = 23, L = 3, P = 6, T = 7, D = 5, IPF = 9 }; /* 3 files: 9 + 9 + 5 images */
static int layers[L] = {2, 5, 11};

static StoreMeta test_meta(StoreDtype dt) {
    StoreMeta m = {0};
    m.model_family = "dinov2";
    m.model = "test-model";
    m.checkpoint_digest = "sha256:abc";
    m.n_layers = L;
    m.layers = layers;
    m.has_cls = 1;
    m.n_patches = P;
    m.n_tokens = T;
    m.d_model = D;
    m.dtype = dt;
    m.n_images = N;
    m.images_per_file = IPF;
    m.has_patch_labels = 1;
    m.preprocessing = "resize 8, crop 8";
    m.dataset = "/data/test";
    m.config_yaml = "activations:\n  out: x\n";
    return m;
}

/* Writes the closed form in two calls whose batches are out of file order and skip image 4. */
static void write_store(const char *dir, StoreDtype dt) {
    StoreMeta m = test_meta(dt);
    Store *s = store_open_write(dir, &m, 0, NULL);
    float *a = malloc(sizeof(float) * N * L * T * D);
    int64_t idx[N], lab[N], ii[N];
    uint8_t pl[N * P];
    const char *why[N];
    for (int64_t i = 0; i < N; i++) {
        for (int l = 0; l < L; l++)
            for (int t = 0; t < T; t++)
                for (int k = 0; k < D; k++) a[((i * L + l) * T + t) * D + k] = act(i, l, t, k);
        idx[i] = i;
        lab[i] = 100 + i;
        ii[i] = 1000 + i;
        for (int p = 0; p < P; p++) pl[i * P + p] = (uint8_t)(i * 3 + p);
        why[i] = i == 4 ? "corrupt JPEG" : NULL;
    }
    /* second half first: order of calls must not matter */
    store_write(s, N - 12, idx + 12, a + 12 * L * T * D, ii + 12, lab + 12, pl + 12 * P, why + 12);
    store_write(s, 12, idx, a, ii, lab, pl, why);
    ck_assert_int_eq(store_finish(s), 1);
    free(a);
}

static void check_dtype(StoreDtype dt, double tol) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/%s", scratch_dir(), store_dtype_name(dt));
    write_store(dir, dt);
    char err[1024];
    Store *s = store_open_read(dir, err, sizeof err);
    ck_assert_msg(s != NULL, "%s", err);
    ck_assert_int_eq(s->complete, 1);
    ck_assert_int_eq(s->n_files, 3);
    ck_assert_int_eq(s->meta.dtype, dt);
    ck_assert_int_eq(s->meta.layers[2], 11);
    /* Layer 1, images 5..19 (crosses both file boundaries), all tokens. */
    float *out = malloc(sizeof(float) * N * T * D);
    store_read_layer(s, 1, 5, 15, 0, T, out);
    for (int64_t i = 5; i < 20; i++)
        for (int t = 0; t < T; t++)
            for (int k = 0; k < D; k++) {
                float want = act(i, 1, t, k), got = out[((i - 5) * T + t) * D + k];
                ck_assert_msg(fabs(got - want) <= tol * fabs(want), "%s image %lld token %d dim %d: %g != %g", store_dtype_name(dt),
                              (long long)i, t, k, got, want);
            }
    /* Patches only (tokens 1..6) of layer 2, images 0..22. */
    store_read_layer(s, 2, 0, N, 1, P, out);
    for (int64_t i = 0; i < N; i++)
        for (int p = 0; p < P; p++)
            for (int k = 0; k < D; k++) {
                float want = i == 4 ? 0.0f : act(i, 2, 1 + p, k), got = out[(i * P + p) * D + k];
                ck_assert_msg(fabs(got - want) <= tol * fabs(want), "patch rows: image %lld patch %d dim %d: %g != %g", (long long)i, p, k, got, want);
            }
    /* Whole images. */
    float *img = malloc(sizeof(float) * 2 * L * T * D);
    store_read_images(s, 8, 2, img);
    for (int64_t i = 8; i < 10; i++)
        for (int l = 0; l < L; l++)
            for (int t = 0; t < T; t++)
                for (int k = 0; k < D; k++) {
                    float want = act(i, l, t, k), got = img[(((i - 8) * L + l) * T + t) * D + k];
                    ck_assert(fabs(got - want) <= tol * fabs(want));
                }
    /* Per-image data and the skipped image. */
    uint8_t pl[N * P];
    store_read_patch_labels(s, 0, N, pl);
    for (int64_t i = 0; i < N; i++) {
        ck_assert_int_eq(s->image_index[i], 1000 + i);
        ck_assert_int_eq(s->label[i], 100 + i);
        ck_assert_int_eq(s->status[i], i == 4 ? STORE_SKIPPED : STORE_WRITTEN);
        for (int p = 0; p < P; p++) ck_assert_int_eq(pl[i * P + p], (uint8_t)(i * 3 + p));
    }
    char why[STORE_REASON_LEN + 1];
    store_read_skip_reason(s, 4, why, sizeof why);
    ck_assert_str_eq(why, "corrupt JPEG");
    store_read_skip_reason(s, 5, why, sizeof why);
    ck_assert_str_eq(why, "");
    free(img);
    free(out);
    store_close(s);
}

START_TEST(test_float32) { check_dtype(STORE_F32, 0.0); }
END_TEST
START_TEST(test_float16) { check_dtype(STORE_F16, 0.0); }
END_TEST
START_TEST(test_bfloat16) { check_dtype(STORE_BF16, 1.0 / 256); }
END_TEST

/* store_meta_compare names the first differing identity field. */
START_TEST(test_compare) {
    StoreMeta a = test_meta(STORE_F32), b = test_meta(STORE_F32);
    char msg[512];
    ck_assert_ptr_null(store_meta_compare(&a, &b, msg, sizeof msg));
    b.config_yaml = "other: 1\n"; /* provenance is not identity */
    ck_assert_ptr_null(store_meta_compare(&a, &b, msg, sizeof msg));
    b.model = "other-model";
    ck_assert_str_eq(store_meta_compare(&a, &b, msg, sizeof msg), "model");
    ck_assert_msg(strstr(msg, "other-model") && strstr(msg, "test-model"), "%s", msg);
    b = test_meta(STORE_F32);
    int other_layers[L] = {2, 5, 10};
    b.layers = other_layers;
    ck_assert_str_eq(store_meta_compare(&a, &b, msg, sizeof msg), "layers");
    ck_assert_msg(strstr(msg, "[2, 5, 11]") && strstr(msg, "[2, 5, 10]"), "%s", msg);
    b = test_meta(STORE_BF16);
    ck_assert_str_eq(store_meta_compare(&a, &b, msg, sizeof msg), "dtype");
    b = test_meta(STORE_F32);
    b.preprocessing = "resize 9";
    ck_assert_str_eq(store_meta_compare(&a, &b, msg, sizeof msg), "preprocessing");
}
END_TEST

/* Reopening with another checkpoint digest exits 2 (usage) and writes nothing. */
static void open_mixed(void *dir) {
    StoreMeta m = test_meta(STORE_F32);
    m.checkpoint_digest = "sha256:def";
    store_open_write(dir, &m, 1, NULL);
}

START_TEST(test_refuse_mix) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/mix", scratch_dir());
    write_store(dir, STORE_F32);
    expect_exit(open_mixed, dir, 2, "refusing to mix into activation store");
    expect_exit(open_mixed, dir, 2, "checkpoint_digest");
}
END_TEST

/* Without resume an existing store is refused too. */
static void open_without_resume(void *dir) {
    StoreMeta m = test_meta(STORE_F16);
    store_open_write(dir, &m, 0, NULL);
}

START_TEST(test_no_resume) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/nores", scratch_dir());
    write_store(dir, STORE_F16);
    expect_exit(open_without_resume, dir, 2, "already exists; set activations.resume=true");
}
END_TEST

/* Resuming a complete, matching store finds nothing pending. */
START_TEST(test_resume_complete) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/again", scratch_dir());
    write_store(dir, STORE_F32);
    StoreMeta m = test_meta(STORE_F32);
    m.config_yaml = "a different run's config\n";
    Store *s = store_open_write(dir, &m, 1, NULL);
    int64_t *pending = NULL;
    ck_assert_int_eq(store_pending(s, &pending), 0);
    free(pending);
    ck_assert_int_eq(store_finish(s), 1);
}
END_TEST

START_TEST(test_not_a_store) {
    char err[1024];
    ck_assert_ptr_null(store_open_read(scratch_dir(), err, sizeof err));
    ck_assert_msg(strstr(err, "not an activation store"), "%s", err);
    ck_assert_ptr_null(store_open_read("/nonexistent/store", err, sizeof err));
}
END_TEST

int main(void) {
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("store");
    tcase_add_test(tc, test_float32);
    tcase_add_test(tc, test_float16);
    tcase_add_test(tc, test_bfloat16);
    tcase_add_test(tc, test_compare);
    tcase_add_test(tc, test_refuse_mix);
    tcase_add_test(tc, test_no_resume);
    tcase_add_test(tc, test_resume_complete);
    tcase_add_test(tc, test_not_a_store);
    suite_add_tcase(s, tc);
    return run_suite(s, 1);
}
