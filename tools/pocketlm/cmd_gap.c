/*
 * pocketlm gap: how far compressed models ("tiers") are from the model they
 * were made from, on the same text (plm_gap_save_reference, plm_gap_compare;
 * the method is in docs/gap.md). For the reference and each tier: size, bits
 * per weight, perplexity, KL divergence, top-1 agreement, the change in the
 * correct token's probability, speed and peak memory; as a Markdown table,
 * JSON (--json) and a chart of KL divergence against size (--svg).
 *
 * Speed and memory are measured first, each model in a child process of its
 * own, while this process is still small, so that a child's peak RSS is that
 * model's. The metrics then run here, one model loaded at a time.
 */
#include "commands.h"
#include "svg_chart.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* The reference and as many tiers as a string_list holds. */
#define MAX_MODELS 33

/* The speed test: a prompt decoded in one call, then tokens generated one at a time. */
#define SPEED_PROMPT_TOKENS 128
#define SPEED_GENERATED_TOKENS 32

struct gap_options {
    const char *ref_path;
    const char *text_path;
    const char *json_path;
    const char *svg_path;
    const char *save_ref_path;
    const char *use_ref_path;
    const char *device_name;
    const char *devices_path;
    int n_ctx;    /* 0 = min(the model's training context, 512) */
    int n_chunks; /* 0 = all */
    int n_threads;
    bool no_speed;
    struct string_list tiers;
};

/* What the table says about one model. */
struct model_row {
    const char *path;
    bool is_reference;
    uint64_t bytes;
    double bpw;
    struct plm_gap_metrics gap;
    bool has_speed;
    double pp_tokens_per_s, tg_tokens_per_s;
    uint64_t peak_rss_bytes;
    bool has_fit;
    struct plm_device_fit fit;
};

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* ------------------------------------------------------------ command line */

static int option_entries(struct option *t, struct gap_options *o)
{
    int n = 0;
    t[n++] = (struct option){NULL, "--ref", OPT_STRING, &o->ref_path, "FILE", "the full-precision reference model"};
    t[n++] = (struct option){"-f", "--text", OPT_STRING, &o->text_path, "FILE", "text to evaluate on"};
    t[n++] = (struct option){"-c", "--ctx-size", OPT_INT, &o->n_ctx, "N",
                             "chunk length in tokens (default: the model's context, at most 512)"};
    t[n++] = (struct option){NULL, "--chunks", OPT_INT, &o->n_chunks, "N", "evaluate the first N chunks (default all)"};
    t[n++] = (struct option){"-t", "--threads", OPT_INT, &o->n_threads, "N", "threads (default: all cores)"};
    t[n++] = (struct option){NULL, "--json", OPT_STRING, &o->json_path, "FILE", "also write the results as JSON"};
    t[n++] = (struct option){NULL, "--svg", OPT_STRING, &o->svg_path, "FILE",
                             "also chart KL divergence against size, Pareto frontier marked"};
    t[n++] = (struct option){NULL, "--save-ref", OPT_STRING, &o->save_ref_path, "FILE",
                             "keep the reference's log-probabilities in FILE"};
    t[n++] = (struct option){NULL, "--use-ref", OPT_STRING, &o->use_ref_path, "FILE",
                             "reuse log-probabilities saved by --save-ref (instead of --text)"};
    t[n++] = (struct option){NULL, "--device", OPT_STRING, &o->device_name, "NAME",
                             "mark the models that fit this device"};
    t[n++] = (struct option){NULL, "--devices", OPT_STRING, &o->devices_path, "FILE",
                             "device profiles (default: the built-in ones)"};
    t[n++] = (struct option){NULL, "--no-speed", OPT_FLAG, &o->no_speed, NULL,
                             "skip the speed and memory measurement"};
    return n;
}

static int usage_problem(const char *problem)
{
    fprintf(stderr, "pocketlm gap: %s (see pocketlm gap --help)\n", problem);
    return EXIT_USAGE;
}

static int check_options(const struct gap_options *o)
{
    if (o->use_ref_path && o->text_path)
        return usage_problem("--use-ref and --text exclude each other: the reference file holds its tokens");
    if (o->use_ref_path && o->save_ref_path)
        return usage_problem("--use-ref and --save-ref exclude each other");
    if (!o->use_ref_path && !o->ref_path)
        return usage_problem("no reference model given (--ref FILE)");
    if (!o->use_ref_path && !o->text_path)
        return usage_problem("no text given (--text FILE)");
    if (!o->ref_path && o->tiers.count == 0)
        return usage_problem("nothing to compare: give tier model files");
    if (o->n_ctx != 0 && o->n_ctx < 4)
        return usage_problem("-c must be at least 4");
    if (o->n_chunks < 0)
        return usage_problem("--chunks must not be negative");
    if (o->devices_path && !o->device_name)
        return usage_problem("--devices needs --device NAME");
    return EXIT_OK;
}

