/*
 * catalog.c: what the viewer serves, found from the served roots and loaded once.
 *
 * Each root is walked (sorted, so the order of SAEs does not depend on the file system)
 * for visuals outputs (folders with top.safetensors) and checkpoints (sae.safetensors).
 * A visuals folder names its checkpoint and store in index.json (`sae`, `data`/`store`,
 * `layer`, `tokens`); a checkpoint without one is paired with the visuals/ folder beside
 * it when there is one, and its store comes from the config.resolved.yaml that training
 * wrote beside it. The store's recorded config (its `config` attribute) names the data
 * set, preprocessing and ViT; when those cannot be opened (data moved, model deleted) the
 * viewer still serves the tables and visuals PNGs and answers live requests with 503.
 */
#include "viewer.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "fsutil.h"
#include "log.h"
#include "sae/checkpoint.h"
#include "safetensors.h"
#include "saev_config.h"

static pthread_mutex_t compute_mutex = PTHREAD_MUTEX_INITIALIZER;
void viewer_compute_lock(void) { pthread_mutex_lock(&compute_mutex); }
void viewer_compute_unlock(void) { pthread_mutex_unlock(&compute_mutex); }

/* ---------------------------------------------------------------- small helpers */

typedef struct {
    char **v; // [n] malloc'd strings
    int n, cap;
} PathList;

static void paths_push(PathList *l, const char *s) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 8;
        l->v = reallocCheck(l->v, (size_t)l->cap * sizeof(char *));
    }
    l->v[l->n++] = strdupCheck(s);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static char *join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = mallocCheck(n);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

static char *dir_of(const char *path) {
    char *d = strdupCheck(path);
    char *slash = strrchr(d, '/');
    if (slash == d) slash[1] = 0;
    else if (slash) *slash = 0;
    else strcpy(d, ".");
    return d;
}

/* Folders holding top.safetensors and files named sae.safetensors under dir (depth <= 6). */
static void walk(const char *dir, int depth, PathList *visuals, PathList *ckpts, PathList *probes) {
    char *top = join(dir, "top.safetensors");
    if (is_file(top)) paths_push(visuals, dir);
    free(top);
    if (depth > 6) return;
    DIR *dp = opendir(dir);
    if (!dp) saev_usage_fail("serve: %s: cannot read the directory: %s", dir, strerror(errno));
    PathList names = {0};
    struct dirent *de;
    while ((de = readdir(dp)))
        if (de->d_name[0] != '.') paths_push(&names, de->d_name);
    closedir(dp);
    qsort(names.v, (size_t)names.n, sizeof(char *), cmp_str);
    for (int i = 0; i < names.n; i++) {
        char *p = join(dir, names.v[i]);
        if (is_dir(p) && strcmp(names.v[i], "latents") != 0) walk(p, depth + 1, visuals, ckpts, probes);
        else if (!strcmp(names.v[i], "sae.safetensors") && is_file(p)) paths_push(ckpts, p);
        else if (!strcmp(names.v[i], "probe.safetensors") && is_file(p)) paths_push(probes, p);
        free(p);
        free(names.v[i]);
    }
    free(names.v);
}

/* ---------------------------------------------------------------- sources */

