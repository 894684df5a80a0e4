/*
 * fuzz_util.h: what the libFuzzer harnesses of tests/fuzz share: turning the fuzzer's
 * bytes into a file that the parsers under test open by path (they take paths, as the
 * programs do), without touching the disk.
 *
 * A harness defines LLVMFuzzerTestOneInput. Built with -fsanitize=fuzzer it is a fuzzer
 * (make fuzz); linked with replay_main.c it replays a corpus folder in the normal test
 * suite, so every crash the fuzzers found stays fixed.
 */
#ifndef SAEV_FUZZ_UTIL_H
#define SAEV_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* An anonymous in-memory file holding data[size]; *path gets "/proc/self/fd/N". Returns
 * the descriptor (close it when done); aborts when the kernel refuses, which is a broken
 * machine, not a finding. */
static inline int fuzz_memfile(const uint8_t *data, size_t size, char *path, size_t pathlen) {
    int fd = memfd_create("saev-fuzz", 0);
    if (fd < 0) { perror("memfd_create"); abort(); }
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, data + done, size - done);
        if (w <= 0) { perror("write memfd"); abort(); }
        done += (size_t)w;
    }
    snprintf(path, pathlen, "/proc/self/fd/%d", fd);
    return fd;
}

/* A NUL-terminated copy of data[size] (malloc'd). */
static inline char *fuzz_cstring(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) abort();
    memcpy(s, data, size);
    s[size] = 0;
    return s;
}

#endif
