/*
 * cmd_export_saev.c: `saev export-saev STORE SHARDS_ROOT [--max-tokens-per-shard N]` writes
 * an activation store as saev's sharded-activation protocol 2.1 in SHARDS_ROOT/<hash>,
 * the directory saev's own writer would pick, so saev's loaders (saev.data.indexed /
 * ordered / shuffled) and its Metadata.make_data_cfg read our activations unchanged.
 *
 * Everything follows saev's writer at OSU-NLP-Group/saev@3d73f1f (2026-03-11),
 * src/saev/data/shards.py (Metadata, ShardWriter, LabelsWriter, ShardInfo, worker_fn):
 *   metadata.json  orjson OPT_INDENT_2 of Metadata, fields in declaration order:
 *                  family, ckpt, layers, content_tokens_per_example, cls_token, d_model,
 *                  n_examples, max_tokens_per_shard, data, dataset, pixel_agg, dtype
 *                  "float32", protocol "2.1"; no final newline
 *   <hash>         sha256(orjson OPT_SORT_KEYS of the same Metadata, compact)[:8]
 *   data           base64(pickle.dumps(cfg.data)) with Python 3.11's default protocol 4:
 *                  saev.data.datasets.ImgFolder(root=PosixPath(root)) for a folder store,
 *                  ImgSegFolder(root, split, labels_csv="labels.csv", bg_label=0) for an
 *                  ade20k one (a list store has no saev equivalent: its list's folder);
 *                  a store imported from saev passes its original `data` through
 *   dataset        str(data.root), as pathlib prints it
 *   acts%06d.bin   float32 little-endian, C order [examples_per_shard, layers, tokens,
 *                  d_model], tokens = CLS (if cls_token) then patches, examples_per_shard
 *                  = max_tokens_per_shard // (tokens * layers); every file has the full
 *                  shard shape (saev memmaps it so), the last one zero-padded
 *   shards.json    orjson OPT_INDENT_2 of [{"name": "acts000000.bin", "n_examples": k}, ...]
 *   labels.bin     uint8 [n_examples, content_tokens_per_example], only with patch labels
 *                  (saev's writer deletes it when nothing was written)
 * saev's writer also leaves an empty extra shard (n_examples 0) when n_examples is a
 * multiple of examples_per_shard; we do not write that file of zeros.
 *
 * Skipped images (bad input) have zero activations in the export; a warning counts them.
 * Files are written under a temporary name and renamed (fsutil.h); metadata.json is written last.
 */
#include <errno.h>
#include <stdarg.h>
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
#include "sha256.h"
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

/* ---- pickle.dumps(obj) as Python 3.11 writes it (protocol 4, one frame) ------------- */

typedef struct {
    unsigned char *b; // [n] bytes so far
    size_t n, cap;
    int memo;         // next memo index (MEMOIZE numbers objects in order)
    int char_memo[256]; // memo index of each 1-character string already written, -1 none
} Pk;

static void pk_put(Pk *p, const void *data, size_t n) {
    if (p->n + n > p->cap) {
        p->cap = 2 * (p->n + n) + 64;
        p->b = reallocCheck(p->b, p->cap);
    }
    memcpy(p->b + p->n, data, n);
    p->n += n;
}
static void pk_op(Pk *p, unsigned char op) { pk_put(p, &op, 1); }
static void pk_memoize(Pk *p) { pk_op(p, 0x94); p->memo++; }

/* CPython keeps one object per 1-character Latin-1 string, so pickle memoizes it once and
 * refers back (BINGET) on a repeat; other strings here are distinct objects. */
static void pk_str(Pk *p, const char *s) {
    size_t n = strlen(s);
    int one = n == 1 && (unsigned char)s[0] < 0x80;
    if (one && p->char_memo[(unsigned char)s[0]] >= 0) {
        unsigned char get[2] = {'h', (unsigned char)p->char_memo[(unsigned char)s[0]]};
        pk_put(p, get, 2);
        return;
    }
    if (n < 256) {
        unsigned char h[2] = {0x8c, (unsigned char)n}; /* SHORT_BINUNICODE */
        pk_put(p, h, 2);
    } else {
        unsigned char h[5] = {'X', (unsigned char)n, (unsigned char)(n >> 8), (unsigned char)(n >> 16), (unsigned char)(n >> 24)};
        pk_put(p, h, 5);
    }
    pk_put(p, s, n);
    if (one && p->memo < 256) p->char_memo[(unsigned char)s[0]] = p->memo;
    pk_memoize(p);
}

