/*
 * intervene.c: `saev intervene` (intervene.h): the session every image goes through
 * (store tokens of the SAE's layer -> edits -> later ViT blocks -> probe), the plain
 * edit run and its outputs. The faithfulness study is in study.c.
 */
#include "intervene_internal.h"

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
#include "probe/logreg.h"
#include "safetensors.h"
#include "sae/checkpoint.h"
#include "sae/data_source.h"
#include "saev_config.h"

/* ---------------------------------------------------------------- session */

/* The probe's held-out images from probe.json beside the probe, or NULL. */
static int64_t *probe_test_images(const char *probe_path, int64_t *n) {
    cJSON *j = probe_json_beside(probe_path);
    const cJSON *a = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "split"), "test_images");
    int64_t *out = NULL;
    if (cJSON_IsArray(a) && cJSON_GetArraySize(a) > 0) {
        *n = cJSON_GetArraySize(a);
        out = mallocCheck((size_t)*n * sizeof(int64_t));
        for (int64_t i = 0; i < *n; i++) out[i] = (int64_t)cJSON_GetArrayItem(a, (int)i)->valuedouble;
    }
    cJSON_Delete(j);
    return out;
}

/* The store's recorded pipeline for image files; with decode_all, every file is decoded
 * once now so that a bad one is refused before ranks start. */
static void files_open_or_die(Session *ss, int decode_all) {
    const InterveneConfig *c = ss->c;
    char err[2048];
    SaevConfig rec;
    if (saev_config_recorded(ss->st->meta.config_yaml, c->data, &rec, err, sizeof err))
        saev_usage_fail("intervene.files: %s; image files need the store's preprocessing", err);
    ss->max_pixels = rec.data.max_pixels;
    if (saev_config_recorded_preprocess(&rec, ss->st->meta.model_family, &ss->prep, err, sizeof err)) saev_usage_fail("intervene.files: store %s: its preprocess: %s", c->data, err);
    cfg_free_obj(&saev_config_schema, &rec);
    int w1, h1;
    if (!preprocess_fixed_size(&ss->prep, &w1, &h1) || w1 != ss->W || h1 != ss->H)
        saev_usage_fail("intervene.files: store %s's preprocessing gives inputs of %dx%d (for a 640x480 image), not the %dx%d its %d patches need", c->data, w1,
                        h1, ss->W, ss->H, ss->np);
    if (vit_tokens_out(&ss->vit.cfg, ss->H, ss->W) != ss->T)
        saev_usage_fail("intervene.files: model.path %s gives %d tokens per image, store %s holds %d", ss->vit.source, vit_tokens_out(&ss->vit.cfg, ss->H, ss->W),
                        c->data, ss->T);
    ss->px = mallocCheck((size_t)3 * ss->H * ss->W * sizeof(float));
    ss->rgb = mallocCheck((size_t)3 * ss->H * ss->W);
    for (int64_t i = 0; decode_all && i < ss->n_files; i++) {
        Image8 pic;
        if (decode_rgb_file(c->files.s[i], ss->max_pixels, &pic, err, sizeof err)) saev_usage_fail("intervene.files[%" PRId64 "]: %s", i, err);
        image8_free(&pic);
    }
}

