/*
 * study.c: saev's faithfulness study (intervene.h): per class, suppress its best-F1 latent
 * on its patches and count how many of those patches the probe stops calling the class,
 * next to a random latent and a random direction moved by the same norm; the collateral
 * changes on the other patches. Outputs study.json, study.md, study.svg and
 * study_predictions.safetensors.
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "comm.h"
#include "fsutil.h"
#include "intervene_internal.h"
#include "log.h"
#include "safetensors.h"
#include "sae/rng.h"

enum { COND_TARGET = 0, COND_RANDOM_LATENT, COND_RANDOM_DIRECTION, N_COND };
static const char *cond_name[N_COND] = {"target", "random_latent", "random_direction"};
static const char *cond_title[N_COND] = {"best-F1 latent", "random latent", "random direction"};

typedef struct {
    int64_t in_class_before; // patches of P predicted c before
    int64_t left;            // ... and not c after
    int64_t others;          // patches outside P in the images holding c
    int64_t others_changed;  // ... whose prediction changed
} Rates;

/* The F1 table of latent_f1.safetensors: f1 [S, K], classes [K]. */
typedef struct {
    int S, K;
    float *f1;
    int64_t *classes;
} F1Table;

static void f1_load_or_die(F1Table *t, const char *path, int S) {
    SafeTensors st;
    char err[1024];
    if (st_open(&st, path, err, sizeof err)) saev_usage_fail("intervene.latent_f1: %s", err);
    const StTensor *f1 = st_require(&st, "f1"), *cl = st_require(&st, "classes");
    if (f1->ndim != 2 || cl->ndim != 1 || cl->shape[0] != f1->shape[1])
        saev_usage_fail("intervene.latent_f1: %s: f1 must be [latents, classes] and classes [classes]", path);
    if (f1->shape[0] != S)
        saev_usage_fail("intervene.latent_f1: %s scores %" PRId64 " latents but intervene.sae has %d; run `saev probe` with probe.sae set to this SAE", path,
                        f1->shape[0], S);
    t->S = S;
    t->K = (int)f1->shape[1];
    t->f1 = mallocCheck((size_t)S * t->K * sizeof(float));
    st_to_f32(f1, t->f1);
    t->classes = mallocCheck((size_t)t->K * sizeof(int64_t));
    if (cl->dtype != ST_I64) saev_usage_fail("intervene.latent_f1: %s: classes must be I64", path);
    memcpy(t->classes, cl->data, (size_t)t->K * sizeof(int64_t));
    st_close(&st);
}

void study_check_or_die(Session *ss) {
    if (!ss->probe.is_patch) saev_usage_fail("intervene.study: faithfulness needs a patch probe; %s is a class probe", ss->c->probe);
    if (!ss->has_labels) saev_usage_fail("intervene.study: faithfulness needs patch labels, which store %s lacks", ss->c->data);
    F1Table t;
    f1_load_or_die(&t, ss->c->latent_f1, ss->S);
    free(t.f1);
    free(t.classes);
}

/* Class names from probe.json beside the probe ("classes": [{label, name}]), or the label. */
static void class_name(const Session *ss, int64_t label, char *buf, size_t len) {
    snprintf(buf, len, "%" PRId64, label);
    cJSON *j = probe_json_beside(ss->c->probe);
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "classes")) {
        const cJSON *l = cJSON_GetObjectItem(e, "label"), *nm = cJSON_GetObjectItem(e, "name");
        if (cJSON_IsNumber(l) && (int64_t)l->valuedouble == label && cJSON_IsString(nm)) snprintf(buf, len, "%s", nm->valuestring);
    }
    cJSON_Delete(j);
}

static double rate(int64_t num, int64_t den) { return den > 0 ? (double)num / (double)den : NAN; }

static cJSON *rates_json(const Rates *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "patches_in_class_before", (double)r->in_class_before);
    cJSON_AddNumberToObject(o, "patches_left_class", (double)r->left);
    double t = rate(r->left, r->in_class_before), c = rate(r->others_changed, r->others);
    if (isfinite(t)) cJSON_AddNumberToObject(o, "target_change_rate", t);
    else cJSON_AddNullToObject(o, "target_change_rate");
    cJSON_AddNumberToObject(o, "other_patches", (double)r->others);
    cJSON_AddNumberToObject(o, "other_patches_changed", (double)r->others_changed);
    if (isfinite(c)) cJSON_AddNumberToObject(o, "collateral_rate", c);
    else cJSON_AddNullToObject(o, "collateral_rate");
    return o;
}