static void pk_global(Pk *p, const char *module, const char *name) {
    pk_str(p, module);
    pk_str(p, name);
    pk_op(p, 0x93); /* STACK_GLOBAL */
    pk_memoize(p);
}

/* pathlib.PurePosixPath's parts of `path`: "/" first when absolute, empty and "."
 * components dropped; its str() is written to text. Returns the number of parts. */
static int posix_parts(const char *path, char parts[][256], int max_parts, char *text, size_t text_len) {
    int n = 0;
    if (path[0] == '/') snprintf(parts[n++], 256, "/");
    char *copy = strdupCheck(path), *save = NULL;
    for (char *t = strtok_r(copy, "/", &save); t && n < max_parts; t = strtok_r(NULL, "/", &save))
        if (strcmp(t, ".")) snprintf(parts[n++], 256, "%s", t);
    free(copy);
    text[0] = 0;
    for (int i = 0; i < n; i++)
        snprintf(text + strlen(text), text_len - strlen(text), "%s%s", i && strcmp(parts[i - 1], "/") ? "/" : "", parts[i]);
    if (!n) snprintf(text, text_len, ".");
    return n;
}

/* PosixPath(path): STACK_GLOBAL pathlib.PosixPath, its parts as a tuple, REDUCE. */
static void pk_path(Pk *p, const char *path) {
    char parts[64][256], text[4096];
    int n = posix_parts(path, parts, 64, text, sizeof text);
    pk_global(p, "pathlib", "PosixPath");
    if (n == 0) { pk_op(p, ')'); }
    else {
        if (n > 3) pk_op(p, '(');
        for (int i = 0; i < n; i++) pk_str(p, parts[i]);
        pk_op(p, n == 1 ? 0x85 : n == 2 ? 0x86 : n == 3 ? 0x87 : 't');
        pk_memoize(p);
    }
    pk_op(p, 'R');
    pk_memoize(p);
}

/* pickle.dumps of saev.data.datasets.ImgFolder(root) or ImgSegFolder(root, split) (split
 * NULL for the former): a frozen dataclass pickles as copyreg.__newobj__ (cls,) plus its
 * __dict__ through BUILD. Returns the malloc'd bytes. */
static unsigned char *pickle_saev_dataset(const char *root, const char *split, size_t *len) {
    Pk p = {0};
    for (int i = 0; i < 256; i++) p.char_memo[i] = -1;
    pk_global(&p, "saev.data.datasets", split ? "ImgSegFolder" : "ImgFolder");
    pk_op(&p, ')');
    pk_op(&p, 0x81); /* NEWOBJ */
    pk_memoize(&p);
    pk_op(&p, '}');
    pk_memoize(&p);
    if (split) pk_op(&p, '(');
    pk_str(&p, "root");
    pk_path(&p, root);
    if (split) {
        pk_str(&p, "split");
        pk_str(&p, split);
        pk_str(&p, "labels_csv");
        pk_str(&p, "labels.csv");
        pk_str(&p, "bg_label");
        unsigned char zero[2] = {'K', 0};
        pk_put(&p, zero, 2);
        pk_op(&p, 'u'); /* SETITEMS */
    } else {
        pk_op(&p, 's'); /* SETITEM */
    }
    pk_op(&p, 'b');
    pk_op(&p, '.');
    /* PROTO 4, then FRAME with the length of everything after it. */
    unsigned char *out = mallocCheck(p.n + 11);
    out[0] = 0x80;
    out[1] = 4;
    out[2] = 0x95;
    for (int i = 0; i < 8; i++) out[3 + i] = (unsigned char)((uint64_t)p.n >> (8 * i));
    memcpy(out + 11, p.b, p.n);
    *len = p.n + 11;
    free(p.b);
    return out;
}

