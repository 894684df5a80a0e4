/*
 * vit_load.c: ViT weights from safetensors into one float32 allocation.
 *
 * Name sets (a tensor's full name is prefix + name):
 *   transformers CLIP / SigLIP  embeddings.patch_embedding.*, encoder.layers.N.self_attn.{q,k,v}_proj.*, ...
 *                               prefix "" or "vision_model." (text_model.* and heads ignored)
 *   transformers DINOv2         embeddings.cls_token, encoder.layer.N.attention.attention.{query,key,value}.*, ...
 *                               prefix "", "dinov2." or "dinov2_with_registers."
 *   OpenAI / open_clip CLIP     visual.conv1.weight, visual.transformer.resblocks.N.attn.in_proj_* (q,k,v stacked), ...
 * The set is recognised by its patch-embedding tensor. Every tensor the architecture
 * needs is checked for presence and exact shape; F32, F16, BF16 (and F64) become
 * float32. Tensors the residual stream does not use are ignored.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "safetensors.h"
#include "vit.h"

typedef enum {
    K_PATCH_W, K_PATCH_B, K_CLS, K_REG, K_POS, K_PRE_LN_W, K_PRE_LN_B,
    K_LN1_W, K_LN1_B, K_Q_W, K_Q_B, K_K_W, K_K_B, K_V_W, K_V_B, K_QKV_W, K_QKV_B,
    K_PROJ_W, K_PROJ_B, K_LS1, K_LS2, K_LN2_W, K_LN2_B, K_FC1_W, K_FC1_B, K_FC2_W, K_FC2_B,
    K_FINAL_W, K_FINAL_B, K_N
} Kind;

typedef enum { S_CLIP = 0, S_SIGLIP, S_DINOV2, S_OPENCLIP, S_N } Scheme;

/* Names per scheme; "%d" is the block index; NULL: the scheme has no such tensor. */
static const char *names[S_N][K_N] = {
    [S_CLIP] = {
        [K_PATCH_W] = "embeddings.patch_embedding.weight", [K_CLS] = "embeddings.class_embedding",
        [K_POS] = "embeddings.position_embedding.weight", [K_PRE_LN_W] = "pre_layrnorm.weight", [K_PRE_LN_B] = "pre_layrnorm.bias",
        [K_LN1_W] = "encoder.layers.%d.layer_norm1.weight", [K_LN1_B] = "encoder.layers.%d.layer_norm1.bias",
        [K_Q_W] = "encoder.layers.%d.self_attn.q_proj.weight", [K_Q_B] = "encoder.layers.%d.self_attn.q_proj.bias",
        [K_K_W] = "encoder.layers.%d.self_attn.k_proj.weight", [K_K_B] = "encoder.layers.%d.self_attn.k_proj.bias",
        [K_V_W] = "encoder.layers.%d.self_attn.v_proj.weight", [K_V_B] = "encoder.layers.%d.self_attn.v_proj.bias",
        [K_PROJ_W] = "encoder.layers.%d.self_attn.out_proj.weight", [K_PROJ_B] = "encoder.layers.%d.self_attn.out_proj.bias",
        [K_LN2_W] = "encoder.layers.%d.layer_norm2.weight", [K_LN2_B] = "encoder.layers.%d.layer_norm2.bias",
        [K_FC1_W] = "encoder.layers.%d.mlp.fc1.weight", [K_FC1_B] = "encoder.layers.%d.mlp.fc1.bias",
        [K_FC2_W] = "encoder.layers.%d.mlp.fc2.weight", [K_FC2_B] = "encoder.layers.%d.mlp.fc2.bias",
        [K_FINAL_W] = "post_layernorm.weight", [K_FINAL_B] = "post_layernorm.bias",
    },
    [S_SIGLIP] = {
        [K_PATCH_W] = "embeddings.patch_embedding.weight", [K_PATCH_B] = "embeddings.patch_embedding.bias",
        [K_POS] = "embeddings.position_embedding.weight",
        [K_LN1_W] = "encoder.layers.%d.layer_norm1.weight", [K_LN1_B] = "encoder.layers.%d.layer_norm1.bias",
        [K_Q_W] = "encoder.layers.%d.self_attn.q_proj.weight", [K_Q_B] = "encoder.layers.%d.self_attn.q_proj.bias",
        [K_K_W] = "encoder.layers.%d.self_attn.k_proj.weight", [K_K_B] = "encoder.layers.%d.self_attn.k_proj.bias",
        [K_V_W] = "encoder.layers.%d.self_attn.v_proj.weight", [K_V_B] = "encoder.layers.%d.self_attn.v_proj.bias",
        [K_PROJ_W] = "encoder.layers.%d.self_attn.out_proj.weight", [K_PROJ_B] = "encoder.layers.%d.self_attn.out_proj.bias",
        [K_LN2_W] = "encoder.layers.%d.layer_norm2.weight", [K_LN2_B] = "encoder.layers.%d.layer_norm2.bias",
        [K_FC1_W] = "encoder.layers.%d.mlp.fc1.weight", [K_FC1_B] = "encoder.layers.%d.mlp.fc1.bias",
        [K_FC2_W] = "encoder.layers.%d.mlp.fc2.weight", [K_FC2_B] = "encoder.layers.%d.mlp.fc2.bias",
        [K_FINAL_W] = "post_layernorm.weight", [K_FINAL_B] = "post_layernorm.bias",
    },
    [S_DINOV2] = {
        [K_PATCH_W] = "embeddings.patch_embeddings.projection.weight", [K_PATCH_B] = "embeddings.patch_embeddings.projection.bias",
        [K_CLS] = "embeddings.cls_token", [K_REG] = "embeddings.register_tokens", [K_POS] = "embeddings.position_embeddings",
        [K_LN1_W] = "encoder.layer.%d.norm1.weight", [K_LN1_B] = "encoder.layer.%d.norm1.bias",
        [K_Q_W] = "encoder.layer.%d.attention.attention.query.weight", [K_Q_B] = "encoder.layer.%d.attention.attention.query.bias",
        [K_K_W] = "encoder.layer.%d.attention.attention.key.weight", [K_K_B] = "encoder.layer.%d.attention.attention.key.bias",
        [K_V_W] = "encoder.layer.%d.attention.attention.value.weight", [K_V_B] = "encoder.layer.%d.attention.attention.value.bias",
        [K_PROJ_W] = "encoder.layer.%d.attention.output.dense.weight", [K_PROJ_B] = "encoder.layer.%d.attention.output.dense.bias",
        [K_LS1] = "encoder.layer.%d.layer_scale1.lambda1", [K_LS2] = "encoder.layer.%d.layer_scale2.lambda1",
        [K_LN2_W] = "encoder.layer.%d.norm2.weight", [K_LN2_B] = "encoder.layer.%d.norm2.bias",
        [K_FC1_W] = "encoder.layer.%d.mlp.fc1.weight", [K_FC1_B] = "encoder.layer.%d.mlp.fc1.bias",
        [K_FC2_W] = "encoder.layer.%d.mlp.fc2.weight", [K_FC2_B] = "encoder.layer.%d.mlp.fc2.bias",
        [K_FINAL_W] = "layernorm.weight", [K_FINAL_B] = "layernorm.bias",
    },
    [S_OPENCLIP] = {
        [K_PATCH_W] = "conv1.weight", [K_CLS] = "class_embedding", [K_POS] = "positional_embedding",
        [K_PRE_LN_W] = "ln_pre.weight", [K_PRE_LN_B] = "ln_pre.bias",
        [K_LN1_W] = "transformer.resblocks.%d.ln_1.weight", [K_LN1_B] = "transformer.resblocks.%d.ln_1.bias",
        [K_QKV_W] = "transformer.resblocks.%d.attn.in_proj_weight", [K_QKV_B] = "transformer.resblocks.%d.attn.in_proj_bias",
        [K_PROJ_W] = "transformer.resblocks.%d.attn.out_proj.weight", [K_PROJ_B] = "transformer.resblocks.%d.attn.out_proj.bias",
        [K_LN2_W] = "transformer.resblocks.%d.ln_2.weight", [K_LN2_B] = "transformer.resblocks.%d.ln_2.bias",
        [K_FC1_W] = "transformer.resblocks.%d.mlp.c_fc.weight", [K_FC1_B] = "transformer.resblocks.%d.mlp.c_fc.bias",
        [K_FC2_W] = "transformer.resblocks.%d.mlp.c_proj.weight", [K_FC2_B] = "transformer.resblocks.%d.mlp.c_proj.bias",
        [K_FINAL_W] = "ln_post.weight", [K_FINAL_B] = "ln_post.bias",
    },
};
static const char *scheme_names[S_N] = {"transformers CLIP", "transformers SigLIP", "transformers DINOv2", "OpenAI/open_clip"};

