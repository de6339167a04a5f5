/* pocketlm quantize: a model's weight matrices re-encoded in fewer bits (see plm_quantize). */
#include "commands.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static void print_note(void *user, const char *note)
{
    (void)user;
    fprintf(stderr, "%s\n", note);
}

static void print_types(void)
{
    const char *name, *description;
    for (int i = 0; (name = plm_quantize_preset_name(i, &description)) != NULL; i++)
        printf("  %-7s %s\n", name, description);
}

/* The model's heap tables (vocabulary, lookup tables): host_bytes less the
 * file's metadata section, which the file size the target limits already
 * holds. The quantized file keeps the input's vocabulary, so the input's
 * tables are the output's. */
static uint64_t heap_tables(const char *path, const struct plm_model_info *info)
{
    struct stat st;
    if (stat(path, &st) != 0 || (uint64_t)st.st_size < info->weight_bytes)
        return info->host_bytes;
    uint64_t metadata = (uint64_t)st.st_size - info->weight_bytes;
    return info->host_bytes > metadata ? info->host_bytes - metadata : 0;
}

/* The weight budget on a device: its app memory less what the model's tables
 * and a session at the chosen context need besides the mapped file (measured
 * on the input), so that `fit` agrees that the result fits. */
static int device_target(const char *device_id, const char *devices_path, const char *in_path, int n_ctx,
                         int n_threads, uint64_t *target)
{
    plm_device_list *devices;
    if (plm_devices_load(devices_path, &devices))
        return report_error("quantize", plm_last_error());
    const struct plm_device *device = plm_devices_find(devices, device_id);
    if (!device) {
        report_error("quantize", plm_last_error());
        plm_devices_free(devices);
        return EXIT_USAGE;
    }
    plm_model *model;
    if (plm_model_load(in_path, &model)) {
        plm_devices_free(devices);
        return report_error("quantize", plm_last_error());
    }
    struct plm_model_info info;
    plm_model_get_info(model, &info);
    struct plm_session_params params = {
        .n_ctx = n_ctx > 0 ? n_ctx : info.n_ctx_train < 4096 ? info.n_ctx_train : 4096,
        .n_threads = n_threads,
    };
    uint64_t session = plm_session_memory_needed(model, &params);
    uint64_t tables = heap_tables(in_path, &info);
    double mib = 1024.0 * 1024.0;
    int rc = EXIT_OK;
    if (device->app_memory_bytes <= session + tables) {
        fprintf(stderr, "pocketlm quantize: %s: a session with a %d-token context and the model's tables need "
                        "%.1f MiB, all of the %.1f MiB an app may use (try a smaller -c)\n",
                device->name, params.n_ctx, (session + tables) / mib, device->app_memory_bytes / mib);
        rc = EXIT_FAILURE_RUNTIME;
    } else {
        *target = device->app_memory_bytes - session - tables;
        fprintf(stderr, "pocketlm quantize: %s: %.1f MiB for an app, less %.1f MiB for a session with a "
                        "%d-token context and %.1f MiB for the model's tables: target %llu bytes (%.1f MiB)\n",
                device->name, device->app_memory_bytes / mib, session / mib, params.n_ctx, tables / mib,
                (unsigned long long)*target, *target / mib);
    }
    plm_model_free(model);
    plm_devices_free(devices);
    return rc;
}

