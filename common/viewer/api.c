/*
 * api.c: the /api/ handlers (docs/viewer.md is the reference a client reads):
 *
 *   GET  saes                              every SAE: paths, sizes, L0 and NMSE (eval.json)
 *   GET  sae/<i>/latents                   per-latent freq, mean_value, max_value, rendered ids
 *   GET  sae/<i>/latent/<s>                statistics, histogram, top images, similar latents
 *   GET  sae/<i>/latent/<s>/top/<j>.png    image j of s's top list (?mode=heat|plain|seg)
 *   GET  sae/<i>/image/<n>                 data-set image n: its top latents, per-patch latents
 *   GET  sae/<i>/image/<n>.png             its picture (?mode=plain|heat|seg&latent=s)
 *   POST sae/<i>/upload                    body: a JPEG or PNG; answers like image/<n> + "upload"
 *   GET  sae/<i>/upload/<u>.png            an upload's picture (?mode&latent)
 *   GET  sae/<i>/summary.svg               visuals' summary.svg
 *   POST sae/<i>/intervene                 {"image"|"upload", "edits"}: the probe before and after
 *
 * Numbers in paths and queries are decimal integers, anything else is 400; unknown SAEs,
 * latents, images and uploads are 404. Top images that visuals rendered are its PNG files;
 * the others are rendered here from the image's patch latents. Images computed here are
 * kept in a small cache (the 64 most recently used data-set images and the 32 most
 * recent uploads), so a latent's page and the heatmaps of an upload cost one forward.
 */
#include "viewer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "log.h"

#define N_IMAGE_CACHE 64
#define N_UPLOADS 32
#define N_IMAGE_TOP 12   /* latents listed for an image */
#define N_PATCH_TOP 5    /* latents listed per patch */
#define N_SIMILAR 10     /* decoder-row neighbours of a latent */

/* ---------------------------------------------------------------- replies */

static void reply_take(Reply *r, int status, const char *type, void *body, size_t len) {
    r->status = status;
    r->type = type;
    r->body = body;
    r->len = len;
}

void api_error(Reply *r, int status, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "error", msg);
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    reply_take(r, status, "application/json", text, strlen(text));
}

static void reply_json(Reply *r, cJSON *j) {
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!text) { api_error(r, 500, "out of memory"); return; }
    reply_take(r, 200, "application/json", text, strlen(text));
}

static int reply_file(Reply *r, const char *path, const char *type) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    struct stat sb;
    if (fstat(fileno(f), &sb) || !S_ISREG(sb.st_mode)) { fclose(f); return -1; }
    uint8_t *buf = mallocCheck((size_t)sb.st_size + 1);
    size_t n = fread(buf, 1, (size_t)sb.st_size, f);
    fclose(f);
    if (n != (size_t)sb.st_size) { free(buf); return -1; }
    reply_take(r, 200, type, buf, n);
    return 0;
}

/* Strict decimal integer (optional leading '-'); 0 ok, -1 otherwise. */
static int parse_i64(const char *s, size_t n, int64_t *out) {
    if (n == 0 || n > 18) return -1;
    int64_t v = 0;
    size_t i = 0;
    int neg = s[0] == '-';
    if (neg && n == 1) return -1;
    for (i = neg; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = neg ? -v : v;
    return 0;
}

/* Splits path into 1..6 non-empty '/'-separated parts (pointers into path, lengths);
 * -1 for more parts or an empty one ("a//b", a trailing slash). */
static int split(const char *path, const char **part, size_t *len) {
    int n = 0;
    const char *p = path;
    for (;;) {
        const char *e = strchr(p, '/');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == 0 || n == 6) return -1;
        part[n] = p;
        len[n] = l;
        n++;
        if (!e) return n;
        p = e + 1;
    }
}

static int part_is(const char *part, size_t len, const char *word) { return len == strlen(word) && !memcmp(part, word, len); }

/* "<n>" or "<n>.<ext>": the number and whether the extension was given. */
static int parse_id_ext(const char *part, size_t len, const char *ext, int64_t *id, int *has_ext) {
    size_t el = strlen(ext);
    *has_ext = len > el && !memcmp(part + len - el, ext, el);
    return parse_i64(part, *has_ext ? len - el : len, id);
}

/* ---------------------------------------------------------------- image cache */