typedef struct {
    const SafeTensors *st;
    Scheme scheme;
    const char *prefix;
    const char *why; /* where the expected sizes came from, for messages */
    char *err;
    size_t errlen;
} WeightReader;

static void full_name(const WeightReader *ld, Kind k, int layer, char *buf, size_t len) {
    char inner[256];
    snprintf(inner, sizeof inner, names[ld->scheme][k], layer);
    snprintf(buf, len, "%s%s", ld->prefix, inner);
}

static const StTensor *find(const WeightReader *ld, Kind k, int layer) {
    if (!names[ld->scheme][k]) return NULL;
    char name[512];
    full_name(ld, k, layer, name, sizeof name);
    return st_find(ld->st, name);
}

static void shape_str(const int64_t *shape, int ndim, char *buf, size_t len) {
    buf[0] = 0;
    for (int d = 0; d < ndim; d++) snprintf(buf + strlen(buf), len - strlen(buf), "%s%lld", d ? ", " : "", (long long)shape[d]);
}

/* Copies tensor k (block `layer`) into dst as float32 after checking its shape is
 * exactly dims[0..ndim). Returns 0 or -1 with the message in ld->err. */
static int load(WeightReader *ld, Kind k, int layer, float *dst, int ndim, ...) {
    int64_t want[ST_MAX_DIMS];
    va_list ap;
    va_start(ap, ndim);
    for (int d = 0; d < ndim; d++) want[d] = va_arg(ap, int64_t);
    va_end(ap);
    char name[512], ws[128], gs[128];
    full_name(ld, k, layer, name, sizeof name);
    shape_str(want, ndim, ws, sizeof ws);
    const StTensor *t = st_find(ld->st, name);
    if (!t) {
        snprintf(ld->err, ld->errlen, "%s: missing tensor \"%s\" (expected shape [%s], %s names)", ld->st->path, name, ws,
                 scheme_names[ld->scheme]);
        return -1;
    }
    int ok = t->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++) ok = t->shape[d] == want[d];
    if (!ok) {
        shape_str(t->shape, t->ndim, gs, sizeof gs);
        snprintf(ld->err, ld->errlen, "%s: tensor \"%s\" has shape [%s], expected [%s] (%s)", ld->st->path, name, gs, ws, ld->why);
        return -1;
    }
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16 && t->dtype != ST_F64) {
        snprintf(ld->err, ld->errlen, "%s: tensor \"%s\" has dtype %s; weights must be F32, F16 or BF16", ld->st->path, name,
                 st_dtype_name(t->dtype));
        return -1;
    }
    st_to_f32(t, dst);
    return 0;
}

