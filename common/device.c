/*
 * device.c: the device and precision names (device.h).
 */
#include "device.h"

#include <string.h>

#ifdef SAEV_CUDA
#include "cuda/cuda_util.h"
_Static_assert((int)PRECISION_FP32 == (int)CUDA_FP32 && (int)PRECISION_TF32 == (int)CUDA_TF32 &&
                   (int)PRECISION_BF16 == (int)CUDA_BF16,
               "Precision and CudaPrecision must agree: the CUDA code takes one for the other");
#endif

static const char *const device_names[] = {[DEVICE_AUTO] = "auto", [DEVICE_CPU] = "cpu", [DEVICE_CUDA] = "cuda"};
static const char *const precision_names[] = {[PRECISION_FP32] = "fp32", [PRECISION_TF32] = "tf32", [PRECISION_BF16] = "bf16"};

int device_parse(const char *name, Device *out) {
    if (!name) name = "auto";
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, device_names[i])) { *out = (Device)i; return 0; }
    return -1;
}

const char *device_name(Device d) { return (unsigned)d < 3 ? device_names[d] : "?"; }

int precision_parse(const char *name, Precision *out) {
    if (!name || !strcmp(name, "float32")) name = "fp32";
    else if (!strcmp(name, "bfloat16")) name = "bf16";
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, precision_names[i])) { *out = (Precision)i; return 0; }
    return -1;
}

const char *precision_name(Precision p) { return (unsigned)p < 3 ? precision_names[p] : "?"; }
