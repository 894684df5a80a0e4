/*
 * cmd_import_sae.c: `saev import-sae sae.pt --out sae.safetensors [--data-scale S]` turns
 * a checkpoint written by saev (either era; common/sae/saev_pt.h) into saev-c's
 * checkpoint: the same tensor names, the config in the metadata, saev's header kept
 * verbatim as `saev_header`. Every command that loads a checkpoint also takes the sae.pt
 * directly; importing keeps a safetensors copy and folds in the preprint's data scaling
 * (--scale-mean, --scale-norm), which its sae.pt does not hold.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "commands.h"
#include "sae/saev_pt.h"

int cmd_import_sae(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *mean_path = NULL, *norm = NULL;
    float data_scale = 1.0f;
    int have_scale = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: saev import-sae SAE.pt --out SAE.safetensors [--scale-mean MEAN.pt] [--scale-norm SCALAR.pt|SCALAR]\n"
                   "                  [--data-scale S]\n\n"
                   "Reads an SAE checkpoint written by saev (the preprint's or the current format) and writes\n"
                   "saev-c's checkpoint. The preprint fed its SAEs (x - mean) / scalar and kept both outside the\n"
                   "sae.pt: give them as saev saved them (torch.save'd tensors, saev's --data.scale-mean /\n"
                   "--data.scale-norm files) or the scalar as a number, and they are folded in (saev-c scales\n"
                   "inputs by 1/scalar and moves the mean into the biases). --data-scale S sets the input\n"
                   "scale directly instead of --scale-norm (default 1).\n");
            return 0;
        }
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--scale-mean") && i + 1 < argc) mean_path = argv[++i];
        else if (!strcmp(argv[i], "--scale-norm") && i + 1 < argc) norm = argv[++i];
        else if (!strcmp(argv[i], "--data-scale") && i + 1 < argc) {
            char *end;
            data_scale = strtof(argv[++i], &end);
            if (*end || !isfinite(data_scale) || data_scale <= 0) saev_usage_fail("import-sae: --data-scale must be a positive number (got %s)", argv[i]);
            have_scale = 1;
        } else if (argv[i][0] == '-') saev_usage_fail("import-sae: unknown option %s", argv[i]);
        else if (!in) in = argv[i];
        else saev_usage_fail("import-sae: too many arguments (usage: saev import-sae SAE.pt --out SAE.safetensors)");
    }
    if (!in || !out) saev_usage_fail("usage: saev import-sae SAE.pt --out SAE.safetensors [--scale-mean MEAN.pt] [--scale-norm SCALAR.pt|SCALAR] [--data-scale S]");
    if (norm && have_scale) saev_usage_fail("import-sae: give --scale-norm or --data-scale, not both");
    char err[1024];
    if (norm) { /* saev's scalar: x is divided by it */
        char *end;
        double scalar = strtod(norm, &end);
        if (*end) {
            int64_t n;
            float *t = torch_tensor_read(norm, &n, err, sizeof err);
            if (!t) saev_usage_fail("import-sae: --scale-norm: %s", err);
            if (n != 1) {
                free(t);
                saev_usage_fail("import-sae: --scale-norm: %s holds %lld values, not one scalar", norm, (long long)n);
            }
            scalar = t[0];
            free(t);
        }
        if (!isfinite(scalar) || scalar <= 0) saev_usage_fail("import-sae: --scale-norm: the scalar must be positive and finite (got %g from %s)", scalar, norm);
        data_scale = (float)(1.0 / scalar);
    }
    SaevPt pt;
    if (saev_pt_read(in, &pt, err, sizeof err)) saev_usage_fail("import-sae: %s", err);
    saev_pt_describe(&pt, in, stdout);
    float *mean = NULL;
    if (mean_path) {
        int64_t n;
        mean = torch_tensor_read(mean_path, &n, err, sizeof err);
        if (!mean) saev_usage_fail("import-sae: --scale-mean: %s", err);
        const char *bad = n != pt.cfg.d_model ? "holds a number of values other than the SAE's d_model" : NULL;
        for (int64_t i = 0; !bad && i < n; i++)
            if (!isfinite(mean[i])) bad = "holds a value that is not finite";
        if (bad) { /* freed first: the exit must not leave a leak for LeakSanitizer to report */
            int d_model = pt.cfg.d_model;
            free(mean);
            saev_pt_free(&pt);
            saev_usage_fail("import-sae: --scale-mean: %s %s (%lld values; d_model %d)", mean_path, bad, (long long)n, d_model);
        }
    }
    saev_pt_free(&pt);
    saev_pt_import(in, out, data_scale, mean);
    printf("imported %s into %s (data_scale %g%s)\n", in, out, data_scale, mean ? ", mean folded into the biases" : "");
    free(mean);
    return 0;
}
