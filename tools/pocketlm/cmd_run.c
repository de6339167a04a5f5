/* pocketlm run: generate text from a prompt; only the generated text goes to stdout. */
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

static int generate(const struct run_options *o, plm_model *model, plm_session *session, plm_sampler *sampler)
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
    if (n_tokens >= plm_session_n_ctx(session)) {
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
    struct plm_generate_result result;
    int rc = plm_generate(session, sampler, tokens, n_tokens, &params, print_text, NULL, &result);
    free(text);
    free(tokens);
    printf("\n");
    fflush(stdout); /* the text ends before the summary on stderr starts */
    if (rc)
        return report_error("run", plm_last_error());
    fprintf(stderr, "pocketlm: prompt %d tokens in %.2f s (%.1f tok/s), generated %d tokens in %.2f s (%.1f tok/s), stop: %s\n",
            result.n_prompt, result.prompt_seconds,
            result.prompt_seconds > 0 ? result.n_prompt / result.prompt_seconds : 0.0, result.n_generated,
            result.generate_seconds, result.generate_seconds > 0 ? result.n_generated / result.generate_seconds : 0.0,
            stop_reason_name(result.stop_reason));
    return EXIT_OK;
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
    plm_model *model;
    plm_session *session;
    if ((rc = open_model("run", &o.model, &model, &session)))
        return rc;
    struct plm_model_info info;
    plm_model_get_info(model, &info);
    plm_sampler *sampler = NULL;
    rc = check_sampling("run", &o.gen, &sampler, info.n_vocab);
    if (rc == EXIT_OK)
        rc = generate(&o, model, session, sampler);
    plm_sampler_free(sampler);
    plm_session_free(session);
    plm_model_free(model);
    return rc;
}
