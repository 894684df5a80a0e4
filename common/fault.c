/*
 * fault.c: SAEV_FAULT, parsed once (see fault.h).
 */
#include "fault.h"

#include <mpi.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "log.h"

static const char *const point_names[FAULT_N_POINTS] = {
    [FAULT_TRAIN_KILL_AFTER_STEPS] = "train.kill_after_steps",
    [FAULT_TRAIN_LOADER_DELAY_MS] = "train.loader_delay_ms",
    [FAULT_STORE_KILL_AFTER_WRITES] = "store.kill_after_writes",
};

static int64_t armed[FAULT_N_POINTS];
static pthread_once_t parsed = PTHREAD_ONCE_INIT;

static int world_rank(void) {
    int init = 0, fin = 0, rank = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    return rank;
}

static void parse(void) {
    for (int i = 0; i < FAULT_N_POINTS; i++) armed[i] = -1;
    const char *env = getenv("SAEV_FAULT");
    if (!env || !*env) return;
    char *text = strdupCheck(env), *save = NULL;
    for (char *item = strtok_r(text, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        if (!eq) saev_usage_fail("SAEV_FAULT: \"%s\" is not point=N[@rank]", item);
        *eq = 0;
        int p = 0;
        while (p < FAULT_N_POINTS && strcmp(item, point_names[p])) p++;
        if (p == FAULT_N_POINTS)
            saev_usage_fail("SAEV_FAULT: unknown point \"%s\" (train.kill_after_steps, train.loader_delay_ms, store.kill_after_writes)", item);
        char *end;
        long long n = strtoll(eq + 1, &end, 10), rank = -1;
        if (end == eq + 1 || n < 0) saev_usage_fail("SAEV_FAULT: %s wants a number >= 0, got \"%s\"", item, eq + 1);
        if (*end == '@') {
            char *r = end + 1;
            rank = strtoll(r, &end, 10);
            if (end == r || rank < 0) saev_usage_fail("SAEV_FAULT: %s: \"%s\" is not @rank", item, r - 1);
        }
        if (*end) saev_usage_fail("SAEV_FAULT: %s: trailing \"%s\"", item, end);
        if (rank < 0 || rank == world_rank()) armed[p] = n;
    }
    free(text);
}

int64_t fault_value(FaultPoint p) {
    pthread_once(&parsed, parse);
    return armed[p];
}

void fault_kill_at(FaultPoint p, int64_t count) {
    if (fault_value(p) < 0 || count != armed[p]) return;
    log_warn("SAEV_FAULT %s=%lld: killing this process (test fault injection)", point_names[p], (long long)armed[p]);
    fflush(NULL);
    raise(SIGKILL);
}

void fault_delay(FaultPoint p) {
    if (fault_value(p) > 0) usleep((useconds_t)(armed[p] * 1000));
}
