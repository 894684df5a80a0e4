/*
 * dataset_config.c: the `data:` section's schema; a data set that cannot be listed is
 * refused when the config is bound (data_resolve, dataset.c).
 */
#include <stddef.h>
#include <stdio.h>

#include "dataset.h"

static const CfgField data_fields[] = {
    {"kind", CFG_STRING, offsetof(DataConfig, kind), "folder", 0, -1, "folder|list|ade20k", NULL, 0,
     "folder: root/<class>/<image>; list: a file of `path [label]` lines; ade20k: images/<split> + annotations/<split>"},
    {"root", CFG_STRING, offsetof(DataConfig, root), CFG_UNSET, 0, -1, NULL, NULL, 0, "top folder (kind folder or ade20k)"},
    {"path", CFG_STRING, offsetof(DataConfig, path), CFG_UNSET, 0, -1, NULL, NULL, 0, "list file (kind list)"},
    {"split", CFG_STRING, offsetof(DataConfig, split), "training", 0, -1, NULL, NULL, 0, "ade20k split folder (training, validation)"},
    {"on_bad_image", CFG_STRING, offsetof(DataConfig, on_bad_image), "skip", 0, -1, "skip|fail", NULL, 0,
     "an unreadable image: skip it (logged and listed beside the outputs) or stop naming it"},
    {"max_pixels", CFG_INT, offsetof(DataConfig, max_pixels), "89478485", 0, 1e15, NULL, NULL, 0,
     "images with more pixels are bad (decompression bombs); 0 = no limit; default as Pillow's MAX_IMAGE_PIXELS"},
    {"patch_label", CFG_STRING, offsetof(DataConfig, patch_label), "majority", 0, -1, "majority|prefer-fg", NULL, 0,
     "segmentation sets: a patch's label is its most common class, or its most common non-zero class"},
};


static const char *data_validate(void *section, const CfgNode *node, char *buf, size_t buflen) {
    const DataConfig *c = section;
    /* A config that names no data set is fine for commands that read none (train, serve);
     * the stages that read images check for one when they start. */
    if (!c->root && !c->path) return NULL;
    DataSpec spec;
    char why[512];
    if (data_resolve(c, &spec, why, sizeof why) == 0) return NULL;
    (void)node; /* cfg_bind prefixes the section's position and path */
    snprintf(buf, buflen, "%s", why);
    return buf;
}

const CfgSchema data_config_schema = {
    "data", sizeof(DataConfig), data_fields, (int)(sizeof data_fields / sizeof data_fields[0]), data_validate,
};
