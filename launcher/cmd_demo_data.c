/*
 * cmd_demo_data.c: `saev demo-data DIR [--seed N] [--per-class N] [--seg-images N]`:
 * the demo data sets, built only from Debian's archive, deterministic for a seed.
 *
 *   DIR/fashion/NN_<class>/NNNNN.{png,jpg}   image folder: Fashion-MNIST
 *       (dataset-fashion-mnist), 10 classes x per-class images (default 30), each
 *       28x28 photo upscaled (Pillow bicubic) to a random 64..96 px square, even
 *       indices PNG, odd JPEG (quality 92), grey replicated to RGB.
 *   DIR/segmentation/{images,annotations}/{training,validation}/NNNNN.{jpg,png}
 *       ADE20K layout (default 40 images, 80 % training): a crop of a real photo
 *       (mate-backgrounds, python3-skimage, python3-sklearn) resized to 112x112 with
 *       1-3 Fashion-MNIST items pasted on it; mask = the item's pixels (value > 40)
 *       with class id label + 1, 0 elsewhere.
 *   DIR/fashion/classes.txt, DIR/segmentation/classes.txt: the class names.
 *
 * Sizes are small on purpose: the later stages must run in minutes on 2 cores. Built
 * in DIR.partial-PID and renamed to DIR at the end, so DIR is complete or absent.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "check.h"
#include "config_args.h"
#include "commands.h"
#include "image/decode.h"
#include "image/resample.h"
#include "log.h"

static const char *class_names[10] = {"t-shirt_top", "trouser", "pullover", "dress", "coat",
                                      "sandal", "shirt", "sneaker", "bag", "ankle_boot"};

static const char *photo_dirs[] = {"/usr/share/backgrounds/mate/nature", "/usr/lib/python3/dist-packages/skimage/data",
                                   "/usr/lib/python3/dist-packages/sklearn/datasets/images"};
/* Colour photos among skimage's data (the rest are grey, synthetic or test files). */
static const char *skimage_photos[] = {"astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg", "retina.jpg"};

/* splitmix64: small, good and the same everywhere */
static uint64_t rng_state;
static uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static int rng_int(int lo, int hi) { return lo + (int)(rng_next() % (uint64_t)(hi - lo + 1)); } /* [lo, hi] */

/* gzip -dc of an IDX file: magic, dims, then bytes. */
static uint8_t *read_idx_gz(const char *path, int want_dims, int *dims) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "gzip -dc '%s'", path);
    FILE *f = popen(cmd, "r");
    libcCheckPtr(f, "gzip is needed to read Fashion-MNIST");
    uint8_t hdr[16];
    size_t hn = 4 + 4 * (size_t)want_dims;
    if (fread(hdr, 1, hn, f) != hn) saev_fail("%s: cannot read the IDX header (is dataset-fashion-mnist installed? apt-get install dataset-fashion-mnist)", path);
    if (hdr[0] || hdr[1] || hdr[2] != 8 || hdr[3] != want_dims) saev_fail("%s: not a uint8 IDX file with %d dimensions", path, want_dims);
    size_t total = 1;
    for (int d = 0; d < want_dims; d++) {
        dims[d] = (hdr[4 + 4 * d] << 24) | (hdr[5 + 4 * d] << 16) | (hdr[6 + 4 * d] << 8) | hdr[7 + 4 * d];
        total *= (size_t)dims[d];
    }
    uint8_t *data = mallocCheck(total);
    if (fread(data, 1, total, f) != total) saev_fail("%s: file ends early", path);
    if (pclose(f) != 0) saev_fail("%s: gzip failed", path);
    return data;
}


