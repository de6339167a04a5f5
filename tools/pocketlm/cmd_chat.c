/*
 * pocketlm chat: a multi-turn conversation, typed at a terminal or piped in
 * one user turn per line.
 *
 * Every turn renders the whole conversation with the chat template and
 * tokenizes it; the tokens that match what the KV cache already holds are
 * kept, so only the new part is decoded. When the conversation outgrows the
 * context, the oldest turns (never the system prompt) are dropped.
 *
 * With --policy every turn goes through plm_answer, which answers on the
 * device or sends the conversation (redacted, with one redactor for the whole
 * conversation so that placeholders stay the same across turns) where the
 * policy says. A conversation that outgrows the context and that the policy
 * sends upstream as it is goes whole, without dropping turns.
 */
#include "commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_MESSAGES 4096

struct conversation {
    struct plm_chat_message messages[MAX_MESSAGES];
    int n;
    int first_droppable; /* 1 when there is a system prompt, else 0 */
};

struct chat_state {
    plm_model *model;
    plm_session *session;
    plm_sampler *sampler;
    const struct generation_options *gen;
    struct conversation conv;
    int32_t *cached;     /* the tokens the session's cache holds, in order */
    int n_cached;
    char *reply;         /* the assistant's answer, as it streams */
    size_t reply_len, reply_cap;
    struct plm_escalation_context escalation; /* .policy NULL without --policy */
};

static bool add_message(struct conversation *c, const char *role, const char *content, size_t len)
{
    if (c->n == MAX_MESSAGES)
        return false;
    char *copy = strndup(content, len);
    if (!copy)
        return false;
    c->messages[c->n++] = (struct plm_chat_message){role, copy};
    return true;
}

static void drop_message(struct conversation *c, int index)
{
    free((char *)c->messages[index].content);
    memmove(&c->messages[index], &c->messages[index + 1], (size_t)(c->n - index - 1) * sizeof c->messages[0]);
    c->n--;
}

/* The conversation as tokens, ending with the header of the assistant's turn;
 * -1 after printing the error. */
static int render_tokens(struct chat_state *st, int32_t **tokens)
{
    char *text;
    if (plm_chat_render(st->model, st->gen->chat_template, st->conv.messages, st->conv.n, true, &text)) {
        report_error("chat", plm_last_error());
        return -1;
    }
    int n = tokenize_text("chat", st->model, text, strlen(text), false, true, tokens);
    free(text);
    if (n < 0)
        return n;
    /* Templates that print BOS themselves already tokenized it. */
    int32_t bos = plm_token_bos(st->model);
    if (plm_add_bos(st->model) && bos >= 0 && (n == 0 || (*tokens)[0] != bos)) {
        int32_t *grown = realloc(*tokens, ((size_t)n + 1) * sizeof **tokens);
        if (!grown) {
            free(*tokens);
            report_error("chat", "out of memory");
            return -1;
        }
        memmove(grown + 1, grown, (size_t)n * sizeof *grown);
        grown[0] = bos;
        *tokens = grown;
        n++;
    }
    return n;
}

/* Whether a conversation of n tokens, with room for a reply, fits the context. */
static bool fits(const struct chat_state *st, int n)
{
    int n_ctx = plm_session_n_ctx(st->session);
    int reserve = st->gen->n_predict > 0 && st->gen->n_predict < n_ctx / 2 ? st->gen->n_predict : n_ctx / 4;
    return n + reserve <= n_ctx;
}

/* Whether plm_answer would send a prompt of n tokens upstream before the
 * device starts (a context_overflow rule, or an always rule): then it need
 * not fit the device. Asked as plm_answer asks, so both agree. */
static bool policy_takes(const struct chat_state *st, int n)
{
    if (!st->escalation.policy)
        return false;
    struct plm_route_request request = {.n_prompt_tokens = n, .n_ctx = plm_session_n_ctx(st->session),
                                        .max_tokens = st->gen->n_predict > 0 ? st->gen->n_predict : 0};
    struct plm_route_decision decision;
    return plm_route(st->escalation.policy, &request, &decision) == PLM_OK &&
           decision.action == PLM_ROUTE_UPSTREAM;
}

