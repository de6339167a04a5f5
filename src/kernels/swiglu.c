/*
 * SwiGLU (see swiglu.h), with e^x from exp_lanes.h: silu(g) is g for
 * g > 87 (where 1 + e^-g rounds to 1 anyway) and 0 for g < -88 (where e^-g
 * is taken as infinity; silu is below 1e-36 in magnitude there).
 *
 * Written twice, 16 lanes (compiled for AVX-512, AVX2 and the baseline,
 * vector_clones.h) and one lane for the remainder, with the same operations
 * in the same order: every version gives the same bits.
 */
#include "kernels/swiglu.h"

#include "kernels/exp_lanes.h"
#include "kernels/vector_clones.h"

#include <string.h>

VECTOR_CLONES void plm_swiglu(float *gate, const float *up, int64_t n)
{
    int64_t i = 0;
    for (; i + EXP_LANES <= n; i += EXP_LANES) {
        lane_floats g, u;
        memcpy(&g, gate + i, sizeof g);
        memcpy(&u, up + i, sizeof u);
        lane_floats e = -g;
        exp_lanes(&e);
        lane_floats result = g / (1.0f + e) * u;
        memcpy(gate + i, &result, sizeof result);
    }
    for (; i < n; i++)
        gate[i] = gate[i] / (1.0f + exp_lane(-gate[i])) * up[i];
}
