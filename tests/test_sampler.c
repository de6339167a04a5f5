/*
 * Sampler tests: the default chain (penalty -> top-k -> top-p -> min-p ->
 * temperature -> draw) checked against hand-built distributions, statistical
 * checks of the draw itself, determinism, and hostile input.
 */
#include "pocketlm.h"
#include "test_util.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_DRAWS 20000

/* Everything off except what a test turns on, with a fixed seed. */
static struct plm_sampler_params plain_params(float temperature)
{
    struct plm_sampler_params params;
    plm_sampler_params_default(&params);
    params.temperature = temperature;
    params.top_k = 0;
    params.top_p = 1.0f;
    params.min_p = 0.0f;
    params.repeat_penalty = 1.0f;
    params.seed = 1234;
    return params;
}

static plm_sampler *new_sampler(const struct plm_sampler_params *params, int n_vocab)
{
    plm_sampler *sampler = NULL;
    int status = plm_sampler_new(params, n_vocab, &sampler);
    if (status != PLM_OK)
        fail_msg("plm_sampler_new: %s", plm_last_error());
    assert_non_null(sampler);
    return sampler;
}

/* Draws n_draws tokens from the same logits and counts each id. */
static void count_draws(plm_sampler *sampler, const float *logits, int n_vocab, int n_draws,
                        int *counts)
{
    memset(counts, 0, (size_t)n_vocab * sizeof *counts);
    for (int i = 0; i < n_draws; i++) {
        int32_t token = plm_sampler_sample(sampler, logits);
        assert_in_range(token, 0, n_vocab - 1);
        counts[token]++;
    }
}

/* Logits whose softmax at temperature 1 is exactly probs. */
static void logits_from_probs(const double *probs, int n, float *logits)
{
    for (int i = 0; i < n; i++)
        logits[i] = (float)log(probs[i]);
}

static void test_defaults(void **state)
{
    (void)state;
    struct plm_sampler_params a, b;
    plm_sampler_params_default(&a);
    plm_sampler_params_default(&b);
    assert_float_equal(a.temperature, 0.8f, 1e-7);
    assert_int_equal(a.top_k, 40);
    assert_float_equal(a.top_p, 0.95f, 1e-7);
    assert_float_equal(a.min_p, 0.05f, 1e-7);
    assert_float_equal(a.repeat_penalty, 1.0f, 1e-7);
    assert_int_equal(a.repeat_last_n, 64);
    /* Seeds come from the clock (and a call counter), so they differ. */
    assert_true(a.seed != b.seed);
    plm_sampler_params_default(NULL);
}

static void test_greedy_is_argmax_and_ignores_seed(void **state)
{
    (void)state;
    enum { n = 300 };
    float logits[n];
    struct test_rng rng = { 7 };
    for (int round = 0; round < 20; round++) {
        int expected = 0;
        for (int i = 0; i < n; i++) {
            logits[i] = rng_normal(&rng) * 4.0f;
            if (logits[i] > logits[expected])
                expected = i;
        }
        for (uint64_t seed = 0; seed < 5; seed++) {
            struct plm_sampler_params params = plain_params(0.0f);
            params.seed = seed * 0x9e3779b97f4a7c15ull;
            params.top_k = (int)seed; /* the filters do not matter either */
            params.top_p = 0.5f;
            plm_sampler *sampler = new_sampler(&params, n);
            for (int i = 0; i < 3; i++)
                assert_int_equal(plm_sampler_sample(sampler, logits), expected);
            plm_sampler_free(sampler);
        }
    }

    /* Ties go to the lowest id. */
    float tied[5] = { 1.0f, 3.0f, 2.0f, 3.0f, 3.0f };
    struct plm_sampler_params params = plain_params(0.0f);
    plm_sampler *sampler = new_sampler(&params, 5);
    assert_int_equal(plm_sampler_sample(sampler, tied), 1);
    plm_sampler_free(sampler);
}

