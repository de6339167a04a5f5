/*
 * pocketlm route-eval: calibrates the "uncertain" rule of an escalation
 * policy on a pair of local models (docs/routing.md). For each prompt both
 * models answer greedily; the device's first K tokens give its uncertainty
 * statistics, and each answer's quality is its mean per-token log-likelihood
 * under the upstream model, scored on the upstream's own tokenization of the
 * answer's text (the two vocabularies may differ). Sweeping a threshold on
 * each statistic then gives the escalation rate against the quality of the
 * final answers, beside random escalation and the oracle at the same rates;
 * as Markdown tables, JSON (--json) and a chart (--svg).
 */
#include "commands.h"
#include "svg_chart.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct route_eval_options {
    const char *device_path;
    const char *upstream_path;
    const char *prompts_path;
    const char *json_path;
    const char *svg_path;
    int n_predict;
    int first_tokens;
    float target_rate;
    int n_threads;
};

/* The statistics swept: quantiles (what a policy can test) and means (for comparison). */
struct statistic {
    const char *name;
    bool entropy; /* of the entropies, else of the chosen tokens' probabilities */
    double q;     /* quantile; negative for the mean */
};

static const struct statistic statistics[] = {
    {"p10_prob", false, 0.1},  {"p25_prob", false, 0.25}, {"p50_prob", false, 0.5},  {"mean_prob", false, -1},
    {"p50_entropy", true, 0.5}, {"p90_entropy", true, 0.9}, {"mean_entropy", true, -1},
};
#define N_STATISTICS (int)(sizeof statistics / sizeof statistics[0])

/* One prompt's outcome. */
struct prompt_result {
    char *prompt;
    char *device_answer, *upstream_answer;
    int n_device_tokens; /* generated, end token included */
    double quality_device, quality_upstream;
    double values[N_STATISTICS];
};

/* A loaded model with a session over its context. */
struct loaded_model {
    const char *path;
    plm_model *model;
    plm_session *session;
    int n_vocab;
    int n_ctx;
};

/* A greedy answer: its text, and the uncertainty of its first tokens. */
struct answer {
    char *text;
    size_t len, cap;
    bool ended; /* at an end-of-generation token */
    int n_tokens;
    struct plm_token_uncertainty *first; /* [first_tokens] */
    int n_first;
};

/* ------------------------------------------------------------ command line */

static int usage_problem(const char *problem)
{
    fprintf(stderr, "pocketlm route-eval: %s (see pocketlm route-eval --help)\n", problem);
    return EXIT_USAGE;
}

static int parse_route_eval_options(int argc, char **argv, struct route_eval_options *o)
{
    struct option t[9];
    int n = 0;
    t[n++] = (struct option){NULL, "--device", OPT_STRING, &o->device_path, "FILE", "the device model (required)"};
    t[n++] = (struct option){NULL, "--upstream", OPT_STRING, &o->upstream_path, "FILE",
                             "the larger model, which also scores the answers (required)"};
    t[n++] = (struct option){NULL, "--prompts", OPT_STRING, &o->prompts_path, "FILE",
                             "one prompt a line, or JSON lines with \"prompt\" (required)"};
    t[n++] = (struct option){"-n", "--n-predict", OPT_INT, &o->n_predict, "N", "answer length in tokens (default 64)"};
    t[n++] = (struct option){NULL, "--first-tokens", OPT_INT, &o->first_tokens, "K",
                             "tokens of the device's answer the uncertainty is measured on (default 16)"};
    t[n++] = (struct option){NULL, "--target-rate", OPT_FLOAT, &o->target_rate, "R",
                             "escalation rate to recommend a threshold for (default 0.2)"};
    t[n++] = (struct option){NULL, "--json", OPT_STRING, &o->json_path, "FILE", "also write every answer and the full curves"};
    t[n++] = (struct option){NULL, "--svg", OPT_STRING, &o->svg_path, "FILE",
                             "also chart quality against escalation rate (best signal, random, oracle)"};
    t[n++] = (struct option){"-t", "--threads", OPT_INT, &o->n_threads, "N", "threads (default: all cores)"};
    struct command_spec spec = {
        "route-eval", "--device A.gguf --upstream B.gguf --prompts FILE [options]",
        "Calibrates when to escalate: both models answer each prompt greedily, each answer is scored\n"
        "by its mean per-token log-likelihood under the upstream, and a threshold on each uncertainty\n"
        "statistic of the device's first tokens is swept: escalation rate against the quality of the\n"
        "final answers, beside random escalation and the oracle. Markdown tables on stdout.",
        t, n, NULL, NULL};
    int rc = parse_options(&spec, argc, argv);
    if (rc)
        return rc;
    if (!o->device_path || !o->upstream_path || !o->prompts_path)
        return usage_problem("--device, --upstream and --prompts are required");
    if (o->n_predict < 1)
        return usage_problem("-n must be at least 1");
    if (o->first_tokens < 1 || o->first_tokens > 4096)
        return usage_problem("--first-tokens must be between 1 and 4096");
    if (!(o->target_rate >= 0.0f && o->target_rate <= 1.0f))
        return usage_problem("--target-rate must be between 0 and 1");
    return EXIT_OK;
}

