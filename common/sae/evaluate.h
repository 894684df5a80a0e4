/*
 * evaluate.h: metrics of trained SAEs on held-out activations (`saev evaluate`).
 *
 * One ordered pass over rows [first_row, first_row + N) of a data source (safetensors
 * `activations` [N, d] or an activation store, through data_source_open). Each rank takes
 * a disjoint contiguous share of the rows (rank r: [r·N/size, (r+1)·N/size)); every batch
 * of rows is read once and run through every SAE. Per SAE the rank accumulates float64
 * sums (EvalSums below) which are all-reduced once at the end, so 1 rank and 2 ranks give
 * the same numbers up to the order of the float64 additions.
 *
 * Inputs are multiplied by the checkpoint's data_scale first, as in training; all
 * metrics are in that (the SAE's) space except mse_data_units. Definitions (N tokens, d
 * dimensions, f the latent vector of a token; saev's evaluate() in
 * src/saev/framework/train.py and docs/research/issues/normalized-mse.md of
 * OSU-NLP-Group/saev):
 *   firing        latent j fires on a token when f_j != 0. ReLU and JumpReLU outputs are
 *                 >= 0, so this is saev's f > 0; top-k keeps the k largest pre-activations
 *                 even when negative, and those count as firing too (|f| > 0).
 *   frequency_j   (tokens where j fires) / N
 *   mean_value_j  (Σ f_j over the tokens where j fires) / (tokens where j fires); null when dead
 *   L0            mean over tokens of the number of firing latents
 *   L1            mean over tokens of Σ_j |f_j|
 *   MSE           Σ‖x − x̂‖² / (N·d), mean over elements
 *   NMSE          Σ‖x − x̂‖² / Σ‖x − x̄‖² with x̄ the mean vector of the evaluated rows:
 *                 the fraction of variance unexplained (saev's normalized MSE; Gao et al.)
 *                 computed in one pass as E / (Q − ‖S‖²/N), Q = Σ‖x‖², S = Σx
 *   explained_variance  1 − NMSE
 *   nmse_uncentered     Σ‖x − x̂‖² / Σ‖x‖² (what the training metrics call nmse)
 *   dead          frequency == 0; almost_dead frequency < 1e-7 (dead included, as saev);
 *   dense         frequency > 1e-2
 * Histograms: log10(frequency + 1e-9) over all latents on [-9, 0] (saev's plot; dead
 * latents land in the first bin), and mean_value over the latents that fired, on
 * [min, max] of those values.
 *
 * Output per checkpoint: eval.json (cJSON) and eval.svg (two histogram panels), both
 * written with tmp + rename; by default beside the checkpoint, else under evaluate.out.
 */
#ifndef SAEV_SAE_EVALUATE_H
#define SAEV_SAE_EVALUATE_H

#include <stdint.h>

#include "comm.h"
#include "config.h"
#include "sae.h"

/* The `evaluate:` section of a config.
 *
 *   evaluate:
 *     sae: [runs/a]          # checkpoints (sae.safetensors) or run directories (every
 *                            # sae.safetensors under them, sorted)
 *     data: held_out.safetensors   # or a store directory, with layer:
 *     layer: -2
 *     tokens: patches        # store rows: patches | all | cls (as train.tokens)
 *     first_row: 0           # evaluate rows [first_row, first_row + max_tokens)
 *     max_tokens: 0          # 0: to the end of the data
 *     batch_size: 4096       # rows per rank per forward pass
 *     hist_bins: 45
 *     out: null              # null: eval.json/eval.svg beside each checkpoint;
 *                            # else this directory (one SAE) or <out>/<i>/ (several)
 */
typedef struct {
    CfgList sae;         // CFG_STRING_LIST: checkpoint files or run directories
    char *data;          // activations: safetensors file or store directory (NULL: unset)
    int64_t layer;       // store layer
    char *tokens;        // store rows: patches | all | cls
    int64_t first_row;   // first evaluated row
    int64_t max_tokens;  // rows to evaluate; 0 = all from first_row
    int64_t batch_size;  // rows per rank per forward pass
    int64_t hist_bins;   // bins of each histogram
    char *out;           // output directory; NULL = beside each checkpoint
} EvaluateConfig;

extern const CfgSchema evaluate_config_schema;

