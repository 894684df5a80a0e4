/*
 * safetensors.c: the validated mmap reader and the atomic writer of safetensors.h.
 */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "fsutil.h"
#include "dtype.h"

/* A header larger than this is not a real file: real headers are kilobytes. */
#define ST_MAX_HEADER (100u << 20)

static const char *const dtype_names[ST_N_DTYPES] = {"F32", "F16", "BF16", "F64", "I64", "I32", "U8"};
static const size_t dtype_sizes[ST_N_DTYPES] = {4, 2, 2, 8, 8, 4, 1};

size_t st_dtype_size(StDtype d) { return (unsigned)d < ST_N_DTYPES ? dtype_sizes[d] : 0; }
const char *st_dtype_name(StDtype d) { return (unsigned)d < ST_N_DTYPES ? dtype_names[d] : "?"; }

int st_dtype_from_name(const char *name, StDtype *out) {
    for (int i = 0; i < ST_N_DTYPES; i++)
        if (!strcmp(name, dtype_names[i])) { *out = (StDtype)i; return 0; }
    return -1;
}

static int fail(char *err, size_t errlen, const char *path, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (err) snprintf(err, errlen, "%s: %s", path, msg);
    return -1;
}

/* A JSON number that is a non-negative integer representable exactly (< 2^53). */
static int json_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || floor(d) != d) return -1;
    *out = (uint64_t)d;
    return 0;
}

/* The first name that occurs twice among names[n] (NULL if none). A JSON header may
 * repeat a key; which copy a lookup would find is then arbitrary, so such files are
 * refused. Sorting keeps this O(n log n) for hostile headers with many entries. */
static int cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static const char *first_duplicate(char **names, int n) {
    if (n < 2) return NULL;
    char **sorted = mallocCheck(sizeof(char *) * (size_t)n);
    memcpy(sorted, names, sizeof(char *) * (size_t)n);
    qsort(sorted, (size_t)n, sizeof(char *), cmp_name);
    const char *dup = NULL;
    for (int i = 1; i < n && !dup; i++)
        if (!strcmp(sorted[i], sorted[i - 1])) dup = sorted[i];
    free(sorted);
    return dup;
}

typedef struct { uint64_t begin, end; int index; } Span;
static int span_cmp(const void *a, const void *b) {
    const Span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end < y->end ? -1 : x->end > y->end);
}

/* The file mapped read-only into st (map, map_size, path); 0, or -1 with a message. */
static int map_file(SafeTensors *st, const char *path, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return fail(err, errlen, path, "cannot open: %s", strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) < 0) { close(fd); return fail(err, errlen, path, "cannot stat: %s", strerror(errno)); }
    if (!S_ISREG(sb.st_mode)) { close(fd); return fail(err, errlen, path, "not a regular file"); }
    size_t size = (size_t)sb.st_size;
    if (size < 8) { close(fd); return fail(err, errlen, path, "truncated: %zu bytes, shorter than the 8-byte header length", size); }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return fail(err, errlen, path, "cannot mmap: %s", strerror(errno));
    st->map = map;
    st->map_size = size;
    st->path = strdupCheck(path);
    return 0;
}

/* The JSON header of the mapped file (a JSON object; cJSON_Delete it), and the data
 * section after it (*data, *data_size bytes); NULL with a message. */
static cJSON *parse_header(const SafeTensors *st, const unsigned char **data, uint64_t *data_size, char *err, size_t errlen) {
    const char *path = st->path;
    size_t size = st->map_size;
    const unsigned char *b = st->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | b[i];
    if (hlen == 0 || hlen > ST_MAX_HEADER) {
        fail(err, errlen, path, "header length %llu is not sane (expected 1..%u bytes); not a safetensors file?",
             (unsigned long long)hlen, ST_MAX_HEADER);
        return NULL;
    }
    if (hlen > size - 8) {
        fail(err, errlen, path, "truncated: header says %llu bytes but the file has only %zu after the length",
             (unsigned long long)hlen, size - 8);
        return NULL;
    }
    *data_size = size - 8 - hlen;
    *data = b + 8 + hlen;
    cJSON *root = cJSON_ParseWithLength((const char *)b + 8, (size_t)hlen);
    if (!root || !cJSON_IsObject(root)) {
        if (root) cJSON_Delete(root);
        fail(err, errlen, path, "header is not a valid JSON object");
        return NULL;
    }
    return root;
}

