/*
 * fuzz_checkpoint.c: libFuzzer harness of the SAE checkpoint reader
 * (sae_checkpoint_read in common/sae/checkpoint.c): a safetensors file whose metadata
 * holds the SAE config as JSON and whose tensors must match it. The input is the whole
 * file. A refusal must name the file; an accepted checkpoint must be usable: the harness
 * encodes and decodes two rows through it, which touches every weight.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "sae/checkpoint.h"
#include "sae/sae.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64], err[1024];
    int fd = fuzz_memfile(data, size, path, sizeof path);
    Sae sae;
    if (sae_checkpoint_read(&sae, path, 2, err, sizeof err) == 0) {
        int d = sae.cfg.d_model, S = sae.cfg.d_sae;
        float *x = calloc((size_t)2 * d, sizeof(float)), *f = calloc((size_t)2 * S, sizeof(float));
        float *x_hat = calloc((size_t)2 * d, sizeof(float));
        if (!x || !f || !x_hat) abort();
        for (int i = 0; i < 2 * d; i++) x[i] = (float)(i % 7) - 3.0f;
        sae_encode_decode_eval(&sae, x, 2, f, x_hat);
        free(x);
        free(f);
        free(x_hat);
        sae_destroy(&sae);
    } else if (strncmp(err, path, strlen(path)) != 0) {
        abort(); /* a refusal names the file */
    }
    close(fd);
    return 0;
}
