/*
 * fsutil.h: small file-system helpers every stage needs: `mkdir -p`, and writing a whole
 * text file atomically (a temporary name in the same folder, fsync, rename) so readers
 * never see half a file; and the lock that keeps two runs from writing one output.
 */
#ifndef SAEV_FSUTIL_H
#define SAEV_FSUTIL_H

#include <stddef.h>

/* Creates dir and its missing parents. 0, or -1 with "<folder>: cannot create: <why>" in err. */
int make_dirs(const char *dir, char *err, size_t errlen);
/* Same; a failure ends the job with that message. */
void make_dirs_or_die(const char *dir);
/* Writes len bytes to path through path.tmp<pid> + rename; a failure ends the job naming the file. */
void write_file_atomic_or_die(const char *path, const void *data, size_t len);

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
