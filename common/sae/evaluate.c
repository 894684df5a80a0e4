/*
 * evaluate.c: `saev evaluate`'s metrics, plan checks and outputs (see evaluate.h for the
 * definitions). The pass: read a batch of this rank's rows once, then for every SAE
 * scale it, encode/decode it (sae_encode_decode_eval: JumpReLU threshold for
 * batch-top-k) and add to that SAE's float64 sums; one all-reduce per SAE at the end.
 */
#include "fsutil.h"
#include "evaluate.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "checkpoint.h"
#include "comm.h"
#include "data_source.h"
#include "log.h"
#include "safetensors.h"

/* ---------------------------------------------------------------- sums and metrics */

void eval_sums_init(EvalSums *e, int d, int S) {
    e->d = d;
    e->S = S;
    e->sums = callocCheck(EVAL_X_SUM0 + (size_t)d + 2 * (size_t)S, sizeof(double));
    e->x_sum = e->sums + EVAL_X_SUM0;
    e->fired = e->x_sum + d;
    e->value_sum = e->fired + S;
}

void eval_sums_free(EvalSums *e) {
    free(e->sums);
    memset(e, 0, sizeof *e);
}

size_t eval_sums_len(const EvalSums *e) { return EVAL_X_SUM0 + (size_t)e->d + 2 * (size_t)e->S; }

void eval_sums_add(EvalSums *e, const float *x, const float *f, const float *x_hat, int n) {
    int d = e->d, S = e->S;
    for (int b = 0; b < n; b++) {
        const float *xb = x + (size_t)b * d, *rb = x_hat + (size_t)b * d, *fb = f + (size_t)b * S;
        double sq_err = 0, x_sq = 0, l1 = 0;
        int64_t l0 = 0;
        for (int i = 0; i < d; i++) {
            double v = xb[i], r = v - (double)rb[i];
            sq_err += r * r;
            x_sq += v * v;
            e->x_sum[i] += v;
        }
        for (int j = 0; j < S; j++) {
            double v = fb[j];
            if (v == 0) continue; /* firing is f != 0: top-k may keep negative values */
            e->fired[j] += 1;
            e->value_sum[j] += v;
            l0++;
            l1 += fabs(v);
        }
        e->sums[EVAL_N] += 1;
        e->sums[EVAL_SQERR] += sq_err;
        e->sums[EVAL_X_SQ] += x_sq;
        e->sums[EVAL_L0] += (double)l0;
        e->sums[EVAL_L1] += l1;
    }
}

static int hist_bin(double v, double lo, double hi, int bins) {
    int i = (int)floor((v - lo) / (hi - lo) * bins);
    return i < 0 ? 0 : i >= bins ? bins - 1 : i;
}