static int parse_gap_options(int argc, char **argv, struct gap_options *o)
{
    struct option table[16];
    int n = option_entries(table, o);
    struct command_spec spec = {
        "gap", "--ref FULL.gguf TIER.gguf... (--text FILE | --use-ref FILE) [options]",
        "Compares compressed models (tiers) with the model they came from on a text cut into chunks\n"
        "of CTX tokens (the first half of each is context, the second half is scored): size, bits\n"
        "per weight, perplexity and its ratio, KL divergence of each tier's next-token distribution\n"
        "from the reference's (mean, 99th percentile), top-1 agreement, change in the probability\n"
        "of the correct token, prompt and generation speed and peak RSS. A Markdown table on stdout.",
        table, n, NULL, &o->tiers};
    int rc = parse_options(&spec, argc, argv);
    if (rc)
        return rc;
    return check_options(o);
}

/* ------------------------------------------------- speed and memory (child) */

struct speed_result {
    double pp_tokens_per_s, tg_tokens_per_s;
};

/* Loads the model, decodes a prompt in one call and generates greedily one
 * token at a time; runs in the child process. */
static int time_model(const char *path, int n_threads, struct speed_result *result)
{
    plm_model *model;
    if (plm_model_load(path, &model))
        return report_error("gap", plm_last_error());
    struct plm_model_info info;
    plm_model_get_info(model, &info);
    struct plm_session_params params = {.n_ctx = SPEED_PROMPT_TOKENS + SPEED_GENERATED_TOKENS, .n_threads = n_threads};
    struct plm_sampler_params greedy;
    plm_sampler_params_default(&greedy);
    greedy.temperature = 0.0f;
    plm_session *session = NULL;
    plm_sampler *sampler = NULL;
    int rc = EXIT_OK;
    if (plm_session_new(model, &params, &session) || plm_sampler_new(&greedy, info.n_vocab, &sampler))
        rc = report_error("gap", plm_last_error());
    /* The speed does not depend on which tokens: any valid ids will do. */
    int32_t prompt[SPEED_PROMPT_TOKENS];
    for (int i = 0; i < SPEED_PROMPT_TOKENS; i++)
        prompt[i] = (int32_t)((i * 31 + 7) % info.n_vocab);
    double start = plm_seconds_now();
    if (rc == EXIT_OK && plm_decode(session, prompt, SPEED_PROMPT_TOKENS, NULL))
        rc = report_error("gap", plm_last_error());
    result->pp_tokens_per_s = SPEED_PROMPT_TOKENS / (plm_seconds_now() - start);
    start = plm_seconds_now();
    for (int i = 0; rc == EXIT_OK && i < SPEED_GENERATED_TOKENS; i++) {
        int32_t token = plm_sampler_sample(sampler, plm_session_logits(session));
        if (token < 0 || plm_decode(session, &token, 1, NULL))
            rc = report_error("gap", plm_last_error());
    }
    result->tg_tokens_per_s = SPEED_GENERATED_TOKENS / (plm_seconds_now() - start);
    plm_sampler_free(sampler);
    plm_session_free(session);
    plm_model_free(model);
    return rc;
}

/* Times one model in a child process: the child's peak RSS (from wait4) is
 * then that model's alone, not the largest of all the models loaded so far. */
