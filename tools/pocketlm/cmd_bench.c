/*
 * pocketlm bench: prompt-processing and generation speed, as llama-bench
 * measures them, each reported against this machine's limit measured in the
 * same run:
 *   generation (tgN): one token at a time must read every weight, so the
 *     limit is read bandwidth / bytes read per token;
 *   prompt processing (ppN): tokens come in batches, so the limit is the peak
 *     multiply-add rate (8-bit integer for quantized models, float otherwise).
 */
#include "commands.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_LIST 16

struct int_list {
    int values[MAX_LIST];
    int count;
};

struct bench_options {
    const char *model_path;
    const char *threads, *prompt_sizes, *gen_sizes; /* comma-separated lists */
    int reps;
    bool json;
};

struct test_result {
    char name[32];      /* "pp512", "tg128" */
    int threads;
    double median, stddev;
    double limit;       /* tokens/s the hardware limit allows */
    const char *limit_kind;
    double machine_rate; /* bytes/s or ops/s behind the limit */
};

static bool parse_list(const char *text, struct int_list *list, int min)
{
    list->count = 0;
    const char *p = text;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < min || v > 1 << 20 || list->count == MAX_LIST)
            return false;
        list->values[list->count++] = (int)v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return false;
    }
    return list->count > 0;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void summarize(double *rates, int n, struct test_result *r)
{
    qsort(rates, (size_t)n, sizeof *rates, compare_doubles);
    r->median = n % 2 ? rates[n / 2] : 0.5 * (rates[n / 2 - 1] + rates[n / 2]);
    double mean = 0.0, var = 0.0;
    for (int i = 0; i < n; i++)
        mean += rates[i] / n;
    for (int i = 0; i < n; i++)
        var += (rates[i] - mean) * (rates[i] - mean) / (n > 1 ? n - 1 : 1);
    r->stddev = sqrt(var);
}

/* Tokens/s of each repetition: n tokens in one batch (prompt) or one by one. */
static int time_test(plm_session *s, const int32_t *tokens, int n, bool one_by_one, int reps, double *rates)
{
    for (int r = 0; r < reps; r++) {
        plm_session_truncate(s, 0);
        double start = plm_seconds_now();
        if (one_by_one) {
            for (int i = 0; i < n; i++)
                if (plm_decode(s, tokens + i, 1, NULL))
                    return -1;
        } else if (plm_decode(s, tokens, n, NULL)) {
            return -1;
        }
        rates[r] = n / (plm_seconds_now() - start);
    }
    return 0;
}

struct machine_limits {
    double bandwidth, float_ops, int8_ops;
};

static int bench_threads(const struct bench_options *o, plm_model *model, int threads, const struct int_list *pp,
                         const struct int_list *tg, struct test_result *results, int *n_results)
{
    int longest = 16;
    for (int i = 0; i < pp->count; i++)
        longest = pp->values[i] > longest ? pp->values[i] : longest;
    for (int i = 0; i < tg->count; i++)
        longest = tg->values[i] > longest ? tg->values[i] : longest;
    struct plm_model_info info;
    plm_model_get_info(model, &info);
    struct plm_session_params params = {.n_ctx = longest, .n_threads = threads};
    plm_session *s;
    if (plm_session_new(model, &params, &s))
        return report_error("bench", plm_last_error());
    int32_t *tokens = malloc((size_t)longest * sizeof *tokens);
    double *rates = malloc((size_t)o->reps * sizeof *rates);
    srand(42);
    for (int i = 0; tokens && i < longest; i++)
        tokens[i] = rand() % info.n_vocab;
    /* Warm up: fault the weights in and let the clocks settle. */
    int rc = tokens && rates && plm_decode(s, tokens, 16, NULL) == PLM_OK ? EXIT_OK : EXIT_FAILURE_RUNTIME;

    struct machine_limits limits = {plm_measure_read_bandwidth(threads), plm_measure_peak_float_ops(threads),
                                    plm_measure_peak_int8_ops(threads)};
    for (int k = 0; rc == EXIT_OK && k < pp->count + tg->count; k++) {
        bool gen = k >= pp->count;
        int n = gen ? tg->values[k - pp->count] : pp->values[k];
        struct test_result *r = &results[(*n_results)++];
        snprintf(r->name, sizeof r->name, "%s%d", gen ? "tg" : "pp", n);
        r->threads = threads;
        if (time_test(s, tokens, n, gen, o->reps, rates)) {
            rc = report_error("bench", plm_last_error());
            break;
        }
        summarize(rates, o->reps, r);
        struct plm_token_cost cost;
        plm_model_token_cost(model, n / 2, &cost); /* the average position of the test */
        if (gen) {
            r->limit_kind = "memory read bandwidth";
            r->machine_rate = limits.bandwidth;
            r->limit = limits.bandwidth / (double)(cost.weight_bytes + cost.kv_bytes);
        } else {
            r->limit_kind = cost.quantized ? "peak int8 multiply-add rate" : "peak float multiply-add rate";
            r->machine_rate = cost.quantized ? limits.int8_ops : limits.float_ops;
            /* Only the prompt's last token goes through the output product. */
            double flops = (double)(cost.flops - cost.output_flops) + (double)cost.output_flops / n;
            r->limit = r->machine_rate / flops;
        }
    }
    free(rates);
    free(tokens);
    plm_session_free(s);
    return rc;
}

