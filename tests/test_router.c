/*
 * The router and its calibration: quantiles and per-token uncertainty against
 * hand computations; the rules in order with their reasons (never wins, the
 * context overflow with its numbers, an explicit model name, uncertain
 * thresholds on both sides of the boundary, the device asked for its tokens
 * first); the threshold sweep on hand-made prompts, every figure computed by
 * hand, and on random ones against its definition.
 */
#include "routing/policy.h"
#include "routing/uncertainty.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* cmocka's assert_float_equal compares in float: too coarse for these sums. */
static void expect_near(double got, double want, double tolerance)
{
    if (!(fabs(got - want) <= tolerance))
        fail_msg("got %.17g, expected %.17g (within %g)", got, want, tolerance);
}

/* ------------------------------------------------------------ uncertainty */

static struct plm_token_uncertainty token(double prob, double entropy)
{
    return (struct plm_token_uncertainty){prob, entropy};
}

static void quantiles_by_hand(void **state)
{
    (void)state;
    /* Probabilities 0.5 0.1 0.4 0.2, sorted 0.1 0.2 0.4 0.5. q = 0.1: h = 0.3,
     * 0.1 + 0.3 (0.2 - 0.1) = 0.13; q = 0.5: h = 1.5, 0.2 + 0.5 (0.4 - 0.2) = 0.3;
     * q = 0.9: h = 2.7, 0.4 + 0.7 (0.5 - 0.4) = 0.47. Entropies 4 1 2 0.5. */
    struct plm_token_uncertainty t[] = {token(0.5, 4), token(0.1, 1), token(0.4, 2), token(0.2, 0.5)};
    expect_near(plm_uncertainty_quantile(t, 4, false, 0.1), 0.13, 1e-12);
    expect_near(plm_uncertainty_quantile(t, 4, false, 0.5), 0.3, 1e-12);
    expect_near(plm_uncertainty_quantile(t, 4, false, 0.9), 0.47, 1e-12);
    expect_near(plm_uncertainty_quantile(t, 4, false, 0.0), 0.1, 0);
    expect_near(plm_uncertainty_quantile(t, 4, false, 1.0), 0.5, 0);
    /* Entropies sorted 0.5 1 2 4; q = 0.9: 2 + 0.7 (4 - 2) = 3.4. */
    expect_near(plm_uncertainty_quantile(t, 4, true, 0.9), 3.4, 1e-12);
    expect_near(plm_uncertainty_quantile(t, 4, true, 0.25), 0.875, 1e-12);
    expect_near(plm_uncertainty_mean(t, 4, false), 0.3, 1e-12);
    expect_near(plm_uncertainty_mean(t, 4, true), 1.875, 1e-12);
    /* The caller's tokens are left in their order. */
    expect_near(t[0].prob, 0.5, 0);
    /* One token: every quantile is its value. */
    expect_near(plm_uncertainty_quantile(t + 1, 1, false, 0.1), 0.1, 0);
    expect_near(plm_uncertainty_quantile(t + 1, 1, true, 0.9), 1.0, 0);
    /* More tokens than the stack buffer holds: 0, 1/99, ..., 1 in reverse; p25 = 0.25. */
    struct plm_token_uncertainty many[100];
    for (int i = 0; i < 100; i++)
        many[i] = token((99 - i) / 99.0, i);
    expect_near(plm_uncertainty_quantile(many, 100, false, 0.25), 0.25, 1e-12);
    expect_near(plm_uncertainty_quantile(many, 100, true, 0.5), 49.5, 1e-12);
    /* No tokens: no number. */
    assert_true(isnan(plm_uncertainty_quantile(t, 0, false, 0.5)));
    assert_true(isnan(plm_uncertainty_mean(t, 0, true)));
}

