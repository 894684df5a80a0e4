/*
 * intervene.h: latent edits at an SAE's layer that run the rest of the ViT, and saev's
 * faithfulness study (`saev intervene`).
 *
 * An edit sets latent s to a value, or scales it, on some patches of an image:
 *   "S=V"   f_s <- V          "S*A"   f_s <- A·f_s
 * optionally followed by where: "@all" (default: every patch), "@class:C" (the patches
 * whose patch label is C), "@patches:I,J,K" (patch indices in raster order). Edits apply
 * in the order given, each to the codes as left by the ones before.
 *
 * The edited activation keeps the SAE's error term: with f the codes of x (as `saev
 * evaluate` computes them: x times data_scale, then the encoder) and f' the edited codes,
 *     x' = x + Σ_s (f'_s − f_s) W_dec[s] / data_scale
 * which is decode(f') + (x − decode(f)) up to rounding, without the rounding of a decode
 * and re-add: a patch none of whose latents changes keeps its activation bit for bit.
 *
 * Then the ViT runs from the SAE's block L (vit_forward_from with the layer's tokens as
 * hidden state L+1) to the probe's block (a probe on block L reads x' directly), and the
 * probe (probe.h) predicts, before (unedited tokens through the same path) and after.
 * The layer's tokens come from the store (intervene.data), which holds the model's whole
 * residual stream when the family has no register tokens; a model with registers is
 * refused (the store does not keep them). Image files (intervene.files) go the way the
 * store's images went: decoded and preprocessed as the store recorded (its config
 * attribute: data.max_pixels, the preprocess: section), then the ViT (the config's model:,
 * which must match the store) runs blocks 0..L. Files have no patch labels, so @class
 * edits and the study refuse them.
 *
 * Images are split across ranks (contiguous shares); per-image results are gathered with
 * one all-reduce and rank 0 writes: intervene.json (per image, the store images first and
 * then the files, its "image" position or its "file", the probe's predictions before and
 * after, and how many changed) and predictions.safetensors (`images` [images] I64 store
 * positions, -1 for a file; `before`, `after` [images, rows] I64 labels; `probs_before`, `probs_after` [images, rows, K] F32 for class
 * probes; `activations_before`, `activations_after` [images, tokens, d] F32 of the probe's
 * layer with save_activations).
 *
 * The faithfulness study (study: faithfulness, a patch probe and a segmentation store):
 * for every class c (of latent_f1's classes, a `saev probe` semantic table of this SAE on
 * block L) with at least min_patches patches in the study images, s* = the latent of best
 * F1 for c. On every study image holding c, the edit is on P = the patches labelled c:
 *   target             δ_p = (0 − f_{s*,p}) W_dec[s*] / data_scale   (suppress s*)
 *   random latent      δ_p = −‖δ_p‖ · W_dec[r] / ‖W_dec[r]‖, r drawn uniformly ≠ s*
 *   random direction   δ_p =  ‖δ_p‖ · u, u a Gaussian unit vector
 * (r and u drawn once per class from intervene.seed), so all three move each patch by
 * the same norm. Rates, over the images holding c:
 *   target change rate  (patches of P predicted c before and not c after) / (patches of P predicted c before)
 *   collateral rate     (patches outside P whose prediction changes) / (patches outside P)
 * Outputs: study.json (per class and pooled over classes: counts and rates), study.md (the
 * table), study.svg (grouped bars), study_predictions.safetensors (labels, before, and
 * per condition the after predictions [classes, images, patches], so every rate can be
 * recomputed).
 */
#ifndef SAEV_INTERVENE_INTERVENE_H
#define SAEV_INTERVENE_INTERVENE_H

#include <stdint.h>

#include "config.h"
#include "probe/probe.h"
#include "sae/sae.h"
#include "vit/vit.h"

/* The `intervene:` section (the ViT is the config's `model:` section). */
typedef struct {
    char *data;           // activation store holding the SAE's layer
    CfgList images;       // CFG_INT_LIST store positions; empty (and no files): the probe's held-out images, else all
    CfgList files;        // CFG_STRING_LIST image files (JPEG, PNG), run through the store's recorded pipeline
    char *sae;            // SAE checkpoint trained on the layer
    int64_t layer;        // the SAE's block in the store (negative from the end); unset: the store's only layer
    CfgList edits;        // CFG_STRING_LIST edits ("S=V", "S*A", with "@all|@class:C|@patches:I,J")
    char *probe;          // probe.safetensors
    int save_activations; // write the probe layer's activations before and after
    char *study;          // none | faithfulness
    char *latent_f1;      // study: latent_f1.safetensors of this SAE on this layer
    int64_t min_patches;  // study: classes with at least this many patches in the study images
    int64_t seed;         // study: the random latent and direction
    char *out;            // output directory
} InterveneConfig;
extern const CfgSchema intervene_config_schema;

typedef enum { EDIT_ALL = 0, EDIT_CLASS, EDIT_PATCHES } EditWhere;
typedef struct {
    int latent;           // s
    int is_scale;         // 1: f_s <- value·f_s; 0: f_s <- value
    double value;
    EditWhere where;
    int64_t class_label;  // EDIT_CLASS
    int n_patches;        // EDIT_PATCHES
    int *patches;         // [n_patches]
} Edit;

/* Parses one edit; 0, or -1 with the problem in err. */
int edit_parse(const char *text, Edit *e, char *err, size_t errlen);
void edit_free(Edit *e);

/* x' = x + Σ (f'_s − f_s) W_dec[s] / data_scale for one image's patches: x [n_patches, d]
 * (edited in place), codes f [n_patches, S]; labels [n_patches] (NULL: no patch labels).
 * Returns the number of patches changed. */
int edit_apply(const Sae *sae, const Edit *edits, int n_edits, float *x, const float *f, int n_patches, const uint8_t *labels,
               float *scratch_f);

/* What a prediction after an edit needs: the ViT from the SAE's block on, the probe. */
typedef struct {
    Vit *vit;             // loaded when the probe reads a later block than the SAE's
    const Probe *probe;
    const Sae *probe_sae; // the probe's SAE when it reads codes, else unused
    int sae_block;        // the edited block L; tokens x are hidden state L+1
    int H, W;             // pixel size the ViT runs at
    int has_cls, np, d;   // CLS present, patches, width
} InterveneModel;

/* The probe on tokens x [has_cls + np, d] of the SAE's block: runs blocks L+1..probe
 * block into later [T, d], the features into feat [rows, n_in] (f2 [np+1, max(S, n_in)],
 * xs/x_hat [np+1, d] scratch), scores into z [rows, K], pred [rows] (column indices) and,
 * when not NULL, softmax probs [rows, K] (float64, rounded once). Returns the probe
 * block's tokens. The one prediction path of `saev intervene` and `saev serve`. */
const float *intervene_predict(const InterveneModel *m, const float *x, float *later, float *feat, float *f2, float *xs, float *x_hat,
                               double *z, int *pred, float *probs);

/* Checks everything before ranks start (store, layer, SAE, probe, model, edits); exit 2. */
void intervene_check_or_die(const InterveneConfig *c, const VitSpec *model);
/* The stage on every rank of comm (collective). */
void intervene_run(const InterveneConfig *c, const VitSpec *model, Device device, const Comm *comm);

#endif
