/*
 * visuals.c: the `saev visuals` stage (definitions and formats in visuals.h). Three
 * phases per run, all collective on the communicator:
 *   1. the encode pass: every rank reads its whole global batches of images once, runs
 *      them through every SAE and adds each image to that SAE's LatentStats; the stats
 *      merge exactly and rank 0 writes top.safetensors (skipped for an SAE whose
 *      top.safetensors from the same run is already there);
 *   2. the choice of rendered latents (the same on every rank, from the merged stats);
 *   3. rendering (render_sae): the rendered latents' top images dealt to ranks, each
 *      decoded and re-encoded once; rank 0 gathers the patch values and writes the JSON
 *      files and summary.svg, index.json last.
 */
#include "visuals.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <errno.h>
#include <unistd.h>

#include "check.h"
#include "fsutil.h"
#include "image/preprocess.h"
#include "latent_stats.h"
#include "log.h"
#include "render.h"
#include "sae/checkpoint.h"
#include "sae/data_source.h"
#include "sae/evaluate.h"
#include "sae/rng.h"
#include "safetensors.h"
#include "saev_config.h"
#include "store/store.h"
#include "summary_svg.h"

/* ---------------------------------------------------------------- plan */

/* What a run works on, checked before anything is written. */
typedef struct {
    int n_sae;
    char **ckpt;       // [n_sae] checkpoint files
    char **out_dir;    // [n_sae] their output folders
    Store *store;      // the store, opened for reading (meta, status, image_index, label)
    int n_tok;         // rows per image under `tokens`
    int64_t n_used;    // images the store holds written (the rows' images)
    int64_t *used;     // [n_used] their store positions, ascending
    int64_t n_rows;    // n_used · n_tok
    int d;             // row width
} VisPlan;

static void vis_plan_or_die(const VisualsConfig *c, VisPlan *p) {
    memset(p, 0, sizeof *p);
    if (c->sae.n == 0) saev_usage_fail("visuals.sae: no checkpoint given (a list of sae.safetensors files or run directories)");
    if (!c->data) saev_usage_fail("visuals.data: not set (an activation store directory)");
    if (!store_path_is_store(c->data)) saev_usage_fail("visuals.data: %s: not an activation store (a directory holding acts-000000.h5)", c->data);
    p->n_sae = eval_resolve_checkpoints(&c->sae, "visuals.sae", &p->ckpt);
    DataSource *src = data_source_open_store("visuals", c->data, c->layer, c->tokens); /* checks layer, tokens, completeness */
    p->d = src->d;
    p->n_rows = src->n_rows;
    data_source_close(src);
    char err[1024];
    p->store = store_open_read(c->data, err, sizeof err);
    if (!p->store) saev_usage_fail("visuals.data: %s", err);
    const StoreMeta *m = &p->store->meta;
    p->n_tok = !strcmp(c->tokens, "cls") ? 1 : !strcmp(c->tokens, "all") ? m->n_tokens : m->n_patches;
    p->used = mallocCheck((size_t)(m->n_images > 0 ? m->n_images : 1) * sizeof(int64_t));
    for (int64_t i = 0; i < m->n_images; i++)
        if (p->store->status[i] == STORE_WRITTEN) p->used[p->n_used++] = i;
    if (p->n_used * p->n_tok != p->n_rows) saev_fail("visuals: %s: %" PRId64 " rows but %" PRId64 " images of %d tokens", c->data, p->n_rows, p->n_used, p->n_tok);
    for (int i = 0; i < p->n_sae; i++) {
        int d = eval_checkpoint_d_model("visuals.sae", p->ckpt[i]);
        if (d != p->d) saev_usage_fail("visuals: %s has d_model %d but the store %s has d_model %d", p->ckpt[i], d, c->data, p->d);
    }
    p->out_dir = mallocCheck((size_t)p->n_sae * sizeof(char *));
    for (int i = 0; i < p->n_sae; i++) p->out_dir[i] = eval_out_dir(c->out, p->n_sae, i, p->ckpt[i], "visuals");
}

static void vis_plan_free(VisPlan *p) {
    for (int i = 0; i < p->n_sae; i++) { free(p->ckpt[i]); free(p->out_dir[i]); }
    free(p->ckpt); free(p->out_dir); free(p->used);
    if (p->store) store_close(p->store);
    memset(p, 0, sizeof *p);
}

/* Checks the latent ids against d_sae. */
static void check_latents(const VisualsConfig *c, const char *ckpt, int S) {
    for (int i = 0; i < c->latents.n; i++)
        if (c->latents.i[i] >= S) saev_usage_fail("visuals.latents: %" PRId64 " is not a latent of %s (d_sae %d)", c->latents.i[i], ckpt, S);
}

void visuals_check_or_die(const VisualsConfig *c) {
    VisPlan p;
    vis_plan_or_die(c, &p);
    for (int i = 0; i < p.n_sae; i++) {
        Sae sae;
        sae_checkpoint_load(&sae, p.ckpt[i], 1);
        check_latents(c, p.ckpt[i], sae.cfg.d_sae);
        sae_destroy(&sae);
    }
    vis_plan_free(&p);
}

