/*
 * fsutil.c: see fsutil.h.
 */
#include "fsutil.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

int make_dirs(const char *dir, char *err, size_t errlen) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) return saev_errf(err, errlen, "%s: path too long", dir);
    for (char *s = buf + 1;; s++) {
        char ch = *s;
        if (ch == '/' || ch == 0) {
            *s = 0;
            struct stat sb;
            if (mkdir(buf, 0755) != 0 && (errno != EEXIST || stat(buf, &sb) != 0 || !S_ISDIR(sb.st_mode)))
                return saev_errf(err, errlen, "%s: cannot create folder: %s", buf, errno == EEXIST ? "a file of that name exists" : strerror(errno));
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

char *read_file(const char *path, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) { saev_errf(err, errlen, "%s: cannot open: %s", path, strerror(errno)); return NULL; }
    struct stat st = {0};
    if (fstat(fileno(f), &st) != 0 || S_ISDIR(st.st_mode)) {
        saev_errf(err, errlen, "%s: cannot read: %s", path, S_ISDIR(st.st_mode) ? "a folder" : strerror(errno));
        fclose(f);
        return NULL;
    }
    /* Read to the end rather than trusting st_size: pipes and /proc files report 0. */
    size_t n = 0, cap = S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : 4096, got;
    char *buf = malloc(cap);
    if (!buf) { saev_errf(err, errlen, "%s: out of memory for %zu bytes", path, cap); fclose(f); return NULL; }
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap) {
            char *grown = realloc(buf, cap *= 2);
            if (!grown) { free(buf); fclose(f); saev_errf(err, errlen, "%s: out of memory for %zu bytes", path, cap); return NULL; }
            buf = grown;
        }
    }
    if (ferror(f)) { saev_errf(err, errlen, "%s: cannot read: %s", path, strerror(errno)); free(buf); fclose(f); return NULL; }
    fclose(f);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

char *read_file_or_die(const char *path, size_t *len) {
    char err[PATH_MAX + 128];
    char *text = read_file(path, len, err, sizeof err);
    if (!text) saev_fail("%s", err);
    return text;
}

int atomic_file_open(AtomicFile *a, const char *path, char *err, size_t errlen) {
    memset(a, 0, sizeof *a);
    if (snprintf(a->path, sizeof a->path, "%s", path) >= (int)sizeof a->path) return saev_errf(err, errlen, "%s: path too long", path);
    snprintf(a->tmp, sizeof a->tmp, "%s.tmp%d", path, (int)getpid());
    a->f = fopen(a->tmp, "wb");
    if (!a->f) return saev_errf(err, errlen, "%s: cannot create: %s", a->tmp, strerror(errno));
    return 0;
}

int atomic_file_commit(AtomicFile *a, char *err, size_t errlen) {
    int e = 0;
    if (ferror(a->f)) e = errno ? errno : EIO;
    if (!e && fflush(a->f) != 0) e = errno;
    if (!e && fsync(fileno(a->f)) != 0) e = errno;
    if (fclose(a->f) != 0 && !e) e = errno;
    a->f = NULL;
    if (!e && rename(a->tmp, a->path) != 0) e = errno;
    if (e) {
        unlink(a->tmp);
        return saev_errf(err, errlen, "%s: cannot write: %s", a->path, strerror(e));
    }
    return 0;
}

void atomic_file_abort(AtomicFile *a) {
    if (a->f) fclose(a->f);
    a->f = NULL;
    unlink(a->tmp);
}

void atomic_file_open_or_die(AtomicFile *a, const char *path) {
    char err[PATH_MAX + 256];
    if (atomic_file_open(a, path, err, sizeof err)) saev_fail("%s", err);
}

void atomic_file_commit_or_die(AtomicFile *a) {
    char err[PATH_MAX + 256];
    if (atomic_file_commit(a, err, sizeof err)) saev_fail("%s", err);
}

int write_file_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen) {
    AtomicFile a;
    if (atomic_file_open(&a, path, err, errlen)) return -1;
    if (fwrite(data, 1, len, a.f) != len) {
        int e = errno;
        atomic_file_abort(&a);
        return saev_errf(err, errlen, "%s: cannot write: %s", path, strerror(e));
    }
    return atomic_file_commit(&a, err, errlen);
}

void write_file_atomic_or_die(const char *path, const void *data, size_t len) {
    char err[PATH_MAX + 256];
    if (write_file_atomic(path, data, len, err, sizeof err)) saev_fail("%s", err);
}

void self_exe_path(char *out, size_t outlen) {
    ssize_t n = readlink("/proc/self/exe", out, outlen - 1);
    if (n < 0) saev_libc_fail(__FILE__, __LINE__, "readlink(/proc/self/exe)", "cannot find this program's path");
    out[n] = 0;
}

int lock_output_dir(const char *dir, const char *what, char *err, size_t errlen) {
    if (make_dirs(dir, err, errlen)) return -1;
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/.saev.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return saev_errf(err, errlen, "%s: cannot open the output lock: %s", path, strerror(errno));
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(fd, F_SETLK, &fl) != 0) {
        int e = errno;
        char holder[512] = "";
        ssize_t n = pread(fd, holder, sizeof holder - 1, 0);
        holder[n > 0 ? n : 0] = 0;
        holder[strcspn(holder, "\n")] = 0;
        struct flock who = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        if (!holder[0] && fcntl(fd, F_GETLK, &who) == 0 && who.l_type != F_UNLCK)
            snprintf(holder, sizeof holder, "pid %d on this host", (int)who.l_pid);
        close(fd);
        if (e != EACCES && e != EAGAIN) return saev_errf(err, errlen, "%s: cannot lock: %s", path, strerror(e));
        return saev_errf(err, errlen, "%s is in use by another run (%s); wait for it to end, or choose another output",
                         dir, holder[0] ? holder : "holder unknown");
    }
    char host[256] = "?", line[600];
    gethostname(host, sizeof host);
    host[sizeof host - 1] = 0;
    int len = snprintf(line, sizeof line, "host %s pid %d: %s\n", host, (int)getpid(), what);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)len, 0) != len) {
        int e = errno;
        close(fd);
        return saev_errf(err, errlen, "%s: cannot write the output lock: %s", path, strerror(e));
    }
    return 0; /* fd stays open: closing it would drop the lock */
}

void lock_output_dir_or_die(const char *dir, const char *what) {
    char err[PATH_MAX + 1024];
    if (lock_output_dir(dir, what, err, sizeof err)) saev_fail("%s", err);
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
