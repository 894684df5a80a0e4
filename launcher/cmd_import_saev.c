/*
 * cmd_import_saev.c: `saev import-saev DIR STORE [--dtype T] [--images-per-file N]` turns
 * saev's shards into an activation store, written by this one process (sec2 driver).
 * Two layouts are read: saev's current protocol 2.1 (metadata.json, shards.json,
 * acts%06d.bin, optional labels.bin; described in cmd_export_saev.c) and the preprint's
 * (saev@97b00d9 saev/activations.py: metadata.json with model_family, model_ckpt,
 * n_patches_per_img, d_vit, n_imgs, n_patches_per_shard, data = str(cfg.data); full-size
 * acts%06d.bin files and no shards.json). Every field and file size is checked before
 * anything is written; a mismatch names the file and the field. Class labels are not
 * part of saev's shards: the store's labels are -1; checkpoint digest and preprocessing
 * are unknown and say so. saev's `data` and `pixel_agg` are kept in the store's config
 * (import_saev.saev_data, .saev_pixel_agg) so that export-saev writes them back.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "config_args.h"
#include "commands.h"
#include "fsutil.h"
#include "log.h"
#include "store/store.h"

static const cJSON *need(const cJSON *obj, const char *key, const char *path, int type_ok) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || !type_ok) saev_usage_fail("import-saev: %s: field \"%s\" is missing or has the wrong type", path, key);
    return v;
}

static int64_t need_int(const cJSON *obj, const char *key, const char *path, int64_t min) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < (double)min)
        saev_usage_fail("import-saev: %s: field \"%s\" must be an integer >= %lld", path, key, (long long)min);
    return (int64_t)v->valuedouble; /* cJSON: 64-bit values live in valuedouble */
}

static const char *need_str(const cJSON *obj, const char *key, const char *path) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(v)) saev_usage_fail("import-saev: %s: field \"%s\" must be a string", path, key);
    return v->valuestring;
}

/* One import: the source's paths and parsed files, and the store's metadata. */
typedef struct {
    const char *dir, *store_dir;          // saev's shard directory, the new store
    char md_path[4096], sh_path[4096], lab_path[4096];
    char *md_text, *sh_text;              // metadata.json, shards.json (NULL for the preprint's layout)
    cJSON *md, *shards;                   // parsed; shards synthesized for the preprint's layout
    int preprint;                         // the preprint's layout (no protocol, no shards.json)
    StoreMeta m;                          // the store's metadata (m.layers and m.config_yaml malloc'd)
    int64_t max_tokens;                   // tokens per shard file
    int64_t eps;                          // examples per full shard
    int64_t row;                          // floats per example: layers · tokens · d
} Import;

/* Arguments into im (dir, store_dir) and the dtype and images per file into im->m;
 * returns 1 when --help was answered. */
static int parse_args(int argc, char **argv, Import *im) {
    const char *dtype_name = "float32";
    long long ipf = 16384;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: saev import-saev DIR STORE [--dtype float32|float16|bfloat16] [--images-per-file N]\n\n"
                   "Reads saev protocol-2.1 shards from DIR into a new activation store STORE.\n");
            return 1;
        }
        if (!strcmp(argv[i], "--dtype") && i + 1 < argc) dtype_name = argv[++i];
        else if (!strcmp(argv[i], "--images-per-file") && i + 1 < argc) {
            i++;
            ipf = flag_int_or_die("import-saev", argv[i - 1], argv[i], 0, INT64_MAX);
        } else if (argv[i][0] == '-') saev_usage_fail("import-saev: unknown option %s", argv[i]);
        else if (!im->dir) im->dir = argv[i];
        else if (!im->store_dir) im->store_dir = argv[i];
        else saev_usage_fail("import-saev: too many arguments (usage: saev import-saev DIR STORE)");
    }
    if (!im->dir || !im->store_dir) saev_usage_fail("usage: saev import-saev DIR STORE [--dtype T] [--images-per-file N]");
    if (store_dtype_parse(dtype_name, &im->m.dtype))
        saev_usage_fail("import-saev: --dtype must be float32, float16 or bfloat16 (got %s)", dtype_name);
    im->m.images_per_file = ipf;
    return 0;
}

