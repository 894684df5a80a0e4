/*
 * activations.c: the activations stage (see activations.h): open the data set and the
 * model, describe the store, then record every pending image of this rank's plan: the
 * loader decodes ahead on its threads, forward lanes run batches side by side, and the
 * main thread (the only one calling HDF5 and MPI) writes them in order.
 */
#include "activations.h"

#include <cblas.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "comm.h"
#include "fsutil.h"
#include "hash.h"
#include "log.h"
#include "store/store.h"
#include "vit/vit.h"
#ifdef SAEV_CUDA
#include "cuda/cuda_util.h"
#include "cuda/vit_cuda.h"
#endif

/* The model, with the blocks to record resolved. */
typedef struct {
    Vit vit;
    int n_layers;   // layers recorded
    int *blocks;    // [n_layers] non-negative block numbers (store attribute)
    int *hidden;    // [n_layers] hidden-state index of each (block + 1), for vit_forward
} Model;

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
    int64_t n_bad = 0;
    for (int64_t i = 0; i < s->meta.n_images; i++) {
        if (s->status[i] != STORE_SKIPPED) continue;
        char reason[STORE_REASON_LEN + 1];
        store_read_skip_reason(s, i, reason, sizeof reason);
        fprintf(out.f, "%" PRId64 "\t%s\n", i, reason); /* a failed write is seen by the commit */
        n_bad++;
    }
    atomic_file_commit_or_die(&out);
    if (n_bad) log_warn("%" PRId64 " bad images skipped; listed in %s", n_bad, path);
    store_close(s);
}

static void open_data(const DataConfig *c, DataSpec *spec, Dataset *ds) {
    char err[1024];
    if (!c->root && !c->path) saev_usage_fail("data.root (or data.path for a list) is required for activations");
    if (data_resolve(c, spec, err, sizeof err)) saev_usage_fail("data: %s", err);
    if (dataset_open(spec, ds, err, sizeof err)) saev_fail("%s", err);
    if (ds->n == 0) saev_fail("the data set is empty");
}

static void open_model(const ActivationsSections *s, Model *m, const Comm *comm) {
    char err[1024];
    const ModelSection *c = s->model;
    if (!c->path) saev_usage_fail("model.path is required for activations");
    VitSpec vspec;
    model_section_to_spec(c, &vspec);
    if (vit_open(&m->vit, &vspec, err, sizeof err)) saev_fail("%s", err);
    Device device = s->device != DEVICE_AUTO ? s->device : model_section_device(c);
#ifdef SAEV_CUDA
    if (device != DEVICE_CPU) cuda_use_local_device(comm->local_rank); /* before the weights go to a GPU */
#else
    (void)comm; /* the GPU of this local rank, on CUDA builds */
#endif
    if (vit_set_device(&m->vit, device, err, sizeof err)) saev_fail("%s", err);
#ifdef SAEV_CUDA
    if (m->vit.device == DEVICE_CUDA) {
        Precision prec;
        if (precision_parse(c->dtype, &prec)) saev_usage_fail("model.dtype: \"%s\" is not one of " PRECISION_NAMES, c->dtype);
        vit_cuda_set_precision(&m->vit, prec); /* equal values (device.c) */
    }
#endif
    m->n_layers = c->layers.n;
    m->blocks = mallocCheck(sizeof(int) * (size_t)m->n_layers);
    m->hidden = mallocCheck(sizeof(int) * (size_t)m->n_layers);
    for (int i = 0; i < m->n_layers; i++) m->blocks[i] = (int)c->layers.i[i];
    if (vit_resolve_layers(&m->vit.cfg, m->blocks, m->n_layers, m->hidden, err, sizeof err)) saev_usage_fail("model.layers: %s", err);
    for (int i = 0; i < m->n_layers; i++) m->blocks[i] = m->hidden[i] - 1; /* resolved, non-negative block numbers */
}

/* The loader's spec: the model family's preprocessing with the config's overrides, at a
 * size the model's patches divide. *pipeline gets the family used. */
