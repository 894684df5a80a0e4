/*
 * http.c: the viewer's HTTP server on libmicrohttpd: a pool of serve.threads threads
 * (each its own epoll loop), bound to serve.host only (MHD binds every interface unless
 * given an address), idle connections closed after serve.timeout_s.
 *
 * Routing: /api/... goes to api.c (GET, and POST for uploads); anything else is a static
 * file of the web folder, "/" being index.html. A static path is resolved with realpath
 * and must stay inside the web folder: ".." (MHD has already decoded %2e%2e) is refused
 * with 403, and so is a symlink that leads out; a missing file is 404.
 *
 * Uploads are read into memory up to serve.max_upload_mb: a Content-Length over the limit
 * is answered 413 before the body is read; a body that grows past it (chunked) is
 * dropped and answered 413 at its end. A client that stops sending (a truncated upload)
 * is cut off by the idle timeout and its buffer freed in the completion callback.
 */
#include "viewer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "log.h"

/* Per-request state: the body of a POST as it arrives. */
typedef struct {
    uint8_t *buf;  // [cap] received bytes: len
    size_t len, cap;
    int too_big;   // the body passed the limit; its bytes are dropped
} Request;

static Viewer viewer;
static size_t max_upload_bytes;

static const char *query_value(void *ctx, const char *key) {
    return MHD_lookup_connection_value((struct MHD_Connection *)ctx, MHD_GET_ARGUMENT_KIND, key);
}

static enum MHD_Result send_reply(struct MHD_Connection *c, Reply *r, int no_store) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_FREE);
    if (!resp) { free(r->body); return MHD_NO; }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->type);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (no_store) MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *c, int status, const char *msg) {
    Reply r;
    api_error(&r, status, "%s", msg);
    return send_reply(c, &r, 1);
}

static const char *content_type(const char *path) {
    const char *dot = strrchr(path, '.');
    if (!dot) return "application/octet-stream";
    if (!strcmp(dot, ".html")) return "text/html; charset=utf-8";
    if (!strcmp(dot, ".js")) return "text/javascript; charset=utf-8";
    if (!strcmp(dot, ".css")) return "text/css; charset=utf-8";
    if (!strcmp(dot, ".svg")) return "image/svg+xml";
    if (!strcmp(dot, ".png")) return "image/png";
    if (!strcmp(dot, ".json")) return "application/json";
    if (!strcmp(dot, ".txt") || !strcmp(dot, ".md")) return "text/plain; charset=utf-8";
    return "application/octet-stream";
}