static void fmt_rate(char *buf, size_t len, int64_t num, int64_t den) {
    if (den > 0) snprintf(buf, len, "%.1f%% (%" PRId64 "/%" PRId64 ")", 100.0 * num / den, num, den);
    else snprintf(buf, len, "n/a (0 patches)");
}

/* Grouped bars: for each class and the pooled row, the three conditions. */
static char *study_svg(int n_c, char names[][64], const Rates (*r)[N_COND], const Rates *pooled) {
    char *buf = NULL;
    size_t len = 0;
    FILE *o = open_memstream(&buf, &len);
    libcCheckPtr(o, "open_memstream");
    int groups = n_c + 1;
    double gw = 3 * 14 + 16, pw = groups * gw, ph = 220, left = 70, top = 80, gap = 90;
    double W = left + 2 * pw + gap + 40, H = top + ph + 110;
    if (W < 640) W = 640;
    static const char *color[N_COND] = {"#c0392b", "#7f8c8d", "#2e86c1"};
    fprintf(o, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\">\n",
            W, H, W, H);
    fprintf(o, "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"white\"/>\n", W, H);
    fprintf(o, "<text x=\"%.0f\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">Faithfulness: suppress a class's best-F1 latent on its patches vs. two baselines of equal edit norm</text>\n", W / 2);
    for (int k = 0; k < N_COND; k++) {
        double lx = left + k * 190;
        fprintf(o, "<rect x=\"%.0f\" y=\"36\" width=\"12\" height=\"12\" fill=\"%s\"/><text x=\"%.0f\" y=\"47\" font-size=\"12\">%s</text>\n", lx, color[k], lx + 16,
                cond_title[k]);
    }
    for (int panel = 0; panel < 2; panel++) {
        double x0 = left + panel * (pw + gap);
        fprintf(o, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\" font-size=\"13\">%s</text>\n", x0 + pw / 2, top - 8,
                panel ? "collateral rate (other patches that change)" : "target change rate (class patches that leave the class)");
        for (int t = 0; t <= 4; t++) {
            double y = top + ph - ph * t / 4;
            fprintf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", x0, y, x0 + pw, y);
            fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">%d%%</text>\n", x0 - 5, y + 4, 25 * t);
        }
        fprintf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", x0, top + ph, x0 + pw, top + ph);
        fprintf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", x0, top, x0, top + ph);
        for (int g = 0; g < groups; g++) {
            for (int k = 0; k < N_COND; k++) {
                const Rates *q = g < n_c ? &r[g][k] : &pooled[k];
                double v = panel ? rate(q->others_changed, q->others) : rate(q->left, q->in_class_before);
                double bx = x0 + g * gw + 8 + k * 14;
                if (!isfinite(v)) { /* no patch to count: say so (once, over the middle bar) rather than draw a zero */
                    if (k == 1) fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"9\" fill=\"#999\">n/a</text>\n", bx + 6.5, top + ph - 4);
                    continue;
                }
                double bh = v > 0 ? ph * v : 1.5; /* a zero rate stays visible as a sliver */
                fprintf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"13\" height=\"%.1f\" fill=\"%s\"/>\n", bx, top + ph - bh, bh, color[k]);
            }
            double lx = x0 + g * gw + gw / 2, ly = top + ph + 10;
            fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\" transform=\"rotate(-50 %.1f %.1f)\">", lx, ly, lx, ly);
            const char *nm = g < n_c ? names[g] : "all (pooled)";
            for (const char *s = nm; *s; s++) {
                if (*s == '&') fputs("&amp;", o);
                else if (*s == '<') fputs("&lt;", o);
                else if (*s == '>') fputs("&gt;", o);
                else fputc(*s, o);
            }
            fprintf(o, "</text>\n");
        }
    }
    fprintf(o, "</svg>\n");
    libcCheck(fclose(o));
    return buf;
}

/* The study's state, shared by its steps. */
typedef struct {
    Session *ss;
    F1Table t;
    int64_t N;               // study images
    int np, d, S;            // patches per image, width, latents
    size_t NP;               // N·np
    int64_t *labels;         // [N, np] every image's patch labels (every rank)
    int n_c;                 // classes studied (at least min_patches patches)
    int *cls;                // [n_c] their indices into t.classes
    int64_t *n_patches;      // [t.K] patches of each class over the images
    int *best, *rnd;         // [n_c] best-F1 latent, random other latent
    double *dir;             // [n_c, d] random unit directions
    int64_t *before;         // [N, np] predictions before any edit
    int64_t *after;          // [N_COND, n_c, N, np] after (images without the class: before)
    int64_t *n_edited;       // [n_c] class patches where the best latent fires, i.e. that an edit moves
} Study;