typedef struct {
    int sae;           // SAE index, -1: empty
    int64_t key;       // data-set image, or upload id
    ViewerImage im;
    uint64_t used;     // last use (LRU)
} CacheSlot;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static CacheSlot image_cache[N_IMAGE_CACHE];
static CacheSlot uploads[N_UPLOADS];
static uint64_t cache_clock;
static int64_t next_upload = 1;
static int cache_ready;

static void cache_init_locked(void) {
    if (cache_ready) return;
    for (int i = 0; i < N_IMAGE_CACHE; i++) image_cache[i].sae = -1;
    for (int i = 0; i < N_UPLOADS; i++) uploads[i].sae = -1;
    cache_ready = 1;
}

static ViewerImage *cache_find_locked(CacheSlot *slots, int n, int sae, int64_t key) {
    cache_init_locked();
    for (int i = 0; i < n; i++)
        if (slots[i].sae == sae && slots[i].key == key) {
            slots[i].used = ++cache_clock;
            return &slots[i].im;
        }
    return NULL;
}

/* Puts im (taken over) into the least recently used slot; returns the cached copy. */
static ViewerImage *cache_put_locked(CacheSlot *slots, int n, int sae, int64_t key, ViewerImage *im) {
    cache_init_locked();
    ViewerImage *have = cache_find_locked(slots, n, sae, key);
    if (have) { viewer_image_free(im); return have; } /* another request computed it meanwhile */
    int lru = 0;
    for (int i = 1; i < n; i++)
        if (slots[i].used < slots[lru].used) lru = i;
    if (slots[lru].sae >= 0) viewer_image_free(&slots[lru].im);
    slots[lru].sae = sae;
    slots[lru].key = key;
    slots[lru].im = *im;
    slots[lru].used = ++cache_clock;
    return &slots[lru].im;
}

void api_free_caches(void) {
    pthread_mutex_lock(&cache_lock);
    for (int i = 0; i < N_IMAGE_CACHE; i++)
        if (cache_ready && image_cache[i].sae >= 0) viewer_image_free(&image_cache[i].im), image_cache[i].sae = -1;
    for (int i = 0; i < N_UPLOADS; i++)
        if (cache_ready && uploads[i].sae >= 0) viewer_image_free(&uploads[i].im), uploads[i].sae = -1;
    pthread_mutex_unlock(&cache_lock);
}

/* The cached data-set image, computing it when absent. Returns with cache_lock held and
 * *out set, or an HTTP status (lock not held) with r filled. */
static int dataset_image_locked(Viewer *v, int si, int64_t image, ViewerImage **out, Reply *r) {
    pthread_mutex_lock(&cache_lock);
    *out = cache_find_locked(image_cache, N_IMAGE_CACHE, si, image);
    if (*out) return 0;
    pthread_mutex_unlock(&cache_lock);
    ViewerImage im;
    char err[1024];
    int st = viewer_image_from_dataset(&v->saes[si], image, &im, err, sizeof err);
    if (st) { api_error(r, st, "%s", err); return st; }
    pthread_mutex_lock(&cache_lock);
    *out = cache_put_locked(image_cache, N_IMAGE_CACHE, si, image, &im);
    return 0;
}

/* ---------------------------------------------------------------- JSON pieces */

static cJSON *num_array_f(const float *x, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(isfinite(x[i]) ? x[i] : NAN));
    return a;
}

static void add_image_label(cJSON *j, const ViewerSource *src, int64_t image) {
    if (!src->has_model || image < 0 || image >= src->ds.n) return;
    int label = src->ds.labels[image];
    cJSON_AddNumberToObject(j, "label", label);
    if (label >= 0 && label < src->ds.n_classes && src->ds.class_names) cJSON_AddStringToObject(j, "class", src->ds.class_names[label]);
}

/* What the image page shows: top latents (by their largest patch value) and per patch
 * its strongest latents. */
