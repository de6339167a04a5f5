/*
 * plm_answer: the device answers first, the policy decides whether the
 * request leaves (docs/routing.md), and an upstream's answer or failure is
 * handled the same way for every caller of the library (the CLI's run and
 * chat; the server drives the same steps slot by slot).
 *
 *   1. route on what is known before generating: the prompt's size, the
 *      requested model;
 *   2. when an "uncertain" rule needs the device's first K tokens, generate
 *      them holding their text back, measure each token, and route again;
 *   3. the device's answer goes on (the held text first), or the request is
 *      escalated: consent, redaction, audit, send, restore;
 *   4. an upstream that fails before any of its text reached the caller is
 *      replaced by the device's answer, generated afresh from the prompt.
 */
#include "engine/session.h"
#include "routing/policy.h"
#include "routing/uncertainty.h"

#include "core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct answer {
    plm_session *session;
    plm_sampler *sampler;
    const struct plm_escalation_context *context;
    const struct plm_answer_request *request;
    plm_text_callback on_text;
    void *user;
    struct plm_answer_result *result;

    struct plm_route_request route;
    struct plm_route_decision decision;
    /* While an uncertain rule waits for the device's first tokens. */
    bool deciding;
    struct held_tokens tokens;
    char *held; /* the device's text so far, not yet passed on */
    size_t held_len, held_cap;
    bool text_passed; /* some answer text reached on_text */
    int rc;           /* an error met inside a callback */
};

static bool pass_text(struct answer *a, const char *text, size_t len)
{
    if (len == 0)
        return true;
    a->text_passed = true;
    return a->on_text ? a->on_text(a->user, text, len) : true;
}

static bool hold_text(struct answer *a, const char *text, size_t len)
{
    if (a->held_len + len > a->held_cap) {
        size_t cap = 2 * (a->held_len + len);
        char *grown = realloc(a->held, cap);
        if (!grown) {
            a->rc = plm_fail(PLM_ERR_NOMEM, "answer: out of memory");
            return false;
        }
        a->held = grown;
        a->held_cap = cap;
    }
    memcpy(a->held + a->held_len, text, len);
    a->held_len += len;
    return true;
}

static bool on_device_text(void *user, const char *text, size_t len)
{
    struct answer *a = user;
    return a->deciding ? hold_text(a, text, len) : pass_text(a, text, len);
}

static int route(struct answer *a)
{
    a->route.tokens = a->tokens.items;
    a->route.n_tokens = a->tokens.n;
    return plm_route(a->context->policy, &a->route, &a->decision);
}

/* The decision is in: the device keeps the answer (its held text goes out
 * and generation goes on), or it stops for an upstream. */
static bool settle(struct answer *a)
{
    if (a->decision.action == PLM_ROUTE_NEED_TOKENS)
        return true; /* a later uncertain rule wants more of them */
    a->deciding = false;
    if (a->decision.action == PLM_ROUTE_UPSTREAM)
        return false;
    return pass_text(a, a->held, a->held_len);
}

static bool on_device_token(void *user, int32_t token, const float *logits)
{
    struct answer *a = user;
    if (!a->deciding)
        return true;
    int n_vocab = a->session->model->hp.n_vocab;
    if ((a->rc = held_tokens_add(&a->tokens, logits, n_vocab, token)))
        return false;
    if (a->tokens.n < a->decision.first_tokens)
        return true;
    if ((a->rc = route(a)))
        return false;
    return settle(a);
}

/* Runs the device from the prompt (after what the session already holds). */
static int generate_on_device(struct answer *a, const struct plm_generate_params *params)
{
    const struct plm_answer_request *r = a->request;
    int rc = plm_generate(a->session, a->sampler, r->prompt + r->n_cached, r->n_prompt - r->n_cached, params,
                          on_device_text, a, &a->result->device);
    return a->rc ? a->rc : rc;
}

/* The device's first tokens decide: generate while holding their text back. */
static int device_first(struct answer *a)
{
    a->deciding = a->decision.action == PLM_ROUTE_NEED_TOKENS;
    struct plm_generate_params params = *a->request->generate;
    params.on_token = on_device_token;
    int rc = generate_on_device(a, &params);
    if (rc)
        return rc;
    if (a->deciding) { /* the answer ended before K tokens: judge what there is */
        a->route.answer_done = true;
        if ((rc = route(a)))
            return rc;
        settle(a);
    }
    return PLM_OK;
}

/* The device answers after all, from the prompt again (the cache keeps it). */
static int device_again(struct answer *a)
{
    const struct plm_answer_request *r = a->request;
    int held = plm_session_n_past(a->session); /* the prompt's start, then what the device generated */
    if (held > r->n_prompt - 1)
        held = r->n_prompt - 1;
    plm_session_truncate(a->session, held);
    plm_sampler_reset(a->sampler);
    for (int i = 0; i < held; i++)
        plm_sampler_accept(a->sampler, r->prompt[i]);
    struct plm_answer_request again = *r;
    again.n_cached = held;
    a->request = &again;
    a->deciding = false;
    int rc = generate_on_device(a, r->generate);
    a->request = r;
    return rc;
}

static bool device_can_answer(const struct answer *a)
{
    return a->request->n_prompt < plm_session_n_ctx(a->session);
}

