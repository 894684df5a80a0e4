/*
 * test_vit.c: the CPU ViT against transformers.
 *
 * References: tests/fixtures/hf-vit/<family>/expected.safetensors, computed by
 * transformers 5.17 in float64 from the same weights (clip, dinov2 with position-table
 * resampling from a 6x6 to a 4x4 grid, dinov2 with 4 registers, siglip). Every hidden
 * state and last_hidden_state must agree to ||out - ref|| / ||ref|| <= 1e-4 (the
 * fixture README expects ~1e-5 from a float32 implementation). The remaining checks are
 * invariants: F16/BF16 copies of the weights load to exactly the rounded float32 values
 * and stay within their precision of the reference; an early stop gives the same values
 * as the full forward and never touches later blocks; missing and mis-shaped tensors
 * are reported by name.
 */
#include <check.h>
#include "testutil.h"
#include "vit_expected.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dtype.h"
#include "safetensors.h"
#include "vit/vit.h"

#define REL_TOL 1e-4


static void fixture_dir(const char *family, char *out, size_t len) { snprintf(out, len, "%s/%s", fixture_path("hf-vit"), family); }

static double rel_err(const float *a, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return sqrt(num / den);
}

static void open_model(Vit *vit, const char *weights, const char *config) {
    VitSpec spec;
    vit_spec_init(&spec);
    spec.path = weights;
    spec.config_path = config;
    char err[2048];
    ck_assert_msg(vit_open(vit, &spec, err, sizeof err) == 0, "%s", err);
}

/* Runs every hidden state plus last_hidden_state; returns the worst relative error. */
static double check_model(Vit *vit, const Expected *e, const char *label, double tol) {
    int L = vit->cfg.n_layers, n = L + 2;
    ck_assert_int_eq(L, e->L);
    ck_assert_int_eq(vit_tokens_out(&vit->cfg, e->H, e->W), e->T_out);
    int *hidden = malloc(sizeof(int) * n);
    for (int i = 0; i < n; i++) hidden[i] = i; /* 0..L, then L+1 = last_hidden_state */
    size_t per = (size_t)e->B * e->T_out * e->D;
    float *out = malloc(sizeof(float) * n * per);
    vit_forward(vit, e->pixels, e->B, e->H, e->W, hidden, n, out);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        const float *ref = i <= L ? e->hidden + i * per : e->last;
        double r = rel_err(out + i * per, ref, per);
        printf("%-28s %s %-2d rel err %.3e\n", label, i <= L ? "hidden_states" : "last_hidden  ", i, r);
        ck_assert_msg(r <= tol, "%s hidden %d: relative error %.3e > %.1e", label, i, r, tol);
        if (!(r <= worst)) worst = r; /* the assert above already failed on NaN */
    }
    free(hidden);
    free(out);
    return worst;
}

static void run_fixture(const char *family, const char *weights_name, int R) {
    char dir[1536], weights[4096], config[4096], label[256];
    fixture_dir(family, dir, sizeof dir);
    snprintf(weights, sizeof weights, "%s/%s", dir, weights_name);
    snprintf(config, sizeof config, "%s/config.json", dir);
    Expected e;
    read_expected(dir, R, &e);
    Vit vit;
    open_model(&vit, weights, config);
    ck_assert_int_eq(vit.cfg.n_registers, R);
    snprintf(label, sizeof label, "%s/%s", family, weights_name);
    check_model(&vit, &e, label, REL_TOL);
    vit_free(&vit);
    free_expected(&e);
}

START_TEST(test_clip_transformers) { run_fixture("clip", "model.safetensors", 0); }
END_TEST
START_TEST(test_clip_openclip) { run_fixture("clip", "open_clip_model.safetensors", 0); }
END_TEST
START_TEST(test_dinov2) { run_fixture("dinov2", "model.safetensors", 0); }
END_TEST
START_TEST(test_dinov2_registers) { run_fixture("dinov2_reg", "model.safetensors", 4); }
END_TEST
START_TEST(test_siglip) { run_fixture("siglip", "model.safetensors", 0); }
END_TEST

