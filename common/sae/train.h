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

#include "saev_config.h"

/* Fills train.out_dir (default <run.out_dir>/<run.name>) and checks what training
 * needs beyond the schema: train.data given and present, the run length, that the K
 * configs of a sweep share one batch stream and precision, and the run.device /
 * train.precision pairs refused on any node (bf16; tf32 on cpu). NULL, or a message in
 * buf. */
const char *train_prepare(SaevConfig *cfgs, int K, char *buf, size_t len);
/* Trains cfgs[0..K) to the end (or fails the job with a message). */
void train_run(const SaevConfig *cfgs, int K);
/* Directory of sweep member i (malloc'd). */
char *train_member_dir(const SaevConfig *cfgs, int K, int i);

#endif
