/*
 * cmd_forward.c: `saev forward`: one ViT forward on a pixel tensor file.
 *
 * Reads `pixel_values` [B, C, H, W] (already normalized; any float dtype) and writes,
 * atomically, either every hidden state in transformers' layout — `hidden_states`
 * [L+1, B, T, D] (index 0 = input to block 0, i+1 = after block i) and
 * `last_hidden_state` [B, T, D] — or, with --layers, `layers` [n, B, T, D] for the
 * requested blocks (metadata `layers` lists them resolved). T counts CLS (if any) then
 * patches in raster order; register tokens are dropped. This is how the fixtures are
 * checked and a handy debugging tool.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "commands.h"
#include "config_args.h"
#include "log.h"
#include "safetensors.h"
#include "vit/vit.h"

static int usage(FILE *out, int code) {
    fprintf(out,
            "usage: saev forward --model PATH --pixels X.safetensors --out Y.safetensors\n"
            "                    [--config config.json] [--layers 0,-2,...] [--batch N] [--device auto|cpu|cuda]\n"
            "                    [--family clip|dinov2|siglip] [--heads N] [--patch-size N] [--image-size N]\n"
            "                    [--registers N] [--act gelu|gelu_pytorch_tanh|quick_gelu] [--eps E]\n\n"
            "PATH is a .safetensors file or a folder holding one plus config.json. Without --layers the\n"
            "output holds hidden_states [L+1,B,T,D] and last_hidden_state [B,T,D]; with --layers (blocks,\n"
            "negative from the end) it holds layers [n,B,T,D]. Tokens: CLS (if any), then patches.\n");
    return code;
}

/* "3,-2,5" -> blocks; returns the count or -1. */
static int parse_layers(const char *text, int *blocks, int cap) {
    int n = 0;
    const char *p = text;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || (*end && *end != ',') || n >= cap || v < -100000 || v > 100000) {
            fprintf(stderr, "saev forward: --layers wants comma-separated block numbers (e.g. 0,-2), got \"%s\"\n", text);
            return -1;
        }
        blocks[n++] = (int)v;
        p = *end ? end + 1 : end;
    }
    if (!n) fprintf(stderr, "saev forward: --layers is empty\n");
    return n ? n : -1;
}

/* What the command line asks for. */
typedef struct {
    VitSpec spec;             // the model and its overrides
    const char *pixels_path;  // safetensors with pixel_values [B, C, H, W]
    const char *out_path;
    const char *layers_text;  // --layers, or NULL for every hidden state
    Device device;
    int batch;                // images per forward call
} ForwardArgs;

