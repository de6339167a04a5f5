#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

const char *shared_path(const char *relative)
{
    static char path[4096];
    const char *root = getenv("POCKETLM_SHARED");
    if (!root || !*root)
        root = "../shared";
    snprintf(path, sizeof path, "%s/%s", root, relative);
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "skipping: %s not found (set POCKETLM_SHARED to the shared directory)\n",
                path);
        return NULL;
    }
    return path;
}

const char *temp_path(const char *tag)
{
    static char path[4096];
    static unsigned counter;
    const char *dir = getenv("POCKETLM_TEST_TMP");
    if (!dir || !*dir)
        dir = "/tmp";
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/plm-%d-%u-%s", dir, (int)getpid(), counter++, tag);
    return path;
}

uint64_t rng_next(struct test_rng *rng)
{
    uint64_t x = rng->state ? rng->state : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng->state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

float rng_uniform(struct test_rng *rng)
{
    return (float)(rng_next(rng) >> 40) / (float)(1ull << 24);
}

float rng_normal(struct test_rng *rng)
{
    float u1 = rng_uniform(rng), u2 = rng_uniform(rng);
    if (u1 < 1e-7f)
        u1 = 1e-7f;
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}
