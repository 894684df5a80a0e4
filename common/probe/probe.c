/*
 * probe.c: `saev probe` (probe.h): the split, the features, the data-parallel fit
 * (logreg.c), the held-out evaluation, semantic probing and the outputs.
 */
#include "probe.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "comm.h"
#include "fsutil.h"
#include "log.h"
#include "logreg.h"
#include "safetensors.h"
#include "sae/checkpoint.h"
#include "sae/data_source.h"
#include "sae/rng.h"

/* ---------------------------------------------------------------- features */

void probe_sae_codes(const Sae *sae, const float *x, int n, float *f, float *xs, float *x_hat) {
    size_t nd = (size_t)n * sae->cfg.d_model;
    for (size_t e = 0; e < nd; e++) xs[e] = x[e] * sae->data_scale;
    sae_encode_decode_eval((Sae *)sae, xs, n, f, x_hat);
}

int probe_features(int is_patch, int pool_mean, const Sae *sae, const float *x, int has_cls, int n_patches, int d, float *out,
                   float *f, float *xs, float *x_hat) {
    const float *patches = x + (size_t)has_cls * d;
    int n_in = sae ? sae->cfg.d_sae : d;
    if (is_patch) {
        if (sae) probe_sae_codes(sae, patches, n_patches, out, xs, x_hat);
        else memcpy(out, patches, (size_t)n_patches * d * sizeof(float));
        return n_patches;
    }
    if (!pool_mean) { /* the CLS token */
        if (sae) probe_sae_codes(sae, x, 1, out, xs, x_hat);
        else memcpy(out, x, (size_t)d * sizeof(float));
        return 1;
    }
    const float *rows = patches;
    if (sae) {
        probe_sae_codes(sae, patches, n_patches, f, xs, x_hat);
        rows = f;
    }
    for (int j = 0; j < n_in; j++) {
        double s = 0;
        for (int p = 0; p < n_patches; p++) s += rows[(size_t)p * n_in + j];
        out[j] = (float)(s / n_patches);
    }
    return 1;
}

/* ---------------------------------------------------------------- semantic F1 */

void semantic_f1(const int64_t *tp, const int64_t *fires, const int64_t *support, int S, int K, float *precision, float *recall,
                 float *f1) {
    for (int s = 0; s < S; s++)
        for (int k = 0; k < K; k++) {
            size_t i = (size_t)s * K + k;
            double t = (double)tp[i];
            double p = fires[s] > 0 ? t / (double)fires[s] : 0, r = support[k] > 0 ? t / (double)support[k] : 0;
            precision[i] = (float)p;
            recall[i] = (float)r;
            f1[i] = tp[i] > 0 ? (float)(2 * p * r / (p + r)) : 0.0f;
        }
}

/* ---------------------------------------------------------------- the probe file */

int probe_load(Probe *p, const char *path, char *err, size_t errlen) {
    memset(p, 0, sizeof *p);
    SafeTensors st;
    char why[1024];
    if (st_open(&st, path, why, sizeof why)) { snprintf(err, errlen, "probe: %s", why); return -1; }
    const StTensor *W = st_find(&st, "W"), *b = st_find(&st, "b");
    const char *meta = st_meta(&st, "saev_probe");
    cJSON *j = meta ? cJSON_Parse(meta) : NULL;
    const cJSON *v;
    const char *bad = NULL;
    if (!W || !b || W->ndim != 2 || b->ndim != 1 || b->shape[0] != W->shape[1]) bad = "W must be [features, classes] and b [classes]";
    else if (!meta) bad = "not a saev probe (no saev_probe metadata)";
    else if (!j) bad = "saev_probe metadata is not JSON";
    else if (!cJSON_IsNumber(cJSON_GetObjectItem(j, "layer"))) bad = "metadata lacks layer";
    else if (!cJSON_IsString(cJSON_GetObjectItem(j, "target"))) bad = "metadata lacks target";
    if (bad) {
        snprintf(err, errlen, "probe: %s: %s", path, bad);
        cJSON_Delete(j);
        st_close(&st);
        return -1;
    }
    p->n_in = (int)W->shape[0];
    p->K = (int)W->shape[1];
    p->block = (int)cJSON_GetObjectItem(j, "layer")->valuedouble;
    p->is_patch = !strcmp(cJSON_GetObjectItem(j, "target")->valuestring, "patch");
    v = cJSON_GetObjectItem(j, "pool");
    p->pool_mean = cJSON_IsString(v) && !strcmp(v->valuestring, "mean");
    v = cJSON_GetObjectItem(j, "features");
    p->use_sae = cJSON_IsString(v) && !strcmp(v->valuestring, "sae");
    v = cJSON_GetObjectItem(j, "sae");
    if (cJSON_IsString(v)) p->sae_path = strdupCheck(v->valuestring);
    v = cJSON_GetObjectItem(j, "store");
    if (cJSON_IsString(v)) p->store = strdupCheck(v->valuestring);
    const cJSON *cl = cJSON_GetObjectItem(j, "classes");
    if (p->use_sae && !p->sae_path) bad = "features sae but no sae in the metadata";
    else if (!cJSON_IsArray(cl) || cJSON_GetArraySize(cl) != p->K) bad = "metadata classes must list one label per column of W";
    if (bad) {
        snprintf(err, errlen, "probe: %s: %s", path, bad);
        cJSON_Delete(j);
        st_close(&st);
        probe_free(p);
        return -1;
    }
    p->classes = mallocCheck((size_t)p->K * sizeof(int64_t));
    for (int k = 0; k < p->K; k++) p->classes[k] = (int64_t)cJSON_GetArrayItem(cl, k)->valuedouble;
    cJSON_Delete(j);
    int64_t np = logreg_n_params(p->n_in, p->K);
    float *tmp = mallocCheck((size_t)np * sizeof(float));
    st_to_f32(W, tmp);
    st_to_f32(b, tmp + (size_t)p->n_in * p->K);
    p->theta = mallocCheck((size_t)np * sizeof(double));
    for (int64_t i = 0; i < np; i++) p->theta[i] = tmp[i];
    free(tmp);
    st_close(&st);
    return 0;
}

