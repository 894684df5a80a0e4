/*
 * train.c: the training driver of train.h.
 *
 * The K SAEs of a sweep train through the device layer sae_backend.h (run.device: cpu,
 * cuda, or auto = cuda when a GPU is present; train.precision on cuda). Per step: read
 * this rank's share of the next global batch into the shared SaeBatch (one loader for all
 * K SAEs), check it for NaN/Inf (collectively), submit it, and step every SAE on it
 * (sae_sweep_step_begin/_end: each SAE scales the rows by its data scale, and the step
 * all-reduces the flat gradient and statistics); the next batch is read between begin
 * and end, so on cuda loading overlaps the GPU's step. On cpu this is sae_train_step
 * exactly as before the layer existed. Every SAE's host Sae (sae_backend_host) is what initialization, resume
 * and checkpoints use; on cuda it is pushed to the GPU after init/resume and pulled back
 * before each checkpoint. Rank 0 writes metrics lines, checkpoints and training state;
 * every rank holds identical weights, so any rank could.
 *
 * The loader's own rate (rows per second of time spent waiting in batch_loader_next, the
 * slowest rank's) goes next to the step rate in metrics.jsonl, and a warning says when
 * the loader takes more than half of the step time: the run is then bound by its data
 * (disk, decoding), not by the SAE.
 */
#include "fault.h"
#include "fsutil.h"
#include "hash.h"
#include "train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "checkpoint.h"
#include "comm.h"
#include "data_source.h"
#include "log.h"
#include "sae_backend.h"
#include "sae_step.h"

/* The train: schema without `precision`: like run.device, where and how the SAE computes
 * is not part of a member's identity (a sweep shares it), and leaving the key out keeps
 * the sae-<hash> directories of runs from before the key existed (resume finds them). */
static const CfgSchema *identity_schema(void) {
    static CfgField fields[64];
    static CfgSchema schema;
    if (schema.fields) return &schema;
    const CfgSchema *t = &train_config_schema;
    if (t->n_fields > 64) saev_fail("train schema: %d fields, room for 64", t->n_fields);
    int n = 0;
    for (int j = 0; j < t->n_fields; j++)
        if (strcmp(t->fields[j].key, "precision")) fields[n++] = t->fields[j];
    schema = *t;
    schema.fields = fields;
    schema.n_fields = n;
    return &schema;
}

/* The member's identity: its train: section without the keys that leave its weights
 * unchanged, dumped as YAML and hashed. */
static uint64_t member_hash(const TrainConfig *c) {
    TrainConfig t = *c; /* shallow: cfg_dump only reads */
    t.out_dir = NULL;
    t.resume = 0;
    t.checkpoint_every = 0;
    t.metrics_every = 0;
    memset(&t.eval, 0, sizeof t.eval);
    char *yaml = cfg_dump(identity_schema(), &t);
    uint64_t h = fnv1a64(FNV1A64_INIT, yaml, strlen(yaml));
    free(yaml);
    return h;
}

/* Reads this rank's rows of the next batch into the batch's host buffer (adding the
 * slow disk SAEV_FAULT may simulate, fault.h), sets *read_s to the seconds it took, and returns
 * whether the rows are all finite (this rank only: the caller takes the collective verdict). */
static int read_batch(BatchLoader *loader, SaeBatch *batch, int n_local, int d, double *read_s) {
    float *x = sae_batch_rows(batch);
    double t_load = saev_now();
    batch_loader_next(loader, x);
    fault_delay(FAULT_TRAIN_LOADER_DELAY_MS);
    *read_s = saev_now() - t_load;
    int ok = 1;
    for (size_t e = 0; e < (size_t)n_local * d && ok; e++) ok = isfinite(x[e]);
    return ok;
}

char *train_member_dir(const TrainJob *job, int i) {
    char buf[4096];
    const TrainConfig *c = job->members[i];
    if (job->K == 1) snprintf(buf, sizeof buf, "%s", c->out_dir);
    else snprintf(buf, sizeof buf, "%s/sae-%08llx", c->out_dir, (unsigned long long)(member_hash(c) >> 32));
    return strdupCheck(buf);
}

