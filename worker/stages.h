/*
 * stages.h: the worker's stage drivers, one file each (worker/stage_<name>.c). A stage
 * runs on every rank; it returns 0 or an exit status (non-zero takes the job down).
 */
#ifndef SAEV_WORKER_STAGES_H
#define SAEV_WORKER_STAGES_H

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the stage name */
    const char *summary;
} Stage;

int stage_comm_selftest(int argc, char **argv);
int stage_activations(int argc, char **argv);
int stage_store_selftest(int argc, char **argv);
int stage_data_dump(int argc, char **argv);
int stage_train(int argc, char **argv);
int stage_evaluate(int argc, char **argv);
int stage_visuals(int argc, char **argv);
int stage_probe(int argc, char **argv);
int stage_intervene(int argc, char **argv);

#endif
