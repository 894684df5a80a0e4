/*
 * train_config.h: the `train:` section of a saev-c config (plain structs + CfgSchema).
 *
 *   train:
 *     data: PATH              # an activation store directory, or safetensors with `activations` [N,d]
 *     layer: 10               # store: the ViT block as recorded in its `layers` (-2: from the end)
 *     tokens: patches         # store: patches | all | cls
 *     shuffle: true
 *     shuffle_buffer: 262144  # rows shuffled together
 *     batch_size: 16384
 *     n_tokens: 100000000     # or steps:
 *     lr: 4.0e-4
 *     lr_schedule: warmup-cosine   # constant | warmup-constant | warmup-cosine
 *     lr_warmup: 500
 *     grad_clip: 1.0
 *     seed: 42
 *     out_dir: runs/NAME
 *     checkpoint_every: 1000  # steps; 0 = only at the end
 *     metrics_every: 10
 *     resume: false
 *     eval: {data: PATH, batch_size: 4096, max_tokens: 0}
 *     sae: {d_sae | expansion, activation, l1_coeff, k, momentum, aux: {k_aux, alpha} | none,
 *           matryoshka: {prefixes: [...]} | {n_prefixes: N} | none, dead_threshold_tokens,
 *           init: kaiming | datapoint | PATH, normalize_w_dec, remove_parallel_grads,
 *           center_input, scale_data}
 *
 * Every key lives in this schema; the YAML layer (common/config.c) binds it as the
 * `train:` section of SaevConfig (common/saev_config.h), with --set overrides and
 * sweeps (`train.sweep: {lr: [..], sae.l1_coeff: [..]}`) expanded there.
 */
#ifndef SAEV_SAE_TRAIN_CONFIG_H
#define SAEV_SAE_TRAIN_CONFIG_H

#include <stdint.h>

#include "config.h"
#include "device.h"
#include "sae.h"

typedef struct {
    int enabled;       // 0 when `aux: none`
    int64_t k_aux;     // dead latents per row
    double alpha;      // loss weight
} TrainAuxConfig;

typedef struct {
    int enabled;       // 0 when `matryoshka: none`
    CfgList prefixes;  // fixed prefixes (ints, increasing, last = d_sae); n = 0 to sample
    int64_t n_prefixes; // sampled each step (saev's Pareto sampler) when prefixes is empty
} TrainMatryoshkaConfig;

typedef struct {
    int64_t d_sae;      // latents; CFG_UNSET_INT: expansion·d
    int64_t expansion;
    char *activation;   // relu | top-k | batch-top-k
    double l1_coeff;
    int64_t k;
    double momentum;
    TrainAuxConfig aux;
    TrainMatryoshkaConfig matryoshka;
    int64_t dead_threshold_tokens;
    char *init;         // kaiming | datapoint | PATH.safetensors
    int normalize_w_dec;
    int remove_parallel_grads;
    int center_input;
    int scale_data;     // scale inputs to mean norm sqrt(d) (constant saved in the checkpoint)
} TrainSaeConfig;

typedef struct {
    char *data;         // CFG_UNSET: no held-out evaluation after training
    int64_t batch_size;
    int64_t max_tokens; // 0 = all rows
} TrainEvalConfig;

typedef struct {
    char *data;         // CFG_UNSET (NULL) outside `saev train`
    int64_t layer;      // CFG_UNSET_INT: the store's only layer
    char *tokens;       // patches | all | cls
    int shuffle;
    int64_t shuffle_buffer;
    int64_t batch_size;
    int64_t n_tokens;   // CFG_UNSET_INT when steps is given
    int64_t steps;
    double lr;
    char *lr_schedule;
    int64_t lr_warmup;
    double grad_clip;
    int64_t seed;
    char *out_dir;
    int64_t checkpoint_every;
    int64_t metrics_every;
    int resume;
    char *precision;    // fp32 | tf32 | bf16: the SAE's GEMMs on cuda (the CPU trains in fp32)
    TrainEvalConfig eval;
    TrainSaeConfig sae;
} TrainConfig;

extern const CfgSchema train_config_schema;

/* The SaeConfig this TrainConfig describes for inputs of width d. NULL or a message. */
const char *train_config_sae(const TrainConfig *c, int d_model, SaeConfig *out);
/* Number of optimizer steps (from steps or n_tokens). */
int64_t train_config_steps(const TrainConfig *c);

#endif