void probe_load_or_die(Probe *p, const char *path) {
    char err[2048];
    if (probe_load(p, path, err, sizeof err)) saev_usage_fail("%s", err);
}

void probe_free(Probe *p) {
    free(p->classes);
    free(p->theta);
    free(p->sae_path);
    free(p->store);
    memset(p, 0, sizeof *p);
}

/* ---------------------------------------------------------------- plan */

typedef struct {
    Store *st;
    int layer_idx, block;
    int d, n_tokens, n_patches, has_cls;
    int is_patch, pool_mean;
    int64_t *train, *test;       // [n_train], [n_test] store positions, ascending
    int64_t n_train, n_test;
    int64_t n_unlabelled;        // class targets: written images labelled -1 (left out)
    int64_t *classes;            // [K]
    int K;
} ProbePlan;

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int class_index(const int64_t *classes, int K, int64_t label) {
    int lo = 0, hi = K - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (classes[mid] == label) return mid;
        if (classes[mid] < label) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

static void plan_or_die(const ProbeConfig *c, ProbePlan *pl) {
    memset(pl, 0, sizeof *pl);
    if (!c->data) saev_usage_fail("probe.data: not set (an activation store directory)");
    char err[1024];
    struct stat sb;
    if (stat(c->data, &sb) != 0 || !S_ISDIR(sb.st_mode)) saev_usage_fail("probe.data: %s: not a store directory", c->data);
    pl->st = store_open_read(c->data, err, sizeof err);
    if (!pl->st) saev_usage_fail("probe.data: %s", err);
    Store *st = pl->st;
    const StoreMeta *m = &st->meta;
    if (!st->complete) saev_usage_fail("probe.data: store %s is incomplete; finish `saev activations` first", c->data);
    pl->layer_idx = store_layer_index_or_die(st, c->layer, "probe.layer", &pl->block);
    pl->d = m->d_model;
    pl->n_tokens = m->n_tokens;
    pl->n_patches = m->n_patches;
    pl->has_cls = m->has_cls;
    pl->is_patch = !strcmp(c->target, "patch");
    pl->pool_mean = !strcmp(c->pool, "mean");
    if (pl->is_patch && !m->has_patch_labels)
        saev_usage_fail("probe.target: patch, but store %s has no patch_labels (record a segmentation data set, e.g. data.kind: ade20k)", c->data);
    if (!pl->is_patch && !pl->pool_mean && !m->has_cls)
        saev_usage_fail("probe.pool: cls, but store %s has no CLS token (use pool: mean)", c->data);
    if (!pl->is_patch && pl->n_patches < 1 && pl->pool_mean) saev_usage_fail("probe.pool: mean, but store %s holds no patch tokens", c->data);
    /* images: written, and labelled for class targets */
    int64_t n = 0, *img = mallocCheck((size_t)(m->n_images > 0 ? m->n_images : 1) * sizeof(int64_t));
    for (int64_t i = 0; i < m->n_images; i++) {
        if (st->status[i] != STORE_WRITTEN) continue;
        if (!pl->is_patch && st->label[i] < 0) { pl->n_unlabelled++; continue; }
        img[n++] = i;
    }
    if (n < 2) saev_usage_fail("probe.data: store %s has %" PRId64 " usable image(s)%s; a probe needs a training and a held-out part", c->data, n,
                               pl->is_patch ? "" : " with a label");
    /* split: a seeded shuffle (Fisher-Yates with the project's generator), first part held out */
    uint64_t rng = (uint64_t)c->seed;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(&rng, (uint64_t)(i + 1));
        int64_t t = img[i]; img[i] = img[j]; img[j] = t;
    }
    pl->n_test = (int64_t)llround(c->held_out * (double)n);
    if (c->held_out > 0 && pl->n_test == 0) pl->n_test = 1;
    if (pl->n_test >= n) pl->n_test = n - 1;
    pl->n_train = n - pl->n_test;
    pl->test = mallocCheck((size_t)(pl->n_test > 0 ? pl->n_test : 1) * sizeof(int64_t));
    pl->train = mallocCheck((size_t)pl->n_train * sizeof(int64_t));
    memcpy(pl->test, img, (size_t)pl->n_test * sizeof(int64_t));
    memcpy(pl->train, img + pl->n_test, (size_t)pl->n_train * sizeof(int64_t));
    free(img);
    qsort(pl->test, (size_t)pl->n_test, sizeof(int64_t), cmp_i64);
    qsort(pl->train, (size_t)pl->n_train, sizeof(int64_t), cmp_i64);
    /* classes: the distinct labels of the training rows */
    int64_t *labels;
    int64_t n_lab = 0;
    if (pl->is_patch) {
        uint8_t *pl8 = mallocCheck((size_t)pl->n_patches);
        uint8_t seen[256] = {0};
        for (int64_t i = 0; i < pl->n_train; i++) {
            store_read_patch_labels(st, pl->train[i], 1, pl8);
            for (int p = 0; p < pl->n_patches; p++) seen[pl8[p]] = 1;
        }
        free(pl8);
        labels = mallocCheck(256 * sizeof(int64_t));
        for (int v = 0; v < 256; v++)
            if (seen[v] && v != c->ignore_label) labels[n_lab++] = v;
    } else {
        labels = mallocCheck((size_t)pl->n_train * sizeof(int64_t));
        for (int64_t i = 0; i < pl->n_train; i++) labels[i] = st->label[pl->train[i]];
        qsort(labels, (size_t)pl->n_train, sizeof(int64_t), cmp_i64);
        for (int64_t i = 0; i < pl->n_train; i++)
            if (n_lab == 0 || labels[n_lab - 1] != labels[i]) labels[n_lab++] = labels[i];
    }
    if (n_lab < 2) saev_usage_fail("probe.data: the training images of %s hold %" PRId64 " class(es); a probe needs at least 2", c->data, n_lab);
    pl->classes = labels;
    pl->K = (int)n_lab;
}

