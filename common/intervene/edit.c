/*
 * edit.c: parsing latent edits and applying them to one image's patch activations with
 * the SAE's error term kept (intervene.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "intervene.h"

int edit_parse(const char *text, Edit *e, char *err, size_t errlen) {
    memset(e, 0, sizeof *e);
    char *end;
    errno = 0;
    long s = strtol(text, &end, 10);
    if (end == text || s < 0 || errno) return saev_errf(err, errlen, "expected a latent index first (\"S=V\" or \"S*A\")");
    e->latent = (int)s;
    if (*end != '=' && *end != '*') return saev_errf(err, errlen, "expected = (set) or * (scale) after the latent");
    e->is_scale = *end == '*';
    const char *v = end + 1;
    e->value = strtod(v, &end);
    if (end == v) return saev_errf(err, errlen, "expected a number after %c", e->is_scale ? '*' : '=');
    if (*end == 0 || !strcmp(end, "@all")) return 0;
    if (!strncmp(end, "@class:", 7)) {
        const char *c = end + 7;
        e->class_label = strtoll(c, &end, 10);
        if (end == c || *end || e->class_label < 0) return saev_errf(err, errlen, "@class: expects a non-negative patch label");
        e->where = EDIT_CLASS;
        return 0;
    }
    if (!strncmp(end, "@patches:", 9)) {
        e->where = EDIT_PATCHES;
        const char *p = end + 9;
        for (;;) {
            long i = strtol(p, &end, 10);
            if (end == p || i < 0) { edit_free(e); return saev_errf(err, errlen, "@patches: expects patch indices I,J,..."); }
            e->patches = reallocCheck(e->patches, (size_t)(e->n_patches + 1) * sizeof(int));
            e->patches[e->n_patches++] = (int)i;
            if (*end == 0) return 0;
            if (*end != ',') { edit_free(e); return saev_errf(err, errlen, "@patches: indices are separated by commas"); }
            p = end + 1;
        }
    }
    return saev_errf(err, errlen, "unexpected \"%s\" (where: @all, @class:C or @patches:I,J,...)", end);
}

void edit_free(Edit *e) {
    free(e->patches);
    memset(e, 0, sizeof *e);
}

int edit_apply(const Sae *sae, const Edit *edits, int n_edits, float *x, const float *f, int n_patches, const uint8_t *labels,
               float *scratch_f) {
    int d = sae->cfg.d_model, S = sae->cfg.d_sae, changed = 0;
    double *delta = mallocCheck((size_t)d * sizeof(double));
    for (int p = 0; p < n_patches; p++) {
        const float *fp = f + (size_t)p * S;
        /* the codes as the edits leave them, only for the latents edits touch */
        int touched = 0;
        for (int i = 0; i < n_edits; i++) {
            const Edit *e = &edits[i];
            int applies = e->where == EDIT_ALL || (e->where == EDIT_CLASS && labels && labels[p] == e->class_label);
            for (int k = 0; e->where == EDIT_PATCHES && k < e->n_patches; k++) applies |= e->patches[k] == p;
            if (!applies) continue;
            if (!touched) memcpy(scratch_f, fp, (size_t)S * sizeof(float));
            touched = 1;
            int s = e->latent;
            scratch_f[s] = e->is_scale ? (float)(e->value * scratch_f[s]) : (float)e->value;
        }
        if (!touched) continue;
        float *xp = x + (size_t)p * d;
        int any = 0;
        memset(delta, 0, (size_t)d * sizeof(double));
        for (int s = 0; s < S; s++) {
            double coef = ((double)scratch_f[s] - (double)fp[s]) / sae->data_scale;
            if (coef == 0) continue;
            const float *w = sae->p.w_dec + (size_t)s * d;
            for (int i = 0; i < d; i++) delta[i] += coef * w[i];
            any = 1;
        }
        /* one rounding per element; unchanged codes add nothing, so the patch stays bit for bit */
        if (any)
            for (int i = 0; i < d; i++) xp[i] = (float)((double)xp[i] + delta[i]);
        changed += any;
    }
    free(delta);
    return changed;
}
