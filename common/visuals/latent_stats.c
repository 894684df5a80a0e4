/*
 * latent_stats.c: top lists, counts, maxima and exact sums per latent (latent_stats.h),
 * and their merge across ranks: counts and limbs by an integer all-reduce, maxima by
 * MPI_MAX, top lists by a user reduction that merges two sorted lists of top_k entries.
 */
#include "latent_stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* a is worse than b: lower score, or the same score and a higher image. */
static int entry_worse(const LsEntry *a, const LsEntry *b) {
    return a->score < b->score || (a->score == b->score && a->image > b->image);
}

static void heap_sift_down(LsEntry *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && entry_worse(&h[l], &h[w])) w = l;
        if (r < n && entry_worse(&h[r], &h[w])) w = r;
        if (w == i) return;
        LsEntry t = h[i]; h[i] = h[w]; h[w] = t;
        i = w;
    }
}

static void heap_offer(LsEntry *h, int *n, int cap, LsEntry e) {
    if (*n < cap) {
        int i = (*n)++;
        h[i] = e;
        while (i > 0 && entry_worse(&h[i], &h[(i - 1) / 2])) {
            LsEntry t = h[i]; h[i] = h[(i - 1) / 2]; h[(i - 1) / 2] = t;
            i = (i - 1) / 2;
        }
    } else if (entry_worse(&h[0], &e)) {
        h[0] = e;
        heap_sift_down(h, cap, 0);
    }
}

void latent_stats_init(LatentStats *ls, int S, int top_k) {
    memset(ls, 0, sizeof *ls);
    ls->S = S;
    ls->top_k = top_k;
    ls->top = mallocCheck((size_t)S * top_k * sizeof(LsEntry));
    for (size_t i = 0; i < (size_t)S * top_k; i++) ls->top[i] = (LsEntry){-INFINITY, -1};
    ls->n_top = callocCheck((size_t)S, sizeof(int));
    ls->fired = callocCheck((size_t)S, sizeof(int64_t));
    ls->max_value = mallocCheck((size_t)S * sizeof(float));
    for (int s = 0; s < S; s++) ls->max_value[s] = -INFINITY;
    ls->sum = callocCheck((size_t)S * LS_LIMBS, sizeof(int64_t));
    ls->img_max = mallocCheck((size_t)S * sizeof(float));
    for (int s = 0; s < S; s++) ls->img_max[s] = NAN; /* NaN: not fired on the current image */
    ls->touched = mallocCheck((size_t)S * sizeof(int));
}

void latent_stats_free(LatentStats *ls) {
    free(ls->top); free(ls->n_top); free(ls->fired); free(ls->max_value); free(ls->sum);
    free(ls->img_max); free(ls->touched);
    memset(ls, 0, sizeof *ls);
}

/* Adds float32 v exactly to the limbs: v = m·2^(p-149) with m < 2^24, p = max(e, 1) - 1. */
static void sum_add(int64_t *limbs, float v) {
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    uint32_t e = (bits >> 23) & 0xff;
    uint64_t m = bits & 0x7fffff;
    if (e) m |= 0x800000;
    int p = e ? (int)e - 1 : 0;
    uint64_t shifted = m << (p & 31); /* < 2^55 */
    int64_t lo = (int64_t)(shifted & 0xffffffffu), hi = (int64_t)(shifted >> 32);
    if (bits >> 31) { lo = -lo; hi = -hi; }
    limbs[p >> 5] += lo;
    limbs[(p >> 5) + 1] += hi;
}

void latent_stats_add_image(LatentStats *ls, const float *f, int n_rows, int64_t image) {
    int S = ls->S;
    ls->n_touched = 0;
    for (int r = 0; r < n_rows; r++) {
        const float *fr = f + (size_t)r * S;
        for (int s = 0; s < S; s++) {
            float v = fr[s];
            if (v == 0) continue; /* fires when f != 0 (top-k may keep negative values) */
            ls->fired[s]++;
            sum_add(ls->sum + (size_t)s * LS_LIMBS, v);
            if (v > ls->max_value[s]) ls->max_value[s] = v;
            if (isnan(ls->img_max[s])) { ls->img_max[s] = v; ls->touched[ls->n_touched++] = s; }
            else if (v > ls->img_max[s]) ls->img_max[s] = v;
        }
    }
    for (int t = 0; t < ls->n_touched; t++) {
        int s = ls->touched[t];
        heap_offer(ls->top + (size_t)s * ls->top_k, &ls->n_top[s], ls->top_k, (LsEntry){ls->img_max[s], image});
        ls->img_max[s] = NAN;
    }
}

