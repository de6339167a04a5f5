/* pocketlm synth: random-weight GGUF files with the exact shapes of real models. */
#include "commands.h"

#include <stdio.h>
#include <sys/stat.h>

static void print_note(void *user, const char *note)
{
    (void)user;
    fprintf(stderr, "pocketlm synth: %s\n", note);
}

int cmd_synth(int argc, char **argv)
{
    struct plm_synth_params params = {.seed = 1, .on_note = print_note};
    const char *out = NULL;
    int n_layer = -1; /* not given: all */
    char summary[512];
    int n = snprintf(summary, sizeof summary,
                     "Writes a GGUF file with random weights and the exact shape of a real model, to\n"
                     "measure speed and memory at real sizes. SHAPE is one of\n ");
    for (int i = 0; plm_synth_shape_name(i) && n < (int)sizeof summary; i++)
        n += snprintf(summary + n, sizeof summary - (size_t)n, "%s%s", i ? ", " : " ",
                      plm_synth_shape_name(i));
    struct option table[] = {
        {NULL, "--type", OPT_STRING, &params.type, "TYPE",
         "matrix type: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K..Q6_K (required)"},
        {"-o", "--outfile", OPT_STRING, &out, "OUT.gguf", "where to write the file (required)"},
        {NULL, "--vocab", OPT_STRING, &params.vocab_path, "VOCAB.gguf",
         "vocab-only GGUF to take the tokenizer from (default: byte tokens)"},
        {"-s", "--seed", OPT_U64, &params.seed, "S", "random seed (default 1)"},
        {NULL, "--layers", OPT_INT, &n_layer, "N", "keep only the first N layers (default: all)"},
    };
    const char *shape = NULL;
    struct command_spec spec = {"synth", "SHAPE --type TYPE -o OUT.gguf [--vocab VOCAB.gguf] [--seed S] [--layers N]",
                                summary, table, 5, &shape, NULL};
    int rc = parse_options(&spec, argc, argv);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (!shape || !params.type || !out) {
        fprintf(stderr, "pocketlm synth: need SHAPE, --type TYPE and -o OUT.gguf (see pocketlm synth --help)\n");
        return EXIT_USAGE;
    }
    if (n_layer != -1 && n_layer < 1) {
        fprintf(stderr, "pocketlm synth: --layers must be at least 1, not %d\n", n_layer);
        return EXIT_USAGE;
    }
    params.shape = shape;
    params.n_layer = n_layer == -1 ? 0 : n_layer;

    double start = plm_seconds_now();
    rc = plm_synth(&params, out);
    if (rc) {
        report_error("synth", plm_last_error());
        /* An unknown shape or type or too many layers is a bad command line. */
        return rc == PLM_ERR_ARG ? EXIT_USAGE : EXIT_FAILURE_RUNTIME;
    }
    struct stat st;
    double mib = stat(out, &st) == 0 ? (double)st.st_size / (1024.0 * 1024.0) : 0.0;
    fprintf(stderr, "pocketlm synth: wrote %s (%.1f MiB) in %.1f s\n", out, mib, plm_seconds_now() - start);
    return EXIT_OK;
}
