/*
 * slurm_script.c: see slurm_script.h. Template filling, the #SBATCH block, shell
 * quoting, and the YAML of a sweep group.
 */
#include "slurm_script.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "fsutil.h"
#include "mpirun.h"

// ---- growing strings ----------------------------------------------------------------

SAEV_PRINTF(2, 3) static void append(char **text, const char *fmt, ...) {
    size_t have = *text ? strlen(*text) : 0;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    *text = reallocCheck(*text, have + (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(*text + have, (size_t)n + 1, fmt, ap);
    va_end(ap);
}

void shell_append_word(char **text, const char *s) {
    if (*text && **text) append(text, " ");
    int plain = *s != 0;
    for (const char *c = s; *c; c++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,+@%", *c)) plain = 0;
    if (plain) { append(text, "%s", s); return; }
    append(text, "'");
    for (const char *c = s; *c; c++) {
        if (*c == '\'') append(text, "'\\''");
        else append(text, "%c", *c);
    }
    append(text, "'");
}

// ---- templates ----------------------------------------------------------------------

static int has_file(const char *dir, const char *name) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, R_OK) == 0;
}

const char *slurm_template_dir(void) {
    const char *env = getenv("SAEV_SLURM_TEMPLATES");
    if (env && *env) {
        if (!has_file(env, "single.sbatch")) saev_usage_fail("SAEV_SLURM_TEMPLATES=%s has no single.sbatch", env);
        return env;
    }
    char tried[4 * PATH_MAX];
    const char *dir = saev_share_dir("slurm", "single.sbatch", tried, sizeof tried);
    if (!dir)
        saev_usage_fail("cannot find the Slurm templates (slurm/single.sbatch) in %s; set SAEV_SLURM_TEMPLATES=DIR or "
                        "slurm.template_path", tried);
    return dir;
}

typedef struct {
    const char *name;
    char *value; /* malloc'd */
} Var;

static char *fill(const char *path, const char *text, const Var *vars, int n_vars) {
    char *out = strdupCheck("");
    int line = 1;
    for (const char *p = text; *p;) {
        if (p[0] == '{' && p[1] == '{') {
            const char *end = strstr(p + 2, "}}");
            if (!end) saev_usage_fail("%s:%d: unclosed {{ in the Slurm template", path, line);
            int len = (int)(end - p - 2), found = 0;
            for (int i = 0; i < n_vars; i++)
                if ((int)strlen(vars[i].name) == len && !strncmp(vars[i].name, p + 2, (size_t)len)) {
                    append(&out, "%s", vars[i].value);
                    found = 1;
                }
            if (!found) {
                char known[512] = "";
                for (int i = 0; i < n_vars; i++) snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "", vars[i].name);
                saev_usage_fail("%s:%d: unknown placeholder {{%.*s}} in the Slurm template (known: %s)", path, line, len, p + 2, known);
            }
            p = end + 2;
            continue;
        }
        if (*p == '\n') line++;
        append(&out, "%c", *p++);
    }
    return out;
}

static void no_space(const char *what, const char *s) {
    for (const char *c = s; *c; c++)
        if (*c == ' ' || *c == '\t' || *c == '\n' || *c == '"' || *c == '\'')
            saev_usage_fail("%s \"%s\" contains whitespace or quotes, which #SBATCH lines cannot carry; choose another", what, s);
}

