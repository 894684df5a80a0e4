/*
 * visuals_config.c: the schema of the `visuals:` section (VisualsConfig in visuals.h) and
 * its cross-key checks.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>

#include "visuals.h"

#define F(type_, key_, def_, min_, max_, help_) \
    {.key = #key_, .type = type_, .offset = offsetof(VisualsConfig, key_), .def = def_, .min = min_, .max = max_, .help = help_}
static const CfgField visuals_fields[] = {
    F(CFG_STRING_LIST, sae, "[]", 1, 0, "SAE checkpoints (sae.safetensors) or run directories (every sae.safetensors under them), as evaluate.sae"),
    F(CFG_STRING, data, CFG_UNSET, 1, 0, "the activation store directory the latents are computed on"),
    F(CFG_INT, layer, CFG_UNSET, -1e6, 1e6, "ViT block as recorded in the store's `layers` (negative counts from the ViT's end); unset: the store's only layer"),
    {.key = "tokens", .type = CFG_STRING, .offset = offsetof(VisualsConfig, tokens), .def = "patches", .min = 1, .max = 0,
     .choices = "patches|all|cls", .help = "rows scored per image: patch tokens, all tokens (CLS too), or CLS only (as train.tokens)"},
    F(CFG_INT, top_k, "25", 1, 10000, "top images kept per latent"),
    F(CFG_INT, n_render, "400", 0, 1e9, "latents rendered besides visuals.latents: a seeded sample of those inside both ranges"),
    F(CFG_INT_LIST, latents, "[]", 0, 1e9, "latent ids always rendered"),
    F(CFG_FLOAT_LIST, log_freq_range, "[-6, -2]", -100, 100, "open interval on log10(frequency) for the sampled latents"),
    F(CFG_FLOAT_LIST, log_value_range, "[-1, 1]", -100, 100, "open interval on log10(mean value) for the sampled latents"),
    F(CFG_INT, seed, "0", 0, 9.2e18, "seed of the sample of rendered latents"),
    F(CFG_INT, batch_size, "1024", 1, 1 << 20, "rows per rank per forward pass, rounded to whole images (memory: batch_size x d_sae floats)"),
    F(CFG_STRING, out, CFG_UNSET, 1, 0, "output folder (one SAE) or parent of <i>/ per SAE; unset: visuals/ beside each checkpoint"),
};
#undef F

static const char *validate_visuals(void *obj, const CfgNode *node, char *buf, size_t len) {
    (void)node;
    const VisualsConfig *c = obj;
    const CfgList *r[2] = {&c->log_freq_range, &c->log_value_range};
    const char *name[2] = {"log_freq_range", "log_value_range"};
    for (int i = 0; i < 2; i++) {
        if (r[i]->n != 2 || !(r[i]->f[0] < r[i]->f[1])) {
            snprintf(buf, len, "%s must be [low, high] with low < high", name[i]);
            return buf;
        }
    }
    return NULL;
}

const CfgSchema visuals_config_schema = {"visuals", sizeof(VisualsConfig), visuals_fields,
                                         (int)(sizeof visuals_fields / sizeof visuals_fields[0]), validate_visuals};