/* ---- JSON as orjson writes it -------------------------------------------------------- */

/* A JSON string: '"' and '\\' escaped, control characters as \b \t \n \f \r or \u00xx,
 * everything else (UTF-8 included) as is. */
static void json_str(char **o, size_t *len, size_t *cap, const char *s) {
    for (size_t need = strlen(s) * 6 + 3; *len + need + 1 > *cap;) {
        *cap = 2 * *cap + need + 64;
        *o = reallocCheck(*o, *cap);
    }
    char *w = *o + *len;
    *w++ = '"';
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') { *w++ = '\\'; *w++ = (char)*c; }
        else if (*c == '\b') { *w++ = '\\'; *w++ = 'b'; }
        else if (*c == '\t') { *w++ = '\\'; *w++ = 't'; }
        else if (*c == '\n') { *w++ = '\\'; *w++ = 'n'; }
        else if (*c == '\f') { *w++ = '\\'; *w++ = 'f'; }
        else if (*c == '\r') { *w++ = '\\'; *w++ = 'r'; }
        else if (*c < 0x20) w += sprintf(w, "\\u%04x", *c);
        else *w++ = (char)*c;
    }
    *w++ = '"';
    *w = 0;
    *len = (size_t)(w - *o);
}

static void json_raw(char **o, size_t *len, size_t *cap, const char *fmt, ...) SAEV_PRINTF(4, 5);
static void json_raw(char **o, size_t *len, size_t *cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    while (*len + (size_t)n + 1 > *cap) {
        *cap = 2 * *cap + (size_t)n + 64;
        *o = reallocCheck(*o, *cap);
    }
    va_start(ap, fmt);
    vsnprintf(*o + *len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    *len += (size_t)n;
}

typedef struct {
    const char *family, *ckpt;
    const int *layers; // [n_layers]
    int n_layers;
    int64_t content_tokens, d_model, n_examples, max_tokens;
    int cls_token;
    const char *data, *dataset, *pixel_agg;
} SaevMetadata;

/* Metadata as orjson writes it: indented by 2 in field order (metadata.json), or compact
 * with sorted keys (what saev hashes for the directory name). */
static char *metadata_json(const SaevMetadata *m, int indent) {
    char *o = NULL;
    size_t len = 0, cap = 0;
    const char *nl = indent ? "\n  " : "", *sep = indent ? ": " : ":";
    char layers[4096] = "";
    for (int l = 0; l < m->n_layers; l++)
        snprintf(layers + strlen(layers), sizeof layers - strlen(layers), "%s%s%d", l ? "," : "", indent ? "\n    " : "", m->layers[l]);
    if (indent && m->n_layers) snprintf(layers + strlen(layers), sizeof layers - strlen(layers), "\n  ");
    /* keys in declaration order; the compact form lists the same keys sorted */
    const char *order_decl[13] = {"family", "ckpt", "layers", "content_tokens_per_example", "cls_token", "d_model", "n_examples",
                                  "max_tokens_per_shard", "data", "dataset", "pixel_agg", "dtype", "protocol"};
    const char *order_sorted[13] = {"ckpt", "cls_token", "content_tokens_per_example", "d_model", "data", "dataset", "dtype", "family",
                                    "layers", "max_tokens_per_shard", "n_examples", "pixel_agg", "protocol"};
    const char **order = indent ? order_decl : order_sorted;
    json_raw(&o, &len, &cap, "{");
    for (int k = 0; k < 13; k++) {
        const char *key = order[k];
        json_raw(&o, &len, &cap, "%s%s", k ? "," : "", nl);
        json_str(&o, &len, &cap, key);
        json_raw(&o, &len, &cap, "%s", sep);
        if (!strcmp(key, "family")) json_str(&o, &len, &cap, m->family);
        else if (!strcmp(key, "ckpt")) json_str(&o, &len, &cap, m->ckpt);
        else if (!strcmp(key, "layers")) json_raw(&o, &len, &cap, "[%s]", layers);
        else if (!strcmp(key, "content_tokens_per_example")) json_raw(&o, &len, &cap, "%lld", (long long)m->content_tokens);
        else if (!strcmp(key, "cls_token")) json_raw(&o, &len, &cap, "%s", m->cls_token ? "true" : "false");
        else if (!strcmp(key, "d_model")) json_raw(&o, &len, &cap, "%lld", (long long)m->d_model);
        else if (!strcmp(key, "n_examples")) json_raw(&o, &len, &cap, "%lld", (long long)m->n_examples);
        else if (!strcmp(key, "max_tokens_per_shard")) json_raw(&o, &len, &cap, "%lld", (long long)m->max_tokens);
        else if (!strcmp(key, "data")) json_str(&o, &len, &cap, m->data);
        else if (!strcmp(key, "dataset")) json_str(&o, &len, &cap, m->dataset);
        else if (!strcmp(key, "pixel_agg")) json_str(&o, &len, &cap, m->pixel_agg);
        else if (!strcmp(key, "dtype")) json_str(&o, &len, &cap, "float32");
        else json_str(&o, &len, &cap, "2.1");
    }
    json_raw(&o, &len, &cap, "%s}", indent ? "\n" : "");
    return o;
}

/* The store's `dataset` text ("kind=K root=R[ split=S] n=N" or "kind=list path=P n=N",
 * as stage_activations writes it) split into kind, root (or list path) and split. */
static int parse_store_dataset(const char *text, char *kind, char *root, char *split, size_t len) {
    const char *k = strstr(text, "kind="), *r = strstr(text, " root="), *pth = strstr(text, " path="), *n = strrchr(text, ' ');
    if (!k || !n || strncmp(n, " n=", 3)) return -1;
    const char *v = r ? r + 6 : pth ? pth + 6 : NULL;
    if (!v) return -1;
    snprintf(kind, len, "%.*s", (int)strcspn(k + 5, " "), k + 5);
    const char *sp = strstr(v, " split=");
    const char *end = sp && sp < n ? sp : n;
    snprintf(root, len, "%.*s", (int)(end - v), v);
    split[0] = 0;
    if (sp && sp < n) snprintf(split, len, "%.*s", (int)(n - sp - 7), sp + 7);
    return 0;
}

static const char *saev_families[] = {"bird-mae", "clip", "dinov2", "dinov3", "fake-clip", "pe-core", "pe-spatial", "siglip"};

/* The value of `key: ` on a line of the store's config YAML (import-saev keeps saev's
 * own `data` and `pixel_agg` there); malloc'd, or NULL. */
static char *config_value(const char *yaml, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\n  %s: ", key);
    const char *v = yaml ? strstr(yaml, pat) : NULL;
    if (!v) return NULL;
    v += strlen(pat);
    size_t n = strcspn(v, "\n");
    char *out = mallocCheck(n + 1);
    memcpy(out, v, n);
    out[n] = 0;
    return out;
}

/* Arguments: STORE, SHARDS_ROOT and the shard size; returns 1 when --help was answered. */
static int parse_args(int argc, char **argv, const char **store_path, const char **root, long long *max_tokens) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: saev export-saev STORE SHARDS_ROOT [--max-tokens-per-shard N]\n\n"
                   "Writes the activation store STORE as saev's protocol-2.1 shards (metadata.json, shards.json,\n"
                   "acts%%06d.bin, labels.bin) in SHARDS_ROOT/<hash>, the directory saev's writer names after\n"
                   "the metadata. SHARDS_ROOT must end in saev/shards (saev checks it; e.g. $SAEV_SCRATCH/saev/shards).\n"
                   "N (default %d, saev's default) sets the shard size in tokens.\n",
                   SAEV_DEFAULT_MAX_TOKENS_PER_SHARD);
            return 1;
        }
        if (!strcmp(argv[i], "--max-tokens-per-shard") && i + 1 < argc) {
            i++;
            *max_tokens = flag_int_or_die("export-saev", argv[i - 1], argv[i], 1, INT64_MAX);
        } else if (argv[i][0] == '-') saev_usage_fail("export-saev: unknown option %s", argv[i]);
        else if (!*store_path) *store_path = argv[i];
        else if (!*root) *root = argv[i];
        else saev_usage_fail("export-saev: too many arguments (usage: saev export-saev STORE SHARDS_ROOT)");
    }
    if (!*store_path || !*root) saev_usage_fail("usage: saev export-saev STORE SHARDS_ROOT [--max-tokens-per-shard N]");
    return 0;
}