static ViewerSource *source_open(Viewer *v, const char *store_dir) {
    char *real = realpath(store_dir, NULL);
    if (!real) saev_usage_fail("serve: activation store %s: %s", store_dir, strerror(errno));
    for (int i = 0; i < v->n_sources; i++) {
        char *other = realpath(v->sources[i]->store_dir, NULL);
        int same = other && !strcmp(other, real);
        free(other);
        if (same) { free(real); return v->sources[i]; }
    }
    free(real);
    ViewerSource *src = callocCheck(1, sizeof *src);
    src->store_dir = strdupCheck(store_dir);
    char err[2048];
    src->store = store_open_read(store_dir, err, sizeof err);
    if (!src->store) saev_usage_fail("serve: %s", err);
    v->sources = reallocCheck(v->sources, (size_t)(v->n_sources + 1) * sizeof *v->sources);
    v->sources[v->n_sources++] = src;

    /* The data set, preprocessing and ViT as the store recorded them. */
    const StoreMeta *m = &src->store->meta;
    SaevConfig *cfg = callocCheck(1, sizeof *cfg);
    if (saev_config_recorded(m->config_yaml, store_dir, cfg, err, sizeof err)) { free(cfg); goto no_model; }
    src->config = cfg;
    if (data_resolve(&cfg->data, &src->data, err, sizeof err) || dataset_open(&src->data, &src->ds, err, sizeof err)) goto no_model;
    if (saev_config_recorded_preprocess(cfg, m->model_family, &src->prep, err, sizeof err)) goto no_model;
    VitSpec spec;
    model_section_to_spec(&cfg->model, &spec);
    if (vit_open(&src->vit, &spec, err, sizeof err) || vit_set_device(&src->vit, DEVICE_CPU, err, sizeof err)) goto no_model;
    src->patch = src->vit.cfg.patch_size;
    /* The model input size is the same for every image when the pipeline crops (or
     * resizes exactly); a pipeline without either gives images of varying size, which
     * the viewer does not handle. */
    int w1, h1;
    if (!preprocess_fixed_size(&src->prep, &w1, &h1)) {
        snprintf(err, sizeof err, "store %s: preprocessing without a crop gives inputs of varying size, which the viewer does not support", store_dir);
        goto no_model;
    }
    src->in_w = w1;
    src->in_h = h1;
    src->grid_w = w1 / src->patch;
    src->grid_h = h1 / src->patch;
    if (src->grid_w * src->grid_h != m->n_patches) {
        snprintf(err, sizeof err, "store %s holds %d patches per image but its model gives %dx%d", store_dir, m->n_patches, src->grid_w,
                 src->grid_h);
        goto no_model;
    }
    src->store_pos = mallocCheck((size_t)(src->ds.n > 0 ? src->ds.n : 1) * sizeof(int64_t));
    for (int64_t i = 0; i < src->ds.n; i++) src->store_pos[i] = -1;
    for (int64_t p = 0; p < m->n_images; p++) {
        int64_t idx = src->store->image_index[p];
        if (src->store->status[p] == STORE_WRITTEN && idx >= 0 && idx < src->ds.n) src->store_pos[idx] = p;
    }
    src->has_model = 1;
    log_info("serve: store %s: %lld images of %s, %s ViT (%d blocks), input %dx%d", store_dir, (long long)m->n_images,
             src->data.root ? src->data.root : src->data.path, vit_family_name(src->vit.cfg.family), src->vit.cfg.n_layers, src->in_w,
             src->in_h);
    return src;
no_model:
    src->why_no_model = strdupCheck(err);
    log_warn("serve: %s; live images and on-demand renders are off for this store", err);
    return src;
}

/* ---------------------------------------------------------------- SAEs */

static double json_number(const cJSON *o, const char *key) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

static const char *json_string(const cJSON *o, const char *key) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

/* Loads top.safetensors of a visuals folder into s, checking shapes against the SAE. */
static void load_top(ViewerSae *s) {
    char *path = join(s->visuals_dir, "top.safetensors");
    SafeTensors st;
    st_open_or_die(&st, path);
    const StTensor *values = st_require(&st, "values");
    if (values->ndim != 2 || values->shape[0] != s->S)
        saev_usage_fail("serve: %s: `values` should be [%d, top_k] for %s", path, s->S, s->ckpt);
    s->top_k = (int)values->shape[1];
    int64_t shape2[2] = {s->S, s->top_k}, shape1[1] = {s->S};
    s->top_values = st_load_f32(&st, "values", 2, shape2);
    const StTensor *images = st_require(&st, "images");
    if (images->dtype != ST_I64 || images->ndim != 2 || images->shape[0] != s->S || images->shape[1] != s->top_k)
        saev_usage_fail("serve: %s: `images` should be I64 [%d, %d]", path, s->S, s->top_k);
    /* visuals lists store positions; the viewer speaks of data-set images (image_index). */
    s->top_images = mallocCheck(images->nbytes);
    memcpy(s->top_images, images->data, images->nbytes);
    const Store *store = s->src->store;
    for (int64_t e = 0; e < images->numel; e++) {
        int64_t pos = s->top_images[e];
        if (pos < -1 || pos >= store->meta.n_images)
            saev_usage_fail("serve: %s: `images` holds %lld, not a position in store %s (%lld images)", path, (long long)pos,
                            s->src->store_dir, (long long)store->meta.n_images);
        if (pos >= 0) s->top_images[e] = store->image_index[pos];
    }
    s->freq = st_load_f32(&st, "freq", 1, shape1);
    s->mean_value = st_load_f32(&st, "mean_value", 1, shape1);
    s->max_value = st_load_f32(&st, "max_value", 1, shape1);
    st_close(&st);
    free(path);
    s->rendered = callocCheck((size_t)s->S, 1);
    char sub[64];
    for (int j = 0; j < s->S; j++) {
        snprintf(sub, sizeof sub, "latents/%d", j);
        char *p = join(s->visuals_dir, sub);
        s->rendered[j] = (uint8_t)is_dir(p);
        free(p);
    }
}

