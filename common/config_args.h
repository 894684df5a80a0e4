/*
 * config_args.h: the command-line arguments every config-driven command shares, and the
 * one parser of a command's own integer flags.
 *
 *   saev COMMAND [CONFIG.yaml] [--set key.path=value ...] [--ranks N] [--device cpu|cuda|auto]
 *
 * cfg_args_parse takes a command's argc/argv (argv[0] is the command name) and collects
 * the config path (the first positional argument), every `--set` in order, `--ranks` and
 * `--device`; each flag also takes the `--flag=value` form. Everything else (the command's
 * own flags and further positional arguments) is left, in order, in args->argv after the
 * command name. A command whose own flags take a separate value lists them in
 * `value_flags` (NULL-terminated, e.g. {"--port", NULL}) so that value is left with its
 * flag instead of being taken for the config. A missing or malformed value is a usage
 * error ("--set needs a value: --set key.path=value").
 *
 * Typical use (see launcher/cmd_config.c):
 *   CfgArgs a;
 *   cfg_args_parse_or_die(argc, argv, NULL, &a);   // exits 2 with the message
 *   ... a.config_path, a.sets[0..n_sets), a.ranks, a.device, a.argc/a.argv ...
 *   cfg_args_free(&a);
 * saev_config_load_or_die (saev_config.h) turns these into bound configs, applying
 * --ranks and --device as `--set run.ranks=N` / `--set run.device=D` after the --sets.
 */
#ifndef SAEV_CONFIG_ARGS_H
#define SAEV_CONFIG_ARGS_H

#include <stddef.h>

typedef struct {
    const char *config_path; /* CONFIG.yaml; NULL when not given */
    const char **sets;       /* [n_sets] "key.path=value", in command-line order */
    int n_sets;
    int ranks;               /* --ranks N (N >= 1); 0 when not given */
    const char *device;      /* --device cpu|cuda|auto; NULL when not given */
    int argc;                /* what is left for the command: */
    char **argv;             /* [argc + 1] argv[0] = command name, NULL-terminated */
} CfgArgs;

/* 0, or -1 with a one-line message in err. Pointers point into the caller's argv. */
int cfg_args_parse(int argc, char **argv, const char *const *value_flags, CfgArgs *out, char *err, size_t errlen);
/* Same, but a usage error prints "error: <message>" and exits with status 2. */
void cfg_args_parse_or_die(int argc, char **argv, const char *const *value_flags, CfgArgs *out);
void cfg_args_free(CfgArgs *args);

/* A command's own integer flag: text must be a whole number in [lo, hi]. 0, or -1 with
 * "<flag> wants a whole number in [lo, hi], got "<text>"" in err (when err is not NULL). */
int parse_flag_int(const char *flag, const char *text, long long lo, long long hi, long long *out, char *err, size_t errlen);
/* Same, but a bad value is a usage error "<command>: <message>" (exit status 2). */
long long flag_int_or_die(const char *command, const char *flag, const char *text, long long lo, long long hi);

#endif
