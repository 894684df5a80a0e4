/*
 * stage_intervene.c: `saev-worker intervene [CONFIG.yaml] [--set intervene.KEY=VALUE ...]`,
 * run on every rank: reads the `intervene:` section (and `model:` for the ViT that runs
 * the blocks after the SAE's layer) and runs the edits or the faithfulness study
 * (common/intervene/); images are split across ranks, rank 0 writes the outputs.
 */
#include <string.h>

#include "check.h"
#include "intervene/intervene.h"
#include "saev_config.h"
#include "stages.h"

int stage_intervene(int argc, char **argv) {
    CfgArgs args;
    cfg_args_parse_or_die(argc, argv, NULL, &args);
    if (args.argc > 1) saev_usage_fail("intervene: unexpected argument \"%s\"", args.argv[1]);
    SaevConfig *cfgs;
    int n_cfg = saev_config_load_or_die(&args, &cfgs);
    const SaevConfig *c = saev_config_one_or_die(cfgs, n_cfg, "intervene", "train");
    VitSpec spec;
    model_section_to_spec(&c->model, &spec);
    VitDevice device = model_section_device(&c->model);
    if (c->run.device && strcmp(c->run.device, "auto")) device = !strcmp(c->run.device, "cuda") ? VIT_DEVICE_CUDA : VIT_DEVICE_CPU;
    intervene_run(&c->intervene, &spec, device);
    saev_config_free(cfgs, n_cfg);
    cfg_args_free(&args);
    return 0;
}
