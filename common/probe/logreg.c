/*
 * logreg.c: the L2-regularised multinomial logistic regression of logreg.h: loss and
 * gradient with two float64 GEMMs per evaluation, L-BFGS with an Armijo line search.
 */
#include "logreg.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "comm.h"

double logreg_loss_grad(const LogregProblem *p, const double *theta, double *grad) {
    int d = p->d, K = p->K;
    int64_t n = p->n_local, np = logreg_n_params(d, K);
    const double *W = theta, *b = theta + (size_t)d * K;
    /* local sums: [CE sum, gradient of the CE sum] in one buffer, one all-reduce */
    double *buf = callocCheck((size_t)np + 1, sizeof(double));
    double *gW = buf + 1, *gb = buf + 1 + (size_t)d * K;
    const int64_t R = 4096; /* rows per block: z stays small */
    double *z = mallocCheck((size_t)(n < R ? (n > 0 ? n : 1) : R) * K * sizeof(double));
    for (int64_t r0 = 0; r0 < n; r0 += R) {
        int64_t m = n - r0 < R ? n - r0 : R;
        const double *x = p->x ? p->x + (size_t)r0 * d : NULL;
        for (int64_t i = 0; i < m; i++) memcpy(z + (size_t)i * K, b, (size_t)K * sizeof(double));
        if (x) {
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, K, d, 1.0, x, d, W, K, 1.0, z, K);
        } else {
            for (int64_t i = 0; i < m; i++)
                for (int64_t e = p->row_ptr[r0 + i]; e < p->row_ptr[r0 + i + 1]; e++) {
                    const double v = p->val[e], *w = W + (size_t)p->col[e] * K;
                    double *zi = z + (size_t)i * K;
                    for (int k = 0; k < K; k++) zi[k] += v * w[k];
                }
        }
        for (int64_t i = 0; i < m; i++) {
            double *zi = z + (size_t)i * K, mx = zi[0], s = 0;
            for (int k = 1; k < K; k++) if (zi[k] > mx) mx = zi[k];
            for (int k = 0; k < K; k++) s += exp(zi[k] - mx);
            int y = p->y[r0 + i];
            buf[0] += mx + log(s) - zi[y];
            for (int k = 0; k < K; k++) zi[k] = exp(zi[k] - mx) / s; /* softmax, then minus one-hot */
            zi[y] -= 1.0;
            for (int k = 0; k < K; k++) gb[k] += zi[k];
        }
        if (x) {
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, K, (int)m, 1.0, x, d, z, K, 1.0, gW, K);
        } else {
            for (int64_t i = 0; i < m; i++)
                for (int64_t e = p->row_ptr[r0 + i]; e < p->row_ptr[r0 + i + 1]; e++) {
                    const double v = p->val[e], *zi = z + (size_t)i * K;
                    double *g = gW + (size_t)p->col[e] * K;
                    for (int k = 0; k < K; k++) g[k] += v * zi[k];
                }
        }
    }
    free(z);
    comm_allreduce(p->comm, buf, (size_t)np + 1, COMM_F64, COMM_SUM);
    /* Summation order may differ between ranks' all-reduce results in the last bit; take
     * rank 0's so every rank makes the same decisions. */
    comm_bcast(p->comm, buf, ((size_t)np + 1) * sizeof(double), 0);
    double N = (double)p->n_global, reg = 0;
    for (int64_t j = 0; j < np; j++) grad[j] = buf[1 + j] / N;
    for (int64_t j = 0; j < (int64_t)d * K; j++) {
        grad[j] += p->l2 * W[j];
        reg += W[j] * W[j];
    }
    double f = buf[0] / N + 0.5 * p->l2 * reg;
    free(buf);
    return f;
}

static double dot(const double *a, const double *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static double norm_inf(const double *a, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) if (fabs(a[i]) > m || isnan(a[i])) m = isnan(a[i]) ? NAN : fabs(a[i]);
    return m;
}

/* The optimizer works in standardized coordinates: W = V / σ (per feature row j),
 * b = c − μ W, with μ_j, σ_j the mean and standard deviation of feature j over all
 * training rows. That is only a change of variables (the same f, the same minimiser; b
 * is not penalised, so it absorbs the centring), but it makes the problem L-BFGS sees as
 * well conditioned as on standardized features. */
