/* pocketlm fit: which models fit which devices, at what context and speed. */
#include "commands.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Threads an app would decode with when -t is not given: the big cores of a
 * phone SoC. Only the scratch memory depends on it, and only a little. */
#define DEFAULT_THREADS 4

struct fit_options {
    const char *device;       /* id, "all" or NULL (all) */
    const char *devices_path; /* NULL: the built-in profiles */
    const char *kv_type;
    int n_ctx;                /* 0: the model's training context, at most 4096 */
    int n_threads;
    bool list_devices;
    bool json;
};

/* One model on one device. */
struct fit_row {
    const char *path;
    const struct plm_device *device;
    uint64_t weight_bytes;
    int n_ctx;
    int n_ctx_train;
    int max_ctx; /* the largest context that fits, at most the training context */
    struct plm_device_fit fit;
};

/* "512.3 MiB", "3.21 GiB"; with sign, "+3.21 GiB" / "-0.52 GiB". */
static const char *format_bytes(char *buf, size_t size, double bytes, bool sign)
{
    const char *prefix = !sign ? "" : bytes < 0 ? "-" : "+";
    double magnitude = bytes < 0 ? -bytes : bytes;
    if (magnitude < 1024.0 * 1024 * 1024)
        snprintf(buf, size, "%s%.1f MiB", prefix, magnitude / (1024.0 * 1024));
    else
        snprintf(buf, size, "%s%.2f GiB", prefix, magnitude / (1024.0 * 1024 * 1024));
    return buf;
}

static const char *kv_type_name(enum plm_kv_type kv_type)
{
    return kv_type == PLM_KV_F16 ? "f16" : kv_type == PLM_KV_Q8_0 ? "q8_0" : "f32";
}

static void print_device_list_markdown(const plm_device_list *devices)
{
    char ram[32], app[32];
    printf("| id | device | SoC | memory | RAM | app memory | bandwidth |\n");
    printf("| --- | --- | --- | --- | ---: | ---: | ---: |\n");
    for (int i = 0; i < plm_devices_count(devices); i++) {
        const struct plm_device *d = plm_devices_get(devices, i);
        printf("| %s | %s | %s | %s | %s | %s | %.1f GB/s |\n", d->id, d->name, d->soc, d->memory_type,
               format_bytes(ram, sizeof ram, (double)d->ram_bytes, false),
               format_bytes(app, sizeof app, (double)d->app_memory_bytes, false), d->bandwidth / 1e9);
    }
    printf("\nSources:\n\n");
    for (int i = 0; i < plm_devices_count(devices); i++) {
        const struct plm_device *d = plm_devices_get(devices, i);
        printf("- %s: %s%s%s\n", d->id, d->source, d->notes[0] ? " Note: " : "", d->notes);
    }
}

static cJSON *device_json(const struct plm_device *d)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", d->id);
    cJSON_AddStringToObject(o, "name", d->name);
    cJSON_AddStringToObject(o, "soc", d->soc);
    cJSON_AddStringToObject(o, "memory_type", d->memory_type);
    cJSON_AddNumberToObject(o, "ram_bytes", (double)d->ram_bytes);
    cJSON_AddNumberToObject(o, "app_memory_bytes", (double)d->app_memory_bytes);
    cJSON_AddNumberToObject(o, "bandwidth_bytes_per_s", d->bandwidth);
    cJSON_AddStringToObject(o, "source", d->source);
    cJSON_AddStringToObject(o, "notes", d->notes);
    return o;
}

static void print_json_and_free(cJSON *root)
{
    char *text = cJSON_Print(root);
    printf("%s\n", text);
    free(text);
    cJSON_Delete(root);
}

static void print_device_list_json(const plm_device_list *devices)
{
    cJSON *root = cJSON_CreateArray();
    for (int i = 0; i < plm_devices_count(devices); i++)
        cJSON_AddItemToArray(root, device_json(plm_devices_get(devices, i)));
    print_json_and_free(root);
}

