/*
 * hash.h: FNV-1a (64-bit), the one content hash saev-c uses for identities that must not
 * depend on file layout: a ViT's loaded weights, a sweep member's resolved config.
 */
#ifndef SAEV_HASH_H
#define SAEV_HASH_H

#include <stddef.h>
#include <stdint.h>

#define FNV1A64_INIT 1469598103934665603ULL

/* Continues the hash `h` over n bytes (start with FNV1A64_INIT). */
static inline uint64_t fnv1a64(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = (const unsigned char *)data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

#endif
