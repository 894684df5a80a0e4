/*
 * resample.h: Pillow 9.4's image resize, bit for bit, for 8-bit images.
 *
 * Bilinear and bicubic (a = -0.5) use Pillow's antialiased separable resampler: when
 * downscaling the filter support widens by the scale factor, coefficients are
 * normalised in double then rounded to 22-bit fixed point, the horizontal pass runs
 * first and its result is rounded and clipped to 8 bits before the vertical pass; a pass
 * whose size does not change is skipped. Nearest follows Pillow's affine scaling (pixel
 * centres stepped by in/out in double).
 *
 * resample_window computes only a window of the resized image: each output pixel depends
 * only on its own row and column taps, so resizing then center-cropping this way gives
 * the same bytes as Pillow's resize followed by crop, for a fraction of the work.
 */
#ifndef SAEV_IMAGE_RESAMPLE_H
#define SAEV_IMAGE_RESAMPLE_H

#include <stdint.h>

#include "decode.h"

typedef enum { INTERP_NEAREST = 0, INTERP_BILINEAR, INTERP_BICUBIC } Interp;

/* Resizes src (channels 1 or 3) to out_w x out_h and writes the window with top-left
 * (x0, y0) and size win_w x win_h of that result into dst [win_h, win_w, channels].
 * The window must lie inside [0,out_w) x [0,out_h). */
void resample_window(const Image8 *src, int out_w, int out_h, Interp interp,
                     int x0, int y0, int win_w, int win_h, uint8_t *dst);

#endif
