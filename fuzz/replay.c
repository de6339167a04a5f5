/*
 * Replays saved inputs through a fuzz target without libFuzzer (any compiler):
 *   replay_<target> FILE_OR_DIR...
 * Every regular file given, or found directly in a directory given, is one input.
 * A crash or sanitizer report ends the program, which fails the test; the time of
 * each slow input is printed so that a regression towards a hang shows.
 */
#include "fuzz_common.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Targets without set-up do not define it. */
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    /* A copy of exactly the input's size, as libFuzzer gives, so reads past the end are caught. */
    uint8_t *data = malloc(size > 0 ? (size_t)size : 1);
    if (!data || (size > 0 && fread(data, 1, (size_t)size, f) != (size_t)size)) {
        fprintf(stderr, "cannot read %s\n", path);
        fclose(f);
        free(data);
        return 1;
    }
    fclose(f);
    double start = now_seconds();
    LLVMFuzzerTestOneInput(data, (size_t)size);
    double elapsed = now_seconds() - start;
    if (elapsed > 1.0)
        printf("  %s took %.1f s\n", path, elapsed);
    free(data);
    return 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The files of a directory, in name order so that runs are repeatable. */
static int replay_dir(const char *dir, int *n_inputs)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "cannot open directory %s\n", dir);
        return 1;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *entry;
    while ((entry = readdir(d))) {
        if (entry->d_name[0] == '.')
            continue;
        char **grown = realloc(names, (n + 1) * sizeof *names);
        if (!grown)
            break;
        names = grown;
        names[n] = malloc(strlen(dir) + strlen(entry->d_name) + 2);
        sprintf(names[n], "%s/%s", dir, entry->d_name);
        n++;
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof *names, compare_names);
    int failures = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
            failures += replay_file(names[i]);
            (*n_inputs)++;
        }
        free(names[i]);
    }
    free(names);
    return failures;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE_OR_DIR...\n", argv[0]);
        return 2;
    }
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    double start = now_seconds();
    int failures = 0, n_inputs = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            /* An empty corpus directory is not kept in git; nothing to replay. */
            printf("%s: absent, skipped\n", argv[i]);
        } else if (S_ISDIR(st.st_mode)) {
            failures += replay_dir(argv[i], &n_inputs);
        } else {
            failures += replay_file(argv[i]);
            n_inputs++;
        }
    }
    printf("%s: %d inputs replayed in %.2f s, %d unreadable\n", argv[0], n_inputs,
           now_seconds() - start, failures);
    return failures ? 1 : 0;
}
