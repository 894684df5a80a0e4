/*
 * rng.h: a small seeded generator (splitmix64) for initialization, shuffling and
 * Matryoshka prefix sampling. Its whole state is one uint64_t, so checkpoints save it
 * and a resumed run continues the identical stream.
 */
#ifndef SAEV_SAE_RNG_H
#define SAEV_SAE_RNG_H

#include <math.h>
#include <stdint.h>

static inline uint64_t rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1) with 53 random bits. */
static inline double rng_uniform(uint64_t *state) { return (double)(rng_next(state) >> 11) * (1.0 / 9007199254740992.0); }

/* Uniform integer in [0, n). */
static inline uint64_t rng_below(uint64_t *state, uint64_t n) { return (uint64_t)(rng_uniform(state) * (double)n) % n; }

#endif