void eval_metrics_compute(const EvalSums *e, int bins, EvalMetrics *m) {
    memset(m, 0, sizeof *m);
    int d = e->d, S = e->S;
    double N = e->sums[EVAL_N];
    m->n_tokens = (int64_t)N;
    m->S = S;
    m->sum_sq_err = e->sums[EVAL_SQERR];
    m->sum_x_sq = e->sums[EVAL_X_SQ];
    m->sum_l0 = e->sums[EVAL_L0];
    m->sum_l1 = e->sums[EVAL_L1];
    m->l0 = e->sums[EVAL_L0] / N;
    m->l1 = e->sums[EVAL_L1] / N;
    m->mse = e->sums[EVAL_SQERR] / (N * d);
    /* Σ‖x − x̄‖² = Q − ‖S‖²/N (saev's one-pass identity; float64 keeps the cancellation mild). */
    double sst = e->sums[EVAL_X_SQ];
    for (int i = 0; i < d; i++) sst -= e->x_sum[i] * e->x_sum[i] / N;
    m->sst = sst;
    m->nmse = sst > 0 ? e->sums[EVAL_SQERR] / sst : NAN;
    m->explained_variance = 1.0 - m->nmse;
    m->nmse_uncentered = e->sums[EVAL_X_SQ] > 0 ? e->sums[EVAL_SQERR] / e->sums[EVAL_X_SQ] : NAN;

    m->freqs = mallocCheck((size_t)S * sizeof(double));
    m->mean_values = mallocCheck((size_t)S * sizeof(double));
    double mean_lo = INFINITY, mean_hi = -INFINITY;
    for (int j = 0; j < S; j++) {
        m->freqs[j] = e->fired[j] / N;
        m->mean_values[j] = e->fired[j] > 0 ? e->value_sum[j] / e->fired[j] : NAN;
        m->n_dead += e->fired[j] == 0;
        m->n_almost_dead += m->freqs[j] < EVAL_ALMOST_DEAD;
        m->n_dense += m->freqs[j] > EVAL_DENSE;
        if (e->fired[j] > 0) {
            if (m->mean_values[j] < mean_lo) mean_lo = m->mean_values[j];
            if (m->mean_values[j] > mean_hi) mean_hi = m->mean_values[j];
        }
    }
    m->bins = bins;
    m->freq_lo = -9.0; /* log10(EVAL_LOG10_EPS) */
    m->freq_hi = 0;
    m->freq_hist = callocCheck((size_t)bins, sizeof(int64_t));
    m->mean_hist = callocCheck((size_t)bins, sizeof(int64_t));
    for (int j = 0; j < S; j++) m->freq_hist[hist_bin(log10(m->freqs[j] + EVAL_LOG10_EPS), m->freq_lo, m->freq_hi, bins)]++;
    if (mean_lo <= mean_hi) {
        if (mean_lo == mean_hi) { mean_lo -= 0.5; mean_hi += 0.5; } /* one value: a unit-wide range around it */
        m->mean_lo = mean_lo;
        m->mean_hi = mean_hi;
        for (int j = 0; j < S; j++)
            if (e->fired[j] > 0) {
                m->mean_hist[hist_bin(m->mean_values[j], mean_lo, mean_hi, bins)]++;
                m->n_mean_hist++;
            }
    }
}

void eval_metrics_free(EvalMetrics *m) {
    free(m->freqs);
    free(m->mean_values);
    free(m->freq_hist);
    free(m->mean_hist);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------- plan */

typedef struct {
    char **v;
    int n, cap;
} StrList;

static void strlist_push(StrList *l, const char *s) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 8;
        l->v = reallocCheck(l->v, (size_t)l->cap * sizeof(char *));
    }
    l->v[l->n++] = strdupCheck(s);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The folders on the way down from a given run directory, by identity: a symlinked
 * folder is followed (runs/latest -> runs/2026-11-30), one that leads back up is not. */
typedef struct DirPath {
    dev_t dev;
    ino_t ino;
    const struct DirPath *up;
} DirPath;

/* Every file named sae.safetensors or sae.pt (saev's) under dir (any depth), appended to out. */
static void find_checkpoints(const char *key, const char *dir, const DirPath *up, StrList *out) {
    struct stat self;
    if (stat(dir, &self) != 0) saev_usage_fail("%s: %s: %s", key, dir, strerror(errno));
    for (const DirPath *a = up; a; a = a->up)
        if (a->dev == self.st_dev && a->ino == self.st_ino) {
            log_warn("%s: %s: skipped, a link back to a folder above it", key, dir);
            return;
        }
    DirPath here = {self.st_dev, self.st_ino, up};
    DIR *dp = opendir(dir);
    if (!dp) saev_usage_fail("%s: %s: cannot read the directory: %s", key, dir, strerror(errno));
    StrList names = {0};
    struct dirent *de;
    while ((de = readdir(dp))) {
        if (de->d_name[0] == '.') continue;
        strlist_push(&names, de->d_name);
    }
    closedir(dp);
    if (names.n) qsort(names.v, (size_t)names.n, sizeof(char *), cmp_str); /* a run's order must not depend on the file system */
    for (int i = 0; i < names.n; i++) {
        size_t dl = strlen(dir);
        while (dl > 1 && dir[dl - 1] == '/') dl--; /* "run/" and "run" name the same files */
        size_t len = dl + strlen(names.v[i]) + 2;
        char *p = mallocCheck(len);
        snprintf(p, len, "%.*s/%s", (int)dl, dir, names.v[i]);
        struct stat sb;
        if (stat(p, &sb) == 0) {
            if (S_ISDIR(sb.st_mode)) find_checkpoints(key, p, &here, out);
            else if (S_ISREG(sb.st_mode) && (!strcmp(names.v[i], "sae.safetensors") || !strcmp(names.v[i], "sae.pt"))) strlist_push(out, p);
        }
        free(p);
        free(names.v[i]);
    }
    free(names.v);
}

