/*
 * store.c: the activation store (layout, crash safety and resume are described in
 * store.h). Writers go through parallel HDF5 (MPI-IO driver, collective hyperslab writes)
 * or, for one process, the sec2 driver; readers always use sec2.
 */
#include "fsutil.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "dtype.h"
#include "fault.h"
#include "log.h"

#define STORE_CHUNK_BYTES (4u << 20) /* target bytes per activations chunk */
#define STORE_MAX_ATTR_TEXT 60000    /* compact attribute storage holds < 64 KiB */

/* ---- dtypes ------------------------------------------------------------------------ */

size_t store_dtype_size(StoreDtype t) { return t == STORE_F32 ? 4 : 2; }

const char *store_dtype_name(StoreDtype t) {
    return t == STORE_F32 ? "float32" : t == STORE_F16 ? "float16" : "bfloat16";
}

int store_dtype_parse(const char *name, StoreDtype *out) {
    if (!name) return -1;
    if (!strcmp(name, "float32")) *out = STORE_F32;
    else if (!strcmp(name, "float16")) *out = STORE_F16;
    else if (!strcmp(name, "bfloat16")) *out = STORE_BF16;
    else return -1;
    return 0;
}

/* IEEE half: what h5py writes for numpy float16 (HDF5 1.10 has no predefined one). */
static hid_t make_f16_type(void) {
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    h5Check(t);
    h5Check(H5Tset_fields(t, 15, 10, 5, 0, 10));
    h5Check(H5Tset_size(t, 2));
    h5Check(H5Tset_ebias(t, 15));
    return t;
}

/* bfloat16: the top half of an IEEE float32. */
static hid_t make_bf16_type(void) {
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    h5Check(t);
    h5Check(H5Tset_fields(t, 15, 7, 8, 0, 7));
    h5Check(H5Tset_size(t, 2));
    h5Check(H5Tset_ebias(t, 127));
    return t;
}

/* ---- attributes -------------------------------------------------------------------- */

static hid_t vl_string_type(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    h5Check(t);
    h5Check(H5Tset_size(t, H5T_VARIABLE));
    h5Check(H5Tset_cset(t, H5T_CSET_UTF8));
    return t;
}

static void attr_write_str(hid_t obj, const char *name, const char *value) {
    const char *v = value ? value : "";
    if (strlen(v) > STORE_MAX_ATTR_TEXT)
        saev_fail("store attribute %s is %zu bytes, more than the %d an HDF5 attribute holds", name, strlen(v),
                  STORE_MAX_ATTR_TEXT);
    hid_t t = vl_string_type(), sp = H5Screate(H5S_SCALAR);
    h5Check(sp);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    h5Check(a);
    h5Check(H5Awrite(a, t, &v));
    h5Check(H5Aclose(a));
    h5Check(H5Sclose(sp));
    h5Check(H5Tclose(t));
}

static void attr_write_i64s(hid_t obj, const char *name, const int64_t *v, int n, int scalar) {
    hsize_t dims = (hsize_t)n;
    hid_t sp = scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dims, NULL);
    h5Check(sp);
    hid_t a = H5Acreate2(obj, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    h5Check(a);
    h5Check(H5Awrite(a, H5T_NATIVE_INT64, v));
    h5Check(H5Aclose(a));
    h5Check(H5Sclose(sp));
}

static void attr_write_i64(hid_t obj, const char *name, int64_t v) { attr_write_i64s(obj, name, &v, 1, 1); }

/* Reads a string attribute (variable or fixed length) as a malloc'd string; NULL if absent. */
static char *attr_read_str(hid_t obj, const char *name) {
    if (H5Aexists(obj, name) <= 0) return NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    h5Check(a);
    hid_t ft = H5Aget_type(a);
    h5Check(ft);
    char *out = NULL;
    if (H5Tget_class(ft) != H5T_STRING) {
        out = NULL;
    } else if (H5Tis_variable_str(ft) > 0) {
        hid_t t = vl_string_type();
        char *p = NULL;
        h5Check(H5Aread(a, t, &p));
        out = strdupCheck(p ? p : "");
        if (p) h5Check(H5free_memory(p));
        h5Check(H5Tclose(t));
    } else {
        size_t n = H5Tget_size(ft);
        out = callocCheck(n + 1, 1);
        hid_t t = H5Tcopy(H5T_C_S1);
        h5Check(t);
        h5Check(H5Tset_size(t, n));
        h5Check(H5Aread(a, t, out));
        h5Check(H5Tclose(t));
    }
    h5Check(H5Tclose(ft));
    h5Check(H5Aclose(a));
    return out;
}

/* Reads an integer attribute (scalar or 1-D) into *out (malloc'd); returns the count, -1 if absent. */
static int attr_read_i64s(hid_t obj, const char *name, int64_t **out) {
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    h5Check(a);
    hid_t ft = H5Aget_type(a), sp = H5Aget_space(a);
    h5Check(ft);
    h5Check(sp);
    int n = -1;
    if (H5Tget_class(ft) == H5T_INTEGER) {
        hssize_t np = H5Sget_simple_extent_npoints(sp);
        h5Check(np);
        n = (int)np;
        *out = mallocCheck(sizeof(int64_t) * (size_t)(n ? n : 1));
        h5Check(H5Aread(a, H5T_NATIVE_INT64, *out));
    }
    h5Check(H5Sclose(sp));
    h5Check(H5Tclose(ft));
    h5Check(H5Aclose(a));
    return n;
}

static int attr_read_i64(hid_t obj, const char *name, int64_t *v) {
    int64_t *p = NULL;
    int n = attr_read_i64s(obj, name, &p);
    if (n == 1) *v = p[0];
    free(p);
    return n == 1 ? 0 : -1;
}

/* ---- metadata ---------------------------------------------------------------------- */

void store_token_layout(const StoreMeta *m, char *buf, size_t len) {
    snprintf(buf, len, "%s%d patch tokens in raster order (row-major); registers not stored",
             m->has_cls ? "CLS at token 0, then " : "no CLS; ", m->n_patches);
}

void store_meta_free(StoreMeta *m) {
    free(m->model_family);
    free(m->model);
    free(m->checkpoint_digest);
    free(m->layers);
    free(m->preprocessing);
    free(m->dataset);
    free(m->saev_version);
    free(m->config_yaml);
    memset(m, 0, sizeof *m);
}

static void meta_copy(StoreMeta *dst, const StoreMeta *src) {
    *dst = *src;
    dst->model_family = strdupCheck(src->model_family);
    dst->model = strdupCheck(src->model);
    dst->checkpoint_digest = strdupCheck(src->checkpoint_digest);
    dst->layers = mallocCheck(sizeof(int) * (size_t)src->n_layers);
    memcpy(dst->layers, src->layers, sizeof(int) * (size_t)src->n_layers);
    dst->preprocessing = strdupCheck(src->preprocessing);
    dst->dataset = strdupCheck(src->dataset);
    dst->saev_version = strdupCheck(src->saev_version ? src->saev_version : SAEV_VERSION);
    dst->config_yaml = strdupCheck(src->config_yaml);
}

static const char *str_or_empty(const char *s) { return s ? s : ""; }