/* Renders the conversation, dropping the oldest turns until it fits with room
 * for a reply, unless whole_upstream and the policy takes it as it is.
 * Returns the token count, or -1 when the newest message alone is too long
 * (it is then removed, and the user told). */
static int fit_conversation(struct chat_state *st, bool whole_upstream, int32_t **tokens)
{
    int n_ctx = plm_session_n_ctx(st->session);
    for (;;) {
        int n = render_tokens(st, tokens);
        if (n < 0) { /* already reported */
            drop_message(&st->conv, st->conv.n - 1);
            return -1;
        }
        if (fits(st, n) || (whole_upstream && policy_takes(st, n)))
            return n;
        free(*tokens);
        if (st->conv.n - st->conv.first_droppable <= 1) {
            fprintf(stderr, "pocketlm chat: that message is %d tokens; with room for a reply the context "
                            "(%d, set with -c) cannot hold it. It was not sent.\n", n, n_ctx);
            drop_message(&st->conv, st->conv.n - 1);
            return -1;
        }
        drop_message(&st->conv, st->conv.first_droppable);
    }
}

static bool collect_reply(void *user, const char *text, size_t len)
{
    struct chat_state *st = user;
    if (st->reply_len + len + 1 > st->reply_cap) {
        size_t cap = 2 * (st->reply_len + len + 1);
        char *grown = realloc(st->reply, cap);
        if (!grown)
            return false;
        st->reply = grown;
        st->reply_cap = cap;
    }
    memcpy(st->reply + st->reply_len, text, len);
    st->reply_len += len;
    return print_text(NULL, text, len);
}

static int common_prefix(const int32_t *a, int na, const int32_t *b, int nb)
{
    int n = 0;
    while (n < na && n < nb && a[n] == b[n])
        n++;
    return n;
}

/* Keeps what the cache already holds of the tokens and returns how many; at
 * least one token must be decoded to have fresh logits. */
static int reuse_cache(struct chat_state *st, const int32_t *tokens, int n)
{
    int keep = common_prefix(st->cached, st->n_cached, tokens, n);
    if (keep == n)
        keep--;
    plm_session_truncate(st->session, keep);
    plm_sampler_reset(st->sampler);
    return keep;
}

/* The tokens (taken over) as far as the cache now holds them: all of them
 * after the device answered, the reused part when an upstream did. */
static void remember_cache(struct chat_state *st, int32_t *tokens, int n)
{
    free(st->cached);
    st->cached = tokens;
    int held = plm_session_n_past(st->session);
    st->n_cached = n < held ? n : held;
}

/* Answers the rendered conversation (tokens, taken over): on the device, or
 * through the policy; the answer joins the history. */
static int answer_turn(struct chat_state *st, int32_t *tokens, int n, bool with_policy)
{
    int keep = reuse_cache(st, tokens, n);
    struct plm_generate_params params = {
        .n_predict = st->gen->n_predict, .stop = st->gen->stop.items, .n_stop = st->gen->stop.count,
        .ignore_eog = st->gen->ignore_eos};
    struct plm_answer_request request = {.messages = st->conv.messages, .n_messages = st->conv.n, .prompt = tokens,
                                         .n_prompt = n, .n_cached = keep, .generate = &params,
                                         .temperature = st->gen->sampling.temperature, .stream = true};
    struct plm_answer_result result;
    st->reply_len = 0;
    int rc = with_policy ? plm_answer(st->session, st->sampler, &st->escalation, &request, collect_reply, st, &result)
                         : plm_generate(st->session, st->sampler, tokens + keep, n - keep, &params, collect_reply, st,
                                        &result.device);
    /* A policy's turn that printed nothing and failed may be answered again:
     * no empty line for it. */
    if (!with_policy || rc == PLM_OK || st->reply_len > 0) {
        printf("\n");
        fflush(stdout);
    }
    remember_cache(st, tokens, n);
    if (rc)
        return rc;
    if (with_policy)
        print_route_note("chat", &result);
    add_message(&st->conv, "assistant", st->reply ? st->reply : "", st->reply_len);
    return PLM_OK;
}

