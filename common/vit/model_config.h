/*
 * model_config.h: the YAML `model:` section (which ViT, which layers, where it runs) as a
 * plain struct plus its schema, for common/saev_config.c to compose. Everything but
 * `path` is optional: the architecture comes from the transformers config.json beside
 * the weights, and the keys below override it (or describe a checkpoint without one).
 */
#ifndef SAEV_VIT_MODEL_CONFIG_H
#define SAEV_VIT_MODEL_CONFIG_H

#include "config.h"
#include "vit.h"

typedef struct {
    char *path;         /* weights: .safetensors file or a folder holding one (+ config.json) */
    char *config;       /* transformers config.json; NULL: the one beside the weights */
    char *family;       /* clip | dinov2 | siglip; NULL: from config.json */
    CfgList layers;     /* [n] int blocks to record; negative counts from the end */
    char *dtype;        /* compute precision: fp32 | tf32 | bf16 (the CPU always computes fp32) */
    int64_t heads;      /* attention heads override; CFG_UNSET_INT keeps */
    int64_t patch_size; /* override; CFG_UNSET_INT keeps */
    int64_t image_size; /* side the position table was made for; CFG_UNSET_INT keeps */
    int64_t registers;  /* dinov2 register tokens; CFG_UNSET_INT keeps */
    double eps;         /* LayerNorm epsilon; NaN keeps */
    char *act;          /* gelu | gelu_pytorch_tanh | quick_gelu; NULL keeps */
    char *device;       /* auto | cpu | cuda */
} ModelSection;

extern const CfgSchema model_schema;

/* The section as a VitSpec (strings point into m) and a device. */
void model_section_to_spec(const ModelSection *m, VitSpec *spec);
Device model_section_device(const ModelSection *m);

#endif
