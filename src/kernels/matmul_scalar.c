/*
 * Scalar matrix kernels: the plain reference every optimized kernel is
 * checked against.
 *
 * A weight row is expanded to floats a chunk at a time on the stack (so no
 * allocation, whatever the row length) and each chunk is dotted with the
 * matching slice of every token: the row is decoded once for all tokens.
 * plm_vec_dot_row_scalar is the same computation for one token, so both give
 * bit-identical results.
 */
#include "kernels/matmul.h"
#include "kernels/matmul_impl.h"
#include "kernels/pack.h"
#include "kernels/vector_clones.h"

#include "tensor/types.h"

#include <assert.h>
#include <stddef.h>

/* Elements decoded at a time: a multiple of every block size (256 covers the
 * 32-element blocks too), 4 KiB of stack. */
#define CHUNK 1024

/* a . b over n floats. Eight interleaved partial sums: independent chains
 * the compiler keeps in vector lanes without reordering any single sum,
 * where one running sum would wait for the previous addition at every
 * element. */
VECTOR_CLONES static float dot_f32(const float *a, const float *b, int n)
{
    float partial[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            partial[k] += a[i + k] * b[i + k];
    float sum = 0.0f;
    for (int k = 0; k < 8; k++)
        sum += partial[k];
    for (; i < n; i++)
        sum += a[i] * b[i];
    return sum;
}

/* out[t * out_stride] = row . x[t] for each token t, x[t] being n floats at
 * x + t * n. */
static void dot_row_with_tokens(int type, const void *row, int64_t n, const float *x,
                                int n_tokens, float *out, int64_t out_stride)
{
    float chunk[CHUNK];
    for (int t = 0; t < n_tokens; t++)
        out[t * out_stride] = 0.0f;
    for (int64_t start = 0; start < n; start += CHUNK) {
        const int len = (int)(n - start < CHUNK ? n - start : CHUNK);
        /* start is a multiple of CHUNK, hence of the block size. */
        plm_dequantize_row(type, (const uint8_t *)row + plm_row_bytes(type, start), chunk, len);
        for (int t = 0; t < n_tokens; t++)
            out[t * out_stride] += dot_f32(chunk, x + t * n + start, len);
    }
}

float plm_vec_dot_row_scalar(int type, const void *row, const float *x, int64_t n)
{
    float result;
    dot_row_with_tokens(type, row, n, x, 1, &result, 1);
    return result;
}

void plm_matmul_scalar_rows(const struct plm_matrix *w, const float *x, float *y, int n_tokens,
                            int64_t row_begin, int64_t row_end)
{
    const size_t row_bytes = plm_row_bytes(w->type, w->n_in);
    assert(row_bytes > 0 || w->n_in == 0);
    for (int64_t r = row_begin; r < row_end; r++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)r * row_bytes;
        dot_row_with_tokens(w->type, row, w->n_in, x, n_tokens, y + r, w->n_out);
    }
}

void plm_matmul_scalar(const struct plm_matrix *w, const float *x, float *y, int n_tokens)
{
    plm_matmul_scalar_rows(w, x, y, n_tokens, 0, w->n_out);
}

void plm_matrix_get_row(const struct plm_matrix *w, int64_t row, float *out)
{
    assert(row >= 0 && row < w->n_out);
    if (w->packed) {
        plm_packed_get_row(w, row, out);
        return;
    }
    const size_t row_bytes = plm_row_bytes(w->type, w->n_in);
    plm_dequantize_row(w->type, (const uint8_t *)w->data + (size_t)row * row_bytes, out, w->n_in);
}
