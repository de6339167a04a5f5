/*
 * What run and chat share when they answer with a policy (--policy, through
 * plm_answer): asking the user before anything goes to an upstream whose
 * consent is "ask", and the line that says where an answer came from.
 */
#include "commands.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Exactly what would leave, to whom and why, then the question. */
static void show_request(const char *command, const struct plm_upstream *upstream, const char *reason,
                         const struct plm_chat_message *redacted, int n_messages)
{
    fprintf(stderr, "pocketlm %s: upstream '%s' (%s, model %s at %s) would receive this conversation\n"
                    "  why: %s\n",
            command, upstream->name, plm_upstream_kind_name(upstream->kind), upstream->model, upstream->base_url,
            reason);
    for (int i = 0; i < n_messages; i++)
        fprintf(stderr, "--- %s ---\n%s\n", redacted[i].role, redacted[i].content);
    fprintf(stderr, "--- end ---\nsend it? [y/N] ");
    fflush(stderr);
}

/* The answer is read from the controlling terminal, not stdin: chat's stdin
 * may be the conversation itself, and a prompt piped into run is not a yes. */
bool consent_on_terminal(void *command, const struct plm_upstream *upstream, const char *reason,
                         const struct plm_chat_message *redacted, int n_messages)
{
    FILE *tty = fopen("/dev/tty", "r");
    if (!tty) {
        fprintf(stderr, "pocketlm %s: upstream '%s' needs consent and there is no terminal to ask: not sent\n",
                (const char *)command, upstream->name);
        return false;
    }
    show_request(command, upstream, reason, redacted, n_messages);
    char answer[16] = "";
    if (fgets(answer, sizeof answer, tty))
        answer[strcspn(answer, "\r\n")] = '\0';
    fclose(tty);
    /* The terminal echoed the answer; stderr elsewhere (a log) gets it too. */
    if (!isatty(STDERR_FILENO))
        fprintf(stderr, "%s\n", answer);
    return strcasecmp(answer, "y") == 0 || strcasecmp(answer, "yes") == 0;
}

/* "EMAIL=1 TERM=2", or "nothing". */
static void format_redactions(const struct plm_redact_stats *stats, char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (int t = 0; t < PLM_REDACT_N_TYPES && used < size; t++)
        if (stats->counts[t] > 0) {
            int n = snprintf(out + used, size - used, "%s%s=%d", used ? " " : "", plm_redact_type_name(t),
                             stats->counts[t]);
            used += n > 0 ? (size_t)n : 0;
        }
    if (used == 0)
        snprintf(out, size, "nothing");
}

void print_route_note(const char *command, const struct plm_answer_result *r)
{
    if (r->upstream) {
        char redacted[256];
        format_redactions(&r->redactions, redacted, sizeof redacted);
        fprintf(stderr, "pocketlm %s: answered by %s (%s, model %s): %s; sent %" PRIu64 " bytes, received %" PRIu64
                        " bytes, redacted %s, audit #%" PRId64 "\n",
                command, r->upstream->name, plm_upstream_kind_name(r->upstream->kind), r->upstream->model,
                r->reason, r->bytes_sent, r->bytes_received, redacted, r->audit_id);
    } else if (r->fallback)
        fprintf(stderr, "pocketlm %s: answered on the device after the upstream failed: %s (%s; audit #%" PRId64 ")\n",
                command, r->error, r->reason, r->audit_id);
    else
        fprintf(stderr, "pocketlm %s: answered on the device (%s)\n", command, r->reason);
}