/* ---------------------------------------------------------------- prompts */

/* The prompt of one line: the line itself, or its "prompt" when it is a JSON
 * object. NULL (after saying why) for a JSON line without one. */
static char *line_prompt(const char *path, int line_number, const char *line)
{
    if (line[0] != '{')
        return strdup(line);
    cJSON *object = cJSON_Parse(line);
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(object, "prompt");
    char *text = cJSON_IsString(prompt) ? strdup(prompt->valuestring) : NULL;
    if (!object)
        fprintf(stderr, "pocketlm route-eval: %s:%d: the line starts with '{' but is not JSON\n", path, line_number);
    else if (!text)
        fprintf(stderr, "pocketlm route-eval: %s:%d: a JSON line needs a string \"prompt\"\n", path, line_number);
    cJSON_Delete(object);
    return text;
}

static void free_results(struct prompt_result *results, int n)
{
    for (int i = 0; i < n; i++) {
        free(results[i].prompt);
        free(results[i].device_answer);
        free(results[i].upstream_answer);
    }
    free(results);
}

/* Reads the prompts, skipping blank lines; -1 after printing why. */
static int read_prompts(const char *path, struct prompt_result **results)
{
    size_t len;
    char *text = read_text_file(path, &len);
    if (!text) {
        fprintf(stderr, "pocketlm route-eval: cannot read '%s'\n", path);
        return -1;
    }
    int n = 0, cap = 0, line_number = 0;
    bool failed = false;
    *results = NULL;
    for (char *line = text, *next; !failed && line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        line_number++;
        size_t line_len = strlen(line);
        if (line_len && line[line_len - 1] == '\r')
            line[--line_len] = '\0';
        if (line_len == 0)
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            struct prompt_result *grown = realloc(*results, (size_t)cap * sizeof **results);
            failed = !grown;
            if (failed) {
                fprintf(stderr, "pocketlm route-eval: out of memory reading '%s'\n", path);
                break;
            }
            *results = grown;
        }
        memset(&(*results)[n], 0, sizeof **results);
        (*results)[n].prompt = line_prompt(path, line_number, line);
        failed = !(*results)[n].prompt;
        n += !failed;
    }
    free(text);
    if (!failed && n == 0)
        fprintf(stderr, "pocketlm route-eval: '%s' holds no prompt\n", path);
    if (failed || n == 0) {
        free_results(*results, n);
        return -1;
    }
    return n;
}

/* ----------------------------------------------------------------- models */

