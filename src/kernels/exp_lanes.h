/*
 * e^x for the float kernels that need many of them (SwiGLU, attention's
 * softmax), 16 lanes at a time with the compiler's vector types or one lane,
 * with the same operations in the same order: every version gives the same
 * bits (compiled for AVX-512, AVX2 and the baseline by the callers'
 * vector_clones.h). glibc's expf is one value at a time and took a tenth of
 * a prompt's time in SwiGLU alone.
 *
 * e^x = 2^n * e^r: n = round(x / ln 2), r = x - n ln 2 with ln 2 in two parts
 * (Cody and Waite) so that r is exact to float rounding, e^r by Cephes'
 * degree-7 polynomial on |r| <= ln 2 / 2, and 2^n written straight into a
 * float's exponent. x is first clamped to [-87, 88], where 2^n stays a
 * normal float, and e^x above 88 is taken as infinity; below -87 it is
 * e^-87, about 1.6e-38, instead of something smaller. Within a few units in
 * the last place of expf elsewhere (tests/test_swiglu.c).
 */
#ifndef PLM_KERNELS_EXP_LANES_H
#define PLM_KERNELS_EXP_LANES_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define EXP_LANES 16

typedef float lane_floats __attribute__((vector_size(EXP_LANES * sizeof(float))));
typedef uint32_t lane_bits __attribute__((vector_size(EXP_LANES * sizeof(uint32_t))));

#define EXP_LOW (-87.0f)
#define EXP_HIGH 88.0f
#define EXP_LOG2E 1.44269504088896341f
#define EXP_LN2_HIGH 0.693359375f     /* ln 2 to 11 bits: n * EXP_LN2_HIGH is exact */
#define EXP_LN2_LOW (-2.12194440e-4f) /* ln 2 - EXP_LN2_HIGH */
#define EXP_ROUNDER 12582912.0f       /* 1.5 * 2^23: adding it rounds to an integer */
#define EXP_ROUNDER_BITS 0x4B400000u  /* its bits, whose low ones then hold that integer */

/* Cephes' coefficients of e^r = 1 + r + r^2 (c0 + c1 r + ... + c5 r^5). */
#define EXP_C5 1.9875691500e-4f
#define EXP_C4 1.3981999507e-3f
#define EXP_C3 8.3334519073e-3f
#define EXP_C2 4.1665795894e-2f
#define EXP_C1 1.6666665459e-1f
#define EXP_C0 5.0000001201e-1f

/* Replaces each lane of *v by its e^x. (A pointer, as a 64-byte vector
 * passed by value would change the ABI between the clones.) */
static inline void exp_lanes(lane_floats *v)
{
    lane_floats x = *v;
    const lane_floats low = (lane_floats){0} + EXP_LOW, high = (lane_floats){0} + EXP_HIGH;
    const lane_floats infinity = (lane_floats){0} + INFINITY;
    /* The clamp: a comparison gives all ones in the lanes where it holds. */
    lane_bits below = (lane_bits)(x < low), above = (lane_bits)(x > high);
    x = (lane_floats)(((lane_bits)x & ~below) | ((lane_bits)low & below));
    x = (lane_floats)(((lane_bits)x & ~above) | ((lane_bits)high & above));
    lane_floats rounded = x * EXP_LOG2E + EXP_ROUNDER;
    lane_floats n = rounded - EXP_ROUNDER;
    lane_floats r = x - n * EXP_LN2_HIGH - n * EXP_LN2_LOW;
    lane_floats poly = ((((EXP_C5 * r + EXP_C4) * r + EXP_C3) * r + EXP_C2) * r + EXP_C1) * r + EXP_C0;
    lane_floats e_r = poly * (r * r) + r + 1.0f;
    lane_floats scale = (lane_floats)(((lane_bits)rounded - EXP_ROUNDER_BITS + 127u) << 23);
    lane_floats e_x = e_r * scale;
    *v = (lane_floats)(((lane_bits)e_x & ~above) | ((lane_bits)infinity & above));
}

/* e^x of one value: the same steps. */
static inline float exp_lane(float x)
{
    bool above = x > EXP_HIGH;
    x = x < EXP_LOW ? EXP_LOW : above ? EXP_HIGH : x; /* a NaN stays a NaN */
    float rounded = x * EXP_LOG2E + EXP_ROUNDER;
    float n = rounded - EXP_ROUNDER;
    float r = x - n * EXP_LN2_HIGH - n * EXP_LN2_LOW;
    float poly = ((((EXP_C5 * r + EXP_C4) * r + EXP_C3) * r + EXP_C2) * r + EXP_C1) * r + EXP_C0;
    float e_r = poly * (r * r) + r + 1.0f;
    uint32_t bits, scale_bits;
    memcpy(&bits, &rounded, sizeof bits);
    scale_bits = (bits - EXP_ROUNDER_BITS + 127u) << 23;
    float scale;
    memcpy(&scale, &scale_bits, sizeof scale);
    return above ? INFINITY : e_r * scale;
}

#endif