static void plan_free(ProbePlan *pl) {
    store_close(pl->st);
    free(pl->train);
    free(pl->test);
    free(pl->classes);
    memset(pl, 0, sizeof *pl);
}

static void load_sae_or_die(Sae *sae, const char *path, int d, int max_rows) {
    struct stat sb;
    if (stat(path, &sb) != 0) saev_usage_fail("probe.sae: %s: not found", path);
    sae_checkpoint_load(sae, path, max_rows);
    if (sae->cfg.d_model != d) saev_usage_fail("probe.sae: %s has d_model %d but the store's rows have width %d", path, sae->cfg.d_model, d);
}

void probe_check_or_die(const ProbeConfig *c) {
    ProbePlan pl;
    plan_or_die(c, &pl);
    if (c->sae) {
        Sae sae;
        load_sae_or_die(&sae, c->sae, pl.d, 1);
        sae_destroy(&sae);
    }
    plan_free(&pl);
}

/* ---------------------------------------------------------------- outputs */

static char **class_names_or_die(const ProbeConfig *c, const int64_t *classes, int K) {
    char **names = callocCheck((size_t)K, sizeof(char *));
    if (c->class_names) {
        FILE *f = fopen(c->class_names, "r");
        if (!f) saev_usage_fail("probe.class_names: %s: cannot read", c->class_names);
        char line[512];
        for (int64_t lineno = 0; fgets(line, sizeof line, f); lineno++) {
            line[strcspn(line, "\r\n")] = 0;
            char *e;
            long long id = strtoll(line, &e, 10);
            const char *name = line;
            if (e != line && *e == ' ') name = e + 1;
            else id = lineno;
            int k = class_index(classes, K, id);
            if (k >= 0 && !names[k]) names[k] = strdupCheck(name);
        }
        fclose(f);
    }
    for (int k = 0; k < K; k++)
        if (!names[k]) {
            char buf[32];
            snprintf(buf, sizeof buf, "%" PRId64, classes[k]);
            names[k] = strdupCheck(buf);
        }
    return names;
}

static void svg_text(FILE *o, const char *s) {
    for (; *s; s++) {
        if (*s == '&') fputs("&amp;", o);
        else if (*s == '<') fputs("&lt;", o);
        else if (*s == '>') fputs("&gt;", o);
        else if (*s == '"') fputs("&quot;", o);
        else if ((unsigned char)*s >= 0x20) fputc(*s, o);
    }
}

char *probe_confusion_svg(const int64_t *conf, int K, char *const *names, const char *title) {
    char *buf = NULL;
    size_t len = 0;
    FILE *o = open_memstream(&buf, &len);
    libcCheckPtr(o, "open_memstream");
    double cell = K <= 12 ? 44 : K <= 40 ? 20 : 8, left = 150, top = 90;
    double W = left + cell * K + 40, H = top + cell * K + 125;
    if (W < 520) W = 520;
    fprintf(o, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fprintf(o, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\">\n", W, H, W, H);
    fprintf(o, "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"white\"/>\n", W, H);
    fprintf(o, "<text x=\"%.0f\" y=\"24\" text-anchor=\"middle\" font-size=\"14\">", W / 2);
    svg_text(o, title);
    fprintf(o, "</text>\n");
    fprintf(o, "<text x=\"%.0f\" y=\"44\" text-anchor=\"middle\" font-size=\"12\">held-out confusion matrix: rows true class, columns predicted; shade = fraction of the row</text>\n", W / 2);
    for (int r = 0; r < K; r++) {
        int64_t row = 0;
        for (int k = 0; k < K; k++) row += conf[(size_t)r * K + k];
        for (int k = 0; k < K; k++) {
            int64_t v = conf[(size_t)r * K + k];
            double frac = row > 0 ? (double)v / (double)row : 0;
            int shade = (int)lround(255 * (1 - frac));
            fprintf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"rgb(%d,%d,255)\" stroke=\"#ccc\" stroke-width=\"0.5\"/>\n",
                    left + k * cell, top + r * cell, cell, cell, shade, shade);
            if (cell >= 20 && v > 0)
                fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"%d\" fill=\"%s\">%" PRId64 "</text>\n",
                        left + (k + 0.5) * cell, top + (r + 0.5) * cell + 4, cell >= 40 ? 11 : 8, frac > 0.5 ? "white" : "black", v);
        }
    }
    int fs = cell >= 20 ? 11 : 7;
    for (int k = 0; k < K; k++) {
        fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"%d\">", left - 6, top + (k + 0.5) * cell + 4, fs);
        svg_text(o, names[k]);
        fprintf(o, "</text>\n");
        double x = left + (k + 0.5) * cell, y = top + K * cell + 8;
        fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"%d\" transform=\"rotate(-60 %.1f %.1f)\">", x, y, fs, x, y);
        svg_text(o, names[k]);
        fprintf(o, "</text>\n");
    }
    fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">predicted</text>\n", left + K * cell / 2, top + K * cell + 110);
    fprintf(o, "<text x=\"18\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\" transform=\"rotate(-90 18 %.1f)\">true</text>\n",
            top + K * cell / 2, top + K * cell / 2);
    fprintf(o, "</svg>\n");
    libcCheck(fclose(o));
    return buf;
}

