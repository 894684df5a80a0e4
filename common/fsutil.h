/*
 * fsutil.h: the file-system helpers every stage needs, each written once: `mkdir -p`;
 * reading a whole file; writing a file atomically (a temporary name in the same folder,
 * fsync, rename) so readers never see half a file, either from one buffer, a cJSON tree
 * or streamed through an AtomicFile; the folder this program was started from; and the lock that
 * keeps two runs from writing one output.
 */
#ifndef SAEV_FSUTIL_H
#define SAEV_FSUTIL_H

#include <stddef.h>
#include <stdio.h>

/* Creates dir and its missing parents. 0, or -1 with "<folder>: cannot create: <why>" in err. */
int make_dirs(const char *dir, char *err, size_t errlen);
/* Same; a failure ends the job with that message. */
void make_dirs_or_die(const char *dir);

/* The whole file, NUL-terminated (malloc'd; *len, when not NULL, excludes the NUL).
 * NULL with "<path>: cannot open|read: <why>" in err. */
char *read_file(const char *path, size_t *len, char *err, size_t errlen);
/* Same; a failure ends the job with that message. */
char *read_file_or_die(const char *path, size_t *len);

/* A file being written under a temporary name (path.tmp<pid>) until it is committed. */
typedef struct {
    FILE *f;          // the temporary file, open for writing
    char path[4096];  // the final name
    char tmp[4128];   // path + ".tmp<pid>"
} AtomicFile;

/* Opens the temporary; -1 with "<tmp>: cannot create: <why>" in err. */
int atomic_file_open(AtomicFile *a, const char *path, char *err, size_t errlen);
/* Flushes, fsyncs and closes the temporary, then renames it onto the final name; any
 * failure (including an earlier failed write, seen through ferror) removes the
 * temporary and returns -1 with "<path>: cannot write: <why>" in err. */
int atomic_file_commit(AtomicFile *a, char *err, size_t errlen);
/* Drops the temporary without touching the final name (an error path). */
void atomic_file_abort(AtomicFile *a);
/* The same two; a failure ends the job naming the file. */
void atomic_file_open_or_die(AtomicFile *a, const char *path);
void atomic_file_commit_or_die(AtomicFile *a);

/* Writes len bytes to path through an AtomicFile; -1 with the reason in err. */
int write_file_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen);
/* Same; a failure ends the job naming the file. */
void write_file_atomic_or_die(const char *path, const void *data, size_t len);
/* A cJSON tree, indented and newline-terminated, the same way. */
struct cJSON;
void write_json_atomic_or_die(const char *path, const struct cJSON *json);

/* The running program's own path (from /proc/self/exe); a failure ends the job. */
void self_exe_path(char *out, size_t outlen);

/* Takes the output lock of dir (made if missing): a POSIX record lock on dir/.saev.lock,
 * holding "host H pid P: what" for the next comer to read. The kernel drops the lock when
 * the process ends in any way (kill -9 too), so a killed run never blocks a rerun; NFS and
 * Lustre honour these locks across nodes. The lock lasts until the process exits (the
 * descriptor is kept open on purpose). Returns 0, or -1 with "<dir> is in use: <holder>"
 * in err when another live process holds it. */
int lock_output_dir(const char *dir, const char *what, char *err, size_t errlen);
/* Same; when held elsewhere it ends the job (status 1) naming the holder. */
void lock_output_dir_or_die(const char *dir, const char *what);

#endif
