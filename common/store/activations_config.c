/*
 * activations_config.c: the schema of the `activations:` section (see activations_config.h).
 */
#include "activations_config.h"

#include <stddef.h>

#define F(type_, key_, def_, min_, max_, choices_, help_) \
    {.key = #key_, .type = type_, .offset = offsetof(ActivationsConfig, key_), .def = def_, .min = min_, .max = max_, .choices = choices_, .help = help_}
static const CfgField activations_fields[] = {
    F(CFG_STRING, out, "activations", 1, 0, NULL, "directory of the activation store (HDF5 files acts-NNNNNN.h5)"),
    F(CFG_STRING, dtype, "float32", 1, 0, "float32|float16|bfloat16", "how activations are stored"),
    F(CFG_INT, batch_size, "64", 1, 1 << 20, NULL, "images per forward pass and per collective write"),
    F(CFG_INT, images_per_file, "16384", 0, 1e12, NULL, "images per HDF5 file of the store; 0 puts all in one file"),
    F(CFG_BOOL, resume, "true", 1, 0, NULL, "continue an existing store made with the same settings (false: refuse to touch it)"),
    F(CFG_INT, lanes, "0", 0, 4096, NULL, "CPU: at most this many forward lanes per rank (each a batch at a time on its own core, single-threaded GEMMs, a rank's worth of buffers); 1: one lane whose GEMMs use the OpenBLAS threads; 0: one lane per OpenBLAS thread"),
};
#undef F

const CfgSchema activations_config_schema = {"activations", sizeof(ActivationsConfig), activations_fields,
                                             (int)(sizeof activations_fields / sizeof activations_fields[0]), NULL};
