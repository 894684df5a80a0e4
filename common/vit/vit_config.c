/*
 * vit_config.c: a ViT architecture from a transformers config.json.
 *
 * model_type picks the family: clip_vision_model / clip, dinov2 / dinov2_with_registers,
 * siglip_vision_model / siglip. Full CLIP and SigLIP configs keep the vision tower's
 * settings under "vision_config"; keys a hub config leaves out take transformers'
 * defaults for that class (vit_config_defaults), as transformers itself does.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fsutil.h"
#include "vit.h"

/* Integer field: absent keeps *out; present must be a whole number in [lo, hi]. */
static int get_int(const cJSON *obj, const char *key, int *out, int lo, int hi, const char *path, char *err, size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi) {
        snprintf(err, errlen, "%s: \"%s\" must be a whole number in [%d, %d]", path, key, lo, hi);
        return -1;
    }
    *out = (int)v->valuedouble;
    return 0;
}

int vit_config_from_json(VitConfig *cfg, const char *path, char *err, size_t errlen) {
    char *text = read_file(path, NULL, err, errlen);
    if (!text) return -1;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root || !cJSON_IsObject(root)) {
        snprintf(err, errlen, "%s: not a JSON object%s", path, root ? "" : " (malformed JSON)");
        cJSON_Delete(root);
        return -1;
    }
    int rc = -1;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (!cJSON_IsString(mt)) {
        snprintf(err, errlen, "%s: no \"model_type\" string; cannot tell the model family", path);
        goto done;
    }
    const char *type = mt->valuestring;
    const cJSON *vc = root;
    VitFamily family;
    int registers = 0, antialias = 0;
    if (!strcmp(type, "clip_vision_model") || !strcmp(type, "clip")) family = VIT_CLIP;
    else if (!strcmp(type, "siglip_vision_model") || !strcmp(type, "siglip")) family = VIT_SIGLIP;
    else if (!strcmp(type, "dinov2")) family = VIT_DINOV2;
    else if (!strcmp(type, "dinov2_with_registers")) {
        family = VIT_DINOV2;
        registers = 4;  /* Dinov2WithRegistersConfig default */
        antialias = 1;  /* its interpolate_pos_encoding passes antialias=True */
    } else {
        snprintf(err, errlen, "%s: model_type \"%s\" is not supported (clip, clip_vision_model, dinov2, dinov2_with_registers, siglip, siglip_vision_model)", path, type);
        goto done;
    }
    if (!strcmp(type, "clip") || !strcmp(type, "siglip")) {
        vc = cJSON_GetObjectItemCaseSensitive(root, "vision_config");
        if (!cJSON_IsObject(vc)) {
            snprintf(err, errlen, "%s: model_type \"%s\" but no \"vision_config\" object", path, type);
            goto done;
        }
    }
    vit_config_defaults(cfg, family);
    cfg->n_registers = registers;
    cfg->pos_antialias = antialias;
    if (registers) cfg->patch_size = 16; /* Dinov2WithRegistersConfig default (Dinov2Config: 14) */
    if (get_int(vc, "hidden_size", &cfg->d_model, 1, 1 << 20, path, err, errlen) ||
        get_int(vc, "num_hidden_layers", &cfg->n_layers, 1, 10000, path, err, errlen) ||
        get_int(vc, "num_attention_heads", &cfg->n_heads, 1, 1 << 16, path, err, errlen) ||
        get_int(vc, "patch_size", &cfg->patch_size, 1, 1 << 16, path, err, errlen) ||
        get_int(vc, "image_size", &cfg->image_size, 1, 1 << 20, path, err, errlen) ||
        get_int(vc, "num_channels", &cfg->n_channels, 1, 64, path, err, errlen) ||
        get_int(vc, "num_register_tokens", &cfg->n_registers, 0, 1 << 16, path, err, errlen))
        goto done;
    if (family == VIT_DINOV2) {
        double ratio = 4.0; /* Dinov2Config default */
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(vc, "mlp_ratio");
        if (r && !cJSON_IsNull(r)) {
            if (!cJSON_IsNumber(r) || !(r->valuedouble > 0)) {
                snprintf(err, errlen, "%s: \"mlp_ratio\" must be a positive number", path);
                goto done;
            }
            ratio = r->valuedouble;
        }
        cfg->d_mlp = (int)(cfg->d_model * ratio); /* int(hidden_size * mlp_ratio), as Dinov2MLP */
        const cJSON *qb = cJSON_GetObjectItemCaseSensitive(vc, "qkv_bias");
        if (qb && cJSON_IsBool(qb)) cfg->qkv_bias = cJSON_IsTrue(qb);
        const cJSON *sw = cJSON_GetObjectItemCaseSensitive(vc, "use_swiglu_ffn");
        if (sw && cJSON_IsTrue(sw)) {
            snprintf(err, errlen, "%s: use_swiglu_ffn=true (DINOv2 giant) is not supported", path);
            goto done;
        }
    } else if (get_int(vc, "intermediate_size", &cfg->d_mlp, 1, 1 << 24, path, err, errlen))
        goto done;
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(vc, "hidden_act");
    if (act && !cJSON_IsNull(act)) {
        if (!cJSON_IsString(act) || vit_act_from_name(act->valuestring, &cfg->act)) {
            snprintf(err, errlen, "%s: hidden_act %s%s%s is not supported (gelu, gelu_pytorch_tanh, gelu_new, quick_gelu)", path,
                     cJSON_IsString(act) ? "\"" : "", cJSON_IsString(act) ? act->valuestring : "(not a string)", cJSON_IsString(act) ? "\"" : "");
            goto done;
        }
    }
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(vc, "layer_norm_eps");
    if (eps && !cJSON_IsNull(eps)) {
        if (!cJSON_IsNumber(eps) || !(eps->valuedouble > 0)) {
            snprintf(err, errlen, "%s: \"layer_norm_eps\" must be a positive number", path);
            goto done;
        }
        cfg->ln_eps = eps->valuedouble;
    }
    if (vit_config_check(cfg, err, errlen)) {
        char inner[512];
        snprintf(inner, sizeof inner, "%s", err);
        snprintf(err, errlen, "%s: %s", path, inner);
        goto done;
    }
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}