static char *sbatch_block(const SlurmJob *job) {
    const SlurmConfig *c = job->slurm;
    char *b = strdupCheck("");
    no_space("the job name", job->job_name);
    no_space("the log directory", job->log_dir);
    append(&b, "#SBATCH --job-name=%s\n", job->job_name);
    append(&b, "#SBATCH --nodes=%lld\n", (long long)c->nodes);
    append(&b, "#SBATCH --ntasks-per-node=%lld\n", (long long)c->tasks_per_node);
    append(&b, "#SBATCH --cpus-per-task=%lld\n", (long long)c->cpus_per_task);
    if (c->gpus_per_task > 0) append(&b, "#SBATCH --gpus-per-task=%lld\n", (long long)c->gpus_per_task);
    if (c->mem) append(&b, "#SBATCH --mem=%s\n", c->mem);
    append(&b, "#SBATCH --time=%s\n", c->time);
    if (c->account) no_space("slurm.account", c->account), append(&b, "#SBATCH --account=%s\n", c->account);
    if (c->partition) no_space("slurm.partition", c->partition), append(&b, "#SBATCH --partition=%s\n", c->partition);
    if (c->qos) no_space("slurm.qos", c->qos), append(&b, "#SBATCH --qos=%s\n", c->qos);
    append(&b, "#SBATCH --output=%s/%s.out\n", job->log_dir, job->n_groups > 0 ? "%A_%a" : "%j");
    /* A requeued job appends to its log instead of wiping the first attempt's. */
    append(&b, "#SBATCH --open-mode=append\n");
    append(&b, "#SBATCH %s\n", c->requeue ? "--requeue" : "--no-requeue");
    if (job->n_groups > 0) {
        append(&b, "#SBATCH --array=0-%d", job->n_groups - 1);
        if (c->max_parallel > 0) append(&b, "%%%lld", (long long)c->max_parallel);
        append(&b, "\n");
    }
    for (int i = 0; i < c->sbatch.n; i++) append(&b, "#SBATCH %s\n", c->sbatch.s[i]);
    b[strlen(b) - 1] = 0; /* the template's own newline ends the block */
    return b;
}

SAEV_PRINTF(1, 2) static char *fmt(const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    char *s = mallocCheck((size_t)n + 1);
    va_start(ap, f);
    vsnprintf(s, (size_t)n + 1, f, ap);
    va_end(ap);
    return s;
}

static char *quoted(const char *s) {
    char *q = NULL;
    shell_append_word(&q, s);
    return q;
}

char *slurm_script_render(const SlurmJob *job) {
    const SlurmConfig *c = job->slurm;
    char path[PATH_MAX];
    if (c->template_path) snprintf(path, sizeof path, "%s", c->template_path);
    else
        snprintf(path, sizeof path, "%s/%s", slurm_template_dir(),
                 job->n_groups > 0 ? "array.sbatch" : c->nodes > 1 ? "multinode.sbatch" : "single.sbatch");
    char err[PATH_MAX + 128];
    char *text = read_file(path, NULL, err, sizeof err);
    if (!text) saev_usage_fail("cannot read the Slurm template: %s", err);
    Var vars[] = {
        {"job_name", strdupCheck(job->job_name)},
        {"sbatch", sbatch_block(job)},
        {"setup", strdupCheck(c->setup ? c->setup : "")},
        {"run_dir", quoted(job->run_dir)},
        {"workdir", quoted(job->workdir)},
        {"command", strdupCheck(job->command)},
        {"nodes", fmt("%lld", (long long)c->nodes)},
        {"ranks", fmt("%lld", (long long)(c->nodes * c->tasks_per_node))},
        {"n_groups", fmt("%d", job->n_groups)},
        {"n_configs", fmt("%d", job->n_configs)},
        {"group_size", fmt("%d", job->group_size)},
    };
    int n_vars = (int)(sizeof vars / sizeof vars[0]);
    char *out = fill(path, text, vars, n_vars);
    for (int i = 0; i < n_vars; i++) free(vars[i].value);
    free(text);
    return out;
}

// ---- sweep groups -------------------------------------------------------------------

/* cfg_dump writes one key per line ("<indent>key: value" or "<indent>key:" opening a
 * section); this turns it into dotted paths and value texts. */
typedef struct {
    int n;
    char **path;  /* [n] */
    char **value; /* [n] YAML text of the value */
} Leaves;

static void leaves_of(const char *dump, Leaves *out) {
    memset(out, 0, sizeof *out);
    char stack[16][128];
    int indents[16], depth = 0;
    const char *p = dump;
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        char line[4096];
        snprintf(line, sizeof line, "%.*s", (int)len, p);
        p += len + (eol ? 1 : 0);
        int ind = 0;
        while (line[ind] == ' ') ind++;
        char *colon = strstr(line + ind, ":");
        if (!colon) continue;
        while (depth > 0 && indents[depth - 1] >= ind) depth--;
        *colon = 0;
        const char *val = colon[1] == ' ' ? colon + 2 : colon + 1;
        if (!*val) { /* a section: its keys follow, indented */
            if (depth < 16) { snprintf(stack[depth], sizeof stack[depth], "%.127s", line + ind); indents[depth++] = ind; }
            continue;
        }
        char path[1024] = "";
        for (int i = 0; i < depth; i++) snprintf(path + strlen(path), sizeof path - strlen(path), "%.127s.", stack[i]);
        snprintf(path + strlen(path), sizeof path - strlen(path), "%.255s", line + ind);
        out->path = reallocCheck(out->path, (size_t)(out->n + 1) * sizeof(char *));
        out->value = reallocCheck(out->value, (size_t)(out->n + 1) * sizeof(char *));
        out->path[out->n] = strdupCheck(path);
        out->value[out->n++] = strdupCheck(val);
    }
}

