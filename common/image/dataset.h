/*
 * dataset.h: the image sets saev reads, as lists of files with labels.
 *
 *   folder  root/<class>/<image>: one subfolder per class, classes numbered in sorted
 *           folder-name order, files in sorted order (byte order, as Python's sorted);
 *           files are taken by extension (.jpg .jpeg .png and the other common image
 *           extensions, case-insensitive; unsupported formats then surface as bad images).
 *   list    a text file, one image per line: `path` or `path<whitespace>label`
 *           (label an integer >= 0; -1 = none); relative paths are relative to the list
 *           file's folder; blank lines and lines starting with # are ignored.
 *   ade20k  root/images/<split>/<stem>.jpg with root/annotations/<split>/<stem>.png holding
 *           uint8 class ids (0 = unlabelled), the ADE20K (SceneParsing) layout.
 *
 * Per-patch labels (segmentation sets): the mask goes through the same resize and crop
 * as the image with nearest resampling, then each patch gets its most common class
 * (`majority`) or its most common non-zero class, 0 only when all of it is 0
 * (`prefer-fg`); ties go to the smaller class id.
 */
#ifndef SAEV_IMAGE_DATASET_H
#define SAEV_IMAGE_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef enum { DATA_FOLDER = 0, DATA_LIST, DATA_ADE20K } DataKind;
typedef enum { BAD_SKIP = 0, BAD_FAIL } BadImagePolicy;
typedef enum { PATCH_MAJORITY = 0, PATCH_PREFER_FG } PatchLabelMode;

/* YAML section `data:`. */
typedef struct {
    char *kind;          /* folder | list | ade20k */
    char *root;          /* folder and ade20k: the top folder */
    char *path;          /* list: the list file */
    char *split;         /* ade20k: training | validation (any folder name) */
    char *on_bad_image;  /* skip | fail */
    int64_t max_pixels;  /* larger images are bad (decompression bombs) */
    char *patch_label;   /* majority | prefer-fg */
} DataConfig;

extern const CfgSchema data_config_schema;

typedef struct {
    DataKind kind;
    const char *root;        /* folder, ade20k */
    const char *path;        /* list */
    const char *split;       /* ade20k */
    BadImagePolicy on_bad;
    int64_t max_pixels;      /* <= 0: no limit */
    PatchLabelMode patch_label;
} DataSpec;

/* DataConfig -> DataSpec (strings borrowed from cfg); -1 with a message naming the key. */
int data_resolve(const DataConfig *cfg, DataSpec *out, char *err, size_t errlen);

typedef struct {
    DataKind kind;
    int64_t n;           /* number of images */
    char **paths;        /* [n] image files */
    int32_t *labels;     /* [n] class index, -1 when unlabelled */
    char **mask_paths;   /* [n] ade20k masks; NULL for other kinds */
    int n_classes;       /* folder: class folders; list: max label + 1; ade20k: 0 */
    char **class_names;  /* [n_classes] folder only; NULL otherwise */
} Dataset;

/* Lists the data set (no image is opened). -1 with a message naming the folder, file or
 * line at fault (missing folder, empty set, bad label, missing mask). */
int dataset_open(const DataSpec *spec, Dataset *ds, char *err, size_t errlen);
void dataset_free(Dataset *ds);

/* Patch labels of a mask already resized and cropped to [h, w]: grid (h/patch) x
 * (w/patch), row-major into out. h and w must be multiples of patch. */
void patch_labels_from_mask(const uint8_t *mask, int w, int h, int patch, PatchLabelMode mode, uint8_t *out);

#endif
