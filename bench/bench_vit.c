/*
 * bench_vit.c: ViT-B/16 forward on the CPU, images/s, next to PyTorch CPU in the same run.
 *
 * Makes a CLIP ViT-B/16 with `saev make-model` weights (or uses --model DIR holding one),
 * draws a batch of 224x224 inputs and starts bench/vit_torch_peer.py (/usr/bin/python3,
 * Debian's torch: the same architecture from torch modules, the same weights, pixels and
 * thread count). Then saev's CPU forward and the peer alternate batch by batch (order
 * swapped every round), so both see the same load on a shared machine, for all 12 blocks
 * and for stopping at layer -2; after one warm-up batch each, images/s = images / summed
 * batch seconds. The peer also checks that its layer -2 output matches saev's. Threads:
 * OpenBLAS's count (OPENBLAS_NUM_THREADS or all cores) for saev, torch.set_num_threads of
 * the same for the peer; the OPENBLAS_* environment, which both inherit, is printed.
 *
 * usage: bench_vit [--batch 8] [--batches 4] [--model DIR] [--no-peer]
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "safetensors.h"
#include "vit/vit.h"

extern char **environ;

typedef struct {
    pid_t pid;
    FILE *to, *from; /* the peer's stdin and stdout */
} Peer;

static int peer_start(Peer *p, const char *script, const char *model_dir, const char *pixels, int threads) {
    int in[2], out[2];
    if (pipe(in) || pipe(out)) return -1;
    p->pid = fork();
    if (p->pid < 0) return -1;
    if (p->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        char th[16];
        snprintf(th, sizeof th, "%d", threads);
        execl("/usr/bin/python3", "python3", script, model_dir, pixels, th, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    p->to = fdopen(in[1], "w");
    p->from = fdopen(out[0], "r");
    char line[256];
    return p->to && p->from && fgets(line, sizeof line, p->from) && !strncmp(line, "ready", 5) ? 0 : -1;
}

/* Sends one command, returns the number it answers (or -1). */
static double peer_ask(Peer *p, const char *cmd) {
    char line[256];
    if (fprintf(p->to, "%s\n", cmd) < 0 || fflush(p->to) || !fgets(line, sizeof line, p->from)) return -1;
    return atof(line);
}

static void peer_stop(Peer *p) {
    if (p->to) {
        fprintf(p->to, "quit\n");
        fclose(p->to);
    }
    if (p->from) fclose(p->from);
    if (p->pid > 0) waitpid(p->pid, NULL, 0);
}

static double saev_batch(Vit *vit, const float *px, int B, const int *hidden, float *out) {
    double t0 = saev_now();
    vit_forward(vit, px, B, 224, 224, hidden, 1, out);
    return saev_now() - t0;
}

int main(int argc, char **argv) {
    int B = 8, batches = 4, peer = 1;
    const char *model_dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batches") && i + 1 < argc) batches = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--model") && i + 1 < argc) model_dir = argv[++i];
        else if (!strcmp(argv[i], "--no-peer")) peer = 0;
        else {
            fprintf(stderr, "usage: bench_vit [--batch N] [--batches N] [--model DIR] [--no-peer]\n");
            return 2;
        }
    }
    if (B < 1 || batches < 1) saev_usage_fail("--batch and --batches must be positive");
    log_init(0, 1);
    char tmpdir[] = "/tmp/saev_bench_vit_XXXXXX", err[2048], path[4096];
    if (!mkdtemp(tmpdir)) saev_fail("cannot create a temporary folder under /tmp");
    char made[4200];
    if (!model_dir) {
        VitConfig cfg;
        if (vit_preset_config(&cfg, VIT_CLIP, "vit-b-16", err, sizeof err)) saev_fail("%s", err);
        snprintf(made, sizeof made, "%s/model", tmpdir);
        if (vit_make_random(&cfg, 1, made, err, sizeof err)) saev_fail("%s", err);
        model_dir = made;
    }
    VitSpec spec;
    vit_spec_init(&spec);
    spec.path = model_dir;
    Vit vit;
    if (vit_open(&vit, &spec, err, sizeof err)) saev_fail("%s", err);
    const VitConfig *c = &vit.cfg;
    int threads = openblas_get_num_threads(), T = vit_tokens_out(c, 224, 224), D = c->d_model;

    size_t n_px = (size_t)B * 3 * 224 * 224;
    float *px = malloc(sizeof(float) * n_px), *out = malloc(sizeof(float) * (size_t)B * T * D);
    uint64_t s = 12345;
    for (size_t i = 0; i < n_px; i++) { /* uniform in [-2, 2): the range of normalized pixels */
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        px[i] = (float)((s >> 40) * (4.0 / 16777216.0) - 2.0);
    }

    printf("bench_vit: %s ViT-B/16-sized (D %d, %d blocks, patch %d), batch %d x 224px, %d timed batches each, saev and torch alternating\n",
           vit_family_name(c->family), D, c->n_layers, c->patch_size, B, batches);
    printf("threads: OpenBLAS %d (torch.set_num_threads(%d) for the peer); environment:", threads, threads);
    int any = 0;
    for (char **e = environ; *e; e++)
        if (!strncmp(*e, "OPENBLAS_", 9) || !strncmp(*e, "OMP_", 4)) { printf(" %s", *e); any = 1; }
    printf("%s\n", any ? "" : " (no OPENBLAS_* / OMP_* variables set)");

    int hidden[2] = {c->n_layers, c->n_layers - 1}; /* hidden-state indices of blocks -1 and -2 */
    Peer peer_proc = {0};
    if (peer) {
        StWriter w;
        st_writer_init(&w);
        int64_t ps[4] = {B, 3, 224, 224};
        st_writer_add(&w, "pixel_values", ST_F32, 4, ps, px);
        snprintf(path, sizeof path, "%s/pixels.safetensors", tmpdir);
        st_writer_write_or_die(&w, path);
        st_writer_free(&w);
        const char *root = getenv("SAEV_ROOT");
        char script[4096];
        snprintf(script, sizeof script, "%s/bench/vit_torch_peer.py", root ? root : ".");
        if (peer_start(&peer_proc, script, model_dir, path, threads)) {
            fprintf(stderr, "bench_vit: the torch peer (%s) did not start; run from the source root or set SAEV_ROOT\n", script);
            peer_stop(&peer_proc);
            peer = 0;
        }
    }
    double saev_rate[2], torch_rate[2] = {0, 0}, peer_err = -1;
    for (int m = 0; m < 2; m++) {
        char cmd[64];
        snprintf(cmd, sizeof cmd, "run %d", hidden[m] == c->n_layers ? c->n_layers : c->n_layers - 1);
        saev_batch(&vit, px, B, &hidden[m], out); /* warm-up: buffers, position table, page faults */
        if (peer) peer_ask(&peer_proc, cmd);
        double ts = 0, tt = 0;
        for (int r = 0; r < batches; r++) {
            if (peer && r % 2) tt += peer_ask(&peer_proc, cmd);
            ts += saev_batch(&vit, px, B, &hidden[m], out);
            if (peer && !(r % 2)) tt += peer_ask(&peer_proc, cmd);
        }
        saev_rate[m] = batches * B / ts;
        if (peer) torch_rate[m] = tt > 0 ? batches * B / tt : 0;
    }
    if (peer) { /* `out` holds saev's layer -2, the peer's last output its layer -2 */
        StWriter w;
        st_writer_init(&w);
        int64_t os[3] = {B, T, D};
        st_writer_add(&w, "layer_m2", ST_F32, 3, os, out);
        snprintf(path, sizeof path, "%s/saev_out.safetensors", tmpdir);
        st_writer_write_or_die(&w, path);
        st_writer_free(&w);
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "check %s", path);
        peer_err = peer_ask(&peer_proc, cmd);
        peer_stop(&peer_proc);
    }
    double saev_all = saev_rate[0], saev_m2 = saev_rate[1], torch_all = torch_rate[0], torch_m2 = torch_rate[1];
    printf("\n%-22s %14s %14s %8s\n", "images/s", "saev (C)", "PyTorch CPU", "ratio");
    printf("%-22s %14.2f %14.2f %7.2fx\n", "all 12 blocks", saev_all, torch_all, torch_all > 0 ? saev_all / torch_all : 0);
    printf("%-22s %14.2f %14.2f %7.2fx\n", "stop at layer -2", saev_m2, torch_m2, torch_m2 > 0 ? saev_m2 / torch_m2 : 0);
    if (peer_err >= 0) printf("layer -2 agreement saev vs torch: relative error %.2e\n", peer_err);

    free(px);
    free(out);
    vit_free(&vit);
    snprintf(path, sizeof path, "rm -rf '%s'", tmpdir);
    if (system(path) != 0) fprintf(stderr, "bench_vit: could not remove %s\n", tmpdir);
    return 0;
}
