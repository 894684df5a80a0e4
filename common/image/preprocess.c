/*
 * preprocess.c: family defaults, overrides, geometry (resize size, center crop window)
 * and the float conversion (see preprocess.h).
 */
#include "preprocess.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

const char *interp_name(Interp i) { return i == INTERP_NEAREST ? "nearest" : i == INTERP_BILINEAR ? "bilinear" : "bicubic"; }
const char *resize_name(ResizeMode r) { return r == RESIZE_NONE ? "none" : r == RESIZE_SHORTEST ? "shortest" : "exact"; }

int preprocess_family(const char *name, PreprocessSpec *s, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    if (!strcmp(name, "clip")) {
        *s = (PreprocessSpec){RESIZE_SHORTEST, 224, 0, 0, INTERP_BICUBIC, 224, 224,
                              {0.48145466f, 0.4578275f, 0.40821073f}, {0.26862954f, 0.26130258f, 0.27577711f}};
    } else if (!strcmp(name, "dinov2")) {
        *s = (PreprocessSpec){RESIZE_EXACT, 256, 256, 256, INTERP_BILINEAR, 224, 224,
                              {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}};
    } else if (!strcmp(name, "siglip")) {
        *s = (PreprocessSpec){RESIZE_EXACT, 224, 224, 224, INTERP_BICUBIC, 0, 0, {0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f}};
    } else {
        saev_errf(err, errlen, "unknown pipeline \"%s\" (expected clip, dinov2 or siglip)", name);
        return -1;
    }
    return 0;
}

int preprocess_resolve(const PreprocessConfig *c, PreprocessSpec *s, char *err, size_t errlen) {
    if (preprocess_family(c->pipeline ? c->pipeline : "clip", s, err, errlen)) return -1;
    if (c->resize) {
        if (!strcmp(c->resize, "shortest")) s->resize = RESIZE_SHORTEST;
        else if (!strcmp(c->resize, "exact")) s->resize = RESIZE_EXACT;
        else if (!strcmp(c->resize, "none")) s->resize = RESIZE_NONE;
        else { saev_errf(err, errlen, "resize: \"%s\" is not shortest, exact or none", c->resize); return -1; }
    }
    if (c->size != CFG_UNSET_INT) { s->size = (int)c->size; s->width = s->height = (int)c->size; }
    if ((c->width != CFG_UNSET_INT) != (c->height != CFG_UNSET_INT)) {
        saev_errf(err, errlen, "width and height go together (give both)");
        return -1;
    }
    if (c->width != CFG_UNSET_INT) {
        if (s->resize != RESIZE_EXACT) { saev_errf(err, errlen, "width/height need resize: exact"); return -1; }
        s->width = (int)c->width;
        s->height = (int)c->height;
    }
    if (c->interpolation) {
        if (!strcmp(c->interpolation, "bicubic")) s->interp = INTERP_BICUBIC;
        else if (!strcmp(c->interpolation, "bilinear")) s->interp = INTERP_BILINEAR;
        else if (!strcmp(c->interpolation, "nearest")) s->interp = INTERP_NEAREST;
        else { saev_errf(err, errlen, "interpolation: \"%s\" is not bicubic, bilinear or nearest", c->interpolation); return -1; }
    }
    if (c->crop != CFG_UNSET_INT) s->crop_w = s->crop_h = (int)c->crop;
    const CfgList *lists[2] = {&c->mean, &c->std};
    float *dst[2] = {s->mean, s->std};
    for (int l = 0; l < 2; l++) {
        if (lists[l]->n == 0) continue;
        if (lists[l]->n != 3) { saev_errf(err, errlen, "%s: needs 3 values (r, g, b), got %d", l ? "std" : "mean", lists[l]->n); return -1; }
        for (int i = 0; i < 3; i++) dst[l][i] = (float)lists[l]->f[i];
    }
    return preprocess_check(s, err, errlen);
}

int preprocess_check(const PreprocessSpec *s, char *err, size_t errlen) {
    if (s->resize == RESIZE_SHORTEST && s->size <= 0) { saev_errf(err, errlen, "size must be positive"); return -1; }
    if (s->resize == RESIZE_EXACT && (s->width <= 0 || s->height <= 0)) { saev_errf(err, errlen, "exact resize needs a positive width and height"); return -1; }
    if (s->crop_w < 0 || s->crop_h < 0) { saev_errf(err, errlen, "crop must be >= 0"); return -1; }
    for (int i = 0; i < 3; i++)
        if (!(s->std[i] > 0) || !isfinite(s->mean[i])) { saev_errf(err, errlen, "std must be positive and mean finite (channel %d: mean %g, std %g)", i, s->mean[i], s->std[i]); return -1; }
    return 0;
}