/* ---------------------------------------------------------------- the stage */

/* Rows of a list of images for this probe: features [rows, n_in] (float), class indices
 * (-1: a label not among the classes), and for semantic probing the SAE codes of the
 * patches with each image's patch labels. Appends to growing arrays. */
typedef struct {
    float *x;          // [n, n_in]
    int *y;            // [n]
    int64_t n, cap;
} Rows;

static void rows_reserve(Rows *r, int64_t more, int n_in) {
    if (r->n + more <= r->cap) return;
    r->cap = (r->n + more) * 2;
    r->x = reallocCheck(r->x, (size_t)r->cap * n_in * sizeof(float));
    r->y = reallocCheck(r->y, (size_t)r->cap * sizeof(int));
}

typedef struct {
    const ProbeConfig *c;
    ProbePlan *pl;
    Sae *sae;          // NULL without probe.sae
    int feat_sae;      // features are SAE codes
    int n_in;
    /* scratch */
    float *tokens, *feat, *f, *xs, *x_hat;
    uint8_t *plabels;
    /* semantic counts (when sae): tp [S, K], fires [S], support [K] */
    int64_t *counts;
} Ctx;

/* One image's rows into r; with `semantic`, adds its latent counts. */
static void image_rows(Ctx *cx, int64_t img, Rows *r, int semantic) {
    ProbePlan *pl = cx->pl;
    int d = pl->d, np = pl->n_patches, K = pl->K;
    store_read_layer(pl->st, pl->layer_idx, img, 1, 0, pl->n_tokens, cx->tokens);
    for (size_t e = 0; e < (size_t)pl->n_tokens * d; e++)
        if (!isfinite(cx->tokens[e])) saev_fail("%s: image %" PRId64 " holds NaN or Inf at layer %d", cx->c->data, img, pl->block);
    int n_rows = probe_features(pl->is_patch, pl->pool_mean, cx->feat_sae ? cx->sae : NULL, cx->tokens, pl->has_cls, np, d, cx->feat,
                                cx->f, cx->xs, cx->x_hat);
    if (pl->is_patch) store_read_patch_labels(pl->st, img, 1, cx->plabels);
    rows_reserve(r, n_rows, cx->n_in);
    for (int i = 0; i < n_rows; i++) {
        int64_t label = pl->is_patch ? (int64_t)cx->plabels[i] : pl->st->label[img];
        if (pl->is_patch && label == cx->c->ignore_label) continue;
        memcpy(r->x + (size_t)r->n * cx->n_in, cx->feat + (size_t)i * cx->n_in, (size_t)cx->n_in * sizeof(float));
        r->y[r->n++] = class_index(pl->classes, K, label);
    }
    if (!semantic || !cx->sae) return;
    /* semantic probing: the SAE's codes of the patches */
    int S = cx->sae->cfg.d_sae;
    int64_t *tp = cx->counts, *fires = tp + (size_t)S * K, *support = fires + S;
    probe_sae_codes(cx->sae, cx->tokens + (size_t)pl->has_cls * d, np, cx->f, cx->xs, cx->x_hat);
    if (pl->is_patch) {
        for (int p = 0; p < np; p++) {
            int k = class_index(pl->classes, K, cx->plabels[p]);
            if (cx->plabels[p] == cx->c->ignore_label || k < 0) continue;
            support[k]++;
            const float *fp = cx->f + (size_t)p * S;
            for (int s = 0; s < S; s++)
                if (fp[s] != 0) { fires[s]++; tp[(size_t)s * K + k]++; }
        }
    } else {
        int k = class_index(pl->classes, K, pl->st->label[img]);
        support[k]++;
        for (int s = 0; s < S; s++) {
            int any = 0;
            for (int p = 0; p < np && !any; p++) any = cx->f[(size_t)p * S + s] != 0;
            if (any) { fires[s]++; tp[(size_t)s * K + k]++; }
        }
    }
}

static cJSON *i64_array(const int64_t *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)v[i]));
    return a;
}

