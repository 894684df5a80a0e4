/*
 * test_image_preprocess.c: decode + preprocess of every image in
 * tests/fixtures/preprocess against the tensors Pillow 9.4 + torchvision produced
 * (fixtures/README.md), for the clip, dinov2 and siglip pipelines. Values are compared in
 * intensity levels after undoing mean/std: >= 99.9 % within one level, none beyond 3.
 * Also checks the geometry rules (shortest-side size, half-to-even crop offsets) on
 * closed-form cases.
 */
#include <check.h>
#include "testutil.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/decode.h"
#include "image/preprocess.h"
#include "safetensors.h"

static const char *images[] = {"astronaut.png", "camera_gray.png", "china.jpg", "gradient_rgba.png", "small_13x9.png", "wide_700x41.jpg"};
static const char *pipelines[] = {"clip", "dinov2", "siglip"};

START_TEST(test_fixture_image) {
    const char *name = images[_i];
    char path[1024], err[1024];
    snprintf(path, sizeof path, "%s/%s", fixture_path("preprocess"), name);
    Image8 im;
    ck_assert_msg(decode_rgb_file(path, 0, &im, err, sizeof err) == 0, "%s", err);
    snprintf(path, sizeof path, "%s/%s.expected.safetensors", fixture_path("preprocess"), name);
    SafeTensors st;
    st_open_or_die(&st, path);
    for (int p = 0; p < 3; p++) {
        PreprocessSpec spec;
        ck_assert(preprocess_family(pipelines[p], &spec, err, sizeof err) == 0);
        int ow, oh;
        preprocess_out_size(&spec, im.w, im.h, &ow, &oh);
        int64_t shape[3] = {3, oh, ow};
        float *want = st_load_f32(&st, pipelines[p], 3, shape);
        float *got = malloc(sizeof(float) * 3 * ow * oh);
        preprocess_image(&spec, &im, got, NULL);
        size_t n = (size_t)ow * oh, off1 = 0, exact = 0, not_finite = 0;
        double worst = 0;
        for (int c = 0; c < 3; c++)
            for (size_t i = 0; i < n; i++) {
                /* back to 0..255 levels: x * std + mean, times 255 */
                double a = ((double)got[c * n + i] * spec.std[c] + spec.mean[c]) * 255.0;
                double b = ((double)want[c * n + i] * spec.std[c] + spec.mean[c]) * 255.0;
                double d = fabs(a - b);
                if (!isfinite(d)) not_finite++; /* NaN compares false below: count it apart */
                if (d > worst) worst = d;
                if (d > 1.0 + 1e-3) off1++;
                if (d < 1e-3) exact++;
            }
        printf("%-18s %-7s worst %.4f levels, %zu/%zu beyond 1 level, %.4f%% exact\n", name, pipelines[p], worst, off1, 3 * n,
               100.0 * exact / (3.0 * n));
        ck_assert_msg(not_finite == 0, "%s %s: %zu values are NaN or Inf", name, pipelines[p], not_finite);
        ck_assert_msg(worst <= 3.0 + 1e-3, "%s %s: worst difference %.3f levels", name, pipelines[p], worst);
        ck_assert_msg(off1 <= 3 * n / 1000, "%s %s: %zu values beyond one level", name, pipelines[p], off1);
        free(want);
        free(got);
    }
    st_close(&st);
    image8_free(&im);
}
END_TEST

/* Closed form: shortest side 224 of 700x41 -> int(224*700/41) = 3824 wide; crop offset
 * round((3824-224)/2) = 1800; (225-224)/2 = 0.5 rounds to 0 and (227-224)/2 = 1.5 to 2
 * (half to even, as Python). */
START_TEST(test_geometry) {
    PreprocessSpec s;
    char err[256];
    ck_assert(preprocess_family("clip", &s, err, sizeof err) == 0);
    int rw, rh, cx, cy, cw, ch;
    preprocess_geometry(&s, 700, 41, &rw, &rh, &cx, &cy, &cw, &ch);
    ck_assert_int_eq(rw, 3824); ck_assert_int_eq(rh, 224);
    ck_assert_int_eq(cx, 1800); ck_assert_int_eq(cy, 0);
    s.resize = RESIZE_EXACT; s.width = 225; s.height = 227;
    preprocess_geometry(&s, 10, 10, &rw, &rh, &cx, &cy, &cw, &ch);
    ck_assert_int_eq(cx, 0); ck_assert_int_eq(cy, 2);
    /* a crop larger than the image pads: (224-100)//2 = 62 zeros on the left */
    s.width = 100; s.height = 224;
    preprocess_geometry(&s, 10, 10, &rw, &rh, &cx, &cy, &cw, &ch);
    ck_assert_int_eq(cx, -62); ck_assert_int_eq(cy, 0);
}
END_TEST

/* Overrides: each key replaces the family default; inconsistent ones are refused. */
START_TEST(test_resolve_overrides) {
    PreprocessConfig c = {0};
    c.pipeline = "dinov2"; c.size = CFG_UNSET_INT; c.width = CFG_UNSET_INT; c.height = CFG_UNSET_INT; c.crop = CFG_UNSET_INT;
    PreprocessSpec s;
    char err[256];
    ck_assert(preprocess_resolve(&c, &s, err, sizeof err) == 0);
    ck_assert_int_eq(s.width, 256); ck_assert_int_eq(s.crop_w, 224); ck_assert_int_eq(s.interp, INTERP_BILINEAR);
    c.interpolation = "nearest"; c.crop = 0; c.size = 32;
    double mean[3] = {0, 0, 0};
    c.mean.n = 3; c.mean.f = mean;
    ck_assert(preprocess_resolve(&c, &s, err, sizeof err) == 0);
    ck_assert_int_eq(s.width, 32); ck_assert_int_eq(s.crop_w, 0); ck_assert_int_eq(s.interp, INTERP_NEAREST);
    ck_assert(s.mean[1] == 0.0f);
    c.mean.n = 2;
    ck_assert(preprocess_resolve(&c, &s, err, sizeof err) == -1);
    ck_assert_ptr_nonnull(strstr(err, "mean"));
    c.mean.n = 0; c.pipeline = "vit";
    ck_assert(preprocess_resolve(&c, &s, err, sizeof err) == -1);
    ck_assert_ptr_nonnull(strstr(err, "vit"));
}
END_TEST

int main(void) {
    Suite *s = suite_create("image_preprocess");
    TCase *tc = tcase_create("core");
    tcase_add_loop_test(tc, test_fixture_image, 0, (int)(sizeof images / sizeof images[0]));
    tcase_add_test(tc, test_geometry);
    tcase_add_test(tc, test_resolve_overrides);
    suite_add_tcase(s, tc);
    return run_suite(s, 1);
}