static int load_model(const char *path, int n_threads, struct loaded_model *m)
{
    memset(m, 0, sizeof *m);
    m->path = path;
    if (plm_model_load(path, &m->model))
        return report_error("route-eval", plm_last_error());
    struct plm_model_info info;
    plm_model_get_info(m->model, &info);
    m->n_vocab = info.n_vocab;
    struct plm_session_params params = {.n_ctx = info.n_ctx_train < 4096 ? info.n_ctx_train : 4096,
                                        .n_threads = n_threads};
    if (plm_session_new(m->model, &params, &m->session))
        return report_error("route-eval", plm_last_error());
    m->n_ctx = plm_session_n_ctx(m->session);
    return EXIT_OK;
}

static void free_model(struct loaded_model *m)
{
    plm_session_free(m->session);
    plm_model_free(m->model);
}

/* The largest logit; ties go to the lowest id, as greedy sampling does. */
static int32_t argmax(const float *logits, int n)
{
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best])
            best = i;
    return best;
}

/* Makes room for len more bytes and the NUL after them. */
static bool reserve_text(struct answer *a, size_t len)
{
    if (a->len + len + 1 <= a->cap)
        return true;
    size_t cap = 2 * (a->len + len + 1);
    char *grown = realloc(a->text, cap);
    if (!grown)
        return false;
    a->text = grown;
    a->cap = cap;
    return true;
}

/* Appends a token's text, asking for it again in place when it is longer
 * than a typical piece. A negative plm_status on failure. */
static int append_piece(const plm_model *model, int32_t token, struct answer *a)
{
    char piece[64];
    int n = plm_token_to_piece(model, token, piece, sizeof piece, false);
    if (n < 0)
        return n;
    if (!reserve_text(a, (size_t)n))
        return PLM_ERR_NOMEM;
    if (n <= (int)sizeof piece)
        memcpy(a->text + a->len, piece, (size_t)n);
    else if (plm_token_to_piece(model, token, a->text + a->len, (size_t)n, false) != n)
        return PLM_ERR_FORMAT;
    a->len += (size_t)n;
    a->text[a->len] = '\0';
    return PLM_OK;
}

/* Answers a prompt greedily from an empty cache, recording in a->first the
 * uncertainty of the first first_tokens tokens (the end token included: the
 * choice to stop is a choice too). 1 when the prompt and answer do not fit the context (the
 * prompt is then skipped), 0 done, negative on failure. */
static int answer_prompt(struct loaded_model *m, const char *prompt, int n_predict, int first_tokens, struct answer *a)
{
    int32_t *tokens;
    int n_prompt = tokenize_text("route-eval", m->model, prompt, strlen(prompt), true, false, &tokens);
    if (n_prompt < 0)
        return -1;
    if (n_prompt + n_predict > m->n_ctx) {
        free(tokens);
        return 1;
    }
    plm_session_truncate(m->session, 0);
    int rc = plm_decode(m->session, tokens, n_prompt, NULL);
    free(tokens);
    a->len = 0;
    a->ended = false;
    a->n_tokens = a->n_first = 0;
    if (rc == PLM_OK && !reserve_text(a, 0)) /* an empty answer is "", not NULL */
        rc = PLM_ERR_NOMEM;
    for (int i = 0; rc == PLM_OK && i < n_predict; i++) {
        const float *logits = plm_session_logits(m->session);
        int32_t token = argmax(logits, m->n_vocab);
        if (i < first_tokens && (rc = plm_token_uncertainty(logits, m->n_vocab, token, &a->first[a->n_first++])))
            break;
        a->n_tokens++;
        if (plm_token_is_eog(m->model, token)) {
            a->ended = true;
            break;
        }
        rc = append_piece(m->model, token, a);
        if (rc == PLM_OK)
            rc = plm_decode(m->session, &token, 1, NULL);
    }
    if (rc == PLM_OK)
        return 0;
    report_error("route-eval", rc == PLM_ERR_NOMEM ? "out of memory" : plm_last_error());
    return -1;
}

/* Length of the common start of two token sequences. */
static int common_prefix(const int32_t *a, int n_a, const int32_t *b, int n_b)
{
    int n = 0;
    while (n < n_a && n < n_b && a[n] == b[n])
        n++;
    return n;
}