static void sample_sequence(uint64_t seed, int n_draws, int32_t *out)
{
    enum { n = 50 };
    float logits[n] = { 0 }; /* uniform: every draw is pure randomness */
    struct plm_sampler_params params = plain_params(1.0f);
    params.seed = seed;
    plm_sampler *sampler = new_sampler(&params, n);
    for (int i = 0; i < n_draws; i++)
        out[i] = plm_sampler_sample(sampler, logits);
    plm_sampler_free(sampler);
}

static int count_equal(const int32_t *a, const int32_t *b, int n)
{
    int equal = 0;
    for (int i = 0; i < n; i++)
        equal += a[i] == b[i];
    return equal;
}

static void test_seed_determinism(void **state)
{
    (void)state;
    enum { n_draws = 1000 };
    static int32_t first[n_draws], again[n_draws], other[n_draws];
    sample_sequence(42, n_draws, first);
    sample_sequence(42, n_draws, again);
    assert_memory_equal(first, again, sizeof first);

    /* With 50 equally likely tokens, two independent sequences agree on about
     * 1 position in 50 (20 of 1000); allow a lot of slack but not sameness.
     * The seeds differ in the lowest bit, the highest bit, or are 0. */
    const uint64_t other_seeds[] = { 43, 42 | (1ull << 63), 0, 1 };
    for (size_t s = 0; s < sizeof other_seeds / sizeof other_seeds[0]; s++) {
        sample_sequence(other_seeds[s], n_draws, other);
        assert_in_range(count_equal(first, other, n_draws), 0, 60);
    }
}

static void test_reset_restarts_sequence(void **state)
{
    (void)state;
    enum { n = 10, n_draws = 200 };
    float logits[n] = { 0.1f, 0.5f, -0.3f, 1.0f, 0.0f, 0.7f, -1.0f, 0.2f, 0.4f, 0.9f };
    struct plm_sampler_params params = plain_params(1.0f);
    params.repeat_penalty = 1.3f;
    plm_sampler *sampler = new_sampler(&params, n);
    int32_t first[n_draws], second[n_draws];
    for (int i = 0; i < n_draws; i++) {
        first[i] = plm_sampler_sample(sampler, logits);
        plm_sampler_accept(sampler, first[i]);
    }
    plm_sampler_reset(sampler);
    for (int i = 0; i < n_draws; i++) {
        second[i] = plm_sampler_sample(sampler, logits);
        plm_sampler_accept(sampler, second[i]);
    }
    assert_memory_equal(first, second, sizeof first);
    plm_sampler_free(sampler);
    plm_sampler_reset(NULL);
}

static void test_frequencies_match_softmax(void **state)
{
    (void)state;
    enum { n = 8, n_draws = 100000 };
    float logits[n] = { 1.0f, 0.5f, 2.0f, -1.0f, 0.0f, 1.5f, -0.5f, 0.3f };
    double probs[n], total = 0;
    for (int i = 0; i < n; i++)
        total += probs[i] = exp(logits[i]);
    for (int i = 0; i < n; i++)
        probs[i] /= total;

    struct plm_sampler_params params = plain_params(1.0f);
    params.seed = 2024;
    plm_sampler *sampler = new_sampler(&params, n);
    int counts[n];
    count_draws(sampler, logits, n, n_draws, counts);
    plm_sampler_free(sampler);

    double chi_square = 0, max_error = 0;
    for (int i = 0; i < n; i++) {
        double expected = probs[i] * n_draws;
        chi_square += (counts[i] - expected) * (counts[i] - expected) / expected;
        double error = fabs((double)counts[i] / n_draws - probs[i]);
        if (error > max_error)
            max_error = error;
    }
    /* 7 degrees of freedom: chi-square exceeds 29.9 with probability 1e-4. */
    if (chi_square > 29.9)
        fail_msg("chi-square %.2f too large for 7 degrees of freedom", chi_square);
    /* One frequency's standard deviation is at most 0.0016 here. */
    assert_true(max_error < 0.008);
}

