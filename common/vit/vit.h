/*
 * vit.h: the vision transformer every stage records activations from, behind one
 * interface for all backends.
 *
 * Three families share one pre-LayerNorm block (x += attn(LN1 x); x += mlp(LN2 x)):
 *   clip    CLS token, conv without bias, LayerNorm before block 0 (pre_layrnorm),
 *           quick_gelu or exact gelu; last_hidden_state has no final norm (as transformers)
 *   dinov2  CLS token, optional register tokens (between CLS and patches), LayerScale on
 *           both branches, exact gelu, position table resampled (bicubic, torch semantics)
 *           when the image grid differs from the table's; final LayerNorm
 *   siglip  no CLS token, tanh-approximate gelu; final LayerNorm (the attention-pooling
 *           head is not part of the residual stream and is never loaded)
 *
 * Layers. A "hidden-state index" h follows transformers' hidden_states: h = 0 is the
 * input to block 0 (for CLIP after pre_layrnorm), h = i+1 the residual stream after
 * block i, and h = n_layers+1 (VIT_LAST_HIDDEN) is last_hidden_state (the final
 * LayerNorm applied where the family has one). Users speak of blocks ("layer i" = block
 * i's output, negative counts from the end); vit_resolve_layers turns those into
 * hidden-state indices. The forward stops after the deepest block a request needs.
 *
 * Tokens written out: CLS (if the family has one), then patches in raster order;
 * register tokens take part in attention but are never written.
 *
 * Files: vit.c (configs, layer resolution, position-table resampling, dispatch),
 * vit_config.c (transformers config.json), vit_load.c (safetensors weights),
 * vit_cpu.c (the CPU backend), vit_make.c (random checkpoints for tests and benchmarks).
 * A CUDA backend (vit_cuda.cu) implements the vit_backend_* hooks below with the same
 * parameter layout: one contiguous block it can upload with a single copy.
 */
#ifndef SAEV_VIT_H
#define SAEV_VIT_H

#include <stddef.h>
#include <stdint.h>

#include "device.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { VIT_CLIP = 0, VIT_DINOV2, VIT_SIGLIP, VIT_N_FAMILIES } VitFamily;
typedef enum { VIT_ACT_GELU = 0, VIT_ACT_GELU_TANH, VIT_ACT_QUICK_GELU, VIT_N_ACTS } VitAct;

typedef struct {
    VitFamily family;
    int d_model;          /* D: hidden_size */
    int n_layers;         /* L: number of blocks */
    int n_heads;          /* attention heads; D % n_heads == 0 */
    int d_mlp;            /* F: MLP hidden width */
    int patch_size;       /* P: square patches, stride P */
    int n_channels;       /* input channels (3) */
    int image_size;       /* side the position table was made for; table grid = image_size / P */
    int n_registers;      /* dinov2 register tokens (0 elsewhere) */
    VitAct act;
    double ln_eps;        /* LayerNorm epsilon */
    int qkv_bias;         /* 1: q/k/v projections have biases (0 only for dinov2 qkv_bias=false) */
    int pos_antialias;    /* dinov2 resampling: 1 = torch bicubic with antialias (dinov2_with_registers) */
} VitConfig;

/* Parameters, all float32, pointers into one allocation (see vit_param_sizes for order).
 * q, k, v are stacked row-wise in qkv_w so one GEMM computes all three. */
typedef struct {
    float *patch_w;   /* [D, C*P*P] conv weight flattened (c, ky, kx) */
    float *patch_b;   /* [D] zero for clip (conv without bias) */
    float *cls;       /* [D] CLS token (clip, dinov2); unused for siglip */
    float *registers; /* [R, D] dinov2 register tokens */
    float *pos;       /* [n_pos, D] position table: CLS row first when the family has CLS */
    float *pre_ln_w;  /* [D] clip pre_layrnorm */
    float *pre_ln_b;  /* [D] */
    float *ln1_w;     /* [L, D] */
    float *ln1_b;     /* [L, D] */
    float *qkv_w;     /* [L, 3D, D] rows: q then k then v (out, in) */
    float *qkv_b;     /* [L, 3D] */
    float *proj_w;    /* [L, D, D] attention output projection */
    float *proj_b;    /* [L, D] */
    float *ls1;       /* [L, D] dinov2 LayerScale on the attention branch */
    float *ls2;       /* [L, D] dinov2 LayerScale on the MLP branch */
    float *ln2_w;     /* [L, D] */
    float *ln2_b;     /* [L, D] */
    float *fc1_w;     /* [L, F, D] */
    float *fc1_b;     /* [L, F] */
    float *fc2_w;     /* [L, D, F] */
    float *fc2_b;     /* [L, D] */
    float *final_ln_w; /* [D] dinov2 layernorm / siglip post_layernorm (clip: post_layernorm, unused by the residual stream) */
    float *final_ln_b; /* [D] */
} VitParams;