/* Mean log p of tokens[start..n) from the logits rows (row j: the
 * distribution of token j + 1), through the same softmax as the uncertainty. */
static double mean_log_likelihood(const struct loaded_model *scorer, const int32_t *tokens, int n, int start,
                                  const float *logits, bool *failed)
{
    double sum = 0.0;
    for (int j = start - 1; j < n - 1; j++) {
        struct plm_token_uncertainty u;
        if (plm_token_uncertainty(logits + (size_t)j * scorer->n_vocab, scorer->n_vocab, tokens[j + 1], &u)) {
            *failed = report_error("route-eval", plm_last_error());
            return NAN;
        }
        sum += log(u.prob); /* -inf for a token of probability 0: the prompt is then left out */
    }
    return sum / (n - start);
}

/* The answer's mean per-token log-likelihood under the scorer, on the
 * scorer's tokenization of the text: prompt + answer is tokenized whole, and
 * the tokens after the part it shares with the prompt alone are the answer's
 * (a token that straddles the boundary counts as the answer's). An answer
 * that ended adds the scorer's end-of-sequence token, so that stopping is
 * judged too and an empty answer still has a score. NaN when there is nothing
 * to score or it does not fit the context; *failed on an error. */
static double score_answer(struct loaded_model *scorer, const char *prompt, const struct answer *a, bool *failed)
{
    size_t prompt_len = strlen(prompt);
    char *whole = malloc(prompt_len + a->len + 1);
    int32_t *prompt_tokens = NULL, *tokens = NULL;
    float *logits = NULL;
    double score = NAN;
    if (!whole) {
        *failed = report_error("route-eval", "out of memory");
        return NAN;
    }
    memcpy(whole, prompt, prompt_len);
    memcpy(whole + prompt_len, a->text, a->len + 1);
    int n_prompt = tokenize_text("route-eval", scorer->model, prompt, prompt_len, true, false, &prompt_tokens);
    int n_whole = n_prompt < 0 ? -1 : tokenize_text("route-eval", scorer->model, whole, prompt_len + a->len, true,
                                                    false, &tokens);
    free(whole);
    int32_t eos = plm_token_eos(scorer->model);
    int32_t *room = n_whole < 0 ? NULL : realloc(tokens, ((size_t)n_whole + 1) * sizeof *tokens);
    if (!room) {
        *failed = n_whole >= 0 ? report_error("route-eval", "out of memory") : true;
    } else {
        tokens = room;
        int start = common_prefix(prompt_tokens, n_prompt, tokens, n_whole);
        start = start > 0 ? start : 1; /* the first token has nothing before it to be predicted from */
        int n = n_whole;
        if (a->ended && eos >= 0)
            tokens[n++] = eos;
        if (n > start && n <= scorer->n_ctx && (logits = malloc((size_t)n * scorer->n_vocab * sizeof *logits))) {
            plm_session_truncate(scorer->session, 0);
            if (plm_decode(scorer->session, tokens, n - 1, logits))
                *failed = report_error("route-eval", plm_last_error());
            else
                score = mean_log_likelihood(scorer, tokens, n, start, logits, failed);
        }
    }
    free(logits);
    free(prompt_tokens);
    free(tokens);
    return score;
}

/* ------------------------------------------------------------- evaluation */

static double statistic_value(const struct statistic *s, const struct answer *a)
{
    return s->q < 0 ? plm_uncertainty_mean(a->first, a->n_first, s->entropy)
                    : plm_uncertainty_quantile(a->first, a->n_first, s->entropy, s->q);
}

static char *take_text(struct answer *a)
{
    char *text = a->text;
    a->text = NULL;
    a->len = a->cap = 0;
    return text;
}

/* Both answers of every prompt and their scores; prompts that do not fit a
 * context or leave nothing to score are dropped (with a note). Returns how
 * many remain, or -1 on failure. */
