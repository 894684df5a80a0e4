/*
 * cpu_pool.c: the persistent pthread pool behind pool_run (see cpu_pool.h). Workers
 * sleep on a condition variable between jobs; a job is published under the mutex with
 * a generation number, and the caller waits until every worker has finished its slice.
 */
#include <pthread.h>
#include <stdlib.h>

#include "check.h"
#include "cpu_pool.h"

struct CpuPool {
    int n_threads;          /* workers + the calling thread */
    pthread_t *workers;     /* [n_threads - 1] */
    pthread_mutex_t mu;
    pthread_cond_t start;   /* a new job (or shutdown) */
    pthread_cond_t done;    /* the last worker finished */
    uint64_t generation;    /* bumped per job */
    int pending;            /* workers still running the current job */
    int shutdown;
    PoolFn fn;
    void *ctx;
    int64_t n;
};

typedef struct {
    CpuPool *pool;
    int index; /* 1 .. n_threads-1; the caller is slice 0 */
} WorkerArg;

static void slice(int64_t n, int parts, int i, int64_t *b, int64_t *e) {
    *b = n * i / parts;
    *e = n * (i + 1) / parts;
}

static void *worker_main(void *arg_) {
    WorkerArg *arg = arg_;
    CpuPool *p = arg->pool;
    uint64_t seen = 0;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->shutdown && p->generation == seen) pthread_cond_wait(&p->start, &p->mu);
        if (p->shutdown) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        seen = p->generation;
        PoolFn fn = p->fn;
        void *ctx = p->ctx;
        int64_t n = p->n;
        pthread_mutex_unlock(&p->mu);
        int64_t b, e;
        slice(n, p->n_threads, arg->index, &b, &e);
        if (b < e) fn(ctx, b, e);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
        pthread_mutex_unlock(&p->mu);
    }
    free(arg);
    return NULL;
}

CpuPool *pool_create(int n_threads) {
    CpuPool *p = callocCheck(1, sizeof *p);
    p->n_threads = n_threads < 1 ? 1 : n_threads;
    if (pthread_mutex_init(&p->mu, NULL) || pthread_cond_init(&p->start, NULL) || pthread_cond_init(&p->done, NULL))
        saev_fail("cpu pool: cannot initialise pthread mutex/condition variables");
    p->workers = callocCheck((size_t)p->n_threads, sizeof(pthread_t));
    for (int i = 1; i < p->n_threads; i++) {
        WorkerArg *a = mallocCheck(sizeof *a);
        a->pool = p;
        a->index = i;
        if (pthread_create(&p->workers[i - 1], NULL, worker_main, a)) saev_fail("cpu pool: cannot start thread %d of %d", i, p->n_threads);
    }
    return p;
}

int pool_size(const CpuPool *p) { return p->n_threads; }

void pool_run(CpuPool *p, int64_t n, PoolFn fn, void *ctx) {
    if (n <= 0) return;
    if (p->n_threads == 1 || n == 1) {
        fn(ctx, 0, n);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->pending = p->n_threads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    int64_t b, e;
    slice(n, p->n_threads, 0, &b, &e);
    if (b < e) fn(ctx, b, e);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void pool_destroy(CpuPool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->shutdown = 1;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n_threads; i++) pthread_join(p->workers[i - 1], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->start);
    pthread_cond_destroy(&p->done);
    free(p->workers);
    free(p);
}