static void sae_open(Viewer *v, ViewerSae *s, const char *ckpt, const char *visuals_dir) {
    memset(s, 0, sizeof *s);
    s->ckpt = strdupCheck(ckpt);
    s->name = strdupCheck(ckpt);
    s->visuals_dir = visuals_dir ? strdupCheck(visuals_dir) : NULL;
    s->l0 = s->nmse = NAN;
    s->layer = CFG_UNSET_INT;
    pthread_mutex_init(&s->hist_lock, NULL);
    char *store = NULL;
    /* Where the SAE's rows came from: the visuals index, else training's resolved config. */
    if (visuals_dir) {
        char *ip = join(visuals_dir, "index.json");
        char *text = read_file(ip, NULL, NULL, 0);
        cJSON *j = text ? cJSON_Parse(text) : NULL;
        if (j) {
            const char *st = json_string(j, "data");
            if (!st) st = json_string(j, "store");
            if (st) store = strdupCheck(st);
            double layer = json_number(j, "layer");
            if (!isnan(layer)) s->layer = (int64_t)layer;
            const char *tok = json_string(j, "tokens");
            if (tok) s->tokens = strdupCheck(tok);
        }
        cJSON_Delete(j);
        free(text);
        free(ip);
    }
    char *dir = dir_of(ckpt);
    char *resolved = join(dir, "config.resolved.yaml");
    if (!store && is_file(resolved)) {
        CfgError cerr;
        CfgDoc *doc = cfg_parse_file(resolved, &cerr);
        SaevConfig cfg;
        memset(&cfg, 0, sizeof cfg);
        if (!doc || cfg_bind(doc, &saev_config_schema, &cfg, &cerr)) saev_usage_fail("serve: %s", cerr.msg);
        if (cfg.train.data) store = strdupCheck(cfg.train.data);
        s->layer = cfg.train.layer;
        if (!s->tokens && cfg.train.tokens) s->tokens = strdupCheck(cfg.train.tokens);
        cfg_free_obj(&saev_config_schema, &cfg);
        cfg_free(doc);
    }
    if (!store)
        saev_usage_fail("serve: %s: cannot tell which activation store it was trained on (no %s with train.data, no visuals index.json)",
                        ckpt, resolved);
    if (!s->tokens) s->tokens = strdupCheck("patches");
    free(resolved);

    sae_checkpoint_load(&s->sae, ckpt, 1);
    s->d = s->sae.cfg.d_model;
    s->S = s->sae.cfg.d_sae;
    s->src = source_open(v, store);
    const StoreMeta *m = &s->src->store->meta;
    if (m->d_model != s->d) saev_usage_fail("serve: %s has d_model %d but store %s holds width %d", ckpt, s->d, store, m->d_model);
    /* The block: as data_source.h resolves train.layer (negative from the ViT's end). */
    int64_t block = s->layer;
    if (block == CFG_UNSET_INT) {
        if (m->n_layers != 1) saev_usage_fail("serve: %s: store %s holds several layers and nothing says which one the SAE saw", ckpt, store);
        block = m->layers[0];
    } else if (block < 0) {
        if (!s->src->has_model) saev_usage_fail("serve: %s: layer %lld counts from the ViT's end, but the ViT cannot be opened (%s)", ckpt,
                                                (long long)block, s->src->why_no_model);
        block += s->src->vit.cfg.n_layers;
    }
    s->block = (int)block;
    s->layer_idx = -1;
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i] == block) s->layer_idx = i;
    if (s->layer_idx < 0) saev_usage_fail("serve: %s: block %lld is not in store %s", ckpt, (long long)block, store);
    free(store);

    s->dec_norm = mallocCheck((size_t)s->S * sizeof(double));
    for (int j = 0; j < s->S; j++) {
        double n2 = 0;
        for (int i = 0; i < s->d; i++) n2 += (double)s->sae.p.w_dec[(size_t)j * s->d + i] * s->sae.p.w_dec[(size_t)j * s->d + i];
        s->dec_norm[j] = sqrt(n2);
    }
    if (visuals_dir) load_top(s);
    char *ep = join(dir, "eval.json");
    char *text = read_file(ep, NULL, NULL, 0);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    if (j) {
        s->l0 = json_number(j, "l0");
        s->nmse = json_number(j, "nmse");
    }
    cJSON_Delete(j);
    free(text);
    free(ep);
    free(dir);
    log_info("serve: SAE %s (%d latents, block %d)%s%s", ckpt, s->S, s->block, visuals_dir ? ", visuals " : ", no visuals",
             visuals_dir ? visuals_dir : "");
}

