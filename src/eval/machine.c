/*
 * Measuring this machine's limits, so that benchmark speeds can be reported
 * as a fraction of what the hardware allows, measured in the same run:
 *   - read bandwidth: threads summing a buffer far larger than the caches;
 *   - peak multiply-add rates: threads running many independent multiply-add
 *     chains in registers, with the instructions of the kernels plm_matmul
 *     chose (kernels/matmul.c): on x86-64, AVX-512 (vpdpbusd for 8-bit
 *     integers, 512-bit FMA for floats) when it runs the AVX-512 kernels,
 *     else AVX2 (maddubs + madd + add, 256-bit FMA); on ARM64, NEON (sdot
 *     with the dot-product extension, else widening multiply-adds); scalar
 *     chains otherwise. A kernel's speed is then compared with the peak of
 *     the very instructions it could at best run back to back.
 * Each figure is the best of a few runs: interference only slows things down.
 */
#include "engine/threadpool.h"
#include "kernels/matmul_impl.h"

#include "pocketlm.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#endif

#define BANDWIDTH_BUFFER_BYTES (512u << 20)
#define RUNS 3

/* ---------------------------------------------------------------- bandwidth */

struct read_job {
    const uint64_t *words;
    size_t n_words;
    uint64_t sums[64]; /* one per thread, so the reads cannot be optimised away */
};

static void read_chunk(void *arg, int chunk, int n_chunks, int thread)
{
    struct read_job *job = arg;
    size_t per = job->n_words / (size_t)n_chunks;
    const uint64_t *w = job->words + per * (size_t)chunk;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = 0; i + 4 <= per; i += 4) {
        a += w[i];
        b ^= w[i + 1];
        c += w[i + 2];
        d ^= w[i + 3];
    }
    job->sums[thread % 64] += a + b + c + d;
}

double plm_measure_read_bandwidth(int n_threads)
{
    struct plm_threadpool *pool;
    if (threadpool_new(n_threads, &pool))
        return 0.0;
    struct read_job job = {.n_words = BANDWIDTH_BUFFER_BYTES / sizeof(uint64_t)};
    uint64_t *words = malloc(BANDWIDTH_BUFFER_BYTES);
    double best = 0.0;
    if (words) {
        for (size_t i = 0; i < job.n_words; i++) /* fault every page in first */
            words[i] = i;
        job.words = words;
        for (int run = 0; run < RUNS; run++) {
            double start = plm_seconds_now();
            threadpool_run(pool, read_chunk, &job, n_threads);
            double rate = BANDWIDTH_BUFFER_BYTES / (plm_seconds_now() - start);
            if (rate > best)
                best = rate;
        }
    }
    free(words);
    threadpool_free(pool);
    return best;
}

/* ------------------------------------------------------ multiply-add rates */

#define CHAIN_ROUNDS 4000000L

struct rate_job {
    float (*chains)(long rounds); /* one of the *_chains functions below */
    long rounds;
    float sink[64]; /* one per thread, so the chains cannot be optimised away */
};

#if defined(__x86_64__)
/* Ten independent FMA chains: enough to cover FMA latency on two ports. */
__attribute__((target("avx2,fma"))) static float float_chains_avx2(long rounds)
{
    __m256 acc[10];
    for (int i = 0; i < 10; i++)
        acc[i] = _mm256_set1_ps((float)i);
    const __m256 scale = _mm256_set1_ps(0.999999f), add = _mm256_set1_ps(1e-6f);
    for (long r = 0; r < rounds; r++)
        for (int i = 0; i < 10; i++)
            acc[i] = _mm256_fmadd_ps(acc[i], scale, add);
    __m256 sum = acc[0];
    for (int i = 1; i < 10; i++)
        sum = _mm256_add_ps(sum, acc[i]);
    return _mm256_cvtss_f32(sum);
}
#define FLOAT_AVX2_OPS_PER_ROUND (10.0 * 8 * 2)

/* The AVX2 kernels' int8 dot step: u8 x s8 pairs summed to 16 bits, then to 32 bits. */
__attribute__((target("avx2"))) static float int8_chains_avx2(long rounds)
{
    __m256i acc[10];
    for (int i = 0; i < 10; i++)
        acc[i] = _mm256_set1_epi32(i);
    const __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(-2), ones = _mm256_set1_epi16(1);
    for (long r = 0; r < rounds; r++)
        for (int i = 0; i < 10; i++)
            acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), ones));
    __m256i sum = acc[0];
    for (int i = 1; i < 10; i++)
        sum = _mm256_add_epi32(sum, acc[i]);
    return (float)_mm256_extract_epi32(sum, 0);
}
#define INT8_AVX2_OPS_PER_ROUND (10.0 * 32 * 2)

