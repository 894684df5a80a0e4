/*
 * cmd_inspect.c: `saev inspect FILE`: tensor names, dtypes, shapes and metadata of a
 * safetensors file (model weights, SAE checkpoints, tensor dumps); what a saev sae.pt
 * holds; an activation store's shapes and progress.
 */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "sae/saev_pt.h"
#include "safetensors.h"
#include "store/store.h"

int cmd_inspect(int argc, char **argv) {
    if (argc != 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        printf("usage: saev inspect FILE.safetensors | SAE.pt | STORE_DIR | FILE.h5\n\n"
               "Lists every tensor (name, dtype, shape, size) and the file's metadata, or an activation\n"
               "store's shapes, dtypes, attributes and progress.\n");
        return argc == 2 ? 0 : 2;
    }
    if (store_path_is_store(argv[1])) return store_describe(argv[1], stdout);
    char err[1024];
    if (saev_pt_detect(argv[1])) { /* saev's own sae.pt */
        SaevPt pt;
        if (saev_pt_read(argv[1], &pt, err, sizeof err)) {
            fprintf(stderr, "error: %s\n", err);
            return 1;
        }
        saev_pt_describe(&pt, argv[1], stdout);
        saev_pt_free(&pt);
        return 0;
    }
    SafeTensors st;
    if (st_open(&st, argv[1], err, sizeof err)) {
        fprintf(stderr, "error: %s\n", err);
        return 1;
    }
    uint64_t total = 0;
    printf("%s: %d tensors\n", argv[1], st.n_tensors);
    for (int i = 0; i < st.n_tensors; i++) {
        const StTensor *t = &st.tensors[i];
        char shape[128] = "";
        for (int d = 0; d < t->ndim; d++) snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        printf("  %-60s %-5s [%s]\n", t->name, st_dtype_name(t->dtype), shape);
        total += t->nbytes;
    }
    printf("data: %.3f MB\n", (double)total / 1e6);
    if (st.n_meta) {
        printf("metadata:\n");
        for (int i = 0; i < st.n_meta; i++) printf("  %s: %s\n", st.meta_keys[i], st.meta_values[i]);
    }
    st_close(&st);
    return 0;
}
