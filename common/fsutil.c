/*
 * fsutil.c: see fsutil.h.
 */
#include "fsutil.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

int make_dirs(const char *dir, char *err, size_t errlen) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) {
        snprintf(err, errlen, "%s: path too long", dir);
        return -1;
    }
    for (char *s = buf + 1;; s++) {
        char ch = *s;
        if (ch == '/' || ch == 0) {
            *s = 0;
            struct stat sb;
            if (mkdir(buf, 0755) != 0 && (errno != EEXIST || stat(buf, &sb) != 0 || !S_ISDIR(sb.st_mode))) {
                snprintf(err, errlen, "%s: cannot create folder: %s", buf, errno == EEXIST ? "a file of that name exists" : strerror(errno));
                return -1;
            }
            *s = ch;
        }
        if (!ch) break;
    }
    return 0;
}

void make_dirs_or_die(const char *dir) {
    char err[PATH_MAX + 128];
    if (make_dirs(dir, err, sizeof err)) saev_fail("%s", err);
}

void write_file_atomic_or_die(const char *path, const void *data, size_t len) {
    char tmp[PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) saev_fail("cannot create %s: %s", tmp, strerror(errno));
    int ok = fwrite(data, 1, len, f) == len && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int e = errno;
    if (fclose(f) != 0 && ok) { ok = 0; e = errno; }
    if (!ok) {
        unlink(tmp);
        saev_fail("cannot write %s: %s", path, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        saev_fail("cannot rename %s to %s: %s", tmp, path, strerror(e));
    }
}

void write_json_atomic_or_die(const char *path, const struct cJSON *json) {
    char *s = cJSON_Print(json);
    if (!s) saev_fail("%s: cannot format the JSON", path);
    size_t len = strlen(s);
    s = reallocCheck(s, len + 2);
    s[len] = '\n';
    s[len + 1] = 0;
    write_file_atomic_or_die(path, s, len + 1);
    free(s);
}