/* Why the device answers instead of the chosen upstream, or NULL to send. */
static const char *consent_refusal(const struct answer *a, const plm_escalation *e)
{
    const struct plm_upstream *up = a->decision.upstream;
    const char *refused = plm_policy_refusal(a->context->policy, up);
    if (refused)
        return refused;
    if (up->consent == PLM_CONSENT_ALWAYS)
        return NULL;
    const struct plm_escalation_context *c = a->context;
    int n;
    const struct plm_chat_message *redacted = plm_escalation_messages(e, &n);
    if (!c->consent || !c->consent(c->consent_user, up, a->decision.reason, redacted, n))
        return "the user did not consent";
    return NULL;
}

static void note_upstream(struct answer *a, const plm_escalation *e, const struct plm_upstream_result *sent)
{
    struct plm_answer_result *res = a->result;
    res->audit_id = plm_escalation_audit_id(e);
    res->redactions = *plm_escalation_redactions(e);
    res->upstream_completion_tokens = sent->completion_tokens;
    res->bytes_sent = sent->bytes_sent;
    res->bytes_received = sent->bytes_received;
}

static void append_reason(struct plm_answer_result *res, const char *why)
{
    size_t used = strlen(res->reason);
    snprintf(res->reason + used, sizeof res->reason - used, "; kept on the device: %s", why);
}

static int escalate(struct answer *a, bool device_started)
{
    const struct plm_answer_request *r = a->request;
    const struct plm_upstream *up = a->decision.upstream;
    plm_escalation *e;
    const struct policy_rule *rule = &a->context->policy->rules[a->decision.rule];
    int rc = plm_escalation_new(a->context->policy, up, policy_trigger_name(rule->when), a->decision.reason,
                                r->messages, r->n_messages, a->context->redactor, &e);
    if (rc)
        return rc;
    const char *refused = consent_refusal(a, e);
    if (refused) {
        plm_escalation_free(e);
        append_reason(a->result, refused);
        if (!device_can_answer(a))
            return plm_fail(PLM_ERR_CONTEXT_FULL, "the prompt (%d tokens) does not fit the device's context (%d), "
                            "and upstream '%s' was not asked: %s", r->n_prompt, plm_session_n_ctx(a->session),
                            up->name, refused);
        return device_started ? device_again(a) : device_first(a);
    }
    struct plm_upstream_request options = {
        .max_tokens = r->generate && r->generate->n_predict > 0 ? r->generate->n_predict : 0,
        .temperature = r->temperature, .stream = r->stream};
    bool fallback = device_can_answer(a);
    struct plm_upstream_result sent;
    rc = plm_escalation_send(e, a->context->audit, &options, fallback ? PLM_AUDIT_FALLBACK : PLM_AUDIT_UPSTREAM_ERROR,
                             on_device_text, a, &sent);
    note_upstream(a, e, &sent);
    plm_upstream_result_free(&sent);
    plm_escalation_free(e);
    if (rc == PLM_OK) {
        a->result->upstream = up;
        return PLM_OK;
    }
    if (!fallback || a->text_passed) /* text that reached the user cannot be taken back */
        return rc;
    a->result->fallback = true;
    snprintf(a->result->error, sizeof a->result->error, "%s", plm_last_error());
    return device_again(a);
}

static int answer(struct answer *a)
{
    const struct plm_answer_request *r = a->request;
    a->route = (struct plm_route_request){
        .model = r->model, .n_prompt_tokens = r->n_prompt,
        .max_tokens = r->generate && r->generate->n_predict > 0 ? r->generate->n_predict : 0,
        .n_ctx = plm_session_n_ctx(a->session)};
    int rc = route(a);
    if (rc)
        return rc;
    bool device_started = false;
    if (a->decision.action != PLM_ROUTE_UPSTREAM) {
        if (!device_can_answer(a))
            return plm_fail(PLM_ERR_CONTEXT_FULL, "the prompt is %d tokens but the device's context holds %d, "
                            "and the policy sends it nowhere else (%s)", r->n_prompt, plm_session_n_ctx(a->session),
                            a->decision.reason);
        if ((rc = device_first(a)))
            return rc;
        device_started = true;
    }
    a->result->rule = a->decision.rule;
    snprintf(a->result->reason, sizeof a->result->reason, "%s", a->decision.reason);
    if (a->decision.action != PLM_ROUTE_UPSTREAM)
        return PLM_OK;
    return escalate(a, device_started);
}

int plm_answer(plm_session *session, plm_sampler *sampler, const struct plm_escalation_context *context,
               const struct plm_answer_request *request, plm_text_callback on_text, void *user,
               struct plm_answer_result *result)
{
    memset(result, 0, sizeof *result);
    result->rule = -1;
    result->upstream_completion_tokens = -1;
    if (!session || !sampler || !context || !context->policy || !request || !request->generate ||
        !request->prompt || request->n_prompt < 1 || request->n_cached < 0 || request->n_cached > request->n_prompt)
        return plm_fail(PLM_ERR_ARG, "answer: no session, sampler, policy, generation parameters or prompt");
    struct answer a = {.session = session, .sampler = sampler, .context = context, .request = request,
                       .on_text = on_text, .user = user, .result = result};
    int rc = answer(&a);
    held_tokens_free(&a.tokens);
    free(a.held);
    return rc;
}
