/*
 * stage_probe.c: `saev-worker probe [CONFIG.yaml] [--set probe.KEY=VALUE ...]`, run on
 * every rank: reads the config's `probe:` section and runs the probe (common/probe/probe.c):
 * each rank holds a share of the training images, gradients are all-reduced, rank 0
 * writes probe.safetensors, probe.json, confusion.svg and latent_f1.safetensors.
 */
#include "check.h"
#include "comm.h"
#include "device.h"
#include "log.h"
#include "probe/probe.h"
#include "saev_config.h"
#include "stages.h"

int stage_probe(int argc, char **argv) {
    CfgArgs args;
    SaevConfig *cfgs;
    int n_cfg = saev_config_argv_or_die(argc, argv, "probe", &args, &cfgs);
    saev_config_one_or_die(cfgs, n_cfg, "probe", "train");
    if (device_setting_or_die(cfgs[0].run.device, "run.device") == DEVICE_CUDA) log_warn("probe runs on the CPU (float64 OpenBLAS); run.device=cuda is ignored");
    probe_run(&cfgs[0].probe, comm_world());
    saev_config_free(cfgs, n_cfg);
    cfg_args_free(&args);
    return 0;
}