static int measure_speed(struct model_row *row, int n_threads)
{
    int fds[2];
    if (pipe(fds) != 0)
        return report_error("gap", strerror(errno));
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return report_error("gap", strerror(errno));
    }
    if (pid == 0) {
        close(fds[0]);
        struct speed_result result;
        int rc = time_model(row->path, n_threads, &result);
        if (rc == EXIT_OK && write(fds[1], &result, sizeof result) != (ssize_t)sizeof result)
            rc = EXIT_FAILURE_RUNTIME;
        _exit(rc);
    }
    close(fds[1]);
    struct speed_result result;
    ssize_t got;
    do
        got = read(fds[0], &result, sizeof result);
    while (got < 0 && errno == EINTR);
    close(fds[0]);
    int status;
    struct rusage usage;
    while (wait4(pid, &status, 0, &usage) < 0 && errno == EINTR)
        continue;
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "pocketlm gap: timing '%s' was killed by signal %d\n", row->path, WTERMSIG(status));
        return EXIT_FAILURE_RUNTIME;
    }
    if (WEXITSTATUS(status) != EXIT_OK || got != (ssize_t)sizeof result)
        return EXIT_FAILURE_RUNTIME; /* the child said why */
    row->has_speed = true;
    row->pp_tokens_per_s = result.pp_tokens_per_s;
    row->tg_tokens_per_s = result.tg_tokens_per_s;
    row->peak_rss_bytes = (uint64_t)usage.ru_maxrss * 1024; /* Linux reports KiB */
    fprintf(stderr, "pocketlm gap: %s: pp %.1f t/s, tg %.1f t/s, peak RSS %.1f MiB\n", base_name(row->path),
            row->pp_tokens_per_s, row->tg_tokens_per_s, row->peak_rss_bytes / 1048576.0);
    return EXIT_OK;
}

/* ------------------------------------------------------------------ metrics */

/* A counter that rewrites itself at a terminal; one line per model in a log. */
static void print_progress(void *user, int done, int total)
{
    if (isatty(STDERR_FILENO))
        fprintf(stderr, "\rpocketlm gap: %s: chunk %d/%d%s", (const char *)user, done, total,
                done == total ? "\n" : "");
    else if (done == total)
        fprintf(stderr, "pocketlm gap: %s: %d chunks evaluated\n", (const char *)user, total);
    fflush(stderr);
}

struct run_context {
    const struct gap_options *options;
    const struct plm_device *device;
    const char *ref_file; /* the reference log-probabilities */
    int n_ctx;            /* the chunk length, once known */
};

static int open_session(const struct run_context *run, const char *path, plm_model **model, plm_session **session)
{
    *session = NULL;
    if (plm_model_load(path, model))
        return report_error("gap", plm_last_error());
    struct plm_model_info info;
    plm_model_get_info(*model, &info);
    int n_ctx = run->n_ctx ? run->n_ctx : info.n_ctx_train < 512 ? info.n_ctx_train : 512;
    struct plm_session_params params = {.n_ctx = n_ctx, .n_threads = run->options->n_threads};
    if (plm_session_new(*model, &params, session)) {
        plm_model_free(*model);
        *model = NULL;
        return report_error("gap", plm_last_error());
    }
    return EXIT_OK;
}

/* Size, bits per weight, the comparison with the reference and the device fit. */
static int evaluate(struct run_context *run, struct model_row *row, plm_model *model, plm_session *session)
{
    struct stat st;
    if (stat(row->path, &st) != 0)
        return report_error("gap", strerror(errno));
    struct plm_model_info info;
    plm_model_get_info(model, &info);
    row->bytes = (uint64_t)st.st_size;
    row->bpw = info.n_params ? 8.0 * (double)info.weight_bytes / (double)info.n_params : 0.0;
    if (plm_gap_compare(session, run->ref_file, print_progress, (void *)base_name(row->path), &row->gap))
        return report_error("gap", plm_last_error());
    run->n_ctx = row->gap.n_ctx;
    if (run->device) {
        struct plm_session_params params = {.n_ctx = run->n_ctx, .n_threads = run->options->n_threads};
        plm_device_fit(run->device, model, &params, &row->fit);
        row->has_fit = true;
    }
    return EXIT_OK;
}

/* Scores the text with the reference model into run->ref_file, then compares
 * the reference with itself: KL divergence 0 and full agreement, a check of
 * the whole machinery. */
static int make_reference(struct run_context *run, struct model_row *row)
{
    const struct gap_options *o = run->options;
    plm_model *model;
    plm_session *session;
    int rc = open_session(run, row->path, &model, &session);
    if (rc)
        return rc;
    size_t len;
    char *text = read_text_file(o->text_path, &len);
    int32_t *tokens = NULL;
    int n_tokens = -1;
    if (!text)
        fprintf(stderr, "pocketlm gap: cannot read '%s'\n", o->text_path);
    else
        n_tokens = tokenize_text("gap", model, text, len, true, false, &tokens);
    free(text);
    rc = n_tokens < 0 ? EXIT_FAILURE_RUNTIME : EXIT_OK;
    int n_ctx = plm_session_n_ctx(session);
    if (rc == EXIT_OK) {
        int n_chunks = n_tokens / n_ctx;
        if (o->n_chunks > 0 && o->n_chunks < n_chunks)
            n_chunks = o->n_chunks;
        fprintf(stderr, "pocketlm gap: %d tokens; evaluating %d chunks of %d\n", n_tokens, n_chunks, n_ctx);
        if (plm_gap_save_reference(session, tokens, n_tokens, n_ctx, o->n_chunks, run->ref_file, print_progress,
                                   "reference"))
            rc = report_error("gap", plm_last_error());
    }
    free(tokens);
    if (rc == EXIT_OK)
        rc = evaluate(run, row, model, session);
    plm_session_free(session);
    plm_model_free(model);
    return rc;
}