void session_open_or_die(Session *ss, const InterveneConfig *c, const VitSpec *model, Device device, int decode_files) {
    memset(ss, 0, sizeof *ss);
    ss->c = c;
    char err[1024];
    struct stat sb;
    if (!c->data) saev_usage_fail("intervene.data: not set (the activation store holding the SAE's layer)");
    if (stat(c->data, &sb) != 0 || !S_ISDIR(sb.st_mode)) saev_usage_fail("intervene.data: %s: not a store directory", c->data);
    ss->st = store_open_read(c->data, err, sizeof err);
    if (!ss->st) saev_usage_fail("intervene.data: %s", err);
    const StoreMeta *m = &ss->st->meta;
    if (!ss->st->complete) saev_usage_fail("intervene.data: store %s is incomplete; finish `saev activations` first", c->data);
    ss->layer_idx = store_layer_index_or_die(ss->st, c->layer, "intervene.layer", &ss->block);
    ss->d = m->d_model;
    ss->T = m->n_tokens;
    ss->np = m->n_patches;
    ss->has_cls = m->has_cls;
    ss->grid = (int)lround(sqrt((double)ss->np));
    if (ss->grid * ss->grid != ss->np) saev_usage_fail("intervene.data: store %s holds %d patches, not a square grid", c->data, ss->np);
    ss->has_labels = m->has_patch_labels;

    if (!strcmp(c->study, "none") && c->edits.n == 0) saev_usage_fail("intervene.edits: no edits given and no study (intervene.study)");
    if (!c->sae) saev_usage_fail("intervene.sae: not set (the SAE checkpoint trained on intervene.layer)");
    if (stat(c->sae, &sb) != 0) saev_usage_fail("intervene.sae: %s: not found", c->sae);
    sae_checkpoint_load(&ss->sae, c->sae, ss->np);
    if (ss->sae.cfg.d_model != ss->d) saev_usage_fail("intervene.sae: %s has d_model %d but store %s has width %d", c->sae, ss->sae.cfg.d_model, c->data, ss->d);
    ss->S = ss->sae.cfg.d_sae;
    for (int i = 0; i < c->edits.n; i++) {
        Edit e;
        if (edit_parse(c->edits.s[i], &e, err, sizeof err)) saev_usage_fail("intervene.edits[%d]: \"%s\": %s", i, c->edits.s[i], err);
        if (e.latent >= ss->S) saev_usage_fail("intervene.edits[%d]: latent %d, but %s has %d latents", i, e.latent, c->sae, ss->S);
        for (int k = 0; k < e.n_patches; k++)
            if (e.patches[k] >= ss->np) saev_usage_fail("intervene.edits[%d]: patch %d, but the images have %d patches", i, e.patches[k], ss->np);
        if (e.where == EDIT_CLASS && !ss->has_labels) saev_usage_fail("intervene.edits[%d]: @class needs patch labels, which store %s lacks", i, c->data);
        if (e.where == EDIT_CLASS && c->files.n > 0)
            saev_usage_fail("intervene.edits[%d]: @class needs patch labels, which image files (intervene.files) lack", i);
        ss->edits = reallocCheck(ss->edits, (size_t)(ss->n_edits + 1) * sizeof(Edit));
        ss->edits[ss->n_edits++] = e;
    }

    if (!c->probe) saev_usage_fail("intervene.probe: not set (probe.safetensors of `saev probe`)");
    probe_load_or_die(&ss->probe, c->probe);
    if (ss->probe.block < ss->block)
        saev_usage_fail("intervene.probe: %s reads block %d, before the SAE's block %d; an edit cannot reach it", c->probe, ss->probe.block, ss->block);
    if (ss->probe.use_sae) {
        if (stat(ss->probe.sae_path, &sb) != 0) saev_usage_fail("intervene.probe: %s reads the codes of %s, which is not found", c->probe, ss->probe.sae_path);
        sae_checkpoint_load(&ss->probe_sae, ss->probe.sae_path, ss->np);
    }
    int n_in = ss->probe.use_sae ? ss->probe_sae.cfg.d_sae : ss->d;
    if (ss->probe.n_in != n_in) saev_usage_fail("intervene.probe: %s has %d input features, but its features here have %d", c->probe, ss->probe.n_in, n_in);
    if (!ss->probe.is_patch && !ss->probe.pool_mean && !ss->has_cls) saev_usage_fail("intervene.probe: a CLS probe, but store %s has no CLS token", c->data);

    /* the images: store positions, then files */
    ss->n_files = c->files.n;
    if (c->images.n > 0 || ss->n_files > 0) {
        ss->n_img = c->images.n;
        ss->img = mallocCheck((size_t)(ss->n_img > 0 ? ss->n_img : 1) * sizeof(int64_t));
        for (int64_t i = 0; i < ss->n_img; i++) ss->img[i] = c->images.i[i];
    } else if (!(ss->img = probe_test_images(c->probe, &ss->n_img))) {
        ss->img = mallocCheck((size_t)(m->n_images > 0 ? m->n_images : 1) * sizeof(int64_t));
        for (int64_t i = 0; i < m->n_images; i++)
            if (ss->st->status[i] == STORE_WRITTEN) ss->img[ss->n_img++] = i;
    }
    for (int64_t i = 0; i < ss->n_img; i++) {
        if (ss->img[i] < 0 || ss->img[i] >= m->n_images)
            saev_usage_fail("intervene.images: %" PRId64 " is not an image of store %s (%" PRId64 " images)", ss->img[i], c->data, m->n_images);
        if (ss->st->status[ss->img[i]] != STORE_WRITTEN)
            saev_usage_fail("intervene.images: image %" PRId64 " of store %s was skipped when recording (a bad image)", ss->img[i], c->data);
    }
    if (ss->n_img + ss->n_files == 0) saev_usage_fail("intervene: no images to edit");

    /* the ViT, when the probe reads a later block or image files need their tokens */
    if (ss->probe.block > ss->block || ss->n_files > 0) {
        if (!model->path && ss->n_files > 0) saev_usage_fail("model.path: not set; image files (intervene.files) need the ViT to run blocks 0..%d", ss->block);
        if (!model->path) saev_usage_fail("model.path: not set; the probe reads block %d, so the ViT must run blocks %d..%d", ss->probe.block, ss->block + 1, ss->probe.block);
        if (vit_open(&ss->vit, model, err, sizeof err)) saev_usage_fail("model.path: %s", err);
        ss->has_vit = 1;
        const VitConfig *vc = &ss->vit.cfg;
        if (vc->n_registers > 0)
            saev_usage_fail("model.path: %s has %d register tokens; stores do not keep them, so the ViT cannot run on from a stored layer", model->path, vc->n_registers);
        if (vc->d_model != ss->d || vit_has_cls(vc) != ss->has_cls || ss->probe.block >= vc->n_layers)
            saev_usage_fail("model.path: %s (width %d, %d blocks, %s) does not match store %s (width %d, %s) and probe block %d", model->path, vc->d_model,
                            vc->n_layers, vit_has_cls(vc) ? "CLS" : "no CLS", c->data, ss->d, ss->has_cls ? "CLS" : "no CLS", ss->probe.block);
        ss->H = ss->W = ss->grid * vc->patch_size;
        if (vit_set_device(&ss->vit, device, err, sizeof err)) saev_usage_fail("run.device: %s", err);
        if (ss->n_files > 0) files_open_or_die(ss, decode_files);
    }
    int rows = ss->probe.is_patch ? ss->np : 1;
    ss->rows = rows;
    ss->tokens = mallocCheck((size_t)ss->T * ss->d * sizeof(float));
    ss->edited = mallocCheck((size_t)ss->T * ss->d * sizeof(float));
    ss->later = mallocCheck((size_t)ss->T * ss->d * sizeof(float));
    int S_max = ss->S > n_in ? ss->S : n_in;
    ss->f = mallocCheck((size_t)(ss->np + 1) * ss->S * sizeof(float));
    ss->f2 = mallocCheck((size_t)(ss->np + 1) * S_max * sizeof(float));
    ss->sf = mallocCheck((size_t)ss->S * sizeof(float));
    ss->xs = mallocCheck((size_t)(ss->np + 1) * ss->d * sizeof(float));
    ss->x_hat = mallocCheck((size_t)(ss->np + 1) * ss->d * sizeof(float));
    ss->feat = mallocCheck((size_t)rows * n_in * sizeof(float));
    ss->z = mallocCheck((size_t)rows * ss->probe.K * sizeof(double));
    ss->labels = mallocCheck((size_t)(ss->np > 0 ? ss->np : 1));
}

