/*
 * cmd_run.c: `saev run CONFIG`: the whole pipeline of one config, stage after stage:
 * activations (when activations.out is set), train (when train.data is set), evaluate
 * (when evaluate.data is set; evaluate.sae defaults to the training outputs), visuals
 * (when the config has a visuals: section; visuals.sae defaults to evaluate's checkpoints
 * or the training outputs, visuals.data to train.data or activations.out). Each stage
 * checks its part before starting and resumes what an earlier run left, so `saev run`
 * can simply be run again after a failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "commands.h"
#include "config_args.h"
#include "saev_config.h"

static const char usage[] =
    "usage: saev run CONFIG.yaml [--set key.path=value ...] [--ranks N] [--device cpu|cuda|auto]\n\n"
    "Runs the pipeline the config describes, in order: activations (if activations.out is\n"
    "set), train (if train.data is set), evaluate (if evaluate.data is set; evaluate.sae\n"
    "defaults to train.out_dir), visuals (if the config has a visuals: section; visuals.sae\n"
    "defaults to evaluate.sae or train.out_dir, visuals.data to train.data or\n"
    "activations.out). Stops at the first stage that fails; a rerun resumes.\n";

/* Runs `cmd` with extra --set assignments (NULL or "" entries are left out). */
static int run_with_sets(int (*cmd)(int, char **), int argc, char **argv, const char *const *sets, int n_sets) {
    char **av = callocCheck((size_t)argc + 2 * (size_t)n_sets + 1, sizeof(char *));
    memcpy(av, argv, sizeof(char *) * (size_t)argc);
    int ac = argc;
    for (int i = 0; i < n_sets; i++)
        if (sets[i] && sets[i][0]) { av[ac++] = "--set"; av[ac++] = (char *)sets[i]; }
    int rc = cmd(ac, av);
    free(av);
    return rc;
}

int cmd_run(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("%s", usage);
            return 0;
        }
    CfgArgs args;
    cfg_args_parse_or_die(argc, argv, NULL, &args);
    if (!args.config_path) saev_usage_fail("saev run: missing CONFIG.yaml (see saev run --help)");
    if (args.argc > 1) saev_usage_fail("saev run: unexpected argument \"%s\"", args.argv[1]);
    SaevConfig *cfgs;
    int n = saev_config_load_or_die(&args, &cfgs); /* any config error stops here, before any stage */
    int do_acts = cfgs[0].activations.out != NULL && cfgs[0].model.path != NULL;
    int do_train = cfgs[0].train.data != NULL;
    int do_eval = cfgs[0].evaluate.data != NULL;
    char eval_default[4200] = "";
    if (do_train && !do_eval) fprintf(stderr, "saev run: evaluate.data is not set; skipping evaluate\n");
    if (do_eval && cfgs[0].evaluate.sae.n == 0) {
        if (!do_train) saev_usage_fail("%s: evaluate needs evaluate.sae (checkpoints) when there is no train section", args.config_path);
        /* train.out_dir's default, as train_prepare fills it in (the data need not exist yet). */
        if (cfgs[0].train.out_dir) snprintf(eval_default, sizeof eval_default, "evaluate.sae=[\"%s\"]", cfgs[0].train.out_dir);
        else snprintf(eval_default, sizeof eval_default, "evaluate.sae=[\"%s/%s\"]", cfgs[0].run.out_dir, cfgs[0].run.name);
    }
    int do_vis = cfgs[0].visuals.enabled;
    char vis_sae[4200] = "", vis_data[4200] = "";
    if (do_vis && cfgs[0].visuals.sae.n == 0) {
        if (do_eval && !eval_default[0]) {
            size_t len = (size_t)snprintf(vis_sae, sizeof vis_sae, "visuals.sae=[");
            for (int i = 0; i < cfgs[0].evaluate.sae.n; i++)
                len += (size_t)snprintf(vis_sae + len, len < sizeof vis_sae ? sizeof vis_sae - len : 0, "%s\"%s\"", i ? ", " : "", cfgs[0].evaluate.sae.s[i]);
            if (len + 2 > sizeof vis_sae) saev_usage_fail("%s: evaluate.sae is too long to pass on to visuals; set visuals.sae", args.config_path);
            snprintf(vis_sae + len, sizeof vis_sae - len, "]");
        } else if (eval_default[0]) {
            snprintf(vis_sae, sizeof vis_sae, "visuals.%s", eval_default + strlen("evaluate."));
        } else if (do_train) {
            if (cfgs[0].train.out_dir) snprintf(vis_sae, sizeof vis_sae, "visuals.sae=[\"%s\"]", cfgs[0].train.out_dir);
            else snprintf(vis_sae, sizeof vis_sae, "visuals.sae=[\"%s/%s\"]", cfgs[0].run.out_dir, cfgs[0].run.name);
        } else {
            saev_usage_fail("%s: visuals needs visuals.sae (checkpoints) when there is no train or evaluate section", args.config_path);
        }
    }
    if (do_vis && !cfgs[0].visuals.data) {
        const char *store = cfgs[0].train.data ? cfgs[0].train.data : cfgs[0].activations.out;
        if (!store) saev_usage_fail("%s: visuals needs visuals.data (an activation store) when train.data and activations.out are unset", args.config_path);
        snprintf(vis_data, sizeof vis_data, "visuals.data=\"%s\"", store);
    }
    saev_config_free(cfgs, n);
    cfg_args_free(&args);
    if (!do_acts && !do_train && !do_eval && !do_vis)
        saev_usage_fail("saev run: the config has nothing to run (set activations.out, train.data, evaluate.data or a visuals: section)");

    int rc = 0;
    if (do_acts && (rc = cmd_activations(argc, argv)) != 0) return rc;
    if (do_train && (rc = cmd_train(argc, argv)) != 0) return rc;
    const char *eval_sets[1] = {eval_default};
    if (do_eval && (rc = run_with_sets(cmd_evaluate, argc, argv, eval_sets, 1)) != 0) return rc;
    const char *vis_sets[2] = {vis_sae, vis_data};
    if (do_vis) rc = run_with_sets(cmd_visuals, argc, argv, vis_sets, 2);
    return rc;
}