static cJSON *image_json(const ViewerSae *s, const ViewerImage *im) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "ms", im->ms);
    cJSON_AddNumberToObject(j, "width", im->in_w);
    cJSON_AddNumberToObject(j, "height", im->in_h);
    cJSON *grid = cJSON_AddArrayToObject(j, "grid");
    cJSON_AddItemToArray(grid, cJSON_CreateNumber(im->grid_w));
    cJSON_AddItemToArray(grid, cJSON_CreateNumber(im->grid_h));
    cJSON_AddBoolToObject(j, "has_seg", im->seg != NULL);
    int S = im->S, P = im->n_patches;
    float *best = mallocCheck((size_t)S * sizeof(float));
    for (int k = 0; k < S; k++) best[k] = 0;
    for (int p = 0; p < P; p++)
        for (int k = 0; k < S; k++) {
            float x = im->f[(size_t)p * S + k];
            if (x > best[k]) best[k] = x;
        }
    cJSON *top = cJSON_AddArrayToObject(j, "top");
    uint8_t *taken = callocCheck((size_t)S, 1);
    for (int t = 0; t < N_IMAGE_TOP; t++) {
        int arg = -1;
        for (int k = 0; k < S; k++)
            if (!taken[k] && best[k] > 0 && (arg < 0 || best[k] > best[arg])) arg = k;
        if (arg < 0) break;
        taken[arg] = 1;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "latent", arg);
        cJSON_AddNumberToObject(e, "value", best[arg]);
        if (s->max_value) cJSON_AddNumberToObject(e, "max_value", isfinite(s->max_value[arg]) ? s->max_value[arg] : NAN);
        cJSON_AddItemToArray(top, e);
    }
    free(taken);
    free(best);
    cJSON *patches = cJSON_AddArrayToObject(j, "patches");
    for (int p = 0; p < P; p++) {
        const float *row = im->f + (size_t)p * S;
        cJSON *list = cJSON_CreateArray();
        int chosen[N_PATCH_TOP];
        int n = 0;
        for (int t = 0; t < N_PATCH_TOP; t++) {
            int arg = -1;
            for (int k = 0; k < S; k++) {
                if (row[k] == 0.0f || isnan(row[k])) continue;
                int dup = 0;
                for (int q = 0; q < n; q++) dup |= chosen[q] == k;
                if (!dup && (arg < 0 || row[k] > row[arg])) arg = k;
            }
            if (arg < 0) break;
            chosen[n++] = arg;
            cJSON *pair = cJSON_CreateArray();
            cJSON_AddItemToArray(pair, cJSON_CreateNumber(arg));
            cJSON_AddItemToArray(pair, cJSON_CreateNumber(row[arg]));
            cJSON_AddItemToArray(list, pair);
        }
        cJSON_AddItemToArray(patches, list);
    }
    return j;
}

/* ---------------------------------------------------------------- handlers */

static void get_saes(Viewer *v, Reply *r) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < v->n_sae; i++) {
        const ViewerSae *s = &v->saes[i];
        const ViewerSource *src = s->src;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "id", i);
        cJSON_AddStringToObject(e, "name", s->name);
        cJSON_AddStringToObject(e, "checkpoint", s->ckpt);
        if (s->visuals_dir) cJSON_AddStringToObject(e, "visuals", s->visuals_dir);
        else cJSON_AddNullToObject(e, "visuals");
        cJSON_AddStringToObject(e, "store", src->store_dir);
        cJSON_AddNumberToObject(e, "block", s->block);
        cJSON_AddStringToObject(e, "tokens", s->tokens);
        cJSON_AddNumberToObject(e, "d_model", s->d);
        cJSON_AddNumberToObject(e, "d_sae", s->S);
        const char *act = s->sae.cfg.activation == SAE_RELU ? "relu" : s->sae.cfg.activation == SAE_TOPK ? "top-k" : "batch-top-k";
        cJSON_AddStringToObject(e, "activation", act);
        if (s->sae.cfg.activation != SAE_RELU) cJSON_AddNumberToObject(e, "k", s->sae.cfg.k);
        cJSON_AddNumberToObject(e, "l0", s->l0);   /* NaN prints as null */
        cJSON_AddNumberToObject(e, "nmse", s->nmse);
        cJSON_AddNumberToObject(e, "top_k", s->top_k);
        cJSON_AddNumberToObject(e, "n_images", src->has_model ? (double)src->ds.n : (double)src->store->meta.n_images);
        cJSON_AddBoolToObject(e, "live", src->has_model);
        if (!src->has_model) cJSON_AddStringToObject(e, "why_not_live", src->why_no_model);
        cJSON_AddBoolToObject(e, "has_seg", src->store->meta.has_patch_labels);
        cJSON_AddNumberToObject(e, "max_upload_mb", (double)v->cfg->max_upload_mb);
        if (v->has_probe) {
            cJSON *pr = cJSON_AddObjectToObject(e, "probe");
            cJSON_AddStringToObject(pr, "path", v->cfg->probe);
            cJSON_AddStringToObject(pr, "target", v->probe.is_patch ? "patch" : "class");
            cJSON_AddNumberToObject(pr, "block", v->probe.block);
            cJSON_AddNumberToObject(pr, "classes", v->probe.K);
        } else {
            cJSON_AddNullToObject(e, "probe");
        }
        cJSON_AddItemToArray(a, e);
    }
    reply_json(r, a);
}

