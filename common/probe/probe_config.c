/*
 * probe_config.c: the schema of the `probe:` config section (probe.h).
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "probe.h"

static const char *probe_validate(void *section, const CfgNode *node, char *buf, size_t buflen) {
    (void)node;
    const ProbeConfig *c = section;
    if (!strcmp(c->features, "sae") && !c->sae) {
        snprintf(buf, buflen, "features: sae needs probe.sae (an SAE checkpoint)");
        return buf;
    }
    return NULL;
}

#define F(type_, key_, def_, min_, max_, help_) \
    {.key = #key_, .type = type_, .offset = offsetof(ProbeConfig, key_), .def = def_, .min = min_, .max = max_, .help = help_}
#define C(key_, def_, choices_, help_) \
    {.key = #key_, .type = CFG_STRING, .offset = offsetof(ProbeConfig, key_), .def = def_, .min = 1, .max = 0, .choices = choices_, .help = help_}
static const CfgField probe_fields[] = {
    F(CFG_STRING, data, CFG_UNSET, 1, 0, "activation store the probe reads (labels: `label` per image, `patch_labels` per patch)"),
    F(CFG_INT, layer, CFG_UNSET, -1e6, 1e6, "ViT block in the store (negative counts from the ViT's end); unset: the store's only layer"),
    C(target, "class", "class|patch", "class: one row per image and its label; patch: one row per patch token and its patch label"),
    C(pool, "cls", "cls|mean", "class targets: the CLS token's features, or the mean over the patch tokens"),
    C(features, "activations", "activations|sae", "the layer's activations, or the latent codes of probe.sae"),
    F(CFG_STRING, sae, CFG_UNSET, 1, 0, "SAE checkpoint on this layer: features for features: sae, and semantic probing (per-latent F1) whenever given"),
    F(CFG_FLOAT, l2, "1.0e-4", 0, 1e12, "L2 weight lambda: loss = mean cross-entropy + lambda/2 ||W||^2 (scikit-learn's C = 1/(lambda N))"),
    F(CFG_FLOAT, tol, "1.0e-6", 0, 1, "stopping rule: converged when max |gradient of the loss| <= tol"),
    F(CFG_INT, max_iter, "2000", 1, 1e9, "L-BFGS iterations at most (reported as not converged when reached)"),
    F(CFG_INT, history, "10", 1, 1000, "L-BFGS memory (correction pairs)"),
    F(CFG_FLOAT, held_out, "0.2", 0, 0.95, "fraction of the images held out for evaluation (drawn with probe.seed)"),
    F(CFG_INT, seed, "0", 0, 9.2e18, "seed of the train / held-out split"),
    F(CFG_INT, ignore_label, "-1", -1, 1e9, "patch targets: this patch label is left out (-1: none)"),
    F(CFG_INT, top_latents, "5", 0, 1e6, "semantic probing: best latents (by F1) listed per class in probe.json"),
    F(CFG_STRING, class_names, CFG_UNSET, 1, 0, "optional text file of class names, one per line: \"ID NAME\" or \"NAME\" (line i = class i)"),
    F(CFG_STRING, out, "probe", 1, 0, "output directory: probe.safetensors, probe.json, confusion.svg, latent_f1.safetensors"),
};
#undef F
#undef C

const CfgSchema probe_config_schema = {"probe", sizeof(ProbeConfig), probe_fields, (int)(sizeof probe_fields / sizeof probe_fields[0]),
                                       probe_validate};
