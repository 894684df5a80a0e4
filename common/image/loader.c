/*
 * loader.c: the thread-pool image loader (see loader.h).
 *
 * State, all under one mutex: next_item (next image to claim, as an offset from begin),
 * consumed (batches handed back by the consumer). A worker may claim image i of batch
 * b = i / batch_size only while b < consumed + queue_batches, so slot b % queue_batches
 * is free. When a slot's last image is done the consumer is woken; it compacts the kept
 * images to the front of the slot (skips), and hands the slot out. On the next call the
 * slot is released and the workers waiting for space are woken.
 */
#include "loader.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "fsutil.h"
#include "log.h"

typedef struct {
    ImageBatch b;           /* what image_loader_next hands out (pointers into the slot's buffers) */
    int size;          /* images in this batch before skips */
    int done;          /* images finished */
    char **reason;     /* [batch_size] NULL = ok, else why the image is bad */
} Slot;

struct ImageLoader {
    const Dataset *ds;
    ImageLoaderSpec spec;
    int W, H, n_patches, grid_w;
    int64_t n_items, n_batches;
    Slot *slots;                 /* [queue_batches] */
    pthread_t *threads;          /* [n_threads] */
    int n_threads;
    pthread_mutex_t mu;
    pthread_cond_t cv_space;     /* workers: a slot was released */
    pthread_cond_t cv_ready;     /* consumer: a slot completed */
    int64_t next_item, consumed;
    int holding;                 /* a batch is out with the consumer */
    int stop;
    /* bad images so far, in order */
    int64_t n_bad, cap_bad;
    int64_t *bad_index;          /* [n_bad] */
    char **bad_reason;           /* [n_bad] */
};

