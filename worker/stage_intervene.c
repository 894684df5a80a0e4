/*
 * stage_intervene.c: `saev-worker intervene [CONFIG.yaml] [--set intervene.KEY=VALUE ...]`,
 * run on every rank: reads the `intervene:` section (and `model:` for the ViT that runs
 * the blocks after the SAE's layer) and runs the edits or the faithfulness study
 * (common/intervene/); images are split across ranks, rank 0 writes the outputs.
 */
#include "check.h"
#include "comm.h"
#include "device.h"
#include "intervene/intervene.h"
#include "saev_config.h"
#include "stages.h"
#ifdef SAEV_CUDA
#include "cuda/cuda_util.h"
#endif

int stage_intervene(int argc, char **argv) {
    CfgArgs args;
    SaevConfig *cfgs;
    int n_cfg = saev_config_argv_or_die(argc, argv, "intervene", &args, &cfgs);
    const SaevConfig *c = saev_config_one_or_die(cfgs, n_cfg, "intervene", "train");
    VitSpec spec;
    model_section_to_spec(&c->model, &spec);
    Device device = model_section_device(&c->model);
    Device run_device = device_setting_or_die(c->run.device, "run.device");
    if (run_device != DEVICE_AUTO) device = run_device;
#ifdef SAEV_CUDA
    if (device != DEVICE_CPU) cuda_use_local_device(comm_world()->local_rank); /* before the weights go to a GPU */
#endif
    intervene_run(&c->intervene, &spec, device, comm_world());
    saev_config_free(cfgs, n_cfg);
    cfg_args_free(&args);
    return 0;
}