/* ---------------------------------------------------------------- top.safetensors */

/* The merged result of the pass for one SAE (what top.safetensors holds). */
typedef struct {
    int S, top_k;
    float *values;     // [S, top_k]
    int64_t *images;   // [S, top_k]
    float *freq;       // [S]
    float *mean_value; // [S]
    float *max_value;  // [S]
} TopResult;

static void top_alloc(TopResult *t, int S, int top_k) {
    t->S = S, t->top_k = top_k;
    t->values = mallocCheck((size_t)S * top_k * sizeof(float));
    t->images = mallocCheck((size_t)S * top_k * sizeof(int64_t));
    t->freq = mallocCheck((size_t)S * sizeof(float));
    t->mean_value = mallocCheck((size_t)S * sizeof(float));
    t->max_value = mallocCheck((size_t)S * sizeof(float));
}

static void top_free(TopResult *t) {
    free(t->values); free(t->images); free(t->freq); free(t->mean_value); free(t->max_value);
    memset(t, 0, sizeof *t);
}

static void top_from_stats(TopResult *t, const LatentStats *ls, int64_t n_rows) {
    top_alloc(t, ls->S, ls->top_k);
    for (size_t i = 0; i < (size_t)ls->S * ls->top_k; i++) {
        t->values[i] = (float)ls->top[i].score;
        t->images[i] = ls->top[i].image;
    }
    for (int s = 0; s < ls->S; s++) {
        t->freq[s] = (float)((double)ls->fired[s] / (double)n_rows);
        t->mean_value[s] = ls->fired[s] ? (float)(latent_stats_sum(ls, s) / (double)ls->fired[s]) : NAN;
        t->max_value[s] = ls->fired[s] ? ls->max_value[s] : NAN;
    }
}

/* The metadata that identifies a run's pass: a rerun reuses top.safetensors only when all match. */
typedef struct {
    const char *key;
    char value[4200];
} MetaItem;
enum { META_N = 10 };

static void run_meta(const VisualsConfig *c, const VisPlan *p, int i, MetaItem *m) {
    struct stat sb;
    long long bytes = stat(p->ckpt[i], &sb) == 0 ? (long long)sb.st_size : -1;
    const char *keys[META_N] = {"format", "checkpoint", "store", "layer", "tokens", "top_k", "n_rows", "n_images", "checkpoint_bytes", "batch_size"};
    for (int k = 0; k < META_N; k++) m[k].key = keys[k];
    snprintf(m[0].value, sizeof m[0].value, "%s", VISUALS_FORMAT);
    snprintf(m[1].value, sizeof m[1].value, "%s", p->ckpt[i]);
    snprintf(m[2].value, sizeof m[2].value, "%s", c->data);
    if (c->layer == CFG_UNSET_INT) snprintf(m[3].value, sizeof m[3].value, "null");
    else snprintf(m[3].value, sizeof m[3].value, "%" PRId64, c->layer);
    snprintf(m[4].value, sizeof m[4].value, "%s", c->tokens);
    snprintf(m[5].value, sizeof m[5].value, "%" PRId64, c->top_k);
    snprintf(m[6].value, sizeof m[6].value, "%" PRId64, p->n_rows);
    snprintf(m[7].value, sizeof m[7].value, "%" PRId64, p->n_used);
    snprintf(m[8].value, sizeof m[8].value, "%lld", bytes);
    snprintf(m[9].value, sizeof m[9].value, "%" PRId64, c->batch_size);
}

static void top_write(const TopResult *t, const MetaItem *meta, const char *path) {
    StWriter w;
    st_writer_init(&w);
    int64_t sk[2] = {t->S, t->top_k}, s1[1] = {t->S};
    st_writer_add(&w, "values", ST_F32, 2, sk, t->values);
    st_writer_add(&w, "images", ST_I64, 2, sk, t->images);
    st_writer_add(&w, "freq", ST_F32, 1, s1, t->freq);
    st_writer_add(&w, "mean_value", ST_F32, 1, s1, t->mean_value);
    st_writer_add(&w, "max_value", ST_F32, 1, s1, t->max_value);
    for (int k = 0; k < META_N; k++) st_writer_meta(&w, meta[k].key, meta[k].value);
    st_writer_write_or_die(&w, path);
    st_writer_free(&w);
}