static void get_latents(Viewer *v, int si, Reply *r) {
    const ViewerSae *s = &v->saes[si];
    if (!s->freq) { api_error(r, 404, "SAE %d has no visuals (run saev visuals on %s)", si, s->ckpt); return; }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "sae", si);
    cJSON_AddNumberToObject(j, "d_sae", s->S);
    cJSON_AddNumberToObject(j, "top_k", s->top_k);
    cJSON_AddItemToObject(j, "freq", num_array_f(s->freq, s->S));
    cJSON_AddItemToObject(j, "mean_value", num_array_f(s->mean_value, s->S));
    cJSON_AddItemToObject(j, "max_value", num_array_f(s->max_value, s->S));
    cJSON *ren = cJSON_AddArrayToObject(j, "rendered");
    for (int k = 0; k < s->S; k++)
        if (s->rendered[k]) cJSON_AddItemToArray(ren, cJSON_CreateNumber(k));
    reply_json(r, j);
}

static void get_latent(Viewer *v, int si, int lat, Reply *r) {
    ViewerSae *s = &v->saes[si];
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "sae", si);
    cJSON_AddNumberToObject(j, "latent", lat);
    cJSON_AddNumberToObject(j, "d_sae", s->S);
    cJSON_AddNumberToObject(j, "prev", lat > 0 ? lat - 1 : s->S - 1);
    cJSON_AddNumberToObject(j, "next", lat + 1 < s->S ? lat + 1 : 0);
    if (s->freq) {
        cJSON_AddNumberToObject(j, "freq", s->freq[lat]);
        cJSON_AddNumberToObject(j, "mean_value", isfinite(s->mean_value[lat]) ? s->mean_value[lat] : NAN);
        cJSON_AddNumberToObject(j, "max_value", s->max_value[lat]);
        cJSON_AddBoolToObject(j, "rendered", s->rendered[lat]);
        cJSON *top = cJSON_AddArrayToObject(j, "top");
        for (int k = 0; k < s->top_k; k++) {
            int64_t img = s->top_images[(size_t)lat * s->top_k + k];
            if (img < 0) break;
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "rank", k);
            cJSON_AddNumberToObject(e, "image", (double)img);
            cJSON_AddNumberToObject(e, "value", s->top_values[(size_t)lat * s->top_k + k]);
            add_image_label(e, s->src, img);
            cJSON_AddItemToArray(top, e);
        }
        viewer_latent_histograms(s, (int)v->cfg->hist_images);
        cJSON *h = cJSON_AddObjectToObject(j, "histogram");
        cJSON_AddNumberToObject(h, "lo", 0);
        cJSON_AddNumberToObject(h, "hi", s->max_value[lat]);
        cJSON_AddNumberToObject(h, "images", s->hist_images);
        cJSON_AddNumberToObject(h, "rows", (double)s->hist_rows);
        cJSON *c = cJSON_AddArrayToObject(h, "counts");
        for (int b = 0; b < s->hist_bins; b++) cJSON_AddItemToArray(c, cJSON_CreateNumber((double)s->hist[(size_t)lat * s->hist_bins + b]));
    }
    /* The N_SIMILAR latents whose decoder rows have the largest cosine with this one's. */
    int d = s->d;
    const float *row = s->sae.p.w_dec + (size_t)lat * d;
    int best[N_SIMILAR];
    double best_cos[N_SIMILAR];
    int n_best = 0;
    for (int k = 0; k < s->S; k++) {
        if (k == lat) continue;
        const float *o = s->sae.p.w_dec + (size_t)k * d;
        double dot = 0;
        for (int i = 0; i < d; i++) dot += (double)row[i] * o[i];
        double den = s->dec_norm[lat] * s->dec_norm[k];
        double cs = den > 0 ? dot / den : 0;
        int pos = n_best;
        while (pos > 0 && best_cos[pos - 1] < cs) pos--;
        if (pos >= N_SIMILAR) continue;
        if (n_best < N_SIMILAR) n_best++;
        for (int q = n_best - 1; q > pos; q--) { best[q] = best[q - 1]; best_cos[q] = best_cos[q - 1]; }
        best[pos] = k;
        best_cos[pos] = cs;
    }
    cJSON *sim = cJSON_AddArrayToObject(j, "similar");
    for (int q = 0; q < n_best; q++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "latent", best[q]);
        cJSON_AddNumberToObject(e, "cosine", best_cos[q]);
        cJSON_AddItemToArray(sim, e);
    }
    reply_json(r, j);
}

