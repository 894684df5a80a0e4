/*
 * checkpoint.c: the checkpoint and training-state files of checkpoint.h.
 */
#include "checkpoint.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "safetensors.h"
#include "saev_pt.h"


char *sae_config_to_json(const SaeConfig *c, float data_scale) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "d_model", c->d_model);
    cJSON_AddNumberToObject(j, "d_sae", c->d_sae);
    cJSON_AddStringToObject(j, "activation", sae_activation_name(c->activation));
    cJSON_AddNumberToObject(j, "k", c->k);
    cJSON_AddNumberToObject(j, "l1_coeff", c->l1_coeff);
    cJSON_AddNumberToObject(j, "momentum", c->momentum);
    cJSON_AddNumberToObject(j, "k_aux", c->k_aux);
    cJSON_AddNumberToObject(j, "aux_alpha", c->aux_alpha);
    cJSON *p = cJSON_AddArrayToObject(j, "matryoshka_prefixes");
    for (int i = 0; i < c->n_prefixes; i++) cJSON_AddItemToArray(p, cJSON_CreateNumber(c->prefixes[i]));
    cJSON_AddBoolToObject(j, "sample_prefixes", c->sample_prefixes);
    cJSON_AddNumberToObject(j, "n_prefixes", c->n_prefixes);
    cJSON_AddNumberToObject(j, "dead_threshold_tokens", (double)c->dead_threshold_tokens);
    cJSON_AddBoolToObject(j, "normalize_w_dec", c->normalize_w_dec);
    cJSON_AddBoolToObject(j, "remove_parallel_grads", c->remove_parallel_grads);
    cJSON_AddBoolToObject(j, "center_input", c->center_input);
    cJSON_AddNumberToObject(j, "data_scale", data_scale);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    char *out = strdupCheck(s);
    free(s);
    return out;
}

/* An integral JSON number in [lo, hi] (checkpoints come from anywhere: a huge or
 * fractional value must not wrap into a small allocation or a silent truncation). */
static int json_int(const cJSON *v, double lo, double hi, int64_t *out) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= lo && d <= hi) || floor(d) != d) return -1;
    *out = (int64_t)d;
    return 0;
}