/* Every image's patch labels, and the classes with at least min_patches patches; every
 * rank reads them all (small) so the class list is the same everywhere. */
static void study_classes(Study *st) {
    Session *ss = st->ss;
    const InterveneConfig *c = ss->c;
    int64_t N = st->N;
    int np = st->np;
    st->labels = mallocCheck((size_t)N * np * sizeof(int64_t));
    for (int64_t i = 0; i < N; i++) {
        store_read_patch_labels(ss->st, ss->img[i], 1, ss->labels);
        for (int p = 0; p < np; p++) st->labels[(size_t)i * np + p] = ss->labels[p];
    }
    st->n_c = 0;
    st->cls = mallocCheck((size_t)st->t.K * sizeof(int));
    st->n_patches = callocCheck((size_t)st->t.K, sizeof(int64_t));
    for (int k = 0; k < st->t.K; k++) {
        for (size_t e = 0; e < (size_t)N * np; e++) st->n_patches[k] += st->labels[e] == st->t.classes[k];
        if (st->n_patches[k] >= c->min_patches) st->cls[st->n_c++] = k;
    }
    if (st->n_c == 0)
        saev_usage_fail("intervene.study: no class has %" PRId64 " patches in the %" PRId64 " study images; lower intervene.min_patches",
                        c->min_patches, N);
}

/* Per class: best latent, random latent, random unit direction (drawn in class order). */
static void study_draws(Study *st) {
    int n_c = st->n_c, d = st->d, S = st->S, K = st->t.K;
    st->best = mallocCheck((size_t)n_c * sizeof(int));
    st->rnd = mallocCheck((size_t)n_c * sizeof(int));
    st->dir = mallocCheck((size_t)n_c * d * sizeof(double));
    uint64_t rng = (uint64_t)st->ss->c->seed;
    for (int ci = 0; ci < n_c; ci++) {
        int k = st->cls[ci], b = 0;
        for (int s = 1; s < S; s++) if (st->t.f1[(size_t)s * K + k] > st->t.f1[(size_t)b * K + k]) b = s;
        st->best[ci] = b;
        int r = (int)rng_below(&rng, (uint64_t)(S - 1));
        st->rnd[ci] = r >= b ? r + 1 : r;
        double *u = st->dir + (size_t)ci * d, norm = 0;
        for (int i = 0; i < d; i += 2) { /* Box-Muller: two normals per pair of uniforms */
            double u1 = 1.0 - rng_uniform(&rng), u2 = rng_uniform(&rng), rr = sqrt(-2 * log(u1));
            u[i] = rr * cos(2 * M_PI * u2);
            if (i + 1 < d) u[i + 1] = rr * sin(2 * M_PI * u2);
        }
        for (int i = 0; i < d; i++) norm += u[i] * u[i];
        for (int i = 0; i < d; i++) u[i] /= sqrt(norm);
    }
}

static int image_holds(const Study *st, int64_t i, int64_t label) {
    int holds = 0;
    for (int p = 0; p < st->np; p++) holds |= st->labels[(size_t)i * st->np + p] == label;
    return holds;
}

/* Condition k of class ci on image i (read into the session): ss->edited = the tokens
 * with the class's patches moved; delta [d] is scratch. */
static void edit_class_patches(Study *st, int64_t i, int ci, int k, double *delta) {
    Session *ss = st->ss;
    int d = st->d, S = st->S;
    int64_t label = st->t.classes[st->cls[ci]];
    memcpy(ss->edited, ss->tokens, (size_t)ss->T * d * sizeof(float));
    const float *wb = ss->sae.p.w_dec + (size_t)st->best[ci] * d, *wr = ss->sae.p.w_dec + (size_t)st->rnd[ci] * d;
    double wr_norm = 0;
    for (int e = 0; e < d; e++) wr_norm += (double)wr[e] * wr[e];
    wr_norm = sqrt(wr_norm);
    for (int p = 0; p < st->np; p++) {
        if (st->labels[(size_t)i * st->np + p] != label) continue;
        double coef = -(double)ss->f[(size_t)p * S + st->best[ci]] / ss->sae.data_scale;
        if (coef == 0) continue; /* the latent does not fire here: no edit in any condition */
        if (k == COND_TARGET) st->n_edited[ci]++;
        double norm = 0;
        for (int e = 0; e < d; e++) { delta[e] = coef * wb[e]; norm += delta[e] * delta[e]; }
        norm = sqrt(norm);
        if (k == COND_RANDOM_LATENT)
            for (int e = 0; e < d; e++) delta[e] = wr_norm > 0 ? -norm * wr[e] / wr_norm : 0;
        else if (k == COND_RANDOM_DIRECTION)
            for (int e = 0; e < d; e++) delta[e] = norm * st->dir[(size_t)ci * d + e];
        float *x = ss->edited + (size_t)(ss->has_cls + p) * d;
        for (int e = 0; e < d; e++) x[e] = (float)((double)x[e] + delta[e]);
    }
}

