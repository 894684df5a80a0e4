/*
 * fuzz_store.c: libFuzzer harness of the activation store reader (common/store/store.c).
 *
 * Raw bytes would mostly exercise HDF5's own parser, which is not ours to fix; what
 * saev-c must survive is a well-formed HDF5 file whose contents lie: wrong dimensions,
 * wrong dtypes, missing or mistyped attributes and datasets, impossible numbers, status
 * bytes out of range, bad checksums, missing files, truncated files. So the input is a
 * recipe: the harness reads a store shape and a list of lies from the bytes, writes such
 * a store (1 to 4 HDF5 files) with the HDF5 API into a scratch folder on /dev/shm, and
 * then does what `saev inspect --verify` and training do: store_open_read, store_verify,
 * store_describe, and, when verify found nothing wrong, reads every layer of every image
 * (which must then succeed: a read that ends the job is a finding). A refusal must name
 * the store or file.
 */
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "store/store.h"

typedef struct { const uint8_t *p; size_t n; } Recipe;
static unsigned take(Recipe *r) {
    if (!r->n) return 0;
    r->n--;
    return *r->p++;
}

static char g_dir[256];

static void put_str(hid_t f, const char *name, const char *v) {
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, &v);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
}

static void put_ints(hid_t f, const char *name, const int64_t *v, int n, int scalar) {
    hsize_t dim = (hsize_t)n;
    hid_t sp = scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dim, NULL);
    hid_t a = H5Acreate2(f, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, v);
    H5Aclose(a);
    H5Sclose(sp);
}

