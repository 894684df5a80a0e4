/*
 * train_config.c: the `train:` schema (bound by the YAML layer, common/config.c) and the
 * translation of a bound TrainConfig into the SAE's own SaeConfig.
 */
#include "train_config.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"


static const CfgField aux_fields[] = {
    {"k_aux", CFG_INT, offsetof(TrainAuxConfig, k_aux), "512", 1, 1e9, NULL, NULL, 0, "dead latents used per row by AuxK"},
    {"alpha", CFG_FLOAT, offsetof(TrainAuxConfig, alpha), "0.03125", 0, 1e9, NULL, NULL, 0, "AuxK loss weight"},
};
static const CfgSchema aux_schema = {"aux", sizeof(TrainAuxConfig), aux_fields, 2, NULL};

static const CfgField matryoshka_fields[] = {
    {"prefixes", CFG_INT_LIST, offsetof(TrainMatryoshkaConfig, prefixes), "[]", 1, 1e9, NULL, NULL, 0, "fixed prefix lengths, increasing, the last = d_sae"},
    {"n_prefixes", CFG_INT, offsetof(TrainMatryoshkaConfig, n_prefixes), "10", 1, SAE_MAX_PREFIXES, NULL, NULL, 0, "prefixes sampled each step when `prefixes` is empty"},
};
static const CfgSchema matryoshka_schema = {"matryoshka", sizeof(TrainMatryoshkaConfig), matryoshka_fields, 2, NULL};

static const CfgField sae_fields[] = {
    {"d_sae", CFG_INT, offsetof(TrainSaeConfig, d_sae), CFG_UNSET, 1, 1e9, NULL, NULL, 0, "number of latents (or expansion)"},
    {"expansion", CFG_INT, offsetof(TrainSaeConfig, expansion), "16", 1, 1e6, NULL, NULL, 0, "d_sae = expansion * d when d_sae is absent"},
    {"activation", CFG_STRING, offsetof(TrainSaeConfig, activation), "top-k", 0, -1, SAE_ACTIVATION_NAMES, NULL, 0, "activation"},
    {"l1_coeff", CFG_FLOAT, offsetof(TrainSaeConfig, l1_coeff), "4.0e-4", 0, 1e9, NULL, NULL, 0, "relu: L1 sparsity coefficient"},
    {"k", CFG_INT, offsetof(TrainSaeConfig, k), "32", 1, 1e9, NULL, NULL, 0, "top-k / batch-top-k: active latents per row"},
    {"momentum", CFG_FLOAT, offsetof(TrainSaeConfig, momentum), "0.1", 0, 1, NULL, NULL, 0, "batch-top-k: threshold EMA rate"},
    {"aux", CFG_SECTION, offsetof(TrainSaeConfig, aux), "{}", 0, -1, NULL, &aux_schema, 1, "AuxK (top-k variants); none turns it off"},
    {"matryoshka", CFG_SECTION, offsetof(TrainSaeConfig, matryoshka), "none", 0, -1, NULL, &matryoshka_schema, 1, "Matryoshka prefixes; none = plain SAE"},
    {"dead_threshold_tokens", CFG_INT, offsetof(TrainSaeConfig, dead_threshold_tokens), "10000000", 1, 1e18, NULL, NULL, 0, "tokens without firing after which a latent is dead"},
    {"init", CFG_STRING, offsetof(TrainSaeConfig, init), "kaiming", 0, -1, NULL, NULL, 0, "kaiming | datapoint | PATH.safetensors (W_enc, b_enc, W_dec, b_dec)"},
    {"normalize_w_dec", CFG_BOOL, offsetof(TrainSaeConfig, normalize_w_dec), "true", 0, -1, NULL, NULL, 0, "unit-norm decoder rows before each step"},
    {"remove_parallel_grads", CFG_BOOL, offsetof(TrainSaeConfig, remove_parallel_grads), "true", 0, -1, NULL, NULL, 0, "remove W_dec gradient components parallel to the rows"},
    {"center_input", CFG_BOOL, offsetof(TrainSaeConfig, center_input), "false", 0, -1, NULL, NULL, 0, "encoder input x - b_dec (preprint variant)"},
    {"scale_data", CFG_BOOL, offsetof(TrainSaeConfig, scale_data), "false", 0, -1, NULL, NULL, 0, "scale inputs to mean norm sqrt(d); the constant is saved in the checkpoint"},
};
static const CfgSchema sae_schema = {"sae", sizeof(TrainSaeConfig), sae_fields, (int)(sizeof sae_fields / sizeof sae_fields[0]), NULL};