/* Predictions before and after every condition on this rank's share of the images,
 * gathered on every rank by all-reduce (each rank fills its images, the others stay 0). */
static void predict_all(Study *st, const Comm *comm) {
    Session *ss = st->ss;
    int64_t N = st->N;
    int np = st->np, n_c = st->n_c;
    size_t NP = st->NP;
    st->before = callocCheck(NP, sizeof(int64_t));
    st->after = callocCheck((size_t)N_COND * n_c * NP, sizeof(int64_t));
    st->n_edited = callocCheck((size_t)n_c, sizeof(int64_t));
    int *pred = mallocCheck((size_t)np * sizeof(int));
    double *delta = mallocCheck((size_t)st->d * sizeof(double));
    int64_t i0 = N * comm->rank / comm->size, i1 = N * (comm->rank + 1) / comm->size;
    log_info("intervene: faithfulness study on %" PRId64 " image(s) of %s, %d class(es), SAE block %d, probe block %d, %d rank(s)", N,
             ss->c->data, n_c, ss->block, ss->probe.block, comm->size);
    Progress prog;
    progress_start(&prog, "images", i1 - i0);
    for (int64_t i = i0; i < i1; i++) {
        session_read_image(ss, ss->img[i]);
        session_predict(ss, ss->tokens, pred, NULL);
        for (int p = 0; p < np; p++) st->before[(size_t)i * np + p] = ss->probe.classes[pred[p]];
        for (int ci = 0; ci < n_c; ci++) {
            int holds = image_holds(st, i, st->t.classes[st->cls[ci]]);
            for (int k = 0; k < N_COND; k++) {
                int64_t *out = st->after + ((size_t)k * n_c + ci) * NP + (size_t)i * np;
                if (!holds) { memcpy(out, st->before + (size_t)i * np, (size_t)np * sizeof(int64_t)); continue; }
                edit_class_patches(st, i, ci, k, delta);
                session_predict(ss, ss->edited, pred, NULL);
                for (int p = 0; p < np; p++) out[p] = ss->probe.classes[pred[p]];
            }
        }
        progress_update(&prog, i - i0 + 1);
    }
    progress_finish(&prog);
    if (comm->size > 1) {
        comm_allreduce(comm, st->before, NP, COMM_I64, COMM_SUM);
        comm_allreduce(comm, st->after, (size_t)N_COND * n_c * NP, COMM_I64, COMM_SUM);
        comm_allreduce(comm, st->n_edited, (size_t)n_c, COMM_I64, COMM_SUM);
    }
    free(pred);
    free(delta);
}

/* Rates per class and condition, r [n_c][N_COND], and pooled over the classes. */
static void study_rates(const Study *st, Rates (*r)[N_COND], Rates *pooled) {
    int np = st->np, n_c = st->n_c;
    for (int ci = 0; ci < n_c; ci++) {
        int64_t label = st->t.classes[st->cls[ci]];
        for (int k = 0; k < N_COND; k++) {
            const int64_t *a = st->after + ((size_t)k * n_c + ci) * st->NP;
            Rates *q = &r[ci][k];
            for (int64_t i = 0; i < st->N; i++) {
                if (!image_holds(st, i, label)) continue;
                for (int p = 0; p < np; p++) {
                    size_t e = (size_t)i * np + p;
                    if (st->labels[e] == label) {
                        if (st->before[e] == label) { q->in_class_before++; q->left += a[e] != label; }
                    } else {
                        q->others++;
                        q->others_changed += a[e] != st->before[e];
                    }
                }
            }
            pooled[k].in_class_before += q->in_class_before;
            pooled[k].left += q->left;
            pooled[k].others += q->others;
            pooled[k].others_changed += q->others_changed;
        }
    }
}