int image_loader_default_threads(int threads) {
    if (threads > 0) return threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Decode and preprocess one image into row `row` of slot s; the reason on failure. */
static void load_one(ImageLoader *ld, Slot *s, int row, int64_t idx, uint8_t *scratch, uint8_t *mask_buf) {
    char err[1024];
    Image8 im;
    const ImageLoaderSpec *sp = &ld->spec;
    if (decode_rgb_file(ld->ds->paths[idx], sp->max_pixels, &im, err, sizeof err)) {
        s->reason[row] = strdupCheck(err);
        return;
    }
    int ow, oh;
    preprocess_out_size(&sp->pre, im.w, im.h, &ow, &oh);
    if (ow != ld->W || oh != ld->H) { /* cannot happen with a fixed-size spec; guard anyway */
        snprintf(err, sizeof err, "%s: preprocesses to %dx%d, not %dx%d", ld->ds->paths[idx], ow, oh, ld->W, ld->H);
        s->reason[row] = strdupCheck(err);
        image8_free(&im);
        return;
    }
    if (ld->n_patches) {
        Image8 mask;
        if (decode_mask_file(ld->ds->mask_paths[idx], sp->max_pixels, &mask, err, sizeof err)) {
            s->reason[row] = strdupCheck(err);
            image8_free(&im);
            return;
        }
        if (mask.w != im.w || mask.h != im.h) {
            snprintf(err, sizeof err, "%s: mask is %dx%d but its image %s is %dx%d", ld->ds->mask_paths[idx], mask.w, mask.h,
                     ld->ds->paths[idx], im.w, im.h);
            s->reason[row] = strdupCheck(err);
            image8_free(&mask);
            image8_free(&im);
            return;
        }
        preprocess_u8(&sp->pre, INTERP_NEAREST, &mask, mask_buf);
        patch_labels_from_mask(mask_buf, ld->W, ld->H, sp->patch_size, sp->patch_label, s->b.patch_labels + (size_t)row * ld->n_patches);
        image8_free(&mask);
    }
    preprocess_image(&sp->pre, &im, s->b.pixels + (size_t)row * 3 * ld->W * ld->H, scratch);
    image8_free(&im);
}

static void *worker_main(void *arg) {
    ImageLoader *ld = arg;
    uint8_t *scratch = mallocCheck((size_t)ld->W * ld->H * 3);
    uint8_t *mask_buf = mallocCheck((size_t)ld->W * ld->H);
    const int B = ld->spec.batch_size, Q = ld->spec.queue_batches;
    pthread_mutex_lock(&ld->mu);
    for (;;) {
        int64_t i = ld->next_item;
        if (ld->stop || i >= ld->n_items) break;
        int64_t b = i / B;
        if (b >= ld->consumed + Q) { pthread_cond_wait(&ld->cv_space, &ld->mu); continue; }
        ld->next_item++;
        Slot *s = &ld->slots[b % Q];
        pthread_mutex_unlock(&ld->mu);
        load_one(ld, s, (int)(i % B), ld->spec.begin + i, scratch, mask_buf);
        pthread_mutex_lock(&ld->mu);
        if (++s->done == s->size) pthread_cond_broadcast(&ld->cv_ready);
    }
    pthread_mutex_unlock(&ld->mu);
    free(scratch);
    free(mask_buf);
    return NULL;
}

ImageLoader *image_loader_open(const Dataset *ds, const ImageLoaderSpec *spec) {
    ImageLoader *ld = callocCheck(1, sizeof *ld);
    ld->ds = ds;
    ld->spec = *spec;
    ImageLoaderSpec *sp = &ld->spec;
    if (sp->end < 0 || sp->end > ds->n) sp->end = ds->n;
    if (sp->begin < 0 || sp->begin > sp->end) saev_usage_fail("loader: index range [%lld, %lld) outside the data set of %lld images",
                                                              (long long)sp->begin, (long long)sp->end, (long long)ds->n);
    if (sp->batch_size <= 0) saev_usage_fail("loader: batch size must be positive (got %d)", sp->batch_size);
    if (sp->queue_batches <= 0) sp->queue_batches = 1;
    char err[512];
    if (preprocess_check(&sp->pre, err, sizeof err)) saev_usage_fail("preprocess: %s", err);
    /* A fixed output size: a crop (both sides) or an exact resize. */
    if (sp->pre.crop_w > 0 && sp->pre.crop_h > 0) { ld->W = sp->pre.crop_w; ld->H = sp->pre.crop_h; }
    else if (sp->pre.resize == RESIZE_EXACT) { ld->W = sp->pre.width; ld->H = sp->pre.height; }
    else saev_usage_fail("preprocess: batches need one image size: set preprocess.crop, or resize: exact");
    if (sp->patch_size > 0 && ds->mask_paths) {
        if (ld->W % sp->patch_size || ld->H % sp->patch_size)
            saev_usage_fail("preprocess: image size %dx%d is not a multiple of the patch size %d", ld->W, ld->H, sp->patch_size);
        ld->grid_w = ld->W / sp->patch_size;
        ld->n_patches = ld->grid_w * (ld->H / sp->patch_size);
    }
    ld->n_items = sp->end - sp->begin;
    ld->n_batches = (ld->n_items + sp->batch_size - 1) / sp->batch_size;
    const int B = sp->batch_size, Q = sp->queue_batches;
    ld->slots = callocCheck(Q, sizeof(Slot));
    for (int q = 0; q < Q; q++) {
        Slot *s = &ld->slots[q];
        image_batch_alloc(&s->b, B, (size_t)3 * ld->W * ld->H, ld->n_patches);
        s->reason = callocCheck(B, sizeof(char *));
    }
    /* Slot sizes for the first Q batches; later ones are set when a slot is released. */
    for (int64_t b = 0; b < Q && b < ld->n_batches; b++) {
        int64_t left = ld->n_items - b * B;
        ld->slots[b].size = left < B ? (int)left : B;
    }
    pthread_mutex_init(&ld->mu, NULL);
    pthread_cond_init(&ld->cv_space, NULL);
    pthread_cond_init(&ld->cv_ready, NULL);
    ld->n_threads = image_loader_default_threads(sp->threads);
    ld->threads = mallocCheck(sizeof(pthread_t) * ld->n_threads);
    for (int t = 0; t < ld->n_threads; t++) {
        int rc = pthread_create(&ld->threads[t], NULL, worker_main, ld);
        if (rc) saev_fail("loader: cannot start decoding thread %d: %s", t, strerror(rc));
    }
    return ld;
}

/* Hands the slot of batch `consumed` back to the workers. Called with the mutex held. */
static void release_current(ImageLoader *ld) {
    const int B = ld->spec.batch_size, Q = ld->spec.queue_batches;
    Slot *s = &ld->slots[ld->consumed % Q];
    for (int i = 0; i < s->b.n_bad; i++) free(s->b.bad_reason[i]); /* copies live in the loader's list */
    s->b.n_bad = 0;
    s->done = 0;
    ld->consumed++;
    int64_t nb = ld->consumed + Q - 1; /* the batch that now owns this slot */
    s->size = 0;
    if (nb < ld->n_batches) {
        int64_t left = ld->n_items - nb * B;
        s->size = left < B ? (int)left : B;
    }
    ld->holding = 0;
    pthread_cond_broadcast(&ld->cv_space);
}

const ImageBatch *image_loader_next(ImageLoader *ld) {
    const int B = ld->spec.batch_size, Q = ld->spec.queue_batches;
    pthread_mutex_lock(&ld->mu);
    if (ld->holding) release_current(ld);
    if (ld->consumed >= ld->n_batches) { pthread_mutex_unlock(&ld->mu); return NULL; }
    Slot *s = &ld->slots[ld->consumed % Q];
    while (s->done < s->size) pthread_cond_wait(&ld->cv_ready, &ld->mu);
    ld->holding = 1;
    pthread_mutex_unlock(&ld->mu);
    /* Compact: kept images move to the front, in order. Workers do not touch this slot. */
    ImageBatch *b = &s->b;
    b->first = ld->spec.begin + ld->consumed * B;
    b->n = 0;
    b->n_bad = 0;
    size_t px = (size_t)3 * ld->W * ld->H;
    for (int i = 0; i < s->size; i++) {
        int64_t idx = b->first + i;
        if (s->reason[i]) {
            if (ld->spec.on_bad == BAD_FAIL)
                saev_fail("bad image (data.on_bad_image: fail): %s", s->reason[i]);
            log_warn("skipping bad image %lld: %s", (long long)idx, s->reason[i]);
            b->bad_index[b->n_bad] = idx;
            b->bad_reason[b->n_bad++] = s->reason[i];
            if (ld->n_bad == ld->cap_bad) {
                ld->cap_bad = ld->cap_bad ? 2 * ld->cap_bad : 64;
                ld->bad_index = reallocCheck(ld->bad_index, sizeof(int64_t) * ld->cap_bad);
                ld->bad_reason = reallocCheck(ld->bad_reason, sizeof(char *) * ld->cap_bad);
            }
            ld->bad_index[ld->n_bad] = idx;
            ld->bad_reason[ld->n_bad++] = strdupCheck(s->reason[i]);
            s->reason[i] = NULL;
            continue;
        }
        int j = b->n++;
        if (j != i) {
            memmove(b->pixels + j * px, b->pixels + i * px, px * sizeof(float));
            if (ld->n_patches) memmove(b->patch_labels + (size_t)j * ld->n_patches, b->patch_labels + (size_t)i * ld->n_patches, ld->n_patches);
        }
        b->index[j] = idx;
        b->labels[j] = ld->ds->labels[idx];
    }
    return b;
}

void image_loader_close(ImageLoader *ld) {
    if (!ld) return;
    pthread_mutex_lock(&ld->mu);
    ld->stop = 1;
    pthread_cond_broadcast(&ld->cv_space);
    pthread_mutex_unlock(&ld->mu);
    for (int t = 0; t < ld->n_threads; t++) pthread_join(ld->threads[t], NULL);
    for (int q = 0; q < ld->spec.queue_batches; q++) {
        Slot *s = &ld->slots[q];
        for (int i = 0; i < ld->spec.batch_size; i++) free(s->reason[i]);
        free(s->reason);
        image_batch_free(&s->b);
    }
    free(ld->slots);
    free(ld->threads);
    for (int64_t i = 0; i < ld->n_bad; i++) free(ld->bad_reason[i]);
    free(ld->bad_index);
    free(ld->bad_reason);
    pthread_mutex_destroy(&ld->mu);
    pthread_cond_destroy(&ld->cv_space);
    pthread_cond_destroy(&ld->cv_ready);
    free(ld);
}

int image_loader_width(const ImageLoader *ld) { return ld->W; }
int image_loader_height(const ImageLoader *ld) { return ld->H; }
int image_loader_n_patches(const ImageLoader *ld) { return ld->n_patches; }
int64_t image_loader_n_batches(const ImageLoader *ld) { return ld->n_batches; }
int64_t image_loader_n_bad(const ImageLoader *ld) { return ld->n_bad; }

int image_loader_write_bad_list(const ImageLoader *ld, const char *path, char *err, size_t errlen) {
    AtomicFile out;
    if (atomic_file_open(&out, path, err, errlen)) return -1;
    FILE *f = out.f;
    fprintf(f, "# index\tpath\treason\n");
    for (int64_t i = 0; i < ld->n_bad; i++)
        fprintf(f, "%lld\t%s\t%s\n", (long long)ld->bad_index[i], ld->ds->paths[ld->bad_index[i]], ld->bad_reason[i]);
    return atomic_file_commit(&out, err, errlen);
}

void image_batch_alloc(ImageBatch *b, int batch_size, size_t pixel_floats, int n_patches) {
    memset(b, 0, sizeof *b);
    b->index = mallocCheck(sizeof(int64_t) * (size_t)batch_size);
    b->labels = mallocCheck(sizeof(int32_t) * (size_t)batch_size);
    b->pixels = mallocCheck(sizeof(float) * (size_t)batch_size * pixel_floats);
    if (n_patches) b->patch_labels = mallocCheck((size_t)batch_size * (size_t)n_patches);
    b->bad_index = mallocCheck(sizeof(int64_t) * (size_t)batch_size);
    b->bad_reason = callocCheck((size_t)batch_size, sizeof(char *));
}

void image_batch_copy(ImageBatch *dst, const ImageBatch *src, size_t pixel_floats, int n_patches) {
    for (int i = 0; i < dst->n_bad; i++) free(dst->bad_reason[i]);
    dst->first = src->first;
    dst->n = src->n;
    dst->n_bad = src->n_bad;
    memcpy(dst->index, src->index, sizeof(int64_t) * (size_t)src->n);
    memcpy(dst->labels, src->labels, sizeof(int32_t) * (size_t)src->n);
    memcpy(dst->pixels, src->pixels, sizeof(float) * (size_t)src->n * pixel_floats);
    if (n_patches) memcpy(dst->patch_labels, src->patch_labels, (size_t)src->n * (size_t)n_patches);
    memcpy(dst->bad_index, src->bad_index, sizeof(int64_t) * (size_t)src->n_bad);
    for (int i = 0; i < src->n_bad; i++) dst->bad_reason[i] = strdupCheck(src->bad_reason[i]);
}

void image_batch_free(ImageBatch *b) {
    for (int i = 0; i < b->n_bad; i++) free(b->bad_reason[i]);
    free(b->index); free(b->labels); free(b->pixels); free(b->patch_labels); free(b->bad_index); free(b->bad_reason);
    memset(b, 0, sizeof *b);
}
