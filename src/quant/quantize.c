/*
 * Reference quantizers: floats to the block formats of quant_blocks.h.
 *
 * The legacy formats (Q4_0 ... Q8_0) without importance use ggml's reference
 * rounding, so they encode exactly as llama.cpp does. Everything else chooses
 * scales by weighted least squares, following the approach of ggml's K-quant
 * quantizers:
 *   1. each sub-block gets its own best scale (and min), found by trying a
 *      few dozen candidate scales around the naive max/nmax one and solving
 *      the least-squares fit for the levels each candidate produces;
 *   2. the sub-block scales are themselves quantized to 4-8 bits against one
 *      super-block scale, with the same kind of search;
 *   3. the elements are re-rounded against the scales as finally stored
 *      (after the f16 and integer rounding of step 2).
 * Without an imatrix the per-element weights grow with the element's
 * magnitude (ggml's tuned choices: large weights dominate the dot products);
 * with one, they follow the given importance.
 */
#include "quant/quantize.h"

#include "tensor/quant_blocks.h"
#include "tensor/types.h"

#include <assert.h>
#include <math.h>
#include <string.h>

/* A group whose largest magnitude is below this is stored as all zeros. */
#define TINY_GROUP_MAX 1e-15f

/* Largest group any scale search works on (a Q4_K sub-block). */
#define MAX_GROUP 32

/* v converted to an integer in [lo, hi] without overflow: truncates toward
 * zero, saturates, and maps NaN (from NaN or infinite inputs) to lo. */
static int clamp_to_int(float v, int lo, int hi)
{
    if (!(v >= (float)lo))
        return lo;
    if (v > (float)hi)
        return hi;
    return (int)v;
}

/* Nearest integer to v (ties to even, as ggml's nearest_int), clamped. */
static int nearest_clamped(float v, int lo, int hi)
{
    return clamp_to_int(rintf(v), lo, hi);
}

/* ------------------------------------------------------------------ scale searches */

/* Fits x[i] ~ scale * (levels[i] - nmax), levels in [0, 2*nmax - 1], minimising
 * sum weights[i] * error^2. The element of largest magnitude starts at -nmax,
 * the side of the range with one more level; then step counts from nmax - 0.9
 * to nmax + 0.9 are tried. For fixed levels l the best scale is
 * sum(w x l) / sum(w l^2), leaving an error of sum(w x^2) minus
 * sum(w x l)^2 / sum(w l^2), so the candidate with the largest such ratio
 * wins. Returns the scale. */
static float fit_symmetric_scale(int n, int nmax, const float *x, const float *weights,
                                 int8_t *levels)
{
    assert(n <= MAX_GROUP);
    float max = 0.0f, amax = 0.0f;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    if (amax < TINY_GROUP_MAX) {
        memset(levels, 0, (size_t)n);
        return 0.0f;
    }

    /* Start from the plain max/nmax scale, which stands if no weight is positive. */
    const float plain_iscale = -(float)nmax / max;
    for (int i = 0; i < n; i++)
        levels[i] = (int8_t)(nearest_clamped(plain_iscale * x[i], -nmax, nmax - 1) + nmax);
    float best_scale = 1.0f / plain_iscale, best_merit = 0.0f;

    for (int tweak = -9; tweak <= 9; tweak++) {
        const float iscale = -((float)nmax + 0.1f * (float)tweak) / max;
        int8_t trial[MAX_GROUP];
        float sum_xl = 0.0f, sum_l2 = 0.0f;
        for (int i = 0; i < n; i++) {
            int l = nearest_clamped(iscale * x[i], -nmax, nmax - 1);
            trial[i] = (int8_t)(l + nmax);
            sum_xl += weights[i] * x[i] * (float)l;
            sum_l2 += weights[i] * (float)(l * l);
        }
        if (sum_l2 > 0.0f && sum_xl * sum_xl / sum_l2 > best_merit) {
            memcpy(levels, trial, (size_t)n);
            best_merit = sum_xl * sum_xl / sum_l2;
            best_scale = sum_xl / sum_l2;
        }
    }
    return best_scale;
}