/* ---- re-saved copies of a fixture's weights ---- */

typedef enum { EDIT_NONE, EDIT_DROP, EDIT_RESHAPE } Edit;

/* Copies src to dst with every float tensor stored as `dtype`, names given `prefix`,
 * optional extra tensors a hub checkpoint carries (text_model.*, a projection head),
 * and one tensor dropped or given a wrong shape. */
static void resave(const char *src, const char *dst, StDtype dtype, const char *prefix, int add_extras, Edit edit, const char *victim) {
    SafeTensors st;
    st_open_or_die(&st, src);
    StWriter w;
    st_writer_init(&w);
    void **bufs = calloc(st.n_tensors + 2, sizeof(void *));
    char **names = calloc(st.n_tensors + 2, sizeof(char *));
    for (int i = 0; i < st.n_tensors; i++) {
        const StTensor *t = &st.tensors[i];
        if (edit == EDIT_DROP && !strcmp(t->name, victim)) continue;
        float *f = malloc(sizeof(float) * t->numel);
        st_to_f32(t, f);
        int64_t shape[ST_MAX_DIMS];
        memcpy(shape, t->shape, sizeof shape);
        int ndim = t->ndim;
        int64_t numel = t->numel;
        if (edit == EDIT_RESHAPE && !strcmp(t->name, victim)) { /* drop the last column: [a, b] -> [a, b-1] */
            shape[ndim - 1] -= 1;
            numel = numel / t->shape[ndim - 1] * shape[ndim - 1];
        }
        void *data = f;
        if (dtype != ST_F32) {
            uint16_t *h = malloc(sizeof(uint16_t) * numel);
            for (int64_t k = 0; k < numel; k++) h[k] = dtype == ST_F16 ? f32_to_f16(f[k]) : f32_to_bf16(f[k]);
            free(f);
            data = h;
        }
        bufs[i] = data;
        names[i] = malloc(strlen(prefix) + strlen(t->name) + 1);
        sprintf(names[i], "%s%s", prefix, t->name);
        st_writer_add(&w, names[i], dtype, ndim, shape, data);
    }
    static float extra[6] = {1, 2, 3, 4, 5, 6};
    if (add_extras) {
        int64_t s2[2] = {2, 3};
        st_writer_add(&w, "text_model.embeddings.token_embedding.weight", ST_F32, 2, s2, extra);
        st_writer_add(&w, "visual_projection.weight", ST_F32, 2, s2, extra);
    }
    st_writer_write_or_die(&w, dst);
    st_writer_free(&w);
    for (int i = 0; i < st.n_tensors; i++) {
        free(bufs[i]);
        free(names[i]);
    }
    free(bufs);
    free(names);
    st_close(&st);
}

static void tmp_path(char *out, size_t len, const char *name) {
    snprintf(out, len, "/tmp/saev_test_vit_%d_%s", (int)getpid(), name);
}

/* F16 and BF16 copies: the loaded weights must equal the float32 weights rounded to
 * that type exactly (conversion to float32 is exact), and the outputs stay within a
 * few unit roundoffs of the reference: u = 2^-11 (F16) and 2^-8 (BF16); the bound
 * 4u allows for the weights' rounding errors adding up over the 3 blocks. */
