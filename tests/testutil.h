/*
 * testutil.h: small helpers shared by the Check tests: where the fixtures are, a scratch
 * directory, writing raw bytes to a file, relative error of two float arrays, a call
 * that must exit with a given status and message, and running a suite.
 */
#ifndef SAEV_TESTUTIL_H
#define SAEV_TESTUTIL_H

#include <check.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Fixture path: $SAEV_FIXTURES/<rel> (ctest sets it), else tests/fixtures/<rel> (the repository's own copy). */
static inline const char *fixture_path(const char *rel) {
    static char buf[8][4096];
    static int slot = 0;
    const char *root = getenv("SAEV_FIXTURES");
    char *out = buf[slot++ % 8];
    snprintf(out, 4096, "%s/%s", root ? root : "tests/fixtures", rel);
    return out;
}

static char scratch_dir_path[256] = "";
static pid_t scratch_dir_owner = 0;

static inline int scratch_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    remove(path);
    return 0;
}

/* Removed when the process that made it exits (Check forks a process per test). */
static inline void scratch_dir_cleanup(void) {
    if (scratch_dir_path[0] && scratch_dir_owner == getpid()) nftw(scratch_dir_path, scratch_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh scratch directory under /tmp, made once per process. */
static inline const char *scratch_dir(void) {
    if (!scratch_dir_path[0] || scratch_dir_owner != getpid()) {
        snprintf(scratch_dir_path, sizeof scratch_dir_path, "/tmp/saev-test-XXXXXX");
        if (!mkdtemp(scratch_dir_path)) { perror("mkdtemp"); exit(1); }
        scratch_dir_owner = getpid();
        atexit(scratch_dir_cleanup);
    }
    return scratch_dir_path;
}

static inline const char *scratch_file(const char *name) {
    static char buf[8][512];
    static int slot = 0;
    char *out = buf[slot++ % 8];
    snprintf(out, 512, "%s/%s", scratch_dir(), name);
    return out;
}

static inline void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) { perror(path); exit(1); }
}

/* ||a - b|| / ||b|| in double precision. */
static inline double rel_error(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Runs fn(arg) in a child process with stderr captured and checks that it exits with
 * `status` and that its message contains `want` (Check's tcase_add_exit_test checks
 * the status alone, so a wrong failure with the right code would pass). */
static inline void expect_exit(void (*fn)(void *), void *arg, int status, const char *want) {
    char path[512];
    snprintf(path, sizeof path, "%s/expect_exit.%d.log", scratch_dir(), (int)getpid());
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    ck_assert_msg(pid >= 0, "fork failed");
    if (pid == 0) {
        if (!freopen(path, "w", stderr)) _exit(126);
        fn(arg);
        _exit(0); /* returning is a failure of the caller's expectation: status 0 */
    }
    int ws = 0;
    ck_assert_msg(waitpid(pid, &ws, 0) == pid, "waitpid failed");
    char msg[4096] = "";
    FILE *f = fopen(path, "r");
    if (f) {
        size_t n = fread(msg, 1, sizeof msg - 1, f);
        msg[n] = 0;
        fclose(f);
    }
    ck_assert_msg(WIFEXITED(ws), "expected exit status %d, the child died by signal %d; stderr:\n%s", status,
                  WIFSIGNALED(ws) ? WTERMSIG(ws) : -1, msg);
    ck_assert_msg(WEXITSTATUS(ws) == status, "expected exit status %d, got %d; stderr:\n%s", status, WEXITSTATUS(ws), msg);
    ck_assert_msg(strstr(msg, want), "the message lacks \"%s\"; stderr:\n%s", want, msg);
}

/* Runs a Check suite (forking per test unless fork = 0, which CUDA code needs) and
 * returns the process exit status: 0 when every test passed. */
static inline int run_suite(Suite *s, int fork) {
    SRunner *sr = srunner_create(s);
    if (!fork) srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

#endif
