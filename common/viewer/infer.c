/*
 * infer.c: one image to per-patch SAE latents, and each latent's activation histogram.
 *
 * An upload goes decode -> preprocess (the store's recorded pipeline) -> ViT forward
 * stopped at the SAE's block -> patch tokens x data_scale -> SAE encode. A data-set image
 * that the store holds takes its rows from the store instead of the ViT: they are the
 * rows visuals ranked, so a latent's top image shows the values its score came from (its
 * pixels are still decoded and preprocessed for display). Everything that touches the
 * ViT, the SAE or HDF5 runs under viewer_compute_lock.
 */
#include "viewer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "log.h"

void viewer_image_free(ViewerImage *im) {
    free(im->rgb);
    free(im->seg);
    free(im->f);
    free(im->tokens);
    memset(im, 0, sizeof *im);
}

/* Patch rows x [n_patches, d] (data units) -> im->f, under the compute lock. */
static void encode_patches(ViewerSae *s, float *x, ViewerImage *im) {
    size_t n = (size_t)im->n_patches * s->d;
    for (size_t i = 0; i < n; i++) x[i] *= s->sae.data_scale; /* the SAE's input space, as in training */
    float *x_hat = mallocCheck(n * sizeof(float));
    im->S = s->S;
    im->f = mallocCheck((size_t)im->n_patches * s->S * sizeof(float));
    sae_encode_decode_eval(&s->sae, x, im->n_patches, im->f, x_hat);
    free(x_hat);
}

/* Decoded pixels -> the model input (and its 8-bit picture in im->rgb). */
static float *prepare(ViewerSource *src, const Image8 *pic, ViewerImage *im) {
    im->in_w = src->in_w;
    im->in_h = src->in_h;
    im->grid_w = src->grid_w;
    im->grid_h = src->grid_h;
    im->n_patches = src->grid_w * src->grid_h;
    im->rgb = mallocCheck((size_t)src->in_w * src->in_h * 3);
    float *px = mallocCheck((size_t)3 * src->in_w * src->in_h * sizeof(float));
    preprocess_image(&src->prep, pic, px, im->rgb);
    return px;
}

/* The ViT up to the SAE's block on one model input: im->tokens gets the block's tokens
 * (kept for edits), x the patch rows [P, d]. */
static void vit_patches(ViewerSae *s, const float *px, float *x, ViewerImage *im) {
    ViewerSource *src = s->src;
    int T = vit_tokens_out(&src->vit.cfg, src->in_h, src->in_w);
    int hidden = s->block + 1; /* block i's output is hidden state i + 1 */
    im->n_tokens = T;
    im->d = s->d;
    im->tokens = mallocCheck((size_t)T * s->d * sizeof(float));
    vit_forward(&src->vit, px, 1, src->in_h, src->in_w, &hidden, 1, im->tokens);
    int first = vit_has_cls(&src->vit.cfg) ? 1 : 0;
    memcpy(x, im->tokens + (size_t)first * s->d, (size_t)(T - first) * s->d * sizeof(float));
}

/* The rest of the path from decoded pixels: the picture and model input, then under the
 * compute lock the patch rows (store position pos, or the ViT when pos < 0) and the SAE;
 * out->ms counts from t0. */
static void run_decoded(ViewerSae *s, const Image8 *pic, int64_t pos, double t0, ViewerImage *out) {
    ViewerSource *src = s->src;
    float *px = prepare(src, pic, out);
    float *x = mallocCheck((size_t)out->n_patches * s->d * sizeof(float));
    const StoreMeta *m = &src->store->meta;
    viewer_compute_lock();
    if (pos >= 0) {
        /* every token of the block (what `saev intervene` reads), the patches for the SAE */
        out->n_tokens = m->n_tokens;
        out->d = s->d;
        out->tokens = mallocCheck((size_t)m->n_tokens * s->d * sizeof(float));
        store_read_layer(src->store, s->layer_idx, pos, 1, 0, m->n_tokens, out->tokens);
        memcpy(x, out->tokens + (size_t)m->has_cls * s->d, (size_t)m->n_patches * s->d * sizeof(float));
        if (m->has_patch_labels) {
            out->seg = mallocCheck((size_t)m->n_patches);
            store_read_patch_labels(src->store, pos, 1, out->seg);
        }
    } else {
        vit_patches(s, px, x, out);
    }
    encode_patches(s, x, out);
    viewer_compute_unlock();
    free(x);
    free(px);
    out->ms = 1e3 * (saev_now() - t0);
}