/* Fits x[i] ~ scale * levels[i] - min, levels in [0, nmax], min >= 0 (the
 * offset is never positive, so zero stays representable), minimising
 * sum weights[i] * error^2. Starts by spreading [min(x, 0), max(x)] over nmax
 * steps; then, for step counts from nmax - 0.9 to nmax + 0.9, rounds to levels
 * and solves the 2x2 weighted least-squares problem for scale and offset,
 * keeping the best fit (later candidates start from the best offset so far).
 * Returns the scale and stores min. */
static float fit_scale_and_min(int n, int nmax, const float *x, const float *weights,
                               uint8_t *levels, float *min)
{
    assert(n <= MAX_GROUP);
    float lo = x[0], hi = x[0], sum_w = 0.0f, sum_x = 0.0f;
    for (int i = 0; i < n; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if (lo > 0.0f)
        lo = 0.0f;
    if (!(hi > lo)) { /* constant non-positive group: all of it is the offset */
        memset(levels, 0, (size_t)n);
        *min = -lo;
        return 0.0f;
    }

    float offset = lo;
    float scale = (hi - lo) / (float)nmax;
    float best_error = 0.0f;
    for (int i = 0; i < n; i++) {
        levels[i] = (uint8_t)nearest_clamped((x[i] - offset) / scale, 0, nmax);
        float diff = scale * (float)levels[i] + offset - x[i];
        best_error += weights[i] * diff * diff;
    }

    for (int step = 0; step <= 36; step++) {
        const float iscale = ((float)nmax - 0.9f + 0.05f * (float)step) / (hi - offset);
        uint8_t trial[MAX_GROUP];
        float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
        for (int i = 0; i < n; i++) {
            int l = nearest_clamped(iscale * (x[i] - offset), 0, nmax);
            trial[i] = (uint8_t)l;
            sum_l += weights[i] * (float)l;
            sum_l2 += weights[i] * (float)(l * l);
            sum_xl += weights[i] * (float)l * x[i];
        }
        const float det = sum_w * sum_l2 - sum_l * sum_l;
        if (!(det > 0.0f))
            continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
        float this_offset = (sum_l2 * sum_x - sum_l * sum_xl) / det;
        if (this_offset > 0.0f) { /* refit with the offset pinned at zero */
            this_offset = 0.0f;
            this_scale = sum_xl / sum_l2;
        }
        float error = 0.0f;
        for (int i = 0; i < n; i++) {
            float diff = this_scale * (float)trial[i] + this_offset - x[i];
            error += weights[i] * diff * diff;
        }
        if (error < best_error) {
            memcpy(levels, trial, (size_t)n);
            best_error = error;
            scale = this_scale;
            offset = this_offset;
        }
    }
    *min = -offset;
    return scale;
}

/* Quantizes non-negative values (sub-block scales or mins) to levels in
 * [0, nmax] times one scale, minimising sum weights[i] * error^2: picks the
 * best of nine step counts around nmax by direct error, then improves the
 * levels one at a time (each moved to its best value given the others'
 * least-squares scale) for up to five rounds. Returns the scale. */
static float fit_positive_scale(int n, int nmax, const float *x, const float *weights,
                                uint8_t *levels)
{
    float max = 0.0f;
    for (int i = 0; i < n; i++)
        max = fmaxf(max, x[i]);
    if (max < TINY_GROUP_MAX) {
        memset(levels, 0, (size_t)n);
        return 0.0f;
    }

    float best_iscale = (float)nmax / max, best_error = INFINITY;
    for (int tweak = -4; tweak <= 4; tweak++) {
        const float iscale = ((float)nmax + 0.1f * (float)tweak) / max;
        const float scale = 1.0f / iscale;
        float error = 0.0f;
        for (int i = 0; i < n; i++) {
            float diff = x[i] - scale * (float)nearest_clamped(iscale * x[i], 0, nmax);
            error += weights[i] * diff * diff;
        }
        if (error < best_error) {
            best_error = error;
            best_iscale = iscale;
        }
    }

    float sum_xl = 0.0f, sum_l2 = 0.0f;
    for (int i = 0; i < n; i++) {
        levels[i] = (uint8_t)nearest_clamped(best_iscale * x[i], 0, nmax);
        sum_xl += weights[i] * x[i] * (float)levels[i];
        sum_l2 += weights[i] * (float)(levels[i] * levels[i]);
    }
    for (int round = 0; round < 5; round++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = weights[i], l = (float)levels[i];
            /* The sums without element i, and the level it would like under
             * their scale sum_xl / sum_l2. */
            float others_xl = sum_xl - w * x[i] * l;
            float others_l2 = sum_l2 - w * l * l;
            if (!(others_xl > 0.0f && others_l2 > 0.0f))
                continue;
            int wanted = nearest_clamped(x[i] * others_l2 / others_xl, 0, nmax);
            if (wanted == levels[i])
                continue;
            float new_xl = others_xl + w * x[i] * (float)wanted;
            float new_l2 = others_l2 + w * (float)(wanted * wanted);
            /* Keep the move if it raises sum_xl^2 / sum_l2, i.e. lowers the error. */
            if (new_xl * new_xl * sum_l2 > sum_xl * sum_xl * new_l2) {
                levels[i] = (uint8_t)wanted;
                sum_xl = new_xl;
                sum_l2 = new_l2;
                changed++;
            }
        }
        if (!changed)
            break;
    }
    /* Without any weight there is nothing to fit: keep the plain scale. */
    return sum_l2 > 0.0f ? sum_xl / sum_l2 : 1.0f / best_iscale;
}