static int evaluate_tier(struct run_context *run, struct model_row *row)
{
    plm_model *model;
    plm_session *session;
    int rc = open_session(run, row->path, &model, &session);
    if (rc)
        return rc;
    rc = evaluate(run, row, model, session);
    plm_session_free(session);
    plm_model_free(model);
    return rc;
}

/* ------------------------------------------------------------------ output */

static void print_table(const struct gap_options *o, const struct model_row *rows, int n_rows)
{
    const struct plm_gap_metrics *g = &rows[0].gap;
    if (o->use_ref_path)
        printf("Reference log-probabilities from `%s`", o->use_ref_path);
    else
        printf("Reference `%s` on `%s`", base_name(o->ref_path), o->text_path);
    printf(": %d chunks of %d tokens, %d positions scored, reference PPL %.4f.\n\n", g->n_chunks, g->n_ctx,
           g->n_scored, g->ref_ppl);
    printf("| model | size MiB | bpw | PPL | PPL ratio | KLD mean | KLD p99 | top-1 %% | dp mean %% | dp RMS %% |");
    if (!o->no_speed)
        printf(" pp t/s | tg t/s | peak RSS MiB |");
    if (o->device_name)
        printf(" fits %s | %s t/s |", o->device_name, o->device_name);
    printf("\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|%s%s\n", o->no_speed ? "" : "--:|--:|--:|",
           o->device_name ? ":-:|--:|" : "");
    for (int i = 0; i < n_rows; i++) {
        const struct model_row *r = &rows[i];
        printf("| %s%s | %.2f | %.2f | %.4f | %.4f | %.4g | %.4g | %.2f | %+.3f | %.3f |", base_name(r->path),
               r->is_reference ? " (ref)" : "", r->bytes / 1048576.0, r->bpw, r->gap.ppl, r->gap.ppl_ratio,
               r->gap.kld_mean, r->gap.kld_p99, 100.0 * r->gap.top1_agreement, 100.0 * r->gap.dp_mean,
               100.0 * r->gap.dp_rms);
        if (r->has_speed)
            printf(" %.1f | %.1f | %.1f |", r->pp_tokens_per_s, r->tg_tokens_per_s, r->peak_rss_bytes / 1048576.0);
        if (r->has_fit)
            printf(" %s | %.1f |", r->fit.fits ? "yes" : "no", r->fit.max_tokens_per_s);
        printf("\n");
    }
}

struct json_number {
    const char *key;
    double value;
};

static void add_numbers(cJSON *object, const struct json_number *numbers, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cJSON_AddNumberToObject(object, numbers[i].key, numbers[i].value);
}

static cJSON *row_json(const struct model_row *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "file", r->path);
    cJSON_AddBoolToObject(o, "reference", r->is_reference);
    const struct plm_gap_metrics *g = &r->gap;
    const struct json_number metrics[] = {
        {"bytes", (double)r->bytes}, {"bpw", r->bpw},
        {"ppl", g->ppl}, {"ref_ppl", g->ref_ppl}, {"ppl_ratio", g->ppl_ratio},
        {"kld_mean", g->kld_mean}, {"kld_median", g->kld_median}, {"kld_p99", g->kld_p99}, {"kld_max", g->kld_max},
        {"top1_agreement", g->top1_agreement}, {"dp_mean", g->dp_mean}, {"dp_rms", g->dp_rms},
        {"n_ctx", g->n_ctx}, {"n_chunks", g->n_chunks}, {"n_scored", g->n_scored},
    };
    add_numbers(o, metrics, sizeof metrics / sizeof metrics[0]);
    if (r->has_speed) {
        const struct json_number speed[] = {
            {"pp_tokens_per_s", r->pp_tokens_per_s},
            {"tg_tokens_per_s", r->tg_tokens_per_s},
            {"peak_rss_bytes", (double)r->peak_rss_bytes},
        };
        add_numbers(o, speed, sizeof speed / sizeof speed[0]);
    }
    if (r->has_fit) {
        cJSON_AddBoolToObject(o, "fits", r->fit.fits);
        cJSON_AddNumberToObject(o, "memory_needed_bytes", (double)r->fit.memory_needed);
        cJSON_AddNumberToObject(o, "device_tokens_per_s", r->fit.max_tokens_per_s);
    }
    return o;
}