/* ---- parameter layout ---- */

static int n_pos_for(const VitConfig *c) {
    int g = c->image_size / c->patch_size;
    return vit_has_cls(c) + g * g;
}

void vit_param_sizes(const VitConfig *c, int n_pos, size_t s[VIT_N_PARAM_TENSORS]) {
    size_t D = c->d_model, L = c->n_layers, F = c->d_mlp, P = c->patch_size;
    int clip = c->family == VIT_CLIP, dino = c->family == VIT_DINOV2;
    size_t i = 0;
    s[i++] = D * c->n_channels * P * P;     /* patch_w */
    s[i++] = D;                             /* patch_b */
    s[i++] = vit_has_cls(c) ? D : 0;        /* cls */
    s[i++] = (size_t)c->n_registers * D;    /* registers */
    s[i++] = (size_t)n_pos * D;             /* pos */
    s[i++] = clip ? D : 0;                  /* pre_ln_w */
    s[i++] = clip ? D : 0;                  /* pre_ln_b */
    s[i++] = L * D;                         /* ln1_w */
    s[i++] = L * D;                         /* ln1_b */
    s[i++] = L * 3 * D * D;                 /* qkv_w */
    s[i++] = L * 3 * D;                     /* qkv_b */
    s[i++] = L * D * D;                     /* proj_w */
    s[i++] = L * D;                         /* proj_b */
    s[i++] = dino ? L * D : 0;              /* ls1 */
    s[i++] = dino ? L * D : 0;              /* ls2 */
    s[i++] = L * D;                         /* ln2_w */
    s[i++] = L * D;                         /* ln2_b */
    s[i++] = L * F * D;                     /* fc1_w */
    s[i++] = L * F;                         /* fc1_b */
    s[i++] = L * D * F;                     /* fc2_w */
    s[i++] = L * D;                         /* fc2_b */
    s[i++] = D;                             /* final_ln_w */
    s[i++] = D;                             /* final_ln_b */
}