static void test_top_k_one_is_greedy(void **state)
{
    (void)state;
    enum { n = 1000 };
    static float logits[n];
    struct test_rng rng = { 99 };
    struct plm_sampler_params greedy_params = plain_params(0.0f);
    struct plm_sampler_params top1_params = plain_params(1.5f);
    top1_params.top_k = 1;
    plm_sampler *greedy = new_sampler(&greedy_params, n);
    plm_sampler *top1 = new_sampler(&top1_params, n);
    for (int round = 0; round < 200; round++) {
        for (int i = 0; i < n; i++)
            logits[i] = rng_normal(&rng);
        if (round % 2) { /* a second token ties with the best */
            int best = 0;
            for (int i = 1; i < n; i++)
                if (logits[i] > logits[best])
                    best = i;
            logits[rng_next(&rng) % n] = logits[best];
        }
        assert_int_equal(plm_sampler_sample(top1, logits), plm_sampler_sample(greedy, logits));
    }
    plm_sampler_free(greedy);
    plm_sampler_free(top1);
}

static void test_top_k_two(void **state)
{
    (void)state;
    enum { n = 6 };
    /* The two best are ids 4 and 1; id 2 is close behind but out. */
    float logits[n] = { 0.0f, 2.0f, 1.9f, -3.0f, 2.5f, 1.0f };
    struct plm_sampler_params params = plain_params(1.0f);
    params.top_k = 2;
    plm_sampler *sampler = new_sampler(&params, n);
    int counts[n];
    count_draws(sampler, logits, n, N_DRAWS, counts);
    assert_int_equal(counts[0] + counts[2] + counts[3] + counts[5], 0);
    /* Renormalized over the two: p(4) = 1 / (1 + e^-0.5) = 0.622. */
    assert_float_equal((double)counts[4] / N_DRAWS, 1.0 / (1.0 + exp(-0.5)), 0.02);
    plm_sampler_free(sampler);

    /* Ties at the cut go to the lowest ids: 1 and 2 stay, 3 does not. */
    float tied[4] = { 1.0f, 3.0f, 3.0f, 3.0f };
    sampler = new_sampler(&params, 4);
    int tied_counts[4];
    count_draws(sampler, tied, 4, 2000, tied_counts);
    assert_int_equal(tied_counts[0] + tied_counts[3], 0);
    assert_true(tied_counts[1] > 0 && tied_counts[2] > 0);
    plm_sampler_free(sampler);
}

/* Top-k against a brute-force reference on a vocabulary full of ties: with a
 * huge temperature the kept tokens are near-uniform, so all of them show up. */
static void test_top_k_exact_set(void **state)
{
    (void)state;
    enum { n = 300 };
    float logits[n];
    int counts[n];
    struct test_rng rng = { 5 };
    const int ks[] = { 2, 3, 17, 64, 150, 299 };
    for (size_t c = 0; c < sizeof ks / sizeof ks[0]; c++) {
        for (int i = 0; i < n; i++)
            logits[i] = (float)(rng_next(&rng) % 40); /* about 7 tokens per value */
        struct plm_sampler_params params = plain_params(1e30f);
        params.top_k = ks[c];
        plm_sampler *sampler = new_sampler(&params, n);
        count_draws(sampler, logits, n, 200 * ks[c], counts);
        plm_sampler_free(sampler);
        for (int id = 0; id < n; id++) {
            /* Tokens that outrank id: higher logit, or equal with a lower id. */
            int above = 0;
            for (int j = 0; j < n; j++)
                above += logits[j] > logits[id] || (logits[j] == logits[id] && j < id);
            bool kept = above < ks[c];
            if (kept != (counts[id] > 0))
                fail_msg("top_k %d: token %d (rank %d) drawn %d times", ks[c], id, above,
                         counts[id]);
        }
    }
}

