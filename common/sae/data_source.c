/*
 * data_source.c: the safetensors and activation-store DataSources and the BatchLoader of
 * data_source.h (window-shuffled chunk stream; each rank reads 1/size of every window on a
 * prefetch thread, and an all-to-all on the calling thread hands each row to its rank).
 */
#include "data_source.h"

#include <hdf5.h>
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "comm.h"
#include "config.h"
#include "dtype.h"
#include "rng.h"
#include "safetensors.h"
#include "store/store.h"

/* ---- safetensors ----------------------------------------------------------------------- */

enum { ST_CHUNK_ROWS = 1024 };

typedef struct {
    SafeTensors st;
    const StTensor *t;
} StSource;

static void st_read_range(DataSource *src, int64_t row0, int64_t n, float *out) {
    StSource *s = src->impl;
    size_t d = (size_t)src->d;
    if (row0 < 0 || n < 0 || row0 + n > src->n_rows) saev_fail("%s: rows [%lld, %lld) out of range", src->name, (long long)row0, (long long)(row0 + n));
    const char *base = s->t->data;
    if (s->t->dtype == ST_F32) {
        memcpy(out, base + (size_t)row0 * d * 4, (size_t)n * d * 4);
        return;
    }
    const char *p = base + (size_t)row0 * d * 2;
    for (size_t i = 0; i < (size_t)n * d; i++) {
        uint16_t u;
        memcpy(&u, p + 2 * i, 2);
        out[i] = s->t->dtype == ST_F16 ? f16_to_f32(u) : bf16_to_f32(u);
    }
}

static void st_source_close(DataSource *src) {
    StSource *s = src->impl;
    st_close(&s->st);
    free(s);
    free(src->chunk_first);
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
    src->n_chunks = (src->n_rows + ST_CHUNK_ROWS - 1) / ST_CHUNK_ROWS;
    src->chunk_first = mallocCheck((size_t)(src->n_chunks + 1) * sizeof(int64_t));
    for (int64_t c = 0; c < src->n_chunks; c++) src->chunk_first[c] = c * ST_CHUNK_ROWS;
    src->chunk_first[src->n_chunks] = src->n_rows;
    src->read_range = st_read_range;
    src->close = st_source_close;
    src->impl = s;
    return src;
}

/* ---- activation store ------------------------------------------------------------------ */

typedef struct {
    Store *store;
    int layer_idx;   // position in the store's layers
    int tok0, n_tok; // tokens [tok0, tok0 + n_tok) of every image
    int64_t n_img;   // images used (written, not skipped)
    int64_t *img;    // [n_img] their store positions, ascending
    float *scratch;  // [scratch_rows, d]
    int64_t scratch_rows;
} StoreSource;

/* Rows [row0, row0+n): images img[row0/n_tok ..], read as runs of consecutive store
 * positions (one store_read_layer each), then the wanted rows copied out. */
static void store_read_range(DataSource *src, int64_t row0, int64_t n, float *out) {
    StoreSource *s = src->impl;
    size_t d = (size_t)src->d;
    if (row0 < 0 || n < 0 || row0 + n > src->n_rows) saev_fail("%s: rows [%lld, %lld) out of range", src->name, (long long)row0, (long long)(row0 + n));
    int64_t row = row0, end = row0 + n;
    while (row < end) {
        int64_t a = row / s->n_tok, b = a + 1; /* used-image indices [a, b) of one run */
        int64_t last = (end - 1) / s->n_tok;
        int64_t max_rows = ((int64_t)1 << 24) / (int64_t)d; /* scratch of at most 64 MiB */
        while (b <= last && s->img[b] == s->img[b - 1] + 1 && (b + 1 - a) * s->n_tok <= max_rows) b++;
        int64_t rows_in_run = (b - a) * s->n_tok;
        if (rows_in_run > s->scratch_rows) {
            free(s->scratch);
            s->scratch = mallocCheck((size_t)rows_in_run * d * sizeof(float));
            s->scratch_rows = rows_in_run;
        }
        store_read_layer(s->store, s->layer_idx, s->img[a], b - a, s->tok0, s->n_tok, s->scratch);
        int64_t from = row - a * s->n_tok, to = end - a * s->n_tok < rows_in_run ? end - a * s->n_tok : rows_in_run;
        memcpy(out + (size_t)(row - row0) * d, s->scratch + (size_t)from * d, (size_t)(to - from) * d * sizeof(float));
        row = a * s->n_tok + to;
    }
}

