/*
 * render.c: the pictures of one top image (visuals.h, latents/<s>/): the image as the
 * model saw it upscaled by an integer factor, the same with a latent's patch
 * activations as a heatmap, and the patch labels as colours. Pixels only; the PNG files
 * go through write_png (common/image/decode.c, tmp + rename).
 */
#include "render.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "visuals.h"

int render_upscale(int w, int h) {
    int m = w < h ? w : h;
    return m >= VISUALS_MIN_PX ? 1 : (VISUALS_MIN_PX + m - 1) / m;
}

void render_plain(const uint8_t *rgb, int w, int h, int u, uint8_t *out) {
    int W = w * u;
    for (int y = 0; y < h * u; y++)
        for (int x = 0; x < W; x++) memcpy(out + ((size_t)y * W + x) * 3, rgb + ((size_t)(y / u) * w + x / u) * 3, 3);
}

/* Heat colour stops: yellow, orange, dark red (visuals.h). */
static const float heat_stops[3][3] = {{255, 255, 0}, {255, 128, 0}, {200, 0, 0}};

void visuals_heat_pixel(const uint8_t *rgb, float a, float max_value, uint8_t *out) {
    if (a == 0) { memcpy(out, rgb, 3); return; }
    float t = max_value > 0 ? a / max_value : 0;
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    float alpha = 0.3f + 0.45f * t;
    int lo = t < 0.5f ? 0 : 1;
    float w = t < 0.5f ? t * 2 : (t - 0.5f) * 2;
    for (int c = 0; c < 3; c++) {
        float col = heat_stops[lo][c] + (heat_stops[lo + 1][c] - heat_stops[lo][c]) * w;
        float v = (1 - alpha) * rgb[c] + alpha * col;
        out[c] = (uint8_t)lrintf(v < 0 ? 0 : v > 255 ? 255 : v);
    }
}

void render_heat(const uint8_t *plain, int W, int H, int grid_h, int grid_w, const float *patch, float max_value, uint8_t *out) {
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int p = (y * grid_h / H) * grid_w + x * grid_w / W;
            size_t o = ((size_t)y * W + x) * 3;
            visuals_heat_pixel(plain + o, patch[p], max_value, out + o);
        }
}

void visuals_label_colour(int label, uint8_t *out) {
    if (label == 0) { out[0] = out[1] = out[2] = 0; return; } /* unlabelled */
    uint32_t h = (uint32_t)label * 2654435761u; /* Knuth's multiplicative hash: neighbours get distant colours */
    out[0] = (uint8_t)(64 + (h >> 24) % 192);
    out[1] = (uint8_t)(64 + (h >> 16) % 192);
    out[2] = (uint8_t)(64 + (h >> 8) % 192);
}

void render_seg(const uint8_t *plain, int W, int H, int grid_h, int grid_w, const uint8_t *labels, uint8_t *out) {
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            size_t o = ((size_t)y * W + x) * 3;
            int label = labels[(y * grid_h / H) * grid_w + x * grid_w / W];
            if (label == 0) { memcpy(out + o, plain + o, 3); continue; } /* unlabelled: the image shows through */
            uint8_t c[3];
            visuals_label_colour(label, c);
            for (int k = 0; k < 3; k++) out[o + k] = (uint8_t)((plain[o + k] + 3 * c[k] + 2) / 4); /* 3/4 colour, rounded */
        }
}

int render_link(const char *existing, const char *path) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
    if (link(existing, tmp) != 0) return -1;
    if (rename(tmp, path) != 0) { unlink(tmp); return -1; }
    return 0;
}

void render_write_png(const char *path, const uint8_t *rgb, int W, int H) {
    Image8 im = {W, H, 3, (uint8_t *)rgb};
    char err[1024];
    if (write_png(path, &im, err, sizeof err)) saev_fail("visuals: %s", err);
}