static void layers_text(const StoreMeta *m, char *buf, size_t len) {
    size_t k = 0;
    buf[0] = 0;
    k += (size_t)snprintf(buf + k, len - k, "[");
    for (int i = 0; i < m->n_layers && k < len; i++) k += (size_t)snprintf(buf + k, len - k, "%s%d", i ? ", " : "", m->layers[i]);
    if (k < len) snprintf(buf + k, len - k, "]");
}

const char *store_meta_compare(const StoreMeta *a, const StoreMeta *b, char *msg, size_t len) {
#define CMP_STR(key, f)                                                                                      \
    if (strcmp(str_or_empty(a->f), str_or_empty(b->f))) {                                                 \
        snprintf(msg, len, "%s differs: the store has \"%.200s\", this run has \"%.200s\"", key, str_or_empty(a->f), \
                 str_or_empty(b->f));                                                                        \
        return key;                                                                                          \
    }
#define CMP_INT(key, f)                                                                                      \
    if ((int64_t)a->f != (int64_t)b->f) {                                                                    \
        snprintf(msg, len, "%s differs: the store has %lld, this run has %lld", key, (long long)a->f, (long long)b->f); \
        return key;                                                                                          \
    }
    CMP_STR("model_family", model_family);
    CMP_STR("model", model);
    CMP_STR("checkpoint_digest", checkpoint_digest);
    int same_layers = a->n_layers == b->n_layers;
    for (int i = 0; same_layers && i < a->n_layers; i++) same_layers = a->layers[i] == b->layers[i];
    if (!same_layers) {
        char la[256], lb[256];
        layers_text(a, la, sizeof la);
        layers_text(b, lb, sizeof lb);
        snprintf(msg, len, "layers differs: the store has %s, this run has %s", la, lb);
        return "layers";
    }
    CMP_INT("tokens", n_tokens);
    CMP_INT("has_cls", has_cls);
    CMP_INT("patches", n_patches);
    CMP_INT("d_model", d_model);
    if (a->dtype != b->dtype) {
        snprintf(msg, len, "dtype differs: the store has %s, this run has %s", store_dtype_name(a->dtype),
                 store_dtype_name(b->dtype));
        return "dtype";
    }
    CMP_INT("n_images", n_images);
    CMP_INT("images_per_file", images_per_file);
    CMP_INT("patch_labels", has_patch_labels);
    CMP_STR("preprocessing", preprocessing);
    CMP_STR("dataset", dataset);
#undef CMP_STR
#undef CMP_INT
    return NULL;
}

static void meta_check(const StoreMeta *m, const char *dir) {
    if (m->n_images <= 0 || m->n_layers <= 0 || m->d_model <= 0 || m->n_patches < 0 || m->images_per_file < 0)
        saev_usage_fail("store %s: bad shape (images %lld, layers %d, patches %d, d_model %d, images_per_file %lld)", dir,
                        (long long)m->n_images, m->n_layers, m->n_patches, m->d_model, (long long)m->images_per_file);
    if (m->n_tokens != m->has_cls + m->n_patches || m->n_tokens <= 0)
        saev_usage_fail("store %s: tokens (%d) must equal CLS (%d) + patches (%d)", dir, m->n_tokens, m->has_cls, m->n_patches);
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i] < 0) saev_usage_fail("store %s: layers must be resolved to block indices >= 0 (got %d)", dir, m->layers[i]);
    if (m->dtype != STORE_F32 && m->dtype != STORE_F16 && m->dtype != STORE_BF16) saev_usage_fail("store %s: unknown dtype %d", dir, (int)m->dtype);
}

static void meta_write_attrs(hid_t f, const StoreMeta *m) {
    char layout[256];
    store_token_layout(m, layout, sizeof layout);
    attr_write_str(f, "model_family", m->model_family);
    attr_write_str(f, "model", m->model);
    attr_write_str(f, "checkpoint_digest", m->checkpoint_digest);
    int64_t *layers = mallocCheck(sizeof(int64_t) * (size_t)m->n_layers);
    for (int i = 0; i < m->n_layers; i++) layers[i] = m->layers[i];
    attr_write_i64s(f, "layers", layers, m->n_layers, 0);
    free(layers);
    attr_write_i64(f, "tokens", m->n_tokens);
    attr_write_i64(f, "has_cls", m->has_cls);
    attr_write_i64(f, "patches", m->n_patches);
    attr_write_str(f, "token_layout", layout);
    attr_write_i64(f, "d_model", m->d_model);
    attr_write_str(f, "dtype", store_dtype_name(m->dtype));
    attr_write_i64(f, "n_images", m->n_images);
    attr_write_i64(f, "images_per_file", m->images_per_file);
    attr_write_i64(f, "patch_labels", m->has_patch_labels);
    attr_write_str(f, "preprocessing", m->preprocessing);
    attr_write_str(f, "dataset", m->dataset);
    attr_write_str(f, "saev_version", m->saev_version);
    attr_write_str(f, "config", m->config_yaml);
}

/* Reads a file's metadata attributes; returns NULL or the name of what is missing. */
static const char *meta_read_attrs(hid_t f, StoreMeta *m) {
    memset(m, 0, sizeof *m);
    int64_t v = 0, *layers = NULL;
#define RD_STR(key, field) \
    if (!(m->field = attr_read_str(f, key))) return key;
#define RD_INT(key, field)                        \
    if (attr_read_i64(f, key, &v)) return key;    \
    m->field = v;
    RD_STR("model_family", model_family);
    RD_STR("model", model);
    RD_STR("checkpoint_digest", checkpoint_digest);
    int n = attr_read_i64s(f, "layers", &layers);
    if (n <= 0) { free(layers); return "layers"; }
    m->n_layers = n;
    m->layers = mallocCheck(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) m->layers[i] = (int)layers[i];
    free(layers);
    RD_INT("tokens", n_tokens);
    RD_INT("has_cls", has_cls);
    RD_INT("patches", n_patches);
    RD_INT("d_model", d_model);
    char *dt = attr_read_str(f, "dtype");
    int bad = store_dtype_parse(dt, &m->dtype);
    free(dt);
    if (bad) return "dtype";
    RD_INT("n_images", n_images);
    RD_INT("images_per_file", images_per_file);
    RD_INT("patch_labels", has_patch_labels);
    RD_STR("preprocessing", preprocessing);
    RD_STR("dataset", dataset);
    RD_STR("saev_version", saev_version);
    RD_STR("config", config_yaml);
#undef RD_STR
#undef RD_INT
    return NULL;
}

/* ---- files ------------------------------------------------------------------------- */

static char *file_path(const char *dir, int f, const char *suffix) {
    size_t n = strlen(dir) + 32;
    char *p = mallocCheck(n);
    snprintf(p, n, "%s/acts-%06d.h5%s", dir, f, suffix);
    return p;
}

static int path_exists(const char *p) { return access(p, F_OK) == 0; }

/* H5Fopen without HDF5's error stack on stderr: the caller reports the failure. */
static hid_t quiet_open(const char *path, unsigned flags, hid_t fapl) {
    if (!path_exists(path)) return -1;
    H5E_auto2_t fn;
    void *data;
    h5Check(H5Eget_auto2(H5E_DEFAULT, &fn, &data));
    h5Check(H5Eset_auto2(H5E_DEFAULT, NULL, NULL));
    hid_t f = H5Fopen(path, flags, fapl);
    h5Check(H5Eset_auto2(H5E_DEFAULT, fn, data));
    return f;
}

