/*
 * SwiGLU (see swiglu.h). e^x as 2^n * e^r: n = round(x / ln 2), r = x - n ln 2
 * with ln 2 in two parts (Cody and Waite) so that r is exact to float
 * rounding, e^r by Cephes' degree-7 polynomial on |r| <= ln 2 / 2, and 2^n
 * written straight into a float's exponent. x is first clamped to
 * [-87, 88], where 2^n stays a normal float, and e^x above 88 is taken as
 * infinity: silu(g) is then g for g > 87 (where 1 + e^-g rounds to 1
 * anyway) and 0 for g < -88 (where it is below 1e-36 in magnitude).
 *
 * Written twice, 16 lanes with the compiler's vector types (compiled for
 * AVX-512, AVX2 and the baseline, vector_clones.h) and one lane for the
 * remainder, with the same operations in the same order: every version gives
 * the same bits.
 */
#include "kernels/swiglu.h"

#include "kernels/vector_clones.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#define LANES 16

typedef float lane_floats __attribute__((vector_size(LANES * sizeof(float))));
typedef uint32_t lane_bits __attribute__((vector_size(LANES * sizeof(uint32_t))));

#define EXP_LOW (-87.0f)
#define EXP_HIGH 88.0f
#define LOG2E 1.44269504088896341f
#define LN2_HIGH 0.693359375f      /* ln 2 to 11 bits: n * LN2_HIGH is exact */
#define LN2_LOW (-2.12194440e-4f)  /* ln 2 - LN2_HIGH */
#define ROUNDER 12582912.0f        /* 1.5 * 2^23: adding it rounds to an integer */
#define ROUNDER_BITS 0x4B400000u   /* its bits, whose low ones then hold that integer */

/* Cephes' coefficients of e^r = 1 + r + r^2 (c0 + c1 r + ... + c5 r^5). */
#define C5 1.9875691500e-4f
#define C4 1.3981999507e-3f
#define C3 8.3334519073e-3f
#define C2 4.1665795894e-2f
#define C1 1.6666665459e-1f
#define C0 5.0000001201e-1f

/* One lane: the same steps as the loop below. */
static float swiglu_lane(float g, float up)
{
    float x = -g;
    bool above = x > EXP_HIGH;
    x = x < EXP_LOW ? EXP_LOW : above ? EXP_HIGH : x; /* a NaN stays a NaN */
    float rounded = x * LOG2E + ROUNDER;
    float n = rounded - ROUNDER;
    float r = x - n * LN2_HIGH - n * LN2_LOW;
    float poly = ((((C5 * r + C4) * r + C3) * r + C2) * r + C1) * r + C0;
    float e_r = poly * (r * r) + r + 1.0f;
    uint32_t bits, scale_bits;
    memcpy(&bits, &rounded, sizeof bits);
    scale_bits = (bits - ROUNDER_BITS + 127u) << 23;
    float scale;
    memcpy(&scale, &scale_bits, sizeof scale);
    float e_x = above ? INFINITY : e_r * scale;
    return g / (1.0f + e_x) * up;
}

VECTOR_CLONES void plm_swiglu(float *gate, const float *up, int64_t n)
{
    const lane_floats low = (lane_floats){0} + EXP_LOW, high = (lane_floats){0} + EXP_HIGH;
    const lane_floats infinity = (lane_floats){0} + INFINITY;
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        lane_floats g, u;
        memcpy(&g, gate + i, sizeof g);
        memcpy(&u, up + i, sizeof u);
        lane_floats x = -g;
        /* The clamp: a comparison gives all ones in the lanes where it holds. */
        lane_bits below = (lane_bits)(x < low), above = (lane_bits)(x > high);
        x = (lane_floats)(((lane_bits)x & ~below) | ((lane_bits)low & below));
        x = (lane_floats)(((lane_bits)x & ~above) | ((lane_bits)high & above));
        lane_floats rounded = x * LOG2E + ROUNDER;
        lane_floats n_lanes = rounded - ROUNDER;
        lane_floats r = x - n_lanes * LN2_HIGH - n_lanes * LN2_LOW;
        lane_floats poly = ((((C5 * r + C4) * r + C3) * r + C2) * r + C1) * r + C0;
        lane_floats e_r = poly * (r * r) + r + 1.0f;
        lane_floats scale = (lane_floats)(((lane_bits)rounded - ROUNDER_BITS + 127u) << 23);
        lane_floats e_x = e_r * scale;
        e_x = (lane_floats)(((lane_bits)e_x & ~above) | ((lane_bits)infinity & above));
        lane_floats result = g / (1.0f + e_x) * u;
        memcpy(gate + i, &result, sizeof result);
    }
    for (; i < n; i++)
        gate[i] = swiglu_lane(gate[i], up[i]);
}
