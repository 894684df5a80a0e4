/*
 * cmd_make_model.c: `saev make-model`: a ViT checkpoint with random weights in
 * transformers layout (model.safetensors + config.json), for the demo, tests and
 * benchmarks on machines without real weights.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "config_args.h"
#include "vit/vit.h"

static int usage(FILE *out, int code) {
    fprintf(out,
            "usage: saev make-model --family clip|dinov2|siglip --preset tiny|vit-s-16|vit-b-16|vit-l-14 --seed N --out DIR\n"
            "                       [--registers N]\n\n"
            "Writes DIR/model.safetensors (transformers tensor names) and DIR/config.json with random\n"
            "weights drawn from the seed. --registers adds DINOv2 register tokens (dinov2_with_registers).\n");
    return code;
}

int cmd_make_model(int argc, char **argv) {
    const char *family = NULL, *preset = NULL, *out = NULL;
    long long seed = -1, registers = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout, 0);
        if (i + 1 >= argc) {
            fprintf(stderr, "saev make-model: %s needs a value\n", a);
            return usage(stderr, 2);
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--family")) family = v;
        else if (!strcmp(a, "--preset")) preset = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--seed")) seed = flag_int_or_die("saev make-model", a, v, 0, (long long)1 << 62);
        else if (!strcmp(a, "--registers")) registers = flag_int_or_die("saev make-model", a, v, 0, 1024);
        else {
            fprintf(stderr, "saev make-model: unknown option \"%s\"\n", a);
            return usage(stderr, 2);
        }
    }
    if (!family || !preset || !out || seed < 0) {
        fprintf(stderr, "saev make-model: --family, --preset, --seed and --out are required\n");
        return usage(stderr, 2);
    }
    VitFamily f;
    if (vit_family_from_name(family, &f)) {
        fprintf(stderr, "saev make-model: unknown family \"%s\" (clip, dinov2, siglip)\n", family);
        return 2;
    }
    if (registers && f != VIT_DINOV2) {
        fprintf(stderr, "saev make-model: --registers is for the dinov2 family only\n");
        return 2;
    }
    VitConfig cfg;
    char err[2048];
    if (vit_preset_config(&cfg, f, preset, err, sizeof err)) {
        fprintf(stderr, "saev make-model: %s\n", err);
        return 2;
    }
    cfg.n_registers = (int)registers;
    cfg.pos_antialias = registers > 0;
    if (vit_make_random(&cfg, (uint64_t)seed, out, err, sizeof err)) {
        fprintf(stderr, "saev make-model: %s\n", err);
        return 1;
    }
    printf("%s: %s %s (hidden %d, %d blocks, %d heads, mlp %d, patch %d, image %d%s), seed %lld\n", out, family, preset, cfg.d_model,
           cfg.n_layers, cfg.n_heads, cfg.d_mlp, cfg.patch_size, cfg.image_size, registers ? ", registers" : "", seed);
    return 0;
}
