/*
 * stage_visuals.c: `saev-worker visuals [CONFIG.yaml] [--set visuals.KEY=VALUE ...]`, run
 * on every rank: reads the config's `visuals:` section (and `data:`, which names the
 * images when the store's own record should not be used) and runs the stage
 * (common/visuals/visuals.c) on the world (comm_world).
 */
#include "check.h"
#include "comm.h"
#include "device.h"
#include "log.h"
#include "saev_config.h"
#include "stages.h"
#include "visuals/visuals.h"

int stage_visuals(int argc, char **argv) {
    CfgArgs args;
    SaevConfig *cfgs;
    int n_cfg = saev_config_argv_or_die(argc, argv, "visuals", &args, &cfgs);
    const SaevConfig *c = saev_config_one_or_die(cfgs, n_cfg, "visuals", "train"); /* visuals.sae lists the sweep's checkpoints */
    if (!c->visuals.enabled) saev_usage_fail("visuals: the config has no visuals: section (give one, or --set visuals.data=STORE)");
    if (device_setting_or_die(c->run.device, "run.device") == DEVICE_CUDA) log_warn("visuals runs on the CPU (OpenBLAS); run.device=cuda is ignored");
    visuals_run(&c->visuals, &c->data, comm_world());
    saev_config_free(cfgs, n_cfg);
    cfg_args_free(&args);
    return 0;
}
