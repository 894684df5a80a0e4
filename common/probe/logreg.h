/*
 * logreg.h: multinomial logistic regression with L2 regularisation, fitted by L-BFGS in
 * float64, data-parallel: every rank holds a disjoint share of the rows, computes the
 * loss and gradient of its share, and one all-reduce per evaluation sums them; rank 0's
 * sums are then broadcast, so every rank takes exactly the same optimizer steps.
 *
 * Objective over the N rows of all ranks (x_i features, y_i class index, W [d, K], b [K]):
 *     f(W, b) = (1/N) Σ_i [ logsumexp_k(z_ik) − z_{i,y_i} ] + (λ/2)‖W‖²,  z_i = x_i W + b
 * the bias is not penalised. This is scikit-learn's LogisticRegression(penalty="l2",
 * multi_class="multinomial", fit_intercept=True) with C = 1/(λ N): its objective is
 * C·Σ_i CE_i + ½‖W‖² = C·N·f, the same minimiser.
 *
 * Rows are dense, or CSR for sparse features (SAE codes): the same sums, in nnz·K work.
 *
 * Optimizer: L-BFGS in standardized coordinates (W = V/σ, b = c − μW with μ, σ the
 * features' means and standard deviations over all rows: a change of variables, so the
 * same minimiser, conditioned as on standardized features), two-loop recursion, `history` pairs kept; a pair with s·y <= 1e-12
 * ‖s‖‖y‖ is skipped) from W = 0, b = 0, with a backtracking Armijo line search (c1 = 1e-4, with 1e-14·|f| of slack for
 * the rounding of f near the optimum;
 * step halved up to 60 times; the first step is 1/‖g‖₂, later ones start at 1).
 * Stopping rule: stop as converged when ‖∇f‖_∞ <= tol (the gradient in W and b); stop as not converged after
 * max_iter iterations, or when the line search finds no decrease (the float64 floor of
 * the objective), both reported in LogregResult.
 */
#ifndef SAEV_PROBE_LOGREG_H
#define SAEV_PROBE_LOGREG_H

#include <stdint.h>

#include "comm.h"

typedef struct {
    int d;             // features per row
    int K;             // classes
    int64_t n_local;   // rows on this rank
    int64_t n_global;  // rows on all ranks (N above)
    const double *x;   // [n_local, d] row-major (dense rows), or NULL with the CSR rows below
    const int64_t *row_ptr; // [n_local + 1] CSR rows (sparse features such as SAE codes); NULL: dense x
    const int *col;         // [nnz] feature index of each stored value
    const double *val;      // [nnz]
    const int *y;      // [n_local] class indices in [0, K)
    double l2;         // λ
    const Comm *comm;  // the ranks holding the rows (sums all-reduced over them)
} LogregProblem;

typedef struct {
    double tol;        // converged when max |∂f| <= tol
    int max_iter;      // L-BFGS iterations at most
    int history;       // L-BFGS pairs kept
} LogregOptions;

typedef struct {
    int iters;         // iterations taken
    int evals;         // objective evaluations (each one all-reduce)
    double loss;       // f at the solution
    double grad_inf;   // ‖∇f‖_∞ at the solution
    int converged;     // 1 when grad_inf <= tol
    const char *stop;  // why it stopped (static text)
} LogregResult;

/* Parameters: theta [d*K + K] = W (row-major [d, K]) then b [K]. */
static inline int64_t logreg_n_params(int d, int K) { return (int64_t)d * K + K; }

/* f(theta) and ∇f into grad [n_params] (collective). */
double logreg_loss_grad(const LogregProblem *p, const double *theta, double *grad);
/* Minimises f from theta = 0 (collective); theta [n_params] gets the solution. */
void logreg_fit(const LogregProblem *p, const LogregOptions *o, double *theta, LogregResult *r);
/* Class scores z = x W + b for n rows of x [n, d] (float32 features) into z [n, K]
 * (float64), and the argmax class of each row into pred [n] (ties: lowest index). */
void logreg_scores(const double *theta, int d, int K, const float *x, int64_t n, double *z, int *pred);

#endif
