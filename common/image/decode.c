/*
 * decode.c: JPEG and PNG decoding to Pillow-identical RGB8 (see decode.h), and the small
 * PNG/JPEG writers the demo data set uses.
 *
 * Both libraries report fatal errors through longjmp; every decoder keeps its heap state
 * in a struct that the error path frees, so a bad file costs a message, never a crash or
 * a leak. libjpeg's "premature end of data" warning (it pads the rest with grey) is
 * treated as truncation, as Pillow refuses truncated files by default.
 */
#include "decode.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <jpeglib.h>
#include <jerror.h>

#include "check.h"
#include "fsutil.h"

void image8_free(Image8 *im) {
    free(im->data);
    memset(im, 0, sizeof *im);
}


static int pixels_ok(int64_t w, int64_t h, int64_t max_pixels, char *err, size_t errlen) {
    if (w <= 0 || h <= 0) { saev_errf(err, errlen, "image has no pixels (%lldx%lld)", (long long)w, (long long)h); return 0; }
    if (max_pixels > 0 && w * h > max_pixels) {
        saev_errf(err, errlen, "image is %lldx%lld = %lld pixels, over the limit of %lld (data.max_pixels; a decompression bomb?)",
                (long long)w, (long long)h, (long long)(w * h), (long long)max_pixels);
        return 0;
    }
    return 1;
}

/* ---- JPEG ------------------------------------------------------------------------------ */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int truncated;   /* libjpeg hit the end of the data before the image was complete */
    char msg[JMSG_LENGTH_MAX];
} JpegErr;

static void jpeg_error_exit_cb(j_common_ptr cinfo) {
    JpegErr *e = (JpegErr *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->jump, 1);
}

static void jpeg_emit_message_cb(j_common_ptr cinfo, int level) {
    JpegErr *e = (JpegErr *)cinfo->err;
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) e->truncated = 1;
}

/* Pillow's cmyk2rgb on the CMYK values it holds after "CMYK;I" (Adobe's inverted data). */
static inline uint8_t muldiv255(int a, int b) {
    int t = a * b + 128;
    return (uint8_t)(((t >> 8) + t) >> 8);
}