cJSON *probe_json_beside(const char *probe_path) {
    char path[4200];
    const char *slash = strrchr(probe_path, '/');
    snprintf(path, sizeof path, "%.*sprobe.json", slash ? (int)(slash - probe_path + 1) : 0, probe_path);
    char err[256];
    char *text = read_file(path, NULL, err, sizeof err);
    if (!text) return NULL;
    cJSON *j = cJSON_Parse(text);
    free(text);
    return j;
}

/* ---------------------------------------------------------------- the stage's steps */

/* Features of this rank's share of the training images into tr (and the semantic counts);
 * returns the training rows over all ranks. */
static int64_t training_rows(Ctx *cx, Rows *tr, const Comm *comm) {
    const ProbePlan *pl = cx->pl;
    int64_t t0 = pl->n_train * comm->rank / comm->size, t1 = pl->n_train * (comm->rank + 1) / comm->size;
    Progress prog;
    progress_start(&prog, "images", t1 - t0);
    for (int64_t i = t0; i < t1; i++) {
        image_rows(cx, pl->train[i], tr, 1);
        progress_update(&prog, i - t0 + 1);
    }
    progress_finish(&prog);
    int64_t n_global = tr->n;
    comm_allreduce(comm, &n_global, 1, COMM_I64, COMM_SUM);
    if (n_global < 1) saev_usage_fail("probe: no training rows (every label ignored?)");
    return n_global;
}

/* What the fit produced: theta [n_par] rounded through float32 (every prediction uses
 * the stored weights), w32 the same in float32, and the optimizer's report. */
typedef struct {
    int64_t n_par;
    double *theta;
    float *w32;
    LogregResult res;
    double seconds;
} Fit;

/* The data-parallel L-BFGS fit on the training rows: float64 rows, dense, or CSR when at
 * most a quarter of the values are non-zero (SAE codes), which makes each evaluation
 * nnz·K work instead of n·d·K. */
static void fit(const Ctx *cx, const Rows *tr, int64_t n_global, const Comm *comm, Fit *out) {
    const ProbeConfig *c = cx->c;
    int K = cx->pl->K, n_in = cx->n_in;
    size_t n_vals = (size_t)tr->n * n_in, nnz = 0;
    for (size_t e = 0; e < n_vals; e++) nnz += tr->x[e] != 0;
    double *xd = NULL, *val = NULL;
    int64_t *row_ptr = NULL;
    int *col = NULL;
    if (nnz * 4 <= n_vals) {
        row_ptr = mallocCheck((size_t)(tr->n + 1) * sizeof(int64_t));
        col = mallocCheck((nnz > 0 ? nnz : 1) * sizeof(int));
        val = mallocCheck((nnz > 0 ? nnz : 1) * sizeof(double));
        int64_t e = 0;
        for (int64_t i = 0; i < tr->n; i++) {
            row_ptr[i] = e;
            for (int j = 0; j < n_in; j++) {
                float v = tr->x[(size_t)i * n_in + j];
                if (v != 0) { col[e] = j; val[e] = v; e++; }
            }
        }
        row_ptr[tr->n] = e;
    } else {
        xd = mallocCheck((n_vals > 0 ? n_vals : 1) * sizeof(double));
        for (size_t e = 0; e < n_vals; e++) xd[e] = tr->x[e];
    }
    LogregProblem prob = {.d = n_in, .K = K, .n_local = tr->n, .n_global = n_global, .x = xd, .row_ptr = row_ptr, .col = col,
                          .val = val, .y = tr->y, .l2 = c->l2, .comm = comm};
    LogregOptions opt = {c->tol, (int)c->max_iter, (int)c->history};
    out->n_par = logreg_n_params(n_in, K);
    out->theta = mallocCheck((size_t)out->n_par * sizeof(double));
    double t_fit = saev_now();
    logreg_fit(&prob, &opt, out->theta, &out->res);
    out->seconds = saev_now() - t_fit;
    const LogregResult *res = &out->res;
    log_info("probe: L-BFGS %d iterations (%d evaluations, %.2f s): loss %.8g, max |gradient| %.3g: %s", res->iters, res->evals,
             out->seconds, res->loss, res->grad_inf, res->stop);
    if (!res->converged) log_warn("probe: not converged (%s); raise probe.max_iter or loosen probe.tol", res->stop);
    free(xd); free(row_ptr); free(col); free(val);
    out->w32 = mallocCheck((size_t)out->n_par * sizeof(float));
    for (int64_t j = 0; j < out->n_par; j++) {
        out->w32[j] = (float)out->theta[j];
        out->theta[j] = out->w32[j];
    }
}

/* Counts over all ranks: conf [K, K] (true class, predicted), pred_unseen [K] (held-out
 * rows whose label is not a training class), n_unseen, train_correct. */
typedef struct {
    int64_t *ev;                 // [K·K + K + 2] conf | pred_unseen | n_unseen | train_correct
    int64_t *conf, *pred_unseen;
    int64_t n_unseen, train_correct;
    int64_t n_test_rows, correct;
} Eval;

/* Training accuracy on this rank's rows, then the held-out images (this rank's share);
 * the counts and the semantic counts all-reduced. */