static int run_prompts(const struct route_eval_options *o, struct loaded_model *device, struct loaded_model *upstream,
                       struct prompt_result *results, int n)
{
    struct answer device_answer = {0}, upstream_answer = {0};
    device_answer.first = malloc((size_t)o->first_tokens * sizeof *device_answer.first);
    int kept = 0, rc = 0;
    if (!device_answer.first) {
        report_error("route-eval", "out of memory");
        rc = -1;
    }
    for (int i = 0; rc == 0 && i < n; i++) {
        struct prompt_result *r = &results[i];
        bool failed = false;
        rc = answer_prompt(device, r->prompt, o->n_predict, o->first_tokens, &device_answer);
        if (rc == 0)
            rc = answer_prompt(upstream, r->prompt, o->n_predict, 0, &upstream_answer);
        if (rc == 0) {
            r->quality_device = score_answer(upstream, r->prompt, &device_answer, &failed);
            r->quality_upstream = score_answer(upstream, r->prompt, &upstream_answer, &failed);
            rc = failed ? -1 : 0;
        }
        if (rc < 0)
            break;
        if (rc == 1 || device_answer.n_first == 0 || !isfinite(r->quality_device) || !isfinite(r->quality_upstream)) {
            fprintf(stderr, "pocketlm route-eval: prompt %d left out (%s)\n", i + 1,
                    rc == 1 ? "it does not fit a model's context" : "nothing to score");
            rc = 0;
            continue;
        }
        for (int s = 0; s < N_STATISTICS; s++)
            r->values[s] = statistic_value(&statistics[s], &device_answer);
        r->n_device_tokens = device_answer.n_tokens;
        r->device_answer = take_text(&device_answer);
        r->upstream_answer = take_text(&upstream_answer);
        /* Keep the results in order, the dropped ones after them. */
        struct prompt_result done = *r;
        *r = results[kept];
        results[kept++] = done;
        if ((i + 1) % 10 == 0 || i + 1 == n)
            fprintf(stderr, "pocketlm route-eval: %d/%d prompts\n", i + 1, n);
    }
    free(device_answer.first);
    free(device_answer.text);
    free(upstream_answer.text);
    return rc < 0 ? -1 : kept;
}

static int sweep_all(const struct prompt_result *results, int n, struct plm_cascade_curve *curves)
{
    struct plm_cascade_item *items = malloc((size_t)n * sizeof *items);
    int rc = items ? PLM_OK : PLM_ERR_NOMEM;
    for (int s = 0; rc == PLM_OK && s < N_STATISTICS; s++) {
        for (int i = 0; i < n; i++)
            items[i] = (struct plm_cascade_item){results[i].values[s], results[i].quality_device,
                                                 results[i].quality_upstream};
        rc = plm_cascade_sweep(items, n, !statistics[s].entropy, &curves[s]);
    }
    free(items);
    return rc ? report_error("route-eval", rc == PLM_ERR_NOMEM ? "out of memory" : plm_last_error()) : EXIT_OK;
}

/* The statistic with the largest area over random; quantiles_only: among
 * those a policy can test. */
static int best_statistic(const struct plm_cascade_curve *curves, bool quantiles_only)
{
    int best = -1;
    for (int s = 0; s < N_STATISTICS; s++)
        if ((!quantiles_only || statistics[s].q >= 0) &&
            (best < 0 || curves[s].area_over_random > curves[best].area_over_random))
            best = s;
    return best;
}

/* ------------------------------------------------------------------ output */

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* A point's threshold as a table shows it. The last point escalates every
 * prompt: its threshold lies one double past the most extreme value, and
 * prints as that value, so it is shown as "> value" ("< value" for above). */
static void format_threshold(const struct plm_cascade_curve *c, const struct plm_cascade_point *p, char *text,
                             size_t size)
{
    bool last = p == &c->points[c->n_points - 1] && c->n_points > 1;
    snprintf(text, size, "%s%.4g", !last ? "" : c->below ? "> " : "< ", p->threshold);
}