#define EVAL_ALMOST_DEAD 1e-7
#define EVAL_DENSE 1e-2
#define EVAL_LOG10_EPS 1e-9 /* log10(frequency + eps), as saev's plot */

/* Float64 sums over tokens, in one flat buffer so that one all-reduce combines them. */
enum { EVAL_N = 0,        // tokens
       EVAL_SQERR,        // Σ‖x − x̂‖²
       EVAL_X_SQ,         // Σ‖x‖²
       EVAL_L0,           // Σ firing latents
       EVAL_L1,           // Σ |f|
       EVAL_X_SUM0 };     // then d per-dimension Σx, S firing counts, S value sums

typedef struct {
    int d, S;
    double *sums;       // [EVAL_X_SUM0 + d + 2S]
    double *x_sum;      // [d]  view into sums
    double *fired;      // [S]  tokens where each latent fired
    double *value_sum;  // [S]  Σ f over those tokens
} EvalSums;

void eval_sums_init(EvalSums *e, int d, int S);
void eval_sums_free(EvalSums *e);
size_t eval_sums_len(const EvalSums *e);
/* Adds n rows: x [n, d] (already scaled), their latents f [n, S] and reconstructions x_hat [n, d]. */
void eval_sums_add(EvalSums *e, const float *x, const float *f, const float *x_hat, int n);

typedef struct {
    int64_t n_tokens;
    double sum_sq_err, sum_x_sq, sum_l0, sum_l1, sst; // the all-reduced float64 sums behind the means
    double l0, l1, mse, nmse, nmse_uncentered, explained_variance;
    int n_dead, n_almost_dead, n_dense;
    int S;
    double *freqs;       // [S] firing frequency
    double *mean_values; // [S] mean value when firing; NaN for dead latents
    int bins;
    double freq_lo, freq_hi; // log10 range of the frequency histogram
    int64_t *freq_hist;      // [bins]
    double mean_lo, mean_hi; // range of the mean-value histogram
    int64_t *mean_hist;      // [bins]
    int n_mean_hist;         // latents in the mean-value histogram (the non-dead ones)
} EvalMetrics;

/* Metrics from all-reduced sums. */
void eval_metrics_compute(const EvalSums *e, int bins, EvalMetrics *m);
void eval_metrics_free(EvalMetrics *m);

/* Where an evaluation stands: the checkpoints and data, checked against each other. */
typedef struct {
    int n_sae;
    char **ckpt;        // [n_sae] checkpoint paths
    char **out_dir;     // [n_sae] where each one's eval.json / eval.svg go
    int d;              // the data's row width (= every SAE's d_model)
    int64_t first_row, n_rows; // rows evaluated
} EvalPlan;

/* Resolves evaluate.sae into checkpoint files, opens each header and the data, checks
 * widths and ranges; any problem prints a message naming the input and exits with 2
 * before anything is written. */
void eval_plan_or_die(const EvaluateConfig *c, EvalPlan *plan);
void eval_plan_free(EvalPlan *plan);

/* Shared with other stages that take SAE checkpoints (visuals); `key` names the config
 * key in messages. Resolves a list of checkpoint files and run directories (every
 * sae.safetensors under them, sorted) into *out (malloc'd strings); returns the count;
 * exits with 2 naming the key and path when one is missing or listed twice. */
int eval_resolve_checkpoints(const CfgList *sae, const char *key, char ***out);
/* d_model of a checkpoint from its metadata; exits with 2 naming the key and file when it is not one. */
int eval_checkpoint_d_model(const char *key, const char *path);
/* Output folder of the i-th of n_sae checkpoints: `out` itself (one SAE), out/<i>
 * (several), or the checkpoint's folder (out NULL), with `beside` appended when given. */
char *eval_out_dir(const char *out, int n_sae, int i, const char *ckpt, const char *beside);

/* The whole evaluation on every rank of comm (collective; rows split across them); rank 0
 * writes the outputs. */
void evaluate_run(const EvaluateConfig *c, const Comm *comm);

/* Outputs (rank 0). JSON as text (malloc'd); SVG as text (malloc'd). */
char *eval_json(const EvalMetrics *m, const Sae *sae, const char *ckpt, const EvaluateConfig *c, const EvalPlan *plan);
char *eval_svg(const EvalMetrics *m, const char *title);

#endif
