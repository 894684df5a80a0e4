/*
 * render.c: what the page shows of an image, as PNG bytes: the pixels as the model saw
 * them (resized and cropped, before normalization), upscaled by whole pixels to at least
 * 224 px, optionally with one latent's patch values as a heatmap or the patch labels as
 * colours. The pixels are those of visuals' <j>.png, <j>_heat.png and <j>_seg.png
 * (common/visuals/render.h), so a latent rendered here looks exactly like one that
 * `saev visuals` rendered.
 */
#include "viewer.h"

#include <stdlib.h>

#include "check.h"
#include "visuals/render.h"

uint8_t *viewer_render_png(const ViewerImage *im, RenderMode mode, int latent, float scale, size_t *len) {
    int u = render_upscale(im->in_w, im->in_h);
    Image8 out = {im->in_w * u, im->in_h * u, 3, NULL};
    size_t bytes = (size_t)out.w * out.h * 3;
    uint8_t *plain = mallocCheck(bytes);
    render_plain(im->rgb, im->in_w, im->in_h, u, plain);
    out.data = plain;
    if (mode == RENDER_HEAT) {
        float *patch = mallocCheck((size_t)im->n_patches * sizeof(float));
        for (int p = 0; p < im->n_patches; p++) patch[p] = im->f[(size_t)p * im->S + latent];
        out.data = mallocCheck(bytes);
        render_heat(plain, out.w, out.h, im->grid_h, im->grid_w, patch, scale, out.data);
        free(patch);
        free(plain);
    } else if (mode == RENDER_SEG) {
        out.data = mallocCheck(bytes);
        render_seg(plain, out.w, out.h, im->grid_h, im->grid_w, im->seg, out.data);
        free(plain);
    }
    char err[256];
    uint8_t *png = encode_png_mem(&out, len, err, sizeof err);
    if (!png) saev_fail("serve: %s", err); /* only out of memory gets here */
    free(out.data);
    return png;
}
