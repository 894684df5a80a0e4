/*
 * preprocess.h: image -> model input: resize, center crop, normalise, as the
 * CLIP / DINOv2 / SigLIP image processors do it (through Pillow), in float32 [3,H,W].
 *
 * Families (tests/fixtures/preprocess/pipelines.json):
 *   clip    shortest side to 224 (other side int(224*long/short)), bicubic, center crop 224, OpenAI CLIP mean/std
 *   dinov2  exactly 256x256, bilinear, center crop 224, ImageNet mean/std
 *   siglip  exactly 224x224, bicubic, no crop, mean = std = 0.5
 * Crop offsets are round((n - crop) / 2) with Python's round (half to even), as torchvision.
 * A value is ((float)u8 / 255 - mean) / std in float32.
 *
 * PreprocessConfig is the YAML section `preprocess:` (every key but `pipeline` is an
 * optional override of the family's default); preprocess_resolve turns it into a
 * PreprocessSpec, the plain struct the rest of the code uses.
 */
#ifndef SAEV_IMAGE_PREPROCESS_H
#define SAEV_IMAGE_PREPROCESS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "decode.h"
#include "resample.h"

typedef enum { RESIZE_NONE = 0, RESIZE_SHORTEST, RESIZE_EXACT } ResizeMode;

typedef struct {
    ResizeMode resize;
    int size;           /* RESIZE_SHORTEST: shortest side; RESIZE_EXACT: width = height = size unless width/height set */
    int width, height;  /* RESIZE_EXACT target (both > 0) */
    Interp interp;
    int crop_w, crop_h; /* center crop; 0 = none */
    float mean[3], std[3];
} PreprocessSpec;

/* YAML section `preprocess:`; unset overrides are CFG_UNSET (strings NULL, ints
 * CFG_UNSET_INT, lists n = 0). */
typedef struct {
    char *pipeline;      /* clip | dinov2 | siglip */
    char *resize;        /* shortest | exact | none */
    int64_t size;        /* shortest side, or the square side for exact */
    int64_t width;       /* exact resize width (with height) */
    int64_t height;      /* exact resize height (with width) */
    char *interpolation; /* bicubic | bilinear | nearest */
    int64_t crop;        /* center crop side; 0 = no crop */
    CfgList mean;        /* [3] */
    CfgList std;         /* [3] */
} PreprocessConfig;

extern const CfgSchema preprocess_config_schema;

/* The family defaults; -1 with a message for an unknown family. */
int preprocess_family(const char *name, PreprocessSpec *out, char *err, size_t errlen);
/* Family defaults plus the overrides in cfg; -1 with a message naming the key. */
int preprocess_resolve(const PreprocessConfig *cfg, PreprocessSpec *out, char *err, size_t errlen);
/* Checks a spec for consistency (sizes positive, crop inside the resized image when known). */
int preprocess_check(const PreprocessSpec *spec, char *err, size_t errlen);

/* Output size (after crop) for an input of w x h. */
void preprocess_out_size(const PreprocessSpec *spec, int w, int h, int *out_w, int *out_h);
/* The model input size every image gets (*out_w, *out_h): 1 when the pipeline crops or
 * resizes to a fixed size, 0 when the size follows the image's (then the outputs are
 * those of a 640x480 image). Checked on a landscape and a portrait input. */
int preprocess_fixed_size(const PreprocessSpec *spec, int *out_w, int *out_h);
/* Where an input of w x h lands: the resized size and the crop window inside it. */
void preprocess_geometry(const PreprocessSpec *spec, int w, int h, int *rw, int *rh, int *cx, int *cy, int *cw, int *ch);
/* Resize + crop of an 8-bit image (RGB, or a 1-channel mask with interp forced by the
 * caller) into dst [out_h, out_w, channels] as 8-bit values. */
void preprocess_u8(const PreprocessSpec *spec, Interp interp, const Image8 *im, uint8_t *dst);
/* The model input: [3, out_h, out_w] float32 normalised. scratch may be NULL or hold
 * out_w*out_h*3 bytes. */
void preprocess_image(const PreprocessSpec *spec, const Image8 *im, float *dst, uint8_t *scratch);

const char *interp_name(Interp i);
const char *resize_name(ResizeMode r);

#endif
