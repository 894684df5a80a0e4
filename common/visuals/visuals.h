/*
 * visuals.h: `saev visuals`, what each latent of a trained SAE responds to: per-latent
 * statistics, the top images of every latent, and pictures of the rendered latents'
 * top images with their patch activations as heatmaps. This header is the contract the
 * web viewer (`saev serve`) reads; every format below is exact.
 *
 * Semantics (rows of an activation store, per `tokens` as in train/evaluate: patches,
 * all or cls; image-major, only the images the store holds written):
 *   fires        latent s fires on a row when f_s != 0 (as `saev evaluate`; top-k may
 *                keep negative values, those fire too). f is the SAE's encoding of the
 *                row scaled by the checkpoint's data_scale; batch-top-k uses its JumpReLU
 *                threshold (sae_encode_decode_eval).
 *   score(s, i)  the largest f_s over image i's rows on which s fires; an image on which
 *                s never fires has no score and is never listed for s.
 *   top(s)       the top_k highest scores, ties to the lower image (store position);
 *                fewer when fewer images fire.
 *   freq[s]      (rows on which s fires) / (all rows)
 *   mean_value[s] mean of f_s over the rows on which s fires; NaN when s never fires
 *   max_value[s] largest f_s over those rows; NaN when s never fires
 * An "image" is its position in the store (0 .. n_images-1); the store's `image_index`
 * dataset maps it to the data set's index (equal for stores `saev activations` wrote).
 *
 * Rendered latents: every id in visuals.latents, plus a sample of n_render latents
 * (seeded by visuals.seed, splitmix64 partial Fisher-Yates over the ascending candidate
 * list) among the others whose log10(freq) lies strictly inside log_freq_range and
 * log10(mean_value) strictly inside log_value_range (saev's selection); all candidates
 * when there are fewer. Rendered latents are listed ascending.
 *
 * Outputs, in the SAE's output folder OUT (visuals.out with one SAE; <visuals.out>/<i>/
 * for the i-th of several; by default <checkpoint's folder>/visuals/):
 *
 *   OUT/top.safetensors
 *     values      F32 [S, top_k]  scores of top(s), descending; -inf where empty
 *     images      I64 [S, top_k]  store positions of those images; -1 where empty
 *     freq        F32 [S]
 *     mean_value  F32 [S]         NaN for latents that never fire
 *     max_value   F32 [S]         NaN for latents that never fire
 *     metadata (strings): format = "saev-visuals-1", checkpoint, store, layer (as
 *     configured, "null" when unset), tokens, top_k,
 *     n_rows, n_images, checkpoint_bytes (the checkpoint file's size), batch_size
 *
 *   OUT/index.json (written last: its presence means the folder is complete)
 *     {"format": "saev-visuals-1", "checkpoint": path, "store": path, "layer": int|null,
 *      "store_layers": [blocks the store holds], "tokens": "patches"|"all"|"cls", "top_k": int, "n_rows": int,
 *      "n_images": int, "d_model": int, "d_sae": int, "activation": "relu"|"top-k"|
 *      "batch-top-k", "k": int (top-k variants), "has_patch_labels": bool,
 *      "grid": [rows, cols] (patch grid), "image_size": [h, w] (the model's input),
 *      "png_size": [h, w] (the rendered PNGs), "dataset": the data set description,
 *      "n_render": int, "latents_requested": [int...], "rendered": [s...] ascending,
 *      "latents": [{"latent": s, "freq": f, "mean_value": v|null, "max_value": v|null,
 *                   "n_images": listed images}, ...] (one per rendered latent, in the
 *                   order of "rendered"),
 *      "top": "top.safetensors", "summary": "summary.svg"}
 *
 *   OUT/latents/<s>/ for each rendered latent s (decimal, no padding):
 *     <j>.png       image j (0-based rank in top(s)) as the model saw it: decoded,
 *                   resized and cropped by the store's preprocessing, before
 *                   normalization; upscaled by the integer factor u = ceil(224 / min(h, w))
 *                   (1 when already >= 224) with nearest-neighbour, so each model pixel is
 *                   a u x u block. 8-bit RGB.
 *     <j>_heat.png  the same pixels with latent s's per-patch activations a_p overlaid:
 *                   patches with a_p == 0 keep the image's pixels exactly; a patch with
 *                   a_p != 0 gets t = clamp(a_p / max_value[s], 0, 1) (0 when max_value
 *                   <= 0), alpha = 0.3 + 0.45 t, colour c(t) linear between the stops
 *                   (0: 255,255,0) (0.5: 255,128,0) (1: 200,0,0), each channel
 *                   round((1 - alpha) * pixel + alpha * c) (visuals_heat_pixel).
 *     <j>_seg.png   segmentation stores only: <j>.png with each patch's store
 *                   `patch_labels` value l shown: l = 0 (unlabelled) keeps the pixels, any
 *                   other l gives (pixel + 3 c + 2) / 4 per channel (integer division), c
 *                   its colour (visuals_label_colour: a fixed hashed palette).
 *     latent.json   {"latent": s, "freq", "mean_value", "max_value" (null when NaN),
 *                    "grid": [rows, cols], "images": [{"rank": j, "image": store
 *                    position, "image_index": data set index, "label": class (-1: none),
 *                    "path": the image file, "score": f, "png": "<j>.png", "heat":
 *                    "<j>_heat.png", "seg": "<j>_seg.png" or null, "patches": [a_p for
 *                    every patch in raster order]}, ...]}; written after its PNGs.
 *     Per-patch activations are f_s of the image's patch tokens (whatever `tokens` is,
 *     when the store holds patches; [] otherwise).
 *
 *   OUT/summary.svg  histograms of log10(freq) and log10(mean_value) over all latents
 *                    that fire (mean values <= 0 left out of the second), and
 *                    log10(mean_value) against log10(freq), one point per latent, the
 *                    selection box drawn.
 *
 * Distribution: images are dealt to ranks in whole global batches of
 * max(1, batch_size / tokens-per-image) images (rank r: batches [r·nb/size,
 * (r+1)·nb/size)), so every row is encoded in the same batch whatever the rank count and
 * its f is bit for bit the same (given the same OpenBLAS thread count per rank: GEMM
 * kernels may split work differently with other counts). Each rank keeps one top list per latent (O(S·top_k)),
 * the counts, maxima and exact value sums (integer superaccumulators); the lists merge
 * with a commutative MPI reduction under the total order (score desc, image asc), the
 * sums as integers, so 1 rank and N ranks write byte-identical top.safetensors. Then the
 * rendered latents' top images are dealt to ranks (per SAE, each decoded once however
 * many latents show it), their patch rows re-encoded, the PNGs written by their rank, and
 * the per-patch values gathered to rank 0 for the JSON files.
 *
 * Images are re-read from the data set recorded in the store's config attribute (its
 * `data:` and `preprocess:` sections), or from the `data:` section passed in when that
 * one names a data set (data.root or data.path set).
 *
 * Resume: every file is written tmp + rename. A rerun finds top.safetensors matching the
 * run (metadata above) and skips the encode pass, and skips latents whose latent.json
 * exists; the result is the same bytes as an uninterrupted run. When the pass is run
 * (no top.safetensors, or one from other settings) index.json is removed first and every
 * rendered latent is drawn again; folders of latents no longer rendered stay behind but
 * are not listed in index.json.
 */