/* Loads a finished pass when top.safetensors exists and its metadata matches; 0 otherwise. */
static int top_read_if_current(TopResult *t, const MetaItem *meta, const char *path, int S, int top_k) {
    struct stat sb;
    if (stat(path, &sb) != 0) return 0;
    SafeTensors st;
    char err[1024];
    if (st_open(&st, path, err, sizeof err)) { log_warn("visuals: %s is unreadable (%s); computing it again", path, err); return 0; }
    for (int k = 0; k < META_N; k++) {
        const char *v = st_meta(&st, meta[k].key);
        if (!v || strcmp(v, meta[k].value)) { st_close(&st); return 0; }
    }
    top_alloc(t, S, top_k);
    int64_t sk[2] = {S, top_k}, s1[1] = {S};
    const StTensor *im = st_require(&st, "images");
    if (im->dtype != ST_I64 || im->ndim != 2 || im->shape[0] != S || im->shape[1] != top_k) saev_fail("visuals: %s: `images` is not I64 [%d, %d]", path, S, top_k);
    memcpy(t->images, im->data, (size_t)S * top_k * sizeof(int64_t));
    float *v = st_load_f32(&st, "values", 2, sk);
    memcpy(t->values, v, (size_t)S * top_k * sizeof(float)); free(v);
    float *fq = st_load_f32(&st, "freq", 1, s1), *mv = st_load_f32(&st, "mean_value", 1, s1), *mx = st_load_f32(&st, "max_value", 1, s1);
    memcpy(t->freq, fq, (size_t)S * sizeof(float));
    memcpy(t->mean_value, mv, (size_t)S * sizeof(float));
    memcpy(t->max_value, mx, (size_t)S * sizeof(float));
    free(fq); free(mv); free(mx);
    st_close(&st);
    return 1;
}

/* ---------------------------------------------------------------- the encode pass */

/* Scales rows by the checkpoint's data_scale into xs (or returns x) and encodes them. */
static void encode_rows(Sae *sae, const float *x, float *xs, int n, int d, float *f, float *x_hat) {
    const float *xi = x;
    if (sae->data_scale != 1.0f) {
        for (size_t e = 0; e < (size_t)n * d; e++) xs[e] = x[e] * sae->data_scale;
        xi = xs;
    }
    sae_encode_decode_eval(sae, xi, n, f, x_hat);
}

/* Phase 1 for the SAEs with todo[i] set: stats[i] filled and merged on every rank. */
static void encode_pass(const VisualsConfig *c, const VisPlan *p, Sae *saes, const int *todo, LatentStats *stats, const Comm *comm) {
    int rank = comm->rank, size = comm->size;
    int T = p->n_tok, d = p->d, max_S = 0;
    for (int i = 0; i < p->n_sae; i++)
        if (todo[i] && saes[i].cfg.d_sae > max_S) max_S = saes[i].cfg.d_sae;
    /* Whole global batches of images per rank, so a row is encoded in the same batch
     * (and so to the same bits) whatever the number of ranks. */
    int64_t per_batch = c->batch_size / T > 0 ? c->batch_size / T : 1;
    int64_t n_batches = (p->n_used + per_batch - 1) / per_batch;
    int64_t b0 = n_batches * rank / size, b1 = n_batches * (rank + 1) / size;
    int64_t img_lo = b0 * per_batch, img_hi = b1 * per_batch < p->n_used ? b1 * per_batch : p->n_used;
    size_t rows_cap = (size_t)per_batch * T;
    float *x = mallocCheck(rows_cap * d * sizeof(float)), *xs = mallocCheck(rows_cap * d * sizeof(float));
    float *x_hat = mallocCheck(rows_cap * d * sizeof(float)), *f = mallocCheck(rows_cap * max_S * sizeof(float));
    DataSource *src = data_source_open_store("visuals", c->data, c->layer, c->tokens);
    Progress prog;
    progress_start(&prog, "tokens", (img_hi - img_lo) * T);
    for (int64_t img = img_lo; img < img_hi; img += per_batch) {
        int64_t n_img = img_hi - img < per_batch ? img_hi - img : per_batch;
        int n = (int)(n_img * T);
        src->read_range(src, img * T, n, x);
        for (size_t e = 0; e < (size_t)n * d; e++)
            if (!isfinite(x[e])) saev_fail("%s: row %" PRId64 " holds NaN or Inf", c->data, img * T + (int64_t)(e / (size_t)d));
        for (int i = 0; i < p->n_sae; i++) {
            if (!todo[i]) continue;
            int S = saes[i].cfg.d_sae;
            encode_rows(&saes[i], x, xs, n, d, f, x_hat);
            for (int64_t m = 0; m < n_img; m++) latent_stats_add_image(&stats[i], f + (size_t)m * T * S, T, p->used[img + m]);
            latent_stats_normalize(&stats[i]); /* limbs take 2^31 additions between carries; a batch holds fewer rows */
        }
        progress_update(&prog, (img + n_img - img_lo) * T);
    }
    progress_finish(&prog);
    data_source_close(src);
    for (int i = 0; i < p->n_sae; i++)
        if (todo[i]) latent_stats_allreduce(&stats[i], comm);
    free(x); free(xs); free(x_hat); free(f);
}

/* ---------------------------------------------------------------- rendered latents */

