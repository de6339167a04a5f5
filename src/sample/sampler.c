/*
 * Token sampling: turns one row of logits into the next token id.
 *
 * The chain is llama.cpp's default one, in the same order:
 *   1. repetition penalty on the tokens among the last repeat_last_n accepted
 *   2. temperature <= 0: greedy argmax (ties go to the lowest id), done;
 *      the random generator is not touched
 *   3. top-k  keep the k highest logits
 *   4. top-p  keep the smallest best-first prefix whose probability reaches top_p
 *   5. min-p  drop tokens less likely than min_p times the most likely one
 *   6. temperature, softmax, one draw from the sampler's own generator
 * Steps 4 and 5 measure probabilities at temperature 1 among the tokens still
 * in the running, as llama.cpp does (temperature comes last in its chain), so
 * the tokens they cut do not depend on the temperature.
 *
 * Cost per call: a few O(n_vocab) passes, plus O(n_vocab log k) for top-k (a
 * size-k heap; in practice near O(n_vocab), since most tokens lose against the
 * heap's weakest at once). Only with top-k off and top-p on is the whole
 * vocabulary sorted, because the nucleus needs the full best-first order.
 *
 * Logits that are NaN or infinite never win: they come from a model that
 * overflowed, so only the finite ones carry information. If no logit is finite
 * there is nothing to pick and plm_sampler_sample returns PLM_ERR_ARG.
 *
 * Reproducibility: the generator is xoshiro256** seeded through splitmix64,
 * all integer arithmetic, and every ordering breaks ties by token id, so the
 * same seed, logits and history give the same token on every platform.
 * plm_sampler_params_default takes the seed from the clock; a caller who wants
 * a fixed seed sets params.seed after calling it.
 */
#include "core/error.h"

#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

/* One token still in the running. Before filtering, candidates[id].id == id. */
struct token_logit {
    float logit;
    int32_t id;
};

/* xoshiro256** state (Blackman & Vigna): 256 bits, never all zero. */
struct prng {
    uint64_t s[4];
};

struct plm_sampler {
    struct plm_sampler_params params;
    int n_vocab;
    struct token_logit *candidates; /* n_vocab entries, rebuilt by every sample */
    int32_t *history;               /* ring of the last repeat_last_n accepted tokens */
    int history_len;                /* entries in use, at most repeat_last_n */
    int history_next;               /* slot the next accepted token goes to */
    struct prng rng;
};

/* ------------------------------------------------------------------- PRNG */

/* splitmix64: spreads any 64-bit seed (even 0 or 1) over a well-mixed state. */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void prng_seed(struct prng *rng, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&seed);
}

