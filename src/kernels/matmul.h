/*
 * Matrix kernels. A weight matrix W has n_out rows of n_in elements in one of
 * the supported types, stored row after row (GGUF order: ne[0] = n_in).
 *
 * The scalar implementations (matmul_scalar.c) are the reference every
 * optimized kernel is tested against.
 */
#ifndef PLM_KERNELS_MATMUL_H
#define PLM_KERNELS_MATMUL_H

#include <stdint.h>

struct plm_matrix {
    int type;          /* enum plm_type */
    const void *data;
    int64_t n_in;      /* row length (ne[0]) */
    int64_t n_out;     /* rows (ne[1]) */
};

/* y[t][r] = sum_i W[r][i] * x[t][i] for t < n_tokens, r < n_out.
 * x is n_tokens rows of n_in floats, y is n_tokens rows of n_out floats.
 * Each weight row is read once for all tokens. */
void plm_matmul(const struct plm_matrix *w, const float *x, float *y, int n_tokens);

/* Dot product of one weight row (n elements of type) with n floats. */
float plm_vec_dot_row(int type, const void *row, const float *x, int64_t n);

/* Row `row` of W as floats (embedding lookup). */
void plm_matrix_get_row(const struct plm_matrix *w, int64_t row, float *out);

#endif
