/*
 * cmd_run.c: `saev run CONFIG`: the whole pipeline of one config, stage after stage:
 * activations (when activations.out is set), train (when train.data is set), evaluate
 * (when evaluate.data is set; evaluate.sae defaults to the training outputs). Each stage
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
    "defaults to train.out_dir). Stops at the first stage that fails; a rerun resumes.\n";

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
        TrainJob job; /* fills train.out_dir's default (the data need not exist yet) */
        saev_config_train_job(cfgs, n, &job);
        snprintf(eval_default, sizeof eval_default, "evaluate.sae=[\"%s\"]", job.members[0]->out_dir);
        saev_config_train_job_free(&job);
    }
    saev_config_free(cfgs, n);
    cfg_args_free(&args);
    if (!do_acts && !do_train && !do_eval) saev_usage_fail("saev run: the config has nothing to run (set activations.out, train.data or evaluate.data)");

    int rc = 0;
    if (do_acts && (rc = cmd_activations(argc, argv)) != 0) return rc;
    if (do_train && (rc = cmd_train(argc, argv)) != 0) return rc;
    if (do_eval) {
        if (!eval_default[0]) return cmd_evaluate(argc, argv);
        char **av = callocCheck((size_t)argc + 3, sizeof(char *));
        memcpy(av, argv, sizeof(char *) * (size_t)argc);
        av[argc] = "--set";
        av[argc + 1] = eval_default;
        rc = cmd_evaluate(argc + 2, av);
        free(av);
    }
    return rc;
}