/* A threshold in as few digits as give back exactly the same double, for
 * the JSON and the policy rule: the last point's differs from the largest
 * value only in its 17th digit. */
static void format_exact(double value, char *text, size_t size)
{
    static const char *const formats[] = {"%.6g", "%.9g", "%.17g"};
    for (int i = 0; i < 3; i++) {
        snprintf(text, size, formats[i], value);
        if (strtod(text, NULL) == value)
            return;
    }
}

static void print_curve_table(const struct statistic *s, const struct plm_cascade_curve *c)
{
    printf("\n### %s (escalate when %s the threshold; area over random %+.4f)\n\n", s->name,
           c->below ? "below" : "above", c->area_over_random);
    printf("| target | rate | threshold | quality | vs random | vs oracle |\n|--:|--:|--:|--:|--:|--:|\n");
    for (int tenth = 0; tenth <= 10; tenth++) {
        const struct plm_cascade_point *p = plm_cascade_at_rate(c, tenth / 10.0);
        char threshold[32];
        format_threshold(c, p, threshold, sizeof threshold);
        printf("| %d%% | %.1f%% | %s | %.4f | %+.4f | %+.4f |\n", 10 * tenth, 100.0 * p->rate, threshold,
               p->quality, p->quality - p->random, p->quality - p->oracle);
    }
}

/* The rule to put in a policy for the recommended threshold of a quantile statistic. */
static void print_policy_rule(const struct route_eval_options *o, const struct statistic *s,
                              const struct plm_cascade_point *p)
{
    char threshold[32];
    format_exact(p->threshold, threshold, sizeof threshold);
    printf("{\"when\": \"uncertain\", \"upstream\": \"...\", \"first_tokens\": %d, \"%s\": {\"q\": %g, \"%s\": %s}}\n",
           o->first_tokens, s->entropy ? "entropy_quantile" : "min_token_prob_quantile", s->q,
           s->entropy ? "above" : "below", threshold);
}

static void print_report(const struct route_eval_options *o, int n, const struct plm_cascade_curve *curves)
{
    const struct plm_cascade_curve *c0 = &curves[0];
    printf("Device `%s`, upstream `%s`: %d prompts from `%s`, greedy answers of up to %d tokens, uncertainty "
           "over the first %d tokens.\nQuality: mean per-token log-likelihood under `%s`: device answers %.4f, "
           "upstream answers %.4f, oracle at %.0f%% %.4f.\n\n",
           base_name(o->device_path), base_name(o->upstream_path), n, o->prompts_path, o->n_predict, o->first_tokens,
           base_name(o->upstream_path), c0->quality_device, c0->quality_upstream, 100.0 * o->target_rate,
           plm_cascade_at_rate(c0, o->target_rate)->oracle);
    int best = best_statistic(curves, false);
    printf("| statistic | escalate when | area over random | threshold at %.0f%% | rate | quality | vs random | vs oracle |\n"
           "|---|---|--:|--:|--:|--:|--:|--:|\n", 100.0 * o->target_rate);
    for (int s = 0; s < N_STATISTICS; s++) {
        const struct plm_cascade_point *p = plm_cascade_at_rate(&curves[s], o->target_rate);
        char threshold[32];
        format_threshold(&curves[s], p, threshold, sizeof threshold);
        printf("| %s%s | %s | %+.4f | %s | %.1f%% | %.4f | %+.4f | %+.4f |\n", statistics[s].name,
               s == best ? " (best)" : "", curves[s].below ? "below" : "above", curves[s].area_over_random,
               threshold, 100.0 * p->rate, p->quality, p->quality - p->random, p->quality - p->oracle);
    }
    for (int s = 0; s < N_STATISTICS; s++)
        print_curve_table(&statistics[s], &curves[s]);
    int rule = best_statistic(curves, true);
    printf("\nBest statistic: %s. Recommended rule for a %.0f%% escalation rate (%s):\n\n", statistics[best].name,
           100.0 * o->target_rate, statistics[rule].name);
    print_policy_rule(o, &statistics[rule], plm_cascade_at_rate(&curves[rule], o->target_rate));
}