void session_close(Session *ss) {
    store_close(ss->st);
    sae_destroy(&ss->sae);
    if (ss->probe.use_sae) sae_destroy(&ss->probe_sae);
    probe_free(&ss->probe);
    if (ss->has_vit) vit_free(&ss->vit);
    free(ss->px); free(ss->rgb);
    for (int i = 0; i < ss->n_edits; i++) edit_free(&ss->edits[i]);
    free(ss->edits); free(ss->img); free(ss->tokens); free(ss->edited); free(ss->later); free(ss->f); free(ss->f2); free(ss->sf);
    free(ss->xs); free(ss->x_hat); free(ss->feat); free(ss->z); free(ss->labels);
    memset(ss, 0, sizeof *ss);
}

/* ss->tokens all finite; then the codes of its patches into ss->f. */
static int tokens_encode(Session *ss) {
    for (size_t e = 0; e < (size_t)ss->T * ss->d; e++)
        if (!isfinite(ss->tokens[e])) return -1;
    probe_sae_codes(&ss->sae, ss->tokens + (size_t)ss->has_cls * ss->d, ss->np, ss->f, ss->xs, ss->x_hat);
    return 0;
}

void session_read_image(Session *ss, int64_t img) {
    store_read_layer(ss->st, ss->layer_idx, img, 1, 0, ss->T, ss->tokens);
    if (ss->has_labels) store_read_patch_labels(ss->st, img, 1, ss->labels);
    if (tokens_encode(ss)) saev_fail("%s: image %" PRId64 " holds NaN or Inf at block %d", ss->c->data, img, ss->block);
}