static void one_hot_and_uniform(void **state)
{
    (void)state;
    struct plm_token_uncertainty u;
    /* One-hot: every other logit -inf. */
    float one_hot[5] = {-INFINITY, -INFINITY, 2.5f, -INFINITY, -INFINITY};
    assert_int_equal(plm_token_uncertainty(one_hot, 5, 2, &u), PLM_OK);
    expect_near(u.prob, 1.0, 0);
    expect_near(u.entropy, 0.0, 0);
    assert_int_equal(plm_token_uncertainty(one_hot, 5, 0, &u), PLM_OK);
    expect_near(u.prob, 0.0, 0);
    /* So far apart that exp() underflows: one-hot in double too. */
    float far[3] = {0.0f, 2000.0f, -1000.0f};
    assert_int_equal(plm_token_uncertainty(far, 3, 1, &u), PLM_OK);
    expect_near(u.prob, 1.0, 0);
    expect_near(u.entropy, 0.0, 0);
    /* Uniform over V: p = 1/V, entropy log V, whatever the common logit. */
    for (int v = 1; v <= 4096; v *= 4) {
        float logits[4096];
        for (int i = 0; i < v; i++)
            logits[i] = 37.25f;
        assert_int_equal(plm_token_uncertainty(logits, v, v - 1, &u), PLM_OK);
        expect_near(u.prob, 1.0 / v, 1e-12);
        expect_near(u.entropy, log((double)v), 1e-9);
    }
    /* Two tokens, logits 0 and log 3: p = 1/4 and 3/4, H = -(1/4 log 1/4 + 3/4 log 3/4). */
    float two[2] = {0.0f, (float)log(3.0)};
    assert_int_equal(plm_token_uncertainty(two, 2, 0, &u), PLM_OK);
    expect_near(u.prob, 0.25, 1e-7);
    expect_near(u.entropy, -(0.25 * log(0.25) + 0.75 * log(0.75)), 1e-7);
}

static void hostile_logits(void **state)
{
    (void)state;
    struct plm_token_uncertainty u;
    float logits[3] = {1.0f, 2.0f, 3.0f};
    assert_int_equal(plm_token_uncertainty(logits, 3, 3, &u), PLM_ERR_ARG);
    assert_non_null(strstr(plm_last_error(), "token 3 outside the vocabulary of 3"));
    assert_int_equal(plm_token_uncertainty(logits, 3, -1, &u), PLM_ERR_ARG);
    assert_int_equal(plm_token_uncertainty(logits, 0, 0, &u), PLM_ERR_ARG);
    assert_int_equal(plm_token_uncertainty(NULL, 3, 0, &u), PLM_ERR_ARG);
    float none[2] = {-INFINITY, -INFINITY};
    assert_int_equal(plm_token_uncertainty(none, 2, 0, &u), PLM_ERR_ARG);
    float inf[2] = {INFINITY, 0.0f};
    assert_int_equal(plm_token_uncertainty(inf, 2, 0, &u), PLM_ERR_ARG);
    float nan_logit[3] = {1.0f, NAN, 0.0f};
    assert_int_equal(plm_token_uncertainty(nan_logit, 3, 0, &u), PLM_ERR_ARG);
}

/* ------------------------------------------------------------------ rules */

static plm_policy *policy_from(const char *json)
{
    plm_policy *policy = NULL;
    if (policy_parse(json, strlen(json), "policy.json", NULL, &policy))
        fail_msg("policy refused: %s", plm_last_error());
    return policy;
}

#define UPSTREAMS                                                                                  \
    "\"upstreams\": [{\"name\": \"home\", \"kind\": \"openai\", \"model\": \"m\"},"                \
    " {\"name\": \"claude\", \"kind\": \"anthropic\", \"model\": \"c\"}]"

static const char ordered_rules[] =
    "{" UPSTREAMS ", \"rules\": ["
    " {\"when\": \"context_overflow\", \"upstream\": \"home\"},"
    " {\"when\": \"explicit\"},"
    " {\"when\": \"uncertain\", \"upstream\": \"claude\", \"first_tokens\": 4,"
    "  \"min_token_prob_quantile\": {\"q\": 0.1, \"below\": 0.17},"
    "  \"entropy_quantile\": {\"q\": 0.9, \"above\": 3.5}}"
    "]}";

/* A request that fits: 100 prompt tokens + 64 in a context of 512. */
static struct plm_route_request fitting_request(void)
{
    return (struct plm_route_request){.n_prompt_tokens = 100, .max_tokens = 64, .n_ctx = 512};
}

static void route_ok(const plm_policy *policy, const struct plm_route_request *r, struct plm_route_decision *d)
{
    if (plm_route(policy, r, d))
        fail_msg("route failed: %s", plm_last_error());
}

