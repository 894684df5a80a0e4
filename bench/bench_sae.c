/*
 * bench_sae.c: SAE training-step throughput (tokens/s) at saev's sizes on this machine,
 * next to the same step in PyTorch (bench/bench_sae_torch.py, Debian python3-torch) run
 * in the same invocation with the same thread count.
 *
 * usage: bench_sae [STEPS] [D] [S] [B] [VARIANTS]   (defaults 2 timed steps after one
 *        warm-up, d=768, S=12288, B=4096, VARIANTS relu,topk,matryoshka).
 *        Threads: OPENBLAS_NUM_THREADS (torch gets the same). SAEV_BENCH_PEER=0 skips
 *        the torch peer (for profiling our step alone). SAEV_BENCH_REPEATS=R (default 3)
 *        alternates ours and torch R times per variant and reports the medians, since
 *        the machine is shared and single runs swing with the other jobs' load.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

#include <cblas.h>

#include "check.h"
#include "log.h"
#include "sae/rng.h"
#include "sae/sae.h"
#include "sae/sae_step.h"

/* Tokens/s over all timed steps; *best gets the fastest single step's. */
static double run_ours(SaeConfig *c, const float *x, int B, int steps, double *best) {
    Sae sae;
    sae_create(&sae, c, B);
    sae_init_kaiming(&sae, 1);
    uint64_t rng = 3;
    SaeStepMetrics m;
    sae_train_step(&sae, x, B, B, 4e-4f, 1.0, &rng, &m); /* warm-up */
    double t = saev_now(), fastest = 1e30;
    for (int s = 0; s < steps; s++) {
        double t0 = saev_now();
        sae_train_step(&sae, x, B, B, 4e-4f, 1.0, &rng, &m);
        double ts = saev_now() - t0;
        if (ts < fastest) fastest = ts;
    }
    double dt = saev_now() - t;
    *best = B / fastest;
    sae_destroy(&sae);
    return (double)steps * B / dt;
}

static int cmp_double(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

static double median(double *v, int n) {
    qsort(v, n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double run_torch(const char *variant, int d, int S, int B, int steps, int threads, double *best) {
    char cmd[1024];
    const char *dir = getenv("SAEV_ROOT") ? getenv("SAEV_ROOT") : ".";
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/bench/bench_sae_torch.py %s %d %d %d %d %d", dir, variant, d, S, B, steps, threads);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char name[64];
    double tps = -1;
    *best = -1;
    if (fscanf(p, "%63s %lf %lf", name, &tps, best) != 3) tps = *best = -1;
    pclose(p);
    return tps;
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 2, d = argc > 2 ? atoi(argv[2]) : 768, S = argc > 3 ? atoi(argv[3]) : 12288,
        B = argc > 4 ? atoi(argv[4]) : 4096;
    const char *only = argc > 5 ? argv[5] : "relu,topk,matryoshka";
    int with_peer = !(getenv("SAEV_BENCH_PEER") && !strcmp(getenv("SAEV_BENCH_PEER"), "0"));
    int threads = openblas_get_num_threads(); /* ours: OpenBLAS and the SAE pool; torch gets the same */
    const char *rep = getenv("SAEV_BENCH_REPEATS");
    int repeats = rep && atoi(rep) > 0 ? atoi(rep) : 3;
    if (repeats > 32) repeats = 32;
    printf("SAE training step, d=%d S=%d batch=%d, %d timed steps after 1 warm-up, %d threads (ours and torch), median of %d alternating runs\n",
           d, S, B, steps, threads, repeats);
    printf("environment:");
    int any = 0;
    for (char **e = environ; *e; e++)
        if (!strncmp(*e, "OPENBLAS_", 9) || !strncmp(*e, "OMP_", 4)) { printf(" %s", *e); any = 1; }
    printf("%s\n", any ? "" : " (no OPENBLAS_* / OMP_* variables set)");
    float *x = mallocCheck((size_t)B * d * sizeof(float));
    uint64_t rng = 9;
    for (size_t e = 0; e < (size_t)B * d; e++) x[e] = (float)(2 * rng_uniform(&rng) - 1);
    const char *names[3] = {"relu", "topk", "matryoshka"};
    const char *labels[3] = {"relu+L1", "top-k(32)", "top-k(32)+Matryoshka(10)"};
    printf("%-26s %14s %14s %8s %14s %14s %8s\n", "variant", "saev-c tok/s", "torch tok/s", "ratio", "saev-c best", "torch best", "ratio");
    printf("(tok/s: median over runs of all timed steps; best: median over runs of the fastest step)\n");
    fflush(stdout);
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
        double ours_v[32], peer_v[32], ours_b[32], peer_b[32];
        for (int r = 0; r < repeats; r++) {
            ours_v[r] = run_ours(&c, x, B, steps, &ours_b[r]);
            peer_v[r] = peer_b[r] = -1;
            if (with_peer) peer_v[r] = run_torch(names[v], d, S, B, steps, threads, &peer_b[r]);
        }
        double ours = median(ours_v, repeats), peer = median(peer_v, repeats);
        double ours_best = median(ours_b, repeats), peer_best = median(peer_b, repeats);
        printf("%-26s %14.0f %14.0f %7.2fx %14.0f %14.0f %7.2fx\n", labels[v], ours, peer, peer > 0 ? ours / peer : 0, ours_best, peer_best,
               peer_best > 0 ? ours_best / peer_best : 0);
        fflush(stdout);
    }
    free(x);
    return 0;
}
