/*
 * sha256.h: SHA-256 (FIPS 180-4) of a byte string, for names other tools derive from a
 * digest (saev names its shard directories by the first 8 hex digits of one).
 */
#ifndef SAEV_SHA256_H
#define SAEV_SHA256_H

#include <stddef.h>
#include <stdint.h>

void sha256(const void *data, size_t len, uint8_t out[32]);
/* The digest as 64 lowercase hex digits and a NUL in hex[65]. */
void sha256_hex(const void *data, size_t len, char hex[65]);

#endif