int cmd_quantize(int argc, char **argv)
{
    struct plm_quantize_params params = {.on_note = print_note};
    struct string_list tensor_types = {0};
    const char *target_size = NULL, *device = NULL, *devices_path = NULL;
    int n_ctx = 0;
    bool list_types = false;
    struct option table[] = {
        {NULL, "--type", OPT_STRING, &params.type, "TYPE",
         "preset or single type (listed above); optional with a target size"},
        {NULL, "--tensor-type", OPT_LIST, &tensor_types, "PATTERN=TYPE",
         "type of the matrices whose name matches the glob (repeatable, last match wins)"},
        {NULL, "--imatrix", OPT_STRING, &params.imatrix_path, "FILE",
         "importance matrix from `pocketlm calibrate`: weighs the rounding errors"},
        {NULL, "--target-size", OPT_STRING, &target_size, "BYTES",
         "choose a type per matrix to fit BYTES (K/M/G suffixes) with the least KLD"},
        {NULL, "--device", OPT_STRING, &device, "NAME",
         "target size: what the device leaves for the weights at context -c"},
        {NULL, "--devices", OPT_STRING, &devices_path, "FILE", "device profiles (default: the built-in ones)"},
        {"-c", "--ctx-size", OPT_INT, &n_ctx, "N", "context for --device (default: the model's, at most 4096)"},
        {"-t", "--threads", OPT_INT, &params.n_threads, "N", "threads (default: all cores)"},
        {NULL, "--list-types", OPT_FLAG, &list_types, NULL, "list the presets and exit"},
    };
    char summary[4096];
    int n = snprintf(summary, sizeof summary,
                     "Re-encodes the weight matrices of IN.gguf in other types and writes OUT.gguf\n"
                     "(metadata, tokenizer and 1-D tensors are copied). Rows that are not whole blocks\n"
                     "of a type fall back to a type that fits, with a note. Presets (--type):\n");
    const char *name, *description;
    for (int i = 0; (name = plm_quantize_preset_name(i, &description)) != NULL; i++)
        if (n < (int)sizeof summary)
            n += snprintf(summary + n, sizeof summary - (size_t)n, "  %-7s %s\n", name, description);
    struct string_list paths = {0};
    struct command_spec spec = {"quantize",
                                "IN.gguf OUT.gguf --type TYPE [--tensor-type PATTERN=TYPE]... [--imatrix FILE]\n"
                                "       [--target-size BYTES | --device NAME [--devices FILE] [-c CTX]] [-t N]",
                                summary, table, (int)(sizeof table / sizeof table[0]), NULL, &paths};
    int rc = parse_options(&spec, argc, argv);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (list_types) {
        print_types();
        return EXIT_OK;
    }
    if (paths.count != 2) {
        fprintf(stderr, "pocketlm quantize: need IN.gguf and OUT.gguf (see pocketlm quantize --help)\n");
        return EXIT_USAGE;
    }
    const char *in = paths.items[0], *out = paths.items[1];
    if (target_size && device) {
        fprintf(stderr, "pocketlm quantize: --target-size and --device both set the target: give one\n");
        return EXIT_USAGE;
    }
    if ((devices_path || n_ctx) && !device) {
        fprintf(stderr, "pocketlm quantize: --devices and -c go with --device\n");
        return EXIT_USAGE;
    }
    if (n_ctx < 0 || params.n_threads < 0) {
        fprintf(stderr, "pocketlm quantize: -c and -t must not be negative\n");
        return EXIT_USAGE;
    }
    if (target_size && (!parse_bytes(target_size, &params.target_bytes) || params.target_bytes == 0)) {
        fprintf(stderr, "pocketlm quantize: --target-size expects bytes such as 1500000000, 512M or 2G, not '%s'\n",
                target_size);
        return EXIT_USAGE;
    }
    if (device && (rc = device_target(device, devices_path, in, n_ctx, params.n_threads, &params.target_bytes)))
        return rc;
    params.tensor_types = tensor_types.items;
    params.n_tensor_types = tensor_types.count;

    rc = plm_quantize(in, out, &params);
    if (rc) {
        report_error("quantize", plm_last_error());
        /* An unknown type, a malformed pattern or a missing imatrix is a bad command line. */
        return rc == PLM_ERR_ARG ? EXIT_USAGE : EXIT_FAILURE_RUNTIME;
    }
    fprintf(stderr, "pocketlm quantize: wrote %s\n", out);
    return EXIT_OK;
}
