/*
 * cmd_import_sae.c: `saev import-sae sae.pt --out sae.safetensors [--data-scale S]` turns
 * a checkpoint written by saev (either era; common/sae/saev_pt.h) into saev-c's
 * checkpoint: the same tensor names, the config in the metadata, saev's header kept
 * verbatim as `saev_header`. Every command that loads a checkpoint also takes the sae.pt
 * directly; importing is for keeping a safetensors copy.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "commands.h"
#include "sae/saev_pt.h"

int cmd_import_sae(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    float data_scale = 1.0f;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: saev import-sae SAE.pt --out SAE.safetensors [--data-scale S]\n\n"
                   "Reads an SAE checkpoint written by saev (the preprint's or the current format) and writes\n"
                   "saev-c's checkpoint. S multiplies inputs before the SAE (default 1): for a preprint SAE\n"
                   "trained with scale_norm, S = 1 / the scalar saev computed (it is not in the sae.pt).\n");
            return 0;
        }
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--data-scale") && i + 1 < argc) {
            char *end;
            data_scale = strtof(argv[++i], &end);
            if (*end || !isfinite(data_scale) || data_scale <= 0) saev_usage_fail("import-sae: --data-scale must be a positive number (got %s)", argv[i]);
        } else if (argv[i][0] == '-') saev_usage_fail("import-sae: unknown option %s", argv[i]);
        else if (!in) in = argv[i];
        else saev_usage_fail("import-sae: too many arguments (usage: saev import-sae SAE.pt --out SAE.safetensors)");
    }
    if (!in || !out) saev_usage_fail("usage: saev import-sae SAE.pt --out SAE.safetensors [--data-scale S]");
    SaevPt pt;
    char err[1024];
    if (saev_pt_read(in, &pt, err, sizeof err)) saev_usage_fail("import-sae: %s", err);
    saev_pt_describe(&pt, in, stdout);
    saev_pt_free(&pt);
    saev_pt_import(in, out, data_scale);
    printf("imported %s into %s (data_scale %g)\n", in, out, data_scale);
    return 0;
}