/* Length of root without trailing slashes; it must end in saev/shards, as saev checks. */
static size_t shards_root_len_or_die(const char *root) {
    size_t rl = strlen(root);
    while (rl > 1 && root[rl - 1] == '/') rl--;
    if (rl < 11 || strncmp(root + rl - 11, "saev/shards", 11) || (rl > 11 && root[rl - 12] != '/'))
        saev_usage_fail("export-saev: %s: saev reads shards only from a folder named .../saev/shards/<hash>; give a SHARDS_ROOT ending in saev/shards", root);
    return rl;
}

/* The complete store, or a message naming it; examples per shard; warnings for what saev
 * will not take as it is (an unknown family, skipped images). */
static Store *open_store_or_die(const char *store_path, long long max_tokens, int64_t *eps) {
    char err[1024];
    Store *s = store_open_read(store_path, err, sizeof err);
    if (!s) saev_usage_fail("export-saev: %s", err);
    if (!s->complete) saev_usage_fail("export-saev: store %s is incomplete; finish it (rerun `saev activations`) first", store_path);
    const StoreMeta *m = &s->meta;
    int64_t L = m->n_layers, T = m->n_tokens;
    *eps = max_tokens / (T * L);
    if (*eps < 1)
        saev_usage_fail("export-saev: one example needs %lld tokens (%lld tokens x %lld layers); raise --max-tokens-per-shard",
                        (long long)(T * L), (long long)T, (long long)L);
    int known = 0;
    for (size_t i = 0; i < sizeof saev_families / sizeof *saev_families; i++) known |= !strcmp(m->model_family, saev_families[i]);
    if (!known) log_warn("model family \"%s\" is not one saev knows; its Metadata will reject it", m->model_family);
    int64_t skipped = 0;
    for (int64_t i = 0; i < m->n_images; i++) skipped += s->status[i] == STORE_SKIPPED;
    if (skipped) log_warn("%lld skipped images are exported as zero activations (saev has no notion of skipped images)", (long long)skipped);
    return s;
}

