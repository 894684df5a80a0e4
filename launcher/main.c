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
    {"train", cmd_train, "train one SAE or a sweep of them (saev-worker train on N ranks)"},
    {"inspect", cmd_inspect, "print what a safetensors file (model, checkpoint, tensors) or store holds"},
};
static const int n_commands = (int)(sizeof commands / sizeof commands[0]);

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