void latent_stats_normalize(LatentStats *ls) {
    for (int s = 0; s < ls->S; s++) {
        int64_t *l = ls->sum + (size_t)s * LS_LIMBS;
        for (int i = 0; i < LS_LIMBS - 1; i++) {
            int64_t carry = l[i] >> 32; /* arithmetic shift: floor division by 2^32 */
            l[i] -= carry * ((int64_t)1 << 32);
            l[i + 1] += carry;
        }
    }
}

double latent_stats_sum(const LatentStats *ls, int s) {
    const int64_t *l = ls->sum + (size_t)s * LS_LIMBS;
    double v = 0;
    for (int i = LS_LIMBS - 1; i >= 0; i--) v = v * 4294967296.0 + (double)l[i];
    return ldexp(v, -149);
}

/* Sorts each heap best first (empty slots, which are worst, last). */
static int cmp_entry_best_first(const void *a, const void *b) {
    const LsEntry *x = a, *y = b;
    return entry_worse(y, x) ? -1 : entry_worse(x, y) ? 1 : 0;
}

/* MPI user reduction over lists of top_k entries sorted best first: inout = the best
 * top_k of the union (the entry count per list is the datatype's size). */
static void merge_lists(void *in, void *inout, int *len, MPI_Datatype *type) {
    int bytes;
    MPI_Type_size(*type, &bytes);
    int k = bytes / (int)sizeof(LsEntry);
    LsEntry *a = in, *b = inout, *tmp = mallocCheck((size_t)k * sizeof(LsEntry));
    for (int l = 0; l < *len; l++) {
        LsEntry *x = a + (size_t)l * k, *y = b + (size_t)l * k;
        int i = 0, j = 0;
        for (int o = 0; o < k; o++) tmp[o] = entry_worse(&y[j], &x[i]) ? x[i++] : y[j++];
        memcpy(y, tmp, (size_t)k * sizeof(LsEntry));
    }
    free(tmp);
}

void latent_stats_allreduce(LatentStats *ls, const Comm *comm) {
    int S = ls->S, k = ls->top_k;
    for (int s = 0; s < S; s++) qsort(ls->top + (size_t)s * k, (size_t)k, sizeof(LsEntry), cmp_entry_best_first);
    latent_stats_normalize(ls);
    if (comm->size > 1) {
        mpiCheck(MPI_Allreduce(MPI_IN_PLACE, ls->fired, S, MPI_INT64_T, MPI_SUM, comm->mpi));
        mpiCheck(MPI_Allreduce(MPI_IN_PLACE, ls->sum, S * LS_LIMBS, MPI_INT64_T, MPI_SUM, comm->mpi));
        mpiCheck(MPI_Allreduce(MPI_IN_PLACE, ls->max_value, S, MPI_FLOAT, MPI_MAX, comm->mpi));
        MPI_Datatype list;
        mpiCheck(MPI_Type_contiguous(k * (int)sizeof(LsEntry), MPI_BYTE, &list));
        mpiCheck(MPI_Type_commit(&list));
        MPI_Op op;
        mpiCheck(MPI_Op_create(merge_lists, 1, &op));
        mpiCheck(MPI_Allreduce(MPI_IN_PLACE, ls->top, S, list, op, comm->mpi));
        mpiCheck(MPI_Op_free(&op));
        mpiCheck(MPI_Type_free(&list));
        latent_stats_normalize(ls);
    }
    for (int s = 0; s < S; s++) {
        int n = 0;
        while (n < k && ls->top[(size_t)s * k + n].image >= 0) n++;
        ls->n_top[s] = n;
    }
}
