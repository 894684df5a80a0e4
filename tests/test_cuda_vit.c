/*
 * test_cuda_vit.c: the CUDA ViT backend against transformers and against the CPU backend.
 *
 * References: tests/fixtures/hf-vit/<family>/expected.safetensors (transformers 5.17
 * in float64; clip, dinov2 with position resampling, dinov2 with registers, siglip).
 * Every hidden state and last_hidden_state must agree to ||out - ref|| / ||ref|| within
 * the precision's bound of issue 5: fp32 1e-4, tf32 5e-3, bf16 3e-2. A random CLIP
 * ViT-B/16 at 224 px (T = 197: odd, so the padded score rows and unaligned slices are
 * exercised) is compared with the CPU backend, which test_vit.c checks against
 * transformers. Invariants: pinned and pageable outputs are identical; a smaller batch
 * after a larger one (reused buffers) reproduces the first images; output slots the
 * forward must write are poisoned with NaN first. vit_cuda_forward_from from every block
 * of a tiny CLIP equals the full forward's later states bit for bit.
 *
 * Needs a GPU: without one (or in a build without SAEV_CUDA) it prints
 * "skipped: no GPU" and exits 77 (ctest: Skipped). CUDA is not fork-safe, so Check runs without fork.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "safetensors.h"
#include "testutil.h"
#include "vit_expected.h"
#include "vit/vit.h"
#ifdef SAEV_CUDA
#include "cuda/vit_cuda.h"
#endif

#ifdef SAEV_CUDA
static const double TOL[PRECISION_N] = {1e-4, 5e-3, 3e-2};

static void open_on_gpu(Vit *vit, const char *weights, const char *config) {
    VitSpec spec;
    vit_spec_init(&spec);
    spec.path = weights;
    spec.config_path = config;
    char err[2048];
    ck_assert_msg(vit_open(vit, &spec, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(vit_cuda_set_device(vit, DEVICE_CUDA, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(vit->device, DEVICE_CUDA);
}

static void fill_nan(float *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = NAN;
}

static void run_fixture(const char *family, int R) {
    char dir[4096], weights[4200], config[4200];
    snprintf(dir, sizeof dir, "%s", fixture_path("hf-vit"));
    snprintf(dir + strlen(dir), sizeof dir - strlen(dir), "/%s", family);
    snprintf(weights, sizeof weights, "%s/model.safetensors", dir);
    snprintf(config, sizeof config, "%s/config.json", dir);
    Expected e;
    read_expected(dir, R, &e);
    Vit vit;
    open_on_gpu(&vit, weights, config);
    int L = vit.cfg.n_layers, n = L + 2;
    ck_assert_int_eq(L, e.L);
    int hidden[64];
    for (int i = 0; i < n; i++) hidden[i] = i; /* 0..L, L+1 = last_hidden_state */
    size_t per = (size_t)e.B * e.T_out * e.D;
    float *out = mallocCheck(sizeof(float) * n * per);
    float *pinned = vit_cuda_host_alloc(n * per);
    for (int p = 0; p < PRECISION_N; p++) {
        vit_cuda_set_precision(&vit, p);
        fill_nan(out, n * per);
        vit_cuda_forward(&vit, e.pixels, e.B, e.H, e.W, hidden, n, out);
        for (int i = 0; i < n; i++) {
            double r = rel_error(out + i * per, i <= L ? e.hidden + i * per : e.last, per);
            printf("cuda %-10s %s hidden %d rel err %.3e\n", family, precision_name(p), i, r);
            ck_assert_msg(r <= TOL[p], "%s %s hidden %d: rel err %.3e > %.0e", family, precision_name(p),
                          i, r, TOL[p]);
        }
        /* pinned destination (direct copies) gives the same bytes */
        fill_nan(pinned, n * per);
        vit_cuda_forward(&vit, e.pixels, e.B, e.H, e.W, hidden, n, pinned);
        ck_assert_msg(!memcmp(out, pinned, sizeof(float) * n * per), "%s %s: pinned output differs", family,
                      precision_name(p));
    }
    vit_cuda_host_free(pinned);
    free(out);
    vit_cuda_release(&vit);
    vit_free(&vit);
    free_expected(&e);
}

START_TEST(test_clip) { run_fixture("clip", 0); }
END_TEST
START_TEST(test_dinov2) { run_fixture("dinov2", 0); }
END_TEST
START_TEST(test_dinov2_registers) { run_fixture("dinov2_reg", 4); }
END_TEST
START_TEST(test_siglip) { run_fixture("siglip", 0); }
END_TEST

/* A random ViT-B/16 at 224 px: CUDA fp32 against the CPU backend, layer 5 and the last
 * block, batch 3 then batch 1 (buffer reuse). */