/* ------------------------------------------------------------------ bit packing */

/* 32 levels of up to 4 bits: element j low nibble, element j + 16 high. */
static void pack_nibbles_32(const uint8_t levels[PLM_QK], uint8_t qs[PLM_QK / 2])
{
    for (int j = 0; j < PLM_QK / 2; j++)
        qs[j] = (uint8_t)((levels[j] & 0x0F) | (levels[j + PLM_QK / 2] & 0x0F) << 4);
}

/* 32 five-bit levels: low nibbles as above, fifth bits into the qh word. */
static void pack_q5(const uint8_t levels[PLM_QK], uint8_t qs[PLM_QK / 2], uint8_t qh[4])
{
    pack_nibbles_32(levels, qs);
    memset(qh, 0, 4);
    for (int j = 0; j < PLM_QK; j++)
        qh[j / 8] |= (uint8_t)(((levels[j] >> 4) & 1) << (j % 8));
}

/* The low 2 bits of 256 levels in the Q2_K/Q3_K layout. */
static void pack_k_2bit(const uint8_t levels[PLM_QK_K], uint8_t qs[PLM_QK_K / 4])
{
    memset(qs, 0, PLM_QK_K / 4);
    for (int i = 0; i < PLM_QK_K; i++) {
        int half = i / 128, group = (i % 128) / 32, l = i % 32;
        qs[32 * half + l] |= (uint8_t)((levels[i] & 3) << (2 * group));
    }
}

/* The low 4 bits of 256 levels in the Q4_K/Q5_K layout. */
static void pack_k_4bit(const uint8_t levels[PLM_QK_K], uint8_t qs[PLM_QK_K / 2])
{
    for (int chunk = 0; chunk < PLM_QK_K / 64; chunk++)
        for (int l = 0; l < 32; l++)
            qs[32 * chunk + l] = (uint8_t)((levels[64 * chunk + l] & 0x0F) |
                                           (levels[64 * chunk + 32 + l] & 0x0F) << 4);
}

/* 8 six-bit (scale, min) pairs into 12 bytes; the inverse of plm_k_scale_min. */
static void pack_k_scale_min(const uint8_t scales[8], const uint8_t mins[8], uint8_t packed[12])
{
    for (int s = 0; s < 4; s++) {
        packed[s] = (uint8_t)((scales[s] & 63) | (scales[s + 4] >> 4) << 6);
        packed[s + 4] = (uint8_t)((mins[s] & 63) | (mins[s + 4] >> 4) << 6);
        packed[s + 8] = (uint8_t)((scales[s + 4] & 0x0F) | (mins[s + 4] & 0x0F) << 4);
    }
}

