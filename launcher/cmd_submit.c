/*
 * cmd_submit.c: `saev submit COMMAND [CONFIG.yaml] [--set ...] [flags] [--dry-run]`.
 *
 * Writes a batch script from the templates in slurm/ and submits it with
 * `sbatch --parsable`, printing the job id. The job runs `saev COMMAND CONFIG --set ...`
 * in its batch step; that command starts its ranks with `srun --mpi=pmix saev-worker
 * STAGE ...` (launcher/mpirun.c), and the worker checks that its MPI world is exactly
 * SLURM_NTASKS. `saev submit worker STAGE [-- ARGS]` starts a worker stage's ranks
 * directly (`srun --mpi=pmix saev-worker STAGE ARGS`), e.g. comm-selftest.
 *
 * A sweep with slurm.group_size > 0 becomes a job array: the grid is cut into groups of
 * group_size configs, group i is written to <run dir>/slurm/group_<i>.yaml (a config
 * whose sweep is exactly that group), and array task i runs the command on it.
 * Resubmitting (or Slurm requeueing) a job resumes from its last checkpoint: the config
 * gets train.resume=true when the training section has that key.
 *
 * Files (all under <run.out_dir>/<run.name>/slurm/, written tmp + rename): the script
 * <job_name>.sbatch, the group files, logs/ (%j.out or %A_%a.out), and jobs.tsv, one
 * line per submission (job id, kind, groups, configs, time, command) that `saev status`
 * reads. --dry-run prints the script (and the group files, as comments) and writes nothing.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "check.h"
#include "commands.h"
#include "config_args.h"
#include "mpirun.h"
#include "saev_config.h"
#include "slurm_script.h"

/* submit flag -> slurm.<key> */
static const char *const flag_keys[][2] = {
    {"--nodes", "nodes"}, {"--tasks-per-node", "tasks_per_node"}, {"--gpus-per-task", "gpus_per_task"},
    {"--cpus-per-task", "cpus_per_task"}, {"--mem", "mem"}, {"--time", "time"}, {"--account", "account"},
    {"--partition", "partition"}, {"--qos", "qos"}, {"--job-name", "job_name"}, {"--log-dir", "log_dir"},
    {"--group-size", "group_size"}, {"--max-parallel", "max_parallel"}, {"--template", "template_path"},
};
enum { N_FLAGS = (int)(sizeof flag_keys / sizeof flag_keys[0]) };

static void usage(FILE *out) {
    fprintf(out,
            "usage: saev submit COMMAND [CONFIG.yaml] [--set key.path=value ...] [flags] [--dry-run]\n"
            "       saev submit worker STAGE [CONFIG.yaml] [--set ...] [flags] [--dry-run] [-- STAGE ARGS]\n\n"
            "Writes a Slurm batch script for `saev COMMAND CONFIG` from the templates in slurm/ and\n"
            "submits it with sbatch, printing the job id; --dry-run prints the script instead.\n"
            "Resources come from the config's slurm: section; each flag below overrides its key:\n");
    for (int i = 0; i < N_FLAGS; i++) fprintf(out, "  %-18s slurm.%s\n", flag_keys[i][0], flag_keys[i][1]);
    fprintf(out,
            "  --no-requeue       slurm.requeue=false\n\n"
            "The job runs slurm.nodes x slurm.tasks_per_node ranks, started by `srun --mpi=pmix`;\n"
            "without slurm.tasks_per_node, run.ranks (or --ranks) decides it, spread over the nodes;\n"
            "both given and different is an error. A sweep with slurm.group_size > 0 becomes a job array, one task per\n"
            "group of group_size configs (<run dir>/slurm/group_<i>.yaml). Outputs, logs and the\n"
            "script go under <run.out_dir>/<run.name>; `saev status` summarizes them.\n");
}

/* Does the composed schema have the dotted key (e.g. "train.resume")? */
static int schema_has(const CfgSchema *s, const char *path) {
    const char *dot = strchr(path, '.');
    size_t len = dot ? (size_t)(dot - path) : strlen(path);
    for (int i = 0; i < s->n_fields; i++) {
        const CfgField *f = &s->fields[i];
        if (strlen(f->key) != len || strncmp(f->key, path, len)) continue;
        if (!dot) return 1;
        return f->type == CFG_SECTION && schema_has(f->section, dot + 1);
    }
    return 0;
}



/* `--flag value` as the --set of its slurm: key. String keys (by the schema) are
 * single-quoted YAML so that "01:00:00", "64G" or "007" stay strings. */
