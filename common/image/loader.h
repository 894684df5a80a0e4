/*
 * loader.h: decoded, preprocessed batches in dataset order, prepared ahead by a pool of
 * threads.
 *
 * The index range [begin, end) is cut into batches of batch_size consecutive images;
 * batch b holds images begin + b*batch_size ... . Threads claim single images in order,
 * decode and preprocess them straight into their batch slot; at most queue_batches
 * batches are in flight, so memory stays bounded when the consumer (the ViT) is slower.
 * image_loader_next hands batches out strictly in order, so the output does not depend on the
 * thread count.
 *
 * Bad images (see decode.h): with BAD_SKIP they are logged, left out of the batch (its
 * n shrinks) and listed in the batch and in the loader's running list
 * (image_loader_write_bad_list writes it beside the outputs); with BAD_FAIL image_loader_next stops
 * the job with the reason, which names the file.
 *
 * Usage:
 *   ImageLoader *ld = image_loader_open(&ds, &spec);
 *   const ImageBatch *b;
 *   while ((b = image_loader_next(ld))) { use b->pixels [b->n, 3, H, W] ... }
 *   image_loader_close(ld);
 */
#ifndef SAEV_IMAGE_LOADER_H
#define SAEV_IMAGE_LOADER_H

#include <stdint.h>

#include "config.h"
#include "dataset.h"
#include "preprocess.h"

/* YAML section `loader:`. */
typedef struct {
    int64_t threads;       /* decoding threads; 0 = one per core */
    int64_t queue_batches; /* batches prepared ahead of the consumer */
} LoaderConfig;

extern const CfgSchema loader_config_schema;

typedef struct {
    int batch_size;             /* images per batch before skips */
    int threads;                /* 0 = one per online core */
    int queue_batches;          /* >= 1 */
    int64_t begin, end;         /* dataset index range; end < 0 = to the end */
    PreprocessSpec pre;         /* must give a fixed output size (crop, or exact resize) */
    BadImagePolicy on_bad;
    int64_t max_pixels;         /* <= 0: no limit */
    int patch_size;             /* > 0 with a segmentation set: per-patch labels */
    PatchLabelMode patch_label;
} ImageLoaderSpec;

typedef struct {
    int64_t first;          /* dataset index of the batch's first image (kept or not) */
    int n;                  /* images kept */
    int64_t *index;         /* [n] dataset index of each kept image */
    int32_t *labels;        /* [n] class label, -1 when none */
    float *pixels;          /* [n, 3, H, W] normalised */
    uint8_t *patch_labels;  /* [n, n_patches] class ids, row-major patch grid; NULL without masks */
    int n_bad;              /* images of this batch left out */
    int64_t *bad_index;     /* [n_bad] dataset index */
    char **bad_reason;      /* [n_bad] reason, naming the file */
} ImageBatch;

/* A batch that outlives image_loader_next (for a forward that runs while the loader
 * moves on): room for batch_size images of pixel_floats floats and n_patches patch
 * labels each; image_batch_copy fills it from a loader batch, bad reasons included. */
void image_batch_alloc(ImageBatch *b, int batch_size, size_t pixel_floats, int n_patches);
void image_batch_copy(ImageBatch *dst, const ImageBatch *src, size_t pixel_floats, int n_patches);
void image_batch_free(ImageBatch *b);

typedef struct ImageLoader ImageLoader;

/* Starts the threads. A spec that cannot work (variable output size, patch size not
 * dividing it, empty range) ends the job with a usage error. */
ImageLoader *image_loader_open(const Dataset *ds, const ImageLoaderSpec *spec);
/* The next batch in order, or NULL after the last; valid until the next call. */
const ImageBatch *image_loader_next(ImageLoader *ld);
void image_loader_close(ImageLoader *ld);

int image_loader_width(const ImageLoader *ld);      /* W of every batch */
int image_loader_height(const ImageLoader *ld);     /* H */
int image_loader_n_patches(const ImageLoader *ld);  /* patches per image for patch_labels, 0 without */
int64_t image_loader_n_batches(const ImageLoader *ld);
/* Bad images met so far (all handed-out batches), in dataset order. */
int64_t image_loader_n_bad(const ImageLoader *ld);
/* Writes "index<TAB>path<TAB>reason" lines (tmp + rename); 0 or -1 with err. */
int image_loader_write_bad_list(const ImageLoader *ld, const char *path, char *err, size_t errlen);

/* Threads to use for `threads` (0 = online cores). */
int image_loader_default_threads(int threads);

#endif