/* File k: decoded, preprocessed, the ViT to the SAE's block -> ss->tokens; codes -> ss->f. */
static void session_read_file(Session *ss, int64_t k) {
    const char *path = ss->c->files.s[k];
    char err[2048];
    Image8 pic;
    if (decode_rgb_file(path, ss->max_pixels, &pic, err, sizeof err)) saev_fail("intervene.files[%" PRId64 "]: %s", k, err);
    preprocess_image(&ss->prep, &pic, ss->px, ss->rgb);
    image8_free(&pic);
    int hidden = ss->block + 1; /* block L's output is hidden state L + 1 */
    vit_forward(&ss->vit, ss->px, 1, ss->H, ss->W, &hidden, 1, ss->tokens);
    if (tokens_encode(ss)) saev_fail("intervene.files[%" PRId64 "]: %s gives NaN or Inf at block %d", k, path, ss->block);
}

void session_read_item(Session *ss, int64_t i) {
    if (i < ss->n_img) session_read_image(ss, ss->img[i]);
    else session_read_file(ss, i - ss->n_img);
}

const float *intervene_predict(const InterveneModel *m, const float *x, float *later, float *feat, float *f2, float *xs, float *x_hat,
                               double *z, int *pred, float *probs) {
    const float *act = x;
    const Probe *p = m->probe;
    if (p->block > m->sae_block) {
        int hidden = p->block + 1;
        vit_forward_from(m->vit, x, m->sae_block + 1, 1, m->H, m->W, &hidden, 1, later);
        act = later;
    }
    int rows = probe_features(p->is_patch, p->pool_mean, p->use_sae ? m->probe_sae : NULL, act, m->has_cls, m->np, m->d, feat, f2, xs, x_hat);
    logreg_scores(p->theta, p->n_in, p->K, feat, rows, z, pred);
    if (probs)
        for (int r = 0; r < rows; r++) {
            const double *zr = z + (size_t)r * p->K;
            double mx = zr[0], sum = 0;
            for (int k = 1; k < p->K; k++) if (zr[k] > mx) mx = zr[k];
            for (int k = 0; k < p->K; k++) sum += exp(zr[k] - mx);
            for (int k = 0; k < p->K; k++) probs[(size_t)r * p->K + k] = (float)(exp(zr[k] - mx) / sum);
        }
    return act;
}

const float *session_predict(Session *ss, const float *x, int *pred, float *probs) {
    InterveneModel m = {&ss->vit, &ss->probe, &ss->probe_sae, ss->block, ss->H, ss->W, ss->has_cls, ss->np, ss->d};
    return intervene_predict(&m, x, ss->later, ss->feat, ss->f2, ss->xs, ss->x_hat, ss->z, pred, probs);
}

/* ---------------------------------------------------------------- checks and the plain run */