static void print_rows_markdown(const struct fit_row *rows, int n_rows, bool one_device, enum plm_kv_type kv_type)
{
    char weights[32], need[32], app[32], margin[32];
    if (one_device) {
        const struct plm_device *d = rows[0].device;
        printf("%s (%s): app memory %s, bandwidth %.1f GB/s; KV cache %s\n\n", d->name, d->id,
               format_bytes(app, sizeof app, (double)d->app_memory_bytes, false), d->bandwidth / 1e9,
               kv_type_name(kv_type));
    }
    printf("| device | model | weights | context | memory needed | app memory | fits | margin | max context "
           "| max tokens/s |\n");
    printf("| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |\n");
    for (int i = 0; i < n_rows; i++) {
        const struct fit_row *r = &rows[i];
        double margin_bytes = (double)r->device->app_memory_bytes - (double)r->fit.memory_needed;
        printf("| %s | %s | %s | %d | %s | %s | %s | %s | %d | %.1f |\n", r->device->id, r->path,
               format_bytes(weights, sizeof weights, (double)r->weight_bytes, false), r->n_ctx,
               format_bytes(need, sizeof need, (double)r->fit.memory_needed, false),
               format_bytes(app, sizeof app, (double)r->device->app_memory_bytes, false),
               r->fit.fits ? "yes" : "no", format_bytes(margin, sizeof margin, margin_bytes, true), r->max_ctx,
               r->fit.max_tokens_per_s);
    }
}

static void print_rows_json(const struct fit_row *rows, int n_rows, enum plm_kv_type kv_type)
{
    cJSON *root = cJSON_CreateArray();
    for (int i = 0; i < n_rows; i++) {
        const struct fit_row *r = &rows[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "file", r->path);
        cJSON_AddStringToObject(o, "device", r->device->id);
        cJSON_AddNumberToObject(o, "weight_bytes", (double)r->weight_bytes);
        cJSON_AddNumberToObject(o, "n_ctx", r->n_ctx);
        cJSON_AddStringToObject(o, "kv_type", kv_type_name(kv_type));
        cJSON_AddNumberToObject(o, "memory_needed", (double)r->fit.memory_needed);
        cJSON_AddNumberToObject(o, "app_memory_bytes", (double)r->device->app_memory_bytes);
        cJSON_AddBoolToObject(o, "fits", r->fit.fits);
        cJSON_AddNumberToObject(o, "margin_bytes",
                                (double)r->device->app_memory_bytes - (double)r->fit.memory_needed);
        cJSON_AddNumberToObject(o, "max_ctx", r->max_ctx);
        cJSON_AddNumberToObject(o, "n_ctx_train", r->n_ctx_train);
        cJSON_AddNumberToObject(o, "max_tokens_per_s", r->fit.max_tokens_per_s);
        cJSON_AddItemToArray(root, o);
    }
    print_json_and_free(root);
}

/* Fills one row per device for a loaded model. */
static void fit_model(const char *path, const plm_model *model, const struct fit_options *opts,
                      enum plm_kv_type kv_type, const struct plm_device *const *targets, int n_targets,
                      struct fit_row *rows)
{
    struct plm_model_info info;
    plm_model_get_info(model, &info);
    int default_ctx = info.n_ctx_train < 4096 ? info.n_ctx_train : 4096;
    struct plm_session_params params = {.n_ctx = opts->n_ctx > 0 ? opts->n_ctx : default_ctx,
                                        .n_threads = opts->n_threads, .kv_type = kv_type};
    for (int i = 0; i < n_targets; i++) {
        struct fit_row *r = &rows[i];
        r->path = path;
        r->device = targets[i];
        r->weight_bytes = info.weight_bytes;
        r->n_ctx = params.n_ctx;
        r->n_ctx_train = info.n_ctx_train;
        int fitting = plm_session_max_ctx(model, &params, targets[i]->app_memory_bytes);
        r->max_ctx = fitting < info.n_ctx_train ? fitting : info.n_ctx_train;
        plm_device_fit(targets[i], model, &params, &r->fit);
    }
}

/* Loads every model and fits it to every target; prints the table. */
static int fit_models(const char *const *paths, int n_paths, const struct fit_options *opts, enum plm_kv_type kv_type,
                      const struct plm_device *const *targets, int n_targets, bool one_device)
{
    struct fit_row *rows = calloc((size_t)n_paths * (size_t)n_targets, sizeof *rows);
    if (!rows)
        return report_error("fit", "out of memory");
    for (int m = 0; m < n_paths; m++) {
        plm_model *model;
        if (plm_model_load(paths[m], &model)) {
            free(rows);
            return report_error("fit", plm_last_error());
        }
        fit_model(paths[m], model, opts, kv_type, targets, n_targets, rows + (size_t)m * n_targets);
        plm_model_free(model);
    }
    if (opts->json)
        print_rows_json(rows, n_paths * n_targets, kv_type);
    else
        print_rows_markdown(rows, n_paths * n_targets, one_device, kv_type);
    free(rows);
    return EXIT_OK;
}

