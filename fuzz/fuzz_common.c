#include "fuzz_common.h"

#include "pocketlm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

void fuzz_fail(const char *what)
{
    fprintf(stderr, "fuzz invariant broken: %s (last library message: %s)\n", what,
            plm_last_error());
    abort();
}

const char *fuzz_memfd_path(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("plm-fuzz-input", 0);
        if (fd < 0)
            fuzz_fail("memfd_create failed");
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || (size > 0 && pwrite(fd, data, size, 0) != (ssize_t)size))
        fuzz_fail("cannot write the memfd");
    return path;
}

static char temp_dir[256];

static void remove_temp_dir(void)
{
    char command[300];
    snprintf(command, sizeof command, "rm -rf '%s'", temp_dir);
    if (system(command) != 0)
        fprintf(stderr, "could not remove %s\n", temp_dir);
}

const char *fuzz_temp_dir(void)
{
    if (!temp_dir[0]) {
        /* /dev/shm when there is one: the targets rewrite files for every input. */
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(temp_dir, sizeof temp_dir, "%s/plm-fuzz-XXXXXX", base);
        if (!mkdtemp(temp_dir))
            fuzz_fail("mkdtemp failed");
        atexit(remove_temp_dir);
    }
    return temp_dir;
}

void fuzz_write_file(const char *dir, const char *name, const void *data, size_t size)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || (size > 0 && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        fuzz_fail("cannot write a temporary file");
}

void fuzz_touch(const void *data, size_t size)
{
    const volatile uint8_t *bytes = data;
    uint8_t sum = 0;
    for (size_t i = 0; i < size; i++)
        sum ^= bytes[i];
    (void)sum;
}

const char *fuzz_shared_path(const char *relative)
{
    static char path[4096];
    const char *root = getenv("POCKETLM_SHARED");
    if (!root || !*root)
        root = "../shared";
    snprintf(path, sizeof path, "%s/%s", root, relative);
    return access(path, R_OK) == 0 ? path : NULL;
}
