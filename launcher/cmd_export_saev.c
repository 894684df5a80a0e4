/*
 * cmd_export_saev.c: `saev export-saev STORE DIR [--max-tokens-per-shard N]` writes an
 * activation store as saev's sharded-activation protocol 2.1, so saev's own loaders
 * (saev.data.indexed / ordered / shuffled) read our activations.
 *
 * The layout follows saev's code at OSU-NLP-Group/saev@3d73f1f (2026-03-11):
 * src/saev/data/shards.py (Metadata, ShardWriter, LabelsWriter, ShardInfo) and
 * docs/src/developers/protocol.md. Where the two disagree the code wins, because
 * Metadata.load passes metadata.json's keys to the dataclass constructor:
 *   metadata.json  {family, ckpt, layers, content_tokens_per_example, cls_token, d_model,
 *                   n_examples, max_tokens_per_shard, data, dataset, pixel_agg, dtype,
 *                   protocol}; dtype "float32", protocol "2.1", pixel_agg "majority"
 *                   (the doc's older names patches_per_ex / patches_per_shard are gone)
 *   acts%06d.bin   float32 little-endian, C order [examples_per_shard, layers, tokens,
 *                   d_model] with tokens = CLS (if cls_token) then content (patch)
 *                   tokens, examples_per_shard = max_tokens_per_shard // (tokens * layers);
 *                   every file has the full shard shape (saev memmaps it so), the last
 *                   one zero-padded past its n_examples
 *   shards.json    [{"name": "acts000000.bin", "n_examples": k}, ...]
 *   labels.bin     uint8 [n_examples, content_tokens_per_example], only with patch labels
 * `data` is base64(pickle(x)) of saev's dataset config, a Python object we cannot
 * produce; we store base64(pickle(dict)) of our dataset and preprocessing text, which
 * saev passes through (only Metadata.make_data_cfg, used for visuals, needs the object).
 * saev's loaders also require the directory to be named .../saev/shards/<hash>; any
 * name works for <hash> (they check the path's shape only).
 *
 * Skipped images (bad input) have zero activations in the export; a warning counts them.
 * Files are written under a temporary name and renamed (fsutil.h); metadata.json is written last.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "check.h"
#include "config_args.h"
#include "commands.h"
#include "log.h"
#include "store/store.h"

#define SAEV_DEFAULT_MAX_TOKENS_PER_SHARD 2400000 /* saev framework/shards.py Config default */

static char *base64(const unsigned char *p, size_t n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = mallocCheck(4 * ((n + 2) / 3) + 1), *o = out;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        *o++ = tab[v >> 18 & 63];
        *o++ = tab[v >> 12 & 63];
        *o++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? tab[v & 63] : '=';
    }
    *o = 0;
    return out;
}

/* pickle protocol 2 of a dict of str -> str: PROTO 2, EMPTY_DICT, MARK, (BINUNICODE k,
 * BINUNICODE v)*, SETITEMS, STOP. */
static unsigned char *pickle_str_dict(const char *const *kv, int n_pairs, size_t *len) {
    size_t cap = 8;
    for (int i = 0; i < 2 * n_pairs; i++) cap += 5 + strlen(kv[i]);
    unsigned char *b = mallocCheck(cap), *o = b;
    *o++ = 0x80; *o++ = 2; *o++ = '}'; *o++ = '(';
    for (int i = 0; i < 2 * n_pairs; i++) {
        uint32_t l = (uint32_t)strlen(kv[i]);
        *o++ = 'X';
        for (int k = 0; k < 4; k++) *o++ = (unsigned char)(l >> (8 * k));
        memcpy(o, kv[i], l);
        o += l;
    }
    *o++ = 'u'; *o++ = '.';
    *len = (size_t)(o - b);
    return b;
}


/* dir/name holding text and a final newline, written atomically. */
static void write_json_file(const char *dir, const char *name, const char *text) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t n = strlen(text);
    char *buf = mallocCheck(n + 1);
    memcpy(buf, text, n);
    buf[n] = '\n';
    write_file_atomic_or_die(path, buf, n + 1);
    free(buf);
}

static const char *saev_families[] = {"bird-mae", "clip", "dinov2", "dinov3", "fake-clip", "pe-core", "pe-spatial", "siglip"};

