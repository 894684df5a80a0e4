/*
 * stage_evaluate.c: `saev-worker evaluate [CONFIG.yaml] [--set evaluate.KEY=VALUE ...]`,
 * run on every rank: reads the config's `evaluate:` section and runs the evaluation
 * (common/sae/evaluate.c); each rank takes a contiguous share of the rows, rank 0 writes
 * eval.json and eval.svg per checkpoint.
 */
#include "check.h"
#include "comm.h"
#include "device.h"
#include "log.h"
#include "sae/evaluate.h"
#include "saev_config.h"
#include "stages.h"

int stage_evaluate(int argc, char **argv) {
    CfgArgs args;
    SaevConfig *cfgs;
    int n_cfg = saev_config_argv_or_die(argc, argv, "evaluate", &args, &cfgs);
    saev_config_one_or_die(cfgs, n_cfg, "evaluate", "train"); /* evaluate.sae lists the sweep's checkpoints */
    if (device_setting_or_die(cfgs[0].run.device, "run.device") == DEVICE_CUDA) log_warn("evaluate runs on the CPU (OpenBLAS); run.device=cuda is ignored");
    evaluate_run(&cfgs[0].evaluate, comm_world());
    saev_config_free(cfgs, n_cfg);
    cfg_args_free(&args);
    return 0;
}