/* visuals.latents plus the seeded sample (visuals.h); *out ascending, returns the count. */
static int choose_latents(const VisualsConfig *c, const TopResult *t, int **out) {
    int S = t->S;
    char *chosen = callocCheck((size_t)S, 1);
    for (int i = 0; i < c->latents.n; i++) chosen[c->latents.i[i]] = 1;
    int *cand = mallocCheck((size_t)S * sizeof(int)), n_cand = 0;
    for (int s = 0; s < S; s++) {
        if (chosen[s] || !(t->freq[s] > 0) || !(t->mean_value[s] > 0)) continue;
        double lf = log10(t->freq[s]), lv = log10(t->mean_value[s]);
        if (lf > c->log_freq_range.f[0] && lf < c->log_freq_range.f[1] && lv > c->log_value_range.f[0] && lv < c->log_value_range.f[1])
            cand[n_cand++] = s;
    }
    int take = c->n_render < n_cand ? (int)c->n_render : n_cand;
    uint64_t rng = (uint64_t)c->seed;
    for (int i = 0; i < take; i++) { /* partial Fisher-Yates: cand[0..take) is the sample */
        int j = i + (int)rng_below(&rng, (uint64_t)(n_cand - i));
        int tmp = cand[i]; cand[i] = cand[j]; cand[j] = tmp;
    }
    for (int i = 0; i < take; i++) chosen[cand[i]] = 1;
    int n = 0;
    *out = mallocCheck((size_t)(S > 0 ? S : 1) * sizeof(int));
    for (int s = 0; s < S; s++)
        if (chosen[s]) (*out)[n++] = s;
    free(chosen);
    free(cand);
    return n;
}

/* ---------------------------------------------------------------- images */

/* The data set and preprocessing the store's images came from. */
typedef struct {
    Dataset ds;
    PreprocessSpec pre;
    int64_t max_pixels;
    char *description; // for index.json
} ImageSource;

/* need_images = 0 (nothing to render): a store that does not record its data set is
 * fine, the top images are then listed without paths. */
static void image_source_open(ImageSource *is, const Store *store, const DataConfig *data, int need_images) {
    memset(is, 0, sizeof *is);
    const StoreMeta *m = &store->meta;
    SaevConfig recorded;
    char err[1024];
    int have_recorded = saev_config_recorded(m->config_yaml, store->dir, &recorded, err, sizeof err) == 0;
    if (!have_recorded && m->config_yaml && need_images) log_warn("visuals: %s", err);
    const DataConfig *dc = data && (data->root || data->path) ? data : have_recorded ? &recorded.data : NULL;
    if ((!dc || !(dc->root || dc->path)) && !need_images) {
        is->description = strdupCheck(m->dataset ? m->dataset : "");
        if (have_recorded) cfg_free_obj(&saev_config_schema, &recorded);
        return;
    }
    if (!dc || !(dc->root || dc->path))
        saev_usage_fail("visuals: store %s does not record its data set; give it in the config's data: section (or render nothing: visuals.n_render 0)", store->dir);
    DataSpec spec;
    if (data_resolve(dc, &spec, err, sizeof err)) saev_usage_fail("visuals: data: %s", err);
    if (dataset_open(&spec, &is->ds, err, sizeof err)) saev_fail("visuals: the store's images: %s", err);
    is->max_pixels = spec.max_pixels;
    if (saev_config_recorded_preprocess(have_recorded ? &recorded : NULL, m->model_family, &is->pre, err, sizeof err)) saev_fail("visuals: store %s: preprocess: %s", store->dir, err);
    is->description = strdupCheck(m->dataset ? m->dataset : "");
    if (have_recorded) cfg_free_obj(&saev_config_schema, &recorded);
}

static void image_source_close(ImageSource *is) {
    dataset_free(&is->ds);
    free(is->description);
}

/* Store image `pos` decoded and resized/cropped as the model saw it: out [h, w, 3] malloc'd. */
static uint8_t *image_as_seen(const ImageSource *is, const Store *store, int64_t pos, int *w, int *h) {
    int64_t di = store->image_index[pos];
    if (di < 0 || di >= is->ds.n) saev_fail("visuals: store image %" PRId64 " has data set index %" PRId64 ", outside the data set (%" PRId64 " images)", pos, di, is->ds.n);
    Image8 im;
    char err[1024];
    if (decode_rgb_file(is->ds.paths[di], is->max_pixels, &im, err, sizeof err)) saev_fail("visuals: store image %" PRId64 ": %s", pos, err);
    preprocess_out_size(&is->pre, im.w, im.h, w, h);
    uint8_t *out = mallocCheck((size_t)*w * *h * 3);
    preprocess_u8(&is->pre, is->pre.interp, &im, out);
    image8_free(&im);
    return out;
}

/* ---------------------------------------------------------------- rendering */

typedef struct {
    int s, j;      // latent and rank in its top list
    int64_t image; // store position
} Pair;

static int cmp_pair_image(const void *a, const void *b) {
    const Pair *x = a, *y = b;
    return x->image < y->image ? -1 : x->image > y->image ? 1 : x->s != y->s ? x->s - y->s : x->j - y->j;
}

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static cJSON *number_or_null(double v) { return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); }

/* Phase 3 for one SAE: PNGs of the rendered latents' top images on every rank, then
 * rank 0 writes the latent.json files, summary.svg and index.json. */
