/*
 * intervene_internal.h: what intervene.c and study.c share: the session one image at a
 * time goes through (the store's tokens of the SAE's block, the SAE's codes, the edits,
 * the later ViT blocks, the probe).
 */
#ifndef SAEV_INTERVENE_INTERNAL_H
#define SAEV_INTERVENE_INTERNAL_H

#include <stdint.h>

#include "comm.h"
#include "intervene.h"
#include "image/preprocess.h"
#include "probe/probe.h"
#include "sae/sae.h"
#include "store/store.h"
#include "vit/vit.h"

typedef struct {
    const InterveneConfig *c;
    Store *st;
    int layer_idx, block;   // the SAE's layer: position in the store, ViT block
    int d, T, np, has_cls;  // width, tokens per image (CLS + patches), patches, CLS present
    int grid, H, W;         // patch grid side; pixel size the ViT is run at
    int has_labels;         // the store has patch_labels
    Sae sae;                // the intervention SAE
    int S;                  // its latents
    Edit *edits;            // [n_edits]
    int n_edits;
    Probe probe;
    Sae probe_sae;          // the probe's SAE when it reads codes
    Vit vit;
    int has_vit;            // the ViT is loaded (the probe reads a later block)
    int64_t *img;           // [n_img] store positions
    int64_t n_img;
    int64_t n_files;        // image files (c->files), edited after the store images
    PreprocessSpec prep;    // the store's recorded preprocessing (files)
    int64_t max_pixels;     // the store's recorded data.max_pixels (files)
    float *px;              // [3, H, W] a file's model input
    uint8_t *rgb;           // [H, W, 3] preprocess scratch
    int rows;               // probe rows per image (patches, or 1)
    /* scratch for one image */
    float *tokens;          // [T, d] the SAE's layer as stored
    float *edited;          // [T, d] after an edit
    float *later;           // [T, d] the probe's block
    float *f;               // [np + 1, S] codes of the patches
    float *f2;              // [np + 1, max(S, probe features)] probe scratch
    float *sf;              // [S] edited codes of one patch
    float *xs, *x_hat;      // [np + 1, d]
    float *feat;            // [rows, probe features]
    double *z;              // [rows, K]
    uint8_t *labels;        // [np] patch labels
} Session;

/* Opens the store, SAE, probe and (when the probe reads a later block, or for image
 * files) the ViT; decode_files: decode every image file once (the check before ranks
 * start), so a bad one is refused with status 2. */
void session_open_or_die(Session *ss, const InterveneConfig *c, const VitSpec *model, Device device, int decode_files);
void session_close(Session *ss);
/* Reads image img's tokens and patch labels and encodes its patches (ss->tokens, labels, f). */
void session_read_image(Session *ss, int64_t img);
/* Item i of the run: store image ss->img[i] for i < n_img, else file c->files[i - n_img]
 * (decoded, preprocessed, the ViT to the SAE's block; no labels). */
void session_read_item(Session *ss, int64_t i);
/* The probe on tokens x [T, d] of the SAE's block: runs the later blocks, pred [rows]
 * (class indices), probs [rows, K] when not NULL. Returns the probe block's tokens. */
const float *session_predict(Session *ss, const float *x, int *pred, float *probs);

void study_check_or_die(Session *ss);
void study_run(Session *ss, const Comm *comm);

#endif