const char *train_prepare(const TrainJob *job, char *buf, size_t len) {
    int K = job->K;
    const TrainConfig *c0 = job->members[0];
    if (!c0->data) return "train.data is required: an activation store directory or a safetensors file holding `activations` [N,d]";
    struct stat sb;
    if (stat(c0->data, &sb) != 0) { snprintf(buf, len, "train.data: %s: %s", c0->data, strerror(errno)); return buf; }
    if (train_config_steps(c0) < 1) return "train.steps or train.n_tokens is required";
    for (int i = 1; i < K; i++) {
        const TrainConfig *c = job->members[i];
        const char *what = NULL;
        if (strcmp(c->data, c0->data)) what = "train.data";
        else if (c->batch_size != c0->batch_size) what = "train.batch_size";
        else if (c->shuffle != c0->shuffle || c->seed != c0->seed || c->shuffle_buffer != c0->shuffle_buffer) what = "train.shuffle/shuffle_buffer/seed";
        else if (train_config_steps(c) != train_config_steps(c0)) what = "train.steps/n_tokens";
        else if (c->layer != c0->layer || strcmp(c->tokens, c0->tokens)) what = "train.layer/tokens";
        else if (strcmp(c->out_dir, c0->out_dir)) what = "train.out_dir";
        else if (c->checkpoint_every != c0->checkpoint_every || c->metrics_every != c0->metrics_every || c->resume != c0->resume)
            what = "train.checkpoint_every/metrics_every/resume";
        else if (strcmp(c->precision, c0->precision)) what = "train.precision";
        if (what) {
            snprintf(buf, len, "sweep config %d: %s differs from config 1; the configs of a sweep train together on one batch stream", i + 1, what);
            return buf;
        }
        for (int j = 0; j < i; j++)
            if (member_hash(c) == member_hash(job->members[j])) {
                snprintf(buf, len, "sweep configs %d and %d train the same SAE", j + 1, i + 1);
                return buf;
            }
    }
    /* The device/precision choices that do not depend on the node (bf16 anywhere, tf32 on
     * the CPU): refused here, before any rank starts. Whether cuda is usable is the
     * compute node's to say (train_run resolves the device again there). */
    const char *dev = job->device ? job->device : "auto";
    Device want = DEVICE_AUTO;
    Precision prec = PRECISION_FP32;
    int unknown = device_parse(dev, &want) || precision_parse(c0->precision, &prec);
    if (unknown || want == DEVICE_CPU || prec == PRECISION_BF16) {
        SaeBackendSpec spec;
        const char *e = sae_backend_resolve(dev, c0->precision, &spec);
        if (e) {
            snprintf(buf, len, "%s (run.device %s, train.precision %s)", e, dev, c0->precision);
            return buf;
        }
    }
    return NULL;
}

typedef struct {
    SaeBackend be;    // the SAE on its device; sae_backend_host(&be) is the host Sae
    char *dir;
    char ckpt[4200], state[4200], metrics[4200], final[4200];
    SaeLrSchedule schedule;
    uint64_t prefix_rng;
    int64_t last_checkpoint; // step of the last good checkpoint (-1: none)
    SaeStepMetrics m;
} Member;

/* Mean-norm scale sqrt(d) / mean ‖x‖ over the first rows of the data (same on every rank). */
static float compute_data_scale(DataSource *src) {
    int n = src->n_rows < 8192 ? (int)src->n_rows : 8192;
    float *rows = mallocCheck((size_t)n * src->d * sizeof(float));
    int64_t *ids = mallocCheck(n * sizeof(int64_t));
    for (int i = 0; i < n; i++) ids[i] = i;
    data_source_read_rows(src, ids, n, rows);
    double sum = 0;
    for (int b = 0; b < n; b++) {
        double s = 0;
        for (int i = 0; i < src->d; i++) s += (double)rows[(size_t)b * src->d + i] * rows[(size_t)b * src->d + i];
        sum += sqrt(s);
    }
    free(rows);
    free(ids);
    if (!(sum > 0) || !isfinite(sum)) saev_fail("%s: cannot scale data with mean norm %g", src->name, sum / n);
    return (float)(sqrt((double)src->d) / (sum / n));
}

