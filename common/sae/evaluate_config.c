/*
 * evaluate_config.c: the `evaluate:` section's schema (checkpoints, held-out data, output).
 */
#include <stddef.h>

#include "evaluate.h"

/* ---------------------------------------------------------------- config section */

#define F(type_, key_, def_, min_, max_, help_) \
    {.key = #key_, .type = type_, .offset = offsetof(EvaluateConfig, key_), .def = def_, .min = min_, .max = max_, .help = help_}
static const CfgField evaluate_fields[] = {
    F(CFG_STRING_LIST, sae, "[]", 1, 0, "SAE checkpoints (sae.safetensors) or run directories (every sae.safetensors under them)"),
    F(CFG_STRING, data, CFG_UNSET, 1, 0, "held-out activations: safetensors file with `activations` [N,d], or a store directory"),
    F(CFG_INT, layer, CFG_UNSET, -1e6, 1e6, "store: ViT block as recorded in the store's `layers` (negative counts from the ViT's end); unset: the store's only layer"),
    {.key = "tokens", .type = CFG_STRING, .offset = offsetof(EvaluateConfig, tokens), .def = "patches", .min = 1, .max = 0,
     .choices = "patches|all|cls", .help = "store: rows are patch tokens, all tokens (CLS too), or CLS only (as train.tokens)"},
    F(CFG_INT, first_row, "0", 0, 1e15, "first row of the data to evaluate"),
    F(CFG_INT, max_tokens, "0", 0, 1e15, "rows to evaluate from first_row; 0: all the rest"),
    F(CFG_INT, batch_size, "1024", 1, 1 << 20, "rows per rank per forward pass (memory: batch_size x d_sae floats)"),
    F(CFG_INT, hist_bins, "45", 1, 10000, "bins of the frequency and mean-value histograms"),
    F(CFG_STRING, out, CFG_UNSET, 1, 0, "output directory (one SAE) or parent of <i>/ per SAE; unset: beside each checkpoint"),
};
#undef F

const CfgSchema evaluate_config_schema = {"evaluate", sizeof(EvaluateConfig), evaluate_fields,
                                          (int)(sizeof evaluate_fields / sizeof evaluate_fields[0]), NULL};
