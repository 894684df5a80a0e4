/*
 * cmd_inspect.c: `saev inspect FILE`: tensor names, dtypes, shapes and metadata of a
 * safetensors file (model weights, SAE checkpoints, tensor dumps).
 * `saev inspect --verify STORE` reads a whole activation store and lists every image
 * slice whose checksum differs or that cannot be read (exit 1 when there is one).
 */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "safetensors.h"
#include "store/store.h"

/* --verify: every activation of the store, checked against its checksums. */
static int verify_store(const char *path) {
    char err[1024];
    Store *s = store_open_read(path, err, sizeof err);
    if (!s) {
        fprintf(stderr, "error: %s\n", err);
        return 1;
    }
    if (!s->has_checksums)
        printf("%s: this store has no checksums (written before saev-c stored them): checking only that every chunk reads\n", path);
    int s_has = s->has_checksums;
    int64_t bad = store_verify(s, stdout);
    int64_t slices = s->meta.n_images * s->meta.n_layers;
    store_close(s);
    if (bad) {
        fprintf(stderr, "error: %s: %lld of %lld image-layer slices are bad (listed above)\n", path, (long long)bad, (long long)slices);
        return 1;
    }
    printf("%s: all %lld image-layer slices read back %s\n", path, (long long)slices, s_has ? "intact (checksums match)" : "(no checksums to compare)");
    return 0;
}

int cmd_inspect(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--verify")) {
        if (!store_path_is_store(argv[2])) {
            fprintf(stderr, "error: %s: not an activation store (--verify checks stores)\n", argv[2]);
            return 2;
        }
        return verify_store(argv[2]);
    }
    if (argc != 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        printf("usage: saev inspect FILE.safetensors | STORE_DIR | FILE.h5\n"
               "       saev inspect --verify STORE_DIR\n\n"
               "Lists every tensor (name, dtype, shape, size) and the file's metadata, or an activation\n"
               "store's shapes, dtypes, attributes, checksums and progress. --verify reads the whole store\n"
               "and reports every image-layer slice whose checksum differs or that cannot be read\n"
               "(file, image, layer, HDF5 chunk); exit status 1 when any is bad.\n");
        return argc == 2 ? 0 : 2;
    }
    if (store_path_is_store(argv[1])) return store_describe(argv[1], stdout);
    SafeTensors st;
    char err[1024];
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