static void render_sae(const VisualsConfig *c, const VisPlan *p, int i, Sae *sae, const TopResult *t, const ImageSource *is,
                       int fresh, const Comm *comm) {
    int rank = comm->rank, size = comm->size;
    const StoreMeta *m = &p->store->meta;
    const char *out = p->out_dir[i];
    int S = t->S, K = t->top_k, P = m->n_patches, d = p->d;
    int *rendered, n_rendered = choose_latents(c, t, &rendered);

    /* Latents still to render (all after a new pass, else those whose latent.json is
     * missing), decided by rank 0 for everyone. */
    char *need = callocCheck((size_t)(n_rendered > 0 ? n_rendered : 1), 1);
    if (rank == 0) {
        for (int r = 0; r < n_rendered; r++) {
            char path[4400];
            snprintf(path, sizeof path, "%s/latents/%d/latent.json", out, rendered[r]);
            need[r] = fresh || !file_exists(path);
            if (need[r]) {
                snprintf(path, sizeof path, "%s/latents/%d", out, rendered[r]);
                make_dirs_or_die(path);
            }
        }
    }
    mpiCheck(MPI_Bcast(need, n_rendered, MPI_CHAR, 0, comm->mpi));

    Pair *pairs = mallocCheck((size_t)(n_rendered * K > 0 ? n_rendered * K : 1) * sizeof(Pair));
    int n_pairs = 0;
    for (int r = 0; r < n_rendered; r++)
        for (int j = 0; j < K && need[r]; j++)
            if (t->images[(size_t)rendered[r] * K + j] >= 0) pairs[n_pairs++] = (Pair){rendered[r], j, t->images[(size_t)rendered[r] * K + j]};
    /* patch[k] for the pair at index k of the list in (latent, rank) order. */
    float *patch = callocCheck((size_t)(n_pairs > 0 ? n_pairs : 1) * (P > 0 ? P : 1), sizeof(float));
    int *pair_slot = mallocCheck((size_t)(n_pairs > 0 ? n_pairs : 1) * sizeof(int));
    Pair *by_image = mallocCheck((size_t)(n_pairs > 0 ? n_pairs : 1) * sizeof(Pair));
    memcpy(by_image, pairs, (size_t)n_pairs * sizeof(Pair));
    qsort(by_image, (size_t)n_pairs, sizeof(Pair), cmp_pair_image);
    /* Index of each by_image entry in `pairs`: pairs are in (latent asc, j asc) order. */
    for (int k = 0; k < n_pairs; k++) {
        int lo = 0, hi = n_pairs - 1;
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            if (pairs[mid].s < by_image[k].s || (pairs[mid].s == by_image[k].s && pairs[mid].j < by_image[k].j)) lo = mid + 1;
            else hi = mid;
        }
        pair_slot[k] = lo;
    }
    int64_t n_unique = 0;
    int64_t *first = mallocCheck((size_t)(n_pairs + 1) * sizeof(int64_t)); /* first pair of each unique image */
    for (int k = 0; k < n_pairs; k++)
        if (k == 0 || by_image[k].image != by_image[k - 1].image) first[n_unique++] = k;
    first[n_unique] = n_pairs;

    /* This rank's share of the unique images. */
    int64_t u0 = n_unique * rank / size, u1 = n_unique * (rank + 1) / size;
    int64_t *row_of = callocCheck((size_t)(m->n_images > 0 ? m->n_images : 1), sizeof(int64_t)); /* store position -> used index */
    for (int64_t u = 0; u < p->n_used; u++) row_of[p->used[u]] = u;
    DataSource *src = P > 0 ? data_source_open_store("visuals", c->data, c->layer, "patches") : NULL;
    float *x = mallocCheck((size_t)(P > 0 ? P : 1) * d * sizeof(float)), *xs = mallocCheck((size_t)(P > 0 ? P : 1) * d * sizeof(float));
    float *x_hat = mallocCheck((size_t)(P > 0 ? P : 1) * d * sizeof(float)), *f = mallocCheck((size_t)(P > 0 ? P : 1) * S * sizeof(float));
    uint8_t *labels = m->has_patch_labels ? mallocCheck((size_t)P) : NULL;
    /* The geometry index.json reports, from one image (rank 0 decodes it; the model's
     * input has the same size for every image under a cropping pipeline). */
    int sizes[6] = {0, 0, 0, 0, 0, 0}; /* grid h, w; image h, w; png h, w */
    if (rank == 0 && is->ds.n > 0) { /* no data set (nothing rendered): sizes stay 0 */
        int w, h;
        free(image_as_seen(is, p->store, n_pairs > 0 ? by_image[0].image : p->used[0], &w, &h));
        int patch_px = P > 0 ? (int)lrint(sqrt((double)w * h / P)) : 0;
        int uf = render_upscale(w, h);
        sizes[0] = patch_px > 0 ? h / patch_px : 0, sizes[1] = patch_px > 0 ? w / patch_px : 0;
        sizes[2] = h, sizes[3] = w, sizes[4] = h * uf, sizes[5] = w * uf;
    }
    mpiCheck(MPI_Bcast(sizes, 6, MPI_INT, 0, comm->mpi));
    int grid_h = 0, grid_w = 0;
    double t_render = saev_now();
    Progress prog;
    progress_start(&prog, "images", u1 - u0);
    for (int64_t u = u0; u < u1; u++) {
        int64_t pos = by_image[first[u]].image;
        int w, h;
        uint8_t *rgb = image_as_seen(is, p->store, pos, &w, &h);
        if (P > 0) {
            int patch_px = (int)lrint(sqrt((double)w * h / P));
            grid_w = patch_px > 0 ? w / patch_px : 0, grid_h = patch_px > 0 ? h / patch_px : 0;
            if (grid_w * grid_h != P || grid_w * patch_px != w || grid_h * patch_px != h)
                saev_fail("visuals: store image %" PRId64 " is %dx%d as preprocessed, which does not split into the store's %d patches", pos, w, h, P);
            src->read_range(src, row_of[pos] * P, P, x);
            encode_rows(sae, x, xs, P, d, f, x_hat);
        }
        if (labels) store_read_patch_labels(p->store, pos, 1, labels);
        int uf = render_upscale(w, h), W = w * uf, H = h * uf;
        uint8_t *plain = mallocCheck((size_t)W * H * 3), *pix = mallocCheck((size_t)W * H * 3);
        render_plain(rgb, w, h, uf, plain);
        float *a = mallocCheck((size_t)(P > 0 ? P : 1) * sizeof(float));
        char first_plain[4400] = "";
        for (int64_t k = first[u]; k < first[u + 1]; k++) {
            int s = by_image[k].s, j = by_image[k].j;
            char path[4400];
            for (int q = 0; q < P; q++) a[q] = f[(size_t)q * S + s];
            memcpy(patch + (size_t)pair_slot[k] * P, a, (size_t)P * sizeof(float));
            snprintf(path, sizeof path, "%s/latents/%d/%d.png", out, s, j);
            /* The plain picture is the same for every latent that shows this image:
             * encoded once, then hard-linked (written again where links fail). */
            if (k == first[u] || render_link(first_plain, path)) render_write_png(path, plain, W, H);
            if (k == first[u]) snprintf(first_plain, sizeof first_plain, "%s", path);
            if (P > 0) {
                render_heat(plain, W, H, grid_h, grid_w, a, t->max_value[s], pix);
                snprintf(path, sizeof path, "%s/latents/%d/%d_heat.png", out, s, j);
                render_write_png(path, pix, W, H);
            }
            if (labels) {
                render_seg(plain, W, H, grid_h, grid_w, labels, pix);
                snprintf(path, sizeof path, "%s/latents/%d/%d_seg.png", out, s, j);
                render_write_png(path, pix, W, H);
            }
        }
        free(a); free(plain); free(pix); free(rgb);
        progress_update(&prog, u + 1 - u0);
    }
    progress_finish(&prog);
    if (src) data_source_close(src);
    comm_barrier(comm);
    t_render = saev_now() - t_render;
    log_info("visuals: rendered %d pictures (%" PRId64 " distinct images decoded) in %.2f s: %.1f images/s", n_pairs, n_unique, t_render,
             t_render > 0 ? n_pairs / t_render : 0.0);

    if (size > 1 && n_pairs > 0 && P > 0) /* each slot was written by one rank, zeros elsewhere: the sum is exact */
        mpiCheck(MPI_Reduce(rank == 0 ? MPI_IN_PLACE : patch, patch, n_pairs * P, MPI_FLOAT, MPI_SUM, 0, comm->mpi));

    if (rank == 0) {
        int k = 0;
        for (int r = 0; r < n_rendered; r++) {
            if (!need[r]) continue;
            int s = rendered[r];
            cJSON *j = cJSON_CreateObject();
            cJSON_AddNumberToObject(j, "latent", s);
            cJSON_AddItemToObject(j, "freq", cJSON_CreateNumber(t->freq[s]));
            cJSON_AddItemToObject(j, "mean_value", number_or_null(t->mean_value[s]));
            cJSON_AddItemToObject(j, "max_value", number_or_null(t->max_value[s]));
            cJSON *g = cJSON_AddArrayToObject(j, "grid");
            cJSON_AddItemToArray(g, cJSON_CreateNumber(sizes[0]));
            cJSON_AddItemToArray(g, cJSON_CreateNumber(sizes[1]));
            cJSON *imgs = cJSON_AddArrayToObject(j, "images");
            for (; k < n_pairs && pairs[k].s == s; k++) {
                int64_t pos = pairs[k].image;
                int jj = pairs[k].j;
                cJSON *e = cJSON_CreateObject();
                char name[64];
                cJSON_AddNumberToObject(e, "rank", jj);
                cJSON_AddNumberToObject(e, "image", (double)pos);
                cJSON_AddNumberToObject(e, "image_index", (double)p->store->image_index[pos]);
                cJSON_AddNumberToObject(e, "label", (double)p->store->label[pos]);
                int64_t di = p->store->image_index[pos];
                cJSON_AddStringToObject(e, "path", di >= 0 && di < is->ds.n ? is->ds.paths[di] : "");
                cJSON_AddNumberToObject(e, "score", t->values[(size_t)s * K + jj]);
                snprintf(name, sizeof name, "%d.png", jj);
                cJSON_AddStringToObject(e, "png", name);
                if (P > 0) { snprintf(name, sizeof name, "%d_heat.png", jj); cJSON_AddStringToObject(e, "heat", name); }
                else cJSON_AddNullToObject(e, "heat");
                if (m->has_patch_labels) { snprintf(name, sizeof name, "%d_seg.png", jj); cJSON_AddStringToObject(e, "seg", name); }
                else cJSON_AddNullToObject(e, "seg");
                cJSON *pa = cJSON_AddArrayToObject(e, "patches");
                for (int q = 0; q < P; q++) cJSON_AddItemToArray(pa, cJSON_CreateNumber(patch[(size_t)k * P + q]));
                cJSON_AddItemToArray(imgs, e);
            }
            char path[4400];
            snprintf(path, sizeof path, "%s/latents/%d/latent.json", out, s);
            write_json_atomic_or_die(path, j);
            cJSON_Delete(j);
        }

        char path[4400];
        char *svg = summary_svg(t->freq, t->mean_value, S, c->log_freq_range.f, c->log_value_range.f, p->ckpt[i]);
        snprintf(path, sizeof path, "%s/summary.svg", out);
        write_file_atomic_or_die(path, svg, strlen(svg));
        free(svg);

        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "format", VISUALS_FORMAT);
        cJSON_AddStringToObject(j, "checkpoint", p->ckpt[i]);
        cJSON_AddStringToObject(j, "store", c->data);
        if (c->layer == CFG_UNSET_INT) cJSON_AddNullToObject(j, "layer");
        else cJSON_AddNumberToObject(j, "layer", (double)c->layer);
        cJSON *sl = cJSON_AddArrayToObject(j, "store_layers");
        for (int l = 0; l < m->n_layers; l++) cJSON_AddItemToArray(sl, cJSON_CreateNumber(m->layers[l]));
        cJSON_AddStringToObject(j, "tokens", c->tokens);
        cJSON_AddNumberToObject(j, "top_k", K);
        cJSON_AddNumberToObject(j, "n_rows", (double)p->n_rows);
        cJSON_AddNumberToObject(j, "n_images", (double)p->n_used);
        cJSON_AddNumberToObject(j, "d_model", sae->cfg.d_model);
        cJSON_AddNumberToObject(j, "d_sae", S);
        cJSON_AddStringToObject(j, "activation", sae_activation_name(sae->cfg.activation));
        if (sae->cfg.activation != SAE_RELU) cJSON_AddNumberToObject(j, "k", sae->cfg.k);
        cJSON_AddBoolToObject(j, "has_patch_labels", m->has_patch_labels);
        int pairs_of[3][2] = {{sizes[0], sizes[1]}, {sizes[2], sizes[3]}, {sizes[4], sizes[5]}};
        const char *pair_names[3] = {"grid", "image_size", "png_size"};
        for (int q = 0; q < 3; q++) {
            cJSON *a = cJSON_AddArrayToObject(j, pair_names[q]);
            cJSON_AddItemToArray(a, cJSON_CreateNumber(pairs_of[q][0]));
            cJSON_AddItemToArray(a, cJSON_CreateNumber(pairs_of[q][1]));
        }
        cJSON_AddStringToObject(j, "dataset", is->description);
        cJSON_AddNumberToObject(j, "n_render", (double)c->n_render);
        cJSON *req = cJSON_AddArrayToObject(j, "latents_requested");
        for (int q = 0; q < c->latents.n; q++) cJSON_AddItemToArray(req, cJSON_CreateNumber((double)c->latents.i[q]));
        cJSON *ren = cJSON_AddArrayToObject(j, "rendered");
        cJSON *lat = cJSON_AddArrayToObject(j, "latents");
        for (int r = 0; r < n_rendered; r++) {
            int s = rendered[r], n_img = 0;
            while (n_img < K && t->images[(size_t)s * K + n_img] >= 0) n_img++;
            cJSON_AddItemToArray(ren, cJSON_CreateNumber(s));
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "latent", s);
            cJSON_AddItemToObject(e, "freq", cJSON_CreateNumber(t->freq[s]));
            cJSON_AddItemToObject(e, "mean_value", number_or_null(t->mean_value[s]));
            cJSON_AddItemToObject(e, "max_value", number_or_null(t->max_value[s]));
            cJSON_AddNumberToObject(e, "n_images", n_img);
            cJSON_AddItemToArray(lat, e);
        }
        cJSON_AddStringToObject(j, "top", "top.safetensors");
        cJSON_AddStringToObject(j, "summary", "summary.svg");
        snprintf(path, sizeof path, "%s/index.json", out);
        write_json_atomic_or_die(path, j);
        cJSON_Delete(j);
        log_info("visuals: %s: %d latents rendered (%" PRId64 " images) -> %s/index.json", p->ckpt[i], n_rendered, n_unique, out);
    }
    free(rendered); free(need); free(pairs); free(patch); free(pair_slot); free(by_image); free(first); free(row_of);
    free(x); free(xs); free(x_hat); free(f); free(labels);
}