/* The checkpoint a visuals folder belongs to: index.json's `sae` (or `checkpoint`), else
 * the sae.safetensors of the folder above (visuals/ beside the checkpoint). */
static char *visuals_checkpoint(const char *vdir) {
    char *ip = join(vdir, "index.json");
    char *text = read_file(ip, NULL, NULL, 0);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    if (text && !j) saev_usage_fail("serve: %s: not valid JSON", ip);
    char *ckpt = NULL;
    const char *p = j ? json_string(j, "sae") : NULL;
    if (!p && j) p = json_string(j, "checkpoint");
    if (p) ckpt = strdupCheck(p);
    cJSON_Delete(j);
    free(text);
    if (!ckpt) {
        char *up = dir_of(vdir);
        ckpt = join(up, "sae.safetensors");
        free(up);
    }
    if (!is_file(ckpt)) saev_usage_fail("serve: %s: its checkpoint %s is missing", vdir, ckpt);
    free(ip);
    return ckpt;
}

/* Without serve.probe, the panel's probe is one found under the served folders: of those
 * that read the ViT's activations (a probe of SAE codes answers for that SAE alone), the
 * one on the deepest block (the most of the ViT an edit runs through), first by path. An
 * unreadable one is skipped with a warning. */
static void probe_pick(Viewer *v, const PathList *found) {
    int best = -1;
    Probe p;
    char err[2048];
    for (int i = 0; i < found->n; i++) {
        if (probe_load(&p, found->v[i], err, sizeof err)) { log_warn("serve: skipping %s", err); continue; }
        if (!p.use_sae && (best < 0 || p.block > v->probe.block)) {
            if (best >= 0) probe_free(&v->probe);
            v->probe = p;
            best = i;
        } else {
            probe_free(&p);
        }
    }
    if (best < 0) return;
    v->has_probe = 1;
    log_info("serve: the intervention panel reads %s (block %d, %s probe), found under the served folders; --probe PATH chooses another",
             found->v[best], v->probe.block, v->probe.is_patch ? "patch" : "class");
}

