/*
 * cmd_intervene.c: `saev intervene [CONFIG.yaml] [--set intervene.KEY=VALUE ...] [--ranks N]`:
 * edit SAE latents at the SAE's layer (the error term kept), run the later ViT blocks and
 * report a probe's predictions before and after, or run the faithfulness study
 * (intervene.study: faithfulness). Store, SAE, probe, model and edits are checked here
 * first, so bad input fails with status 2 before any rank starts; then
 * `saev-worker intervene` runs on run.ranks ranks.
 */
#include "commands.h"
#include "intervene/intervene.h"
#include "mpirun.h"
#include "saev_config.h"

static const char usage[] =
    "usage: saev intervene [CONFIG.yaml] [--set intervene.KEY=VALUE ...] [--ranks N]\n\n"
    "For each image of intervene.images (store positions; default: the probe's held-out\n"
    "images) reads the SAE's layer from the store intervene.data, applies intervene.edits\n"
    "to the SAE's codes of the patches (\"S=V\" sets latent S to V, \"S*A\" scales it; then\n"
    "@all, @class:C or @patches:I,J,...), keeps the SAE's error term, runs the ViT of\n"
    "model.path from there to the probe's block and writes the probe's predictions before\n"
    "and after (intervene.json, predictions.safetensors; the activations with\n"
    "intervene.save_activations). With intervene.study: faithfulness, per class suppresses\n"
    "its best-F1 latent (intervene.latent_f1) on its patches next to a random latent and a\n"
    "random direction of the same norm: study.json, study.md, study.svg. Example:\n"
    "  saev intervene cfg.yaml --set 'intervene.edits=[\"12=0@class:3\"]'\n"
    "Keys: see `saev config --reference` (intervene.*).\n";

static void check_intervene(SaevConfig *cfgs, int n, const char *config_path) {
    (void)config_path;
    const SaevConfig *c = saev_config_one_or_die(cfgs, n, "intervene", "train");
    VitSpec spec;
    model_section_to_spec(&c->model, &spec);
    intervene_check_or_die(&c->intervene, &spec);
}

int cmd_intervene(int argc, char **argv) { return launch_config_stage("intervene", usage, 0, check_intervene, argc, argv); }