static void half_precision(StDtype dtype, double tol) {
    const char *families[] = {"clip", "dinov2", "dinov2_reg", "siglip"};
    int regs[] = {0, 0, 4, 0};
    for (int f = 0; f < 4; f++) {
        char dir[1536], src[4096], config[4096], dst[4096], label[256];
        fixture_dir(families[f], dir, sizeof dir);
        snprintf(src, sizeof src, "%s/model.safetensors", dir);
        snprintf(config, sizeof config, "%s/config.json", dir);
        tmp_path(dst, sizeof dst, dtype == ST_F16 ? "f16.safetensors" : "bf16.safetensors");
        resave(src, dst, dtype, "", 0, EDIT_NONE, NULL);
        Vit full, half;
        open_model(&full, src, config);
        open_model(&half, dst, config);
        ck_assert_uint_eq(full.n_params, half.n_params);
        for (size_t i = 0; i < full.n_params; i++) {
            float r = dtype == ST_F16 ? f16_to_f32(f32_to_f16(full.param_memory[i])) : bf16_to_f32(f32_to_bf16(full.param_memory[i]));
            ck_assert_msg(r == half.param_memory[i], "%s: parameter %zu loads as %g, expected %g", families[f], i, half.param_memory[i], r);
        }
        Expected e;
        read_expected(dir, regs[f], &e);
        snprintf(label, sizeof label, "%s %s", families[f], dtype == ST_F16 ? "F16" : "BF16");
        double worst = check_model(&half, &e, label, tol);
        printf("%s: worst relative error %.3e (tolerance %.1e)\n", label, worst, tol);
        free_expected(&e);
        vit_free(&full);
        vit_free(&half);
        unlink(dst);
    }
}

START_TEST(test_f16) { half_precision(ST_F16, 4.0 / 2048); }
END_TEST
START_TEST(test_bf16) { half_precision(ST_BF16, 4.0 / 256); }
END_TEST

/* Hub layout: "vision_model." prefix plus text_model.* and a projection head. */
START_TEST(test_vision_model_prefix) {
    char dir[1536], src[4096], config[4096], dst[4096];
    fixture_dir("clip", dir, sizeof dir);
    snprintf(src, sizeof src, "%s/model.safetensors", dir);
    snprintf(config, sizeof config, "%s/config.json", dir);
    tmp_path(dst, sizeof dst, "prefixed.safetensors");
    resave(src, dst, ST_F32, "vision_model.", 1, EDIT_NONE, NULL);
    Expected e;
    read_expected(dir, 0, &e);
    Vit vit;
    open_model(&vit, dst, config);
    check_model(&vit, &e, "clip/vision_model.*", REL_TOL);
    vit_free(&vit);
    free_expected(&e);
    unlink(dst);
}
END_TEST

static void expect_load_error(Edit edit, const char *victim, const char *must1, const char *must2) {
    char dir[1536], src[4096], config[4096], dst[4096], err[2048];
    fixture_dir("clip", dir, sizeof dir);
    snprintf(src, sizeof src, "%s/model.safetensors", dir);
    snprintf(config, sizeof config, "%s/config.json", dir);
    tmp_path(dst, sizeof dst, "broken.safetensors");
    resave(src, dst, ST_F32, "", 0, edit, victim);
    VitSpec spec;
    vit_spec_init(&spec);
    spec.path = dst;
    spec.config_path = config;
    Vit vit;
    ck_assert_int_eq(vit_open(&vit, &spec, err, sizeof err), -1);
    printf("expected error: %s\n", err);
    ck_assert_msg(strstr(err, victim) && strstr(err, must1) && strstr(err, must2), "message lacks the tensor or the problem: %s", err);
    ck_assert_ptr_null(vit.param_memory);
    unlink(dst);
}

START_TEST(test_missing_tensor) { expect_load_error(EDIT_DROP, "encoder.layers.1.mlp.fc2.weight", "missing", "[48, 96]"); }
END_TEST
START_TEST(test_misshaped_tensor) { expect_load_error(EDIT_RESHAPE, "encoder.layers.2.self_attn.k_proj.weight", "[48, 47]", "expected [48, 48]"); }
END_TEST

/* Early stop: asking for block 1 alone gives bit-identical values to the full forward,
 * and block 2's weights (set to NaN) are never read. */
