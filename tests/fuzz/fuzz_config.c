/*
 * fuzz_config.c: libFuzzer harness of the YAML config loader (common/config.c) and of
 * `--set`. The input is a config file, optionally followed by a NUL byte and `--set`
 * assignments, one per line. The harness runs what `saev` does with them: parse, apply
 * each --set, expand sweeps, bind every grid point against the whole top-level schema
 * (SaevConfig) and dump it back. Every refusal must carry a message; every accepted
 * config must dump to YAML that parses again.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_util.h"
#include "saev_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fuzz_cstring(data, size);
    size_t yaml_len = strlen(text);
    CfgError err;
    CfgDoc *doc = cfg_parse_string(text, "fuzz.yaml", &err);
    if (!doc) {
        if (!err.msg[0]) abort();
        free(text);
        return 0;
    }
    /* --set lines after the NUL */
    int ok = 1;
    if (yaml_len < size) {
        char *sets = text + yaml_len + 1;
        for (char *line = strtok(sets, "\n"); line && ok; line = strtok(NULL, "\n")) {
            if (cfg_set(doc, line, &err)) {
                if (!err.msg[0]) abort();
                ok = 0;
            }
        }
    }
    CfgDoc **points = NULL;
    int n = ok ? cfg_sweep(doc, &points, &err) : -1;
    if (ok && n < 0 && !err.msg[0]) abort();
    for (int i = 0; i < n; i++) {
        SaevConfig c;
        if (cfg_bind(points[i], &saev_config_schema, &c, &err) == 0) {
            char *dump = cfg_dump(&saev_config_schema, &c);
            CfgError err2;
            CfgDoc *again = cfg_parse_string(dump, "dump.yaml", &err2);
            if (!again) abort(); /* what we write we can read */
            cfg_free(again);
            free(dump);
            cfg_free_obj(&saev_config_schema, &c);
        } else if (!err.msg[0]) {
            abort();
        }
        cfg_free(points[i]);
    }
    free(points);
    cfg_free(doc);
    free(text);
    return 0;
}