/* 16 six-bit Q3_K scales into 12 bytes; the inverse of plm_q3_K_scale. */
static void pack_q3_K_scales(const uint8_t scales[16], uint8_t packed[12])
{
    memset(packed, 0, 12);
    for (int s = 0; s < 16; s++) {
        if (s < 8)
            packed[s] |= scales[s] & 0x0F;
        else
            packed[s - 8] |= (uint8_t)((scales[s] & 0x0F) << 4);
        packed[8 + s % 4] |= (uint8_t)((scales[s] >> 4) << (2 * (s / 4)));
    }
}

/* ------------------------------------------------------------------ legacy formats */

/* The signed value of largest magnitude (the first one on ties). */
static float signed_absmax(const float *x, int n)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

/* ggml's symmetric reference: the largest-magnitude element maps to the
 * extreme level -half_range, the others round to nearest (ties up). */
static void quantize_symmetric_plain(const float *x, int half_range, uint16_t *d_out,
                                     uint8_t levels[PLM_QK])
{
    const float d = signed_absmax(x, PLM_QK) / (float)-half_range;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    *d_out = plm_f32_to_f16(d);
    for (int j = 0; j < PLM_QK; j++)
        levels[j] = (uint8_t)clamp_to_int(x[j] * id + ((float)half_range + 0.5f), 0,
                                          2 * half_range - 1);
}

/* ggml's offset reference: [min, max] spread evenly over the levels. */
static void quantize_offset_plain(const float *x, int nmax, uint16_t *d_out, uint16_t *m_out,
                                  uint8_t levels[PLM_QK])
{
    float min = x[0], max = x[0];
    for (int j = 1; j < PLM_QK; j++) {
        min = fminf(min, x[j]);
        max = fmaxf(max, x[j]);
    }
    const float d = (max - min) / (float)nmax;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    *d_out = plm_f32_to_f16(d);
    *m_out = plm_f32_to_f16(min);
    for (int j = 0; j < PLM_QK; j++)
        levels[j] = (uint8_t)clamp_to_int((x[j] - min) * id + 0.5f, 0, nmax);
}

/* Weights for the legacy formats given an imatrix: importance scaled by the
 * element's magnitude relative to the row's spread (sigma2). */
static void legacy_weights(const float *x, const float *importance, float sigma2,
                           float weights[PLM_QK])
{
    for (int j = 0; j < PLM_QK; j++)
        weights[j] = importance[j] * sqrtf(sigma2 + x[j] * x[j]);
}

static float mean_square(const float *x, int64_t n)
{
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++)
        sum += x[i] * x[i];
    return sum / (float)n;
}

static void quantize_symmetric_weighted(const float *x, const float *importance, float sigma2,
                                        int half_range, uint16_t *d_out, uint8_t levels[PLM_QK])
{
    float weights[PLM_QK];
    int8_t signed_levels[PLM_QK];
    legacy_weights(x, importance, sigma2, weights);
    *d_out = plm_f32_to_f16(fit_symmetric_scale(PLM_QK, half_range, x, weights, signed_levels));
    for (int j = 0; j < PLM_QK; j++)
        levels[j] = (uint8_t)signed_levels[j];
}

static void quantize_offset_weighted(const float *x, const float *importance, float sigma2,
                                     int nmax, uint16_t *d_out, uint16_t *m_out,
                                     uint8_t levels[PLM_QK])
{
    float weights[PLM_QK], min;
    legacy_weights(x, importance, sigma2, weights);
    *d_out = plm_f32_to_f16(fit_scale_and_min(PLM_QK, nmax, x, weights, levels, &min));
    *m_out = plm_f32_to_f16(-min);
}

