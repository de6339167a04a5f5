/* pocketlm info: what a model file holds and what running it needs. */
#include "commands.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_TYPES 32

static double mib(uint64_t bytes) { return (double)bytes / (1024.0 * 1024.0); }

/* What this process holds before it loads anything: the program and its shared
 * libraries. Any program using the library adds its own, so it is not in the
 * estimate. Read from /proc (Linux, Android), not getrusage: a process's peak
 * there includes its launcher's memory from before exec. 0 when unknown. */
static uint64_t process_baseline_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long total_pages, resident_pages;
    bool parsed = f && fscanf(f, "%llu %llu", &total_pages, &resident_pages) == 2;
    if (f)
        fclose(f);
    long page_size = sysconf(_SC_PAGESIZE);
    return parsed && page_size > 0 ? resident_pages * (uint64_t)page_size : 0;
}

static void print_text_info(const char *path, const struct plm_model_info *info, const struct plm_type_stat *stats,
                            int n_types, int n_ctx, uint64_t session_bytes, uint64_t baseline_bytes)
{
    printf("file:            %s\n", path);
    printf("name:            %s\n", info->name);
    printf("architecture:    %s\n", info->architecture);
    printf("parameters:      %llu (%.2f M)\n", (unsigned long long)info->n_params, info->n_params / 1e6);
    printf("weights:         %.2f MiB, %.2f bits per weight\n", mib(info->weight_bytes),
           info->n_params ? 8.0 * info->weight_bytes / info->n_params : 0.0);
    printf("layers:          %d\n", info->n_layer);
    printf("embedding:       %d\n", info->n_embd);
    printf("feed-forward:    %d\n", info->n_ff);
    printf("heads:           %d query, %d key/value, %d dims each\n", info->n_head, info->n_head_kv, info->head_dim);
    printf("rope base:       %g\n", info->rope_freq_base);
    printf("norm epsilon:    %g\n", info->norm_eps);
    printf("context length:  %d (training)\n", info->n_ctx_train);
    printf("vocabulary:      %d tokens, %s tokenizer, pre-tokenizer %s\n", info->n_vocab, info->tokenizer,
           info->pre_tokenizer);
    printf("chat template:   %s\n", info->chat_template ? "yes" : "none");
    printf("tensor types:\n");
    for (int i = 0; i < n_types; i++)
        printf("  %-6s %4d tensors %12llu weights %10.2f MiB\n", stats[i].type_name, stats[i].n_tensors,
               (unsigned long long)stats[i].n_elements, mib(stats[i].bytes));
    printf("memory at context %d: %.2f MiB weights (mapped) + %.2f MiB model tables (vocabulary, metadata) + "
           "%.2f MiB session (KV cache, scratch) = %.2f MiB\n",
           n_ctx, mib(info->weight_bytes), mib(info->host_bytes), mib(session_bytes),
           mib(info->weight_bytes + info->host_bytes + session_bytes));
    if (baseline_bytes)
        printf("  plus the program itself: pocketlm's code and libraries took %.2f MiB before loading the model\n",
               mib(baseline_bytes));
    else
        printf("  plus the program itself: pocketlm's code and libraries\n");
}

