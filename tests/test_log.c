/*
 * test_log.c: logging and progress output. Info lines print on rank 0 only unless all
 * ranks are asked for; warnings print everywhere with the rank prefix; progress off a
 * terminal prints one plain line per interval with count, total, rate and ETA.
 */
#include <check.h>
#include <fcntl.h>

#include "log.h"
#include "testutil.h"

/* Runs fn with stdout and stderr sent to a file; returns the file's text. */
static char *capture(void (*fn)(void)) {
    const char *path = scratch_file("log.txt");
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(1), saved_err = dup(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    fn();
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(fd);
    FILE *f = fopen(path, "rb");
    static char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static void rank1_logs(void) {
    log_init(1, 2);
    log_set_all_ranks(0);
    log_info("hidden info");
    log_warn("visible warning");
    log_set_all_ranks(1);
    log_info("now visible info");
}

START_TEST(test_rank_filtering) {
    char *out = capture(rank1_logs);
    ck_assert_ptr_null(strstr(out, "hidden info"));
    ck_assert_ptr_nonnull(strstr(out, "[rank 1] warning: visible warning"));
    ck_assert_ptr_nonnull(strstr(out, "[rank 1] now visible info"));
}
END_TEST

static void progress_lines(void) {
    log_init(0, 1);
    setenv("SAEV_PROGRESS_INTERVAL", "0", 1);
    Progress p;
    progress_start(&p, "images", 10);
    progress_update(&p, 5);
    p.done = 10;
    progress_finish(&p);
}

START_TEST(test_progress_plain) {
    char *out = capture(progress_lines); /* stderr is a file here, so plain lines */
    ck_assert_ptr_nonnull(strstr(out, "progress: 5/10 images"));
    ck_assert_ptr_nonnull(strstr(out, "progress: 10/10 images"));
    ck_assert_ptr_nonnull(strstr(out, "eta"));
    ck_assert_ptr_null(strchr(out, '\r')); /* no terminal redraws in log files */
}
END_TEST

int main(void) {
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_rank_filtering);
    tcase_add_test(tc, test_progress_plain);
    suite_add_tcase(s, tc);
    return run_suite(s, 1);
}
