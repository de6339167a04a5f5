/*
 * pocketlm: one program, one subcommand per job.
 *   run         generate text from a prompt
 *   chat        interactive multi-turn chat
 *   info        what a model file holds and needs
 *   convert     Hugging Face / llama2.c checkpoints to GGUF
 *   perplexity  how well a model predicts a text
 *   tokenize    the token ids of a text
 *   bench       speed against this machine's limits
 *   synth       random-weight models with the shapes of real ones
 */
#include "commands.h"

#include <stdio.h>
#include <string.h>

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"run", cmd_run, "generate text from a prompt"},
    {"chat", cmd_chat, "chat with a model, interactively or from a pipe"},
    {"info", cmd_info, "show a model's architecture, tensors and memory needs"},
    {"convert", cmd_convert, "convert a Hugging Face or llama2.c checkpoint to GGUF"},
    {"perplexity", cmd_perplexity, "measure a model's perplexity on a text file"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"bench", cmd_bench, "measure prompt and generation speed against the machine's limits"},
    {"synth", cmd_synth, "write a random-weight model with the shape of a real one"},
};

static void usage(FILE *out)
{
    fprintf(out, "pocketlm %s: on-device language models\n\nusage: pocketlm COMMAND [options]\n\ncommands:\n",
            PLM_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'pocketlm COMMAND --help' describes a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("pocketlm %s\n", PLM_VERSION);
        return EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 2, argv + 2);
    fprintf(stderr, "pocketlm: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
