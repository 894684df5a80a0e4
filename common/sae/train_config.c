/*
 * train_config.c: the `train:` schema and a flat `key=value` binder over it.
 *
 * The binder walks the same CfgSchema tables the YAML layer (config.c) binds, so both
 * paths have one definition of every key, default, range and choice. Values are YAML
 * scalars or flow lists ("[8, 32, 64]"); a nullable section also takes `none`.
 */
#include "train_config.h"

#include <ctype.h>
#include <errno.h>
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
    {"activation", CFG_STRING, offsetof(TrainSaeConfig, activation), "top-k", 0, -1, "relu|top-k|batch-top-k", NULL, 0, "activation"},
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
    {"data", CFG_STRING, offsetof(TrainConfig, data), NULL, 0, -1, NULL, NULL, 0, "activation store, or safetensors with `activations` [N,d]"},
    {"layer", CFG_INT, offsetof(TrainConfig, layer), "-2", -1e6, 1e6, NULL, NULL, 0, "store layer (negative counts from the end)"},
    {"shuffle", CFG_BOOL, offsetof(TrainConfig, shuffle), "true", 0, -1, NULL, NULL, 0, "false: rows in file order"},
    {"shuffle_buffer", CFG_INT, offsetof(TrainConfig, shuffle_buffer), "1000000", 1, 1e12, NULL, NULL, 0, "rows held by the store reader's shuffle buffer"},
    {"batch_size", CFG_INT, offsetof(TrainConfig, batch_size), "16384", 1, 1e9, NULL, NULL, 0, "global batch (rows over all ranks)"},
    {"n_tokens", CFG_INT, offsetof(TrainConfig, n_tokens), CFG_UNSET, 1, 1e18, NULL, NULL, 0, "training rows (or steps)"},
    {"steps", CFG_INT, offsetof(TrainConfig, steps), CFG_UNSET, 1, 1e15, NULL, NULL, 0, "optimizer steps (or n_tokens)"},
    {"lr", CFG_FLOAT, offsetof(TrainConfig, lr), "4.0e-4", 0, 1e3, NULL, NULL, 0, "peak learning rate"},
    {"lr_schedule", CFG_STRING, offsetof(TrainConfig, lr_schedule), "warmup-cosine", 0, -1, "constant|warmup-constant|warmup-cosine", NULL, 0, "schedule"},
    {"lr_warmup", CFG_INT, offsetof(TrainConfig, lr_warmup), "500", 0, 1e15, NULL, NULL, 0, "warmup steps"},
    {"grad_clip", CFG_FLOAT, offsetof(TrainConfig, grad_clip), "1.0", 0, 1e9, NULL, NULL, 0, "global gradient norm limit (0 = off)"},
    {"seed", CFG_INT, offsetof(TrainConfig, seed), "42", 0, 1e18, NULL, NULL, 0, "initialization, shuffling and prefix sampling"},
    {"out_dir", CFG_STRING, offsetof(TrainConfig, out_dir), NULL, 0, -1, NULL, NULL, 0, "checkpoints and metrics (sweep member i in out_dir/i)"},
    {"checkpoint_every", CFG_INT, offsetof(TrainConfig, checkpoint_every), "1000", 0, 1e15, NULL, NULL, 0, "steps between checkpoints (0 = end only)"},
    {"metrics_every", CFG_INT, offsetof(TrainConfig, metrics_every), "10", 1, 1e15, NULL, NULL, 0, "steps between metrics lines"},
    {"resume", CFG_BOOL, offsetof(TrainConfig, resume), "false", 0, -1, NULL, NULL, 0, "continue from out_dir's training state"},
    {"eval", CFG_SECTION, offsetof(TrainConfig, eval), "{}", 0, -1, NULL, &eval_schema, 0, "held-out evaluation after training"},
    {"sae", CFG_SECTION, offsetof(TrainConfig, sae), "{}", 0, -1, NULL, &sae_schema, 0, "the SAE"},
};
const CfgSchema train_config_schema = {"train", sizeof(TrainConfig), train_fields, (int)(sizeof train_fields / sizeof train_fields[0]), NULL};

/* ---- flat binder ---------------------------------------------------------------------- */

static char errbuf[512];

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
    return s;
}

static const char *set_scalar(const CfgField *f, void *obj, const char *path, const char *value);

static const char *set_section_none_or_map(const CfgField *f, void *obj, const char *path, const char *value) {
    char *v = trim(strdupCheck(value));
    void *sec = (char *)obj + f->offset;
    const char *err = NULL;
    if (!strcmp(v, "none") || !strcmp(v, "null")) {
        if (!f->nullable) err = "this section cannot be none";
        else { memset(sec, 0, f->section->size); }
    } else if (!strcmp(v, "{}")) {
        /* defaults of the section */
        memset(sec, 0, f->section->size);
        for (int i = 0; i < f->section->n_fields && !err; i++) {
            const CfgField *g = &f->section->fields[i];
            if (g->def == NULL || g->def == CFG_UNSET) {
                if (g->type == CFG_INT) *(int64_t *)((char *)sec + g->offset) = CFG_UNSET_INT;
                else if (g->type == CFG_FLOAT) *(double *)((char *)sec + g->offset) = NAN;
                continue;
            }
            err = g->type == CFG_SECTION ? set_section_none_or_map(g, sec, path, g->def) : set_scalar(g, sec, path, g->def);
        }
        if (f->nullable) *(int *)sec = 1;
    } else {
        err = "a section takes {} or none here; set its keys one by one (section.key=value)";
    }
    free(v);
    return err;
}

