/*
 * bench_sae_cuda.c: SAE training steps on the GPU through the trainer's dispatch layer
 * (common/sae/sae_backend.h, device cuda, tf32), tokens/s at saev's sizes (d 768, d_sae
 * 12288, batch 16384), next to the same step written in PyTorch
 * (bench/sae_cuda_torch_peer.py) measured in the same run.
 *
 * Variants: relu + L1; top-k 32 + AuxK (k_aux 512, dead threshold 0 so every latent
 * counts as dead: AuxK's worst case); top-k 32 + Matryoshka (10 fixed prefixes);
 * batch-top-k 32. Timing: 2 warm-up steps, then --steps steps, each as the trainer runs
 * it, pipelined (step t begun, batch t+1 submitted, step t ended with its metrics). Data:
 * uniform random rows in the pinned staging buffer.
 *
 * Also printed, for the scaling model (docs/scaling.md): the step time in ms, the
 * host-to-device staging rate of a batch through pinned memory, and with --allreduce the
 * time of one NCCL all-reduce of the flat gradient (2·d·S + S + d floats) on a
 * communicator of one (MPI singleton; run it on its own, as scripts/gpu-check.sh does).
 *
 * usage: bench_sae_cuda [--steps 10] [--batch 16384] [--no-peer] [--allreduce]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "cuda/sae_cuda.h"
#include "log.h"
#include "sae/sae_backend.h"

#define N_VARIANTS 4

/* Mean time of `reps` all-reduces of the flat gradient of saev's SAE on the NCCL communicator. */
static void bench_allreduce(const Comm *comm, int d, int S) {
    comm_gpu_init(comm);
    size_t n = (size_t)2 * d * S + S + d;
    float *g = cuda_malloc(n * sizeof(float));
    void *stream = cuda_stream_create();
    for (int i = 0; i < 3; i++) comm_allreduce_device(comm, g, n, COMM_F32, COMM_SUM, stream);
    cuda_stream_sync(stream);
    int reps = 20;
    double t0 = saev_now();
    for (int i = 0; i < reps; i++) comm_allreduce_device(comm, g, n, COMM_F32, COMM_SUM, stream);
    cuda_stream_sync(stream);
    double t = (saev_now() - t0) / reps;
    printf("allreduce: %zu floats (%.1f MB) on %d rank(s): %.3f ms, algorithm bandwidth %.1f GB/s\n", n, n * 4 / 1e6,
           comm->size, t * 1e3, n * 4 / t / 1e9);
    printf("| all-reduce of the flat gradient (%d GPU) | %.3f ms |\n", comm->size, t * 1e3);
    cuda_free(g);
    cuda_stream_destroy(stream);
}