/* Runs N_DRAWS draws and checks that exactly the ids in expected (a
 * -1-terminated list) come up. */
static void assert_support(const struct plm_sampler_params *params, const float *logits, int n,
                           const int *expected)
{
    plm_sampler *sampler = new_sampler(params, n);
    int counts[16];
    assert_true(n <= 16);
    count_draws(sampler, logits, n, N_DRAWS, counts);
    plm_sampler_free(sampler);
    bool wanted[16] = { false };
    for (const int *id = expected; *id >= 0; id++)
        wanted[*id] = true;
    for (int id = 0; id < n; id++) {
        if (wanted[id] && counts[id] == 0)
            fail_msg("token %d should be drawn but never was", id);
        if (!wanted[id] && counts[id] != 0)
            fail_msg("token %d should be cut but was drawn %d times", id, counts[id]);
    }
}

/* Probabilities 0.5, 0.3, 0.15, 0.05 spread over shuffled ids, so the sort
 * matters: id 3 is best, then 0, then 4, then 1; id 2 is nearly impossible
 * but not -inf. */
static const double hand_probs[5] = { 0.3, 0.05, 1e-9, 0.5, 0.15 };

static void test_top_p(void **state)
{
    (void)state;
    float logits[5];
    logits_from_probs(hand_probs, 5, logits);
    struct plm_sampler_params params = plain_params(1.0f);

    params.top_p = 0.75f; /* 0.5 < 0.75 <= 0.8 */
    assert_support(&params, logits, 5, (const int[]){ 3, 0, -1 });
    params.top_p = 0.85f; /* 0.8 < 0.85 <= 0.95 */
    assert_support(&params, logits, 5, (const int[]){ 3, 0, 4, -1 });
    params.top_p = 0.01f; /* at least one token stays */
    assert_support(&params, logits, 5, (const int[]){ 3, -1 });
    params.top_p = 0.4f;
    assert_support(&params, logits, 5, (const int[]){ 3, -1 });

    /* Reaching top_p exactly is enough. Equal logits make every sum exact
     * (weights of exactly 1), and the ties are kept lowest ids first. */
    float flat[4] = { 0.0f, 0.0f, 0.0f, 0.0f };
    params.top_p = 0.25f;
    assert_support(&params, flat, 4, (const int[]){ 0, -1 });
    params.top_p = 0.5f;
    assert_support(&params, flat, 4, (const int[]){ 0, 1, -1 });
    params.top_p = 0.75f;
    assert_support(&params, flat, 4, (const int[]){ 0, 1, 2, -1 });

    /* Top-p measures probability among the top-k survivors: over {3, 0} the
     * best has 0.625, so 0.6 keeps it alone, where without top-k it would not. */
    params.top_p = 0.6f;
    assert_support(&params, logits, 5, (const int[]){ 3, 0, -1 });
    params.top_k = 2;
    assert_support(&params, logits, 5, (const int[]){ 3, -1 });

    /* The kept tokens keep their relative odds: 0.5 : 0.3. */
    params.top_k = 0;
    params.top_p = 0.75f;
    plm_sampler *sampler = new_sampler(&params, 5);
    int counts[5];
    count_draws(sampler, logits, 5, N_DRAWS, counts);
    assert_float_equal((double)counts[3] / N_DRAWS, 0.625, 0.02);
    plm_sampler_free(sampler);
}

