/*
 * IEEE 754 half (binary16) and bfloat16 conversions, done on the bit patterns
 * so the result does not depend on compiler flags or hardware support.
 * Float to half/bfloat16 rounds to nearest, ties to even; NaN stays NaN
 * (quiet), infinities and overflow become infinity, and tiny values become
 * half subnormals or zero.
 */
#include "tensor/types.h"

#include <string.h>

static uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* value >> shift, rounded to nearest with ties to even (1 <= shift <= 31). */
static uint32_t shift_right_round_even(uint32_t value, int shift)
{
    uint32_t kept = value >> shift;
    uint32_t rest = value & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rest > half || (rest == half && (kept & 1)))
        kept++;
    return kept;
}

float plm_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exponent = (h >> 10) & 0x1F;
    uint32_t mantissa = h & 0x3FF;
    if (exponent == 0) {
        /* Zero or subnormal: mantissa units of 2^-24, exact in float. */
        float magnitude = (float)mantissa * 0x1p-24f;
        return sign ? -magnitude : magnitude;
    }
    if (exponent == 31) /* infinity or NaN, payload kept */
        return bits_float(sign | 0x7F800000u | (mantissa << 13));
    /* Normal: rebias the exponent from 15 to 127. */
    return bits_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

uint16_t plm_f32_to_f16(float f)
{
    uint32_t u = float_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t magnitude = u & 0x7FFFFFFFu;

    if (magnitude > 0x7F800000u) /* NaN: keep the top payload bits, force quiet */
        return (uint16_t)(sign | 0x7E00 | ((magnitude >> 13) & 0x3FF));
    if (magnitude >= 0x38800000u) {
        /* At least 2^-14, the smallest normal half: drop 13 mantissa bits and
         * rebias the exponent. A rounding carry correctly bumps the exponent,
         * and anything at or past 0x7C00 (including float infinity) is
         * infinity. */
        uint32_t half = shift_right_round_even(magnitude, 13) - (112u << 10);
        return (uint16_t)(sign | (half >= 0x7C00 ? 0x7C00 : half));
    }
    /* Below 2^-14: a half subnormal, in units of 2^-24. The value is
     * mantissa_with_implicit_one * 2^(e - 23) with e the unbiased exponent,
     * so it is that mantissa shifted right by -e - 1 bits (>= 14). A float
     * subnormal or anything below 2^-25 rounds to zero. */
    int e = (int)(magnitude >> 23) - 127;
    int shift = -e - 1;
    if (shift > 24)
        return sign;
    uint32_t mantissa = (magnitude & 0x7FFFFFu) | 0x800000u;
    return (uint16_t)(sign | shift_right_round_even(mantissa, shift));
}

float plm_bf16_to_f32(uint16_t h)
{
    return bits_float((uint32_t)h << 16);
}

uint16_t plm_f32_to_bf16(float f)
{
    uint32_t u = float_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) /* NaN: truncate but keep it quiet */
        return (uint16_t)((u >> 16) | 0x0040);
    /* bfloat16 is the top half of a float: round the dropped 16 bits to even.
     * Overflow rounds into the infinity pattern by itself. */
    return (uint16_t)shift_right_round_even(u, 16);
}