typedef struct {
    const LogregProblem *p;
    const double *mu, *sigma;  // [d]
    double *theta, *g;         // [n_params] scratch in the original coordinates
} Reparam;

static void to_original(const Reparam *rp, const double *v, double *theta) {
    int d = rp->p->d, K = rp->p->K;
    double *W = theta, *b = theta + (size_t)d * K;
    const double *c = v + (size_t)d * K;
    for (int k = 0; k < K; k++) b[k] = c[k];
    for (int j = 0; j < d; j++)
        for (int k = 0; k < K; k++) {
            W[(size_t)j * K + k] = v[(size_t)j * K + k] / rp->sigma[j];
            b[k] -= rp->mu[j] * W[(size_t)j * K + k];
        }
}

/* f at the point v (standardized coordinates), its gradient there into gv, and the
 * original gradient's max norm into *g_inf. */
static double eval_reparam(const Reparam *rp, const double *v, double *gv, double *g_inf) {
    int d = rp->p->d, K = rp->p->K;
    to_original(rp, v, rp->theta);
    double f = logreg_loss_grad(rp->p, rp->theta, rp->g);
    const double *gW = rp->g, *gb = rp->g + (size_t)d * K;
    *g_inf = norm_inf(rp->g, logreg_n_params(d, K));
    for (int j = 0; j < d; j++)
        for (int k = 0; k < K; k++) gv[(size_t)j * K + k] = (gW[(size_t)j * K + k] - rp->mu[j] * gb[k]) / rp->sigma[j];
    memcpy(gv + (size_t)d * K, gb, (size_t)K * sizeof(double));
    return f;
}

