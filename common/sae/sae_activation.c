/*
 * sae_activation.c: the names of the SAE activations (sae.h), one table for the config
 * schema, checkpoints and reports.
 */
#include <string.h>

#include "sae.h"

static const char *const activation_names[] = {[SAE_RELU] = "relu", [SAE_TOPK] = "top-k", [SAE_BATCH_TOPK] = "batch-top-k"};

const char *sae_activation_name(SaeActivation a) {
    return (unsigned)a < sizeof activation_names / sizeof *activation_names ? activation_names[a] : "?";
}

int sae_activation_parse(const char *name, SaeActivation *out) {
    for (unsigned i = 0; i < sizeof activation_names / sizeof *activation_names; i++)
        if (!strcmp(name, activation_names[i])) {
            *out = (SaeActivation)i;
            return 0;
        }
    return -1;
}