static int parse_mode(const char *m, RenderMode *out) {
    if (!m || !strcmp(m, "heat")) *out = RENDER_HEAT;
    else if (!strcmp(m, "plain")) *out = RENDER_PLAIN;
    else if (!strcmp(m, "seg")) *out = RENDER_SEG;
    else return -1;
    return 0;
}

static void get_top_png(Viewer *v, int si, int lat, int64_t k, RenderMode mode, Reply *r) {
    ViewerSae *s = &v->saes[si];
    if (!s->freq) { api_error(r, 404, "SAE %d has no visuals", si); return; }
    if (k < 0 || k >= s->top_k || s->top_images[(size_t)lat * s->top_k + k] < 0) {
        api_error(r, 404, "latent %d has no top image %lld", lat, (long long)k);
        return;
    }
    if (s->rendered[lat]) {
        char path[4096];
        const char *suffix = mode == RENDER_HEAT ? "_heat" : mode == RENDER_SEG ? "_seg" : "";
        snprintf(path, sizeof path, "%s/latents/%d/%lld%s.png", s->visuals_dir, lat, (long long)k, suffix);
        if (reply_file(r, path, "image/png") == 0) return;
        if (mode == RENDER_SEG) { api_error(r, 404, "no segmentation for this image (%s)", path); return; }
    }
    int64_t img = s->top_images[(size_t)lat * s->top_k + k];
    ViewerImage *im;
    if (dataset_image_locked(v, si, img, &im, r)) return;
    if (mode == RENDER_SEG && !im->seg) {
        pthread_mutex_unlock(&cache_lock);
        api_error(r, 404, "image %lld has no patch labels", (long long)img);
        return;
    }
    size_t len;
    uint8_t *png = viewer_render_png(im, mode, lat, s->max_value[lat], &len);
    pthread_mutex_unlock(&cache_lock);
    reply_take(r, 200, "image/png", png, len);
}

/* Renders a cached image (lock held on entry, released here). */
static void render_locked(ViewerSae *s, ViewerImage *im, QueryFn query, void *qctx, Reply *r) {
    RenderMode mode;
    const char *m = query(qctx, "mode");
    const char *ls = query(qctx, "latent");
    int64_t lat = -1;
    if (parse_mode(m ? m : "plain", &mode) || (ls && parse_i64(ls, strlen(ls), &lat))) {
        pthread_mutex_unlock(&cache_lock);
        api_error(r, 400, "bad mode or latent (mode=plain|heat|seg, latent=<integer>)");
        return;
    }
    if (mode == RENDER_HEAT && (lat < 0 || lat >= s->S)) {
        pthread_mutex_unlock(&cache_lock);
        api_error(r, lat < 0 ? 400 : 404, "mode=heat needs latent=<0..%d>", s->S - 1);
        return;
    }
    if (mode == RENDER_SEG && !im->seg) {
        pthread_mutex_unlock(&cache_lock);
        api_error(r, 404, "this image has no patch labels");
        return;
    }
    /* Scale: the latent's max_value over the data (as visuals), else this image's largest. */
    float scale = 0;
    if (mode == RENDER_HEAT) {
        if (s->max_value && s->max_value[lat] > 0) scale = s->max_value[lat];
        else
            for (int p = 0; p < im->n_patches; p++) scale = fmaxf(scale, im->f[(size_t)p * im->S + lat]);
    }
    size_t len;
    uint8_t *png = viewer_render_png(im, mode, (int)(lat < 0 ? 0 : lat), scale, &len);
    pthread_mutex_unlock(&cache_lock);
    reply_take(r, 200, "image/png", png, len);
}