static void test_min_p(void **state)
{
    (void)state;
    float logits[5];
    logits_from_probs(hand_probs, 5, logits);
    struct plm_sampler_params params = plain_params(1.0f);

    params.min_p = 0.2f; /* threshold 0.1: 0.05 and 1e-9 go */
    assert_support(&params, logits, 5, (const int[]){ 3, 0, 4, -1 });
    params.min_p = 0.5f; /* threshold 0.25 */
    assert_support(&params, logits, 5, (const int[]){ 3, 0, -1 });
    params.min_p = 1.0f;
    assert_support(&params, logits, 5, (const int[]){ 3, -1 });
    params.min_p = 0.0f;
    assert_support(&params, logits, 5, (const int[]){ 3, 0, 4, 1, -1 });

    /* Min-p judges at temperature 1: at temperature 3 token 1 would hold
     * (0.05/0.5)^(1/3) = 0.46 of the best, yet it is still cut. */
    params.min_p = 0.2f;
    params.temperature = 3.0f;
    assert_support(&params, logits, 5, (const int[]){ 3, 0, 4, -1 });

    /* Combined with top-k (sorted candidates) it cuts the same way. */
    params.top_k = 4;
    assert_support(&params, logits, 5, (const int[]){ 3, 0, 4, -1 });
}

static void test_temperature_sharpens(void **state)
{
    (void)state;
    const double probs[4] = { 0.4, 0.3, 0.2, 0.1 };
    float logits[4];
    logits_from_probs(probs, 4, logits);
    const float temperatures[3] = { 0.5f, 1.0f, 2.0f };
    double top_frequency[3];
    for (int t = 0; t < 3; t++) {
        double total = 0;
        for (int i = 0; i < 4; i++)
            total += pow(probs[i], 1.0 / temperatures[t]);
        double expected = pow(probs[0], 1.0 / temperatures[t]) / total;

        struct plm_sampler_params params = plain_params(temperatures[t]);
        plm_sampler *sampler = new_sampler(&params, 4);
        int counts[4];
        count_draws(sampler, logits, 4, N_DRAWS, counts);
        plm_sampler_free(sampler);
        top_frequency[t] = (double)counts[0] / N_DRAWS;
        assert_float_equal(top_frequency[t], expected, 0.015);
    }
    assert_true(top_frequency[0] > top_frequency[1]);
    assert_true(top_frequency[1] > top_frequency[2]);

    /* A tiny temperature is greedy in effect and must not overflow. */
    struct plm_sampler_params params = plain_params(1e-30f);
    plm_sampler *sampler = new_sampler(&params, 4);
    int counts[4];
    count_draws(sampler, logits, 4, 1000, counts);
    assert_int_equal(counts[0], 1000);
    plm_sampler_free(sampler);
}

