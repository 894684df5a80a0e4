/*
 * slurm_config.c: the `slurm:` section's schema and its cross-key checks (see
 * slurm_config.h). Formats Slurm would reject late (after the job waited in the queue)
 * are rejected here with the key's position instead.
 */
#include "slurm_config.h"

#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define F(type_, key_, def_, min_, max_, help_) \
    {.key = #key_, .type = type_, .offset = offsetof(SlurmConfig, key_), .def = def_, .min = min_, .max = max_, .help = help_}
static const CfgField slurm_fields[] = {
    F(CFG_INT, nodes, "1", 1, 100000, "nodes per job (-N); each array task is one such job"),
    F(CFG_INT, tasks_per_node, "1", 1, 1024, "MPI ranks per node (one GPU each with cuda)"),
    F(CFG_INT, gpus_per_task, "0", 0, 64, "GPUs per rank (--gpus-per-task); 0 asks for none"),
    F(CFG_INT, cpus_per_task, "1", 1, 1024, "cores per rank (--cpus-per-task)"),
    F(CFG_STRING, mem, CFG_UNSET, 1, 0, "memory per node (--mem), e.g. 64G; unset: the partition's default"),
    F(CFG_STRING, time, "01:00:00", 1, 0, "wall-clock limit (--time): minutes, HH:MM:SS or D-HH:MM:SS"),
    F(CFG_STRING, account, CFG_UNSET, 1, 0, "account charged (--account)"),
    F(CFG_STRING, partition, CFG_UNSET, 1, 0, "partition (--partition); unset: the cluster's default"),
    F(CFG_STRING, qos, CFG_UNSET, 1, 0, "quality of service (--qos)"),
    F(CFG_STRING, job_name, CFG_UNSET, 1, 0, "job name (--job-name); unset: run.name"),
    F(CFG_STRING, log_dir, CFG_UNSET, 1, 0, "directory of the job logs (%j.out, %A_%a.out); unset: <run dir>/slurm/logs"),
    F(CFG_INT, group_size, "0", 0, 100000, "sweep configs trained together by one job; the groups become a job array; 0: the whole sweep in one job"),
    F(CFG_INT, max_parallel, "0", 0, 100000, "array tasks running at once (--array=0-N%K); 0: no limit"),
    F(CFG_BOOL, requeue, "true", 1, 0, "let Slurm requeue the job after preemption or node failure (it resumes from its checkpoint)"),
    F(CFG_STRING, setup, CFG_UNSET, 1, 0, "shell lines run in the job before the command (module load ..., source venv)"),
    F(CFG_STRING, template_path, CFG_UNSET, 1, 0, "batch-script template used instead of those in slurm/"),
    F(CFG_STRING_LIST, sbatch, "[]", 1, 0, "more sbatch options, one per element, e.g. [\"--constraint=a100\"]"),
};
#undef F

/* Slurm's --time forms: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S. */
static int valid_time(const char *s) {
    const char *p = s;
    int fields = 0, day = 0;
    if (strchr(s, '-')) {
        if (!isdigit((unsigned char)*p)) return 0;
        while (isdigit((unsigned char)*p)) p++;
        if (*p++ != '-') return 0;
        day = 1;
    }
    for (;;) {
        if (!isdigit((unsigned char)*p)) return 0;
        while (isdigit((unsigned char)*p)) p++;
        fields++;
        if (*p == 0) break;
        if (*p++ != ':') return 0;
    }
    return fields <= 3 && (!day || fields >= 1);
}

/* Slurm's --mem: a number with an optional K, M, G or T unit. */
static int valid_mem(const char *s) {
    if (!isdigit((unsigned char)*s)) return 0;
    while (isdigit((unsigned char)*s)) s++;
    if (*s && strchr("KMGTkmgt", *s)) s++;
    return *s == 0;
}

static const char *slurm_validate(void *section, const CfgNode *node, char *buf, size_t buflen) {
    (void)node;
    const SlurmConfig *c = section;
    if (!valid_time(c->time)) {
        snprintf(buf, buflen, "time: \"%s\" is not a Slurm time limit (minutes, HH:MM:SS or D-HH:MM:SS)", c->time);
        return buf;
    }
    if (c->mem && !valid_mem(c->mem)) {
        snprintf(buf, buflen, "mem: \"%s\" is not a Slurm memory size (e.g. 64G, 512M)", c->mem);
        return buf;
    }
    for (int i = 0; i < c->sbatch.n; i++)
        if (strncmp(c->sbatch.s[i], "--", 2) || strchr(c->sbatch.s[i], '\n')) {
            snprintf(buf, buflen, "sbatch[%d]: \"%s\" is not a long sbatch option (--name=value)", i, c->sbatch.s[i]);
            return buf;
        }
    return NULL;
}

const CfgSchema slurm_config_schema = {"slurm", sizeof(SlurmConfig), slurm_fields,
                                       (int)(sizeof slurm_fields / sizeof slurm_fields[0]), slurm_validate};