static void never_wins(void **state)
{
    (void)state;
    plm_policy *policy = policy_from("{\"escalation\": \"never\", " UPSTREAMS ", \"rules\": ["
                                     "{\"when\": \"explicit\"}, {\"when\": \"always\", \"upstream\": \"home\"}]}");
    struct plm_route_request r = fitting_request();
    r.model = "claude";
    r.n_prompt_tokens = 5000;
    struct plm_route_decision d;
    route_ok(policy, &r, &d);
    assert_int_equal(d.action, PLM_ROUTE_DEVICE);
    assert_int_equal(d.rule, -1);
    assert_null(d.upstream);
    assert_string_equal(d.reason, "never: the policy forbids escalation (\"escalation\": \"never\")");
    plm_policy_free(policy);

    /* Without "never", the same rules send it. */
    policy = policy_from("{" UPSTREAMS ", \"rules\": [{\"when\": \"always\", \"upstream\": \"home\"}]}");
    route_ok(policy, &r, &d);
    assert_int_equal(d.action, PLM_ROUTE_UPSTREAM);
    assert_int_equal(d.rule, 0);
    assert_string_equal(d.upstream->name, "home");
    assert_string_equal(d.reason, "always: rule 0 sends every request");
    plm_policy_free(policy);

    /* No rules: the device answers. */
    policy = policy_from("{" UPSTREAMS "}");
    route_ok(policy, &r, &d);
    assert_int_equal(d.action, PLM_ROUTE_DEVICE);
    assert_string_equal(d.reason, "no rule fired");
    plm_policy_free(policy);
}

static void context_overflow_with_numbers(void **state)
{
    (void)state;
    plm_policy *policy = policy_from(ordered_rules);
    struct plm_route_decision d;
    struct plm_route_request r = fitting_request();
    r.n_prompt_tokens = 449; /* 449 + 64 = 513 > 512 */
    r.model = "claude";      /* an earlier rule wins over the explicit one */
    route_ok(policy, &r, &d);
    assert_int_equal(d.action, PLM_ROUTE_UPSTREAM);
    assert_int_equal(d.rule, 0);
    assert_string_equal(d.upstream->name, "home");
    assert_string_equal(d.reason, "context_overflow: 449 prompt tokens + 64 answer tokens = 513 > device context 512");
    /* Exactly full fits: on to the explicit rule. */
    r.n_prompt_tokens = 448;
    route_ok(policy, &r, &d);
    assert_int_equal(d.rule, 1);
    /* Without a length limit one answer token must fit. */
    r.model = NULL;
    r.max_tokens = 0;
    r.n_prompt_tokens = 512;
    route_ok(policy, &r, &d);
    assert_int_equal(d.rule, 0);
    assert_string_equal(d.reason, "context_overflow: 512 prompt tokens + 1 answer tokens = 513 > device context 512");
    plm_policy_free(policy);
}

static void explicit_model_name(void **state)
{
    (void)state;
    plm_policy *policy = policy_from(ordered_rules);
    struct plm_route_decision d;
    struct plm_route_request r = fitting_request();
    r.model = "claude";
    route_ok(policy, &r, &d);
    assert_int_equal(d.action, PLM_ROUTE_UPSTREAM);
    assert_int_equal(d.rule, 1);
    assert_string_equal(d.upstream->name, "claude");
    assert_string_equal(d.reason, "explicit: the request's model \"claude\" names an upstream");
    /* A name that is no upstream (the device model's, a typo) does not fire. */
    r.model = "Claude";
    route_ok(policy, &r, &d);
    assert_int_not_equal(d.rule, 1);
    plm_policy_free(policy);

    /* A rule naming its upstream fires only for that one. */
    policy = policy_from("{" UPSTREAMS ", \"rules\": [{\"when\": \"explicit\", \"upstream\": \"home\"}]}");
    r.model = "claude";
    route_ok(policy, &r, &d);
    assert_int_equal(d.action, PLM_ROUTE_DEVICE);
    r.model = "home";
    route_ok(policy, &r, &d);
    assert_int_equal(d.action, PLM_ROUTE_UPSTREAM);
    assert_string_equal(d.upstream->name, "home");
    plm_policy_free(policy);
}

