/*
 * cpu_pool.h: a small persistent pthread pool for the CPU loops OpenBLAS does not cover:
 * the ViT's LayerNorm, bias + activation, residual updates and softmax, the SAE's
 * selection, sparse decode, scatter and optimizer passes. OpenMP is not part of the
 * build, so this is the parallel-for.
 *
 * pool_run(pool, n, fn, ctx) calls fn(ctx, begin, end) on contiguous, disjoint slices
 * of [0, n) — one per thread, the caller's thread included — and returns when all are
 * done. A pool of one thread runs fn(ctx, 0, n) directly.
 */
#ifndef SAEV_CPU_POOL_H
#define SAEV_CPU_POOL_H

#include <stdint.h>

typedef void (*PoolFn)(void *ctx, int64_t begin, int64_t end);
typedef struct CpuPool CpuPool;

CpuPool *pool_create(int n_threads); /* n_threads >= 1 */
int pool_size(const CpuPool *pool);
void pool_run(CpuPool *pool, int64_t n, PoolFn fn, void *ctx);
void pool_destroy(CpuPool *pool);

#endif
