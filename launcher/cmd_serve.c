/*
 * cmd_serve.c: `saev serve DIR... [--port N] [--host ADDR] [--probe PATH] [CONFIG.yaml] [--set serve.KEY=V]`:
 * the viewer. Parses the arguments into the `serve:` section (DIRs become serve.dirs,
 * the flags serve.port and serve.host), finds the page's files (web/ in-tree or
 * installed under share/saev-c/web, unless serve.web says where) and runs serve_run in
 * this process: no MPI, one machine.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "commands.h"
#include "config_args.h"
#include "log.h"
#include "mpirun.h"
#include "saev_config.h"

static const char usage[] =
    "usage: saev serve DIR... [--port 8080] [--host 127.0.0.1] [--probe probe.safetensors] [CONFIG.yaml] [--set serve.KEY=VALUE ...]\n\n"
    "Serves the viewer: a web page to browse the latents of trained SAEs (table, scatter,\n"
    "top images with heatmaps, similar latents) and to run any image of the data set, or\n"
    "one uploaded, through the ViT and the SAE live. DIR: visuals outputs (top.safetensors,\n"
    "index.json) or run directories (every sae.safetensors under them); the store, data set\n"
    "and ViT are found from their recorded paths. It listens on 127.0.0.1 unless --host is\n"
    "given. Keys: serve.threads, serve.max_upload_mb, serve.timeout_s, serve.hist_images,\n"
    "serve.web (see `saev config --reference`). --probe (serve.probe): a probe.safetensors of\n"
    "saev probe; the image page then has an intervention panel (latent sliders, the probe's\n"
    "prediction before and after). The API is documented in docs/viewer.md.\n";

int cmd_serve(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { fputs(usage, stdout); return 0; } /* before any allocation */
    /* Positional DIRs and --port/--host become --set assignments, so the config, --set and
     * the flags go through the one config path (and its error messages). */
    char **args = mallocCheck(sizeof(char *) * (size_t)(2 * argc + 4));
    char **owned = mallocCheck(sizeof(char *) * (size_t)(argc + 4));
    int n = 0, n_owned = 0;
    args[n++] = argv[0];
    size_t dirs_len = 64;
    for (int i = 1; i < argc; i++) dirs_len += strlen(argv[i]) * 2 + 8;
    char *dirs = callocCheck(1, dirs_len);
    int n_dirs = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--port") || !strcmp(a, "--host") || !strcmp(a, "--probe")) {
            if (i + 1 >= argc) saev_usage_fail("%s needs a value (saev serve --help)", a);
            size_t len = strlen(argv[i + 1]) + 32;
            char *s = mallocCheck(len);
            snprintf(s, len, "serve.%s=%s", a + 2, argv[++i]);
            owned[n_owned++] = s;
            args[n++] = "--set";
            args[n++] = s;
        } else if (!strcmp(a, "--set")) {
            if (i + 1 >= argc) saev_usage_fail("--set needs key=value");
            args[n++] = argv[i];
            args[n++] = argv[++i];
        } else if (a[0] == '-') {
            saev_usage_fail("unknown flag %s (saev serve --help)", a);
        } else if (strlen(a) > 5 && (!strcmp(a + strlen(a) - 5, ".yaml") || !strcmp(a + strlen(a) - 4, ".yml"))) {
            args[n++] = argv[i];
        } else {
            /* A YAML flow-list item: quoted so that any folder name stays one string. */
            strcat(dirs, n_dirs++ ? ", \"" : "serve.dirs=[\"");
            for (const char *c = a; *c; c++) {
                if (*c == '"' || *c == '\\') strncat(dirs, "\\", 2);
                strncat(dirs, c, 1);
            }
            strcat(dirs, "\"");
        }
    }
    if (n_dirs) {
        strcat(dirs, "]");
        args[n++] = "--set";
        args[n++] = dirs;
    }
    CfgArgs cargs;
    cfg_args_parse_or_die(n, args, NULL, &cargs);
    SaevConfig *cfgs;
    int n_cfg = saev_config_load_or_die(&cargs, &cfgs);
    const SaevConfig *cfg = saev_config_one_or_die(cfgs, n_cfg, "serve", "train");
    ServeConfig sc = cfg->serve;
    if (sc.dirs.n == 0) { fputs(usage, stderr); return SAEV_EXIT_USAGE; }
    if (!sc.web) {
        char tried[4 * PATH_MAX];
        const char *web = saev_share_dir("web", "index.html", tried, sizeof tried);
        if (!web) saev_usage_fail("cannot find the viewer's page (web/index.html) in %s; set serve.web=DIR", tried);
        sc.web = strdupCheck(web);
    }
    log_set_level(LOG_INFO);
    int rc = serve_run(&sc);
    if (sc.web != cfg->serve.web) free(sc.web);
    saev_config_free(cfgs, n_cfg);
    cfg_args_free(&cargs);
    for (int i = 0; i < n_owned; i++) free(owned[i]);
    free(owned);
    free(args);
    free(dirs);
    return rc;
}
