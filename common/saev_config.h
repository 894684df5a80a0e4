/*
 * saev_config.h: the top-level configuration, SaevConfig, composed of one section per
 * module, and the one call commands use to get it from the command line.
 *
 * Adding a module's section is one line in SAEV_CONFIG_SECTIONS below (plus the
 * #include of the header that declares its struct and schema):
 *
 *   X(key, StructType, schema, def, nullable, "help")
 *
 * e.g. X(train, TrainConfig, train_config_schema, NULL, 0, "SAE training"). `key` is the
 * YAML key and the SaevConfig member; `schema` the module's `const CfgSchema`; `def` the
 * section's default as YAML (NULL: an absent section takes its own defaults; "none" with
 * nullable=1: off unless configured). Keys not named here are errors like any unknown key.
 */
#ifndef SAEV_SAEV_CONFIG_H
#define SAEV_SAEV_CONFIG_H

#include <stdint.h>

#include "config.h"
#include "config_args.h"
#include "device.h"
#include "image/dataset.h"
#include "image/loader.h"
#include "image/preprocess.h"
#include "sae/train_config.h"
#include "store/activations_config.h"
#include "vit/model_config.h"
#include "slurm_config.h"
#include "sae/evaluate.h"
#include "viewer/serve.h"
#include "visuals/visuals.h"
#include "sae/train.h"
#include "probe/probe.h"
#include "intervene/intervene.h"

/* run: what every command shares. */
typedef struct {
    char *name;      /* the run's name */
    char *out_dir;   /* where runs write their outputs */
    int64_t ranks;   /* MPI ranks (>= 1); --ranks N sets it */
    char *device;    /* auto|cpu|cuda; --device sets it */
    int64_t seed;    /* seed of every random stream */
    char *log_level; /* debug|info|warn|error */
} RunConfig;
extern const CfgSchema run_config_schema;

#define SAEV_CONFIG_SECTIONS(X) \
    X(run, RunConfig, run_config_schema, NULL, 0, "what every command shares: name, output directory, ranks, device, seed, logging") \
    X(data, DataConfig, data_config_schema, NULL, 0, "the image data set: layout, location, bad-image policy") \
    X(preprocess, PreprocessConfig, preprocess_config_schema, NULL, 0, "resize, crop and normalization (family defaults, overridable)") \
    X(loader, LoaderConfig, loader_config_schema, NULL, 0, "decoding threads and read-ahead") \
    X(model, ModelSection, model_schema, NULL, 0, "the ViT: weights, architecture overrides, layers to record, device") \
    X(activations, ActivationsConfig, activations_config_schema, NULL, 0, "the activation store: where, dtype, batching, resume") \
    X(train, TrainConfig, train_config_schema, NULL, 0, "SAE training: data, schedule, the SAE, checkpoints; train.sweep trains a grid together") \
    X(evaluate, EvaluateConfig, evaluate_config_schema, NULL, 0, "metrics of trained SAEs on held-out activations: checkpoints, data, output") \
    X(visuals, VisualsConfig, visuals_config_schema, "none", 1, "what each latent responds to: top images, patch heatmaps, statistics (off unless configured)") \
    X(probe, ProbeConfig, probe_config_schema, NULL, 0, "linear probes on a store's activations or an SAE's codes (class or per patch) and semantic F1 of every latent") \
    X(intervene, InterveneConfig, intervene_config_schema, NULL, 0, "latent edits at an SAE's layer, the later ViT blocks, a probe's predictions before and after; the faithfulness study") \
    X(slurm, SlurmConfig, slurm_config_schema, NULL, 0, "what `saev submit` asks Slurm for: nodes, ranks, GPUs, time, sweep groups as job arrays") \
    X(serve, ServeConfig, serve_config_schema, NULL, 0, "the viewer (saev serve): served folders, address, port, threads, upload limit")

typedef struct {
#define SAEV_CONFIG_MEMBER(key, type, schema, def, nullable, help) type key;
    SAEV_CONFIG_SECTIONS(SAEV_CONFIG_MEMBER)
#undef SAEV_CONFIG_MEMBER
} SaevConfig;
extern const CfgSchema saev_config_schema;

/* Reads args->config_path (an empty config when NULL), applies the --sets in order, then
 * --ranks and --device, expands sweeps and binds each grid point. *out gets a malloc'd
 * array of n configs (returned; 1 without a sweep). Any config error prints
 * "error: file:line:col: key.path: problem" and exits with status 2. */
int saev_config_load_or_die(const CfgArgs *args, SaevConfig **out);
void saev_config_free(SaevConfig *configs, int n);
/* A worker stage's arguments, `[CONFIG.yaml] [--set ...] [--ranks N] [--device D]` and
 * nothing else (else "<stage>: unexpected argument ...", status 2), parsed into args
 * (release with cfg_args_free) and loaded as saev_config_load_or_die does. */
int saev_config_argv_or_die(int argc, char **argv, const char *stage, CfgArgs *args, SaevConfig **out);
/* The training job (sae/train.h) of K loaded configs (a sweep): fills every train.out_dir
 * left unset with <run.out_dir>/<run.name>, then points the job at the K train:
 * sections, run.device and each config's resolved YAML. The job borrows cfgs;
 * saev_config_train_job_free releases what it made. */
void saev_config_train_job(SaevConfig *cfgs, int K, TrainJob *job);
void saev_config_train_job_free(TrainJob *job);
/* Whether the config file or the command line gives the dotted key ("run.ranks"), as
 * opposed to the key taking its default. */
int saev_config_given(const CfgArgs *args, const char *dotted);
/* For stages other than train, which run once whatever the sweep: checks that the n
 * configs of a sweep differ only inside the section named `swept` (e.g. "train") and
 * returns the first; otherwise a usage error naming the stage and the section. */
const SaevConfig *saev_config_one_or_die(const SaevConfig *configs, int n, const char *stage, const char *swept);
/* The config a store recorded (its `config` attribute, yaml; NULL for a store that has
 * none) bound into *out (release with cfg_free_obj(&saev_config_schema, out)): 0, or -1
 * with why in err. `where` names the store in messages. What the store's images went
 * through (data set, preprocessing, model) is read back from here by every stage that
 * needs it again: visuals, the viewer, intervene on image files. */
int saev_config_recorded(const char *yaml, const char *where, SaevConfig *out, char *err, size_t errlen);
/* The preprocessing a store's images went through: the recorded preprocess: section (rec
 * NULL: none recorded, the family's defaults), its pipeline unset meaning the model's
 * family, as `saev activations` resolved it. 0, or -1 with why in err. */
int saev_config_recorded_preprocess(const SaevConfig *rec, const char *model_family, PreprocessSpec *out, char *err, size_t errlen);

#endif