/* saev's `data` (*data, malloc'd), `dataset` and `pixel_agg` (*pixel_agg, malloc'd): passed
 * through from a store imported from saev, else made from the store's data set as saev's
 * activation writer would. */
static void saev_data_fields(const StoreMeta *m, char **data, char *dataset, size_t dataset_len, char **pixel_agg) {
    *data = config_value(m->config_yaml, "saev_data");
    *pixel_agg = config_value(m->config_yaml, "saev_pixel_agg");
    if (*data) {
        snprintf(dataset, dataset_len, "%s", m->dataset);
    } else {
        char kind[4096], droot[4096], split[4096], parts[64][256];
        if (parse_store_dataset(m->dataset, kind, droot, split, sizeof kind)) {
            log_warn("the store's data set \"%s\" is not one `saev activations` describes; `data` records ImgFolder(root=\"%s\")", m->dataset, m->dataset);
            snprintf(kind, sizeof kind, "folder");
            snprintf(droot, sizeof droot, "%s", m->dataset);
        }
        if (!strcmp(kind, "list")) {
            char *slash = strrchr(droot, '/');
            if (slash) *slash = 0; else snprintf(droot, sizeof droot, ".");
            log_warn("a list data set has no saev equivalent; `data` records ImgFolder(root=%s), the list's folder", droot);
        }
        size_t plen;
        unsigned char *pk = pickle_saev_dataset(droot, !strcmp(kind, "ade20k") ? split : NULL, &plen);
        *data = base64(pk, plen);
        free(pk);
        posix_parts(droot, parts, 64, dataset, dataset_len);
    }
    if (!*pixel_agg) /* the store's patch labels follow data.patch_label of its config */
        *pixel_agg = strdupCheck(m->config_yaml && strstr(m->config_yaml, "patch_label: prefer-fg") ? "prefer-fg" : "majority");
}