const char *sae_config_from_json(const char *json, SaeConfig *c, float *data_scale) {
    /* Thread-local: the message outlives this call and names what the file holds. */
    static _Thread_local char msg[256];
    cJSON *j = cJSON_Parse(json);
    if (!j) return "SAE config metadata is not valid JSON";
    if (!cJSON_IsObject(j)) { cJSON_Delete(j); return "SAE config metadata is not a JSON object"; }
    cJSON *v;
    int64_t iv = 0;
    const char *bad = NULL;
#define NUM(key) ((v = cJSON_GetObjectItemCaseSensitive(j, key)) && cJSON_IsNumber(v))
/* An optional integer key: absent keeps the default; present must be integral in range. */
#define INT_KEY(key, lo, hi, dst)                                                          \
    if (!bad && (v = cJSON_GetObjectItemCaseSensitive(j, key))) {                          \
        if (json_int(v, lo, hi, &iv)) {                                                    \
            snprintf(msg, sizeof msg, "SAE config metadata: %s is not an integer in [%.0f, %.0f]", key, (double)(lo), (double)(hi)); \
            bad = msg;                                                                     \
        } else (dst) = iv;                                                                 \
    }
    int64_t d = 0, S = 0;
    if (json_int(cJSON_GetObjectItemCaseSensitive(j, "d_model"), 1, INT32_MAX, &d)) { cJSON_Delete(j); return "SAE config metadata lacks d_model (a positive integer)"; }
    if (json_int(cJSON_GetObjectItemCaseSensitive(j, "d_sae"), 1, INT32_MAX, &S)) { cJSON_Delete(j); return "SAE config metadata lacks d_sae (a positive integer)"; }
    sae_config_default(c, (int)d, (int)S);
    const char *a = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "activation"));
    if (!a) { cJSON_Delete(j); return "SAE config metadata lacks activation"; }
    if (sae_activation_parse(a, &c->activation)) {
        snprintf(msg, sizeof msg, "unknown SAE activation \"%.100s\" in the saev_sae_config metadata (expected one of " SAE_ACTIVATION_NAMES ")", a);
        cJSON_Delete(j);
        return msg;
    }
    int64_t k = c->k, k_aux = c->k_aux, dead = c->dead_threshold_tokens, n_pref = c->n_prefixes;
    /* ReLU SAEs have no k (saev-c writes 0 for them); the top-k variants need k >= 1. */
    INT_KEY("k", c->activation == SAE_RELU ? 0 : 1, INT32_MAX, k);
    INT_KEY("k_aux", 0, INT32_MAX, k_aux);
    INT_KEY("dead_threshold_tokens", 0, 9007199254740992.0, dead);
    c->k = (int)k;
    c->k_aux = (int)k_aux;
    c->dead_threshold_tokens = dead;
    if (NUM("l1_coeff")) c->l1_coeff = (float)v->valuedouble;
    if (NUM("momentum")) c->momentum = (float)v->valuedouble;
    if (NUM("aux_alpha")) c->aux_alpha = (float)v->valuedouble;
    c->sample_prefixes = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "sample_prefixes"));
    cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "matryoshka_prefixes");
    /* Only fixed prefixes are a list; a sampling SAE's list is its unused prefixes array
     * (the writer puts [d_sae, 0, ...] there), so it is not read. */
    if (!bad && !c->sample_prefixes && p && cJSON_GetArraySize(p) > 0) {
        if (!cJSON_IsArray(p) || cJSON_GetArraySize(p) > SAE_MAX_PREFIXES) bad = "SAE config metadata: matryoshka_prefixes is not a list of at most 64 integers";
        for (int i = 0; !bad && i < cJSON_GetArraySize(p); i++) {
            if (json_int(cJSON_GetArrayItem(p, i), 1, INT32_MAX, &iv)) bad = "SAE config metadata: matryoshka_prefixes holds a value that is not a positive integer";
            else c->prefixes[i] = (int)iv;
        }
        if (!bad) c->n_prefixes = cJSON_GetArraySize(p);
    }
    if (c->sample_prefixes) {
        INT_KEY("n_prefixes", 1, SAE_MAX_PREFIXES, n_pref);
        c->n_prefixes = (int)n_pref;
    }
    c->normalize_w_dec = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "normalize_w_dec"));
    c->remove_parallel_grads = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "remove_parallel_grads"));
    c->center_input = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "center_input"));
    *data_scale = NUM("data_scale") ? (float)v->valuedouble : 1.0f;
    if (!bad && !(isfinite(*data_scale) && *data_scale > 0)) bad = "SAE config metadata: data_scale is not a positive finite number";
#undef NUM
#undef INT_KEY
    cJSON_Delete(j);
    return bad ? bad : sae_config_check(c);
}

void sae_checkpoint_write(const Sae *sae, const char *path, int64_t step) { sae_checkpoint_write_meta(sae, path, step, NULL, NULL, 0); }

void sae_checkpoint_write_meta(const Sae *sae, const char *path, int64_t step, const char *const *keys, const char *const *values, int n_extra) {
    int64_t d = sae->cfg.d_model, S = sae->cfg.d_sae;
    int64_t sh_enc[2] = {d, S}, sh_s[1] = {S}, sh_dec[2] = {S, d}, sh_d[1] = {d}, one[1] = {1};
    StWriter w;
    st_writer_init(&w);
    st_writer_add(&w, "W_enc", ST_F32, 2, sh_enc, sae->p.w_enc);
    st_writer_add(&w, "b_enc", ST_F32, 1, sh_s, sae->p.b_enc);
    st_writer_add(&w, "W_dec", ST_F32, 2, sh_dec, sae->p.w_dec);
    st_writer_add(&w, "b_dec", ST_F32, 1, sh_d, sae->p.b_dec);
    if (sae->cfg.activation == SAE_BATCH_TOPK) st_writer_add(&w, "threshold", ST_F32, 1, one, &sae->threshold);
    char *cfg = sae_config_to_json(&sae->cfg, sae->data_scale);
    char buf[64];
    snprintf(buf, sizeof buf, "%lld", (long long)step);
    st_writer_meta(&w, "format", "saev-c sae 1");
    st_writer_meta(&w, "saev_sae_config", cfg);
    st_writer_meta(&w, "step", buf);
    for (int i = 0; i < n_extra; i++) st_writer_meta(&w, keys[i], values[i]);
    st_writer_write_or_die(&w, path);
    st_writer_free(&w);
    free(cfg);
}