static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Every photo we can find, shrunk so the short side is at most 384 px (bicubic). */
static Image8 *load_photos(int *n_out) {
    char *paths[64];
    int n = 0;
    for (size_t d = 0; d < sizeof photo_dirs / sizeof photo_dirs[0]; d++) {
        DIR *dir = opendir(photo_dirs[d]);
        if (!dir) continue;
        struct dirent *e;
        while ((e = readdir(dir)) && n < 64) {
            const char *dot = strrchr(e->d_name, '.');
            if (!dot || (strcmp(dot, ".jpg") && strcmp(dot, ".png"))) continue;
            int ok = d != 1;
            for (size_t k = 0; d == 1 && k < sizeof skimage_photos / sizeof skimage_photos[0]; k++) ok |= !strcmp(e->d_name, skimage_photos[k]);
            if (!ok) continue;
            char full[1024];
            snprintf(full, sizeof full, "%s/%s", photo_dirs[d], e->d_name);
            paths[n++] = strdupCheck(full);
        }
        closedir(dir);
    }
    if (n == 0) saev_fail("no real photos found in /usr/share/backgrounds/mate/nature or python3-skimage/-sklearn data (apt-get install mate-backgrounds python3-skimage python3-sklearn)");
    qsort(paths, n, sizeof(char *), cmp_str); /* directory order is not deterministic */
    Image8 *photos = callocCheck(n, sizeof(Image8));
    int kept = 0;
    for (int i = 0; i < n; i++) {
        char err[1024];
        Image8 im;
        if (decode_rgb_file(paths[i], 0, &im, err, sizeof err)) { log_warn("demo-data: skipping photo %s", err); free(paths[i]); continue; }
        int s = im.w < im.h ? im.w : im.h;
        if (s > 384) {
            int w = (int)((int64_t)im.w * 384 / s), h = (int)((int64_t)im.h * 384 / s);
            Image8 sm = {w, h, 3, mallocCheck((size_t)w * h * 3)};
            resample_window(&im, w, h, INTERP_BICUBIC, 0, 0, w, h, sm.data);
            image8_free(&im);
            im = sm;
        }
        photos[kept++] = im;
        free(paths[i]);
    }
    if (!kept) saev_fail("demo-data: none of the photos could be decoded");
    *n_out = kept;
    return photos;
}

static void write_or_die(const char *path, const Image8 *im, int jpeg) {
    char err[1024];
    if ((jpeg ? write_jpeg(path, im, 92, err, sizeof err) : write_png(path, im, err, sizeof err))) saev_fail("%s", err);
}

/* Fashion-MNIST's training set and the seeded order items are taken in. */
typedef struct {
    uint8_t *imgs;    // [n, side, side] grey
    uint8_t *labels;  // [n] class 0..9
    int n, side;
    int *perm;        // [n] a seeded permutation of the set; items are taken from it in order
    Image8 item;      // [side, side, 3] scratch: one item as RGB
} Fashion;

static void fashion_load(Fashion *fm, const char *fm_dir) {
    char path[4096];
    int dims[3];
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte.gz", fm_dir);
    fm->imgs = read_idx_gz(path, 3, dims);
    fm->n = dims[0];
    fm->side = dims[1];
    if (dims[1] != 28 || dims[2] != 28) saev_fail("%s: expected 28x28 images, got %dx%d", path, dims[1], dims[2]);
    snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte.gz", fm_dir);
    fm->labels = read_idx_gz(path, 1, dims);
    if (dims[0] != fm->n) saev_fail("%s: %d labels for %d images", path, dims[0], fm->n);
    fm->perm = mallocCheck(sizeof(int) * fm->n);
    for (int i = 0; i < fm->n; i++) fm->perm[i] = i;
    for (int i = fm->n - 1; i > 0; i--) { int j = (int)(rng_next() % (uint64_t)(i + 1)); int t = fm->perm[i]; fm->perm[i] = fm->perm[j]; fm->perm[j] = t; }
    fm->item = (Image8){fm->side, fm->side, 3, mallocCheck((size_t)fm->side * fm->side * 3)};
}

/* Item k, grey replicated to RGB and upscaled (bicubic) to an s x s square (malloc'd). */
static Image8 fashion_item(Fashion *fm, int k, int s) {
    int side = fm->side;
    for (int p = 0; p < side * side; p++)
        fm->item.data[3 * p] = fm->item.data[3 * p + 1] = fm->item.data[3 * p + 2] = fm->imgs[(size_t)k * side * side + p];
    Image8 up = {s, s, 3, mallocCheck((size_t)s * s * 3)};
    resample_window(&fm->item, s, s, INTERP_BICUBIC, 0, 0, s, s, up.data);
    return up;
}

/* part/fashion: per_class items of each class in the permutation's order; *next counts
 * the permutation's entries used. Returns the images written. */
