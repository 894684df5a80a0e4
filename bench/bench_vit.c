/*
 * bench_vit.c: ViT-B/16 forward on the CPU, images/s, next to PyTorch CPU in the same run.
 *
 * Makes a CLIP ViT-B/16 with `saev make-model` weights (or uses --model DIR holding one),
 * draws a batch of 224x224 inputs, and times saev's CPU forward for all 12 blocks and
 * for stopping at layer -2, then runs bench/vit_torch_peer.py (/usr/bin/python3, Debian's
 * torch: the same architecture from torch modules, the same weights, pixels and thread
 * count) and prints both figures side by side with the ratio. The peer also checks that
 * its layer -2 output matches saev's. Threads: OpenBLAS's count (OPENBLAS_NUM_THREADS or
 * all cores) for saev, torch.set_num_threads of the same for the peer; the OPENBLAS_*
 * environment, which both inherit, is printed.
 *
 * usage: bench_vit [--batch 8] [--batches 3] [--model DIR] [--no-peer]
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "safetensors.h"
#include "vit/vit.h"

extern char **environ;

static double time_forward(Vit *vit, const float *px, int B, const int *hidden, int batches, float *out) {
    vit_forward(vit, px, B, 224, 224, hidden, 1, out); /* warm-up: buffers, position table, page faults */
    double t0 = saev_now();
    for (int i = 0; i < batches; i++) vit_forward(vit, px, B, 224, 224, hidden, 1, out);
    return batches * B / (saev_now() - t0);
}

int main(int argc, char **argv) {
    int B = 8, batches = 3, peer = 1;
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

    printf("bench_vit: %s ViT-B/16-sized (D %d, %d blocks, patch %d), batch %d x 224px, %d timed batches\n",
           vit_family_name(c->family), D, c->n_layers, c->patch_size, B, batches);
    printf("threads: OpenBLAS %d (torch.set_num_threads(%d) for the peer); environment:", threads, threads);
    int any = 0;
    for (char **e = environ; *e; e++)
        if (!strncmp(*e, "OPENBLAS_", 9) || !strncmp(*e, "OMP_", 4)) { printf(" %s", *e); any = 1; }
    printf("%s\n", any ? "" : " (no OPENBLAS_* / OMP_* variables set)");

    int all[1] = {c->n_layers}, m2[1] = {c->n_layers - 1}; /* hidden-state indices of blocks -1 and -2 */
    double saev_all = time_forward(&vit, px, B, all, batches, out);
    double saev_m2 = time_forward(&vit, px, B, m2, batches, out);

    double torch_all = 0, torch_m2 = 0, peer_err = -1;
    if (peer) {
        StWriter w;
        st_writer_init(&w);
        int64_t ps[4] = {B, 3, 224, 224}, os[3] = {B, T, D};
        st_writer_add(&w, "pixel_values", ST_F32, 4, ps, px);
        snprintf(path, sizeof path, "%s/pixels.safetensors", tmpdir);
        st_writer_write_or_die(&w, path);
        st_writer_free(&w);
        st_writer_init(&w);
        st_writer_add(&w, "layer_m2", ST_F32, 3, os, out);
        snprintf(path, sizeof path, "%s/saev_out.safetensors", tmpdir);
        st_writer_write_or_die(&w, path);
        st_writer_free(&w);
        const char *root = getenv("SAEV_ROOT");
        char cmd[16384];
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/bench/vit_torch_peer.py %s %s/pixels.safetensors %s/saev_out.safetensors %d %d",
                 root ? root : ".", model_dir, tmpdir, tmpdir, threads, batches);
        FILE *p = popen(cmd, "r");
        char line[512] = "";
        int ok = p && fgets(line, sizeof line, p) && sscanf(line, "torch %lf %lf %lf", &torch_all, &torch_m2, &peer_err) == 3;
        if (p) pclose(p);
        if (!ok) fprintf(stderr, "bench_vit: the torch peer failed (%s); run from the source root or set SAEV_ROOT\n", cmd);
    }
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