/* ---------------------------------------------------------------- the stage */

void visuals_run(const VisualsConfig *c, const DataConfig *data, const Comm *comm) {
    int rank = comm->rank, size = comm->size;
    VisPlan p;
    vis_plan_or_die(c, &p);
    /* Two visuals writing one folder would interleave top.safetensors and the PNGs. */
    /* The images first, so that a store without its data set fails before any output. */
    ImageSource is;
    image_source_open(&is, p.store, data, c->n_render > 0 || c->latents.n > 0);
    for (int i = 0; rank == 0 && i < p.n_sae; i++) lock_output_dir_or_die(p.out_dir[i], "saev visuals");
    int K = (int)c->top_k;
    Sae *saes = callocCheck((size_t)p.n_sae, sizeof(Sae));
    TopResult *tops = callocCheck((size_t)p.n_sae, sizeof(TopResult));
    LatentStats *stats = callocCheck((size_t)p.n_sae, sizeof(LatentStats));
    int *todo = callocCheck((size_t)p.n_sae, sizeof(int));
    MetaItem meta[META_N];
    int n_todo = 0;
    for (int i = 0; i < p.n_sae; i++) {
        sae_checkpoint_load(&saes[i], p.ckpt[i], 1);
        check_latents(c, p.ckpt[i], saes[i].cfg.d_sae);
        run_meta(c, &p, i, meta);
        char path[4400];
        snprintf(path, sizeof path, "%s/top.safetensors", p.out_dir[i]);
        int have = rank == 0 ? top_read_if_current(&tops[i], meta, path, saes[i].cfg.d_sae, K) : 0;
        mpiCheck(MPI_Bcast(&have, 1, MPI_INT, 0, comm->mpi));
        todo[i] = !have;
        if (have) {
            if (rank != 0) top_alloc(&tops[i], saes[i].cfg.d_sae, K);
            int SK = saes[i].cfg.d_sae * K, S = saes[i].cfg.d_sae;
            mpiCheck(MPI_Bcast(tops[i].values, SK, MPI_FLOAT, 0, comm->mpi));
            mpiCheck(MPI_Bcast(tops[i].images, SK, MPI_INT64_T, 0, comm->mpi));
            mpiCheck(MPI_Bcast(tops[i].freq, S, MPI_FLOAT, 0, comm->mpi));
            mpiCheck(MPI_Bcast(tops[i].mean_value, S, MPI_FLOAT, 0, comm->mpi));
            mpiCheck(MPI_Bcast(tops[i].max_value, S, MPI_FLOAT, 0, comm->mpi));
            log_info("visuals: %s: reusing %s from an earlier run", p.ckpt[i], path);
        } else {
            latent_stats_init(&stats[i], saes[i].cfg.d_sae, K);
            n_todo++;
        }
        log_info("visuals: %s (%s, d_sae %d, data_scale %g) -> %s", p.ckpt[i], sae_activation_name(saes[i].cfg.activation),
                 saes[i].cfg.d_sae, saes[i].data_scale, p.out_dir[i]);
    }
    if (n_todo) {
        log_info("visuals: encoding %" PRId64 " rows (%" PRId64 " images) of %s for %d SAE(s) on %d rank(s)", p.n_rows, p.n_used, c->data, n_todo, size);
        encode_pass(c, &p, saes, todo, stats, comm);
        for (int i = 0; i < p.n_sae; i++) {
            if (!todo[i]) continue;
            top_from_stats(&tops[i], &stats[i], p.n_rows);
            latent_stats_free(&stats[i]);
            if (rank == 0) {
                make_dirs_or_die(p.out_dir[i]);
                char index[4400];
                snprintf(index, sizeof index, "%s/index.json", p.out_dir[i]);
                if (unlink(index) != 0 && errno != ENOENT) saev_libc_fail(__FILE__, __LINE__, "unlink", index); /* incomplete until rewritten */
                run_meta(c, &p, i, meta);
                char path[4400];
                snprintf(path, sizeof path, "%s/top.safetensors", p.out_dir[i]);
                top_write(&tops[i], meta, path);
            }
        }
    }

    for (int i = 0; i < p.n_sae; i++) render_sae(c, &p, i, &saes[i], &tops[i], &is, todo[i], comm);
    image_source_close(&is);
    comm_barrier(comm);

    for (int i = 0; i < p.n_sae; i++) { sae_destroy(&saes[i]); top_free(&tops[i]); }
    free(saes); free(tops); free(stats); free(todo);
    vis_plan_free(&p);
}