static void evaluate(Ctx *cx, const Rows *tr, const double *theta, const Comm *comm, Eval *out) {
    const ProbePlan *pl = cx->pl;
    int K = pl->K, n_in = cx->n_in, max_rows = pl->n_patches + 1;
    double *z = mallocCheck((size_t)max_rows * K * sizeof(double));
    int *pred = mallocCheck((size_t)max_rows * sizeof(int));
    int64_t train_correct = 0;
    for (int64_t i = 0; i < tr->n; i += max_rows) {
        int64_t m = tr->n - i < max_rows ? tr->n - i : max_rows;
        logreg_scores(theta, n_in, K, tr->x + (size_t)i * n_in, m, z, pred);
        for (int64_t r = 0; r < m; r++) train_correct += pred[r] == tr->y[i + r];
    }
    int64_t *ev = callocCheck((size_t)K * K + K + 2, sizeof(int64_t));
    ev[(size_t)K * K + K + 1] = train_correct;
    int64_t e0 = pl->n_test * comm->rank / comm->size, e1 = pl->n_test * (comm->rank + 1) / comm->size;
    Rows te = {0};
    for (int64_t i = e0; i < e1; i++) {
        te.n = 0;
        image_rows(cx, pl->test[i], &te, 0);
        logreg_scores(theta, n_in, K, te.x, te.n, z, pred);
        for (int64_t r = 0; r < te.n; r++) {
            if (te.y[r] >= 0) ev[(size_t)te.y[r] * K + pred[r]]++;
            else { ev[(size_t)K * K + pred[r]]++; ev[(size_t)K * K + K]++; }
        }
    }
    comm_allreduce(comm, ev, (size_t)K * K + K + 2, COMM_I64, COMM_SUM);
    if (cx->sae) {
        int S = cx->sae->cfg.d_sae;
        comm_allreduce(comm, cx->counts, (size_t)S * K + S + K, COMM_I64, COMM_SUM);
    }
    free(z); free(pred); free(te.x); free(te.y);
    out->ev = ev;
    out->conf = ev;
    out->pred_unseen = ev + (size_t)K * K;
    out->n_unseen = ev[(size_t)K * K + K];
    out->train_correct = ev[(size_t)K * K + K + 1];
    out->n_test_rows = out->n_unseen;
    out->correct = 0;
    for (int k = 0; k < K; k++)
        for (int j = 0; j < K; j++) out->n_test_rows += out->conf[(size_t)k * K + j];
    for (int k = 0; k < K; k++) out->correct += out->conf[(size_t)k * K + k];
}

/* The probe's provenance, stored in probe.safetensors, latent_f1.safetensors and probe.json. */
static cJSON *probe_meta(const ProbeConfig *c, const ProbePlan *pl) {
    cJSON *meta = cJSON_CreateObject();
    cJSON_AddNumberToObject(meta, "layer", pl->block);
    cJSON_AddStringToObject(meta, "target", c->target);
    cJSON_AddStringToObject(meta, "pool", c->pool);
    cJSON_AddStringToObject(meta, "features", c->features);
    if (c->sae) cJSON_AddStringToObject(meta, "sae", c->sae);
    cJSON_AddStringToObject(meta, "store", c->data);
    cJSON_AddNumberToObject(meta, "l2", c->l2);
    cJSON_AddStringToObject(meta, "objective", "mean cross-entropy + l2/2 ||W||^2 (b not penalised)");
    cJSON_AddItemToObject(meta, "classes", i64_array(pl->classes, pl->K));
    return meta;
}

/* probe.safetensors: W [n_in, K] and b [K] in float32, with the provenance. */
static void write_probe_weights(const ProbeConfig *c, const float *w32, int n_in, int K, const char *meta_s) {
    char path[4200];
    StWriter w;
    st_writer_init(&w);
    int64_t shape_w[2] = {n_in, K}, shape_b[1] = {K};
    st_writer_add(&w, "W", ST_F32, 2, shape_w, w32);
    st_writer_add(&w, "b", ST_F32, 1, shape_b, w32 + (size_t)n_in * K);
    st_writer_meta(&w, "saev_probe", meta_s);
    snprintf(path, sizeof path, "%s/probe.safetensors", c->out);
    st_writer_write_or_die(&w, path);
    st_writer_free(&w);
}

/* probe.json's split and optimizer sections. */
static void json_split_optimizer(cJSON *j, const ProbeConfig *c, const ProbePlan *pl, int64_t n_global, const Eval *ev, const Fit *f) {
    cJSON *sp = cJSON_AddObjectToObject(j, "split");
    cJSON_AddNumberToObject(sp, "seed", (double)c->seed);
    cJSON_AddNumberToObject(sp, "held_out", c->held_out);
    cJSON_AddItemToObject(sp, "train_images", i64_array(pl->train, (int)pl->n_train));
    cJSON_AddItemToObject(sp, "test_images", i64_array(pl->test, (int)pl->n_test));
    cJSON_AddNumberToObject(sp, "train_rows", (double)n_global);
    cJSON_AddNumberToObject(sp, "test_rows", (double)ev->n_test_rows);
    cJSON_AddNumberToObject(sp, "unlabelled_images_left_out", (double)pl->n_unlabelled);
    cJSON *op = cJSON_AddObjectToObject(j, "optimizer");
    cJSON_AddStringToObject(op, "method", "L-BFGS, float64, Armijo backtracking");
    cJSON_AddStringToObject(op, "stopping_rule", "converged when max |gradient| <= tol; else max_iter or no decrease in the line search");
    cJSON_AddNumberToObject(op, "tol", c->tol);
    cJSON_AddNumberToObject(op, "iterations", f->res.iters);
    cJSON_AddNumberToObject(op, "evaluations", f->res.evals);
    cJSON_AddNumberToObject(op, "loss", f->res.loss);
    cJSON_AddNumberToObject(op, "max_abs_gradient", f->res.grad_inf);
    cJSON_AddBoolToObject(op, "converged", f->res.converged);
    cJSON_AddStringToObject(op, "stop", f->res.stop);
    cJSON_AddNumberToObject(op, "seconds", f->seconds);
}