static void quantize_q4_0(const float *x, struct plm_block_q4_0 *y, int64_t n_blocks,
                          const float *importance)
{
    const float sigma2 = importance ? mean_square(x, n_blocks * PLM_QK) : 0.0f;
    for (int64_t b = 0; b < n_blocks; b++) {
        const float *xb = x + b * PLM_QK;
        uint8_t levels[PLM_QK];
        if (importance)
            quantize_symmetric_weighted(xb, importance + b * PLM_QK, sigma2, 8, &y[b].d, levels);
        else
            quantize_symmetric_plain(xb, 8, &y[b].d, levels);
        pack_nibbles_32(levels, y[b].qs);
    }
}

static void quantize_q5_0(const float *x, struct plm_block_q5_0 *y, int64_t n_blocks,
                          const float *importance)
{
    const float sigma2 = importance ? mean_square(x, n_blocks * PLM_QK) : 0.0f;
    for (int64_t b = 0; b < n_blocks; b++) {
        const float *xb = x + b * PLM_QK;
        uint8_t levels[PLM_QK];
        if (importance)
            quantize_symmetric_weighted(xb, importance + b * PLM_QK, sigma2, 16, &y[b].d, levels);
        else
            quantize_symmetric_plain(xb, 16, &y[b].d, levels);
        pack_q5(levels, y[b].qs, y[b].qh);
    }
}

static void quantize_q4_1(const float *x, struct plm_block_q4_1 *y, int64_t n_blocks,
                          const float *importance)
{
    const float sigma2 = importance ? mean_square(x, n_blocks * PLM_QK) : 0.0f;
    for (int64_t b = 0; b < n_blocks; b++) {
        const float *xb = x + b * PLM_QK;
        uint8_t levels[PLM_QK];
        if (importance)
            quantize_offset_weighted(xb, importance + b * PLM_QK, sigma2, 15, &y[b].d, &y[b].m,
                                     levels);
        else
            quantize_offset_plain(xb, 15, &y[b].d, &y[b].m, levels);
        pack_nibbles_32(levels, y[b].qs);
    }
}

static void quantize_q5_1(const float *x, struct plm_block_q5_1 *y, int64_t n_blocks,
                          const float *importance)
{
    const float sigma2 = importance ? mean_square(x, n_blocks * PLM_QK) : 0.0f;
    for (int64_t b = 0; b < n_blocks; b++) {
        const float *xb = x + b * PLM_QK;
        uint8_t levels[PLM_QK];
        if (importance)
            quantize_offset_weighted(xb, importance + b * PLM_QK, sigma2, 31, &y[b].d, &y[b].m,
                                     levels);
        else
            quantize_offset_plain(xb, 31, &y[b].d, &y[b].m, levels);
        pack_q5(levels, y[b].qs, y[b].qh);
    }
}