static int write_fashion_folder(Fashion *fm, const char *part, long per_class, int *next) {
    char path[4096];
    int taken[10] = {0};
    for (int c = 0; c < 10; c++) { snprintf(path, sizeof path, "%s/fashion/%02d_%s", part, c, class_names[c]); make_dirs_or_die(path); }
    for (int i = 0; i < fm->n && *next < 10 * per_class; i++) {
        int k = fm->perm[i], c = fm->labels[k];
        if (c > 9) saev_fail("Fashion-MNIST label %d out of range", c);
        if (taken[c] >= per_class) continue;
        Image8 up = fashion_item(fm, k, rng_int(64, 96));
        int jpeg = taken[c] % 2;
        snprintf(path, sizeof path, "%s/fashion/%02d_%s/%05d.%s", part, c, class_names[c], taken[c], jpeg ? "jpg" : "png");
        write_or_die(path, &up, jpeg);
        image8_free(&up);
        taken[c]++;
        (*next)++;
    }
    snprintf(path, sizeof path, "%s/fashion/classes.txt", part);
    FILE *f = fopen(path, "w");
    libcCheckPtr(f, path);
    for (int c = 0; c < 10; c++) fprintf(f, "%d %s\n", c, class_names[c]);
    libcCheck(fclose(f));
    return *next;
}

/* One segmentation image into bg [S, S, 3] and mask [S, S]: a random crop of a photo,
 * resized, with 1-3 tinted items pasted (mask = class + 1 where the item is > 40). */
static void compose_seg_image(Fashion *fm, const Image8 *photos, int n_photos, int *next, Image8 *bg, Image8 *mask) {
    int S = bg->w;
    const Image8 *ph = &photos[rng_next() % (uint64_t)n_photos];
    int short_side = ph->w < ph->h ? ph->w : ph->h;
    int cs = rng_int(short_side / 3 > S ? short_side / 3 : (S < short_side ? S : short_side), short_side);
    int cx = rng_int(0, ph->w - cs), cy = rng_int(0, ph->h - cs);
    /* crop = window of a copy; then resize the crop to S x S */
    Image8 crop = {cs, cs, 3, mallocCheck((size_t)cs * cs * 3)};
    for (int y = 0; y < cs; y++) memcpy(crop.data + (size_t)y * cs * 3, ph->data + ((size_t)(cy + y) * ph->w + cx) * 3, (size_t)cs * 3);
    resample_window(&crop, S, S, INTERP_BILINEAR, 0, 0, S, S, bg->data);
    image8_free(&crop);
    memset(mask->data, 0, (size_t)S * S);
    int n_items = rng_int(1, 3);
    for (int t = 0; t < n_items; t++) {
        int k = fm->perm[(size_t)((*next)++) % fm->n], c = fm->labels[k];
        int s = rng_int(36, 64);
        Image8 up = fashion_item(fm, k, s);
        int ox = rng_int(0, S - s), oy = rng_int(0, S - s);
        uint8_t tint[3] = {(uint8_t)rng_int(120, 255), (uint8_t)rng_int(120, 255), (uint8_t)rng_int(120, 255)};
        for (int y = 0; y < s; y++)
            for (int x = 0; x < s; x++) {
                int v = up.data[((size_t)y * s + x) * 3];
                if (v <= 40) continue;
                uint8_t *d = bg->data + ((size_t)(oy + y) * S + ox + x) * 3;
                for (int ch = 0; ch < 3; ch++) d[ch] = (uint8_t)(v * tint[ch] / 255);
                mask->data[(oy + y) * S + ox + x] = (uint8_t)(c + 1);
            }
        image8_free(&up);
    }
}

/* part/segmentation in ADE20K's layout: n_seg images, the first 80 % training. Returns
 * the photos used as backgrounds. */