/* A dataset filled from buf (or left unwritten when buf is NULL). */
static void put_dataset(hid_t f, const char *name, hid_t type, int rank, const hsize_t *dims, int chunk_rows, const void *buf,
                        hid_t mem_type) {
    hid_t sp = H5Screate_simple(rank, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    int empty = 0;
    for (int i = 0; i < rank; i++) empty |= dims[i] == 0;
    if (chunk_rows > 0 && !empty) {
        hsize_t ch[4];
        for (int i = 0; i < rank; i++) ch[i] = dims[i];
        ch[0] = (hsize_t)chunk_rows < dims[0] ? (hsize_t)chunk_rows : dims[0];
        if (rank > 1) ch[1] = 1;
        H5Pset_chunk(dcpl, rank, ch);
    }
    H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
    hid_t d = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (d >= 0 && buf && !empty) H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    if (d >= 0) H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(sp);
}

/* Lies, one bit each in a 32-bit mask read from the recipe. */
enum {
    LIE_OMIT_ATTR = 1 << 0, LIE_ATTR_AS_TEXT = 1 << 1, LIE_ATTR_VALUE = 1 << 2, LIE_DIMS = 1 << 3, LIE_ACTS_TYPE = 1 << 4,
    LIE_OMIT_DATASET = 1 << 5, LIE_NO_CHECKSUMS = 1 << 6, LIE_STATUS = 1 << 7, LIE_CHECKSUM = 1 << 8, LIE_TRUNCATE = 1 << 9,
    LIE_DELETE_FILE = 1 << 10, LIE_REASON_TYPE = 1 << 11, LIE_CONTIGUOUS = 1 << 12, LIE_UNWRITTEN = 1 << 13,
    LIE_HUGE = 1 << 14, LIE_LAYERS = 1 << 15, LIE_SMALL_TYPE = 1 << 16, LIE_STRING_LIST = 1 << 17,
};

static const char *const attr_names[] = {"model_family", "model", "checkpoint_digest", "layers", "tokens", "has_cls", "patches",
                                          "d_model", "dtype", "n_images", "images_per_file", "patch_labels", "preprocessing",
                                          "dataset", "saev_version", "config", "file_index", "n_files", "first_image",
                                          "n_images_in_file", "complete"};
#define N_ATTRS ((int)(sizeof attr_names / sizeof *attr_names))

static void build_store(Recipe *r) {
    int64_t n_images = 1 + take(r) % 6, n_layers = 1 + take(r) % 3, has_cls = take(r) & 1, n_patches = take(r) % 5;
    int64_t d_model = 1 + take(r) % 6, ipf = take(r) % 4, plabels = take(r) & 1;
    int dtype = take(r) % 3;
    uint32_t lies = take(r) | (take(r) << 8) | ((uint32_t)take(r) << 16);
    int lie_attr = take(r) % N_ATTRS, lie_dataset = take(r) % 7, lie_dim = take(r) % 4, lie_file = take(r) % 4;
    int64_t lie_delta = (int8_t)take(r);
    unsigned lie_frac = take(r);
    if (n_patches == 0 && !has_cls) n_patches = 1;
    int64_t n_tokens = has_cls + n_patches;
    int n_files = ipf == 0 || ipf >= n_images ? 1 : (int)((n_images + ipf - 1) / ipf);
    static const char *const dtype_names[] = {"float32", "float16", "bfloat16"};
    size_t es = dtype == 0 ? 4 : 2;
    for (int f = 0; f < n_files; f++) {
        int64_t first = ipf > 0 ? f * ipf : 0, nf = (f + 1 < n_files ? first + ipf : n_images) - first;
        char path[300];
        snprintf(path, sizeof path, "%s/acts-%06d.h5", g_dir, f);
        hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        if (file < 0) abort();
        int lie_here = f == lie_file % n_files;
        /* activations */
        hid_t at = dtype == 0 ? H5Tcopy(H5T_IEEE_F32LE) : H5Tcopy(H5T_IEEE_F32LE);
        if (dtype != 0) {
            H5Tset_fields(at, 15, dtype == 1 ? 10 : 7, dtype == 1 ? 5 : 8, 0, dtype == 1 ? 10 : 7);
            H5Tset_size(at, 2);
            H5Tset_ebias(at, dtype == 1 ? 15 : 127);
        }
        if (lie_here && (lies & LIE_ACTS_TYPE)) { H5Tclose(at); at = H5Tcopy(lie_delta & 1 ? H5T_STD_I32LE : H5T_IEEE_F64LE); }
        hsize_t d4[4] = {(hsize_t)nf, (hsize_t)n_layers, (hsize_t)n_tokens, (hsize_t)d_model};
        hsize_t d1[1] = {(hsize_t)nf}, dp[2] = {(hsize_t)nf, (hsize_t)(n_patches ? n_patches : 1)}, dl[2] = {(hsize_t)nf, (hsize_t)n_layers};
        hsize_t *dims_of[7] = {d4, d1, d1, d1, d1, dp, dl};
        int rank_of[7] = {4, 1, 1, 1, 1, 2, 2};
        if (lie_here && (lies & LIE_DIMS)) {
            int k = lie_dim % rank_of[lie_dataset];
            dims_of[lie_dataset][k] = (hsize_t)((int64_t)dims_of[lie_dataset][k] + (lie_delta % 3 ? lie_delta % 3 : 1) < 0 ? 0
                                                : (int64_t)dims_of[lie_dataset][k] + (lie_delta % 3 ? lie_delta % 3 : 1));
        }
        size_t slice = (size_t)n_tokens * (size_t)d_model * es;
        size_t acts_bytes = (size_t)d4[0] * d4[1] * d4[2] * d4[3] * 8; /* room for any element size */
        uint8_t *acts = calloc(acts_bytes ? acts_bytes : 1, 1);
        for (size_t i = 0; i < acts_bytes; i++) acts[i] = r->n ? r->p[i % r->n] : (uint8_t)i;
        if (dtype != 0 && !(lies & LIE_ACTS_TYPE))
            for (size_t i = 1; i < acts_bytes; i += 2) acts[i] &= 0x3f; /* finite halves, mostly */
        int omit = lie_here && (lies & LIE_OMIT_DATASET) ? lie_dataset : -1;
        int chunk_rows = lies & LIE_CONTIGUOUS ? 0 : 1 + (int)(lie_frac % 3);
        int unwritten = lie_here && (lies & LIE_UNWRITTEN);
        if (omit != 0)
            put_dataset(file, "activations", at, 4, d4, chunk_rows, unwritten ? NULL : acts,
                        (lies & LIE_ACTS_TYPE) && lie_here ? (lie_delta & 1 ? H5T_NATIVE_INT32 : H5T_NATIVE_DOUBLE) : at);
        H5Tclose(at);
        int64_t *idx = calloc(nf + 4, sizeof(int64_t));
        for (int64_t i = 0; i < nf + 4; i++) idx[i] = first + i;
        if (omit != 1) put_dataset(file, "image_index", H5T_STD_I64LE, 1, dims_of[1], 0, idx, H5T_NATIVE_INT64);
        if (omit != 2) put_dataset(file, "label", lie_here && (lies & LIE_SMALL_TYPE) ? H5T_STD_I16LE : H5T_STD_I64LE, 1, dims_of[2], 0, idx, H5T_NATIVE_INT64);
        uint8_t st[16];
        for (int i = 0; i < 16; i++) st[i] = lie_here && (lies & LIE_STATUS) ? (uint8_t)(take(r) % 4) : (uint8_t)(1 + (i == 2 && (lie_frac & 4)));
        if (omit != 3) put_dataset(file, "status", H5T_STD_U8LE, 1, dims_of[3], 0, st, H5T_NATIVE_UINT8);
        hid_t rt = H5Tcopy(H5T_C_S1);
        H5Tset_size(rt, lie_here && (lies & LIE_REASON_TYPE) ? (size_t)(1 + lie_frac) : STORE_REASON_LEN);
        char *reasons = calloc((size_t)(nf + 4), 512);
        snprintf(reasons, 512, "skipped: decode error");
        if (omit != 4) put_dataset(file, "skip_reason", rt, 1, dims_of[4], 0, reasons, rt);
        H5Tclose(rt);
        uint8_t *pl = calloc((size_t)dp[0] * dp[1] + 1, 1);
        if (plabels && omit != 5) put_dataset(file, "patch_labels", H5T_STD_U8LE, 2, dims_of[5], 0, pl, H5T_NATIVE_UINT8);
        if (!(lies & LIE_NO_CHECKSUMS) && omit != 6) {
            uint32_t *sums = calloc((size_t)(dl[0] * dl[1]) + 1, sizeof(uint32_t));
            for (int64_t i = 0; i < nf && (size_t)i < (size_t)dl[0]; i++)
                for (int64_t l = 0; l < n_layers && (hsize_t)l < dl[1]; l++)
                    sums[i * dl[1] + l] = store_checksum(acts + ((size_t)i * n_layers + l) * slice, slice);
            if (lie_here && (lies & LIE_CHECKSUM)) sums[0] ^= 1u << (lie_frac % 32);
            put_dataset(file, "checksum", H5T_STD_U32LE, 2, dims_of[6], 0, sums, H5T_NATIVE_UINT32);
            free(sums);
        }
        free(acts);
        free(idx);
        free(reasons);
        free(pl);
        /* attributes */
        int64_t layers[8];
        for (int l = 0; l < n_layers; l++) layers[l] = lie_here && (lies & LIE_LAYERS) ? lie_delta + l : 10 + l;
        int64_t ints[] = {n_tokens, has_cls, n_patches, d_model, n_images, ipf, plabels, f, n_files, first, nf, 1};
        const char *int_names[] = {"tokens", "has_cls", "patches", "d_model", "n_images", "images_per_file", "patch_labels",
                                   "file_index", "n_files", "first_image", "n_images_in_file", "complete"};
        for (int a = 0; a < N_ATTRS; a++) {
            const char *name = attr_names[a];
            int lie = lie_here && a == lie_attr;
            if (lie && (lies & LIE_OMIT_ATTR)) continue;
            if (lie && (lies & LIE_ATTR_AS_TEXT)) { put_str(file, name, "12"); continue; }
            if (!strcmp(name, "layers")) {
                if (lie && (lies & LIE_STRING_LIST)) put_str(file, name, "[10]");
                else put_ints(file, name, layers, (int)n_layers, 0);
                continue;
            }
            if (!strcmp(name, "dtype")) { put_str(file, name, lie && (lies & LIE_ATTR_VALUE) ? "float64" : dtype_names[dtype]); continue; }
            int k = -1;
            for (int i = 0; i < (int)(sizeof int_names / sizeof *int_names); i++)
                if (!strcmp(name, int_names[i])) k = i;
            if (k < 0) { put_str(file, name, lie && (lies & LIE_ATTR_VALUE) ? "" : "fuzz"); continue; }
            int64_t v = ints[k];
            if (lie && (lies & LIE_ATTR_VALUE)) v += lie_delta;
            if (lie && (lies & LIE_HUGE)) v = lie_delta < 0 ? INT64_MIN + lie_delta + 128 : ((int64_t)1 << 40) + lie_delta;
            put_ints(file, name, &v, 1, 1);
        }
        H5Fclose(file);
        if (lie_here && (lies & LIE_TRUNCATE)) {
            struct stat sb;
            if (stat(path, &sb) == 0 && truncate(path, (off_t)((uint64_t)sb.st_size * lie_frac / 256))) abort();
        }
        if (lie_here && (lies & LIE_DELETE_FILE) && n_files > 1) unlink(path);
    }
}

static void clean_dir(void) {
    for (int f = 0; f < 8; f++) {
        char path[300];
        snprintf(path, sizeof path, "%s/acts-%06d.h5", g_dir, f);
        unlink(path);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_dir[0]) {
        snprintf(g_dir, sizeof g_dir, "/dev/shm/saev-fuzz-store-%d", (int)getpid());
        if (mkdir(g_dir, 0700) && access(g_dir, W_OK)) abort();
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* the lies make HDF5 complain; its stack is noise here */
    }
    Recipe r = {data, size};
    clean_dir();
    build_store(&r);
    char err[1024];
    Store *s = store_open_read(g_dir, err, sizeof err);
    if (!s) {
        if (!strstr(err, g_dir)) abort(); /* a refusal names the store or its file */
    } else {
        int64_t bad = store_verify(s, NULL);
        if (bad == 0) {
            const StoreMeta *m = &s->meta;
            float *out = malloc(sizeof(float) * (size_t)m->n_tokens * (size_t)m->d_model);
            if (!out) abort();
            for (int l = 0; l < m->n_layers; l++)
                for (int64_t i = 0; i < m->n_images; i++) store_read_layer(s, l, i, 1, 0, m->n_tokens, out);
            free(out);
        }
        store_close(s);
        FILE *devnull = fopen("/dev/null", "w");
        store_describe(g_dir, devnull);
        fclose(devnull);
    }
    clean_dir();
    return 0;
}