int eval_checkpoint_d_model(const char *key, const char *path) {
    SaeConfig c;
    float scale;
    char err[1024];
    if (sae_checkpoint_read_config(path, &c, &scale, err, sizeof err)) saev_usage_fail("%s: %s", key, err);
    return c.d_model;
}

int eval_resolve_checkpoints(const CfgList *sae, const char *key, char ***out) {
    if (sae->n == 0) saev_usage_fail("%s: no checkpoint given (a list of sae.safetensors files or run directories)", key);
    StrList ckpts = {0};
    struct stat sb;
    for (int i = 0; i < sae->n; i++) {
        const char *p = sae->s[i];
        if (stat(p, &sb) != 0) saev_usage_fail("%s: %s: no such checkpoint or run directory", key, p);
        if (S_ISDIR(sb.st_mode)) {
            int before = ckpts.n;
            find_checkpoints(key, p, NULL, &ckpts);
            if (ckpts.n == before) saev_usage_fail("%s: %s: no sae.safetensors (or saev sae.pt) under this directory", key, p);
        } else {
            strlist_push(&ckpts, p);
        }
    }
    for (int i = 0; i < ckpts.n; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(ckpts.v[i], ckpts.v[j])) saev_usage_fail("%s: %s is listed twice", key, ckpts.v[i]);
    *out = ckpts.v;
    return ckpts.n;
}

char *eval_out_dir(const char *out, int n_sae, int i, const char *ckpt, const char *beside) {
    char buf[4096];
    if (out && n_sae == 1) {
        snprintf(buf, sizeof buf, "%s", out);
    } else if (out) {
        snprintf(buf, sizeof buf, "%s/%d", out, i);
    } else {
        const char *slash = strrchr(ckpt, '/');
        if (slash) snprintf(buf, sizeof buf, "%.*s", (int)(slash - ckpt), ckpt);
        else snprintf(buf, sizeof buf, ".");
        if (!buf[0]) snprintf(buf, sizeof buf, "/");
        if (beside) snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", buf[strlen(buf) - 1] == '/' ? "" : "/", beside);
    }
    return strdupCheck(buf);
}

void eval_plan_or_die(const EvaluateConfig *c, EvalPlan *plan) {
    memset(plan, 0, sizeof *plan);
    if (c->sae.n == 0) saev_usage_fail("evaluate.sae: no checkpoint given (a list of sae.safetensors files or run directories)");
    if (!c->data) saev_usage_fail("evaluate.data: not set (a safetensors file with `activations` [N,d] or a store directory)");
    struct stat sb;
    if (stat(c->data, &sb) != 0) saev_usage_fail("evaluate.data: %s: not found", c->data);
    char **ckpts;
    int n_ckpt = eval_resolve_checkpoints(&c->sae, "evaluate.sae", &ckpts);

    DataSource *src = data_source_open("evaluate", c->data, c->layer, c->tokens);
    plan->d = src->d;
    int64_t n_data = src->n_rows;
    data_source_close(src);
    for (int i = 0; i < n_ckpt; i++) {
        int d = eval_checkpoint_d_model("evaluate.sae", ckpts[i]);
        if (d != plan->d)
            saev_usage_fail("evaluate: %s has d_model %d but the rows of %s have width %d", ckpts[i], d, c->data, plan->d);
    }
    if (c->first_row >= n_data)
        saev_usage_fail("evaluate.first_row: %" PRId64 " is past the end of %s (%" PRId64 " rows)", c->first_row, c->data, n_data);
    plan->first_row = c->first_row;
    plan->n_rows = n_data - c->first_row;
    if (c->max_tokens > 0 && c->max_tokens < plan->n_rows) plan->n_rows = c->max_tokens;

    plan->n_sae = n_ckpt;
    plan->ckpt = ckpts;
    plan->out_dir = mallocCheck((size_t)n_ckpt * sizeof(char *));
    for (int i = 0; i < n_ckpt; i++) {
        plan->out_dir[i] = eval_out_dir(c->out, n_ckpt, i, ckpts[i], NULL);
        for (int j = 0; j < i; j++) /* e.g. a saev sae.pt beside its imported sae.safetensors */
            if (!strcmp(plan->out_dir[i], plan->out_dir[j]))
                saev_usage_fail("evaluate.sae: %s and %s would both write %s/eval.json; list one of them, or set evaluate.out", ckpts[j], ckpts[i], plan->out_dir[i]);
    }
}

