/*
 * Matrix kernel speed at the sizes of real models, single thread, for each
 * weight type on every SIMD instruction set this CPU has (and, where the
 * instruction set has them, its kernels on the matrix repacked as the model
 * loader packs it: kernels/pack.h), against the machine's limits measured in
 * the same run. A benchmark, not a test: it checks nothing.
 *
 *   decode: one token (a matrix-vector product), the weights coming from
 *     memory: the product runs over enough copies of the matrix to overflow
 *     the caches, as a model's layers do. Reported as GB/s of weights read
 *     and as a share of the memory read bandwidth (the floor of decoding).
 *   prompt: 64 tokens at once (a prompt chunk). Reported as Gop/s (a
 *     multiply-add is 2 operations) and as a share of the peak 8-bit integer
 *     multiply-add rate of the instruction set's dot step (AVX2: maddubs;
 *     AVX-512: VNNI's vpdpbusd, twice as wide and one instruction).
 * Times are CPU times and include quantizing the activations. Each speed is
 * the median of several rounds; a round measures every instruction set in
 * turn, so load from other processes spreads over all of them. The limits
 * are measured once per round and the best kept: interference only lowers
 * them.
 *
 * Build against the library (after a CMake build in build/):
 *     cc -O3 -std=c11 -D_GNU_SOURCE -Iinclude -Isrc bench/kernels_bench.c \
 *        build/libpocketlm.a -lcjson -lm -lpthread -o kernels_bench
 * Run: ./kernels_bench [-r ROUNDS] [TYPE...]   (e.g. ./kernels_bench q4_0 q4_k;
 *      all types and 5 rounds by default)
 */
#include "kernels/matmul_impl.h"
#include "kernels/pack.h"
#include "tensor/types.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define PROMPT_TOKENS 64
/* Decoding reads at least this many bytes of weights per measured product
 * round, far more than any cache. */
#define COLD_BYTES (256u << 20)
/* Seconds each measurement runs for. */
#define MEASURE_SECONDS 0.2
#define MAX_ROUNDS 15
/* Distinct rows quantized; the rest of the matrix repeats them (the speed
 * does not depend on the values, and quantizing millions of weights is
 * slow). */
#define DISTINCT_ROWS 64

/* Feed-forward matrices of Qwen2.5-0.5B and Llama-3.2-1B (up and down). */
static const struct {
    int64_t n_in, n_out;
} shapes[] = {{896, 4864}, {2048, 8192}, {8192, 2048}};
#define N_SHAPES (int)(sizeof shapes / sizeof shapes[0])

static const int default_types[] = {
    PLM_TYPE_F32,  PLM_TYPE_F16,  PLM_TYPE_BF16, PLM_TYPE_Q4_0, PLM_TYPE_Q4_1,
    PLM_TYPE_Q5_0, PLM_TYPE_Q5_1, PLM_TYPE_Q8_0, PLM_TYPE_Q2_K, PLM_TYPE_Q3_K,
    PLM_TYPE_Q4_K, PLM_TYPE_Q5_K, PLM_TYPE_Q6_K,
};

static const enum plm_isa simd_isas[] = {PLM_ISA_AVX512, PLM_ISA_AVX2, PLM_ISA_NEON};
#define N_SIMD_ISAS (int)(sizeof simd_isas / sizeof simd_isas[0])

/* CPU time of this thread: the kernels run on it alone, and on a shared
 * machine the time other processes take the core is then not counted. */
static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *checked_malloc(size_t size)
{
    void *p = malloc(size);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", size);
        exit(1);
    }
    return p;
}

/* Uniform in [-1, 1), from a fixed linear congruential sequence. */
static float next_value(uint64_t *state)
{
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)(*state >> 40) / (float)(1 << 23) - 1.0f;
}