static int write_segmentation(Fashion *fm, const char *part, long n_seg, int *next) {
    char path[4096];
    int n_photos;
    Image8 *photos = load_photos(&n_photos);
    const int S = 112;
    int n_train = (int)(n_seg * 8 / 10);
    for (int split = 0; split < 2; split++) {
        const char *sname = split ? "validation" : "training";
        snprintf(path, sizeof path, "%s/segmentation/images/%s", part, sname); make_dirs_or_die(path);
        snprintf(path, sizeof path, "%s/segmentation/annotations/%s", part, sname); make_dirs_or_die(path);
    }
    Image8 bg = {S, S, 3, mallocCheck((size_t)S * S * 3)}, mask = {S, S, 1, mallocCheck((size_t)S * S)};
    for (int i = 0; i < n_seg; i++) {
        compose_seg_image(fm, photos, n_photos, next, &bg, &mask);
        const char *sname = i < n_train ? "training" : "validation";
        snprintf(path, sizeof path, "%s/segmentation/images/%s/%05d.jpg", part, sname, i);
        write_or_die(path, &bg, 1);
        snprintf(path, sizeof path, "%s/segmentation/annotations/%s/%05d.png", part, sname, i);
        write_or_die(path, &mask, 0);
    }
    snprintf(path, sizeof path, "%s/segmentation/classes.txt", part);
    FILE *f = fopen(path, "w");
    libcCheckPtr(f, path);
    fprintf(f, "0 unlabelled\n");
    for (int c = 0; c < 10; c++) fprintf(f, "%d %s\n", c + 1, class_names[c]);
    libcCheck(fclose(f));
    for (int i = 0; i < n_photos; i++) image8_free(&photos[i]);
    free(photos);
    image8_free(&bg);
    image8_free(&mask);
    return n_photos;
}

int cmd_demo_data(int argc, char **argv) {
    const char *dir = NULL, *fm_dir = "/usr/share/datasets/fashion-mnist";
    long seed = 0, per_class = 30, n_seg = 40;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: saev demo-data DIR [--seed N] [--per-class N] [--seg-images N] [--fashion-mnist DIR]\n\n"
                   "Builds DIR/fashion (image folder, 10 Fashion-MNIST classes x N images, default 30) and\n"
                   "DIR/segmentation (ADE20K layout, default 40 images: Fashion-MNIST items on real photos)\n"
                   "from Debian packages only; the same seed gives the same files.\n");
            return 0;
        }
        long *target = !strcmp(argv[i], "--seed") ? &seed : !strcmp(argv[i], "--per-class") ? &per_class : !strcmp(argv[i], "--seg-images") ? &n_seg : NULL;
        if (target || !strcmp(argv[i], "--fashion-mnist")) {
            if (i + 1 >= argc) saev_usage_fail("%s needs a value", argv[i]);
            if (!target) { fm_dir = argv[++i]; continue; }
            i++;
            *target = (long)flag_int_or_die("saev demo-data", argv[i - 1], argv[i], 0, target == &seed ? LONG_MAX : 6000);
        } else if (argv[i][0] == '-') saev_usage_fail("unknown flag %s (saev demo-data --help)", argv[i]);
        else if (!dir) dir = argv[i];
        else saev_usage_fail("one DIR only");
    }
    if (!dir) { fprintf(stderr, "usage: saev demo-data DIR [--seed N] [--per-class N] [--seg-images N]\n"); return SAEV_EXIT_USAGE; }
    struct stat st;
    if (stat(dir, &st) == 0) saev_usage_fail("%s already exists; remove it or choose another folder", dir);
    rng_state = 0x5ae5c0de00000000ULL ^ (uint64_t)seed;
    if (strlen(dir) > 1900) saev_usage_fail("%s: path too long", dir);

    Fashion fm;
    fashion_load(&fm, fm_dir);
    char part[2048];
    snprintf(part, sizeof part, "%s.partial-%d", dir, (int)getpid());
    int next = 0;
    int n_fashion = write_fashion_folder(&fm, part, per_class, &next);
    int n_photos = write_segmentation(&fm, part, n_seg, &next);
    if (rename(part, dir) != 0) saev_fail("%s: cannot rename %s to it: %s", dir, part, strerror(errno));
    int n_train = (int)(n_seg * 8 / 10);
    printf("demo-data: %s/fashion: %d images in 10 classes; %s/segmentation: %d images (%d training, %d validation) on %d photos\n",
           dir, n_fashion, dir, (int)n_seg, n_train, (int)n_seg - n_train, n_photos);
    image8_free(&fm.item);
    free(fm.perm);
    free(fm.imgs);
    free(fm.labels);
    return 0;
}