/* metadata.json into the store's metadata. Two layouts: the current protocol 2.1
 * (shards.py Metadata, with shards.json) and the preprint's (saev@97b00d9
 * saev/activations.py Metadata: model_family, model_ckpt, layers, n_patches_per_img,
 * cls_token, d_vit, seed, n_imgs, n_patches_per_shard, data = str(cfg.data); no
 * shards.json, every shard file full size). */
static void read_metadata(Import *im) {
    const char *md_path = im->md_path;
    StoreMeta *m = &im->m;
    char err[4200];
    im->md_text = read_file(md_path, NULL, err, sizeof err);
    if (!im->md_text) saev_usage_fail("import-saev: %s", err);
    cJSON *md = im->md = cJSON_Parse(im->md_text);
    if (!cJSON_IsObject(md)) saev_usage_fail("import-saev: %s is not a JSON object", md_path);
    int preprint = im->preprint = !cJSON_GetObjectItemCaseSensitive(md, "protocol") && cJSON_GetObjectItemCaseSensitive(md, "n_patches_per_shard");
    if (!preprint) {
        const char *protocol = need_str(md, "protocol", md_path), *dtype = need_str(md, "dtype", md_path);
        if (strcmp(protocol, "2.1")) saev_usage_fail("import-saev: %s: protocol \"%s\" is not supported (only \"2.1\" and the preprint's layout)", md_path, protocol);
        if (strcmp(dtype, "float32")) saev_usage_fail("import-saev: %s: dtype \"%s\" is not supported (only \"float32\")", md_path, dtype);
    }
    const cJSON *layers = need(md, "layers", md_path, cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(md, "layers")));
    m->n_layers = cJSON_GetArraySize(layers);
    if (m->n_layers < 1) saev_usage_fail("import-saev: %s: layers is empty", md_path);
    m->layers = mallocCheck(sizeof(int) * (size_t)m->n_layers);
    for (int l = 0; l < m->n_layers; l++) {
        const cJSON *v = cJSON_GetArrayItem(layers, l);
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble != floor(v->valuedouble))
            saev_usage_fail("import-saev: %s: layers[%d] must be a block index >= 0", md_path, l);
        m->layers[l] = (int)v->valuedouble;
    }
    m->model_family = (char *)need_str(md, preprint ? "model_family" : "family", md_path);
    m->model = (char *)need_str(md, preprint ? "model_ckpt" : "ckpt", md_path);
    m->n_patches = (int)need_int(md, preprint ? "n_patches_per_img" : "content_tokens_per_example", md_path, 0);
    const cJSON *cls = need(md, "cls_token", md_path, cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(md, "cls_token")));
    m->has_cls = cJSON_IsTrue(cls);
    m->n_tokens = m->has_cls + m->n_patches;
    m->d_model = (int)need_int(md, preprint ? "d_vit" : "d_model", md_path, 1);
    m->n_images = need_int(md, preprint ? "n_imgs" : "n_examples", md_path, 1);
    im->max_tokens = need_int(md, preprint ? "n_patches_per_shard" : "max_tokens_per_shard", md_path, 1);
    const char *saev_data = need_str(md, "data", md_path);
    m->dataset = (char *)(preprint ? saev_data : need_str(md, "dataset", md_path));
    m->checkpoint_digest = "unknown (imported from saev shards)";
    m->preprocessing = "unknown (imported from saev shards)";
    m->saev_version = SAEV_VERSION;
    /* saev's own `data` (base64 pickle) and pixel_agg ride along, so export-saev gives
     * them back unchanged. */
    const char *pixel_agg = preprint ? NULL : cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(md, "pixel_agg"));
    size_t cfg_len = strlen(im->dir) + strlen(saev_data) + 256;
    char *cfg = mallocCheck(cfg_len);
    snprintf(cfg, cfg_len, "import_saev:\n  source: %s\n  layout: %s\n  max_tokens_per_shard: %lld\n%s%s%s%s%s%s", im->dir,
             preprint ? "preprint" : "protocol-2.1", (long long)im->max_tokens, preprint ? "" : "  saev_data: ", preprint ? "" : saev_data,
             preprint ? "" : "\n", pixel_agg ? "  saev_pixel_agg: " : "", pixel_agg ? pixel_agg : "", pixel_agg ? "\n" : "");
    m->config_yaml = cfg;
    struct stat sb;
    m->has_patch_labels = stat(im->lab_path, &sb) == 0 && m->n_patches > 0;
    im->row = (int64_t)m->n_layers * m->n_tokens * m->d_model;
    im->eps = im->max_tokens / ((int64_t)m->n_tokens * m->n_layers);
    if (im->eps < 1) saev_usage_fail("import-saev: %s: max_tokens_per_shard %lld holds no example", md_path, (long long)im->max_tokens);
}