static void store_source_close(DataSource *src) {
    StoreSource *s = src->impl;
    store_close(s->store);
    free(s->img);
    free(s->scratch);
    free(s);
    free(src->chunk_first);
    free((char *)src->name);
    free(src);
}

/* The ViT depth implied by the store's recorded config: a model.layers entry given as
 * -m that resolved to block b means depth b + m. -1 when the config does not tell. */
static int64_t store_vit_depth(const StoreMeta *m) {
    const char *y = m->config_yaml;
    if (!y) return -1;
    const char *model = !strncmp(y, "model:\n", 7) ? y : strstr(y, "\nmodel:\n");
    if (!model) return -1;
    const char *p = strchr(model + 1, '\n');
    while (p && p[1] == ' ') { /* lines of the model: mapping */
        if (!strncmp(p + 1, "  layers: [", 11)) {
            const char *q = p + 12;
            int64_t depth = -1;
            for (int i = 0; *q && *q != ']'; i++) {
                char *e;
                long long v = strtoll(q, &e, 10);
                if (e == q || i >= m->n_layers) return -1;
                if (v < 0) {
                    int64_t dd = m->layers[i] - v;
                    if (depth >= 0 && dd != depth) return -1;
                    depth = dd;
                }
                q = e;
                while (*q == ',' || *q == ' ') q++;
            }
            return depth;
        }
        p = strchr(p + 1, '\n');
    }
    return -1;
}

int store_layer_index_or_die(const Store *st, int64_t layer, const char *key, int *block_out) {
    const StoreMeta *m = &st->meta;
    char listed[512] = "";
    for (int i = 0; i < m->n_layers; i++) snprintf(listed + strlen(listed), sizeof listed - strlen(listed), "%s%d", i ? ", " : "", m->layers[i]);
    int idx = -1;
    if (layer == CFG_UNSET_INT) {
        if (m->n_layers != 1) saev_usage_fail("%s: store %s holds blocks [%s]; say which one (%s)", key, st->dir, listed, key);
        idx = 0;
    } else {
        int64_t block = layer;
        if (layer < 0) {
            int64_t depth = store_vit_depth(m);
            if (depth < 0)
                saev_usage_fail("%s: %lld counts from the end of the ViT, but store %s does not record the ViT's depth; "
                                "give the block number, one of [%s]", key, (long long)layer, st->dir, listed);
            block = depth + layer;
        }
        for (int i = 0; i < m->n_layers; i++)
            if (m->layers[i] == block) idx = i;
        if (idx < 0)
            saev_usage_fail("%s: block %lld%s is not in store %s, which holds blocks [%s]", key, (long long)block,
                            layer < 0 ? " (counted from the end)" : "", st->dir, listed);
    }
    if (block_out) *block_out = m->layers[idx];
    return idx;
}

