/*
 * preprocess_config.c: the `preprocess:` section's schema; overrides that give no fixed
 * geometry are refused when the config is bound (preprocess_resolve, preprocess.c).
 */
#include <stddef.h>
#include <stdio.h>

#include "preprocess.h"

static const CfgField preprocess_fields[] = {
    {"pipeline", CFG_STRING, offsetof(PreprocessConfig, pipeline), CFG_UNSET, 0, -1, "clip|dinov2|siglip", NULL, 0,
     "preprocessing family: resize, interpolation, crop and mean/std of that model family (default: the model's family)"},
    {"resize", CFG_STRING, offsetof(PreprocessConfig, resize), CFG_UNSET, 0, -1, "shortest|exact|none", NULL, 0,
     "override: shortest side to `size`, exactly width x height, or no resize"},
    {"size", CFG_INT, offsetof(PreprocessConfig, size), CFG_UNSET, 1, 65536, NULL, NULL, 0,
     "override: shortest side (resize: shortest) or square side (resize: exact)"},
    {"width", CFG_INT, offsetof(PreprocessConfig, width), CFG_UNSET, 1, 65536, NULL, NULL, 0,
     "override: resize width for resize: exact (give height too)"},
    {"height", CFG_INT, offsetof(PreprocessConfig, height), CFG_UNSET, 1, 65536, NULL, NULL, 0,
     "override: resize height for resize: exact (give width too)"},
    {"interpolation", CFG_STRING, offsetof(PreprocessConfig, interpolation), CFG_UNSET, 0, -1, "bicubic|bilinear|nearest", NULL, 0,
     "override: Pillow resampling filter"},
    {"crop", CFG_INT, offsetof(PreprocessConfig, crop), CFG_UNSET, 0, 65536, NULL, NULL, 0,
     "override: center crop side in pixels, 0 for none"},
    {"mean", CFG_FLOAT_LIST, offsetof(PreprocessConfig, mean), CFG_UNSET, 0, -1, NULL, NULL, 0,
     "override: per-channel mean [r, g, b] subtracted after scaling to [0, 1]"},
    {"std", CFG_FLOAT_LIST, offsetof(PreprocessConfig, std), CFG_UNSET, 0, -1, NULL, NULL, 0,
     "override: per-channel std [r, g, b] divided by after subtracting the mean"},
};

static const char *preprocess_validate(void *section, const CfgNode *node, char *buf, size_t buflen) {
    PreprocessSpec spec;
    char why[512];
    if (preprocess_resolve((const PreprocessConfig *)section, &spec, why, sizeof why) == 0) return NULL;
    (void)node; /* cfg_bind prefixes the section's position and path */
    snprintf(buf, buflen, "%s", why);
    return buf;
}

const CfgSchema preprocess_config_schema = {
    "preprocess", sizeof(PreprocessConfig), preprocess_fields,
    (int)(sizeof preprocess_fields / sizeof preprocess_fields[0]), preprocess_validate,
};
