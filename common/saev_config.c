/*
 * saev_config.c: the top-level schema (one CFG_SECTION field per module, generated from
 * SAEV_CONFIG_SECTIONS) and the run section, plus loading from the command line.
 */
#include "saev_config.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define F(type_, key_, def_, min_, max_, choices_, help_) \
    {.key = #key_, .type = type_, .offset = offsetof(RunConfig, key_), .def = def_, .min = min_, .max = max_, .choices = choices_, .help = help_}
static const CfgField run_fields[] = {
    F(CFG_STRING, name, "run", 1, 0, NULL, "the run's name"),
    F(CFG_STRING, out_dir, "runs", 1, 0, NULL, "directory that receives the run's outputs"),
    F(CFG_INT, ranks, "1", 1, 1e6, NULL, "number of MPI ranks (one GPU each with cuda)"),
    F(CFG_STRING, device, "auto", 1, 0, DEVICE_NAMES, "where to compute: cuda when a GPU is present with auto"),
    F(CFG_INT, seed, "0", 1, 0, NULL, "seed of every random stream"),
    F(CFG_STRING, log_level, "info", 1, 0, "debug|info|warn|error", "least severe log level printed"),
};
#undef F
const CfgSchema run_config_schema = {"run", sizeof(RunConfig), run_fields, (int)(sizeof run_fields / sizeof run_fields[0]), NULL};

static const CfgField saev_fields[] = {
#define SAEV_CONFIG_FIELD(key_, type_, schema_, def_, nullable_, help_) \
    {.key = #key_, .type = CFG_SECTION, .offset = offsetof(SaevConfig, key_), .def = def_, .min = 1, .max = 0, .section = &schema_, .nullable = nullable_, .help = help_},
    SAEV_CONFIG_SECTIONS(SAEV_CONFIG_FIELD)
#undef SAEV_CONFIG_FIELD
};
const CfgSchema saev_config_schema = {"saev", sizeof(SaevConfig), saev_fields, (int)(sizeof saev_fields / sizeof saev_fields[0]), NULL};

/* The config file with the --sets, --ranks and --device applied, before sweeps. */
static CfgDoc *command_line_doc_or_die(const CfgArgs *args) {
    CfgError err;
    CfgDoc *doc = args->config_path ? cfg_parse_file_or_die(args->config_path) : cfg_parse_string("", "(no config)", &err);
    for (int i = 0; i < args->n_sets; i++) cfg_set_or_die(doc, args->sets[i]);
    char set[64];
    if (args->ranks) {
        snprintf(set, sizeof set, "run.ranks=%d", args->ranks);
        cfg_set_or_die(doc, set);
    }
    if (args->device) {
        snprintf(set, sizeof set, "run.device=%s", args->device);
        cfg_set_or_die(doc, set);
    }
    return doc;
}

int saev_config_given(const CfgArgs *args, const char *dotted) {
    CfgDoc *doc = command_line_doc_or_die(args);
    int given = cfg_doc_find(doc, dotted) != NULL;
    cfg_free(doc);
    return given;
}

int saev_config_load_or_die(const CfgArgs *args, SaevConfig **out) {
    CfgDoc *doc = command_line_doc_or_die(args);
    CfgDoc **docs;
    int n = cfg_sweep_or_die(doc, &docs);
    SaevConfig *configs = callocCheck((size_t)n, sizeof *configs);
    for (int i = 0; i < n; i++) {
        cfg_bind_or_die(docs[i], &saev_config_schema, &configs[i]);
        cfg_free(docs[i]);
    }
    free(docs);
    cfg_free(doc);
    *out = configs;
    return n;
}

int saev_config_argv_or_die(int argc, char **argv, const char *stage, CfgArgs *args, SaevConfig **out) {
    cfg_args_parse_or_die(argc, argv, NULL, args);
    if (args->argc > 1) saev_usage_fail("%s: unexpected argument \"%s\"", stage, args->argv[1]);
    return saev_config_load_or_die(args, out);
}

void saev_config_free(SaevConfig *configs, int n) {
    for (int i = 0; i < n; i++) cfg_free_obj(&saev_config_schema, &configs[i]);
    free(configs);
}

int saev_config_recorded(const char *yaml, const char *where, SaevConfig *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (!yaml) { snprintf(err, errlen, "store %s does not record its config (written before stores kept it)", where); return -1; }
    if (!strncmp(yaml, "import_saev:", 12)) {
        snprintf(err, errlen, "store %s was imported from saev's shards (saev import-saev): it records no saev-c config (data set, preprocessing, model)", where);
        return -1;
    }
    CfgError e;
    CfgDoc *doc = cfg_parse_string(yaml, where, &e);
    int bad = !doc || cfg_bind(doc, &saev_config_schema, out, &e);
    if (doc) cfg_free(doc);
    if (bad) { snprintf(err, errlen, "store %s: its recorded config cannot be read: %s", where, e.msg); return -1; }
    return 0;
}

int saev_config_recorded_preprocess(const SaevConfig *rec, const char *model_family, PreprocessSpec *out, char *err, size_t errlen) {
    PreprocessConfig pc = {.size = CFG_UNSET_INT, .width = CFG_UNSET_INT, .height = CFG_UNSET_INT, .crop = CFG_UNSET_INT};
    if (rec) pc = rec->preprocess;
    if (!pc.pipeline) pc.pipeline = (char *)model_family;
    return preprocess_resolve(&pc, out, err, errlen);
}

const SaevConfig *saev_config_one_or_die(const SaevConfig *configs, int n, const char *stage, const char *swept) {
    for (int f = 0; f < saev_config_schema.n_fields; f++) {
        const CfgField *field = &saev_config_schema.fields[f];
        if (swept && !strcmp(field->key, swept)) continue;
        char *first = cfg_dump(field->section, (const char *)&configs[0] + field->offset);
        for (int i = 1; i < n; i++) {
            char *other = cfg_dump(field->section, (const char *)&configs[i] + field->offset);
            int same = !strcmp(first, other);
            free(other);
            if (!same)
                saev_usage_fail("%s: the sweep changes section %s, which %s does not sweep (only %s.sweep expands)", stage,
                                field->key, stage, swept ? swept : "train");
        }
        free(first);
    }
    return &configs[0];
}

void saev_config_train_job(SaevConfig *cfgs, int K, TrainJob *job) {
    const TrainConfig **members = mallocCheck(sizeof *members * (size_t)K);
    char **yaml = mallocCheck(sizeof *yaml * (size_t)K);
    for (int i = 0; i < K; i++) {
        TrainConfig *c = &cfgs[i].train;
        if (!c->out_dir) {
            c->out_dir = mallocCheck(strlen(cfgs[i].run.out_dir) + strlen(cfgs[i].run.name) + 2);
            sprintf(c->out_dir, "%s/%s", cfgs[i].run.out_dir, cfgs[i].run.name);
        }
        members[i] = c;
        yaml[i] = cfg_dump(&saev_config_schema, &cfgs[i]);
    }
    *job = (TrainJob){.members = members, .K = K, .device = cfgs[0].run.device, .resolved_yaml = yaml};
}

void saev_config_train_job_free(TrainJob *job) {
    for (int i = 0; i < job->K; i++) free(job->resolved_yaml[i]);
    free((void *)job->resolved_yaml);
    free((void *)job->members);
    memset(job, 0, sizeof *job);
}
