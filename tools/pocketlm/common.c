#include "commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void generation_options_default(struct generation_options *g)
{
    memset(g, 0, sizeof *g);
    plm_sampler_params_default(&g->sampling);
    g->n_predict = -1;
}

int report_error(const char *command, const char *what)
{
    fprintf(stderr, "pocketlm %s: %s\n", command, what);
    return EXIT_FAILURE_RUNTIME;
}

int open_model(const char *command, const struct model_options *opts, plm_model **model,
               plm_session **session)
{
    *model = NULL;
    *session = NULL;
    if (!opts->model_path) {
        fprintf(stderr, "pocketlm %s: no model given (-m FILE)\n", command);
        return EXIT_USAGE;
    }
    if (plm_model_load(opts->model_path, model))
        return report_error(command, plm_last_error());
    struct plm_model_info info;
    plm_model_get_info(*model, &info);
    struct plm_session_params params = {.n_ctx = opts->n_ctx, .n_threads = opts->n_threads};
    if (params.n_ctx <= 0)
        params.n_ctx = info.n_ctx_train < 4096 ? info.n_ctx_train : 4096;
    if (plm_session_new(*model, &params, session)) {
        report_error(command, plm_last_error());
        plm_model_free(*model);
        *model = NULL;
        return EXIT_FAILURE_RUNTIME;
    }
    return EXIT_OK;
}

bool print_text(void *user, const char *text, size_t len)
{
    (void)user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true;
}

int model_option_entries(struct option *t, struct model_options *m)
{
    int n = 0;
    t[n++] = (struct option){"-m", "--model", OPT_STRING, &m->model_path, "FILE", "GGUF model file"};
    t[n++] = (struct option){"-c", "--ctx-size", OPT_INT, &m->n_ctx, "N",
                             "context size in tokens (default: the model's, at most 4096)"};
    t[n++] = (struct option){"-t", "--threads", OPT_INT, &m->n_threads, "N", "threads (default: all cores)"};
    return n;
}

int generation_option_entries(struct option *t, struct generation_options *g)
{
    struct plm_sampler_params *s = &g->sampling;
    int n = 0;
    t[n++] = (struct option){"-n", "--n-predict", OPT_INT, &g->n_predict, "N",
                             "tokens to generate (default -1: until end of text or full context)"};
    t[n++] = (struct option){NULL, "--temp", OPT_FLOAT, &s->temperature, "T", "temperature, 0 = greedy (default 0.8)"};
    t[n++] = (struct option){NULL, "--top-k", OPT_INT, &s->top_k, "K", "keep the K most likely tokens, 0 = off (default 40)"};
    t[n++] = (struct option){NULL, "--top-p", OPT_FLOAT, &s->top_p, "P", "nucleus sampling, 1 = off (default 0.95)"};
    t[n++] = (struct option){NULL, "--min-p", OPT_FLOAT, &s->min_p, "P",
                             "drop tokens below P times the top probability (default 0.05)"};
    t[n++] = (struct option){NULL, "--repeat-penalty", OPT_FLOAT, &s->repeat_penalty, "R",
                             "penalize repeated tokens, 1 = off (default 1.0)"};
    t[n++] = (struct option){NULL, "--repeat-last-n", OPT_INT, &s->repeat_last_n, "N",
                             "tokens the penalty looks back over (default 64)"};
    t[n++] = (struct option){"-s", "--seed", OPT_U64, &s->seed, "S", "random seed (default: from the clock)"};
    t[n++] = (struct option){NULL, "--stop", OPT_LIST, &g->stop, "TEXT", "stop when TEXT appears (repeatable)"};
    t[n++] = (struct option){NULL, "--chat-template", OPT_STRING, &g->chat_template, "NAME",
                             "chatml, qwen2, qwen3, smollm3, llama3, llama2 or gemma (default: the model's)"};
    return n;
}

int check_sampling(const char *command, const struct generation_options *g, plm_sampler **sampler, int n_vocab)
{
    if (plm_sampler_new(&g->sampling, n_vocab, sampler)) {
        fprintf(stderr, "pocketlm %s: %s\n", command, plm_last_error());
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

char *read_text_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        char *grown = realloc(buf, 2 * cap + 1);
        if (!grown)
            free(buf);
        buf = grown;
        cap *= 2;
    }
    bool failed = ferror(f);
    fclose(f);
    if (!buf || failed) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}
