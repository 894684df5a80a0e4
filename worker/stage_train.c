/*
 * stage_train.c: `saev-worker train CONFIG.yaml [--set key.path=value ...]`, on every rank.
 *
 * Every rank reads the same config (the YAML file plus the --set overrides, as
 * `saev train` checked them), expands train.sweep into its K grid configs and trains
 * them together on the same batches (common/sae/train.c).
 */
#include <stdio.h>

#include "check.h"
#include "comm.h"
#include "saev_config.h"
#include "sae/train.h"
#include "stages.h"

int stage_train(int argc, char **argv) {
    CfgArgs args;
    SaevConfig *cfgs;
    int K = saev_config_argv_or_die(argc, argv, "train", &args, &cfgs);
    TrainJob job;
    saev_config_train_job(cfgs, K, &job);
    char msg[1024];
    const char *bad = train_prepare(&job, msg, sizeof msg);
    if (bad) saev_usage_fail("%s: %s", args.config_path ? args.config_path : "(no config)", bad);
    train_run(&job, comm_world());
    saev_config_train_job_free(&job);
    saev_config_free(cfgs, K);
    cfg_args_free(&args);
    return 0;
}