void eval_plan_free(EvalPlan *plan) {
    for (int i = 0; i < plan->n_sae; i++) { free(plan->ckpt[i]); free(plan->out_dir[i]); }
    free(plan->ckpt);
    free(plan->out_dir);
    memset(plan, 0, sizeof *plan);
}

/* ---------------------------------------------------------------- outputs */

static cJSON *hist_json(double lo, double hi, const int64_t *counts, int bins, const char *value) {
    cJSON *h = cJSON_CreateObject();
    cJSON_AddStringToObject(h, "value", value);
    cJSON_AddNumberToObject(h, "lo", lo);
    cJSON_AddNumberToObject(h, "hi", hi);
    cJSON *a = cJSON_AddArrayToObject(h, "counts");
    for (int i = 0; i < bins; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)counts[i]));
    return h;
}

char *eval_json(const EvalMetrics *m, const Sae *sae, const char *ckpt, const EvaluateConfig *c, const EvalPlan *plan) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "checkpoint", ckpt);
    cJSON_AddStringToObject(j, "data", c->data);
    if (c->layer == CFG_UNSET_INT) cJSON_AddNullToObject(j, "layer");
    else cJSON_AddNumberToObject(j, "layer", (double)c->layer);
    cJSON_AddNumberToObject(j, "first_row", (double)plan->first_row);
    cJSON_AddNumberToObject(j, "n_tokens", (double)m->n_tokens);
    cJSON_AddNumberToObject(j, "d_model", sae->cfg.d_model);
    cJSON_AddNumberToObject(j, "d_sae", sae->cfg.d_sae);
    cJSON_AddStringToObject(j, "activation", sae_activation_name(sae->cfg.activation));
    if (sae->cfg.activation != SAE_RELU) cJSON_AddNumberToObject(j, "k", sae->cfg.k);
    if (sae->cfg.activation == SAE_BATCH_TOPK) cJSON_AddNumberToObject(j, "threshold", sae->threshold);
    cJSON_AddNumberToObject(j, "data_scale", sae->data_scale);
    cJSON_AddNumberToObject(j, "l0", m->l0);
    cJSON_AddNumberToObject(j, "l1", m->l1);
    cJSON_AddNumberToObject(j, "mse", m->mse);
    cJSON_AddNumberToObject(j, "mse_data_units", m->mse / ((double)sae->data_scale * sae->data_scale));
    cJSON_AddNumberToObject(j, "nmse", m->nmse);
    cJSON_AddNumberToObject(j, "explained_variance", m->explained_variance);
    cJSON_AddNumberToObject(j, "nmse_uncentered", m->nmse_uncentered);
    cJSON_AddNumberToObject(j, "n_dead", m->n_dead);
    cJSON_AddNumberToObject(j, "n_almost_dead", m->n_almost_dead);
    cJSON_AddNumberToObject(j, "n_dense", m->n_dense);
    cJSON_AddNumberToObject(j, "almost_dead_threshold", EVAL_ALMOST_DEAD);
    cJSON_AddNumberToObject(j, "dense_threshold", EVAL_DENSE);
    cJSON *def = cJSON_AddObjectToObject(j, "definitions");
    cJSON_AddStringToObject(def, "space", "metrics are on inputs scaled by data_scale, as the SAE saw them in training; mse_data_units = mse / data_scale^2");
    cJSON_AddStringToObject(def, "firing", "latent j fires on a token when f_j != 0 (top-k may keep negative values)");
    cJSON_AddStringToObject(def, "l0", "mean over tokens of the number of firing latents");
    cJSON_AddStringToObject(def, "l1", "mean over tokens of sum_j |f_j|");
    cJSON_AddStringToObject(def, "mse", "sum ||x - x_hat||^2 / (n_tokens * d_model)");
    cJSON_AddStringToObject(def, "nmse", "sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 (fraction of variance unexplained, saev's normalized MSE)");
    cJSON_AddStringToObject(def, "explained_variance", "1 - nmse");
    cJSON_AddStringToObject(def, "nmse_uncentered", "sum ||x - x_hat||^2 / sum ||x||^2");
    cJSON_AddStringToObject(def, "n_dead", "latents with frequency 0; n_almost_dead: frequency < 1e-7 (dead included); n_dense: frequency > 1e-2");
    cJSON_AddStringToObject(def, "mean_values", "per latent: mean of f_j over the tokens where it fires; null when dead");
    cJSON *sums = cJSON_AddObjectToObject(j, "sums");
    cJSON_AddNumberToObject(sums, "sq_err", m->sum_sq_err);
    cJSON_AddNumberToObject(sums, "x_sq", m->sum_x_sq);
    cJSON_AddNumberToObject(sums, "x_centered_sq", m->sst);
    cJSON_AddNumberToObject(sums, "l0", m->sum_l0);
    cJSON_AddNumberToObject(sums, "l1", m->sum_l1);
    cJSON_AddItemToObject(j, "freq_hist", hist_json(m->freq_lo, m->freq_hi, m->freq_hist, m->bins, "log10(frequency + 1e-9)"));
    cJSON_AddItemToObject(j, "mean_value_hist", hist_json(m->mean_lo, m->mean_hi, m->mean_hist, m->n_mean_hist ? m->bins : 0, "mean value when firing"));
    cJSON *fr = cJSON_AddArrayToObject(j, "freqs");
    cJSON *mv = cJSON_AddArrayToObject(j, "mean_values");
    for (int s = 0; s < m->S; s++) {
        cJSON_AddItemToArray(fr, cJSON_CreateNumber(m->freqs[s]));
        cJSON_AddItemToArray(mv, isfinite(m->mean_values[s]) ? cJSON_CreateNumber(m->mean_values[s]) : cJSON_CreateNull());
    }
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    if (!s) saev_fail("evaluate: cannot format the JSON for %s", ckpt);
    size_t len = strlen(s);
    char *out = mallocCheck(len + 2);
    memcpy(out, s, len);
    out[len] = '\n';
    out[len + 1] = 0;
    free(s);
    return out;
}