int viewer_image_from_dataset(ViewerSae *s, int64_t image, ViewerImage *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    ViewerSource *src = s->src;
    if (!src->has_model) { saev_errf(err, errlen, "no model for this SAE: %s", src->why_no_model); return 503; }
    if (image < 0 || image >= src->ds.n) {
        saev_errf(err, errlen, "image %lld is not in the data set (0..%lld)", (long long)image, (long long)src->ds.n - 1);
        return 404;
    }
    double t0 = saev_now();
    Image8 pic;
    if (decode_rgb_file(src->ds.paths[image], src->data.max_pixels, &pic, err, errlen)) return 500;
    run_decoded(s, &pic, src->store_pos[image], t0, out);
    image8_free(&pic);
    return 0;
}

int viewer_image_from_bytes(ViewerSae *s, const uint8_t *buf, size_t len, ViewerImage *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    ViewerSource *src = s->src;
    if (!src->has_model) { saev_errf(err, errlen, "no model for this SAE: %s", src->why_no_model); return 503; }
    double t0 = saev_now();
    Image8 pic;
    if (decode_rgb_mem(buf, len, src->data.max_pixels, &pic, err, errlen))
        return strstr(err, "data.max_pixels") ? 413 : 400; /* decode.c names the limit in its message */
    run_decoded(s, &pic, -1, t0, out);
    image8_free(&pic);
    return 0;
}

int viewer_intervene(Viewer *v, ViewerSae *s, const ViewerImage *im, const Edit *edits, int n_edits, int *pred_before, float *probs_before,
                     int *pred_after, float *probs_after, int *patches_edited, char *err, size_t errlen) {
    ViewerSource *src = s->src;
    const Probe *p = &v->probe;
    int has_cls = vit_has_cls(&src->vit.cfg), np = im->n_patches, d = s->d;
    int n_in = p->use_sae ? v->probe_sae.cfg.d_sae : d;
    if (p->block < s->block)
        return saev_errf(err, errlen, "probe %s reads block %d, before SAE %s's block %d; an edit cannot reach it", v->cfg->probe, p->block, s->name, s->block), 400;
    if (p->n_in != n_in || (p->use_sae && v->probe_sae.cfg.d_model != d))
        return saev_errf(err, errlen, "probe %s has %d input features, but SAE %s's images give %d", v->cfg->probe, p->n_in, s->name, n_in), 400;
    if (src->vit.cfg.n_registers > 0)
        return saev_errf(err, errlen, "the ViT of SAE %s has register tokens, which the stored layer lacks; the ViT cannot run on from it", s->name), 400;
    if (!p->is_patch && !p->pool_mean && !has_cls) return saev_errf(err, errlen, "probe %s reads the CLS token, which this ViT lacks", v->cfg->probe), 400;
    if (p->block >= src->vit.cfg.n_layers) return saev_errf(err, errlen, "probe %s reads block %d; the ViT has %d", v->cfg->probe, p->block, src->vit.cfg.n_layers), 400;
    int T = im->n_tokens, S_max = s->S > n_in ? s->S : n_in, rows = p->is_patch ? np : 1;
    size_t TD = (size_t)T * d;
    float *edited = mallocCheck(TD * sizeof(float)), *later = mallocCheck(TD * sizeof(float));
    float *f2 = mallocCheck((size_t)(np + 1) * S_max * sizeof(float)), *sf = mallocCheck((size_t)s->S * sizeof(float));
    float *xs = mallocCheck((size_t)(np + 1) * d * sizeof(float)), *x_hat = mallocCheck((size_t)(np + 1) * d * sizeof(float));
    float *feat = mallocCheck((size_t)rows * n_in * sizeof(float));
    double *z = mallocCheck((size_t)rows * p->K * sizeof(double));
    InterveneModel m = {&src->vit, p, &v->probe_sae, s->block, src->in_h, src->in_w, has_cls, np, d};
    memcpy(edited, im->tokens, TD * sizeof(float));
    viewer_compute_lock();
    intervene_predict(&m, im->tokens, later, feat, f2, xs, x_hat, z, pred_before, probs_before);
    *patches_edited = edit_apply(&s->sae, edits, n_edits, edited + (size_t)has_cls * d, im->f, np, im->seg, sf);
    intervene_predict(&m, edited, later, feat, f2, xs, x_hat, z, pred_after, probs_after);
    viewer_compute_unlock();
    free(edited); free(later); free(f2); free(sf); free(xs); free(x_hat); free(feat); free(z);
    return 0;
}

