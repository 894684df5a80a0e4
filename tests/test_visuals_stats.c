/*
 * test_visuals_stats.c: the per-latent statistics behind `saev visuals`
 * (common/visuals/latent_stats.h) on hand-made codes whose answers are written out by
 * hand: an image's score is its largest firing value (negative ones too), ties go to the
 * lower image, lists hold only firing images; the value sum is exact (1e20 + 1 - 1e20 is
 * 1, where float64 addition in that order gives 0), whatever order the images come in;
 * and the heat and label colours follow visuals.h.
 */
#include <check.h>
#include <math.h>
#include <mpi.h>

#include "testutil.h"
#include "visuals/latent_stats.h"
#include "visuals/visuals.h"

/* Two latents, two rows per image. Latent 0's image scores: 1, 2, 2, 0.5, 2, none;
 * latent 1 fires only on image 5, with -3 and -1 (top-k may keep negative values). */
static const float codes[6][2][2] = {
    {{1.0f, 0}, {0, 0}},
    {{2.0f, 0}, {1.5f, 0}},
    {{0.25f, 0}, {2.0f, 0}},
    {{0.5f, 0}, {0, 0}},
    {{2.0f, 0}, {2.0f, 0}},
    {{0, -3.0f}, {0, -1.0f}},
};

static void add_all(LatentStats *ls, const int *order) {
    for (int i = 0; i < 6; i++) latent_stats_add_image(ls, &codes[order[i]][0][0], 2, order[i]);
}

START_TEST(test_top_lists) {
    const int orders[2][6] = {{0, 1, 2, 3, 4, 5}, {5, 4, 3, 2, 1, 0}};
    for (int o = 0; o < 2; o++) {
        LatentStats ls;
        latent_stats_init(&ls, 2, 3);
        add_all(&ls, orders[o]);
        latent_stats_allreduce(&ls, comm_self());
        /* Latent 0: the three scores of 2 (images 1, 2, 4: ties to the lower image). */
        const int64_t want_img[3] = {1, 2, 4};
        for (int j = 0; j < 3; j++) {
            ck_assert_int_eq(ls.top[j].image, want_img[j]);
            ck_assert(ls.top[j].score == 2.0);
        }
        ck_assert_int_eq(ls.n_top[0], 3);
        /* Latent 1: one image, score -1 (the larger firing value), then empty slots. */
        ck_assert_int_eq(ls.n_top[1], 1);
        ck_assert_int_eq(ls.top[3].image, 5);
        ck_assert(ls.top[3].score == -1.0);
        ck_assert_int_eq(ls.top[4].image, -1);
        ck_assert(isinf(ls.top[4].score) && ls.top[4].score < 0);
        /* Counts, maxima, sums by hand: latent 0 fires on 8 rows summing to 11.25. */
        ck_assert_int_eq(ls.fired[0], 8);
        ck_assert_int_eq(ls.fired[1], 2);
        ck_assert(ls.max_value[0] == 2.0f && ls.max_value[1] == -1.0f);
        ck_assert(latent_stats_sum(&ls, 0) == 11.25);
        ck_assert(latent_stats_sum(&ls, 1) == -4.0);
        latent_stats_free(&ls);
    }
}
END_TEST

START_TEST(test_exact_sum) {
    /* 1e20f + 1 - 1e20f: float64 in this order loses the 1 (1e20 needs 67 bits); the
     * superaccumulator does not, and a subnormal and the largest float add exactly too. */
    const float v[5] = {1e20f, 1.0f, -1e20f, 1.4e-45f, 3.0e38f};
    LatentStats ls;
    latent_stats_init(&ls, 1, 1);
    for (int i = 0; i < 3; i++) latent_stats_add_image(&ls, &v[i], 1, i);
    latent_stats_normalize(&ls);
    ck_assert(latent_stats_sum(&ls, 0) == 1.0);
    double naive = (double)v[0] + (double)v[1] + (double)v[2];
    ck_assert(naive == 0.0); /* the reason for the integer sum */
    latent_stats_add_image(&ls, &v[3], 1, 3);
    latent_stats_add_image(&ls, &v[4], 1, 4);
    latent_stats_normalize(&ls);
    ck_assert(latent_stats_sum(&ls, 0) == 1.0 + (double)1.4e-45f + (double)3.0e38f);
    latent_stats_free(&ls);
}
END_TEST

START_TEST(test_colours) {
    const uint8_t px[3] = {12, 100, 200}; /* no result lands on .5, where float32 and float64 may round apart */
    uint8_t out[3];
    visuals_heat_pixel(px, 0.0f, 4.0f, out); /* zero patch: untouched */
    ck_assert(out[0] == 12 && out[1] == 100 && out[2] == 200);
    /* a = max: t = 1, alpha = 0.75, colour (200, 0, 0): 0.25 px + 0.75 c. */
    visuals_heat_pixel(px, 4.0f, 4.0f, out);
    ck_assert_int_eq(out[0], (int)lrint(0.25 * 12 + 0.75 * 200));
    ck_assert_int_eq(out[1], (int)lrint(0.25 * 100));
    ck_assert_int_eq(out[2], (int)lrint(0.25 * 200));
    /* a = max/2: t = 0.5, alpha = 0.525, colour (255, 128, 0). */
    visuals_heat_pixel(px, 2.0f, 4.0f, out);
    ck_assert_int_eq(out[0], (int)lrint(0.475 * 12 + 0.525 * 255));
    ck_assert_int_eq(out[1], (int)lrint(0.475 * 100 + 0.525 * 128));
    ck_assert_int_eq(out[2], (int)lrint(0.475 * 200));
    /* Labels: distinct non-black colours for neighbouring classes. */
    uint8_t a[3], b[3];
    visuals_label_colour(1, a);
    visuals_label_colour(2, b);
    ck_assert(a[0] >= 64 && a[1] >= 64 && a[2] >= 64);
    ck_assert(a[0] != b[0] || a[1] != b[1] || a[2] != b[2]);
}
END_TEST

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv); /* a singleton; the reduction runs on comm_self() */
    Suite *s = suite_create("visuals_stats");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_top_lists);
    tcase_add_test(tc, test_exact_sum);
    tcase_add_test(tc, test_colours);
    suite_add_tcase(s, tc);
    int rc = run_suite(s, 0); /* no fork: MPI is up */
    MPI_Finalize();
    return rc;
}
