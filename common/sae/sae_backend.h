/*
 * sae_backend.h: where the SAE trains, behind one interface the trainer calls without
 * knowing the device. Two implementations side by side (sae_backend.c):
 *   cpu   sae.h's functions on the host Sae: the same step as sae_train_step, so a
 *         trainer switching to this layer changes no result;
 *   cuda  common/cuda/sae_cuda.h: parameters, optimizer and counters live on the GPU.
 * Both run sae_step_run (sae_step.c), the step order written once (normalize, forward +
 * backward, all-reduce of the flat gradient and statistics (MPI or NCCL), parallel-
 * gradient removal, clip, Adam), over their own primitives (SaeStepOps).
 *
 * Every backend owns a host Sae (`host`): on cpu it is the SAE; on cuda it is a mirror
 * (parameters, Adam state, dead counters, threshold, data scale, Adam t; workspace for
 * one row) that initialization, checkpoints and evaluation use. sae_backend_push copies
 * the mirror to the device (after init or resume), sae_backend_pull copies the device
 * state back (before a checkpoint); both are no-ops on cpu.
 *
 * Batches: the K SAEs of a sweep share one SaeBatch. The loader writes this rank's rows
 * into sae_batch_rows (pinned memory on cuda), sae_batch_submit starts their copy to the
 * device on a copy stream, sae_sweep_step_begin enqueues every SAE's step on the
 * submitted batch (each SAE's gradient all-reduce overlapping the next one's compute)
 * and sae_sweep_step_end waits and returns the metrics. Between begin and end the
 * trainer may load and submit the next batch (two slots alternate, each with its own
 * "released" events), so loading and the host-to-device copy overlap the GPU's compute. Inputs are raw rows: each SAE scales
 * them by its host.data_scale (the same float product the trainer did before).
 */
#ifndef SAEV_SAE_BACKEND_H
#define SAEV_SAE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "comm.h"
#include "device.h"
#include "sae.h"
#include "sae_step.h"

/* Most SAEs one sweep steps on one batch. */
#define SAE_SWEEP_MAX 64

/* The SAE runs on a Device in a Precision (device.h). */
typedef struct {
    Device device;            // cpu | cuda (resolved, never auto)
    Precision precision;      // cuda: GEMM precision (fp32 | tf32); cpu: fp32
} SaeBackendSpec;

typedef struct {
    SaeBackendSpec spec;
    Sae host;                 // cpu: the SAE; cuda: host mirror of the training state
    void *dev;                // cuda: SaeCuda * (NULL on cpu)
    float *dev_scaled;        // cuda: [max_batch, d] device rows times data_scale (when != 1)
    int max_batch;            // rows per step this backend holds
    float step_lr;            // lr of the step in flight (metrics)
    int64_t step_rows;        // global batch of the step in flight (metrics)
    int pending;              // a step was begun and not yet ended
} SaeBackend;

typedef struct {
    Device device;
    int max_rows, d;          // rows per batch (this rank), input width
    float *rows;              // cpu: [max_rows, d] the batch
    float *scaled;            // cpu: [max_rows, d] rows times an SAE's data scale
    void *stage;              // cuda: SaeCudaStage *
    int n_rows;               // rows of the submitted batch
    int submitted;            // a batch was submitted and not yet consumed
} SaeBatch;

/* device: "auto" | "cpu" | "cuda"; precision: "fp32" | "tf32" | "bf16" (also float32,
 * bfloat16). auto is cuda when this build has CUDA and a GPU is present, else cpu (then
 * tf32 falls back to fp32 with a warning). NULL, or a message naming the option. */
const char *sae_backend_resolve(const char *device, const char *precision, SaeBackendSpec *out);

/* Allocates parameters, optimizer state and workspace for batches of up to max_batch
 * rows. Checks the config (and the device's limits); 0, or -1 with a message in err that
 * names the option. comm: the ranks the steps all-reduce over; on cuda with more than
 * one rank it sets up comm's NCCL (comm_gpu_init). */
int sae_backend_create(SaeBackend *b, const SaeConfig *cfg, int max_batch, const SaeBackendSpec *spec,
                       const Comm *comm, char *err, size_t errlen);
void sae_backend_destroy(SaeBackend *b);
/* The host Sae (initialize it, read checkpoints into it, write checkpoints from it). */
static inline Sae *sae_backend_host(SaeBackend *b) { return &b->host; }
/* Host mirror -> device (params, Adam m/v and t, dead counters, threshold). */
void sae_backend_push(SaeBackend *b);
/* Device -> host mirror (the same fields). */
void sae_backend_pull(SaeBackend *b);

/* Batch staging shared by the SAEs of a sweep. */
void sae_batch_init(SaeBatch *bt, Device device, int max_rows, int d);
void sae_batch_free(SaeBatch *bt);
/* Where the loader writes the next batch ([max_rows, d]; pinned on cuda). */
float *sae_batch_rows(SaeBatch *bt);
/* The next batch holds n_rows rows: start its copy to the device (consumers: the SAEs
 * that will read it). */
void sae_batch_submit(SaeBatch *bt, int n_rows, SaeBackend *const *consumers, int K);

/* One optimizer step of each of the K SAEs on the submitted batch. global_batch: rows
 * over all ranks; lr, grad_clip, prefix_rng: one per SAE (prefix_rng[i] draws SAE i's
 * Matryoshka prefixes with the CPU path's generator). cpu: runs the steps; cuda: enqueues
 * them. */
void sae_sweep_step_begin(SaeBackend *const *b, int K, SaeBatch *bt, int64_t global_batch, const float *lr,
                          const double *grad_clip, uint64_t *const *prefix_rng);
/* Waits for the steps and fills out[0..K). */
void sae_sweep_step_end(SaeBackend *const *b, int K, SaeStepMetrics *out);
/* begin + end. */
void sae_sweep_step(SaeBackend *const *b, int K, SaeBatch *bt, int64_t global_batch, const float *lr,
                    const double *grad_clip, uint64_t *const *prefix_rng, SaeStepMetrics *out);

#endif
