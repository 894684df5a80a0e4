/*
 * cmd_evaluate.c: `saev evaluate [CONFIG.yaml] [--set evaluate.KEY=VALUE ...] [--ranks N]`:
 * metrics of trained SAEs on held-out activations. The checkpoints and the data are
 * checked here first (exist, are SAE checkpoints, widths agree), so bad input fails with
 * status 2 before any rank starts or anything is written; then `saev-worker evaluate`
 * runs on run.ranks ranks with the same arguments.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "commands.h"
#include "mpirun.h"
#include "sae/evaluate.h"
#include "saev_config.h"

static const char usage[] =
    "usage: saev evaluate [CONFIG.yaml] [--set evaluate.KEY=VALUE ...] [--ranks N]\n\n"
    "Runs each SAE of evaluate.sae (checkpoint files, or run directories: every\n"
    "sae.safetensors under them) over the held-out rows of evaluate.data (a safetensors\n"
    "file with `activations` [N,d], or a store with evaluate.layer) and writes eval.json\n"
    "(L0, L1, MSE, NMSE, explained variance, dead / almost-dead / dense latent counts,\n"
    "per-latent frequencies and mean values, histograms) and eval.svg (frequency and\n"
    "mean-value histograms) beside each checkpoint, or under evaluate.out. Example:\n"
    "  saev evaluate --set 'evaluate.sae=[runs/a]' --set evaluate.data=held_out.safetensors --ranks 2\n"
    "Keys: evaluate.first_row, evaluate.max_tokens (0: all), evaluate.batch_size,\n"
    "evaluate.hist_bins, evaluate.out (see `saev config --reference`).\n";

static void check_evaluate(SaevConfig *cfgs, int n, const char *config_path) {
    (void)config_path;
    saev_config_one_or_die(cfgs, n, "evaluate", "train"); /* evaluate.sae lists the sweep's checkpoints */
    EvalPlan plan;
    eval_plan_or_die(&cfgs[0].evaluate, &plan);
    eval_plan_free(&plan);
}

/* No config needed: `--set evaluate.sae=[...] --set evaluate.data=...` is enough. */
int cmd_evaluate(int argc, char **argv) { return launch_config_stage("evaluate", usage, 0, check_evaluate, argc, argv); }