/* The shard list: shards.json, or for the preprint (which wrote none) every shard but
 * the last holding eps examples. */
static void read_shard_list(Import *im) {
    int64_t N = im->m.n_images, eps = im->eps;
    if (im->preprint) {
        im->shards = cJSON_CreateArray();
        for (int64_t first = 0, sh = 0; first < N; first += eps, sh++) {
            char name[32];
            snprintf(name, sizeof name, "acts%06lld.bin", (long long)sh);
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "name", name);
            cJSON_AddNumberToObject(e, "n_examples", (double)(N - first < eps ? N - first : eps));
            cJSON_AddItemToArray(im->shards, e);
        }
        return;
    }
    char err[4200];
    im->sh_text = read_file(im->sh_path, NULL, err, sizeof err);
    if (!im->sh_text) saev_usage_fail("import-saev: %s", err);
    im->shards = cJSON_Parse(im->sh_text);
    if (!cJSON_IsArray(im->shards)) saev_usage_fail("import-saev: %s is not a JSON array", im->sh_path);
}

/* Every shard's name, example count and file size, and labels.bin's size, before
 * anything is written. */
static void check_shards(const Import *im) {
    const StoreMeta *m = &im->m;
    const char *sh_path = im->sh_path;
    int64_t N = m->n_images, eps = im->eps;
    int n_shards = cJSON_GetArraySize(im->shards);
    if ((int64_t)n_shards < (N + eps - 1) / eps)
        saev_usage_fail("import-saev: %s lists %d shards; %lld examples at %lld per shard need %lld", sh_path, n_shards, (long long)N,
                        (long long)eps, (long long)((N + eps - 1) / eps));
    struct stat sb;
    int64_t total = 0;
    for (int sh = 0; sh < n_shards; sh++) {
        const cJSON *e = cJSON_GetArrayItem(im->shards, sh);
        const char *name = need_str(e, "name", sh_path);
        int64_t n_sh = need_int(e, "n_examples", sh_path, 0);
        char want[32], path[4400];
        snprintf(want, sizeof want, "acts%06d.bin", sh);
        if (strcmp(name, want)) saev_usage_fail("import-saev: %s: shard %d is named \"%s\", expected \"%s\"", sh_path, sh, name, want);
        if (n_sh > eps || (n_sh < eps && total + n_sh < N))
            saev_usage_fail("import-saev: %s: shard %s has %lld examples; every shard but the last holds %lld", sh_path, name,
                            (long long)n_sh, (long long)eps);
        snprintf(path, sizeof path, "%s/%s", im->dir, name);
        if (stat(path, &sb)) saev_usage_fail("import-saev: %s: %s", path, strerror(errno));
        if ((int64_t)sb.st_size < n_sh * im->row * 4)
            saev_usage_fail("import-saev: %s is %lld bytes, too small for %lld examples of [%lld, %lld, %lld] float32", path,
                            (long long)sb.st_size, (long long)n_sh, (long long)m->n_layers, (long long)m->n_tokens, (long long)m->d_model);
        total += n_sh;
    }
    if (total != N) saev_usage_fail("import-saev: %s counts %lld examples, metadata.json says %lld", sh_path, (long long)total, (long long)N);
    if (m->has_patch_labels) {
        if (stat(im->lab_path, &sb)) saev_usage_fail("import-saev: %s: %s", im->lab_path, strerror(errno));
        if ((int64_t)sb.st_size != N * m->n_patches)
            saev_usage_fail("import-saev: %s is %lld bytes; expected %lld x %d uint8", im->lab_path, (long long)sb.st_size, (long long)N,
                            m->n_patches);
    }
}