/* study_predictions.safetensors: labels, before, after per condition, classes, latents. */
static void write_predictions(const Study *st) {
    int n_c = st->n_c;
    int64_t N = st->N, np = st->np;
    int64_t *lat = mallocCheck((size_t)n_c * 2 * sizeof(int64_t));
    int64_t *cl = mallocCheck((size_t)n_c * sizeof(int64_t));
    for (int ci = 0; ci < n_c; ci++) { lat[2 * ci] = st->best[ci]; lat[2 * ci + 1] = st->rnd[ci]; cl[ci] = st->t.classes[st->cls[ci]]; }
    StWriter w;
    st_writer_init(&w);
    int64_t s1[1] = {N}, s2[2] = {N, np}, s3[3] = {n_c, N, np}, sc[1] = {n_c}, sl[2] = {n_c, 2};
    st_writer_add(&w, "images", ST_I64, 1, s1, st->ss->img);
    st_writer_add(&w, "labels", ST_I64, 2, s2, st->labels);
    st_writer_add(&w, "before", ST_I64, 2, s2, st->before);
    for (int k = 0; k < N_COND; k++) st_writer_add(&w, cond_name[k], ST_I64, 3, s3, st->after + (size_t)k * n_c * st->NP);
    st_writer_add(&w, "classes", ST_I64, 1, sc, cl);
    st_writer_add(&w, "latents", ST_I64, 2, sl, lat);
    char path[4200];
    snprintf(path, sizeof path, "%s/study_predictions.safetensors", st->ss->c->out);
    st_writer_write_or_die(&w, path);
    st_writer_free(&w);
    free(lat);
    free(cl);
}

/* study.json: the setting, the definitions, per class and pooled rates. */
static void write_json(const Study *st, Rates (*r)[N_COND], const Rates *pooled, char names[][64]) {
    const Session *ss = st->ss;
    const InterveneConfig *c = ss->c;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "study", "faithfulness");
    cJSON_AddStringToObject(j, "data", c->data);
    cJSON_AddStringToObject(j, "sae", c->sae);
    cJSON_AddNumberToObject(j, "sae_block", ss->block);
    cJSON_AddStringToObject(j, "probe", c->probe);
    cJSON_AddNumberToObject(j, "probe_block", ss->probe.block);
    cJSON_AddStringToObject(j, "latent_f1", c->latent_f1);
    cJSON_AddNumberToObject(j, "images", (double)st->N);
    cJSON_AddNumberToObject(j, "min_patches", (double)c->min_patches);
    cJSON_AddNumberToObject(j, "seed", (double)c->seed);
    cJSON *def = cJSON_AddObjectToObject(j, "definitions");
    cJSON_AddStringToObject(def, "edit", "on the patches P labelled c: target x' = x - f_s* W_dec[s*] / data_scale; random_latent moves each patch by the same norm along -W_dec[r]; random_direction along a Gaussian unit vector");
    cJSON_AddStringToObject(def, "target_change_rate", "over images holding c: (patches of P predicted c before and not c after) / (patches of P predicted c before)");
    cJSON_AddStringToObject(def, "collateral_rate", "over images holding c: (patches outside P whose prediction changes) / (patches outside P)");
    cJSON_AddStringToObject(def, "patches_edited", "patches of P where s* fires (f != 0): the only ones any condition moves");
    cJSON *arr = cJSON_AddArrayToObject(j, "classes");
    for (int ci = 0; ci < st->n_c; ci++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "label", (double)st->t.classes[st->cls[ci]]);
        cJSON_AddStringToObject(e, "name", names[ci]);
        cJSON_AddNumberToObject(e, "patches", (double)st->n_patches[st->cls[ci]]);
        cJSON_AddNumberToObject(e, "patches_edited", (double)st->n_edited[ci]);
        cJSON_AddNumberToObject(e, "latent", st->best[ci]);
        cJSON_AddNumberToObject(e, "latent_f1", st->t.f1[(size_t)st->best[ci] * st->t.K + st->cls[ci]]);
        cJSON_AddNumberToObject(e, "random_latent", st->rnd[ci]);
        for (int k = 0; k < N_COND; k++) cJSON_AddItemToObject(e, cond_name[k], rates_json(&r[ci][k]));
        cJSON_AddItemToArray(arr, e);
    }
    cJSON *po = cJSON_AddObjectToObject(j, "pooled");
    for (int k = 0; k < N_COND; k++) cJSON_AddItemToObject(po, cond_name[k], rates_json(&pooled[k]));
    char path[4200];
    snprintf(path, sizeof path, "%s/study.json", c->out);
    write_json_atomic_or_die(path, j);
    cJSON_Delete(j);
}

