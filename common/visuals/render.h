/*
 * render.h: pixels of the visuals' PNGs (render.c). Images are 8-bit RGB [h, w, 3]
 * row-major; patch arrays are [grid_h, grid_w] in raster order and cover the image
 * evenly (the model's input is a whole number of patches a side).
 */
#ifndef SAEV_VISUALS_RENDER_H
#define SAEV_VISUALS_RENDER_H

#include <stdint.h>

#include "image/decode.h"

/* The integer factor that brings the shorter side to at least VISUALS_MIN_PX. */
int render_upscale(int w, int h);
/* rgb [h, w, 3] nearest-neighbour upscaled by u into out [h·u, w·u, 3]. */
void render_plain(const uint8_t *rgb, int w, int h, int u, uint8_t *out);
/* plain [H, W, 3] with patch activations overlaid (visuals_heat_pixel) into out. */
void render_heat(const uint8_t *plain, int W, int H, int grid_h, int grid_w, const float *patch, float max_value, uint8_t *out);
/* Patch labels as colours over plain [H, W, 3] (visuals.h, <j>_seg.png) into out. */
void render_seg(const uint8_t *plain, int W, int H, int grid_h, int grid_w, const uint8_t *labels, uint8_t *out);
/* Makes path a hard link to the existing file `existing` (through a temporary name and
 * rename, so path is never half there); 0, or -1 when links do not work there. */
int render_link(const char *existing, const char *path);
/* write_png (tmp + rename) or end the job naming the file. */
void render_write_png(const char *path, const uint8_t *rgb, int W, int H);

#endif
