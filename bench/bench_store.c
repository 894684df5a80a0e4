/*
 * bench_store.c: write rate of the activation store next to `dd`'s sequential write rate
 * into the same folder, in the same run.
 *
 *   bench_store [DIR] [--images N] [--dtype float32|float16|bfloat16]
 *
 * Shape: ViT-B/16 at 224 px, one layer (197 tokens x 768, float32: 605 KB per image);
 * N = 1000 images by default (0.6 GB). The driver (this program started plainly) runs
 *   1. dd if=/dev/zero of=DIR/dd.bin bs=8M count=... conv=fdatasync  (same byte count)
 *   2. mpirun -np 1 bench_store --worker ...   and   3. mpirun -np 2 bench_store --worker ...
 * three times each, interleaved, and prints the median GB/s (the shared disk is noisy). A worker fills one batch with values once, then times
 * store_open_write .. store_finish (which flushes and syncs, like dd's fdatasync) of
 * batches of 64 images split across its ranks, so only storage is measured.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "comm.h"
#include "fsutil.h"
#include "log.h"
#include "store/store.h"

enum { TOKENS = 197, D_MODEL = 768, BATCH = 64 };

static double run_command(const char *cmd) {
    double t0 = saev_now();
    int rc = system(cmd);
    if (rc != 0) saev_fail("benchmark command failed (%d): %s", rc, cmd);
    return saev_now() - t0;
}

static int worker(const char *dir, int64_t n_images, StoreDtype dt) {
    comm_init(NULL, NULL);
    const Comm *world = comm_world();
    int rank = world->rank, size = world->size;
    int layers[1] = {10};
    StoreMeta m = {0};
    m.model_family = "clip";
    m.model = "bench";
    m.checkpoint_digest = "none";
    m.n_layers = 1;
    m.layers = layers;
    m.has_cls = 1;
    m.n_patches = TOKENS - 1;
    m.n_tokens = TOKENS;
    m.d_model = D_MODEL;
    m.dtype = dt;
    m.n_images = n_images;
    m.images_per_file = 0;
    m.preprocessing = "none";
    m.dataset = "synthetic";
    m.config_yaml = "";
    size_t row = (size_t)TOKENS * D_MODEL;
    float *acts = mallocCheck(sizeof(float) * row * BATCH);
    for (size_t i = 0; i < row * BATCH; i++) acts[i] = (float)(i % 1001) / 64.0f;
    comm_barrier(world);
    double t0 = saev_now();
    Store *s = store_open_write(dir, &m, 0, world);
    StorePlan plan;
    store_plan(s, rank, size, BATCH, &plan);
    for (int64_t w = 0; w < plan.n_writes_all; w++) {
        int64_t lo, n;
        store_plan_piece(&plan, BATCH, w, &lo, &n);
        store_write(s, n, plan.images + lo, acts, NULL, NULL, NULL, NULL);
    }
    store_finish(s);
    comm_barrier(world);
    double secs = saev_now() - t0;
    if (rank == 0) printf("%.6f\n", secs);
    store_plan_free(&plan);
    free(acts);
    comm_finalize();
    return 0;
}

int main(int argc, char **argv) {
    const char *dir = "bench-store-tmp", *dtype = "float32";
    int64_t n_images = 1000;
    int is_worker = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--images") && i + 1 < argc) n_images = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) dtype = argv[++i];
        else if (!strcmp(argv[i], "--worker")) is_worker = 1;
        else if (argv[i][0] != '-') dir = argv[i];
        else saev_usage_fail("usage: bench_store [DIR] [--images N] [--dtype float32|float16|bfloat16]");
    }
    StoreDtype dt;
    if (store_dtype_parse(dtype, &dt) || n_images <= 0) saev_usage_fail("bench_store: bad --dtype or --images");
    if (is_worker) return worker(dir, n_images, dt);

    log_init(0, 1);
    double bytes = (double)n_images * TOKENS * D_MODEL * (double)store_dtype_size(dt);
    char cmd[8192], self[4096];
    self_exe_path(self, sizeof self);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    run_command(cmd);
    long long count = (long long)(bytes / (8 << 20)) + 1;
    double dd_bytes = (double)count * (8 << 20);
    /* This folder's disk is shared and its rate swings from run to run: repeat each
     * measurement, interleaved, and report the median. */
    enum { REPS = 3 };
    double secs[3][REPS];
    for (int r = 0; r < REPS; r++) {
        /* Deleting (ext4 with discard) and earlier dirty pages stay out of every timing. */
        snprintf(cmd, sizeof cmd, "rm -rf '%s/store' && sync", dir);
        run_command(cmd);
        snprintf(cmd, sizeof cmd, "dd if=/dev/zero of='%s/dd.bin' bs=8M count=%lld conv=fdatasync status=none", dir, count);
        secs[0][r] = run_command(cmd);
        snprintf(cmd, sizeof cmd, "rm -f '%s/dd.bin' && sync", dir);
        run_command(cmd);
        for (int np = 1; np <= 2; np++) {
            snprintf(cmd, sizeof cmd,
                     "rm -rf '%s/store' && sync && OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np %d --oversubscribe '%s' '%s/store' --worker --images %lld --dtype %s",
                     dir, np, self, dir, (long long)n_images, dtype);
            FILE *p = popen(cmd, "r");
            libcCheckPtr(p, cmd);
            double t = -1;
            char line[256];
            while (fgets(line, sizeof line, p)) t = atof(line);
            if (pclose(p) != 0 || t <= 0) saev_fail("benchmark worker failed: %s", cmd);
            secs[np][r] = t;
        }
    }
    for (int w = 0; w < 3; w++) /* sort each row for the median */
        for (int i = 0; i < REPS; i++)
            for (int j = i + 1; j < REPS; j++)
                if (secs[w][j] < secs[w][i]) { double t = secs[w][i]; secs[w][i] = secs[w][j]; secs[w][j] = t; }
    printf("store write benchmark: %lld images x %d tokens x %d (%s), %.2f GB, into %s; median of %d\n", (long long)n_images, TOKENS,
           D_MODEL, dtype, bytes / 1e9, dir, REPS);
    printf("  %-24s %7.3f GB/s  (%.2f s; range %.2f-%.2f s) conv=fdatasync\n", "dd sequential write", dd_bytes / secs[0][REPS / 2] / 1e9,
           secs[0][REPS / 2], secs[0][0], secs[0][REPS - 1]);
    for (int np = 1; np <= 2; np++) {
        char label[64];
        snprintf(label, sizeof label, "saev-c store, %d rank%s", np, np == 1 ? "" : "s");
        printf("  %-24s %7.3f GB/s  (%.2f s; range %.2f-%.2f s) collective parallel HDF5, fsync\n", label, bytes / secs[np][REPS / 2] / 1e9,
               secs[np][REPS / 2], secs[np][0], secs[np][REPS - 1]);
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s/store'", dir);
    run_command(cmd);
    return 0;
}
