/*
 * Float vector steps written as plain C loops (the scalar matmul's dot
 * product, attention, SwiGLU, the quantization of activations) are compiled
 * for AVX2 and AVX-512 as well as the baseline, and the dynamic loader picks
 * the CPU's best: the baseline x86-64 build runs them 4 floats wide. Each version does the same operations in each lane, in the
 * same order and without fused multiply-adds (C11 mode contracts none), so
 * every version gives the same bits: the loop itself is the scalar twin.
 * GCC only: clang 14 leaves the clones unresolved at link time.
 */
#ifndef PLM_KERNELS_VECTOR_CLONES_H
#define PLM_KERNELS_VECTOR_CLONES_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VECTOR_CLONES
#endif

#endif
