/*
 * fuzz_image.c: libFuzzer harness of image decoding (common/image/decode.c): JPEG through
 * libjpeg-turbo, PNG through libpng, with the pixel limit that stops decompression bombs.
 * The input is the whole file. It is decoded as an RGB image from memory and as a
 * segmentation mask from a file, both under a 2^22-pixel limit (a 100000x100000 header
 * must be refused before any pixel memory is taken). A decoded image must have the size
 * it claims: the harness reads every byte of it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "image/decode.h"

#define FUZZ_MAX_PIXELS (1 << 22)

static void touch(const Image8 *im) {
    if (im->w <= 0 || im->h <= 0 || (int64_t)im->w * im->h > FUZZ_MAX_PIXELS) abort();
    size_t n = (size_t)im->w * (size_t)im->h * (size_t)im->channels;
    unsigned sum = 0;
    for (size_t i = 0; i < n; i++) sum += im->data[i];
    if (sum == 0xFFFFFFFFu) abort(); /* keeps the loop; cannot happen for these sizes */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[1024], path[64];
    Image8 im = {0};
    if (decode_rgb_mem(data, size, FUZZ_MAX_PIXELS, &im, err, sizeof err) == 0) {
        if (im.channels != 3) abort();
        touch(&im);
        image8_free(&im);
    } else if (!err[0]) {
        abort(); /* a refusal says why */
    }
    int fd = fuzz_memfile(data, size, path, sizeof path);
    Image8 mask = {0};
    if (decode_mask_file(path, FUZZ_MAX_PIXELS, &mask, err, sizeof err) == 0) {
        if (mask.channels != 1) abort();
        touch(&mask);
        image8_free(&mask);
    } else if (!strstr(err, path)) {
        abort(); /* a refusal names the file */
    }
    close(fd);
    return 0;
}