static int write_json(const char *path, const struct model_row *rows, int n_rows)
{
    cJSON *array = cJSON_CreateArray();
    for (int i = 0; i < n_rows; i++)
        cJSON_AddItemToArray(array, row_json(&rows[i]));
    char *json = cJSON_Print(array);
    cJSON_Delete(array);
    FILE *f = json ? fopen(path, "w") : NULL;
    bool ok = f && fputs(json, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f) != 0)
        ok = false;
    free(json);
    if (!ok)
        fprintf(stderr, "pocketlm gap: cannot write '%s'\n", path);
    return ok ? EXIT_OK : EXIT_FAILURE_RUNTIME;
}

/* A model is on the Pareto frontier when no other is both no larger and no
 * further from the reference, and better in one of the two. Only models a
 * log axis can place (KLD > 0) take part. */
static bool on_frontier(const struct model_row *rows, int n_rows, int i)
{
    const struct model_row *a = &rows[i];
    if (!(a->gap.kld_mean > 0.0))
        return false;
    for (int j = 0; j < n_rows; j++) {
        const struct model_row *b = &rows[j];
        if (j == i || !(b->gap.kld_mean > 0.0))
            continue;
        if (b->bytes <= a->bytes && b->gap.kld_mean <= a->gap.kld_mean &&
            (b->bytes < a->bytes || b->gap.kld_mean < a->gap.kld_mean))
            return false;
    }
    return true;
}

/* Says which models the chart leaves out: a KLD of 0 (the reference, or a
 * lossless copy of it) has no place on a log axis. */
static void left_out_caption(const struct model_row *rows, int n_rows, char *caption, size_t size)
{
    size_t used = (size_t)snprintf(caption, size,
                                   "Mean KL divergence per scored position, nats, log scale. Labels on the "
                                   "Pareto frontier; every model is in the table.");
    const char *lead = "\nNot drawn, as a KLD of 0 has no place on a log axis:";
    for (int i = 0; i < n_rows && used < size; i++) {
        if (rows[i].gap.kld_mean > 0.0)
            continue;
        used += (size_t)snprintf(caption + used, size - used, "%s %s%s", lead, base_name(rows[i].path),
                                 rows[i].is_reference ? " (reference)" : "");
        lead = ",";
    }
    if (used + 1 < size && strcmp(lead, ",") == 0)
        strcat(caption, ".");
}

/* Length of the file-name prefix every model shares ("tinystories-656k-"),
 * up to a '-' or '_', so that chart labels show only what differs. */
static size_t shared_prefix(const struct model_row *rows, int n_rows)
{
    const char *first = base_name(rows[0].path);
    size_t len = strlen(first);
    for (int i = 1; i < n_rows; i++) {
        const char *name = base_name(rows[i].path);
        size_t same = 0;
        while (same < len && first[same] == name[same])
            same++;
        len = same;
    }
    while (len > 0 && first[len - 1] != '-' && first[len - 1] != '_')
        len--;
    return len;
}

static int write_svg(const char *path, const struct model_row *rows, int n_rows)
{
    struct chart_point points[MAX_MODELS];
    int frontier[MAX_MODELS], n_frontier = 0;
    size_t prefix = shared_prefix(rows, n_rows);
    for (int i = 0; i < n_rows; i++) {
        bool best = on_frontier(rows, n_rows, i);
        /* Only the frontier is labelled: dozens of tiers would overlap. */
        const char *label = best ? base_name(rows[i].path) + prefix : NULL;
        points[i] = (struct chart_point){rows[i].bytes / 1048576.0, rows[i].gap.kld_mean, label, best};
        if (!best)
            continue;
        /* Keep the frontier ordered by size, for the line. */
        int at = n_frontier++;
        while (at > 0 && rows[frontier[at - 1]].bytes > rows[i].bytes) {
            frontier[at] = frontier[at - 1];
            at--;
        }
        frontier[at] = i;
    }
    char caption[1024];
    left_out_caption(rows, n_rows, caption, sizeof caption);
    struct svg_chart chart = {
        .title = "KL divergence from the reference against file size",
        .caption = caption,
        .x = {"file size (MiB)", false},
        .y = {"mean KL divergence (nats)", true},
        .points = points,
        .n_points = n_rows,
        .line = frontier,
        .n_line = n_frontier,
        .line_label = "Pareto frontier",
    };
    if (!svg_chart_write(&chart, path)) {
        fprintf(stderr, "pocketlm gap: cannot write '%s': %s\n", path, strerror(errno));
        return EXIT_FAILURE_RUNTIME;
    }
    return EXIT_OK;
}