static int file_count(const StoreMeta *m) {
    if (m->images_per_file <= 0 || m->images_per_file >= m->n_images) return 1;
    return (int)((m->n_images + m->images_per_file - 1) / m->images_per_file);
}

static hid_t make_fapl(int use_mpi) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    h5Check(fapl);
    if (use_mpi) {
        h5Check(H5Pset_fapl_mpio(fapl, MPI_COMM_WORLD, MPI_INFO_NULL));
        h5Check(H5Pset_all_coll_metadata_ops(fapl, 1));
        h5Check(H5Pset_coll_metadata_write(fapl, 1));
    }
    return fapl;
}

/* A contiguous, early-allocated, zero-filled small dataset. */
static void create_small(hid_t f, const char *name, hid_t type, int rank, const hsize_t *dims) {
    hid_t sp = H5Screate_simple(rank, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    h5Check(sp);
    h5Check(dcpl);
    h5Check(H5Pset_layout(dcpl, H5D_CONTIGUOUS));
    h5Check(H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY));
    h5Check(H5Pset_fill_time(dcpl, H5D_FILL_TIME_ALLOC));
    h5Check(H5Pset_obj_track_times(dcpl, 0));
    hid_t d = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    h5Check(d);
    h5Check(H5Dclose(d));
    h5Check(H5Pclose(dcpl));
    h5Check(H5Sclose(sp));
}