void intervene_check_or_die(const InterveneConfig *c, const VitSpec *model) {
    Session ss;
    session_open_or_die(&ss, c, model, DEVICE_CPU, 1);
    if (!strcmp(c->study, "faithfulness")) study_check_or_die(&ss);
    session_close(&ss);
}

static cJSON *labels_json(const int64_t *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((double)v[i]));
    return a;
}

void intervene_run(const InterveneConfig *c, const VitSpec *model, Device device, const Comm *comm) {
    Session ss;
    session_open_or_die(&ss, c, model, device, 0);
    if (!strcmp(c->study, "faithfulness")) {
        study_run(&ss, comm);
        session_close(&ss);
        return;
    }
    int rank = comm->rank, size = comm->size;
    int64_t N = ss.n_img + ss.n_files, rows = ss.rows, K = ss.probe.K;
    size_t TD = (size_t)ss.T * ss.d;
    int keep = c->save_activations;
    /* gathered by one all-reduce: each rank fills its images, the others stay zero */
    int64_t *before = callocCheck((size_t)N * rows, sizeof(int64_t)), *after = callocCheck((size_t)N * rows, sizeof(int64_t));
    int64_t *changed = callocCheck((size_t)N, sizeof(int64_t));
    float *pb = callocCheck((size_t)N * rows * K, sizeof(float)), *pa = callocCheck((size_t)N * rows * K, sizeof(float));
    float *ab = keep ? callocCheck((size_t)N * TD, sizeof(float)) : NULL, *aa = keep ? callocCheck((size_t)N * TD, sizeof(float)) : NULL;
    int *pred = mallocCheck((size_t)rows * sizeof(int));
    int64_t i0 = N * rank / size, i1 = N * (rank + 1) / size;
    log_info("intervene: %d edit(s) at block %d of %s, probe on block %d, %" PRId64 " store image(s) and %" PRId64 " file(s), %d rank(s)", ss.n_edits,
             ss.block, c->data, ss.probe.block, ss.n_img, ss.n_files, size);
    Progress prog;
    progress_start(&prog, "images", i1 - i0);
    for (int64_t i = i0; i < i1; i++) {
        session_read_item(&ss, i);
        const float *act = session_predict(&ss, ss.tokens, pred, pb + (size_t)i * rows * K);
        for (int64_t r = 0; r < rows; r++) before[(size_t)i * rows + r] = ss.probe.classes[pred[r]];
        if (keep) memcpy(ab + (size_t)i * TD, act, TD * sizeof(float));
        memcpy(ss.edited, ss.tokens, TD * sizeof(float));
        const uint8_t *labels = ss.has_labels && i < ss.n_img ? ss.labels : NULL;
        changed[i] = edit_apply(&ss.sae, ss.edits, ss.n_edits, ss.edited + (size_t)ss.has_cls * ss.d, ss.f, ss.np, labels, ss.sf);
        act = session_predict(&ss, ss.edited, pred, pa + (size_t)i * rows * K);
        for (int64_t r = 0; r < rows; r++) after[(size_t)i * rows + r] = ss.probe.classes[pred[r]];
        if (keep) memcpy(aa + (size_t)i * TD, act, TD * sizeof(float));
        progress_update(&prog, i - i0 + 1);
    }
    progress_finish(&prog);
    if (size > 1) {
        comm_allreduce(comm, before, (size_t)N * rows, COMM_I64, COMM_SUM);
        comm_allreduce(comm, after, (size_t)N * rows, COMM_I64, COMM_SUM);
        comm_allreduce(comm, changed, (size_t)N, COMM_I64, COMM_SUM);
        comm_allreduce(comm, pb, (size_t)N * rows * K, COMM_F32, COMM_SUM);
        comm_allreduce(comm, pa, (size_t)N * rows * K, COMM_F32, COMM_SUM);
        if (keep) { comm_allreduce(comm, ab, (size_t)N * TD, COMM_F32, COMM_SUM); comm_allreduce(comm, aa, (size_t)N * TD, COMM_F32, COMM_SUM); }
    }
    if (rank == 0) {
        make_dirs_or_die(c->out);
        char path[4200];
        StWriter w;
        st_writer_init(&w);
        int64_t s2[2] = {N, rows}, s3[3] = {N, rows, K}, sa[3] = {N, ss.T, ss.d}, s1[1] = {N}, sk[1] = {K};
        int64_t *positions = mallocCheck((size_t)N * sizeof(int64_t));
        for (int64_t i = 0; i < N; i++) positions[i] = i < ss.n_img ? ss.img[i] : -1; /* -1: an image file */
        st_writer_add(&w, "images", ST_I64, 1, s1, positions);
        st_writer_add(&w, "classes", ST_I64, 1, sk, ss.probe.classes);
        st_writer_add(&w, "before", ST_I64, 2, s2, before);
        st_writer_add(&w, "after", ST_I64, 2, s2, after);
        st_writer_add(&w, "patches_edited", ST_I64, 1, s1, changed);
        if (!ss.probe.is_patch) {
            st_writer_add(&w, "probs_before", ST_F32, 3, s3, pb);
            st_writer_add(&w, "probs_after", ST_F32, 3, s3, pa);
        }
        if (keep) {
            st_writer_add(&w, "activations_before", ST_F32, 3, sa, ab);
            st_writer_add(&w, "activations_after", ST_F32, 3, sa, aa);
        }
        char meta[512];
        snprintf(meta, sizeof meta, "{\"sae_block\": %d, \"probe_block\": %d}", ss.block, ss.probe.block);
        st_writer_meta(&w, "saev_intervene", meta);
        snprintf(path, sizeof path, "%s/predictions.safetensors", c->out);
        st_writer_write_or_die(&w, path);
        st_writer_free(&w);
        free(positions);

        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "data", c->data);
        cJSON_AddStringToObject(j, "sae", c->sae);
        cJSON_AddNumberToObject(j, "sae_block", ss.block);
        cJSON_AddStringToObject(j, "probe", c->probe);
        cJSON_AddNumberToObject(j, "probe_block", ss.probe.block);
        cJSON_AddStringToObject(j, "target", ss.probe.is_patch ? "patch" : "class");
        cJSON *ed = cJSON_AddArrayToObject(j, "edits");
        for (int e = 0; e < c->edits.n; e++) cJSON_AddItemToArray(ed, cJSON_CreateString(c->edits.s[e]));
        cJSON_AddStringToObject(j, "edit_rule", "x' = x + sum_s (f'_s - f_s) W_dec[s] / data_scale (the SAE's error term kept)");
        cJSON *arr = cJSON_AddArrayToObject(j, "images");
        int64_t total_changed = 0;
        for (int64_t i = 0; i < N; i++) {
            cJSON *e = cJSON_CreateObject();
            if (i < ss.n_img) cJSON_AddNumberToObject(e, "image", (double)ss.img[i]);
            else cJSON_AddStringToObject(e, "file", c->files.s[i - ss.n_img]);
            cJSON_AddNumberToObject(e, "patches_edited", (double)changed[i]);
            int64_t n_changed = 0;
            for (int64_t r = 0; r < rows; r++) n_changed += before[(size_t)i * rows + r] != after[(size_t)i * rows + r];
            total_changed += n_changed;
            cJSON_AddNumberToObject(e, "predictions_changed", (double)n_changed);
            cJSON_AddItemToObject(e, "before", labels_json(before + (size_t)i * rows, (int)rows));
            cJSON_AddItemToObject(e, "after", labels_json(after + (size_t)i * rows, (int)rows));
            cJSON_AddItemToArray(arr, e);
        }
        snprintf(path, sizeof path, "%s/intervene.json", c->out);
        write_json_atomic_or_die(path, j);
        cJSON_Delete(j);
        log_info("intervene: %" PRId64 " of %" PRId64 " predictions changed -> %s/intervene.json, predictions.safetensors", total_changed, N * rows, c->out);
    }
    comm_barrier(comm);
    free(before); free(after); free(changed); free(pb); free(pa); free(ab); free(aa); free(pred);
    session_close(&ss);
}