static void loader_spec(const ActivationsSections *s, const Vit *vit, const DataSpec *dspec, const Comm *comm, ImageLoaderSpec *ls,
                        const char **pipeline) {
    char err[1024];
    *pipeline = s->preprocess->pipeline ? s->preprocess->pipeline : vit_family_name(vit->cfg.family);
    PreprocessConfig pc = *s->preprocess;
    pc.pipeline = (char *)*pipeline;
    memset(ls, 0, sizeof *ls);
    if (preprocess_resolve(&pc, &ls->pre, err, sizeof err)) saev_usage_fail("preprocess: %s", err);
    ls->batch_size = (int)s->activations->batch_size;
    int threads = (int)s->loader->threads;
    if (threads <= 0) threads = image_loader_default_threads(0) / comm->local_size;
    ls->threads = threads > 0 ? threads : 1;
    ls->queue_batches = (int)s->loader->queue_batches;
    ls->on_bad = dspec->on_bad;
    ls->max_pixels = dspec->max_pixels;
    ls->patch_size = dspec->kind == DATA_ADE20K ? vit->cfg.patch_size : 0;
    ls->patch_label = dspec->patch_label;
}

/* Everything the store records about where its activations come from. Strings point into
 * `text` (digest, preprocessing, dataset), the model and the sections. */
typedef struct {
    char digest[64], preprocessing[512], dataset[4400];
} MetaText;

static void store_meta_of(const ActivationsSections *s, const Model *m, const ImageLoaderSpec *ls, const char *pipeline,
                          const DataSpec *dspec, const Dataset *ds, int out_h, int out_w, MetaText *text, StoreMeta *meta) {
    const Vit *vit = &m->vit;
    weights_digest(vit, text->digest, sizeof text->digest);
    describe_preprocess(&ls->pre, pipeline, text->preprocessing, sizeof text->preprocessing);
    describe_dataset(dspec, ds, text->dataset, sizeof text->dataset);
    memset(meta, 0, sizeof *meta);
    meta->model_family = (char *)vit_family_name(vit->cfg.family);
    meta->model = s->model->path;
    meta->checkpoint_digest = text->digest;
    meta->n_layers = m->n_layers;
    meta->layers = m->blocks;
    meta->has_cls = vit_has_cls(&vit->cfg);
    meta->n_tokens = vit_tokens_out(&vit->cfg, out_h, out_w);
    meta->n_patches = meta->n_tokens - meta->has_cls;
    meta->d_model = vit->cfg.d_model;
    if (store_dtype_parse(s->activations->dtype, &meta->dtype)) saev_usage_fail("activations.dtype: %s", s->activations->dtype);
    meta->n_images = ds->n;
    meta->images_per_file = s->activations->images_per_file;
    meta->has_patch_labels = dspec->kind == DATA_ADE20K;
    meta->preprocessing = text->preprocessing;
    meta->dataset = text->dataset;
    meta->saev_version = SAEV_VERSION;
    meta->config_yaml = (char *)s->config_yaml;
}

/* One loader batch as store rows: every image of the batch's range in order, the kept
 * ones with their activations (the ViT's [L, n, T, D] regrouped to [n_all, L, T, D]),
 * the bad ones with their reason. */
typedef struct {
    int64_t *idx;           // [B] store positions
    float *acts;            // [B, L, T, D]
    int64_t *labels;        // [B]
    uint8_t *patch_labels;  // [B, n_patches] or NULL
    const char **reasons;   // [B] NULL for a kept image
} Rows;

static int batch_rows(const ImageBatch *b, const Dataset *ds, const float *vit_out, int n_layers, size_t tokens_floats,
                      int n_patch_labels, Rows *r) {
    int n_all = b->n + b->n_bad, k = 0, j = 0;
    for (int p = 0; p < n_all; p++) {
        int64_t g = b->first + p;
        r->idx[p] = g;
        if (k < b->n && b->index[k] == g) {
            for (int l = 0; l < n_layers; l++)
                memcpy(r->acts + ((size_t)p * n_layers + l) * tokens_floats, vit_out + ((size_t)l * b->n + k) * tokens_floats,
                       sizeof(float) * tokens_floats);
            r->labels[p] = b->labels[k];
            if (r->patch_labels) memcpy(r->patch_labels + (size_t)p * n_patch_labels, b->patch_labels + (size_t)k * n_patch_labels, n_patch_labels);
            r->reasons[p] = NULL;
            k++;
        } else {
            if (j >= b->n_bad || b->bad_index[j] != g) saev_fail("loader batch at %" PRId64 " lost image %" PRId64, b->first, g);
            r->labels[p] = ds->labels[g];
            r->reasons[p] = b->bad_reason[j++];
        }
    }
    return n_all;
}

