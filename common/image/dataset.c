/*
 * dataset.c: listing image folders, list files and ADE20K-style segmentation sets, and
 * per-patch labels from segmentation masks (see dataset.h).
 */
#include "dataset.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "check.h"
#include "log.h"

int data_resolve(const DataConfig *c, DataSpec *s, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    const char *kind = c->kind ? c->kind : "folder";
    if (!strcmp(kind, "folder")) s->kind = DATA_FOLDER;
    else if (!strcmp(kind, "list")) s->kind = DATA_LIST;
    else if (!strcmp(kind, "ade20k")) s->kind = DATA_ADE20K;
    else { saev_errf(err, errlen, "kind: \"%s\" is not folder, list or ade20k", kind); return -1; }
    s->root = c->root;
    s->path = c->path;
    s->split = c->split ? c->split : "training";
    if (s->kind == DATA_LIST && !s->path) { saev_errf(err, errlen, "kind list needs data.path (the list file)"); return -1; }
    if (s->kind != DATA_LIST && !s->root) { saev_errf(err, errlen, "kind %s needs data.root (the top folder)", kind); return -1; }
    const char *bad = c->on_bad_image ? c->on_bad_image : "skip";
    if (!strcmp(bad, "skip")) s->on_bad = BAD_SKIP;
    else if (!strcmp(bad, "fail")) s->on_bad = BAD_FAIL;
    else { saev_errf(err, errlen, "on_bad_image: \"%s\" is not skip or fail", bad); return -1; }
    s->max_pixels = c->max_pixels;
    const char *pl = c->patch_label ? c->patch_label : "majority";
    if (!strcmp(pl, "majority")) s->patch_label = PATCH_MAJORITY;
    else if (!strcmp(pl, "prefer-fg")) s->patch_label = PATCH_PREFER_FG;
    else { saev_errf(err, errlen, "patch_label: \"%s\" is not majority or prefer-fg", pl); return -1; }
    return 0;
}

/* ---- listing helpers ------------------------------------------------------------------- */

typedef struct {
    char **v; /* [n] malloc'd names */
    int n, cap;
} Names;

static void names_push(Names *s, const char *x) {
    if (s->n == s->cap) { s->cap = s->cap ? 2 * s->cap : 64; s->v = reallocCheck(s->v, sizeof(char *) * s->cap); }
    s->v[s->n++] = strdupCheck(x);
}

static void names_free(Names *s) {
    for (int i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int has_image_ext(const char *name) {
    static const char *exts[] = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif"};
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
        if (!strcasecmp(dot, exts[i])) return 1;
    return 0;
}

/* Entries of dir (sorted): want_dirs = 1 for subfolders, 0 for image files. Every entry
 * named like an image is listed, whatever it is (a folder, a broken link, a symlink loop):
 * it then fails to decode and counts as a bad image with its reason, under the
 * data.on_bad_image policy, instead of vanishing from the data set unseen. Subfolders are
 * only followed one level (classes), so a link loop cannot make the walk endless; a class
 * entry that cannot be looked at is reported and left out. */
static int list_dir(const char *dir, int want_dirs, Names *out, char *err, size_t errlen) {
    DIR *d = opendir(dir);
    if (!d) { saev_errf(err, errlen, "%s: cannot open folder: %s", dir, strerror(errno)); return -1; }
    struct dirent *e;
    char full[4096];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
        if (!want_dirs) {
            if (has_image_ext(e->d_name)) names_push(out, e->d_name);
            continue;
        }
        struct stat st;
        if (stat(full, &st) != 0) {
            log_warn("data: skipping %s: %s", full, strerror(errno));
            continue;
        }
        if (S_ISDIR(st.st_mode)) names_push(out, e->d_name);
    }
    closedir(d);
    qsort(out->v, out->n, sizeof(char *), cmp_str);
    return 0;
}

static char *join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = mallocCheck(n);
    snprintf(s, n, "%s/%s", a, b);
    return s;
}

typedef struct {
    char **paths; int32_t *labels; char **masks;
    int64_t n, cap;
} Items;

static void items_push(Items *it, char *path, int32_t label, char *mask) {
    if (it->n == it->cap) {
        it->cap = it->cap ? 2 * it->cap : 256;
        it->paths = reallocCheck(it->paths, sizeof(char *) * it->cap);
        it->labels = reallocCheck(it->labels, sizeof(int32_t) * it->cap);
        it->masks = reallocCheck(it->masks, sizeof(char *) * it->cap);
    }
    it->paths[it->n] = path; it->labels[it->n] = label; it->masks[it->n] = mask;
    it->n++;
}

static int open_folder(const DataSpec *s, Dataset *ds, Items *it, char *err, size_t errlen) {
    Names classes = {0};
    if (list_dir(s->root, 1, &classes, err, errlen)) return -1;
    if (classes.n == 0) { saev_errf(err, errlen, "%s: no class subfolders (expected root/<class>/<image>)", s->root); names_free(&classes); return -1; }
    for (int c = 0; c < classes.n; c++) {
        char *dir = join(s->root, classes.v[c]);
        Names files = {0};
        int rc = list_dir(dir, 0, &files, err, errlen);
        for (int i = 0; !rc && i < files.n; i++) items_push(it, join(dir, files.v[i]), c, NULL);
        names_free(&files);
        free(dir);
        if (rc) { names_free(&classes); return -1; }
    }
    ds->n_classes = classes.n;
    ds->class_names = classes.v; /* ownership moves */
    return 0;
}

