/*
 * train.h: the SAE training driver (what `saev-worker train` runs on every rank).
 *
 * K configs (a sweep, or one) train together on the same batches: one loader, and for
 * each SAE its own parameters, optimizer, checkpoint, training state and metrics under
 * its own directory: train.out_dir when K = 1, else train.out_dir/sae-<hash>, the hash
 * (FNV-1a) of the member's resolved train: section without the keys that do not change
 * its weights (out_dir, resume, checkpoint_every, metrics_every, eval) and without
 * precision (like run.device, how it computes; the same for every member of a sweep). A member's
 * directory therefore does not depend on which other configs it trains with, so the
 * groups of a Slurm job array never collide and a resubmitted group finds its state.
 *
 * train.out_dir defaults to <run.out_dir>/<run.name> (filled in by saev_config_train_job).
 * The SAEs train on run.device (auto: cuda when the node has a GPU) through
 * sae_backend.h, in train.precision on cuda.
 *
 * Each directory holds config.resolved.yaml (that SAE's whole resolved config),
 * sae.safetensors (the checkpoint, rewritten every train.checkpoint_every steps and at
 * the end), train_state.safetensors (for resume), metrics.jsonl (one line per logged
 * step) and, once the SAE is finished, metrics.json (the final summary).
 */
#ifndef SAEV_SAE_TRAIN_H
#define SAEV_SAE_TRAIN_H

#include <stddef.h>

#include "comm.h"
#include "train_config.h"

/* What training reads: the sweep's train: sections and the two things it takes from
 * elsewhere. saev_config_train_job (saev_config.h) makes one from loaded configs. */
typedef struct {
    const TrainConfig *const *members; // [K] the sweep's train: sections, out_dir filled in
    int K;                             // SAEs trained together (1 without a sweep)
    const char *device;                // run.device: auto | cpu | cuda
    char *const *resolved_yaml;        // [K] each member's whole resolved config (config.resolved.yaml)
} TrainJob;

/* Checks what training needs beyond the schema: train.data given and present, the run
 * length, that the K configs of a sweep share one batch stream and precision, and the
 * run.device / train.precision pairs refused on any node (bf16; tf32 on cpu). NULL, or
 * a message in buf. */
const char *train_prepare(const TrainJob *job, char *buf, size_t len);
/* Trains the job's K SAEs to the end (or fails the job with a message). Collective over
 * comm's ranks (data parallel: each takes its share of every batch). */
void train_run(const TrainJob *job, const Comm *comm);
/* Directory of sweep member i (malloc'd). */
char *train_member_dir(const TrainJob *job, int i);

#endif
