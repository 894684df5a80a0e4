/*
 * cmd_status.c: `saev status RUN_DIR`: a run's or job array's progress from its outputs.
 *
 * Jobs: <RUN_DIR>/slurm/jobs.tsv (written by `saev submit`), each with its state from
 * squeue when the job is still known to Slurm. Outputs: every folder below RUN_DIR
 * (the slurm/ folder excepted, four levels deep at most) holding a training output:
 *   metrics.jsonl                one JSON object per logged step, with a "step" field;
 *   checkpoint*.safetensors or   the checkpoint (sae.safetensors is the name the train
 *   sae.safetensors              stage writes), its step in metadata "step" (else the
 *                                digits in its name);
 *   metrics.json                 the final metrics, written when that SAE is finished.
 * These names are what the train stage writes per SAE (common/sae/train.h; they are
 * the only coupling). The summary counts finished SAEs against the configs submitted.
 */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "commands.h"
#include "safetensors.h"

typedef struct {
    int n_sae, n_done, n_configs;
} Totals;

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Lines and the last line's "step" of a metrics.jsonl (-1 when none parse). */
static long long metrics_last_step(const char *path, long *lines) {
    FILE *f = fopen(path, "r");
    *lines = 0;
    if (!f) return -1;
    char *line = NULL, *last = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        if (n <= 1) continue;
        (*lines)++;
        free(last);
        last = strdupCheck(line);
    }
    free(line);
    fclose(f);
    long long step = -1;
    if (last) {
        cJSON *j = cJSON_Parse(last);
        const cJSON *s = j ? cJSON_GetObjectItemCaseSensitive(j, "step") : NULL;
        if (cJSON_IsNumber(s)) step = (long long)s->valuedouble;
        cJSON_Delete(j);
        free(last);
    }
    return step;
}

static void scan(const char *dir, const char *rel, int depth, Totals *t) {
    DIR *d = opendir(dir);
    if (!d) return;
    char **subs = NULL;
    int n_subs = 0, has_metrics = 0, has_final = 0, n_ckpt = 0;
    long long ckpt_step = -1;
    char ckpt_name[256] = "";
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[PATH_MAX];
        if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p) continue;
        if (is_dir(p)) {
            if (depth == 0 && !strcmp(e->d_name, "slurm")) continue;
            subs = reallocCheck(subs, (size_t)(n_subs + 1) * sizeof(char *));
            subs[n_subs++] = strdupCheck(e->d_name);
        } else if (!strcmp(e->d_name, "metrics.jsonl")) has_metrics = 1;
        else if (!strcmp(e->d_name, "metrics.json")) has_final = 1;
        else if (!strcmp(e->d_name, "sae.safetensors") ||
                 (!strncmp(e->d_name, "checkpoint", 10) && strstr(e->d_name, ".safetensors") && !strstr(e->d_name, ".tmp"))) {
            n_ckpt++;
            long long step = -1;
            SafeTensors st;
            char err[256];
            if (st_open(&st, p, err, sizeof err) == 0) {
                const char *m = st_meta(&st, "step");
                if (m) step = atoll(m);
                st_close(&st);
            }
            if (step < 0) {
                const char *digit = e->d_name + strcspn(e->d_name, "0123456789");
                if (isdigit((unsigned char)*digit)) step = atoll(digit);
            }
            if (step >= ckpt_step) ckpt_step = step, snprintf(ckpt_name, sizeof ckpt_name, "%s", e->d_name);
        }
    }
    closedir(d);
    if (has_metrics || n_ckpt || has_final) {
        long lines = 0;
        long long step = -1;
        if (has_metrics) {
            char p[PATH_MAX];
            if (snprintf(p, sizeof p, "%s/metrics.jsonl", dir) >= (int)sizeof p) return;
            step = metrics_last_step(p, &lines);
        }
        char sstep[32] = "-", cstep[32] = "-";
        if (step >= 0) snprintf(sstep, sizeof sstep, "%lld", step);
        if (ckpt_step >= 0) snprintf(cstep, sizeof cstep, "%lld", ckpt_step);
        printf("  %-40s %10s %8ld %12s  %s\n", *rel ? rel : ".", sstep, lines, cstep, has_final ? "done" : "running/incomplete");
        t->n_sae++;
        t->n_done += has_final;
    }
    /* Sorted, so the listing is stable. */
    for (int i = 0; i < n_subs; i++)
        for (int j = i + 1; j < n_subs; j++)
            if (strcmp(subs[j], subs[i]) < 0) { char *x = subs[i]; subs[i] = subs[j]; subs[j] = x; }
    for (int i = 0; i < n_subs; i++) {
        if (depth < 4) {
            char p[PATH_MAX], r[PATH_MAX];
            if (snprintf(p, sizeof p, "%s/%s", dir, subs[i]) < (int)sizeof p &&
                snprintf(r, sizeof r, "%s%s%s", rel, *rel ? "/" : "", subs[i]) < (int)sizeof r)
                scan(p, r, depth + 1, t);
        }
        free(subs[i]);
    }
    free(subs);
}