DataSource *data_source_open_store(const char *section, const char *dir, int64_t layer, const char *tokens) {
    char err[1024];
    Store *st = store_open_read(dir, err, sizeof err);
    if (!st) saev_usage_fail("%s.data: %s", section, err);
    const StoreMeta *m = &st->meta;
    if (!st->complete) {
        int64_t pending = 0;
        for (int64_t i = 0; i < m->n_images; i++) pending += st->status[i] == STORE_PENDING;
        saev_usage_fail("%s.data: store %s is incomplete (%lld of %lld images not yet written); finish `saev activations` first", section, dir,
                        (long long)pending, (long long)m->n_images);
    }
    StoreSource *s = callocCheck(1, sizeof *s);
    s->store = st;
    char key[64];
    snprintf(key, sizeof key, "%s.layer", section);
    s->layer_idx = store_layer_index_or_die(st, layer, key, NULL);
    if (!strcmp(tokens, "patches")) {
        s->tok0 = m->has_cls, s->n_tok = m->n_patches;
        if (s->n_tok < 1) saev_usage_fail("%s.tokens: store %s holds no patch tokens", section, dir);
    } else if (!strcmp(tokens, "cls")) {
        if (!m->has_cls) saev_usage_fail("%s.tokens: cls, but store %s has no CLS token", section, dir);
        s->tok0 = 0, s->n_tok = 1;
    } else if (!strcmp(tokens, "all")) {
        s->tok0 = 0, s->n_tok = m->n_tokens;
    } else {
        saev_usage_fail("%s.tokens: \"%s\" is not patches, all or cls", section, tokens);
    }
    s->img = mallocCheck((size_t)(m->n_images > 0 ? m->n_images : 1) * sizeof(int64_t));
    for (int64_t i = 0; i < m->n_images; i++)
        if (st->status[i] == STORE_WRITTEN) s->img[s->n_img++] = i;
    if (s->n_img == 0) saev_usage_fail("%s.data: store %s holds no written images", section, dir);

    /* Chunks: the HDF5 chunk's image count, aligned within each file. */
    hid_t dcpl = H5Dget_create_plist(st->d_acts[0]);
    h5Check(dcpl);
    hsize_t chunk[4] = {0, 0, 0, 0};
    int64_t per_chunk = H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_chunk(dcpl, 4, chunk) >= 1 && chunk[0] > 0 ? (int64_t)chunk[0] : 1;
    h5Check(H5Pclose(dcpl));
    DataSource *src = callocCheck(1, sizeof *src);
    src->n_rows = s->n_img * s->n_tok;
    src->d = m->d_model;
    src->name = strdupCheck(dir);
    src->chunk_first = mallocCheck((size_t)(s->n_img + 1) * sizeof(int64_t));
    int f = 0;
    int64_t prev = -1;
    for (int64_t j = 0; j < s->n_img; j++) {
        int64_t i = s->img[j];
        while (i >= st->file_first[f + 1]) f++;
        int64_t id = (int64_t)f << 40 | (i - st->file_first[f]) / per_chunk;
        if (id != prev) src->chunk_first[src->n_chunks++] = j * s->n_tok;
        prev = id;
    }
    src->chunk_first[src->n_chunks] = src->n_rows;
    src->read_range = store_read_range;
    src->close = store_source_close;
    src->impl = s;
    return src;
}

DataSource *data_source_open(const char *section, const char *path, int64_t layer, const char *tokens) {
    struct stat sb;
    if (stat(path, &sb) != 0) saev_usage_fail("%s.data: %s not found", section, path);
    if (S_ISDIR(sb.st_mode)) return data_source_open_store(section, path, layer, tokens);
    return data_source_open_safetensors(path);
}

void data_source_close(DataSource *src) {
    if (src) src->close(src);
}

void data_source_read_rows(DataSource *src, const int64_t *ids, int n, float *out) {
    for (int i = 0; i < n;) {
        int j = i + 1;
        while (j < n && ids[j] == ids[j - 1] + 1) j++;
        src->read_range(src, ids[i], j - i, out + (size_t)i * src->d);
        i = j;
    }
}

/* ---- batch loader ---------------------------------------------------------------------- */

typedef struct {
    MPI_Comm comm;         // duplicate of the loader's Comm: the exchanges only
    MPI_Datatype row_type; // d floats
} LoaderMpi;

int batch_loader_local_rows(int64_t global_batch, int rank, int size) {
    int64_t lo = global_batch * rank / size, hi = global_batch * (rank + 1) / size;
    return (int)(hi - lo);
}