static const char *set_scalar(const CfgField *f, void *obj, const char *path, const char *value) {
    void *dst = (char *)obj + f->offset;
    char *v = trim(strdupCheck(value));
    const char *err = NULL;
    char *end;
    switch (f->type) {
    case CFG_INT: {
        errno = 0;
        double x = strtod(v, &end);
        if (*v == 0 || *end || errno || x != floor(x)) { err = "expected an integer"; break; }
        if (f->min <= f->max && (x < f->min || x > f->max)) { snprintf(errbuf, sizeof errbuf, "%s: %s is outside [%g, %g]", path, v, f->min, f->max); free(v); return errbuf; }
        *(int64_t *)dst = (int64_t)x;
        break;
    }
    case CFG_FLOAT: {
        errno = 0;
        double x = strtod(v, &end);
        if (*v == 0 || *end || errno || !isfinite(x)) { err = "expected a number"; break; }
        if (f->min <= f->max && (x < f->min || x > f->max)) { snprintf(errbuf, sizeof errbuf, "%s: %s is outside [%g, %g]", path, v, f->min, f->max); free(v); return errbuf; }
        *(double *)dst = x;
        break;
    }
    case CFG_BOOL:
        if (!strcmp(v, "true")) *(int *)dst = 1;
        else if (!strcmp(v, "false")) *(int *)dst = 0;
        else err = "expected true or false";
        break;
    case CFG_STRING:
        if (f->choices) {
            int ok = 0;
            const char *p = f->choices;
            size_t n = strlen(v);
            while (*p) {
                const char *q = strchr(p, '|');
                size_t len = q ? (size_t)(q - p) : strlen(p);
                ok |= len == n && !strncmp(p, v, n);
                p += len + (q != NULL);
            }
            if (!ok) { snprintf(errbuf, sizeof errbuf, "%s: \"%s\" is not one of %s", path, v, f->choices); free(v); return errbuf; }
        }
        free(*(char **)dst);
        *(char **)dst = strdupCheck(v);
        break;
    case CFG_INT_LIST: {
        CfgList *l = dst;
        free(l->i);
        memset(l, 0, sizeof *l);
        if (v[0] != '[' || v[strlen(v) - 1] != ']') { err = "expected a list [a, b, ...]"; break; }
        v[strlen(v) - 1] = 0;
        char *save = NULL;
        for (char *tok = strtok_r(v + 1, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            char *t = trim(tok);
            if (!*t) continue;
            double x = strtod(t, &end);
            if (*end || x != floor(x)) { err = "expected a list of integers"; break; }
            if (f->min <= f->max && (x < f->min || x > f->max)) { err = "list element out of range"; break; }
            l->i = reallocCheck(l->i, (l->n + 1) * sizeof(int64_t));
            l->i[l->n++] = (int64_t)x;
        }
        break;
    }
    case CFG_SECTION:
        free(v);
        return set_section_none_or_map(f, obj, path, value);
    default:
        err = "unsupported key type";
    }
    free(v);
    if (err) { snprintf(errbuf, sizeof errbuf, "%s: %s (got \"%s\")", path, err, value); return errbuf; }
    return NULL;
}

static const char *set_path(const CfgSchema *schema, void *obj, const char *key, const char *full, const char *value) {
    const char *dot = strchr(key, '.');
    size_t len = dot ? (size_t)(dot - key) : strlen(key);
    for (int i = 0; i < schema->n_fields; i++) {
        const CfgField *f = &schema->fields[i];
        if (strlen(f->key) != len || strncmp(f->key, key, len)) continue;
        if (dot) {
            if (f->type != CFG_SECTION) break;
            void *sec = (char *)obj + f->offset;
            if (f->nullable) {
                /* setting a key inside a section that was `none` turns it on with defaults */
                if (!*(int *)sec) {
                    const char *e = set_section_none_or_map(f, obj, full, "{}");
                    if (e) return e;
                }
            }
            return set_path(f->section, sec, dot + 1, full, value);
        }
        return set_scalar(f, obj, full, value);
    }
    snprintf(errbuf, sizeof errbuf, "train.%s: unknown key", full);
    return errbuf;
}

void train_config_defaults(TrainConfig *c) {
    memset(c, 0, sizeof *c);
    CfgField root = {"train", CFG_SECTION, 0, "{}", 0, -1, NULL, &train_config_schema, 0, NULL};
    const char *e = set_section_none_or_map(&root, c, "train", "{}");
    if (e) saev_fail("train config defaults: %s", e);
}

const char *train_config_set(TrainConfig *c, const char *assignment) {
    const char *eq = strchr(assignment, '=');
    if (!eq) { snprintf(errbuf, sizeof errbuf, "\"%s\": expected key=value", assignment); return errbuf; }
    char key[256];
    size_t n = (size_t)(eq - assignment);
    if (n >= sizeof key) return "key too long";
    memcpy(key, assignment, n);
    key[n] = 0;
    const char *k = trim(key);
    if (!strncmp(k, "train.", 6)) k += 6;
    return set_path(&train_config_schema, c, k, k, eq + 1);
}

static void free_section(const CfgSchema *s, void *obj) {
    for (int i = 0; i < s->n_fields; i++) {
        const CfgField *f = &s->fields[i];
        void *p = (char *)obj + f->offset;
        if (f->type == CFG_STRING) { free(*(char **)p); *(char **)p = NULL; }
        else if (f->type == CFG_INT_LIST) { free(((CfgList *)p)->i); memset(p, 0, sizeof(CfgList)); }
        else if (f->type == CFG_SECTION) free_section(f->section, p);
    }
}

void train_config_free(TrainConfig *c) { free_section(&train_config_schema, c); }

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
    out->activation = !strcmp(s->activation, "relu") ? SAE_RELU : !strcmp(s->activation, "top-k") ? SAE_TOPK : SAE_BATCH_TOPK;
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
