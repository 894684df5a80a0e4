/*
 * sae_backend.c: the cpu and cuda implementations of sae_backend.h, side by side.
 *
 * Both devices step through sae_step_run (sae_step.c), the one place the step order lives,
 * with their own primitives: sae_cpu_step_ops on the host Sae (rows scaled exactly as the
 * trainer scaled them), sae_cuda_step_ops on the SaeCuda (Matryoshka prefixes drawn on
 * the host with the CPU path's generator, rows staged through pinned memory, the K SAEs'
 * steps enqueued back to back without host round trips; batch-top-k reads one count back
 * inside its forward); metrics are read when the steps end.
 */
#include "sae_backend.h"

#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "comm.h"
#include "log.h"
#ifdef SAEV_CUDA
#include "cuda/sae_cuda.h"
#endif

const char *sae_backend_resolve(const char *device, const char *precision, SaeBackendSpec *out) {
    static char msg[256];
    memset(out, 0, sizeof *out);
    if (precision_parse(precision, &out->precision)) {
        snprintf(msg, sizeof msg, "precision \"%s\" is not fp32, tf32 or bf16", precision);
        return msg;
    }
    if (out->precision == PRECISION_BF16)
        return "precision bf16 is not implemented for SAE training (fp32 master weights with bf16 GEMMs are future "
               "work); use fp32 or tf32";
    Device want;
    if (device_parse(device, &want)) {
        snprintf(msg, sizeof msg, "device \"%s\" is not auto, cpu or cuda", device);
        return msg;
    }
    int have_gpu = 0;
#ifdef SAEV_CUDA
    have_gpu = cuda_gpu_count() > 0;
#endif
    if (want == DEVICE_AUTO) {
        out->device = have_gpu ? DEVICE_CUDA : DEVICE_CPU;
        if (!have_gpu && out->precision != PRECISION_FP32) {
            log_warn("device auto found no GPU: training the SAE on the CPU in fp32 (precision %s applies to cuda only)", precision);
            out->precision = PRECISION_FP32;
        }
    } else if (want == DEVICE_CPU) {
        out->device = DEVICE_CPU;
        if (out->precision != PRECISION_FP32) {
            snprintf(msg, sizeof msg, "precision %s needs device cuda (the CPU trains in fp32)", precision);
            return msg;
        }
    } else { /* cuda */
#ifndef SAEV_CUDA
        return "device cuda: this saev-c was built without CUDA (configure with nvcc present, or use device cpu)";
#else
        if (!have_gpu) return "device cuda: no usable GPU on this node (nvidia-smi shows why; or use device cpu)";
        out->device = DEVICE_CUDA;
#endif
    }
    return NULL;
}

int sae_backend_create(SaeBackend *b, const SaeConfig *cfg, int max_batch, const SaeBackendSpec *spec,
                       const Comm *comm, char *err, size_t errlen) {
    memset(b, 0, sizeof *b);
    b->spec = *spec;
    b->max_batch = max_batch;
    const char *bad = sae_config_check(cfg);
    if (bad) return snprintf(err, errlen, "SAE config: %s", bad), -1;
    if (max_batch < 1) return snprintf(err, errlen, "SAE: batch must be positive (got %d)", max_batch), -1;
    if (spec->device == DEVICE_CPU) {
        if (spec->precision != PRECISION_FP32) return snprintf(err, errlen, "SAE on the CPU trains in fp32 only"), -1;
        sae_create(&b->host, cfg, max_batch);
        b->host.comm = comm;
        return 0;
    }
#ifndef SAEV_CUDA
    return snprintf(err, errlen, "device cuda: this saev-c was built without CUDA"), -1;
#else
    if (comm->size > 1) comm_gpu_init(comm); /* picks the GPU of this local rank before any allocation */
    SaeCuda *dev = callocCheck(1, sizeof(SaeCuda));
    if (sae_cuda_create(dev, cfg, max_batch, spec->precision, err, errlen)) {
        free(dev);
        return -1;
    }
    dev->comm = comm;
    dev->distributed = comm->size > 1;
    b->dev = dev;
    sae_create(&b->host, cfg, 1); /* the mirror: state only, workspace for one row */
    b->host.comm = comm;
    sae_backend_push(b);          /* zero optimizer and counters, whatever the mirror holds */
    return 0;
#endif
}

