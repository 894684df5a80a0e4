/*
 * cmd_preprocess.c: `saev preprocess --pipeline clip|dinov2|siglip IMAGE --out X.safetensors`:
 * decodes one image and writes the model input, [3,H,W] float32 under `pixel_values`,
 * exactly as the data loader would produce it. Every pipeline setting can be overridden
 * with a flag (the same names as the YAML keys under preprocess:).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config_args.h"
#include "commands.h"
#include "image/decode.h"
#include "image/preprocess.h"
#include "safetensors.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: saev preprocess --pipeline clip|dinov2|siglip IMAGE --out X.safetensors [overrides]\n\n"
            "Decodes IMAGE (JPEG or PNG) and writes the model input [3,H,W] float32 as `pixel_values`.\n\n"
            "overrides (default: the pipeline's):\n"
            "  --resize shortest|exact|none   --size N   --width W --height H (with --resize exact)\n"
            "  --interpolation bicubic|bilinear|nearest   --crop N (0 = none)\n"
            "  --mean R,G,B   --std R,G,B   --max-pixels N (default 89478485, 0 = no limit)\n");
}

static void parse_floats3(const char *flag, const char *v, CfgList *out, double *store) {
    char *end;
    const char *p = v;
    for (int i = 0; i < 3; i++) {
        errno = 0;
        store[i] = strtod(p, &end);
        if (errno || end == p || (i < 2 && *end != ',') || (i == 2 && *end)) saev_usage_fail("%s: \"%s\" is not three numbers R,G,B", flag, v);
        p = end + 1;
    }
    out->n = 3;
    out->f = store;
}

int cmd_preprocess(int argc, char **argv) {
    PreprocessConfig c = {0};
    c.size = c.width = c.height = c.crop = CFG_UNSET_INT;
    const char *image = NULL, *out = NULL;
    int64_t max_pixels = 89478485;
    double mean[3], std[3];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (a[0] == '-' && a[1] == '-') {
            if (i + 1 >= argc) saev_usage_fail("%s needs a value (saev preprocess --help)", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--pipeline")) c.pipeline = (char *)v;
            else if (!strcmp(a, "--out")) out = v;
            else if (!strcmp(a, "--resize")) c.resize = (char *)v;
            else if (!strcmp(a, "--size")) c.size = flag_int_or_die("saev preprocess", a, v, 0, INT64_MAX);
            else if (!strcmp(a, "--width")) c.width = flag_int_or_die("saev preprocess", a, v, 0, INT64_MAX);
            else if (!strcmp(a, "--height")) c.height = flag_int_or_die("saev preprocess", a, v, 0, INT64_MAX);
            else if (!strcmp(a, "--interpolation")) c.interpolation = (char *)v;
            else if (!strcmp(a, "--crop")) c.crop = flag_int_or_die("saev preprocess", a, v, 0, INT64_MAX);
            else if (!strcmp(a, "--mean")) parse_floats3(a, v, &c.mean, mean);
            else if (!strcmp(a, "--std")) parse_floats3(a, v, &c.std, std);
            else if (!strcmp(a, "--max-pixels")) max_pixels = flag_int_or_die("saev preprocess", a, v, 0, INT64_MAX);
            else saev_usage_fail("unknown flag %s (saev preprocess --help)", a);
        } else if (!image) image = a;
        else saev_usage_fail("one IMAGE only (got \"%s\" and \"%s\")", image, a);
    }
    if (!image || !out || !c.pipeline) { usage(stderr); return SAEV_EXIT_USAGE; }
    PreprocessSpec spec;
    char err[1024];
    if (preprocess_resolve(&c, &spec, err, sizeof err)) saev_usage_fail("preprocess: %s", err);
    Image8 im;
    if (decode_rgb_file(image, max_pixels, &im, err, sizeof err)) saev_fail("%s", err);
    int ow, oh;
    preprocess_out_size(&spec, im.w, im.h, &ow, &oh);
    float *px = mallocCheck(sizeof(float) * 3 * (size_t)ow * oh);
    preprocess_image(&spec, &im, px, NULL);
    StWriter w;
    st_writer_init(&w);
    int64_t shape[3] = {3, oh, ow};
    st_writer_add(&w, "pixel_values", ST_F32, 3, shape, px);
    char meta[256];
    st_writer_meta(&w, "source", image);
    st_writer_meta(&w, "pipeline", c.pipeline);
    snprintf(meta, sizeof meta, "resize=%s size=%d width=%d height=%d interpolation=%s crop=%dx%d", resize_name(spec.resize), spec.size,
             spec.width, spec.height, interp_name(spec.interp), spec.crop_w, spec.crop_h);
    st_writer_meta(&w, "settings", meta);
    st_writer_write_or_die(&w, out);
    st_writer_free(&w);
    printf("%s: %dx%d -> pixel_values [3, %d, %d] in %s\n", image, im.w, im.h, oh, ow, out);
    free(px);
    image8_free(&im);
    return 0;
}