/* A number cJSON would round to 15 digits when that reads back within an ulp:
 * the thresholds and the values they split must compare as they did here. */
static void add_exact(cJSON *object, const char *key, double value)
{
    char text[32];
    format_exact(value, text, sizeof text);
    cJSON_AddRawToObject(object, key, text);
}

static cJSON *point_json(const struct plm_cascade_point *p)
{
    cJSON *o = cJSON_CreateObject();
    add_exact(o, "threshold", p->threshold);
    cJSON_AddNumberToObject(o, "n_escalated", p->n_escalated);
    cJSON_AddNumberToObject(o, "rate", p->rate);
    cJSON_AddNumberToObject(o, "quality", p->quality);
    cJSON_AddNumberToObject(o, "random", p->random);
    cJSON_AddNumberToObject(o, "oracle", p->oracle);
    return o;
}

static cJSON *statistic_json(const struct route_eval_options *o, int s, const struct plm_cascade_curve *c)
{
    cJSON *object = cJSON_CreateObject();
    cJSON_AddStringToObject(object, "name", statistics[s].name);
    cJSON_AddStringToObject(object, "escalate_when", c->below ? "below" : "above");
    cJSON_AddNumberToObject(object, "area_over_random", c->area_over_random);
    cJSON_AddItemToObject(object, "recommended", point_json(plm_cascade_at_rate(c, o->target_rate)));
    cJSON *curve = cJSON_AddArrayToObject(object, "curve");
    for (int i = 0; i < c->n_points; i++)
        cJSON_AddItemToArray(curve, point_json(&c->points[i]));
    return object;
}

static cJSON *prompt_json(const struct prompt_result *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "prompt", r->prompt);
    cJSON_AddStringToObject(o, "device_answer", r->device_answer);
    cJSON_AddStringToObject(o, "upstream_answer", r->upstream_answer);
    cJSON_AddNumberToObject(o, "device_tokens", r->n_device_tokens);
    cJSON_AddNumberToObject(o, "quality_device", r->quality_device);
    cJSON_AddNumberToObject(o, "quality_upstream", r->quality_upstream);
    cJSON *values = cJSON_AddObjectToObject(o, "statistics");
    for (int s = 0; s < N_STATISTICS; s++)
        add_exact(values, statistics[s].name, r->values[s]);
    return o;
}

static int write_json(const struct route_eval_options *o, const struct prompt_result *results, int n,
                      const struct plm_cascade_curve *curves)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "device", o->device_path);
    cJSON_AddStringToObject(root, "upstream", o->upstream_path);
    cJSON_AddStringToObject(root, "prompts_file", o->prompts_path);
    cJSON_AddNumberToObject(root, "n_prompts", n);
    cJSON_AddNumberToObject(root, "n_predict", o->n_predict);
    cJSON_AddNumberToObject(root, "first_tokens", o->first_tokens);
    cJSON_AddNumberToObject(root, "target_rate", o->target_rate);
    cJSON_AddNumberToObject(root, "quality_device", curves[0].quality_device);
    cJSON_AddNumberToObject(root, "quality_upstream", curves[0].quality_upstream);
    cJSON_AddStringToObject(root, "best_statistic", statistics[best_statistic(curves, false)].name);
    cJSON *stats = cJSON_AddArrayToObject(root, "statistics");
    for (int s = 0; s < N_STATISTICS; s++)
        cJSON_AddItemToArray(stats, statistic_json(o, s, &curves[s]));
    cJSON *prompts = cJSON_AddArrayToObject(root, "prompts");
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(prompts, prompt_json(&results[i]));
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    FILE *f = text ? fopen(o->json_path, "w") : NULL;
    bool ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    ok = f && fclose(f) == 0 && ok;
    free(text);
    if (!ok)
        fprintf(stderr, "pocketlm route-eval: cannot write '%s'\n", o->json_path);
    return ok ? EXIT_OK : EXIT_FAILURE_RUNTIME;
}