#ifndef SAEV_VISUALS_H
#define SAEV_VISUALS_H

#include "comm.h"
#include <stdint.h>

#include "config.h"
#include "image/dataset.h"

/* The `visuals:` section of a config. */
typedef struct {
    int enabled;            // 1 when the config has a visuals: section (it is `none` by default)
    CfgList sae;            // CFG_STRING_LIST: checkpoints or run directories (as evaluate.sae)
    char *data;             // the activation store directory
    int64_t layer;          // store layer (CFG_UNSET_INT: the store's only one)
    char *tokens;           // patches | all | cls
    int64_t top_k;          // images kept per latent
    int64_t n_render;       // latents sampled for rendering besides `latents`
    CfgList latents;        // CFG_INT_LIST: latents always rendered
    CfgList log_freq_range; // CFG_FLOAT_LIST [2]: open interval on log10(freq)
    CfgList log_value_range;// CFG_FLOAT_LIST [2]: open interval on log10(mean_value)
    int64_t seed;           // the sample's seed
    int64_t batch_size;     // rows per rank per forward pass (rounded to whole images)
    char *out;              // output folder (one SAE) or parent of <i>/ (several); NULL: <ckpt dir>/visuals
} VisualsConfig;

extern const CfgSchema visuals_config_schema;

#define VISUALS_FORMAT "saev-visuals-1"
#define VISUALS_MIN_PX 224 /* rendered images are upscaled to at least this many pixels a side */

/* Checks the section (checkpoints, store, layer, latents in range) and resolves the
 * output folders; any problem prints a message naming the input and exits with 2 before
 * anything is written. Used by the launcher before starting ranks. */
void visuals_check_or_die(const VisualsConfig *c);

/* The whole stage on every rank of comm (collective). data: the config's `data:`
 * section, used to re-read images when it names a data set (NULL: the store's). */
void visuals_run(const VisualsConfig *c, const DataConfig *data, const Comm *comm);

/* The overlay of one pixel (see <j>_heat.png above): pixel rgb[3] in, out[3]. */
void visuals_heat_pixel(const uint8_t *rgb, float a, float max_value, uint8_t *out);
/* The colour of patch label l (> 0) in <j>_seg.png. */
void visuals_label_colour(int label, uint8_t *out);

#endif