static void test_repetition_penalty(void **state)
{
    (void)state;
    enum { n = 8 };
    struct plm_sampler_params params = plain_params(0.0f);
    params.repeat_penalty = 1.5f;
    params.repeat_last_n = 3;
    plm_sampler *sampler = new_sampler(&params, n);

    /* Positive logit divided: 2.0 / 1.5 = 1.33 falls below 1.9. */
    float positive[n] = { 2.0f, 1.9f, -1.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f };
    const float positive_copy[n] = { 2.0f, 1.9f, -1.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f };
    assert_int_equal(plm_sampler_sample(sampler, positive), 0);
    plm_sampler_accept(sampler, 0);
    assert_int_equal(plm_sampler_sample(sampler, positive), 1);
    assert_memory_equal(positive, positive_copy, sizeof positive); /* logits untouched */

    /* Penalized once however often it was seen: 1.33 still beats 1.0. */
    float once[n] = { 2.0f, 1.0f, -5.0f, -5.0f, -5.0f, -5.0f, -5.0f, -5.0f };
    plm_sampler_accept(sampler, 0);
    plm_sampler_accept(sampler, 0);
    assert_int_equal(plm_sampler_sample(sampler, once), 0);

    /* Negative logit multiplied: -1.0 * 1.5 = -1.5 falls below -1.2. */
    plm_sampler_reset(sampler);
    float negative[n] = { -1.0f, -1.2f, -9.0f, -9.0f, -9.0f, -9.0f, -9.0f, -9.0f };
    assert_int_equal(plm_sampler_sample(sampler, negative), 0);
    plm_sampler_accept(sampler, 0);
    assert_int_equal(plm_sampler_sample(sampler, negative), 1);

    /* Only the last repeat_last_n = 3 count: three more tokens push 0 out. */
    plm_sampler_accept(sampler, 5);
    plm_sampler_accept(sampler, 6);
    assert_int_equal(plm_sampler_sample(sampler, positive), 1);
    plm_sampler_accept(sampler, 7);
    assert_int_equal(plm_sampler_sample(sampler, positive), 0);

    /* Ids outside the vocabulary are ignored and do not push anything out. */
    plm_sampler_accept(sampler, 0);
    plm_sampler_accept(sampler, -1);
    plm_sampler_accept(sampler, n);
    plm_sampler_accept(sampler, INT32_MAX);
    plm_sampler_accept(sampler, INT32_MIN);
    plm_sampler_accept(NULL, 0);
    assert_int_equal(plm_sampler_sample(sampler, positive), 1);

    /* Reset forgets the history. */
    plm_sampler_reset(sampler);
    assert_int_equal(plm_sampler_sample(sampler, positive), 0);
    plm_sampler_free(sampler);

    /* repeat_last_n = 0 and penalty 1 both turn it off. */
    params.repeat_last_n = 0;
    sampler = new_sampler(&params, n);
    plm_sampler_accept(sampler, 0);
    assert_int_equal(plm_sampler_sample(sampler, positive), 0);
    plm_sampler_free(sampler);
    params.repeat_last_n = 64;
    params.repeat_penalty = 1.0f;
    sampler = new_sampler(&params, n);
    plm_sampler_accept(sampler, 0);
    assert_int_equal(plm_sampler_sample(sampler, positive), 0);
    plm_sampler_free(sampler);

    /* A penalty below 1 rewards repetition; a tiny one must not overflow into
     * a "broken" infinite logit that would then be excluded. */
    params.repeat_penalty = 1e-38f;
    sampler = new_sampler(&params, n);
    plm_sampler_accept(sampler, 1);
    float big[n] = { 3e38f, 10.0f, 0, 0, 0, 0, 0, 0 };
    assert_int_equal(plm_sampler_sample(sampler, big), 1);
    plm_sampler_free(sampler);
}

static void test_penalty_in_random_sampling(void **state)
{
    (void)state;
    /* Two equal tokens; the penalty takes ln 2 off token 0's logit, halving its odds. */
    float logits[2] = { 1.0f, 1.0f };
    struct plm_sampler_params params = plain_params(1.0f);
    params.repeat_penalty = 1.0f / (1.0f - (float)log(2.0)); /* 1 / penalty = 1 - ln 2 */
    plm_sampler *sampler = new_sampler(&params, 2);
    plm_sampler_accept(sampler, 0);
    int counts[2];
    count_draws(sampler, logits, 2, N_DRAWS, counts);
    /* Logit 0 becomes 1 - ln 2: odds 1 : 2. */
    assert_float_equal((double)counts[0] / N_DRAWS, 1.0 / 3.0, 0.015);
    plm_sampler_free(sampler);
}

