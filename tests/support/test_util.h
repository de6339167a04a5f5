/* Helpers shared by the tests. */
#ifndef PLM_TEST_UTIL_H
#define PLM_TEST_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h> /* cmocka needs these before cmocka.h */
#include <cmocka.h>

/* Exit code that CTest reports as "skipped". */
#define PLM_TEST_SKIP 77

/* Path of a file under the shared directory ($POCKETLM_SHARED, default ../shared),
 * or NULL (after printing why) when it does not exist. Result is static storage
 * reused by the next call. */
const char *shared_path(const char *relative);

/* A fresh path for a temporary file named after tag, in $POCKETLM_TEST_TMP
 * (created if needed) or /tmp. Result is static storage reused by the next call. */
const char *temp_path(const char *tag);

/* Deterministic pseudo-random numbers for test data (xorshift64*). */
struct test_rng {
    uint64_t state;
};
uint64_t rng_next(struct test_rng *rng);
float rng_uniform(struct test_rng *rng);            /* [0, 1) */
float rng_normal(struct test_rng *rng);             /* mean 0, deviation 1 */

#endif
