/*
 * stage_activations.c: `saev-worker activations CONFIG [--set ...]`, run on every rank:
 * reads the config and records the activations (common/store/activations.c).
 */
#include <stdlib.h>

#include "check.h"
#include "comm.h"
#include "device.h"
#include "config_args.h"
#include "saev_config.h"
#include "stages.h"
#include "store/activations.h"

int stage_activations(int argc, char **argv) {
    CfgArgs args;
    SaevConfig *cfgs;
    int n_cfg = saev_config_argv_or_die(argc, argv, "activations", &args, &cfgs);
    const SaevConfig *c = saev_config_one_or_die(cfgs, n_cfg, "activations", "train");
    Device device = device_setting_or_die(c->run.device, "run.device");
    char *config_yaml = cfg_dump(&saev_config_schema, c);
    ActivationsSections s = {.device = device, .data = &c->data, .preprocess = &c->preprocess, .loader = &c->loader,
                             .model = &c->model, .activations = &c->activations, .config_yaml = config_yaml};
    int complete = activations_run(&s, comm_world());
    free(config_yaml);
    saev_config_free(cfgs, n_cfg);
    cfg_args_free(&args);
    return complete ? 0 : 1;
}