static void test_non_finite_logits(void **state)
{
    (void)state;
    enum { n = 6 };
    float logits[n] = { 0.5f, NAN, INFINITY, 1.0f, -INFINITY, -NAN };

    struct plm_sampler_params greedy_params = plain_params(0.0f);
    plm_sampler *greedy = new_sampler(&greedy_params, n);
    assert_int_equal(plm_sampler_sample(greedy, logits), 3);
    plm_sampler_free(greedy);

    /* Every path through the chain: plain, top-k, full sort for top-p, min-p. */
    struct plm_sampler_params params = plain_params(1.0f);
    assert_support(&params, logits, n, (const int[]){ 0, 3, -1 });
    params.top_k = 5;
    assert_support(&params, logits, n, (const int[]){ 0, 3, -1 });
    params.top_k = 0;
    params.top_p = 0.99f;
    assert_support(&params, logits, n, (const int[]){ 0, 3, -1 });
    params.min_p = 0.01f;
    assert_support(&params, logits, n, (const int[]){ 0, 3, -1 });

    /* One finite logit among broken ones always wins. */
    float lone[n] = { NAN, INFINITY, -INFINITY, -7.0f, NAN, INFINITY };
    assert_support(&params, lone, n, (const int[]){ 3, -1 });

    /* Nothing finite: an error, not a made-up token. */
    float broken[n] = { NAN, INFINITY, -INFINITY, NAN, NAN, INFINITY };
    plm_sampler *sampler = new_sampler(&params, n);
    assert_int_equal(plm_sampler_sample(sampler, broken), PLM_ERR_ARG);
    assert_non_null(strstr(plm_last_error(), "finite"));
    assert_int_equal(plm_sampler_sample(sampler, NULL), PLM_ERR_ARG);
    assert_int_equal(plm_sampler_sample(NULL, lone), PLM_ERR_ARG);
    /* The extremes of float are fine. */
    float extremes[n] = { -FLT_MAX, FLT_MAX, -FLT_MAX, FLT_MAX, FLT_MIN, -FLT_MAX };
    assert_support(&params, extremes, n, (const int[]){ 1, 3, -1 });
    plm_sampler_free(sampler);
}

static void test_odd_sizes(void **state)
{
    (void)state;
    /* One token: always it. */
    float one[1] = { -3.0f };
    struct plm_sampler_params params;
    plm_sampler_params_default(&params);
    plm_sampler *sampler = new_sampler(&params, 1);
    for (int i = 0; i < 10; i++)
        assert_int_equal(plm_sampler_sample(sampler, one), 0);
    plm_sampler_free(sampler);

    /* top_k larger than the vocabulary, or than the finite logits. */
    float logits[4] = { 0.0f, NAN, 1.0f, 0.5f };
    params = plain_params(1.0f);
    params.top_k = 1000;
    assert_support(&params, logits, 4, (const int[]){ 0, 2, 3, -1 });
    params.top_k = 3;
    params.top_p = 0.9f;
    assert_support(&params, logits, 4, (const int[]){ 0, 2, 3, -1 });
}

static void test_invalid_params(void **state)
{
    (void)state;
    struct case_ {
        const char *name; /* must appear in the message */
        struct plm_sampler_params params;
        int n_vocab;
    };
    struct plm_sampler_params ok = plain_params(0.8f);
    struct case_ cases[] = {
        { "temperature", ok, 10 }, { "temperature", ok, 10 }, { "top_p", ok, 10 },
        { "top_p", ok, 10 },       { "top_p", ok, 10 },       { "top_p", ok, 10 },
        { "min_p", ok, 10 },       { "min_p", ok, 10 },       { "min_p", ok, 10 },
        { "repeat_penalty", ok, 10 }, { "repeat_penalty", ok, 10 },
        { "repeat_penalty", ok, 10 }, { "n_vocab", ok, 0 },   { "n_vocab", ok, -5 },
        { "top_k", ok, 10 },       { "repeat_last_n", ok, 10 },
    };
    cases[0].params.temperature = -0.1f;
    cases[1].params.temperature = NAN;
    cases[2].params.top_p = 0.0f;
    cases[3].params.top_p = 1.01f;
    cases[4].params.top_p = -1.0f;
    cases[5].params.top_p = NAN;
    cases[6].params.min_p = -0.01f;
    cases[7].params.min_p = 1.5f;
    cases[8].params.min_p = NAN;
    cases[9].params.repeat_penalty = 0.0f;
    cases[10].params.repeat_penalty = -1.0f;
    cases[11].params.repeat_penalty = NAN;
    cases[14].params.top_k = -1;
    cases[15].params.repeat_last_n = -1;
    plm_sampler *placeholder = new_sampler(&ok, 10);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        plm_sampler *sampler = placeholder; /* a failure must overwrite it with NULL */
        int status = plm_sampler_new(&cases[i].params, cases[i].n_vocab, &sampler);
        if (status != PLM_ERR_ARG)
            fail_msg("case %zu (%s): status %d", i, cases[i].name, status);
        assert_null(sampler);
        if (!strstr(plm_last_error(), cases[i].name))
            fail_msg("case %zu: message '%s' does not name %s", i, plm_last_error(),
                     cases[i].name);
    }

    plm_sampler_free(placeholder);

    plm_sampler *sampler = NULL;
    assert_int_equal(plm_sampler_new(NULL, 10, &sampler), PLM_ERR_ARG);
    assert_null(sampler);
    assert_int_equal(plm_sampler_new(&ok, 10, NULL), PLM_ERR_ARG);
    plm_sampler_free(NULL);

    /* The edges of the valid ranges are accepted. */
    struct plm_sampler_params edge = ok;
    edge.temperature = 0.0f;
    edge.top_k = 0;
    edge.top_p = 1.0f;
    edge.min_p = 1.0f;
    edge.repeat_last_n = 0;
    edge.repeat_penalty = 1e-6f;
    plm_sampler_free(new_sampler(&edge, 1));
    edge.min_p = 0.0f;
    edge.top_p = 1e-6f;
    plm_sampler_free(new_sampler(&edge, 1));
}