int main(int argc, char **argv) {
    int steps = 10, B = 16384, peer = 1, allreduce = 0, d = 768, S = 12288;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-peer")) peer = 0;
        else if (!strcmp(argv[i], "--allreduce")) allreduce = 1;
        else saev_usage_fail("usage: bench_sae_cuda [--steps N] [--batch N] [--no-peer] [--allreduce]");
    }
    if (steps < 1 || B < 1) saev_usage_fail("--steps and --batch must be positive");
    if (allreduce) comm_init(&argc, &argv);
    else log_init(0, 1);
    if (cuda_gpu_count() < 1) {
        printf("skipped: no GPU\n");
        if (allreduce) comm_finalize();
        return 0;
    }
    if (allreduce) {
        bench_allreduce(comm_world(), d, S);
        comm_gpu_finalize(comm_world());
        comm_finalize();
        return 0;
    }
    char dev[256], err[512];
    cuda_device_describe(dev, sizeof dev);
    printf("bench_sae_cuda on %s: d %d, d_sae %d, batch %d, tf32, %d timed steps through sae_backend\n", dev, d, S, B, steps);
    SaeBackendSpec spec = {DEVICE_CUDA, PRECISION_TF32};
    const char *names[N_VARIANTS] = {"relu+L1", "topk32+AuxK", "topk32+Matryoshka10", "batchtopk32"};
    double ours[N_VARIANTS], ms[N_VARIANTS], theirs[N_VARIANTS] = {0, 0, 0, 0};
    uint64_t z = 5;
    double stage_gbs = 0;
    for (int v = 0; v < N_VARIANTS; v++) {
        SaeConfig c;
        sae_config_default(&c, d, S);
        c.activation = v == 0 ? SAE_RELU : v == 3 ? SAE_BATCH_TOPK : SAE_TOPK;
        c.k = 32;
        c.l1_coeff = 4e-4f;
        c.k_aux = v == 1 ? 512 : 0;
        c.dead_threshold_tokens = v == 1 ? 0 : 10000000;
        c.n_prefixes = v == 2 ? 10 : 1;
        for (int j = 0; j < c.n_prefixes; j++) c.prefixes[j] = (int)((long)S * (j + 1) / c.n_prefixes);
        SaeBackend be;
        if (sae_backend_create(&be, &c, B, &spec, comm_self(), err, sizeof err)) saev_fail("%s", err);
        Sae *h = sae_backend_host(&be);
        for (size_t i = 0; i < h->n_params; i++) {
            z = z * 6364136223846793005ULL + 1442695040888963407ULL;
            h->params[i] = (float)(((z >> 40) / 16777216.0 - 0.5) * 0.05);
        }
        sae_backend_push(&be);
        SaeBatch batch;
        sae_batch_init(&batch, DEVICE_CUDA, B, d);
        for (int slot = 0; slot < 2; slot++) { /* fill both pinned slots once */
            float *rows = sae_batch_rows(&batch);
            for (size_t i = 0; i < (size_t)B * d; i++) {
                z = z * 6364136223846793005ULL + 1442695040888963407ULL;
                rows[i] = (float)((z >> 40) / 16777216.0 * 2.0 - 1.0);
            }
            SaeBackend *one[1] = {&be};
            double t0 = saev_now();
            sae_batch_submit(&batch, B, one, 1);
            cuda_stream_sync(((SaeCudaStage *)batch.stage)->copy_stream);
            if (v == 0 && slot == 1) stage_gbs = (double)B * d * 4 / (saev_now() - t0) / 1e9;
            if (slot == 0) { /* consume it so the next submit is legal */
                float lr = 1e-4f;
                double clip = 1.0;
                uint64_t r = 1, *rp[1] = {&r};
                SaeStepMetrics m;
                sae_sweep_step(one, 1, &batch, B, &lr, &clip, rp, &m);
            }
        }
        SaeBackend *one[1] = {&be};
        float lr = 1e-4f;
        double clip = 1.0;
        uint64_t r = 1, *rp[1] = {&r};
        SaeStepMetrics m;
        sae_sweep_step(one, 1, &batch, B, &lr, &clip, rp, &m);
        /* the trainer's pipelined loop: the next batch's copy is submitted while this step
         * computes (the same pinned rows again: a real host-to-device copy every step) */
        double t0 = saev_now();
        sae_batch_submit(&batch, B, one, 1);
        for (int i = 0; i < steps; i++) {
            sae_sweep_step_begin(one, 1, &batch, B, &lr, &clip, rp);
            if (i + 1 < steps) sae_batch_submit(&batch, B, one, 1);
            sae_sweep_step_end(one, 1, &m);
        }
        double dt = saev_now() - t0;
        ours[v] = (double)B * steps / dt;
        ms[v] = dt / steps * 1e3;
        printf("saev-c %-20s %.3f M tokens/s, %.2f ms/step (loss %.4g, L0 %.1f, finite %d, gemm fallbacks %ld)\n", names[v],
               ours[v] / 1e6, ms[v], m.loss, m.l0, m.finite, cuda_gemm_fallbacks(((SaeCuda *)be.dev)->gemm));
        fflush(stdout);
        sae_batch_free(&batch);
        sae_backend_destroy(&be);
    }
    printf("batch staging (pinned host -> device, %.1f MB): %.1f GB/s\n", (double)B * d * 4 / 1e6, stage_gbs);
    if (peer) {
        char cmd[1024];
        const char *root = getenv("SAEV_ROOT");
        snprintf(cmd, sizeof cmd, "python3 %s/bench/sae_cuda_torch_peer.py %d %d", root ? root : ".", B, steps);
        FILE *f = popen(cmd, "r");
        char line[512];
        while (f && fgets(line, sizeof line, f)) {
            int v;
            double rate;
            fputs(line, stdout);
            if (sscanf(line, "torch %d %lf", &v, &rate) == 2 && v >= 0 && v < N_VARIANTS) theirs[v] = rate;
        }
        if (f) pclose(f);
    }
    printf("\n| SAE step (tf32, batch %d) | saev-c M tok/s | saev-c ms/step | torch M tok/s | x |\n|---|---|---|---|---|\n", B);
    for (int v = 0; v < N_VARIANTS; v++)
        printf("| %s | %.3f | %.2f | %.3f | %.2f |\n", names[v], ours[v] / 1e6, ms[v], theirs[v] / 1e6,
               theirs[v] > 0 ? ours[v] / theirs[v] : 0);
    return 0;
}
