/*
 * vit.c: the backend-independent parts of the ViT: family and activation names,
 * transformers' default configs, token counts, layer resolution, the position table
 * (with dinov2's bicubic resampling done exactly as torch does it), and the dispatch
 * from vit_forward to the backend the model was placed on.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "vit.h"
#ifdef SAEV_CUDA
#include "cuda/vit_cuda.h"
#endif

static const char *family_names[VIT_N_FAMILIES] = {"clip", "dinov2", "siglip"};
static const char *act_names[VIT_N_ACTS] = {"gelu", "gelu_pytorch_tanh", "quick_gelu"};

const char *vit_family_name(VitFamily f) { return (unsigned)f < VIT_N_FAMILIES ? family_names[f] : "?"; }
const char *vit_act_name(VitAct a) { return (unsigned)a < VIT_N_ACTS ? act_names[a] : "?"; }

int vit_family_from_name(const char *name, VitFamily *out) {
    for (int i = 0; i < VIT_N_FAMILIES; i++)
        if (!strcmp(name, family_names[i])) { *out = (VitFamily)i; return 0; }
    return -1;
}

int vit_act_from_name(const char *name, VitAct *out) {
    if (!strcmp(name, "gelu")) *out = VIT_ACT_GELU;
    /* transformers maps all three of these to the tanh approximation */
    else if (!strcmp(name, "gelu_pytorch_tanh") || !strcmp(name, "gelu_new") || !strcmp(name, "gelu_tanh")) *out = VIT_ACT_GELU_TANH;
    else if (!strcmp(name, "quick_gelu")) *out = VIT_ACT_QUICK_GELU;
    else return -1;
    return 0;
}

void vit_config_defaults(VitConfig *cfg, VitFamily family) {
    memset(cfg, 0, sizeof *cfg);
    cfg->family = family;
    cfg->d_model = 768;
    cfg->n_layers = 12;
    cfg->n_heads = 12;
    cfg->d_mlp = 3072;
    cfg->n_channels = 3;
    cfg->image_size = 224;
    cfg->qkv_bias = 1;
    switch (family) {
    case VIT_CLIP: /* CLIPVisionConfig */
        cfg->patch_size = 32;
        cfg->act = VIT_ACT_QUICK_GELU;
        cfg->ln_eps = 1e-5;
        break;
    case VIT_DINOV2: /* Dinov2Config */
        cfg->patch_size = 14;
        cfg->act = VIT_ACT_GELU;
        cfg->ln_eps = 1e-6;
        break;
    default: /* SiglipVisionConfig */
        cfg->patch_size = 16;
        cfg->act = VIT_ACT_GELU_TANH;
        cfg->ln_eps = 1e-6;
        break;
    }
}

int vit_config_check(const VitConfig *c, char *err, size_t errlen) {
    const char *bad = NULL;
    if ((unsigned)c->family >= VIT_N_FAMILIES) bad = "unknown family";
    else if (c->d_model <= 0) bad = "hidden_size must be positive";
    else if (c->n_layers <= 0) bad = "num_hidden_layers must be positive";
    else if (c->n_heads <= 0 || c->d_model % c->n_heads) bad = "hidden_size must be a positive multiple of num_attention_heads";
    else if (c->d_mlp <= 0) bad = "intermediate size must be positive";
    else if (c->patch_size <= 0) bad = "patch_size must be positive";
    else if (c->n_channels <= 0) bad = "num_channels must be positive";
    else if (c->image_size < c->patch_size) bad = "image_size must be at least patch_size";
    else if (c->n_registers < 0 || (c->n_registers > 0 && c->family != VIT_DINOV2)) bad = "register tokens exist only in the dinov2 family";
    else if ((unsigned)c->act >= VIT_N_ACTS) bad = "unknown activation";
    else if (!(c->ln_eps > 0)) bad = "layer_norm_eps must be positive";
    if (bad) {
        snprintf(err, errlen, "model config: %s (hidden_size %d, heads %d, layers %d, mlp %d, patch %d, image %d)", bad, c->d_model,
                 c->n_heads, c->n_layers, c->d_mlp, c->patch_size, c->image_size);
        return -1;
    }
    return 0;
}

int vit_grid(const VitConfig *cfg, int pixels) { return pixels / cfg->patch_size; } /* conv with stride P drops the remainder */

int vit_tokens_internal(const VitConfig *cfg, int H, int W) {
    return vit_has_cls(cfg) + cfg->n_registers + vit_grid(cfg, H) * vit_grid(cfg, W);
}

int vit_tokens_out(const VitConfig *cfg, int H, int W) { return vit_has_cls(cfg) + vit_grid(cfg, H) * vit_grid(cfg, W); }