static uint64_t rotate_left(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t prng_next(struct prng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotate_left(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotate_left(s[3], 45);
    return result;
}

/* Uniform in [0, 1): the top 53 bits fill a double's mantissa exactly. */
static double prng_uniform(struct prng *rng) { return (double)(prng_next(rng) >> 11) * 0x1.0p-53; }

/* --------------------------------------------------------------- params */

void plm_sampler_params_default(struct plm_sampler_params *params)
{
    if (!params)
        return;
    /* Two calls within one clock tick must still get different seeds. */
    static atomic_uint_fast64_t calls;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t entropy = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    entropy ^= (uint64_t)atomic_fetch_add(&calls, 1) << 40;
    *params = (struct plm_sampler_params){
        .temperature = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.0f,
        .repeat_last_n = 64,
        .seed = splitmix64(&entropy),
    };
}

/* The comparisons are written so that NaN fails them too. */
static int validate_params(const struct plm_sampler_params *p, int n_vocab)
{
    if (n_vocab <= 0)
        return plm_fail(PLM_ERR_ARG, "sampler: n_vocab must be > 0 (got %d)", n_vocab);
    if (!(p->temperature >= 0))
        return plm_fail(PLM_ERR_ARG, "sampler: temperature must be >= 0 (got %g)",
                        (double)p->temperature);
    if (p->top_k < 0)
        return plm_fail(PLM_ERR_ARG, "sampler: top_k must be >= 0 (got %d)", p->top_k);
    if (!(p->top_p > 0 && p->top_p <= 1))
        return plm_fail(PLM_ERR_ARG, "sampler: top_p must be in (0, 1] (got %g)", (double)p->top_p);
    if (!(p->min_p >= 0 && p->min_p <= 1))
        return plm_fail(PLM_ERR_ARG, "sampler: min_p must be in [0, 1] (got %g)", (double)p->min_p);
    if (!(p->repeat_penalty > 0))
        return plm_fail(PLM_ERR_ARG, "sampler: repeat_penalty must be > 0 (got %g)",
                        (double)p->repeat_penalty);
    if (p->repeat_last_n < 0)
        return plm_fail(PLM_ERR_ARG, "sampler: repeat_last_n must be >= 0 (got %d)",
                        p->repeat_last_n);
    return PLM_OK;
}

/* ------------------------------------------------------------- lifecycle */

int plm_sampler_new(const struct plm_sampler_params *params, int n_vocab, plm_sampler **sampler)
{
    if (!sampler)
        return plm_fail(PLM_ERR_ARG, "sampler: NULL output pointer");
    *sampler = NULL;
    if (!params)
        return plm_fail(PLM_ERR_ARG, "sampler: NULL params");
    int status = validate_params(params, n_vocab);
    if (status != PLM_OK)
        return status;

    plm_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return plm_fail(PLM_ERR_NOMEM, "sampler: out of memory");
    s->params = *params;
    s->n_vocab = n_vocab;
    s->candidates = malloc((size_t)n_vocab * sizeof *s->candidates);
    if (params->repeat_last_n > 0)
        s->history = malloc((size_t)params->repeat_last_n * sizeof *s->history);
    if (!s->candidates || (params->repeat_last_n > 0 && !s->history)) {
        plm_sampler_free(s);
        return plm_fail(PLM_ERR_NOMEM, "sampler: out of memory for %d tokens of scratch and %d of history",
                        n_vocab, params->repeat_last_n);
    }
    plm_sampler_reset(s);
    *sampler = s;
    return PLM_OK;
}

void plm_sampler_free(plm_sampler *sampler)
{
    if (!sampler)
        return;
    free(sampler->candidates);
    free(sampler->history);
    free(sampler);
}

/* Forgets the history and restarts the random sequence from the seed, so a
 * reset sampler draws exactly what a new one would. */
void plm_sampler_reset(plm_sampler *sampler)
{
    if (!sampler)
        return;
    sampler->history_len = 0;
    sampler->history_next = 0;
    prng_seed(&sampler->rng, sampler->params.seed);
}

void plm_sampler_accept(plm_sampler *sampler, int32_t token)
{
    if (!sampler || token < 0 || token >= sampler->n_vocab)
        return;
    int capacity = sampler->params.repeat_last_n;
    if (capacity == 0)
        return;
    sampler->history[sampler->history_next] = token;
    sampler->history_next = (sampler->history_next + 1) % capacity;
    if (sampler->history_len < capacity)
        sampler->history_len++;
}

/* ------------------------------------------------------------ the chain */

/* llama.cpp's rule: dividing a negative logit would raise it, so those are
 * multiplied instead; either way penalty > 1 makes the token less likely.
 * A tiny penalty could overflow a finite logit, which would then count as
 * broken, so the result is kept finite. */
static float penalize(float logit, float penalty)
{
    float penalized = logit > 0 ? logit / penalty : logit * penalty;
    if (isfinite(logit) && !isfinite(penalized))
        return copysignf(FLT_MAX, penalized);
    return penalized;
}

/* Fills the candidate list with every finite (penalized) logit, in id order,
 * and returns how many there are. Each distinct recent token is penalized
 * once however often it occurs, as in llama.cpp: the penalty is computed from
 * the caller's logit, so repeating it is harmless. */
static int gather_candidates(plm_sampler *sampler, const float *logits)
{
    struct token_logit *candidates = sampler->candidates;
    for (int id = 0; id < sampler->n_vocab; id++)
        candidates[id] = (struct token_logit){ .logit = logits[id], .id = id };

    float penalty = sampler->params.repeat_penalty;
    if (penalty != 1.0f) {
        for (int i = 0; i < sampler->history_len; i++) {
            int32_t id = sampler->history[i];
            candidates[id].logit = penalize(logits[id], penalty);
        }
    }

    int n = 0;
    for (int id = 0; id < sampler->n_vocab; id++)
        if (isfinite(candidates[id].logit))
            candidates[n++] = candidates[id];
    return n;
}

/* The one total order used everywhere: higher logit first, ties to the lower
 * id, so results never depend on how a sort or heap happens to move things. */
static bool ranks_above(struct token_logit a, struct token_logit b)
{
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

static int compare_best_first(const void *pa, const void *pb)
{
    const struct token_logit *a = pa, *b = pb;
    return ranks_above(*a, *b) ? -1 : ranks_above(*b, *a) ? 1 : 0;
}

static int32_t best_token(const struct token_logit *candidates, int n)
{
    struct token_logit best = candidates[0];
    for (int i = 1; i < n; i++)
        if (ranks_above(candidates[i], best))
            best = candidates[i];
    return best.id;
}

static float max_logit(const struct token_logit *candidates, int n)
{
    float max = candidates[0].logit;
    for (int i = 1; i < n; i++)
        if (candidates[i].logit > max)
            max = candidates[i].logit;
    return max;
}

static void swap_tokens(struct token_logit *a, struct token_logit *b)
{
    struct token_logit t = *a;
    *a = *b;
    *b = t;
}

/* Restores the heap below position i of a heap whose root is its weakest
 * token (the one every newcomer has to beat). */
static void sift_down_weakest(struct token_logit *heap, int n, int i)
{
    for (;;) {
        int weakest = i, left = 2 * i + 1, right = 2 * i + 2;
        if (left < n && ranks_above(heap[weakest], heap[left]))
            weakest = left;
        if (right < n && ranks_above(heap[weakest], heap[right]))
            weakest = right;
        if (weakest == i)
            return;
        swap_tokens(&heap[i], &heap[weakest]);
        i = weakest;
    }
}

/* Moves the k best of n candidates (0 < k < n) to the front, best first. */
static int keep_top_k(struct token_logit *candidates, int n, int k)
{
    for (int i = k / 2 - 1; i >= 0; i--)
        sift_down_weakest(candidates, k, i);
    for (int i = k; i < n; i++) {
        if (ranks_above(candidates[i], candidates[0])) {
            candidates[0] = candidates[i];
            sift_down_weakest(candidates, k, 0);
        }
    }
    /* Heapsort: parking the weakest at the end each round leaves the best first. */
    for (int end = k - 1; end > 0; end--) {
        swap_tokens(&candidates[0], &candidates[end]);
        sift_down_weakest(candidates, end, 0);
    }
    return k;
}

/* Candidates sorted best first: keeps the shortest prefix whose probability
 * (softmax at temperature 1 over the candidates) reaches top_p; at least one. */
static int keep_top_p(const struct token_logit *candidates, int n, float top_p)
{
    double max = candidates[0].logit;
    double total = 0;
    for (int i = 0; i < n; i++)
        total += exp(candidates[i].logit - max);
    double wanted = top_p * total;
    double cumulative = 0;
    for (int i = 0; i < n; i++) {
        cumulative += exp(candidates[i].logit - max);
        if (cumulative >= wanted)
            return i + 1;
    }
    return n;
}

/* Drops tokens whose probability is below min_p times the largest one, which in
 * logits reads logit < max + log(min_p). Keeps the order; the best always stays. */
static int keep_min_p(struct token_logit *candidates, int n, float min_p)
{
    double threshold = max_logit(candidates, n) + log(min_p);
    int kept = 0;
    for (int i = 0; i < n; i++)
        if (candidates[i].logit >= threshold)
            candidates[kept++] = candidates[i];
    return kept;
}

/* Softmax at the given temperature and one draw. Weights are relative to the
 * largest logit, in double, so they never overflow and the largest is exactly 1. */
static int32_t draw(const struct token_logit *candidates, int n, float temperature,
                    struct prng *rng)
{
    double max = max_logit(candidates, n);
    double total = 0;
    for (int i = 0; i < n; i++)
        total += exp((candidates[i].logit - max) / temperature);
    double target = prng_uniform(rng) * total;
    /* The running sum repeats the total's additions in the same order, so it
     * ends exactly at total > target: the last token is reached only when it
     * carries weight. */
    double cumulative = 0;
    for (int i = 0; i < n - 1; i++) {
        cumulative += exp((candidates[i].logit - max) / temperature);
        if (target < cumulative)
            return candidates[i].id;
    }
    return candidates[n - 1].id;
}

/* Returns the token, or a negative plm_status when no logit is finite. */
int32_t plm_sampler_sample(plm_sampler *sampler, const float *logits)
{
    if (!sampler || !logits)
        return plm_fail(PLM_ERR_ARG, "sampler: NULL sampler or logits");
    int n = gather_candidates(sampler, logits);
    if (n == 0)
        return plm_fail(PLM_ERR_ARG, "sampler: none of the %d logits is finite", sampler->n_vocab);

    const struct plm_sampler_params *p = &sampler->params;
    struct token_logit *candidates = sampler->candidates;
    if (p->temperature <= 0)
        return best_token(candidates, n);

    bool sorted = false;
    if (p->top_k > 0 && p->top_k < n) {
        n = keep_top_k(candidates, n, p->top_k);
        sorted = true;
    }
    if (p->top_p < 1) {
        if (!sorted)
            qsort(candidates, (size_t)n, sizeof *candidates, compare_best_first);
        n = keep_top_p(candidates, n, p->top_p);
    }
    if (p->min_p > 0)
        n = keep_min_p(candidates, n, p->min_p);
    return draw(candidates, n, p->temperature, &sampler->rng);
}
