/*
 * cmd_config.c: `saev config CONFIG.yaml [--set ...]`: binds the whole configuration,
 * expands sweeps and prints the resolved YAML (defaults and overrides applied) of each
 * config, so users can check a config before running it. Errors exit with status 2.
 * `saev config --reference` lists every key the configuration takes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "commands.h"
#include "saev_config.h"

int cmd_config(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: saev config CONFIG.yaml [--set key.path=value ...] [--ranks N] [--device cpu|cuda|auto]\n"
                   "       saev config --reference\n\n"
                   "Checks CONFIG.yaml and prints the resolved config (defaults and --set overrides\n"
                   "applied) as YAML; a sweep prints one YAML document per grid point, first sweep\n"
                   "key varying slowest. A config error names file:line:column and exits with 2.\n"
                   "--reference lists every key with its type, default and meaning.\n");
            return 0;
        }
    if (argc == 2 && !strcmp(argv[1], "--reference")) {
        char *text = cfg_reference(&saev_config_schema);
        fputs(text, stdout);
        free(text);
        return 0;
    }
    CfgArgs args;
    cfg_args_parse_or_die(argc, argv, NULL, &args);
    if (args.argc > 1) saev_usage_fail("saev config: unexpected argument \"%s\" (see saev config --help)", args.argv[1]);
    if (!args.config_path) saev_usage_fail("saev config: missing CONFIG.yaml (see saev config --help)");
    SaevConfig *configs;
    int n = saev_config_load_or_die(&args, &configs);
    for (int i = 0; i < n; i++) {
        char *text = cfg_dump(&saev_config_schema, &configs[i]);
        if (n > 1) printf("--- # config %d of %d\n", i + 1, n);
        fputs(text, stdout);
        free(text);
    }
    saev_config_free(configs, n);
    cfg_args_free(&args);
    return 0;
}