/* n_copies copies of an n_in x n_out matrix, one after the other. */
static uint8_t *make_weights(int type, int64_t n_in, int64_t n_out, int n_copies)
{
    const size_t row_bytes = plm_row_bytes(type, n_in);
    const size_t matrix_bytes = row_bytes * (size_t)n_out;
    uint8_t *bytes = checked_malloc(matrix_bytes * (size_t)n_copies);
    float *row = checked_malloc((size_t)n_in * sizeof *row);
    uint64_t state = 1;
    for (int64_t r = 0; r < n_out; r++) {
        if (r < DISTINCT_ROWS) {
            for (int64_t i = 0; i < n_in; i++)
                row[i] = next_value(&state);
            plm_quantize_row(type, row, bytes + (size_t)r * row_bytes, n_in);
        } else {
            memcpy(bytes + (size_t)r * row_bytes, bytes + (size_t)(r % DISTINCT_ROWS) * row_bytes,
                   row_bytes);
        }
    }
    for (int c = 1; c < n_copies; c++)
        memcpy(bytes + (size_t)c * matrix_bytes, bytes, matrix_bytes);
    free(row);
    return bytes;
}

/* Seconds per product: products over the copies in turn for
 * MEASURE_SECONDS, after one warm-up pass. A packed matrix's copies follow
 * each other in w.packed as the stored ones do in w.data. */
static double seconds_per_product(enum plm_isa isa, struct plm_matrix w, int n_copies,
                                  const float *x, float *y, int n_tokens)
{
    const uint8_t *first = w.data, *first_packed = w.packed;
    const size_t matrix_bytes = plm_row_bytes(w.type, w.n_in) * (size_t)w.n_out;
    const size_t packed_bytes = plm_packed_size(&w);
    plm_matmul_with_isa(isa, &w, x, y, n_tokens);
    long products = 0;
    const double start = now_seconds();
    double elapsed;
    do {
        w.data = first + (size_t)(products % n_copies) * matrix_bytes;
        if (first_packed)
            w.packed = first_packed + (size_t)(products % n_copies) * packed_bytes;
        plm_matmul_with_isa(isa, &w, x, y, n_tokens);
        products++;
        elapsed = now_seconds() - start;
    } while (elapsed < MEASURE_SECONDS);
    return elapsed / (double)products;
}

/* n_copies copies of w packed, one after the other. */
static uint8_t *make_packed(const struct plm_matrix *w, int n_copies)
{
    const size_t packed_bytes = plm_packed_size(w);
    /* 64-byte aligned, as the model loader allocates them. */
    uint8_t *packed = aligned_alloc(64, (packed_bytes * (size_t)n_copies + 63) / 64 * 64);
    if (!packed) {
        fprintf(stderr, "out of memory (%zu bytes)\n", packed_bytes * (size_t)n_copies);
        exit(1);
    }
    plm_pack_rows(w, packed, 0, plm_packed_groups(w));
    for (int c = 1; c < n_copies; c++)
        memcpy(packed + (size_t)c * packed_bytes, packed, packed_bytes);
    return packed;
}

static int compare_doubles(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *values, int n)
{
    qsort(values, (size_t)n, sizeof *values, compare_doubles);
    return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

/* ------------------------------------------------- the machine's limits
 *
 * As src/eval/machine.c measures them for pocketlm bench, but on this
 * thread and in CPU time, like the kernels: on a shared machine, wall time
 * would count the time other processes hold the core. */

/* Bytes per second this thread reads from memory: the sum of a buffer far
 * larger than the caches. */
static double read_bandwidth(void)
{
    const size_t n_words = (512u << 20) / sizeof(uint64_t);
    uint64_t *words = checked_malloc(n_words * sizeof *words);
    for (size_t i = 0; i < n_words; i++) /* fault every page in first */
        words[i] = i;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    const double start = now_seconds();
    for (size_t i = 0; i + 4 <= n_words; i += 4) {
        a += words[i];
        b ^= words[i + 1];
        c += words[i + 2];
        d ^= words[i + 3];
    }
    const double elapsed = now_seconds() - start;
    volatile uint64_t sink = a + b + c + d;
    (void)sink;
    free(words);
    return (double)(n_words * sizeof *words) / elapsed;
}

#if defined(__x86_64__)
#define CHAIN_ROUNDS 2000000L
#define CHAINS 12 /* independent accumulators: enough to cover the latency */

/* Operations per second (a multiply-add is 2) of the integer dot step each
 * instruction set's kernels use: AVX2's maddubs + madd + add on 32 bytes,
 * AVX-512 VNNI's vpdpbusd on 64. */
__attribute__((target("avx2"))) static double peak_avx2_ops(void)
{
    __m256i acc[CHAINS];
    for (int i = 0; i < CHAINS; i++)
        acc[i] = _mm256_set1_epi32(i);
    const __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(-2), ones = _mm256_set1_epi16(1);
    const double start = now_seconds();
    for (long r = 0; r < CHAIN_ROUNDS; r++)
        for (int i = 0; i < CHAINS; i++)
            acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), ones));
    const double elapsed = now_seconds() - start;
    for (int i = 1; i < CHAINS; i++)
        acc[0] = _mm256_add_epi32(acc[0], acc[i]);
    volatile int sink = _mm256_extract_epi32(acc[0], 0);
    (void)sink;
    return CHAIN_ROUNDS * (double)CHAINS * 32 * 2 / elapsed;
}