/* 0, or the exit status (help: 0 after printing it, -1 returned as "done"). */
static int parse_forward_args(int argc, char **argv, ForwardArgs *f) {
    memset(f, 0, sizeof *f);
    vit_spec_init(&f->spec);
    f->batch = 32;
    const char *device_text = "auto";
    VitSpec *spec = &f->spec;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout, 0); return -1; }
        if (i + 1 >= argc) {
            fprintf(stderr, "saev forward: %s needs a value\n", a);
            return usage(stderr, 2);
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--model")) spec->path = v;
        else if (!strcmp(a, "--config")) spec->config_path = v;
        else if (!strcmp(a, "--pixels")) f->pixels_path = v;
        else if (!strcmp(a, "--out")) f->out_path = v;
        else if (!strcmp(a, "--layers")) f->layers_text = v;
        else if (!strcmp(a, "--device")) device_text = v;
        else if (!strcmp(a, "--batch")) f->batch = (int)flag_int_or_die("saev forward", a, v, 1, 1 << 20);
        else if (!strcmp(a, "--heads")) spec->n_heads = (int)flag_int_or_die("saev forward", a, v, 1, 1 << 16);
        else if (!strcmp(a, "--patch-size")) spec->patch_size = (int)flag_int_or_die("saev forward", a, v, 1, 1 << 16);
        else if (!strcmp(a, "--image-size")) spec->image_size = (int)flag_int_or_die("saev forward", a, v, 1, 1 << 20);
        else if (!strcmp(a, "--registers")) spec->n_registers = (int)flag_int_or_die("saev forward", a, v, 0, 1 << 16);
        else if (!strcmp(a, "--family")) {
            VitFamily fam;
            if (vit_family_from_name(v, &fam)) saev_usage_fail("saev forward: unknown family \"%s\" (clip, dinov2, siglip)", v);
            spec->family = (int)fam;
        } else if (!strcmp(a, "--act")) {
            VitAct act;
            if (vit_act_from_name(v, &act))
                saev_usage_fail("saev forward: unknown activation \"%s\" (gelu, gelu_pytorch_tanh, quick_gelu)", v);
            spec->act = (int)act;
        } else if (!strcmp(a, "--eps")) {
            char *end;
            spec->ln_eps = strtod(v, &end);
            if (!*v || *end || !(spec->ln_eps > 0)) saev_usage_fail("saev forward: --eps wants a positive number, got \"%s\"", v);
        } else {
            fprintf(stderr, "saev forward: unknown option \"%s\"\n", a);
            return usage(stderr, 2);
        }
    }
    if (!spec->path || !f->pixels_path || !f->out_path) {
        fprintf(stderr, "saev forward: --model, --pixels and --out are required\n");
        return usage(stderr, 2);
    }
    if (device_parse(device_text, &f->device)) saev_usage_fail("saev forward: --device wants auto, cpu or cuda, got \"%s\"", device_text);
    return 0;
}

/* The hidden states to return: --layers resolved, else 0..L and last_hidden_state.
 * Returns their count; *hidden malloc'd. */
static int forward_outputs(const VitConfig *c, const char *layers_text, int **hidden) {
    char err[1024];
    if (!layers_text) {
        int n = c->n_layers + 2;
        *hidden = mallocCheck(sizeof(int) * (size_t)n);
        for (int i = 0; i < n; i++) (*hidden)[i] = i; /* 0..L, then last_hidden_state */
        return n;
    }
    int blocks[1024], n = parse_layers(layers_text, blocks, 1024);
    if (n < 0) saev_exit(SAEV_EXIT_USAGE); /* parse_layers printed why */
    *hidden = mallocCheck(sizeof(int) * (size_t)n);
    if (vit_resolve_layers(c, blocks, n, *hidden, err, sizeof err)) saev_usage_fail("saev forward: --layers: %s", err);
    return n;
}

/* pixel_values [B, C, H, W] as float32 (malloc'd), checked against the model. */
static float *read_pixels(const char *path, const Vit *vit, int *B, int *H, int *W) {
    const VitConfig *c = &vit->cfg;
    char err[4096];
    SafeTensors px;
    if (st_open(&px, path, err, sizeof err)) saev_fail("saev forward: %s", err);
    const StTensor *pt = st_find(&px, "pixel_values");
    if (!pt || pt->ndim != 4 || pt->shape[1] != c->n_channels || pt->shape[0] < 1 ||
        (pt->dtype != ST_F32 && pt->dtype != ST_F16 && pt->dtype != ST_BF16 && pt->dtype != ST_F64))
        saev_fail("saev forward: %s: needs a float tensor \"pixel_values\" [B, %d, H, W]%s", path, c->n_channels,
                  pt ? " (the one there has another shape or dtype)" : " (none there)");
    *B = (int)pt->shape[0], *H = (int)pt->shape[2], *W = (int)pt->shape[3];
    if (*H < c->patch_size || *W < c->patch_size)
        saev_fail("saev forward: %s: %dx%d images are smaller than one %d-pixel patch", path, *H, *W, c->patch_size);
    int gh = vit_grid(c, *H), gw = vit_grid(c, *W);
    if (c->family != VIT_DINOV2 && gh * gw + vit_has_cls(c) != vit->n_pos)
        saev_fail("saev forward: %s: %dx%d images give a %dx%d patch grid but this %s model's position table is for %dx%d images", path,
                  *H, *W, gh, gw, vit_family_name(c->family), c->image_size, c->image_size);
    float *pixels = mallocCheck(sizeof(float) * pt->numel);
    st_to_f32(pt, pixels);
    st_close(&px);
    return pixels;
}

