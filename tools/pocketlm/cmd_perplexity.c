/* pocketlm perplexity: how well a model predicts a text (see plm_perplexity). */
#include "commands.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

static void print_progress(void *user, const struct plm_perplexity_result *so_far)
{
    (void)user;
    fprintf(stderr, "[%d]%.4f,", so_far->n_chunks, so_far->ppl);
    fflush(stderr);
}

static void print_json(const char *model, const char *text, int n_tokens, int n_ctx,
                       const struct plm_perplexity_result *r)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", model);
    cJSON_AddStringToObject(root, "text", text);
    cJSON_AddNumberToObject(root, "n_tokens", n_tokens);
    cJSON_AddNumberToObject(root, "n_ctx", n_ctx);
    cJSON_AddNumberToObject(root, "n_chunks", r->n_chunks);
    cJSON_AddNumberToObject(root, "n_scored", r->n_scored);
    cJSON_AddNumberToObject(root, "nll_mean", r->nll_mean);
    cJSON_AddNumberToObject(root, "nll_stderr", r->nll_stderr);
    cJSON_AddNumberToObject(root, "ppl", r->ppl);
    char *json = cJSON_Print(root);
    printf("%s\n", json);
    free(json);
    cJSON_Delete(root);
}

static int measure(plm_model *model, plm_session *session, const char *text_path, int n_ctx, bool json,
                   const char *model_path)
{
    size_t len;
    char *text = read_text_file(text_path, &len);
    if (!text) {
        fprintf(stderr, "pocketlm perplexity: cannot read '%s'\n", text_path);
        return EXIT_FAILURE_RUNTIME;
    }
    int32_t *tokens;
    int n_tokens = tokenize_text("perplexity", model, text, len, true, false, &tokens);
    free(text);
    if (n_tokens < 0)
        return EXIT_FAILURE_RUNTIME;
    fprintf(stderr, "pocketlm perplexity: %d tokens, %d chunks of %d\n", n_tokens, n_tokens / n_ctx, n_ctx);
    struct plm_perplexity_result result;
    int rc = plm_perplexity(session, tokens, n_tokens, n_ctx, print_progress, NULL, &result);
    fprintf(stderr, "\n");
    free(tokens);
    if (rc)
        return report_error("perplexity", plm_last_error());
    if (json)
        print_json(model_path, text_path, n_tokens, n_ctx, &result);
    fprintf(stderr, "pocketlm perplexity: %d tokens scored, PPL %.4f +/- %.4f\n", result.n_scored, result.ppl,
            result.ppl * result.nll_stderr);
    printf("PPL = %.4f\n", result.ppl);
    return EXIT_OK;
}

int cmd_perplexity(int argc, char **argv)
{
    struct model_options m = {0};
    const char *text_path = NULL;
    bool json = false;
    struct option table[8];
    int n = model_option_entries(table, &m);
    table[n++] = (struct option){"-f", "--file", OPT_STRING, &text_path, "TEXT", "text file to score (required)"};
    table[n++] = (struct option){NULL, "--json", OPT_FLAG, &json, NULL, "also print the details as JSON"};
    struct command_spec spec = {"perplexity", "-m FILE -f TEXT [-c CTX] [--json]",
                                "Tokenizes the text as one stream, cuts it into chunks of CTX tokens (default 512)\n"
                                "each starting with BOS, and scores the second half of each chunk, as llama.cpp does.\n"
                                "The last line on stdout is 'PPL = <value>'.",
                                table, n, NULL, NULL};
    int rc = parse_options(&spec, argc, argv);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (!text_path) {
        fprintf(stderr, "pocketlm perplexity: no text file given (-f TEXT)\n");
        return EXIT_USAGE;
    }
    if (m.n_ctx == 0)
        m.n_ctx = 512;
    plm_model *model;
    plm_session *session;
    if ((rc = open_model("perplexity", &m, &model, &session)))
        return rc;
    rc = measure(model, session, text_path, m.n_ctx, json, m.model_path);
    plm_session_free(session);
    plm_model_free(model);
    return rc;
}
