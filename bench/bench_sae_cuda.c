/*
 * bench_sae_cuda.c: SAE training steps on the GPU, tokens/s at saev's sizes (d 768,
 * d_sae 12288, batch 16384, tf32), next to the same step written in PyTorch
 * (bench/sae_cuda_torch_peer.py) measured in the same run.
 *
 * Variants: relu + L1; top-k 32 + AuxK (k_aux 512, dead threshold 0 so every latent
 * counts as dead: AuxK's worst case); top-k 32 + Matryoshka (10 fixed prefixes).
 * Timing: 2 warm-up steps, then --steps steps between two synchronizations (the steps
 * themselves never wait for the host). Data: uniform random rows already on the GPU.
 *
 * usage: bench_sae_cuda [--steps 10] [--batch 16384] [--no-peer]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/sae_cuda.h"
#include "log.h"

int main(int argc, char **argv) {
    int steps = 10, B = 16384, peer = 1, d = 768, S = 12288;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-peer")) peer = 0;
        else saev_usage_fail("usage: bench_sae_cuda [--steps N] [--batch N] [--no-peer]");
    }
    if (steps < 1 || B < 1) saev_usage_fail("--steps and --batch must be positive");
    log_init(0, 1);
    if (cuda_gpu_count() < 1) {
        printf("skipped: no GPU\n");
        return 0;
    }
    char dev[256], err[512];
    cuda_device_describe(dev, sizeof dev);
    printf("bench_sae_cuda on %s: d %d, d_sae %d, batch %d, tf32, %d timed steps\n", dev, d, S, B, steps);
    float *hx = mallocCheck((size_t)B * d * sizeof(float));
    uint64_t z = 5;
    for (size_t i = 0; i < (size_t)B * d; i++) {
        z = z * 6364136223846793005ULL + 1442695040888963407ULL;
        hx[i] = (float)((z >> 40) / 16777216.0 * 2.0 - 1.0);
    }
    float *x = cuda_malloc((size_t)B * d * sizeof(float));
    cuda_upload(x, hx, (size_t)B * d * sizeof(float));
    const char *names[3] = {"relu+L1", "topk32+AuxK", "topk32+Matryoshka10"};
    double ours[3], theirs[3] = {0, 0, 0};
    for (int v = 0; v < 3; v++) {
        SaeCudaConfig c;
        memset(&c, 0, sizeof c);
        c.d_model = d;
        c.d_sae = S;
        c.activation = v == 0 ? SAE_CUDA_RELU : SAE_CUDA_TOPK;
        c.k = 32;
        c.l1_coeff = 4e-4f;
        c.k_aux = v == 1 ? 512 : 0;
        c.aux_alpha = 0.03125f;
        c.dead_threshold_tokens = v == 1 ? 0 : 10000000;
        c.normalize_w_dec = 1;
        c.remove_parallel_grads = 1;
        c.n_prefixes = v == 2 ? 10 : 1;
        for (int j = 0; j < c.n_prefixes; j++) c.prefixes[j] = (int)((long)S * (j + 1) / c.n_prefixes);
        SaeCuda sae;
        if (sae_cuda_create(&sae, &c, B, CUDA_TF32, err, sizeof err)) saev_fail("%s", err);
        float *p = mallocCheck(sae.n_params * sizeof(float));
        for (size_t i = 0; i < sae.n_params; i++) {
            z = z * 6364136223846793005ULL + 1442695040888963407ULL;
            p[i] = (float)(((z >> 40) / 16777216.0 - 0.5) * 0.05);
        }
        sae_cuda_set_params(&sae, p);
        free(p);
        for (int i = 0; i < 2; i++) sae_cuda_train_step(&sae, x, B, B, 1e-4f, 1.0, NULL, 0);
        cuda_stream_sync(sae.stream);
        double t0 = saev_now();
        for (int i = 0; i < steps; i++) sae_cuda_train_step(&sae, x, B, B, 1e-4f, 1.0, NULL, 0);
        cuda_stream_sync(sae.stream);
        ours[v] = (double)B * steps / (saev_now() - t0);
        SaeCudaMetrics m;
        sae_cuda_metrics(&sae, B, &m);
        printf("saev-c %-20s %.3f M tokens/s (loss %.4g, L0 %.1f, finite %d, gemm fallbacks %ld)\n", names[v], ours[v] / 1e6,
               m.loss, m.l0, m.finite, cuda_gemm_fallbacks(sae.gemm));
        fflush(stdout);
        sae_cuda_destroy(&sae);
    }
    if (peer) {
        char cmd[1024];
        const char *root = getenv("SAEV_ROOT");
        snprintf(cmd, sizeof cmd, "python3 %s/bench/sae_cuda_torch_peer.py %d %d", root ? root : ".", B, steps);
        FILE *f = popen(cmd, "r");
        char line[512];
        while (f && fgets(line, sizeof line, f)) {
            int v;
            double r;
            fputs(line, stdout);
            if (sscanf(line, "torch %d %lf", &v, &r) == 2 && v >= 0 && v < 3) theirs[v] = r;
        }
        if (f) pclose(f);
    }
    printf("\n| SAE step (tf32) | saev-c M tok/s | torch M tok/s | x |\n|---|---|---|---|\n");
    for (int v = 0; v < 3; v++)
        printf("| %s | %.3f | %.3f | %.2f |\n", names[v], ours[v] / 1e6, theirs[v] / 1e6, theirs[v] > 0 ? ours[v] / theirs[v] : 0);
    cuda_free(x);
    free(hx);
    return 0;
}
