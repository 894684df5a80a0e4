/*
 * cmd_train.c: `saev train [--ranks N] --set train.KEY=VALUE... [--member train.KEY=VALUE...]...`
 *
 * Starts `saev-worker train` on N ranks (launcher/mpirun.c) with the resolved train keys.
 * Keys given before the first --member apply to every sweep member; each --member opens
 * one member of a sweep trained together on the same batches.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "commands.h"
#include "mpirun.h"
#include "sae/train_config.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: saev train [--ranks N] --set train.KEY=VALUE... [--member --set train.KEY=VALUE...]...\n\n"
            "Trains one SAE (or a sweep: each --member starts one) on a safetensors file holding\n"
            "`activations` [N,d]. Required keys: train.data, train.out_dir. Example:\n"
            "  saev train --ranks 2 --set train.data=acts.safetensors --set train.out_dir=runs/a \\\n"
            "    --set train.steps=1000 --set train.sae.k=32 --member --set train.lr=3e-4 --member --set train.lr=1e-3\n");
}

int cmd_train(int argc, char **argv) {
    int ranks = 1;
    char **args = callocCheck((size_t)argc + 1, sizeof(char *));
    int n = 0;
    TrainConfig probe;
    train_config_defaults(&probe);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
        if (!strcmp(argv[i], "--ranks") && i + 1 < argc) {
            ranks = atoi(argv[++i]);
            if (ranks < 1) saev_usage_fail("--ranks: expected a positive integer, got \"%s\"", argv[i]);
        } else if (!strcmp(argv[i], "--set") && i + 1 < argc) {
            const char *kv = argv[++i];
            if (strncmp(kv, "train.", 6)) saev_usage_fail("--set %s: `saev train` takes train.* keys", kv);
            /* Check the key and value here so a typo fails before any rank starts. */
            const char *err = train_config_set(&probe, kv);
            if (err) saev_usage_fail("--set %s", err);
            args[n++] = (char *)kv + 6;
        } else if (!strcmp(argv[i], "--member")) {
            args[n++] = "--member";
        } else {
            usage(stderr);
            saev_usage_fail("saev train: unexpected argument \"%s\" (YAML files are read once the config layer is merged; pass keys with --set)", argv[i]);
        }
    }
    train_config_free(&probe);
    int rc = launch_worker(ranks, "train", n, args);
    free(args);
    return rc;
}