void sae_backend_destroy(SaeBackend *b) {
#ifdef SAEV_CUDA
    if (b->dev) {
        sae_cuda_destroy((SaeCuda *)b->dev);
        free(b->dev);
        cuda_free(b->dev_scaled);
    }
#endif
    sae_destroy(&b->host);
    memset(b, 0, sizeof *b);
}

void sae_backend_push(SaeBackend *b) {
    if (b->spec.device == DEVICE_CPU) return;
#ifdef SAEV_CUDA
    Sae *h = &b->host;
    sae_cuda_upload_state((SaeCuda *)b->dev, h->params, h->adam_m, h->adam_v, h->since_fired, h->threshold, h->adam_t);
#endif
}

void sae_backend_pull(SaeBackend *b) {
    if (b->spec.device == DEVICE_CPU) return;
#ifdef SAEV_CUDA
    Sae *h = &b->host;
    sae_cuda_download_state((SaeCuda *)b->dev, h->params, h->adam_m, h->adam_v, h->since_fired, &h->threshold, &h->adam_t);
#endif
}

/* ---- batches ---- */

void sae_batch_init(SaeBatch *bt, Device device, int max_rows, int d) {
    memset(bt, 0, sizeof *bt);
    bt->device = device;
    bt->max_rows = max_rows;
    bt->d = d;
    if (device == DEVICE_CPU) {
        bt->rows = mallocCheck((size_t)max_rows * d * sizeof(float));
        bt->scaled = mallocCheck((size_t)max_rows * d * sizeof(float));
        return;
    }
#ifdef SAEV_CUDA
    SaeCudaStage *st = callocCheck(1, sizeof(SaeCudaStage));
    sae_cuda_stage_create(st, max_rows, d);
    bt->stage = st;
#else
    saev_fail("SAE batches on cuda: this saev-c was built without CUDA");
#endif
}

void sae_batch_free(SaeBatch *bt) {
    free(bt->rows);
    free(bt->scaled);
#ifdef SAEV_CUDA
    if (bt->stage) {
        sae_cuda_stage_destroy((SaeCudaStage *)bt->stage);
        free(bt->stage);
    }
#endif
    memset(bt, 0, sizeof *bt);
}

float *sae_batch_rows(SaeBatch *bt) {
#ifdef SAEV_CUDA
    if (bt->stage) return sae_cuda_stage_host((SaeCudaStage *)bt->stage);
#endif
    return bt->rows;
}

void sae_batch_submit(SaeBatch *bt, int n_rows, SaeBackend *const *consumers, int K) {
    if (n_rows < 0 || n_rows > bt->max_rows) saev_fail("SAE batch: %d rows, room for %d", n_rows, bt->max_rows);
    bt->n_rows = n_rows;
    bt->submitted = 1;
#ifdef SAEV_CUDA
    if (bt->stage) {
        SaeCuda *devs[SAE_SWEEP_MAX];
        if (K > SAE_SWEEP_MAX) saev_fail("SAE sweep: %d members on one GPU, at most %d", K, SAE_SWEEP_MAX);
        for (int i = 0; i < K; i++) {
            if (!consumers[i]->dev) saev_fail("SAE batch: a cuda batch fed to a cpu SAE");
            devs[i] = (SaeCuda *)consumers[i]->dev;
        }
        sae_cuda_stage_submit((SaeCudaStage *)bt->stage, n_rows, devs, K);
    }
#else
    (void)consumers;
    (void)K;
#endif
}

/* ---- steps ---- */

/* The step primitives of a device (sae_step.h). */
static const SaeStepOps *step_ops(Device device) {
#ifdef SAEV_CUDA
    if (device == DEVICE_CUDA) return &sae_cuda_step_ops;
#endif
    if (device == DEVICE_CUDA) saev_fail("SAE step on cuda: this saev-c was built without CUDA");
    return &sae_cpu_step_ops;
}

/* Backend handle of each SAE for its step primitives: the host Sae on cpu, the SaeCuda
 * on cuda. */
