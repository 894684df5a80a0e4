/*
 * config_args.c: the shared command-line arguments of config-driven commands (see
 * config_args.h): the config path, --set, --ranks and --device.
 */
#include "config_args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "device.h"

// If argv[*i] is `flag` or `flag=value`, sets *value (advancing *i past a separate value)
// and returns 1; a missing value gives -1. Returns 0 when argv[*i] is another argument.
static int take_flag(int argc, char **argv, int *i, const char *flag, const char **value) {
    size_t len = strlen(flag);
    if (strncmp(argv[*i], flag, len)) return 0;
    if (argv[*i][len] == '=') {
        *value = argv[*i] + len + 1;
        return **value ? 1 : -1;
    }
    if (argv[*i][len]) return 0;
    if (*i + 1 >= argc) return -1;
    *value = argv[++*i];
    return 1;
}

int cfg_args_parse(int argc, char **argv, const char *const *value_flags, CfgArgs *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    out->sets = mallocCheck((size_t)(argc + 1) * sizeof *out->sets);
    out->argv = mallocCheck((size_t)(argc + 1) * sizeof *out->argv);
    out->argv[out->argc++] = argc > 0 ? argv[0] : NULL;
    static const char *usage[] = {"--set key.path=value", "--ranks N", "--device cpu|cuda|auto"};
    for (int i = 1; i < argc; i++) {
        const char *flags[] = {"--set", "--ranks", "--device"}, *value = NULL;
        int which = -1, rc = 0;
        for (int k = 0; k < 3 && !rc; k++)
            if ((rc = take_flag(argc, argv, &i, flags[k], &value))) which = k;
        if (rc < 0) {
            snprintf(err, errlen, "%s needs a value: %s", flags[which], usage[which]);
            goto fail;
        }
        if (which == 0) {
            if (!strchr(value, '=')) {
                snprintf(err, errlen, "--set %s: expected %s", value, usage[0]);
                goto fail;
            }
            out->sets[out->n_sets++] = value;
        } else if (which == 1) {
            long long n = 0;
            if (parse_flag_int("--ranks", value, 1, 1000000, &n, NULL, 0)) {
                snprintf(err, errlen, "--ranks %s: expected a positive number of ranks", value);
                goto fail;
            }
            out->ranks = (int)n;
        } else if (which == 2) {
            Device device;
            if (device_parse(value, &device)) {
                snprintf(err, errlen, "--device %s: expected cpu, cuda or auto", value);
                goto fail;
            }
            out->device = value;
        } else if (argv[i][0] != '-' && !out->config_path) {
            out->config_path = argv[i];
        } else {
            out->argv[out->argc++] = argv[i];
            for (int k = 0; value_flags && value_flags[k]; k++)
                if (!strcmp(argv[i], value_flags[k])) {
                    if (i + 1 >= argc) {
                        snprintf(err, errlen, "%s needs a value", argv[i]);
                        goto fail;
                    }
                    out->argv[out->argc++] = argv[++i];
                    break;
                }
        }
    }
    out->argv[out->argc] = NULL;
    return 0;
fail:
    cfg_args_free(out);
    return -1;
}

void cfg_args_parse_or_die(int argc, char **argv, const char *const *value_flags, CfgArgs *out) {
    char err[1024];
    if (cfg_args_parse(argc, argv, value_flags, out, err, sizeof err)) saev_usage_fail("%s", err);
}

void cfg_args_free(CfgArgs *args) {
    free(args->sets);
    free(args->argv);
    memset(args, 0, sizeof *args);
}

int parse_flag_int(const char *flag, const char *text, long long lo, long long hi, long long *out, char *err, size_t errlen) {
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (!*text || *end || errno || v < lo || v > hi)
        return saev_errf(err, errlen, "%s wants a whole number in [%lld, %lld], got \"%s\"", flag, lo, hi, text);
    *out = v;
    return 0;
}

long long flag_int_or_die(const char *command, const char *flag, const char *text, long long lo, long long hi) {
    char err[512];
    long long v = 0;
    if (parse_flag_int(flag, text, lo, hi, &v, err, sizeof err)) saev_usage_fail("%s: %s", command, err);
    return v;
}
