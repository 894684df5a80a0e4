/*
 * log.h: levelled logging with a "[rank R] " prefix and progress reporting.
 *
 * Info and debug lines print on rank 0 only unless SAEV_LOG_ALL_RANKS=1 (or
 * log_set_all_ranks) asks every rank to speak; warnings and errors print everywhere.
 * The level comes from SAEV_LOG_LEVEL (debug|info|warn|error) or log_set_level.
 *
 * Progress: on a terminal a bar rewritten in place (count, rate, ETA); otherwise (logs,
 * Slurm output) one plain line per interval, so log files stay readable.
 */
#ifndef SAEV_LOG_H
#define SAEV_LOG_H

#include <stdint.h>

#include "check.h"

typedef enum { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 } LogLevel;

void log_init(int rank, int size);      /* called once MPI (or the lack of it) is known */
void log_set_level(LogLevel level);
void log_set_all_ranks(int all);
const char *log_rank_prefix(void);      /* "[rank 3] " under MPI with size > 1, else "" */
void log_msg(LogLevel level, const char *fmt, ...) SAEV_PRINTF(2, 3);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

typedef struct {
    const char *label;     /* what is counted, e.g. "images" */
    int64_t total;         /* expected count, 0 if unknown */
    int64_t done;          /* count so far */
    int64_t printed;       /* count at the last printed update (-1: none yet) */
    double t_start;        /* seconds (monotonic) at start */
    double t_last_print;   /* seconds at the last printed update */
    double interval;       /* seconds between plain-line updates */
    int is_tty;            /* stderr is a terminal: draw a bar */
    int active;            /* prints on this rank */
} Progress;

double saev_now(void); /* monotonic seconds */
void progress_start(Progress *p, const char *label, int64_t total);
void progress_update(Progress *p, int64_t done); /* absolute count */
void progress_finish(Progress *p);

#endif
