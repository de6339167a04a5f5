/* pocketlm calibrate: an importance matrix (and sensitivities) from sample text (see plm_calibrate). */
#include "commands.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* On a terminal one progress line rewritten in place; elsewhere (a log) one
 * line per finished phase. */
static void print_progress(void *user, const char *what, int done, int total)
{
    (void)user;
    bool terminal = isatty(STDERR_FILENO);
    if (terminal)
        fprintf(stderr, "\r\033[K[%d/%d] %s", done, total, what);
    if (done == total && terminal)
        fputc('\n', stderr);
    else if (done == total)
        fprintf(stderr, "[%d/%d] %s\n", done, total, what);
    fflush(stderr);
}

/* Counts the matrices written; with sensitivities, one table row each. */
static void print_matrix(void *user, const char *tensor_name, const char *const *type_names, const float *kld,
                         int n_types)
{
    int *n_matrices = user;
    if (n_types > 0) {
        if (*n_matrices == 0) {
            printf("%-28s", "mean KLD when quantized");
            for (int i = 0; i < n_types; i++)
                printf(" %9s", type_names[i]);
            printf("\n");
        }
        printf("%-28s", tensor_name);
        for (int i = 0; i < n_types; i++)
            printf(" %9.2e", kld[i]);
        printf("\n");
    }
    (*n_matrices)++;
}

/* The output's directory must be writable before an hour of work, not after. */
static bool output_writable(const char *path)
{
    char *copy = strdup(path);
    bool ok = copy && access(dirname(copy), W_OK) == 0 && (access(path, F_OK) != 0 || access(path, W_OK) == 0);
    free(copy);
    return ok;
}

static int calibrate(plm_model *model, const char *text_path, const char *out, struct plm_calibrate_params *p)
{
    size_t len;
    char *text = read_text_file(text_path, &len);
    if (!text) {
        fprintf(stderr, "pocketlm calibrate: cannot read '%s'\n", text_path);
        return EXIT_FAILURE_RUNTIME;
    }
    if (len == 0) {
        free(text);
        fprintf(stderr, "pocketlm calibrate: '%s' is empty\n", text_path);
        return EXIT_FAILURE_RUNTIME;
    }
    int32_t *tokens;
    int n_tokens = tokenize_text("calibrate", model, text, len, true, false, &tokens);
    free(text);
    if (n_tokens < 0)
        return EXIT_FAILURE_RUNTIME;
    if (n_tokens < p->n_ctx) {
        free(tokens);
        fprintf(stderr, "pocketlm calibrate: needs at least %d tokens (one chunk of -c %d), the text has %d\n",
                p->n_ctx, p->n_ctx, n_tokens);
        return EXIT_FAILURE_RUNTIME;
    }
    int n_chunks = n_tokens / p->n_ctx;
    if (p->max_chunks > 0 && p->max_chunks < n_chunks)
        n_chunks = p->max_chunks;
    fprintf(stderr, "pocketlm calibrate: %d tokens, %d chunks of %d%s\n", n_tokens, n_chunks, p->n_ctx,
            p->sensitivity ? ", with sensitivities" : "");
    int n_matrices = 0;
    p->tokens = tokens;
    p->n_tokens = n_tokens;
    p->user = &n_matrices;
    double start = plm_seconds_now();
    int rc = plm_calibrate(model, p, out);
    free(tokens);
    if (rc)
        return report_error("calibrate", plm_last_error());
    printf("%d chunks of %d tokens (%d tokens), %d matrices, %.1f s -> %s\n", n_chunks, p->n_ctx,
           n_chunks * p->n_ctx, n_matrices, plm_seconds_now() - start, out);
    return EXIT_OK;
}

int cmd_calibrate(int argc, char **argv)
{
    const char *model_path = NULL, *positional = NULL, *text_path = NULL, *out = NULL;
    struct plm_calibrate_params p = {.n_ctx = 512, .on_progress = print_progress, .on_matrix = print_matrix};
    struct option table[] = {
        {"-m", "--model", OPT_STRING, &model_path, "FILE", "GGUF model file (or give it first, without -m)"},
        {"-f", "--text", OPT_STRING, &text_path, "TEXT", "calibration text file (required)"},
        {"-o", "--outfile", OPT_STRING, &out, "IMATRIX.gguf", "where to write the importance matrix (required)"},
        {"-c", "--ctx-size", OPT_INT, &p.n_ctx, "N", "tokens per chunk (default 512)"},
        {NULL, "--chunks", OPT_INT, &p.max_chunks, "N", "use at most N chunks (default: all)"},
        {NULL, "--sensitivity", OPT_FLAG, &p.sensitivity, NULL,
         "also measure each matrix's KL divergence per quantization type (slow)"},
        {"-t", "--threads", OPT_INT, &p.n_threads, "N", "threads (default: all cores)"},
    };
    struct command_spec spec = {
        "calibrate", "MODEL --text TEXT -o IMATRIX.gguf [-c CTX] [--chunks N] [--sensitivity] [-t N]",
        "Runs the model over the text in chunks of CTX tokens (each starting with BOS) and writes\n"
        "each weight matrix's per-input-channel sum of squared activations (llama.cpp's imatrix\n"
        "layout), which `quantize --imatrix` uses to weight rounding errors. --sensitivity also\n"
        "measures, for every matrix and quantization type, the mean KL divergence of the\n"
        "next-token distribution when only that matrix is quantized: one pass over the text per\n"
        "matrix and type. Progress goes to stderr; the summary (and the table) to stdout.",
        table, 7, &positional, NULL};
    int rc = parse_options(&spec, argc, argv);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (model_path && positional) {
        fprintf(stderr, "pocketlm calibrate: the model is given twice ('%s' and -m '%s')\n", positional, model_path);
        return EXIT_USAGE;
    }
    model_path = model_path ? model_path : positional;
    if (!model_path || !text_path || !out) {
        fprintf(stderr, "pocketlm calibrate: need MODEL, --text TEXT and -o IMATRIX.gguf (see --help)\n");
        return EXIT_USAGE;
    }
    if (p.n_ctx < 4 || p.max_chunks < 0 || p.n_threads < 0) {
        fprintf(stderr, "pocketlm calibrate: -c must be at least 4, --chunks and -t not negative\n");
        return EXIT_USAGE;
    }
    if (!output_writable(out)) {
        fprintf(stderr, "pocketlm calibrate: cannot write '%s'\n", out);
        return EXIT_FAILURE_RUNTIME;
    }
    plm_model *model;
    if (plm_model_load(model_path, &model))
        return report_error("calibrate", plm_last_error());
    rc = calibrate(model, text_path, out, &p);
    plm_model_free(model);
    return rc;
}
