/*
 * viewer.h: the viewer's shared state and the functions its files give each other
 * (serve.h is the outside interface).
 *
 * A ViewerSource is one activation store with what produced it: the data set, the
 * preprocessing and the ViT (several SAEs trained on one store share it). A ViewerSae is
 * one checkpoint with its visuals outputs (top.safetensors; index.json says which latents
 * were rendered into latents/<s>/) and eval.json when present. Everything is loaded at
 * start and read-only afterwards, except the caches, which have their own locks. The ViT,
 * the SAE encode and HDF5 reads all go through one lock (viewer_compute_lock): the CPU
 * pool and HDF5 are not re-entrant, and one image at a time keeps an upload's latency
 * predictable on a small machine.
 */
#ifndef SAEV_VIEWER_VIEWER_H
#define SAEV_VIEWER_VIEWER_H
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "image/dataset.h"
#include "image/decode.h"
#include "image/preprocess.h"
#include "intervene/intervene.h"
#include "probe/probe.h"
#include "sae/sae.h"
#include "serve.h"
#include "store/store.h"
#include "vit/vit.h"

typedef struct {
    char *store_dir;        // the activation store
    Store *store;           // opened for reading
    int has_model;          // 1 when the data set and the ViT could be opened
    char *why_no_model;     // otherwise the reason, for 503 answers
    Dataset ds;             // the data set the store was recorded from
    DataSpec data;          // its spec (max_pixels for uploads)
    void *config;           // SaevConfig* bound from the store's recorded config (owns the strings above)
    PreprocessSpec prep;    // resize, crop, normalization
    Vit vit;                // the ViT, loaded once
    int grid_w, grid_h;     // patch grid of the model input
    int patch;              // patch side in pixels
    int in_w, in_h;         // model input size after crop
    int64_t *store_pos;     // [ds.n] store position of each data-set image, -1 when not stored
} ViewerSource;

typedef struct {
    char *name;             // the checkpoint's path as found, for the page
    char *ckpt;             // sae.safetensors
    char *visuals_dir;      // folder with top.safetensors, NULL when visuals were not run
    ViewerSource *src;      // shared, not owned
    int64_t layer;          // as configured (negative counts from the ViT's end)
    int block;              // resolved ViT block (>= 0)
    int layer_idx;          // position of the block in the store's layers
    char *tokens;           // patches | all | cls: which store rows the SAE saw
    Sae sae;                // weights, config, data_scale
    int d, S;               // d_model, d_sae
    double *dec_norm;       // [S] L2 norms of W_dec rows, float64 (cosine similarity)
    int top_k;              // columns of the top lists (0 without visuals)
    float *top_values;      // [S, top_k] scores, descending
    int64_t *top_images;    // [S, top_k] data-set image index, -1 past the end
    float *freq;            // [S] firing frequency (NULL without visuals)
    float *mean_value;      // [S] mean value when firing
    float *max_value;       // [S] largest value
    uint8_t *rendered;      // [S] 1 where latents/<s>/ was rendered by visuals
    double l0, nmse;        // from eval.json beside the checkpoint; NaN when absent
    pthread_mutex_t hist_lock; // guards the histogram below
    int hist_done;          // histogram computed
    int hist_bins;          // bins per latent over [0, max_value[s]]
    int64_t *hist;          // [S, hist_bins] counts of firing rows
    int64_t hist_rows;      // rows the histogram saw
    int hist_images;        // images sampled
} ViewerSae;

/* One image through the model: the pixels as the model saw them and per-patch latents. */
typedef struct {
    int in_w, in_h;         // model input size
    uint8_t *rgb;           // [in_h, in_w, 3] resized and cropped, before normalization
    uint8_t *seg;           // [grid_h*grid_w] patch labels, NULL when none
    int n_patches;          // grid_w * grid_h
    int grid_w, grid_h;
    int S;                  // latents
    float *f;               // [n_patches, S] latent values of each patch
    int n_tokens, d;        // tokens of the SAE's block kept for edits (CLS first when present), width
    float *tokens;          // [n_tokens, d] the SAE's block (hidden state block+1) in data units
    double ms;              // server time for the whole path in milliseconds
} ViewerImage;

typedef struct {
    ViewerSource **sources; // [n_sources]
    int n_sources;
    ViewerSae *saes;        // [n_sae]
    int n_sae;
    const ServeConfig *cfg;
    char *web_dir;          // realpath of the static files
    int has_probe;          // serve.probe was given
    Probe probe;            // its weights, read for the intervention panel
    Sae probe_sae;          // the probe's SAE when it reads codes
} Viewer;

/* ---- catalog.c ---- */
/* Finds and loads every SAE under cfg->dirs; exits with a message naming the input. */
void viewer_load(Viewer *v, const ServeConfig *cfg);
void viewer_free(Viewer *v);
void viewer_compute_lock(void);
void viewer_compute_unlock(void);

/* ---- infer.c ---- */
/* Data-set image `image` (its index in the data set). Returns 0, or an HTTP status (404
 * unknown image, 503 no model, 500 unreadable file) with the reason in err. */
int viewer_image_from_dataset(ViewerSae *s, int64_t image, ViewerImage *out, char *err, size_t errlen);
/* Encoded JPEG/PNG bytes. Returns 0, or 413 (over data.max_pixels), 400 (not an image),
 * 503 (no model) with the reason in err. */
int viewer_image_from_bytes(ViewerSae *s, const uint8_t *buf, size_t len, ViewerImage *out, char *err, size_t errlen);
void viewer_image_free(ViewerImage *im);
/* The histogram of latent values over the sampled store images (computed once). */
void viewer_latent_histograms(ViewerSae *s, int hist_images);

/* The probe before and after edits on a computed image (the edit arithmetic is
 * intervene.h's edit_apply, the prediction intervene_predict): rows = n_patches for a
 * patch probe, else 1; pred_* [rows] column indices; probs_* [rows, K]. Returns 0, or 400
 * (the probe cannot read this SAE's images) with the reason in err. */
int viewer_intervene(Viewer *v, ViewerSae *s, const ViewerImage *im, const Edit *edits, int n_edits, int *pred_before, float *probs_before,
                     int *pred_after, float *probs_after, int *patches_edited, char *err, size_t errlen);

/* ---- render.c ---- */
typedef enum { RENDER_PLAIN = 0, RENDER_HEAT, RENDER_SEG } RenderMode;
/* PNG bytes (malloc'd, *len) of the image as the model saw it, upscaled to at least 224
 * px; heat: latent `latent`'s patch values overlaid, scaled by `scale` (zero patches
 * untouched); seg: the patch labels as colours. */
uint8_t *viewer_render_png(const ViewerImage *im, RenderMode mode, int latent, float scale, size_t *len);

/* ---- api.c ---- */
/* An answer: status, content type (static string) and body (malloc'd). */
typedef struct {
    int status;
    const char *type;
    uint8_t *body; // [len]
    size_t len;
} Reply;
/* A query-string parameter of the request, NULL when absent. */
typedef const char *(*QueryFn)(void *ctx, const char *key);
/* GET /api/<path> (path without the /api/ prefix). */
void api_get(Viewer *v, const char *path, QueryFn query, void *qctx, Reply *r);
/* POST /api/<path> with the request body. */
void api_post(Viewer *v, const char *path, const uint8_t *body, size_t len, Reply *r);
/* A JSON error body {"error": msg} with status. */
void api_error(Reply *r, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Frees the caches of uploads, images and renders. */
void api_free_caches(void);

#endif
