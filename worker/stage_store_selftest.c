/*
 * stage_store_selftest.c: `saev-worker store-selftest --out DIR [options]` writes synthetic
 * activations into an activation store on every rank through the same write path the
 * activations stage uses (store_open_write, store_plan, store_write, store_finish).
 * Values come from a closed form of (image, layer, token, dim), so tests can check any
 * byte without keeping a reference copy:
 *
 *   act(i, l, t, k) = (((131 i + 31 l + 7 t + 3 k) mod 1001) - 500) / 64
 *
 * exact in float32 and float16 (|x| <= 500/64 on a 1/64 grid), rounded in bfloat16.
 * Labels: label = i mod 7, image_index = i, patch label p = (i + p) mod 5; with
 * --skip-every K, images with i mod K = K-1 are skipped as "synthetic bad image i".
 * Stored layers are 1, 3, 5, ... (resolved block indices distinct from their positions).
 *
 * Options: --images N --layers L --patches P --cls 0|1 --d D --dtype float32|float16|bfloat16
 * --batch B --ipf K (images per file) --model NAME --dataset TEXT (the store's data set
 * description) --patch-labels --skip-every K
 * --no-resume. It prints "store-selftest: wrote B bytes in S s (G GB/s)" on rank 0.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config_args.h"
#include "comm.h"
#include "log.h"
#include "stages.h"
#include "store/store.h"

static float selftest_value(int64_t i, int64_t l, int64_t t, int64_t k) {
    return (float)(((131 * i + 31 * l + 7 * t + 3 * k) % 1001) - 500) / 64.0f;
}

static int64_t arg_i64(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) saev_usage_fail("store-selftest: %s needs a value", argv[*i]);
    ++*i;
    return flag_int_or_die("store-selftest", argv[*i - 1], argv[*i], INT64_MIN, INT64_MAX);
}

int stage_store_selftest(int argc, char **argv) {
    const char *out = NULL, *dtype = "float32", *model = "selftest-vit", *dataset = "/synthetic/closed-form";
    int64_t n_images = 10, n_layers = 2, n_patches = 4, cls = 1, d = 8, batch = 3, ipf = 0, skip_every = 0;
    int patch_labels = 0, resume = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) dtype = argv[++i];
        else if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--dataset") && i + 1 < argc) dataset = argv[++i];
        else if (!strcmp(argv[i], "--images")) n_images = arg_i64(argc, argv, &i);
        else if (!strcmp(argv[i], "--layers")) n_layers = arg_i64(argc, argv, &i);
        else if (!strcmp(argv[i], "--patches")) n_patches = arg_i64(argc, argv, &i);
        else if (!strcmp(argv[i], "--cls")) cls = arg_i64(argc, argv, &i);
        else if (!strcmp(argv[i], "--d")) d = arg_i64(argc, argv, &i);
        else if (!strcmp(argv[i], "--batch")) batch = arg_i64(argc, argv, &i);
        else if (!strcmp(argv[i], "--ipf")) ipf = arg_i64(argc, argv, &i);
        else if (!strcmp(argv[i], "--skip-every")) skip_every = arg_i64(argc, argv, &i);
        else if (!strcmp(argv[i], "--patch-labels")) patch_labels = 1;
        else if (!strcmp(argv[i], "--no-resume")) resume = 0;
        else saev_usage_fail("store-selftest: unknown argument \"%s\"", argv[i]);
    }
    if (!out) saev_usage_fail("store-selftest: --out DIR is required");
    StoreMeta m = {0};
    if (store_dtype_parse(dtype, &m.dtype)) saev_usage_fail("store-selftest: --dtype must be float32, float16 or bfloat16 (got %s)", dtype);
    int layers[64];
    if (n_layers < 1 || n_layers > 64) saev_usage_fail("store-selftest: --layers must be in [1, 64]");
    for (int l = 0; l < n_layers; l++) layers[l] = 2 * l + 1;
    m.model_family = "clip";
    m.model = (char *)model;
    m.checkpoint_digest = "sha256:selftest";
    m.n_layers = (int)n_layers;
    m.layers = layers;
    m.has_cls = (int)cls;
    m.n_patches = (int)n_patches;
    m.n_tokens = (int)(cls + n_patches);
    m.d_model = (int)d;
    m.n_images = n_images;
    m.images_per_file = ipf;
    m.has_patch_labels = patch_labels;
    m.preprocessing = "synthetic (no pixels)";
    m.dataset = (char *)dataset;
    m.saev_version = SAEV_VERSION;
    m.config_yaml = "activations:\n  dtype: synthetic\n";

    const Comm *world = comm_world();
    int rank = world->rank, size = world->size;
    comm_barrier(world);
    double t0 = saev_now();
    Store *s = store_open_write(out, &m, resume, world);
    StorePlan plan;
    store_plan(s, rank, size, batch, &plan);
    int64_t n_mine = plan.n_images, *mine = plan.images;
    int64_t T = m.n_tokens, row = n_layers * T * d;
    float *acts = mallocCheck(sizeof(float) * (size_t)(batch * row));
    int64_t *label = mallocCheck(sizeof(int64_t) * (size_t)batch);
    uint8_t *plab = mallocCheck((size_t)(batch * (n_patches ? n_patches : 1)));
    const char **reason = mallocCheck(sizeof(char *) * (size_t)batch);
    char (*reason_text)[64] = mallocCheck(64 * (size_t)batch);
    for (int64_t w = 0; w < plan.n_writes_all; w++) {
        int64_t lo, n;
        store_plan_piece(&plan, batch, w, &lo, &n);
        for (int64_t j = 0; j < n; j++) {
            int64_t i = mine[lo + j];
            for (int64_t l = 0; l < n_layers; l++)
                for (int64_t t = 0; t < T; t++)
                    for (int64_t k = 0; k < d; k++) acts[j * row + (l * T + t) * d + k] = selftest_value(i, l, t, k);
            label[j] = i % 7;
            for (int64_t p = 0; p < n_patches; p++) plab[j * n_patches + p] = (uint8_t)((i + p) % 5);
            reason[j] = NULL;
            if (skip_every > 0 && i % skip_every == skip_every - 1) {
                snprintf(reason_text[j], 64, "synthetic bad image %lld", (long long)i);
                reason[j] = reason_text[j];
            }
        }
        store_write(s, n, mine + lo, acts, NULL, label, patch_labels ? plab : NULL, reason);
    }
    int complete = store_finish(s);
    comm_barrier(world);
    double secs = saev_now() - t0;
    double bytes = (double)n_mine * (double)row * (double)store_dtype_size(m.dtype);
    comm_allreduce(world, &bytes, 1, COMM_F64, COMM_SUM);
    if (rank == 0)
        printf("store-selftest: wrote %.0f bytes in %.3f s (%.3f GB/s) with %d rank%s; store %s\n", bytes, secs, bytes / secs / 1e9, size,
               size == 1 ? "" : "s", complete ? "complete" : "incomplete");
    store_plan_free(&plan);
    free(acts);
    free(label);
    free(plab);
    free(reason);
    free(reason_text);
    return complete ? 0 : 1;
}
