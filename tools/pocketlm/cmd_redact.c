/* pocketlm redact: personal data replaced by placeholders (see plm_redact). */
#include "commands.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The terms file: one term per line; empty lines and lines starting with '#'
 * are skipped. The terms point into *buffer. */
static int read_terms(const char *path, char **buffer, const char ***terms, int *n_terms)
{
    size_t len;
    *buffer = read_text_file(path, &len);
    if (!*buffer) {
        fprintf(stderr, "pocketlm redact: cannot read terms file '%s'\n", path);
        return EXIT_FAILURE_RUNTIME;
    }
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += (*buffer)[i] == '\n';
    *terms = calloc(lines, sizeof **terms);
    if (!*terms)
        return report_error("redact", "out of memory for the terms");
    *n_terms = 0;
    for (char *line = *buffer; line;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        size_t n = strlen(line);
        if (n > 0 && line[n - 1] == '\r')
            line[--n] = '\0';
        if (n > 0 && line[0] != '#')
            (*terms)[(*n_terms)++] = line;
        line = next;
    }
    return EXIT_OK;
}

static void print_json(const char *text, size_t len, const struct plm_redact_stats *stats)
{
    cJSON *root = cJSON_CreateObject();
    char *copy = malloc(len + 1);
    if (copy) {
        memcpy(copy, text, len);
        copy[len] = '\0';
    }
    cJSON_AddStringToObject(root, "text", copy ? copy : "");
    cJSON *counts = cJSON_AddObjectToObject(root, "counts");
    for (int t = 0; t < PLM_REDACT_N_TYPES; t++)
        cJSON_AddNumberToObject(counts, plm_redact_type_name(t), stats->counts[t]);
    char *json = cJSON_Print(root);
    printf("%s\n", json ? json : "{}");
    free(json);
    free(copy);
    cJSON_Delete(root);
}

static void print_miss(void *user, int line, const char *what, int type, const char *text, size_t start, size_t end)
{
    (void)user;
    fprintf(stderr, "line %d: %s %s '%.*s'\n", line, what, plm_redact_type_name(type), (int)(end - start),
            text + start);
}

static int evaluate(const char *corpus, bool verbose)
{
    struct plm_redact_eval eval;
    if (plm_redact_evaluate(corpus, &eval, verbose ? print_miss : NULL, NULL))
        return report_error("redact", plm_last_error());
    char *table = plm_redact_eval_table(&eval);
    if (!table)
        return report_error("redact", "out of memory for the table");
    printf("%s", table);
    free(table);
    fprintf(stderr, "pocketlm redact: %d items in %.3f s\n", eval.n_items, eval.seconds);
    return EXIT_OK;
}

static int redact_file(const char *path, const char *const *terms, int n_terms, bool json)
{
    size_t len;
    char *text = read_text_file(strcmp(path, "-") == 0 ? "/dev/stdin" : path, &len);
    if (!text) {
        fprintf(stderr, "pocketlm redact: cannot read '%s'\n", path);
        return EXIT_FAILURE_RUNTIME;
    }
    struct plm_redact_config config = {.terms = terms, .n_terms = n_terms};
    plm_redactor *redactor;
    char *out = NULL;
    size_t out_len;
    struct plm_redact_stats stats;
    int rc = plm_redactor_new(&config, &redactor);
    if (rc == PLM_OK)
        rc = plm_redact(redactor, text, len, &out, &out_len, &stats);
    plm_redactor_free(redactor);
    free(text);
    if (rc != PLM_OK)
        return report_error("redact", plm_last_error());
    if (json)
        print_json(out, out_len, &stats);
    else
        fwrite(out, 1, out_len, stdout);
    free(out);
    return EXIT_OK;
}

int cmd_redact(int argc, char **argv)
{
    const char *terms_path = NULL, *corpus = NULL, *input = NULL;
    bool json = false, verbose = false;
    struct option table[] = {
        {NULL, "--terms", OPT_STRING, &terms_path, "FILE", "also redact these terms (one a line: names, addresses)"},
        {NULL, "--json", OPT_FLAG, &json, NULL, "print {\"text\": ..., \"counts\": {TYPE: n}} (counts, never values)"},
        {NULL, "--eval", OPT_STRING, &corpus, "CORPUS.jsonl", "print recall and precision per type on a labelled corpus"},
        {NULL, "--verbose", OPT_FLAG, &verbose, NULL, "with --eval: list every missed and spurious match on stderr"},
    };
    struct command_spec spec = {"redact", "[--terms FILE] [--json] [FILE|-] | --eval CORPUS.jsonl",
                                "Prints the text of FILE (default: standard input) with personal data replaced by\n"
                                "placeholders such as [EMAIL_1]: emails, phones, card numbers, IBANs, SSNs, IP and\n"
                                "MAC addresses, URLs with credentials, API keys and secrets (docs/privacy.md).",
                                table, sizeof table / sizeof table[0], &input, NULL};
    int rc = parse_options(&spec, argc, argv);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (corpus) {
        if (input || terms_path || json) {
            fprintf(stderr, "pocketlm redact: --eval takes no FILE, --terms or --json (see pocketlm redact --help)\n");
            return EXIT_USAGE;
        }
        return evaluate(corpus, verbose);
    }
    char *terms_buffer = NULL;
    const char **terms = NULL;
    int n_terms = 0;
    rc = terms_path ? read_terms(terms_path, &terms_buffer, &terms, &n_terms) : EXIT_OK;
    if (rc == EXIT_OK)
        rc = redact_file(input ? input : "-", terms, n_terms, json);
    free(terms);
    free(terms_buffer);
    return rc;
}
