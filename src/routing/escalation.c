/*
 * One escalated request (plm_escalation in pocketlm.h): the conversation
 * redacted, every attempt written to the audit log before it is sent, and the
 * answer's placeholders restored before the caller sees a byte of it.
 *
 * The order of the steps is the point. The redacted messages exist before
 * anything else, so that what the user is asked to consent to is exactly
 * what goes out; the audit entry of an attempt is committed in the upstream
 * client's before_send hook, after the request's bytes are final and before
 * the connection is made, so a request the log could not record is never
 * sent; and the answer goes through a restorer, so the values the redactor
 * took out come back only here, on the device.
 */
#include "routing/policy.h"

#include "core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct plm_escalation {
    const plm_policy *policy;
    const struct plm_upstream *upstream;
    char *rule;
    char *reason;
    plm_redactor *redactor;     /* the conversation's, or owned_redactor */
    plm_redactor *owned_redactor;
    struct plm_chat_message *sent; /* the messages as they leave: redacted copies */
    int n_sent;
    struct plm_redact_stats redactions;

    /* While sending. */
    plm_audit *audit;
    int64_t audit_id;         /* the attempt being sent, 0 before the first */
    bool audit_open;          /* its completion entry is not yet written */
    int last_status;          /* the attempt's HTTP status, 0 without an answer */
    uint64_t last_sent, last_received;
    double attempt_started;
    plm_restorer *restorer;
    plm_text_callback on_text;
    void *user;
};

int plm_policy_redactor_new(const plm_policy *policy, plm_redactor **redactor)
{
    *redactor = NULL;
    if (!policy)
        return plm_fail(PLM_ERR_ARG, "redactor: no policy");
    const struct policy_redaction *r = &policy->redaction;
    struct plm_redact_config config = {r->types, r->terms, r->n_terms};
    return plm_redactor_new(&config, redactor);
}

static int redact_messages(plm_escalation *e, const struct plm_chat_message *messages, int n)
{
    e->sent = calloc((size_t)n, sizeof *e->sent);
    if (!e->sent)
        return plm_fail(PLM_ERR_NOMEM, "escalation: out of memory");
    for (int i = 0; i < n; i++) {
        const char *content = messages[i].content ? messages[i].content : "";
        char *out;
        size_t out_len;
        struct plm_redact_stats stats = {0};
        int rc = e->policy->redaction.enabled
                     ? plm_redact(e->redactor, content, strlen(content), &out, &out_len, &stats)
                     : ((out = strdup(content)) ? PLM_OK : plm_fail(PLM_ERR_NOMEM, "escalation: out of memory"));
        if (rc)
            return rc;
        e->sent[i].role = messages[i].role;
        e->sent[i].content = out;
        e->n_sent = i + 1;
        for (int t = 0; t < PLM_REDACT_N_TYPES; t++)
            e->redactions.counts[t] += stats.counts[t];
    }
    return PLM_OK;
}

int plm_escalation_new(const plm_policy *policy, const struct plm_upstream *upstream, const char *rule,
                       const char *reason, const struct plm_chat_message *messages, int n_messages,
                       plm_redactor *redactor, plm_escalation **escalation)
{
    *escalation = NULL;
    if (!policy || !upstream || !rule || n_messages < 1 || !messages)
        return plm_fail(PLM_ERR_ARG, "escalation: no policy, upstream, rule or messages");
    plm_escalation *e = calloc(1, sizeof *e);
    if (!e)
        return plm_fail(PLM_ERR_NOMEM, "escalation: out of memory");
    e->policy = policy;
    e->upstream = upstream;
    e->rule = strdup(rule);
    e->reason = reason ? strdup(reason) : NULL;
    int rc = !e->rule || (reason && !e->reason) ? plm_fail(PLM_ERR_NOMEM, "escalation: out of memory") : PLM_OK;
    if (!rc && !redactor)
        rc = plm_policy_redactor_new(policy, &e->owned_redactor);
    e->redactor = redactor ? redactor : e->owned_redactor;
    if (!rc)
        rc = redact_messages(e, messages, n_messages);
    if (rc) {
        plm_escalation_free(e);
        return rc;
    }
    *escalation = e;
    return PLM_OK;
}

const struct plm_chat_message *plm_escalation_messages(const plm_escalation *e, int *n_messages)
{
    *n_messages = e->n_sent;
    return e->sent;
}

const struct plm_redact_stats *plm_escalation_redactions(const plm_escalation *e) { return &e->redactions; }

const struct plm_upstream *plm_escalation_upstream(const plm_escalation *e) { return e->upstream; }

int64_t plm_escalation_audit_id(const plm_escalation *e) { return e->audit_id; }

/* ------------------------------------------------------------ the audit */

/* The completion entry of the attempt in flight, if it has none yet. */
static int close_attempt(plm_escalation *e, enum plm_audit_outcome outcome, const char *error)
{
    if (!e->audit_open)
        return PLM_OK;
    e->audit_open = false;
    struct plm_audit_result result = {
        .http_status = e->last_status,
        .error = error,
        .bytes_sent = e->last_sent,
        .bytes_received = e->last_received,
        .duration_s = plm_seconds_now() - e->attempt_started,
        .outcome = outcome,
    };
    return plm_audit_finish(e->audit, e->audit_id, &result);
}