/* The devices to fit: one by id, or all of them. */
static int select_devices(const plm_device_list *devices, const char *name, const struct plm_device ***targets,
                          int *n_targets)
{
    bool all = !name || strcasecmp(name, "all") == 0;
    int n = all ? plm_devices_count(devices) : 1;
    *targets = malloc(sizeof **targets * (size_t)n);
    if (!*targets)
        return report_error("fit", "out of memory");
    for (int i = 0; i < n; i++)
        (*targets)[i] = all ? plm_devices_get(devices, i) : plm_devices_find(devices, name);
    if (!(*targets)[0]) {
        fprintf(stderr, "pocketlm fit: %s\n", plm_last_error());
        return EXIT_USAGE;
    }
    *n_targets = n;
    return EXIT_OK;
}

int cmd_fit(int argc, char **argv)
{
    struct fit_options opts = {.n_threads = DEFAULT_THREADS};
    struct string_list models = {0};
    struct option table[] = {
        {NULL, "--device", OPT_STRING, &opts.device, "NAME", "device id (see --list-devices), or 'all' (default)"},
        {"-c", "--ctx-size", OPT_INT, &opts.n_ctx, "N", "context to check (default: the model's, at most 4096)"},
        {NULL, "--kv-type", OPT_STRING, &opts.kv_type, "TYPE", "KV cache type: f32 (default), f16 or q8_0"},
        {"-t", "--threads", OPT_INT, &opts.n_threads, "N", "threads the app would use (default 4)"},
        {NULL, "--devices", OPT_STRING, &opts.devices_path, "FILE",
         "device profiles (JSON) to use instead of the built-in ones"},
        {NULL, "--list-devices", OPT_FLAG, &opts.list_devices, NULL,
         "list the device profiles with their figures and sources"},
        {NULL, "--json", OPT_FLAG, &opts.json, NULL, "print JSON instead of Markdown tables"},
    };
    struct command_spec spec = {
        "fit", "[--device NAME|all] MODEL... [-c CTX] [--kv-type TYPE] [--devices FILE] [--json]\n"
               "       pocketlm fit --list-devices [--devices FILE] [--json]",
        "Says whether models fit the memory an app may use on a device at a given context, the largest\n"
        "context that fits, and the decode speed the device's memory bandwidth allows at most.",
        table, sizeof table / sizeof table[0], NULL, &models};
    int rc = parse_options(&spec, argc, argv);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    int n_models = models.count;
    enum plm_kv_type kv_type;
    if (!parse_kv_type("fit", opts.kv_type, &kv_type))
        return EXIT_USAGE;
    if (opts.n_ctx < 0 || opts.n_threads < 1) {
        fprintf(stderr, "pocketlm fit: -c cannot be negative and -t must be at least 1 (see pocketlm fit --help)\n");
        return EXIT_USAGE;
    }
    if (opts.list_devices == (n_models > 0)) {
        fprintf(stderr, "pocketlm fit: give MODEL files or --list-devices, not %s (see pocketlm fit --help)\n",
                n_models ? "both" : "neither");
        return EXIT_USAGE;
    }

    plm_device_list *devices;
    if (plm_devices_load(opts.devices_path, &devices))
        return report_error("fit", plm_last_error());
    if (opts.list_devices) {
        if (opts.json)
            print_device_list_json(devices);
        else
            print_device_list_markdown(devices);
        plm_devices_free(devices);
        return EXIT_OK;
    }
    const struct plm_device **targets = NULL;
    int n_targets = 0;
    bool one_device = opts.device && strcasecmp(opts.device, "all") != 0;
    rc = select_devices(devices, opts.device, &targets, &n_targets);
    if (rc == EXIT_OK)
        rc = fit_models(models.items, n_models, &opts, kv_type, targets, n_targets, one_device);
    free(targets);
    plm_devices_free(devices);
    return rc;
}