#define VIT_N_PARAM_TENSORS 23

typedef struct Vit {
    VitConfig cfg;
    VitParams params;
    float *param_memory;  /* one allocation holding every parameter */
    size_t n_params;      /* floats in param_memory */
    int n_pos;            /* rows of params.pos */
    Device device;     /* the backend this model runs on (CPU or CUDA, never AUTO) */
    char *source;         /* path the weights came from, for messages */
    void *backend;        /* backend state: buffers sized for the last batch shape */
} Vit;

/* ---- configuration (vit.c, vit_config.c) ---- */
const char *vit_family_name(VitFamily f);
int vit_family_from_name(const char *name, VitFamily *out); /* 0 ok, -1 unknown */
const char *vit_act_name(VitAct a);
/* Accepts transformers' names: gelu, gelu_pytorch_tanh (also gelu_new, gelu_tanh), quick_gelu. */
int vit_act_from_name(const char *name, VitAct *out);
/* transformers' defaults for a family (ViT-B/16-like sizes). */
void vit_config_defaults(VitConfig *cfg, VitFamily family);
/* Reads a transformers config.json (vision config nested under vision_config is fine).
 * Returns 0, or -1 with "<path>: <problem>" in err. */
int vit_config_from_json(VitConfig *cfg, const char *path, char *err, size_t errlen);
/* Checks sizes are positive and consistent (D % heads, ...). 0 or -1 with err. */
int vit_config_check(const VitConfig *cfg, char *err, size_t errlen);

/* Tokens inside the model (CLS + registers + patches) and written out (CLS + patches)
 * for an input of H x W pixels. */
int vit_grid(const VitConfig *cfg, int pixels);         /* patches along one side */
int vit_tokens_internal(const VitConfig *cfg, int H, int W);
int vit_tokens_out(const VitConfig *cfg, int H, int W);
static inline int vit_has_cls(const VitConfig *cfg) { return cfg->family != VIT_SIGLIP; }

/* ---- layers ---- */
#define VIT_LAST_HIDDEN(cfg) ((cfg)->n_layers + 1)
/* Block numbers (negative from the end) to hidden-state indices (block i -> i+1).
 * Returns 0, or -1 naming the out-of-range entry in err. */
int vit_resolve_layers(const VitConfig *cfg, const int *blocks, int n, int *hidden, char *err, size_t errlen);
/* The deepest block a set of hidden-state indices needs (-1 when only the embeddings). */
int vit_deepest_block(const VitConfig *cfg, const int *hidden, int n);

/* ---- weights (vit_load.c) ---- */
/* What a user names: weights, an optional config.json and overrides (from flags or the
 * YAML model section). Without a config.json (neither given nor beside the weights) the
 * family must be given and the sizes are read off the tensors' shapes; heads then
 * default to hidden_size / 64 (true of every CLIP, DINOv2 and SigLIP checkpoint). */
typedef struct {
    const char *path;        /* .safetensors file, or a folder holding one (+ config.json) */
    const char *config_path; /* transformers config.json; NULL: config.json beside the weights if present */
    int family;              /* VitFamily, or -1: from config.json */
    int n_heads;             /* > 0 overrides */
    int patch_size;          /* > 0 overrides */
    int image_size;          /* > 0 overrides (side the position table was made for) */
    int n_registers;         /* >= 0 overrides; -1 keeps */
    int act;                 /* VitAct overrides; -1 keeps */
    double ln_eps;           /* > 0 overrides */
} VitSpec;
void vit_spec_init(VitSpec *spec); /* everything "keep" */
/* Resolves the spec (weights file, config, overrides), checks and loads. 0 or -1 with err. */
int vit_open(Vit *vit, const VitSpec *spec, char *err, size_t errlen);

/* Loads PATH (a .safetensors file, or a folder holding model.safetensors or one
 * *.safetensors file) with the architecture in cfg. F32, F16 and BF16 become float32.
 * Names: transformers (with or without "vision_model."), OpenAI/open_clip ("visual.*").
 * Returns 0, or -1 with a message naming the file and tensor in err. */