static void uncertain_thresholds(void **state)
{
    (void)state;
    plm_policy *policy = policy_from(ordered_rules);
    struct plm_route_decision d;
    struct plm_route_request r = fitting_request();
    /* Before the device starts: asked for its first 4 tokens. */
    route_ok(policy, &r, &d);
    assert_int_equal(d.action, PLM_ROUTE_NEED_TOKENS);
    assert_int_equal(d.rule, 2);
    assert_int_equal(d.first_tokens, 4);

    /* Probabilities 0.1 0.3 0.5 0.9 (then more tokens the rule does not look
     * at): p10 = 0.1 + 0.3 (0.3 - 0.1) = 0.16 < 0.17. Entropies 0.5 1 2 4:
     * p90 = 2 + 0.7 (4 - 2) = 3.4 <= 3.5. */
    struct plm_token_uncertainty t[6] = {token(0.9, 0.5), token(0.1, 4),    token(0.5, 1),
                                         token(0.3, 2),   token(0.01, 9.0), token(0.01, 9.0)};
    r.tokens = t;
    r.n_tokens = 6;
    route_ok(policy, &r, &d);
    assert_int_equal(d.action, PLM_ROUTE_UPSTREAM);
    assert_int_equal(d.rule, 2);
    assert_string_equal(d.upstream->name, "claude");
    assert_string_equal(d.reason, "uncertain: p10 of chosen-token probability 0.16 < 0.17 over the first 4 tokens");

    /* Just above the boundary: the device keeps it, and says why. */
    t[1].prob = 0.12; /* p10 = 0.12 + 0.3 (0.3 - 0.12) = 0.174 */
    route_ok(policy, &r, &d);
    assert_int_equal(d.action, PLM_ROUTE_DEVICE);
    assert_int_equal(d.rule, -1);
    assert_string_equal(d.reason, "no rule fired (rule 2: sure enough: p10 of chosen-token probability 0.174 >= "
                                  "0.17, p90 of entropy 3.4 <= 3.5 nats over the first 4 tokens)");

    /* Entropy over its limit: p90 = 2 + 0.7 (4.2 - 2) = 3.54 > 3.5. */
    t[1].entropy = 4.2;
    route_ok(policy, &r, &d);
    assert_int_equal(d.action, PLM_ROUTE_UPSTREAM);
    assert_string_equal(d.reason, "uncertain: p90 of entropy 3.54 > 3.5 nats over the first 4 tokens");

    /* Fewer than K tokens: asked again, unless the answer ended there. */
    t[1].entropy = 4.0; /* entropies 0.5 4 1: p90 = 1 + 0.8 (4 - 1) = 3.4 */
    r.n_tokens = 3;
    route_ok(policy, &r, &d);
    assert_int_equal(d.action, PLM_ROUTE_NEED_TOKENS);
    r.answer_done = true; /* 0.9 0.12 0.5: p10 = 0.12 + 0.2 (0.5 - 0.12) = 0.196 */
    route_ok(policy, &r, &d);
    assert_int_equal(d.action, PLM_ROUTE_DEVICE);
    assert_non_null(strstr(d.reason, "p10 of chosen-token probability 0.196 >= 0.17"));
    assert_non_null(strstr(d.reason, "over the first 3 tokens"));
    /* An empty answer gives nothing to judge: the rule does not fire. */
    r.n_tokens = 0;
    route_ok(policy, &r, &d);
    assert_int_equal(d.action, PLM_ROUTE_DEVICE);
    assert_string_equal(d.reason, "no rule fired (rule 2: the device's answer was empty)");
    plm_policy_free(policy);

    /* An uncertain rule that holds back lets a later one decide. */
    policy = policy_from("{" UPSTREAMS ", \"rules\": [{\"when\": \"uncertain\", \"upstream\": \"claude\","
                         " \"first_tokens\": 1, \"min_token_prob_quantile\": {\"q\": 0.5, \"below\": 0.5}},"
                         " {\"when\": \"always\", \"upstream\": \"home\"}]}");
    struct plm_token_uncertainty sure = token(0.5, 0.0); /* 0.5 is not below 0.5 */
    r.tokens = &sure;
    r.n_tokens = 1;
    r.answer_done = false;
    route_ok(policy, &r, &d);
    assert_int_equal(d.rule, 1);
    assert_string_equal(d.upstream->name, "home");
    plm_policy_free(policy);
}