/* The best statistic's curve as the line, random and the oracle as labelled
 * points at every tenth of the rate. */
static int write_svg(const struct route_eval_options *o, const struct plm_cascade_curve *curves)
{
    int best = best_statistic(curves, false);
    const struct plm_cascade_curve *c = &curves[best];
    int n_points = c->n_points + 2 * 11;
    struct chart_point *points = calloc((size_t)n_points, sizeof *points);
    int *line = malloc((size_t)c->n_points * sizeof *line);
    if (!points || !line) {
        free(points);
        free(line);
        return report_error("route-eval", "out of memory");
    }
    for (int i = 0; i < c->n_points; i++) {
        points[i] = (struct chart_point){100.0 * c->points[i].rate, c->points[i].quality, NULL, false};
        line[i] = i;
    }
    for (int tenth = 0; tenth <= 10; tenth++) {
        double rate = tenth / 10.0;
        const struct plm_cascade_point *p = plm_cascade_at_rate(c, rate);
        /* The oracle at the point's own rate; random is exact at any rate. */
        points[c->n_points + tenth] = (struct chart_point){100.0 * p->rate, p->oracle, tenth == 5 ? "oracle" : NULL, false};
        points[c->n_points + 11 + tenth] = (struct chart_point){
            100.0 * rate, c->quality_device + rate * (c->quality_upstream - c->quality_device),
            tenth == 5 ? "random" : NULL, false};
    }
    char title[160], caption[200], line_label[64];
    snprintf(title, sizeof title, "Escalating from %s to %s", base_name(o->device_path), base_name(o->upstream_path));
    snprintf(caption, sizeof caption, "%d prompts, uncertainty over the first %d tokens; oracle: the largest gains first",
             c->n_items, o->first_tokens);
    snprintf(line_label, sizeof line_label, "by %s (best signal)", statistics[best].name);
    struct svg_chart chart = {
        title, caption, {"escalation rate (%)", false}, {"mean log-likelihood under the upstream", false},
        points, n_points, line, c->n_points, line_label};
    bool ok = svg_chart_write(&chart, o->svg_path);
    free(points);
    free(line);
    if (!ok)
        fprintf(stderr, "pocketlm route-eval: cannot write '%s'\n", o->svg_path);
    return ok ? EXIT_OK : EXIT_FAILURE_RUNTIME;
}

int cmd_route_eval(int argc, char **argv)
{
    struct route_eval_options o = {.n_predict = 64, .first_tokens = 16, .target_rate = 0.2f};
    int rc = parse_route_eval_options(argc, argv, &o);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    struct prompt_result *results;
    int n = read_prompts(o.prompts_path, &results);
    if (n < 0)
        return EXIT_FAILURE_RUNTIME;
    struct loaded_model device, upstream;
    rc = load_model(o.device_path, o.n_threads, &device);
    if (rc == EXIT_OK)
        rc = load_model(o.upstream_path, o.n_threads, &upstream);
    else
        memset(&upstream, 0, sizeof upstream);
    int kept = rc ? -1 : run_prompts(&o, &device, &upstream, results, n);
    free_model(&device);
    free_model(&upstream);
    struct plm_cascade_curve curves[N_STATISTICS] = {0};
    if (kept == 0)
        fprintf(stderr, "pocketlm route-eval: no prompt could be scored\n");
    rc = kept > 0 ? sweep_all(results, kept, curves) : EXIT_FAILURE_RUNTIME;
    if (rc == EXIT_OK) {
        print_report(&o, kept, curves);
        if (o.json_path)
            rc = write_json(&o, results, kept, curves);
        if (rc == EXIT_OK && o.svg_path)
            rc = write_svg(&o, curves);
    }
    for (int s = 0; s < N_STATISTICS; s++)
        plm_cascade_curve_free(&curves[s]);
    free_results(results, n);
    return rc;
}
