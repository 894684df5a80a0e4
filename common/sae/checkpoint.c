/*
 * checkpoint.c: the checkpoint and training-state files of checkpoint.h.
 */
#include "checkpoint.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "safetensors.h"


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

const char *sae_config_from_json(const char *json, SaeConfig *c, float *data_scale) {
    cJSON *j = cJSON_Parse(json);
    if (!j) return "SAE config metadata is not valid JSON";
    cJSON *v;
#define NUM(key) ((v = cJSON_GetObjectItem(j, key)) && cJSON_IsNumber(v))
    if (!NUM("d_model")) { cJSON_Delete(j); return "SAE config metadata lacks d_model"; }
    int d = v->valueint;
    if (!NUM("d_sae")) { cJSON_Delete(j); return "SAE config metadata lacks d_sae"; }
    sae_config_default(c, d, v->valueint);
    const char *a = cJSON_GetStringValue(cJSON_GetObjectItem(j, "activation"));
    if (!a) { cJSON_Delete(j); return "SAE config metadata lacks activation"; }
    if (sae_activation_parse(a, &c->activation)) {
        /* Thread-local: the message outlives this call and names what the file holds. */
        static _Thread_local char msg[256];
        snprintf(msg, sizeof msg, "unknown SAE activation \"%.100s\" in the saev_sae_config metadata (expected one of " SAE_ACTIVATION_NAMES ")", a);
        cJSON_Delete(j);
        return msg;
    }
    if (NUM("k")) c->k = v->valueint;
    if (NUM("l1_coeff")) c->l1_coeff = (float)v->valuedouble;
    if (NUM("momentum")) c->momentum = (float)v->valuedouble;
    if (NUM("k_aux")) c->k_aux = v->valueint;
    if (NUM("aux_alpha")) c->aux_alpha = (float)v->valuedouble;
    if (NUM("dead_threshold_tokens")) c->dead_threshold_tokens = (int64_t)v->valuedouble;
    c->sample_prefixes = cJSON_IsTrue(cJSON_GetObjectItem(j, "sample_prefixes"));
    cJSON *p = cJSON_GetObjectItem(j, "matryoshka_prefixes");
    if (p && cJSON_GetArraySize(p) > 0 && cJSON_GetArraySize(p) <= SAE_MAX_PREFIXES) {
        c->n_prefixes = cJSON_GetArraySize(p);
        for (int i = 0; i < c->n_prefixes; i++) c->prefixes[i] = cJSON_GetArrayItem(p, i)->valueint;
    }
    if (c->sample_prefixes && NUM("n_prefixes")) c->n_prefixes = v->valueint;
    c->normalize_w_dec = cJSON_IsTrue(cJSON_GetObjectItem(j, "normalize_w_dec"));
    c->remove_parallel_grads = cJSON_IsTrue(cJSON_GetObjectItem(j, "remove_parallel_grads"));
    c->center_input = cJSON_IsTrue(cJSON_GetObjectItem(j, "center_input"));
    *data_scale = NUM("data_scale") ? (float)v->valuedouble : 1.0f;
#undef NUM
    cJSON_Delete(j);
    return sae_config_check(c);
}

void sae_checkpoint_write(const Sae *sae, const char *path, int64_t step) {
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
    st_writer_write_or_die(&w, path);
    st_writer_free(&w);
    free(cfg);
}

void sae_load_weights(Sae *sae, const char *path) {
    int64_t d = sae->cfg.d_model, S = sae->cfg.d_sae;
    int64_t sh_enc[2] = {d, S}, sh_s[1] = {S}, sh_dec[2] = {S, d}, sh_d[1] = {d};
    SafeTensors st;
    st_open_or_die(&st, path);
    float *t;
    t = st_load_f32(&st, "W_enc", 2, sh_enc); memcpy(sae->p.w_enc, t, sizeof(float) * d * S); free(t);
    t = st_load_f32(&st, "b_enc", 1, sh_s); memcpy(sae->p.b_enc, t, sizeof(float) * S); free(t);
    t = st_load_f32(&st, "W_dec", 2, sh_dec); memcpy(sae->p.w_dec, t, sizeof(float) * S * d); free(t);
    t = st_load_f32(&st, "b_dec", 1, sh_d); memcpy(sae->p.b_dec, t, sizeof(float) * d); free(t);
    if (st_find(&st, "threshold")) {
        t = st_load_f32(&st, "threshold", 1, NULL);
        sae->threshold = t[0];
        free(t);
    }
    st_close(&st);
}

int sae_checkpoint_config(const char *path, SaeConfig *c, float *data_scale, char *err, size_t errlen) {
    SafeTensors st;
    if (st_open(&st, path, err, errlen)) return -1;
    const char *meta = st_meta(&st, "saev_sae_config");
    const char *bad = meta ? sae_config_from_json(meta, c, data_scale) : "not an SAE checkpoint (no saev_sae_config metadata)";
    if (bad) saev_errf(err, errlen, "%s: %s", path, bad);
    st_close(&st);
    return bad ? -1 : 0;
}

void sae_checkpoint_load(Sae *sae, const char *path, int max_batch) {
    SaeConfig c;
    float scale;
    char err[1024];
    if (sae_checkpoint_config(path, &c, &scale, err, sizeof err)) saev_usage_fail("%s", err);
    sae_create(sae, &c, max_batch);
    sae->data_scale = scale;
    sae_load_weights(sae, path);
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