void logreg_fit(const LogregProblem *p, const LogregOptions *o, double *theta, LogregResult *r) {
    int64_t np = logreg_n_params(p->d, p->K);
    int d = p->d, m = o->history;
    memset(r, 0, sizeof *r);
    /* feature means and standard deviations over all ranks' rows (float64 sums) */
    double *mom = callocCheck(2 * (size_t)d, sizeof(double));
    if (p->x) {
        for (int64_t i = 0; i < p->n_local; i++)
            for (int j = 0; j < d; j++) {
                double x = p->x[(size_t)i * d + j];
                mom[j] += x;
                mom[d + j] += x * x;
            }
    } else {
        for (int64_t e = 0; e < p->row_ptr[p->n_local]; e++) {
            mom[p->col[e]] += p->val[e];
            mom[d + p->col[e]] += p->val[e] * p->val[e];
        }
    }
    comm_allreduce(p->comm, mom, 2 * (size_t)d, COMM_F64, COMM_SUM);
    comm_bcast(p->comm, mom, 2 * (size_t)d * sizeof(double), 0);
    double *mu = mallocCheck((size_t)d * sizeof(double)), *sigma = mallocCheck((size_t)d * sizeof(double));
    for (int j = 0; j < d; j++) {
        mu[j] = mom[j] / (double)p->n_global;
        double var = mom[d + j] / (double)p->n_global - mu[j] * mu[j];
        sigma[j] = var > 1e-24 * (1 + mu[j] * mu[j]) ? sqrt(var) : 1.0; /* constant features: leave their scale */
    }
    free(mom);
    Reparam rp = {p, mu, sigma, theta, mallocCheck((size_t)np * sizeof(double))};
    double *v = callocCheck((size_t)np, sizeof(double)); /* v = 0 is W = 0, b = 0 */
    double *g = mallocCheck((size_t)np * sizeof(double)), *dir = mallocCheck((size_t)np * sizeof(double));
    double *trial = mallocCheck((size_t)np * sizeof(double)), *g_trial = mallocCheck((size_t)np * sizeof(double));
    double *y_new = mallocCheck((size_t)np * sizeof(double));
    double *S = mallocCheck((size_t)m * np * sizeof(double)), *Y = mallocCheck((size_t)m * np * sizeof(double));
    double *rho = mallocCheck((size_t)m * sizeof(double)), *alpha = mallocCheck((size_t)m * sizeof(double));
    int n_pairs = 0, newest = -1;
    double g_inf, g_inf_trial;
    double f = eval_reparam(&rp, v, g, &g_inf);
    r->evals = 1;
    r->stop = "max_iter reached";
    for (;;) {
        r->grad_inf = g_inf;
        r->loss = f;
        if (!isfinite(f) || isnan(g_inf)) saev_fail("probe: the objective became %g (features hold NaN or Inf?)", f);
        if (g_inf <= o->tol) { r->converged = 1; r->stop = "max |gradient| <= tol"; break; }
        if (r->iters >= o->max_iter) break;
        /* two-loop recursion: dir = -H g */
        for (int64_t j = 0; j < np; j++) dir[j] = -g[j];
        for (int i = 0; i < n_pairs; i++) {
            int k = (newest - i + m) % m;
            alpha[k] = rho[k] * dot(S + (size_t)k * np, dir, np);
            for (int64_t j = 0; j < np; j++) dir[j] -= alpha[k] * Y[(size_t)k * np + j];
        }
        if (n_pairs > 0) {
            const double *s = S + (size_t)newest * np, *y = Y + (size_t)newest * np;
            double gamma = dot(s, y, np) / dot(y, y, np);
            for (int64_t j = 0; j < np; j++) dir[j] *= gamma;
        }
        for (int i = n_pairs - 1; i >= 0; i--) {
            int k = (newest - i + m) % m;
            double beta = rho[k] * dot(Y + (size_t)k * np, dir, np);
            for (int64_t j = 0; j < np; j++) dir[j] += (alpha[k] - beta) * S[(size_t)k * np + j];
        }
        double slope = dot(g, dir, np);
        if (!(slope < 0)) { /* not a descent direction (round-off): restart from steepest descent */
            n_pairs = 0;
            for (int64_t j = 0; j < np; j++) dir[j] = -g[j];
            slope = dot(g, dir, np);
        }
        double step = n_pairs == 0 ? 1.0 / sqrt(-slope) : 1.0, f_trial = f;
        int ok = 0;
        for (int ls = 0; ls < 60; ls++) {
            for (int64_t j = 0; j < np; j++) trial[j] = v[j] + step * dir[j];
            f_trial = eval_reparam(&rp, trial, g_trial, &g_inf_trial);
            r->evals++;
            /* Armijo, with room for float64 rounding of f: near the optimum the decrease is
             * below eps·|f| and only the gradient still measures progress */
            if (f_trial <= f + 1e-4 * step * slope + 1e-14 * fabs(f)) { ok = 1; break; }
            step *= 0.5;
        }
        if (!ok) { r->stop = "line search found no decrease (float64 floor of the objective)"; break; }
        /* the new pair (s in dir, y in y_new) replaces the oldest only when its curvature can be trusted */
        for (int64_t j = 0; j < np; j++) {
            dir[j] = trial[j] - v[j];
            y_new[j] = g_trial[j] - g[j];
        }
        double sy = dot(dir, y_new, np);
        if (sy > 1e-12 * sqrt(dot(dir, dir, np) * dot(y_new, y_new, np))) {
            newest = (newest + 1) % m;
            memcpy(S + (size_t)newest * np, dir, (size_t)np * sizeof(double));
            memcpy(Y + (size_t)newest * np, y_new, (size_t)np * sizeof(double));
            rho[newest] = 1.0 / sy;
            if (n_pairs < m) n_pairs++;
        }
        memcpy(v, trial, (size_t)np * sizeof(double));
        memcpy(g, g_trial, (size_t)np * sizeof(double));
        f = f_trial;
        g_inf = g_inf_trial;
        r->iters++;
    }
    to_original(&rp, v, theta);
    free(rp.g); free(v); free(mu); free(sigma);
    free(g); free(dir); free(y_new); free(trial); free(g_trial); free(S); free(Y); free(rho); free(alpha);
}

void logreg_scores(const double *theta, int d, int K, const float *x, int64_t n, double *z, int *pred) {
    const double *W = theta, *b = theta + (size_t)d * K;
    for (int64_t i = 0; i < n; i++) {
        double *zi = z + (size_t)i * K;
        memcpy(zi, b, (size_t)K * sizeof(double));
        const float *xi = x + (size_t)i * d;
        for (int j = 0; j < d; j++) {
            double v = xi[j];
            if (v == 0) continue; /* SAE codes are mostly zero */
            const double *wj = W + (size_t)j * K;
            for (int k = 0; k < K; k++) zi[k] += v * wj[k];
        }
        int best = 0;
        for (int k = 1; k < K; k++) if (zi[k] > zi[best]) best = k;
        pred[i] = best;
    }
}