int vit_resolve_layers(const VitConfig *cfg, const int *blocks, int n, int *hidden, char *err, size_t errlen) {
    int L = cfg->n_layers;
    for (int i = 0; i < n; i++) {
        int b = blocks[i];
        if (b < -L || b >= L) {
            snprintf(err, errlen, "layer %d is out of range: the model has %d blocks (layers 0..%d, or -%d..-1 from the end)", b, L,
                     L - 1, L);
            return -1;
        }
        hidden[i] = (b < 0 ? L + b : b) + 1;
    }
    return 0;
}

int vit_deepest_block(const VitConfig *cfg, const int *hidden, int n) {
    int deepest = -1;
    for (int i = 0; i < n; i++) {
        int b = hidden[i] == VIT_LAST_HIDDEN(cfg) ? cfg->n_layers - 1 : hidden[i] - 1;
        if (b > deepest) deepest = b;
    }
    return deepest;
}

/* ---- bicubic resampling with torch's semantics ----
 * Without antialias (upsample_bicubic2d): source coordinate s = (o + 0.5) * in/out - 0.5,
 * four taps at floor(s)-1 .. floor(s)+2 clamped to the border, Keys cubic with A = -0.75.
 * With antialias (torch's _upsample_bicubic2d_aa, PIL-like): a separable filter with
 * A = -0.5 whose support widens by the downscale factor, weights normalized to sum 1,
 * taps limited to the input (no clamping). */
static double cubic1(double x, double A) { return ((A + 2) * x - (A + 3)) * x * x + 1; }        /* |x| <= 1 */
static double cubic2(double x, double A) { return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; }  /* 1 < |x| < 2 */

/* Fills the dense [out, in] matrix of resampling weights along one axis (clamped taps
 * folded onto the border index; antialiased taps outside the input dropped). */
static void resize_weights(int in, int out, int aa, double *w) {
    int max_taps = in;
    double scale = (double)in / out;
    if (!aa) {
        for (int o = 0; o < out; o++) {
            double s = scale * (o + 0.5) - 0.5;
            double f = floor(s), t = s - f;
            double c[4] = {cubic2(t + 1, -0.75), cubic1(t, -0.75), cubic1(1 - t, -0.75), cubic2(2 - t, -0.75)};
            for (int j = 0; j < max_taps; j++) w[o * max_taps + j] = 0;
            for (int k = 0; k < 4; k++) {
                int idx = (int)f - 1 + k;
                idx = idx < 0 ? 0 : idx >= in ? in - 1 : idx;
                w[o * max_taps + idx] += c[k];
            }
        }
        return;
    }
    double support = scale >= 1.0 ? 2.0 * scale : 2.0, invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
    for (int o = 0; o < out; o++) {
        double center = scale * (o + 0.5);
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in) xmax = in;
        double total = 0;
        for (int j = 0; j < max_taps; j++) w[o * max_taps + j] = 0;
        for (int j = xmin; j < xmax; j++) {
            double x = fabs((j - center + 0.5) * invscale);
            double v = x < 1 ? cubic1(x, -0.5) : x < 2 ? cubic2(x, -0.5) : 0.0;
            w[o * max_taps + j] = v;
            total += v;
        }
        if (total != 0)
            for (int j = xmin; j < xmax; j++) w[o * max_taps + j] /= total;
    }
}

void vit_bicubic_resize(const float *in, int C, int ih, int iw, float *out, int oh, int ow, int aa) {
    /* Dense weight matrices (out x in): tables are tiny (at most a few dozen per side). */
    double *wy = mallocCheck(sizeof(double) * oh * ih), *wx = mallocCheck(sizeof(double) * ow * iw);
    double *tmp = mallocCheck(sizeof(double) * ih * ow);
    resize_weights(ih, oh, aa, wy);
    resize_weights(iw, ow, aa, wx);
    for (int c = 0; c < C; c++) {
        const float *src = in + (size_t)c * ih * iw;
        for (int y = 0; y < ih; y++) /* horizontal pass */
            for (int x = 0; x < ow; x++) {
                double acc = 0;
                for (int j = 0; j < iw; j++) acc += wx[x * iw + j] * src[y * iw + j];
                tmp[y * ow + x] = acc;
            }
        for (int y = 0; y < oh; y++) /* vertical pass */
            for (int x = 0; x < ow; x++) {
                double acc = 0;
                for (int j = 0; j < ih; j++) acc += wy[y * ih + j] * tmp[j * ow + x];
                out[((size_t)c * oh + y) * ow + x] = (float)acc;
            }
    }
    free(wy); free(wx); free(tmp);
}

