/*
 * sae_fixture.h: runs one tests/fixtures/sae case through the SAE training step and
 * measures the relative error of every reference quantity (test helper, header only).
 * case.json gives the hyperparameters; init.safetensors the starting weights;
 * batches.safetensors the rows in order; expected.safetensors the reference.
 */
#ifndef SAEV_TEST_SAE_FIXTURE_H
#define SAEV_TEST_SAE_FIXTURE_H

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fsutil.h"
#include "safetensors.h"
#include "sae/sae.h"
#include "sae/sae_step.h"

typedef struct {
    double err_loss, err_mse, err_l0, err_l1, err_aux, err_grad_norm, err_lr; // relative, over the steps
    double err_w_enc, err_b_enc, err_w_dec, err_b_dec, err_threshold;         // relative, final
} SaeFixtureResult;

static double fx_rel(const double *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) { double d = a[i] - b[i]; num += d * d; den += (double)b[i] * b[i]; }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
static double fx_rel_f(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) { double d = (double)a[i] - b[i]; num += d * d; den += (double)b[i] * b[i]; }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Fills an SaeConfig + schedule from case.json (the keys the fixtures use). */
typedef struct {
    SaeConfig sae;
    SaeLrSchedule schedule;
    double lr, grad_clip;
    int64_t warmup, n_steps, batch_size;
} FxCase;

static void fx_case_load(const char *dir, FxCase *fc) {
    char path[1200];
    snprintf(path, sizeof path, "%s/case.json", dir);
    char *text = read_file_or_die(path, NULL);
    cJSON *j = cJSON_Parse(text);
    if (!j) saev_fail("%s: invalid JSON", path);
    int d = cJSON_GetObjectItem(j, "d_model")->valueint, S = cJSON_GetObjectItem(j, "d_sae")->valueint;
    sae_config_default(&fc->sae, d, S);
    cJSON *a = cJSON_GetObjectItem(j, "activation");
    const char *kind = cJSON_GetObjectItem(a, "kind")->valuestring;
    fc->sae.activation = !strcmp(kind, "relu") ? SAE_RELU : !strcmp(kind, "top-k") ? SAE_TOPK : SAE_BATCH_TOPK;
    cJSON *v;
    if ((v = cJSON_GetObjectItem(a, "l1_coeff"))) fc->sae.l1_coeff = (float)v->valuedouble;
    if ((v = cJSON_GetObjectItem(a, "k"))) fc->sae.k = v->valueint;
    if ((v = cJSON_GetObjectItem(a, "momentum"))) fc->sae.momentum = (float)v->valuedouble;
    fc->sae.k_aux = (v = cJSON_GetObjectItem(a, "k_aux")) ? v->valueint : 0;
    if ((v = cJSON_GetObjectItem(a, "aux_alpha"))) fc->sae.aux_alpha = (float)v->valuedouble;
    fc->sae.dead_threshold_tokens = (int64_t)cJSON_GetObjectItem(j, "dead_threshold_tokens")->valuedouble;
    cJSON *pre = cJSON_GetObjectItem(j, "matryoshka_prefixes");
    fc->sae.n_prefixes = cJSON_GetArraySize(pre);
    for (int i = 0; i < fc->sae.n_prefixes; i++) fc->sae.prefixes[i] = cJSON_GetArrayItem(pre, i)->valueint;
    if (sae_parse_lr_schedule(cJSON_GetObjectItem(j, "lr_schedule")->valuestring, &fc->schedule)) saev_fail("%s: lr_schedule", path);
    fc->lr = cJSON_GetObjectItem(j, "lr")->valuedouble;
    fc->grad_clip = cJSON_GetObjectItem(j, "grad_clip")->valuedouble;
    fc->warmup = (int64_t)cJSON_GetObjectItem(j, "lr_warmup")->valuedouble;
    fc->n_steps = (int64_t)cJSON_GetObjectItem(j, "n_steps")->valuedouble;
    fc->batch_size = (int64_t)cJSON_GetObjectItem(j, "batch_size")->valuedouble;
    cJSON_Delete(j);
    free(text);
}