void api_get(Viewer *v, const char *path, QueryFn query, void *qctx, Reply *r) {
    const char *part[6];
    size_t len[6];
    int n = split(path, part, len);
    if (n == 1 && part_is(part[0], len[0], "saes")) { get_saes(v, r); return; }
    if (n < 3 || !part_is(part[0], len[0], "sae")) { api_error(r, 404, "no such API path /api/%s (see docs/viewer.md)", path); return; }
    int64_t si;
    if (parse_i64(part[1], len[1], &si)) { api_error(r, 400, "SAE id \"%.*s\" is not an integer", (int)len[1], part[1]); return; }
    if (si < 0 || si >= v->n_sae) { api_error(r, 404, "no SAE %lld (there are %d)", (long long)si, v->n_sae); return; }
    ViewerSae *s = &v->saes[si];
    if (n == 3 && part_is(part[2], len[2], "latents")) { get_latents(v, (int)si, r); return; }
    if (n == 3 && part_is(part[2], len[2], "summary.svg")) {
        char p[4096];
        snprintf(p, sizeof p, "%s/summary.svg", s->visuals_dir ? s->visuals_dir : "");
        if (!s->visuals_dir || reply_file(r, p, "image/svg+xml")) api_error(r, 404, "SAE %lld has no summary.svg", (long long)si);
        return;
    }
    if (n >= 4 && part_is(part[2], len[2], "latent")) {
        int64_t lat;
        if (parse_i64(part[3], len[3], &lat)) { api_error(r, 400, "latent \"%.*s\" is not an integer", (int)len[3], part[3]); return; }
        if (lat < 0 || lat >= s->S) { api_error(r, 404, "no latent %lld (SAE %lld has %d)", (long long)lat, (long long)si, s->S); return; }
        if (n == 4) { get_latent(v, (int)si, (int)lat, r); return; }
        int64_t k;
        int ext;
        if (n == 6 && part_is(part[4], len[4], "top") && !parse_id_ext(part[5], len[5], ".png", &k, &ext) && ext) {
            RenderMode mode;
            if (parse_mode(query(qctx, "mode"), &mode)) { api_error(r, 400, "mode must be heat, plain or seg"); return; }
            get_top_png(v, (int)si, (int)lat, k, mode, r);
            return;
        }
        api_error(r, 404, "no such API path /api/%s", path);
        return;
    }
    if (n == 4 && (part_is(part[2], len[2], "image") || part_is(part[2], len[2], "upload"))) {
        int upload = part_is(part[2], len[2], "upload");
        int64_t id;
        int ext;
        if (parse_id_ext(part[3], len[3], ".png", &id, &ext)) { api_error(r, 400, "\"%.*s\" is not an image number", (int)len[3], part[3]); return; }
        ViewerImage *im;
        if (upload) {
            if (!ext) { api_error(r, 404, "uploads are read back as /api/sae/%lld/upload/<id>.png", (long long)si); return; }
            pthread_mutex_lock(&cache_lock);
            im = cache_find_locked(uploads, N_UPLOADS, (int)si, id);
            if (!im) {
                pthread_mutex_unlock(&cache_lock);
                api_error(r, 404, "no upload %lld (the %d most recent are kept)", (long long)id, N_UPLOADS);
                return;
            }
        } else if (dataset_image_locked(v, (int)si, id, &im, r)) {
            return;
        }
        if (ext) { render_locked(s, im, query, qctx, r); return; }
        cJSON *j = image_json(s, im);
        pthread_mutex_unlock(&cache_lock);
        cJSON_AddNumberToObject(j, "sae", (double)si);
        cJSON_AddNumberToObject(j, "image", (double)id);
        add_image_label(j, s->src, id);
        cJSON_AddStringToObject(j, "source", s->src->store_pos[id] >= 0 ? "store" : "vit");
        reply_json(r, j);
        return;
    }
    api_error(r, 404, "no such API path /api/%s (see docs/viewer.md)", path);
}

/* A JSON number that is an integer, into *out; 0, or -1. */
static int json_int(const cJSON *x, int64_t *out) {
    if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble) || x->valuedouble != floor(x->valuedouble) || fabs(x->valuedouble) > 1e15) return -1;
    *out = (int64_t)x->valuedouble;
    return 0;
}