void vit_alloc_params(Vit *vit, const VitConfig *cfg) {
    size_t sizes[VIT_N_PARAM_TENSORS], total = 0;
    int n_pos = n_pos_for(cfg);
    vit_param_sizes(cfg, n_pos, sizes);
    for (int i = 0; i < VIT_N_PARAM_TENSORS; i++) total += sizes[i];
    vit->cfg = *cfg;
    vit->n_pos = n_pos;
    vit->n_params = total;
    vit->param_memory = callocCheck(total, sizeof(float));
    float **ptrs[VIT_N_PARAM_TENSORS] = {
        &vit->params.patch_w, &vit->params.patch_b, &vit->params.cls, &vit->params.registers, &vit->params.pos,
        &vit->params.pre_ln_w, &vit->params.pre_ln_b, &vit->params.ln1_w, &vit->params.ln1_b, &vit->params.qkv_w,
        &vit->params.qkv_b, &vit->params.proj_w, &vit->params.proj_b, &vit->params.ls1, &vit->params.ls2,
        &vit->params.ln2_w, &vit->params.ln2_b, &vit->params.fc1_w, &vit->params.fc1_b, &vit->params.fc2_w,
        &vit->params.fc2_b, &vit->params.final_ln_w, &vit->params.final_ln_b};
    float *p = vit->param_memory;
    for (int i = 0; i < VIT_N_PARAM_TENSORS; i++) {
        *ptrs[i] = sizes[i] ? p : NULL;
        p += sizes[i];
    }
}

/* ---- finding the name set ---- */

static int detect_scheme(const SafeTensors *st, VitFamily family, WeightReader *ld, char *err, size_t errlen) {
    static const char *prefixes[] = {"", "vision_model.", "visual.", "dinov2.", "dinov2_with_registers.", "model.vision_model."};
    Scheme candidates[2];
    int nc = 0;
    if (family == VIT_CLIP) { candidates[nc++] = S_CLIP; candidates[nc++] = S_OPENCLIP; }
    else if (family == VIT_SIGLIP) candidates[nc++] = S_SIGLIP;
    else candidates[nc++] = S_DINOV2;
    for (int c = 0; c < nc; c++)
        for (size_t p = 0; p < sizeof prefixes / sizeof prefixes[0]; p++) {
            char name[512];
            snprintf(name, sizeof name, "%s%s", prefixes[p], names[candidates[c]][K_PATCH_W]);
            if (st_find(st, name)) {
                ld->scheme = candidates[c];
                ld->prefix = prefixes[p];
                return 0;
            }
        }
    snprintf(err, errlen, "%s: no %s patch embedding found (looked for \"%s\"%s with the prefixes \"\", \"vision_model.\", \"visual.\", ...); is this a %s checkpoint?",
             st->path, vit_family_name(family), names[candidates[0]][K_PATCH_W],
             family == VIT_CLIP ? " and \"visual.conv1.weight\"" : "", vit_family_name(family));
    return -1;
}

