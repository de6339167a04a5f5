/*
 * Matrix kernels. A weight matrix W has n_out rows of n_in elements in one of
 * the supported types, stored row after row (GGUF order: ne[0] = n_in).
 *
 * The scalar implementations (matmul_scalar.c) are the reference every
 * optimized kernel is tested against.
 */
#ifndef PLM_KERNELS_MATMUL_H
#define PLM_KERNELS_MATMUL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct plm_matrix {
    int type;          /* enum plm_type */
    const void *data;
    int64_t n_in;      /* row length (ne[0]) */
    int64_t n_out;     /* rows (ne[1]) */
    const void *packed; /* the same rows repacked for this CPU's kernels
                           (kernels/pack.h), or NULL: data is still read for
                           single rows (embedding lookups) */
};

/* y[t][r] = sum_i W[r][i] * x[t][i] for t < n_tokens, r < n_out.
 * x is n_tokens rows of n_in floats, y is n_tokens rows of n_out floats.
 * Each weight row is read once for all tokens. */
void plm_matmul(const struct plm_matrix *w, const float *x, float *y, int n_tokens);

/*
 * The same product in two steps, for callers that split the rows over
 * threads: the activations are prepared (quantized to 8-bit blocks when the
 * kernel for the weight type multiplies integers) once per product, then
 * each thread runs its own rows against them. Results are bit-identical to
 * plm_matmul's.
 */
struct plm_activations {
    int isa;            /* enum plm_isa (matmul_impl.h) they were prepared for */
    int type;           /* the weight type they were prepared for */
    int64_t n_in;
    int n_tokens;
    bool packed;        /* for the kernels of packed matrices */
    const float *x;     /* the floats as given */
    const void *data;   /* in the kernel's format (x itself for float kernels);
                           NULL when the scalar kernel runs on x */
    size_t token_bytes; /* of one token in data */
    int format;         /* enum plm_activation_format of data */
    void *converted;    /* the scratch data is converted into; NULL when x is read as it is */
};

/* Bytes of scratch the activations of n_tokens tokens of n_in values need as
 * the kernels for weights of type read them; 0 when they need none. */
size_t plm_activations_bytes(int type, int64_t n_in, int n_tokens);
/* The most plm_activations_bytes returns for any type. */
size_t plm_activations_max_bytes(int64_t n_in, int n_tokens);

/* Prepares x (n_tokens rows of w->n_in floats) for w, in scratch
 * (scratch_bytes long), in two parts so that threads can share the
 * conversion of a prompt's tokens: plm_plan_activations sets *out up and
 * converts no token; plm_convert_activations then converts tokens
 * [token_begin, token_end), and every token must be converted once before
 * any product reads them (parts may be converted by different threads at
 * once). x and scratch must outlive *out. With too little scratch, the
 * products fall back to the (slow) scalar kernel. */
void plm_plan_activations(const struct plm_matrix *w, const float *x, int n_tokens, void *scratch,
                          size_t scratch_bytes, struct plm_activations *out);
void plm_convert_activations(const struct plm_activations *xq, int token_begin, int token_end);

/* y[t][r] = sum_i W[r][i] * x[t][i] for t < n_tokens and row_begin <= r <
 * row_end; y has n_tokens rows of w->n_out floats, and no other element of it
 * is written. w must have the type, n_in and packing (packed or not) of the
 * matrix xq was prepared for. */
void plm_matmul_prepared(const struct plm_matrix *w, const struct plm_activations *xq, float *y,
                         int64_t row_begin, int64_t row_end);

/* Bytes this CPU's kernels want w repacked into (plm_pack_rows), 0 when
 * they read it as stored. */
size_t plm_matmul_packed_size(const struct plm_matrix *w);

/* Dot product of one weight row (n elements of type) with n floats. */
float plm_vec_dot_row(int type, const void *row, const float *x, int64_t n);

/* Row `row` of W as floats (embedding lookup). */
void plm_matrix_get_row(const struct plm_matrix *w, int64_t row, float *out);

#endif
