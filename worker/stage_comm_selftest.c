/*
 * stage_comm_selftest.c: `saev-worker comm-selftest [--fail-rank R]`, used by the
 * communication tests. Every rank contributes known values; the results are checked
 * against closed forms (sum of 0..size-1, max = size-1, ...). With --fail-rank R, rank R
 * stops with an error after the first barrier and the job must end non-zero with that
 * rank's message instead of hanging in the next collective.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "comm.h"
#include "log.h"
#include "stages.h"

int stage_comm_selftest(int argc, char **argv) {
    int fail_rank = -1;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--fail-rank") && i + 1 < argc) fail_rank = atoi(argv[++i]);
    const Comm *world = comm_world();
    int r = world->rank, n = world->size;
    comm_barrier(world);
    if (r == fail_rank) saev_fail("rank %d failing on purpose (--fail-rank)", r);
    enum { N = 1000 };
    float f[N];
    double d[N];
    int64_t q[N];
    for (int i = 0; i < N; i++) { f[i] = (float)(r + i); d[i] = 0.5 * r + i; q[i] = (int64_t)r * 1000000000000LL + i; }
    comm_allreduce(world, f, N, COMM_F32, COMM_SUM);
    comm_allreduce(world, d, N, COMM_F64, COMM_MAX);
    comm_allreduce(world, q, N, COMM_I64, COMM_SUM);
    double rsum = (double)n * (n - 1) / 2; /* sum over ranks of r */
    int bad = 0;
    for (int i = 0; i < N; i++) {
        bad += f[i] != (float)(rsum + (double)n * i);
        bad += d[i] != 0.5 * (n - 1) + i;
        bad += q[i] != (int64_t)rsum * 1000000000000LL + (int64_t)n * i;
    }
    double m[3] = {(double)r, 1.0, 2.0 * r};
    comm_allreduce(world, m, 3, COMM_F64, COMM_MEAN);
    bad += m[0] != (double)(n - 1) / 2 || m[1] != 1.0 || m[2] != (double)(n - 1);
    char msg[64] = "";
    if (r == 0) snprintf(msg, sizeof msg, "broadcast from rank 0 of %d", n);
    comm_bcast(world, msg, sizeof msg, 0);
    char want[64];
    snprintf(want, sizeof want, "broadcast from rank 0 of %d", n);
    bad += strcmp(msg, want) != 0;
    if (!comm_all_true(world, bad == 0)) saev_fail("comm self-test: %d mismatches on this rank", bad);
    if (r == 0) printf("comm-selftest ok: %d ranks, local rank %d of %d\n", n, world->local_rank, world->local_size);
    return 0;
}
