/* pocketlm run: generate text from a prompt; only the generated text goes to stdout.
 * With --policy the prompt is answered through plm_answer: on the device, or
 * by an upstream where the policy sends it (docs/escalation.md). */
#include "commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct run_options {
    struct model_options model;
    struct generation_options gen;
    const char *prompt;
    const char *prompt_file;
    bool echo;
    struct escalation_options escalation;
    const char *upstream; /* --upstream: the model the request names, for "explicit" rules */
    bool yes;             /* consent given in advance to "ask" upstreams */
};

/* What --policy opened. */
struct run_escalation {
    plm_policy *policy; /* NULL without --policy */
    plm_audit *audit;
};

static const char *stop_reason_name(enum plm_stop_reason reason)
{
    switch (reason) {
    case PLM_STOP_LENGTH: return "length";
    case PLM_STOP_EOG: return "end of text";
    case PLM_STOP_STRING: return "stop string";
    case PLM_STOP_CONTEXT: return "context full";
    case PLM_STOP_CALLBACK: return "interrupted";
    }
    return "?";
}

/* The prompt text: -p, or the contents of -f, or "" (generate from BOS). */
static char *read_prompt(const struct run_options *o, size_t *len)
{
    if (!o->prompt_file) {
        const char *p = o->prompt ? o->prompt : "";
        *len = strlen(p);
        return strdup(p);
    }
    return read_text_file(o->prompt_file, len);
}

static void print_summary(const struct plm_generate_result *result)
{
    fprintf(stderr, "pocketlm: prompt %d tokens in %.2f s (%.1f tok/s), generated %d tokens in %.2f s (%.1f tok/s), stop: %s\n",
            result->n_prompt, result->prompt_seconds,
            result->prompt_seconds > 0 ? result->n_prompt / result->prompt_seconds : 0.0, result->n_generated,
            result->generate_seconds, result->generate_seconds > 0 ? result->n_generated / result->generate_seconds : 0.0,
            stop_reason_name(result->stop_reason));
}

static bool consent_given(void *user, const struct plm_upstream *upstream, const char *reason,
                          const struct plm_chat_message *redacted, int n_messages)
{
    (void)user, (void)upstream, (void)reason, (void)redacted, (void)n_messages;
    return true;
}

/* The prompt as one user turn for an upstream, the same prompt's tokens for the device. */
static int answer_with_policy(const struct run_options *o, const struct run_escalation *e, plm_session *session,
                              plm_sampler *sampler, const char *text, const int32_t *tokens, int n_tokens,
                              const struct plm_generate_params *params, struct plm_answer_result *result)
{
    struct plm_chat_message message = {"user", text};
    struct plm_escalation_context context = {.policy = e->policy, .audit = e->audit,
                                             .consent = o->yes ? consent_given : consent_on_terminal,
                                             .consent_user = (void *)"run"};
    struct plm_answer_request request = {.messages = &message, .n_messages = 1, .prompt = tokens,
                                         .n_prompt = n_tokens, .model = o->upstream, .generate = params,
                                         .temperature = o->gen.sampling.temperature, .stream = true};
    return plm_answer(session, sampler, &context, &request, print_text, NULL, result);
}