/* A growing text buffer for the SVG. */
typedef struct {
    char *s;
    size_t len, cap;
} Text;

static void text_printf(Text *t, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) saev_fail("evaluate: cannot format the plot");
        if (t->s && t->len + (size_t)n < t->cap) { t->len += (size_t)n; return; }
        t->cap = (t->cap + (size_t)n + 1) * 2;
        t->s = reallocCheck(t->s, t->cap);
    }
}

/* Text content with XML's special characters escaped (file names may hold them). */
static void text_escaped(Text *t, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&': text_printf(t, "&amp;"); break;
        case '<': text_printf(t, "&lt;"); break;
        case '>': text_printf(t, "&gt;"); break;
        case '"': text_printf(t, "&quot;"); break;
        default:
            if ((unsigned char)*s < 0x20) text_printf(t, " "); /* control characters are not allowed in XML 1.0 */
            else text_printf(t, "%c", *s);
        }
    }
}

/* One histogram panel: plot area [x0, x0+w] x [y0, y0+h] (SVG y grows downwards). */
static void svg_panel(Text *t, double x0, double y0, double w, double h, const int64_t *counts, int bins, double lo, double hi,
                      const char *title, const char *xlabel, int empty) {
    text_printf(t, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"14\">%s</text>\n", x0 + w / 2, y0 - 10, title);
    int64_t max = 0;
    for (int i = 0; i < bins; i++) if (counts[i] > max) max = counts[i];
    if (!empty && max > 0) {
        double bw = w / bins;
        for (int i = 0; i < bins; i++) {
            if (!counts[i]) continue;
            double bh = h * (double)counts[i] / (double)max;
            text_printf(t, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"#4878a8\" stroke=\"#2b4f73\" stroke-width=\"0.5\"/>\n",
                        x0 + i * bw, y0 + h - bh, bw, bh);
        }
    } else {
        text_printf(t, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\" fill=\"#888\">no latent fired</text>\n", x0 + w / 2, y0 + h / 2);
    }
    /* Axes, ticks and labels. */
    text_printf(t, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", x0, y0 + h, x0 + w, y0 + h);
    text_printf(t, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", x0, y0, x0, y0 + h);
    if (!empty) {
        for (int k = 0; k <= 4; k++) {
            double x = x0 + w * k / 4;
            text_printf(t, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", x, y0 + h, x, y0 + h + 5);
            text_printf(t, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"11\">%.3g</text>\n", x, y0 + h + 18, lo + (hi - lo) * k / 4);
        }
    }
    text_printf(t, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">0</text>\n", x0 - 6, y0 + h + 4);
    text_printf(t, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", x0 - 5, y0, x0, y0);
    text_printf(t, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">%" PRId64 "</text>\n", x0 - 6, y0 + 4, max);
    text_printf(t, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">%s</text>\n", x0 + w / 2, y0 + h + 36, xlabel);
    text_printf(t, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\" transform=\"rotate(-90 %.1f %.1f)\">latents</text>\n",
                x0 - 30, y0 + h / 2, x0 - 30, y0 + h / 2);
}

char *eval_svg(const EvalMetrics *m, const char *title) {
    Text t = {0};
    const double W = 920, H = 400;
    text_printf(&t, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    text_printf(&t, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\">\n", W, H, W, H);
    text_printf(&t, "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"white\"/>\n", W, H);
    text_printf(&t, "<text x=\"%.0f\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">", W / 2);
    text_escaped(&t, title);
    text_printf(&t, "</text>\n");
    text_printf(&t, "<text x=\"%.0f\" y=\"42\" text-anchor=\"middle\" font-size=\"12\">%" PRId64 " tokens, L0 %.4g, L1 %.4g, MSE %.4g, NMSE %.4g, dead %d, almost dead %d, dense %d of %d</text>\n",
                W / 2, m->n_tokens, m->l0, m->l1, m->mse, m->nmse, m->n_dead, m->n_almost_dead, m->n_dense, m->S);
    char ftitle[128];
    snprintf(ftitle, sizeof ftitle, "Firing frequency (%d latents)", m->S);
    svg_panel(&t, 80, 90, 360, 240, m->freq_hist, m->bins, m->freq_lo, m->freq_hi, ftitle, "log10(frequency + 1e-9)", 0);
    char mtitle[128];
    snprintf(mtitle, sizeof mtitle, "Mean value when firing (%d latents)", m->n_mean_hist);
    svg_panel(&t, 540, 90, 360, 240, m->mean_hist, m->bins, m->mean_lo, m->mean_hi, mtitle, "mean value", m->n_mean_hist == 0);
    text_printf(&t, "</svg>\n");
    return t.s;
}

/* ---------------------------------------------------------------- the pass */

void evaluate_run(const EvaluateConfig *c, const Comm *comm) {
    EvalPlan plan;
    eval_plan_or_die(c, &plan);
    int rank = comm->rank, size = comm->size;
    int K = plan.n_sae, d = plan.d;

    Sae *saes = callocCheck((size_t)K, sizeof(Sae));
    EvalSums *sums = callocCheck((size_t)K, sizeof(EvalSums));
    int max_S = 0;
    for (int i = 0; i < K; i++) {
        sae_checkpoint_load(&saes[i], plan.ckpt[i], 1); /* eval needs no training workspace */
        eval_sums_init(&sums[i], d, saes[i].cfg.d_sae);
        if (saes[i].cfg.d_sae > max_S) max_S = saes[i].cfg.d_sae;
        log_info("evaluate: %s (%s, d_sae %d, data_scale %g)", plan.ckpt[i], sae_activation_name(saes[i].cfg.activation),
                 saes[i].cfg.d_sae, saes[i].data_scale);
    }

    /* This rank's contiguous share of the evaluated rows. */
    int64_t lo = plan.first_row + plan.n_rows * rank / size, hi = plan.first_row + plan.n_rows * (rank + 1) / size;
    int B = (int)c->batch_size;
    float *x = mallocCheck((size_t)B * d * sizeof(float));
    float *xs = mallocCheck((size_t)B * d * sizeof(float));
    float *x_hat = mallocCheck((size_t)B * d * sizeof(float));
    float *f = mallocCheck((size_t)B * max_S * sizeof(float));
    int64_t *ids = mallocCheck((size_t)B * sizeof(int64_t));
    DataSource *src = data_source_open("evaluate", c->data, c->layer, c->tokens);
    log_info("evaluate: %d SAE(s) on rows [%" PRId64 ", %" PRId64 ") of %s, %d rank(s)", K, plan.first_row,
             plan.first_row + plan.n_rows, c->data, size);
    Progress prog;
    progress_start(&prog, "tokens", hi - lo);
    for (int64_t pos = lo; pos < hi;) {
        int n = (int)(hi - pos < B ? hi - pos : B);
        for (int b = 0; b < n; b++) ids[b] = pos + b;
        data_source_read_rows(src, ids, n, x);
        for (size_t e = 0; e < (size_t)n * d; e++)
            if (!isfinite(x[e])) saev_fail("%s: row %" PRId64 " holds NaN or Inf", c->data, pos + (int64_t)(e / (size_t)d));
        for (int i = 0; i < K; i++) {
            const float *xi = x;
            if (saes[i].data_scale != 1.0f) {
                for (size_t e = 0; e < (size_t)n * d; e++) xs[e] = x[e] * saes[i].data_scale;
                xi = xs;
            }
            sae_encode_decode_eval(&saes[i], xi, n, f, x_hat);
            eval_sums_add(&sums[i], xi, f, x_hat, n);
        }
        pos += n;
        progress_update(&prog, pos - lo);
    }
    progress_finish(&prog);
    data_source_close(src);

    for (int i = 0; i < K; i++) comm_allreduce(comm, sums[i].sums, eval_sums_len(&sums[i]), COMM_F64, COMM_SUM);

    if (rank == 0) {
        for (int i = 0; i < K; i++) {
            EvalMetrics m;
            eval_metrics_compute(&sums[i], (int)c->hist_bins, &m);
            char *json = eval_json(&m, &saes[i], plan.ckpt[i], c, &plan);
            char *svg = eval_svg(&m, plan.ckpt[i]);
            make_dirs_or_die(plan.out_dir[i]);
            char path[4200];
            snprintf(path, sizeof path, "%s/eval.json", plan.out_dir[i]);
            write_file_atomic_or_die(path, json, strlen(json));
            snprintf(path, sizeof path, "%s/eval.svg", plan.out_dir[i]);
            write_file_atomic_or_die(path, svg, strlen(svg));
            log_info("evaluate: %s: L0 %.4g, L1 %.4g, MSE %.4g, NMSE %.4g, explained variance %.4g, dead %d, almost dead %d, dense %d of %d -> %s/eval.{json,svg}",
                     plan.ckpt[i], m.l0, m.l1, m.mse, m.nmse, m.explained_variance, m.n_dead, m.n_almost_dead, m.n_dense, m.S, plan.out_dir[i]);
            free(json);
            free(svg);
            eval_metrics_free(&m);
        }
    }
    comm_barrier(comm);

    for (int i = 0; i < K; i++) { sae_destroy(&saes[i]); eval_sums_free(&sums[i]); }
    free(saes);
    free(sums);
    free(x); free(xs); free(x_hat); free(f); free(ids);
    eval_plan_free(&plan);
}