static const CfgField eval_fields[] = {
    {"data", CFG_STRING, offsetof(TrainEvalConfig, data), CFG_UNSET, 0, -1, NULL, NULL, 0, "held-out activations evaluated after training"},
    {"batch_size", CFG_INT, offsetof(TrainEvalConfig, batch_size), "4096", 1, 1e9, NULL, NULL, 0, "rows per evaluation batch"},
    {"max_tokens", CFG_INT, offsetof(TrainEvalConfig, max_tokens), "0", 0, 1e18, NULL, NULL, 0, "rows evaluated (0 = all)"},
};
static const CfgSchema eval_schema = {"eval", sizeof(TrainEvalConfig), eval_fields, 3, NULL};

static const CfgField train_fields[] = {
    {"data", CFG_STRING, offsetof(TrainConfig, data), CFG_UNSET, 0, -1, NULL, NULL, 0, "activation store directory, or safetensors with `activations` [N,d] (required by train)"},
    {"layer", CFG_INT, offsetof(TrainConfig, layer), CFG_UNSET, -1e4, 1e4, NULL, NULL, 0, "store: ViT block as recorded in the store's `layers` (negative counts from the ViT's end); unset: the store's only layer"},
    {"tokens", CFG_STRING, offsetof(TrainConfig, tokens), "patches", 0, -1, "patches|all|cls", NULL, 0, "store: rows are patch tokens, all tokens (CLS too), or CLS only"},
    {"shuffle", CFG_BOOL, offsetof(TrainConfig, shuffle), "true", 0, -1, NULL, NULL, 0, "false: rows in file order, batch after batch"},
    {"shuffle_buffer", CFG_INT, offsetof(TrainConfig, shuffle_buffer), "262144", 1, 2e9, NULL, NULL, 0, "rows shuffled together (a rank holds 2 x its share in memory)"},
    {"batch_size", CFG_INT, offsetof(TrainConfig, batch_size), "16384", 1, 1e9, NULL, NULL, 0, "global batch (rows over all ranks)"},
    {"n_tokens", CFG_INT, offsetof(TrainConfig, n_tokens), CFG_UNSET, 1, 1e18, NULL, NULL, 0, "training rows (or steps)"},
    {"steps", CFG_INT, offsetof(TrainConfig, steps), CFG_UNSET, 1, 1e15, NULL, NULL, 0, "optimizer steps (or n_tokens)"},
    {"lr", CFG_FLOAT, offsetof(TrainConfig, lr), "4.0e-4", 0, 1e3, NULL, NULL, 0, "peak learning rate"},
    {"lr_schedule", CFG_STRING, offsetof(TrainConfig, lr_schedule), "warmup-cosine", 0, -1, "constant|warmup-constant|warmup-cosine", NULL, 0, "schedule"},
    {"lr_warmup", CFG_INT, offsetof(TrainConfig, lr_warmup), "500", 0, 1e15, NULL, NULL, 0, "warmup steps"},
    {"grad_clip", CFG_FLOAT, offsetof(TrainConfig, grad_clip), "1.0", 0, 1e9, NULL, NULL, 0, "global gradient norm limit (0 = off)"},
    {"seed", CFG_INT, offsetof(TrainConfig, seed), "42", 0, 1e18, NULL, NULL, 0, "initialization, shuffling and prefix sampling"},
    {"out_dir", CFG_STRING, offsetof(TrainConfig, out_dir), CFG_UNSET, 0, -1, NULL, NULL, 0, "checkpoints and metrics; unset: <run.out_dir>/<run.name>; sweep members in out_dir/sae-<hash>"},
    {"checkpoint_every", CFG_INT, offsetof(TrainConfig, checkpoint_every), "1000", 0, 1e15, NULL, NULL, 0, "steps between checkpoints (0 = end only)"},
    {"metrics_every", CFG_INT, offsetof(TrainConfig, metrics_every), "10", 1, 1e15, NULL, NULL, 0, "steps between metrics lines"},
    {"resume", CFG_BOOL, offsetof(TrainConfig, resume), "false", 0, -1, NULL, NULL, 0, "continue from out_dir's training state"},
    {"precision", CFG_STRING, offsetof(TrainConfig, precision), "fp32", 0, -1, PRECISION_NAMES, NULL, 0, "SAE GEMM precision on cuda (tf32: TF32 tensor cores; bf16 is refused); the CPU trains in fp32"},
    {"eval", CFG_SECTION, offsetof(TrainConfig, eval), "{}", 0, -1, NULL, &eval_schema, 0, "held-out evaluation after training"},
    {"sae", CFG_SECTION, offsetof(TrainConfig, sae), "{}", 0, -1, NULL, &sae_schema, 0, "the SAE"},
};
/* Cross-key checks that hold for any command's config (train.data and the run length
 * are required only by `saev train`: train_check_required in train.c). */