/* The part r of [0, n) cut into `parts` pieces [n·r/parts, n·(r+1)/parts) that holds x:
 * the largest r with floor(n·r/parts) <= x, i.e. r = floor(((x + 1)·parts - 1) / n). Used
 * both for the rank whose batch share holds offset x of a batch and for the rank that
 * reads offset x of a window. */
static int part_of(int64_t x, int64_t n, int parts) { return (int)(((x + 1) * parts - 1) / n); }

/* Positions p in [a, b) with p mod B in [lo, hi): this rank's rows there. */
static int64_t count_mine(const BatchLoader *l, int64_t a, int64_t b) {
    if (b <= a) return 0;
    int64_t B = l->batch, n = 0;
    for (int64_t q = a / B; q * B < b; q++) {
        int64_t x = q * B + l->lo > a ? q * B + l->lo : a, y = q * B + l->hi < b ? q * B + l->hi : b;
        if (y > x) n += y - x;
    }
    return n;
}

static int64_t windows_per_epoch(const BatchLoader *l) { return (l->src->n_rows + l->window - 1) / l->window; }

/* Window k: its first global position and its length. */
static void window_span(const BatchLoader *l, int64_t k, int64_t *start, int64_t *len) {
    int64_t N = l->src->n_rows, W = l->window, nw = windows_per_epoch(l), e = k / nw, wi = k % nw;
    *start = e * N + wi * W;
    *len = W < N - wi * W ? W : N - wi * W;
}

static int64_t window_of(const BatchLoader *l, int64_t p) {
    int64_t N = l->src->n_rows;
    return p / N * windows_per_epoch(l) + p % N / l->window;
}

/* Fisher-Yates of [0, n) from a stream seeded by (seed, a, b). */
static void permutation(int64_t *p, int64_t n, uint64_t seed, uint64_t a, uint64_t b) {
    for (int64_t i = 0; i < n; i++) p[i] = i;
    uint64_t rng = seed * 0x9E3779B97F4A7C15ULL ^ (a + 1) * 0xBF58476D1CE4E5B9ULL ^ (b + 1) * 0x94D049BB133111EBULL;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(&rng, (uint64_t)i + 1);
        int64_t t = p[i]; p[i] = p[j]; p[j] = t;
    }
}

/* Thread-private state of the window reader. */
typedef struct {
    int64_t epoch;    // epoch whose chunk order is cached (-1: none)
    int64_t *order;   // [n_chunks] chunk order of that epoch
    int64_t *cum;     // [n_chunks + 1] stream offset of each chunk in that order
    int64_t *perm;    // [W] window permutation: emission offset -> window offset
    float *piece;     // [read_cap, d] this rank's piece of the window, stream order
    int *cursor;      // [size] rows placed per rank so far
} Reader;

/* The chunk (index into the epoch's order) holding stream offset j. */
static int64_t chunk_at(const DataSource *src, const Reader *f, int64_t j) {
    int64_t a = 0, b = src->n_chunks; /* cum[a] <= j < cum[b] */
    while (b - a > 1) {
        int64_t m = (a + b) / 2;
        if (f->cum[m] <= j) a = m; else b = m;
    }
    return a;
}

/* Reads this rank's piece of window k and packs it by destination rank; plans where
 * this rank's rows of the window will land in what the exchange delivers. */