static void leaves_free(Leaves *l) {
    for (int i = 0; i < l->n; i++) free(l->path[i]), free(l->value[i]);
    free(l->path);
    free(l->value);
}

char *sweep_group_yaml(const SaevConfig *configs, int n, char *err, size_t errlen) {
    char **dumps = callocCheck((size_t)n, sizeof(char *));
    Leaves *lv = callocCheck((size_t)n, sizeof(Leaves));
    char *text = NULL;
    for (int k = 0; k < n; k++) {
        dumps[k] = cfg_dump(&saev_config_schema, &configs[k]);
        leaves_of(dumps[k], &lv[k]);
    }
    text = strdupCheck(dumps[0]);
    /* Axes: the keys whose value changes within the group, slowest-changing first (the
     * grid's last axis varies fastest), each with its values in order of appearance. */
    int n_axes = 0;
    int *axis = callocCheck((size_t)lv[0].n + 1, sizeof(int)), *first_change = callocCheck((size_t)lv[0].n + 1, sizeof(int));
    for (int k = 1; k < n; k++)
        if (lv[k].n != lv[0].n) {
            snprintf(err, errlen, "sweep configs 1 and %d of the group differ in shape (a section switched to none?)", k + 1);
            goto fail;
        }
    for (int j = 0; j < lv[0].n; j++) {
        int fc = 0;
        for (int k = 1; k < n && !fc; k++)
            if (strcmp(lv[k].path[j], lv[0].path[j])) {
                snprintf(err, errlen, "sweep configs 1 and %d of the group differ in shape (%s vs %s)", k + 1, lv[0].path[j], lv[k].path[j]);
                goto fail;
            } else if (strcmp(lv[k].value[j], lv[0].value[j])) fc = k;
        if (!fc) continue;
        int at = n_axes++;
        while (at > 0 && first_change[at - 1] < fc) { axis[at] = axis[at - 1]; first_change[at] = first_change[at - 1]; at--; }
        axis[at] = j;
        first_change[at] = fc;
    }
    if (n > 1) {
        if (n_axes == 0) { snprintf(err, errlen, "the group's %d configs are identical", n); goto fail; }
        append(&text, "sweep:\n");
        for (int a = 0; a < n_axes; a++) {
            int j = axis[a];
            append(&text, "  %s: [", lv[0].path[j]);
            for (int k = 0; k < n; k++) {
                int seen = 0;
                for (int m = 0; m < k && !seen; m++) seen = !strcmp(lv[m].value[j], lv[k].value[j]);
                if (!seen) append(&text, "%s%s", k ? ", " : "", lv[k].value[j]);
            }
            append(&text, "]\n");
        }
    }
    /* Check: the text expands to exactly these configs, in this order. */
    CfgError e;
    CfgDoc *doc = cfg_parse_string(text, "(sweep group)", &e);
    if (!doc) { snprintf(err, errlen, "internal: the group YAML does not parse: %s", e.msg); goto fail; }
    CfgDoc **docs = NULL;
    int got = cfg_sweep(doc, &docs, &e);
    int same = got == n;
    for (int k = 0; k < got; k++) {
        SaevConfig back;
        if (same && cfg_bind(docs[k], &saev_config_schema, &back, &e) == 0) {
            char *d = cfg_dump(&saev_config_schema, &back);
            same = !strcmp(d, dumps[k]);
            free(d);
            cfg_free_obj(&saev_config_schema, &back);
        } else same = 0;
        cfg_free(docs[k]);
    }
    free(docs);
    cfg_free(doc);
    if (!same) {
        snprintf(err, errlen, "these %d configs are not a grid of their own (the group cuts across a sweep axis); "
                 "choose slurm.group_size as a product of the sizes of the last sweep axes (or 1)", n);
        goto fail;
    }
    goto done;
fail:
    free(text);
    text = NULL;
done:
    for (int k = 0; k < n; k++) free(dumps[k]), leaves_free(&lv[k]);
    free(dumps);
    free(lv);
    free(axis);
    free(first_change);
    return text;
}
