/*
 * mpirun.c: see mpirun.h.
 */
#include "mpirun.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "fsutil.h"
#include "log.h"
#include "saev_config.h"

const char *launcher_dir(void) {
    static char dir[PATH_MAX];
    if (!dir[0]) {
        self_exe_path(dir, sizeof dir);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
    }
    return dir;
}

static int dir_has(const char *dir, const char *name) {
    char p[PATH_MAX + 256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, R_OK) == 0;
}

const char *saev_share_dir(const char *sub, const char *probe, char *tried, size_t tried_len) {
    static char found[4][PATH_MAX]; /* one slot per call site kind; callers copy if they keep it */
    static int slot = 0;
    char cand[3][PATH_MAX + 64];
    const char *env = getenv("SAEV_SHARE_DIR");
    int n = 0;
    if (env && *env) snprintf(cand[n++], sizeof cand[0], "%s/%s", env, sub);
    snprintf(cand[n++], sizeof cand[0], "%s/../share/saev-c/%s", launcher_dir(), sub);
    snprintf(cand[n++], sizeof cand[0], "%s/%s", SAEV_SOURCE_DIR, sub);
    if (tried && tried_len) tried[0] = 0;
    for (int i = 0; i < n; i++) {
        if (tried && tried_len) {
            size_t used = strlen(tried);
            snprintf(tried + used, tried_len - used, "%s%s", used ? ", " : "", cand[i]);
        }
        char *real = realpath(cand[i], NULL);
        if (real && dir_has(real, probe)) {
            char *out = found[slot++ % 4];
            snprintf(out, PATH_MAX, "%s", real);
            free(real);
            return out;
        }
        free(real);
    }
    return NULL;
}

const char *launcher_sibling(const char *program) {
    static char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", launcher_dir(), program);
    if (access(path, X_OK) != 0) saev_fail("%s not found beside saev (%s); rebuild with `make`", program, path);
    return path;
}

static pid_t g_child = -1;
static void forward_signal(int sig) {
    if (g_child > 0) kill(g_child, sig);
}

int launch_worker(int ranks, const char *stage, int argc, char **argv) {
    if (ranks < 1) saev_usage_fail("--ranks must be at least 1 (got %d)", ranks);
    const char *worker = launcher_sibling("saev-worker");
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1) cores = 1;
    int in_slurm = getenv("SLURM_JOB_ID") != NULL && getenv("SAEV_NO_SRUN") == NULL;
    char np[32];
    snprintf(np, sizeof np, "%d", ranks);
    char **args = callocCheck((size_t)argc + 16, sizeof(char *));
    int k = 0;
    if (!getenv("OPENBLAS_NUM_THREADS")) {
        char t[24];
        snprintf(t, sizeof t, "%ld", cores / ranks > 0 ? cores / ranks : 1);
        setenv("OPENBLAS_NUM_THREADS", t, 1);
    }
    if (in_slurm) {
        args[k++] = "srun";
        args[k++] = "--mpi=pmix";
        args[k++] = "--kill-on-bad-exit=1";
        /* Inside an allocation srun uses its task count; a --ranks that disagrees is an error
         * the worker reports (world size vs SLURM_NTASKS). */
    } else {
        args[k++] = "mpirun";
        args[k++] = "-np";
        args[k++] = np;
        if (ranks > cores) args[k++] = "--oversubscribe";
        /* Open MPI binds each of up to two ranks to one core; a rank meant to run several
         * threads would then run them all on that core (OpenBLAS even caps itself to it),
         * so 1 rank on 2 cores ran at the speed of one. */
        if (atoi(getenv("OPENBLAS_NUM_THREADS")) > 1) {
            args[k++] = "--bind-to";
            args[k++] = "none";
        }
        if (geteuid() == 0) {
            setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
            setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
        }
    }
    args[k++] = (char *)worker;
    args[k++] = (char *)stage;
    for (int i = 0; i < argc; i++) args[k++] = argv[i];
    args[k] = NULL;
    if (getenv("SAEV_LOG_LEVEL") && !strcmp(getenv("SAEV_LOG_LEVEL"), "debug")) {
        fprintf(stderr, "debug: launching:");
        for (int i = 0; i < k; i++) fprintf(stderr, " %s", args[i]);
        fprintf(stderr, "\n");
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) saev_libc_fail(__FILE__, __LINE__, "fork()", NULL);
    if (pid == 0) {
        execvp(args[0], args);
        fprintf(stderr, "error: cannot start %s: %s (is %s installed?)\n", args[0], strerror(errno),
                in_slurm ? "Slurm" : "Open MPI (openmpi-bin)");
        _exit(127);
    }
    g_child = pid;
    signal(SIGINT, forward_signal);
    signal(SIGTERM, forward_signal);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) saev_libc_fail(__FILE__, __LINE__, "waitpid()", NULL);
    free(args);
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "error: the workers were killed by signal %d\n", WTERMSIG(status));
        return 128 + WTERMSIG(status);
    }
    return 1;
}

int launch_config_stage(const char *stage, const char *usage, int config_required, StageCheck check, int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("%s", usage);
            return 0;
        }
    CfgArgs args;
    cfg_args_parse_or_die(argc, argv, NULL, &args);
    if (config_required && !args.config_path) saev_usage_fail("saev %s: missing CONFIG.yaml (see saev %s --help)", stage, stage);
    if (args.argc > 1) saev_usage_fail("saev %s: unexpected argument \"%s\"", stage, args.argv[1]);
    SaevConfig *cfgs;
    int n = saev_config_load_or_die(&args, &cfgs);
    if (check) check(cfgs, n, args.config_path ? args.config_path : "(no config)");
    int ranks = (int)cfgs[0].run.ranks;
    saev_config_free(cfgs, n);
    cfg_args_free(&args);
    return launch_worker(ranks, stage, argc - 1, argv + 1);
}