/* ------------------------------------------------------------------ the run */

static int open_device(const struct gap_options *o, plm_device_list **devices, const struct plm_device **device)
{
    *devices = NULL;
    *device = NULL;
    if (!o->device_name)
        return EXIT_OK;
    if (plm_devices_load(o->devices_path, devices))
        return report_error("gap", plm_last_error());
    *device = plm_devices_find(*devices, o->device_name);
    if (!*device) {
        fprintf(stderr, "pocketlm gap: %s\n", plm_last_error());
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

/* Where the reference log-probabilities go when they are not kept: a
 * temporary file, removed at the end. */
static int temporary_reference(char *path, size_t size)
{
    const char *dir = getenv("TMPDIR");
    snprintf(path, size, "%s/pocketlm-gap-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0)
        return report_error("gap", "cannot create a temporary file for the reference log-probabilities");
    close(fd);
    return EXIT_OK;
}

/* Fails before the long parts start if an input cannot even be opened. */
static int check_readable(const struct gap_options *o, const struct model_row *rows, int n_rows)
{
    const char *inputs[MAX_MODELS + 2];
    int n = 0;
    for (int i = 0; i < n_rows; i++)
        inputs[n++] = rows[i].path;
    inputs[n++] = o->use_ref_path ? o->use_ref_path : o->text_path;
    for (int i = 0; i < n; i++)
        if (access(inputs[i], R_OK) != 0) {
            fprintf(stderr, "pocketlm gap: cannot read '%s': %s\n", inputs[i], strerror(errno));
            return EXIT_FAILURE_RUNTIME;
        }
    return EXIT_OK;
}

static int run_gap(const struct gap_options *o, const struct plm_device *device, struct model_row *rows, int n_rows)
{
    if (check_readable(o, rows, n_rows))
        return EXIT_FAILURE_RUNTIME;
    for (int i = 0; !o->no_speed && i < n_rows; i++) {
        int rc = measure_speed(&rows[i], o->n_threads);
        if (rc)
            return rc;
    }
    char temp_ref[4096] = "";
    struct run_context run = {o, device, o->use_ref_path ? o->use_ref_path : o->save_ref_path, o->n_ctx};
    int rc = EXIT_OK;
    if (!run.ref_file && (rc = temporary_reference(temp_ref, sizeof temp_ref)) == EXIT_OK)
        run.ref_file = temp_ref;
    for (int i = 0; rc == EXIT_OK && i < n_rows; i++)
        rc = rows[i].is_reference && !o->use_ref_path ? make_reference(&run, &rows[i]) : evaluate_tier(&run, &rows[i]);
    if (temp_ref[0])
        remove(temp_ref);
    if (rc)
        return rc;
    print_table(o, rows, n_rows);
    if (o->json_path && (rc = write_json(o->json_path, rows, n_rows)))
        return rc;
    if (o->svg_path)
        rc = write_svg(o->svg_path, rows, n_rows);
    return rc;
}

int cmd_gap(int argc, char **argv)
{
    struct gap_options o = {0};
    int rc = parse_gap_options(argc, argv, &o);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    struct model_row rows[MAX_MODELS] = {0};
    int n_rows = 0;
    if (o.ref_path)
        rows[n_rows++] = (struct model_row){.path = o.ref_path, .is_reference = true};
    for (int i = 0; i < o.tiers.count; i++)
        rows[n_rows++] = (struct model_row){.path = o.tiers.items[i]};
    plm_device_list *devices;
    const struct plm_device *device;
    rc = open_device(&o, &devices, &device);
    if (rc == EXIT_OK)
        rc = run_gap(&o, device, rows, n_rows);
    plm_devices_free(devices);
    return rc;
}
