/*
 * The escalation policy: which upstreams exist, the rules that decide when a
 * request leaves the device, and what is redacted first. Read from a JSON file
 * (docs/escalation.md documents every field); the public API (pocketlm.h) sees
 * the upstreams, the router reads the rest from here.
 */
#ifndef PLM_ROUTING_POLICY_H
#define PLM_ROUTING_POLICY_H

#include "pocketlm.h"

/* What makes a rule fire. */
enum policy_trigger {
    POLICY_CONTEXT_OVERFLOW = 0, /* the prompt does not fit the device model's context */
    POLICY_EXPLICIT,             /* the request names an upstream in "model" */
    POLICY_UNCERTAIN,            /* the device model is unsure of its first tokens */
    POLICY_ALWAYS,               /* every request */
};

/* One uncertainty test: the q-quantile of a per-token measure over the first
 * tokens of the device's answer, compared with a limit. Quantiles rather than
 * means, because a mean drifts with the answer's length. */
struct policy_quantile_test {
    bool enabled;
    double q;     /* 0..1 */
    double limit; /* "below" for probabilities, "above" for entropies */
};

struct policy_rule {
    enum policy_trigger when;
    int upstream; /* index in plm_policy.upstreams; -1 for an "explicit" rule naming none
                     (then any upstream the request names) */
    /* "uncertain" only: */
    int first_tokens;                           /* K: tokens of the device's answer examined */
    struct policy_quantile_test min_token_prob; /* fires when the quantile of the chosen
                                                   token's probability is below the limit */
    struct policy_quantile_test entropy;        /* fires when the quantile of the entropy
                                                   (nats) is above the limit */
};

/* Ready for plm_redact_config: types has bit (1u << PLM_REDACT_x) for every
 * detector listed and always the PLM_REDACT_TERM bit, so that it is never 0
 * (which plm_redact reads as "every detector"). */
struct policy_redaction {
    bool enabled;
    uint32_t types;
    const char **terms; /* user-listed terms ("terms" then the lines of "terms_file") */
    int n_terms;
};

struct plm_policy {
    bool never; /* "escalation": "never" */
    struct plm_upstream *upstreams;
    int n_upstreams;
    struct policy_rule *rules;
    int n_rules;
    struct policy_redaction redaction;
};

/* Parses a policy from JSON text. source names it in messages ("policy.json");
 * base_dir resolves a relative "terms_file" (NULL: the current directory). */
int policy_parse(const char *json, size_t len, const char *source, const char *base_dir, plm_policy **policy);

const char *policy_trigger_name(enum policy_trigger when);

#endif
