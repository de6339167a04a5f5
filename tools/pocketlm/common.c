#include "commands.h"

#include <errno.h>
#include <stdint.h>
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

bool parse_kv_type(const char *command, const char *name, enum plm_kv_type *kv_type)
{
    if (!name || strcmp(name, "f32") == 0)
        *kv_type = PLM_KV_F32;
    else if (strcmp(name, "f16") == 0)
        *kv_type = PLM_KV_F16;
    else if (strcmp(name, "q8_0") == 0)
        *kv_type = PLM_KV_Q8_0;
    else {
        fprintf(stderr, "pocketlm %s: --kv-type must be f32, f16 or q8_0, not '%s'\n", command, name);
        return false;
    }
    return true;
}

bool parse_bytes(const char *text, uint64_t *bytes)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || text[0] == '-')
        return false;
    uint64_t scale = 1;
    switch (*end) {
    case 'K': case 'k': scale = 1ull << 10; end++; break;
    case 'M': case 'm': scale = 1ull << 20; end++; break;
    case 'G': case 'g': scale = 1ull << 30; end++; break;
    default: break;
    }
    if (*end || v > UINT64_MAX / scale)
        return false;
    *bytes = v * scale;
    return true;
}

/* Refuses a model and context that would exceed --mem-budget, saying what fits. */
static int check_budget(const char *command, const struct model_options *opts, plm_model *model,
                        const struct plm_session_params *params)
{
    uint64_t budget;
    if (!parse_bytes(opts->mem_budget, &budget)) {
        fprintf(stderr, "pocketlm %s: --mem-budget expects bytes such as 1500000000, 512M or 2G, not '%s'\n",
                command, opts->mem_budget);
        return EXIT_USAGE;
    }
    struct plm_model_info info;
    plm_model_get_info(model, &info);
    uint64_t model_bytes = info.weight_bytes + info.host_bytes;
    uint64_t needed = model_bytes + plm_session_memory_needed(model, params);
    if (needed <= budget)
        return EXIT_OK;
    int fits = plm_session_max_ctx(model, params, budget);
    double mib = 1024.0 * 1024.0;
    if (fits == 0)
        fprintf(stderr, "pocketlm %s: the model needs %.1f MiB with a %d-token context, over the budget of %.1f MiB; "
                        "the model alone takes %.1f MiB, so no context fits (try a smaller quantization)\n",
                command, needed / mib, params->n_ctx, budget / mib, model_bytes / mib);
    else
        fprintf(stderr, "pocketlm %s: the model needs %.1f MiB with a %d-token context, over the budget of %.1f MiB; "
                        "a context of at most %d tokens fits (-c %d)\n",
                command, needed / mib, params->n_ctx, budget / mib, fits, fits);
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
    struct plm_session_params params = {.n_ctx = opts->n_ctx, .n_threads = opts->n_threads};
    if (!parse_kv_type(command, opts->kv_type, &params.kv_type))
        return EXIT_USAGE;
    if (plm_model_load(opts->model_path, model))
        return report_error(command, plm_last_error());
    struct plm_model_info info;
    plm_model_get_info(*model, &info);
    if (params.n_ctx <= 0)
        params.n_ctx = info.n_ctx_train < 4096 ? info.n_ctx_train : 4096;
    int rc = opts->mem_budget ? check_budget(command, opts, *model, &params) : EXIT_OK;
    if (rc == EXIT_OK && plm_session_new(*model, &params, session))
        rc = report_error(command, plm_last_error());
    if (rc) {
        plm_model_free(*model);
        *model = NULL;
    }
    return rc;
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
    t[n++] = (struct option){NULL, "--kv-type", OPT_STRING, &m->kv_type, "TYPE",
                             "KV cache type: f32, f16 or q8_0 (default f32)"};
    t[n++] = (struct option){NULL, "--mem-budget", OPT_STRING, &m->mem_budget, "BYTES",
                             "refuse to run if weights + session would exceed BYTES (K/M/G suffixes)"};
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
    t[n++] = (struct option){NULL, "--ignore-eos", OPT_FLAG, &g->ignore_eos, NULL,
                             "never end the text early: end-of-text tokens are not sampled"};
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

int tokenize_text(const char *command, plm_model *model, const char *text, size_t len, bool add_special,
                  bool parse_special, int32_t **tokens)
{
    /* Every token covers at least one byte of the text, except BOS, EOS and a
     * SentencePiece space prefix, so this buffer fits the first (and only) try;
     * the tokenizer says so if it ever does not. */
    size_t cap = len + 4;
    int32_t *buf = cap <= INT32_MAX ? malloc(cap * sizeof *buf) : NULL;
    int n = buf ? plm_tokenize(model, text, len, add_special, parse_special, buf, (int)cap) : PLM_ERR_NOMEM;
    if (n > (int)cap) {
        int32_t *grown = realloc(buf, (size_t)n * sizeof *buf);
        n = grown ? plm_tokenize(model, text, len, add_special, parse_special, grown, n) : PLM_ERR_NOMEM;
        buf = grown ? grown : buf;
    }
    if (n < 0) {
        free(buf);
        report_error(command, n == PLM_ERR_NOMEM ? "out of memory" : plm_last_error());
        return -1;
    }
    *tokens = buf;
    return n;
}

int escalation_option_entries(struct option *table, struct escalation_options *e)
{
    table[0] = (struct option){NULL, "--policy", OPT_STRING, &e->policy_path, "FILE",
                               "escalation policy: upstreams, rules, redaction (docs/escalation.md)"};
    table[1] = (struct option){NULL, "--audit", OPT_STRING, &e->audit_path, "FILE",
                               "audit log of what is sent upstream (default: $POCKETLM_HOME/audit.db)"};
    return 2;
}

int open_escalation(const char *command, const struct escalation_options *e, plm_policy **policy,
                    plm_audit **audit)
{
    *policy = NULL;
    *audit = NULL;
    if (!e->policy_path) {
        if (e->audit_path)
            fprintf(stderr, "pocketlm %s: --audit has no effect without --policy\n", command);
        return EXIT_OK;
    }
    if (plm_policy_load(e->policy_path, policy))
        return report_error(command, plm_last_error());
    char default_path[4096];
    const char *path = e->audit_path;
    if (!path && plm_audit_default_path(default_path, sizeof default_path) == PLM_OK)
        path = default_path;
    if (!path || plm_audit_open(path, audit)) {
        plm_policy_free(*policy);
        *policy = NULL;
        return report_error(command, plm_last_error());
    }
    return EXIT_OK;
}
