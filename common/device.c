/*
 * device.c: the device and precision names (device.h).
 */
#include "device.h"

#include <string.h>

#include "check.h"

static const char *const device_names[] = {[DEVICE_AUTO] = "auto", [DEVICE_CPU] = "cpu", [DEVICE_CUDA] = "cuda"};
static const char *const precision_names[] = {[PRECISION_FP32] = "fp32", [PRECISION_TF32] = "tf32", [PRECISION_BF16] = "bf16"};

int device_parse(const char *name, Device *out) {
    if (!name) name = "auto";
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, device_names[i])) { *out = (Device)i; return 0; }
    return -1;
}

const char *device_name(Device d) { return (unsigned)d < 3 ? device_names[d] : "?"; }

Device device_setting_or_die(const char *name, const char *key) {
    Device d;
    if (device_parse(name, &d)) saev_usage_fail("%s: \"%s\" is not one of " DEVICE_NAMES, key, name);
    return d;
}

int precision_parse(const char *name, Precision *out) {
    if (!name || !strcmp(name, "float32")) name = "fp32";
    else if (!strcmp(name, "bfloat16")) name = "bf16";
    for (int i = 0; i < PRECISION_N; i++)
        if (!strcmp(name, precision_names[i])) { *out = (Precision)i; return 0; }
    return -1;
}

const char *precision_name(Precision p) { return (unsigned)p < PRECISION_N ? precision_names[p] : "?"; }
