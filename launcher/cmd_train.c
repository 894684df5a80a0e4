/*
 * cmd_train.c: `saev train CONFIG.yaml [--set key.path=value ...] [--ranks N]`.
 *
 * Loads and checks the whole config here (schema, sweep, train_prepare: data present,
 * run length, one batch stream for a sweep; and opens the data: a store's layer, tokens
 * and completeness), so a bad config exits with status
 * 2 before any rank starts or anything is written; then starts `saev-worker train` with
 * the same arguments on run.ranks ranks (launcher/mpirun.c).
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "commands.h"
#include "mpirun.h"
#include "sae/data_source.h"
#include "sae/train.h"
#include "saev_config.h"

static const char usage[] =
    "usage: saev train CONFIG.yaml [--set key.path=value ...] [--ranks N]\n\n"
    "Trains the SAE of the config's train: section on train.data (an activation store\n"
    "directory with train.layer, or a safetensors file holding `activations` [N,d]), split\n"
    "across N ranks. A sweep (train.sweep: {lr: [3e-4, 1e-3], sae.l1_coeff: [4e-4, 8e-4]})\n"
    "trains its grid together on the same batches, each SAE in train.out_dir/sae-<hash>.\n"
    "Outputs (train.out_dir, default <run.out_dir>/<run.name>): config.resolved.yaml,\n"
    "sae.safetensors, train_state.safetensors, metrics.jsonl, and metrics.json when done.\n"
    "train.resume=true continues from the training state. Keys: saev config --reference.\n";

static void check_train(SaevConfig *cfgs, int K, const char *config_path) {
    TrainJob job;
    saev_config_train_job(cfgs, K, &job);
    char msg[1024];
    const char *bad = train_prepare(&job, msg, sizeof msg);
    if (bad) saev_usage_fail("%s: %s", config_path, bad);
    saev_config_train_job_free(&job);
    /* Opening the data checks it here: a store's layer, tokens and completeness. */
    data_source_close(data_source_open("train", cfgs[0].train.data, cfgs[0].train.layer, cfgs[0].train.tokens));
}

int cmd_train(int argc, char **argv) { return launch_config_stage("train", usage, 1, check_train, argc, argv); }
