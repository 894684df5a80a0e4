/*
 * commands.h: the launcher's commands. Each lives in launcher/cmd_<name>.c and takes the
 * arguments after the command name; it returns the process exit status.
 */
#ifndef SAEV_LAUNCHER_COMMANDS_H
#define SAEV_LAUNCHER_COMMANDS_H

typedef struct {
    const char *name;                  /* what the user types */
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
    const char *summary;               /* one line for `saev --help` */
} Command;

int cmd_inspect(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_activations(int argc, char **argv);
int cmd_config(int argc, char **argv);
int cmd_preprocess(int argc, char **argv);
int cmd_demo_data(int argc, char **argv);
int cmd_export_saev(int argc, char **argv);
int cmd_import_saev(int argc, char **argv);
int cmd_import_sae(int argc, char **argv);
int cmd_forward(int argc, char **argv);
int cmd_make_model(int argc, char **argv);

int cmd_submit(int argc, char **argv);
int cmd_status(int argc, char **argv);

/* 1 when `saev NAME` is a command (launcher/main.c's table); used by `saev submit`. */
int launcher_has_command(const char *name);
int cmd_train(int argc, char **argv);
int cmd_evaluate(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_visuals(int argc, char **argv);
int cmd_probe(int argc, char **argv);
int cmd_intervene(int argc, char **argv);

#endif
