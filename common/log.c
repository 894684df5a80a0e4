/*
 * log.c: logging and progress (see log.h).
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int g_rank = 0, g_size = 1, g_all_ranks = 0;
static LogLevel g_level = LOG_INFO;
static char g_prefix[32] = "";

void log_init(int rank, int size) {
    g_rank = rank;
    g_size = size;
    if (size > 1) snprintf(g_prefix, sizeof g_prefix, "[rank %d] ", rank);
    else g_prefix[0] = 0;
    const char *lvl = getenv("SAEV_LOG_LEVEL");
    if (lvl) {
        if (!strcmp(lvl, "debug")) g_level = LOG_DEBUG;
        else if (!strcmp(lvl, "info")) g_level = LOG_INFO;
        else if (!strcmp(lvl, "warn")) g_level = LOG_WARN;
        else if (!strcmp(lvl, "error")) g_level = LOG_ERROR;
    }
    const char *all = getenv("SAEV_LOG_ALL_RANKS");
    if (all && all[0] == '1') g_all_ranks = 1;
}

void log_set_level(LogLevel level) { g_level = level; }
void log_set_all_ranks(int all) { g_all_ranks = all; }
const char *log_rank_prefix(void) { return g_prefix; }

void log_msg(LogLevel level, const char *fmt, ...) {
    if (level < g_level) return;
    if (level <= LOG_INFO && g_rank != 0 && !g_all_ranks) return;
    static const char *names[] = {"debug: ", "", "warning: ", "error: "};
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    FILE *out = level >= LOG_WARN ? stderr : stdout;
    fprintf(out, "%s%s%s\n", g_prefix, names[level], msg);
    fflush(out);
}

double saev_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void format_duration(double s, char *buf, size_t n) {
    if (s < 0 || s > 1e7) { snprintf(buf, n, "?"); return; }
    int t = (int)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%dh%02dm", t / 3600, (t / 60) % 60);
    else snprintf(buf, n, "%dm%02ds", t / 60, t % 60);
}

void progress_start(Progress *p, const char *label, int64_t total) {
    memset(p, 0, sizeof *p);
    p->label = label;
    p->total = total;
    p->t_start = p->t_last_print = saev_now();
    p->is_tty = isatty(STDERR_FILENO);
    p->interval = p->is_tty ? 0.2 : 10.0;
    const char *iv = getenv("SAEV_PROGRESS_INTERVAL");
    if (iv) p->interval = atof(iv);
    p->active = g_rank == 0;
    p->printed = -1;
}

static void progress_print(Progress *p, int final) {
    double now = saev_now(), el = now - p->t_start;
    double rate = el > 0 ? (double)p->done / el : 0;
    char eta[32] = "", elapsed[32];
    format_duration(el, elapsed, sizeof elapsed);
    if (p->total > 0 && rate > 0) format_duration((double)(p->total - p->done) / rate, eta, sizeof eta);
    if (p->is_tty) {
        int width = 30, filled = p->total > 0 ? (int)(width * (double)p->done / (double)p->total) : 0;
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\r%s[%s] %lld/%lld %s  %.1f/s  elapsed %s  eta %s%s", g_prefix, bar, (long long)p->done,
                (long long)p->total, p->label, rate, elapsed, eta[0] ? eta : "-", final ? "\n" : "");
    } else {
        fprintf(stderr, "%sprogress: %lld/%lld %s  %.1f/s  elapsed %s  eta %s\n", g_prefix, (long long)p->done,
                (long long)p->total, p->label, rate, elapsed, eta[0] ? eta : "-");
    }
    fflush(stderr);
    p->t_last_print = now;
    p->printed = p->done;
}

void progress_update(Progress *p, int64_t done) {
    p->done = done;
    if (!p->active) return;
    if (saev_now() - p->t_last_print >= p->interval) progress_print(p, 0);
}

void progress_finish(Progress *p) {
    /* Off a terminal the final count may have just been printed; on one the bar needs its newline. */
    if (p->active && (p->is_tty || p->printed != p->done)) progress_print(p, 1);
}
