/*
 * main.c: `saev`, the user's command. Dispatches to the command table; commands that need
 * many ranks start saev-worker under mpirun (launcher/mpirun.c), the rest run here.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "commands.h"
#include "log.h"

static const Command commands[] = {
    {"run", cmd_run, "the whole pipeline of one config: activations, train, evaluate, visuals"},
    {"activations", cmd_activations, "record ViT activations of every image into an HDF5 store (many ranks)"},
    {"config", cmd_config, "check a config and print it resolved (defaults, --set, one document per sweep point)"},
    {"train", cmd_train, "train one SAE or a sweep of them (saev-worker train on N ranks)"},
    {"evaluate", cmd_evaluate, "metrics of trained SAEs on held-out activations (L0, L1, MSE, NMSE, dead/dense latents) as JSON + SVG"},
    {"serve", cmd_serve, "the viewer: a web page to browse latents and run images through the ViT and SAE live (127.0.0.1)"},
    {"visuals", cmd_visuals, "per-latent statistics, top images and patch heatmaps of trained SAEs (PNG, JSON, SVG, safetensors)"},
    {"probe", cmd_probe, "linear probes (class or per patch) on activations or SAE codes; semantic F1 of every latent against every class"},
    {"intervene", cmd_intervene, "edit latents at the SAE's layer, run the rest of the ViT, a probe's predictions before/after; the faithfulness study"},
    {"inspect", cmd_inspect, "print what a safetensors file (model, checkpoint, tensors) or store holds"},
    {"preprocess", cmd_preprocess, "decode and preprocess one image (clip|dinov2|siglip) into a safetensors tensor"},
    {"demo-data", cmd_demo_data, "build the demo data sets (Fashion-MNIST folder + ADE20K-style segmentation) from Debian packages"},
    {"import-sae", cmd_import_sae, "convert a saev sae.pt (either era) into a saev-c checkpoint"},
    {"export-saev", cmd_export_saev, "write an activation store as saev's protocol-2.1 shards"},
    {"import-saev", cmd_import_saev, "read saev's protocol-2.1 shards into an activation store"},
    {"forward", cmd_forward, "one ViT forward on a pixel tensor file, writing every block's output"},
    {"make-model", cmd_make_model, "write a ViT checkpoint with random weights (transformers layout + config.json)"},
    {"submit", cmd_submit, "write the Slurm script for a command and sbatch it; sweeps become job arrays"},
    {"status", cmd_status, "summarize a run's or job array's progress from its outputs"},
};
static const int n_commands = (int)(sizeof commands / sizeof commands[0]);

int launcher_has_command(const char *name) {
    for (int i = 0; i < n_commands; i++)
        if (!strcmp(name, commands[i].name)) return 1;
    return 0;
}

static void usage(FILE *out) {
    fprintf(out,
            "saev-c %s: sparse autoencoders for vision transformers\n\n"
            "usage: saev COMMAND [CONFIG.yaml] [--set key.path=value ...] [--ranks N] [--device cpu|cuda|auto]\n\n"
            "commands:\n",
            SAEV_VERSION);
    for (int i = 0; i < n_commands; i++) fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n`saev COMMAND --help` describes one command.\n");
}

int main(int argc, char **argv) {
    log_init(0, 1);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return argc < 2 ? SAEV_EXIT_USAGE : 0;
    }
    if (!strcmp(argv[1], "--version")) { printf("saev-c %s\n", SAEV_VERSION); return 0; }
    for (int i = 0; i < n_commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "saev: unknown command \"%s\"\n\n", argv[1]);
    usage(stderr);
    return SAEV_EXIT_USAGE;
}
