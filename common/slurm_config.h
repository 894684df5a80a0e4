/*
 * slurm_config.h: the `slurm:` section, read by `saev submit` (launcher/cmd_submit.c).
 *
 * It says what one job asks Slurm for (nodes, ranks per node, GPUs and CPUs per rank,
 * memory, time, account, partition), where the job's logs go, and how a sweep becomes a
 * job array: the sweep's configs are cut into groups of `group_size` (the configs one
 * job trains together on the same batches), one array task per group, at most
 * `max_parallel` tasks at a time. Every key also has a `saev submit` flag.
 */
#ifndef SAEV_SLURM_CONFIG_H
#define SAEV_SLURM_CONFIG_H

#include <stdint.h>

#include "config.h"

typedef struct {
    int64_t nodes;          /* -N: nodes per job (each array task is one such job) */
    int64_t tasks_per_node; /* MPI ranks per node; ranks = nodes * tasks_per_node */
    int64_t gpus_per_task;  /* GPUs per rank; 0 asks for none */
    int64_t cpus_per_task;  /* cores per rank (data loading threads) */
    char *mem;              /* memory per node ("64G"); NULL: the partition's default */
    char *time;             /* wall-clock limit ("[D-]HH:MM:SS" or minutes) */
    char *account;          /* --account; NULL: the user's default */
    char *partition;        /* --partition; NULL: the cluster's default */
    char *qos;              /* --qos; NULL: the default */
    char *job_name;         /* NULL: run.name */
    char *log_dir;          /* NULL: <run dir>/slurm/logs */
    int64_t group_size;     /* configs per array task; 0: the whole sweep in one job */
    int64_t max_parallel;   /* array tasks running at once (--array=0-N%K); 0: no limit */
    int requeue;            /* --requeue: Slurm may requeue the job after preemption or node failure */
    char *setup;            /* shell lines run before the command (module load ...); NULL: none */
    char *template_path;    /* a batch-script template to use instead of slurm/ *.sbatch */
    CfgList sbatch;         /* extra sbatch options, one per element ("--constraint=a100") */
} SlurmConfig;

extern const CfgSchema slurm_config_schema;

#endif