/* Compares per-step metrics (a [n_steps] row each) and final weights against expected. */
static void fx_compare(const char *dir, int n_steps, const double *loss, const double *mse, const double *l0, const double *l1,
                       const double *aux, const double *gnorm, const double *lr, const float *w_enc, const float *b_enc,
                       const float *w_dec, const float *b_dec, float threshold, SaeFixtureResult *r) {
    char path[1200];
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    SafeTensors ex;
    st_open_or_die(&ex, path);
    float *e;
#define FX_STEP(name, arr, field)                        \
    e = st_load_f32(&ex, name, 1, NULL);                 \
    r->field = fx_rel(arr, e, n_steps);                  \
    free(e);
    FX_STEP("step_loss", loss, err_loss);
    FX_STEP("step_mse", mse, err_mse);
    FX_STEP("step_l0", l0, err_l0);
    FX_STEP("step_l1", l1, err_l1);
    FX_STEP("step_aux", aux, err_aux);
    FX_STEP("step_grad_norm", gnorm, err_grad_norm);
    FX_STEP("step_lr", lr, err_lr);
#undef FX_STEP
#define FX_W(name, arr, field)                                         \
    {                                                                  \
        const StTensor *t = st_require(&ex, name);                     \
        e = st_load_f32(&ex, name, t->ndim, NULL);                     \
        r->field = fx_rel_f(arr, e, (size_t)t->numel);                 \
        free(e);                                                       \
    }
    FX_W("W_enc", w_enc, err_w_enc);
    FX_W("b_enc", b_enc, err_b_enc);
    FX_W("W_dec", w_dec, err_w_dec);
    FX_W("b_dec", b_dec, err_b_dec);
#undef FX_W
    r->err_threshold = 0;
    if (st_find(&ex, "threshold")) {
        e = st_load_f32(&ex, "threshold", 1, NULL);
        r->err_threshold = fabs(threshold - e[0]) / fabs(e[0]);
        free(e);
    }
    st_close(&ex);
}

/* Steps the case directly through sae_train_step (one rank). */
static void sae_fixture_run(const char *dir, SaeFixtureResult *r) {
    FxCase fc;
    fx_case_load(dir, &fc);
    int d = fc.sae.d_model, S = fc.sae.d_sae, B = (int)fc.batch_size, T = (int)fc.n_steps;
    Sae sae;
    sae_create(&sae, &fc.sae, B);
    char path[1200];
    snprintf(path, sizeof path, "%s/init.safetensors", dir);
    SafeTensors in;
    st_open_or_die(&in, path);
    int64_t sh_enc[2] = {d, S}, sh_dec[2] = {S, d}, sh_s[1] = {S}, sh_d[1] = {d};
    float *t;
    t = st_load_f32(&in, "W_enc", 2, sh_enc); memcpy(sae.p.w_enc, t, sizeof(float) * d * S); free(t);
    t = st_load_f32(&in, "b_enc", 1, sh_s); memcpy(sae.p.b_enc, t, sizeof(float) * S); free(t);
    t = st_load_f32(&in, "W_dec", 2, sh_dec); memcpy(sae.p.w_dec, t, sizeof(float) * S * d); free(t);
    t = st_load_f32(&in, "b_dec", 1, sh_d); memcpy(sae.p.b_dec, t, sizeof(float) * d); free(t);
    st_close(&in);
    snprintf(path, sizeof path, "%s/batches.safetensors", dir);
    SafeTensors bt;
    st_open_or_die(&bt, path);
    float *x = st_load_f32(&bt, "activations", 2, NULL);
    st_close(&bt);
    double loss[64], mse[64], l0[64], l1[64], aux[64], gn[64], lr[64];
    uint64_t rng = 1;
    for (int s = 0; s < T; s++) {
        SaeStepMetrics m;
        float step_lr = (float)sae_lr_at(fc.schedule, fc.lr, fc.warmup, fc.n_steps, s);
        sae_train_step(&sae, x + (size_t)s * B * d, B, B, step_lr, fc.grad_clip, &rng, &m);
        loss[s] = m.loss; mse[s] = m.mse; l0[s] = m.l0; l1[s] = m.l1; aux[s] = m.aux; gn[s] = m.grad_norm; lr[s] = step_lr;
    }
    fx_compare(dir, T, loss, mse, l0, l1, aux, gn, lr, sae.p.w_enc, sae.p.b_enc, sae.p.w_dec, sae.p.b_dec, sae.threshold, r);
    free(x);
    sae_destroy(&sae);
}

#endif