static int generate(const struct run_options *o, const struct run_escalation *e, plm_model *model,
                    plm_session *session, plm_sampler *sampler)
{
    size_t len;
    char *text = read_prompt(o, &len);
    if (!text) {
        fprintf(stderr, "pocketlm run: cannot read prompt file '%s'\n", o->prompt_file);
        return EXIT_FAILURE_RUNTIME;
    }
    int32_t *tokens = NULL;
    int n_tokens = tokenize_text("run", model, text, len, true, false, &tokens);
    if (n_tokens < 0) {
        free(text);
        return EXIT_FAILURE_RUNTIME;
    }
    if (!e->policy && n_tokens >= plm_session_n_ctx(session)) { /* a policy may send it upstream */
        fprintf(stderr, "pocketlm run: the prompt is %d tokens but the context holds %d (raise -c)\n",
                n_tokens, plm_session_n_ctx(session));
        free(text);
        free(tokens);
        return EXIT_FAILURE_RUNTIME;
    }
    if (o->echo)
        print_text(NULL, text, len);
    struct plm_generate_params params = {
        .n_predict = o->gen.n_predict, .stop = o->gen.stop.items, .n_stop = o->gen.stop.count,
        .ignore_eog = o->gen.ignore_eos};
    struct plm_answer_result answer;
    int rc = e->policy ? answer_with_policy(o, e, session, sampler, text, tokens, n_tokens, &params, &answer)
                       : plm_generate(session, sampler, tokens, n_tokens, &params, print_text, NULL, &answer.device);
    free(text);
    free(tokens);
    printf("\n");
    fflush(stdout); /* the text ends before the summary on stderr starts */
    if (rc)
        return report_error("run", plm_last_error());
    if (!e->policy || !answer.upstream)
        print_summary(&answer.device);
    if (e->policy)
        print_route_note("run", &answer);
    return EXIT_OK;
}

/* --policy's companions make sense only with it; --upstream must name one of its upstreams. */
static int open_run_escalation(const struct run_options *o, struct run_escalation *e)
{
    if (!o->escalation.policy_path && (o->upstream || o->yes)) {
        fprintf(stderr, "pocketlm run: --upstream and --yes need --policy\n");
        return EXIT_USAGE;
    }
    int rc = open_escalation("run", &o->escalation, &e->policy, &e->audit);
    if (rc == EXIT_OK && o->upstream && !plm_policy_find_upstream(e->policy, o->upstream))
        rc = report_error("run", plm_last_error());
    return rc;
}

static int run_model(const struct run_options *o, const struct run_escalation *e)
{
    plm_model *model;
    plm_session *session;
    int rc = open_model("run", &o->model, &model, &session);
    if (rc)
        return rc;
    struct plm_model_info info;
    plm_model_get_info(model, &info);
    plm_sampler *sampler = NULL;
    rc = check_sampling("run", &o->gen, &sampler, info.n_vocab);
    if (rc == EXIT_OK)
        rc = generate(o, e, model, session, sampler);
    plm_sampler_free(sampler);
    plm_session_free(session);
    plm_model_free(model);
    return rc;
}

int cmd_run(int argc, char **argv)
{
    struct run_options o = {0};
    generation_options_default(&o.gen);
    struct option table[32];
    int n = model_option_entries(table, &o.model);
    n += generation_option_entries(table + n, &o.gen);
    table[n++] = (struct option){"-p", "--prompt", OPT_STRING, &o.prompt, "TEXT", "prompt (default: none, start from BOS)"};
    table[n++] = (struct option){"-f", "--file", OPT_STRING, &o.prompt_file, "FILE", "read the prompt from FILE"};
    table[n++] = (struct option){NULL, "--echo", OPT_FLAG, &o.echo, NULL, "print the prompt before the generated text"};
    n += escalation_option_entries(table + n, &o.escalation);
    table[n++] = (struct option){NULL, "--upstream", OPT_STRING, &o.upstream, "NAME",
                                 "ask for this upstream of the policy (the request's model, for \"explicit\" rules)"};
    table[n++] = (struct option){NULL, "--yes", OPT_FLAG, &o.yes, NULL,
                                 "consent in advance to upstreams whose consent is \"ask\""};
    struct command_spec spec = {"run", "-m FILE [-p TEXT] [options]",
                                "Generates text from a prompt. Only the generated text is printed on stdout.",
                                table, n, NULL, NULL};
    int rc = parse_options(&spec, argc, argv);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (o.prompt && o.prompt_file) {
        fprintf(stderr, "pocketlm run: give -p or -f, not both\n");
        return EXIT_USAGE;
    }
    struct run_escalation e = {0};
    if ((rc = open_run_escalation(&o, &e)) == EXIT_OK)
        rc = run_model(&o, &e);
    plm_audit_close(e.audit);
    plm_policy_free(e.policy);
    return rc;
}
