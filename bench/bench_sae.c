/*
 * bench_sae.c: SAE training-step throughput (tokens/s) at saev's sizes on this machine,
 * next to the same step in PyTorch (bench/bench_sae_torch.py, Debian python3-torch) run
 * in the same invocation with the same thread count.
 *
 * usage: bench_sae [STEPS] [D] [S] [B] [VARIANTS]   (defaults 2 timed steps after one
 *        warm-up, d=768, S=12288, B=4096, VARIANTS relu,topk,matryoshka).
 *        Threads: OPENBLAS_NUM_THREADS (torch gets the same). SAEV_BENCH_PEER=0 skips
 *        the torch peer (for profiling our step alone).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "log.h"
#include "sae/rng.h"
#include "sae/sae.h"
#include "sae/sae_step.h"

static double run_ours(SaeConfig *c, const float *x, int B, int steps) {
    Sae sae;
    sae_create(&sae, c, B);
    sae_init_kaiming(&sae, 1);
    uint64_t rng = 3;
    SaeStepMetrics m;
    sae_train_step(&sae, x, B, B, 4e-4f, 1.0, &rng, &m); /* warm-up */
    double t = saev_now();
    for (int s = 0; s < steps; s++) sae_train_step(&sae, x, B, B, 4e-4f, 1.0, &rng, &m);
    double dt = saev_now() - t;
    sae_destroy(&sae);
    return (double)steps * B / dt;
}

static double run_torch(const char *variant, int d, int S, int B, int steps, int threads) {
    char cmd[1024];
    const char *dir = getenv("SAEV_ROOT") ? getenv("SAEV_ROOT") : ".";
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/bench/bench_sae_torch.py %s %d %d %d %d %d", dir, variant, d, S, B, steps, threads);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char name[64];
    double tps = -1;
    if (fscanf(p, "%63s %lf", name, &tps) != 2) tps = -1;
    pclose(p);
    return tps;
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 2, d = argc > 2 ? atoi(argv[2]) : 768, S = argc > 3 ? atoi(argv[3]) : 12288,
        B = argc > 4 ? atoi(argv[4]) : 4096;
    const char *only = argc > 5 ? argv[5] : "relu,topk,matryoshka";
    int with_peer = !(getenv("SAEV_BENCH_PEER") && !strcmp(getenv("SAEV_BENCH_PEER"), "0"));
    const char *thr = getenv("OPENBLAS_NUM_THREADS");
    int threads = thr ? atoi(thr) : 2;
    printf("SAE training step, d=%d S=%d batch=%d, %d timed steps, %d threads; OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s\n", d, S, B, steps,
           threads, getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "(unset)",
           getenv("OPENBLAS_L2_SIZE") ? getenv("OPENBLAS_L2_SIZE") : "(unset)");
    float *x = mallocCheck((size_t)B * d * sizeof(float));
    uint64_t rng = 9;
    for (size_t e = 0; e < (size_t)B * d; e++) x[e] = (float)(2 * rng_uniform(&rng) - 1);
    const char *names[3] = {"relu", "topk", "matryoshka"};
    const char *labels[3] = {"relu+L1", "top-k(32)", "top-k(32)+Matryoshka(10)"};
    printf("%-26s %14s %14s %8s\n", "variant", "saev-c tok/s", "torch tok/s", "ratio");
    for (int v = 0; v < 3; v++) {
        if (!strstr(only, names[v])) continue;
        SaeConfig c;
        sae_config_default(&c, d, S);
        c.activation = v == 0 ? SAE_RELU : SAE_TOPK;
        c.k = 32;
        c.k_aux = 0;
        if (v == 2) {
            c.n_prefixes = 10;
            for (int i = 0; i < 10; i++) c.prefixes[i] = (int)((int64_t)S * (i + 1) / 10);
        }
        double ours = run_ours(&c, x, B, steps);
        double peer = with_peer ? run_torch(names[v], d, S, B, steps, threads) : -1;
        printf("%-26s %14.0f %14.0f %7.2fx\n", labels[v], ours, peer, peer > 0 ? ours / peer : 0);
        fflush(stdout);
    }
    free(x);
    return 0;
}