static int decode_jpeg(const uint8_t *buf, size_t len, int64_t max_pixels, Image8 *out, char *err, size_t errlen) {
    struct jpeg_decompress_struct cinfo;
    JpegErr jerr;
    uint8_t *volatile pixels = NULL;
    uint8_t *volatile row = NULL;
    memset(&jerr, 0, sizeof jerr);
    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = jpeg_error_exit_cb;
    jerr.pub.emit_message = jpeg_emit_message_cb;
    if (setjmp(jerr.jump)) {
        saev_errf(err, errlen, "corrupt JPEG: %s", jerr.msg);
        jpeg_destroy_decompress(&cinfo);
        free(pixels);
        free(row);
        return -1;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, buf, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);
    if (jerr.truncated) { saev_errf(err, errlen, "truncated JPEG (data ends inside the header)"); goto fail; }
    if (!pixels_ok(cinfo.image_width, cinfo.image_height, max_pixels, err, errlen)) goto fail;
    int ncomp = cinfo.num_components;
    if (ncomp == 1) cinfo.out_color_space = JCS_GRAYSCALE;
    else if (ncomp == 3) cinfo.out_color_space = JCS_RGB;
    else if (ncomp == 4) cinfo.out_color_space = JCS_CMYK; /* libjpeg converts YCCK to CMYK */
    else { saev_errf(err, errlen, "unsupported JPEG with %d components", ncomp); goto fail; }
    jpeg_start_decompress(&cinfo);
    int w = (int)cinfo.output_width, h = (int)cinfo.output_height, oc = cinfo.output_components;
    pixels = malloc((size_t)w * h * 3);
    row = malloc((size_t)w * oc);
    if (!pixels || !row) { saev_errf(err, errlen, "out of memory for a %dx%d JPEG", w, h); goto fail; }
    while (cinfo.output_scanline < cinfo.output_height) {
        uint8_t *dst = pixels + (size_t)cinfo.output_scanline * w * 3;
        if (oc == 3) {
            JSAMPROW rp = dst;
            jpeg_read_scanlines(&cinfo, &rp, 1);
            continue;
        }
        JSAMPROW rp = row;
        jpeg_read_scanlines(&cinfo, &rp, 1);
        if (oc == 1) {
            for (int x = 0; x < w; x++) dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = row[x];
        } else { /* CMYK as Adobe writes it (inverted); Pillow un-inverts ("CMYK;I") then cmyk2rgb */
            for (int x = 0; x < w; x++) {
                int nk = row[4 * x + 3]; /* 255 - K, with K = 255 - raw */
                for (int c = 0; c < 3; c++) {
                    int v = nk - muldiv255(255 - row[4 * x + c], nk);
                    dst[3 * x + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
                }
            }
        }
    }
    if (jerr.truncated) { saev_errf(err, errlen, "truncated JPEG (data ends before the image does)"); goto fail; }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(row);
    out->w = w; out->h = h; out->channels = 3; out->data = pixels;
    return 0;
fail:
    jpeg_destroy_decompress(&cinfo);
    free(pixels);
    free(row);
    return -1;
}

/* ---- PNG ------------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *buf;
    size_t len, pos;
    char msg[256];
} PngSrc;

static void png_read_cb(png_structp png, png_bytep data, png_size_t n) {
    PngSrc *s = (PngSrc *)png_get_io_ptr(png);
    if (s->pos + n > s->len) png_error(png, "truncated PNG (data ends before the image does)");
    memcpy(data, s->buf + s->pos, n);
    s->pos += n;
}

static void png_error_cb(png_structp png, png_const_charp msg) {
    PngSrc *s = (PngSrc *)png_get_error_ptr(png);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_warning_cb(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

/* mask = 1: keep 8-bit grey/palette values as they are (class ids), one channel. */
static int decode_png(const uint8_t *buf, size_t len, int64_t max_pixels, int mask, Image8 *out, char *err, size_t errlen) {
    PngSrc src = {buf, len, 0, ""};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_error_cb, png_warning_cb);
    if (!png) { saev_errf(err, errlen, "out of memory (libpng)"); return -1; }
    png_infop info = png_create_info_struct(png);
    uint8_t *volatile raw = NULL;
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (!info) { png_destroy_read_struct(&png, NULL, NULL); saev_errf(err, errlen, "out of memory (libpng)"); return -1; }
    if (setjmp(png_jmpbuf(png))) {
        saev_errf(err, errlen, "corrupt PNG: %s", src.msg);
        goto fail;
    }
    png_set_read_fn(png, &src, png_read_cb);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int depth = png_get_bit_depth(png, info), ctype = png_get_color_type(png, info);
    if (!pixels_ok(w, h, max_pixels, err, errlen)) goto fail;
    int gray16 = 0; /* Pillow: mode "I", clipped to 255 when converted */
    if (mask) {
        if (!(ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_PALETTE) || depth != 8) {
            saev_errf(err, errlen, "segmentation mask must be an 8-bit greyscale or palette PNG of class ids (got colour type %d, %d bits)", ctype, depth);
            goto fail;
        }
    } else {
        if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
        else if (depth < 8) png_set_expand_gray_1_2_4_to_8(png);
        if (depth == 16 && ctype == PNG_COLOR_TYPE_GRAY) { gray16 = 1; png_set_swap(png); }
        else if (depth == 16) png_set_strip_16(png); /* Pillow's "RGB;16B"/"RGBA;16B"/"LA;16B" keep the high byte */
    }
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int ch = png_get_channels(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    raw = malloc(rowbytes * h);
    rows = malloc(sizeof(png_bytep) * h);
    int oc = mask ? 1 : 3;
    pixels = malloc((size_t)w * h * oc);
    if (!raw || !rows || !pixels) { saev_errf(err, errlen, "out of memory for a %ux%u PNG", (unsigned)w, (unsigned)h); goto fail; }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = raw + y * rowbytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    size_t npx = (size_t)w * h;
    if (mask) memcpy(pixels, raw, npx); /* rowbytes == w for 8-bit single channel */
    else if (gray16) {
        const uint16_t *s = (const uint16_t *)raw;
        for (size_t i = 0; i < npx; i++) pixels[3 * i] = pixels[3 * i + 1] = pixels[3 * i + 2] = s[i] > 255 ? 255 : (uint8_t)s[i];
    } else {
        for (size_t i = 0; i < npx; i++) {
            const uint8_t *s = raw + i * ch;
            uint8_t *d = pixels + 3 * i;
            if (ch <= 2) d[0] = d[1] = d[2] = s[0];   /* grey, grey+alpha: alpha dropped */
            else { d[0] = s[0]; d[1] = s[1]; d[2] = s[2]; } /* RGB, RGBA: alpha dropped */
        }
    }
    png_destroy_read_struct(&png, &info, NULL);
    free(raw);
    free(rows);
    out->w = (int)w; out->h = (int)h; out->channels = oc; out->data = pixels;
    return 0;
fail:
    png_destroy_read_struct(&png, &info, NULL);
    free(raw);
    free(rows);
    free(pixels);
    return -1;
}

/* ---- dispatch -------------------------------------------------------------------------- */

static int sniff(const uint8_t *buf, size_t len, char *err, size_t errlen) {
    if (len == 0) { saev_errf(err, errlen, "empty file (0 bytes)"); return -1; }
    if (len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF) return 'J';
    if (len >= 8 && !memcmp(buf, "\x89PNG\r\n\x1a\n", 8)) return 'P';
    const char *what = "not a JPEG or PNG image";
    if (len >= 6 && (!memcmp(buf, "GIF87a", 6) || !memcmp(buf, "GIF89a", 6))) what = "GIF images are not supported (JPEG and PNG are)";
    else if (len >= 2 && !memcmp(buf, "BM", 2)) what = "BMP images are not supported (JPEG and PNG are)";
    else if (len >= 12 && !memcmp(buf, "RIFF", 4) && !memcmp(buf + 8, "WEBP", 4)) what = "WebP images are not supported (JPEG and PNG are)";
    else if (len >= 4 && (!memcmp(buf, "II*\0", 4) || !memcmp(buf, "MM\0*", 4))) what = "TIFF images are not supported (JPEG and PNG are)";
    saev_errf(err, errlen, "%s", what);
    return -1;
}

int decode_rgb_mem(const uint8_t *buf, size_t len, int64_t max_pixels, Image8 *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    int kind = sniff(buf, len, err, errlen);
    if (kind == 'J') return decode_jpeg(buf, len, max_pixels, out, err, errlen);
    if (kind == 'P') return decode_png(buf, len, max_pixels, 0, out, err, errlen);
    return -1;
}

/* An image file's bytes. Only regular files: opening a FIFO named like an image would
 * wait for a writer forever, and a device could stream without end. */
static uint8_t *read_image_file(const char *path, size_t *len, char *err, size_t errlen) {
    struct stat sb;
    if (stat(path, &sb) != 0) { saev_errf(err, errlen, "%s: cannot open: %s", path, strerror(errno)); return NULL; }
    if (!S_ISREG(sb.st_mode)) {
        saev_errf(err, errlen, "%s: not a regular file (%s)", path, S_ISDIR(sb.st_mode) ? "a folder" : S_ISFIFO(sb.st_mode) ? "a FIFO" : "a device or socket");
        return NULL;
    }
    return (uint8_t *)read_file(path, len, err, errlen);
}

int decode_rgb_file(const char *path, int64_t max_pixels, Image8 *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    size_t len;
    uint8_t *buf = read_image_file(path, &len, err, errlen);
    if (!buf) return -1;
    char why[512];
    int rc = decode_rgb_mem(buf, len, max_pixels, out, why, sizeof why);
    free(buf);
    if (rc) saev_errf(err, errlen, "%s: %s", path, why);
    return rc;
}

int decode_mask_file(const char *path, int64_t max_pixels, Image8 *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    size_t len;
    uint8_t *buf = read_image_file(path, &len, err, errlen);
    if (!buf) return -1;
    char why[512];
    int rc = -1;
    int kind = sniff(buf, len, why, sizeof why);
    if (kind == 'P') rc = decode_png(buf, len, max_pixels, 1, out, why, sizeof why);
    else if (kind == 'J') snprintf(why, sizeof why, "segmentation masks must be PNG (JPEG compression would change class ids)");
    free(buf);
    if (rc) saev_errf(err, errlen, "%s: %s", path, why);
    return rc;
}

/* ---- writers --------------------------------------------------------------------------- */

/* Growing output buffer for encode_png_mem. */
typedef struct {
    uint8_t *data; // [cap] bytes written so far: len
    size_t len, cap;
} PngSink;

static void png_sink_write(png_structp png, png_bytep data, png_size_t n) {
    PngSink *k = (PngSink *)png_get_io_ptr(png);
    if (k->len + n > k->cap) {
        size_t cap = k->cap ? k->cap : 4096;
        while (cap < k->len + n) cap *= 2;
        uint8_t *p = realloc(k->data, cap);
        if (!p) png_error(png, "out of memory");
        k->data = p;
        k->cap = cap;
    }
    memcpy(k->data + k->len, data, n);
    k->len += n;
}

static void png_sink_flush(png_structp png) { (void)png; }

uint8_t *encode_png_mem(const Image8 *im, size_t *len, char *err, size_t errlen) {
    PngSrc src = {0};
    PngSink sink = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &src, png_error_cb, png_warning_cb);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info || setjmp(png_jmpbuf(png))) {
        saev_errf(err, errlen, "PNG encoding failed: %s", src.msg);
        png_destroy_write_struct(&png, &info);
        free(sink.data);
        return NULL;
    }
    png_set_write_fn(png, &sink, png_sink_write, png_sink_flush);
    png_set_IHDR(png, info, im->w, im->h, 8, im->channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < im->h; y++) png_write_row(png, im->data + (size_t)y * im->w * im->channels);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    *len = sink.len;
    return sink.data;
}

