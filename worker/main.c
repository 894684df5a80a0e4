/*
 * main.c: `saev-worker STAGE ARGS...`, the MPI program the launcher starts on every rank.
 * It brings up the communication layer, then runs one stage driver.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "comm.h"
#include "log.h"
#include "stages.h"

static const Stage stages[] = {
    {"activations", stage_activations, "ViT activations of the data set into the store"},
    {"evaluate", stage_evaluate, "metrics of trained SAEs on held-out activations (ordered pass, rows split across ranks)"},
    {"visuals", stage_visuals, "per-latent statistics and top images with patch heatmaps (images dealt to ranks in whole batches)"},
    {"probe", stage_probe, "linear probe on a store layer (data-parallel L-BFGS) and semantic F1 of an SAE's latents"},
    {"intervene", stage_intervene, "edit SAE latents at a layer, run the later ViT blocks, a probe's predictions before and after; the faithfulness study"},
    {"comm-selftest", stage_comm_selftest, "exercise all-reduce, broadcast and failure propagation (tests)"},
    {"store-selftest", stage_store_selftest, "write closed-form synthetic activations into a store (tests, benchmark)"},
    {"data-dump", stage_data_dump, "the rows the training loader gives each rank, batch by batch, as safetensors (tests)"},
    {"train", stage_train, "train one SAE or a sweep of SAEs on the same batches (data parallel)"},
};
static const int n_stages = (int)(sizeof stages / sizeof stages[0]);

int main(int argc, char **argv) {
    comm_init(&argc, &argv);
    if (argc < 2 || !strcmp(argv[1], "--help")) {
        if (comm_world()->rank == 0) {
            printf("usage: saev-worker STAGE [ARGS...]   (started by `saev` under mpirun or srun)\n\nstages:\n");
            for (int i = 0; i < n_stages; i++) printf("  %-16s %s\n", stages[i].name, stages[i].summary);
        }
        comm_finalize();
        return argc < 2 ? SAEV_EXIT_USAGE : 0;
    }
    for (int i = 0; i < n_stages; i++)
        if (!strcmp(argv[1], stages[i].name)) {
            int rc = stages[i].run(argc - 1, argv + 1);
            if (rc != 0) saev_exit(rc);
            comm_finalize();
            return 0;
        }
    saev_usage_fail("saev-worker: unknown stage \"%s\"", argv[1]);
}