__attribute__((target("avx512f"))) static float float_chains_avx512(long rounds)
{
    __m512 acc[10];
    for (int i = 0; i < 10; i++)
        acc[i] = _mm512_set1_ps((float)i);
    const __m512 scale = _mm512_set1_ps(0.999999f), add = _mm512_set1_ps(1e-6f);
    for (long r = 0; r < rounds; r++)
        for (int i = 0; i < 10; i++)
            acc[i] = _mm512_fmadd_ps(acc[i], scale, add);
    __m512 sum = acc[0];
    for (int i = 1; i < 10; i++)
        sum = _mm512_add_ps(sum, acc[i]);
    return _mm512_reduce_add_ps(sum);
}
#define FLOAT_AVX512_OPS_PER_ROUND (10.0 * 16 * 2)

/* The AVX-512 kernels' int8 dot step: VNNI's vpdpbusd, 64 u8 x s8 products
 * added in fours into 32-bit lanes, one instruction. */
__attribute__((target("avx512f,avx512vnni"))) static float int8_chains_avx512(long rounds)
{
    __m512i acc[10];
    for (int i = 0; i < 10; i++)
        acc[i] = _mm512_set1_epi32(i);
    const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
    for (long r = 0; r < rounds; r++)
        for (int i = 0; i < 10; i++)
            acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
    __m512i sum = acc[0];
    for (int i = 1; i < 10; i++)
        sum = _mm512_add_epi32(sum, acc[i]);
    /* One lane, as the AVX2 chains do: summing the lanes in int would overflow. */
    return (float)_mm_cvtsi128_si32(_mm512_castsi512_si128(sum));
}
#define INT8_AVX512_OPS_PER_ROUND (10.0 * 64 * 2)
#elif defined(__aarch64__)
static float float_chains_neon(long rounds)
{
    float32x4_t acc[10];
    for (int i = 0; i < 10; i++)
        acc[i] = vdupq_n_f32((float)i);
    const float32x4_t scale = vdupq_n_f32(0.999999f), add = vdupq_n_f32(1e-6f);
    for (long r = 0; r < rounds; r++)
        for (int i = 0; i < 10; i++)
            acc[i] = vfmaq_f32(add, acc[i], scale);
    float32x4_t sum = acc[0];
    for (int i = 1; i < 10; i++)
        sum = vaddq_f32(sum, acc[i]);
    return vgetq_lane_f32(sum, 0);
}
#define FLOAT_NEON_OPS_PER_ROUND (10.0 * 4 * 2)

/* Without the dot-product extension: widening multiply-accumulate of 8 int8
 * pairs into 16 bits, then pairwise into 32. */
static float int8_chains_neon(long rounds)
{
    int32x4_t acc[8];
    for (int i = 0; i < 8; i++)
        acc[i] = vdupq_n_s32(i);
    const int8x16_t a = vdupq_n_s8(3), b = vdupq_n_s8(-2);
    for (long r = 0; r < rounds; r++)
        for (int i = 0; i < 8; i++) {
            int16x8_t products = vmull_s8(vget_low_s8(a), vget_low_s8(b));
            products = vmlal_s8(products, vget_high_s8(a), vget_high_s8(b));
            acc[i] = vpadalq_s16(acc[i], products);
        }
    int32x4_t sum = acc[0];
    for (int i = 1; i < 8; i++)
        sum = vaddq_s32(sum, acc[i]);
    return (float)vgetq_lane_s32(sum, 0);
}
#define INT8_NEON_OPS_PER_ROUND (8.0 * 16 * 2)

/* With it, the integer kernels' step: sdot, 16 s8 x s8 products added in
 * fours into 32-bit lanes. The inline assembly keeps the file buildable for
 * plain ARMv8.0 (the intrinsic needs the extension for the whole file). */