int write_png(const char *path, const Image8 *im, char *err, size_t errlen) {
    size_t len;
    uint8_t *png = encode_png_mem(im, &len, err, errlen);
    if (!png) {
        char why[256];
        snprintf(why, sizeof why, "%s", err ? err : "");
        saev_errf(err, errlen, "%s: %s", path, why);
        return -1;
    }
    int rc = write_file_atomic(path, png, len, err, errlen);
    free(png);
    return rc;
}

int write_jpeg(const char *path, const Image8 *im, int quality, char *err, size_t errlen) {
    AtomicFile out;
    if (atomic_file_open(&out, path, err, errlen)) return -1;
    FILE *f = out.f;
    struct jpeg_compress_struct cinfo;
    JpegErr jerr;
    memset(&jerr, 0, sizeof jerr);
    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = jpeg_error_exit_cb;
    if (setjmp(jerr.jump)) {
        saev_errf(err, errlen, "%s: JPEG write failed: %s", path, jerr.msg);
        jpeg_destroy_compress(&cinfo);
        atomic_file_abort(&out);
        return -1;
    }
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, f);
    cinfo.image_width = im->w;
    cinfo.image_height = im->h;
    cinfo.input_components = im->channels;
    cinfo.in_color_space = im->channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW rp = im->data + (size_t)cinfo.next_scanline * im->w * im->channels;
        jpeg_write_scanlines(&cinfo, &rp, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    return atomic_file_commit(&out, err, errlen);
}
