/*
 * activations.h: the activations stage as a library function: record the residual
 * stream of the configured ViT layers for every image of a data set into one activation
 * store, on all ranks of the job (comm.h's world) at once.
 *
 * Each rank takes its share of the store's pending images (store_plan: whole global
 * batches, so 1 and N ranks give bit-identical stores; a rerun after a crash does
 * exactly what is missing), decodes and preprocesses them on a thread pool (the image
 * loader), runs the ViT up to the deepest requested block (on the CPU, one forward lane
 * per OpenBLAS thread runs whole batches side by side, so one rank uses all its cores
 * with the very arithmetic of one-thread ranks) and writes the layers into the shared
 * store collectively, in order, from the main thread. Bad images follow data.on_bad_image: skipped ones are
 * recorded in the store (status + reason) and listed in <store>/bad_images.tsv.
 */
#ifndef SAEV_STORE_ACTIVATIONS_H
#define SAEV_STORE_ACTIVATIONS_H

#include "comm.h"
#include "device.h"
#include "image/dataset.h"
#include "image/loader.h"
#include "image/preprocess.h"
#include "store/activations_config.h"
#include "vit/model_config.h"

/* The config sections the stage reads, and the resolved config it stores as provenance. */
typedef struct {
    Device device;                       // run.device resolved (auto: model.device, then a GPU if any)
    const DataConfig *data;              // the images
    const PreprocessConfig *preprocess;  // family defaults and overrides
    const LoaderConfig *loader;          // decoding threads, read-ahead
    const ModelSection *model;           // the ViT and the layers to record
    const ActivationsConfig *activations; // the store
    const char *config_yaml;             // the whole resolved config (store attribute and config.resolved.yaml)
} ActivationsSections;

/* Collective over comm's ranks (images dealt to them in whole batches). Returns 1 when the store is complete (no pending image on any rank). Bad
 * input (missing keys, unreadable data set or model, a store of other settings) ends the
 * job naming it. */
int activations_run(const ActivationsSections *s, const Comm *comm);

#endif