/* probe.json's per-class accuracy (and IoU for patch targets), mean IoU and confusion. */
static void json_classes(cJSON *j, const ProbePlan *pl, const Eval *ev, char *const *names) {
    int K = pl->K;
    const int64_t *conf = ev->conf;
    cJSON *cls = cJSON_AddArrayToObject(j, "classes");
    double iou_sum = 0;
    int n_present = 0;
    for (int k = 0; k < K; k++) {
        int64_t support = 0, col = ev->pred_unseen[k];
        for (int jj = 0; jj < K; jj++) { support += conf[(size_t)k * K + jj]; col += conf[(size_t)jj * K + k]; }
        int64_t tp = conf[(size_t)k * K + k];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "label", (double)pl->classes[k]);
        cJSON_AddStringToObject(e, "name", names[k]);
        cJSON_AddNumberToObject(e, "support", (double)support);
        if (support > 0) cJSON_AddNumberToObject(e, "accuracy", (double)tp / (double)support);
        else cJSON_AddNullToObject(e, "accuracy");
        if (pl->is_patch) {
            if (support > 0) {
                double iou = (double)tp / (double)(support + col - tp);
                cJSON_AddNumberToObject(e, "iou", iou);
                iou_sum += iou;
                n_present++;
            } else {
                cJSON_AddNullToObject(e, "iou");
            }
        }
        cJSON_AddItemToArray(cls, e);
    }
    if (pl->is_patch) cJSON_AddNumberToObject(j, "mean_iou", n_present ? iou_sum / n_present : NAN);
    cJSON *cm = cJSON_AddArrayToObject(j, "confusion");
    for (int k = 0; k < K; k++) cJSON_AddItemToArray(cm, i64_array(conf + (size_t)k * K, K));
}

/* Semantic probing: each class's top latents by F1 into probe.json, and every latent's
 * precision, recall and F1 into latent_f1.safetensors. */
static void semantic_outputs(cJSON *j, const Ctx *cx, char *const *names, const char *meta_s) {
    const ProbeConfig *c = cx->c;
    const ProbePlan *pl = cx->pl;
    int S = cx->sae->cfg.d_sae, K = pl->K;
    float *prec = mallocCheck((size_t)S * K * sizeof(float)), *rec = mallocCheck((size_t)S * K * sizeof(float));
    float *f1 = mallocCheck((size_t)S * K * sizeof(float));
    int64_t *tp = cx->counts, *fires = tp + (size_t)S * K, *support = fires + S;
    semantic_f1(tp, fires, support, S, K, prec, rec, f1);
    cJSON *sem = cJSON_AddObjectToObject(j, "semantic");
    cJSON_AddStringToObject(sem, "sae", c->sae);
    cJSON_AddStringToObject(sem, "unit", pl->is_patch ? "patch" : "image (fires on any patch)");
    cJSON_AddStringToObject(sem, "rows", "training split");
    cJSON *best = cJSON_AddArrayToObject(sem, "best");
    int top = (int)(c->top_latents < S ? c->top_latents : S);
    int *order = mallocCheck((size_t)S * sizeof(int));
    for (int k = 0; k < K; k++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "label", (double)pl->classes[k]);
        cJSON_AddStringToObject(e, "name", names[k]);
        cJSON_AddNumberToObject(e, "support", (double)support[k]);
        cJSON *lat = cJSON_AddArrayToObject(e, "latents");
        /* partial selection of the top F1s (ties: lower latent first) */
        for (int s = 0; s < S; s++) order[s] = s;
        for (int t = 0; t < top; t++) {
            int bi = t;
            for (int s = t + 1; s < S; s++) {
                float a = f1[(size_t)order[s] * K + k], b = f1[(size_t)order[bi] * K + k];
                if (a > b || (a == b && order[s] < order[bi])) bi = s;
            }
            int tmp = order[t]; order[t] = order[bi]; order[bi] = tmp;
            size_t i = (size_t)order[t] * K + k;
            cJSON *l = cJSON_CreateObject();
            cJSON_AddNumberToObject(l, "latent", order[t]);
            cJSON_AddNumberToObject(l, "f1", f1[i]);
            cJSON_AddNumberToObject(l, "precision", prec[i]);
            cJSON_AddNumberToObject(l, "recall", rec[i]);
            cJSON_AddNumberToObject(l, "tp", (double)tp[i]);
            cJSON_AddItemToArray(lat, l);
        }
        cJSON_AddItemToArray(best, e);
    }
    free(order);
    StWriter fw;
    st_writer_init(&fw);
    int64_t sk[2] = {S, K}, s1[1] = {S}, k1[1] = {K};
    st_writer_add(&fw, "precision", ST_F32, 2, sk, prec);
    st_writer_add(&fw, "recall", ST_F32, 2, sk, rec);
    st_writer_add(&fw, "f1", ST_F32, 2, sk, f1);
    st_writer_add(&fw, "tp", ST_I64, 2, sk, tp);
    st_writer_add(&fw, "fires", ST_I64, 1, s1, fires);
    st_writer_add(&fw, "support", ST_I64, 1, k1, support);
    st_writer_add(&fw, "classes", ST_I64, 1, k1, pl->classes);
    st_writer_meta(&fw, "saev_probe", meta_s);
    char path[4200];
    snprintf(path, sizeof path, "%s/latent_f1.safetensors", c->out);
    st_writer_write_or_die(&fw, path);
    st_writer_free(&fw);
    free(prec); free(rec); free(f1);
}

