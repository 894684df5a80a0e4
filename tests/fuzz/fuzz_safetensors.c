/*
 * fuzz_safetensors.c: libFuzzer harness of the safetensors reader (common/safetensors.c),
 * which opens model weights and SAE checkpoints from anywhere (the hub, other runs). The
 * input is the whole file. Whatever it holds, st_open must either refuse it with a
 * message naming the file or hand out tensors whose bytes all lie inside the mapping:
 * the harness converts every tensor to float32 and reads every metadata string, so an
 * out-of-bounds pointer or a wrong byte count shows up under AddressSanitizer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64], err[1024];
    int fd = fuzz_memfile(data, size, path, sizeof path);
    SafeTensors st;
    if (st_open(&st, path, err, sizeof err) == 0) {
        for (int i = 0; i < st.n_tensors; i++) {
            const StTensor *t = &st.tensors[i];
            if (st_find(&st, t->name) == NULL) abort(); /* every listed tensor is findable */
            float *out = malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
            if (!out) abort();
            st_to_f32(t, out);
            free(out);
        }
        for (int i = 0; i < st.n_meta; i++) {
            const char *v = st_meta(&st, st.meta_keys[i]);
            if (!v || strlen(v) != strlen(st.meta_values[i])) abort(); /* every key finds a value */
        }
        st_close(&st);
    } else if (strncmp(err, path, strlen(path)) != 0) {
        abort(); /* a refusal must name the file */
    }
    close(fd);
    return 0;
}