int vit_load(Vit *vit, const VitConfig *cfg, const char *path, char *err, size_t errlen);
/* Allocates zeroed parameters for cfg (n_pos from cfg->image_size). */
void vit_alloc_params(Vit *vit, const VitConfig *cfg);
/* Sizes (in floats) of the VIT_N_PARAM_TENSORS parameter tensors, in VitParams order. */
void vit_param_sizes(const VitConfig *cfg, int n_pos, size_t sizes[VIT_N_PARAM_TENSORS]);
void vit_free(Vit *vit);
/* Writes the parameters under transformers names (float32), atomically. 0 or -1 with err. */
int vit_save(const Vit *vit, const char *path, char *err, size_t errlen);

/* ---- compute ---- */
/* Picks the backend (AUTO = CUDA when built with it and a GPU is present, else CPU).
 * Returns 0, or -1 with err (e.g. CUDA asked for but not available). */
int vit_set_device(Vit *vit, Device device, char *err, size_t errlen);
/* pixels: [B, C, H, W] float32 (already normalized), host memory.
 * hidden: [n] hidden-state indices (0 .. n_layers+1), any order, repeats allowed.
 * out: [n, B, T_out, D] host memory, T_out = vit_tokens_out(cfg, H, W).
 * Buffers are allocated on first use and reused while B, H, W stay within them. */
void vit_forward(Vit *vit, const float *pixels, int B, int H, int W, const int *hidden, int n, float *out);

/* A second handle on vit's weights with its own buffers, so that another thread can run
 * vit_forward at the same time (CPU backend only; the weights stay owned by vit, which
 * must outlive the view). Each view sizes its row-loop pool from OpenBLAS's thread count
 * at its first forward. Free with vit_view_free, never vit_free. */
void vit_view(const Vit *vit, Vit *view);
void vit_view_free(Vit *view);

/* Runs the ViT from hidden-state index h0 (the input of block h0, i.e. block h0-1's
 * output; 0 <= h0 <= n_layers) given the residual stream there, for interventions:
 * x: [B, T_int, D] host memory in the model's internal token order (CLS, registers,
 * patches; T_int = vit_tokens_internal(cfg, H, W)), which for families without
 * registers is exactly what the store records. hidden: [n] indices >= h0; out as
 * vit_forward's. The later blocks run the same code as vit_forward's, so given
 * vit_forward's own hidden state h0 it returns vit_forward's later states bit for bit.
 * H, W: the pixel size the stream came from (they fix the token count). */
void vit_forward_from(Vit *vit, const float *x, int h0, int B, int H, int W, const int *hidden, int n, float *out);

/* Position table for a grid_h x grid_w patch grid, CLS row first when the family has
 * one: the table itself when the grid matches, else (dinov2) resampled exactly as
 * transformers' Dinov2Embeddings.interpolate_pos_encoding does. out: [has_cls + gh*gw, D].
 * Returns 0, or -1 with err (clip/siglip only accept the table's own grid). */
int vit_position_table(const Vit *vit, int grid_h, int grid_w, float *out, char *err, size_t errlen);
/* torch.nn.functional.interpolate(mode="bicubic", align_corners=False, size=(oh, ow),
 * antialias=aa) on one [C, ih, iw] tensor, in double for accuracy; out: [C, oh, ow]. */
void vit_bicubic_resize(const float *in, int C, int ih, int iw, float *out, int oh, int ow, int aa);

/* ---- random checkpoints (vit_make.c) ---- */
/* Presets: "tiny" (D 48, 3 blocks), "vit-b-16", "vit-l-14". 0 or -1 with err. */
int vit_preset_config(VitConfig *cfg, VitFamily family, const char *preset, char *err, size_t errlen);
/* Writes DIR/model.safetensors (transformers names) and DIR/config.json with random
 * weights from seed. 0 or -1 with err. */
int vit_make_random(const VitConfig *cfg, uint64_t seed, const char *dir, char *err, size_t errlen);

/* ---- backend hooks ----
 * Each backend provides <name>_forward (same contract as vit_forward) and <name>_release
 * (frees its buffers in vit->backend). vit.c dispatches on vit->device; a CUDA backend
 * adds vit_cuda_available/vit_cuda_forward/vit_cuda_release beside these. */
void vit_cpu_forward(Vit *vit, const float *pixels, int B, int H, int W, const int *hidden, int n, float *out);
void vit_cpu_forward_from(Vit *vit, const float *x, int h0, int B, int H, int W, const int *hidden, int n, float *out);
void vit_cpu_release(Vit *vit);

#ifdef __cplusplus
}
#endif

#endif