int vit_position_table(const Vit *vit, int gh, int gw, float *out, char *err, size_t errlen) {
    const VitConfig *cfg = &vit->cfg;
    int D = cfg->d_model, cls = vit_has_cls(cfg);
    int n_table = vit->n_pos - cls;
    int side = (int)lround(sqrt((double)n_table));
    if (n_table == gh * gw && gh == gw) { /* transformers uses the table as is */
        memcpy(out, vit->params.pos, sizeof(float) * (size_t)vit->n_pos * D);
        return 0;
    }
    if (cfg->family != VIT_DINOV2) {
        snprintf(err, errlen, "%s: the %s position table holds %d patches (%dx%d) but the input has a %dx%d patch grid; feed %dx%d-pixel images",
                 vit->source ? vit->source : "model", vit_family_name(cfg->family), n_table, side, side, gh, gw,
                 side * cfg->patch_size, side * cfg->patch_size);
        return -1;
    }
    if (side * side != n_table) {
        snprintf(err, errlen, "%s: the position table holds %d patch positions, not a square grid", vit->source ? vit->source : "model", n_table);
        return -1;
    }
    /* [side*side, D] -> [D, side, side] -> resize -> [D, gh, gw] -> [gh*gw, D] */
    float *chw = mallocCheck(sizeof(float) * (size_t)D * n_table), *res = mallocCheck(sizeof(float) * (size_t)D * gh * gw);
    const float *table = vit->params.pos + (size_t)cls * D;
    for (int p = 0; p < n_table; p++)
        for (int d = 0; d < D; d++) chw[(size_t)d * n_table + p] = table[(size_t)p * D + d];
    vit_bicubic_resize(chw, D, side, side, res, gh, gw, cfg->pos_antialias);
    if (cls) memcpy(out, vit->params.pos, sizeof(float) * D);
    for (int p = 0; p < gh * gw; p++)
        for (int d = 0; d < D; d++) out[(size_t)(cls + p) * D + d] = res[(size_t)d * gh * gw + p];
    free(chw);
    free(res);
    return 0;
}

int vit_set_device(Vit *vit, Device device, char *err, size_t errlen) {
#ifdef SAEV_CUDA
    return vit_cuda_set_device(vit, device, err, errlen); /* handles auto/cpu/cuda */
#endif
    if (device == DEVICE_CUDA) {
        snprintf(err, errlen, "device cuda: this build has no CUDA ViT backend; use device cpu or auto");
        return -1;
    }
    vit->device = DEVICE_CPU; /* AUTO without a CUDA backend is the CPU */
    return 0;
}

void vit_forward(Vit *vit, const float *pixels, int B, int H, int W, const int *hidden, int n, float *out) {
    for (int i = 0; i < n; i++)
        if (hidden[i] < 0 || hidden[i] > VIT_LAST_HIDDEN(&vit->cfg))
            saev_fail("vit_forward: hidden-state index %d out of range 0..%d", hidden[i], VIT_LAST_HIDDEN(&vit->cfg));
#ifdef SAEV_CUDA
    if (vit->device == DEVICE_CUDA) {
        vit_cuda_forward(vit, pixels, B, H, W, hidden, n, out);
        return;
    }
#endif
    vit_cpu_forward(vit, pixels, B, H, W, hidden, n, out);
}

void vit_forward_from(Vit *vit, const float *x, int h0, int B, int H, int W, const int *hidden, int n, float *out) {
    if (h0 < 0 || h0 > vit->cfg.n_layers)
        saev_fail("vit_forward_from: start index %d out of range 0..%d (the input of a block)", h0, vit->cfg.n_layers);
    for (int i = 0; i < n; i++)
        if (hidden[i] < h0 || hidden[i] > VIT_LAST_HIDDEN(&vit->cfg))
            saev_fail("vit_forward_from: hidden-state index %d out of range %d..%d", hidden[i], h0, VIT_LAST_HIDDEN(&vit->cfg));
#ifdef SAEV_CUDA
    if (vit->device == DEVICE_CUDA) {
        vit_cuda_forward_from(vit, x, h0, B, H, W, hidden, n, out);
        return;
    }
#endif
    vit_cpu_forward_from(vit, x, h0, B, H, W, hidden, n, out);
}

void vit_view(const Vit *vit, Vit *view) {
    if (vit->device != DEVICE_CPU) saev_fail("vit_view: only the CPU backend shares weights between threads");
    *view = *vit;
    view->backend = NULL;
}

void vit_view_free(Vit *view) {
    vit_cpu_release(view);
    memset(view, 0, sizeof *view);
}

void vit_free(Vit *vit) {
#ifdef SAEV_CUDA
    vit_cuda_release(vit);
#endif
    vit_cpu_release(vit);
    free(vit->param_memory);
    free(vit->source);
    memset(vit, 0, sizeof *vit);
}