/* study.md (also printed): the table of rates per class and pooled. */
static void write_md(const Study *st, Rates (*r)[N_COND], const Rates *pooled, char names[][64]) {
    const Session *ss = st->ss;
    const InterveneConfig *c = ss->c;
    char *md = NULL;
    size_t md_len = 0;
    FILE *o = open_memstream(&md, &md_len);
    libcCheckPtr(o, "open_memstream");
    fprintf(o, "# Faithfulness study\n\nSAE `%s` on block %d, probe `%s` on block %d, %" PRId64 " images of `%s`.\n\n", c->sae, ss->block, c->probe,
            ss->probe.block, st->N, c->data);
    fprintf(o, "Per class: suppress its best-F1 latent on the class's patches; the baselines move each patch by the same norm along a random latent "
               "or a random direction. Target: class patches (predicted as the class before) that leave the class. Collateral: other patches "
               "of the same images that change.\n\n");
    fprintf(o, "| class | latent (F1) | patches (edited) | target: best latent | target: random latent | target: random direction | collateral: best latent | collateral: random latent | collateral: random direction |\n");
    fprintf(o, "|---|---|---|---|---|---|---|---|---|\n");
    char cell[64];
    for (int g = 0; g <= st->n_c; g++) {
        const Rates *q = g < st->n_c ? r[g] : pooled;
        if (g < st->n_c)
            fprintf(o, "| %s | %d (%.3f) | %" PRId64 " (%" PRId64 ") |", names[g], st->best[g], st->t.f1[(size_t)st->best[g] * st->t.K + st->cls[g]],
                    st->n_patches[st->cls[g]], st->n_edited[g]);
        else
            fprintf(o, "| **all (pooled)** | | |");
        for (int k = 0; k < N_COND; k++) { fmt_rate(cell, sizeof cell, q[k].left, q[k].in_class_before); fprintf(o, " %s |", cell); }
        for (int k = 0; k < N_COND; k++) { fmt_rate(cell, sizeof cell, q[k].others_changed, q[k].others); fprintf(o, " %s |", cell); }
        fprintf(o, "\n");
    }
    libcCheck(fclose(o));
    char path[4200];
    snprintf(path, sizeof path, "%s/study.md", c->out);
    write_file_atomic_or_die(path, md, md_len);
    fputs(md, stdout);
    fflush(stdout);
    free(md);
}

/* Rank 0: the rates and every output file. */
static void write_outputs(const Study *st) {
    const InterveneConfig *c = st->ss->c;
    int n_c = st->n_c;
    Rates (*r)[N_COND] = callocCheck((size_t)n_c, sizeof *r);
    Rates pooled[N_COND] = {{0}};
    char (*names)[64] = callocCheck((size_t)n_c, sizeof *names);
    for (int ci = 0; ci < n_c; ci++) class_name(st->ss, st->t.classes[st->cls[ci]], names[ci], sizeof names[ci]);
    study_rates(st, r, pooled);
    make_dirs_or_die(c->out);
    write_predictions(st);
    write_json(st, r, pooled, names);
    write_md(st, r, pooled, names);
    char *svg = study_svg(n_c, names, (const Rates(*)[N_COND])r, pooled);
    char path[4200];
    snprintf(path, sizeof path, "%s/study.svg", c->out);
    write_file_atomic_or_die(path, svg, strlen(svg));
    free(svg);
    log_info("intervene: study -> %s/study.{json,md,svg}, study_predictions.safetensors", c->out);
    free(r);
    free(names);
}

void study_run(Session *ss, const Comm *comm) {
    Study st = {.ss = ss, .N = ss->n_img, .np = ss->np, .d = ss->d, .S = ss->S};
    st.NP = (size_t)st.N * st.np;
    f1_load_or_die(&st.t, ss->c->latent_f1, st.S);
    study_classes(&st);
    study_draws(&st);
    predict_all(&st, comm);
    if (comm->rank == 0) write_outputs(&st);
    comm_barrier(comm);
    free(st.labels); free(st.cls); free(st.n_patches); free(st.best); free(st.rnd); free(st.dir);
    free(st.before); free(st.after); free(st.n_edited);
    free(st.t.f1); free(st.t.classes);
}