/* acts%06d.bin in dir, eps examples each (the last padded to full size, as saev memmaps
 * every file as [examples_per_shard, ...]); returns shards.json's text (malloc'd, *len). */
static char *write_shards(Store *s, const char *dir, int64_t eps, size_t *len) {
    const StoreMeta *m = &s->meta;
    int64_t N = m->n_images, n_shards = (N + eps - 1) / eps, row = (int64_t)m->n_layers * m->n_tokens * m->d_model;
    int64_t block = (64 << 20) / (row * 4) > 0 ? (64 << 20) / (row * 4) : 1; /* images per read: ~64 MiB */
    float *buf = mallocCheck(sizeof(float) * (size_t)(block * row));
    char *shards = NULL;
    size_t slen = 0, scap = 0;
    json_raw(&shards, &slen, &scap, "[");
    for (int64_t sh = 0; sh < n_shards; sh++) {
        char path[4400], name[32];
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
        if (fflush(f) || ftruncate(fileno(f), (off_t)(eps * row * 4))) saev_fail("cannot write %s: %s", out.tmp, strerror(errno));
        atomic_file_commit_or_die(&out);
        json_raw(&shards, &slen, &scap, "%s\n  {\n    \"name\": \"%s\",\n    \"n_examples\": %lld\n  }", sh ? "," : "", name, (long long)n_sh);
        log_info("export-saev: %s (%lld examples)", name, (long long)n_sh);
    }
    json_raw(&shards, &slen, &scap, "%s]", n_shards ? "\n" : "");
    free(buf);
    *len = slen;
    return shards;
}

int cmd_export_saev(int argc, char **argv) {
    const char *store_path = NULL, *root = NULL;
    long long max_tokens = SAEV_DEFAULT_MAX_TOKENS_PER_SHARD;
    if (parse_args(argc, argv, &store_path, &root, &max_tokens)) return 0;
    size_t rl = shards_root_len_or_die(root);
    int64_t eps;
    Store *s = open_store_or_die(store_path, max_tokens, &eps);
    const StoreMeta *m = &s->meta;
    int64_t N = m->n_images;
    char *data, *pixel_agg, dataset[4096];
    saev_data_fields(m, &data, dataset, sizeof dataset, &pixel_agg);
    SaevMetadata md = {m->model_family, m->model, m->layers, m->n_layers, m->n_patches, m->d_model, N, max_tokens, m->has_cls,
                       data, dataset, pixel_agg};
    char *compact = metadata_json(&md, 0), hex[65], dir[4200];
    sha256_hex(compact, strlen(compact), hex);
    free(compact);
    snprintf(dir, sizeof dir, "%.*s/%.8s", (int)rl, root, hex);
    make_dirs_or_die(dir);

    size_t slen;
    char *shards = write_shards(s, dir, eps, &slen);
    char path[4400];
    if (m->has_patch_labels && m->n_patches > 0) {
        snprintf(path, sizeof path, "%s/labels.bin", dir);
        uint8_t *lab = mallocCheck((size_t)(N * m->n_patches));
        store_read_patch_labels(s, 0, N, lab);
        write_file_atomic_or_die(path, lab, (size_t)(N * m->n_patches));
        free(lab);
    }
    snprintf(path, sizeof path, "%s/shards.json", dir);
    write_file_atomic_or_die(path, shards, slen);
    free(shards);
    char *text = metadata_json(&md, 1);
    snprintf(path, sizeof path, "%s/metadata.json", dir);
    write_file_atomic_or_die(path, text, strlen(text));
    free(text);
    int64_t n_shards = (N + eps - 1) / eps;
    printf("exported %lld images (%lld layers x %lld tokens x %lld) into %lld saev shard%s in %s\n", (long long)N, (long long)m->n_layers,
           (long long)m->n_tokens, (long long)m->d_model, (long long)n_shards, n_shards == 1 ? "" : "s", dir);
    free(data);
    free(pixel_agg);
    store_close(s);
    return 0;
}