static void print_json_info(const char *path, const struct plm_model_info *info, const struct plm_type_stat *stats,
                            int n_types, int n_ctx, uint64_t session_bytes, uint64_t baseline_bytes)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "file", path);
    cJSON_AddStringToObject(root, "name", info->name);
    cJSON_AddStringToObject(root, "architecture", info->architecture);
    cJSON_AddNumberToObject(root, "n_params", (double)info->n_params);
    cJSON_AddNumberToObject(root, "weight_bytes", (double)info->weight_bytes);
    cJSON_AddNumberToObject(root, "n_layer", info->n_layer);
    cJSON_AddNumberToObject(root, "n_embd", info->n_embd);
    cJSON_AddNumberToObject(root, "n_ff", info->n_ff);
    cJSON_AddNumberToObject(root, "n_head", info->n_head);
    cJSON_AddNumberToObject(root, "n_head_kv", info->n_head_kv);
    cJSON_AddNumberToObject(root, "head_dim", info->head_dim);
    cJSON_AddNumberToObject(root, "rope_freq_base", info->rope_freq_base);
    cJSON_AddNumberToObject(root, "norm_eps", info->norm_eps);
    cJSON_AddNumberToObject(root, "n_ctx_train", info->n_ctx_train);
    cJSON_AddNumberToObject(root, "n_vocab", info->n_vocab);
    cJSON_AddStringToObject(root, "tokenizer", info->tokenizer);
    cJSON_AddStringToObject(root, "pre_tokenizer", info->pre_tokenizer);
    if (info->chat_template)
        cJSON_AddStringToObject(root, "chat_template", info->chat_template);
    else
        cJSON_AddNullToObject(root, "chat_template");
    cJSON *types = cJSON_AddArrayToObject(root, "tensor_types");
    for (int i = 0; i < n_types; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "type", stats[i].type_name);
        cJSON_AddNumberToObject(t, "tensors", stats[i].n_tensors);
        cJSON_AddNumberToObject(t, "weights", (double)stats[i].n_elements);
        cJSON_AddNumberToObject(t, "bytes", (double)stats[i].bytes);
        cJSON_AddItemToArray(types, t);
    }
    cJSON *memory = cJSON_AddObjectToObject(root, "memory");
    cJSON_AddNumberToObject(memory, "n_ctx", n_ctx);
    cJSON_AddNumberToObject(memory, "weights_bytes", (double)info->weight_bytes);
    cJSON_AddNumberToObject(memory, "host_bytes", (double)info->host_bytes);
    cJSON_AddNumberToObject(memory, "session_bytes", (double)session_bytes);
    cJSON_AddNumberToObject(memory, "total_bytes", (double)(info->weight_bytes + info->host_bytes + session_bytes));
    cJSON_AddNumberToObject(memory, "program_bytes", (double)baseline_bytes);
    char *text = cJSON_Print(root);
    printf("%s\n", text);
    free(text);
    cJSON_Delete(root);
}

int cmd_info(int argc, char **argv)
{
    const char *path = NULL;
    bool json = false;
    int n_ctx = 0;
    const char *kv_type = NULL;
    struct option table[] = {
        {NULL, "--json", OPT_FLAG, &json, NULL, "print JSON instead of text"},
        {"-c", "--ctx-size", OPT_INT, &n_ctx, "N", "context for the memory estimate (default: the model's)"},
        {NULL, "--ctx", OPT_INT, &n_ctx, "N", "same as --ctx-size"},
        {NULL, "--kv-type", OPT_STRING, &kv_type, "TYPE", "KV cache type for the estimate: f32, f16 or q8_0"},
    };
    struct command_spec spec = {"info", "FILE [--json] [-c CTX]",
                                "Shows a model's architecture, parameters, tensor types and the memory it needs.",
                                table, sizeof table / sizeof table[0], &path, NULL};
    int rc = parse_options(&spec, argc, argv);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (!path) {
        fprintf(stderr, "pocketlm info: no model file given\n");
        return EXIT_USAGE;
    }
    struct plm_session_params params = {0};
    if (!parse_kv_type("info", kv_type, &params.kv_type))
        return EXIT_USAGE;
    uint64_t baseline_bytes = process_baseline_bytes();
    plm_model *model;
    if (plm_model_load(path, &model))
        return report_error("info", plm_last_error());
    struct plm_model_info info;
    plm_model_get_info(model, &info);
    struct plm_type_stat stats[MAX_TYPES];
    int n_types = plm_model_type_stats(model, stats, MAX_TYPES);
    params.n_ctx = n_ctx > 0 ? n_ctx : info.n_ctx_train;
    uint64_t session_bytes = plm_session_memory_needed(model, &params);
    if (json)
        print_json_info(path, &info, stats, n_types, params.n_ctx, session_bytes, baseline_bytes);
    else
        print_text_info(path, &info, stats, n_types, params.n_ctx, session_bytes, baseline_bytes);
    plm_model_free(model);
    return EXIT_OK;
}