static void init_member(Member *mb, const TrainConfig *c, DataSource *src, int i, const Comm *comm) {
    Sae *sae = sae_backend_host(&mb->be);
    const char *init = c->sae.init;
    if (comm->rank == 0) {
        if (!strcmp(init, "kaiming")) {
            sae_init_kaiming(sae, (uint64_t)c->seed * 1000003u + (uint64_t)i);
        } else if (!strcmp(init, "datapoint")) {
            int n = src->n_rows < 4096 ? (int)src->n_rows : 4096;
            float *rows = mallocCheck((size_t)n * src->d * sizeof(float));
            int64_t *ids = mallocCheck(n * sizeof(int64_t));
            for (int r = 0; r < n; r++) ids[r] = r;
            data_source_read_rows(src, ids, n, rows);
            for (size_t e = 0; e < (size_t)n * src->d; e++) rows[e] *= sae->data_scale;
            sae_init_datapoint(sae, rows, n, 0.8f, (uint64_t)c->seed * 1000003u + (uint64_t)i);
            free(rows);
            free(ids);
        } else {
            sae_load_weights(sae, init);
        }
    }
    /* Every rank starts from rank 0's weights. */
    comm_bcast(comm, sae->params, sae->n_params * sizeof(float), 0);
    comm_bcast(comm, &sae->threshold, sizeof(float), 0);
}

static void write_metrics_line(Member *mb, int64_t step, double tokens_per_s, double loader_tokens_per_s) {
    FILE *f = fopen(mb->metrics, "a");
    libcCheckPtr(f, mb->metrics);
    const SaeStepMetrics *m = &mb->m;
    fprintf(f,
            "{\"step\": %lld, \"loss\": %.9g, \"mse\": %.9g, \"l1\": %.9g, \"l0\": %.9g, \"aux\": %.9g, \"nmse\": %.9g, \"nmse_uncentered\": %.9g, "
            "\"explained_variance\": %.9g, \"dead_pct\": %.6g, \"lr\": %.9g, \"grad_norm\": %.9g, \"tokens_per_s\": %.6g, \"loader_tokens_per_s\": %.6g}\n",
            (long long)step, m->loss, m->mse, m->l1, m->l0, m->aux, m->nmse, m->nmse_uncentered, m->explained_variance, 100.0 * m->dead_frac, m->lr,
            m->grad_norm, tokens_per_s, loader_tokens_per_s);
    if (ferror(f) | (fclose(f) != 0)) saev_fail("%s: write failed: %s", mb->metrics, strerror(errno));
}

/* On resume, drop metrics lines the killed run wrote after its last saved step. */
static void trim_metrics(const char *path, int64_t keep_below) {
    FILE *f = fopen(path, "r");
    if (!f) return;
    AtomicFile out;
    atomic_file_open_or_die(&out, path);
    FILE *o = out.f;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        long long s;
        if (sscanf(line, "{\"step\": %lld", &s) == 1 && s < keep_below) fputs(line, o);
    }
    fclose(f);
    atomic_file_commit_or_die(&out);
}

/* metrics.json, the finished SAE's summary: the last metrics line's fields plus the run's
 * totals (written tmp + rename; `saev status` counts an SAE finished when it exists). */
static void write_final_metrics(const Member *mb, int64_t steps, int64_t batch) {
    FILE *f = fopen(mb->metrics, "r");
    libcCheckPtr(f, mb->metrics);
    char line[4096], last[4096] = "";
    while (fgets(line, sizeof line, f))
        if (line[0] == '{') snprintf(last, sizeof last, "%s", line);
    fclose(f);
    char *open = strchr(last, '{'), *close = strrchr(last, '}');
    if (!open || !close || close <= open + 1) saev_fail("%s: no metrics line to summarize", mb->metrics);
    *close = 0;
    char text[4600];
    int n = snprintf(text, sizeof text, "{\"finished\": true, \"steps\": %lld, \"tokens\": %lld, \"checkpoint\": \"sae.safetensors\", \"last\": {%s}}\n",
                     (long long)steps, (long long)(steps * batch), open + 1);
    write_file_atomic_or_die(mb->final, text, (size_t)n < sizeof text ? (size_t)n : sizeof text - 1);
}

static void save_member(Member *mb, int64_t steps_done, int64_t position, const Comm *comm) {
    if (comm->rank == 0) {
        sae_backend_pull(&mb->be); /* cuda: the device state into the host mirror */
        SaeTrainCounters cnt = {steps_done, position, mb->prefix_rng};
        sae_state_write(sae_backend_host(&mb->be), mb->state, &cnt);
        sae_checkpoint_write(sae_backend_host(&mb->be), mb->ckpt, steps_done);
    }
    mb->last_checkpoint = steps_done;
}

