/*
 * vit_expected.h: the hf-vit fixtures' expected.safetensors (transformers' outputs) read
 * into the layout saev writes, for the CPU and CUDA ViT tests alike.
 */
#ifndef SAEV_TESTS_VIT_EXPECTED_H
#define SAEV_TESTS_VIT_EXPECTED_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "safetensors.h"

typedef struct {
    float *pixels;   /* [B, 3, H, W] */
    float *hidden;   /* [L+1, B, T_out, D] reference with registers removed */
    float *last;     /* [B, T_out, D] */
    int B, H, W, L, T_out, D;
} Expected;

/* Reads expected.safetensors, dropping the register tokens (rows 1..R) the reference keeps. */
static inline void read_expected(const char *dir, int R, Expected *e) {
    char path[4096];
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    SafeTensors st;
    st_open_or_die(&st, path);
    const StTensor *px = st_require(&st, "pixel_values"), *hs = st_require(&st, "hidden_states");
    st_require(&st, "last_hidden_state");
    e->B = (int)px->shape[0];
    e->H = (int)px->shape[2];
    e->W = (int)px->shape[3];
    e->L = (int)hs->shape[0] - 1;
    int T_ref = (int)hs->shape[2];
    e->D = (int)hs->shape[3];
    e->T_out = T_ref - R;
    e->pixels = st_load_f32(&st, "pixel_values", 4, NULL);
    float *h = st_load_f32(&st, "hidden_states", 4, NULL), *l = st_load_f32(&st, "last_hidden_state", 3, NULL);
    int rows = (e->L + 1) * e->B, D = e->D;
    e->hidden = mallocCheck(sizeof(float) * rows * e->T_out * D);
    e->last = mallocCheck(sizeof(float) * e->B * e->T_out * D);
    for (int r = 0; r < rows + e->B; r++) {
        const float *src = r < rows ? h + (size_t)r * T_ref * D : l + (size_t)(r - rows) * T_ref * D;
        float *dst = r < rows ? e->hidden + (size_t)r * e->T_out * D : e->last + (size_t)(r - rows) * e->T_out * D;
        int k = 0;
        for (int t = 0; t < T_ref; t++)
            if (R == 0 || t == 0 || t > R) memcpy(dst + (size_t)k++ * D, src + (size_t)t * D, sizeof(float) * D);
    }
    free(h);
    free(l);
    st_close(&st);
}

static inline void free_expected(Expected *e) {
    free(e->pixels);
    free(e->hidden);
    free(e->last);
}

#endif