static void read_window(BatchLoader *l, Reader *f, LoaderRead *r, int64_t k) {
    DataSource *src = l->src;
    int size = l->size, me = l->rank;
    int64_t W = l->window, B = l->batch, nw = windows_per_epoch(l);
    int64_t e = k / nw, wi = k % nw, P0, L;
    window_span(l, k, &P0, &L);
    if (f->epoch != e) {
        if (l->shuffle) permutation(f->order, src->n_chunks, l->seed, (uint64_t)e, UINT64_MAX - 1);
        else for (int64_t c = 0; c < src->n_chunks; c++) f->order[c] = c;
        f->cum[0] = 0;
        for (int64_t c = 0; c < src->n_chunks; c++) f->cum[c + 1] = f->cum[c] + src->chunk_first[f->order[c] + 1] - src->chunk_first[f->order[c]];
        f->epoch = e;
    }
    if (l->shuffle) permutation(f->perm, L, l->seed, (uint64_t)e, (uint64_t)wi);
    else for (int64_t o = 0; o < L; o++) f->perm[o] = o;
    size_t d = (size_t)src->d;

    /* My piece [a, b) of the window's offsets: one sequential read per chunk piece. */
    int64_t a = L * me / size, b = L * (me + 1) / size;
    if (b - a > l->read_cap) saev_fail("loader: a window piece of %lld rows, more than its %lld slots", (long long)(b - a), (long long)l->read_cap);
    for (int64_t j = wi * W + a; j < wi * W + b;) {
        int64_t c = chunk_at(src, f, j);
        int64_t end = f->cum[c + 1] < wi * W + b ? f->cum[c + 1] : wi * W + b;
        src->read_range(src, src->chunk_first[f->order[c]] + j - f->cum[c], end - j, f->piece + (size_t)(j - wi * W - a) * d);
        j = end;
    }
    r->n_read = b - a;

    /* Pack: walking emission order, each row I read goes to the rank whose share holds
     * its position, so every group is in emission order. */
    for (int q = 0; q < size; q++) r->send_count[q] = 0;
    for (int64_t o = 0; o < L; o++)
        if (f->perm[o] >= a && f->perm[o] < b) r->send_count[part_of((P0 + o) % B, B, size)]++;
    for (int q = 0; q < size; q++) {
        r->send_displ[q] = q ? r->send_displ[q - 1] + r->send_count[q - 1] : 0;
        f->cursor[q] = r->send_displ[q];
    }
    for (int64_t o = 0; o < L; o++) {
        int64_t s = f->perm[o];
        if (s < a || s >= b) continue;
        int q = part_of((P0 + o) % B, B, size);
        memcpy(r->send + (size_t)f->cursor[q]++ * d, f->piece + (size_t)(s - a) * d, d * sizeof(float));
    }

    /* Receive plan: my positions in order; the row of each comes from the rank that
     * read its window offset, after that rank's earlier rows for me. */
    for (int q = 0; q < size; q++) r->recv_count[q] = 0;
    int64_t m = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            for (int q = 0; q < size; q++) {
                r->recv_displ[q] = q ? r->recv_displ[q - 1] + r->recv_count[q - 1] : 0;
                f->cursor[q] = r->recv_displ[q];
            }
        }
        m = 0;
        for (int64_t qb = P0 / B; qb * B < P0 + L; qb++)
            for (int64_t p = qb * B + l->lo; p < qb * B + l->hi; p++) {
                if (p < P0 || p >= P0 + L) continue;
                int64_t s = f->perm[p - P0];
                int q = part_of(s, L, size);
                if (pass == 0) {
                    r->recv_count[q]++;
                } else {
                    int64_t j = wi * W + s, c = chunk_at(src, f, j);
                    r->ids[m] = src->chunk_first[f->order[c]] + j - f->cum[c];
                    r->from[m] = f->cursor[q]++;
                }
                if (++m > l->cap) saev_fail("loader: window holds more than its %lld slots", (long long)l->cap);
            }
    }
    r->n = m;
    r->k = k;
}