START_TEST(test_vit_b16_vs_cpu) {
    char err[2048], dir[600];
    VitConfig cfg;
    ck_assert_msg(vit_preset_config(&cfg, VIT_CLIP, "vit-b-16", err, sizeof err) == 0, "%s", err);
    snprintf(dir, sizeof dir, "%s", scratch_file("vit-b-16"));
    ck_assert_msg(vit_make_random(&cfg, 7, dir, err, sizeof err) == 0, "%s", err);
    Vit cpu, gpu;
    VitSpec spec;
    vit_spec_init(&spec);
    spec.path = dir;
    ck_assert_msg(vit_open(&cpu, &spec, err, sizeof err) == 0, "%s", err);
    open_on_gpu(&gpu, dir, NULL);
    int B = 3, S = 224, T_out = vit_tokens_out(&cfg, S, S), D = cfg.d_model;
    size_t px_n = (size_t)B * 3 * S * S, per = (size_t)B * T_out * D;
    float *px = mallocCheck(sizeof(float) * px_n);
    uint64_t z = 12345;
    for (size_t i = 0; i < px_n; i++) { /* uniform in [-2, 2): normalized-pixel scale */
        z = z * 6364136223846793005ULL + 1442695040888963407ULL;
        px[i] = (float)((z >> 40) / 16777216.0 * 4.0 - 2.0);
    }
    int hidden[2] = {6, cfg.n_layers}; /* block 5 and the last block */
    float *ref = mallocCheck(sizeof(float) * 2 * per), *out = mallocCheck(sizeof(float) * 2 * per);
    vit_forward(&cpu, px, B, S, S, hidden, 2, ref);
    fill_nan(out, 2 * per);
    vit_cuda_forward(&gpu, px, B, S, S, hidden, 2, out);
    for (int i = 0; i < 2; i++) {
        double r = rel_error(out + i * per, ref + i * per, per);
        printf("cuda vit-b-16 fp32 vs cpu, hidden %d: rel err %.3e\n", hidden[i], r);
        ck_assert_msg(r <= 1e-4, "hidden %d rel err %.3e", hidden[i], r);
    }
    /* batch 1 on the buffers of batch 3: image 0 must come out the same */
    size_t per1 = (size_t)T_out * D;
    float *one = mallocCheck(sizeof(float) * 2 * per1);
    fill_nan(one, 2 * per1);
    vit_cuda_forward(&gpu, px, 1, S, S, hidden, 2, one);
    for (int i = 0; i < 2; i++) {
        double r = rel_error(one + i * per1, out + i * per, per1);
        ck_assert_msg(r <= 1e-5, "batch-1 rerun hidden %d rel err %.3e", hidden[i], r);
    }
    free(one);
    free(px);
    free(ref);
    free(out);
    vit_cuda_release(&gpu);
    vit_free(&gpu);
    vit_free(&cpu);
}
END_TEST
/* vit_cuda_forward_from (the interventions' entry point): given the full forward's hidden
 * state h0, the later states equal the full forward's bit for bit (the same kernels on the
 * same shapes; an invariant, tolerance zero), for every h0 of a random tiny CLIP. */
START_TEST(test_forward_from) {
    char err[2048], dir[600];
    VitConfig cfg;
    ck_assert_msg(vit_preset_config(&cfg, VIT_CLIP, "tiny", err, sizeof err) == 0, "%s", err);
    snprintf(dir, sizeof dir, "%s", scratch_file("tiny-from"));
    ck_assert_msg(vit_make_random(&cfg, 7, dir, err, sizeof err) == 0, "%s", err);
    Vit gpu;
    open_on_gpu(&gpu, dir, NULL);
    int B = 2, S = cfg.image_size, T = vit_tokens_out(&cfg, S, S), D = cfg.d_model, n_h = cfg.n_layers + 2;
    size_t px_n = (size_t)B * 3 * S * S, slot = (size_t)B * T * D;
    float *px = mallocCheck(sizeof(float) * px_n);
    uint64_t z = 777;
    for (size_t i = 0; i < px_n; i++) {
        z = z * 6364136223846793005ULL + 1442695040888963407ULL;
        px[i] = (float)((z >> 40) / 16777216.0 * 4.0 - 2.0);
    }
    int *hidden = mallocCheck(sizeof(int) * n_h);
    for (int h = 0; h < n_h; h++) hidden[h] = h;
    float *full = mallocCheck(sizeof(float) * n_h * slot), *from = mallocCheck(sizeof(float) * n_h * slot);
    vit_cuda_forward(&gpu, px, B, S, S, hidden, n_h, full);
    for (int h0 = 0; h0 <= cfg.n_layers; h0++) {
        fill_nan(from, (size_t)n_h * slot);
        vit_cuda_forward_from(&gpu, full + (size_t)h0 * slot, h0, B, S, S, hidden + h0, n_h - h0, from);
        for (int i = 0; i < n_h - h0; i++)
            ck_assert_msg(memcmp(from + (size_t)i * slot, full + (size_t)(h0 + i) * slot, slot * sizeof(float)) == 0,
                          "from hidden %d: hidden state %d differs from the full forward", h0, h0 + i);
    }
    free(px); free(hidden); free(full); free(from);
    vit_cuda_release(&gpu);
    vit_free(&gpu);
}
END_TEST
#endif

int main(void) {
#ifndef SAEV_CUDA
    printf("skipped: no GPU (built without SAEV_CUDA)\n");
    return 77; /* ctest SKIP_RETURN_CODE: shown as Skipped, never as Passed */
#else
    if (cuda_gpu_count() < 1) {
        printf("skipped: no GPU\n");
        return 77;
    }
    char dev[256];
    cuda_device_describe(dev, sizeof dev);
    printf("device: %s\n", dev);
    Suite *s = suite_create("cuda_vit");
    TCase *tc = tcase_create("forward");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_clip);
    tcase_add_test(tc, test_dinov2);
    tcase_add_test(tc, test_dinov2_registers);
    tcase_add_test(tc, test_siglip);
    tcase_add_test(tc, test_vit_b16_vs_cpu);
    tcase_add_test(tc, test_forward_from);
    suite_add_tcase(s, tc);
    return run_suite(s, 0);
#endif
}
