/*
 * checkpoint.h: SAE checkpoints and training state on disk (safetensors, tmp + rename).
 *
 * Checkpoint (what users load): W_enc [d,S], b_enc [S], W_dec [S,d], b_dec [d] (saev's
 * names and shapes), `threshold` [1] for batch-top-k; metadata `saev_sae_config` (the
 * SAE config as JSON, with the input scale `data_scale`), `step`, `format`.
 * Training state (for resume, beside it): the flat parameters, Adam m and v, the dead
 * counters (I64 [S]), `threshold`, `data_scale`, and `counters` I64 [4] = step, Adam t,
 * loader position, prefix RNG state: everything a resumed run needs to continue bit for
 * bit.
 */
#ifndef SAEV_SAE_CHECKPOINT_H
#define SAEV_SAE_CHECKPOINT_H

#include <stdint.h>

#include "sae.h"

/* The SAE config as JSON text (malloc'd) and back; NULL or a message. */
char *sae_config_to_json(const SaeConfig *c, float data_scale);
const char *sae_config_from_json(const char *json, SaeConfig *c, float *data_scale);

void sae_checkpoint_write(const Sae *sae, const char *path, int64_t step);
/* Creates `sae` from a checkpoint (config from its metadata) for batches of max_batch.
 * Everything is checked before anything is allocated: the metadata (integers in range,
 * a known activation), then that every tensor is there with the shape the config implies
 * and a float dtype. Returns 0, or -1 with "<path>: <problem>" in err (sae untouched). */
int sae_checkpoint_read(Sae *sae, const char *path, int max_batch, char *err, size_t errlen);
/* Same; a failure ends the job with that message (status 2). */
void sae_checkpoint_load(Sae *sae, const char *path, int max_batch);
/* Loads W_enc, b_enc, W_dec, b_dec (and threshold if present) into an existing SAE; a
 * missing tensor or another shape ends the job naming the file and the tensor. */
void sae_load_weights(Sae *sae, const char *path);

typedef struct {
    int64_t step;       // steps done
    int64_t position;   // loader rows consumed
    uint64_t prefix_rng; // Matryoshka sampler state
} SaeTrainCounters;

void sae_state_write(const Sae *sae, const char *path, const SaeTrainCounters *cnt);
/* Restores parameters, optimizer, dead counters, threshold, data scale and counters. */
void sae_state_read(Sae *sae, const char *path, SaeTrainCounters *cnt);

#endif