/* The n requested hidden states of B images, `batch` images a forward: out [n, B, T, D]. */
static void forward_chunks(Vit *vit, const float *pixels, int B, int H, int W, const int *hidden, int n, int batch, float *out) {
    const VitConfig *c = &vit->cfg;
    size_t per_img = (size_t)vit_tokens_out(c, H, W) * c->d_model, img = (size_t)c->n_channels * H * W;
    int chunk = batch < B ? batch : B;
    float *part = mallocCheck(sizeof(float) * n * chunk * per_img);
    for (int b0 = 0; b0 < B; b0 += chunk) {
        int nb = B - b0 < chunk ? B - b0 : chunk;
        vit_forward(vit, pixels + b0 * img, nb, H, W, hidden, n, part);
        for (int i = 0; i < n; i++) /* [n, nb, T, D] chunk into [n, B, T, D] */
            memcpy(out + ((size_t)i * B + b0) * per_img, part + (size_t)i * nb * per_img, sizeof(float) * nb * per_img);
    }
    free(part);
}

int cmd_forward(int argc, char **argv) {
    ForwardArgs f;
    int rc = parse_forward_args(argc, argv, &f);
    if (rc) return rc < 0 ? 0 : rc;
    char err[4096];
    Vit vit;
    if (vit_open(&vit, &f.spec, err, sizeof err)) saev_fail("saev forward: %s", err);
    if (vit_set_device(&vit, f.device, err, sizeof err)) saev_fail("saev forward: %s", err);
    const VitConfig *c = &vit.cfg;
    int *hidden, n = forward_outputs(c, f.layers_text, &hidden), L = c->n_layers;
    int B, H, W;
    float *pixels = read_pixels(f.pixels_path, &vit, &B, &H, &W);
    int T = vit_tokens_out(c, H, W), D = c->d_model;
    size_t per_img = (size_t)T * D;
    float *out = mallocCheck(sizeof(float) * n * B * per_img);
    double t0 = saev_now();
    forward_chunks(&vit, pixels, B, H, W, hidden, n, f.batch, out);
    double secs = saev_now() - t0;

    StWriter w;
    st_writer_init(&w);
    char meta_layers[8192] = "";
    if (f.layers_text) {
        int64_t shape[4] = {n, B, T, D};
        st_writer_add(&w, "layers", ST_F32, 4, shape, out);
        for (int i = 0; i < n; i++) snprintf(meta_layers + strlen(meta_layers), sizeof meta_layers - strlen(meta_layers), "%s%d", i ? "," : "", hidden[i] - 1);
        st_writer_meta(&w, "layers", meta_layers);
    } else {
        int64_t shape[4] = {L + 1, B, T, D}, last[3] = {B, T, D};
        st_writer_add(&w, "hidden_states", ST_F32, 4, shape, out);
        st_writer_add(&w, "last_hidden_state", ST_F32, 3, last, out + (size_t)(L + 1) * B * per_img);
    }
    st_writer_meta(&w, "model", vit.source);
    st_writer_meta(&w, "family", vit_family_name(c->family));
    st_writer_meta(&w, "tokens", vit_has_cls(c) ? "cls,patches" : "patches");
    if (st_writer_write(&w, f.out_path, err, sizeof err)) saev_fail("saev forward: %s", err);
    log_info("%s: %d images (%dx%d), %d tokens x %d, %s in %.2f s", f.out_path, B, H, W, T, D,
             f.layers_text ? meta_layers : "all hidden states", secs);
    st_writer_free(&w);
    free(out);
    free(pixels);
    free(hidden);
    vit_free(&vit);
    return 0;
}