__attribute__((target("arch=armv8.2-a+dotprod"))) static float int8_chains_sdot(long rounds)
{
    int32x4_t acc[10];
    for (int i = 0; i < 10; i++)
        acc[i] = vdupq_n_s32(i);
    const int8x16_t a = vdupq_n_s8(3), b = vdupq_n_s8(-2);
    for (long r = 0; r < rounds; r++)
        for (int i = 0; i < 10; i++)
            __asm__("sdot %0.4s, %1.16b, %2.16b" : "+w"(acc[i]) : "w"(a), "w"(b));
    int32x4_t sum = acc[0];
    for (int i = 1; i < 10; i++)
        sum = vaddq_s32(sum, acc[i]);
    return (float)vgetq_lane_s32(sum, 0);
}
#define INT8_SDOT_OPS_PER_ROUND (10.0 * 16 * 2)
#endif

/* Scalar chains, for CPUs without the vector instructions above. */
static float float_chains_scalar(long rounds)
{
    float acc[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    for (long r = 0; r < rounds; r++)
        for (int i = 0; i < 8; i++)
            acc[i] = acc[i] * 0.999999f + 1e-6f;
    return acc[0] + acc[7];
}
#define FLOAT_SCALAR_OPS_PER_ROUND (8.0 * 2)

static float int8_chains_scalar(long rounds)
{
    int32_t acc[8] = {0};
    volatile int8_t a = 3, b = -2;
    for (long r = 0; r < rounds; r++)
        for (int i = 0; i < 8; i++)
            acc[i] += a * b;
    return (float)(acc[0] + acc[7]);
}
#define INT8_SCALAR_OPS_PER_ROUND (8.0 * 2)

/* One thread's run of multiply-add chains. */
static void chains_chunk(void *arg, int chunk, int n_chunks, int thread)
{
    (void)chunk;
    (void)n_chunks;
    struct rate_job *job = arg;
    job->sink[thread % 64] = job->chains(job->rounds);
}

static double measure_rate(int n_threads, float (*chains)(long rounds), double ops_per_round)
{
    struct plm_threadpool *pool;
    if (threadpool_new(n_threads, &pool))
        return 0.0;
    struct rate_job job = {.chains = chains, .rounds = CHAIN_ROUNDS / 4};
    threadpool_run(pool, chains_chunk, &job, n_threads); /* warm up: clocks ramp, pages fault */
    job.rounds = CHAIN_ROUNDS;
    double best = 0.0;
    for (int run = 0; run < RUNS; run++) {
        double start = plm_seconds_now();
        threadpool_run(pool, chains_chunk, &job, n_threads);
        double rate = job.rounds * ops_per_round * n_threads / (plm_seconds_now() - start);
        if (rate > best)
            best = rate;
    }
    threadpool_free(pool);
    return best;
}

/* The chains of the instructions plm_matmul's kernels use on this CPU. */
static double peak_rate(int n_threads, bool integer)
{
    switch (plm_matmul_isa()) {
#if defined(__x86_64__)
    case PLM_ISA_AVX512:
        return integer ? measure_rate(n_threads, int8_chains_avx512, INT8_AVX512_OPS_PER_ROUND)
                       : measure_rate(n_threads, float_chains_avx512, FLOAT_AVX512_OPS_PER_ROUND);
    case PLM_ISA_AVX2:
        return integer ? measure_rate(n_threads, int8_chains_avx2, INT8_AVX2_OPS_PER_ROUND)
                       : measure_rate(n_threads, float_chains_avx2, FLOAT_AVX2_OPS_PER_ROUND);
#elif defined(__aarch64__)
    case PLM_ISA_NEON:
        if (!integer)
            return measure_rate(n_threads, float_chains_neon, FLOAT_NEON_OPS_PER_ROUND);
        return plm_cpu_has_dotprod()
                   ? measure_rate(n_threads, int8_chains_sdot, INT8_SDOT_OPS_PER_ROUND)
                   : measure_rate(n_threads, int8_chains_neon, INT8_NEON_OPS_PER_ROUND);
#endif
    default:
        return integer ? measure_rate(n_threads, int8_chains_scalar, INT8_SCALAR_OPS_PER_ROUND)
                       : measure_rate(n_threads, float_chains_scalar, FLOAT_SCALAR_OPS_PER_ROUND);
    }
}

double plm_measure_peak_float_ops(int n_threads) { return peak_rate(n_threads, false); }

double plm_measure_peak_int8_ops(int n_threads) { return peak_rate(n_threads, true); }
