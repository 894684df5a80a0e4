/*
 * cmd_probe.c: `saev probe [CONFIG.yaml] [--set probe.KEY=VALUE ...] [--ranks N]`: a
 * linear probe on one layer of an activation store (class or per-patch targets,
 * activations or SAE codes as features) and, with probe.sae, the semantic F1 of every
 * latent. The store, layer, target and SAE are checked here first, so bad input fails
 * with status 2 before any rank starts; then `saev-worker probe` runs on run.ranks ranks.
 */
#include "commands.h"
#include "mpirun.h"
#include "probe/probe.h"
#include "saev_config.h"

static const char usage[] =
    "usage: saev probe [CONFIG.yaml] [--set probe.KEY=VALUE ...] [--ranks N]\n\n"
    "Fits a multinomial logistic regression with L2 (L-BFGS in float64 to max |gradient|\n"
    "<= probe.tol, data-parallel over ranks) from one layer of the store probe.data to the\n"
    "images' labels (probe.target: class; probe.pool: cls | mean) or to the patches' labels\n"
    "(probe.target: patch), on the activations or on the codes of probe.sae\n"
    "(probe.features: activations | sae); evaluates it on the held-out images (accuracy,\n"
    "per-class accuracy, confusion matrix, mean IoU for patches). With probe.sae it also\n"
    "scores every latent against every class (precision, recall, F1 of \"fires\" vs \"is\n"
    "the class\"). Writes probe.safetensors, probe.json, confusion.svg and\n"
    "latent_f1.safetensors to probe.out. Example:\n"
    "  saev probe --set probe.data=demo/store-seg --set probe.target=patch --set probe.out=runs/probe\n"
    "Keys: see `saev config --reference` (probe.*).\n";

static void check_probe(SaevConfig *cfgs, int n, const char *config_path) {
    (void)config_path;
    const SaevConfig *c = saev_config_one_or_die(cfgs, n, "probe", "train");
    probe_check_or_die(&c->probe);
}

int cmd_probe(int argc, char **argv) { return launch_config_stage("probe", usage, 0, check_probe, argc, argv); }
