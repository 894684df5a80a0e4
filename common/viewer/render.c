/*
 * render.c: what the page shows of an image: the pixels as the model saw them (resized
 * and cropped, before normalization), upscaled by whole pixels (nearest) to at least 224
 * px, optionally with a latent's patch values as a heatmap or the patch labels as
 * colours, encoded as PNG.
 *
 * Heatmap: a patch with value v != 0 is blended with the colour of t = clamp(v / scale,
 * 0, 1) on a dark-red -> yellow ramp, opacity 0.3 + 0.5 t, so that the strongest patches
 * stand out and the picture stays visible; zero patches are untouched, as in visuals'
 * <j>_heat.png. Segmentation: label 0 (unlabelled) untouched, label c a fixed colour from
 * a golden-angle hue walk, opacity 0.55.
 */
#include "viewer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static void ramp(float t, float rgb[3]) {
    rgb[0] = 128.0f + 127.0f * fminf(1.0f, 2.0f * t);
    rgb[1] = 255.0f * fmaxf(0.0f, 2.0f * t - 0.6f) / 1.4f;
    rgb[2] = 40.0f * (1.0f - t);
}

static void hue(int c, float rgb[3]) {
    float h = fmodf((float)c * 137.508f, 360.0f) / 60.0f;
    float x = 1.0f - fabsf(fmodf(h, 2.0f) - 1.0f);
    float r = 0, g = 0, b = 0;
    switch ((int)h) {
    case 0: r = 1; g = x; break;
    case 1: r = x; g = 1; break;
    case 2: g = 1; b = x; break;
    case 3: g = x; b = 1; break;
    case 4: r = x; b = 1; break;
    default: r = 1; b = x; break;
    }
    rgb[0] = 255.0f * r; rgb[1] = 255.0f * g; rgb[2] = 255.0f * b;
}

uint8_t *viewer_render_png(const ViewerImage *im, RenderMode mode, int latent, float scale, size_t *len) {
    int side = im->in_w < im->in_h ? im->in_w : im->in_h;
    int up = side >= 224 ? 1 : (224 + side - 1) / side;
    Image8 out = {im->in_w * up, im->in_h * up, 3, NULL};
    out.data = mallocCheck((size_t)out.w * out.h * 3);
    int pw = im->in_w / im->grid_w, ph = im->in_h / im->grid_h; /* patch size in model pixels */
    for (int y = 0; y < out.h; y++)
        for (int x = 0; x < out.w; x++) {
            int sx = x / up, sy = y / up;
            const uint8_t *p = im->rgb + ((size_t)sy * im->in_w + sx) * 3;
            uint8_t *o = out.data + ((size_t)y * out.w + x) * 3;
            float c[3] = {p[0], p[1], p[2]}, over[3];
            float a = 0;
            int gx = sx / pw, gy = sy / ph;
            if (gx < im->grid_w && gy < im->grid_h) {
                int patch = gy * im->grid_w + gx;
                if (mode == RENDER_HEAT) {
                    float v = im->f[(size_t)patch * im->S + latent];
                    if (v != 0.0f && !isnan(v)) {
                        float t = scale > 0 ? fminf(1.0f, fmaxf(0.0f, v / scale)) : 1.0f;
                        ramp(t, over);
                        a = 0.3f + 0.5f * t;
                    }
                } else if (mode == RENDER_SEG && im->seg && im->seg[patch]) {
                    hue(im->seg[patch], over);
                    a = 0.55f;
                }
            }
            for (int k = 0; k < 3; k++) o[k] = (uint8_t)lrintf((1 - a) * c[k] + a * (a > 0 ? over[k] : 0));
        }
    char err[256];
    uint8_t *png = encode_png_mem(&out, len, err, sizeof err);
    if (!png) saev_fail("serve: %s", err); /* only out of memory gets here */
    free(out.data);
    return png;
}