START_TEST(test_early_stop) {
    char dir[1536], weights[4096], config[4096], err[1024];
    const char *families[] = {"clip", "dinov2_reg", "siglip"};
    int regs[] = {0, 4, 0};
    for (int f = 0; f < 3; f++) {
        fixture_dir(families[f], dir, sizeof dir);
        snprintf(weights, sizeof weights, "%s/model.safetensors", dir);
        snprintf(config, sizeof config, "%s/config.json", dir);
        Expected e;
        read_expected(dir, regs[f], &e);
        Vit vit;
        open_model(&vit, weights, config);
        int L = vit.cfg.n_layers, all[8], n_all = L + 2;
        for (int i = 0; i < n_all; i++) all[i] = i;
        size_t per = (size_t)e.B * e.T_out * e.D;
        float *full = malloc(sizeof(float) * n_all * per), *part = malloc(sizeof(float) * 2 * per);
        vit_forward(&vit, e.pixels, e.B, e.H, e.W, all, n_all, full);
        int blocks[2] = {-2, 0}, hidden[2];
        ck_assert_int_eq(vit_resolve_layers(&vit.cfg, blocks, 2, hidden, err, sizeof err), 0);
        ck_assert_int_eq(hidden[0], L - 1); /* block -2 = block L-2 = hidden state L-1 */
        ck_assert_int_eq(hidden[1], 1);
        size_t D = vit.cfg.d_model, F = vit.cfg.d_mlp;
        for (size_t i = 0; i < 3 * D * D; i++) vit.params.qkv_w[(size_t)(L - 1) * 3 * D * D + i] = NAN;
        for (size_t i = 0; i < F * D; i++) vit.params.fc1_w[(size_t)(L - 1) * F * D + i] = NAN;
        vit_forward(&vit, e.pixels, e.B, e.H, e.W, hidden, 2, part);
        ck_assert_msg(!memcmp(part, full + (size_t)(L - 1) * per, sizeof(float) * per), "%s: early stop differs from the full forward", families[f]);
        ck_assert_msg(!memcmp(part + per, full + per, sizeof(float) * per), "%s: block 0 differs", families[f]);
        free(full);
        free(part);
        vit_free(&vit);
        free_expected(&e);
    }
}
END_TEST

START_TEST(test_layer_resolution) {
    VitConfig c;
    vit_config_defaults(&c, VIT_CLIP);
    int blocks[4] = {-1, -12, 0, 11}, hidden[4];
    char err[512];
    ck_assert_int_eq(vit_resolve_layers(&c, blocks, 4, hidden, err, sizeof err), 0);
    ck_assert_int_eq(hidden[0], 12);
    ck_assert_int_eq(hidden[1], 1);
    ck_assert_int_eq(hidden[2], 1);
    ck_assert_int_eq(hidden[3], 12);
    ck_assert_int_eq(vit_deepest_block(&c, hidden, 4), 11);
    int bad[1] = {12};
    ck_assert_int_eq(vit_resolve_layers(&c, bad, 1, hidden, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "layer 12"));
    bad[0] = -13;
    ck_assert_int_eq(vit_resolve_layers(&c, bad, 1, hidden, err, sizeof err), -1);
}
END_TEST

/* Batch invariance: the same image alone and inside a batch gives the same values
 * (buffers resized between calls). */
START_TEST(test_batch_reuse) {
    char dir[1536], weights[4096], config[4096];
    fixture_dir("dinov2", dir, sizeof dir);
    snprintf(weights, sizeof weights, "%s/model.safetensors", dir);
    snprintf(config, sizeof config, "%s/config.json", dir);
    Expected e;
    read_expected(dir, 0, &e);
    Vit vit;
    open_model(&vit, weights, config);
    int hidden[1] = {VIT_LAST_HIDDEN(&vit.cfg)};
    size_t per_img = (size_t)e.T_out * e.D, img = (size_t)3 * e.H * e.W;
    float *one = malloc(sizeof(float) * per_img), *two = malloc(sizeof(float) * 2 * per_img);
    vit_forward(&vit, e.pixels + img, 1, e.H, e.W, hidden, 1, one);
    vit_forward(&vit, e.pixels, 2, e.H, e.W, hidden, 1, two);
    ck_assert_double_le(rel_err(one, two + per_img, per_img), 1e-6);
    ck_assert_double_le(rel_err(two + per_img, e.last + per_img, per_img), REL_TOL);
    free(one);
    free(two);
    vit_free(&vit);
    free_expected(&e);
}
END_TEST

