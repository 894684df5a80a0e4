/*
 * fsutil.h: small file-system helpers every stage needs: `mkdir -p`, and writing a whole
 * text file (or a cJSON tree) atomically (a temporary name in the same folder, fsync,
 * rename) so readers never see half a file.
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
/* A cJSON tree, indented and newline-terminated, the same way. */
struct cJSON;
void write_json_atomic_or_die(const char *path, const struct cJSON *json);

#endif