static int answer(struct chat_state *st)
{
    bool with_policy = st->escalation.policy != NULL;
    int32_t *tokens = NULL;
    int n = fit_conversation(st, with_policy, &tokens);
    if (n < 0)
        return PLM_OK;
    int rc = answer_turn(st, tokens, n, with_policy);
    if (rc && with_policy && !fits(st, n) && st->reply_len == 0) {
        /* Sent whole, and the upstream refused or failed: the device answers
         * what of the conversation fits, as it would without a policy. */
        fprintf(stderr, "pocketlm chat: %s; the device answers without the oldest turns\n", plm_last_error());
        if ((n = fit_conversation(st, false, &tokens)) < 0)
            return PLM_OK;
        rc = answer_turn(st, tokens, n, false);
    }
    return rc;
}

static void chat_loop(struct chat_state *st)
{
    bool interactive = isatty(STDIN_FILENO);
    char *line = NULL;
    size_t cap = 0;
    for (;;) {
        if (interactive) {
            printf("> ");
            fflush(stdout);
        }
        ssize_t len = getline(&line, &cap, stdin);
        if (len < 0)
            break;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue;
        if (!add_message(&st->conv, "user", line, (size_t)len)) {
            report_error("chat", "the conversation is too long");
            break;
        }
        if (answer(st)) {
            report_error("chat", plm_last_error());
            break;
        }
    }
    free(line);
}

/* Whether the chat template can render at all, checked before the first turn. */
static bool template_usable(const struct chat_state *st)
{
    struct plm_chat_message probe = {"user", "hello"};
    char *text;
    if (plm_chat_render(st->model, st->gen->chat_template, &probe, 1, true, &text))
        return false;
    free(text);
    return true;
}

static int chat(struct chat_state *st, const struct model_options *m, const char *system)
{
    int rc = open_model("chat", m, &st->model, &st->session);
    if (rc)
        return rc;
    struct plm_model_info info;
    plm_model_get_info(st->model, &info);
    rc = check_sampling("chat", st->gen, &st->sampler, info.n_vocab);
    if (rc == EXIT_OK && !template_usable(st))
        rc = report_error("chat", plm_last_error());
    if (rc == EXIT_OK && system) {
        add_message(&st->conv, "system", system, strlen(system));
        st->conv.first_droppable = 1;
    }
    if (rc == EXIT_OK)
        chat_loop(st);
    for (int i = 0; i < st->conv.n; i++)
        free((char *)st->conv.messages[i].content);
    free(st->cached);
    free(st->reply);
    plm_sampler_free(st->sampler);
    plm_session_free(st->session);
    plm_model_free(st->model);
    return rc;
}

int cmd_chat(int argc, char **argv)
{
    struct model_options m = {0};
    struct generation_options gen;
    generation_options_default(&gen);
    const char *system = NULL;
    struct escalation_options escalation = {0};
    struct option table[32];
    int n = model_option_entries(table, &m);
    n += generation_option_entries(table + n, &gen);
    table[n++] = (struct option){NULL, "--system", OPT_STRING, &system, "TEXT", "system prompt"};
    n += escalation_option_entries(table + n, &escalation);
    struct command_spec spec = {"chat", "-m FILE [--system TEXT] [options]",
                                "Chats with a model. Type a message and press enter; each line read from a pipe\n"
                                "is one user turn. Answers stream to stdout; the history is kept within the context.",
                                table, n, NULL, NULL};
    int rc = parse_options(&spec, argc, argv);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    struct chat_state st = {.gen = &gen, .escalation = {.consent = consent_on_terminal, .consent_user = (void *)"chat"}};
    plm_policy *policy;
    if ((rc = open_escalation("chat", &escalation, &policy, &st.escalation.audit)))
        return rc;
    st.escalation.policy = policy;
    if (policy && plm_policy_redactor_new(policy, &st.escalation.redactor))
        rc = report_error("chat", plm_last_error());
    if (rc == EXIT_OK)
        rc = chat(&st, &m, system);
    plm_redactor_free(st.escalation.redactor);
    plm_audit_close(st.escalation.audit);
    plm_policy_free(policy);
    return rc;
}