/* Sizes read off the tensors, for checkpoints without a config.json. */
static int infer_config(const SafeTensors *st, VitConfig *cfg, VitFamily family, char *err, size_t errlen) {
    WeightReader ld = {.st = st};
    if (detect_scheme(st, family, &ld, err, errlen)) return -1;
    vit_config_defaults(cfg, family);
    const StTensor *pw = find(&ld, K_PATCH_W, 0);
    if (pw->ndim != 4 || pw->shape[2] != pw->shape[3]) {
        snprintf(err, errlen, "%s: patch embedding \"%s%s\" should be [D, C, P, P]", st->path, ld.prefix, names[ld.scheme][K_PATCH_W]);
        return -1;
    }
    cfg->d_model = (int)pw->shape[0];
    cfg->n_channels = (int)pw->shape[1];
    cfg->patch_size = (int)pw->shape[2];
    cfg->n_heads = cfg->d_model % 64 == 0 ? cfg->d_model / 64 : 1;
    int L = 0;
    while (find(&ld, K_LN1_W, L)) L++;
    cfg->n_layers = L;
    const StTensor *fc1 = find(&ld, K_FC1_W, 0), *pos = find(&ld, K_POS, 0), *reg = find(&ld, K_REG, 0);
    if (!L || !fc1 || !pos) {
        snprintf(err, errlen, "%s: cannot read the architecture off the tensors (%s names): %s missing", st->path, scheme_names[ld.scheme],
                 !L ? "block 0's first LayerNorm" : !fc1 ? "block 0's first MLP weight" : "the position table");
        return -1;
    }
    cfg->d_mlp = (int)fc1->shape[0];
    int64_t n_pos = pos->shape[pos->ndim - 2 >= 0 ? pos->ndim - 2 : 0];
    int64_t n_patch = n_pos - vit_has_cls(cfg);
    int side = (int)lround(sqrt((double)n_patch));
    cfg->image_size = side * cfg->patch_size;
    if (reg && reg->ndim == 3) cfg->n_registers = (int)reg->shape[1];
    if (family == VIT_DINOV2 && cfg->n_registers) cfg->pos_antialias = 1;
    return 0;
}

