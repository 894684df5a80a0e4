/*
 * check.h: the error checks every saev-c call site goes through.
 *
 * Each xxxCheck(call) evaluates the call once; on failure it prints
 * "[rank R] file:line: <library> error: <library's message> (hint: ...)" and takes the
 * whole job down: MPI_Abort when running under MPI with more than one rank, so a single
 * failing rank never leaves the others hanging, exit() otherwise. saev_fail() is the
 * same for errors the code detects itself (bad input, bad config), with printf-style text.
 *
 * Exit codes: 1 for runtime failures, 2 for usage/config errors (SAEV_EXIT_USAGE).
 * The CUDA-side checks (cudaCheck, cublasCheck, ncclCheck) live in check_cuda.h so that
 * CPU-only files never include CUDA headers.
 */
#ifndef SAEV_CHECK_H
#define SAEV_CHECK_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#define SAEV_EXIT_FAIL 1
#define SAEV_EXIT_USAGE 2

#if defined(__GNUC__)
#define SAEV_NORETURN __attribute__((noreturn))
#define SAEV_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define SAEV_NORETURN
#define SAEV_PRINTF(a, b)
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Print the message with the rank prefix and file:line, then end the job with `code`. */
SAEV_NORETURN void saev_fail_at(const char *file, int line, int code, const char *fmt, ...)
    SAEV_PRINTF(4, 5);
/* Terminates the job (MPI_Abort if needed). Used by the above and by signal handlers. */
SAEV_NORETURN void saev_exit(int code);

void saev_libc_fail(const char *file, int line, const char *expr, const char *hint) SAEV_NORETURN;
void saev_mpi_fail(const char *file, int line, int err, const char *expr) SAEV_NORETURN;
void saev_hdf5_fail(const char *file, int line, const char *expr) SAEV_NORETURN;

/* Writes a printf-style message into err[errlen] (when err is not NULL) and returns -1,
 * for functions that report problems to their caller: `return saev_errf(err, n, ...)`. */
int saev_errf(char *err, size_t errlen, const char *fmt, ...) SAEV_PRINTF(3, 4);

/* Memory helpers that never return NULL. */
void *saev_malloc_at(const char *file, int line, size_t n);
void *saev_calloc_at(const char *file, int line, size_t n, size_t size);
void *saev_realloc_at(const char *file, int line, void *p, size_t n);
char *saev_strdup_at(const char *file, int line, const char *s);

#ifdef __cplusplus
}
#endif

#define saev_fail(...) saev_fail_at(__FILE__, __LINE__, SAEV_EXIT_FAIL, __VA_ARGS__)
#define saev_usage_fail(...) saev_fail_at(__FILE__, __LINE__, SAEV_EXIT_USAGE, __VA_ARGS__)

/* libc calls that return -1 (or a negative value) on failure with errno set. */
#define libcCheck(call)                                                      \
    do {                                                                     \
        if ((call) < 0) saev_libc_fail(__FILE__, __LINE__, #call, NULL);     \
    } while (0)
/* Pointer-returning libc calls (fopen, mmap is separate) that give NULL on failure. */
#define libcCheckPtr(ptr, hint)                                              \
    do {                                                                     \
        if ((ptr) == NULL) saev_libc_fail(__FILE__, __LINE__, #ptr, (hint)); \
    } while (0)

#define mpiCheck(call)                                                        \
    do {                                                                      \
        int mpi_err_ = (call);                                                \
        if (mpi_err_ != 0 /* MPI_SUCCESS */) saev_mpi_fail(__FILE__, __LINE__, mpi_err_, #call); \
    } while (0)

/* HDF5 calls return a negative value (herr_t or hid_t) on failure. */
#define h5Check(call)                                                        \
    do {                                                                     \
        if ((long long)(call) < 0) saev_hdf5_fail(__FILE__, __LINE__, #call); \
    } while (0)

#define mallocCheck(n) saev_malloc_at(__FILE__, __LINE__, (n))
#define callocCheck(n, s) saev_calloc_at(__FILE__, __LINE__, (n), (s))
#define reallocCheck(p, n) saev_realloc_at(__FILE__, __LINE__, (p), (n))
#define strdupCheck(s) saev_strdup_at(__FILE__, __LINE__, (s))

#endif