/* The __metadata__ entry: string values only, appended to st's meta_keys/meta_values. */
static int read_metadata(SafeTensors *st, const cJSON *it, char *err, size_t errlen) {
    if (!cJSON_IsObject(it)) return fail(err, errlen, st->path, "__metadata__ is not an object");
    for (cJSON *m = it->child; m; m = m->next) {
        if (!cJSON_IsString(m)) return fail(err, errlen, st->path, "__metadata__[\"%s\"] is not a string", m->string);
        st->meta_keys = reallocCheck(st->meta_keys, sizeof(char *) * (size_t)(st->n_meta + 1));
        st->meta_values = reallocCheck(st->meta_values, sizeof(char *) * (size_t)(st->n_meta + 1));
        st->meta_keys[st->n_meta] = strdupCheck(m->string);
        st->meta_values[st->n_meta] = strdupCheck(m->valuestring);
        st->n_meta++;
    }
    return 0;
}

/* Tensor entry `it` into st->tensors[k] (st->n_tensors = k + 1 once its name is owned):
 * a known dtype, a shape whose byte count cannot overflow, ordered offsets inside the data
 * section that hold exactly shape·dtype bytes. *span gets its byte range. */
static int read_tensor(SafeTensors *st, const cJSON *it, int k, const unsigned char *data, uint64_t data_size, Span *span, char *err,
                       size_t errlen) {
    const char *path = st->path;
    StTensor *t = &st->tensors[k];
    t->name = strdupCheck(it->string);
    st->n_tensors = k + 1;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(it, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
    if (!cJSON_IsObject(it) || !cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return fail(err, errlen, path, "tensor \"%s\": entry needs dtype, shape and two data_offsets", t->name);
    if (st_dtype_from_name(dt->valuestring, &t->dtype))
        return fail(err, errlen, path, "tensor \"%s\": unsupported dtype \"%s\"", t->name, dt->valuestring);
    int nd = cJSON_GetArraySize(sh);
    if (nd > ST_MAX_DIMS) return fail(err, errlen, path, "tensor \"%s\": %d dimensions (max %d)", t->name, nd, ST_MAX_DIMS);
    t->ndim = nd;
    uint64_t numel = 1;
    for (int i = 0; i < nd; i++) {
        uint64_t d = 0;
        if (json_u64(cJSON_GetArrayItem(sh, i), &d) || (d && numel > UINT64_MAX / 16 / d))
            return fail(err, errlen, path, "tensor \"%s\": bad shape entry %d", t->name, i);
        t->shape[i] = (int64_t)d;
        numel *= d;
    }
    uint64_t begin, end;
    if (json_u64(cJSON_GetArrayItem(off, 0), &begin) || json_u64(cJSON_GetArrayItem(off, 1), &end) || end < begin)
        return fail(err, errlen, path, "tensor \"%s\": data_offsets are not two ordered non-negative integers", t->name);
    if (end > data_size)
        return fail(err, errlen, path, "tensor \"%s\": data_offsets [%llu, %llu] run past the end of the data (%llu bytes); truncated file?",
                    t->name, (unsigned long long)begin, (unsigned long long)end, (unsigned long long)data_size);
    t->numel = (int64_t)numel;
    t->nbytes = numel * dtype_sizes[t->dtype];
    if (end - begin != t->nbytes)
        return fail(err, errlen, path, "tensor \"%s\": %llu bytes of data but shape and dtype %s need %llu", t->name,
                    (unsigned long long)(end - begin), dtype_names[t->dtype], (unsigned long long)t->nbytes);
    t->data = data + begin;
    *span = (Span){begin, end, k};
    return 0;
}

/* No tensor name and no metadata key given twice; no two tensors' bytes overlap. */
static int check_unique_and_disjoint(const SafeTensors *st, Span *spans, char *err, size_t errlen) {
    int k = st->n_tensors, rc = 0;
    char **names = mallocCheck(sizeof(char *) * (size_t)(k ? k : 1));
    for (int i = 0; i < k; i++) names[i] = st->tensors[i].name;
    const char *dup = first_duplicate(names, k);
    if (dup) rc = fail(err, errlen, st->path, "tensor \"%s\" is listed twice in the header", dup);
    free(names);
    if (rc) return rc;
    if ((dup = first_duplicate(st->meta_keys, st->n_meta))) return fail(err, errlen, st->path, "__metadata__ key \"%s\" is given twice", dup);
    qsort(spans, (size_t)k, sizeof(Span), span_cmp);
    for (int i = 1; i < k; i++)
        if (spans[i].begin < spans[i - 1].end && spans[i].end > spans[i].begin)
            return fail(err, errlen, st->path, "tensors \"%s\" and \"%s\" overlap in the data", st->tensors[spans[i - 1].index].name,
                        st->tensors[spans[i].index].name);
    return 0;
}

int st_open(SafeTensors *st, const char *path, char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    if (map_file(st, path, err, errlen)) return -1;
    const unsigned char *data;
    uint64_t data_size;
    cJSON *root = parse_header(st, &data, &data_size, err, errlen);
    if (!root) {
        st_close(st);
        return -1;
    }
    int n = 0;
    for (cJSON *it = root->child; it; it = it->next)
        if (strcmp(it->string, "__metadata__")) n++;
    st->tensors = callocCheck((size_t)n, sizeof(StTensor));
    Span *spans = callocCheck((size_t)n, sizeof(Span));
    int k = 0, rc = 0, n_meta_objects = 0;
    for (cJSON *it = root->child; it && !rc; it = it->next) {
        if (strcmp(it->string, "__metadata__")) {
            rc = read_tensor(st, it, k, data, data_size, &spans[k], err, errlen);
            k++;
        } else if (n_meta_objects++) {
            rc = fail(err, errlen, path, "__metadata__ given twice");
        } else {
            rc = read_metadata(st, it, err, errlen);
        }
    }
    cJSON_Delete(root);
    if (!rc) rc = check_unique_and_disjoint(st, spans, err, errlen);
    free(spans);
    if (rc) {
        st_close(st);
        return -1;
    }
    return 0;
}

void st_open_or_die(SafeTensors *st, const char *path) {
    char err[1024];
    if (st_open(st, path, err, sizeof err)) saev_fail("%s", err);
}

void st_close(SafeTensors *st) {
    if (st->map) munmap(st->map, st->map_size);
    for (int i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
    for (int i = 0; i < st->n_meta; i++) { free(st->meta_keys[i]); free(st->meta_values[i]); }
    free(st->tensors);
    free(st->meta_keys);
    free(st->meta_values);
    free(st->path);
    memset(st, 0, sizeof *st);
}

const StTensor *st_find(const SafeTensors *st, const char *name) {
    for (int i = 0; i < st->n_tensors; i++)
        if (!strcmp(st->tensors[i].name, name)) return &st->tensors[i];
    return NULL;
}

const StTensor *st_require(const SafeTensors *st, const char *name) {
    const StTensor *t = st_find(st, name);
    if (!t) saev_fail("%s: no tensor named \"%s\"", st->path, name);
    return t;
}

const char *st_meta(const SafeTensors *st, const char *key) {
    for (int i = 0; i < st->n_meta; i++)
        if (!strcmp(st->meta_keys[i], key)) return st->meta_values[i];
    return NULL;
}

void st_to_f32(const StTensor *t, float *out) {
    const unsigned char *p = t->data;
    for (int64_t i = 0; i < t->numel; i++) {
        switch (t->dtype) {
        case ST_F32: memcpy(&out[i], p + 4 * i, 4); break;
        case ST_F16: { uint16_t h; memcpy(&h, p + 2 * i, 2); out[i] = f16_to_f32(h); } break;
        case ST_BF16: { uint16_t h; memcpy(&h, p + 2 * i, 2); out[i] = bf16_to_f32(h); } break;
        case ST_F64: { double d; memcpy(&d, p + 8 * i, 8); out[i] = (float)d; } break;
        case ST_I64: { int64_t v; memcpy(&v, p + 8 * i, 8); out[i] = (float)v; } break;
        case ST_I32: { int32_t v; memcpy(&v, p + 4 * i, 4); out[i] = (float)v; } break;
        case ST_U8: out[i] = (float)p[i]; break;
        default: saev_fail("%s: cannot convert dtype %d", t->name, (int)t->dtype);
        }
    }
}

float *st_load_f32(const SafeTensors *st, const char *name, int ndim, const int64_t *want_shape) {
    const StTensor *t = st_require(st, name);
    if (want_shape) {
        int ok = t->ndim == ndim;
        for (int i = 0; ok && i < ndim; i++) ok = want_shape[i] < 0 || t->shape[i] == want_shape[i];
        if (!ok) {
            char have[128] = "", want[128] = "";
            for (int i = 0; i < t->ndim; i++) snprintf(have + strlen(have), sizeof have - strlen(have), "%s%lld", i ? "," : "", (long long)t->shape[i]);
            for (int i = 0; i < ndim; i++) snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? "," : "", (long long)want_shape[i]);
            saev_fail("%s: tensor \"%s\" has shape [%s], expected [%s]", st->path, name, have, want);
        }
    }
    float *out = mallocCheck((size_t)t->numel * sizeof(float));
    st_to_f32(t, out);
    return out;
}

/* ---- writer ---------------------------------------------------------------------------- */

void st_writer_init(StWriter *w) { memset(w, 0, sizeof *w); }

void st_writer_add(StWriter *w, const char *name, StDtype dtype, int ndim, const int64_t *shape, const void *data) {
    if (ndim > ST_MAX_DIMS) saev_fail("tensor \"%s\": %d dimensions (max %d)", name, ndim, ST_MAX_DIMS);
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 16;
        w->tensors = reallocCheck(w->tensors, sizeof(StWriterTensor) * (size_t)w->cap);
    }
    StWriterTensor *t = &w->tensors[w->n++];
    memset(t, 0, sizeof *t);
    t->name = name;
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->data = data;
}

void st_writer_meta(StWriter *w, const char *key, const char *value) {
    if (w->n_meta == w->cap_meta) {
        w->cap_meta = w->cap_meta ? 2 * w->cap_meta : 16;
        w->meta_keys = reallocCheck(w->meta_keys, sizeof(char *) * (size_t)w->cap_meta);
        w->meta_values = reallocCheck(w->meta_values, sizeof(char *) * (size_t)w->cap_meta);
    }
    w->meta_keys[w->n_meta] = strdupCheck(key);
    w->meta_values[w->n_meta] = strdupCheck(value);
    w->n_meta++;
}

static uint64_t writer_nbytes(const StWriterTensor *t) {
    uint64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (uint64_t)t->shape[i];
    return n * st_dtype_size(t->dtype);
}

int st_writer_write(const StWriter *w, const char *path, char *err, size_t errlen) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return fail(err, errlen, path, "out of memory");
    if (w->n_meta) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; i < w->n_meta; i++) cJSON_AddStringToObject(meta, w->meta_keys[i], w->meta_values[i]);
    }
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const StWriterTensor *t = &w->tensors[i];
        cJSON *e = cJSON_AddObjectToObject(root, t->name);
        cJSON_AddStringToObject(e, "dtype", st_dtype_name(t->dtype));
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        uint64_t nb = writer_nbytes(t);
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(off + nb)));
        off += nb;
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!json) return fail(err, errlen, path, "out of memory");
    size_t jlen = strlen(json), padded = (jlen + 7) & ~(size_t)7; /* 8-byte aligned data, as safetensors does */
    AtomicFile out;
    if (atomic_file_open(&out, path, err, errlen)) { free(json); return -1; }
    FILE *f = out.f;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(((uint64_t)padded >> (8 * i)) & 0xff);
    int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(json, 1, jlen, f) == jlen;
    for (size_t i = jlen; ok && i < padded; i++) ok = fputc(' ', f) != EOF;
    free(json);
    for (int i = 0; ok && i < w->n; i++) {
        uint64_t nb = writer_nbytes(&w->tensors[i]);
        ok = nb == 0 || fwrite(w->tensors[i].data, 1, nb, f) == nb;
    }
    if (!ok) {
        int e = errno;
        atomic_file_abort(&out);
        return fail(err, errlen, path, "write failed: %s", strerror(e));
    }
    return atomic_file_commit(&out, err, errlen);
}

void st_writer_write_or_die(const StWriter *w, const char *path) {
    char err[1024];
    if (st_writer_write(w, path, err, sizeof err)) saev_fail("%s", err);
}

void st_writer_free(StWriter *w) {
    for (int i = 0; i < w->n_meta; i++) { free(w->meta_keys[i]); free(w->meta_values[i]); }
    free(w->meta_keys);
    free(w->meta_values);
    free(w->tensors);
    memset(w, 0, sizeof *w);
}