__attribute__((target("avx512f,avx512vnni"))) static double peak_vnni_ops(void)
{
    __m512i acc[CHAINS];
    for (int i = 0; i < CHAINS; i++)
        acc[i] = _mm512_set1_epi32(i);
    const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
    const double start = now_seconds();
    for (long r = 0; r < CHAIN_ROUNDS; r++)
        for (int i = 0; i < CHAINS; i++)
            acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
    const double elapsed = now_seconds() - start;
    for (int i = 1; i < CHAINS; i++)
        acc[0] = _mm512_add_epi32(acc[0], acc[i]);
    volatile int sink = _mm512_reduce_add_epi32(acc[0]);
    (void)sink;
    return CHAIN_ROUNDS * (double)CHAINS * 64 * 2 / elapsed;
}
#endif

/* The peak integer multiply-add rate of an instruction set's kernels (the
 * best of those measured so far), 0 if not measured here. */
static double peak_ops[N_SIMD_ISAS];

static void measure_limits(double *bandwidth)
{
    *bandwidth = fmax(*bandwidth, read_bandwidth());
#if defined(__x86_64__)
    for (int k = 0; k < N_SIMD_ISAS; k++) {
        if (!plm_isa_available(simd_isas[k]))
            continue;
        if (simd_isas[k] == PLM_ISA_AVX2)
            peak_ops[k] = fmax(peak_ops[k], peak_avx2_ops());
        if (simd_isas[k] == PLM_ISA_AVX512)
            peak_ops[k] = fmax(peak_ops[k], peak_vnni_ops());
    }
#endif
}

/* One kernel to measure: an instruction set's, on the matrix as stored or
 * packed. */
struct variant {
    enum plm_isa isa;
    double peak_ops; /* the instruction set's peak int8 rate, 0 if unknown */
    const uint8_t *packed; /* the packed copies, or NULL */
};

/* Measures the variants in turn, rounds times, and prints a table row for
 * each, with its speed-up over the next row. */
static void print_variants(struct plm_matrix w, int n_copies, const struct variant *variants,
                           int n_variants, int rounds, const float *x, float *y, double bandwidth)
{
    const size_t matrix_bytes = plm_row_bytes(w.type, w.n_in) * (size_t)w.n_out;
    double decode[2 * N_SIMD_ISAS][MAX_ROUNDS], prompt[2 * N_SIMD_ISAS][MAX_ROUNDS];
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < n_variants; k++) {
            w.packed = variants[k].packed;
            decode[k][r] = seconds_per_product(variants[k].isa, w, n_copies, x, y, 1);
            prompt[k][r] = seconds_per_product(variants[k].isa, w, 1, x, y, PROMPT_TOKENS);
        }
    double decode_rate[2 * N_SIMD_ISAS], prompt_rate[2 * N_SIMD_ISAS];
    for (int k = 0; k < n_variants; k++) {
        decode_rate[k] = matrix_bytes / median(decode[k], rounds);
        prompt_rate[k] = 2.0 * (double)(w.n_in * w.n_out) * PROMPT_TOKENS / median(prompt[k], rounds);
    }
    for (int k = 0; k < n_variants; k++) {
        const struct variant *v = &variants[k];
        printf("| %s | %lldx%lld | %s%s%s | %.1f | %.0f%% | %.0f | ", plm_type_name(w.type),
               (long long)w.n_in, (long long)w.n_out, plm_isa_name(v->isa), v->packed ? " packed" : "",
               plm_isa_kernel(v->isa, w.type) ? "" : " (no kernel: scalar)", decode_rate[k] * 1e-9,
               100.0 * decode_rate[k] / bandwidth, prompt_rate[k] * 1e-9);
        if (v->peak_ops > 0.0 && plm_type_traits(w.type)->block_size > 1)
            printf("%.0f%%", 100.0 * prompt_rate[k] / v->peak_ops); /* integer kernels */
        printf(" | ");
        if (k + 1 < n_variants)
            printf("x%.2f, x%.2f", decode_rate[k] / decode_rate[k + 1], prompt_rate[k] / prompt_rate[k + 1]);
        printf(" |\n");
    }
}