/* The request entry: written and committed before the attempt goes out; a
 * failure cancels the attempt (the upstream client sends nothing). */
static int before_send(void *user, const struct plm_upstream *upstream, int attempt, const char *url,
                       const char *head, const char *body, size_t body_len)
{
    plm_escalation *e = user;
    if (close_attempt(e, PLM_AUDIT_UPSTREAM_ERROR, "retried"))
        return plm_fail(PLM_ERR_IO, "escalation: not sent to '%s': the audit log could not record attempt %d's "
                                    "end: %s", upstream->name, attempt - 1, plm_last_error());
    struct plm_audit_redaction list[PLM_REDACT_N_TYPES];
    int n = 0;
    for (int t = 0; t < PLM_REDACT_N_TYPES; t++)
        if (e->redactions.counts[t] > 0)
            list[n++] = (struct plm_audit_redaction){plm_redact_type_name(t), e->redactions.counts[t]};
    struct plm_audit_request request = {upstream->name, url, e->rule, e->reason, head, body, body_len, list, n};
    if (plm_audit_begin(e->audit, &request, &e->audit_id))
        return plm_fail(PLM_ERR_IO, "escalation: not sent to '%s': the audit log could not record it: %s",
                        upstream->name, plm_last_error());
    e->audit_open = true;
    e->last_status = 0;
    e->last_sent = e->last_received = 0;
    e->attempt_started = plm_seconds_now();
    return PLM_OK;
}

static void after_attempt(void *user, const struct plm_upstream *upstream, int attempt, int http_status,
                          uint64_t bytes_sent, uint64_t bytes_received)
{
    (void)upstream, (void)attempt;
    plm_escalation *e = user;
    e->last_status = http_status;
    e->last_sent = bytes_sent;
    e->last_received = bytes_received;
}

/* ------------------------------------------------------------ sending */

static bool restore_delta(void *user, const char *text, size_t len)
{
    plm_escalation *e = user;
    const char *out;
    size_t out_len;
    if (plm_restorer_feed(e->restorer, text, len, &out, &out_len))
        return false;
    return out_len == 0 || !e->on_text || e->on_text(e->user, out, out_len);
}

/* Replaces result->text, the upstream's words with placeholders, by the text
 * the user sees. */
static int restore_result(plm_escalation *e, struct plm_upstream_result *result)
{
    if (!result->text)
        return PLM_OK;
    char *restored;
    size_t restored_len;
    int rc = plm_restore(e->redactor, result->text, result->text_len, &restored, &restored_len);
    if (rc)
        return rc;
    free(result->text);
    result->text = restored;
    result->text_len = restored_len;
    return PLM_OK;
}

static enum plm_audit_outcome outcome_of(int rc, const struct plm_upstream_result *result,
                                         enum plm_audit_outcome on_failure)
{
    if (result->finish_reason == PLM_FINISH_CANCELLED)
        return PLM_AUDIT_CANCELLED;
    return rc ? on_failure : PLM_AUDIT_OK;
}

int plm_escalation_send(plm_escalation *e, plm_audit *audit, const struct plm_upstream_request *options,
                        enum plm_audit_outcome on_failure, plm_text_callback on_text, void *user,
                        struct plm_upstream_result *result)
{
    memset(result, 0, sizeof *result);
    result->prompt_tokens = result->completion_tokens = -1;
    if (!audit)
        return plm_fail(PLM_ERR_ARG, "escalation: no audit log: nothing leaves the device unrecorded");
    const char *why_not = plm_policy_refusal(e->policy, e->upstream);
    if (why_not)
        return plm_fail(PLM_ERR_ARG, "escalation: nothing is sent to '%s': %s", e->upstream->name, why_not);
    int rc = plm_restorer_new(e->redactor, &e->restorer);
    if (rc)
        return rc;
    e->audit = audit;
    e->on_text = on_text;
    e->user = user;
    struct plm_upstream_request request = *options;
    request.messages = e->sent;
    request.n_messages = e->n_sent;
    struct plm_upstream_observer observer = {before_send, after_attempt, e};
    rc = plm_upstream_chat(e->upstream, &request, restore_delta, e, &observer, result);
    char error[256] = "";
    if (rc)
        snprintf(error, sizeof error, "%s", plm_last_error());
    /* The end of a placeholder the stream stopped in the middle of. */
    const char *tail;
    size_t tail_len;
    if (plm_restorer_finish(e->restorer, &tail, &tail_len) == PLM_OK && tail_len > 0 && on_text)
        on_text(user, tail, tail_len);
    int audit_rc = close_attempt(e, outcome_of(rc, result, on_failure), rc ? error : NULL);
    int restore_rc = restore_result(e, result);
    plm_restorer_free(e->restorer);
    e->restorer = NULL;
    if (rc)
        return plm_fail(rc, "%s", error);
    if (audit_rc)
        return audit_rc;
    return restore_rc;
}

void plm_escalation_free(plm_escalation *e)
{
    if (!e)
        return;
    for (int i = 0; i < e->n_sent; i++)
        free((char *)e->sent[i].content);
    free(e->sent);
    plm_redactor_free(e->owned_redactor);
    free(e->rule);
    free(e->reason);
    free(e);
}
