/*
 * test_vit_from.c: running the ViT from block L given block L's input (vit_forward_from,
 * the interventions' entry point) equals the full forward's later hidden states bit for
 * bit. Reference: vit_forward itself on the same batch (same shapes, so the same GEMM
 * blocking and thread split); an invariant, so the tolerance is zero. Random tiny models
 * of the three families (no register tokens: the stored stream is the whole stream).
 */
#include "check.h"
#include "testutil.h"
#include "vit/vit.h"

static void check_family(VitFamily family) {
    VitConfig cfg;
    char err[1024];
    ck_assert_int_eq(vit_preset_config(&cfg, family, "tiny", err, sizeof err), 0);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/%s", scratch_dir(), vit_family_name(family));
    ck_assert_msg(vit_make_random(&cfg, 7, dir, err, sizeof err) == 0, "%s", err);
    VitSpec spec;
    vit_spec_init(&spec);
    spec.path = dir;
    Vit vit;
    ck_assert_msg(vit_open(&vit, &spec, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(vit_set_device(&vit, DEVICE_CPU, err, sizeof err), 0);
    int B = 2, H = vit.cfg.image_size, W = vit.cfg.image_size, C = vit.cfg.n_channels;
    int n_h = VIT_LAST_HIDDEN(&vit.cfg) + 1, T = vit_tokens_out(&vit.cfg, H, W), D = vit.cfg.d_model;
    ck_assert_int_eq(T, vit_tokens_internal(&vit.cfg, H, W)); /* no registers */
    float *pixels = malloc(sizeof(float) * B * C * H * W);
    uint64_t s = 12345;
    for (int i = 0; i < B * C * H * W; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        pixels[i] = (float)((s >> 40) / (double)(1 << 24)) * 4.0f - 2.0f;
    }
    size_t slot = (size_t)B * T * D;
    int *hidden = malloc(sizeof(int) * n_h);
    for (int h = 0; h < n_h; h++) hidden[h] = h;
    float *full = malloc(sizeof(float) * n_h * slot), *from = malloc(sizeof(float) * n_h * slot);
    vit_forward(&vit, pixels, B, H, W, hidden, n_h, full);
    for (int h0 = 0; h0 <= vit.cfg.n_layers; h0++) {
        int n = n_h - h0;
        vit_forward_from(&vit, full + (size_t)h0 * slot, h0, B, H, W, hidden + h0, n, from);
        for (int i = 0; i < n; i++)
            ck_assert_msg(memcmp(from + (size_t)i * slot, full + (size_t)(h0 + i) * slot, slot * sizeof(float)) == 0,
                          "%s: from hidden %d, hidden state %d differs from the full forward", vit_family_name(family), h0, h0 + i);
    }
    free(pixels); free(hidden); free(full); free(from);
    vit_free(&vit);
}

START_TEST(test_clip) { check_family(VIT_CLIP); }
END_TEST
START_TEST(test_dinov2) { check_family(VIT_DINOV2); }
END_TEST
START_TEST(test_siglip) { check_family(VIT_SIGLIP); }
END_TEST

int main(void) {
    Suite *s = suite_create("vit_from");
    TCase *tc = tcase_create("vit_from");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_clip);
    tcase_add_test(tc, test_dinov2);
    tcase_add_test(tc, test_siglip);
    suite_add_tcase(s, tc);
    return run_suite(s, 1);
}