static void *prefetch_main(void *arg) {
    BatchLoader *l = arg;
    DataSource *src = l->src;
    Reader f = {.epoch = -1};
    f.order = mallocCheck((size_t)src->n_chunks * sizeof(int64_t));
    f.cum = mallocCheck((size_t)(src->n_chunks + 1) * sizeof(int64_t));
    f.perm = mallocCheck((size_t)l->window * sizeof(int64_t));
    f.piece = mallocCheck((size_t)l->read_cap * src->d * sizeof(float));
    f.cursor = mallocCheck((size_t)l->size * sizeof(int));
    for (int64_t k = l->first_k;; k++) {
        LoaderRead *r = &l->read[k % 2];
        pthread_mutex_lock(&l->mu);
        while (r->ready && !l->stop) pthread_cond_wait(&l->cv, &l->mu);
        int stop = l->stop;
        pthread_mutex_unlock(&l->mu);
        if (stop) break;
        read_window(l, &f, r, k);
        pthread_mutex_lock(&l->mu);
        r->ready = 1;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
    }
    free(f.order);
    free(f.cum);
    free(f.perm);
    free(f.piece);
    free(f.cursor);
    return NULL;
}

/* Waits for the thread's read of window k, exchanges it (calling thread, collective
 * when size > 1) into win[k % 2] and hands the read slot back to the thread. */
static void exchange_window(BatchLoader *l, int64_t k) {
    LoaderRead *r = &l->read[k % 2];
    LoaderWindow *w = &l->win[k % 2];
    pthread_mutex_lock(&l->mu);
    while (!r->ready) pthread_cond_wait(&l->cv, &l->mu);
    pthread_mutex_unlock(&l->mu);
    if (r->k != k) saev_fail("loader: window %lld expected, the read slot holds %lld", (long long)k, (long long)r->k);
    if (l->size > 1) {
        LoaderMpi *mp = l->mpi;
        mpiCheck(MPI_Alltoallv(r->send, r->send_count, r->send_displ, mp->row_type, w->rows, r->recv_count, r->recv_displ, mp->row_type,
                               mp->comm));
    } else { /* one rank: the packed rows are already mine, in emission order */
        float *t = w->rows; w->rows = r->send; r->send = t;
    }
    int64_t *t = w->ids; w->ids = r->ids; r->ids = t;
    t = w->from; w->from = r->from; r->from = t;
    w->n = r->n;
    w->k = k;
    l->rows_read += r->n_read;
    pthread_mutex_lock(&l->mu);
    r->ready = 0;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

void batch_loader_init(BatchLoader *l, DataSource *src, const Comm *comm, int64_t global_batch, int shuffle, int64_t shuffle_buffer,
                       uint64_t seed, int64_t position) {
    memset(l, 0, sizeof *l);
    int rank = comm->rank, size = comm->size;
    l->src = src;
    l->batch = global_batch;
    l->shuffle = shuffle;
    l->seed = seed;
    l->rank = rank;
    l->size = size;
    l->window = shuffle_buffer < src->n_rows ? shuffle_buffer : src->n_rows;
    if (l->window < 1) l->window = 1;
    l->lo = global_batch * rank / size;
    l->hi = global_batch * (rank + 1) / size;
    l->position = position;
    l->ids = mallocCheck((size_t)(l->hi - l->lo + 1) * sizeof(int64_t));
    /* A window of W positions meets at most ceil(W/B) + 1 batches. */
    int64_t share = l->hi - l->lo, by_batches = ((l->window + global_batch - 1) / global_batch + 1) * share;
    l->cap = by_batches < l->window ? by_batches : l->window;
    l->read_cap = (l->window + size - 1) / size;
    /* One rank swaps the packed and received buffers instead of copying: same size. */
    l->send_cap = size > 1 ? l->read_cap : (l->read_cap > l->cap ? l->read_cap : l->cap);
    l->recv_cap = size > 1 ? l->cap : l->send_cap;
    if (size > 1) {
        if (l->window > INT_MAX) saev_usage_fail("train.shuffle_buffer %lld: at most %d rows on several ranks", (long long)l->window, INT_MAX);
        LoaderMpi *mp = callocCheck(1, sizeof *mp);
        mpiCheck(MPI_Comm_dup(comm->mpi, &mp->comm));
        mpiCheck(MPI_Type_contiguous(src->d, MPI_FLOAT, &mp->row_type));
        mpiCheck(MPI_Type_commit(&mp->row_type));
        l->mpi = mp;
    }
    size_t d = (size_t)src->d;
    for (int i = 0; i < 2; i++) {
        LoaderRead *r = &l->read[i];
        r->k = -1;
        r->send = mallocCheck((size_t)(l->send_cap > 0 ? l->send_cap : 1) * d * sizeof(float));
        r->send_count = mallocCheck((size_t)size * sizeof(int));
        r->send_displ = mallocCheck((size_t)size * sizeof(int));
        r->recv_count = mallocCheck((size_t)size * sizeof(int));
        r->recv_displ = mallocCheck((size_t)size * sizeof(int));
        r->ids = mallocCheck((size_t)(l->cap + 1) * sizeof(int64_t));
        r->from = mallocCheck((size_t)(l->cap + 1) * sizeof(int64_t));
        LoaderWindow *w = &l->win[i];
        w->k = -1;
        w->rows = mallocCheck((size_t)(l->recv_cap > 0 ? l->recv_cap : 1) * d * sizeof(float));
        w->ids = mallocCheck((size_t)(l->cap + 1) * sizeof(int64_t));
        w->from = mallocCheck((size_t)(l->cap + 1) * sizeof(int64_t));
    }
    /* Every rank starts at the window holding the batch's first position, so all
     * exchange the same windows (also those where this rank's share starts later). */
    l->first_k = l->next_x = window_of(l, position);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    if (pthread_create(&l->thread, NULL, prefetch_main, l) != 0) saev_fail("loader: cannot start the prefetch thread");
    l->started = 1;
}

void batch_loader_free(BatchLoader *l) {
    if (l->started) {
        pthread_mutex_lock(&l->mu);
        l->stop = 1;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->thread, NULL);
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->cv);
    }
    for (int i = 0; i < 2; i++) {
        LoaderRead *r = &l->read[i];
        free(r->send);
        free(r->send_count);
        free(r->send_displ);
        free(r->recv_count);
        free(r->recv_displ);
        free(r->ids);
        free(r->from);
        free(l->win[i].rows);
        free(l->win[i].ids);
        free(l->win[i].from);
    }
    if (l->mpi) {
        LoaderMpi *mp = l->mpi;
        mpiCheck(MPI_Type_free(&mp->row_type));
        mpiCheck(MPI_Comm_free(&mp->comm));
        free(mp);
    }
    free(l->ids);
    memset(l, 0, sizeof *l);
}