/* Sweep member i: its backend, directory, and its state, fresh (initialized on rank 0
 * and broadcast) or resumed; every member must resume at the same *start and loader
 * *position. *scale is the data scale, computed once for the members that scale. */
static void open_member(const TrainJob *job, const Comm *comm, int i, Member *mb, DataSource *src, int local_max,
                        const SaeBackendSpec *spec, int64_t T, float *scale, int64_t *start, int64_t *position) {
    int rank = comm->rank, d = src->d;
    const TrainConfig *c = job->members[i];
    SaeConfig sc;
    const char *bad = train_config_sae(c, d, &sc);
    if (bad) saev_usage_fail("sweep member %d: %s", i, bad);
    if (sae_parse_lr_schedule(c->lr_schedule, &mb->schedule)) saev_usage_fail("train.lr_schedule: unknown \"%s\"", c->lr_schedule);
    char err[512];
    if (sae_backend_create(&mb->be, &sc, local_max, spec, comm, err, sizeof err))
        saev_usage_fail("sweep member %d (train.sae on %s): %s", i, device_name(spec->device), err);
    Sae *host = sae_backend_host(&mb->be);
    mb->dir = train_member_dir(job, i);
    snprintf(mb->ckpt, sizeof mb->ckpt, "%s/sae.safetensors", mb->dir);
    snprintf(mb->state, sizeof mb->state, "%s/train_state.safetensors", mb->dir);
    snprintf(mb->metrics, sizeof mb->metrics, "%s/metrics.jsonl", mb->dir);
    if (rank == 0) {
        /* One run per SAE folder: a second `saev train` writing the same SAE stops here,
         * naming the first; rank 0 holds the locks for the job's lifetime. Per member, not
         * per train.out_dir, because a sweep's Slurm array tasks train disjoint members of
         * one out_dir at once. Taken as the folder is made, so a run refused earlier
         * writes nothing. */
        lock_output_dir_or_die(mb->dir, "saev train");
        make_dirs_or_die(mb->dir);
        cfg_write_resolved_text(job->resolved_yaml[i], mb->dir);
    }
    snprintf(mb->final, sizeof mb->final, "%s/metrics.json", mb->dir);
    mb->prefix_rng = (uint64_t)c->seed * 0x2545F4914F6CDD1DULL + (uint64_t)i + 7;
    mb->last_checkpoint = -1;
    if (c->sae.scale_data) {
        if (*scale == 0) *scale = compute_data_scale(src);
        host->data_scale = *scale;
    }
    int resumed = 0;
    if (c->resume && access(mb->state, R_OK) == 0) {
        SaeTrainCounters cnt;
        sae_state_read(host, mb->state, &cnt);
        if (i > 0 && (cnt.step != *start || cnt.position != *position))
            saev_fail("%s: saved at step %lld, but sweep member 0 at step %lld; the sweep's states disagree", mb->state, (long long)cnt.step, (long long)*start);
        *start = cnt.step;
        *position = cnt.position;
        mb->prefix_rng = cnt.prefix_rng;
        mb->last_checkpoint = *start;
        resumed = 1;
        log_info("SAE %d (%s): resuming at step %lld", i, mb->dir, (long long)*start);
    } else if (c->resume && i > 0 && *start > 0) {
        saev_fail("%s: no training state, but sweep member 0 resumes at step %lld", mb->state, (long long)*start);
    }
    if (!resumed) {
        if (c->resume) log_warn("SAE %d: resume asked but %s does not exist; starting from step 0", i, mb->state);
        init_member(mb, c, src, i, comm);
        if (rank == 0) unlink(mb->metrics);
    } else if (rank == 0) {
        trim_metrics(mb->metrics, *start);
    }
    if (rank == 0 && *start < T) unlink(mb->final); /* not finished (again) */
    sae_backend_push(&mb->be); /* cuda: the initialized or resumed state to the GPU */
}

static void check_finite_or_die(const Member *mb, int i, int64_t step) {
    if (mb->m.finite) return;
    char last[4400] = "no checkpoint was written yet";
    if (mb->last_checkpoint >= 0) snprintf(last, sizeof last, "the last good checkpoint %s (step %lld) is kept", mb->ckpt, (long long)mb->last_checkpoint);
    saev_fail("step %lld: SAE %d (%s): loss %g, gradient norm %g is not finite; stopping; %s", (long long)step, i, mb->dir, mb->m.loss,
              mb->m.grad_norm, last);
}

