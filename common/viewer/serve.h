/*
 * serve.h: `saev serve`, the viewer: an HTTP server (libmicrohttpd, thread pool) that
 * serves the page in web/ and a JSON API (docs/viewer.md) over trained SAEs and their
 * visuals outputs, and runs images through preprocessing, the ViT (stopped at the SAE's
 * layer) and the SAE live.
 *
 * What it serves comes from `serve.dirs`: visuals outputs (folders holding top.safetensors
 * and index.json) or run directories (every sae.safetensors under them, with the
 * visuals/ folder beside it when there is one), and probe.safetensors files (the
 * intervention panel's probe when serve.probe is unset). From each SAE the server follows the
 * recorded paths: the checkpoint's config.resolved.yaml (train.data, train.layer,
 * train.tokens) or the visuals index.json give the activation store; the store's
 * recorded config gives the data set, preprocessing and the ViT. Relative paths are
 * taken from the current directory, as the pipeline wrote them.
 *
 * Files: serve_config.c (the `serve:` section), catalog.c (finding and loading SAEs,
 * stores, data sets, models), infer.c (image -> per-patch latents), render.c (images as
 * the model saw them, heatmaps, segmentation colours, PNG bytes), api.c (the /api/
 * handlers), http.c (the server: routing, static files, limits, uploads).
 */
#ifndef SAEV_VIEWER_SERVE_H
#define SAEV_VIEWER_SERVE_H
#include <stdint.h>

#include "config.h"

/* The `serve:` section.
 *
 *   serve:
 *     dirs: [demo/runs/sae]   # visuals outputs or run directories (the command's DIR...)
 *     host: 127.0.0.1         # anything else is announced with a warning
 *     port: 8080              # 0: any free port (printed)
 *     threads: 16             # libmicrohttpd thread pool
 *     max_upload_mb: 20       # larger uploads get 413
 *     timeout_s: 30           # idle connections are closed after this
 *     hist_images: 128        # store images sampled for each latent's activation histogram
 *     web: null               # the page's files; null: found beside the program
 *     probe: null             # probe.safetensors of `saev probe` (the intervention panel);
 *                             # null: one found under dirs (activations, deepest block)
 */
typedef struct {
    CfgList dirs;          // CFG_STRING_LIST: [n] served roots
    char *host;            // listening address (IPv4 dotted quad)
    int64_t port;          // TCP port, 0 = any
    int64_t threads;       // server threads
    int64_t max_upload_mb; // upload limit in MiB
    int64_t timeout_s;     // connection idle timeout
    int64_t hist_images;   // images sampled for latent histograms
    char *web;             // static files folder (NULL: search)
    char *probe;           // probe.safetensors for the intervention panel (NULL: none)
} ServeConfig;

extern const CfgSchema serve_config_schema;

/* Loads everything the config names and serves until SIGINT/SIGTERM. Bad input (no SAE
 * found, unreadable checkpoint, busy port) exits with a message naming it. */
int serve_run(const ServeConfig *c);

#endif