/* Creates one file of the store with all its datasets (allocated now) and attributes. */
static void create_file(const char *path, const StoreMeta *m, int f, int n_files, int64_t first, int64_t n_f, int use_mpi) {
    hid_t fapl = make_fapl(use_mpi);
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (file < 0) saev_fail("cannot create store file %s (is the directory writable?)", path);
    h5Check(H5Pclose(fapl));

    hid_t acts_type;
    if (m->dtype == STORE_F32) acts_type = H5Tcopy(H5T_IEEE_F32LE);
    else if (m->dtype == STORE_F16) acts_type = make_f16_type();
    else {
        acts_type = make_bf16_type();
        h5Check(H5Tcommit2(file, "bfloat16", acts_type, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    }
    h5Check(acts_type);
    size_t image_layer_bytes = (size_t)m->n_tokens * (size_t)m->d_model * store_dtype_size(m->dtype);
    int64_t c = (int64_t)(STORE_CHUNK_BYTES / image_layer_bytes);
    if (c < 1) c = 1;
    if (c > n_f) c = n_f;
    hsize_t dims[4] = {(hsize_t)n_f, (hsize_t)m->n_layers, (hsize_t)m->n_tokens, (hsize_t)m->d_model};
    hsize_t chunk[4] = {(hsize_t)c, 1, (hsize_t)m->n_tokens, (hsize_t)m->d_model};
    hid_t sp = H5Screate_simple(4, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    h5Check(sp);
    h5Check(dcpl);
    h5Check(H5Pset_chunk(dcpl, 4, chunk));
    h5Check(H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY));
    /* No fill write: a fresh file's never-written bytes (skipped images) read as zeros,
     * and filling would write the whole dataset twice. */
    h5Check(H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER));
    h5Check(H5Pset_obj_track_times(dcpl, 0));
    hid_t d = H5Dcreate2(file, "activations", acts_type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    h5Check(d);
    h5Check(H5Dclose(d));
    h5Check(H5Pclose(dcpl));
    h5Check(H5Sclose(sp));
    h5Check(H5Tclose(acts_type));

    hsize_t n1 = (hsize_t)n_f, n2[2] = {(hsize_t)n_f, (hsize_t)(m->n_patches ? m->n_patches : 1)};
    create_small(file, "image_index", H5T_STD_I64LE, 1, &n1);
    create_small(file, "label", H5T_STD_I64LE, 1, &n1);
    if (m->has_patch_labels) create_small(file, "patch_labels", H5T_STD_U8LE, 2, n2);
    create_small(file, "status", H5T_STD_U8LE, 1, &n1);
    hid_t rt = H5Tcopy(H5T_C_S1);
    h5Check(rt);
    h5Check(H5Tset_size(rt, STORE_REASON_LEN));
    h5Check(H5Tset_strpad(rt, H5T_STR_NULLPAD));
    create_small(file, "skip_reason", rt, 1, &n1);
    h5Check(H5Tclose(rt));

    meta_write_attrs(file, m);
    attr_write_i64(file, "file_index", f);
    attr_write_i64(file, "n_files", n_files);
    attr_write_i64(file, "first_image", first);
    attr_write_i64(file, "n_images_in_file", n_f);
    h5Check(H5Fclose(file));
}

static hid_t open_dataset(hid_t file, const char *name, const char *path) {
    if (H5Lexists(file, name, H5P_DEFAULT) <= 0) saev_fail("store file %s has no dataset \"%s\"", path, name);
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    h5Check(d);
    return d;
}

/* Opens every file of s (s->meta, s->n_files, s->file_first set) and reads status. */
static void open_files(Store *s) {
    int n = s->n_files;
    s->file = mallocCheck(sizeof(hid_t) * (size_t)n);
    s->d_acts = mallocCheck(sizeof(hid_t) * (size_t)n);
    s->d_index = mallocCheck(sizeof(hid_t) * (size_t)n);
    s->d_label = mallocCheck(sizeof(hid_t) * (size_t)n);
    s->d_status = mallocCheck(sizeof(hid_t) * (size_t)n);
    s->d_reason = mallocCheck(sizeof(hid_t) * (size_t)n);
    s->d_plabels = mallocCheck(sizeof(hid_t) * (size_t)n);
    s->status = mallocCheck((size_t)s->meta.n_images);
    s->complete = 1;
    hid_t fapl = make_fapl(s->use_mpi);
    for (int f = 0; f < n; f++) {
        char *path = file_path(s->dir, f, "");
        hid_t file = quiet_open(path, s->writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, fapl);
        if (file < 0) saev_fail("cannot open store file %s (missing or not HDF5)", path);
        int64_t first = -1, nf = -1, fi = -1;
        if (attr_read_i64(file, "first_image", &first) || attr_read_i64(file, "n_images_in_file", &nf) ||
            attr_read_i64(file, "file_index", &fi) || fi != f || first != s->file_first[f] || nf != s->file_first[f + 1] - first)
            saev_fail("store file %s does not belong to this store (file index/image range differ from file 0's)", path);
        s->file[f] = file;
        s->d_acts[f] = open_dataset(file, "activations", path);
        s->d_index[f] = open_dataset(file, "image_index", path);
        s->d_label[f] = open_dataset(file, "label", path);
        s->d_status[f] = open_dataset(file, "status", path);
        s->d_reason[f] = open_dataset(file, "skip_reason", path);
        s->d_plabels[f] = s->meta.has_patch_labels ? open_dataset(file, "patch_labels", path) : H5I_INVALID_HID;
        h5Check(H5Dread(s->d_status[f], H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, s->dxpl, s->status + first));
        int64_t done = 0;
        if (attr_read_i64(file, "complete", &done) || done != 1) s->complete = 0;
        free(path);
    }
    h5Check(H5Pclose(fapl));
}

/* Loads StoreMeta and the file table from file 0 of dir (serially, read-only). */
static int load_meta(Store *s, char *err, size_t errlen) {
    char *path0 = file_path(s->dir, 0, "");
    hid_t file = quiet_open(path0, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) {
        snprintf(err, errlen, "%s: not an activation store (cannot open %s as HDF5)", s->dir, path0);
        free(path0);
        return -1;
    }
    const char *missing = meta_read_attrs(file, &s->meta);
    int64_t n_files = 0;
    if (!missing && attr_read_i64(file, "n_files", &n_files)) missing = "n_files";
    h5Check(H5Fclose(file));
    if (missing) {
        snprintf(err, errlen, "%s: attribute \"%s\" is missing or malformed (not a saev-c store?)", path0, missing);
        free(path0);
        return -1;
    }
    free(path0);
    s->n_files = file_count(&s->meta);
    if (s->n_files != n_files) {
        snprintf(err, errlen, "%s: n_files %lld does not match n_images/images_per_file", s->dir, (long long)n_files);
        return -1;
    }
    s->file_first = mallocCheck(sizeof(int64_t) * (size_t)(s->n_files + 1));
    for (int f = 0; f < s->n_files; f++) s->file_first[f] = s->meta.images_per_file > 0 ? (int64_t)f * s->meta.images_per_file : 0;
    s->file_first[s->n_files] = s->meta.n_images;
    return 0;
}



/* ---- writing ----------------------------------------------------------------------- */

static void world(int use_mpi, int *rank, int *size) {
    *rank = 0;
    *size = 1;
    if (use_mpi) {
        mpiCheck(MPI_Comm_rank(MPI_COMM_WORLD, rank));
        mpiCheck(MPI_Comm_size(MPI_COMM_WORLD, size));
    }
}

static void barrier(int use_mpi) {
    if (use_mpi) mpiCheck(MPI_Barrier(MPI_COMM_WORLD));
}

Store *store_open_write(const char *dir, const StoreMeta *meta, int resume, int use_mpi) {
    meta_check(meta, dir);
    int rank, size;
    world(use_mpi, &rank, &size);
    Store *s = callocCheck(1, sizeof(Store));
    s->dir = strdupCheck(dir);
    s->writable = 1;
    s->use_mpi = use_mpi;
    s->dxpl = H5Pcreate(H5P_DATASET_XFER);
    h5Check(s->dxpl);
    if (use_mpi) h5Check(H5Pset_dxpl_mpio(s->dxpl, H5FD_MPIO_COLLECTIVE));

    char *path0 = file_path(dir, 0, "");
    int exists = rank == 0 ? path_exists(path0) : 0;
    if (use_mpi) mpiCheck(MPI_Bcast(&exists, 1, MPI_INT, 0, MPI_COMM_WORLD));
    if (exists) {
        if (!resume)
            saev_usage_fail("activation store %s already exists; set activations.resume=true to continue it, or choose another activations.out", dir);
        char err[1024], msg[1024];
        if (load_meta(s, err, sizeof err)) saev_usage_fail("cannot resume into %s", err);
        const char *key = store_meta_compare(&s->meta, meta, msg, sizeof msg);
        if (key)
            saev_usage_fail("refusing to mix into activation store %s: %s (use a new activations.out, or delete the store to start over)",
                            dir, msg);
        /* Keep the stored provenance (config of the run that created it): the store's
         * bytes do not depend on which run wrote which image. */
    } else {
        meta_copy(&s->meta, meta);
        s->n_files = file_count(meta);
        s->file_first = mallocCheck(sizeof(int64_t) * (size_t)(s->n_files + 1));
        for (int f = 0; f < s->n_files; f++) s->file_first[f] = meta->images_per_file > 0 ? (int64_t)f * meta->images_per_file : 0;
        s->file_first[s->n_files] = meta->n_images;
        if (rank == 0) make_dirs_or_die(dir);
        barrier(use_mpi);
        for (int f = 0; f < s->n_files; f++) {
            char *tmp = file_path(dir, f, ".tmp");
            create_file(tmp, &s->meta, f, s->n_files, s->file_first[f], s->file_first[f + 1] - s->file_first[f], use_mpi);
            free(tmp);
        }
        barrier(use_mpi);
        if (rank == 0)
            for (int f = s->n_files - 1; f >= 0; f--) { /* file 0 last: its presence means all are there */
                char *tmp = file_path(dir, f, ".tmp"), *fin = file_path(dir, f, "");
                if (rename(tmp, fin)) saev_fail("cannot rename %s to %s: %s", tmp, fin, strerror(errno));
                free(tmp);
                free(fin);
            }
        barrier(use_mpi);
    }
    free(path0);
    open_files(s);
    return s;
}

int64_t store_pending(const Store *s, int64_t **out) {
    int64_t n = 0;
    for (int64_t i = 0; i < s->meta.n_images; i++) n += s->status[i] == STORE_PENDING;
    *out = mallocCheck(sizeof(int64_t) * (size_t)(n ? n : 1));
    n = 0;
    for (int64_t i = 0; i < s->meta.n_images; i++)
        if (s->status[i] == STORE_PENDING) (*out)[n++] = i;
    return n;
}

/* Rank r's slice [*lo, *hi) of the pending list: whole batches (by pending[i] / B),
 * balanced contiguous runs of them. */
static void plan_slice(const int64_t *pending, int64_t n, int64_t B, int r, int size, int64_t *lo, int64_t *hi) {
    int64_t n_batches = 0;
    for (int64_t i = 0; i < n; i++) n_batches += i == 0 || pending[i] / B != pending[i - 1] / B;
    int64_t g0 = n_batches * r / size, g1 = n_batches * (r + 1) / size, g = -1;
    *lo = *hi = n;
    for (int64_t i = 0; i < n; i++) {
        g += i == 0 || pending[i] / B != pending[i - 1] / B;
        if (g == g0 && *lo == n) *lo = i;
        if (g == g1) { *hi = i; break; }
    }
}

/* Pieces of at most B images in the contiguous runs of images[lo, hi). */
static int64_t plan_pieces(const int64_t *images, int64_t lo, int64_t hi, int64_t B) {
    int64_t pieces = 0;
    for (int64_t run = lo; run < hi;) {
        int64_t end = run + 1;
        while (end < hi && images[end] == images[end - 1] + 1) end++;
        pieces += (end - run + B - 1) / B;
        run = end;
    }
    return pieces;
}

void store_plan(const Store *s, int rank, int size, int64_t batch_size, StorePlan *plan) {
    if (batch_size <= 0) saev_usage_fail("store_plan: batch size must be positive (got %lld)", (long long)batch_size);
    memset(plan, 0, sizeof *plan);
    int64_t *pending = NULL, n = store_pending(s, &pending), lo, hi;
    plan->n_pending = n;
    for (int r = 0; r < size; r++) {
        plan_slice(pending, n, batch_size, r, size, &lo, &hi);
        int64_t pieces = plan_pieces(pending, lo, hi, batch_size);
        if (pieces > plan->n_writes_all) plan->n_writes_all = pieces;
        if (r == rank) plan->n_writes = pieces;
    }
    plan_slice(pending, n, batch_size, rank, size, &lo, &hi);
    plan->n_images = hi - lo;
    plan->images = mallocCheck(sizeof(int64_t) * (size_t)(plan->n_images ? plan->n_images : 1));
    memcpy(plan->images, pending + lo, sizeof(int64_t) * (size_t)plan->n_images);
    free(pending);
    plan->run_start = mallocCheck(sizeof(int64_t) * (size_t)(plan->n_images + 1));
    for (int64_t i = 0; i < plan->n_images; i++)
        if (i == 0 || plan->images[i] != plan->images[i - 1] + 1) plan->run_start[plan->n_runs++] = i;
    plan->run_start[plan->n_runs] = plan->n_images;
}

void store_plan_piece(const StorePlan *plan, int64_t batch_size, int64_t w, int64_t *first, int64_t *n) {
    *first = plan->n_images;
    *n = 0;
    for (int64_t r = 0; r < plan->n_runs; r++) {
        int64_t a = plan->run_start[r], len = plan->run_start[r + 1] - a, pieces = (len + batch_size - 1) / batch_size;
        if (w < pieces) {
            *first = a + w * batch_size;
            *n = len - w * batch_size < batch_size ? len - w * batch_size : batch_size;
            return;
        }
        w -= pieces;
    }
}

void store_plan_free(StorePlan *plan) {
    free(plan->images);
    free(plan->run_start);
    memset(plan, 0, sizeof *plan);
}

/* Selects, in a file's dataspace `fsp` (first axis = images of the file, starting at
 * image `first`) and in a memory dataspace `msp` (first axis = the n rows of the call),
 * the rows [a, b) of idx that are runs of consecutive images; only rows with keep[j]
 * (NULL = all). Returns the number of rows selected. */
static int64_t select_runs(hid_t fsp, hid_t msp, const int64_t *idx, const uint8_t *keep, int64_t a,
                           int64_t b, int64_t first) {
    hsize_t fdims[4] = {0}, mdims[4] = {0};
    h5Check(H5Sget_simple_extent_dims(fsp, fdims, NULL));
    h5Check(H5Sget_simple_extent_dims(msp, mdims, NULL));
    h5Check(H5Sselect_none(fsp));
    h5Check(H5Sselect_none(msp));
    int64_t total = 0;
    for (int64_t j = a; j < b;) {
        if (keep && !keep[j]) { j++; continue; }
        int64_t k = j + 1;
        while (k < b && idx[k] == idx[k - 1] + 1 && (!keep || keep[k])) k++;
        hsize_t fstart[4] = {(hsize_t)(idx[j] - first), 0, 0, 0}, mstart[4] = {(hsize_t)j, 0, 0, 0};
        hsize_t fcount[4], mcount[4];
        for (int d = 0; d < 4; d++) { fcount[d] = fdims[d]; mcount[d] = mdims[d]; }
        fcount[0] = mcount[0] = (hsize_t)(k - j);
        h5Check(H5Sselect_hyperslab(fsp, H5S_SELECT_OR, fstart, NULL, fcount, NULL));
        h5Check(H5Sselect_hyperslab(msp, H5S_SELECT_OR, mstart, NULL, mcount, NULL));
        total += k - j;
        j = k;
    }
    return total;
}

/* One collective write of rows [a, b) of a call into dataset d. buf holds all n rows,
 * each shaped like one image's slice of d. The memory dataspace has the file's rank and
 * row shape: HDF5 maps equal-shaped selections to chunks wholesale, while a differently
 * shaped memory space makes it visit every element (5x slower writes). */
static void write_rows(Store *s, hid_t d, hid_t mem_type, const void *buf, int64_t n, const int64_t *idx, const uint8_t *keep,
                       int64_t a, int64_t b, int64_t first) {
    hid_t fsp = H5Dget_space(d);
    h5Check(fsp);
    hsize_t mdims[4] = {0};
    int rank = H5Sget_simple_extent_dims(fsp, mdims, NULL);
    h5Check(rank);
    mdims[0] = (hsize_t)(n ? n : 1);
    hid_t msp = H5Screate_simple(rank, mdims, NULL);
    h5Check(msp);
    select_runs(fsp, msp, idx, keep, a, b, first);
    h5Check(H5Dwrite(d, mem_type, msp, fsp, s->dxpl, buf));
    h5Check(H5Sclose(msp));
    h5Check(H5Sclose(fsp));
}

static void convert_from_f32(StoreDtype t, const float *src, uint16_t *dst, size_t n) {
    if (t == STORE_F16)
        for (size_t i = 0; i < n; i++) dst[i] = f32_to_f16(src[i]);
    else
        for (size_t i = 0; i < n; i++) dst[i] = f32_to_bf16(src[i]);
}

void store_write(Store *s, int64_t n, const int64_t *idx, const float *acts, const int64_t *image_index, const int64_t *label,
                 const uint8_t *patch_labels, const char *const *skip_reason) {
    if (s->meta.dtype == STORE_F32 || n == 0) {
        store_write_raw(s, n, idx, acts, image_index, label, patch_labels, skip_reason);
        return;
    }
    size_t elems = (size_t)n * (size_t)s->meta.n_layers * (size_t)s->meta.n_tokens * (size_t)s->meta.d_model;
    if (s->conv_bytes < elems * 2) {
        free(s->conv);
        s->conv = mallocCheck(elems * 2);
        s->conv_bytes = elems * 2;
    }
    convert_from_f32(s->meta.dtype, acts, s->conv, elems);
    store_write_raw(s, n, idx, s->conv, image_index, label, patch_labels, skip_reason);
}

void store_write_raw(Store *s, int64_t n, const int64_t *idx, const void *acts, const int64_t *image_index, const int64_t *label,
                     const uint8_t *patch_labels, const char *const *skip_reason) {
    if (!s->writable) saev_fail("store %s was opened read-only", s->dir);
    const StoreMeta *m = &s->meta;
    for (int64_t j = 0; j < n; j++)
        if (idx[j] < 0 || idx[j] >= m->n_images || (j && idx[j] <= idx[j - 1]))
            saev_fail("store_write into %s: image positions must be ascending and in [0, %lld) (got %lld at %lld)", s->dir,
                      (long long)m->n_images, (long long)idx[j], (long long)j);
    /* Per-row values of the small datasets. */
    int64_t nn = n ? n : 1;
    uint8_t *keep = mallocCheck((size_t)nn), *st = mallocCheck((size_t)nn);
    int64_t *ii = mallocCheck(sizeof(int64_t) * (size_t)nn), *ll = mallocCheck(sizeof(int64_t) * (size_t)nn);
    char *reason = callocCheck((size_t)nn, STORE_REASON_LEN);
    for (int64_t j = 0; j < n; j++) {
        const char *r = skip_reason ? skip_reason[j] : NULL;
        keep[j] = r == NULL;
        st[j] = r ? STORE_SKIPPED : STORE_WRITTEN;
        if (r) strncpy(reason + j * STORE_REASON_LEN, r[0] ? r : "skipped", STORE_REASON_LEN - 1);
        ii[j] = image_index ? image_index[j] : idx[j];
        ll[j] = label ? label[j] : -1;
    }
    /* Which files anyone writes to this time: the writes to them are collective. */
    int *touched = callocCheck((size_t)s->n_files, sizeof(int));
    int f = 0;
    for (int64_t j = 0; j < n; j++) {
        while (idx[j] >= s->file_first[f + 1]) f++;
        touched[f] = 1;
    }
    if (s->use_mpi) mpiCheck(MPI_Allreduce(MPI_IN_PLACE, touched, s->n_files, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    /* [a, b) of idx inside each file. */
    int64_t *lo = mallocCheck(sizeof(int64_t) * (size_t)s->n_files), *hi = mallocCheck(sizeof(int64_t) * (size_t)s->n_files);
    for (f = 0; f < s->n_files; f++) {
        int64_t a = 0;
        while (a < n && idx[a] < s->file_first[f]) a++;
        int64_t b = a;
        while (b < n && idx[b] < s->file_first[f + 1]) b++;
        lo[f] = a;
        hi[f] = b;
    }
    for (f = 0; f < s->n_files; f++) {
        if (!touched[f]) continue;
        hid_t mt = H5Dget_type(s->d_acts[f]);
        h5Check(mt);
        write_rows(s, s->d_acts[f], mt, acts, n, idx, keep, lo[f], hi[f], s->file_first[f]);
        h5Check(H5Tclose(mt));
    }
    s->n_writes++;
    fault_kill_at(FAULT_STORE_KILL_AFTER_WRITES, s->n_writes - 1); /* after the activations, before their status */
    for (f = 0; f < s->n_files; f++) {
        if (!touched[f]) continue;
        int64_t a = lo[f], b = hi[f], first = s->file_first[f];
        if (m->has_patch_labels) {
            if (!patch_labels && b > a) saev_fail("store %s has patch labels but store_write got none", s->dir);
            write_rows(s, s->d_plabels[f], H5T_NATIVE_UINT8, patch_labels, n, idx, NULL,
                       a, b, first);
        }
        write_rows(s, s->d_index[f], H5T_NATIVE_INT64, ii, n, idx, NULL, a, b, first);
        write_rows(s, s->d_label[f], H5T_NATIVE_INT64, ll, n, idx, NULL, a, b, first);
        hid_t rt = H5Dget_type(s->d_reason[f]);
        h5Check(rt);
        write_rows(s, s->d_reason[f], rt, reason, n, idx, NULL, a, b, first);
        h5Check(H5Tclose(rt));
    }
    /* Status last: an image counts as written only once its data is in the file. */
    for (f = 0; f < s->n_files; f++)
        if (touched[f]) write_rows(s, s->d_status[f], H5T_NATIVE_UINT8, st, n, idx, NULL, lo[f], hi[f], s->file_first[f]);
    for (int64_t j = 0; j < n; j++) s->status[idx[j]] = st[j];
    free(lo);
    free(hi);
    free(touched);
    free(keep);
    free(st);
    free(ii);
    free(ll);
    free(reason);
}

static void close_files(Store *s) {
    for (int f = 0; f < s->n_files && s->file; f++) {
        h5Check(H5Dclose(s->d_acts[f]));
        h5Check(H5Dclose(s->d_index[f]));
        h5Check(H5Dclose(s->d_label[f]));
        h5Check(H5Dclose(s->d_status[f]));
        h5Check(H5Dclose(s->d_reason[f]));
        if (s->meta.has_patch_labels) h5Check(H5Dclose(s->d_plabels[f]));
        h5Check(H5Fclose(s->file[f]));
    }
}

static void store_free(Store *s) {
    if (s->dxpl > 0) h5Check(H5Pclose(s->dxpl));
    store_meta_free(&s->meta);
    free(s->dir);
    free(s->file_first);
    free(s->file);
    free(s->d_acts);
    free(s->d_index);
    free(s->d_label);
    free(s->d_status);
    free(s->d_reason);
    free(s->d_plabels);
    free(s->status);
    free(s->image_index);
    free(s->label);
    free(s->conv);
    free(s);
}

/* fsync every file of the store from rank 0 (the page cache is shared, so one process
 * suffices on a node; on parallel file systems MPI_File_sync in H5Fflush covers it). */
static void sync_files(Store *s) {
    int rank, size;
    world(s->use_mpi, &rank, &size);
    barrier(s->use_mpi);
    if (rank == 0)
        for (int f = 0; f < s->n_files; f++) {
            char *path = file_path(s->dir, f, "");
            int fd = open(path, O_RDONLY);
            if (fd < 0 || fsync(fd) || close(fd)) saev_fail("cannot sync %s: %s (disk full?)", path, strerror(errno));
            free(path);
        }
    barrier(s->use_mpi);
}

int store_finish(Store *s) {
    /* Every image is written by one rank; the others still hold 0 for it. */
    if (s->use_mpi) {
        /* MPI counts are int: reduce in slices. */
        for (int64_t off = 0; off < s->meta.n_images; off += INT_MAX / 2) {
            int64_t k = s->meta.n_images - off < INT_MAX / 2 ? s->meta.n_images - off : INT_MAX / 2;
            mpiCheck(MPI_Allreduce(MPI_IN_PLACE, s->status + off, (int)k, MPI_UINT8_T, MPI_MAX, MPI_COMM_WORLD));
        }
    }
    int64_t pending = 0, skipped = 0;
    for (int64_t i = 0; i < s->meta.n_images; i++) {
        pending += s->status[i] == STORE_PENDING;
        skipped += s->status[i] == STORE_SKIPPED;
    }
    for (int f = 0; f < s->n_files; f++) h5Check(H5Fflush(s->file[f], H5F_SCOPE_LOCAL));
    sync_files(s);
    int complete = pending == 0;
    if (complete && !s->complete) {
        /* The completeness mark goes last, after the data is on disk. */
        for (int f = 0; f < s->n_files; f++) {
            attr_write_i64(s->file[f], "complete", 1);
            h5Check(H5Fflush(s->file[f], H5F_SCOPE_LOCAL));
        }
        sync_files(s);
    }
    if (complete)
        log_info("activation store %s complete: %lld images (%lld skipped)", s->dir, (long long)s->meta.n_images, (long long)skipped);
    else
        log_warn("activation store %s incomplete: %lld of %lld images pending; rerun to resume", s->dir, (long long)pending,
                 (long long)s->meta.n_images);
    close_files(s);
    store_free(s);
    return complete;
}

/* ---- reading ----------------------------------------------------------------------- */

Store *store_open_read(const char *path, char *err, size_t errlen) {
    Store *s = callocCheck(1, sizeof(Store));
    struct stat sb;
    if (stat(path, &sb)) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        free(s);
        return NULL;
    }
    if (S_ISDIR(sb.st_mode)) s->dir = strdupCheck(path);
    else { /* a file of the store: use its directory */
        s->dir = strdupCheck(path);
        char *slash = strrchr(s->dir, '/');
        if (slash) *slash = 0;
        else strcpy(s->dir, ".");
    }
    s->dxpl = H5P_DEFAULT;
    if (load_meta(s, err, errlen)) {
        store_meta_free(&s->meta);
        free(s->dir);
        free(s->file_first);
        free(s);
        return NULL;
    }
    for (int f = 0; f < s->n_files; f++) {
        char *p = file_path(s->dir, f, "");
        if (!path_exists(p)) {
            snprintf(err, errlen, "%s: store file %s is missing", s->dir, p);
            free(p);
            store_meta_free(&s->meta);
            free(s->dir);
            free(s->file_first);
            free(s);
            return NULL;
        }
        free(p);
    }
    open_files(s);
    int64_t n = s->meta.n_images;
    s->image_index = mallocCheck(sizeof(int64_t) * (size_t)n);
    s->label = mallocCheck(sizeof(int64_t) * (size_t)n);
    for (int f = 0; f < s->n_files; f++) {
        h5Check(H5Dread(s->d_index[f], H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, s->image_index + s->file_first[f]));
        h5Check(H5Dread(s->d_label[f], H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, s->label + s->file_first[f]));
    }
    return s;
}

void store_close(Store *s) {
    if (!s) return;
    if (s->writable) saev_fail("store_close on a store opened for writing: use store_finish");
    close_files(s);
    s->dxpl = -1;
    store_free(s);
}

static void check_range(const Store *s, int64_t img0, int64_t n) {
    if (img0 < 0 || n < 0 || img0 + n > s->meta.n_images)
        saev_fail("store %s: image range [%lld, %lld) outside [0, %lld)", s->dir, (long long)img0, (long long)(img0 + n),
                  (long long)s->meta.n_images);
}

static void to_f32(StoreDtype t, const void *src, float *dst, size_t n) {
    const uint16_t *h = src;
    if (t == STORE_F32) { if ((const void *)dst != src) memmove(dst, src, n * 4); }
    else if (t == STORE_F16) for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32(h[i]);
    else for (size_t i = 0; i < n; i++) dst[i] = bf16_to_f32(h[i]);
}

/* Reads the hyperslab [img0, img0+n) x layers [l0, l0+nl) x all tokens x d of the whole
 * store as raw stored bytes into out (contiguous, image-major). */
static void read_raw(Store *s, int64_t img0, int64_t n, int l0, int nl, void *out) {
    check_range(s, img0, n);
    const StoreMeta *m = &s->meta;
    size_t row_bytes = (size_t)nl * (size_t)m->n_tokens * (size_t)m->d_model * store_dtype_size(m->dtype);
    for (int f = 0; f < s->n_files && n > 0; f++) {
        int64_t a = img0 > s->file_first[f] ? img0 : s->file_first[f];
        int64_t b = img0 + n < s->file_first[f + 1] ? img0 + n : s->file_first[f + 1];
        if (a >= b) continue;
        hid_t fsp = H5Dget_space(s->d_acts[f]), mt = H5Dget_type(s->d_acts[f]);
        h5Check(fsp);
        h5Check(mt);
        hsize_t start[4] = {(hsize_t)(a - s->file_first[f]), (hsize_t)l0, 0, 0};
        hsize_t count[4] = {(hsize_t)(b - a), (hsize_t)nl, (hsize_t)m->n_tokens, (hsize_t)m->d_model};
        h5Check(H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL));
        hid_t msp = H5Screate_simple(4, count, NULL);
        h5Check(msp);
        h5Check(H5Dread(s->d_acts[f], mt, msp, fsp, H5P_DEFAULT, (char *)out + (size_t)(a - img0) * row_bytes));
        h5Check(H5Sclose(msp));
        h5Check(H5Sclose(fsp));
        h5Check(H5Tclose(mt));
    }
}

void store_read_images_raw(Store *s, int64_t img0, int64_t n, void *out) { read_raw(s, img0, n, 0, s->meta.n_layers, out); }

void store_read_images(Store *s, int64_t img0, int64_t n, float *out) {
    const StoreMeta *m = &s->meta;
    size_t elems = (size_t)n * (size_t)m->n_layers * (size_t)m->n_tokens * (size_t)m->d_model;
    if (m->dtype == STORE_F32) { read_raw(s, img0, n, 0, m->n_layers, out); return; }
    if (s->conv_bytes < elems * 2) {
        free(s->conv);
        s->conv = mallocCheck(elems * 2);
        s->conv_bytes = elems * 2;
    }
    read_raw(s, img0, n, 0, m->n_layers, s->conv);
    to_f32(m->dtype, s->conv, out, elems);
}

void store_read_layer(Store *s, int layer_idx, int64_t img0, int64_t n_img, int tok0, int n_tok, float *out) {
    const StoreMeta *m = &s->meta;
    if (layer_idx < 0 || layer_idx >= m->n_layers) saev_fail("store %s: layer index %d outside [0, %d)", s->dir, layer_idx, m->n_layers);
    if (tok0 < 0 || n_tok <= 0 || tok0 + n_tok > m->n_tokens)
        saev_fail("store %s: token range [%d, %d) outside [0, %d)", s->dir, tok0, tok0 + n_tok, m->n_tokens);
    size_t T = (size_t)m->n_tokens, D = (size_t)m->d_model, es = store_dtype_size(m->dtype);
    if (n_tok == m->n_tokens && m->dtype == STORE_F32) { read_raw(s, img0, n_img, layer_idx, 1, out); return; }
    /* Whole images of this layer in one sequential read, then keep the wanted tokens. */
    size_t need = (size_t)n_img * T * D * es;
    if (s->conv_bytes < need) {
        free(s->conv);
        s->conv = mallocCheck(need);
        s->conv_bytes = need;
    }
    read_raw(s, img0, n_img, layer_idx, 1, s->conv);
    for (int64_t i = 0; i < n_img; i++)
        to_f32(m->dtype, (char *)s->conv + ((size_t)i * T + (size_t)tok0) * D * es, out + (size_t)i * (size_t)n_tok * D, (size_t)n_tok * D);
}

void store_read_patch_labels(Store *s, int64_t img0, int64_t n, uint8_t *out) {
    if (!s->meta.has_patch_labels) saev_fail("store %s has no patch labels", s->dir);
    check_range(s, img0, n);
    for (int f = 0; f < s->n_files; f++) {
        int64_t a = img0 > s->file_first[f] ? img0 : s->file_first[f];
        int64_t b = img0 + n < s->file_first[f + 1] ? img0 + n : s->file_first[f + 1];
        if (a >= b) continue;
        hid_t fsp = H5Dget_space(s->d_plabels[f]);
        h5Check(fsp);
        hsize_t start[2] = {(hsize_t)(a - s->file_first[f]), 0}, count[2] = {(hsize_t)(b - a), (hsize_t)s->meta.n_patches};
        h5Check(H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL));
        hid_t msp = H5Screate_simple(2, count, NULL);
        h5Check(msp);
        h5Check(H5Dread(s->d_plabels[f], H5T_NATIVE_UINT8, msp, fsp, H5P_DEFAULT, out + (size_t)(a - img0) * (size_t)s->meta.n_patches));
        h5Check(H5Sclose(msp));
        h5Check(H5Sclose(fsp));
    }
}

void store_read_skip_reason(Store *s, int64_t i, char *buf, size_t len) {
    check_range(s, i, 1);
    int f = 0;
    while (i >= s->file_first[f + 1]) f++;
    char r[STORE_REASON_LEN + 1] = {0};
    hid_t fsp = H5Dget_space(s->d_reason[f]), mt = H5Dget_type(s->d_reason[f]);
    h5Check(fsp);
    h5Check(mt);
    hsize_t start = (hsize_t)(i - s->file_first[f]), count = 1;
    h5Check(H5Sselect_hyperslab(fsp, H5S_SELECT_SET, &start, NULL, &count, NULL));
    hid_t msp = H5Screate_simple(1, &count, NULL);
    h5Check(msp);
    h5Check(H5Dread(s->d_reason[f], mt, msp, fsp, H5P_DEFAULT, r));
    h5Check(H5Sclose(msp));
    h5Check(H5Sclose(fsp));
    h5Check(H5Tclose(mt));
    snprintf(buf, len, "%s", r);
}

/* ---- describing -------------------------------------------------------------------- */

int store_path_is_store(const char *path) {
    struct stat sb;
    if (stat(path, &sb)) return 0;
    if (S_ISDIR(sb.st_mode)) {
        char *p = file_path(path, 0, "");
        int ok = path_exists(p);
        free(p);
        return ok;
    }
    size_t n = strlen(path);
    return n > 3 && !strcmp(path + n - 3, ".h5");
}

static const char *type_text(hid_t t, char *buf, size_t len) {
    H5T_class_t c = H5Tget_class(t);
    size_t sz = H5Tget_size(t);
    if (c == H5T_FLOAT) {
        size_t spos, epos, esize, mpos, msize;
        h5Check(H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize));
        snprintf(buf, len, "%s", sz == 4 ? "float32" : sz == 8 ? "float64" : (sz == 2 && esize == 8) ? "bfloat16" : sz == 2 ? "float16" : "float");
    } else if (c == H5T_INTEGER) snprintf(buf, len, "%sint%zu", H5Tget_sign(t) == H5T_SGN_NONE ? "u" : "", sz * 8);
    else if (c == H5T_STRING) {
        if (H5Tis_variable_str(t) > 0) snprintf(buf, len, "string");
        else snprintf(buf, len, "char[%zu]", sz);
    } else snprintf(buf, len, "class %d", (int)c);
    return buf;
}

