/*
 * Checks the attention kernels (kernels/attention.h) against plain scalar
 * loops that do the same sums in the same order, on random data of odd
 * sizes: every score and output must be bit-identical. Shared by
 * tests/test_kernels.c and the cross-compiled tests/cross/kernels_check.c,
 * so it needs neither cmocka nor the rest of the test support.
 */
#ifndef PLM_TEST_ATTENTION_CHECK_H
#define PLM_TEST_ATTENTION_CHECK_H

#include <stddef.h>

/* The number of kernel calls whose results differ from the loops'; the first
 * is described in why. */
int attention_check(char *why, size_t why_size);

#endif
