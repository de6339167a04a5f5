/*
 * Helpers shared by the fuzz targets (fuzz/fuzz_*.c).
 *
 * Each target defines LLVMFuzzerTestOneInput (and LLVMFuzzerInitialize when it
 * needs set-up). Built with clang and -fsanitize=fuzzer it is a libFuzzer
 * program; built with replay.c instead (any compiler) it replays saved inputs,
 * which is how the normal test suite runs fuzz/regressions/ and fuzz/seeds/.
 */
#ifndef PLM_FUZZ_COMMON_H
#define PLM_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Readers that only take a path get the input through one in-memory file per
 * process (memfd), rewritten for each input; returns its /proc/self/fd path. */
const char *fuzz_memfd_path(const uint8_t *data, size_t size);

/* A private directory for readers that take a directory, removed at exit. */
const char *fuzz_temp_dir(void);
/* Writes dir/name; aborts on failure (the harness, not the input, is broken). */
void fuzz_write_file(const char *dir, const char *name, const void *data, size_t size);

/* Reads every byte, so that AddressSanitizer checks the whole range is valid. */
void fuzz_touch(const void *data, size_t size);

/* $POCKETLM_SHARED/relative (default ../shared, as the tests); NULL if absent. */
const char *fuzz_shared_path(const char *relative);

/* Stops the program with a message: an invariant the library promises is broken. */
void fuzz_fail(const char *what) __attribute__((noreturn));

#endif