int batch_loader_next(BatchLoader *l, float *out) {
    int64_t local = l->hi - l->lo, got = 0, p0 = l->position, p1 = p0 + l->batch;
    size_t d = (size_t)l->src->d;
    /* The windows this batch touches, in order; each exchanged the first time a batch
     * touches it (the same call on every rank), then my rows of it in this batch taken. */
    for (int64_t k = window_of(l, p0);; k++) {
        int64_t start, len;
        window_span(l, k, &start, &len);
        if (start >= p1) break;
        if (k == l->next_x) {
            exchange_window(l, k);
            l->next_x++;
        }
        LoaderWindow *w = &l->win[k % 2];
        if (w->k != k) saev_fail("loader: window %lld expected, slot holds %lld", (long long)k, (long long)w->k);
        int64_t a = p0 + l->lo > start ? p0 + l->lo : start, b = p0 + l->hi < start + len ? p0 + l->hi : start + len;
        if (b <= a) continue;
        int64_t off = count_mine(l, start, a);
        for (int64_t i = 0; i < b - a; i++) {
            memcpy(out + (size_t)(got + i) * d, w->rows + (size_t)w->from[off + i] * d, d * sizeof(float));
            l->ids[got + i] = w->ids[off + i];
        }
        got += b - a;
    }
    if (got != local) saev_fail("loader: %lld rows for a share of %lld", (long long)got, (long long)local);
    l->position += l->batch;
    return (int)local;
}
