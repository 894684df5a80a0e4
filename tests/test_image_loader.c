/*
 * test_image_loader.c: bad images (one test per case and per on_bad_image policy), data
 * set listing, per-patch labels on a hand-built mask, and the loader's ordering
 * invariant (many threads and a deep queue give exactly what one thread gives, and
 * exactly what decoding + preprocessing each image alone gives).
 * Images are generated here with write_png/write_jpeg into a fresh temporary folder.
 */
#include <check.h>
#include "testutil.h"
#include "fsutil.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/dataset.h"
#include "image/decode.h"
#include "image/loader.h"
#include "image/preprocess.h"

static char tmpdir[256];

static void make_tmpdir(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/saev_test_image_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void rm_tmpdir(void) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

/* A deterministic colourful w x h image. */
static Image8 pattern(int w, int h, int seed) {
    Image8 im = {w, h, 3, malloc((size_t)w * h * 3)};
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = im.data + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(x * 7 + seed * 31);
            p[1] = (uint8_t)(y * 5 + (x ^ y) + seed);
            p[2] = (uint8_t)((x * y + seed * 13) >> 2);
        }
    return im;
}

static void rm_tmpdir_at_exit(void) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
}

static void good_file(const char *path, int w, int h, int seed) {
    Image8 im = pattern(w, h, seed);
    char err[512];
    int rc = strstr(path, ".png") ? write_png(path, &im, err, sizeof err) : write_jpeg(path, &im, 90, err, sizeof err);
    ck_assert_msg(rc == 0, "%s", err);
    image8_free(&im);
}

/* decode must fail with a reason containing `want` and naming the file. */
static void expect_bad(const char *path, int64_t max_pixels, const char *want) {
    Image8 im;
    char err[1024] = "";
    ck_assert_int_eq(decode_rgb_file(path, max_pixels, &im, err, sizeof err), -1);
    ck_assert_msg(strstr(err, want) != NULL, "reason \"%s\" lacks \"%s\"", err, want);
    ck_assert_msg(strstr(err, path) != NULL, "reason \"%s\" does not name the file", err);
    ck_assert_ptr_null(im.data);
}

START_TEST(test_bad_zero_byte) {
    make_tmpdir();
    char p[512];
    snprintf(p, sizeof p, "%s/empty.jpg", tmpdir);
    write_bytes(p, "", 0);
    expect_bad(p, 0, "empty file");
    rm_tmpdir();
}
END_TEST

START_TEST(test_bad_truncated) {
    make_tmpdir();
    const char *names[] = {"t.jpg", "t.png"};
    for (int k = 0; k < 2; k++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", tmpdir, names[k]);
        good_file(p, 64, 48, 1);
        size_t n;
        uint8_t *b = (uint8_t *)read_file_or_die(p, &n);
        write_bytes(p, b, n * 2 / 3);
        free(b);
        expect_bad(p, 0, "truncated");
    }
    rm_tmpdir();
}
END_TEST

START_TEST(test_bad_corrupt) {
    make_tmpdir();
    char p[512];
    /* JPEG: keep SOI, overwrite the markers after it with junk */
    snprintf(p, sizeof p, "%s/c.jpg", tmpdir);
    good_file(p, 64, 48, 2);
    size_t n;
    uint8_t *b = (uint8_t *)read_file_or_die(p, &n);
    for (size_t i = 3; i < 200 && i < n; i++) b[i] = (uint8_t)(i * 37);
    write_bytes(p, b, n);
    free(b);
    expect_bad(p, 0, "corrupt JPEG");
    /* PNG: flip a byte of the IHDR chunk so its CRC no longer matches */
    snprintf(p, sizeof p, "%s/c.png", tmpdir);
    good_file(p, 64, 48, 3);
    b = (uint8_t *)read_file_or_die(p, &n);
    b[18] ^= 0x5a;
    write_bytes(p, b, n);
    free(b);
    expect_bad(p, 0, "corrupt PNG");
    rm_tmpdir();
}
END_TEST

START_TEST(test_bad_not_image) {
    make_tmpdir();
    char p[512];
    snprintf(p, sizeof p, "%s/notes.jpg", tmpdir);
    const char *text = "this is a text file with an image extension\n";
    write_bytes(p, text, strlen(text));
    expect_bad(p, 0, "not a JPEG or PNG image");
    snprintf(p, sizeof p, "%s/anim.gif", tmpdir);
    write_bytes(p, "GIF89a\1\0\1\0\0\0\0;", 14);
    expect_bad(p, 0, "GIF images are not supported");
    rm_tmpdir();
}
END_TEST