static void bad_requests(void **state)
{
    (void)state;
    plm_policy *policy = policy_from(ordered_rules);
    struct plm_route_decision d;
    struct plm_route_request r = fitting_request();
    r.n_ctx = 0;
    assert_int_equal(plm_route(policy, &r, &d), PLM_ERR_ARG);
    r = fitting_request();
    r.n_tokens = 3; /* and no tokens */
    assert_int_equal(plm_route(policy, &r, &d), PLM_ERR_ARG);
    r.n_tokens = -1;
    assert_int_equal(plm_route(policy, &r, &d), PLM_ERR_ARG);
    assert_int_equal(plm_route(NULL, &r, &d), PLM_ERR_ARG);
    plm_policy_free(policy);
}

/* ------------------------------------------------------------------ sweep */

/* (statistic, quality of the device's answer, of the upstream's): gains 2, 0, -1, 0.5, 0. */
static const struct plm_cascade_item hand_items[] = {
    {0.1, -3.0, -1.0}, {0.2, -2.0, -2.0}, {0.2, -1.0, -2.0}, {0.5, -2.0, -1.5}, {0.9, -1.0, -1.0},
};

static void check_point(const struct plm_cascade_point *p, double threshold, int k, double quality, double random,
                        double oracle)
{
    expect_near(p->threshold, threshold, 1e-12);
    assert_int_equal(p->n_escalated, k);
    expect_near(p->rate, k / 5.0, 1e-12);
    expect_near(p->quality, quality, 1e-12);
    expect_near(p->random, random, 1e-12);
    expect_near(p->oracle, oracle, 1e-12);
}

static void sweep_by_hand(void **state)
{
    (void)state;
    /* Means: device -9/5 = -1.8, upstream -7.5/5 = -1.5, gain 0.3 a prompt.
     * Below: 0.1 escalates none; 0.15 (between 0.1 and 0.2) the first (gain 2);
     * 0.35 three (2 + 0 - 1); 0.7 four (+0.5); just above 0.9 all. Random: -1.8 + rate * 0.3. Oracle:
     * the gains sorted 2, 0.5, 0, 0, -1. */
    struct plm_cascade_curve c;
    assert_int_equal(plm_cascade_sweep(hand_items, 5, true, &c), PLM_OK);
    assert_int_equal(c.n_points, 5);
    expect_near(c.quality_device, -1.8, 1e-12);
    expect_near(c.quality_upstream, -1.5, 1e-12);
    check_point(&c.points[0], 0.1, 0, -1.8, -1.8, -1.8);
    check_point(&c.points[1], 0.15, 1, -1.4, -1.74, -1.4);
    check_point(&c.points[2], 0.35, 3, -1.6, -1.62, -1.3);
    check_point(&c.points[3], 0.7, 4, -1.5, -1.56, -1.3);
    check_point(&c.points[4], nextafter(0.9, 1.0), 5, -1.5, -1.5, -1.5);
    assert_true(c.points[4].threshold > 0.9);
    /* Quality over random: 0, 0.34, 0.02, 0.06, 0 at rates 0, 0.2, 0.6, 0.8, 1:
     * trapezoids 0.034 + 0.072 + 0.008 + 0.006 = 0.12. */
    expect_near(c.area_over_random, 0.12, 1e-12);
    /* The recommended point: the most escalations within the target. */
    assert_int_equal(plm_cascade_at_rate(&c, 0.2)->n_escalated, 1);
    assert_int_equal(plm_cascade_at_rate(&c, 0.5)->n_escalated, 1);
    assert_int_equal(plm_cascade_at_rate(&c, 0.6)->n_escalated, 3);
    assert_int_equal(plm_cascade_at_rate(&c, 0.0)->n_escalated, 0);
    assert_int_equal(plm_cascade_at_rate(&c, 1.0)->n_escalated, 5);
    plm_cascade_curve_free(&c);

    /* Above (an entropy): 0.9 escalates none, 0.7 the last (gain 0), 0.35 two
     * (+0.5), 0.15 four (+0 - 1), just below 0.1 all. */
    assert_int_equal(plm_cascade_sweep(hand_items, 5, false, &c), PLM_OK);
    assert_int_equal(c.n_points, 5);
    check_point(&c.points[0], 0.9, 0, -1.8, -1.8, -1.8);
    check_point(&c.points[1], 0.7, 1, -1.8, -1.74, -1.4);
    check_point(&c.points[2], 0.35, 2, -1.7, -1.68, -1.3);
    check_point(&c.points[3], 0.15, 4, -1.9, -1.56, -1.3);
    assert_true(c.points[4].threshold < 0.1 && c.points[4].n_escalated == 5);
    assert_true(c.area_over_random < 0); /* a signal pointing the wrong way */
    plm_cascade_curve_free(&c);
}