/* The shards (and patch labels) into the new store, about 64 MiB at a time; returns
 * store_finish's verdict. */
static int copy_shards(const Import *im) {
    const StoreMeta *m = &im->m;
    int64_t row = im->row;
    Store *s = store_open_write(im->store_dir, m, 0, NULL);
    int64_t block = (64 << 20) / (row * 4) > 0 ? (64 << 20) / (row * 4) : 1;
    float *buf = mallocCheck(sizeof(float) * (size_t)(block * row));
    int64_t *idx = mallocCheck(sizeof(int64_t) * (size_t)block);
    uint8_t *plab = m->has_patch_labels ? mallocCheck((size_t)(block * m->n_patches)) : NULL;
    FILE *lf = NULL;
    if (plab) {
        lf = fopen(im->lab_path, "rb");
        libcCheckPtr(lf, im->lab_path);
    }
    int64_t first = 0;
    int n_shards = cJSON_GetArraySize(im->shards);
    for (int sh = 0; sh < n_shards; sh++) {
        const cJSON *e = cJSON_GetArrayItem(im->shards, sh);
        int64_t n_sh = (int64_t)cJSON_GetObjectItemCaseSensitive(e, "n_examples")->valuedouble;
        char path[4400];
        snprintf(path, sizeof path, "%s/acts%06d.bin", im->dir, sh);
        FILE *f = fopen(path, "rb");
        libcCheckPtr(f, path);
        for (int64_t i = 0; i < n_sh; i += block) {
            int64_t n = n_sh - i < block ? n_sh - i : block;
            if (fread(buf, sizeof(float) * (size_t)row, (size_t)n, f) != (size_t)n) saev_fail("import-saev: short read from %s", path);
            for (int64_t j = 0; j < n; j++) idx[j] = first + i + j;
            if (plab && fread(plab, (size_t)m->n_patches, (size_t)n, lf) != (size_t)n) saev_fail("import-saev: short read from %s", im->lab_path);
            store_write(s, n, idx, buf, NULL, NULL, plab, NULL);
        }
        fclose(f);
        first += n_sh;
    }
    if (lf) fclose(lf);
    int complete = store_finish(s);
    free(buf);
    free(idx);
    free(plab);
    return complete;
}

int cmd_import_saev(int argc, char **argv) {
    Import im;
    memset(&im, 0, sizeof im);
    if (parse_args(argc, argv, &im)) return 0;
    snprintf(im.md_path, sizeof im.md_path, "%s/metadata.json", im.dir);
    snprintf(im.sh_path, sizeof im.sh_path, "%s/shards.json", im.dir);
    snprintf(im.lab_path, sizeof im.lab_path, "%s/labels.bin", im.dir);
    read_metadata(&im);
    read_shard_list(&im);
    check_shards(&im);
    int complete = copy_shards(&im);
    printf("imported %lld examples from %s into %s (%s)\n", (long long)im.m.n_images, im.dir, im.store_dir, store_dtype_name(im.m.dtype));
    free(im.m.layers);
    free(im.m.config_yaml);
    cJSON_Delete(im.md);
    cJSON_Delete(im.shards);
    free(im.md_text);
    free(im.sh_text);
    return complete ? 0 : 1;
}