/* One batch's rows into the store (collective), then the progress line. */
typedef struct {
    const Comm *comm;       // the job's ranks (the progress reduction)
    Store *store;           // written collectively
    const Dataset *ds;      // labels of the skipped images
    Rows r;                 // [B] rows of the batch being written
    int n_layers;           // L
    int n_patch_labels;     // patches per image with labels, or 0
    size_t tokens_floats;   // T * D
    Progress prog;          // images done on all ranks
    int64_t done_global;    // images written on all ranks
    int64_t n_writes;       // collective writes made by this rank
    int64_t written;        // kept images written by this rank
} Writer;

static void write_batch(Writer *w, const ImageBatch *b, const float *vit_out) {
    int n_all = batch_rows(b, w->ds, vit_out, w->n_layers, w->tokens_floats, w->n_patch_labels, &w->r);
    store_write(w->store, n_all, w->r.idx, w->r.acts, NULL, w->r.labels, w->r.patch_labels, b->n_bad ? w->r.reasons : NULL);
    w->n_writes++;
    w->written += b->n;
    int64_t step = n_all;
    comm_allreduce(w->comm, &step, 1, COMM_I64, COMM_SUM);
    progress_update(&w->prog, w->done_global += step);
}

/* A forward lane: a batch copied out of the loader and its forward, on a thread of its
 * own with its own buffers, while the main thread reads the next batches and writes the
 * finished ones (it alone calls HDF5 and MPI: comm.c asks MPI for FUNNELED only). */
typedef struct {
    Vit vit;          // view on the model's weights (vit_view)
    ImageBatch b;     // the batch, owned
    float *out;       // [L, B, T, D] its activations
    const int *hidden;// [L] hidden-state indices
    int L, H, W;
    int busy;         // a forward was started on `thread` and not yet joined
    pthread_t thread;
} Lane;

static void *lane_forward(void *arg) {
    Lane *ln = arg;
    if (ln->b.n > 0) vit_forward(&ln->vit, ln->b.pixels, ln->b.n, ln->H, ln->W, ln->hidden, ln->L, ln->out);
    return NULL;
}

/* Lanes for this rank: on the CPU one per OpenBLAS thread (the launcher gives each rank
 * cores / ranks), each lane running whole batches with single-threaded GEMMs. A batch's
 * GEMMs then have the very shapes of a one-thread rank's, so the store is bit-identical
 * to any number of ranks; splitting one batch over threads would not be (OpenBLAS rounds
 * the last rows of a call differently), and splitting each GEMM makes the threads meet
 * dozens of times per image. Memory: each lane holds one rank's worth of buffers. */
static int lanes_for(const Vit *vit, int64_t at_most) {
    if (vit->device != DEVICE_CPU) return 1;
    int t = openblas_get_num_threads();
    if (at_most > 0 && t > at_most) t = (int)at_most; /* activations.lanes bounds the memory */
    return t > 1 ? t : 1;
}

/* Records this rank's plan: one loader per contiguous run, one collective write per
 * loader batch in order, then empty writes up to every rank's count. With more than one
 * lane, batch k runs on lane k % lanes and is written once it is the oldest in flight.
 * Returns the images written. */