/* Rank 0: probe.safetensors, latent_f1.safetensors (with an SAE), probe.json, confusion.svg. */
static void write_outputs(const Ctx *cx, int64_t n_global, const Fit *f, const Eval *ev) {
    const ProbeConfig *c = cx->c;
    const ProbePlan *pl = cx->pl;
    int K = pl->K;
    char **names = class_names_or_die(c, pl->classes, K);
    make_dirs_or_die(c->out);
    cJSON *meta = probe_meta(c, pl);
    char *meta_s = cJSON_PrintUnformatted(meta);
    write_probe_weights(c, f->w32, cx->n_in, K, meta_s);

    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "probe", meta);
    json_split_optimizer(j, c, pl, n_global, ev, f);
    double accuracy = ev->n_test_rows ? (double)ev->correct / (double)ev->n_test_rows : NAN;
    cJSON_AddNumberToObject(j, "train_accuracy", (double)ev->train_correct / (double)n_global);
    cJSON_AddNumberToObject(j, "accuracy", accuracy);
    cJSON_AddNumberToObject(j, "unseen_class_rows", (double)ev->n_unseen);
    json_classes(j, pl, ev, names);
    if (cx->sae) semantic_outputs(j, cx, names, meta_s);
    char path[4200];
    snprintf(path, sizeof path, "%s/probe.json", c->out);
    write_json_atomic_or_die(path, j);
    char title[600];
    snprintf(title, sizeof title, "%s probe, block %d, %s features: held-out accuracy %.3f%s", c->target, pl->block, c->features,
             accuracy, "");
    char *svg = probe_confusion_svg(ev->conf, K, names, title);
    snprintf(path, sizeof path, "%s/confusion.svg", c->out);
    write_file_atomic_or_die(path, svg, strlen(svg));
    free(svg);
    log_info("probe: held-out accuracy %.4f over %" PRId64 " rows (train %.4f) -> %s/probe.{safetensors,json}, confusion.svg%s", accuracy,
             ev->n_test_rows, (double)ev->train_correct / (double)n_global, c->out, cx->sae ? ", latent_f1.safetensors" : "");
    cJSON_Delete(j);
    free(meta_s);
    for (int k = 0; k < K; k++) free(names[k]);
    free(names);
}

void probe_run(const ProbeConfig *c, const Comm *comm) {
    ProbePlan pl;
    plan_or_die(c, &pl);
    int d = pl.d, K = pl.K, np = pl.n_patches;
    Sae sae_obj, *sae = NULL;
    if (c->sae) {
        load_sae_or_die(&sae_obj, c->sae, d, np > 1 ? np : 1);
        sae = &sae_obj;
    }
    int S = sae ? sae->cfg.d_sae : 0;
    Ctx cx = {c, &pl, sae, !strcmp(c->features, "sae"), 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    cx.n_in = cx.feat_sae ? S : d;
    int max_rows = np + 1;
    cx.tokens = mallocCheck((size_t)pl.n_tokens * d * sizeof(float));
    cx.feat = mallocCheck((size_t)max_rows * cx.n_in * sizeof(float));
    cx.f = mallocCheck((size_t)max_rows * (S > 0 ? S : 1) * sizeof(float));
    cx.xs = mallocCheck((size_t)max_rows * d * sizeof(float));
    cx.x_hat = mallocCheck((size_t)max_rows * d * sizeof(float));
    cx.plabels = mallocCheck((size_t)(np > 0 ? np : 1));
    cx.counts = callocCheck(sae ? (size_t)S * K + S + K : 1, sizeof(int64_t));
    log_info("probe: %s target on block %d of %s (%s features, %d classes, %" PRId64 " training / %" PRId64 " held-out images, %d rank(s))",
             c->target, pl.block, c->data, cx.feat_sae ? "SAE" : "activation", K, pl.n_train, pl.n_test, comm->size);

    Rows tr = {0};
    int64_t n_global = training_rows(&cx, &tr, comm);
    Fit f;
    fit(&cx, &tr, n_global, comm, &f);
    Eval ev;
    evaluate(&cx, &tr, f.theta, comm, &ev);
    if (comm->rank == 0) write_outputs(&cx, n_global, &f, &ev);
    comm_barrier(comm);

    free(ev.ev); free(f.w32); free(f.theta);
    free(tr.x); free(tr.y);
    free(cx.tokens); free(cx.feat); free(cx.f); free(cx.xs); free(cx.x_hat); free(cx.plabels); free(cx.counts);
    if (sae) sae_destroy(sae);
    plan_free(&pl);
}
