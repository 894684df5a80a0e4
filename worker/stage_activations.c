/*
 * stage_activations.c: `saev-worker activations CONFIG [--set ...]`, run on every rank.
 *
 * The data set's images are split across ranks in whole batches (balanced contiguous runs
 * of the batches the store still lacks, so a rerun after a crash picks up exactly what
 * is missing). Each rank decodes and preprocesses its images on a thread pool (loader),
 * runs the ViT up to the deepest requested block, and writes the requested layers into
 * the one shared store collectively. Bad images follow data.on_bad_image: skipped ones
 * are recorded in the store (status + reason) and listed in <store>/bad_images.tsv.
 *
 * store_write is collective, so every rank makes the same number of calls (agreed on
 * before the first): after its own batches a rank with less work joins with empty writes.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "fsutil.h"
#include "hash.h"
#include "comm.h"
#include "image/dataset.h"
#include "image/loader.h"
#include "image/preprocess.h"
#include "log.h"
#include "saev_config.h"
#include "stages.h"
#include "store/store.h"
#include "vit/model_config.h"
#include "vit/vit.h"
#ifdef SAEV_CUDA
#include "cuda/cuda_util.h"
#include "cuda/vit_cuda.h"
#endif

/* FNV-1a over the loaded float32 weights: identifies the checkpoint independent of its
 * file's dtype or tensor names, cheap enough to compute on every start. */
static void weights_digest(const Vit *vit, char *out, size_t len) {
    uint64_t h = fnv1a64(FNV1A64_INIT, vit->param_memory, vit->n_params * sizeof(float));
    snprintf(out, len, "fnv1a64-f32:%016" PRIx64, h);
}

static void describe_preprocess(const PreprocessSpec *p, const char *pipeline, char *out, size_t len) {
    snprintf(out, len, "pipeline=%s resize=%s size=%d width=%d height=%d interpolation=%s crop=%dx%d mean=[%g,%g,%g] std=[%g,%g,%g]",
             pipeline, resize_name(p->resize), p->size, p->width, p->height, interp_name(p->interp), p->crop_w, p->crop_h,
             p->mean[0], p->mean[1], p->mean[2], p->std[0], p->std[1], p->std[2]);
}

static void describe_dataset(const DataSpec *d, const Dataset *ds, char *out, size_t len) {
    static const char *kinds[] = {"folder", "list", "ade20k"};
    snprintf(out, len, "kind=%s %s=%s%s%s n=%" PRId64, kinds[d->kind], d->kind == DATA_LIST ? "path" : "root",
             d->kind == DATA_LIST ? d->path : d->root, d->kind == DATA_ADE20K ? " split=" : "",
             d->kind == DATA_ADE20K ? d->split : "", ds->n);
}

/* Writes "<index>\t<reason>" for every skipped image of a finished store. */
static void write_bad_list(const char *dir) {
    char err[512], path[4096];
    Store *s = store_open_read(dir, err, sizeof err);
    if (!s) saev_fail("%s", err);
    snprintf(path, sizeof path, "%s/bad_images.tsv", dir);
    AtomicFile out;
    atomic_file_open_or_die(&out, path);
    FILE *f = out.f;
    int64_t n_bad = 0;
    for (int64_t i = 0; i < s->meta.n_images; i++) {
        if (s->status[i] != STORE_SKIPPED) continue;
        char reason[STORE_REASON_LEN + 1];
        store_read_skip_reason(s, i, reason, sizeof reason);
        fprintf(f, "%" PRId64 "\t%s\n", i, reason); /* a failed write is seen by the commit */
        n_bad++;
    }
    atomic_file_commit_or_die(&out);
    if (n_bad) log_warn("%" PRId64 " bad images skipped; listed in %s", n_bad, path);
    store_close(s);
}

