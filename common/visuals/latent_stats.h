/*
 * latent_stats.h: per-latent statistics of one SAE over a set of images, kept in memory
 * O(S·top_k) and merged exactly across ranks (visuals.h gives the definitions).
 *
 * Per latent s: a top list of at most top_k (score, image) pairs under the total order
 * "higher score first, then lower image" (a min-heap while accumulating, sorted at the
 * end), the number of rows on which s fired, the largest value, and the exact sum of
 * the values as an integer superaccumulator: a float32 is m·2^(e-150) with a 24-bit
 * integer m, so every sum of float32 values is an integer multiple of 2^-149 and fits a
 * fixed-point number of LS_LIMBS 32-bit limbs (held in int64 so that 2^31 additions need
 * no carry). Integer sums do not depend on the order of additions, so 1 rank and N ranks
 * give the same bits; the top lists merge as sets under a total order, which is also
 * order-free.
 */
#ifndef SAEV_VISUALS_LATENT_STATS_H
#define SAEV_VISUALS_LATENT_STATS_H

#include <stdint.h>

#include "comm.h"

#define LS_LIMBS 10 /* 320 bits from 2^-149: float32's range (2^128) plus 2^40 additions */

typedef struct {
    double score;  // the image's score for the latent; -inf: empty slot
    int64_t image; // store position; -1: empty slot
} LsEntry;

typedef struct {
    int S;              // latents
    int top_k;          // entries per list
    LsEntry *top;       // [S, top_k] per latent a min-heap (worst first) of its best images
    int *n_top;         // [S] filled entries of each heap
    int64_t *fired;     // [S] rows on which the latent fired
    float *max_value;   // [S] largest value; -inf before the first
    int64_t *sum;       // [S, LS_LIMBS] exact Σ f over the firing rows, little-endian limbs
    /* per-image scratch */
    float *img_max;     // [S] the current image's largest firing value per latent
    int *touched;       // [S] latents that fired on the current image
    int n_touched;
} LatentStats;

void latent_stats_init(LatentStats *ls, int S, int top_k);
void latent_stats_free(LatentStats *ls);

/* Adds one image: its rows' codes f [n_rows, S] (store position `image`). */
void latent_stats_add_image(LatentStats *ls, const float *f, int n_rows, int64_t image);

/* Combines every rank's statistics on comm in place (collective); afterwards each rank
 * holds the totals and every top list is sorted best first, empty slots last. */
void latent_stats_allreduce(LatentStats *ls, const Comm *comm);

/* The exact sum of latent s rounded to double (deterministic: from the normalized limbs). */
double latent_stats_sum(const LatentStats *ls, int s);

/* Carries every limb into [0, 2^32) but the top one (signed); the representation is then unique. */
void latent_stats_normalize(LatentStats *ls);

#endif
