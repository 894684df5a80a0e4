/*
 * probe.h: linear probes on a ViT's recorded activations or an SAE's latent codes, and
 * semantic probing of every latent against every class (`saev probe`).
 *
 * Data: one layer of an activation store. Targets:
 *   class  one row per image, its store `label` (images labelled -1 are left out);
 *          features: the CLS token (pool: cls) or the mean of the patch tokens (pool: mean)
 *   patch  one row per patch token, its `patch_labels` entry (a segmentation store);
 *          labels equal to ignore_label are left out
 * Features: the layer's activations (features: activations), or the latent codes f of
 * an SAE trained on that layer (features: sae; f of the CLS token, or the mean of the
 * patch tokens' f, for class targets). Codes are computed as `saev evaluate` does: the
 * input times the checkpoint's data_scale, then the SAE's encoder (JumpReLU threshold for
 * batch-top-k).
 *
 * Split: the store's written images are put in an order drawn from `seed`; the first
 * round(held_out · n) are held out, the rest train. Classes are the distinct labels of
 * the training rows, ascending (scikit-learn's classes_); W's columns follow them.
 *
 * Fit: logreg.h (L-BFGS, float64, the stopping rule stated there), data-parallel: rank r
 * holds training images [r·n/size, (r+1)·n/size) and the gradients are all-reduced.
 * The solution is rounded to float32 once (what probe.safetensors stores) and every
 * prediction, here and in `saev intervene`, uses those float32 weights in float64
 * arithmetic. Held-out evaluation (each rank a share of the held-out images, counts
 * all-reduced): accuracy, per-class accuracy (recall), the confusion matrix (rows: true
 * class, columns: predicted), and for patch targets the IoU of every class present in
 * the held-out labels, TP / (TP + FP + FN), and their mean.
 *
 * Semantic probing (saev's), when an SAE is given: latent s "fires" on a row when
 * f_s != 0 (a patch for patch targets; an image when s fires on any of its patches, for
 * class targets). Over the training rows, per latent s and class c: TP = rows where s
 * fires and the label is c, precision = TP / (rows where s fires), recall = TP / (rows of
 * class c), F1 = 2PR / (P + R) (0 when TP = 0). Counts are int64 and all-reduced, so the
 * tables are exact whatever the rank count.
 *
 * Outputs (rank 0, in `out`, each written atomically): probe.safetensors (W [features,
 * classes] F32, b [classes] F32; metadata: layer, features, target, pool, l2, classes,
 * store, sae), probe.json (the split, optimizer result, metrics, confusion matrix, the
 * best latents per class), confusion.svg, latent_f1.safetensors (precision, recall, f1
 * [S, K] F32; tp [S, K], fires [S], support [K] I64), split.json (the held-out images).
 */
#ifndef SAEV_PROBE_PROBE_H
#define SAEV_PROBE_PROBE_H

#include <stdint.h>

#include "comm.h"
#include "config.h"
#include "sae/sae.h"
#include "store/store.h"

/* The `probe:` section. */
typedef struct {
    char *data;           // activation store directory
    int64_t layer;        // ViT block in the store (negative from the end); unset: the only one
    char *target;         // class | patch
    char *pool;           // class targets: cls | mean
    char *features;       // activations | sae
    char *sae;            // SAE checkpoint (features: sae, and semantic probing); NULL: none
    double l2;            // λ of logreg.h
    double tol;           // stopping rule: max |gradient| <= tol
    int64_t max_iter;     // L-BFGS iterations at most
    int64_t history;      // L-BFGS pairs
    double held_out;      // fraction of images held out
    int64_t seed;         // the split's seed
    int64_t ignore_label; // patch label left out (-1: none)
    int64_t top_latents;  // best latents per class listed in probe.json
    char *class_names;    // optional text file: one class per line, "ID NAME" or "NAME"
    char *out;            // output directory
} ProbeConfig;
extern const CfgSchema probe_config_schema;

/* A trained probe as stored in probe.safetensors, and what it needs to compute its
 * features from a layer's tokens. */
typedef struct {
    int n_in;            // features per row (d_model, or d_sae with features: sae)
    int K;               // classes
    int64_t *classes;    // [K] the label of each column
    double *theta;       // [n_in*K + K] W (row-major [n_in, K]) then b, the float32 values widened
    int block;           // the store block the probe reads
    int is_patch;        // target: patch (else class)
    int pool_mean;       // class target: mean of patches (else CLS)
    int use_sae;         // features: sae
    char *sae_path;      // the SAE (use_sae, or semantic probing); NULL when none
    char *store;         // the store it was trained on
} Probe;

/* Loads probe.safetensors; fails naming the file. */
/* Reads probe.safetensors (W, b, the saev_probe metadata): 0, or -1 with why in err
 * (naming the file); the _or_die form exits with status 2. */
int probe_load(Probe *p, const char *path, char *err, size_t errlen);
void probe_load_or_die(Probe *p, const char *path);
void probe_free(Probe *p);

/* Feature rows of one image from its layer tokens x [n_tokens, d] (CLS first when
 * has_cls, then n_patches patches): patch targets n_patches rows, class targets 1 row,
 * into out [rows, n_in]. sae (loaded, when use_sae) encodes; f [n_patches+1, S] and
 * xs/x_hat [n_patches+1, d] are scratch. Returns the row count. */
int probe_features(int is_patch, int pool_mean, const Sae *sae, const float *x, int has_cls, int n_patches, int d,
                   float *out, float *f, float *xs, float *x_hat);

/* Latent codes of rows x [n, d] (times the SAE's data_scale first) into f [n, S];
 * xs and x_hat [n, d] scratch. */
void probe_sae_codes(const Sae *sae, const float *x, int n, float *f, float *xs, float *x_hat);

/* Per-latent precision, recall, F1 from counts tp [S, K], fires [S], support [K]. */
void semantic_f1(const int64_t *tp, const int64_t *fires, const int64_t *support, int S, int K, float *precision, float *recall,
                 float *f1);

/* The whole stage on every rank of comm (collective; images split across them); rank 0
 * writes the outputs. */
void probe_run(const ProbeConfig *c, const Comm *comm);
/* Checks the config against the store and SAE (exists, layer, target, widths) before any
 * rank starts; exits 2 naming the problem. */
void probe_check_or_die(const ProbeConfig *c);

/* probe.json beside a probe.safetensors (parsed; cJSON_Delete it), or NULL when absent. */
struct cJSON;
struct cJSON *probe_json_beside(const char *probe_path);

/* Confusion matrix SVG (rows true, columns predicted; shade = row fraction). names [K]. */
char *probe_confusion_svg(const int64_t *conf, int K, char *const *names, const char *title);

#endif