static herr_t print_attr(hid_t loc, const char *name, const H5A_info_t *info, void *data) {
    (void)info;
    FILE *out = data;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    h5Check(a);
    hid_t t = H5Aget_type(a);
    h5Check(t);
    if (H5Tget_class(t) == H5T_STRING) {
        char *v = attr_read_str(loc, name);
        /* Multi-line text (the config) is indented under its name. */
        if (strchr(v, '\n')) {
            fprintf(out, "  %s: |\n", name);
            for (char *line = strtok(v, "\n"); line; line = strtok(NULL, "\n")) fprintf(out, "      %s\n", line);
        } else fprintf(out, "  %s: %s\n", name, v);
        free(v);
    } else if (H5Tget_class(t) == H5T_INTEGER) {
        int64_t *v = NULL;
        int n = attr_read_i64s(loc, name, &v);
        hid_t sp = H5Aget_space(a);
        int scalar = H5Sget_simple_extent_type(sp) == H5S_SCALAR;
        h5Check(H5Sclose(sp));
        fprintf(out, "  %s: %s", name, scalar ? "" : "[");
        for (int i = 0; i < n; i++) fprintf(out, "%s%lld", i ? ", " : "", (long long)v[i]);
        fprintf(out, "%s\n", scalar ? "" : "]");
        free(v);
    } else fprintf(out, "  %s: (non-text attribute)\n", name);
    h5Check(H5Tclose(t));
    h5Check(H5Aclose(a));
    return 0;
}