int main(int argc, char **argv)
{
    int types[PLM_TYPE_COUNT];
    int n_types = 0, rounds = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-r") == 0 && i + 1 < argc) {
            rounds = atoi(argv[++i]);
            if (rounds < 1 || rounds > MAX_ROUNDS) {
                fprintf(stderr, "rounds must be 1..%d\n", MAX_ROUNDS);
                return 2;
            }
            continue;
        }
        const int type = plm_type_from_name(argv[i]);
        if (type < 0 || !plm_type_traits(type) || n_types == PLM_TYPE_COUNT) {
            fprintf(stderr, "unknown weight type %s\n", argv[i]);
            return 2;
        }
        types[n_types++] = type;
    }
    if (n_types == 0) {
        n_types = (int)(sizeof default_types / sizeof default_types[0]);
        memcpy(types, default_types, sizeof default_types);
    }

    double bandwidth = 0.0;
    for (int r = 0; r < rounds; r++)
        measure_limits(&bandwidth);
    printf("1 thread, CPU time, median of %d rounds. Read bandwidth %.1f GB/s", rounds,
           bandwidth * 1e-9);
    for (int k = 0; k < N_SIMD_ISAS; k++)
        if (peak_ops[k] > 0.0)
            printf("; %s peak int8 rate %.0f Gop/s", plm_isa_name(simd_isas[k]), peak_ops[k] * 1e-9);
    printf(".\ndecode: 1 token, weights from memory; prompt: %d tokens. Last column: speed-up "
           "(decode, prompt) over the next row.\n\n",
           PROMPT_TOKENS);
    printf("| type | n_in x n_out | isa | decode GB/s | of bandwidth | prompt Gop/s | of peak "
           "| speed-up |\n");
    printf("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |\n");

    float *x = checked_malloc(sizeof(float) * 8192 * PROMPT_TOKENS);
    float *y = checked_malloc(sizeof(float) * 8192 * PROMPT_TOKENS);
    uint64_t state = 2;
    for (int i = 0; i < 8192 * PROMPT_TOKENS; i++)
        x[i] = next_value(&state);

    for (int i = 0; i < n_types; i++) {
        const int type = types[i];
        for (int s = 0; s < N_SHAPES; s++) {
            const int64_t n_in = shapes[s].n_in, n_out = shapes[s].n_out;
            if (n_in % plm_type_traits(type)->block_size)
                continue; /* a real model stores such a matrix in another type */
            const size_t matrix_bytes = plm_row_bytes(type, n_in) * (size_t)n_out;
            const int n_copies = (int)(COLD_BYTES / matrix_bytes) + 1;
            uint8_t *bytes = make_weights(type, n_in, n_out, n_copies);
            const struct plm_matrix w = {.type = type, .data = bytes, .n_in = n_in, .n_out = n_out};

            /* Each instruction set on the matrix as stored, preceded by
             * the same on it packed where its kernels have that layout. */
            uint8_t *packed = NULL;
            struct variant variants[2 * N_SIMD_ISAS];
            int n_variants = 0;
            for (int k = 0; k < N_SIMD_ISAS; k++) {
                if (!plm_isa_available(simd_isas[k]))
                    continue;
                if (plm_packed_size_with_isa(simd_isas[k], &w)) {
                    packed = packed ? packed : make_packed(&w, n_copies);
                    variants[n_variants++] = (struct variant){simd_isas[k], peak_ops[k], packed};
                }
                variants[n_variants++] = (struct variant){simd_isas[k], peak_ops[k], NULL};
            }
            print_variants(w, n_copies, variants, n_variants, rounds, x, y, bandwidth);
            free(packed);
            free(bytes);
        }
    }
    free(x);
    free(y);
    return 0;
}