static const char *validate_train(void *obj, const CfgNode *node, char *buf, size_t len) {
    (void)node;
    const TrainConfig *c = obj;
    if (c->steps != CFG_UNSET_INT && c->n_tokens != CFG_UNSET_INT) return "give train.steps or train.n_tokens, not both";
    const TrainSaeConfig *s = &c->sae;
    if (s->d_sae != CFG_UNSET_INT && strcmp(s->activation, "relu") && s->k > s->d_sae) {
        snprintf(buf, len, "sae.k = %lld exceeds sae.d_sae = %lld", (long long)s->k, (long long)s->d_sae);
        return buf;
    }
    const CfgList *p = &s->matryoshka.prefixes;
    if (s->matryoshka.enabled) {
        if (p->n > SAE_MAX_PREFIXES) { snprintf(buf, len, "sae.matryoshka.prefixes: at most %d prefixes", SAE_MAX_PREFIXES); return buf; }
        for (int i = 1; i < p->n; i++)
            if (p->i[i] <= p->i[i - 1]) { snprintf(buf, len, "sae.matryoshka.prefixes must increase (%lld then %lld)", (long long)p->i[i - 1], (long long)p->i[i]); return buf; }
        if (p->n > 0 && s->d_sae != CFG_UNSET_INT && p->i[p->n - 1] != s->d_sae) {
            snprintf(buf, len, "sae.matryoshka.prefixes must end at sae.d_sae = %lld (ends at %lld)", (long long)s->d_sae, (long long)p->i[p->n - 1]);
            return buf;
        }
    }
    return NULL;
}

const CfgSchema train_config_schema = {"train", sizeof(TrainConfig), train_fields, (int)(sizeof train_fields / sizeof train_fields[0]), validate_train};

int64_t train_config_steps(const TrainConfig *c) {
    if (c->steps != CFG_UNSET_INT) return c->steps;
    if (c->n_tokens != CFG_UNSET_INT) return (c->n_tokens + c->batch_size - 1) / c->batch_size;
    return -1;
}

const char *train_config_sae(const TrainConfig *c, int d_model, SaeConfig *out) {
    const TrainSaeConfig *s = &c->sae;
    int64_t S = s->d_sae != CFG_UNSET_INT ? s->d_sae : s->expansion * d_model;
    if (S < 1 || S > (1 << 30)) return "train.sae.d_sae: out of range";
    sae_config_default(out, d_model, (int)S);
    if (sae_activation_parse(s->activation, &out->activation)) return "train.sae.activation: expected one of " SAE_ACTIVATION_NAMES;
    out->k = (int)s->k;
    out->l1_coeff = (float)s->l1_coeff;
    out->momentum = (float)s->momentum;
    out->k_aux = s->aux.enabled && out->activation != SAE_RELU ? (int)s->aux.k_aux : 0;
    out->aux_alpha = (float)s->aux.alpha;
    out->dead_threshold_tokens = s->dead_threshold_tokens;
    out->normalize_w_dec = s->normalize_w_dec;
    out->remove_parallel_grads = s->remove_parallel_grads;
    out->center_input = s->center_input;
    out->n_prefixes = 1;
    out->prefixes[0] = (int)S;
    if (s->matryoshka.enabled) {
        const CfgList *p = &s->matryoshka.prefixes;
        if (p->n > 0) {
            if (p->n > SAE_MAX_PREFIXES) return "train.sae.matryoshka.prefixes: too many prefixes";
            out->n_prefixes = p->n;
            for (int i = 0; i < p->n; i++) out->prefixes[i] = (int)p->i[i];
        } else {
            out->sample_prefixes = 1;
            out->n_prefixes = (int)s->matryoshka.n_prefixes;
        }
    }
    static char msg[300];
    const char *bad = sae_config_check(out);
    if (bad) { snprintf(msg, sizeof msg, "train.sae: %s", bad); return msg; }
    return NULL;
}