static void print_table(const char *path, const struct plm_model_info *info, const struct test_result *r, int n)
{
    printf("| model | size | params | threads | test | t/s | limit t/s | of limit | limit from |\n");
    printf("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |\n");
    const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    for (int i = 0; i < n; i++) {
        bool bytes = strstr(r[i].limit_kind, "bandwidth") != NULL;
        printf("| %s | %.1f MiB | %.2f M | %d | %s | %.2f ± %.2f | %.2f | %.0f%% | %s %.1f %s |\n", name,
               info->weight_bytes / 1048576.0, info->n_params / 1e6, r[i].threads, r[i].name, r[i].median,
               r[i].stddev, r[i].limit, 100.0 * r[i].median / r[i].limit, r[i].limit_kind,
               r[i].machine_rate / 1e9, bytes ? "GB/s" : "Gop/s");
    }
}

static void print_json(const char *path, const struct plm_model_info *info, const struct test_result *r, int n)
{
    cJSON *array = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", path);
        cJSON_AddNumberToObject(o, "model_bytes", (double)info->weight_bytes);
        cJSON_AddNumberToObject(o, "n_params", (double)info->n_params);
        cJSON_AddStringToObject(o, "test", r[i].name);
        cJSON_AddNumberToObject(o, "threads", r[i].threads);
        cJSON_AddNumberToObject(o, "tokens_per_s", r[i].median);
        cJSON_AddNumberToObject(o, "stddev", r[i].stddev);
        cJSON_AddStringToObject(o, "limit", r[i].limit_kind);
        cJSON_AddNumberToObject(o, "machine_rate", r[i].machine_rate);
        cJSON_AddNumberToObject(o, "limit_tokens_per_s", r[i].limit);
        cJSON_AddNumberToObject(o, "fraction_of_limit", r[i].median / r[i].limit);
        cJSON_AddItemToArray(array, o);
    }
    char *text = cJSON_Print(array);
    printf("%s\n", text);
    free(text);
    cJSON_Delete(array);
}

int cmd_bench(int argc, char **argv)
{
    struct bench_options o = {.prompt_sizes = "512", .gen_sizes = "128", .reps = 5};
    struct option table[] = {
        {"-m", "--model", OPT_STRING, &o.model_path, "FILE", "GGUF model (required)"},
        {"-t", "--threads", OPT_STRING, &o.threads, "N[,N...]", "thread counts (default: all cores)"},
        {"-p", "--n-prompt", OPT_STRING, &o.prompt_sizes, "N[,N...]", "prompt sizes, 0 = none (default 512)"},
        {"-n", "--n-gen", OPT_STRING, &o.gen_sizes, "N[,N...]", "generated tokens, 0 = none (default 128)"},
        {"-r", "--repetitions", OPT_INT, &o.reps, "N", "repetitions of each test (default 5)"},
        {NULL, "--json", OPT_FLAG, &o.json, NULL, "print a JSON array, one object per test"},
    };
    struct command_spec spec = {"bench", "-m FILE [-t N] [-p 512] [-n 128] [-r REPS] [--json]",
                                "Measures prompt processing (ppN) and generation (tgN) speed: the median of\n"
                                "REPS runs with its standard deviation, and the fraction of this machine's limit\n"
                                "(read bandwidth for generation, peak multiply-add rate for prompts) measured\n"
                                "in the same run.",
                                table, sizeof table / sizeof table[0], NULL, NULL};
    int rc = parse_options(&spec, argc, argv);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    char cores[16];
    snprintf(cores, sizeof cores, "%ld", sysconf(_SC_NPROCESSORS_ONLN));
    struct int_list threads, pp, tg;
    if (!o.model_path || !parse_list(o.threads ? o.threads : cores, &threads, 1) ||
        !parse_list(o.prompt_sizes, &pp, 0) || !parse_list(o.gen_sizes, &tg, 0) || o.reps < 1) {
        fprintf(stderr, "pocketlm bench: need -m FILE; -t, -p and -n take comma-separated numbers; -r at least 1\n");
        return EXIT_USAGE;
    }
    /* A size of 0 means no such test. */
    struct int_list pp_tests = {0}, tg_tests = {0};
    for (int i = 0; i < pp.count; i++)
        if (pp.values[i] > 0)
            pp_tests.values[pp_tests.count++] = pp.values[i];
    for (int i = 0; i < tg.count; i++)
        if (tg.values[i] > 0)
            tg_tests.values[tg_tests.count++] = tg.values[i];
    plm_model *model;
    if (plm_model_load(o.model_path, &model))
        return report_error("bench", plm_last_error());
    struct test_result results[3 * MAX_LIST * MAX_LIST];
    int n_results = 0;
    for (int i = 0; rc == EXIT_OK && i < threads.count; i++)
        rc = bench_threads(&o, model, threads.values[i], &pp_tests, &tg_tests, results, &n_results);
    if (rc == EXIT_OK) {
        struct plm_model_info info;
        plm_model_get_info(model, &info);
        if (o.json)
            print_json(o.model_path, &info, results, n_results);
        else
            print_table(o.model_path, &info, results, n_results);
    }
    plm_model_free(model);
    return rc;
}