static int64_t record(const Comm *comm, Store *store, const StorePlan *plan, const Dataset *ds, Model *m, ImageLoaderSpec *ls,
                      const StoreMeta *meta, int out_h, int out_w, int64_t max_lanes) {
    int B = ls->batch_size, L = m->n_layers, n_lanes = lanes_for(&m->vit, max_lanes), blas_threads = openblas_get_num_threads();
    size_t tokens_floats = (size_t)meta->n_tokens * (size_t)meta->d_model, image_floats = (size_t)L * tokens_floats;
    size_t pixel_floats = (size_t)3 * out_h * out_w;
    int n_patch_labels = meta->has_patch_labels ? meta->n_patches : 0;
    Writer w = {
        .comm = comm, .store = store, .ds = ds, .n_layers = L, .n_patch_labels = n_patch_labels, .tokens_floats = tokens_floats,
        .r = {
            .idx = mallocCheck(sizeof(int64_t) * (size_t)B),
            .acts = callocCheck(image_floats * (size_t)B, sizeof(float)),
            .labels = mallocCheck(sizeof(int64_t) * (size_t)B),
            .patch_labels = n_patch_labels ? callocCheck((size_t)B * (size_t)n_patch_labels, 1) : NULL,
            .reasons = mallocCheck(sizeof(char *) * (size_t)B),
        },
    };
    Lane *lanes = callocCheck((size_t)n_lanes, sizeof(Lane));
    float *vit_out = NULL; /* [L, B, T, D] the single lane's output */
    if (n_lanes == 1) vit_out = mallocCheck(sizeof(float) * image_floats * (size_t)B);
    else {
        log_info("activations: %d forward lanes of one batch each (single-threaded GEMMs)", n_lanes);
        for (int i = 0; i < n_lanes; i++) {
            Lane *ln = &lanes[i];
            vit_view(&m->vit, &ln->vit);
            image_batch_alloc(&ln->b, B, pixel_floats, n_patch_labels);
            ln->out = mallocCheck(sizeof(float) * image_floats * (size_t)B);
            ln->hidden = m->hidden;
            ln->L = L;
            ln->H = out_h;
            ln->W = out_w;
        }
        openblas_set_num_threads(1); /* before any lane's first forward sizes its pool */
    }
    progress_start(&w.prog, "images", plan->n_pending);
    /* Seconds the main thread spent waiting for decoded batches, on forwards (its own, or
     * waiting for a lane's), and writing (rows + collective write + progress reduction). */
    double t_wait = 0, t_forward = 0, t_write = 0;
    int64_t k = 0; /* batches read */
    for (int64_t run = 0; run < plan->n_runs; run++) {
        ls->begin = plan->images[plan->run_start[run]];
        ls->end = plan->images[plan->run_start[run + 1] - 1] + 1;
        ImageLoader *ld = image_loader_open(ds, ls);
        const ImageBatch *b;
        double t = saev_now();
        while ((b = image_loader_next(ld))) {
            double t1 = saev_now(), t2, t3;
            if (n_lanes == 1) {
                if (b->n > 0) vit_forward(&m->vit, b->pixels, b->n, out_h, out_w, m->hidden, L, vit_out);
                t2 = saev_now();
                write_batch(&w, b, vit_out);
            } else {
                Lane *ln = &lanes[k % n_lanes];
                if (ln->busy && pthread_join(ln->thread, NULL)) saev_fail("activations: cannot join a forward lane");
                t2 = saev_now();
                if (ln->busy) write_batch(&w, &ln->b, ln->out);
                image_batch_copy(&ln->b, b, pixel_floats, n_patch_labels);
                if (pthread_create(&ln->thread, NULL, lane_forward, ln)) saev_fail("activations: cannot start a forward lane");
                ln->busy = 1;
            }
            t3 = saev_now();
            t_wait += t1 - t;
            t_forward += t2 - t1;
            t_write += t3 - t2;
            t = t3;
            k++;
        }
        image_loader_close(ld);
    }
    for (int64_t j = k; j < k + n_lanes; j++) { /* the batches still in flight, oldest first */
        Lane *ln = &lanes[j % n_lanes];
        if (!ln->busy) continue;
        double t1 = saev_now();
        if (pthread_join(ln->thread, NULL)) saev_fail("activations: cannot join a forward lane");
        double t2 = saev_now();
        write_batch(&w, &ln->b, ln->out);
        ln->busy = 0;
        t_forward += t2 - t1;
        t_write += saev_now() - t2;
    }
    log_debug("activations: %.2f s waiting for decoded batches, %.2f s on forwards, %.2f s writing", t_wait, t_forward, t_write);
    if (w.n_writes != plan->n_writes) saev_fail("activations: made %" PRId64 " writes, planned %" PRId64, w.n_writes, plan->n_writes);
    for (; w.n_writes < plan->n_writes_all; w.n_writes++) { /* store_write is collective */
        store_write(store, 0, w.r.idx, w.r.acts, NULL, w.r.labels, w.r.patch_labels, NULL);
        int64_t step = 0;
        comm_allreduce(comm, &step, 1, COMM_I64, COMM_SUM);
        progress_update(&w.prog, w.done_global += step);
    }
    progress_finish(&w.prog);
    if (n_lanes > 1) openblas_set_num_threads(blas_threads);
    for (int i = 0; i < n_lanes && n_lanes > 1; i++) {
        vit_view_free(&lanes[i].vit);
        image_batch_free(&lanes[i].b);
        free(lanes[i].out);
    }
    free(lanes);
    free(vit_out); free(w.r.idx); free(w.r.acts); free(w.r.labels); free(w.r.patch_labels); free(w.r.reasons);
    return w.written;
}

