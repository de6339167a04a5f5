/* pocketlm tokenize: the token ids of a text, as the model's tokenizer gives them. */
#include "commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_tokens(plm_model *model, const int32_t *tokens, int n, bool pieces)
{
    for (int i = 0; i < n; i++) {
        if (!pieces) {
            printf(i ? " %d" : "%d", tokens[i]);
            continue;
        }
        char piece[256];
        int len = plm_token_to_piece(model, tokens[i], piece, sizeof piece, true);
        printf("%6d '%.*s'\n", tokens[i], len < 0 ? 0 : (len > (int)sizeof piece ? (int)sizeof piece : len), piece);
    }
    if (!pieces)
        printf("\n");
}

int cmd_tokenize(int argc, char **argv)
{
    const char *model_path = NULL, *prompt = NULL, *file = NULL;
    bool no_bos = false, pieces = false, parse_special = false;
    struct option table[] = {
        {"-m", "--model", OPT_STRING, &model_path, "FILE", "GGUF model (only its tokenizer is used)"},
        {"-p", "--prompt", OPT_STRING, &prompt, "TEXT", "text to tokenize"},
        {"-f", "--file", OPT_STRING, &file, "FILE", "read the text from FILE"},
        {NULL, "--no-bos", OPT_FLAG, &no_bos, NULL, "do not add BOS/EOS even if the model asks for them"},
        {NULL, "--parse-special", OPT_FLAG, &parse_special, NULL, "turn special-token text such as <|im_start|> into those tokens"},
        {NULL, "--pieces", OPT_FLAG, &pieces, NULL, "print one token per line with its text"},
    };
    struct command_spec spec = {"tokenize", "-m FILE (-p TEXT | -f FILE) [--no-bos] [--pieces]",
                                "Prints the token ids of a text, space-separated on one line.", table,
                                sizeof table / sizeof table[0], NULL, NULL};
    int rc = parse_options(&spec, argc, argv);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (!model_path || (!prompt) == (!file)) {
        fprintf(stderr, "pocketlm tokenize: need -m FILE and one of -p TEXT or -f FILE\n");
        return EXIT_USAGE;
    }
    size_t len = prompt ? strlen(prompt) : 0;
    char *text = prompt ? strdup(prompt) : read_text_file(file, &len);
    if (!text) {
        fprintf(stderr, "pocketlm tokenize: cannot read '%s'\n", file ? file : "prompt");
        return EXIT_FAILURE_RUNTIME;
    }
    plm_model *model;
    if (plm_model_load(model_path, &model)) {
        free(text);
        return report_error("tokenize", plm_last_error());
    }
    int32_t *tokens;
    int n = tokenize_text("tokenize", model, text, len, !no_bos, parse_special, &tokens);
    rc = n < 0 ? EXIT_FAILURE_RUNTIME : EXIT_OK;
    if (n >= 0) {
        print_tokens(model, tokens, n, pieces);
        free(tokens);
    }
    free(text);
    plm_model_free(model);
    return rc;
}