static int load_all(Vit *vit, WeightReader *ld) {
    const VitConfig *c = &vit->cfg;
    VitParams *p = &vit->params;
    int64_t D = c->d_model, F = c->d_mlp, P = c->patch_size, C = c->n_channels, R = c->n_registers;
    int64_t NP = vit->n_pos;
    int dino = ld->scheme == S_DINOV2;
    if (load(ld, K_PATCH_W, 0, p->patch_w, 4, D, C, P, P)) return -1;
    if (names[ld->scheme][K_PATCH_B] && load(ld, K_PATCH_B, 0, p->patch_b, 1, D)) return -1;
    if (vit_has_cls(c) && (dino ? load(ld, K_CLS, 0, p->cls, 3, (int64_t)1, (int64_t)1, D) : load(ld, K_CLS, 0, p->cls, 1, D))) return -1;
    if (R && load(ld, K_REG, 0, p->registers, 3, (int64_t)1, R, D)) return -1;
    if (!R && find(ld, K_REG, 0)) {
        snprintf(ld->err, ld->errlen, "%s: the checkpoint has register tokens (\"%s%s\") but the config has none; set num_register_tokens / model.registers",
                 ld->st->path, ld->prefix, names[ld->scheme][K_REG]);
        return -1;
    }
    if (dino ? load(ld, K_POS, 0, p->pos, 3, (int64_t)1, NP, D) : load(ld, K_POS, 0, p->pos, 2, NP, D)) return -1;
    if (c->family == VIT_CLIP && (load(ld, K_PRE_LN_W, 0, p->pre_ln_w, 1, D) || load(ld, K_PRE_LN_B, 0, p->pre_ln_b, 1, D))) return -1;
    for (int l = 0; l < c->n_layers; l++) {
        float *qkv_w = p->qkv_w + (size_t)l * 3 * D * D, *qkv_b = p->qkv_b + (size_t)l * 3 * D;
        if (load(ld, K_LN1_W, l, p->ln1_w + l * D, 1, D) || load(ld, K_LN1_B, l, p->ln1_b + l * D, 1, D)) return -1;
        if (ld->scheme == S_OPENCLIP) {
            if (load(ld, K_QKV_W, l, qkv_w, 2, 3 * D, D) || load(ld, K_QKV_B, l, qkv_b, 1, 3 * D)) return -1;
        } else {
            if (load(ld, K_Q_W, l, qkv_w, 2, D, D) || load(ld, K_K_W, l, qkv_w + D * D, 2, D, D) ||
                load(ld, K_V_W, l, qkv_w + 2 * D * D, 2, D, D))
                return -1;
            if (c->qkv_bias && (load(ld, K_Q_B, l, qkv_b, 1, D) || load(ld, K_K_B, l, qkv_b + D, 1, D) ||
                                load(ld, K_V_B, l, qkv_b + 2 * D, 1, D)))
                return -1;
        }
        if (load(ld, K_PROJ_W, l, p->proj_w + l * D * D, 2, D, D) || load(ld, K_PROJ_B, l, p->proj_b + l * D, 1, D)) return -1;
        if (c->family == VIT_DINOV2 && (load(ld, K_LS1, l, p->ls1 + l * D, 1, D) || load(ld, K_LS2, l, p->ls2 + l * D, 1, D))) return -1;
        if (load(ld, K_LN2_W, l, p->ln2_w + l * D, 1, D) || load(ld, K_LN2_B, l, p->ln2_b + l * D, 1, D)) return -1;
        if (load(ld, K_FC1_W, l, p->fc1_w + l * F * D, 2, F, D) || load(ld, K_FC1_B, l, p->fc1_b + l * F, 1, F)) return -1;
        if (load(ld, K_FC2_W, l, p->fc2_w + l * D * F, 2, D, F) || load(ld, K_FC2_B, l, p->fc2_b + l * D, 1, D)) return -1;
    }
    if (find(ld, K_LN1_W, c->n_layers)) {
        snprintf(ld->err, ld->errlen, "%s: the checkpoint has more than the %d blocks the config describes (block %d present)", ld->st->path,
                 c->n_layers, c->n_layers);
        return -1;
    }
    if (load(ld, K_FINAL_W, 0, p->final_ln_w, 1, D) || load(ld, K_FINAL_B, 0, p->final_ln_b, 1, D)) return -1;
    return 0;
}

int vit_load(Vit *vit, const VitConfig *cfg, const char *path, char *err, size_t errlen) {
    memset(vit, 0, sizeof *vit);
    if (vit_config_check(cfg, err, errlen)) return -1;
    SafeTensors st;
    if (st_open(&st, path, err, errlen)) return -1;
    WeightReader ld = {.st = &st, .err = err, .errlen = errlen};
    if (detect_scheme(&st, cfg->family, &ld, err, errlen)) {
        st_close(&st);
        return -1;
    }
    char why[256];
    snprintf(why, sizeof why, "%s with hidden_size %d, intermediate %d, patch %d, image %d", vit_family_name(cfg->family), cfg->d_model,
             cfg->d_mlp, cfg->patch_size, cfg->image_size);
    ld.why = why;
    vit_alloc_params(vit, cfg);
    int rc = load_all(vit, &ld);
    st_close(&st);
    if (rc) {
        free(vit->param_memory);
        memset(vit, 0, sizeof *vit);
        return -1;
    }
    vit->source = strdupCheck(path);
    vit->device = DEVICE_CPU;
    return 0;
}

