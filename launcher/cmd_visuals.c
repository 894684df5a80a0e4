/*
 * cmd_visuals.c: `saev visuals [CONFIG.yaml] [--set visuals.KEY=VALUE ...] [--ranks N]`:
 * what each latent of trained SAEs responds to. The checkpoints, the store and the
 * latent ids are checked here first, so bad input fails with status 2 before any rank
 * starts or anything is written; then `saev-worker visuals` runs on run.ranks ranks.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "commands.h"
#include "mpirun.h"
#include "saev_config.h"
#include "visuals/visuals.h"

static const char usage[] =
    "usage: saev visuals [CONFIG.yaml] [--set visuals.KEY=VALUE ...] [--ranks N]\n\n"
    "Encodes every row of the activation store visuals.data with each SAE of visuals.sae\n"
    "(checkpoint files, or run directories: every sae.safetensors under them) and writes,\n"
    "per SAE, into visuals/ beside the checkpoint (or visuals.out): top.safetensors (the\n"
    "top_k images of every latent, frequencies, mean and max values), summary.svg, and for\n"
    "the rendered latents latents/<s>/ with each top image as the model saw it, its patch\n"
    "heatmap (and patch labels for segmentation stores) and latent.json; index.json last.\n"
    "Images are re-read from the data set the store records (or the config's data:).\n"
    "Example:\n"
    "  saev visuals --set 'visuals.sae=[runs/a]' --set visuals.data=acts/train --ranks 2\n"
    "Keys: visuals.layer, visuals.tokens, visuals.top_k, visuals.n_render, visuals.latents,\n"
    "visuals.log_freq_range, visuals.log_value_range, visuals.seed, visuals.batch_size,\n"
    "visuals.out (see `saev config --reference`).\n";

static void check_visuals(SaevConfig *cfgs, int n, const char *config_path) {
    const SaevConfig *c = saev_config_one_or_die(cfgs, n, "visuals", "train");
    if (!c->visuals.enabled)
        saev_usage_fail("%s: no visuals: section (give one, or --set visuals.data=STORE)", config_path ? config_path : "config");
    visuals_check_or_die(&c->visuals);
}

/* No config needed: `--set visuals.sae=[...] --set visuals.data=...` is enough. */
int cmd_visuals(int argc, char **argv) { return launch_config_stage("visuals", usage, 0, check_visuals, argc, argv); }
