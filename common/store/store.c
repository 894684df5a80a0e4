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
#include <sys/statvfs.h>
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

/* ---- checksums --------------------------------------------------------------------- */

uint32_t store_checksum(const void *data, size_t nbytes) {
    /* Fletcher-32 over little-endian 16-bit words (a trailing odd byte is a word of its
     * own); sums reduced mod 65535 every 359 words, the most that cannot overflow. */
    const uint8_t *p = data;
    uint32_t c0 = 0, c1 = 0;
    size_t words = nbytes / 2;
    while (words) {
        size_t block = words < 359 ? words : 359;
        words -= block;
        for (size_t i = 0; i < block; i++, p += 2) {
            c0 += (uint32_t)p[0] | ((uint32_t)p[1] << 8);
            c1 += c0;
        }
        c0 %= 65535;
        c1 %= 65535;
    }
    if (nbytes & 1) {
        c0 = (c0 + p[0]) % 65535;
        c1 = (c1 + c0) % 65535;
    }
    return (c1 << 16) | c0;
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

/* Attribute readers see files from anywhere: whatever an attribute holds (another type,
 * a huge extent, unreadable bytes) they answer "absent or malformed" instead of failing,
 * and the caller names the attribute. Attribute text and lists beyond these sizes are
 * not a saev-c store's. */
#define STORE_MAX_ATTR_READ (16u << 20)
#define STORE_MAX_ATTR_INTS 4096

static void h5_close_quietly(hid_t id) {
    if (id < 0) return;
    H5E_BEGIN_TRY { H5Idec_ref(id); } H5E_END_TRY;
}

/* Reads a string attribute (variable or fixed length) as a malloc'd string; NULL if absent or malformed. */
static char *attr_read_str(hid_t obj, const char *name) {
    char *out = NULL;
    hid_t a = -1, ft = -1, sp = -1, t = -1;
    H5E_BEGIN_TRY {
        if (H5Aexists(obj, name) > 0 && (a = H5Aopen(obj, name, H5P_DEFAULT)) >= 0 && (ft = H5Aget_type(a)) >= 0 &&
            (sp = H5Aget_space(a)) >= 0 && H5Tget_class(ft) == H5T_STRING && H5Sget_simple_extent_npoints(sp) == 1) {
            if (H5Tis_variable_str(ft) > 0) {
                char *p = NULL;
                t = vl_string_type();
                if (H5Aread(a, t, &p) >= 0) {
                    out = strdupCheck(p ? p : "");
                    if (p) H5free_memory(p);
                }
            } else {
                size_t n = H5Tget_size(ft);
                if (n > 0 && n <= STORE_MAX_ATTR_READ && (t = H5Tcopy(H5T_C_S1)) >= 0 && H5Tset_size(t, n) >= 0) {
                    out = callocCheck(n + 1, 1);
                    if (H5Aread(a, t, out) < 0) { free(out); out = NULL; }
                }
            }
        }
    } H5E_END_TRY;
    h5_close_quietly(t);
    h5_close_quietly(sp);
    h5_close_quietly(ft);
    h5_close_quietly(a);
    return out;
}

/* Reads an integer attribute (scalar or 1-D) into *out (malloc'd); returns the count, -1 if absent or malformed. */
static int attr_read_i64s(hid_t obj, const char *name, int64_t **out) {
    int n = -1;
    hid_t a = -1, ft = -1, sp = -1;
    *out = NULL;
    H5E_BEGIN_TRY {
        if (H5Aexists(obj, name) > 0 && (a = H5Aopen(obj, name, H5P_DEFAULT)) >= 0 && (ft = H5Aget_type(a)) >= 0 &&
            (sp = H5Aget_space(a)) >= 0 && H5Tget_class(ft) == H5T_INTEGER) {
            hssize_t np = H5Sget_simple_extent_npoints(sp);
            if (np >= 0 && np <= STORE_MAX_ATTR_INTS) {
                *out = mallocCheck(sizeof(int64_t) * (size_t)(np ? np : 1));
                if (H5Aread(a, H5T_NATIVE_INT64, *out) >= 0) n = (int)np;
                else { free(*out); *out = NULL; }
            }
        }
    } H5E_END_TRY;
    h5_close_quietly(sp);
    h5_close_quietly(ft);
    h5_close_quietly(a);
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

/* Limits far beyond any ViT or data set, so that a store's numbers can be trusted for
 * allocation sizes: no slice of one image and layer over 256 MiB, no more images than
 * 2^36, no more layers than 4096 or files than 2^20. */
#define STORE_MAX_SLICE_BYTES ((int64_t)256 << 20)
#define STORE_MAX_IMAGES ((int64_t)1 << 36)
#define STORE_MAX_LAYERS 4096
#define STORE_MAX_FILES (1 << 20)

/* Whether m describes a store saev-c can hold; NULL, or the problem written to buf. */
static const char *meta_problem(const StoreMeta *m, char *buf, size_t len) {
    if (m->n_images <= 0 || m->n_images > STORE_MAX_IMAGES || m->n_layers <= 0 || m->n_layers > STORE_MAX_LAYERS || m->d_model <= 0 ||
        m->n_patches < 0 || m->images_per_file < 0 || (m->has_cls != 0 && m->has_cls != 1) ||
        (m->has_patch_labels != 0 && m->has_patch_labels != 1)) {
        snprintf(buf, len, "bad shape (images %lld, layers %d, patches %d, d_model %d, images_per_file %lld, has_cls %d, patch_labels %d)",
                 (long long)m->n_images, m->n_layers, m->n_patches, m->d_model, (long long)m->images_per_file, m->has_cls,
                 m->has_patch_labels);
        return buf;
    }
    if (m->n_tokens != m->has_cls + m->n_patches || m->n_tokens <= 0) {
        snprintf(buf, len, "tokens (%d) must equal CLS (%d) + patches (%d)", m->n_tokens, m->has_cls, m->n_patches);
        return buf;
    }
    if ((int64_t)m->n_tokens * m->d_model * 4 > STORE_MAX_SLICE_BYTES) {
        snprintf(buf, len, "%d tokens x %d d_model is more than a store holds per image and layer", m->n_tokens, m->d_model);
        return buf;
    }
    if (m->images_per_file > 0 && (m->n_images + m->images_per_file - 1) / m->images_per_file > STORE_MAX_FILES) {
        snprintf(buf, len, "%lld images in files of %lld is more than %d files", (long long)m->n_images, (long long)m->images_per_file,
                 STORE_MAX_FILES);
        return buf;
    }
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i] < 0) {
            snprintf(buf, len, "layers must be resolved to block indices >= 0 (got %d)", m->layers[i]);
            return buf;
        }
    if (m->dtype != STORE_F32 && m->dtype != STORE_F16 && m->dtype != STORE_BF16) {
        snprintf(buf, len, "unknown dtype %d", (int)m->dtype);
        return buf;
    }
    return NULL;
}

