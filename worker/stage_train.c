/*
 * stage_train.c: `saev-worker train KEY=VALUE... [--member KEY=VALUE...]...`
 *
 * Trains one SAE, or a sweep of K SAEs on the same batches. Keys are those of the
 * `train:` section (dotted inside it: lr=1e-3, sae.k=32, sae.aux=none,
 * sae.matryoshka.prefixes=[8,32,64]); the launcher resolves the YAML file, --set
 * overrides and the sweep grid and passes every resolved config this way. Keys before
 * the first --member are common to all members; each --member starts one sweep member.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "sae/train.h"
#include "stages.h"

int stage_train(int argc, char **argv) {
    int K = 0;
    for (int i = 1; i < argc; i++) K += !strcmp(argv[i], "--member");
    int n = K > 0 ? K : 1;
    TrainConfig *cfgs = callocCheck(n, sizeof(TrainConfig));
    for (int m = 0; m < n; m++) train_config_defaults(&cfgs[m]);
    int member = -1; /* -1: common keys */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) {
            printf("usage: saev-worker train KEY=VALUE... [--member KEY=VALUE...]...\n");
            return 0;
        }
        if (!strcmp(argv[i], "--member")) { member++; continue; }
        for (int m = 0; m < n; m++) {
            if (member >= 0 && m != member) continue;
            const char *err = train_config_set(&cfgs[m], argv[i]);
            if (err) saev_usage_fail("train: %s", err);
        }
    }
    for (int m = 0; m < n; m++) {
        if (!cfgs[m].data) saev_usage_fail("train: train.data is required");
        if (!cfgs[m].out_dir) saev_usage_fail("train: train.out_dir is required");
    }
    train_run(cfgs, n);
    for (int m = 0; m < n; m++) train_config_free(&cfgs[m]);
    free(cfgs);
    return 0;
}