START_TEST(test_bad_over_pixel_limit) {
    make_tmpdir();
    const char *names[] = {"big.jpg", "big.png"};
    for (int k = 0; k < 2; k++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", tmpdir, names[k]);
        good_file(p, 100, 50, 4);
        expect_bad(p, 4999, "over the limit of 4999");
        Image8 im;
        char err[512];
        ck_assert_msg(decode_rgb_file(p, 5000, &im, err, sizeof err) == 0, "%s", err); /* exactly at the limit is fine */
        image8_free(&im);
    }
    rm_tmpdir();
}
END_TEST

/* A folder set: 2 classes, 11 images, 3 of them bad (class b, positions 1, 5, 6 overall). */
static void build_folder(void) {
    char p[512];
    snprintf(p, sizeof p, "%s/a", tmpdir); mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/b", tmpdir); mkdir(p, 0755);
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/a/%02d.%s", tmpdir, i, i % 2 ? "jpg" : "png");
        if (i == 1) write_bytes(p, "", 0);
        else good_file(p, 40 + 9 * i, 30 + 5 * i, i);
    }
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, "%s/b/%02d.%s", tmpdir, i, i % 2 ? "png" : "jpg");
        if (i == 0) write_bytes(p, "junk", 4);
        else if (i == 1) good_file(p, 300, 300, 9); /* over the 50,000 pixel limit used below */
        else good_file(p, 70 - 3 * i, 50 + 7 * i, 10 + i);
    }
    snprintf(p, sizeof p, "%s/a/readme.txt", tmpdir); /* ignored: not an image extension */
    write_bytes(p, "x", 1);
}

static ImageLoaderSpec image_loader_spec(int threads, int queue, BadImagePolicy bad) {
    ImageLoaderSpec s = {0};
    s.batch_size = 4; s.threads = threads; s.queue_batches = queue; s.begin = 0; s.end = -1;
    char err[256];
    ck_assert(preprocess_family("clip", &s.pre, err, sizeof err) == 0);
    s.pre.size = 32; s.pre.crop_w = s.pre.crop_h = 32;
    s.on_bad = bad; s.max_pixels = 50000;
    return s;
}

