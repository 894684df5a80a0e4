/*
 * intervene_config.c: the schema of the `intervene:` config section (intervene.h).
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "intervene.h"

static const char *intervene_validate(void *section, const CfgNode *node, char *buf, size_t buflen) {
    (void)node;
    const InterveneConfig *c = section;
    char err[512];
    for (int i = 0; i < c->edits.n; i++) {
        Edit e;
        if (edit_parse(c->edits.s[i], &e, err, sizeof err)) {
            snprintf(buf, buflen, "edits[%d]: \"%s\": %s", i, c->edits.s[i], err);
            return buf;
        }
        edit_free(&e);
    }
    if (!strcmp(c->study, "faithfulness") && c->files.n > 0) {
        snprintf(buf, buflen, "files: the faithfulness study runs on the store's labelled images; image files have no patch labels");
        return buf;
    }
    if (!strcmp(c->study, "faithfulness") && !c->latent_f1) {
        snprintf(buf, buflen, "study: faithfulness needs intervene.latent_f1 (latent_f1.safetensors of `saev probe` with probe.sae on this layer)");
        return buf;
    }
    return NULL;
}

#define F(type_, key_, def_, min_, max_, help_) \
    {.key = #key_, .type = type_, .offset = offsetof(InterveneConfig, key_), .def = def_, .min = min_, .max = max_, .help = help_}
static const CfgField intervene_fields[] = {
    F(CFG_STRING, data, CFG_UNSET, 1, 0, "activation store holding the SAE's layer (and patch labels for @class edits and the study)"),
    F(CFG_INT_LIST, images, "[]", 0, 1e15, "store positions of the images to edit; empty (and no files): the probe's held-out images (probe.json beside it), else all"),
    F(CFG_STRING_LIST, files, "[]", 1, 0, "image files to edit (JPEG, PNG): decoded and preprocessed as the store recorded, the ViT run to the SAE's block"),
    F(CFG_STRING, sae, CFG_UNSET, 1, 0, "SAE checkpoint trained on intervene.layer"),
    F(CFG_INT, layer, CFG_UNSET, -1e6, 1e6, "the SAE's ViT block in the store (negative counts from the end); unset: the store's only layer"),
    F(CFG_STRING_LIST, edits, "[]", 1, 0, "edits: \"S=V\" (set latent S to V) or \"S*A\" (scale it), then @all (default) | @class:C | @patches:I,J,..."),
    F(CFG_STRING, probe, CFG_UNSET, 1, 0, "probe.safetensors of `saev probe` on the SAE's block or a later one"),
    F(CFG_BOOL, save_activations, "false", 1, 0, "also write the probe layer's activations before and after the edits"),
    {.key = "study", .type = CFG_STRING, .offset = offsetof(InterveneConfig, study), .def = "none", .min = 1, .max = 0,
     .choices = "none|faithfulness", .help = "faithfulness: per class, suppress its best-F1 latent on its patches, next to a random latent and a random direction of the same norm"},
    F(CFG_STRING, latent_f1, CFG_UNSET, 1, 0, "study: latent_f1.safetensors of `saev probe` with probe.sae = this SAE on this block"),
    F(CFG_INT, min_patches, "10", 1, 1e12, "study: classes with at least this many patches in the study images"),
    F(CFG_INT, seed, "0", 0, 9.2e18, "study: seed of the random latent and the random direction"),
    F(CFG_STRING, out, "intervene", 1, 0, "output directory"),
};
#undef F

const CfgSchema intervene_config_schema = {"intervene", sizeof(InterveneConfig), intervene_fields,
                                           (int)(sizeof intervene_fields / sizeof intervene_fields[0]), intervene_validate};
