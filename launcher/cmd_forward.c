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

int cmd_forward(int argc, char **argv) {
    VitSpec spec;
    vit_spec_init(&spec);
    const char *pixels_path = NULL, *out_path = NULL, *layers_text = NULL, *device_text = "auto";
    int batch = 32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout, 0);
        if (i + 1 >= argc) {
            fprintf(stderr, "saev forward: %s needs a value\n", a);
            return usage(stderr, 2);
        }
        const char *v = argv[++i];
        int rc = 0;
        if (!strcmp(a, "--model")) spec.path = v;
        else if (!strcmp(a, "--config")) spec.config_path = v;
        else if (!strcmp(a, "--pixels")) pixels_path = v;
        else if (!strcmp(a, "--out")) out_path = v;
        else if (!strcmp(a, "--layers")) layers_text = v;
        else if (!strcmp(a, "--device")) device_text = v;
        else if (!strcmp(a, "--batch")) batch = (int)flag_int_or_die("saev forward", a, v, 1, 1 << 20);
        else if (!strcmp(a, "--heads")) spec.n_heads = (int)flag_int_or_die("saev forward", a, v, 1, 1 << 16);
        else if (!strcmp(a, "--patch-size")) spec.patch_size = (int)flag_int_or_die("saev forward", a, v, 1, 1 << 16);
        else if (!strcmp(a, "--image-size")) spec.image_size = (int)flag_int_or_die("saev forward", a, v, 1, 1 << 20);
        else if (!strcmp(a, "--registers")) spec.n_registers = (int)flag_int_or_die("saev forward", a, v, 0, 1 << 16);
        else if (!strcmp(a, "--family")) {
            VitFamily f;
            if (vit_family_from_name(v, &f)) {
                fprintf(stderr, "saev forward: unknown family \"%s\" (clip, dinov2, siglip)\n", v);
                return 2;
            }
            spec.family = (int)f;
        } else if (!strcmp(a, "--act")) {
            VitAct act;
            if (vit_act_from_name(v, &act)) {
                fprintf(stderr, "saev forward: unknown activation \"%s\" (gelu, gelu_pytorch_tanh, quick_gelu)\n", v);
                return 2;
            }
            spec.act = (int)act;
        } else if (!strcmp(a, "--eps")) {
            char *end;
            spec.ln_eps = strtod(v, &end);
            if (!*v || *end || !(spec.ln_eps > 0)) {
                fprintf(stderr, "saev forward: --eps wants a positive number, got \"%s\"\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "saev forward: unknown option \"%s\"\n", a);
            return usage(stderr, 2);
        }
        if (rc) return 2;
    }
    if (!spec.path || !pixels_path || !out_path) {
        fprintf(stderr, "saev forward: --model, --pixels and --out are required\n");
        return usage(stderr, 2);
    }
    Device device;
    if (device_parse(device_text, &device)) {
        fprintf(stderr, "saev forward: --device wants auto, cpu or cuda, got \"%s\"\n", device_text);
        return 2;
    }
    int blocks[1024], n_blocks = 0;
    if (layers_text && (n_blocks = parse_layers(layers_text, blocks, 1024)) < 0) return 2;

    char err[4096];
    Vit vit;
    if (vit_open(&vit, &spec, err, sizeof err)) {
        fprintf(stderr, "saev forward: %s\n", err);
        return 1;
    }
    if (vit_set_device(&vit, device, err, sizeof err)) {
        fprintf(stderr, "saev forward: %s\n", err);
        vit_free(&vit);
        return 1;
    }
    const VitConfig *c = &vit.cfg;
    int L = c->n_layers, n = layers_text ? n_blocks : L + 2;
    int *hidden = mallocCheck(sizeof(int) * n);
    if (layers_text) {
        if (vit_resolve_layers(c, blocks, n_blocks, hidden, err, sizeof err)) {
            fprintf(stderr, "saev forward: --layers: %s\n", err);
            vit_free(&vit);
            free(hidden);
            return 2;
        }
    } else {
        for (int i = 0; i < n; i++) hidden[i] = i; /* 0..L, then last_hidden_state */
    }

    SafeTensors px;
    if (st_open(&px, pixels_path, err, sizeof err)) {
        fprintf(stderr, "saev forward: %s\n", err);
        vit_free(&vit);
        free(hidden);
        return 1;
    }
    const StTensor *pt = st_find(&px, "pixel_values");
    if (!pt || pt->ndim != 4 || pt->shape[1] != c->n_channels || pt->shape[0] < 1 ||
        (pt->dtype != ST_F32 && pt->dtype != ST_F16 && pt->dtype != ST_BF16 && pt->dtype != ST_F64)) {
        fprintf(stderr, "saev forward: %s: needs a float tensor \"pixel_values\" [B, %d, H, W]%s\n", pixels_path, c->n_channels,
                pt ? " (the one there has another shape or dtype)" : " (none there)");
        st_close(&px);
        vit_free(&vit);
        free(hidden);
        return 1;
    }
    int B = (int)pt->shape[0], H = (int)pt->shape[2], W = (int)pt->shape[3];
    if (H < c->patch_size || W < c->patch_size) {
        fprintf(stderr, "saev forward: %s: %dx%d images are smaller than one %d-pixel patch\n", pixels_path, H, W, c->patch_size);
        st_close(&px);
        vit_free(&vit);
        free(hidden);
        return 1;
    }
    float *pixels = mallocCheck(sizeof(float) * pt->numel);
    st_to_f32(pt, pixels);
    st_close(&px);
    int gh = vit_grid(c, H), gw = vit_grid(c, W);
    if (c->family != VIT_DINOV2 && gh * gw + vit_has_cls(c) != vit.n_pos) {
        int side = c->image_size;
        fprintf(stderr, "saev forward: %s: %dx%d images give a %dx%d patch grid but this %s model's position table is for %dx%d images\n",
                pixels_path, H, W, gh, gw, vit_family_name(c->family), side, side);
        free(pixels);
        vit_free(&vit);
        free(hidden);
        return 1;
    }

    int T = vit_tokens_out(c, H, W), D = c->d_model;
    size_t per_img = (size_t)T * D, img = (size_t)c->n_channels * H * W;
    float *out = mallocCheck(sizeof(float) * n * B * per_img);
    int chunk = batch < B ? batch : B;
    float *part = mallocCheck(sizeof(float) * n * chunk * per_img);
    double t0 = saev_now();
    for (int b0 = 0; b0 < B; b0 += chunk) {
        int nb = B - b0 < chunk ? B - b0 : chunk;
        vit_forward(&vit, pixels + b0 * img, nb, H, W, hidden, n, part);
        for (int i = 0; i < n; i++) /* [n, nb, T, D] chunk into [n, B, T, D] */
            memcpy(out + ((size_t)i * B + b0) * per_img, part + (size_t)i * nb * per_img, sizeof(float) * nb * per_img);
    }
    double secs = saev_now() - t0;

    StWriter w;
    st_writer_init(&w);
    char meta_layers[8192] = "";
    if (layers_text) {
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
    int rc = st_writer_write(&w, out_path, err, sizeof err);
    if (rc) fprintf(stderr, "saev forward: %s\n", err);
    else
        log_info("%s: %d images (%dx%d), %d tokens x %d, %s in %.2f s", out_path, B, H, W, T, D,
                 layers_text ? meta_layers : "all hidden states", secs);
    st_writer_free(&w);
    free(out);
    free(part);
    free(pixels);
    free(hidden);
    vit_free(&vit);
    return rc ? 1 : 0;
}
