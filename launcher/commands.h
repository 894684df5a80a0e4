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
int cmd_train(int argc, char **argv);

#endif
