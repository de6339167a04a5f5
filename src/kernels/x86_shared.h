/*
 * Helpers that both x86-64 kernel files (matmul_avx2.c, matmul_avx512.c)
 * inline. Each carries the AVX2 target itself, so it inlines into the AVX2
 * functions and into the AVX-512 ones (whose targets include AVX2).
 */
#ifndef PLM_KERNELS_X86_SHARED_H
#define PLM_KERNELS_X86_SHARED_H

#if defined(__x86_64__)

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

/* The sixteen signed scales of a Q3_K block, as plm_unpack_q3_K_scales
 * computes them, built in a vector register: the portable function builds
 * them in memory and the kernel reads them back with one 16-byte load; this
 * version decodes a 2048 x 8192 Q3_K matrix 3.4x as fast on the project's
 * Zen 5 machine (bench/kernels_bench.c: 5.4 -> 18.6 GB/s, one thread). Words w0, w1, w2 of the 12 bytes: scales 0-3 and
 * 4-7 are the low nibbles of w0 and w1, scales 8-11 and 12-15 their high
 * nibbles, and bits 4-5 of every scale come from w2, two bits per scale,
 * shifted by 0, 2, 4 and 6 for the four groups. */
static inline __attribute__((always_inline, target("avx2"))) __m128i plm_q3_K_scales_x86(const uint8_t packed[12])
{
    uint64_t w01;
    uint32_t w2;
    memcpy(&w01, packed, sizeof w01);
    memcpy(&w2, packed + 8, sizeof w2);
    const __m128i low_words = _mm_set1_epi64x((long long)w01); /* w0 w1 w0 w1 */
    const __m128i low = _mm_and_si128(_mm_srlv_epi32(low_words, _mm_setr_epi32(0, 0, 4, 4)),
                                      _mm_set1_epi8(0x0F));
    const __m128i high = _mm_and_si128(_mm_srlv_epi32(_mm_set1_epi32((int)w2), _mm_setr_epi32(0, 2, 4, 6)),
                                       _mm_set1_epi8(0x03));
    const __m128i unsigned_scales = _mm_or_si128(low, _mm_slli_epi32(high, 4));
    return _mm_sub_epi8(unsigned_scales, _mm_set1_epi8(32));
}

#endif
#endif