/* The training's pace between metrics lines (this rank's clock). */
typedef struct {
    double t_first, t_last;     // start of training, of the interval
    double loader_s;            // seconds inside batch_loader_next this interval
    double loader_s_total;      // the same over the run
    int64_t steps_since;        // steps this interval
    int warned_loader;          // the loader-bound warning was given
} Pace;

/* A metrics line per SAE for the interval ending at `step`, and a warning (once) when
 * the data loader sets the pace. Collective: the slowest rank's loader counts. */
static void report_interval(Pace *p, Member *mem, int K, int64_t step, const TrainConfig *c0, const Comm *comm) {
    double wait = p->loader_s;
    comm_allreduce(comm, &wait, 1, COMM_F64, COMM_MAX);
    p->loader_s_total += p->loader_s;
    p->loader_s = 0;
    double now = saev_now(), rows = (double)p->steps_since * c0->batch_size;
    double tps = rows / (now - p->t_last);
    double loader_tps = rows / (wait > 1e-9 ? wait : 1e-9);
    int rank = comm->rank;
    if (rank == 0) for (int i = 0; i < K; i++) write_metrics_line(&mem[i], step, tps, loader_tps);
    if (rank == 0 && !p->warned_loader && wait > 0.5 * (now - p->t_last)) { /* once, not once a rank */
        log_warn("step %lld: the data loader takes %.0f%% of the step time (loader %.4g tokens/s, training %.4g tokens/s): "
                 "this run is bound by reading %s, not by the SAE", (long long)step + 1, 100 * wait / (now - p->t_last), loader_tps, tps, c0->data);
        p->warned_loader = 1;
    }
    p->t_last = now;
    p->steps_since = 0;
}

/* The run's rates, each SAE's final metrics (final_metrics.json on rank 0) and last line. */
static void report_end(const Member *mem, int K, const TrainConfig *c0, int64_t start, int64_t T, const Pace *pace, int rank) {
    if (start < T) {
        double wall = saev_now() - pace->t_first, rows = (double)(T - start) * c0->batch_size;
        log_info("%.4g tokens/s training, data loader %.4g tokens/s (%.0f%% of the time waiting for data on rank 0)", rows / wall,
                 rows / (pace->loader_s_total > 1e-9 ? pace->loader_s_total : 1e-9), 100 * pace->loader_s_total / wall);
    }
    if (rank == 0)
        for (int i = 0; i < K; i++) write_final_metrics(&mem[i], T, c0->batch_size);
    if (rank == 0 && start < T)
        for (int i = 0; i < K; i++) {
            const SaeStepMetrics *m = &mem[i].m;
            log_info("SAE %d (%s): loss %.5g, NMSE %.4g, L0 %.1f, dead %.1f%%", i, mem[i].dir, m->loss, m->nmse, m->l0, 100 * m->dead_frac);
        }
}

