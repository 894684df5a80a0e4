/*
 * cmd_activations.c: `saev activations CONFIG`: record the configured layers of the ViT
 * for every image of the data set into an activation store, on run.ranks ranks.
 */
#include "commands.h"
#include "mpirun.h"

static const char usage[] =
    "usage: saev activations CONFIG.yaml [--set key.path=value ...] [--ranks N] [--device cpu|cuda|auto]\n\n"
    "Runs the ViT (model:) over every image of the data set (data:, preprocess:) and writes\n"
    "the requested layers (model.layers) into the HDF5 store activations.out, split across\n"
    "N ranks. A rerun after a crash continues where the store left off; a rerun with a\n"
    "different model or setting is refused, naming the setting.\n";

int cmd_activations(int argc, char **argv) { return launch_config_stage("activations", usage, 1, NULL, argc, argv); }