static int open_list(const DataSpec *s, Dataset *ds, Items *it, char *err, size_t errlen) {
    FILE *f = fopen(s->path, "r");
    if (!f) { saev_errf(err, errlen, "%s: cannot open list file: %s", s->path, strerror(errno)); return -1; }
    char *base = strdupCheck(s->path);
    char *slash = strrchr(base, '/');
    if (slash) *slash = 0; else strcpy(base, ".");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, max_label = -1, rc = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && isspace((unsigned char)line[len - 1])) line[--len] = 0;
        char *p = line;
        while (isspace((unsigned char)*p)) p++;
        if (!*p || *p == '#') continue;
        int32_t label = -1;
        char *sp = p + strlen(p);
        while (sp > p && !isspace((unsigned char)sp[-1])) sp--;
        if (sp > p) { /* a trailing token: a label if it is an integer */
            char *end;
            errno = 0;
            long v = strtol(sp, &end, 10);
            if (*end == 0 && end != sp) {
                if (v < 0 || v > INT32_MAX || errno) {
                    saev_errf(err, errlen, "%s:%d: label %s must be an integer >= 0", s->path, lineno, sp);
                    rc = -1;
                    break;
                }
                label = (int32_t)v;
                char *q = sp;
                while (q > p && isspace((unsigned char)q[-1])) q--;
                *q = 0;
            }
        }
        if (label > max_label) max_label = label;
        items_push(it, p[0] == '/' ? strdupCheck(p) : join(base, p), label, NULL);
    }
    free(line);
    free(base);
    fclose(f);
    ds->n_classes = max_label + 1;
    return rc;
}

static int open_ade20k(const DataSpec *s, Items *it, char *err, size_t errlen) {
    char *imgdir = mallocCheck(strlen(s->root) + strlen(s->split) + 32), *anndir = mallocCheck(strlen(s->root) + strlen(s->split) + 32);
    sprintf(imgdir, "%s/images/%s", s->root, s->split);
    sprintf(anndir, "%s/annotations/%s", s->root, s->split);
    Names files = {0};
    int rc = list_dir(imgdir, 0, &files, err, errlen);
    for (int i = 0; !rc && i < files.n; i++) {
        char *stem = strdupCheck(files.v[i]);
        char *dot = strrchr(stem, '.');
        if (dot) *dot = 0;
        size_t n = strlen(anndir) + strlen(stem) + 8;
        char *mask = mallocCheck(n);
        snprintf(mask, n, "%s/%s.png", anndir, stem);
        free(stem);
        struct stat st;
        if (stat(mask, &st) != 0) {
            saev_errf(err, errlen, "%s: no annotation for %s/%s (expected annotations/<split>/<stem>.png)", mask, imgdir, files.v[i]);
            free(mask);
            rc = -1;
            break;
        }
        items_push(it, join(imgdir, files.v[i]), -1, mask);
    }
    names_free(&files);
    free(imgdir);
    free(anndir);
    return rc;
}

int dataset_open(const DataSpec *s, Dataset *ds, char *err, size_t errlen) {
    memset(ds, 0, sizeof *ds);
    ds->kind = s->kind;
    Items it = {0};
    int rc = s->kind == DATA_FOLDER ? open_folder(s, ds, &it, err, errlen)
           : s->kind == DATA_LIST   ? open_list(s, ds, &it, err, errlen)
                                    : open_ade20k(s, &it, err, errlen);
    ds->n = it.n;
    ds->paths = it.paths;
    ds->labels = it.labels;
    if (s->kind == DATA_ADE20K) ds->mask_paths = it.masks;
    else free(it.masks);
    if (rc == 0 && ds->n == 0) {
        saev_errf(err, errlen, "%s: the data set is empty (no images found)", s->kind == DATA_LIST ? s->path : s->root);
        rc = -1;
    }
    if (rc) dataset_free(ds);
    return rc;
}

void dataset_free(Dataset *ds) {
    for (int64_t i = 0; i < ds->n; i++) {
        free(ds->paths[i]);
        if (ds->mask_paths) free(ds->mask_paths[i]);
    }
    free(ds->paths);
    free(ds->labels);
    free(ds->mask_paths);
    for (int c = 0; c < ds->n_classes && ds->class_names; c++) free(ds->class_names[c]);
    free(ds->class_names);
    memset(ds, 0, sizeof *ds);
}

void patch_labels_from_mask(const uint8_t *mask, int w, int h, int patch, PatchLabelMode mode, uint8_t *out) {
    int gw = w / patch, gh = h / patch;
    int count[256];
    for (int py = 0; py < gh; py++)
        for (int px = 0; px < gw; px++) {
            memset(count, 0, sizeof count);
            for (int y = 0; y < patch; y++) {
                const uint8_t *r = mask + (size_t)(py * patch + y) * w + px * patch;
                for (int x = 0; x < patch; x++) count[r[x]]++;
            }
            int best = mode == PATCH_PREFER_FG ? 1 : 0;
            for (int c = best + 1; c < 256; c++)
                if (count[c] > count[best]) best = c;
            if (mode == PATCH_PREFER_FG && count[best] == 0) best = 0;
            out[py * gw + px] = (uint8_t)best;
        }
}