static herr_t print_dataset(hid_t loc, const char *name, const H5L_info_t *info, void *data) {
    (void)info;
    FILE *out = data;
    H5O_info_t oi;
    h5Check(H5Oget_info_by_name(loc, name, &oi, H5P_DEFAULT));
    if (oi.type != H5O_TYPE_DATASET) {
        fprintf(out, "  %-14s (%s)\n", name, oi.type == H5O_TYPE_NAMED_DATATYPE ? "named datatype" : "group");
        return 0;
    }
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    h5Check(d);
    hid_t sp = H5Dget_space(d), t = H5Dget_type(d), dcpl = H5Dget_create_plist(d);
    h5Check(sp);
    h5Check(t);
    h5Check(dcpl);
    hsize_t dims[8], chunk[8];
    int nd = H5Sget_simple_extent_dims(sp, dims, NULL);
    h5Check(nd);
    char tb[64], shape[256] = "", ch[256] = "";
    for (int i = 0; i < nd; i++) snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%llu", i ? ", " : "", (unsigned long long)dims[i]);
    if (H5Pget_layout(dcpl) == H5D_CHUNKED) {
        int nc = H5Pget_chunk(dcpl, 8, chunk);
        snprintf(ch, sizeof ch, "  chunks [");
        for (int i = 0; i < nc; i++) snprintf(ch + strlen(ch), sizeof ch - strlen(ch), "%s%llu", i ? ", " : "", (unsigned long long)chunk[i]);
        snprintf(ch + strlen(ch), sizeof ch - strlen(ch), "]");
    }
    fprintf(out, "  %-14s %-9s [%s]%s\n", name, type_text(t, tb, sizeof tb), shape, ch);
    h5Check(H5Pclose(dcpl));
    h5Check(H5Tclose(t));
    h5Check(H5Sclose(sp));
    h5Check(H5Dclose(d));
    return 0;
}

