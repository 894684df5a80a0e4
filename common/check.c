/*
 * check.c: failure reporting for check.h. Every fatal path ends here so that one rank's
 * error always takes the whole MPI job down (MPI_Abort) instead of leaving the other
 * ranks blocked in a collective.
 */
#include "check.h"

#include <errno.h>
#include <hdf5.h>
#include <mpi.h>
#include <stdarg.h>
#include <string.h>

#include "log.h"

void saev_exit(int code) {
    int initialized = 0, finalized = 0, size = 1;
    fflush(stdout);
    fflush(stderr);
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (initialized && !finalized) {
        MPI_Comm_size(MPI_COMM_WORLD, &size);
        if (size > 1) MPI_Abort(MPI_COMM_WORLD, code);
        MPI_Finalize();
    }
    exit(code);
}

void saev_fail_at(const char *file, int line, int code, const char *fmt, ...) {
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (code == SAEV_EXIT_USAGE)
        fprintf(stderr, "%serror: %s\n", log_rank_prefix(), msg);
    else
        fprintf(stderr, "%serror: %s (at %s:%d)\n", log_rank_prefix(), msg, file, line);
    saev_exit(code);
}

void saev_libc_fail(const char *file, int line, const char *expr, const char *hint) {
    int e = errno;
    fprintf(stderr, "%s%s:%d: %s failed: %s%s%s%s\n", log_rank_prefix(), file, line, expr,
            strerror(e), hint ? " (" : "", hint ? hint : "", hint ? ")" : "");
    if (e == ENOSPC) fprintf(stderr, "%shint: the disk is full; free space and rerun (runs resume)\n", log_rank_prefix());
    saev_exit(SAEV_EXIT_FAIL);
}

void saev_mpi_fail(const char *file, int line, int err, const char *expr) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(err, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "code %d", err);
    fprintf(stderr, "%s%s:%d: MPI error in %s: %s\n%shint: check that all ranks reached the same call\n",
            log_rank_prefix(), file, line, expr, msg, log_rank_prefix());
    saev_exit(SAEV_EXIT_FAIL);
}

static herr_t print_h5_frame(unsigned n, const H5E_error2_t *e, void *client) {
    (void)client;
    if (n < 4)
        fprintf(stderr, "%s  hdf5: %s() %s\n", log_rank_prefix(), e->func_name, e->desc ? e->desc : "");
    return 0;
}

void saev_hdf5_fail(const char *file, int line, const char *expr) {
    fprintf(stderr, "%s%s:%d: HDF5 error in %s\n", log_rank_prefix(), file, line, expr);
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, print_h5_frame, NULL);
    fprintf(stderr, "%shint: the file may be missing, corrupt, or written by another program\n", log_rank_prefix());
    saev_exit(SAEV_EXIT_FAIL);
}

int saev_errf(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

void *saev_malloc_at(const char *file, int line, size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) saev_fail_at(file, line, SAEV_EXIT_FAIL, "out of memory allocating %zu bytes", n);
    return p;
}

void *saev_calloc_at(const char *file, int line, size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) saev_fail_at(file, line, SAEV_EXIT_FAIL, "out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

void *saev_realloc_at(const char *file, int line, void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) saev_fail_at(file, line, SAEV_EXIT_FAIL, "out of memory reallocating %zu bytes", n);
    return q;
}

char *saev_strdup_at(const char *file, int line, const char *s) {
    char *p = strdup(s ? s : "");
    if (!p) saev_fail_at(file, line, SAEV_EXIT_FAIL, "out of memory copying a string");
    return p;
}