/* Random prompts with many ties: each point's count is the number of prompts
 * whose statistic crosses its threshold, rates rise, the oracle bounds the
 * signal, and the recommendation never exceeds its target. */
static void sweep_matches_definition(void **state)
{
    (void)state;
    struct test_rng rng = {12345};
    enum { N = 200 };
    struct plm_cascade_item items[N];
    for (int round = 0; round < 20; round++) {
        int n = 1 + (int)(rng_next(&rng) % N);
        for (int i = 0; i < n; i++)
            items[i] = (struct plm_cascade_item){(double)(rng_next(&rng) % 17) / 16.0, -3.0 * rng_uniform(&rng),
                                                 -3.0 * rng_uniform(&rng)};
        for (int below = 0; below <= 1; below++) {
            struct plm_cascade_curve c;
            assert_int_equal(plm_cascade_sweep(items, n, below, &c), PLM_OK);
            expect_near(c.points[0].rate, 0.0, 0);
            expect_near(c.points[c.n_points - 1].rate, 1.0, 0);
            for (int p = 0; p < c.n_points; p++) {
                const struct plm_cascade_point *pt = &c.points[p];
                int crossing = 0;
                double quality = 0.0;
                for (int i = 0; i < n; i++) {
                    bool escalated = below ? items[i].statistic < pt->threshold : items[i].statistic > pt->threshold;
                    crossing += escalated;
                    quality += escalated ? items[i].quality_upstream : items[i].quality_device;
                }
                assert_int_equal(pt->n_escalated, crossing);
                expect_near(pt->quality, quality / n, 1e-9);
                assert_true(pt->oracle >= pt->quality - 1e-9);
                if (p > 0)
                    assert_true(pt->rate > c.points[p - 1].rate);
            }
            for (double target = 0.0; target <= 1.0; target += 0.05)
                assert_true(plm_cascade_at_rate(&c, target)->rate <= target + 1e-9);
            plm_cascade_curve_free(&c);
        }
    }
}

static void sweep_refuses_bad_values(void **state)
{
    (void)state;
    struct plm_cascade_curve c;
    assert_int_equal(plm_cascade_sweep(hand_items, 0, true, &c), PLM_ERR_ARG);
    struct plm_cascade_item bad[2] = {{0.5, -1.0, -1.0}, {NAN, -1.0, -1.0}};
    assert_int_equal(plm_cascade_sweep(bad, 2, true, &c), PLM_ERR_ARG);
    assert_non_null(strstr(plm_last_error(), "prompt 1"));
    bad[1] = (struct plm_cascade_item){0.5, -INFINITY, -1.0};
    assert_int_equal(plm_cascade_sweep(bad, 2, true, &c), PLM_ERR_ARG);
    assert_null(c.points);
    plm_cascade_curve_free(&c); /* harmless after a failure */
    /* One prompt: two points, none and all escalated. */
    assert_int_equal(plm_cascade_sweep(hand_items, 1, true, &c), PLM_OK);
    assert_int_equal(c.n_points, 2);
    expect_near(c.points[1].quality, -1.0, 0);
    plm_cascade_curve_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(quantiles_by_hand),
        cmocka_unit_test(one_hot_and_uniform),
        cmocka_unit_test(hostile_logits),
        cmocka_unit_test(never_wins),
        cmocka_unit_test(context_overflow_with_numbers),
        cmocka_unit_test(explicit_model_name),
        cmocka_unit_test(uncertain_thresholds),
        cmocka_unit_test(bad_requests),
        cmocka_unit_test(sweep_by_hand),
        cmocka_unit_test(sweep_matches_definition),
        cmocka_unit_test(sweep_refuses_bad_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
