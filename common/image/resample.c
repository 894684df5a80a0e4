/*
 * resample.c: Pillow's resampler (see resample.h). The arithmetic mirrors Pillow's
 * libImaging/Resample.c (precompute_coeffs, normalize_coeffs_8bpc, the 8bpc passes) and
 * Geometry.c (ImagingScaleAffine for nearest) so that results agree exactly; the code is
 * our own, organised around a crop window.
 */
#include "resample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define PRECISION_BITS (32 - 8 - 2)

static double filter_bilinear(double x) {
    if (x < 0.0) x = -x;
    if (x < 1.0) return 1.0 - x;
    return 0.0;
}

static double filter_bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/* Taps of output coordinates [first, first+count) of a 1-D resize in_size -> out_size:
 * tap_start[i], tap_n[i] and coefficients kk[i*ksize .. +tap_n[i]] in fixed point. */
typedef struct {
    int ksize;      /* max taps per output coordinate */
    int *tap_start; /* [count] first input coordinate */
    int *tap_n;     /* [count] number of taps */
    int32_t *kk;    /* [count, ksize] fixed-point coefficients */
} Taps;

static void taps_build(Taps *t, int in_size, int out_size, Interp interp, int first, int count) {
    double (*filter)(double) = interp == INTERP_BICUBIC ? filter_bicubic : filter_bilinear;
    double base_support = interp == INTERP_BICUBIC ? 2.0 : 1.0;
    /* Pillow's box is float (0, 0, in, out); in1 - in0 is exact for these sizes. */
    float in0 = 0.0f, in1 = (float)in_size;
    double scale = (double)(in1 - in0) / out_size, filterscale = scale;
    if (filterscale < 1.0) filterscale = 1.0;
    double support = base_support * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    t->ksize = ksize;
    t->tap_start = mallocCheck(sizeof(int) * count);
    t->tap_n = mallocCheck(sizeof(int) * count);
    t->kk = mallocCheck(sizeof(int32_t) * (size_t)count * ksize);
    double *k = mallocCheck(sizeof(double) * ksize);
    for (int i = 0; i < count; i++) {
        int xx = first + i;
        double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            double w = filter((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (int x = 0; x < xmax; x++)
            if (ww != 0.0) k[x] /= ww;
        int32_t *kq = t->kk + (size_t)i * ksize;
        for (int x = 0; x < ksize; x++) {
            double v = x < xmax ? k[x] : 0.0;
            kq[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS)) : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
        }
        t->tap_start[i] = xmin;
        t->tap_n[i] = xmax;
    }
    free(k);
}

static void taps_free(Taps *t) {
    free(t->tap_start);
    free(t->tap_n);
    free(t->kk);
}

static inline uint8_t clip8(int32_t v) {
    v >>= PRECISION_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Horizontal pass over rows [row0, row0+nrows) of src into tmp [nrows, win_w, C].
 * Eight rows go together: they share every output column's taps, so with the rows
 * transposed into lanes (blk[(x*C + c)*8 + r]) the tap loop is 8-wide integer SIMD.
 * The arithmetic per value is unchanged (same int32 products and sums, same order). */
#define HROWS 8
static inline __attribute__((always_inline)) void pass_horizontal_c(const uint8_t *src, int src_w, const int C, int row0, int nrows, const Taps *t, int win_w, uint8_t *tmp) {
    /* Only the source columns some tap reads need transposing. */
    int xlo = t->tap_start[0], xhi = xlo;
    for (int i = 0; i < win_w; i++) {
        if (t->tap_start[i] < xlo) xlo = t->tap_start[i];
        if (t->tap_start[i] + t->tap_n[i] > xhi) xhi = t->tap_start[i] + t->tap_n[i];
    }
    int span = xhi - xlo;
    int32_t *blk = mallocCheck(sizeof(int32_t) * (size_t)span * C * HROWS);
    for (int y0 = 0; y0 < nrows; y0 += HROWS) {
        int nr = nrows - y0 < HROWS ? nrows - y0 : HROWS;
        for (int r = 0; r < HROWS; r++) {
            const uint8_t *in = src + ((size_t)(row0 + y0 + (r < nr ? r : nr - 1)) * src_w + xlo) * C;
            for (int j = 0; j < span * C; j++) blk[(size_t)j * HROWS + r] = in[j];
        }
        for (int i = 0; i < win_w; i++) {
            const int32_t *k = t->kk + (size_t)i * t->ksize;
            const int32_t *p = blk + (size_t)(t->tap_start[i] - xlo) * C * HROWS;
            int32_t acc[3][HROWS];
            for (int c = 0; c < C; c++)
                for (int r = 0; r < HROWS; r++) acc[c][r] = 1 << (PRECISION_BITS - 1);
            for (int x = 0, n = t->tap_n[i]; x < n; x++) {
                int32_t kx = k[x];
                const int32_t *q = p + (size_t)x * C * HROWS;
                if (C == 3) {
                    for (int r = 0; r < HROWS; r++) {
                        acc[0][r] += q[r] * kx;
                        acc[1][r] += q[HROWS + r] * kx;
                        acc[2][r] += q[2 * HROWS + r] * kx;
                    }
                } else {
                    for (int r = 0; r < HROWS; r++) acc[0][r] += q[r] * kx;
                }
            }
            for (int r = 0; r < nr; r++)
                for (int c = 0; c < C; c++) tmp[((size_t)(y0 + r) * win_w + i) * C + c] = clip8(acc[c][r]);
        }
    }
    free(blk);
}

static void pass_horizontal(const uint8_t *src, int src_w, int C, int row0, int nrows, const Taps *t, int win_w, uint8_t *tmp) {
    if (C == 3) pass_horizontal_c(src, src_w, 3, row0, nrows, t, win_w, tmp);
    else pass_horizontal_c(src, src_w, 1, row0, nrows, t, win_w, tmp);
}

/* Vertical pass: rows of tmp (row r holds source row row0 + r) into dst [win_h, rowlen]. */
static void pass_vertical(const uint8_t *tmp, int rowlen, int row0, const Taps *t, int win_h, uint8_t *dst, int32_t *acc) {
    for (int j = 0; j < win_h; j++) {
        const int32_t *k = t->kk + (size_t)j * t->ksize;
        const uint8_t *base = tmp + (size_t)(t->tap_start[j] - row0) * rowlen;
        for (int i = 0; i < rowlen; i++) acc[i] = 1 << (PRECISION_BITS - 1);
        for (int y = 0, n = t->tap_n[j]; y < n; y++) {
            const uint8_t *r = base + (size_t)y * rowlen;
            int32_t ky = k[y];
            for (int i = 0; i < rowlen; i++) acc[i] += r[i] * ky;
        }
        uint8_t *out = dst + (size_t)j * rowlen;
        for (int i = 0; i < rowlen; i++) out[i] = clip8(acc[i]);
    }
}

/* Pillow's ImagingScaleAffine with nearest: source coordinate of each output pixel,
 * stepped in double from a[2] + a[0]*0.5, truncated. */
static void nearest_table(int in_size, int out_size, int first, int count, int *tab) {
    double a = (double)(float)in_size / out_size; /* (box[2]-box[0]) / xsize with a float box */
    double xo = a * 0.5;
    for (int x = 0; x < first + count; x++) {
        if (x >= first) {
            int xin = xo < 0.0 ? -1 : (int)xo;
            if (xin < 0) xin = 0;
            if (xin >= in_size) xin = in_size - 1;
            tab[x - first] = xin;
        }
        xo += a;
    }
}

void resample_window(const Image8 *src, int out_w, int out_h, Interp interp,
                     int x0, int y0, int win_w, int win_h, uint8_t *dst) {
    const int C = src->channels;
    if (x0 < 0 || y0 < 0 || win_w <= 0 || win_h <= 0 || x0 + win_w > out_w || y0 + win_h > out_h)
        saev_fail("resample_window: window %dx%d at (%d,%d) outside a %dx%d image", win_w, win_h, x0, y0, out_w, out_h);
    if (interp == INTERP_NEAREST || (out_w == src->w && out_h == src->h)) {
        /* Pillow copies when the size does not change; nearest picks one pixel each. */
        int *xt = mallocCheck(sizeof(int) * win_w), *yt = mallocCheck(sizeof(int) * win_h);
        if (out_w == src->w && out_h == src->h) {
            for (int i = 0; i < win_w; i++) xt[i] = x0 + i;
            for (int j = 0; j < win_h; j++) yt[j] = y0 + j;
        } else {
            nearest_table(src->w, out_w, x0, win_w, xt);
            nearest_table(src->h, out_h, y0, win_h, yt);
        }
        for (int j = 0; j < win_h; j++) {
            const uint8_t *in = src->data + (size_t)yt[j] * src->w * C;
            uint8_t *out = dst + (size_t)j * win_w * C;
            for (int i = 0; i < win_w; i++)
                for (int c = 0; c < C; c++) out[i * C + c] = in[xt[i] * C + c];
        }
        free(xt);
        free(yt);
        return;
    }
    int need_h = out_w != src->w, need_v = out_h != src->h;
    Taps th = {0}, tv = {0};
    /* Rows of the source the vertical pass reads (all rows of the window if no vertical pass). */
    int row0 = y0, nrows = win_h;
    if (need_v) {
        taps_build(&tv, src->h, out_h, interp, y0, win_h);
        row0 = tv.tap_start[0];
        int last = row0;
        for (int j = 0; j < win_h; j++) if (tv.tap_start[j] + tv.tap_n[j] > last) last = tv.tap_start[j] + tv.tap_n[j];
        nrows = last - row0;
    }
    const uint8_t *hsrc;
    int hrow0;        /* source row held by hsrc's row 0 */
    int hstride_w;    /* hsrc width in pixels */
    int hx0;          /* column offset of the window inside hsrc */
    uint8_t *tmp = NULL;
    if (need_h) {
        taps_build(&th, src->w, out_w, interp, x0, win_w);
        tmp = mallocCheck((size_t)nrows * win_w * C);
        pass_horizontal(src->data, src->w, C, row0, nrows, &th, win_w, tmp);
        hsrc = tmp; hrow0 = row0; hstride_w = win_w; hx0 = 0;
    } else {
        hsrc = src->data; hrow0 = 0; hstride_w = src->w; hx0 = x0;
    }
    if (need_v) {
        if (hstride_w == win_w) {
            int32_t *acc = mallocCheck(sizeof(int32_t) * (size_t)win_w * C);
            pass_vertical(hsrc, win_w * C, hrow0, &tv, win_h, dst, acc);
            free(acc);
        } else { /* no horizontal pass and a narrower window: gather the window's columns first */
            uint8_t *cols = mallocCheck((size_t)nrows * win_w * C);
            for (int r = 0; r < nrows; r++)
                memcpy(cols + (size_t)r * win_w * C, hsrc + ((size_t)(row0 + r) * hstride_w + hx0) * C, (size_t)win_w * C);
            int32_t *acc = mallocCheck(sizeof(int32_t) * (size_t)win_w * C);
            pass_vertical(cols, win_w * C, row0, &tv, win_h, dst, acc);
            free(acc);
            free(cols);
        }
    } else { /* horizontal only: tmp rows are source rows y0.. */
        memcpy(dst, tmp, (size_t)win_h * win_w * C);
    }
    free(tmp);
    taps_free(&th);
    taps_free(&tv);
}