/* Q8_0 has 255 levels: the naive max/127 scale is already near optimal. */
static void quantize_q8_0(const float *x, struct plm_block_q8_0 *y, int64_t n_blocks)
{
    for (int64_t b = 0; b < n_blocks; b++) {
        const float *xb = x + b * PLM_QK;
        float amax = 0.0f;
        for (int j = 0; j < PLM_QK; j++)
            amax = fmaxf(amax, fabsf(xb[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = plm_f32_to_f16(d);
        for (int j = 0; j < PLM_QK; j++) /* ties away from zero, as ggml's roundf */
            y[b].qs[j] = (int8_t)clamp_to_int(roundf(xb[j] * id), -127, 127);
    }
}

/* ------------------------------------------------------------------ K-quants */

static float sum_of(const float *v, int n)
{
    float sum = 0.0f;
    for (int i = 0; i < n; i++)
        sum += v[i];
    return sum;
}

/* Q2_K weights each element by its importance times its magnitude relative
 * to the super-block's spread. */
static void quantize_q2_K_block(const float *x, const float *importance, struct plm_block_q2_K *y)
{
    const float sigma2 = mean_square(x, PLM_QK_K);
    uint8_t levels[PLM_QK_K], scale_levels[16], min_levels[16];
    float scales[16], mins[16], sub_weight[16];

    for (int s = 0; s < 16; s++) {
        const float *xs = x + 16 * s;
        float weights[16];
        for (int l = 0; l < 16; l++) {
            float importance_l = importance ? importance[16 * s + l] : 1.0f;
            weights[l] = importance_l * sqrtf(sigma2 + xs[l] * xs[l]);
        }
        sub_weight[s] = sum_of(weights, 16);
        scales[s] = fit_scale_and_min(16, 3, xs, weights, levels + 16 * s, &mins[s]);
    }
    y->d = plm_f32_to_f16(fit_positive_scale(16, 15, scales, sub_weight, scale_levels));
    y->dmin = plm_f32_to_f16(fit_positive_scale(16, 15, mins, sub_weight, min_levels));

    const float d = plm_f16_to_f32(y->d), dmin = plm_f16_to_f32(y->dmin);
    for (int s = 0; s < 16; s++) {
        y->scales[s] = (uint8_t)(scale_levels[s] | min_levels[s] << 4);
        const float scale = d * (float)scale_levels[s];
        const float min = dmin * (float)min_levels[s];
        for (int i = 16 * s; i < 16 * s + 16; i++)
            levels[i] = scale != 0.0f ? (uint8_t)nearest_clamped((x[i] + min) / scale, 0, 3) : 0;
    }
    pack_k_2bit(levels, y->qs);
}

static void quantize_q3_K_block(const float *x, const float *importance, struct plm_block_q3_K *y)
{
    const float sigma2 = 2.0f * mean_square(x, PLM_QK_K);
    int8_t sub_levels[16];
    uint8_t levels[PLM_QK_K], scale_levels[16];
    float scales[16], sub_weight[16];

    for (int s = 0; s < 16; s++) {
        const float *xs = x + 16 * s;
        float weights[16];
        for (int l = 0; l < 16; l++)
            weights[l] = importance ? importance[16 * s + l] * sqrtf(sigma2 + xs[l] * xs[l])
                                    : xs[l] * xs[l];
        sub_weight[s] = sum_of(weights, 16);
        scales[s] = fit_symmetric_scale(16, 4, xs, weights, sub_levels);
    }
    /* The signed sub-block scales are themselves 6-bit symmetric quants. */
    int8_t signed_scale_levels[16];
    y->d = plm_f32_to_f16(fit_symmetric_scale(16, 32, scales, sub_weight, signed_scale_levels));
    for (int s = 0; s < 16; s++)
        scale_levels[s] = (uint8_t)signed_scale_levels[s];
    pack_q3_K_scales(scale_levels, y->scales);

    const float d = plm_f16_to_f32(y->d);
    for (int s = 0; s < 16; s++) {
        const float scale = d * (float)(plm_q3_K_scale(y->scales, s) - 32);
        for (int i = 16 * s; i < 16 * s + 16; i++)
            levels[i] = (uint8_t)(scale != 0.0f ? nearest_clamped(x[i] / scale, -4, 3) + 4 : 4);
    }

    /* Third bit of element i goes to bit i/32 of hmask[i % 32]. */
    memset(y->hmask, 0, sizeof y->hmask);
    for (int i = 0; i < PLM_QK_K; i++)
        y->hmask[i % 32] |= (uint8_t)((levels[i] >> 2) << (i / 32));
    pack_k_2bit(levels, y->qs);
}

/* The shared part of Q4_K and Q5_K: 8 sub-blocks of 32 with a scale and a
 * min each; fills d, dmin, the packed scales and the final levels. */
static void quantize_k_scale_min(const float *x, const float *importance, int nmax,
                                 uint16_t *d_out, uint16_t *dmin_out, uint8_t packed[12],
                                 uint8_t levels[PLM_QK_K])
{
    const float sigma2 = 2.0f * mean_square(x, PLM_QK_K);
    const float spread = sqrtf(sigma2);
    uint8_t scale_levels[8], min_levels[8];
    float scales[8], mins[8], sub_weight[8];

    for (int s = 0; s < 8; s++) {
        const float *xs = x + 32 * s;
        float weights[32];
        for (int l = 0; l < 32; l++)
            weights[l] = importance ? importance[32 * s + l] * sqrtf(sigma2 + xs[l] * xs[l])
                                    : spread + fabsf(xs[l]);
        sub_weight[s] = sum_of(weights, 32);
        scales[s] = fit_scale_and_min(32, nmax, xs, weights, levels + 32 * s, &mins[s]);
    }
    *d_out = plm_f32_to_f16(fit_positive_scale(8, 63, scales, sub_weight, scale_levels));
    *dmin_out = plm_f32_to_f16(fit_positive_scale(8, 63, mins, sub_weight, min_levels));
    pack_k_scale_min(scale_levels, min_levels, packed);

    const float d = plm_f16_to_f32(*d_out), dmin = plm_f16_to_f32(*dmin_out);
    for (int s = 0; s < 8; s++) {
        const float scale = d * (float)scale_levels[s];
        const float min = dmin * (float)min_levels[s];
        for (int i = 32 * s; i < 32 * s + 32; i++)
            levels[i] = scale != 0.0f ? (uint8_t)nearest_clamped((x[i] + min) / scale, 0, nmax) : 0;
    }
}

static void quantize_q4_K_block(const float *x, const float *importance, struct plm_block_q4_K *y)
{
    uint8_t levels[PLM_QK_K];
    quantize_k_scale_min(x, importance, 15, &y->d, &y->dmin, y->scales, levels);
    pack_k_4bit(levels, y->qs);
}

static void quantize_q5_K_block(const float *x, const float *importance, struct plm_block_q5_K *y)
{
    uint8_t levels[PLM_QK_K];
    quantize_k_scale_min(x, importance, 31, &y->d, &y->dmin, y->scales, levels);
    pack_k_4bit(levels, y->qs);
    /* Fifth bit of an element of sub-block s goes to bit s of qh[i % 32]. */
    memset(y->qh, 0, sizeof y->qh);
    for (int i = 0; i < PLM_QK_K; i++)
        y->qh[i % 32] |= (uint8_t)((levels[i] >> 4) << (i / 32));
}

static void quantize_q6_K_block(const float *x, const float *importance, struct plm_block_q6_K *y)
{
    uint8_t levels[PLM_QK_K];
    int8_t sub_levels[16];
    float scales[16];
    float max_scale = 0.0f, max_abs_scale = 0.0f;

    for (int s = 0; s < 16; s++) {
        const float *xs = x + 16 * s;
        float weights[16];
        for (int l = 0; l < 16; l++)
            weights[l] = importance ? importance[16 * s + l] : xs[l] * xs[l];
        scales[s] = fit_symmetric_scale(16, 32, xs, weights, sub_levels);
        if (fabsf(scales[s]) > max_abs_scale) {
            max_abs_scale = fabsf(scales[s]);
            max_scale = scales[s];
        }
    }
    if (max_abs_scale < TINY_GROUP_MAX) {
        memset(y, 0, sizeof *y);
        return;
    }

    /* 8-bit sub-block scales: the largest maps to -128, like the quants. */
    const float iscale = -128.0f / max_scale;
    y->d = plm_f32_to_f16(1.0f / iscale);
    for (int s = 0; s < 16; s++)
        y->scales[s] = (int8_t)nearest_clamped(iscale * scales[s], -128, 127);

    const float d = plm_f16_to_f32(y->d);
    for (int s = 0; s < 16; s++) {
        const float scale = d * (float)y->scales[s];
        for (int i = 16 * s; i < 16 * s + 16; i++)
            levels[i] = (uint8_t)(scale != 0.0f ? nearest_clamped(x[i] / scale, -32, 31) + 32 : 32);
    }

    /* Within each half, element l and 64 + l share ql[l], 32 + l and 96 + l
     * share ql[32 + l]; all four keep their top 2 bits in qh[l]. */
    for (int half = 0; half < 2; half++) {
        const uint8_t *q = levels + 128 * half;
        uint8_t *ql = y->ql + 64 * half, *qh = y->qh + 32 * half;
        for (int l = 0; l < 32; l++) {
            ql[l] = (uint8_t)((q[l] & 0x0F) | (q[l + 64] & 0x0F) << 4);
            ql[l + 32] = (uint8_t)((q[l + 32] & 0x0F) | (q[l + 96] & 0x0F) << 4);
            qh[l] = (uint8_t)(q[l] >> 4 | (q[l + 32] >> 4) << 2 | (q[l + 64] >> 4) << 4 |
                              (q[l + 96] >> 4) << 6);
        }
    }
}

/* Row loops of the K-quants: one super-block (and its importance) at a time. */
static const float *block_importance(const float *importance, int64_t b)
{
    return importance ? importance + b * PLM_QK_K : NULL;
}

static void quantize_q2_K(const float *x, struct plm_block_q2_K *y, int64_t n_blocks,
                          const float *importance)
{
    for (int64_t b = 0; b < n_blocks; b++)
        quantize_q2_K_block(x + b * PLM_QK_K, block_importance(importance, b), &y[b]);
}

static void quantize_q3_K(const float *x, struct plm_block_q3_K *y, int64_t n_blocks,
                          const float *importance)
{
    for (int64_t b = 0; b < n_blocks; b++)
        quantize_q3_K_block(x + b * PLM_QK_K, block_importance(importance, b), &y[b]);
}

static void quantize_q4_K(const float *x, struct plm_block_q4_K *y, int64_t n_blocks,
                          const float *importance)
{
    for (int64_t b = 0; b < n_blocks; b++)
        quantize_q4_K_block(x + b * PLM_QK_K, block_importance(importance, b), &y[b]);
}

static void quantize_q5_K(const float *x, struct plm_block_q5_K *y, int64_t n_blocks,
                          const float *importance)
{
    for (int64_t b = 0; b < n_blocks; b++)
        quantize_q5_K_block(x + b * PLM_QK_K, block_importance(importance, b), &y[b]);
}

static void quantize_q6_K(const float *x, struct plm_block_q6_K *y, int64_t n_blocks,
                          const float *importance)
{
    for (int64_t b = 0; b < n_blocks; b++)
        quantize_q6_K_block(x + b * PLM_QK_K, block_importance(importance, b), &y[b]);
}

/* ------------------------------------------------------------------ entry points */

void plm_quantize_row_weighted(int type, const float *src, void *dst, int64_t n,
                               const float *importance)
{
    const struct plm_type_traits *traits = plm_type_traits(type);
    assert(traits && n >= 0 && n % traits->block_size == 0);
    if (!traits || n <= 0)
        return;
    /* Only whole blocks are written, so a bad n cannot write past the row. */
    const int64_t n_blocks = n / traits->block_size;
    switch (type) {
    case PLM_TYPE_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        break;
    case PLM_TYPE_F16:
        for (int64_t i = 0; i < n; i++)
            ((uint16_t *)dst)[i] = plm_f32_to_f16(src[i]);
        break;
    case PLM_TYPE_BF16:
        for (int64_t i = 0; i < n; i++)
            ((uint16_t *)dst)[i] = plm_f32_to_bf16(src[i]);
        break;
    case PLM_TYPE_Q4_0: quantize_q4_0(src, dst, n_blocks, importance); break;
    case PLM_TYPE_Q4_1: quantize_q4_1(src, dst, n_blocks, importance); break;
    case PLM_TYPE_Q5_0: quantize_q5_0(src, dst, n_blocks, importance); break;
    case PLM_TYPE_Q5_1: quantize_q5_1(src, dst, n_blocks, importance); break;
    case PLM_TYPE_Q8_0: quantize_q8_0(src, dst, n_blocks); break;
    case PLM_TYPE_Q2_K: quantize_q2_K(src, dst, n_blocks, importance); break;
    case PLM_TYPE_Q3_K: quantize_q3_K(src, dst, n_blocks, importance); break;
    case PLM_TYPE_Q4_K: quantize_q4_K(src, dst, n_blocks, importance); break;
    case PLM_TYPE_Q5_K: quantize_q5_K(src, dst, n_blocks, importance); break;
    case PLM_TYPE_Q6_K: quantize_q6_K(src, dst, n_blocks, importance); break;
    }
}

void plm_quantize_row(int type, const float *src, void *dst, int64_t n)
{
    plm_quantize_row_weighted(type, src, dst, n, NULL);
}