/* ---- resolving what the user named ---- */

void vit_spec_init(VitSpec *s) {
    memset(s, 0, sizeof *s);
    s->family = -1;
    s->n_registers = -1;
    s->act = -1;
}

static int is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* The weights file inside a folder: model.safetensors, else its only *.safetensors. */
static int weights_in_dir(const char *dir, char *out, size_t outlen, char *err, size_t errlen) {
    snprintf(out, outlen, "%s/model.safetensors", dir);
    if (exists(out)) return 0;
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "%s: cannot open folder: %s", dir, strerror(errno));
        return -1;
    }
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n > 12 && !strcmp(e->d_name + n - 12, ".safetensors")) {
            if (found++) break;
            snprintf(out, outlen, "%s/%s", dir, e->d_name);
        }
    }
    closedir(d);
    if (found != 1) {
        snprintf(err, errlen, "%s: %s; name the weights file itself", dir,
                 found ? "holds several .safetensors files and no model.safetensors" : "holds no .safetensors file");
        return -1;
    }
    return 0;
}

int vit_open(Vit *vit, const VitSpec *spec, char *err, size_t errlen) {
    char weights[4096], config[4096];
    if (!spec->path) {
        snprintf(err, errlen, "no model path given");
        return -1;
    }
    if (is_dir(spec->path)) {
        if (weights_in_dir(spec->path, weights, sizeof weights, err, errlen)) return -1;
        snprintf(config, sizeof config, "%s/config.json", spec->path);
    } else {
        if (!exists(spec->path)) {
            snprintf(err, errlen, "%s: model weights not found: %s", spec->path, strerror(errno));
            return -1;
        }
        snprintf(weights, sizeof weights, "%s", spec->path);
        const char *slash = strrchr(spec->path, '/');
        if (slash) snprintf(config, sizeof config, "%.*s/config.json", (int)(slash - spec->path), spec->path);
        else snprintf(config, sizeof config, "config.json");
    }
    if (spec->config_path) snprintf(config, sizeof config, "%s", spec->config_path);
    int have_config = spec->config_path || exists(config);

    VitConfig cfg;
    if (have_config) {
        if (vit_config_from_json(&cfg, config, err, errlen)) return -1;
        if (spec->family >= 0 && (VitFamily)spec->family != cfg.family) {
            snprintf(err, errlen, "%s: family %s was asked for but the config describes a %s model", config, vit_family_name((VitFamily)spec->family),
                     vit_family_name(cfg.family));
            return -1;
        }
    } else {
        if (spec->family < 0) {
            snprintf(err, errlen, "%s: no config.json beside the weights; give the family (--family / model.family) or --config", weights);
            return -1;
        }
        SafeTensors st;
        if (st_open(&st, weights, err, errlen)) return -1;
        int rc = infer_config(&st, &cfg, (VitFamily)spec->family, err, errlen);
        st_close(&st);
        if (rc) return -1;
    }
    if (spec->n_heads > 0) cfg.n_heads = spec->n_heads;
    if (spec->patch_size > 0) cfg.patch_size = spec->patch_size;
    if (spec->image_size > 0) cfg.image_size = spec->image_size;
    if (spec->n_registers >= 0) cfg.n_registers = spec->n_registers;
    if (spec->act >= 0) cfg.act = (VitAct)spec->act;
    if (spec->ln_eps > 0) cfg.ln_eps = spec->ln_eps;
    return vit_load(vit, &cfg, weights, err, errlen);
}

/* ---- writing (the inverse of loading, transformers names) ---- */

