/*
 * vit_make.c: random ViT checkpoints in transformers layout (model.safetensors plus
 * config.json), for the demo, tests and benchmarks when no real weights are at hand.
 *
 * Scales keep activations O(1) through every block, like a trained model: linear
 * weights ~ N(0, 1/fan_in), LayerNorm gains ~ 1 + N(0, 0.1^2), biases and LayerNorm
 * shifts ~ N(0, 0.02^2), CLS/register/position rows ~ N(0, 0.5^2), LayerScale ~ 0.1.
 * The stream is splitmix64 + Box-Muller, so a seed gives the same file everywhere.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fsutil.h"
#include "check.h"
#include "vit.h"

int vit_preset_config(VitConfig *cfg, VitFamily family, const char *preset, char *err, size_t errlen) {
    vit_config_defaults(cfg, family);
    if (!strcmp(preset, "tiny")) {
        cfg->d_model = 48; cfg->n_layers = 3; cfg->n_heads = 4; cfg->d_mlp = 96; cfg->patch_size = 8; cfg->image_size = 32;
    } else if (!strcmp(preset, "vit-s-16")) { /* ViT-S/16 (DINOv2-S sizes): the demo's model */
        cfg->d_model = 384; cfg->n_layers = 12; cfg->n_heads = 6; cfg->d_mlp = 1536; cfg->patch_size = 16; cfg->image_size = 224;
    } else if (!strcmp(preset, "vit-b-16")) {
        cfg->d_model = 768; cfg->n_layers = 12; cfg->n_heads = 12; cfg->d_mlp = 3072; cfg->patch_size = 16; cfg->image_size = 224;
    } else if (!strcmp(preset, "vit-l-14")) {
        cfg->d_model = 1024; cfg->n_layers = 24; cfg->n_heads = 16; cfg->d_mlp = 4096; cfg->patch_size = 14; cfg->image_size = 224;
    } else {
        snprintf(err, errlen, "unknown preset \"%s\" (tiny, vit-s-16, vit-b-16, vit-l-14)", preset);
        return -1;
    }
    return 0;
}

typedef struct { uint64_t state; int have_spare; double spare; } Rng;

static uint64_t splitmix64(Rng *r) {
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double normal(Rng *r) {
    if (r->have_spare) { r->have_spare = 0; return r->spare; }
    double u1 = ((splitmix64(r) >> 11) + 1.0) / 9007199254740993.0, u2 = (splitmix64(r) >> 11) / 9007199254740992.0;
    double m = sqrt(-2.0 * log(u1));
    r->spare = m * sin(2 * M_PI * u2);
    r->have_spare = 1;
    return m * cos(2 * M_PI * u2);
}

static void fill(Rng *r, float *p, size_t n, double mean, double std) {
    if (!p) return;
    for (size_t i = 0; i < n; i++) p[i] = (float)(mean + std * normal(r));
}

static int write_config_json(const VitConfig *c, const char *path, char *err, size_t errlen) {
    cJSON *o = cJSON_CreateObject();
    const char *type = c->family == VIT_CLIP ? "clip_vision_model" : c->family == VIT_SIGLIP ? "siglip_vision_model"
                       : c->n_registers ? "dinov2_with_registers" : "dinov2";
    cJSON_AddStringToObject(o, "model_type", type);
    cJSON_AddNumberToObject(o, "hidden_size", c->d_model);
    cJSON_AddNumberToObject(o, "num_hidden_layers", c->n_layers);
    cJSON_AddNumberToObject(o, "num_attention_heads", c->n_heads);
    if (c->family == VIT_DINOV2) {
        cJSON_AddNumberToObject(o, "mlp_ratio", (double)c->d_mlp / c->d_model);
        cJSON_AddBoolToObject(o, "qkv_bias", c->qkv_bias);
        cJSON_AddNumberToObject(o, "layerscale_value", 0.1);
        cJSON_AddBoolToObject(o, "use_swiglu_ffn", 0);
        if (c->n_registers) cJSON_AddNumberToObject(o, "num_register_tokens", c->n_registers);
    } else {
        cJSON_AddNumberToObject(o, "intermediate_size", c->d_mlp);
    }
    cJSON_AddNumberToObject(o, "patch_size", c->patch_size);
    cJSON_AddNumberToObject(o, "image_size", c->image_size);
    cJSON_AddNumberToObject(o, "num_channels", c->n_channels);
    cJSON_AddStringToObject(o, "hidden_act", vit_act_name(c->act));
    cJSON_AddNumberToObject(o, "layer_norm_eps", c->ln_eps);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    size_t len = strlen(text);
    text[len] = '\n'; /* cJSON_Print leaves room for the NUL; the file wants a final newline instead */
    int rc = write_file_atomic(path, text, len + 1, err, errlen);
    free(text);
    return rc;
}


int vit_make_random(const VitConfig *cfg, uint64_t seed, const char *dir, char *err, size_t errlen) {
    if (vit_config_check(cfg, err, errlen) || make_dirs(dir, err, errlen)) return -1;
    Vit vit;
    memset(&vit, 0, sizeof vit);
    vit_alloc_params(&vit, cfg);
    const VitConfig *c = &vit.cfg;
    VitParams *p = &vit.params;
    size_t D = c->d_model, F = c->d_mlp, L = c->n_layers, K = (size_t)c->n_channels * c->patch_size * c->patch_size;
    Rng r = {seed, 0, 0};
    fill(&r, p->patch_w, D * K, 0, 1 / sqrt((double)K));
    if (c->family != VIT_CLIP) fill(&r, p->patch_b, D, 0, 0.02); /* CLIP's conv has no bias */
    fill(&r, p->cls, D, 0, 0.5);
    fill(&r, p->registers, (size_t)c->n_registers * D, 0, 0.5);
    fill(&r, p->pos, (size_t)vit.n_pos * D, 0, 0.5);
    fill(&r, p->pre_ln_w, D, 1, 0.1);
    fill(&r, p->pre_ln_b, D, 0, 0.02);
    fill(&r, p->ln1_w, L * D, 1, 0.1);
    fill(&r, p->ln1_b, L * D, 0, 0.02);
    fill(&r, p->qkv_w, L * 3 * D * D, 0, 1 / sqrt((double)D));
    if (c->qkv_bias) fill(&r, p->qkv_b, L * 3 * D, 0, 0.02);
    fill(&r, p->proj_w, L * D * D, 0, 1 / sqrt((double)D));
    fill(&r, p->proj_b, L * D, 0, 0.02);
    fill(&r, p->ls1, L * D, 0.1, 0.01);
    fill(&r, p->ls2, L * D, 0.1, 0.01);
    fill(&r, p->ln2_w, L * D, 1, 0.1);
    fill(&r, p->ln2_b, L * D, 0, 0.02);
    fill(&r, p->fc1_w, L * F * D, 0, 1 / sqrt((double)D));
    fill(&r, p->fc1_b, L * F, 0, 0.02);
    fill(&r, p->fc2_w, L * D * F, 0, 1 / sqrt((double)F));
    fill(&r, p->fc2_b, L * D, 0, 0.02);
    fill(&r, p->final_ln_w, D, 1, 0.1);
    fill(&r, p->final_ln_b, D, 0, 0.02);
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int rc = vit_save(&vit, path, err, errlen);
    if (!rc) {
        snprintf(path, sizeof path, "%s/config.json", dir);
        rc = write_config_json(c, path, err, errlen);
    }
    free(vit.param_memory);
    return rc;
}