static cJSON *prediction_json(const Probe *p, const int *pred, const float *probs, int rows) {
    cJSON *j = cJSON_CreateObject();
    cJSON *labels = cJSON_AddArrayToObject(j, "labels");
    for (int r = 0; r < rows; r++) cJSON_AddItemToArray(labels, cJSON_CreateNumber((double)p->classes[pred[r]]));
    if (!p->is_patch) {
        cJSON_AddItemToObject(j, "probs", num_array_f(probs, p->K));
    } else {
        cJSON *a = cJSON_AddArrayToObject(j, "probs");
        for (int r = 0; r < rows; r++) cJSON_AddItemToArray(a, num_array_f(probs + (size_t)r * p->K, p->K));
    }
    return j;
}

/* POST sae/<i>/intervene: {"image": n | "upload": u, "edits": [{"latent": s, "scale": a | "value": v}]}. */
static void post_intervene(Viewer *v, int si, const uint8_t *body, size_t len, Reply *r) {
    double t0 = saev_now();
    ViewerSae *s = &v->saes[si];
    if (!v->has_probe) { api_error(r, 404, "no probe is served (saev serve --probe probe.safetensors)"); return; }
    if (!s->src->has_model) { api_error(r, 503, "no model for this SAE: %s", s->src->why_no_model); return; }
    cJSON *req = cJSON_ParseWithLength((const char *)body, len);
    if (!cJSON_IsObject(req)) { cJSON_Delete(req); api_error(r, 400, "intervene: the body is not a JSON object"); return; }
    const cJSON *jimg = cJSON_GetObjectItemCaseSensitive(req, "image"), *jup = cJSON_GetObjectItemCaseSensitive(req, "upload");
    const cJSON *jed = cJSON_GetObjectItemCaseSensitive(req, "edits");
    int64_t key;
    if (!!jimg == !!jup || json_int(jimg ? jimg : jup, &key)) {
        cJSON_Delete(req);
        api_error(r, 400, "intervene: give one of \"image\" (a data-set index) or \"upload\" (an upload id), an integer");
        return;
    }
    if (!cJSON_IsArray(jed) || cJSON_GetArraySize(jed) > 256) {
        cJSON_Delete(req);
        api_error(r, 400, "intervene: \"edits\" must be an array of at most 256 {\"latent\": s, \"scale\": a} or {\"latent\": s, \"value\": v}");
        return;
    }
    int n_edits = cJSON_GetArraySize(jed);
    Edit *edits = callocCheck((size_t)(n_edits > 0 ? n_edits : 1), sizeof(Edit));
    for (int i = 0; i < n_edits; i++) {
        const cJSON *e = cJSON_GetArrayItem(jed, i);
        const cJSON *jl = cJSON_GetObjectItemCaseSensitive(e, "latent"), *ja = cJSON_GetObjectItemCaseSensitive(e, "scale");
        const cJSON *jv = cJSON_GetObjectItemCaseSensitive(e, "value");
        int64_t lat;
        int bad_num = (ja && (!cJSON_IsNumber(ja) || !isfinite(ja->valuedouble) || fabs(ja->valuedouble) > 10)) ||
                      (jv && (!cJSON_IsNumber(jv) || !isfinite(jv->valuedouble)));
        if (!cJSON_IsObject(e) || json_int(jl, &lat) || lat < 0 || !!ja == !!jv || bad_num) {
            free(edits);
            cJSON_Delete(req);
            api_error(r, 400, "intervene: edits[%d]: expected {\"latent\": s >= 0, \"scale\": a in -10..10} or {\"latent\": s, \"value\": v (finite)}", i);
            return;
        }
        if (lat >= s->S) {
            free(edits);
            cJSON_Delete(req);
            api_error(r, 404, "intervene: edits[%d]: no latent %lld (SAE %d has %d)", i, (long long)lat, si, s->S);
            return;
        }
        edits[i].latent = (int)lat;
        edits[i].is_scale = ja != NULL;
        edits[i].value = ja ? ja->valuedouble : jv->valuedouble;
        edits[i].where = EDIT_ALL;
    }
    int is_upload = jup != NULL;
    cJSON_Delete(req);
    ViewerImage *im;
    if (is_upload) {
        pthread_mutex_lock(&cache_lock);
        im = cache_find_locked(uploads, N_UPLOADS, si, key);
        if (!im) {
            pthread_mutex_unlock(&cache_lock);
            free(edits);
            api_error(r, 404, "no upload %lld (the %d most recent are kept)", (long long)key, N_UPLOADS);
            return;
        }
    } else if (dataset_image_locked(v, si, key, &im, r)) {
        free(edits);
        return;
    }
    /* cache_lock stays held so the image cannot be evicted while the model reads it */
    const Probe *p = &v->probe;
    int rows = p->is_patch ? im->n_patches : 1, edited = 0;
    int *pb = mallocCheck((size_t)rows * sizeof(int)), *pa = mallocCheck((size_t)rows * sizeof(int));
    float *qb = mallocCheck((size_t)rows * p->K * sizeof(float)), *qa = mallocCheck((size_t)rows * p->K * sizeof(float));
    char err[1024];
    int st = viewer_intervene(v, s, im, edits, n_edits, pb, qb, pa, qa, &edited, err, sizeof err);
    int grid_w = im->grid_w, grid_h = im->grid_h;
    pthread_mutex_unlock(&cache_lock);
    free(edits);
    if (st) { free(pb); free(pa); free(qb); free(qa); api_error(r, st, "intervene: %s", err); return; }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "sae", si);
    cJSON_AddNumberToObject(j, is_upload ? "upload" : "image", (double)key);
    cJSON_AddStringToObject(j, "target", p->is_patch ? "patch" : "class");
    cJSON_AddNumberToObject(j, "sae_block", s->block);
    cJSON_AddNumberToObject(j, "probe_block", p->block);
    cJSON *cls = cJSON_AddArrayToObject(j, "classes");
    for (int k = 0; k < p->K; k++) cJSON_AddItemToArray(cls, cJSON_CreateNumber((double)p->classes[k]));
    const Dataset *ds = &s->src->ds;
    if (ds->class_names) {
        cJSON *names = cJSON_AddArrayToObject(j, "class_names");
        for (int k = 0; k < p->K; k++) {
            int64_t c = p->classes[k];
            cJSON_AddItemToArray(names, c >= 0 && c < ds->n_classes ? cJSON_CreateString(ds->class_names[c]) : cJSON_CreateNull());
        }
    }
    if (p->is_patch) {
        cJSON *grid = cJSON_AddArrayToObject(j, "grid");
        cJSON_AddItemToArray(grid, cJSON_CreateNumber(grid_w));
        cJSON_AddItemToArray(grid, cJSON_CreateNumber(grid_h));
    }
    cJSON_AddNumberToObject(j, "patches_edited", edited);
    cJSON_AddItemToObject(j, "before", prediction_json(p, pb, qb, rows));
    cJSON_AddItemToObject(j, "after", prediction_json(p, pa, qa, rows));
    free(pb); free(pa); free(qb); free(qa);
    cJSON_AddNumberToObject(j, "ms", 1e3 * (saev_now() - t0));
    reply_json(r, j);
}