int cmd_export_saev(int argc, char **argv) {
    const char *store_path = NULL, *dir = NULL;
    long long max_tokens = SAEV_DEFAULT_MAX_TOKENS_PER_SHARD;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: saev export-saev STORE DIR [--max-tokens-per-shard N]\n\n"
                   "Writes the activation store STORE as saev's protocol-2.1 shards in DIR (metadata.json,\n"
                   "shards.json, acts%%06d.bin, labels.bin). saev's loaders want DIR = .../saev/shards/<name>.\n"
                   "N (default %d, saev's default) sets the shard size in tokens.\n",
                   SAEV_DEFAULT_MAX_TOKENS_PER_SHARD);
            return 0;
        }
        if (!strcmp(argv[i], "--max-tokens-per-shard") && i + 1 < argc) {
            i++;
            max_tokens = flag_int_or_die("export-saev", argv[i - 1], argv[i], 1, INT64_MAX);
        } else if (argv[i][0] == '-') saev_usage_fail("export-saev: unknown option %s", argv[i]);
        else if (!store_path) store_path = argv[i];
        else if (!dir) dir = argv[i];
        else saev_usage_fail("export-saev: too many arguments (usage: saev export-saev STORE DIR)");
    }
    if (!store_path || !dir) saev_usage_fail("usage: saev export-saev STORE DIR [--max-tokens-per-shard N]");
    char err[1024];
    Store *s = store_open_read(store_path, err, sizeof err);
    if (!s) saev_usage_fail("export-saev: %s", err);
    if (!s->complete) saev_usage_fail("export-saev: store %s is incomplete; finish it (rerun `saev activations`) first", store_path);
    const StoreMeta *m = &s->meta;
    int64_t L = m->n_layers, T = m->n_tokens, D = m->d_model, N = m->n_images;
    int64_t eps = max_tokens / (T * L);
    if (eps < 1)
        saev_usage_fail("export-saev: one example needs %lld tokens (%lld tokens x %lld layers); raise --max-tokens-per-shard",
                        (long long)(T * L), (long long)T, (long long)L);
    int known = 0;
    for (size_t i = 0; i < sizeof saev_families / sizeof *saev_families; i++) known |= !strcmp(m->model_family, saev_families[i]);
    if (!known) log_warn("model family \"%s\" is not one saev knows; its Metadata will reject it", m->model_family);
    int64_t skipped = 0;
    for (int64_t i = 0; i < N; i++) skipped += s->status[i] == STORE_SKIPPED;
    if (skipped) log_warn("%lld skipped images are exported as zero activations (saev has no notion of skipped images)", (long long)skipped);

    char *parent = strdupCheck(dir); /* mkdir -p */
    for (char *q = parent + 1; *q; q++)
        if (*q == '/') {
            *q = 0;
            if (mkdir(parent, 0777) && errno != EEXIST) saev_fail("cannot create %s: %s", parent, strerror(errno));
            *q = '/';
        }
    free(parent);
    if (mkdir(dir, 0777) && errno != EEXIST) saev_fail("cannot create %s: %s", dir, strerror(errno));
    int64_t n_shards = (N + eps - 1) / eps, row = L * T * D;
    int64_t block = (64 << 20) / (row * 4) > 0 ? (64 << 20) / (row * 4) : 1; /* images per read: ~64 MiB */
    float *buf = mallocCheck(sizeof(float) * (size_t)(block * row));
    cJSON *shards = cJSON_CreateArray();
    for (int64_t sh = 0; sh < n_shards; sh++) {
        char path[4096], name[32];
        snprintf(name, sizeof name, "acts%06lld.bin", (long long)sh);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        AtomicFile out;
        atomic_file_open_or_die(&out, path);
        FILE *f = out.f;
        int64_t first = sh * eps, n_sh = first + eps <= N ? eps : N - first;
        for (int64_t i = first; i < first + n_sh; i += block) {
            int64_t n = first + n_sh - i < block ? first + n_sh - i : block;
            store_read_images(s, i, n, buf);
            fwrite(buf, sizeof(float) * (size_t)row, (size_t)n, f); /* a failed write is seen by the commit */
        }
        /* Full shard shape: saev memmaps every file as [examples_per_shard, ...]. */
        if (fflush(f) || ftruncate(fileno(f), (off_t)(eps * row * 4))) saev_fail("cannot write %s: %s", out.tmp, strerror(errno));
        atomic_file_commit_or_die(&out);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", name);
        cJSON_AddNumberToObject(e, "n_examples", (double)n_sh);
        cJSON_AddItemToArray(shards, e);
    }
    free(buf);
    if (m->has_patch_labels && m->n_patches > 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s/labels.bin", dir);
        uint8_t *lab = mallocCheck((size_t)(N * m->n_patches));
        store_read_patch_labels(s, 0, N, lab);
        write_file_atomic_or_die(path, lab, (size_t)(N * m->n_patches));
        free(lab);
    }
    char *text = cJSON_Print(shards);
    write_json_file(dir, "shards.json", text);
    free(text);
    cJSON_Delete(shards);

    const char *kv[] = {"saev_c_dataset", m->dataset, "saev_c_preprocessing", m->preprocessing, "saev_c_store", store_path};
    size_t plen;
    unsigned char *pk = pickle_str_dict(kv, 3, &plen);
    char *data = base64(pk, plen);
    free(pk);
    cJSON *md = cJSON_CreateObject();
    cJSON_AddStringToObject(md, "family", m->model_family);
    cJSON_AddStringToObject(md, "ckpt", m->model);
    cJSON *layers = cJSON_AddArrayToObject(md, "layers");
    for (int l = 0; l < m->n_layers; l++) cJSON_AddItemToArray(layers, cJSON_CreateNumber(m->layers[l]));
    cJSON_AddNumberToObject(md, "content_tokens_per_example", m->n_patches);
    cJSON_AddBoolToObject(md, "cls_token", m->has_cls);
    cJSON_AddNumberToObject(md, "d_model", m->d_model);
    cJSON_AddNumberToObject(md, "n_examples", (double)N);
    cJSON_AddNumberToObject(md, "max_tokens_per_shard", (double)max_tokens);
    cJSON_AddStringToObject(md, "data", data);
    cJSON_AddStringToObject(md, "dataset", m->dataset);
    cJSON_AddStringToObject(md, "pixel_agg", "majority");
    cJSON_AddStringToObject(md, "dtype", "float32");
    cJSON_AddStringToObject(md, "protocol", "2.1");
    text = cJSON_Print(md);
    write_json_file(dir, "metadata.json", text);
    free(text);
    free(data);
    cJSON_Delete(md);
    printf("exported %lld images (%lld layers x %lld tokens x %lld) into %lld saev shard%s in %s\n", (long long)N, (long long)L,
           (long long)T, (long long)D, (long long)n_shards, n_shards == 1 ? "" : "s", dir);
    store_close(s);
    return 0;
}