static int describe_file(const char *path, FILE *out) {
    hid_t f = quiet_open(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        fprintf(stderr, "error: cannot open %s as HDF5\n", path);
        return 1;
    }
    fprintf(out, "%s\ndatasets:\n", path);
    h5Check(H5Literate(f, H5_INDEX_NAME, H5_ITER_INC, NULL, print_dataset, out));
    fprintf(out, "attributes:\n");
    h5Check(H5Aiterate2(f, H5_INDEX_NAME, H5_ITER_INC, NULL, print_attr, out));
    h5Check(H5Fclose(f));
    return 0;
}

int store_describe(const char *path, FILE *out) {
    struct stat sb;
    if (stat(path, &sb)) {
        fprintf(stderr, "error: %s: %s\n", path, strerror(errno));
        return 1;
    }
    if (!S_ISDIR(sb.st_mode)) return describe_file(path, out);
    char err[1024];
    Store *s = store_open_read(path, err, sizeof err);
    if (!s) {
        fprintf(stderr, "error: %s\n", err);
        return 1;
    }
    const StoreMeta *m = &s->meta;
    int64_t written = 0, skipped = 0;
    for (int64_t i = 0; i < m->n_images; i++) {
        written += s->status[i] == STORE_WRITTEN;
        skipped += s->status[i] == STORE_SKIPPED;
    }
    double gb = (double)m->n_images * m->n_layers * m->n_tokens * m->d_model * (double)store_dtype_size(m->dtype) / 1e9;
    char layers[256];
    layers_text(m, layers, sizeof layers);
    fprintf(out, "activation store %s: %s\n", path, s->complete ? "complete" : "INCOMPLETE (a rerun resumes it)");
    fprintf(out, "  activations [%lld images, %d layers, %d tokens, %d d_model] %s, %.3f GB in %d file%s\n", (long long)m->n_images,
            m->n_layers, m->n_tokens, m->d_model, store_dtype_name(m->dtype), gb, s->n_files, s->n_files == 1 ? "" : "s");
    fprintf(out, "  model %s (%s), layers %s\n", m->model, m->model_family, layers);
    fprintf(out, "  images written %lld, skipped %lld, pending %lld\n", (long long)written, (long long)skipped,
            (long long)(m->n_images - written - skipped));
    int shown = 0;
    for (int64_t i = 0; i < m->n_images && shown < 10; i++)
        if (s->status[i] == STORE_SKIPPED) {
            char r[STORE_REASON_LEN + 1];
            store_read_skip_reason(s, i, r, sizeof r);
            fprintf(out, "    skipped image %lld (index %lld): %s\n", (long long)i, (long long)s->image_index[i], r);
            shown++;
        }
    if (skipped > shown) fprintf(out, "    ... %lld more skipped\n", (long long)(skipped - shown));
    store_close(s);
    char *p0 = file_path(path, 0, "");
    int rc = describe_file(p0, out);
    free(p0);
    return rc;
}
