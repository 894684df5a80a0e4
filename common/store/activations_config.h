/*
 * activations_config.h: the `activations:` section of a config: where and how the
 * activations stage writes its store (common/store/store.h). Which layers are recorded
 * belongs to the model section; the data set to the data section.
 *
 *   activations:
 *     out: runs/demo/activations   # store directory
 *     dtype: float32               # float32 | float16 | bfloat16
 *     batch_size: 64               # images per forward and per collective write
 *     images_per_file: 16384       # images per HDF5 file of the store (0: one file)
 *     resume: true                 # continue an existing, matching store
 *
 * Composed into SaevConfig by one line in common/saev_config.h:
 *   X(activations, ActivationsConfig, activations_config_schema, NULL, 0, "recording activations into a store")
 */
#ifndef SAEV_ACTIVATIONS_CONFIG_H
#define SAEV_ACTIVATIONS_CONFIG_H

#include <stdint.h>

#include "config.h"

typedef struct {
    char *out;               /* store directory */
    char *dtype;             /* float32 | float16 | bfloat16 */
    int64_t batch_size;      /* images per batch (forward and collective write) */
    int64_t images_per_file; /* images per HDF5 file; 0 = a single file */
    int resume;              /* 1: continue an existing store with the same settings */
    int64_t lanes;           /* CPU forward lanes per rank, at most; 0 = one per OpenBLAS thread */
} ActivationsConfig;

extern const CfgSchema activations_config_schema;

#endif