static char *flag_set(const char *key, const char *val) {
    const CfgField *field = NULL;
    for (int i = 0; i < slurm_config_schema.n_fields && !field; i++)
        if (!strcmp(slurm_config_schema.fields[i].key, key)) field = &slurm_config_schema.fields[i];
    if (!field) saev_fail("saev submit: slurm.%s is not in the slurm: schema (flag_keys and slurm_config.c disagree)", key);
    char *s = mallocCheck(strlen(key) + 2 * strlen(val) + 16), *o = s;
    o += sprintf(o, "slurm.%s=", key);
    if (field->type != CFG_STRING) {
        sprintf(o, "%s", val);
        return s;
    }
    *o++ = '\'';
    for (const char *c = val; *c; c++) {
        if (*c == '\'') *o++ = '\''; /* YAML single quotes escape a quote by doubling it */
        *o++ = *c;
    }
    *o++ = '\'';
    *o = 0;
    return s;
}

/* The job's shape: it runs slurm.nodes x slurm.tasks_per_node ranks. When neither the
 * config nor a flag gives slurm.tasks_per_node, run.ranks decides it (spread evenly over
 * the nodes); both given and different is refused naming both keys, since one of them
 * would be quietly ignored. Writes the --sets that make the configs agree. */
static void job_shape_or_die(const CfgArgs *load, const SaevConfig *c, char *ranks_set, char *tasks_set, size_t len) {
    long long nodes = c->slurm.nodes, tasks = c->slurm.tasks_per_node, ranks = c->run.ranks;
    int tasks_given = saev_config_given(load, "slurm.tasks_per_node"), ranks_given = saev_config_given(load, "run.ranks");
    if (tasks_given) {
        if (ranks_given && ranks != nodes * tasks)
            saev_usage_fail("saev submit: run.ranks=%lld conflicts with slurm.nodes x slurm.tasks_per_node = %lld x %lld = %lld "
                            "ranks; give one of them, or both alike", ranks, nodes, tasks, nodes * tasks);
        ranks = nodes * tasks;
    } else if (ranks_given) {
        if (ranks % nodes)
            saev_usage_fail("saev submit: run.ranks=%lld does not spread evenly over slurm.nodes=%lld; set slurm.tasks_per_node",
                            ranks, nodes);
        tasks = ranks / nodes;
    } else {
        ranks = nodes * tasks;
    }
    snprintf(ranks_set, len, "run.ranks=%lld", ranks);
    snprintf(tasks_set, len, "slurm.tasks_per_node=%lld", tasks);
}

static char *absolute(const char *path) {
    if (path[0] == '/') return strdupCheck(path);
    char cwd[PATH_MAX];
    libcCheckPtr(getcwd(cwd, sizeof cwd), "cannot read the current directory");
    char *out = mallocCheck(strlen(cwd) + strlen(path) + 2);
    sprintf(out, "%s/%s", cwd, path);
    return out;
}

/* Runs `sbatch --parsable script` and returns the job id it prints. */
static char *sbatch(const char *script) {
    int fds[2];
    libcCheck(pipe(fds));
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) saev_libc_fail(__FILE__, __LINE__, "fork()", NULL);
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execlp("sbatch", "sbatch", "--parsable", script, (char *)NULL);
        fprintf(stderr, "error: cannot run sbatch: %s (is Slurm installed, and is this a login node?)\n", strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    char out[256] = "";
    size_t n = 0;
    ssize_t got;
    while ((got = read(fds[0], out + n, sizeof out - 1 - n)) > 0 || (got < 0 && errno == EINTR))
        if (got > 0) n += (size_t)got;
    out[n] = 0;
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) saev_libc_fail(__FILE__, __LINE__, "waitpid()", NULL);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        saev_fail("sbatch refused %s (exit %d); its message is above", script, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    out[strcspn(out, ";\n")] = 0; /* "id" or "id;cluster" */
    if (!*out) saev_fail("sbatch printed no job id for %s", script);
    return strdupCheck(out);
}

