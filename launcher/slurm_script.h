/*
 * slurm_script.h: batch scripts from the templates in slurm/ (single.sbatch,
 * multinode.sbatch, array.sbatch), and the sweep groups of a job array.
 *
 * A template is a shell script with {{name}} placeholders; filling one with a name it
 * does not know is an error naming template:line, so a template and the launcher never
 * drift apart silently. The #SBATCH block ({{sbatch}}) is generated from SlurmConfig.
 */
#ifndef SAEV_LAUNCHER_SLURM_SCRIPT_H
#define SAEV_LAUNCHER_SLURM_SCRIPT_H

#include "saev_config.h"
#include "slurm_config.h"

typedef struct {
    const SlurmConfig *slurm; /* resources, logs, requeue, extra options */
    const char *job_name;     /* no whitespace */
    const char *run_dir;      /* absolute; holds slurm/ (scripts, group files, logs) */
    const char *log_dir;      /* absolute */
    const char *workdir;      /* absolute; the job starts there */
    const char *command;      /* shell text of the command the job runs */
    int n_groups;             /* > 0: a job array of n_groups tasks */
    int n_configs;            /* configs of the sweep (1 without one) */
    int group_size;           /* configs per array task */
} SlurmJob;

/* The slurm/ folder holding the templates: $SAEV_SLURM_TEMPLATES, else found beside the
 * saev binary (<bin>/../../slurm for a build folder inside the source tree,
 * <bin>/../share/saev-c/slurm when installed). Fails with the places it looked. */
const char *slurm_template_dir(void);
/* The filled batch script (malloc'd); fails (exit 2) naming the template on a bad one. */
char *slurm_script_render(const SlurmJob *job);
/* Appends s to a malloc'd shell word list, single-quoted when it needs quoting. */
void shell_append_word(char **text, const char *s);

/* The YAML of one group: configs[0..n) written as the first config's resolved YAML plus
 * a root `sweep:` whose grid is exactly those configs, in order. Returns NULL and fills
 * err when the group is not a grid (e.g. group_size cuts across a sweep axis). The text
 * is checked by expanding it again with cfg_sweep and comparing every config. */
char *sweep_group_yaml(const SaevConfig *configs, int n, char *err, size_t errlen);

#endif
