/*
 * fsutil.c: see fsutil.h.
 */
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
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