/* Hub configs: full CLIP / SigLIP configs nest the tower under vision_config and leave
 * defaults out. Expected values: the published configs of openai/clip-vit-base-patch16
 * and google/siglip-base-patch16-224 and transformers' class defaults (CLIPVisionConfig:
 * quick_gelu, eps 1e-5; SiglipVisionConfig: gelu_pytorch_tanh, eps 1e-6, 12 blocks). */
static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

START_TEST(test_hub_configs) {
    char path[256], err[1024];
    tmp_path(path, sizeof path, "config.json");
    VitConfig c;
    write_text(path, "{\"model_type\": \"clip\", \"text_config\": {\"hidden_size\": 512}, \"vision_config\": {\"hidden_size\": 768, "
                     "\"intermediate_size\": 3072, \"num_attention_heads\": 12, \"num_hidden_layers\": 12, \"patch_size\": 16, \"image_size\": 224}}");
    ck_assert_msg(vit_config_from_json(&c, path, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(c.family, VIT_CLIP);
    ck_assert_int_eq(c.d_model, 768);
    ck_assert_int_eq(c.patch_size, 16);
    ck_assert_int_eq(c.act, VIT_ACT_QUICK_GELU);
    ck_assert_double_eq(c.ln_eps, 1e-5);
    write_text(path, "{\"model_type\": \"siglip\", \"vision_config\": {\"patch_size\": 16, \"image_size\": 224}}");
    ck_assert_msg(vit_config_from_json(&c, path, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(c.family, VIT_SIGLIP);
    ck_assert_int_eq(c.n_layers, 12);
    ck_assert_int_eq(c.d_mlp, 3072);
    ck_assert_int_eq(c.act, VIT_ACT_GELU_TANH);
    ck_assert_double_eq(c.ln_eps, 1e-6);
    write_text(path, "{\"model_type\": \"dinov2_with_registers\", \"hidden_size\": 768, \"mlp_ratio\": 4, \"patch_size\": 14, \"image_size\": 518}");
    ck_assert_msg(vit_config_from_json(&c, path, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(c.n_registers, 4);
    ck_assert_int_eq(c.d_mlp, 3072);
    ck_assert_int_eq(c.pos_antialias, 1);
    write_text(path, "{\"model_type\": \"vit\"}");
    ck_assert_int_eq(vit_config_from_json(&c, path, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "\"vit\" is not supported"));
    write_text(path, "{\"model_type\": \"dinov2\", \"hidden_size\": 770, \"num_attention_heads\": 12}");
    ck_assert_int_eq(vit_config_from_json(&c, path, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "multiple of num_attention_heads"));
    write_text(path, "{\"model_type\": \"clip\", \"vision_config\": ");
    ck_assert_int_eq(vit_config_from_json(&c, path, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "malformed JSON"));
    unlink(path);
}
END_TEST

int main(void) {
    Suite *s = suite_create("vit");
    TCase *tc = tcase_create("vit");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_clip_transformers);
    tcase_add_test(tc, test_clip_openclip);
    tcase_add_test(tc, test_dinov2);
    tcase_add_test(tc, test_dinov2_registers);
    tcase_add_test(tc, test_siglip);
    tcase_add_test(tc, test_f16);
    tcase_add_test(tc, test_bf16);
    tcase_add_test(tc, test_vision_model_prefix);
    tcase_add_test(tc, test_missing_tensor);
    tcase_add_test(tc, test_misshaped_tensor);
    tcase_add_test(tc, test_early_stop);
    tcase_add_test(tc, test_layer_resolution);
    tcase_add_test(tc, test_batch_reuse);
    tcase_add_test(tc, test_hub_configs);
    suite_add_tcase(s, tc);
    return run_suite(s, 1);
}
