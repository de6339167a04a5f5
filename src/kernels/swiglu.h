/*
 * The SwiGLU of the feed-forward block: gate[i] = silu(gate[i]) * up[i],
 * silu(g) = g / (1 + e^-g), with its own vectorized e^x (within a few units
 * in the last place of expf; glibc's expf is one value at a time and took a
 * tenth of a prompt's time).
 */
#ifndef PLM_KERNELS_SWIGLU_H
#define PLM_KERNELS_SWIGLU_H

#include <stdint.h>

void plm_swiglu(float *gate, const float *up, int64_t n);

#endif