/* The tensor `name` of shape [n0] or [n0, n1] (n1 < 0: 1-D) in a float dtype, or a
 * message naming it. */
static int want_tensor(const SafeTensors *st, const char *name, int64_t n0, int64_t n1, const StTensor **out, char *err, size_t errlen) {
    const StTensor *t = st_find(st, name);
    int ndim = n1 < 0 ? 1 : 2;
    if (!t) return saev_errf(err, errlen, "%s: no tensor %s (not an SAE checkpoint?)", st->path, name);
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16 && t->dtype != ST_F64)
        return saev_errf(err, errlen, "%s: tensor %s has dtype %s; a float type expected", st->path, name, st_dtype_name(t->dtype));
    if (t->ndim != ndim || t->shape[0] != n0 || (ndim == 2 && t->shape[1] != n1))
        return saev_errf(err, errlen, "%s: tensor %s has %d dimension(s) [%lld%s%lld]; [%lld%s%lld] expected from its SAE config", st->path,
                         name, t->ndim, (long long)(t->ndim ? t->shape[0] : 0), t->ndim > 1 ? ", " : "", (long long)(t->ndim > 1 ? t->shape[1] : 0),
                         (long long)n0, ndim > 1 ? ", " : "", (long long)(ndim > 1 ? n1 : 0));
    *out = t;
    return 0;
}

/* Checks that st holds W_enc, b_enc, W_dec, b_dec (and threshold for batch-top-k) of the
 * shapes c implies; fills them in order into t[5] (t[4] NULL when absent). */
static int check_weights(const SafeTensors *st, const SaeConfig *c, int need_threshold, const StTensor *t[5], char *err, size_t errlen) {
    int64_t d = c->d_model, S = c->d_sae;
    t[4] = NULL;
    if (want_tensor(st, "W_enc", d, S, &t[0], err, errlen) || want_tensor(st, "b_enc", S, -1, &t[1], err, errlen) ||
        want_tensor(st, "W_dec", S, d, &t[2], err, errlen) || want_tensor(st, "b_dec", d, -1, &t[3], err, errlen))
        return -1;
    if (st_find(st, "threshold") || need_threshold)
        if (want_tensor(st, "threshold", 1, -1, &t[4], err, errlen)) return -1;
    return 0;
}

static void copy_weights(Sae *sae, const StTensor *t[5]) {
    st_to_f32(t[0], sae->p.w_enc);
    st_to_f32(t[1], sae->p.b_enc);
    st_to_f32(t[2], sae->p.w_dec);
    st_to_f32(t[3], sae->p.b_dec);
    if (t[4]) st_to_f32(t[4], &sae->threshold);
}

void sae_load_weights(Sae *sae, const char *path) {
    SafeTensors st;
    const StTensor *t[5];
    char err[1024];
    st_open_or_die(&st, path);
    if (check_weights(&st, &sae->cfg, 0, t, err, sizeof err)) saev_usage_fail("%s", err);
    copy_weights(sae, t);
    st_close(&st);
}

int sae_checkpoint_read_config(const char *path, SaeConfig *c, float *data_scale, char *err, size_t errlen) {
    if (saev_pt_detect(path)) {
        SaevPt pt;
        if (saev_pt_read(path, &pt, err, errlen)) return -1;
        *c = pt.cfg;
        *data_scale = 1.0f;
        saev_pt_free(&pt);
        return 0;
    }
    SafeTensors st;
    if (st_open(&st, path, err, errlen)) return -1;
    const char *meta = st_meta(&st, "saev_sae_config");
    const char *bad = meta ? sae_config_from_json(meta, c, data_scale) : "not an SAE checkpoint (no saev_sae_config metadata)";
    st_close(&st);
    return bad ? saev_errf(err, errlen, "%s: %s", path, bad) : 0;
}

