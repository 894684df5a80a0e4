/*
 * decode.h: JPEG (libjpeg-turbo) and PNG (libpng) files into 8-bit RGB, pixel for pixel
 * what Pillow 9.4's Image.open(path).convert("RGB") gives.
 *
 * Conversions follow Pillow, not colour science: grey is replicated, alpha is dropped
 * (never composited), palettes are looked up, 16-bit RGB/RGBA keep the high byte, 16-bit
 * grey is clipped to 255 (Pillow opens it as mode "I" and clips), CMYK/YCCK JPEGs are
 * read with Adobe's inverted convention and mapped with Pillow's cmyk2rgb. JPEGs use
 * libjpeg's defaults (ISLOW DCT, fancy upsampling), as Pillow does.
 *
 * Nothing here exits: a bad file (empty, truncated, corrupt, not an image, unsupported
 * format, more pixels than max_pixels) returns -1 with the reason in err.
 */
#ifndef SAEV_IMAGE_DECODE_H
#define SAEV_IMAGE_DECODE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int w, h;          /* width and height in pixels */
    int channels;      /* 3 for RGB images, 1 for masks */
    uint8_t *data;     /* [h, w, channels] row-major, malloc'd */
} Image8;

void image8_free(Image8 *im);

/* Decodes an in-memory JPEG or PNG to RGB (channels = 3). max_pixels <= 0: no limit.
 * Returns 0, or -1 with the reason (no path) in err. */
int decode_rgb_mem(const uint8_t *buf, size_t len, int64_t max_pixels, Image8 *out, char *err, size_t errlen);
/* Reads and decodes a file; the reason in err names the path. */
int decode_rgb_file(const char *path, int64_t max_pixels, Image8 *out, char *err, size_t errlen);
/* A segmentation mask: an 8-bit single-channel PNG (grey or palette indices, as Pillow's
 * mode "L"/"P" hold them), returned as channels = 1 class ids. */
int decode_mask_file(const char *path, int64_t max_pixels, Image8 *out, char *err, size_t errlen);

/* Writers used by the demo data generator (atomic: tmp + rename). 0 or -1 with err. */
int write_png(const char *path, const Image8 *im, char *err, size_t errlen);
int write_jpeg(const char *path, const Image8 *im, int quality, char *err, size_t errlen);
/* The PNG bytes of an image (RGB or grey), malloc'd, length in *len (the viewer answers
 * with them). NULL with err on failure. */
uint8_t *encode_png_mem(const Image8 *im, size_t *len, char *err, size_t errlen);

#endif
