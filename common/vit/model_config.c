/*
 * model_config.c: schema of the YAML `model:` section and its translation into the
 * ViT's VitSpec (see model_config.h).
 */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "model_config.h"

static const CfgField model_fields[] = {
    {"path", CFG_STRING, offsetof(ModelSection, path), CFG_UNSET, 1, 0, NULL, NULL, 0,
     "ViT weights: a .safetensors file, or a folder holding one and its transformers config.json"},
    {"config", CFG_STRING, offsetof(ModelSection, config), CFG_UNSET, 1, 0, NULL, NULL, 0,
     "transformers config.json (default: the one beside the weights)"},
    {"family", CFG_STRING, offsetof(ModelSection, family), CFG_UNSET, 1, 0, "clip|dinov2|siglip", NULL, 0,
     "model family; needed only when there is no config.json"},
    {"layers", CFG_INT_LIST, offsetof(ModelSection, layers), "[-2]", -10000, 9999, NULL, NULL, 0,
     "blocks whose output (residual stream) is recorded; negative counts from the end"},
    {"dtype", CFG_STRING, offsetof(ModelSection, dtype), "fp32", 1, 0, PRECISION_NAMES, NULL, 0,
     "compute precision on CUDA (the CPU always computes fp32)"},
    {"heads", CFG_INT, offsetof(ModelSection, heads), CFG_UNSET, 1, 65536, NULL, NULL, 0, "attention heads (overrides config.json)"},
    {"patch_size", CFG_INT, offsetof(ModelSection, patch_size), CFG_UNSET, 1, 65536, NULL, NULL, 0, "patch side in pixels (overrides config.json)"},
    {"image_size", CFG_INT, offsetof(ModelSection, image_size), CFG_UNSET, 1, 1048576, NULL, NULL, 0,
     "image side the position table was made for (overrides config.json)"},
    {"registers", CFG_INT, offsetof(ModelSection, registers), CFG_UNSET, 0, 65536, NULL, NULL, 0, "DINOv2 register tokens (overrides config.json)"},
    {"eps", CFG_FLOAT, offsetof(ModelSection, eps), CFG_UNSET, 1e-30, 1, NULL, NULL, 0, "LayerNorm epsilon (overrides config.json)"},
    {"act", CFG_STRING, offsetof(ModelSection, act), CFG_UNSET, 1, 0, "gelu|gelu_pytorch_tanh|quick_gelu", NULL, 0,
     "MLP activation (overrides config.json)"},
    {"device", CFG_STRING, offsetof(ModelSection, device), "auto", 1, 0, DEVICE_NAMES, NULL, 0,
     "where the ViT runs: auto = CUDA when a GPU is present"},
};

const CfgSchema model_schema = {"model", sizeof(ModelSection), model_fields, (int)(sizeof model_fields / sizeof model_fields[0]), NULL};

void model_section_to_spec(const ModelSection *m, VitSpec *spec) {
    vit_spec_init(spec);
    spec->path = m->path;
    spec->config_path = m->config;
    VitFamily f;
    if (m->family && !vit_family_from_name(m->family, &f)) spec->family = (int)f;
    if (m->heads != CFG_UNSET_INT) spec->n_heads = (int)m->heads;
    if (m->patch_size != CFG_UNSET_INT) spec->patch_size = (int)m->patch_size;
    if (m->image_size != CFG_UNSET_INT) spec->image_size = (int)m->image_size;
    if (m->registers != CFG_UNSET_INT) spec->n_registers = (int)m->registers;
    if (!isnan(m->eps)) spec->ln_eps = m->eps;
    VitAct a;
    if (m->act && !vit_act_from_name(m->act, &a)) spec->act = (int)a;
}

Device model_section_device(const ModelSection *m) {
    return device_setting_or_die(m->device, "model.device");
}