void api_post(Viewer *v, const char *path, const uint8_t *body, size_t len, Reply *r) {
    const char *part[6];
    size_t plen[6];
    int n = split(path, part, plen);
    int64_t si;
    int is_edit = n == 3 && part_is(part[2], plen[2], "intervene");
    if (n != 3 || !part_is(part[0], plen[0], "sae") || !(part_is(part[2], plen[2], "upload") || is_edit)) {
        api_error(r, 404, "no such API path /api/%s (POST: /api/sae/<i>/upload, /api/sae/<i>/intervene)", path);
        return;
    }
    if (parse_i64(part[1], plen[1], &si)) { api_error(r, 400, "SAE id \"%.*s\" is not an integer", (int)plen[1], part[1]); return; }
    if (si < 0 || si >= v->n_sae) { api_error(r, 404, "no SAE %lld (there are %d)", (long long)si, v->n_sae); return; }
    if (is_edit) { post_intervene(v, (int)si, body, len, r); return; }
    if (len == 0) { api_error(r, 400, "empty upload: send the JPEG or PNG bytes as the request body"); return; }
    ViewerSae *s = &v->saes[si];
    ViewerImage im;
    char err[1024];
    int st = viewer_image_from_bytes(s, body, len, &im, err, sizeof err);
    if (st) { api_error(r, st, "upload: %s", err); return; }
    pthread_mutex_lock(&cache_lock);
    int64_t id = next_upload++;
    ViewerImage *cached = cache_put_locked(uploads, N_UPLOADS, (int)si, id, &im);
    cJSON *j = image_json(s, cached);
    pthread_mutex_unlock(&cache_lock);
    cJSON_AddNumberToObject(j, "sae", (double)si);
    cJSON_AddNumberToObject(j, "upload", (double)id);
    cJSON_AddStringToObject(j, "source", "vit");
    reply_json(r, j);
}