static void *step_handle(SaeBackend *b) { return b->spec.device == DEVICE_CPU ? (void *)&b->host : b->dev; }

typedef struct {
    SaeBackend *const *b;
    SaeBatch *bt;
} StepInput;

/* SAE i's rows: the batch times its data scale (the same float product the trainer did
 * before the layer existed). cpu: into the batch's one scratch buffer, which the previous
 * member's forward (run to completion) no longer reads; cuda: on the SAE's own stream into
 * its own buffer, so the members' streams never share a written buffer. */
static const float *step_input(void *ctx_, int i) {
    StepInput *ctx = ctx_;
    SaeBackend *be = ctx->b[i];
    SaeBatch *bt = ctx->bt;
    float scale = be->host.data_scale;
    size_t elems = (size_t)bt->n_rows * bt->d;
    if (bt->device == DEVICE_CPU) {
        if (scale == 1.0f) return bt->rows;
        for (size_t e = 0; e < elems; e++) bt->scaled[e] = bt->rows[e] * scale;
        return bt->scaled;
    }
#ifdef SAEV_CUDA
    SaeCudaStage *st = (SaeCudaStage *)bt->stage;
    if (scale == 1.0f) return st->current;
    SaeCuda *dev = (SaeCuda *)be->dev;
    if (!be->dev_scaled) be->dev_scaled = cuda_malloc((size_t)be->max_batch * bt->d * sizeof(float));
    sae_cuda_scale(st->current, be->dev_scaled, elems, scale, dev->stream);
    return be->dev_scaled;
#else
    saev_fail("SAE step on cuda: this saev-c was built without CUDA");
#endif
}

void sae_sweep_step_begin(SaeBackend *const *b, int K, SaeBatch *bt, int64_t global_batch, const float *lr,
                          const double *grad_clip, uint64_t *const *prefix_rng) {
    if (!bt->submitted) saev_fail("SAE step: no batch submitted (sae_batch_submit)");
    bt->submitted = 0;
    if (K > SAE_SWEEP_MAX) saev_fail("SAE sweep: %d members in one step, at most %d", K, SAE_SWEEP_MAX);
    Sae *host[SAE_SWEEP_MAX];
    void *dev[SAE_SWEEP_MAX];
    for (int i = 0; i < K; i++) {
        if (b[i]->pending) saev_fail("SAE step: the previous step of SAE %d was not ended", i);
        if (b[i]->spec.device != bt->device) saev_fail("SAE step: SAE %d is on %s, its batch on %s", i, device_name(b[i]->spec.device), device_name(bt->device));
        if (b[i]->host.cfg.d_model != bt->d) saev_fail("SAE step: SAE %d has d_model %d, the batch %d", i, b[i]->host.cfg.d_model, bt->d);
        b[i]->pending = 1;
        b[i]->step_lr = lr[i];
        b[i]->step_rows = global_batch;
        host[i] = &b[i]->host;
        dev[i] = step_handle(b[i]);
    }
    StepInput in = {b, bt};
    sae_step_run(step_ops(bt->device), host, dev, K, step_input, &in, bt->n_rows, global_batch, lr, grad_clip, prefix_rng);
#ifdef SAEV_CUDA
    /* the batch's slot may be refilled once every member's step has been enqueued behind it */
    if (bt->stage) sae_cuda_stage_release((SaeCudaStage *)bt->stage, (SaeCuda *const *)dev, K);
#endif
}

void sae_sweep_step_end(SaeBackend *const *b, int K, SaeStepMetrics *out) {
    for (int i = 0; i < K; i++) {
        if (!b[i]->pending) saev_fail("SAE step: SAE %d has no step in flight", i);
        b[i]->pending = 0;
        step_ops(b[i]->spec.device)->metrics(step_handle(b[i]), b[i]->step_rows, b[i]->step_lr, &out[i]);
    }
}

void sae_sweep_step(SaeBackend *const *b, int K, SaeBatch *bt, int64_t global_batch, const float *lr,
                    const double *grad_clip, uint64_t *const *prefix_rng, SaeStepMetrics *out) {
    sae_sweep_step_begin(b, K, bt, global_batch, lr, grad_clip, prefix_rng);
    sae_sweep_step_end(b, K, out);
}