int activations_run(const ActivationsSections *s, const Comm *comm) {
    if (!s->activations->out) saev_usage_fail("activations.out (the store directory) is required");
    int rank = comm->rank, size = comm->size;
    DataSpec dspec;
    Dataset ds;
    open_data(s->data, &dspec, &ds);
    Model m;
    open_model(s, &m, comm);
    ImageLoaderSpec ls;
    const char *pipeline;
    loader_spec(s, &m.vit, &dspec, comm, &ls, &pipeline);
    int out_w = 0, out_h = 0;
    preprocess_out_size(&ls.pre, 1000, 1000, &out_w, &out_h); /* fixed-size pipelines ignore the input size */
    if (out_w % m.vit.cfg.patch_size || out_h % m.vit.cfg.patch_size)
        saev_usage_fail("preprocess gives %dx%d images, not a multiple of the model's patch size %d", out_w, out_h, m.vit.cfg.patch_size);
    MetaText text;
    StoreMeta meta;
    store_meta_of(s, &m, &ls, pipeline, &dspec, &ds, out_h, out_w, &text, &meta);

    /* One run per store: a second `saev activations` into the same folder stops here,
     * naming the first; rank 0 holds the lock for the job's lifetime. */
    if (rank == 0) lock_output_dir_or_die(s->activations->out, "saev activations");
    Store *store = store_open_write(s->activations->out, &meta, (int)s->activations->resume, comm);
    if (rank == 0) cfg_write_resolved_text(s->config_yaml, s->activations->out);
    StorePlan plan;
    store_plan(store, rank, size, ls.batch_size, &plan);
    log_info("activations: %" PRId64 " images (%" PRId64 " to do) on %d ranks; %s, %d layers, %d tokens x %d, %s -> %s", ds.n,
             plan.n_pending, size, vit_family_name(m.vit.cfg.family), m.n_layers, meta.n_tokens, meta.d_model, s->activations->dtype,
             s->activations->out);
    double t0 = saev_now();
    int64_t written = record(comm, store, &plan, &ds, &m, &ls, &meta, out_h, out_w, s->activations->lanes);
    int complete = store_finish(store);
    double el = saev_now() - t0;
    comm_allreduce(comm, &written, 1, COMM_I64, COMM_SUM);
    if (rank == 0) {
        write_bad_list(s->activations->out);
        double gb = (double)written * m.n_layers * meta.n_tokens * meta.d_model * (double)store_dtype_size(meta.dtype) / 1e9;
        log_info("activations: %s: %" PRId64 " images, %" PRId64 " tokens, %.3f GB in %.1f s (%.1f images/s, %.3f GB/s)%s",
                 s->activations->out, written, written * meta.n_tokens, gb, el, el > 0 ? (double)written / el : 0,
                 el > 0 ? gb / el : 0, complete ? "" : " -- store NOT complete");
    }
    store_plan_free(&plan);
    free(m.blocks);
    free(m.hidden);
    vit_free(&m.vit);
    dataset_free(&ds);
    return complete;
}
