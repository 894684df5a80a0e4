/*
 * device.h: where a stage computes and in what precision: one enum each, with one
 * parser and one name table that the config schemas, the command-line flags and every
 * backend (ViT, SAE; CPU and CUDA) share.
 * The CUDA code (common/cuda) takes these types as they are; it has no names of its own.
 */
#ifndef SAEV_DEVICE_H
#define SAEV_DEVICE_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { DEVICE_AUTO = 0, DEVICE_CPU, DEVICE_CUDA } Device;
typedef enum { PRECISION_FP32 = 0, PRECISION_TF32, PRECISION_BF16, PRECISION_N /* how many */ } Precision;

/* The spellings the schemas list as choices. */
#define DEVICE_NAMES "auto|cpu|cuda"
#define PRECISION_NAMES "fp32|tf32|bf16"

/* 0 and *out for a known name (NULL is auto); -1 for any other. */
int device_parse(const char *name, Device *out);
const char *device_name(Device d);
/* A config key's device (NULL is auto); a name that is not one fails naming the key
 * (exit 2; the schemas' choices normally refuse it first). */
Device device_setting_or_die(const char *name, const char *key);
/* 0 and *out for fp32|tf32|bf16 (also float32, bfloat16; NULL is fp32); -1 otherwise. */
int precision_parse(const char *name, Precision *out);
const char *precision_name(Precision p);

#ifdef __cplusplus
}
#endif

#endif