int stage_activations(int argc, char **argv) {
    CfgArgs args;
    cfg_args_parse_or_die(argc, argv, NULL, &args);
    SaevConfig *cfgs;
    int n_cfg = saev_config_load_or_die(&args, &cfgs);
    const SaevConfig *c = saev_config_one_or_die(cfgs, n_cfg, "activations", "train");
    int rank = comm_rank(), size = comm_size();
    if (!c->model.path) saev_usage_fail("%s: model.path is required for activations", args.config_path ? args.config_path : "config");
    if (!c->activations.out) saev_usage_fail("%s: activations.out (the store directory) is required", args.config_path ? args.config_path : "config");

    char err[1024];
    DataSpec dspec;
    if (!c->data.root && !c->data.path) saev_usage_fail("%s: data.root (or data.path for a list) is required", args.config_path ? args.config_path : "config");
    if (data_resolve(&c->data, &dspec, err, sizeof err)) saev_usage_fail("data: %s", err);
    Dataset ds;
    if (dataset_open(&dspec, &ds, err, sizeof err)) saev_fail("%s", err);
    if (ds.n == 0) saev_fail("the data set is empty");

    VitSpec vspec;
    model_section_to_spec(&c->model, &vspec);
    Vit vit;
    if (vit_open(&vit, &vspec, err, sizeof err)) saev_fail("%s", err);
    Device device = model_section_device(&c->model);
    Device run_device = DEVICE_AUTO;
    device_parse(c->run.device, &run_device); /* the schema's choices admit only known names */
    if (run_device != DEVICE_AUTO) device = run_device;
#ifdef SAEV_CUDA
    if (device != DEVICE_CPU) cuda_use_local_device(comm_local_rank()); /* before the weights go to a GPU */
#endif
    if (vit_set_device(&vit, device, err, sizeof err)) saev_fail("%s", err);
#ifdef SAEV_CUDA
    if (vit.device == DEVICE_CUDA) {
        Precision prec;
        if (precision_parse(c->model.dtype, &prec)) saev_usage_fail("model.dtype: \"%s\" is not one of " PRECISION_NAMES, c->model.dtype);
        vit_cuda_set_precision(&vit, (CudaPrecision)prec); /* equal values (device.c) */
    }
#endif

    int n_layers = c->model.layers.n;
    int *blocks = mallocCheck(sizeof(int) * (size_t)n_layers), *hidden = mallocCheck(sizeof(int) * (size_t)n_layers);
    for (int i = 0; i < n_layers; i++) blocks[i] = (int)c->model.layers.i[i];
    if (vit_resolve_layers(&vit.cfg, blocks, n_layers, hidden, err, sizeof err)) saev_usage_fail("model.layers: %s", err);
    for (int i = 0; i < n_layers; i++) blocks[i] = hidden[i] - 1; /* resolved, non-negative block numbers */

    const char *pipeline = c->preprocess.pipeline ? c->preprocess.pipeline : vit_family_name(vit.cfg.family);
    PreprocessConfig pc = c->preprocess;
    pc.pipeline = (char *)pipeline;
    ImageLoaderSpec ls = {0};
    if (preprocess_resolve(&pc, &ls.pre, err, sizeof err)) saev_usage_fail("preprocess: %s", err);
    ls.batch_size = (int)c->activations.batch_size;
    int threads = (int)c->loader.threads;
    if (threads <= 0) threads = image_loader_default_threads(0) / comm_local_size();
    ls.threads = threads > 0 ? threads : 1;
    ls.queue_batches = (int)c->loader.queue_batches;
    ls.on_bad = dspec.on_bad;
    ls.max_pixels = dspec.max_pixels;
    ls.patch_size = dspec.kind == DATA_ADE20K ? vit.cfg.patch_size : 0;
    ls.patch_label = dspec.patch_label;
    int out_w = 0, out_h = 0;
    preprocess_out_size(&ls.pre, 1000, 1000, &out_w, &out_h); /* fixed-size pipelines ignore the input size */
    if (out_w % vit.cfg.patch_size || out_h % vit.cfg.patch_size)
        saev_usage_fail("preprocess gives %dx%d images, not a multiple of the model's patch size %d", out_w, out_h, vit.cfg.patch_size);

    StoreMeta meta = {0};
    char digest[64], pre_text[512], data_text[4400];
    weights_digest(&vit, digest, sizeof digest);
    describe_preprocess(&ls.pre, pipeline, pre_text, sizeof pre_text);
    describe_dataset(&dspec, &ds, data_text, sizeof data_text);
    char *config_yaml = cfg_dump(&saev_config_schema, c);
    meta.model_family = (char *)vit_family_name(vit.cfg.family);
    meta.model = c->model.path;
    meta.checkpoint_digest = digest;
    meta.n_layers = n_layers;
    meta.layers = blocks;
    meta.has_cls = vit_has_cls(&vit.cfg);
    meta.n_tokens = vit_tokens_out(&vit.cfg, out_h, out_w);
    meta.n_patches = meta.n_tokens - meta.has_cls;
    meta.d_model = vit.cfg.d_model;
    if (store_dtype_parse(c->activations.dtype, &meta.dtype)) saev_usage_fail("activations.dtype: %s", c->activations.dtype);
    meta.n_images = ds.n;
    meta.images_per_file = c->activations.images_per_file;
    meta.has_patch_labels = dspec.kind == DATA_ADE20K;
    meta.preprocessing = pre_text;
    meta.dataset = data_text;
    meta.saev_version = SAEV_VERSION;
    meta.config_yaml = config_yaml;

    /* One run per store: a second `saev activations` into the same folder stops here,
     * naming the first; rank 0 holds the lock for the job's lifetime. */
    if (rank == 0) lock_output_dir_or_die(c->activations.out, "saev activations");
    Store *store = store_open_write(c->activations.out, &meta, (int)c->activations.resume, 1);
    if (rank == 0) cfg_write_resolved(&saev_config_schema, c, c->activations.out);
    /* Work is dealt in whole global batches (images [k*B, (k+1)*B)), balanced contiguous
     * runs of them per rank, so every image is computed in the same batch whatever the
     * number of ranks: 1 rank and N ranks then give bit-identical stores. */
    int64_t *pending = NULL;
    int64_t pending_total = store_pending(store, &pending);
    int64_t *group_start = mallocCheck(sizeof(int64_t) * (size_t)(pending_total + 1));
    int64_t n_groups = 0;
    for (int64_t i = 0; i < pending_total; i++)
        if (i == 0 || pending[i] / ls.batch_size != pending[i - 1] / ls.batch_size) group_start[n_groups++] = i;
    group_start[n_groups] = pending_total;
    int64_t g0 = n_groups * rank / size, g1 = n_groups * (rank + 1) / size;
    int64_t *mine = pending + group_start[g0], n_mine = group_start[g1] - group_start[g0];
    log_info("activations: %" PRId64 " images (%" PRId64 " to do) on %d ranks; %s, %d layers, %d tokens x %d, %s -> %s",
             ds.n, pending_total, size, vit_family_name(vit.cfg.family), n_layers, meta.n_tokens, meta.d_model,
             c->activations.dtype, c->activations.out);

    int T = meta.n_tokens, D = meta.d_model, B = ls.batch_size;
    size_t image_floats = (size_t)n_layers * (size_t)T * (size_t)D;
    float *vit_out = mallocCheck(sizeof(float) * image_floats * (size_t)B);   /* [L, B, T, D] */
    float *acts = callocCheck(image_floats * (size_t)B, sizeof(float));      /* [B, L, T, D] */
    int64_t *idx = mallocCheck(sizeof(int64_t) * (size_t)B), *labels = mallocCheck(sizeof(int64_t) * (size_t)B);
    const char **reasons = mallocCheck(sizeof(char *) * (size_t)B);
    int n_patches_lbl = meta.has_patch_labels ? meta.n_patches : 0;
    uint8_t *plabels = n_patches_lbl ? callocCheck((size_t)B * (size_t)n_patches_lbl, 1) : NULL;

    /* store_write is collective: every rank must make the same number of calls, so the
     * count (one per loader batch: ceil(run length / B) per contiguous run) is agreed on
     * before the first write and ranks with less work pad with empty writes. */
    int64_t my_writes = 0;
    for (int64_t run = 0; run < n_mine;) {
        int64_t end = run + 1;
        while (end < n_mine && mine[end] == mine[end - 1] + 1) end++;
        my_writes += (end - run + B - 1) / B;
        run = end;
    }
    int64_t max_writes = my_writes;
    comm_allreduce(&max_writes, 1, COMM_I64, COMM_MAX);

    Progress prog;
    progress_start(&prog, "images", pending_total);
    double t0 = saev_now();
    int64_t done_global = 0, n_writes = 0, written_local = 0;
    for (int64_t run = 0; run < n_mine;) {
        int64_t end = run + 1; /* a contiguous run of pending images */
        while (end < n_mine && mine[end] == mine[end - 1] + 1) end++;
        ls.begin = mine[run];
        ls.end = mine[end - 1] + 1;
        ImageLoader *ld = image_loader_open(&ds, &ls);
        const ImageBatch *b;
        while ((b = image_loader_next(ld))) {
            int n_all = b->n + b->n_bad;
            if (b->n > 0) vit_forward(&vit, b->pixels, b->n, out_h, out_w, hidden, n_layers, vit_out);
            int k = 0, j = 0;
            for (int p = 0; p < n_all; p++) {
                int64_t g = b->first + p;
                idx[p] = g;
                if (k < b->n && b->index[k] == g) {
                    for (int l = 0; l < n_layers; l++)
                        memcpy(acts + ((size_t)p * n_layers + l) * T * D, vit_out + ((size_t)l * b->n + k) * T * D, sizeof(float) * T * D);
                    labels[p] = b->labels[k];
                    if (plabels) memcpy(plabels + (size_t)p * n_patches_lbl, b->patch_labels + (size_t)k * n_patches_lbl, n_patches_lbl);
                    reasons[p] = NULL;
                    k++;
                } else {
                    if (j >= b->n_bad || b->bad_index[j] != g) saev_fail("loader batch at %" PRId64 " lost image %" PRId64, b->first, g);
                    labels[p] = ds.labels[g];
                    reasons[p] = b->bad_reason[j++];
                }
            }
            store_write(store, n_all, idx, acts, NULL, labels, plabels, b->n_bad ? reasons : NULL);
            n_writes++;
            written_local += b->n;
            int64_t step = n_all;
            comm_allreduce(&step, 1, COMM_I64, COMM_SUM);
            done_global += step;
            progress_update(&prog, done_global);
        }
        image_loader_close(ld);
        run = end;
    }
    if (n_writes != my_writes) saev_fail("activations: made %" PRId64 " writes, planned %" PRId64, n_writes, my_writes);
    for (; n_writes < max_writes; n_writes++) {
        store_write(store, 0, idx, acts, NULL, labels, plabels, NULL);
        int64_t step = 0;
        comm_allreduce(&step, 1, COMM_I64, COMM_SUM);
        done_global += step;
        progress_update(&prog, done_global);
    }
    progress_finish(&prog);
    int complete = store_finish(store);
    double el = saev_now() - t0;
    int64_t images_written = written_local;
    comm_allreduce(&images_written, 1, COMM_I64, COMM_SUM);
    if (rank == 0) {
        write_bad_list(c->activations.out);
        double gb = (double)images_written * (double)image_floats * (double)store_dtype_size(meta.dtype) / 1e9;
        log_info("activations: %s: %" PRId64 " images, %" PRId64 " tokens, %.3f GB in %.1f s (%.1f images/s, %.3f GB/s)%s",
                 c->activations.out, images_written, images_written * T, gb, el, el > 0 ? (double)images_written / el : 0,
                 el > 0 ? gb / el : 0, complete ? "" : " -- store NOT complete");
    }
    free(vit_out); free(acts); free(idx); free(labels); free(reasons); free(plabels); free(pending); free(group_start);
    free(blocks); free(hidden); free(config_yaml);
    vit_free(&vit);
    dataset_free(&ds);
    saev_config_free(cfgs, n_cfg);
    cfg_args_free(&args);
    return complete ? 0 : 1;
}