int sae_checkpoint_read(Sae *sae, const char *path, int max_batch, char *err, size_t errlen) {
    /* saev's own sae.pt opens wherever a checkpoint does. */
    if (saev_pt_detect(path)) return saev_pt_read_sae(sae, path, max_batch, err, errlen);
    SafeTensors st;
    if (st_open(&st, path, err, errlen)) return -1;
    const char *meta = st_meta(&st, "saev_sae_config");
    SaeConfig c;
    float scale;
    const char *bad = meta ? sae_config_from_json(meta, &c, &scale) : NULL;
    const StTensor *t[5];
    int rc = 0;
    if (!meta) rc = saev_errf(err, errlen, "%s: not an SAE checkpoint (no saev_sae_config metadata)", path);
    else if (bad) rc = saev_errf(err, errlen, "%s: %s", path, bad);
    /* Shapes before any allocation: the tensors' bytes are in the file, so a config that
     * matches them cannot ask for more memory than the file's size. */
    else if (check_weights(&st, &c, c.activation == SAE_BATCH_TOPK, t, err, errlen)) rc = -1;
    if (rc == 0) {
        sae_create(sae, &c, max_batch);
        sae->data_scale = scale;
        copy_weights(sae, t);
    }
    st_close(&st);
    return rc;
}

void sae_checkpoint_load(Sae *sae, const char *path, int max_batch) {
    char err[1024];
    if (sae_checkpoint_read(sae, path, max_batch, err, sizeof err)) saev_usage_fail("%s", err);
}

void sae_state_write(const Sae *sae, const char *path, const SaeTrainCounters *cnt) {
    int64_t n[1] = {(int64_t)sae->n_params}, S[1] = {sae->cfg.d_sae}, one[1] = {1}, four[1] = {4};
    int64_t counters[4] = {cnt->step, sae->adam_t, cnt->position, (int64_t)cnt->prefix_rng};
    StWriter w;
    st_writer_init(&w);
    st_writer_add(&w, "params", ST_F32, 1, n, sae->params);
    st_writer_add(&w, "adam_m", ST_F32, 1, n, sae->adam_m);
    st_writer_add(&w, "adam_v", ST_F32, 1, n, sae->adam_v);
    st_writer_add(&w, "since_fired", ST_I64, 1, S, sae->since_fired);
    st_writer_add(&w, "threshold", ST_F32, 1, one, &sae->threshold);
    st_writer_add(&w, "data_scale", ST_F32, 1, one, &sae->data_scale);
    st_writer_add(&w, "counters", ST_I64, 1, four, counters);
    char *cfg = sae_config_to_json(&sae->cfg, sae->data_scale);
    st_writer_meta(&w, "format", "saev-c train-state 1");
    st_writer_meta(&w, "saev_sae_config", cfg);
    st_writer_write_or_die(&w, path);
    st_writer_free(&w);
    free(cfg);
}

static const StTensor *need(const SafeTensors *st, const char *name, StDtype dt, int64_t numel) {
    const StTensor *t = st_require(st, name);
    if (t->dtype != dt || t->numel != numel)
        saev_usage_fail("%s: training state tensor %s has dtype %s and %lld elements; %s with %lld expected (a different SAE config?)",
                        st->path, name, st_dtype_name(t->dtype), (long long)t->numel, st_dtype_name(dt), (long long)numel);
    return t;
}

void sae_state_read(Sae *sae, const char *path, SaeTrainCounters *cnt) {
    SafeTensors st;
    st_open_or_die(&st, path);
    int64_t n = (int64_t)sae->n_params, S = sae->cfg.d_sae;
    memcpy(sae->params, need(&st, "params", ST_F32, n)->data, n * sizeof(float));
    memcpy(sae->adam_m, need(&st, "adam_m", ST_F32, n)->data, n * sizeof(float));
    memcpy(sae->adam_v, need(&st, "adam_v", ST_F32, n)->data, n * sizeof(float));
    memcpy(sae->since_fired, need(&st, "since_fired", ST_I64, S)->data, S * sizeof(int64_t));
    memcpy(&sae->threshold, need(&st, "threshold", ST_F32, 1)->data, sizeof(float));
    memcpy(&sae->data_scale, need(&st, "data_scale", ST_F32, 1)->data, sizeof(float));
    int64_t c[4];
    memcpy(c, need(&st, "counters", ST_I64, 4)->data, sizeof c);
    cnt->step = c[0];
    sae->adam_t = c[1];
    cnt->position = c[2];
    cnt->prefix_rng = (uint64_t)c[3];
    st_close(&st);
}