/* squeue's view of a job: "RUNNING 1:02" etc., or NULL when Slurm no longer knows it. */
static int job_state(const char *id, char *out, size_t outlen) {
    for (const char *c = id; *c; c++)
        if (!isdigit((unsigned char)*c) && *c != '_') return 0;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "squeue -h -j %s -o '%%i %%T %%M %%R' 2>/dev/null", id);
    FILE *p = popen(cmd, "r");
    if (!p) return 0;
    size_t n = 0;
    char line[256];
    out[0] = 0;
    while (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = 0;
        if (n + strlen(line) + 4 < outlen) n += (size_t)snprintf(out + n, outlen - n, "%s%s", n ? "; " : "", line);
    }
    pclose(p);
    return out[0] != 0;
}

int cmd_status(int argc, char **argv) {
    if (argc != 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        FILE *out = argc == 2 ? stdout : stderr;
        fprintf(out, "usage: saev status RUN_DIR\n\n"
                     "Summarizes a run (<run.out_dir>/<run.name>): the Slurm jobs `saev submit` recorded and\n"
                     "their queue state, and per SAE output folder the last metrics step, the newest\n"
                     "checkpoint's step, and whether it finished (metrics.json written).\n");
        return argc == 2 ? 0 : SAEV_EXIT_USAGE;
    }
    const char *run = argv[1];
    if (!is_dir(run)) saev_usage_fail("saev status: %s is not a run directory", run);
    Totals t = {0, 0, 0};
    printf("run %s\n", run);
    char jobs[PATH_MAX];
    snprintf(jobs, sizeof jobs, "%s/slurm/jobs.tsv", run);
    FILE *f = fopen(jobs, "r");
    if (f) {
        printf("jobs (%s):\n", jobs);
        char line[PATH_MAX + 512];
        while (fgets(line, sizeof line, f)) {
            line[strcspn(line, "\n")] = 0;
            char id[64] = "", kind[32] = "", when[64] = "", what[256] = "";
            int groups = 0, configs = 0;
            if (sscanf(line, "%63[^\t]\t%31[^\t]\t%d\t%d\t%63[^\t]\t%255[^\n]", id, kind, &groups, &configs, when, what) < 6) continue;
            char state[1024];
            int known = job_state(id, state, sizeof state);
            printf("  job %-10s %-9s %-12s configs %-4d groups %-4d submitted %s: %s\n", id, kind, what, configs, groups, when,
                   known ? state : "not in the queue (finished, cancelled or purged)");
            t.n_configs = configs; /* the latest submission is the plan */
        }
        fclose(f);
    } else printf("jobs: none recorded (no %s)\n", jobs);
    printf("outputs:\n  %-40s %10s %8s %12s  %s\n", "folder", "last step", "lines", "checkpoint", "state");
    scan(run, "", 0, &t);
    if (t.n_sae == 0) printf("  (no metrics.jsonl, sae.safetensors or checkpoint*.safetensors yet)\n");
    printf("summary: %d of %d SAE output(s) finished", t.n_done, t.n_sae);
    if (t.n_configs > 0) printf(", %d config(s) submitted", t.n_configs);
    printf("%s\n", t.n_configs > 0 && t.n_done >= t.n_configs ? ": complete" : "");
    return 0;
}