/* Counts of each latent's non-zero values over rows of hist_images store images spread
 * evenly over the store, in bins over [0, max_value] (values outside land in the end
 * bins). The rows are those the SAE saw (train.tokens). */
void viewer_latent_histograms(ViewerSae *s, int hist_images) {
    pthread_mutex_lock(&s->hist_lock);
    if (s->hist_done || !s->max_value) { pthread_mutex_unlock(&s->hist_lock); return; }
    Store *st = s->src->store;
    const StoreMeta *m = &st->meta;
    int64_t n_written = 0;
    for (int64_t p = 0; p < m->n_images; p++) n_written += st->status[p] == STORE_WRITTEN;
    int64_t *pos = mallocCheck((size_t)(n_written > 0 ? n_written : 1) * sizeof(int64_t));
    n_written = 0;
    for (int64_t p = 0; p < m->n_images; p++)
        if (st->status[p] == STORE_WRITTEN) pos[n_written++] = p;
    int n_img = (int)(n_written < hist_images ? n_written : hist_images);
    int tok0 = 0, n_tok = m->n_tokens;
    if (!strcmp(s->tokens, "patches")) { tok0 = m->has_cls; n_tok = m->n_patches; }
    else if (!strcmp(s->tokens, "cls")) { n_tok = m->has_cls; }
    s->hist_bins = 30;
    s->hist = callocCheck((size_t)s->S * s->hist_bins, sizeof(int64_t));
    float *x = mallocCheck((size_t)(n_tok > 0 ? n_tok : 1) * s->d * sizeof(float));
    float *f = mallocCheck((size_t)(n_tok > 0 ? n_tok : 1) * s->S * sizeof(float));
    float *x_hat = mallocCheck((size_t)(n_tok > 0 ? n_tok : 1) * s->d * sizeof(float));
    for (int i = 0; i < n_img && n_tok > 0; i++) {
        int64_t p = pos[(int64_t)i * n_written / n_img];
        viewer_compute_lock();
        store_read_layer(st, s->layer_idx, p, 1, tok0, n_tok, x);
        for (size_t e = 0; e < (size_t)n_tok * s->d; e++) x[e] *= s->sae.data_scale;
        sae_encode_decode_eval(&s->sae, x, n_tok, f, x_hat);
        viewer_compute_unlock();
        for (int r = 0; r < n_tok; r++)
            for (int j = 0; j < s->S; j++) {
                float v = f[(size_t)r * s->S + j];
                if (v == 0.0f || isnan(v)) continue;
                double top = s->max_value[j] > 0 ? s->max_value[j] : 1.0;
                int b = (int)floor(v / top * s->hist_bins);
                if (b < 0) b = 0;
                if (b >= s->hist_bins) b = s->hist_bins - 1;
                s->hist[(size_t)j * s->hist_bins + b]++;
            }
    }
    s->hist_rows = (int64_t)n_img * n_tok;
    s->hist_images = n_img;
    s->hist_done = 1;
    free(x); free(f); free(x_hat); free(pos);
    pthread_mutex_unlock(&s->hist_lock);
}
