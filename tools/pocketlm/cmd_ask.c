/* pocketlm ask: sends one prompt to an upstream named in a policy file and
 * streams its answer (see docs/escalation.md). */
#include "commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int show_request(void *user, const struct plm_upstream *upstream, int attempt, const char *url,
                        const char *head, const char *body, size_t body_len)
{
    (void)user;
    fprintf(stderr, "pocketlm ask: attempt %d to '%s': %s\n%s%.*s\n", attempt, upstream->name, url, head,
            (int)body_len, body);
    return PLM_OK;
}

static void print_summary(const struct plm_upstream *upstream, const struct plm_upstream_result *r)
{
    fprintf(stderr, "pocketlm ask: upstream '%s' (%s): HTTP %d, %d attempt%s, sent %llu bytes, received %llu bytes",
            upstream->name, plm_upstream_kind_name(upstream->kind), r->http_status, r->attempts,
            r->attempts == 1 ? "" : "s", (unsigned long long)r->bytes_sent, (unsigned long long)r->bytes_received);
    if (r->finish_detail[0])
        fprintf(stderr, ", finish %s (%s)", plm_finish_reason_name(r->finish_reason), r->finish_detail);
    if (r->prompt_tokens >= 0 || r->completion_tokens >= 0)
        fprintf(stderr, ", tokens %d prompt + %d completion", r->prompt_tokens, r->completion_tokens);
    fprintf(stderr, "\n");
}

static int ask(const plm_policy *policy, const char *upstream_name, struct plm_upstream_request *request,
               bool show)
{
    const struct plm_upstream *upstream = upstream_name ? plm_policy_find_upstream(policy, upstream_name)
                                                        : plm_policy_upstream(policy, 0);
    if (!upstream)
        return report_error("ask", plm_last_error());
    /* The command line is the user's consent for "ask"; "never" and a policy
     * that forbids escalation still hold. */
    const char *why_not = plm_policy_refusal(policy, upstream);
    if (why_not) {
        fprintf(stderr, "pocketlm ask: upstream '%s' is not asked: %s\n", upstream->name, why_not);
        return EXIT_FAILURE_RUNTIME;
    }
    struct plm_upstream_observer observer = {show ? show_request : NULL, NULL, NULL};
    struct plm_upstream_result result;
    int rc = plm_upstream_chat(upstream, request, print_text, NULL, &observer, &result);
    if (result.text_len > 0 || rc == PLM_OK)
        printf("\n");
    fflush(stdout);
    if (rc)
        report_error("ask", plm_last_error());
    print_summary(upstream, &result);
    plm_upstream_result_free(&result);
    return rc ? EXIT_FAILURE_RUNTIME : EXIT_OK;
}

int cmd_ask(int argc, char **argv)
{
    const char *policy_path = NULL, *upstream_name = NULL, *prompt = NULL, *prompt_file = NULL, *system = NULL;
    int max_tokens = 0;
    float temperature = -1.0f;
    bool no_stream = false, show = false;
    struct option table[] = {
        {NULL, "--policy", OPT_STRING, &policy_path, "FILE", "policy file naming the upstreams (required)"},
        {NULL, "--upstream", OPT_STRING, &upstream_name, "NAME", "which upstream (default: the policy's first)"},
        {"-f", "--file", OPT_STRING, &prompt_file, "FILE", "read the prompt from FILE instead"},
        {NULL, "--system", OPT_STRING, &system, "TEXT", "system prompt"},
        {"-n", "--n-predict", OPT_INT, &max_tokens, "N", "max_tokens (default: the policy's, else the upstream's)"},
        {NULL, "--temp", OPT_FLOAT, &temperature, "T", "temperature (default: the upstream's)"},
        {NULL, "--no-stream", OPT_FLAG, &no_stream, NULL, "ask for the whole answer at once"},
        {NULL, "--show-request", OPT_FLAG, &show, NULL, "print each request on stderr as sent (key as [KEY])"},
    };
    struct command_spec spec = {"ask", "--policy FILE [--upstream NAME] [options] PROMPT",
                                "Sends PROMPT to an upstream model named in the policy file and streams its answer\n"
                                "to stdout; the HTTP status, attempts and bytes go to stderr. The key is read from\n"
                                "the environment variable the policy names.",
                                table, (int)(sizeof table / sizeof table[0]), &prompt, NULL};
    int rc = parse_options(&spec, argc, argv);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (!policy_path || (!prompt == !prompt_file)) {
        fprintf(stderr, "pocketlm ask: need --policy FILE and a PROMPT or -f FILE (see pocketlm ask --help)\n");
        return EXIT_USAGE;
    }
    if (max_tokens < 0 || (temperature < 0 && temperature != -1.0f)) {
        fprintf(stderr, "pocketlm ask: -n and --temp must not be negative\n");
        return EXIT_USAGE;
    }
    char *file_text = NULL;
    size_t file_len;
    if (prompt_file && !(prompt = file_text = read_text_file(prompt_file, &file_len))) {
        fprintf(stderr, "pocketlm ask: cannot read '%s'\n", prompt_file);
        return EXIT_FAILURE_RUNTIME;
    }
    plm_policy *policy;
    if (plm_policy_load(policy_path, &policy)) {
        free(file_text);
        return report_error("ask", plm_last_error());
    }
    struct plm_chat_message messages[2] = {{"system", system}, {"user", prompt}};
    struct plm_upstream_request request = {system ? messages : messages + 1, system ? 2 : 1, max_tokens,
                                           temperature, !no_stream};
    rc = plm_policy_upstream_count(policy) == 0 ? report_error("ask", "the policy names no upstream")
                                                : ask(policy, upstream_name, &request, show);
    plm_policy_free(policy);
    free(file_text);
    return rc;
}