int vit_save(const Vit *vit, const char *path, char *err, size_t errlen) {
    const VitConfig *c = &vit->cfg;
    const VitParams *p = &vit->params;
    Scheme sc = c->family == VIT_CLIP ? S_CLIP : c->family == VIT_SIGLIP ? S_SIGLIP : S_DINOV2;
    int dino = sc == S_DINOV2;
    int64_t D = c->d_model, F = c->d_mlp, P = c->patch_size, C = c->n_channels, R = c->n_registers, NP = vit->n_pos;
    StWriter w;
    st_writer_init(&w);
    int cap = 16 + 20 * c->n_layers, n = 0;
    char **owned = callocCheck((size_t)cap, sizeof(char *));
#define ADD(kind, layer, ptr, ...)                                                              \
    do {                                                                                        \
        int64_t shape_[] = {__VA_ARGS__};                                                       \
        char inner_[256];                                                                       \
        snprintf(inner_, sizeof inner_, names[sc][kind], (layer));                              \
        owned[n] = strdupCheck(inner_);                                                         \
        st_writer_add(&w, owned[n++], ST_F32, (int)(sizeof shape_ / sizeof shape_[0]), shape_, (ptr)); \
    } while (0)
    ADD(K_PATCH_W, 0, p->patch_w, D, C, P, P);
    if (names[sc][K_PATCH_B]) ADD(K_PATCH_B, 0, p->patch_b, D);
    if (vit_has_cls(c)) {
        if (dino) ADD(K_CLS, 0, p->cls, 1, 1, D);
        else ADD(K_CLS, 0, p->cls, D);
    }
    if (R) ADD(K_REG, 0, p->registers, 1, R, D);
    if (dino) ADD(K_POS, 0, p->pos, 1, NP, D);
    else ADD(K_POS, 0, p->pos, NP, D);
    if (c->family == VIT_CLIP) {
        ADD(K_PRE_LN_W, 0, p->pre_ln_w, D);
        ADD(K_PRE_LN_B, 0, p->pre_ln_b, D);
    }
    for (int l = 0; l < c->n_layers; l++) {
        const float *qw = p->qkv_w + (size_t)l * 3 * D * D, *qb = p->qkv_b + (size_t)l * 3 * D;
        ADD(K_LN1_W, l, p->ln1_w + l * D, D);
        ADD(K_LN1_B, l, p->ln1_b + l * D, D);
        ADD(K_Q_W, l, qw, D, D);
        ADD(K_K_W, l, qw + D * D, D, D);
        ADD(K_V_W, l, qw + 2 * D * D, D, D);
        if (c->qkv_bias) {
            ADD(K_Q_B, l, qb, D);
            ADD(K_K_B, l, qb + D, D);
            ADD(K_V_B, l, qb + 2 * D, D);
        }
        ADD(K_PROJ_W, l, p->proj_w + l * D * D, D, D);
        ADD(K_PROJ_B, l, p->proj_b + l * D, D);
        if (dino) {
            ADD(K_LS1, l, p->ls1 + l * D, D);
            ADD(K_LS2, l, p->ls2 + l * D, D);
        }
        ADD(K_LN2_W, l, p->ln2_w + l * D, D);
        ADD(K_LN2_B, l, p->ln2_b + l * D, D);
        ADD(K_FC1_W, l, p->fc1_w + l * F * D, F, D);
        ADD(K_FC1_B, l, p->fc1_b + l * F, F);
        ADD(K_FC2_W, l, p->fc2_w + l * D * F, D, F);
        ADD(K_FC2_B, l, p->fc2_b + l * D, D);
    }
    ADD(K_FINAL_W, 0, p->final_ln_w, D);
    ADD(K_FINAL_B, 0, p->final_ln_b, D);
#undef ADD
    st_writer_meta(&w, "format", "pt");
    int rc = st_writer_write(&w, path, err, errlen);
    st_writer_free(&w);
    for (int i = 0; i < n; i++) free(owned[i]);
    free(owned);
    return rc;
}
