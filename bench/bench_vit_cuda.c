/*
 * bench_vit_cuda.c: CUDA ViT forward, images/s at batch 256 and 224 px, next to PyTorch
 * (transformers CLIPVisionModel, sdpa, output_hidden_states=True) measured in the same run.
 *
 * Models: CLIP ViT-B/16 and ViT-L/14 sizes with random weights (uniform ±0.02, LayerNorm
 * weights 1: what `saev make-model` draws matters nothing for speed). Modes fp32, tf32,
 * bf16; for each, the whole forward (the last block's output copied to pinned host memory)
 * and the forward stopped at layer -2. Timing: one warm-up batch, then the median of
 * --iters batches, each synchronized (vit_forward returns with the output on the host).
 * The peer, bench/vit_cuda_torch_peer.py under `python3` (torch with CUDA), prints its
 * own figures, which are shown beside ours with the ratio.
 *
 * usage: bench_vit_cuda [--batch 256] [--iters 5] [--models b16,l14] [--no-peer]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/vit_cuda.h"
#include "log.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void random_params(Vit *vit, uint64_t seed) {
    for (size_t i = 0; i < vit->n_params; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        vit->param_memory[i] = (float)(((seed >> 40) / 16777216.0 - 0.5) * 0.04);
    }
    size_t D = vit->cfg.d_model, L = vit->cfg.n_layers;
    float *ones[] = {vit->params.pre_ln_w, vit->params.ln1_w, vit->params.ln2_w, vit->params.final_ln_w};
    size_t lens[] = {D, L * D, L * D, D};
    for (int t = 0; t < 4; t++)
        for (size_t i = 0; ones[t] && i < lens[t]; i++) ones[t][i] = 1.0f;
}

/* images/s: median over iters synchronized forwards */
static double time_forward(Vit *vit, const float *px, int B, int hidden, int iters, float *out) {
    vit_cuda_forward(vit, px, B, 224, 224, &hidden, 1, out); /* warm-up: buffers, plans, weights */
    double *t = mallocCheck(iters * sizeof(double));
    for (int i = 0; i < iters; i++) {
        double t0 = saev_now();
        vit_cuda_forward(vit, px, B, 224, 224, &hidden, 1, out);
        t[i] = saev_now() - t0;
    }
    qsort(t, iters, sizeof(double), cmp_double);
    double med = t[iters / 2];
    free(t);
    return B / med;
}

int main(int argc, char **argv) {
    int B = 256, iters = 5, peer = 1;
    const char *models = "b16,l14";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--models") && i + 1 < argc) models = argv[++i];
        else if (!strcmp(argv[i], "--no-peer")) peer = 0;
        else saev_usage_fail("usage: bench_vit_cuda [--batch N] [--iters N] [--models b16,l14] [--no-peer]");
    }
    if (B < 1 || iters < 1) saev_usage_fail("--batch and --iters must be positive");
    log_init(0, 1);
    if (cuda_gpu_count() < 1) {
        printf("skipped: no GPU\n");
        return 0;
    }
    char dev[256], err[1024];
    cuda_device_describe(dev, sizeof dev);
    printf("bench_vit_cuda on %s, batch %d, 224 px, median of %d\n", dev, B, iters);
    size_t px_n = (size_t)B * 3 * 224 * 224;
    float *px = vit_cuda_host_alloc(px_n);
    uint64_t z = 99;
    for (size_t i = 0; i < px_n; i++) {
        z = z * 6364136223846793005ULL + 1442695040888963407ULL;
        px[i] = (float)((z >> 40) / 16777216.0 * 4.0 - 2.0);
    }
    const char *presets[2] = {"vit-b-16", "vit-l-14"}, *keys[2] = {"b16", "l14"};
    double ours[2][3][2] = {{{0}}};
    for (int m = 0; m < 2; m++) {
        if (!strstr(models, keys[m])) continue;
        VitConfig cfg;
        if (vit_preset_config(&cfg, VIT_CLIP, presets[m], err, sizeof err)) saev_fail("%s", err);
        Vit vit;
        memset(&vit, 0, sizeof vit);
        vit_alloc_params(&vit, &cfg);
        vit.device = DEVICE_CPU;
        random_params(&vit, 7 + m);
        if (vit_cuda_set_device(&vit, DEVICE_CUDA, err, sizeof err)) saev_fail("%s", err);
        size_t out_n = (size_t)B * vit_tokens_out(&cfg, 224, 224) * cfg.d_model;
        float *out = vit_cuda_host_alloc(out_n);
        for (int p = 0; p < PRECISION_N; p++) {
            vit_cuda_set_precision(&vit, p);
            ours[m][p][0] = time_forward(&vit, px, B, cfg.n_layers, iters, out);     /* all blocks */
            ours[m][p][1] = time_forward(&vit, px, B, cfg.n_layers - 1, iters, out); /* layer -2 */
            printf("saev-c %s %s: all blocks %.0f img/s, to layer -2 %.0f img/s\n", presets[m],
                   precision_name(p), ours[m][p][0], ours[m][p][1]);
            fflush(stdout);
        }
        vit_cuda_host_free(out);
        vit_cuda_release(&vit);
        vit_free(&vit);
    }
    double theirs[2][3][2] = {{{0}}};
    if (peer) {
        char cmd[1024];
        const char *root = getenv("SAEV_ROOT");
        snprintf(cmd, sizeof cmd, "python3 %s/bench/vit_cuda_torch_peer.py %d %d %s", root ? root : ".", B, iters, models);
        FILE *f = popen(cmd, "r");
        char line[512];
        while (f && fgets(line, sizeof line, f)) {
            char model[32], prec[16];
            double all, m2;
            fputs(line, stdout);
            if (sscanf(line, "torch %31s %15s %lf %lf", model, prec, &all, &m2) == 4) {
                int mi = strstr(model, "l14") ? 1 : 0;
                int pi = !strcmp(prec, "fp32") ? 0 : !strcmp(prec, "tf32") ? 1 : 2;
                theirs[mi][pi][0] = all;
                theirs[mi][pi][1] = m2;
            }
        }
        if (f) pclose(f);
    }
    printf("\n| model | mode | saev-c all | torch all | x | saev-c to -2 | torch to -2 | x |\n|---|---|---|---|---|---|---|---|\n");
    for (int m = 0; m < 2; m++)
        for (int p = 0; p < PRECISION_N; p++) {
            if (ours[m][p][0] == 0) continue;
            double r0 = theirs[m][p][0] > 0 ? ours[m][p][0] / theirs[m][p][0] : 0;
            double r1 = theirs[m][p][1] > 0 ? ours[m][p][1] / theirs[m][p][1] : 0;
            printf("| %s | %s | %.0f | %.0f | %.2f | %.0f | %.0f | %.2f |\n", presets[m], precision_name(p),
                   ours[m][p][0], theirs[m][p][0], r0, ours[m][p][1], theirs[m][p][1], r1);
        }
    cuda_host_free(px);
    return 0;
}
