/*
 * saev_pt.h: saev's own SAE checkpoints (`sae.pt`) read in C, without Python.
 *
 * saev writes one JSON header line (the SAE's config) and then `torch.save(state_dict)`:
 * a zip archive (entries stored, not compressed) holding `<archive>/data.pkl`, a pickle
 * (protocol 2) of an OrderedDict whose values are tensors rebuilt by
 * torch._utils._rebuild_tensor_v2 from persistent ids that name `<archive>/data/<key>`.
 * Both of saev's eras are read:
 *   preprint (OSU-NLP-Group/saev@97b00d9, 2025-02-19, saev/nn.py dump): the header is
 *     vars(config.SparseAutoencoder) = {d_vit, exp_factor, sparsity_coeff, ...}; ReLU;
 *     the encoder sees x - b_dec (center_input here).
 *   current (schema 1..5; @3d73f1f, 2026-03-11, src/saev/nn/modeling.py dump): the header
 *     is {schema, cfg: {d_model, d_sae, activation: {cls, params}, ...}, commit, lib};
 *     ReLU, TopK or BatchTopK (its JumpReLU threshold is the state-dict entry
 *     `activation.threshold`); the encoder sees x.
 * Matryoshka is a training objective in saev, not part of the SAE: its sae.pt is a plain
 * SAE and reads as one.
 */
#ifndef SAEV_SAE_SAEV_PT_H
#define SAEV_SAE_SAEV_PT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sae.h"

typedef struct {
    SaeConfig cfg;      // the saev-c config that encodes as saev did
    const char *era;    // "preprint" or "current" (static string)
    int schema;         // saev's header schema (0 = the preprint's schema-less header)
    float threshold;    // batch-top-k JumpReLU threshold (0 = plain ReLU, as saev treats <= 0)
    float *w_enc;       // [d, S]
    float *b_enc;       // [S]
    float *w_dec;       // [S, d]
    float *b_dec;       // [d]
    char *header;       // saev's JSON header line as written (malloc'd)
} SaevPt;

/* 1 when path starts like a saev sae.pt or any torch.save zip (so the reader, not the
 * safetensors parser, explains what is wrong with it); 0 otherwise or unreadable. */
int saev_pt_detect(const char *path);
/* Reads a sae.pt; 0, or -1 with a message naming the file and the problem in err. */
int saev_pt_read(const char *path, SaevPt *out, char *err, size_t errlen);
void saev_pt_free(SaevPt *p);
/* One line on what was read (era, schema, activation, sizes, centring, threshold) and
 * saev's header line. */
void saev_pt_describe(const SaevPt *p, const char *path, FILE *out);
/* A tensor saved on its own with torch.save (saev's preprint scale_mean / scale_norm
 * files), up to 2-d, as malloc'd float32 in C order with its element count; NULL with a
 * message naming the file in err. */
float *torch_tensor_read(const char *path, int64_t *numel, char *err, size_t errlen);
/* Creates `sae` from a sae.pt for batches of max_batch rows: 0, or -1 with the message
 * in err (sae untouched). */
int saev_pt_read_sae(Sae *sae, const char *path, int max_batch, char *err, size_t errlen);
/* Same; bad input ends the job with the message (exit status 2). */
void saev_pt_load(Sae *sae, const char *path, int max_batch);
/* `saev import-sae`: a sae.pt to saev-c's checkpoint at out_path (tmp + rename). The
 * preprint trained on s·(x - act_mean) (its scale_norm / scale_mean, kept outside the
 * checkpoint): data_scale = s (1 = none) and act_mean [d] (NULL = none) are folded in, so
 * saev-c's s·x input gives the same codes. */
void saev_pt_import(const char *path, const char *out_path, float data_scale, const float *act_mean);

#endif
