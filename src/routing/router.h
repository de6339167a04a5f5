/*
 * The router (plm_route in pocketlm.h): the policy's rules evaluated in order
 * for one request, the first that fires deciding, each decision with the rule
 * and a reason that carries the numbers it was made on. "escalation": "never"
 * is checked first and wins over every rule.
 *
 *   context_overflow  prompt tokens + max_tokens (1 when unset) > device context
 *   explicit          the request's "model" is an upstream's name (the rule's
 *                     own upstream's, when it names one)
 *   uncertain         over the first min(K, tokens generated) tokens of the
 *                     device's answer: the q-quantile of the chosen tokens'
 *                     probabilities is below the limit, or the q-quantile of
 *                     the entropies is above it (strictly, both)
 *   always            every request
 *
 * An uncertain rule reached before the device has K tokens (and while its
 * answer goes on) stops the evaluation with PLM_ROUTE_NEED_TOKENS; one whose
 * answer ended with no token at all does not fire.
 */
#ifndef PLM_ROUTING_ROUTER_H
#define PLM_ROUTING_ROUTER_H

#include "routing/policy.h"

#include <stddef.h>

/* Whether an uncertain rule fires on the device's first n >= 1 tokens (the
 * caller has cut them to the rule's K); writes the reason, with the figures
 * of the test that fired, or of every test when none did. */
bool route_uncertain(const struct policy_rule *rule, const struct plm_token_uncertainty *tokens, int n,
                     char *reason, size_t size);

#endif