static enum MHD_Result send_static(struct MHD_Connection *c, const char *url) {
    if (strstr(url, "..")) return send_error(c, 403, "paths with .. are refused");
    if (url[0] != '/') return send_error(c, 400, "the path must start with /");
    char path[PATH_MAX];
    const char *rel = strcmp(url, "/") ? url : "/index.html";
    if (snprintf(path, sizeof path, "%s%s", viewer.web_dir, rel) >= (int)sizeof path) return send_error(c, 414, "path too long");
    char *real = realpath(path, NULL);
    if (!real) return send_error(c, 404, "no such file");
    size_t wl = strlen(viewer.web_dir);
    if (strncmp(real, viewer.web_dir, wl) || real[wl] != '/') {
        free(real);
        return send_error(c, 403, "outside the served folder");
    }
    int fd = open(real, O_RDONLY | O_CLOEXEC);
    const char *type = content_type(real);
    free(real);
    struct stat sb;
    if (fd < 0) return send_error(c, 404, "no such file");
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
        close(fd);
        return send_error(c, 404, "not a file");
    }
    struct MHD_Response *resp = MHD_create_response_from_fd((uint64_t)sb.st_size, fd);
    if (!resp) { close(fd); return MHD_NO; }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    /* Nothing is fetched from outside: the page may only load what this server serves. */
    MHD_add_response_header(resp, "Content-Security-Policy", "default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'");
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method, const char *version,
                              const char *upload_data, size_t *upload_data_size, void **con_cls) {
    (void)cls;
    (void)version;
    int is_post = !strcmp(method, MHD_HTTP_METHOD_POST);
    if (!*con_cls) {
        Request *q = callocCheck(1, sizeof *q);
        *con_cls = q;
        if (is_post) {
            const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
            if (cl && strtoull(cl, NULL, 10) > max_upload_bytes) {
                char msg[128];
                snprintf(msg, sizeof msg, "upload of %s bytes is over the limit of %zu (serve.max_upload_mb)", cl, max_upload_bytes);
                return send_error(c, 413, msg);
            }
        }
        return MHD_YES;
    }
    Request *q = *con_cls;
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (q->too_big || q->len + n > max_upload_bytes) {
            q->too_big = 1;
            free(q->buf);
            q->buf = NULL;
            q->len = q->cap = 0;
            return MHD_YES;
        }
        if (q->len + n > q->cap) {
            q->cap = (q->len + n) * 2 < max_upload_bytes ? (q->len + n) * 2 : max_upload_bytes;
            q->buf = reallocCheck(q->buf, q->cap);
        }
        memcpy(q->buf + q->len, upload_data, n);
        q->len += n;
        return MHD_YES;
    }
    if (q->too_big) return send_error(c, 413, "upload over the limit (serve.max_upload_mb)");
    int is_get = !strcmp(method, MHD_HTTP_METHOD_GET) || !strcmp(method, MHD_HTTP_METHOD_HEAD);
    if (!strncmp(url, "/api/", 5)) {
        Reply r;
        if (is_get) api_get(&viewer, url + 5, query_value, c, &r);
        else if (is_post) api_post(&viewer, url + 5, q->buf, q->len, &r);
        else return send_error(c, 405, "method not allowed");
        return send_reply(c, &r, 1);
    }
    if (!is_get) return send_error(c, 405, "method not allowed");
    return send_static(c, url);
}

static void request_done(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)c;
    (void)toe;
    Request *q = *con_cls;
    if (q) {
        free(q->buf);
        free(q);
        *con_cls = NULL;
    }
}

int serve_run(const ServeConfig *c) {
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)c->port);
    if (inet_pton(AF_INET, c->host, &addr.sin_addr) != 1) saev_usage_fail("serve.host: \"%s\" is not an IPv4 address", c->host);
    if (!c->web) saev_usage_fail("serve.web: the page's folder is not set");
    char *web = realpath(c->web, NULL);
    char probe[PATH_MAX];
    snprintf(probe, sizeof probe, "%s/index.html", web ? web : c->web);
    if (!web || access(probe, R_OK)) saev_usage_fail("serve.web: %s has no index.html", c->web);
    max_upload_bytes = (size_t)c->max_upload_mb << 20;
    log_info("serve: the page's files: %s", web);

    viewer_load(&viewer, c);
    viewer.web_dir = web;

    /* Signals: the pool threads inherit this mask, the main thread waits for them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG, (uint16_t)c->port, NULL, NULL, handle, NULL, MHD_OPTION_SOCK_ADDR, &addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)c->threads, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)c->timeout_s,
        MHD_OPTION_NOTIFY_COMPLETED, request_done, NULL, MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024, MHD_OPTION_END);
    if (!d) saev_fail("serve: cannot listen on %s:%lld (is the port in use?)", c->host, (long long)c->port);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    int port = info ? (int)info->port : (int)c->port;
    if (strcmp(c->host, "127.0.0.1"))
        log_warn("serve: listening on %s, not 127.0.0.1: other machines can reach the viewer, which has no authentication", c->host);
    printf("saev serve: http://%s:%d/ (%d SAE%s; Ctrl-C stops)\n", c->host, port, viewer.n_sae, viewer.n_sae == 1 ? "" : "s");
    fflush(stdout);

    sigdelset(&set, SIGPIPE);
    int sig = 0;
    sigwait(&set, &sig);
    log_info("serve: signal %d, stopping", sig);
    MHD_stop_daemon(d);
    api_free_caches();
    viewer_free(&viewer);
    return 0;
}