START_TEST(test_folder_listing) {
    make_tmpdir();
    build_folder();
    DataSpec ds_spec = {DATA_FOLDER, tmpdir, NULL, NULL, BAD_SKIP, 0, PATCH_MAJORITY};
    Dataset ds;
    char err[512];
    ck_assert_msg(dataset_open(&ds_spec, &ds, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(ds.n, 11);
    ck_assert_int_eq(ds.n_classes, 2);
    ck_assert_str_eq(ds.class_names[1], "b");
    ck_assert_int_eq(ds.labels[4], 0);
    ck_assert_int_eq(ds.labels[5], 1);
    ck_assert_ptr_nonnull(strstr(ds.paths[5], "/b/00.jpg"));
    dataset_free(&ds);
    /* a list file with optional labels, relative paths, comments */
    char p[512];
    snprintf(p, sizeof p, "%s/list.txt", tmpdir);
    const char *list = "# comment\na/00.png 3\n\nb/02.jpg\n";
    write_bytes(p, list, strlen(list));
    DataSpec ls = {DATA_LIST, NULL, p, NULL, BAD_SKIP, 0, PATCH_MAJORITY};
    ck_assert_msg(dataset_open(&ls, &ds, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(ds.n, 2);
    ck_assert_int_eq(ds.labels[0], 3);
    ck_assert_int_eq(ds.labels[1], -1);
    ck_assert_int_eq(ds.n_classes, 4);
    char want[600];
    snprintf(want, sizeof want, "%s/b/02.jpg", tmpdir);
    ck_assert_str_eq(ds.paths[1], want);
    dataset_free(&ds);
    const char *badlist = "a/00.png -2\n";
    write_bytes(p, badlist, strlen(badlist));
    ck_assert(dataset_open(&ls, &ds, err, sizeof err) == -1);
    ck_assert_msg(strstr(err, "list.txt:1") != NULL, "%s", err);
    DataSpec missing = {DATA_FOLDER, "/nonexistent/folder", NULL, NULL, BAD_SKIP, 0, PATCH_MAJORITY};
    ck_assert(dataset_open(&missing, &ds, err, sizeof err) == -1);
    ck_assert_msg(strstr(err, "/nonexistent/folder") != NULL, "%s", err);
    rm_tmpdir();
}
END_TEST

/* Policy skip: the three bad images are left out, listed with reasons, and every kept
 * row equals preprocessing that image alone; 8 threads / queue 3 == 1 thread / queue 1. */
START_TEST(test_loader_skip_and_order) {
    make_tmpdir();
    build_folder();
    DataSpec ds_spec = {DATA_FOLDER, tmpdir, NULL, NULL, BAD_SKIP, 0, PATCH_MAJORITY};
    Dataset ds;
    char err[512];
    ck_assert_msg(dataset_open(&ds_spec, &ds, err, sizeof err) == 0, "%s", err);
    const size_t px = 3 * 32 * 32;
    float *out[2];
    int64_t idx[2][16];
    int n_out[2] = {0, 0};
    for (int run = 0; run < 2; run++) {
        ImageLoaderSpec s = run == 0 ? image_loader_spec(1, 1, BAD_SKIP) : image_loader_spec(8, 3, BAD_SKIP);
        out[run] = malloc(sizeof(float) * px * 16);
        ImageLoader *ld = image_loader_open(&ds, &s);
        ck_assert_int_eq(image_loader_n_batches(ld), 3);
        const ImageBatch *b;
        int nb = 0, bad_seen = 0;
        while ((b = image_loader_next(ld))) {
            ck_assert_int_eq(b->first, nb * 4);
            for (int i = 0; i < b->n; i++) {
                idx[run][n_out[run]] = b->index[i];
                ck_assert_int_eq(b->labels[i], ds.labels[b->index[i]]);
                memcpy(out[run] + n_out[run] * px, b->pixels + i * px, sizeof(float) * px);
                n_out[run]++;
            }
            for (int i = 0; i < b->n_bad; i++, bad_seen++) {
                static const int64_t want_bad[3] = {1, 5, 6};
                ck_assert_int_eq(b->bad_index[i], want_bad[bad_seen]);
                ck_assert_ptr_nonnull(strstr(b->bad_reason[i], ds.paths[b->bad_index[i]]));
            }
            nb++;
        }
        ck_assert_int_eq(nb, 3);
        ck_assert_int_eq(bad_seen, 3);
        ck_assert_int_eq(image_loader_n_bad(ld), 3);
        char listp[512];
        snprintf(listp, sizeof listp, "%s/bad.tsv", tmpdir);
        ck_assert_msg(image_loader_write_bad_list(ld, listp, err, sizeof err) == 0, "%s", err);
        char *text = read_file_or_die(listp, NULL);
        ck_assert_ptr_nonnull(strstr(text, "empty file"));
        ck_assert_ptr_nonnull(strstr(text, "not a JPEG or PNG"));
        ck_assert_ptr_nonnull(strstr(text, "over the limit"));
        free(text);
        image_loader_close(ld);
    }
    ck_assert_int_eq(n_out[0], 8);
    ck_assert_int_eq(n_out[1], 8);
    ck_assert(memcmp(idx[0], idx[1], sizeof(int64_t) * 8) == 0);
    ck_assert(memcmp(out[0], out[1], sizeof(float) * px * 8) == 0);
    ImageLoaderSpec s = image_loader_spec(1, 1, BAD_SKIP);
    float *one = malloc(sizeof(float) * px);
    for (int k = 0; k < 8; k++) {
        Image8 im;
        ck_assert(decode_rgb_file(ds.paths[idx[0][k]], 0, &im, err, sizeof err) == 0);
        preprocess_image(&s.pre, &im, one, NULL);
        ck_assert_msg(memcmp(one, out[0] + k * px, sizeof(float) * px) == 0, "row %d differs from preprocessing alone", k);
        image8_free(&im);
    }
    free(one);
    free(out[0]);
    free(out[1]);
    dataset_free(&ds);
    rm_tmpdir();
}
END_TEST

/* Policy fail: the job stops (exit status 1) at the first bad image. */
static void load_all_failing(void *ds) {
    ImageLoaderSpec s = image_loader_spec(2, 2, BAD_FAIL);
    ImageLoader *ld = image_loader_open(ds, &s);
    while (image_loader_next(ld)) {}
    image_loader_close(ld); /* not reached: the bad image ends the process */
}

START_TEST(test_loader_fail_policy) {
    make_tmpdir();
    build_folder();
    DataSpec ds_spec = {DATA_FOLDER, tmpdir, NULL, NULL, BAD_FAIL, 0, PATCH_MAJORITY};
    Dataset ds;
    char err[512];
    ck_assert_msg(dataset_open(&ds_spec, &ds, err, sizeof err) == 0, "%s", err);
    /* The first bad image in order is a/01.jpg (zero bytes): the message names it. */
    expect_exit(load_all_failing, &ds, 1, "bad image (data.on_bad_image: fail)");
    expect_exit(load_all_failing, &ds, 1, "a/01.jpg");
    dataset_free(&ds);
    rm_tmpdir_at_exit();
}
END_TEST

/* Hand-built 8x8 mask, patch 4, four patches (counts out of 16):
 *   TL: 10 x 0, 6 x 3   -> majority 0, prefer-fg 3
 *   TR: 16 x 5          -> 5, 5
 *   BL: 8 x 2, 8 x 7    -> tie: smaller id 2, 2
 *   BR: 16 x 0          -> 0, 0 */
START_TEST(test_patch_labels) {
    uint8_t m[64];
    memset(m, 0, sizeof m);
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 8; x++) {
            uint8_t *v = &m[y * 8 + x];
            if (y < 4 && x < 4) *v = (y * 4 + x) < 6 ? 3 : 0;
            else if (y < 4) *v = 5;
            else if (x < 4) *v = (x < 2) ? 7 : 2;
        }
    uint8_t out[4];
    patch_labels_from_mask(m, 8, 8, 4, PATCH_MAJORITY, out);
    ck_assert_int_eq(out[0], 0); ck_assert_int_eq(out[1], 5); ck_assert_int_eq(out[2], 2); ck_assert_int_eq(out[3], 0);
    patch_labels_from_mask(m, 8, 8, 4, PATCH_PREFER_FG, out);
    ck_assert_int_eq(out[0], 3); ck_assert_int_eq(out[1], 5); ck_assert_int_eq(out[2], 2); ck_assert_int_eq(out[3], 0);
}
END_TEST

/* ADE20K layout through the loader: an image whose mask is class 4 on its left half and
 * 0 on the right; resize exact 16x16 (nearest for the mask), patch 8 -> [4, 0, 4, 0]. */
START_TEST(test_ade20k_loader) {
    make_tmpdir();
    char p[1024];
    snprintf(p, sizeof p, "mkdir -p '%s/images/training' '%s/annotations/training'", tmpdir, tmpdir);
    ck_assert_int_eq(system(p), 0);
    snprintf(p, sizeof p, "%s/images/training/x1.jpg", tmpdir);
    good_file(p, 40, 20, 5);
    Image8 mask = {40, 20, 1, calloc(800, 1)};
    for (int y = 0; y < 20; y++)
        for (int x = 0; x < 20; x++) mask.data[y * 40 + x] = 4;
    char err[512];
    snprintf(p, sizeof p, "%s/annotations/training/x1.png", tmpdir);
    ck_assert(write_png(p, &mask, err, sizeof err) == 0);
    image8_free(&mask);
    DataSpec spec = {DATA_ADE20K, tmpdir, NULL, "training", BAD_SKIP, 0, PATCH_MAJORITY};
    Dataset ds;
    ck_assert_msg(dataset_open(&spec, &ds, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(ds.n, 1);
    ImageLoaderSpec s = image_loader_spec(1, 1, BAD_SKIP);
    s.pre.resize = RESIZE_EXACT; s.pre.width = s.pre.height = 16; s.pre.crop_w = s.pre.crop_h = 0;
    s.patch_size = 8;
    ImageLoader *ld = image_loader_open(&ds, &s);
    ck_assert_int_eq(image_loader_n_patches(ld), 4);
    const ImageBatch *b = image_loader_next(ld);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(b->n, 1);
    ck_assert_int_eq(b->patch_labels[0], 4); ck_assert_int_eq(b->patch_labels[1], 0);
    ck_assert_int_eq(b->patch_labels[2], 4); ck_assert_int_eq(b->patch_labels[3], 0);
    ck_assert_ptr_null(image_loader_next(ld));
    image_loader_close(ld);
    dataset_free(&ds);
    /* a missing annotation is named */
    snprintf(p, sizeof p, "%s/images/training/x2.jpg", tmpdir);
    good_file(p, 40, 20, 6);
    ck_assert(dataset_open(&spec, &ds, err, sizeof err) == -1);
    ck_assert_msg(strstr(err, "x2.png") != NULL, "%s", err);
    rm_tmpdir();
}
END_TEST

int main(void) {
    Suite *s = suite_create("image_loader");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_bad_zero_byte);
    tcase_add_test(tc, test_bad_truncated);
    tcase_add_test(tc, test_bad_corrupt);
    tcase_add_test(tc, test_bad_not_image);
    tcase_add_test(tc, test_bad_over_pixel_limit);
    tcase_add_test(tc, test_folder_listing);
    tcase_add_test(tc, test_loader_skip_and_order);
    tcase_add_test(tc, test_loader_fail_policy);
    tcase_add_test(tc, test_patch_labels);
    tcase_add_test(tc, test_ade20k_loader);
    suite_add_tcase(s, tc);
    return run_suite(s, 1);
}
