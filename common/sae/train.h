/*
 * train.h: the SAE training driver (what `saev-worker train` runs on every rank).
 *
 * K configs (a sweep, or one) train together on the same batches: one loader, and for
 * each SAE its own parameters, optimizer, checkpoint, training state and metrics under
 * its own directory (out_dir when K = 1, out_dir/<i> for sweep member i).
 */
#ifndef SAEV_SAE_TRAIN_H
#define SAEV_SAE_TRAIN_H

#include "train_config.h"

/* Trains cfgs[0..K) to the end (or fails the job with a message). */
void train_run(const TrainConfig *cfgs, int K);
/* Directory of sweep member i (malloc'd). */
char *train_member_dir(const TrainConfig *cfgs, int K, int i);

#endif
