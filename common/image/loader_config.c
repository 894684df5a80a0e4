/*
 * loader_config.c: the `loader:` section's schema (decoding threads, read-ahead).
 */
#include <stddef.h>

#include "loader.h"

static const CfgField loader_fields[] = {
    {"threads", CFG_INT, offsetof(LoaderConfig, threads), "0", 0, 1024, NULL, NULL, 0,
     "image decoding threads per rank; 0 = one per core"},
    {"queue_batches", CFG_INT, offsetof(LoaderConfig, queue_batches), "4", 1, 1024, NULL, NULL, 0,
     "batches decoded ahead of the model (memory: queue_batches x batch x 3 x H x W floats)"},
};

const CfgSchema loader_config_schema = {
    "loader", sizeof(LoaderConfig), loader_fields, (int)(sizeof loader_fields / sizeof loader_fields[0]), NULL,
};