int cmd_submit(int argc, char **argv) {
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 0; }
    if (argc < 2 || argv[1][0] == '-') saev_usage_fail("saev submit: missing COMMAND (see saev submit --help)");
    const char *command = argv[1];
    const char *stage = NULL;
    int first = 1; /* argv index cfg_args_parse sees as its command name */
    if (!strcmp(command, "worker")) {
        if (argc < 3 || argv[2][0] == '-') saev_usage_fail("saev submit worker: missing STAGE (see saev-worker --help)");
        stage = argv[2];
        first = 2;
    } else if (!launcher_has_command(command) || !strcmp(command, "submit") || !strcmp(command, "status")) {
        saev_usage_fail("saev submit: \"%s\" is not a command a job can run (see saev --help; worker stages: saev submit worker STAGE)", command);
    }
    /* Worker-stage arguments after "--" go to the stage untouched. */
    int end = argc;
    for (int i = first; i < argc; i++)
        if (!strcmp(argv[i], "--")) { end = i; break; }
    static const char *value_flags[N_FLAGS + 1];
    for (int i = 0; i < N_FLAGS; i++) value_flags[i] = flag_keys[i][0];
    CfgArgs args;
    cfg_args_parse_or_die(end - first, argv + first, value_flags, &args);
    /* Flags become --set slurm.<key>=value, after the user's --sets. */
    int dry_run = 0;
    const char **sets = callocCheck((size_t)args.n_sets + (size_t)args.argc + 5, sizeof(char *));
    char **owned = callocCheck((size_t)args.argc + 4, sizeof(char *));
    int n_sets = 0, n_owned = 0;
    for (int i = 0; i < args.n_sets; i++) sets[n_sets++] = args.sets[i];
    for (int i = 1; i < args.argc; i++) {
        const char *a = args.argv[i];
        if (!strcmp(a, "--dry-run")) { dry_run = 1; continue; }
        if (!strcmp(a, "--no-requeue")) { sets[n_sets++] = "slurm.requeue=false"; continue; }
        int k = -1;
        const char *val = NULL;
        for (int j = 0; j < N_FLAGS && k < 0; j++) {
            size_t len = strlen(flag_keys[j][0]);
            if (!strncmp(a, flag_keys[j][0], len) && (a[len] == 0 || a[len] == '=')) k = j, val = a[len] ? a + len + 1 : NULL;
        }
        if (k < 0) saev_usage_fail("saev submit: unknown argument \"%s\" (see saev submit --help)", a);
        if (!val) {
            if (i + 1 >= args.argc) saev_usage_fail("saev submit: %s needs a value", a);
            val = args.argv[++i];
        }
        sets[n_sets++] = owned[n_owned++] = flag_set(flag_keys[k][1], val);
    }

    /* First pass: the job's shape, which the configs then get. */
    CfgArgs load = args;
    load.sets = sets;
    load.n_sets = n_sets;
    SaevConfig *configs;
    int n = saev_config_load_or_die(&load, &configs);
    char *slurm0 = cfg_dump(&slurm_config_schema, &configs[0].slurm);
    for (int i = 1; i < n; i++) {
        char *d = cfg_dump(&slurm_config_schema, &configs[i].slurm);
        if (strcmp(d, slurm0)) saev_usage_fail("saev submit: the sweep varies slurm.* keys (configs 1 and %d differ); one job array has one shape", i + 1);
        free(d);
    }
    free(slurm0);
    char ranks_set[64], tasks_set[64];
    job_shape_or_die(&load, &configs[0], ranks_set, tasks_set, sizeof ranks_set);
    sets[n_sets++] = ranks_set;
    sets[n_sets++] = tasks_set;
    if (!stage && schema_has(&saev_config_schema, "train.resume")) sets[n_sets++] = "train.resume=true";
    saev_config_free(configs, n);
    load.sets = sets;
    load.n_sets = n_sets;
    n = saev_config_load_or_die(&load, &configs);
    const SlurmConfig *sc = &configs[0].slurm;

    char *out_dir = absolute(configs[0].run.out_dir);
    char *run_dir = mallocCheck(strlen(out_dir) + strlen(configs[0].run.name) + 2);
    sprintf(run_dir, "%s/%s", out_dir, configs[0].run.name);
    char *slurm_dir = mallocCheck(strlen(run_dir) + 8);
    sprintf(slurm_dir, "%s/slurm", run_dir);
    char *log_dir;
    if (sc->log_dir) log_dir = absolute(sc->log_dir);
    else {
        log_dir = mallocCheck(strlen(slurm_dir) + 8);
        sprintf(log_dir, "%s/logs", slurm_dir);
    }
    char cwd[PATH_MAX];
    libcCheckPtr(getcwd(cwd, sizeof cwd), "cannot read the current directory");
    char job_name[256];
    snprintf(job_name, sizeof job_name, "%s", sc->job_name ? sc->job_name : configs[0].run.name);
    for (char *c = job_name; *c; c++)
        if (*c == ' ' || *c == '/' || *c == '\t') *c = '_';

    /* Groups of a job array. */
    int group_size = (int)sc->group_size, n_groups = 0;
    char **groups = NULL;
    if (group_size > 0 && n > 1 && !stage) {
        if (group_size > n) group_size = n;
        n_groups = (n + group_size - 1) / group_size;
        groups = callocCheck((size_t)n_groups, sizeof(char *));
        for (int g = 0; g < n_groups; g++) {
            int lo = g * group_size, cnt = lo + group_size <= n ? group_size : n - lo;
            char err[1024];
            groups[g] = sweep_group_yaml(configs + lo, cnt, err, sizeof err);
            if (!groups[g])
                saev_usage_fail("saev submit: slurm.group_size=%d: group %d (configs %d-%d of %d): %s", group_size, g, lo + 1,
                                lo + cnt, n, err);
        }
    }

    /* The command the job runs. */
    char *cmd = NULL;
    char self[PATH_MAX];
    self_exe_path(self, sizeof self);
    if (stage) {
        char worker[PATH_MAX + 16];
        snprintf(worker, sizeof worker, "%s/saev-worker", launcher_dir());
        shell_append_word(&cmd, "srun");
        shell_append_word(&cmd, "--mpi=pmix");
        shell_append_word(&cmd, "--kill-on-bad-exit=1");
        shell_append_word(&cmd, worker);
        shell_append_word(&cmd, stage);
        for (int i = end + 1; i < argc; i++) shell_append_word(&cmd, argv[i]);
    } else {
        shell_append_word(&cmd, self);
        shell_append_word(&cmd, command);
        if (n_groups > 0) {
            cmd = reallocCheck(cmd, strlen(cmd) + 32);
            strcat(cmd, " \"$SAEV_GROUP_CONFIG\"");
        } else {
            if (args.config_path) {
                char *cfg = absolute(args.config_path);
                shell_append_word(&cmd, cfg);
                free(cfg);
            }
            for (int i = 0; i < n_sets; i++) {
                shell_append_word(&cmd, "--set");
                shell_append_word(&cmd, sets[i]);
            }
        }
    }
    SlurmJob job = {.slurm = sc, .job_name = job_name, .run_dir = run_dir, .log_dir = log_dir, .workdir = cwd,
                    .command = cmd, .n_groups = n_groups, .n_configs = n, .group_size = group_size};
    char *script = slurm_script_render(&job);

    if (dry_run) {
        fputs(script, stdout);
        for (int g = 0; g < n_groups; g++) {
            printf("\n# ---- %s/group_%d.yaml\n", slurm_dir, g);
            for (char *line = groups[g]; *line;) {
                char *eol = strchr(line, '\n');
                printf("# %.*s\n", eol ? (int)(eol - line) : (int)strlen(line), line);
                line = eol ? eol + 1 : line + strlen(line);
            }
        }
    } else {
        make_dirs_or_die(slurm_dir);
        make_dirs_or_die(log_dir);
        char path[PATH_MAX];
        for (int g = 0; g < n_groups; g++) {
            snprintf(path, sizeof path, "%s/group_%d.yaml", slurm_dir, g);
            write_file_atomic_or_die(path, groups[g], strlen(groups[g]));
        }
        snprintf(path, sizeof path, "%s/%s.sbatch", slurm_dir, job_name);
        write_file_atomic_or_die(path, script, strlen(script));
        libcCheck(chmod(path, 0755));
        char *id = sbatch(path);
        /* jobs.tsv: one line per submission, appended (O_APPEND keeps lines whole). */
        char line[PATH_MAX + 512];
        char when[32];
        time_t now = time(NULL);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", localtime(&now));
        snprintf(line, sizeof line, "%s\t%s\t%d\t%d\t%s\t%s\n", id, n_groups > 0 ? "array" : sc->nodes > 1 ? "multinode" : "single",
                 n_groups, n, when, stage ? stage : command);
        char jobs[PATH_MAX];
        snprintf(jobs, sizeof jobs, "%s/jobs.tsv", slurm_dir);
        FILE *f = fopen(jobs, "a");
        if (!f || fputs(line, f) < 0 || fclose(f) != 0) saev_fail("submitted job %s but cannot record it in %s: %s", id, jobs, strerror(errno));
        printf("%s\n", id);
        fprintf(stderr, "saev: submitted %s as job %s%s (script %s, logs %s)\n", stage ? stage : command, id,
                n_groups > 0 ? " (array)" : "", path, log_dir);
        free(id);
    }
    free(script);
    free(cmd);
    for (int g = 0; g < n_groups; g++) free(groups[g]);
    free(groups);
    free(log_dir);
    free(slurm_dir);
    free(run_dir);
    free(out_dir);
    for (int i = 0; i < n_owned; i++) free(owned[i]);
    free(owned);
    free(sets);
    saev_config_free(configs, n);
    cfg_args_free(&args);
    return 0;
}