void train_run(const TrainJob *job, const Comm *comm) {
    int K = job->K;
    if (K < 1) saev_usage_fail("train: no configs");
    const TrainConfig *c0 = job->members[0];
    int64_t T = train_config_steps(c0);
    if (T < 1) saev_usage_fail("train: set train.steps or train.n_tokens");
    int rank = comm->rank, size = comm->size;
    if (c0->batch_size < size) saev_usage_fail("train.batch_size %lld is smaller than the %d ranks", (long long)c0->batch_size, size);
    /* The device first: a run refused here (no CUDA in this build, no GPU) writes nothing. */
    SaeBackendSpec spec;
    const char *bad_dev = sae_backend_resolve(job->device, c0->precision, &spec);
    if (bad_dev) saev_usage_fail("train: %s", bad_dev);
    DataSource *src = data_source_open("train", c0->data, c0->layer, c0->tokens);
    int d = src->d;
    int local_max = batch_loader_local_rows(c0->batch_size, size - 1, size); /* the last rank has the largest share */
    if (batch_loader_local_rows(c0->batch_size, 0, size) > local_max) local_max = batch_loader_local_rows(c0->batch_size, 0, size);

    Member *mem = callocCheck(K, sizeof(Member));
    int64_t start = 0, position = 0;
    float scale = 0;
    for (int i = 0; i < K; i++) open_member(job, comm, i, &mem[i], src, local_max, &spec, T, &scale, &start, &position);
    comm_barrier(comm);

    BatchLoader loader;
    batch_loader_init(&loader, src, comm, c0->batch_size, c0->shuffle, c0->shuffle_buffer, (uint64_t)c0->seed, position);
    int n_local = batch_loader_local_rows(c0->batch_size, rank, size);
    SaeBatch batch;
    sae_batch_init(&batch, spec.device, local_max, d);
    SaeBackend **bes = mallocCheck(K * sizeof(SaeBackend *));
    uint64_t **rngs = mallocCheck(K * sizeof(uint64_t *));
    float *lrs = mallocCheck(K * sizeof(float));
    double *clips = mallocCheck(K * sizeof(double));
    SaeStepMetrics *ms = mallocCheck(K * sizeof(SaeStepMetrics));
    for (int i = 0; i < K; i++) {
        bes[i] = &mem[i].be;
        rngs[i] = &mem[i].prefix_rng;
        clips[i] = job->members[i]->grad_clip;
    }
    log_info("training %d SAE%s on %s: d=%d, %lld steps of %lld rows on %d rank%s, device %s%s", K, K > 1 ? "s" : "", c0->data, d,
             (long long)T, (long long)c0->batch_size, size, size > 1 ? "s" : "", device_name(spec.device),
             spec.device == DEVICE_CUDA && spec.precision == PRECISION_TF32 ? " (tf32)" : "");
    Progress prog;
    progress_start(&prog, "steps", T);
    progress_update(&prog, start);
    Pace pace = {.t_last = saev_now()};
    pace.t_first = pace.t_last;
    /* Pipelined: the next batch is read (and checked for NaN on this rank) between
     * sae_sweep_step_begin and _end, so on cuda reading and the host-to-device copy overlap
     * the GPU's step; on cpu the steps run inside begin and reading follows as it always did.
     * The collective NaN verdict on a batch comes after the previous step's checkpoint, so
     * the last good checkpoints are kept. */
    int64_t batch_first_row = loader.position;
    double batch_read_s = 0; /* reading a batch counts in the metrics interval of the step it feeds */
    int batch_ok = start < T ? read_batch(&loader, &batch, n_local, d, &batch_read_s) : 1;
    for (int64_t step = start; step < T; step++) {
        pace.loader_s += batch_read_s;
        if (!comm_all_true(comm, batch_ok))
            saev_fail("step %lld: NaN or Inf in the training data %s (global rows %lld..%lld); last good checkpoints kept", (long long)step,
                      c0->data, (long long)batch_first_row, (long long)(batch_first_row + c0->batch_size - 1));
        sae_batch_submit(&batch, n_local, bes, K);
        int64_t position_after = loader.position; /* where a resume after this step reads on */
        for (int i = 0; i < K; i++) {
            const TrainConfig *c = job->members[i];
            lrs[i] = (float)sae_lr_at(mem[i].schedule, c->lr, c->lr_warmup, T, step);
        }
        sae_sweep_step_begin(bes, K, &batch, c0->batch_size, lrs, clips, rngs);
        batch_first_row = loader.position;
        if (step + 1 < T) batch_ok = read_batch(&loader, &batch, n_local, d, &batch_read_s);
        sae_sweep_step_end(bes, K, ms);
        for (int i = 0; i < K; i++) {
            mem[i].m = ms[i];
            check_finite_or_die(&mem[i], i, step);
        }
        pace.steps_since++;
        int64_t done = step + 1;
        int last = done == T;
        if (done % c0->metrics_every == 0 || last) report_interval(&pace, mem, K, step, c0, comm);
        if (last || (c0->checkpoint_every > 0 && done % c0->checkpoint_every == 0))
            for (int i = 0; i < K; i++) save_member(&mem[i], done, position_after, comm);
        progress_update(&prog, done);
        fault_kill_at(FAULT_TRAIN_KILL_AFTER_STEPS, done);
    }
    progress_finish(&prog);
    report_end(mem, K, c0, start, T, &pace, rank);
    sae_batch_free(&batch);
    free(bes);
    free(rngs);
    free(lrs);
    free(clips);
    free(ms);
    batch_loader_free(&loader);
    for (int i = 0; i < K; i++) { sae_backend_destroy(&mem[i].be); free(mem[i].dir); }
    free(mem);
    data_source_close(src);
}