void preprocess_geometry(const PreprocessSpec *s, int w, int h, int *rw, int *rh, int *cx, int *cy, int *cw, int *ch) {
    if (s->resize == RESIZE_SHORTEST) {
        /* torchvision / HF: the short side becomes size, the long side int(size * long / short) */
        if (w <= h) { *rw = s->size; *rh = (int)((double)((int64_t)s->size * h) / w); }
        else { *rh = s->size; *rw = (int)((double)((int64_t)s->size * w) / h); }
    } else if (s->resize == RESIZE_EXACT) {
        *rw = s->width; *rh = s->height;
    } else {
        *rw = w; *rh = h;
    }
    *cw = s->crop_w ? s->crop_w : *rw;
    *ch = s->crop_h ? s->crop_h : *rh;
    /* round((n - c) / 2), half to even like Python's round; a crop larger than the image
     * is padded with zeros on both sides as torchvision's center_crop does. */
    *cx = *cw <= *rw ? (int)nearbyint((*rw - *cw) / 2.0) : -((*cw - *rw) / 2);
    *cy = *ch <= *rh ? (int)nearbyint((*rh - *ch) / 2.0) : -((*ch - *rh) / 2);
}

void preprocess_out_size(const PreprocessSpec *s, int w, int h, int *out_w, int *out_h) {
    int rw, rh, cx, cy;
    preprocess_geometry(s, w, h, &rw, &rh, &cx, &cy, out_w, out_h);
}

int preprocess_fixed_size(const PreprocessSpec *s, int *out_w, int *out_h) {
    int w2, h2;
    preprocess_out_size(s, 640, 480, out_w, out_h);
    preprocess_out_size(s, 300, 500, &w2, &h2);
    return *out_w == w2 && *out_h == h2;
}

void preprocess_u8(const PreprocessSpec *s, Interp interp, const Image8 *im, uint8_t *dst) {
    int rw, rh, cx, cy, cw, ch;
    preprocess_geometry(s, im->w, im->h, &rw, &rh, &cx, &cy, &cw, &ch);
    const int C = im->channels;
    /* The part of the crop window that lies inside the resized image. */
    int ix0 = cx < 0 ? 0 : cx, iy0 = cy < 0 ? 0 : cy;
    int ix1 = cx + cw > rw ? rw : cx + cw, iy1 = cy + ch > rh ? rh : cy + ch;
    if (ix0 == cx && iy0 == cy && ix1 == cx + cw && iy1 == cy + ch) {
        resample_window(im, rw, rh, interp, cx, cy, cw, ch, dst);
        return;
    }
    memset(dst, 0, (size_t)cw * ch * C);
    int iw = ix1 - ix0, ih = iy1 - iy0;
    uint8_t *part = mallocCheck((size_t)iw * ih * C);
    resample_window(im, rw, rh, interp, ix0, iy0, iw, ih, part);
    for (int y = 0; y < ih; y++)
        memcpy(dst + ((size_t)(iy0 - cy + y) * cw + (ix0 - cx)) * C, part + (size_t)y * iw * C, (size_t)iw * C);
    free(part);
}

void preprocess_image(const PreprocessSpec *s, const Image8 *im, float *dst, uint8_t *scratch) {
    int ow, oh;
    preprocess_out_size(s, im->w, im->h, &ow, &oh);
    size_t n = (size_t)ow * oh;
    uint8_t *u8 = scratch ? scratch : mallocCheck(n * 3);
    preprocess_u8(s, s->interp, im, u8);
    /* torchvision: ToTensor (x / 255 in float32) then Normalize ((x - mean) / std). */
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) lut[c][v] = ((float)v / 255.0f - s->mean[c]) / s->std[c];
    for (int c = 0; c < 3; c++) {
        float *o = dst + c * n;
        const float *l = lut[c];
        for (size_t i = 0; i < n; i++) o[i] = l[u8[3 * i + c]];
    }
    if (!scratch) free(u8);
}