static void meta_check(const StoreMeta *m, const char *dir) {
    char buf[512];
    if (meta_problem(m, buf, sizeof buf)) saev_usage_fail("store %s: %s", dir, buf);
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
#define RD_INT(key, field)                                            \
    if (attr_read_i64(f, key, &v) || v < INT_MIN || v > INT_MAX) return key; \
    m->field = v;
    RD_STR("model_family", model_family);
    RD_STR("model", model);
    RD_STR("checkpoint_digest", checkpoint_digest);
    int n = attr_read_i64s(f, "layers", &layers);
    if (n <= 0) { free(layers); return "layers"; }
    m->n_layers = n;
    m->layers = mallocCheck(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) {
        if (layers[i] < 0 || layers[i] > INT_MAX) { free(layers); return "layers"; }
        m->layers[i] = (int)layers[i];
    }
    free(layers);
    RD_INT("tokens", n_tokens);
    RD_INT("has_cls", has_cls);
    RD_INT("patches", n_patches);
    RD_INT("d_model", d_model);
    char *dt = attr_read_str(f, "dtype");
    int bad = store_dtype_parse(dt, &m->dtype);
    free(dt);
    if (bad) return "dtype";
    if (attr_read_i64(f, "n_images", &m->n_images)) return "n_images";
    if (attr_read_i64(f, "images_per_file", &m->images_per_file)) return "images_per_file";
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

static hid_t make_fapl(const Comm *comm) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    h5Check(fapl);
    if (comm) {
        h5Check(H5Pset_fapl_mpio(fapl, comm->mpi, MPI_INFO_NULL));
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
static void create_file(const char *path, const StoreMeta *m, int f, int n_files, int64_t first, int64_t n_f, const Comm *comm) {
    hid_t fapl = make_fapl(comm);
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
    hsize_t nl[2] = {(hsize_t)n_f, (hsize_t)m->n_layers};
    create_small(file, "checksum", H5T_STD_U32LE, 2, nl);
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

/* Opens dataset `name` of a store file and checks that it has the given rank, extent,
 * type class and element size (and, for 2-byte floats, exponent width: float16 or
 * bfloat16); -1 with the problem in err. `optional`: absent is fine (returns 0, *out -1). */
static int open_checked(hid_t file, const char *path, const char *name, int rank, const hsize_t *dims, H5T_class_t cls, size_t size,
                        size_t exp_bits, int optional, hid_t *out, char *err, size_t errlen) {
    *out = -1;
    htri_t exists;
    H5E_BEGIN_TRY { exists = H5Lexists(file, name, H5P_DEFAULT); } H5E_END_TRY;
    if (exists <= 0) return optional ? 0 : saev_errf(err, errlen, "store file %s has no dataset \"%s\"", path, name);
    hid_t d, sp = -1, t = -1;
    H5E_BEGIN_TRY { d = H5Dopen2(file, name, H5P_DEFAULT); } H5E_END_TRY;
    if (d < 0) return saev_errf(err, errlen, "store file %s: cannot open dataset \"%s\" (corrupt file?)", path, name);
    hsize_t have[8] = {0};
    int ok = 0, have_rank = -1;
    H5E_BEGIN_TRY {
        sp = H5Dget_space(d);
        t = H5Dget_type(d);
        have_rank = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
        if (have_rank == rank && H5Sget_simple_extent_dims(sp, have, NULL) == rank && t >= 0 && H5Tget_class(t) == cls &&
            H5Tget_size(t) == size && (cls != H5T_STRING || H5Tis_variable_str(t) == 0)) {
            ok = 1;
            for (int i = 0; i < rank; i++) ok &= have[i] == dims[i];
            if (ok && exp_bits) {
                size_t spos, epos, esize, mpos, msize;
                ok = H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize) >= 0 && esize == exp_bits;
            }
        }
    } H5E_END_TRY;
    h5_close_quietly(t);
    h5_close_quietly(sp);
    if (!ok) {
        char want[128] = "", got[128] = "";
        for (int i = 0; i < rank; i++) snprintf(want + strlen(want), sizeof want - strlen(want), "%s%llu", i ? ", " : "", (unsigned long long)dims[i]);
        for (int i = 0; i < have_rank && i < 8; i++) snprintf(got + strlen(got), sizeof got - strlen(got), "%s%llu", i ? ", " : "", (unsigned long long)have[i]);
        h5_close_quietly(d);
        return saev_errf(err, errlen, "store file %s: dataset \"%s\" is [%s] or of another type; [%s] of %zu-byte %s expected from the store's attributes",
                         path, name, got, want, size, cls == H5T_FLOAT ? "floats" : cls == H5T_STRING ? "strings" : "integers");
    }
    *out = d;
    return 0;
}

/* Reads a whole small dataset; -1 with a message naming the file when the bytes are not there. */
static int read_all(hid_t d, hid_t mem_type, void *buf, const char *path, const char *name, char *err, size_t errlen) {
    herr_t rc;
    H5E_BEGIN_TRY { rc = H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf); } H5E_END_TRY;
    return rc < 0 ? saev_errf(err, errlen, "store file %s: cannot read dataset \"%s\" (the file is truncated or corrupt)", path, name) : 0;
}

/* Opens every file of s (s->meta, s->n_files, s->file_first set), checks each dataset
 * against the metadata, and reads status (and, for readers, index, label and
 * checksums). 0, or -1 with the first problem in err (what was opened stays recorded
 * for close_files). */
static int open_files(Store *s, char *err, size_t errlen) {
    int n = s->n_files;
    const StoreMeta *m = &s->meta;
    s->file = mallocCheck(sizeof(hid_t) * (size_t)n);
    s->d_acts = mallocCheck(sizeof(hid_t) * (size_t)n);
    s->d_index = mallocCheck(sizeof(hid_t) * (size_t)n);
    s->d_label = mallocCheck(sizeof(hid_t) * (size_t)n);
    s->d_status = mallocCheck(sizeof(hid_t) * (size_t)n);
    s->d_reason = mallocCheck(sizeof(hid_t) * (size_t)n);
    s->d_plabels = mallocCheck(sizeof(hid_t) * (size_t)n);
    s->d_checksum = mallocCheck(sizeof(hid_t) * (size_t)n);
    s->n_open = 0;
    s->complete = 1;
    s->has_checksums = 1;
    hid_t fapl = make_fapl(s->comm);
    int rc = 0;
    for (int f = 0; f < n && rc == 0; f++) {
        char *path = file_path(s->dir, f, "");
        int64_t first = s->file_first[f], nf = s->file_first[f + 1] - first;
        hid_t file = quiet_open(path, s->writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, fapl);
        if (file < 0) {
            rc = saev_errf(err, errlen, "cannot open store file %s (missing or not HDF5)", path);
            free(path);
            break;
        }
        s->file[f] = file;
        s->d_acts[f] = s->d_index[f] = s->d_label[f] = s->d_status[f] = s->d_reason[f] = s->d_plabels[f] = s->d_checksum[f] = -1;
        s->n_open = f + 1;
        int64_t afirst = -1, anf = -1, fi = -1;
        if (attr_read_i64(file, "first_image", &afirst) || attr_read_i64(file, "n_images_in_file", &anf) ||
            attr_read_i64(file, "file_index", &fi) || fi != f || afirst != first || anf != nf) {
            rc = saev_errf(err, errlen, "store file %s does not belong to this store (file index/image range differ from file 0's)", path);
            free(path);
            break;
        }
        size_t es = store_dtype_size(m->dtype);
        hsize_t d4[4] = {(hsize_t)nf, (hsize_t)m->n_layers, (hsize_t)m->n_tokens, (hsize_t)m->d_model};
        hsize_t d1 = (hsize_t)nf, dp[2] = {(hsize_t)nf, (hsize_t)(m->n_patches ? m->n_patches : 1)}, dl[2] = {(hsize_t)nf, (hsize_t)m->n_layers};
        if (open_checked(file, path, "activations", 4, d4, H5T_FLOAT, es, es == 2 ? (m->dtype == STORE_F16 ? 5 : 8) : 0, 0, &s->d_acts[f], err, errlen) ||
            open_checked(file, path, "image_index", 1, &d1, H5T_INTEGER, 8, 0, 0, &s->d_index[f], err, errlen) ||
            open_checked(file, path, "label", 1, &d1, H5T_INTEGER, 8, 0, 0, &s->d_label[f], err, errlen) ||
            open_checked(file, path, "status", 1, &d1, H5T_INTEGER, 1, 0, 0, &s->d_status[f], err, errlen) ||
            open_checked(file, path, "skip_reason", 1, &d1, H5T_STRING, STORE_REASON_LEN, 0, 0, &s->d_reason[f], err, errlen) ||
            (m->has_patch_labels && open_checked(file, path, "patch_labels", 2, dp, H5T_INTEGER, 1, 0, 0, &s->d_plabels[f], err, errlen)) ||
            open_checked(file, path, "checksum", 2, dl, H5T_INTEGER, 4, 0, 1, &s->d_checksum[f], err, errlen)) {
            rc = -1;
            free(path);
            break;
        }
        if (s->d_checksum[f] < 0) s->has_checksums = 0;
        /* A file shorter than its allocated small datasets is truncated: say so before
         * allocating anything from the numbers it claims. */
        struct stat sb;
        if (stat(path, &sb) == 0 && (int64_t)sb.st_size < nf * (int64_t)(1 + 16 + STORE_REASON_LEN)) {
            rc = saev_errf(err, errlen, "store file %s is truncated: %lld bytes cannot hold the records of its %lld images", path,
                           (long long)sb.st_size, (long long)nf);
            free(path);
            break;
        }
        free(path);
    }
    h5Check(H5Pclose(fapl));
    if (rc) return -1;
    if (s->has_checksums == 0)
        for (int f = 0; f < n; f++) /* all or nothing: a store is either from before checksums or not */
            if (s->d_checksum[f] >= 0) {
                h5_close_quietly(s->d_checksum[f]);
                s->d_checksum[f] = -1;
            }
    s->status = mallocCheck((size_t)m->n_images);
    if (!s->writable) {
        s->image_index = mallocCheck(sizeof(int64_t) * (size_t)m->n_images);
        s->label = mallocCheck(sizeof(int64_t) * (size_t)m->n_images);
        if (s->has_checksums) s->checksum = mallocCheck(sizeof(uint32_t) * (size_t)m->n_images * (size_t)m->n_layers);
    }
    for (int f = 0; f < n; f++) {
        char *path = file_path(s->dir, f, "");
        int64_t first = s->file_first[f];
        rc = read_all(s->d_status[f], H5T_NATIVE_UINT8, s->status + first, path, "status", err, errlen);
        for (int64_t i = first; rc == 0 && i < s->file_first[f + 1]; i++)
            if (s->status[i] > STORE_SKIPPED)
                rc = saev_errf(err, errlen, "store file %s: status of image %lld is %d, not 0, 1 or 2 (corrupt file)", path, (long long)i,
                               s->status[i]);
        if (rc == 0 && !s->writable)
            rc = read_all(s->d_index[f], H5T_NATIVE_INT64, s->image_index + first, path, "image_index", err, errlen) ||
                 read_all(s->d_label[f], H5T_NATIVE_INT64, s->label + first, path, "label", err, errlen) ||
                 (s->has_checksums &&
                  read_all(s->d_checksum[f], H5T_NATIVE_UINT32, s->checksum + first * m->n_layers, path, "checksum", err, errlen));
        int64_t done = 0;
        if (attr_read_i64(s->file[f], "complete", &done) || done != 1) s->complete = 0;
        free(path);
        if (rc) return -1;
    }
    return 0;
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
    char why[512];
    if (meta_problem(&s->meta, why, sizeof why)) {
        snprintf(err, errlen, "%s: %s", path0, why);
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

/* The writers: comm's ranks, or this process alone (comm NULL). */
static void writers(const Comm *comm, int *rank, int *size) {
    *rank = comm ? comm->rank : 0;
    *size = comm ? comm->size : 1;
}

static void barrier(const Comm *comm) {
    if (comm) comm_barrier(comm);
}

Store *store_open_write(const char *dir, const StoreMeta *meta, int resume, const Comm *comm) {
    meta_check(meta, dir);
    int rank, size;
    writers(comm, &rank, &size);
    Store *s = callocCheck(1, sizeof(Store));
    s->dir = strdupCheck(dir);
    s->writable = 1;
    s->comm = comm;
    s->dxpl = H5Pcreate(H5P_DATASET_XFER);
    h5Check(s->dxpl);
    if (comm) h5Check(H5Pset_dxpl_mpio(s->dxpl, H5FD_MPIO_COLLECTIVE));

    char *path0 = file_path(dir, 0, "");
    int exists = rank == 0 ? path_exists(path0) : 0;
    if (comm) comm_bcast(comm, &exists, sizeof exists, 0);
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
        barrier(comm);
        for (int f = 0; f < s->n_files; f++) {
            char *tmp = file_path(dir, f, ".tmp");
            create_file(tmp, &s->meta, f, s->n_files, s->file_first[f], s->file_first[f + 1] - s->file_first[f], comm);
            free(tmp);
        }
        barrier(comm);
        if (rank == 0)
            for (int f = s->n_files - 1; f >= 0; f--) { /* file 0 last: its presence means all are there */
                char *tmp = file_path(dir, f, ".tmp"), *fin = file_path(dir, f, "");
                if (rename(tmp, fin)) saev_fail("cannot rename %s to %s: %s", tmp, fin, strerror(errno));
                free(tmp);
                free(fin);
            }
        barrier(comm);
    }
    free(path0);
    char err[1024];
    if (open_files(s, err, sizeof err)) saev_fail("%s", err);
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
static void write_rows(Store *s, int f, hid_t d, hid_t mem_type, const void *buf, int64_t n, const int64_t *idx, const uint8_t *keep,
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
    herr_t rc;
    H5E_BEGIN_TRY { rc = H5Dwrite(d, mem_type, msp, fsp, s->dxpl, buf); } H5E_END_TRY;
    if (rc < 0) {
        /* Status is written last, so the images of this call stay pending: the store is as
         * it was before the call, and a rerun with resume writes them again. */
        char *path = file_path(s->dir, f, ""), name[64] = "?";
        H5Iget_name(d, name, sizeof name);
        struct statvfs v;
        int full = statvfs(s->dir, &v) == 0 && (uint64_t)v.f_bavail * v.f_frsize < (64u << 20);
        saev_fail("store file %s: cannot write %s: %s; the images of this batch stay pending (free space, then rerun with "
                  "activations.resume=true to continue)", path, name, full ? "the disk is full" : "write error (see the HDF5/MPI-IO messages)");
    }
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
    /* Checksum of each image's slice of each layer, of the bytes as stored. */
    size_t slice = (size_t)m->n_tokens * (size_t)m->d_model * store_dtype_size(m->dtype);
    uint32_t *sums = callocCheck((size_t)nn * (size_t)m->n_layers, sizeof(uint32_t));
    for (int64_t j = 0; j < n; j++)
        if (!skip_reason || !skip_reason[j])
            for (int l = 0; l < m->n_layers; l++)
                sums[j * m->n_layers + l] = store_checksum((const char *)acts + ((size_t)j * (size_t)m->n_layers + (size_t)l) * slice, slice);
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
    if (s->comm) mpiCheck(MPI_Allreduce(MPI_IN_PLACE, touched, s->n_files, MPI_INT, MPI_MAX, s->comm->mpi));
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
        write_rows(s, f, s->d_acts[f], mt, acts, n, idx, keep, lo[f], hi[f], s->file_first[f]);
        h5Check(H5Tclose(mt));
    }
    s->n_writes++;
    fault_kill_at(FAULT_STORE_KILL_AFTER_WRITES, s->n_writes - 1); /* after the activations, before their status */
    for (f = 0; f < s->n_files; f++) {
        if (!touched[f]) continue;
        int64_t a = lo[f], b = hi[f], first = s->file_first[f];
        if (m->has_patch_labels) {
            if (!patch_labels && b > a) saev_fail("store %s has patch labels but store_write got none", s->dir);
            write_rows(s, f, s->d_plabels[f], H5T_NATIVE_UINT8, patch_labels, n, idx, NULL,
                       a, b, first);
        }
        write_rows(s, f, s->d_index[f], H5T_NATIVE_INT64, ii, n, idx, NULL, a, b, first);
        write_rows(s, f, s->d_label[f], H5T_NATIVE_INT64, ll, n, idx, NULL, a, b, first);
        if (s->has_checksums) write_rows(s, f, s->d_checksum[f], H5T_NATIVE_UINT32, sums, n, idx, NULL, a, b, first);
        hid_t rt = H5Dget_type(s->d_reason[f]);
        h5Check(rt);
        write_rows(s, f, s->d_reason[f], rt, reason, n, idx, NULL, a, b, first);
        h5Check(H5Tclose(rt));
    }
    /* Status last: an image counts as written only once its data is in the file. */
    for (f = 0; f < s->n_files; f++)
        if (touched[f]) write_rows(s, f, s->d_status[f], H5T_NATIVE_UINT8, st, n, idx, NULL, lo[f], hi[f], s->file_first[f]);
    for (int64_t j = 0; j < n; j++) s->status[idx[j]] = st[j];
    free(lo);
    free(hi);
    free(touched);
    free(keep);
    free(st);
    free(ii);
    free(ll);
    free(reason);
    free(sums);
}

static void close_files(Store *s) {
    for (int f = 0; f < s->n_open && s->file; f++) {
        hid_t ids[7] = {s->d_acts[f], s->d_index[f], s->d_label[f], s->d_status[f], s->d_reason[f], s->d_plabels[f], s->d_checksum[f]};
        for (int i = 0; i < 7; i++)
            if (ids[i] >= 0) h5Check(H5Dclose(ids[i]));
        h5Check(H5Fclose(s->file[f]));
    }
    s->n_open = 0;
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
    free(s->d_checksum);
    free(s->checksum);
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
    writers(s->comm, &rank, &size);
    barrier(s->comm);
    if (rank == 0)
        for (int f = 0; f < s->n_files; f++) {
            char *path = file_path(s->dir, f, "");
            int fd = open(path, O_RDONLY);
            if (fd < 0 || fsync(fd) || close(fd)) saev_fail("cannot sync %s: %s (disk full?)", path, strerror(errno));
            free(path);
        }
    barrier(s->comm);
}

int store_finish(Store *s) {
    /* Every image is written by one rank; the others still hold 0 for it. */
    if (s->comm) {
        /* MPI counts are int: reduce in slices. */
        for (int64_t off = 0; off < s->meta.n_images; off += INT_MAX / 2) {
            int64_t k = s->meta.n_images - off < INT_MAX / 2 ? s->meta.n_images - off : INT_MAX / 2;
            mpiCheck(MPI_Allreduce(MPI_IN_PLACE, s->status + off, (int)k, MPI_UINT8_T, MPI_MAX, s->comm->mpi));
        }
    }
    int64_t pending = 0, skipped = 0;
    for (int64_t i = 0; i < s->meta.n_images; i++) {
        pending += s->status[i] == STORE_PENDING;
        skipped += s->status[i] == STORE_SKIPPED;
    }
    for (int f = 0; f < s->n_files; f++) {
        herr_t rc;
        H5E_BEGIN_TRY { rc = H5Fflush(s->file[f], H5F_SCOPE_LOCAL); } H5E_END_TRY;
        if (rc < 0) {
            char *path = file_path(s->dir, f, "");
            saev_fail("store file %s: cannot flush (disk full?); written images stay written, rerun with activations.resume=true", path);
        }
    }
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
    s->dxpl = -1; /* reads use H5P_DEFAULT; store_free closes only what it created */
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
    if (open_files(s, err, errlen)) {
        close_files(s);
        store_free(s);
        return NULL;
    }
    return s;
}

void store_close(Store *s) {
    if (!s) return;
    if (s->writable) saev_fail("store_close on a store opened for writing: use store_finish");
    close_files(s);
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

/* The HDF5 chunk of the activations of file f that holds row `row` of layer l, as text. */
static void chunk_text(const Store *s, int f, int64_t row, int l, char *buf, size_t len) {
    hsize_t chunk[4] = {1, 1, 1, 1};
    hid_t dcpl;
    H5E_BEGIN_TRY {
        dcpl = H5Dget_create_plist(s->d_acts[f]);
        if (dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED) H5Pget_chunk(dcpl, 4, chunk);
    } H5E_END_TRY;
    h5_close_quietly(dcpl);
    snprintf(buf, len, "chunk [%llu, %d, 0, 0]", (unsigned long long)((hsize_t)row / chunk[0] * chunk[0]), l);
}

/* Reads rows [a, b) (of the whole store, inside file f) of layers [l0, l0+nl) as raw
 * bytes into out. 0, or -1 when HDF5 cannot (a truncated or damaged file). */
static int read_block(Store *s, int f, int64_t a, int64_t b, int l0, int nl, void *out) {
    const StoreMeta *m = &s->meta;
    hsize_t start[4] = {(hsize_t)(a - s->file_first[f]), (hsize_t)l0, 0, 0};
    hsize_t count[4] = {(hsize_t)(b - a), (hsize_t)nl, (hsize_t)m->n_tokens, (hsize_t)m->d_model};
    herr_t rc = -1;
    hid_t fsp = -1, mt = -1, msp = -1;
    H5E_BEGIN_TRY {
        fsp = H5Dget_space(s->d_acts[f]);
        mt = H5Dget_type(s->d_acts[f]);
        msp = H5Screate_simple(4, count, NULL);
        if (fsp >= 0 && mt >= 0 && msp >= 0 && H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL) >= 0)
            rc = H5Dread(s->d_acts[f], mt, msp, fsp, H5P_DEFAULT, out);
    } H5E_END_TRY;
    h5_close_quietly(msp);
    h5_close_quietly(mt);
    h5_close_quietly(fsp);
    return rc < 0 ? -1 : 0;
}

/* The first image of rows [a, b) x layers [l0, l0+nl) in buf whose stored checksum
 * differs (only written images carry one); -1 when all match or the store has none.
 * *layer gets its layer. */
static int64_t first_bad_checksum(const Store *s, int64_t a, int64_t b, int l0, int nl, const void *buf, int *layer) {
    if (!s->has_checksums || !s->checksum) return -1;
    const StoreMeta *m = &s->meta;
    size_t slice = (size_t)m->n_tokens * (size_t)m->d_model * store_dtype_size(m->dtype);
    for (int64_t i = a; i < b; i++) {
        if (s->status[i] != STORE_WRITTEN) continue;
        for (int l = 0; l < nl; l++) {
            uint32_t got = store_checksum((const char *)buf + ((size_t)(i - a) * (size_t)nl + (size_t)l) * slice, slice);
            if (got != s->checksum[i * m->n_layers + l0 + l]) {
                *layer = l0 + l;
                return i;
            }
        }
    }
    return -1;
}

/* Reads the hyperslab [img0, img0+n) x layers [l0, l0+nl) x all tokens x d of the whole
 * store as raw stored bytes into out (contiguous, image-major), checking every written
 * image's checksum; a damaged file ends the job naming the file, image, layer and chunk. */
static void read_raw(Store *s, int64_t img0, int64_t n, int l0, int nl, void *out) {
    check_range(s, img0, n);
    const StoreMeta *m = &s->meta;
    size_t row_bytes = (size_t)nl * (size_t)m->n_tokens * (size_t)m->d_model * store_dtype_size(m->dtype);
    for (int f = 0; f < s->n_files && n > 0; f++) {
        int64_t a = img0 > s->file_first[f] ? img0 : s->file_first[f];
        int64_t b = img0 + n < s->file_first[f + 1] ? img0 + n : s->file_first[f + 1];
        if (a >= b) continue;
        char *dst = (char *)out + (size_t)(a - img0) * row_bytes;
        if (read_block(s, f, a, b, l0, nl, dst)) {
            char *path = file_path(s->dir, f, "");
            saev_fail("store file %s: cannot read images [%lld, %lld) of layers [%d, %d): the file is truncated or damaged "
                      "(saev inspect --verify %s lists every bad chunk)", path, (long long)(a - s->file_first[f]),
                      (long long)(b - s->file_first[f]), l0, l0 + nl, s->dir);
        }
        int layer = 0;
        int64_t bad = first_bad_checksum(s, a, b, l0, nl, dst, &layer);
        if (bad >= 0) {
            char *path = file_path(s->dir, f, ""), ch[96];
            chunk_text(s, f, bad - s->file_first[f], layer, ch, sizeof ch);
            saev_fail("store file %s: checksum mismatch in image %lld (row %lld of the file), layer %d, %s: the stored activations "
                      "are corrupt (saev inspect --verify %s lists every bad chunk)", path, (long long)bad,
                      (long long)(bad - s->file_first[f]), layer, ch, s->dir);
        }
    }
}

int64_t store_verify(Store *s, FILE *report) {
    const StoreMeta *m = &s->meta;
    size_t slice = (size_t)m->n_tokens * (size_t)m->d_model * store_dtype_size(m->dtype);
    /* Blocks of about 16 MiB of one layer: whole chunks in the usual layout. */
    int64_t per = (int64_t)((16u << 20) / slice);
    if (per < 1) per = 1;
    void *buf = mallocCheck(slice * (size_t)per);
    int64_t bad = 0;
    for (int f = 0; f < s->n_files; f++) {
        char *path = file_path(s->dir, f, "");
        for (int l = 0; l < m->n_layers; l++)
            for (int64_t a = s->file_first[f]; a < s->file_first[f + 1]; a += per) {
                int64_t b = a + per < s->file_first[f + 1] ? a + per : s->file_first[f + 1];
                int whole = read_block(s, f, a, b, l, 1, buf) == 0;
                /* Image by image: which ones are unreadable or differ. */
                for (int64_t i = a; i < b; i++) {
                    char *one = (char *)buf + (size_t)(i - a) * slice;
                    const char *why = NULL;
                    if (!whole && read_block(s, f, i, i + 1, l, 1, one)) why = "unreadable (truncated or damaged)";
                    int layer;
                    if (!why && first_bad_checksum(s, i, i + 1, l, 1, one, &layer) >= 0) why = "checksum mismatch";
                    if (!why) continue;
                    char ch[96];
                    chunk_text(s, f, i - s->file_first[f], l, ch, sizeof ch);
                    if (report)
                        fprintf(report, "bad: %s: image %lld (row %lld of the file), layer %d, %s: %s\n", path, (long long)i,
                                (long long)(i - s->file_first[f]), l, ch, why);
                    bad++;
                }
            }
        free(path);
    }
    free(buf);
    return bad;
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
        if (!v) fprintf(out, "  %s: (unreadable text)\n", name);
        else if (strchr(v, '\n')) {
            fprintf(out, "  %s: |\n", name);
            for (char *line = strtok(v, "\n"); line; line = strtok(NULL, "\n")) fprintf(out, "      %s\n", line);
        } else fprintf(out, "  %s: %s\n", name, v);
        free(v);
    } else if (H5Tget_class(t) == H5T_INTEGER) {
        int64_t *v = NULL;
        int n = attr_read_i64s(loc, name, &v);
        if (n < 0) {
            fprintf(out, "  %s: (unreadable integers)\n", name);
            h5Check(H5Tclose(t));
            h5Check(H5Aclose(a));
            return 0;
        }
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
    fprintf(out, "  checksums: %s\n", s->has_checksums ? "Fletcher-32 per image and layer, checked on every read (saev inspect --verify reads them all)"
                                                      : "none (a store written before saev-c stored checksums: reads are not verified)");
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
