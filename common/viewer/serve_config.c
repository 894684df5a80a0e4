/*
 * serve_config.c: the schema of the `serve:` section (serve.h).
 */
#include <stddef.h>

#include "serve.h"

#define F(type_, key_, def_, min_, max_, help_) \
    {.key = #key_, .type = type_, .offset = offsetof(ServeConfig, key_), .def = def_, .min = min_, .max = max_, .help = help_}
static const CfgField serve_fields[] = {
    F(CFG_STRING_LIST, dirs, "[]", 1, 0, "visuals outputs or run directories to serve (saev serve DIR...)"),
    F(CFG_STRING, host, "127.0.0.1", 1, 0, "listening IPv4 address; anything but 127.0.0.1 is announced with a warning"),
    F(CFG_INT, port, "8080", 0, 65535, "TCP port (0: any free port, printed)"),
    F(CFG_INT, threads, "16", 1, 256, "server threads (libmicrohttpd thread pool; a thread waiting for the model holds its connections)"),
    F(CFG_INT, max_upload_mb, "20", 1, 1024, "uploads larger than this many MiB are refused with 413"),
    F(CFG_INT, timeout_s, "30", 1, 3600, "idle connections are closed after this many seconds"),
    F(CFG_INT, hist_images, "128", 1, 1e7, "store images sampled for each latent's activation histogram"),
    F(CFG_STRING, web, CFG_UNSET, 1, 0, "the page's static files; unset: web/ found beside the program (in-tree or installed)"),
    F(CFG_STRING, probe, CFG_UNSET, 1, 0, "probe.safetensors of `saev probe` for the image page's intervention panel (saev serve --probe PATH); unset: one found under serve.dirs (on activations, deepest block), else no panel"),
};
#undef F

const CfgSchema serve_config_schema = {"serve", sizeof(ServeConfig), serve_fields,
                                       (int)(sizeof serve_fields / sizeof serve_fields[0]), NULL};