void viewer_load(Viewer *v, const ServeConfig *cfg) {
    memset(v, 0, sizeof *v);
    v->cfg = cfg;
    if (cfg->dirs.n == 0) saev_usage_fail("serve: no directory given (saev serve DIR...: visuals outputs or run directories)");
    PathList visuals = {0}, ckpts = {0}, probes = {0};
    for (int i = 0; i < cfg->dirs.n; i++) {
        const char *d = cfg->dirs.s[i];
        if (!is_dir(d)) saev_usage_fail("serve: %s: not a directory", d);
        size_t before = (size_t)(visuals.n + ckpts.n + probes.n);
        walk(d, 0, &visuals, &ckpts, &probes);
        if ((size_t)(visuals.n + ckpts.n + probes.n) == before)
            saev_usage_fail("serve: %s: no visuals output (top.safetensors), sae.safetensors or probe.safetensors under it", d);
    }
    if (visuals.n + ckpts.n == 0) saev_usage_fail("serve: no visuals output (top.safetensors) or sae.safetensors under %s%s", cfg->dirs.s[0], cfg->dirs.n > 1 ? " or the other folders" : "");
    /* Pair each checkpoint with at most one visuals folder (the first found). */
    PathList pair_ckpt = {0}, pair_vis = {0};
    for (int i = 0; i < visuals.n; i++) {
        char *c = visuals_checkpoint(visuals.v[i]);
        paths_push(&pair_ckpt, c);
        paths_push(&pair_vis, visuals.v[i]);
        free(c);
    }
    for (int i = 0; i < ckpts.n; i++) {
        char *dir = dir_of(ckpts.v[i]);
        char *vdir = join(dir, "visuals");
        char *top = join(vdir, "top.safetensors");
        paths_push(&pair_ckpt, ckpts.v[i]);
        paths_push(&pair_vis, is_file(top) ? vdir : "");
        free(dir);
        free(vdir);
        free(top);
    }
    v->saes = callocCheck((size_t)pair_ckpt.n, sizeof(ViewerSae));
    char **seen = callocCheck((size_t)pair_ckpt.n, sizeof(char *));
    for (int i = 0; i < pair_ckpt.n; i++) {
        char *real = realpath(pair_ckpt.v[i], NULL);
        if (!real) saev_usage_fail("serve: %s: %s", pair_ckpt.v[i], strerror(errno));
        int dup = 0;
        for (int k = 0; k < v->n_sae; k++) dup |= !strcmp(seen[k], real);
        if (dup) { free(real); continue; }
        seen[v->n_sae] = real;
        sae_open(v, &v->saes[v->n_sae], pair_ckpt.v[i], pair_vis.v[i][0] ? pair_vis.v[i] : NULL);
        v->n_sae++;
    }
    for (int k = 0; k < v->n_sae; k++) free(seen[k]);
    free(seen);
    if (cfg->probe) {
        if (!is_file(cfg->probe)) saev_usage_fail("serve.probe: %s: not found (probe.safetensors of saev probe)", cfg->probe);
        probe_load_or_die(&v->probe, cfg->probe);
        if (v->probe.use_sae) {
            if (!is_file(v->probe.sae_path)) saev_usage_fail("serve.probe: %s reads the codes of %s, which is not found", cfg->probe, v->probe.sae_path);
            sae_checkpoint_load(&v->probe_sae, v->probe.sae_path, 1);
        }
        v->has_probe = 1;
    } else if (probes.n > 0) {
        probe_pick(v, &probes);
    }
    PathList *lists[5] = {&visuals, &ckpts, &pair_ckpt, &pair_vis, &probes};
    for (int l = 0; l < 5; l++) {
        for (int i = 0; i < lists[l]->n; i++) free(lists[l]->v[i]);
        free(lists[l]->v);
    }
}

void viewer_free(Viewer *v) {
    for (int i = 0; i < v->n_sae; i++) {
        ViewerSae *s = &v->saes[i];
        sae_destroy(&s->sae);
        free(s->name); free(s->ckpt); free(s->visuals_dir); free(s->tokens); free(s->dec_norm);
        free(s->top_values); free(s->top_images); free(s->freq); free(s->mean_value); free(s->max_value);
        free(s->rendered); free(s->hist);
        pthread_mutex_destroy(&s->hist_lock);
    }
    free(v->saes);
    for (int i = 0; i < v->n_sources; i++) {
        ViewerSource *src = v->sources[i];
        store_close(src->store);
        if (src->has_model) vit_free(&src->vit);
        dataset_free(&src->ds);
        if (src->config) saev_config_free(src->config, 1);
        free(src->store_pos);
        free(src->why_no_model);
        free(src->store_dir);
        free(src);
    }
    free(v->sources);
    free(v->web_dir);
    if (v->has_probe) {
        if (v->probe.use_sae) sae_destroy(&v->probe_sae);
        probe_free(&v->probe);
    }
}