/* Rank of token among logits: how many logits are strictly larger. */
static int rank_of(const float *logits, int n, int32_t token)
{
    int rank = 0;
    for (int i = 0; i < n; i++)
        rank += logits[i] > logits[token];
    return rank;
}

static void test_large_vocabulary(void **state)
{
    (void)state;
    enum { n = 150000 };
    float *logits = malloc(n * sizeof *logits);
    assert_non_null(logits);
    struct test_rng rng = { 2025 };
    for (int i = 0; i < n; i++)
        logits[i] = rng_normal(&rng) * 3.0f;

    /* Defaults, 1000 draws: each must come from the top 40. */
    struct plm_sampler_params params;
    plm_sampler_params_default(&params);
    params.seed = 77;
    plm_sampler *sampler = new_sampler(&params, n);
    for (int i = 0; i < 1000; i++) {
        int32_t token = plm_sampler_sample(sampler, logits);
        assert_in_range(token, 0, n - 1);
        assert_true(rank_of(logits, n, token) < 40);
        plm_sampler_accept(sampler, token);
    }
    plm_sampler_free(sampler);

    /* Top-k off with top-p on sorts the whole vocabulary; a few draws suffice. */
    params.top_k = 0;
    params.repeat_penalty = 1.1f;
    sampler = new_sampler(&params, n);
    for (int i = 0; i < 20; i++) {
        int32_t token = plm_sampler_sample(sampler, logits);
        assert_in_range(token, 0, n - 1);
        plm_sampler_accept(sampler, token);
    }
    plm_sampler_free(sampler);
    free(logits);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_greedy_is_argmax_and_ignores_seed),
        cmocka_unit_test(test_seed_determinism),
        cmocka_unit_test(test_reset_restarts_sequence),
        cmocka_unit_test(test_frequencies_match_softmax),
        cmocka_unit_test(test_top_k_one_is_greedy),
        cmocka_unit_test(test_top_k_two),
        cmocka_unit_test(test_top_k_exact_set),
        cmocka_unit_test(test_top_p),
        cmocka_unit_test(test_min_p),
        cmocka_unit_test(test_temperature_sharpens),
        cmocka_unit_test(test_repetition_penalty),
        cmocka_unit_test(test_penalty_in_random_sampling),
        cmocka_unit_test(test_non_finite_logits),
        cmocka_unit_test(test_odd_sizes),
        cmocka_unit_test(test_invalid_params),
        cmocka_unit_test(test_large_vocabulary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
