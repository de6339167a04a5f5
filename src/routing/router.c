/* The router: see router.h for the rules and their exact conditions. */
#include "routing/router.h"

#include "core/error.h"

#include <stdio.h>
#include <string.h>

static void decide(struct plm_route_decision *d, enum plm_route_action action, int rule,
                   const struct plm_upstream *upstream)
{
    d->action = action;
    d->rule = rule;
    d->upstream = upstream;
}

/* "p10" for q = 0.1, "p2.5" for 0.025. */
static void quantile_name(double q, char *name, size_t size)
{
    snprintf(name, size, "p%g", q * 100.0);
}

bool route_uncertain(const struct policy_rule *rule, const struct plm_token_uncertainty *tokens, int n,
                     char *reason, size_t size)
{
    char prob_text[96] = "", entropy_text[96] = "";
    char name[16];
    bool prob_fires = false, entropy_fires = false;
    if (rule->min_token_prob.enabled) {
        double value = plm_uncertainty_quantile(tokens, n, false, rule->min_token_prob.q);
        prob_fires = value < rule->min_token_prob.limit;
        quantile_name(rule->min_token_prob.q, name, sizeof name);
        snprintf(prob_text, sizeof prob_text, "%s of chosen-token probability %.3g %s %.3g", name, value,
                 prob_fires ? "<" : ">=", rule->min_token_prob.limit);
    }
    if (rule->entropy.enabled) {
        double value = plm_uncertainty_quantile(tokens, n, true, rule->entropy.q);
        entropy_fires = value > rule->entropy.limit;
        quantile_name(rule->entropy.q, name, sizeof name);
        snprintf(entropy_text, sizeof entropy_text, "%s of entropy %.3g %s %.3g nats", name, value,
                 entropy_fires ? ">" : "<=", rule->entropy.limit);
    }
    const char *tokens_word = n == 1 ? "token" : "tokens";
    if (prob_fires || entropy_fires)
        snprintf(reason, size, "uncertain: %s over the first %d %s", prob_fires ? prob_text : entropy_text, n,
                 tokens_word);
    else
        snprintf(reason, size, "sure enough: %s%s%s over the first %d %s", prob_text,
                 prob_text[0] && entropy_text[0] ? ", " : "", entropy_text, n, tokens_word);
    return prob_fires || entropy_fires;
}

/* The upstream the request's "model" names, if the rule lets it: any of the
 * policy's for a rule without an upstream, else only the rule's. */
static const struct plm_upstream *explicit_target(const plm_policy *policy, const struct policy_rule *rule,
                                                   const char *model)
{
    if (!model)
        return NULL;
    for (int i = 0; i < policy->n_upstreams; i++)
        if (strcmp(policy->upstreams[i].name, model) == 0 && (rule->upstream < 0 || rule->upstream == i))
            return &policy->upstreams[i];
    return NULL;
}

/* "rule N: why it did not fire", cut to the buffer: it only explains the
 * final "no rule fired" reason, which has room for a short one. */
static void note_check(char *last_check, size_t size, int rule, const char *why)
{
    int n = snprintf(last_check, size, "rule %d: ", rule);
    if (n > 0 && (size_t)n < size)
        snprintf(last_check + n, size - (size_t)n, "%.*s", (int)(size - (size_t)n - 1), why);
}

/* Evaluates rule i; true when it decided (fired, or needs the device's tokens). */
static bool evaluate_rule(const plm_policy *policy, int i, const struct plm_route_request *r,
                          struct plm_route_decision *d, char *last_check, size_t size)
{
    const struct policy_rule *rule = &policy->rules[i];
    const struct plm_upstream *target = rule->upstream >= 0 ? &policy->upstreams[rule->upstream] : NULL;
    switch (rule->when) {
    case POLICY_CONTEXT_OVERFLOW: {
        long answer = r->max_tokens > 0 ? r->max_tokens : 1;
        long needed = (long)r->n_prompt_tokens + answer;
        if (needed <= r->n_ctx)
            return false;
        snprintf(d->reason, sizeof d->reason,
                 "context_overflow: %d prompt tokens + %ld answer tokens = %ld > device context %d",
                 r->n_prompt_tokens, answer, needed, r->n_ctx);
        decide(d, PLM_ROUTE_UPSTREAM, i, target);
        return true;
    }
    case POLICY_EXPLICIT:
        target = explicit_target(policy, rule, r->model);
        if (!target)
            return false;
        snprintf(d->reason, sizeof d->reason, "explicit: the request's model \"%s\" names an upstream", r->model);
        decide(d, PLM_ROUTE_UPSTREAM, i, target);
        return true;
    case POLICY_UNCERTAIN: {
        int k = rule->first_tokens;
        if (r->n_tokens < k && !r->answer_done) {
            snprintf(d->reason, sizeof d->reason, "uncertain: rule %d needs the device's first %d tokens (has %d)",
                     i, k, r->n_tokens);
            decide(d, PLM_ROUTE_NEED_TOKENS, i, NULL);
            d->first_tokens = k;
            return true;
        }
        int n = r->n_tokens < k ? r->n_tokens : k;
        if (n == 0) {
            snprintf(last_check, size, "rule %d: the device's answer was empty", i);
            return false;
        }
        if (!route_uncertain(rule, r->tokens, n, d->reason, sizeof d->reason)) {
            note_check(last_check, size, i, d->reason);
            return false;
        }
        decide(d, PLM_ROUTE_UPSTREAM, i, target);
        return true;
    }
    case POLICY_ALWAYS:
        snprintf(d->reason, sizeof d->reason, "always: rule %d sends every request", i);
        decide(d, PLM_ROUTE_UPSTREAM, i, target);
        return true;
    }
    return false;
}

int plm_route(const plm_policy *policy, const struct plm_route_request *request,
              struct plm_route_decision *decision)
{
    if (!policy || !request || !decision)
        return plm_fail(PLM_ERR_ARG, "route: no policy, request or decision");
    if (request->n_prompt_tokens < 0 || request->n_ctx < 1 || request->n_tokens < 0 ||
        (request->n_tokens > 0 && !request->tokens))
        return plm_fail(PLM_ERR_ARG, "route: bad request (%d prompt tokens, context %d, %d answer tokens)",
                        request->n_prompt_tokens, request->n_ctx, request->n_tokens);
    memset(decision, 0, sizeof *decision);
    decide(decision, PLM_ROUTE_DEVICE, -1, NULL);
    if (policy->never) {
        snprintf(decision->reason, sizeof decision->reason,
                 "never: the policy forbids escalation (\"escalation\": \"never\")");
        return PLM_OK;
    }
    /* What the last uncertain rule that held back measured, for the reason
     * of a request the device keeps. */
    char last_check[200] = "";
    for (int i = 0; i < policy->n_rules; i++)
        if (evaluate_rule(policy, i, request, decision, last_check, sizeof last_check))
            return PLM_OK;
    decide(decision, PLM_ROUTE_DEVICE, -1, NULL);
    snprintf(decision->reason, sizeof decision->reason, "no rule fired%s%s%s", last_check[0] ? " (" : "",
             last_check, last_check[0] ? ")" : "");
    return PLM_OK;
}
