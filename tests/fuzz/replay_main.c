/*
 * replay_main.c: a main() for the fuzz harnesses in the normal build. Each argument is an
 * input file or a folder of them; every input is fed once to LLVMFuzzerTestOneInput, as
 * libFuzzer does when given files. A crash, sanitizer report or exit() of the harness
 * fails the test; an unreadable or empty corpus is a failure too (a test that replays
 * nothing proves nothing).
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "replay: cannot open %s\n", path); exit(1); }
    if (fseek(f, 0, SEEK_END) || ftell(f) < 0) { fprintf(stderr, "replay: cannot size %s\n", path); exit(1); }
    size_t n = (size_t)ftell(f);
    rewind(f);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf || fread(buf, 1, n, f) != n) { fprintf(stderr, "replay: cannot read %s\n", path); exit(1); }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return 1;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int replay_path(const char *path) {
    struct stat sb;
    if (stat(path, &sb)) { fprintf(stderr, "replay: %s does not exist\n", path); exit(1); }
    if (!S_ISDIR(sb.st_mode)) return replay_file(path);
    DIR *d = opendir(path);
    if (!d) { fprintf(stderr, "replay: cannot list %s\n", path); exit(1); }
    char **names = NULL;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        names = realloc(names, sizeof(char *) * (size_t)(n + 1));
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof(char *), cmp_names); /* a fixed order: failures reproduce */
    int count = 0;
    for (int i = 0; i < n; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", path, names[i]);
        count += replay_path(p);
        free(names[i]);
    }
    free(names);
    return count;
}

int main(int argc, char **argv) {
    int count = 0;
    for (int i = 1; i < argc; i++) count += replay_path(argv[i]);
    if (count == 0) { fprintf(stderr, "replay: no inputs found in the arguments\n"); return 1; }
    printf("replay: %d inputs ran without a crash\n", count);
    return 0;
}
