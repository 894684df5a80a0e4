/*
 * data_source.c: the safetensors DataSource and the BatchLoader of data_source.h.
 */
#include "data_source.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "comm.h"
#include "dtype.h"
#include "rng.h"
#include "safetensors.h"

typedef struct {
    SafeTensors st;
    const StTensor *t;
} StSource;

static void st_read_rows(DataSource *src, const int64_t *ids, int n, float *out) {
    StSource *s = src->impl;
    int d = src->d;
    const char *base = s->t->data;
    for (int r = 0; r < n; r++) {
        if (ids[r] < 0 || ids[r] >= src->n_rows) saev_fail("%s: row %lld out of range", src->name, (long long)ids[r]);
        float *o = out + (size_t)r * d;
        if (s->t->dtype == ST_F32) {
            memcpy(o, base + (size_t)ids[r] * d * 4, (size_t)d * 4);
        } else {
            const char *p = base + (size_t)ids[r] * d * 2;
            for (int i = 0; i < d; i++) {
                uint16_t u;
                memcpy(&u, p + 2 * i, 2);
                o[i] = s->t->dtype == ST_F16 ? f16_to_f32(u) : bf16_to_f32(u);
            }
        }
    }
}

static void st_source_close(DataSource *src) {
    StSource *s = src->impl;
    st_close(&s->st);
    free(s);
    free((char *)src->name);
    free(src);
}

DataSource *data_source_open_safetensors(const char *path) {
    StSource *s = callocCheck(1, sizeof *s);
    st_open_or_die(&s->st, path);
    s->t = st_find(&s->st, "activations");
    if (!s->t) saev_usage_fail("%s: no tensor named \"activations\" (training data must be activations [N, d])", path);
    if (s->t->ndim != 2) saev_usage_fail("%s: \"activations\" must have shape [N, d], has %d dimensions", path, s->t->ndim);
    if (s->t->dtype != ST_F32 && s->t->dtype != ST_F16 && s->t->dtype != ST_BF16)
        saev_usage_fail("%s: \"activations\" has dtype %s; F32, F16 or BF16 expected", path, st_dtype_name(s->t->dtype));
    DataSource *src = callocCheck(1, sizeof *src);
    src->n_rows = s->t->shape[0];
    src->d = (int)s->t->shape[1];
    if (src->n_rows < 1 || src->d < 1) saev_usage_fail("%s: \"activations\" is empty", path);
    src->name = strdupCheck(path);
    src->read_rows = st_read_rows;
    src->close = st_source_close;
    src->impl = s;
    return src;
}

DataSource *data_source_open(const char *path, int layer) {
    (void)layer; /* selects the layer of a store */
    struct stat sb;
    if (stat(path, &sb) != 0) saev_usage_fail("%s: training data not found", path);
    if (S_ISDIR(sb.st_mode))
        saev_usage_fail("%s: activation stores (directories) are read by the store reader; pass a safetensors file with `activations` [N, d]", path);
    return data_source_open_safetensors(path);
}

void data_source_close(DataSource *src) {
    if (src) src->close(src);
}

int batch_loader_local_rows(int64_t global_batch, int rank, int size) {
    int64_t lo = global_batch * rank / size, hi = global_batch * (rank + 1) / size;
    return (int)(hi - lo);
}

void batch_loader_init(BatchLoader *l, DataSource *src, int64_t global_batch, int shuffle, uint64_t seed) {
    memset(l, 0, sizeof *l);
    l->src = src;
    l->batch = global_batch;
    l->shuffle = shuffle;
    l->seed = seed;
    l->perm_epoch = -1;
    l->ids = mallocCheck((size_t)(global_batch + 1) * sizeof(int64_t));
}

void batch_loader_free(BatchLoader *l) {
    free(l->perm);
    free(l->ids);
    memset(l, 0, sizeof *l);
}

static void make_perm(BatchLoader *l, int64_t epoch) {
    int64_t n = l->src->n_rows;
    if (!l->perm) l->perm = mallocCheck((size_t)n * sizeof(int64_t));
    for (int64_t i = 0; i < n; i++) l->perm[i] = i;
    uint64_t rng = l->seed * 0x9E3779B97F4A7C15ULL + (uint64_t)epoch + 1;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(&rng, (uint64_t)i + 1);
        int64_t t = l->perm[i]; l->perm[i] = l->perm[j]; l->perm[j] = t;
    }
    l->perm_epoch = epoch;
}

int batch_loader_next(BatchLoader *l, float *out) {
    int rank = comm_rank(), size = comm_size();
    int64_t n = l->src->n_rows;
    int64_t lo = l->batch * rank / size;
    int local = batch_loader_local_rows(l->batch, rank, size);
    for (int i = 0; i < local; i++) {
        int64_t g = l->position + lo + i;
        int64_t epoch = g / n, within = g % n;
        if (l->shuffle) {
            if (epoch != l->perm_epoch) make_perm(l, epoch);
            l->ids[i] = l->perm[within];
        } else {
            l->ids[i] = within;
        }
    }
    l->src->read_rows(l->src, l->ids, local, out);
    l->position += l->batch;
    return local;
}
